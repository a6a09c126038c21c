/* asrd-load's WebSocket session client (wsclient.h). */
#define _GNU_SOURCE
#include "wsclient.h"

#include <nettle/sha1.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "opts.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static char rbuf_shared[65536];         /* read buffer: consumed inside the read callback */

static void sess_lost(struct sess *s, int err);
static void on_sess_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* ---- writes ------------------------------------------------------------ */

struct wreq {
    uv_write_t req;
    struct sess *s;
    size_t     len;
    char       data[];
};

static void on_sess_write(uv_write_t *req, int status) {
    struct wreq *w = (struct wreq *)req;
    struct sess *s = w->s;
    s->wq_bytes -= w->len;
    free(w);
    if (s->st == ST_IDLE || s->st == ST_ENDED) return;
    if (status < 0) {
        sess_lost(s, status);
        return;
    }
    if (s->close_after_write && s->wq_bytes == 0) wsclient_end(s);
}

/* Writes p[0..n) to the session's socket: directly when nothing is queued
 * and the kernel takes it, else a copy goes on a uv_write. Returns 0 or a
 * libuv error (the connection is then lost). */
static int sess_write(struct sess *s, const void *p, size_t n) {
    if (s->closing) return UV_EPIPE;
    const char *d = p;
    if (n == 0) return 0;
    if (s->wq_bytes == 0) {
        uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
        int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (r == (int)n) return 0;
        if (r < 0 && r != UV_EAGAIN) return r;
        if (r > 0) {
            d += r;
            n -= (size_t)r;
        }
    }
    struct wreq *w = xmalloc(sizeof *w + n);
    w->s = s;
    w->len = n;
    memcpy(w->data, d, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int r = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_sess_write);
    if (r != 0) {
        free(w);
        return r;
    }
    s->wq_bytes += n;
    if (s->wq_bytes > SESS_STALL_BYTES) s->stalled = 1;
    return 0;
}

