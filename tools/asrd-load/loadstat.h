/* loadstat: the pure logic of the load generator tools/asrd-load, kept out
 * of the tool so it can be unit-tested without sockets (docs/internals/architecture.md, "Parsers"):
 *
 *   - an HDR-like log-bucket latency histogram with bounded relative error;
 *   - absolute-deadline chunk scheduling (no drift, documented catch-up);
 *   - an intrusive min-heap the tool uses as its one process-wide timer queue;
 *   - a fast scanner for the server's streaming messages (docs/API.md
 *     "Server -> client") and a parser for GET /v1/metrics;
 *   - the comparison of the client's counts with the server's deltas;
 *   - which session slots play a role (slow reader, flooder), the churn
 *     rate's start times, and the peaks of the server's sampled RSS and fds;
 *   - the result record, its JSON form (written by --json, read back by
 *     loadstat_result_from_json) and its SVG chart (--svg).
 *
 * Nothing here does I/O. Times are microseconds in the histogram and
 * nanoseconds in the scheduler; results are reported in milliseconds. */
#ifndef ASRD_LOADSTAT_H
#define ASRD_LOADSTAT_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/* ---- histogram --------------------------------------------------------- */

/* Values 0..2*SUB-1 get one bucket each (exact). Above that, each power of
 * two [2^m, 2^(m+1)) is split into SUB equal buckets, so a bucket's width
 * is at most 1/SUB of its lowest value: the relative error of any reported
 * percentile is below 1/128 (0.8 %). Values above LOADSTAT_HIST_MAX land in
 * the top bucket (and are counted in `overflow`); min and max are exact. */
#define LOADSTAT_HIST_SUB_BITS 7
#define LOADSTAT_HIST_SUB      (1u << LOADSTAT_HIST_SUB_BITS)  /* 128 */
#define LOADSTAT_HIST_TOP_BITS 36                              /* values < 2^36 us, ~19 h */
#define LOADSTAT_HIST_MAX      ((UINT64_C(1) << LOADSTAT_HIST_TOP_BITS) - 1)
#define LOADSTAT_HIST_BUCKETS  \
    (2 * LOADSTAT_HIST_SUB + (LOADSTAT_HIST_TOP_BITS - LOADSTAT_HIST_SUB_BITS - 1) * LOADSTAT_HIST_SUB)

struct loadstat_hist {
    uint64_t count;                       /* samples */
    uint64_t min, max;                    /* exact, us; 0 when empty */
    double   sum;                         /* us, for the mean */
    uint64_t overflow;                    /* samples above LOADSTAT_HIST_MAX */
    uint64_t b[LOADSTAT_HIST_BUCKETS];    /* counts per bucket */
};

/* Percentile summary in milliseconds (all 0 when count is 0). */
struct loadstat_pct {
    uint64_t count;
    double p50, p90, p99, p999, max, mean;
};

void     loadstat_hist_reset(struct loadstat_hist *h);
void     loadstat_hist_add(struct loadstat_hist *h, uint64_t v_us);
/* Adds every sample of src to dst. */
void     loadstat_hist_merge(struct loadstat_hist *dst, const struct loadstat_hist *src);
/* The p-th percentile (0 <= p <= 100) in us: the smallest bucket bound that
 * at least ceil(p/100 * count) samples (at least one) do not exceed, capped
 * at the exact max. p >= 100 gives the max. 0 when empty. */
uint64_t loadstat_hist_percentile(const struct loadstat_hist *h, double p);
void     loadstat_hist_summary(const struct loadstat_hist *h, struct loadstat_pct *out);
/* Bucket index of v, and the lowest and highest value a bucket holds. */
size_t   loadstat_hist_bucket(uint64_t v);
uint64_t loadstat_hist_bucket_low(size_t i);
uint64_t loadstat_hist_bucket_high(size_t i);

/* ---- absolute-deadline scheduling -------------------------------------- */

