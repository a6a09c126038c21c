/* loadstat: see loadstat.h. Pure logic for tools/asrd-load; no I/O. */
#include "loadstat.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* ---- histogram --------------------------------------------------------- */

#define SUB      ((uint64_t)LOADSTAT_HIST_SUB)
#define SUB_BITS LOADSTAT_HIST_SUB_BITS

size_t loadstat_hist_bucket(uint64_t v) {
    if (v > LOADSTAT_HIST_MAX) v = LOADSTAT_HIST_MAX;
    if (v < 2 * SUB) return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int e = msb - SUB_BITS;          /* >= 1 */
    uint64_t top = v >> e;           /* SUB .. 2*SUB-1 */
    return (size_t)(2 * SUB + (uint64_t)(e - 1) * SUB + (top - SUB));
}

uint64_t loadstat_hist_bucket_low(size_t i) {
    if (i < 2 * SUB) return i;
    size_t j = i - 2 * SUB;
    unsigned e = (unsigned)(j / SUB) + 1;
    return (SUB + j % SUB) << e;
}

uint64_t loadstat_hist_bucket_high(size_t i) {
    if (i < 2 * SUB) return i;
    size_t j = i - 2 * SUB;
    unsigned e = (unsigned)(j / SUB) + 1;
    return ((SUB + j % SUB + 1) << e) - 1;
}

void loadstat_hist_reset(struct loadstat_hist *h) { memset(h, 0, sizeof *h); }

void loadstat_hist_add(struct loadstat_hist *h, uint64_t v) {
    if (h->count == 0 || v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    if (v > LOADSTAT_HIST_MAX) h->overflow++;
    h->count++;
    h->sum += (double)v;
    h->b[loadstat_hist_bucket(v)]++;
}

void loadstat_hist_merge(struct loadstat_hist *dst, const struct loadstat_hist *src) {
    if (!src->count) return;
    if (dst->count == 0 || src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    dst->overflow += src->overflow;
    for (size_t i = 0; i < LOADSTAT_HIST_BUCKETS; i++) dst->b[i] += src->b[i];
}

uint64_t loadstat_hist_percentile(const struct loadstat_hist *h, double p) {
    if (h->count == 0) return 0;
    if (p >= 100) return h->max;
    if (p <= 0) return h->min;
    /* The rank, computed so that 99.9 % of 1000 is exactly 999 despite
     * binary fractions. */
    double x = p * (double)h->count / 100.0;
    double r = ceil(x - 1e-9 * (x > 1 ? x : 1));
    uint64_t rank = r < 1 ? 1 : (uint64_t)r;
    if (rank > h->count) rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < LOADSTAT_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = loadstat_hist_bucket_high(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

void loadstat_hist_summary(const struct loadstat_hist *h, struct loadstat_pct *out) {
    memset(out, 0, sizeof *out);
    out->count = h->count;
    if (!h->count) return;
    out->p50 = (double)loadstat_hist_percentile(h, 50) / 1000.0;
    out->p90 = (double)loadstat_hist_percentile(h, 90) / 1000.0;
    out->p99 = (double)loadstat_hist_percentile(h, 99) / 1000.0;
    out->p999 = (double)loadstat_hist_percentile(h, 99.9) / 1000.0;
    out->max = (double)h->max / 1000.0;
    out->mean = h->sum / (double)h->count / 1000.0;
}

/* ---- scheduling -------------------------------------------------------- */

void loadstat_sched_init(struct loadstat_sched *s, uint64_t t0_ns, uint64_t period_ns, unsigned max_burst) {
    s->t0_ns = t0_ns;
    s->period_ns = period_ns ? period_ns : 1;
    s->next_slot = 0;
    s->max_burst = max_burst ? max_burst : 1;
}

uint64_t loadstat_sched_deadline(const struct loadstat_sched *s, uint64_t slot) {
    return s->t0_ns + slot * s->period_ns;
}

uint64_t loadstat_sched_next(const struct loadstat_sched *s) {
    return loadstat_sched_deadline(s, s->next_slot);
}

unsigned loadstat_sched_due(struct loadstat_sched *s, uint64_t now, uint64_t *first, uint64_t *skipped) {
    *skipped = 0;
    *first = s->next_slot;
    if (now < loadstat_sched_next(s)) return 0;
    uint64_t last = (now - s->t0_ns) / s->period_ns;   /* newest due slot */
    uint64_t n = last + 1 - s->next_slot;
    if (n > s->max_burst) {
        *skipped = n - s->max_burst;
        n = s->max_burst;
    }
    *first = last + 1 - n;
    s->next_slot = last + 1;
    return (unsigned)n;
}

/* ---- heap -------------------------------------------------------------- */

void loadstat_heap_init(struct loadstat_heap *h) { memset(h, 0, sizeof *h); }

void loadstat_heap_cleanup(struct loadstat_heap *h) {
    for (size_t i = 0; i < h->n; i++) h->v[i]->idx_ = 0;
    free(h->v);
    memset(h, 0, sizeof *h);
}

static void heap_set(struct loadstat_heap *h, size_t i, struct loadstat_heap_node *node) {
    h->v[i] = node;
    node->idx_ = i + 1;
}

static void heap_up(struct loadstat_heap *h, size_t i) {
    struct loadstat_heap_node *node = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent]->key <= node->key) break;
        heap_set(h, i, h->v[parent]);
        i = parent;
    }
    heap_set(h, i, node);
}

static void heap_down(struct loadstat_heap *h, size_t i) {
    struct loadstat_heap_node *node = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->v[c + 1]->key < h->v[c]->key) c++;
        if (node->key <= h->v[c]->key) break;
        heap_set(h, i, h->v[c]);
        i = c;
    }
    heap_set(h, i, node);
}

void loadstat_heap_push(struct loadstat_heap *h, struct loadstat_heap_node *node) {
    if (node->idx_) return;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    h->v[h->n++] = node;
    heap_up(h, h->n - 1);
}

void loadstat_heap_remove(struct loadstat_heap *h, struct loadstat_heap_node *node) {
    if (!node->idx_) return;
    size_t i = node->idx_ - 1;
    node->idx_ = 0;
    struct loadstat_heap_node *last = h->v[--h->n];
    if (i == h->n) return;
    heap_set(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->key > last->key) heap_up(h, i);
    else heap_down(h, i);
}

struct loadstat_heap_node *loadstat_heap_peek(const struct loadstat_heap *h) { return h->n ? h->v[0] : NULL; }

