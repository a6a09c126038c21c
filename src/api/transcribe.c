/* Decoded audio through a session, a window of chunks at a time (transcribe.h). */
#include "api/transcribe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/wire.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "core/engine.h"
#include "core/session.h"

#define TR_CHUNK_SAMPLES 16000u
/* Chunks (seconds of audio) of one transcription waiting for the engine at
 * a time (docs/internals/chunk-pipeline.md, "REST uploads"): each answered
 * chunk lets the next one in. 16 is what a stream may have waiting by
 * default (ASR_MAX_PENDING_CHUNKS), so a file weighs on the engine like one
 * busy stream; a refill of the whole window is about 2 ms of work (VAD,
 * engine calls) in one loop turn; and with the mock's 50 ms an hour of
 * audio takes about 13 s.
 * Independently, a chunk only goes in while the session's engine requests
 * leave room for the most one chunk can make, so the engine wrappers never
 * refuse a file for its own backlog (ENGINE_MAX_OUTSTANDING). */
#define TR_WINDOW 16
#define TR_ENGINE_BUDGET (ENGINE_MAX_OUTSTANDING - SESS_MAX_REQUESTS_PER_CHUNK - 1)
/* Background transcriptions (jobs) share the loop with live streams: all
 * of them together feed at most this many chunks per millisecond of loop
 * time (VAD and engine calls run on the loop: a refill of a whole window
 * of several jobs at once was a turn of many ms that every stream on the
 * worker waited for). The rest waits for the next millisecond. 4 chunks a
 * millisecond is 4,000 s of audio a second: no limit on a job's pace. */
#define TR_BG_CHUNKS_PER_MS 4

/* A transcription's life, forward only. STARTING: the first feed waits for
 * the next loop turn (so done never runs inside transcribe_start). FEEDING:
 * the session takes the audio a window at a time. STOPPING: all audio is
 * in, the last final is on its way. FAILED: no more audio goes in; the
 * session lets the engine finish what it holds (at most a window). Then
 * on_done reports and the transcription ends (CLOSED: its timer handle is
 * closing; freed by the close callback). */
enum tr_state { TR_STARTING, TR_FEEDING, TR_STOPPING, TR_FAILED, TR_CLOSED };

struct transcribe {
    enum tr_state state;
    uv_timer_t timer;              /* the first feed, on the next loop turn */
    struct audio_pcm pcm;          /* owned: the audio */
    struct asr_session *sess;      /* owned */
    transcribe_done_fn done_fn;
    void *done_arg;
    size_t fed;                    /* samples handed to the session */
    uint64_t chunks, answered;     /* chunks in the audio; of them answered */
    int feeding;                   /* feed() is on the stack: the end waits for it */
    int ended;                     /* on_done fired while feeding */
    int no_words;
    int background;                /* shares the per-millisecond feed budget */
    char request_id[64];
    const char *what;              /* static */
    struct buf segments;           /* JSON array body of segments */
    struct buf text;               /* all finals joined */
    unsigned n_segments;
    int oom;                       /* segments or text could not grow */
    int fail_err;                  /* FAILED: the asr_err reported */
    uint64_t fail_start_ms, fail_end_ms;
};

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

/* Frees everything; the struct itself goes with its timer handle's close. */
static void tr_close(struct transcribe *t) {
    t->state = TR_CLOSED;
    if (t->sess) sess_destroy(t->sess);
    t->sess = NULL;
    audio_pcm_cleanup(&t->pcm);
    buf_cleanup(&t->segments);
    buf_cleanup(&t->text);
    uv_close((uv_handle_t *)&t->timer, on_timer_closed);
}

void transcribe_cancel(struct transcribe *t) {
    if (t && t->state != TR_CLOSED) tr_close(t);
}

double transcribe_progress(const struct transcribe *t) {
    if (!t->chunks) return t->state == TR_STOPPING ? 1.0 : 0.0;
    return (double)t->answered / (double)t->chunks;
}

/* The first failure ends the transcription: no more audio goes in, and the
 * session drains what the engine still holds; then on_done reports it with
 * the span of audio it hit. Later failures are ignored. Runs inside the
 * session's callbacks. */
