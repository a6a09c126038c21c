/* Unit tests for src/core/pool.c: results on the loop with word times
 * shifted by the job's offset, round robin between clients, one job running
 * per client, class priority, the queue bound (finals always taken),
 * cancellation, and an instance that cannot be created. A test engine
 * labels each decode with the job's hint and records the order. */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "base/err.h"
#include "core/engine.h"
#include "core/pool.h"

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static char order[256][16];   /* hints in the order decode() began */
static int n_order;
static atomic_int running, max_running, fail_create;
static int decode_ms = 2;

static void *t_create(const void *settings, unsigned index) { return atomic_load(&fail_create) ? NULL : malloc(1); }
static void t_destroy(void *inst) { free(inst); }
static int t_decode(void *inst, const struct engine_window *w, struct engine_output *out) {
    int now = atomic_fetch_add(&running, 1) + 1;
    int m = atomic_load(&max_running);
    while (now > m && !atomic_compare_exchange_weak(&max_running, &m, now)) {}
    pthread_mutex_lock(&order_mu);
    if (n_order < 256) snprintf(order[n_order++], 16, "%s", w->hint ? w->hint : "");
    pthread_mutex_unlock(&order_mu);
    struct timespec ts = {0, decode_ms * 1000000L};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&running, 1);
    if (w->hint && strcmp(w->hint, "fail") == 0) return ASR_E_MODEL_ERROR;
    /* one word per 100 ms of audio, times relative to the window */
    for (size_t i = 0; i * w->sample_rate / 10 < w->n; i++)
        if (engine_output_word(out, "w", 1, i * 100, i * 100 + 100, 0.5f) != 0) return ASR_ENOMEM;
    return 0;
}

static const struct engine_ops t_ops = {
    .name = "pooltest", .abi = ENGINE_ABI, .caps = ENGINE_CAP_WINDOWED, .sample_rate = 16000,
    .load = NULL, .instance_create = t_create, .instance_destroy = t_destroy, .decode = t_decode,
};

struct rec { char hint[16]; int status; size_t n_words; uint64_t first_start, last_end; char text[64]; };
static struct rec recs[256];
static int n_recs;

static void on_done(struct pool_job *job, int status, const struct engine_result *res) {
    struct rec *r = &recs[n_recs++];
    snprintf(r->hint, sizeof r->hint, "%s", (const char *)job->arg);
    r->status = status;
    if (res) {
        r->n_words = res->n_words;
        if (res->n_words) {
            r->first_start = res->words[0].start_ms;
            r->last_end = res->words[res->n_words - 1].end_ms;
        }
        snprintf(r->text, sizeof r->text, "%.*s", (int)res->len, res->text);
    }
}

static int16_t audio[16000];

static struct pool_job *job(const char *label, size_t n, uint64_t offset_ms) {
    struct pool_job *j = pool_job_create(audio, n, 16000, label, strlen(label));
    ASSERT(j != NULL);
    j->done = on_done;
    j->arg = (void *)label;
    j->offset_ms = offset_ms;
    return j;
}

static void reset(void) {
    n_order = n_recs = 0;
    atomic_store(&running, 0);
    atomic_store(&max_running, 0);
    atomic_store(&fail_create, 0);
    decode_ms = 2;
}

static void run_until(uv_loop_t *loop, int n) {
    for (int i = 0; i < 20000 && n_recs < n; i++) uv_run(loop, UV_RUN_ONCE);
}

