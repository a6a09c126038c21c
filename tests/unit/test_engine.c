/* Unit tests of the engine registry, the wrappers (engine.c) and the mock
 * engine (engine_mock.c). They run a real libuv loop; times are measured
 * loosely and only as lower bounds. */
#include "test.h"

#include <stdint.h>
#include <uv.h>

#include "base/config.h"
#include "core/engine.h"
#include "engines/registry.h"
#include "base/err.h"

/* ---- harness: a loop, a mock config and a log of completions ---------- */

struct rec {
    long     tag;          /* the arg the request was made with */
    int      status;
    int      has_res;
    char    *text;         /* copy of res->text (heap), NULL without res */
    uint64_t t_ns;         /* uv_hrtime() at completion */
    unsigned iter;         /* loop iteration at completion */
    unsigned outstanding;  /* engine_outstanding(watch_es) inside done() */
};

static uv_loop_t loop;
static uv_check_t iter_check;
static unsigned loop_iter;              /* loop iterations seen by iter_check */
static struct config cfg;
static struct rec *recs;                /* heap, REC_MAX entries */
static int nrec;
static int rec_cap;                     /* entries at recs */
static struct engine_session *watch_es; /* session whose count done() records */

#define REC_MAX 4096

static void on_check(uv_check_t *h) { loop_iter++; }

static void setup_cfg(int latency_ms, int wpc, double error_rate, long seed) {
    memset(&cfg, 0, sizeof(cfg));
    cfg.mock_latency_ms = latency_ms;
    cfg.mock_words_per_chunk = wpc;
    cfg.mock_error_rate = error_rate;
    cfg.mock_seed = seed;
}

static void load_mock(void) {
    struct engine_cfg ec = {.loop = &loop, .config = &cfg};
    ASSERT_EQ_INT(engine_load(engines_find("mock"), &ec), 0);
    ASSERT(engine_current() == engines_find("mock"));
}

static void setup(int latency_ms, int wpc, double error_rate, long seed) {
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    ASSERT_EQ_INT(uv_check_init(&loop, &iter_check), 0);
    ASSERT_EQ_INT(uv_check_start(&iter_check, on_check), 0);
    uv_unref((uv_handle_t *)&iter_check);
    setup_cfg(latency_ms, wpc, error_rate, seed);
    load_mock();
    recs = calloc(REC_MAX, sizeof(*recs));
    ASSERT(recs != NULL);
    rec_cap = REC_MAX;
    nrec = 0;
}

static void clear_recs(void) {
    for (int i = 0; i < nrec; i++) free(recs[i].text);
    memset(recs, 0, (size_t)rec_cap * sizeof(*recs));
    nrec = 0;
}

/* Unloads, lets the loop close the engine's timer, and checks that nothing
 * is left on the loop. */
