/* Who may use the transcription endpoints (docs/API.md "Authentication"
 * and "Access tokens"): API keys, short-lived access tokens signed by the
 * server, and an Origin allowlist for WebSocket upgrades. The checks are
 * pure functions of one parsed request and the configuration (no I/O, no
 * state; the clock is an argument); auth_respond_refusal() answers and
 * counts a refusal, and api_auth_token (api.h) is the route that mints
 * tokens.
 *
 * A token is "asrd1." followed by the unpadded URL-safe base64 of an
 * 18-byte payload and its HMAC-SHA-256 (libsodium crypto_auth_hmacsha256)
 * under ASR_TOKEN_SECRET: the payload is a version byte (1), the expiry
 * (Unix seconds, 8 bytes big-endian), the scope (one byte of AUTH_SCOPE_*
 * bits) and the key id (the first 8 bytes of the BLAKE2b hash of the API key
 * that minted it). Every process that has the same secret accepts it; a
 * token whose key is no longer in ASR_API_KEYS is refused. */
#ifndef ASRD_API_AUTH_H
#define ASRD_API_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "net/http.h"

/* What a token may be used for; API keys may do everything. */
enum auth_scope {
    AUTH_SCOPE_STREAM = 1u << 0,     /* "stream": GET /v1/transcribe/stream */
    AUTH_SCOPE_TRANSCRIBE = 1u << 1, /* "transcribe": the file routes (POST /v1/transcribe, /v1/audio/...) */
    AUTH_SCOPE_ALL = 3u,
};

#define AUTH_TOKEN_PREFIX "asrd1."
/* Length of a token's text: the prefix and 50 bytes in base64 (no NUL). */
#define AUTH_TOKEN_LEN 73

/* The credential of a request to a route that needs scope (one
 * AUTH_SCOPE_* bit): 0 when it may pass: no keys are configured (auth is
 * off: credentials are not looked at), the credential is a configured key,
 * or it is a valid token that grants scope. The credential is the first
 * present of `Authorization: Bearer <x>`, `X-API-Key: <x>`, `?token=<x>`
 * and `?api_key=<x>`; keys are compared through a hash, tokens' MACs
 * directly, both with sodium_memcmp (the time taken does not depend on
 * where they differ). Errors: ASR_E_UNAUTHORIZED (no credential,
 * or neither a key nor something that starts like a token),
 * ASR_E_TOKEN_INVALID, ASR_E_TOKEN_EXPIRED (now_s at or past its expiry),
 * ASR_E_TOKEN_SCOPE. now_s: Unix seconds. Needs sodium_init(). cfg and req
 * are borrowed for the call. */
int auth_check(const struct config *cfg, const struct http_req *req, unsigned scope, uint64_t now_s);

/* auth_check() for the file routes (scope AUTH_SCOPE_TRANSCRIBE) at the
 * current time. */
int auth_check_key(const struct config *cfg, const struct http_req *req);

/* Answers err (an auth_check or auth_check_origin refusal) with its status
 * and docs/API.md code, and counts it (metrics auth.refused). */
void auth_respond_refusal(struct http_conn *hc, int err);
/* For routes that answer in another shape (openai.c): what
 * auth_respond_refusal counts, and its message (static). */
void auth_count_refusal(int err);
const char *auth_refusal_message(int err);

/* Who owns what a request creates (jobs, batches): with keys configured,
 * 32 hex characters of a keyed hash of the key it carries (the key itself
 * is never stored), or for an access token of the key it was minted with;
 * "-" when keys are off. Check the credential first (auth_check). */
#define AUTH_OWNER_LEN 32
void auth_key_owner(const struct config *cfg, const struct http_req *req, char out[AUTH_OWNER_LEN + 1]);

/* The Origin allowlist of WebSocket upgrades: ASR_ALLOWED_ORIGINS, or when
 * that is empty ASR_CORS_ORIGINS (comma-separated origins such as
 * https://app.example.com, or `*`). 0 when the upgrade may pass: both lists
 * are empty (the check is off), the request has no Origin header (not sent
 * by a browser), its Origin is the server's own (host and port equal the
 * Host header), or it is listed (net/http.h, http_origin_check).
 * ASR_E_ORIGIN_NOT_ALLOWED otherwise. cfg and req are borrowed for the
 * call. */
int auth_check_origin(const struct config *cfg, const struct http_req *req);

/* Makes a token for key[0..key_len) (the API key that asks; empty when no
 * keys are configured) granting scope (AUTH_SCOPE_* bits, not 0) until
 * expires_at_s (Unix seconds), signed with cfg->token_secret. Writes
 * AUTH_TOKEN_LEN characters and a NUL into out (cap > AUTH_TOKEN_LEN).
 * Returns 0, or ASR_EINVAL (no secret, scope 0 or out too small). */
int auth_token_mint(const struct config *cfg, const char *key, size_t key_len, unsigned scope,
                    uint64_t expires_at_s, char *out, size_t cap);

/* Checks tok[0..len) (client bytes) against cfg at now_s: 0 with *scope and
 * *expires_at_s (either may be NULL); ASR_E_TOKEN_INVALID (not a token of
 * this format, a bad MAC, an unknown version, or with keys configured a key
 * id none of them has); ASR_E_TOKEN_EXPIRED (genuine, but now_s >= its
 * expiry). Needs sodium_init(). */
int auth_token_verify(const struct config *cfg, const char *tok, size_t len, uint64_t now_s, unsigned *scope,
                      uint64_t *expires_at_s);

/* The body of POST /v1/auth/token (client bytes): empty, or a JSON object
 * with optional "scope" (a non-empty array of "stream" and "transcribe")
 * and "expires_in" (an integer of seconds, 1..max_ttl_s); other fields are
 * ignored. 0 with *scope (default AUTH_SCOPE_ALL) and *ttl_s (default
 * max_ttl_s), or ASR_E_BAD_REQUEST with a static reason in *why. */
int auth_token_request_parse(const char *body, size_t len, unsigned max_ttl_s, unsigned *scope, unsigned *ttl_s,
                             const char **why);

/* Writes the scope bits as a JSON array of their names ("stream",
 * "transcribe") into out. */
struct buf;
void auth_scope_json(struct buf *out, unsigned scope);

#endif
