/* The pure logic of the real-audio scenarios (speechstat.h). */
#include "speechstat.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* A non-negative integer member, or -1. */
static int get_u64(json_t *o, const char *key, uint64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int speechstat_msg_parse(const char *p, size_t n, struct speechstat_msg *out, struct buf *text) {
    memset(out, 0, sizeof *out);
    buf_reset(text);
    json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return ASR_EINVAL;
    }
    int rc = 0;
    const char *type = json_string_value(json_object_get(root, "type"));
    if (type && strcmp(type, "partial") == 0) out->type = SPEECHSTAT_PARTIAL;
    else if (type && strcmp(type, "final") == 0) out->type = SPEECHSTAT_FINAL;
    out->has_sequence = get_u64(root, "sequence", &out->sequence) == 0;
    out->server_busy = json_is_true(json_object_get(root, "server_busy"));
    json_t *lat = json_object_get(root, "latency_ms");
    if (json_is_object(lat) && json_is_number(json_object_get(lat, "total"))) {
        out->has_latency = 1;
        out->lat_total_ms = json_number_value(json_object_get(lat, "total"));
        json_t *b = json_object_get(lat, "buffer");
        out->lat_buffer_ms = json_is_number(b) ? json_number_value(b) : 0;
    }
    out->has_span = get_u64(root, "start_ms", &out->start_ms) == 0 && get_u64(root, "end_ms", &out->end_ms) == 0 &&
                    out->start_ms <= out->end_ms;
    if (!out->has_span) out->start_ms = out->end_ms = 0;
    json_t *t = json_object_get(root, "text");
    if (json_is_string(t) && buf_append(text, json_string_value(t), json_string_length(t)) != 0) rc = ASR_ENOMEM;
    if (rc == 0 && buf_append(text, "", 1) != 0) rc = ASR_ENOMEM;   /* the NUL */
    json_decref(root);
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    text->len--;   /* the NUL stays after the text */
    out->text = text->data;
    out->text_len = text->len;
    return 0;
}

uint64_t speechstat_chunk_of(uint64_t pos_ms, unsigned chunk_ms) {
    if (chunk_ms == 0) return 1;
    uint64_t k = (pos_ms + chunk_ms - 1) / chunk_ms;
    return k ? k : 1;
}

void speechstat_series_add(struct speechstat_series *s, double v) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = v;
    s->sorted_ = 0;
}

void speechstat_series_merge(struct speechstat_series *dst, const struct speechstat_series *src) {
    for (size_t i = 0; i < src->n; i++) speechstat_series_add(dst, src->v[i]);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double rank(const struct speechstat_series *s, double p) {
    double r = ceil(p / 100.0 * (double)s->n);
    size_t k = r < 1 ? 1 : (size_t)r;
    if (k > s->n) k = s->n;
    return s->v[k - 1];
}

void speechstat_series_summary(struct speechstat_series *s, struct speechstat_pct *out) {
    memset(out, 0, sizeof *out);
    if (!s->n) return;
    if (!s->sorted_) {
        qsort(s->v, s->n, sizeof *s->v, cmp_dbl);
        s->sorted_ = 1;
    }
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->v[i];
    out->count = s->n;
    out->p50 = rank(s, 50);
    out->p90 = rank(s, 90);
    out->p95 = rank(s, 95);
    out->p99 = rank(s, 99);
    out->max = s->v[s->n - 1];
    out->mean = sum / (double)s->n;
}

void speechstat_series_cleanup(struct speechstat_series *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

int speechstat_hyp_line(struct buf *out, const char *fileid, const char *text) {
    if (buf_puts(out, fileid) != 0 || buf_puts(out, "\t") != 0) return ASR_ENOMEM;
    int pending = 0, any = 0;
    for (const char *c = text; *c; c++) {
        if (is_space(*c)) {
            pending = any;
            continue;
        }
        if (pending && buf_append(out, " ", 1) != 0) return ASR_ENOMEM;
        if (buf_append(out, c, 1) != 0) return ASR_ENOMEM;
        pending = 0;
        any = 1;
    }
    return buf_puts(out, "\n") == 0 ? 0 : ASR_ENOMEM;
}