static void teardown(void) {
    engine_unload();
    ASSERT(engine_current() == NULL);
    uv_close((uv_handle_t *)&iter_check, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ_INT(uv_loop_close(&loop), 0);
    clear_recs();
    free(recs);
}

/* Reloads the mock with another seed (unload, close the timer, load). */
static void reload(long seed) {
    engine_unload();
    uv_run(&loop, UV_RUN_NOWAIT);
    cfg.mock_seed = seed;
    load_mock();
}

static void on_done(void *arg, int status, const struct engine_result *res) {
    ASSERT(nrec < rec_cap);
    if (status == 0) ASSERT(res != NULL && res->text != NULL);
    else ASSERT(res == NULL);
    struct rec *r = &recs[nrec++];
    r->tag = (long)(intptr_t)arg;
    r->status = status;
    r->has_res = res != NULL;
    r->text = res ? strndup(res->text, res->len) : NULL;
    if (res) ASSERT_EQ_INT(strlen(r->text), res->len);
    r->t_ns = uv_hrtime();
    r->iter = loop_iter;
    r->outstanding = watch_es ? engine_outstanding(watch_es) : 0;
}

static struct engine_session *new_session(void) {
    struct engine_session_cfg sc = {.sample_rate = 16000};
    struct engine_session *es = engine_session_create(&sc);
    ASSERT(es != NULL);
    return es;
}

static int16_t pcm[1600];               /* 100 ms at 16 kHz of silence */

static int try_submit(struct engine_session *es, unsigned speech_ms, long tag,
                      engine_done_fn done) {
    struct engine_chunk ch = {.pcm = pcm, .n = 1600, .speech_ms = speech_ms};
    return engine_submit(es, &ch, done, (void *)(intptr_t)tag);
}

static void submit(struct engine_session *es, unsigned speech_ms, long tag) {
    ASSERT_EQ_INT(try_submit(es, speech_ms, tag, on_done), 0);
}

static void finalize(struct engine_session *es, long tag) {
    ASSERT_EQ_INT(engine_finalize(es, on_done, (void *)(intptr_t)tag), 0);
}

static void run(void) { uv_run(&loop, UV_RUN_DEFAULT); }

static int count_words(const char *s) {
    int n = 0, in = 0;
    for (; *s; s++) {
        if (*s == ' ') in = 0;
        else if (!in) { in = 1; n++; }
    }
    return n;
}

/* Joins the non-empty texts of recs[from, to) with single spaces (heap). */
static char *join_texts(int from, int to) {
    size_t cap = 1, len = 0;
    for (int i = from; i < to; i++) if (recs[i].text) cap += strlen(recs[i].text) + 1;
    char *out = malloc(cap);
    ASSERT(out != NULL);
    for (int i = from; i < to; i++) {
        if (!recs[i].text || !recs[i].text[0]) continue;
        if (len) out[len++] = ' ';
        size_t n = strlen(recs[i].text);
        memcpy(out + len, recs[i].text, n);
        len += n;
    }
    out[len] = '\0';
    return out;
}

static const struct rec *find_rec(long tag) {
    for (int i = 0; i < nrec; i++) if (recs[i].tag == tag) return &recs[i];
    return NULL;
}

/* ---- a fake engine that completes only when the test says so ---------- */

struct fake_req { void *state; engine_done_fn done; void *arg; int live; };
static struct fake_req fake_q[ENGINE_MAX_OUTSTANDING + 8];
static int fake_n, fake_loads, fake_fail;

static int fake_load(const struct engine_cfg *c) { fake_loads++; return 0; }
static int fake_init(void *state, const struct engine_session_cfg *c) {
    memset(state, 0xab, 40);            /* session_size: must all be writable */
    return 0;
}
static int fake_push(void *state, engine_done_fn done, void *arg) {
    if (fake_fail) return fake_fail;
    ASSERT(fake_n < (int)(sizeof(fake_q) / sizeof(fake_q[0])));
    fake_q[fake_n++] = (struct fake_req){state, done, arg, 1};
    return 0;
}
static int fake_submit(void *state, const struct engine_chunk *ch, engine_done_fn done,
                       void *arg) {
    return fake_push(state, done, arg);
}
static int fake_finalize(void *state, engine_done_fn done, void *arg) {
    return fake_push(state, done, arg);
}
static void fake_cleanup(void *state) {
    for (int i = 0; i < fake_n; i++) if (fake_q[i].state == state) fake_q[i].live = 0;
}
/* Completes the oldest live request; 0 when there was none. */
static int fake_complete(int status) {
    static const struct engine_result res = {"fake", 4};
    for (int i = 0; i < fake_n; i++) {
        if (!fake_q[i].live) continue;
        fake_q[i].live = 0;
        fake_q[i].done(fake_q[i].arg, status, status ? NULL : &res);
        return 1;
    }
    return 0;
}

static const struct engine_ops fake_ops = {
    .name = "fake", .abi = ENGINE_ABI, .caps = 0, .session_size = 40,
    .load = fake_load, .unload = NULL, .session_init = fake_init,
    .submit = fake_submit, .finalize = fake_finalize, .session_cleanup = fake_cleanup,
};

/* ---- registry ---------------------------------------------------------- */

TEST(engine_find_and_names) {
    ASSERT(engines_find("mock") != NULL && strcmp(engines_find("mock")->name, "mock") == 0);
    ASSERT(engines_find("nope") == NULL);
    ASSERT(engines_find("") == NULL);
    ASSERT(engines_find(NULL) == NULL);
    ASSERT(strstr(engines_names(), "mock") != NULL);
    ASSERT(engine_current() == NULL);
    struct engine_session_cfg sc = {.sample_rate = 16000};
    ASSERT(engine_session_create(&sc) == NULL);   /* nothing loaded */
}

TEST(engine_load_unknown_refused) {
    uv_loop_t l;
    ASSERT_EQ_INT(uv_loop_init(&l), 0);
    setup_cfg(10, 2, 0, 1);
    struct engine_cfg ec = {.loop = &l, .config = &cfg};
    ASSERT_EQ_INT(engine_load(engines_find("nope"), &ec), ASR_EINVAL);
    ASSERT_EQ_INT(engine_load(NULL, &ec), ASR_EINVAL);
    ASSERT(engine_current() == NULL);
    ASSERT_EQ_INT(uv_loop_close(&l), 0);
}

TEST(engine_abi_mismatch_refused) {
    uv_loop_t l;
    ASSERT_EQ_INT(uv_loop_init(&l), 0);
    struct engine_cfg ec = {.loop = &l, .config = &cfg};
    struct engine_ops bad = fake_ops;
    bad.abi = ENGINE_ABI + 1;
    ASSERT_EQ_INT(engine_load(&bad, &ec), ASR_EINVAL);
    bad = fake_ops;
    bad.submit = NULL;
    ASSERT_EQ_INT(engine_load(&bad, &ec), ASR_EINVAL);
    ASSERT_EQ_INT(fake_loads, 0);                 /* load() never called */
    ASSERT(engine_current() == NULL);
    ASSERT_EQ_INT(engine_load(&fake_ops, &ec), 0);
    ASSERT_EQ_INT(fake_loads, 1);
    ASSERT(engine_current() == &fake_ops);
    ASSERT_EQ_INT(engine_load(&fake_ops, &ec), ASR_EINVAL);  /* already loaded */
    engine_unload();
    ASSERT(engine_current() == NULL);
    ASSERT_EQ_INT(uv_loop_close(&l), 0);
}

TEST(engine_mock_load_validates_config) {
    uv_loop_t l;
    ASSERT_EQ_INT(uv_loop_init(&l), 0);
    struct engine_cfg ec = {.loop = &l, .config = &cfg};
    setup_cfg(-1, 2, 0, 1);
    ASSERT_EQ_INT(engine_load(engines_find("mock"), &ec), ASR_EINVAL);
    setup_cfg(10, -2, 0, 1);
    ASSERT_EQ_INT(engine_load(engines_find("mock"), &ec), ASR_EINVAL);
    setup_cfg(10, 2, 1.5, 1);
    ASSERT_EQ_INT(engine_load(engines_find("mock"), &ec), ASR_EINVAL);
    struct engine_cfg no_config = {.loop = &l, .config = NULL};
    ASSERT_EQ_INT(engine_load(engines_find("mock"), &no_config), ASR_EINVAL);
    ASSERT(engine_current() == NULL);
    ASSERT_EQ_INT(uv_loop_close(&l), 0);
}

/* ---- wrappers, on the fake engine ------------------------------------ */

TEST(engine_wrapper_counts_and_passes_args) {
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    recs = calloc(REC_MAX, sizeof(*recs));
    ASSERT(recs != NULL);
    rec_cap = REC_MAX;
    struct engine_cfg ec = {.loop = &loop, .config = &cfg};
    ASSERT_EQ_INT(engine_load(&fake_ops, &ec), 0);
    struct engine_session *es = new_session();
    watch_es = es;
    for (long i = 0; i < 20; i++) submit(es, 100, 100 + i);  /* past the inline ring */
    ASSERT_EQ_INT(engine_outstanding(es), 20);
    fake_fail = ASR_E_MODEL_ERROR;                 /* the engine refuses one */
    ASSERT_EQ_INT(try_submit(es, 100, 999, on_done), ASR_E_MODEL_ERROR);
    ASSERT_EQ_INT(engine_finalize(es, on_done, (void *)999), ASR_E_MODEL_ERROR);
    fake_fail = 0;
    ASSERT_EQ_INT(engine_outstanding(es), 20);
    finalize(es, 120);
    ASSERT_EQ_INT(nrec, 0);
    ASSERT(fake_complete(0));
    ASSERT(fake_complete(ASR_E_MODEL_ERROR));
    while (fake_complete(0)) {}
    ASSERT_EQ_INT(nrec, 21);
    for (int i = 0; i < 21; i++) {
        ASSERT_EQ_INT(recs[i].tag, 100 + i);      /* the caller's own arg, in order */
        ASSERT_EQ_INT(recs[i].outstanding, 20 - i); /* dropped before done() */
        ASSERT_EQ_INT(recs[i].status, i == 1 ? ASR_E_MODEL_ERROR : 0);
    }
    ASSERT(find_rec(999) == NULL);
    ASSERT_EQ_INT(engine_outstanding(es), 0);
    engine_session_destroy(es);
    engine_unload();
    ASSERT_EQ_INT(uv_loop_close(&loop), 0);
    clear_recs();
    free(recs);
}

TEST(engine_wrapper_checks_args) {
    setup(0, 2, 0, 1);
    struct engine_session *es = new_session();
    struct engine_chunk ch = {.pcm = NULL, .n = 10, .speech_ms = 0};
    ASSERT_EQ_INT(engine_submit(NULL, &ch, on_done, NULL), ASR_EINVAL);
    ASSERT_EQ_INT(engine_submit(es, NULL, on_done, NULL), ASR_EINVAL);
    ASSERT_EQ_INT(engine_submit(es, &ch, on_done, NULL), ASR_EINVAL);  /* pcm NULL, n > 0 */
    ch.pcm = pcm;
    ASSERT_EQ_INT(engine_submit(es, &ch, NULL, NULL), ASR_EINVAL);
    ASSERT_EQ_INT(engine_finalize(NULL, on_done, NULL), ASR_EINVAL);
    ASSERT_EQ_INT(engine_finalize(es, NULL, NULL), ASR_EINVAL);
    ASSERT_EQ_INT(engine_outstanding(es), 0);
    ASSERT_EQ_INT(engine_outstanding(NULL), 0);
    ch.n = 0;
    ch.pcm = NULL;                                 /* an empty chunk is fine */
    ASSERT_EQ_INT(engine_submit(es, &ch, on_done, NULL), 0);
    run();
    ASSERT_EQ_INT(nrec, 1);
    engine_session_destroy(es);
    engine_session_destroy(NULL);
    teardown();
}

TEST(engine_wrapper_outstanding_bound) {
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    struct engine_cfg ec = {.loop = &loop, .config = &cfg};
    ASSERT_EQ_INT(engine_load(&fake_ops, &ec), 0);
    struct engine_session *es = new_session();
    for (int i = 0; i < ENGINE_MAX_OUTSTANDING; i++)
        ASSERT_EQ_INT(try_submit(es, 0, i, on_done), 0);
    ASSERT_EQ_INT(try_submit(es, 0, -1, on_done), ASR_EAGAIN);
    ASSERT_EQ_INT(engine_finalize(es, on_done, NULL), ASR_EAGAIN);
    ASSERT_EQ_INT(engine_outstanding(es), ENGINE_MAX_OUTSTANDING);
    engine_session_destroy(es);                    /* drops all; ASan checks the ring */
    ASSERT_EQ_INT(fake_complete(0), 0);
    engine_unload();
    ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

/* ---- mock: timing ------------------------------------------------------ */

TEST(engine_mock_completes_async_after_latency) {
    setup(40, 2, 0, 1);
    struct engine_session *es = new_session();
    watch_es = es;
    uv_update_time(&loop);
    uint64_t t0 = uv_hrtime();
    submit(es, 100, 1);
    ASSERT_EQ_INT(nrec, 0);                        /* not inside submit */
    ASSERT_EQ_INT(engine_outstanding(es), 1);
    finalize(es, 2);
    ASSERT_EQ_INT(nrec, 0);
    ASSERT_EQ_INT(engine_outstanding(es), 2);
    run();
    ASSERT_EQ_INT(nrec, 2);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ_INT(recs[i].tag, i + 1);
        /* The loop clock has ms granularity: allow 1 ms of rounding. */
        ASSERT_GE_INT((recs[i].t_ns - t0) / 1000000, 40 - 1);
    }
    ASSERT_EQ_INT(recs[0].outstanding, 1);
    ASSERT_EQ_INT(recs[1].outstanding, 0);
    ASSERT_EQ_INT(engine_outstanding(es), 0);
    engine_session_destroy(es);
    teardown();
}

static struct engine_session *chain_es;
static void on_done_chain(void *arg, int status, const struct engine_result *res) {
    on_done(arg, status, res);
    long tag = (long)(intptr_t)arg;
    if (tag < 5) {
        int before = nrec;
        ASSERT_EQ_INT(try_submit(chain_es, 100, tag + 1, on_done_chain), 0);
        ASSERT_EQ_INT(nrec, before);               /* not inside submit, even here */
    }
}

TEST(engine_mock_latency_zero_is_still_async) {
    setup(0, 2, 0, 1);
    struct engine_session *es = new_session();
    submit(es, 100, 1);
    ASSERT_EQ_INT(nrec, 0);
    uv_run(&loop, UV_RUN_NOWAIT);                  /* the next iteration completes it */
    ASSERT_EQ_INT(nrec, 1);
    ASSERT_EQ_INT(recs[0].tag, 1);
    clear_recs();

    /* Requests made inside done() complete on a later loop iteration, so a
     * callback that always resubmits cannot starve the loop. */
    chain_es = es;
    ASSERT_EQ_INT(try_submit(es, 100, 0, on_done_chain), 0);
    run();
    ASSERT_EQ_INT(nrec, 6);
    for (int i = 0; i < 6; i++) ASSERT_EQ_INT(recs[i].tag, i);
    for (int i = 1; i < 6; i++) ASSERT(recs[i].iter > recs[i - 1].iter);
    engine_session_destroy(es);
    teardown();
}

/* ---- mock: order, words, finalize ------------------------------------- */

TEST(engine_mock_keeps_order_across_finalize) {
    setup(5, 2, 0, 7);
    struct engine_session *es = new_session();
    for (long i = 0; i < 5; i++) submit(es, 100, i);
    finalize(es, 5);
    for (long i = 6; i < 9; i++) submit(es, 50, i);
    finalize(es, 9);
    run();
    ASSERT_EQ_INT(nrec, 10);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ_INT(recs[i].tag, i);
        ASSERT_EQ_INT(recs[i].status, 0);
    }
    char *u1 = join_texts(0, 5), *u2 = join_texts(6, 9);
    ASSERT_STR_EQ(recs[5].text, u1);
    ASSERT_STR_EQ(recs[9].text, u2);
    ASSERT_EQ_INT(count_words(u1), 10);
    ASSERT_EQ_INT(count_words(u2), 3);
    free(u1);
    free(u2);
    engine_session_destroy(es);
    teardown();
}

