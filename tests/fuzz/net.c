/* The in-process server for fuzz_http and fuzz_ws (net.h). */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "common.h"
#include "net/conn.h"
#include "core/engine.h"
#include "engines/registry.h"
#include "net/http.h"
#include "base/log.h"
#include "base/metrics.h"

#define RX_KEEP_MAX  65536     /* bytes of replies kept with FUZZ_OPEN_CAPTURE */
#define WAIT_MAX_MS  5000      /* settle/close give up (abort) after this */

struct config fuzz_cfg;
struct fuzz_net_stats fuzz_net_stats;
static struct config base_cfg_;
static uv_loop_t *loop_;
static struct worker worker_;     /* the in-process server (no listener) */
static char rbuf_[65536];

static const char *fuzz_env(const char *name) {
    if (strcmp(name, "ASR_MOCK_LATENCY_MS") == 0) return "0";
    if (strcmp(name, "ASR_LOG_LEVEL") == 0) {
        const char *v = getenv("FUZZ_LOG_LEVEL");
        return v ? v : "info";
    }
    return NULL;
}

static void print_stats(void) {
    fprintf(stderr, "fuzz_net: inputs %llu, stalls %llu, server closed %llu, bytes received %llu\n",
            (unsigned long long)fuzz_net_stats.inputs, (unsigned long long)fuzz_net_stats.stalls,
            (unsigned long long)fuzz_net_stats.server_closed, (unsigned long long)fuzz_net_stats.bytes_rx);
}

void fuzz_net_init(void) {
    static int done;
    if (done) return;
    done = 1;
    fuzz_common_init();
    if (sodium_init() < 0) abort();
    signal(SIGPIPE, SIG_IGN);
    char err[256];
    if (config_load_from(&base_cfg_, fuzz_env, err, sizeof err) != 0) {
        fuzz_fail("config: %s", err);
    }
    base_cfg_.engine_settings = engines_settings_load(engines_find(base_cfg_.engine), fuzz_env, err, sizeof err);
    if (!base_cfg_.engine_settings) fuzz_fail("engine settings: %s", err);
    fuzz_cfg = base_cfg_;
    log_setup(fuzz_cfg.log_level, fuzz_cfg.log_format, fuzz_cfg.worker_id);
    loop_ = uv_default_loop();
    /* What worker_run() does before it listens. */
    if (worker_init(&worker_, &fuzz_cfg, loop_) != 0) fuzz_fail("worker_init failed (engine or session store)");
    if (getenv("FUZZ_STATS")) atexit(print_stats);
}

/* Reads whatever the server sent; returns the byte count. */
static size_t drain(struct fuzz_client *fc) {
    size_t total = 0;
    if (!fc || fc->fd < 0 || fc->eof) return 0;
    for (;;) {
        ssize_t n = recv(fc->fd, rbuf_, sizeof rbuf_, 0);
        if (n > 0) {
            total += (size_t)n;
            if ((fc->flags & FUZZ_OPEN_CAPTURE) && fc->rx.len < RX_KEEP_MAX) {
                size_t k = RX_KEEP_MAX - fc->rx.len;
                buf_append(&fc->rx, rbuf_, (size_t)n < k ? (size_t)n : k);
            }
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            fc->eof = 1;
            fuzz_net_stats.server_closed++;
        }
        break;
    }
    fuzz_net_stats.bytes_rx += total;
    return total;
}

/* Writes in flight: each waits for the client to read, so the harness
 * (the only client, on this thread) must never block in the poll for one. */
static unsigned writes_in_flight(void) {
    unsigned n = 0;
    for (struct conn *c = worker_.conns.conns; c; c = c->next) n += c->writing ? 1u : 0u;
    return n;
}

/* How long (ms) until something happens without the client: 0 now
 * (pending callbacks, closing handles, a timer due), the time to a timer
 * due within FUZZ_SHORT_TIMER_MS, 1 while thread-pool work runs (polled);
 * -1 when only the client can make something happen. */
static int loop_wait_ms(void) {
    int t = uv_backend_timeout(loop_);
    if (t >= 0 && t <= FUZZ_SHORT_TIMER_MS) return t;
    if (loop_->active_reqs.count > writes_in_flight()) return 1;
    return -1;
}

static int loop_busy(void) { return loop_wait_ms() >= 0; }

/* One loop turn (never blocking inside libuv: a blocked poll could wait for
 * the client, which is this thread) between two reads of the replies. When
 * the loop expects something soon and nothing arrived, wait for it on the
 * loop's backend fd (readable when any watched fd or the thread pool's
 * wakeup is ready), at most until the timer is due. Returns non-zero on
 * progress: bytes received, or the loop busy on its own. */
static int step(struct fuzz_client *fc, int reading) {
    size_t got = reading ? drain(fc) : 0;
    int wait = loop_wait_ms();
    uv_run(loop_, UV_RUN_NOWAIT);
    got += reading ? drain(fc) : 0;
    if (wait > 0 && !got) {
        struct pollfd p = {.fd = uv_backend_fd(loop_), .events = POLLIN};
        poll(&p, 1, wait > 5 ? 5 : wait);
    }
    return wait >= 0 || got;
}

static uint64_t now_ms(void) { return util_now_ns() / 1000000u; }

