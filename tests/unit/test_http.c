/* net/http's request cycle (http.h, "Lifecycle"): the table of moves, the
 * phases a connection passes through for requests that arrive in pieces,
 * pipelined behind an asynchronous answer, and with Connection: close; the
 * 400 for a parser event out of order; the timer in and between requests;
 * the upgrade hand-off; drain. http.c is included to reach its internals. */
#include "net/http.c"

#include "net_pair.h"

/* ---- the table --------------------------------------------------------------- */

static const int http_moves[][2] = {
    {HTTP_ST_IDLE, HTTP_ST_HEAD},  {HTTP_ST_IDLE, HTTP_ST_BUSY},  {HTTP_ST_HEAD, HTTP_ST_BODY},
    {HTTP_ST_HEAD, HTTP_ST_BUSY},  {HTTP_ST_BODY, HTTP_ST_READY}, {HTTP_ST_BODY, HTTP_ST_BUSY},
    {HTTP_ST_READY, HTTP_ST_BUSY}, {HTTP_ST_BUSY, HTTP_ST_IDLE},  {HTTP_ST_BUSY, HTTP_ST_DONE},
    {HTTP_ST_BUSY, HTTP_ST_UPGRADED},
};

static int drawn(int from, int to) {
    for (size_t i = 0; i < sizeof http_moves / sizeof *http_moves; i++)
        if (http_moves[i][0] == from && http_moves[i][1] == to) return 1;
    return 0;
}

struct move { int from, to; };

static void try_move(void *arg) {
    const struct move *m = arg;
    struct conn c = {.id = 1};
    struct http_conn hc = {.c = &c, .state = (enum http_state)m->from};
    http_move(&hc, (enum http_state)m->to);
    if ((int)hc.state != m->to) _exit(3);
}

TEST(http_moves_follow_the_table) {
    for (int from = HTTP_ST_IDLE; from <= HTTP_ST_UPGRADED; from++)
        for (int to = HTTP_ST_IDLE; to <= HTTP_ST_UPGRADED; to++) {
            struct move m = {from, to};
            int aborted = np_aborts(try_move, &m);
            if (aborted == drawn(from, to))
                TEST_FAIL_("%s -> %s: %s", http_state_name(from), http_state_name(to),
                           aborted ? "refused, but the diagram has it" : "allowed, but the diagram lacks it");
        }
}

/* ---- a server with three routes ---------------------------------------------- */

static struct http_conn *held_;      /* the /async request, answered by the test */
static int upgraded_;
static struct buf rest_;

static void h_sync(void *ctx, struct http_conn *hc, struct http_req *req) {
    (void)ctx;
    (void)req;
    ASSERT_EQ_INT(http_state(hc), HTTP_ST_BUSY);
    http_respond(hc, 200, "text/plain", "sync", 4, NULL);
}

static void h_async(void *ctx, struct http_conn *hc, struct http_req *req) {
    (void)ctx;
    (void)req;
    held_ = hc;
}

static void nothing_read(struct conn *c, const char *p, size_t n) {
    (void)c;
    (void)p;
    (void)n;
}
static const struct conn_handler after_upgrade = {.on_read = nothing_read};

static void h_upgrade(void *ctx, struct http_conn *hc, struct http_req *req) {
    (void)ctx;
    (void)req;
    struct conn *c = http_conn_of(hc);
    http_upgrade(hc, "Upgrade: test\r\n", &rest_);
    conn_set_handler(c, &after_upgrade, NULL, CONN_WS);
    upgraded_++;
}

static char seen_[64];                /* h_item: the method and path it got */

static void h_item(void *ctx, struct http_conn *hc, struct http_req *req) {
    size_t pl;
    const char *p = http_path(req, &pl);
    snprintf(seen_, sizeof seen_, "%s %s %.*s", (const char *)ctx, http_method_str((enum http_method)req->method),
             (int)pl, p);
    http_respond(hc, 200, "text/plain", "item", 4, NULL);
}

static int shaped_body(struct buf *out, int status, const char *code, const char *msg) {
    return buf_printf(out, "{\"shaped\":%d,\"c\":\"%s\"}", status, code);
}

/* The route check of /guarded: a request without "Key: k" is refused. */
static int checks_;
static int check_key(void *ctx, const struct http_req *req, const char **msg) {
    (void)ctx;
    checks_++;
    const char *k = http_header(req, "key", NULL);
    if (k && strcmp(k, "k") == 0) return 0;
    *msg = "no key";
    return ASR_E_UNAUTHORIZED;
}

static const struct http_route routes[] = {
    {"/shaped", HTTP_POST, ROUTE_OTHER, h_sync, NULL, shaped_body, NULL, 0},
    {"/sync", HTTP_GET, ROUTE_OTHER, h_sync, NULL, NULL, NULL, 0},
    {"/post", HTTP_POST, ROUTE_OTHER, h_sync, NULL, NULL, NULL, 0},
    {"/guarded", HTTP_POST, ROUTE_OTHER, h_sync, NULL, NULL, check_key, 0},
    {"/async", HTTP_GET, ROUTE_OTHER, h_async, NULL, NULL, NULL, 0},
    {"/up", HTTP_GET, ROUTE_OTHER, h_upgrade, NULL, NULL, NULL, 0},
    {"/items", HTTP_POST, ROUTE_OTHER, h_item, "exact", NULL, NULL, 0},
    {"/items/", HTTP_GET, ROUTE_OTHER, h_item, "prefix", shaped_body, NULL, 1},
    {"/items/", HTTP_DELETE, ROUTE_OTHER, h_item, "prefix", shaped_body, NULL, 1},
};

