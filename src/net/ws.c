#include "net/ws.h"

#include <assert.h>
#include <nettle/sha1.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/util.h"

/* One queued message in ws->q: this header, then the payload, padded so the
 * next header is aligned. A dropped record stays in place (its bytes are
 * garbage) until the buffer is compacted. */
struct ws_rec {
    size_t len;                      /* payload bytes */
    int    droppable;                /* a partial */
    int    dropped;                  /* dropped by the policy */
};

/* Reassembly of the data message being received (wslay has checked the
 * opcode sequence, so a message opens only from NONE and continues only
 * inside one). A parser detail beside the connection's state: a message
 * may be open in any state. */
enum ws_msg {
    WS_MSG_NONE,                     /* between messages */
    WS_MSG_KEEP,                     /* a message is open; its bytes are kept */
    WS_MSG_SKIP,                     /* a message is open; keep none of it: too big, out of memory, or closing */
};

struct ws_conn {
    struct conn *c;                  /* borrowed; owns us through c->proto */
    wslay_event_context_ptr ctx;     /* owned */
    struct ws_limits lim;
    const struct ws_handler *h;      /* borrowed */
    void  *hctx;                     /* borrowed */
    enum ws_state state;             /* the close handshake: only ws_set_state changes it */
    /* receiving */
    const uint8_t *rbuf;             /* borrowed: bytes of this read not yet fed to wslay */
    size_t rlen;
    struct buf msg;                  /* owned: a message that came in pieces, reassembled */
    const uint8_t *direct;           /* borrowed from wslay: a message that came in one piece */
    size_t msg_len;                  /* bytes of the current message so far, all fragments */
    uint64_t frame_len;              /* payload bytes of the current data frame */
    int    frame_ctrl;               /* the current frame is a control frame (wslay's) */
    int    frame_fin;
    enum ws_msg msg_state;           /* the message being reassembled */
    size_t unframed;                 /* bytes fed to wslay that no complete frame has accounted for */
    /* sending */
    struct buf q;                    /* owned: queued messages as struct ws_rec records */
    size_t q_head;                   /* offset of the oldest record not handed to wslay */
    size_t q_dead;                   /* bytes of dropped records at or after q_head */
    size_t q_bytes, q_msgs;          /* payload bytes and messages queued (the policy counts these) */
    int    overflows;                /* in a row */
    int    close_code;               /* the close this side decided (ws_close, fail_protocol), 0 = none */
    char   close_reason[64];
    /* Flags beside the state: facts and modes that hold in several states
     * at once and do not order the close handshake.
     * - wslay_reading mirrors wslay's read_enabled (wslay owns that state);
     * - fast_off is a sticky mode of the receive path;
     * - recv_failed, bad_close and ctrl_flood record what one wslay_event_recv
     *   found, for on_read to act on (ctrl_flood also keeps on_read from
     *   dropping the 1008 that ws_close has pending); over_budget is the
     *   1013 frame_chunk_cb queued (1, then 2 once on_read logged it);
     * - proto_error and close_counted are what on_free reports and counts;
     * - paused is backpressure (ws_pause), which any state may have. */
    int    wslay_reading;            /* wslay's read_enabled after its last wslay_event_recv */
    int    fast_off;                 /* that count went wrong: always use wslay */
    int    recv_failed;              /* out of memory reassembling: close */
    int    over_budget;              /* the message budget refused this message: closing 1013 */
    int    bad_close;                /* the peer's close frame had a 1-byte payload (on_msg_cb) */
    int    ctrl_flood;               /* we stopped wslay reading: pings pile up behind a stuck write */
    int    proto_error;              /* the peer broke RFC 6455: its close, if any, is not one */
    int    close_counted;            /* close_codes has counted this connection's close frame */
    int    paused;                   /* ws_pause: the session wants no input */
    /* Liveness (docs/API.md "Ping and pong"): a ping every
     * lim.ping_interval_ms; its pong must come within lim.ping_timeout_ms.
     * The connection timer serves both the pings and the close (linger,
     * grace); once a close armed it, no more pings are sent. */
    int    ping_timer;               /* the connection timer is armed for a ping or its deadline */
    int    close_timer;              /* a close armed the connection timer: pings are over */
    int    ping_awaiting;            /* a ping is out; its pong has not come */
    uint64_t ping_seq;               /* pings sent; the payload of the last one */
    uint64_t ping_sent_ms;           /* loop time the last ping was queued */
};

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_PUMP_BYTES 16384        /* hand more queued messages to wslay only while less is unsent */
#define WS_SNDBUF 16384            /* SO_SNDBUF of a WebSocket (the kernel doubles it) */
#define WS_CLOSE_LINGER_MS 2000    /* after our close frame: wait this long for the peer's */
#define WS_CLOSE_GRACE_MS 2000     /* a policy close behind a stuck write: then reset */
#define WS_MAX_CTRL_QUEUED 32      /* pongs/close waiting in wslay behind a stuck write */
#define WS_CODE_TRY_AGAIN_LATER 1013 /* RFC 6455 7.4.2 (IANA registry): the message budget is spent */

