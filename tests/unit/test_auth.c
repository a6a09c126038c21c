#include <sodium.h>
#include <stdarg.h>

#include "test.h"

#include "api/auth.h"
#include "base/err.h"
#include "base/util.h"

/* A request as http.c leaves it: url (path and query), then name/value
 * pairs up to a NULL name, stored NUL-separated in req->head. */
static void req_make(struct http_req *req, const char *url, ...) {
    memset(req, 0, sizeof *req);
    buf_init(&req->head, 0);
    size_t ul = strlen(url);
    buf_append(&req->head, url, ul + 1);
    req->url_len = ul;
    const char *q = strchr(url, '?');
    req->path_len = q ? (size_t)(q - url) : ul;
    if (q) {
        req->query_off = (size_t)(q - url) + 1;
        req->query_len = ul - req->query_off;
    }
    va_list ap;
    va_start(ap, url);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL;) {
        const char *value = va_arg(ap, const char *);
        int i = req->n_headers++;
        req->hdr_name[i] = req->head.len;
        req->hdr_name_len[i] = strlen(name);
        buf_append(&req->head, name, strlen(name) + 1);
        req->hdr_val[i] = req->head.len;
        req->hdr_val_len[i] = strlen(value);
        buf_append(&req->head, value, strlen(value) + 1);
    }
    va_end(ap);
}

/* The same with one header (or none when name is NULL). */
static void req_with(struct http_req *req, const char *name, const char *value) {
    if (name) req_make(req, "/v1/transcribe/stream", name, value, (const char *)NULL);
    else req_make(req, "/v1/transcribe/stream", (const char *)NULL);
}

static int origin_ok(const char *list, const char *origin) {
    static struct config cfg;
    snprintf(cfg.allowed_origins, sizeof cfg.allowed_origins, "%s", list);
    struct http_req req;
    req_with(&req, origin ? "Origin" : NULL, origin);
    int r = auth_check_origin(&cfg, &req);
    buf_cleanup(&req.head);
    ASSERT(r == 0 || r == ASR_E_ORIGIN_NOT_ALLOWED);
    return r == 0;
}

TEST(auth_origin_off_when_empty) {
    ASSERT(origin_ok("", "https://evil.example"));
    ASSERT(origin_ok("", "null"));
    ASSERT(origin_ok("", NULL));
}

TEST(auth_origin_listed_or_absent_passes) {
    const char *list = "https://app.example.com, http://localhost:3000 ,https://b.example:8443";
    ASSERT(origin_ok(list, "https://app.example.com"));
    ASSERT(origin_ok(list, "http://localhost:3000"));
    ASSERT(origin_ok(list, "https://b.example:8443"));
    ASSERT(origin_ok(list, "HTTPS://APP.example.COM"));   /* ASCII case does not matter */
    ASSERT(origin_ok(list, "https://app.example.com  ")); /* nor spaces around the value */
    ASSERT(origin_ok(list, NULL));                        /* no Origin: not a browser */
}

TEST(auth_origin_unlisted_is_refused) {
    const char *list = "https://app.example.com, http://localhost:3000,";
    ASSERT(!origin_ok(list, "https://evil.example"));
    ASSERT(!origin_ok(list, "https://app.example.com.evil.example")); /* no prefix matches */
    ASSERT(!origin_ok(list, "https://app.example.co"));
    ASSERT(!origin_ok(list, "http://app.example.com"));               /* the scheme counts */
    ASSERT(!origin_ok(list, "https://app.example.com:443"));          /* so does the port as sent */
    ASSERT(!origin_ok(list, "http://localhost:30000"));
    ASSERT(!origin_ok(list, "null"));
    ASSERT(!origin_ok(list, ""));                                     /* empty entries match nothing */
}

TEST(auth_origin_star_allows_any) {
    ASSERT(origin_ok("*", "https://evil.example"));
    ASSERT(origin_ok("https://app.example.com, *", "null"));
    ASSERT(origin_ok(" * ", "https://evil.example"));
    ASSERT(!origin_ok("https://*.example.com", "https://app.example.com")); /* no patterns */
}

/* The WebSocket's list is ASR_ALLOWED_ORIGINS, or ASR_CORS_ORIGINS when that
 * is empty; the server's own origin (host and port of the Host header)
 * always passes. */
