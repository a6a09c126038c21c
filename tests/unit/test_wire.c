#include "test.h"

#include "base/err.h"
#include "api/wire.h"

#include <sodium.h>

static int dec(const char *s, struct wire_client_msg *m) {
    static struct buf scratch;
    return wire_decode_client_msg((const uint8_t *)s, strlen(s), &scratch, m);
}

TEST(wire_decode_audio_chunk) {
    struct wire_client_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"AAABAA==\",\"sequence\":7}", &m), 0);
    ASSERT_EQ_INT(m.type, WIRE_AUDIO_CHUNK);
    ASSERT_EQ_INT(m.has_seq, 1);
    ASSERT_EQ_INT(m.seq, 7);
    ASSERT_EQ_INT(m.audio_len, 4);
    ASSERT_EQ_INT(m.audio[2], 1);
    ASSERT_EQ_INT(m.audio_err, 0);
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"AAAA\"}", &m), 0);
    ASSERT_EQ_INT(m.has_seq, 0);
}

TEST(wire_decode_bad_base64_is_invalid_audio_not_invalid_message) {
    struct wire_client_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"@@@\"}", &m), 0);
    ASSERT_EQ_INT(m.audio_err, ASR_E_INVALID_AUDIO);
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"AAA\"}", &m), 0); /* bad padding */
    ASSERT_EQ_INT(m.audio_err, ASR_E_INVALID_AUDIO);
}

/* Found by fuzz_stream_msg: a raw control character inside a long `data`
 * value (the fast path's span) must give the same verdict as jansson:
 * not JSON, INVALID_MESSAGE. */
TEST(wire_decode_raw_control_char_in_long_data_is_invalid_json) {
    struct wire_client_msg m;
    char msg[600];
    int n = snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"");
    for (int i = 0; i < 400; i++) msg[n++] = 'A';
    msg[n++] = '\t';
    n += snprintf(msg + n, sizeof msg - (size_t)n, "\"}");
    ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
}

TEST(wire_decode_control_messages) {
    struct wire_client_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"stop\"}", &m), 0);
    ASSERT_EQ_INT(m.type, WIRE_STOP);
    ASSERT_EQ_INT(dec("{\"type\":\"finalize\"}", &m), 0);
    ASSERT_EQ_INT(m.type, WIRE_FINALIZE);
    ASSERT_EQ_INT(dec("{\"type\":\"keepalive\",\"extra\":1}", &m), 0);
    ASSERT_EQ_INT(m.type, WIRE_KEEPALIVE);
}

TEST(wire_decode_invalid_messages) {
    struct wire_client_msg m;
    const char *bad[] = {
        "not json", "", "[1,2]", "\"str\"", "{}", "{\"type\":5}", "{\"type\":\"dance\"}",
        "{\"type\":\"audio_chunk\"}", "{\"type\":\"audio_chunk\",\"data\":5}",
        "{\"type\":\"audio_chunk\",\"data\":\"AAAA\",\"sequence\":\"x\"}",
        "{\"type\":\"audio_chunk\",\"data\":\"AAAA\",\"sequence\":1.5}",
        "{\"type\":\"audio_chunk\",\"data\":\"AAAA\",\"sequence\":-1}",
        "{\"type\":\"audio_chunk\",\"data\":\"AAAA\",\"sequence\":99999999999999999999999}",
        "{\"type\":\"stop\",\"type\":\"stop\"}", "{\"type\":\"stop\"", "\xff\xfe{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dec(bad[i], &m) != ASR_E_INVALID_MESSAGE) TEST_FAIL_("accepted: %s", bad[i]);
        ASSERT(m.why != NULL);
    }
}

TEST(wire_decode_deep_nesting_is_refused_not_crashing) {
    static char deep[200010];
    size_t n = 0;
    memcpy(deep, "{\"type\":\"stop\",\"x\":", 19);
    n = 19;
    for (int i = 0; i < 100000; i++) deep[n++] = '[';
    deep[n] = 0;
    struct wire_client_msg m;
    ASSERT_EQ_INT(dec(deep, &m), ASR_E_INVALID_MESSAGE);
}

/* Long messages take the fast path that decodes `data` in place; it must
 * agree with jansson on everything. */
