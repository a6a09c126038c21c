/* The job queue: file transcriptions queued in Redis for whichever worker
 * is free (docs/API.md "Jobs", docs/internals/jobs.md has the keys, the
 * scripts and why). Redis Streams with one consumer group: a run (one
 * engine run for one distinct file) is a stream entry; the worker that
 * takes it holds a lease it renews; a run whose worker died is taken over
 * (XAUTOCLAIM) once its lease ran out; a run delivered more than
 * max_attempts times ends in error and goes to a dead-letter stream.
 *
 * Two levels: a job is what a client submitted and polls (its options, its
 * callback, its owner); a run is the work, keyed by the content hash, so
 * identical jobs submitted while a run is queued or running wait for it
 * (they join), and a finished run's result answers later ones from a cache.
 *
 * Every write is a Lua script (atomic on the server); times come from
 * Redis' clock. The worker's side (take, renew, complete, fail, release,
 * resolve, hooks) and the API's side (submit, get, cancel, batches, rate)
 * share one connection; a second one only waits for new runs (XREADGROUP
 * BLOCK).
 *
 * Contract of every op (jobs_submit ... jobs_stats): 0, and its callback
 * runs exactly once, later, from the loop (never inside the call); or a
 * negative asr_err at once (Redis not connected: STORE_UNAVAILABLE; the
 * queue closing: ASR_EINVAL) and the callback never runs. Callbacks get a
 * status first: STORE_OK, STORE_NOT_FOUND (unknown or expired, or another
 * owner's), STORE_NOT_OWNER (this worker's lease on the run was lost: drop
 * the work), STORE_UNAVAILABLE (no answer in time, the connection lost, an
 * error reply). Everything a callback receives is borrowed for the call. */
#ifndef ASRD_STORE_JOBS_H
#define ASRD_STORE_JOBS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/store.h"

#define JOBS_ID_LEN 32                  /* job, run and batch ids: 32 hex characters */

struct jobs_cfg {
    const char *redis_url;              /* required: redis:// or unix:// (copied) */
    const char *worker_id;              /* required: the consumer name (copied) */
    const char *key_prefix;             /* NULL = "asrd:" (copied) */
    unsigned    op_timeout_ms;          /* 0 = 1000 */
    uint64_t    lease_ms;               /* a run not renewed this long is taken over */
    unsigned    max_attempts;           /* deliveries of a run before it is dead */
    uint64_t    ttl_ms;                 /* jobs, runs, spooled audio, idempotency keys, batches */
    uint64_t    cache_ttl_ms;           /* results by content hash; 0 = no cache */
    uint64_t    max_queued;             /* runs waiting; 0 = unlimited */
    uint64_t    spool_max_bytes;        /* audio spooled in Redis; 0 = unlimited */
    void      (*on_state)(void *ctx, int up);  /* the main connection came up (1) or went down (0) */
    void       *ctx;
};

/* A job as GET /v1/jobs/{id} shows it: the job's own fields with its run's
 * live ones (state, start, attempts, progress) while it waits. Strings are
 * borrowed, never NULL ("" when absent). */
struct jobs_view {
    const char *id;
    const char *state;                  /* queued, processing, completed, error, canceled */
    const char *owner;
    const char *hash;                   /* content hash (hex), "" until known */
    const char *opts;                   /* the job's options as stored (JSON) */
    const char *callback;
    const char *batch;
    const char *request_id;
    const char *error;                  /* JSON object, "" unless state error */
    const char *result;                 /* JSON, "" unless completed */
    size_t      result_len;
    const char *hook_state;             /* "", pending, delivered, failed, rejected, gone */
    uint64_t    created_ms, started_ms, finished_ms;   /* Unix ms (Redis clock); 0 = not yet */
    uint64_t    attempts;               /* deliveries of its run so far */
    uint64_t    hook_attempts;
    uint64_t    duration_ms;            /* of the audio, once completed */
    double      progress;               /* 0..1 */
    int         cached;                 /* answered from the result cache */
    int         deduped;                /* joined a run another job started */
};

/* ---- the API's side ----------------------------------------------------- */

struct jobs_submit {
    const char *job_id;                 /* a fresh id */
    const char *run_id;                 /* a fresh id, used when a new run is needed */
    const char *owner;                  /* who may see it (an API key's id, "-" when keys are off) */
    const char *hash;                   /* content hash (hex), or "" when not known yet (a URL) */
    const void *audio;                  /* the upload, spooled with the run; NULL with a url */
    size_t      audio_len;
    const char *ctype;                  /* its Content-Type ("" none) */
    const char *url;                    /* or: where the runner fetches the audio ("" none) */
    const char *opts;                   /* the job's options (JSON), shown back */
    const char *run_opts;               /* what the run needs (JSON: granularity, hint, ...) */
    const char *callback;               /* "" none */
    const char *batch;                  /* "" none */
    const char *idem_key;               /* "" none: already scoped to the owner by the caller */
    const char *idem_fp;                /* the request's fingerprint, compared on a replay */
    const char *request_id;
};

