/* The engine interface: a struct of function pointers (docs/internals/engine.md).
 * The registry of engines built in is src/engines/registry.c.
 *
 * An engine is one of two kinds (its caps say which):
 *
 *   - STREAMING: answers per chunk, asynchronously on the loop (the mock).
 *     The core calls submit() for each piece of audio and finalize() at each
 *     utterance end, through the wrappers below.
 *   - WINDOWED: decodes a window of audio at a time, synchronously, on a
 *     thread of the inference pool (core/pool.h), one engine instance per
 *     thread (pocketsphinx, Whisper-like engines). The core decides which
 *     windows (docs/internals/windowed-streaming.md): growing windows of
 *     the open utterance for partials, the whole utterance for its final.
 *
 * Contract of a STREAMING engine:
 *   - All calls come from the loop thread of the process.
 *   - submit() and finalize() copy or consume what they need before they
 *     return, and never call done() from inside themselves; done() runs
 *     later, on the loop thread.
 *   - Requests of one session complete in the order they were made, submit
 *     and finalize alike.
 *   - finalize() ends the current utterance: its result text is the whole
 *     utterance (everything submitted since the previous finalize), and the
 *     next submit() starts a new one.
 *   - session_cleanup() may be called with requests outstanding: it drops
 *     them, and their done() never runs.
 *   - If submit()/finalize() return non-zero, done() never runs for it.
 *   - done() may call back into the engine: submit(), finalize() and
 *     session_cleanup() of any session, its own included. After calling a
 *     done() the engine must not touch that session's state again unless it
 *     knows the session is still alive, and results it handed out must not
 *     live in state that session_cleanup() frees (the core may destroy the
 *     session inside done() and then read res->text).
 *
 * Contract of a WINDOWED engine:
 *   - instance_create() runs once per pool thread, on that thread, with the
 *     thread's index in its pool (0 .. threads-1); decode() and
 *     instance_destroy() run on that thread. Instances never share mutable
 *     state without their own locking.
 *   - preload(), when the engine has it, runs once in the master before the
 *     workers fork, with the number of threads of the largest pool: an
 *     engine may build its instances there, and instance_create(index) then
 *     hands out preloaded instance index (each at most once per process).
 *     After the fork every worker has its own copy-on-write view of them, so
 *     the model's pages stay shared between the workers and only what a
 *     decode writes becomes private. The master never decodes.
 *   - decode() reads the window (borrowed for the call), writes words or
 *     text into out with engine_output_word()/engine_output_text(), and
 *     returns 0 or ASR_E_MODEL_ERROR. It never blocks on anything but its
 *     own computation.
 *   - Fillers and silence markers never reach out: words are what a client
 *     should read.
 */
#ifndef ASRD_ENGINE_H
#define ASRD_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/config.h"

#define ENGINE_ABI 2

enum {
    ENGINE_CAP_STREAMING  = 1u << 0,  /* submit/finalize per chunk, answers on the loop */
    ENGINE_CAP_WINDOWED   = 1u << 1,  /* decode() of windows on the inference pool */
    ENGINE_CAP_WORD_TIMES = 1u << 2,  /* results carry word start/end times */
    ENGINE_CAP_CONFIDENCE = 1u << 3,  /* words carry a confidence */
    ENGINE_CAP_HINT       = 1u << 4,  /* uses the session's text hint */
};

/* Process-wide settings handed to load(). */
struct engine_cfg {
    uv_loop_t  *loop;               /* the worker's loop; a streaming engine may add handles */
    const void *settings;           /* the engine's settings struct (settings_size bytes) filled
                                       from its table; borrowed, process lifetime */
};

/* Per-session settings handed to session_init(). */
struct engine_session_cfg {
    unsigned    sample_rate;        /* of the PCM the engine receives (its own rate when it has one) */
    const char *hint;               /* optional text hint: a prompt or the text the speaker is
                                       expected to read; UTF-8, borrowed for the call; NULL = none */
    size_t      hint_len;
};

/* One piece of audio, handed to submit(). The pcm pointer is borrowed for the
 * duration of the call only. */
struct engine_chunk {
    const int16_t *pcm;
    size_t         n;               /* samples */
    unsigned       speech_ms;       /* ms of it the VAD called speech */
    uint64_t       offset_ms;       /* where it starts in the session's audio */
};

/* A recognized word. Times are ms in the session's audio (a window's words
 * are shifted by its offset by the core). confidence is 0..1, or < 0 when
 * the engine does not know. */
struct engine_word {
    const char *text;               /* UTF-8, not NUL-terminated */
    size_t      len;
    uint64_t    start_ms, end_ms;
    float       confidence;
};

/* A result. Everything is borrowed: valid only during the done() call. text
 * is the words joined by single spaces; words is NULL (n_words 0) when the
 * engine gives no word times. */
struct engine_result {
    const char *text;               /* UTF-8, words separated by single spaces */
    size_t      len;
    const struct engine_word *words;
    size_t      n_words;
};

