/* One uploaded file's transcription, the machinery the file routes share
 * (POST /v1/transcribe in rest.c, POST /v1/audio/transcriptions in
 * openai.c; docs/internals/chunk-pipeline.md "REST uploads").
 *
 * The upload is decoded and resampled on the libuv thread pool
 * (audio_decode: libsndfile, libav, soxr are CPU-bound), then run through a
 * session on the loop exactly as a stream would (VAD, engine, endpointing),
 * a window of 1 s chunks at a time so that an upload weighs on the engine
 * like one busy stream. Its finals come out as segments, in order; it ends
 * with everything transcribed, or at the first part of the audio the engine
 * fails on or refuses, with that span. What the answer looks like is the
 * route's business: this module knows no HTTP.
 *
 * Counts: rest.chunks and rest.audio_ms (the session's kind), and
 * rest.failed.{model_error,engine_busy,internal,aborted} for transcriptions
 * that did not complete after decoding, whichever route they came by. */
#ifndef ASRD_API_TRANSCRIBE_H
#define ASRD_API_TRANSCRIBE_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "base/util.h"
#include "core/session.h"

/* The audio a transcription runs at (the REST sessions' client rate). */
#define TRANSCRIBE_RATE 16000u
/* Longest audio an upload may decode to (a small compressed file can
 * expand a lot): one hour at 16 kHz. */
#define TRANSCRIBE_MAX_SAMPLES (TRANSCRIBE_RATE * 3600u)

struct transcribe_opts {
    const char *content_type;   /* the upload's type for audio_decode (copied); NULL = sniff */
    const char *hint;           /* text hint for the engine (copied); NULL = none */
    size_t      hint_len;
    /* 1: with a windowed engine, decode partial windows too (ASR_WINDOW_MS,
     * ASR_WINDOW_OVERLAP_MS) and report their newly committed words through
     * on_words before each utterance's final; 0: finals only. */
    int         partial_words;
    const char *request_id;     /* for the log line of a failure (copied) */
};

/* How a transcription ended. Borrowed for the on_end call. */
struct transcribe_end {
    int         err;            /* 0: all audio transcribed; else an asr_err */
    const char *msg;            /* err != 0: a one-line message for people */
    int         has_span;       /* the engine failed on or refused the audio at start..end_ms */
    uint64_t    start_ms, end_ms;
    uint64_t    duration_ms;    /* of the decoded audio (0 when decoding failed) */
};

/* Where a transcription reports. Callbacks run on the loop thread; their
 * arguments are borrowed for the call. */
struct transcribe_sink {
    /* The audio is decoded and the first chunk is about to go in. Optional. */
    void (*on_start)(void *ctx, uint64_t duration_ms);
    /* Words of the open utterance that became stable (opts.partial_words,
     * windowed engines): append-only, to be followed by the utterance's
     * final, whose text is authoritative and may differ. Optional. */
    void (*on_words)(void *ctx, const char *text, size_t len);
    /* An utterance's final with text, in order. Not after a failure. */
    void (*on_segment)(void *ctx, const struct sess_final *f);
    /* Exactly once, last, unless transcribe_cancel() came first: the
     * transcription is over (e->err 0) or failed. It may free ctx; the
     * transcription frees itself after it returns. */
    void (*on_end)(void *ctx, const struct transcribe_end *e);
};

struct transcription;

/* Starts transcribing body->data[off, off + len) (an upload, or the file
 * part of a form): the transcription adopts body (left empty) whatever the
 * outcome. env, sink and ctx are borrowed until on_end or cancel. Returns 0
 * and *out, or ASR_E_INTERNAL when decoding could not be scheduled (no
 * callback runs then), or out of memory copying the hint. */
int transcribe_start(struct api_env *env, struct buf *body, size_t off, size_t len,
                     const struct transcribe_opts *opts, const struct transcribe_sink *sink, void *ctx,
                     struct transcription **out);

/* The client is gone: no callback runs any more, the audio not yet
 * transcribed is dropped (counted as rest.failed.aborted) and everything is
 * freed (after the thread pool returns, when it is decoding). Call it from
 * the connection's abort hook, never from inside this transcription's own
 * callbacks, and never after on_end. */
void transcribe_cancel(struct transcription *t);

#endif
