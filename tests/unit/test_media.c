/* Unit tests for src/core/media.c (libavformat/libavcodec behind
 * audio_decode): the containers browsers and phones upload, made by
 * Debian's ffmpeg from espeak-ng speech (the fuzz_media seeds,
 * tests/fuzz/corpus/media, written by tests/fuzz/gen_corpus.py: 0.3 s of
 * speech after one flags byte), sniffing, the time budget, the output
 * bound, and broken files. Run from the repository root. */
#include "test.h"

#include <math.h>
#include <stdint.h>

#include "base/err.h"
#include "core/audio.h"
#include "core/media.h"

#define SEEDS "tests/fuzz/corpus/media/"

/* The seed's bytes without its flags byte. Caller frees. */
static uint8_t *seed(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, SEEDS "%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) TEST_FAIL_("cannot open %s (run from the repository root)", path);
    uint8_t *b = malloc(1 << 20);
    ASSERT(b);
    size_t n = fread(b, 1, 1 << 20, f);
    fclose(f);
    ASSERT(n > 1);
    memmove(b, b + 1, n - 1);
    *len = n - 1;
    return b;
}

static double rms(const struct audio_pcm *p) {
    double s = 0;
    for (size_t i = 0; i < p->n; i++) s += (double)p->samples[i] * p->samples[i];
    return p->n ? sqrt(s / (double)p->n) : 0;
}

/* Each container decodes through audio_decode (sniffed, and with the type a
 * browser would send) to about its 0.3 s (0.15 s, 0.1 s) of speech. */
TEST(media_containers_decode_to_speech) {
    static const struct { const char *name, *type; unsigned ms; } cases[] = {
        {"webm_opus_48k.webm", "audio/webm;codecs=opus", 300},
        {"mkv_vorbis_stereo.mka", NULL, 300},
        {"m4a_aac_16k.m4a", "audio/mp4", 300},
        {"mp4_aac_44k_stereo.mp4", "audio/x-m4a", 150},
        {"adts_aac_16k.aac", "audio/aac", 300},
        {"ogg_flac_16k.oga", "audio/ogg", 100},
        {"3gp_aac_8k.3gp", "application/octet-stream", 300},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *b = seed(cases[i].name, &n);
        for (int typed = 0; typed < 2; typed++) {
            struct audio_pcm out;
            char err[160];
            int rc = audio_decode(b, n, typed ? cases[i].type : NULL, 16000, 16000 * 60, &out, err, sizeof err);
            if (rc != 0) TEST_FAIL_("%s: rc %d: %s", cases[i].name, rc, err);
            ASSERT_EQ_INT(out.rate, 16000);
            /* Encoders add priming and padding (AAC: 1024 samples at the
             * stream's rate, Opus: 312 at 48 kHz): within 100 ms. */
            long want = (long)cases[i].ms * 16;
            if (labs((long)out.n - want) > 1600) TEST_FAIL_("%s: %zu samples, want about %ld", cases[i].name, out.n, want);
            if (rms(&out) < 100) TEST_FAIL_("%s: rms %.1f: no speech came out", cases[i].name, rms(&out));
            audio_pcm_cleanup(&out);
        }
        free(b);
    }
}

TEST(media_resamples_to_the_target_rate) {
    size_t n;
    uint8_t *b = seed("webm_opus_48k.webm", &n);
    struct audio_pcm out;
    char err[160];
    ASSERT_EQ_INT(audio_decode(b, n, NULL, 8000, 8000 * 60, &out, err, sizeof err), 0);
    ASSERT_EQ_INT(out.rate, 8000);
    ASSERT(labs((long)out.n - 2400) <= 800);
    audio_pcm_cleanup(&out);
    free(b);
}

TEST(media_sniff_table) {
    static const uint8_t ebml[] = {0x1a, 0x45, 0xdf, 0xa3, 0, 0, 0, 0};
    static const uint8_t mp4[] = {0, 0, 0, 0x20, 'f', 't', 'y', 'p', 'M', '4', 'A', ' '};
    static const uint8_t adts[] = {0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc};
    static const uint8_t mp3[] = {0xff, 0xfb, 0x90, 0x64, 0, 0, 0};  /* layer III: not ADTS */
    ASSERT_EQ_INT(media_sniff(ebml, sizeof ebml), MEDIA_MATROSKA);
    ASSERT_EQ_INT(media_sniff(mp4, sizeof mp4), MEDIA_MP4);
    ASSERT_EQ_INT(media_sniff(adts, sizeof adts), MEDIA_ADTS);
    ASSERT_EQ_INT(media_sniff((const uint8_t *)"OggS", 4), MEDIA_OGG);
    ASSERT_EQ_INT(media_sniff(mp3, sizeof mp3), MEDIA_NONE);
    ASSERT_EQ_INT(media_sniff(ebml, 3), MEDIA_NONE);
    ASSERT_EQ_INT(media_sniff((const uint8_t *)"RIFF", 4), MEDIA_NONE);
}

