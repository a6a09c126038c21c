/* The real-audio scenarios (docs/LOAD.md "Real audio: speech and
 * speech-capacity"), for a real engine (pocketsphinx) or mock-windowed.
 *
 * Each session streams whole files at real time: session i starts with
 * file i mod F and plays the files in turn, each followed by --gap-ms of
 * silence so its utterance ends (endpointing) before the next begins. A
 * session streams ramp + duration seconds from its own start like the
 * others, but never stops inside a play: it finishes the play under way
 * (file and gap), then sends `stop`. So every session plays at least one
 * whole file, and a phase lasts up to one play longer.
 *
 * Measured per session and over the run (speechstat.h):
 *   - final latency: arrival of a `final` minus the send time of the chunk
 *     that carried its end_ms (the moment the last audio of the utterance
 *     was sent). It includes the endpointing silence the server waits for
 *     (ASR_ENDPOINTING_MS) and the decode of the whole utterance;
 *   - the server's partial latency_ms.total over every partial, and for
 *     the partials that carried a window (buffer > 0) their total and
 *     buffer; partials marked server_busy;
 *   - the finals' text per play (--hyp writes it for wer.py), and the
 *     inference pool's figures (engine.pool.*) from /v1/metrics.
 * speech-capacity raises the sessions step by step (the capacity options;
 * defaults 1, +1, up to 64) until the final latency p95 passes
 * --final-p95-threshold-ms, and reports the last step that held. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"
#include "clips.h"
#include "opts.h"
#include "report.h"
#include "runner.h"
#include "scenario.h"
#include "speechstat.h"
#include "streams.h"

struct speech_play {
    size_t   clip;                      /* index in L->clips */
    uint64_t start_ms;                  /* stream position of its first chunk */
    uint64_t speech_end_ms;             /* start_ms + the file's duration */
    uint64_t end_ms;                    /* start_ms + (its chunks + the gap's) * chunk_ms: the next play's start */
    int      complete;                  /* all of it, file and gap, was sent */
    unsigned finals;                    /* finals with speech attributed to it (by their start_ms) */
    struct buf text;                    /* their text, joined by single spaces */
};

/* One session: live in its slot while it runs, then kept in the results. */
struct speech_sess {
    int      active;                    /* a session that got `session` runs in this slot */
    unsigned slot;
    unsigned step;                      /* sessions of its phase */
    uint64_t want_end;                  /* ns: the play under way at this time is its last */
    uint64_t *sent_ns;                  /* owned: send time of chunk seq at [seq - 1] */
    size_t   n_sent, cap_sent;
    struct speech_play *plays;          /* owned */
    size_t   n_plays, cap_plays;
    size_t   pos_chunk;                 /* chunk of the last play that goes out next */
    struct speechstat_series final_lat, part_total, win_total, win_buffer;
    uint64_t partials, server_busy, finals, empty_finals, unmatched_finals, errors;
    int      completed;                 /* got its finals and close 1000 */
};

/* Figures of a phase or of the whole run, as they accumulate. */
struct speech_fig {
    struct speechstat_series final_lat, part_total, win_total, win_buffer;
    uint64_t sessions, plays, plays_complete, plays_no_final;
    uint64_t partials, server_busy, finals, empty_finals, unmatched_finals;
};

/* ... summarised, with the pool's figures: one per phase, and the run. */
struct speech_step {
    unsigned target;
    int      held;
    char     verdict[96];
    uint64_t sessions, plays, plays_complete, plays_no_final;
    uint64_t partials, server_busy, finals, empty_finals, unmatched_finals;
    struct speechstat_pct final_lat, part_total, win_total, win_buffer;
    uint64_t pool_threads, pool_busy_peak, pool_queued_peak, windows_skipped, pool_refused;
    double   rtf;                       /* pool busy_ms / audio_ms over the phase */
    double   rtf_server;                /* engine.pool.real_time_factor after it (since the server started) */
};

struct speech {
    struct speech_sess *live;           /* owned: one per slot */
    unsigned n_live;
    struct speech_sess *done;           /* owned: ended sessions, in the order they ended */
    size_t   n_done, cap_done;
    struct speech_fig phase, run;
    struct speech_step *steps;          /* owned: one per phase */
    size_t   n_steps;
    struct speech_step total;
    struct buf text;                    /* scratch: a message's text */
};

