/* WebSocket connection after the upgrade: wslay does framing, masking,
 * fragmentation rules, UTF-8 validation, ping/pong and the close handshake;
 * this module adds message reassembly with its size cap (close 1009), the
 * bounded send queue with its drop policy (docs/API.md "Slow readers"), read
 * pausing for backpressure, and the 1002 for the protocol errors wslay
 * would answer with a close without a code (those its frame parser finds,
 * a 1-byte close payload). docs/internals/backpressure.md has the numbers.
 *
 * Receiving: wslay runs without buffering. A message that arrives as one
 * frame within one read is handed to on_text/on_binary straight from wslay's
 * input buffer; only fragmented messages, or frames split across reads, are
 * copied together into a per-connection buffer (released after each read
 * that ends between messages), whose memory is charged to the worker's
 * message budget (ws_limits.msg_budget): a message that cannot grow in it is
 * dropped and the connection closed with 1013 at once, like a 1009. The commonest frames, a whole binary or
 * text message in one final frame, in one read while wslay is between
 * frames, are unmasked here a word at a time (text: its UTF-8 checked,
 * with a shortcut for ASCII) and never pass through wslay, whose byte-wise
 * unmasking and UTF-8 check were a quarter of the user-space instructions
 * per audio chunk. ws.c checks such a frame exactly as wslay would; any
 * other frame, and a text frame that is not valid UTF-8, goes to wslay,
 * which gives its usual answers (1002, 1007, 1009). Either way the
 * handler's pointer is borrowed for the call.
 *
 * Send queue: ws_send_text() copies a message into the connection's queue,
 * one growable byte buffer of length-prefixed records (no allocation per
 * message; the memory is given back when the queue drains). The queue is fed
 * to wslay, and so to the socket, only while little is unsent, so everything
 * not yet on the wire is still in the queue where the policy can act: past
 * ASR_MAX_SEND_QUEUE_BYTES or _SIZE the oldest droppable message (a partial)
 * is dropped and counted; after slow_client_threshold overflows in a row the
 * connection is closed with 1008. The kernel's share is bounded too
 * (SO_SNDBUF), and a write that makes no progress for ASR_SEND_TIMEOUT_S ends
 * the connection (1008 "send timeout").
 *
 * The close handshake (enum ws_state; every move goes through ws_set_state
 * in ws.c and its table, asserted):
 *
 *   OPEN --ws_close--> CLOSE_PENDING --on_flush--> CLOSE_QUEUED --check_done--> LINGER
 *    |                      |                          ^   ^
 *    |                      +---------on_read----------+   |
 *    +------------------------------on_read----------------+
 *
 *   OPEN, CLOSE_PENDING --fail_protocol--> FAILED
 *
 * on_flush: the queue is empty; our close frame is handed to wslay.
 * on_read: the peer's close arrived, or wslay refused the input (1002, 1007,
 * 1009) and queued its own close. check_done: all is written and wslay
 * still reads; the peer's close is awaited. fail_protocol: a protocol error
 * wslay would answer without a code; ws.c writes the 1002 itself.
 *
 * OPEN: messages flow both ways. CLOSE_PENDING: ws_close decided a close;
 * received messages are dropped, queued ones still go out before it (or were
 * discarded, after_queued 0). CLOSE_QUEUED: a close frame is handed to wslay
 * (ours, or wslay's own echo or refusal); our queue is empty and nothing
 * more is sent from it. LINGER: our close frame is written and the peer's is
 * awaited for WS_CLOSE_LINGER_MS. FAILED: ws.c wrote a 1002 itself, wslay
 * writes nothing more, and nothing more is read. The connection is freed
 * from any state (conn_close: both closes exchanged, the linger or grace
 * timer, the peer gone, the send timeout, a missing pong); on_closed runs
 * then. Reading paused for backpressure (ws_pause) is not a state: it may
 * hold in any.
 *
 * Liveness: with lim.ping_interval_ms set, a ping goes out that long after
 * the start and after each pong to the last ping; a pong missing
 * lim.ping_timeout_ms after its ping (the peer vanished without a FIN, or
 * reads nothing) resets the connection, found at most interval + timeout
 * after the peer's last pong (docs/API.md "Ping and pong"). The deadline
 * waits while reading is paused for backpressure. */
