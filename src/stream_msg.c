#include "stream_msg.h"

#include <jansson.h>
#include <sodium.h>
#include <string.h>

#include "err.h"

static int invalid(struct stream_msg *out, const char *why) {
    out->why = why;
    return ASR_E_INVALID_MESSAGE;
}

/* Why jansson refused the text. Valid JSON that jansson cannot hold (an
 * integer beyond 2^63 - 1, \u0000 in a string) or that breaks a rule of
 * ours (duplicate keys) is named as such rather than called "not JSON". */
static const char *json_why(const json_error_t *e) {
    switch (json_error_code(e)) {
    case json_error_numeric_overflow: return "a number is out of range (\"sequence\" must be below 2^63)";
    case json_error_duplicate_key: return "a key appears twice in the message";
    case json_error_null_character: return "\\u0000 is not allowed in a string";
    case json_error_stack_overflow: return "message nested too deeply";
    default: return "message is not valid JSON";
    }
}

/* Performance (docs/BENCHMARKS.md): jansson lexes strings a byte at a time
 * into a growing buffer, which for a 4 KB+ base64 `data` value costs more
 * than everything else a chunk does. find_data_span() finds the top-level
 * "data" member's string value when it holds no escapes, so the message is
 * parsed by jansson with that value blanked out, and the base64 is decoded
 * straight from the original bytes. Anything unusual (escapes, a non-string
 * value, odd nesting) is left to jansson alone. */
static int find_data_span(const char *p, size_t n, size_t *vs, size_t *ve) {
    int depth = 0, expect_key = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            size_t j = i + 1;
            int esc = 0;
            while (j < n && p[j] != '"') {
                if (p[j] == '\\') { esc = 1; j++; }
                j++;
            }
            if (j >= n) return 0;
            int is_data_key = depth == 1 && expect_key && !esc && j - i - 1 == 4 && memcmp(p + i + 1, "data", 4) == 0;
            if (depth == 1 && expect_key) expect_key = 0;
            i = j;
            if (is_data_key) {
                size_t k = j + 1;
                while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\n' || p[k] == '\r')) k++;
                if (k >= n || p[k] != ':') return 0;
                k++;
                while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\n' || p[k] == '\r')) k++;
                if (k >= n || p[k] != '"') return 0;
                const char *q = memchr(p + k + 1, '"', n - k - 1);
                if (!q || memchr(p + k + 1, '\\', (size_t)(q - p) - k - 1)) return 0;
                size_t e = (size_t)(q - p);
                /* a raw control character (invalid JSON) or any non-ASCII
                 * byte (maybe invalid UTF-8): leave the verdict to jansson */
                unsigned char ctl = 0;
                for (size_t x = k + 1; x < e; x++) {
                    unsigned char ch = (unsigned char)p[x];
                    ctl |= (unsigned char)(ch < 0x20 || ch >= 0x80);
                }
                if (ctl) return 0;
                *vs = k + 1;
                *ve = e;
                return 1;
            }
            continue;
        }
        if (c == '{' || c == '[') { depth++; expect_key = c == '{' && depth == 1; }
        else if (c == '}' || c == ']') depth--;
        else if (c == ',' && depth == 1) expect_key = 1;
    }
    return 0;
}

/* libsodium 1.0.18 takes every byte >= 0x80 for a base64 digit (a negative
 * char slips through its range checks), so "\u00c4\u00c4\u00c4\u00c4" decoded
 * to 6 bytes of audio. Only the alphabet and '=' may reach it. */
static int b64_alphabet_only(const char *p, size_t n) {
    static unsigned char ok[256];
    if (!ok['A']) {
        for (int c = 0; c < 256; c++)
            ok[c] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                    c == '/' || c == '=';
    }
    unsigned char bad = 0;
    for (size_t i = 0; i < n; i++) bad |= (unsigned char)!ok[(unsigned char)p[i]];
    return !bad;
}

static struct buf blanked_;  /* the message with its data value blanked; loop thread only */

static int decode_audio(json_t *msg, const char *span, size_t span_len, struct buf *scratch,
                        struct stream_msg *out) {
    json_t *data = json_object_get(msg, "data");
    json_t *seq = json_object_get(msg, "sequence");
    if (!json_is_string(data)) return invalid(out, "audio_chunk needs \"data\": a base64 string");
    if (seq) {
        if (!json_is_integer(seq)) return invalid(out, "\"sequence\" must be an integer");
        if (json_integer_value(seq) < 0) return invalid(out, "\"sequence\" must not be negative");
        out->has_seq = 1;
        out->seq = (uint64_t)json_integer_value(seq);
    }
    const char *b64 = span ? span : json_string_value(data);
    size_t b64len = span ? span_len : json_string_length(data), bin_len = 0;
    buf_reset(scratch);
    if (!b64_alphabet_only(b64, b64len) || buf_reserve(scratch, b64len / 4 * 3 + 3) != 0 ||
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
    const char *text = (const char *)p, *span = NULL;
    size_t vs = 0, ve = 0;
    if (n > 256 && find_data_span(text, n, &vs, &ve)) {
        buf_reset(&blanked_);
        if (buf_append(&blanked_, text, vs) == 0 && buf_append(&blanked_, text + ve, n - ve) == 0) {
            span = text + vs;
            text = blanked_.data;
            n = blanked_.len;
        }
    }
    json_t *msg = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
    int r;
    if (!msg) return invalid(out, json_why(&jerr));
    if (!json_is_object(msg)) r = invalid(out, "a message must be a JSON object");
    else {
        const char *type = json_string_value(json_object_get(msg, "type"));
        if (!type) r = invalid(out, "message needs a string \"type\"");
        else if (strcmp(type, "audio_chunk") == 0) {
            out->type = MSG_AUDIO_CHUNK;
            r = decode_audio(msg, span, ve - vs, scratch, out);
        } else if (strcmp(type, "stop") == 0) { out->type = MSG_STOP; r = 0; }
        else if (strcmp(type, "finalize") == 0) { out->type = MSG_FINALIZE; r = 0; }
        else if (strcmp(type, "keepalive") == 0) { out->type = MSG_KEEPALIVE; r = 0; }
        else r = invalid(out, "unknown message type");
    }
    json_decref(msg);
    return r;
}
