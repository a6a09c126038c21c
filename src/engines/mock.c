/* The mock engines (docs/internals/engine.md): deterministic fake words for
 * speech, with a simulated latency and a simulated error rate. Cheap enough
 * to carry thousands of streams, so every unit and integration test can run
 * on them. docs/internals/engine.md ("The mock engine") is the user-level
 * description.
 *
 *   - "mock" is a STREAMING engine: words per chunk, answers from a timer on
 *     the worker's loop. Loaded per worker process: there are no weights to
 *     share.
 *   - "mock-windowed" is a WINDOWED engine: it decodes windows on the
 *     inference pool's threads like a real recognizer, taking
 *     ASR_MOCK_LATENCY_MS plus ASR_MOCK_RTF times the window's length of a
 *     thread's time. Its words are a function of the audio and its position
 *     only, so growing windows of one utterance agree on their prefix (what
 *     stable partials need), unless ASR_MOCK_UNSTABLE_TAIL makes the last
 *     word of every partial window a wrong one, as real engines' tails are,
 *     or ASR_MOCK_MISHEAR_MS makes one partial window mishear a few words.
 *
 * Settings: the table below (ASR_MOCK_*), shared by both; ASR_MOCK_LOAD_FAIL
 * is a test aid for the master's start-up rules. */
#include "core/engine.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/config.h"
#include "base/err.h"

struct mock_settings {
    int    latency_ms;              /* ASR_MOCK_LATENCY_MS */
    int    words_per_chunk;         /* ASR_MOCK_WORDS_PER_CHUNK: per 100 ms of speech */
    double error_rate;              /* ASR_MOCK_ERROR_RATE, 0..1 */
    long   seed;                    /* ASR_MOCK_SEED */
    double rtf;                     /* ASR_MOCK_RTF: windowed: thread time per second of audio */
    int    unstable_tail;           /* ASR_MOCK_UNSTABLE_TAIL: windowed partials end in a wrong word */
    int    sleep;                   /* ASR_MOCK_SLEEP: windowed: a decode's time slept, not computed */
    int    mishear_ms;              /* ASR_MOCK_MISHEAR_MS: the partial window ending in [this, +500) ms
                                       gets the words of its middle 100 ms wrong (0 = off) */
    char   load_fail[8];            /* ASR_MOCK_LOAD_FAIL: no | error | crash (a test aid for start-up) */
};

#define M(field) CONFIG_FIELD(struct mock_settings, field)
static const struct config_opt mock_opts[] = {
    {"ASR_MOCK_LATENCY_MS", CONFIG_INT, M(latency_ms), "50", 0, 60000, NULL, 0,
     "mock engines: simulated latency of every request, ms"},
    {"ASR_MOCK_WORDS_PER_CHUNK", CONFIG_INT, M(words_per_chunk), "2", 0, 100, NULL, 0,
     "mock engines: fake words per 100 ms of speech"},
    {"ASR_MOCK_ERROR_RATE", CONFIG_DOUBLE, M(error_rate), "0", 0, 1, NULL, 0,
     "mock engines: probability that a request fails with MODEL_ERROR"},
    {"ASR_MOCK_SEED", CONFIG_LONG, M(seed), "1", 0, 9007199254740991.0, NULL, 0,
     "mock engines: seed of their deterministic word and error choices"},
    {"ASR_MOCK_RTF", CONFIG_DOUBLE, M(rtf), "0", 0, 10, NULL, 0,
     "mock-windowed: a decode takes this many seconds of a pool thread per second of audio (plus the latency)"},
    {"ASR_MOCK_UNSTABLE_TAIL", CONFIG_INT, M(unstable_tail), "0", 0, 1, NULL, 0,
     "mock-windowed: 1 = the last word of every partial window is wrong (as real engines' tails are)"},
    {"ASR_MOCK_SLEEP", CONFIG_INT, M(sleep), "0", 0, 1, NULL, 0,
     "mock-windowed: 1 = a decode sleeps its time instead of computing (a pool whose capacity does not "
     "depend on how busy the host is: scheduling tests)"},
    {"ASR_MOCK_MISHEAR_MS", CONFIG_INT, M(mishear_ms), "0", 0, 86400000, NULL, 0,
     "mock-windowed, test aid: a partial window whose audio ends from this many ms into the session to 500 ms "
     "later gets the words of its middle 100 ms wrong (one misrecognised window); 0 = off"},
    {"ASR_MOCK_LOAD_FAIL", CONFIG_CHOICE, M(load_fail), "no", 0, 0, "no|error|crash", 0,
     "mock engines, test aid: error = loading fails (start-up stops, exit 2); crash = the worker dies while loading"},
};
#undef M
#define MOCK_NOPTS (sizeof mock_opts / sizeof mock_opts[0])