/* Waits (up to 200 ms) until a thread is decoding. */
static void wait_running(void) {
    for (int i = 0; i < 200 && atomic_load(&running) == 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void finish(uv_loop_t *loop, struct pool *p) {
    pool_destroy(p);
    uv_run(loop, UV_RUN_DEFAULT);
    ASSERT_EQ_INT(uv_loop_close(loop), 0);
}

TEST(pool_results_on_the_loop_with_offset_times) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 2, .queue_max = 8};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client c;
    pool_client_init(&c);
    ASSERT_EQ_INT(pool_submit(p, &c, POOL_WINDOW, job("a", 4800, 2000)), 0); /* 300 ms at 2 s */
    ASSERT_EQ_INT(pool_submit(p, &c, POOL_WINDOW, job("fail", 1600, 0)), 0);
    run_until(&loop, 2);
    ASSERT_EQ_INT(n_recs, 2);
    ASSERT_STR_EQ(recs[0].hint, "a");          /* one client: in the order submitted */
    ASSERT_EQ_INT(recs[0].status, 0);
    ASSERT_EQ_INT(recs[0].n_words, 3);
    ASSERT_EQ_INT(recs[0].first_start, 2000);  /* shifted by the job's offset */
    ASSERT_EQ_INT(recs[0].last_end, 2300);
    ASSERT_STR_EQ(recs[0].text, "w w w");
    ASSERT_STR_EQ(recs[1].hint, "fail");
    ASSERT_EQ_INT(recs[1].status, ASR_E_MODEL_ERROR);
    const struct pool_stats *st = pool_stats(p);
    ASSERT_EQ_INT(st->completed, 2);
    ASSERT_EQ_INT(st->failed, 1);
    ASSERT_EQ_INT(st->queued, 0);
    ASSERT_EQ_INT(st->audio_ms, 400);
    pool_client_cancel(p, &c);
    finish(&loop, p);
}

/* One thread; a greedy client queues 20 jobs before four others queue 2
 * each. Round robin: after the greedy client's first job, every other
 * client's first job runs before its second. */
TEST(pool_round_robin_between_clients) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 1, .queue_max = 64};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client g, o[4];
    pool_client_init(&g);
    for (int i = 0; i < 4; i++) pool_client_init(&o[i]);
    static const char *labels[4][2] = {{"o0a", "o0b"}, {"o1a", "o1b"}, {"o2a", "o2b"}, {"o3a", "o3b"}};
    decode_ms = 5;
    for (int i = 0; i < 20; i++) ASSERT_EQ_INT(pool_submit(p, &g, POOL_WINDOW, job("g", 160, 0)), 0);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) ASSERT_EQ_INT(pool_submit(p, &o[i], POOL_WINDOW, job(labels[i][k], 160, 0)), 0);
    run_until(&loop, 28);
    ASSERT_EQ_INT(n_recs, 28);
    /* each other client's 'a' job ran within the first 6 decodes, its 'b'
     * within the first 12: at most one greedy job between two turns */
    for (int i = 0; i < 4; i++) {
        int pa = -1, pb = -1;
        for (int k = 0; k < n_order; k++) {
            if (strcmp(order[k], labels[i][0]) == 0) pa = k;
            if (strcmp(order[k], labels[i][1]) == 0) pb = k;
        }
        ASSERT(pa >= 0 && pa < 6);
        ASSERT(pb > pa && pb < 12);
    }
    pool_client_cancel(p, &g);
    for (int i = 0; i < 4; i++) pool_client_cancel(p, &o[i]);
    finish(&loop, p);
}

/* Four threads, one client with eight jobs: never two of its jobs at once. */
TEST(pool_one_job_running_per_client) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 4, .queue_max = 64};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client c;
    pool_client_init(&c);
    for (int i = 0; i < 8; i++) ASSERT_EQ_INT(pool_submit(p, &c, POOL_WINDOW, job("c", 160, 0)), 0);
    ASSERT_EQ_INT(pool_client_jobs(&c), 8);
    run_until(&loop, 8);
    ASSERT_EQ_INT(n_recs, 8);
    ASSERT_EQ_INT(atomic_load(&max_running), 1);
    /* two clients do run at once */
    reset();
    struct pool_client d;
    pool_client_init(&d);
    decode_ms = 20;
    ASSERT_EQ_INT(pool_submit(p, &c, POOL_WINDOW, job("c", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &d, POOL_WINDOW, job("d", 160, 0)), 0);
    run_until(&loop, 2);
    ASSERT_EQ_INT(atomic_load(&max_running), 2);
    pool_client_cancel(p, &c);
    pool_client_cancel(p, &d);
    finish(&loop, p);
}

/* Finals first, then windows, then REST, then batch; the bound refuses
 * windows and REST past queue_max but never a final. */
