/* The job runner (jobrun.h). */
#include "api/jobrun.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobreq.h"
#include "api/transcribe.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"

#define RENEW_MAX_MS      1000          /* a lease is renewed (with progress) this often, or lease/3 */
#define TAKE_RETRY_MS     500           /* after a take Redis did not answer */
#define WAIT_BLOCK_MS     2000          /* a blocking read for new runs (reclaims are looked for between) */
#define END_RETRY_MIN_MS  250
#define END_RETRY_MAX_MS  5000
#define BUSY_RETRY_MIN_MS 1000
#define BUSY_RETRY_MAX_MS 30000

/* A run's life, forward only but for the retry of an engine whose backlog
 * was full (WAITING back to TRANSCRIBING after a wait).
 *   FETCHING      the audio URL is being downloaded
 *   HASHING       the fetched audio's content hash, on the thread pool
 *   RESOLVING     the queue decides whether it is already cached or running
 *   TRANSCRIBING  decoded on the thread pool a block at a time and run through a
 *                 session (transcribe.h); WAITING: the engine (or the worker's
 *                 upload memory) was busy: a wait, then TRANSCRIBING again
 *   ENDING        its report (complete, fail, release, abandon) is on its way
 *   GONE          dropped; freed once no thread-pool work and no handle holds it */
enum run_state { RUN_FETCHING, RUN_HASHING, RUN_RESOLVING, RUN_TRANSCRIBING, RUN_WAITING, RUN_ENDING, RUN_GONE };

enum run_end { END_COMPLETE, END_FAIL, END_RELEASE, END_ABANDON };

struct run {
    struct jobrun *r;                  /* borrowed */
    enum run_state state;
    char id[40], token[40], hash[80];
    char url[JOBREQ_URL_MAX + 1];
    char ctype[256];
    struct jobreq_opts opts;
    struct buf audio;                  /* owned: spooled or fetched (each transcription gets a copy) */
    uv_work_t work;
    int working;                       /* a thread-pool job holds the run */
    struct httpc_xfer *x;              /* the fetch in flight */
    struct transcription *tr;          /* the transcription in progress; frees itself after on_end */
    struct transcript answer;          /* its segments so far */
    uv_timer_t renew;                  /* lease and progress */
    uv_timer_t wait;                   /* engine busy, report retries */
    int handles_open;
    int renewing;                      /* a renew is out */
    uint64_t t0_ns;                    /* started here */
    unsigned busy_retries;
    enum run_end end;
    char *result;                      /* owned: END_COMPLETE */
    size_t result_len;
    uint64_t duration_ms;
    char *error;                       /* owned: END_FAIL, END_RELEASE (a JSON object) */
    int charge;                        /* END_RELEASE */
    unsigned end_tries;
    int reporting;                     /* the report is out */
    struct run *next, *prev;
};

struct jobrun {
    struct api_env *env;               /* borrowed */
    struct jobs    *q;                 /* borrowed */
    struct httpc   *http;              /* borrowed */
    uv_timer_t      retry;             /* the next take after a failure */
    struct run     *runs;
    size_t          n_runs;            /* not GONE */
    int             taking;            /* a take or a wait is out */
    int             draining;
    int             stopping;
    int             handles_open;
    uint64_t        finished;          /* runs finished here (for ASR_WORKER_MAX_JOBS) */
    int             retire_asked;
    unsigned        reports_out;       /* releases at stop, answered or not */
    void          (*on_stopped)(void *arg);
    void           *stopped_arg;
    uint64_t        renew_ms;
};

static void pump(struct jobrun *r);
static void run_end(struct run *u, enum run_end kind);

/* ---- the run's memory ------------------------------------------------------------- */

static void maybe_free_runner(struct jobrun *r) {
    if (!r->stopping || r->handles_open || r->runs || r->taking || r->reports_out) return;
    void (*cb)(void *) = r->on_stopped;
    void *arg = r->on_stopped ? r->stopped_arg : NULL;
    r->on_stopped = NULL;
    free(r);
    if (cb) cb(arg);
}

