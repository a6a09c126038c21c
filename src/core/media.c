/* Compressed containers through libavformat/libavcodec (media.h).
 *
 * One decode: a memory AVIOContext over the caller's bytes, a format
 * context limited to MEDIA_FORMATS and MEDIA_CODECS (and to few streams),
 * the first audio stream's decoder with one thread, libswresample turning
 * whatever sample format and channel layout comes out into mono float at
 * the stream's rate (the caller resamples), and an interrupt callback plus
 * a check per packet that end the decode when the time budget is spent. */
#include "core/media.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

#include "base/err.h"
#include "base/util.h"

#define MEDIA_MIN_RATE     1000u
#define MEDIA_MAX_RATE     384000u
#define MEDIA_MAX_CHANNELS 64
#define MEDIA_IO_BUF       16384      /* bytes libavformat reads from memory at a time */
#define MEDIA_OUT_BLOCK    4096       /* mono samples per on_block call */
#define MEDIA_PROBE_BYTES  "1048576"  /* bytes avformat_find_stream_info may read */
#define MEDIA_MAX_STREAMS  "16"

/* Demuxers (by their libavformat names) and decoders the upload path opens;
 * everything else in the libraries stays unreachable from a client's bytes. */
#define MEDIA_FORMATS "matroska,webm,mov,mp4,m4a,3gp,3g2,mj2,ogg,aac"
#define MEDIA_CODECS  "opus,libopus,vorbis,libvorbis,aac,aac_fixed,mp3,mp3float,flac"

static pthread_once_t media_once = PTHREAD_ONCE_INIT;

/* Process-wide libav settings, once: no log output (a client's bytes must
 * not write to our stderr), and the allocation cap. */
static void media_init_once(void) {
    av_log_set_level(AV_LOG_QUIET);
    av_max_alloc(MEDIA_MAX_ALLOC);
}

enum media_sniffed media_sniff(const uint8_t *d, size_t n) {
    if (n >= 4 && d[0] == 0x1a && d[1] == 0x45 && d[2] == 0xdf && d[3] == 0xa3) return MEDIA_MATROSKA;
    if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) return MEDIA_MP4;
    if (n >= 4 && memcmp(d, "OggS", 4) == 0) return MEDIA_OGG;
    /* ADTS: 12-bit sync, layer 00 (MPEG audio has 01..11), a sampling index
     * below 13. */
    if (n >= 7 && d[0] == 0xff && (d[1] & 0xf6) == 0xf0 && ((d[2] >> 2) & 0x0f) < 13) return MEDIA_ADTS;
    return MEDIA_NONE;
}

const char *media_sniffed_name(enum media_sniffed k) {
    switch (k) {
    case MEDIA_MATROSKA: return "WebM/Matroska";
    case MEDIA_MP4: return "MP4";
    case MEDIA_ADTS: return "AAC";
    case MEDIA_OGG: return "Ogg";
    default: return "unknown";
    }
}

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

/* ---- reading from memory -------------------------------------------------- */

struct memio {
    const uint8_t *data;   /* borrowed: the caller's bytes */
    int64_t len;
    int64_t pos;           /* may lie past len: reads then give EOF */
};

static int mem_read(void *opaque, uint8_t *buf, int size) {
    struct memio *m = opaque;
    if (size <= 0) return 0;
    if (m->pos >= m->len) return AVERROR_EOF;
    int64_t n = m->len - m->pos < size ? m->len - m->pos : size;
    memcpy(buf, m->data + m->pos, (size_t)n);
    m->pos += n;
    return (int)n;
}

static int64_t mem_seek(void *opaque, int64_t off, int whence) {
    struct memio *m = opaque;
    if (whence & AVSEEK_SIZE) return m->len;
    whence &= ~AVSEEK_FORCE;
    int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->len : -1;
    if (base < 0) return AVERROR(EINVAL);
    if ((off > 0 && base > INT64_MAX - off) || base + off < 0) return AVERROR(EINVAL);
    m->pos = base + off;
    return m->pos;
}

/* ---- the time budget ------------------------------------------------------- */

struct deadline {
    uint64_t at_ns;   /* monotonic */
    int      hit;     /* the budget ran out */
};

static int deadline_passed(struct deadline *d) {
    if (!d->hit && util_now_ns() >= d->at_ns) d->hit = 1;
    return d->hit;
}

