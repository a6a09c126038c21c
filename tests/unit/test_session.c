/* Session logic: numbering, validation precedence, rate limit, answer order,
 * utterances and the state machine, on a real loop with the mock engine. */
#include "test.h"
#include "synth.h"

#include <uv.h>

#include "base/config.h"
#include "base/metrics.h"
#include "core/engine.h"
#include "engines/registry.h"
#include "mock_settings.h"
#include "base/err.h"
#include "core/session.h"

#define MAXEV 2048
struct ev {
    char kind; int err; int has_seq; uint64_t seq; char text[512]; uint64_t a, b; int speech;
    int busy, has_tentative; char tentative[256]; double buffer_ms; size_t n_words;
    int has_fb; char fb[128]; double score; /* reading feedback: one letter per expected word */
};
static struct ev evs[MAXEV];
static int n_evs, done_calls, low_calls;

/* c correct, m minor_mistake, w wrong, x missing, . pending */
static void fb_letters(struct ev *e, const struct fb_view *v) {
    static const char map[FB__N] = {'.', 'c', 'm', 'w', 'x'};
    if (!v) return;
    e->has_fb = 1;
    size_t i = 0;
    for (; i < v->n && i < sizeof e->fb - 1; i++) e->fb[i] = map[v->e[i].status];
    e->fb[i] = '\0';
}

static struct ev *push(struct ev e) {
    if (n_evs >= MAXEV) TEST_FAIL_("more than %d answers", MAXEV);
    evs[n_evs] = e;
    return &evs[n_evs++];
}
static void on_ss(void *c, uint64_t seq, uint64_t off) { push((struct ev){.kind = 'S', .seq = seq, .a = off}); }
static void on_p(void *c, const struct sess_partial *p) {
    struct ev *e = push((struct ev){.kind = 'P', .seq = p->seq, .speech = p->is_speech, .busy = p->server_busy,
                                    .has_tentative = p->tentative != NULL, .buffer_ms = p->lat.buffer_ms});
    snprintf(e->text, sizeof e->text, "%.*s", (int)p->len, p->text);
    if (p->tentative) snprintf(e->tentative, sizeof e->tentative, "%.*s", (int)p->tentative_len, p->tentative);
    fb_letters(e, p->feedback);
}
static void on_f(void *c, const struct sess_final *f) {
    struct ev *e = push((struct ev){.kind = 'F', .seq = f->seq, .a = f->start_ms, .b = f->end_ms, .n_words = f->n_words});
    snprintf(e->text, sizeof e->text, "%.*s", (int)f->len, f->text);
    fb_letters(e, f->feedback);
}
/* 'V': the verification, err = status */
static void on_v(void *c, const struct sess_verification *v) {
    struct ev *e = push((struct ev){.kind = 'V', .err = v->status, .score = v->score, .a = v->audio_ms});
    if (v->text) snprintf(e->text, sizeof e->text, "%.*s", (int)v->len, v->text);
    fb_letters(e, v->feedback);
}
static void on_e(void *c, int err, int has_seq, uint64_t seq, const char *m) {
    push((struct ev){.kind = 'E', .err = err, .has_seq = has_seq, .seq = seq});
}
static void on_done(void *c) { done_calls++; }
static void on_low(void *c) { low_calls++; }
/* 'X': an engine failure, err = status, speech = is_final, a..b = span */
static void on_x(void *c, int status, int is_final, uint64_t seq, uint64_t a, uint64_t b) {
    push((struct ev){.kind = 'X', .err = status, .speech = is_final, .seq = seq, .a = a, .b = b});
}
static const struct sess_sink sink = {on_ss, on_p, on_f, on_e, on_done, on_low, on_x, on_v};

static void *settings; /* the mock's, heap; one per process (each test is its own process) */

static void setup(int latency, double err_rate) {
    free(settings);
    settings = mock_settings(latency, 2, err_rate, 7);
    ASSERT(settings != NULL);
    struct engine_cfg ec = {.loop = uv_default_loop(), .settings = settings};
    ASSERT_EQ_INT(engine_load(engines_find("mock"), &ec), 0);
    n_evs = done_calls = low_calls = 0;
}

static struct asr_session *mk(size_t rate_bps, int max_pending, int shed) {
    struct sess_cfg sc = {.sample_rate = 16000, .max_chunk_bytes = 65536, .rate_bytes_per_sec = rate_bps,
                          .max_pending_chunks = max_pending, .shed_load = shed, .rate_abuse_threshold = 3,
                          .vad = {.sample_rate = 16000, .frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *s = sess_create(&sc);
    ASSERT(s != NULL);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
    sess_attach(s, &sink, NULL);
    return s;
}

static void run(void) { uv_run(uv_default_loop(), UV_RUN_DEFAULT); }

static const uint8_t zeros[3200];

TEST(session_state_machine_only_moves_forward) {
    setup(0, 0);
    struct asr_session *s = mk(64000, 16, 0);
    ASSERT_EQ_INT(sess_state(s), SESS_ACTIVE);
    ASSERT_EQ_INT(sess_transition(s, SESS_CREATED), ASR_EINVAL);
    ASSERT_EQ_INT(sess_transition(s, SESS_CLOSING), 0);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), ASR_EINVAL);
    ASSERT_EQ_INT(sess_transition(s, SESS_CLOSED), 0);
    ASSERT_EQ_INT(sess_transition(s, SESS_CLOSING), ASR_EINVAL);
    sess_destroy(s);
}

TEST(session_ids_are_128_bit_hex_and_unique) {
    setup(0, 0);
    struct asr_session *a = mk(64000, 16, 0), *b = mk(64000, 16, 0);
    ASSERT_EQ_INT(strlen(sess_id(a)), 32);
    ASSERT(strspn(sess_id(a), "0123456789abcdef") == 32);
    ASSERT(strcmp(sess_id(a), sess_id(b)) != 0);
    sess_destroy(a);
    sess_destroy(b);
}

TEST(session_one_partial_per_chunk_in_order) {
    setup(5, 0);
    struct asr_session *s = mk(1 << 30, 64, 0);
    for (int i = 0; i < 10; i++) ASSERT_EQ_INT(sess_chunk(s, zeros, sizeof zeros, 0, 0, 0, 0), 0);
    ASSERT_EQ_INT(sess_pending(s), 10);
    run();
    ASSERT_EQ_INT(n_evs, 10);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ_INT(evs[i].kind, 'P');
        ASSERT_EQ_INT(evs[i].seq, i + 1);
        ASSERT_STR_EQ(evs[i].text, "");   /* silence: no words */
        ASSERT_EQ_INT(evs[i].speech, 0);
    }
    ASSERT_EQ_INT(sess_last_sequence(s), 10);
    ASSERT_EQ_INT(sess_pending(s), 0);
    sess_destroy(s);
}

TEST(session_explicit_sequence_and_out_of_order) {
    setup(0, 0);
    struct asr_session *s = mk(1 << 30, 64, 0);
    sess_chunk(s, zeros, 320, 0, 1, 5, 0);         /* numbered 5 */
    sess_chunk(s, zeros, 320, 0, 0, 0, 0);         /* last+1 = 6 */
    /* OUT_OF_ORDER goes out at once, carries the number sent, last stays 6 */
    ASSERT_EQ_INT(sess_chunk(s, zeros, 320, 0, 1, 6, 0), ASR_E_OUT_OF_ORDER);
    ASSERT_EQ_INT(n_evs, 1);
    ASSERT_EQ_INT(evs[0].kind, 'E');
    ASSERT_EQ_INT(evs[0].err, ASR_E_OUT_OF_ORDER);
    ASSERT_EQ_INT(evs[0].seq, 6);
    ASSERT_EQ_INT(sess_last_sequence(s), 6);
    sess_chunk(s, zeros, 320, 0, 0, 0, 0);         /* 7 */
    run();
    ASSERT_EQ_INT(n_evs, 4);
    ASSERT_EQ_INT(evs[1].seq, 5);
    ASSERT_EQ_INT(evs[2].seq, 6);
    ASSERT_EQ_INT(evs[3].seq, 7);
    sess_destroy(s);
}