static void run_unlink_free(struct run *u) {
    struct jobrun *r = u->r;
    if (u->prev) u->prev->next = u->next;
    else r->runs = u->next;
    if (u->next) u->next->prev = u->prev;
    buf_cleanup(&u->audio);
    transcript_cleanup(&u->answer);
    free(u->result);
    free(u->error);
    free(u);
    maybe_free_runner(r);
}

static void maybe_free_run(struct run *u) {
    if (u->state == RUN_GONE && !u->handles_open && !u->working && !u->renewing && !u->reporting) run_unlink_free(u);
}

static void on_run_handle_closed(uv_handle_t *h) {
    struct run *u = h->data;
    u->handles_open--;
    maybe_free_run(u);
}

/* Drops the run here: whatever it does stops; the struct goes once nothing
 * holds it. */
static void run_gone(struct run *u) {
    if (u->state == RUN_GONE) return;
    struct jobrun *r = u->r;
    u->state = RUN_GONE;
    r->n_runs--;
    metrics.jobs_running = r->n_runs;
    if (u->x) httpc_cancel(u->x);
    u->x = NULL;
    if (u->tr) transcribe_cancel(u->tr);
    u->tr = NULL;
    uv_timer_stop(&u->renew);
    uv_timer_stop(&u->wait);
    uv_close((uv_handle_t *)&u->renew, on_run_handle_closed);
    uv_close((uv_handle_t *)&u->wait, on_run_handle_closed);
    pump(r);           /* before: r may go with the last run once stopping */
    maybe_free_run(u);
}

static void log_run(enum log_level lv, const char *msg, const struct run *u, const char *k, const char *v) {
    struct log_line *l = log_begin(lv, msg);
    if (!l) return;
    log_str(l, "run", u->id);
    if (k) log_str(l, k, v);
    log_end(l);
}

/* An error object {"code","message"} (a JSON string, owned by the caller). */
static char *error_json(const char *code, const char *msg) {
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "{\"code\":");
    buf_json_str(&b, code, strlen(code));
    buf_puts(&b, ",\"message\":");
    buf_json_str(&b, msg, strlen(msg));
    buf_puts(&b, "}");
    char *s = xstrdup(b.data ? b.data : "{}");
    buf_cleanup(&b);
    return s;
}

/* ---- the report ----------------------------------------------------------------------- */

static void report(struct run *u);

static void on_wait_timer(uv_timer_t *t);

static void report_retry(struct run *u) {
    uint64_t delay = END_RETRY_MIN_MS;
    for (unsigned i = 1; i < u->end_tries && delay < END_RETRY_MAX_MS; i++) delay *= 2;
    if (delay > END_RETRY_MAX_MS) delay = END_RETRY_MAX_MS;
    uv_timer_start(&u->wait, on_wait_timer, delay, 0);
}

/* The queue answered the report. */
static void report_answered(struct run *u, int status) {
    u->reporting = 0;
    if (u->state == RUN_GONE) {
        maybe_free_run(u);
        return;
    }
    if (status == STORE_UNAVAILABLE && !u->r->stopping) {
        report_retry(u);
        return;
    }
    struct jobrun *r = u->r;
    if (status == STORE_NOT_OWNER) {
        metrics.jobs_lost_lease++;
        log_run(LOG_WARN, "job run taken over by another worker; result dropped", u, NULL, NULL);
    } else if (status == STORE_OK) {
        double run_ms = (double)(util_now_ns() - u->t0_ns) / 1e6;
        switch (u->end) {
        case END_COMPLETE:
            metrics.jobs_completed++;
            metrics.jobs_runs++;
            metrics.jobs_audio_ms += u->duration_ms;
            metrics.jobs_run_ms += (uint64_t)run_ms;
            hist_add(&metrics.lat_job_run, run_ms);
            r->finished++;
            break;
        case END_FAIL:
            metrics.jobs_failed++;
            metrics.jobs_runs++;
            hist_add(&metrics.lat_job_run, run_ms);
            r->finished++;
            break;
        case END_RELEASE: metrics.jobs_released++; break;
        case END_ABANDON: metrics.jobs_abandoned++; break;
        }
        if (r->env->cfg->worker_max_jobs > 0 && r->finished >= (uint64_t)r->env->cfg->worker_max_jobs &&
            !r->retire_asked) {
            r->retire_asked = 1;
            struct log_line *l = log_begin(LOG_INFO, "job limit reached: asking for a replacement");
            if (l) {
                log_u64(l, "runs", r->finished);
                log_end(l);
            }
            if (r->env->on_want_replacement) r->env->on_want_replacement(r->env->replacement_ctx);
        }
    }
    run_gone(u);
}

