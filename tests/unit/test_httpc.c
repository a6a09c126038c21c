/* net/httpc: outbound HTTP on libcurl's multi interface and the loop,
 * against a small HTTP server on the same loop (127.0.0.1, a free port):
 * GET and POST, the address check (loopback refused unless allowed, by
 * literal and by name), the body cap (with and without Content-Length),
 * timeouts, redirects, a scheme other than http(s), cancel, close with
 * transfers in flight; and the table of refused addresses. */
#define _GNU_SOURCE
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <uv.h>

#include "base/log.h"
#include "net/httpc.h"

static uv_loop_t loop_;
/* Keeps UV_RUN_ONCE from blocking for ever when a transfer ended in the
 * timers phase before the poll (nothing else would wake it). */
static uv_timer_t tick_;
static void on_tick(uv_timer_t *t) { (void)t; }
static uv_tcp_t server_;
static int port_;
static char last_req_[8192];           /* the server's last request, head and body */

/* ---- a small HTTP server ------------------------------------------------------- */

struct sconn {
    uv_tcp_t tcp;
    char buf[8192];
    size_t len;
    int answered;
};

static void s_closed(uv_handle_t *h) { free(h->data); }

static void s_written(uv_write_t *w, int status) {
    (void)status;
    free(w->data);
    free(w);
}

static void s_write(struct sconn *c, const char *p, size_t n) {
    uv_write_t *w = malloc(sizeof *w);
    char *copy = malloc(n);
    ASSERT(w && copy);
    memcpy(copy, p, n);
    w->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned)n);
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, s_written);
}