static struct speech *SP(const struct load *L) { return L->scn; }

static uint64_t gap_chunks(const struct load *L) {
    unsigned c = L->cfg->o.chunk_ms;
    return ((uint64_t)L->cfg->o.gap_ms + c - 1) / c;
}

static void play_start(const struct load *L, struct speech_sess *r, size_t clip, uint64_t start_ms) {
    if (r->n_plays == r->cap_plays) {
        r->cap_plays = r->cap_plays ? 2 * r->cap_plays : 4;
        r->plays = xrealloc(r->plays, r->cap_plays * sizeof *r->plays);
    }
    const struct clip *cl = &L->clips->v[clip];
    struct speech_play *p = &r->plays[r->n_plays++];
    memset(p, 0, sizeof *p);
    p->clip = clip;
    p->start_ms = start_ms;
    p->speech_end_ms = start_ms + cl->samples * 1000 / LOAD_SAMPLE_RATE;
    p->end_ms = start_ms + (cl->nchunks + gap_chunks(L)) * L->cfg->o.chunk_ms;
    buf_init(&p->text, 0);
    r->pos_chunk = 0;
}

static void sess_record_cleanup(struct speech_sess *r) {
    for (size_t i = 0; i < r->n_plays; i++) buf_cleanup(&r->plays[i].text);
    free(r->plays);
    free(r->sent_ns);
    speechstat_series_cleanup(&r->final_lat);
    speechstat_series_cleanup(&r->part_total);
    speechstat_series_cleanup(&r->win_total);
    speechstat_series_cleanup(&r->win_buffer);
    memset(r, 0, sizeof *r);
}

static void fig_cleanup(struct speech_fig *f) {
    speechstat_series_cleanup(&f->final_lat);
    speechstat_series_cleanup(&f->part_total);
    speechstat_series_cleanup(&f->win_total);
    speechstat_series_cleanup(&f->win_buffer);
    memset(f, 0, sizeof *f);
}

/* ---- the stream hooks -------------------------------------------------- */

static void on_open(struct load *L, struct sess *s, uint64_t now) {
    struct speech_sess *r = &SP(L)->live[s->idx];
    sess_record_cleanup(r);
    r->active = 1;
    r->slot = s->idx;
    r->step = L->ph.target;
    r->want_end = now + (uint64_t)((L->cfg->o.ramp_s + L->cfg->o.duration_s) * 1e9);
    play_start(L, r, s->idx % L->clips->n, 0);
    /* The session stops at the end of the play under way at want_end
     * (on_sent); the phase's t_stop leaves room for one play more. */
    s->stop_at = L->ph.t_stop;
}

/* The file's chunks, then the gap's silence; past want_end at the end of a
 * play, silence (on_sent has the driver send `stop` at its next turn). */
static void chunk(struct load *L, struct sess *s, uint64_t slot, uint64_t seq, const uint8_t **pcm,
                  const char **b64) {
    struct speech_sess *r = &SP(L)->live[s->idx];
    const struct clips *au = L->clips;
    *pcm = au->silence;
    *b64 = au->silence_b64;
    struct speech_play *p = &r->plays[r->n_plays - 1];
    if (p->complete) {
        if (util_now_ns() >= r->want_end) return;
        play_start(L, r, (p->clip + 1) % au->n, (seq - 1) * L->cfg->o.chunk_ms);
        p = &r->plays[r->n_plays - 1];
    }
    const struct clip *cl = &au->v[p->clip];
    if (r->pos_chunk < cl->nchunks) {
        *pcm = cl->pcm + r->pos_chunk * au->chunk_bytes;
        *b64 = cl->b64 ? cl->b64[r->pos_chunk] : NULL;
    }
    if (++r->pos_chunk >= cl->nchunks + gap_chunks(L)) p->complete = 1;
}

