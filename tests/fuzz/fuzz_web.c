/* fuzz_web: the parsers of the browser half (docs/API.md "Browsers: CORS,
 * tokens and the page"), each against an independent oracle:
 *
 *   selector 0  files_map_path (net/files.h): the URL path of a static
 *               file. When it maps, every segment of the name is made of
 *               [A-Za-z0-9._-] and does not start with '.', and the name is
 *               the path without its '/' (plus index.html after a final
 *               '/'); when it does not, the path breaks one of those rules.
 *   selector 1  auth_token_verify (api/auth.h) on client bytes: never
 *               accepted (no MAC is guessed); and a token minted from the
 *               input's scope, expiry and key verifies to the same scope and
 *               expiry, or is expired exactly when now >= expiry, and any
 *               one byte of it changed is refused.
 *   selector 2  auth_token_request_parse: when it accepts, the body is
 *               empty (white space) or a JSON object whose "scope" (when
 *               present) names only "stream"/"transcribe" and whose
 *               "expires_in" (when present) is in 1..max; the results are
 *               within their ranges.
 *   selector 3  http_origin_check (net/http.h): Host and Origin from the
 *               input against a fixed list, compared with a re-implementation.
 *
 * Input: the selector byte, then the bytes. */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/auth.h"
#include "base/config.h"
#include "base/err.h"
#include "base/util.h"
#include "common.h"
#include "net/files.h"
#include "net/http.h"

static struct config cfg_;

static int seg_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
}

static void check_path(const uint8_t *p, size_t n) {
    char out[256];
    int r = files_map_path((const char *)p, n, out, sizeof out);
    /* the rules, read straight off the input */
    int ok = n >= 1 && p[0] == '/';
    for (size_t i = 1; ok && i < n; i++) {
        if (p[i] == '/') {
            if (p[i - 1] == '/') ok = 0; /* empty segment */
            continue;
        }
        if (!seg_char((char)p[i]) || (p[i] == '.' && p[i - 1] == '/')) ok = 0;
    }
    size_t want = 0;
    if (ok) want = n - 1 + (p[n - 1] == '/' ? 10 : 0);
    if (ok && want + 1 > sizeof out) ok = 0;
    if (!ok) {
        if (r != -1) fuzz_fail("fuzz_web: path %.*s mapped to %s", (int)n, (const char *)p, out);
        return;
    }
    if (r != (int)want) fuzz_fail("fuzz_web: path %.*s: %d, expected %zu", (int)n, (const char *)p, r, want);
    if (memcmp(out, p + 1, n - 1) != 0 || (p[n - 1] == '/' && strcmp(out + n - 1, "index.html") != 0) ||
        out[r] != '\0')
        fuzz_fail("fuzz_web: path %.*s mapped to %s", (int)n, (const char *)p, out);
}

static void check_token(const uint8_t *p, size_t n) {
    const uint64_t now = 1800000000ull;
    unsigned scope = 0;
    uint64_t exp = 0;
    int r = auth_token_verify(&cfg_, (const char *)p, n, now, &scope, &exp);
    if (r != ASR_E_TOKEN_INVALID) fuzz_fail("fuzz_web: client bytes verified as a token: %d", r);
    if (n < 10) return;
    /* a genuine one from the input's choices */
    unsigned want_scope = (p[0] % 3) + 1;
    uint64_t want_exp = now - 512 + ((uint64_t)p[1] << 2 | (p[2] & 3));
    static const char *const keys[] = {"k1", "key two", "k3"};
    const char *key = keys[p[3] % 3];
    char tok[AUTH_TOKEN_LEN + 1];
    if (auth_token_mint(&cfg_, key, strlen(key), want_scope, want_exp, tok, sizeof tok) != 0)
        fuzz_fail("fuzz_web: mint failed");
    r = auth_token_verify(&cfg_, tok, strlen(tok), now, &scope, &exp);
    int removed = p[3] % 3 == 2; /* k3 is not a configured key */
    int want = removed ? ASR_E_TOKEN_INVALID : now >= want_exp ? ASR_E_TOKEN_EXPIRED : 0;
    if (r != want) fuzz_fail("fuzz_web: minted token: %d, expected %d", r, want);
    if (r == 0 && (scope != want_scope || exp != want_exp)) fuzz_fail("fuzz_web: minted token read back wrong");
    size_t at = p[4] % AUTH_TOKEN_LEN;
    char c = (char)p[5];
    if (c != tok[at]) {
        tok[at] = c;
        r = auth_token_verify(&cfg_, tok, AUTH_TOKEN_LEN, now, NULL, NULL);
        if (r == 0) fuzz_fail("fuzz_web: a token with byte %zu changed was accepted", at);
    }
}

