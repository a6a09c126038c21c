/* docs/API.md "POST /v1/transcribe".
 *
 * A request decodes and resamples the upload on the libuv thread pool
 * (libsndfile + soxr are CPU-bound), then runs the audio through a
 * transcription (transcribe.h: a session on the loop, exactly as a stream
 * would, a window of chunks at a time) and answers with its finals as
 * segments; or, at the first part of the audio the engine fails on or
 * refuses, with an error naming that part. With ?callback= it is a job
 * instead (docs/API.md "Jobs"), answered at once. */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/transcribe.h"
#include "base/err.h"
#include "base/metrics.h"
#include "core/audio.h"

/* A request's life, forward only. DECODING: on the thread pool
 * (after_decode answers a decode error or moves on). TRANSCRIBING: the
 * audio runs through a transcription (transcribe.h); its done answers (200
 * or the error) and frees the job; job_abort (the client gone) frees it at
 * once, in any state. The job keeps its connection busy until it ends, so a
 * draining worker waits for it. */
enum rest_state { REST_DECODING, REST_TRANSCRIBING };

struct rest_job {
    uv_work_t work;
    enum rest_state state;
    struct api_env *env;          /* borrowed */
    struct http_conn *hc;         /* borrowed; NULL once answered or the client is gone */
    struct buf body;              /* owned: adopted from the request */
    char  *content_type;          /* owned */
    struct audio_pcm pcm;         /* owned until the transcription adopts it */
    int    err;                   /* decode result */
    char   errmsg[160];
    struct transcribe *tr;        /* owned while transcribing */
    char   request_id[64];        /* for the log line of a failure */
};

static void job_free(struct rest_job *j) {
    buf_cleanup(&j->body);
    free(j->content_type);
    audio_pcm_cleanup(&j->pcm);
    if (j->tr) transcribe_cancel(j->tr);
    free(j);
}

/* The connection closed before the answer. Called by the HTTP layer when
 * it frees the connection, never from inside a session callback, so a
 * transcription in progress can be dropped at once: its engine requests
 * are cancelled. */
static void job_abort(void *ctx) {
    struct rest_job *j = ctx;
    j->hc = NULL;
    metrics.rest_failed[RFAIL_ABORTED]++;
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

/* The transcription is over: the 200, or the error with the span it hit
 * (docs/API.md "POST /v1/transcribe", errors), and the job ends. */
static void on_transcribed(void *arg, const struct transcribe_result *r) {
    struct rest_job *j = arg;
    j->tr = NULL; /* gone with this call */
    if (r->err == 0) {
        respond_and_forget(j, 200, r->json, r->json_len, NULL);
    } else if (r->err == ASR_E_INTERNAL && r->fail_end_ms == 0) {
        metrics.rest_failed[RFAIL_INTERNAL]++; /* the answer could not be built */
        respond_and_forget(j, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
    } else {
        metrics.rest_failed[r->err == ASR_E_ENGINE_BUSY ? RFAIL_ENGINE_BUSY
                            : r->err == ASR_E_INTERNAL  ? RFAIL_INTERNAL
                                                        : RFAIL_MODEL_ERROR]++;
        struct buf body;
        buf_init(&body, 0);
        if (transcribe_error_json(&body, r) == 0)
            respond_and_forget(j, asr_err_http_status(r->err), body.data, body.len,
                               r->err == ASR_E_ENGINE_BUSY ? "Retry-After: 1\r\n" : NULL);
        else
            respond_and_forget(j, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
        buf_cleanup(&body);
    }
    job_free(j);
}

static void decode_work(uv_work_t *w) {
    struct rest_job *j = w->data;
    j->err = audio_decode((const uint8_t *)j->body.data, j->body.len, j->content_type, TRANSCRIBE_RATE,
                          TRANSCRIBE_MAX_SAMPLES, &j->pcm, j->errmsg, sizeof j->errmsg);
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
    struct transcribe_cfg tc = {.env = j->env, .pool_class = POOL_REST, .request_id = j->request_id, .what = "rest"};
    j->state = REST_TRANSCRIBING;
    j->tr = transcribe_start(&tc, &j->pcm, on_transcribed, j);
    if (!j->tr) {
        struct http_conn *hc = j->hc;
        http_set_abort(hc, NULL, NULL);
        metrics.rest_failed[RFAIL_INTERNAL]++;
        http_respond_err(hc, ASR_E_INTERNAL, "could not create a session");
        job_free(j);
    }
}

void api_rest_transcribe(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    char cb[8];
    if (http_query(req, "callback", cb, sizeof cb) != -1) { /* present: a job (a too long value included) */
        api_jobs_shorthand(ctx, hc, req);
        return;
    }
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
    snprintf(j->request_id, sizeof j->request_id, "%s", req->request_id);
    const char *ct = http_header(req, "content-type", NULL);
    j->content_type = ct ? xstrdup(ct) : NULL;
    j->work.data = j;
    http_set_abort(hc, job_abort, j);
    if (uv_queue_work(env->loop, &j->work, decode_work, after_decode) != 0) {
        http_set_abort(hc, NULL, NULL);
        http_respond_err(hc, ASR_E_INTERNAL, "could not schedule decoding");
        job_free(j);
    }
}

