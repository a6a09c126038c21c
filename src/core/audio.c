/* Audio helpers: upload decoding and resampling (audio.h).
 *
 * Every path ends in the same sink: mono float blocks at the input rate go
 * through a streaming soxr resampler (skipped when the rates match) and are
 * converted to s16 into an output buffer that never grows past max_samples.
 * Nothing is sized from what a file's header claims: a header's frame count
 * is only used to refuse early (ASR_E_TOO_LARGE) and to pick a first
 * capacity that is itself capped by max_samples. */
#include "core/audio.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sndfile.h>
#include <soxr.h>

#include "base/err.h"
#include "core/media.h"

#define AUDIO_MIN_RATE     1000u    /* Hz; below this nothing is speech */
#define AUDIO_MAX_RATE     384000u  /* Hz; above any real recording */
#define AUDIO_MAX_CHANNELS 64u      /* channels in one upload */
#define AUDIO_BLOCK        2048u    /* samples (all channels) decoded per step;
                                       a few such float arrays live on the stack
                                       of a thread-pool thread */
#define AUDIO_OUT_STEP     2048u    /* output samples soxr writes per call */
#define AUDIO_FIRST_CAP    65536u   /* first output capacity, samples, when the
                                       length is not known up front */
#define AUDIO_FIRST_CAP_MAX (1u << 20) /* samples; a header's claim reserves no
                                          more than this before audio arrives */

