/* The engine contract (src/core/engine.h), checked for every engine in the
 * registry, and shown to catch engines that break it.
 *
 * STREAMING engines: done() never runs inside submit()/finalize(); a
 * session's requests complete in the order made; a finalize answers the
 * whole utterance; session_cleanup() with requests outstanding drops them
 * (their done() never runs); a done() may destroy its own session.
 *
 * WINDOWED engines: an instance decodes on the thread that created it;
 * words come in time order with start <= end inside the window; no filler
 * or silence marker reaches the output; the same window decodes the same
 * way twice; an empty window decodes to nothing.
 *
 * check_streaming() and check_windowed() return the first rule broken (a
 * message) or NULL; the broken test engines below must each be caught. */
#include "test.h"

#include <pthread.h>
#include <uv.h>

#include "base/err.h"
#include "core/engine.h"
#include "core/pool.h"
#include "engines/registry.h"
#include "mock_settings.h"
#include "synth.h"

static const char *env_none(const char *name) {
    if (strcmp(name, "ASR_MOCK_LATENCY_MS") == 0) return "1";
    return NULL;
}

/* ---- streaming ------------------------------------------------------------ */

struct sreq { int tag; int done; int status; int in_call; char text[512]; };
static struct sreq sreqs[64];
static int n_sreqs, in_call, completed, order_ok;
static void *self_destroy_target;       /* a session state whose done() cleans it up */
static int self_cleaned;                /* that done() ran */
static const struct engine_ops *cur_ops;

static void s_done(void *arg, int status, const struct engine_result *res) {
    struct sreq *r = arg;
    r->done++;
    r->status = status;
    r->in_call = in_call;
    if (res) snprintf(r->text, sizeof r->text, "%.*s", (int)res->len, res->text);
    if (r->tag != completed) order_ok = 0;
    completed++;
    if (self_destroy_target && r->tag == 2) { /* ends its own session from inside done() */
        cur_ops->session_cleanup(self_destroy_target);
        self_destroy_target = NULL;
        self_cleaned = 1;
    }
}

static int16_t speech[16000];

