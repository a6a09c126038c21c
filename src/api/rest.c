/* docs/API.md "POST /v1/transcribe".
 *
 * The upload goes to api/transcribe (decoding on the thread pool, then a
 * session a window of chunks at a time); this file answers with its finals
 * as segments or, at the first part of the audio the engine fails on or
 * refuses, with an error naming that part. With an expected text
 * (expected_text or reference_id: docs/API.md "Reading feedback") the
 * answer also has the finals' words against it, and the text goes to the
 * engine as its hint. */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/reference.h"
#include "api/transcribe.h"
#include "api/wire.h"
#include "base/err.h"
#include "base/metrics.h"
#include "core/feedback.h"

/* One request: the transcription (api/transcribe.h) and the answer it
 * builds. Freed when answered (on_end) or when the client goes (abort). */
struct rest_req {
    struct http_conn *hc;         /* borrowed */
    struct transcription *tx;     /* the transcription; it frees itself after on_end */
    struct buf segments;          /* JSON array body of segments */
    struct buf text;              /* all finals joined */
    int    n_segments;
    int    oom;                   /* segments or text could not grow: answer 500, not a cut list */
    struct buf expected;          /* owned: reading feedback's expected text (empty: none) */
};

static void req_free(struct rest_req *r) {
    buf_cleanup(&r->segments);
    buf_cleanup(&r->text);
    buf_cleanup(&r->expected);
    free(r);
}

/* The connection closed before the answer: the transcription ends at once
 * (transcribe_cancel counts it). Called by the HTTP layer when it frees the
 * connection, never from inside a session callback. */
static void rest_abort(void *ctx) {
    struct rest_req *r = ctx;
    transcribe_cancel(r->tx);
    req_free(r);
}

#define OOM_BODY "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}"

static void respond_and_forget(struct rest_req *r, int status, const char *body, size_t len, const char *extra) {
    struct http_conn *hc = r->hc;
    http_set_abort(hc, NULL, NULL);
    http_respond(hc, status, "application/json", body, len, extra);
}

