/* The inference pool: dedicated threads, each owning one instance of a
 * WINDOWED engine (core/engine.h), that decode jobs for the sessions of one
 * worker process (docs/internals/inference-pool.md).
 *
 * Fair: a client (a streaming session, a REST request) has at most one job
 * running; clients with work are served round robin within a class, and
 * classes in priority order: finals of live streams, then their partial
 * windows, then REST, then batch. One client cannot starve the others by
 * submitting faster: its jobs wait in its own FIFO, not in the shared queue.
 *
 * Bounded: at most queue_max jobs wait (not counting running ones) across
 * every class but POOL_FINAL. Past it, a partial window from a client that
 * has been served less than another client with a window waiting takes
 * that window's place (the evicted job completes with ASR_ECANCELED: its
 * stream skips that window), so a full queue does not starve the clients
 * that arrive when it is full; otherwise pool_submit() answers ASR_EAGAIN:
 * a stream skips that window (its audio stays for the final), a REST
 * request answers 503. Finals are always taken (a final must not be lost); they are
 * bounded by the sessions' own input limits, and counted in the queue depth.
 *
 * Threads: pool_create() starts them; each creates its engine instance on
 * itself. Jobs complete on the loop thread: the thread hands the result to
 * the loop through a uv_async, and the job's done() runs there. */
#ifndef ASRD_CORE_POOL_H
#define ASRD_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/engine.h"

enum pool_class {
    POOL_FINAL,   /* the whole utterance of a live stream, for its final */
    POOL_WINDOW,  /* a partial window of a live stream */
    POOL_REST,    /* an utterance of a REST request */
    POOL_BATCH,   /* an utterance of a batch job */
    POOL__CLASSES
};

struct pool_cfg {
    unsigned threads;    /* engine instances, one per thread (>= 1) */
    unsigned queue_max;  /* jobs waiting across the classes other than POOL_FINAL */
};

/* Figures for metrics. Gauges say so. */
struct pool_stats {
    uint64_t threads;                   /* gauge */
    uint64_t busy;                      /* gauge: threads decoding now */
    uint64_t queued;                    /* gauge: jobs waiting, all classes */
    uint64_t queued_class[POOL__CLASSES];  /* gauge, by class */
    uint64_t queue_max;                 /* the bound */
    uint64_t completed;                 /* jobs decoded (any status) */
    uint64_t failed;                    /* of those: the engine failed */
    uint64_t refused;                   /* pool_submit: ASR_EAGAIN (queue full) */
    uint64_t evicted;                   /* waiting windows given up for a less-served client's */
    uint64_t audio_ms;                  /* audio decoded, ms */
    uint64_t busy_ms;                   /* thread time spent decoding, ms (wall, per thread) */
};

struct pool;
struct pool_job;

/* Called on the loop thread once per job that ran to completion, or with
 * ASR_ECANCELED for a waiting window evicted for a less-served client's
 * (not for jobs cancelled by their owner). res is borrowed for the call (NULL unless status is 0);
 * its word times are in the session's audio (the job's offset added). The
 * job is freed after done returns. */
typedef void (*pool_done_fn)(struct pool_job *job, int status, const struct engine_result *res);

/* A client: the unit of fairness. Embedded by its owner (a session); fields
 * are private. pool_client_init() before use, pool_client_cancel() before
 * the owner frees it. */
struct pool_client {
    struct pool_job    *head_, *tail_;  /* its waiting jobs, oldest first */
    struct pool_job    *running_;       /* its job on a thread, or NULL */
    struct pool_client *next_;          /* the class ready list */
    int                 ready_;         /* in a ready list */
    uint64_t            served_;        /* jobs of it taken by a thread (fair order, eviction) */
};

/* A job: the audio to decode (owned by the job) and where the answer goes.
 * Fields marked "caller" are set by the caller between pool_job_create()
 * and pool_submit(); the times are set by the pool (uv_hrtime, ns). */
struct pool_job {
    pool_done_fn done;                  /* caller */
    void        *arg;                   /* caller: borrowed */
    uint64_t     offset_ms;             /* caller: where the audio starts in the session */
    int          final;                 /* caller: 1 = the whole utterance (engine_window.final) */
    uint64_t     tag;                   /* caller: anything (e.g. the utterance it belongs to) */
    uint64_t     t_queued_ns, t_start_ns, t_done_ns;
    /* private */
    struct pool_client *client_;
    struct pool_job    *next_;
    enum pool_class     cls_;
    int                 status_;
    int16_t            *pcm_;           /* owned */
    size_t              n_;
    unsigned            rate_;
    char               *hint_;          /* owned */
    size_t              hint_len_;
    struct engine_output *out_;         /* owned */
    int                 evicted_;       /* given up for another client's window (never ran) */
};

/* Starts threads threads, each with an instance of ops (loaded already in
 * this process: its settings are settings). Returns 0 and *out, or
 * ASR_EINVAL (not a WINDOWED engine, 0 threads), ASR_ENOMEM, or
 * ASR_E_MODEL_ERROR when an instance cannot be created (every thread
 * started so far is stopped again). */
int pool_create(uv_loop_t *loop, const struct engine_ops *ops, const void *settings, const struct pool_cfg *cfg,
                struct pool **out);
/* Stops the threads (a decode in progress finishes first), drops every
 * queued job without calling done, destroys the instances and frees the
 * pool. The uv_async is closed: run the loop once afterwards. Cancel every
 * client first. */
void pool_destroy(struct pool *p);

const struct pool_stats *pool_stats(struct pool *p);
/* The engine rate jobs must be at. */
unsigned pool_sample_rate(const struct pool *p);

void pool_client_init(struct pool_client *c);
/* Drops c's waiting jobs (their done never runs) and forgets its running
 * one (it finishes on its thread; its done never runs). c may be freed
 * afterwards. */
void pool_client_cancel(struct pool *p, struct pool_client *c);
/* Jobs of c waiting or running. */
unsigned pool_client_jobs(const struct pool_client *c);

/* A job over a copy of pcm[0..n) at rate (the pool's rate) with an optional
 * hint (copied). NULL on allocation failure. */
struct pool_job *pool_job_create(const int16_t *pcm, size_t n, unsigned rate, const char *hint, size_t hint_len);
/* Frees a job that was never submitted (or that pool_submit refused). */
void pool_job_free(struct pool_job *job);

/* Takes back a job still waiting in c's queue: 0 and the job is freed (its
 * done never runs); ASR_EAGAIN when a thread has it already (it completes
 * as usual) or it is not c's. */
int pool_job_cancel(struct pool *p, struct pool_client *c, struct pool_job *job);

/* Queues job for client c in class cls. 0: done() will run once, later, on
 * the loop (unless c is cancelled first); the pool owns the job. ASR_EAGAIN:
 * the queue is full (never for POOL_FINAL); the caller still owns the job. */
int pool_submit(struct pool *p, struct pool_client *c, enum pool_class cls, struct pool_job *job);

#endif
