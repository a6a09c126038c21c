/* docs/API.md "POST /v1/transcribe".
 *
 * The upload goes to api/transcribe (decoding on the thread pool a block
 * ahead of a session fed a window of chunks at a time); this file answers
 * with its finals as segments and what the decoder found of the input (cut
 * short, bytes after the audio) or, at the first part of the audio the
 * engine fails on or refuses, with an error naming that part. With
 * ?callback= it is a job instead (docs/API.md "POST /v1/transcribe?callback="),
 * answered at once. With an expected text (expected_text or reference_id:
 * docs/API.md "Reading feedback") the answer also has the finals' words
 * against it, and the text goes to the engine as its hint. */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/reference.h"
#include "api/transcribe.h"
#include "api/wire.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/feedback.h"

/* One request: the transcription (api/transcribe.h) and the answer it
 * builds. Freed when answered (on_end) or when the client goes (abort). */
struct rest_req {
    struct http_conn *hc;         /* borrowed */
    struct transcription *tx;     /* the transcription; it frees itself after on_end */
    struct transcript answer;     /* its segments so far */
    char   request_id[64];        /* for the log line of a lying file */
    struct buf expected;          /* owned: reading feedback's expected text (empty: none) */
};

static void req_free(struct rest_req *r) {
    transcript_cleanup(&r->answer);
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
    struct buf body;
    buf_init(&body, 0);
    if (transcribe_error_json(&body, e) == 0)
        respond_and_forget(r, asr_err_http_status(e->err), body.data, body.len,
                           e->err == ASR_E_ENGINE_BUSY ? "Retry-After: 1\r\n" : NULL);
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
    const struct buf *heard = &r->answer.text;
    int rc = fb_text_parse(r->expected.data, r->expected.len, FB_TEXT_MAX_WORDS, &t, &why);
    if (rc == 0 && !(f = fb_create(t, 0))) rc = ASR_ENOMEM;
    if (rc == 0 && !(e = calloc(fb_text_count(t), sizeof *e))) rc = ASR_ENOMEM;
    if (rc == 0) rc = fb_evaluate_text(f, heard->data ? heard->data : "", heard->len, 1, e);
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
    transcript_add(&r->answer, f);
}

/* A file cut short or with bytes after its audio is answered all the same
 * (the answer's "input" object, docs/API.md "POST /v1/transcribe"), and
 * logged and counted. */
static void note_input(const struct rest_req *r, const struct audio_input *in) {
    if (!in->truncated && !in->trailing_bytes) return;
    if (in->truncated) metrics.rest_truncated++;
    if (in->trailing_bytes) metrics.rest_trailing++;
    struct log_line *l = log_begin(LOG_WARN, in->truncated ? "upload shorter than its header says"
                                                           : "upload has bytes after its audio");
    if (l) {
        log_str(l, "request_id", r->request_id);
        log_u64(l, "decoded_ms", in->in_rate ? in->decoded_frames * 1000 / in->in_rate : 0);
        log_u64(l, "declared_ms", in->in_rate ? in->declared_frames * 1000 / in->in_rate : 0);
        log_u64(l, "trailing_bytes", in->trailing_bytes);
        log_end(l);
    }
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
        if (e->has_input) note_input(r, &e->input);
        int bad = transcript_json(&r->answer, e, &b) != 0;
        if (!bad && r->expected.len) {
            b.len--; /* reopen the object */
            bad |= put_feedback(r, &b);
            bad |= buf_puts(&b, "}");
        }
        if (!bad) {
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

int api_rest_check(void *ctx, const struct http_req *req, const char **msg) {
    struct api_env *env = ((struct api *)ctx)->env;
    int ar = auth_check_key(env->cfg, req);
    if (ar != 0) {
        auth_count_refusal(ar);
        *msg = auth_refusal_message(ar);
    }
    return ar;
}

void api_rest_transcribe(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    char cb[8];
    if (http_query(req, "callback", cb, sizeof cb) != -1) { /* present: a job (a too long value included) */
        char x[8];
        if (http_query(req, "expected_text", x, sizeof x) != -1 || http_query(req, "reference_id", x, sizeof x) != -1) {
            if (auth_check_key(env->cfg, req) != 0) {
                http_respond_err(hc, ASR_E_UNAUTHORIZED, NULL);
                return;
            }
            http_respond_error(hc, 400, "BAD_REQUEST",
                               "expected_text and reference_id are not taken with callback: reading feedback is "
                               "answered on the request itself",
                               NULL);
            return;
        }
        api_jobs_shorthand(ctx, hc, req);
        return;
    }
    int ar = auth_check(env->cfg, req, AUTH_SCOPE_TRANSCRIBE, util_wall_ms() / 1000);
    if (ar != 0) {
        auth_respond_refusal(hc, ar);
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
    snprintf(r->request_id, sizeof r->request_id, "%s", req->request_id);
    transcript_init(&r->answer, 0);
    struct transcribe_opts opts = {.content_type = http_header(req, "content-type", NULL),
                                   .hint = expected.len ? expected.data : NULL, /* the engine may use it */
                                   .hint_len = expected.len,
                                   .request_id = req->request_id};
    size_t len = req->body.len;
    int rc = transcribe_start(env, &req->body, 0, len, &opts, &rest_sink, r, &r->tx);
    if (rc == ASR_E_SERVER_BUSY) {
        http_respond_error(hc, 503, "SERVER_BUSY", "too many uploads in flight on this worker; retry later",
                           "Retry-After: 1\r\n");
        req_free(r);
        return;
    }
    if (rc != 0) {
        http_respond_err(hc, ASR_E_INTERNAL, "could not schedule decoding");
        req_free(r);
        return;
    }
    http_set_abort(hc, rest_abort, r);
}
