/* The driver of real-time streaming sessions (streams.h). */
#define _GNU_SOURCE
#include "streams.h"

#include <linux/sockios.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "base/util.h"
#include "clips.h"
#include "opts.h"
#include "report.h"
#include "runner.h"

#define MAX_WQ_BYTES (256u << 10)       /* unsent bytes per session before chunks are held back */
#define SPAWN_BATCH  256                /* connects started per spawner wake-up */

struct streams {
    struct sess_set set;
    struct loadstat_heap heap;          /* sessions by their next deadline (chunk or stop) */
    uv_timer_t sched_timer;             /* services the heap */
    uint64_t   sched_due;               /* key the timer is armed for, UINT64_MAX = idle */
    struct buf scratch;                 /* json chunk message */
};

static unsigned rand_below(unsigned n) { return n ? randombytes_uniform(n) : 0; }

static struct streams *S_(struct load *L) { return L->drv; }

static const struct stream_hooks *hooks(const struct load *L) {
    static const struct stream_hooks none = {0};
    return L->sc->stream ? L->sc->stream : &none;
}

/* ---- scheduler timer --------------------------------------------------- */

static void sess_service(struct load *L, struct sess *s, uint64_t now);
static void sched_arm(struct load *L);

static void sched_cb(uv_timer_t *t) {
    struct load *L = t->data;
    struct streams *S = S_(L);
    S->sched_due = UINT64_MAX;
    uint64_t now = util_now_ns();
    struct loadstat_heap_node *top;
    while ((top = loadstat_heap_peek(&S->heap)) && top->key <= now) {
        loadstat_heap_pop(&S->heap);
        struct sess *s = (struct sess *)((char *)top - offsetof(struct sess, hn));
        sess_service(L, s, now);
    }
    sched_arm(L);
}

/* Arms the one scheduler timer for the earliest deadline in the heap.
 * libuv timers count whole milliseconds from the loop's cached time, so the
 * delay is rounded up: a chunk leaves at most ~1 ms after its deadline, and
 * latency is measured from the actual send. */
static void sched_arm(struct load *L) {
    struct streams *S = S_(L);
    struct loadstat_heap_node *top = loadstat_heap_peek(&S->heap);
    if (!top) {
        uv_timer_stop(&S->sched_timer);
        S->sched_due = UINT64_MAX;
        return;
    }
    if (S->sched_due != UINT64_MAX && S->sched_due <= top->key) return;
    uint64_t now = util_now_ns();
    uint64_t ms = top->key > now ? (top->key - now + 999999) / 1000000 : 0;
    uv_update_time(L->loop);
    uv_timer_start(&S->sched_timer, sched_cb, ms, 0);
    S->sched_due = top->key;
}

static void sched_put(struct load *L, struct sess *s, uint64_t key) {
    struct streams *S = S_(L);
    loadstat_heap_remove(&S->heap, &s->hn);
    s->hn.key = key;
    loadstat_heap_push(&S->heap, &s->hn);
    sched_arm(L);
}

/* ---- sending ----------------------------------------------------------- */

static void sess_send_stop(struct load *L, struct sess *s) {
    static const char stop[] = "{\"type\":\"stop\"}";
    loadstat_heap_remove(&S_(L)->heap, &s->hn);
    s->st = ST_STOPPING;
    uint64_t now = util_now_ns();
    s->deadline = now + (uint64_t)(L->cfg->o.grace_s * 1e9);
    if (s->slow) {
        /* Read again, to see the final and the close code (1000, or 1008 if
         * the server gave up on us without our noticing). */
        wsclient_read_start(s);
    }
    wsclient_queue(s, WSLAY_TEXT_FRAME, stop, sizeof stop - 1);
}

/* The looped clip 0, from the session's random starting chunk: slot k is
 * always the same audio, so the audio keeps pace with the wall clock. */
static void looped_chunk(const struct load *L, const struct sess *s, uint64_t slot, const uint8_t **pcm,
                         const char **b64) {
    const struct clip *cl = &L->clips->v[0];
    size_t ci = (size_t)((slot + s->audio_off) % cl->nchunks);
    *pcm = cl->pcm + ci * L->clips->chunk_bytes;
    *b64 = cl->b64 ? cl->b64[ci] : NULL;
}

/* Sends the chunks due now (see loadstat_sched_due for the catch-up
 * policy) and re-queues the session for its next deadline or its stop. */
