/* runner: the run of asrd-load (docs/LOAD.md "Scenarios", "Scheduling"): one
 * libuv loop, single-threaded, and a run of one or more phases.
 *
 * A phase holds L->ph.target sessions (or clients): it starts, its driver
 * (scenario.h) starts and spawns what it runs, at t_stop nothing new starts,
 * at t_hard whatever is left is cut, and once nothing is open the phase
 * finishes: its figures are completed, the server's settled /v1/metrics
 * read (srvmetrics.h), the scenario adds its own figures and says whether
 * another phase follows. Every state has a deadline and a phase has a hard
 * end, so a run always ends even when the server misbehaves.
 *
 * The runner owns the timers (the 1 s tick: timeouts, progress line,
 * timeline point; the spawner; the phase timer; SIGINT) and the /v1/metrics
 * sampler. Drivers and scenarios get the whole context, struct load. */
#ifndef ASRD_LOAD_RUNNER_H
#define ASRD_LOAD_RUNNER_H

#include <stdint.h>
#include <sys/resource.h>
#include <uv.h>

#include "loadstat.h"
#include "srvmetrics.h"

struct clips;
struct load_cfg;
struct scenario;

/* One phase: the whole run, or one capacity step. */
struct load_phase {
    unsigned target;                    /* sessions to hold (rest: clients) */
    uint64_t t_start, t_stop, t_hard;   /* ns */
    unsigned started;                   /* sessions started */
    unsigned rest_sent;                 /* rest: requests sent */
    unsigned open;                      /* slots in use */
    int      stopping;                  /* t_stop passed: nothing new starts */
    int      hard;                      /* t_hard passed */
    int      finishing;
    struct loadstat_run run;
    struct loadstat_hist lat, added;    /* answer latency and added latency of this phase, us */
    struct rusage ru0;
};

struct load {
    uv_loop_t   *loop;                  /* borrowed */
    const struct load_cfg *cfg;         /* borrowed */
    const struct scenario *sc;          /* borrowed: cfg->sc */
    const struct clips *clips;          /* borrowed */
    uv_timer_t   tick;                  /* 1 s: progress, timeline, timeouts */
    uv_timer_t   spawner;               /* starts sessions (ramp, churn, retries) */
    uv_timer_t   phase_timer;           /* t_stop, then t_hard, then finish */
    uv_signal_t  sigint;
    struct srvmetrics_sampler sampler;  /* --metrics-interval */
    struct loadstat_server last_sample; /* the newest sample read (ok 0 before any) */
    uint64_t     last_sample_ns;
    struct load_phase ph;
    struct loadstat_hist interval;      /* latency since the last tick, us */
    struct loadstat_hist all_lat, all_added;
    struct loadstat_result res;
    uint64_t     run_t0;
    uint64_t     tick_chunks, tick_answers;  /* counters at the previous tick */
    int          interrupted;           /* SIGINT count */
    int          done;
    void        *drv;                   /* the driver's state (its init/cleanup) */
    void        *scn;                   /* the scenario's state (its init/cleanup) */
};

/* Sets up L for cfg (timers, driver, scenario); nothing runs yet. */
void runner_init(struct load *L, uv_loop_t *loop, const struct load_cfg *cfg, const struct clips *clips);
/* Runs every phase to the end (returns when the loop has nothing left). */
void runner_run(struct load *L);
void runner_cleanup(struct load *L);

/* For drivers. */
/* Arms the spawner delay_ms from now unless it is due sooner already
 * (nothing once the phase is stopping). */
void runner_spawn_kick(struct load *L, uint64_t delay_ms);
/* Everything the phase started has ended: stop the phase now. */
void runner_stop_now(struct load *L);
/* Finishes the phase once it is stopping and nothing is open. */
void runner_maybe_finish(struct load *L);

/* For capacity searches: records r (its held and verdict set by the
 * scenario's judge) as a step, and returns the next step's target, 0 when
 * the search ends (a step did not hold, the next is above --capacity-max,
 * or the run was interrupted). */
unsigned runner_capacity_next(struct load *L, struct loadstat_run *r);

#endif
