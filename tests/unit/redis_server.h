/* A throwaway redis-server for a unit test: started on a free loopback port
 * (no persistence unless asked), killed at the test's end (and with the test
 * process: PR_SET_PDEATHSIG), and a synchronous hiredis connection for
 * set-up and checks. Include after test.h. */
#ifndef ASRD_TEST_REDIS_SERVER_H
#define ASRD_TEST_REDIS_SERVER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

static pid_t rs_pid_;
static int rs_port_;
static char rs_url_[128];

static int rs_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *rs_sync(void) {
    struct timeval tv = {0, 500000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rs_port_, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static int rs_ping(void) {
    redisContext *c = rs_sync();
    if (!c) return 0;
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

static void rs_kill(void) {
    if (rs_pid_ <= 0) return;
    kill(rs_pid_, SIGKILL);
    waitpid(rs_pid_, NULL, 0);
    rs_pid_ = 0;
}

/* Starts redis-server (on rs_port_, a fresh free port when 0) and waits for
 * PING. */
static void rs_start(void) {
    if (!rs_port_) rs_port_ = rs_free_port();
    snprintf(rs_url_, sizeof rs_url_, "redis://127.0.0.1:%d", rs_port_);
    char port[16];
    snprintf(port, sizeof port, "%d", rs_port_);
    static int registered;
    if (!registered) {
        atexit(rs_kill);
        registered = 1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
               "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    rs_pid_ = pid;
    for (int i = 0; i < 500; i++) {
        int st;
        ASSERT(waitpid(pid, &st, WNOHANG) == 0);
        if (rs_ping()) return;
        usleep(10000);
    }
    TEST_FAIL_("redis-server did not answer PING on port %d", rs_port_);
}

/* One command on a fresh connection; the reply's integer (or -1). */
static long long rs_int(const char *fmt, const char *arg) {
    redisContext *c = rs_sync();
    ASSERT(c != NULL);
    redisReply *r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER) v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING) v = strtoll(r->str, NULL, 10);
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

#endif
