/* docs/API.md "POST /v1/transcribe".
 *
 * A transcription decodes and resamples the upload on the libuv thread pool
 * (libsndfile + soxr are CPU-bound) a block at a time, one block ahead of the
 * session, which runs the audio on the loop exactly as a stream would (VAD,
 * engine, endpointing), a window of chunks at a time. It answers with its
 * finals as segments and what the decoder found of the input (cut short,
 * bytes after the audio); or, at the first part of the audio the engine
 * fails on or refuses, or the decoder cannot decode, with an error naming
 * it. The memory it holds beside its body is two blocks and the decoder's
 * state, charged to the worker's upload budget (503 when it has no room). */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/wire.h"
#include "core/audio.h"
#include "base/budget.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/engine.h"
#include "core/session.h"

/* Longest audio a REST upload may decode to (a small compressed file can
 * expand a lot): one hour at 16 kHz. */
#define REST_MAX_SAMPLES (16000u * 3600u)
#define REST_RATE 16000u
#define REST_CHUNK_SAMPLES 16000u
/* Decoded audio per block: 32 s (1 MB), twice the window below, so the next
 * block is decoded long before the session needs it. */
#define REST_BLOCK_SAMPLES (32u * REST_CHUNK_SAMPLES)
/* What one transcription charges to the upload budget beside its body: its
 * two blocks and the decoder (an input block and its resampled output,
 * libsndfile's and soxr's state; a FLAC frame of 8 channels is 2 MB of
 * libFLAC's at most, which this leaves room for). */
#define REST_DECODE_BYTES ((size_t)2 * REST_BLOCK_SAMPLES * sizeof(int16_t) + ((size_t)1 << 21))
_Static_assert(REST_DECODE_BYTES <= CONFIG_UPLOAD_DECODE_BYTES, "the upload budget's room for decoding");
#define REST_WINDOW 16
#define REST_ENGINE_BUDGET (ENGINE_MAX_OUTSTANDING - SESS_MAX_REQUESTS_PER_CHUNK - 1)

/* A transcription's life, forward only. DECODING: the decoder opens the body
 * and decodes the first block on the thread pool (after_open answers a
 * decode error or moves on). FEEDING: the session takes the audio a window
 * at a time, while the next block is decoded on the pool. STOPPING: all
 * audio is in, the last final is on its way. FAILED: no more audio goes in
 * (the engine failed or refused, or the decoder broke part-way); the session
 * lets the engine finish what it holds (at most a window). on_done then
 * answers (200 or the error) and releases the job; job_abort (the client
 * gone) releases it at once, in any state. Released, the job is freed as
 * soon as no work of its is on the pool. The job keeps its connection busy
 * until it ends, so a draining worker waits for it. */
enum rest_state { REST_DECODING, REST_FEEDING, REST_STOPPING, REST_FAILED };

struct rest_job {
    uv_work_t work;
    enum rest_state state;
    struct api_env *env;          /* borrowed */
    struct http_conn *hc;         /* borrowed; NULL once answered or the client is gone */
    struct buf body;              /* owned: adopted from the request; the decoder reads it to the end */
    char  *content_type;          /* owned */
    struct audio_decoder *dec;    /* owned; the pool's while work_busy */
    int16_t *blk[2];              /* owned: decoded audio, REST_BLOCK_SAMPLES each */
    size_t blk_n[2];              /* samples in each */
    int    cur;                   /* the block the session is fed from */
    size_t cur_off;               /* samples of it fed */
    int    next_ready;            /* blk[!cur] holds the next audio (work done) */
    int    dec_end;               /* the decoder gave its last samples */
    int    work_busy;             /* a work of this job is on the pool */
    int    work_slot;             /* the block it decodes into (set before it is queued) */
    int    released;              /* answered or abandoned: freed once the pool gave the job back */
    size_t charged;               /* bytes charged to the upload budget for decoding */
    int    err;                   /* the pool's decode result */
    char   errmsg[160];
    uint64_t total;               /* samples decoded so far */
    struct asr_session *sess;     /* owned while transcribing */
    size_t fed;                   /* samples handed to the session */
    int    feeding;               /* feed() is on the stack: rest_done leaves the end to it */
    int    done;                  /* on_done fired while feeding */
    char   request_id[64];        /* for the log line of a failure */
    struct buf segments;          /* JSON array body of segments */
    struct buf text;              /* all finals joined */
    int    n_segments;
    int    oom;                   /* segments or text could not grow: answer 500, not a cut list */
    int    fail_err;              /* FAILED: the asr_err answered */
    int    fail_decode;           /* FAILED by the decoder: errmsg is the answer's message */
    uint64_t fail_start_ms, fail_end_ms; /* FAILED: the audio it hit */
};