TEST(pool_priority_and_bound) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 1, .queue_max = 3};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client blocker, cb, cr, cw, cf, cf2;
    pool_client_init(&blocker);
    pool_client_init(&cb);
    pool_client_init(&cr);
    pool_client_init(&cw);
    pool_client_init(&cf);
    pool_client_init(&cf2);
    decode_ms = 30;
    /* the blocker occupies the thread while the others queue */
    ASSERT_EQ_INT(pool_submit(p, &blocker, POOL_WINDOW, job("block", 160, 0)), 0);
    wait_running();
    ASSERT_EQ_INT(pool_submit(p, &cb, POOL_BATCH, job("batch", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &cr, POOL_REST, job("rest", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &cw, POOL_WINDOW, job("window", 160, 0)), 0);
    struct pool_job *over = job("over", 160, 0);
    ASSERT_EQ_INT(pool_submit(p, &cw, POOL_WINDOW, over), ASR_EAGAIN); /* 3 waiting: full */
    pool_job_free(over);
    ASSERT_EQ_INT(pool_submit(p, &cf, POOL_FINAL, job("final", 160, 0)), 0); /* finals always */
    ASSERT_EQ_INT(pool_submit(p, &cf2, POOL_FINAL, job("final2", 160, 0)), 0);
    ASSERT_EQ_INT(pool_stats(p)->refused, 1);
    ASSERT_EQ_INT(pool_stats(p)->queued, 5);
    run_until(&loop, 6);
    ASSERT_EQ_INT(n_recs, 6);
    const char *want[] = {"block", "final", "final2", "window", "rest", "batch"};
    for (int i = 0; i < 6; i++) ASSERT_STR_EQ(order[i], want[i]);
    pool_client_cancel(p, &blocker);
    pool_client_cancel(p, &cb);
    pool_client_cancel(p, &cr);
    pool_client_cancel(p, &cw);
    pool_client_cancel(p, &cf);
    pool_client_cancel(p, &cf2);
    finish(&loop, p);
}

/* A cancelled client's queued jobs are dropped and its running job's done
 * never runs; the others complete. */
TEST(pool_cancel_drops_queued_and_running) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 1, .queue_max = 16};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client a, b;
    pool_client_init(&a);
    pool_client_init(&b);
    decode_ms = 20;
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(pool_submit(p, &a, POOL_WINDOW, job("a", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &b, POOL_WINDOW, job("b", 160, 0)), 0);
    wait_running();
    pool_client_cancel(p, &a);   /* one running, two queued */
    ASSERT_EQ_INT(pool_client_jobs(&a), 0);
    run_until(&loop, 1);
    for (int i = 0; i < 50; i++) uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(n_recs, 1);
    ASSERT_STR_EQ(recs[0].hint, "b");
    ASSERT_EQ_INT(pool_stats(p)->queued, 0);
    pool_client_cancel(p, &b);
    finish(&loop, p);
}

TEST(pool_create_fails_when_an_instance_cannot_be_made) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    atomic_store(&fail_create, 1);
    struct pool *p = NULL;
    struct pool_cfg cfg = {.threads = 3, .queue_max = 4};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), ASR_E_MODEL_ERROR);
    ASSERT(p == NULL);
    struct pool_cfg zero = {.threads = 0, .queue_max = 4};
    atomic_store(&fail_create, 0);
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &zero, &p), ASR_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}


/* A waiting job can be taken back (its done never runs); a running one
 * cannot; the client's other jobs go on. */
TEST(pool_cancel_one_waiting_job) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 1, .queue_max = 16};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client c;
    pool_client_init(&c);
    decode_ms = 30;
    struct pool_job *a = job("a", 160, 0), *b = job("b", 160, 0), *f = job("f", 160, 0);
    ASSERT_EQ_INT(pool_submit(p, &c, POOL_WINDOW, a), 0);
    wait_running();
    ASSERT_EQ_INT(pool_submit(p, &c, POOL_WINDOW, b), 0);
    ASSERT_EQ_INT(pool_submit(p, &c, POOL_FINAL, f), 0);
    ASSERT_EQ_INT(pool_job_cancel(p, &c, a), ASR_EAGAIN);   /* running */
    ASSERT_EQ_INT(pool_job_cancel(p, &c, b), 0);            /* waiting: taken back */
    ASSERT_EQ_INT(pool_stats(p)->queued, 1);
    run_until(&loop, 2);
    for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(n_recs, 2);
    ASSERT_STR_EQ(recs[0].hint, "a");
    ASSERT_STR_EQ(recs[1].hint, "f");
    pool_client_cancel(p, &c);
    finish(&loop, p);
}

/* A full queue: a window from a client served less than another client
 * whose window waits takes that window's place (it is delivered with
 * ASR_ECANCELED); a client served no less than everyone waiting is refused. */
