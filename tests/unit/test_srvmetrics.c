/* Unit tests for the settle rule of tools/asrd-load/srvmetrics.c: when the
 * "after" snapshot of a phase is taken. The server's open fds can read
 * high just after the sessions ended (27 -> 84, then 27 two seconds later,
 * seen on a real run): the snapshot waits until they are back or have
 * stopped changing, within a bound, and says how long it waited. */
#include "test.h"

#include <stdint.h>
#include <string.h>

#include "srvmetrics.h"

#define MS 1000000ull

static struct loadstat_server snap(uint64_t fds, uint64_t sessions, uint64_t conns, uint64_t workers) {
    struct loadstat_server s;
    memset(&s, 0, sizeof s);
    s.ok = 1;
    s.open_fds = fds;
    s.sessions_active = sessions;
    s.connections_active = conns;
    s.workers = workers;
    return s;
}

/* Feeds readings of open fds, one every 100 ms from t0; returns how many
 * were read until the rule was satisfied (0 when never). */
static size_t feed(struct srvmetrics_settle *st, const uint64_t *fds, size_t n, uint64_t t0, uint64_t workers) {
    for (size_t i = 0; i < n; i++) {
        struct loadstat_server s = snap(fds[i], 0, 1, workers);
        if (srvmetrics_settle_feed(st, &s, t0 + i * 100 * MS)) return i + 1;
    }
    return 0;
}

/* The case seen: 84 just after the run, back to 27 later. The first
 * reading of 84 is not taken; the one of 27 is. */
TEST(srvmetrics_settle_waits_for_fds_back) {
    struct loadstat_server before = snap(27, 0, 1, 0);
    struct srvmetrics_settle st;
    uint64_t t0 = 5000 * MS;
    srvmetrics_settle_init(&st, &before, t0);
    const uint64_t fds[] = {84, 84, 83, 60, 27, 27};
    ASSERT_EQ_INT(feed(&st, fds, 6, t0, 0), 5);
    ASSERT_EQ_INT(st.steady, 1);
    ASSERT_NEAR(st.waited_s, 0.4, 1e-9);
}

/* Back at once: no wait. */
TEST(srvmetrics_settle_immediate) {
    struct loadstat_server before = snap(14, 0, 1, 0);
    struct srvmetrics_settle st;
    srvmetrics_settle_init(&st, &before, 0);
    const uint64_t fds[] = {14};
    ASSERT_EQ_INT(feed(&st, fds, 1, 0, 0), 1);
    ASSERT_EQ_INT(st.steady, 1);
    ASSERT_NEAR(st.waited_s, 0, 0);
}

/* A count that stays above the one before (the server keeps descriptors
 * open) settles once it has not changed for SRVMETRICS_STEADY_NS. */
TEST(srvmetrics_settle_steady_elsewhere) {
    struct loadstat_server before = snap(27, 0, 1, 0);
    struct srvmetrics_settle st;
    srvmetrics_settle_init(&st, &before, 0);
    uint64_t fds[20];
    for (size_t i = 0; i < 20; i++) fds[i] = i < 3 ? 90 - i : 31;   /* 90 89 88 31 31 ... */
    size_t n = feed(&st, fds, 20, 0, 0);
    /* 31 first read at 300 ms, unchanged for 500 ms at 800 ms: reading 9 */
    ASSERT_EQ_INT(n, 9);
    ASSERT_EQ_INT(st.steady, 1);
    ASSERT_NEAR(st.waited_s, 0.8, 1e-9);
    /* With several workers (their figures published once a second, up to
     * 2 s old) it must hold for SRVMETRICS_STEADY_WORKERS_NS. */
    before.workers = 2;
    srvmetrics_settle_init(&st, &before, 0);
    uint64_t many[40];
    for (size_t i = 0; i < 40; i++) many[i] = i < 3 ? 90 : 31;
    ASSERT_EQ_INT(feed(&st, many, 40, 0, 2), 3 + 25 + 1);
    ASSERT_EQ_INT(st.steady, 1);
}

/* Counts that keep changing: the wait ends at SRVMETRICS_SETTLE_MAX_NS,
 * not steady. */
TEST(srvmetrics_settle_bounded) {
    struct loadstat_server before = snap(10, 0, 1, 0);
    struct srvmetrics_settle st;
    srvmetrics_settle_init(&st, &before, 0);
    uint64_t fds[200];
    for (size_t i = 0; i < 200; i++) fds[i] = 50 + i % 2;
    size_t n = feed(&st, fds, 200, 0, 0);
    ASSERT_EQ_INT(n, SRVMETRICS_SETTLE_MAX_NS / (100 * MS) + 1);
    ASSERT_EQ_INT(st.steady, 0);
    ASSERT_NEAR(st.waited_s, 10.0, 1e-9);
}

/* Sessions and connections come back first (at most 3 s); the fds are
 * judged only after that. */
TEST(srvmetrics_settle_active_first) {
    struct loadstat_server before = snap(14, 0, 1, 0);
    struct srvmetrics_settle st;
    srvmetrics_settle_init(&st, &before, 0);
    struct loadstat_server busy = snap(14, 3, 4, 0);
    ASSERT_EQ_INT(srvmetrics_settle_feed(&st, &busy, 0), 0);
    ASSERT_EQ_INT(srvmetrics_settle_feed(&st, &busy, 2900 * MS), 0);
    /* past 3 s the sessions are given up on; fds back: settled */
    ASSERT_EQ_INT(srvmetrics_settle_feed(&st, &busy, 3000 * MS), 1);
    ASSERT_EQ_INT(st.steady, 1);
    /* a snapshot that could not be read ends the wait, not steady */
    srvmetrics_settle_init(&st, &before, 0);
    struct loadstat_server bad;
    memset(&bad, 0, sizeof bad);
    ASSERT_EQ_INT(srvmetrics_settle_feed(&st, &bad, 100 * MS), 1);
    ASSERT_EQ_INT(st.steady, 0);
    /* ... and so does a phase without a snapshot before it */
    before.ok = 0;
    srvmetrics_settle_init(&st, &before, 0);
    ASSERT_EQ_INT(srvmetrics_settle_feed(&st, &busy, 0), 1);
    ASSERT_EQ_INT(st.steady, 0);
}