#define MOCK_UTTERANCE_MAX 4096  /* bytes of utterance text kept per session */
#define MOCK_UTTERANCE_MIN 256   /* first allocation of a session's text, bytes */
#define MOCK_SCRATCH_MAX   8192  /* bytes of one result text, NUL included */
#define MOCK_SLAB_REQS     256   /* request records per malloc */

_Static_assert(MOCK_SCRATCH_MAX > MOCK_UTTERANCE_MAX, "a final must fit the scratch");

/* The vocabulary words are drawn from: plain lowercase English. */
static const char *const mock_vocab[] = {
    "the",    "quick",  "brown",   "fox",      "jumps",   "over",   "lazy",   "dog",
    "river",  "stone",  "light",   "morning",  "window",  "garden", "paper",  "music",
    "table",  "water",  "green",   "small",    "happy",   "north",  "winter", "summer",
    "bread",  "apple",  "house",   "street",   "train",   "cloud",  "yellow", "simple",
    "number", "little", "people",  "letter",   "answer",  "school", "forest", "ocean",
    "island", "bridge", "market",  "candle",   "silver",  "golden", "orange", "purple",
    "quiet",  "gentle", "rapid",   "early",    "later",   "always", "never",  "maybe",
    "today",  "evening","sunday",  "mountain", "friend",  "family", "travel", "reason",
};

#define MOCK_VOCAB_N (sizeof(mock_vocab) / sizeof(mock_vocab[0]))
_Static_assert(MOCK_VOCAB_N == 64, "the vocabulary has 64 words");

enum mock_kind { MOCK_SUBMIT, MOCK_FINALIZE };

struct mock_session;

/* One outstanding request. Records are linked twice: into the process queue
 * (all sessions, due order) and into their session's list (oldest first), so
 * session_cleanup can take a session's requests out of the queue in
 * O(its count) without searching. */
struct mock_req {
    struct mock_req     *next;      /* queue: the later request; free list: next free */
    struct mock_req     *prev;      /* queue: the earlier request */
    struct mock_req     *snext;     /* the session's next (later) request */
    struct mock_session *sess;      /* the owner; valid while queued */
    engine_done_fn       done;      /* the caller's callback */
    void                *arg;       /* the caller's argument, borrowed */
    uint64_t             due;       /* loop time it completes at, ms (uv_now clock) */
    uint64_t             serial;    /* process-wide enqueue number, from 1 */
    unsigned             speech_ms; /* submit: ms of speech in the chunk */
    unsigned             kind;      /* enum mock_kind */
};

/* Records come in slabs, kept until unload: the free list recycles them, so a
 * process in steady state does not allocate per chunk. */
struct mock_slab {
    struct mock_slab *next;         /* the previously allocated slab */
    struct mock_req   reqs[MOCK_SLAB_REQS];
};

