/* Unit tests for src/core/audio.c: containers built in memory at test time with
 * libsndfile's virtual I/O or by hand, raw PCM byte orders, media types,
 * sniffing, limits and hostile headers. */
#include "test.h"

#include <math.h>
#include <stdint.h>

#include <sndfile.h>

#include "core/audio.h"
#include "base/err.h"

/* ---- an in-memory file libsndfile can write ---------------------------- */

struct wbuf {
    uint8_t   *p;    /* owned; realloc'd */
    sf_count_t len;  /* bytes written (file length) */
    sf_count_t cap;  /* bytes allocated */
    sf_count_t pos;  /* current position */
};

static sf_count_t wb_len(void *u) { return ((struct wbuf *)u)->len; }
static sf_count_t wb_tell(void *u) { return ((struct wbuf *)u)->pos; }

static sf_count_t wb_seek(sf_count_t off, int whence, void *u) {
    struct wbuf *b = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? b->pos : b->len;
    if (base + off < 0) return -1;
    b->pos = base + off;
    return b->pos;
}

static sf_count_t wb_read(void *ptr, sf_count_t n, void *u) {
    struct wbuf *b = u;
    if (b->pos >= b->len) return 0;
    if (n > b->len - b->pos) n = b->len - b->pos;
    memcpy(ptr, b->p + b->pos, (size_t)n);
    b->pos += n;
    return n;
}

static sf_count_t wb_write(const void *ptr, sf_count_t n, void *u) {
    struct wbuf *b = u;
    if (b->pos + n > b->cap) {
        sf_count_t cap = b->cap ? b->cap : 4096;
        while (cap < b->pos + n) cap *= 2;
        uint8_t *np = realloc(b->p, (size_t)cap);
        ASSERT(np != NULL);
        memset(np + b->cap, 0, (size_t)(cap - b->cap));
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->pos, ptr, (size_t)n);
    b->pos += n;
    if (b->pos > b->len) b->len = b->pos;
    return n;
}

/* Encodes frames of interleaved float audio into a file of the given
 * libsndfile format; returns the bytes (caller frees), length in *len. */
static uint8_t *encode(int format, int channels, int rate, const float *x,
                       size_t frames, size_t *len) {
    SF_VIRTUAL_IO vio = {wb_len, wb_seek, wb_read, wb_write, wb_tell};
    struct wbuf b = {0};
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE *sf = sf_open_virtual(&vio, SFM_WRITE, &info, &b);
    if (!sf) TEST_FAIL_("sf_open_virtual write %x: %s", format, sf_strerror(NULL));
    ASSERT_EQ_INT(sf_writef_float(sf, x, (sf_count_t)frames), frames);
    ASSERT_EQ_INT(sf_close(sf), 0);
    *len = (size_t)b.len;
    return b.p;
}

/* frames of a sine at freq Hz, amplitude amp, in channel ch of nch (others 0). */
static float *sine(unsigned rate, size_t frames, double freq, double amp,
                   int nch, int ch_mask) {
    float *x = calloc(frames * (size_t)nch, sizeof(float));
    ASSERT(x != NULL);
    for (size_t i = 0; i < frames; i++)
        for (int c = 0; c < nch; c++)
            if (ch_mask & (1 << c))
                x[i * (size_t)nch + (size_t)c] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate));
    return x;
}

/* Sign changes in s[from..to). */
static int zero_crossings(const int16_t *s, size_t from, size_t to) {
    int n = 0, prev = 0;
    for (size_t i = from; i < to; i++) {
        int sign = s[i] > 0 ? 1 : s[i] < 0 ? -1 : 0;
        if (sign && prev && sign != prev) n++;
        if (sign) prev = sign;
    }
    return n;
}

static int peak(const int16_t *s, size_t from, size_t to) {
    int p = 0;
    for (size_t i = from; i < to; i++) {
        int a = s[i] < 0 ? -s[i] : s[i];
        if (a > p) p = a;
    }
    return p;
}

