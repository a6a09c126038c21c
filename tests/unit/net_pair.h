/* Helpers for the net layer's unit tests (test_conn, test_http, test_ws):
 * a libuv loop with one conn_set, connections whose socket is one end of a
 * socketpair (the test holds the other end, non-blocking), a pump that runs
 * the loop and the end-of-iteration flush as the worker does, and a check
 * that a call aborts (an illegal state move, asserted).
 *
 * Include it after the module's .c file (the tests include it to reach its
 * static functions and private structs). */
#ifndef ASRD_TEST_NET_PAIR_H
#define ASRD_TEST_NET_PAIR_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "base/log.h"
#include "net/conn.h"
#include "test.h"

static uv_loop_t np_loop_;
static struct conn_set np_set_;
static int np_closed_;                       /* the set's on_closed calls */

static void np_on_closed(void *ctx, struct conn *c) {
    (void)ctx;
    (void)c;
    np_closed_++;
}

static void np_init(void) {
    signal(SIGPIPE, SIG_IGN);
    log_setup("warn", "json", "w0"); /* no request lines in the test output */
    ASSERT_EQ_INT(uv_loop_init(&np_loop_), 0);
    conn_set_init(&np_set_, &np_loop_);
    np_set_.on_closed = np_on_closed;
    np_closed_ = 0;
}

/* A NEW connection on one end of a socketpair; *peer is the other end. */
static struct conn *np_conn(int *peer) {
    int sv[2];
    ASSERT_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ASSERT_EQ_INT(fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK), 0);
    struct conn *c = conn_create(&np_set_);
    ASSERT(c != NULL);
    ASSERT_EQ_INT(uv_tcp_open(&c->tcp, sv[0]), 0);
    *peer = sv[1];
    return c;
}

/* n loop turns, each with the flush the worker runs before and after I/O. */
static void np_pump(int n) {
    for (int i = 0; i < n; i++) {
        conn_flush_all(&np_set_);
        uv_run(&np_loop_, UV_RUN_NOWAIT);
        conn_flush_all(&np_set_);
    }
}

static void np_send(int fd, const void *p, size_t n) {
    ASSERT_EQ_INT(send(fd, p, n, MSG_NOSIGNAL), (long long)n);
}

/* Everything the server sent so far (at most cap - 1 bytes, NUL-terminated);
 * *eof set when the server closed. Returns the byte count. */
static size_t np_recv(int fd, char *out, size_t cap, int *eof) {
    size_t n = 0;
    if (eof) *eof = 0;
    while (n + 1 < cap) {
        ssize_t k = recv(fd, out + n, cap - 1 - n, 0);
        if (k > 0) {
            n += (size_t)k;
            continue;
        }
        if (k == 0 && eof) *eof = 1;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && eof) *eof = 1;
        break;
    }
    out[n] = '\0';
    return n;
}

/* Runs fn(arg) in a child process; returns 1 when the child was killed by
 * SIGABRT (a failed assert), 0 when it returned normally. */
static int np_aborts(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) { /* the assert's and the log's lines */
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        fn(arg);
        _exit(0);
    }
    int st = 0;
    ASSERT(pid > 0 && waitpid(pid, &st, 0) == pid);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

#endif
