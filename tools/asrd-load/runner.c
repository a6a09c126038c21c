/* The run of asrd-load: phases, timers, progress (runner.h). */
#define _GNU_SOURCE
#include "runner.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "opts.h"
#include "report.h"
#include "scenario.h"

static void phase_start(struct load *L, unsigned target);
static void phase_timer_cb(uv_timer_t *t);

static double rusage_cpu(const struct rusage *ru) {
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           (double)ru->ru_stime.tv_usec / 1e6;
}

/* ---- spawner ----------------------------------------------------------- */

/* The spawner is a one-shot timer, armed only while the driver has
 * something to start (the next session of a ramp, a churn slot that came
 * free, a retry after a failed connection). Between those it sleeps. */
static void spawn_cb(uv_timer_t *t) {
    struct load *L = t->data;
    if (L->ph.stopping) return;
    L->sc->driver->spawn(L);
}

void runner_spawn_kick(struct load *L, uint64_t delay_ms) {
    if (L->ph.stopping || L->done) return;
    uint64_t due = uv_now(L->loop) + delay_ms;
    if (uv_is_active((uv_handle_t *)&L->spawner) && uv_timer_get_due_in(&L->spawner) + uv_now(L->loop) <= due) return;
    uv_timer_start(&L->spawner, spawn_cb, delay_ms, 0);
}

/* ---- phases ------------------------------------------------------------ */

void runner_stop_now(struct load *L) { uv_timer_start(&L->phase_timer, phase_timer_cb, 0, 0); }

/* t_stop: nothing new starts; sessions stop on their own deadlines. */
static void phase_stop(struct load *L) {
    L->ph.stopping = 1;
    uv_timer_stop(&L->spawner);
    L->sc->driver->stop(L);
    runner_maybe_finish(L);
}

/* t_hard: whatever is still open is cut. */
static void phase_cut(struct load *L) {
    L->ph.hard = 1;
    L->sc->driver->cut(L);
}

static void phase_timer_cb(uv_timer_t *t) {
    struct load *L = t->data;
    struct load_phase *ph = &L->ph;
    uint64_t now = util_now_ns();
    if (!ph->stopping) {
        int all_gone = L->sc->driver->all_gone(L);
        if (now + 500000 < ph->t_stop && !all_gone) {
            uv_timer_start(&L->phase_timer, phase_timer_cb, (ph->t_stop - now) / 1000000 + 1, 0);
            return;
        }
        phase_stop(L);
        if (ph->finishing) return;
        uv_timer_start(&L->phase_timer, phase_timer_cb, (ph->t_hard - now) / 1000000 + 1, 0);
        return;
    }
    if (!ph->hard) phase_cut(L);
}

static void close_all_and_quit(struct load *L) {
    L->done = 1;
    L->sc->driver->close(L);
    uv_close((uv_handle_t *)&L->tick, NULL);
    uv_close((uv_handle_t *)&L->spawner, NULL);
    uv_close((uv_handle_t *)&L->phase_timer, NULL);
    uv_close((uv_handle_t *)&L->sigint, NULL);
    srvmetrics_sampler_close(&L->sampler);
}

unsigned runner_capacity_next(struct load *L, struct loadstat_run *r) {
    loadstat_result_add_step(&L->res, r);
    if (r->held) L->res.capacity_sessions = r->sessions_target;
    unsigned next = L->ph.target + L->cfg->o.capacity_step;
    return r->held && next <= L->cfg->o.capacity_max ? next : 0;
}

