/* Unit tests of the job queue (store/jobs.c) against a real redis-server:
 * submit, dedup joins, the result cache, idempotency keys, cancel and
 * purge, leases taken over after they run out, the dead-letter stream,
 * release, the limits (queue depth, spool), token buckets, the blocking
 * wait, URL runs resolved by hash, webhooks due, batches, figures. Several
 * queue instances on one loop stand for several workers. */
#include "test.h"

#include <stdint.h>
#include <uv.h>

#include "redis_server.h"

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "store/jobs.h"

static uv_loop_t loop_;
/* The queue's own timers do not keep a loop alive (as the session store's):
 * this one does, so that UV_RUN_ONCE waits for them. */
static uv_timer_t keepalive_;
static void on_keepalive(uv_timer_t *t) { (void)t; }

/* What the last callback of each kind gave, copied. */
struct got {
    int calls, status, outcome;
    char id[64], state[32], hash[80], error[512], result[4096], callback[256], hook_state[32];
    char run[64], token[64], url[256], audio[256], opts[256];
    size_t audio_len;
    uint64_t attempt, attempts, n, retry_ms, wait_ms;
    int reclaimed, cached, deduped, abandoned, allowed;
    double progress;
    size_t nhooks;
    char hook_entry[8][64], hook_job[8][64], hook_event[8][32];
    int hook_gone[8];
    struct jobs_stats stats;
    size_t batch_n;
    char batch_states[8][32];
};

static void copy_view(struct got *g, const struct jobs_view *v) {
    snprintf(g->id, sizeof g->id, "%s", v->id);
    snprintf(g->state, sizeof g->state, "%s", v->state);
    snprintf(g->hash, sizeof g->hash, "%s", v->hash);
    snprintf(g->error, sizeof g->error, "%s", v->error);
    snprintf(g->result, sizeof g->result, "%s", v->result);
    snprintf(g->callback, sizeof g->callback, "%s", v->callback);
    snprintf(g->hook_state, sizeof g->hook_state, "%s", v->hook_state);
    g->attempts = v->attempts;
    g->cached = v->cached;
    g->deduped = v->deduped;
    g->progress = v->progress;
}

static void on_submit(void *arg, int status, const struct jobs_submit_res *res) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    if (status != STORE_OK) return;
    g->outcome = (int)res->outcome;
    g->retry_ms = res->retry_after_ms;
    if (res->job) copy_view(g, res->job);
}

static void on_view(void *arg, int status, const struct jobs_view *v) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    if (v) copy_view(g, v);
}

static void on_cancel(void *arg, int status, enum jobs_cancel_outcome o, const struct jobs_view *v) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->outcome = (int)o;
    if (v) copy_view(g, v);
}

static void on_take(void *arg, int status, enum jobs_take_outcome o, const struct jobs_task *t) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->outcome = (int)o;
    if (!t) return;
    snprintf(g->run, sizeof g->run, "%s", t->run_id);
    snprintf(g->token, sizeof g->token, "%s", t->token);
    snprintf(g->hash, sizeof g->hash, "%s", t->hash);
    snprintf(g->url, sizeof g->url, "%s", t->url);
    snprintf(g->opts, sizeof g->opts, "%s", t->opts);
    g->audio_len = t->audio_len;
    memcpy(g->audio, t->audio, t->audio_len < sizeof g->audio - 1 ? t->audio_len : sizeof g->audio - 1);
    g->attempt = t->attempt;
    g->reclaimed = t->reclaimed;
}

static void on_renew(void *arg, int status, int abandoned) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->abandoned = abandoned;
}

static void on_done(void *arg, int status, uint64_t n, uint64_t wait_ms) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->n = n;
    g->wait_ms = wait_ms;
}

static void on_status(void *arg, int status) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
}

static void on_resolve(void *arg, int status, enum jobs_resolve_outcome o) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->outcome = (int)o;
}

static void on_rate(void *arg, int status, int allowed, uint64_t retry) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->allowed = allowed;
    g->retry_ms = retry;
}

static void on_hooks(void *arg, int status, size_t n, const struct jobs_hook *h) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->nhooks = n;
    for (size_t i = 0; i < n && i < 8; i++) {
        snprintf(g->hook_entry[i], sizeof g->hook_entry[i], "%s", h[i].entry);
        snprintf(g->hook_job[i], sizeof g->hook_job[i], "%s", h[i].job_id);
        snprintf(g->hook_event[i], sizeof g->hook_event[i], "%s", h[i].event);
        g->hook_gone[i] = h[i].job == NULL;
        g->attempt = h[i].delivery;
    }
}

static void on_stats(void *arg, int status, const struct jobs_stats *s) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    if (s) g->stats = *s;
}

