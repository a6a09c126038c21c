/* Unit tests for tools/asrd-load/loadstat.c: percentile math against hand-computed
 * values, the histogram's error bound, absolute-deadline scheduling (no
 * drift, catch-up policy, many sessions on one heap), the deadline heap, the
 * message scanner, the /v1/metrics parser, count deltas and the client/server
 * agreement, the result JSON round trip, the SVG panels, session roles
 * (slow readers, flooders), the churn rate's start times and the server
 * peaks. */
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>

#include "base/err.h"
#include "loadstat.h"

static struct loadstat_hist *hist_new(void) {
    struct loadstat_hist *h = calloc(1, sizeof *h);
    ASSERT(h != NULL);
    return h;
}

/* ---- histogram --------------------------------------------------------- */

TEST(loadstat_hist_empty) {
    struct loadstat_hist *h = hist_new();
    struct loadstat_pct p;
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 50), 0);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99.9), 0);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 100), 0);
    loadstat_hist_summary(h, &p);
    ASSERT_EQ_INT(p.count, 0);
    ASSERT_NEAR(p.p50, 0, 0);
    ASSERT_NEAR(p.max, 0, 0);
    ASSERT_NEAR(p.mean, 0, 0);
    free(h);
}

TEST(loadstat_hist_one_sample) {
    struct loadstat_hist *h = hist_new();
    loadstat_hist_add(h, 42);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 0), 42);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 50), 42);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99.9), 42);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 100), 42);
    /* Outside the exact range the bucket bound is capped by the exact max
     * and min, so a single sample still reads back exactly. */
    loadstat_hist_reset(h);
    loadstat_hist_add(h, 123457);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 50), 123457);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99), 123457);
    struct loadstat_pct p;
    loadstat_hist_summary(h, &p);
    ASSERT_NEAR(p.p50, 123.457, 1e-9);
    ASSERT_NEAR(p.mean, 123.457, 1e-9);
    free(h);
}

/* 1..100 us, one each: values below 256 have a bucket each, so the
 * percentiles are the textbook nearest-rank ones: rank = ceil(p/100 * n). */
TEST(loadstat_hist_exact_range) {
    struct loadstat_hist *h = hist_new();
    for (uint64_t v = 100; v >= 1; v--) loadstat_hist_add(h, v);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 50), 50);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 90), 90);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99), 99);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99.9), 100);   /* ceil(99.9) = 100 */
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 100), 100);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 1), 1);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 0.5), 1);      /* rank at least 1 */
    struct loadstat_pct p;
    loadstat_hist_summary(h, &p);
    ASSERT_EQ_INT(p.count, 100);
    ASSERT_NEAR(p.mean, 0.0505, 1e-12);
    ASSERT_NEAR(p.max, 0.100, 1e-12);
    free(h);
}

/* 1..1000 us: buckets are 2 us wide in 256..511 and 4 us in 512..1023,
 * and the reported value is a bucket's highest: p50 (rank 500) is in
 * [500, 501], p90 (900) in [900, 903], p99 (990) in [988, 991], p99.9
 * (999) in [996, 999]. */
TEST(loadstat_hist_bucketed_range) {
    struct loadstat_hist *h = hist_new();
    for (uint64_t v = 1; v <= 1000; v++) loadstat_hist_add(h, v);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 50), 501);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 90), 903);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99), 991);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99.9), 999);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 100), 1000);
    free(h);
}

/* The max is exact however far it is from everything else, and a value
 * past the top of the range is counted, clamped into the top bucket. */
TEST(loadstat_hist_max) {
    struct loadstat_hist *h = hist_new();
    for (int i = 0; i < 999; i++) loadstat_hist_add(h, 50000);
    loadstat_hist_add(h, 7654321);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 100), 7654321);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99.9), loadstat_hist_bucket_high(loadstat_hist_bucket(50000)));
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 99.95), 7654321);
    struct loadstat_pct p;
    loadstat_hist_summary(h, &p);
    ASSERT_NEAR(p.max, 7654.321, 1e-9);
    loadstat_hist_add(h, LOADSTAT_HIST_MAX + 12345);
    ASSERT_EQ_INT(h->overflow, 1);
    ASSERT_EQ_INT(loadstat_hist_percentile(h, 100), LOADSTAT_HIST_MAX + 12345);
    ASSERT_EQ_INT(loadstat_hist_bucket(LOADSTAT_HIST_MAX + 12345), LOADSTAT_HIST_BUCKETS - 1);
    free(h);
}

/* Every value lies in its bucket; buckets tile the range without gaps; a
 * bucket is at most 1/128 of its lowest value wide, so any percentile is
 * off by less than 0.8 %. */
TEST(loadstat_hist_bucket_error_bound) {
    uint64_t prev_high = 0;
    for (size_t i = 0; i < LOADSTAT_HIST_BUCKETS; i++) {
        uint64_t lo = loadstat_hist_bucket_low(i), hi = loadstat_hist_bucket_high(i);
        ASSERT(lo <= hi);
        if (i) ASSERT_EQ_INT(lo, prev_high + 1);
        if (lo >= 2 * LOADSTAT_HIST_SUB) ASSERT((hi - lo + 1) * LOADSTAT_HIST_SUB <= lo);
        else ASSERT_EQ_INT(lo, hi);
        ASSERT_EQ_INT(loadstat_hist_bucket(lo), i);
        ASSERT_EQ_INT(loadstat_hist_bucket(hi), i);
        prev_high = hi;
    }
    ASSERT_EQ_INT(prev_high, LOADSTAT_HIST_MAX);
    for (uint64_t v = 1; v < LOADSTAT_HIST_MAX; v += v / 97 + 1) {
        size_t b = loadstat_hist_bucket(v);
        ASSERT(loadstat_hist_bucket_low(b) <= v && v <= loadstat_hist_bucket_high(b));
        ASSERT((double)(loadstat_hist_bucket_high(b) - v) <= (double)v / LOADSTAT_HIST_SUB);
    }
    /* A measured percentile against the exact one, on a skewed sample. */
    struct loadstat_hist *h = hist_new();
    uint64_t *vals = calloc(10000, sizeof *vals);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        vals[i] = 40000 + x % 20000 + (i % 100 == 0 ? x % 500000 : 0);
        loadstat_hist_add(h, vals[i]);
    }
    for (int i = 1; i < 10000; i++)   /* insertion sort is fine for 1e4 */
        for (int j = i; j > 0 && vals[j - 1] > vals[j]; j--) { uint64_t t = vals[j]; vals[j] = vals[j - 1]; vals[j - 1] = t; }
    const double ps[] = {50, 90, 99, 99.9};
    for (size_t k = 0; k < 4; k++) {
        uint64_t exact = vals[(size_t)ceil(ps[k] / 100.0 * 10000 - 1e-9) - 1];
        uint64_t got = loadstat_hist_percentile(h, ps[k]);
        ASSERT(got >= exact);
        ASSERT((double)(got - exact) <= (double)exact / LOADSTAT_HIST_SUB);
    }
    free(vals);
    free(h);
}

TEST(loadstat_hist_merge) {
    struct loadstat_hist *a = hist_new(), *b = hist_new();
    for (uint64_t v = 1; v <= 50; v++) loadstat_hist_add(a, v);
    for (uint64_t v = 51; v <= 100; v++) loadstat_hist_add(b, v);
    loadstat_hist_merge(a, b);
    ASSERT_EQ_INT(a->count, 100);
    ASSERT_EQ_INT(a->min, 1);
    ASSERT_EQ_INT(a->max, 100);
    ASSERT_EQ_INT(loadstat_hist_percentile(a, 90), 90);
    free(a);
    free(b);
}

/* ---- scheduling -------------------------------------------------------- */

#define MS 1000000ull