static void job_free(struct rest_job *j) {
    buf_cleanup(&j->body);
    free(j->content_type);
    audio_decoder_close(j->dec);
    free(j->blk[0]);
    free(j->blk[1]);
    budget_release(j->env->upload_mem, j->charged);
    if (j->sess) sess_destroy(j->sess);
    buf_cleanup(&j->segments);
    buf_cleanup(&j->text);
    free(j);
}

/* The job is over (answered, or its client gone): the session goes now
 * (sess_destroy cancels the engine requests still out); the rest, which a
 * work on the pool may still be using, once that work is back. */
static void job_release(struct rest_job *j) {
    j->released = 1;
    j->hc = NULL;
    if (j->sess) {
        sess_destroy(j->sess);
        j->sess = NULL;
    }
    if (!j->work_busy) job_free(j);
}

/* The connection closed before the answer. Called by the HTTP layer when
 * it frees the connection, never from inside a session callback, so a
 * transcription in progress can be dropped at once. A job that had failed
 * already was counted then. */
static void job_abort(void *ctx) {
    struct rest_job *j = ctx;
    j->hc = NULL;
    if (j->state != REST_FAILED) metrics.rest_failed[RFAIL_ABORTED]++;
    job_release(j);
}

#define OOM_BODY "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}"

static void respond_and_forget(struct rest_job *j, int status, const char *body, size_t len,
                               const char *extra) {
    struct http_conn *hc = j->hc;
    j->hc = NULL;
    if (!hc) return;
    http_set_abort(hc, NULL, NULL);
    http_respond(hc, status, "application/json", body, len, extra);
}

/* The first failure ends the request (docs/API.md "POST /v1/transcribe",
 * errors): no more audio goes in, and the session drains what the engine
 * still holds; then on_done answers the error with the span of audio it hit.
 * Later failures of the same job are ignored. Runs inside the session's
 * callbacks, or after a decode on the pool. */
static void job_fail(struct rest_job *j, int status, uint64_t start_ms, uint64_t end_ms) {
    if (j->state == REST_FAILED) return;
    j->state = REST_FAILED;
    int cause;
    if (status == ASR_EAGAIN) j->fail_err = ASR_E_ENGINE_BUSY, cause = RFAIL_ENGINE_BUSY;
    else if (status == ASR_ENOMEM || status == ASR_E_INTERNAL) j->fail_err = ASR_E_INTERNAL, cause = RFAIL_INTERNAL;
    else j->fail_err = ASR_E_MODEL_ERROR, cause = RFAIL_MODEL_ERROR;
    j->fail_start_ms = start_ms;
    j->fail_end_ms = end_ms;
    metrics.rest_failed[cause]++;
    struct log_line *l = log_begin(LOG_WARN, "transcription failed");
    if (l) {
        log_str(l, "request_id", j->request_id);
        log_str(l, "code", asr_err_code(j->fail_err));
        log_str(l, "engine_status", asr_strerror(status));
        log_u64(l, "start_ms", start_ms);
        log_u64(l, "end_ms", end_ms);
        log_end(l);
    }
    sess_drain(j->sess);
}

/* The decoder broke part-way through the file (damaged data, or the audio
 * passed an hour): the answer is its error, as if it had been found before
 * the transcription began; nothing more goes in. */
