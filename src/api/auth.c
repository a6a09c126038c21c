/* API keys, access tokens and the Origin allowlist (auth.h), and the route
 * that mints tokens (api.h, api_auth_token). */
#include "api/auth.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "base/err.h"
#include "base/metrics.h"
#include "base/util.h"

#define TOKEN_VERSION 1
#define PAYLOAD_BYTES 18 /* version, expiry (8), scope, key id (8) */
#define KEY_ID_BYTES 8
#define RAW_BYTES (PAYLOAD_BYTES + crypto_auth_hmacsha256_BYTES)
#define PREFIX_LEN (sizeof AUTH_TOKEN_PREFIX - 1)

_Static_assert(PREFIX_LEN + (RAW_BYTES * 4 + 2) / 3 == AUTH_TOKEN_LEN, "AUTH_TOKEN_LEN");

static int token_open(const struct config *c, const char *tok, size_t len, uint64_t now_s, unsigned *scope,
                      uint64_t *expires_at_s, unsigned char id[KEY_ID_BYTES]);

/* ---- credentials ------------------------------------------------------------- */

/* The request's credential (auth.h, auth_check: the first present source)
 * into out, NUL-terminated. Returns its length, or -1 when there is none
 * (or it does not fit: no key or token is that long). */
static int credential(const struct http_req *req, char *out, size_t cap) {
    size_t gl = 0;
    const char *h = http_header(req, "authorization", &gl);
    if (h && gl > 7 && strncasecmp(h, "Bearer ", 7) == 0) {
        if (gl - 7 >= cap) return -1;
        memcpy(out, h + 7, gl - 7);
        out[gl - 7] = '\0';
        return (int)(gl - 7);
    }
    if ((h = http_header(req, "x-api-key", &gl))) {
        if (gl >= cap) return -1;
        memcpy(out, h, gl);
        out[gl] = '\0';
        return (int)gl;
    }
    int r = http_query(req, "token", out, cap);
    if (r == -1) r = http_query(req, "api_key", out, cap);
    return r >= 0 ? r : -1;
}

static void key_id(const char *key, size_t len, unsigned char id[KEY_ID_BYTES]) {
    crypto_generichash(id, KEY_ID_BYTES, (const unsigned char *)key, len, NULL, 0);
}

/* Whether given is one of the configured keys. Hashes are compared, so the
 * time taken does not depend on where a key differs. */
static int is_key(const char *keys, const char *given, size_t gl) {
    unsigned char hg[crypto_generichash_BYTES], hk[crypto_generichash_BYTES];
    crypto_generichash(hg, sizeof hg, (const unsigned char *)given, gl, NULL, 0);
    int ok = 0;
    for (const char *p = keys; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        crypto_generichash(hk, sizeof hk, (const unsigned char *)p, l, NULL, 0);
        if (l && sodium_memcmp(hg, hk, sizeof hg) == 0) ok = 1;
        if (!e) break;
        p = e + 1;
    }
    return ok;
}

/* Whether a configured key has this id (a token's key is still valid). */
static int key_id_known(const char *keys, const unsigned char id[KEY_ID_BYTES]) {
    unsigned char k[KEY_ID_BYTES];
    int ok = 0;
    for (const char *p = keys; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        key_id(p, l, k);
        if (l && sodium_memcmp(k, id, KEY_ID_BYTES) == 0) ok = 1;
        if (!e) break;
        p = e + 1;
    }
    return ok;
}

int auth_check(const struct config *c, const struct http_req *req, unsigned scope, uint64_t now_s) {
    if (!c->api_keys[0]) return 0;
    char given[256];
    int gl = credential(req, given, sizeof given);
    if (gl < 0) return ASR_E_UNAUTHORIZED;
    int r;
    unsigned granted = 0;
    if (is_key(c->api_keys, given, (size_t)gl)) r = 0;
    else if ((size_t)gl < PREFIX_LEN || memcmp(given, AUTH_TOKEN_PREFIX, PREFIX_LEN) != 0) r = ASR_E_UNAUTHORIZED;
    else if ((r = auth_token_verify(c, given, (size_t)gl, now_s, &granted, NULL)) == 0)
        r = (granted & scope) == scope ? 0 : ASR_E_TOKEN_SCOPE;
    sodium_memzero(given, sizeof given);
    return r;
}

