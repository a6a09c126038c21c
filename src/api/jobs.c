/* The job routes (docs/API.md "Jobs"): POST /v1/jobs (an upload, a JSON
 * body naming an audio URL, or several files as multipart/form-data: a
 * batch), GET /v1/jobs/{id}, its result in every format, its progress as
 * server-sent events, DELETE /v1/jobs/{id}, GET /v1/batches/{id}, and
 * POST /v1/transcribe?callback= (rest.c hands it here).
 *
 * Every request is a struct jreq that lives until its answer is written
 * and every store op or thread-pool job it started has come back (a client
 * that goes away only clears jreq.hc). The order of checks: the queue is
 * there (503 JOBS_UNAVAILABLE), the API key or access token (auth_check's
 * codes: 401, or 403 TOKEN_SCOPE), the rate limits (429), then the route's
 * own. */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/auth.h"
#include "api/jobreq.h"
#include "api/jobrun.h"
#include "api/jobview.h"
#include "api/webhook.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/audio.h"
#include "net/httpc.h"
#include "store/jobs.h"

#define EVENTS_POLL_MS      500
#define EVENTS_KEEPALIVE_MS 15000
#define IDEM_KEY_MAX        255
#define PROBE_INLINE_MAX    (256u << 10)   /* uploads checked and hashed on the loop */

enum jkind { J_SUBMIT, J_SHORTHAND, J_GET, J_RESULT, J_EVENTS, J_DELETE, J_BATCH_GET };

/* One file of a submission. */
struct jfile {
    const uint8_t *data;           /* borrowed from jreq.body */
    size_t len;
    char   ctype[256];
    int    probe_err;              /* the audio does not read (0 = fine) */
    char   probe_msg[160];
    char   hash[65];
    char   fp[65];                 /* idempotency fingerprint */
    char   idem[80];               /* its idempotency key ("" none) */
    char   job_id[33], run_id[33];
    int    status;                 /* the submit's store status */
    struct jobs_submit_res res;    /* outcome (res.job not kept) */
    struct buf job_json;           /* the job object as answered */
};

struct jreq {
    struct api *api;               /* borrowed */
    struct http_conn *hc;          /* borrowed; NULL once answered or the client is gone */
    enum jkind kind;
    int    pending;                /* store ops and thread-pool jobs out */
    int    head;                   /* a HEAD request */
    uint64_t start_ns;             /* the request's start (submit latency) */
    char   owner[AUTH_OWNER_LEN + 1];
    char   ip[64];
    char   request_id[64];         /* X-Request-Id, kept with a submitted job */
    char   id[33];                 /* the job or batch in the path */
    enum fmt_kind fmt;
    /* submissions */
    struct buf body;               /* owned: adopted from the request */
    struct jobreq_opts opts;
    struct buf opts_json, run_json;
    char   url[JOBREQ_URL_MAX + 1];/* a URL job */
    char   idem[80];               /* hashed Idempotency-Key, "" none */
    int    batch;                  /* a multipart batch */
    char   batch_id[33];
    struct jfile *files;           /* owned */
    size_t nfiles, next;           /* files; the next to submit */
    uv_work_t work;
    /* event streams */
    uv_timer_t timer;              /* polls the job */
    int    timer_open;
    char   last_state[16];
    double last_progress;
    uint64_t last_sent_ms;
    int    streaming;
    struct jreq *ev_next, *ev_prev;/* api->events */
};

/* ---- the request's life ----------------------------------------------------------- */

static void jreq_free(struct jreq *j) {
    buf_cleanup(&j->body);
    buf_cleanup(&j->opts_json);
    buf_cleanup(&j->run_json);
    for (size_t i = 0; i < j->nfiles; i++) buf_cleanup(&j->files[i].job_json);
    free(j->files);
    free(j);
}

static void on_jtimer_closed(uv_handle_t *h) {
    struct jreq *j = h->data;
    j->timer_open = 0;
    if (!j->pending && !j->hc) jreq_free(j);
}

/* Frees j once nothing is out and nobody answers through it any more. */
static void jreq_release(struct jreq *j) {
    if (j->pending || j->hc) return;
    if (j->timer_open) {
        if (!uv_is_closing((uv_handle_t *)&j->timer)) uv_close((uv_handle_t *)&j->timer, on_jtimer_closed);
        return;
    }
    jreq_free(j);
}

static void events_unlink(struct jreq *j) {
    struct api *api = j->api;
    if (!j->streaming) return;
    j->streaming = 0;
    if (j->ev_prev) j->ev_prev->ev_next = j->ev_next;
    else api->events = j->ev_next;
    if (j->ev_next) j->ev_next->ev_prev = j->ev_prev;
}