TEST(session_refusals_keep_sequence_order_and_precedence) {
    setup(5, 0);
    struct asr_session *s = mk(1 << 30, 64, 0);
    static uint8_t big[70001];
    sess_chunk(s, zeros, 320, 0, 0, 0, 0);                          /* 1 partial (pending) */
    ASSERT_EQ_INT(sess_chunk(s, big, 70001, 0, 0, 0, 0), ASR_E_INVALID_AUDIO); /* odd beats too large */
    ASSERT_EQ_INT(sess_chunk(s, big, 70000, 0, 0, 0, 0), ASR_E_CHUNK_TOO_LARGE);
    ASSERT_EQ_INT(sess_chunk(s, NULL, 0, 0, 0, 0, 0), ASR_E_INVALID_AUDIO);  /* empty */
    ASSERT_EQ_INT(sess_chunk(s, NULL, 0, ASR_E_INVALID_AUDIO, 0, 0, 0), ASR_E_INVALID_AUDIO); /* bad base64 */
    ASSERT_EQ_INT(n_evs, 0);   /* errors wait behind partial 1 */
    run();
    ASSERT_EQ_INT(n_evs, 5);
    ASSERT_EQ_INT(evs[0].kind, 'P');
    for (int i = 1; i < 5; i++) {
        ASSERT_EQ_INT(evs[i].kind, 'E');
        ASSERT_EQ_INT(evs[i].seq, i + 1);
        ASSERT_EQ_INT(evs[i].has_seq, 1);
    }
    ASSERT_EQ_INT(evs[2].err, ASR_E_CHUNK_TOO_LARGE);
    sess_destroy(s);
}

TEST(session_rate_limit_token_bucket) {
    setup(0, 0);
    /* 32000 B/s, bucket holds 64000 B: 20 chunks of 3200 pass at t=0, the 21st not. */
    struct asr_session *s = mk(32000, 1000, 0);
    uint64_t t0 = 1000000000ull;
    int refused = 0;
    for (int i = 0; i < 25; i++)
        if (sess_chunk(s, zeros, 3200, 0, 0, 0, t0) == ASR_E_RATE_LIMITED) refused++;
    ASSERT(refused >= 4 && refused <= 5);
    /* 100 ms later, 3200 bytes of tokens are back: one passes. */
    ASSERT_EQ_INT(sess_chunk(s, zeros, 3200, 0, 0, 0, t0 + 100000000ull), 0);
    ASSERT_EQ_INT(sess_abusive(s), 0);
    for (int i = 0; i < 3; i++) sess_chunk(s, zeros, 3200, 0, 0, 0, t0 + 100000000ull);
    ASSERT_EQ_INT(sess_abusive(s), 1);
    sess_destroy(s);
}

TEST(session_shed_load_answers_server_busy) {
    setup(20, 0);
    struct asr_session *s = mk(1 << 30, 2, 1);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 320, 0, 0, 0, 0), 0);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 320, 0, 0, 0, 0), 0);
    ASSERT_EQ_INT(sess_pending_full(s), 1);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 320, 0, 0, 0, 0), ASR_E_SERVER_BUSY);
    run();
    ASSERT_EQ_INT(n_evs, 3);
    ASSERT_EQ_INT(evs[2].err, ASR_E_SERVER_BUSY);
    ASSERT_EQ_INT(evs[2].seq, 3);
    ASSERT(low_calls >= 1);
    sess_destroy(s);
}

/* ---- the rate bucket and the server's holds ---------------------------------
 * A live client at 16 kHz: chunk i (100 ms, 3200 bytes) is made at base + i x
 * 100 ms; the default rate (4 x 16000 = 64000 bytes/s, a bucket of 128000 =
 * 40 chunks); 16 pending chunks stop the reading (api/stream.c after_chunk);
 * the mock answers 20 ms into the loop. Arrival times are on util_now_ns()'s
 * clock but seconds in the past, so that a hold of seconds (from a past
 * arrival to the real now, when the loop answers and the session reads that
 * clock) takes no test time. */
#define RT_BYTES 3200
#define RT_NS 100000000ull
#define RT_RATE 64000

/* A session of the live client above, and the base of its clock: its hold
 * starts 6 s before the real now. Returns the session after chunks 0..15,
 * the 16th of which filled it. */
static struct asr_session *rt_held(int shed, uint64_t *base) {
    uint64_t now = util_now_ns();
    ASSERT(now > 20000000000ull); /* 20 s of monotonic clock behind us */
    *base = now - 6000000000ull - 15 * RT_NS;
    struct asr_session *s = mk(RT_RATE, 16, shed);
    for (int i = 0; i < 16; i++) ASSERT_EQ_INT(sess_chunk(s, zeros, RT_BYTES, 0, 0, 0, *base + i * RT_NS), 0);
    ASSERT_EQ_INT(sess_pending_full(s), 1);
    return s;
}

/* Runs the loop until the session takes input again (its pending chunks
 * fell under the bound): where a reading server resumes. */
static void until_not_full(struct asr_session *s) {
    for (int i = 0; i < 100000 && sess_pending_full(s); i++) uv_run(uv_default_loop(), UV_RUN_ONCE);
    ASSERT_EQ_INT(sess_pending_full(s), 0);
}

/* n chunks arriving at `at` (0: the real now, taken per chunk), read as the
 * server reads: not while the session is full. Returns how many were
 * RATE_LIMITED; *first: the index of the first (-1 if none); *bytes adds
 * what was accepted. Nothing else may refuse them. */
static int deliver(struct asr_session *s, int n, uint64_t at, int *first, long long *bytes) {
    int refused = 0;
    *first = -1;
    for (int i = 0; i < n; i++) {
        if (sess_pending_full(s)) until_not_full(s);
        int rc = sess_chunk(s, zeros, RT_BYTES, 0, 0, 0, at ? at : util_now_ns());
        if (rc == ASR_E_RATE_LIMITED) {
            if (refused++ == 0) *first = i;
        } else {
            ASSERT_EQ_INT(rc, 0);
            *bytes += RT_BYTES;
        }
    }
    return refused;
}

/* The defect this guards: a real-time client whose session filled (a late
 * answer) was not read for 6 s; its 6 s of audio waited in the kernel and
 * came in one burst, past the 4 s the bucket holds, and was refused
 * RATE_LIMITED although the client never sent faster than real time. The
 * hold is not charged: every chunk of the burst passes. */
TEST(session_rate_hold_is_not_charged_to_a_real_time_client) {
    setup(20, 0);
    uint64_t base;
    struct asr_session *s = rt_held(0, &base);
    until_not_full(s); /* the hold ends at the real now, 6 s after it began */
    int backlog = (int)((util_now_ns() - base) / RT_NS) - 15; /* what the client made meanwhile */
    ASSERT_GE_INT(backlog, 60);
    int first;
    long long bytes = 0;
    ASSERT_EQ_INT(deliver(s, backlog, 0, &first, &bytes), 0);
    ASSERT_EQ_INT(bytes, (long long)backlog * RT_BYTES);
    run();
    for (int i = 0; i < n_evs; i++) ASSERT(evs[i].kind != 'E');
    sess_destroy(s);
}

/* The control: the same burst without a hold (the client itself went quiet
 * for 6 s, the session never filled) gets the bucket's 40 chunks, then
 * RATE_LIMITED, as before. */
TEST(session_rate_burst_without_a_hold_is_refused) {
    setup(20, 0);
    uint64_t now = util_now_ns();
    ASSERT(now > 20000000000ull);
    uint64_t base = now - 6000000000ull - 15 * RT_NS;
    struct asr_session *s = mk(RT_RATE, 1000, 0);
    for (int i = 0; i < 16; i++) ASSERT_EQ_INT(sess_chunk(s, zeros, RT_BYTES, 0, 0, 0, base + i * RT_NS), 0);
    ASSERT_EQ_INT(sess_pending_full(s), 0);
    int first;
    long long bytes = 0;
    ASSERT_EQ_INT(deliver(s, 60, now, &first, &bytes), 20);
    ASSERT_EQ_INT(first, 40);
    run();
    sess_destroy(s);
}