static const char *check_streaming(const struct engine_ops *ops, const void *settings) {
    static char why[160];
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return "uv_loop_init";
    struct engine_cfg ec = {.loop = &loop, .settings = settings};
    /* the table itself, not the core's wrappers (which assert on some of
     * these defects): this checks the engine */
    if (!engine_ops_valid(ops) || ops->load(&ec) != 0) return "load failed";
    cur_ops = ops;
    synth_voiced(speech, 16000, 16000, 0);
    const char *fail = NULL;
    struct engine_session_cfg sc = {.sample_rate = ops->sample_rate ? ops->sample_rate : 16000};
    void *es = calloc(1, ops->session_size ? ops->session_size : 1);
    int live = 0;
    self_cleaned = 0;
    if (!es || ops->session_init(es, &sc) != 0) { fail = "session_init failed"; goto out; }
    live = 1;
    n_sreqs = completed = 0;
    order_ok = 1;
    memset(sreqs, 0, sizeof sreqs);
    /* submit, submit, finalize, submit: four requests, one utterance end */
    for (int i = 0; i < 4; i++) {
        struct sreq *r = &sreqs[n_sreqs];
        r->tag = n_sreqs++;
        in_call = 1;
        int rc;
        if (i == 2) {
            rc = ops->finalize(es, s_done, r);
        } else {
            struct engine_chunk c = {.pcm = speech + i * 4000, .n = 4000, .speech_ms = 250, .offset_ms = (uint64_t)i * 250};
            rc = ops->submit(es, &c, s_done, r);
        }
        in_call = 0;
        if (rc != 0) { fail = "a request was refused"; goto out; }
        if (r->done) { fail = "done() ran inside submit()/finalize()"; goto out; }
    }
    for (int i = 0; i < 2000 && completed < 4; i++) uv_run(&loop, UV_RUN_ONCE);
    if (completed != 4) { snprintf(why, sizeof why, "%d of 4 requests completed", completed); fail = why; goto out; }
    if (!order_ok) { fail = "requests completed out of order"; goto out; }
    for (int i = 0; i < 4; i++)
        if (sreqs[i].done != 1 || sreqs[i].in_call) { fail = "a done() ran twice or inside a call"; goto out; }
    /* the finalize answers the utterance: the texts of the submits before it */
    char utt[1100] = "";
    snprintf(utt, sizeof utt, "%s%s%s", sreqs[0].text, sreqs[0].text[0] && sreqs[1].text[0] ? " " : "", sreqs[1].text);
    if (strcmp(utt, sreqs[2].text) != 0) {
        snprintf(why, sizeof why, "finalize answered \"%.40s\", the utterance was \"%.40s\"", sreqs[2].text, utt);
        fail = why;
        goto out;
    }
    /* cleanup with requests outstanding: their done() never runs */
    completed = 0;
    n_sreqs = 0;
    for (int i = 0; i < 3; i++) {
        struct sreq *r = &sreqs[n_sreqs];
        memset(r, 0, sizeof *r);
        r->tag = n_sreqs++;
        struct engine_chunk c = {.pcm = speech, .n = 1600, .speech_ms = 100};
        if (ops->submit(es, &c, s_done, r) != 0) { fail = "a request was refused"; goto out; }
    }
    ops->session_cleanup(es);
    live = 0;
    for (int i = 0; i < 50; i++) uv_run(&loop, UV_RUN_NOWAIT);
    if (completed) { fail = "done() ran after session_cleanup()"; goto out; }
    /* a done() may destroy its own session (the later requests are dropped) */
    memset(es, 0, ops->session_size ? ops->session_size : 1);
    if (ops->session_init(es, &sc) != 0) { fail = "session_init failed"; goto out; }
    live = 1;
    self_cleaned = 0;
    completed = 0;
    n_sreqs = 0;
    order_ok = 1;
    self_destroy_target = es;
    for (int i = 0; i < 4; i++) {
        struct sreq *r = &sreqs[n_sreqs];
        memset(r, 0, sizeof *r);
        r->tag = n_sreqs++;
        struct engine_chunk c = {.pcm = speech, .n = 1600, .speech_ms = 100};
        if (ops->submit(es, &c, s_done, r) != 0) { fail = "a request was refused"; goto out; }
    }
    for (int i = 0; i < 2000 && completed < 3; i++) uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 50; i++) uv_run(&loop, UV_RUN_NOWAIT);
    if (completed != 3) { snprintf(why, sizeof why, "%d done() after a self-destroy (want 3)", completed); fail = why; }
out:
    if (live && !self_cleaned) ops->session_cleanup(es);
    free(es);
    self_destroy_target = NULL;
    if (ops->unload) ops->unload();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return fail;
}

/* ---- windowed --------------------------------------------------------------- */

static pthread_t creator;
static int wrong_thread;

struct wres { char text[2048]; size_t n; int status; int bad_order, bad_range, filler; };

static void w_done(struct pool_job *job, int status, const struct engine_result *res) {
    struct wres *r = job->arg;
    r->status = status;
    if (!res) return;
    snprintf(r->text, sizeof r->text, "%.*s", (int)res->len, res->text);
    r->n = res->n_words;
    uint64_t last = 0, dur_ms = job->offset_ms + 1000 * 60;
    for (size_t i = 0; i < res->n_words; i++) {
        const struct engine_word *w = &res->words[i];
        if (w->start_ms < last) r->bad_order = 1;
        if (w->start_ms > w->end_ms || w->start_ms < job->offset_ms || w->end_ms > dur_ms) r->bad_range = 1;
        if (w->len == 0 || w->text[0] == '<' || w->text[0] == '[' || w->text[0] == '+') r->filler = 1;
        last = w->start_ms;
    }
}

static int16_t *w_audio;
static size_t w_n;