static void tr_fail(struct transcribe *t, int status, uint64_t start_ms, uint64_t end_ms) {
    if (t->state == TR_FAILED) return;
    t->state = TR_FAILED;
    if (status == ASR_EAGAIN || status == ASR_E_ENGINE_BUSY) t->fail_err = ASR_E_ENGINE_BUSY;
    else if (status == ASR_ENOMEM || status == ASR_E_INTERNAL) t->fail_err = ASR_E_INTERNAL;
    else t->fail_err = ASR_E_MODEL_ERROR;
    t->fail_start_ms = start_ms;
    t->fail_end_ms = end_ms;
    struct log_line *l = log_begin(LOG_WARN, "transcription failed");
    if (l) {
        log_str(l, "request_id", t->request_id);
        log_str(l, "kind", t->what);
        log_str(l, "code", asr_err_code(t->fail_err));
        log_str(l, "engine_status", asr_strerror(status));
        log_u64(l, "start_ms", start_ms);
        log_u64(l, "end_ms", end_ms);
        log_end(l);
    }
    sess_drain(t->sess);
}

/* The span of chunk seq (numbered from 1, TR_CHUNK_SAMPLES each). */
static void chunk_span(const struct transcribe *t, uint64_t seq, uint64_t *start_ms, uint64_t *end_ms) {
    uint64_t from = seq ? (seq - 1) * TR_CHUNK_SAMPLES : 0;
    uint64_t to = from + TR_CHUNK_SAMPLES < t->pcm.n ? from + TR_CHUNK_SAMPLES : t->pcm.n;
    *start_ms = from * 1000 / TRANSCRIBE_RATE;
    *end_ms = to * 1000 / TRANSCRIBE_RATE;
}

static void finish(struct transcribe *t);
static void on_resume(uv_timer_t *h);

/* The background feed budget of this loop's current millisecond (the loop
 * thread only). 1 when one more background chunk may go in now. */
static int bg_take(struct transcribe *t) {
    static uint64_t ms;
    static unsigned used;
    uint64_t now = uv_now(t->timer.loop);
    if (now != ms) {
        ms = now;
        used = 0;
    }
    if (used >= TR_BG_CHUNKS_PER_MS) return 0;
    used++;
    return 1;
}

/* Hands the session chunks until TR_WINDOW are waiting for the engine (or
 * its engine requests near their bound), then, after the last one, stops it
 * (its last final follows; the 1 in TR_ENGINE_BUDGET is its finalize).
 * Called once on the first loop turn and again for every partial and
 * final, which covers every engine completion that can make room. on_done
 * may fire inside sess_chunk/sess_stop when the call started here at the
 * top of a loop callback; it then only marks the transcription, and the end
 * happens here, after the session returned. */
static void feed(struct transcribe *t) {
    t->feeding++;
    while (t->state == TR_FEEDING && sess_pending(t->sess) < TR_WINDOW &&
           sess_engine_outstanding(t->sess) <= TR_ENGINE_BUDGET && t->fed < t->pcm.n) {
        if (t->background && !bg_take(t)) {
            if (!uv_is_active((uv_handle_t *)&t->timer)) uv_timer_start(&t->timer, on_resume, 1, 0);
            break;
        }
        size_t off = t->fed;
        size_t n = t->pcm.n - off < TR_CHUNK_SAMPLES ? t->pcm.n - off : TR_CHUNK_SAMPLES;
        t->fed += n;
        sess_chunk(t->sess, (const uint8_t *)(t->pcm.samples + off), n * 2, 0, 0, 0, util_now_ns());
    }
    if (t->state == TR_FEEDING && t->fed == t->pcm.n && sess_engine_outstanding(t->sess) <= TR_ENGINE_BUDGET) {
        t->state = TR_STOPPING;
        sess_stop(t->sess);
    }
    t->feeding--;
    if (!t->feeding && t->ended) finish(t);
}