static void s_answer(struct sconn *c) {
    char path[256] = "";
    sscanf(c->buf, "%*s %255s", path);
    char out[512];
    if (strcmp(path, "/ok") == 0) {
        const char r[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        s_write(c, r, sizeof r - 1);
    } else if (strcmp(path, "/echo") == 0) {
        int n = snprintf(out, sizeof out, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", c->len);
        s_write(c, out, (size_t)n);
        s_write(c, c->buf, c->len);
    } else if (strcmp(path, "/big") == 0) {
        const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
        s_write(c, r, sizeof r - 1);
        static char zeros[100000];
        s_write(c, zeros, sizeof zeros);
    } else if (strcmp(path, "/stream") == 0) { /* no length: the body ends with the connection */
        const char r[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        s_write(c, r, sizeof r - 1);
        static char zeros[100000];
        s_write(c, zeros, sizeof zeros);
    } else if (strcmp(path, "/redirect") == 0) {
        int n = snprintf(out, sizeof out, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/ok\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n", port_);
        s_write(c, out, (size_t)n);
    } else if (strcmp(path, "/slow") == 0) {
        return; /* never answers */
    } else {
        const char r[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        s_write(c, r, sizeof r - 1);
    }
    c->answered = 1;
    uv_close((uv_handle_t *)&c->tcp, s_closed);
}

static void s_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
    struct sconn *c = h->data;
    (void)sug;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    struct sconn *c = st->data;
    (void)b;
    if (n < 0) {
        if (!c->answered) uv_close((uv_handle_t *)&c->tcp, s_closed);
        c->answered = 1;
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end || c->answered) return;
    size_t body = 0;
    const char *cl = strcasestr(c->buf, "Content-Length:");
    if (cl && cl < end) body = (size_t)strtoul(cl + 15, NULL, 10);
    if (c->len < (size_t)(end + 4 - c->buf) + body) return;
    memcpy(last_req_, c->buf, c->len + 1);
    s_answer(c);
}

static void s_conn(uv_stream_t *srv, int status) {
    ASSERT_EQ_INT(status, 0);
    struct sconn *c = calloc(1, sizeof *c);
    ASSERT(c);
    uv_tcp_init(&loop_, &c->tcp);
    c->tcp.data = c;
    ASSERT_EQ_INT(uv_accept(srv, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

static struct httpc *setup(void) {
    log_setup("error", "json", "t");
    ASSERT_EQ_INT(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &tick_);
    uv_timer_start(&tick_, on_tick, 20, 20);
    uv_tcp_init(&loop_, &server_);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    ASSERT_EQ_INT(uv_tcp_bind(&server_, (struct sockaddr *)&a, 0), 0);
    ASSERT_EQ_INT(uv_listen((uv_stream_t *)&server_, 16, s_conn), 0);
    int len = sizeof a;
    uv_tcp_getsockname(&server_, (struct sockaddr *)&a, &len);
    port_ = ntohs(a.sin_port);
    struct httpc *h = NULL;
    ASSERT_EQ_INT(httpc_create(&loop_, &h), 0);
    return h;
}

/* ---- the client's side ---------------------------------------------------------- */

struct got {
    int calls;
    enum httpc_fail err;
    long status;
    char body[256];
    size_t body_len;
    char ctype[64];
};

static void on_done(void *arg, const struct httpc_res *r) {
    struct got *g = arg;
    g->calls++;
    g->err = r->err;
    g->status = r->status;
    g->body_len = r->body_len;
    snprintf(g->body, sizeof g->body, "%.*s", (int)(r->body_len < 255 ? r->body_len : 255), r->body ? r->body : "");
    snprintf(g->ctype, sizeof g->ctype, "%s", r->content_type);
}

static void wait_call(struct got *g) {
    uint64_t end = uv_hrtime() + 10000000000ull;
    while (!g->calls && uv_hrtime() < end) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT_EQ_INT(g->calls, 1);
}

static struct got get(struct httpc *h, const char *path, int allow, size_t max, uint64_t timeout_ms) {
    char url[256];
    if (path[0] == '/') snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port_, path);
    else snprintf(url, sizeof url, "%s", path);
    struct httpc_req r = {.method = "GET", .url = url, .allow_private = allow, .max_bytes = max,
                          .timeout_ms = timeout_ms, .follow_redirects = 1};
    struct got g = {0};
    ASSERT_EQ_INT(httpc_request(h, &r, on_done, &g, NULL), 0);
    ASSERT_EQ_INT(g.calls, 0); /* never inside the call */
    wait_call(&g);
    return g;
}

static void finish(struct httpc *h) {
    httpc_close(h, NULL, NULL);
    uv_close((uv_handle_t *)&server_, NULL);
    uv_close((uv_handle_t *)&tick_, NULL);
    uv_run(&loop_, UV_RUN_DEFAULT);
    ASSERT_EQ_INT(uv_loop_close(&loop_), 0);
}

TEST(httpc_get_and_the_address_check) {
    struct httpc *h = setup();
    struct got g = get(h, "/ok", 1, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_OK);
    ASSERT_EQ_INT(g.status, 200);
    ASSERT_STR_EQ(g.body, "hello");
    ASSERT_STR_EQ(g.ctype, "text/plain");
    g = get(h, "/ok", 0, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_REFUSED);
    char url[128];
    snprintf(url, sizeof url, "http://localhost:%d/ok", port_);
    g = get(h, url, 0, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_REFUSED);
    g = get(h, "/missing", 1, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_OK);
    ASSERT_EQ_INT(g.status, 404);
    finish(h);
}

TEST(httpc_body_cap_timeout_redirect_scheme) {
    struct httpc *h = setup();
    struct got g = get(h, "/big", 1, 1000, 0);
    ASSERT_EQ_INT(g.err, HTTPC_TOO_LARGE);
    g = get(h, "/stream", 1, 1000, 0);
    ASSERT_EQ_INT(g.err, HTTPC_TOO_LARGE);
    g = get(h, "/big", 1, 200000, 0);
    ASSERT_EQ_INT(g.err, HTTPC_OK);
    ASSERT_EQ_INT(g.body_len, 100000);
    uint64_t t0 = uv_hrtime();
    g = get(h, "/slow", 1, 0, 300);
    ASSERT_EQ_INT(g.err, HTTPC_TIMEOUT);
    ASSERT((uv_hrtime() - t0) / 1000000 < 3000);
    g = get(h, "/redirect", 1, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_OK);
    ASSERT_STR_EQ(g.body, "hello");
    g = get(h, "ftp://127.0.0.1/x", 1, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_BAD_URL);
    g = get(h, "file:///etc/passwd", 1, 0, 0);
    ASSERT_EQ_INT(g.err, HTTPC_BAD_URL);
    finish(h);
}

TEST(httpc_post_with_headers) {
    struct httpc *h = setup();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", port_);
    const char *hd[] = {"Content-Type: application/json", "webhook-id: msg_1", NULL};
    struct httpc_req r = {.method = "POST", .url = url, .headers = hd, .body = "{\"a\":1}", .body_len = 7,
                          .allow_private = 1};
    struct got g = {0};
    ASSERT_EQ_INT(httpc_request(h, &r, on_done, &g, NULL), 0);
    wait_call(&g);
    ASSERT_EQ_INT(g.status, 201);
    ASSERT(strstr(last_req_, "POST /echo HTTP/1.1\r\n") == last_req_);
    ASSERT(strstr(last_req_, "\r\nwebhook-id: msg_1\r\n") != NULL);
    ASSERT(strstr(last_req_, "\r\nContent-Type: application/json\r\n") != NULL);
    ASSERT(strstr(last_req_, "Expect:") == NULL);
    ASSERT(strstr(last_req_, "\r\n\r\n{\"a\":1}") != NULL);
    finish(h);
}

/* A cancelled transfer never reports; closing with transfers in flight
 * leaves nothing on the loop. */
TEST(httpc_cancel_and_close) {
    struct httpc *h = setup();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow", port_);
    struct httpc_req r = {.method = "GET", .url = url, .allow_private = 1};
    struct got g1 = {0}, g2 = {0};
    struct httpc_xfer *x = NULL;
    ASSERT_EQ_INT(httpc_request(h, &r, on_done, &g1, &x), 0);
    ASSERT_EQ_INT(httpc_request(h, &r, on_done, &g2, NULL), 0);
    ASSERT_EQ_INT(httpc_active(h), 2);
    for (int i = 0; i < 20; i++) uv_run(&loop_, UV_RUN_NOWAIT);
    httpc_cancel(x);
    ASSERT_EQ_INT(httpc_active(h), 1);
    for (int i = 0; i < 20; i++) uv_run(&loop_, UV_RUN_NOWAIT);
    finish(h);
    ASSERT_EQ_INT(g1.calls, 0);
    ASSERT_EQ_INT(g2.calls, 0);
}

static int refused(const char *ip) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        ASSERT_EQ_INT(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        ASSERT_EQ_INT(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return httpc_addr_refused((struct sockaddr *)&ss);
}

TEST(httpc_refused_addresses) {
    const char *no[] = {"0.0.0.0", "10.1.2.3", "100.64.0.1", "127.0.0.1", "127.255.0.9", "169.254.169.254",
                        "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.168.1.1", "198.18.0.1",
                        "198.51.100.7", "203.0.113.9", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::",
                        "::1", "fc00::1", "fd12::3", "fe80::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1",
                        "::ffff:10.0.0.1", "64:ff9b::a00:1"};
    const char *yes[] = {"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700::1111",
                         "::ffff:8.8.8.8", "64:ff9b::808:808"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (!refused(no[i])) TEST_FAIL_("%s should be refused", no[i]);
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (refused(yes[i])) TEST_FAIL_("%s should be allowed", yes[i]);
}
