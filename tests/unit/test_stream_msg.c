#include "test.h"

#include "base/err.h"
#include "api/stream_msg.h"

#include <sodium.h>

static int dec(const char *s, struct stream_msg *m) {
    static struct buf scratch;
    return stream_msg_decode((const uint8_t *)s, strlen(s), &scratch, m);
}

TEST(stream_msg_audio_chunk) {
    struct stream_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"AAABAA==\",\"sequence\":7}", &m), 0);
    ASSERT_EQ_INT(m.type, MSG_AUDIO_CHUNK);
    ASSERT_EQ_INT(m.has_seq, 1);
    ASSERT_EQ_INT(m.seq, 7);
    ASSERT_EQ_INT(m.audio_len, 4);
    ASSERT_EQ_INT(m.audio[2], 1);
    ASSERT_EQ_INT(m.audio_err, 0);
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"AAAA\"}", &m), 0);
    ASSERT_EQ_INT(m.has_seq, 0);
}

TEST(stream_msg_bad_base64_is_invalid_audio_not_invalid_message) {
    struct stream_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"@@@\"}", &m), 0);
    ASSERT_EQ_INT(m.audio_err, ASR_E_INVALID_AUDIO);
    ASSERT_EQ_INT(dec("{\"type\":\"audio_chunk\",\"data\":\"AAA\"}", &m), 0); /* bad padding */
    ASSERT_EQ_INT(m.audio_err, ASR_E_INVALID_AUDIO);
}

/* Found by fuzz_stream_msg: a raw control character inside a long `data`
 * value (the fast path's span) must give the same verdict as jansson:
 * not JSON, INVALID_MESSAGE. */
TEST(stream_msg_raw_control_char_in_long_data_is_invalid_json) {
    struct stream_msg m;
    char msg[600];
    int n = snprintf(msg, sizeof msg, "{\"type\":\"audio_chunk\",\"data\":\"");
    for (int i = 0; i < 400; i++) msg[n++] = 'A';
    msg[n++] = '\t';
    n += snprintf(msg + n, sizeof msg - (size_t)n, "\"}");
    ASSERT_EQ_INT(dec(msg, &m), ASR_E_INVALID_MESSAGE);
}

TEST(stream_msg_control_messages) {
    struct stream_msg m;
    ASSERT_EQ_INT(dec("{\"type\":\"stop\"}", &m), 0);
    ASSERT_EQ_INT(m.type, MSG_STOP);
    ASSERT_EQ_INT(dec("{\"type\":\"finalize\"}", &m), 0);
    ASSERT_EQ_INT(m.type, MSG_FINALIZE);
    ASSERT_EQ_INT(dec("{\"type\":\"keepalive\",\"extra\":1}", &m), 0);
    ASSERT_EQ_INT(m.type, MSG_KEEPALIVE);
}

TEST(stream_msg_invalid_messages) {
    struct stream_msg m;
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

TEST(stream_msg_deep_nesting_is_refused_not_crashing) {
    static char deep[200010];
    size_t n = 0;
    memcpy(deep, "{\"type\":\"stop\",\"x\":", 19);
    n = 19;
    for (int i = 0; i < 100000; i++) deep[n++] = '[';
    deep[n] = 0;
    struct stream_msg m;
    ASSERT_EQ_INT(dec(deep, &m), ASR_E_INVALID_MESSAGE);
}

/* Long messages take the fast path that decodes `data` in place; it must
 * agree with jansson on everything. */
TEST(stream_msg_fast_path_agrees_with_jansson) {
    static char msg[20000];
    char b64[8000];
    unsigned char raw[3000];
    for (int i = 0; i < 3000; i++) raw[i] = (unsigned char)(i * 7);
    sodium_bin2base64(b64, sizeof b64, raw, 3000, sodium_base64_VARIANT_ORIGINAL);
    struct stream_msg m;
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
TEST(stream_msg_bad_byte_anywhere_in_data_is_found) {
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
        struct stream_msg m;
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