static void tr_partial(void *ctx, const struct sess_partial *p) {
    struct transcribe *t = ctx;
    t->answered++;
    feed(t); /* one chunk answered: room for the next */
}

/* Every engine failure is reported here first (with its span) and, for a
 * chunk, again as on_error MODEL_ERROR; tr_fail keeps the first. Other
 * errors (the session refusing a chunk) cannot happen with this session's
 * limits but would fail the transcription the same way. */
static void tr_engine_error(void *ctx, int status, int is_final, uint64_t seq, uint64_t start_ms,
                            uint64_t end_ms) {
    tr_fail(ctx, status, start_ms, end_ms);
}

static void tr_error(void *ctx, int err, int has_seq, uint64_t seq, const char *msg) {
    struct transcribe *t = ctx;
    uint64_t a = 0, b = 0;
    if (has_seq) chunk_span(t, seq, &a, &b);
    t->answered++;
    tr_fail(t, err == ASR_E_MODEL_ERROR ? err : ASR_E_INTERNAL, a, b);
}

static void add_segment(struct transcribe *t, const struct sess_final *f) {
    int bad = buf_printf(&t->segments, "%s{\"start_ms\":%llu,\"end_ms\":%llu,\"text\":", t->n_segments ? "," : "",
                         (unsigned long long)f->start_ms, (unsigned long long)f->end_ms);
    bad |= buf_json_str(&t->segments, f->text, f->len);
    if (f->n_words && !t->no_words) {
        bad |= buf_puts(&t->segments, ",\"words\":");
        size_t before = t->segments.len;
        wire_put_words(&t->segments, f->words, f->n_words);
        if (t->segments.len == before) bad = 1;
    }
    bad |= buf_puts(&t->segments, "}");
    if (t->text.len) bad |= buf_append(&t->text, " ", 1);
    bad |= buf_append(&t->text, f->text, f->len);
    if (bad) t->oom = 1;
    t->n_segments++;
}

static void tr_final(void *ctx, const struct sess_final *f) {
    struct transcribe *t = ctx;
    /* Not the empty final of stop (no utterance), nor after a failure. */
    if (t->state != TR_FAILED && !(f->len == 0 && f->start_ms == f->end_ms)) add_segment(t, f);
    feed(t); /* its finalize is done: room in the engine */
}

/* Everything is answered: report, and the transcription ends. As the
 * session's last act this may destroy it. */
static void finish(struct transcribe *t) {
    struct transcribe_result r = {.duration_ms = (uint64_t)t->pcm.n * 1000 / TRANSCRIBE_RATE};
    struct buf b;
    buf_init(&b, 0);
    if (t->state == TR_FAILED) {
        r.err = t->fail_err;
        r.fail_start_ms = t->fail_start_ms;
        r.fail_end_ms = t->fail_end_ms;
    } else {
        int bad = buf_puts(&b, "{\"text\":");
        bad |= buf_json_str(&b, t->text.data ? t->text.data : "", t->text.len);
        bad |= buf_printf(&b, ",\"duration_ms\":%llu,\"segments\":[", (unsigned long long)r.duration_ms);
        bad |= buf_append(&b, t->segments.data ? t->segments.data : "", t->segments.len);
        bad |= buf_puts(&b, "]}");
        if (bad || t->oom) {
            r.err = ASR_E_INTERNAL;
        } else {
            r.json = b.data;
            r.json_len = b.len;
            r.segments = t->n_segments;
        }
    }
    transcribe_done_fn done = t->done_fn;
    void *arg = t->done_arg;
    tr_close(t);
    done(arg, &r);
    buf_cleanup(&b);
}

static void tr_done(void *ctx) {
    struct transcribe *t = ctx;
    if (t->feeding) t->ended = 1; /* feed() finishes once the session returned */
    else finish(t);
}

static const struct sess_sink tr_sink = {
    .on_partial = tr_partial, .on_final = tr_final, .on_error = tr_error, .on_done = tr_done,
    .on_engine_error = tr_engine_error,
};

static void on_first_feed(uv_timer_t *h) {
    struct transcribe *t = h->data;
    t->state = TR_FEEDING;
    feed(t);
}