TEST(wire_decode_fast_path_agrees_with_jansson) {
    static char msg[20000];
    char b64[8000];
    unsigned char raw[3000];
    for (int i = 0; i < 3000; i++) raw[i] = (unsigned char)(i * 7);
    sodium_bin2base64(b64, sizeof b64, raw, 3000, sodium_base64_VARIANT_ORIGINAL);
    struct wire_client_msg m;
    /* plain, with extra members before and after, and a nested "data" decoy */
    snprintf(msg, sizeof msg, "{\"meta\":{\"data\":\"decoy\"},\"type\":\"audio_chunk\", \"data\" : \"%s\",\"sequence\":3}", b64);
    ASSERT_EQ_INT(dec(msg, &m), 0);
    ASSERT_EQ_INT(m.audio_len, 3000);
    ASSERT(memcmp(m.audio, raw, 3000) == 0);
    ASSERT_EQ_INT(m.seq, 3);
    /* an escaped slash is valid JSON: falls back to jansson, same bytes */
    char *slash = strchr(b64, '/');
    if (slash) {
        char esc[8200];
        size_t pre = (size_t)(slash - b64);
        snprintf(esc, sizeof esc, "%.*s\\/%s", (int)pre, b64, slash + 1);
        snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"%s\"}", esc);
        ASSERT_EQ_INT(dec(msg, &m), 0);
        ASSERT_EQ_INT(m.audio_len, 3000);
        ASSERT(memcmp(m.audio, raw, 3000) == 0);
    }
    /* duplicate data members are refused */
    snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"%s\",\"data\":\"AAAA\"}", b64);
    ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
    /* broken JSON around a valid data value is refused */
    snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"%s\",}", b64);
    ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
    snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"%s\"", b64);
    ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
    /* a long message whose data is not a string */
    snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"pad\":\"%s\",\"data\":5}", b64);
    ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
}

/* The byte scans over `data` work in blocks of 32 with a byte-wise tail:
 * one bad byte anywhere (in a block, at a block edge, in the tail) must be
 * seen, whatever its neighbours in the alphabet's ranges. Printable
 * non-digits are INVALID_AUDIO; control characters and bytes >= 0x80
 * (invalid UTF-8 alone) break the JSON: INVALID_MESSAGE. */
TEST(wire_decode_bad_byte_anywhere_in_data_is_found) {
    static const unsigned char audio_bad[] = {'@', '[', '`', '{', '*', ',', '.', ':', '-', '_', ' ', '~', 0x7f};
    static const unsigned char json_bad[] = {0x01, 0x09, 0x1f, 0x80, 0xc3, 0xff};
    unsigned char raw[330];
    char b64[460];
    for (size_t i = 0; i < sizeof raw; i++) raw[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 297; len <= 330; len += 3) {   /* 396 .. 440 digits: tails of 12 .. 24 */
        sodium_bin2base64(b64, sizeof b64, raw, len, sodium_base64_VARIANT_ORIGINAL);
        size_t n = strlen(b64);
        ASSERT_EQ_INT(n, len / 3 * 4);
        static char msg[1000];
        int pre = snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"%s\"}", b64);
        struct wire_client_msg m;
        ASSERT_EQ_INT(dec(msg, &m), 0);
        ASSERT_EQ_INT(m.audio_err, 0);
        ASSERT_EQ_INT(m.audio_len, len);
        size_t at = (size_t)pre - n - 2;    /* offset of the value in msg */
        for (size_t i = 0; i < n; i++) {
            char keep = msg[at + i];
            for (size_t b = 0; b < sizeof audio_bad; b++) {
                msg[at + i] = (char)audio_bad[b];
                ASSERT_EQ_INT(dec(msg, &m), 0);
                ASSERT_EQ_INT(m.audio_err, ASR_E_INVALID_AUDIO);
            }
            if (i + 2 < n) {    /* '=' before the last two places is never padding */
                msg[at + i] = '=';
                ASSERT_EQ_INT(dec(msg, &m), 0);
                ASSERT_EQ_INT(m.audio_err, ASR_E_INVALID_AUDIO);
            }
            for (size_t b = 0; b < sizeof json_bad; b++) {
                msg[at + i] = (char)json_bad[b];
                ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
            }
            msg[at + i] = keep;
        }
        ASSERT_EQ_INT(dec(msg, &m), 0);
        ASSERT_EQ_INT(m.audio_err, 0);
    }
}

