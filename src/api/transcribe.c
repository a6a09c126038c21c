/* One audio file's transcription (transcribe.h), moved out of rest.c so
 * that the REST and OpenAI-compatible routes and the job runner share it. */
#include "api/transcribe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/wire.h"
#include "base/budget.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/audio.h"
#include "core/engine.h"

#define TX_CHUNK_SAMPLES 16000u
/* Decoded audio per block: 32 s (1 MB), twice the window below, so the next
 * block is decoded long before the session needs it. */
#define TX_BLOCK_SAMPLES (32u * TX_CHUNK_SAMPLES)
_Static_assert(TRANSCRIBE_DECODE_BYTES >= (size_t)2 * TX_BLOCK_SAMPLES * sizeof(int16_t) + ((size_t)1 << 21),
               "two blocks and the decoder's state");
_Static_assert(TRANSCRIBE_DECODE_BYTES <= CONFIG_UPLOAD_DECODE_BYTES, "the upload budget's room for decoding");
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

/* A transcription's life, forward only. DECODING: the decoder opens the body
 * and decodes the first block on the thread pool (after_decode ends it on a
 * decode error or moves on). FEEDING: the session takes the audio a window
 * at a time, while the next block is decoded on the pool. STOPPING: all
 * audio is in, the last final is on its way. FAILED: no more audio goes in
 * (the engine failed or refused, or the decoder broke part-way); the session
 * lets the engine finish what it holds (at most a window). on_done then
 * reports (the end or the failure) and releases it; transcribe_cancel (the
 * client gone) releases it at once, in any state. Released, it is freed as
 * soon as no work of its is on the thread pool. */
enum tx_state { TX_DECODING, TX_FEEDING, TX_STOPPING, TX_FAILED };

struct transcription {
    uv_work_t work;
    enum tx_state state;
    struct api_env *env;          /* borrowed */
    const struct transcribe_sink *sink; /* borrowed */
    void  *ctx;                   /* borrowed: the sink's; NULL once cancelled */
    struct buf body;              /* owned: adopted from the route; the decoder reads it to the end */
    size_t off, len;              /* the audio within body */
    char  *content_type;          /* owned */
    char  *hint;                  /* owned */
    size_t hint_len;
    int    partial_words;         /* opts.partial_words, and the engine is windowed */
    int    window;                /* chunks waiting for the engine at most */
    struct audio_decoder *dec;    /* owned; the pool's while work_busy */
    int16_t *blk[2];              /* owned: decoded audio, TX_BLOCK_SAMPLES each */
    size_t blk_n[2];              /* samples in each */
    int    cur;                   /* the block the session is fed from */
    size_t cur_off;               /* samples of it fed */
    int    next_ready;            /* blk[!cur] holds the next audio (work done) */
    int    dec_end;               /* the decoder gave its last samples */
    int    work_busy;             /* a work of this one is on the pool */
    int    work_slot;             /* the block it decodes into (set before it is queued) */
    int    released;              /* ended or cancelled: freed once the pool gave it back */
    size_t charged;               /* bytes charged to the upload budget for decoding */
    uint64_t total;               /* samples decoded so far */
    int    err;                   /* the pool's decode result */
    char   errmsg[160];
    struct asr_session *sess;     /* owned while transcribing */
    size_t fed;                   /* samples handed to the session */
    int    feeding;               /* feed() is on the stack: tx_done leaves the end to it */
    int    done;                  /* on_done fired while feeding */
    char   request_id[64];        /* for the log line of a failure */
    int    fail_err;              /* FAILED: the asr_err reported */
    int    fail_decode;           /* FAILED by the decoder: errmsg is the message */
    uint64_t fail_start_ms, fail_end_ms; /* FAILED: the audio it hit */
    enum pool_class pool_class;   /* POOL_REST or POOL_BATCH */
    unsigned endpointing_ms;      /* 0 = the server's */
    int    background;            /* opts.background */
    uv_timer_t timer;             /* background: the next slice of feeding (open when background) */
    uint64_t answered;            /* chunks the session answered (progress) */
    struct audio_input in;        /* the decoder's report after the last block (progress) */
};

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