/* A canonical 44-byte-header s16 WAV, header fields as given. Caller frees. */
static uint8_t *wav_s16(const int16_t *x, uint32_t frames, uint16_t channels,
                        uint32_t rate, uint32_t riff_size, uint32_t data_size,
                        size_t *len) {
    size_t body = (size_t)frames * channels * 2;
    uint8_t *b = malloc(44 + body);
    ASSERT(b != NULL);
    uint32_t byte_rate = rate * channels * 2;
    uint16_t align = (uint16_t)(channels * 2), bits = 16, pcm = 1;
    uint32_t fmt_size = 16;
#define PUT32(off, v) do { uint32_t v_ = (v); for (int k_ = 0; k_ < 4; k_++) b[(off) + k_] = (uint8_t)(v_ >> (8 * k_)); } while (0)
#define PUT16(off, v) do { uint16_t v_ = (v); b[(off)] = (uint8_t)v_; b[(off) + 1] = (uint8_t)(v_ >> 8); } while (0)
    memcpy(b, "RIFF", 4);
    PUT32(4, riff_size);
    memcpy(b + 8, "WAVEfmt ", 8);
    PUT32(16, fmt_size);
    PUT16(20, pcm);
    PUT16(22, channels);
    PUT32(24, rate);
    PUT32(28, byte_rate);
    PUT16(32, align);
    PUT16(34, bits);
    memcpy(b + 36, "data", 4);
    PUT32(40, data_size);
    for (size_t i = 0; i < (size_t)frames * channels; i++)
        PUT16(44 + 2 * i, (uint16_t)x[i]);
#undef PUT32
#undef PUT16
    *len = 44 + body;
    return b;
}

static int decode(const void *d, size_t len, const char *ct, unsigned rate,
                  size_t max, struct audio_pcm *out) {
    char err[200];
    int rc = audio_decode(d, len, ct, rate, max, out, err, sizeof(err));
    if (rc != 0) {
        ASSERT(err[0] != '\0');           /* every error explains itself */
        ASSERT(out->samples == NULL && out->n == 0);
    }
    return rc;
}

#define BIG ((size_t)1 << 26)

/* ---- containers -------------------------------------------------------- */

TEST(audio_wav_44k_stereo_mixes_and_resamples) {
    size_t len;
    /* Left 440 Hz at 0.8, right silent: the mono mix is 440 Hz at 0.4. */
    float *x = sine(44100, 44100, 440, 0.8, 2, 1);
    uint8_t *wav = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2, 44100, x, 44100, &len);
    struct audio_pcm pcm;
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 16000, BIG, &pcm), 0);
    ASSERT_EQ_INT(pcm.rate, 16000);
    ASSERT_NEAR((double)pcm.n, 16000, 2);
    ASSERT_NEAR(zero_crossings(pcm.samples, 1000, 15000), 2 * 440 * 14000 / 16000.0, 3);
    ASSERT_NEAR(peak(pcm.samples, 1000, 15000), 0.4 * 32768, 0.02 * 32768);
    audio_pcm_cleanup(&pcm);
    ASSERT(pcm.samples == NULL && pcm.n == 0);
    free(wav);
    free(x);
}

TEST(audio_wav_8k_mono_upsamples) {
    size_t len;
    float *x = sine(8000, 8000, 440, 0.5, 1, 1);
    uint8_t *wav = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 8000, x, 8000, &len);
    struct audio_pcm pcm;
    ASSERT_EQ_INT(decode(wav, len, "audio/x-wav", 16000, BIG, &pcm), 0);
    ASSERT_NEAR((double)pcm.n, 16000, 2);
    ASSERT_NEAR(zero_crossings(pcm.samples, 1000, 15000), 2 * 440 * 14000 / 16000.0, 3);
    ASSERT_NEAR(peak(pcm.samples, 1000, 15000), 0.5 * 32768, 0.02 * 32768);
    audio_pcm_cleanup(&pcm);
    free(wav);
    free(x);
}

TEST(audio_float_wav_48k_and_same_rate) {
    size_t len;
    float *x = sine(48000, 48000, 1000, 0.25, 1, 1);
    uint8_t *wav = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 1, 48000, x, 48000, &len);
    struct audio_pcm pcm;
    ASSERT_EQ_INT(decode(wav, len, NULL, 16000, BIG, &pcm), 0);
    ASSERT_NEAR((double)pcm.n, 16000, 2);
    ASSERT_NEAR(zero_crossings(pcm.samples, 1000, 15000), 2 * 1000 * 14000 / 16000.0, 3);
    ASSERT_NEAR(peak(pcm.samples, 1000, 15000), 0.25 * 32768, 0.02 * 32768);
    audio_pcm_cleanup(&pcm);
    /* No resampling at 48 kHz: the samples come back as they went in. */
    ASSERT_EQ_INT(decode(wav, len, "audio/wave", 48000, BIG, &pcm), 0);
    ASSERT_EQ_INT(pcm.n, 48000);
    for (size_t i = 0; i < 48000; i += 997)
        ASSERT_NEAR(pcm.samples[i], x[i] * 32768.0, 1);
    audio_pcm_cleanup(&pcm);
    free(wav);
    free(x);
}

