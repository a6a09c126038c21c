#include "stream_msg.h"

#include <jansson.h>
#include <sodium.h>
#include <string.h>

#include "err.h"

static int invalid(struct stream_msg *out, const char *why) {
    out->why = why;
    return ASR_E_INVALID_MESSAGE;
}

static int decode_audio(json_t *msg, struct buf *scratch, struct stream_msg *out) {
    json_t *data = json_object_get(msg, "data");
    json_t *seq = json_object_get(msg, "sequence");
    if (!json_is_string(data)) return invalid(out, "audio_chunk needs \"data\": a base64 string");
    if (seq) {
        if (!json_is_integer(seq)) return invalid(out, "\"sequence\" must be an integer");
        if (json_integer_value(seq) < 0) return invalid(out, "\"sequence\" must not be negative");
        out->has_seq = 1;
        out->seq = (uint64_t)json_integer_value(seq);
    }
    const char *b64 = json_string_value(data);
    size_t b64len = json_string_length(data), bin_len = 0;
    buf_reset(scratch);
    if (buf_reserve(scratch, b64len / 4 * 3 + 3) != 0 ||
        sodium_base642bin((unsigned char *)scratch->data, scratch->cap, b64, b64len, NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        out->audio_err = ASR_E_INVALID_AUDIO;
        return 0;
    }
    out->audio = (const uint8_t *)scratch->data;
    out->audio_len = bin_len;
    return 0;
}

int stream_msg_decode(const uint8_t *p, size_t n, struct buf *scratch, struct stream_msg *out) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *msg = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
    int r;
    if (!msg) return invalid(out, "message is not valid JSON");
    if (!json_is_object(msg)) r = invalid(out, "a message must be a JSON object");
    else {
        const char *type = json_string_value(json_object_get(msg, "type"));
        if (!type) r = invalid(out, "message needs a string \"type\"");
        else if (strcmp(type, "audio_chunk") == 0) {
            out->type = MSG_AUDIO_CHUNK;
            r = decode_audio(msg, scratch, out);
        } else if (strcmp(type, "stop") == 0) { out->type = MSG_STOP; r = 0; }
        else if (strcmp(type, "finalize") == 0) { out->type = MSG_FINALIZE; r = 0; }
        else if (strcmp(type, "keepalive") == 0) { out->type = MSG_KEEPALIVE; r = 0; }
        else r = invalid(out, "unknown message type");
    }
    json_decref(msg);
    return r;
}
