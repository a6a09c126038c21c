/* The job runner of one worker (docs/internals/jobs.md, "A run"): takes
 * runs from the queue (store/jobs.h) while it has room
 * (ASR_JOB_CONCURRENCY), fetches a URL's audio (net/httpc.h), decodes on
 * libuv's thread pool, transcribes through a session of kind REST whose
 * utterances go to the inference pool's POOL_BATCH class (below every live
 * stream: api/transcribe.h), and reports the result; meanwhile it renews
 * the run's lease every second with its progress, and stops a run every
 * job of which was canceled, or whose lease another worker took over.
 *
 * Failures: audio that cannot be fetched (a 4xx, a refused address, too
 * large) or decoded ends the run's jobs in error at once; an engine failure
 * gives the run back for another delivery (past ASR_JOB_MAX_ATTEMPTS it is
 * dead); an engine whose backlog is full is waited for (live streams
 * first). A report Redis does not answer is retried until it does (or the
 * lease is lost). */
#ifndef ASRD_API_JOBRUN_H
#define ASRD_API_JOBRUN_H

#include <stddef.h>

#include "api/api.h"
#include "net/httpc.h"
#include "store/jobs.h"

struct jobrun;

/* Starts taking runs. env, q and http are borrowed and outlive it. */
struct jobrun *jobrun_start(struct api_env *env, struct jobs *q, struct httpc *http);
/* Takes nothing more (drain, retire); runs in progress go on. */
void jobrun_drain(struct jobrun *r);
/* Runs in progress. */
size_t jobrun_running(const struct jobrun *r);
/* At exit: every run still here is given back to the queue without
 * charging a delivery (another worker takes it at once) and dropped;
 * on_done(arg) runs once those reports are answered (or failed), after
 * which r is freed. */
void jobrun_stop(struct jobrun *r, void (*on_done)(void *arg), void *arg);

#endif
