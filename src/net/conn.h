/* A client connection: the TCP socket, its timer, output buffering with one
 * write in flight, and deferred close. Protocol state (HTTP request, then
 * possibly a WebSocket) hangs off it; conn knows neither protocol.
 *
 * Output: conn_write() copies bytes into the connection's out buffer and
 * marks it for the flush that runs at the end of the loop iteration
 * (worker's prepare/check handles); the flush tries uv_try_write and leaves
 * one uv_write in flight for the rest.
 * Close: conn_close() marks the connection and lets the loop free it after
 * the current callback returns (uv_close + close callback), so nobody up the
 * stack holds a freed pointer.
 *
 * Lifecycle (enum conn_state; conn_set_state in conn.c checks every move
 * against its table and asserts on an illegal one):
 *
 *    conn_create
 *        |
 *        v          conn_close_after_write (a refusal written without a handler)
 *       NEW -------------------------------------+
 *        | conn_start                            |
 *        v          conn_close_after_write       v
 *      OPEN -------------------------------> LAST_WRITE
 *        |                                       | everything written (flush_one),
 *        | conn_close, conn_abort                | or conn_close, conn_abort
 *        v                                       |
 *     CLOSING <----------------------------------+
 *        | both uv handles closed (a later loop phase)
 *        v
 *     CLOSED: on_free, the set's on_closed, then free()
 *
 * NEW goes to CLOSING as well (conn_close when the accept fails).
 * NEW, OPEN and LAST_WRITE read, write and run timers alike; LAST_WRITE
 * only adds "close once everything queued is written". From CLOSING on,
 * conn_closing() is true and reads, writes, timers and flushes are off.
 * A write in flight, reading paused and membership of the flush list are
 * flags beside the state, not states: each can be on or off in NEW, OPEN
 * and LAST_WRITE, independently of the others. */
#ifndef ASRD_CONN_H
#define ASRD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/util.h"

struct conn;
struct http_conn;
struct ws_conn;

enum conn_proto { CONN_HTTP, CONN_WS };

/* Where a connection is in its life (the diagram above). */
enum conn_state {
    CONN_NEW,        /* created (and accepted); no protocol handler yet */
    CONN_OPEN,       /* conn_start: a handler reads and writes */
    CONN_LAST_WRITE, /* conn_close_after_write: close once out and inflight are written */
    CONN_CLOSING,    /* conn_close: uv_close issued, the free comes on a later loop phase */
    CONN_CLOSED,     /* both handles closed: on_free and on_closed run, then the free */
};

/* Protocol handlers: exactly one is active; the upgrade swaps them. */
struct conn_handler {
    void (*on_read)(struct conn *c, const char *data, size_t n);   /* bytes arrived */
    void (*on_eof)(struct conn *c, int status);                    /* peer gone / error */
    void (*on_drain)(struct conn *c);        /* out buffer written; more may be queued */
    void (*on_timer)(struct conn *c);        /* the connection timer fired */
    void (*on_free)(struct conn *c);         /* release protocol state; last call */
    void (*on_flush)(struct conn *c);        /* before a flush: queue what is pending */
    /* The write in flight made no progress for send_timeout_s. NULL: reset
     * the connection. Called once; if the write is still stuck another
     * send_timeout_s later, the connection is reset. */
    void (*on_send_timeout)(struct conn *c);
};

/* Every connection of one loop: the list, the shared read buffer, the flush
 * list, and the owner's hook. The owner (the worker) embeds it and calls
 * conn_set_init() before the first conn_create(). */
struct conn_set {
    uv_loop_t   *loop;               /* borrowed */
    uint64_t     send_timeout_ms;    /* a write making no progress this long ends the connection */
    /* A connection was freed (after its protocol's on_free): the owner's
     * accounting. May be NULL. */
    void       (*on_closed)(void *ctx, struct conn *c);
    void        *ctx;                /* passed to on_closed */
    struct conn *flush_head;         /* connections with output to flush */
    struct conn *conns;              /* every open connection */
    uint64_t     count;              /* open connections (created, not yet freed) */
    uint64_t     next_id;
    char         rbuf[65536];        /* shared read buffer: reads are consumed synchronously */
};