static struct http_server srv = {
    .routes = routes,
    .n_routes = sizeof routes / sizeof *routes,
    .max_header_bytes = 4096,
    .max_upload_bytes = 65536,
    .handshake_timeout_ms = 10000,
    .body_timeout_ms = 10000,
};

static struct conn *open_http(int *peer) {
    struct conn *c = np_conn(peer);
    ASSERT_EQ_INT(http_conn_start(c, &srv), 0);
    return c;
}

static struct conn *start(int *peer) {
    np_init();
    held_ = NULL;
    upgraded_ = 0;
    checks_ = 0;
    return open_http(peer);
}

static struct http_conn *hc_of(struct conn *c) { return c->proto; }

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

TEST(http_phases_of_requests_in_pieces) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    np_send(peer, "POST /post HTTP/1.1\r\nHost: x", 28);
    np_pump(2);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_HEAD);
    np_send(peer, "\r\nContent-Length: 5\r\n\r\nab", 25);
    np_pump(2);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_BODY);
    np_send(peer, "cde", 3);
    np_pump(2);
    /* Answered at once (h_sync): keep-alive, back to IDLE. */
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT_EQ_INT(count(buf, "HTTP/1.1 200 OK"), 1);
    ASSERT(strstr(buf, "Connection: keep-alive") != NULL);
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    close(peer);
}

TEST(http_pipelined_behind_an_async_answer) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    const char two[] = "GET /async HTTP/1.1\r\n\r\nGET /sync HTTP/1.1\r\n\r\n";
    np_send(peer, two, sizeof two - 1);
    np_pump(2);
    ASSERT(held_ != NULL);
    ASSERT_EQ_INT(http_state(held_), HTTP_ST_BUSY); /* the next request waits, unparsed */
    ASSERT_EQ_INT(hc_of(c)->held.len, 22);
    ASSERT_EQ_INT(np_recv(peer, buf, sizeof buf, NULL), 0);
    http_respond(held_, 200, "text/plain", "async", 5, NULL);
    /* The answer finished the first request and the second was served. */
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT_EQ_INT(count(buf, "HTTP/1.1 200 OK"), 2);
    const char *a = strstr(buf, "\r\n\r\nasync"), *b = strstr(buf, "\r\n\r\nsync");
    ASSERT(a != NULL && b != NULL && a < b);
    ASSERT_EQ_INT(hc_of(c)->served, 2);
    close(peer);
}

TEST(http_connection_close_is_done) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    int eof;
    const char req[] = "GET /sync HTTP/1.1\r\nConnection: close\r\n\r\nGET /sync HTTP/1.1\r\n\r\n";
    np_send(peer, req, sizeof req - 1);
    uv_run(&np_loop_, UV_RUN_NOWAIT); /* read and answer; the flush is still to come */
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_DONE);
    ASSERT_EQ_INT(conn_state(c), CONN_LAST_WRITE);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT_EQ_INT(count(buf, "HTTP/1.1 200 OK"), 1); /* nothing after the close is parsed */
    ASSERT(strstr(buf, "Connection: close") != NULL);
    ASSERT(eof);
    ASSERT_EQ_INT(np_closed_, 1);
    close(peer);
}

/* A streamed answer: chunked on the wire, the request BUSY until its end,
 * then keep-alive serves the request held behind it. */
TEST(http_streamed_answer_is_chunked) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    const char two[] = "GET /async HTTP/1.1\r\n\r\nGET /sync HTTP/1.1\r\n\r\n";
    np_send(peer, two, sizeof two - 1);
    np_pump(2);
    ASSERT(held_ != NULL);
    http_stream_begin(held_, 200, "text/event-stream", NULL);
    ASSERT_EQ_INT(http_stream_write(held_, "ab", 2), 0);
    ASSERT_EQ_INT(http_stream_write(held_, "", 0), 0);
    ASSERT_EQ_INT(http_stream_write(held_, "cde", 3), 0);
    ASSERT_EQ_INT(http_state(held_), HTTP_ST_BUSY);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "Transfer-Encoding: chunked\r\n") != NULL);
    ASSERT(strstr(buf, "Content-Length") == NULL);
    ASSERT(strstr(buf, "\r\n\r\n2\r\nab\r\n3\r\ncde\r\n") != NULL);
    ASSERT_EQ_INT(count(buf, "HTTP/1.1 200 OK"), 1); /* the second waits */
    http_stream_end(held_);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strncmp(buf, "0\r\n\r\nHTTP/1.1 200 OK", 20) == 0);
    ASSERT_EQ_INT(hc_of(c)->served, 2);
    close(peer);
}