static void on_sent(struct load *L, struct sess *s, uint64_t seq, uint64_t t) {
    struct speech_sess *r = &SP(L)->live[s->idx];
    if (r->cap_sent < seq) {
        r->cap_sent = r->cap_sent ? 2 * r->cap_sent : 256;
        if (r->cap_sent < seq) r->cap_sent = seq;
        r->sent_ns = xrealloc(r->sent_ns, r->cap_sent * sizeof *r->sent_ns);
    }
    while (r->n_sent < seq) r->sent_ns[r->n_sent++] = 0;
    r->sent_ns[seq - 1] = t;
    /* At the end of a play past want_end: stop (the driver sends `stop` at
     * the session's next turn, which is now). */
    if (r->plays[r->n_plays - 1].complete && t >= r->want_end) s->stop_at = t;
}

/* The play whose stream span holds pos_ms (the last one past them all). */
static struct speech_play *play_at(struct speech_sess *r, uint64_t pos_ms) {
    for (size_t i = r->n_plays; i-- > 0;)
        if (r->plays[i].start_ms <= pos_ms) return &r->plays[i];
    return r->n_plays ? &r->plays[0] : NULL;
}

static void on_text(struct load *L, struct sess *s, const struct loadstat_msg *m, const uint8_t *msg, size_t len,
                    uint64_t t) {
    struct speech *sp = SP(L);
    struct speech_sess *r = &sp->live[s->idx];
    struct speech_fig *f = &sp->phase;
    if (!r->active) return;
    if (m->type == LOADSTAT_MSG_ERROR) {
        r->errors++;
        return;
    }
    if (m->type != LOADSTAT_MSG_PARTIAL && m->type != LOADSTAT_MSG_FINAL) return;
    struct speechstat_msg sm;
    if (speechstat_msg_parse((const char *)msg, len, &sm, &sp->text) != 0) return;
    if (sm.type == SPEECHSTAT_PARTIAL) {
        r->partials++;
        f->partials++;
        if (sm.server_busy) {
            r->server_busy++;
            f->server_busy++;
        }
        if (sm.has_latency) {
            speechstat_series_add(&r->part_total, sm.lat_total_ms);
            speechstat_series_add(&f->part_total, sm.lat_total_ms);
            if (sm.lat_buffer_ms > 0) {
                speechstat_series_add(&r->win_total, sm.lat_total_ms);
                speechstat_series_add(&f->win_total, sm.lat_total_ms);
                speechstat_series_add(&r->win_buffer, sm.lat_buffer_ms);
                speechstat_series_add(&f->win_buffer, sm.lat_buffer_ms);
            }
        }
        return;
    }
    if (sm.type != SPEECHSTAT_FINAL) return;
    if (!sm.has_span || sm.end_ms <= sm.start_ms) {
        /* An empty final (after `stop` with no utterance open). */
        r->empty_finals++;
        f->empty_finals++;
        return;
    }
    r->finals++;
    f->finals++;
    uint64_t k = speechstat_chunk_of(sm.end_ms, L->cfg->o.chunk_ms);
    if (k <= r->n_sent && r->sent_ns[k - 1] && t >= r->sent_ns[k - 1]) {
        double ms = (double)(t - r->sent_ns[k - 1]) / 1e6;
        speechstat_series_add(&r->final_lat, ms);
        speechstat_series_add(&f->final_lat, ms);
    } else {
        r->unmatched_finals++;   /* its audio was not sent by this session: not timed */
        f->unmatched_finals++;
    }
    struct speech_play *p = play_at(r, sm.start_ms);
    if (p) {
        p->finals++;
        if (sm.text_len) {
            if (p->text.len) buf_puts(&p->text, " ");
            buf_append(&p->text, sm.text, sm.text_len);
        }
    }
}

static void on_end(struct load *L, struct sess *s) {
    struct speech *sp = SP(L);
    struct speech_sess *r = &sp->live[s->idx];
    if (!r->active) return;
    struct speech_fig *f = &sp->phase;
    r->completed = s->got_final && s->got_close && s->close_code == 1000;
    f->sessions++;
    f->plays += r->n_plays;
    for (size_t i = 0; i < r->n_plays; i++) {
        if (!r->plays[i].complete) continue;
        f->plays_complete++;
        if (!r->plays[i].finals) f->plays_no_final++;
    }
    if (sp->n_done == sp->cap_done) {
        sp->cap_done = sp->cap_done ? 2 * sp->cap_done : 16;
        sp->done = xrealloc(sp->done, sp->cap_done * sizeof *sp->done);
    }
    sp->done[sp->n_done++] = *r;   /* the record moves to the results */
    memset(r, 0, sizeof *r);
}

