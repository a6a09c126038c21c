/* The job object and its result formats (jobview.h). */
#include "api/jobview.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"

void jobview_time(char *out, size_t len, uint64_t ms) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03uZ", day, (unsigned)(ms % 1000));
}

static int put_time(struct buf *out, const char *name, uint64_t ms) {
    char t[40];
    if (!ms) return buf_printf(out, ",\"%s\":null", name);
    jobview_time(t, sizeof t, ms);
    return buf_printf(out, ",\"%s\":\"%s\"", name, t);
}

/* A stored JSON value (written by asrd), or null when empty. */
static int put_raw(struct buf *out, const char *name, const char *json, size_t len) {
    if (!len) return buf_printf(out, ",\"%s\":null", name);
    int bad = buf_printf(out, ",\"%s\":", name);
    return bad | buf_append(out, json, len);
}

static int put_str_or_null(struct buf *out, const char *name, const char *s) {
    if (!s[0]) return buf_printf(out, ",\"%s\":null", name);
    int bad = buf_printf(out, ",\"%s\":", name);
    return bad | buf_json_str(out, s, strlen(s));
}

int jobview_json(struct buf *out, const struct jobs_view *v, int with_result) {
    int bad = buf_puts(out, "{\"id\":");
    bad |= buf_json_str(out, v->id, strlen(v->id));
    bad |= buf_puts(out, ",\"status\":");
    bad |= buf_json_str(out, v->state, strlen(v->state));
    bad |= put_time(out, "created_at", v->created_ms);
    bad |= put_time(out, "started_at", v->started_ms);
    bad |= put_time(out, "finished_at", v->finished_ms);
    if (v->started_ms && v->created_ms && v->started_ms >= v->created_ms)
        bad |= buf_printf(out, ",\"wait_ms\":%llu", (unsigned long long)(v->started_ms - v->created_ms));
    if (v->finished_ms && v->started_ms && v->finished_ms >= v->started_ms)
        bad |= buf_printf(out, ",\"run_ms\":%llu", (unsigned long long)(v->finished_ms - v->started_ms));
    if (v->hash[0]) bad |= buf_printf(out, ",\"content_hash\":\"sha256:%s\"", v->hash);
    else bad |= buf_puts(out, ",\"content_hash\":null");
    bad |= buf_printf(out, ",\"attempts\":%llu,\"progress\":%.3f", (unsigned long long)v->attempts, v->progress);
    bad |= buf_printf(out, ",\"cached\":%s,\"deduplicated\":%s", v->cached ? "true" : "false",
                      v->deduped ? "true" : "false");
    bad |= put_raw(out, "options", v->opts, strlen(v->opts));
    bad |= put_str_or_null(out, "batch_id", v->batch);
    bad |= put_str_or_null(out, "request_id", v->request_id);
    if (v->callback[0]) {
        bad |= buf_puts(out, ",\"webhook\":{\"url\":");
        bad |= buf_json_str(out, v->callback, strlen(v->callback));
        const char *st = v->hook_state[0] ? v->hook_state : "waiting";
        bad |= buf_printf(out, ",\"status\":\"%s\",\"attempts\":%llu}", st, (unsigned long long)v->hook_attempts);
    }
    if (strcmp(v->state, "completed") == 0) bad |= buf_printf(out, ",\"duration_ms\":%llu", (unsigned long long)v->duration_ms);
    if (v->error[0]) bad |= put_raw(out, "error", v->error, strlen(v->error));
    if (with_result && v->result_len) bad |= put_raw(out, "result", v->result, v->result_len);
    bad |= buf_puts(out, "}");
    return bad ? ASR_ENOMEM : 0;
}

