#include "test.h"

#include <dirent.h>
#include <unistd.h>

#include "base/metrics.h"
#include "base/util.h"
#include "server/worker.h"

#include <stdlib.h>
#include <string.h>

/* Open descriptors as /proc/self/fd lists them (the reference). */
static uint64_t fds_by_listing(void) {
    DIR *d = opendir("/proc/self/fd");
    uint64_t n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR's own descriptor */
}

static uint64_t fds_by_walk(size_t slots) {
    struct metrics_fdwalk w;
    metrics_fdwalk_begin(&w);
    while (!metrics_fdwalk_step(&w, slots)) {}
    return w.open;
}

TEST(metrics_fdwalk_counts_what_proc_lists) {
    int p[300][2];
    for (int i = 0; i < 300; i++) ASSERT_EQ_INT(pipe(p[i]), 0);
    uint64_t ref = fds_by_listing();
    ASSERT(ref >= 600);
    ASSERT_EQ_INT(fds_by_walk(METRICS_FDWALK_SLOTS), ref);
    ASSERT_EQ_INT(fds_by_walk(1), ref);
    ASSERT_EQ_INT(fds_by_walk(7), ref);
    ASSERT_EQ_INT(fds_by_walk(100000), ref); /* clamped to METRICS_FDWALK_SLOTS */
    /* holes: close every third pipe, and the low end of some */
    for (int i = 0; i < 300; i += 3) {
        close(p[i][0]);
        close(p[i][1]);
    }
    close(p[1][0]);
    uint64_t ref2 = fds_by_listing();
    ASSERT_EQ_INT(ref2, ref - 201);
    ASSERT_EQ_INT(fds_by_walk(METRICS_FDWALK_SLOTS), ref2);
    ASSERT_EQ_INT(fds_by_walk(5), ref2);
    for (int i = 0; i < 300; i++)
        if (i % 3) {
            if (i != 1) close(p[i][0]);
            close(p[i][1]);
        }
    ASSERT_EQ_INT(fds_by_walk(METRICS_FDWALK_SLOTS), fds_by_listing());
}

TEST(metrics_fdwalk_steps_are_bounded) {
    int p[200][2];
    for (int i = 0; i < 200; i++) ASSERT_EQ_INT(pipe(p[i]), 0);
    struct metrics_fdwalk w;
    metrics_fdwalk_begin(&w);
    ASSERT(w.end >= 400);
    size_t steps = 0, prev = 0;
    while (!metrics_fdwalk_step(&w, 64)) {
        ASSERT(w.next - prev == 64);
        prev = w.next;
        steps++;
    }
    ASSERT_EQ_INT(steps, (w.end + 63) / 64 - 1);
    ASSERT_EQ_INT(w.next, w.end);
    ASSERT_EQ_INT(metrics_fdwalk_step(&w, 64), 1); /* a finished walk stays finished */
    for (int i = 0; i < 200; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

TEST(metrics_rss_is_read) {
    ASSERT(metrics_rss_bytes() > 100000);
}



struct waiter {
    struct worker_proc_waiter wt;     /* first member */
    int called;
    uint64_t open_fds;                /* what /v1/metrics showed when it was called */
};

static uint64_t rendered_open_fds(void) {
    struct buf b;
    buf_init(&b, 0);
    metrics_json(&b, "w0");
    const char *p = strstr(b.data, "\"open_fds\":");
    uint64_t n = p ? strtoull(p + 11, NULL, 10) : 0;
    buf_cleanup(&b);
    return n;
}

static void waiter_cb(struct worker_proc_waiter *wt) {
    struct waiter *x = (struct waiter *)wt;
    x->called++;
    x->open_fds = rendered_open_fds();
}

/* A caller that arrives while a count is half way gets the next count, not
 * that one: descriptors opened in slots already counted are included. */
TEST(metrics_refresh_during_a_count_waits_for_the_next) {
    metrics_init();
    static struct worker worker;
    struct worker *w = &worker;
    memset(w, 0, sizeof *w);
    w->loop = uv_default_loop();
    worker_proc_init(w);
    int p[700][2];
    for (int i = 0; i < 700; i++) ASSERT_EQ_INT(pipe(p[i]), 0);
    for (int i = 0; i < 5; i++) {    /* holes at the bottom of the table */
        close(p[i][0]);
        close(p[i][1]);
    }
    worker_proc_refresh(w, NULL);    /* a count starts (the tick) */
    uv_run(w->loop, UV_RUN_NOWAIT);  /* ... and looks at its first 256 slots */
    ASSERT(w->proc_busy);
    for (int i = 0; i < 5; i++) ASSERT_EQ_INT(pipe(p[i]), 0); /* into the counted holes */
    uint64_t now_open = fds_by_listing();
    struct waiter a = {.wt.cb = waiter_cb}, gone = {.wt.cb = waiter_cb};
    worker_proc_refresh(w, &a.wt);
    worker_proc_refresh(w, &gone.wt);
    worker_proc_cancel(w, &gone.wt);    /* its owner went away */
    for (int k = 0; k < 1000 && !a.called; k++) uv_run(w->loop, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(a.called, 1);
    ASSERT_EQ_INT(a.open_fds, now_open);
    ASSERT_EQ_INT(gone.called, 0);
    ASSERT(!w->proc_busy);              /* nobody else waits: no further count */
    for (int i = 0; i < 700; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}
