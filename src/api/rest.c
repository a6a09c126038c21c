/* docs/API.md "POST /v1/transcribe".
 *
 * A transcription decodes and resamples the upload on the libuv thread pool
 * (libsndfile + soxr are CPU-bound), then runs the audio through a session
 * on the loop, exactly as a stream would (VAD, engine, endpointing), a
 * window of chunks at a time, and answers with its finals as segments; or,
 * at the first part of the audio the engine fails on or refuses, with an
 * error naming that part. */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/reference.h"
#include "api/wire.h"
#include "core/audio.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/engine.h"
#include "core/feedback.h"
#include "core/session.h"

/* Longest audio a REST upload may decode to (a small compressed file can
 * expand a lot): one hour at 16 kHz. */
#define REST_MAX_SAMPLES (16000u * 3600u)
#define REST_RATE 16000u
#define REST_CHUNK_SAMPLES 16000u
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
#define REST_WINDOW 16
#define REST_ENGINE_BUDGET (ENGINE_MAX_OUTSTANDING - SESS_MAX_REQUESTS_PER_CHUNK - 1)

/* A transcription's life, forward only. DECODING: on the thread pool
 * (after_decode answers a decode error or moves on). FEEDING: the session
 * takes the audio a window at a time. STOPPING: all audio is in, the last
 * final is on its way. FAILED: no more audio goes in; the session lets the
 * engine finish what it holds (at most a window). on_done then answers (200
 * or the error) and frees the job; job_abort (the client gone) frees it at
 * once, in any state. The job keeps its connection busy until it ends, so a
 * draining worker waits for it. */
enum rest_state { REST_DECODING, REST_FEEDING, REST_STOPPING, REST_FAILED };

struct rest_job {
    uv_work_t work;
    enum rest_state state;
    struct api_env *env;          /* borrowed */
    struct http_conn *hc;         /* borrowed; NULL once answered or the client is gone */
    struct buf body;              /* owned: adopted from the request */
    char  *content_type;          /* owned */
    struct audio_pcm pcm;         /* owned: decoded audio */
    int    err;                   /* decode result */
    char   errmsg[160];
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
    struct buf expected;          /* owned: reading feedback's expected text (empty: none) */
    uint64_t fail_start_ms, fail_end_ms; /* FAILED: the audio it hit */
};

static void job_free(struct rest_job *j) {
    buf_cleanup(&j->body);
    free(j->content_type);
    audio_pcm_cleanup(&j->pcm);
    if (j->sess) sess_destroy(j->sess);
    buf_cleanup(&j->segments);
    buf_cleanup(&j->text);
    buf_cleanup(&j->expected);
    free(j);
}

/* The connection closed before the answer. Called by the HTTP layer when
 * it frees the connection, never from inside a session callback, so a
 * transcription in progress can be dropped at once: sess_destroy cancels
 * the engine requests still out. A job that had failed already was counted
 * then. */