/* 1000 periods with every wake-up 0..7 ms late: each wake-up sends exactly
 * the one due chunk and the 1000th deadline is t0 + 1000 periods to the
 * nanosecond. A relative timer (next = wake + period) would have drifted
 * by the sum of the lateness, about 3.5 s here. */
TEST(loadstat_sched_no_drift) {
    struct loadstat_sched s;
    const uint64_t t0 = 5000 * MS, period = 100 * MS;
    loadstat_sched_init(&s, t0, period, 10);
    uint64_t relative = t0, late_sum = 0;
    for (uint64_t k = 0; k < 1000; k++) {
        uint64_t late = (k * 7919 * 1000) % (7 * MS);
        uint64_t now = loadstat_sched_next(&s) + late, first, skipped;
        ASSERT_EQ_INT(loadstat_sched_next(&s), t0 + k * period);
        ASSERT_EQ_INT(loadstat_sched_due(&s, now, &first, &skipped), 1);
        ASSERT_EQ_INT(first, k);
        ASSERT_EQ_INT(skipped, 0);
        /* Waking again at the same time sends nothing. */
        ASSERT_EQ_INT(loadstat_sched_due(&s, now, &first, &skipped), 0);
        relative += late + period;   /* a timer re-armed from each wake-up */
        late_sum += late;
    }
    ASSERT_EQ_INT(s.next_slot, 1000);
    ASSERT_EQ_INT(loadstat_sched_next(&s), t0 + 1000 * period);
    ASSERT_EQ_INT(relative - loadstat_sched_next(&s), late_sum);
    ASSERT(late_sum > 1000 * MS);
}

TEST(loadstat_sched_early_wakeup) {
    struct loadstat_sched s;
    uint64_t first, skipped;
    loadstat_sched_init(&s, 1000 * MS, 100 * MS, 10);
    ASSERT_EQ_INT(loadstat_sched_due(&s, 999 * MS, &first, &skipped), 0);
    ASSERT_EQ_INT(loadstat_sched_due(&s, 1000 * MS, &first, &skipped), 1);   /* due exactly at its deadline */
    ASSERT_EQ_INT(first, 0);
    ASSERT_EQ_INT(loadstat_sched_due(&s, 1099 * MS, &first, &skipped), 0);
    ASSERT_EQ_INT(loadstat_sched_next(&s), 1100 * MS);
}

/* Policy: up to max_burst missed chunks are all sent at the late wake-up;
 * beyond that only the newest max_burst go and the older are skipped. The
 * grid of deadlines never moves. */
TEST(loadstat_sched_catch_up) {
    struct loadstat_sched s;
    uint64_t first, skipped;
    const uint64_t t0 = 0, p = 100 * MS;
    loadstat_sched_init(&s, t0, p, 10);
    ASSERT_EQ_INT(loadstat_sched_due(&s, 0, &first, &skipped), 1);          /* slot 0 */
    /* Late by 3.5 periods: slots 1..4 are due, all four go now. */
    ASSERT_EQ_INT(loadstat_sched_due(&s, 450 * MS, &first, &skipped), 4);
    ASSERT_EQ_INT(first, 1);
    ASSERT_EQ_INT(skipped, 0);
    ASSERT_EQ_INT(loadstat_sched_next(&s), 500 * MS);
    /* Exactly max_burst due: all sent. */
    ASSERT_EQ_INT(loadstat_sched_due(&s, 1400 * MS, &first, &skipped), 10);
    ASSERT_EQ_INT(first, 5);
    ASSERT_EQ_INT(skipped, 0);
    /* Stalled for 26 periods (slots 15..40 due): the 10 newest go, 16 are skipped. */
    ASSERT_EQ_INT(loadstat_sched_due(&s, 4000 * MS + 1, &first, &skipped), 10);
    ASSERT_EQ_INT(first, 31);
    ASSERT_EQ_INT(skipped, 16);
    ASSERT_EQ_INT(loadstat_sched_next(&s), 4100 * MS);
    ASSERT_EQ_INT(loadstat_sched_deadline(&s, 41), t0 + 41 * p);
    /* max_burst 1: a late wake-up sends only the newest chunk. */
    loadstat_sched_init(&s, 0, p, 1);
    ASSERT_EQ_INT(loadstat_sched_due(&s, 250 * MS, &first, &skipped), 1);
    ASSERT_EQ_INT(first, 2);
    ASSERT_EQ_INT(skipped, 2);
}

/* ---- heap -------------------------------------------------------------- */

TEST(loadstat_heap_order_and_remove) {
    enum { N = 2000 };
    struct loadstat_heap h;
    struct loadstat_heap_node *nodes = calloc(N, sizeof *nodes);
    loadstat_heap_init(&h);
    ASSERT(loadstat_heap_peek(&h) == NULL);
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        nodes[i].key = (x >> 33) % 5000;   /* with ties */
        loadstat_heap_push(&h, &nodes[i]);
    }
    /* Remove every third node, and re-key every fifth. */
    for (int i = 0; i < N; i += 3) {
        loadstat_heap_remove(&h, &nodes[i]);
        ASSERT(!loadstat_heap_contains(&nodes[i]));
    }
    loadstat_heap_remove(&h, &nodes[0]);   /* not in the heap: no-op */
    size_t expect = h.n;
    for (int i = 1; i < N; i += 5) {
        if (!loadstat_heap_contains(&nodes[i])) continue;
        loadstat_heap_remove(&h, &nodes[i]);
        nodes[i].key = 10000 - nodes[i].key;
        loadstat_heap_push(&h, &nodes[i]);
    }
    ASSERT_EQ_INT(h.n, expect);
    uint64_t last = 0;
    size_t popped = 0;
    struct loadstat_heap_node *n;
    while ((n = loadstat_heap_pop(&h))) {
        ASSERT(n->key >= last);
        ASSERT(!loadstat_heap_contains(n));
        last = n->key;
        popped++;
    }
    ASSERT_EQ_INT(popped, expect);
    loadstat_heap_cleanup(&h);
    free(nodes);
}

/* ---- messages ---------------------------------------------------------- */

