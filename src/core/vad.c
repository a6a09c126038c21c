/* Voice activity detection and endpointing (vad.h; design note in
 * docs/internals/vad.md). */
#include "core/vad.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "base/err.h"

/* Debian's libwebrtc-audio-processing exports the WebRTC VAD C functions but
 * ships no C header for them, so the prototypes are declared here. Checked
 * against the 0.3 build in Debian 12 (nm -D; WebRtcVad_Create takes no
 * argument and returns the instance). WebRtcVad_Process returns 1 for speech,
 * 0 for silence and -1 on error (bad rate or frame length). */
void *WebRtcVad_Create(void);
int   WebRtcVad_Init(void *inst);
int   WebRtcVad_set_mode(void *inst, int mode);
int   WebRtcVad_Process(void *inst, int fs, const int16_t *audio_frame,
                        size_t frame_length);
void  WebRtcVad_Free(void *inst);

/* Energy pre-check. A frame whose mean absolute amplitude is below this many
 * s16 steps is called silence without running the classifier. 33/32768 is
 * about -60 dBFS (for a sine the mean absolute value is 0.64 of the peak, so
 * this is a peak near -56 dBFS); conversational speech sits around -20 to
 * -35 dBFS, so nothing a microphone records as speech is this quiet, while
 * digital silence, line noise and dither all are. It saves the WebRTC call
 * (the costliest step per frame) on the silence that makes up most of
 * thousands of idle-but-connected streams, and it stops WebRTC from calling
 * near-silent noise speech, which it does in its less aggressive modes. */
#define VAD_ENERGY_FLOOR_MEAN_ABS 33u

/* The longest 16 kHz frame (30 ms) behind the decimator's history, and
 * room for the vector loop's reads past the end (vad_decimate2). */
#define VAD_DECIM_BUF (VAD_DECIM_HIST + 480 + VAD_DECIM_PAD)

/* Upper bound for endpointing_ms: a minute of silence is long past any
 * sensible utterance end. */
#define VAD_MAX_ENDPOINTING_MS 60000u

/* Bytes WebRtcVad_Create mallocs for its instance (0x2e0 in Debian 12's
 * libwebrtc-audio-processing 0.3, read off its disassembly). Only used to
 * report vad_sizeof(); nothing depends on it being exact. */
#define VAD_WEBRTC_INST_BYTES 736u

struct vad {
    void    *inst;              /* owned; WebRtcVad_Create / WebRtcVad_Free */
    unsigned rate;              /* samples per second */
    unsigned frame_ms;          /* ms per frame: 10, 20 or 30 */
    unsigned frame_samples;     /* samples per frame (rate * frame_ms / 1000) */
    unsigned endpointing_ms;    /* ms of non-speech that end an utterance */
    unsigned rem_n;             /* samples held in rem[] (< frame_samples) */
    unsigned silence_ms;        /* ms of non-speech frames since the last speech
                                   frame of the open utterance */
    int      in_utt;            /* 1 between START and END */
    uint64_t samples;           /* samples fed so far, rem[] included */
    uint64_t utt_start_sample;  /* stream position of the open utterance's first
                                   speech frame */
    uint64_t last_speech_end;   /* stream position just after the last speech frame */
    uint64_t speech_ms_total;   /* ms of speech-classified frames since stream start */
    int16_t  hist[VAD_DECIM_HIST]; /* 16 kHz only: the samples before the next
                                      frame, the decimator's memory (zeros at start) */
    int16_t  rem[];             /* partial frame carried between vad_feed calls;
                                   frame_samples long, part of this allocation */
};

static uint64_t samples_to_ms(const struct vad *v, uint64_t samples) {
    return samples * 1000 / v->rate;
}

int vad_cfg_check(const struct vad_cfg *cfg) {
    if (!cfg) return ASR_EINVAL;
    switch (cfg->sample_rate) {
    case 8000: case 16000: case 32000: case 48000: break;
    default: return ASR_EINVAL;
    }
    if (cfg->frame_ms != 10 && cfg->frame_ms != 20 && cfg->frame_ms != 30)
        return ASR_EINVAL;
    if (cfg->mode < 0 || cfg->mode > 3) return ASR_EINVAL;
    if (cfg->endpointing_ms < 1 || cfg->endpointing_ms > VAD_MAX_ENDPOINTING_MS)
        return ASR_EINVAL;
    return 0;
}

