/* The server's /v1/metrics as asrd-load reads it (srvmetrics.h). */
#define _GNU_SOURCE
#include "srvmetrics.h"

#include <errno.h>
#include <http_parser.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "opts.h"

#define NS                1000000000ull
#define SAMPLE_TIMEOUT_NS (3ull * NS)   /* a sample not answered by then is dropped */

/* ---- blocking GET ------------------------------------------------------ */

struct mfetch {
    struct buf body;
    int complete;
};

static int mf_on_body(http_parser *p, const char *at, size_t len) {
    struct mfetch *m = p->data;
    return buf_append(&m->body, at, len) == 0 ? 0 : -1;
}
static int mf_on_complete(http_parser *p) {
    ((struct mfetch *)p->data)->complete = 1;
    return 0;
}

void srvmetrics_fetch(const struct load_target *t, struct loadstat_server *out) {
    memset(out, 0, sizeof *out);
    uint64_t deadline = util_now_ns() + 3 * NS;
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct mfetch m = {0};
    buf_init(&m.body, 8u << 20);
    socklen_t al = t->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    char req[600];
    int rl = snprintf(req, sizeof req, "GET /v1/metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", t->host);
    size_t sent = 0;
    http_parser hp;
    http_parser_settings hs = {0};
    hs.on_body = mf_on_body;
    hs.on_message_complete = mf_on_complete;
    http_parser_init(&hp, HTTP_RESPONSE);
    hp.data = &m;
    if (connect(fd, (const struct sockaddr *)&t->addr, al) != 0 && errno != EINPROGRESS) goto done;
    while (!m.complete) {
        uint64_t now = util_now_ns();
        if (now >= deadline) goto done;
        struct pollfd pfd = {fd, (short)(sent < (size_t)rl ? POLLOUT : POLLIN), 0};
        int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) goto done;
        if (sent < (size_t)rl) {
            ssize_t w = send(fd, req + sent, (size_t)rl - sent, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) goto done;
            if (w > 0) sent += (size_t)w;
            continue;
        }
        char tmp[16384];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) {
            http_parser_execute(&hp, &hs, NULL, 0);
            break;
        }
        if (http_parser_execute(&hp, &hs, tmp, (size_t)r) != (size_t)r) goto done;
    }
    if (m.complete && hp.status_code == 200) loadstat_metrics_parse(m.body.data, m.body.len, out);
done:
    close(fd);
    buf_cleanup(&m.body);
}

/* ---- the settled "after" snapshot ---------------------------------------- */

void srvmetrics_settle_init(struct srvmetrics_settle *s, const struct loadstat_server *before, uint64_t now_ns) {
    memset(s, 0, sizeof *s);
    s->before = *before;
    s->t0 = now_ns;
    s->steady_ns = before->workers > 1 ? SRVMETRICS_STEADY_WORKERS_NS : SRVMETRICS_STEADY_NS;
}

static int settle_end(struct srvmetrics_settle *s, uint64_t now_ns, int steady) {
    s->steady = steady;
    s->waited_s = (double)(now_ns - s->t0) / 1e9;
    return 1;
}

int srvmetrics_settle_feed(struct srvmetrics_settle *s, const struct loadstat_server *snap, uint64_t now_ns) {
    const struct loadstat_server *b = &s->before;
    if (!snap->ok || !b->ok) return settle_end(s, now_ns, 0);
    uint64_t waited = now_ns - s->t0;
    if (!s->active_done) {
        int back = snap->sessions_active <= b->sessions_active && snap->connections_active <= b->connections_active;
        if (!back && waited < SRVMETRICS_SETTLE_ACTIVE_NS) return 0;
        s->active_done = 1;
    }
    if (snap->open_fds == b->open_fds) return settle_end(s, now_ns, 1);
    if (!s->have_fds || snap->open_fds != s->last_fds) {
        s->have_fds = 1;
        s->last_fds = snap->open_fds;
        s->last_change = now_ns;
    } else if (now_ns - s->last_change >= s->steady_ns) {
        return settle_end(s, now_ns, 1);
    }
    if (waited >= SRVMETRICS_SETTLE_MAX_NS) return settle_end(s, now_ns, 0);
    return 0;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / NS), (long)(ns % NS)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void srvmetrics_fetch_settled(const struct load_target *t, const struct loadstat_server *before,
                              struct loadstat_server *out, double *waited_s, int *steady) {
    struct srvmetrics_settle s;
    srvmetrics_settle_init(&s, before, util_now_ns());
    /* A master's workers publish their counters once a second (the
     * answering worker's are live): with several, the first read waits. */
    if (before->workers > 1) sleep_ns(1100000000ull);
    for (;;) {
        srvmetrics_fetch(t, out);
        if (srvmetrics_settle_feed(&s, out, util_now_ns())) break;
        sleep_ns(SRVMETRICS_SETTLE_POLL_NS);
    }
    *waited_s = s.waited_s;
    *steady = s.steady;
}

/* ---- samples during a phase -------------------------------------------- */

/* One GET /v1/metrics on the loop: never blocks the sessions. Heap-allocated
 * per fetch and freed by its close callback. */
