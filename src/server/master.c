/* The master: listening sockets, worker processes, signals. See master.h. */
#define _GNU_SOURCE
#include "server/master.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"
#include "base/err.h"
#include "base/util.h"
#include "core/engine.h"
#include "engines/registry.h"
#include "server/redis_proc.h"
#include "server/worker.h"

#define MASTER_MAX_WORKERS 256
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_MS 30000          /* a worker that lived this long resets the backoff */
#define READY_TIMEOUT_MS 10000   /* rolling restart: wait this long for a new worker */
/* A slot whose workers die this many times in a row before they report
 * that they listen makes the master give up (exit 1): with the backoff
 * above that is about 1.5 s of retries plus the workers' start time. */
#define START_FAILS_MAX 5

struct slot {
    int      fd;                 /* listening socket; owned, closed at exit */
    pid_t    pid;                /* current worker, 0 = none */
    pid_t    old_pid;            /* worker being replaced (rolling restart), 0 = none */
    int      gen;                /* generation of pid; its metrics sub-slot is gen & 1 */
    int      old_gen;
    uint64_t started_ms;
    uint64_t restart_at_ms;      /* 0 = no restart scheduled */
    unsigned backoff_ms;
    int      ready_rd;           /* read end of pid's ready pipe, -1 = read or none; owned */
    int      ready;              /* pid reported that it listens */
    int      start_fails;        /* workers of this slot that died in a row before ready */
};

static struct slot slots_[MASTER_MAX_WORKERS];

static uint64_t mono_ms(void) { return util_now_ns() / 1000000u; }
static int nslots_;
static sigset_t sigs_;              /* the signals the master takes synchronously */
static pid_t master_pid_;
static int stopping_;               /* a shutdown signal came, or the master gave up */
static int exit_status_;            /* master_run's result once every worker is gone */

/* reuseport 0: a probe bound without SO_REUSEPORT, so that another process
 * already listening on the port (asrd included) is reported as "in use"
 * instead of silently sharing it. */
static int open_listener(const struct config *cfg, int reuseport) {
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
        sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, cfg->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        sl = sizeof *a6;
    } else {
        fprintf(stderr, "asrd: ASR_HOST: \"%s\" is not an IPv4 or IPv6 address\n", cfg->host);
        return -2;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0))
        goto fail;
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, cfg->backlog) != 0) goto fail;
    return fd;
fail:
    fprintf(stderr, "asrd: cannot listen on %s:%d: %s\n", cfg->host, cfg->port, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
}

static void log_worker(enum log_level lv, const char *msg, int i, pid_t pid, const char *extra_k,
                       const char *extra_v) {
    struct log_line *l = log_begin(lv, msg);
    if (!l) return;
    log_u64(l, "slot", (uint64_t)i);
    log_u64(l, "pid", (uint64_t)pid);
    if (extra_k) log_str(l, extra_k, extra_v);
    log_end(l);
}

/* The inference threads of slot i: ASR_INFERENCE_THREADS (0 = one per
 * core) for the whole instance, shared out so that N workers x M threads
 * match it (never cores squared decoders); each worker gets at least one. */
static unsigned master_threads_of(const struct config *cfg, int i) {
    unsigned total = cfg->inference_threads > 0 ? (unsigned)cfg->inference_threads : util_cpu_count();
    unsigned n = total / (unsigned)nslots_ + ((unsigned)i < total % (unsigned)nslots_ ? 1u : 0u);
    return n ? n : 1;
}

/* A windowed engine that can build its instances before the fork does so
 * now, in the master: as many as one worker has threads (slot 0 has the
 * most). Every worker's thread k starts from instance k; after the fork
 * each process has its own copy-on-write view of it, so the workers share
 * the model's pages and only the state a decode writes becomes private. */
static int master_preload_engine(const struct config *cfg) {
    const struct engine_ops *ops = engines_find(cfg->engine);
    if (!ops || !(ops->caps & ENGINE_CAP_WINDOWED) || !ops->preload) return 0;
    unsigned total = master_threads_of(cfg, 0);
    uint64_t t0 = util_now_ns();
    int rc = ops->preload(cfg->engine_settings, total);
    if (rc != 0) {
        fprintf(stderr, "asrd: ASR_ENGINE: engine \"%s\" could not build its %u instances before the workers "
                        "start: %s\n", cfg->engine, total, asr_strerror(rc));
        return 2;
    }
    struct log_line *l = log_begin(LOG_INFO, "engine preloaded");
    if (l) {
        log_str(l, "engine", cfg->engine);
        log_u64(l, "instances", total);
        log_u64(l, "ms", (util_now_ns() - t0) / 1000000);
        log_end(l);
    }
    return 0;
}