TEST(engine_mock_words_follow_speech) {
    setup(1, 2, 0, 3);
    struct engine_session *es = new_session();
    static const unsigned speech[] = {0, 100, 300, 25, 25, 25, 25, 0};
    static const int words[] = {0, 2, 6, 0, 1, 0, 1, 0};
    int n = sizeof(speech) / sizeof(speech[0]);
    for (int i = 0; i < n; i++) submit(es, speech[i], i);
    finalize(es, n);
    run();
    ASSERT_EQ_INT(nrec, n + 1);
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT(recs[i].has_res, 1);
        ASSERT_EQ_INT(count_words(recs[i].text), words[i]);
    }
    ASSERT_STR_EQ(recs[0].text, "");               /* silence: empty text */
    ASSERT_EQ_INT(count_words(recs[n].text), 10);
    /* Words are single-space separated lowercase letters. */
    for (const char *p = recs[n].text; *p; p++)
        ASSERT((*p >= 'a' && *p <= 'z') || (*p == ' ' && p[1] && p[1] != ' '));
    engine_session_destroy(es);
    teardown();
}

TEST(engine_mock_fractional_speech_accumulates) {
    setup(0, 3, 0, 3);
    struct engine_session *es = new_session();
    for (int i = 0; i < 30; i++) submit(es, 10, i);       /* 300 ms at 3 per 100 ms */
    finalize(es, 30);
    run();
    ASSERT_EQ_INT(nrec, 31);
    int total = 0;
    for (int i = 0; i < 30; i++) {
        int want = (i + 1) * 10 * 3 / 100 - i * 10 * 3 / 100;
        ASSERT_EQ_INT(count_words(recs[i].text), want);
        total += want;
    }
    ASSERT_EQ_INT(total, 9);
    ASSERT_EQ_INT(count_words(recs[30].text), 9);
    engine_session_destroy(es);
    teardown();
}