/* Chunk k (a "slot") is due at t0 + k * period, computed from t0 every time,
 * so late wake-ups never shift later deadlines (no drift).
 *
 * Catch-up policy, applied by loadstat_sched_due() at each wake-up: all due
 * slots not yet handled are counted; if at most max_burst are due, all of
 * them are sent at once (a late timer only delays them); if more are due
 * (the client stalled for longer than max_burst periods), only the newest
 * max_burst are sent and the older ones are skipped and reported, so the
 * audio position keeps following the wall clock and a burst never exceeds
 * max_burst chunks (the server's rate limiter allows 2 s of bursts at twice
 * real time, docs/API.md). */
struct loadstat_sched {
    uint64_t t0_ns;      /* deadline of slot 0 (monotonic ns) */
    uint64_t period_ns;  /* > 0 */
    uint64_t next_slot;  /* first slot not yet handled */
    unsigned max_burst;  /* >= 1 */
};

void     loadstat_sched_init(struct loadstat_sched *s, uint64_t t0_ns, uint64_t period_ns,
                             unsigned max_burst);
uint64_t loadstat_sched_deadline(const struct loadstat_sched *s, uint64_t slot);
/* Deadline of the next slot to handle. */
uint64_t loadstat_sched_next(const struct loadstat_sched *s);
/* At time now: returns how many slots to send now (0 if none is due); they
 * are *first .. *first + n - 1. *skipped gets the number of older due slots
 * dropped by the catch-up policy. Every due slot is marked handled. */
unsigned loadstat_sched_due(struct loadstat_sched *s, uint64_t now_ns, uint64_t *first,
                            uint64_t *skipped);

/* ---- min-heap of deadlines --------------------------------------------- */

/* Intrusive: callers embed a node and set key before pushing. Ties pop in
 * no particular order. Storage grows with xrealloc (program-sized). */
struct loadstat_heap_node {
    uint64_t key;   /* deadline, ns */
    size_t   idx_;  /* private: position + 1, 0 when not in a heap */
};

struct loadstat_heap {
    struct loadstat_heap_node **v;  /* owned array of borrowed nodes */
    size_t n, cap;
};

void loadstat_heap_init(struct loadstat_heap *h);
void loadstat_heap_cleanup(struct loadstat_heap *h);
/* Pushes node (must not be in a heap). */
void loadstat_heap_push(struct loadstat_heap *h, struct loadstat_heap_node *node);
/* Removes node if it is in h; a no-op otherwise. */
void loadstat_heap_remove(struct loadstat_heap *h, struct loadstat_heap_node *node);
/* Smallest key, or NULL when empty. pop also removes it. */
struct loadstat_heap_node *loadstat_heap_peek(const struct loadstat_heap *h);
struct loadstat_heap_node *loadstat_heap_pop(struct loadstat_heap *h);
int  loadstat_heap_contains(const struct loadstat_heap_node *node);

/* ---- session roles and churn rate -------------------------------------- */

/* 1 when slot idx (0 <= idx < total) is one of n slots spread evenly over
 * total: slot idx is picked when floor((idx+1)*n/total) > floor(idx*n/total),
 * so exactly min(n, total) slots are picked and two picked slots in a row
 * are floor(total/n) or ceil(total/n) apart. Integer arithmetic: no
 * rounding surprises. */
int loadstat_spread(uint64_t idx, uint64_t n, uint64_t total);

enum loadstat_role {
    LOADSTAT_ROLE_NORMAL = 0,   /* reads everything, streams in real time; its latency is measured */
    LOADSTAT_ROLE_SLOW,         /* never reads after `session` (slow-readers) */
    LOADSTAT_ROLE_FLOOD,        /* sends chunks faster than real time (flood) */
};

/* The role of slot idx of total when n_slow + n_flood of them are special:
 * the special slots are spread evenly (loadstat_spread), and among them the
 * slow ones are spread evenly again, the rest flood. Counts above total
 * are clamped (slow first). */
enum loadstat_role loadstat_role(uint64_t idx, uint64_t total, uint64_t n_slow, uint64_t n_flood);

