/* Unit tests for src/api/multipart.c: form-data bodies as curl -F, browsers
 * and the OpenAI SDKs send them, and the refusals (multipart.h). */
#include "test.h"

#include <stdint.h>

#include "api/multipart.h"
#include "base/err.h"

#define CT "multipart/form-data; boundary=----formdata-undici-0123456789"
#define B "------formdata-undici-0123456789"

static int parse(struct mp_form *f, const void *p, size_t n, const char *ct, char *err) {
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(buf_append(&b, p, n), 0);
    int rc = mp_parse(f, &b, ct, "file", 1024, err, 160);
    ASSERT(b.data == NULL && b.len == 0); /* adopted */
    return rc;
}

static int parse_str(struct mp_form *f, const char *s, const char *ct, char *err) {
    return parse(f, s, strlen(s), ct, err);
}

TEST(multipart_sdk_form_with_binary_file) {
    /* What the openai npm package sends (undici's FormData), with a file
     * holding CRLF, "--" and NUL bytes. */
    static const uint8_t file[] = {'R', 'I', 'F', 'F', 0, '\r', '\n', '-', '-', '-', '-', 'f', 'o', 'r', 'm', 0xff, '\r', '\n'};
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, B "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\n"
                   "Content-Type: audio/wav\r\n\r\n");
    buf_append(&b, file, sizeof file);
    buf_puts(&b, "\r\n" B "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
                 B "\r\nContent-Disposition: form-data; name=\"timestamp_granularities[]\"\r\n\r\nword\r\n"
                 B "\r\nContent-Disposition: form-data; name=\"timestamp_granularities[]\"\r\n\r\nsegment\r\n"
                 B "--\r\n");
    struct mp_form f;
    char err[160];
    int rc = mp_parse(&f, &b, CT, "file", 1024, err, sizeof err);
    if (rc) TEST_FAIL_("rc %d: %s", rc, err);
    ASSERT_EQ_INT(f.n, 4);
    const struct mp_part *p = mp_find(&f, "file");
    ASSERT(p == &f.parts[0]);
    ASSERT_STR_EQ(p->filename, "speech.wav");
    ASSERT_STR_EQ(p->content_type, "audio/wav");
    ASSERT_EQ_INT(p->len, sizeof file);
    ASSERT(memcmp(p->data, file, sizeof file) == 0);
    p = mp_find(&f, "model");
    ASSERT(p && p->filename == NULL && p->content_type == NULL);
    ASSERT_EQ_INT(p->len, 9);
    ASSERT(memcmp(p->data, "whisper-1", 9) == 0);
    ASSERT_STR_EQ(f.parts[2].name, "timestamp_granularities[]");
    ASSERT(f.parts[2].len == 4 && memcmp(f.parts[2].data, "word", 4) == 0);
    ASSERT(f.parts[3].len == 7 && memcmp(f.parts[3].data, "segment", 7) == 0);
    ASSERT(mp_find(&f, "prompt") == NULL);
    mp_form_cleanup(&f);
    mp_form_cleanup(&f); /* twice is fine */
}

TEST(multipart_curl_form_quoted_boundary_and_preamble) {
    struct mp_form f;
    char err[160];
    const char *body = "preamble to ignore\r\n--X-curl\r\n"
                       "Content-Disposition: form-data; name=\"file\"; filename=\"a b.mp3\"\r\n"
                       "Content-Type: Audio/MPEG\r\n\r\nID3\r\n--X-curl\r\n"
                       "Content-Disposition: form-data; name=\"response_format\"\r\n\r\nverbose_json\r\n"
                       "--X-curl--\r\nepilogue";
    int rc = parse_str(&f, body, "Multipart/Form-Data; charset=utf-8; boundary=\"X-curl\"", err);
    if (rc) TEST_FAIL_("rc %d: %s", rc, err);
    ASSERT_EQ_INT(f.n, 2);
    ASSERT_STR_EQ(f.parts[0].filename, "a b.mp3");
    ASSERT_STR_EQ(f.parts[0].content_type, "audio/mpeg");
    ASSERT(f.parts[0].len == 3 && memcmp(f.parts[0].data, "ID3", 3) == 0);
    ASSERT(f.parts[1].len == 12 && memcmp(f.parts[1].data, "verbose_json", 12) == 0);
    mp_form_cleanup(&f);
}

TEST(multipart_empty_file_and_empty_filename) {
    struct mp_form f;
    char err[160];
    const char *body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\"\r\n"
                       "Content-Type: application/octet-stream\r\n\r\n\r\n--b--\r\n";
    ASSERT_EQ_INT(parse_str(&f, body, "multipart/form-data; boundary=b", err), 0);
    ASSERT_EQ_INT(f.n, 1);
    ASSERT_STR_EQ(f.parts[0].filename, "");
    ASSERT_EQ_INT(f.parts[0].len, 0);
    mp_form_cleanup(&f);
}