static void ping_arm(struct ws_conn *ws, uint64_t ms);

/* ---- state --------------------------------------------------------------------- */

static const char *const state_names[] = {
    [WS_ST_OPEN] = "open", [WS_ST_CLOSE_PENDING] = "close_pending", [WS_ST_CLOSE_QUEUED] = "close_queued",
    [WS_ST_LINGER] = "linger", [WS_ST_FAILED] = "failed",
};

const char *ws_state_name(enum ws_state st) {
    return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st] : "?";
}

enum ws_state ws_state(const struct ws_conn *ws) { return ws->state; }

/* The moves of ws.h's diagram. */
static const unsigned char legal[5][5] = {
    /* to:              OPEN PENDING QUEUED LINGER FAILED */
    /* OPEN          */ {0,   1,      1,     0,     1},
    /* CLOSE_PENDING */ {0,   0,      1,     0,     1},
    /* CLOSE_QUEUED  */ {0,   0,      0,     1,     0},
    /* LINGER        */ {0,   0,      0,     0,     0},
    /* FAILED        */ {0,   0,      0,     0,     0},
};

/* Every change of ws->state goes through here; none runs per frame. The
 * callers check the state before they move, so an illegal move is a bug of
 * ours (what the peer sends is judged by wslay and the callers first): it is
 * logged and asserted, and a build without asserts keeps the state. */
static void ws_set_state(struct ws_conn *ws, enum ws_state to) {
    if (!legal[ws->state][to]) {
        struct log_line *l = log_begin(LOG_ERROR, "illegal websocket state change");
        if (l) {
            log_u64(l, "conn", ws->c->id);
            log_str(l, "from", ws_state_name(ws->state));
            log_str(l, "to", ws_state_name(to));
            log_end(l);
        }
        assert(!"illegal websocket state change");
        return;
    }
    ws->state = to;
}

/* ---- handshake -------------------------------------------------------------------- */

void ws_accept_key(const char *key, size_t len, char out[29]) {
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, len, (const uint8_t *)key);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof digest, digest);
    sodium_bin2base64(out, 29, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
}

/* ---- send queue ---------------------------------------------------------- */

static size_t rec_size(size_t n) {
    return (sizeof(struct ws_rec) + n + _Alignof(struct ws_rec) - 1) & ~(size_t)(_Alignof(struct ws_rec) - 1);
}

static struct ws_rec *rec_at(const struct ws_conn *ws, size_t off) { return (struct ws_rec *)(ws->q.data + off); }

/* Empties the queue and gives its memory back (an idle connection holds none). */
static void queue_free(struct ws_conn *ws) {
    buf_cleanup(&ws->q);
    ws->q_head = ws->q_dead = 0;
    ws->q_bytes = ws->q_msgs = 0;
}

/* Moves the live records to the start of the buffer, reclaiming what was
 * handed to wslay and what was dropped. */
static void queue_compact(struct ws_conn *ws) {
    size_t to = 0;
    for (size_t off = ws->q_head; off < ws->q.len;) {
        struct ws_rec *r = rec_at(ws, off);
        size_t sz = rec_size(r->len);
        if (!r->dropped) {
            if (to != off) memmove(ws->q.data + to, r, sz);
            to += sz;
        }
        off += sz;
    }
    ws->q.len = to;
    ws->q_head = ws->q_dead = 0;
}

/* Appends a copy of p[0..n). Before the buffer would grow, it is compacted
 * if at least half of it is reclaimable: each byte is moved at most a
 * bounded number of times, and the buffer stays within about 4x the live
 * records. */
static int queue_push(struct ws_conn *ws, const char *p, size_t n, int droppable) {
    size_t sz = rec_size(n);
    size_t spare = ws->q_head + ws->q_dead;
    if (spare && ws->q.len + sz + 1 > ws->q.cap && 2 * spare >= ws->q.len) queue_compact(ws);
    if (buf_reserve(&ws->q, sz) != 0) return ASR_ENOMEM;
    struct ws_rec *r = rec_at(ws, ws->q.len);
    r->len = n;
    r->droppable = droppable;
    r->dropped = 0;
    if (n) memcpy(r + 1, p, n);
    ws->q.len += sz;
    ws->q.data[ws->q.len] = '\0'; /* struct buf's promise; buf_reserve left room */
    ws->q_bytes += n;
    ws->q_msgs++;
    return 0;
}