TEST(engine_mock_finalize_returns_utterance_and_resets) {
    setup(2, 2, 0, 11);
    struct engine_session *es = new_session();
    submit(es, 100, 0);
    submit(es, 0, 1);
    submit(es, 150, 2);
    finalize(es, 3);
    finalize(es, 4);                               /* nothing since: empty */
    submit(es, 50, 5);
    submit(es, 100, 6);
    finalize(es, 7);
    run();
    ASSERT_EQ_INT(nrec, 8);
    char *u1 = join_texts(0, 3), *u3 = join_texts(5, 7);
    ASSERT_STR_EQ(recs[3].text, u1);
    ASSERT_EQ_INT(count_words(u1), 5);
    ASSERT_STR_EQ(recs[4].text, "");
    ASSERT_EQ_INT(recs[4].status, 0);
    ASSERT_STR_EQ(recs[7].text, u3);
    ASSERT_EQ_INT(count_words(u3), 3);
    free(u1);
    free(u3);
    engine_session_destroy(es);
    teardown();
}

TEST(engine_mock_final_capped_at_word_boundary) {
    setup(0, 10, 0, 5);
    struct engine_session *es = new_session();
    for (int i = 0; i < 100; i++) submit(es, 1000, i);     /* 10,000 words */
    finalize(es, 100);
    submit(es, 100, 101);                          /* the next utterance is whole */
    finalize(es, 102);
    run();
    ASSERT_EQ_INT(nrec, 103);
    for (int i = 0; i < 100; i++) ASSERT_EQ_INT(count_words(recs[i].text), 100);
    char *all = join_texts(0, 100);
    const char *fin = recs[100].text;
    size_t fl = strlen(fin);
    ASSERT_LE_INT(fl, 4096);
    ASSERT_GE_INT(fl, 4096 - 16);                  /* filled up to about the cap */
    ASSERT(strncmp(all, fin, fl) == 0);            /* the oldest words, */
    ASSERT_EQ_INT(all[fl], ' ');                   /* cut between words */
    char *u2 = join_texts(101, 102);
    ASSERT_STR_EQ(recs[102].text, u2);
    ASSERT_EQ_INT(count_words(u2), 10);
    free(all);
    free(u2);
    engine_session_destroy(es);
    teardown();
}