TEST(auth_origin_follows_cors_when_unset_and_passes_same_origin) {
    static struct config cfg;
    struct http_req req;
    snprintf(cfg.cors_origins, sizeof cfg.cors_origins, "%s", "https://app.example.com");
    req_with(&req, "Origin", "https://evil.example");
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), ASR_E_ORIGIN_NOT_ALLOWED);
    buf_cleanup(&req.head);
    req_with(&req, "Origin", "https://app.example.com");
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), 0);
    buf_cleanup(&req.head);
    /* ASR_ALLOWED_ORIGINS, when set, is the list */
    snprintf(cfg.allowed_origins, sizeof cfg.allowed_origins, "%s", "https://other.example");
    req_with(&req, "Origin", "https://app.example.com");
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), ASR_E_ORIGIN_NOT_ALLOWED);
    buf_cleanup(&req.head);
    /* the server's own page, whatever the scheme; the port counts */
    req_make(&req, "/v1/transcribe/stream", "Host", "asr.example:8000", "Origin", "http://ASR.example:8000",
             (const char *)NULL);
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), 0);
    buf_cleanup(&req.head);
    req_make(&req, "/v1/transcribe/stream", "Host", "asr.example:8000", "Origin", "https://asr.example:8000",
             (const char *)NULL);
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), 0);
    buf_cleanup(&req.head);
    req_make(&req, "/v1/transcribe/stream", "Host", "asr.example:8000", "Origin", "http://asr.example:8001",
             (const char *)NULL);
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), ASR_E_ORIGIN_NOT_ALLOWED);
    buf_cleanup(&req.head);
    req_make(&req, "/v1/transcribe/stream", "Host", "asr.example", "Origin", "http://asr.example.evil",
             (const char *)NULL);
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), ASR_E_ORIGIN_NOT_ALLOWED);
    buf_cleanup(&req.head);
    req_make(&req, "/v1/transcribe/stream", "Host", "null", "Origin", "null", (const char *)NULL);
    ASSERT_EQ_INT(auth_check_origin(&cfg, &req), ASR_E_ORIGIN_NOT_ALLOWED);
    buf_cleanup(&req.head);
}

/* ---- tokens ------------------------------------------------------------------- */

#define NOW 1800000000ull

static void token_cfg(struct config *cfg, const char *keys, const char *secret) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->api_keys, sizeof cfg->api_keys, "%s", keys);
    snprintf(cfg->token_secret, sizeof cfg->token_secret, "%s", secret);
}

static void mint(const struct config *cfg, const char *key, unsigned scope, uint64_t exp, char *out) {
    ASSERT_EQ_INT(auth_token_mint(cfg, key, strlen(key), scope, exp, out, AUTH_TOKEN_LEN + 1), 0);
    ASSERT_EQ_INT(strlen(out), AUTH_TOKEN_LEN);
    ASSERT(strncmp(out, AUTH_TOKEN_PREFIX, strlen(AUTH_TOKEN_PREFIX)) == 0);
}

TEST(auth_token_round_trip) {
    ASSERT(sodium_init() >= 0);
    static struct config cfg;
    token_cfg(&cfg, "k1,k2", "a secret of sixteen bytes or more");
    char t[AUTH_TOKEN_LEN + 1];
    mint(&cfg, "k2", AUTH_SCOPE_STREAM, NOW + 60, t);
    unsigned scope = 0;
    uint64_t exp = 0;
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t), NOW, &scope, &exp), 0);
    ASSERT_EQ_INT(scope, AUTH_SCOPE_STREAM);
    ASSERT_EQ_INT(exp, NOW + 60);
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t), NOW + 59, NULL, NULL), 0);
    /* another instance with the same secret (and key) accepts it */
    static struct config other;
    token_cfg(&other, "k2", "a secret of sixteen bytes or more");
    ASSERT_EQ_INT(auth_token_verify(&other, t, strlen(t), NOW, NULL, NULL), 0);
}

TEST(auth_token_expired_at_its_second) {
    ASSERT(sodium_init() >= 0);
    static struct config cfg;
    token_cfg(&cfg, "k1", "a secret of sixteen bytes or more");
    char t[AUTH_TOKEN_LEN + 1];
    mint(&cfg, "k1", AUTH_SCOPE_ALL, NOW + 60, t);
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t), NOW + 60, NULL, NULL), ASR_E_TOKEN_EXPIRED);
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t), NOW + 86400, NULL, NULL), ASR_E_TOKEN_EXPIRED);
}