static void on_batch(void *arg, int status, const struct jobs_batch *b) {
    struct got *g = arg;
    g->calls++;
    g->status = status;
    if (!b) return;
    g->batch_n = b->n;
    for (size_t i = 0; i < b->n && i < 8; i++) snprintf(g->batch_states[i], 32, "%s", b->states[i]);
}

/* Runs the loop until *calls moves past before (or 5 s). */
static void wait_call(const int *calls, int before) {
    uint64_t end = uv_hrtime() + 5000000000ull;
    while (*calls == before && uv_hrtime() < end) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT(*calls > before);
}

static void sleep_ms(int ms) {
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end) {
        uv_run(&loop_, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

static int closed_;
static void on_closed(void *arg) {
    (void)arg;
    closed_++;
}

/* Closes the queues and runs the loop until they are gone. */
static void close_all(struct jobs *a, struct jobs *b) {
    closed_ = 0;
    jobs_close(a, on_closed, NULL);
    if (b) jobs_close(b, on_closed, NULL);
    uv_timer_stop(&keepalive_);
    uv_close((uv_handle_t *)&keepalive_, NULL);
    uv_run(&loop_, UV_RUN_DEFAULT);
    ASSERT_EQ_INT(closed_, b ? 2 : 1);
    ASSERT_EQ_INT(uv_loop_close(&loop_), 0);
}

struct qcfg {
    uint64_t lease_ms, cache_ttl_ms, max_queued, spool_max, op_timeout_ms;
    unsigned max_attempts;
};

static struct jobs *open_q(const char *worker, struct qcfg c) {
    struct jobs_cfg cfg = {
        .redis_url = rs_url_, .worker_id = worker, .op_timeout_ms = c.op_timeout_ms ? c.op_timeout_ms : 2000,
        .lease_ms = c.lease_ms ? c.lease_ms : 30000, .max_attempts = c.max_attempts ? c.max_attempts : 3,
        .ttl_ms = 60000, .cache_ttl_ms = c.cache_ttl_ms, .max_queued = c.max_queued, .spool_max_bytes = c.spool_max,
    };
    struct jobs *q = NULL;
    ASSERT_EQ_INT(jobs_open(&loop_, &cfg, &q), 0);
    uint64_t end = uv_hrtime() + 5000000000ull;
    while (!jobs_up(q) && uv_hrtime() < end) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT(jobs_up(q));
    sleep_ms(20); /* the consumer groups (init) */
    return q;
}


static void setup(void) {
    ASSERT_EQ_INT(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &keepalive_);
    uv_timer_start(&keepalive_, on_keepalive, 50, 50);
    log_setup(getenv("TEST_LOG") ? getenv("TEST_LOG") : "error", "logfmt", "t");
    rs_start();
}

/* Submits audio (or a url) as job id with hash; returns the outcome. */
static struct got submit(struct jobs *q, const char *id, const char *hash, const char *audio, const char *url,
                         const char *callback, const char *idem, const char *fp) {
    struct got g = {0};
    char run[40];
    util_random_id(run);
    struct jobs_submit s = {
        .job_id = id, .run_id = run, .owner = "k1", .hash = hash, .audio = audio, .audio_len = audio ? strlen(audio) : 0,
        .ctype = "audio/wav", .url = url ? url : "", .opts = "{}", .run_opts = "{\"granularity\":\"word\"}",
        .callback = callback ? callback : "", .batch = "", .idem_key = idem ? idem : "", .idem_fp = fp ? fp : "",
        .request_id = "r1",
    };
    ASSERT_EQ_INT(jobs_submit(q, &s, on_submit, &g), 0);
    wait_call(&g.calls, 0);
    ASSERT_EQ_INT(g.status, STORE_OK);
    return g;
}

static struct got get(struct jobs *q, const char *id, const char *owner) {
    struct got g = {0};
    ASSERT_EQ_INT(jobs_get(q, id, owner, on_view, &g), 0);
    wait_call(&g.calls, 0);
    return g;
}

static struct got take(struct jobs *q) {
    struct got g = {0};
    char token[40];
    util_random_id(token);
    ASSERT_EQ_INT(jobs_take(q, token, on_take, &g), 0);
    wait_call(&g.calls, 0);
    return g;
}

static struct got complete(struct jobs *q, const struct got *t, const char *result) {
    struct got g = {0};
    ASSERT_EQ_INT(jobs_complete(q, t->run, t->token, result, strlen(result), 1234, on_done, &g), 0);
    wait_call(&g.calls, 0);
    return g;
}

static struct got renew(struct jobs *q, const struct got *t, double progress) {
    struct got g = {0};
    ASSERT_EQ_INT(jobs_renew(q, t->run, t->token, progress, on_renew, &g), 0);
    wait_call(&g.calls, 0);
    return g;
}

static struct got cancel(struct jobs *q, const char *id) {
    struct got g = {0};
    ASSERT_EQ_INT(jobs_cancel(q, id, "k1", on_cancel, &g), 0);
    wait_call(&g.calls, 0);
    return g;
}

static struct jobs_stats stats(struct jobs *q) {
    struct got g = {0};
    ASSERT_EQ_INT(jobs_stats(q, on_stats, &g), 0);
    wait_call(&g.calls, 0);
    ASSERT_EQ_INT(g.status, STORE_OK);
    return g.stats;
}

TEST(jobs_submit_take_complete_and_the_cache) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.cache_ttl_ms = 60000});
    struct got s = submit(q, "j1", "h1", "RIFFaudio", NULL, NULL, NULL, NULL);
    ASSERT_EQ_INT(s.outcome, JOBS_QUEUED);
    ASSERT_STR_EQ(s.state, "queued");
    ASSERT_STR_EQ(s.id, "j1");
    ASSERT_STR_EQ(get(q, "j1", "k1").state, "queued");
    ASSERT_EQ_INT(get(q, "j1", "other").status, STORE_NOT_FOUND);
    ASSERT_EQ_INT(get(q, "nope", "k1").status, STORE_NOT_FOUND);
    struct jobs_stats st = stats(q);
    ASSERT_EQ_INT(st.queued, 1);
    ASSERT_EQ_INT(st.spool_bytes, 9);

    struct got t = take(q);
    ASSERT_EQ_INT(t.outcome, JOBS_TASK);
    ASSERT_EQ_INT(t.audio_len, 9);
    ASSERT_STR_EQ(t.audio, "RIFFaudio");
    ASSERT_STR_EQ(t.hash, "h1");
    ASSERT_STR_EQ(t.opts, "{\"granularity\":\"word\"}");
    ASSERT_EQ_INT(t.attempt, 1);
    ASSERT_EQ_INT(t.reclaimed, 0);
    ASSERT_STR_EQ(get(q, "j1", "k1").state, "processing");
    ASSERT_EQ_INT(take(q).outcome, JOBS_NONE);
    st = stats(q);
    ASSERT_EQ_INT(st.queued, 0);
    ASSERT_EQ_INT(st.pending, 1);

    struct got r = renew(q, &t, 0.5);
    ASSERT_EQ_INT(r.status, STORE_OK);
    ASSERT_EQ_INT(r.abandoned, 0);
    ASSERT_NEAR(get(q, "j1", "k1").progress, 0.5, 1e-6);

    struct got c = complete(q, &t, "{\"text\":\"hi\"}");
    ASSERT_EQ_INT(c.status, STORE_OK);
    ASSERT_EQ_INT(c.n, 1);
    struct got v = get(q, "j1", "k1");
    ASSERT_STR_EQ(v.state, "completed");
    ASSERT_STR_EQ(v.result, "{\"text\":\"hi\"}");
    ASSERT_NEAR(v.progress, 1.0, 1e-9);
    ASSERT_EQ_INT(v.attempts, 1);
    /* a second complete with the same lease finds the run gone */
    ASSERT_EQ_INT(complete(q, &t, "{}").status, STORE_NOT_OWNER);
    st = stats(q);
    ASSERT_EQ_INT(st.entries, 0);
    ASSERT_EQ_INT(st.pending, 0);
    ASSERT_EQ_INT(st.spool_bytes, 0);

    /* the same content later: answered from the cache, completed at once */
    struct got s2 = submit(q, "j2", "h1", "RIFFaudio", NULL, NULL, NULL, NULL);
    ASSERT_EQ_INT(s2.outcome, JOBS_CACHED);
    ASSERT_STR_EQ(s2.state, "completed");
    ASSERT_EQ_INT(s2.cached, 1);
    ASSERT_STR_EQ(s2.result, "{\"text\":\"hi\"}");
    ASSERT_EQ_INT(stats(q).queued, 0);
    close_all(q, NULL);
}