/* status is 0 or a negative asr_err (ASR_E_MODEL_ERROR for an engine failure);
 * res is NULL unless status is 0. */
typedef void (*engine_done_fn)(void *arg, int status, const struct engine_result *res);

/* A window for decode(): the audio (borrowed for the call) and what the
 * engine may use. */
struct engine_window {
    const int16_t *pcm;
    size_t         n;               /* samples at sample_rate */
    unsigned       sample_rate;
    uint64_t       offset_ms;       /* where pcm[0] lies in the session's audio */
    const char    *hint;            /* the session's text hint or NULL; borrowed */
    size_t         hint_len;
    int            final;           /* 1: the whole utterance, for its final; 0: a partial window */
};

/* Where decode() puts its result (owned by the pool; see engine_output_*). */
struct engine_output;
/* Appends a word (copied) with its times relative to the window's first
 * sample and its confidence (< 0: unknown). 0 or ASR_ENOMEM. */
int engine_output_word(struct engine_output *out, const char *w, size_t len, uint64_t start_ms, uint64_t end_ms,
                       float confidence);

struct engine_ops {
    const char *name;
    unsigned    abi;                /* ENGINE_ABI */
    unsigned    caps;               /* ENGINE_CAP_* bits */
    unsigned    sample_rate;        /* Hz the engine wants its audio at (the core resamples); 0 = any */
    /* The engine's own ASR_* settings: the config module fills a struct of
     * settings_size bytes from this table before load() (asrd --help lists
     * them). NULL/0 when it has none. */
    const struct config_opt *settings;
    size_t      n_settings;
    size_t      settings_size;
    int  (*load)(const struct engine_cfg *cfg);   /* once per worker process, on the loop thread */
    void (*unload)(void);                          /* at worker exit; may be NULL */
    /* STREAMING engines. */
    size_t      session_size;       /* bytes of per-session state the core allocates */
    int  (*session_init)(void *state, const struct engine_session_cfg *cfg);
    int  (*submit)(void *state, const struct engine_chunk *chunk,
                   engine_done_fn done, void *arg);
    int  (*finalize)(void *state, engine_done_fn done, void *arg);
    void (*session_cleanup)(void *state);
    /* WINDOWED engines (on pool threads). */
    int   (*preload)(const void *settings, unsigned n_instances); /* in the master; may be NULL */
    void *(*instance_create)(const void *settings, unsigned index); /* NULL on failure */
    void  (*instance_destroy)(void *instance);
    int   (*decode)(void *instance, const struct engine_window *w, struct engine_output *out);
};

/* Loads ops as this process's engine: 0, or ASR_EINVAL (an ABI other than
 * ENGINE_ABI, a table missing a method its caps need, a second load while
 * one is loaded) or the engine's load() error. The registry of engines built
 * in (src/engines/registry.h) finds a table by name. */
int engine_load(const struct engine_ops *ops, const struct engine_cfg *cfg);
/* Drops the loaded engine (calls its unload()). Destroy every session first.
 * The engine may close loop handles: run the loop once before loading again. */
void engine_unload(void);
/* The loaded engine (NULL before engine_load). */
const struct engine_ops *engine_current(void);
/* 1 when ops is a well-formed table of this ABI (every method its caps
 * need is set). */
int engine_ops_valid(const struct engine_ops *ops);

/* A session of a loaded STREAMING engine: the core's handle, with the
 * engine's state allocated behind it (session_size bytes). The wrappers
 * below are what the core calls; they check arguments and count outstanding
 * requests. */
struct engine_session;

/* Most requests one session may have outstanding; past it the wrappers answer
 * ASR_EAGAIN. The session layer bounds pending chunks far below this. */
#define ENGINE_MAX_OUTSTANDING 1024

/* A new session of the loaded engine; NULL when no engine is loaded, the
 * engine is not STREAMING, on allocation failure, or when the engine's
 * session_init() fails. */
struct engine_session *engine_session_create(const struct engine_session_cfg *cfg);
/* Drops outstanding requests (their done never runs) and frees the session.
 * May be called from inside a done() of this or another session. */
void engine_session_destroy(struct engine_session *es);
/* Hand a chunk / end the utterance. On 0, done(arg, ...) runs exactly once,
 * later, on the loop thread, after the session's earlier requests' done; the
 * outstanding count has already dropped when it runs. Otherwise done never
 * runs and the return is ASR_EINVAL (NULL argument), ASR_EAGAIN
 * (ENGINE_MAX_OUTSTANDING reached), ASR_ENOMEM or the engine's own error. */
int  engine_submit(struct engine_session *es, const struct engine_chunk *chunk,
                   engine_done_fn done, void *arg);
int  engine_finalize(struct engine_session *es, engine_done_fn done, void *arg);
/* Requests submitted and not yet completed. */
unsigned engine_outstanding(const struct engine_session *es);

#endif