/* Churn at a fixed rate: session k (0, 1, ...) is due k / rate_per_s
 * seconds after the phase start (rounded to the ns): loadstat_churn_start_ns.
 * loadstat_churn_due gives how many sessions are due by elapsed_ns, i.e. how
 * many start times have come (at least 1: the first starts at once); the
 * two agree exactly. A rate <= 0 reads as "session 0 only". */
uint64_t loadstat_churn_due(double rate_per_s, uint64_t elapsed_ns);
uint64_t loadstat_churn_start_ns(double rate_per_s, uint64_t k);

/* ---- server messages --------------------------------------------------- */

enum loadstat_msg_type {
    LOADSTAT_MSG_OTHER = 0,
    LOADSTAT_MSG_SESSION,
    LOADSTAT_MSG_PARTIAL,
    LOADSTAT_MSG_FINAL,
    LOADSTAT_MSG_ERROR,
    LOADSTAT_MSG_SPEECH_STARTED,
};

struct loadstat_msg {
    enum loadstat_msg_type type;
    int      has_sequence;  /* a non-negative integer "sequence" was present */
    uint64_t sequence;
    char     code[32];      /* error "code", truncated; "" when absent */
};

/* Scans one text message (a JSON object) for its top-level "type",
 * "sequence" and "code", skipping every other value without building a
 * tree. Returns 0, or ASR_EINVAL when p[0..n) is not a well-formed JSON
 * object (*out is then zeroed). */
int loadstat_msg_parse(const char *p, size_t n, struct loadstat_msg *out);

/* ---- GET /v1/metrics --------------------------------------------------- */

/* ---- named counters ---------------------------------------------------- */

/* A small name -> count map (error codes, close codes, connect failures).
 * Past LOADSTAT_MAX_NAMES distinct names, new names count under "OTHER". */
#define LOADSTAT_MAX_NAMES 16
struct loadstat_counts {
    struct { char name[32]; uint64_t n; } v[LOADSTAT_MAX_NAMES];
    size_t len;
};

void     loadstat_counts_add(struct loadstat_counts *c, const char *name, uint64_t k);
uint64_t loadstat_counts_get(const struct loadstat_counts *c, const char *name);
uint64_t loadstat_counts_sum(const struct loadstat_counts *c);
void     loadstat_counts_merge(struct loadstat_counts *dst, const struct loadstat_counts *src);
/* out = after - before, name by name (names of after; a count that went
 * down, e.g. across a server restart, reads 0; zero deltas are left out). */
void     loadstat_counts_delta(struct loadstat_counts *out, const struct loadstat_counts *after,
                               const struct loadstat_counts *before);

/* ---- GET /v1/metrics --------------------------------------------------- */

struct loadstat_server {
    int      ok;                  /* 1 when the snapshot was read */
    uint64_t chunks_total;        /* chunks.total */
    uint64_t errors_total;        /* errors.total, or the sum of errors.* */
    uint64_t partials_total;      /* partials.total (sent or dropped) */
    uint64_t partials_dropped;    /* partials.dropped */
    uint64_t finals_total;        /* finals.total */
    uint64_t sessions_total;      /* sessions.total (created) */
    uint64_t rss_bytes;           /* process.rss_bytes (the sum over workers) */
    uint64_t open_fds;            /* process.open_fds (the sum over workers) */
    uint64_t sessions_active;     /* sessions.active */
    uint64_t connections_active;  /* connections.active */
    uint64_t workers;             /* entries of "workers" (a master's processes), 0 when absent */
    uint64_t slow_client_closes;  /* sessions.ended.slow_client (0 if absent) */
    uint64_t policy_closes;       /* sessions.ended.policy: rate abuse 1008 (0 if absent) */
    double   chunk_p99_ms;        /* latency_ms.chunk.p99 (0 if absent) */
    double   loop_utilization;    /* loop.utilization: busiest worker's loop, last second (0 if absent) */
    /* engine.pool.* (windowed engines' inference pool; all 0 without one) */
    uint64_t pool_threads;        /* decoding threads */
    uint64_t pool_busy;           /* threads decoding now */
    uint64_t pool_queued;         /* jobs waiting (finals included) */
    uint64_t pool_queued_finals;  /* ... of which finals */
    uint64_t pool_completed, pool_failed, pool_refused;  /* jobs, counters */
    uint64_t pool_audio_ms;       /* audio decoded, counter */
    uint64_t pool_busy_ms;        /* thread time spent decoding, counter */
    uint64_t windows_skipped;     /* engine.windows_skipped: partial windows skipped (server_busy) */
    double   pool_rtf;            /* engine.pool.real_time_factor: busy_ms / audio_ms since the server started */
    struct loadstat_counts close_codes;  /* close_codes.*: "1000", "1008", ..., "none" */
    struct loadstat_counts rest_status;  /* requests.by_route.transcribe.<status> */
    struct loadstat_counts stream_status; /* requests.by_route.stream.<status> ("101", "503", ...) */
    struct loadstat_counts error_codes;   /* errors.<CODE>, "total" left out */
    struct loadstat_counts ended;         /* sessions.ended.<reason> */
};