/* Forks the worker of slot i. ready_wr: write end of a pipe the worker
 * writes one byte to once it listens, then closes; ready_rd: its read end,
 * closed in the child. Returns the pid or -1. */
static pid_t spawn(const struct config *cfg, int i, int gen, int ready_rd, int ready_wr) {
    pid_t pid = fork();
    if (pid < 0) {
        log_worker(LOG_ERROR, "fork failed", i, 0, "error", strerror(errno));
        return -1;
    }
    if (pid > 0) return pid;
    /* child: a worker must not outlive its master (kill -9 of the master
     * drains the workers instead of leaving them unsupervised) */
    prctl(PR_SET_PDEATHSIG, WORKER_SIG_DRAIN);
    if (getppid() != master_pid_) kill(getpid(), WORKER_SIG_DRAIN); /* master already gone: drains once unblocked */
    static struct config wcfg;
    wcfg = *cfg;
    wcfg.workers = nslots_; /* the instance's size, for health's capacity */
    char idx[16];
    snprintf(idx, sizeof idx, "%d", i);
    size_t pl = strnlen(cfg->worker_id, sizeof wcfg.worker_id - sizeof idx);
    memcpy(wcfg.worker_id, cfg->worker_id, pl);
    memcpy(wcfg.worker_id + pl, idx, strlen(idx) + 1);
    wcfg.inference_threads = (int)master_threads_of(cfg, i);
    for (int k = 0; k < nslots_; k++) {
        if (k != i) close(slots_[k].fd);
        if (slots_[k].ready_rd >= 0) close(slots_[k].ready_rd);
    }
    if (ready_rd >= 0) close(ready_rd);
    log_setup(cfg->log_level, cfg->log_format, wcfg.worker_id);
    metrics_shared_bind(i * 2 + (gen & 1));
    struct worker_boot boot = {.index = i, .listen_fd = slots_[i].fd, .ready_fd = ready_wr,
                               .unblock = &sigs_};
    _exit(worker_run(&wcfg, &boot));
}

static void start_slot(const struct config *cfg, int i) {
    struct slot *s = &slots_[i];
    s->gen++;
    s->restart_at_ms = 0;
    s->ready = 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_worker(LOG_ERROR, "pipe failed", i, 0, "error", strerror(errno));
        s->restart_at_ms = mono_ms() + s->backoff_ms;
        return;
    }
    pid_t pid = spawn(cfg, i, s->gen, p[0], p[1]);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        s->restart_at_ms = mono_ms() + s->backoff_ms;
        return;
    }
    s->ready_rd = p[0];
    s->pid = pid;
    s->started_ms = mono_ms();
    log_worker(LOG_INFO, "worker started", i, pid, NULL, NULL);
}

/* Reads the ready byte of slot i's worker if it came. */
static void poll_ready(int i) {
    struct slot *s = &slots_[i];
    if (s->ready_rd < 0) return;
    char c;
    ssize_t r = read(s->ready_rd, &c, 1);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r == 1) {
        s->ready = 1;
        s->start_fails = 0;
    }
    close(s->ready_rd); /* the byte, or EOF: the worker closed it without listening */
    s->ready_rd = -1;
}

static void signal_all(int sig) {
    for (int i = 0; i < nslots_; i++) {
        if (slots_[i].pid > 0) kill(slots_[i].pid, sig);
        if (slots_[i].old_pid > 0) kill(slots_[i].old_pid, sig);
    }
}

static int alive_count(void) {
    int n = 0;
    for (int i = 0; i < nslots_; i++) n += (slots_[i].pid > 0) + (slots_[i].old_pid > 0);
    return n;
}

/* Stops the instance: every worker drains (the master exits with status
 * once the last is gone). Used on SIGTERM/SIGINT (status 0) and when the
 * master gives up on workers that cannot start. */
