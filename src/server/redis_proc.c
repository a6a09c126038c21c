/* The private redis-server of the default session store. See redis_proc.h. */
#define _GNU_SOURCE
#include "server/redis_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

#define START_TIMEOUT_MS 5000    /* start: its socket must accept within this */
#define STOP_TIMEOUT_MS  5000    /* stop: SIGTERM, then SIGKILL after this */
#define BACKOFF_MIN_MS   100     /* restart delay after a death, doubling */
#define BACKOFF_MAX_MS   5000
#define STABLE_MS        30000   /* a redis-server that lived this long resets the backoff */
#define LOG_TAIL_BYTES   2048    /* of its log, shown when it fails */

/* sun_path is 108 bytes: the socket path must fit, NUL included. */
#define PATH_CAP sizeof(((struct sockaddr_un *)0)->sun_path)

/* IDLE: never started; RUNNING; DEAD: died, restart pending; STOPPED: the
 * master is stopping (no restart). */
enum rp_state { RP_IDLE, RP_RUNNING, RP_DEAD, RP_STOPPED };

static enum rp_state state_ = RP_IDLE;
static char bin_[256];           /* redis-server path (ASR_REDIS_SERVER) */
static char dir_[PATH_CAP];      /* the private runtime directory; "" = none made */
static char sock_[PATH_CAP + 16]; /* <dir>/redis.sock: make_dir keeps it within PATH_CAP */
static char conf_[PATH_CAP + 16]; /* <dir>/redis.conf */
static char log_[PATH_CAP + 16];  /* <dir>/redis.log */
static pid_t pid_;               /* the running redis-server, 0 = none */
static pid_t master_;            /* our pid: the child checks that it still has us */
static uint64_t started_ms_, restart_at_ms_;
static unsigned backoff_ms_ = BACKOFF_MIN_MS;

static uint64_t mono_ms(void) { return util_now_ns() / 1000000u; }

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void describe(int status, char *out, size_t len) {
    if (WIFSIGNALED(status)) snprintf(out, len, "killed by signal %d", WTERMSIG(status));
    else snprintf(out, len, "exit status %d", WEXITSTATUS(status));
}