TEST(jobs_identical_submissions_join_one_run) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){0});
    ASSERT_EQ_INT(submit(q, "a", "h", "x", NULL, "http://cb/a", NULL, NULL).outcome, JOBS_QUEUED);
    struct got b = submit(q, "b", "h", "x", NULL, NULL, NULL, NULL);
    ASSERT_EQ_INT(b.outcome, JOBS_JOINED);
    ASSERT_EQ_INT(b.deduped, 1);
    ASSERT_EQ_INT(stats(q).queued, 1);
    struct got t = take(q);
    ASSERT_EQ_INT(t.outcome, JOBS_TASK);
    /* one joining while it runs */
    ASSERT_EQ_INT(submit(q, "c", "h", "x", NULL, "http://cb/c", NULL, NULL).outcome, JOBS_JOINED);
    ASSERT_STR_EQ(get(q, "c", "k1").state, "processing");
    ASSERT_EQ_INT(take(q).outcome, JOBS_NONE);
    struct got c = complete(q, &t, "{\"text\":\"r\"}");
    ASSERT_EQ_INT(c.n, 3);
    const char *ids[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        struct got v = get(q, ids[i], "k1");
        ASSERT_STR_EQ(v.state, "completed");
        ASSERT_STR_EQ(v.result, "{\"text\":\"r\"}");
    }
    /* no cache configured: a new submission is a new run */
    ASSERT_EQ_INT(submit(q, "d", "h", "x", NULL, NULL, NULL, NULL).outcome, JOBS_QUEUED);
    /* webhooks of a and c are due (b has no callback) */
    struct got h = {0};
    ASSERT_EQ_INT(jobs_hooks_take(q, 8, on_hooks, &h), 0);
    wait_call(&h.calls, 0);
    ASSERT_EQ_INT(h.status, STORE_OK);
    ASSERT_EQ_INT(h.nhooks, 2);
    ASSERT_STR_EQ(h.hook_event[0], "job.completed");
    ASSERT_EQ_INT(h.hook_gone[0], 0);
    ASSERT_STR_EQ(get(q, "a", "k1").hook_state, "pending");
    struct got d = {0};
    ASSERT_EQ_INT(jobs_hook_done(q, h.hook_entry[0], h.hook_job[0], "delivered", 1, on_status, &d), 0);
    wait_call(&d.calls, 0);
    ASSERT_STR_EQ(get(q, h.hook_job[0], "k1").hook_state, "delivered");
    ASSERT_EQ_INT(stats(q).hooks, 1);
    close_all(q, NULL);
}

