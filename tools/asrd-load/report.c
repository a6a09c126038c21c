/* What asrd-load prints and writes (report.h). */
#define _GNU_SOURCE
#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "opts.h"
#include "runner.h"
#include "scenario.h"
#include "wsclient.h"

/* ---- progress ---------------------------------------------------------- */

void report_progress(const struct load *L, const struct loadstat_point *pt, uint64_t d_chunks, uint64_t d_answers,
                     unsigned stalled, int fresh) {
    if (L->cfg->quiet) return;
    const struct load_phase *ph = &L->ph;
    const struct loadstat_run *r = &ph->run;
    uint64_t errs = loadstat_counts_sum(&r->errors) + r->request_failures;
    char srv[64] = "";
    if (fresh)
        snprintf(srv, sizeof srv, "  server rss %.1f MB fds %llu loop %.0f%%", (double)pt->rss_bytes / 1048576.0,
                 (unsigned long long)pt->open_fds, pt->loop_util * 100);
    if (L->sc->driver->rest)
        fprintf(stderr, "[%6.1fs] clients %u  req/s %llu  p99 %.1f ms  failures %llu  connect-fail %llu%s\n", pt->t_s,
                pt->sessions, (unsigned long long)d_answers, (double)loadstat_hist_percentile(&ph->lat, 99) / 1000.0,
                (unsigned long long)errs, (unsigned long long)r->connect_failures, srv);
    else
        fprintf(stderr,
                "[%6.1fs] open %u  chunks/s %llu  answers/s %llu  p99 %.1f ms (added %.1f)  errors %llu  "
                "connect-fail %llu  stalled %u%s%s\n",
                pt->t_s, pt->sessions, (unsigned long long)d_chunks, (unsigned long long)d_answers,
                (double)loadstat_hist_percentile(&ph->lat, 99) / 1000.0,
                (double)loadstat_hist_percentile(&ph->added, 99) / 1000.0, (unsigned long long)errs,
                (unsigned long long)r->connect_failures, stalled, srv, ph->stopping ? "  (stopping)" : "");
}

/* ---- helpers ----------------------------------------------------------- */

void report_counts(const char *label, const struct loadstat_counts *c) {
    printf("%-14s", label);
    if (!c->len) printf("none");
    for (size_t i = 0; i < c->len; i++) printf("%s%s %llu", i ? ", " : "", c->v[i].name, (unsigned long long)c->v[i].n);
    printf("\n");
}

void report_pct(const char *label, const struct loadstat_pct *p) {
    printf("%-14sp50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f  (n=%llu)\n", label, p->p50, p->p90,
           p->p99, p->p999, p->max, p->mean, (unsigned long long)p->count);
}

unsigned long long report_dlt(uint64_t before, uint64_t after) {
    return after > before ? (unsigned long long)(after - before) : 0;
}

/* ---- the drivers' parts ------------------------------------------------ */

void report_rest(const struct load *L, const struct loadstat_run *t) {
    printf("%-14sclients %u  requests %llu (%.1f/s)  failures %llu  connect failures %llu\n", "requests",
           L->cfg->o.rest_concurrency, (unsigned long long)t->requests, t->answer_rate,
           (unsigned long long)t->request_failures, (unsigned long long)t->connect_failures);
    report_counts("http status", &t->http_status);
    if (t->request_errors.len) report_counts("no response", &t->request_errors);
    report_pct("latency ms", &t->latency);
}

void report_streams(const struct load *L, const struct loadstat_run *t) {
    printf("%-14starget %u  opened %llu  completed %llu  connect failures %llu\n", "sessions", t->sessions_target,
           (unsigned long long)t->sessions_opened, (unsigned long long)t->sessions_completed,
           (unsigned long long)t->connect_failures);
    if (t->connect_errors.len) report_counts("connect errs", &t->connect_errors);
    printf("%-14ssent %llu (%.1f/s)  skipped (client late) %llu  held back (socket full) %llu\n", "chunks",
           (unsigned long long)t->chunks_sent, t->chunk_rate, (unsigned long long)t->chunks_skipped,
           (unsigned long long)t->chunks_blocked);
    printf("%-14s%llu (%.1f/s)  missing %llu  out of order %llu  unmatched %llu  finals %llu\n", "answers",
           (unsigned long long)t->answers, t->answer_rate, (unsigned long long)t->missing,
           (unsigned long long)t->out_of_order, (unsigned long long)t->unmatched, (unsigned long long)t->finals);
    if (t->sessions_stalled)
        printf("%-14s%llu sessions had > %u KiB unsent (the server stopped reading them)\n", "stalled",
               (unsigned long long)t->sessions_stalled, SESS_STALL_BYTES >> 10);
    report_pct("latency ms", &t->latency);
    report_pct("added ms", &t->added);
    report_counts("errors", &t->errors);
    report_counts("close codes", &t->close_codes);
}