static void phase_finish_cb(uv_timer_t *t) {
    struct load *L = t->data;
    struct load_phase *ph = &L->ph;
    struct loadstat_run *r = &ph->run;
    const struct scenario *sc = L->sc;
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    uv_timer_stop(&L->phase_timer);
    srvmetrics_sampler_stop(&L->sampler);
    r->sessions_target = ph->target;
    uint64_t now = util_now_ns();
    r->wall_s = (double)(now - ph->t_start) / 1e9;
    r->stream_s = (double)((ph->t_stop < now ? ph->t_stop : now) - ph->t_start) / 1e9;
    r->client_cpu_s = rusage_cpu(&ru1) - rusage_cpu(&ph->ru0);
    r->client_cpu_pct = r->wall_s >= 0.1 ? 100.0 * r->client_cpu_s / r->wall_s : 0;   /* too short to say */
    r->chunk_rate = r->stream_s > 0 ? (double)r->chunks_sent / r->stream_s : 0;
    r->answer_rate = r->stream_s > 0 ? (double)(sc->driver->rest ? r->requests : r->answers) / r->stream_s : 0;
    loadstat_hist_summary(&ph->lat, &r->latency);
    loadstat_hist_summary(&ph->added, &r->added);
    int steady = 0;
    srvmetrics_fetch_settled(&L->cfg->t, &r->server_before, &r->server_after, &r->server_settle_s, &steady);
    r->server_unsettled = r->server_before.ok && r->server_after.ok && !steady;
    loadstat_run_peak(r, &r->server_after);
    if (sc->phase_end) sc->phase_end(L, r);
    loadstat_hist_merge(&L->all_lat, &ph->lat);
    loadstat_hist_merge(&L->all_added, &ph->added);
    loadstat_run_merge(&L->res.total, r);
    unsigned next = sc->next_phase ? sc->next_phase(L, r) : 0;
    if (next && !L->interrupted) {
        phase_start(L, next);
        return;
    }
    loadstat_hist_summary(&L->all_lat, &L->res.total.latency);
    loadstat_hist_summary(&L->all_added, &L->res.total.added);
    if (sc->run_end) sc->run_end(L);
    close_all_and_quit(L);
}

void runner_maybe_finish(struct load *L) {
    struct load_phase *ph = &L->ph;
    if (!ph->stopping || ph->open > 0 || ph->finishing || L->done) return;
    ph->finishing = 1;
    uv_timer_start(&L->phase_timer, phase_finish_cb, 0, 0);
}

/* Seconds from a phase's start to its t_stop: ramp up, duration at full
 * strength, ramp down (churn: sessions come and go throughout; no ramp:
 * the duration alone), unless the scenario says otherwise. */
static double phase_len(const struct load *L) {
    const struct load_cfg *cfg = L->cfg;
    if (L->sc->phase_len) return L->sc->phase_len(L);
    double ramp = L->sc->flags & SCF_NO_RAMP ? 0 : L->sc->flags & SCF_CHURN ? cfg->o.ramp_s : 2 * cfg->o.ramp_s;
    return ramp + cfg->o.duration_s;
}

static void phase_start(struct load *L, unsigned target) {
    struct load_phase *ph = &L->ph;
    memset(ph, 0, sizeof *ph);
    ph->target = target;
    L->tick_chunks = L->tick_answers = 0;   /* the phase's counters start from 0 */
    srvmetrics_fetch(&L->cfg->t, &ph->run.server_before);
    loadstat_run_peak(&ph->run, &ph->run.server_before);
    srvmetrics_sampler_start(&L->sampler, L->cfg->o.sample_s);
    getrusage(RUSAGE_SELF, &ph->ru0);
    ph->t_start = util_now_ns();
    ph->run.start_s = (double)(ph->t_start - L->run_t0) / 1e9;
    double len = phase_len(L);
    ph->t_stop = ph->t_start + (uint64_t)(len * 1e9);
    ph->t_hard = ph->t_stop + (uint64_t)(L->cfg->o.grace_s * 1e9);
    if (!L->cfg->quiet && L->sc->next_phase)
        fprintf(stderr, "asrd-load: %s step: %u sessions for %.1f s\n", L->sc->name, target, len);
    uv_timer_start(&L->phase_timer, phase_timer_cb, (uint64_t)(len * 1000) + 1, 0);
    L->sc->driver->phase_start(L);
}

/* ---- progress ---------------------------------------------------------- */