/* Parses a /v1/metrics body (jansson). Fields that are absent read as 0;
 * returns ASR_EINVAL (out->ok = 0) when the body is not a JSON object or
 * lacks chunks.total, else 0 with out->ok = 1. */
int loadstat_metrics_parse(const char *p, size_t n, struct loadstat_server *out);

/* ---- results ----------------------------------------------------------- */

/* The options of a run (what --help lists). */
struct loadstat_opts {
    char     url[256];
    char     scenario[16];        /* a name of the scenario table (scenario.c) */
    char     mode[8];             /* binary|json */
    char     wav[512];            /* "" with tone */
    int      tone;                /* synthetic voiced signal instead of a WAV */
    unsigned sessions;
    double   ramp_s, duration_s;
    unsigned chunk_ms;
    double   slow_fraction;
    unsigned slow_count;          /* slow-readers: sessions that never read (from slow_fraction unless given) */
    double   flood_fraction;
    unsigned flood_count;         /* flood: sessions that send faster than real time */
    double   flood_factor;        /* flood: their chunk rate, times real time */
    double   churn_rate;          /* churn: sessions started per second, 0 = refill slots as they free */
    double   sample_s;            /* seconds between /v1/metrics samples during a phase, 0 = none */
    unsigned capacity_start, capacity_step, capacity_max;
    double   p99_threshold_ms;
    unsigned max_errors;          /* capacity: errors + connect failures + missing a step may have */
    double   mock_latency_ms;
    unsigned rest_concurrency;
    unsigned rest_requests;       /* rest: requests in all, 0 = as many as the duration allows */
    double   churn_life_s;
    unsigned max_burst;
    double   connect_timeout_s;
    double   grace_s;
    unsigned files;               /* audio files streamed (speech: one clip each; else 1, 0 with tone) */
    double   final_p95_threshold_ms;  /* speech-capacity: highest p95 final latency a step may have */
    double   gap_ms;              /* speech: silence sent after each file */
};

