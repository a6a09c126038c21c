/* fuzz_audio: audio_decode() and the block decoder behind it
 * (audio_decoder_open/read/input, src/core/audio.h): Content-Type parsing,
 * sniffing, libsndfile over memory (WAV/RF64, FLAC, Ogg Vorbis/Opus, MP3),
 * the RIFF chunk walk of the input report, raw PCM (audio/pcm, audio/L16,
 * channels), mixing to mono and soxr resampling; plus audio_resample().
 *
 * Input: two flags bytes, then the body.
 * byte 0: the Content-Type, an index into TYPES below; 0xff = the type is
 *         the body's first line (up to '\n', at most 200 bytes), the rest is
 *         the body.
 * byte 1: bits 0-1 target rate (16000 as REST uses, 8000, 48000, 22050);
 *         bit 2 max_samples one second instead of one minute;
 *         bit 3 audio_resample() mode: the body is s16 samples, bits 4-6
 *         choose the input rate from RATES;
 *         otherwise bits 4-6, when not 0, also decode the body block by
 *         block (audio_decoder_read) in blocks of BLOCKS[bits - 1] samples.
 * max_samples: REST allows one hour at 16 kHz; the fuzzer uses one minute so
 * that an input cannot spend seconds resampling an hour of silence (the
 * limit logic is the same code either way).
 *
 * Checks beyond the sanitizers: the return code is one audio_decode()
 * documents; on success the rate is the target, at most max_samples
 * samples, every sample readable; on failure *out is zeroed and errbuf
 * holds a message. Raw PCM at the target rate has an exact oracle: mono
 * comes back unchanged (little- or big-endian as declared), two channels
 * come back as their average rounded to nearest-even. Block by block gives
 * the same samples, or fails with the same code, as the whole decode; the
 * input report is consistent (a truncated file states a length, more than
 * was decoded for FLAC; trailing bytes within the body; raw PCM states
 * nothing and has nothing trailing; frames decoded whenever samples came). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/audio.h"
#include "common.h"
#include "base/err.h"

static const char *const TYPES[] = {
    NULL,
    "audio/wav",
    "audio/x-wav",
    "audio/flac",
    "audio/ogg",
    "audio/mpeg",
    "application/octet-stream",
    "audio/pcm; rate=16000",
    "audio/pcm; rate=16000; channels=2",
    "audio/L16; rate=16000",
    "audio/L16; rate=44100; channels=2",
    "audio/pcm;rate=\"8000\"",
    "audio/pcm; rate=384000; channels=3",
    "audio/pcm; rate=1000",
    "text/plain",
    "audio/wav; codecs=1",
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const unsigned TARGETS[] = {16000, 8000, 48000, 22050};
static const unsigned RATES[] = {16000, 8000, 22050, 44100, 48000, 1000, 384000, 11025};
static const size_t BLOCKS[] = {1, 7, 160, 1000, 4096, 16000, 65536};

static void fail(const char *what, int rc) { fuzz_fail("fuzz_audio: %s (rc %d)", what, rc); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_common_init();
    return 0;
}

static int16_t le16(const uint8_t *p) { return (int16_t)(uint16_t)(p[0] | p[1] << 8); }
static int16_t be16(const uint8_t *p) { return (int16_t)(uint16_t)(p[0] << 8 | p[1]); }

static volatile int64_t sink_; /* keeps the sample reads */

static void read_all(const struct audio_pcm *pcm) {
    int64_t s = 0;
    for (size_t i = 0; i < pcm->n; i++) s += pcm->samples[i];
    sink_ = s;
}

/* Decodes body in blocks of `block` samples and compares with the whole
 * decode (rc_whole, whole); checks the input report. */
static void check_blocks(const uint8_t *body, size_t size, const char *type, unsigned target, size_t max_samples,
                         size_t block, int rc_whole, const struct audio_pcm *whole, int raw) {
    struct audio_decoder *d;
    char err[160];
    int rc = audio_decoder_open(body, size, type, target, max_samples, &d, err, sizeof err);
    if (rc != 0) {
        if (d) fail("decoder: open failed but gave a decoder", rc);
        if (rc != rc_whole) fail("decoder: open fails unlike audio_decode", rc);
        return;
    }
    int16_t *buf = malloc(block * sizeof *buf);
    size_t n = 0;
    for (;;) {
        size_t got;
        rc = audio_decoder_read(d, buf, block, &got, err, sizeof err);
        if (rc != 0) {
            if (got) fail("decoder: samples with an error", rc);
            break;
        }
        if (got > block) fail("decoder: more than asked", rc);
        if (rc_whole == 0 && (n + got > whole->n || (got && memcmp(buf, whole->samples + n, got * 2) != 0)))
            fail("decoder: blocks differ from the whole decode", rc);
        n += got;
        if (got < block) break;
    }
    if (rc != rc_whole) fail("decoder: ends unlike audio_decode", rc);
    if (rc == 0) {
        if (n != whole->n) fail("decoder: a different length than audio_decode", rc);
        size_t again;
        if (audio_decoder_read(d, buf, block, &again, err, sizeof err) != 0 || again) fail("decoder: more after the end", rc);
        struct audio_input in;
        audio_decoder_input(d, &in);
        if (n && !in.decoded_frames) fail("input: samples but no frames decoded", rc);
        if (in.truncated && !in.declared_frames) fail("input: truncated without a stated length", rc);
        if (in.trailing_bytes > size) fail("input: more trailing bytes than the body", rc);
        if (raw && (in.declared_frames || in.truncated || in.trailing_bytes)) fail("input: raw PCM states something", rc);
        if (!raw && body[0] == 'f' && in.truncated && in.declared_frames <= in.decoded_frames)
            fail("input: a truncated FLAC decoded all it states", rc);
    }
    free(buf);
    audio_decoder_close(d);
}