TEST(jobs_idempotency_keys) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){0});
    struct got a = submit(q, "a", "h1", "x", NULL, NULL, "key1", "fp1");
    ASSERT_EQ_INT(a.outcome, JOBS_QUEUED);
    struct got r = submit(q, "b", "h1", "x", NULL, NULL, "key1", "fp1");
    ASSERT_EQ_INT(r.outcome, JOBS_REPLAY);
    ASSERT_STR_EQ(r.id, "a");
    ASSERT_EQ_INT(get(q, "b", "k1").status, STORE_NOT_FOUND);
    ASSERT_EQ_INT(submit(q, "c", "h2", "y", NULL, NULL, "key1", "fp2").outcome, JOBS_CONFLICT);
    ASSERT_EQ_INT(stats(q).queued, 1);
    close_all(q, NULL);
}

TEST(jobs_cancel_and_purge) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){0});
    submit(q, "a", "h1", "abc", NULL, NULL, NULL, NULL);
    struct got c = cancel(q, "a");
    ASSERT_EQ_INT(c.status, STORE_OK);
    ASSERT_EQ_INT(c.outcome, JOBS_CANCELED);
    ASSERT_STR_EQ(c.state, "canceled");
    struct jobs_stats st = stats(q);
    ASSERT_EQ_INT(st.queued, 0);
    ASSERT_EQ_INT(st.entries, 0);
    ASSERT_EQ_INT(st.spool_bytes, 0);
    ASSERT_EQ_INT(take(q).outcome, JOBS_NONE);
    /* finished: purged, then gone */
    c = cancel(q, "a");
    ASSERT_EQ_INT(c.outcome, JOBS_PURGED);
    ASSERT_EQ_INT(get(q, "a", "k1").status, STORE_NOT_FOUND);
    ASSERT_EQ_INT(cancel(q, "a").status, STORE_NOT_FOUND);

    /* one of two joined jobs canceled: the run goes on for the other */
    submit(q, "b", "h2", "abc", NULL, NULL, NULL, NULL);
    submit(q, "c", "h2", "abc", NULL, NULL, NULL, NULL);
    cancel(q, "b");
    struct got t = take(q);
    ASSERT_EQ_INT(t.outcome, JOBS_TASK);
    ASSERT_EQ_INT(renew(q, &t, 0.1).abandoned, 0);
    /* the last one canceled while it runs: the worker learns at its renew */
    cancel(q, "c");
    ASSERT_STR_EQ(get(q, "c", "k1").state, "canceled");
    ASSERT_EQ_INT(renew(q, &t, 0.2).abandoned, 1);
    struct got ab = {0};
    ASSERT_EQ_INT(jobs_abandon(q, t.run, t.token, on_status, &ab), 0);
    wait_call(&ab.calls, 0);
    ASSERT_EQ_INT(ab.status, STORE_OK);
    st = stats(q);
    ASSERT_EQ_INT(st.entries, 0);
    ASSERT_EQ_INT(st.pending, 0);
    ASSERT_EQ_INT(st.spool_bytes, 0);
    ASSERT_EQ_INT(st.queued, 0);
    close_all(q, NULL);
}

/* A worker that stops renewing: another takes the run over once the lease
 * ran out; the first one's complete is refused; one result. */