static void jreq_abort(void *ctx) {
    struct jreq *j = ctx;
    j->hc = NULL;
    events_unlink(j);
    if (j->timer_open) uv_timer_stop(&j->timer);
    jreq_release(j);
}

/* Takes the connection back from j (the answer goes now). */
static struct http_conn *take_hc(struct jreq *j) {
    struct http_conn *hc = j->hc;
    j->hc = NULL;
    if (hc) http_set_abort(hc, NULL, NULL);
    return hc;
}

static void count_submit_latency(struct jreq *j) {
    if (j->kind == J_SUBMIT || j->kind == J_SHORTHAND)
        hist_add(&metrics.lat_job_submit, (double)(util_now_ns() - j->start_ns) / 1e6);
}

static void answer(struct jreq *j, int status, const char *ctype, const char *body, size_t len, const char *extra) {
    count_submit_latency(j);
    struct http_conn *hc = take_hc(j);
    if (hc) http_respond(hc, status, ctype, body, len, extra);
    jreq_release(j);
}

static void answer_err(struct jreq *j, int err, const char *msg, const char *extra) {
    count_submit_latency(j);
    struct http_conn *hc = take_hc(j);
    if (hc) http_respond_error(hc, asr_err_http_status(err), asr_err_code(err), msg ? msg : asr_strerror(err), extra);
    jreq_release(j);
}

static void answer_buf(struct jreq *j, int status, struct buf *b, const char *extra) {
    if (!b->data) answer_err(j, ASR_E_INTERNAL, "out of memory", NULL);
    else answer(j, status, "application/json", b->data, b->len, extra);
}

/* ---- what comes after the checks ------------------------------------------------------ */

static void submit_start(struct jreq *j);
static void get_start(struct jreq *j);
static void delete_start(struct jreq *j);
static void events_start(struct jreq *j);
static void batch_get_start(struct jreq *j);

static void proceed(struct jreq *j) {
    switch (j->kind) {
    case J_SUBMIT:
    case J_SHORTHAND: submit_start(j); break;
    case J_GET:
    case J_RESULT: get_start(j); break;
    case J_EVENTS: events_start(j); break;
    case J_DELETE: delete_start(j); break;
    case J_BATCH_GET: batch_get_start(j); break;
    }
}

static void on_rate(void *arg, int status, int allowed, uint64_t retry_ms) {
    struct jreq *j = arg;
    j->pending--;
    if (!j->hc) {
        jreq_release(j);
        return;
    }
    /* Redis did not answer: the limit cannot be checked; let the request
     * meet the queue, which says the same (503) if it is really down. */
    if (status == STORE_OK && !allowed) {
        metrics.jobs_rate_limited++;
        char extra[48];
        snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)((retry_ms + 999) / 1000));
        answer_err(j, ASR_E_RATE_LIMITED, "too many requests: slow down and retry after Retry-After seconds", extra);
        return;
    }
    proceed(j);
}

/* The checks every job request passes, then the route. Takes req's body
 * for submissions. */