/* The oldest message not yet handed to wslay, or NULL. */
static struct ws_rec *queue_front(struct ws_conn *ws) {
    while (ws->q_head < ws->q.len) {
        struct ws_rec *r = rec_at(ws, ws->q_head);
        if (!r->dropped) return r;
        size_t sz = rec_size(r->len);
        ws->q_head += sz;
        ws->q_dead -= sz;
    }
    return NULL;
}

/* Removes the front record r (handed to wslay). */
static void queue_pop(struct ws_conn *ws, struct ws_rec *r) {
    ws->q_head += rec_size(r->len);
    ws->q_bytes -= r->len;
    if (--ws->q_msgs == 0) queue_free(ws);
}

/* Drops the oldest droppable message; 0 if there is none. */
static int queue_drop_oldest(struct ws_conn *ws) {
    for (size_t off = ws->q_head; off < ws->q.len;) {
        struct ws_rec *r = rec_at(ws, off);
        size_t sz = rec_size(r->len);
        if (!r->dropped && r->droppable) {
            r->dropped = 1;
            ws->q_dead += sz;
            ws->q_bytes -= r->len;
            if (--ws->q_msgs == 0) queue_free(ws);
            return 1;
        }
        off += sz;
    }
    return 0;
}

/* ---- wslay callbacks --------------------------------------------------------- */

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
    ws->unframed += n;
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

/* Received messages are dropped from here on: a close is under way, ours or
 * the peer's. Two compares on the fast path. */
static int closing(const struct ws_conn *ws) { return ws->state != WS_ST_OPEN || conn_closing(ws->c); }

/* A frame begins. wslay has checked the opcode sequence (a continuation
 * only inside a fragmented message, a new message only outside one), the
 * RSV bits, masking, and this frame's length against max_message_bytes;
 * the length of the message as a whole is ours to check. Control frames
 * (they may come between fragments) are left to wslay entirely. */
static void frame_start_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
                           void *user) {
    struct ws_conn *ws = user;
    ws->frame_len = arg->payload_length;
    ws->frame_ctrl = (arg->opcode & 0x8) != 0;
    if (ws->frame_ctrl) return;
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) {
        ws->msg_state = closing(ws) ? WS_MSG_SKIP : WS_MSG_KEEP;
        ws->msg_len = 0;
        ws->direct = NULL;
        buf_reset(&ws->msg);
    }
    ws->frame_fin = arg->fin;
    if (arg->payload_length > ws->lim.max_message_bytes - ws->msg_len) {
        /* What wslay does for a frame too big: close 1009 without a reason
         * and read nothing more (on_read notices and drops our queue). */
        ws->msg_state = WS_MSG_SKIP;
        wslay_event_shutdown_read(ctx);
        wslay_event_queue_close(ctx, WSLAY_CODE_MESSAGE_TOO_BIG, NULL, 0);
    }
}

/* Payload bytes, unmasked in wslay's input buffer; wslay has validated
 * UTF-8 of text so far. A frame that holds a whole message and arrived
 * whole is only pointed at: the bytes stay valid until on_msg_cb, which
 * wslay calls before it reads anything more. Everything else is copied. */
static void frame_chunk_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg,
                           void *user) {
    struct ws_conn *ws = user;
    if (ws->frame_ctrl || arg->data_length == 0) return;
    if (ws->msg_state != WS_MSG_SKIP) {
        int rc = 0;
        if (ws->frame_fin && ws->msg_len == 0 && arg->data_length == ws->frame_len) {
            ws->direct = arg->data;
        } else {
            /* A message of one frame that came in pieces: its size is
             * known, so its buffer is exactly that (no doubling slack
             * charged to the budget). */
            if (ws->frame_fin && ws->msg_len == 0 && ws->frame_len <= ws->lim.max_message_bytes)
                rc = buf_reserve_exact(&ws->msg, (size_t)ws->frame_len);
            if (rc == 0) rc = buf_append(&ws->msg, arg->data, arg->data_length);
        }
        if (rc == ASR_EAGAIN) {
            /* The worker's message budget is spent: like a message too
             * big, this one is dropped, nothing more is read, and a 1013
             * (try again later) goes out with the queue dropped. */
            ws->msg_state = WS_MSG_SKIP;
            ws->over_budget = 1;
            buf_cleanup(&ws->msg);
            wslay_event_shutdown_read(ctx);
            static const char why[] = "server busy: too many messages in flight";
            wslay_event_queue_close(ctx, WS_CODE_TRY_AGAIN_LATER, (const uint8_t *)why, sizeof why - 1);
        } else if (rc != 0) {
            ws->msg_state = WS_MSG_SKIP;
            ws->recv_failed = 1;
            wslay_event_shutdown_read(ctx);
        }
    }
    ws->msg_len += arg->data_length;
}