struct srvmetrics_req {
    struct srvmetrics_sampler *owner;   /* NULL once dropped */
    uv_tcp_t     tcp;
    uv_connect_t creq;
    uv_write_t   wreq;
    http_parser  hp;
    struct buf   body;                  /* response body, bounded */
    uint64_t     started;               /* ns */
    int          complete, closing;
    char         req[1024];             /* the request: host <= 300 and key <= 255 bytes fit */
    size_t       req_len;
};

static char sample_rbuf[16384];         /* read buffer: consumed inside the read callback */

static void req_close_cb(uv_handle_t *h) {
    struct srvmetrics_req *m = h->data;
    buf_cleanup(&m->body);
    free(m);
}

static void req_end(struct srvmetrics_req *m) {
    if (m->closing) return;
    m->closing = 1;
    if (m->owner && m->owner->inflight == m) m->owner->inflight = NULL;
    m->owner = NULL;
    uv_close((uv_handle_t *)&m->tcp, req_close_cb);
}

static int req_on_body(http_parser *p, const char *at, size_t len) {
    struct srvmetrics_req *m = p->data;
    return buf_append(&m->body, at, len) == 0 ? 0 : -1;
}

static int req_on_complete(http_parser *p) {
    ((struct srvmetrics_req *)p->data)->complete = 1;
    return 0;
}

static const http_parser_settings req_settings = {.on_body = req_on_body, .on_message_complete = req_on_complete};

static void req_done(struct srvmetrics_req *m) {
    struct loadstat_server snap;
    struct srvmetrics_sampler *s = m->owner;
    if (s && m->complete && m->hp.status_code == 200 &&
        loadstat_metrics_parse(m->body.data, m->body.len, &snap) == 0)
        s->on_sample(s->arg, &snap);
    req_end(m);
}

static void req_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    b->base = sample_rbuf;
    b->len = sizeof sample_rbuf;
}

static void req_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct srvmetrics_req *m = st->data;
    if (m->closing) return;
    if (nread < 0) {
        http_parser_execute(&m->hp, &req_settings, NULL, 0);
        req_done(m);
        return;
    }
    if (nread == 0) return;
    if (http_parser_execute(&m->hp, &req_settings, b->base, (size_t)nread) != (size_t)nread || m->complete)
        req_done(m);
}

static void req_on_write(uv_write_t *req, int status) {
    struct srvmetrics_req *m = req->data;
    if (status < 0) req_end(m);
}

static void req_on_connect(uv_connect_t *req, int status) {
    struct srvmetrics_req *m = req->data;
    if (m->closing) return;
    uv_buf_t b = uv_buf_init(m->req, (unsigned)m->req_len);
    if (status < 0 || uv_write(&m->wreq, (uv_stream_t *)&m->tcp, &b, 1, req_on_write) != 0 ||
        uv_read_start((uv_stream_t *)&m->tcp, req_alloc, req_on_read) != 0)
        req_end(m);
}

static void sampler_timer_cb(uv_timer_t *t) {
    struct srvmetrics_sampler *s = t->data;
    uint64_t now = util_now_ns();
    if (s->inflight) {
        if (now - s->inflight->started < SAMPLE_TIMEOUT_NS) return;
        req_end(s->inflight);
    }
    struct srvmetrics_req *m = xcalloc(1, sizeof *m);
    if (uv_tcp_init_ex(s->loop, &m->tcp, s->t->addr.ss_family) != 0) {
        free(m);
        return;
    }
    m->owner = s;
    m->tcp.data = m->creq.data = m->wreq.data = m;
    buf_init(&m->body, 8u << 20);
    http_parser_init(&m->hp, HTTP_RESPONSE);
    m->hp.data = m;
    m->started = now;
    const char *key = s->t->api_key;
    m->req_len = (size_t)snprintf(m->req, sizeof m->req,
                                  "GET /v1/metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s\r\n", s->t->host,
                                  key[0] ? "Authorization: Bearer " : "", key, key[0] ? "\r\n" : "");
    s->inflight = m;
    if (uv_tcp_connect(&m->creq, &m->tcp, (const struct sockaddr *)&s->t->addr, req_on_connect) != 0) req_end(m);
}

void srvmetrics_sampler_init(struct srvmetrics_sampler *s, uv_loop_t *loop, const struct load_target *t,
                             srvmetrics_sample_fn on_sample, void *arg) {
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->t = t;
    s->on_sample = on_sample;
    s->arg = arg;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
}

void srvmetrics_sampler_start(struct srvmetrics_sampler *s, double interval_s) {
    if (interval_s <= 0) return;
    uint64_t ms = (uint64_t)(interval_s * 1000);
    uv_timer_start(&s->timer, sampler_timer_cb, ms, ms);
}

void srvmetrics_sampler_stop(struct srvmetrics_sampler *s) {
    uv_timer_stop(&s->timer);
    if (s->inflight) req_end(s->inflight);
}

void srvmetrics_sampler_close(struct srvmetrics_sampler *s) {
    srvmetrics_sampler_stop(s);
    uv_close((uv_handle_t *)&s->timer, NULL);
}
