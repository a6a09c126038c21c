/* Streams and the session store (docs/internals/store.md "Ops per session",
 * docs/API.md "Resuming a session"): everything the streaming endpoint asks
 * of store/store.h goes through here.
 *
 * - A new stream's record is created before its 101 (sync_register); with
 *   the store down it may be served anyway and registered when the store
 *   comes back (sync_serve_unsynced, then the republish on on_state).
 * - A resume of a session this worker does not hold claims the record
 *   (sync_claim, then sync_adopt or sync_unclaim).
 * - Whenever the store (re)connects, every record this worker holds is
 *   written again (store_republish): the store may have come back empty.
 * - With a shared (Redis) store, snapshots are written when a final goes
 *   out, when the connection drops, when a drain leaves a session
 *   resumable, and each second for sessions that changed (or were not
 *   written for a minute, so the record's TTL never runs out).
 * - A record that moved to another worker (a release notice, or a write
 *   answered NOT_OWNER / NOT_FOUND) makes the local copy stale: a detached
 *   stream is dropped (stream_destroy, reason `moved`).
 * - When a session ends its record is deleted (sync_end).
 *
 * Each stream's relation to its record is an explicit state (enum
 * sync_state, in struct stream), changed only by sync.c through one
 * function that refuses illegal moves. */
#ifndef ASRD_API_SYNC_H
#define ASRD_API_SYNC_H

#include <stdint.h>
#include <uv.h>

#include "api/registry.h"
#include "base/config.h"
#include "base/util.h"
#include "store/store.h"

struct stream;

/* A stream's relation to its store record. Moves:
 *   NONE -> STORED     created (sync_register) or claimed (sync_adopt)
 *   NONE -> UNSYNCED   the store was down at creation (sync_serve_unsynced)
 *   UNSYNCED -> STORED the store came back: registered (the reconcile)
 *   STORED, UNSYNCED -> NONE   the record moved to another worker */
enum sync_state {
    SYNC_NONE,       /* no record of ours: not created yet, refused, or moved away */
    SYNC_STORED,     /* this worker owns the stream's record */
    SYNC_UNSYNCED,   /* served while the store was down; to be registered when it is back */
    SYNC__N
};

struct sync {
    struct store *store_;            /* owned; NULL before sync_open and after sync_close */
    uv_loop_t *loop_;                /* borrowed */
    const struct config *cfg_;       /* borrowed */
    struct registry *streams_;       /* borrowed: the api's registry (the tick and reconcile walk it) */
    uv_timer_t timer_;               /* 1 s: store metrics; snapshots of changed sessions every
                                      * ASR_SNAPSHOT_INTERVAL_S ticks */
    uint64_t ticks_;
    struct buf snap_;                /* scratch: one snapshot (limit STORE_BLOB_MAX) */
    uint64_t republishing_;          /* records sent by the last republish (for its log line) */
};

/* Opens the store (cfg->redis_url; memory when empty) on loop and starts the
 * 1 s timer (unreferenced: it does not keep the loop alive). streams holds
 * struct stream owners (api/stream.h). loop, cfg and streams are borrowed
 * and must outlive the sync. Returns 0, or an asr_err (bad URL) with
 * nothing to close. */
int sync_open(struct sync *sy, uv_loop_t *loop, const struct config *cfg, struct registry *streams);
/* Stops the timer, lets store ops in flight finish (bounded by the store's
 * op timeout; runs the loop until then: their callbacks fire inside this
 * call), then closes the store. Afterwards every sync_* call does nothing
 * (or fails, for those that return a status). */
void sync_close(struct sync *sy);
/* 1 when the store is shared with other workers (Redis): only then are
 * snapshots written and sessions claimable elsewhere. */
int sync_shared(const struct sync *sy);

/* Creates the record of a new stream (with its snapshot when shared; the
 * record says attached). On 0, done(arg, status) runs later, once, from the
 * loop, after st's state was set (STORE_OK: SYNC_STORED); status is a
 * store_create() status. st must stay alive until then. On an error (store
 * closing), done never runs. */
int sync_register(struct sync *sy, struct stream *st, store_done_fn done, void *arg);
/* The store was unavailable for st's record and st is served anyway:
 * SYNC_NONE -> SYNC_UNSYNCED; its record is created when the store is back. */
void sync_serve_unsynced(struct sync *sy, struct stream *st);

/* Claims another worker's (or a dead one's) record id for a resume:
 * store_claim()'s contract (cb runs later with the record, or never when
 * this returns an error). */
int sync_claim(struct sync *sy, const char *id, store_claim_fn cb, void *arg);
/* st was restored from a record this worker just claimed: SYNC_NONE ->
 * SYNC_STORED. */
void sync_adopt(struct sync *sy, struct stream *st);
/* A claim that will not be used (the client left, or the resume was
 * refused): marks record id detached again, resumable. */
void sync_unclaim(struct sync *sy, const char *id);

/* Tells a shared store whether st is attached (no snapshot): on a resume of
 * a stream held here, and when its WebSocket could not start. */
void sync_set_attached(struct sync *sy, struct stream *st, int attached);
/* Writes st's snapshot (with a shared store, while st is SYNC_STORED and
 * has its session; else nothing). If the store answers that the record
 * moved, st is dropped should it be detached by then. */
void sync_snapshot(struct sync *sy, struct stream *st);
/* st is being destroyed (GONE, its session not freed yet): its record is deleted,
 * or, with keep and a shared store, kept with a last snapshot, detached and
 * resumable elsewhere (a drain). Nothing when st has no record here. */
void sync_end(struct sync *sy, struct stream *st, int keep);

#endif
