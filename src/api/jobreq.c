/* Job requests: options, JSON bodies, multipart/form-data (jobreq.h). */
#define _GNU_SOURCE
#include "api/jobreq.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"

#define MP_BOUNDARY_MAX 70                  /* RFC 2046 */
#define MP_HEAD_MAX     8192                /* bytes of one part's head */

void jobreq_opts_init(struct jobreq_opts *o) {
    memset(o, 0, sizeof *o);
    o->granularity = JOBREQ_WORD;
}

static int fail(char *err, size_t errlen, const char *msg) {
    if (errlen) snprintf(err, errlen, "%s", msg);
    return ASR_E_BAD_REQUEST;
}

int jobreq_url_ok(const char *u, size_t n) {
    size_t skip;
    if (n > JOBREQ_URL_MAX) return 0;
    if (n >= 7 && strncasecmp(u, "http://", 7) == 0) skip = 7;
    else if (n >= 8 && strncasecmp(u, "https://", 8) == 0) skip = 8;
    else return 0;
    if (n == skip || u[skip] == '/' || u[skip] == '?' || u[skip] == '#') return 0; /* a host */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f) return 0;
    return 1;
}

static int copy_text(char *dst, size_t cap, const char *v, size_t n) {
    if (n >= cap || memchr(v, 0, n) || !util_utf8_valid(v, n)) return -1;
    memcpy(dst, v, n);
    dst[n] = 0;
    return 0;
}

int jobreq_set(struct jobreq_opts *o, const char *name, const char *v, size_t n, char *err, size_t errlen) {
    if (strcmp(name, "callback") == 0) {
        if (!jobreq_url_ok(v, n)) return fail(err, errlen, "callback: not an http:// or https:// URL (at most 2048 bytes)");
        memcpy(o->callback, v, n);
        o->callback[n] = 0;
        return 0;
    }
    if (strcmp(name, "granularity") == 0) {
        if (n == 4 && memcmp(v, "word", 4) == 0) o->granularity = JOBREQ_WORD;
        else if (n == 7 && memcmp(v, "segment", 7) == 0) o->granularity = JOBREQ_SEGMENT;
        else return fail(err, errlen, "granularity: word or segment");
        return 0;
    }
    if (strcmp(name, "hint") == 0) {
        if (copy_text(o->hint, sizeof o->hint, v, n) != 0)
            return fail(err, errlen, "hint: UTF-8 text of at most 1024 bytes");
        return 0;
    }
    if (strcmp(name, "metadata") == 0) {
        if (copy_text(o->metadata, sizeof o->metadata, v, n) != 0)
            return fail(err, errlen, "metadata: UTF-8 text of at most 1024 bytes");
        return 0;
    }
    if (strcmp(name, "endpointing_ms") == 0) {
        uint64_t x;
        if (util_parse_u64(v, n, 10000, &x) != 0 || x < 30)
            return fail(err, errlen, "endpointing_ms: an integer from 30 to 10000");
        o->endpointing_ms = (unsigned)x;
        return 0;
    }
    return ASR_E_NOT_FOUND;
}

int jobreq_parse_json(const char *p, size_t n, struct jobreq *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    jobreq_opts_init(&out->opts);
    if (n > JOBREQ_JSON_MAX) return fail(err, errlen, "a JSON job request is at most 65536 bytes");
    json_error_t je;
    json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) return fail(err, errlen, "body is not valid JSON");
    int rc = 0;
    if (!json_is_object(root)) {
        rc = fail(err, errlen, "body is not a JSON object");
        goto done;
    }
    const char *key;
    json_t *v;
    int has_url = 0;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "url") == 0) {
            if (!json_is_string(v) || !jobreq_url_ok(json_string_value(v), json_string_length(v))) {
                rc = fail(err, errlen, "url: not an http:// or https:// URL (at most 2048 bytes)");
                goto done;
            }
            memcpy(out->url, json_string_value(v), json_string_length(v) + 1);
            has_url = 1;
        } else if (strcmp(key, "endpointing_ms") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 30 || json_integer_value(v) > 10000) {
                rc = fail(err, errlen, "endpointing_ms: an integer from 30 to 10000");
                goto done;
            }
            out->opts.endpointing_ms = (unsigned)json_integer_value(v);
        } else if (strcmp(key, "callback") == 0 || strcmp(key, "granularity") == 0 || strcmp(key, "hint") == 0 ||
                   strcmp(key, "metadata") == 0) {
            if (!json_is_string(v)) {
                if (errlen) snprintf(err, errlen, "%s: must be a string", key);
                rc = ASR_E_BAD_REQUEST;
                goto done;
            }
            rc = jobreq_set(&out->opts, key, json_string_value(v), json_string_length(v), err, errlen);
            if (rc != 0) goto done;
        } else {
            if (errlen) snprintf(err, errlen, "unknown field \"%.64s\"", key);
            rc = ASR_E_BAD_REQUEST;
            goto done;
        }
    }
    if (!has_url) rc = fail(err, errlen, "url: required (or send the audio itself as the body)");
done:
    json_decref(root);
    return rc;
}