static void jreq_begin(struct api *api, struct http_conn *hc, struct http_req *req, enum jkind kind, const char *id,
                       enum fmt_kind fmt) {
    const struct config *c = api->env->cfg;
    if (!api->jobs) {
        http_respond_error(hc, 503, "JOBS_UNAVAILABLE",
                           "jobs need Redis: this instance runs with ASR_REDIS_URL=memory and no ASR_JOB_REDIS_URL "
                           "(docs/API.md \"Jobs\")", NULL);
        return;
    }
    if (!jobs_up(api->jobs)) {
        http_respond_error(hc, 503, "JOBS_UNAVAILABLE", "the job queue (Redis) is unreachable", "Retry-After: 1\r\n");
        return;
    }
    int ar = auth_check_key(c, req); /* keys, or tokens with scope transcribe */
    if (ar != 0) {
        auth_respond_refusal(hc, ar);
        return;
    }
    struct jreq *j = xcalloc(1, sizeof *j);
    j->api = api;
    j->hc = hc;
    j->kind = kind;
    j->head = req->method == HTTP_HEAD;
    j->start_ns = req->start_ns ? req->start_ns : util_now_ns();
    j->fmt = fmt;
    auth_key_owner(c, req, j->owner);
    http_peer_ip(hc, j->ip, sizeof j->ip);
    snprintf(j->request_id, sizeof j->request_id, "%s", req->request_id);
    if (id) snprintf(j->id, sizeof j->id, "%s", id);
    buf_init(&j->opts_json, 0);
    buf_init(&j->run_json, 0);
    buf_init(&j->body, 0);
    jobreq_opts_init(&j->opts);
    http_set_abort(hc, jreq_abort, j);
    if (kind == J_SUBMIT || kind == J_SHORTHAND) {
        j->body = req->body;       /* adopt the body */
        buf_init(&req->body, 0);
        /* options from the query string */
        static const char *const names[] = {"callback", "granularity", "hint", "endpointing_ms", "metadata"};
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            char v[JOBREQ_URL_MAX + 2];
            char err[160];
            int n = http_query(req, names[i], v, sizeof v);
            if (n == -1) continue;
            if (n < 0 || jobreq_set(&j->opts, names[i], v, (size_t)n, err, sizeof err) != 0) {
                if (n < 0) snprintf(err, sizeof err, "%s: too long or holds a NUL byte", names[i]);
                answer_err(j, ASR_E_BAD_REQUEST, err, NULL);
                return;
            }
        }
        size_t il = 0;
        const char *ik = http_header(req, "idempotency-key", &il);
        if (ik) {
            if (il == 0 || il > IDEM_KEY_MAX) {
                answer_err(j, ASR_E_BAD_REQUEST, "Idempotency-Key: 1 to 255 characters", NULL);
                return;
            }
            char key[IDEM_KEY_MAX + 1];
            memcpy(key, ik, il);
            key[il] = 0;
            jobreq_fingerprint(key, "idempotency-key", j->idem);
        }
        const char *ct = http_header(req, "content-type", NULL);
        if (jobreq_is_multipart(ct)) {
            j->batch = 1;
            /* the Content-Type is needed for the boundary: keep it in the first file slot's type */
            j->files = xcalloc(1, sizeof *j->files);
            snprintf(j->files[0].ctype, sizeof j->files[0].ctype, "%s", ct);
        } else if (ct && strncasecmp(ct, "application/json", 16) == 0 && kind == J_SUBMIT) {
            char err[160];
            struct jobreq r;
            if (jobreq_parse_json(j->body.data ? j->body.data : "", j->body.len, &r, err, sizeof err) != 0) {
                answer_err(j, ASR_E_BAD_REQUEST, err, NULL);
                return;
            }
            /* the body's options win over the query's */
            struct jobreq_opts q = j->opts;
            j->opts = r.opts;
            if (!j->opts.callback[0]) memcpy(j->opts.callback, q.callback, sizeof q.callback);
            snprintf(j->url, sizeof j->url, "%s", r.url);
            buf_cleanup(&j->body);
        } else {
            j->files = xcalloc(1, sizeof *j->files);
            j->nfiles = 1;
            j->files[0].data = (const uint8_t *)j->body.data;
            j->files[0].len = j->body.len;
            snprintf(j->files[0].ctype, sizeof j->files[0].ctype, "%s", ct ? ct : "");
            if (!j->body.len) {
                answer_err(j, ASR_E_BAD_REQUEST, "empty body: send an audio file, a JSON {\"url\":...} or multipart files",
                           NULL);
                return;
            }
        }
        if (kind == J_SHORTHAND && !j->opts.callback[0]) {
            answer_err(j, ASR_E_BAD_REQUEST, "callback: required", NULL);
            return;
        }
    }
    if (c->rate_per_key > 0 || c->rate_per_ip > 0) {
        struct jobs_bucket b[2];
        char kk[AUTH_OWNER_LEN + 8], ik[80];
        size_t n = 0;
        if (c->rate_per_key > 0 && strcmp(j->owner, "-") != 0) {
            snprintf(kk, sizeof kk, "key:%s", j->owner);
            b[n++] = (struct jobs_bucket){kk, c->rate_per_key, c->rate_per_key * 2 < 1 ? 1 : c->rate_per_key * 2};
        }
        if (c->rate_per_ip > 0) {
            snprintf(ik, sizeof ik, "ip:%s", j->ip);
            b[n++] = (struct jobs_bucket){ik, c->rate_per_ip, c->rate_per_ip * 2 < 1 ? 1 : c->rate_per_ip * 2};
        }
        if (n && jobs_rate(api->jobs, b, n, on_rate, j) == 0) {
            j->pending++;
            return;
        }
    }
    proceed(j);
}

/* ---- submissions --------------------------------------------------------------------- */

static void submit_next(struct jreq *j);