/* ---- encoders (docs/API.md "What the server sends"): the exact text ---- */

TEST(wire_encode_partial_exact_text) {
    struct buf b;
    buf_init(&b, 0);
    struct sess_latency lat = {.queue_ms = 1.5, .inference_ms = 20.0004, .total_ms = 21.5005};
    buf_puts(&b, "left over from the previous message");
    struct sess_partial p = {.seq = 7, .text = "hi \"you\"", .len = 8, .is_speech = 1, .lat = lat};
    wire_encode_partial(&b, &p, 1700000000123ull);
    ASSERT_STR_EQ(b.data, "{\"type\":\"partial\",\"sequence\":7,\"text\":\"hi \\\"you\\\"\",\"is_speech\":true,"
                          "\"timestamp\":1700000000123,\"latency_ms\":{\"buffer\":0.000,\"queue\":1.500,\"inference\":20.000,"
                          "\"total\":21.501}}");
    p = (struct sess_partial){.seq = 8, .text = "", .len = 0, .is_speech = 0, .lat = lat};
    wire_encode_partial(&b, &p, 5);
    ASSERT_STR_EQ(b.data, "{\"type\":\"partial\",\"sequence\":8,\"text\":\"\",\"is_speech\":false,\"timestamp\":5,"
                          "\"latency_ms\":{\"buffer\":0.000,\"queue\":1.500,\"inference\":20.000,\"total\":21.501}}");
    /* a windowed engine's partial: committed text, the tentative tail, a skipped window */
    lat.buffer_ms = 900.25;
    p = (struct sess_partial){.seq = 9, .text = "go", .len = 2, .tentative = "forward t", .tentative_len = 9,
                              .is_speech = 1, .server_busy = 1, .lat = lat};
    wire_encode_partial(&b, &p, 6);
    ASSERT_STR_EQ(b.data, "{\"type\":\"partial\",\"sequence\":9,\"text\":\"go\",\"tentative\":\"forward t\","
                          "\"server_busy\":true,\"is_speech\":true,\"timestamp\":6,\"latency_ms\":{\"buffer\":900.250,"
                          "\"queue\":1.500,\"inference\":20.000,\"total\":21.501}}");
    buf_cleanup(&b);
}

TEST(wire_encode_final_speech_started_error_exact_text) {
    struct buf b;
    buf_init(&b, 0);
    struct sess_final f = {.seq = 12, .text = "hello world", .len = 11, .start_ms = 300, .end_ms = 1800};
    wire_encode_final(&b, &f, 99);
    ASSERT_STR_EQ(b.data, "{\"type\":\"final\",\"sequence\":12,\"text\":\"hello world\",\"start_ms\":300,"
                          "\"end_ms\":1800,\"timestamp\":99}");
    struct engine_word w[2] = {{.text = "hello", .len = 5, .start_ms = 300, .end_ms = 900, .confidence = 0.5f},
                               {.text = "world", .len = 5, .start_ms = 900, .end_ms = 1800, .confidence = -1}};
    f.words = w;
    f.n_words = 2;
    wire_encode_final(&b, &f, 99);
    ASSERT_STR_EQ(b.data, "{\"type\":\"final\",\"sequence\":12,\"text\":\"hello world\",\"start_ms\":300,"
                          "\"end_ms\":1800,\"timestamp\":99,\"words\":[{\"word\":\"hello\",\"start_ms\":300,"
                          "\"end_ms\":900,\"confidence\":0.500},{\"word\":\"world\",\"start_ms\":900,\"end_ms\":1800}]}");
    wire_encode_speech_started(&b, 3, 200, 42);
    ASSERT_STR_EQ(b.data, "{\"type\":\"speech_started\",\"sequence\":3,\"offset_ms\":200,\"timestamp\":42}");
    wire_encode_error(&b, ASR_E_OUT_OF_ORDER, 1, 4, "expected 5");
    ASSERT_STR_EQ(b.data, "{\"type\":\"error\",\"code\":\"OUT_OF_ORDER\",\"message\":\"expected 5\",\"sequence\":4}");
    wire_encode_error(&b, ASR_E_INVALID_MESSAGE, 0, 0, "bad \"type\"");
    ASSERT_STR_EQ(b.data, "{\"type\":\"error\",\"code\":\"INVALID_MESSAGE\",\"message\":\"bad \\\"type\\\"\"}");
    buf_cleanup(&b);
}