struct loadstat_heap_node *loadstat_heap_pop(struct loadstat_heap *h) {
    struct loadstat_heap_node *top = loadstat_heap_peek(h);
    if (top) loadstat_heap_remove(h, top);
    return top;
}

int loadstat_heap_contains(const struct loadstat_heap_node *node) { return node->idx_ != 0; }

/* ---- session roles and churn rate -------------------------------------- */

int loadstat_spread(uint64_t idx, uint64_t n, uint64_t total) {
    if (total == 0 || idx >= total || n == 0) return 0;
    if (n >= total) return 1;
    /* idx * n < total * n: no overflow for any count this tool can hold. */
    return (idx + 1) * n / total > idx * n / total;
}

enum loadstat_role loadstat_role(uint64_t idx, uint64_t total, uint64_t n_slow, uint64_t n_flood) {
    if (n_slow > total) n_slow = total;
    if (n_flood > total - n_slow) n_flood = total - n_slow;
    uint64_t k = n_slow + n_flood;
    if (!loadstat_spread(idx, k, total)) return LOADSTAT_ROLE_NORMAL;
    uint64_t j = (idx + 1) * k / total - 1;   /* which special slot this is, 0..k-1 */
    return loadstat_spread(j, n_slow, k) ? LOADSTAT_ROLE_SLOW : LOADSTAT_ROLE_FLOOD;
}

/* Start times are rounded to the nearest ns, and the count due is derived
 * from them (the estimate corrected by at most a step either way), so the
 * two always agree whatever the floating-point rounding. */
uint64_t loadstat_churn_start_ns(double rate, uint64_t k) {
    if (!(rate > 0)) return 0;
    return (uint64_t)llround((double)k * 1e9 / rate);
}

uint64_t loadstat_churn_due(double rate, uint64_t elapsed_ns) {
    if (!(rate > 0)) return 1;
    uint64_t k = (uint64_t)floor((double)elapsed_ns * rate / 1e9);   /* the last session due, about */
    while (loadstat_churn_start_ns(rate, k + 1) <= elapsed_ns) k++;
    while (k > 0 && loadstat_churn_start_ns(rate, k) > elapsed_ns) k--;
    return k + 1;
}

/* ---- message scanner --------------------------------------------------- */

/* A strict-enough JSON scanner over p..e: enough to find three top-level
 * fields in every message docs/API.md defines and to reject truncated or
 * malformed text, at a fraction of the cost of building a jansson tree (the
 * tool reads one message per chunk, 10 per second per session). */
struct scan {
    const char *p, *e;
};

#define SCAN_MAX_DEPTH 64

static void sc_ws(struct scan *s) {
    while (s->p < s->e && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* At '"': moves past the closing quote; [*str, *str + *len) is the raw
 * content (escapes not decoded), *esc set when it has any. */
static int sc_string(struct scan *s, const char **str, size_t *len, int *esc) {
    if (s->p >= s->e || *s->p != '"') return -1;
    s->p++;
    const char *start = s->p;
    int has_esc = 0;
    while (s->p < s->e) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            if (str) *str = start;
            if (len) *len = (size_t)(s->p - start);
            if (esc) *esc = has_esc;
            s->p++;
            return 0;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            has_esc = 1;
            if (++s->p >= s->e) return -1;
            c = (unsigned char)*s->p;
            if (c == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (++s->p >= s->e) return -1;
                    c = (unsigned char)*s->p;
                    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                        return -1;
                }
            } else if (!strchr("\"\\/bfnrt", c)) {
                return -1;
            }
        }
        s->p++;
    }
    return -1;
}

/* A JSON number; *u gets its value and *is_u is 1 when it is a
 * non-negative integer that fits in 64 bits. */
static int sc_number(struct scan *s, uint64_t *u, int *is_u) {
    const char *start = s->p;
    int neg = 0, frac = 0, ovf = 0;
    uint64_t v = 0;
    if (s->p < s->e && *s->p == '-') { neg = 1; s->p++; }
    if (s->p >= s->e || *s->p < '0' || *s->p > '9') return -1;
    if (*s->p == '0') {
        s->p++;
    } else {
        while (s->p < s->e && *s->p >= '0' && *s->p <= '9') {
            unsigned d = (unsigned)(*s->p - '0');
            if (v > (UINT64_MAX - d) / 10) ovf = 1;
            else v = v * 10 + d;
            s->p++;
        }
    }
    if (s->p < s->e && *s->p == '.') {
        frac = 1;
        s->p++;
        if (s->p >= s->e || *s->p < '0' || *s->p > '9') return -1;
        while (s->p < s->e && *s->p >= '0' && *s->p <= '9') s->p++;
    }
    if (s->p < s->e && (*s->p == 'e' || *s->p == 'E')) {
        frac = 1;
        s->p++;
        if (s->p < s->e && (*s->p == '+' || *s->p == '-')) s->p++;
        if (s->p >= s->e || *s->p < '0' || *s->p > '9') return -1;
        while (s->p < s->e && *s->p >= '0' && *s->p <= '9') s->p++;
    }
    if (s->p == start) return -1;
    *u = v;
    *is_u = !neg && !frac && !ovf;
    return 0;
}

static int sc_literal(struct scan *s, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(s->e - s->p) < n || memcmp(s->p, lit, n) != 0) return -1;
    s->p += n;
    return 0;
}

static int sc_value(struct scan *s, int depth);

static int sc_container(struct scan *s, int depth, char close, int is_obj) {
    if (depth > SCAN_MAX_DEPTH) return -1;
    s->p++;
    sc_ws(s);
    if (s->p < s->e && *s->p == close) { s->p++; return 0; }
    for (;;) {
        sc_ws(s);
        if (is_obj) {
            if (sc_string(s, NULL, NULL, NULL) != 0) return -1;
            sc_ws(s);
            if (s->p >= s->e || *s->p != ':') return -1;
            s->p++;
            sc_ws(s);
        }
        if (sc_value(s, depth + 1) != 0) return -1;
        sc_ws(s);
        if (s->p >= s->e) return -1;
        if (*s->p == ',') { s->p++; continue; }
        if (*s->p == close) { s->p++; return 0; }
        return -1;
    }
}