/* Prints the end of its log to stderr (start failures). */
static void print_log_tail(void) {
    int fd = open(log_, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[LOG_TAIL_BYTES + 1];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > LOG_TAIL_BYTES ? end - LOG_TAIL_BYTES : 0;
    ssize_t n = pread(fd, buf, LOG_TAIL_BYTES, from);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    fprintf(stderr, "asrd: the end of its log (%s):\n%s%s", log_, buf, buf[n - 1] == '\n' ? "" : "\n");
}

/* The parent of the runtime directory: ASR_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR when it is a directory, else /tmp. */
static const char *runtime_parent(const struct config *cfg) {
    if (cfg->runtime_dir[0]) return cfg->runtime_dir;
    const char *x = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (x && x[0] == '/' && stat(x, &st) == 0 && S_ISDIR(st.st_mode) && access(x, W_OK | X_OK) == 0) return x;
    return "/tmp";
}

static void remove_files(void) {
    if (!dir_[0]) return;
    unlink(sock_);
    unlink(conf_);
    unlink(log_);
}

/* Makes dir_ (mode 0700). A directory of that name left by a dead master
 * with our pid is reused if it is ours and private; anything else there is
 * refused. Returns 0 or 2 (message on stderr). */
static int make_dir(const struct config *cfg) {
    const char *parent = runtime_parent(cfg);
    int n = snprintf(dir_, sizeof dir_, "%s/asrd-%u-%d", parent, (unsigned)getuid(), (int)getpid());
    /* "/redis.sock" must fit after it */
    if (n < 0 || (size_t)n + sizeof "/redis.sock" > sizeof dir_) {
        fprintf(stderr, "asrd: ASR_RUNTIME_DIR: \"%s\" is too long for a unix socket path "
                        "(the private store's socket path may have %zu bytes at most)\n", parent, PATH_CAP - 1);
        dir_[0] = '\0';
        return 2;
    }
    if (strpbrk(dir_, "\"\\\n")) {
        fprintf(stderr, "asrd: ASR_RUNTIME_DIR: \"%s\" has a quote, backslash or newline, allowed a plain path\n",
                parent);
        dir_[0] = '\0';
        return 2;
    }
    snprintf(sock_, sizeof sock_, "%s/redis.sock", dir_);
    snprintf(conf_, sizeof conf_, "%s/redis.conf", dir_);
    snprintf(log_, sizeof log_, "%s/redis.log", dir_);
    if (mkdir(dir_, 0700) != 0) {
        struct stat st;
        if (errno != EEXIST || lstat(dir_, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
            (st.st_mode & 077)) {
            fprintf(stderr, "asrd: cannot make the private runtime directory %s: %s (set ASR_RUNTIME_DIR "
                            "to a directory of yours)\n", dir_,
                    errno == EEXIST ? "it exists and is not a private directory of this user" : strerror(errno));
            dir_[0] = '\0';
            return 2;
        }
        remove_files(); /* left by an earlier master that had our pid */
    }
    if (chmod(dir_, 0700) != 0) { /* the umask may have taken bits away; never adds any */
        fprintf(stderr, "asrd: cannot chmod %s: %s\n", dir_, strerror(errno));
        rmdir(dir_);
        dir_[0] = '\0';
        return 2;
    }
    return 0;
}

/* Its whole configuration: a unix socket only, no persistence, bounded
 * memory that refuses writes rather than evicting (an evicted heartbeat key
 * would make a live worker look dead). */
static int write_conf(const struct config *cfg) {
    int fd = open(conf_, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) goto fail;
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b,
               "# written by asrd (master pid %d) for its private session store; removed at exit\n"
               "port 0\n"
               "unixsocket \"%s\"\n"
               "unixsocketperm 700\n"
               "dir \"%s\"\n"
               "logfile \"%s\"\n"
               "loglevel warning\n"
               "save \"\"\n"
               "appendonly no\n"
               "maxmemory %dmb\n"
               "maxmemory-policy noeviction\n"
               "daemonize no\n"
               "supervised no\n"
               "always-show-logo no\n",
               (int)getpid(), sock_, dir_, log_, cfg->redis_maxmemory_mb);
    ssize_t w = b.data ? write(fd, b.data, b.len) : -1;
    int ok = w == (ssize_t)b.len;
    buf_cleanup(&b);
    if (close(fd) != 0 || !ok) goto fail;
    return 0;
fail:
    fprintf(stderr, "asrd: cannot write %s: %s\n", conf_, strerror(errno));
    return 1;
}

/* Forks and execs the redis-server. Returns its pid or -1. */
static pid_t spawn(void) {
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0) setpgid(pid, pid); /* also done in the child: whichever runs first */
        return pid;
    }
    /* child: only async-signal-safe calls until exec */
    prctl(PR_SET_PDEATHSIG, SIGKILL);  /* dies with the master, even a kill -9 of it */
    if (getppid() != master_) _exit(127);
    setpgid(0, 0);                      /* not in the terminal's foreground group */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the master's blocked signals survive exec */
    signal(SIGPIPE, SIG_DFL);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
        dup2(nul, STDIN_FILENO);
        dup2(nul, STDOUT_FILENO);        /* it logs to its file; stderr stays for fatal config errors */
        if (nul > STDERR_FILENO) close(nul);
    }
    execl(bin_, "redis-server", conf_, (char *)NULL);
    static const char msg[] = "asrd: cannot execute the redis-server of the private store\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
}

static int socket_accepts(void) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, sock_, strlen(sock_) + 1);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void cleanup_dir(void) {
    if (!dir_[0]) return;
    remove_files();
    rmdir(dir_);
    dir_[0] = '\0';
}

