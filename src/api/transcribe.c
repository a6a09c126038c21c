/* One uploaded file's transcription (transcribe.h), moved out of rest.c so
 * that the REST and OpenAI-compatible routes share it. */
#include "api/transcribe.h"

#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/audio.h"
#include "core/engine.h"

#define TX_CHUNK_SAMPLES 16000u
/* Chunks (seconds of audio) of one upload waiting for the engine at a time
 * (docs/internals/chunk-pipeline.md, "REST uploads"): each answered chunk
 * lets the next one in. 16 is what a stream may have waiting by default
 * (ASR_MAX_PENDING_CHUNKS), so an upload weighs on the engine like one busy
 * stream; a refill of the whole window is about 2 ms of work (VAD, engine
 * calls) in one loop turn; and with the mock's 50 ms an hour of audio takes
 * about 13 s.
 * Independently, a chunk only goes in while the session's engine requests
 * leave room for the most one chunk can make, so the engine wrappers never
 * refuse an upload for its own backlog (ENGINE_MAX_OUTSTANDING). */
#define TX_WINDOW 16
/* With partial words (a windowed engine's stable words as they come, for
 * stream=true): two chunks at a time, so that a window comes due with every
 * second of audio or two and is not skipped for the one still out (a
 * session has one window job at a time); a windowed engine decodes a
 * session's jobs one after the other anyway, so the upload is hardly
 * slower, but its windows cost engine time (docs/internals/windowed-streaming.md, "Cost"). */
#define TX_WINDOW_WORDS 2
#define TX_ENGINE_BUDGET (ENGINE_MAX_OUTSTANDING - SESS_MAX_REQUESTS_PER_CHUNK - 1)

/* A transcription's life, forward only. DECODING: on the thread pool
 * (after_decode ends it on a decode error or moves on). FEEDING: the session
 * takes the audio a window at a time. STOPPING: all audio is in, the last
 * final is on its way. FAILED: no more audio goes in; the session lets the
 * engine finish what it holds (at most a window). on_done then reports (the
 * end or the failure) and frees it; transcribe_cancel (the client gone)
 * frees it at once, in any state but DECODING, where after_decode does. */
enum tx_state { TX_DECODING, TX_FEEDING, TX_STOPPING, TX_FAILED };

struct transcription {
    uv_work_t work;
    enum tx_state state;
    struct api_env *env;          /* borrowed */
    const struct transcribe_sink *sink; /* borrowed */
    void  *ctx;                   /* borrowed: the sink's; NULL once cancelled */
    struct buf body;              /* owned: adopted from the route; freed after decoding */
    size_t off, len;              /* the audio within body */
    char  *content_type;          /* owned */
    char  *hint;                  /* owned */
    size_t hint_len;
    int    partial_words;         /* opts.partial_words, and the engine is windowed */
    int    window;                /* chunks waiting for the engine at most */
    struct audio_pcm pcm;         /* owned: decoded audio */
    int    err;                   /* decode result */
    char   errmsg[160];
    struct asr_session *sess;     /* owned while transcribing */
    size_t fed;                   /* samples handed to the session */
    int    feeding;               /* feed() is on the stack: tx_done leaves the end to it */
    int    done;                  /* on_done fired while feeding */
    char   request_id[64];        /* for the log line of a failure */
    int    fail_err;              /* FAILED: the asr_err reported */
    uint64_t fail_start_ms, fail_end_ms; /* FAILED: the audio it hit */
};

static void tx_free(struct transcription *t) {
    buf_cleanup(&t->body);
    free(t->content_type);
    free(t->hint);
    audio_pcm_cleanup(&t->pcm);
    if (t->sess) sess_destroy(t->sess);
    free(t);
}

static uint64_t duration_ms(const struct transcription *t) { return (uint64_t)t->pcm.n * 1000 / TRANSCRIBE_RATE; }

/* Reports the end to the sink (unless cancelled) and frees. As the
 * session's last act this may destroy it. */
static void tx_end(struct transcription *t, const struct transcribe_end *e) {
    if (t->ctx) t->sink->on_end(t->ctx, e);
    tx_free(t);
}

void transcribe_cancel(struct transcription *t) {
    t->ctx = NULL;
    if (t->state != TX_FAILED) metrics.rest_failed[RFAIL_ABORTED]++;
    if (t->state != TX_DECODING) tx_free(t);
    /* else decoding on the pool: after_decode frees it */
}

/* The first failure ends the transcription (docs/API.md "POST
 * /v1/transcribe", errors): no more audio goes in, and the session drains
 * what the engine still holds; then on_done reports the error with the
 * span of audio it hit. Later failures are ignored. Runs inside the
 * session's callbacks. */
