/* docs/API.md "POST /v1/transcribe".
 *
 * A transcription decodes and resamples the upload on the libuv thread pool
 * (libsndfile + soxr are CPU-bound), then runs the audio through a session
 * on the loop, exactly as a stream would (VAD, engine, endpointing), and
 * answers with its finals as segments. */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "core/audio.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/session.h"

/* Longest audio a REST upload may decode to (a small compressed file can
 * expand a lot): one hour at 16 kHz. */
#define REST_MAX_SAMPLES (16000u * 3600u)
#define REST_RATE 16000u
#define REST_CHUNK_SAMPLES 16000u

struct rest_job {
    uv_work_t work;
    struct api_env *env;          /* borrowed */
    struct http_conn *hc;         /* borrowed; NULL once the client is gone */
    struct buf body;              /* owned: adopted from the request */
    char  *content_type;          /* owned */
    struct audio_pcm pcm;         /* owned: decoded audio */
    int    err;                   /* decode result */
    char   errmsg[160];
    struct asr_session *sess;     /* owned while transcribing */
    struct buf segments;          /* JSON array body of segments */
    struct buf text;              /* all finals joined */
    int    n_segments;
};

static void job_free(struct rest_job *j) {
    buf_cleanup(&j->body);
    free(j->content_type);
    audio_pcm_cleanup(&j->pcm);
    if (j->sess) sess_destroy(j->sess);
    buf_cleanup(&j->segments);
    buf_cleanup(&j->text);
    free(j);
}

static void job_abort(void *ctx) {
    struct rest_job *j = ctx;
    j->hc = NULL;
    if (j->sess) job_free(j); /* transcribing on the loop: stop now */
    /* else decoding on the pool: after_decode frees it */
}

static void rest_partial(void *ctx, uint64_t seq, const char *t, size_t n, int sp, const struct sess_latency *l) {}
static void rest_error(void *ctx, int err, int has_seq, uint64_t seq, const char *msg) {}

static void rest_final(void *ctx, uint64_t seq, const char *t, size_t n, uint64_t start_ms, uint64_t end_ms) {
    struct rest_job *j = ctx;
    if (n == 0 && start_ms == end_ms) return; /* the empty final of stop: no utterance */
    buf_printf(&j->segments, "%s{\"start_ms\":%llu,\"end_ms\":%llu,\"text\":", j->n_segments ? "," : "",
               (unsigned long long)start_ms, (unsigned long long)end_ms);
    buf_json_str(&j->segments, t, n);
    buf_puts(&j->segments, "}");
    if (j->text.len) buf_append(&j->text, " ", 1);
    buf_append(&j->text, t, n);
    j->n_segments++;
}

static void rest_done(void *ctx) {
    struct rest_job *j = ctx;
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "{\"text\":");
    buf_json_str(&b, j->text.data ? j->text.data : "", j->text.len);
    buf_printf(&b, ",\"duration_ms\":%llu,\"segments\":[%s]}",
               (unsigned long long)((uint64_t)j->pcm.n * 1000 / REST_RATE), j->segments.data ? j->segments.data : "");
    struct http_conn *hc = j->hc;
    j->hc = NULL;
    if (hc) {
        http_set_abort(hc, NULL, NULL);
        http_respond(hc, 200, "application/json", b.data, b.len, NULL);
    }
    buf_cleanup(&b);
    /* Freed on the next turn: we are inside the session's callback. */
    sess_attach(j->sess, NULL, NULL);
    j->work.data = j;
    job_free(j);
}

static const struct sess_sink rest_sink = {
    .on_partial = rest_partial, .on_final = rest_final, .on_error = rest_error, .on_done = rest_done,
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
        .max_chunk_bytes = REST_CHUNK_SAMPLES * 2,
        .rate_bytes_per_sec = (size_t)1 << 40,
        .max_pending_chunks = 1 << 30,
        .rate_abuse_threshold = 1 << 30,
        .vad = {.sample_rate = REST_RATE, .frame_ms = (unsigned)c->vad_frame_ms, .mode = c->vad_mode,
                .endpointing_ms = (unsigned)c->endpointing_ms},
    };
    j->sess = sess_create(&scfg);
    if (!j->sess) {
        struct http_conn *hc = j->hc;
        http_set_abort(hc, NULL, NULL);
        http_respond_err(hc, ASR_E_INTERNAL, "could not create a session");
        job_free(j);
        return;
    }
    sess_transition(j->sess, SESS_ACTIVE);
    sess_attach(j->sess, &rest_sink, j);
    uint64_t now = util_now_ns();
    for (size_t off = 0; off < j->pcm.n; off += REST_CHUNK_SAMPLES) {
        size_t n = j->pcm.n - off < REST_CHUNK_SAMPLES ? j->pcm.n - off : REST_CHUNK_SAMPLES;
        sess_chunk(j->sess, (const uint8_t *)(j->pcm.samples + off), n * 2, 0, 0, 0, now);
    }
    sess_stop(j->sess); /* rest_done answers once everything is in */
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
    struct rest_job *j = xcalloc(1, sizeof *j);
    j->hc = hc;
    j->env = env;
    j->body = req->body;                    /* adopt the body */
    buf_init(&req->body, 0);
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