static const struct stream_hooks speech_hooks = {
    .on_open = on_open, .chunk = chunk, .on_sent = on_sent, .on_text = on_text, .on_end = on_end,
};

/* ---- phases ------------------------------------------------------------ */

static void summarise(struct speech_fig *f, const struct loadstat_run *r, struct speech_step *st) {
    const struct loadstat_server *a = &r->server_before, *b = &r->server_after;
    st->target = r->sessions_target;
    st->sessions = f->sessions;
    st->plays = f->plays;
    st->plays_complete = f->plays_complete;
    st->plays_no_final = f->plays_no_final;
    st->partials = f->partials;
    st->server_busy = f->server_busy;
    st->finals = f->finals;
    st->empty_finals = f->empty_finals;
    st->unmatched_finals = f->unmatched_finals;
    speechstat_series_summary(&f->final_lat, &st->final_lat);
    speechstat_series_summary(&f->part_total, &st->part_total);
    speechstat_series_summary(&f->win_total, &st->win_total);
    speechstat_series_summary(&f->win_buffer, &st->win_buffer);
    st->pool_threads = b->pool_threads;
    st->pool_busy_peak = r->server_pool_busy_peak;
    st->pool_queued_peak = r->server_pool_queued_peak;
    st->windows_skipped = report_dlt(a->windows_skipped, b->windows_skipped);
    st->pool_refused = report_dlt(a->pool_refused, b->pool_refused);
    unsigned long long audio = report_dlt(a->pool_audio_ms, b->pool_audio_ms);
    st->rtf = audio ? (double)report_dlt(a->pool_busy_ms, b->pool_busy_ms) / (double)audio : 0;
    st->rtf_server = b->pool_rtf;
}

static void fig_merge(struct speech_fig *dst, const struct speech_fig *src) {
    speechstat_series_merge(&dst->final_lat, &src->final_lat);
    speechstat_series_merge(&dst->part_total, &src->part_total);
    speechstat_series_merge(&dst->win_total, &src->win_total);
    speechstat_series_merge(&dst->win_buffer, &src->win_buffer);
#define M_(x) dst->x += src->x;
    M_(sessions) M_(plays) M_(plays_complete) M_(plays_no_final) M_(partials) M_(server_busy) M_(finals)
    M_(empty_finals) M_(unmatched_finals)
#undef M_
}

static void phase_end(struct load *L, struct loadstat_run *r) {
    struct speech *sp = SP(L);
    sp->steps = xrealloc(sp->steps, (sp->n_steps + 1) * sizeof *sp->steps);
    struct speech_step *st = &sp->steps[sp->n_steps++];
    memset(st, 0, sizeof *st);
    summarise(&sp->phase, r, st);
    fig_merge(&sp->run, &sp->phase);
    fig_cleanup(&sp->phase);
}