TEST(loadstat_msg_types) {
    struct loadstat_msg m;
    const char *partial = "{\"type\":\"partial\",\"sequence\":17,\"text\":\"a \\\"type\\\":\\\"final\\\" b\","
                          "\"is_speech\":true,\"timestamp\":1732190000123,"
                          "\"latency_ms\":{\"queue\":0.1,\"inference\":50.2,\"total\":50.4,\"sequence\":99}}";
    ASSERT_EQ_INT(loadstat_msg_parse(partial, strlen(partial), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_PARTIAL);
    ASSERT_EQ_INT(m.has_sequence, 1);
    ASSERT_EQ_INT(m.sequence, 17);
    ASSERT_STR_EQ(m.code, "");

    const char *err = " { \"type\" : \"error\" , \"code\" : \"RATE_LIMITED\", \"message\":\"x\\u00e9\", \"sequence\" : 4 } ";
    ASSERT_EQ_INT(loadstat_msg_parse(err, strlen(err), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_ERROR);
    ASSERT_STR_EQ(m.code, "RATE_LIMITED");
    ASSERT_EQ_INT(m.sequence, 4);

    const char *err2 = "{\"code\":\"INVALID_MESSAGE\",\"type\":\"error\",\"message\":\"not JSON\"}";
    ASSERT_EQ_INT(loadstat_msg_parse(err2, strlen(err2), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_ERROR);
    ASSERT_EQ_INT(m.has_sequence, 0);
    ASSERT_STR_EQ(m.code, "INVALID_MESSAGE");

    const char *sess = "{\"type\":\"session\",\"session_id\":\"ab\",\"worker_id\":\"w0\",\"sample_rate\":16000,"
                       "\"resumed\":false,\"last_sequence\":0,\"limits\":{\"max_chunk_bytes\":65536,\"x\":[1,2,[3,{}]]}}";
    ASSERT_EQ_INT(loadstat_msg_parse(sess, strlen(sess), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_SESSION);
    ASSERT_EQ_INT(m.has_sequence, 0);

    const char *fin = "{\"type\":\"final\",\"sequence\":23,\"text\":\"\",\"start_ms\":0,\"end_ms\":2300,\"timestamp\":1}";
    ASSERT_EQ_INT(loadstat_msg_parse(fin, strlen(fin), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_FINAL);
    ASSERT_EQ_INT(m.sequence, 23);

    const char *ss = "{\"type\":\"speech_started\",\"sequence\":3,\"offset_ms\":1230,\"timestamp\":null}";
    ASSERT_EQ_INT(loadstat_msg_parse(ss, strlen(ss), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_SPEECH_STARTED);

    const char *other = "{\"type\":\"hello\",\"sequence\":-1}";
    ASSERT_EQ_INT(loadstat_msg_parse(other, strlen(other), &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_OTHER);
    ASSERT_EQ_INT(m.has_sequence, 0);

    const char *flt = "{\"type\":\"partial\",\"sequence\":2.5}";
    ASSERT_EQ_INT(loadstat_msg_parse(flt, strlen(flt), &m), 0);
    ASSERT_EQ_INT(m.has_sequence, 0);

    ASSERT_EQ_INT(loadstat_msg_parse("{}", 2, &m), 0);
    ASSERT_EQ_INT(m.type, LOADSTAT_MSG_OTHER);
}

TEST(loadstat_msg_malformed) {
    static const char *const bad[] = {
        "", "   ", "[]", "\"partial\"", "{", "{\"type\":\"partial\"", "{\"type\":\"partial\",}",
        "{\"type\":\"partial\"} x", "{\"type\":partial}", "{\"type\" \"partial\"}", "{\"a\":tru}",
        "{\"a\":\"\\q\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":[1,2}", "{\"a\":{\"b\":1]}", "{\"a\":01x}",
        "{\"a\":-}", "{\"a\":1.}", "{\"a\":1e}", "{\"sequence\":5,}", "{\"a\":\"x\ny\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct loadstat_msg m;
        memset(&m, 0x55, sizeof m);
        if (loadstat_msg_parse(bad[i], strlen(bad[i]), &m) != ASR_EINVAL) TEST_FAIL_("accepted: %s", bad[i]);
        ASSERT_EQ_INT(m.type, LOADSTAT_MSG_OTHER);
        ASSERT_EQ_INT(m.has_sequence, 0);
    }
    /* Deep nesting is refused, not a stack overflow. */
    char deep[2000];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"a\":");
    for (int i = 0; i < 500; i++) deep[n++] = '[';
    for (int i = 0; i < 500; i++) deep[n++] = ']';
    deep[n++] = '}';
    struct loadstat_msg m;
    ASSERT_EQ_INT(loadstat_msg_parse(deep, n, &m), ASR_EINVAL);
    /* Every proper prefix of a valid message is refused. */
    const char *ok = "{\"type\":\"partial\",\"sequence\":17,\"text\":\"hi\",\"latency_ms\":{\"total\":50.4}}";
    for (size_t k = 0; k < strlen(ok); k++) ASSERT_EQ_INT(loadstat_msg_parse(ok, k, &m), ASR_EINVAL);
}

/* The scanner agrees with jansson on messages jansson writes. */
TEST(loadstat_msg_matches_jansson) {
    const char *types[] = {"partial", "error", "final", "session", "speech_started", "other"};
    for (int i = 0; i < 600; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "text", json_string(i % 3 ? "w\"o\\r}d{s \xc3\xa9 ,:" : ""));
        json_object_set_new(o, "type", json_string(types[i % 6]));
        if (i % 4) json_object_set_new(o, "sequence", json_integer(i * 7919));
        json_object_set_new(o, "latency_ms", json_pack("{s:f,s:[i,s,n]}", "total", 50.25, "x", 1, "y"));
        char *s = json_dumps(o, i % 2 ? JSON_COMPACT : JSON_INDENT(1));
        struct loadstat_msg m;
        ASSERT_EQ_INT(loadstat_msg_parse(s, strlen(s), &m), 0);
        ASSERT_EQ_INT(m.has_sequence, i % 4 != 0);
        if (i % 4) ASSERT_EQ_INT(m.sequence, i * 7919);
        ASSERT_EQ_INT(m.type, i % 6 == 5 ? LOADSTAT_MSG_OTHER : (enum loadstat_msg_type)(
                                                                  i % 6 == 0 ? LOADSTAT_MSG_PARTIAL :
                                                                  i % 6 == 1 ? LOADSTAT_MSG_ERROR :
                                                                  i % 6 == 2 ? LOADSTAT_MSG_FINAL :
                                                                  i % 6 == 3 ? LOADSTAT_MSG_SESSION :
                                                                               LOADSTAT_MSG_SPEECH_STARTED));
        free(s);
        json_decref(o);
    }
}

/* ---- /v1/metrics ------------------------------------------------------- */

/* Shaped like src/base/metrics.c's output. */
static const char metrics_body[] =
    "{\"worker_id\":\"w0\",\"uptime_s\":0.5,\"connections\":{\"active\":3,\"total\":9,\"refused\":0},"
    "\"sessions\":{\"active\":2,\"attached\":2,\"total\":7,\"resumed\":0,\"refused\":0,\"ended\":{\"stop\":4,"
    "\"idle\":0,\"expired\":0,\"slow_client\":5,\"policy\":3}},\"chunks\":{\"total\":123456,\"accepted\":123000,"
    "\"per_sec\":99.50},\"partials\":{\"total\":123000,\"dropped\":77},\"errors\":{\"total\":12,"
    "\"INVALID_MESSAGE\":2,\"RATE_LIMITED\":10},\"latency_ms\":{\"chunk\":{\"count\":5,\"mean\":50.1,\"p50\":50.0,"
    "\"p95\":51.0,\"p99\":52.5,\"p999\":60.0}},\"loop\":{\"iterations\":9,\"utilization\":0.875},\"process\":{\"rss_bytes\":5541888,\"open_fds\":14},"
    "\"finals\":{\"total\":321},\"close_codes\":{\"1000\":4,\"1001\":0,\"1008\":5,\"other\":0,\"none\":1},"
    "\"requests\":{\"total\":30,\"per_sec\":1.5,\"by_route\":{\"transcribe\":{\"200\":11,\"415\":2},"
    "\"stream\":{\"101\":7,\"503\":1},\"health\":{}}},"
    "\"workers\":[{\"worker_id\":\"w0\",\"pid\":10},{\"worker_id\":\"w1\",\"pid\":11}]}";

TEST(loadstat_metrics_parse_fields) {
    struct loadstat_server s;
    ASSERT_EQ_INT(loadstat_metrics_parse(metrics_body, strlen(metrics_body), &s), 0);
    ASSERT_EQ_INT(s.ok, 1);
    ASSERT_EQ_INT(s.chunks_total, 123456);
    ASSERT_EQ_INT(s.errors_total, 12);
    ASSERT_EQ_INT(s.partials_dropped, 77);
    ASSERT_EQ_INT(s.rss_bytes, 5541888);
    ASSERT_EQ_INT(s.sessions_active, 2);
    ASSERT_EQ_INT(s.connections_active, 3);
    ASSERT_EQ_INT(s.slow_client_closes, 5);
    ASSERT_NEAR(s.chunk_p99_ms, 52.5, 1e-12);
    ASSERT_NEAR(s.loop_utilization, 0.875, 1e-12);
    ASSERT_EQ_INT(s.partials_total, 123000);
    ASSERT_EQ_INT(s.finals_total, 321);
    ASSERT_EQ_INT(s.sessions_total, 7);
    ASSERT_EQ_INT(s.workers, 2);
    ASSERT_EQ_INT(loadstat_counts_get(&s.close_codes, "1000"), 4);
    ASSERT_EQ_INT(loadstat_counts_get(&s.close_codes, "1008"), 5);
    ASSERT_EQ_INT(loadstat_counts_get(&s.close_codes, "none"), 1);
    ASSERT_EQ_INT(s.close_codes.len, 5);                  /* zero counts are kept: they are a baseline */
    ASSERT_EQ_INT(loadstat_counts_get(&s.rest_status, "200"), 11);
    ASSERT_EQ_INT(loadstat_counts_get(&s.rest_status, "415"), 2);
    ASSERT_EQ_INT(loadstat_counts_get(&s.stream_status, "101"), 7);
    ASSERT_EQ_INT(loadstat_counts_get(&s.stream_status, "503"), 1);
    ASSERT_EQ_INT(s.open_fds, 14);
    ASSERT_EQ_INT(s.policy_closes, 3);
    ASSERT_EQ_INT(loadstat_counts_get(&s.ended, "stop"), 4);
    ASSERT_EQ_INT(loadstat_counts_get(&s.ended, "slow_client"), 5);
    ASSERT_EQ_INT(loadstat_counts_get(&s.ended, "policy"), 3);
    ASSERT_EQ_INT(s.ended.len, 5);
    /* errors by code, "total" left out */
    ASSERT_EQ_INT(s.error_codes.len, 2);
    ASSERT_EQ_INT(loadstat_counts_get(&s.error_codes, "RATE_LIMITED"), 10);
    ASSERT_EQ_INT(loadstat_counts_get(&s.error_codes, "INVALID_MESSAGE"), 2);
    ASSERT_EQ_INT(loadstat_counts_get(&s.error_codes, "total"), 0);
}

TEST(loadstat_metrics_parse_partial_and_bad) {
    struct loadstat_server s;
    /* Minimal body: absent fields read 0; errors without total are summed. */
    const char *min = "{\"chunks\":{\"total\":5},\"errors\":{\"A\":2,\"B\":3}}";
    ASSERT_EQ_INT(loadstat_metrics_parse(min, strlen(min), &s), 0);
    ASSERT_EQ_INT(s.ok, 1);
    ASSERT_EQ_INT(s.chunks_total, 5);
    ASSERT_EQ_INT(s.errors_total, 5);
    ASSERT_EQ_INT(s.rss_bytes, 0);
    ASSERT_EQ_INT(s.sessions_active, 0);
    ASSERT_EQ_INT(s.workers, 0);
    ASSERT_EQ_INT(s.close_codes.len, 0);
    ASSERT_EQ_INT(s.rest_status.len, 0);
    ASSERT_EQ_INT(s.open_fds, 0);
    ASSERT_EQ_INT(s.policy_closes, 0);
    ASSERT_EQ_INT(s.ended.len, 0);
    ASSERT_EQ_INT(s.error_codes.len, 2);                 /* A and B */
    static const char *const bad[] = {"", "not json", "[1,2]", "{\"chunks\":{}}", "{\"chunks\":{\"total\":\"5\"}}",
                                      "{\"chunks\":{\"total\":5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ_INT(loadstat_metrics_parse(bad[i], strlen(bad[i]), &s), ASR_EINVAL);
        ASSERT_EQ_INT(s.ok, 0);
    }
}

/* ---- counters and results ---------------------------------------------- */

TEST(loadstat_counts_other) {
    struct loadstat_counts c;
    memset(&c, 0, sizeof c);
    char name[16];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "E%d", i % 20);
        loadstat_counts_add(&c, name, 1);
    }
    ASSERT_EQ_INT(c.len, LOADSTAT_MAX_NAMES);
    ASSERT_EQ_INT(loadstat_counts_sum(&c), 40);
    ASSERT_EQ_INT(loadstat_counts_get(&c, "E0"), 2);
    ASSERT_EQ_INT(loadstat_counts_get(&c, "E19"), 0);
    ASSERT_EQ_INT(loadstat_counts_get(&c, "OTHER"), 10);   /* E15..E19, twice */
}

static void fill_run(struct loadstat_run *r, unsigned seed) {
    memset(r, 0, sizeof *r);
    r->sessions_target = 200 + seed;
    r->wall_s = 10.25 + seed;
    r->stream_s = 10 + seed;
    r->chunks_blocked = 5;
    r->sessions_stalled = 2;
    r->sessions_opened = 199;
    r->sessions_completed = 198;
    r->connect_failures = 1;
    loadstat_counts_add(&r->connect_errors, "http_503", 1);
    r->chunks_sent = 19900;
    r->chunks_skipped = 3;
    r->answers = 19890;
    r->partials = 19880;
    r->finals = 400;
    r->missing = 10;
    r->out_of_order = 2;
    r->unmatched = 1;
    loadstat_counts_add(&r->errors, "RATE_LIMITED", 10);
    loadstat_counts_add(&r->close_codes, "1000", 198);
    loadstat_counts_add(&r->close_codes, "none", 1);
    r->chunk_rate = 1941.4634146341463;
    r->answer_rate = 1940.1;
    r->latency = (struct loadstat_pct){19890, 50.431, 50.94, 74.75, 91.41, 91.41, 50.7123456789};
    r->added = (struct loadstat_pct){19890, 0.431, 0.94, 24.75, 41.41, 41.41, 0.7123456789};
    r->slow_sessions = 20;
    r->slow_closed = 19;
    r->client_cpu_s = 0.123;
    r->client_cpu_pct = 1.2;
    r->held = (int)(seed & 1);
    snprintf(r->verdict, sizeof r->verdict, "p99 added 24.75 ms > 10.00 ms");
    r->start_s = 1.5 * seed;
    r->partial_msgs = 19885;
    r->slow_answers = 11;
    loadstat_counts_add(&r->request_errors, "EOF", 2);
    r->normal_sessions = 170;
    r->normal_chunks = 17000;
    r->normal_completed = 169;
    r->normal_errors = 4;
    r->flood_sessions = 9;
    r->flood_chunks = 2900;
    r->flood_answers = 2890;
    r->flood_partials = 600;
    r->flood_missing = 10;
    r->flood_closed = 3;
    r->server_samples = 10 + seed;
    r->server_rss_peak = 20000000 + seed;
    r->server_fds_peak = 230 + seed;
    r->server_loop_util_peak = 0.5 + seed / 100.0;
    loadstat_counts_add(&r->flood_errors, "RATE_LIMITED", 2290);
    loadstat_counts_add(&r->flood_close_codes, "1008", 3);
    loadstat_counts_add(&r->flood_close_codes, "1000", 6);
    loadstat_counts_add(&r->slow_close_codes, "none", 1);
    memset(&r->server_before, 0, sizeof r->server_before);
    r->server_before.ok = 1;
    r->server_before.chunks_total = 10;
    r->server_before.partials_total = 5;
    r->server_before.rss_bytes = 5541888;
    r->server_before.connections_active = 1;
    r->server_before.open_fds = 14;
    loadstat_counts_add(&r->server_before.close_codes, "1000", 3);
    loadstat_counts_add(&r->server_before.error_codes, "RATE_LIMITED", 0);
    loadstat_counts_add(&r->server_before.ended, "stop", 3);
    r->server_after = r->server_before;
    r->server_after.chunks_total = 19910;
    r->server_after.errors_total = 10;
    r->server_after.partials_total = 19897;
    r->server_after.partials_dropped = 7;
    r->server_after.finals_total = 400;
    r->server_after.sessions_total = 199;
    r->server_after.rss_bytes = 12541888;
    r->server_after.slow_client_closes = 19;
    r->server_after.policy_closes = 3;
    r->server_after.open_fds = 15;
    memset(&r->server_after.ended, 0, sizeof r->server_after.ended);
    loadstat_counts_add(&r->server_after.ended, "stop", 180);
    loadstat_counts_add(&r->server_after.ended, "policy", 3);
    memset(&r->server_after.error_codes, 0, sizeof r->server_after.error_codes);
    loadstat_counts_add(&r->server_after.error_codes, "RATE_LIMITED", 10);
    r->server_after.chunk_p99_ms = 77.94;
    r->server_after.workers = 2;
    memset(&r->server_after.close_codes, 0, sizeof r->server_after.close_codes);
    loadstat_counts_add(&r->server_after.close_codes, "1000", 201);
    loadstat_counts_add(&r->server_after.close_codes, "none", 1);
    loadstat_counts_add(&r->server_after.stream_status, "101", 199);
}

TEST(loadstat_result_json_round_trip) {
    struct loadstat_result r, back;
    loadstat_result_init(&r);
    snprintf(r.opts.url, sizeof r.opts.url, "ws://127.0.0.1:18555/v1/transcribe/stream?x=\"1\"");
    snprintf(r.opts.scenario, sizeof r.opts.scenario, "capacity");
    snprintf(r.opts.mode, sizeof r.opts.mode, "json");
    snprintf(r.opts.wav, sizeof r.opts.wav, "tests/data/generated/speech16k.wav");
    r.opts.sessions = 200;
    r.opts.ramp_s = 2.5;
    r.opts.duration_s = 10;
    r.opts.chunk_ms = 100;
    r.opts.slow_fraction = 0.1;
    r.opts.capacity_start = 500;
    r.opts.capacity_step = 500;
    r.opts.capacity_max = 2000;
    r.opts.p99_threshold_ms = 10;
    r.opts.mock_latency_ms = 50;
    r.opts.rest_concurrency = 8;
    r.opts.rest_requests = 40;
    r.opts.max_errors = 3;
    r.opts.churn_life_s = 3;
    r.opts.max_burst = 10;
    r.opts.connect_timeout_s = 10;
    r.opts.grace_s = 10;
    r.opts.slow_count = 20;
    r.opts.flood_count = 9;
    r.opts.flood_fraction = 0.045;
    r.opts.flood_factor = 10;
    r.opts.churn_rate = 166.5;
    r.opts.sample_s = 0.5;
    fill_run(&r.total, 0);
    for (unsigned i = 1; i <= 3; i++) {
        struct loadstat_run st;
        fill_run(&st, i);
        loadstat_result_add_step(&r, &st);
    }
    r.capacity_sessions = 1000;
    for (int i = 1; i <= 5; i++) {
        struct loadstat_point pt = {i, 200u + (unsigned)i, 2000u + (uint64_t)i, 50.1 + i, 51.5 + i, 52.123456789 + i,
                                    (uint64_t)i << 20, 30u + (uint64_t)i, 0.5 + i / 100.0};
        loadstat_result_add_point(&r, &pt);
    }
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    ASSERT_EQ_INT(loadstat_result_to_json(&r, &a), 0);
    ASSERT_EQ_INT(loadstat_result_from_json(a.data, a.len, &back), 0);
    ASSERT_STR_EQ(back.opts.url, r.opts.url);
    ASSERT_STR_EQ(back.opts.scenario, "capacity");
    ASSERT_STR_EQ(back.opts.mode, "json");
    ASSERT_EQ_INT(back.opts.capacity_max, 2000);
    ASSERT_NEAR(back.opts.ramp_s, 2.5, 0);
    ASSERT_EQ_INT(back.total.chunks_sent, 19900);
    ASSERT_EQ_INT(back.total.unmatched, 1);
    ASSERT_EQ_INT(back.total.chunks_blocked, 5);
    ASSERT_EQ_INT(back.total.sessions_stalled, 2);
    ASSERT_NEAR(back.total.stream_s, 10, 0);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.errors, "RATE_LIMITED"), 10);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.close_codes, "1000"), 198);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.connect_errors, "http_503"), 1);
    ASSERT_NEAR(back.total.latency.mean, 50.7123456789, 0);   /* exact: 17 digits */
    ASSERT_NEAR(back.total.chunk_rate, 1941.4634146341463, 0);
    ASSERT_EQ_INT(back.total.server_after.rss_bytes, 12541888);
    ASSERT_NEAR(back.total.server_after.chunk_p99_ms, 77.94, 0);
    ASSERT_EQ_INT(back.n_steps, 3);
    ASSERT_EQ_INT(back.steps[2].sessions_target, 203);
    ASSERT_EQ_INT(back.steps[1].held, 0);
    ASSERT_EQ_INT(back.steps[0].held, 1);
    ASSERT_STR_EQ(back.steps[0].verdict, "p99 added 24.75 ms > 10.00 ms");
    ASSERT_EQ_INT(back.capacity_sessions, 1000);
    ASSERT_EQ_INT(back.n_timeline, 5);
    ASSERT_NEAR(back.timeline[4].p99_ms, r.timeline[4].p99_ms, 0);
    /* Writing what was read gives the same document. */
    ASSERT_EQ_INT(loadstat_result_to_json(&back, &b), 0);
    ASSERT_STR_EQ(a.data, b.data);
    /* The derived server deltas are in the document. */
    json_t *doc = json_loads(a.data, 0, NULL);
    ASSERT(doc != NULL);
    json_t *d = json_object_get(json_object_get(json_object_get(doc, "total"), "server"), "delta");
    ASSERT_EQ_INT(json_integer_value(json_object_get(d, "chunks_total")), 19900);
    ASSERT_EQ_INT(json_integer_value(json_object_get(d, "rss_bytes")), 7000000);
    ASSERT_EQ_INT(json_integer_value(json_object_get(d, "partials_total")), 19892);
    ASSERT_EQ_INT(json_integer_value(json_object_get(d, "sessions_total")), 199);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "close_codes"), "1000")), 198);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "close_codes"), "none")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "stream_status"), "101")), 199);
    /* ... and the client/server agreement (see loadstat_agreement_*). */
    json_t *ag = json_object_get(json_object_get(doc, "total"), "agreement");
    ASSERT(json_is_object(ag));
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(ag, "chunks"), "server")), 19900);
    ASSERT(json_is_true(json_object_get(json_object_get(ag, "chunks"), "match")));
    /* partials: 19897 - 5 produced, 7 of them dropped = the 19885 received. */
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(ag, "partials"), "server")), 19885);
    const char *k_;
    json_t *v_;
    size_t nag = 0;
    json_object_foreach(ag, k_, v_) {
        if (!json_is_true(json_object_get(v_, "match"))) TEST_FAIL_("agreement %s does not match", k_);
        nag++;
    }
    ASSERT_EQ_INT(nag, 6);   /* chunks partials errors finals sessions close_1000 */
    /* Every new field read back. */
    ASSERT_EQ_INT(back.opts.rest_requests, 40);
    ASSERT_EQ_INT(back.opts.max_errors, 3);
    ASSERT_EQ_INT(back.total.partial_msgs, 19885);
    ASSERT_EQ_INT(back.total.slow_answers, 11);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.request_errors, "EOF"), 2);
    ASSERT_NEAR(back.steps[2].start_s, 4.5, 0);
    ASSERT_NEAR(back.timeline[1].p90_ms, 53.5, 0);
    ASSERT_EQ_INT(back.total.server_after.partials_total, 19897);
    ASSERT_EQ_INT(back.total.server_after.finals_total, 400);
    ASSERT_EQ_INT(back.total.server_after.workers, 2);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.server_after.close_codes, "1000"), 201);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.server_after.stream_status, "101"), 199);
    /* Roles, churn rate, samples and peaks. */
    ASSERT_EQ_INT(back.opts.slow_count, 20);
    ASSERT_EQ_INT(back.opts.flood_count, 9);
    ASSERT_NEAR(back.opts.flood_factor, 10, 0);
    ASSERT_NEAR(back.opts.flood_fraction, 0.045, 0);
    ASSERT_NEAR(back.opts.churn_rate, 166.5, 0);
    ASSERT_NEAR(back.opts.sample_s, 0.5, 0);
    ASSERT_EQ_INT(back.total.normal_sessions, 170);
    ASSERT_EQ_INT(back.total.normal_chunks, 17000);
    ASSERT_EQ_INT(back.total.normal_completed, 169);
    ASSERT_EQ_INT(back.total.normal_errors, 4);
    ASSERT_EQ_INT(back.total.flood_sessions, 9);
    ASSERT_EQ_INT(back.total.flood_chunks, 2900);
    ASSERT_EQ_INT(back.total.flood_answers, 2890);
    ASSERT_EQ_INT(back.total.flood_partials, 600);
    ASSERT_EQ_INT(back.total.flood_missing, 10);
    ASSERT_EQ_INT(back.total.flood_closed, 3);
    ASSERT_EQ_INT(back.steps[2].server_samples, 13);
    ASSERT_EQ_INT(back.steps[2].server_rss_peak, 20000003);
    ASSERT_EQ_INT(back.steps[2].server_fds_peak, 233);
    ASSERT_NEAR(back.steps[2].server_loop_util_peak, 0.53, 1e-12);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.flood_errors, "RATE_LIMITED"), 2290);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.flood_close_codes, "1008"), 3);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.slow_close_codes, "none"), 1);
    ASSERT_EQ_INT(back.total.server_after.open_fds, 15);
    ASSERT_EQ_INT(back.total.server_after.policy_closes, 3);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.server_after.ended, "policy"), 3);
    ASSERT_EQ_INT(loadstat_counts_get(&back.total.server_after.error_codes, "RATE_LIMITED"), 10);
    ASSERT_EQ_INT(back.timeline[2].rss_bytes, 3u << 20);
    ASSERT_EQ_INT(back.timeline[2].open_fds, 33);
    ASSERT_NEAR(back.timeline[2].loop_util, 0.53, 1e-9);
    ASSERT_EQ_INT(back.timeline[4].sessions, 205);
    /* ... and their deltas: fds, policy closes, errors by code, ends by reason. */
    ASSERT_EQ_INT(json_integer_value(json_object_get(d, "open_fds")), 1);
    ASSERT_EQ_INT(json_integer_value(json_object_get(d, "policy_closes")), 3);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "error_codes"), "RATE_LIMITED")), 10);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "ended"), "stop")), 177);
    ASSERT_EQ_INT(json_integer_value(json_object_get(json_object_get(d, "ended"), "policy")), 3);
    json_decref(doc);
    loadstat_result_cleanup(&back);
    ASSERT_EQ_INT(loadstat_result_from_json("{\"x\":1}", 7, &back), ASR_EINVAL);
    ASSERT_EQ_INT(loadstat_result_from_json("nope", 4, &back), ASR_EINVAL);
    loadstat_result_cleanup(&back);
    loadstat_result_cleanup(&r);
    buf_cleanup(&a);
    buf_cleanup(&b);
}