/* One phase: the whole run, or one capacity step. Latencies in ms. */
struct loadstat_run {
    unsigned sessions_target;
    double   start_s;                 /* phase start, seconds since the run started */
    double   wall_s;                  /* phase wall time, the drain after `stop` included */
    double   stream_s;                /* seconds of streaming (ramp + duration, or less if cut) */
    uint64_t sessions_opened;         /* got the `session` message */
    uint64_t sessions_completed;      /* got `final` and close 1000 */
    uint64_t connect_failures;
    struct loadstat_counts connect_errors;  /* "ECONNREFUSED", "http_503", "timeout", ... */
    uint64_t chunks_sent;
    uint64_t chunks_skipped;          /* dropped by the catch-up policy: client too late */
    uint64_t chunks_blocked;          /* not sent: the session's unsent bytes passed the client's cap */
    uint64_t sessions_stalled;        /* sessions whose unsent bytes backed up (server not reading) */
    uint64_t answers;                 /* partial + error answers matched to a chunk */
    uint64_t partials;                /* ... of which partials */
    uint64_t partial_msgs;            /* every `partial` message received, slow readers' and unmatched included */
    uint64_t finals;
    uint64_t missing;                 /* chunks sent and never answered */
    uint64_t out_of_order;            /* answers whose sequence did not increase */
    uint64_t unmatched;               /* answers for no chunk in flight (unknown or repeated sequence) */
    struct loadstat_counts errors;    /* `error` messages by code */
    struct loadstat_counts close_codes; /* received close codes, "none" for a bare TCP close */
    double   chunk_rate;              /* chunks sent per second of streaming */
    double   answer_rate;
    struct loadstat_pct latency;      /* answer receive - chunk send */
    struct loadstat_pct added;        /* latency - mock latency, floored at 0 */
    uint64_t slow_sessions;           /* slow-readers: sessions that never read */
    uint64_t slow_chunks;             /* ... chunks they sent (in chunks_sent, answers not measured) */
    uint64_t slow_answers;            /* ... answers they received (late, when reading again at `stop`) */
    uint64_t slow_closed;             /* ... that the server closed during the run */
    uint64_t normal_sessions;         /* sessions neither slow nor flooding (got `session`) */
    uint64_t normal_chunks;           /* ... chunks they sent */
    uint64_t normal_completed;        /* ... that got `final` and close 1000 */
    uint64_t normal_errors;           /* ... `error` messages they received */
    uint64_t flood_sessions;          /* flood: sessions sending faster than real time */
    uint64_t flood_chunks;            /* ... chunks they sent (in chunks_sent) */
    uint64_t flood_answers;           /* ... answers (partial or error) matched to their chunks, not timed */
    uint64_t flood_partials;          /* ... of which partials (accepted chunks) */
    uint64_t flood_missing;           /* ... chunks never answered */
    uint64_t flood_closed;            /* ... sessions the server ended before our `stop` (1008, reset) */
    uint64_t server_samples;          /* /v1/metrics samples read during the phase */
    uint64_t server_rss_peak;         /* highest process.rss_bytes seen: before, samples, after */
    uint64_t server_fds_peak;         /* highest process.open_fds seen */
    double   server_loop_util_peak;   /* highest loop.utilization seen (0..1) */
    uint64_t server_pool_busy_peak;   /* highest engine.pool.busy seen */
    uint64_t server_pool_queued_peak; /* highest engine.pool.queued seen */
    double   server_settle_s;         /* seconds the "after" snapshot waited for the server to settle */
    uint64_t server_unsettled;        /* phases whose "after" open fds were still changing when the wait ended */
    uint64_t requests;                /* rest: responses received */
    uint64_t request_failures;        /* rest: non-200, connect or timeout */
    struct loadstat_counts http_status; /* rest: responses by status, "200", "503", ... */
    struct loadstat_counts request_errors; /* rest: requests without a response, by cause ("EOF", "timeout", ...) */
    struct loadstat_counts flood_errors;   /* flood: `error` messages flooders received, by code */
    struct loadstat_counts flood_close_codes; /* flood: their close codes (as close_codes) */
    struct loadstat_counts slow_close_codes;  /* slow-readers: their close codes */
    double   client_cpu_s;            /* user + system CPU of asrd-load */
    double   client_cpu_pct;          /* of one core, over wall_s */
    int      held;                    /* capacity: this step met the criteria */
    char     verdict[96];             /* capacity: why a step failed; "" otherwise */
    struct loadstat_server server_before, server_after;
};

struct loadstat_point {
    double   t_s;         /* seconds since the run started (end of the interval) */
    unsigned sessions;    /* sessions open */
    uint64_t answers;     /* answers in the interval */
    double   p50_ms, p90_ms, p99_ms;  /* latency in the interval */
    uint64_t rss_bytes, open_fds;     /* the server's, from the latest /v1/metrics sample; 0 = none */
    double   loop_util;               /* the server's loop.utilization from that sample; 0 = none */
};