enum jobs_outcome {
    JOBS_QUEUED,                        /* a new run was queued */
    JOBS_JOINED,                        /* an identical run is queued or running: the job waits for it */
    JOBS_CACHED,                        /* answered from the cache: completed */
    JOBS_REPLAY,                        /* the idempotency key's earlier job (view), nothing new */
    JOBS_CONFLICT,                      /* the idempotency key was used with another payload */
    JOBS_FULL,                          /* max_queued runs wait: retry_after_ms */
    JOBS_SPOOL_FULL,                    /* the spool would pass spool_max_bytes: retry_after_ms */
};

struct jobs_submit_res {
    enum jobs_outcome outcome;
    const struct jobs_view *job;        /* QUEUED, JOINED, CACHED, REPLAY; else NULL */
    uint64_t    retry_after_ms;         /* FULL, SPOOL_FULL: from the measured drain rate */
};

typedef void (*jobs_submit_fn)(void *arg, int status, const struct jobs_submit_res *res);
typedef void (*jobs_view_fn)(void *arg, int status, const struct jobs_view *job);

enum jobs_cancel_outcome {
    JOBS_CANCELED,                      /* it was waiting: canceled (its run too if no one else waits) */
    JOBS_PURGED,                        /* it was finished: deleted */
};
typedef void (*jobs_cancel_fn)(void *arg, int status, enum jobs_cancel_outcome outcome, const struct jobs_view *job);

/* A batch: its jobs' ids and states, in submission order. */
struct jobs_batch {
    const char *id;
    uint64_t    created_ms;
    size_t      n;
    const char *const *job_ids;
    const char *const *states;
};
typedef void (*jobs_batch_fn)(void *arg, int status, const struct jobs_batch *b);

/* A token bucket (jobs_rate): who, and its refill rate and depth. */
struct jobs_bucket {
    const char *key;                    /* e.g. "key:<owner>", "ip:<address>" */
    double      per_s;                  /* tokens per second */
    double      burst;                  /* depth */
};
/* allowed 1, or 0 with the wait until a token is there. */
typedef void (*jobs_rate_fn)(void *arg, int status, int allowed, uint64_t retry_after_ms);

/* ---- the worker's side --------------------------------------------------- */

/* A run handed to this worker, borrowed for the callback. */
struct jobs_task {
    const char *run_id;
    const char *token;                  /* this delivery's lease (renew, complete, ...) */
    const char *hash;                   /* "" for a URL run not resolved yet */
    const char *url;                    /* "" when the audio is spooled */
    const char *ctype;
    const char *opts;                   /* the run's options (JSON) */
    const void *audio;                  /* spooled upload (copy it) */
    size_t      audio_len;
    uint64_t    created_ms, started_ms; /* queued at; first started at */
    uint64_t    attempt;                /* this delivery's number, from 1 */
    int         reclaimed;              /* taken over from a worker whose lease ran out */
};

enum jobs_take_outcome {
    JOBS_TASK,                          /* *task is a run to do */
    JOBS_NONE,                          /* nothing waits (now) */
    JOBS_SKIPPED,                       /* an entry whose jobs were all canceled or expired: dropped */
    JOBS_DEAD,                          /* a run past max_attempts: its jobs failed, dead-lettered */
};
typedef void (*jobs_take_fn)(void *arg, int status, enum jobs_take_outcome outcome, const struct jobs_task *task);

typedef void (*jobs_renew_fn)(void *arg, int status, int abandoned);
/* n: the jobs made final; wait_ms: queued to first start of the run. */
typedef void (*jobs_done_fn)(void *arg, int status, uint64_t n, uint64_t wait_ms);

enum jobs_resolve_outcome {
    JOBS_RESOLVE_OWN,                   /* the run goes on, now known by its hash */
    JOBS_RESOLVE_CACHED,                /* its jobs were answered from the cache; the run is over */
    JOBS_RESOLVE_JOINED,                /* its jobs joined an identical run; this one is over */
};
typedef void (*jobs_resolve_fn)(void *arg, int status, enum jobs_resolve_outcome outcome);

/* A webhook to deliver, borrowed for the callback. */
struct jobs_hook {
    const char *entry;                  /* stream entry id */
    const char *job_id;
    const char *event;                  /* job.completed, job.failed */
    uint64_t    delivery;               /* deliveries of this entry (a reclaim adds one) */
    const struct jobs_view *job;        /* NULL: the job is gone (purged, expired): dropped */
};
typedef void (*jobs_hooks_fn)(void *arg, int status, size_t n, const struct jobs_hook *hooks);