TEST(wire_encode_session_exact_text) {
    struct buf b;
    buf_init(&b, 0);
    struct wire_session s = {
        .session_id = "0123456789abcdef0123456789abcdef", .worker_id = "w\"0", .sample_rate = 16000,
        .resumed = 1, .last_sequence = 41, .max_chunk_bytes = 65536, .max_message_bytes = 88000,
        .max_audio_rate = 64000, .idle_timeout_s = 300, .resume_timeout_s = 60, .endpointing_ms = 250,
    };
    wire_encode_session(&b, &s);
    ASSERT_STR_EQ(b.data, "{\"type\":\"session\",\"session_id\":\"0123456789abcdef0123456789abcdef\","
                          "\"worker_id\":\"w\\\"0\",\"sample_rate\":16000,\"resumed\":true,\"last_sequence\":41,"
                          "\"limits\":{\"max_chunk_bytes\":65536,\"max_message_bytes\":88000,"
                          "\"max_audio_rate_bytes_per_sec\":64000,\"idle_timeout_s\":300,\"resume_timeout_s\":60,\"endpointing_ms\":250}}");
    ASSERT_EQ_INT(b.len, strlen(b.data));
    buf_cleanup(&b);
}

/* ---- reading feedback ------------------------------------------------------ */

TEST(wire_decode_config_messages) {
    struct wire_client_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"expected_text\":\"Caf\\u00e9, s'il vous pla\\u00eet\"}", &m), 0);
    ASSERT_EQ_INT(m.type, WIRE_CONFIG);
    ASSERT_EQ_INT(m.is_reference, 0);
    ASSERT_EQ_INT(m.text_len, strlen("Caf\xc3\xa9, s'il vous pla\xc3\xaet"));
    ASSERT_STR_EQ(m.text, "Caf\xc3\xa9, s'il vous pla\xc3\xaet");
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"reference_id\":\"verse-1.1\",\"other\":1}", &m), 0);
    ASSERT_EQ_INT(m.type, WIRE_CONFIG);
    ASSERT_EQ_INT(m.is_reference, 1);
    ASSERT_STR_EQ(m.text, "verse-1.1");
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"expected_text\":\"\"}", &m), 0);   /* empty: the session says why */
    ASSERT_EQ_INT(m.text_len, 0);
    ASSERT_EQ_INT(dec("{\"type\":\"config\"}", &m), ASR_E_INVALID_MESSAGE);
    ASSERT_STR_EQ(m.why, "config needs \"expected_text\" or \"reference_id\"");
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"expected_text\":\"a\",\"reference_id\":\"b\"}", &m), ASR_E_INVALID_MESSAGE);
    ASSERT_STR_EQ(m.why, "config takes expected_text or reference_id, not both");
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"expected_text\":[\"a\"]}", &m), ASR_E_INVALID_MESSAGE);
    ASSERT_STR_EQ(m.why, "\"expected_text\" must be a string");
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"reference_id\":7}", &m), ASR_E_INVALID_MESSAGE);
    ASSERT_STR_EQ(m.why, "\"reference_id\" must be a string");
    ASSERT_EQ_INT(dec("{\"type\":\"config\",\"expected_text\":\"a\\u0000b\"}", &m), ASR_E_INVALID_MESSAGE);
}

/* A view of three expected words: correct, wrong (heard "x\"y"), pending. */
static struct fb_view view3(struct fb_text **t, struct fb_entry e[3]) {
    const char *why;
    ASSERT_EQ_INT(fb_text_parse("Go \"forward\" now", 16, 0, t, &why), 0);
    e[0] = (struct fb_entry){.status = FB_CORRECT, .heard = "go", .heard_len = 2};
    e[1] = (struct fb_entry){.status = FB_WRONG, .heard = "x\"y", .heard_len = 3};
    e[2] = (struct fb_entry){.status = FB_PENDING};
    return (struct fb_view){.text = *t, .e = e, .n = 3};
}

