/* The session store: where resumable session records live, who
 * owns them, and the global session limit. One interface, two backends
 * chosen at open time (docs/internals/store.md):
 *
 *   - memory (redis_url NULL or ""): one process's view, a hash table;
 *   - redis: hiredis async on the worker's libuv loop, shared by every worker
 *     that uses the same Redis and key prefix.
 *
 * Contract of every operation (store_create ... store_count_active):
 *   - It returns 0 and its callback then runs exactly once, later, from the
 *     loop: never inside the call, in both backends (so callers have one code
 *     path). Or it returns a negative asr_err at once (bad argument, store
 *     closing) and the callback never runs.
 *   - It is bounded in time: a Redis op with no reply within op_timeout_ms
 *     completes with STORE_UNAVAILABLE; an op while Redis is disconnected
 *     fails fast with STORE_UNAVAILABLE (in the next loop iteration).
 *   - Callbacks of one store fire in the order the ops were made.
 *   - Everything a callback receives (record, ids, strings) is borrowed for
 *     the duration of the call. A callback may call any store function,
 *     store_close() included.
 *   - cb may be NULL (fire and forget); the op still runs and is counted.
 *
 * Ownership: a record belongs to one worker (its owner). create and claim
 * make this worker the owner; update and delete succeed only for the owner.
 * A worker is alive while its heartbeat key exists; the store writes it every
 * heartbeat_ttl_s/3. A dead worker's sessions are claimable, and no longer
 * count toward the global limit, at most heartbeat_ttl_s after its last
 * heartbeat.
 *
 * Worker ids must be unique among live processes. A process that opens a
 * store with the id of an earlier, dead process marks the sessions that one
 * left attached as detached (they become claimable at once). */
#ifndef ASRD_STORE_H
#define ASRD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"

/* Results passed to callbacks (all asr_err values). STORE_EXISTS and
 * STORE_NOT_OWNER borrow existing codes until err.h has dedicated ones
 * (ASR_E_SESSION_EXISTS, ASR_E_NOT_OWNER); compare against these names. */
#define STORE_OK          ASR_OK
#define STORE_EXISTS      ASR_E_BAD_REQUEST        /* create: the id is taken */
#define STORE_LIMIT       ASR_E_SESSION_LIMIT      /* create: global limit reached */
#define STORE_NOT_FOUND   ASR_E_SESSION_NOT_FOUND  /* absent or expired */
#define STORE_NOT_OWNER   ASR_ECANCELED            /* another worker owns it: drop the local copy */
#define STORE_BUSY        ASR_E_SESSION_BUSY       /* claim: attached on a live worker */
#define STORE_UNAVAILABLE ASR_E_STORE_UNAVAILABLE  /* Redis down, slow or refusing */

/* The store. Opaque to callers (its fields, in the internal section at the
 * end, belong to store*.c). */
struct store;

#define STORE_ID_MAX        128          /* bytes of a session id */
#define STORE_WORKER_ID_MAX 63           /* bytes of a worker id */
#define STORE_PREFIX_MAX    64           /* bytes of the key prefix */
#define STORE_BLOB_MAX      (4u << 20)   /* bytes of a record's blob */

/* A session record. Every pointer is borrowed for the callback's duration. */
struct store_record {
    const char *id;
    const char *owner;             /* worker id; after a claim, this worker */
    int         attached;          /* 1: a live connection holds it */
    uint64_t    created_ms;        /* Unix ms, store clock (Redis server or this process) */
    uint64_t    last_activity_ms;  /* Unix ms of the last create/update/claim */
    const void *blob;              /* the caller's opaque bytes (not NUL-terminated) */
    size_t      blob_len;
};

/* Callbacks: status first after arg (docs/internals/architecture.md, "Errors"). rec/ids are non-NULL only
 * when status is STORE_OK. */
