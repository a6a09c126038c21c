/* The OpenAI-compatible routes (docs/API.md "OpenAI-compatible API"):
 * POST /v1/audio/transcriptions, POST /v1/audio/translations (refused: no
 * engine translates), GET /v1/models, so that code written for OpenAI's
 * SDKs works by changing the base URL.
 *
 * A transcription request: the key is checked, the multipart/form-data body
 * is parsed on the thread pool (api/multipart: GMime takes ~1 ms per MB,
 * too long for the loop), the fields are checked on the loop, and the file
 * part goes to api/transcribe, the machinery POST /v1/transcribe uses. The
 * answer is OpenAI's shape for the asked response_format (api/formats), or,
 * with stream=true, server-sent events: transcript.text.delta as text
 * becomes final (and, with a windowed engine, as words become stable), then
 * transcript.text.done. Errors are OpenAI's error object with the status
 * its SDKs map to their exceptions (400 BadRequestError, 401
 * AuthenticationError, 413, 500/503 InternalServerError, retried by them). */
#include "api/api_int.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/auth.h"
#include "api/formats.h"
#include "api/multipart.h"
#include "api/transcribe.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"

/* Largest form field other than the file (a prompt is the only long one;
 * OpenAI's models read 224 tokens of it). */
#define OA_MAX_FIELD 16384
/* The language the engines transcribe, and its name in verbose_json. */
#define OA_LANGUAGE      "en"
#define OA_LANGUAGE_NAME "english"

/* ---- OpenAI's error object ------------------------------------------------- */

static const char *err_type(int status) {
    if (status == 401) return "invalid_request_error";
    if (status == 429) return "rate_limit_error";
    return status >= 500 ? "server_error" : "invalid_request_error";
}

/* {"message","type","param","code"} (param may be NULL). */
static int put_error_obj(struct buf *b, int status, const char *message, const char *param, const char *code) {
    int bad = buf_puts(b, "{\"message\":");
    bad |= buf_json_str(b, message, strlen(message));
    bad |= buf_puts(b, ",\"type\":");
    bad |= buf_json_str(b, err_type(status), strlen(err_type(status)));
    bad |= buf_puts(b, ",\"param\":");
    bad |= param ? buf_json_str(b, param, strlen(param)) : buf_puts(b, "null");
    bad |= buf_puts(b, ",\"code\":");
    bad |= buf_json_str(b, code, strlen(code));
    bad |= buf_puts(b, "}");
    return bad ? ASR_ENOMEM : 0;
}

/* OpenAI's error body: {"error":{"message","type","param","code"}}. */
static int put_error(struct buf *b, int status, const char *message, const char *param, const char *code) {
    int bad = buf_puts(b, "{\"error\":");
    bad |= put_error_obj(b, status, message, param, code) != 0;
    bad |= buf_puts(b, "}");
    return bad ? ASR_ENOMEM : 0;
}

/* The lower-case form of a docs/API.md code ("PAYLOAD_TOO_LARGE" ->
 * "payload_too_large"), as OpenAI spells its codes. */
static void lower_code(const char *code, char *out, size_t n) {
    size_t i = 0;
    for (; code[i] && i + 1 < n; i++) out[i] = (char)(code[i] >= 'A' && code[i] <= 'Z' ? code[i] - 'A' + 'a' : code[i]);
    out[i] = '\0';
}

int api_openai_error_body(struct buf *out, int status, const char *code, const char *msg) {
    char lc[48];
    lower_code(code, lc, sizeof lc);
    return put_error(out, status, msg, NULL, status == 401 ? "invalid_api_key" : lc);
}

static void respond_oa_error(struct http_conn *hc, int status, const char *message, const char *param,
                             const char *code, const char *extra) {
    struct buf b;
    buf_init(&b, 0);
    if (put_error(&b, status, message, param, code) != 0)
        http_respond_err(hc, ASR_ENOMEM, NULL);
    else if (http_status_closes(status)) /* docs/API.md "HTTP errors", as on every route */
        http_respond_close(hc, status, "application/json", b.data, b.len, extra);
    else
        http_respond(hc, status, "application/json", b.data, b.len, extra);
    buf_cleanup(&b);
}