/* HTTP/1.0 has no chunked coding: the body ends with the connection. */
TEST(http_streamed_answer_to_http10_closes) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    int eof;
    const char req[] = "GET /async HTTP/1.0\r\n\r\n";
    np_send(peer, req, sizeof req - 1);
    np_pump(2);
    http_stream_begin(held_, 200, "text/event-stream", NULL);
    ASSERT_EQ_INT(http_stream_write(held_, "data: x\n\n", 9), 0);
    http_stream_end(held_);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_DONE);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT(strstr(buf, "chunked") == NULL);
    ASSERT(strstr(buf, "Connection: close\r\n") != NULL);
    ASSERT(strstr(buf, "\r\n\r\ndata: x\n\n") != NULL);
    ASSERT(eof);
    close(peer);
}

/* A route's error_body shapes the refusals of the HTTP layer on its path. */
TEST(http_route_error_body_shapes_refusals) {
    int peer;
    start(&peer);
    char buf[4096];
    const char req[] = "GET /shaped HTTP/1.1\r\n\r\n";
    np_send(peer, req, sizeof req - 1);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "HTTP/1.1 405") != NULL);
    ASSERT(strstr(buf, "{\"shaped\":405,\"c\":\"METHOD_NOT_ALLOWED\"}") != NULL);
    close(peer);
}

TEST(http_route_error_body_shapes_a_413_before_the_body) {
    int peer;
    start(&peer);
    char buf[4096];
    const char big[] = "POST /shaped HTTP/1.1\r\nContent-Length: 999999\r\n\r\n";
    np_send(peer, big, sizeof big - 1);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "HTTP/1.1 413") != NULL);
    ASSERT(strstr(buf, "{\"shaped\":413,\"c\":\"PAYLOAD_TOO_LARGE\"}") != NULL);
    close(peer);
}

TEST(http_other_paths_keep_the_default_error_body) {
    int peer;
    start(&peer);
    char buf[4096];
    const char other[] = "POST /sync HTTP/1.1\r\nContent-Length: 1\r\n\r\nx";
    np_send(peer, other, sizeof other - 1);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\"") != NULL);
    close(peer);
}

/* http-parser's callbacks move the phase on the client's bytes; a move the
 * table lacks is the client's error, answered 400, never an assert. */
TEST(http_parser_event_out_of_order_is_a_400) {
    int peer;
    struct conn *c = start(&peer);
    struct http_conn *hc = hc_of(c);
    hc->state = HTTP_ST_BODY; /* as if a request were half read */
    ASSERT_EQ_INT(cb_message_begin(&hc->parser), 1);
    ASSERT_EQ_INT(hc->error, ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(http_state(hc), HTTP_ST_BODY);
    hc->error = 0;
    hc->error_msg = NULL;
    hc->state = HTTP_ST_HEAD;
    ASSERT_EQ_INT(cb_message_complete(&hc->parser), 1);
    ASSERT_EQ_INT(hc->error, ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(http_state(hc), HTTP_ST_HEAD);
    close(peer);
}

static void wait_ms(int ms) {
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end) {
        np_pump(1);
        usleep(2000);
    }
    np_pump(2);
}

TEST(http_timer_in_a_request_is_408) {
    srv.handshake_timeout_ms = 30;
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    int eof;
    np_send(peer, "GET /sync HTTP/1.1\r\n", 20);
    np_pump(2);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_HEAD);
    wait_ms(80);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT(strstr(buf, "HTTP/1.1 408 Request Timeout") != NULL);
    ASSERT(eof);
    close(peer);
}

TEST(http_timer_between_requests_closes_silently) {
    srv.handshake_timeout_ms = 30;
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    int eof;
    np_send(peer, "GET /sync HTTP/1.1\r\n\r\n", 22);
    np_pump(2);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    np_recv(peer, buf, sizeof buf, NULL);
    wait_ms(80);
    ASSERT_EQ_INT(np_recv(peer, buf, sizeof buf, &eof), 0);
    ASSERT(eof);
    close(peer);
}

TEST(http_upgrade_hands_over_the_rest) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    const char req[] = "GET /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nnext protocol";
    np_send(peer, req, sizeof req - 1);
    np_pump(2);
    ASSERT_EQ_INT(upgraded_, 1);
    ASSERT(c->proto == NULL && c->kind == CONN_WS);
    ASSERT_EQ_INT(rest_.len, 13);
    ASSERT(memcmp(rest_.data, "next protocol", 13) == 0);
    buf_cleanup(&rest_);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strncmp(buf, "HTTP/1.1 101 Switching Protocols", 32) == 0);
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    close(peer);
}

TEST(http_drain_closes_only_an_idle_connection_that_served) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    http_conn_drain(c); /* accepted, nothing served yet: not idle */
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    np_send(peer, "GET /async HTTP/1.1\r\n\r\n", 23);
    np_pump(2);
    http_conn_drain(c); /* busy: answered with Connection: close */
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    http_respond(held_, 200, "text/plain", "x", 1, NULL);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_DONE);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "Connection: close") != NULL);
    ASSERT_EQ_INT(np_closed_, 1);
    close(peer);

    struct conn *c2 = open_http(&peer);
    np_send(peer, "GET /sync HTTP/1.1\r\n\r\n", 22);
    np_pump(2);
    ASSERT_EQ_INT(http_state(hc_of(c2)), HTTP_ST_IDLE);
    http_conn_drain(c2); /* idle after a response: closes once it is written */
    ASSERT_EQ_INT(conn_state(c2), CONN_LAST_WRITE);
    np_pump(3);
    ASSERT_EQ_INT(np_closed_, 2);
    close(peer);
}