static void begin_stop(int status) {
    if (!stopping_) {
        stopping_ = 1;
        exit_status_ = status;
        signal_all(WORKER_SIG_DRAIN);
    }
}

/* A worker of slot i died before it ever listened. Exit status 2 is a
 * configuration error it reported (the engine does not load, the store URL
 * cannot be used): restarting cannot help, so the master stops with 2. A
 * slot whose workers die START_FAILS_MAX times in a row before listening
 * (crashes while loading, say) makes it give up with 1. */
static void start_failed(int i, pid_t pid, int status, const char *how) {
    struct slot *s = &slots_[i];
    s->start_fails++;
    int config_error = WIFEXITED(status) && WEXITSTATUS(status) == 2;
    if (!config_error && s->start_fails < START_FAILS_MAX) return;
    struct log_line *l = log_begin(LOG_ERROR, config_error ? "worker reported a configuration error at start; stopping"
                                                           : "workers keep dying at start; giving up");
    if (l) {
        log_u64(l, "slot", (uint64_t)i);
        log_u64(l, "pid", (uint64_t)pid);
        log_str(l, "exit", how);
        log_u64(l, "deaths_in_a_row", (uint64_t)s->start_fails);
        log_end(l);
    }
    if (config_error)
        fprintf(stderr, "asrd: the worker of slot %d stopped at start with status 2: a configuration error "
                        "(see its message above); stopping\n", i);
    else
        fprintf(stderr, "asrd: the workers of slot %d died %d times in a row before they listened (last: %s); "
                        "giving up\n", i, s->start_fails, how);
    begin_stop(config_error ? 2 : 1);
}

/* Stopping, and no worker of slot i is left: close the master's copy of
 * its socket, the last one, so that it leaves the SO_REUSEPORT group and
 * the kernel sends new connections to the workers still draining, which
 * answer 503 "draining". Kept open, it would queue them with nobody to
 * accept until the master exits and resets them (docs/internals/workers.md
 * "Signals"). Connections that reached its queue after the worker's last
 * accept are reset now. */
static void close_drained_slot(int i) {
    struct slot *s = &slots_[i];
    if (s->pid > 0 || s->old_pid > 0 || s->fd < 0) return;
    close(s->fd);
    s->fd = -1;
}

/* Reaps every exited child: the private store's redis-server (redis_proc
 * restarts it) and workers, whose restart it schedules unless stopping. */
static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (redis_proc_reaped(pid, status, stopping_)) continue;
        for (int i = 0; i < nslots_; i++) {
            struct slot *s = &slots_[i];
            char how[64];
            if (WIFSIGNALED(status)) snprintf(how, sizeof how, "signal %d", WTERMSIG(status));
            else snprintf(how, sizeof how, "status %d", WEXITSTATUS(status));
            if (pid == s->old_pid) {
                metrics_shared_clear(i * 2 + (s->old_gen & 1));
                s->old_pid = 0;
                log_worker(LOG_INFO, "old worker exited", i, pid, "exit", how);
                if (stopping_) close_drained_slot(i);
            } else if (pid == s->pid) {
                metrics_shared_clear(i * 2 + (s->gen & 1));
                s->pid = 0;
                poll_ready(i); /* a byte written just before it died still counts */
                if (s->ready_rd >= 0) {
                    close(s->ready_rd);
                    s->ready_rd = -1;
                }
                if (stopping_) {
                    log_worker(LOG_INFO, "worker exited", i, pid, "exit", how);
                    close_drained_slot(i);
                    continue;
                }
                if (!s->ready) {
                    start_failed(i, pid, status, how);
                    if (stopping_) continue;
                }
                uint64_t lived = mono_ms() - s->started_ms;
                if (lived >= STABLE_MS) s->backoff_ms = BACKOFF_MIN_MS;
                s->restart_at_ms = mono_ms() + s->backoff_ms;
                struct log_line *l = log_begin(LOG_ERROR, "worker died, restarting");
                if (l) {
                    log_u64(l, "slot", (uint64_t)i);
                    log_u64(l, "pid", (uint64_t)pid);
                    log_str(l, "exit", how);
                    log_u64(l, "restart_in_ms", s->backoff_ms);
                    log_end(l);
                }
                s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
            }
        }
    }
}