struct loadstat_result {
    struct loadstat_opts opts;
    struct loadstat_run total;       /* the whole run (capacity: all steps merged) */
    struct loadstat_run *steps;      /* owned; capacity steps */
    size_t n_steps;
    unsigned capacity_sessions;      /* capacity: the last step that held, 0 if none */
    struct loadstat_point *timeline; /* owned; one point a second */
    size_t n_timeline;
};

/* ---- client against server ------------------------------------------- */

/* One count the client and the server both keep, for one run: what the
 * client saw against the delta of the server's /v1/metrics over the run. */
struct loadstat_check {
    char     name[48];     /* "chunks", "partials", "finals", "errors", "sessions", "close_1000", "http_200", ... */
    uint64_t client, server;
};

/* Fills out[0..max) with the checks that apply to r (streaming, or rest
 * when rest is set) and returns how many; 0 when either metrics snapshot is
 * missing. They match exactly when the tool was the server's only client
 * and every session ended cleanly:
 *   chunks      chunks sent                  chunks.total
 *   partials    partial messages received    partials.total - partials.dropped
 *   errors      `error` messages received    errors.total
 *   finals      `final` messages received    finals.total
 *   sessions    `session` messages received  sessions.total
 *   close_C     close frames with code C     close_codes.C   (1000 always, others when seen)
 *   http_S      rest responses with status S requests.by_route.transcribe.S
 * (A server's 1008 discards its queued partials without counting them as
 * dropped, so partials may differ when slow readers were closed.) */
size_t loadstat_agreement(const struct loadstat_run *r, int rest, struct loadstat_check *out, size_t max);

/* Folds one /v1/metrics snapshot into r's server peaks (server_rss_peak,
 * server_fds_peak, server_loop_util_peak, server_pool_busy_peak,
 * server_pool_queued_peak); a snapshot that was not read (ok 0) is ignored. */
void loadstat_run_peak(struct loadstat_run *r, const struct loadstat_server *s);

/* Adds src's counters, counts, wall, streaming and CPU time to dst; sessions_target
 * and the server peaks become the larger; server_before is kept from the first run merged
 * (when dst has none) and server_after taken from src. Percentiles are not
 * mergeable: the caller sets them from a merged histogram. */
void loadstat_run_merge(struct loadstat_run *dst, const struct loadstat_run *src);

void loadstat_result_init(struct loadstat_result *r);
void loadstat_result_cleanup(struct loadstat_result *r);
void loadstat_result_add_step(struct loadstat_result *r, const struct loadstat_run *step);
void loadstat_result_add_point(struct loadstat_result *r, const struct loadstat_point *pt);

/* Writes r as one JSON document (options, totals, steps, timeline, server
 * deltas) to out. Returns 0 or ASR_ENOMEM. */
int loadstat_result_to_json(const struct loadstat_result *r, struct buf *out);
/* The same document as a jansson object (json_t), for a caller that adds
 * members before writing it with loadstat_json_dump. NULL when out of
 * memory; the caller owns the result (json_decref). */
struct json_t;
struct json_t *loadstat_result_json(const struct loadstat_result *r);
/* Appends doc to out as loadstat_result_to_json does (indented, doubles
 * with 17 digits, a final newline). Returns 0 or ASR_ENOMEM. */
int loadstat_json_dump(const struct json_t *doc, struct buf *out);
/* Reads a document written by loadstat_result_to_json into r (initialised
 * here; release with loadstat_result_cleanup). Returns 0 or ASR_EINVAL. */
int loadstat_result_from_json(const char *p, size_t n, struct loadstat_result *r);

/* Draws r as a standalone SVG (no scripts, no external files): p50, p90
 * and p99 latency per second over the run (capacity steps marked); for
 * capacity a second panel with p50 and p99 added latency of each step
 * against its sessions, the threshold and the steps that did not hold.
 * Returns 0 or ASR_ENOMEM. */
int loadstat_svg(const struct loadstat_result *r, struct buf *out);

#endif
