/* api/jobview (the job object, batches, result formats) and the webhook
 * signature and payload of api/webhook. */
#include "test.h"

#include <jansson.h>
#include <sodium.h>

#include "api/jobview.h"
#include "api/webhook.h"
#include "base/err.h"

static struct jobs_view view(void) {
    struct jobs_view v;
    memset(&v, 0, sizeof v);
    v.id = "0123456789abcdef0123456789abcdef";
    v.state = "completed";
    v.owner = "-";
    v.hash = "ab";
    v.opts = "{\"granularity\":\"word\",\"metadata\":\"m\"}";
    v.callback = "https://x.example/h";
    v.batch = "";
    v.request_id = "r-1";
    v.error = "";
    v.result = "{\"text\":\"go forward\",\"duration_ms\":2786,\"segments\":[{\"start_ms\":210,\"end_ms\":2340,"
               "\"text\":\"go forward\",\"words\":[{\"word\":\"go\",\"start_ms\":460,\"end_ms\":640,\"confidence\":0.997},"
               "{\"word\":\"forward\",\"start_ms\":640,\"end_ms\":1170}]}]}";
    v.result_len = strlen(v.result);
    v.hook_state = "delivered";
    v.created_ms = 1700000000123ull;
    v.started_ms = 1700000000200ull;
    v.finished_ms = 1700000001200ull;
    v.attempts = 1;
    v.hook_attempts = 2;
    v.duration_ms = 2786;
    v.progress = 1.0;
    return v;
}

TEST(jobview_time_is_iso_utc_with_ms) {
    char t[40];
    jobview_time(t, sizeof t, 1700000000123ull);
    ASSERT_STR_EQ(t, "2023-11-14T22:13:20.123Z");
    jobview_time(t, sizeof t, 0);
    ASSERT_STR_EQ(t, "1970-01-01T00:00:00.000Z");
}

TEST(jobview_job_object) {
    struct jobs_view v = view();
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(jobview_json(&b, &v, 1), 0);
    json_error_t e;
    json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &e);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "id")), v.id);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), "completed");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "created_at")), "2023-11-14T22:13:20.123Z");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "content_hash")), "sha256:ab");
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "wait_ms")), 77);
    ASSERT_EQ_INT(json_integer_value(json_object_get(j, "run_ms")), 1000);
    ASSERT(json_is_null(json_object_get(j, "batch_id")));
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "options"), "metadata")), "m");
    json_t *hook = json_object_get(j, "webhook");
    ASSERT_STR_EQ(json_string_value(json_object_get(hook, "status")), "delivered");
    ASSERT_EQ_INT(json_integer_value(json_object_get(hook, "attempts")), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "result"), "text")), "go forward");
    json_decref(j);
    /* without the result, and a waiting job: nulls where nothing happened yet */
    buf_reset(&b);
    v.state = "queued";
    v.started_ms = v.finished_ms = 0;
    v.hash = "";
    v.callback = "";
    ASSERT_EQ_INT(jobview_json(&b, &v, 0), 0);
    j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &e);
    ASSERT(j != NULL);
    ASSERT(json_is_null(json_object_get(j, "started_at")));
    ASSERT(json_is_null(json_object_get(j, "content_hash")));
    ASSERT(json_object_get(j, "result") == NULL && json_object_get(j, "webhook") == NULL);
    ASSERT(json_object_get(j, "wait_ms") == NULL);
    json_decref(j);
    buf_cleanup(&b);
}

TEST(jobview_result_formats) {
    struct jobs_view v = view();
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(jobview_result(&b, v.result, v.result_len, FMT_JSON), 0);
    ASSERT(b.len == v.result_len && memcmp(b.data, v.result, b.len) == 0);
    buf_reset(&b);
    ASSERT_EQ_INT(jobview_result(&b, v.result, v.result_len, FMT_TEXT), 0);
    ASSERT_STR_EQ(b.data, "go forward\n");
    buf_reset(&b);
    ASSERT_EQ_INT(jobview_result(&b, v.result, v.result_len, FMT_SRT), 0);
    ASSERT_STR_EQ(b.data, "1\n00:00:00,210 --> 00:00:02,340\ngo forward\n\n");
    buf_reset(&b);
    ASSERT_EQ_INT(jobview_result(&b, v.result, v.result_len, FMT_VTT), 0);
    ASSERT_STR_EQ(b.data, "WEBVTT\n\n00:00:00.210 --> 00:00:02.340\ngo forward\n\n");
    buf_reset(&b);
    ASSERT_EQ_INT(jobview_result(&b, v.result, v.result_len, FMT_VERBOSE_JSON), 0);
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    ASSERT(j != NULL);
    ASSERT_NEAR(json_number_value(json_object_get(j, "duration")), 2.786, 1e-9);
    json_t *w = json_object_get(j, "words");
    ASSERT_EQ_INT(json_array_size(w), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(w, 1), "word")), "forward");
    ASSERT_NEAR(json_number_value(json_object_get(json_array_get(w, 1), "end")), 1.17, 1e-9);
    json_decref(j);
    buf_reset(&b);
    ASSERT_EQ_INT(jobview_result(&b, "not json", 8, FMT_SRT), ASR_E_INTERNAL);
    buf_cleanup(&b);
}

TEST(jobview_batch_counts) {
    const char *ids[] = {"a", "b", "c", "d"};
    const char *st[] = {"completed", "processing", "completed", "expired"};
    struct jobs_batch bt = {.id = "bb", .created_ms = 1700000000123ull, .n = 4, .job_ids = ids, .states = st};
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(jobview_batch_json(&b, &bt), 0);
    json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    ASSERT(j != NULL);
    json_t *c = json_object_get(j, "counts");
    ASSERT_EQ_INT(json_integer_value(json_object_get(c, "completed")), 2);
    ASSERT_EQ_INT(json_integer_value(json_object_get(c, "processing")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(c, "expired")), 1);
    ASSERT(json_is_false(json_object_get(j, "done")));
    ASSERT_EQ_INT(json_array_size(json_object_get(j, "jobs")), 4);
    json_decref(j);
    buf_cleanup(&b);
}

/* The example of the Standard Webhooks specification. */
TEST(webhook_signature_matches_the_standard) {
    ASSERT(sodium_init() >= 0);
    char sig[128];
    const char body[] = "{\"test\": 2432232314}";
    ASSERT_EQ_INT(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                               body, strlen(body), sig, sizeof sig), 0);
    ASSERT_STR_EQ(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* a plain-text secret is its own bytes; a bad whsec_ is refused */
    ASSERT_EQ_INT(webhook_sign("plain", "m", 1, "x", 1, sig, sizeof sig), 0);
    ASSERT(strncmp(sig, "v1,", 3) == 0);
    ASSERT_EQ_INT(webhook_sign("whsec_%%%", "m", 1, "x", 1, sig, sizeof sig), ASR_EINVAL);
    ASSERT_EQ_INT(webhook_sign("k", "m", 1, "x", 1, sig, 10), ASR_EINVAL);
}

TEST(webhook_payload_is_the_job_with_its_result) {
    struct jobs_view v = view();
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(webhook_payload(&b, "job.completed", &v, 1700000002000ull), 0);
    json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "type")), "job.completed");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "timestamp")), "2023-11-14T22:13:22.000Z");
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "data"), "id")), v.id);
    ASSERT(json_object_get(json_object_get(j, "data"), "result") != NULL);
    json_decref(j);
    buf_cleanup(&b);
}