static void tick_cb(uv_timer_t *t) {
    struct load *L = t->data;
    uint64_t now = util_now_ns();
    struct load_phase *ph = &L->ph;
    if (ph->finishing || L->done) return;
    unsigned stalled_now = 0;
    unsigned active = L->sc->driver->tick(L, now, &stalled_now);
    struct loadstat_run *r = &ph->run;
    uint64_t answers = L->sc->driver->rest ? r->requests : r->answers;
    uint64_t d_chunks = r->chunks_sent - L->tick_chunks, d_ans = answers - L->tick_answers;
    L->tick_chunks = r->chunks_sent;
    L->tick_answers = answers;
    struct loadstat_point pt = {
        .t_s = (double)(now - L->run_t0) / 1e9,
        .sessions = active,
        .answers = L->interval.count,
        .p50_ms = (double)loadstat_hist_percentile(&L->interval, 50) / 1000.0,
        .p90_ms = (double)loadstat_hist_percentile(&L->interval, 90) / 1000.0,
        .p99_ms = (double)loadstat_hist_percentile(&L->interval, 99) / 1000.0,
    };
    /* The server's RSS and fds from a sample of the last 2.5 s, if any. */
    int fresh = L->last_sample.ok && now - L->last_sample_ns < 2500000000ull;
    if (fresh) {
        pt.rss_bytes = L->last_sample.rss_bytes;
        pt.open_fds = L->last_sample.open_fds;
        pt.loop_util = L->last_sample.loop_utilization;
    }
    loadstat_result_add_point(&L->res, &pt);
    loadstat_hist_reset(&L->interval);
    report_progress(L, &pt, d_chunks, d_ans, stalled_now, fresh);
}

static void on_sample(void *arg, const struct loadstat_server *snap) {
    struct load *L = arg;
    L->last_sample = *snap;
    L->last_sample_ns = util_now_ns();
    L->ph.run.server_samples++;
    loadstat_run_peak(&L->ph.run, snap);
    if (L->sc->on_sample) L->sc->on_sample(L, snap);
}

static void sigint_cb(uv_signal_t *h, int sig) {
    struct load *L = h->data;
    L->interrupted++;
    if (L->ph.finishing || L->done) return;
    uint64_t now = util_now_ns();
    if (L->interrupted == 1) {
        fprintf(stderr, "asrd-load: interrupted, stopping sessions (^C again to cut)\n");
        L->ph.t_stop = now;
        L->sc->driver->interrupt(L, now);
        if (!L->ph.stopping) {
            L->ph.t_hard = now + (uint64_t)(L->cfg->o.grace_s * 1e9);
            uv_timer_start(&L->phase_timer, phase_timer_cb, 0, 0);
        }
    } else if (!L->ph.hard && !L->ph.finishing) {
        phase_cut(L);
    }
}

/* ---- the run ----------------------------------------------------------- */

void runner_init(struct load *L, uv_loop_t *loop, const struct load_cfg *cfg, const struct clips *clips) {
    memset(L, 0, sizeof *L);
    L->loop = loop;
    L->cfg = cfg;
    L->sc = cfg->sc;
    L->clips = clips;
    loadstat_result_init(&L->res);
    L->res.opts = cfg->o;
    uv_timer_init(loop, &L->tick);
    uv_timer_init(loop, &L->spawner);
    uv_timer_init(loop, &L->phase_timer);
    uv_signal_init(loop, &L->sigint);
    L->tick.data = L->spawner.data = L->phase_timer.data = L->sigint.data = L;
    srvmetrics_sampler_init(&L->sampler, loop, &cfg->t, on_sample, L);
    uv_signal_start(&L->sigint, sigint_cb, SIGINT);
    L->sc->driver->init(L);
    if (L->sc->init) L->sc->init(L);
}

void runner_run(struct load *L) {
    const struct scenario *sc = L->sc;
    L->run_t0 = util_now_ns();
    uv_timer_start(&L->tick, tick_cb, 1000, 1000);
    phase_start(L, sc->first_target ? sc->first_target(L->cfg) : L->cfg->o.sessions);
    uv_run(L->loop, UV_RUN_DEFAULT);
}

void runner_cleanup(struct load *L) {
    if (L->sc->cleanup) L->sc->cleanup(L);
    L->sc->driver->cleanup(L);
    loadstat_result_cleanup(&L->res);
}