static void sess_service(struct load *L, struct sess *s, uint64_t now) {
    const struct stream_hooks *hk = hooks(L);
    struct loadstat_run *run = &L->ph.run;
    if (s->st != ST_STREAMING) return;
    if (now >= s->stop_at) {
        sess_send_stop(L, s);
        return;
    }
    uint64_t first, skipped;
    unsigned n = loadstat_sched_due(&s->sched, now, &first, &skipped);
    run->chunks_skipped += skipped;
    for (unsigned i = 0; i < n && s->st == ST_STREAMING; i++) {
        uint64_t slot = first + i;
        if (s->wq_bytes > MAX_WQ_BYTES) {
            /* The socket does not drain: sending more would only queue here. */
            run->chunks_blocked++;
            continue;
        }
        uint64_t seq = ++s->seq;
        const uint8_t *pcm = NULL;
        const char *b64 = NULL;
        if (hk->chunk) hk->chunk(L, s, slot, seq, &pcm, &b64);
        else looped_chunk(L, s, slot, &pcm, &b64);
        uint64_t t = util_now_ns();
        s->ring[seq % SESS_RING].seq = seq;
        s->ring[seq % SESS_RING].t_ns = t;
        run->chunks_sent++;
        if (s->slow) run->slow_chunks++;
        else if (s->flood) run->flood_chunks++;
        else run->normal_chunks++;
        if (L->cfg->json_mode) {
            struct buf *sc = &S_(L)->scratch;
            sc->len = 0;
            buf_printf(sc, "{\"type\":\"audio_chunk\",\"data\":\"%s\",\"sequence\":%llu}", b64,
                       (unsigned long long)seq);
            wsclient_queue(s, WSLAY_TEXT_FRAME, sc->data, sc->len);
        } else {
            wsclient_queue(s, WSLAY_BINARY_FRAME, pcm, L->clips->chunk_bytes);
        }
        if (hk->on_sent && s->st == ST_STREAMING) hk->on_sent(L, s, seq, t);
    }
    if (s->st != ST_STREAMING) return;
    uint64_t next = loadstat_sched_next(&s->sched);
    sched_put(L, s, next < s->stop_at ? next : s->stop_at);
}

/* ---- reading ----------------------------------------------------------- */

/* An answer (partial, or error with a sequence) to chunk seq. */
static void sess_answer(struct load *L, struct sess *s, uint64_t seq, int partial) {
    struct loadstat_run *run = &L->ph.run;
    uint64_t t = util_now_ns();
    if (s->slow) {          /* slow readers read late on purpose: counted, not measured */
        run->slow_answers++;
        return;
    }
    if (s->answered && seq <= s->last_ans) run->out_of_order++;
    if (seq > s->last_ans) s->last_ans = seq;
    if (seq == 0 || seq > s->seq || s->ring[seq % SESS_RING].seq != seq || s->ring[seq % SESS_RING].t_ns == 0) {
        run->unmatched++;
        return;
    }
    uint64_t lat = (t - s->ring[seq % SESS_RING].t_ns) / 1000;
    s->ring[seq % SESS_RING].t_ns = 0;
    s->answered++;
    if (s->flood) {         /* flooders: counted apart, not measured */
        run->flood_answers++;
        if (partial) run->flood_partials++;
        return;
    }
    run->answers++;
    if (partial) run->partials++;
    uint64_t mock = (uint64_t)(L->cfg->o.mock_latency_ms * 1000);
    loadstat_hist_add(&L->ph.lat, lat);
    loadstat_hist_add(&L->ph.added, lat > mock ? lat - mock : 0);
    loadstat_hist_add(&L->interval, lat);
}

