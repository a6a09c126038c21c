/* Small shared helpers: aborting allocation for fixed-size objects, a
 * growable byte buffer with a hard cap for anything sized by client input,
 * JSON string output, clocks and random ids. */
#ifndef ASRD_UTIL_H
#define ASRD_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Fixed-size, program-sized allocations: abort on failure (docs/internals/architecture.md, "Ownership").
 * Never use these for sizes a client controls; use struct buf. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

struct budget;

/* A byte buffer. data is owned (malloc'd), NUL-terminated after len when
 * len < cap. buf_* functions that grow return ASR_ENOMEM when growing would
 * pass limit (0 = no limit) or malloc fails, and ASR_EAGAIN when the budget
 * the buffer is bound to refuses the growth; the buffer is unchanged then.
 * A buffer bound to a budget (buf_set_budget) keeps cap charged to it, and
 * buf_cleanup gives it back: the charge travels with the buffer when the
 * struct is handed over by value (an adopted request body). */
struct buf {
    char  *data;   /* owned */
    size_t len;    /* bytes used */
    size_t cap;    /* bytes allocated (charged to budget when bound) */
    size_t limit;  /* max len, 0 = unlimited */
    struct budget *budget; /* borrowed, NULL = none: the budget cap is charged to */
};

void buf_init(struct buf *b, size_t limit);       /* empty, not bound to a budget */
void buf_cleanup(struct buf *b);                  /* frees, gives the charge back; stays bound */
void buf_reset(struct buf *b);                    /* len = 0, keeps memory */
/* Binds an empty buffer (cap 0) to budget (NULL unbinds). */
void buf_set_budget(struct buf *b, struct budget *budget);
/* Room for extra more bytes; grows by doubling. */
int  buf_reserve(struct buf *b, size_t extra);
/* Room for extra more bytes; when it must grow, to exactly len + extra (and
 * the NUL): for a size known up front (a Content-Length), no slack and no
 * copies while filling. */
int  buf_reserve_exact(struct buf *b, size_t extra);
int  buf_append(struct buf *b, const void *p, size_t n);
int  buf_puts(struct buf *b, const char *s);
int  buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) as a JSON string literal, quotes included. Invalid UTF-8
 * bytes are replaced by U+FFFD so the output is always valid JSON. */
int  buf_json_str(struct buf *b, const char *s, size_t n);
/* Whether p[0..n) is well-formed UTF-8 (Unicode table 3-7: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
int  util_utf8_valid(const void *p, size_t n);
/* Decimal without printf, for the per-chunk messages: an unsigned integer,
 * and a non-negative number with exactly three decimals (rounded half up,
 * like "%.3f"; NaN and negative print as 0.000, 1e15 and above clamp). */
int  buf_put_u64(struct buf *b, uint64_t v);
int  buf_put_fixed3(struct buf *b, double v);

/* Clocks. */
uint64_t util_now_ns(void);     /* monotonic */
uint64_t util_wall_ms(void);    /* Unix ms */

/* 128-bit random id as 32 lowercase hex chars + NUL (libsodium randombytes). */
void util_random_id(char out[33]);

/* CPUs this process may run on (sched_getaffinity: a taskset, a cgroup
 * cpuset or a container's --cpuset-cpus), not the host's count; at least 1.
 * Falls back to the online CPUs when the mask cannot be read. */
unsigned util_cpu_count(void);

/* Parses a decimal unsigned integer of the whole string s[0..n) into *out.
 * Returns 0 or ASR_EINVAL (empty, non-digit, overflow past max). */
int util_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out);

/* Case-insensitive comparison of s[0..n) with NUL-terminated lit: 1 if equal. */
int util_ieq(const char *s, size_t n, const char *lit);

#endif
