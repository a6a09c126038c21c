/* wsclient: asrd-load's WebSocket session client (docs/LOAD.md, docs/API.md
 * "Connecting"). One TCP connection per session, in a table of slots: the
 * upgrade request with a random key, the 101 checked with http-parser and
 * the Sec-WebSocket-Accept key (nettle SHA-1), then wslay in client mode
 * (masks from libsodium) for the frames. Writes go out at once when the
 * socket takes them, else as a copy on a uv_write.
 *
 * The client knows nothing of what is streamed: it reports each text
 * message, the end of a session and the free slot through struct
 * sess_events, and the streaming driver (streams.h) decides what to send,
 * when, and what to count. The stream-level fields of struct sess (its
 * schedule, sequence numbers, send times, role) are the driver's, kept here
 * so one slot holds a whole session.
 *
 * States (enum sess_state) move forward only: IDLE -> CONNECTING ->
 * HANDSHAKE -> OPEN (upgraded, waiting for `session`) -> STREAMING (the
 * driver's, on `session`) -> STOPPING (the driver's, after `stop`) -> ENDED
 * (accounted, handle closing) -> IDLE (slot free). A session that never
 * reached STREAMING *fails* (a connect failure with a cause); one that did
 * is *lost* when its connection breaks, and *ends* when both close frames
 * were exchanged. Every end goes through wsclient_end exactly once. */
#ifndef ASRD_LOAD_WSCLIENT_H
#define ASRD_LOAD_WSCLIENT_H

#include <http_parser.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "base/util.h"
#include "loadstat.h"

struct load_target;

#define SESS_RING         128           /* chunks in flight remembered per session */
#define SESS_STALL_BYTES  (64u << 10)   /* unsent bytes that mark a session stalled */

enum sess_state {
    ST_IDLE = 0,       /* slot free */
    ST_CONNECTING,     /* TCP connect in flight */
    ST_HANDSHAKE,      /* upgrade sent, waiting for 101 */
    ST_OPEN,           /* WebSocket open, waiting for `session` */
    ST_STREAMING,      /* sending chunks */
    ST_STOPPING,       /* `stop` sent, waiting for `final` and close */
    ST_ENDED,          /* accounted; handle closing */
};

struct sess_set;

struct sess {
    struct sess_set *set;               /* borrowed: the table this slot is in */
    uv_tcp_t    tcp;                    /* valid while in_use */
    uv_connect_t creq;
    unsigned    idx;                    /* slot index */
    enum sess_state st;
    int         in_use;                 /* handle initialised, close callback pending or not run yet */
    int         closing;                /* uv_close called */
    int         slow;                   /* role: stops reading after `session` (slow-readers) */
    int         flood;                  /* role: sends chunks flood_factor times faster than real time */
    size_t      audio_off;              /* chunk of the looped audio this session starts at */
    wslay_event_context_ptr ctx;        /* owned; NULL before the 101 */
    http_parser hp;                     /* upgrade response parser */
    char        hname[32];              /* current response header name (truncated) */
    size_t      hname_len;
    int         hvalue_last;            /* last header callback was a value */
    char        accept[40];             /* Sec-WebSocket-Accept received */
    size_t      accept_len;
    int         hdr_done;
    char        expect[32];             /* Sec-WebSocket-Accept expected */
    const uint8_t *rbuf;                /* bytes being fed to wslay; borrowed */
    size_t      rlen;
    struct loadstat_sched sched;
    struct loadstat_heap_node hn;       /* key: next chunk or stop (the driver's deadline heap) */
    uint64_t    stop_at;                /* ns: when to send `stop` */
    uint64_t    deadline;               /* ns: timeout of the current state, 0 = none */
    uint64_t    seq;                    /* chunks sent = last sequence used */
    uint64_t    answered;               /* distinct chunks answered */
    uint64_t    last_ans;               /* highest answered sequence */
    struct { uint64_t seq, t_ns; } ring[SESS_RING];  /* send times; t_ns 0 once answered */
    size_t      wq_bytes;               /* bytes in pending uv_writes */
    int         close_after_write;
    int         got_final, got_close;
    unsigned    close_code;
    int         counted_open;           /* got `session`: counts in the results */
    int         lost_streaming;         /* connection ended before our `stop` */
    int         stalled;                /* unsent bytes passed SESS_STALL_BYTES: server not reading */
    int         failed;                 /* counted as a connect failure */
};

/* What the client reports. Each runs on the loop; s stays valid for the call. */
struct sess_events {
    /* A text message (msg borrowed for the call). */
    void (*on_text)(void *arg, struct sess *s, const uint8_t *msg, size_t len);
    /* A connection that never reached ST_STREAMING failed for why
     * ("ECONNREFUSED", "http_503", "close_1013", "timeout", ...). */
    void (*on_fail)(void *arg, struct sess *s, const char *why);
    /* The session ends (once): account for it. Its handle closes next. */
    void (*on_end)(void *arg, struct sess *s);
    /* The handle has closed and the slot is free again. */
    void (*on_closed)(void *arg, struct sess *s);
};

struct sess_set {
    uv_loop_t *loop;                    /* borrowed */
    const struct load_target *t;        /* borrowed */
    struct sess *v;                     /* owned array of n slots */
    unsigned    n;
    unsigned   *freelist;               /* owned stack of free slot indices */
    unsigned    nfree;
    double      connect_timeout_s;      /* connect + upgrade + `session` */
    unsigned    slow_rcvbuf;            /* SO_RCVBUF of slow sessions, 0 = kernel default */
    const struct sess_events *ev;       /* borrowed */
    void       *arg;
    struct buf  out;                    /* wslay output gathered per pump */
    uint8_t     mask_pool[4096];
    size_t      mask_pos;
};

void wsclient_set_init(struct sess_set *set, uv_loop_t *loop, const struct load_target *t, unsigned n,
                   const struct sess_events *ev, void *arg);
void wsclient_set_cleanup(struct sess_set *set);

/* A free slot, zeroed (idx and set filled in), or NULL when none is free.
 * Then wsclient_init (which puts it back when it fails) and
 * wsclient_connect. */
struct sess *wsclient_take(struct sess_set *set);
/* Initialises the slot's TCP handle. Returns 0, or a libuv error: the slot
 * is then free again and no event runs. */
int  wsclient_init(struct sess *s);
/* Starts the connection of an initialised slot (ST_CONNECTING, deadline
 * connect_timeout_s from now). A connect that fails at once fails the
 * session (on_fail, on_end, then on_closed later). */
void wsclient_connect(struct sess *s);

/* Queues one message (copied by wslay) and sends what can be sent. A
 * session closing already takes nothing. */
void wsclient_queue(struct sess *s, int opcode, const void *p, size_t n);
/* Starts or stops reading (slow readers stop after `session`). */
int  wsclient_read_start(struct sess *s);
void wsclient_read_stop(struct sess *s);

/* Accounts the session once (on_end) and closes its handle. */
void wsclient_end(struct sess *s);
/* A connect, upgrade or `session` that did not happen: why is the cause
 * counted by on_fail, NULL for a session cancelled by the end of the phase
 * (not counted). */
void wsclient_fail(struct sess *s, const char *why);

#endif