/* Per-session state (engine_ops.session_size), allocated by the core. */
struct mock_session {
    struct mock_req *first;         /* oldest outstanding request; records owned by mock */
    struct mock_req *last;          /* newest outstanding request */
    uint64_t         rng;           /* splitmix64 state, seeded from mock_seed */
    uint64_t         speech_ms;     /* speech of every successful submit, ms */
    uint64_t         words;         /* words emitted since session_init */
    char            *text;          /* utterance words, not NUL-terminated; heap,
                                       owned, freed in cleanup; NULL until needed */
    uint32_t         len;           /* bytes used at text */
    uint32_t         cap;           /* bytes allocated at text, <= MOCK_UTTERANCE_MAX */
    bool             truncated;     /* a word did not fit: the final stops before it */
};

/* Process state: one timer and one queue for all sessions of the worker. */
static struct {
    bool              loaded;          /* between load() and unload() */
    bool              in_timer;        /* inside mock_on_timer, which re-arms on exit */
    bool              timer_closing;   /* unload's uv_close has not called back yet */
    uv_loop_t        *loop;            /* the worker's loop, borrowed */
    uv_timer_t        timer;           /* fires when the queue head is due */
    uint64_t          latency_ms;      /* mock_latency_ms */
    uint64_t          words_per_chunk; /* mock_words_per_chunk: words per 100 ms of speech */
    double            error_rate;      /* mock_error_rate, 0..1 */
    uint64_t          seed;            /* mock_seed */
    uint64_t          serial;          /* the last serial handed out */
    struct mock_req  *head;            /* oldest outstanding request, all sessions */
    struct mock_req  *tail;            /* newest outstanding request */
    struct mock_req  *free_reqs;       /* recycled records, singly linked by next */
    struct mock_slab *slabs;           /* every slab allocated; freed in unload */
    char              scratch[MOCK_SCRATCH_MAX]; /* result text lent to done() */
} mock;

/* splitmix64 (Steele, Lea, Flood; Vigna's constants): a 64-bit state advanced
 * by a fixed odd increment, then mixed. Small, fast, and any seed works. */
static uint64_t mock_rand(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1) from the top 53 bits. */
static double mock_rand_unit(uint64_t *state) {
    return (double)(mock_rand(state) >> 11) * 0x1.0p-53;
}

static struct mock_req *mock_req_get(void) {
    if (!mock.free_reqs) {
        struct mock_slab *slab = malloc(sizeof(*slab));
        if (!slab) return NULL;
        slab->next = mock.slabs;
        mock.slabs = slab;
        for (size_t i = 0; i < MOCK_SLAB_REQS; i++) {
            slab->reqs[i].next = mock.free_reqs;
            mock.free_reqs = &slab->reqs[i];
        }
    }
    struct mock_req *r = mock.free_reqs;
    mock.free_reqs = r->next;
    return r;
}

static void mock_req_put(struct mock_req *r) {
    r->sess = NULL;
    r->next = mock.free_reqs;
    mock.free_reqs = r;
}

static void mock_on_timer(uv_timer_t *timer);

static void mock_queue_unlink(struct mock_req *r) {
    if (r->prev) r->prev->next = r->next;
    else mock.head = r->next;
    if (r->next) r->next->prev = r->prev;
    else mock.tail = r->prev;
}

/* Points the timer at the queue head, or stops it when the queue is empty.
 * min_delay is 1 when called from the timer callback: a head that is already
 * due there was made during the callback (latency 0), and a 0 timeout started
 * inside a timer callback would run again in the same pass on libuv < 1.45,
 * so it waits for a later loop iteration instead. */
static void mock_arm(uint64_t min_delay) {
    if (!mock.head) {
        uv_timer_stop(&mock.timer);
        return;
    }
    uint64_t now = uv_now(mock.loop);
    uint64_t delay = mock.head->due > now ? mock.head->due - now : 0;
    if (delay < min_delay) delay = min_delay;
    uv_timer_start(&mock.timer, mock_on_timer, delay, 0);
}

