/* One worker process: a libuv loop, the listener, the connection limit, the
 * end-of-iteration write flush, the 1 s housekeeping tick, signals and
 * graceful drain (ASR_DRAIN_TIMEOUT_S). */
#ifndef ASRD_WORKER_H
#define ASRD_WORKER_H

#include <signal.h>
#include <stdint.h>
#include <uv.h>

#include "api/api.h"
#include "base/budget.h"
#include "base/config.h"
#include "base/metrics.h"
#include "net/conn.h"
#include "net/files.h"
#include "net/http.h"


/* A caller waiting for fresh process figures (worker_proc_refresh). */
struct worker_proc_waiter {
    void (*cb)(struct worker_proc_waiter *wt); /* on the loop, once they are stored */
    struct worker_proc_waiter *next;
};

#define WORKER_ROUTES 16

/* What the master tells a worker (docs/internals/workers.md, "Signals").
 * None of them is sent by a terminal or by a signal to the process group,
 * so a Ctrl-C (SIGINT to the whole group), `kill -TERM -<pgid>` or
 * systemd's KillMode=control-group reach the workers only through the
 * master: workers under a master ignore SIGINT, SIGTERM and SIGHUP. */
#define WORKER_SIG_DRAIN  SIGUSR1   /* shut down gracefully; also the parent-death signal */
#define WORKER_SIG_RETIRE SIGUSR2   /* rolling restart: stop accepting (the successor does), drain */
#define WORKER_SIG_STOP   SIGRTMIN  /* stop now: the master got a second SIGINT/SIGTERM */
/* The other way: a worker asks the master for a successor (it finished
 * ASR_WORKER_MAX_JOBS job runs); the master starts one on the same socket
 * and then sends the asker WORKER_SIG_RETIRE, as in a rolling restart. */
#define WORKER_SIG_REPLACE_ME (SIGRTMIN + 1)

struct worker {
    uv_loop_t   *loop;               /* borrowed (uv_default_loop) */
    const struct config *cfg;        /* borrowed, process lifetime */
    struct conn_set conns;           /* every client connection of this loop */
    struct api_env api_env;          /* what the API layer gets; its draining flags */
    struct api  *api;                /* owned: the API context (api_create), freed at exit */
    struct http_server http;         /* routes and request limits */
    struct budget upload_mem;        /* bodies and decoding of uploads in flight (ASR_UPLOAD_MEMORY_BYTES) */
    struct budget message_mem;       /* partial WebSocket messages (ASR_MESSAGE_MEMORY_BYTES) */
    struct http_route routes[WORKER_ROUTES];
    struct http_cors cors;           /* the CORS policy http serves with (ASR_CORS_*) */
    struct files *files;             /* owned: the page's static files (ASR_WEB_DIR), or NULL */
    char         web_dir[4096];      /* the directory they come from ("" = no page) */
    struct pool *pool;               /* owned: a windowed engine's inference pool, or NULL */
    uv_tcp_t     listener;
    uv_prepare_t prep;               /* flush writes before polling */
    uv_check_t   check;              /* flush writes after callbacks */
    uv_timer_t   tick;               /* 1 s: rates, expiry, drain progress */
    uv_signal_t  sig_drain, sig_retire, sig_stop; /* WORKER_SIG_* */
    uv_signal_t  sig_term, sig_int;  /* stand-alone (no master) only: drain, then stop */
    int          under_master;       /* forked by a master (WORKER_SIG_REPLACE_ME has someone to go to) */
    uint64_t     start_ms;           /* wall clock at start */
    int          listening;
    uint64_t     drain_deadline_ms;  /* loop time when drain gives up */
    uv_idle_t    proc_idle;          /* runs one slice of a descriptor count per iteration */
    struct metrics_fdwalk proc_walk; /* the count in progress */
    int          proc_busy;          /* a count is in progress */
    struct worker_proc_waiter *proc_waiters; /* called when it completes */
    struct worker_proc_waiter *proc_next;    /* came during it: called after the next count */
    uint64_t     it_prev_ns, it_prev_idle_ns;     /* loop accounting (on_check) */
    uint64_t     tick_prev_ns, tick_prev_idle_ns; /* loop utilization per tick */
    uint64_t     adapt_mark;         /* stream latencies recorded when the adaptive window last changed */
};

/* How the master started this worker (NULL boot: a stand-alone process that
 * binds its own socket). */
struct worker_boot {
    int index;                       /* slot number (worker id suffix) */
    int listen_fd;                   /* inherited listening socket, or -1 to bind */
    int ready_fd;                    /* one byte is written here once listening, then closed; -1 = none */
    const sigset_t *unblock;         /* signals the master blocked; unblocked once the loop handles them */
};

/* Listens and runs the loop until drained. Returns the exit status. */
int worker_run(const struct config *cfg, const struct worker_boot *boot);

/* Everything worker_run() sets up before it listens: metrics, the engine,
 * the API context (with the session store), routes, the flush handles, the
 * descriptor count. w is
 * zeroed first; cfg must outlive it. Returns 0, or 2 with a message on
 * stderr (the engine or the store URL cannot be used). The in-process fuzz
 * harness runs a worker this way, without a listener. */
int worker_init(struct worker *w, const struct config *cfg, uv_loop_t *loop);
/* Sets up the descriptor count (its idle handle) and takes a first reading
 * at once: worker_run() calls it before the loop runs. */
void worker_proc_init(struct worker *w);
/* Counts open descriptors, METRICS_FDWALK_SLOTS table slots per loop
 * iteration (a few tens of us each), then reads RSS, stores both
 * (metrics_proc_set) and calls wt->cb, in a later iteration. The count wt
 * gets started after this call: a call during a count waits for the next
 * one (part of the table was already counted). wt may be NULL (the tick:
 * a count in progress is enough). */
void worker_proc_refresh(struct worker *w, struct worker_proc_waiter *wt);
/* Forgets a waiter whose owner goes away before its callback ran. */
void worker_proc_cancel(struct worker *w, struct worker_proc_waiter *wt);

#endif