int auth_check_key(const struct config *c, const struct http_req *req) {
    return auth_check(c, req, AUTH_SCOPE_TRANSCRIBE, util_wall_ms() / 1000);
}

/* The owner is a keyed hash of the key's id (the id a token carries), so a
 * key and every token minted with it own the same jobs. */
void auth_key_owner(const struct config *c, const struct http_req *req, char out[AUTH_OWNER_LEN + 1]) {
    snprintf(out, AUTH_OWNER_LEN + 1, "-");
    if (!c->api_keys[0]) return;
    char given[256];
    int gl = credential(req, given, sizeof given);
    if (gl < 0) return;
    unsigned char id[KEY_ID_BYTES];
    int have = 0;
    if (is_key(c->api_keys, given, (size_t)gl)) {
        key_id(given, (size_t)gl, id);
        have = 1;
    } else if (token_open(c, given, (size_t)gl, util_wall_ms() / 1000, NULL, NULL, id) == 0) {
        have = 1;
    }
    sodium_memzero(given, sizeof given);
    if (!have) return;
    unsigned char h[AUTH_OWNER_LEN / 2];
    crypto_generichash(h, sizeof h, id, sizeof id, (const unsigned char *)"asrd-owner", 10);
    sodium_bin2hex(out, AUTH_OWNER_LEN + 1, h, sizeof h);
}

void auth_count_refusal(int err) {
    switch (err) {
    case ASR_E_UNAUTHORIZED: metrics.auth_refused[AREF_UNAUTHORIZED]++; break;
    case ASR_E_TOKEN_INVALID: metrics.auth_refused[AREF_TOKEN_INVALID]++; break;
    case ASR_E_TOKEN_EXPIRED: metrics.auth_refused[AREF_TOKEN_EXPIRED]++; break;
    case ASR_E_TOKEN_SCOPE: metrics.auth_refused[AREF_TOKEN_SCOPE]++; break;
    default: break;
    }
}

const char *auth_refusal_message(int err) {
    switch (err) {
    case ASR_E_UNAUTHORIZED: return "missing or wrong API key or access token";
    case ASR_E_TOKEN_INVALID:
        return "access token not valid here: malformed, signed with another secret, or its key was removed";
    case ASR_E_TOKEN_EXPIRED: return "access token expired: ask POST /v1/auth/token for a new one";
    case ASR_E_TOKEN_SCOPE: return "access token does not grant this route (its scope)";
    case ASR_E_ORIGIN_NOT_ALLOWED: return "this Origin may not open streams on this server";
    default: return asr_strerror(err);
    }
}

void auth_respond_refusal(struct http_conn *hc, int err) {
    auth_count_refusal(err);
    http_respond_err(hc, err, auth_refusal_message(err));
}

int auth_check_origin(const struct config *c, const struct http_req *req) {
    const char *list = c->allowed_origins[0] ? c->allowed_origins : c->cors_origins;
    if (!list[0]) return 0;
    return http_origin_check(list, req) == HTTP_ORIGIN_OTHER ? ASR_E_ORIGIN_NOT_ALLOWED : 0;
}

/* ---- tokens ------------------------------------------------------------------- */

static void mac(const struct config *c, const unsigned char *payload, unsigned char out[crypto_auth_hmacsha256_BYTES]) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)c->token_secret, strlen(c->token_secret));
    crypto_auth_hmacsha256_update(&st, payload, PAYLOAD_BYTES);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

