#include "net/conn.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"

/* ---- state ------------------------------------------------------------------ */

static const char *const state_names[] = {
    [CONN_NEW] = "new", [CONN_OPEN] = "open", [CONN_LAST_WRITE] = "last_write",
    [CONN_CLOSING] = "closing", [CONN_CLOSED] = "closed",
};

const char *conn_state_name(enum conn_state st) {
    return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st] : "?";
}

/* The moves of conn.h's diagram. Staying put is not a move: the callers
 * that may be repeated (conn_close, conn_close_after_write) check first. */
static const unsigned char legal[5][5] = {
    /* to:           NEW OPEN LAST_WRITE CLOSING CLOSED */
    /* NEW        */ {0,  1,   1,         1,      0},
    /* OPEN       */ {0,  0,   1,         1,      0},
    /* LAST_WRITE */ {0,  0,   0,         1,      0},
    /* CLOSING    */ {0,  0,   0,         0,      1},
    /* CLOSED     */ {0,  0,   0,         0,      0},
};

/* Every change of c->state goes through here. An illegal move is a bug of
 * ours (no peer input reaches this table): it is logged and asserted; a
 * build without asserts refuses it and keeps the state. */
static void conn_set_state(struct conn *c, enum conn_state to) {
    if (!legal[c->state][to]) {
        struct log_line *l = log_begin(LOG_ERROR, "illegal connection state change");
        if (l) {
            log_u64(l, "conn", c->id);
            log_str(l, "from", conn_state_name(c->state));
            log_str(l, "to", conn_state_name(to));
            log_end(l);
        }
        assert(!"illegal connection state change");
        return;
    }
    c->state = to;
}

/* ---- libuv callbacks ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    struct conn *c = h->data;
    (void)suggested;
    b->base = c->set->rbuf;
    b->len = sizeof c->set->rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    struct conn *c = s->data;
    if (conn_closing(c)) return;
    if (nread > 0) {
        c->h->on_read(c, b->base, (size_t)nread);
    } else if (nread < 0) {
        if (c->h->on_eof) c->h->on_eof(c, (int)nread);
        else conn_close(c);
    }
}

static void on_timer_cb(uv_timer_t *t) {
    struct conn *c = t->data;
    if (conn_closing(c)) return;
    if (c->h && c->h->on_timer) c->h->on_timer(c);
    else conn_close(c);
}

void conn_set_init(struct conn_set *cs, uv_loop_t *loop) {
    memset(cs, 0, sizeof *cs);
    cs->loop = loop;
    cs->send_timeout_ms = 30000;
}

struct conn *conn_create(struct conn_set *cs) {
    struct conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->set = cs;
    c->id = ++cs->next_id;
    if (uv_tcp_init(cs->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    uv_timer_init(cs->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 2;
    c->next = cs->conns;
    if (cs->conns) cs->conns->prev = c;
    cs->conns = c;
    cs->count++;
    buf_init(&c->out, 0);
    buf_init(&c->inflight, 0);
    return c;
}

int conn_start(struct conn *c, const struct conn_handler *h, void *proto) {
    conn_set_state(c, CONN_OPEN);
    c->h = h;
    c->proto = proto;
    c->kind = CONN_HTTP;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_read_resume(c);
    return 0;
}

void conn_set_handler(struct conn *c, const struct conn_handler *h, void *proto, enum conn_proto kind) {
    c->h = h;
    c->proto = proto;
    c->kind = kind;
}

void conn_read_pause(struct conn *c) {
    if (!c->reading || conn_closing(c)) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

void conn_read_resume(struct conn *c) {
    if (c->reading || conn_closing(c)) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

void conn_want_flush(struct conn *c) {
    if (c->on_flush_list || conn_closing(c)) return;
    c->on_flush_list = 1;
    c->flush_next = c->set->flush_head;
    c->set->flush_head = c;
}

int conn_write(struct conn *c, const void *p, size_t n) {
    return conn_write2(c, p, n, NULL, 0);
}

int conn_write2(struct conn *c, const void *a, size_t an, const void *b, size_t bn) {
    if (conn_closing(c)) return ASR_EIO;
    if (bn > SIZE_MAX - an || buf_reserve(&c->out, an + bn) != 0) return ASR_ENOMEM;
    buf_append(&c->out, a, an); /* cannot fail after the reserve */
    if (bn) buf_append(&c->out, b, bn);
    conn_want_flush(c);
    return 0;
}

size_t conn_unsent(const struct conn *c) { return c->out.len + c->inflight.len; }

int conn_set_sndbuf(struct conn *c, int bytes) {
    int v = bytes;
    return uv_send_buffer_size((uv_handle_t *)&c->tcp, &v);
}

void conn_timer(struct conn *c, uint64_t ms) {
    if (conn_closing(c)) return;
    if (ms) uv_timer_start(&c->timer, on_timer_cb, ms, 0);
    else uv_timer_stop(&c->timer);
}