/* Fills errbuf with a one-line message and returns err. */
static int fail_msg(int err, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_msg(int err, char *errbuf, size_t errlen, const char *fmt, ...) {
    if (errbuf && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* a * b / c rounded up, saturating at UINT64_MAX: a length converted between
 * rates. b and c are rates (1..AUDIO_MAX_RATE), so r * b cannot overflow. */
static uint64_t mul_div_ceil(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t q = a / c, r = a % c;
    if (q != 0 && b > UINT64_MAX / q) return UINT64_MAX;
    uint64_t hi = q * b, lo = (r * b + c - 1) / c;
    return hi > UINT64_MAX - lo ? UINT64_MAX : hi + lo;
}

/* First output capacity for an expected est samples: a little slack for the
 * resampler's rounding, never more than AUDIO_FIRST_CAP_MAX (the sink grows
 * from there as audio really arrives). */
static size_t first_cap_for(uint64_t est) {
    return est >= AUDIO_FIRST_CAP_MAX - 64 ? AUDIO_FIRST_CAP_MAX : (size_t)est + 64;
}

int audio_rate_supported(unsigned rate) {
    return rate == 8000 || rate == 16000 || rate == 32000 || rate == 48000;
}

void audio_pcm_cleanup(struct audio_pcm *pcm) {
    if (!pcm) return;
    free(pcm->samples);
    pcm->samples = NULL;
    pcm->n = 0;
    pcm->rate = 0;
}

/* ---- the sink: mono float in, resampled s16 out ---------------------- */

struct sink {
    soxr_t   soxr;      /* owned; NULL when in and out rates are equal */
    int16_t *buf;       /* owned until sink_take(); malloc'd */
    size_t   n;         /* samples in buf */
    size_t   cap;       /* samples buf can hold */
    size_t   max;       /* samples allowed in total (ASR_E_TOO_LARGE past it) */
    size_t   total;     /* samples appended since sink_init: a user that empties buf
                           (the decoder, the stream resampler) still counts them */
};

static int sink_init(struct sink *s, unsigned in_rate, unsigned out_rate,
                     size_t max, size_t first_cap) {
    memset(s, 0, sizeof(*s));
    s->max = max < SIZE_MAX / sizeof(int16_t) ? max : SIZE_MAX / sizeof(int16_t);
    if (in_rate != out_rate) {
        soxr_error_t err = NULL;
        soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        soxr_runtime_spec_t rt = soxr_runtime_spec(1);  /* no threads of its own */
        s->soxr = soxr_create(in_rate, out_rate, 1, &err, &io, &q, &rt);
        if (!s->soxr || err) return ASR_ENOMEM;
    }
    if (first_cap > s->max) first_cap = s->max;
    if (first_cap > 0) {
        s->buf = malloc(first_cap * sizeof(int16_t));
        if (!s->buf) return ASR_ENOMEM;
        s->cap = first_cap;
    }
    return 0;
}

static void sink_cleanup(struct sink *s) {
    if (s->soxr) soxr_delete(s->soxr);
    free(s->buf);
    memset(s, 0, sizeof(*s));
}

static int16_t to_s16(float x) {
    float y = x * 32768.0f;
    if (!(y > -32768.0f)) return y != y ? 0 : -32768;  /* NaN is silence */
    if (y >= 32767.0f) return 32767;
    return (int16_t)lrintf(y);
}

static int sink_append(struct sink *s, const float *y, size_t n) {
    if (n > s->max - s->total) return ASR_E_TOO_LARGE;
    if (s->n + n > s->cap) {
        /* s->max <= SIZE_MAX / 2 (sink_init), so this ends and cannot wrap. */
        size_t cap = s->cap ? s->cap : AUDIO_OUT_STEP;
        while (cap < s->n + n) cap = cap > s->max / 2 ? s->max : cap * 2;
        if (cap > s->max) cap = s->max;
        int16_t *nb = realloc(s->buf, cap * sizeof(int16_t));
        if (!nb) return ASR_ENOMEM;
        s->buf = nb;
        s->cap = cap;
    }
    for (size_t i = 0; i < n; i++) s->buf[s->n + i] = to_s16(y[i]);
    s->n += n;
    s->total += n;
    return 0;
}

/* Pushes x[0..n) into the resampler and appends what comes out; x == NULL
 * flushes the end of the stream. soxr keeps its own input FIFO, so a call
 * normally takes all of x; the loop also covers it taking less. */
static int sink_push(struct sink *s, const float *x, size_t n) {
    float out[AUDIO_OUT_STEP];
    int rc;

    if (!s->soxr) return x ? sink_append(s, x, n) : 0;
    for (;;) {
        size_t idone = 0, odone = 0;
        soxr_error_t err = soxr_process(s->soxr, x, n, &idone, out,
                                        AUDIO_OUT_STEP, &odone);
        if (err) return ASR_E_INTERNAL;
        rc = sink_append(s, out, odone);
        if (rc != 0) return rc;
        if (x && n > 0 && idone == 0 && odone == 0) return ASR_E_INTERNAL;  /* stuck */
        if (x) {
            x += idone;
            n -= idone;
            if (n == 0 && odone < AUDIO_OUT_STEP) return 0;
        } else if (odone == 0) {
            return 0;
        }
    }
}

/* ---- the stream resampler (audio.h) ------------------------------------ */

struct audio_resampler {
    struct sink sink;   /* its buf is the output of the last call */
    float      *in;     /* owned: the input as float */
    size_t      in_cap;
};

struct audio_resampler *audio_resampler_create(unsigned in_rate, unsigned out_rate) {
    if (in_rate < AUDIO_MIN_RATE || in_rate > AUDIO_MAX_RATE || out_rate < AUDIO_MIN_RATE || out_rate > AUDIO_MAX_RATE ||
        in_rate == out_rate)
        return NULL;
    struct audio_resampler *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (sink_init(&r->sink, in_rate, out_rate, SIZE_MAX, 0) != 0) {
        sink_cleanup(&r->sink);
        free(r);
        return NULL;
    }
    return r;
}

void audio_resampler_destroy(struct audio_resampler *r) {
    if (!r) return;
    sink_cleanup(&r->sink);
    free(r->in);
    free(r);
}

int audio_resampler_process(struct audio_resampler *r, const int16_t *in, size_t n, const int16_t **out,
                            size_t *out_n) {
    r->sink.n = 0; /* the buffer is reused: the caller took the last output */
    if (n > r->in_cap) {
        float *f = realloc(r->in, n * sizeof *f);
        if (!f) return ASR_ENOMEM;
        r->in = f;
        r->in_cap = n;
    }
    for (size_t i = 0; i < n; i++) r->in[i] = (float)in[i] / 32768.0f;
    int rc = n ? sink_push(&r->sink, r->in, n) : 0;
    *out = r->sink.buf;
    *out_n = rc == 0 ? r->sink.n : 0;
    return rc;
}

/* The message for an error from sink_init/sink_push. */
static int sink_error(int rc, size_t max, char *errbuf, size_t errlen) {
    if (rc == ASR_E_TOO_LARGE)
        return fail_msg(rc, errbuf, errlen, "audio is longer than %zu samples", max);
    return fail_msg(rc, errbuf, errlen, "%s", asr_strerror(rc));
}

/* Hands the samples to out; the sink is left empty. */
static void sink_take(struct sink *s, unsigned rate, struct audio_pcm *out) {
    out->samples = s->buf;
    out->n = s->n;
    out->rate = rate;
    s->buf = NULL;
    s->n = s->cap = 0;
}

/* Averages frames of ch interleaved channels into mono; NaN and infinities
 * (possible in float files) are clamped so they cannot spread through the
 * resampler's filter. */
static void mix_to_mono(const float *in, size_t frames, unsigned ch, float *out) {
    for (size_t f = 0; f < frames; f++) {
        float sum = 0;
        for (unsigned c = 0; c < ch; c++) sum += in[f * ch + c];
        float m = sum / (float)ch;
        if (!(m >= -1.0f)) m = m != m ? 0.0f : -1.0f;
        else if (m > 1.0f) m = 1.0f;
        out[f] = m;
    }
}

/* ---- media types ------------------------------------------------------ */

enum media_kind {
    MEDIA_SNIFF,      /* no type, generic or unknown type: look at the bytes */
    MEDIA_CONTAINER,  /* a container type we decode (still checked by magic) */
    MEDIA_PCM_LE,     /* audio/pcm */
    MEDIA_PCM_BE,     /* audio/L16 (RFC 2586) */
};

struct media {
    enum media_kind kind;
    unsigned rate;      /* Hz from rate=, 0 when absent */
    unsigned channels;  /* from channels=, 1 when absent */
};

static int is_tchar(char c) {
    /* RFC 9110 token characters. */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ows(const char *p) {
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

static int span_is(const char *p, size_t n, const char *word) {
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/* Parses a decimal parameter value in [lo, hi]. */
static int parse_uint(const char *p, size_t n, unsigned lo, unsigned hi, unsigned *out) {
    unsigned long v = 0;
    if (n == 0 || n > 9) return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = (unsigned)v;
    return 0;
}

/* Reads "type/subtype *( OWS ; OWS name=value )" (RFC 9110 8.3.1). Type,
 * subtype and parameter names are case-insensitive. A value that is not
 * type/subtype is sniffed like a missing one; broken or out-of-range
 * parameters are ASR_E_BAD_REQUEST, but only for the raw PCM types, which
 * cannot be decoded without them. */
static int media_parse(const char *ct, struct media *m, char *errbuf, size_t errlen) {
    m->kind = MEDIA_SNIFF;
    m->rate = 0;
    m->channels = 1;
    if (!ct) return 0;

    const char *p = skip_ows(ct), *type = p;
    while (is_tchar(*p)) p++;
    size_t type_n = (size_t)(p - type);
    if (type_n == 0 || *p != '/') return 0;
    const char *sub = ++p;
    while (is_tchar(*p)) p++;
    size_t sub_n = (size_t)(p - sub);
    if (sub_n == 0) return 0;
    p = skip_ows(p);
    if (*p != '\0' && *p != ';') return 0;

    static const char *const containers[] = {
        "wav", "x-wav", "wave", "vnd.wave", "flac", "x-flac", "ogg", "mpeg", "mp3",
        "webm", "mp4", "m4a", "x-m4a", "aac", "opus", "x-matroska",
    };
    if (!span_is(type, type_n, "audio")) return 0;
    if (span_is(sub, sub_n, "pcm")) {
        m->kind = MEDIA_PCM_LE;
    } else if (span_is(sub, sub_n, "l16")) {
        m->kind = MEDIA_PCM_BE;
    } else {
        for (size_t i = 0; i < sizeof(containers) / sizeof(containers[0]); i++)
            if (span_is(sub, sub_n, containers[i])) m->kind = MEDIA_CONTAINER;
        return 0;
    }

    int have_rate = 0, have_ch = 0;
    while (*p == ';') {
        p = skip_ows(p + 1);
        if (*p == '\0' || *p == ';') continue;    /* empty parameter */
        const char *name = p;
        while (is_tchar(*p)) p++;
        size_t name_n = (size_t)(p - name);
        if (name_n == 0 || *p != '=')
            return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                            "malformed Content-Type parameter");
        const char *val = ++p;
        size_t val_n;
        if (*p == '"') {
            val = ++p;
            while (*p && *p != '"') p++;          /* no escapes in numbers */
            if (*p != '"')
                return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                                "unterminated quoted Content-Type parameter");
            val_n = (size_t)(p - val);
            p++;
        } else {
            while (is_tchar(*p)) p++;
            val_n = (size_t)(p - val);
        }
        p = skip_ows(p);
        if (*p != '\0' && *p != ';')
            return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                            "malformed Content-Type parameter");
        if (span_is(name, name_n, "rate")) {
            if (have_rate ||
                parse_uint(val, val_n, AUDIO_MIN_RATE, AUDIO_MAX_RATE, &m->rate) != 0)
                return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                                "rate must be given once, %u..%u",
                                AUDIO_MIN_RATE, AUDIO_MAX_RATE);
            have_rate = 1;
        } else if (span_is(name, name_n, "channels")) {
            if (have_ch ||
                parse_uint(val, val_n, 1, AUDIO_MAX_CHANNELS, &m->channels) != 0)
                return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                                "channels must be given once, 1..%u",
                                AUDIO_MAX_CHANNELS);
            have_ch = 1;
        }
        /* other parameters are ignored */
    }
    if (!have_rate)
        return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                        "raw PCM needs a rate parameter, e.g. audio/pcm; rate=16000");
    return 0;
}