static const char *check_windowed(const struct engine_ops *ops, const void *settings) {
    static char why[200];
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return "uv_loop_init";
    struct engine_cfg ec = {.loop = &loop, .settings = settings};
    if (ops->load && engine_load(ops, &ec) != 0) return "load failed";
    const char *fail = NULL;
    struct pool *p = NULL;
    struct pool_cfg pc = {.threads = 1, .queue_max = 8};
    if (pool_create(&loop, ops, settings, &pc, &p) != 0) { fail = "no instance could be created"; goto out; }
    struct pool_client c;
    pool_client_init(&c);
    struct wres r[3];
    memset(r, 0, sizeof r);
    unsigned rate = ops->sample_rate ? ops->sample_rate : 16000;
    for (int i = 0; i < 3; i++) {
        struct pool_job *j = pool_job_create(w_audio, i == 2 ? 0 : w_n, rate, NULL, 0);
        if (!j) { fail = "no memory"; goto out; }
        j->done = w_done;
        j->arg = &r[i];
        j->offset_ms = 5000; /* words come back shifted into the session's time */
        j->final = 1;
        if (pool_submit(p, &c, POOL_FINAL, j) != 0) { fail = "refused"; goto out; }
    }
    for (int i = 0; i < 20000 && pool_client_jobs(&c); i++) uv_run(&loop, UV_RUN_ONCE);
    pool_client_cancel(p, &c);
    if (r[0].status != 0 || r[1].status != 0 || r[2].status != 0) { fail = "a decode failed"; goto out; }
    if (r[0].bad_order) { fail = "words out of time order"; goto out; }
    if (r[0].bad_range) { fail = "a word outside its window or ending before it starts"; goto out; }
    if (r[0].filler) { fail = "a filler or silence marker in the output"; goto out; }
    if (strcmp(r[0].text, r[1].text) != 0) {
        snprintf(why, sizeof why, "the same window decoded differently: \"%.60s\" / \"%.60s\"", r[0].text, r[1].text);
        fail = why;
        goto out;
    }
    if (r[2].n != 0) { fail = "an empty window gave words"; goto out; }
    if (wrong_thread) fail = "an instance was used on another thread than its creator";
out:
    if (p) pool_destroy(p);
    engine_unload();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return fail;
}

/* ---- every engine built in ------------------------------------------------------ */

static int16_t *read_raw16(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    int16_t *x = malloc((size_t)len);
    if (x && fread(x, 1, (size_t)len, f) != (size_t)len) {
        free(x);
        x = NULL;
    }
    fclose(f);
    *n = (size_t)len / 2;
    return x;
}

TEST(engine_contract_every_registered_engine) {
    /* real speech for a real recognizer when the test data is installed */
    w_audio = read_raw16("/usr/share/pocketsphinx/test/data/goforward.raw", &w_n);
    if (!w_audio) {
        w_n = 32000;
        w_audio = calloc(w_n, sizeof *w_audio);
        ASSERT(w_audio != NULL);
        synth_voiced(w_audio + 4000, 24000, 16000, 0);
    }
    size_t n;
    const struct engine_ops *const *all = engines_all(&n);
    ASSERT(n >= 2);
    for (size_t i = 0; i < n; i++) {
        char err[256];
        void *st = engines_settings_load(all[i], env_none, err, sizeof err);
        ASSERT(st != NULL);
        const char *why = all[i]->caps & ENGINE_CAP_STREAMING ? check_streaming(all[i], st)
                                                               : check_windowed(all[i], st);
        if (why) TEST_FAIL_("engine %s breaks the contract: %s", all[i]->name, why);
        printf("  engine %s keeps the contract\n", all[i]->name);
        free(st);
    }
    free(w_audio);
}

/* ---- broken engines are caught --------------------------------------------------- */

/* A streaming engine with a switchable defect. */
enum defect { D_NONE, D_DONE_INSIDE, D_REORDER, D_DONE_AFTER_CLEANUP, D_BAD_UTTERANCE };
static enum defect defect;
struct bq { engine_done_fn done; void *arg; int fin; int live; void *state; };
static struct bq bq[64];
static int bq_n;
static uv_timer_t bt;
static int bt_init;

