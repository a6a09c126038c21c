/* The streaming wire format (wire.h). */
#include "api/wire.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <string.h>

#include "base/err.h"

static int invalid(struct wire_client_msg *out, const char *why) {
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

/* The two byte scans over a `data` value (its 4.3 KB for a 100 ms chunk)
 * were 16% of the server's CPU in JSON mode as byte-at-a-time loops (a
 * table lookup, an OR chain). Blocks of 32 with plain range tests give the
 * compiler fixed-length loops it vectorizes at -O2 (16 bytes per step);
 * the tail goes byte by byte. */
#define SCAN_BLOCK 32

/* 1 if a byte of p[0..n) is a control character or not ASCII. */
static int any_ctl_or_high(const unsigned char *p, size_t n) {
    unsigned char bad = 0;
    size_t i = 0;
    for (; i + SCAN_BLOCK <= n; i += SCAN_BLOCK) {
        unsigned char acc = 0;
        for (size_t j = 0; j < SCAN_BLOCK; j++) acc |= (unsigned char)(p[i + j] < 0x20 || p[i + j] >= 0x80);
        bad |= acc;
    }
    for (; i < n; i++) bad |= (unsigned char)(p[i] < 0x20 || p[i] >= 0x80);
    return bad != 0;
}

/* 1 if c is a base64 digit: A-Z a-z 0-9 + / */
static inline unsigned char b64_is_digit(unsigned char c) {
    return (unsigned char)((unsigned char)(c - 'A') < 26) | (unsigned char)((unsigned char)(c - 'a') < 26) |
           (unsigned char)((unsigned char)(c - '0') < 10) | (unsigned char)(c == '+') | (unsigned char)(c == '/');
}

/* 1 if every byte of p[0..n) is a base64 digit. */
static int b64_all_digits(const unsigned char *p, size_t n) {
    unsigned char bad = 0;
    size_t i = 0;
    for (; i + SCAN_BLOCK <= n; i += SCAN_BLOCK) {
        unsigned char acc = 0;
        for (size_t j = 0; j < SCAN_BLOCK; j++) acc |= (unsigned char)(b64_is_digit(p[i + j]) ^ 1);
        bad |= acc;
    }
    for (; i < n; i++) bad |= (unsigned char)(b64_is_digit(p[i]) ^ 1);
    return bad == 0;
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
                if (any_ctl_or_high((const unsigned char *)p + k + 1, e - k - 1)) return 0;
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

/* Strict base64 of a `data` value: the RFC 4648 alphabet, '=' padding to a
 * multiple of four, and canonical (the bits a padded quantum leaves over are
 * zero): exactly what sodium_base642bin(..., VARIANT_ORIGINAL) accepts, which
 * the base64 fuzz target checks against libsodium as its oracle. The decoding
 * itself is OpenSSL's EVP_DecodeBlock: 1.8 us for the 4.3 KB of a 100 ms
 * chunk against libsodium's constant-time decoder's 22.6 us (measured on this
 * machine, docs/BENCHMARKS.md), which was a third of the server's CPU in JSON
 * mode. Constant time buys nothing for audio. (The alphabet check also keeps
 * out what libsodium 1.0.18 got wrong: it took every byte >= 0x80 for a
 * digit, so "\u00c4\u00c4\u00c4\u00c4" decoded to 6 bytes of audio.)
 * Returns the decoded length, or -1. */
static const signed char b64_val[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};  /* digit value + 1; 0 = not a digit */

static long b64_decode_strict(const char *p, size_t n, uint8_t *out) {
    if (n % 4 || n > INT_MAX) return -1;
    if (n == 0) return 0;
    size_t pad = p[n - 1] == '=' ? (p[n - 2] == '=' ? 2 : 1) : 0;
    if (!b64_all_digits((const unsigned char *)p, n - pad)) return -1;
    /* canonical: the last digit before the padding has no stray low bits */
    if (pad && ((b64_val[(unsigned char)p[n - pad - 1]] - 1) & (pad == 2 ? 0x0f : 0x03))) return -1;
    int got = EVP_DecodeBlock(out, (const unsigned char *)p, (int)n);
    if (got < 0 || (size_t)got != n / 4 * 3) return -1;
    return (long)((size_t)got - pad);
}

static int decode_audio(json_t *msg, const char *span, size_t span_len, struct buf *scratch,
                        struct wire_client_msg *out) {
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
    size_t b64len = span ? span_len : json_string_length(data);
    buf_reset(scratch);
    long got = buf_reserve(scratch, b64len / 4 * 3 + 3) == 0
                   ? b64_decode_strict(b64, b64len, (uint8_t *)scratch->data) : -1;
    if (got < 0) {
        out->audio_err = ASR_E_INVALID_AUDIO;
        return 0;
    }
    out->audio = (const uint8_t *)scratch->data;
    out->audio_len = (size_t)got;
    return 0;
}

/* {"type":"config","expected_text":"..."} or {"type":"config","reference_id":"..."}
 * (docs/API.md "Reading feedback"). */
static int decode_config(json_t *msg, struct buf *scratch, struct wire_client_msg *out) {
    json_t *t = json_object_get(msg, "expected_text"), *r = json_object_get(msg, "reference_id");
    if (t && r) return invalid(out, "config takes expected_text or reference_id, not both");
    if (!t && !r) return invalid(out, "config needs \"expected_text\" or \"reference_id\"");
    json_t *v = t ? t : r;
    if (!json_is_string(v)) return invalid(out, t ? "\"expected_text\" must be a string" : "\"reference_id\" must be a string");
    size_t len = json_string_length(v);
    buf_reset(scratch);
    if (buf_append(scratch, json_string_value(v), len) != 0 || buf_append(scratch, "", 1) != 0)
        return invalid(out, "config text too large");
    out->type = WIRE_CONFIG;
    out->text = scratch->data;
    out->text_len = len;
    out->is_reference = r != NULL;
    return 0;
}

int wire_decode_client_msg(const uint8_t *p, size_t n, struct buf *scratch, struct wire_client_msg *out) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    const char *text = (const char *)p, *span = NULL;
    size_t vs = 0, ve = 0;
    /* The fast path: jansson parses a copy with the data value blanked out,
     * made in scratch; jansson copies what it keeps, so scratch is free
     * again for the PCM once json_loadb() returns (span points into p). */
    if (n > 256 && find_data_span(text, n, &vs, &ve)) {
        buf_reset(scratch);
        if (buf_append(scratch, text, vs) == 0 && buf_append(scratch, text + ve, n - ve) == 0) {
            span = text + vs;
            text = scratch->data;
            n = scratch->len;
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
            out->type = WIRE_AUDIO_CHUNK;
            r = decode_audio(msg, span, ve - vs, scratch, out);
        } else if (strcmp(type, "stop") == 0) { out->type = WIRE_STOP; r = 0; }
        else if (strcmp(type, "finalize") == 0) { out->type = WIRE_FINALIZE; r = 0; }
        else if (strcmp(type, "keepalive") == 0) { out->type = WIRE_KEEPALIVE; r = 0; }
        else if (strcmp(type, "config") == 0) r = decode_config(msg, scratch, out);
        else r = invalid(out, "unknown message type");
    }
    json_decref(msg);
    return r;
}

/* ---- server -> client ---------------------------------------------------------- */

void wire_encode_session(struct buf *out, const struct wire_session *s) {
    buf_reset(out);
    /* the id is ours: 32 hex digits, nothing to escape */
    buf_printf(out, "{\"type\":\"session\",\"session_id\":\"%s\",\"worker_id\":", s->session_id);
    buf_json_str(out, s->worker_id, strlen(s->worker_id));
    buf_printf(out,
               ",\"sample_rate\":%u,\"resumed\":%s,\"last_sequence\":%llu,\"limits\":{\"max_chunk_bytes\":%zu,"
               "\"max_message_bytes\":%zu,\"max_audio_rate_bytes_per_sec\":%zu,\"idle_timeout_s\":%d,"
               "\"resume_timeout_s\":%d,\"endpointing_ms\":%d}}",
               s->sample_rate, s->resumed ? "true" : "false", (unsigned long long)s->last_sequence,
               s->max_chunk_bytes, s->max_message_bytes, s->max_audio_rate, s->idle_timeout_s,
               s->resume_timeout_s, s->endpointing_ms);
    if (s->expected_words) {
        out->len--; /* reopen the object */
        buf_printf(out, ",\"expected_words\":%zu}", s->expected_words);
    }
}

void wire_put_feedback(struct buf *b, const struct fb_view *v) {
    buf_puts(b, "[");
    for (size_t i = 0; i < v->n; i++) {
        size_t wl;
        const char *w = fb_text_word(v->text, i, &wl);
        buf_puts(b, i ? ",{\"word\":" : "{\"word\":");
        buf_json_str(b, w, wl);
        buf_puts(b, ",\"status\":\"");
        buf_puts(b, fb_status_name((enum fb_status)v->e[i].status));
        buf_puts(b, "\"");
        if (v->e[i].heard) {
            buf_puts(b, ",\"heard\":");
            buf_json_str(b, v->e[i].heard, v->e[i].heard_len);
        }
        buf_puts(b, "}");
    }
    buf_puts(b, "]");
}

void wire_put_score(struct buf *b, const struct fb_view *v) {
    size_t c[FB__N];
    double score = fb_score(v, c);
    buf_puts(b, ",\"score\":");
    buf_put_fixed3(b, score);
    buf_printf(b, ",\"counts\":{\"correct\":%zu,\"minor_mistake\":%zu,\"wrong\":%zu,\"missing\":%zu,\"pending\":%zu}",
               c[FB_CORRECT], c[FB_MINOR], c[FB_WRONG], c[FB_MISSING], c[FB_PENDING]);
}

void wire_encode_verification(struct buf *out, const struct sess_verification *v, uint64_t now_ms) {
    buf_reset(out);
    if (v->status != 0) {
        const char *code = v->status == ASR_E_TOO_LARGE ? "AUDIO_TOO_LONG" : asr_err_code(v->status);
        const char *why = v->status == ASR_E_SERVER_BUSY ? "the verification was refused: the server is loaded"
                          : v->status == ASR_E_TOO_LARGE ? "the session's audio is longer than the verification takes"
                          : v->status == ASR_E_MODEL_ERROR ? "the engine failed on the session's audio"
                                                           : "the verification could not be made";
        buf_puts(out, "{\"type\":\"verification_error\",\"code\":");
        buf_json_str(out, code, strlen(code));
        buf_printf(out, ",\"message\":\"%s; send the recording to POST /v1/transcribe with the same expected_text "
                        "(or reference_id) for the same word_feedback and score\",\"fallback\":\"POST /v1/transcribe\""
                        ",\"timestamp\":%llu}",
                   why, (unsigned long long)now_ms);
        return;
    }
    buf_puts(out, "{\"type\":\"verification\"");
    wire_put_score(out, v->feedback);
    buf_puts(out, ",\"text\":");
    buf_json_str(out, v->text ? v->text : "", v->len);
    buf_printf(out, ",\"audio_ms\":%llu,\"timestamp\":%llu,\"word_feedback\":", (unsigned long long)v->audio_ms,
               (unsigned long long)now_ms);
    wire_put_feedback(out, v->feedback);
    buf_puts(out, "}");
}

void wire_encode_config(struct buf *out, size_t expected_words) {
    buf_reset(out);
    buf_printf(out, "{\"type\":\"config\",\"expected_words\":%zu}", expected_words);
}

void wire_encode_partial(struct buf *out, const struct sess_partial *p, uint64_t now_ms) {
    buf_reset(out);
    buf_puts(out, "{\"type\":\"partial\",\"sequence\":");
    buf_put_u64(out, p->seq);
    buf_puts(out, ",\"text\":");
    buf_json_str(out, p->text, p->len);
    if (p->tentative) {
        buf_puts(out, ",\"tentative\":");
        buf_json_str(out, p->tentative, p->tentative_len);
    }
    if (p->server_busy) buf_puts(out, ",\"server_busy\":true");
    buf_puts(out, p->is_speech ? ",\"is_speech\":true,\"timestamp\":" : ",\"is_speech\":false,\"timestamp\":");
    buf_put_u64(out, now_ms);
    buf_puts(out, ",\"latency_ms\":{\"buffer\":");
    buf_put_fixed3(out, p->lat.buffer_ms);
    buf_puts(out, ",\"queue\":");
    buf_put_fixed3(out, p->lat.queue_ms);
    buf_puts(out, ",\"inference\":");
    buf_put_fixed3(out, p->lat.inference_ms);
    buf_puts(out, ",\"total\":");
    buf_put_fixed3(out, p->lat.total_ms);
    buf_puts(out, "}");
    if (p->feedback) {
        buf_puts(out, ",\"word_feedback\":");
        wire_put_feedback(out, p->feedback);
    }
    buf_puts(out, "}");
}

void wire_put_words(struct buf *b, const struct engine_word *w, size_t n) {
    buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{\"word\":" : "{\"word\":");
        buf_json_str(b, w[i].text, w[i].len);
        buf_puts(b, ",\"start_ms\":");
        buf_put_u64(b, w[i].start_ms);
        buf_puts(b, ",\"end_ms\":");
        buf_put_u64(b, w[i].end_ms);
        if (w[i].confidence >= 0) {
            buf_puts(b, ",\"confidence\":");
            buf_put_fixed3(b, w[i].confidence);
        }
        buf_puts(b, "}");
    }
    buf_puts(b, "]");
}