/* The budget was spent: more of the window goes in now. */
static void on_resume(uv_timer_t *h) {
    struct transcribe *t = h->data;
    if (t->state == TR_FEEDING) feed(t);
}

struct transcribe *transcribe_start(const struct transcribe_cfg *cfg, struct audio_pcm *pcm,
                                    transcribe_done_fn done, void *arg) {
    const struct config *c = cfg->env->cfg;
    struct sess_cfg scfg = {
        .sample_rate = TRANSCRIBE_RATE,
        .engine_rate = sess_rate_for(TRANSCRIBE_RATE, cfg->env->engine ? cfg->env->engine->sample_rate : 0),
        .pool = cfg->env->pool,
        .final_class = cfg->pool_class,
        .max_utterance_ms = (unsigned)c->max_utterance_ms,
        .hint = cfg->hint,
        .hint_len = cfg->hint_len,
        .max_chunk_bytes = TR_CHUNK_SAMPLES * 2,
        .rate_bytes_per_sec = (size_t)1 << 40, /* the window is the bound, not a rate */
        .max_pending_chunks = TR_WINDOW,
        .rate_abuse_threshold = 1 << 30,
        .vad = {.sample_rate = TRANSCRIBE_RATE, .frame_ms = (unsigned)c->vad_frame_ms, .mode = c->vad_mode,
                .endpointing_ms = cfg->endpointing_ms ? cfg->endpointing_ms : (unsigned)c->endpointing_ms},
        .kind = SESS_KIND_REST,
    };
    struct asr_session *s = sess_create(&scfg);
    if (!s) {
        audio_pcm_cleanup(pcm);
        return NULL;
    }
    struct transcribe *t = xcalloc(1, sizeof *t);
    t->state = TR_STARTING;
    t->sess = s;
    t->pcm = *pcm;
    memset(pcm, 0, sizeof *pcm);
    t->chunks = (t->pcm.n + TR_CHUNK_SAMPLES - 1) / TR_CHUNK_SAMPLES;
    t->done_fn = done;
    t->done_arg = arg;
    t->no_words = cfg->no_words;
    t->background = cfg->background;
    t->what = cfg->what ? cfg->what : "rest";
    snprintf(t->request_id, sizeof t->request_id, "%s", cfg->request_id ? cfg->request_id : "");
    buf_init(&t->segments, 0);
    buf_init(&t->text, 0);
    sess_transition(s, SESS_ACTIVE);
    sess_attach(s, &tr_sink, t);
    uv_timer_init(cfg->env->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_first_feed, 0, 0);
    return t;
}

int transcribe_error_json(struct buf *body, const struct transcribe_result *r) {
    int bad = buf_puts(body, "{\"error\":");
    bad |= transcribe_error_object(body, r);
    bad |= buf_puts(body, "}");
    return bad ? ASR_ENOMEM : 0;
}

int transcribe_error_object(struct buf *body, const struct transcribe_result *r) {
    int err = r->err;
    const char *what = err == ASR_E_ENGINE_BUSY ? "the engine refused (backlog full)"
                       : err == ASR_E_INTERNAL  ? "out of memory transcribing"
                                                : "the engine failed on";
    uint64_t a = r->fail_start_ms, b = r->fail_end_ms;
    char msg[160];
    snprintf(msg, sizeof msg, "%s the audio at %llu.%03llu-%llu.%03llu s", what, (unsigned long long)(a / 1000),
             (unsigned long long)(a % 1000), (unsigned long long)(b / 1000), (unsigned long long)(b % 1000));
    int bad = buf_puts(body, "{\"code\":");
    bad |= buf_json_str(body, asr_err_code(err), strlen(asr_err_code(err)));
    bad |= buf_puts(body, ",\"message\":");
    bad |= buf_json_str(body, msg, strlen(msg));
    bad |= buf_printf(body, ",\"start_ms\":%llu,\"end_ms\":%llu}", (unsigned long long)a, (unsigned long long)b);
    return bad ? ASR_ENOMEM : 0;
}
