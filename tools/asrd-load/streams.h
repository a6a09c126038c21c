/* streams: the driver of real-time streaming sessions (docs/LOAD.md
 * "Scheduling", "What is measured"), on the session client of wsclient.h.
 *
 * Sessions start as the phase asks (at once, over the ramp, or replaced as
 * they end for churn). On its `session` message a session sends chunk k at
 * t0 + k * chunk_ms (absolute deadlines, loadstat_sched; t0 a random offset
 * within one period so sessions spread their sends), matches every answer to
 * the chunk it answers (docs/API.md "Sequence numbers") and times it, and at
 * stop_at sends `stop` and waits for its `final` and the close. One libuv
 * timer serves a min-heap of the sessions' next deadlines, so thousands of
 * sessions cost one wake-up per due millisecond, not one timer each.
 *
 * Slow readers (SCF_SLOW) and flooders (SCF_FLOOD) are roles of some slots
 * (loadstat_role): counted apart, not timed. A scenario changes what its
 * sessions send and what they read from the messages through struct
 * stream_hooks (the speech scenarios do); without hooks a session streams
 * the looped clip 0 from a random chunk, for ramp + duration seconds from
 * its own start (churn: a random life). */
#ifndef ASRD_LOAD_STREAMS_H
#define ASRD_LOAD_STREAMS_H

#include <stddef.h>
#include <stdint.h>

#include "loadstat.h"
#include "scenario.h"
#include "wsclient.h"

struct load;

/* Every hook is optional. */
struct stream_hooks {
    /* s got its `session` message at now_ns: its schedule and the default
     * stop_at (ramp + duration from now, capped by the phase's t_stop) are
     * set; the hook may change stop_at. */
    void (*on_open)(struct load *L, struct sess *s, uint64_t now_ns);
    /* The audio of the chunk about to go out as sequence seq (1-based) in
     * schedule slot slot: *pcm (chunk_bytes) in binary mode, *b64 in json
     * mode; both borrowed until the call returns. */
    void (*chunk)(struct load *L, struct sess *s, uint64_t slot, uint64_t seq, const uint8_t **pcm,
                  const char **b64);
    /* Chunk seq was queued at t_ns (the send time its answer is timed from). */
    void (*on_sent)(struct load *L, struct sess *s, uint64_t seq, uint64_t t_ns);
    /* Every text message of s after the driver counted it (m: the scanned
     * type, sequence and code; msg[0..len): the message), received at t_ns. */
    void (*on_text)(struct load *L, struct sess *s, const struct loadstat_msg *m, const uint8_t *msg, size_t len,
                    uint64_t t_ns);
    /* s ends (after the driver's accounting, before its slot is freed). */
    void (*on_end)(struct load *L, struct sess *s);
};

/* Streaming sessions, with the scenario's stream_hooks. */
extern const struct load_driver streams_driver;

#endif