int jobreq_opts_json(const struct jobreq_opts *o, struct buf *out) {
    int bad = buf_printf(out, "{\"granularity\":\"%s\"", o->granularity == JOBREQ_SEGMENT ? "segment" : "word");
    if (o->callback[0]) {
        bad |= buf_puts(out, ",\"callback\":");
        bad |= buf_json_str(out, o->callback, strlen(o->callback));
    }
    if (o->hint[0]) {
        bad |= buf_puts(out, ",\"hint\":");
        bad |= buf_json_str(out, o->hint, strlen(o->hint));
    }
    if (o->endpointing_ms) bad |= buf_printf(out, ",\"endpointing_ms\":%u", o->endpointing_ms);
    if (o->metadata[0]) {
        bad |= buf_puts(out, ",\"metadata\":");
        bad |= buf_json_str(out, o->metadata, strlen(o->metadata));
    }
    bad |= buf_puts(out, "}");
    return bad ? ASR_ENOMEM : 0;
}

int jobreq_run_json(const struct jobreq_opts *o, struct buf *out) {
    int bad = buf_printf(out, "{\"granularity\":\"%s\",\"hint\":", o->granularity == JOBREQ_SEGMENT ? "segment" : "word");
    bad |= buf_json_str(out, o->hint, strlen(o->hint));
    bad |= buf_printf(out, ",\"endpointing_ms\":%u}", o->endpointing_ms);
    return bad ? ASR_ENOMEM : 0;
}

int jobreq_parse_run_json(const char *p, size_t n, struct jobreq_opts *out) {
    jobreq_opts_init(out);
    json_t *root = json_loadb(p, n, 0, NULL);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return ASR_E_BAD_REQUEST;
    }
    int rc = 0;
    json_t *g = json_object_get(root, "granularity"), *h = json_object_get(root, "hint"),
           *e = json_object_get(root, "endpointing_ms");
    if (json_is_string(g)) rc |= jobreq_set(out, "granularity", json_string_value(g), json_string_length(g), NULL, 0);
    if (json_is_string(h) && json_string_length(h))
        rc |= jobreq_set(out, "hint", json_string_value(h), json_string_length(h), NULL, 0);
    if (json_is_integer(e) && json_integer_value(e) >= 30 && json_integer_value(e) <= 10000)
        out->endpointing_ms = (unsigned)json_integer_value(e);
    json_decref(root);
    return rc ? ASR_E_BAD_REQUEST : 0;
}

/* ---- hashes --------------------------------------------------------------------- */

static void hexify(const unsigned char *d, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
}

static void sha256_parts(const void *const *p, const size_t *n, size_t k, unsigned char out[32]) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int ol = 32;
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) abort();
    for (size_t i = 0; i < k; i++) EVP_DigestUpdate(c, p[i], n[i]);
    EVP_DigestFinal_ex(c, out, &ol);
    EVP_MD_CTX_free(c);
}

void jobreq_content_hash(const void *audio, size_t len, const char *ctype, const char *run_json, const char *engine,
                         char out[65]) {
    unsigned char a[32], h[32];
    const void *ap[1] = {audio ? audio : ""};
    size_t an[1] = {len};
    sha256_parts(ap, an, 1, a);
    char ct[256];
    size_t k = 0;
    for (const char *c = ctype ? ctype : ""; *c && k + 1 < sizeof ct; c++)
        if (*c != ' ' && *c != '\t') ct[k++] = (char)tolower((unsigned char)*c);
    ct[k] = 0;
    const void *p[5] = {"asrd-job-1", engine, ct, run_json, a};
    size_t n[5] = {11, strlen(engine) + 1, k + 1, strlen(run_json) + 1, 32};
    sha256_parts(p, n, 5, h);
    hexify(h, 32, out);
}

void jobreq_fingerprint(const char *what, const char *opts_json, char out[65]) {
    unsigned char h[32];
    const void *p[2] = {what, opts_json};
    size_t n[2] = {strlen(what) + 1, strlen(opts_json)};
    sha256_parts(p, n, 2, h);
    hexify(h, 32, out);
}

/* ---- multipart/form-data ------------------------------------------------------ */

int jobreq_is_multipart(const char *ct) {
    if (!ct) return 0;
    while (*ct == ' ' || *ct == '\t') ct++;
    if (strncasecmp(ct, "multipart/form-data", 19) != 0) return 0;
    return ct[19] == 0 || ct[19] == ';' || ct[19] == ' ' || ct[19] == '\t';
}

/* The value of parameter name in a header value s[0..n) ("a; name=v;
 * x="y""), quoted or not, into its borrowed span. 0, or -1 when absent or
 * malformed. */