typedef void (*store_done_fn)(void *arg, int status);
typedef void (*store_record_fn)(void *arg, int status, const struct store_record *rec);
/* prev_owner: the worker that owned the record before this claim (may be
 * this worker). */
typedef void (*store_claim_fn)(void *arg, int status, const struct store_record *rec,
                               const char *prev_owner);
typedef void (*store_list_fn)(void *arg, int status, const char *const *ids, size_t n);
typedef void (*store_count_fn)(void *arg, int status, uint64_t n);
/* Another worker claimed id, which this worker owned: drop the local copy. */
typedef void (*store_released_fn)(void *ctx, const char *id);
/* The store became available (1) or unavailable (0). */
typedef void (*store_state_fn)(void *ctx, int available);
typedef void (*store_closed_fn)(void *arg);

struct store_cfg {
    const char *redis_url;          /* NULL or "" = memory; redis://[[user]:password@]host[:port][/db]
                                     * or unix://[[user]:password@]/path[?db=N]; copied */
    const char *worker_id;          /* required, 1..STORE_WORKER_ID_MAX printable, no spaces; copied */
    unsigned    session_ttl_s;      /* required: a record lives this long after its last write */
    unsigned    heartbeat_ttl_s;    /* 0 = 3: a worker is dead this long after its last heartbeat */
    uint64_t    max_global_sessions;/* 0 = unlimited */
    unsigned    op_timeout_ms;      /* 0 = 1000: per-op and connect deadline */
    const char *key_prefix;         /* NULL = "asrd:"; copied */
    store_released_fn on_released;  /* optional; never fires with the memory backend */
    store_state_fn    on_state;     /* optional */
    void       *ctx;                /* passed to on_released and on_state */
};

enum store_op_kind {
    STORE_OP_CREATE, STORE_OP_UPDATE, STORE_OP_CLAIM, STORE_OP_GET, STORE_OP_DELETE,
    STORE_OP_LIST, STORE_OP_COUNT, STORE_OP_REPUBLISH, STORE_OP__N
};

/* Counters for metrics. Gauges say so. */
struct store_stats {
    uint64_t ops[STORE_OP__N];      /* ops started, by kind */
    uint64_t errors;                /* ops that completed with STORE_UNAVAILABLE */
    uint64_t timeouts;              /* of those: no reply within op_timeout_ms */
    uint64_t reconnects;            /* connections re-established after the first */
    uint64_t connected;             /* gauge: 1 while available */
    uint64_t pubsub_connected;      /* gauge: 1 while subscribed to release notices */
    uint64_t releases;              /* release notices received (on_released calls) */
    uint64_t inflight;              /* gauge: commands sent, reply awaited */
};

/* A parsed ASR_REDIS_URL. */
struct store_url {
    int      is_unix;               /* 1: path, 0: host and port */
    char     host[256];             /* name or address, IPv6 without brackets */
    unsigned port;                  /* default 6379 */
    char     path[108];             /* unix socket path */
    char     user[128];             /* ACL user ("" = AUTH with the password only) */
    char     password[256];         /* "" = no AUTH */
    unsigned db;                    /* SELECT db when non-zero */
};

/* Parses url into *out (percent-escapes in user and password are decoded).
 * Returns 0 or ASR_EINVAL (unknown scheme such as rediss://, bad port, field
 * too long, trailing garbage). Use it to validate configuration at start. */
int store_url_parse(const char *url, struct store_url *out);

/* Opens a store on loop. Strings in cfg are copied. With Redis, the
 * connection is made in the background: store_available() is 0 until it is
 * up (on_state tells), and ops fail fast meanwhile. On 0, *out is the store.
 * Returns ASR_EINVAL for a bad cfg or URL. */
int store_open(uv_loop_t *loop, const struct store_cfg *cfg, struct store **out);

/* Starts closing: ops made afterwards return ASR_EINVAL at once; ops
 * already made complete normally (within op_timeout_ms); then connections
 * and handles are closed, on_closed(arg) runs (may be NULL) and the store is
 * freed. The heartbeat is not deleted: this worker counts as alive until it
 * expires. After on_closed, the store has nothing left on the loop. */