/* Every file's outcome is in: the answer. */
static void submit_answer(struct jreq *j) {
    struct buf b;
    buf_init(&b, 0);
    if (j->batch) {
        int any = 0;
        for (size_t i = 0; i < j->nfiles; i++) any |= j->files[i].job_json.len > 0;
        if (!any) {
            /* nothing went in: the first refusal stands for all */
            struct jfile *f = &j->files[0];
            buf_cleanup(&b);
            if (f->status != STORE_OK) answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue did not answer", "Retry-After: 1\r\n");
            else if (f->res.outcome == JOBS_CONFLICT)
                answer_err(j, ASR_E_IDEMPOTENCY_CONFLICT, "this Idempotency-Key was used with another request", NULL);
            else {
                char extra[48];
                snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
                         (unsigned long long)((f->res.retry_after_ms + 999) / 1000));
                answer_err(j, ASR_E_QUEUE_FULL, "the job queue is full: retry after Retry-After seconds", extra);
            }
            return;
        }
        buf_puts(&b, "{\"id\":");
        buf_json_str(&b, j->batch_id, strlen(j->batch_id));
        buf_printf(&b, ",\"total\":%zu,\"jobs\":[", j->nfiles);
        for (size_t i = 0; i < j->nfiles; i++) {
            struct jfile *f = &j->files[i];
            if (i) buf_puts(&b, ",");
            if (f->job_json.len) {
                buf_append(&b, f->job_json.data, f->job_json.len);
            } else {
                int err = f->status != STORE_OK ? ASR_E_JOBS_UNAVAILABLE
                          : f->res.outcome == JOBS_CONFLICT ? ASR_E_IDEMPOTENCY_CONFLICT : ASR_E_QUEUE_FULL;
                buf_printf(&b, "{\"index\":%zu,\"error\":{\"code\":\"%s\",\"message\":", i, asr_err_code(err));
                buf_json_str(&b, asr_strerror(err), strlen(asr_strerror(err)));
                buf_puts(&b, "}}");
            }
        }
        buf_puts(&b, "]}");
        char extra[96];
        snprintf(extra, sizeof extra, "Location: /v1/batches/%s\r\n", j->batch_id);
        answer_buf(j, 202, &b, extra);
        buf_cleanup(&b);
        return;
    }
    struct jfile *f = &j->files[0];
    if (f->status != STORE_OK) {
        buf_cleanup(&b);
        answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue did not answer", "Retry-After: 1\r\n");
        return;
    }
    switch (f->res.outcome) {
    case JOBS_CONFLICT:
        buf_cleanup(&b);
        answer_err(j, ASR_E_IDEMPOTENCY_CONFLICT, "this Idempotency-Key was used with another request", NULL);
        return;
    case JOBS_FULL:
    case JOBS_SPOOL_FULL: {
        buf_cleanup(&b);
        char extra[48];
        snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)((f->res.retry_after_ms + 999) / 1000));
        answer_err(j, ASR_E_QUEUE_FULL,
                   f->res.outcome == JOBS_FULL ? "the job queue is full: retry after Retry-After seconds"
                                               : "the job spool is full: retry after Retry-After seconds",
                   extra);
        return;
    }
    default:
        break;
    }
    char extra[160];
    int done = f->res.outcome == JOBS_CACHED || f->res.outcome == JOBS_REPLAY;
    snprintf(extra, sizeof extra, "Location: /v1/jobs/%s\r\n%s", f->job_id,
             f->res.outcome == JOBS_REPLAY ? "Idempotent-Replayed: true\r\n" : "");
    if (j->kind == J_SHORTHAND) {
        buf_puts(&b, "{\"request_id\":");
        buf_json_str(&b, f->job_id, strlen(f->job_id));
        buf_puts(&b, "}");
        answer_buf(j, done ? 200 : 202, &b, extra);
    } else {
        answer_buf(j, done ? 200 : 202, &f->job_json, extra);
    }
    buf_cleanup(&b);
}

static void on_submitted(void *arg, int status, const struct jobs_submit_res *res) {
    struct jreq *j = arg;
    j->pending--;
    struct jfile *f = &j->files[j->next];
    f->status = status;
    if (status == STORE_OK) {
        f->res = *res;
        f->res.job = NULL;
        switch (res->outcome) {
        case JOBS_QUEUED: metrics.jobs_submitted++, metrics.jobs_new_runs++; break;
        case JOBS_JOINED: metrics.jobs_submitted++, metrics.jobs_dedup_joins++; break;
        case JOBS_CACHED: metrics.jobs_submitted++, metrics.jobs_cache_hits++; break;
        case JOBS_REPLAY: metrics.jobs_idem_replays++; break;
        case JOBS_CONFLICT: metrics.jobs_idem_conflicts++; break;
        case JOBS_FULL:
        case JOBS_SPOOL_FULL: metrics.jobs_refused_full++; break;
        }
        if (res->job) {
            snprintf(f->job_id, sizeof f->job_id, "%s", res->job->id);
            buf_init(&f->job_json, 0);
            jobview_json(&f->job_json, res->job, 1);
        }
    }
    j->next++;
    if (!j->hc) {
        jreq_release(j);             /* the client is gone; what went in stays */
        return;
    }
    submit_next(j);
}

/* Submits file j->next (or the URL job), or answers when all are in.
 * Files go one after the other: the answer lists them in order. */