static void tx_fail(struct transcription *t, int status, uint64_t start_ms, uint64_t end_ms) {
    if (t->state == TX_FAILED) return;
    t->state = TX_FAILED;
    int cause;
    if (status == ASR_EAGAIN) t->fail_err = ASR_E_ENGINE_BUSY, cause = RFAIL_ENGINE_BUSY;
    else if (status == ASR_ENOMEM || status == ASR_E_INTERNAL) t->fail_err = ASR_E_INTERNAL, cause = RFAIL_INTERNAL;
    else t->fail_err = ASR_E_MODEL_ERROR, cause = RFAIL_MODEL_ERROR;
    t->fail_start_ms = start_ms;
    t->fail_end_ms = end_ms;
    metrics.rest_failed[cause]++;
    struct log_line *l = log_begin(LOG_WARN, "transcription failed");
    if (l) {
        log_str(l, "request_id", t->request_id);
        log_str(l, "code", asr_err_code(t->fail_err));
        log_str(l, "engine_status", asr_strerror(status));
        log_u64(l, "start_ms", start_ms);
        log_u64(l, "end_ms", end_ms);
        log_end(l);
    }
    sess_drain(t->sess);
}

/* The span of chunk seq (numbered from 1, TX_CHUNK_SAMPLES each). */
static void chunk_span(const struct transcription *t, uint64_t seq, uint64_t *start_ms, uint64_t *end_ms) {
    uint64_t from = seq ? (seq - 1) * TX_CHUNK_SAMPLES : 0;
    uint64_t to = from + TX_CHUNK_SAMPLES < t->pcm.n ? from + TX_CHUNK_SAMPLES : t->pcm.n;
    *start_ms = from * 1000 / TRANSCRIBE_RATE;
    *end_ms = to * 1000 / TRANSCRIBE_RATE;
}

static void finish(struct transcription *t);

/* Hands the session chunks until t->window are waiting for the engine (or
 * its engine requests near their bound), then, after the last one, stops it
 * (its last final follows; the 1 in TX_ENGINE_BUDGET is its finalize).
 * Called once the audio is decoded and again for every partial and final,
 * which covers every engine completion that can make room. on_done may fire
 * inside sess_chunk/sess_stop when the call started here at the top of a
 * loop callback; it then only marks the transcription, and the end happens
 * here, after the session returned. */
static void feed(struct transcription *t) {
    t->feeding++;
    while (t->state == TX_FEEDING && sess_pending(t->sess) < t->window &&
           sess_engine_outstanding(t->sess) <= TX_ENGINE_BUDGET && t->fed < t->pcm.n) {
        size_t off = t->fed;
        size_t n = t->pcm.n - off < TX_CHUNK_SAMPLES ? t->pcm.n - off : TX_CHUNK_SAMPLES;
        t->fed += n;
        sess_chunk(t->sess, (const uint8_t *)(t->pcm.samples + off), n * 2, 0, 0, 0, util_now_ns());
    }
    if (t->state == TX_FEEDING && t->fed == t->pcm.n && sess_engine_outstanding(t->sess) <= TX_ENGINE_BUDGET) {
        t->state = TX_STOPPING;
        sess_stop(t->sess);
    }
    t->feeding--;
    if (!t->feeding && t->done) finish(t);
}

static void tx_partial(void *ctx, const struct sess_partial *p) {
    struct transcription *t = ctx;
    /* Only a windowed engine's partial text is committed words; a
     * per-chunk engine's is that chunk's guess. */
    if (t->partial_words && p->len && t->state != TX_FAILED && t->ctx && t->sink->on_words)
        t->sink->on_words(t->ctx, p->text, p->len);
    feed(t); /* one chunk answered: room for the next */
}

/* Every engine failure is reported here first (with its span) and, for a
 * chunk, again as on_error MODEL_ERROR; tx_fail keeps the first. Other
 * errors (the session refusing a chunk) cannot happen with this session's
 * limits but would fail the transcription the same way. */
static void tx_engine_error(void *ctx, int status, int is_final, uint64_t seq, uint64_t start_ms, uint64_t end_ms) {
    tx_fail(ctx, status, start_ms, end_ms);
}

static void tx_error(void *ctx, int err, int has_seq, uint64_t seq, const char *msg) {
    struct transcription *t = ctx;
    uint64_t a = 0, b = 0;
    if (has_seq) chunk_span(t, seq, &a, &b);
    tx_fail(t, err == ASR_E_MODEL_ERROR ? err : ASR_E_INTERNAL, a, b);
}

static void tx_final(void *ctx, const struct sess_final *f) {
    struct transcription *t = ctx;
    /* Not the empty final of stop (no utterance), nor after a failure. */
    if (t->state != TX_FAILED && t->ctx && !(f->len == 0 && f->start_ms == f->end_ms))
        t->sink->on_segment(t->ctx, f);
    feed(t); /* its finalize is done: room in the engine */
}

/* Everything is answered: the end or the failure is reported, and the
 * transcription is freed. */
static void finish(struct transcription *t) {
    struct transcribe_end e = {.duration_ms = duration_ms(t)};
    char msg[160];
    if (t->state == TX_FAILED) {
        int err = t->fail_err;
        const char *what = err == ASR_E_ENGINE_BUSY ? "the engine refused (backlog full)"
                           : err == ASR_E_INTERNAL  ? "out of memory transcribing"
                                                    : "the engine failed on";
        uint64_t a = t->fail_start_ms, b = t->fail_end_ms;
        snprintf(msg, sizeof msg, "%s the audio at %llu.%03llu-%llu.%03llu s", what,
                 (unsigned long long)(a / 1000), (unsigned long long)(a % 1000), (unsigned long long)(b / 1000),
                 (unsigned long long)(b % 1000));
        e.err = err;
        e.msg = msg;
        e.has_span = 1;
        e.start_ms = a;
        e.end_ms = b;
    }
    tx_end(t, &e);
}