static int sc_value(struct scan *s, int depth) {
    if (s->p >= s->e) return -1;
    uint64_t u;
    int is_u;
    switch (*s->p) {
    case '"': return sc_string(s, NULL, NULL, NULL);
    case '{': return sc_container(s, depth, '}', 1);
    case '[': return sc_container(s, depth, ']', 0);
    case 't': return sc_literal(s, "true");
    case 'f': return sc_literal(s, "false");
    case 'n': return sc_literal(s, "null");
    default:  return sc_number(s, &u, &is_u);
    }
}

static enum loadstat_msg_type msg_type(const char *t, size_t n) {
    static const struct { const char *name; enum loadstat_msg_type type; } types[] = {
        {"session", LOADSTAT_MSG_SESSION}, {"partial", LOADSTAT_MSG_PARTIAL},
        {"final", LOADSTAT_MSG_FINAL},     {"error", LOADSTAT_MSG_ERROR},
        {"speech_started", LOADSTAT_MSG_SPEECH_STARTED},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strlen(types[i].name) == n && memcmp(types[i].name, t, n) == 0) return types[i].type;
    return LOADSTAT_MSG_OTHER;
}

static int key_is(const char *k, size_t n, const char *lit) { return strlen(lit) == n && memcmp(k, lit, n) == 0; }

int loadstat_msg_parse(const char *p, size_t n, struct loadstat_msg *out) {
    struct scan s = {p, p + n};
    memset(out, 0, sizeof *out);
    sc_ws(&s);
    if (s.p >= s.e || *s.p != '{') goto fail;
    s.p++;
    sc_ws(&s);
    if (s.p < s.e && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            const char *k, *v;
            size_t kn, vn;
            int esc;
            sc_ws(&s);
            if (sc_string(&s, &k, &kn, NULL) != 0) goto fail;
            sc_ws(&s);
            if (s.p >= s.e || *s.p != ':') goto fail;
            s.p++;
            sc_ws(&s);
            if (s.p >= s.e) goto fail;
            if (*s.p == '"' && (key_is(k, kn, "type") || key_is(k, kn, "code"))) {
                if (sc_string(&s, &v, &vn, &esc) != 0) goto fail;
                if (key_is(k, kn, "type")) {
                    out->type = esc ? LOADSTAT_MSG_OTHER : msg_type(v, vn);
                } else {
                    if (vn >= sizeof out->code) vn = sizeof out->code - 1;
                    memcpy(out->code, v, vn);
                    out->code[vn] = 0;
                }
            } else if (key_is(k, kn, "sequence") && (*s.p == '-' || (*s.p >= '0' && *s.p <= '9'))) {
                uint64_t u;
                int is_u;
                if (sc_number(&s, &u, &is_u) != 0) goto fail;
                out->has_sequence = is_u;
                out->sequence = is_u ? u : 0;
            } else if (sc_value(&s, 1) != 0) {
                goto fail;
            }
            sc_ws(&s);
            if (s.p >= s.e) goto fail;
            if (*s.p == ',') { s.p++; continue; }
            if (*s.p == '}') { s.p++; break; }
            goto fail;
        }
    }
    sc_ws(&s);
    if (s.p != s.e) goto fail;
    return 0;
fail:
    memset(out, 0, sizeof *out);
    return ASR_EINVAL;
}

/* ---- /v1/metrics ------------------------------------------------------- */

/* The value at a dotted path ("process.rss_bytes"), or NULL. */
static json_t *jpath(json_t *root, const char *path) {
    char key[64];
    json_t *cur = root;
    while (cur && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof key) return NULL;
        memcpy(key, path, n);
        key[n] = 0;
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return cur;
}

static uint64_t jnum_u64(json_t *v) {
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i > 0 ? (uint64_t)i : 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d > 0 && d < 1.8e19 ? (uint64_t)d : 0;
    }
    return 0;
}

static double jnum_dbl(json_t *v) { return json_is_number(v) ? json_number_value(v) : 0.0; }

/* Every numeric member of object o, as counts (other members skipped). */
static void counts_from_object(json_t *o, struct loadstat_counts *c) {
    const char *k;
    json_t *v;
    memset(c, 0, sizeof *c);
    if (!json_is_object(o)) return;
    json_object_foreach(o, k, v)
        if (json_is_number(v)) loadstat_counts_add(c, k, jnum_u64(v));
}

int loadstat_metrics_parse(const char *p, size_t n, struct loadstat_server *out) {
    memset(out, 0, sizeof *out);
    json_t *root = json_loadb(p, n, 0, NULL);
    if (!root) return ASR_EINVAL;
    if (!json_is_object(root) || !json_is_number(jpath(root, "chunks.total"))) {
        json_decref(root);
        return ASR_EINVAL;
    }
    out->chunks_total = jnum_u64(jpath(root, "chunks.total"));
    out->partials_total = jnum_u64(jpath(root, "partials.total"));
    out->partials_dropped = jnum_u64(jpath(root, "partials.dropped"));
    out->finals_total = jnum_u64(jpath(root, "finals.total"));
    out->sessions_total = jnum_u64(jpath(root, "sessions.total"));
    counts_from_object(json_object_get(root, "close_codes"), &out->close_codes);
    counts_from_object(jpath(root, "requests.by_route.transcribe"), &out->rest_status);
    counts_from_object(jpath(root, "requests.by_route.stream"), &out->stream_status);
    out->rss_bytes = jnum_u64(jpath(root, "process.rss_bytes"));
    out->open_fds = jnum_u64(jpath(root, "process.open_fds"));
    out->policy_closes = jnum_u64(jpath(root, "sessions.ended.policy"));
    counts_from_object(jpath(root, "sessions.ended"), &out->ended);
    out->sessions_active = jnum_u64(jpath(root, "sessions.active"));
    out->connections_active = jnum_u64(jpath(root, "connections.active"));
    out->workers = json_array_size(json_object_get(root, "workers"));
    out->slow_client_closes = jnum_u64(jpath(root, "sessions.ended.slow_client"));
    out->chunk_p99_ms = jnum_dbl(jpath(root, "latency_ms.chunk.p99"));
    out->loop_utilization = jnum_dbl(jpath(root, "loop.utilization"));
    out->pool_threads = jnum_u64(jpath(root, "engine.pool.threads"));
    out->pool_busy = jnum_u64(jpath(root, "engine.pool.busy"));
    out->pool_queued = jnum_u64(jpath(root, "engine.pool.queued"));
    out->pool_queued_finals = jnum_u64(jpath(root, "engine.pool.queued_finals"));
    out->pool_completed = jnum_u64(jpath(root, "engine.pool.completed"));
    out->pool_failed = jnum_u64(jpath(root, "engine.pool.failed"));
    out->pool_refused = jnum_u64(jpath(root, "engine.pool.refused"));
    out->pool_audio_ms = jnum_u64(jpath(root, "engine.pool.audio_ms"));
    out->pool_busy_ms = jnum_u64(jpath(root, "engine.pool.busy_ms"));
    out->pool_rtf = jnum_dbl(jpath(root, "engine.pool.real_time_factor"));
    out->windows_skipped = jnum_u64(jpath(root, "engine.windows_skipped"));
    json_t *errs = json_object_get(root, "errors");
    if (json_is_number(json_object_get(errs, "total"))) {
        out->errors_total = jnum_u64(json_object_get(errs, "total"));
    } else if (json_is_object(errs)) {
        const char *k;
        json_t *v;
        json_object_foreach(errs, k, v) out->errors_total += jnum_u64(v);
    }
    if (json_is_object(errs)) {
        const char *k;
        json_t *v;
        json_object_foreach(errs, k, v)
            if (strcmp(k, "total") != 0 && json_is_number(v)) loadstat_counts_add(&out->error_codes, k, jnum_u64(v));
    }
    out->ok = 1;
    json_decref(root);
    return 0;
}