static void job_fail_decode(struct rest_job *j, int err) {
    if (j->state == REST_FAILED) return;
    j->state = REST_FAILED;
    j->fail_decode = 1;
    j->fail_err = err;
    sess_drain(j->sess);
}

/* The error answer of a failed job, with the span it hit. */
static void respond_failure(struct rest_job *j) {
    int err = j->fail_err;
    if (j->fail_decode) {
        struct http_conn *hc = j->hc;
        j->hc = NULL;
        if (!hc) return;
        http_set_abort(hc, NULL, NULL);
        http_respond_err(hc, err, j->errmsg[0] ? j->errmsg : NULL);
        return;
    }
    const char *what = err == ASR_E_ENGINE_BUSY ? "the engine refused (backlog full)"
                       : err == ASR_E_INTERNAL  ? "out of memory transcribing"
                                                : "the engine failed on";
    uint64_t a = j->fail_start_ms, b = j->fail_end_ms;
    char msg[160];
    snprintf(msg, sizeof msg, "%s the audio at %llu.%03llu-%llu.%03llu s", what, (unsigned long long)(a / 1000),
             (unsigned long long)(a % 1000), (unsigned long long)(b / 1000), (unsigned long long)(b % 1000));
    struct buf body;
    buf_init(&body, 0);
    int bad = buf_puts(&body, "{\"error\":{\"code\":");
    bad |= buf_json_str(&body, asr_err_code(err), strlen(asr_err_code(err)));
    bad |= buf_puts(&body, ",\"message\":");
    bad |= buf_json_str(&body, msg, strlen(msg));
    bad |= buf_printf(&body, ",\"start_ms\":%llu,\"end_ms\":%llu}}", (unsigned long long)a, (unsigned long long)b);
    if (!bad)
        respond_and_forget(j, asr_err_http_status(err), body.data, body.len,
                           err == ASR_E_ENGINE_BUSY ? "Retry-After: 1\r\n" : NULL);
    else
        respond_and_forget(j, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
    buf_cleanup(&body);
}

/* The span of chunk seq (numbered from 1, REST_CHUNK_SAMPLES each). */
static void chunk_span(const struct rest_job *j, uint64_t seq, uint64_t *start_ms, uint64_t *end_ms) {
    uint64_t from = seq ? (seq - 1) * REST_CHUNK_SAMPLES : 0;
    uint64_t to = from + REST_CHUNK_SAMPLES < j->total ? from + REST_CHUNK_SAMPLES : j->total;
    *start_ms = from * 1000 / REST_RATE;
    *end_ms = to * 1000 / REST_RATE;
}

static void finish(struct rest_job *j);
static void decode_work(uv_work_t *w);
static void after_decode(uv_work_t *w, int status);

/* Decodes the next block into blk[!cur] on the pool. */
static void decode_ahead(struct rest_job *j) {
    if (j->work_busy || j->next_ready || j->dec_end) return;
    j->work_busy = 1;
    j->work_slot = !j->cur;
    if (uv_queue_work(j->env->loop, &j->work, decode_work, after_decode) != 0) {
        j->work_busy = 0;
        snprintf(j->errmsg, sizeof j->errmsg, "could not schedule decoding");
        job_fail_decode(j, ASR_E_INTERNAL);
    }
}

/* Hands the session chunks until REST_WINDOW are waiting for the engine (or
 * its engine requests near their bound), taking the next decoded block when
 * one is used up and asking for the one after it; when the decoder is not
 * ahead yet, after_decode calls again. After the last chunk it stops the
 * session (its last final follows; the 1 in REST_ENGINE_BUDGET is its
 * finalize). Called once the first block is decoded and again for every
 * partial and final, which covers every engine completion that can make
 * room. on_done may fire inside sess_chunk/sess_stop when the call started
 * here at the top of a loop callback; it then only marks the job, and the
 * end happens here, after the session returned. */
static void feed(struct rest_job *j) {
    j->feeding++;
    while (j->state == REST_FEEDING && sess_pending(j->sess) < REST_WINDOW &&
           sess_engine_outstanding(j->sess) <= REST_ENGINE_BUDGET) {
        if (j->cur_off == j->blk_n[j->cur]) {
            if (!j->next_ready) break; /* the end, or the decoder is not there yet */
            j->cur = !j->cur;
            j->cur_off = 0;
            j->next_ready = 0;
            decode_ahead(j);
            continue;
        }
        size_t off = j->cur_off, left = j->blk_n[j->cur] - off;
        size_t n = left < REST_CHUNK_SAMPLES ? left : REST_CHUNK_SAMPLES;
        j->cur_off += n;
        j->fed += n;
        sess_chunk(j->sess, (const uint8_t *)(j->blk[j->cur] + off), n * 2, 0, 0, 0, util_now_ns());
    }
    if (j->state == REST_FEEDING && j->dec_end && !j->next_ready && j->cur_off == j->blk_n[j->cur] &&
        sess_engine_outstanding(j->sess) <= REST_ENGINE_BUDGET) {
        j->state = REST_STOPPING;
        sess_stop(j->sess);
    }
    j->feeding--;
    if (!j->feeding && j->done) finish(j);
}

static void rest_partial(void *ctx, const struct sess_partial *p) {
    feed(ctx); /* one chunk answered: room for the next */
}

/* Every engine failure is reported here first (with its span) and, for a
 * chunk, again as on_error MODEL_ERROR; job_fail keeps the first. Other
 * errors (the session refusing a chunk) cannot happen with this session's
 * limits but would fail the request the same way. */
static void rest_engine_error(void *ctx, int status, int is_final, uint64_t seq, uint64_t start_ms,
                              uint64_t end_ms) {
    job_fail(ctx, status, start_ms, end_ms);
}

static void rest_error(void *ctx, int err, int has_seq, uint64_t seq, const char *msg) {
    struct rest_job *j = ctx;
    uint64_t a = 0, b = 0;
    if (has_seq) chunk_span(j, seq, &a, &b);
    job_fail(j, err == ASR_E_MODEL_ERROR ? err : ASR_E_INTERNAL, a, b);
}

static void add_segment(struct rest_job *j, const struct sess_final *f) {
    const char *t = f->text;
    size_t n = f->len;
    int bad = buf_printf(&j->segments, "%s{\"start_ms\":%llu,\"end_ms\":%llu,\"text\":", j->n_segments ? "," : "",
                         (unsigned long long)f->start_ms, (unsigned long long)f->end_ms);
    bad |= buf_json_str(&j->segments, t, n);
    if (f->n_words) {
        bad |= buf_puts(&j->segments, ",\"words\":");
        wire_put_words(&j->segments, f->words, f->n_words);
    }
    bad |= buf_puts(&j->segments, "}");
    if (j->text.len) bad |= buf_append(&j->text, " ", 1);
    bad |= buf_append(&j->text, t, n);
    if (bad) j->oom = 1;
    j->n_segments++;
}

static void rest_final(void *ctx, const struct sess_final *f) {
    struct rest_job *j = ctx;
    /* Not the empty final of stop (no utterance), nor after a failure. */
    if (j->state != REST_FAILED && !(f->len == 0 && f->start_ms == f->end_ms)) add_segment(j, f);
    feed(j); /* its finalize is done: room in the engine */
}

/* The answer's "input" object (docs/API.md "POST /v1/transcribe"): what the
 * decoder found of the body against its header. A file cut short or with
 * bytes after its audio is answered all the same, and logged and counted. */
static int put_input(struct rest_job *j, struct buf *b) {
    struct audio_input in;
    audio_decoder_input(j->dec, &in);
    int bad = buf_printf(b, ",\"input\":{\"truncated\":%s,\"declared_ms\":", in.truncated ? "true" : "false");
    if (in.declared_frames && in.in_rate)
        bad |= buf_printf(b, "%llu", (unsigned long long)(in.declared_frames * 1000 / in.in_rate));
    else
        bad |= buf_puts(b, "null");
    bad |= buf_printf(b, ",\"trailing_bytes\":%llu}", (unsigned long long)in.trailing_bytes);
    if (in.truncated || in.trailing_bytes) {
        if (in.truncated) metrics.rest_truncated++;
        if (in.trailing_bytes) metrics.rest_trailing++;
        struct log_line *l = log_begin(LOG_WARN, in.truncated ? "upload shorter than its header says"
                                                              : "upload has bytes after its audio");
        if (l) {
            log_str(l, "request_id", j->request_id);
            log_u64(l, "decoded_ms", in.in_rate ? in.decoded_frames * 1000 / in.in_rate : 0);
            log_u64(l, "declared_ms", in.in_rate ? in.declared_frames * 1000 / in.in_rate : 0);
            log_u64(l, "trailing_bytes", in.trailing_bytes);
            log_end(l);
        }
    }
    return bad;
}

/* Everything is answered: the 200 or the failure, and the job ends. As the
 * session's last act this may destroy it. */
static void finish(struct rest_job *j) {
    if (j->state == REST_FAILED) {
        respond_failure(j);
    } else if (j->state == REST_STOPPING && j->hc) {
        struct buf b;
        buf_init(&b, 0);
        int bad = buf_puts(&b, "{\"text\":");
        bad |= buf_json_str(&b, j->text.data ? j->text.data : "", j->text.len);
        bad |= buf_printf(&b, ",\"duration_ms\":%llu", (unsigned long long)(j->total * 1000 / REST_RATE));
        bad |= put_input(j, &b);
        bad |= buf_puts(&b, ",\"segments\":[");
        bad |= buf_append(&b, j->segments.data ? j->segments.data : "", j->segments.len);
        bad |= buf_puts(&b, "]}");
        if (!bad && !j->oom) {
            respond_and_forget(j, 200, b.data, b.len, NULL);
        } else {
            metrics.rest_failed[RFAIL_INTERNAL]++;
            respond_and_forget(j, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
        }
        buf_cleanup(&b);
    }
    job_release(j);
}

static void rest_done(void *ctx) {
    struct rest_job *j = ctx;
    if (j->feeding) j->done = 1; /* feed() finishes once the session returned */
    else finish(j);
}

static const struct sess_sink rest_sink = {
    .on_partial = rest_partial, .on_final = rest_final, .on_error = rest_error, .on_done = rest_done,
    .on_engine_error = rest_engine_error,
};

/* On the pool: the next block into blk[!cur] (the first into blk[0], after
 * opening the decoder). Only this job's decoder and that block are touched. */
static void decode_work(uv_work_t *w) {
    struct rest_job *j = w->data;
    if (!j->dec) {
        j->err = audio_decoder_open((const uint8_t *)j->body.data, j->body.len, j->content_type, REST_RATE,
                                    REST_MAX_SAMPLES, &j->dec, j->errmsg, sizeof j->errmsg);
        if (j->err != 0) return;
    }
    int slot = j->work_slot;
    j->err = audio_decoder_read(j->dec, j->blk[slot], REST_BLOCK_SAMPLES, &j->blk_n[slot], j->errmsg,
                                sizeof j->errmsg);
}

/* A block is decoded (or the decoder failed). The first: the transcription
 * starts, or the decode error is the answer. A later one: feeding goes on,
 * or the transcription fails with the decoder's error. */
static void after_decode(uv_work_t *w, int status) {
    struct rest_job *j = w->data;
    j->work_busy = 0;
    if (j->released) {
        job_free(j);
        return;
    }
    int err = status != 0 ? ASR_E_INTERNAL : j->err;
    if (j->state == REST_DECODING) {
        if (err != 0) {
            struct http_conn *hc = j->hc;
            http_set_abort(hc, NULL, NULL);
            http_respond_err(hc, err, j->errmsg[0] ? j->errmsg : NULL);
            job_release(j);
            return;
        }
        const struct config *c = j->env->cfg;
        struct sess_cfg scfg = {
            .sample_rate = REST_RATE,
            .engine_rate = sess_rate_for(REST_RATE, j->env->engine ? j->env->engine->sample_rate : 0),
            .pool = j->env->pool,
            .final_class = POOL_REST,
            .max_utterance_ms = (unsigned)c->max_utterance_ms,
            .max_chunk_bytes = REST_CHUNK_SAMPLES * 2,
            .rate_bytes_per_sec = (size_t)1 << 40, /* the window is the bound, not a rate */
            .max_pending_chunks = REST_WINDOW,
            .rate_abuse_threshold = 1 << 30,
            .vad = {.sample_rate = REST_RATE, .frame_ms = (unsigned)c->vad_frame_ms, .mode = c->vad_mode,
                    .endpointing_ms = (unsigned)c->endpointing_ms},
            .kind = SESS_KIND_REST,
        };
        j->sess = sess_create(&scfg);
        if (!j->sess) {
            struct http_conn *hc = j->hc;
            http_set_abort(hc, NULL, NULL);
            metrics.rest_failed[RFAIL_INTERNAL]++;
            http_respond_err(hc, ASR_E_INTERNAL, "could not create a session");
            job_release(j);
            return;
        }
        sess_transition(j->sess, SESS_ACTIVE);
        sess_attach(j->sess, &rest_sink, j);
        j->state = REST_FEEDING;
        j->cur = 0;
        j->cur_off = 0;
        j->total = j->blk_n[0];
        if (j->blk_n[0] < REST_BLOCK_SAMPLES) j->dec_end = 1;
        decode_ahead(j);
        feed(j);
        return;
    }
    if (j->state != REST_FEEDING) return; /* failed meanwhile: the decoded block is not needed */
    if (err != 0) {
        job_fail_decode(j, err);
        return;
    }
    int slot = j->work_slot;
    j->total += j->blk_n[slot];
    if (j->blk_n[slot] < REST_BLOCK_SAMPLES) j->dec_end = 1;
    j->next_ready = j->blk_n[slot] > 0;
    feed(j);
}

int api_rest_check(void *ctx, const struct http_req *req, const char **msg) {
    struct api_env *env = ((struct api *)ctx)->env;
    return auth_check_key(env->cfg, req) != 0 ? ASR_E_UNAUTHORIZED : 0;
}

void api_rest_transcribe(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    if (auth_check_key(env->cfg, req) != 0) {
        http_respond_err(hc, ASR_E_UNAUTHORIZED, NULL);
        return;
    }
    if (req->body.len == 0) {
        http_respond_error(hc, 400, "BAD_REQUEST", "empty body: send an audio file", NULL);
        return;
    }
    /* The decoding's memory, beside the body the HTTP layer charged. */
    if (budget_try_charge(env->upload_mem, REST_DECODE_BYTES) != 0) {
        http_respond_error(hc, 503, "SERVER_BUSY", "too many uploads in flight on this worker; retry later",
                           "Retry-After: 1\r\n");
        return;
    }
    struct rest_job *j = xcalloc(1, sizeof *j);
    j->hc = hc;
    j->env = env;
    j->charged = REST_DECODE_BYTES;
    j->blk[0] = xmalloc(REST_BLOCK_SAMPLES * sizeof(int16_t)); /* program-sized, charged above */
    j->blk[1] = xmalloc(REST_BLOCK_SAMPLES * sizeof(int16_t));
    buf_init(&j->segments, 0);
    buf_init(&j->text, 0);
    j->body = req->body;                    /* adopt the body (and its charge) */
    buf_init(&req->body, 0);
    snprintf(j->request_id, sizeof j->request_id, "%s", req->request_id);
    const char *ct = http_header(req, "content-type", NULL);
    j->content_type = ct ? xstrdup(ct) : NULL;
    j->work.data = j;
    j->work_busy = 1;
    http_set_abort(hc, job_abort, j);
    if (uv_queue_work(env->loop, &j->work, decode_work, after_decode) != 0) {
        j->work_busy = 0;
        http_set_abort(hc, NULL, NULL);
        http_respond_err(hc, ASR_E_INTERNAL, "could not schedule decoding");
        job_free(j);
    }
}