static void tx_done(void *ctx) {
    struct transcription *t = ctx;
    if (t->feeding) t->done = 1; /* feed() finishes once the session returned */
    else finish(t);
}

static const struct sess_sink tx_sink = {
    .on_partial = tx_partial, .on_final = tx_final, .on_error = tx_error, .on_done = tx_done,
    .on_engine_error = tx_engine_error,
};

static void decode_work(uv_work_t *w) {
    struct transcription *t = w->data;
    t->err = audio_decode((const uint8_t *)t->body.data + t->off, t->len, t->content_type, TRANSCRIBE_RATE,
                          TRANSCRIBE_MAX_SAMPLES, &t->pcm, t->errmsg, sizeof t->errmsg);
}

static void after_decode(uv_work_t *w, int status) {
    struct transcription *t = w->data;
    buf_cleanup(&t->body);
    if (!t->ctx) {
        tx_free(t);
        return;
    }
    if (status != 0 || t->err != 0) {
        struct transcribe_end e = {.err = status != 0 ? ASR_E_INTERNAL : t->err,
                                   .msg = t->errmsg[0] ? t->errmsg : asr_strerror(status != 0 ? ASR_E_INTERNAL : t->err)};
        tx_end(t, &e);
        return;
    }
    const struct config *c = t->env->cfg;
    int windows = t->partial_words;
    struct sess_cfg scfg = {
        .sample_rate = TRANSCRIBE_RATE,
        .engine_rate = sess_rate_for(TRANSCRIBE_RATE, t->env->engine ? t->env->engine->sample_rate : 0),
        .pool = t->env->pool,
        .final_class = POOL_REST,
        .window_ms = windows ? (unsigned)c->window_ms : 0,
        .window_wait = 1, /* a file is fed as fast as it is answered: at the windows' pace */
        .window_overlap_ms = windows ? (unsigned)c->window_overlap_ms : 0,
        .max_utterance_ms = (unsigned)c->max_utterance_ms,
        .hint = t->hint,
        .hint_len = t->hint_len,
        .max_chunk_bytes = TX_CHUNK_SAMPLES * 2,
        .rate_bytes_per_sec = (size_t)1 << 40, /* the window is the bound, not a rate */
        .max_pending_chunks = TX_WINDOW,
        .rate_abuse_threshold = 1 << 30,
        .vad = {.sample_rate = TRANSCRIBE_RATE, .frame_ms = (unsigned)c->vad_frame_ms, .mode = c->vad_mode,
                .endpointing_ms = (unsigned)c->endpointing_ms},
        .kind = SESS_KIND_REST,
    };
    t->sess = sess_create(&scfg);
    if (!t->sess) {
        metrics.rest_failed[RFAIL_INTERNAL]++;
        struct transcribe_end e = {.err = ASR_E_INTERNAL, .msg = "could not create a session",
                                   .duration_ms = duration_ms(t)};
        tx_end(t, &e);
        return;
    }
    sess_transition(t->sess, SESS_ACTIVE);
    sess_attach(t->sess, &tx_sink, t);
    t->state = TX_FEEDING;
    if (t->sink->on_start) t->sink->on_start(t->ctx, duration_ms(t));
    feed(t);
}

int transcribe_start(struct api_env *env, struct buf *body, size_t off, size_t len,
                     const struct transcribe_opts *opts, const struct transcribe_sink *sink, void *ctx,
                     struct transcription **out) {
    struct transcription *t = xcalloc(1, sizeof *t);
    t->env = env;
    t->sink = sink;
    t->ctx = ctx;
    t->body = *body; /* adopt the body */
    buf_init(body, 0);
    t->off = off <= t->body.len ? off : t->body.len;
    t->len = len <= t->body.len - t->off ? len : t->body.len - t->off;
    t->content_type = opts->content_type ? xstrdup(opts->content_type) : NULL;
    if (opts->hint && opts->hint_len) {
        t->hint = malloc(opts->hint_len + 1); /* sized by the client: fallible */
        if (!t->hint) {
            tx_free(t);
            return ASR_E_INTERNAL;
        }
        memcpy(t->hint, opts->hint, opts->hint_len);
        t->hint[opts->hint_len] = '\0';
        t->hint_len = opts->hint_len;
    }
    t->partial_words = opts->partial_words && env->pool;
    t->window = t->partial_words ? TX_WINDOW_WORDS : TX_WINDOW;
    snprintf(t->request_id, sizeof t->request_id, "%s", opts->request_id ? opts->request_id : "");
    t->work.data = t;
    if (uv_queue_work(env->loop, &t->work, decode_work, after_decode) != 0) {
        tx_free(t);
        return ASR_E_INTERNAL;
    }
    *out = t;
    return 0;
}
