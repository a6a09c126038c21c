/* A byte budget: a bound on memory that clients control, shared by every
 * connection of one worker (docs/internals/backpressure.md, "Memory in
 * flight"). The worker owns one per kind (request bodies and decoded audio of
 * uploads; partial WebSocket messages) and passes a pointer down to the
 * layers that allocate such memory; nothing fetches it from a global.
 *
 * A holder charges bytes before it allocates them and releases exactly what
 * it charged when it frees them (struct buf does both itself once bound to a
 * budget: base/util.h). A charge that would pass the limit is refused and
 * counted; what the refusal means (503, close 1013) is the caller's policy.
 *
 * The figures are updated with atomic operations, so memory allocated on the
 * libuv thread pool (decoding) can be charged there; on the loop thread a
 * charge costs one compare-and-swap. */
#ifndef ASRD_BUDGET_H
#define ASRD_BUDGET_H

#include <stddef.h>
#include <stdint.h>

struct budget {
    size_t   limit;                  /* bytes; 0 = no bound (charges are still counted) */
    size_t   used;                   /* bytes charged now (atomic) */
    size_t   peak;                   /* highest `used` since start (atomic) */
    uint64_t refused;                /* charges refused (atomic) */
};

/* Empty, bounded by limit bytes (0 = no bound). */
void budget_init(struct budget *b, size_t limit);

/* Charges n bytes. Returns 0, or ASR_EAGAIN (nothing charged, the refusal
 * counted) when used + n would pass the limit. b may be NULL (no budget:
 * always 0). Any thread. */
int budget_try_charge(struct budget *b, size_t n);

/* Whether n more bytes would fit now, charging nothing: 0, or ASR_EAGAIN
 * with the refusal counted. For an early answer about bytes still to come
 * (a Content-Length); the bytes are charged as they arrive. */
int budget_check(struct budget *b, size_t n);

/* Gives back n bytes charged earlier (b may be NULL). Any thread. */
void budget_release(struct budget *b, size_t n);

/* Bytes charged now, and the limit's headroom (SIZE_MAX without a bound). */
size_t budget_used(const struct budget *b);
size_t budget_left(const struct budget *b);

#endif
