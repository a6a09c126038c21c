/* The streaming scenarios on the looped clip (docs/LOAD.md "Scenarios"):
 * sustained, ramp, slow-readers, flood and churn. They differ in how
 * sessions start and stop and in the roles of some slots, which the
 * streams driver handles by the scenario's flags; here are their entries
 * and the report sections of the roles. */
#include <stdio.h>

#include "opts.h"
#include "report.h"
#include "runner.h"
#include "scenario.h"
#include "streams.h"

/* The slow readers apart, and the normal sessions beside them. */
static void report_slow(const struct load *L, const struct loadstat_run *t) {
    printf("%-14s%llu slow sessions sent %llu chunks and got %llu answers, late (not measured); %llu closed "
           "by the server (write error, EOF or 1008)\n", "slow readers", (unsigned long long)t->slow_sessions,
           (unsigned long long)t->slow_chunks, (unsigned long long)t->slow_answers,
           (unsigned long long)t->slow_closed);
    if (t->server_before.ok && t->server_after.ok)
        printf("%-14sthe server ended %llu sessions as slow_client and sent close_codes.1008 +%llu\n", "",
               report_dlt(t->server_before.slow_client_closes, t->server_after.slow_client_closes),
               report_dlt(loadstat_counts_get(&t->server_before.close_codes, "1008"),
                          loadstat_counts_get(&t->server_after.close_codes, "1008")));
    report_counts("  close codes", &t->slow_close_codes);
}

static void report_normal(const struct loadstat_run *t) {
    printf("%-14s%llu sessions sent %llu chunks: %llu answered (timed above), missing %llu, errors %llu, "
           "%llu completed (final + 1000)\n", "normal", (unsigned long long)t->normal_sessions,
           (unsigned long long)t->normal_chunks, (unsigned long long)t->answers,
           (unsigned long long)t->missing, (unsigned long long)t->normal_errors,
           (unsigned long long)t->normal_completed);
}

static void report_body_slow(const struct load *L, const struct loadstat_run *t) {
    report_slow(L, t);
    report_normal(t);
}

static void report_body_flood(const struct load *L, const struct loadstat_run *t) {
    printf("%-14s%llu sessions at %.1fx real time sent %llu chunks: %llu answered (%llu partials), "
           "missing %llu; %llu ended by the server before `stop`\n", "flooders",
           (unsigned long long)t->flood_sessions, L->cfg->o.flood_factor, (unsigned long long)t->flood_chunks,
           (unsigned long long)t->flood_answers, (unsigned long long)t->flood_partials,
           (unsigned long long)t->flood_missing, (unsigned long long)t->flood_closed);
    report_counts("  errors", &t->flood_errors);
    report_counts("  close codes", &t->flood_close_codes);
    report_normal(t);
}

/* N sessions, all started at once (or over --ramp), for D s. */
const struct scenario sc_sustained = {
    .name = "sustained",
    .driver = &streams_driver,
};

/* The same with sessions started evenly over R s (default 10). */
const struct scenario sc_ramp = {
    .name = "ramp",
    .driver = &streams_driver,
    .ramp_default_s = 10,
};

/* Some sessions stop reading after `session` and keep sending. */
const struct scenario sc_slow_readers = {
    .name = "slow-readers",
    .flags = SCF_SLOW,
    .driver = &streams_driver,
    .report_body = report_body_slow,
};

/* Some sessions send their chunks flood_factor times as often. */
const struct scenario sc_flood = {
    .name = "flood",
    .flags = SCF_FLOOD,
    .driver = &streams_driver,
    .report_body = report_body_flood,
};

/* A population of sessions with random lives, refilled as they end (or
 * started at a fixed rate). */
const struct scenario sc_churn = {
    .name = "churn",
    .flags = SCF_CHURN,
    .driver = &streams_driver,
};
