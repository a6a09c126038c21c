/* srvmetrics: the server's GET /v1/metrics (docs/API.md "GET /v1/metrics")
 * as asrd-load reads it (docs/LOAD.md "What is measured"):
 *
 *   - a blocking fetch, used only between phases when no session runs, so
 *     blocking the loop (at most 3 s) disturbs no measurement;
 *   - the settled "after" snapshot of a phase: retaken until the server's
 *     sessions, connections and open descriptors are back (the settle rule
 *     below, pure so it is unit-tested);
 *   - the sampler: one GET every --metrics-interval during a phase, on the
 *     loop, never more than one in flight.
 *
 * Snapshots are parsed by loadstat_metrics_parse. */
#ifndef ASRD_LOAD_SRVMETRICS_H
#define ASRD_LOAD_SRVMETRICS_H

#include <stdint.h>
#include <uv.h>

#include "loadstat.h"

struct load_target;

#define SRVMETRICS_SETTLE_POLL_NS   100000000ull       /* between two reads of the settle wait */
#define SRVMETRICS_SETTLE_ACTIVE_NS 3000000000ull      /* most to wait for sessions and connections */
#define SRVMETRICS_SETTLE_MAX_NS    10000000000ull     /* most to wait in all */
#define SRVMETRICS_STEADY_NS        500000000ull       /* open fds unchanged this long: settled (one worker) */
#define SRVMETRICS_STEADY_WORKERS_NS 2500000000ull     /* ... with several workers (they publish once a second,
                                                        * figures of the refresh before: up to 2 s old) */

/* GET /v1/metrics, blocking for at most 3 s. out->ok is 0 when the server
 * did not answer 200 with a metrics object in time. */
void srvmetrics_fetch(const struct load_target *t, struct loadstat_server *out);

/* The settle rule for the "after" snapshot of a phase. A server finishes
 * its accounting of a session when the session has ended there too, which
 * can be a little after the client saw the close, and it counts its open
 * descriptors as they are when a request comes (a master's other workers:
 * as they were at their last publication). So the snapshot is retaken
 * until, in this order:
 *   1. sessions.active and connections.active are back to their values
 *      before the phase (at most SRVMETRICS_SETTLE_ACTIVE_NS), then
 *   2. process.open_fds is back to its value before the phase, or has not
 *      changed for SRVMETRICS_STEADY_NS (SRVMETRICS_STEADY_WORKERS_NS with
 *      several workers): it has stopped changing;
 * and never longer than SRVMETRICS_SETTLE_MAX_NS from the first read. */
struct srvmetrics_settle {
    struct loadstat_server before;      /* copy of the snapshot before the phase */
    uint64_t t0;                        /* ns: the wait started */
    uint64_t steady_ns;                 /* how long open fds must stay unchanged */
    int      active_done;               /* step 1 is over */
    int      have_fds;                  /* last_fds holds a reading of step 2 */
    uint64_t last_fds;                  /* open fds of the latest reading */
    uint64_t last_change;               /* ns: when the open fds last read differently */
    int      steady;                    /* result: the open fds stopped changing (0: the wait ran out) */
    double   waited_s;                  /* result: seconds from t0 to the settled reading */
};

void srvmetrics_settle_init(struct srvmetrics_settle *s, const struct loadstat_server *before, uint64_t now_ns);
/* Feeds the snapshot read at now_ns. Returns 1 when snap is the settled
 * "after" (steady and waited_s set), 0 to read again after
 * SRVMETRICS_SETTLE_POLL_NS. A snapshot that was not read (ok 0), or no
 * snapshot before the phase, ends the wait at once (steady 0). */
int  srvmetrics_settle_feed(struct srvmetrics_settle *s, const struct loadstat_server *snap, uint64_t now_ns);

/* The settled "after" snapshot (blocking: sleeps between reads; with
 * several workers the first read waits 1.1 s). *waited_s and *steady as
 * in struct srvmetrics_settle. */
void srvmetrics_fetch_settled(const struct load_target *t, const struct loadstat_server *before,
                              struct loadstat_server *out, double *waited_s, int *steady);

/* Called on the loop with each sample that was read (snap valid for the call). */
typedef void (*srvmetrics_sample_fn)(void *arg, const struct loadstat_server *snap);

struct srvmetrics_req;

struct srvmetrics_sampler {
    uv_loop_t *loop;                    /* borrowed */
    const struct load_target *t;        /* borrowed */
    uv_timer_t timer;
    struct srvmetrics_req *inflight;    /* owned: the fetch in flight, NULL when none (freed by its close callback) */
    srvmetrics_sample_fn on_sample;
    void *arg;
};

/* Initialises the timer on loop. */
void srvmetrics_sampler_init(struct srvmetrics_sampler *s, uv_loop_t *loop, const struct load_target *t,
                             srvmetrics_sample_fn on_sample, void *arg);
/* Starts a fetch every interval_s seconds (0: none). A sample not answered
 * after 3 s is dropped when the next one is due; none starts while one is
 * in flight. */
void srvmetrics_sampler_start(struct srvmetrics_sampler *s, double interval_s);
/* Stops the timer and drops the fetch in flight (its callback never runs). */
void srvmetrics_sampler_stop(struct srvmetrics_sampler *s);
/* Stops and closes the timer (the loop may then end). */
void srvmetrics_sampler_close(struct srvmetrics_sampler *s);

#endif