/* Frees everything; a background one's struct goes with its timer's close. */
static void tx_free(struct transcription *t) {
    buf_cleanup(&t->body);
    free(t->content_type);
    free(t->hint);
    audio_decoder_close(t->dec);
    free(t->blk[0]);
    free(t->blk[1]);
    budget_release(t->env->upload_mem, t->charged);
    if (t->sess) sess_destroy(t->sess);
    if (t->background) uv_close((uv_handle_t *)&t->timer, on_timer_closed);
    else free(t);
}

/* Over (reported, or its client gone): the session goes now (sess_destroy
 * cancels the engine requests still out); the rest, which a work on the
 * pool may still be using, once that work is back. */
static void tx_release(struct transcription *t) {
    t->released = 1;
    t->ctx = NULL;
    if (t->background) uv_timer_stop(&t->timer);
    if (t->sess) {
        sess_destroy(t->sess);
        t->sess = NULL;
    }
    if (!t->work_busy) tx_free(t);
}

static uint64_t duration_ms(const struct transcription *t) { return t->total * 1000 / TRANSCRIBE_RATE; }

/* Reports the end to the sink (unless cancelled) and frees. As the
 * session's last act this may destroy it. */
static void tx_end(struct transcription *t, struct transcribe_end *e) {
    if (t->dec) {
        audio_decoder_input(t->dec, &e->input);
        e->has_input = 1;
    }
    if (t->ctx) t->sink->on_end(t->ctx, e);
    tx_release(t);
}

void transcribe_cancel(struct transcription *t) {
    if (t->state != TX_FAILED && !t->background) metrics.rest_failed[RFAIL_ABORTED]++;
    tx_release(t);
}