/* ---- wslay callbacks --------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user) {
    struct sess *s = user;
    if (s->rlen == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < s->rlen ? len : s->rlen;
    memcpy(buf, s->rbuf, n);
    s->rbuf += n;
    s->rlen -= n;
    return (ssize_t)n;
}

/* wslay hands over frames piecewise; they are gathered in set->out and
 * written once per pump (sess_pump). */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user) {
    struct sess *s = user;
    if (buf_append(&s->set->out, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Masks come from a pool refilled by libsodium's randombytes, which keeps
 * one getrandom() per ~1000 frames instead of one per frame. */
static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user) {
    struct sess_set *set = ((struct sess *)user)->set;
    if (len > sizeof set->mask_pool) return -1;
    if (set->mask_pos + len > sizeof set->mask_pool) {
        randombytes_buf(set->mask_pool, sizeof set->mask_pool);
        set->mask_pos = 0;
    }
    memcpy(buf, set->mask_pool + set->mask_pos, len);
    set->mask_pos += len;
    return 0;
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
    struct sess *s = user;
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        s->set->ev->on_text(s->set->arg, s, arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        s->got_close = 1;
        s->close_code = arg->status_code ? arg->status_code : 1005;
    }
}

/* Sends what wslay has queued. Returns 0, or -1 when the connection was
 * lost (the session is then ended). */
static int sess_pump(struct sess *s) {
    if (!s->ctx) return 0;
    struct buf *out = &s->set->out;
    out->len = 0;
    int rc = wslay_event_send(s->ctx);
    if (out->len) {
        int w = sess_write(s, out->data, out->len);
        out->len = 0;
        if (w != 0) {
            sess_lost(s, w);
            return -1;
        }
    }
    if (rc != 0) {
        sess_lost(s, UV_EPROTO);
        return -1;
    }
    return 0;
}

/* After reading or sending: both close frames exchanged means done, once
 * our close reply has left. */
static void sess_check_closed(struct sess *s) {
    if (!s->ctx || s->st == ST_ENDED) return;
    if (s->st == ST_OPEN && s->got_close) {
        /* Closed before the `session` message: a limit found after the
         * upgrade (1013, docs/API.md) or a refusal. */
        char why[32];
        snprintf(why, sizeof why, "close_%u", s->close_code);
        wsclient_fail(s, why);
        return;
    }
    if (wslay_event_get_close_received(s->ctx) && !wslay_event_want_write(s->ctx)) {
        if (s->wq_bytes == 0) wsclient_end(s);
        else s->close_after_write = 1;
    }
}

void wsclient_queue(struct sess *s, int opcode, const void *p, size_t n) {
    struct wslay_event_msg m = {.opcode = (uint8_t)opcode, .msg = p, .msg_length = n};
    if (wslay_event_queue_msg(s->ctx, &m) != 0) return;   /* closing: nothing more goes out */
    sess_pump(s);
}

/* ---- upgrade ----------------------------------------------------------- */

static int hs_on_field(http_parser *p, const char *at, size_t len) {
    struct sess *s = p->data;
    if (s->hvalue_last) s->hname_len = 0;
    s->hvalue_last = 0;
    size_t room = sizeof s->hname - 1 - s->hname_len;
    size_t n = len < room ? len : room;
    memcpy(s->hname + s->hname_len, at, n);
    s->hname_len += n;
    return 0;
}

static int hs_on_value(http_parser *p, const char *at, size_t len) {
    struct sess *s = p->data;
    s->hvalue_last = 1;
    if (util_ieq(s->hname, s->hname_len, "sec-websocket-accept")) {
        size_t room = sizeof s->accept - 1 - s->accept_len;
        size_t n = len < room ? len : room;
        memcpy(s->accept + s->accept_len, at, n);
        s->accept_len += n;
    }
    return 0;
}

static int hs_on_headers_complete(http_parser *p) {
    ((struct sess *)p->data)->hdr_done = 1;
    return 0;
}

static const http_parser_settings hs_settings = {
    .on_header_field = hs_on_field,
    .on_header_value = hs_on_value,
    .on_headers_complete = hs_on_headers_complete,
};

static void ws_feed(struct sess *s, const uint8_t *p, size_t n) {
    s->rbuf = p;
    s->rlen = n;
    int rc = wslay_event_recv(s->ctx);
    s->rlen = 0;
    if (s->st == ST_ENDED) return;
    if (rc != 0) {
        sess_lost(s, UV_EPROTO);
        return;
    }
    if (sess_pump(s) != 0) return;
    sess_check_closed(s);
}

/* Upgrade response bytes. On the 101 with the right accept key the
 * WebSocket starts, and any bytes after the head are its first frames. */
static void hs_feed(struct sess *s, const char *p, size_t n) {
    size_t used = http_parser_execute(&s->hp, &hs_settings, p, n);
    if (s->hp.upgrade) {
        char why[32];
        if (s->hp.status_code != 101) {
            snprintf(why, sizeof why, "http_%u", s->hp.status_code);
            wsclient_fail(s, why);
            return;
        }
        if (s->accept_len != strlen(s->expect) || memcmp(s->accept, s->expect, s->accept_len) != 0) {
            wsclient_fail(s, "bad_accept");
            return;
        }
        static const struct wslay_event_callbacks cbs = {
            .recv_callback = ws_recv_cb, .send_callback = ws_send_cb,
            .genmask_callback = ws_genmask_cb, .on_msg_recv_callback = ws_msg_cb,
        };
        if (wslay_event_context_client_init(&s->ctx, &cbs, s) != 0) {
            s->ctx = NULL;
            wsclient_fail(s, "ENOMEM");
            return;
        }
        wslay_event_config_set_max_recv_msg_length(s->ctx, 1u << 20);
        s->st = ST_OPEN;
        if (used < n) ws_feed(s, (const uint8_t *)p + used, n - used);
        return;
    }
    if (HTTP_PARSER_ERRNO(&s->hp) != HPE_OK) {
        wsclient_fail(s, "bad_handshake");
    } else if (s->hdr_done) {
        char why[32];
        snprintf(why, sizeof why, "http_%u", s->hp.status_code);
        wsclient_fail(s, s->hp.status_code == 101 ? "bad_handshake" : why);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    b->base = rbuf_shared;
    b->len = sizeof rbuf_shared;
}

static void on_sess_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct sess *s = st->data;
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (nread < 0) {
        sess_lost(s, (int)nread);
        return;
    }
    if (nread == 0) return;
    if (s->st == ST_HANDSHAKE) hs_feed(s, b->base, (size_t)nread);
    else ws_feed(s, (const uint8_t *)b->base, (size_t)nread);
}

int wsclient_read_start(struct sess *s) { return uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_sess_read); }

void wsclient_read_stop(struct sess *s) { uv_read_stop((uv_stream_t *)&s->tcp); }

static void on_sess_connect(uv_connect_t *req, int status) {
    struct sess *s = req->data;
    if (s->st != ST_CONNECTING) return;
    if (status < 0) {
        wsclient_fail(s, uv_err_name(status));
        return;
    }
    uint8_t key[16];
    char key64[32];
    randombytes_buf(key, sizeof key);
    sodium_bin2base64(key64, sizeof key64, key, sizeof key, sodium_base64_VARIANT_ORIGINAL);
    struct sha1_ctx sha;
    uint8_t dig[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, strlen(key64), (const uint8_t *)key64);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof dig, dig);
    sodium_bin2base64(s->expect, sizeof s->expect, dig, sizeof dig, sodium_base64_VARIANT_ORIGINAL);
    const struct load_target *t = s->set->t;
    char req_text[1400];
    int n = snprintf(req_text, sizeof req_text,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: asrd-load\r\n%s%s%s\r\n",
                     t->path, t->host, key64, t->api_key[0] ? "Authorization: Bearer " : "", t->api_key,
                     t->api_key[0] ? "\r\n" : "");
    http_parser_init(&s->hp, HTTP_RESPONSE);
    s->hp.data = s;
    s->st = ST_HANDSHAKE;
    int r = sess_write(s, req_text, (size_t)n);
    if (r == 0) r = wsclient_read_start(s);
    if (r != 0) wsclient_fail(s, uv_err_name(r));
}