/* A frame is complete: its bytes are accounted for (see on_read). wslay
 * has checked that it was masked and its length minimally encoded, so its
 * size on the wire follows from its payload length. */
static void frame_end_cb(wslay_event_context_ptr ctx, void *user) {
    struct ws_conn *ws = user;
    uint64_t len = ws->frame_len;
    uint64_t size = 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + 4 + len;
    if (size > ws->unframed) ws->fast_off = 1;
    else ws->unframed -= (size_t)size;
}

/* A message is complete (for text: valid UTF-8, wslay checked the end). */
static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
    struct ws_conn *ws = user;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        const uint8_t *p = ws->direct ? ws->direct : (const uint8_t *)ws->msg.data;
        size_t n = ws->msg_len;
        if (ws->msg_state != WS_MSG_SKIP && !closing(ws)) {
            if (arg->opcode == WSLAY_TEXT_FRAME) ws->h->on_text(ws->hctx, n ? p : NULL, n);
            else ws->h->on_binary(ws->hctx, n ? p : NULL, n);
        }
        ws->msg_state = WS_MSG_NONE;
        ws->msg_len = 0;
        ws->direct = NULL;
        buf_reset(&ws->msg);
        return;
    }
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1) {
        /* A close payload is empty or holds a 2-byte code (RFC 6455
         * 5.5.1); wslay takes one byte as "no code" and has queued an empty
         * close. on_read answers 1002 instead (fail_protocol). */
        ws->bad_close = 1;
        return;
    }
    if (arg->opcode == WSLAY_PONG) {
        /* Only the answer to our last ping counts (RFC 6455 5.5.3: a pong
         * may also be unsolicited); the next ping follows an interval later. */
        uint8_t want[8];
        for (int i = 0; i < 8; i++) want[i] = (uint8_t)(ws->ping_seq >> (56 - 8 * i));
        if (ws->ping_awaiting && arg->msg_length == 8 && memcmp(arg->msg, want, 8) == 0) {
            ws->ping_awaiting = 0;
            metrics.ws_pongs++;
            if (!conn_closing(ws->c)) ping_arm(ws, ws->lim.ping_interval_ms);
        }
        return;
    }
    if (conn_closing(ws->c) || arg->opcode != WSLAY_PING) return;
    if (ws->h->on_ping) ws->h->on_ping(ws->hctx);
    if (ws->c->writing && wslay_event_get_queued_msg_count(ctx) > WS_MAX_CTRL_QUEUED && !ws->ctrl_flood) {
        /* wslay queued a pong, which cannot leave while our write is
         * stuck; a peer that keeps pinging without reading would grow
         * that queue without bound. Read nothing more; close 1008. */
        ws->ctrl_flood = 1;
        wslay_event_shutdown_read(ctx);
        ws_close(ws, 1008, "client too slow", 0);
    }
}

/* ---- liveness: ping and pong ----------------------------------------------------- */

/* The connection timer for a close (linger, grace): pings stop for good. */
static void close_timer(struct ws_conn *ws, uint64_t ms) {
    ws->ping_timer = 0;
    ws->close_timer = 1;
    conn_timer(ws->c, ms);
}

/* The connection timer for the next ping, or for the deadline of the one
 * out (nothing when pings are off or a close owns the timer). */
static void ping_arm(struct ws_conn *ws, uint64_t ms) {
    if (!ws->lim.ping_interval_ms || ws->close_timer) return;
    ws->ping_timer = 1;
    conn_timer(ws->c, ms ? ms : 1);
}

/* The ping timer fired. With a ping out, its pong is late: the peer is
 * gone without a FIN, or stuck and reads nothing (not even the ping, which
 * waits behind what it has not read). The connection is reset, with no
 * close frame (none could reach such a peer), and the handler's on_closed
 * gets no codes: for a session that is a dropped connection, resumable.
 * While reading is paused for backpressure the pong cannot be read, so the
 * deadline waits for reading to resume. Without a ping out, the next one
 * is queued (ahead of queued data messages: wslay sends control frames
 * first). */