void wire_encode_final(struct buf *out, const struct sess_final *f, uint64_t now_ms) {
    buf_reset(out);
    buf_printf(out, "{\"type\":\"final\",\"sequence\":%llu,\"text\":", (unsigned long long)f->seq);
    buf_json_str(out, f->text, f->len);
    buf_printf(out, ",\"start_ms\":%llu,\"end_ms\":%llu,\"timestamp\":%llu", (unsigned long long)f->start_ms,
               (unsigned long long)f->end_ms, (unsigned long long)now_ms);
    if (f->n_words) {
        buf_puts(out, ",\"words\":");
        wire_put_words(out, f->words, f->n_words);
    }
    if (f->feedback) {
        buf_puts(out, ",\"word_feedback\":");
        wire_put_feedback(out, f->feedback);
    }
    buf_puts(out, "}");
}

void wire_encode_speech_started(struct buf *out, uint64_t seq, uint64_t offset_ms, uint64_t now_ms) {
    buf_reset(out);
    buf_printf(out, "{\"type\":\"speech_started\",\"sequence\":%llu,\"offset_ms\":%llu,\"timestamp\":%llu}",
               (unsigned long long)seq, (unsigned long long)offset_ms, (unsigned long long)now_ms);
}

void wire_encode_error(struct buf *out, int err, int has_seq, uint64_t seq, const char *msg) {
    buf_reset(out);
    buf_puts(out, "{\"type\":\"error\",\"code\":");
    buf_json_str(out, asr_err_code(err), strlen(asr_err_code(err)));
    buf_puts(out, ",\"message\":");
    buf_json_str(out, msg, strlen(msg));
    if (has_seq) buf_printf(out, ",\"sequence\":%llu", (unsigned long long)seq);
    buf_puts(out, "}");
}