/* Waits up to timeout for the ready byte on rd. */
static int wait_ready(int rd, unsigned timeout_ms) {
    uint64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        char c;
        ssize_t r = read(rd, &c, 1);
        if (r == 1) return 0;
        if (r == 0) return -1;       /* the worker closed it: died before listening */
        if (errno != EAGAIN && errno != EINTR) return -1;
        if (mono_ms() >= deadline) return -1;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Replaces the worker of slot i: forks a successor on the same socket,
 * waits until it listens (READY_TIMEOUT_MS at most; one that does not is
 * killed and the old one kept), then retires the old one (it stops
 * accepting and drains). Returns 0 when replaced. */
static int replace_slot(const struct config *cfg, int i) {
    struct slot *s = &slots_[i];
    if (s->pid <= 0 || s->old_pid > 0) return -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    int gen = s->gen + 1;
    pid_t pid = spawn(cfg, i, gen, p[0], p[1]);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    int ok = wait_ready(p[0], READY_TIMEOUT_MS);
    close(p[0]);
    if (ok != 0) {
        log_worker(LOG_ERROR, "new worker did not start; keeping the old one", i, pid, NULL, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        metrics_shared_clear(i * 2 + (gen & 1));
        return -1;
    }
    if (s->ready_rd >= 0) { /* the one being replaced had not reported yet */
        close(s->ready_rd);
        s->ready_rd = -1;
    }
    s->old_pid = s->pid;
    s->old_gen = s->gen;
    s->pid = pid;
    s->gen = gen;
    s->ready = 1;
    s->start_fails = 0;
    s->started_ms = mono_ms();
    kill(s->old_pid, WORKER_SIG_RETIRE); /* drain and stop accepting: the new one accepts */
    log_worker(LOG_INFO, "worker replaced", i, pid, NULL, NULL);
    reap();
    return 0;
}

/* SIGHUP: replace every worker, one slot at a time. */
static void rolling_restart(const struct config *cfg) {
    struct log_line *l = log_begin(LOG_INFO, "rolling restart");
    if (l) { log_u64(l, "workers", (uint64_t)nslots_); log_end(l); }
    for (int i = 0; i < nslots_; i++) replace_slot(cfg, i);
}

/* WORKER_SIG_REPLACE_ME from a worker that finished ASR_WORKER_MAX_JOBS
 * job runs: its slot gets a successor, as in a rolling restart. A request
 * from a process that is no current worker (an old one, a stray signal)
 * is ignored. */
static void replace_asker(const struct config *cfg, pid_t asker) {
    for (int i = 0; i < nslots_; i++) {
        if (slots_[i].pid != asker) continue;
        log_worker(LOG_INFO, "worker asked for a successor (job limit)", i, asker, NULL, NULL);
        replace_slot(cfg, i);
        return;
    }
}

/* The session store the workers get: ASR_REDIS_URL empty starts the
 * private redis-server (redis_proc.h) and gives them its unix:// URL;
 * "memory" gives them the in-process store (empty URL at the store level);
 * anything else is passed on. Returns 0 or an exit status. */
static int store_setup(struct config *wcfg) {
    if (strcmp(wcfg->redis_url, CONFIG_STORE_MEMORY) == 0) {
        wcfg->redis_url[0] = '\0';
        return 0;
    }
    if (wcfg->redis_url[0]) return 0;
    return redis_proc_start(wcfg, wcfg->redis_url, sizeof wcfg->redis_url);
}

static void close_slots(void) {
    for (int i = 0; i < nslots_; i++) {
        if (slots_[i].fd >= 0) close(slots_[i].fd);
        if (slots_[i].ready_rd >= 0) close(slots_[i].ready_rd);
        slots_[i].fd = slots_[i].ready_rd = -1;
    }
}

int master_run(const struct config *cfg_in) {
    static struct config mcfg; /* what the workers get: cfg_in with the store resolved */
    mcfg = *cfg_in;
    const struct config *cfg = &mcfg;
    master_pid_ = getpid();
    for (int i = 0; i < MASTER_MAX_WORKERS; i++) slots_[i].fd = slots_[i].ready_rd = -1;
    /* 0: one per CPU this process may run on (a taskset, cpuset or
     * container limit), not one per CPU of the host */
    nslots_ = cfg->workers > 0 ? cfg->workers : (int)util_cpu_count();
    if (nslots_ > MASTER_MAX_WORKERS) nslots_ = MASTER_MAX_WORKERS;
    mcfg.workers = nslots_; /* the workers see the count (health's capacity) */
    log_setup(cfg->log_level, cfg->log_format, "master");
    int probe = open_listener(cfg, 0);
    if (probe < 0) return probe == -2 ? 2 : 1;
    close(probe);
    for (int i = 0; i < nslots_; i++) {
        int fd = open_listener(cfg, 1);
        if (fd < 0) {
            close_slots();
            return fd == -2 ? 2 : 1;
        }
        /* the worker inherits it across fork; CLOEXEC keeps it out of the redis-server */
        slots_[i] = (struct slot){.fd = fd, .backoff_ms = BACKOFF_MIN_MS, .ready_rd = -1};
    }
    if (metrics_shared_create(nslots_ * 2) != 0) {
        fprintf(stderr, "asrd: cannot map shared metrics\n");
        close_slots();
        return 1;
    }
    sigemptyset(&sigs_);
    sigaddset(&sigs_, SIGTERM);
    sigaddset(&sigs_, SIGINT);
    sigaddset(&sigs_, SIGHUP);
    sigaddset(&sigs_, SIGCHLD);
    /* the workers' own signals: blocked here so that a worker forked with
     * them pending does not die of their default action; workers unblock
     * them once their loop handles them */
    sigaddset(&sigs_, WORKER_SIG_DRAIN);
    sigaddset(&sigs_, WORKER_SIG_RETIRE);
    sigaddset(&sigs_, WORKER_SIG_STOP);
    sigaddset(&sigs_, WORKER_SIG_REPLACE_ME);
    sigprocmask(SIG_BLOCK, &sigs_, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (master_preload_engine(cfg) != 0) {
        close_slots();
        return 2;
    }
    int r = store_setup(&mcfg);
    if (r != 0) {
        close_slots();
        return r;
    }
    struct log_line *l = log_begin(LOG_INFO, "master started");
    if (l) {
        log_u64(l, "pid", (uint64_t)getpid());
        log_u64(l, "workers", (uint64_t)nslots_);
        log_str(l, "host", cfg->host);
        log_u64(l, "port", (uint64_t)cfg->port);
        log_str(l, "store", cfg_in->redis_url[0] == '\0' ? "private redis-server"
                            : strcmp(cfg_in->redis_url, CONFIG_STORE_MEMORY) == 0 ? "memory" : "redis");
        log_end(l);
    }
    for (int i = 0; i < nslots_; i++) start_slot(cfg, i);

    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        siginfo_t si;
        int sig = sigtimedwait(&sigs_, &si, &ts);
        if (sig == SIGCHLD) reap();
        else if (sig == SIGTERM || sig == SIGINT) {
            /* A terminal's Ctrl-C (and systemd's KillMode=control-group)
             * signals the whole group: workers ignore SIGTERM/SIGINT, so
             * only this one counts. The first drains, the next stops now. */
            const char *name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
            l = log_begin(LOG_INFO, stopping_ ? "second signal: workers stop now" : "shutting down");
            if (l) { log_str(l, "signal", name); log_end(l); }
            if (stopping_) signal_all(WORKER_SIG_STOP);
            else begin_stop(0);
        } else if (sig == SIGHUP && !stopping_) {
            rolling_restart(cfg);
        } else if (sig == WORKER_SIG_REPLACE_ME && !stopping_) {
            replace_asker(cfg, si.si_pid);
        }
        reap();
        for (int i = 0; i < nslots_; i++) poll_ready(i);
        if (stopping_) {
            if (alive_count() == 0) break;
            continue;
        }
        redis_proc_tick();
        uint64_t now = mono_ms();
        for (int i = 0; i < nslots_; i++)
            if (slots_[i].pid == 0 && slots_[i].restart_at_ms && now >= slots_[i].restart_at_ms)
                start_slot(cfg, i);
    }
    close_slots();
    redis_proc_stop(); /* after the last worker: they use it while draining */
    l = log_begin(LOG_INFO, "master exit");
    if (l) { log_u64(l, "status", (uint64_t)exit_status_); log_end(l); }
    return exit_status_;
}