/* ---- CORS and the fallback (http.h, struct http_cors) ------------------------- */

static int fallback_calls_;

static void h_fallback(void *ctx, struct http_conn *hc, struct http_req *req) {
    (void)ctx;
    (void)req;
    fallback_calls_++;
    http_respond(hc, 200, "text/plain", "file", 4, NULL);
}

static struct http_cors cors_ = {.origins = "https://app.example, http://localhost:3000", .max_age_s = 77};

/* One request to srv with cors (NULL: off) and, with fb, the fallback;
 * the answer in out. On the test's loop: a test calls np_init() once
 * (a loop initialised again without being closed leaks). */
static void ask(const struct http_cors *cors, int fb, const char *request, char *out, size_t cap) {
    fallback_calls_ = 0;
    upgraded_ = 0;
    srv.handshake_timeout_ms = 10000;
    srv.cors = cors;
    srv.fallback = fb ? h_fallback : NULL;
    srv.fallback_route = ROUTE_OTHER;
    int peer;
    struct conn *c = np_conn(&peer);
    ASSERT_EQ_INT(http_conn_start(c, &srv), 0);
    np_send(peer, request, strlen(request));
    np_pump(3);
    np_recv(peer, out, cap, NULL);
    close(peer);
    srv.cors = NULL;
    srv.fallback = NULL;
}

TEST(http_cors_preflight_of_a_listed_origin) {
    np_init();
    char b[4096];
    uint64_t pre = metrics.cors_preflights;
    ask(&cors_, 0,
        "OPTIONS /post HTTP/1.1\r\nHost: asr:8000\r\nOrigin: https://app.example\r\n"
        "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 204 No Content\r\n", 25) == 0);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n") != NULL);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Methods: POST\r\n") != NULL);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Headers: " HTTP_CORS_ALLOW_HEADERS "\r\n") != NULL);
    ASSERT(strstr(b, "\r\nAccess-Control-Max-Age: 77\r\n") != NULL);
    ASSERT(strstr(b, "\r\nVary: Origin\r\n") != NULL);
    ASSERT(strstr(b, "\r\nContent-Length:") == NULL); /* 204: no body, no length */
    ASSERT(strstr(b, "\r\nContent-Type:") == NULL);
    ASSERT(strstr(b, "Connection: keep-alive") != NULL);
    ASSERT_EQ_INT(metrics.cors_preflights, pre + 1);
}

TEST(http_cors_preflight_refusals) {
    np_init();
    char b[4096];
    uint64_t refused = metrics.cors_refused;
    /* an origin not listed: 403, no CORS header the browser could accept */
    ask(&cors_, 0,
        "OPTIONS /post HTTP/1.1\r\nHost: asr\r\nOrigin: https://evil.example\r\n"
        "Access-Control-Request-Method: POST\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
    ASSERT(strstr(b, "ORIGIN_NOT_ALLOWED") != NULL);
    ASSERT(strstr(b, "Access-Control-Allow") == NULL);
    ASSERT_EQ_INT(metrics.cors_refused, refused + 1);
    /* a method the path does not have */
    ask(&cors_, 0,
        "OPTIONS /post HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 405 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAllow: POST\r\n") != NULL);
    ASSERT(strstr(b, "Access-Control-Allow-Methods") == NULL);
    /* methods are case-sensitive */
    ask(&cors_, 0,
        "OPTIONS /post HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: post\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 405 ", 13) == 0);
    /* a path nothing serves */
    ask(&cors_, 0,
        "OPTIONS /nothing HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 404 ", 13) == 0);
    /* ... unless the fallback does: GET (and so HEAD) only */
    ask(&cors_, 1,
        "OPTIONS /nothing HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 204 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Methods: GET, HEAD\r\n") != NULL);
    ASSERT_EQ_INT(fallback_calls_, 0);
}