/* Appends a request to the process queue and to its session. Its due time is
 * latency after now, and never before the queue tail's, so the queue stays in
 * due order (and each session's requests in the order made) whatever the
 * latency. The timer only moves when the request became the head; inside the
 * timer callback it is re-armed when the callback returns. */
static int mock_enqueue(struct mock_session *s, enum mock_kind kind, unsigned speech_ms,
                        engine_done_fn done, void *arg) {
    struct mock_req *r = mock_req_get();
    if (!r) return ASR_ENOMEM;
    uv_update_time(mock.loop); /* uv_now is stale within a busy iteration */
    uint64_t due = uv_now(mock.loop) + mock.latency_ms;
    if (mock.tail && mock.tail->due > due) due = mock.tail->due;
    *r = (struct mock_req){
        .prev = mock.tail, .sess = s, .done = done, .arg = arg, .due = due,
        .serial = ++mock.serial, .speech_ms = speech_ms, .kind = kind,
    };
    if (mock.tail) mock.tail->next = r;
    else mock.head = r;
    mock.tail = r;
    if (s->last) s->last->snext = r;
    else s->first = r;
    s->last = r;
    if (r == mock.head && !mock.in_timer) mock_arm(0);
    return 0;
}

/* Adds one word to the utterance. The text grows by doubling up to
 * MOCK_UTTERANCE_MAX; the first word that does not fit (or cannot get memory)
 * ends the utterance's text: it and every later word of the utterance still
 * go out in partials, but the final keeps only the words before it, so a
 * truncated final is a prefix of the utterance cut at a word boundary. */
static void mock_utterance_add(struct mock_session *s, const char *w, size_t wl) {
    if (s->truncated) return;
    size_t need = s->len + (s->len ? 1 : 0) + wl;
    if (need > MOCK_UTTERANCE_MAX) {
        s->truncated = true;
        return;
    }
    if (need > s->cap) {
        size_t cap = s->cap ? s->cap : MOCK_UTTERANCE_MIN;
        while (cap < need) cap *= 2;
        if (cap > MOCK_UTTERANCE_MAX) cap = MOCK_UTTERANCE_MAX;
        char *text = realloc(s->text, cap);
        if (!text) {
            s->truncated = true;
            return;
        }
        s->text = text;
        s->cap = (uint32_t)cap;
    }
    if (s->len) s->text[s->len++] = ' ';
    memcpy(s->text + s->len, w, wl);
    s->len += (uint32_t)wl;
}

/* The answer to one submit, computed at completion time (requests of a
 * session complete in order, so this is the same as computing it at submit
 * time, without buffering text per request). One draw decides an error; then
 * the words newly due, floor(speech * words_per_chunk / 100) minus those
 * already emitted, are drawn from the vocabulary. A failed chunk's speech is
 * not counted. Words that would overflow the scratch (a single chunk of
 * minutes of speech) are dropped. */
static int mock_answer_submit(struct mock_session *s, unsigned speech_ms,
                              struct engine_result *res) {
    if (mock_rand_unit(&s->rng) < mock.error_rate) return ASR_E_MODEL_ERROR;
    s->speech_ms += speech_ms;
    uint64_t due_words = s->speech_ms * mock.words_per_chunk / 100;
    size_t n = 0;
    while (s->words < due_words) {
        const char *w = mock_vocab[mock_rand(&s->rng) % MOCK_VOCAB_N];
        size_t wl = strlen(w);
        if (n + 1 + wl >= sizeof(mock.scratch)) {
            s->words = due_words;
            break;
        }
        s->words++;
        if (n) mock.scratch[n++] = ' ';
        memcpy(mock.scratch + n, w, wl);
        n += wl;
        mock_utterance_add(s, w, wl);
    }
    mock.scratch[n] = '\0';
    res->text = mock.scratch;
    res->len = n;
    return 0;
}

/* The answer to a finalize: the utterance, copied to the scratch so that it
 * outlives the session if done() destroys it; then a new utterance begins.
 * The text buffer is kept for it. */
