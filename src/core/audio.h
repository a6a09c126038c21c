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

/* ---- decoding a body a block at a time ----
 * The same decoding as audio_decode (the same types, checks and errors),
 * handing out the audio in pieces, so a caller holds the body and one block
 * of audio rather than all of it (POST /v1/transcribe decodes ahead of the
 * session this way). Not thread-safe; one thread at a time may use a
 * decoder, any thread (the libuv pool). */
struct audio_decoder;

/* What an upload's bytes held against what its header says (docs/API.md
 * "POST /v1/transcribe", the answer's `input`). */
struct audio_input {
    unsigned in_rate;            /* the audio's own rate (raw PCM: its rate parameter) */
    uint64_t decoded_frames;     /* frames decoded so far, at in_rate */
    uint64_t declared_frames;    /* frames the header states, 0 = it states none (raw PCM, Ogg, MP3,
                                    a WAV data size of 0 or 0xFFFFFFFF) */
    int      truncated;          /* the header states more audio than the bytes hold (a WAV data
                                    chunk longer than what follows it; a FLAC ending before its
                                    STREAMINFO's total without a decode error) */
    uint64_t trailing_bytes;     /* WAV: bytes after the data chunk that no well-formed chunk
                                    within the RIFF size accounts for (audio behind a header that
                                    states less, garbage); not decoded */
};

/* Opens data[0..len) for decoding. data is borrowed and must stay valid and
 * unchanged until audio_decoder_close. What the header decides is decided
 * here, with audio_decode's errors: ASR_E_BAD_REQUEST, ASR_E_NOT_AUDIO,
 * ASR_E_INVALID_AUDIO (unsupported layout, raw PCM not whole frames),
 * ASR_E_TOO_LARGE (a stated length over max_samples), ASR_EINVAL (target
 * rate), ASR_ENOMEM; the message in errbuf. On 0, *out is the decoder
 * (caller owns: audio_decoder_close). */
int audio_decoder_open(const uint8_t *data, size_t len, const char *content_type, unsigned target_rate,
                       size_t max_samples, struct audio_decoder **out, char *errbuf, size_t errlen);

/* Decodes the next up to want samples (mono s16 at target_rate) into
 * dst[0..want). *got < want only at the end of the audio (then 0 from every
 * later call). Errors found on the way end the decoding (every later call
 * returns the same): ASR_E_INVALID_AUDIO (it breaks part-way, or the file
 * holds no samples at all), ASR_E_NOT_AUDIO (a read error before any
 * audio), ASR_E_TOO_LARGE (more than max_samples in all), ASR_ENOMEM,
 * ASR_E_INTERNAL; *got is 0 then and errbuf holds the message. The memory a
 * decoder holds beside the body is bounded (one input block and its
 * resampled output, libsndfile's and soxr's state), whatever the file. */
int audio_decoder_read(struct audio_decoder *d, int16_t *dst, size_t want, size_t *got, char *errbuf,
                       size_t errlen);

/* The input report so far; final once audio_decoder_read reached the end. */
void audio_decoder_input(const struct audio_decoder *d, struct audio_input *in);

void audio_decoder_close(struct audio_decoder *d);   /* d may be NULL */

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