/* Float files may hold values past full scale, infinities and NaN. */
TEST(audio_float_wav_extreme_values_are_clamped) {
    size_t len;
    float x[4000];
    for (int i = 0; i < 4000; i++) x[i] = (i % 4 == 0) ? 5.0f : (i % 4 == 1) ? -INFINITY
                                          : (i % 4 == 2) ? NAN : -3.0f;
    uint8_t *wav = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 1, 8000, x, 4000, &len);
    struct audio_pcm pcm;
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 8000, BIG, &pcm), 0);
    ASSERT_EQ_INT(pcm.n, 4000);
    ASSERT_EQ_INT(pcm.samples[0], 32767);
    ASSERT_EQ_INT(pcm.samples[1], -32768);
    ASSERT_EQ_INT(pcm.samples[2], 0);
    ASSERT_EQ_INT(pcm.samples[3], -32768);
    audio_pcm_cleanup(&pcm);
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 16000, BIG, &pcm), 0);  /* through soxr */
    ASSERT_NEAR((double)pcm.n, 8000, 2);
    audio_pcm_cleanup(&pcm);
    free(wav);
}

TEST(audio_flac_ogg_mp3_decode_and_sniff) {
    struct { int format; unsigned rate; const char *ct; } kinds[] = {
        {SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, "audio/flac"},
        {SF_FORMAT_OGG | SF_FORMAT_VORBIS, 16000, "audio/ogg"},
        {SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000, "audio/ogg"},
        {SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 16000, "audio/mpeg"},
    };
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        size_t len;
        unsigned r = kinds[k].rate;
        float *x = sine(r, r, 440, 0.5, 1, 1);
        uint8_t *f = encode(kinds[k].format, 1, (int)r, x, r, &len);
        const char *types[] = {kinds[k].ct, NULL, "application/octet-stream", "text/plain"};
        for (size_t t = 0; t < 4; t++) {
            struct audio_pcm pcm;
            ASSERT_EQ_INT(decode(f, len, types[t], 16000, BIG, &pcm), 0);
            /* Lossy codecs may pad the end a little. */
            ASSERT_NEAR((double)pcm.n, 16000, 1200);
            ASSERT_NEAR(zero_crossings(pcm.samples, 2000, 14000), 2 * 440 * 12000 / 16000.0, 6);
            audio_pcm_cleanup(&pcm);
        }
        free(f);
        free(x);
    }
}

/* ---- raw PCM ----------------------------------------------------------- */

TEST(audio_pcm_le_and_l16_be_byte_order) {
    int16_t ref[] = {0, 1, -1, 256, -256, 12345, -32768, 32767, 0x1234};
    size_t n = sizeof(ref) / sizeof(ref[0]);
    uint8_t le[18], be[18];
    for (size_t i = 0; i < n; i++) {
        uint16_t u = (uint16_t)ref[i];
        le[2 * i] = (uint8_t)u;
        le[2 * i + 1] = (uint8_t)(u >> 8);
        be[2 * i] = (uint8_t)(u >> 8);
        be[2 * i + 1] = (uint8_t)u;
    }
    struct audio_pcm a, b, c;
    ASSERT_EQ_INT(decode(le, sizeof(le), "audio/pcm; rate=16000", 16000, BIG, &a), 0);
    ASSERT_EQ_INT(decode(be, sizeof(be), "audio/L16;rate=16000", 16000, BIG, &b), 0);
    ASSERT_EQ_INT(a.n, n);
    ASSERT_EQ_INT(b.n, n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ_INT(a.samples[i], ref[i]);
        ASSERT_EQ_INT(b.samples[i], ref[i]);
    }
    /* The same bytes with the other type come out byte-swapped. */
    ASSERT_EQ_INT(decode(le, sizeof(le), "audio/l16; rate=16000", 16000, BIG, &c), 0);
    ASSERT_EQ_INT(c.samples[3], 1);     /* 256 read big-endian */
    ASSERT_EQ_INT(c.samples[8], 0x3412);
    audio_pcm_cleanup(&a);
    audio_pcm_cleanup(&b);
    audio_pcm_cleanup(&c);
}

