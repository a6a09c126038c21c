/* The in-process server the socket-level fuzz targets (fuzz_http, fuzz_ws)
 * drive: the real worker loop, routes and mock engine, and client
 * connections made of an AF_UNIX socketpair whose server end is a conn
 * created the way worker.c creates an accepted one (conn_create,
 * uv_tcp_open on the fd, http_conn_start). The harness writes the fuzz
 * input into the client end, reads and discards (or keeps) the replies, and
 * runs the loop until nothing more happens; every connection and session
 * is freed before the next input, so LeakSanitizer sees each input alone.
 *
 * Start-up follows worker_run(): metrics, routes, the engine, the session
 * store (api_create: the in-memory store, as without ASR_REDIS_URL),
 * the prepare/check flush handles. Not started: the listener, signals and
 * the 1 s tick (rates, send timeouts, drain progress).
 *
 * Configuration: the shipped defaults (config_load_from with no variables)
 * except ASR_MOCK_LATENCY_MS=0, so engine answers come on the next loop
 * turns instead of 50 ms later. Timers longer than FUZZ_SHORT_TIMER_MS
 * (handshake 10 s, idle 300 s, the 2 s close linger, the store's 1 s sync)
 * are never waited for. */
#ifndef ASRD_FUZZ_NET_H
#define ASRD_FUZZ_NET_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/util.h"
#include "server/worker.h"

#define FUZZ_SHORT_TIMER_MS 20

/* The configuration in use; a target may change fields for one input (its
 * flags) and must call fuzz_net_reset() afterwards, which restores it. */
extern struct config fuzz_cfg;

enum {
    FUZZ_OPEN_CAPTURE  = 1, /* keep up to 64 KiB of what the server sends in rx */
    FUZZ_OPEN_SMALLBUF = 2, /* small server send buffer: short writes, writes in flight */
    FUZZ_OPEN_NOREAD   = 4, /* read nothing while sending (a slow reader); settle still reads */
};

struct fuzz_client {
    int fd;              /* our end of the socketpair, non-blocking; -1 once closed */
    int eof;             /* the server closed its end (or reset it) */
    int flags;           /* FUZZ_OPEN_* */
    struct buf rx;       /* replies kept with FUZZ_OPEN_CAPTURE (bounded); owned */
};

/* Once per process (LLVMFuzzerInitialize): sodium, logging, worker, routes,
 * engine. Reads FUZZ_LOG_LEVEL (default "info": log lines are built, and
 * written to stderr, which run.sh discards with -close_fd_mask=2). */
void fuzz_net_init(void);

/* Opens a connection as if just accepted. Aborts on a setup failure. */
void fuzz_client_open(struct fuzz_client *fc, int flags);

/* Writes all of p[0..n) (or until the server is gone or stops reading),
 * running the loop while the socket is full and once after the last byte. */
void fuzz_client_send(struct fuzz_client *fc, const void *p, size_t n);

/* Runs the loop and reads replies until nothing more happens: no bytes
 * arrive, no thread-pool work or write is in flight and no timer is due
 * within FUZZ_SHORT_TIMER_MS. Aborts if that never comes (a livelock). */
void fuzz_client_settle(struct fuzz_client *fc);

/* Half-closes our end (the server reads EOF) and settles. */
void fuzz_client_shutdown(struct fuzz_client *fc);

/* Closes our end and runs the loop until the server has freed every
 * connection and finished every thread-pool job. Aborts otherwise. */
void fuzz_client_close(struct fuzz_client *fc);

/* After the last client of an input is closed: drops resumable sessions
 * (as a drain would), runs the loop until their handles are closed, checks
 * that no connection or session is left, and restores fuzz_cfg and the
 * worker's draining flag. */
void fuzz_net_reset(void);

/* The in-process worker (its connections, its api_env draining flag). */
struct worker *fuzz_net_worker(void);

/* Reloads the mock engine with ASR_MOCK_ERROR_RATE=rate when that differs
 * from the loaded one (the engine reads its settings at load). Call between
 * inputs only: no session may exist. */
void fuzz_net_engine_error_rate(double rate);

/* Counters for the curious (printed at exit with FUZZ_STATS=1). */
struct fuzz_net_stats {
    uint64_t inputs, stalls, server_closed, bytes_rx;
};
extern struct fuzz_net_stats fuzz_net_stats;

#endif