/* ---- containers (libsndfile over memory) ------------------------------ */

enum sniffed { SNIFF_NONE, SNIFF_WAV, SNIFF_FLAC, SNIFF_OGG, SNIFF_MPEG };

/* Magic numbers of the containers we accept. MPEG audio without an ID3 tag
 * only has an 11-bit frame sync; the layer, bitrate and rate fields are
 * checked too so that less random data passes, and libsndfile has the last
 * word anyway. */
static enum sniffed sniff(const uint8_t *d, size_t n) {
    if (n >= 12 && (memcmp(d, "RIFF", 4) == 0 || memcmp(d, "RIFX", 4) == 0 ||
                    memcmp(d, "RF64", 4) == 0) && memcmp(d + 8, "WAVE", 4) == 0)
        return SNIFF_WAV;
    if (n >= 4 && memcmp(d, "fLaC", 4) == 0) return SNIFF_FLAC;
    if (n >= 4 && memcmp(d, "OggS", 4) == 0) return SNIFF_OGG;
    if (n >= 10 && memcmp(d, "ID3", 3) == 0 && d[3] != 0xff && d[4] != 0xff)
        return SNIFF_MPEG;
    if (n >= 4 && d[0] == 0xff && (d[1] & 0xe0) == 0xe0 &&
        (d[1] & 0x18) != 0x08 &&        /* version: not reserved */
        (d[1] & 0x06) != 0 &&           /* layer: not reserved */
        (d[2] & 0xf0) != 0xf0 &&        /* bitrate: not "bad" */
        (d[2] & 0x0c) != 0x0c)          /* sample rate: not reserved */
        return SNIFF_MPEG;
    return SNIFF_NONE;
}