TEST(auth_token_forged_or_foreign_is_invalid) {
    ASSERT(sodium_init() >= 0);
    static struct config cfg, other;
    token_cfg(&cfg, "k1", "a secret of sixteen bytes or more");
    token_cfg(&other, "k1", "another secret, also long enough");
    char t[AUTH_TOKEN_LEN + 1], x[AUTH_TOKEN_LEN + 8];
    mint(&cfg, "k1", AUTH_SCOPE_ALL, NOW + 60, t);
    ASSERT_EQ_INT(auth_token_verify(&other, t, strlen(t), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    /* every character changed, one at a time, breaks it (payload or MAC) */
    for (size_t i = strlen(AUTH_TOKEN_PREFIX); i < AUTH_TOKEN_LEN; i++) {
        memcpy(x, t, sizeof t);
        x[i] = x[i] == 'A' ? 'B' : 'A';
        int r = auth_token_verify(&cfg, x, strlen(x), NOW, NULL, NULL);
        if (r != ASR_E_TOKEN_INVALID) TEST_FAIL_("char %zu changed: %d", i, r);
    }
    /* the expiry pushed forward by hand: the MAC no longer matches */
    unsigned char raw[64];
    size_t rl = 0;
    ASSERT_EQ_INT(sodium_base642bin(raw, sizeof raw, t + 6, AUTH_TOKEN_LEN - 6, NULL, &rl, NULL,
                                    sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
    raw[5]++;
    memcpy(x, AUTH_TOKEN_PREFIX, 6);
    sodium_bin2base64(x + 6, sizeof x - 6, raw, rl, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    ASSERT_EQ_INT(auth_token_verify(&cfg, x, strlen(x), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    /* shapes that are not tokens */
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t) - 1, NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    ASSERT_EQ_INT(auth_token_verify(&cfg, "asrd1.", 6, NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    /* a byte outside the alphabet: libsodium 1.0.18 reads some of them
     * (0x85 among others) as letters, so the same token had other spellings */
    for (size_t i = strlen(AUTH_TOKEN_PREFIX); i < AUTH_TOKEN_LEN; i++)
        for (int b = 0x80; b <= 0xff; b++) {
            memcpy(x, t, sizeof t);
            x[i] = (char)b;
            if (auth_token_verify(&cfg, x, AUTH_TOKEN_LEN, NOW, NULL, NULL) != ASR_E_TOKEN_INVALID)
                TEST_FAIL_("byte 0x%x at %zu accepted", b, i);
        }
    memcpy(x, t, sizeof t);
    x[10] = '=';
    ASSERT_EQ_INT(auth_token_verify(&cfg, x, strlen(x), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    memcpy(x, t, sizeof t);
    x[4] = '2'; /* asrd2. */
    ASSERT_EQ_INT(auth_token_verify(&cfg, x, strlen(x), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    /* no secret: nothing is genuine, nothing can be minted */
    static struct config none;
    token_cfg(&none, "k1", "");
    ASSERT_EQ_INT(auth_token_verify(&none, t, strlen(t), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    ASSERT_EQ_INT(auth_token_mint(&none, "k1", 2, AUTH_SCOPE_ALL, NOW, x, sizeof x), ASR_EINVAL);
    ASSERT_EQ_INT(auth_token_mint(&cfg, "k1", 2, 0, NOW, x, sizeof x), ASR_EINVAL);
    ASSERT_EQ_INT(auth_token_mint(&cfg, "k1", 2, AUTH_SCOPE_ALL, NOW, x, AUTH_TOKEN_LEN), ASR_EINVAL);
}

TEST(auth_token_of_a_removed_key_is_invalid) {
    ASSERT(sodium_init() >= 0);
    static struct config cfg;
    token_cfg(&cfg, "k1,k2", "a secret of sixteen bytes or more");
    char t[AUTH_TOKEN_LEN + 1];
    mint(&cfg, "k1", AUTH_SCOPE_ALL, NOW + 60, t);
    snprintf(cfg.api_keys, sizeof cfg.api_keys, "%s", "k2");
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
    /* minted while auth was off (no key): refused once keys exist */
    mint(&cfg, "", AUTH_SCOPE_ALL, NOW + 60, t);
    ASSERT_EQ_INT(auth_token_verify(&cfg, t, strlen(t), NOW, NULL, NULL), ASR_E_TOKEN_INVALID);
}

static int check(const struct config *cfg, unsigned scope, const char *url, const char *name, const char *value) {
    struct http_req req;
    if (name) req_make(&req, url, name, value, (const char *)NULL);
    else req_make(&req, url, (const char *)NULL);
    int r = auth_check(cfg, &req, scope, NOW);
    buf_cleanup(&req.head);
    return r;
}

TEST(auth_check_keys_and_tokens_wherever_they_are_sent) {
    ASSERT(sodium_init() >= 0);
    static struct config cfg;
    token_cfg(&cfg, "k1", "a secret of sixteen bytes or more");
    char t[AUTH_TOKEN_LEN + 1], bearer[128], url[256];
    mint(&cfg, "k1", AUTH_SCOPE_STREAM, NOW + 60, t);
    snprintf(bearer, sizeof bearer, "Bearer %s", t);
    const unsigned S = AUTH_SCOPE_STREAM, F = AUTH_SCOPE_TRANSCRIBE;
    ASSERT_EQ_INT(check(&cfg, S, "/s", "Authorization", "Bearer k1"), 0);
    ASSERT_EQ_INT(check(&cfg, F, "/s", "X-API-Key", "k1"), 0);
    ASSERT_EQ_INT(check(&cfg, F, "/s?api_key=k1", NULL, NULL), 0);
    ASSERT_EQ_INT(check(&cfg, S, "/s", "Authorization", bearer), 0);
    ASSERT_EQ_INT(check(&cfg, S, "/s", "X-API-Key", t), 0);
    snprintf(url, sizeof url, "/s?sample_rate=16000&token=%s", t);
    ASSERT_EQ_INT(check(&cfg, S, url, NULL, NULL), 0);
    snprintf(url, sizeof url, "/s?api_key=%s", t);
    ASSERT_EQ_INT(check(&cfg, S, url, NULL, NULL), 0);
    /* the token's scope is stream only */
    ASSERT_EQ_INT(check(&cfg, F, "/s", "Authorization", bearer), ASR_E_TOKEN_SCOPE);
    /* refusals */
    ASSERT_EQ_INT(check(&cfg, S, "/s", NULL, NULL), ASR_E_UNAUTHORIZED);
    ASSERT_EQ_INT(check(&cfg, S, "/s", "Authorization", "Bearer k2"), ASR_E_UNAUTHORIZED);
    ASSERT_EQ_INT(check(&cfg, S, "/s?token=asrd1.nope", NULL, NULL), ASR_E_TOKEN_INVALID);
    ASSERT_EQ_INT(check(&cfg, S, "/s", "Authorization", "Basic azE6"), ASR_E_UNAUTHORIZED);
    mint(&cfg, "k1", AUTH_SCOPE_ALL, NOW, t); /* expires now */
    snprintf(url, sizeof url, "/s?token=%s", t);
    ASSERT_EQ_INT(check(&cfg, S, url, NULL, NULL), ASR_E_TOKEN_EXPIRED);
    /* the first source present is the one checked */
    struct http_req req;
    req_make(&req, url, "X-API-Key", "k1", (const char *)NULL);
    ASSERT_EQ_INT(auth_check(&cfg, &req, S, NOW), 0);
    buf_cleanup(&req.head);
    /* auth off: nothing is looked at */
    static struct config off;
    token_cfg(&off, "", "a secret of sixteen bytes or more");
    ASSERT_EQ_INT(check(&off, S, url, NULL, NULL), 0);
    ASSERT_EQ_INT(check(&off, S, "/s", NULL, NULL), 0);
}

static void owner_of(const struct config *cfg, const char *name, const char *value, char out[AUTH_OWNER_LEN + 1]) {
    struct http_req req;
    req_make(&req, "/v1/jobs", name, value, (const char *)NULL);
    auth_key_owner(cfg, &req, out);
    buf_cleanup(&req.head);
}

/* A key and the tokens minted with it own the same jobs (docs/API.md
 * "Jobs"); another key owns others; auth off, "-". */
TEST(auth_owner_of_a_key_and_its_tokens) {
    ASSERT(sodium_init() >= 0);
    static struct config cfg;
    token_cfg(&cfg, "k1,k2", "a secret of sixteen bytes or more");
    uint64_t now = util_wall_ms() / 1000;
    char t1[AUTH_TOKEN_LEN + 1], t2[AUTH_TOKEN_LEN + 1], bearer[128];
    mint(&cfg, "k1", AUTH_SCOPE_TRANSCRIBE, now + 600, t1);
    mint(&cfg, "k2", AUTH_SCOPE_ALL, now + 600, t2);
    char ok1[AUTH_OWNER_LEN + 1], ot1[AUTH_OWNER_LEN + 1], ok2[AUTH_OWNER_LEN + 1], ot2[AUTH_OWNER_LEN + 1];
    owner_of(&cfg, "X-API-Key", "k1", ok1);
    snprintf(bearer, sizeof bearer, "Bearer %s", t1);
    owner_of(&cfg, "Authorization", bearer, ot1);
    owner_of(&cfg, "Authorization", "Bearer k2", ok2);
    owner_of(&cfg, "X-API-Key", t2, ot2);
    ASSERT_EQ_INT(strlen(ok1), AUTH_OWNER_LEN);
    ASSERT_STR_EQ(ok1, ot1);
    ASSERT_STR_EQ(ok2, ot2);
    ASSERT(strcmp(ok1, ok2) != 0);
    ASSERT(strstr(ok1, "k1") == NULL);
    static struct config off;
    token_cfg(&off, "", "a secret of sixteen bytes or more");
    owner_of(&off, "X-API-Key", "k1", ok1);
    ASSERT_STR_EQ(ok1, "-");
}

static int parse(const char *body, unsigned *scope, unsigned *ttl) {
    const char *why = NULL;
    int r = auth_token_request_parse(body, strlen(body), 300, scope, ttl, &why);
    ASSERT(r == 0 || (r == ASR_E_BAD_REQUEST && why && why[0]));
    return r;
}

TEST(auth_token_request_fields) {
    unsigned scope, ttl;
    ASSERT_EQ_INT(parse("", &scope, &ttl), 0);
    ASSERT_EQ_INT(scope, AUTH_SCOPE_ALL);
    ASSERT_EQ_INT(ttl, 300);
    ASSERT_EQ_INT(parse(" \r\n", &scope, &ttl), 0);
    ASSERT_EQ_INT(parse("{}", &scope, &ttl), 0);
    ASSERT_EQ_INT(scope, AUTH_SCOPE_ALL);
    ASSERT_EQ_INT(parse("{\"scope\":[\"stream\"],\"expires_in\":30,\"other\":1}", &scope, &ttl), 0);
    ASSERT_EQ_INT(scope, AUTH_SCOPE_STREAM);
    ASSERT_EQ_INT(ttl, 30);
    ASSERT_EQ_INT(parse("{\"scope\":[\"transcribe\",\"transcribe\"],\"expires_in\":300}", &scope, &ttl), 0);
    ASSERT_EQ_INT(scope, AUTH_SCOPE_TRANSCRIBE);
    ASSERT_EQ_INT(ttl, 300);
    const char *bad[] = {
        "{", "[]", "\"x\"", "null", "{\"scope\":[]}", "{\"scope\":\"stream\"}", "{\"scope\":[\"admin\"]}",
        "{\"scope\":[\"stream\",1]}", "{\"expires_in\":0}", "{\"expires_in\":301}", "{\"expires_in\":-5}",
        "{\"expires_in\":1.5}", "{\"expires_in\":\"60\"}", "{\"scope\":[\"stream\"],\"scope\":[\"stream\"]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (parse(bad[i], &scope, &ttl) != ASR_E_BAD_REQUEST) TEST_FAIL_("accepted: %s", bad[i]);
}

TEST(auth_scope_names) {
    struct buf b;
    buf_init(&b, 0);
    auth_scope_json(&b, AUTH_SCOPE_ALL);
    buf_append(&b, "", 1);
    ASSERT_STR_EQ(b.data, "[\"stream\",\"transcribe\"]");
    buf_reset(&b);
    auth_scope_json(&b, AUTH_SCOPE_TRANSCRIBE);
    buf_append(&b, "", 1);
    ASSERT_STR_EQ(b.data, "[\"transcribe\"]");
    buf_cleanup(&b);
}
