/* The adaptive window (docs/internals/reading-feedback.md, "Adaptive
 * window"): the partial window new streaming sessions get follows the mean
 * stream latency. Above high_ms the window grows by step_ms (up to
 * max_ms): fewer, longer windows ease a loaded pool; below low_ms it
 * shrinks by step_ms (down to min_ms): faster feedback when there is room.
 * Sessions keep the window they started with. Pure: the server calls it
 * once a second with the latencies recorded since the window last changed. */
#ifndef ASRD_CORE_ADAPTIVE_H
#define ASRD_CORE_ADAPTIVE_H

#include <stdint.h>

struct adaptive_cfg {
    unsigned high_ms, low_ms;      /* mean latency thresholds, ms (low < high) */
    unsigned min_ms, max_ms;       /* window bounds, ms */
    unsigned step_ms;              /* 500 */
    unsigned min_samples;          /* latencies needed before a decision */
};

/* The window after one decision: cur_ms moved by a step when the mean
 * (avg_ms of n latencies, all recorded under the current window) says so,
 * else cur_ms. Fewer than min_samples latencies: no decision. A window
 * outside [min_ms, max_ms] (ASR_WINDOW_MS set outside them) only moves
 * toward the bounds it is told to. */
unsigned adaptive_next(const struct adaptive_cfg *c, unsigned cur_ms, double avg_ms, uint64_t n);

#endif