/* ---- mock: determinism and errors ------------------------------------- */

static const unsigned det_speech[] = {100, 50, 0, 200, 30, 70, 100, 0, 250, 10};
#define DET_N ((int)(sizeof(det_speech) / sizeof(det_speech[0])))

/* Runs the det_speech pattern + finalize on two interleaved sessions with
 * tags base+i and base+100+i. */
static void det_run_two(long base) {
    struct engine_session *a = new_session(), *b = new_session();
    for (int i = 0; i < DET_N; i++) {
        submit(a, det_speech[i], base + i);
        submit(b, det_speech[i], base + 100 + i);
    }
    finalize(a, base + DET_N);
    finalize(b, base + 100 + DET_N);
    run();
    engine_session_destroy(a);
    engine_session_destroy(b);
}

TEST(engine_mock_deterministic_for_seed) {
    setup(1, 3, 0.2, 42);
    det_run_two(0);
    ASSERT_EQ_INT(nrec, 2 * (DET_N + 1));
    int words = 0;
    for (int i = 0; i <= DET_N; i++) {
        const struct rec *x = find_rec(i), *y = find_rec(100 + i);
        ASSERT(x && y);
        ASSERT_EQ_INT(x->status, y->status);
        if (x->text || y->text) ASSERT_STR_EQ(x->text, y->text);
        if (x->text && i < DET_N) words += count_words(x->text);
    }
    ASSERT(words > 0);

    reload(42);                                    /* same seed again: same texts */
    det_run_two(1000);
    reload(43);                                    /* another seed: other texts */
    det_run_two(2000);
    int differ = 0;
    for (int i = 0; i <= DET_N; i++) {
        const struct rec *x = find_rec(i), *y = find_rec(1000 + i), *z = find_rec(2000 + i);
        ASSERT(x && y && z);
        ASSERT_EQ_INT(x->status, y->status);
        if (x->text || y->text) ASSERT_STR_EQ(x->text, y->text);
        if (x->status != z->status || (x->text && z->text && strcmp(x->text, z->text)))
            differ++;
    }
    ASSERT(differ > 0);
    teardown();
}