static void job_abort(void *ctx) {
    struct rest_job *j = ctx;
    j->hc = NULL;
    if (j->state != REST_FAILED) metrics.rest_failed[RFAIL_ABORTED]++;
    if (j->state != REST_DECODING) job_free(j);
    /* else decoding on the pool: after_decode frees it */
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
 * callbacks. */
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

/* The error answer of a failed job, with the span it hit. */
static void respond_failure(struct rest_job *j) {
    int err = j->fail_err;
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
    uint64_t to = from + REST_CHUNK_SAMPLES < j->pcm.n ? from + REST_CHUNK_SAMPLES : j->pcm.n;
    *start_ms = from * 1000 / REST_RATE;
    *end_ms = to * 1000 / REST_RATE;
}

static void finish(struct rest_job *j);

/* Reading feedback of an upload (docs/API.md "Reading feedback"): every
 * final's words against the expected text, as the verification at the
 * end of a stream: word_feedback, score and counts appended to the body's
 * open object. 0 or ASR_ENOMEM. */
static int put_feedback(struct rest_job *j, struct buf *b) {
    struct fb_text *t = NULL;
    const char *why;
    struct fb_session *f = NULL;
    struct fb_entry *e = NULL;
    int rc = fb_text_parse(j->expected.data, j->expected.len, FB_TEXT_MAX_WORDS, &t, &why);
    if (rc == 0 && !(f = fb_create(t, 0))) rc = ASR_ENOMEM;
    if (rc == 0 && !(e = calloc(fb_text_count(t), sizeof *e))) rc = ASR_ENOMEM;
    if (rc == 0) rc = fb_evaluate_text(f, j->text.data ? j->text.data : "", j->text.len, 1, e);
    if (rc == 0) {
        struct fb_view v = {.text = t, .e = e, .n = fb_text_count(t)};
        wire_put_score(b, &v);
        buf_puts(b, ",\"word_feedback\":");
        wire_put_feedback(b, &v);
    }
    free(e);
    fb_destroy(f);
    fb_text_destroy(t);
    return rc == 0 ? 0 : ASR_ENOMEM;
}

/* Hands the session chunks until REST_WINDOW are waiting for the engine (or
 * its engine requests near their bound), then, after the last one, stops it
 * (its last final follows; the 1 in REST_ENGINE_BUDGET is its finalize).
 * Called once the audio is decoded and again for every partial and final,
 * which covers every engine completion that can make room. on_done may fire
 * inside sess_chunk/sess_stop when the call started here at the top of a
 * loop callback; it then only marks the job, and the end happens here,
 * after the session returned. */
static void feed(struct rest_job *j) {
    j->feeding++;
    while (j->state == REST_FEEDING && sess_pending(j->sess) < REST_WINDOW &&
           sess_engine_outstanding(j->sess) <= REST_ENGINE_BUDGET && j->fed < j->pcm.n) {
        size_t off = j->fed;
        size_t n = j->pcm.n - off < REST_CHUNK_SAMPLES ? j->pcm.n - off : REST_CHUNK_SAMPLES;
        j->fed += n;
        sess_chunk(j->sess, (const uint8_t *)(j->pcm.samples + off), n * 2, 0, 0, 0, util_now_ns());
    }
    if (j->state == REST_FEEDING && j->fed == j->pcm.n && sess_engine_outstanding(j->sess) <= REST_ENGINE_BUDGET) {
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
        bad |= buf_printf(&b, ",\"duration_ms\":%llu,\"segments\":[",
                          (unsigned long long)((uint64_t)j->pcm.n * 1000 / REST_RATE));
        bad |= buf_append(&b, j->segments.data ? j->segments.data : "", j->segments.len);
        bad |= buf_puts(&b, "]");
        if (j->expected.len) bad |= put_feedback(j, &b);
        bad |= buf_puts(&b, "}");
        if (!bad && !j->oom) {
            respond_and_forget(j, 200, b.data, b.len, NULL);
        } else {
            metrics.rest_failed[RFAIL_INTERNAL]++;
            respond_and_forget(j, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
        }
        buf_cleanup(&b);
    }
    job_free(j);
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

static void decode_work(uv_work_t *w) {
    struct rest_job *j = w->data;
    j->err = audio_decode((const uint8_t *)j->body.data, j->body.len, j->content_type, REST_RATE, REST_MAX_SAMPLES,
                          &j->pcm, j->errmsg, sizeof j->errmsg);
}

static void after_decode(uv_work_t *w, int status) {
    struct rest_job *j = w->data;
    buf_cleanup(&j->body);
    if (!j->hc) {
        job_free(j);
        return;
    }
    if (status != 0 || j->err != 0) {
        struct http_conn *hc = j->hc;
        http_set_abort(hc, NULL, NULL);
        int err = status != 0 ? ASR_E_INTERNAL : j->err;
        http_respond_err(hc, err, j->errmsg[0] ? j->errmsg : NULL);
        job_free(j);
        return;
    }
    const struct config *c = j->env->cfg;
    struct sess_cfg scfg = {
        .sample_rate = REST_RATE,
        .engine_rate = sess_rate_for(REST_RATE, j->env->engine ? j->env->engine->sample_rate : 0),
        .pool = j->env->pool,
        .final_class = POOL_REST,
        .max_utterance_ms = (unsigned)c->max_utterance_ms,
        .hint = j->expected.len ? j->expected.data : NULL, /* the engine may use it */
        .hint_len = j->expected.len,
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
        job_free(j);
        return;
    }
    sess_transition(j->sess, SESS_ACTIVE);
    sess_attach(j->sess, &rest_sink, j);
    j->state = REST_FEEDING;
    feed(j);
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
    struct buf expected;
    buf_init(&expected, 0);
    const char *code, *why;
    int status = reference_from_query(env->cfg, req, &expected, &code, &why);
    if (status != 0) {
        http_respond_error(hc, status, code, why, NULL);
        return;
    }
    if (expected.len) metrics.feedback_rest++;
    struct rest_job *j = xcalloc(1, sizeof *j);
    j->expected = expected;                 /* adopt */
    j->hc = hc;
    j->env = env;
    j->body = req->body;                    /* adopt the body */
    buf_init(&req->body, 0);
    snprintf(j->request_id, sizeof j->request_id, "%s", req->request_id);
    const char *ct = http_header(req, "content-type", NULL);
    j->content_type = ct ? xstrdup(ct) : NULL;
    buf_init(&j->segments, 0);
    buf_init(&j->text, 0);
    j->work.data = j;
    http_set_abort(hc, job_abort, j);
    if (uv_queue_work(env->loop, &j->work, decode_work, after_decode) != 0) {
        http_set_abort(hc, NULL, NULL);
        http_respond_err(hc, ASR_E_INTERNAL, "could not schedule decoding");
        job_free(j);
    }
}