static int major_matches(enum sniffed k, int format) {
    int major = format & SF_FORMAT_TYPEMASK;
    switch (k) {
    case SNIFF_WAV:
        return major == SF_FORMAT_WAV || major == SF_FORMAT_WAVEX ||
               major == SF_FORMAT_RF64;
    case SNIFF_FLAC: return major == SF_FORMAT_FLAC;
    case SNIFF_OGG:  return major == SF_FORMAT_OGG;
    case SNIFF_MPEG: return major == SF_FORMAT_MPEG;
    default:         return 0;
    }
}

/* A read-only file over a memory buffer, for sf_open_virtual. */
struct memfile {
    const uint8_t *data;  /* borrowed from the caller of audio_decode */
    sf_count_t     len;   /* bytes */
    sf_count_t     pos;   /* read position; may lie past len, reads then give 0 */
};

static sf_count_t mem_len(void *user) {
    return ((struct memfile *)user)->len;
}

static sf_count_t mem_seek(sf_count_t off, int whence, void *user) {
    struct memfile *f = user;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return -1;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? f->pos : f->len;
    if ((off > 0 && base > INT64_MAX - off) || base + off < 0) return -1;
    f->pos = base + off;
    return f->pos;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user) {
    struct memfile *f = user;
    if (count <= 0 || f->pos >= f->len) return 0;
    sf_count_t n = f->len - f->pos < count ? f->len - f->pos : count;
    memcpy(ptr, f->data + f->pos, (size_t)n);
    f->pos += n;
    return n;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *user) {
    return 0;
}

static sf_count_t mem_tell(void *user) {
    return ((struct memfile *)user)->pos;
}

/* ---- what a WAV's header says (RIFF chunks) ---------------------------- */

/* Where a RIFF/RIFX/RF64 WAVE file's data chunk is and what its header says
 * of it, found by walking the chunks ourselves: libsndfile clips a data
 * chunk longer than the bytes that follow to those bytes (so its frame
 * count cannot tell a cut file) and ignores whatever follows the chunks it
 * knows (so it cannot tell 37 s of audio behind a header that says 1 s). */
struct wav_layout {
    int      found;         /* a data chunk was found */
    int      size_known;    /* its size is stated (not 0, not 0xFFFFFFFF without ds64) */
    uint64_t data_off;      /* offset of its first byte */
    uint64_t data_size;     /* bytes it states */
    uint64_t trailing;      /* bytes after it that no well-formed chunk accounts for */
};

static uint64_t rd32(const uint8_t *p, int be) {
    return be ? (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3]
              : (uint64_t)p[3] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[1] << 8 | p[0];
}

static uint64_t rd64le(const uint8_t *p) { return rd32(p + 4, 0) << 32 | rd32(p, 0); }

static int chunk_id_ok(const uint8_t *p) {
    for (int i = 0; i < 4; i++)
        if (p[i] < 0x20 || p[i] > 0x7e) return 0;
    return 1;
}