double transcribe_progress(const struct transcription *t) {
    if (t->state == TX_DECODING) return 0;
    uint64_t whole = t->total; /* samples decoded so far */
    if (!t->dec_end) {
        uint64_t stated = t->in.in_rate ? t->in.declared_frames * TRANSCRIBE_RATE / t->in.in_rate : 0;
        whole = stated > whole + TX_BLOCK_SAMPLES ? stated : whole + TX_BLOCK_SAMPLES;
    }
    if (!whole) return t->state == TX_FEEDING ? 0 : 1;
    double p = (double)(t->answered * TX_CHUNK_SAMPLES) / (double)whole;
    return p < 1 ? p : 1;
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
    if (status == ASR_EAGAIN || status == ASR_E_ENGINE_BUSY) t->fail_err = ASR_E_ENGINE_BUSY, cause = RFAIL_ENGINE_BUSY;
    else if (status == ASR_ENOMEM || status == ASR_E_INTERNAL) t->fail_err = ASR_E_INTERNAL, cause = RFAIL_INTERNAL;
    else t->fail_err = ASR_E_MODEL_ERROR, cause = RFAIL_MODEL_ERROR;
    t->fail_start_ms = start_ms;
    t->fail_end_ms = end_ms;
    if (!t->background) metrics.rest_failed[cause]++;
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

/* The decoder broke part-way through the file (damaged data, or the audio
 * passed an hour): the report is its error, as if it had been found before
 * the transcription began; nothing more goes in. */
static void tx_fail_decode(struct transcription *t, int err) {
    if (t->state == TX_FAILED) return;
    t->state = TX_FAILED;
    t->fail_decode = 1;
    t->fail_err = err;
    sess_drain(t->sess);
}

/* The span of chunk seq (numbered from 1, TX_CHUNK_SAMPLES each). */
static void chunk_span(const struct transcription *t, uint64_t seq, uint64_t *start_ms, uint64_t *end_ms) {
    uint64_t from = seq ? (seq - 1) * TX_CHUNK_SAMPLES : 0;
    uint64_t to = from + TX_CHUNK_SAMPLES < t->total ? from + TX_CHUNK_SAMPLES : t->total;
    *start_ms = from * 1000 / TRANSCRIBE_RATE;
    *end_ms = to * 1000 / TRANSCRIBE_RATE;
}

static void finish(struct transcription *t);
static void on_resume(uv_timer_t *h);
static void decode_work(uv_work_t *w);
static void after_decode(uv_work_t *w, int status);

/* Decodes the next block into blk[!cur] on the pool. */
static void decode_ahead(struct transcription *t) {
    if (t->work_busy || t->next_ready || t->dec_end) return;
    t->work_busy = 1;
    t->work_slot = !t->cur;
    if (uv_queue_work(t->env->loop, &t->work, decode_work, after_decode) != 0) {
        t->work_busy = 0;
        snprintf(t->errmsg, sizeof t->errmsg, "could not schedule decoding");
        tx_fail_decode(t, ASR_E_INTERNAL);
    }
}

/* The background feed budget of the loop's current millisecond (the loop
 * thread only): 1 when one more background chunk may go in now. */
static int bg_take(const struct transcription *t) {
    static uint64_t ms;
    static unsigned used;
    uint64_t now = uv_now(t->env->loop);
    if (now != ms) {
        ms = now;
        used = 0;
    }
    if (used >= TRANSCRIBE_BG_CHUNKS_PER_MS) return 0;
    used++;
    return 1;
}

/* Hands the session chunks until t->window are waiting for the engine (or
 * its engine requests near their bound), taking the next decoded block when
 * one is used up and asking for the one after it; when the decoder is not
 * ahead yet, after_decode calls again. After the last chunk it stops the
 * session (its last final follows; the 1 in TX_ENGINE_BUDGET is its
 * finalize). Called once the first block is decoded and again for every
 * partial and final, which covers every engine completion that can make
 * room. A background one stops when the millisecond's budget is spent and
 * goes on on the next one (on_resume). on_done may fire inside
 * sess_chunk/sess_stop when the call started here at the top of a loop
 * callback; it then only marks the transcription, and the end happens here,
 * after the session returned. */
static void feed(struct transcription *t) {
    t->feeding++;
    while (t->state == TX_FEEDING && sess_pending(t->sess) < t->window &&
           sess_engine_outstanding(t->sess) <= TX_ENGINE_BUDGET) {
        if (t->cur_off == t->blk_n[t->cur]) {
            if (!t->next_ready) break; /* the end, or the decoder is not there yet */
            t->cur = !t->cur;
            t->cur_off = 0;
            t->next_ready = 0;
            decode_ahead(t);
            continue;
        }
        if (t->background && !bg_take(t)) {
            if (!uv_is_active((uv_handle_t *)&t->timer)) uv_timer_start(&t->timer, on_resume, 1, 0);
            break;
        }
        size_t off = t->cur_off, left = t->blk_n[t->cur] - off;
        size_t n = left < TX_CHUNK_SAMPLES ? left : TX_CHUNK_SAMPLES;
        t->cur_off += n;
        t->fed += n;
        sess_chunk(t->sess, (const uint8_t *)(t->blk[t->cur] + off), n * 2, 0, 0, 0, util_now_ns());
    }
    if (t->state == TX_FEEDING && t->dec_end && !t->next_ready && t->cur_off == t->blk_n[t->cur] &&
        sess_engine_outstanding(t->sess) <= TX_ENGINE_BUDGET) {
        t->state = TX_STOPPING;
        sess_stop(t->sess);
    }
    t->feeding--;
    if (!t->feeding && t->done) finish(t);
}

/* The budget was spent: more of the window goes in now. */
static void on_resume(uv_timer_t *h) {
    struct transcription *t = h->data;
    if (!t->released && t->state == TX_FEEDING) feed(t);
}

static void tx_partial(void *ctx, const struct sess_partial *p) {
    struct transcription *t = ctx;
    t->answered++;
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
    if (has_seq) t->answered++;
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
    if (t->state == TX_FAILED && t->fail_decode) {
        e.err = t->fail_err;
        e.msg = t->errmsg[0] ? t->errmsg : asr_strerror(t->fail_err);
    } else if (t->state == TX_FAILED) {
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

/* On the pool: the next block into blk[work_slot] (the first into blk[0],
 * after opening the decoder). Only this transcription's decoder and that
 * block are touched. */
static void decode_work(uv_work_t *w) {
    struct transcription *t = w->data;
    if (!t->dec) {
        t->err = audio_decoder_open((const uint8_t *)t->body.data + t->off, t->len, t->content_type,
                                    TRANSCRIBE_RATE, TRANSCRIBE_MAX_SAMPLES, &t->dec, t->errmsg, sizeof t->errmsg);
        if (t->err != 0) return;
    }
    int slot = t->work_slot;
    t->err = audio_decoder_read(t->dec, t->blk[slot], TX_BLOCK_SAMPLES, &t->blk_n[slot], t->errmsg,
                                sizeof t->errmsg);
}

static int start_session(struct transcription *t);

/* A block is decoded (or the decoder failed). The first: the transcription
 * starts, or the decode error is the end. A later one: feeding goes on, or
 * the transcription fails with the decoder's error. */
static void after_decode(uv_work_t *w, int status) {
    struct transcription *t = w->data;
    t->work_busy = 0;
    if (t->released) {
        tx_free(t);
        return;
    }
    int err = status != 0 ? ASR_E_INTERNAL : t->err;
    int slot = t->work_slot;
    if (t->state == TX_DECODING) {
        if (err != 0) {
            struct transcribe_end e = {.err = err, .msg = t->errmsg[0] ? t->errmsg : asr_strerror(err)};
            tx_end(t, &e);
            return;
        }
        t->total = t->blk_n[0];
        t->dec_end = t->blk_n[0] < TX_BLOCK_SAMPLES;
        audio_decoder_input(t->dec, &t->in);
        if (start_session(t) != 0) return;
        decode_ahead(t);
        feed(t);
        return;
    }
    if (t->state != TX_FEEDING) return; /* failed or stopping meanwhile: the block is not needed */
    if (err != 0) {
        tx_fail_decode(t, err);
        return;
    }
    t->total += t->blk_n[slot];
    if (t->blk_n[slot] < TX_BLOCK_SAMPLES) t->dec_end = 1;
    audio_decoder_input(t->dec, &t->in);
    t->next_ready = t->blk_n[slot] > 0;
    feed(t);
}

/* The first block is decoded: the session that transcribes it all. -1
 * when it could not be made (the end is reported). */
static int start_session(struct transcription *t) {
    const struct config *c = t->env->cfg;
    int windows = t->partial_words;
    struct sess_cfg scfg = {
        .sample_rate = TRANSCRIBE_RATE,
        .engine_rate = sess_rate_for(TRANSCRIBE_RATE, t->env->engine ? t->env->engine->sample_rate : 0),
        .pool = t->env->pool,
        .final_class = t->pool_class,
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
                .endpointing_ms = t->endpointing_ms ? t->endpointing_ms : (unsigned)c->endpointing_ms},
        .kind = SESS_KIND_REST,
    };
    t->sess = sess_create(&scfg);
    if (!t->sess) {
        if (!t->background) metrics.rest_failed[RFAIL_INTERNAL]++;
        struct transcribe_end e = {.err = ASR_E_INTERNAL, .msg = "could not create a session"};
        tx_end(t, &e);
        return -1;
    }
    sess_transition(t->sess, SESS_ACTIVE);
    sess_attach(t->sess, &tx_sink, t);
    t->state = TX_FEEDING;
    if (t->sink->on_start) t->sink->on_start(t->ctx);
    return 0;
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
    t->pool_class = opts->pool_class == POOL_BATCH ? POOL_BATCH : POOL_REST;
    t->endpointing_ms = opts->endpointing_ms;
    t->background = opts->background;
    if (t->background) {
        uv_timer_init(env->loop, &t->timer);
        t->timer.data = t;
    }
    /* The decoding's memory, beside the body the HTTP layer charged. */
    if (budget_try_charge(env->upload_mem, TRANSCRIBE_DECODE_BYTES) != 0) {
        tx_free(t);
        return ASR_E_SERVER_BUSY;
    }
    t->charged = TRANSCRIBE_DECODE_BYTES;
    t->blk[0] = xmalloc(TX_BLOCK_SAMPLES * sizeof(int16_t)); /* program-sized, charged above */
    t->blk[1] = xmalloc(TX_BLOCK_SAMPLES * sizeof(int16_t));
    t->work.data = t;
    t->work_busy = 1;
    t->work_slot = 0;
    if (uv_queue_work(env->loop, &t->work, decode_work, after_decode) != 0) {
        t->work_busy = 0;
        tx_free(t);
        return ASR_E_INTERNAL;
    }
    *out = t;
    return 0;
}

/* ---- the answer ---------------------------------------------------------------- */

void transcript_init(struct transcript *tr, int no_words) {
    memset(tr, 0, sizeof *tr);
    buf_init(&tr->segments, 0);
    buf_init(&tr->text, 0);
    tr->no_words = no_words;
}

void transcript_cleanup(struct transcript *tr) {
    buf_cleanup(&tr->segments);
    buf_cleanup(&tr->text);
}

void transcript_add(struct transcript *tr, const struct sess_final *f) {
    int bad = buf_printf(&tr->segments, "%s{\"start_ms\":%llu,\"end_ms\":%llu,\"text\":",
                         tr->n_segments ? "," : "", (unsigned long long)f->start_ms,
                         (unsigned long long)f->end_ms);
    bad |= buf_json_str(&tr->segments, f->text, f->len);
    if (f->n_words && !tr->no_words) {
        bad |= buf_puts(&tr->segments, ",\"words\":");
        size_t before = tr->segments.len;
        wire_put_words(&tr->segments, f->words, f->n_words);
        if (tr->segments.len == before) bad = 1;
    }
    bad |= buf_puts(&tr->segments, "}");
    if (tr->text.len) bad |= buf_append(&tr->text, " ", 1);
    bad |= buf_append(&tr->text, f->text, f->len);
    if (bad) tr->oom = 1;
    tr->n_segments++;
}

/* The "input" object: what the decoder found of the file against its header. */
static int put_input(const struct audio_input *in, struct buf *b) {
    int bad = buf_printf(b, ",\"input\":{\"truncated\":%s,\"declared_ms\":", in->truncated ? "true" : "false");
    if (in->declared_frames && in->in_rate)
        bad |= buf_printf(b, "%llu", (unsigned long long)(in->declared_frames * 1000 / in->in_rate));
    else
        bad |= buf_puts(b, "null");
    bad |= buf_printf(b, ",\"trailing_bytes\":%llu}", (unsigned long long)in->trailing_bytes);
    return bad;
}

int transcript_json(const struct transcript *tr, const struct transcribe_end *e, struct buf *out) {
    int bad = buf_puts(out, "{\"text\":");
    bad |= buf_json_str(out, tr->text.data ? tr->text.data : "", tr->text.len);
    bad |= buf_printf(out, ",\"duration_ms\":%llu", (unsigned long long)e->duration_ms);
    if (e->has_input) bad |= put_input(&e->input, out);
    bad |= buf_puts(out, ",\"segments\":[");
    bad |= buf_append(out, tr->segments.data ? tr->segments.data : "", tr->segments.len);
    bad |= buf_puts(out, "]}");
    return bad || tr->oom ? ASR_ENOMEM : 0;
}

int transcribe_error_object(struct buf *out, const struct transcribe_end *e) {
    const char *code = asr_err_code(e->err);
    const char *msg = e->msg ? e->msg : asr_strerror(e->err);
    int bad = buf_puts(out, "{\"code\":");
    bad |= buf_json_str(out, code, strlen(code));
    bad |= buf_puts(out, ",\"message\":");
    bad |= buf_json_str(out, msg, strlen(msg));
    if (e->has_span)
        bad |= buf_printf(out, ",\"start_ms\":%llu,\"end_ms\":%llu", (unsigned long long)e->start_ms,
                          (unsigned long long)e->end_ms);
    bad |= buf_puts(out, "}");
    return bad ? ASR_ENOMEM : 0;
}

int transcribe_error_json(struct buf *out, const struct transcribe_end *e) {
    int bad = buf_puts(out, "{\"error\":");
    bad |= transcribe_error_object(out, e);
    bad |= buf_puts(out, "}");
    return bad ? ASR_ENOMEM : 0;
}