static unsigned frame_samples_of(const struct vad_cfg *cfg) {
    return cfg->sample_rate / 1000 * cfg->frame_ms;
}

size_t vad_sizeof(const struct vad_cfg *cfg) {
    if (vad_cfg_check(cfg) != 0) return 0;
    return sizeof(struct vad) + frame_samples_of(cfg) * sizeof(int16_t)
           + VAD_WEBRTC_INST_BYTES;
}

struct vad *vad_create(const struct vad_cfg *cfg) {
    struct vad *v = NULL;

    if (vad_cfg_check(cfg) != 0) return NULL;
    unsigned fs = frame_samples_of(cfg);
    v = calloc(1, sizeof(*v) + fs * sizeof(int16_t));
    if (!v) goto fail;
    v->rate = cfg->sample_rate;
    v->frame_ms = cfg->frame_ms;
    v->frame_samples = fs;
    v->endpointing_ms = cfg->endpointing_ms;
    /* The 0.3 WebRtcVad_Create writes into its malloc result without a NULL
     * check, so an allocation failure there cannot be caught here. */
    v->inst = WebRtcVad_Create();
    if (!v->inst) goto fail;
    if (WebRtcVad_Init(v->inst) != 0) goto fail;
    if (WebRtcVad_set_mode(v->inst, cfg->mode) != 0) goto fail;
    return v;

fail:
    vad_destroy(v);
    return NULL;
}

void vad_destroy(struct vad *v) {
    if (!v) return;
    if (v->inst) WebRtcVad_Free(v->inst);
    free(v);
}

/* Halfband lowpass and decimation by 2 (16 -> 8 kHz), the step WebRTC's
 * 16 kHz entry point runs first (WebRtcVad_Downsampling, a recursive
 * all-pass pair: about 610 ns per 30 ms frame here, latency bound). This is
 * an 11-tap halfband FIR, taps (3, 0, -25, 0, 150, 256, 150, 0, -25, 0,
 * 3) / 512 (-1.7 dB at 3 kHz, -6 dB at 4 kHz, -32 dB at 6 kHz), so every output is
 * independent and eight are computed at once: about 105 ns per frame. What
 * it changes in the VAD's decisions was measured (docs/internals/vad.md).
 * y[k] = sum_j h[j] * e[2k + j + 1], rounded and saturated (vad.h). */
void vad_decimate2(const int16_t *e, int16_t *y, size_t n_out) {
    size_t k = 0;
#if defined(__SSE2__)
    /* Split e into its even and odd samples (the odd ones meet the side
     * taps, the even ones the centre tap), then multiply-add pairs. */
    int16_t ev[VAD_DECIM_BUF / 2 + 8], od[VAD_DECIM_BUF / 2 + 8];
    size_t n_in = VAD_DECIM_HIST + 2 * n_out; /* the filter reads e[0 .. n_in) */
    if (n_out % 8 == 0 && n_in <= VAD_DECIM_BUF - VAD_DECIM_PAD) {
        /* reads e[2m .. 2m + 16) for 2m < n_in: at most 16 past n_in */
        for (size_t m = 0; 2 * m < n_in; m += 8) {
            __m128i a = _mm_loadu_si128((const __m128i *)(e + 2 * m));
            __m128i b = _mm_loadu_si128((const __m128i *)(e + 2 * m + 8));
            __m128i ae = _mm_srai_epi32(_mm_slli_epi32(a, 16), 16);
            __m128i be = _mm_srai_epi32(_mm_slli_epi32(b, 16), 16);
            _mm_storeu_si128((__m128i *)(ev + m), _mm_packs_epi32(ae, be));
            _mm_storeu_si128((__m128i *)(od + m),
                             _mm_packs_epi32(_mm_srai_epi32(a, 16), _mm_srai_epi32(b, 16)));
        }
        const __m128i c3 = _mm_set1_epi16(3), c25 = _mm_set1_epi16(-25);
        const __m128i c150 = _mm_set1_epi16(150), c256 = _mm_set1_epi32(256);
        const __m128i rnd = _mm_set1_epi32(256), z = _mm_setzero_si128();
        for (; k < n_out; k += 8) {
            __m128i o0 = _mm_loadu_si128((const __m128i *)(od + k));
            __m128i o1 = _mm_loadu_si128((const __m128i *)(od + k + 1));
            __m128i o2 = _mm_loadu_si128((const __m128i *)(od + k + 2));
            __m128i o3 = _mm_loadu_si128((const __m128i *)(od + k + 3));
            __m128i o4 = _mm_loadu_si128((const __m128i *)(od + k + 4));
            __m128i o5 = _mm_loadu_si128((const __m128i *)(od + k + 5));
            __m128i v3 = _mm_loadu_si128((const __m128i *)(ev + k + 3));
            __m128i lo = _mm_add_epi32(
                _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(o0, o5), c3),
                              _mm_madd_epi16(_mm_unpacklo_epi16(o1, o4), c25)),
                _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(o2, o3), c150),
                              _mm_madd_epi16(_mm_unpacklo_epi16(v3, z), c256)));
            __m128i hi = _mm_add_epi32(
                _mm_add_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(o0, o5), c3),
                              _mm_madd_epi16(_mm_unpackhi_epi16(o1, o4), c25)),
                _mm_add_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(o2, o3), c150),
                              _mm_madd_epi16(_mm_unpackhi_epi16(v3, z), c256)));
            lo = _mm_srai_epi32(_mm_add_epi32(lo, rnd), 9);
            hi = _mm_srai_epi32(_mm_add_epi32(hi, rnd), 9);
            _mm_storeu_si128((__m128i *)(y + k), _mm_packs_epi32(lo, hi));
        }
    }
