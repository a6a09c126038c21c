/* Decoding of the compressed containers libsndfile cannot read, through
 * Debian's ffmpeg libraries (libavformat, libavcodec, libswresample): WebM
 * and Matroska (what browsers' MediaRecorder makes: Opus, Vorbis), MP4, M4A
 * and 3GP (AAC, what phones record), ADTS AAC, and Ogg streams libsndfile
 * refuses. core/audio.c calls it; nothing else should (audio_decode is the
 * contract for uploads).
 *
 * From memory only (a custom AVIOContext: no file, no network, no protocol
 * is ever opened), restricted to a list of demuxers and audio decoders,
 * single-threaded (safe on a libuv thread-pool thread, any number at once),
 * bounded: the caller's block callback refuses output past its own bound,
 * and a wall-clock budget stops a decode that takes too long. libav's own
 * logging is silenced and one allocation is capped at MEDIA_MAX_ALLOC. */
#ifndef ASRD_MEDIA_H
#define ASRD_MEDIA_H

#include <stddef.h>
#include <stdint.h>

/* The largest single allocation libav may make (av_max_alloc, process-wide,
 * set at the first decode): audio needs a few MB at most, a hostile header
 * asking for gigabytes gets an error instead. */
#define MEDIA_MAX_ALLOC (64u << 20)

/* What the first bytes of a file say, for the containers this module is for:
 * MEDIA_NONE when none matches. */
enum media_sniffed {
    MEDIA_NONE,
    MEDIA_MATROSKA,   /* EBML header 1A 45 DF A3 (WebM, Matroska) */
    MEDIA_MP4,        /* ISO base media: "ftyp" at offset 4 (MP4, M4A, 3GP, MOV) */
    MEDIA_ADTS,       /* ADTS AAC frame sync FFF, layer 0 */
    MEDIA_OGG,        /* "OggS" (libsndfile reads most; this is the fallback) */
};

enum media_sniffed media_sniff(const uint8_t *d, size_t n);
/* "WebM/Matroska", "MP4", ... for messages. */
const char *media_sniffed_name(enum media_sniffed k);

/* Called once, before the first block, with the rate of the samples that
 * follow (the first audio stream's, 1000..384000 Hz). Returns 0 or an
 * asr_err, which ends the decode with that error. */
typedef int (*media_start_fn)(void *ctx, unsigned rate);
/* mono[0..n): the next samples, mixed to mono, floats in [-1, 1] (NaN and
 * infinities already clamped), borrowed for the call. Returns 0 or an
 * asr_err (ASR_E_TOO_LARGE past the caller's bound), which ends the decode
 * with that error. */
typedef int (*media_block_fn)(void *ctx, const float *mono, size_t n);

/* Decodes the first audio stream of data[0..len) (borrowed for the call).
 * Runs on the calling thread; callbacks run on it too.
 *
 * Returns 0 once the whole stream is decoded and at least one sample went to
 * on_block. Otherwise: ASR_E_NOT_AUDIO (no demuxer of the list recognises the
 * bytes, there is no audio stream, or its codec is not one of the list);
 * ASR_E_INVALID_AUDIO (the stream states no rate or one outside
 * 1000..384000, more than 64 channels, breaks before any sample, decodes to
 * nothing, or decoding took longer than budget_ms); ASR_ENOMEM; or the error
 * a callback returned. A stream that breaks after some samples keeps them
 * (a cut-off upload), like core/audio.c's libsndfile path. On error errbuf
 * (when not NULL) holds a one-line message. */
int media_decode(const uint8_t *data, size_t len, uint64_t budget_ms, media_start_fn on_start,
                 media_block_fn on_block, void *ctx, char *errbuf, size_t errlen);

#endif