static void submit_next(struct jreq *j) {
    if (j->url[0] && j->next == 0 && !j->nfiles) {
        j->files = xcalloc(1, sizeof *j->files);
        j->nfiles = 1;
        jobreq_fingerprint(j->url, j->opts_json.data, j->files[0].fp);
        if (j->idem[0]) snprintf(j->files[0].idem, sizeof j->files[0].idem, "%s", j->idem);
    }
    if (j->next >= j->nfiles) {
        if (j->batch) {
            const char *ids[1000];
            size_t n = 0;
            for (size_t i = 0; i < j->nfiles && n < 1000; i++)
                if (j->files[i].job_json.len) ids[n++] = j->files[i].job_id;
            if (n && jobs_batch_create(j->api->jobs, j->batch_id, j->owner, ids, n, NULL, NULL) != 0) {
                /* the jobs are in; only the batch record is missing: said in the log */
                struct log_line *l = log_begin(LOG_WARN, "batch record not written");
                if (l) {
                    log_str(l, "batch", j->batch_id);
                    log_end(l);
                }
            }
        }
        submit_answer(j);
        return;
    }
    struct jfile *f = &j->files[j->next];
    util_random_id(f->job_id);
    util_random_id(f->run_id);
    struct jobs_submit s = {
        .job_id = f->job_id, .run_id = f->run_id, .owner = j->owner, .hash = f->hash[0] ? f->hash : "",
        .audio = j->url[0] ? NULL : f->data, .audio_len = j->url[0] ? 0 : f->len,
        .ctype = j->url[0] ? "" : f->ctype, .url = j->url, .opts = j->opts_json.data, .run_opts = j->run_json.data,
        .callback = j->opts.callback, .batch = j->batch ? j->batch_id : "", .idem_key = f->idem,
        .idem_fp = f->fp, .request_id = j->request_id,
    };
    int rc = jobs_submit(j->api->jobs, &s, on_submitted, j);
    if (rc != 0) {
        f->status = STORE_UNAVAILABLE;
        j->next++;
        submit_next(j);
        return;
    }
    j->pending++;
}

/* On the thread pool: does each file read as audio (a one-sample decode:
 * the container and its parameters are checked, nothing long is decoded),
 * and its content hash and fingerprint. */
static void probe_work(uv_work_t *w) {
    struct jreq *j = w->data;
    const char *engine = j->api->env->engine ? j->api->env->engine->name : "";
    for (size_t i = 0; i < j->nfiles; i++) {
        struct jfile *f = &j->files[i];
        struct audio_pcm pcm;
        int rc = audio_decode(f->data, f->len, f->ctype[0] ? f->ctype : NULL, 16000, 1, &pcm, f->probe_msg,
                              sizeof f->probe_msg);
        audio_pcm_cleanup(&pcm);
        f->probe_err = rc == ASR_E_TOO_LARGE ? 0 : rc;
        if (f->probe_err) continue;
        jobreq_content_hash(f->data, f->len, f->ctype, j->run_json.data, engine, f->hash);
        jobreq_fingerprint(f->hash, j->opts_json.data, f->fp);
    }
}

static void after_probe(uv_work_t *w, int status) {
    struct jreq *j = w->data;
    j->pending--;
    if (!j->hc) {
        jreq_release(j);
        return;
    }
    if (status != 0) {
        answer_err(j, ASR_E_INTERNAL, "the audio could not be checked", NULL);
        return;
    }
    for (size_t i = 0; i < j->nfiles; i++) {
        struct jfile *f = &j->files[i];
        if (!f->probe_err) continue;
        char msg[220];
        if (j->batch) snprintf(msg, sizeof msg, "file %zu: %s", i, f->probe_msg[0] ? f->probe_msg : asr_strerror(f->probe_err));
        else snprintf(msg, sizeof msg, "%s", f->probe_msg[0] ? f->probe_msg : asr_strerror(f->probe_err));
        answer_err(j, f->probe_err, msg, NULL);
        return;
    }
    for (size_t i = 0; i < j->nfiles; i++) {
        struct jfile *f = &j->files[i];
        if (!j->idem[0]) continue;
        if (!j->batch) snprintf(f->idem, sizeof f->idem, "%s", j->idem);
        else {
            char k[128];
            snprintf(k, sizeof k, "%s#%zu", j->idem, i);
            jobreq_fingerprint(k, "", f->idem);
        }
    }
    submit_next(j);
}

/* A multipart body into files (parts named "file") and options (other
 * parts, by name). 0, or an error already answered. */