static void on_done_answer(void *arg, int status, uint64_t n, uint64_t wait_ms) { report_answered(arg, status); }
static void on_status_answer(void *arg, int status) { report_answered(arg, status); }

static void report(struct run *u) {
    struct jobrun *r = u->r;
    u->end_tries++;
    int rc;
    switch (u->end) {
    case END_COMPLETE:
        rc = jobs_complete(r->q, u->id, u->token, u->result, u->result_len, u->duration_ms, on_done_answer, u);
        break;
    case END_FAIL: rc = jobs_fail(r->q, u->id, u->token, u->error, on_done_answer, u); break;
    case END_RELEASE: rc = jobs_release(r->q, u->id, u->token, u->error, u->charge, on_status_answer, u); break;
    default: rc = jobs_abandon(r->q, u->id, u->token, on_status_answer, u); break;
    }
    if (rc == 0) u->reporting = 1;
    else if (r->stopping) run_gone(u);
    else report_retry(u);
}

/* The run is over here; its report goes to the queue (and is retried
 * until Redis answers). */
static void run_end(struct run *u, enum run_end kind) {
    if (u->state == RUN_ENDING || u->state == RUN_GONE) return;
    u->state = RUN_ENDING;
    u->end = kind;
    if (u->x) httpc_cancel(u->x);
    u->x = NULL;
    if (u->tr) transcribe_cancel(u->tr);
    u->tr = NULL;
    uv_timer_stop(&u->wait);
    report(u);
}

static void run_fail(struct run *u, const char *code, const char *msg) {
    free(u->error);
    u->error = error_json(code, msg);
    log_run(LOG_WARN, "job run failed", u, "error", u->error);
    run_end(u, END_FAIL);
}

static void run_release(struct run *u, const char *code, const char *msg, int charge) {
    free(u->error);
    u->error = code ? error_json(code, msg) : NULL;
    u->charge = charge;
    if (code) log_run(LOG_WARN, "job run given back", u, "error", u->error);
    run_end(u, END_RELEASE);
}

/* ---- the lease ---------------------------------------------------------------------------- */

static void on_renewed(void *arg, int status, int abandoned) {
    struct run *u = arg;
    u->renewing = 0;
    if (u->state == RUN_GONE) {
        maybe_free_run(u);
        return;
    }
    if (status == STORE_NOT_OWNER && u->state != RUN_ENDING) {
        metrics.jobs_lost_lease++;
        log_run(LOG_WARN, "job run taken over by another worker; dropped here", u, NULL, NULL);
        run_gone(u);
    } else if (status == STORE_OK && abandoned && u->state != RUN_ENDING) {
        log_run(LOG_INFO, "job run abandoned: every job waiting for it was canceled", u, NULL, NULL);
        run_end(u, END_ABANDON);
    }
}

static void on_renew_timer(uv_timer_t *t) {
    struct run *u = t->data;
    if (u->renewing || u->state == RUN_GONE) return;
    double progress = u->state == RUN_TRANSCRIBING && u->tr ? transcribe_progress(u->tr) : 0;
    if (jobs_renew(u->r->q, u->id, u->token, progress, on_renewed, u) == 0) u->renewing = 1;
}

/* ---- transcribing ------------------------------------------------------------------------- */

static void start_transcription(struct run *u);

/* Live work first: the engine's backlog (or the worker's upload memory) was
 * full; the run waits, keeping its lease, and starts again. */
