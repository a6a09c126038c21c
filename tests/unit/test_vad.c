/* Unit tests for src/vad.c: framing, remainder carrying, energy pre-check,
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

#include "err.h"
#include "vad.h"

/* Counts calls into the WebRTC classifier: this definition interposes the
 * library's, and forwards to it. */
static unsigned long webrtc_calls;

int WebRtcVad_Process(void *inst, int fs, const int16_t *frame, size_t len) {
    static int (*real)(void *, int, const int16_t *, size_t);
    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "WebRtcVad_Process");
        if (!real) TEST_FAIL_("dlsym WebRtcVad_Process: %s", dlerror());
    }
    webrtc_calls++;
    return real(inst, fs, frame, len);
}

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
    ASSERT_EQ_INT(ev[3].speech_ms_total, 1200);
    vad_destroy(v);
    free(a);
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
