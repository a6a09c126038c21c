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
 * stack holds a freed pointer. */
#ifndef ASRD_CONN_H
#define ASRD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

struct worker;
struct conn;
struct http_conn;
struct ws_conn;

enum conn_proto { CONN_HTTP, CONN_WS };

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

struct conn {
    uv_tcp_t  tcp;                   /* the socket; handle.data = this */
    uv_timer_t timer;                /* handshake / keep-alive / close linger */
    uv_write_t *wreq;                /* owned: the one write in flight, allocated on a short write */
    struct worker *w;                /* borrowed: owning worker */
    const struct conn_handler *h;    /* borrowed: active protocol handler */
    void     *proto;                 /* owned by the handler: http_conn or ws_conn */
    enum conn_proto kind;
    struct buf out;                  /* bytes waiting to be written */
    struct buf inflight;             /* bytes of the write in flight */
    int       writing;               /* a uv_write is in flight */
    int       reading;               /* uv_read_start active */
    int       closing;               /* conn_close called */
    int       close_after_write;     /* close once out/inflight are written */
    int       handles_open;          /* uv handles still to close */
    int       on_flush_list;
    int       send_timeouts;         /* on_send_timeout calls made */
    uint64_t  wprogress_ms;          /* loop time of the last progress of the write in flight */
    size_t    wleft;                 /* bytes the write in flight still had then */
    struct conn *flush_next;         /* worker's flush list */
    struct conn *next, *prev;        /* worker's list of open connections */
    char      peer[64];              /* "ip:port" */
    void     *ip_slot;               /* worker.c: per-address connection count (ASR_MAX_CONNECTIONS_PER_IP) */
    uint64_t  id;                    /* worker-unique number */
};

/* Creates a connection around an accepted client handle (takes ownership of
 * nothing: it initializes its own tcp handle, which the caller then passes
 * to uv_accept). Returns NULL on failure. */
struct conn *conn_create(struct worker *w);
/* Starts reading with handler h. */
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
/* Closes once everything queued is written. */
void conn_close_after_write(struct conn *c);
/* Closes now (deferred free). */
void conn_close(struct conn *c);
/* Closes now with a TCP reset (SO_LINGER 0): unsent bytes are discarded
 * instead of staying in the kernel for a peer that does not read. */
void conn_abort(struct conn *c);

/* Flushes every connection marked since the last call (worker calls this). */
void conn_flush_all(struct worker *w);
/* Ends connections whose write made no progress for the worker's
 * send_timeout_s (worker calls this once a second). */
void conn_check_timeouts(struct worker *w);

#endif
