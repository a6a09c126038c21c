/* Unit tests for src/core/vad.c: framing, remainder carrying, energy pre-check,
 * endpointing and offsets. The speech is synthesized (a voiced harmonic tone
 * with a wandering pitch, formant-like emphasis and syllable-rate amplitude
 * modulation), which the WebRTC classifier calls speech in every mode; the
 * silence is digital zeros, so the expected events are exact. */
#define _GNU_SOURCE
#include "test.h"
#include "synth.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "core/vad.h"

/* Counts calls into the WebRTC classifier: this definition interposes the
 * library's, and forwards to it. */
static unsigned long webrtc_calls;
static int webrtc_last_fs;

static int (*real_process)(void *, int, const int16_t *, size_t);

int WebRtcVad_Process(void *inst, int fs, const int16_t *frame, size_t len) {
    if (!real_process) {
        *(void **)&real_process = dlsym(RTLD_NEXT, "WebRtcVad_Process");
        if (!real_process) TEST_FAIL_("dlsym WebRtcVad_Process: %s", dlerror());
    }
    webrtc_calls++;
    webrtc_last_fs = fs;
    return real_process(inst, fs, frame, len);
}

/* The library's own instance functions, for a reference classifier. */
void *WebRtcVad_Create(void);
int   WebRtcVad_Init(void *inst);
int   WebRtcVad_set_mode(void *inst, int mode);
void  WebRtcVad_Free(void *inst);

static const unsigned rates[] = {8000, 16000, 32000, 48000};
static const unsigned frames[] = {10, 20, 30};

/* Zeros for lead_ms, speech for speech_ms, zeros for tail_ms. Caller frees. */
static int16_t *make_signal(unsigned rate, unsigned lead_ms, unsigned speech_ms,
                            unsigned tail_ms, size_t *n) {
    size_t lead = (size_t)rate * lead_ms / 1000, sp = (size_t)rate * speech_ms / 1000;
    *n = (size_t)rate * (lead_ms + speech_ms + tail_ms) / 1000;
    int16_t *pcm = calloc(*n, sizeof(int16_t));
    ASSERT(pcm != NULL);
    synth_voiced(pcm + lead, sp, rate, (double)lead_ms / 1000);
    return pcm;
}

static struct vad *mk(unsigned rate, unsigned frame_ms, int mode, unsigned ep) {
    struct vad_cfg cfg = {.sample_rate = rate, .frame_ms = frame_ms, .mode = mode,
                          .endpointing_ms = ep};
    struct vad *v = vad_create(&cfg);
    ASSERT(v != NULL);
    return v;
}

#define EV_MAX 64

/* Feeds pcm in chunks cycling through sizes[] and collects all events. */
static size_t feed_chunked(struct vad *v, const int16_t *pcm, size_t n,
                           const size_t *sizes, size_t n_sizes,
                           struct vad_event *out, size_t out_cap) {
    size_t total = 0, pos = 0, k = 0;
    struct vad_event ev[EV_MAX];
    while (pos < n) {
        size_t c = sizes[k++ % n_sizes];
        if (c > n - pos) c = n - pos;
        size_t got = 0;
        ASSERT_EQ_INT(vad_feed(v, pcm + pos, c, ev, EV_MAX, &got), 0);
        for (size_t i = 0; i < got; i++) {
            ASSERT(total < out_cap);
            out[total++] = ev[i];
        }
        pos += c;
        ASSERT_EQ_INT(vad_samples(v), pos);
    }
    return total;
}

