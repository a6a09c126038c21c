/* Static files from one directory (files.h). */
#include "net/files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/util.h"

/* One cached file: its contents as read when the file had this identity
 * (device, inode, size, modification time). */
struct entry {
    char     name[256];              /* relative name (files_map_path); "" = free slot */
    char    *data;                   /* owned: len bytes */
    size_t   len;
    dev_t    dev;
    ino_t    ino;
    struct timespec mtime;
    uint64_t used;                   /* f->clock at the last hit: the least recent goes first */
};

struct files {
    char     root[PATH_MAX];         /* the directory's real path */
    size_t   root_len;
    struct entry e[FILES_CACHE_ENTRIES];
    size_t   bytes;                  /* sum of the entries' len */
    uint64_t clock;                  /* requests served: the cache's time */
};

int files_create(const char *dir, struct files **out) {
    char real[PATH_MAX];
    struct stat st;
    if (!realpath(dir, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode) || access(real, R_OK | X_OK) != 0)
        return ASR_EINVAL;
    struct files *f = xcalloc(1, sizeof *f);
    f->root_len = strlen(real);
    memcpy(f->root, real, f->root_len + 1);
    *out = f;
    return 0;
}

static void entry_drop(struct files *f, struct entry *e) {
    f->bytes -= e->len;
    free(e->data);
    memset(e, 0, sizeof *e);
}

void files_destroy(struct files *f) {
    if (!f) return;
    for (int i = 0; i < FILES_CACHE_ENTRIES; i++)
        if (f->e[i].name[0]) entry_drop(f, &f->e[i]);
    free(f);
}

static int seg_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
}

int files_map_path(const char *path, size_t len, char *out, size_t cap) {
    if (!len || path[0] != '/' || !cap) return -1;
    size_t o = 0;
    size_t i = 1;
    while (i < len) {
        size_t s = i;
        while (i < len && path[i] != '/') {
            if (!seg_char(path[i])) return -1;
            i++;
        }
        if (i == s || path[s] == '.') return -1; /* "//", "/.", "/..", hidden files */
        if (o + (i - s) >= cap) return -1;   /* the segment and a NUL */
        memcpy(out + o, path + s, i - s);
        o += i - s;
        if (i == len) break;
        if (o + 1 >= cap) return -1;
        out[o++] = '/';                      /* path[i] == '/' */
        i++;
    }
    if (o == 0 || out[o - 1] == '/') {
        static const char idx[] = "index.html";
        if (o + sizeof idx > cap) return -1;
        memcpy(out + o, idx, sizeof idx);
        return (int)(o + sizeof idx - 1);
    }
    out[o] = '\0';
    return (int)o;
}

const char *files_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"json", "application/json"},
        {"webmanifest", "application/manifest+json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/plain; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"ico", "image/x-icon"},
        {"wav", "audio/wav"},
        {"woff2", "font/woff2"},
        {"wasm", "application/wasm"},
    };
    const char *dot = strrchr(name, '.');
    const char *slash = strrchr(name, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof *types; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* Whether an If-None-Match value names etag ("*", or one of a
 * comma-separated list; the weak comparison of RFC 9110 13.1.2: a W/
 * prefix does not matter). */
static int etag_matches(const char *inm, const char *etag) {
    if (!inm) return 0;
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && (p[l - 1] == ' ' || p[l - 1] == '\t')) l--;
        if (l == 1 && *p == '*') return 1;
        if (l > 2 && p[0] == 'W' && p[1] == '/') p += 2, l -= 2;
        if (l == el && memcmp(p, etag, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Reads the file at real (st: its stat) into a fresh allocation. 0, or
 * ASR_EIO. */
static int read_file(const char *real, const struct stat *st, char **data, size_t *len) {
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return ASR_EIO;
    size_t n = (size_t)st->st_size, got = 0;
    char *p = malloc(n ? n : 1);
    if (!p) {
        close(fd);
        return ASR_EIO;
    }
    while (got < n) {
        ssize_t k = read(fd, p + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    if (got != n) { /* changed under us: the next request reads it again */
        free(p);
        return ASR_EIO;
    }
    *data = p;
    *len = n;
    return 0;
}

/* The cached entry of name when it still matches st, else NULL. */
static struct entry *lookup(struct files *f, const char *name, const struct stat *st) {
    for (int i = 0; i < FILES_CACHE_ENTRIES; i++) {
        struct entry *e = &f->e[i];
        if (!e->name[0] || strcmp(e->name, name) != 0) continue;
        if (e->dev == st->st_dev && e->ino == st->st_ino && e->len == (size_t)st->st_size &&
            e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec)
            return e;
        entry_drop(f, e); /* stale */
        return NULL;
    }
    return NULL;
}

/* Keeps data (adopted) under name, evicting the least recently used
 * entries until it fits. Returns the entry, or NULL when it cannot be kept
 * (larger than the whole cache): the caller still owns data then. */
static struct entry *keep(struct files *f, const char *name, const struct stat *st, char *data, size_t len) {
    if (len > FILES_CACHE_BYTES) return NULL;
    for (;;) {
        struct entry *free_slot = NULL, *oldest = NULL;
        for (int i = 0; i < FILES_CACHE_ENTRIES; i++) {
            struct entry *e = &f->e[i];
            if (!e->name[0]) {
                if (!free_slot) free_slot = e;
            } else if (!oldest || e->used < oldest->used) {
                oldest = e;
            }
        }
        if (free_slot && f->bytes + len <= FILES_CACHE_BYTES) {
            snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
            free_slot->data = data;
            free_slot->len = len;
            free_slot->dev = st->st_dev;
            free_slot->ino = st->st_ino;
            free_slot->mtime = st->st_mtim;
            f->bytes += len;
            return free_slot;
        }
        if (!oldest) return NULL; /* not reached: with nothing cached, it fits */
        entry_drop(f, oldest);
    }
}

static void not_found(struct http_conn *hc) {
    http_respond_error(hc, 404, "NOT_FOUND", "no such file", NULL);
}

void files_serve(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct files *f = ctx;
    size_t pl;
    const char *path = http_path(req, &pl);
    char name[256], full[PATH_MAX], real[PATH_MAX];
    if (files_map_path(path, pl, name, sizeof name) < 0) {
        not_found(hc);
        return;
    }
    struct stat st;
    if (snprintf(full, sizeof full, "%s/%s", f->root, name) >= (int)sizeof full || !realpath(full, real) ||
        strncmp(real, f->root, f->root_len) != 0 || real[f->root_len] != '/' || stat(real, &st) != 0 ||
        !S_ISREG(st.st_mode) || (size_t)st.st_size > FILES_MAX_FILE_BYTES) {
        not_found(hc);
        return;
    }
    f->clock++;
    char *data = NULL;
    size_t len = 0;
    struct entry *e = lookup(f, name, &st);
    if (!e) {
        if (read_file(real, &st, &data, &len) != 0) {
            not_found(hc);
            return;
        }
        e = keep(f, name, &st, data, len);
        if (e) data = NULL; /* adopted */
    }
    if (e) e->used = f->clock;
    const char *body = e ? e->data : data;
    len = e ? e->len : len;
    char etag[64], headers[256];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec);
    snprintf(headers, sizeof headers,
             "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n", etag);
    if (etag_matches(http_header(req, "if-none-match", NULL), etag))
        http_respond(hc, 304, files_type(name), "", 0, headers);
    else
        http_respond(hc, 200, files_type(name), body, len, headers);
    free(data);
}
