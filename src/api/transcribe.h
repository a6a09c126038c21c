/* A transcription of decoded audio: the audio runs through a session of
 * kind REST on the loop, exactly as a stream would (VAD, engine,
 * endpointing), a window of 1 s chunks at a time, and the finals become
 * segments. What POST /v1/transcribe (rest.c) and the job runner (jobrun.c)
 * share (docs/API.md "POST /v1/transcribe", "Jobs").
 *
 * A transcription stops at its first failure: no more audio goes in, the
 * session lets the engine finish what it holds (at most a window), and the
 * result names the failure and the audio it hit. */
#ifndef ASRD_API_TRANSCRIBE_H
#define ASRD_API_TRANSCRIBE_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "core/audio.h"
#include "core/pool.h"

/* The rate uploads are decoded to and transcribed at. */
#define TRANSCRIBE_RATE 16000u
/* Longest audio one transcription takes (a small compressed file can expand
 * a lot): one hour at TRANSCRIBE_RATE. */
#define TRANSCRIBE_MAX_SAMPLES (16000u * 3600u)

struct transcribe_cfg {
    struct api_env *env;           /* borrowed: loop, config, pool, engine */
    enum pool_class pool_class;    /* windowed engines: the class of its utterances (POOL_REST, POOL_BATCH) */
    unsigned    endpointing_ms;    /* 0 = ASR_ENDPOINTING_MS */
    const char *hint;              /* engine text hint (copied); NULL = none */
    size_t      hint_len;
    int         no_words;          /* 1: segments without word times */
    int         background;        /* 1: a job: fed in small slices of loop time, after live work */
    const char *request_id;        /* for the failure's log line (copied) */
    const char *what;              /* "rest" or "job", for the log line (static) */
};

/* The outcome, borrowed for the done call. */
struct transcribe_result {
    int         err;               /* 0, ASR_E_MODEL_ERROR (the engine failed), ASR_E_ENGINE_BUSY
                                      (the engine or the pool refused: backlog full), ASR_E_INTERNAL */
    uint64_t    fail_start_ms;     /* err: the audio it hit, ms of the decoded audio */
    uint64_t    fail_end_ms;
    uint64_t    duration_ms;       /* of the audio */
    const char *json;              /* err 0: {"text":...,"duration_ms":...,"segments":[...]}
                                      (docs/API.md "POST /v1/transcribe", "Answer") */
    size_t      json_len;
    unsigned    segments;          /* err 0: how many */
};

typedef void (*transcribe_done_fn)(void *arg, const struct transcribe_result *r);

struct transcribe;

/* Starts transcribing pcm (TRANSCRIBE_RATE mono; adopted: pcm is zeroed).
 * done(arg, result) runs exactly once, later, on the loop (never inside
 * this call), after which the transcription is gone. Returns NULL when the
 * session cannot be created (pcm is then freed, done never runs). */
struct transcribe *transcribe_start(const struct transcribe_cfg *cfg, struct audio_pcm *pcm,
                                    transcribe_done_fn done, void *arg);
/* Drops a transcription whose done has not run (the client went away, a
 * job canceled): engine requests still out are cancelled; done never runs. */
void transcribe_cancel(struct transcribe *t);
/* Share of the audio answered so far, 0..1. */
double transcribe_progress(const struct transcribe *t);

/* A failure as the error answer of docs/API.md "POST /v1/transcribe":
 * {"error":{"code","message","start_ms","end_ms"}} into out. 0 or ASR_ENOMEM. */
int transcribe_error_json(struct buf *out, const struct transcribe_result *r);
/* The same error object without the "error" wrapper (a job's "error"). */
int transcribe_error_object(struct buf *out, const struct transcribe_result *r);

#endif
