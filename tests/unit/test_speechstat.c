/* Unit tests for tools/asrd-load/speechstat.c: reading a real engine's
 * partials and finals, the chunk that carried a stream position, exact
 * percentiles, and the hypothesis lines for tools/asr-eval/wer.py. */
#include "test.h"

#include <stdint.h>

#include "base/err.h"
#include "speechstat.h"

#define S_(lit) lit, sizeof lit - 1

TEST(speechstat_partial_windowed) {
    struct buf t;
    buf_init(&t, 0);
    struct speechstat_msg m;
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"partial\",\"sequence\":20,\"text\":\"he was not\","
                                          "\"tentative\":\"an ill disposed\",\"is_speech\":true,\"server_busy\":true,"
                                          "\"timestamp\":1795266192754,\"latency_ms\":{\"buffer\":926.474,"
                                          "\"queue\":0.237,\"inference\":288.036,\"total\":1214.683}}"), &m, &t), 0);
    ASSERT_EQ_INT(m.type, SPEECHSTAT_PARTIAL);
    ASSERT(m.has_sequence);
    ASSERT_EQ_INT(m.sequence, 20);
    ASSERT(m.server_busy);
    ASSERT(m.has_latency);
    ASSERT_NEAR(m.lat_total_ms, 1214.683, 1e-9);
    ASSERT_NEAR(m.lat_buffer_ms, 926.474, 1e-9);
    ASSERT(!m.has_span);
    ASSERT_STR_EQ(m.text, "he was not");
    ASSERT_EQ_INT(m.text_len, 10);
    /* A streaming engine's partial: no buffer, server_busy absent. */
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"partial\",\"sequence\":6,\"text\":\"\",\"is_speech\":false,"
                                          "\"latency_ms\":{\"queue\":0.017,\"inference\":50.259,\"total\":50.277}}"),
                                       &m, &t), 0);
    ASSERT(!m.server_busy);
    ASSERT(m.has_latency);
    ASSERT_NEAR(m.lat_buffer_ms, 0, 0);
    ASSERT_STR_EQ(m.text, "");
    buf_cleanup(&t);
}

TEST(speechstat_final_span_and_text) {
    struct buf t;
    buf_init(&t, 0);
    struct speechstat_msg m;
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\",\"sequence\":30,\"text\":\"go forward ten \\u00e9 meters\","
                                          "\"start_ms\":210,\"end_ms\":2340,\"timestamp\":1795266192943,\"words\":"
                                          "[{\"word\":\"go\",\"start_ms\":460,\"end_ms\":640,\"confidence\":0.997}]}"),
                                       &m, &t), 0);
    ASSERT_EQ_INT(m.type, SPEECHSTAT_FINAL);
    ASSERT(m.has_span);
    ASSERT_EQ_INT(m.start_ms, 210);
    ASSERT_EQ_INT(m.end_ms, 2340);
    ASSERT_STR_EQ(m.text, "go forward ten \xc3\xa9 meters");
    ASSERT(!m.has_latency);
    /* The empty final after `stop`: start = end. */
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\",\"sequence\":12,\"text\":\"\",\"start_ms\":400,"
                                          "\"end_ms\":400}"), &m, &t), 0);
    ASSERT(m.has_span);
    ASSERT_EQ_INT(m.start_ms, m.end_ms);
    buf_cleanup(&t);
}

/* Values of the wrong type read as absent; only a non-object fails. */
TEST(speechstat_msg_malformed) {
    struct buf t;
    buf_init(&t, 0);
    struct speechstat_msg m;
    ASSERT_EQ_INT(speechstat_msg_parse(S_("[1,2]"), &m, &t), ASR_EINVAL);
    ASSERT_EQ_INT(m.type, SPEECHSTAT_OTHER);
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\""), &m, &t), ASR_EINVAL);
    ASSERT_EQ_INT(speechstat_msg_parse(S_(""), &m, &t), ASR_EINVAL);
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\",\"type\":\"partial\"}"), &m, &t), ASR_EINVAL);
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\",\"sequence\":-1,\"text\":7,\"start_ms\":500,"
                                          "\"end_ms\":400,\"server_busy\":1,\"latency_ms\":{\"total\":\"x\"}}"),
                                       &m, &t), 0);
    ASSERT_EQ_INT(m.type, SPEECHSTAT_FINAL);
    ASSERT(!m.has_sequence);
    ASSERT(!m.has_span);                 /* end before start */
    ASSERT(!m.server_busy);              /* only true counts */
    ASSERT(!m.has_latency);
    ASSERT_STR_EQ(m.text, "");
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\",\"start_ms\":1.5,\"end_ms\":400}"), &m, &t), 0);
    ASSERT(!m.has_span);
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"session\",\"session_id\":\"x\"}"), &m, &t), 0);
    ASSERT_EQ_INT(m.type, SPEECHSTAT_OTHER);
    /* A text larger than the buffer's bound. */
    struct buf small;
    buf_init(&small, 4);
    ASSERT_EQ_INT(speechstat_msg_parse(S_("{\"type\":\"final\",\"text\":\"too long\"}"), &m, &small), ASR_ENOMEM);
    ASSERT_EQ_INT(m.type, SPEECHSTAT_OTHER);
    buf_cleanup(&small);
    buf_cleanup(&t);
}