static int check_key(struct api_env *env, struct http_conn *hc, struct http_req *req) {
    if (auth_check_key(env->cfg, req) == 0) return 0;
    respond_oa_error(hc, 401,
                     "Incorrect or missing API key: send it as Authorization: Bearer <key> (docs/API.md, "
                     "Authentication)",
                     NULL, "invalid_api_key", "WWW-Authenticate: Bearer\r\n");
    return -1;
}

/* ---- GET /v1/models, POST /v1/audio/translations --------------------------- */

void api_openai_models(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    if (check_key(env, hc, req) != 0) return;
    const char *name = env->engine ? env->engine->name : "asrd";
    struct buf b;
    buf_init(&b, 0);
    int bad = buf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    bad |= buf_json_str(&b, name, strlen(name));
    bad |= buf_puts(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"asrd\"}]}");
    if (!bad) http_respond(hc, 200, "application/json", b.data, b.len, NULL);
    else http_respond_err(hc, ASR_ENOMEM, NULL);
    buf_cleanup(&b);
}

void api_openai_translations(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    if (check_key(env, hc, req) != 0) return;
    respond_oa_error(hc, 400,
                     "Translation is not available: no engine of this server translates. Transcribe in the "
                     "spoken language with POST /v1/audio/transcriptions.",
                     NULL, "translation_not_supported", NULL);
}

/* ---- POST /v1/audio/transcriptions: the request ----------------------------- */

/* One transcription request's life, forward only. PARSING: the form is
 * parsed on the thread pool. TRANSCRIBING: api/transcribe has the file.
 * STREAMING: the same, with the event stream's head sent (stream=true and
 * the audio decoded). The client going away frees the request at once,
 * except in PARSING, where after_parse does. */
enum oa_state { OA_PARSING, OA_TRANSCRIBING, OA_STREAMING };

struct oa_seg {
    uint64_t start_ms, end_ms;
    size_t   text_off, text_len;  /* into oa_req.texts */
    size_t   word0, n_words;      /* into oa_req.words */
};

struct oa_word {
    size_t   off, len;            /* into oa_req.texts */
    uint64_t start_ms, end_ms;
    float    confidence;
};

struct oa_req {
    uv_work_t work;
    enum oa_state state;
    struct api_env *env;          /* borrowed */
    struct http_conn *hc;         /* borrowed; NULL once the client is gone (PARSING) */
    struct transcription *tx;     /* the file's transcription; frees itself after on_end */
    struct buf body;              /* owned until the parse adopts it */
    char  *content_type;          /* owned: the request's */
    struct mp_form form;          /* owned */
    int    parse_err;
    char   errmsg[160];
    char   request_id[64];
    /* what the fields asked */
    enum fmt_kind format;
    int    stream;
    int    want_segments, want_words;
    /* the transcript so far */
    struct buf texts;             /* segment and word texts */
    struct buf segs;              /* struct oa_seg[] */
    struct buf words;             /* struct oa_word[] */
    int    oom;
    /* stream=true */
    int    sent_any;              /* a delta went out: the next starts with a space */
    size_t utt_words_sent;        /* words of the open utterance already sent as deltas */
};

static void req_free(struct oa_req *r) {
    buf_cleanup(&r->body);
    free(r->content_type);
    mp_form_cleanup(&r->form);
    buf_cleanup(&r->texts);
    buf_cleanup(&r->segs);
    buf_cleanup(&r->words);
    free(r);
}

static void oa_abort(void *ctx) {
    struct oa_req *r = ctx;
    r->hc = NULL;
    if (r->state == OA_PARSING) return; /* after_parse frees it */
    transcribe_cancel(r->tx);
    req_free(r);
}

/* Ends the request with an OpenAI error (not after a stream began). */
static void fail_request(struct oa_req *r, int status, const char *message, const char *param, const char *code,
                         const char *extra) {
    http_set_abort(r->hc, NULL, NULL);
    respond_oa_error(r->hc, status, message, param, code, extra);
    req_free(r);
}

static void refuse(struct oa_req *r, enum metric_openai_refusal why, const char *message, const char *param,
                   const char *code) {
    metrics.openai_refused[why]++;
    fail_request(r, 400, message, param, code, NULL);
}

/* ---- the fields ----------------------------------------------------------- */

static int field_is(const struct mp_part *p, const char *v) {
    return p->len == strlen(v) && memcmp(p->data, v, p->len) == 0;
}

/* A field's value as a C string (at most n - 1 bytes; longer values are
 * cut, which no valid value is). */