/* With ASR_SHED_LOAD the server keeps reading (SERVER_BUSY instead of a
 * pause), so a full session is no hold and earns nothing: a burst after it
 * gets the bucket's 40 chunks, as before. */
TEST(session_rate_shed_load_earns_no_hold_credit) {
    setup(20, 0);
    uint64_t base;
    struct asr_session *s = rt_held(1, &base);
    until_not_full(s);
    int first;
    long long bytes = 0;
    ASSERT_EQ_INT(deliver(s, 60, util_now_ns(), &first, &bytes), 20); /* all arriving at once */
    ASSERT_EQ_INT(first, 40);
    run();
    sess_destroy(s);
}

/* A flood gains nothing it could not have had: over the whole session, the
 * audio accepted is at most the full bucket plus the allowed rate times the
 * time since the first chunk, hold or no hold; and it does get refused. */
TEST(session_rate_hold_credit_is_bounded_by_the_rate) {
    setup(20, 0);
    uint64_t base;
    struct asr_session *s = rt_held(0, &base);
    long long bytes = 16 * RT_BYTES;
    int first;
    int refused = deliver(s, 400, 0, &first, &bytes);
    uint64_t end = util_now_ns();
    ASSERT_GE_INT(refused, 1);
    double allowed = 2.0 * RT_RATE + (double)(end - base) / 1e9 * RT_RATE;
    ASSERT((double)bytes <= allowed);
    /* and the hold is all credited: only what the cap cut while the client
     * was live (1.5 s at half the rate: 48000) and a few ms of fading between
     * the end of one hold and the next are missing */
    ASSERT((double)bytes >= allowed - 48000 - 3.0 * RT_BYTES);
    run();
    sess_destroy(s);
}

/* Credit the burst does not use fades once the hold is over: a client that
 * was held 6 s, sent nothing, and bursts 6.5 s after the hold ended gets the
 * bucket's 40 chunks, not 6 s more. */
TEST(session_rate_unused_hold_credit_fades) {
    setup(20, 0);
    uint64_t base;
    struct asr_session *s = rt_held(0, &base);
    until_not_full(s);
    run(); /* every chunk answered */
    uint64_t later = util_now_ns() + 6500000000ull;
    int first;
    long long bytes = 0;
    int refused = deliver(s, 60, later, &first, &bytes);
    ASSERT_EQ_INT(first, 40);
    ASSERT_EQ_INT(refused, 20);
    run();
    sess_destroy(s);
}

/* ASR_MAX_SESSION_BUFFER_BYTES: the pending bound also counts bytes, so a
 * few big chunks fill it long before the chunk count does. */
TEST(session_pending_bytes_bound) {
    setup(20, 0);
    struct sess_cfg sc = {.sample_rate = 16000, .max_chunk_bytes = 65536, .rate_bytes_per_sec = 1 << 30,
                          .max_pending_chunks = 64, .max_pending_bytes = 6400, .shed_load = 1,
                          .rate_abuse_threshold = 3,
                          .vad = {.sample_rate = 16000, .frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *s = sess_create(&sc);
    ASSERT(s != NULL);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
    sess_attach(s, &sink, NULL);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 3200, 0, 0, 0, 0), 0);
    ASSERT_EQ_INT(sess_pending_full(s), 0);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 3200, 0, 0, 0, 0), 0);
    ASSERT_EQ_INT(sess_pending_full(s), 1);         /* 2 chunks of 64, but 6400 bytes */
    ASSERT_EQ_INT(sess_chunk(s, zeros, 320, 0, 0, 0, 0), ASR_E_SERVER_BUSY);
    run();                                          /* answered: the bytes are given back */
    ASSERT_EQ_INT(sess_pending_full(s), 0);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 3200, 0, 0, 0, 0), 0);
    sess_destroy(s);
}

TEST(session_model_error_answers_the_chunk) {
    setup(0, 1.0);
    struct asr_session *s = mk(1 << 30, 64, 0);
    int16_t pcm[1600];
    synth_voiced(pcm, 1600, 16000, 0);
    sess_chunk(s, (const uint8_t *)pcm, sizeof pcm, 0, 0, 0, 0);
    run();
    int errors = 0;
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'E' && evs[i].err == ASR_E_MODEL_ERROR && evs[i].seq == 1) errors++;
    ASSERT_EQ_INT(errors, 1);
    sess_destroy(s);
}

/* Speech then silence: speech_started before the partial of its chunk, words
 * only in speech chunks, one final after endpointing whose text is the
 * partials' words, then stop gives exactly one (empty) final and on_done. */
