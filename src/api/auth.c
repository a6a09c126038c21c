/* API keys and the Origin allowlist (auth.h). */
#include "api/auth.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"

/* The key a request carries, in the order of docs/API.md "Authentication",
 * into given (256 bytes). 0, or -1 when it has none. */
static int given_key(const struct http_req *req, char given[256]) {
    size_t gl = 0;
    given[0] = '\0';
    const char *h = http_header(req, "authorization", &gl);
    if (h && gl > 7 && strncasecmp(h, "Bearer ", 7) == 0 && gl - 7 < 256) {
        memcpy(given, h + 7, gl - 7);
        given[gl - 7] = '\0';
    } else if ((h = http_header(req, "x-api-key", &gl)) && gl < 256) {
        memcpy(given, h, gl);
        given[gl] = '\0';
    } else if (http_query(req, "api_key", given, 256) < 0) {
        return -1;
    }
    return 0;
}

void auth_key_owner(const struct config *c, const struct http_req *req, char out[AUTH_OWNER_LEN + 1]) {
    char given[256];
    if (!c->api_keys[0] || given_key(req, given) != 0) {
        snprintf(out, AUTH_OWNER_LEN + 1, "-");
        return;
    }
    unsigned char h[crypto_generichash_BYTES_MIN];
    crypto_generichash(h, sizeof h, (const unsigned char *)given, strlen(given), (const unsigned char *)"asrd-owner",
                       10);
    sodium_memzero(given, sizeof given);
    sodium_bin2hex(out, AUTH_OWNER_LEN + 1, h, AUTH_OWNER_LEN / 2);
}

int auth_check_key(const struct config *c, const struct http_req *req) {
    const char *keys = c->api_keys;
    if (!keys[0]) return 0;
    char given[256];
    if (given_key(req, given) != 0) return ASR_E_UNAUTHORIZED;
    /* Compare hashes so the time taken does not depend on where keys differ. */
    unsigned char hg[crypto_generichash_BYTES], hk[crypto_generichash_BYTES];
    crypto_generichash(hg, sizeof hg, (const unsigned char *)given, strlen(given), NULL, 0);
    int ok = 0;
    for (const char *p = keys; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        crypto_generichash(hk, sizeof hk, (const unsigned char *)p, l, NULL, 0);
        if (l && sodium_memcmp(hg, hk, sizeof hg) == 0) ok = 1;
        if (!e) break;
        p = e + 1;
    }
    return ok ? 0 : ASR_E_UNAUTHORIZED;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* p[0..*n) without the spaces and tabs around it. */
static const char *trim(const char *p, size_t *n) {
    while (*n && is_space(*p)) p++, (*n)--;
    while (*n && is_space(p[*n - 1])) (*n)--;
    return p;
}

/* An origin is public (scheme, host, port), so a plain comparison will do:
 * nothing here is a secret to time. */
int auth_check_origin(const struct config *c, const struct http_req *req) {
    const char *list = c->allowed_origins;
    size_t ol = 0;
    const char *origin = list[0] ? http_header(req, "origin", &ol) : NULL;
    if (!origin) return 0;
    origin = trim(origin, &ol);
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *entry = trim(p, &l);
        if (l == 1 && entry[0] == '*') return 0;
        if (l && l == ol && strncasecmp(entry, origin, l) == 0) return 0;
        if (!e) break;
        p = e + 1;
    }
    return ASR_E_ORIGIN_NOT_ALLOWED;
}