TEST(pool_full_queue_evicts_the_most_served_window) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 1, .queue_max = 2};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client a, x, blocker, n, m;
    pool_client_init(&a);
    pool_client_init(&x);
    pool_client_init(&blocker);
    pool_client_init(&n);
    pool_client_init(&m);
    ASSERT_EQ_INT(pool_submit(p, &a, POOL_WINDOW, job("a0", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &a, POOL_WINDOW, job("a0", 160, 0)), 0);
    run_until(&loop, 2); /* a has been served twice */
    ASSERT_EQ_INT(n_recs, 2);
    decode_ms = 40;
    ASSERT_EQ_INT(pool_submit(p, &blocker, POOL_WINDOW, job("block", 160, 0)), 0);
    wait_running();
    ASSERT_EQ_INT(pool_submit(p, &a, POOL_WINDOW, job("a1", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &x, POOL_WINDOW, job("x1", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &n, POOL_WINDOW, job("n1", 160, 0)), 0); /* a1 gives way */
    ASSERT_EQ_INT(pool_stats(p)->evicted, 1);
    ASSERT_EQ_INT(pool_stats(p)->queued, 2);
    struct pool_job *over = job("m1", 160, 0);
    ASSERT_EQ_INT(pool_submit(p, &m, POOL_WINDOW, over), ASR_EAGAIN); /* x and n were served no more than m */
    pool_job_free(over);
    ASSERT_EQ_INT(pool_stats(p)->refused, 1);
    run_until(&loop, 6);
    ASSERT_EQ_INT(n_recs, 6);
    int seen_a1 = 0, seen_x1 = 0, seen_n1 = 0;
    for (int i = 2; i < n_recs; i++) {
        if (strcmp(recs[i].hint, "a1") == 0) {
            seen_a1++;
            ASSERT_EQ_INT(recs[i].status, ASR_ECANCELED);
        } else if (strcmp(recs[i].hint, "x1") == 0) {
            seen_x1++;
            ASSERT_EQ_INT(recs[i].status, 0);
        } else if (strcmp(recs[i].hint, "n1") == 0) {
            seen_n1++;
            ASSERT_EQ_INT(recs[i].status, 0);
        }
    }
    ASSERT_EQ_INT(seen_a1, 1);
    ASSERT_EQ_INT(seen_x1, 1);
    ASSERT_EQ_INT(seen_n1, 1);
    for (int i = 0; i < n_order; i++) ASSERT(strcmp(order[i], "a1") != 0); /* never decoded */
    pool_client_cancel(p, &a);
    pool_client_cancel(p, &x);
    pool_client_cancel(p, &blocker);
    pool_client_cancel(p, &n);
    pool_client_cancel(p, &m);
    finish(&loop, p);
}

/* A client cancelled while its evicted window waits for delivery never
 * hears of it. */
TEST(pool_cancel_forgets_an_evicted_window) {
    reset();
    uv_loop_t loop;
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct pool *p;
    struct pool_cfg cfg = {.threads = 1, .queue_max = 1};
    ASSERT_EQ_INT(pool_create(&loop, &t_ops, NULL, &cfg, &p), 0);
    struct pool_client a, blocker, n;
    pool_client_init(&a);
    pool_client_init(&blocker);
    pool_client_init(&n);
    ASSERT_EQ_INT(pool_submit(p, &a, POOL_WINDOW, job("a0", 160, 0)), 0);
    run_until(&loop, 1);
    decode_ms = 40;
    ASSERT_EQ_INT(pool_submit(p, &blocker, POOL_WINDOW, job("block", 160, 0)), 0);
    wait_running();
    ASSERT_EQ_INT(pool_submit(p, &a, POOL_WINDOW, job("a1", 160, 0)), 0);
    ASSERT_EQ_INT(pool_submit(p, &n, POOL_WINDOW, job("n1", 160, 0)), 0); /* a1 evicted */
    pool_client_cancel(p, &a); /* before the loop delivers it */
    run_until(&loop, 3);
    for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(n_recs, 3);
    for (int i = 0; i < n_recs; i++) ASSERT(strcmp(recs[i].hint, "a1") != 0);
    pool_client_cancel(p, &blocker);
    pool_client_cancel(p, &n);
    finish(&loop, p);
}