static void ping_tick(struct ws_conn *ws) {
    struct conn *c = ws->c;
    ws->ping_timer = 0;
    uint64_t now = uv_now(c->set->loop);
    if (ws->ping_awaiting) {
        if (ws->paused) {
            ping_arm(ws, ws->lim.ping_timeout_ms);
            return;
        }
        metrics.ws_ping_timeouts++;
        struct log_line *l = log_begin(LOG_INFO, "peer not answering pings");
        if (l) {
            log_str(l, "peer", c->peer);
            log_u64(l, "conn", c->id);
            log_u64(l, "waited_ms", now - ws->ping_sent_ms);
            log_u64(l, "unsent", conn_unsent(c));
            log_end(l);
        }
        conn_abort(c);
        return;
    }
    if (ws->state > WS_ST_CLOSE_PENDING) return; /* a close is under way; it has its own deadline */
    uint8_t payload[8];
    ws->ping_seq++;
    for (int i = 0; i < 8; i++) payload[i] = (uint8_t)(ws->ping_seq >> (56 - 8 * i));
    struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = payload, .msg_length = sizeof payload};
    if (wslay_event_queue_msg(ws->ctx, &m) != 0) return;
    ws->ping_awaiting = 1;
    ws->ping_sent_ms = now;
    metrics.ws_pings++;
    conn_want_flush(c);
    ping_arm(ws, ws->lim.ping_timeout_ms);
}

/* ---- connection handler -------------------------------------------------------- */

/* Decides whether the connection is finished: both close frames exchanged,
 * or ours sent and the peer's read side is shut (wslay stops reading after a
 * protocol error), with everything written. */
static void check_done(struct ws_conn *ws) {
    if (conn_closing(ws->c) || ws->state == WS_ST_FAILED) return;
    if (!wslay_event_get_close_sent(ws->ctx)) return;
    if (conn_unsent(ws->c) > 0 || wslay_event_want_write(ws->ctx)) return;
    if (wslay_event_get_close_received(ws->ctx) || !wslay_event_get_read_enabled(ws->ctx)) {
        conn_close(ws->c);
        return;
    }
    /* Linger for the peer's close frame, but not forever: armed once, not
     * again for every read that brings something else. A close frame wslay
     * sent was handed to it in CLOSE_QUEUED (ours by on_flush, wslay's own
     * by on_read's check), so that is the state here. */
    if (ws->state != WS_ST_LINGER) {
        close_timer(ws, WS_CLOSE_LINGER_MS);
        ws_set_state(ws, WS_ST_LINGER);
    }
}

/* Called before each flush (never while a write is in flight): move queued
 * messages into wslay while little is unsent, then let wslay write them out.
 * send_cb takes everything, so wslay keeps nothing between flushes. */
static void on_flush(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws || ws->state == WS_ST_FAILED) return;
    struct ws_rec *r;
    while (ws->state <= WS_ST_CLOSE_PENDING && conn_unsent(c) < WS_PUMP_BYTES && (r = queue_front(ws))) {
        struct wslay_event_msg wm = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)(r + 1), .msg_length = r->len};
        if (wslay_event_queue_msg(ws->ctx, &wm) != 0) break;
        queue_pop(ws, r); /* wslay copied it */
        if (wslay_event_send(ws->ctx) != 0) break;
    }
    if (ws->state == WS_ST_CLOSE_PENDING && ws->q_msgs == 0) {
        ws_set_state(ws, WS_ST_CLOSE_QUEUED);
        wslay_event_queue_close(ws->ctx, (uint16_t)ws->close_code, (const uint8_t *)ws->close_reason,
                                strlen(ws->close_reason));
        metrics_count_close(ws->close_code);
        ws->close_counted = 1;
    }
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        conn_close(c);
        return;
    }
}

static void on_drain(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws || ws->state == WS_ST_FAILED) return;
    if (ws->q_msgs || ws->state == WS_ST_CLOSE_PENDING || wslay_event_want_write(ws->ctx)) conn_want_flush(c);
    check_done(ws);
}