static void check_resample(const uint8_t *d, size_t n, unsigned in_rate, unsigned out_rate) {
    size_t ns = n / 2;
    int16_t *in = ns ? malloc(ns * sizeof *in) : NULL;
    for (size_t i = 0; i < ns; i++) in[i] = le16(d + 2 * i);
    struct audio_pcm out;
    int rc = audio_resample(in, ns, in_rate, out_rate, &out);
    if (rc != 0) fail("audio_resample failed", rc);
    if (out.rate != out_rate) fail("audio_resample: wrong rate", rc);
    double want = (double)ns * out_rate / in_rate;
    if (fabs((double)out.n - want) > 2 + want * 0.01) fail("audio_resample: length far from n * out / in", rc);
    if (in_rate == out_rate && (out.n != ns || (ns && memcmp(out.samples, in, ns * 2) != 0)))
        fail("audio_resample: same rate is not a copy", rc);
    read_all(&out);
    audio_pcm_cleanup(&out);
    free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t t = data[0], f = data[1];
    data += 2;
    size -= 2;
    unsigned target = TARGETS[f & 3];
    size_t max_samples = (f & 4) ? 16000 : 16000 * 60;
    if (f & 8) {
        check_resample(data, size, RATES[(f >> 4) & 7], target);
        return 0;
    }
    char ct[201];
    const char *type;
    if (t == 0xff) {
        const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
        size_t l = nl ? (size_t)(nl - data) : (size < 200 ? size : 200);
        memcpy(ct, data, l);
        ct[l] = '\0';
        type = ct;
        data += nl ? l + 1 : l;
        size -= nl ? l + 1 : l;
    } else {
        type = TYPES[t % N_TYPES];
    }

    struct audio_pcm out;
    char err[160];
    memset(err, 'x', sizeof err);
    /* A fresh copy: an empty body is a NULL-free zero-length buffer, and
     * ASan sees any read past the body. */
    uint8_t *body = malloc(size ? size : 1);
    memcpy(body, data, size);
    int rc = audio_decode(body, size, type, target, max_samples, &out, err, sizeof err);
    if (memchr(err, '\0', sizeof err) == NULL) fail("errbuf not terminated", rc);
    switch (rc) {
    case 0:
        if (out.rate != target) fail("wrong output rate", rc);
        if (out.n > max_samples) fail("more than max_samples", rc);
        if (out.n && !out.samples) fail("samples missing", rc);
        read_all(&out);
        break;
    case ASR_E_BAD_REQUEST: case ASR_E_INVALID_AUDIO: case ASR_E_NOT_AUDIO: case ASR_E_TOO_LARGE:
    case ASR_ENOMEM: case ASR_E_INTERNAL:
        if (out.samples || out.n || out.rate) fail("*out not zeroed on error", rc);
        if (!err[0]) fail("no error message", rc);
        break;
    default:
        fail("undocumented return code", rc);
    }

    /* Exact oracle for raw PCM at the target rate. */
    if (rc == 0 && target == 16000 && type && (t == 7 || t == 8 || t == 9)) {
        size_t ch = t == 8 ? 2 : 1, frames = size / (2 * ch);
        if (out.n != frames) fail("raw PCM: sample count changed", rc);
        for (size_t i = 0; i < frames; i++) {
            const uint8_t *p = body + i * 2 * ch;
            int want;
            if (t == 9) want = be16(p);
            else if (ch == 1) want = le16(p);
            else want = (int)lrint(((double)le16(p) + le16(p + 2)) / 2.0);
            if (out.samples[i] != want) fail("raw PCM: sample changed", rc);
        }
    }
    unsigned bsel = (f >> 4) & 7;
    if (bsel) {
        unsigned ti = t % N_TYPES;
        int raw = t != 0xff && ti >= 7 && ti <= 13; /* the audio/pcm and audio/L16 rows of TYPES */
        check_blocks(body, size, type, target, max_samples, BLOCKS[bsel - 1], rc, &out, raw);
    }
    audio_pcm_cleanup(&out);
    free(body);
    return 0;
}