/* ---- named counters ---------------------------------------------------- */

void loadstat_counts_add(struct loadstat_counts *c, const char *name, uint64_t k) {
    for (size_t i = 0; i < c->len; i++)
        if (strcmp(c->v[i].name, name) == 0) { c->v[i].n += k; return; }
    if (c->len + 1 >= LOADSTAT_MAX_NAMES) {
        /* The last slot is kept for OTHER: once it is taken, OTHER exists. */
        for (size_t i = 0; i < c->len; i++)
            if (strcmp(c->v[i].name, "OTHER") == 0) { c->v[i].n += k; return; }
        name = "OTHER";
    }
    snprintf(c->v[c->len].name, sizeof c->v[c->len].name, "%s", name);
    c->v[c->len].n = k;
    c->len++;
}

uint64_t loadstat_counts_get(const struct loadstat_counts *c, const char *name) {
    for (size_t i = 0; i < c->len; i++)
        if (strcmp(c->v[i].name, name) == 0) return c->v[i].n;
    return 0;
}

uint64_t loadstat_counts_sum(const struct loadstat_counts *c) {
    uint64_t s = 0;
    for (size_t i = 0; i < c->len; i++) s += c->v[i].n;
    return s;
}

void loadstat_counts_merge(struct loadstat_counts *dst, const struct loadstat_counts *src) {
    for (size_t i = 0; i < src->len; i++) loadstat_counts_add(dst, src->v[i].name, src->v[i].n);
}

void loadstat_counts_delta(struct loadstat_counts *out, const struct loadstat_counts *after,
                           const struct loadstat_counts *before) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < after->len; i++) {
        uint64_t b = loadstat_counts_get(before, after->v[i].name);
        if (after->v[i].n > b) loadstat_counts_add(out, after->v[i].name, after->v[i].n - b);
    }
}

/* ---- client against server ------------------------------------------- */

static size_t check_add(struct loadstat_check *out, size_t n, size_t max, const char *name, uint64_t client,
                        uint64_t server) {
    if (n >= max) return n;
    snprintf(out[n].name, sizeof out[n].name, "%s", name);
    out[n].client = client;
    out[n].server = server;
    return n + 1;
}

static uint64_t ctr_delta(uint64_t before, uint64_t after) { return after > before ? after - before : 0; }

size_t loadstat_agreement(const struct loadstat_run *r, int rest, struct loadstat_check *out, size_t max) {
    const struct loadstat_server *a = &r->server_before, *b = &r->server_after;
    if (!a->ok || !b->ok) return 0;
    size_t n = 0;
    char name[48];
    if (rest) {
        /* Every status either side saw. */
        struct loadstat_counts d;
        loadstat_counts_delta(&d, &b->rest_status, &a->rest_status);
        for (size_t i = 0; i < r->http_status.len; i++) {
            snprintf(name, sizeof name, "http_%s", r->http_status.v[i].name);
            n = check_add(out, n, max, name, r->http_status.v[i].n, loadstat_counts_get(&d, r->http_status.v[i].name));
        }
        for (size_t i = 0; i < d.len; i++) {
            if (loadstat_counts_get(&r->http_status, d.v[i].name)) continue;
            snprintf(name, sizeof name, "http_%s", d.v[i].name);
            n = check_add(out, n, max, name, 0, d.v[i].n);
        }
        return n;
    }
    uint64_t sent = ctr_delta(a->partials_total, b->partials_total), dropped = ctr_delta(a->partials_dropped,
                                                                                          b->partials_dropped);
    n = check_add(out, n, max, "chunks", r->chunks_sent, ctr_delta(a->chunks_total, b->chunks_total));
    n = check_add(out, n, max, "partials", r->partial_msgs, sent > dropped ? sent - dropped : 0);
    n = check_add(out, n, max, "errors", loadstat_counts_sum(&r->errors) - loadstat_counts_get(&r->errors, "UNPARSEABLE"),
                  ctr_delta(a->errors_total, b->errors_total));
    n = check_add(out, n, max, "finals", r->finals, ctr_delta(a->finals_total, b->finals_total));
    n = check_add(out, n, max, "sessions", r->sessions_opened, ctr_delta(a->sessions_total, b->sessions_total));
    /* Close codes: 1000 always, every other numeric code either side has. */
    struct loadstat_counts d;
    loadstat_counts_delta(&d, &b->close_codes, &a->close_codes);
    n = check_add(out, n, max, "close_1000", loadstat_counts_get(&r->close_codes, "1000"),
                  loadstat_counts_get(&d, "1000"));
    for (int pass = 0; pass < 2; pass++) {
        const struct loadstat_counts *c = pass ? &d : &r->close_codes;
        for (size_t i = 0; i < c->len; i++) {
            const char *code = c->v[i].name;
            if (code[0] < '1' || code[0] > '9' || strcmp(code, "1000") == 0) continue;
            if (pass && loadstat_counts_get(&r->close_codes, code)) continue;   /* done in pass 0 */
            snprintf(name, sizeof name, "close_%s", code);
            n = check_add(out, n, max, name, loadstat_counts_get(&r->close_codes, code), loadstat_counts_get(&d, code));
        }
    }
    return n;
}

/* ---- results ----------------------------------------------------------- */