static int mock_answer_finalize(struct mock_session *s, struct engine_result *res) {
    if (s->len) memcpy(mock.scratch, s->text, s->len);
    mock.scratch[s->len] = '\0';
    res->text = mock.scratch;
    res->len = s->len;
    s->len = 0;
    s->truncated = false;
    return 0;
}

/* Completes every request that is due and was made before this callback
 * began, oldest first. done() may submit, finalize or destroy sessions (this
 * one too), so each record is unlinked and recycled before its done() runs,
 * and the loop rereads the queue head every time. */
static void mock_on_timer(uv_timer_t *timer) {
    uint64_t now = uv_now(mock.loop);
    uint64_t last = mock.serial;
    struct mock_req *r;
    mock.in_timer = true;
    while ((r = mock.head) && r->due <= now && r->serial <= last) {
        struct mock_session *s = r->sess;
        assert(s->first == r);
        mock_queue_unlink(r);
        s->first = r->snext;
        if (!s->first) s->last = NULL;
        engine_done_fn done = r->done;
        void *arg = r->arg;
        unsigned kind = r->kind, speech_ms = r->speech_ms;
        mock_req_put(r);
        struct engine_result res;
        int status = kind == MOCK_SUBMIT ? mock_answer_submit(s, speech_ms, &res)
                                         : mock_answer_finalize(s, &res);
        done(arg, status, status == 0 ? &res : NULL);
    }
    mock.in_timer = false;
    if (mock.loaded) mock_arm(1);
}

static void mock_on_timer_close(uv_handle_t *handle) {
    mock.timer_closing = false;
}

static int mock_settings_ok(const struct mock_settings *c) {
    return c && c->latency_ms >= 0 && c->words_per_chunk >= 0 && c->error_rate >= 0.0 && c->error_rate <= 1.0 &&
           c->rtf >= 0.0;
}

static int mock_load(const struct engine_cfg *cfg) {
    if (!cfg || !cfg->loop || mock.loaded) return ASR_EINVAL;
    if (mock.timer_closing) return ASR_EAGAIN;
    const struct mock_settings *c = cfg->settings;
    if (!mock_settings_ok(c)) return ASR_EINVAL;
    /* Test aid (ASR_MOCK_LOAD_FAIL): a load that fails, or a process killed
     * while loading (SIGKILL, as the OOM killer would: no core, no report),
     * for the master's start-up rules (docs/internals/workers.md). */
    if (strcmp(c->load_fail, "error") == 0) return ASR_EINVAL;
    if (strcmp(c->load_fail, "crash") == 0) raise(SIGKILL);
    if (uv_timer_init(cfg->loop, &mock.timer) != 0) return ASR_EIO;
    mock.loop = cfg->loop;
    mock.latency_ms = (uint64_t)c->latency_ms;
    mock.words_per_chunk = (uint64_t)c->words_per_chunk;
    mock.error_rate = c->error_rate;
    mock.seed = (uint64_t)c->seed;
    mock.serial = 0;
    mock.head = mock.tail = mock.free_reqs = NULL;
    mock.slabs = NULL;
    mock.loaded = true;
    return 0;
}

/* Drops whatever is still queued (sessions that outlive the engine see empty
 * lists and can still be destroyed), frees the records and closes the timer.
 * The close completes on the next loop run. */
static void mock_unload(void) {
    if (!mock.loaded) return;
    for (struct mock_req *r = mock.head; r; r = r->next)
        r->sess->first = r->sess->last = NULL;
    mock.head = mock.tail = mock.free_reqs = NULL;
    while (mock.slabs) {
        struct mock_slab *next = mock.slabs->next;
        free(mock.slabs);
        mock.slabs = next;
    }
    uv_timer_stop(&mock.timer);
    mock.timer_closing = true;
    uv_close((uv_handle_t *)&mock.timer, mock_on_timer_close);
    mock.loaded = false;
}