static void wav_walk(const uint8_t *d, size_t len, struct wav_layout *w) {
    memset(w, 0, sizeof *w);
    if (len < 12) return;
    int be = memcmp(d, "RIFX", 4) == 0, rf64 = memcmp(d, "RF64", 4) == 0;
    uint64_t riff_size = rd32(d + 4, be), ds64_data = 0;
    int have_ds64 = 0;
    uint64_t pos = 12;
    while (pos + 8 <= len) {
        const uint8_t *ck = d + pos;
        uint64_t sz = rd32(ck + 4, be);
        if (rf64 && memcmp(ck, "ds64", 4) == 0 && sz >= 24 && pos + 8 + 24 <= len) {
            riff_size = rd64le(ck + 8);
            ds64_data = rd64le(ck + 16);
            have_ds64 = 1;
        }
        if (memcmp(ck, "data", 4) == 0) {
            w->found = 1;
            w->data_off = pos + 8;
            if (rf64 && sz == 0xFFFFFFFFu) {
                w->size_known = have_ds64 && ds64_data > 0;
                w->data_size = ds64_data;
            } else if (sz != 0xFFFFFFFFu && sz != 0) {
                w->size_known = 1;
                w->data_size = sz;
            }
            break;
        }
        pos += 8 + sz + (sz & 1);
    }
    if (!w->found || !w->size_known || w->data_size > UINT64_MAX / 2) return;
    /* After the data chunk: other chunks (LIST, cue, id3) are the file's
     * own, up to the end the RIFF header states when that is believable. */
    uint64_t data_end = w->data_off + w->data_size, end = len, riff_end = 8 + riff_size;
    if (riff_size != 0xFFFFFFFFu && riff_size != 0 && riff_end >= data_end && riff_end < end) end = riff_end;
    uint64_t p = data_end + (w->data_size & 1);
    while (p + 8 <= end && chunk_id_ok(d + p)) {
        uint64_t sz = rd32(d + p + 4, be);
        if (p + 8 + sz > end) break;
        p += 8 + sz + (sz & 1);
    }
    w->trailing = p < len ? len - p : 0;
}

/* ---- the decoder -------------------------------------------------------- */

/* DEC_MEDIA: containers libsndfile cannot read (WebM/Matroska, MP4/M4A,
 * ADTS AAC, Ogg with codecs it lacks), through libavformat/libavcodec
 * (core/media.h). media_decode pushes the whole file through the resampler
 * at open, so these are held decoded (compressed files are small; the
 * budget's decoding room does not cover an hour of one). */
enum dec_kind { DEC_RAW, DEC_SNDFILE, DEC_MEDIA };

struct audio_decoder {
    enum dec_kind kind;
    const uint8_t *data;         /* borrowed from the caller: the body */
    size_t   len;
    unsigned ch, in_rate, target_rate;
    struct media m;              /* DEC_RAW: byte order and layout */
    size_t   raw_frames, raw_next; /* DEC_RAW: frames in the body, the next to decode */
    SNDFILE *sf;                 /* DEC_SNDFILE: owned */
    SF_INFO  info;
    struct memfile mf;
    enum sniffed kind_sniffed;
    struct wav_layout wav;       /* SNIFF_WAV: what the header says */
    struct sink s;               /* resampler; s.buf holds decoded samples not yet read */
    size_t   carry_off;          /* the next sample of s.buf to hand out */
    uint64_t decoded;            /* input frames decoded */
    int      eof;                /* all input decoded and the resampler flushed */
    int      err;                /* the error that ended decoding, 0 = none */
    char     errmsg[160];        /* its message */
    float    in[AUDIO_BLOCK], mono[AUDIO_BLOCK];
};

void audio_decoder_close(struct audio_decoder *d) {
    if (!d) return;
    sink_cleanup(&d->s);
    if (d->sf) sf_close(d->sf);
    free(d);
}

static int open_raw(struct audio_decoder *d, size_t max_samples, char *errbuf, size_t errlen) {
    unsigned ch = d->m.channels;
    size_t frame_bytes = 2u * ch;
    if (d->len % frame_bytes != 0)
        return fail_msg(ASR_E_INVALID_AUDIO, errbuf, errlen,
                        "raw PCM body is %zu bytes, not a multiple of %zu "
                        "(16-bit samples x %u channels)", d->len, frame_bytes, ch);
    d->raw_frames = d->len / frame_bytes;
    d->ch = ch;
    d->in_rate = d->m.rate;
    uint64_t est = mul_div_ceil(d->raw_frames, d->target_rate, d->m.rate);
    if (est > max_samples)
        return fail_msg(ASR_E_TOO_LARGE, errbuf, errlen,
                        "audio is %llu samples at %u Hz, limit %zu",
                        (unsigned long long)est, d->target_rate, max_samples);
    return 0;
}

static int media_start(void *ctx, unsigned rate) {
    struct audio_decoder *d = ctx;
    d->in_rate = rate;
    return sink_init(&d->s, rate, d->target_rate, d->s.max, AUDIO_FIRST_CAP);
}

static int media_block(void *ctx, const float *mono, size_t n) {
    struct audio_decoder *d = ctx;
    d->decoded += n;
    return sink_push(&d->s, mono, n);
}

