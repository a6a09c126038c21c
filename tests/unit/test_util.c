#include "test.h"

#include "err.h"
#include "util.h"

TEST(util_json_string_escapes_and_repairs_utf8) {
    struct buf b;
    buf_init(&b, 0);
    buf_json_str(&b, "a\"b\\c\n\x01\xc3\xa9\xff", 10);
    ASSERT_STR_EQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\ufffd\"");
    buf_cleanup(&b);
}

TEST(util_buf_limit_is_enforced) {
    struct buf b;
    buf_init(&b, 10);
    ASSERT_EQ_INT(buf_append(&b, "0123456789", 10), 0);
    ASSERT_EQ_INT(buf_append(&b, "x", 1), ASR_ENOMEM);
    ASSERT_EQ_INT(b.len, 10);
    buf_cleanup(&b);
}

TEST(util_parse_u64) {
    uint64_t v;
    ASSERT_EQ_INT(util_parse_u64("16000", 5, 100000, &v), 0);
    ASSERT_EQ_INT(v, 16000);
    ASSERT_EQ_INT(util_parse_u64("", 0, 10, &v), ASR_EINVAL);
    ASSERT_EQ_INT(util_parse_u64("1a", 2, 10, &v), ASR_EINVAL);
    ASSERT_EQ_INT(util_parse_u64("11", 2, 10, &v), ASR_EINVAL);
    ASSERT_EQ_INT(util_parse_u64("18446744073709551616", 20, UINT64_MAX, &v), ASR_EINVAL);
}

TEST(util_err_table_maps_codes_and_statuses) {
    ASSERT_STR_EQ(asr_err_code(ASR_E_CHUNK_TOO_LARGE), "CHUNK_TOO_LARGE");
    ASSERT_EQ_INT(asr_err_http_status(ASR_E_NOT_AUDIO), 415);
    ASSERT_EQ_INT(asr_err_http_status(ASR_E_LENGTH_REQUIRED), 411);
    ASSERT_EQ_INT(asr_err_http_status(ASR_E_SESSION_BUSY), 409);
    ASSERT_STR_EQ(asr_err_code(-9999), "INTERNAL");
}