/* The `session` message: the session starts streaming. */
static void sess_opened(struct load *L, struct sess *s) {
    const struct load_cfg *cfg = L->cfg;
    struct loadstat_run *run = &L->ph.run;
    uint64_t now = util_now_ns(), period = (uint64_t)cfg->o.chunk_ms * 1000000ull;
    s->st = ST_STREAMING;
    s->counted_open = 1;
    s->deadline = 0;
    run->sessions_opened++;
    if (s->slow) {
        wsclient_read_stop(s);
        run->slow_sessions++;
    } else if (s->flood) {
        /* The same chunks, flood_factor times as often. */
        period = (uint64_t)((double)period / cfg->o.flood_factor);
        run->flood_sessions++;
    } else {
        run->normal_sessions++;
    }
    /* A random phase within one period spreads the sessions' sends
     * evenly, as independent clients would. */
    loadstat_sched_init(&s->sched, now + (uint64_t)rand_below((unsigned)(period / 1000)) * 1000, period,
                        cfg->o.max_burst);
    /* ... and a random starting point in the audio: independent speakers
     * do not pause and talk in step (with a file of turns and pauses,
     * sessions that all start at its beginning would). */
    s->audio_off = rand_below((unsigned)L->clips->v[0].nchunks);
    if (L->sc->flags & SCF_CHURN) {
        double life = cfg->o.churn_life_s * (0.5 + (double)rand_below(1000) / 1000.0);
        uint64_t end = now + (uint64_t)(life * 1e9);
        s->stop_at = end < L->ph.t_stop ? end : L->ph.t_stop;
    } else {
        /* Every session streams ramp + duration seconds from its own
         * start: sessions stop as they started, spread over the ramp,
         * not all in the same millisecond (a herd of stops, finals and
         * closes no real set of clients makes), and all of them stream
         * together for duration seconds. */
        uint64_t end = now + (uint64_t)((cfg->o.ramp_s + cfg->o.duration_s) * 1e9);
        s->stop_at = end < L->ph.t_stop ? end : L->ph.t_stop;
    }
    if (hooks(L)->on_open) hooks(L)->on_open(L, s, now);
    uint64_t next = loadstat_sched_next(&s->sched);
    sched_put(L, s, next < s->stop_at ? next : s->stop_at);
}

static void ev_text(void *arg, struct sess *s, const uint8_t *msg, size_t len) {
    struct load *L = arg;
    struct loadstat_msg m;
    struct loadstat_run *run = &L->ph.run;
    uint64_t t = util_now_ns();
    if (loadstat_msg_parse((const char *)msg, len, &m) != 0) {
        loadstat_counts_add(&run->errors, "UNPARSEABLE", 1);
        return;
    }
    switch (m.type) {
    case LOADSTAT_MSG_SESSION:
        if (s->st != ST_OPEN) break;
        sess_opened(L, s);
        break;
    case LOADSTAT_MSG_PARTIAL:
        run->partial_msgs++;
        if (m.has_sequence) sess_answer(L, s, m.sequence, 1);
        break;
    case LOADSTAT_MSG_ERROR:
        loadstat_counts_add(&run->errors, m.code[0] ? m.code : "NO_CODE", 1);
        if (s->flood) loadstat_counts_add(&run->flood_errors, m.code[0] ? m.code : "NO_CODE", 1);
        else if (!s->slow) run->normal_errors++;
        if (m.has_sequence) sess_answer(L, s, m.sequence, 0);
        break;
    case LOADSTAT_MSG_FINAL:
        run->finals++;
        s->got_final = 1;
        break;
    default:
        break;
    }
    if (hooks(L)->on_text && s->st != ST_ENDED && s->st != ST_IDLE) hooks(L)->on_text(L, s, &m, msg, len, t);
}

/* ---- session ends ------------------------------------------------------ */

static void ev_fail(void *arg, struct sess *s, const char *why) {
    struct load *L = arg;
    L->ph.run.connect_failures++;
    loadstat_counts_add(&L->ph.run.connect_errors, why, 1);
}

/* Accounts the session once (called by wsclient_end). */
static void ev_end(void *arg, struct sess *s) {
    struct load *L = arg;
    struct loadstat_run *run = &L->ph.run;
    if (s->counted_open) {
        if (s->flood) run->flood_missing += s->seq - s->answered;
        else if (!s->slow) run->missing += s->seq - s->answered;
        char code[16];
        if (s->got_close) snprintf(code, sizeof code, "%u", s->close_code);
        else snprintf(code, sizeof code, "%s", s->st == ST_STOPPING && !s->lost_streaming && s->deadline &&
                                                   util_now_ns() >= s->deadline ? "timeout" : "none");
        loadstat_counts_add(&run->close_codes, code, 1);
        if (s->slow) loadstat_counts_add(&run->slow_close_codes, code, 1);
        if (s->flood) loadstat_counts_add(&run->flood_close_codes, code, 1);
        int completed = s->got_final && s->got_close && s->close_code == 1000;
        if (completed) run->sessions_completed++;
        if (completed && !s->slow && !s->flood) run->normal_completed++;
        if (s->slow && (s->lost_streaming || (s->got_close && s->close_code == 1008))) run->slow_closed++;
        /* Ended before our `stop`: the server closed it (1008) or reset it. */
        if (s->flood && s->st == ST_STREAMING) run->flood_closed++;
        if (s->stalled) run->sessions_stalled++;
    }
    loadstat_heap_remove(&S_(L)->heap, &s->hn);
    if (hooks(L)->on_end) hooks(L)->on_end(L, s);
}