void loadstat_result_init(struct loadstat_result *r) { memset(r, 0, sizeof *r); }

void loadstat_result_cleanup(struct loadstat_result *r) {
    free(r->steps);
    free(r->timeline);
    memset(r, 0, sizeof *r);
}

void loadstat_result_add_step(struct loadstat_result *r, const struct loadstat_run *step) {
    r->steps = xrealloc(r->steps, (r->n_steps + 1) * sizeof *r->steps);
    r->steps[r->n_steps++] = *step;
}

void loadstat_result_add_point(struct loadstat_result *r, const struct loadstat_point *pt) {
    r->timeline = xrealloc(r->timeline, (r->n_timeline + 1) * sizeof *r->timeline);
    r->timeline[r->n_timeline++] = *pt;
}

/* Field tables: one line per field, used by both the writer and the reader
 * so the two cannot drift apart. */
#define OPTS_STR(X) X(url) X(scenario) X(mode) X(wav)
#define OPTS_INT(X) X(tone) X(sessions) X(chunk_ms) X(capacity_start) X(capacity_step) \
    X(capacity_max) X(max_errors) X(rest_concurrency) X(rest_requests) \
    X(max_burst) X(slow_count) X(flood_count) X(files)
#define OPTS_DBL(X) X(ramp_s) X(duration_s) X(slow_fraction) X(p99_threshold_ms) X(mock_latency_ms) \
    X(churn_life_s) X(connect_timeout_s) X(grace_s) X(flood_fraction) X(flood_factor) X(churn_rate) X(sample_s) \
    X(final_p95_threshold_ms) X(gap_ms)

#define RUN_U64(X) X(sessions_opened) X(sessions_completed) X(connect_failures) X(chunks_sent) \
    X(chunks_skipped) X(chunks_blocked) X(sessions_stalled) X(answers) X(partials) X(partial_msgs) X(finals) \
    X(missing) X(out_of_order) X(unmatched) X(slow_sessions) X(slow_chunks) X(slow_answers) X(slow_closed) \
    X(requests) X(request_failures) X(normal_sessions) X(normal_chunks) X(normal_completed) X(normal_errors) \
    X(flood_sessions) X(flood_chunks) X(flood_answers) X(flood_partials) X(flood_missing) X(flood_closed) \
    X(server_samples) X(server_unsettled)
/* Peaks: merged by taking the larger. */
#define RUN_MAX(X) X(server_rss_peak) X(server_fds_peak) X(server_pool_busy_peak) X(server_pool_queued_peak)
/* Double peaks: merged by taking the larger. */
#define RUN_MAXD(X) X(server_loop_util_peak) X(server_settle_s)
#define RUN_DBL(X) X(start_s) X(wall_s) X(stream_s) X(chunk_rate) X(answer_rate) X(client_cpu_s) X(client_cpu_pct)
#define RUN_CNT(X) X(connect_errors) X(errors) X(close_codes) X(http_status) X(request_errors) X(flood_errors) \
    X(flood_close_codes) X(slow_close_codes)
#define RUN_PCT(X) X(latency) X(added)

#define PCT_FIELDS(X) X(p50) X(p90) X(p99) X(p999) X(max) X(mean)

/* Counters (their deltas are written) and gauges (before -> after). */
#define SRV_CTR(X) X(chunks_total) X(errors_total) X(partials_total) X(partials_dropped) X(finals_total) \
    X(sessions_total) X(slow_client_closes) X(policy_closes)
#define SRV_GAUGE(X) X(rss_bytes) X(open_fds) X(sessions_active) X(connections_active) X(workers)
#define SRV_U64(X) SRV_CTR(X) SRV_GAUGE(X)
#define SRV_CNT(X) X(close_codes) X(rest_status) X(stream_status) X(error_codes) X(ended)
/* The inference pool's figures: written only by a server that has a pool
 * (pool_threads > 0), so a mock engine's result has none of them. */
#define SRV_POOL(X) X(pool_threads) X(pool_busy) X(pool_queued) X(pool_queued_finals) X(pool_completed) \
    X(pool_failed) X(pool_refused) X(pool_audio_ms) X(pool_busy_ms) X(windows_skipped)

#define POINT_DBL(X) X(t_s) X(p50_ms) X(p90_ms) X(p99_ms) X(loop_util)
#define POINT_U64(X) X(sessions) X(answers) X(rss_bytes) X(open_fds)

static json_t *ju(uint64_t v) { return json_integer((json_int_t)(v > INT64_MAX ? INT64_MAX : v)); }

static json_t *pct_json(const struct loadstat_pct *p) {
    json_t *o = json_object();
    json_object_set_new(o, "count", ju(p->count));
#define W_(f) json_object_set_new(o, #f, json_real(p->f));
    PCT_FIELDS(W_)
#undef W_
    return o;
}

static json_t *counts_json(const struct loadstat_counts *c) {
    json_t *o = json_object();
    for (size_t i = 0; i < c->len; i++) json_object_set_new(o, c->v[i].name, ju(c->v[i].n));
    return o;
}

static json_t *server_json(const struct loadstat_server *s) {
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_boolean(s->ok));
#define W_(f) json_object_set_new(o, #f, ju(s->f));
    SRV_U64(W_)
#undef W_
    json_object_set_new(o, "chunk_p99_ms", json_real(s->chunk_p99_ms));
    json_object_set_new(o, "loop_utilization", json_real(s->loop_utilization));
#define W_(f) json_object_set_new(o, #f, counts_json(&s->f));
    SRV_CNT(W_)
#undef W_
    if (s->pool_threads) {
#define W_(f) json_object_set_new(o, #f, ju(s->f));
        SRV_POOL(W_)
#undef W_
        json_object_set_new(o, "pool_rtf", json_real(s->pool_rtf));
    }
    return o;
}