static int split_batch(struct jreq *j) {
    const struct config *c = j->api->env->cfg;
    size_t max = (size_t)c->job_batch_max + 16;
    struct jobreq_part *parts = xcalloc(max, sizeof *parts);
    size_t n = 0;
    char err[160], ct[256];
    snprintf(ct, sizeof ct, "%s", j->files[0].ctype);
    int rc = jobreq_multipart(ct, (const uint8_t *)j->body.data, j->body.len, parts, max, &n, err, sizeof err);
    if (rc != 0) {
        free(parts);
        answer_err(j, ASR_E_BAD_REQUEST, err, NULL);
        return -1;
    }
    size_t files = 0;
    for (size_t i = 0; i < n; i++)
        if (parts[i].name_len == 4 && memcmp(parts[i].name, "file", 4) == 0) files++;
    if (files == 0 || files > (size_t)c->job_batch_max) {
        free(parts);
        snprintf(err, sizeof err, "multipart: 1 to %d parts named \"file\"", c->job_batch_max);
        answer_err(j, ASR_E_BAD_REQUEST, err, NULL);
        return -1;
    }
    free(j->files);
    j->files = xcalloc(files, sizeof *j->files);
    for (size_t i = 0; i < n; i++) {
        const struct jobreq_part *p = &parts[i];
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(p->name_len < 31 ? p->name_len : 31), p->name);
        if (strcmp(name, "file") == 0) {
            struct jfile *f = &j->files[j->nfiles++];
            f->data = p->data;
            f->len = p->len;
            if (p->ctype) snprintf(f->ctype, sizeof f->ctype, "%.*s", (int)(p->ctype_len < 255 ? p->ctype_len : 255), p->ctype);
            if (!f->len) {
                free(parts);
                snprintf(err, sizeof err, "file %zu: empty", j->nfiles - 1);
                answer_err(j, ASR_E_BAD_REQUEST, err, NULL);
                return -1;
            }
            continue;
        }
        rc = jobreq_set(&j->opts, name, (const char *)p->data, p->len, err, sizeof err);
        if (rc == ASR_E_NOT_FOUND) snprintf(err, sizeof err, "multipart: unknown field \"%.40s\"", name);
        if (rc != 0) {
            free(parts);
            answer_err(j, ASR_E_BAD_REQUEST, err, NULL);
            return -1;
        }
    }
    free(parts);
    /* an Idempotency-Key names the batch too: a replay gets the same id */
    if (j->idem[0]) {
        char bid[65];
        jobreq_fingerprint(j->idem, j->owner, bid);
        memcpy(j->batch_id, bid, 32);
        j->batch_id[32] = 0;
    } else {
        util_random_id(j->batch_id);
    }
    return 0;
}

static void submit_start(struct jreq *j) {
    if (j->batch && split_batch(j) != 0) return;
    if (jobreq_opts_json(&j->opts, &j->opts_json) != 0 || jobreq_run_json(&j->opts, &j->run_json) != 0) {
        answer_err(j, ASR_E_INTERNAL, "out of memory", NULL);
        return;
    }
    if (j->url[0]) {
        submit_next(j);
        return;
    }
    j->work.data = j;
    /* Small uploads are checked and hashed here (SHA-256 runs at about 1.4
     * GB/s: 256 KiB is under 0.2 ms of loop time), which saves two thread
     * hand-offs on the submit's critical path; larger ones on the pool. */
    if (j->body.len <= PROBE_INLINE_MAX) {
        j->pending++;
        probe_work(&j->work);
        after_probe(&j->work, 0);
        return;
    }
    if (uv_queue_work(j->api->env->loop, &j->work, probe_work, after_probe) != 0) {
        answer_err(j, ASR_E_INTERNAL, "the audio could not be checked", NULL);
        return;
    }
    j->pending++;
}

/* A read of the job queue came back: 1 to go on with it; 0 when it was
 * answered here (the client gone: released; not found: 404; the queue did
 * not answer: 503 with Retry-After). */
static int read_answered(struct jreq *j, int status, const char *not_found) {
    j->pending--;
    if (!j->hc) {
        jreq_release(j);
        return 0;
    }
    if (status == STORE_NOT_FOUND) {
        answer_err(j, ASR_E_JOB_NOT_FOUND, not_found, NULL);
        return 0;
    }
    if (status != STORE_OK) {
        answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue did not answer", "Retry-After: 1\r\n");
        return 0;
    }
    return 1;
}

/* ---- reading a job ------------------------------------------------------------------------- */

static void on_got(void *arg, int status, const struct jobs_view *v) {
    struct jreq *j = arg;
    if (!read_answered(j, status, "unknown or expired job")) return;
    struct buf b;
    buf_init(&b, 0);
    if (j->kind == J_GET) {
        jobview_json(&b, v, 1);
        answer_buf(j, 200, &b, NULL);
    } else if (strcmp(v->state, "completed") != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "the job is %s: no result", v->state);
        buf_cleanup(&b);
        answer_err(j, ASR_E_JOB_NOT_DONE, msg, NULL);
        return;
    } else {
        int rc = jobview_result(&b, v->result, v->result_len, j->fmt);
        if (rc != 0) {
            buf_cleanup(&b);
            answer_err(j, ASR_E_INTERNAL, "the stored result does not read", NULL);
            return;
        }
        answer(j, 200, j->fmt == FMT_JSON ? "application/json" : fmt_content_type(j->fmt), b.data ? b.data : "", b.len,
               NULL);
    }
    buf_cleanup(&b);
}

