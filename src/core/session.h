/* A streaming session (docs/API.md "Streaming"): lifecycle, sequence numbers,
 * validation and rate limit of chunks, VAD-driven utterances, the engine
 * requests they make, and the ordered answers that come back. No I/O: answers
 * leave through a sink the caller provides (api_stream serializes them).
 *
 * Life: CREATED -> ACTIVE -> CLOSING -> CLOSED, changed only by
 * sess_transition(). CREATED until the `session` message is out; CLOSING once
 * stop / idle timeout / shutdown asked for the last final, until every
 * pending answer is out (then sink->on_done fires); CLOSED when the caller
 * is done with it. A session may be detached from its connection (sink NULL)
 * and re-attached on resume; while detached, partials and errors are
 * discarded and finals are kept (bounded) for the next attach. */
#ifndef ASRD_SESSION_H
#define ASRD_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "core/engine.h"
#include "core/feedback.h"
#include "core/pool.h"
#include "core/vad.h"

enum sess_state { SESS_CREATED, SESS_ACTIVE, SESS_CLOSING, SESS_CLOSED };

/* Who drives the session, which decides the counters it moves (docs/API.md
 * "GET /v1/metrics"): a stream counts in chunks, partials, finals, errors and
 * the chunk latencies; a REST upload only in rest.* (engine and VAD
 * counters are shared). */
enum sess_kind { SESS_KIND_STREAM, SESS_KIND_REST };

struct sess_cfg {
    unsigned sample_rate;          /* Hz of the client's audio (chunk sizes and rates count it) */
    unsigned engine_rate;          /* Hz the VAD and the engine run at; chunks at another rate are
                                      resampled (0 = sample_rate). vad.sample_rate is set from it. */
    struct pool *pool;             /* borrowed: a WINDOWED engine's inference pool; NULL = the
                                      loaded STREAMING engine, per chunk */
    enum pool_class final_class;   /* windowed: the class of finals (POOL_FINAL, or POOL_REST) */
    unsigned window_ms;            /* windowed: new utterance audio that makes a partial window;
                                      0 = no partial windows (finals only) */
    unsigned window_overlap_ms;    /* windowed: 0 = every window starts at the utterance start; else
                                      at the committed words' end minus this */
    int      window_wait;          /* windowed: 1 = the partial of the chunk that made a window waits
                                      for it (a file fed as fast as it is answered goes at the windows'
                                      pace); 0 = partials go out at once and a window's words ride on
                                      a later one (live streams: ingest never waits for decoding) */
    unsigned max_utterance_ms;     /* an utterance this long ends with a final (0 = no limit) */
    const char *hint;              /* text hint for the engine (copied); NULL = none (the expected
                                      text when there is one) */
    size_t   hint_len;
    const char *expected;          /* reading feedback: the text the speaker should read (copied,
                                      valid UTF-8, checked by the caller: fb_text_parse); NULL = none */
    size_t   expected_len;
    unsigned verify_max_ms;        /* reading feedback, windowed engines: the session's audio kept
                                      (from its start) for the verification at stop; past it the
                                      verification is refused (ASR_E_TOO_LARGE); 0 = the
                                      verification aligns the session's finals, no second decode */
    size_t   max_chunk_bytes;      /* CHUNK_TOO_LARGE above */
    size_t   rate_bytes_per_sec;   /* token bucket refill; holds 2 s */
    int      max_pending_chunks;   /* chunks waiting for the engine */
    size_t   max_pending_bytes;    /* their PCM bytes (0 = unbounded) */
    int      shed_load;            /* 1: SERVER_BUSY past max_pending_chunks */
    int      rate_abuse_threshold; /* RATE_LIMITED in a row before sess_abusive() */
    struct vad_cfg vad;
    enum sess_kind kind;           /* SESS_KIND_STREAM (0) unless set */
};

/* Timing of one chunk, for `partial.latency_ms` (docs/API.md "partial").
 * buffer_ms: windowed engines, how long the window's oldest new audio
 * waited for the window (0 otherwise). */
struct sess_latency { double buffer_ms, queue_ms, inference_ms, total_ms; };

/* A partial, borrowed for the on_partial call. */
struct sess_partial {
    uint64_t    seq;
    const char *text;              /* per-chunk engines: this chunk's words; windowed: words newly
                                      committed (append-only) */
    size_t      len;
    const char *tentative;         /* windowed: the current uncommitted tail; NULL otherwise */
    size_t      tentative_len;
    int         is_speech;
    int         server_busy;       /* windowed: this chunk's window was skipped (load) */
    struct sess_latency lat;
    const struct fb_view *feedback;/* reading feedback: the expected words' shown statuses, when
                                      this partial brought a new hypothesis; NULL otherwise */
};

/* A final, borrowed for the on_final call. words is NULL (n_words 0) when
 * the engine gives no word times. */