static void check_request(const uint8_t *p, size_t n) {
    unsigned scope = 0, ttl = 0;
    const char *why = NULL;
    int r = auth_token_request_parse((const char *)p, n, 300, &scope, &ttl, &why);
    if (r != 0) {
        if (r != ASR_E_BAD_REQUEST || !why || !why[0]) fuzz_fail("fuzz_web: refusal %d without a reason", r);
        return;
    }
    if (scope < 1 || scope > 3 || ttl < 1 || ttl > 300) fuzz_fail("fuzz_web: scope %u ttl %u", scope, ttl);
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
    if (i == n) {
        if (scope != 3 || ttl != 300) fuzz_fail("fuzz_web: an empty body changed the defaults");
        return;
    }
    json_error_t e;
    json_t *o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(o)) fuzz_fail("fuzz_web: accepted a body that is not a JSON object");
    json_t *s = json_object_get(o, "scope");
    unsigned bits = s ? 0 : 3;
    size_t k;
    json_t *v;
    if (s) json_array_foreach(s, k, v) {
        const char *name = json_string_value(v);
        if (name && strcmp(name, "stream") == 0) bits |= 1;
        else if (name && strcmp(name, "transcribe") == 0) bits |= 2;
        else fuzz_fail("fuzz_web: accepted scope entry that is not a scope");
    }
    if (bits != scope) fuzz_fail("fuzz_web: scope %u, the body says %u", scope, bits);
    json_t *x = json_object_get(o, "expires_in");
    if (x && (!json_is_integer(x) || json_integer_value(x) != (json_int_t)ttl))
        fuzz_fail("fuzz_web: expires_in %u differs from the body's", ttl);
    json_decref(o);
}

static int ieq(const char *a, size_t al, const char *b, size_t bl) { return al == bl && strncasecmp(a, b, al) == 0; }

static const char *trim(const char *p, size_t *n) {
    while (*n && (*p == ' ' || *p == '\t')) p++, (*n)--;
    while (*n && (p[*n - 1] == ' ' || p[*n - 1] == '\t')) (*n)--;
    return p;
}

static void check_origin(const uint8_t *p, size_t n) {
    static const char list[] = "https://a.example, HTTP://B.example:8080 ,,null";
    /* Host, then '\n', then Origin (no NUL: header values cannot hold one) */
    const uint8_t *nl = memchr(p, '\n', n);
    if (!nl || memchr(p, 0, n)) return;
    size_t hl = (size_t)(nl - p), ol = n - hl - 1;
    struct http_req req;
    memset(&req, 0, sizeof req);
    buf_init(&req.head, 0);
    buf_append(&req.head, "/", 2);
    req.url_len = req.path_len = 1;
    const char *names[2] = {"Host", "Origin"};
    const char *vals[2] = {(const char *)p, (const char *)nl + 1};
    size_t lens[2] = {hl, ol};
    for (int i = 0; i < 2; i++) {
        req.hdr_name[i] = req.head.len;
        req.hdr_name_len[i] = strlen(names[i]);
        buf_append(&req.head, names[i], strlen(names[i]) + 1);
        req.hdr_val[i] = req.head.len;
        req.hdr_val_len[i] = lens[i];
        buf_append(&req.head, vals[i], lens[i]);
        buf_append(&req.head, "", 1);
    }
    req.n_headers = 2;
    enum http_origin got = http_origin_check(list, &req);
    /* the reference */
    const char *o = req.head.data + req.hdr_val[1], *h = req.head.data + req.hdr_val[0];
    size_t ol2 = ol, hl2 = hl;
    o = trim(o, &ol2);
    h = trim(h, &hl2);
    enum http_origin want = HTTP_ORIGIN_OTHER;
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= ol2 && !sep; i++)
        if (memcmp(o + i, "://", 3) == 0) sep = o + i;
    if (sep && hl2 && ieq(sep + 3, ol2 - (size_t)(sep + 3 - o), h, hl2)) want = HTTP_ORIGIN_SAME;
    else if (ieq(o, ol2, "https://a.example", 17) || ieq(o, ol2, "http://b.example:8080", 21) || ieq(o, ol2, "null", 4))
        want = HTTP_ORIGIN_LISTED;
    if (got != want) fuzz_fail("fuzz_web: origin check %d, expected %d", got, want);
    buf_cleanup(&req.head);
}

static const char *fuzz_env(const char *name) {
    if (strcmp(name, "ASR_API_KEYS") == 0) return "k1,key two";
    if (strcmp(name, "ASR_TOKEN_SECRET") == 0) return "the fuzz target's token secret";
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        fuzz_common_init();
        if (sodium_init() < 0) abort();
        char err[256];
        if (config_load_from(&cfg_, fuzz_env, err, sizeof err) != 0) abort();
        init = 1;
    }
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    /* a heap copy of exactly size bytes: ASan sees any read past it */
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);
    switch (sel & 3) {
    case 0: check_path(p, size); break;
    case 1: check_token(p, size); break;
    case 2: check_request(p, size); break;
    default: check_origin(p, size); break;
    }
    free(p);
    return 0;
}