/* Figures for metrics (gauges of the shared queue). */
struct jobs_stats {
    uint64_t queued;                    /* runs waiting for a worker */
    uint64_t entries;                   /* stream entries: waiting + taken */
    uint64_t pending;                   /* taken by a worker, not finished */
    uint64_t spool_bytes;               /* audio spooled */
    uint64_t dead;                      /* dead-letter entries kept */
    uint64_t hooks;                     /* webhooks not yet delivered */
};
typedef void (*jobs_stats_fn)(void *arg, int status, const struct jobs_stats *st);
typedef void (*jobs_status_fn)(void *arg, int status);

struct jobs;

/* Opens the queue (connects in the background; jobs_up() says when). 0 and
 * *out, or ASR_EINVAL for a bad cfg. */
int  jobs_open(uv_loop_t *loop, const struct jobs_cfg *cfg, struct jobs **out);
/* Ops already made complete (with STORE_UNAVAILABLE when they cannot),
 * then on_closed(arg) runs and the queue is freed. */
void jobs_close(struct jobs *j, void (*on_closed)(void *arg), void *arg);
/* 1 when ops can be made: connected, or connecting (they wait for it). */
int  jobs_up(const struct jobs *j);

/* Submits a job (jobs_submit: strings and audio borrowed for the call). */
int jobs_submit(struct jobs *j, const struct jobs_submit *s, jobs_submit_fn cb, void *arg);
/* The job id as owner sees it (NOT_FOUND: unknown, expired, another owner's). */
int jobs_get(struct jobs *j, const char *id, const char *owner, jobs_view_fn cb, void *arg);
/* Cancels a waiting job (a run no job waits for any more is dropped, or
 * stopped by its worker at its next renew) or purges a finished one. */
int jobs_cancel(struct jobs *j, const char *id, const char *owner, jobs_cancel_fn cb, void *arg);
/* Records a batch of jobs already submitted. */
int jobs_batch_create(struct jobs *j, const char *batch_id, const char *owner, const char *const *job_ids, size_t n,
                      jobs_status_fn cb, void *arg);
int jobs_batch_get(struct jobs *j, const char *batch_id, const char *owner, jobs_batch_fn cb, void *arg);
/* Takes a token from every bucket, or from none (allowed 0) when one is empty. */
int jobs_rate(struct jobs *j, const struct jobs_bucket *b, size_t n, jobs_rate_fn cb, void *arg);

/* Takes a run for this worker: one whose lease ran out first (reclaimed),
 * else a new one. token: a fresh random id, this delivery's lease. */
int jobs_take(struct jobs *j, const char *token, jobs_take_fn cb, void *arg);
/* Waits up to block_ms on the second connection for a new run, and takes
 * it (JOBS_NONE when none came). One at a time. */
int jobs_wait(struct jobs *j, uint64_t block_ms, const char *token, jobs_take_fn cb, void *arg);
/* Keeps the lease and records progress; abandoned: no job waits for the run
 * any more (all canceled): stop it with jobs_abandon. */
int jobs_renew(struct jobs *j, const char *run_id, const char *token, double progress, jobs_renew_fn cb, void *arg);
/* The run's result (JSON): every job waiting for it completes with it, the
 * cache keeps it, webhooks are queued. */
int jobs_complete(struct jobs *j, const char *run_id, const char *token, const char *result, size_t len,
                  uint64_t duration_ms, jobs_done_fn cb, void *arg);
/* The run failed for good (the audio cannot be decoded or fetched): every
 * job waiting for it ends in error (error: a JSON object). */
int jobs_fail(struct jobs *j, const char *run_id, const char *token, const char *error, jobs_done_fn cb, void *arg);
/* Gives the run back for another delivery (the engine failed: error, a JSON
 * object, becomes the jobs' error if it ends dead). charge 0: the delivery
 * does not count (a worker retiring). */
int jobs_release(struct jobs *j, const char *run_id, const char *token, const char *error, int charge,
                 jobs_status_fn cb, void *arg);
/* Drops a run no job waits for any more. */
int jobs_abandon(struct jobs *j, const char *run_id, const char *token, jobs_status_fn cb, void *arg);
/* A URL run's audio is fetched: its hash decides whether it goes on. */
int jobs_resolve(struct jobs *j, const char *run_id, const char *token, const char *hash, jobs_resolve_fn cb,
                 void *arg);

/* Webhooks due: up to max, those whose lease ran out first. */
int jobs_hooks_take(struct jobs *j, size_t max, jobs_hooks_fn cb, void *arg);
/* A delivery attempt is starting: records the count and keeps the lease. */
int jobs_hook_attempt(struct jobs *j, const char *entry, const char *job_id, uint64_t attempts, jobs_status_fn cb,
                      void *arg);
/* The webhook is done with: outcome delivered, failed (gave up), rejected
 * (a 4xx), gone. */
int jobs_hook_done(struct jobs *j, const char *entry, const char *job_id, const char *outcome, uint64_t attempts,
                   jobs_status_fn cb, void *arg);

int jobs_stats(struct jobs *j, jobs_stats_fn cb, void *arg);

#endif