#endif
    for (; k < n_out; k++) {
        const int16_t *p = e + 2 * k;
        int32_t acc = 256 * p[6] + 150 * (p[5] + p[7]) - 25 * (p[3] + p[9]) + 3 * (p[1] + p[11]);
        acc = (acc + 256) >> 9;
        y[k] = (int16_t)(acc > 32767 ? 32767 : acc < -32768 ? -32768 : acc);
    }
}

/* 1 if the frame is speech. Frames under the energy floor are silence without
 * asking WebRTC; so is a classifier error, which cannot happen with the rate
 * and length vad_cfg_check() allowed. */
static int classify(struct vad *v, const int16_t *frame) {
    /* Blocks of 16 (frame_samples is a multiple of 80) give the compiler a
     * fixed-length inner loop it vectorizes at -O2. */
    uint32_t sum = 0;   /* at most 1440 * 32768, fits */
    for (size_t i = 0; i < v->frame_samples; i += 16) {
        const int16_t *p = frame + i;
        int32_t acc = 0;
        for (size_t j = 0; j < 16; j++) {
            int32_t s = p[j];
            acc += s < 0 ? -s : s;
        }
        sum += (uint32_t)acc;
    }
    int gated = sum < VAD_ENERGY_FLOOR_MEAN_ABS * v->frame_samples;
    /* -DVAD_LIBRARY_DOWNSAMPLER builds the old path (WebRTC's own 16 kHz
     * entry point) for comparisons like the one in docs/internals/vad.md. */
#ifndef VAD_LIBRARY_DOWNSAMPLER
    if (v->rate == 16000) {
        /* WebRTC's 16 kHz entry point is its 8 kHz classifier behind its
         * own decimator; ours is cheaper (vad_decimate2). Its memory is
         * kept across gated frames too. */
        int16_t e[VAD_DECIM_BUF], y[240];
        size_t n = v->frame_samples;
        if (!gated) {
            memcpy(e, v->hist, sizeof v->hist);
            memcpy(e + VAD_DECIM_HIST, frame, n * sizeof(int16_t));
            memset(e + VAD_DECIM_HIST + n, 0, VAD_DECIM_PAD * sizeof(int16_t));
        }
        memcpy(v->hist, frame + n - VAD_DECIM_HIST, sizeof v->hist);
        if (gated) return 0;
        vad_decimate2(e, y, n / 2);
        return WebRtcVad_Process(v->inst, 8000, y, n / 2) == 1;
    }
#endif
    if (gated) return 0;
    return WebRtcVad_Process(v->inst, (int)v->rate, frame, v->frame_samples) == 1;
}

/* Runs one complete frame that starts at stream position start (v->samples
 * already counts it). Writes at most one event to *ev; returns 1 if it did. */