/* The output bound is the caller's: past max_samples the decode stops with
 * ASR_E_TOO_LARGE, and nothing is handed out. */
TEST(media_max_samples_is_too_large) {
    size_t n;
    uint8_t *b = seed("m4a_aac_16k.m4a", &n);
    struct audio_pcm out;
    char err[160];
    ASSERT_EQ_INT(audio_decode(b, n, NULL, 16000, 1000, &out, err, sizeof err), ASR_E_TOO_LARGE);
    ASSERT(out.samples == NULL && out.n == 0);
    ASSERT(strstr(err, "longer than") != NULL);
    free(b);
}

static int count_start(void *ctx, unsigned rate) { return 0; }
static int count_block(void *ctx, const float *x, size_t n) {
    *(size_t *)ctx += n;
    return 0;
}

/* A budget of 0 ms ends the decode before the first packet. */
TEST(media_time_budget) {
    size_t n, got = 0;
    uint8_t *b = seed("webm_opus_48k.webm", &n);
    char err[160];
    ASSERT_EQ_INT(media_decode(b, n, 0, count_start, count_block, &got, err, sizeof err), ASR_E_INVALID_AUDIO);
    ASSERT(strstr(err, "took longer") != NULL);
    got = 0;
    ASSERT_EQ_INT(media_decode(b, n, 10000, count_start, count_block, &got, err, sizeof err), 0);
    ASSERT(got > 10000); /* 0.3 s at 48 kHz */
    free(b);
}

/* A callback's error ends the decode with that error. */
static int refuse_block(void *ctx, const float *x, size_t n) { return ASR_E_TOO_LARGE; }
static int refuse_start(void *ctx, unsigned rate) { return ASR_ENOMEM; }

TEST(media_callback_errors_end_the_decode) {
    size_t n, got = 0;
    uint8_t *b = seed("adts_aac_16k.aac", &n);
    char err[160];
    ASSERT_EQ_INT(media_decode(b, n, 10000, count_start, refuse_block, &got, err, sizeof err), ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(media_decode(b, n, 10000, refuse_start, count_block, &got, err, sizeof err), ASR_ENOMEM);
    ASSERT_EQ_INT(got, 0);
    free(b);
}

/* Cut-off uploads keep what decoded; a header alone, or a magic number
 * followed by garbage, is refused with a message. */
TEST(media_truncated_and_broken) {
    size_t n;
    struct audio_pcm out;
    char err[160];
    uint8_t *b = seed("webm_opus_48k.webm", &n);
    ASSERT_EQ_INT(audio_decode(b, n * 2 / 3, NULL, 16000, 16000 * 60, &out, err, sizeof err), 0);
    ASSERT(out.n > 0 && out.n < 4800);
    audio_pcm_cleanup(&out);
    int rc = audio_decode(b, 40, NULL, 16000, 16000 * 60, &out, err, sizeof err);
    ASSERT(rc == ASR_E_NOT_AUDIO || rc == ASR_E_INVALID_AUDIO);
    ASSERT(err[0] != '\0');
    ASSERT(out.samples == NULL);
    free(b);

    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 7);
    static const uint8_t *const magic[] = {(const uint8_t *)"\x1a\x45\xdf\xa3",
                                           (const uint8_t *)"\0\0\0\x18" "ftypmp42",
                                           (const uint8_t *)"\xff\xf1\x50\x80"};
    static const size_t magic_n[] = {4, 12, 4};
    for (int k = 0; k < 3; k++) {
        memcpy(junk, magic[k], magic_n[k]);
        rc = audio_decode(junk, sizeof junk, NULL, 16000, 16000 * 60, &out, err, sizeof err);
        if (rc != ASR_E_NOT_AUDIO && rc != ASR_E_INVALID_AUDIO) TEST_FAIL_("magic %d: rc %d (%s)", k, rc, err);
        ASSERT(err[0] != '\0');
        ASSERT(out.samples == NULL && out.n == 0);
    }
}