void store_close(struct store *s, store_closed_fn on_closed, void *arg);

/* 1 when ops can succeed now (memory: always; Redis: connected and ready). */
int store_available(const struct store *s);
/* "memory" or "redis". */
const char *store_backend(const struct store *s);
const struct store_stats *store_stats(const struct store *s);
/* Metric label of an op kind: "create", "update", ... */
const char *store_op_name(enum store_op_kind kind);

/* Creates record id with blob (copied; NULL when len is 0), owner = this
 * worker, attached = 1, taking one slot of the global limit atomically across
 * workers. Status: STORE_OK, STORE_EXISTS, STORE_LIMIT, STORE_UNAVAILABLE. */
int store_create(struct store *s, const char *id, const void *blob, size_t len,
                 store_done_fn cb, void *arg);

/* Sets attached and (unless blob is NULL) the blob, and refreshes the TTL,
 * only while this worker owns id. Status: STORE_OK, STORE_NOT_FOUND (absent
 * or expired: nothing is written), STORE_NOT_OWNER (another worker claimed
 * it: release the local copy), STORE_UNAVAILABLE. */
int store_update(struct store *s, const char *id, int attached, const void *blob, size_t len,
                 store_done_fn cb, void *arg);

/* Writes this worker's record id again after a store that may have lost it
 * (a Redis restarted empty; docs/internals/store.md "Republish after a
 * reconnect"): absent -> written with owner = this worker, attached and blob
 * (copied; NULL when len is 0), taking a slot of the global limit without
 * checking it (the session was admitted before); present and this worker's
 * -> attached and blob set, TTL refreshed (its `created` kept); another
 * worker's -> STORE_NOT_OWNER and nothing changes. Status: STORE_OK,
 * STORE_NOT_OWNER, STORE_UNAVAILABLE. */
int store_republish(struct store *s, const char *id, int attached, const void *blob, size_t len,
                    store_done_fn cb, void *arg);

/* Resume: atomically, absent -> STORE_NOT_FOUND; attached on a live worker
 * (this one included) -> STORE_BUSY; else owner = this worker, attached = 1,
 * the slot moves to this worker, and cb gets the record and prev_owner. If
 * prev_owner is another live worker, its on_released(id) fires. A claim never
 * fails with STORE_LIMIT (a dead worker's session re-counts when claimed). */
int store_claim(struct store *s, const char *id, store_claim_fn cb, void *arg);

/* Reads a record. Status: STORE_OK, STORE_NOT_FOUND, STORE_UNAVAILABLE. */
int store_get(struct store *s, const char *id, store_record_fn cb, void *arg);

/* Deletes id and frees its slot, only for its owner. Status: STORE_OK,
 * STORE_NOT_FOUND, STORE_NOT_OWNER (nothing changes), STORE_UNAVAILABLE. */
int store_delete(struct store *s, const char *id, store_done_fn cb, void *arg);

/* Ids of the live records worker_id owns (memory: this worker's, or none).
 * Status: STORE_OK (n may be 0), STORE_UNAVAILABLE. */
int store_list_by_worker(struct store *s, const char *worker_id, store_list_fn cb, void *arg);

/* Sessions counted toward the global limit: the live records of every live
 * worker. Status: STORE_OK, STORE_UNAVAILABLE. */
int store_count_active(struct store *s, store_count_fn cb, void *arg);

/* ---- internal: shared by store.c, memory.c and redis.c ------
 * Not a contract for callers; fields end in an underscore. */

struct store__op;

/* Arguments of one op, borrowed for the submit call. */
struct store__args {
    const char *id;                 /* session id (list: NULL) */
    const char *worker;             /* list: the worker asked about */
    int         attached;           /* update */
    const void *blob;               /* create/update; update: NULL = keep */
    size_t      blob_len;
};

