/* srvmetrics: the server's GET /v1/metrics (docs/API.md "GET /v1/metrics")
 * as asrd-load reads it (docs/LOAD.md "What is measured"):
 *
 *   - a blocking fetch, used only between phases when no session runs, so
 *     blocking the loop (at most 3 s) disturbs no measurement;
 *   - the settled "after" snapshot of a phase: retaken until the server's
 *     sessions and connections are back;
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

/* GET /v1/metrics, blocking for at most 3 s. out->ok is 0 when the server
 * did not answer 200 with a metrics object in time. */
void srvmetrics_fetch(const struct load_target *t, struct loadstat_server *out);

/* The snapshot after a phase, once the server has settled: its counters of
 * a session are complete only when that session has ended there too, which
 * can be a little after our side saw the close. So the snapshot is retaken
 * (every 100 ms, for at most 3 s) until sessions.active and
 * connections.active are back to their values before the phase. A master's
 * workers publish their counters once a second (the answering worker's are
 * live), so with more than one worker the first read waits 1.1 s. */
void srvmetrics_fetch_settled(const struct load_target *t, const struct loadstat_server *before,
                              struct loadstat_server *out);

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