TEST(jobs_lease_taken_over) {
    setup();
    struct jobs *a = open_q("wa", (struct qcfg){.lease_ms = 200});
    struct jobs *b = open_q("wb", (struct qcfg){.lease_ms = 200});
    submit(a, "j", "h", "x", NULL, NULL, NULL, NULL);
    struct got ta = take(a);
    ASSERT_EQ_INT(ta.outcome, JOBS_TASK);
    ASSERT_EQ_INT(take(b).outcome, JOBS_NONE); /* the lease holds */
    sleep_ms(300);
    struct got tb = take(b);
    ASSERT_EQ_INT(tb.outcome, JOBS_TASK);
    ASSERT_EQ_INT(tb.reclaimed, 1);
    ASSERT_EQ_INT(tb.attempt, 2);
    ASSERT_STR_EQ(tb.audio, "x");
    ASSERT_EQ_INT(renew(a, &ta, 0.9).status, STORE_NOT_OWNER);
    ASSERT_EQ_INT(complete(a, &ta, "{\"text\":\"a\"}").status, STORE_NOT_OWNER);
    ASSERT_EQ_INT(complete(b, &tb, "{\"text\":\"b\"}").status, STORE_OK);
    struct got v = get(a, "j", "k1");
    ASSERT_STR_EQ(v.result, "{\"text\":\"b\"}");
    ASSERT_EQ_INT(v.attempts, 2);
    close_all(a, b);
}

/* Renewing keeps a run past its lease. */
TEST(jobs_renew_keeps_the_lease) {
    setup();
    struct jobs *a = open_q("wa", (struct qcfg){.lease_ms = 300});
    struct jobs *b = open_q("wb", (struct qcfg){.lease_ms = 300});
    submit(a, "j", "h", "x", NULL, NULL, NULL, NULL);
    struct got ta = take(a);
    for (int i = 0; i < 5; i++) {
        sleep_ms(120);
        ASSERT_EQ_INT(renew(a, &ta, 0.1 * i).status, STORE_OK);
        ASSERT_EQ_INT(take(b).outcome, JOBS_NONE);
    }
    close_all(a, b);
}

/* Past max_attempts deliveries the run is dead: its jobs end in error
 * (with the last failure's code) and it is in the dead-letter stream. */
TEST(jobs_dead_letter_after_max_attempts) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.lease_ms = 100, .max_attempts = 2});
    submit(q, "j", "h", "x", NULL, "http://cb", NULL, NULL);
    struct got t = take(q);
    ASSERT_EQ_INT(t.attempt, 1);
    struct got rel = {0};
    ASSERT_EQ_INT(jobs_release(q, t.run, t.token, "{\"code\":\"MODEL_ERROR\",\"message\":\"boom\"}", 1, on_status,
                               &rel), 0);
    wait_call(&rel.calls, 0);
    ASSERT_EQ_INT(rel.status, STORE_OK);
    ASSERT_EQ_INT(stats(q).queued, 1);
    t = take(q); /* released: taken again at once */
    ASSERT_EQ_INT(t.outcome, JOBS_TASK);
    ASSERT_EQ_INT(t.attempt, 2);
    sleep_ms(150); /* the worker "dies": no renew */
    struct got d = take(q);
    ASSERT_EQ_INT(d.outcome, JOBS_DEAD);
    struct got v = get(q, "j", "k1");
    ASSERT_STR_EQ(v.state, "error");
    ASSERT(strstr(v.error, "MODEL_ERROR") != NULL);
    ASSERT(strstr(v.error, "gave up after 2 deliveries") != NULL);
    struct jobs_stats st = stats(q);
    ASSERT_EQ_INT(st.dead, 1);
    ASSERT_EQ_INT(st.entries, 0);
    ASSERT_EQ_INT(st.queued, 0);
    ASSERT_EQ_INT(st.hooks, 1); /* job.failed for its callback */
    close_all(q, NULL);
}

/* A release that does not charge (a worker retiring) keeps the count. */
TEST(jobs_release_without_charge) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.lease_ms = 100, .max_attempts = 1});
    submit(q, "j", "h", "x", NULL, NULL, NULL, NULL);
    struct got t = take(q);
    for (int i = 0; i < 3; i++) {
        struct got rel = {0};
        ASSERT_EQ_INT(jobs_release(q, t.run, t.token, NULL, 0, on_status, &rel), 0);
        wait_call(&rel.calls, 0);
        t = take(q);
        ASSERT_EQ_INT(t.outcome, JOBS_TASK);
        ASSERT_EQ_INT(t.attempt, 1);
    }
    close_all(q, NULL);
}