static int mock_session_init(void *state, const struct engine_session_cfg *cfg) {
    if (!mock.loaded) return ASR_EINVAL;
    struct mock_session *s = state;
    *s = (struct mock_session){.rng = mock.seed};
    return 0;
}

static int mock_submit(void *state, const struct engine_chunk *chunk,
                       engine_done_fn done, void *arg) {
    if (!mock.loaded) return ASR_EINVAL;
    return mock_enqueue(state, MOCK_SUBMIT, chunk->speech_ms, done, arg);
}

static int mock_finalize(void *state, engine_done_fn done, void *arg) {
    if (!mock.loaded) return ASR_EINVAL;
    return mock_enqueue(state, MOCK_FINALIZE, 0, done, arg);
}

static void mock_session_cleanup(void *state) {
    struct mock_session *s = state;
    struct mock_req *r = s->first;
    while (r) {
        struct mock_req *next = r->snext;
        mock_queue_unlink(r);
        mock_req_put(r);
        r = next;
    }
    s->first = s->last = NULL;
    free(s->text);
    s->text = NULL;
    s->len = s->cap = 0;
    if (mock.loaded && !mock.in_timer) mock_arm(0);
}

const struct engine_ops engine_mock = {
    .name = "mock",
    .abi = ENGINE_ABI,
    .caps = ENGINE_CAP_STREAMING,
    .settings = mock_opts,
    .n_settings = MOCK_NOPTS,
    .settings_size = sizeof(struct mock_settings),
    .session_size = sizeof(struct mock_session),
    .load = mock_load,
    .unload = mock_unload,
    .session_init = mock_session_init,
    .submit = mock_submit,
    .finalize = mock_finalize,
    .session_cleanup = mock_session_cleanup,
};

/* ---- mock-windowed: decode() on the inference pool -------------------------- */

/* The settings every instance reads (copied at load, immutable afterwards,
 * so pool threads read them without a lock). */
static struct mock_settings mockw;

static int mockw_load(const struct engine_cfg *cfg) {
    if (!cfg || !mock_settings_ok(cfg->settings)) return ASR_EINVAL;
    const struct mock_settings *c = cfg->settings;
    if (strcmp(c->load_fail, "error") == 0) return ASR_EINVAL;
    if (strcmp(c->load_fail, "crash") == 0) raise(SIGKILL);
    mockw = *(const struct mock_settings *)cfg->settings;
    return 0;
}

/* An instance holds nothing: the words are a function of the window. It
 * still is one allocation per pool thread, as a real decoder would be. */
static void *mockw_instance_create(const void *settings, unsigned index) { return malloc(1); }
static void mockw_instance_destroy(void *instance) { free(instance); }

static uint64_t mix3(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t st = a * UINT64_C(0x9e3779b97f4a7c15) ^ b * UINT64_C(0xc2b2ae3d27d4eb4f) ^ c;
    return mock_rand(&st);
}

/* Spends ms of this thread's time the way a decoder does: computing. A
 * sleep would let two pool threads share one core and hide the cost. */
static _Atomic uint64_t mockw_sink; /* keeps the busy work from being optimized away */

static void mockw_spend(double ms) {
    if (ms <= 0) return;
    if (mockw.sleep) {
        struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000.0) * 1e6)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
        return;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    uint64_t x = 0;
    do {
        for (int i = 0; i < 1000; i++) x = x * 6364136223846793005u + (uint64_t)i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    } while ((double)(t.tv_sec - t0.tv_sec) * 1e3 + (double)(t.tv_nsec - t0.tv_nsec) / 1e6 < ms);
    mockw_sink += x;
}

/* 1 when samples [from, to) are louder than -40 dBFS (RMS): speech, for the mock. */
static int mockw_loud(const int16_t *pcm, size_t from, size_t to) {
    if (to <= from) return 0;
    double e = 0;
    for (size_t i = from; i < to; i++) e += (double)pcm[i] * pcm[i];
    return sqrt(e / (double)(to - from)) >= 327.0;
}