static void get_start(struct jreq *j) {
    if (jobs_get(j->api->jobs, j->id, j->owner, on_got, j) != 0) {
        answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue is unreachable", "Retry-After: 1\r\n");
        return;
    }
    j->pending++;
}

static void on_canceled(void *arg, int status, enum jobs_cancel_outcome outcome, const struct jobs_view *v) {
    struct jreq *j = arg;
    if (!read_answered(j, status, "unknown or expired job")) return;
    struct buf b;
    buf_init(&b, 0);
    if (outcome == JOBS_PURGED) {
        buf_puts(&b, "{\"id\":");
        buf_json_str(&b, j->id, strlen(j->id));
        buf_puts(&b, ",\"purged\":true}");
    } else {
        jobview_json(&b, v, 0);
    }
    answer_buf(j, 200, &b, NULL);
    buf_cleanup(&b);
}

static void delete_start(struct jreq *j) {
    if (jobs_cancel(j->api->jobs, j->id, j->owner, on_canceled, j) != 0) {
        answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue is unreachable", "Retry-After: 1\r\n");
        return;
    }
    j->pending++;
}

static void on_batch(void *arg, int status, const struct jobs_batch *b) {
    struct jreq *j = arg;
    if (!read_answered(j, status, "unknown or expired batch")) return;
    struct jobs_batch bb = *b;
    bb.id = j->id;
    struct buf out;
    buf_init(&out, 0);
    jobview_batch_json(&out, &bb);
    answer_buf(j, 200, &out, NULL);
    buf_cleanup(&out);
}

static void batch_get_start(struct jreq *j) {
    if (jobs_batch_get(j->api->jobs, j->id, j->owner, on_batch, j) != 0) {
        answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue is unreachable", "Retry-After: 1\r\n");
        return;
    }
    j->pending++;
}

/* ---- progress as server-sent events ----------------------------------------------------------- */

static void events_end(struct jreq *j) {
    events_unlink(j);
    if (j->timer_open) uv_timer_stop(&j->timer);
    struct http_conn *hc = take_hc(j);
    if (hc) http_stream_end(hc);
    jreq_release(j);
}

static void on_event_poll(uv_timer_t *t);

static int is_final(const char *st) {
    return strcmp(st, "completed") == 0 || strcmp(st, "error") == 0 || strcmp(st, "canceled") == 0;
}