int auth_token_mint(const struct config *c, const char *key, size_t key_len, unsigned scope,
                    uint64_t expires_at_s, char *out, size_t cap) {
    if (!c->token_secret[0] || !(scope & AUTH_SCOPE_ALL) || (scope & ~AUTH_SCOPE_ALL) || cap <= AUTH_TOKEN_LEN)
        return ASR_EINVAL;
    unsigned char raw[RAW_BYTES];
    raw[0] = TOKEN_VERSION;
    for (int i = 0; i < 8; i++) raw[1 + i] = (unsigned char)(expires_at_s >> (56 - 8 * i));
    raw[9] = (unsigned char)scope;
    key_id(key, key_len, raw + 10);
    mac(c, raw, raw + PAYLOAD_BYTES);
    memcpy(out, AUTH_TOKEN_PREFIX, PREFIX_LEN);
    sodium_bin2base64(out + PREFIX_LEN, cap - PREFIX_LEN, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

/* The URL-safe base64 alphabet. Checked before decoding: libsodium
 * 1.0.18's decoder takes some bytes above 0x7f for letters (found by
 * fuzz_web), which made other spellings of a genuine token pass. */
static int b64url_only(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_'))
            return 0;
    }
    return 1;
}

/* auth_token_verify(), and the id of the key the token was minted with
 * into id (when not NULL). */
static int token_open(const struct config *c, const char *tok, size_t len, uint64_t now_s, unsigned *scope,
                      uint64_t *expires_at_s, unsigned char id[KEY_ID_BYTES]) {
    unsigned char raw[RAW_BYTES];
    size_t raw_len = 0;
    if (!c->token_secret[0] || len != AUTH_TOKEN_LEN || memcmp(tok, AUTH_TOKEN_PREFIX, PREFIX_LEN) != 0 ||
        !b64url_only(tok + PREFIX_LEN, len - PREFIX_LEN) ||
        sodium_base642bin(raw, sizeof raw, tok + PREFIX_LEN, len - PREFIX_LEN, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        raw_len != sizeof raw)
        return ASR_E_TOKEN_INVALID;
    unsigned char want[crypto_auth_hmacsha256_BYTES];
    mac(c, raw, want);
    int genuine = sodium_memcmp(want, raw + PAYLOAD_BYTES, sizeof want) == 0;
    if (!genuine || raw[0] != TOKEN_VERSION || !(raw[9] & AUTH_SCOPE_ALL) || (raw[9] & ~AUTH_SCOPE_ALL))
        return ASR_E_TOKEN_INVALID;
    if (c->api_keys[0] && !key_id_known(c->api_keys, raw + 10)) return ASR_E_TOKEN_INVALID;
    uint64_t exp = 0;
    for (int i = 0; i < 8; i++) exp = exp << 8 | raw[1 + i];
    if (now_s >= exp) return ASR_E_TOKEN_EXPIRED;
    if (scope) *scope = raw[9];
    if (expires_at_s) *expires_at_s = exp;
    if (id) memcpy(id, raw + 10, KEY_ID_BYTES);
    return 0;
}

int auth_token_verify(const struct config *c, const char *tok, size_t len, uint64_t now_s, unsigned *scope,
                      uint64_t *expires_at_s) {
    return token_open(c, tok, len, now_s, scope, expires_at_s, NULL);
}

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {{"stream", AUTH_SCOPE_STREAM}, {"transcribe", AUTH_SCOPE_TRANSCRIBE}};

void auth_scope_json(struct buf *out, unsigned scope) {
    buf_puts(out, "[");
    int first = 1;
    for (size_t i = 0; i < sizeof scope_names / sizeof *scope_names; i++) {
        if (!(scope & scope_names[i].bit)) continue;
        buf_printf(out, "%s\"%s\"", first ? "" : ",", scope_names[i].name);
        first = 0;
    }
    buf_puts(out, "]");
}

int auth_token_request_parse(const char *body, size_t len, unsigned max_ttl_s, unsigned *scope, unsigned *ttl_s,
                             const char **why) {
    *scope = AUTH_SCOPE_ALL;
    *ttl_s = max_ttl_s;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) i++;
    if (i == len) return 0;
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = ASR_E_BAD_REQUEST;
    if (!o || !json_is_object(o)) {
        *why = "the body must be empty or a JSON object";
        goto out;
    }
    json_t *s = json_object_get(o, "scope");
    if (s) {
        if (!json_is_array(s) || json_array_size(s) == 0) {
            *why = "scope must be a non-empty array of \"stream\" and \"transcribe\"";
            goto out;
        }
        unsigned bits = 0;
        size_t k;
        json_t *v;
        json_array_foreach(s, k, v) {
            unsigned bit = 0;
            for (size_t n = 0; n < sizeof scope_names / sizeof *scope_names; n++)
                if (json_is_string(v) && strcmp(json_string_value(v), scope_names[n].name) == 0)
                    bit = scope_names[n].bit;
            if (!bit) {
                *why = "scope must be a non-empty array of \"stream\" and \"transcribe\"";
                goto out;
            }
            bits |= bit;
        }
        *scope = bits;
    }
    json_t *e = json_object_get(o, "expires_in");
    if (e) {
        json_int_t v = json_is_integer(e) ? json_integer_value(e) : 0;
        if (v < 1 || (uint64_t)v > max_ttl_s) {
            *why = "expires_in must be an integer of seconds from 1 to ASR_TOKEN_TTL_S";
            goto out;
        }
        *ttl_s = (unsigned)v;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* ---- POST /v1/auth/token (docs/API.md "POST /v1/auth/token") ------------------ */

/* Only an API key mints tokens, so a token cannot extend its own life. With
 * no keys configured (auth off) anyone may mint: a page then works the same
 * way with and without keys. Such a token carries the id of the empty key,
 * so it is refused once keys are configured. */
void api_auth_token(void *ctx, struct http_conn *hc, struct http_req *req) {
    const struct config *c = ((struct api *)ctx)->env->cfg;
    char given[256] = "";
    int gl = 0;
    if (c->api_keys[0]) {
        gl = credential(req, given, sizeof given);
        if (gl < 0 || !is_key(c->api_keys, given, (size_t)gl)) {
            metrics.auth_refused[AREF_UNAUTHORIZED]++;
            http_respond_error(hc, 401, "UNAUTHORIZED",
                               gl >= 0 && strncmp(given, AUTH_TOKEN_PREFIX, PREFIX_LEN) == 0
                                   ? "a token cannot mint tokens: send an API key"
                                   : "missing or wrong API key",
                               NULL);
            sodium_memzero(given, sizeof given);
            return;
        }
    }
    unsigned scope, ttl;
    const char *why = NULL;
    if (auth_token_request_parse(req->body.data, req->body.len, (unsigned)c->token_ttl_s, &scope, &ttl, &why) != 0) {
        sodium_memzero(given, sizeof given);
        http_respond_error(hc, 400, "BAD_REQUEST", why, NULL);
        return;
    }
    uint64_t exp = util_wall_ms() / 1000 + ttl;
    char tok[AUTH_TOKEN_LEN + 1];
    int r = auth_token_mint(c, given, (size_t)gl, scope, exp, tok, sizeof tok);
    sodium_memzero(given, sizeof given);
    if (r != 0) {
        http_respond_err(hc, ASR_E_INTERNAL, "tokens are not set up on this server (no ASR_TOKEN_SECRET)");
        return;
    }
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "{\"token\":\"%s\",\"expires_at\":%llu,\"expires_in\":%u,\"scope\":", tok,
               (unsigned long long)exp, ttl);
    auth_scope_json(&b, scope);
    buf_puts(&b, "}");
    metrics.auth_tokens_issued++;
    http_respond(hc, 200, "application/json", b.data, b.len, "Cache-Control: no-store\r\n");
    buf_cleanup(&b);
}