static int step(struct vad *v, const int16_t *frame, uint64_t start,
                struct vad_event *ev) {
    uint64_t end = start + v->frame_samples;

    if (classify(v, frame)) {
        v->speech_ms_total += v->frame_ms;
        v->last_speech_end = end;
        v->silence_ms = 0;
        if (v->in_utt) return 0;
        v->in_utt = 1;
        v->utt_start_sample = start;
        ev->type = VAD_SPEECH_START;
        ev->at_sample = end;
        ev->offset_ms = samples_to_ms(v, start);
        ev->speech_ms_total = v->speech_ms_total;
        return 1;
    }
    if (!v->in_utt) return 0;
    v->silence_ms += v->frame_ms;
    if (v->silence_ms < v->endpointing_ms) return 0;
    v->in_utt = 0;
    v->silence_ms = 0;
    ev->type = VAD_SPEECH_END;
    ev->at_sample = end;
    ev->offset_ms = samples_to_ms(v, v->last_speech_end);
    ev->speech_ms_total = v->speech_ms_total;
    return 1;
}

/* Frames are cut from the stream, not from the chunk: the first frame of a
 * call completes rem[] when it holds a partial frame, the following ones are
 * read in place from pcm, and what is left at the end is copied into rem[].
 * When ev[] is full and input is left, the call stops right after the frame
 * that filled it (at once when cap is 0) and returns ASR_EAGAIN; the growth
 * of vad_samples() tells how much was taken, and the caller feeds the rest
 * again with room for events. */
int vad_feed(struct vad *v, const int16_t *pcm, size_t n,
             struct vad_event *ev, size_t cap, size_t *n_ev) {
    size_t got = 0;
    size_t i = 0;

    *n_ev = 0;
    if (n > 0 && !pcm) return ASR_EINVAL;
    while (i < n) {
        if (got == cap) {
            *n_ev = got;
            return ASR_EAGAIN;
        }

        const int16_t *frame;
        if (v->rem_n > 0 || n - i < v->frame_samples) {
            size_t take = v->frame_samples - v->rem_n;
            if (take > n - i) take = n - i;
            memcpy(v->rem + v->rem_n, pcm + i, take * sizeof(int16_t));
            v->rem_n += (unsigned)take;
            v->samples += take;
            i += take;
            if (v->rem_n < v->frame_samples) break;
            v->rem_n = 0;
            frame = v->rem;
        } else {
            frame = pcm + i;
            v->samples += v->frame_samples;
            i += v->frame_samples;
        }
        if (step(v, frame, v->samples - v->frame_samples, &ev[got])) got++;
    }
    *n_ev = got;
    return 0;
}

int vad_end_utterance(struct vad *v, struct vad_event *ev) {
    if (!v->in_utt) return 0;
    v->in_utt = 0;
    v->silence_ms = 0;
    ev->type = VAD_SPEECH_END;
    ev->at_sample = v->samples;
    ev->offset_ms = samples_to_ms(v, v->last_speech_end);
    ev->speech_ms_total = v->speech_ms_total;
    return 1;
}

int vad_in_utterance(const struct vad *v) { return v->in_utt; }

uint64_t vad_utterance_start_ms(const struct vad *v) {
    return samples_to_ms(v, v->utt_start_sample);
}

uint64_t vad_samples(const struct vad *v) { return v->samples; }

uint64_t vad_offset_ms(const struct vad *v) { return samples_to_ms(v, v->samples); }

uint64_t vad_speech_ms_total(const struct vad *v) { return v->speech_ms_total; }

void vad_restore(struct vad *v, uint64_t samples, int in_utt, uint64_t utt_start_ms,
                 unsigned silence_ms, uint64_t last_speech_end_ms) {
    v->samples = samples;
    v->rem_n = 0;
    memset(v->hist, 0, sizeof v->hist); /* the audio before samples is not here */
    v->in_utt = in_utt ? 1 : 0;
    v->silence_ms = in_utt ? silence_ms : 0;
    v->utt_start_sample = utt_start_ms * v->rate / 1000;
    if (v->utt_start_sample > samples) v->utt_start_sample = samples;
    v->last_speech_end = last_speech_end_ms * v->rate / 1000;
    if (v->last_speech_end > samples || !in_utt) v->last_speech_end = samples;
}

unsigned vad_silence_ms(const struct vad *v) { return v->silence_ms; }
uint64_t vad_last_speech_end_ms(const struct vad *v) { return v->last_speech_end * 1000 / v->rate; }