TEST(loadstat_run_merge_sums) {
    struct loadstat_run a, b;
    memset(&a, 0, sizeof a);
    fill_run(&b, 0);
    loadstat_run_merge(&a, &b);
    loadstat_run_merge(&a, &b);
    ASSERT_EQ_INT(a.chunks_sent, 2 * 19900);
    ASSERT_EQ_INT(loadstat_counts_get(&a.close_codes, "1000"), 2 * 198);
    ASSERT_NEAR(a.wall_s, 20.5, 1e-12);
    ASSERT_NEAR(a.stream_s, 20, 1e-12);
    ASSERT_NEAR(a.chunk_rate, 2 * 19900 / 20.0, 1e-9);
    ASSERT_EQ_INT(a.sessions_stalled, 4);
    ASSERT_EQ_INT(a.sessions_target, 200);
    ASSERT_EQ_INT(a.server_before.chunks_total, 10);
    /* Counters add up; peaks are the larger, not the sum. */
    ASSERT_EQ_INT(a.flood_chunks, 2 * 2900);
    ASSERT_EQ_INT(a.normal_completed, 2 * 169);
    ASSERT_EQ_INT(a.server_samples, 20);
    ASSERT_EQ_INT(loadstat_counts_get(&a.flood_errors, "RATE_LIMITED"), 2 * 2290);
    ASSERT_EQ_INT(a.server_rss_peak, 20000000);
    ASSERT_EQ_INT(a.server_fds_peak, 230);
    fill_run(&b, 5);
    loadstat_run_merge(&a, &b);
    ASSERT_EQ_INT(a.server_rss_peak, 20000005);
    ASSERT_EQ_INT(a.server_fds_peak, 235);
    ASSERT_NEAR(a.server_loop_util_peak, 0.55, 1e-12);
    fill_run(&b, 0);
    loadstat_run_merge(&a, &b);
    ASSERT_EQ_INT(a.server_rss_peak, 20000005);
}