static int by_step_slot(const void *a, const void *b) {
    const struct speech_sess *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static void run_end(struct load *L) {
    struct speech *sp = SP(L);
    /* Sessions in the order of their phase and slot (one session per slot
     * and phase), so the report and --hyp do not depend on who ended first. */
    if (sp->n_done) qsort(sp->done, sp->n_done, sizeof *sp->done, by_step_slot);
    memset(&sp->total, 0, sizeof sp->total);
    summarise(&sp->run, &L->res.total, &sp->total);
}

/* speech-capacity: does a step hold? Sets r->held and r->verdict. */
static void judge_step(const struct load *L, const struct speech_step *st, struct loadstat_run *r) {
    const struct loadstat_opts *o = &L->cfg->o;
    r->held = 0;
    uint64_t errs = loadstat_counts_sum(&r->errors);
    if (r->connect_failures + errs + r->missing + st->plays_no_final > o->max_errors)
        snprintf(r->verdict, sizeof r->verdict, "%llu connect failures + %llu errors + %llu missing + %llu "
                 "plays without a final > %u", (unsigned long long)r->connect_failures, (unsigned long long)errs,
                 (unsigned long long)r->missing, (unsigned long long)st->plays_no_final, o->max_errors);
    else if (r->chunks_skipped)
        snprintf(r->verdict, sizeof r->verdict, "client saturated: %llu chunks skipped",
                 (unsigned long long)r->chunks_skipped);
    else if (r->sessions_stalled)
        snprintf(r->verdict, sizeof r->verdict, "%llu sessions stalled (server not reading)",
                 (unsigned long long)r->sessions_stalled);
    else if (!st->final_lat.count)
        snprintf(r->verdict, sizeof r->verdict, "no final with speech arrived");
    else if (st->final_lat.p95 > o->final_p95_threshold_ms)
        snprintf(r->verdict, sizeof r->verdict, "final p95 %.0f ms > %.0f ms", st->final_lat.p95,
                 o->final_p95_threshold_ms);
    else if (r->sessions_opened < r->sessions_target)
        snprintf(r->verdict, sizeof r->verdict, "only %llu of %u sessions opened",
                 (unsigned long long)r->sessions_opened, r->sessions_target);
    else {
        r->held = 1;
        snprintf(r->verdict, sizeof r->verdict, "held");
    }
}

static unsigned next_phase(struct load *L, struct loadstat_run *r) {
    struct speech_step *st = &SP(L)->steps[SP(L)->n_steps - 1];
    judge_step(L, st, r);
    st->held = r->held;
    snprintf(st->verdict, sizeof st->verdict, "%s", r->verdict);
    unsigned next = runner_capacity_next(L, r);
    if (!L->cfg->quiet)
        fprintf(stderr, "asrd-load: step %u sessions: final p50 %.0f ms, p95 %.0f ms (n=%llu), server_busy %llu, "
                "errors %llu: %s\n", r->sessions_target, st->final_lat.p50, st->final_lat.p95,
                (unsigned long long)st->final_lat.count, (unsigned long long)st->server_busy,
                (unsigned long long)loadstat_counts_sum(&r->errors), r->verdict);
    return next;
}

/* ---- options and set-up ------------------------------------------------ */

static void configure(struct load_cfg *cfg) {
    if (!(cfg->given & OPT_GIVEN_SESSIONS)) cfg->o.sessions = cfg->o.files ? cfg->o.files : 1;
}

static void configure_capacity(struct load_cfg *cfg) {
    /* A real engine holds a few streams per core, not thousands. */
    if (!(cfg->given & OPT_GIVEN_CSTART)) cfg->o.capacity_start = 1;
    if (!(cfg->given & OPT_GIVEN_CSTEP)) cfg->o.capacity_step = 1;
    if (!(cfg->given & OPT_GIVEN_CMAX)) cfg->o.capacity_max = 64;
    if (cfg->o.capacity_start > cfg->o.capacity_max) opts_die("--capacity-start is above --capacity-max");
}

static unsigned first_target_capacity(const struct load_cfg *cfg) { return cfg->o.capacity_start; }
static unsigned max_target_capacity(const struct load_cfg *cfg) { return cfg->o.capacity_max; }

/* 2 R + D, plus the longest play and a chunk: a session finishes the play
 * under way at ramp + duration from its start. */
static double phase_len(const struct load *L) {
    double longest = 0;
    for (size_t i = 0; i < L->clips->n; i++) {
        double s = (double)(L->clips->v[i].nchunks + gap_chunks(L)) * L->cfg->o.chunk_ms / 1000.0;
        if (s > longest) longest = s;
    }
    return 2 * L->cfg->o.ramp_s + L->cfg->o.duration_s + longest + L->cfg->o.chunk_ms / 1000.0;
}

static void init(struct load *L) {
    struct speech *sp = xcalloc(1, sizeof *sp);
    sp->n_live = opts_max_target(L->cfg);
    sp->live = xcalloc(sp->n_live ? sp->n_live : 1, sizeof *sp->live);
    buf_init(&sp->text, 1u << 20);
    L->scn = sp;
}

static void cleanup(struct load *L) {
    struct speech *sp = SP(L);
    if (!sp) return;
    for (unsigned i = 0; i < sp->n_live; i++) sess_record_cleanup(&sp->live[i]);
    for (size_t i = 0; i < sp->n_done; i++) sess_record_cleanup(&sp->done[i]);
    free(sp->live);
    free(sp->done);
    free(sp->steps);
    fig_cleanup(&sp->phase);
    fig_cleanup(&sp->run);
    buf_cleanup(&sp->text);
    free(sp);
    L->scn = NULL;
}

/* ---- report ------------------------------------------------------------ */

static void print_spct(const char *label, const struct speechstat_pct *p) {
    printf("%-14sp50 %.1f  p90 %.1f  p95 %.1f  p99 %.1f  max %.1f  mean %.1f  (n=%llu)\n", label, p->p50, p->p90,
           p->p95, p->p99, p->max, p->mean, (unsigned long long)p->count);
}

static void report_steps(const struct load *L) {
    const struct speech *sp = SP(L);
    const struct loadstat_opts *o = &L->cfg->o;
    printf("\n%8s %6s %6s %9s %9s %9s %10s %6s %6s %6s %5s %5s %6s  %s\n", "sessions", "opened", "finals",
           "final p50", "final p95", "final max", "window p95", "busy", "errors", "nofin", "pool", "queue", "rtf",
           "verdict");
    for (size_t i = 0; i < sp->n_steps && i < L->res.n_steps; i++) {
        const struct speech_step *st = &sp->steps[i];
        const struct loadstat_run *r = &L->res.steps[i];
        printf("%8u %6llu %6llu %9.0f %9.0f %9.0f %10.0f %6llu %6llu %6llu %5llu %5llu %6.3f  %s\n", st->target,
               (unsigned long long)r->sessions_opened, (unsigned long long)st->finals, st->final_lat.p50,
               st->final_lat.p95, st->final_lat.max, st->win_total.p95, (unsigned long long)st->server_busy,
               (unsigned long long)loadstat_counts_sum(&r->errors), (unsigned long long)st->plays_no_final,
               (unsigned long long)st->pool_busy_peak, (unsigned long long)st->pool_queued_peak, st->rtf, st->verdict);
    }
    printf("\ncapacity      %u real-time streams held (final p95 <= %.0f ms, connect failures + errors + missing "
           "+ plays without a final <= %u)%s\n\n", L->res.capacity_sessions, o->final_p95_threshold_ms, o->max_errors,
           L->res.n_steps && L->res.steps[L->res.n_steps - 1].held ? "; the largest step asked for held, "
                                                                     "raise --capacity-max to find the limit" : "");
    printf("all steps:\n");
}

static void report_speech(const struct load *L, const struct loadstat_run *t) {
    const struct speech *sp = SP(L);
    const struct speech_step *st = &sp->total;
    printf("%-14s%llu sessions made %llu plays of %zu file(s): %llu complete, %llu of them without a final\n",
           "speech", (unsigned long long)st->sessions, (unsigned long long)st->plays, L->clips->n,
           (unsigned long long)st->plays_complete, (unsigned long long)st->plays_no_final);
    printf("%-14s%llu with speech (+%llu empty)%s\n", "finals", (unsigned long long)st->finals,
           (unsigned long long)st->empty_finals,
           st->unmatched_finals ? "; some not timed (their end_ms maps to no chunk sent)" : "");
    print_spct("final ms", &st->final_lat);
    print_spct("partial ms", &st->part_total);
    print_spct("window ms", &st->win_total);
    print_spct("buffer ms", &st->win_buffer);
    printf("%-14s%llu of %llu partials (%.1f %%)\n", "server_busy", (unsigned long long)st->server_busy,
           (unsigned long long)st->partials, st->partials ? 100.0 * (double)st->server_busy / (double)st->partials : 0);
    if (L->sc->next_phase) return;   /* a capacity search: per step above, sessions in the JSON */
    printf("%-14s%5s %5s %6s %9s %9s %9s %11s %10s %5s %6s  %s\n", "per session", "slot", "plays", "finals",
           "final p50", "final p95", "final max", "partial p95", "buffer p95", "busy", "errors", "completed");
    for (size_t i = 0; i < sp->n_done; i++) {
        struct speech_sess *r = &sp->done[i];
        struct speechstat_pct fl, pt, wb;
        speechstat_series_summary(&r->final_lat, &fl);
        speechstat_series_summary(&r->part_total, &pt);
        speechstat_series_summary(&r->win_buffer, &wb);
        printf("%-14s%5u %5zu %6llu %9.0f %9.0f %9.0f %11.0f %10.0f %5llu %6llu  %s\n", "", r->slot, r->n_plays,
               (unsigned long long)r->finals, fl.p50, fl.p95, fl.max, pt.p95, wb.p95,
               (unsigned long long)r->server_busy, (unsigned long long)r->errors, r->completed ? "yes" : "no");
    }
    for (size_t i = 0; i < sp->n_done; i++) {
        const struct speech_sess *r = &sp->done[i];
        for (size_t k = 0; k < r->n_plays; k++) {
            const struct speech_play *p = &r->plays[k];
            printf("%-14sslot %u  %s%s: %s\n", i || k ? "" : "texts", r->slot, L->clips->v[p->clip].id,
                   p->complete ? "" : " (cut)", p->text.len ? p->text.data : "");
        }
    }
}

/* ---- JSON and --hyp ---------------------------------------------------- */

static json_t *spct_json(const struct speechstat_pct *p) {
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "count", (json_int_t)p->count, "p50", p->p50, "p90", p->p90,
                     "p95", p->p95, "p99", p->p99, "max", p->max, "mean", p->mean);
}

