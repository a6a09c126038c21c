/* Tiny in-house unit test harness (after libuv's task.h).
 *
 * A test file includes this header once and defines tests with
 *     TEST(module_behaviour) { ... ASSERT_EQ_INT(a, b); ... }
 * Every test runs in its own forked process with a timeout, so a crash or hang
 * is reported against that test alone. The binary ends with the line
 * "N passed, N failed" and exits non-zero when any test failed.
 * `test_x name` runs only the named test (in-process, handy under gdb). */
#ifndef ASRD_TEST_H
#define ASRD_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };

#define TEST_MAX 256
static struct test_case test_cases_[TEST_MAX];
static int test_count_;

#define TEST(name)                                                         \
    static void test_##name(void);                                         \
    __attribute__((constructor)) static void test_reg_##name(void) {       \
        if (test_count_ < TEST_MAX)                                        \
            test_cases_[test_count_++] = (struct test_case){#name, test_##name}; \
    }                                                                      \
    static void test_##name(void)

#define TEST_FAIL_(...) do {                                               \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                  \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1);        \
    } while (0)

#define ASSERT(c) do { if (!(c)) TEST_FAIL_("assertion failed: %s", #c); } while (0)
#define ASSERT_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ != b_) TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define ASSERT_NE_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ == b_) TEST_FAIL_("%s != %s: both %lld", #a, #b, a_); } while (0)
#define ASSERT_GE_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ < b_) TEST_FAIL_("%s >= %s: %lld < %lld", #a, #b, a_, b_); } while (0)
#define ASSERT_LE_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ > b_) TEST_FAIL_("%s <= %s: %lld > %lld", #a, #b, a_, b_); } while (0)
#define ASSERT_NEAR(a, b, eps) do { double a_ = (a), b_ = (b);             \
        if (a_ - b_ > (eps) || b_ - a_ > (eps))                            \
            TEST_FAIL_("%s ~ %s: %g vs %g (eps %g)", #a, #b, a_, b_, (double)(eps)); } while (0)
#define ASSERT_STR_EQ(a, b) do { const char *a_ = (a), *b_ = (b);          \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                             \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)

static int test_run_one_(const struct test_case *t) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(30);
        t->fn();
        exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 1;
    if (WIFSIGNALED(st))
        fprintf(stderr, "  %s: killed by signal %d%s\n", t->name, WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
    return 0;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < test_count_; i++) {
        const struct test_case *t = &test_cases_[i];
        if (argc > 1 && strcmp(argv[1], t->name) != 0) continue;
        if (argc > 1) { t->fn(); printf("ok %s\n", t->name); return 0; }
        int ok = test_run_one_(t);
        printf("%s %s\n", ok ? "ok  " : "FAIL", t->name);
        fflush(stdout);
        ok ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