static void field_str(const struct mp_part *p, char *out, size_t n) {
    size_t l = p->len < n - 1 ? p->len : n - 1;
    memcpy(out, p->data, l);
    out[l] = '\0';
}

/* Checks the fields (docs/API.md "POST /v1/audio/transcriptions") and fills
 * r's options; on a refusal answers it and returns -1. */
static int read_fields(struct oa_req *r, const struct mp_part **file, const struct mp_part **prompt) {
    const struct mp_form *f = &r->form;
    char v[64];
    *file = mp_find(f, "file");
    if (!*file) {
        refuse(r, OREF_PARAMS, "No file: send the audio as the form field \"file\"", "file", "missing_file");
        return -1;
    }
    if ((*file)->len == 0) {
        refuse(r, OREF_PARAMS, "The audio file is empty", "file", "empty_file");
        return -1;
    }
    const struct mp_part *model = mp_find(f, "model");
    if (!model || model->len == 0) {
        refuse(r, OREF_PARAMS, "You must provide a model parameter (any name: GET /v1/models lists what is served)",
               "model", "missing_model");
        return -1;
    }
    const struct mp_part *p = mp_find(f, "language");
    if (p && p->len) {
        field_str(p, v, sizeof v);
        if (strcasecmp(v, OA_LANGUAGE) != 0) {
            refuse(r, OREF_PARAMS, "This server transcribes English only: language must be \"" OA_LANGUAGE "\"",
                   "language", "unsupported_language");
            return -1;
        }
    }
    *prompt = mp_find(f, "prompt");
    if (*prompt && !util_utf8_valid((*prompt)->data, (*prompt)->len)) {
        refuse(r, OREF_PARAMS, "prompt is not valid UTF-8", "prompt", "invalid_value");
        return -1;
    }
    r->format = FMT_JSON;
    p = mp_find(f, "response_format");
    if (p) {
        int k = fmt_parse((const char *)p->data, p->len);
        if (k < 0) {
            refuse(r, OREF_PARAMS, "response_format must be one of json, text, srt, verbose_json, vtt",
                   "response_format", "invalid_value");
            return -1;
        }
        r->format = (enum fmt_kind)k;
    }
    p = mp_find(f, "temperature");
    if (p) {
        field_str(p, v, sizeof v);
        char *end = NULL;
        double t = p->len && p->len < sizeof v ? strtod(v, &end) : -1;
        if (!end || *end || !(t >= 0 && t <= 1)) {
            refuse(r, OREF_PARAMS, "temperature must be a number from 0 to 1", "temperature", "invalid_value");
            return -1;
        }
    }
    p = mp_find(f, "stream");
    if (p) {
        if (field_is(p, "true")) r->stream = 1;
        else if (!field_is(p, "false")) {
            refuse(r, OREF_PARAMS, "stream must be true or false", "stream", "invalid_value");
            return -1;
        }
    }
    int granularities = 0;
    for (size_t i = 0; i < f->n; i++) {
        const struct mp_part *g = &f->parts[i];
        if (strcmp(g->name, "timestamp_granularities[]") != 0 && strcmp(g->name, "timestamp_granularities") != 0)
            continue;
        granularities = 1;
        if (field_is(g, "word")) r->want_words = 1;
        else if (field_is(g, "segment")) r->want_segments = 1;
        else {
            refuse(r, OREF_PARAMS, "timestamp_granularities[] takes word and segment", "timestamp_granularities[]",
                   "invalid_value");
            return -1;
        }
    }
    if (granularities && r->format != FMT_VERBOSE_JSON) {
        refuse(r, OREF_PARAMS, "timestamp_granularities[] needs response_format verbose_json",
               "timestamp_granularities[]", "invalid_value");
        return -1;
    }
    if (!granularities) r->want_segments = 1; /* verbose_json's default */
    if (r->stream && r->format != FMT_JSON && r->format != FMT_TEXT) {
        refuse(r, OREF_PARAMS, "stream=true answers with events: response_format must be json or text",
               "response_format", "unsupported_value");
        return -1;
    }
    return 0;
}

/* ---- the transcript ----------------------------------------------------------- */

