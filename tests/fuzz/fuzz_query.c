/* fuzz_query: http_query() (src/net/http.h), the query-string lookup and
 * percent-decoding behind sample_rate, encoding, session_id and api_key,
 * and the two consumers of its output that take client text: the API key
 * check (auth_check_key, with keys configured: ?token= then ?api_key=) and
 * util_parse_u64 as the upgrade applies it to sample_rate.
 *
 * Input: one byte choosing the extra parameter name and output size, then
 * the request target ("/path?query"), laid out in a struct http_req the way
 * http.c's header callback does it (url at the start of req.head, path up
 * to the first '?', query after it).
 *
 * Oracle: a plain re-implementation of the documented behaviour (http.h:
 * the first parameter of that exact name, '+' is a space, %XX with two hex
 * digits is that byte, anything else literal; -1 absent, -2 when the value
 * does not fit outlen - 1 bytes or holds a NUL byte, else its length with a
 * NUL after it). The
 * output buffer is a heap block of exactly outlen bytes, so ASan sees any
 * write past it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "base/config.h"
#include "common.h"
#include "base/err.h"
#include "net/http.h"
#include "base/util.h"

static struct config cfg_;

static int hexv(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Returns the decoded length (value in out, room for any length), or -1. */
static long ref_query(const char *q, size_t ql, const char *name, char *out) {
    size_t nl = strlen(name), i = 0;
    while (i < ql) {
        size_t j = i;
        while (j < ql && q[j] != '&') j++;               /* [i, j) one parameter */
        size_t k = i;
        while (k < j && q[k] != '=') k++;                /* [i, k) its name */
        if (k - i == nl && memcmp(q + i, name, nl) == 0) {
            size_t o = 0;
            for (size_t v = k < j ? k + 1 : j; v < j; v++) {
                int c = (unsigned char)q[v];
                if (c == '+') c = ' ';
                else if (c == '%' && j - v >= 3 && hexv(q[v + 1]) >= 0 && hexv(q[v + 2]) >= 0) {
                    c = hexv(q[v + 1]) * 16 + hexv(q[v + 2]);
                    v += 2;
                }
                if (c == 0) return -2; /* a NUL (raw or %00): present but unusable */
                out[o++] = (char)c;
            }
            return (long)o;
        }
        if (j >= ql) break;
        i = j + 1;
    }
    return -1;
}

/* The defaults, plus API keys so that auth_check_key has work to do. */
static const char *fuzz_env(const char *name) {
    if (strcmp(name, "ASR_API_KEYS") == 0) return "fuzzkey1,k2 with space,";
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        fuzz_common_init();
        char err[256];
        if (config_load_from(&cfg_, fuzz_env, err, sizeof err) != 0) abort();
        init = 1;
    }
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;

    struct http_req req;
    memset(&req, 0, sizeof req);
    buf_init(&req.head, 0);
    buf_append(&req.head, data, size);
    buf_append(&req.head, "", 1); /* http.c ends the url with a separator */
    req.url_off = 0;
    req.url_len = size;
    const char *qm = memchr(req.head.data, '?', size);
    req.path_len = qm ? (size_t)(qm - req.head.data) : size;
    if (qm) {
        req.query_off = (size_t)(qm - req.head.data) + 1;
        req.query_len = size - req.query_off;
    }

    static const char *const names[] = {"sample_rate", "encoding", "session_id", "api_key", "a", "", "a=b", "%41"};
    static const size_t outlens[] = {1, 2, 3, 8, 16, 80, 256, 4096};
    const char *extra = names[sel & 7];
    size_t extra_len = outlens[(sel >> 3) & 7];
    const char *qs = req.head.data + req.query_off;
    char *ref = malloc(size + 1);

    const char *try_names[] = {"sample_rate", "encoding", "session_id", "api_key", extra};
    size_t try_lens[] = {80, 80, 80, 256, extra_len};
    for (int i = 0; i < 5; i++) {
        size_t outlen = try_lens[i];
        char *out = malloc(outlen);
        memset(out, 0x55, outlen);
        int r = http_query(&req, try_names[i], out, outlen);
        long want = req.query_len ? ref_query(qs, req.query_len, try_names[i], ref) : -1;
        if (want >= 0 && (size_t)want > outlen - 1) want = -2;
        if (r != want) {
            fuzz_fail("fuzz_query: http_query(\"%s\", outlen %zu) = %d, expected %ld", try_names[i], outlen, r, want);
        }
        if (r >= 0 && (out[r] != '\0' || memcmp(out, ref, (size_t)r) != 0)) {
            fuzz_fail("fuzz_query: http_query(\"%s\") decoded differently", try_names[i]);
        }
        if (i == 0 && r >= 0) {
            uint64_t x = 0;
            if (util_parse_u64(out, (size_t)r, 1000000, &x) == 0 && x > 1000000)
                fuzz_fail("fuzz_query: util_parse_u64 passed its maximum");
        }
        free(out);
    }
    int k = auth_check_key(&cfg_, &req);
    /* The credential is ?token= when present (and usable), else ?api_key=
     * (api/auth.h). Only "fuzzkey1" and "k2 with space" open the door (the
     * empty key after the trailing comma must not); something that starts
     * like a token is TOKEN_INVALID (no secret here signs anything). */
    long l = req.query_len ? ref_query(qs, req.query_len, "token", ref) : -1;
    if (l >= 0 && (size_t)l > 255) l = -2;
    if (l == -1) {
        l = req.query_len ? ref_query(qs, req.query_len, "api_key", ref) : -1;
        if (l >= 0 && (size_t)l > 255) l = -2;
    }
    int want = ASR_E_UNAUTHORIZED;
    if (l >= 0) {
        ref[l] = '\0';
        if (strcmp(ref, "fuzzkey1") == 0 || strcmp(ref, "k2 with space") == 0) want = 0;
        else if (strncmp(ref, "asrd1.", 6) == 0) want = ASR_E_TOKEN_INVALID;
    }
    if (k != want) fuzz_fail("fuzz_query: auth_check_key returned %d, expected %d", k, want);
    free(ref);
    buf_cleanup(&req.head);
    return 0;
}