/* libavformat polls this inside long operations (probing, reading). */
static int on_interrupt(void *opaque) { return deadline_passed(opaque); }

/* ---- one decode -------------------------------------------------------------- */

struct job {
    AVFormatContext *fmt;   /* owned */
    AVIOContext *io;        /* owned, with its buffer */
    AVCodecContext *dec;    /* owned */
    SwrContext *swr;        /* owned */
    AVPacket *pkt;          /* owned */
    AVFrame *frame;         /* owned */
    int stream;             /* index of the audio stream */
    unsigned rate;          /* of the output (the stream's first rate) */
    media_block_fn on_block;
    void *ctx;
    uint64_t samples;       /* handed to on_block */
    int in_format, in_rate; /* what the resampler was set up for */
    AVChannelLayout in_layout;
    float out[MEDIA_OUT_BLOCK];
};

static void job_cleanup(struct job *j) {
    av_channel_layout_uninit(&j->in_layout);
    av_frame_free(&j->frame);
    av_packet_free(&j->pkt);
    swr_free(&j->swr);
    avcodec_free_context(&j->dec);
    avformat_close_input(&j->fmt);
    if (j->io) {
        av_freep(&j->io->buffer);
        avio_context_free(&j->io);
    }
}

static void clamp(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!(v >= -1.0f)) x[i] = v != v ? 0.0f : -1.0f;
        else if (v > 1.0f) x[i] = 1.0f;
    }
}

/* Sets the resampler up for frames like f: its layout and format in, mono
 * float at j->rate out (a frame at another rate than the first is
 * resampled to it). Returns 0 or an AVERROR. */
static int swr_setup(struct job *j, const AVFrame *f) {
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    AVChannelLayout in;
    int rc;
    if (f->ch_layout.nb_channels < 1 || f->ch_layout.nb_channels > MEDIA_MAX_CHANNELS) return AVERROR_INVALIDDATA;
    if (f->sample_rate < (int)MEDIA_MIN_RATE || f->sample_rate > (int)MEDIA_MAX_RATE) return AVERROR_INVALIDDATA;
    /* An unspecified layout (order UNSPEC) is taken as the default one of
     * its channel count, so every channel counts in the mix. */
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) av_channel_layout_default(&in, f->ch_layout.nb_channels);
    else if ((rc = av_channel_layout_copy(&in, &f->ch_layout)) < 0) return rc;
    swr_free(&j->swr);
    rc = swr_alloc_set_opts2(&j->swr, &mono, AV_SAMPLE_FMT_FLT, (int)j->rate, &in, (enum AVSampleFormat)f->format,
                             f->sample_rate, 0, NULL);
    av_channel_layout_uninit(&in);
    if (rc < 0) return rc;
    /* The mix keeps the level of a single channel rather than summing them
     * into clipping (as core/audio.c averages). */
    av_opt_set_double(j->swr, "rematrix_maxval", 1.0, 0);
    return swr_init(j->swr);
}

/* Converts and hands out one decoded frame (f NULL: what the resampler
 * still holds). Returns 0 or an AVERROR; AVERROR_EXIT when on_block
 * refused, with its asr_err in *cb_err. */
static int emit(struct job *j, const AVFrame *f, int *cb_err) {
    int rc;
    if (f && !j->swr && (rc = swr_setup(j, f)) < 0) return rc;
    if (!j->swr) return 0;
    const uint8_t **in = f ? (const uint8_t **)f->extended_data : NULL;
    int in_n = f ? f->nb_samples : 0;
    for (;;) {
        uint8_t *outp[1] = {(uint8_t *)j->out};
        int got = swr_convert(j->swr, outp, MEDIA_OUT_BLOCK, in, in_n);
        if (got < 0) return got;
        in = NULL;
        in_n = 0;
        if (got == 0) return 0;
        clamp(j->out, (size_t)got);
        int e = j->on_block(j->ctx, j->out, (size_t)got);
        if (e != 0) {
            *cb_err = e;
            return AVERROR_EXIT;
        }
        j->samples += (uint64_t)got;
        if (got < MEDIA_OUT_BLOCK && f) return 0;
    }
}

/* Pulls every frame the decoder has ready. A frame whose format, rate or
 * layout differs from the one the resampler was set up for (streams may
 * change mid-way) first flushes the resampler, which is then set up again. */