static json_t *run_json(const struct loadstat_run *r, int rest) {
    json_t *o = json_object();
    json_object_set_new(o, "sessions_target", ju(r->sessions_target));
#define W_(f) json_object_set_new(o, #f, ju(r->f));
    RUN_U64(W_)
    RUN_MAX(W_)
#undef W_
#define W_(f) json_object_set_new(o, #f, json_real(r->f));
    RUN_DBL(W_)
    RUN_MAXD(W_)
#undef W_
#define W_(f) json_object_set_new(o, #f, counts_json(&r->f));
    RUN_CNT(W_)
#undef W_
#define W_(f) json_object_set_new(o, #f "_ms", pct_json(&r->f));
    RUN_PCT(W_)
#undef W_
    json_object_set_new(o, "held", json_boolean(r->held));
    json_object_set_new(o, "verdict", json_string(r->verdict));
    json_t *srv = json_object();
    json_object_set_new(srv, "before", server_json(&r->server_before));
    json_object_set_new(srv, "after", server_json(&r->server_after));
    if (r->server_before.ok && r->server_after.ok) {
        /* Deltas and checks are derived from what is read back, so they
         * are only written. Every delta is signed (a gauge may go down, a
         * counter too across a server restart). */
        json_t *d = json_object();
        const struct loadstat_server *a = &r->server_before, *b = &r->server_after;
#define W_(f) json_object_set_new(d, #f, json_integer((json_int_t)b->f - (json_int_t)a->f));
        SRV_U64(W_)
#undef W_
#define W_(f) do { struct loadstat_counts c_; loadstat_counts_delta(&c_, &b->f, &a->f); \
        json_object_set_new(d, #f, counts_json(&c_)); } while (0);
        SRV_CNT(W_)
#undef W_
        if (a->pool_threads || b->pool_threads) {
#define W_(f) json_object_set_new(d, #f, json_integer((json_int_t)b->f - (json_int_t)a->f));
            SRV_POOL(W_)
#undef W_
        }
        json_object_set_new(srv, "delta", d);
    }
    json_object_set_new(o, "server", srv);
    struct loadstat_check ck[2 * LOADSTAT_MAX_NAMES + 8];
    size_t nck = loadstat_agreement(r, rest, ck, sizeof ck / sizeof ck[0]);
    if (nck) {
        json_t *ag = json_object();
        for (size_t i = 0; i < nck; i++)
            json_object_set_new(ag, ck[i].name, json_pack("{s:I,s:I,s:b}", "client", (json_int_t)ck[i].client,
                                                          "server", (json_int_t)ck[i].server, "match",
                                                          ck[i].client == ck[i].server));
        json_object_set_new(o, "agreement", ag);
    }
    return o;
}

json_t *loadstat_result_json(const struct loadstat_result *r) {
    json_t *root = json_object();
    if (!root) return NULL;
    json_object_set_new(root, "tool", json_string("asrd-load"));
    json_object_set_new(root, "format", json_integer(1));
    json_t *opts = json_object();
#define W_(f) json_object_set_new(opts, #f, json_string(r->opts.f));
    OPTS_STR(W_)
#undef W_
#define W_(f) json_object_set_new(opts, #f, json_integer((json_int_t)r->opts.f));
    OPTS_INT(W_)
#undef W_
#define W_(f) json_object_set_new(opts, #f, json_real(r->opts.f));
    OPTS_DBL(W_)
#undef W_
    json_object_set_new(root, "options", opts);
    int rest = strcmp(r->opts.scenario, "rest") == 0;
    json_object_set_new(root, "total", run_json(&r->total, rest));
    json_t *steps = json_array();
    for (size_t i = 0; i < r->n_steps; i++) json_array_append_new(steps, run_json(&r->steps[i], rest));
    json_object_set_new(root, "steps", steps);
    json_object_set_new(root, "capacity_sessions", ju(r->capacity_sessions));
    json_t *tl = json_array();
    for (size_t i = 0; i < r->n_timeline; i++) {
        const struct loadstat_point *pt = &r->timeline[i];
        json_t *o = json_object();
#define W_(f) json_object_set_new(o, #f, json_real(pt->f));
        POINT_DBL(W_)
#undef W_
#define W_(f) json_object_set_new(o, #f, ju(pt->f));
        POINT_U64(W_)
#undef W_
        json_array_append_new(tl, o);
    }
    json_object_set_new(root, "timeline", tl);
    return root;
}

int loadstat_json_dump(const json_t *doc, struct buf *out) {
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!s) return ASR_ENOMEM;
    int rc = buf_puts(out, s);
    if (rc == 0) rc = buf_puts(out, "\n");
    free(s);
    return rc;
}

int loadstat_result_to_json(const struct loadstat_result *r, struct buf *out) {
    json_t *root = loadstat_result_json(r);
    if (!root) return ASR_ENOMEM;
    int rc = loadstat_json_dump(root, out);
    json_decref(root);
    return rc;
}

void loadstat_run_peak(struct loadstat_run *r, const struct loadstat_server *s) {
    if (!s->ok) return;
    if (s->rss_bytes > r->server_rss_peak) r->server_rss_peak = s->rss_bytes;
    if (s->open_fds > r->server_fds_peak) r->server_fds_peak = s->open_fds;
    if (s->loop_utilization > r->server_loop_util_peak) r->server_loop_util_peak = s->loop_utilization;
    if (s->pool_busy > r->server_pool_busy_peak) r->server_pool_busy_peak = s->pool_busy;
    if (s->pool_queued > r->server_pool_queued_peak) r->server_pool_queued_peak = s->pool_queued;
}

void loadstat_run_merge(struct loadstat_run *dst, const struct loadstat_run *src) {
    if (dst->wall_s == 0) dst->start_s = src->start_s;   /* nothing merged yet */
    if (src->sessions_target > dst->sessions_target) dst->sessions_target = src->sessions_target;
#define M_(f) dst->f += src->f;
    RUN_U64(M_)
#undef M_
#define M_(f) if (src->f > dst->f) dst->f = src->f;
    RUN_MAX(M_)
    RUN_MAXD(M_)
#undef M_
#define M_(f) loadstat_counts_merge(&dst->f, &src->f);
    RUN_CNT(M_)
#undef M_
    dst->wall_s += src->wall_s;
    dst->stream_s += src->stream_s;
    dst->client_cpu_s += src->client_cpu_s;
    dst->chunk_rate = dst->stream_s > 0 ? (double)dst->chunks_sent / dst->stream_s : 0;
    dst->answer_rate = dst->stream_s > 0 ? (double)(dst->answers + dst->requests) / dst->stream_s : 0;
    dst->client_cpu_pct = dst->wall_s > 0 ? 100.0 * dst->client_cpu_s / dst->wall_s : 0;
    if (!dst->server_before.ok) dst->server_before = src->server_before;
    dst->server_after = src->server_after;
}

static void pct_read(json_t *o, struct loadstat_pct *p) {
    memset(p, 0, sizeof *p);
    p->count = jnum_u64(json_object_get(o, "count"));
#define R_(f) p->f = jnum_dbl(json_object_get(o, #f));
    PCT_FIELDS(R_)
#undef R_
}