/* The error answer of a failed transcription, with the span it hit. */
static void respond_failure(struct rest_req *r, const struct transcribe_end *e) {
    int err = e->err;
    struct buf body;
    buf_init(&body, 0);
    int bad = buf_puts(&body, "{\"error\":{\"code\":");
    bad |= buf_json_str(&body, asr_err_code(err), strlen(asr_err_code(err)));
    bad |= buf_puts(&body, ",\"message\":");
    bad |= buf_json_str(&body, e->msg, strlen(e->msg));
    bad |= buf_printf(&body, ",\"start_ms\":%llu,\"end_ms\":%llu}}", (unsigned long long)e->start_ms,
                      (unsigned long long)e->end_ms);
    if (!bad)
        respond_and_forget(r, asr_err_http_status(err), body.data, body.len,
                           err == ASR_E_ENGINE_BUSY ? "Retry-After: 1\r\n" : NULL);
    else
        respond_and_forget(r, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
    buf_cleanup(&body);
}

/* Reading feedback of an upload (docs/API.md "Reading feedback"): every
 * final's words against the expected text, as the verification at the
 * end of a stream: word_feedback, score and counts appended to the body's
 * open object. 0 or ASR_ENOMEM. */
static int put_feedback(struct rest_req *r, struct buf *b) {
    struct fb_text *t = NULL;
    const char *why;
    struct fb_session *f = NULL;
    struct fb_entry *e = NULL;
    int rc = fb_text_parse(r->expected.data, r->expected.len, FB_TEXT_MAX_WORDS, &t, &why);
    if (rc == 0 && !(f = fb_create(t, 0))) rc = ASR_ENOMEM;
    if (rc == 0 && !(e = calloc(fb_text_count(t), sizeof *e))) rc = ASR_ENOMEM;
    if (rc == 0) rc = fb_evaluate_text(f, r->text.data ? r->text.data : "", r->text.len, 1, e);
    if (rc == 0) {
        struct fb_view v = {.text = t, .e = e, .n = fb_text_count(t)};
        wire_put_score(b, &v);
        buf_puts(b, ",\"word_feedback\":");
        wire_put_feedback(b, &v);
    }
    free(e);
    fb_destroy(f);
    fb_text_destroy(t);
    return rc == 0 ? 0 : ASR_ENOMEM;
}

static void rest_segment(void *ctx, const struct sess_final *f) {
    struct rest_req *r = ctx;
    const char *t = f->text;
    size_t n = f->len;
    int bad = buf_printf(&r->segments, "%s{\"start_ms\":%llu,\"end_ms\":%llu,\"text\":", r->n_segments ? "," : "",
                         (unsigned long long)f->start_ms, (unsigned long long)f->end_ms);
    bad |= buf_json_str(&r->segments, t, n);
    if (f->n_words) {
        bad |= buf_puts(&r->segments, ",\"words\":");
        wire_put_words(&r->segments, f->words, f->n_words);
    }
    bad |= buf_puts(&r->segments, "}");
    if (r->text.len) bad |= buf_append(&r->text, " ", 1);
    bad |= buf_append(&r->text, t, n);
    if (bad) r->oom = 1;
    r->n_segments++;
}

/* The transcription is over: the 200, the failure with its span, or the
 * decoding error; then the request ends. */
static void rest_end(void *ctx, const struct transcribe_end *e) {
    struct rest_req *r = ctx;
    if (e->err && e->has_span) {
        respond_failure(r, e);
    } else if (e->err) {
        http_set_abort(r->hc, NULL, NULL);
        http_respond_err(r->hc, e->err, e->msg);
    } else {
        struct buf b;
        buf_init(&b, 0);
        int bad = buf_puts(&b, "{\"text\":");
        bad |= buf_json_str(&b, r->text.data ? r->text.data : "", r->text.len);
        bad |= buf_printf(&b, ",\"duration_ms\":%llu,\"segments\":[", (unsigned long long)e->duration_ms);
        bad |= buf_append(&b, r->segments.data ? r->segments.data : "", r->segments.len);
        bad |= buf_puts(&b, "]");
        if (r->expected.len) bad |= put_feedback(r, &b);
        bad |= buf_puts(&b, "}");
        if (!bad && !r->oom) {
            respond_and_forget(r, 200, b.data, b.len, NULL);
        } else {
            metrics.rest_failed[RFAIL_INTERNAL]++;
            respond_and_forget(r, 500, OOM_BODY, sizeof OOM_BODY - 1, NULL);
        }
        buf_cleanup(&b);
    }
    req_free(r);
}

static const struct transcribe_sink rest_sink = {.on_segment = rest_segment, .on_end = rest_end};

void api_rest_transcribe(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    if (auth_check_key(env->cfg, req) != 0) {
        http_respond_err(hc, ASR_E_UNAUTHORIZED, NULL);
        return;
    }
    if (req->body.len == 0) {
        http_respond_error(hc, 400, "BAD_REQUEST", "empty body: send an audio file", NULL);
        return;
    }
    struct buf expected;
    buf_init(&expected, 0);
    const char *code, *why;
    int status = reference_from_query(env->cfg, req, &expected, &code, &why);
    if (status != 0) {
        http_respond_error(hc, status, code, why, NULL);
        return;
    }
    if (expected.len) metrics.feedback_rest++;
    struct rest_req *r = xcalloc(1, sizeof *r);
    r->hc = hc;
    r->expected = expected;                 /* adopt */
    buf_init(&r->segments, 0);
    buf_init(&r->text, 0);
    struct transcribe_opts opts = {.content_type = http_header(req, "content-type", NULL),
                                   .hint = expected.len ? expected.data : NULL, /* the engine may use it */
                                   .hint_len = expected.len,
                                   .request_id = req->request_id};
    size_t len = req->body.len;
    if (transcribe_start(env, &req->body, 0, len, &opts, &rest_sink, r, &r->tx) != 0) {
        http_respond_err(hc, ASR_E_INTERNAL, "could not schedule decoding");
        req_free(r);
        return;
    }
    http_set_abort(hc, rest_abort, r);
}
