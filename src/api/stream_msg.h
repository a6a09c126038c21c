/* Decoding of client text messages (docs/API.md "What the client sends"). Pure:
 * bytes in, a decoded message or an error out; unit-tested and fuzzed
 * without sockets. */
#ifndef ASRD_STREAM_MSG_H
#define ASRD_STREAM_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

enum stream_msg_type { MSG_AUDIO_CHUNK = 1, MSG_STOP, MSG_FINALIZE, MSG_KEEPALIVE };

struct stream_msg {
    enum stream_msg_type type;
    int         has_seq;         /* `sequence` present */
    uint64_t    seq;
    const uint8_t *audio;        /* MSG_AUDIO_CHUNK: PCM bytes in scratch (borrowed) */
    size_t      audio_len;
    int         audio_err;       /* ASR_E_INVALID_AUDIO when data is not valid base64 */
    const char *why;             /* on ASR_E_INVALID_MESSAGE: static reason */
};

/* Decodes one text message. On 0, *out holds the message; its audio points
 * into scratch, owned by the caller (reused per message, no allocation once
 * grown). On ASR_E_INVALID_MESSAGE (not JSON, not an object, no or unknown
 * type, wrong field types, audio_chunk without data, negative sequence),
 * out->why says why. A bad base64 payload is not an invalid message: it is
 * returned as MSG_AUDIO_CHUNK with audio_err set, so the chunk still gets its
 * sequence number and an INVALID_AUDIO answer. */
int stream_msg_decode(const uint8_t *p, size_t n, struct buf *scratch, struct stream_msg *out);

#endif