TEST(engine_mock_error_rate_one_fails_every_submit) {
    setup(0, 2, 1.0, 9);
    struct engine_session *es = new_session();
    for (int i = 0; i < 50; i++) submit(es, 100, i);
    finalize(es, 50);
    run();
    ASSERT_EQ_INT(nrec, 51);
    for (int i = 0; i < 50; i++) {
        ASSERT_EQ_INT(recs[i].status, ASR_E_MODEL_ERROR);
        ASSERT_EQ_INT(recs[i].has_res, 0);
    }
    ASSERT_EQ_INT(recs[50].status, 0);             /* finalize never fails */
    ASSERT_STR_EQ(recs[50].text, "");              /* failed chunks add nothing */
    engine_session_destroy(es);
    teardown();
}

TEST(engine_mock_error_rate_zero_never_fails) {
    setup(0, 2, 0.0, 9);
    struct engine_session *es = new_session();
    for (int i = 0; i < 500; i++) submit(es, 100, i);
    run();
    ASSERT_EQ_INT(nrec, 500);
    for (int i = 0; i < 500; i++) ASSERT_EQ_INT(recs[i].status, 0);
    engine_session_destroy(es);
    teardown();
}

/* 1000 submits at the configured rate; returns the error count and fills
 * pattern[i] with whether submit i failed. */