TEST(audio_pcm_media_type_forms) {
    int16_t s[4] = {1000, 3000, -2000, -4000};
    struct audio_pcm p;
    static const char *ok[] = {
        "Audio/PCM; RATE=16000", "audio/pcm;rate=\"16000\"", " audio/pcm ; rate=16000 ; ",
        "audio/pcm; foo=bar; rate=16000", "audio/pcm; rate=16000; channels=1",
        "AUDIO/pcm;\trate=16000",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ASSERT_EQ_INT(decode(s, sizeof(s), ok[i], 16000, BIG, &p), 0);
        ASSERT_EQ_INT(p.n, 4);
        ASSERT_EQ_INT(p.samples[2], -2000);
        audio_pcm_cleanup(&p);
    }
    /* channels=2 averages pairs. */
    ASSERT_EQ_INT(decode(s, sizeof(s), "audio/pcm; rate=16000; channels=2", 16000, BIG, &p), 0);
    ASSERT_EQ_INT(p.n, 2);
    ASSERT_EQ_INT(p.samples[0], 2000);
    ASSERT_EQ_INT(p.samples[1], -3000);
    audio_pcm_cleanup(&p);
}

TEST(audio_pcm_resamples_with_frequency_kept) {
    size_t n = 8000;
    int16_t *s = malloc(n * 2);
    ASSERT(s != NULL);
    for (size_t i = 0; i < n; i++) s[i] = (int16_t)lrint(16000 * sin(2 * M_PI * 300 * i / 8000.0));
    struct audio_pcm p;
    ASSERT_EQ_INT(decode(s, n * 2, "audio/pcm; rate=8000", 48000, BIG, &p), 0);
    ASSERT_EQ_INT(p.rate, 48000);
    ASSERT_NEAR((double)p.n, 48000, 2);
    ASSERT_NEAR(zero_crossings(p.samples, 6000, 42000), 2 * 300 * 36000 / 48000.0, 3);
    ASSERT_NEAR(peak(p.samples, 6000, 42000), 16000, 400);
    audio_pcm_cleanup(&p);
    free(s);
}