static int drain_decoder(struct job *j, int *cb_err) {
    for (;;) {
        AVFrame *f = j->frame;
        int rc = avcodec_receive_frame(j->dec, f);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return 0;
        if (rc < 0) return rc;
        if (j->swr && (f->format != j->in_format || f->sample_rate != j->in_rate ||
                       av_channel_layout_compare(&f->ch_layout, &j->in_layout) != 0)) {
            rc = emit(j, NULL, cb_err);
            swr_free(&j->swr);
        }
        if (rc >= 0 && !j->swr) {
            j->in_format = f->format;
            j->in_rate = f->sample_rate;
            av_channel_layout_uninit(&j->in_layout);
            rc = av_channel_layout_copy(&j->in_layout, &f->ch_layout);
        }
        if (rc >= 0) rc = emit(j, f, cb_err);
        av_frame_unref(f);
        if (rc < 0) return rc;
    }
}

static int open_input(struct job *j, struct memio *m, struct deadline *dl) {
    int rc;
    uint8_t *iobuf = av_malloc(MEDIA_IO_BUF);
    if (!iobuf) return AVERROR(ENOMEM);
    j->io = avio_alloc_context(iobuf, MEDIA_IO_BUF, 0, m, mem_read, NULL, mem_seek);
    if (!j->io) {
        av_free(iobuf);
        return AVERROR(ENOMEM);
    }
    j->fmt = avformat_alloc_context();
    if (!j->fmt) return AVERROR(ENOMEM);
    j->fmt->pb = j->io;
    j->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    j->fmt->interrupt_callback.callback = on_interrupt;
    j->fmt->interrupt_callback.opaque = dl;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "format_whitelist", MEDIA_FORMATS, 0);
    av_dict_set(&opts, "codec_whitelist", MEDIA_CODECS, 0);
    av_dict_set(&opts, "protocol_whitelist", "", 0);
    av_dict_set(&opts, "probesize", MEDIA_PROBE_BYTES, 0);
    av_dict_set(&opts, "max_streams", MEDIA_MAX_STREAMS, 0);
    av_dict_set(&opts, "threads", "1", 0);
    rc = avformat_open_input(&j->fmt, NULL, NULL, &opts);
    av_dict_free(&opts);
    /* On failure avformat_open_input freed the context (j->fmt is NULL);
     * the AVIOContext is ours either way. */
    return rc;
}

static int open_decoder(struct job *j, char *errbuf, size_t errlen) {
    int rc = avformat_find_stream_info(j->fmt, NULL);
    if (rc < 0) return rc;
    const AVCodec *codec = NULL;
    j->stream = av_find_best_stream(j->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (j->stream < 0 || !codec) return j->stream < 0 ? j->stream : AVERROR_DECODER_NOT_FOUND;
    for (unsigned i = 0; i < j->fmt->nb_streams; i++)
        if ((int)i != j->stream) j->fmt->streams[i]->discard = AVDISCARD_ALL;
    AVStream *st = j->fmt->streams[j->stream];
    j->dec = avcodec_alloc_context3(codec);
    if (!j->dec) return AVERROR(ENOMEM);
    if ((rc = avcodec_parameters_to_context(j->dec, st->codecpar)) < 0) return rc;
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "threads", "1", 0);
    av_dict_set(&opts, "codec_whitelist", MEDIA_CODECS, 0);
    rc = avcodec_open2(j->dec, codec, &opts);
    av_dict_free(&opts);
    if (rc < 0) return rc;
    int rate = j->dec->sample_rate;
    if (rate < (int)MEDIA_MIN_RATE || rate > (int)MEDIA_MAX_RATE || j->dec->ch_layout.nb_channels < 1 ||
        j->dec->ch_layout.nb_channels > MEDIA_MAX_CHANNELS)
        return fail_msg(ASR_E_INVALID_AUDIO, errbuf, errlen, "unsupported audio: %d channels at %d Hz",
                        j->dec->ch_layout.nb_channels, rate);
    j->rate = (unsigned)rate;
    return 0;
}