struct sess_final {
    uint64_t    seq;
    const char *text;
    size_t      len;
    uint64_t    start_ms, end_ms;
    const struct engine_word *words;
    size_t      n_words;
    const struct fb_view *feedback;/* reading feedback: the shown statuses after this utterance
                                      (NULL without an expected text or when the final is empty) */
};

/* The verification at the end of a session with an expected text
 * (sess_stop_verify), borrowed for the on_verification call. */
struct sess_verification {
    int         status;            /* 0, or why there is none: ASR_E_SERVER_BUSY (refused under
                                      load), ASR_E_MODEL_ERROR (the decode failed), ASR_E_TOO_LARGE
                                      (the session's audio passed verify_max_ms), ASR_ENOMEM */
    const struct fb_view *feedback;/* status 0: the final status of every expected word (no
                                      smoothing; words never reached are missing) */
    double      score;             /* status 0: share of the expected words that are correct */
    const char *text;              /* status 0: what the verification heard, words space-separated */
    size_t      len;
    uint64_t    audio_ms;          /* audio it decoded (0: no second decode, the session's finals) */
};

/* Where answers go. Every callback is optional except on_error/on_partial/
 * on_final. text pointers are borrowed for the call.
 *
 * Re-entry: on_partial, on_final, on_error, on_speech_started and
 * on_engine_error may call sess_chunk(), sess_stop() or sess_drain() (what
 * that makes ready goes out in the same pass) but must not destroy the
 * session. on_done is the session's last act in the call that fired it
 * (sess_chunk, sess_stop, sess_drain, an engine completion): it may destroy
 * the session, and a caller that was inside one of those functions must not
 * touch the session after it returns. on_pending_low should only resume the
 * caller's input. */
struct sess_sink {
    void (*on_speech_started)(void *ctx, uint64_t seq, uint64_t offset_ms);
    void (*on_partial)(void *ctx, const struct sess_partial *p);
    void (*on_final)(void *ctx, const struct sess_final *f);
    void (*on_error)(void *ctx, int err, int has_seq, uint64_t seq, const char *msg);
    void (*on_done)(void *ctx);          /* CLOSING and nothing left to answer */
    void (*on_pending_low)(void *ctx);   /* pending chunks fell below the limit */
    /* An engine request for this session's audio failed (status
     * ASR_E_MODEL_ERROR, or the engine's own error) or was refused when it
     * was made (ASR_EAGAIN: the engine's backlog is full; ASR_ENOMEM). Fires
     * in answer order, right before the answer the failure spoils: the
     * chunk's MODEL_ERROR (is_final 0; start/end_ms: the chunk's audio) or
     * the utterance's final (is_final 1; start/end_ms: the utterance), which
     * still follows with whatever text did arrive, maybe none. Without this
     * callback that MODEL_ERROR or short final is the only sign. */
    void (*on_engine_error)(void *ctx, int status, int is_final, uint64_t seq, uint64_t start_ms,
                            uint64_t end_ms);
    /* The verification sess_stop_verify() asked for, after the last final
     * (optional; without it the verification is dropped). */
    void (*on_verification)(void *ctx, const struct sess_verification *v);
};

/* Per-session counters, logged when the session ends. */
struct sess_stats {
    uint64_t created_ms;       /* wall clock */
    uint64_t audio_ms;         /* audio accepted */
    uint64_t bytes;            /* PCM bytes accepted */
    uint64_t chunks;           /* chunks received */
    uint64_t partials, finals, errors;
    uint64_t skipped_windows;  /* windowed: windows skipped under load (server_busy) */
};

struct asr_session;

/* The rate a session runs its VAD and engine at for a client's rate: the
 * engine's own when it declares one (engine_rate), else the client's when
 * the VAD takes it, else 16 kHz. */
unsigned sess_rate_for(unsigned client_rate, unsigned engine_rate);

/* Creates a session with a fresh random id. Returns NULL if the VAD or engine
 * session cannot be created (bad cfg, no memory). */
struct asr_session *sess_create(const struct sess_cfg *cfg);
/* Frees everything; outstanding engine requests are dropped. */
void sess_destroy(struct asr_session *s);

/* Attaches the sink that receives answers (NULL detaches). Attaching replays
 * finals kept while detached. */
void sess_attach(struct asr_session *s, const struct sess_sink *sink, void *ctx);

int  sess_transition(struct asr_session *s, enum sess_state to);
enum sess_state sess_state(const struct asr_session *s);
const char *sess_id(const struct asr_session *s);
unsigned sess_sample_rate(const struct asr_session *s);
uint64_t sess_last_sequence(const struct asr_session *s);
const struct sess_stats *sess_stats(const struct asr_session *s);

/* One audio chunk (binary frame or audio_chunk message). pcm/len are the
 * PCM bytes (s16le); pre_err is ASR_E_INVALID_AUDIO when the caller could
 * not decode the audio (bad base64), else 0. has_seq/seq carry an explicit
 * `sequence`. The chunk gets its number and exactly one answer
 * (docs/API.md "Sequence numbers", "Fine points" for precedence).
 * Returns 0 if accepted, else the asr_err it was refused with (its error
 * answer is already queued). now_ns is the arrival time, on util_now_ns()'s
 * clock: the rate bucket runs on it, and the session reads that clock itself
 * when a hold of its input ends (sess_pending_full). */