/* Chunk k carries [(k-1) c, k c): the audio just before pos is in chunk
 * ceil(pos / c). */
TEST(speechstat_chunk_of) {
    ASSERT_EQ_INT(speechstat_chunk_of(0, 100), 1);
    ASSERT_EQ_INT(speechstat_chunk_of(1, 100), 1);
    ASSERT_EQ_INT(speechstat_chunk_of(100, 100), 1);
    ASSERT_EQ_INT(speechstat_chunk_of(101, 100), 2);
    ASSERT_EQ_INT(speechstat_chunk_of(2340, 100), 24);   /* docs/API.md's example: final 23/24 at 2340 ms */
    ASSERT_EQ_INT(speechstat_chunk_of(1230, 100), 13);   /* ... and "final 13" at end_ms 1230 */
    ASSERT_EQ_INT(speechstat_chunk_of(90, 30), 3);
    ASSERT_EQ_INT(speechstat_chunk_of(91, 30), 4);
    ASSERT_EQ_INT(speechstat_chunk_of(5, 0), 1);
}

/* Nearest rank, against hand-computed values. */
TEST(speechstat_series_percentiles) {
    struct speechstat_series s = {0}, t = {0};
    struct speechstat_pct p;
    speechstat_series_summary(&s, &p);
    ASSERT_EQ_INT(p.count, 0);
    ASSERT_NEAR(p.p95, 0, 0);
    for (int v = 20; v >= 1; v--) speechstat_series_add(&s, v * 10.0);   /* 10, 20, ..., 200 */
    speechstat_series_summary(&s, &p);
    ASSERT_EQ_INT(p.count, 20);
    ASSERT_NEAR(p.p50, 100, 0);          /* rank 10 */
    ASSERT_NEAR(p.p90, 180, 0);          /* rank 18 */
    ASSERT_NEAR(p.p95, 190, 0);          /* rank 19 */
    ASSERT_NEAR(p.p99, 200, 0);          /* rank ceil(19.8) = 20 */
    ASSERT_NEAR(p.max, 200, 0);
    ASSERT_NEAR(p.mean, 105, 1e-12);
    /* One value: every percentile is it. */
    speechstat_series_add(&t, 1500.5);
    speechstat_series_summary(&t, &p);
    ASSERT_NEAR(p.p50, 1500.5, 0);
    ASSERT_NEAR(p.p95, 1500.5, 0);
    /* Merge, then a value added after a summary is sorted in. */
    speechstat_series_merge(&t, &s);
    speechstat_series_add(&t, 5);
    speechstat_series_summary(&t, &p);
    ASSERT_EQ_INT(p.count, 22);
    ASSERT_NEAR(p.max, 1500.5, 0);
    ASSERT_NEAR(p.p50, 100, 0);          /* rank 11 of 5, 10, ..., 200, 1500.5 */
    ASSERT_NEAR(p.p95, 200, 0);          /* rank ceil(20.9) = 21 */
    speechstat_series_cleanup(&s);
    speechstat_series_cleanup(&t);
    ASSERT_EQ_INT(s.n, 0);
}

TEST(speechstat_hyp_lines) {
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(speechstat_hyp_line(&b, "sense_and_sensibility_01_austen_64kb-0880", "he was not an ill disposed young man"), 0);
    ASSERT_EQ_INT(speechstat_hyp_line(&b, "f2", "  two\tfinals\n\njoined  "), 0);
    ASSERT_EQ_INT(speechstat_hyp_line(&b, "f3", ""), 0);
    ASSERT_EQ_INT(buf_append(&b, "", 1), 0);
    ASSERT_STR_EQ(b.data, "sense_and_sensibility_01_austen_64kb-0880\the was not an ill disposed young man\n"
                          "f2\ttwo finals joined\n"
                          "f3\t\n");
    buf_cleanup(&b);
}