static void expect_utterance(const struct vad_event *ev, size_t n_ev, unsigned rate,
                             unsigned frame_ms, unsigned start_ms, unsigned end_ms,
                             unsigned ep_ms) {
    ASSERT_EQ_INT(n_ev, 2);
    ASSERT_EQ_INT(ev[0].type, VAD_SPEECH_START);
    ASSERT_EQ_INT(ev[0].offset_ms, start_ms);
    ASSERT_EQ_INT(ev[0].at_sample, (uint64_t)(start_ms + frame_ms) * rate / 1000);
    ASSERT_EQ_INT(ev[0].speech_ms_total, frame_ms);
    ASSERT_EQ_INT(ev[1].type, VAD_SPEECH_END);
    ASSERT_EQ_INT(ev[1].offset_ms, end_ms);
    ASSERT_EQ_INT(ev[1].at_sample, (uint64_t)(end_ms + ep_ms) * rate / 1000);
    /* The classifier may drop an odd frame inside the speech (8 kHz, 10 ms). */
    ASSERT_LE_INT(ev[1].speech_ms_total, end_ms - start_ms);
    ASSERT_GE_INT(ev[1].speech_ms_total, (end_ms - start_ms) * 95 / 100);
}

TEST(vad_silence_gives_no_events) {
    for (size_t r = 0; r < 4; r++)
        for (size_t f = 0; f < 3; f++) {
            struct vad *v = mk(rates[r], frames[f], 0, 300);
            size_t n = rates[r] * 3;
            int16_t *pcm = calloc(n, sizeof(int16_t));
            ASSERT(pcm != NULL);
            struct vad_event ev[EV_MAX];
            size_t got = 99;
            ASSERT_EQ_INT(vad_feed(v, pcm, n, ev, EV_MAX, &got), 0);
            ASSERT_EQ_INT(got, 0);
            ASSERT_EQ_INT(vad_in_utterance(v), 0);
            ASSERT_EQ_INT(vad_speech_ms_total(v), 0);
            ASSERT_EQ_INT(vad_offset_ms(v), 3000);
            free(pcm);
            vad_destroy(v);
        }
}