/* The whole file through libav into the sink (s.max set by the caller). */
static int open_media(struct audio_decoder *d, char *errbuf, size_t errlen) {
    size_t max = d->s.max;
    d->kind = DEC_MEDIA;
    d->ch = 1;
    int rc = media_decode(d->data, d->len, AUDIO_DECODE_BUDGET_MS, media_start, media_block, d, errbuf, errlen);
    if (rc == 0 && (rc = sink_push(&d->s, NULL, 0)) != 0) sink_error(rc, max, errbuf, errlen);
    if (rc == ASR_E_TOO_LARGE) sink_error(rc, max, errbuf, errlen);
    if (rc == 0) d->eof = 1;
    return rc;
}

/* The header is opened and checked against fixed ranges; its numbers are
 * used for nothing but an early ASR_E_TOO_LARGE and the input report. */
static int open_container(struct audio_decoder *d, size_t max_samples, char *errbuf, size_t errlen) {
    static const SF_VIRTUAL_IO vio = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
    d->kind = DEC_SNDFILE;
    d->kind_sniffed = sniff(d->data, d->len);
    if (d->kind_sniffed == SNIFF_NONE) {
        if (media_sniff(d->data, d->len) != MEDIA_NONE) {
            d->s.max = max_samples;
            return open_media(d, errbuf, errlen);
        }
        return fail_msg(ASR_E_NOT_AUDIO, errbuf, errlen,
                        "body is not WAV, FLAC, Ogg, MP3, WebM, MP4/M4A or AAC audio");
    }
    if (d->len > (size_t)INT64_MAX) return fail_msg(ASR_E_TOO_LARGE, errbuf, errlen, "body too large");
    d->mf = (struct memfile){d->data, (sf_count_t)d->len, 0};
    memset(&d->info, 0, sizeof d->info);
    d->sf = sf_open_virtual((SF_VIRTUAL_IO *)&vio, SFM_READ, &d->info, &d->mf);
    if (!d->sf && d->kind_sniffed == SNIFF_OGG) { /* Ogg with a codec libsndfile lacks (FLAC, Speex...) */
        d->s.max = max_samples;
        return open_media(d, errbuf, errlen);
    }
    if (!d->sf || !major_matches(d->kind_sniffed, d->info.format)) {
        /* Not sf_strerror(NULL): that reads libsndfile's global last error,
         * which another thread-pool thread may be writing. */
        enum sniffed k = d->kind_sniffed;
        return fail_msg(ASR_E_NOT_AUDIO, errbuf, errlen, "cannot decode the %s",
                        k == SNIFF_WAV ? "WAV file" : k == SNIFF_FLAC ? "FLAC file"
                        : k == SNIFF_OGG ? "Ogg file" : "MP3 file");
    }
    const SF_INFO *info = &d->info;
    if (info->channels < 1 || (unsigned)info->channels > AUDIO_MAX_CHANNELS ||
        info->samplerate < (int)AUDIO_MIN_RATE || info->samplerate > (int)AUDIO_MAX_RATE || info->frames < 0)
        return fail_msg(ASR_E_INVALID_AUDIO, errbuf, errlen, "unsupported audio: %d channels at %d Hz",
                        info->channels, info->samplerate);
    d->ch = (unsigned)info->channels;
    d->in_rate = (unsigned)info->samplerate;
    /* Some streams do not state their length (a FLAC encoder that could not
     * seek back writes 0, libsndfile reports SF_COUNT_MAX for others): 0 is
     * not taken to mean empty, only what decodes counts. */
    if (info->frames > 0 && info->frames != SF_COUNT_MAX) {
        uint64_t est = mul_div_ceil((uint64_t)info->frames, d->target_rate, d->in_rate);
        if (est > max_samples)
            return fail_msg(ASR_E_TOO_LARGE, errbuf, errlen, "audio is %llu samples at %u Hz, limit %zu",
                            (unsigned long long)est, d->target_rate, max_samples);
    }
    if (d->kind_sniffed == SNIFF_WAV) wav_walk(d->data, d->len, &d->wav);
    return 0;
}