static void wait_busy(struct run *u, const struct transcribe_end *e) {
    if (u->busy_retries >= 20) {
        struct buf b;
        buf_init(&b, 0);
        free(u->error);
        u->error = transcribe_error_object(&b, e) == 0 && b.data ? xstrdup(b.data)
                                                                 : error_json(asr_err_code(e->err), "the engine is busy");
        buf_cleanup(&b);
        u->charge = 1;
        log_run(LOG_WARN, "job run given back", u, "error", u->error);
        run_end(u, END_RELEASE);
        return;
    }
    uint64_t delay = BUSY_RETRY_MIN_MS;
    for (unsigned i = 0; i < u->busy_retries && delay < BUSY_RETRY_MAX_MS; i++) delay *= 2;
    if (delay > BUSY_RETRY_MAX_MS) delay = BUSY_RETRY_MAX_MS;
    u->busy_retries++;
    u->state = RUN_WAITING;
    uv_timer_start(&u->wait, on_wait_timer, delay, 0);
}

static void job_segment(void *ctx, const struct sess_final *f) {
    struct run *u = ctx;
    transcript_add(&u->answer, f);
}

/* The transcription is over: the result, the audio's error (it cannot be
 * decoded: the jobs end in error), or the engine's failure with its span
 * (the run goes back for another delivery; a full backlog is waited for). */
static void job_end(void *ctx, const struct transcribe_end *e) {
    struct run *u = ctx;
    u->tr = NULL; /* it frees itself after this call */
    if (e->err == 0) {
        struct buf b;
        buf_init(&b, 0);
        if (transcript_json(&u->answer, e, &b) != 0 || !b.data) {
            buf_cleanup(&b);
            run_release(u, "INTERNAL", "out of memory keeping the result", 1);
            return;
        }
        if (e->has_input && (e->input.truncated || e->input.trailing_bytes))
            log_run(LOG_WARN, "job audio shorter than its header says, or with bytes after its audio", u, NULL, NULL);
        u->result = b.data; /* taken from b */
        u->result_len = b.len;
        u->duration_ms = e->duration_ms;
        run_end(u, END_COMPLETE);
        return;
    }
    if (e->err == ASR_E_ENGINE_BUSY) {
        wait_busy(u, e);
        return;
    }
    if (!e->has_span && e->err != ASR_E_INTERNAL) { /* the audio: no delivery will do better */
        run_fail(u, asr_err_code(e->err), e->msg ? e->msg : asr_strerror(e->err));
        return;
    }
    struct buf b;
    buf_init(&b, 0);
    free(u->error);
    u->error = transcribe_error_object(&b, e) == 0 && b.data ? xstrdup(b.data)
                                                             : error_json(asr_err_code(e->err), "the engine failed");
    buf_cleanup(&b);
    u->charge = e->has_span; /* an engine failure counts as a delivery; an internal hitch does not */
    log_run(LOG_WARN, "job run given back", u, "error", u->error);
    run_end(u, END_RELEASE);
}

static const struct transcribe_sink job_sink = {.on_segment = job_segment, .on_end = job_end};

/* A transcription of a copy of the audio (the transcription adopts what it
 * is given; the run keeps its own for a retry). */
static void start_transcription(struct run *u) {
    struct buf copy;
    buf_init(&copy, 0);
    if (buf_append(&copy, u->audio.data, u->audio.len) != 0) {
        run_release(u, "INTERNAL", "out of memory copying the audio", 0);
        return;
    }
    transcript_cleanup(&u->answer);
    transcript_init(&u->answer, u->opts.granularity == JOBREQ_SEGMENT);
    struct transcribe_opts o = {
        .content_type = u->ctype[0] ? u->ctype : NULL,
        .hint = u->opts.hint[0] ? u->opts.hint : NULL,
        .hint_len = strlen(u->opts.hint),
        .request_id = u->id,
        .pool_class = POOL_BATCH,
        .endpointing_ms = u->opts.endpointing_ms,
        .background = 1,
    };
    u->state = RUN_TRANSCRIBING;
    int rc = transcribe_start(u->r->env, &copy, 0, copy.len, &o, &job_sink, u, &u->tr);
    buf_cleanup(&copy);
    if (rc == ASR_E_SERVER_BUSY) {
        u->tr = NULL;
        struct transcribe_end e = {.err = ASR_E_SERVER_BUSY, .msg = "the worker's upload memory is full"};
        wait_busy(u, &e);
    } else if (rc != 0) {
        u->tr = NULL;
        run_release(u, "INTERNAL", "decoding could not be scheduled", 0);
    }
}

