#include "ws.h"

#include <nettle/sha1.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "err.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

struct ws_msg {
    struct ws_msg *next;
    size_t len;
    int    droppable;
    char   data[];
};

struct ws_conn {
    struct conn *c;                  /* borrowed; owns us through c->proto */
    wslay_event_context_ptr ctx;     /* owned */
    struct ws_limits lim;
    const struct ws_handler *h;      /* borrowed */
    void  *hctx;                     /* borrowed */
    const uint8_t *rbuf;             /* bytes being fed to wslay */
    size_t rlen;
    struct ws_msg *qhead, *qtail;    /* owned send queue */
    size_t q_bytes, q_msgs;
    int    overflows;                /* in a row */
    int    close_code;               /* pending close (after queue) */
    char   close_reason[64];
    int    close_pending;
    int    close_queued;             /* handed to wslay */
    int    paused;
};

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_PUMP_BYTES 65536   /* hand at most this much to the socket per flush */

void ws_accept_key(const char *key, size_t len, char out[29]) {
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, len, (const uint8_t *)key);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof digest, digest);
    sodium_bin2base64(out, 29, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user) {
    struct ws_conn *ws = user;
    if (ws->rlen == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->rlen ? len : ws->rlen;
    memcpy(buf, ws->rbuf, n);
    ws->rbuf += n;
    ws->rlen -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user) {
    struct ws_conn *ws = user;
    if (conn_write(ws->c, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
    struct ws_conn *ws = user;
    if (ws->c->closing) return;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (!ws->close_pending && !ws->close_queued) ws->h->on_text(ws->hctx, arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        if (!ws->close_pending && !ws->close_queued) ws->h->on_binary(ws->hctx, arg->msg, arg->msg_length);
        break;
    case WSLAY_PING:
        if (ws->h->on_ping) ws->h->on_ping(ws->hctx);
        break;
    default:
        break;
    }
}

static void queue_free(struct ws_conn *ws) {
    while (ws->qhead) {
        struct ws_msg *m = ws->qhead;
        ws->qhead = m->next;
        free(m);
    }
    ws->qtail = NULL;
    ws->q_bytes = ws->q_msgs = 0;
}

/* Decides whether the connection is finished: both close frames exchanged,
 * or ours sent and the peer's read side is shut (wslay stops reading after a
 * protocol error), with everything written. */
static void check_done(struct ws_conn *ws) {
    if (ws->c->closing) return;
    if (!wslay_event_get_close_sent(ws->ctx)) return;
    if (conn_unsent(ws->c) > 0 || wslay_event_want_write(ws->ctx)) return;
    if (wslay_event_get_close_received(ws->ctx) || !wslay_event_get_read_enabled(ws->ctx)) {
        conn_close(ws->c);
        return;
    }
    /* Linger for the peer's close frame, but not forever. */
    conn_timer(ws->c, 2000);
}

/* Called before each flush: move queued messages into wslay while the
 * connection has nothing unsent, then let wslay write them out. */
static void on_flush(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws) return;
    while (ws->qhead && conn_unsent(c) < WS_PUMP_BYTES && !ws->close_queued) {
        struct ws_msg *m = ws->qhead;
        struct wslay_event_msg wm = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)m->data, .msg_length = m->len};
        if (wslay_event_queue_msg(ws->ctx, &wm) != 0) break;
        ws->qhead = m->next;
        if (!ws->qhead) ws->qtail = NULL;
        ws->q_bytes -= m->len;
        ws->q_msgs--;
        free(m);
        if (wslay_event_send(ws->ctx) != 0) break;
    }
    if (ws->close_pending && !ws->qhead && !ws->close_queued) {
        ws->close_queued = 1;
        wslay_event_queue_close(ws->ctx, (uint16_t)ws->close_code, (const uint8_t *)ws->close_reason,
                                strlen(ws->close_reason));
        metrics_count_close(ws->close_code);
    }
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        conn_close(c);
        return;
    }
}

static void on_drain(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws) return;
    if (ws->qhead || ws->close_pending || wslay_event_want_write(ws->ctx)) conn_want_flush(c);
    check_done(ws);
}

static void on_read(struct conn *c, const char *data, size_t n) {
    struct ws_conn *ws = c->proto;
    ws->rbuf = (const uint8_t *)data;
    ws->rlen = n;
    int r = wslay_event_recv(ws->ctx);
    ws->rlen = 0;
    if (c->closing) return;
    if (r != 0) {
        conn_close(c);
        return;
    }
    if (wslay_event_want_write(ws->ctx) || ws->qhead) conn_want_flush(c);
    if (!ws->close_queued && (wslay_event_get_close_received(ws->ctx) || !wslay_event_get_read_enabled(ws->ctx))) {
        /* The peer closed, or wslay refused its input and queued its own
         * close: nothing more will be read. Our queue is dropped. */
        ws->close_queued = 1;
        queue_free(ws);
        conn_want_flush(c);
    }
    check_done(ws);
}

static void on_eof(struct conn *c, int status) {
    conn_close(c);
}