/* ASR_MOCK_WORDS_PER_CHUNK words per loud 100 ms block, each drawn from
 * (seed, the block's position in the session's audio, its place in the
 * block): the same audio at the same place always gives the same words.
 * Blocks lie on whole 100 ms of the session's audio (the part of a window
 * before its first such boundary is not heard), so windows that start at
 * different places (partials, finals, a whole session's verification)
 * hear the same words in the audio they share.
 * A partial window ending in [ASR_MOCK_MISHEAR_MS, +500 ms) draws the words
 * of its middle block from another seed: with windows at least 500 ms
 * apart, exactly one window of a stream misrecognises a few words that the
 * windows before and after it hear right (reading feedback's tests). */
static int mockw_decode(void *instance, const struct engine_window *w, struct engine_output *out) {
    double audio_ms = (double)w->n * 1000.0 / w->sample_rate;
    mockw_spend(mockw.latency_ms + mockw.rtf * audio_ms);
    uint64_t st = mix3((uint64_t)mockw.seed, w->offset_ms, w->n);
    if (mock_rand_unit(&st) < mockw.error_rate) return ASR_E_MODEL_ERROR;
    size_t block = w->sample_rate / 10, wpc = (size_t)mockw.words_per_chunk;
    uint64_t lead_ms = (100 - w->offset_ms % 100) % 100;   /* to the first whole 100 ms */
    size_t lead = (size_t)(lead_ms * w->sample_rate / 1000);
    if (lead >= w->n) return 0;
    const int16_t *pcm = w->pcm + lead;
    size_t n = w->n - lead;
    size_t last = SIZE_MAX; /* the last loud block: its last word is the tail */
    uint64_t end_ms = w->offset_ms + (uint64_t)w->n * 1000 / w->sample_rate;
    int mishear = !w->final && mockw.mishear_ms && end_ms >= (uint64_t)mockw.mishear_ms &&
                  end_ms < (uint64_t)mockw.mishear_ms + 500;
    for (size_t b = 0; b * block < n; b++)
        if (mockw_loud(pcm, b * block, b * block + block < n ? b * block + block : n)) last = b;
    for (size_t b = 0; last != SIZE_MAX && b <= last; b++) {
        if (!mockw_loud(pcm, b * block, b * block + block < n ? b * block + block : n)) continue;
        for (size_t k = 0; k < wpc; k++) {
            uint64_t pos = w->offset_ms + lead_ms + b * 100;
            int bad = mishear && b == (n / block) / 2;
            uint64_t h = mix3((uint64_t)mockw.seed ^ (bad ? 0xbadbad : 0), pos, k);
            if (!w->final && mockw.unstable_tail && b == last && k == wpc - 1)
                h = mix3((uint64_t)mockw.seed ^ 0x5a5a, pos + w->n, k); /* a tail that changes with the window */
            const char *word = mock_vocab[h % MOCK_VOCAB_N];
            uint64_t start = lead_ms + b * 100 + k * 100 / wpc, end = lead_ms + b * 100 + (k + 1) * 100 / wpc;
            if (engine_output_word(out, word, strlen(word), start, end, 0.9f) != 0) return ASR_ENOMEM;
        }
    }
    return 0;
}

const struct engine_ops engine_mock_windowed = {
    .name = "mock-windowed",
    .abi = ENGINE_ABI,
    .caps = ENGINE_CAP_WINDOWED | ENGINE_CAP_WORD_TIMES | ENGINE_CAP_CONFIDENCE,
    .sample_rate = 16000,
    .settings = mock_opts,
    .n_settings = MOCK_NOPTS,
    .settings_size = sizeof(struct mock_settings),
    .load = mockw_load,
    .instance_create = mockw_instance_create,
    .instance_destroy = mockw_instance_destroy,
    .decode = mockw_decode,
};