static void ev_closed(void *arg, struct sess *s) {
    struct load *L = arg;
    struct load_phase *ph = &L->ph;
    int churn = (L->sc->flags & SCF_CHURN) != 0;
    ph->open--;
    /* Churn replaces it: at once, or after 100 ms when it never opened (a
     * refusing server is not hammered in a tight connect loop). */
    if (churn) runner_spawn_kick(L, s->failed ? 100 : 0);
    /* Everything started has ended early (refused, closed by the server):
     * nothing is left to measure, so the phase stops now. */
    if (!ph->stopping && !churn && ph->open == 0 && ph->started >= ph->target) runner_stop_now(L);
    runner_maybe_finish(L);
}

static const struct sess_events events = {
    .on_text = ev_text, .on_fail = ev_fail, .on_end = ev_end, .on_closed = ev_closed,
};

/* ---- starting sessions ------------------------------------------------- */

static void sess_start(struct load *L) {
    struct streams *S = S_(L);
    struct sess *s = wsclient_take(&S->set);
    if (!s) return;
    enum loadstat_role role = loadstat_role(s->idx, S->set.n, L->cfg->o.slow_count, L->cfg->o.flood_count);
    s->slow = role == LOADSTAT_ROLE_SLOW;
    s->flood = role == LOADSTAT_ROLE_FLOOD;
    L->ph.started++;
    int r = wsclient_init(s);
    if (r != 0) {
        L->ph.run.connect_failures++;
        loadstat_counts_add(&L->ph.run.connect_errors, uv_err_name(r), 1);
        return;
    }
    L->ph.open++;
    wsclient_connect(s);
}

/* The spawner is a one-shot timer, armed only while it has work: during
 * the ramp (for the next session's start), after a batch limit, and when a
 * churn session's slot comes free (runner_spawn_kick from ev_closed).
 * Between those it sleeps. */
static void streams_spawn(struct load *L) {
    struct load_phase *ph = &L->ph;
    const struct loadstat_opts *o = &L->cfg->o;
    struct sess_set *set = &S_(L)->set;
    uint64_t now = util_now_ns();
    int churn = (L->sc->flags & SCF_CHURN) != 0;
    if (churn && o->churn_rate > 0) {
        /* Churn at a rate: session k starts k / rate s into the phase, when
         * a slot is free (at most --sessions open); a start that finds no
         * free slot waits for the next close (ev_closed kicks us). */
        uint64_t due = loadstat_churn_due(o->churn_rate, now - ph->t_start);
        unsigned batch = 0;
        while (ph->started < due && batch < SPAWN_BATCH && set->nfree) {
            sess_start(L);
            batch++;
        }
        if (ph->started < due) {
            if (set->nfree) runner_spawn_kick(L, 1);
        } else {
            uint64_t next = ph->t_start + loadstat_churn_start_ns(o->churn_rate, ph->started);
            runner_spawn_kick(L, next > now ? (next - now + 999999) / 1000000 : 1);
        }
        return;
    }
    unsigned want = ph->target;
    int ramping = 0;
    if (o->ramp_s > 0) {
        double f = (double)(now - ph->t_start) / (o->ramp_s * 1e9);
        if (f < 1) {
            want = (unsigned)ceil(f * ph->target);
            ramping = 1;
        }
        if (want < 1) want = 1;
    }
    /* Churn holds a population (slots in use, stopping ones included);
     * the others start each session once. */
    unsigned have = churn ? ph->open : ph->started;
    unsigned batch = 0;
    while (have < want && batch < SPAWN_BATCH && set->nfree) {
        sess_start(L);
        have++;
        batch++;
    }
    if (have < want && set->nfree) {
        runner_spawn_kick(L, 1);   /* the batch limit: the rest on the next turn */
    } else if (ramping && have < ph->target) {
        /* Session have + 1 is due when the ramp reaches have / target. */
        uint64_t due = ph->t_start + (uint64_t)(o->ramp_s * 1e9 * have / ph->target);
        runner_spawn_kick(L, due > now ? (due - now + 999999) / 1000000 : 1);
    }
}

