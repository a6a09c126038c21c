#include "test.h"

#include "api/auth.h"
#include "base/err.h"

/* A request as http.c leaves it, with one header (or none when name is
 * NULL): names and values NUL-separated in req->head. */
static void req_with(struct http_req *req, const char *name, const char *value) {
    memset(req, 0, sizeof *req);
    buf_init(&req->head, 0);
    buf_append(&req->head, "/v1/transcribe/stream", 22); /* the url, NUL included */
    req->url_len = req->path_len = 21;
    if (!name) return;
    req->hdr_name[0] = req->head.len;
    req->hdr_name_len[0] = strlen(name);
    buf_append(&req->head, name, strlen(name) + 1);
    req->hdr_val[0] = req->head.len;
    req->hdr_val_len[0] = strlen(value);
    buf_append(&req->head, value, strlen(value) + 1);
    req->n_headers = 1;
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