/* Sends one server-sent event: data: <json>\n\n. */
static void send_event(struct oa_req *r, const char *type, const char *key, const char *text, size_t len) {
    struct buf b;
    buf_init(&b, 0);
    int bad = buf_puts(&b, "data: {\"type\":\"");
    bad |= buf_puts(&b, type);
    bad |= buf_puts(&b, "\",\"");
    bad |= buf_puts(&b, key);
    bad |= buf_puts(&b, "\":");
    bad |= buf_json_str(&b, text, len);
    bad |= buf_puts(&b, "}\n\n");
    if (!bad) http_stream_write(r->hc, b.data, b.len);
    else r->oom = 1;
    buf_cleanup(&b);
}

/* A delta: text, after a space when something went before. */
static void send_delta(struct oa_req *r, const char *text, size_t len) {
    if (!len) return;
    if (!r->sent_any) {
        send_event(r, "transcript.text.delta", "delta", text, len);
    } else {
        struct buf t;
        buf_init(&t, 0);
        if (buf_append(&t, " ", 1) || buf_append(&t, text, len)) r->oom = 1;
        else send_event(r, "transcript.text.delta", "delta", t.data, t.len);
        buf_cleanup(&t);
    }
    r->sent_any = 1;
}

static size_t count_words(const char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && (i == 0 || s[i - 1] == ' ')) w++;
    return w;
}

static void oa_start(void *ctx) {
    struct oa_req *r = ctx;
    if (!r->stream) return;
    r->state = OA_STREAMING;
    http_stream_begin(r->hc, 200, "text/event-stream; charset=utf-8", NULL);
}

/* Stable words of a windowed engine (stream=true only). */
static void oa_words(void *ctx, const char *text, size_t len) {
    struct oa_req *r = ctx;
    if (r->state != OA_STREAMING) return;
    send_delta(r, text, len);
    r->utt_words_sent += count_words(text, len);
}

static void oa_segment(void *ctx, const struct sess_final *f) {
    struct oa_req *r = ctx;
    struct oa_seg s = {.start_ms = f->start_ms, .end_ms = f->end_ms, .text_off = r->texts.len, .text_len = f->len,
                       .word0 = r->words.len / sizeof(struct oa_word), .n_words = f->n_words};
    int bad = buf_append(&r->texts, f->text, f->len);
    for (size_t i = 0; i < f->n_words; i++) {
        struct oa_word w = {.off = r->texts.len, .len = f->words[i].len, .start_ms = f->words[i].start_ms,
                            .end_ms = f->words[i].end_ms, .confidence = f->words[i].confidence};
        bad |= buf_append(&r->texts, f->words[i].text, f->words[i].len);
        bad |= buf_append(&r->words, &w, sizeof w);
    }
    bad |= buf_append(&r->segs, &s, sizeof s);
    if (bad) r->oom = 1;
    if (r->state == OA_STREAMING) {
        /* The final's words past those already sent as stable partial
         * words (by count: the final is authoritative and may differ). */
        size_t skip = r->utt_words_sent, i = 0;
        while (skip && i < f->len) {
            while (i < f->len && f->text[i] == ' ') i++;
            while (i < f->len && f->text[i] != ' ') i++;
            skip--;
        }
        while (i < f->len && f->text[i] == ' ') i++;
        send_delta(r, f->text + i, f->len - i);
        r->utt_words_sent = 0;
    }
}

/* The collected segments as api/formats wants them; the arrays are the
 * caller's to free. */
static int build_transcript(struct oa_req *r, uint64_t duration_ms, struct fmt_transcript *t,
                            struct fmt_segment **segs_out, struct engine_word **words_out) {
    size_t ns = r->segs.len / sizeof(struct oa_seg), nw = r->words.len / sizeof(struct oa_word);
    const struct oa_seg *s = (const struct oa_seg *)r->segs.data;
    const struct oa_word *w = (const struct oa_word *)r->words.data;
    struct fmt_segment *segs = ns ? calloc(ns, sizeof *segs) : NULL;
    struct engine_word *words = nw ? calloc(nw, sizeof *words) : NULL;
    if ((ns && !segs) || (nw && !words)) {
        free(segs);
        free(words);
        return ASR_ENOMEM;
    }
    for (size_t i = 0; i < nw; i++)
        words[i] = (struct engine_word){.text = r->texts.data + w[i].off, .len = w[i].len, .start_ms = w[i].start_ms,
                                        .end_ms = w[i].end_ms, .confidence = w[i].confidence};
    for (size_t i = 0; i < ns; i++)
        segs[i] = (struct fmt_segment){.start_ms = s[i].start_ms, .end_ms = s[i].end_ms,
                                       .text = r->texts.data + s[i].text_off, .len = s[i].text_len,
                                       .words = s[i].n_words ? words + s[i].word0 : NULL, .n_words = s[i].n_words};
    *t = (struct fmt_transcript){.segs = segs, .n = ns, .duration_ms = duration_ms, .language = OA_LANGUAGE_NAME};
    *segs_out = segs;
    *words_out = words;
    return 0;
}

