/* The capacity search on the looped clip (docs/LOAD.md "Scenarios",
 * capacity): phases of capacity-start, +capacity-step, ... sessions, each a
 * fresh sustained phase, until a step does not hold; the last step that
 * held is the capacity. */
#include <stdio.h>

#include "opts.h"
#include "runner.h"
#include "scenario.h"
#include "streams.h"

/* Does a step hold? Sets r->held and r->verdict. */
static void judge_step(const struct load *L, struct loadstat_run *r) {
    const struct loadstat_opts *o = &L->cfg->o;
    r->held = 0;
    uint64_t errs = loadstat_counts_sum(&r->errors);
    if (r->connect_failures + errs + r->missing > o->max_errors)
        snprintf(r->verdict, sizeof r->verdict, "%llu connect failures + %llu errors + %llu missing > %u",
                 (unsigned long long)r->connect_failures, (unsigned long long)errs, (unsigned long long)r->missing,
                 o->max_errors);
    else if (r->chunks_skipped)
        snprintf(r->verdict, sizeof r->verdict, "client saturated: %llu chunks skipped",
                 (unsigned long long)r->chunks_skipped);
    else if (r->sessions_stalled)
        snprintf(r->verdict, sizeof r->verdict, "%llu sessions stalled (server not reading)",
                 (unsigned long long)r->sessions_stalled);
    else if (r->added.p99 > o->p99_threshold_ms)
        snprintf(r->verdict, sizeof r->verdict, "p99 added %.2f ms > %.2f ms", r->added.p99, o->p99_threshold_ms);
    else if (r->sessions_opened < r->sessions_target)
        snprintf(r->verdict, sizeof r->verdict, "only %llu of %u sessions opened",
                 (unsigned long long)r->sessions_opened, r->sessions_target);
    else {
        r->held = 1;
        snprintf(r->verdict, sizeof r->verdict, "held");
    }
}

static unsigned next_phase(struct load *L, struct loadstat_run *r) {
    judge_step(L, r);
    unsigned next = runner_capacity_next(L, r);
    if (!L->cfg->quiet)
        fprintf(stderr, "asrd-load: step %u sessions: p50 added %.2f ms, p99 added %.2f ms, errors %llu, missing %llu: %s\n",
                r->sessions_target, r->added.p50, r->added.p99, (unsigned long long)loadstat_counts_sum(&r->errors),
                (unsigned long long)r->missing, r->verdict);
    return next;
}

static void report_head(const struct load *L) {
    const struct loadstat_result *res = &L->res;
    const struct loadstat_opts *o = &L->cfg->o;
    printf("\n%8s %8s %9s %9s %9s %9s %7s %7s %6s %8s %7s  %s\n", "sessions", "opened", "chunks/s", "p50 add",
           "p99 add", "p99.9 add", "errors", "missing", "fail", "cpu %", "loop %", "verdict");
    for (size_t i = 0; i < res->n_steps; i++) {
        const struct loadstat_run *r = &res->steps[i];
        printf("%8u %8llu %9.1f %9.2f %9.2f %9.2f %7llu %7llu %6llu %8.1f %7.0f  %s\n", r->sessions_target,
               (unsigned long long)r->sessions_opened, r->chunk_rate, r->added.p50, r->added.p99, r->added.p999,
               (unsigned long long)loadstat_counts_sum(&r->errors), (unsigned long long)r->missing,
               (unsigned long long)r->connect_failures, r->client_cpu_pct, r->server_loop_util_peak * 100,
               r->verdict);
    }
    printf("\ncapacity      %u sessions held (p99 added <= %.2f ms, connect failures + errors + missing <= %u)%s\n\n",
           res->capacity_sessions, o->p99_threshold_ms, o->max_errors,
           res->n_steps && res->steps[res->n_steps - 1].held ? "; the largest step asked for held, "
                                                               "raise --capacity-max to find the limit" : "");
    printf("all steps:\n");
}

static void configure(struct load_cfg *cfg) {
    if (cfg->o.capacity_start > cfg->o.capacity_max) opts_die("--capacity-start is above --capacity-max");
}

static unsigned first_target(const struct load_cfg *cfg) { return cfg->o.capacity_start; }
static unsigned max_target(const struct load_cfg *cfg) { return cfg->o.capacity_max; }

const struct scenario sc_capacity = {
    .name = "capacity",
    .driver = &streams_driver,
    .configure = configure,
    .first_target = first_target,
    .max_target = max_target,
    .next_phase = next_phase,
    .report_head = report_head,
};
