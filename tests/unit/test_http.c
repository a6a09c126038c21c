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

static int shaped_body(struct buf *out, int status, const char *code, const char *msg) {
    return buf_printf(out, "{\"shaped\":%d,\"c\":\"%s\"}", status, code);
}

static const struct http_route routes[] = {
    {"/shaped", HTTP_POST, ROUTE_OTHER, h_sync, NULL, shaped_body},
    {"/sync", HTTP_GET, ROUTE_OTHER, h_sync, NULL, NULL},
    {"/post", HTTP_POST, ROUTE_OTHER, h_sync, NULL, NULL},
    {"/async", HTTP_GET, ROUTE_OTHER, h_async, NULL, NULL},
    {"/up", HTTP_GET, ROUTE_OTHER, h_upgrade, NULL, NULL},
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
