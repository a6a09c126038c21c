#define _GNU_SOURCE
#include <sched.h>
#include "test.h"

#include "base/budget.h"
#include "base/err.h"
#include "base/util.h"

TEST(util_json_string_escapes_and_repairs_utf8) {
    struct buf b;
    buf_init(&b, 0);
    buf_json_str(&b, "a\"b\\c\n\x01\xc3\xa9\xff", 10);
    ASSERT_STR_EQ(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\\ufffd\"");
    buf_cleanup(&b);
}

TEST(util_buf_limit_is_enforced) {
    struct buf b;
    buf_init(&b, 10);
    ASSERT_EQ_INT(buf_append(&b, "0123456789", 10), 0);
    ASSERT_EQ_INT(buf_append(&b, "x", 1), ASR_ENOMEM);
    ASSERT_EQ_INT(b.len, 10);
    buf_cleanup(&b);
}

/* ASR_WORKERS=0: the CPUs this process may run on, not the host's. */
TEST(util_cpu_count_follows_the_affinity) {
    cpu_set_t all, one;
    ASSERT_EQ_INT(sched_getaffinity(0, sizeof all, &all), 0);
    ASSERT_EQ_INT(util_cpu_count(), CPU_COUNT(&all));
    int first = 0;
    while (!CPU_ISSET(first, &all)) first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ_INT(sched_setaffinity(0, sizeof one, &one), 0);
    ASSERT_EQ_INT(util_cpu_count(), 1);
    ASSERT_EQ_INT(sched_setaffinity(0, sizeof all, &all), 0);
}

TEST(util_parse_u64) {
    uint64_t v;
    ASSERT_EQ_INT(util_parse_u64("16000", 5, 100000, &v), 0);
    ASSERT_EQ_INT(v, 16000);
    ASSERT_EQ_INT(util_parse_u64("", 0, 10, &v), ASR_EINVAL);
    ASSERT_EQ_INT(util_parse_u64("1a", 2, 10, &v), ASR_EINVAL);
    ASSERT_EQ_INT(util_parse_u64("11", 2, 10, &v), ASR_EINVAL);
    ASSERT_EQ_INT(util_parse_u64("18446744073709551616", 20, UINT64_MAX, &v), ASR_EINVAL);
}

TEST(util_err_table_maps_codes_and_statuses) {
    ASSERT_STR_EQ(asr_err_code(ASR_E_CHUNK_TOO_LARGE), "CHUNK_TOO_LARGE");
    ASSERT_EQ_INT(asr_err_http_status(ASR_E_NOT_AUDIO), 415);
    ASSERT_EQ_INT(asr_err_http_status(ASR_E_LENGTH_REQUIRED), 411);
    ASSERT_EQ_INT(asr_err_http_status(ASR_E_SESSION_BUSY), 409);
    ASSERT_STR_EQ(asr_err_code(-9999), "INTERNAL");
}

TEST(util_buf_put_u64_matches_printf) {
    static const uint64_t vals[] = {0, 1, 9, 10, 99, 100, 12345, 4294967295ull, 4294967296ull,
                                    18446744073709551615ull};
    struct buf b;
    char want[32];
    buf_init(&b, 0);
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        buf_reset(&b);
        buf_puts(&b, "x");
        buf_put_u64(&b, vals[i]);
        snprintf(want, sizeof want, "x%llu", (unsigned long long)vals[i]);
        ASSERT_STR_EQ(b.data, want);
    }
    buf_cleanup(&b);
}

/* buf_put_fixed3 writes what "%.3f" writes, except on exact ties between two
 * thousandths where it rounds up (printf rounds the binary value) and for
 * values it clamps (negative, NaN, >= 1e15). */
TEST(util_buf_put_fixed3_matches_printf) {
    struct buf b;
    char want[64];
    buf_init(&b, 0);
    for (int i = 0; i < 200000; i++) {
        double v = i * 0.0137 + (i % 7) * 1e-5 + (i % 3 ? 1000.0 * (i % 11) : 0);
        double frac = v * 1000.0 - (double)(uint64_t)(v * 1000.0);
        if (frac > 0.4999 && frac < 0.5001) continue;   /* a tie within rounding error */
        buf_reset(&b);
        buf_put_fixed3(&b, v);
        snprintf(want, sizeof want, "%.3f", v);
        ASSERT_STR_EQ(b.data, want);
    }
    buf_reset(&b);
    buf_put_fixed3(&b, -2.5);
    buf_put_fixed3(&b, 0.0 / 0.0);
    buf_put_fixed3(&b, 0.0004);
    buf_put_fixed3(&b, 0.0006);
    buf_put_fixed3(&b, 52.25);
    ASSERT_STR_EQ(b.data, "0.0000.0000.0000.00152.250");
    buf_cleanup(&b);
}