static int error_run(char *pattern) {
    clear_recs();
    struct engine_session *es = new_session();
    for (int i = 0; i < 1000; i++) submit(es, 100, i);
    run();
    ASSERT_EQ_INT(nrec, 1000);
    int errors = 0;
    for (int i = 0; i < 1000; i++) {
        ASSERT_EQ_INT(recs[i].tag, i);
        pattern[i] = recs[i].status == ASR_E_MODEL_ERROR;
        if (recs[i].status) ASSERT_EQ_INT(recs[i].status, ASR_E_MODEL_ERROR);
        errors += pattern[i];
    }
    engine_session_destroy(es);
    return errors;
}

TEST(engine_mock_error_rate_is_a_deterministic_fraction) {
    static char p1[1000], p2[1000], p3[1000];
    setup(0, 2, 0.3, 1234);
    int e1 = error_run(p1);
    ASSERT_GE_INT(e1, 220);                        /* 300 expected; sd is ~14.5 */
    ASSERT_LE_INT(e1, 380);
    reload(1234);
    int e2 = error_run(p2);
    ASSERT_EQ_INT(e1, e2);
    ASSERT(memcmp(p1, p2, sizeof(p1)) == 0);
    reload(4321);
    error_run(p3);
    ASSERT(memcmp(p1, p3, sizeof(p1)) != 0);
    teardown();
}

/* ---- mock: cancellation and many sessions ----------------------------- */

static struct engine_session *victim_es;       /* destroyed by on_done_destroy */
static void on_done_destroy(void *arg, int status, const struct engine_result *res) {
    on_done(arg, status, res);
    if (victim_es) {
        engine_session_destroy(victim_es);
        victim_es = NULL;
    }
    /* res stays readable after its session is destroyed. */
    if (res) ASSERT_EQ_INT(strlen(res->text), res->len);
}

TEST(engine_mock_destroy_drops_outstanding) {
    setup(10, 2, 0, 1);
    struct engine_session *a = new_session(), *b = new_session();
    for (long i = 0; i < 3; i++) submit(a, 100, 100 + i);
    finalize(a, 103);
    submit(b, 100, 200);
    submit(b, 100, 201);
    engine_session_destroy(a);                     /* before any completion */
    run();
    ASSERT_EQ_INT(nrec, 2);
    ASSERT_EQ_INT(recs[0].tag, 200);
    ASSERT_EQ_INT(recs[1].tag, 201);
    clear_recs();

    /* Destroyed inside its own done(): the rest never runs. Another
     * session's requests go on. */
    struct engine_session *c = new_session(), *d = new_session();
    victim_es = c;
    ASSERT_EQ_INT(try_submit(c, 100, 300, on_done_destroy), 0);
    submit(d, 100, 400);
    submit(c, 100, 301);
    finalize(c, 302);
    finalize(d, 401);
    run();
    ASSERT_EQ_INT(nrec, 3);
    ASSERT_EQ_INT(recs[0].tag, 300);
    ASSERT_EQ_INT(recs[1].tag, 400);
    ASSERT_EQ_INT(recs[2].tag, 401);
    clear_recs();

    /* Destroyed inside another session's done(), with a final queued. */
    struct engine_session *g = new_session(), *h = new_session();
    ASSERT_EQ_INT(try_submit(g, 100, 700, on_done_destroy), 0);
    submit(h, 100, 800);
    finalize(h, 801);
    victim_es = h;
    run();
    ASSERT_EQ_INT(nrec, 1);
    ASSERT_EQ_INT(recs[0].tag, 700);
    engine_session_destroy(b);
    engine_session_destroy(d);
    engine_session_destroy(g);
    teardown();                                    /* LeakSanitizer checks at exit */
}