TEST(http_cors_answers_to_a_listed_origin_say_so) {
    np_init();
    char b[4096];
    ask(&cors_, 0, "GET /sync HTTP/1.1\r\nOrigin: http://LOCALHOST:3000 \r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* the origin as the browser sent it, which it compares exactly */
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Origin: http://LOCALHOST:3000\r\n") != NULL);
    ASSERT(strstr(b, "\r\nAccess-Control-Expose-Headers: " HTTP_CORS_EXPOSE_HEADERS "\r\n") != NULL);
    ASSERT(strstr(b, "\r\nVary: Origin\r\n") != NULL);
    /* errors too, so that a page can read them */
    ask(&cors_, 0, "GET /nothing HTTP/1.1\r\nOrigin: https://app.example\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 404 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n") != NULL);
    ask(&cors_, 0, "POST /post HTTP/1.1\r\nOrigin: https://app.example\r\nContent-Length: 999999\r\n\r\n", b,
        sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 413 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n") != NULL);
    /* a refusal before the head is complete has no Origin to answer */
    char big[6000];
    snprintf(big, sizeof big, "GET /sync HTTP/1.1\r\nOrigin: https://app.example\r\nX: %05000d\r\n\r\n", 0);
    ask(&cors_, 0, big, b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 431 ", 13) == 0);
    ASSERT(strstr(b, "Access-Control-Allow-Origin") == NULL);
    /* no Origin: served, Vary only */
    ask(&cors_, 0, "GET /sync HTTP/1.1\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT(strstr(b, "Access-Control-Allow-Origin") == NULL);
    ASSERT(strstr(b, "\r\nVary: Origin\r\n") != NULL);
}

TEST(http_cors_refuses_other_origins_but_not_the_own_nor_upgrades) {
    np_init();
    char b[4096];
    ask(&cors_, 0, "GET /sync HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 403 ", 13) == 0);
    ask(&cors_, 0, "POST /post HTTP/1.1\r\nOrigin: null\r\nContent-Length: 0\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 403 ", 13) == 0);
    ask(&cors_, 1, "GET /app.js HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 403 ", 13) == 0);
    ASSERT_EQ_INT(fallback_calls_, 0);
    /* the server's own page (Origin's host and port are the Host header) */
    ask(&cors_, 0, "POST /post HTTP/1.1\r\nHost: asr.example:8000\r\nOrigin: http://asr.example:8000\r\n"
                   "Content-Length: 0\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT(strstr(b, "Access-Control-Allow-Origin") == NULL);
    /* a WebSocket upgrade is its route's business (api/auth.h) */
    ask(&cors_, 0, "GET /up HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: test\r\nOrigin: https://evil.example\r\n\r\n",
        b, sizeof b);
    ASSERT_EQ_INT(upgraded_, 1);
    ASSERT(strncmp(b, "HTTP/1.1 101 ", 13) == 0);
}

TEST(http_cors_star_and_off) {
    np_init();
    char b[4096];
    struct http_cors star = {.origins = " * ", .max_age_s = 5};
    ask(&star, 0, "GET /sync HTTP/1.1\r\nOrigin: https://any.example\r\n\r\n", b, sizeof b);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Origin: *\r\n") != NULL);
    ASSERT(strstr(b, "Vary: Origin") == NULL); /* the same answer for every origin */
    ask(&star, 0, "OPTIONS /sync HTTP/1.1\r\nOrigin: null\r\nAccess-Control-Request-Method: GET\r\n\r\n", b,
        sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 204 ", 13) == 0);
    /* off (NULL or ""): no CORS at all; OPTIONS is a method /post lacks */
    struct http_cors off = {.origins = "", .max_age_s = 5};
    const struct http_cors *offs[] = {NULL, &off};
    for (int i = 0; i < 2; i++) {
        ask(offs[i], 0,
            "OPTIONS /post HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
            b, sizeof b);
        ASSERT(strncmp(b, "HTTP/1.1 405 ", 13) == 0);
        ASSERT(strstr(b, "Access-Control") == NULL && strstr(b, "Vary") == NULL);
        ask(offs[i], 0, "GET /sync HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n", b, sizeof b);
        ASSERT(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
        ASSERT(strstr(b, "Access-Control") == NULL);
    }
}

TEST(http_fallback_serves_get_and_head_of_unknown_paths) {
    np_init();
    char b[4096];
    ask(NULL, 1, "GET /index.html HTTP/1.1\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
    ASSERT_EQ_INT(fallback_calls_, 1);
    ask(NULL, 1, "HEAD / HTTP/1.1\r\n\r\n", b, sizeof b);
    ASSERT_EQ_INT(fallback_calls_, 1);
    ASSERT(strstr(b, "\r\n\r\nfile") == NULL); /* HEAD: no body */
    ask(NULL, 1, "POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 404 ", 13) == 0);
    ASSERT_EQ_INT(fallback_calls_, 0);
    /* a route's path with another method stays 405 */
    ask(NULL, 1, "GET /post HTTP/1.1\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 405 ", 13) == 0);
    ASSERT_EQ_INT(fallback_calls_, 0);
}

static enum http_origin classify(const char *list, const char *host, const char *origin) {
    struct http_req r;
    memset(&r, 0, sizeof r);
    buf_init(&r.head, 0);
    buf_append(&r.head, "/", 2);
    r.url_len = r.path_len = 1;
    const char *names[2] = {"Host", "Origin"}, *vals[2] = {host, origin};
    for (int i = 0; i < 2; i++) {
        if (!vals[i]) continue;
        int k = r.n_headers++;
        r.hdr_name[k] = r.head.len;
        r.hdr_name_len[k] = strlen(names[i]);
        buf_append(&r.head, names[i], strlen(names[i]) + 1);
        r.hdr_val[k] = r.head.len;
        r.hdr_val_len[k] = strlen(vals[i]);
        buf_append(&r.head, vals[i], strlen(vals[i]) + 1);
    }
    enum http_origin o = http_origin_check(list, &r);
    buf_cleanup(&r.head);
    return o;
}

TEST(http_origin_classes) {
    ASSERT_EQ_INT(classify("https://a.example", "x", NULL), HTTP_ORIGIN_NONE);
    ASSERT_EQ_INT(classify(NULL, "x:1", "http://x:1"), HTTP_ORIGIN_SAME);
    ASSERT_EQ_INT(classify(NULL, "X:1", "https://x:1"), HTTP_ORIGIN_SAME);
    ASSERT_EQ_INT(classify(NULL, "x:1", "http://x:2"), HTTP_ORIGIN_OTHER);
    ASSERT_EQ_INT(classify(NULL, "x", "http://x.y"), HTTP_ORIGIN_OTHER);
    ASSERT_EQ_INT(classify(NULL, "x", "x"), HTTP_ORIGIN_OTHER);
    ASSERT_EQ_INT(classify(NULL, NULL, "http://x"), HTTP_ORIGIN_OTHER);
    ASSERT_EQ_INT(classify("", "y", "http://x"), HTTP_ORIGIN_OTHER);
    ASSERT_EQ_INT(classify("http://x, https://z", "y", "HTTP://X"), HTTP_ORIGIN_LISTED);
    ASSERT_EQ_INT(classify("http://x, https://z", "y", "https://z"), HTTP_ORIGIN_LISTED);
    ASSERT_EQ_INT(classify("http://x", "y", "http://x:80"), HTTP_ORIGIN_OTHER);
    ASSERT_EQ_INT(classify("*", "y", "null"), HTTP_ORIGIN_LISTED);
    ASSERT_EQ_INT(classify("http://x,", "y", ""), HTTP_ORIGIN_OTHER);
}

/* A prefix route serves every path under it; the exact route of the
 * collection is not one of them, and a method no route of the matching
 * kind has is a 405 listing that kind's methods, in that kind's error shape. */
TEST(http_prefix_routes) {
    int peer;
    start(&peer);
    char buf[4096];
    np_send(peer, "GET /items/abc/result HTTP/1.1\r\n\r\n", strlen("GET /items/abc/result HTTP/1.1\r\n\r\n"));
    np_pump(2);
    ASSERT_STR_EQ(seen_, "prefix GET /items/abc/result");
    np_recv(peer, buf, sizeof buf, NULL);
    np_send(peer, "DELETE /items/abc HTTP/1.1\r\n\r\n", strlen("DELETE /items/abc HTTP/1.1\r\n\r\n"));
    np_pump(2);
    ASSERT_STR_EQ(seen_, "prefix DELETE /items/abc");
    np_recv(peer, buf, sizeof buf, NULL);
    np_send(peer, "POST /items HTTP/1.1\r\nContent-Length: 0\r\n\r\n", strlen("POST /items HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    np_pump(2);
    ASSERT_STR_EQ(seen_, "exact POST /items");
    np_recv(peer, buf, sizeof buf, NULL);
    seen_[0] = 0;
    np_send(peer, "GET /items HTTP/1.1\r\n\r\n", strlen("GET /items HTTP/1.1\r\n\r\n"));
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "HTTP/1.1 405") != NULL);
    ASSERT(strstr(buf, "Allow: POST\r\n") != NULL);
    ASSERT(strstr(buf, "\"shaped\"") == NULL); /* the exact route's error shape, not the prefix's */
    np_send(peer, "POST /items/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", strlen("POST /items/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "HTTP/1.1 405") != NULL);
    ASSERT(strstr(buf, "Allow: GET, HEAD, DELETE\r\n") != NULL);
    ASSERT(strstr(buf, "{\"shaped\":405") != NULL); /* a prefix route's error_body serves its paths */
    np_send(peer, "GET /items/ HTTP/1.1\r\n\r\n", strlen("GET /items/ HTTP/1.1\r\n\r\n")); /* the prefix alone is no item */
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strstr(buf, "HTTP/1.1 404") != NULL);
    ASSERT_EQ_INT(seen_[0], 0);
    close(peer);
}

/* CORS covers prefix routes (their methods in a preflight, DELETE among
 * them), and the fallback comes after exact and prefix routes: it gets no
 * path a prefix route serves. */
TEST(http_cors_and_fallback_with_prefix_routes) {
    np_init();
    char b[4096];
    ask(&cors_, 1,
        "OPTIONS /items/abc HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: DELETE\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 204 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Methods: GET, HEAD, DELETE\r\n") != NULL);
    ASSERT_EQ_INT(fallback_calls_, 0);
    ask(&cors_, 1,
        "OPTIONS /items HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n", b,
        sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 204 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Methods: POST\r\n") != NULL);
    ask(&cors_, 1,
        "OPTIONS /items/abc HTTP/1.1\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
        b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 405 ", 13) == 0);
    ASSERT(strstr(b, "\r\nAllow: GET, HEAD, DELETE\r\n") != NULL);
    seen_[0] = 0;
    ask(&cors_, 1, "DELETE /items/abc HTTP/1.1\r\nOrigin: https://app.example\r\n\r\n", b, sizeof b);
    ASSERT_STR_EQ(seen_, "prefix DELETE /items/abc");
    ASSERT(strstr(b, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n") != NULL);
    seen_[0] = 0;
    ask(&cors_, 1, "DELETE /items/abc HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n", b, sizeof b);
    ASSERT(strncmp(b, "HTTP/1.1 403 ", 13) == 0);
    ASSERT_EQ_INT(seen_[0], 0);
    ask(NULL, 1, "GET /items/abc HTTP/1.1\r\n\r\n", b, sizeof b);
    ASSERT_STR_EQ(seen_, "prefix GET /items/abc");
    ASSERT_EQ_INT(fallback_calls_, 0);
    ask(NULL, 1, "GET /items/ HTTP/1.1\r\n\r\n", b, sizeof b); /* the prefix alone: no route's */
    ASSERT_EQ_INT(fallback_calls_, 1);
}

/* ---- Expect: 100-continue, the body budget, the half-close --------------------- */

/* The route takes the body: "100 Continue" goes out as soon as the head is
 * in, before any of the body was sent; the answer follows the body. */
TEST(http_expect_continue_is_answered_100) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    np_send(peer, "POST /guarded HTTP/1.1\r\nKey: k\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", strlen("POST /guarded HTTP/1.1\r\nKey: k\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"));
    np_pump(3);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_BODY);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strncmp(buf, "HTTP/1.1 100 Continue\r\nX-Request-Id: ", 37) == 0);
    ASSERT_EQ_INT(count(buf, "\r\n\r\n"), 1); /* the interim head only */
    ASSERT_EQ_INT(checks_, 1);
    np_send(peer, "abcde", strlen("abcde"));
    np_pump(3);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strncmp(buf, "HTTP/1.1 200 OK", 15) == 0);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    /* HTTP/1.0 and a request without a body: no 100 */
    np_send(peer, "POST /post HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", strlen("POST /post HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"));
    np_pump(3);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT_EQ_INT(count(buf, "100 Continue"), 0);
    close(peer);
}

/* Refused on its head: the final status at once, no 100, the body never
 * read; the connection closes after the client's EOF (it lingers). */
static void expect_refused(const char *req, const char *status, const char *extra) {
    int peer;
    int closed = np_closed_;
    struct conn *c = open_http(&peer);
    char buf[4096];
    int eof;
    np_send(peer, req, strlen(req));
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    if (strncmp(buf, status, strlen(status)) != 0) TEST_FAIL_("got %s", buf);
    ASSERT_EQ_INT(count(buf, "100 Continue"), 0);
    ASSERT(strstr(buf, "Connection: close") != NULL);
    if (extra) ASSERT(strstr(buf, extra) != NULL);
    ASSERT(!eof);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_DONE);
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN); /* lingering: reads, discards */
    np_send(peer, "body bytes that are not a request", strlen("body bytes that are not a request"));
    np_pump(2);
    ASSERT_EQ_INT(np_recv(peer, buf, sizeof buf, &eof), 0);
    ASSERT(!eof);
    shutdown(peer, SHUT_WR);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT(eof);
    ASSERT_EQ_INT(np_closed_, closed + 1);
    close(peer);
}