static void counts_read(json_t *o, struct loadstat_counts *c) {
    const char *k;
    json_t *v;
    memset(c, 0, sizeof *c);
    if (!json_is_object(o)) return;
    json_object_foreach(o, k, v) loadstat_counts_add(c, k, jnum_u64(v));
}

static void server_read(json_t *o, struct loadstat_server *s) {
    memset(s, 0, sizeof *s);
    s->ok = json_is_true(json_object_get(o, "ok"));
#define R_(f) s->f = jnum_u64(json_object_get(o, #f));
    SRV_U64(R_)
#undef R_
    s->chunk_p99_ms = jnum_dbl(json_object_get(o, "chunk_p99_ms"));
    s->loop_utilization = jnum_dbl(json_object_get(o, "loop_utilization"));
#define R_(f) counts_read(json_object_get(o, #f), &s->f);
    SRV_CNT(R_)
#undef R_
#define R_(f) s->f = jnum_u64(json_object_get(o, #f));
    SRV_POOL(R_)
#undef R_
    s->pool_rtf = jnum_dbl(json_object_get(o, "pool_rtf"));
}

static int run_read(json_t *o, struct loadstat_run *r) {
    memset(r, 0, sizeof *r);
    if (!json_is_object(o)) return ASR_EINVAL;
    r->sessions_target = (unsigned)jnum_u64(json_object_get(o, "sessions_target"));
#define R_(f) r->f = jnum_u64(json_object_get(o, #f));
    RUN_U64(R_)
    RUN_MAX(R_)
#undef R_
#define R_(f) r->f = jnum_dbl(json_object_get(o, #f));
    RUN_DBL(R_)
    RUN_MAXD(R_)
#undef R_
#define R_(f) counts_read(json_object_get(o, #f), &r->f);
    RUN_CNT(R_)
#undef R_
#define R_(f) pct_read(json_object_get(o, #f "_ms"), &r->f);
    RUN_PCT(R_)
#undef R_
    r->held = json_is_true(json_object_get(o, "held"));
    const char *v = json_string_value(json_object_get(o, "verdict"));
    snprintf(r->verdict, sizeof r->verdict, "%s", v ? v : "");
    json_t *srv = json_object_get(o, "server");
    server_read(json_object_get(srv, "before"), &r->server_before);
    server_read(json_object_get(srv, "after"), &r->server_after);
    return 0;
}

int loadstat_result_from_json(const char *p, size_t n, struct loadstat_result *r) {
    loadstat_result_init(r);
    json_t *root = json_loadb(p, n, 0, NULL);
    if (!root) return ASR_EINVAL;
    json_t *opts = json_object_get(root, "options");
    if (!json_is_object(root) || !json_is_object(opts) ||
        run_read(json_object_get(root, "total"), &r->total) != 0) {
        json_decref(root);
        loadstat_result_cleanup(r);
        return ASR_EINVAL;
    }
#define R_(f) do { const char *s_ = json_string_value(json_object_get(opts, #f)); \
        snprintf(r->opts.f, sizeof r->opts.f, "%s", s_ ? s_ : ""); } while (0);
    OPTS_STR(R_)
#undef R_
#define R_(f) r->opts.f = (__typeof__(r->opts.f))jnum_u64(json_object_get(opts, #f));
    OPTS_INT(R_)
#undef R_
#define R_(f) r->opts.f = jnum_dbl(json_object_get(opts, #f));
    OPTS_DBL(R_)
#undef R_
    json_t *steps = json_object_get(root, "steps");
    for (size_t i = 0; i < json_array_size(steps); i++) {
        struct loadstat_run step;
        if (run_read(json_array_get(steps, i), &step) == 0) loadstat_result_add_step(r, &step);
    }
    r->capacity_sessions = (unsigned)jnum_u64(json_object_get(root, "capacity_sessions"));
    json_t *tl = json_object_get(root, "timeline");
    for (size_t i = 0; i < json_array_size(tl); i++) {
        json_t *o = json_array_get(tl, i);
        struct loadstat_point pt = {0};
#define R_(f) pt.f = jnum_dbl(json_object_get(o, #f));
        POINT_DBL(R_)
#undef R_
#define R_(f) pt.f = (__typeof__(pt.f))jnum_u64(json_object_get(o, #f));
        POINT_U64(R_)
#undef R_
        loadstat_result_add_point(r, &pt);
    }
    json_decref(root);
    return 0;
}

/* ---- SVG --------------------------------------------------------------- */

#define SVG_W     860
#define SVG_PANEL 390   /* height of one chart panel */
#define SVG_TOP   40    /* title band */
#define SVG_L     70    /* plot area margins within a panel */
#define SVG_R     150
#define SVG_T     20
#define SVG_B     50

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about n ticks. */
static double nice_step(double range, int n) {
    if (range <= 0) return 1;
    double raw = range / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void svg_text_esc(struct buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '&': buf_puts(b, "&amp;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        default: buf_append(b, s, 1); break;
        }
    }
}

/* One panel: its plot rectangle and scales. */
struct svg_axes {
    double x0, y0, w, h;          /* plot area, px */
    double xmax, ymax, xstep, ystep;
};

static double sx(const struct svg_axes *a, double x) { return a->x0 + (a->xmax > 0 ? x / a->xmax : 0) * a->w; }
static double sy(const struct svg_axes *a, double y) {
    if (y > a->ymax) y = a->ymax;
    return a->y0 + a->h - (a->ymax > 0 ? y / a->ymax : 0) * a->h;
}

