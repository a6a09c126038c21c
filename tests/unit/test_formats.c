/* Unit tests for src/api/formats.c: the exact text of each format. */
#include "test.h"

#include "api/formats.h"

static const struct engine_word w1[] = {{.text = "go", .len = 2, .start_ms = 460, .end_ms = 640, .confidence = 1},
                                        {.text = "forward", .len = 7, .start_ms = 640, .end_ms = 1170}};
static const struct fmt_segment segs[] = {
    {.start_ms = 210, .end_ms = 1340, .text = "go forward", .len = 10, .words = w1, .n_words = 2},
    {.start_ms = 2000, .end_ms = 2000, .text = "", .len = 0},                /* empty: left out */
    {.start_ms = 3723456, .end_ms = 3725000, .text = "ten \"meters\"", .len = 12},
};
static const struct fmt_transcript tr = {.segs = segs, .n = 3, .duration_ms = 3726100};

static void render(enum fmt_kind k, const char *want) {
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(fmt_render(&b, k, &tr), 0);
    ASSERT_STR_EQ(b.data, want);
    buf_cleanup(&b);
}

TEST(formats_names) {
    ASSERT_EQ_INT(fmt_parse("srt", 3), FMT_SRT);
    ASSERT_EQ_INT(fmt_parse("verbose_json", 12), FMT_VERBOSE_JSON);
    ASSERT_EQ_INT(fmt_parse("vtt ", 4), -1);
    ASSERT_EQ_INT(fmt_parse("", 0), -1);
    ASSERT_STR_EQ(fmt_content_type(FMT_VTT), "text/vtt; charset=utf-8");
}

TEST(formats_text_json_srt_vtt) {
    render(FMT_TEXT, "go forward ten \"meters\"\n");
    render(FMT_JSON, "{\"text\":\"go forward ten \\\"meters\\\"\"}");
    render(FMT_SRT, "1\n00:00:00,210 --> 00:00:01,340\ngo forward\n\n"
                    "2\n01:02:03,456 --> 01:02:05,000\nten \"meters\"\n\n");
    render(FMT_VTT, "WEBVTT\n\n00:00:00.210 --> 00:00:01.340\ngo forward\n\n"
                    "01:02:03.456 --> 01:02:05.000\nten \"meters\"\n\n");
}

TEST(formats_verbose_json) {
    render(FMT_VERBOSE_JSON,
           "{\"task\":\"transcribe\",\"language\":\"english\",\"duration\":3726.100,\"text\":\"go forward ten "
           "\\\"meters\\\"\",\"segments\":[{\"id\":0,\"seek\":0,\"start\":0.210,\"end\":1.340,\"text\":\"go forward\","
           "\"tokens\":[],\"temperature\":0.0,\"avg_logprob\":0.0,\"compression_ratio\":0.0,\"no_speech_prob\":0.0},"
           "{\"id\":1,\"seek\":0,\"start\":3723.456,\"end\":3725.000,\"text\":\"ten \\\"meters\\\"\",\"tokens\":[],"
           "\"temperature\":0.0,\"avg_logprob\":0.0,\"compression_ratio\":0.0,\"no_speech_prob\":0.0}],"
           "\"words\":[{\"word\":\"go\",\"start\":0.460,\"end\":0.640},{\"word\":\"forward\",\"start\":0.640,"
           "\"end\":1.170}]}");
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(fmt_verbose_json(&b, &tr, 0, 0), 0);
    ASSERT_STR_EQ(b.data, "{\"task\":\"transcribe\",\"language\":\"english\",\"duration\":3726.100,"
                          "\"text\":\"go forward ten \\\"meters\\\"\"}");
    buf_cleanup(&b);
}
