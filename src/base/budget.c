#include "base/budget.h"

#include <assert.h>

#include "base/err.h"

void budget_init(struct budget *b, size_t limit) {
    b->limit = limit;
    b->used = 0;
    b->peak = 0;
    b->refused = 0;
}

int budget_try_charge(struct budget *b, size_t n) {
    if (!b) return 0;
    size_t cur = __atomic_load_n(&b->used, __ATOMIC_RELAXED), next;
    do {
        if (b->limit && (n > b->limit || cur > b->limit - n)) {
            __atomic_fetch_add(&b->refused, 1, __ATOMIC_RELAXED);
            return ASR_EAGAIN;
        }
        next = cur + n;
    } while (!__atomic_compare_exchange_n(&b->used, &cur, next, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    size_t pk = __atomic_load_n(&b->peak, __ATOMIC_RELAXED);
    while (next > pk && !__atomic_compare_exchange_n(&b->peak, &pk, next, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return 0;
}

int budget_check(struct budget *b, size_t n) {
    if (!b || !b->limit) return 0;
    size_t cur = budget_used(b);
    if (n <= b->limit && cur <= b->limit - n) return 0;
    __atomic_fetch_add(&b->refused, 1, __ATOMIC_RELAXED);
    return ASR_EAGAIN;
}

void budget_release(struct budget *b, size_t n) {
    if (!b || !n) return;
    size_t was = __atomic_fetch_sub(&b->used, n, __ATOMIC_RELAXED);
    assert(was >= n); /* a release without its charge is our bug */
    (void)was;
}

size_t budget_used(const struct budget *b) { return b ? __atomic_load_n(&b->used, __ATOMIC_RELAXED) : 0; }

size_t budget_left(const struct budget *b) {
    if (!b || !b->limit) return SIZE_MAX;
    size_t u = budget_used(b);
    return u >= b->limit ? 0 : b->limit - u;
}