#define FB3_JSON "[{\"word\":\"Go\",\"status\":\"correct\",\"heard\":\"go\"},{\"word\":\"\\\"forward\\\"\"," \
                 "\"status\":\"wrong\",\"heard\":\"x\\\"y\"},{\"word\":\"now\",\"status\":\"pending\"}]"

TEST(wire_encode_feedback_exact_text) {
    struct fb_text *t;
    struct fb_entry e[3];
    struct fb_view v = view3(&t, e);
    struct buf b;
    buf_init(&b, 0);
    struct sess_partial p = {.seq = 3, .text = "go", .len = 2, .tentative = "x\"y", .tentative_len = 3,
                             .is_speech = 1, .feedback = &v};
    wire_encode_partial(&b, &p, 6);
    ASSERT_STR_EQ(b.data, "{\"type\":\"partial\",\"sequence\":3,\"text\":\"go\",\"tentative\":\"x\\\"y\",\"is_speech\":true,"
                          "\"timestamp\":6,\"latency_ms\":{\"buffer\":0.000,\"queue\":0.000,\"inference\":0.000,"
                          "\"total\":0.000},\"word_feedback\":" FB3_JSON "}");
    struct sess_final f = {.seq = 4, .text = "go x\"y", .len = 6, .start_ms = 1, .end_ms = 2, .feedback = &v};
    wire_encode_final(&b, &f, 7);
    ASSERT_STR_EQ(b.data, "{\"type\":\"final\",\"sequence\":4,\"text\":\"go x\\\"y\",\"start_ms\":1,\"end_ms\":2,"
                          "\"timestamp\":7,\"word_feedback\":" FB3_JSON "}");
    struct sess_verification ver = {.feedback = &v, .score = 1.0 / 3, .text = "go x\"y", .len = 6, .audio_ms = 2500};
    wire_encode_verification(&b, &ver, 8);
    ASSERT_STR_EQ(b.data, "{\"type\":\"verification\",\"score\":0.333,\"counts\":{\"correct\":1,\"minor_mistake\":0,"
                          "\"wrong\":1,\"missing\":0,\"pending\":1},\"text\":\"go x\\\"y\",\"audio_ms\":2500,"
                          "\"timestamp\":8,\"word_feedback\":" FB3_JSON "}");
    ver = (struct sess_verification){.status = ASR_E_SERVER_BUSY};
    wire_encode_verification(&b, &ver, 9);
    ASSERT_STR_EQ(b.data, "{\"type\":\"verification_error\",\"code\":\"SERVER_BUSY\",\"message\":\"the verification "
                          "was refused: the server is loaded; send the recording to POST /v1/transcribe with the same "
                          "expected_text (or reference_id) for the same word_feedback and score\",\"fallback\":"
                          "\"POST /v1/transcribe\",\"timestamp\":9}");
    ver.status = ASR_E_TOO_LARGE;
    wire_encode_verification(&b, &ver, 9);
    ASSERT(strstr(b.data, "\"code\":\"AUDIO_TOO_LONG\"") != NULL);
    wire_encode_config(&b, 3);
    ASSERT_STR_EQ(b.data, "{\"type\":\"config\",\"expected_words\":3}");
    struct wire_session s = {.session_id = "0123456789abcdef0123456789abcdef", .worker_id = "w0", .sample_rate = 16000,
                             .max_chunk_bytes = 1, .max_message_bytes = 2, .max_audio_rate = 3, .idle_timeout_s = 4,
                             .resume_timeout_s = 6, .endpointing_ms = 5, .expected_words = 3};
    wire_encode_session(&b, &s);
    ASSERT_STR_EQ(b.data, "{\"type\":\"session\",\"session_id\":\"0123456789abcdef0123456789abcdef\",\"worker_id\":\"w0\","
                          "\"sample_rate\":16000,\"resumed\":false,\"last_sequence\":0,\"limits\":{\"max_chunk_bytes\":1,"
                          "\"max_message_bytes\":2,\"max_audio_rate_bytes_per_sec\":3,\"idle_timeout_s\":4,"
                          "\"resume_timeout_s\":6,\"endpointing_ms\":5},\"expected_words\":3}");
    ASSERT_EQ_INT(b.len, strlen(b.data));
    buf_cleanup(&b);
    fb_text_destroy(t);
}