/* ---- the server -------------------------------------------------------- */

static void print_pool(const struct loadstat_run *r) {
    const struct loadstat_server *a = &r->server_before, *b = &r->server_after;
    if (!a->pool_threads && !b->pool_threads) return;
    unsigned long long audio = report_dlt(a->pool_audio_ms, b->pool_audio_ms);
    double rtf = audio ? (double)report_dlt(a->pool_busy_ms, b->pool_busy_ms) / (double)audio : 0;
    printf("%-14spool threads %llu  busy peak %llu  queued peak %llu  real_time_factor %.3f over the run "
           "(server %.3f)  windows skipped +%llu  refused +%llu\n", "",
           (unsigned long long)b->pool_threads, (unsigned long long)r->server_pool_busy_peak,
           (unsigned long long)r->server_pool_queued_peak, rtf, b->pool_rtf,
           report_dlt(a->windows_skipped, b->windows_skipped), report_dlt(a->pool_refused, b->pool_refused));
}

static void print_server(const struct load *L, const struct loadstat_run *r) {
    const struct loadstat_server *a = &r->server_before, *b = &r->server_after;
    if (!a->ok || !b->ok) {
        printf("%-14s/v1/metrics unavailable%s\n", "server", a->ok || b->ok ? " (before or after)" : "");
        return;
    }
    printf("%-14ssessions.total +%llu  chunks.total +%llu  partials.total +%llu (dropped +%llu)  finals.total +%llu\n",
           "server", report_dlt(a->sessions_total, b->sessions_total), report_dlt(a->chunks_total, b->chunks_total),
           report_dlt(a->partials_total, b->partials_total), report_dlt(a->partials_dropped, b->partials_dropped),
           report_dlt(a->finals_total, b->finals_total));
    struct loadstat_counts cc, rs;
    loadstat_counts_delta(&cc, &b->close_codes, &a->close_codes);
    loadstat_counts_delta(&rs, &b->rest_status, &a->rest_status);
    printf("%-14serrors +%llu  slow_client closes +%llu  policy closes +%llu  close codes", "",
           report_dlt(a->errors_total, b->errors_total), report_dlt(a->slow_client_closes, b->slow_client_closes),
           report_dlt(a->policy_closes, b->policy_closes));
    if (!cc.len) printf(" none");
    for (size_t i = 0; i < cc.len; i++) printf("%s %s +%llu", i ? "," : "", cc.v[i].name, (unsigned long long)cc.v[i].n);
    if (rs.len) {
        printf("  transcribe");
        for (size_t i = 0; i < rs.len; i++)
            printf("%s %s +%llu", i ? "," : "", rs.v[i].name, (unsigned long long)rs.v[i].n);
    }
    printf("\n");
    struct loadstat_counts ec, en;
    loadstat_counts_delta(&ec, &b->error_codes, &a->error_codes);
    loadstat_counts_delta(&en, &b->ended, &a->ended);
    if (ec.len || en.len) {
        printf("%-14s", "");
        if (ec.len) printf("errors by code");
        for (size_t i = 0; i < ec.len; i++)
            printf("%s %s +%llu", i ? "," : "", ec.v[i].name, (unsigned long long)ec.v[i].n);
        if (en.len) printf("%ssessions ended", ec.len ? "  " : "");
        for (size_t i = 0; i < en.len; i++)
            printf("%s %s +%llu", i ? "," : "", en.v[i].name, (unsigned long long)en.v[i].n);
        printf("\n");
    }
    printf("%-14srss %.1f MB -> %.1f MB (peak %.1f MB)  open fds %llu -> %llu (peak %llu)  %llu samples during the run\n",
           "", (double)a->rss_bytes / 1048576.0, (double)b->rss_bytes / 1048576.0,
           (double)r->server_rss_peak / 1048576.0, (unsigned long long)a->open_fds, (unsigned long long)b->open_fds,
           (unsigned long long)r->server_fds_peak, (unsigned long long)r->server_samples);
    printf("%-14s\"after\" read once the server settled: waited %.1f s%s\n", "", r->server_settle_s,
           r->server_unsettled ? ", its open fds still changing (read anyway)" : " (open fds steady)");
    printf("%-14ssessions.active %llu -> %llu  connections.active %llu -> %llu  chunk p99 (server) %.2f ms", "",
           (unsigned long long)a->sessions_active, (unsigned long long)b->sessions_active,
           (unsigned long long)a->connections_active, (unsigned long long)b->connections_active, b->chunk_p99_ms);
    if (b->workers > 1) printf("  (%llu workers)", (unsigned long long)b->workers);
    printf("\n%-14sloop utilization peak %.0f %% (busiest worker, per second)\n", "", r->server_loop_util_peak * 100);
    print_pool(r);
    /* The counts both sides keep, side by side (see loadstat_agreement). */
    struct loadstat_check ck[2 * LOADSTAT_MAX_NAMES + 8];
    size_t n = loadstat_agreement(r, L->sc->driver->rest, ck, sizeof ck / sizeof ck[0]);
    size_t bad = 0;
    printf("%-14s", "client/server");
    for (size_t i = 0; i < n; i++) {
        printf("%s%s %llu/%llu%s", i ? "  " : "", ck[i].name, (unsigned long long)ck[i].client,
               (unsigned long long)ck[i].server, ck[i].client == ck[i].server ? "" : " (differs)");
        if (ck[i].client != ck[i].server) bad++;
    }
    printf("\n");
    if (bad)
        printf("%-14s%zu count(s) differ: other clients on this server, sessions cut at the end, or slow readers "
               "closed 1008 (their queued partials are discarded uncounted)\n", "", bad);
}

