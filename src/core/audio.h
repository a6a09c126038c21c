/* Audio helpers: PCM byte handling, container decoding (libsndfile, and
 * libavformat/libavcodec through core/media.h) and resampling (libsoxr). No I/O beyond memory buffers; safe to call from the
 * libuv thread pool (nothing here touches the loop). */
#ifndef ASRD_AUDIO_H
#define ASRD_AUDIO_H

#include <stddef.h>
#include <stdint.h>

/* Mono signed 16-bit PCM in host order. samples is owned by the struct;
 * release with audio_pcm_cleanup(). */
struct audio_pcm {
    int16_t *samples;   /* owned; malloc'd */
    size_t   n;         /* number of samples */
    unsigned rate;      /* samples per second */
};

void audio_pcm_cleanup(struct audio_pcm *pcm);

/* Decodes an uploaded body into mono s16 PCM at target_rate.
 *
 * content_type is the raw Content-Type header value or NULL. Handling
 * (docs/API.md "REST"):
 *   - audio/wav, audio/x-wav, audio/wave, audio/vnd.wave, audio/flac,
 *     audio/x-flac, audio/ogg, audio/mpeg, audio/mp3: decoded by libsndfile
 *     from memory (virtual I/O), any rate and channel count.
 *   - audio/pcm; rate=N   raw s16 little-endian, mono unless channels=N.
 *   - audio/L16; rate=N   raw s16 big-endian (RFC 2586), channels=N allowed.
 *     Raw PCM without rate= (or with rate outside 1000..384000, channels
 *     outside 1..64, a malformed parameter) is ASR_E_BAD_REQUEST; an odd
 *     byte count (or not whole frames of `channels` samples) is
 *     ASR_E_INVALID_AUDIO.
 *   - NULL, application/octet-stream or any other type (audio/webm,
 *     audio/mp4... included): the bytes are sniffed (RIFF/WAVE, fLaC, OggS,
 *     ID3/MPEG sync for libsndfile; EBML (WebM/Matroska), ftyp (MP4, M4A,
 *     3GP), ADTS AAC for libavformat/libavcodec, core/media.h, which also
 *     takes the Ogg streams libsndfile cannot open); if no supported
 *     container is recognised, ASR_E_NOT_AUDIO. A libav decode that takes
 *     longer than AUDIO_DECODE_BUDGET_MS is ASR_E_INVALID_AUDIO.
 * Channels are mixed to mono by averaging, then resampled with soxr (HQ) to
 * target_rate. Audio longer than max_samples output samples is
 * ASR_E_TOO_LARGE (protects against small files that expand hugely).
 * Empty body: ASR_E_BAD_REQUEST. A container that fails to decode:
 * ASR_E_NOT_AUDIO; one that opens but yields no samples, fails part-way, or
 * states more than 64 channels or a rate outside 1000..384000:
 * ASR_E_INVALID_AUDIO. target_rate outside 1000..384000: ASR_EINVAL.
 * On 0, *out holds the audio (caller owns it). On error *out is zeroed and,
 * if errbuf is not NULL, a one-line human message is written to it. */
/* How long one decode through libavformat/libavcodec (WebM, MP4, AAC) may
 * take, wall clock, before it is ASR_E_INVALID_AUDIO: an hour of Opus or AAC
 * decodes in a few seconds; an input built to be slow does not hold a
 * thread-pool thread longer than this. */
#define AUDIO_DECODE_BUDGET_MS 60000u

int audio_decode(const uint8_t *data, size_t len, const char *content_type,
                 unsigned target_rate, size_t max_samples,
                 struct audio_pcm *out, char *errbuf, size_t errlen);

/* Resamples mono s16 in[n] from in_rate to out_rate with soxr. On 0, *out
 * holds the result (caller owns it); in_rate == out_rate copies. Rates
 * outside 1000..384000: ASR_EINVAL; ASR_ENOMEM. */
int audio_resample(const int16_t *in, size_t n, unsigned in_rate,
                   unsigned out_rate, struct audio_pcm *out);

/* 1 if rate is a rate the VAD classifies at (8000, 16000, 32000, 48000). */
int audio_rate_supported(unsigned rate);

/* Lowest and highest rate a stream may be sent at (docs/API.md "Connecting"). */
#define AUDIO_STREAM_RATE_MIN 8000u
#define AUDIO_STREAM_RATE_MAX 96000u

/* A resampler for a stream: chunks in at in_rate, s16 out at out_rate, with
 * soxr's state (its filter delay) carried from chunk to chunk so the output
 * is the same as one pass over the whole stream. One per session. */
struct audio_resampler;

/* NULL on allocation failure or a rate outside 1000..384000. */
struct audio_resampler *audio_resampler_create(unsigned in_rate, unsigned out_rate);
void audio_resampler_destroy(struct audio_resampler *r);
/* Resamples in[0..n). On 0, *out points to the output samples (owned by r,
 * valid until the next call) and *out_n is their count (soxr holds back its
 * filter delay, a few ms, until later input). ASR_ENOMEM or
 * ASR_E_INTERNAL otherwise. */
int audio_resampler_process(struct audio_resampler *r, const int16_t *in, size_t n, const int16_t **out,
                            size_t *out_n);


#endif