static void on_handle_closed(uv_handle_t *h) {
    struct conn *c = h->data;
    if (--c->handles_open > 0) return;
    conn_set_state(c, CONN_CLOSED);
    if (c->h && c->h->on_free) c->h->on_free(c);
    buf_cleanup(&c->out);
    buf_cleanup(&c->inflight);
    free(c->wreq);
    struct conn_set *cs = c->set;
    if (c->prev) c->prev->next = c->next; else cs->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    cs->count--;
    if (cs->on_closed) cs->on_closed(cs->ctx, c);
    free(c);
}

/* Deferred close: uv_close frees nothing now; on_handle_closed runs on a
 * later loop phase, after every callback up the stack has returned. A
 * pending uv_write is cancelled by uv_close and its callback sees
 * UV_ECANCELED before the close callback. */
void conn_close(struct conn *c) {
    if (conn_closing(c)) return;
    conn_set_state(c, CONN_CLOSING);
    c->reading = 0;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void conn_abort(struct conn *c) {
    if (conn_closing(c)) return;
    uv_os_fd_t fd;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_close(c);
}

void conn_close_after_write(struct conn *c) {
    if (c->state == CONN_NEW || c->state == CONN_OPEN) conn_set_state(c, CONN_LAST_WRITE);
    conn_want_flush(c);
}

static void flush_one(struct conn *c);

/* A write failed (the peer reset, say). The handler hears of it; a
 * connection without one (NEW: a refusal the set's owner wrote before any
 * protocol started) just closes. */
static void write_failed(struct conn *c, int status) {
    if (c->h && c->h->on_eof) c->h->on_eof(c, status);
    else conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
    struct conn *c = req->data;
    c->writing = 0;
    buf_cleanup(&c->inflight); /* only slow writes get here: give the memory back */
    if (conn_closing(c)) return;
    if (status < 0) {
        write_failed(c, status);
        return;
    }
    if (c->h && c->h->on_drain) c->h->on_drain(c);
    flush_one(c);
}

/* Writes what is in out: try the socket at once, and leave the rest as the
 * one write in flight. */
static void flush_one(struct conn *c) {
    if (conn_closing(c) || c->writing) return;
    if (c->h && c->h->on_flush) c->h->on_flush(c);
    if (conn_closing(c)) return;
    if (c->out.len == 0) {
        if (c->state == CONN_LAST_WRITE) conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
        write_failed(c, n);
        return;
    }
    if ((size_t)n == c->out.len) {
        /* Idle connections give their buffer back (docs/internals/architecture.md, "Buffers"); malloc's
         * per-thread cache makes the next message's buffer cheap. */
        buf_cleanup(&c->out);
        if (c->state == CONN_LAST_WRITE) conn_close(c);
        else if (c->h && c->h->on_drain) c->h->on_drain(c);
        return;
    }
    /* Swap: the unwritten rest becomes the in-flight buffer. */
    struct buf t = c->inflight;
    c->inflight = c->out;
    c->out = t;
    buf_reset(&c->out);
    memmove(c->inflight.data, c->inflight.data + n, c->inflight.len - (size_t)n);
    c->inflight.len -= (size_t)n;
    b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
    if (!c->wreq) c->wreq = xmalloc(sizeof *c->wreq);
    c->wreq->data = c;
    c->writing = 1;
    c->wprogress_ms = uv_now(c->set->loop);
    c->wleft = c->inflight.len;
    if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->writing = 0;
        conn_close(c);
    }
}

void conn_flush_all(struct conn_set *cs) {
    while (cs->flush_head) {
        struct conn *c = cs->flush_head;
        cs->flush_head = c->flush_next;
        c->on_flush_list = 0;
        c->flush_next = NULL;
        flush_one(c);
    }
}

/* Progress is the write queue getting shorter (libuv writes what the socket
 * takes as it becomes writable) or a new write starting (flush_one). A
 * stuck write means the kernel's send buffer is full too: the peer reads
 * nothing. One scan a second over every connection is cheap next to their
 * traffic. */
void conn_check_timeouts(struct conn_set *cs) {
    uint64_t now = uv_now(cs->loop), limit = cs->send_timeout_ms;
    for (struct conn *c = cs->conns, *n; c; c = n) {
        n = c->next;
        if (conn_closing(c) || !c->writing) continue;
        size_t left = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (left < c->wleft) {
            c->wleft = left;
            c->wprogress_ms = now;
            continue;
        }
        if (now - c->wprogress_ms < limit) continue;
        struct log_line *l = log_begin(LOG_INFO, "send timeout");
        if (l) {
            log_str(l, "peer", c->peer);
            log_u64(l, "conn", c->id);
            log_u64(l, "unsent", left + c->out.len);
            log_end(l);
        }
        c->wprogress_ms = now;
        if (c->send_timeouts++ == 0 && c->h && c->h->on_send_timeout) c->h->on_send_timeout(c);
        else conn_abort(c);
    }
}
