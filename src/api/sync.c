/* Streams and the session store (sync.h). */
#include "api/sync.h"

#include <stdlib.h>
#include <string.h>

#include "api/stream.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/session.h"

static const char *const sync_names[SYNC__N] = {"none", "stored", "unsynced"};

/* The one place where a stream's store state changes; sync.h lists the
 * legal moves. An illegal one is our bug: logged, refused, state kept. */
static int sync_transition(struct stream *st, enum sync_state to) {
    static const unsigned char legal[SYNC__N][SYNC__N] = {
        /* to:         NONE STORED UNSYNCED */
        /* NONE     */ {0, 1, 1},
        /* STORED   */ {1, 0, 0},
        /* UNSYNCED */ {1, 1, 0},
    };
    if (!legal[st->sync][to]) {
        struct log_line *l = log_begin(LOG_ERROR, "illegal store state change");
        if (l) {
            log_str(l, "session_id", st->sess ? sess_id(st->sess) : "");
            log_str(l, "from", sync_names[st->sync]);
            log_str(l, "to", sync_names[to]);
            log_end(l);
        }
        return ASR_EINVAL;
    }
    st->sync = to;
    return 0;
}

int sync_shared(const struct sync *sy) { return sy->store_ && strcmp(store_backend(sy->store_), "redis") == 0; }

/* ---- a new stream's record ---------------------------------------------------- */

struct register_op {
    struct stream *st;            /* borrowed: alive until done runs (sync_register's contract) */
    store_done_fn done;
    void *arg;
};

static void on_created(void *arg, int status) {
    struct register_op *op = arg;
    if (status == STORE_OK) sync_transition(op->st, SYNC_STORED);
    store_done_fn done = op->done;
    void *done_arg = op->arg;
    free(op);
    done(done_arg, status);
}

int sync_register(struct sync *sy, struct stream *st, store_done_fn done, void *arg) {
    if (!sy->store_) return ASR_EINVAL;
    struct register_op *op = xmalloc(sizeof *op);
    *op = (struct register_op){.st = st, .done = done, .arg = arg};
    struct buf snap;
    buf_init(&snap, 0);
    if (sync_shared(sy)) sess_snapshot(st->sess, &snap);
    int r = store_create(sy->store_, sess_id(st->sess), snap.data, snap.len, on_created, op);
    buf_cleanup(&snap);
    if (r != 0) free(op);
    return r;
}

void sync_serve_unsynced(struct sync *sy, struct stream *st) { sync_transition(st, SYNC_UNSYNCED); }

/* ---- resume: claims ------------------------------------------------------------ */

int sync_claim(struct sync *sy, const char *id, store_claim_fn cb, void *arg) {
    if (!sy->store_) return ASR_EINVAL;
    return store_claim(sy->store_, id, cb, arg);
}

void sync_adopt(struct sync *sy, struct stream *st) { sync_transition(st, SYNC_STORED); }

void sync_unclaim(struct sync *sy, const char *id) {
    if (sy->store_) store_update(sy->store_, id, 0, NULL, 0, NULL, NULL);
}

/* ---- writes ------------------------------------------------------------------------ */

void sync_set_attached(struct sync *sy, struct stream *st, int attached) {
    if (st->sync == SYNC_STORED && sync_shared(sy))
        store_update(sy->store_, sess_id(st->sess), attached, NULL, 0, NULL, NULL);
}

/* Our record of id went to another worker (or expired there): the local
 * copy is stale. A detached stream is dropped; an attached one keeps its
 * connection (its next write learns the same). */
static void record_moved(struct sync *sy, const char *id) {
    struct stream *st = registry_find(sy->streams_, id);
    if (!st || st->state != STREAM_DETACHED) return;
    sync_transition(st, SYNC_NONE);
    stream_destroy(st, END_MOVED);
}

struct write_op {
    struct sync *sy;              /* borrowed: ops finish before sync_close returns */
    char id[STORE_ID_MAX];        /* by id: the stream may be gone when the answer comes */
};

static void on_written(void *arg, int status) {
    struct write_op *op = arg;
    if (status == STORE_NOT_OWNER || status == STORE_NOT_FOUND) record_moved(op->sy, op->id);
    free(op);
}

void sync_snapshot(struct sync *sy, struct stream *st) {
    if (!sync_shared(sy) || st->sync != SYNC_STORED || !st->sess) return;
    buf_reset(&sy->snap_);
    if (sess_snapshot(st->sess, &sy->snap_) != 0) return;
    st->stored_ms = uv_now(sy->loop_);
    struct write_op *op = xmalloc(sizeof *op);
    op->sy = sy;
    snprintf(op->id, sizeof op->id, "%s", sess_id(st->sess));
    metrics.store_writes++;
    if (store_update(sy->store_, op->id, st->ws != NULL, sy->snap_.data, sy->snap_.len, on_written, op) != 0)
        free(op);
}

void sync_end(struct sync *sy, struct stream *st, int keep) {
    if (st->sync != SYNC_STORED || !sy->store_) return;
    if (keep && sync_shared(sy)) sync_snapshot(sy, st);
    else store_delete(sy->store_, sess_id(st->sess), NULL, NULL);
}

/* ---- what the store tells -------------------------------------------------------- */

static void on_released(void *ctx, const char *id) { record_moved(ctx, id); }

/* A republished record: counted, or found claimed by another worker
 * meanwhile (then the local copy is stale, as for any write). */
static void on_republished(void *arg, int status) {
    struct write_op *op = arg;
    if (status == STORE_OK) metrics.store_republished++;
    else if (status == STORE_NOT_OWNER) record_moved(op->sy, op->id);
    free(op);
}