TEST(audio_raw_without_rate_is_bad_request) {
    int16_t s[4] = {0};
    struct audio_pcm p;
    static const char *bad[] = {
        "audio/pcm", "audio/L16", "audio/pcm; channels=1", "audio/pcm; rate=",
        "audio/pcm; rate=abc", "audio/pcm; rate=0", "audio/pcm; rate=99999999999",
        "audio/pcm; rate=16000; rate=8000", "audio/pcm; rate=16000; channels=0",
        "audio/pcm; rate=16000; channels=65", "audio/pcm; rate=\"16000",
        "audio/pcm; rate 16000", "audio/pcm; rate=16000 x", "audio/pcm; rate=-16000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (decode(s, sizeof(s), bad[i], 16000, BIG, &p) != ASR_E_BAD_REQUEST)
            TEST_FAIL_("\"%s\" was not a bad request", bad[i]);
}

TEST(audio_raw_odd_byte_count_is_invalid_audio) {
    uint8_t b[7] = {1, 2, 3, 4, 5, 6, 7};
    struct audio_pcm p;
    ASSERT_EQ_INT(decode(b, 7, "audio/pcm; rate=16000", 16000, BIG, &p), ASR_E_INVALID_AUDIO);
    ASSERT_EQ_INT(decode(b, 1, "audio/L16; rate=16000", 16000, BIG, &p), ASR_E_INVALID_AUDIO);
    /* Whole samples but not whole frames of 2 channels. */
    ASSERT_EQ_INT(decode(b, 6, "audio/pcm; rate=16000; channels=2", 16000, BIG, &p),
                  ASR_E_INVALID_AUDIO);
}

/* ---- refusals ---------------------------------------------------------- */

TEST(audio_garbage_is_not_audio) {
    uint8_t junk[4096];
    uint32_t seed = 7;
    for (size_t i = 0; i < sizeof(junk); i++) {
        seed = seed * 1103515245u + 12345u;
        junk[i] = (uint8_t)(seed >> 16);
    }
    junk[0] = 'x';   /* not an accidental MPEG sync */
    static const char *types[] = {"audio/wav", NULL, "application/octet-stream",
                                  "text/plain", "audio/flac", "nonsense", "audio/"};
    struct audio_pcm p;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        ASSERT_EQ_INT(decode(junk, sizeof(junk), types[i], 16000, BIG, &p), ASR_E_NOT_AUDIO);
    const char text[] = "{\"hello\": \"this is json, not audio\"}";
    ASSERT_EQ_INT(decode(text, sizeof(text) - 1, NULL, 16000, BIG, &p), ASR_E_NOT_AUDIO);
    /* Magic alone is not enough. */
    ASSERT_EQ_INT(decode("fLaC\0\0\0\0garbage", 15, NULL, 16000, BIG, &p), ASR_E_NOT_AUDIO);
    ASSERT_EQ_INT(decode("OggS", 4, "audio/ogg", 16000, BIG, &p), ASR_E_NOT_AUDIO);
    ASSERT_EQ_INT(decode("ID3\3\0\0\0\0\0\0junk", 14, NULL, 16000, BIG, &p), ASR_E_NOT_AUDIO);
}

TEST(audio_empty_body_is_bad_request) {
    struct audio_pcm p;
    ASSERT_EQ_INT(decode(NULL, 0, "audio/wav", 16000, BIG, &p), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(decode("", 0, NULL, 16000, BIG, &p), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(decode("", 0, "audio/pcm; rate=16000", 16000, BIG, &p), ASR_E_BAD_REQUEST);
}

TEST(audio_max_samples_exceeded_is_too_large) {
    size_t len;
    float *x = sine(16000, 16000, 440, 0.5, 1, 1);
    uint8_t *wav = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 16000, x, 16000, &len);
    struct audio_pcm p;
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 16000, 15999, &p), ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 16000, 16000, &p), 0);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 48000, 40000, &p), ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 8000, 8000, &p), 0);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(decode(wav + 44, 32000, "audio/pcm; rate=16000", 16000, 15999, &p),
                  ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(decode(wav + 44, 32000, "audio/pcm; rate=8000", 16000, 31000, &p),
                  ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(decode(wav + 44, 32000, "audio/pcm; rate=16000", 16000, 0, &p),
                  ASR_E_TOO_LARGE);

    /* A compressed file expands far beyond its size; its stated length is
     * checked before decoding. */
    float *z = calloc(48000 * 4, sizeof(float));
    ASSERT(z != NULL);
    uint8_t *fl = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1, 48000, z, 48000 * 4, &len);
    ASSERT_LE_INT(len, 20000);   /* 4 s of silence squeezes well */
    ASSERT_EQ_INT(decode(fl, len, NULL, 16000, 64000, &p), 0);
    ASSERT_EQ_INT(p.n, 64000);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(decode(fl, len, NULL, 16000, 63999, &p), ASR_E_TOO_LARGE);
    /* The same FLAC with "total samples: unknown" in its STREAMINFO: the
     * limit now applies while decoding. */
    ASSERT(memcmp(fl, "fLaC", 4) == 0 && (fl[4] & 0x7f) == 0);
    fl[21] &= 0xf0;
    memset(fl + 22, 0, 4);
    ASSERT_EQ_INT(decode(fl, len, NULL, 16000, 64000, &p), 0);
    ASSERT_EQ_INT(p.n, 64000);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(decode(fl, len, NULL, 16000, 63999, &p), ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(decode(fl, len, NULL, 16000, 1000, &p), ASR_E_TOO_LARGE);
    free(fl);
    free(z);
    free(wav);
    free(x);
}

TEST(audio_truncated_wav) {
    int16_t x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (int16_t)(i * 7);
    size_t len;
    uint8_t *wav = wav_s16(x, 1000, 1, 16000, 36 + 2000, 2000, &len);
    struct audio_pcm p;
    ASSERT_EQ_INT(decode(wav, len, "audio/wav", 16000, BIG, &p), 0);
    ASSERT_EQ_INT(p.n, 1000);
    ASSERT_EQ_INT(p.samples[999], 999 * 7);
    audio_pcm_cleanup(&p);
    /* Header cut short: not decodable. Once the "data" id is in, libsndfile
     * opens it as a file without samples, which is invalid audio (also 400). */
    for (size_t cut = 12; cut < 40; cut++)
        ASSERT_EQ_INT(decode(wav, cut, "audio/wav", 16000, BIG, &p), ASR_E_NOT_AUDIO);
    for (size_t cut = 40; cut < 44; cut++) {
        int rc = decode(wav, cut, "audio/wav", 16000, BIG, &p);
        ASSERT(rc == ASR_E_NOT_AUDIO || rc == ASR_E_INVALID_AUDIO);
    }
    /* Data cut short (an interrupted upload): what is there decodes. */
    ASSERT_EQ_INT(decode(wav, 44 + 1000, "audio/wav", 16000, BIG, &p), 0);
    ASSERT_EQ_INT(p.n, 500);
    ASSERT_EQ_INT(p.samples[499], 499 * 7);
    audio_pcm_cleanup(&p);
    /* A header with no data at all. */
    ASSERT_EQ_INT(decode(wav, 44, "audio/wav", 16000, BIG, &p), ASR_E_INVALID_AUDIO);
    free(wav);
}

/* Header sizes far beyond the bytes sent must not be believed. */
TEST(audio_wav_header_claiming_huge_sizes) {
    int16_t x[1000] = {0};
    x[10] = 1000;
    size_t len;
    uint8_t *wav = wav_s16(x, 1000, 1, 16000, 0xffffffffu, 0xfffffff0u, &len);
    struct audio_pcm p;
    int rc = decode(wav, len, "audio/wav", 16000, BIG, &p);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(p.n, 1000);
    ASSERT_EQ_INT(p.samples[10], 1000);
    audio_pcm_cleanup(&p);
    free(wav);

    /* Absurd channel counts and rates. */
    uint16_t chans[] = {0, 65, 0xffff};
    for (size_t i = 0; i < 3; i++) {
        wav = wav_s16(x, 1000 / 4, chans[i] ? 4 : 1, 16000, 36 + 2000, 2000, &len);
        wav[22] = (uint8_t)chans[i];
        wav[23] = (uint8_t)(chans[i] >> 8);
        rc = decode(wav, len, "audio/wav", 16000, BIG, &p);
        ASSERT(rc == ASR_E_NOT_AUDIO || rc == ASR_E_INVALID_AUDIO);
        free(wav);
    }
    uint32_t rates[] = {0, 1, 999, 384001, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        wav = wav_s16(x, 1000, 1, rates[i], 36 + 2000, 2000, &len);
        rc = decode(wav, len, "audio/wav", 16000, BIG, &p);
        if (rc != ASR_E_NOT_AUDIO && rc != ASR_E_INVALID_AUDIO)
            TEST_FAIL_("rate %u: rc %d", rates[i], rc);
        free(wav);
    }
}

TEST(audio_bad_target_rate) {
    int16_t s[2] = {0};
    struct audio_pcm p;
    ASSERT_EQ_INT(decode(s, 4, "audio/pcm; rate=16000", 0, BIG, &p), ASR_EINVAL);
    ASSERT_EQ_INT(decode(s, 4, "audio/pcm; rate=16000", 10000000, BIG, &p), ASR_EINVAL);
}

/* ---- audio_resample / audio_rate_supported ----------------------------- */

TEST(audio_resample_lengths_and_frequency) {
    size_t n = 16000;
    int16_t *s = malloc(n * 2);
    ASSERT(s != NULL);
    for (size_t i = 0; i < n; i++) s[i] = (int16_t)lrint(10000 * sin(2 * M_PI * 500 * i / 16000.0));
    struct audio_pcm p;
    ASSERT_EQ_INT(audio_resample(s, n, 16000, 8000, &p), 0);
    ASSERT_EQ_INT(p.rate, 8000);
    ASSERT_NEAR((double)p.n, 8000, 2);
    ASSERT_NEAR(zero_crossings(p.samples, 500, 7500), 2 * 500 * 7000 / 8000.0, 3);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(audio_resample(s, n, 16000, 44100, &p), 0);
    ASSERT_NEAR((double)p.n, 44100, 2);
    ASSERT_NEAR(peak(p.samples, 4410, 39690), 10000, 300);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(audio_resample(s, n, 16000, 16000, &p), 0);
    ASSERT_EQ_INT(p.n, n);
    ASSERT(memcmp(p.samples, s, n * 2) == 0);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(audio_resample(s, 0, 16000, 8000, &p), 0);
    ASSERT_EQ_INT(p.n, 0);
    audio_pcm_cleanup(&p);
    ASSERT_EQ_INT(audio_resample(s, n, 0, 8000, &p), ASR_EINVAL);
    ASSERT_EQ_INT(audio_resample(NULL, 5, 16000, 8000, &p), ASR_EINVAL);
    /* Short inputs survive the filter delay. */
    ASSERT_EQ_INT(audio_resample(s, 3, 8000, 48000, &p), 0);
    ASSERT_NEAR((double)p.n, 18, 1);
    audio_pcm_cleanup(&p);
    free(s);
}

TEST(audio_rate_supported_values) {
    ASSERT_EQ_INT(audio_rate_supported(8000), 1);
    ASSERT_EQ_INT(audio_rate_supported(16000), 1);
    ASSERT_EQ_INT(audio_rate_supported(32000), 1);
    ASSERT_EQ_INT(audio_rate_supported(48000), 1);
    ASSERT_EQ_INT(audio_rate_supported(44100), 0);
    ASSERT_EQ_INT(audio_rate_supported(0), 0);
    audio_pcm_cleanup(NULL);
}

/* ---- the block decoder and its input report ------------------------------ */

/* Decodes with audio_decoder_read in blocks of `block` samples; returns the
 * samples (caller frees) and the report. */
static int16_t *decode_blocks(const void *d, size_t len, const char *ct, size_t block, size_t *n,
                              struct audio_input *in, int *rc_out) {
    struct audio_decoder *dec;
    char err[200];
    *n = 0;
    *rc_out = audio_decoder_open(d, len, ct, 16000, BIG, &dec, err, sizeof err);
    if (*rc_out != 0) return NULL;
    int16_t *all = NULL;
    for (;;) {
        int16_t *nb = realloc(all, (*n + block) * sizeof *all);
        ASSERT(nb != NULL);
        all = nb;
        size_t got;
        int rc = audio_decoder_read(dec, all + *n, block, &got, err, sizeof err);
        if (rc != 0) {
            ASSERT(err[0] != '\0');
            ASSERT_EQ_INT(got, 0);
            size_t again;
            ASSERT_EQ_INT(audio_decoder_read(dec, all, block, &again, err, sizeof err), rc); /* stays failed */
            *rc_out = rc;
            break;
        }
        *n += got;
        if (got < block) {
            ASSERT_EQ_INT(audio_decoder_read(dec, all, block, &got, err, sizeof err), 0);
            ASSERT_EQ_INT(got, 0); /* the end stays the end */
            break;
        }
    }
    audio_decoder_input(dec, in);
    audio_decoder_close(dec);
    return all;
}

/* Block by block gives exactly what the whole-file decode gives, for every
 * block size, with and without resampling, for each container. */
TEST(audio_decoder_blocks_equal_whole) {
    size_t len;
    float *x = sine(44100, 44100 * 3 / 2, 440, 0.5, 2, 3);
    uint8_t *files[3];
    size_t lens[3];
    files[0] = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 2, 44100, x, 44100 * 3 / 2, &lens[0]);
    files[1] = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 2, 44100, x, 44100 * 3 / 2, &lens[1]);
    int16_t raw[16000];
    for (int i = 0; i < 16000; i++) raw[i] = (int16_t)(i * 13);
    files[2] = (uint8_t *)raw;
    lens[2] = sizeof raw;
    const char *cts[3] = {NULL, NULL, "audio/pcm; rate=16000"};
    static const size_t blocks[] = {1, 333, 4096, 16000, 100000};
    for (int f = 0; f < 3; f++) {
        struct audio_pcm whole;
        ASSERT_EQ_INT(decode(files[f], lens[f], cts[f], 16000, BIG, &whole), 0);
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
            size_t n;
            struct audio_input in;
            int rc;
            int16_t *s = decode_blocks(files[f], lens[f], cts[f], blocks[b], &n, &in, &rc);
            ASSERT_EQ_INT(rc, 0);
            ASSERT_EQ_INT(n, whole.n);
            ASSERT(memcmp(s, whole.samples, n * 2) == 0);
            ASSERT_EQ_INT(in.truncated, 0);
            ASSERT_EQ_INT(in.trailing_bytes, 0);
            ASSERT_EQ_INT(in.decoded_frames, f == 2 ? 16000 : 44100 * 3 / 2);
            ASSERT_EQ_INT(in.declared_frames, f == 2 ? 0 : 44100 * 3 / 2);
            free(s);
        }
        audio_pcm_cleanup(&whole);
    }
    free(files[0]);
    free(files[1]);
    free(x);
    (void)len;
}