TEST(jobs_queue_and_spool_limits) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.max_queued = 2, .spool_max = 10});
    ASSERT_EQ_INT(submit(q, "a", "h1", "12345", NULL, NULL, NULL, NULL).outcome, JOBS_QUEUED);
    struct got s = submit(q, "b", "h2", "123456", NULL, NULL, NULL, NULL);
    ASSERT_EQ_INT(s.outcome, JOBS_SPOOL_FULL);
    ASSERT_GE_INT(s.retry_ms, 1000);
    ASSERT_EQ_INT(submit(q, "b", "h3", "1234", NULL, NULL, NULL, NULL).outcome, JOBS_QUEUED);
    s = submit(q, "c", "h4", "1", NULL, NULL, NULL, NULL);
    ASSERT_EQ_INT(s.outcome, JOBS_FULL);
    ASSERT_GE_INT(s.retry_ms, 1000);
    /* a join needs no room */
    ASSERT_EQ_INT(submit(q, "d", "h1", "12345", NULL, NULL, NULL, NULL).outcome, JOBS_JOINED);
    ASSERT_EQ_INT(get(q, "c", "k1").status, STORE_NOT_FOUND);
    close_all(q, NULL);
}

TEST(jobs_token_buckets) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){0});
    struct jobs_bucket b[2] = {{"key:k1", 1.0, 2.0}, {"ip:1.2.3.4", 100.0, 100.0}};
    for (int i = 0; i < 3; i++) {
        struct got g = {0};
        ASSERT_EQ_INT(jobs_rate(q, b, 2, on_rate, &g), 0);
        wait_call(&g.calls, 0);
        ASSERT_EQ_INT(g.status, STORE_OK);
        ASSERT_EQ_INT(g.allowed, i < 2);
        if (i == 2) {
            ASSERT_GE_INT(g.retry_ms, 900);
            ASSERT_LE_INT(g.retry_ms, 1000);
        }
    }
    /* the refused request took nothing from the other bucket */
    ASSERT_EQ_INT(rs_int("HGET asrd:rate:ip:1.2.3.4 tokens", NULL), 98);
    ASSERT(rs_int("PTTL asrd:rate:key:k1", NULL) > 0);
    close_all(q, NULL);
}

/* jobs_wait blocks until a run is queued, then takes it. */
TEST(jobs_wait_for_a_run) {
    setup();
    struct jobs *a = open_q("wa", (struct qcfg){0});
    struct jobs *b = open_q("wb", (struct qcfg){0});
    struct got w = {0};
    ASSERT_EQ_INT(jobs_wait(a, 2000, "tok", on_take, &w), 0);
    ASSERT_EQ_INT(jobs_wait(a, 2000, "tok", on_take, &w), ASR_EAGAIN);
    sleep_ms(100);
    ASSERT_EQ_INT(w.calls, 0);
    uint64_t t0 = uv_hrtime();
    submit(b, "j", "h", "audio", NULL, NULL, NULL, NULL);
    wait_call(&w.calls, 0);
    ASSERT(uv_hrtime() - t0 < 500000000ull);
    ASSERT_EQ_INT(w.outcome, JOBS_TASK);
    ASSERT_STR_EQ(w.token, "tok");
    ASSERT_STR_EQ(w.audio, "audio");
    ASSERT_STR_EQ(get(b, "j", "k1").state, "processing");
    /* nothing more: NONE after the block */
    struct got w2 = {0};
    ASSERT_EQ_INT(jobs_wait(a, 100, "tok2", on_take, &w2), 0);
    wait_call(&w2.calls, 0);
    ASSERT_EQ_INT(w2.outcome, JOBS_NONE);
    close_all(a, b);
}

/* URL runs learn their hash after the fetch: the first goes on, a second
 * with the same content joins it, a third after the first finished is
 * answered from the cache. */
TEST(jobs_url_runs_resolve) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.cache_ttl_ms = 60000});
    ASSERT_EQ_INT(submit(q, "u1", "", NULL, "http://x/a.wav", NULL, NULL, NULL).outcome, JOBS_QUEUED);
    ASSERT_EQ_INT(submit(q, "u2", "", NULL, "http://x/b.wav", NULL, NULL, NULL).outcome, JOBS_QUEUED);
    struct got t1 = take(q), t2 = take(q);
    ASSERT_STR_EQ(t1.url, "http://x/a.wav");
    ASSERT_EQ_INT(t1.audio_len, 0);
    struct got r = {0};
    ASSERT_EQ_INT(jobs_resolve(q, t1.run, t1.token, "hh", on_resolve, &r), 0);
    wait_call(&r.calls, 0);
    ASSERT_EQ_INT(r.outcome, JOBS_RESOLVE_OWN);
    ASSERT_STR_EQ(get(q, "u1", "k1").hash, "hh");
    r = (struct got){0};
    ASSERT_EQ_INT(jobs_resolve(q, t2.run, t2.token, "hh", on_resolve, &r), 0);
    wait_call(&r.calls, 0);
    ASSERT_EQ_INT(r.outcome, JOBS_RESOLVE_JOINED);
    ASSERT_EQ_INT(complete(q, &t1, "{\"text\":\"u\"}").n, 2);
    ASSERT_STR_EQ(get(q, "u2", "k1").result, "{\"text\":\"u\"}");
    ASSERT_EQ_INT(submit(q, "u3", "", NULL, "http://x/c.wav", NULL, NULL, NULL).outcome, JOBS_QUEUED);
    struct got t3 = take(q);
    r = (struct got){0};
    ASSERT_EQ_INT(jobs_resolve(q, t3.run, t3.token, "hh", on_resolve, &r), 0);
    wait_call(&r.calls, 0);
    ASSERT_EQ_INT(r.outcome, JOBS_RESOLVE_CACHED);
    struct got v = get(q, "u3", "k1");
    ASSERT_STR_EQ(v.state, "completed");
    ASSERT_EQ_INT(v.cached, 1);
    struct jobs_stats st = stats(q);
    ASSERT_EQ_INT(st.entries, 0);
    ASSERT_EQ_INT(st.pending, 0);
    close_all(q, NULL);
}