/* The store is back (docs/internals/store.md "Republish after a
 * reconnect"). It may have come back empty (a Redis restarted without its
 * data, the private redis-server the master restarts): every record this
 * worker holds is written again, with its current snapshot, so that a
 * resume elsewhere after this worker dies finds it, and its slot of the
 * global limit is taken again; a stream served while the store was down
 * gets its record the same way (the reconcile). The heartbeat and this
 * worker's entry in the worker set are written by the store itself on
 * every connect. Ops go out in order on one connection, so each record is
 * rewritten before any later update of it. */
static void republish(void *ctx, void *owner) {
    struct sync *sy = ctx;
    struct stream *st = owner;
    if (st->state == STREAM_GONE || !st->sess) return;
    if (st->sync == SYNC_UNSYNCED) sync_transition(st, SYNC_STORED);
    else if (st->sync != SYNC_STORED) return;
    buf_reset(&sy->snap_);
    if (sess_snapshot(st->sess, &sy->snap_) != 0) return;
    st->stored_ms = uv_now(sy->loop_);
    struct write_op *op = xmalloc(sizeof *op);
    op->sy = sy;
    snprintf(op->id, sizeof op->id, "%s", sess_id(st->sess));
    int attached = st->state != STREAM_DETACHED;
    if (store_republish(sy->store_, op->id, attached, sy->snap_.data, sy->snap_.len, on_republished, op) != 0)
        free(op);
    else
        sy->republishing_++;
}

static void on_store_state(void *ctx, int available) {
    struct sync *sy = ctx;
    struct log_line *l = log_begin(available ? LOG_INFO : LOG_WARN,
                                   available ? "session store available" : "session store unavailable");
    if (l) { log_str(l, "backend", store_backend(sy->store_)); log_end(l); }
    if (!available || !sync_shared(sy)) return;
    sy->republishing_ = 0;
    registry_each(sy->streams_, republish, sy);
    if (sy->republishing_) {
        l = log_begin(LOG_INFO, "session store: republishing this worker's sessions");
        if (l) { log_u64(l, "sessions", sy->republishing_); log_end(l); }
    }
}

/* ---- the 1 s tick -------------------------------------------------------------------- */

/* Every ASR_SNAPSHOT_INTERVAL_S ticks: changed sessions, and (so that the record's TTL never runs out under a
 * session that only sends keepalives) any not written for a minute. */
static void snapshot_if_due(void *ctx, void *owner) {
    struct sync *sy = ctx;
    struct stream *st = owner;
    if (st->state != STREAM_GONE && st->sess &&
        (sess_take_dirty(st->sess) || uv_now(sy->loop_) - st->stored_ms >= 60000))
        sync_snapshot(sy, st);
}

static void on_tick(uv_timer_t *t) {
    struct sync *sy = t->data;
    const struct store_stats *ss = store_stats(sy->store_);
    metrics.store_up = store_available(sy->store_) ? 1 : 0;
    metrics.store_errors = ss->errors;
    metrics.store_timeouts = ss->timeouts;
    metrics.store_reconnects = ss->reconnects;
    uint64_t ops = 0;
    for (int i = 0; i < STORE_OP__N; i++) ops += ss->ops[i];
    metrics.store_ops = ops;
    if (!sync_shared(sy)) return;
    unsigned every = sy->cfg_->snapshot_interval_s > 0 ? (unsigned)sy->cfg_->snapshot_interval_s : 1;
    if (++sy->ticks_ % every == 0) registry_each(sy->streams_, snapshot_if_due, sy);
}

/* ---- open and close ------------------------------------------------------------------ */

int sync_open(struct sync *sy, uv_loop_t *loop, const struct config *cfg, struct registry *streams) {
    memset(sy, 0, sizeof *sy);
    sy->loop_ = loop;
    sy->cfg_ = cfg;
    sy->streams_ = streams;
    buf_init(&sy->snap_, STORE_BLOB_MAX);
    struct store_cfg sc = {
        .redis_url = cfg->redis_url,
        .worker_id = cfg->worker_id,
        /* a record outlives the longer of the two windows it serves */
        .session_ttl_s = (unsigned)(cfg->idle_timeout_s > cfg->resume_timeout_s ? cfg->idle_timeout_s
                                                                                 : cfg->resume_timeout_s) + 60,
        .max_global_sessions = (uint64_t)cfg->max_global_sessions,
        .on_released = on_released,
        .on_state = on_store_state,
        .ctx = sy,
    };
    int r = store_open(loop, &sc, &sy->store_);
    if (r != 0) {
        sy->store_ = NULL;
        buf_cleanup(&sy->snap_);
        return r;
    }
    uv_timer_init(loop, &sy->timer_);
    sy->timer_.data = sy;
    uv_timer_start(&sy->timer_, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&sy->timer_);
    return 0;
}

static void on_store_closed(void *arg) { *(int *)arg = 1; }

void sync_close(struct sync *sy) {
    if (!sy->store_) return;
    uv_timer_stop(&sy->timer_);
    if (!uv_is_closing((uv_handle_t *)&sy->timer_)) uv_close((uv_handle_t *)&sy->timer_, NULL);
    int closed = 0;
    store_close(sy->store_, on_store_closed, &closed); /* writes in flight finish first (bounded) */
    while (!closed && uv_run(sy->loop_, UV_RUN_ONCE)) {}
    sy->store_ = NULL;
    buf_cleanup(&sy->snap_);
}