static void on_event_got(void *arg, int status, const struct jobs_view *v) {
    struct jreq *j = arg;
    j->pending--;
    if (!j->hc) {
        jreq_release(j);
        return;
    }
    if (!j->streaming) {               /* the first read decides the answer */
        if (status == STORE_NOT_FOUND) {
            answer_err(j, ASR_E_JOB_NOT_FOUND, "unknown or expired job", NULL);
            return;
        }
        if (status != STORE_OK) {
            answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue did not answer", "Retry-After: 1\r\n");
            return;
        }
        http_stream_begin(j->hc, 200, "text/event-stream",
                          "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
        if (j->head) {
            events_end(j);
            return;
        }
        j->streaming = 1;
        j->ev_next = j->api->events;
        if (j->ev_next) j->ev_next->ev_prev = j;
        j->api->events = j;
        j->last_sent_ms = uv_now(j->api->env->loop);
        http_stream_write(j->hc, "retry: 1000\n\n", 13);
    }
    uint64_t now = uv_now(j->api->env->loop);
    if (status == STORE_NOT_FOUND) {   /* purged meanwhile */
        http_stream_write(j->hc, "event: gone\ndata: {}\n\n", 22);
        events_end(j);
        return;
    }
    if (status == STORE_OK &&
        (strcmp(v->state, j->last_state) != 0 || v->progress - j->last_progress >= 0.01 || is_final(v->state))) {
        struct buf b;
        buf_init(&b, 0);
        buf_printf(&b, "event: %s\ndata: ", v->state);
        jobview_json(&b, v, is_final(v->state));
        buf_puts(&b, "\n\n");
        int rc = b.data ? http_stream_write(j->hc, b.data, b.len) : ASR_ENOMEM;
        buf_cleanup(&b);
        snprintf(j->last_state, sizeof j->last_state, "%s", v->state);
        j->last_progress = v->progress;
        j->last_sent_ms = now;
        if (rc != 0 || is_final(v->state)) {
            events_end(j);
            return;
        }
    } else if (now - j->last_sent_ms >= EVENTS_KEEPALIVE_MS) {
        http_stream_write(j->hc, ": keepalive\n\n", 13);
        j->last_sent_ms = now;
    }
    if (http_peer_gone(j->hc) || j->api->env->draining) {
        events_end(j);
        return;
    }
    uv_timer_start(&j->timer, on_event_poll, EVENTS_POLL_MS, 0);
}

static void on_event_poll(uv_timer_t *t) {
    struct jreq *j = t->data;
    if (!j->hc) return;
    if (jobs_get(j->api->jobs, j->id, j->owner, on_event_got, j) == 0) j->pending++;
    else uv_timer_start(&j->timer, on_event_poll, EVENTS_POLL_MS, 0);  /* Redis is away: keep trying */
}

static void events_start(struct jreq *j) {
    uv_timer_init(j->api->env->loop, &j->timer);
    j->timer.data = j;
    j->timer_open = 1;
    if (jobs_get(j->api->jobs, j->id, j->owner, on_event_got, j) != 0) {
        answer_err(j, ASR_E_JOBS_UNAVAILABLE, "the job queue is unreachable", "Retry-After: 1\r\n");
        return;
    }
    j->pending++;
}

/* ---- routes ------------------------------------------------------------------------------------ */

/* "/v1/jobs/<id>[/what]": the id (32 hex characters) and the rest. 0 or -1. */
static int parse_path(const struct http_req *req, const char *prefix, char id[33], const char **rest,
                      size_t *rest_len) {
    size_t pl;
    const char *p = http_path(req, &pl);
    size_t fl = strlen(prefix);
    if (pl < fl + 32 || memcmp(p, prefix, fl) != 0) return -1;
    p += fl;
    pl -= fl;
    for (int i = 0; i < 32; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
        id[i] = c;
    }
    id[32] = 0;
    *rest = p + 32;
    *rest_len = pl - 32;
    return 0;
}

static void not_found(struct http_conn *hc) { http_respond_err(hc, ASR_E_JOB_NOT_FOUND, "unknown or expired job"); }

void api_jobs_submit(void *ctx, struct http_conn *hc, struct http_req *req) {
    jreq_begin(ctx, hc, req, J_SUBMIT, NULL, FMT_JSON);
}

void api_jobs_get(void *ctx, struct http_conn *hc, struct http_req *req) {
    char id[33];
    const char *rest;
    size_t rl;
    if (parse_path(req, "/v1/jobs/", id, &rest, &rl) != 0) {
        not_found(hc);
        return;
    }
    if (rl == 0) {
        jreq_begin(ctx, hc, req, J_GET, id, FMT_JSON);
    } else if (rl == 7 && memcmp(rest, "/result", 7) == 0) {
        char f[24];
        int n = http_query(req, "format", f, sizeof f);
        int k = n >= 0 ? fmt_parse(f, (size_t)n) : n == -1 ? FMT_JSON : -1;
        if (k < 0) {
            http_respond_error(hc, 400, "BAD_REQUEST", "format: json, text, srt, vtt or verbose_json", NULL);
            return;
        }
        jreq_begin(ctx, hc, req, J_RESULT, id, (enum fmt_kind)k);
    } else if (rl == 7 && memcmp(rest, "/events", 7) == 0) {
        jreq_begin(ctx, hc, req, J_EVENTS, id, FMT_JSON);
    } else {
        not_found(hc);
    }
}

void api_jobs_delete(void *ctx, struct http_conn *hc, struct http_req *req) {
    char id[33];
    const char *rest;
    size_t rl;
    if (parse_path(req, "/v1/jobs/", id, &rest, &rl) != 0 || rl != 0) {
        not_found(hc);
        return;
    }
    jreq_begin(ctx, hc, req, J_DELETE, id, FMT_JSON);
}

void api_jobs_batch(void *ctx, struct http_conn *hc, struct http_req *req) {
    char id[33];
    const char *rest;
    size_t rl;
    if (parse_path(req, "/v1/batches/", id, &rest, &rl) != 0 || rl != 0) {
        http_respond_err(hc, ASR_E_JOB_NOT_FOUND, "unknown or expired batch");
        return;
    }
    jreq_begin(ctx, hc, req, J_BATCH_GET, id, FMT_JSON);
}

void api_jobs_shorthand(struct api *api, struct http_conn *hc, struct http_req *req) {
    jreq_begin(api, hc, req, J_SHORTHAND, NULL, FMT_JSON);
}

void api_jobs_drain(struct api *api) {
    jobrun_drain(api->runner);
    while (api->events) events_end(api->events);
}

size_t api_jobs_running(const struct api *api) { return jobrun_running(api->runner); }
