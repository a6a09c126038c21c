/* Who may use the transcription endpoints (docs/API.md "Authentication"):
 * API keys for every transcription request, and an Origin allowlist for
 * WebSocket upgrades. Pure checks of one parsed request against the
 * configuration: no I/O, no state; the caller answers the refusal. */
#ifndef ASRD_API_AUTH_H
#define ASRD_API_AUTH_H

#include "base/config.h"
#include "net/http.h"

/* API keys (ASR_API_KEYS, comma-separated): 0 when the request may pass (no
 * keys configured, or the key it carries is one of them),
 * ASR_E_UNAUTHORIZED otherwise. The key is the first present of
 * `Authorization: Bearer <key>`, `X-API-Key: <key>` and `?api_key=<key>`;
 * it is compared with every configured key through a hash and
 * sodium_memcmp, so the time taken does not depend on where they differ.
 * Needs sodium_init(). cfg and req are borrowed for the call. */
int auth_check_key(const struct config *cfg, const struct http_req *req);

/* Who owns what a request creates (jobs, batches): with keys configured,
 * 32 hex characters of a keyed hash of the key it carries (the key itself
 * is never stored); "-" when keys are off. Check the key first
 * (auth_check_key). */
#define AUTH_OWNER_LEN 32
void auth_key_owner(const struct config *cfg, const struct http_req *req, char out[AUTH_OWNER_LEN + 1]);

/* The Origin allowlist of WebSocket upgrades (ASR_ALLOWED_ORIGINS:
 * comma-separated origins such as https://app.example.com, or `*`): 0 when
 * the upgrade may pass: the list is empty (the check is off), holds `*`,
 * the request has no Origin header (not sent by a browser), or its Origin
 * equals an entry (ASCII case-insensitive; spaces around entries ignored).
 * ASR_E_ORIGIN_NOT_ALLOWED otherwise. cfg and req are borrowed for the
 * call. */
int auth_check_origin(const struct config *cfg, const struct http_req *req);

#endif