static void on_wait_timer(uv_timer_t *t) {
    struct run *u = t->data;
    if (u->state == RUN_WAITING) start_transcription(u);
    else if (u->state == RUN_ENDING && !u->reporting) report(u);
}

/* ---- URL runs: fetch, hash, resolve ------------------------------------------------------------ */

static void on_resolved(void *arg, int status, enum jobs_resolve_outcome outcome) {
    struct run *u = arg;
    u->reporting = 0;
    if (u->state == RUN_GONE) {
        maybe_free_run(u);
        return;
    }
    if (status == STORE_NOT_OWNER) {
        metrics.jobs_lost_lease++;
        run_gone(u);
        return;
    }
    if (status != STORE_OK) {
        run_release(u, NULL, NULL, 0);      /* try again later, elsewhere */
        return;
    }
    if (outcome == JOBS_RESOLVE_OWN) {
        start_transcription(u);
        return;
    }
    if (outcome == JOBS_RESOLVE_CACHED) metrics.jobs_cache_hits++;
    else metrics.jobs_dedup_joins++;
    log_run(LOG_INFO, "job run resolved by its content hash", u, "outcome",
            outcome == JOBS_RESOLVE_CACHED ? "cached" : "joined");
    run_gone(u);
}

static void hash_work(uv_work_t *w) {
    struct run *u = w->data;
    struct buf rj;
    buf_init(&rj, 0);
    jobreq_run_json(&u->opts, &rj);
    jobreq_content_hash(u->audio.data, u->audio.len, u->ctype, rj.data ? rj.data : "{}",
                        u->r->env->engine ? u->r->env->engine->name : "", u->hash);
    buf_cleanup(&rj);
}

static void after_hash(uv_work_t *w, int status) {
    struct run *u = w->data;
    u->working = 0;
    if (u->state == RUN_GONE) {
        maybe_free_run(u);
        return;
    }
    if (u->state != RUN_HASHING) return;
    if (status != 0) {
        run_release(u, NULL, NULL, 0);
        return;
    }
    u->state = RUN_RESOLVING;
    if (jobs_resolve(u->r->q, u->id, u->token, u->hash, on_resolved, u) == 0) u->reporting = 1;
    else run_release(u, NULL, NULL, 0);
}

static void on_fetched(void *arg, const struct httpc_res *res) {
    struct run *u = arg;
    u->x = NULL;
    char msg[256];
    if (res->err == HTTPC_OK && res->status >= 200 && res->status < 300) {
        metrics.jobs_fetch[FETCH_OK]++;
        if (buf_append(&u->audio, res->body, res->body_len) != 0) {
            run_release(u, "INTERNAL", "out of memory keeping the audio", 1);
            return;
        }
        /* the server's type only when it says more than "some bytes" (sniffed then) */
        if (res->content_type[0] && strncmp(res->content_type, "application/octet-stream", 24) != 0 &&
            strncmp(res->content_type, "binary/", 7) != 0)
            snprintf(u->ctype, sizeof u->ctype, "%s", res->content_type);
        u->state = RUN_HASHING;
        u->work.data = u;
        if (uv_queue_work(u->r->env->loop, &u->work, hash_work, after_hash) != 0) {
            run_release(u, NULL, NULL, 0);
            return;
        }
        u->working = 1;
        return;
    }
    switch (res->err) {
    case HTTPC_OK:
        metrics.jobs_fetch[FETCH_HTTP_ERROR]++;
        snprintf(msg, sizeof msg, "the audio URL answered HTTP %ld", res->status);
        if (res->status >= 500 || res->status == 408 || res->status == 429) run_release(u, "FETCH_FAILED", msg, 1);
        else run_fail(u, "FETCH_FAILED", msg);
        return;
    case HTTPC_REFUSED:
        metrics.jobs_fetch[FETCH_REFUSED]++;
        run_fail(u, "URL_NOT_ALLOWED", "the audio URL's address is not public (loopback, private, link-local or reserved)");
        return;
    case HTTPC_TOO_LARGE:
        metrics.jobs_fetch[FETCH_TOO_LARGE]++;
        run_fail(u, "PAYLOAD_TOO_LARGE", "the audio at the URL is larger than ASR_MAX_UPLOAD_BYTES");
        return;
    case HTTPC_BAD_URL:
        metrics.jobs_fetch[FETCH_FAILED]++;
        snprintf(msg, sizeof msg, "the audio URL cannot be fetched: %s", res->error);
        run_fail(u, "FETCH_FAILED", msg);
        return;
    default:
        metrics.jobs_fetch[FETCH_FAILED]++;
        snprintf(msg, sizeof msg, "fetching the audio URL failed: %s", res->error);
        run_release(u, "FETCH_FAILED", msg, 1);
        return;
    }
}