/* The 200 of a request without stream. */
static void respond_transcript(struct oa_req *r, uint64_t duration_ms) {
    struct fmt_transcript t;
    struct fmt_segment *segs = NULL;
    struct engine_word *words = NULL;
    struct buf b;
    buf_init(&b, 0);
    int rc = r->oom ? ASR_ENOMEM : build_transcript(r, duration_ms, &t, &segs, &words);
    if (rc == 0)
        rc = r->format == FMT_VERBOSE_JSON ? fmt_verbose_json(&b, &t, r->want_segments, r->want_words)
                                           : fmt_render(&b, r->format, &t);
    http_set_abort(r->hc, NULL, NULL);
    if (rc == 0) {
        http_respond(r->hc, 200, fmt_content_type(r->format), b.data, b.len, NULL);
    } else {
        metrics.rest_failed[RFAIL_INTERNAL]++;
        respond_oa_error(r->hc, 500, "out of memory building the transcript", NULL, "internal", NULL);
    }
    buf_cleanup(&b);
    free(segs);
    free(words);
}

/* The end of the stream: transcript.text.done with the whole text, or an
 * error event (the SDKs raise it from their iterators). */
static void end_stream(struct oa_req *r, const struct transcribe_end *e) {
    if (e->err) {
        char lc[48];
        struct buf b;
        buf_init(&b, 0);
        lower_code(asr_err_code(e->err), lc, sizeof lc);
        int bad = buf_puts(&b, "data: {\"type\":\"error\",\"error\":");
        bad |= put_error_obj(&b, asr_err_http_status(e->err), e->msg ? e->msg : asr_strerror(e->err), NULL, lc) != 0;
        bad |= buf_puts(&b, "}\n\n");
        if (!bad) http_stream_write(r->hc, b.data, b.len);
        buf_cleanup(&b);
    } else {
        struct fmt_transcript t;
        struct fmt_segment *segs = NULL;
        struct engine_word *words = NULL;
        struct buf txt;
        buf_init(&txt, 0);
        int rc = r->oom ? ASR_ENOMEM : build_transcript(r, e->duration_ms, &t, &segs, &words);
        if (rc == 0) rc = fmt_text(&txt, &t);
        if (rc == 0) {
            if (txt.len && txt.data[txt.len - 1] == '\n') txt.len--;
            send_event(r, "transcript.text.done", "text", txt.data ? txt.data : "", txt.len);
        } else {
            static const char oom[] = "data: {\"type\":\"error\",\"error\":{\"message\":\"out of memory\","
                                      "\"type\":\"server_error\",\"param\":null,\"code\":\"internal\"}}\n\n";
            http_stream_write(r->hc, oom, sizeof oom - 1);
        }
        buf_cleanup(&txt);
        free(segs);
        free(words);
    }
    http_set_abort(r->hc, NULL, NULL);
    http_stream_end(r->hc);
}

/* How a refused or failed file is answered (before any event went out). */
static void respond_failure(struct oa_req *r, const struct transcribe_end *e) {
    const char *msg = e->msg ? e->msg : asr_strerror(e->err);
    switch (e->err) {
    case ASR_E_NOT_AUDIO:
        metrics.openai_refused[OREF_AUDIO]++;
        fail_request(r, 400, msg, "file", "invalid_file_format", NULL);
        return;
    case ASR_E_INVALID_AUDIO:
    case ASR_E_BAD_REQUEST:
        metrics.openai_refused[OREF_AUDIO]++;
        fail_request(r, 400, msg, "file", "invalid_audio", NULL);
        return;
    case ASR_E_TOO_LARGE:
        metrics.openai_refused[OREF_AUDIO]++;
        fail_request(r, 400, msg, "file", "audio_too_long", NULL);
        return;
    case ASR_E_ENGINE_BUSY:
        fail_request(r, 503, msg, NULL, "engine_busy", "Retry-After: 1\r\n");
        return;
    case ASR_E_MODEL_ERROR:
        fail_request(r, 500, msg, NULL, "model_error", NULL);
        return;
    default:
        fail_request(r, 500, msg, NULL, "internal", NULL);
        return;
    }
}