TEST(session_utterance_lifecycle) {
    setup(1, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    static int16_t pcm[16000 * 3];
    synth_voiced(pcm + 8000, 16000, 16000, 0.5);   /* 0.5 s silence, 1 s speech, 1.5 s silence */
    for (int i = 0; i < 30; i++) sess_chunk(s, (const uint8_t *)(pcm + i * 1600), 3200, 0, 0, 0, 0);
    run();
    int ss_at = -1, finals = 0, partials = 0;
    char words[4096] = "";
    for (int i = 0; i < n_evs; i++) {
        if (evs[i].kind == 'S') {
            ASSERT_EQ_INT(ss_at, -1);
            ss_at = i;
            ASSERT(i + 1 < n_evs && evs[i + 1].kind == 'P' && evs[i + 1].seq == evs[i].seq);
            ASSERT(evs[i].a >= 450 && evs[i].a <= 560);
        } else if (evs[i].kind == 'P') {
            partials++;
            if (evs[i].text[0]) {
                size_t wl = strlen(words);
                snprintf(words + wl, sizeof words - wl, "%s%s", wl ? " " : "", evs[i].text);
            }
        } else if (evs[i].kind == 'F') {
            finals++;
            ASSERT_STR_EQ(evs[i].text, words);
            ASSERT(evs[i].a >= 450 && evs[i].a <= 560);
            ASSERT(evs[i].b >= 1400 && evs[i].b <= 1560);
            ASSERT(evs[i].seq >= 15 && evs[i].seq <= 16);
        }
    }
    ASSERT(ss_at >= 0);
    ASSERT_EQ_INT(partials, 30);
    ASSERT_EQ_INT(finals, 1);
    ASSERT(strlen(words) > 0);
    n_evs = 0;
    ASSERT_EQ_INT(sess_stop(s), 0);
    ASSERT_EQ_INT(sess_state(s), SESS_CLOSING);
    run();
    ASSERT_EQ_INT(n_evs, 1);
    ASSERT_EQ_INT(evs[0].kind, 'F');
    ASSERT_STR_EQ(evs[0].text, "");
    ASSERT_EQ_INT(evs[0].seq, 30);
    ASSERT_EQ_INT(evs[0].a, 3000);
    ASSERT_EQ_INT(evs[0].b, 3000);
    ASSERT_EQ_INT(done_calls, 1);
    /* audio after stop is refused */
    ASSERT_EQ_INT(sess_chunk(s, zeros, 320, 0, 0, 0, 0), ASR_E_INVALID_MESSAGE);
    sess_destroy(s);
}

TEST(session_finalize_mid_utterance_and_empty) {
    setup(1, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    int16_t pcm[3200];
    synth_voiced(pcm, 3200, 16000, 0);
    sess_chunk(s, (const uint8_t *)pcm, sizeof pcm, 0, 0, 0, 0);
    sess_finalize(s);
    run();
    ASSERT_EQ_INT(evs[n_evs - 1].kind, 'F');
    ASSERT(evs[n_evs - 1].text[0] != '\0');
    ASSERT_EQ_INT(evs[n_evs - 1].seq, 1);
    n_evs = 0;
    sess_finalize(s);  /* nothing open: empty final, session stays active */
    run();
    ASSERT_EQ_INT(n_evs, 1);
    ASSERT_STR_EQ(evs[0].text, "");
    ASSERT_EQ_INT(sess_state(s), SESS_ACTIVE);
    sess_destroy(s);
}

TEST(session_detached_keeps_finals_for_resume) {
    setup(5, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    int16_t pcm[3200];
    synth_voiced(pcm, 3200, 16000, 0);
    sess_chunk(s, (const uint8_t *)pcm, sizeof pcm, 0, 0, 0, 0);
    sess_finalize(s);
    n_evs = 0;                           /* speech_started went out at once */
    sess_attach(s, NULL, NULL);          /* the client vanished */
    run();
    if (n_evs) TEST_FAIL_("detached session emitted '%c' seq %llu", evs[0].kind, (unsigned long long)evs[0].seq);
    ASSERT_EQ_INT(sess_last_sequence(s), 1);
    sess_attach(s, &sink, NULL);         /* resumed */
    ASSERT_EQ_INT(n_evs, 1);
    ASSERT_EQ_INT(evs[0].kind, 'F');
    ASSERT(evs[0].text[0] != '\0');
    sess_destroy(s);
}

TEST(session_destroy_with_work_outstanding) {
    setup(50, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    for (int i = 0; i < 5; i++) sess_chunk(s, zeros, 3200, 0, 0, 0, 0);
    sess_destroy(s);                     /* must cancel: no callback into freed memory */
    run();
    ASSERT_EQ_INT(n_evs, 0);
}

TEST(session_unaligned_pcm_is_accepted) {
    setup(0, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    static uint8_t raw[3201];
    ASSERT_EQ_INT(sess_chunk(s, raw + 1, 3200, 0, 0, 0, 0), 0);
    run();
    ASSERT_EQ_INT(n_evs, 1);
    sess_destroy(s);
}

TEST(session_footprint_is_small) {
    setup(0, 0);
    struct asr_session *s = mk(64000, 16, 0);
    size_t f = sess_footprint(s);
    printf("  session footprint %zu bytes\n", f);
    ASSERT(f < 8192);
    sess_destroy(s);
}

/* Speech that starts inside a frame which straddles two chunks: the event
 * names the chunk holding its offset, and comes before that chunk's partial. */
TEST(session_speech_started_names_the_chunk_holding_its_offset) {
    setup(20, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    static int16_t pcm[16000];
    synth_voiced(pcm + 1000, 15000, 16000, 0);   /* speech from 62.5 ms */
    /* 40 ms chunks: the 30 ms frame 60..90 ms starts in chunk 2 (40..80) and
     * is completed, so classified, by chunk 3's audio. */
    for (int i = 0; i < 10; i++) sess_chunk(s, (const uint8_t *)(pcm + i * 640), 1280, 0, 0, 0, 0);
    run();
    int found = 0;
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'S') {
            found = 1;
            uint64_t seq = evs[i].seq;
            printf("  speech_started seq %llu offset %llu\n", (unsigned long long)seq, (unsigned long long)evs[i].a);
            ASSERT((seq - 1) * 40 <= evs[i].a && evs[i].a < seq * 40);
            ASSERT(i + 1 < n_evs && evs[i + 1].kind == 'P' && evs[i + 1].seq == seq);
        }
    ASSERT(found);
    sess_destroy(s);
}

/* Fills the session's engine requests to ENGINE_MAX_OUTSTANDING with
 * one-sample chunks (one submit each) behind an open utterance; endpointing
 * is long enough that none of them ends it. */
static struct asr_session *mk_engine_full(enum sess_kind kind) {
    struct sess_cfg sc = {.sample_rate = 16000, .max_chunk_bytes = 65536, .rate_bytes_per_sec = 1 << 30,
                          .max_pending_chunks = 1 << 20, .rate_abuse_threshold = 3, .kind = kind,
                          .vad = {.sample_rate = 16000, .frame_ms = 30, .mode = 2, .endpointing_ms = 10000}};
    struct asr_session *s = sess_create(&sc);
    ASSERT(s != NULL);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
    sess_attach(s, &sink, NULL);
    static int16_t pcm[16000];
    synth_voiced(pcm, 16000, 16000, 0);
    ASSERT_EQ_INT(sess_chunk(s, (const uint8_t *)pcm, sizeof pcm, 0, 0, 0, 0), 0);  /* 1 s of speech */
    unsigned out = sess_engine_outstanding(s);
    ASSERT_GE_INT(out, 1);
    while (out < ENGINE_MAX_OUTSTANDING) {
        ASSERT_EQ_INT(sess_chunk(s, zeros, 2, 0, 0, 0, 0), 0);
        ASSERT_EQ_INT(sess_engine_outstanding(s), out + 1);
        out++;
    }
    ASSERT_EQ_INT(n_evs, 1);            /* only speech_started so far */
    ASSERT_EQ_INT(evs[0].kind, 'S');
    n_evs = 0;
    return s;
}

/* A submit the engine refuses (its backlog full): the chunk's answer is
 * MODEL_ERROR, and on_engine_error says why and which audio, just before. */
TEST(session_refused_submit_is_reported_with_its_span) {
    setup(20, 0);
    struct asr_session *s = mk_engine_full(SESS_KIND_STREAM);
    uint64_t seq = sess_last_sequence(s) + 1;
    ASSERT_EQ_INT(sess_chunk(s, zeros, 3200, 0, 0, 0, 0), 0);    /* accepted, but the submit is refused */
    ASSERT_EQ_INT(sess_engine_outstanding(s), ENGINE_MAX_OUTSTANDING);
    run();
    int x = -1, e = -1;
    for (int i = 0; i < n_evs; i++) {
        if (evs[i].kind == 'X') { ASSERT_EQ_INT(x, -1); x = i; }
        if (evs[i].kind == 'E') { ASSERT_EQ_INT(e, -1); e = i; }
    }
    ASSERT(x >= 0 && e == x + 1);
    ASSERT_EQ_INT(evs[x].err, ASR_EAGAIN);
    ASSERT_EQ_INT(evs[x].speech, 0);               /* a chunk, not a final */
    ASSERT_EQ_INT(evs[x].seq, seq);
    /* the chunk's audio: after 1 s and 1023 samples, 100 ms long */
    ASSERT_EQ_INT(evs[x].a, (16000 + 1023) * 1000 / 16000);
    ASSERT_EQ_INT(evs[x].b, (16000 + 1023 + 1600) * 1000 / 16000);
    ASSERT_EQ_INT(evs[e].err, ASR_E_MODEL_ERROR);
    ASSERT_EQ_INT(evs[e].seq, seq);
    sess_destroy(s);
}

/* The finalize of stop refused: the utterance's final still goes out (a
 * stream's wire does not change), but on_engine_error says its text did not
 * come, instead of a silently empty final. */
TEST(session_refused_finalize_is_an_engine_error) {
    setup(20, 0);
    struct asr_session *s = mk_engine_full(SESS_KIND_STREAM);
    ASSERT_EQ_INT(sess_stop(s), 0);
    run();
    ASSERT_GE_INT(n_evs, 2);
    ASSERT_EQ_INT(evs[n_evs - 2].kind, 'X');
    ASSERT_EQ_INT(evs[n_evs - 2].err, ASR_EAGAIN);
    ASSERT_EQ_INT(evs[n_evs - 2].speech, 1);       /* a final */
    ASSERT(evs[n_evs - 2].a < 100 && evs[n_evs - 2].b > 1000);   /* the utterance */
    ASSERT_EQ_INT(evs[n_evs - 1].kind, 'F');
    ASSERT_EQ_INT(evs[n_evs - 1].a, evs[n_evs - 2].a);
    ASSERT_EQ_INT(done_calls, 1);
    for (int i = 0; i < n_evs - 2; i++) ASSERT(evs[i].kind == 'P');   /* nothing else failed */
    sess_destroy(s);
}

/* An engine failure (the mock's error draw) reports the engine's status and
 * the chunk's span before the chunk's MODEL_ERROR. */
TEST(session_engine_failure_reports_status_and_span) {
    setup(1, 1.0);
    struct asr_session *s = mk(1 << 30, 64, 0);
    int16_t pcm[1600];
    synth_voiced(pcm, 1600, 16000, 0);
    sess_chunk(s, zeros, 3200, 0, 0, 0, 0);
    sess_chunk(s, (const uint8_t *)pcm, sizeof pcm, 0, 0, 0, 0);
    run();
    int xs = 0;
    for (int i = 0; i < n_evs; i++) {
        if (evs[i].kind != 'X') continue;
        xs++;
        ASSERT_EQ_INT(evs[i].err, ASR_E_MODEL_ERROR);
        ASSERT(i + 1 < n_evs && evs[i + 1].kind == 'E' && evs[i + 1].seq == evs[i].seq);
        ASSERT_EQ_INT(evs[i].a, (evs[i].seq - 1) * 100);
        ASSERT_EQ_INT(evs[i].b, evs[i].seq * 100);
    }
    ASSERT_EQ_INT(xs, 2);
    sess_destroy(s);
}

/* A REST session's work counts in rest.*, not in the streaming counters;
 * the engine and VAD counters are shared. */
TEST(session_rest_kind_counts_as_rest) {
    setup(1, 0);
    metrics_init();
    struct sess_cfg sc = {.sample_rate = 16000, .max_chunk_bytes = 32000, .rate_bytes_per_sec = 1 << 30,
                          .max_pending_chunks = 16, .rate_abuse_threshold = 3, .kind = SESS_KIND_REST,
                          .vad = {.sample_rate = 16000, .frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *s = sess_create(&sc);
    ASSERT(s != NULL);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
    sess_attach(s, &sink, NULL);
    static int16_t pcm[16000 * 3];
    synth_voiced(pcm, 8000, 16000, 0);             /* 0.5 s speech, 2.5 s silence */
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(sess_chunk(s, (const uint8_t *)(pcm + i * 16000), 32000, 0, 0, 0, 0), 0);
    sess_stop(s);
    run();
    ASSERT_EQ_INT(done_calls, 1);
    int finals = 0, partials = 0;
    for (int i = 0; i < n_evs; i++) finals += evs[i].kind == 'F', partials += evs[i].kind == 'P';
    ASSERT_EQ_INT(partials, 3);
    ASSERT_EQ_INT(finals, 2);                      /* the utterance, and stop's empty one */
    ASSERT_EQ_INT(metrics.rest_chunks, 3);
    ASSERT_EQ_INT(metrics.rest_audio_ms, 3000);
    ASSERT_EQ_INT(metrics.chunks_total, 0);
    ASSERT_EQ_INT(metrics.chunks_accepted, 0);
    ASSERT_EQ_INT(metrics.bytes_in, 0);
    ASSERT_EQ_INT(metrics.audio_ms_in, 0);
    ASSERT_EQ_INT(metrics.partials_total, 0);
    ASSERT_EQ_INT(metrics.finals_total, 0);
    ASSERT_EQ_INT(metrics.speech_started_total, 0);
    ASSERT_EQ_INT(metrics.lat_total.count, 0);
    ASSERT_GE_INT(metrics.engine_requests, 4);
    ASSERT_GE_INT(metrics.vad_frames, 99);
    sess_destroy(s);
    /* a stream still counts as one */
    n_evs = 0;
    s = mk(1 << 30, 16, 0);
    ASSERT_EQ_INT(sess_chunk(s, zeros, 3200, 0, 0, 0, 0), 0);
    run();
    ASSERT_EQ_INT(metrics.chunks_total, 1);
    ASSERT_EQ_INT(metrics.partials_total, 1);
    ASSERT_EQ_INT(metrics.rest_chunks, 3);
    sess_destroy(s);
}

/* A chunk's partial can leave before the finalize its audio asked for is
 * done: the engine count, not the pending chunks, bounds what is out. */
TEST(session_engine_outstanding_counts_finalizes_after_the_partial) {
    setup(5, 0);
    struct asr_session *s = mk(1 << 30, 64, 0);
    static int16_t pcm[16000];
    synth_voiced(pcm, 8000, 16000, 0);             /* speech, then silence past endpointing */
    ASSERT_EQ_INT(sess_chunk(s, (const uint8_t *)pcm, sizeof pcm, 0, 0, 0, 0), 0);
    ASSERT_EQ_INT(sess_pending(s), 1);
    ASSERT_EQ_INT(sess_engine_outstanding(s), 3);  /* speech, finalize, silence */
    run();
    ASSERT_EQ_INT(sess_engine_outstanding(s), 0);
    ASSERT_EQ_INT(sess_pending(s), 0);
    sess_destroy(s);
}

/* ---- windowed engines (mock-windowed on an inference pool) ---------------- */

static struct pool *wpool;

/* Loads mock-windowed (latency_ms per decode, unstable tails or not) and
 * starts a pool of threads threads. */
static void wsetup(int latency_ms, int unstable, unsigned threads, unsigned queue_max) {
    free(settings);
    mock_env_extra_name = "ASR_MOCK_UNSTABLE_TAIL";
    mock_env_extra_value = unstable ? "1" : "0";
    settings = mock_settings(latency_ms, 2, 0, 7);
    mock_env_extra_name = NULL;
    ASSERT(settings != NULL);
    const struct engine_ops *ops = engines_find("mock-windowed");
    struct engine_cfg ec = {.loop = uv_default_loop(), .settings = settings};
    ASSERT_EQ_INT(engine_load(ops, &ec), 0);
    struct pool_cfg pc = {.threads = threads, .queue_max = queue_max};
    ASSERT_EQ_INT(pool_create(uv_default_loop(), ops, settings, &pc, &wpool), 0);
    n_evs = done_calls = low_calls = 0;
}

static struct asr_session *wmk(unsigned rate, unsigned window_ms, unsigned max_utt_ms) {
    struct sess_cfg sc = {.sample_rate = rate, .engine_rate = 16000, .pool = wpool, .final_class = POOL_FINAL,
                          .window_ms = window_ms, .max_utterance_ms = max_utt_ms,
                          .max_chunk_bytes = 1 << 20, .rate_bytes_per_sec = (size_t)1 << 30,
                          .max_pending_chunks = 1000, .rate_abuse_threshold = 3,
                          .vad = {.frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *s = sess_create(&sc);
    ASSERT(s != NULL);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
    sess_attach(s, &sink, NULL);
    return s;
}

/* Runs the loop until the session owes nothing and the pool has nothing
 * waiting or running (window results are delivered too). */
static int pool_idle(void) {
    const struct pool_stats *st = pool_stats(wpool);
    return st->queued == 0 && st->busy == 0;
}
static void wrun(struct asr_session *s) {
    for (int i = 0; i < 100000 && !(sess_idle(s) && pool_idle()); i++) uv_run(uv_default_loop(), UV_RUN_ONCE);
    for (int i = 0; i < 20; i++) uv_run(uv_default_loop(), UV_RUN_NOWAIT); /* the last delivery */
    ASSERT(sess_idle(s));
}

static void wteardown(struct asr_session *s) {
    sess_destroy(s);
    pool_destroy(wpool);
    wpool = NULL;
    engine_unload();
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
}

static void wrun(struct asr_session *s);

/* rate Hz: 0.5 s silence, speech_s of speech, 1.5 s silence, in 100 ms
 * chunks. paced: each chunk waits until everything owed went out (a client
 * in real time on an idle server); else all at once. */
static void wfeed(struct asr_session *s, unsigned rate, double speech_s, int paced) {
    size_t n = (size_t)((2.0 + speech_s) * rate), chunk = rate / 10;
    int16_t *pcm = calloc(n, sizeof *pcm);
    ASSERT(pcm != NULL);
    synth_voiced(pcm + rate / 2, (size_t)(speech_s * rate), rate, 0.5);
    for (size_t off = 0; off + chunk <= n; off += chunk)
    {
        ASSERT_EQ_INT(sess_chunk(s, (const uint8_t *)(pcm + off), chunk * 2, 0, 0, 0, util_now_ns()), 0);
        if (paced) wrun(s);
    }
    free(pcm);
}

/* What the client sees: committed partial text concatenated, the final,
 * tentative tails present, server_busy count. */
struct wsum { char committed[4096], final[4096]; int finals, partials, busy, tentatives; size_t final_words; };

static void wsummary(struct wsum *w) {
    memset(w, 0, sizeof *w);
    for (int i = 0; i < n_evs; i++) {
        if (evs[i].kind == 'P') {
            w->partials++;
            w->busy += evs[i].busy;
            w->tentatives += evs[i].has_tentative && evs[i].tentative[0];
            if (evs[i].text[0]) {
                size_t l = strlen(w->committed);
                snprintf(w->committed + l, sizeof w->committed - l, "%s%s", l ? " " : "", evs[i].text);
            }
        } else if (evs[i].kind == 'F' && evs[i].text[0]) {
            w->finals++;
            w->final_words += evs[i].n_words;
            size_t l = strlen(w->final);
            snprintf(w->final + l, sizeof w->final - l, "%s%s", l ? " " : "", evs[i].text);
        }
    }
}

static int count_words(const char *t) {
    int n = 0;
    for (const char *p = t; *p; p++) n += (p == t || p[-1] == ' ') && *p != ' ';
    return n;
}

/* Growing windows of one utterance agree: words are committed as they come,
 * every chunk still gets one partial in order, and the final (a decode of
 * the whole utterance) starts with everything committed. */
TEST(session_windowed_commits_stable_words) {
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk(16000, 300, 0);
    wfeed(s, 16000, 2.0, 1);
    wrun(s);
    struct wsum w;
    wsummary(&w);
    ASSERT_EQ_INT(w.partials, 40);
    ASSERT_EQ_INT(w.finals, 1);
    ASSERT_EQ_INT(w.busy, 0);
    ASSERT(count_words(w.committed) >= 20);            /* most of ~40 words committed before the end */
    ASSERT(strncmp(w.final, w.committed, strlen(w.committed)) == 0);
    ASSERT_EQ_INT(w.final_words, (size_t)count_words(w.final)); /* words with times */
    ASSERT(w.tentatives > 0);
    for (int i = 1; i < n_evs; i++)                    /* in order */
        if (evs[i].kind == 'P' && evs[i - 1].kind == 'P') ASSERT(evs[i].seq == evs[i - 1].seq + 1);
    wteardown(s);
}

/* Every partial window ends in a wrong word (as real engines' tails do):
 * LocalAgreement never commits one, so the committed text is still a
 * prefix of the final. (Committing each window's words as they came would
 * put the wrong tails in the text.) */
TEST(session_windowed_unstable_tails_are_never_committed) {
    wsetup(1, 1, 2, 16);
    struct asr_session *s = wmk(16000, 300, 0);
    wfeed(s, 16000, 2.0, 1);
    wrun(s);
    struct wsum w;
    wsummary(&w);
    ASSERT_EQ_INT(w.finals, 1);
    ASSERT(count_words(w.committed) >= 10);
    ASSERT(strncmp(w.final, w.committed, strlen(w.committed)) == 0);
    wteardown(s);
}

/* One slow thread and audio faster than it decodes: windows that come due
 * while one is out are skipped with server_busy, and the final still has
 * every word (the same as without load). */
TEST(session_windowed_overload_skips_windows_not_finals) {
    wsetup(1, 0, 1, 16);
    struct asr_session *s = wmk(16000, 200, 0);
    wfeed(s, 16000, 2.0, 1);
    wrun(s);
    struct wsum quiet;
    wsummary(&quiet);
    wteardown(s);
    ASSERT_EQ_INT(quiet.busy, 0);

    wsetup(150, 0, 1, 16);
    s = wmk(16000, 200, 0);
    wfeed(s, 16000, 2.0, 0);                            /* all at once: far faster than 150 ms a window */
    wrun(s);
    struct wsum busy;
    wsummary(&busy);
    ASSERT(busy.busy > 0);
    ASSERT_EQ_INT(busy.partials, 40);
    ASSERT_STR_EQ(busy.final, quiet.final);
    ASSERT(strncmp(busy.final, busy.committed, strlen(busy.committed)) == 0);
    wteardown(s);
}

/* 44.1 kHz from the client, 16 kHz to the engine: the same utterance found. */
TEST(session_windowed_resamples_to_the_engine_rate) {
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk(44100, 300, 0);
    wfeed(s, 44100, 1.5, 1);
    wrun(s);
    struct wsum w;
    wsummary(&w);
    ASSERT_EQ_INT(w.partials, 35);
    ASSERT_EQ_INT(w.finals, 1);
    ASSERT(count_words(w.final) >= 20);
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'S') ASSERT(evs[i].a >= 450 && evs[i].a <= 560);
    wteardown(s);
}

/* An utterance longer than max_utterance_ms is cut with a final. */
TEST(session_long_utterance_is_cut) {
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk(16000, 0, 1000);
    wfeed(s, 16000, 3.5, 0);
    wrun(s);
    struct wsum w;
    wsummary(&w);
    ASSERT(w.finals >= 3);
    ASSERT_EQ_INT(w.committed[0], '\0');               /* window_ms 0: finals only */
    wteardown(s);
}

/* ---- reading feedback ------------------------------------------------------ */

/* The finals' words of a run, space-joined. */
static void finals_text(char *out, size_t n) {
    out[0] = '\0';
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'F' && evs[i].text[0]) {
            size_t l = strlen(out);
            snprintf(out + l, n - l, "%s%s", l ? " " : "", evs[i].text);
        }
}

/* The last answer of a kind (for finals: the last one with text). */
static const struct ev *last_of(char kind) {
    for (int i = n_evs - 1; i >= 0; i--)
        if (evs[i].kind == kind && (kind != 'F' || evs[i].text[0])) return &evs[i];
    return NULL;
}

/* 1 when the words of a (space-separated) are the first words of b. */
static int word_prefix(const char *a, const char *b) {
    size_t l = strlen(a);
    return strncmp(a, b, l) == 0 && (b[l] == ' ' || b[l] == '\0');
}

static int only(const char *s, const char *allowed) { return strspn(s, allowed) == strlen(s); }

static struct asr_session *wmk_fb(unsigned window_ms, const char *expected, unsigned verify_ms) {
    struct sess_cfg sc = {.sample_rate = 16000, .engine_rate = 16000, .pool = wpool, .final_class = POOL_FINAL,
                          .window_ms = window_ms, .max_chunk_bytes = 1 << 20, .rate_bytes_per_sec = (size_t)1 << 30,
                          .max_pending_chunks = 1000, .rate_abuse_threshold = 3, .expected = expected,
                          .expected_len = expected ? strlen(expected) : 0, .verify_max_ms = verify_ms,
                          .vad = {.frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *s = sess_create(&sc);
    ASSERT(s != NULL);
    ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
    sess_attach(s, &sink, NULL);
    return s;
}

/* What mock-windowed says for wfeed's 2 s of speech (its words are a
 * function of the audio and its place). */
static void windowed_reference(char *out, size_t n) {
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk(16000, 600, 0);
    wfeed(s, 16000, 2.0, 1);
    wrun(s);
    finals_text(out, n);
    wteardown(s);
    ASSERT(count_words(out) >= 30);
}

/* Read exactly as expected: every window's feedback is correct words then
 * pending ones, the final's all correct, and at stop the verification
 * (a second decode of the whole session) says so with a score of 1. */
TEST(session_feedback_windowed_correct_reading) {
    char ref[4096];
    windowed_reference(ref, sizeof ref);
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk_fb(600, ref, 60000);
    ASSERT_EQ_INT(sess_expected_words(s), (size_t)count_words(ref));
    wfeed(s, 16000, 2.0, 1);
    ASSERT_EQ_INT(sess_stop_verify(s), 0);
    wrun(s);
    int with_fb = 0;
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'P' && evs[i].has_fb) {
            with_fb++;
            ASSERT(only(evs[i].fb, "c."));
            ASSERT(strstr(evs[i].fb, ".c") == NULL);          /* correct words then pending ones */
        }
    ASSERT(with_fb >= 2);
    const struct ev *f = last_of('F');
    ASSERT(f && f->has_fb && only(f->fb, "c"));
    const struct ev *v = last_of('V');
    ASSERT(v != NULL);
    ASSERT_EQ_INT(v->err, 0);
    ASSERT(only(v->fb, "c") && strlen(v->fb) == (size_t)count_words(ref));
    ASSERT_NEAR(v->score, 1.0, 1e-9);
    ASSERT(v->a >= 2000);                                    /* the whole session decoded again */
    ASSERT_STR_EQ(v->text, ref);
    ASSERT(&evs[n_evs - 1] == v);                            /* the last answer */
    ASSERT_EQ_INT(done_calls, 1);
    wteardown(s);
}

/* Windowed partials do not wait for their window: a window's words ride
 * on the next partial out, and word_feedback goes on exactly that partial
 * (the one whose latency describes a window: buffer > 0), live and with
 * window_wait (file transcription: the chunk's own partial waits). */
TEST(session_feedback_on_the_partial_that_carries_the_window) {
    char ref[4096];
    windowed_reference(ref, sizeof ref);
    for (int wait = 0; wait <= 1; wait++) {
        wsetup(1, 0, 2, 16);
        struct sess_cfg sc = {.sample_rate = 16000, .engine_rate = 16000, .pool = wpool, .final_class = POOL_FINAL,
                              .window_ms = 600, .window_wait = wait, .max_chunk_bytes = 1 << 20,
                              .rate_bytes_per_sec = (size_t)1 << 30, .max_pending_chunks = 1000,
                              .rate_abuse_threshold = 3, .expected = ref, .expected_len = strlen(ref),
                              .vad = {.frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
        struct asr_session *s = sess_create(&sc);
        ASSERT(s != NULL);
        ASSERT_EQ_INT(sess_transition(s, SESS_ACTIVE), 0);
        sess_attach(s, &sink, NULL);
        wfeed(s, 16000, 2.0, 1);
        ASSERT_EQ_INT(sess_stop(s), 0);
        wrun(s);
        int with_fb = 0, carrying = 0;
        for (int i = 0; i < n_evs; i++) {
            if (evs[i].kind != 'P') continue;
            with_fb += evs[i].has_fb;
            carrying += evs[i].buffer_ms > 0;
            ASSERT_EQ_INT(evs[i].has_fb, evs[i].buffer_ms > 0);
            if (evs[i].text[0]) ASSERT(evs[i].has_fb);        /* committed words come with their feedback */
        }
        ASSERT(with_fb >= 2);
        ASSERT_EQ_INT(with_fb, carrying);
        wteardown(s);
    }
}

/* The same audio against a text with its fourth word replaced and three
 * words more: the word ends wrong, the extra words pending while reading
 * and missing in the verification. */
TEST(session_feedback_windowed_wrong_and_missing_words) {
    char ref[4096], ex[4200];
    windowed_reference(ref, sizeof ref);
    const char *p = ref;
    for (int k = 0; k < 3; k++) p = strchr(p, ' ') + 1;
    const char *q = strchr(p, ' ');
    snprintf(ex, sizeof ex, "%.*szebra%s and three more", (int)(p - ref), ref, q);
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk_fb(600, ex, 60000);
    wfeed(s, 16000, 2.0, 1);
    ASSERT_EQ_INT(sess_stop_verify(s), 0);
    wrun(s);
    size_t n = (size_t)count_words(ex);
    const struct ev *f = last_of('F');
    ASSERT(f && f->has_fb && strlen(f->fb) == n);
    ASSERT_EQ_INT(f->fb[3], 'w');
    ASSERT(strcmp(f->fb + n - 3, "...") == 0);               /* not reached: pending while reading */
    const struct ev *v = last_of('V');
    ASSERT(v && v->err == 0 && strlen(v->fb) == n);
    ASSERT_EQ_INT(v->fb[3], 'w');
    ASSERT(strcmp(v->fb + n - 3, "xxx") == 0);               /* never read: missing at the end */
    ASSERT(only(v->fb + 4, "cx") && v->fb[0] == 'c');
    ASSERT_NEAR(v->score, (double)(n - 4) / (double)n, 1e-9);
    wteardown(s);
}

/* One window misrecognises a few words in its middle (ASR_MOCK_MISHEAR_MS):
 * its raw alignment has them wrong, but nothing the client is shown
 * flickers: no word is ever shown as a mistake, and a word shown correct
 * stays so. */
TEST(session_feedback_one_misheard_window_does_not_flicker) {
    char ref[4096];
    windowed_reference(ref, sizeof ref);
    free(settings);
    mock_env_extra_name = "ASR_MOCK_MISHEAR_MS";
    mock_env_extra_value = "1700";
    settings = mock_settings(1, 2, 0, 7);
    mock_env_extra_name = NULL;
    ASSERT(settings != NULL);
    const struct engine_ops *ops = engines_find("mock-windowed");
    struct engine_cfg ec = {.loop = uv_default_loop(), .settings = settings};
    ASSERT_EQ_INT(engine_load(ops, &ec), 0);
    struct pool_cfg pc = {.threads = 2, .queue_max = 16};
    ASSERT_EQ_INT(pool_create(uv_default_loop(), ops, settings, &pc, &wpool), 0);
    n_evs = done_calls = 0;
    struct asr_session *s = wmk_fb(600, ref, 0);
    wfeed(s, 16000, 2.0, 1);
    wrun(s);
    int misheard = 0, with_fb = 0;
    char seen[128] = "", committed[4096] = "";
    for (int i = 0; i < n_evs; i++) {
        if (evs[i].kind != 'P') continue;
        if (evs[i].text[0]) {
            size_t l = strlen(committed);
            snprintf(committed + l, sizeof committed - l, "%s%s", l ? " " : "", evs[i].text);
        }
        if (!evs[i].has_fb) continue;
        with_fb++;
        /* what this window heard: the committed words and its tentative tail */
        char hyp[4096 + 512];
        snprintf(hyp, sizeof hyp, "%s%s%s", committed, committed[0] && evs[i].tentative[0] ? " " : "",
                 evs[i].tentative);
        misheard += !word_prefix(hyp, ref);
        ASSERT(only(evs[i].fb, "c."));                       /* never a mistake */
        for (size_t k = 0; evs[i].fb[k]; k++) {              /* correct stays correct */
            if (seen[k] == 'c') ASSERT_EQ_INT(evs[i].fb[k], 'c');
            seen[k] = evs[i].fb[k];
        }
    }
    ASSERT_EQ_INT(misheard, 1);                              /* exactly one window heard wrong words */
    ASSERT(with_fb >= 3);
    const struct ev *f = last_of('F');
    ASSERT(f && only(f->fb, "c"));
    wteardown(s);
}

/* Speech only, no trailing silence: the utterance stays open, so a window
 * of it still waiting in the pool is not taken back by its final. */
static void wfeed_open(struct asr_session *s, double speech_s) {
    size_t n = (size_t)(speech_s * 16000), chunk = 1600;
    int16_t *pcm = calloc(n, sizeof *pcm);
    ASSERT(pcm != NULL);
    synth_voiced(pcm, n, 16000, 0.5);
    for (size_t off = 0; off + chunk <= n; off += chunk)
        ASSERT_EQ_INT(sess_chunk(s, (const uint8_t *)(pcm + off), chunk * 2, 0, 0, 0, util_now_ns()), 0);
    free(pcm);
}

/* Verification refused: under load (the pool's bounded queue full, as a
 * window would be refused) and past verify_max_ms. The session still ends. */
TEST(session_feedback_verification_refused) {
    wsetup(300, 0, 1, 1);
    struct asr_session *a = wmk_fb(600, "one two three", 60000), *b = wmk(16000, 300, 0), *c = wmk(16000, 300, 0);
    wfeed_open(b, 1.0);                                      /* a window on the one thread */
    wfeed_open(c, 1.0);                                      /* another waiting: the queue is full */
    ASSERT_EQ_INT((int)pool_stats(wpool)->queued_class[POOL_WINDOW], 1);
    ASSERT_EQ_INT(sess_stop_verify(a), 0);
    for (int i = 0; i < 1000 && !(sess_idle(a) && sess_idle(b) && sess_idle(c)); i++)
        uv_run(uv_default_loop(), UV_RUN_ONCE);
    const struct ev *v = last_of('V');
    ASSERT(v && v->err == ASR_E_SERVER_BUSY && !v->has_fb);
    ASSERT(done_calls >= 1);
    sess_destroy(b);
    sess_destroy(c);
    wteardown(a);

    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk_fb(600, "one two three", 1000);  /* 1 s kept, 4 s sent */
    wfeed(s, 16000, 2.0, 1);
    ASSERT_EQ_INT(sess_stop_verify(s), 0);
    wrun(s);
    v = last_of('V');
    ASSERT(v && v->err == ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(done_calls, 1);
    wteardown(s);
}

/* A per-chunk engine (the mock): feedback on partials that bring words and
 * on finals; the verification aligns the session's finals (no second
 * decode). */
TEST(session_feedback_streaming_engine) {
    setup(1, 0);
    static int16_t pcm[16000 * 3];
    synth_voiced(pcm + 8000, 16000, 16000, 0.5);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    for (int i = 0; i < 30; i++) sess_chunk(s, (const uint8_t *)(pcm + i * 1600), 3200, 0, 0, 0, 0);
    run();
    char ref[4096];
    finals_text(ref, sizeof ref);
    ASSERT(count_words(ref) >= 10);
    sess_destroy(s);
    n_evs = 0;

    s = mk(1 << 30, 1000, 0);
    const char *why = NULL;
    ASSERT_EQ_INT(sess_set_expected(s, "-- ...", 6, &why), ASR_E_BAD_REQUEST);
    ASSERT_STR_EQ(why, "the expected text has no word");
    ASSERT_EQ_INT(sess_expected_words(s), 0);
    ASSERT_EQ_INT(sess_set_expected(s, ref, strlen(ref), &why), 0);
    for (int i = 0; i < 30; i++) sess_chunk(s, (const uint8_t *)(pcm + i * 1600), 3200, 0, 0, 0, 0);
    ASSERT_EQ_INT(sess_set_expected(s, ref, strlen(ref), &why), ASR_EINVAL);  /* audio came */
    run();
    int with_fb = 0;
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'P') {
            ASSERT_EQ_INT(evs[i].has_fb, evs[i].text[0] != 0);  /* exactly the partials with words */
            with_fb += evs[i].has_fb;
            if (evs[i].has_fb) ASSERT(only(evs[i].fb, "c."));
        }
    ASSERT(with_fb >= 5);
    ASSERT(only(last_of('F')->fb, "c"));
    ASSERT_EQ_INT(sess_stop_verify(s), 0);
    run();
    const struct ev *v = last_of('V');
    ASSERT(v && v->err == 0 && only(v->fb, "c") && v->a == 0);
    ASSERT_NEAR(v->score, 1.0, 1e-9);
    ASSERT_STR_EQ(v->text, ref);
    ASSERT_EQ_INT(done_calls, 1);
    sess_destroy(s);
}

/* A windowed session rebuilt from its snapshot (a resume on another
 * worker) goes on decoding: its buffer starts at the restored position. */
TEST(session_windowed_restored_session_still_decodes) {
    wsetup(1, 0, 2, 16);
    struct asr_session *s = wmk(16000, 300, 0);
    static int16_t sil[1600];
    for (int i = 0; i < 20; i++) ASSERT_EQ_INT(sess_chunk(s, (const uint8_t *)sil, sizeof sil, 0, 0, 0, util_now_ns()), 0);
    wrun(s);
    struct buf snap;
    buf_init(&snap, 0);
    ASSERT_EQ_INT(sess_snapshot(s, &snap), 0);
    struct sess_cfg sc = {.sample_rate = 16000, .engine_rate = 16000, .pool = wpool, .final_class = POOL_FINAL,
                          .window_ms = 300, .max_chunk_bytes = 1 << 20, .rate_bytes_per_sec = (size_t)1 << 30,
                          .max_pending_chunks = 1000, .rate_abuse_threshold = 3,
                          .vad = {.frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *r = sess_restore(&sc, "0123456789abcdef0123456789abcdef", snap.data, snap.len);
    ASSERT(r != NULL);
    sess_destroy(s);
    buf_cleanup(&snap);
    ASSERT_EQ_INT(sess_transition(r, SESS_ACTIVE), 0);
    sess_attach(r, &sink, NULL);
    n_evs = 0;
    wfeed(r, 16000, 1.5, 1);
    wrun(r);
    struct wsum w;
    wsummary(&w);
    ASSERT_EQ_INT(w.finals, 1);
    ASSERT(count_words(w.final) >= 10);
    wteardown(r);
}

/* An expected text past FB_TEXT_MAX_WORDS is refused (it would make the
 * alignment's memory and time per window unbounded by the byte limit). */
TEST(session_feedback_text_word_bound) {
    setup(1, 0);
    struct asr_session *s = mk(1 << 30, 16, 0);
    static char text[4 * FB_TEXT_MAX_WORDS];
    size_t n = 0;
    for (int i = 0; i <= FB_TEXT_MAX_WORDS; i++) n += (size_t)snprintf(text + n, sizeof text - n, "a ");
    const char *why = NULL;
    ASSERT_EQ_INT(sess_set_expected(s, text, n, &why), ASR_E_BAD_REQUEST);
    ASSERT_STR_EQ(why, "the expected text has too many words");
    ASSERT_EQ_INT(sess_set_expected(s, text, n - 2, &why), 0);
    ASSERT_EQ_INT(sess_expected_words(s), FB_TEXT_MAX_WORDS);
    sess_destroy(s);
}

/* A session snapshotted during the endpointing silence (its utterance's
 * last speech frame a chunk or two back) and restored elsewhere gives the
 * utterance's final the chunk that holds its end, as the uninterrupted
 * session does (docs/API.md "final"), not the snapshot's last chunk. */
TEST(session_restored_in_the_endpointing_silence_keeps_the_final_chunk) {
    setup(1, 0);
    struct asr_session *s = mk(1 << 30, 1000, 0);
    static int16_t pcm[16000 * 3];
    synth_voiced(pcm + 8000, 16000, 16000, 0.5); /* 0.5 s silence, 1 s speech, 1.5 s silence */
    for (int i = 0; i < 17; i++) sess_chunk(s, (const uint8_t *)(pcm + i * 1600), 3200, 0, 0, 0, 0);
    run(); /* 1.7 s answered: the speech ended less than 300 ms ago, no final yet */
    for (int i = 0; i < n_evs; i++) ASSERT(evs[i].kind != 'F');
    struct buf snap;
    buf_init(&snap, 0);
    ASSERT_EQ_INT(sess_snapshot(s, &snap), 0);
    sess_destroy(s);
    struct sess_cfg sc = {.sample_rate = 16000, .max_chunk_bytes = 65536, .rate_bytes_per_sec = 1 << 30,
                          .max_pending_chunks = 1000, .rate_abuse_threshold = 3,
                          .vad = {.sample_rate = 16000, .frame_ms = 30, .mode = 2, .endpointing_ms = 300}};
    struct asr_session *r = sess_restore(&sc, "0123456789abcdef0123456789abcdef", snap.data, snap.len);
    buf_cleanup(&snap);
    ASSERT(r != NULL);
    ASSERT_EQ_INT(sess_transition(r, SESS_ACTIVE), 0);
    sess_attach(r, &sink, NULL);
    n_evs = 0;
    for (int i = 17; i < 30; i++) sess_chunk(r, (const uint8_t *)(pcm + i * 1600), 3200, 0, 0, 0, 0);
    run();
    int finals = 0;
    for (int i = 0; i < n_evs; i++)
        if (evs[i].kind == 'F' && evs[i].b > evs[i].a) {
            finals++;
            ASSERT(evs[i].b >= 1400 && evs[i].b <= 1560);
            ASSERT_EQ_INT(evs[i].seq, (evs[i].b + 99) / 100); /* the chunk holding end_ms */
        }
    ASSERT_EQ_INT(finals, 1);
    sess_destroy(r);
}