/* The fast path. wslay unmasks byte by byte through its context, checks the
 * UTF-8 of text with a table lookup per byte, and copies a frame longer than
 * its 4 KiB input buffer (a JSON chunk) into our reassembly buffer: a
 * quarter of the server's CPU per JSON chunk, no wslay setting avoids it
 * (docs/internals/chunk-pipeline.md has the numbers). So the commonest
 * frames, a whole message in one final frame (binary audio, or a JSON
 * audio_chunk), are taken here when wslay is between frames with nothing
 * buffered (on_read), if they are ones wslay would accept as they are: FIN,
 * no RSV bits, opcode 1 or 2, masked, a 7- or minimal 16-bit length, payload
 * within the message cap (wslay's 1009 check: at the cap is allowed), all of
 * it in this read. Returns its size on the wire, or 0: wslay takes this
 * frame and the rest of the read, and decides about errors. */
static size_t fast_frame_size(const uint8_t *p, size_t n, size_t max) {
    if (n < 6 || (p[0] != (0x80 | WSLAY_BINARY_FRAME) && p[0] != (0x80 | WSLAY_TEXT_FRAME)) || !(p[1] & 0x80))
        return 0;
    size_t len = p[1] & 0x7f, hdr = 6;
    if (len == 127) return 0;
    if (len == 126) {
        if (n < 8) return 0;
        len = (size_t)p[2] << 8 | p[3];
        if (len < 126) return 0;
        hdr = 8;
    }
    if (len > max || len > n - hdr) return 0;
    return hdr + len;
}

/* Unmasks the frame a word at a time into a scratch buffer, checks the
 * UTF-8 of text (nothing to do when no byte has its top bit set, the JSON
 * case; util_utf8_valid accepts exactly what the DFA in wslay_event.c accepts
 * for a whole text message), and delivers the message as on_msg_cb would. Returns -1, having
 * delivered nothing, for text that is not valid UTF-8: wslay is given the
 * frame and answers it (close 1007, counted as before). */
static int fast_message(struct ws_conn *ws, const uint8_t *p, size_t size) {
    static uint8_t payload_[65535]; /* process lifetime; borrowed by the handler for the call */
    size_t hdr = (p[1] & 0x7f) == 126 ? 8 : 6, len = size - hdr, i = 0;
    const uint8_t *key = p + hdr - 4, *src = p + hdr;
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32, high = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        high |= v;
        memcpy(payload_ + i, &v, 8);
    }
    for (; i < len; i++) {
        payload_[i] = src[i] ^ key[i & 3];
        high |= payload_[i];
    }
    int text = p[0] == (0x80 | WSLAY_TEXT_FRAME);
    if (text && (high & 0x8080808080808080u) && !util_utf8_valid(payload_, len)) return -1;
    if (closing(ws)) return 0;
    if (text) ws->h->on_text(ws->hctx, len ? payload_ : NULL, len);
    else ws->h->on_binary(ws->hctx, len ? payload_ : NULL, len);
    return 0;
}

/* The peer broke RFC 6455 where wslay answers with a close frame without
 * a status code: a frame its parser refuses (a control frame fragmented or
 * over 125 bytes, a 64-bit length with the top bit set, a length not
 * minimally encoded: wslay_event_recv returns WSLAY_ERR_CALLBACK_FAILURE,
 * which our callbacks never cause while receiving), or a close frame with
 * a 1-byte payload (on_msg_cb). RFC 6455 7.4.1 wants 1002, and wslay has
 * no way to replace a close it has queued; so this writes the 1002 frame
 * itself, and wslay, which has stopped reading, writes nothing more (what
 * it holds, its close and any pong queued before it, is dropped with our
 * queue). The connection closes once the frame is written; a write that is
 * stuck gets the grace, or the send timeout, then a reset. */
static void fail_protocol(struct ws_conn *ws) {
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xEA}; /* FIN + close, 2 bytes: 1002 */
    struct conn *c = ws->c;
    queue_free(ws);
    ws_set_state(ws, WS_ST_FAILED);
    ws->close_code = WSLAY_CODE_PROTOCOL_ERROR;
    ws->close_reason[0] = '\0';
    if (conn_write(c, close_1002, sizeof close_1002) != 0) {
        conn_close(c);
        return;
    }
    metrics_count_close(WSLAY_CODE_PROTOCOL_ERROR);
    ws->close_counted = 1;
    if (c->writing) close_timer(ws, WS_CLOSE_GRACE_MS);
    conn_close_after_write(c);
}

/* wslay is between frames with nothing buffered when every byte fed to it
 * belongs to a complete frame (unframed == 0, kept by recv_cb and
 * frame_end_cb) and no fragmented message is open. Only then may a frame
 * bypass it; from the first frame it must see, wslay gets the rest of the
 * read, in order. */
