/* scenario: what a scenario of asrd-load is (docs/LOAD.md "Scenarios"), and
 * the table of them.
 *
 * A run is one or more phases (runner.h). A scenario says which *driver*
 * runs the connections of a phase (the WebSocket streams of streams.h, the
 * REST uploads of rest.h, or one of its own), how many it holds, and,
 * through optional hooks, what it measures beyond the driver's counts, when
 * the run goes on to another phase (a capacity search), and what it adds to
 * the report and to the JSON result.
 *
 * Adding a scenario: a file (tools/asrd-load/<name>.c, built by the
 * Makefile's wildcard) that defines `const struct scenario sc_<name>`, and
 * one line X(<name>) in SCENARIO_TABLE (scenario.c). A new kind of client
 * brings its own struct load_driver in the same file; a hook left NULL does
 * the default written beside it. */
#ifndef ASRD_LOAD_SCENARIO_H
#define ASRD_LOAD_SCENARIO_H

#include <stdint.h>

struct load;
struct load_cfg;
struct loadstat_run;
struct loadstat_server;
struct stream_hooks;
struct json_t;

/* Runs the connections of a phase. Every hook is required. */
struct load_driver {
    const char *name;
    int  rest;                          /* counts HTTP requests, not chunks (agreement, progress, report) */
    /* Allocates the driver's state for the run (L->drv); cleanup frees it. */
    void (*init)(struct load *L);
    void (*cleanup)(struct load *L);
    /* A phase of L->ph.target starts: start what starts at once, or kick
     * the spawner (runner_spawn_kick). */
    void (*phase_start)(struct load *L);
    /* The spawner's wake-up: start what is due, re-arm for what is next. */
    void (*spawn)(struct load *L);
    /* The phase's t_stop: nothing new starts (what runs ends by itself). */
    void (*stop)(struct load *L);
    /* The phase's t_hard, or a second ^C: end everything still open now. */
    void (*cut)(struct load *L);
    /* 1 when everything the phase started has ended before t_stop (the
     * phase then stops at once). */
    int  (*all_gone)(struct load *L);
    /* Once a second: timeouts of single connections and stalls. Returns the
     * connections active now (streaming sessions, rest clients) and sets
     * *stalled to those whose server stopped reading. */
    unsigned (*tick)(struct load *L, uint64_t now_ns, unsigned *stalled);
    /* The first ^C: let everything end gracefully now. */
    void (*interrupt)(struct load *L, uint64_t now_ns);
    /* The run is over: close the driver's handles (the loop then ends). */
    void (*close)(struct load *L);
    /* stdout: the driver's part of the report (connections, answers,
     * latency, errors) for r, the whole run. */
    void (*report)(const struct load *L, const struct loadstat_run *r);
};

enum {
    SCF_SLOW   = 1u << 0,               /* takes --slow-sessions: some sessions never read */
    SCF_FLOOD  = 1u << 1,               /* takes --flood-*: some sessions send faster than real time */
    SCF_CHURN  = 1u << 2,               /* takes --churn-rate: sessions come and go, slots refilled */
    SCF_SPEECH = 1u << 3,               /* real audio: several --wav, --hyp, --final-p95-threshold-ms, --gap-ms */
    SCF_NO_RAMP = 1u << 4,              /* a phase is --duration alone (no ramp up or down) */
};

struct scenario {
    const char *name;                   /* --scenario NAME (at most 15 bytes) */
    unsigned flags;                     /* SCF_* */
    const struct load_driver *driver;
    const struct stream_hooks *stream;  /* streams_driver: what its sessions send and read; NULL = the looped clip */
    double ramp_default_s;              /* --ramp when not given; > 0 makes a ramp mandatory */
    /* After parsing: check and derive the scenario's options (opts_die on
     * a usage error). NULL: nothing to check. */
    void (*configure)(struct load_cfg *cfg);
    /* Sessions (or clients) of the first phase; NULL: --sessions. */
    unsigned (*first_target)(const struct load_cfg *cfg);
    /* ... of the largest phase; NULL: first_target's. */
    unsigned (*max_target)(const struct load_cfg *cfg);
    /* Seconds from a phase's start to its t_stop; NULL: 2 R + D (churn
     * R + D, SCF_NO_RAMP D). */
    double (*phase_len)(const struct load *L);
    /* The scenario's own state for the run (L->scn). */
    void (*init)(struct load *L);
    void (*cleanup)(struct load *L);
    /* Each /v1/metrics sample read during a phase. */
    void (*on_sample)(struct load *L, const struct loadstat_server *snap);
    /* A phase ended and r holds its figures (the server's "after" too):
     * add the scenario's own. Runs before r is merged into the total. */
    void (*phase_end)(struct load *L, struct loadstat_run *r);
    /* After the merge: the target of the next phase, 0 when the run ends
     * (a capacity search judges r here and records it as a step). */
    unsigned (*next_phase)(struct load *L, struct loadstat_run *r);
    /* The run ended: the total's own figures (percentiles merged). */
    void (*run_end)(struct load *L);
    /* stdout, before the totals (capacity: the steps), and after the
     * driver's part of the totals. */
    void (*report_head)(const struct load *L);
    void (*report_body)(const struct load *L, const struct loadstat_run *total);
    /* Adds the scenario's members to the JSON result (a jansson object).
     * Returns 0 or ASR_ENOMEM. */
    int  (*json)(const struct load *L, struct json_t *root);
    /* Writes the scenario's own output files. Returns 0 or -1 (reported). */
    int  (*write_files)(const struct load *L);
};

/* The scenario named name, or NULL. */
const struct scenario *scenario_find(const char *name);
/* "sustained|ramp|...": every name, in table order (static storage). */
const char *scenario_names(void);

#endif