int redis_proc_start(const struct config *cfg, char *url, size_t urllen) {
    master_ = getpid();
    snprintf(bin_, sizeof bin_, "%s", cfg->redis_server);
    if (access(bin_, X_OK) != 0) { /* main checks this too; a second look costs nothing */
        fprintf(stderr, "asrd: the default session store runs redis-server, and %s cannot be executed: %s\n",
                bin_, strerror(errno));
        return 2;
    }
    int r = make_dir(cfg);
    if (r != 0) return r;
    if (write_conf(cfg) != 0) {
        cleanup_dir();
        return 1;
    }
    uint64_t t0 = mono_ms();
    pid_ = spawn();
    if (pid_ < 0) {
        fprintf(stderr, "asrd: cannot fork the redis-server: %s\n", strerror(errno));
        pid_ = 0;
        cleanup_dir();
        return 1;
    }
    for (;;) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            char how[48];
            describe(status, how, sizeof how);
            fprintf(stderr, "asrd: the redis-server of the private store (%s) stopped at start: %s\n", bin_, how);
            print_log_tail();
            pid_ = 0;
            cleanup_dir();
            return 1;
        }
        if (socket_accepts()) break;
        if (mono_ms() - t0 >= START_TIMEOUT_MS) {
            fprintf(stderr, "asrd: the redis-server of the private store (%s) did not accept on %s within %d ms\n",
                    bin_, sock_, START_TIMEOUT_MS);
            print_log_tail();
            redis_proc_stop();
            return 1;
        }
        sleep_ms(2);
    }
    state_ = RP_RUNNING;
    started_ms_ = mono_ms();
    snprintf(url, urllen, "unix://%s", sock_);
    struct log_line *l = log_begin(LOG_INFO, "private session store started");
    if (l) {
        log_u64(l, "pid", (uint64_t)pid_);
        log_str(l, "socket", sock_);
        log_u64(l, "maxmemory_mb", (uint64_t)cfg->redis_maxmemory_mb);
        log_u64(l, "start_ms", started_ms_ - t0);
        log_end(l);
    }
    return 0;
}

int redis_proc_reaped(pid_t pid, int status, int stopping) {
    if (pid <= 0 || pid != pid_) return 0;
    pid_ = 0;
    char how[48];
    describe(status, how, sizeof how);
    if (stopping || state_ == RP_STOPPED) {
        state_ = RP_STOPPED;
        restart_at_ms_ = 0;
        struct log_line *l = log_begin(LOG_INFO, "private session store exited");
        if (l) { log_str(l, "exit", how); log_end(l); }
        return 1;
    }
    uint64_t now = mono_ms();
    if (now - started_ms_ >= STABLE_MS) backoff_ms_ = BACKOFF_MIN_MS;
    restart_at_ms_ = now + backoff_ms_;
    state_ = RP_DEAD;
    struct log_line *l = log_begin(LOG_ERROR, "private session store died, restarting (its sessions are lost)");
    if (l) {
        log_u64(l, "pid", (uint64_t)pid);
        log_str(l, "exit", how);
        log_u64(l, "restart_in_ms", backoff_ms_);
        log_str(l, "log", log_);
        log_end(l);
    }
    backoff_ms_ = backoff_ms_ * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms_ * 2;
    return 1;
}

void redis_proc_tick(void) {
    if (state_ != RP_DEAD || !restart_at_ms_ || mono_ms() < restart_at_ms_) return;
    restart_at_ms_ = 0;
    pid_t pid = spawn();
    if (pid < 0) {
        restart_at_ms_ = mono_ms() + backoff_ms_;
        return;
    }
    pid_ = pid;
    state_ = RP_RUNNING;
    started_ms_ = mono_ms();
    struct log_line *l = log_begin(LOG_INFO, "private session store restarted");
    if (l) { log_u64(l, "pid", (uint64_t)pid); log_end(l); }
}

void redis_proc_stop(void) {
    restart_at_ms_ = 0;
    if (pid_ > 0) {
        kill(pid_, SIGTERM);
        uint64_t deadline = mono_ms() + STOP_TIMEOUT_MS;
        int status;
        pid_t r;
        while ((r = waitpid(pid_, &status, WNOHANG)) == 0 && mono_ms() < deadline) sleep_ms(2);
        if (r == 0) {
            struct log_line *l = log_begin(LOG_WARN, "private session store ignored SIGTERM; killing it");
            if (l) { log_u64(l, "pid", (uint64_t)pid_); log_end(l); }
            kill(pid_, SIGKILL);
            waitpid(pid_, &status, 0);
        }
        pid_ = 0;
    }
    if (state_ != RP_IDLE) state_ = RP_STOPPED;
    cleanup_dir();
}

pid_t redis_proc_pid(void) { return pid_; }