static json_t *step_json(const struct speech_step *st, int capacity) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "sessions_target", json_integer(st->target));
    if (capacity) {
        json_object_set_new(o, "held", json_boolean(st->held));
        json_object_set_new(o, "verdict", json_string(st->verdict));
    }
#define W_(f) json_object_set_new(o, #f, json_integer((json_int_t)st->f));
    W_(sessions) W_(plays) W_(plays_complete) W_(partials) W_(server_busy) W_(finals) W_(empty_finals)
    W_(unmatched_finals)
#undef W_
    json_object_set_new(o, "plays_without_final", json_integer((json_int_t)st->plays_no_final));
    json_object_set_new(o, "final_latency_ms", spct_json(&st->final_lat));
    json_object_set_new(o, "partial_total_ms", spct_json(&st->part_total));
    json_object_set_new(o, "window_total_ms", spct_json(&st->win_total));
    json_object_set_new(o, "window_buffer_ms", spct_json(&st->win_buffer));
    json_object_set_new(o, "pool", json_pack("{s:I,s:I,s:I,s:f,s:f,s:I,s:I}", "threads", (json_int_t)st->pool_threads,
                                             "busy_peak", (json_int_t)st->pool_busy_peak, "queued_peak",
                                             (json_int_t)st->pool_queued_peak, "real_time_factor", st->rtf,
                                             "server_real_time_factor", st->rtf_server, "windows_skipped",
                                             (json_int_t)st->windows_skipped, "refused", (json_int_t)st->pool_refused));
    return o;
}

