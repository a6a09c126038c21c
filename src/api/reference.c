/* The reference library (reference.h). */
#include "api/reference.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "core/feedback.h"

#define REFERENCE_ID_MAX 128

int reference_id_valid(const char *id, size_t n) {
    if (n == 0 || n > REFERENCE_ID_MAX || id[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int reference_load(const char *dir, const char *id, size_t n, size_t max_bytes, struct buf *out) {
    buf_reset(out);
    if (!dir || !dir[0] || !reference_id_valid(id, n)) return ASR_E_NOT_FOUND;
    char path[1024];
    int pl = snprintf(path, sizeof path, "%s/%.*s.txt", dir, (int)n, id);
    if (pl < 0 || (size_t)pl >= sizeof path) return ASR_E_NOT_FOUND;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return errno == ENOENT || errno == ELOOP || errno == ENOTDIR ? ASR_E_NOT_FOUND : ASR_EIO;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) rc = ASR_EIO;
    else if (!S_ISREG(st.st_mode)) rc = ASR_E_NOT_FOUND;
    else if ((size_t)st.st_size > max_bytes) rc = ASR_E_TOO_LARGE;
    else if (buf_reserve(out, (size_t)st.st_size + 1) != 0) rc = ASR_ENOMEM;
    while (rc == 0) {
        ssize_t got = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) rc = ASR_EIO;
        if (got <= 0) break;
        out->len += (size_t)got;
        if (out->len > max_bytes) rc = ASR_E_TOO_LARGE; /* grew since fstat */
        else if (out->len + 1 >= out->cap && buf_reserve(out, 4096) != 0) rc = ASR_ENOMEM;
    }
    close(fd);
    if (rc == 0 && !util_utf8_valid(out->data, out->len)) rc = ASR_E_BAD_REQUEST;
    if (rc == 0 && out->data) out->data[out->len] = '\0';
    if (rc != 0) buf_reset(out);
    return rc;
}

int reference_expected_text(const struct config *cfg, const char *text, size_t text_len, const char *ref,
                            size_t ref_len, struct buf *out, const char **code, const char **why) {
    buf_reset(out);
    *code = "BAD_REQUEST";
    if (text && ref) {
        *why = "give expected_text or reference_id, not both";
        return 400;
    }
    if (text) {
        if (text_len > cfg->expected_text_max_bytes) {
            *why = "expected_text is longer than ASR_EXPECTED_TEXT_MAX_BYTES";
            return 400;
        }
        if (!util_utf8_valid(text, text_len)) {
            *why = "expected_text is not valid UTF-8";
            return 400;
        }
        if (buf_append(out, text, text_len) != 0) {
            *code = "INTERNAL";
            *why = "out of memory";
            return 500;
        }
        return 0;
    }
    if (!ref) return 0;
    switch (reference_load(cfg->reference_dir, ref, ref_len, cfg->expected_text_max_bytes, out)) {
    case 0: return 0;
    case ASR_E_NOT_FOUND:
        *code = "REFERENCE_NOT_FOUND";
        *why = cfg->reference_dir[0] ? "no reference text with that reference_id"
                                     : "this server has no reference library (ASR_REFERENCE_DIR)";
        return 404;
    case ASR_E_TOO_LARGE: *why = "the reference text is longer than ASR_EXPECTED_TEXT_MAX_BYTES"; return 400;
    case ASR_E_BAD_REQUEST: *why = "the reference text is not valid UTF-8"; return 400;
    default:
        *code = "INTERNAL";
        *why = "the reference text could not be read";
        return 500;
    }
}

int reference_from_query(const struct config *cfg, const struct http_req *req, struct buf *out, const char **code,
                         const char **why) {
    buf_reset(out);
    size_t cap = cfg->expected_text_max_bytes + 2;
    char *text = malloc(cap), ref[REFERENCE_ID_MAX + 2];
    if (!text) {
        *code = "INTERNAL";
        *why = "out of memory";
        return 500;
    }
    int tl = http_query(req, "expected_text", text, cap);
    int rl = http_query(req, "reference_id", ref, sizeof ref);
    int status = 0;
    *code = "BAD_REQUEST";
    if (tl == -2) {
        *why = "expected_text is longer than ASR_EXPECTED_TEXT_MAX_BYTES or holds %00";
        status = 400;
    } else if (rl == -2 || (rl >= 0 && !reference_id_valid(ref, (size_t)rl))) {
        *code = "REFERENCE_NOT_FOUND";
        *why = "no reference text with that reference_id";
        status = 404;
    } else {
        status = reference_expected_text(cfg, tl >= 0 ? text : NULL, tl >= 0 ? (size_t)tl : 0, rl >= 0 ? ref : NULL,
                                         rl >= 0 ? (size_t)rl : 0, out, code, why);
    }
    free(text);
    if (status == 0 && (tl >= 0 || rl >= 0)) {
        struct fb_text *t = NULL;
        int rc = fb_text_parse(out->data ? out->data : "", out->len, FB_TEXT_MAX_WORDS, &t, why);
        fb_text_destroy(t);
        if (rc != 0) {
            *code = rc == ASR_ENOMEM ? "INTERNAL" : "BAD_REQUEST";
            if (rc == ASR_ENOMEM) *why = "out of memory";
            status = rc == ASR_ENOMEM ? 500 : 400;
        }
    }
    if (status != 0) buf_cleanup(out); /* nothing for the caller to free */
    return status;
}