static void oa_end(void *ctx, const struct transcribe_end *e) {
    struct oa_req *r = ctx;
    if (r->state == OA_STREAMING) {
        end_stream(r, e);
        req_free(r);
    } else if (e->err) {
        respond_failure(r, e);
    } else {
        respond_transcript(r, e->duration_ms);
        req_free(r);
    }
}

static const struct transcribe_sink oa_sink = {
    .on_start = oa_start, .on_words = oa_words, .on_segment = oa_segment, .on_end = oa_end,
};

/* ---- parsing on the pool, then the transcription ------------------------------ */

static void parse_work(uv_work_t *w) {
    struct oa_req *r = w->data;
    r->parse_err = mp_parse(&r->form, &r->body, r->content_type, "file", OA_MAX_FIELD, r->errmsg, sizeof r->errmsg);
}

static void after_parse(uv_work_t *w, int status) {
    struct oa_req *r = w->data;
    if (!r->hc) {
        req_free(r);
        return;
    }
    if (status != 0) {
        fail_request(r, 500, "could not parse the form", NULL, "internal", NULL);
        return;
    }
    if (r->parse_err) {
        metrics.openai_refused[OREF_FORM]++;
        if (r->parse_err == ASR_E_TOO_LARGE) fail_request(r, 400, r->errmsg, NULL, "field_too_large", NULL);
        else if (r->parse_err == ASR_E_BAD_REQUEST) fail_request(r, 400, r->errmsg, NULL, "invalid_form", NULL);
        else fail_request(r, 500, r->errmsg[0] ? r->errmsg : "out of memory", NULL, "internal", NULL);
        return;
    }
    const struct mp_part *file, *prompt;
    if (read_fields(r, &file, &prompt) != 0) return;
    struct transcribe_opts opts = {
        .content_type = file->content_type,
        .hint = prompt ? (const char *)prompt->data : NULL,
        .hint_len = prompt ? prompt->len : 0,
        .partial_words = r->stream,
        .request_id = r->request_id,
    };
    size_t off = (size_t)(file->data - (const uint8_t *)r->form.bytes_.data), len = file->len;
    r->state = OA_TRANSCRIBING;
    int rc = transcribe_start(r->env, &r->form.bytes_, off, len, &opts, &oa_sink, r, &r->tx);
    if (rc == ASR_E_SERVER_BUSY) {
        fail_request(r, 503, "too many uploads in flight on this worker; retry later", NULL, "server_busy",
                     "Retry-After: 1\r\n");
        return;
    }
    if (rc != 0) {
        fail_request(r, 500, "could not schedule decoding", NULL, "internal", NULL);
        return;
    }
    /* The form's strings are no longer needed (opts were copied). */
    mp_form_cleanup(&r->form);
}

void api_openai_transcriptions(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api_env *env = ((struct api *)ctx)->env;
    if (check_key(env, hc, req) != 0) return;
    if (req->body.len == 0) {
        metrics.openai_refused[OREF_FORM]++;
        respond_oa_error(hc, 400, "Empty body: send a multipart/form-data form with the audio as \"file\"", NULL,
                         "invalid_form", NULL);
        return;
    }
    struct oa_req *r = xcalloc(1, sizeof *r);
    r->hc = hc;
    r->env = env;
    r->body = req->body; /* adopt the body */
    buf_init(&req->body, 0);
    const char *ct = http_header(req, "content-type", NULL);
    r->content_type = ct ? xstrdup(ct) : NULL;
    snprintf(r->request_id, sizeof r->request_id, "%s", req->request_id);
    buf_init(&r->texts, 0);
    buf_init(&r->segs, 0);
    buf_init(&r->words, 0);
    r->work.data = r;
    http_set_abort(hc, oa_abort, r);
    if (uv_queue_work(env->loop, &r->work, parse_work, after_parse) != 0) {
        http_set_abort(hc, NULL, NULL);
        respond_oa_error(hc, 500, "could not schedule parsing", NULL, "internal", NULL);
        req_free(r);
    }
}
