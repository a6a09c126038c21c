/* api/jobreq: job options, JSON job requests, multipart/form-data. */
#include "test.h"

#include "api/jobreq.h"
#include "base/err.h"

static char err_[256];

TEST(jobreq_options) {
    struct jobreq_opts o;
    jobreq_opts_init(&o);
    ASSERT_EQ_INT(o.granularity, JOBREQ_WORD);
    ASSERT_EQ_INT(jobreq_set(&o, "callback", "https://x.example/hook?a=1", 26, err_, sizeof err_), 0);
    ASSERT_STR_EQ(o.callback, "https://x.example/hook?a=1");
    ASSERT_EQ_INT(jobreq_set(&o, "callback", "ftp://x/y", 9, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT(strstr(err_, "callback") != NULL);
    ASSERT_EQ_INT(jobreq_set(&o, "callback", "http://", 7, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "callback", "http://a b", 10, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "granularity", "segment", 7, err_, sizeof err_), 0);
    ASSERT_EQ_INT(o.granularity, JOBREQ_SEGMENT);
    ASSERT_EQ_INT(jobreq_set(&o, "granularity", "words", 5, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "endpointing_ms", "500", 3, err_, sizeof err_), 0);
    ASSERT_EQ_INT(o.endpointing_ms, 500);
    ASSERT_EQ_INT(jobreq_set(&o, "endpointing_ms", "29", 2, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "endpointing_ms", "10001", 5, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "endpointing_ms", "", 0, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "hint", "go forward", 10, err_, sizeof err_), 0);
    ASSERT_EQ_INT(jobreq_set(&o, "hint", "\xff", 1, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "hint", "a\0b", 3, err_, sizeof err_), ASR_E_BAD_REQUEST);
    char big[1100];
    memset(big, 'a', sizeof big);
    ASSERT_EQ_INT(jobreq_set(&o, "metadata", big, 1025, err_, sizeof err_), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(jobreq_set(&o, "metadata", big, 1024, err_, sizeof err_), 0);
    ASSERT_EQ_INT(jobreq_set(&o, "api_key", "x", 1, err_, sizeof err_), ASR_E_NOT_FOUND);
}

static int parse(const char *s, struct jobreq *r) { return jobreq_parse_json(s, strlen(s), r, err_, sizeof err_); }

TEST(jobreq_json_requests) {
    struct jobreq r;
    ASSERT_EQ_INT(parse("{\"url\":\"https://a.example/x.wav\",\"callback\":\"http://b/c\",\"granularity\":\"segment\","
                        "\"hint\":\"go\",\"endpointing_ms\":400,\"metadata\":\"m\"}", &r), 0);
    ASSERT_STR_EQ(r.url, "https://a.example/x.wav");
    ASSERT_STR_EQ(r.opts.callback, "http://b/c");
    ASSERT_EQ_INT(r.opts.granularity, JOBREQ_SEGMENT);
    ASSERT_STR_EQ(r.opts.hint, "go");
    ASSERT_EQ_INT(r.opts.endpointing_ms, 400);
    ASSERT_STR_EQ(r.opts.metadata, "m");
    ASSERT_EQ_INT(parse("{\"callback\":\"http://b/c\"}", &r), ASR_E_BAD_REQUEST);
    ASSERT(strstr(err_, "url") != NULL);
    ASSERT_EQ_INT(parse("{\"url\":\"http://a/b\",\"model\":\"x\"}", &r), ASR_E_BAD_REQUEST);
    ASSERT(strstr(err_, "model") != NULL);
    ASSERT_EQ_INT(parse("{\"url\":\"http://a/b\",\"url\":\"http://a/c\"}", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("{\"url\":1}", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("{\"url\":\"file:///etc/passwd\"}", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("{\"url\":\"http://a/b\",\"endpointing_ms\":\"300\"}", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("{\"url\":\"http://a/b\",\"endpointing_ms\":1.5}", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("{\"url\":\"http://a/b\",\"hint\":null}", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("[\"http://a/b\"]", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("{\"url\":", &r), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(parse("", &r), ASR_E_BAD_REQUEST);
}

TEST(jobreq_option_json_round_trip) {
    struct jobreq_opts o, back;
    jobreq_opts_init(&o);
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(jobreq_opts_json(&o, &b), 0);
    ASSERT_STR_EQ(b.data, "{\"granularity\":\"word\"}");
    buf_reset(&b);
    ASSERT_EQ_INT(jobreq_set(&o, "hint", "say \"hi\"", 8, err_, sizeof err_), 0);
    ASSERT_EQ_INT(jobreq_set(&o, "granularity", "segment", 7, err_, sizeof err_), 0);
    ASSERT_EQ_INT(jobreq_set(&o, "endpointing_ms", "250", 3, err_, sizeof err_), 0);
    ASSERT_EQ_INT(jobreq_set(&o, "callback", "http://c/d", 10, err_, sizeof err_), 0);
    ASSERT_EQ_INT(jobreq_run_json(&o, &b), 0);
    ASSERT_STR_EQ(b.data, "{\"granularity\":\"segment\",\"hint\":\"say \\\"hi\\\"\",\"endpointing_ms\":250}");
    ASSERT_EQ_INT(jobreq_parse_run_json(b.data, b.len, &back), 0);
    ASSERT_EQ_INT(back.granularity, JOBREQ_SEGMENT);
    ASSERT_STR_EQ(back.hint, "say \"hi\"");
    ASSERT_EQ_INT(back.endpointing_ms, 250);
    ASSERT_STR_EQ(back.callback, ""); /* not part of a run */
    buf_cleanup(&b);
}

#define CT "multipart/form-data; boundary=XyZ"

TEST(jobreq_multipart_parts) {
    const char body[] = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                        "Content-Type: audio/wav\r\n\r\nRIFF1\r\n--XyZ\r\n"
                        "content-disposition: form-data; name=file; filename=\"b c.flac\"\r\n\r\nfLaC2\r\n--XyZ\r\n"
                        "Content-Disposition: form-data; name=\"callback\"\r\n\r\nhttp://x/y\r\n--XyZ--\r\nepilogue";
    struct jobreq_part p[4];
    size_t n;
    ASSERT_EQ_INT(jobreq_multipart(CT, (const uint8_t *)body, sizeof body - 1, p, 4, &n, err_, sizeof err_), 0);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_INT(p[0].name_len, 4);
    ASSERT(memcmp(p[0].name, "file", 4) == 0);
    ASSERT_EQ_INT(p[0].filename_len, 5);
    ASSERT(memcmp(p[0].ctype, "audio/wav", p[0].ctype_len) == 0);
    ASSERT_EQ_INT(p[0].len, 5);
    ASSERT(memcmp(p[0].data, "RIFF1", 5) == 0);
    ASSERT(memcmp(p[1].filename, "b c.flac", p[1].filename_len) == 0);
    ASSERT(p[1].ctype == NULL);
    ASSERT(memcmp(p[1].data, "fLaC2", p[1].len) == 0);
    ASSERT(p[2].filename == NULL);
    ASSERT(memcmp(p[2].data, "http://x/y", p[2].len) == 0);
    /* the first delimiter at the very start, a quoted boundary */
    const char b2[] = "--a b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\r\n--a c\r\n--a b--";
    ASSERT_EQ_INT(jobreq_multipart("Multipart/Form-Data; charset=x; boundary=\"a b\"", (const uint8_t *)b2,
                                   sizeof b2 - 1, p, 4, &n, err_, sizeof err_), 0);
    ASSERT_EQ_INT(n, 1);
    ASSERT_EQ_INT(p[0].len, 7);
    ASSERT(memcmp(p[0].data, "\r\n--a c", 7) == 0);
}

static int mp(const char *ct, const char *body, size_t max) {
    struct jobreq_part p[4];
    size_t n;
    return jobreq_multipart(ct, (const uint8_t *)body, strlen(body), p, max, &n, err_, sizeof err_);
}

TEST(jobreq_multipart_refusals) {
    ASSERT_EQ_INT(mp("multipart/form-data", "--x\r\n", 4), ASR_E_BAD_REQUEST);             /* no boundary */
    ASSERT_EQ_INT(mp("multipart/form-data; boundary=", "--\r\n", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp("multipart/form-data; boundary=\"x", "--x\r\n", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp("application/json; boundary=x", "--x--", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp(CT, "no delimiter here", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ndata without end", 4),
                  ASR_E_BAD_REQUEST);
    ASSERT(strstr(err_, "closing") != NULL);
    ASSERT_EQ_INT(mp(CT, "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp(CT, "--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp(CT, "--XyZ\r\nContent-Type: audio/wav\r\n\r\nx\r\n--XyZ--", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp(CT, "--XyZ\r\nbroken header line\r\n\r\nx\r\n--XyZ--", 4), ASR_E_BAD_REQUEST);
    ASSERT_EQ_INT(mp(CT, "--XyZjunk", 4), ASR_E_BAD_REQUEST);
    const char two[] = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ\r\n"
                       "Content-Disposition: form-data; name=b\r\n\r\n2\r\n--XyZ--";
    ASSERT_EQ_INT(mp(CT, two, 2), 0);
    ASSERT_EQ_INT(mp(CT, two, 1), ASR_E_BAD_REQUEST);
    ASSERT(strstr(err_, "too many") != NULL);
    ASSERT_EQ_INT(mp(CT, "--XyZ--", 4), 0); /* no parts at all: the caller decides */
}