int jobview_batch_json(struct buf *out, const struct jobs_batch *b) {
    static const char *const states[] = {"queued", "processing", "completed", "error", "canceled", "expired"};
    size_t counts[6] = {0};
    for (size_t i = 0; i < b->n; i++)
        for (size_t k = 0; k < 6; k++)
            if (strcmp(b->states[i], states[k]) == 0) counts[k]++;
    int bad = buf_puts(out, "{\"id\":");
    bad |= buf_json_str(out, b->id ? b->id : "", b->id ? strlen(b->id) : 0);
    bad |= put_time(out, "created_at", b->created_ms);
    bad |= buf_printf(out, ",\"total\":%zu,\"counts\":{", b->n);
    for (size_t k = 0; k < 6; k++) bad |= buf_printf(out, "%s\"%s\":%zu", k ? "," : "", states[k], counts[k]);
    bad |= buf_printf(out, "},\"done\":%s,\"jobs\":[",
                      counts[0] + counts[1] == 0 ? "true" : "false");
    for (size_t i = 0; i < b->n; i++) {
        bad |= buf_puts(out, i ? ",{\"id\":" : "{\"id\":");
        bad |= buf_json_str(out, b->job_ids[i], strlen(b->job_ids[i]));
        bad |= buf_puts(out, ",\"status\":");
        bad |= buf_json_str(out, b->states[i], strlen(b->states[i]));
        bad |= buf_puts(out, "}");
    }
    bad |= buf_puts(out, "]}");
    return bad ? ASR_ENOMEM : 0;
}

/* The stored result into segments for api/formats. Everything points into
 * root (kept alive by the caller) or into the arrays returned (caller frees). */
static int read_result(json_t *root, struct fmt_segment **segs_out, struct engine_word **words_out,
                       struct fmt_transcript *t) {
    json_t *segs = json_object_get(root, "segments");
    if (!json_is_array(segs)) return ASR_E_INTERNAL;
    size_t n = json_array_size(segs), nw = 0;
    for (size_t i = 0; i < n; i++) nw += json_array_size(json_object_get(json_array_get(segs, i), "words"));
    struct fmt_segment *s = calloc(n ? n : 1, sizeof *s);
    struct engine_word *w = calloc(nw ? nw : 1, sizeof *w);
    if (!s || !w) {
        free(s);
        free(w);
        return ASR_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *seg = json_array_get(segs, i);
        json_t *text = json_object_get(seg, "text");
        s[i].start_ms = (uint64_t)json_integer_value(json_object_get(seg, "start_ms"));
        s[i].end_ms = (uint64_t)json_integer_value(json_object_get(seg, "end_ms"));
        s[i].text = json_is_string(text) ? json_string_value(text) : "";
        s[i].len = json_is_string(text) ? json_string_length(text) : 0;
        json_t *ws = json_object_get(seg, "words");
        if (json_is_array(ws) && json_array_size(ws)) {
            s[i].words = &w[k];
            for (size_t j = 0; j < json_array_size(ws); j++, k++) {
                json_t *x = json_array_get(ws, j), *wt = json_object_get(x, "word"),
                       *c = json_object_get(x, "confidence");
                w[k].text = json_is_string(wt) ? json_string_value(wt) : "";
                w[k].len = json_is_string(wt) ? json_string_length(wt) : 0;
                w[k].start_ms = (uint64_t)json_integer_value(json_object_get(x, "start_ms"));
                w[k].end_ms = (uint64_t)json_integer_value(json_object_get(x, "end_ms"));
                w[k].confidence = json_is_number(c) ? (float)json_number_value(c) : -1.0f;
            }
            s[i].n_words = json_array_size(ws);
        }
    }
    t->segs = s;
    t->n = n;
    t->duration_ms = (uint64_t)json_integer_value(json_object_get(root, "duration_ms"));
    t->language = NULL;
    *segs_out = s;
    *words_out = w;
    return 0;
}

int jobview_result(struct buf *out, const char *result, size_t len, enum fmt_kind k) {
    if (k == FMT_JSON) return buf_append(out, result, len) ? ASR_ENOMEM : 0;
    json_t *root = json_loadb(result, len, 0, NULL);
    if (!root) return ASR_E_INTERNAL;
    struct fmt_transcript t;
    struct fmt_segment *segs = NULL;
    struct engine_word *words = NULL;
    int rc = read_result(root, &segs, &words, &t);
    if (rc == 0) rc = fmt_render(out, k, &t);
    free(segs);
    free(words);
    json_decref(root);
    return rc;
}