struct conn {
    uv_tcp_t  tcp;                   /* the socket; handle.data = this */
    uv_timer_t timer;                /* handshake / keep-alive / close linger */
    uv_write_t *wreq;                /* owned: the one write in flight, allocated on a short write */
    struct conn_set *set;            /* borrowed: the set it belongs to */
    const struct conn_handler *h;    /* borrowed: active protocol handler */
    void     *proto;                 /* owned by the handler: http_conn or ws_conn */
    enum conn_proto kind;
    struct buf out;                  /* bytes waiting to be written */
    struct buf inflight;             /* bytes of the write in flight */
    /* Read it with conn_state() / conn_closing(); only conn_set_state
     * (conn.c) changes it. */
    enum conn_state state;
    /* Flags beside the state (see the top of this file): each is on or off
     * independently in NEW, OPEN and LAST_WRITE. writing may stay on into
     * CLOSING, until uv_close's cancellation reaches on_write. */
    int       writing;               /* a uv_write is in flight (at most one) */
    int       reading;               /* uv_read_start active (off: paused for backpressure, or closing) */
    int       on_flush_list;         /* queued on set->flush_head for the end-of-iteration flush */
    int       handles_open;          /* uv handles still to close */
    int       send_timeouts;         /* on_send_timeout calls made */
    uint64_t  wprogress_ms;          /* loop time of the last progress of the write in flight */
    size_t    wleft;                 /* bytes the write in flight still had then */
    struct conn *flush_next;         /* worker's flush list */
    struct conn *next, *prev;        /* worker's list of open connections */
    char      peer[64];              /* "ip:port" */
    void     *owner_slot;            /* the set owner's datum (worker: per-address count) */
    uint64_t  id;                    /* worker-unique number */
};

/* The connection's lifecycle state. */
static inline enum conn_state conn_state(const struct conn *c) { return c->state; }
/* conn_close (or conn_abort) was called: nothing more is read, written or
 * timed; the connection is freed on a later loop phase. One compare. */
static inline int conn_closing(const struct conn *c) { return c->state >= CONN_CLOSING; }
/* The state's name ("open", "last_write", ...), for logs and tests. */
const char *conn_state_name(enum conn_state s);

/* Prepares an empty set on loop (send_timeout_ms 30 s, no hook). */
void conn_set_init(struct conn_set *cs, uv_loop_t *loop);

/* Creates a connection in cs, in state NEW (takes ownership of nothing: it
 * initializes its own tcp handle, which the caller then passes to
 * uv_accept). Returns NULL on failure. */
struct conn *conn_create(struct conn_set *cs);
/* Starts reading with handler h: NEW -> OPEN. Called once, on a NEW
 * connection (asserted). */
int  conn_start(struct conn *c, const struct conn_handler *h, void *proto);
void conn_set_handler(struct conn *c, const struct conn_handler *h, void *proto, enum conn_proto kind);
void conn_read_pause(struct conn *c);
void conn_read_resume(struct conn *c);
/* Copies n bytes to the output. ASR_ENOMEM if out would pass limit. */
int  conn_write(struct conn *c, const void *p, size_t n);
/* a[0..an) then b[0..bn), both or neither (a frame head and its payload). */
int  conn_write2(struct conn *c, const void *a, size_t an, const void *b, size_t bn);
/* Marks the connection for the end-of-iteration flush. */
void conn_want_flush(struct conn *c);
/* Bytes not yet handed to the kernel. */
size_t conn_unsent(const struct conn *c);
/* Sets SO_SNDBUF (the kernel doubles it and stops autotuning): bounds what
 * the kernel holds for a peer that does not read. Returns 0 or a libuv error. */
int  conn_set_sndbuf(struct conn *c, int bytes);
/* Arms the connection timer (ms); 0 stops it. */
void conn_timer(struct conn *c, uint64_t ms);
/* Closes once everything queued is written: NEW or OPEN -> LAST_WRITE.
 * Writes may still be added until then. A no-op in LAST_WRITE and later. */
void conn_close_after_write(struct conn *c);
/* Closes now (deferred free): -> CLOSING. A no-op once closing. */
void conn_close(struct conn *c);
/* Closes now with a TCP reset (SO_LINGER 0): unsent bytes are discarded
 * instead of staying in the kernel for a peer that does not read. A no-op
 * once closing. */
void conn_abort(struct conn *c);

/* Flushes every connection marked since the last call (the owner calls this
 * before and after polling). */
void conn_flush_all(struct conn_set *cs);
/* Ends connections whose write made no progress for cs->send_timeout_ms
 * (the owner calls this once a second). */
void conn_check_timeouts(struct conn_set *cs);

#endif
