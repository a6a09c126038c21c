#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "base/util.h"

#include <sched.h>
#include <unistd.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sodium.h>

#include "base/budget.h"
#include "base/err.h"

static void oom(size_t n) {
    fprintf(stderr, "asrd: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void buf_init(struct buf *b, size_t limit) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
    b->budget = NULL;
}

void buf_cleanup(struct buf *b) {
    free(b->data);
    budget_release(b->budget, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_set_budget(struct buf *b, struct budget *budget) {
    assert(b->cap == 0); /* a charge is never moved between budgets */
    b->budget = budget;
}

void buf_reset(struct buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

/* Grows b to cap bytes (cap > b->cap), charging the difference first. */
static int buf_grow(struct buf *b, size_t cap) {
    if (budget_try_charge(b->budget, cap - b->cap) != 0) return ASR_EAGAIN;
    char *p = realloc(b->data, cap);
    if (!p) {
        budget_release(b->budget, cap - b->cap);
        return ASR_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_reserve(struct buf *b, size_t extra) {
    if (b->limit && (extra > b->limit || b->len > b->limit - extra)) return ASR_ENOMEM;
    if (extra >= SIZE_MAX / 2 - b->len) return ASR_ENOMEM;
    size_t need = b->len + extra + 1;   /* room for the NUL */
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    return buf_grow(b, cap);
}

int buf_reserve_exact(struct buf *b, size_t extra) {
    if (b->limit && (extra > b->limit || b->len > b->limit - extra)) return ASR_ENOMEM;
    if (extra >= SIZE_MAX / 2 - b->len) return ASR_ENOMEM;
    size_t need = b->len + extra + 1;
    return need <= b->cap ? 0 : buf_grow(b, need);
}

int buf_append(struct buf *b, const void *p, size_t n) {
    int rc = buf_reserve(b, n);
    if (rc != 0) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(struct buf *b, const char *s) {
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return ASR_EINVAL;
    if ((size_t)n < sizeof small) return buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) != 0) return ASR_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Writes v's digits ending just before end; returns where they start. */
static char *u64_digits(char *end, uint64_t v) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

int buf_put_u64(struct buf *b, uint64_t v) {
    char tmp[20];
    char *p = u64_digits(tmp + sizeof tmp, v);
    return buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

int buf_put_fixed3(struct buf *b, double v) {
    /* !(v > 0) also catches NaN */
    uint64_t m = !(v > 0) ? 0 : v >= 1e15 ? (uint64_t)1e18 : (uint64_t)(v * 1000.0 + 0.5);
    char tmp[24];
    char *end = tmp + sizeof tmp;
    char *p = end - 4;
    p[0] = '.';
    p[1] = (char)('0' + m / 100 % 10);
    p[2] = (char)('0' + m / 10 % 10);
    p[3] = (char)('0' + m % 10);
    p = u64_digits(p, m / 1000);
    return buf_append(b, p, (size_t)(end - p));
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int util_utf8_valid(const void *s, size_t n) {
    const unsigned char *p = s;
    for (size_t i = 0, l; i < n; i += l)
        if ((l = utf8_seq_len(p + i, n - i)) == 0) return 0;
    return 1;
}

int buf_json_str(struct buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    /* Worst case is 6 output bytes per input byte, plus quotes. */
    if (buf_reserve(b, n * 6 + 2) != 0) return ASR_ENOMEM;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { *o++ = (char)c; i++; continue; }
        if (c == '"' || c == '\\') { *o++ = '\\'; *o++ = (char)c; i++; continue; }
        if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default: *o++ = 'u'; *o++ = '0'; *o++ = '0'; *o++ = hex[c >> 4]; *o++ = hex[c & 15];
            }
            i++;
            continue;
        }
        size_t l = utf8_seq_len(p + i, n - i);
        if (l == 0) { memcpy(o, "\\ufffd", 6); o += 6; i++; continue; }
        memcpy(o, p + i, l);
        o += l;
        i += l;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

uint64_t util_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t util_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

void util_random_id(char out[33]) {
    unsigned char raw[16];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, 33, raw, sizeof raw);
}

int util_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out) {
    if (n == 0 || n > 20) return ASR_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return ASR_EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10) return ASR_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int util_ieq(const char *s, size_t n, const char *lit) {
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

unsigned util_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return (unsigned)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}