/* A backend: the store struct it allocates starts with struct store. */
struct store__backend {
    const char *name;
    size_t      size;               /* bytes of the backend's store struct */
    size_t      op_size;            /* bytes of its op struct (starts with struct store__op) */
    /* Starts background work (timers, connections). Cannot fail. */
    void (*open)(struct store *s, const struct store_url *url);
    int  (*available)(const struct store *s);
    /* Runs op (kind in op->kind_); must complete it exactly once, later:
     * store__defer() or, from a loop callback, store__finish(). */
    void (*submit)(struct store *s, struct store__op *op, const struct store__args *a);
    /* No user op is pending: stop timers, free connections, and close every
     * handle with store__close_handle(). */
    void (*teardown)(struct store *s);
    /* Frees what the backend allocated, after every handle closed. */
    void (*destroy)(struct store *s);
};

/* Results a deferred completion hands to the callback (owned by the op). */
struct store__res {
    int      has_rec;
    char    *id, *owner, *prev_owner;   /* owned */
    void    *blob;                      /* owned */
    size_t   blob_len;
    int      attached;
    uint64_t created_ms, last_ms;
    char   **ids;                       /* owned, each owned */
    size_t   n_ids;
    uint64_t count;
};

struct store__op {
    struct store      *s_;              /* borrowed */
    enum store_op_kind kind_;
    union {
        store_done_fn   done;
        store_record_fn record;
        store_claim_fn  claim;
        store_list_fn   list;
        store_count_fn  count;
    } cb_;
    void              *arg_;
    int                status_;         /* for a deferred completion */
    struct store__res  res_;            /* for a deferred completion */
    struct store__op  *next_;           /* deferred queue */
};

struct store {
    const struct store__backend *be_;
    uv_loop_t        *loop_;            /* borrowed */
    char              worker_[STORE_WORKER_ID_MAX + 1];
    char              prefix_[STORE_PREFIX_MAX + 1];
    uint64_t          session_ttl_ms_;
    uint64_t          heartbeat_ttl_ms_;
    uint64_t          max_sessions_;    /* 0 = unlimited */
    uint64_t          op_timeout_ms_;
    store_released_fn on_released_;
    store_state_fn    on_state_;
    void             *ctx_;
    struct store_stats stats_;
    uv_idle_t         idle_;            /* runs deferred completions and the close */
    struct store__op *dq_head_, *dq_tail_;  /* deferred completions, in order */
    uint64_t          pending_;         /* user ops started and not completed */
    int               closing_;         /* store_close called */
    int               torn_down_;       /* backend teardown ran */
    int               handles_open_;    /* handles closing through store__close_handle */
    int               holds_;           /* other things to wait for before freeing:
                                         * getaddrinfo requests, hiredis poll handles */
    store_closed_fn   on_closed_;
    void             *closed_arg_;
};

/* Completes op now (from a loop callback, never inside the user's call):
 * counts the result, runs the callback. Does not free op. */
void store__finish(struct store__op *op, int status, const struct store_record *rec,
                   const char *prev_owner, const char *const *ids, size_t n, uint64_t count);
/* Queues op to complete in a later callback with status and op->res_; the
 * queue frees op (and its res_) afterwards. */
void store__defer(struct store__op *op, int status);
/* Frees op->res_ contents and op. */
void store__op_free(struct store__op *op);
/* uv_close with accounting: the store is freed once every such handle closed. */
void store__close_handle(struct store *s, uv_handle_t *h);
/* Called by a backend when a hold (see holds_) ends. */
void store__release_hold(struct store *s);
/* Fires on_state and sets the connected gauge. */
void store__set_available(struct store *s, int up);
/* 1 if s is a valid id/worker id: 1..max printable ASCII bytes, no spaces. */
int store__valid_name(const char *s, size_t max);

extern const struct store__backend store__memory;
extern const struct store__backend store__redis;

#endif