/* ---- lifecycle --------------------------------------------------------- */

static void on_sess_close(uv_handle_t *h) {
    struct sess *s = h->data;
    struct sess_set *set = s->set;
    s->in_use = 0;
    s->closing = 0;
    s->st = ST_IDLE;
    set->freelist[set->nfree++] = s->idx;
    set->ev->on_closed(set->arg, s);
}

void wsclient_end(struct sess *s) {
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    s->set->ev->on_end(s->set->arg, s);
    s->st = ST_ENDED;
    if (s->ctx) {
        wslay_event_context_free(s->ctx);
        s->ctx = NULL;
    }
    if (!s->closing) {
        s->closing = 1;
        uv_close((uv_handle_t *)&s->tcp, on_sess_close);
    }
}

void wsclient_fail(struct sess *s, const char *why) {
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (why) {
        s->failed = 1;
        s->set->ev->on_fail(s->set->arg, s, why);
    }
    s->counted_open = 0;
    wsclient_end(s);
}

/* The TCP connection ended (EOF, reset, write error) or broke the protocol. */
static void sess_lost(struct sess *s, int err) {
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (s->st < ST_STREAMING) {
        char why[32];
        snprintf(why, sizeof why, "%s_before_session", err == UV_EOF ? "EOF" : uv_err_name(err));
        wsclient_fail(s, why);
        return;
    }
    if (s->st == ST_STREAMING) s->lost_streaming = 1;
    wsclient_end(s);
}

struct sess *wsclient_take(struct sess_set *set) {
    if (!set->nfree) return NULL;
    unsigned idx = set->freelist[--set->nfree];
    struct sess *s = &set->v[idx];
    memset(s, 0, sizeof *s);
    s->idx = idx;
    s->set = set;
    return s;
}

int wsclient_init(struct sess *s) {
    struct sess_set *set = s->set;
    int r = uv_tcp_init_ex(set->loop, &s->tcp, set->t->addr.ss_family);
    if (r != 0) set->freelist[set->nfree++] = s->idx;
    return r;
}

void wsclient_connect(struct sess *s) {
    struct sess_set *set = s->set;
    s->tcp.data = s;
    s->creq.data = s;
    s->in_use = 1;
    s->st = ST_CONNECTING;
    s->deadline = util_now_ns() + (uint64_t)(set->connect_timeout_s * 1e9);
    uv_tcp_nodelay(&s->tcp, 1);
    if (s->slow) {
        uv_os_fd_t fd;
        int sz = (int)set->slow_rcvbuf;
        if (sz > 0 && uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    int r = uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&set->t->addr, on_sess_connect);
    if (r != 0) wsclient_fail(s, uv_err_name(r));
}

void wsclient_set_init(struct sess_set *set, uv_loop_t *loop, const struct load_target *t, unsigned n,
                   const struct sess_events *ev, void *arg) {
    memset(set, 0, sizeof *set);
    set->loop = loop;
    set->t = t;
    set->n = n;
    set->v = xcalloc(n ? n : 1, sizeof *set->v);
    set->freelist = xcalloc(n ? n : 1, sizeof *set->freelist);
    for (unsigned i = 0; i < n; i++) set->freelist[set->nfree++] = n - 1 - i;
    set->ev = ev;
    set->arg = arg;
    buf_init(&set->out, 0);
    set->mask_pos = sizeof set->mask_pool;
}

void wsclient_set_cleanup(struct sess_set *set) {
    buf_cleanup(&set->out);
    free(set->v);
    free(set->freelist);
    memset(set, 0, sizeof *set);
}
