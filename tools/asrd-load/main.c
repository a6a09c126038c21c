/* asrd-load: load generator for asrd (docs/LOAD.md).
 *
 * The wiring: options (opts.h), audio (clips.h), the run (runner.h) of the
 * chosen scenario (scenario.h) on its driver (streams.h, rest.h), and the
 * report (report.h); the jobs scenario has its own options and run (jobs.h).
 * Only loopback targets are accepted. */
#define _GNU_SOURCE
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/resource.h>
#include <uv.h>

#include "clips.h"
#include "jobs.h"
#include "opts.h"
#include "report.h"
#include "runner.h"

static struct load L;                   /* large (histograms): static */

/* Raises the soft RLIMIT_NOFILE to the hard limit; when even the hard
 * limit is below what the run needs (one descriptor per session or rest
 * client, plus a few for the loop, the metrics fetch and stdio), tries to
 * raise it too (allowed to root, up to fs.nr_open). Warns when the result
 * is still short: sessions past it fail to connect with EMFILE (counted as
 * connect failures). */
static void raise_nofile(const struct load_cfg *cfg) {
    struct rlimit rl;
    rlim_t need = (rlim_t)opts_max_target(cfg) + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && rl.rlim_max == RLIM_INFINITY) {
            rl.rlim_cur = need;   /* an infinite hard limit: ask for what is needed */
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        fprintf(stderr, "asrd-load: warning: RLIMIT_NOFILE is %llu (hard %llu), below the %llu this run needs\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, (unsigned long long)need);
}

int main(int argc, char **argv) {
    if (jobs_scenario_wanted(argc, argv)) return jobs_scenario_main(argc, argv); /* jobs.c */
    struct load_cfg cfg;
    struct clips clips;
    opts_parse(&cfg, argc, argv);
    if (sodium_init() < 0) opts_die("libsodium failed to initialise");
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(&cfg);
    clips_load(&clips, &cfg);

    uv_loop_t *loop = uv_default_loop();
    runner_init(&L, loop, &cfg, &clips);
    if (!cfg.quiet) {
        double audio_s = 0;
        for (size_t i = 0; i < clips.n; i++) audio_s += (double)clips.v[i].nchunks * cfg.o.chunk_ms / 1000.0;
        fprintf(stderr, "asrd-load: %s against %s (%s, %u ms chunks, audio %.1f s", cfg.o.scenario, cfg.o.url,
                cfg.o.mode, cfg.o.chunk_ms, audio_s);
        if (clips.n > 1) fprintf(stderr, " in %zu files", clips.n);
        fprintf(stderr, ")\n");
    }
    runner_run(&L);

    report_print(&L);
    int rc = report_write_outputs(&L);
    if (L.res.total.sessions_opened == 0 && L.res.total.requests == 0) {
        fprintf(stderr, "asrd-load: nothing connected (is asrd listening on %s?)\n", cfg.t.host);
        rc = 1;
    }

    uv_loop_close(loop);
    runner_cleanup(&L);
    clips_cleanup(&clips);
    opts_cleanup(&cfg);
    return rc;
}