TEST(jobs_fail_ends_every_waiting_job) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.cache_ttl_ms = 60000});
    submit(q, "a", "h", "x", NULL, NULL, NULL, NULL);
    submit(q, "b", "h", "x", NULL, NULL, NULL, NULL);
    struct got t = take(q);
    struct got f = {0};
    ASSERT_EQ_INT(jobs_fail(q, t.run, t.token, "{\"code\":\"INVALID_AUDIO\",\"message\":\"no\"}", on_done, &f), 0);
    wait_call(&f.calls, 0);
    ASSERT_EQ_INT(f.n, 2);
    ASSERT_STR_EQ(get(q, "b", "k1").state, "error");
    /* a failure is not cached */
    ASSERT_EQ_INT(submit(q, "c", "h", "x", NULL, NULL, NULL, NULL).outcome, JOBS_QUEUED);
    close_all(q, NULL);
}

TEST(jobs_batches) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){0});
    submit(q, "a", "h1", "x", NULL, NULL, NULL, NULL);
    submit(q, "b", "h2", "y", NULL, NULL, NULL, NULL);
    const char *ids[] = {"a", "b", "zz"};
    struct got c = {0};
    ASSERT_EQ_INT(jobs_batch_create(q, "bt", "k1", ids, 3, on_status, &c), 0);
    wait_call(&c.calls, 0);
    ASSERT_EQ_INT(c.status, STORE_OK);
    take(q);
    struct got g = {0};
    ASSERT_EQ_INT(jobs_batch_get(q, "bt", "k1", on_batch, &g), 0);
    wait_call(&g.calls, 0);
    ASSERT_EQ_INT(g.status, STORE_OK);
    ASSERT_EQ_INT(g.batch_n, 3);
    ASSERT_STR_EQ(g.batch_states[0], "processing");
    ASSERT_STR_EQ(g.batch_states[1], "queued");
    ASSERT_STR_EQ(g.batch_states[2], "expired");
    g = (struct got){0};
    ASSERT_EQ_INT(jobs_batch_get(q, "bt", "k2", on_batch, &g), 0);
    wait_call(&g.calls, 0);
    ASSERT_EQ_INT(g.status, STORE_NOT_FOUND);
    close_all(q, NULL);
}

/* Every key the queue writes has a TTL or is one of the few it owns for
 * good (the streams, the two counters). */
TEST(jobs_every_key_expires_or_is_owned) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.cache_ttl_ms = 60000});
    submit(q, "a", "h1", "x", NULL, "http://cb", "i1", "f1");
    submit(q, "b", "h1", "x", NULL, NULL, NULL, NULL);
    struct jobs_bucket bk = {"ip:x", 1, 5};
    struct got g = {0};
    ASSERT_EQ_INT(jobs_rate(q, &bk, 1, on_rate, &g), 0);
    wait_call(&g.calls, 0);
    struct got t = take(q);
    complete(q, &t, "{}");
    submit(q, "c", "h2", "y", NULL, NULL, NULL, NULL);
    redisContext *c = rs_sync();
    redisReply *r = redisCommand(c, "KEYS *");
    ASSERT(r && r->type == REDIS_REPLY_ARRAY);
    const char *owned[] = {"asrd:jobs:queue", "asrd:jobs:hooks", "asrd:jobs:queued", "asrd:jobs:spool_bytes",
                           "asrd:jobs:dead"};
    for (size_t i = 0; i < r->elements; i++) {
        const char *k = r->element[i]->str;
        int is_owned = 0;
        for (size_t o = 0; o < sizeof owned / sizeof *owned; o++) is_owned |= strcmp(k, owned[o]) == 0;
        if (is_owned) continue;
        redisReply *ttl = redisCommand(c, "PTTL %s", k);
        if (!(ttl && ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0)) TEST_FAIL_("key %s has no TTL", k);
        freeReplyObject(ttl);
    }
    freeReplyObject(r);
    redisFree(c);
    close_all(q, NULL);
}