/* ---- roles, churn rate, peaks ------------------------------------------ */

/* Exactly n of total slots are picked, evenly: consecutive picks are
 * floor(total/n) or ceil(total/n) apart, for every n <= total. */
TEST(loadstat_spread_exact_and_even) {
    static const unsigned totals[] = {1, 2, 3, 7, 10, 100, 220, 1200, 1201};
    for (size_t t = 0; t < sizeof totals / sizeof totals[0]; t++) {
        unsigned total = totals[t];
        for (unsigned n = 0; n <= total; n++) {
            unsigned picked = 0, prev = 0, lo = n ? total / n : 0, hi = n ? (total + n - 1) / n : 0;
            int any = 0;
            for (unsigned i = 0; i < total; i++) {
                if (!loadstat_spread(i, n, total)) continue;
                if (any && (i - prev < lo || i - prev > hi))
                    TEST_FAIL_("n %u of %u: picks %u and %u are %u apart, not %u..%u", n, total, prev, i, i - prev, lo,
                               hi);
                prev = i;
                any = 1;
                picked++;
            }
            if (picked != n) TEST_FAIL_("n %u of %u: %u picked", n, total, picked);
        }
    }
    /* More than all, outside the slots, no slots. */
    ASSERT_EQ_INT(loadstat_spread(3, 50, 10), 1);
    ASSERT_EQ_INT(loadstat_spread(10, 5, 10), 0);
    ASSERT_EQ_INT(loadstat_spread(0, 1, 0), 0);
    /* The fraction that used to decide slow readers (floor((i+1)f) > floor(i f))
     * picks the same slots when n/total is that fraction. */
    for (unsigned i = 0; i < 10; i++) ASSERT_EQ_INT(loadstat_spread(i, 5, 10), floor((i + 1) * 0.5) > floor(i * 0.5));
}

