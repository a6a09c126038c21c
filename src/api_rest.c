/* PROTOCOL.md "REST": POST /v1/transcribe, GET /v1/health, GET /v1/metrics,
 * GET /metrics, and the routing table.
 *
 * A transcription decodes and resamples the upload on the libuv thread pool
 * (libsndfile + soxr are CPU-bound), then runs the audio through a session
 * on the loop, exactly as a stream would (VAD, engine, endpointing), and
 * answers with its finals as segments. */
#include "api.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "worker.h"

/* Longest audio a REST upload may decode to (a small compressed file can
 * expand a lot): one hour at 16 kHz. */
#define REST_MAX_SAMPLES (16000u * 3600u)
#define REST_RATE 16000u
#define REST_CHUNK_SAMPLES 16000u

struct rest_job {
    uv_work_t work;
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
    const struct config *c = worker_get()->cfg;
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

static void route_transcribe(struct http_conn *hc, struct http_req *req) {
    if (api_check_key(req) != 0) {
        http_respond_err(hc, ASR_E_UNAUTHORIZED, NULL);
        return;
    }
    if (req->body.len == 0) {
        http_respond_error(hc, 400, "BAD_REQUEST", "empty body: send an audio file", NULL);
        return;
    }
    struct rest_job *j = xcalloc(1, sizeof *j);
    j->hc = hc;
    j->body = req->body;                    /* adopt the body */
    buf_init(&req->body, 0);
    const char *ct = http_header(req, "content-type", NULL);
    j->content_type = ct ? xstrdup(ct) : NULL;
    buf_init(&j->segments, 0);
    buf_init(&j->text, 0);
    j->work.data = j;
    http_set_abort(hc, job_abort, j);
    if (uv_queue_work(worker_get()->loop, &j->work, decode_work, after_decode) != 0) {
        http_set_abort(hc, NULL, NULL);
        http_respond_err(hc, ASR_E_INTERNAL, "could not schedule decoding");
        job_free(j);
    }
}

static void route_health(struct http_conn *hc, struct http_req *req) {
    struct worker *w = worker_get();
    const struct config *c = w->cfg;
    size_t active = api_stream_count();
    size_t max = (size_t)c->max_sessions_per_worker;
    struct buf b;
    buf_init(&b, 0);
    /* a worker being replaced (rolling restart) is not the host going away:
     * its successor already accepts on the same socket */
    int down = w->draining && !w->retiring;
    buf_printf(&b, "{\"status\":\"%s\",\"active_sessions\":%zu,\"worker_id\":", down ? "draining" : "ok", active);
    buf_json_str(&b, c->worker_id, strlen(c->worker_id));
    buf_printf(&b, ",\"uptime_s\":%llu,\"capacity\":{\"max_sessions\":%zu,\"free_sessions\":%zu}}",
               (unsigned long long)((util_wall_ms() - w->start_ms) / 1000), max, active < max ? max - active : 0);
    http_respond(hc, down ? 503 : 200, "application/json", b.data, b.len, NULL);
    buf_cleanup(&b);
}

/* The metrics routes answer once the worker has fresh process figures
 * (worker_proc_refresh: open descriptors are counted a slice per loop
 * iteration; listing /proc/self/fd in one go stalled every stream for 2-5 ms
 * at 2,800 connections). */
struct metrics_req {
    struct worker_proc_waiter wt; /* first member: the callback gets &wt */
    struct http_conn *hc;
    int prometheus;
};

static void metrics_abort(void *ctx) {
    struct metrics_req *r = ctx;
    worker_proc_cancel(worker_get(), &r->wt);
    free(r);
}

static void metrics_ready(struct worker_proc_waiter *wt) {
    struct metrics_req *r = (struct metrics_req *)wt;
    struct http_conn *hc = r->hc;
    int prom = r->prometheus;
    free(r);
    http_set_abort(hc, NULL, NULL);
    struct buf b;
    buf_init(&b, 0);
    if (prom) {
        metrics_prometheus(&b, worker_get()->cfg->worker_id);
        http_respond(hc, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    } else {
        metrics_json(&b, worker_get()->cfg->worker_id);
        http_respond(hc, 200, "application/json", b.data, b.len, NULL);
    }
    buf_cleanup(&b);
}

static void route_metrics_any(struct http_conn *hc, int prometheus) {
    struct metrics_req *r = xcalloc(1, sizeof *r);
    r->wt.cb = metrics_ready;
    r->hc = hc;
    r->prometheus = prometheus;
    http_set_abort(hc, metrics_abort, r);
    worker_proc_refresh(worker_get(), &r->wt);
}

static void route_metrics(struct http_conn *hc, struct http_req *req) { route_metrics_any(hc, 0); }
static void route_prometheus(struct http_conn *hc, struct http_req *req) { route_metrics_any(hc, 1); }

static const struct http_route routes[] = {
    {"/v1/transcribe", HTTP_POST, ROUTE_TRANSCRIBE, route_transcribe},
    {"/v1/transcribe/stream", HTTP_GET, ROUTE_STREAM, api_stream_upgrade},
    {"/v1/health", HTTP_GET, ROUTE_HEALTH, route_health},
    {"/v1/metrics", HTTP_GET, ROUTE_METRICS_JSON, route_metrics},
    {"/metrics", HTTP_GET, ROUTE_METRICS_PROM, route_prometheus},
};

void api_routes_install(void) { http_set_routes(routes, sizeof routes / sizeof routes[0]); }