int media_decode(const uint8_t *data, size_t len, uint64_t budget_ms, media_start_fn on_start,
                 media_block_fn on_block, void *ctx, char *errbuf, size_t errlen) {
    struct job *j = NULL;
    struct memio m = {data, (int64_t)len, 0};
    struct deadline dl = {util_now_ns() + budget_ms * 1000000ull, 0};
    int rc, cb_err = 0, sent_eof = 0;
    char why[AV_ERROR_MAX_STRING_SIZE] = "";

    pthread_once(&media_once, media_init_once);
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!data || len == 0 || len > (size_t)INT64_MAX / 2)
        return fail_msg(ASR_E_NOT_AUDIO, errbuf, errlen, "no media to decode");
    /* The job holds the output block: heap, not a thread-pool stack. */
    j = av_mallocz(sizeof *j);
    if (!j) return fail_msg(ASR_ENOMEM, errbuf, errlen, "out of memory");
    j->on_block = on_block;
    j->ctx = ctx;

    rc = open_input(j, &m, &dl);
    if (rc < 0) {
        av_strerror(rc, why, sizeof why);
        if (dl.hit)
            rc = fail_msg(ASR_E_INVALID_AUDIO, errbuf, errlen, "audio took longer than %llu ms to open",
                          (unsigned long long)budget_ms);
        else
            rc = fail_msg(ASR_E_NOT_AUDIO, errbuf, errlen, "not a supported audio container (%s)", why);
        goto done;
    }
    rc = open_decoder(j, errbuf, errlen);
    if (rc == ASR_E_INVALID_AUDIO) goto done;
    if (rc < 0) {
        av_strerror(rc, why, sizeof why);
        rc = fail_msg(dl.hit ? ASR_E_INVALID_AUDIO : ASR_E_NOT_AUDIO, errbuf, errlen,
                      "no audio stream that can be decoded (%s, %s)", j->fmt->iformat->name, why);
        goto done;
    }
    if ((rc = on_start(ctx, j->rate)) != 0) {
        rc = fail_msg(rc, errbuf, errlen, "%s", asr_strerror(rc));
        goto done;
    }
    j->pkt = av_packet_alloc();
    j->frame = av_frame_alloc();
    if (!j->pkt || !j->frame) {
        rc = fail_msg(ASR_ENOMEM, errbuf, errlen, "out of memory");
        goto done;
    }

    /* Packets in, frames out. A read error ends the input like its end
     * (a cut-off upload keeps what decoded); a decode error of one packet
     * is skipped, as players do; the budget and the callback end it all. */
    int read_err = 0;
    while (!sent_eof) {
        if (deadline_passed(&dl)) break;
        rc = av_read_frame(j->fmt, j->pkt);
        if (rc < 0) {
            if (rc != AVERROR_EOF) read_err = rc;
            rc = avcodec_send_packet(j->dec, NULL);
            sent_eof = 1;
        } else if (j->pkt->stream_index == j->stream) {
            rc = avcodec_send_packet(j->dec, j->pkt);
            av_packet_unref(j->pkt);
            if (rc == AVERROR(EAGAIN)) rc = 0; /* cannot happen: frames are drained after each packet */
            else if (rc < 0 && rc != AVERROR(ENOMEM)) rc = 0; /* a damaged packet */
        } else {
            av_packet_unref(j->pkt);
            continue;
        }
        if (rc < 0 && rc != AVERROR_EOF) break;
        rc = drain_decoder(j, &cb_err);
        if (rc < 0 && !cb_err && rc != AVERROR(ENOMEM) && rc != AVERROR_EXIT) rc = 0; /* damaged: go on */
        if (rc < 0) break;
    }
    if (cb_err) {
        rc = fail_msg(cb_err, errbuf, errlen, "%s", asr_strerror(cb_err));
        goto done;
    }
    if (rc == AVERROR(ENOMEM)) {
        rc = fail_msg(ASR_ENOMEM, errbuf, errlen, "out of memory decoding");
        goto done;
    }
    if (dl.hit) {
        rc = fail_msg(ASR_E_INVALID_AUDIO, errbuf, errlen, "audio took longer than %llu ms to decode",
                      (unsigned long long)budget_ms);
        goto done;
    }
    rc = emit(j, NULL, &cb_err); /* what the resampler holds */
    if (cb_err) {
        rc = fail_msg(cb_err, errbuf, errlen, "%s", asr_strerror(cb_err));
        goto done;
    }
    if (j->samples == 0) {
        if (read_err) av_strerror(read_err, why, sizeof why);
        rc = fail_msg(ASR_E_INVALID_AUDIO, errbuf, errlen, "%s audio has no samples%s%s", j->fmt->iformat->name,
                      read_err ? ": " : "", why);
        goto done;
    }
    rc = 0;

done:
    job_cleanup(j);
    av_free(j);
    return rc;
}