static json_t *sess_json(const struct load *L, struct speech_sess *r) {
    struct speechstat_pct fl, pt, wt, wb;
    speechstat_series_summary(&r->final_lat, &fl);
    speechstat_series_summary(&r->part_total, &pt);
    speechstat_series_summary(&r->win_total, &wt);
    speechstat_series_summary(&r->win_buffer, &wb);
    json_t *plays = json_array();
    for (size_t k = 0; k < r->n_plays; k++) {
        const struct speech_play *p = &r->plays[k];
        json_array_append_new(plays, json_pack("{s:s,s:I,s:I,s:I,s:b,s:I,s:s%}", "fileid", L->clips->v[p->clip].id,
                                               "start_ms", (json_int_t)p->start_ms, "speech_end_ms",
                                               (json_int_t)p->speech_end_ms, "end_ms", (json_int_t)p->end_ms,
                                               "complete", p->complete, "finals", (json_int_t)p->finals, "text",
                                               p->text.len ? p->text.data : "", p->text.len));
    }
    json_t *o = json_pack("{s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "slot", (json_int_t)r->slot, "sessions_target",
                          (json_int_t)r->step, "plays", plays, "partials", (json_int_t)r->partials, "server_busy",
                          (json_int_t)r->server_busy, "finals", (json_int_t)r->finals, "empty_finals",
                          (json_int_t)r->empty_finals, "unmatched_finals", (json_int_t)r->unmatched_finals, "errors",
                          (json_int_t)r->errors, "completed", r->completed);
    if (!o) return NULL;
    json_object_set_new(o, "final_latency_ms", spct_json(&fl));
    json_object_set_new(o, "partial_total_ms", spct_json(&pt));
    json_object_set_new(o, "window_total_ms", spct_json(&wt));
    json_object_set_new(o, "window_buffer_ms", spct_json(&wb));
    return o;
}