TEST(loadstat_role_counts) {
    static const struct { unsigned total, slow, flood; } cases[] = {
        {1200, 1000, 0}, {220, 0, 20}, {100, 10, 20}, {10, 5, 5}, {10, 0, 0}, {7, 7, 0}, {7, 0, 7}, {3, 2, 5},
        {1, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        unsigned n[3] = {0, 0, 0};
        for (unsigned i = 0; i < cases[c].total; i++) n[loadstat_role(i, cases[c].total, cases[c].slow, cases[c].flood)]++;
        unsigned slow = cases[c].slow < cases[c].total ? cases[c].slow : cases[c].total;
        unsigned flood = cases[c].flood < cases[c].total - slow ? cases[c].flood : cases[c].total - slow;
        if (n[LOADSTAT_ROLE_SLOW] != slow || n[LOADSTAT_ROLE_FLOOD] != flood ||
            n[LOADSTAT_ROLE_NORMAL] != cases[c].total - slow - flood)
            TEST_FAIL_("%u slots, %u slow, %u flood: got %u normal, %u slow, %u flood", cases[c].total, cases[c].slow,
                       cases[c].flood, n[0], n[1], n[2]);
    }
    /* 20 flooders beside 200 normal sessions: one every 11 slots. */
    for (unsigned i = 0; i < 220; i++)
        ASSERT_EQ_INT(loadstat_role(i, 220, 0, 20) == LOADSTAT_ROLE_FLOOD, i % 11 == 10);
}

/* Session k is due at k / rate s: the count due never runs ahead of the
 * start times, nor behind them, and 60 s at 10000/60 per second start
 * 10,000 sessions (plus the one at t = 60 s exactly). */
TEST(loadstat_churn_rate_schedule) {
    static const double rates[] = {0.5, 1, 3, 100, 166.66666666666666, 1000};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        double rate = rates[r];
        ASSERT_EQ_INT(loadstat_churn_due(rate, 0), 1);
        ASSERT_EQ_INT(loadstat_churn_start_ns(rate, 0), 0);
        uint64_t prev = 0;
        for (uint64_t k = 1; k < 5000; k++) {
            uint64_t t = loadstat_churn_start_ns(rate, k);
            ASSERT(t > prev);
            if (loadstat_churn_due(rate, t) < k + 1) TEST_FAIL_("rate %g: session %llu not due at its start", rate,
                                                                 (unsigned long long)k);
            if (loadstat_churn_due(rate, t - 1) > k) TEST_FAIL_("rate %g: session %llu due before its start", rate,
                                                                 (unsigned long long)k);
            prev = t;
        }
    }
    ASSERT_EQ_INT(loadstat_churn_due(10000.0 / 60, 60000000000ull), 10001);
    ASSERT_EQ_INT(loadstat_churn_due(10000.0 / 60, 60000000000ull - 1), 10000);
    ASSERT_EQ_INT(loadstat_churn_start_ns(2, 3), 1500000000ull);
}