void fuzz_client_open(struct fuzz_client *fc, int flags) {
    int sv[2];
    memset(fc, 0, sizeof *fc);
    fc->fd = -1;
    fc->flags = flags;
    buf_init(&fc->rx, 0);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        fuzz_fail("socketpair: %s", strerror(errno));
    }
    if (fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK) != 0) abort();
    if (flags & FUZZ_OPEN_SMALLBUF) {
        int sz = 2048;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    struct conn *c = conn_create(&worker_.conns);
    if (!c) abort();
    metrics.connections_active++;
    int r = uv_tcp_open(&c->tcp, sv[0]);
    if (r != 0) {
        fuzz_fail("uv_tcp_open: %s", uv_strerror(r));
    }
    metrics.connections_total++;
    if (http_conn_start(c, &worker_.http) != 0) conn_close(c);
    fc->fd = sv[1];
    fuzz_net_stats.inputs++;
}

void fuzz_client_send(struct fuzz_client *fc, const void *p, size_t n) {
    const uint8_t *b = p;
    int stall = 0, reading = !(fc->flags & FUZZ_OPEN_NOREAD);
    while (n && fc->fd >= 0 && !fc->eof) {
        ssize_t k = send(fc->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            fc->eof = 1; /* EPIPE, ECONNRESET: the server is gone */
            break;
        }
        if (k > 0) {
            b += k;
            n -= (size_t)k;
        }
        int progress = step(fc, reading);
        if (k > 0 || progress) {
            stall = 0;
        } else if (++stall > 3) {
            if (!reading) {
                reading = 1; /* the slow reader has stalled the server: read now */
                stall = 0;
                continue;
            }
            fuzz_net_stats.stalls++;
            if (getenv("FUZZ_ABORT_ON_STALL")) {
                fuzz_fail("the server stopped reading with %zu bytes unsent", n);
            }
            break;
        }
    }
    step(fc, reading);
}

void fuzz_client_settle(struct fuzz_client *fc) {
    uint64_t t0 = now_ms();
    int idle = 0;
    for (unsigned i = 0;; i++) {
        if (step(fc, 1)) idle = 0;
        else if (++idle >= 2) return;
        if ((i & 255) == 255 && now_ms() - t0 > WAIT_MAX_MS) {
            fuzz_fail("the server never settled (%u loop turns in %d ms)", i, WAIT_MAX_MS);
        }
    }
}

void fuzz_client_shutdown(struct fuzz_client *fc) {
    if (fc->fd >= 0) shutdown(fc->fd, SHUT_WR);
    fuzz_client_settle(fc);
}

struct worker *fuzz_net_worker(void) { return &worker_; }

void fuzz_client_close(struct fuzz_client *fc) {
    struct worker *w = &worker_;
    if (fc->fd >= 0) close(fc->fd);
    fc->fd = -1;
    buf_cleanup(&fc->rx);
    uint64_t t0 = now_ms();
    for (unsigned i = 0;; i++) {
        if (!w->conns.conns && !loop_busy()) break;
        step(NULL, 0);
        if ((i & 63) == 63 && now_ms() - t0 > WAIT_MAX_MS) {
            fuzz_fail("%s %d ms after the client closed",
                      w->conns.conns ? "a connection is still open" : "the loop is still busy", WAIT_MAX_MS);
        }
    }
}

static char fuzz_err_rate_[32];
static const char *fuzz_engine_env(const char *name) {
    if (strcmp(name, "ASR_MOCK_ERROR_RATE") == 0) return fuzz_err_rate_;
    return fuzz_env(name);
}

void fuzz_net_engine_error_rate(double rate) {
    static double loaded_rate = 0;
    if (rate == loaded_rate) return;
    engine_unload();
    for (unsigned i = 0; i < 1000 && loop_busy(); i++) step(NULL, 0);
    uv_run(loop_, UV_RUN_NOWAIT);
    snprintf(fuzz_err_rate_, sizeof fuzz_err_rate_, "%.17g", rate);
    char err[256];
    static void *settings; /* the engine keeps the pointer while loaded */
    const struct engine_ops *ops = engines_find(fuzz_cfg.engine);
    void *st = engines_settings_load(ops, fuzz_engine_env, err, sizeof err);
    if (!st) fuzz_fail("engine settings: %s", err);
    struct engine_cfg ec = {.loop = loop_, .settings = st};
    if (engine_load(ops, &ec) != 0) fuzz_fail("cannot reload engine %s", fuzz_cfg.engine);
    free(settings);
    settings = st;
    loaded_rate = rate;
}

void fuzz_net_reset(void) {
    struct worker *w = &worker_;
    api_stream_shutdown(w->api, 0); /* resumable sessions: destroyed, idle timers closing */
    w->api_env.draining = 0;        /* the next input finds a serving worker */
    w->api_env.retiring = 0;
    for (unsigned i = 0; i < 5000 && loop_busy(); i++) step(NULL, 0);
    uv_run(loop_, UV_RUN_NOWAIT);
    /* Periodic timers (the store's sync and sweep) may be due now: only
     * what the input left matters. */
    if (w->conns.conns || api_stream_count(w->api) != 0 || loop_->active_reqs.count || loop_->closing_handles)
        fuzz_fail("state left after the input: conns %p, sessions %zu, requests %u, closing handles %d",
                  (void *)w->conns.conns, api_stream_count(w->api), loop_->active_reqs.count, loop_->closing_handles != NULL);
    /* Every byte charged to the memory budgets was given back with what held it. */
    if (budget_used(&w->upload_mem) || budget_used(&w->message_mem))
        fuzz_fail("memory budgets not given back: uploads %zu, messages %zu", budget_used(&w->upload_mem),
                  budget_used(&w->message_mem));
    w->upload_mem.limit = base_cfg_.upload_memory_bytes;
    w->message_mem.limit = base_cfg_.message_memory_bytes;
    fuzz_cfg = base_cfg_;
}