static int json_members(const struct load *L, json_t *root) {
    struct speech *sp = SP(L);
    int capacity = L->sc->next_phase != NULL;
    json_t *o = json_object(), *files = json_array(), *steps = json_array(), *sess = json_array();
    if (!o || !files || !steps || !sess) goto fail;
    for (size_t i = 0; i < L->clips->n; i++) {
        const struct clip *cl = &L->clips->v[i];
        json_array_append_new(files, json_pack("{s:s,s:s,s:I,s:I}", "fileid", cl->id, "path", cl->path, "duration_ms",
                                               (json_int_t)(cl->samples * 1000 / LOAD_SAMPLE_RATE), "chunks",
                                               (json_int_t)cl->nchunks));
    }
    for (size_t i = 0; i < sp->n_steps; i++) json_array_append_new(steps, step_json(&sp->steps[i], capacity));
    for (size_t i = 0; i < sp->n_done; i++) json_array_append_new(sess, sess_json(L, &sp->done[i]));
    json_object_set_new(o, "files", files);
    json_object_set_new(o, "gap_ms", json_real(L->cfg->o.gap_ms));
    json_object_set_new(o, "final_p95_threshold_ms", json_real(L->cfg->o.final_p95_threshold_ms));
    json_object_set_new(o, "total", step_json(&sp->total, 0));
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "sessions", sess);
    return json_object_set_new(root, "speech", o) == 0 ? 0 : ASR_ENOMEM;
fail:
    json_decref(o);
    json_decref(files);
    json_decref(steps);
    json_decref(sess);
    return ASR_ENOMEM;
}

/* --hyp: one line per file, in the order of the files: the text of its
 * first complete play (the lowest phase and slot); a file no session
 * played whole has no line (wer.py counts it as missing). */
static int write_hyp(const struct load *L) {
    const struct speech *sp = SP(L);
    if (!L->cfg->hyp_out[0]) return 0;
    struct buf b;
    buf_init(&b, 0);
    int rc = 0;
    for (size_t c = 0; c < L->clips->n && rc == 0; c++) {
        const struct speech_play *found = NULL;
        for (size_t i = 0; i < sp->n_done && !found; i++)
            for (size_t k = 0; k < sp->done[i].n_plays && !found; k++)
                if (sp->done[i].plays[k].clip == c && sp->done[i].plays[k].complete) found = &sp->done[i].plays[k];
        if (found) rc = speechstat_hyp_line(&b, L->clips->v[c].id, found->text.len ? found->text.data : "");
    }
    FILE *f = rc == 0 ? fopen(L->cfg->hyp_out, "wb") : NULL;
    if (!f) {
        fprintf(stderr, "asrd-load: %s: %s\n", L->cfg->hyp_out, rc ? "out of memory" : strerror(errno));
        buf_cleanup(&b);
        return -1;
    }
    size_t w = b.len ? fwrite(b.data, 1, b.len, f) : 0;
    rc = fclose(f);
    if (w != b.len || rc != 0) {
        fprintf(stderr, "asrd-load: %s: write failed\n", L->cfg->hyp_out);
        buf_cleanup(&b);
        return -1;
    }
    buf_cleanup(&b);
    return 0;
}

const struct scenario sc_speech = {
    .name = "speech",
    .flags = SCF_SPEECH,
    .driver = &streams_driver,
    .stream = &speech_hooks,
    .configure = configure,
    .phase_len = phase_len,
    .init = init,
    .cleanup = cleanup,
    .phase_end = phase_end,
    .run_end = run_end,
    .report_body = report_speech,
    .json = json_members,
    .write_files = write_hyp,
};

const struct scenario sc_speech_capacity = {
    .name = "speech-capacity",
    .flags = SCF_SPEECH,
    .driver = &streams_driver,
    .stream = &speech_hooks,
    .configure = configure_capacity,
    .first_target = first_target_capacity,
    .max_target = max_target_capacity,
    .phase_len = phase_len,
    .init = init,
    .cleanup = cleanup,
    .phase_end = phase_end,
    .next_phase = next_phase,
    .run_end = run_end,
    .report_head = report_steps,
    .report_body = report_speech,
    .json = json_members,
    .write_files = write_hyp,
};