/* Files that lie: what the header states against what the bytes hold. */
TEST(audio_decoder_reports_truncated_and_trailing) {
    static int16_t x[16000 * 4];
    for (size_t i = 0; i < sizeof x / 2; i++) x[i] = (int16_t)((i * 37) % 20000 - 10000);
    size_t len, n;
    struct audio_input in;
    int rc;
    /* a header that says 1 s, 3 s more behind it (RIFF size says 1 s too) */
    uint8_t *w = wav_s16(x, 16000 * 4, 1, 16000, 36 + 32000, 32000, &len);
    free(decode_blocks(w, len, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(n, 16000);
    ASSERT_EQ_INT(in.declared_frames, 16000);
    ASSERT_EQ_INT(in.truncated, 0);
    ASSERT_EQ_INT(in.trailing_bytes, 3 * 32000);
    free(w);
    /* the same with a RIFF size that covers everything: the bytes after the
     * data chunk are no chunk either */
    w = wav_s16(x, 16000 * 4, 1, 16000, 36 + 4 * 32000, 32000, &len);
    free(decode_blocks(w, len, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(in.trailing_bytes, 3 * 32000);
    free(w);
    /* a header that says 4 s, cut after 2 s */
    w = wav_s16(x, 16000 * 4, 1, 16000, 36 + 4 * 32000, 4 * 32000, &len);
    free(decode_blocks(w, 44 + 2 * 32000, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(n, 32000);
    ASSERT_EQ_INT(in.truncated, 1);
    ASSERT_EQ_INT(in.declared_frames, 64000);
    ASSERT_EQ_INT(in.decoded_frames, 32000);
    ASSERT_EQ_INT(in.trailing_bytes, 0);
    /* whole, with a LIST chunk after the data: the file's own, nothing trails */
    uint8_t *wl = malloc(len + 26);
    ASSERT(wl != NULL);
    memcpy(wl, w, len);
    memcpy(wl + len, "LIST\x12\x00\x00\x00INFOISFT\x06\x00\x00\x00asrd\x00\x00", 26);
    wl[4] = (uint8_t)((36 + 4 * 32000 + 26) & 0xff);
    wl[5] = (uint8_t)(((36 + 4 * 32000 + 26) >> 8) & 0xff);
    wl[6] = (uint8_t)(((36 + 4 * 32000 + 26) >> 16) & 0xff);
    free(decode_blocks(wl, len + 26, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(n, 64000);
    ASSERT_EQ_INT(in.truncated, 0);
    ASSERT_EQ_INT(in.trailing_bytes, 0);
    /* ... and garbage after it */
    memset(wl + len, 1, 26);
    free(decode_blocks(wl, len + 26, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(in.trailing_bytes, 26);
    free(wl);
    free(w);
    /* a streaming writer's "size unknown" (0xFFFFFFFF): all of it, nothing claimed */
    w = wav_s16(x, 16000, 1, 16000, 0xffffffffu, 0xffffffffu, &len);
    free(decode_blocks(w, len, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(n, 16000);
    ASSERT_EQ_INT(in.declared_frames, 0); /* the header states no length */
    ASSERT_EQ_INT(in.truncated, 0);
    ASSERT_EQ_INT(in.trailing_bytes, 0);
    free(w);
    /* an empty data chunk with audio behind it: no samples, and the message says why */
    w = wav_s16(x, 16000, 1, 16000, 36, 0, &len);
    struct audio_pcm p;
    char err[200];
    ASSERT_EQ_INT(audio_decode(w, len, NULL, 16000, BIG, &p, err, sizeof err), ASR_E_INVALID_AUDIO);
    ASSERT(strstr(err, "32000 bytes follow") != NULL);
    free(w);
    /* a FLAC whose STREAMINFO states more samples than its frames hold */
    float *f = sine(16000, 16000, 440, 0.5, 1, 1);
    uint8_t *fl = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1, 16000, f, 16000, &len);
    ASSERT(memcmp(fl, "fLaC", 4) == 0 && fl[22] == 0 && fl[23] == 0 && fl[24] == 0x3e && fl[25] == 0x80);
    fl[24] = 0x7d; /* total samples 16000 -> 32000 (0x3e80 -> 0x7d00) */
    fl[25] = 0x00;
    free(decode_blocks(fl, len, NULL, 4096, &n, &in, &rc));
    ASSERT_EQ_INT(rc, 0);
    ASSERT_EQ_INT(in.declared_frames, 32000);
    ASSERT_EQ_INT(in.decoded_frames, 16000);
    ASSERT_EQ_INT(in.truncated, 1);
    free(fl);
    free(f);
}
