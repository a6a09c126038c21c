/* A streaming session on the API side (docs/internals/session-lifecycle.md):
 * `struct stream` pairs a core session with its WebSocket (or none while
 * the client is away and the session is resumable), owns the idle timer,
 * sits in the api's registry, and decides how and why the session ends.
 * stream.c runs it (the upgrade, WebSocket callbacks, the lifecycle);
 * sync.c keeps its store record. The server's entry points are in
 * api/api.h. */
#ifndef ASRD_API_STREAM_H
#define ASRD_API_STREAM_H

#include <stdint.h>
#include <uv.h>

#include "api/registry.h"
#include "api/sync.h"
#include "base/metrics.h"
#include "core/session.h"
#include "net/ws.h"

struct api;

/* Where a stream is in its life. stream.c's stream_transition() is the only
 * writer and refuses any move not listed:
 *
 *   UPGRADING -> ATTACHED | DETACHED | GONE
 *   ATTACHED  -> ENDING | DRAINING | DETACHED | GONE
 *   ENDING    -> GONE
 *   DRAINING  -> DETACHED | GONE
 *   DETACHED  -> ATTACHED | DETACHED | GONE
 *
 * (DETACHED -> DETACHED: a resume whose WebSocket could not start.) */
enum stream_state {
    STREAM_UPGRADING, /* new session; its 101 waits for the store (no connection yet) */
    STREAM_ATTACHED,  /* a WebSocket carries it */
    STREAM_ENDING,    /* attached and ending for good (stop, idle timeout, rate abuse): owed
                       * answers and a final go out, then the close; a resume is refused */
    STREAM_DRAINING,  /* attached and ending for a drain: owed answers, a final, then close
                       * 1001; still resumable (elsewhere, with a shared store) */
    STREAM_DETACHED,  /* no connection: resumable for ASR_RESUME_TIMEOUT_S, unless evicted
                       * (docs/API.md "Resuming a session": the detached bounds) */
    STREAM_GONE,      /* destroyed: counted, unregistered, session freed; the struct is
                       * freed by the idle timer's close callback */
    STREAM__N
};

struct stream {
    struct api *api;              /* borrowed: the context (outlives every stream) */
    struct asr_session *sess;     /* owned; NULL once GONE */
    struct ws_conn *ws;           /* borrowed; set in ATTACHED, ENDING and DRAINING only */
    enum stream_state state;      /* stream_transition() */
    enum sync_state sync;         /* the store record (sync.c) */
    uv_timer_t idle;              /* idle / resumable expiry; lives as long as the struct */
    uint64_t last_activity;       /* loop time, ms */
    enum metric_end end_reason;   /* why it ends: meaningful in ENDING and DRAINING */
    int      close_code;          /* ENDING, DRAINING: sent once the session has drained */
    const char *close_reason;     /* static */
    uint64_t stored_ms;           /* loop time of the last snapshot write (sync.c) */
    struct registry_entry reg;    /* in the api's registry, keyed by the session id */
    struct stream *dprev, *dnext; /* borrowed: the api's list of DETACHED streams (stream.c) */
    char     peer_ip[64];         /* the client address of its last connection (per-address bounds) */
};

/* Frees the stream (-> GONE): logs the session's counters, counts its end
 * (metrics.sessions_ended[reason]), settles its store record (sync_end),
 * unregisters it and destroys the session; the struct itself is freed once
 * its idle timer has closed. Refused (ASR_EINVAL, logged) when st is gone
 * already. sync.c calls it for a detached stream whose record moved. */
int stream_destroy(struct stream *st, enum metric_end reason);

#endif