void report_print(const struct load *L) {
    const struct loadstat_opts *o = &L->cfg->o;
    const struct loadstat_run *t = &L->res.total;
    printf("\nasrd-load %s  %s  mode %s  chunk %u ms  duration %.1f s  ramp %.1f s\n", o->scenario, o->url, o->mode,
           o->chunk_ms, o->duration_s, o->ramp_s);
    if (L->sc->report_head) L->sc->report_head(L);
    else printf("\n");
    L->sc->driver->report(L, t);
    if (L->sc->report_body) L->sc->report_body(L, t);
    printf("%-14s%.2f s CPU over %.1f s wall (%.1f %% of one core); %.1f s of streaming\n", "client",
           t->client_cpu_s, t->wall_s, t->client_cpu_pct, t->stream_s);
    if (L->res.n_steps) {
        /* Several phases: the server from before the first to after the last. */
        struct loadstat_run both = *t;
        const struct loadstat_run *last = &L->res.steps[L->res.n_steps - 1];
        both.server_before = L->res.steps[0].server_before;
        both.server_after = last->server_after;
        both.server_settle_s = last->server_settle_s;
        both.server_unsettled = last->server_unsettled;
        print_server(L, &both);
    } else {
        print_server(L, t);
    }
}

/* ---- files ------------------------------------------------------------- */

static int write_file(const char *path, const struct buf *b) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "asrd-load: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t w = fwrite(b->data, 1, b->len, f);
    int rc = fclose(f);
    if (w != b->len || rc != 0) {
        fprintf(stderr, "asrd-load: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

int report_write_outputs(const struct load *L) {
    int rc = 0;
    if (L->cfg->json_out[0]) {
        struct buf b;
        buf_init(&b, 0);
        json_t *doc = loadstat_result_json(&L->res);
        if (!doc || (L->sc->json && L->sc->json(L, doc) != 0) || loadstat_json_dump(doc, &b) != 0 ||
            write_file(L->cfg->json_out, &b) != 0)
            rc = 1;
        json_decref(doc);
        buf_cleanup(&b);
    }
    if (L->cfg->svg_out[0]) {
        struct buf b;
        buf_init(&b, 0);
        if (loadstat_svg(&L->res, &b) != 0 || write_file(L->cfg->svg_out, &b) != 0) rc = 1;
        buf_cleanup(&b);
    }
    if (L->sc->write_files && L->sc->write_files(L) != 0) rc = 1;
    return rc;
}