int audio_decoder_open(const uint8_t *data, size_t len, const char *content_type, unsigned target_rate,
                       size_t max_samples, struct audio_decoder **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (errbuf && errlen > 0) errbuf[0] = '\0';
    if (target_rate < AUDIO_MIN_RATE || target_rate > AUDIO_MAX_RATE)
        return fail_msg(ASR_EINVAL, errbuf, errlen, "bad target rate %u", target_rate);
    if (!data || len == 0) return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "empty body");
    struct audio_decoder *d = calloc(1, sizeof *d);
    if (!d) return fail_msg(ASR_ENOMEM, errbuf, errlen, "%s", asr_strerror(ASR_ENOMEM));
    d->data = data;
    d->len = len;
    d->target_rate = target_rate;
    int rc = media_parse(content_type, &d->m, errbuf, errlen);
    if (rc == 0) {
        if (d->m.kind == MEDIA_PCM_LE || d->m.kind == MEDIA_PCM_BE) rc = open_raw(d, max_samples, errbuf, errlen);
        else rc = open_container(d, max_samples, errbuf, errlen);
    }
    if (rc == 0 && d->kind != DEC_MEDIA) {
        rc = sink_init(&d->s, d->in_rate, target_rate, max_samples, 0);
        if (rc != 0) rc = sink_error(rc, max_samples, errbuf, errlen);
    }
    if (rc != 0) {
        audio_decoder_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* Decodes one block of input into the sink, or, at the end of the input,
 * flushes the resampler and sets eof. Errors carry their message in
 * d->errmsg. A read error before any audio means the bytes are not audio
 * (ASR_E_NOT_AUDIO); one after some audio is a damaged file
 * (ASR_E_INVALID_AUDIO). A file that ends early without an error (a cut-off
 * upload) keeps what was decoded; the input report says so. */
static int decode_step(struct audio_decoder *d) {
    size_t per_block = AUDIO_BLOCK / d->ch, got = 0;
    if (d->kind == DEC_RAW) {
        size_t nf = d->raw_frames - d->raw_next < per_block ? d->raw_frames - d->raw_next : per_block;
        const uint8_t *b = d->data + d->raw_next * 2u * d->ch;
        for (size_t i = 0; i < nf * d->ch; i++) {
            uint16_t u = d->m.kind == MEDIA_PCM_BE ? (uint16_t)(b[2 * i] << 8 | b[2 * i + 1])
                                                   : (uint16_t)(b[2 * i + 1] << 8 | b[2 * i]);
            d->in[i] = (float)(int16_t)u / 32768.0f;
        }
        d->raw_next += nf;
        got = nf;
    } else {
        sf_count_t n = sf_readf_float(d->sf, d->in, (sf_count_t)per_block);
        if (n > 0) got = (size_t)n > per_block ? per_block : (size_t)n;  /* paranoia */
    }
    int rc;
    if (got) {
        mix_to_mono(d->in, got, d->ch, d->mono);
        rc = sink_push(&d->s, d->mono, got);
        if (rc != 0) return sink_error(rc, d->s.max, d->errmsg, sizeof d->errmsg);
        d->decoded += got;
        return 0;
    }
    if (d->sf && sf_error(d->sf) != SF_ERR_NO_ERROR)
        return fail_msg(d->decoded ? ASR_E_INVALID_AUDIO : ASR_E_NOT_AUDIO, d->errmsg, sizeof d->errmsg,
                        "audio decode failed: %s", sf_strerror(d->sf));
    if (d->decoded == 0) {
        if (d->wav.found && !d->wav.size_known && d->len > d->wav.data_off)
            return fail_msg(ASR_E_INVALID_AUDIO, d->errmsg, sizeof d->errmsg,
                            "audio has no samples: the WAV header states an empty data chunk, and %llu bytes "
                            "follow it", (unsigned long long)(d->len - d->wav.data_off));
        return fail_msg(ASR_E_INVALID_AUDIO, d->errmsg, sizeof d->errmsg, "audio has no samples");
    }
    rc = sink_push(&d->s, NULL, 0);
    if (rc != 0) return sink_error(rc, d->s.max, d->errmsg, sizeof d->errmsg);
    d->eof = 1;
    return 0;
}

int audio_decoder_read(struct audio_decoder *d, int16_t *dst, size_t want, size_t *got, char *errbuf,
                       size_t errlen) {
    *got = 0;
    while (!d->err && *got < want) {
        size_t avail = d->s.n - d->carry_off;
        if (avail) {
            size_t k = avail < want - *got ? avail : want - *got;
            memcpy(dst + *got, d->s.buf + d->carry_off, k * sizeof *dst);
            *got += k;
            d->carry_off += k;
            continue;
        }
        d->s.n = 0; /* all handed out: the buffer is reused */
        d->carry_off = 0;
        if (d->eof) break;
        d->err = decode_step(d);
    }
    if (d->err) {
        *got = 0;
        return fail_msg(d->err, errbuf, errlen, "%s", d->errmsg);
    }
    return 0;
}

void audio_decoder_input(const struct audio_decoder *d, struct audio_input *in) {
    memset(in, 0, sizeof *in);
    in->in_rate = d->in_rate;
    in->decoded_frames = d->decoded;
    if (d->kind != DEC_SNDFILE) return;
    if (d->wav.found && d->wav.size_known) {
        uint64_t present = d->len > d->wav.data_off ? d->len - d->wav.data_off : 0;
        in->trailing_bytes = d->wav.trailing;
        if (d->wav.data_size > present) {
            /* Cut: the frames its stated size would hold, in proportion to
             * what the bytes present held (exact for PCM). */
            in->truncated = 1;
            in->declared_frames = present ? (uint64_t)((long double)d->decoded * d->wav.data_size / present)
                                          : 0;
        } else if (d->info.frames > 0 && d->info.frames != SF_COUNT_MAX) {
            in->declared_frames = (uint64_t)d->info.frames;
        }
    } else if (d->kind_sniffed == SNIFF_FLAC && d->info.frames > 0 && d->info.frames != SF_COUNT_MAX) {
        /* STREAMINFO's total samples: a stream that ends early without an
         * error (cut at a frame boundary) decodes fewer. */
        in->declared_frames = (uint64_t)d->info.frames;
        in->truncated = d->eof && d->decoded < in->declared_frames;
    }
}

int audio_decode(const uint8_t *data, size_t len, const char *content_type,
                 unsigned target_rate, size_t max_samples,
                 struct audio_pcm *out, char *errbuf, size_t errlen) {
    struct audio_decoder *d;
    memset(out, 0, sizeof(*out));
    int rc = audio_decoder_open(data, len, content_type, target_rate, max_samples, &d, errbuf, errlen);
    if (rc != 0) return rc;
    /* The output grows as audio really arrives; a header's length only
     * sets a first capacity, itself capped. max_samples + 1 is room enough:
     * the sink refuses a sample past max_samples. */
    size_t cap = AUDIO_FIRST_CAP, n = 0;
    if (d->kind == DEC_RAW || (d->info.frames > 0 && d->info.frames != SF_COUNT_MAX)) {
        uint64_t frames = d->kind == DEC_RAW ? d->raw_frames : (uint64_t)d->info.frames;
        cap = first_cap_for(mul_div_ceil(frames, target_rate, d->in_rate));
    }
    size_t room = max_samples < SIZE_MAX / 8 ? max_samples + 1 : SIZE_MAX / 8;
    if (cap > room) cap = room;
    int16_t *buf = malloc(cap * sizeof *buf);
    if (!buf) rc = fail_msg(ASR_ENOMEM, errbuf, errlen, "%s", asr_strerror(ASR_ENOMEM));
    while (buf) {
        size_t got;
        rc = audio_decoder_read(d, buf + n, cap - n, &got, errbuf, errlen);
        if (rc != 0) break;
        n += got;
        if (n < cap) break; /* the end of the audio */
        size_t ncap = cap > room / 2 ? room : cap * 2;
        if (ncap <= cap) {  /* cannot happen: the sink stops at max_samples */
            rc = fail_msg(ASR_E_TOO_LARGE, errbuf, errlen, "audio is longer than %zu samples", max_samples);
            break;
        }
        int16_t *nb = realloc(buf, ncap * sizeof *buf);
        if (!nb) {
            rc = fail_msg(ASR_ENOMEM, errbuf, errlen, "%s", asr_strerror(ASR_ENOMEM));
            break;
        }
        buf = nb;
        cap = ncap;
    }
    audio_decoder_close(d);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    out->samples = buf;
    out->n = n;
    out->rate = target_rate;
    return 0;
}

int audio_resample(const int16_t *in, size_t n, unsigned in_rate,
                   unsigned out_rate, struct audio_pcm *out) {
    struct sink s = {0};
    float block[AUDIO_BLOCK];
    int rc;

    memset(out, 0, sizeof(*out));
    if (in_rate < AUDIO_MIN_RATE || in_rate > AUDIO_MAX_RATE ||
        out_rate < AUDIO_MIN_RATE || out_rate > AUDIO_MAX_RATE || (n > 0 && !in))
        return ASR_EINVAL;
    if (n == 0) {
        out->rate = out_rate;
        return 0;
    }
    if (in_rate == out_rate) {
        if (n > SIZE_MAX / sizeof(int16_t)) return ASR_ENOMEM;
        out->samples = malloc(n * sizeof(int16_t));
        if (!out->samples) return ASR_ENOMEM;
        memcpy(out->samples, in, n * sizeof(int16_t));
        out->n = n;
        out->rate = out_rate;
        return 0;
    }
    uint64_t est = mul_div_ceil(n, out_rate, in_rate);
    rc = sink_init(&s, in_rate, out_rate, SIZE_MAX, first_cap_for(est));
    if (rc != 0)
        goto fail;
    for (size_t i = 0; i < n; i += AUDIO_BLOCK) {
        size_t k = n - i < AUDIO_BLOCK ? n - i : AUDIO_BLOCK;
        for (size_t j = 0; j < k; j++) block[j] = (float)in[i + j] / 32768.0f;
        rc = sink_push(&s, block, k);
        if (rc != 0) goto fail;
    }
    rc = sink_push(&s, NULL, 0);
    if (rc != 0) goto fail;
    sink_take(&s, out_rate, out);
    sink_cleanup(&s);
    return 0;

fail:
    sink_cleanup(&s);
    return rc == ASR_E_TOO_LARGE ? ASR_ENOMEM : rc;
}
