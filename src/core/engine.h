/* The engine interface: a struct of function pointers (docs/internals/engine.md) and the
 * registry that names the engines compiled in.
 *
 * Adding an engine: write src/engine_<name>.c defining
 *     const struct engine_ops engine_<name> = { ... };
 * and add one line `&engine_<name>,` to the registry table in engine.c.
 * ASR_ENGINE=<name> selects it. Nothing else in the core changes.
 *
 * Contract every engine keeps:
 *   - All calls come from the loop thread of the process.
 *   - submit() and finalize() copy or consume what they need before they
 *     return, and never call done() from inside themselves; done() runs
 *     later, on the loop thread (a CPU-bound engine runs on the libuv thread
 *     pool and calls done() from the after-work callback).
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
 *     session inside done() and then read res->text). */
#ifndef ASRD_ENGINE_H
#define ASRD_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define ENGINE_ABI 1

enum {
    ENGINE_CAP_STREAMING  = 1u << 0,  /* answers per chunk (vs window-based) */
    ENGINE_CAP_WORD_TIMES = 1u << 1,  /* results carry word timings */
    ENGINE_CAP_BATCHING   = 1u << 2,  /* batches requests across sessions */
};

struct config;

/* Process-wide settings handed to load(). */
struct engine_cfg {
    uv_loop_t           *loop;      /* the worker's loop; engine may add handles */
    const struct config *config;    /* all ASR_* settings (mock reads ASR_MOCK_*) */
};

/* Per-session settings handed to session_init(). */
struct engine_session_cfg {
    unsigned sample_rate;           /* of the PCM submit() receives */
};

/* One piece of audio, handed to submit(). The pcm pointer is borrowed for the
 * duration of the call only. */
struct engine_chunk {
    const int16_t *pcm;
    size_t         n;               /* samples */
    unsigned       speech_ms;       /* ms of it the VAD called speech */
    uint64_t       offset_ms;       /* where it starts in the session's audio */
};

/* A result. text is borrowed: valid only during the done() call. */
struct engine_result {
    const char *text;               /* UTF-8, words separated by single spaces */
    size_t      len;
};

/* status is 0 or a negative asr_err (ASR_E_MODEL_ERROR for an engine failure);
 * res is NULL unless status is 0. */
typedef void (*engine_done_fn)(void *arg, int status, const struct engine_result *res);

struct engine_ops {
    const char *name;
    unsigned    abi;                /* ENGINE_ABI */
    unsigned    caps;               /* ENGINE_CAP_* bits */
    size_t      session_size;       /* bytes of per-session state the core allocates */
    int  (*load)(const struct engine_cfg *cfg);   /* once per worker process */
    void (*unload)(void);                          /* at worker exit; may be NULL */
    int  (*session_init)(void *state, const struct engine_session_cfg *cfg);
    int  (*submit)(void *state, const struct engine_chunk *chunk,
                   engine_done_fn done, void *arg);
    int  (*finalize)(void *state, engine_done_fn done, void *arg);
    void (*session_cleanup)(void *state);
};

/* Loads ops as this process's engine: 0, or ASR_EINVAL (an ABI other than
 * ENGINE_ABI, a table missing a required method, a second load while one is
 * loaded) or the engine's load() error. The registry of engines built in
 * (src/engines/registry.h) finds a table by name. */
int engine_load(const struct engine_ops *ops, const struct engine_cfg *cfg);
/* Drops the loaded engine (calls its unload()). Destroy every session first.
 * The engine may close loop handles: run the loop once before loading again. */
void engine_unload(void);
/* The loaded engine (NULL before engine_load). */
const struct engine_ops *engine_current(void);

/* A session of the loaded engine: the core's handle, with the engine's state
 * allocated behind it (session_size bytes). The wrappers below are what the
 * core calls; they check arguments and count outstanding requests. */
struct engine_session;

/* Most requests one session may have outstanding; past it the wrappers answer
 * ASR_EAGAIN. The session layer bounds pending chunks far below this. */
#define ENGINE_MAX_OUTSTANDING 1024

/* A new session of the loaded engine; NULL when no engine is loaded, on
 * allocation failure, or when the engine's session_init() fails. */
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
