/* The adaptive window (adaptive.h). */
#include "core/adaptive.h"

unsigned adaptive_next(const struct adaptive_cfg *c, unsigned cur_ms, double avg_ms, uint64_t n) {
    if (n < c->min_samples || n == 0) return cur_ms;
    if (avg_ms > (double)c->high_ms && cur_ms < c->max_ms)
        return cur_ms + c->step_ms < c->max_ms ? cur_ms + c->step_ms : c->max_ms;
    if (avg_ms < (double)c->low_ms && cur_ms > c->min_ms)
        return cur_ms - c->min_ms > c->step_ms ? cur_ms - c->step_ms : c->min_ms;
    return cur_ms;
}
