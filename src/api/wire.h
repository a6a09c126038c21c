/* The streaming wire format (docs/API.md "What the client sends", "What the
 * server sends", "The `session` message"): client text messages decoded,
 * server messages encoded. Pure: bytes in, a decoded message or an error
 * out; values in, JSON text out. No sockets, no sessions, no clock (callers
 * pass the wall-clock time), so it is unit-tested (tests/unit/test_wire.c)
 * and fuzzed (tests/fuzz/fuzz_stream_msg.c, fuzz_base64.c) alone. */
#ifndef ASRD_API_WIRE_H
#define ASRD_API_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "core/session.h"

/* ---- client -> server ------------------------------------------------------ */

enum wire_client_type { WIRE_AUDIO_CHUNK = 1, WIRE_STOP, WIRE_FINALIZE, WIRE_KEEPALIVE, WIRE_CONFIG };

struct wire_client_msg {
    enum wire_client_type type;
    int         has_seq;         /* `sequence` present */
    uint64_t    seq;
    const uint8_t *audio;        /* WIRE_AUDIO_CHUNK: PCM bytes in scratch (borrowed) */
    size_t      audio_len;
    int         audio_err;       /* ASR_E_INVALID_AUDIO when data is not valid base64 */
    const char *text;            /* WIRE_CONFIG: expected_text or reference_id, UTF-8 in scratch
                                    (borrowed; NUL-terminated, no NUL inside) */
    size_t      text_len;
    int         is_reference;    /* WIRE_CONFIG: text is a reference_id, not the expected text */
    const char *why;             /* on ASR_E_INVALID_MESSAGE: static reason */
};

/* Decodes one client text message. On 0, *out holds the message; its audio
 * points into scratch, owned by the caller (reused per message, no
 * allocation once grown; during the call it also holds a copy of a long
 * message for jansson, so it grows to the largest message seen). On
 * ASR_E_INVALID_MESSAGE (not JSON, not an object, no or unknown type, wrong
 * field types, audio_chunk without data, negative sequence, config with
 * neither or both of expected_text and reference_id), out->why says why.
 * A config's string is copied into scratch (out->text). A bad base64 payload is not an invalid message: it is returned as
 * WIRE_AUDIO_CHUNK with audio_err set, so the chunk still gets its sequence
 * number and an INVALID_AUDIO answer. */
int wire_decode_client_msg(const uint8_t *p, size_t n, struct buf *scratch, struct wire_client_msg *out);

/* ---- server -> client -------------------------------------------------------
 * Each encoder resets out and writes one whole message into it: out->data
 * holds the JSON text, out->len its length. Text arguments are borrowed for
 * the call and escaped as JSON strings. now_ms becomes the `timestamp` field
 * (Unix ms). out should have no limit: a growth that fails leaves a cut
 * message. */

/* What the `session` message tells (docs/API.md "The `session` message"). */
struct wire_session {
    const char *session_id;      /* borrowed */
    const char *worker_id;       /* borrowed */
    unsigned    sample_rate;     /* Hz */
    int         resumed;         /* 1: a resume */
    uint64_t    last_sequence;
    size_t      max_chunk_bytes;
    size_t      max_message_bytes;
    size_t      max_audio_rate;  /* bytes per second */
    int         idle_timeout_s;
    int         resume_timeout_s;
    int         endpointing_ms;
    size_t      expected_words;  /* reading feedback: words of the expected text (0 = none: omitted) */
};
void wire_encode_session(struct buf *out, const struct wire_session *s);

/* `partial`: one per accepted chunk, so built without printf (which was ~7%
 * of the user-space instructions per chunk). `tentative` only when the
 * session has one (windowed engines), `server_busy` only when true. */
void wire_encode_partial(struct buf *out, const struct sess_partial *p, uint64_t now_ms);

/* `final`: an utterance's text, its span in the session's audio, and its
 * words when the engine gives them. */
void wire_encode_final(struct buf *out, const struct sess_final *f, uint64_t now_ms);

/* Appends words as a JSON array of {"word","start_ms","end_ms"[,"confidence"]}
 * (docs/API.md "final"); REST segments use it too. */
void wire_put_words(struct buf *out, const struct engine_word *w, size_t n);

/* Appends reading feedback as a JSON array, one object per expected word:
 * {"word","status"[,"heard"]} (docs/API.md "Reading feedback"). */
void wire_put_feedback(struct buf *out, const struct fb_view *v);
/* Appends ,"score":..,"counts":{..} for a feedback view (the score is the
 * share of correct words). */
void wire_put_score(struct buf *out, const struct fb_view *v);

/* `verification` at the end of a reading session, or
 * `verification_error` when there is none (v->status != 0), which tells
 * the client to send its recording to POST /v1/transcribe. */
void wire_encode_verification(struct buf *out, const struct sess_verification *v, uint64_t now_ms);

/* `config`: the answer to a config message, the expected text's word count. */
void wire_encode_config(struct buf *out, size_t expected_words);

/* `speech_started`: voice activity begins offset_ms into the session. */
void wire_encode_speech_started(struct buf *out, uint64_t seq, uint64_t offset_ms, uint64_t now_ms);

/* `error`: code is asr_err_code(err); sequence only when has_seq. */
void wire_encode_error(struct buf *out, int err, int has_seq, uint64_t seq, const char *msg);

#endif