int sess_chunk(struct asr_session *s, const uint8_t *pcm, size_t len, int pre_err, int has_seq,
               uint64_t seq, uint64_t now_ns);

/* An invalid text message: answered with INVALID_MESSAGE and no sequence,
 * in order behind answers still owed. why must be static storage. */
void sess_invalid_message(struct asr_session *s, const char *why);

/* Ends the open utterance; exactly one final follows (empty if none open). */
int sess_finalize(struct asr_session *s);
/* finalize + CLOSING: on_done fires once everything is answered. Used for
 * stop, idle timeout and shutdown alike. Idempotent. */
int sess_stop(struct asr_session *s);

/* The client's stop of a session with an expected text: sess_stop, and
 * after the last final one verification (on_verification): with a windowed
 * engine and verify_max_ms, the session's whole audio decoded once more (a
 * POOL_FINAL job; refused with ASR_E_SERVER_BUSY when the pool's bounded
 * queue is full, as a window would be); otherwise the session's finals.
 * Without an expected text, the same as sess_stop. Idempotent. */
int sess_stop_verify(struct asr_session *s);

/* Sets the expected text of reading feedback (and the engine's text hint
 * when none was given) on a session that has not taken any audio yet:
 * docs/API.md "Reading feedback", the `config` message. text is copied.
 * Returns 0; ASR_EINVAL when audio came already; ASR_E_BAD_REQUEST with a
 * static reason in *why when the text has no word or is not UTF-8;
 * ASR_ENOMEM. A text set before is replaced. */
int sess_set_expected(struct asr_session *s, const char *text, size_t len, const char **why);
/* Words of the session's expected text (0: none). */
size_t sess_expected_words(const struct asr_session *s);

/* CLOSING without a final: pending chunks are still answered, then on_done
 * fires (a policy close after the refusals that caused it went out). */
int sess_drain(struct asr_session *s);

/* Chunks accepted and not yet answered. */
int sess_pending(const struct asr_session *s);
/* 1 when nothing is owed: every answer (partials and finals) went out. */
int sess_idle(const struct asr_session *s);

/* Utterance ends one chunk can report; more (only possible with huge chunks
 * and tiny endpointing) are merged into the next utterance. */
#define SESS_MAX_FINALS_PER_CHUNK 64
/* Most engine requests one sess_chunk() makes: a submit per piece between
 * utterance ends and a finalize per end. */
#define SESS_MAX_REQUESTS_PER_CHUNK (2 * SESS_MAX_FINALS_PER_CHUNK + 1)
/* Engine requests of this session not completed yet (the engine wrappers
 * refuse past ENGINE_MAX_OUTSTANDING, core/engine.h). A chunk's partial can
 * go out before the finalizes its audio asked for are done, so this is not
 * bounded by the pending chunks alone. */
unsigned sess_engine_outstanding(const struct asr_session *s);
/* 1 when the pending limit is reached (caller pauses reading). A stream
 * without shed_load counts the time from the chunk that reached the limit
 * until answers take pending under it again (on_pending_low) as a hold of
 * its input, which its rate bucket does not charge to the client (docs/API.md
 * "Backpressure", docs/internals/backpressure.md). */
int sess_pending_full(const struct asr_session *s);
/* 1 when the client broke the rate limit rate_abuse_threshold times in a
 * row, or piled up more refusals than the answer ring's bound. */
int sess_abusive(const struct asr_session *s);

/* ---- the session store (store.h) ----
 * A snapshot is the portable state at the last answer the client was given:
 * last sequence answered, stream position, the open utterance (start and the
 * partial texts sent so far), finals sent, finals kept for a detached client,
 * counters. JSON; written by the owner, read by whichever worker resumes. */
#define SESS_DIRTY_CHANGED 1   /* something in the snapshot changed */
#define SESS_DIRTY_FINAL   2   /* a final was emitted (write through) */
/* Returns SESS_DIRTY_* bits gathered since the last call, and clears them. */
int sess_take_dirty(struct asr_session *s);
/* Appends the snapshot to out. 0 or ASR_ENOMEM. */
int sess_snapshot(const struct asr_session *s, struct buf *out);
/* A session rebuilt from another worker's snapshot, with that id. cfg as for
 * sess_create (its sample_rate must match the snapshot's). An utterance open
 * in the snapshot continues: its final carries the earlier text first.
 * NULL on a bad snapshot or no memory. */
struct asr_session *sess_restore(const struct sess_cfg *cfg, const char *id, const void *blob, size_t len);

/* The sample rate a snapshot was made at (0 when unreadable). */
unsigned sess_snapshot_rate(const void *blob, size_t len);

/* Approximate heap bytes held by the session (for the memory budget). */
size_t sess_footprint(const struct asr_session *s);

#endif