/* ---- the driver -------------------------------------------------------- */

static void streams_init(struct load *L) {
    struct streams *S = xcalloc(1, sizeof *S);
    L->drv = S;
    wsclient_set_init(&S->set, L->loop, &L->cfg->t, opts_max_target(L->cfg), &events, L);
    S->set.connect_timeout_s = L->cfg->o.connect_timeout_s;
    S->set.slow_rcvbuf = L->cfg->slow_rcvbuf;
    loadstat_heap_init(&S->heap);
    uv_timer_init(L->loop, &S->sched_timer);
    S->sched_timer.data = L;
    S->sched_due = UINT64_MAX;
    buf_init(&S->scratch, 0);
}

static void streams_close(struct load *L) { uv_close((uv_handle_t *)&S_(L)->sched_timer, NULL); }

static void streams_cleanup(struct load *L) {
    struct streams *S = S_(L);
    if (!S) return;
    loadstat_heap_cleanup(&S->heap);
    buf_cleanup(&S->scratch);
    wsclient_set_cleanup(&S->set);
    free(S);
    L->drv = NULL;
}

static void streams_phase_start(struct load *L) { runner_spawn_kick(L, 0); }

/* Sessions still connecting (churn replaces sessions up to the end) are
 * left to finish: once their `session` message comes they stop at once
 * (stop_at = t_stop is past), so the server sees a clean `stop` and close
 * rather than a dropped connection it would keep resumable. */
static void streams_stop(struct load *L) {}

static void streams_cut(struct load *L) {
    struct sess_set *set = &S_(L)->set;
    for (unsigned i = 0; i < set->n; i++) {
        struct sess *s = &set->v[i];
        if (s->st == ST_IDLE || s->st == ST_ENDED) continue;
        if (s->st < ST_STREAMING) wsclient_fail(s, "timeout");
        else wsclient_end(s);
    }
}

static int streams_all_gone(struct load *L) {
    const struct load_phase *ph = &L->ph;
    return !(L->sc->flags & SCF_CHURN) && ph->open == 0 && ph->started >= ph->target;
}

/* Timeouts of individual states, and stalls: unsent bytes in libuv's queue
 * plus the kernel's send queue (SIOCOUTQ) past SESS_STALL_BYTES mean the
 * server stopped reading this connection. */
static unsigned streams_tick(struct load *L, uint64_t now, unsigned *stalled) {
    struct sess_set *set = &S_(L)->set;
    unsigned stalled_now = 0, streaming = 0;
    for (unsigned i = 0; i < set->n; i++) {
        struct sess *s = &set->v[i];
        if (s->st == ST_STREAMING || s->st == ST_STOPPING) {
            uv_os_fd_t fd;
            int outq = 0;
            if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 &&
                (size_t)outq + s->wq_bytes > SESS_STALL_BYTES) {
                s->stalled = 1;
                stalled_now++;
            }
        }
        if (s->st == ST_IDLE || s->st == ST_ENDED || !s->deadline || now < s->deadline) continue;
        if (s->st < ST_STREAMING) wsclient_fail(s, "timeout");
        else wsclient_end(s);
    }
    for (unsigned i = 0; i < set->n; i++)
        if (set->v[i].st == ST_STREAMING) streaming++;
    *stalled = stalled_now;
    return streaming;
}

static void streams_interrupt(struct load *L, uint64_t now) {
    struct sess_set *set = &S_(L)->set;
    for (unsigned i = 0; i < set->n; i++) {
        struct sess *s = &set->v[i];
        if (s->st != ST_STREAMING) continue;
        s->stop_at = now;
        sched_put(L, s, now);
    }
}

const struct load_driver streams_driver = {
    .name = "streams",
    .rest = 0,
    .init = streams_init,
    .cleanup = streams_cleanup,
    .phase_start = streams_phase_start,
    .spawn = streams_spawn,
    .stop = streams_stop,
    .cut = streams_cut,
    .all_gone = streams_all_gone,
    .tick = streams_tick,
    .interrupt = streams_interrupt,
    .close = streams_close,
    .report = report_streams,
};