TEST(engine_mock_many_sessions_interleaved) {
    enum { SESS = 300, ROUNDS = 10 };
    setup(3, 2, 0.1, 77);
    free(recs);
    rec_cap = SESS * (ROUNDS + 1);
    recs = calloc((size_t)rec_cap, sizeof(*recs));
    ASSERT(recs != NULL);
    static struct engine_session *ss[SESS];
    for (int s = 0; s < SESS; s++) ss[s] = new_session();
    for (int r = 0; r < ROUNDS; r++)
        for (int s = 0; s < SESS; s++)
            submit(ss[s], (unsigned)((s % 10) * 7 + r * 13) % 120, s * 100L + r);
    for (int s = 0; s < SESS; s++) finalize(ss[s], s * 100L + ROUNDS);
    run();
    ASSERT_EQ_INT(nrec, SESS * (ROUNDS + 1));
    static int next[SESS];
    static char *final[SESS];
    for (int i = 0; i < nrec; i++) {             /* per session: in order */
        int s = (int)(recs[i].tag / 100), k = (int)(recs[i].tag % 100);
        ASSERT_EQ_INT(k, next[s]);
        next[s]++;
        if (k == ROUNDS) final[s] = recs[i].text;
    }
    for (int s = 0; s < SESS; s++) {
        ASSERT_EQ_INT(next[s], ROUNDS + 1);
        /* The final is the session's successful partials joined. */
        char buf[4096] = "";
        size_t len = 0;
        for (int k = 0; k < ROUNDS; k++) {
            const struct rec *x = find_rec(s * 100L + k);
            if (!x->text || !x->text[0]) continue;
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", len ? " " : "", x->text);
        }
        ASSERT_STR_EQ(final[s], buf);
        /* Same seed and same speech pattern (s % 10): same texts. */
        if (s >= 10) ASSERT_STR_EQ(final[s], final[s - 10]);
    }
    for (int s = 0; s < SESS; s++) engine_session_destroy(ss[s]);
    for (int i = 0; i < nrec; i++) free(recs[i].text);
    nrec = 0;
    teardown();
}

/* The target load: 3,000 streams, a chunk every 100 ms each, for 1 s. Done()
 * only counts here, so the test measures the engine rather than the log. */
enum { LOAD_SESS = 3000, LOAD_TICKS = 10 };
static struct engine_session *load_es[LOAD_SESS];
static int load_next[LOAD_SESS], load_done, load_ticks, load_bad;
static uv_timer_t load_timer;

static void on_load_done(void *arg, int status, const struct engine_result *res) {
    long tag = (long)(intptr_t)arg;
    int s = (int)(tag / 100), k = (int)(tag % 100);
    if (k != load_next[s]++ || status != 0) load_bad++;
    load_done++;
}

static void on_load_tick(uv_timer_t *t) {
    for (int s = 0; s < LOAD_SESS; s++) {
        struct engine_chunk ch = {.pcm = pcm, .n = 1600, .speech_ms = (s & 1) ? 100 : 0};
        void *arg = (void *)(intptr_t)(s * 100L + load_ticks);
        int rc = load_ticks < LOAD_TICKS ? engine_submit(load_es[s], &ch, on_load_done, arg)
                                         : engine_finalize(load_es[s], on_load_done, arg);
        if (rc != 0) load_bad++;
    }
    if (++load_ticks > LOAD_TICKS) uv_timer_stop(t);
}

TEST(engine_mock_carries_3000_streams) {
    setup(50, 2, 0, 5);
    for (int s = 0; s < LOAD_SESS; s++) load_es[s] = new_session();
    ASSERT_EQ_INT(uv_timer_init(&loop, &load_timer), 0);
    ASSERT_EQ_INT(uv_timer_start(&load_timer, on_load_tick, 0, 100), 0);
    run();
    ASSERT_EQ_INT(load_bad, 0);
    ASSERT_EQ_INT(load_done, LOAD_SESS * (LOAD_TICKS + 1));
    for (int s = 0; s < LOAD_SESS; s++) {
        ASSERT_EQ_INT(engine_outstanding(load_es[s]), 0);
        engine_session_destroy(load_es[s]);
    }
    uv_close((uv_handle_t *)&load_timer, NULL);
    teardown();
}