TEST(loadstat_run_peak_keeps_highest) {
    struct loadstat_run r;
    struct loadstat_server s;
    memset(&r, 0, sizeof r);
    memset(&s, 0, sizeof s);
    s.ok = 1;
    s.rss_bytes = 5000000;
    s.open_fds = 20;
    loadstat_run_peak(&r, &s);
    s.rss_bytes = 9000000;
    s.open_fds = 10;
    loadstat_run_peak(&r, &s);
    s.rss_bytes = 7000000;
    s.open_fds = 1220;
    s.loop_utilization = 0.9;
    loadstat_run_peak(&r, &s);
    s.loop_utilization = 0.4;
    loadstat_run_peak(&r, &s);
    ASSERT_NEAR(r.server_loop_util_peak, 0.9, 0);
    ASSERT_EQ_INT(r.server_rss_peak, 9000000);
    ASSERT_EQ_INT(r.server_fds_peak, 1220);
    /* A snapshot that was not read counts for nothing. */
    s.ok = 0;
    s.rss_bytes = 1u << 30;
    s.open_fds = 99999;
    loadstat_run_peak(&r, &s);
    ASSERT_EQ_INT(r.server_rss_peak, 9000000);
    ASSERT_EQ_INT(r.server_fds_peak, 1220);
}

TEST(loadstat_svg_draws) {
    struct loadstat_result r;
    struct buf b;
    loadstat_result_init(&r);
    snprintf(r.opts.scenario, sizeof r.opts.scenario, "sustained");
    snprintf(r.opts.url, sizeof r.opts.url, "ws://127.0.0.1:1/<&>");
    for (int i = 1; i <= 10; i++) {
        struct loadstat_point pt = {i, 10, 100, 50 + i, 55 + i, 60 + i, 0, 0, 0};
        loadstat_result_add_point(&r, &pt);
    }
    buf_init(&b, 0);
    ASSERT_EQ_INT(loadstat_svg(&r, &b), 0);
    ASSERT(strncmp(b.data, "<svg", 4) == 0);
    ASSERT(strstr(b.data, "</svg>") != NULL);
    ASSERT(strstr(b.data, "&lt;&amp;&gt;") != NULL);
    ASSERT(strstr(b.data, "<&>") == NULL);
    ASSERT(strstr(b.data, "polyline") != NULL);
    buf_cleanup(&b);
    /* Capacity: one point per step, and an empty result still draws. */
    snprintf(r.opts.scenario, sizeof r.opts.scenario, "capacity");
    r.opts.p99_threshold_ms = 10;
    struct loadstat_run st;
    fill_run(&st, 0);
    loadstat_result_add_step(&r, &st);
    buf_init(&b, 0);
    ASSERT_EQ_INT(loadstat_svg(&r, &b), 0);
    ASSERT(strstr(b.data, "<circle") != NULL);
    buf_cleanup(&b);
    loadstat_result_cleanup(&r);
    loadstat_result_init(&r);
    buf_init(&b, 0);
    ASSERT_EQ_INT(loadstat_svg(&r, &b), 0);
    buf_cleanup(&b);
}

TEST(loadstat_counts_delta) {
    struct loadstat_counts a, b, d;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    loadstat_counts_add(&a, "1000", 5);
    loadstat_counts_add(&a, "1008", 2);
    loadstat_counts_add(&a, "gone", 9);      /* not in after: not in the delta */
    loadstat_counts_add(&b, "1000", 25);
    loadstat_counts_add(&b, "1008", 2);      /* unchanged: left out */
    loadstat_counts_add(&b, "1001", 3);      /* new name: all of it */
    loadstat_counts_add(&b, "none", 0);
    loadstat_counts_delta(&d, &b, &a);
    ASSERT_EQ_INT(d.len, 2);
    ASSERT_EQ_INT(loadstat_counts_get(&d, "1000"), 20);
    ASSERT_EQ_INT(loadstat_counts_get(&d, "1001"), 3);
    ASSERT_EQ_INT(loadstat_counts_get(&d, "1008"), 0);
    /* A count that went down (server restarted) reads 0, not a huge number. */
    loadstat_counts_delta(&d, &a, &b);
    ASSERT_EQ_INT(loadstat_counts_get(&d, "1000"), 0);
    ASSERT_EQ_INT(loadstat_counts_get(&d, "gone"), 9);
}

static const struct loadstat_check *find_check(const struct loadstat_check *c, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].name, name) == 0) return &c[i];
    TEST_FAIL_("no check %s", name);
    return NULL;
}

/* Client counts against server deltas: each check follows its own field,
 * so a difference in any one shows in that check only. */