/* The validator ws.c's text fast path relies on (wslay's DFA accepts exactly
 * these): every boundary of Unicode table 3-7. */
TEST(util_utf8_valid_edges) {
    static const struct { const char *s; int ok; } v[] = {
        {"", 1}, {"plain ascii", 1}, {"\xc3\xa9", 1}, {"\xc2\x80", 1}, {"\xdf\xbf", 1},
        {"\xc0\xaf", 0}, {"\xc1\xbf", 0},                            /* overlong 2-byte */
        {"\xe0\xa0\x80", 1}, {"\xe0\x9f\xbf", 0},                    /* overlong 3-byte */
        {"\xed\x9f\xbf", 1}, {"\xed\xa0\x80", 0}, {"\xed\xbf\xbf", 0}, /* surrogates */
        {"\xef\xbf\xbf", 1}, {"\xf0\x90\x80\x80", 1}, {"\xf0\x8f\xbf\xbf", 0},
        {"\xf4\x8f\xbf\xbf", 1}, {"\xf4\x90\x80\x80", 0}, {"\xf5\x80\x80\x80", 0}, {"\xff", 0},
        {"\xe2\x82", 0}, {"a\xe2\x82\xac", 1}, {"\x80", 0}, {"\xc3\xa9\xc3", 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ASSERT_EQ_INT(util_utf8_valid(v[i].s, strlen(v[i].s)), v[i].ok);
}

/* A budget refuses a charge past its limit (nothing charged, counted),
 * releases give it back, the peak stays; no limit means none. */
TEST(util_budget_charges_refuses_and_releases) {
    struct budget b;
    budget_init(&b, 1000);
    ASSERT_EQ_INT(budget_try_charge(&b, 600), 0);
    ASSERT_EQ_INT(budget_try_charge(&b, 401), ASR_EAGAIN);
    ASSERT_EQ_INT(b.refused, 1);
    ASSERT_EQ_INT(budget_used(&b), 600);
    ASSERT_EQ_INT(budget_left(&b), 400);
    ASSERT_EQ_INT(budget_try_charge(&b, 400), 0);
    ASSERT_EQ_INT(budget_left(&b), 0);
    budget_release(&b, 1000);
    ASSERT_EQ_INT(budget_used(&b), 0);
    ASSERT_EQ_INT(b.peak, 1000);
    ASSERT_EQ_INT(budget_try_charge(&b, (size_t)-1), ASR_EAGAIN);
    ASSERT_EQ_INT(budget_try_charge(NULL, 12345), 0);
    struct budget open;
    budget_init(&open, 0);
    ASSERT_EQ_INT(budget_try_charge(&open, (size_t)1 << 40), 0);
    ASSERT_EQ_INT(budget_left(&open), (long long)SIZE_MAX);
}

/* A buffer bound to a budget keeps its capacity charged: growth past the
 * budget fails with ASR_EAGAIN and leaves the buffer as it was; the charge
 * moves with the struct and buf_cleanup gives it all back. */
TEST(util_buf_charges_its_budget) {
    struct budget bud;
    budget_init(&bud, 4096);
    struct buf b;
    buf_init(&b, 0);
    buf_set_budget(&b, &bud);
    ASSERT_EQ_INT(buf_append(&b, "abc", 3), 0);
    ASSERT_EQ_INT(budget_used(&bud), b.cap);
    ASSERT_EQ_INT(buf_reserve_exact(&b, 1000), 0);
    ASSERT_EQ_INT(b.cap, 1004);
    ASSERT_EQ_INT(budget_used(&bud), 1004);
    char big[5000];
    memset(big, 'x', sizeof big);
    ASSERT_EQ_INT(buf_append(&b, big, sizeof big), ASR_EAGAIN);
    ASSERT_EQ_INT(b.len, 3);
    ASSERT_EQ_INT(b.cap, 1004);
    ASSERT_EQ_INT(bud.refused, 1);
    struct buf moved = b; /* adopted by value, as a request body is */
    buf_init(&b, 0);
    ASSERT_EQ_INT(budget_used(&bud), 1004);
    buf_cleanup(&moved);
    ASSERT_EQ_INT(budget_used(&bud), 0);
    buf_cleanup(&b);
    ASSERT_EQ_INT(budget_used(&bud), 0);
}