TEST(http_expect_continue_refused_at_once) {
    int peer0;
    start(&peer0); /* the loop; each case opens a connection of its own */
    expect_refused("POST /nowhere HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                   "HTTP/1.1 404 Not Found", "NOT_FOUND");
    expect_refused("PUT /post HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                   "HTTP/1.1 405 Method Not Allowed", "Allow: POST");
    expect_refused("POST /guarded HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
                   "HTTP/1.1 401 Unauthorized", "no key");
    ASSERT_EQ_INT(checks_, 1);
    expect_refused("POST /post HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 70000\r\n\r\n",
                   "HTTP/1.1 413 Payload Too Large", "PAYLOAD_TOO_LARGE");
    close(peer0);
}

/* Expect: 100-continue decides as dispatch would: an Origin CORS refuses
 * is 403 at once (no 100), a listed origin's refusal carries its CORS
 * headers, and a GET the fallback serves is told to send its body. */
TEST(http_expect_continue_with_cors_and_the_fallback) {
    int peer0;
    start(&peer0);
    srv.cors = &cors_;
    srv.fallback = h_fallback;
    srv.fallback_route = ROUTE_OTHER;
    fallback_calls_ = 0;
    uint64_t refused = metrics.cors_refused;
    expect_refused("POST /post HTTP/1.1\r\nHost: asr\r\nOrigin: https://evil.example\r\nExpect: 100-continue\r\n"
                   "Content-Length: 5\r\n\r\n",
                   "HTTP/1.1 403 Forbidden", "ORIGIN_NOT_ALLOWED");
    ASSERT_EQ_INT(metrics.cors_refused, refused + 1);
    expect_refused("POST /guarded HTTP/1.1\r\nHost: asr\r\nOrigin: https://app.example\r\nExpect: 100-continue\r\n"
                   "Content-Length: 5\r\n\r\n",
                   "HTTP/1.1 401 Unauthorized", "\r\nAccess-Control-Allow-Origin: https://app.example\r\n");
    int peer;
    struct conn *c = open_http(&peer);
    char buf[4096];
    const char *get = "GET /index.html HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    np_send(peer, get, strlen(get));
    np_pump(3);
    np_recv(peer, buf, sizeof buf, NULL);
    if (strncmp(buf, "HTTP/1.1 100 Continue\r\n", 23) != 0) TEST_FAIL_("got %s", buf);
    np_send(peer, "abc", 3);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strncmp(buf, "HTTP/1.1 200 OK", 15) == 0);
    ASSERT_EQ_INT(fallback_calls_, 1);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_IDLE);
    srv.cors = NULL;
    srv.fallback = NULL;
    close(peer);
    close(peer0);
}