TEST(loadstat_agreement_streaming) {
    struct loadstat_run r;
    struct loadstat_check c[32];
    fill_run(&r, 0);
    size_t n = loadstat_agreement(&r, 0, c, 32);
    ASSERT_EQ_INT(n, 6);
    for (size_t i = 0; i < n; i++)
        if (c[i].client != c[i].server) TEST_FAIL_("%s: %llu != %llu", c[i].name, (unsigned long long)c[i].client,
                                                  (unsigned long long)c[i].server);
    ASSERT_EQ_INT(find_check(c, n, "chunks")->server, 19900);
    ASSERT_EQ_INT(find_check(c, n, "partials")->server, 19885);   /* produced - dropped */
    ASSERT_EQ_INT(find_check(c, n, "close_1000")->client, 198);
    /* One more chunk on the client: only "chunks" differs. */
    r.chunks_sent++;
    n = loadstat_agreement(&r, 0, c, 32);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += c[i].client != c[i].server;
    ASSERT_EQ_INT(bad, 1);
    ASSERT(find_check(c, n, "chunks")->client == 19901);
    r.chunks_sent--;
    /* A dropped partial more on the server: "partials" differs. */
    r.server_after.partials_dropped++;
    n = loadstat_agreement(&r, 0, c, 32);
    ASSERT_EQ_INT(find_check(c, n, "partials")->server, 19884);
    r.server_after.partials_dropped--;
    /* The client's own UNPARSEABLE is not a server error. */
    loadstat_counts_add(&r.errors, "UNPARSEABLE", 4);
    n = loadstat_agreement(&r, 0, c, 32);
    ASSERT_EQ_INT(find_check(c, n, "errors")->client, 10);
    /* Other close codes appear when either side has them; "none"/"timeout" are not codes. */
    loadstat_counts_add(&r.close_codes, "1008", 2);
    loadstat_counts_add(&r.close_codes, "timeout", 1);
    loadstat_counts_add(&r.server_after.close_codes, "1001", 1);
    n = loadstat_agreement(&r, 0, c, 32);
    ASSERT_EQ_INT(n, 8);
    ASSERT_EQ_INT(find_check(c, n, "close_1008")->client, 2);
    ASSERT_EQ_INT(find_check(c, n, "close_1008")->server, 0);
    ASSERT_EQ_INT(find_check(c, n, "close_1001")->client, 0);
    ASSERT_EQ_INT(find_check(c, n, "close_1001")->server, 1);
    /* The output array bounds the checks. */
    ASSERT_EQ_INT(loadstat_agreement(&r, 0, c, 3), 3);
    /* Without both snapshots there is nothing to compare. */
    r.server_after.ok = 0;
    ASSERT_EQ_INT(loadstat_agreement(&r, 0, c, 32), 0);
}

TEST(loadstat_agreement_rest) {
    struct loadstat_run r;
    struct loadstat_check c[32];
    memset(&r, 0, sizeof r);
    r.server_before.ok = r.server_after.ok = 1;
    loadstat_counts_add(&r.server_before.rest_status, "200", 100);
    loadstat_counts_add(&r.server_after.rest_status, "200", 140);
    loadstat_counts_add(&r.server_after.rest_status, "503", 2);
    loadstat_counts_add(&r.http_status, "200", 40);
    loadstat_counts_add(&r.http_status, "413", 1);
    size_t n = loadstat_agreement(&r, 1, c, 32);
    ASSERT_EQ_INT(n, 3);
    ASSERT_EQ_INT(find_check(c, n, "http_200")->client, 40);
    ASSERT_EQ_INT(find_check(c, n, "http_200")->server, 40);
    ASSERT_EQ_INT(find_check(c, n, "http_413")->server, 0);
    ASSERT_EQ_INT(find_check(c, n, "http_503")->client, 0);
    ASSERT_EQ_INT(find_check(c, n, "http_503")->server, 2);
}

/* The scheduler and the heap together, as the tool drives them: many
 * sessions on one timer, every wake-up late by a random amount (sometimes
 * by several periods). No session ever sends more than max_burst at once,
 * none drifts (sent + skipped = due slots, exactly), and each stays on its
 * own grid of deadlines. */
TEST(loadstat_sched_many_sessions) {
    enum { N = 300 };
    const uint64_t period = 100 * MS, end = 30000 * MS;
    struct sim { struct loadstat_heap_node hn; struct loadstat_sched s; uint64_t sent, skipped, last_slot; int any; };
    struct sim *v = calloc(N, sizeof *v);
    struct loadstat_heap h;
    loadstat_heap_init(&h);
    uint64_t x = 99991;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        loadstat_sched_init(&v[i].s, 1000 * MS + (x >> 33) % period, period, 10);
        v[i].hn.key = loadstat_sched_next(&v[i].s);
        loadstat_heap_push(&h, &v[i].hn);
    }
    uint64_t now = 0;
    struct loadstat_heap_node *top;
    while ((top = loadstat_heap_peek(&h)) && top->key < end) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t late = (x >> 33) % 1000 == 0 ? 1500 * MS : (x >> 33) % (3 * MS);   /* rare long stall */
        if (top->key + late > now) now = top->key + late;
        if (now > end) now = end;
        while ((top = loadstat_heap_peek(&h)) && top->key <= now) {
            struct sim *s = (struct sim *)top;   /* hn is the first member */
            loadstat_heap_pop(&h);
            uint64_t first, skipped;
            unsigned k = loadstat_sched_due(&s->s, now, &first, &skipped);
            ASSERT(k >= 1 && k <= 10);
            if (s->any) ASSERT_EQ_INT(first, s->last_slot + 1 + skipped);   /* contiguous but for skips */
            ASSERT(loadstat_sched_deadline(&s->s, first + k - 1) <= now);
            ASSERT(loadstat_sched_deadline(&s->s, first + k) > now);         /* the newest due slot was sent */
            s->sent += k;
            s->skipped += skipped;
            s->last_slot = first + k - 1;
            s->any = 1;
            s->hn.key = loadstat_sched_next(&s->s);
            loadstat_heap_push(&h, &s->hn);
        }
    }
    for (int i = 0; i < N; i++) {
        /* Every slot due by the last wake-up was sent or skipped, none twice. */
        uint64_t due = (now - v[i].s.t0_ns) / period + 1;
        ASSERT_EQ_INT(v[i].sent + v[i].skipped, due);
        ASSERT_EQ_INT(v[i].s.next_slot, due);
        ASSERT_EQ_INT(loadstat_sched_next(&v[i].s), v[i].s.t0_ns + due * period);
    }
    loadstat_heap_cleanup(&h);
    free(v);
}

/* Capacity charts have both panels: percentiles over time (with the step
 * boundaries) and p99 against sessions; the others only the first. */
TEST(loadstat_svg_panels) {
    struct loadstat_result r;
    struct buf b;
    loadstat_result_init(&r);
    snprintf(r.opts.scenario, sizeof r.opts.scenario, "capacity");
    snprintf(r.opts.mode, sizeof r.opts.mode, "binary");
    r.opts.p99_threshold_ms = 10;
    for (int i = 1; i <= 6; i++) {
        struct loadstat_point pt = {i, 10, 100, 50 + i, 55 + i, 60 + i, 0, 0, 0};
        loadstat_result_add_point(&r, &pt);
    }
    for (unsigned k = 0; k < 3; k++) {
        struct loadstat_run st;
        fill_run(&st, k);
        st.sessions_target = 100 * (k + 1);
        st.start_s = 2.0 * k;
        loadstat_result_add_step(&r, &st);
    }
    buf_init(&b, 0);
    ASSERT_EQ_INT(loadstat_svg(&r, &b), 0);
    ASSERT(strstr(b.data, "latency per second") != NULL);
    ASSERT(strstr(b.data, "p99 against sessions") != NULL);
    ASSERT(strstr(b.data, ">p90<") != NULL);
    ASSERT(strstr(b.data, ">300<") != NULL);                 /* a step boundary label */
    size_t polylines = 0;
    for (const char *p = b.data; (p = strstr(p, "<polyline")); p++) polylines++;
    ASSERT_EQ_INT(polylines, 5);                             /* p50 p90 p99 over time; p50 p99 per step */
    ASSERT(strstr(b.data, "height=\"820\"") != NULL);
    /* It parses as XML-ish: as many opening <svg as closing. */
    ASSERT(strstr(b.data, "</svg>") == b.data + b.len - 7);
    buf_cleanup(&b);
    snprintf(r.opts.scenario, sizeof r.opts.scenario, "sustained");
    buf_init(&b, 0);
    ASSERT_EQ_INT(loadstat_svg(&r, &b), 0);
    ASSERT(strstr(b.data, "p99 against sessions") == NULL);
    ASSERT(strstr(b.data, "height=\"430\"") != NULL);
    buf_cleanup(&b);
    loadstat_result_cleanup(&r);
}