TEST(vad_zeros_never_reach_classifier) {
    struct vad *v = mk(16000, 30, 2, 300);
    int16_t pcm[16000] = {0};
    struct vad_event ev[EV_MAX];
    size_t got;
    webrtc_calls = 0;
    ASSERT_EQ_INT(vad_feed(v, pcm, 16000, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(got, 0);
    ASSERT_EQ_INT(webrtc_calls, 0);
    /* Speech does reach it, one call per frame. */
    synth_voiced(pcm, 4800, 16000, 0);
    ASSERT_EQ_INT(vad_feed(v, pcm, 4800, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(webrtc_calls, 10);
    ASSERT_EQ_INT(got, 1);
    vad_destroy(v);
}

/* Faint noise (mean |x| ~ 8, about -72 dBFS) sometimes fools WebRTC's least
 * aggressive mode; the energy floor keeps it silent. */
TEST(vad_energy_floor_silences_faint_noise) {
    size_t n = 16000 * 2;
    int16_t *pcm = malloc(n * sizeof(int16_t));
    ASSERT(pcm != NULL);
    uint32_t seed = 12345;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        pcm[i] = (int16_t)((int)((seed >> 16) & 0x1f) - 16);
    }
    /* Straight to the classifier: some frames come back speech. */
    void *WebRtcVad_Create(void);
    int WebRtcVad_Init(void *);
    int WebRtcVad_set_mode(void *, int);
    void WebRtcVad_Free(void *);
    void *raw = WebRtcVad_Create();
    ASSERT(raw != NULL);
    ASSERT_EQ_INT(WebRtcVad_Init(raw), 0);
    ASSERT_EQ_INT(WebRtcVad_set_mode(raw, 0), 0);
    int raw_speech = 0;
    for (size_t i = 0; i + 480 <= n; i += 480)
        raw_speech += WebRtcVad_Process(raw, 16000, pcm + i, 480) == 1;
    WebRtcVad_Free(raw);
    ASSERT_GE_INT(raw_speech, 1);

    struct vad *v = mk(16000, 30, 0, 300);
    struct vad_event ev[EV_MAX];
    size_t got;
    webrtc_calls = 0;
    ASSERT_EQ_INT(vad_feed(v, pcm, n, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(got, 0);
    ASSERT_EQ_INT(webrtc_calls, 0);
    ASSERT_EQ_INT(vad_speech_ms_total(v), 0);
    vad_destroy(v);
    free(pcm);
}

TEST(vad_speech_start_then_end_after_endpointing) {
    size_t n;
    /* 510 ms silence, 1980 ms speech, 1 s silence: frame-aligned at 30 ms. */
    int16_t *pcm = make_signal(16000, 510, 1980, 1000, &n);
    for (int mode = 0; mode <= 3; mode++) {
        struct vad *v = mk(16000, 30, mode, 300);
        struct vad_event ev[EV_MAX];
        size_t got;
        ASSERT_EQ_INT(vad_feed(v, pcm, n, ev, EV_MAX, &got), 0);
        expect_utterance(ev, got, 16000, 30, 510, 2490, 300);
        ASSERT_EQ_INT(vad_in_utterance(v), 0);
        ASSERT_EQ_INT(vad_utterance_start_ms(v), 510);
        ASSERT_EQ_INT(vad_speech_ms_total(v), 1980);
        vad_destroy(v);
    }
    free(pcm);
}

TEST(vad_no_end_before_endpointing) {
    size_t n;
    /* 290 ms of silence after speech: one frame short of 300. */
    int16_t *pcm = make_signal(16000, 300, 900, 270, &n);
    struct vad *v = mk(16000, 30, 2, 300);
    struct vad_event ev[EV_MAX];
    size_t got;
    ASSERT_EQ_INT(vad_feed(v, pcm, n, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(got, 1);
    ASSERT_EQ_INT(ev[0].type, VAD_SPEECH_START);
    ASSERT_EQ_INT(vad_in_utterance(v), 1);
    int16_t z[480] = {0};
    ASSERT_EQ_INT(vad_feed(v, z, 480, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(got, 1);
    ASSERT_EQ_INT(ev[0].type, VAD_SPEECH_END);
    ASSERT_EQ_INT(ev[0].offset_ms, 1200);
    ASSERT_EQ_INT(ev[0].at_sample, 1500 * 16);
    vad_destroy(v);
    free(pcm);
}

TEST(vad_all_rates_and_frame_sizes) {
    for (size_t r = 0; r < 4; r++) {
        size_t n;
        /* Boundaries are multiples of 60 ms, so every frame size aligns. */
        int16_t *pcm = make_signal(rates[r], 600, 1800, 1200, &n);
        for (size_t f = 0; f < 3; f++) {
            struct vad *v = mk(rates[r], frames[f], 2, 300);
            struct vad_event ev[EV_MAX];
            size_t got;
            ASSERT_EQ_INT(vad_feed(v, pcm, n, ev, EV_MAX, &got), 0);
            expect_utterance(ev, got, rates[r], frames[f], 600, 2400, 300);
            ASSERT_EQ_INT(vad_offset_ms(v), 3600);
            vad_destroy(v);
        }
        free(pcm);
    }
}

/* Chunks of any size give the events of one big chunk. */
TEST(vad_odd_chunks_match_one_chunk) {
    static const size_t odd[][4] = {
        {37, 37, 37, 37}, {1, 1, 1, 1}, {4801, 4801, 4801, 4801},
        {37, 1, 4801, 479}, {479, 481, 1, 960},
    };
    for (size_t r = 0; r < 4; r++) {
        size_t n;
        int16_t *pcm = make_signal(rates[r], 630, 1230, 900, &n);
        for (size_t f = 0; f < 3; f++) {
            struct vad_event ref[EV_MAX];
            size_t n_ref;
            struct vad *v = mk(rates[r], frames[f], 1, 240);
            ASSERT_EQ_INT(vad_feed(v, pcm, n, ref, EV_MAX, &n_ref), 0);
            ASSERT_EQ_INT(n_ref, 2);
            vad_destroy(v);
            for (size_t k = 0; k < sizeof(odd) / sizeof(odd[0]); k++) {
                if (odd[k][0] == 1 && rates[r] > 16000) continue;  /* slow, adds nothing */
                struct vad_event got[EV_MAX];
                v = mk(rates[r], frames[f], 1, 240);
                size_t n_got = feed_chunked(v, pcm, n, odd[k], 4, got, EV_MAX);
                ASSERT_EQ_INT(n_got, n_ref);
                for (size_t i = 0; i < n_ref; i++) {
                    ASSERT_EQ_INT(got[i].type, ref[i].type);
                    ASSERT_EQ_INT(got[i].at_sample, ref[i].at_sample);
                    ASSERT_EQ_INT(got[i].offset_ms, ref[i].offset_ms);
                    ASSERT_EQ_INT(got[i].speech_ms_total, ref[i].speech_ms_total);
                }
                vad_destroy(v);
            }
        }
        free(pcm);
    }
}

/* With a full event array vad_feed stops right after the event that filled
 * it; feeding the rest again gives the same events. */
TEST(vad_full_event_array_returns_eagain) {
    size_t n;
    int16_t *pcm = make_signal(16000, 300, 600, 600, &n);
    size_t n2;
    int16_t *two = malloc(2 * n * sizeof(int16_t));
    ASSERT(two != NULL);
    memcpy(two, pcm, n * sizeof(int16_t));
    memcpy(two + n, pcm, n * sizeof(int16_t));
    n2 = 2 * n;

    struct vad *v = mk(16000, 20, 2, 200);
    struct vad_event ref[EV_MAX];
    size_t n_ref;
    ASSERT_EQ_INT(vad_feed(v, two, n2, ref, EV_MAX, &n_ref), 0);
    ASSERT_EQ_INT(n_ref, 4);
    vad_destroy(v);

    v = mk(16000, 20, 2, 200);
    size_t pos = 0, total = 0;
    int eagains = 0;
    struct vad_event ev;
    size_t got;
    ASSERT_EQ_INT(vad_feed(v, two, 100, &ev, 0, &got), ASR_EAGAIN);
    ASSERT_EQ_INT(got, 0);
    ASSERT_EQ_INT(vad_samples(v), 0);
    while (pos < n2) {
        uint64_t before = vad_samples(v);
        int rc = vad_feed(v, two + pos, n2 - pos, &ev, 1, &got);
        ASSERT(rc == 0 || rc == ASR_EAGAIN);
        pos += (size_t)(vad_samples(v) - before);
        if (rc == ASR_EAGAIN) {
            eagains++;
            ASSERT_EQ_INT(got, 1);
            ASSERT_EQ_INT(ev.at_sample, vad_samples(v));
        }
        if (got) {
            ASSERT(total < n_ref);
            ASSERT_EQ_INT(ev.type, ref[total].type);
            ASSERT_EQ_INT(ev.at_sample, ref[total].at_sample);
            ASSERT_EQ_INT(ev.offset_ms, ref[total].offset_ms);
            total++;
        }
        if (rc == 0) break;
    }
    ASSERT_EQ_INT(total, n_ref);
    ASSERT_EQ_INT(eagains, 4);  /* the last END leaves 400 ms unread */
    ASSERT_EQ_INT(vad_samples(v), n2);
    vad_destroy(v);
    free(two);
    free(pcm);
}

TEST(vad_end_utterance_forces_end) {
    struct vad *v = mk(16000, 30, 2, 300);
    struct vad_event ev[EV_MAX], end;
    size_t got;
    ASSERT_EQ_INT(vad_end_utterance(v, &end), 0);

    /* 300 ms speech plus 100 samples of the next frame (kept as remainder). */
    int16_t pcm[4900];
    synth_voiced(pcm, 4900, 16000, 0);
    ASSERT_EQ_INT(vad_feed(v, pcm, 4900, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(got, 1);
    ASSERT_EQ_INT(ev[0].offset_ms, 0);
    ASSERT_EQ_INT(vad_in_utterance(v), 1);

    ASSERT_EQ_INT(vad_end_utterance(v, &end), 1);
    ASSERT_EQ_INT(end.type, VAD_SPEECH_END);
    ASSERT_EQ_INT(end.offset_ms, 300);
    ASSERT_EQ_INT(end.at_sample, 4900);
    ASSERT_EQ_INT(end.speech_ms_total, 300);
    ASSERT_EQ_INT(vad_in_utterance(v), 0);
    ASSERT_EQ_INT(vad_end_utterance(v, &end), 0);

    /* The carried 100 samples are still stream audio: speech resumes with a
     * new START at the frame they begin. */
    synth_voiced(pcm, 4900, 16000, 4900.0 / 16000);
    ASSERT_EQ_INT(vad_feed(v, pcm, 4900, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(got, 1);
    ASSERT_EQ_INT(ev[0].type, VAD_SPEECH_START);
    ASSERT_EQ_INT(ev[0].offset_ms, 300);
    ASSERT_EQ_INT(vad_utterance_start_ms(v), 300);
    ASSERT_EQ_INT(vad_samples(v), 9800);
    ASSERT_EQ_INT(vad_offset_ms(v), 612);
    vad_destroy(v);
}

TEST(vad_two_utterances) {
    size_t n;
    int16_t *a = make_signal(16000, 300, 600, 600, &n);
    struct vad *v = mk(16000, 10, 3, 400);
    struct vad_event ev[EV_MAX];
    size_t got;
    ASSERT_EQ_INT(vad_feed(v, a, n, ev, EV_MAX, &got), 0);
    ASSERT_EQ_INT(vad_feed(v, a, n, ev + 2, EV_MAX - 2, &got), 0);
    ASSERT_EQ_INT(got, 2);
    ASSERT_EQ_INT(ev[0].offset_ms, 300);
    ASSERT_EQ_INT(ev[1].offset_ms, 900);
    ASSERT_EQ_INT(ev[2].type, VAD_SPEECH_START);
    ASSERT_EQ_INT(ev[2].offset_ms, 1500 + 300);
    ASSERT_EQ_INT(ev[3].type, VAD_SPEECH_END);
    ASSERT_EQ_INT(ev[3].offset_ms, 1500 + 900);
    ASSERT_EQ_INT(ev[3].at_sample, (1500 + 900 + 400) * 16);
    /* The classifier may drop an odd 10 ms frame inside the speech. */
    ASSERT_LE_INT(ev[3].speech_ms_total, 1200);
    ASSERT_GE_INT(ev[3].speech_ms_total, 1140);
    vad_destroy(v);
    free(a);
}

/* ---- the 16 -> 8 kHz decimator in front of the classifier ------------------ */

static uint32_t lcg_state = 12345;
static int32_t lcg(void) {
    lcg_state = lcg_state * 1103515245u + 12345u;
    return (int32_t)(lcg_state >> 8);
}

/* y[k] = round(sum_j h[j] * e[2k + j + 1] / 512), saturated; h is the
 * halfband (3, 0, -25, 0, 150, 256, 150, 0, -25, 0, 3). */
static int16_t decim_ref(const int16_t *e, size_t k) {
    static const int h[11] = {3, 0, -25, 0, 150, 256, 150, 0, -25, 0, 3};
    int64_t acc = 0;
    for (int j = 0; j < 11; j++) acc += (int64_t)h[j] * e[2 * k + (size_t)j + 1];
    acc = (acc + 256) >> 9;
    return (int16_t)(acc > 32767 ? 32767 : acc < -32768 ? -32768 : acc);
}

TEST(vad_decimate2_matches_its_formula) {
    static const size_t outs[] = {1, 7, 8, 80, 160, 240};
    int16_t e[VAD_DECIM_HIST + 480 + VAD_DECIM_PAD], y[240];
    for (int round = 0; round < 200; round++) {
        size_t n_out = outs[round % 6];
        size_t n_in = VAD_DECIM_HIST + 2 * n_out;
        for (size_t i = 0; i < n_in; i++) {
            int32_t r = lcg();
            /* full-scale runs too, to reach the saturation */
            e[i] = round % 3 == 0 ? (int16_t)(r & 1 ? 32767 : -32768) : (int16_t)(r & 0xffff);
        }
        for (size_t i = n_in; i < n_in + VAD_DECIM_PAD; i++) e[i] = 0x5a5a; /* never used */
        vad_decimate2(e, y, n_out);
        for (size_t k = 0; k < n_out; k++) ASSERT_EQ_INT(y[k], decim_ref(e, k));
    }
    /* saturation is reached: alternating full scale around the centre tap */
    for (size_t i = 0; i < VAD_DECIM_HIST + 16; i++) e[i] = (i % 4 == 2) ? 32767 : -32768;
    vad_decimate2(e, y, 8);
    ASSERT_EQ_INT(decim_ref(e, 0), y[0]);
}

static double tone_gain_db(double hz) {
    enum { N_OUT = 240, BLOCKS = 20 };
    int16_t e[VAD_DECIM_HIST + 2 * N_OUT + VAD_DECIM_PAD] = {0}, y[N_OUT];
    double in_e = 0, out_e = 0;
    size_t t = 0;
    for (int b = 0; b < BLOCKS; b++) {
        memmove(e, e + 2 * N_OUT, VAD_DECIM_HIST * sizeof(int16_t));
        for (size_t i = 0; i < 2 * N_OUT; i++, t++)
            e[VAD_DECIM_HIST + i] = (int16_t)lrint(10000 * sin(2 * M_PI * hz * (double)t / 16000));
        vad_decimate2(e, y, N_OUT);
        if (b < 2) continue; /* past the start-up transient */
        for (size_t k = 0; k < N_OUT; k++) {
            double x = e[VAD_DECIM_HIST + 2 * k];
            in_e += x * x;
            out_e += (double)y[k] * y[k];
        }
    }
    return 10 * log10(out_e / in_e);
}

/* Passband flat where the VAD's sub-bands live, alias bands suppressed. */
TEST(vad_decimate2_response) {
    ASSERT(fabs(tone_gain_db(250)) < 0.5);
    ASSERT(fabs(tone_gain_db(1000)) < 0.5);
    ASSERT(tone_gain_db(2000) > -0.5);   /* -0.2 dB from the taps */
    ASSERT(tone_gain_db(3000) > -2.2);   /* -1.7 */
    ASSERT(tone_gain_db(6000) < -28.0);  /* -32 */
    ASSERT(tone_gain_db(6500) < -40.0);  /* -46 */
    ASSERT(tone_gain_db(7500) < -60.0);
}

/* Speech in white noise, frame by frame: the classifier behind our
 * decimator against WebRTC's 16 kHz entry point (its own decimator), the
 * same energy gate in front of both. They need not agree on every frame
 * (different filters), but nearly so, at every mode and noise level. */
TEST(vad_16k_classifies_like_webrtc_own_decimator) {
    enum { RATE = 16000, FRAME = 480, FRAMES = 400 };
    int16_t *pcm = calloc((size_t)FRAME * FRAMES, sizeof(int16_t));
    ASSERT(pcm != NULL);
    static const int noise[] = {0, 100, 300, 1000};
    for (int mode = 0; mode <= 3; mode++)
        for (int ni = 0; ni < 4; ni++) {
            /* 0.6-1.5 s of speech, 0.3-0.9 s of silence, repeated */
            memset(pcm, 0, (size_t)FRAME * FRAMES * sizeof(int16_t));
            size_t pos = 0;
            while (pos < (size_t)FRAME * FRAMES) {
                size_t sp = (size_t)(9600 + (lcg() % 14400)), gap = (size_t)(4800 + (lcg() % 9600));
                if (pos + sp > (size_t)FRAME * FRAMES) sp = (size_t)FRAME * FRAMES - pos;
                synth_voiced(pcm + pos, sp, RATE, (double)pos / RATE);
                pos += sp + gap;
            }
            for (size_t i = 0; i < (size_t)FRAME * FRAMES; i++) {
                int32_t u = 0;
                for (int k = 0; k < 4; k++) u += (lcg() & 0xffff) - 32768;
                int32_t x = pcm[i] + (int32_t)((int64_t)u * noise[ni] / 37837); /* sd ~ noise */
                pcm[i] = (int16_t)(x > 32767 ? 32767 : x < -32768 ? -32768 : x);
            }
            struct vad *v = mk(RATE, 30, mode, 300);
            void *ref = WebRtcVad_Create();
            ASSERT(ref != NULL);
            ASSERT_EQ_INT(WebRtcVad_Init(ref), 0);
            ASSERT_EQ_INT(WebRtcVad_set_mode(ref, mode), 0);
            unsigned agree = 0, ref_speech = 0;
            struct vad_event ev[EV_MAX];
            size_t got;
            for (int f = 0; f < FRAMES; f++) {
                const int16_t *fr = pcm + (size_t)f * FRAME;
                uint64_t s0 = vad_speech_ms_total(v);
                ASSERT_EQ_INT(vad_feed(v, fr, FRAME, ev, EV_MAX, &got), 0);
                int ours = vad_speech_ms_total(v) > s0;
                uint32_t sum = 0;
                for (int i = 0; i < FRAME; i++) sum += (uint32_t)abs(fr[i]);
                int theirs = sum >= 33u * FRAME && real_process(ref, RATE, fr, FRAME) == 1;
                if (ours != 0 && webrtc_last_fs != 8000) TEST_FAIL_("16 kHz frame reached WebRTC at %d Hz", webrtc_last_fs);
                agree += ours == theirs;
                ref_speech += (unsigned)theirs;
            }
            if (agree < FRAMES * 97 / 100)
                TEST_FAIL_("mode %d noise %d: %u of %d frames agree (reference: %u speech)", mode, noise[ni],
                           agree, FRAMES, ref_speech);
            WebRtcVad_Free(ref);
            vad_destroy(v);
        }
    free(pcm);
}

TEST(vad_invalid_cfg_rejected) {
    const struct vad_cfg ok = {.sample_rate = 16000, .frame_ms = 30, .mode = 2,
                               .endpointing_ms = 300};
    ASSERT_EQ_INT(vad_cfg_check(&ok), 0);
    ASSERT_EQ_INT(vad_cfg_check(NULL), ASR_EINVAL);
    ASSERT(vad_create(NULL) == NULL);
    struct vad_cfg bad[] = {ok, ok, ok, ok, ok, ok, ok, ok, ok};
    bad[0].sample_rate = 44100;
    bad[1].sample_rate = 0;
    bad[2].frame_ms = 15;
    bad[3].frame_ms = 0;
    bad[4].mode = -1;
    bad[5].mode = 4;
    bad[6].endpointing_ms = 0;
    bad[7].endpointing_ms = 60001;
    bad[8].sample_rate = 22050;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_EQ_INT(vad_cfg_check(&bad[i]), ASR_EINVAL);
        ASSERT(vad_create(&bad[i]) == NULL);
        ASSERT_EQ_INT(vad_sizeof(&bad[i]), 0);
    }
}

TEST(vad_sizeof_is_small) {
    const struct vad_cfg c16 = {.sample_rate = 16000, .frame_ms = 30, .mode = 2,
                                .endpointing_ms = 300};
    const struct vad_cfg c48 = {.sample_rate = 48000, .frame_ms = 30, .mode = 2,
                                .endpointing_ms = 300};
    size_t s16 = vad_sizeof(&c16), s48 = vad_sizeof(&c48);
    printf("    vad_sizeof 16k/30ms = %zu, 48k/30ms = %zu\n", s16, s48);
    ASSERT_GE_INT(s16, 480 * 2);
    ASSERT_LE_INT(s16, 2048);
    ASSERT_LE_INT(s48, 4096);
    ASSERT_EQ_INT(s48 - s16, (1440 - 480) * 2);
}

TEST(vad_empty_feed_is_noop) {
    struct vad *v = mk(8000, 10, 0, 100);
    size_t got = 7;
    ASSERT_EQ_INT(vad_feed(v, NULL, 0, NULL, 0, &got), 0);
    ASSERT_EQ_INT(got, 0);
    ASSERT_EQ_INT(vad_samples(v), 0);
    vad_destroy(v);
    vad_destroy(NULL);
}