/* ---- taking runs -------------------------------------------------------------------------------- */

static void run_begin(struct jobrun *r, const struct jobs_task *t) {
    struct run *u = xcalloc(1, sizeof *u);
    u->r = r;
    snprintf(u->id, sizeof u->id, "%s", t->run_id);
    snprintf(u->token, sizeof u->token, "%s", t->token);
    snprintf(u->hash, sizeof u->hash, "%s", t->hash);
    snprintf(u->url, sizeof u->url, "%s", t->url);
    snprintf(u->ctype, sizeof u->ctype, "%s", t->ctype);
    buf_init(&u->audio, 0);
    u->t0_ns = util_now_ns();
    u->next = r->runs;
    if (u->next) u->next->prev = u;
    r->runs = u;
    r->n_runs++;
    metrics.jobs_running = r->n_runs;
    if (t->reclaimed) metrics.jobs_reclaimed++;
    if (t->attempt == 1 && t->started_ms >= t->created_ms && t->created_ms)
        hist_add(&metrics.lat_job_wait, (double)(t->started_ms - t->created_ms));
    uv_timer_init(r->env->loop, &u->renew);
    uv_timer_init(r->env->loop, &u->wait);
    u->renew.data = u->wait.data = u;
    u->handles_open = 2;
    uv_timer_start(&u->renew, on_renew_timer, r->renew_ms, r->renew_ms);
    struct log_line *l = log_begin(LOG_INFO, "job run started");
    if (l) {
        log_str(l, "run", u->id);
        log_u64(l, "attempt", t->attempt);
        if (t->reclaimed) log_str(l, "reclaimed", "yes");
        log_end(l);
    }
    if (jobreq_parse_run_json(t->opts, strlen(t->opts), &u->opts) != 0) jobreq_opts_init(&u->opts);
    if (t->audio_len) {
        if (buf_append(&u->audio, t->audio, t->audio_len) != 0) {
            run_release(u, "INTERNAL", "out of memory keeping the audio", 1);
            return;
        }
        start_transcription(u);
        return;
    }
    if (!u->url[0]) {
        run_fail(u, "INTERNAL", "the run's audio is gone (expired)");
        return;
    }
    const struct config *c = r->env->cfg;
    struct httpc_req req = {.method = "GET", .url = u->url, .max_bytes = c->max_upload_bytes,
                            .timeout_ms = (uint64_t)c->job_fetch_timeout_s * 1000,
                            .allow_private = c->outbound_allow_private, .follow_redirects = 1};
    u->state = RUN_FETCHING;
    if (httpc_request(r->http, &req, on_fetched, u, &u->x) != 0) {
        u->x = NULL;
        run_fail(u, "FETCH_FAILED", "the audio URL cannot be fetched");
    }
}

static void on_retry(uv_timer_t *t) { pump(t->data); }

static void on_taken(void *arg, int status, enum jobs_take_outcome outcome, const struct jobs_task *t);

/* A run arrived after the runner stopped taking (a drain began during a
 * wait): it goes back at once, uncharged. */
static void give_back(struct jobrun *r, const struct jobs_task *t) {
    (void)jobs_release(r->q, t->run_id, t->token, NULL, 0, NULL, NULL);
}