#ifndef ASRD_WS_H
#define ASRD_WS_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"
#include "base/budget.h"

struct ws_conn;

/* Where the close handshake is (the diagram above). The order matters to
 * ws.c: OPEN and CLOSE_PENDING still send from the queue. */
enum ws_state {
    WS_ST_OPEN,          /* no close decided or received */
    WS_ST_CLOSE_PENDING, /* ws_close: our close waits behind the queue */
    WS_ST_CLOSE_QUEUED,  /* a close frame is handed to wslay; the queue is done */
    WS_ST_LINGER,        /* our close is written; waiting for the peer's */
    WS_ST_FAILED,        /* we wrote a 1002 ourselves; closing once it is written */
};

enum ws_state ws_state(const struct ws_conn *ws);
/* The state's name ("open", "close_pending", ...), for logs and tests. */
const char *ws_state_name(enum ws_state s);

struct ws_limits {
    size_t max_message_bytes;     /* largest incoming message, all fragments together */
    struct budget *msg_budget;    /* borrowed, NULL = none: messages being reassembled are charged
                                     here; past it the connection is closed 1013 */
    size_t max_queue_bytes;       /* send queue bound, bytes */
    size_t max_queue_msgs;        /* send queue bound, messages */
    int    slow_client_threshold; /* overflows in a row before 1008 */
    uint64_t ping_interval_ms;    /* a ping this long after the last pong (or the start); 0 = no pings */
    uint64_t ping_timeout_ms;     /* a pong missing this long after its ping: the peer is dead or
                                   * stuck; the connection is reset and on_closed gets no codes */
};

struct ws_handler {
    /* A whole message; p is borrowed for the call (NULL when n is 0). */
    void (*on_text)(void *ctx, const uint8_t *p, size_t n);
    void (*on_binary)(void *ctx, const uint8_t *p, size_t n);
    void (*on_ping)(void *ctx);
    /* Once, when the connection is gone. code_sent: close code this side
     * decided (0 = none; the frame may not have reached the peer);
     * code_received: close code the peer sent (0 = none, or a close frame
     * that broke the protocol; 1005 = a close frame without a code). */
    void (*on_closed)(void *ctx, int code_sent, int code_received);
};

/* Sec-WebSocket-Accept for a client key (RFC 6455 4.2.2): base64(SHA-1(key + GUID)). */
void ws_accept_key(const char *key, size_t len, char out[29]);

/* Takes over c (after http_upgrade): installs the WebSocket handler, bounds
 * the socket's send buffer, feeds the bytes that followed the request head.
 * Returns NULL on failure (c is closed then). */
struct ws_conn *ws_start(struct conn *c, const struct ws_limits *lim, const struct ws_handler *h,
                         void *ctx, const void *rest, size_t rest_len);

/* Queues a text message (copied). droppable: may be dropped when the queue
 * overflows (partials). Returns 0, ASR_EIO when closing (or when this
 * message made the connection too slow: it is closing with 1008 then), or
 * ASR_ENOMEM. */
int ws_send_text(struct ws_conn *ws, const char *p, size_t n, int droppable);

/* Starts the close handshake with code/reason. after_queued: 1 sends what
 * is queued first (final before 1000/1001), 0 drops it (1008/1009); a close
 * that drops the queue while a write is stuck gets 2 s for that write to
 * finish, then the socket is reset. */
void ws_close(struct ws_conn *ws, int code, const char *reason, int after_queued);

/* Stops / restarts reading for backpressure (counted in metrics.ws_paused). */
void ws_pause(struct ws_conn *ws);
void ws_resume(struct ws_conn *ws);

#endif