static void on_read(struct conn *c, const char *data, size_t n) {
    struct ws_conn *ws = c->proto;
    const uint8_t *p = (const uint8_t *)data;
    size_t size;
    if (ws->state == WS_ST_FAILED) return; /* the rest is not read */
    while (n && !conn_closing(c) && ws->wslay_reading && ws->unframed == 0 && !ws->fast_off &&
           ws->msg_state == WS_MSG_NONE &&
           (size = fast_frame_size(p, n, ws->lim.max_message_bytes)) && fast_message(ws, p, size) == 0) {
        p += size;
        n -= size;
    }
    if (!n || conn_closing(c)) {
        /* wslay saw nothing: its state, and so what on_read would decide
         * from it below, is unchanged (the fast path sends nothing). */
        return;
    }
    ws->rbuf = p;
    ws->rlen = n;
    int r = wslay_event_recv(ws->ctx);
    ws->rlen = 0;
    ws->wslay_reading = wslay_event_get_read_enabled(ws->ctx);
    if (ws->msg_state == WS_MSG_NONE) buf_cleanup(&ws->msg); /* between messages: hold no input memory */
    if (ws->over_budget == 1) {
        ws->over_budget = 2;
        struct log_line *l = log_begin(LOG_WARN, "message budget spent");
        if (l) {
            log_u64(l, "conn", c->id);
            log_str(l, "peer", c->peer);
            log_u64(l, "budget_bytes", ws->lim.msg_budget ? ws->lim.msg_budget->limit : 0);
            log_end(l);
        }
    }
    if (conn_closing(c)) return;
    if (r == WSLAY_ERR_CALLBACK_FAILURE || (r == 0 && ws->bad_close)) {
        ws->proto_error = 1;
        if (ws->state <= WS_ST_CLOSE_PENDING) {
            fail_protocol(ws);
            return;
        }
        /* Our close is out already, and wslay queued nothing after it:
         * finish as below (wslay reads nothing more). */
    } else if (r != 0 || ws->recv_failed) {
        conn_close(c);
        return;
    }
    if (wslay_event_want_write(ws->ctx) || ws->q_msgs) conn_want_flush(c);
    if (ws->state <= WS_ST_CLOSE_PENDING && !ws->ctrl_flood &&
        (wslay_event_get_close_received(ws->ctx) || !ws->wslay_reading)) {
        /* The peer closed, or wslay (or frame_start_cb) refused its input
         * and queued a close: nothing more will be read. Our queue is
         * dropped, and so is a close of ours still pending (wslay's close
         * goes out instead; on_closed still reports ours). */
        ws_set_state(ws, WS_ST_CLOSE_QUEUED);
        queue_free(ws);
        conn_want_flush(c);
    }
    check_done(ws);
}

static void on_eof(struct conn *c, int status) {
    conn_close(c);
}

/* The close linger, or the grace of a close stuck behind a write: a write
 * still stuck means the peer reads nothing, so reset rather than leave the
 * kernel holding the unsent bytes of an orphaned socket. */
static void on_timer(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (ws && ws->ping_timer) {
        ping_tick(ws);
        return;
    }
    if (c->writing) conn_abort(c);
    else conn_close(c);
}

/* ASR_SEND_TIMEOUT_S passed without write progress (conn_check_timeouts).
 * Close 1008 "send timeout" if no close is under way; the frame can only
 * leave if the peer starts reading within the grace (ws_close), else the
 * socket is reset. A close already under way: reset now. */
static void on_send_timeout(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws || ws->state != WS_ST_OPEN) {
        conn_abort(c);
        return;
    }
    ws_close(ws, 1008, "send timeout", 0);
}

static void on_free(struct conn *c) {
    struct ws_conn *ws = c->proto;
    if (!ws) return;
    /* code_sent is a close this side initiated: ours (ws_close,
     * fail_protocol) or wslay's own (1009 too big, 1002/1007 protocol
     * error: it stops reading then, so the peer's reply is never seen). An
     * echo of the peer's close is not one, and a close frame that broke the
     * protocol is no close from the peer. close_codes counts the close frame
     * that went out, echoes included (1005: one without a code), unless
     * on_flush or fail_protocol did; none when no close frame was sent. */
    int rcvd = 0, wire = 0;
    if (wslay_event_get_close_received(ws->ctx) && !ws->proto_error)
        rcvd = wslay_event_get_status_code_received(ws->ctx);
    if (wslay_event_get_close_sent(ws->ctx)) wire = wslay_event_get_status_code_sent(ws->ctx);
    int sent = ws->close_code;
    if (!sent && !rcvd) sent = wire;
    if (!ws->close_counted) metrics_count_close(wire);
    if (ws->h->on_closed) ws->h->on_closed(ws->hctx, sent, rcvd);
    queue_free(ws);
    buf_cleanup(&ws->msg);
    wslay_event_context_free(ws->ctx);
    free(ws);
}