static void after_take(struct jobrun *r, int status, enum jobs_take_outcome outcome, const struct jobs_task *t,
                       int was_wait) {
    r->taking = 0;
    if (r->stopping || r->draining) {
        if (status == STORE_OK && outcome == JOBS_TASK) give_back(r, t);
        maybe_free_runner(r);
        return;
    }
    if (status != STORE_OK) {
        uv_timer_start(&r->retry, on_retry, TAKE_RETRY_MS, 0);
        return;
    }
    switch (outcome) {
    case JOBS_TASK:
        run_begin(r, t);
        break;
    case JOBS_DEAD:
        metrics.jobs_dead++;
        break;
    case JOBS_SKIPPED:
        break;
    case JOBS_NONE:
        if (!was_wait) {
            char token[33];
            util_random_id(token);
            if (jobs_wait(r->q, WAIT_BLOCK_MS, token, on_taken, r) == 0) {
                r->taking = 2;
                return;
            }
            uv_timer_start(&r->retry, on_retry, TAKE_RETRY_MS, 0);
            return;
        }
        break;
    }
    pump(r);
}

static void on_taken(void *arg, int status, enum jobs_take_outcome outcome, const struct jobs_task *t) {
    struct jobrun *r = arg;
    after_take(r, status, outcome, t, r->taking == 2);
}

/* Takes another run while there is room: a reclaimable or new one at once
 * (jobs_take), else waits for one (jobs_wait); after each wait the next
 * take looks for reclaimable runs again. */
static void pump(struct jobrun *r) {
    if (r->stopping || r->draining || r->retire_asked || r->taking) return;
    if (r->n_runs >= (size_t)r->env->cfg->job_concurrency) return;
    if (!jobs_up(r->q)) {
        if (!uv_is_active((uv_handle_t *)&r->retry)) uv_timer_start(&r->retry, on_retry, TAKE_RETRY_MS, 0);
        return;
    }
    char token[33];
    util_random_id(token);
    if (jobs_take(r->q, token, on_taken, r) == 0) r->taking = 1;
    else uv_timer_start(&r->retry, on_retry, TAKE_RETRY_MS, 0);
}

static void on_runner_handle_closed(uv_handle_t *h) {
    struct jobrun *r = h->data;
    r->handles_open--;
    maybe_free_runner(r);
}

struct jobrun *jobrun_start(struct api_env *env, struct jobs *q, struct httpc *http) {
    struct jobrun *r = xcalloc(1, sizeof *r);
    r->env = env;
    r->q = q;
    r->http = http;
    r->renew_ms = (uint64_t)env->cfg->job_lease_s * 1000 / 3;
    if (r->renew_ms > RENEW_MAX_MS) r->renew_ms = RENEW_MAX_MS;
    uv_timer_init(env->loop, &r->retry);
    r->retry.data = r;
    uv_unref((uv_handle_t *)&r->retry);
    r->handles_open = 1;
    /* the queue connects in the background: the first take waits for it */
    uv_timer_start(&r->retry, on_retry, 50, 0);
    return r;
}

void jobrun_drain(struct jobrun *r) {
    if (r) r->draining = 1;
}

size_t jobrun_running(const struct jobrun *r) { return r ? r->n_runs : 0; }

static void on_stop_release(void *arg, int status) {
    struct jobrun *r = arg;
    r->reports_out--;
    maybe_free_runner(r);
}

void jobrun_stop(struct jobrun *r, void (*on_done)(void *arg), void *arg) {
    if (!r) {
        if (on_done) on_done(arg);
        return;
    }
    r->stopping = 1;
    r->on_stopped = on_done;
    r->stopped_arg = arg;
    uv_timer_stop(&r->retry);
    for (struct run *u = r->runs, *n; u; u = n) {
        n = u->next;
        if (u->state == RUN_GONE) continue;
        /* not finished here: back to the queue, uncharged, for another worker now */
        if (u->state != RUN_ENDING &&
            jobs_release(r->q, u->id, u->token, NULL, 0, on_stop_release, r) == 0)
            r->reports_out++;
        run_gone(u);
    }
    uv_close((uv_handle_t *)&r->retry, on_runner_handle_closed);
}