static void on_timer(struct conn *c) {
    conn_close(c);
}

static void on_free(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws) return;
    /* code_sent is a close this side initiated: ours (ws_close) or wslay's
     * own (1009 too big, 1002 protocol error: it stops reading then, so the
     * peer's reply is never seen). An echo of the peer's close is not one. */
    int rcvd = wslay_event_get_close_received(ws->ctx) ? wslay_event_get_status_code_received(ws->ctx) : 0;
    int sent = ws->close_code;
    if (!sent && wslay_event_get_close_sent(ws->ctx) && !rcvd) sent = wslay_event_get_status_code_sent(ws->ctx);
    if (!(ws->close_code && ws->close_queued)) metrics_count_close(ws->close_code ? 0 : sent);
    if (ws->h->on_closed) ws->h->on_closed(ws->hctx, sent, rcvd);
    queue_free(ws);
    wslay_event_context_free(ws->ctx);
    free(ws);
}

static const struct conn_handler ws_handler = {
    .on_read = on_read, .on_eof = on_eof, .on_drain = on_drain, .on_timer = on_timer,
    .on_free = on_free, .on_flush = on_flush,
};

struct ws_conn *ws_start(struct conn *c, const struct ws_limits *lim, const struct ws_handler *h, void *hctx,
                         const void *rest, size_t rest_len) {
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb, .send_callback = send_cb, .on_msg_recv_callback = on_msg_cb,
    };
    struct ws_conn *ws = calloc(1, sizeof *ws);
    if (!ws) goto fail;
    ws->c = c;
    ws->lim = *lim;
    ws->h = h;
    ws->hctx = hctx;
    if (wslay_event_context_server_init(&ws->ctx, &cbs, ws) != 0) goto fail;
    wslay_event_config_set_max_recv_msg_length(ws->ctx, lim->max_message_bytes);
    conn_set_handler(c, &ws_handler, ws, CONN_WS);
    if (rest_len) on_read(c, rest, rest_len);
    return ws;
fail:
    free(ws);
    conn_close(c);
    return NULL;
}

int ws_send_text(struct ws_conn *ws, const char *p, size_t n, int droppable) {
    if (ws->close_pending || ws->close_queued || ws->c->closing) return ASR_EIO;
    int overflow = 0;
    while (ws->qhead && (ws->q_bytes + n > ws->lim.max_queue_bytes || ws->q_msgs + 1 > ws->lim.max_queue_msgs)) {
        /* Drop the oldest undelivered partial (never finals, errors, events). */
        struct ws_msg *prev = NULL, *m = ws->qhead;
        while (m && !m->droppable) { prev = m; m = m->next; }
        if (!m) break;
        if (prev) prev->next = m->next; else ws->qhead = m->next;
        if (ws->qtail == m) ws->qtail = prev;
        ws->q_bytes -= m->len;
        ws->q_msgs--;
        free(m);
        metrics.partials_dropped++;
        overflow = 1;
    }
    /* Nothing left to drop and still over: only finals, errors and events
     * remain. They may pass the soft bounds (they are never dropped), but not
     * twice them: a peer that reads nothing and keeps provoking answers is
     * too slow. */
    if (ws->q_bytes + n > 2 * ws->lim.max_queue_bytes || ws->q_msgs + 1 > 2 * ws->lim.max_queue_msgs) {
        ws_close(ws, 1008, "client too slow", 0);
        return ASR_EIO;
    }
    if (overflow) {
        if (++ws->overflows >= ws->lim.slow_client_threshold) {
            ws_close(ws, 1008, "client too slow", 0);
            return ASR_EIO;
        }
    } else {
        ws->overflows = 0; /* the queue had room: the run of overflows is over */
    }
    if (droppable && (n > ws->lim.max_queue_bytes || ws->q_msgs + 1 > ws->lim.max_queue_msgs)) {
        metrics.partials_dropped++;
        return 0;
    }
    struct ws_msg *m = malloc(sizeof *m + n);
    if (!m) return ASR_ENOMEM;
    m->next = NULL;
    m->len = n;
    m->droppable = droppable;
    memcpy(m->data, p, n);
    if (ws->qtail) ws->qtail->next = m; else ws->qhead = m;
    ws->qtail = m;
    ws->q_bytes += n;
    ws->q_msgs++;
    conn_want_flush(ws->c);
    return 0;
}

void ws_close(struct ws_conn *ws, int code, const char *reason, int after_queued) {
    if (ws->close_pending || ws->close_queued) return;
    if (!after_queued) queue_free(ws);
    ws->close_pending = 1;
    ws->close_code = code;
    snprintf(ws->close_reason, sizeof ws->close_reason, "%s", reason ? reason : "");
    conn_want_flush(ws->c);
}

void ws_pause(struct ws_conn *ws) {
    if (ws->paused) return;
    ws->paused = 1;
    metrics.ws_paused++;
    conn_read_pause(ws->c);
}

void ws_resume(struct ws_conn *ws) {
    if (!ws->paused) return;
    ws->paused = 0;
    conn_read_resume(ws->c);
}