static int header_param(const char *s, size_t n, const char *name, const char **v, size_t *vl) {
    size_t nl = strlen(name), i = 0;
    while (i < n && s[i] != ';') i++;          /* skip the value before the first ';' */
    while (i < n) {
        i++;                                    /* past ';' */
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        size_t k = i;
        while (k < n && s[k] != '=' && s[k] != ';') k++;
        size_t kend = k;
        while (kend > i && (s[kend - 1] == ' ' || s[kend - 1] == '\t')) kend--;
        int match = kend - i == nl && strncasecmp(s + i, name, nl) == 0;
        if (k >= n || s[k] == ';') {
            i = k;
            continue;
        }
        k++;                                    /* past '=' */
        while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
        size_t vs, ve;
        if (k < n && s[k] == '"') {
            vs = ++k;
            while (k < n && s[k] != '"') k += s[k] == '\\' && k + 1 < n ? 2 : 1;
            if (k >= n) return -1;              /* no closing quote */
            ve = k++;
        } else {
            vs = k;
            while (k < n && s[k] != ';' && s[k] != ' ' && s[k] != '\t') k++;
            ve = k;
        }
        if (match) {
            *v = s + vs;
            *vl = ve - vs;
            return 0;
        }
        while (k < n && s[k] != ';') k++;
        i = k;
    }
    return -1;
}

/* Reads one part's head h[0..n) (header lines, CRLF-separated) into p. */
static int part_head(const char *h, size_t n, struct jobreq_part *p, char *err, size_t errlen) {
    int has_cd = 0;
    size_t i = 0;
    while (i < n) {
        const char *eol = memmem(h + i, n - i, "\r\n", 2);
        size_t le = eol ? (size_t)(eol - h) : n;
        const char *line = h + i;
        size_t ll = le - i;
        const char *colon = memchr(line, ':', ll);
        if (!colon || colon == line) return fail(err, errlen, "multipart: a malformed part header");
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vl = ll - nl - 1;
        while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
        if (nl == 19 && strncasecmp(line, "Content-Disposition", 19) == 0) {
            if (vl < 9 || strncasecmp(v, "form-data", 9) != 0 || (vl > 9 && v[9] != ';' && v[9] != ' '))
                return fail(err, errlen, "multipart: a part that is not form-data");
            if (header_param(v, vl, "name", &p->name, &p->name_len) != 0 || p->name_len == 0)
                return fail(err, errlen, "multipart: a part without a name");
            const char *fn;
            size_t fl;
            if (header_param(v, vl, "filename", &fn, &fl) == 0) {
                p->filename = fn;
                p->filename_len = fl;
            }
            has_cd = 1;
        } else if (nl == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
            p->ctype = v;
            p->ctype_len = vl;
        }
        i = eol ? le + 2 : n;
    }
    if (!has_cd) return fail(err, errlen, "multipart: a part without Content-Disposition");
    return 0;
}

int jobreq_multipart(const char *content_type, const uint8_t *body, size_t len, struct jobreq_part *parts,
                     size_t max, size_t *n, char *err, size_t errlen) {
    *n = 0;
    if (!jobreq_is_multipart(content_type)) return fail(err, errlen, "not multipart/form-data");
    const char *bv;
    size_t bl;
    if (header_param(content_type, strlen(content_type), "boundary", &bv, &bl) != 0 || bl == 0 ||
        bl > MP_BOUNDARY_MAX)
        return fail(err, errlen, "multipart: the Content-Type has no boundary of 1 to 70 characters");
    char delim[MP_BOUNDARY_MAX + 5];            /* "\r\n--" boundary */
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, bv, bl);
    size_t dl = bl + 4;
    const char *b = (const char *)body, *end = b + len;
    /* The first delimiter may start the body (no CRLF before it). */
    const char *at;
    if (len >= dl - 2 && memcmp(b, delim + 2, dl - 2) == 0) at = b + dl - 2;
    else {
        at = memmem(b, len, delim, dl);
        if (!at) return fail(err, errlen, "multipart: no part delimiter");
        at += dl;
    }
    for (;;) {
        /* at: just past a delimiter */
        if (end - at >= 2 && at[0] == '-' && at[1] == '-') return 0;       /* the close delimiter */
        while (at < end && (*at == ' ' || *at == '\t')) at++;           /* transport padding */
        if (end - at < 2 || at[0] != '\r' || at[1] != '\n')
            return fail(err, errlen, "multipart: a delimiter not followed by CRLF");
        at += 2;
        if (*n >= max) return fail(err, errlen, "multipart: too many parts");
        struct jobreq_part *p = &parts[*n];
        memset(p, 0, sizeof *p);
        const char *head_end;
        if (end - at >= 2 && at[0] == '\r' && at[1] == '\n') head_end = at;   /* no headers at all */
        else {
            head_end = memmem(at, (size_t)(end - at), "\r\n\r\n", 4);
            if (!head_end) return fail(err, errlen, "multipart: a part head without its end");
        }
        if ((size_t)(head_end - at) > MP_HEAD_MAX) return fail(err, errlen, "multipart: a part head too large");
        int rc = part_head(at, (size_t)(head_end - at), p, err, errlen);
        if (rc != 0) return rc;
        const char *data = head_end == at ? at + 2 : head_end + 4;
        const char *next = memmem(data, (size_t)(end - data), delim, dl);
        if (!next) return fail(err, errlen, "multipart: a part without its closing delimiter");
        p->data = (const uint8_t *)data;
        p->len = (size_t)(next - data);
        (*n)++;
        at = next + dl;
    }
}