static void b_fire(uv_timer_t *t) {
    /* D_REORDER completes the newest first */
    for (int k = 0; k < bq_n; k++) {
        int i = defect == D_REORDER ? bq_n - 1 - k : k;
        if (!bq[i].live && defect != D_DONE_AFTER_CLEANUP) continue;
        if (!bq[i].done) continue;
        engine_done_fn d = bq[i].done;
        bq[i].done = NULL;
        bq[i].live = 0;
        struct engine_result res = {.text = bq[i].fin ? (defect == D_BAD_UTTERANCE ? "other" : "w w") : "w", .len = 0};
        res.len = strlen(res.text);
        d(bq[i].arg, 0, &res);
    }
}
static int b_load(const struct engine_cfg *c) {
    bq_n = 0;
    uv_timer_init(c->loop, &bt);
    bt_init = 1;
    return 0;
}
static void b_unload(void) {
    if (bt_init) uv_close((uv_handle_t *)&bt, NULL);
    bt_init = 0;
}
static int b_init(void *st, const struct engine_session_cfg *c) { return 0; }
static int b_push(void *st, engine_done_fn done, void *arg, int fin) {
    if (defect == D_DONE_INSIDE) {
        struct engine_result res = {.text = fin ? "w w" : "w", .len = fin ? 3 : 1};
        done(arg, 0, &res);
        return 0;
    }
    bq[bq_n++] = (struct bq){done, arg, fin, 1, st};
    uv_timer_start(&bt, b_fire, 1, 0);
    return 0;
}
static int b_submit(void *st, const struct engine_chunk *c, engine_done_fn done, void *arg) {
    return b_push(st, done, arg, 0);
}
static int b_finalize(void *st, engine_done_fn done, void *arg) { return b_push(st, done, arg, 1); }
static void b_cleanup(void *st) {
    for (int i = 0; i < bq_n; i++)
        if (bq[i].state == st) bq[i].live = 0; /* D_DONE_AFTER_CLEANUP still fires them */
}
static const struct engine_ops broken = {
    .name = "broken", .abi = ENGINE_ABI, .caps = ENGINE_CAP_STREAMING, .session_size = 8, .load = b_load,
    .unload = b_unload, .session_init = b_init, .submit = b_submit, .finalize = b_finalize,
    .session_cleanup = b_cleanup,
};

TEST(engine_contract_catches_broken_streaming_engines) {
    defect = D_NONE;
    ASSERT(check_streaming(&broken, NULL) == NULL);   /* the well-behaved variant passes */
    const enum defect ds[] = {D_DONE_INSIDE, D_REORDER, D_DONE_AFTER_CLEANUP, D_BAD_UTTERANCE};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        defect = ds[i];
        const char *why = check_streaming(&broken, NULL);
        if (!why) TEST_FAIL_("defect %d went unnoticed", (int)ds[i]);
        printf("  defect %d caught: %s\n", (int)ds[i], why);
    }
}

/* Windowed engines with defects: fillers in the output, words out of order,
 * a nondeterministic decode. */
static int wdefect;
static int calls;
static void *wb_create(const void *s, unsigned index) {
    creator = pthread_self();
    return malloc(1);
}
static void wb_destroy(void *i) { free(i); }
static int wb_decode(void *inst, const struct engine_window *w, struct engine_output *out) {
    if (!pthread_equal(creator, pthread_self())) wrong_thread = 1;
    if (w->n == 0) return 0;
    calls++;
    if (wdefect == 1) return engine_output_word(out, "<sil>", 5, 0, 100, -1);
    if (wdefect == 2) {
        engine_output_word(out, "b", 1, 500, 600, -1);
        return engine_output_word(out, "a", 1, 100, 200, -1);
    }
    if (wdefect == 3) return engine_output_word(out, calls % 2 ? "odd" : "even", calls % 2 ? 3 : 4, 0, 100, -1);
    return engine_output_word(out, "word", 4, 100, 300, 0.5f);
}
static const struct engine_ops wbroken = {
    .name = "wbroken", .abi = ENGINE_ABI, .caps = ENGINE_CAP_WINDOWED, .sample_rate = 16000,
    .instance_create = wb_create, .instance_destroy = wb_destroy, .decode = wb_decode,
};

TEST(engine_contract_catches_broken_windowed_engines) {
    w_n = 16000;
    w_audio = calloc(w_n, sizeof *w_audio);
    ASSERT(w_audio != NULL);
    for (wdefect = 0; wdefect <= 3; wdefect++) {
        calls = 0;
        const char *why = check_windowed(&wbroken, NULL);
        if (wdefect == 0 && why) TEST_FAIL_("the good variant failed: %s", why);
        if (wdefect && !why) TEST_FAIL_("windowed defect %d went unnoticed", wdefect);
        if (why) printf("  windowed defect %d caught: %s\n", wdefect, why);
    }
    free(w_audio);
}