static const struct conn_handler ws_handler = {
    .on_read = on_read, .on_eof = on_eof, .on_drain = on_drain, .on_timer = on_timer,
    .on_free = on_free, .on_flush = on_flush, .on_send_timeout = on_send_timeout,
};

struct ws_conn *ws_start(struct conn *c, const struct ws_limits *lim, const struct ws_handler *h, void *hctx,
                         const void *rest, size_t rest_len) {
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb, .send_callback = send_cb, .on_msg_recv_callback = on_msg_cb,
        .on_frame_recv_start_callback = frame_start_cb, .on_frame_recv_chunk_callback = frame_chunk_cb,
        .on_frame_recv_end_callback = frame_end_cb,
    };
    struct ws_conn *ws = calloc(1, sizeof *ws);
    if (!ws) goto fail;
    ws->c = c;
    ws->lim = *lim;
    ws->h = h;
    ws->hctx = hctx;
    ws->wslay_reading = 1;
    buf_init(&ws->msg, lim->max_message_bytes);
    buf_set_budget(&ws->msg, lim->msg_budget);
    buf_init(&ws->q, 0); /* bounded by the policy in ws_send_text */
    if (wslay_event_context_server_init(&ws->ctx, &cbs, ws) != 0) goto fail;
    wslay_event_config_set_no_buffering(ws->ctx, 1);
    wslay_event_config_set_max_recv_msg_length(ws->ctx, lim->max_message_bytes); /* per frame */
    /* A peer that does not read shows up in our queue, where the policy
     * acts, after at most 2 * WS_SNDBUF in the kernel. */
    conn_set_sndbuf(c, WS_SNDBUF);
    conn_set_handler(c, &ws_handler, ws, CONN_WS);
    ping_arm(ws, lim->ping_interval_ms);
    /* HTTP may have paused reading while the upgrade waited (a client that
     * pipelined more than 64 KiB behind the head): the WebSocket reads. */
    conn_read_resume(c);
    if (rest_len) on_read(c, rest, rest_len);
    return ws;
fail:
    free(ws);
    conn_close(c);
    return NULL;
}

/* A server text frame (RFC 6455 5.2: FIN, opcode 1, unmasked) into c's
 * out buffer, whole or not at all. */
static int write_text_frame(struct conn *c, const char *p, size_t n) {
    uint8_t hdr[10];
    size_t h = 2;
    hdr[0] = 0x80 | WSLAY_TEXT_FRAME;
    if (n < 126) {
        hdr[1] = (uint8_t)n;
    } else if (n <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(n >> 8);
        hdr[3] = (uint8_t)n;
        h = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    }
    return conn_write2(c, hdr, h, p, n);
}

int ws_send_text(struct ws_conn *ws, const char *p, size_t n, int droppable) {
    if (closing(ws)) return ASR_EIO;
    int overflow = 0;
    while (ws->q_msgs && (ws->q_bytes + n > ws->lim.max_queue_bytes || ws->q_msgs + 1 > ws->lim.max_queue_msgs)) {
        /* Drop the oldest undelivered partial (never finals, errors, events). */
        if (!queue_drop_oldest(ws)) break;
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
    /* Nothing waits and the socket keeps up: the frame goes straight into
     * the connection's out buffer (written in this iteration's flush), as
     * on_flush would move it there next anyway, without the trip through
     * our queue and wslay's (two copies and three allocations per message:
     * docs/internals/chunk-pipeline.md). Only when wslay holds nothing, so
     * frames stay whole and in order. */
    if (ws->q_msgs == 0 && !ws->c->writing && conn_unsent(ws->c) < WS_PUMP_BYTES &&
        !wslay_event_want_write(ws->ctx))
        return write_text_frame(ws->c, p, n);
    if (queue_push(ws, p, n, droppable) != 0) return ASR_ENOMEM;
    conn_want_flush(ws->c);
    return 0;
}

void ws_close(struct ws_conn *ws, int code, const char *reason, int after_queued) {
    if (ws->state != WS_ST_OPEN) return;
    if (!after_queued) {
        queue_free(ws);
        /* Our close frame waits behind a write that makes no progress: it
         * gets the grace, then on_timer resets the connection. */
        if (ws->c->writing) close_timer(ws, WS_CLOSE_GRACE_MS);
    }
    ws_set_state(ws, WS_ST_CLOSE_PENDING);
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