/* Redis runs a submission after its answer was lost (the worker's deadline
 * passed while Redis was busy; the connection was dropped): the client was
 * told 503, so the job must not stay, run or call back. Once Redis answers
 * again the queue withdraws what that submit left, its spool included. */
static long long rs_integer(redisContext *c, const char *fmt, const char *arg) {
    redisReply *r = redisCommand(c, fmt, arg);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r && r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                        : -1;
    freeReplyObject(r);
    return v;
}

static void lost_answer(struct jobs *q, const char *id, const char *idem, char run[40]) {
    /* Redis busy for 600 ms on another connection, past the 200 ms deadline */
    redisContext *busy = rs_sync();
    ASSERT(busy);
    redisAppendCommand(busy, "EVAL %s 0",
                       "local t = redis.call('TIME') local e = t[1] * 1000000 + t[2] + 600000 "
                       "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= e return 1");
    int done = 0;
    while (!done) ASSERT_EQ_INT(redisBufferWrite(busy, &done), REDIS_OK);
    sleep_ms(50);
    struct got g = {0};
    util_random_id(run);
    struct jobs_submit s = {
        .job_id = id, .run_id = run, .owner = "k1", .hash = "hl", .audio = "audio", .audio_len = 5,
        .ctype = "audio/wav", .url = "", .opts = "{}", .run_opts = "{}", .callback = "http://cb", .batch = "",
        .idem_key = idem, .idem_fp = idem[0] ? "f" : "", .request_id = "r1",
    };
    ASSERT_EQ_INT(jobs_submit(q, &s, on_submit, &g), 0);
    wait_call(&g.calls, 0);
    ASSERT_EQ_INT(g.status, STORE_UNAVAILABLE);
    redisReply *r = NULL;
    ASSERT_EQ_INT(redisGetReply(busy, (void **)&r), REDIS_OK); /* the busy script is over */
    freeReplyObject(r);
    redisFree(busy);
    uint64_t end = uv_hrtime() + 8000000000ull;
    while (!jobs_up(q) && uv_hrtime() < end) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT(jobs_up(q));
    sleep_ms(300); /* the withdrawal's round trip */
}

TEST(jobs_submission_whose_answer_was_lost_is_withdrawn) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){.op_timeout_ms = 200});
    char run[40];
    lost_answer(q, "lost1", "", run);
    redisContext *c = rs_sync();
    char key[128];
    snprintf(key, sizeof key, "asrd:job:%s", "lost1");
    ASSERT_EQ_INT(rs_integer(c, "EXISTS %s", key), 0);
    snprintf(key, sizeof key, "asrd:run:%s:audio", run);
    ASSERT_EQ_INT(rs_integer(c, "EXISTS %s", key), 0);
    snprintf(key, sizeof key, "asrd:run:%s", run);
    ASSERT_EQ_INT(rs_integer(c, "EXISTS %s", key), 0);
    ASSERT_EQ_INT(rs_integer(c, "GET %s", "asrd:jobs:queued"), 0);
    ASSERT_EQ_INT(rs_integer(c, "GET %s", "asrd:jobs:spool_bytes"), 0);
    ASSERT_EQ_INT(rs_integer(c, "XLEN %s", "asrd:jobs:queue"), 0);
    /* nothing to run */
    ASSERT_EQ_INT(take(q).outcome, JOBS_NONE);
    /* with an idempotency key the job stays: the client's retry finds it */
    lost_answer(q, "lost2", "key2", run);
    ASSERT_EQ_INT(submit(q, "again2", "hl", "audio", NULL, "http://cb", "key2", "f").outcome, JOBS_REPLAY);
    ASSERT_STR_EQ(get(q, "lost2", "k1").state, "queued");
    redisFree(c);
    close_all(q, NULL);
}

/* Redis unreachable: ops fail at once (not connected), the queue comes
 * back by itself. */
TEST(jobs_redis_down_and_back) {
    setup();
    struct jobs *q = open_q("w0", (struct qcfg){0});
    rs_kill();
    sleep_ms(200);
    ASSERT(!jobs_up(q));
    struct got g = {0};
    ASSERT_EQ_INT(jobs_get(q, "a", "k1", on_view, &g), STORE_UNAVAILABLE);
    rs_start(); /* same port */
    uint64_t end = uv_hrtime() + 8000000000ull;
    while (!jobs_up(q) && uv_hrtime() < end) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT(jobs_up(q));
    sleep_ms(20);
    ASSERT_EQ_INT(submit(q, "a", "h", "x", NULL, NULL, NULL, NULL).outcome, JOBS_QUEUED);
    ASSERT_EQ_INT(take(q).outcome, JOBS_TASK);
    close_all(q, NULL);
}