/* Draws the frame, grid and labels of a panel whose top is at top px. */
static void svg_axes(struct buf *b, struct svg_axes *a, double top, double xmax, double ymax, const char *title,
                     const char *xlabel, const char *ylabel) {
    a->x0 = SVG_L;
    a->y0 = top + SVG_T;
    a->w = SVG_W - SVG_L - SVG_R;
    a->h = SVG_PANEL - SVG_T - SVG_B;
    a->xstep = nice_step(xmax > 0 ? xmax : 1, 8);
    a->xmax = ceil((xmax > 0 ? xmax : 1) / a->xstep) * a->xstep;
    a->ystep = nice_step(ymax > 0 ? ymax : 1, 6);
    a->ymax = ceil((ymax > 0 ? ymax * 1.05 : 1) / a->ystep) * a->ystep;
    buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">%s</text>\n", a->x0, a->y0 - 6, title);
    buf_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" stroke=\"#888\"/>\n", a->x0,
               a->y0, a->w, a->h);
    for (double x = 0; x <= a->xmax + a->xstep / 2; x += a->xstep) {
        buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                   sx(a, x), a->y0, sx(a, x), a->y0 + a->h, sx(a, x), a->y0 + a->h + 16, x);
    }
    for (double y = 0; y <= a->ymax + a->ystep / 2; y += a->ystep) {
        buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                   a->x0, sy(a, y), a->x0 + a->w, sy(a, y), a->x0 - 6, sy(a, y) + 4, y);
    }
    buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", a->x0 + a->w / 2,
               a->y0 + a->h + 34, xlabel);
    double cy = a->y0 + a->h / 2;
    buf_printf(b, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">%s</text>\n", cy,
               cy, ylabel);
}

static void svg_legend(struct buf *b, const struct svg_axes *a, int i, const char *color, const char *label,
                       int dashed) {
    double y = a->y0 + 14 + i * 20, x = a->x0 + a->w + 12;
    buf_printf(b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\"%s/>"
                  "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
               x, y, x + 24, y, color, dashed ? " stroke-dasharray=\"6 4\"" : "", x + 30, y + 4, label);
}

static const char *const svg_colors[3] = {"#1f77b4", "#ff7f0e", "#d62728"};

/* Latency percentiles (p50, p90, p99) per second over the whole run; for a
 * capacity run the step boundaries are marked with their session counts. */
static void svg_timeline(struct buf *b, const struct loadstat_result *r, double top) {
    struct svg_axes a;
    double xmax = 0, ymax = 0;
    for (size_t i = 0; i < r->n_timeline; i++) {
        if (r->timeline[i].t_s > xmax) xmax = r->timeline[i].t_s;
        if (r->timeline[i].answers && r->timeline[i].p99_ms > ymax) ymax = r->timeline[i].p99_ms;
    }
    svg_axes(b, &a, top, xmax, ymax, "latency per second", "time (s)", "latency (ms)");
    for (size_t i = 0; i < r->n_steps; i++) {
        double x = sx(&a, r->steps[i].start_s);
        buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\" stroke-dasharray=\"3 3\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#666\">%u</text>\n",
                   x, a.y0, x, a.y0 + a.h, x + 3, a.y0 + 12, r->steps[i].sessions_target);
    }
    for (int k = 0; k < 3; k++) {
        buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", svg_colors[k]);
        for (size_t i = 0; i < r->n_timeline; i++) {
            const struct loadstat_point *pt = &r->timeline[i];
            if (!pt->answers) continue;
            double v = k == 0 ? pt->p50_ms : k == 1 ? pt->p90_ms : pt->p99_ms;
            buf_printf(b, "%.1f,%.1f ", sx(&a, pt->t_s), sy(&a, v));
        }
        buf_puts(b, "\"/>\n");
    }
    svg_legend(b, &a, 0, svg_colors[0], "p50", 0);
    svg_legend(b, &a, 1, svg_colors[1], "p90", 0);
    svg_legend(b, &a, 2, svg_colors[2], "p99", 0);
    buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\">%llu %s</text>\n", a.x0 + a.w + 12, a.y0 + 84,
               (unsigned long long)(r->total.requests ? r->total.requests : r->total.sessions_opened),
               r->total.requests ? "requests" : "sessions");
}

/* Capacity: p50 and p99 added latency of each step against its sessions;
 * steps that did not hold are drawn black. */
static void svg_capacity(struct buf *b, const struct loadstat_result *r, double top) {
    struct svg_axes a;
    double xmax = 0, ymax = r->opts.p99_threshold_ms;
    for (size_t i = 0; i < r->n_steps; i++) {
        if (r->steps[i].sessions_target > xmax) xmax = r->steps[i].sessions_target;
        if (r->steps[i].added.p99 > ymax) ymax = r->steps[i].added.p99;
    }
    svg_axes(b, &a, top, xmax, ymax, "p99 against sessions", "sessions", "added latency (ms)");
    buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"6 4\"/>\n",
               a.x0, sy(&a, r->opts.p99_threshold_ms), a.x0 + a.w, sy(&a, r->opts.p99_threshold_ms));
    static const int pick[2] = {0, 2};   /* p50, p99 colours */
    for (int k = 0; k < 2; k++) {
        const char *color = svg_colors[pick[k]];
        buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
        for (size_t i = 0; i < r->n_steps; i++) {
            const struct loadstat_run *st = &r->steps[i];
            buf_printf(b, "%.1f,%.1f ", sx(&a, st->sessions_target), sy(&a, k ? st->added.p99 : st->added.p50));
        }
        buf_puts(b, "\"/>\n");
        for (size_t i = 0; i < r->n_steps; i++) {
            const struct loadstat_run *st = &r->steps[i];
            buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", sx(&a, st->sessions_target),
                       sy(&a, k ? st->added.p99 : st->added.p50), st->held ? color : "#000");
        }
    }
    svg_legend(b, &a, 0, svg_colors[0], "p50 added", 0);
    svg_legend(b, &a, 1, svg_colors[2], "p99 added", 0);
    svg_legend(b, &a, 2, "#999", "threshold", 1);
    buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\">held: %u sessions</text>\n", a.x0 + a.w + 12, a.y0 + 84,
               r->capacity_sessions);
}

int loadstat_svg(const struct loadstat_result *r, struct buf *b) {
    int cap = strcmp(r->opts.scenario, "capacity") == 0;
    int h = SVG_TOP + SVG_PANEL * (cap ? 2 : 1);
    buf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                  "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n",
               SVG_W, h, SVG_W, h);
    buf_puts(b, "<text x=\"70\" y=\"26\" font-size=\"15\">asrd-load ");
    svg_text_esc(b, r->opts.scenario);
    buf_puts(b, " (");
    svg_text_esc(b, r->opts.mode);
    buf_printf(b, ", %u ms chunks): ", r->opts.chunk_ms);
    svg_text_esc(b, r->opts.url);
    buf_puts(b, "</text>\n");
    svg_timeline(b, r, SVG_TOP);
    if (cap) svg_capacity(b, r, SVG_TOP + SVG_PANEL);
    buf_puts(b, "</svg>\n");
    return b->len && (b->limit == 0 || b->len < b->limit) ? 0 : ASR_ENOMEM;
}