/* A lingering connection whose client neither stops nor closes is closed
 * after HTTP_LINGER_MS of silence. */
TEST(http_linger_ends_on_silence) {
    int peer;
    struct conn *c = start(&peer);
    char buf[4096];
    int eof;
    np_send(peer, "POST /nowhere HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", strlen("POST /nowhere HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    wait_ms(HTTP_LINGER_MS + 200);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT(eof);
    ASSERT_EQ_INT(np_closed_, 1);
    close(peer);
}

/* Bodies are charged to the body budget as they arrive (exactly their
 * Content-Length), given back once answered; a Content-Length over what is
 * left is 503 with Retry-After before the body is sent, and so is a chunked
 * body that grows past it. */
TEST(http_body_budget) {
    struct budget bud;
    budget_init(&bud, 10000);
    srv.body_budget = &bud;
    int peer;
    struct conn *c = start(&peer);
    char buf[8192];
    int eof;
    np_send(peer, "POST /async HTTP/1.1\r\nContent-Length: 6000\r\n\r\n", strlen("POST /async HTTP/1.1\r\nContent-Length: 6000\r\n\r\n"));
    np_pump(2);
    ASSERT_EQ_INT(budget_used(&bud), 0);
    char body[6000];
    memset(body, 'b', sizeof body);
    np_send(peer, body, 3000);
    np_pump(2);
    ASSERT_EQ_INT(budget_used(&bud), 4096);
    np_send(peer, body, 3000);
    np_pump(2);
    np_recv(peer, buf, sizeof buf, NULL);
    if (!strstr(buf, "405")) TEST_FAIL_("got %s", buf);
    ASSERT_EQ_INT(budget_used(&bud), 0);
    close(peer);

    c = open_http(&peer);
    np_send(peer, "POST /post HTTP/1.1\r\nContent-Length: 6000\r\n\r\n", strlen("POST /post HTTP/1.1\r\nContent-Length: 6000\r\n\r\n"));
    np_send(peer, body, 6000);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, NULL);
    ASSERT(strncmp(buf, "HTTP/1.1 200 OK", 15) == 0);
    ASSERT_EQ_INT(budget_used(&bud), 0);
    ASSERT_EQ_INT(bud.peak, 6001);
    /* another body holds 6000: this Content-Length does not fit */
    ASSERT_EQ_INT(budget_try_charge(&bud, 6000), 0);
    np_send(peer, "POST /post HTTP/1.1\r\nContent-Length: 4000\r\n\r\n", strlen("POST /post HTTP/1.1\r\nContent-Length: 4000\r\n\r\n"));
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT(strncmp(buf, "HTTP/1.1 503 Service Unavailable", 32) == 0);
    ASSERT(strstr(buf, "Retry-After: 1\r\n") != NULL);
    ASSERT(strstr(buf, "SERVER_BUSY") != NULL);
    ASSERT_EQ_INT(bud.refused, 1);
    ASSERT_EQ_INT(http_state(hc_of(c)), HTTP_ST_DONE);
    close(peer);

    c = open_http(&peer);
    np_send(peer, "POST /post HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n", strlen("POST /post HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"));
    np_send(peer, body, 4096);
    np_pump(3);
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT(strncmp(buf, "HTTP/1.1 503 Service Unavailable", 32) == 0);
    ASSERT_EQ_INT(budget_used(&bud), 6000);
    budget_release(&bud, 6000);
    close(peer);
    srv.body_budget = NULL;
}

/* The client's half-close before its request is complete: answered 400,
 * then closed; before any request: closed silently. */
TEST(http_half_close_mid_request_is_a_400) {
    static const char *const cut[] = {
        "POST /post HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this",
        "POST /post HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        "GET /sync HTTP/1.1\r\nHost: x\r\n",
    };
    static const char *const why[] = {"Content-Length", "last chunk", "request head"};
    np_init();
    for (int i = 0; i < 3; i++) {
        int peer;
        struct conn *c = open_http(&peer);
        char buf[4096];
        int eof;
        np_send(peer, cut[i], strlen(cut[i]));
        np_pump(2);
        shutdown(peer, SHUT_WR);
        np_pump(3);
        np_recv(peer, buf, sizeof buf, &eof);
        ASSERT(strncmp(buf, "HTTP/1.1 400 Bad Request", 24) == 0);
        ASSERT(strstr(buf, "request incomplete") != NULL);
        ASSERT(strstr(buf, why[i]) != NULL);
        ASSERT(strstr(buf, "Connection: close") != NULL);
        ASSERT(eof);
        (void)c;
        close(peer);
    }
    int peer;
    open_http(&peer);
    char buf[256];
    int eof;
    shutdown(peer, SHUT_WR);
    np_pump(3);
    ASSERT_EQ_INT(np_recv(peer, buf, sizeof buf, &eof), 0);
    ASSERT(eof);
    close(peer);
}
