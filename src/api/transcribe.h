/* One audio file's transcription, the machinery the file routes and the
 * jobs share (POST /v1/transcribe in rest.c, POST /v1/audio/transcriptions
 * in openai.c, a job's run in jobrun.c; docs/internals/chunk-pipeline.md
 * "REST uploads", docs/internals/jobs.md).
 *
 * The upload is decoded and resampled on the libuv thread pool
 * (libsndfile, libav, soxr are CPU-bound) a block (32 s) at a time, one
 * block ahead of a session that runs it on the loop exactly as a stream
 * would (VAD, engine, endpointing),
 * a window of 1 s chunks at a time so that an upload weighs on the engine
 * like one busy stream. Its finals come out as segments, in order; it ends
 * with everything transcribed, or at the first part of the audio the engine
 * fails on or refuses, with that span. What the answer looks like is the
 * route's business: this module knows no HTTP.
 *
 * A job's transcription (opts.background) runs after live work: its
 * utterances wait in the inference pool's POOL_BATCH class, and all such
 * transcriptions of a worker together feed at most a few chunks per
 * millisecond of loop time.
 *
 * Counts: rest.chunks and rest.audio_ms (the session's kind), and
 * rest.failed.{model_error,engine_busy,internal,aborted} for transcriptions
 * that did not complete after decoding, whichever route they came by (not
 * a job's: the jobs' metrics count those). */
#ifndef ASRD_API_TRANSCRIBE_H
#define ASRD_API_TRANSCRIBE_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "base/util.h"
#include "core/audio.h"
#include "core/pool.h"
#include "core/session.h"

/* The audio a transcription runs at (the REST sessions' client rate). */
#define TRANSCRIBE_RATE 16000u
/* Longest audio an upload may decode to (a small compressed file can
 * expand a lot): one hour at 16 kHz. */
#define TRANSCRIBE_MAX_SAMPLES (TRANSCRIBE_RATE * 3600u)
/* What one transcription charges to the upload budget beside its body: its
 * two decoded blocks and the decoder (an input block and its resampled
 * output, libsndfile's and soxr's state; a FLAC frame of 8 channels is 2 MB
 * of libFLAC's at most, which this leaves room for). */
#define TRANSCRIBE_DECODE_BYTES ((size_t)4 << 20)

struct transcribe_opts {
    const char *content_type;   /* the upload's type for audio_decode (copied); NULL = sniff */
    const char *hint;           /* text hint for the engine (copied); NULL = none */
    size_t      hint_len;
    /* 1: with a windowed engine, decode partial windows too (ASR_WINDOW_MS,
     * ASR_WINDOW_OVERLAP_MS) and report their newly committed words through
     * on_words before each utterance's final; 0: finals only. */
    int         partial_words;
    const char *request_id;     /* for the log line of a failure (copied) */
    /* POOL_BATCH: a windowed engine's utterances wait in the pool's batch
     * class (a job's); any other value is POOL_REST. */
    enum pool_class pool_class;
    unsigned    endpointing_ms; /* silence that ends an utterance; 0 = ASR_ENDPOINTING_MS */
    /* 1: background work (a job): fed in slices of loop time after live
     * work, at most TRANSCRIBE_BG_CHUNKS_PER_MS chunks per millisecond for
     * all of them together, and not counted in rest.failed. */
    int         background;
};

/* Background transcriptions (jobs) share the loop with live streams: all
 * of them together feed at most this many chunks per millisecond of loop
 * time (VAD and engine calls run on the loop: refilling the windows of
 * several jobs at once was a loop turn of many ms that every stream on the
 * worker waited for). 4 chunks a millisecond is 4,000 s of audio a second:
 * no limit on one job's pace. */
#define TRANSCRIBE_BG_CHUNKS_PER_MS 4

/* How a transcription ended. Borrowed for the on_end call. */
struct transcribe_end {
    int         err;            /* 0: all audio transcribed; else an asr_err */
    const char *msg;            /* err != 0: a one-line message for people */
    int         has_span;       /* the engine failed on or refused the audio at start..end_ms */
    uint64_t    start_ms, end_ms;
    uint64_t    duration_ms;    /* of the audio decoded */
    int         has_input;      /* the decoder opened the file: input says what it found */
    struct audio_input input;   /* the file against its header (cut short, bytes after the audio) */
};

/* Where a transcription reports. Callbacks run on the loop thread; their
 * arguments are borrowed for the call. */
struct transcribe_sink {
    /* The first block is decoded and its first chunk is about to go in.
     * Optional. */
    void (*on_start)(void *ctx);
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
 * and *out; ASR_E_SERVER_BUSY when the worker's upload budget has no room
 * for the decoding (answer 503 with Retry-After); ASR_E_INTERNAL when
 * decoding could not be scheduled or the hint could not be copied. No
 * callback runs after an error. */
int transcribe_start(struct api_env *env, struct buf *body, size_t off, size_t len,
                     const struct transcribe_opts *opts, const struct transcribe_sink *sink, void *ctx,
                     struct transcription **out);

/* The client is gone: no callback runs any more, the audio not yet
 * transcribed is dropped (counted as rest.failed.aborted) and everything is
 * freed (after the thread pool returns, when it is decoding). Call it from
 * the connection's abort hook, never from inside this transcription's own
 * callbacks, and never after on_end. */
void transcribe_cancel(struct transcription *t);

/* Share of the audio answered so far, 0..1 (a job's progress). Before the
 * decoder reached the end the whole is estimated: what the file's header
 * states, or else at least one more block than decoded so far. */
double transcribe_progress(const struct transcription *t);

/* ---- the answer: docs/API.md "POST /v1/transcribe", a job's result ----
 * A transcript gathers the segments a sink is given (on_segment) and makes
 * the JSON POST /v1/transcribe answers and a job stores as its result:
 * {"text","duration_ms","input"?,"segments":[{"start_ms","end_ms","text",
 * "words"?}]}. */
struct transcript {
    struct buf segments;        /* the array's body */
    struct buf text;            /* all finals joined by a space */
    unsigned n_segments;
    int no_words;               /* 1: segments without word times */
    int oom;                    /* a buffer could not grow: the JSON is not made */
};

void transcript_init(struct transcript *tr, int no_words);
void transcript_cleanup(struct transcript *tr);
/* Appends a final (on_segment). */
void transcript_add(struct transcript *tr, const struct sess_final *f);
/* The answer of a transcription that ended well (e->err 0), with e's
 * duration and, when e has one, its input object, into out. 0, or
 * ASR_ENOMEM (out of memory now or during transcript_add). */
int transcript_json(const struct transcript *tr, const struct transcribe_end *e, struct buf *out);

/* A failure as an error object {"code","message"} (with "start_ms" and
 * "end_ms" when e has a span) into out; transcribe_error_json wraps it as
 * {"error":...}, the error answer of docs/API.md "POST /v1/transcribe".
 * 0 or ASR_ENOMEM. */
int transcribe_error_object(struct buf *out, const struct transcribe_end *e);
int transcribe_error_json(struct buf *out, const struct transcribe_end *e);

#endif