static void refused(const char *body, const char *ct, int want, const char *needle) {
    struct mp_form f;
    char err[160];
    int rc = parse_str(&f, body, ct, err);
    if (rc != want) TEST_FAIL_("want %d, got %d (%s) for %.60s", want, rc, err, body);
    if (!strstr(err, needle)) TEST_FAIL_("message \"%s\" lacks \"%s\"", err, needle);
    ASSERT_EQ_INT(f.n, 0);
    mp_form_cleanup(&f);
}

TEST(multipart_refusals) {
    const char *ok = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nx\r\n--b--\r\n";
    refused(ok, NULL, ASR_E_BAD_REQUEST, "Content-Type");
    refused(ok, "application/json", ASR_E_BAD_REQUEST, "multipart/form-data");
    refused(ok, "multipart/mixed; boundary=b", ASR_E_BAD_REQUEST, "multipart/form-data");
    refused(ok, "multipart/form-data", ASR_E_BAD_REQUEST, "boundary");
    refused(ok, "multipart/form-data; boundary=\"\"", ASR_E_BAD_REQUEST, "boundary");
    refused(ok, "multipart/form-data; boundary=\"a\x01" "b\"", ASR_E_BAD_REQUEST, "boundary");
    refused(ok, "multipart/form-data; boundary=0123456789012345678901234567890123456789012345678901234567890123456789X",
            ASR_E_BAD_REQUEST, "boundary");
    refused("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nx\r\n", "multipart/form-data; boundary=b",
            ASR_E_BAD_REQUEST, "closing delimiter");
    refused("", "multipart/form-data; boundary=b", ASR_E_BAD_REQUEST, "closing delimiter");
    refused("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b",
            ASR_E_BAD_REQUEST, "form-data with a name");
    refused("--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b",
            ASR_E_BAD_REQUEST, "form-data with a name");
    refused("--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64\r\n\r\neA==\r\n--b--\r\n",
            "multipart/form-data; boundary=b", ASR_E_BAD_REQUEST, "Content-Transfer-Encoding");
    refused("--b\r\nContent-Disposition: form-data; name=\"files\"\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
            "--c\r\nContent-Type: text/plain\r\n\r\nx\r\n--c--\r\n--b--\r\n",
            "multipart/form-data; boundary=b", ASR_E_BAD_REQUEST, "nested");
}

TEST(multipart_field_size_bound_spares_the_file) {
    struct buf body;
    buf_init(&body, 0);
    char big[3000];
    memset(big, 'a', sizeof big);
    buf_puts(&body, "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n");
    buf_append(&body, big, sizeof big);
    buf_puts(&body, "\r\n--b--\r\n");
    struct mp_form f;
    char err[160];
    ASSERT_EQ_INT(mp_parse(&f, &body, "multipart/form-data; boundary=b", "file", 1024, err, sizeof err), 0);
    ASSERT_EQ_INT(f.parts[0].len, sizeof big);
    mp_form_cleanup(&f);
    buf_init(&body, 0);
    buf_puts(&body, "--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n");
    buf_append(&body, big, sizeof big);
    buf_puts(&body, "\r\n--b--\r\n");
    ASSERT_EQ_INT(mp_parse(&f, &body, "multipart/form-data; boundary=b", "file", 1024, err, sizeof err), ASR_E_TOO_LARGE);
    ASSERT(strstr(err, "prompt"));
    mp_form_cleanup(&f);
}

TEST(multipart_part_and_dash_line_bounds) {
    struct buf body;
    buf_init(&body, 0);
    for (int i = 0; i < MP_MAX_PARTS + 1; i++)
        buf_printf(&body, "--b\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n", i);
    buf_puts(&body, "--b--\r\n");
    struct mp_form f;
    char err[160];
    ASSERT_EQ_INT(mp_parse(&f, &body, "multipart/form-data; boundary=b", "file", 1024, err, sizeof err),
                  ASR_E_BAD_REQUEST);
    ASSERT(strstr(err, "parts"));
    mp_form_cleanup(&f);

    /* Deeply nested multiparts would cost GMime time in every boundary
     * line: the count of "--" lines stops them before GMime runs. */
    buf_init(&body, 0);
    buf_puts(&body, "--b\r\nContent-Disposition: form-data; name=\"x\"\r\nContent-Type: multipart/mixed; boundary=c0\r\n\r\n");
    for (int i = 0; i < MP_MAX_DASH_LINES; i++)
        buf_printf(&body, "--c%d\r\nContent-Type: multipart/mixed; boundary=c%d\r\n\r\n", i, i + 1);
    buf_puts(&body, "\r\n--b--\r\n");
    ASSERT_EQ_INT(mp_parse(&f, &body, "multipart/form-data; boundary=b", "file", 1024, err, sizeof err),
                  ASR_E_BAD_REQUEST);
    ASSERT(strstr(err, "lines starting with --"));
    mp_form_cleanup(&f);
}
