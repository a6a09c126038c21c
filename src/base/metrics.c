#include "base/metrics.h"

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"

struct metrics metrics;

/* One worker's metrics to render. */
struct mview {
    const char *wid;
    const struct metrics *m;
    int pid;
};

/* Bucket i covers (BASE * R^(i-1), BASE * R^i] ms, with R = 2^(1/8): from
 * 1 us up to about 1e5 ms over HIST_BUCKETS buckets. */
#define HIST_BASE_MS 0.001
#define HIST_PER_OCTAVE 8.0

static const int status_codes[METRIC_STATUSES] = {101, 200, 202, 204, 304, 400, 401, 403, 404, 405, 408,
                                                  409, 411, 413, 415, 422, 426, 429, 431, 500, 503, 0};
static const int close_codes[METRIC_CLOSE_CODES] = {1000, 1001, 1008, 1009, 1011, 1013, -1, 0};
static const char *const err_names[MERR__N] = {"INVALID_MESSAGE", "INVALID_AUDIO", "CHUNK_TOO_LARGE",
                                               "OUT_OF_ORDER", "RATE_LIMITED", "SERVER_BUSY",
                                               "MODEL_ERROR", "INTERNAL"};
static const char *const route_names[ROUTE__N] = {"transcribe", "stream", "health",
                                                  "metrics_json", "metrics_prom", "audio_transcriptions",
                                                  "audio_translations", "models", "auth_token", "web", "other",
                                                  "jobs", "metrics_streaming"};
static const char *const hook_names[HOOK__N] = {"delivered", "retried", "rejected", "gave_up", "dropped"};
static const char *const fetch_names[FETCH__N] = {"ok", "refused", "too_large", "http_error", "failed"};
static const char *const openai_refusal_names[OREF__N] = {"form", "params", "audio"};
static const char *const auth_refusal_names[AREF__N] = {"unauthorized", "token_invalid", "token_expired",
                                                         "token_scope"};
static const char *const rest_fail_names[RFAIL__N] = {"model_error", "engine_busy", "internal",
                                                        "aborted"};
static const char *const end_names[END__N] = {"stop", "idle", "expired", "slow_client",
                                              "policy", "too_big", "shutdown", "error", "moved", "evicted"};
static const char *const verify_names[METRIC_VERIFY__N] = {"ok", "server_busy", "failed", "too_long"};

/* Per-second rates: a ring of samples taken by metrics_tick(). */
#define RATE_WINDOW 11
static struct { uint64_t t_ms, chunks, requests; } samples[RATE_WINDOW];
static unsigned sample_head, sample_count;

/* The last METRIC_STREAM_LAT_SAMPLES stream latencies (a ring). */
static double stream_lat[METRIC_STREAM_LAT_SAMPLES];
static uint64_t stream_lat_n;         /* recorded so far; the ring holds the last ones */

void metrics_init(void) {
    memset(&metrics, 0, sizeof metrics);
    metrics.start_ms = util_wall_ms();
    sample_head = sample_count = 0;
    stream_lat_n = 0;
}

void metrics_stream_latency(double ms) {
    stream_lat[stream_lat_n % METRIC_STREAM_LAT_SAMPLES] = ms > 0 ? ms : 0;
    stream_lat_n++;
}

uint64_t metrics_stream_latency_count(void) { return stream_lat_n; }

void metrics_stream_latency_since(uint64_t from, double *avg_ms, uint64_t *n) {
    uint64_t k = stream_lat_n > from ? stream_lat_n - from : 0;
    if (k > METRIC_STREAM_LAT_SAMPLES) k = METRIC_STREAM_LAT_SAMPLES;
    double sum = 0;
    for (uint64_t i = 0; i < k; i++) sum += stream_lat[(stream_lat_n - 1 - i) % METRIC_STREAM_LAT_SAMPLES];
    *n = k;
    *avg_ms = k ? sum / (double)k : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void metrics_stream_latency_stats(double *avg_ms, double *p95_ms, uint64_t *n) {
    static double sorted[METRIC_STREAM_LAT_SAMPLES];
    size_t k = stream_lat_n < METRIC_STREAM_LAT_SAMPLES ? (size_t)stream_lat_n : METRIC_STREAM_LAT_SAMPLES;
    *n = k;
    *avg_ms = *p95_ms = 0;
    if (!k) return;
    double sum = 0;
    for (size_t i = 0; i < k; i++) sum += sorted[i] = stream_lat[i];
    qsort(sorted, k, sizeof *sorted, cmp_double);
    *avg_ms = sum / (double)k;
    size_t rank = (size_t)ceil(0.95 * (double)k);
    *p95_ms = sorted[(rank ? rank : 1) - 1];
}

static double bucket_upper(int i) { return HIST_BASE_MS * pow(2.0, i / HIST_PER_OCTAVE); }

void hist_add(struct hist *h, double ms) {
    int i = 0;
    if (ms > HIST_BASE_MS) {
        i = (int)ceil(log2(ms / HIST_BASE_MS) * HIST_PER_OCTAVE);
        if (i >= HIST_BUCKETS) i = HIST_BUCKETS - 1;
        if (i < 0) i = 0;
    }
    h->b[i]++;
    h->count++;
    h->sum_ms += ms;
}

double hist_percentile(const struct hist *h, double p) {
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) return bucket_upper(i);
    }
    return bucket_upper(HIST_BUCKETS - 1);
}

void metrics_count_error(int err) {
    int i;
    switch (err) {
    case ASR_E_INVALID_MESSAGE: i = MERR_INVALID_MESSAGE; break;
    case ASR_E_INVALID_AUDIO: i = MERR_INVALID_AUDIO; break;
    case ASR_E_CHUNK_TOO_LARGE: i = MERR_CHUNK_TOO_LARGE; break;
    case ASR_E_OUT_OF_ORDER: i = MERR_OUT_OF_ORDER; break;
    case ASR_E_RATE_LIMITED: i = MERR_RATE_LIMITED; break;
    case ASR_E_SERVER_BUSY: i = MERR_SERVER_BUSY; break;
    case ASR_E_MODEL_ERROR: i = MERR_MODEL_ERROR; break;
    default: i = MERR_INTERNAL; break;
    }
    metrics.errors[i]++;
}

void metrics_count_close(int code) {
    for (int i = 0; i < METRIC_CLOSE_CODES - 2; i++)
        if (close_codes[i] == code) { metrics.close_codes[i]++; return; }
    metrics.close_codes[code ? METRIC_CLOSE_CODES - 2 : METRIC_CLOSE_CODES - 1]++;
}

void metrics_count_request(enum metric_route route, int status) {
    int i;
    for (i = 0; i < METRIC_STATUSES - 1; i++)
        if (status_codes[i] == status) break;
    metrics.requests[route][i]++;
    metrics.requests_total++;
}

static void publish(void);

void metrics_tick(void) {
    metrics_stream_latency_stats(&metrics.stream_lat_avg_ms, &metrics.stream_lat_p95_ms, &metrics.stream_lat_samples);
    samples[sample_head].t_ms = util_wall_ms();
    samples[sample_head].chunks = metrics.chunks_total;
    samples[sample_head].requests = metrics.requests_total;
    sample_head = (sample_head + 1) % RATE_WINDOW;
    if (sample_count < RATE_WINDOW) sample_count++;
    publish();
}

/* Rate over the sampled window (up to 10 s), per second. */
static void rates(double *chunks, double *requests) {
    *chunks = *requests = 0;
    if (sample_count < 2) return;
    unsigned newest = (sample_head + RATE_WINDOW - 1) % RATE_WINDOW;
    unsigned oldest = (sample_head + RATE_WINDOW - sample_count) % RATE_WINDOW;
    double dt = (double)(samples[newest].t_ms - samples[oldest].t_ms) / 1000.0;
    if (dt <= 0) return;
    *chunks = (double)(samples[newest].chunks - samples[oldest].chunks) / dt;
    *requests = (double)(samples[newest].requests - samples[oldest].requests) / dt;
}

uint64_t metrics_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The size of this process's descriptor table (FDSize in /proc/self/status):
 * every open descriptor is below it. 0 when unknown. */
static size_t fd_table_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "FDSize:", 7) == 0) {
            n = (size_t)strtoul(line + 7, NULL, 10);
            break;
        }
    fclose(f);
    struct rlimit rl;                   /* poll() refuses more entries than this */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && n > rl.rlim_cur)
        n = (size_t)rl.rlim_cur;
    return n;
}

void metrics_fdwalk_begin(struct metrics_fdwalk *w) {
    w->end = fd_table_size();
    w->next = 0;
    w->open = 0;
}

int metrics_fdwalk_step(struct metrics_fdwalk *w, size_t slots) {
    struct pollfd pf[METRICS_FDWALK_SLOTS];
    if (slots > METRICS_FDWALK_SLOTS) slots = METRICS_FDWALK_SLOTS;
    size_t n = w->end - w->next < slots ? w->end - w->next : slots;
    for (size_t i = 0; i < n; i++) pf[i] = (struct pollfd){.fd = (int)(w->next + i), .events = 0};
    if (n && poll(pf, (nfds_t)n, 0) >= 0)
        for (size_t i = 0; i < n; i++) w->open += !(pf[i].revents & POLLNVAL);
    w->next += n;
    return w->next >= w->end;
}

/* The newest figures metrics_proc_set() stored; read by fill_process(). */
static struct metrics_proc proc_;

void metrics_proc_set(const struct metrics_proc *p) { proc_ = *p; }

static void json_hist(struct buf *b, const char *name, const struct hist *h) {
    buf_printf(b, "\"%s\":{\"count\":%llu,\"mean\":%.3f,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"p999\":%.3f}",
               name, (unsigned long long)h->count, h->count ? h->sum_ms / (double)h->count : 0.0,
               hist_percentile(h, 50), hist_percentile(h, 95), hist_percentile(h, 99),
               hist_percentile(h, 99.9));
}

/* The streaming figures of the instance (docs/API.md "GET /metrics/streaming"):
 * counters summed (M), the latency mean weighted by each worker's samples,
 * the 95th percentile the highest of the workers' (their samples are not
 * shared), the adaptive window the mean of the workers'. This worker's
 * latencies are fresh, the others' from their last tick. */
static void streaming_obj(struct buf *b, const struct metrics *M, const struct mview *v, int nv) {
    double wsum = 0, p95 = 0, win = 0;
    uint64_t n = 0;
    int nwin = 0;
    for (int k = 0; k < nv; k++) {
        double avg = v[k].m->stream_lat_avg_ms, p = v[k].m->stream_lat_p95_ms;
        uint64_t c = v[k].m->stream_lat_samples;
        if (v[k].m == &metrics) metrics_stream_latency_stats(&avg, &p, &c);
        wsum += avg * (double)c;
        n += c;
        if (p > p95) p95 = p;
        win += (double)v[k].m->adaptive_window_ms;
        nwin++;
    }
    buf_printf(b,
               "{\"active_connections\":%llu,\"avg_latency_ms\":%.3f,\"p95_latency_ms\":%.3f,"
               "\"latency_sample_count\":%llu,\"asr_failure_count\":%llu,\"dropped_segments\":%llu,"
               "\"adaptive_window_seconds\":%.3f}",
               (unsigned long long)M->sessions_attached, n ? wsum / (double)n : 0.0, p95, (unsigned long long)n,
               (unsigned long long)M->engine_errors,
               (unsigned long long)(M->windows_skipped + M->errors[MERR_SERVER_BUSY]),
               nwin ? win / nwin / 1000.0 : 0.0);
}

#define U(x) ((unsigned long long)(x))

/* "jobs": the queue's gauges are the same for every worker (the largest
 * reading is shown, not the sum); the rest is summed like everything else. */
static void render_jobs_json(struct buf *b, const struct metrics *M, const struct mview *v, int nv) {
    uint64_t depth = 0, pending = 0, spool = 0, dead = 0, hooks = 0;
    for (int k = 0; k < nv; k++) {
        const struct metrics *w = v[k].m;
        if (w->jobs_queue_depth > depth) depth = w->jobs_queue_depth;
        if (w->jobs_pending > pending) pending = w->jobs_pending;
        if (w->jobs_spool_bytes > spool) spool = w->jobs_spool_bytes;
        if (w->jobs_dead_letters > dead) dead = w->jobs_dead_letters;
        if (w->jobs_hooks_due > hooks) hooks = w->jobs_hooks_due;
    }
    uint64_t lookups = M->jobs_cache_hits + M->jobs_new_runs;
    buf_printf(b, ",\"jobs\":{\"queue\":{\"depth\":%llu,\"pending\":%llu,\"spool_bytes\":%llu,\"dead_letters\":%llu,"
                  "\"webhooks_due\":%llu},\"running\":%llu",
               U(depth), U(pending), U(spool), U(dead), U(hooks), U(M->jobs_running));
    buf_printf(b, ",\"submitted\":%llu,\"new_runs\":%llu,\"dedup_joins\":%llu,\"cache\":{\"hits\":%llu,\"misses\":%llu,"
                  "\"hit_ratio\":%.4f},\"idempotent_replays\":%llu,\"idempotency_conflicts\":%llu,"
                  "\"refused_full\":%llu,\"rate_limited\":%llu",
               U(M->jobs_submitted), U(M->jobs_new_runs), U(M->jobs_dedup_joins), U(M->jobs_cache_hits),
               U(M->jobs_new_runs), lookups ? (double)M->jobs_cache_hits / (double)lookups : 0.0,
               U(M->jobs_idem_replays), U(M->jobs_idem_conflicts), U(M->jobs_refused_full), U(M->jobs_rate_limited));
    buf_printf(b, ",\"runs\":{\"finished\":%llu,\"completed\":%llu,\"failed\":%llu,\"abandoned\":%llu,\"dead\":%llu,"
                  "\"reclaimed\":%llu,\"released\":%llu,\"lost_lease\":%llu,\"audio_ms\":%llu,\"run_ms\":%llu,"
                  "\"real_time_factor\":%.4f}",
               U(M->jobs_runs), U(M->jobs_completed), U(M->jobs_failed), U(M->jobs_abandoned), U(M->jobs_dead),
               U(M->jobs_reclaimed), U(M->jobs_released), U(M->jobs_lost_lease), U(M->jobs_audio_ms), U(M->jobs_run_ms),
               M->jobs_audio_ms ? (double)M->jobs_run_ms / (double)M->jobs_audio_ms : 0.0);
    buf_puts(b, ",\"fetches\":{");
    for (int i = 0; i < FETCH__N; i++) buf_printf(b, "%s\"%s\":%llu", i ? "," : "", fetch_names[i], U(M->jobs_fetch[i]));
    buf_puts(b, "},\"webhooks\":{");
    for (int i = 0; i < HOOK__N; i++) buf_printf(b, "%s\"%s\":%llu", i ? "," : "", hook_names[i], U(M->hooks[i]));
    buf_puts(b, "}");
    buf_puts(b, ",\"latency_ms\":{");
    json_hist(b, "wait", &M->lat_job_wait);
    buf_puts(b, ",");
    json_hist(b, "run", &M->lat_job_run);
    buf_puts(b, ",");
    json_hist(b, "submit", &M->lat_job_submit);
    buf_puts(b, "}}");
}

static void render_json(struct buf *b, const char *worker_id, const struct metrics *M, const struct mview *v, int nv) {
    double cps = 0, rps = 0;
    if (nv == 1) rates(&cps, &rps);
    else
        for (int k = 0; k < nv; k++) cps += v[k].m->chunks_per_s, rps += v[k].m->requests_per_s;
    uint64_t sum_err = 0;
    for (int i = 0; i < MERR__N; i++) sum_err += M->errors[i];
    buf_puts(b, "{\"worker_id\":");
    buf_json_str(b, worker_id, strlen(worker_id));
    buf_printf(b, ",\"uptime_s\":%.1f", (double)(util_wall_ms() - M->start_ms) / 1000.0);
    buf_printf(b, ",\"connections\":{\"active\":%llu,\"total\":%llu,\"refused\":%llu}",
               (unsigned long long)M->connections_active, (unsigned long long)M->connections_total,
               (unsigned long long)M->connections_refused);
    buf_printf(b, ",\"sessions\":{\"active\":%llu,\"attached\":%llu,\"detached\":%llu,\"evicted_for_room\":%llu,"
                  "\"total\":%llu,\"resumed\":%llu,\"refused\":%llu,\"ended\":{",
               (unsigned long long)M->sessions_active, (unsigned long long)M->sessions_attached,
               (unsigned long long)M->sessions_detached, (unsigned long long)M->sessions_evicted_for_room,
               (unsigned long long)M->sessions_total, (unsigned long long)M->sessions_resumed,
               (unsigned long long)M->sessions_refused);
    for (int i = 0; i < END__N; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", end_names[i], (unsigned long long)M->sessions_ended[i]);
    buf_printf(b, "}},\"chunks\":{\"total\":%llu,\"accepted\":%llu,\"per_sec\":%.2f}",
               (unsigned long long)M->chunks_total, (unsigned long long)M->chunks_accepted, cps);
    buf_printf(b, ",\"partials\":{\"total\":%llu,\"dropped\":%llu}", (unsigned long long)M->partials_total,
               (unsigned long long)M->partials_dropped);
    buf_printf(b, ",\"finals\":{\"total\":%llu},\"speech_started\":{\"total\":%llu}",
               (unsigned long long)M->finals_total, (unsigned long long)M->speech_started_total);
    buf_printf(b, ",\"bytes_in\":{\"total\":%llu},\"audio_ms_in\":{\"total\":%llu}",
               (unsigned long long)M->bytes_in, (unsigned long long)M->audio_ms_in);
    buf_printf(b, ",\"rest\":{\"chunks\":%llu,\"audio_ms\":%llu,\"failed\":{",
               (unsigned long long)M->rest_chunks, (unsigned long long)M->rest_audio_ms);
    for (int i = 0; i < RFAIL__N; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", rest_fail_names[i], (unsigned long long)M->rest_failed[i]);
    buf_printf(b, "},\"inputs\":{\"truncated\":%llu,\"trailing\":%llu}}", (unsigned long long)M->rest_truncated,
               (unsigned long long)M->rest_trailing);
    buf_puts(b, ",\"openai\":{\"refused\":{");
    for (int i = 0; i < OREF__N; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", openai_refusal_names[i],
                   (unsigned long long)M->openai_refused[i]);
    buf_puts(b, "}}");
    render_jobs_json(b, M, v, nv);
    buf_printf(b, ",\"requests\":{\"total\":%llu,\"per_sec\":%.2f,\"by_route\":{",
               (unsigned long long)M->requests_total, rps);
    for (int r = 0; r < ROUTE__N; r++) {
        buf_printf(b, "%s\"%s\":{", r ? "," : "", route_names[r]);
        int first = 1;
        for (int s = 0; s < METRIC_STATUSES; s++) {
            if (!M->requests[r][s]) continue;
            buf_printf(b, "%s\"%d\":%llu", first ? "" : ",", status_codes[s] ? status_codes[s] : 0,
                       (unsigned long long)M->requests[r][s]);
            first = 0;
        }
        buf_puts(b, "}");
    }
    buf_printf(b, "}},\"errors\":{\"total\":%llu", (unsigned long long)sum_err);
    for (int i = 0; i < MERR__N; i++)
        buf_printf(b, ",\"%s\":%llu", err_names[i], (unsigned long long)M->errors[i]);
    buf_puts(b, "},\"close_codes\":{");
    for (int i = 0; i < METRIC_CLOSE_CODES; i++) {
        const char *name = close_codes[i] > 0 ? NULL : (close_codes[i] < 0 ? "other" : "none");
        if (name) buf_printf(b, "%s\"%s\":%llu", i ? "," : "", name, (unsigned long long)M->close_codes[i]);
        else buf_printf(b, "%s\"%d\":%llu", i ? "," : "", close_codes[i], (unsigned long long)M->close_codes[i]);
    }
    buf_printf(b, "},\"backpressure\":{\"read_pauses\":%llu}", (unsigned long long)M->ws_paused);
    buf_printf(b, ",\"liveness\":{\"pings\":%llu,\"pongs\":%llu,\"ping_timeouts\":%llu}",
               (unsigned long long)M->ws_pings, (unsigned long long)M->ws_pongs,
               (unsigned long long)M->ws_ping_timeouts);
    buf_printf(b, ",\"auth\":{\"tokens_issued\":%llu,\"refused\":{", (unsigned long long)M->auth_tokens_issued);
    for (int i = 0; i < AREF__N; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", auth_refusal_names[i], (unsigned long long)M->auth_refused[i]);
    buf_printf(b, "}},\"cors\":{\"preflights\":%llu,\"refused\":%llu}", (unsigned long long)M->cors_preflights,
               (unsigned long long)M->cors_refused);
    buf_printf(b,
               ",\"memory\":{\"uploads\":{\"bytes\":%llu,\"peak\":%llu,\"limit\":%llu,\"refused\":%llu},"
               "\"messages\":{\"bytes\":%llu,\"peak\":%llu,\"limit\":%llu,\"refused\":%llu}}",
               (unsigned long long)M->mem_upload_bytes, (unsigned long long)M->mem_upload_peak,
               (unsigned long long)M->mem_upload_limit, (unsigned long long)M->mem_upload_refused,
               (unsigned long long)M->mem_message_bytes, (unsigned long long)M->mem_message_peak,
               (unsigned long long)M->mem_message_limit, (unsigned long long)M->mem_message_refused);
    buf_printf(b, ",\"store\":{\"available\":%llu,\"ops\":%llu,\"errors\":%llu,\"timeouts\":%llu,\"reconnects\":%llu,"
                  "\"snapshot_writes\":%llu,\"republished\":%llu}",
               (unsigned long long)M->store_up, (unsigned long long)M->store_ops, (unsigned long long)M->store_errors,
               (unsigned long long)M->store_timeouts, (unsigned long long)M->store_reconnects,
               (unsigned long long)M->store_writes, (unsigned long long)M->store_republished);
    buf_printf(b,
               ",\"engine\":{\"requests\":%llu,\"errors\":%llu,\"windows_skipped\":%llu,\"utterances_cut\":%llu,"
               "\"pool\":{\"threads\":%llu,\"busy\":%llu,\"queued\":%llu,\"queued_finals\":%llu,\"queue_max\":%llu,\"completed\":%llu,"
               "\"failed\":%llu,\"refused\":%llu,\"evicted\":%llu,\"audio_ms\":%llu,\"busy_ms\":%llu,\"real_time_factor\":%.4f}}",
               (unsigned long long)M->engine_requests, (unsigned long long)M->engine_errors,
               (unsigned long long)M->windows_skipped, (unsigned long long)M->utterances_cut,
               (unsigned long long)M->pool_threads, (unsigned long long)M->pool_busy,
               (unsigned long long)M->pool_queued, (unsigned long long)M->pool_queued_finals,
               (unsigned long long)M->pool_queue_max,
               (unsigned long long)M->pool_completed, (unsigned long long)M->pool_failed,
               (unsigned long long)M->pool_refused, (unsigned long long)M->pool_evicted,
               (unsigned long long)M->pool_audio_ms,
               (unsigned long long)M->pool_busy_ms,
               M->pool_audio_ms ? (double)M->pool_busy_ms / (double)M->pool_audio_ms : 0.0);
    buf_printf(b, ",\"feedback\":{\"streams\":%llu,\"rest\":%llu,\"updates\":%llu,\"verifications\":{",
               (unsigned long long)M->feedback_streams, (unsigned long long)M->feedback_rest,
               (unsigned long long)M->feedback_updates);
    for (int i = 0; i < METRIC_VERIFY__N; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", verify_names[i], (unsigned long long)M->verifications[i]);
    buf_puts(b, "}},\"streaming\":");
    streaming_obj(b, M, v, nv);
    buf_printf(b, ",\"vad\":{\"frames\":%llu,\"speech_frames\":%llu,\"speech_ratio\":%.4f}",
               (unsigned long long)M->vad_frames, (unsigned long long)M->vad_speech_frames,
               M->vad_frames ? (double)M->vad_speech_frames / (double)M->vad_frames : 0.0);
    buf_puts(b, ",\"latency_ms\":{");
    json_hist(b, "chunk", &M->lat_total);
    buf_puts(b, ",");
    json_hist(b, "chunk_queue", &M->lat_queue);
    buf_puts(b, ",");
    json_hist(b, "chunk_engine", &M->lat_engine);
    buf_puts(b, ",");
    json_hist(b, "rest", &M->lat_rest);
    buf_puts(b, "}");
    {
        double util = 0;
        for (int k = 0; k < nv; k++)
            if (v[k].m->loop_utilization > util) util = v[k].m->loop_utilization;
        buf_printf(b, ",\"loop\":{\"iterations\":%llu,\"utilization\":%.4f,", (unsigned long long)M->loop_iterations, util);
        json_hist(b, "busy_ms", &M->loop_busy);
    }
    buf_printf(b, "},\"process\":{\"rss_bytes\":%llu,\"open_fds\":%llu,\"log_lines_dropped\":%llu}",
               (unsigned long long)M->rss_bytes, (unsigned long long)M->open_fds,
               (unsigned long long)M->log_dropped);
    buf_puts(b, ",\"workers\":[");
    for (int k = 0; k < nv; k++) {
        const struct metrics *w = v[k].m;
        buf_printf(b, "%s{\"worker_id\":", k ? "," : "");
        buf_json_str(b, v[k].wid, strlen(v[k].wid));
        buf_printf(b, ",\"pid\":%d,\"uptime_s\":%.1f,\"connections_active\":%llu,\"sessions_active\":%llu,"
                      "\"sessions_attached\":%llu,\"chunks_total\":%llu,\"jobs_finished\":%llu,\"jobs_running\":%llu,"
                      "\"rss_bytes\":%llu}",
                   v[k].pid, (double)(util_wall_ms() - w->start_ms) / 1000.0,
                   (unsigned long long)w->connections_active, (unsigned long long)w->sessions_active,
                   (unsigned long long)w->sessions_attached, (unsigned long long)w->chunks_total,
                   (unsigned long long)w->jobs_runs, (unsigned long long)w->jobs_running,
                   (unsigned long long)w->rss_bytes);
    }
    buf_puts(b, "]}");
}

/* Prometheus buckets: cumulative counts at fixed le bounds, read off the fine
 * log buckets (a fine bucket counts under the first le >= its upper bound). */
static const double prom_le[] = {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

static void prom_hist_lines(struct buf *b, const char *name, const struct hist *h, const char *w) {
    uint64_t cum = 0;
    int fi = 0;
    for (size_t k = 0; k < sizeof prom_le / sizeof prom_le[0]; k++) {
        while (fi < HIST_BUCKETS && bucket_upper(fi) <= prom_le[k] * 1.0000001) cum += h->b[fi++];
        buf_printf(b, "asrd_%s_bucket{worker=\"%s\",le=\"%g\"} %llu\n", name, w, prom_le[k] / 1000.0,
                   (unsigned long long)cum);
    }
    buf_printf(b, "asrd_%s_bucket{worker=\"%s\",le=\"+Inf\"} %llu\n", name, w, (unsigned long long)h->count);
    buf_printf(b, "asrd_%s_sum{worker=\"%s\"} %.6f\n", name, w, h->sum_ms / 1000.0);
    buf_printf(b, "asrd_%s_count{worker=\"%s\"} %llu\n", name, w, (unsigned long long)h->count);
}

static void prom_head(struct buf *b, const char *type, const char *name, const char *help) {
    buf_printf(b, "# HELP asrd_%s %s\n# TYPE asrd_%s %s\n", name, help, name, type);
}

/* One family, one sample per worker; EXPR reads M (that worker's metrics). */
#define PROM_EACH(type, name, help, EXPR)                                                  \
    do {                                                                                  \
        prom_head(b, type, name, help);                                                   \
        for (int k_ = 0; k_ < nv; k_++) {                                                 \
            const struct metrics *M = v[k_].m;                                            \
            buf_printf(b, "asrd_%s{worker=\"%s\"} %.17g\n", name, v[k_].wid, (double)(EXPR)); \
        }                                                                                 \
    } while (0)
#define EACH_WORKER \
    for (int k_ = 0, once_ = 1; k_ < nv; k_++, once_ = 1) \
        for (const struct metrics *M = v[k_].m; once_; once_ = 0) \
            for (const char *w = v[k_].wid; once_; once_ = 0)
#define PROM_HIST(name, help, field)                                                      \
    do {                                                                                  \
        prom_head(b, "histogram", name, help);                                            \
        for (int k_ = 0; k_ < nv; k_++) prom_hist_lines(b, name, &v[k_].m->field, v[k_].wid); \
    } while (0)

static void render_prom(struct buf *b, const struct mview *v, int nv) {
    PROM_EACH("gauge", "connections_active", "Open client connections.", (double)M->connections_active);
    PROM_EACH("counter", "connections_total", "Client connections accepted.", (double)M->connections_total);
    PROM_EACH("counter", "connections_refused_total", "Connections refused at the connection limit.", (double)M->connections_refused);
    PROM_EACH("gauge", "sessions_active", "Streaming sessions, live or resumable.", (double)M->sessions_active);
    PROM_EACH("gauge", "sessions_attached", "Streaming sessions with a live connection.", (double)M->sessions_attached);
    PROM_EACH("gauge", "sessions_detached", "Streaming sessions dropped and resumable.", (double)M->sessions_detached);
    PROM_EACH("counter", "sessions_evicted_for_room_total", "Detached sessions ended to make room for a new live one.", (double)M->sessions_evicted_for_room);
    PROM_EACH("counter", "sessions_total", "Streaming sessions created.", (double)M->sessions_total);
    PROM_EACH("counter", "sessions_resumed_total", "Streaming sessions resumed.", (double)M->sessions_resumed);
    PROM_EACH("counter", "sessions_refused_total", "Sessions refused at the session limit.", (double)M->sessions_refused);
    buf_puts(b, "# HELP asrd_sessions_ended_total Sessions ended, by reason.\n# TYPE asrd_sessions_ended_total counter\n");
    EACH_WORKER for (int i = 0; i < END__N; i++)
        buf_printf(b, "asrd_sessions_ended_total{worker=\"%s\",reason=\"%s\"} %llu\n", w, end_names[i],
                   (unsigned long long)M->sessions_ended[i]);
    PROM_EACH("counter", "chunks_total", "Audio chunks received.", (double)M->chunks_total);
    PROM_EACH("counter", "partials_total", "Partial results sent.", (double)M->partials_total);
    PROM_EACH("counter", "partials_dropped_total", "Partials dropped from full send queues.", (double)M->partials_dropped);
    PROM_EACH("counter", "finals_total", "Final results sent.", (double)M->finals_total);
    PROM_EACH("counter", "bytes_in_total", "PCM bytes of accepted chunks.", (double)M->bytes_in);
    PROM_EACH("counter", "rest_chunks_total", "Chunks of REST uploads fed to their sessions.", (double)M->rest_chunks);
    PROM_EACH("counter", "rest_audio_seconds_total", "Seconds of REST audio fed to sessions.", (double)M->rest_audio_ms / 1000.0);
    buf_puts(b, "# HELP asrd_rest_failed_total REST transcriptions that failed, by cause.\n# TYPE asrd_rest_failed_total counter\n");
    EACH_WORKER for (int i = 0; i < RFAIL__N; i++)
        buf_printf(b, "asrd_rest_failed_total{worker=\"%s\",cause=\"%s\"} %llu\n", w, rest_fail_names[i],
                   (unsigned long long)M->rest_failed[i]);
    buf_puts(b, "# HELP asrd_openai_refused_total OpenAI-compatible transcriptions refused, by cause.\n"
                "# TYPE asrd_openai_refused_total counter\n");
    EACH_WORKER for (int i = 0; i < OREF__N; i++)
        buf_printf(b, "asrd_openai_refused_total{worker=\"%s\",cause=\"%s\"} %llu\n", w, openai_refusal_names[i],
                   (unsigned long long)M->openai_refused[i]);
    buf_puts(b, "# HELP asrd_errors_total Streaming error answers, by code.\n# TYPE asrd_errors_total counter\n");
    EACH_WORKER for (int i = 0; i < MERR__N; i++)
        buf_printf(b, "asrd_errors_total{worker=\"%s\",code=\"%s\"} %llu\n", w, err_names[i],
                   (unsigned long long)M->errors[i]);
    buf_puts(b, "# HELP asrd_ws_close_total WebSocket close codes sent.\n# TYPE asrd_ws_close_total counter\n");
    EACH_WORKER for (int i = 0; i < METRIC_CLOSE_CODES; i++) {
        if (close_codes[i] > 0)
            buf_printf(b, "asrd_ws_close_total{worker=\"%s\",code=\"%d\"} %llu\n", w, close_codes[i],
                       (unsigned long long)M->close_codes[i]);
        else
            buf_printf(b, "asrd_ws_close_total{worker=\"%s\",code=\"%s\"} %llu\n", w,
                       close_codes[i] < 0 ? "other" : "none", (unsigned long long)M->close_codes[i]);
    }
    buf_puts(b, "# HELP asrd_requests_total HTTP responses, by route and status.\n# TYPE asrd_requests_total counter\n");
    EACH_WORKER for (int r = 0; r < ROUTE__N; r++)
        for (int s = 0; s < METRIC_STATUSES; s++)
            if (M->requests[r][s])
                buf_printf(b, "asrd_requests_total{worker=\"%s\",route=\"%s\",status=\"%d\"} %llu\n", w,
                           route_names[r], status_codes[s], (unsigned long long)M->requests[r][s]);
    PROM_EACH("gauge", "jobs_queue_depth", "Job runs waiting for a worker (the shared queue: do not sum over workers).", (double)M->jobs_queue_depth);
    PROM_EACH("gauge", "jobs_pending", "Job runs taken by a worker and not finished (the shared queue).", (double)M->jobs_pending);
    PROM_EACH("gauge", "jobs_spool_bytes", "Job audio spooled in Redis (the shared queue).", (double)M->jobs_spool_bytes);
    PROM_EACH("gauge", "jobs_dead_letters", "Entries in the jobs' dead-letter stream (the shared queue).", (double)M->jobs_dead_letters);
    PROM_EACH("gauge", "jobs_webhooks_due", "Webhooks not yet delivered (the shared queue).", (double)M->jobs_hooks_due);
    PROM_EACH("gauge", "jobs_running", "Job runs in progress on this worker.", (double)M->jobs_running);
    PROM_EACH("counter", "jobs_submitted_total", "Jobs accepted.", (double)M->jobs_submitted);
    PROM_EACH("counter", "jobs_cache_hits_total", "Jobs answered from the result cache.", (double)M->jobs_cache_hits);
    PROM_EACH("counter", "jobs_cache_misses_total", "Jobs queued as a new run.", (double)M->jobs_new_runs);
    PROM_EACH("counter", "jobs_dedup_joins_total", "Jobs that joined an identical run queued or running.", (double)M->jobs_dedup_joins);
    PROM_EACH("counter", "jobs_idempotent_replays_total", "Idempotency-Key replays answered with the earlier job.", (double)M->jobs_idem_replays);
    PROM_EACH("counter", "jobs_refused_total", "Job submissions refused: queue or spool full (503).", (double)M->jobs_refused_full);
    PROM_EACH("counter", "jobs_rate_limited_total", "Job API requests refused by a rate limit (429).", (double)M->jobs_rate_limited);
    PROM_EACH("counter", "jobs_runs_total", "Job runs this worker finished.", (double)M->jobs_runs);
    PROM_EACH("counter", "jobs_completed_total", "Job runs completed here.", (double)M->jobs_completed);
    PROM_EACH("counter", "jobs_failed_total", "Job runs failed here.", (double)M->jobs_failed);
    PROM_EACH("counter", "jobs_dead_total", "Job runs dead-lettered after their delivery limit.", (double)M->jobs_dead);
    PROM_EACH("counter", "jobs_reclaimed_total", "Job runs taken over from a worker whose lease ran out.", (double)M->jobs_reclaimed);
    PROM_EACH("counter", "jobs_audio_seconds_total", "Audio of completed job runs.", (double)M->jobs_audio_ms / 1000.0);
    PROM_EACH("counter", "jobs_run_seconds_total", "Wall time of completed job runs.", (double)M->jobs_run_ms / 1000.0);
    buf_puts(b, "# HELP asrd_webhooks_total Webhook delivery attempts, by outcome.\n# TYPE asrd_webhooks_total counter\n");
    EACH_WORKER for (int i = 0; i < HOOK__N; i++)
        buf_printf(b, "asrd_webhooks_total{worker=\"%s\",outcome=\"%s\"} %llu\n", w, hook_names[i],
                   (unsigned long long)M->hooks[i]);
    PROM_HIST("job_wait_seconds", "Job runs: queued to first started.", lat_job_wait);
    PROM_HIST("job_run_seconds", "Job runs: started to finished on this worker.", lat_job_run);
    PROM_HIST("job_submit_seconds", "POST /v1/jobs: request to answer.", lat_job_submit);
    PROM_EACH("counter", "read_pauses_total", "Times a session's socket stopped being read (engine backlog).", (double)M->ws_paused);
    PROM_EACH("counter", "ws_pings_total", "WebSocket pings sent (liveness).", (double)M->ws_pings);
    PROM_EACH("counter", "ws_pongs_total", "WebSocket pongs received that answered the last ping.", (double)M->ws_pongs);
    PROM_EACH("counter", "ws_ping_timeouts_total", "Connections reset because a pong was missing (dead or stuck peer).", (double)M->ws_ping_timeouts);
    PROM_EACH("counter", "auth_tokens_issued_total", "Access tokens minted.", (double)M->auth_tokens_issued);
    buf_puts(b, "# HELP asrd_auth_refused_total Credentials refused, by cause.\n# TYPE asrd_auth_refused_total counter\n");
    EACH_WORKER for (int i = 0; i < AREF__N; i++)
        buf_printf(b, "asrd_auth_refused_total{worker=\"%s\",cause=\"%s\"} %llu\n", w, auth_refusal_names[i],
                   (unsigned long long)M->auth_refused[i]);
    PROM_EACH("counter", "cors_preflights_total", "CORS preflights answered.", (double)M->cors_preflights);
    PROM_EACH("counter", "cors_refused_total", "Requests refused: Origin not in ASR_CORS_ORIGINS.", (double)M->cors_refused);
    PROM_EACH("counter", "rest_inputs_truncated_total", "Uploads whose header states more audio than their bytes hold.", (double)M->rest_truncated);
    PROM_EACH("counter", "rest_inputs_trailing_total", "Uploads with bytes after the audio their header describes.", (double)M->rest_trailing);
    {
        static const char *const pools[2] = {"uploads", "messages"};
        prom_head(b, "gauge", "memory_bytes", "Bytes charged to a memory budget now (uploads: bodies and decoding; messages: partial WebSocket messages).");
        EACH_WORKER for (int i = 0; i < 2; i++)
            buf_printf(b, "asrd_memory_bytes{worker=\"%s\",pool=\"%s\"} %llu\n", w, pools[i],
                       (unsigned long long)(i ? M->mem_message_bytes : M->mem_upload_bytes));
        prom_head(b, "gauge", "memory_limit_bytes", "Bound of a memory budget (0 = none).");
        EACH_WORKER for (int i = 0; i < 2; i++)
            buf_printf(b, "asrd_memory_limit_bytes{worker=\"%s\",pool=\"%s\"} %llu\n", w, pools[i],
                       (unsigned long long)(i ? M->mem_message_limit : M->mem_upload_limit));
        prom_head(b, "gauge", "memory_peak_bytes", "Most bytes charged to a memory budget since start.");
        EACH_WORKER for (int i = 0; i < 2; i++)
            buf_printf(b, "asrd_memory_peak_bytes{worker=\"%s\",pool=\"%s\"} %llu\n", w, pools[i],
                       (unsigned long long)(i ? M->mem_message_peak : M->mem_upload_peak));
        prom_head(b, "counter", "memory_refused_total", "Charges a memory budget refused (503 for uploads, close 1013 for messages).");
        EACH_WORKER for (int i = 0; i < 2; i++)
            buf_printf(b, "asrd_memory_refused_total{worker=\"%s\",pool=\"%s\"} %llu\n", w, pools[i],
                       (unsigned long long)(i ? M->mem_message_refused : M->mem_upload_refused));
    }
    PROM_EACH("gauge", "store_up", "1 while the session store is available.", M->store_up);
    PROM_EACH("counter", "store_ops_total", "Session store operations started.", M->store_ops);
    PROM_EACH("counter", "store_errors_total", "Session store operations that failed (unavailable or timed out).", M->store_errors);
    PROM_EACH("counter", "store_reconnects_total", "Session store reconnections.", M->store_reconnects);
    PROM_EACH("counter", "store_snapshot_writes_total", "Session snapshots written to a shared store.", M->store_writes);
    PROM_EACH("counter", "store_republished_total", "Session records written again after the store (re)connected.", M->store_republished);
    PROM_EACH("counter", "engine_requests_total", "Engine requests made.", (double)M->engine_requests);
    PROM_EACH("counter", "engine_errors_total", "Engine requests that failed.", (double)M->engine_errors);
    PROM_EACH("counter", "windows_skipped_total", "Partial windows skipped under load (partial server_busy).", (double)M->windows_skipped);
    PROM_EACH("counter", "utterances_cut_total", "Utterances ended at ASR_MAX_UTTERANCE_MS.", (double)M->utterances_cut);
    PROM_EACH("gauge", "pool_threads", "Inference pool threads (windowed engines).", (double)M->pool_threads);
    PROM_EACH("gauge", "pool_busy_threads", "Inference pool threads decoding now.", (double)M->pool_busy);
    PROM_EACH("gauge", "pool_queue_depth", "Inference jobs waiting.", (double)M->pool_queued);
    PROM_EACH("gauge", "pool_queue_finals", "Inference jobs waiting that are finals (never refused).", (double)M->pool_queued_finals);
    PROM_EACH("gauge", "pool_queue_max", "Bound of waiting inference jobs (finals excepted).", (double)M->pool_queue_max);
    PROM_EACH("counter", "pool_jobs_total", "Inference jobs decoded.", (double)M->pool_completed);
    PROM_EACH("counter", "pool_jobs_failed_total", "Inference jobs the engine failed.", (double)M->pool_failed);
    PROM_EACH("counter", "pool_refused_total", "Inference jobs refused: queue full.", (double)M->pool_refused);
    PROM_EACH("counter", "pool_evicted_total", "Waiting windows given up for a less-served stream's window.",
              (double)M->pool_evicted);
    PROM_EACH("counter", "pool_audio_seconds_total", "Audio decoded by the inference pool.", (double)M->pool_audio_ms / 1000.0);
    PROM_EACH("counter", "pool_busy_seconds_total", "Thread time the inference pool spent decoding.", (double)M->pool_busy_ms / 1000.0);
    PROM_EACH("counter", "feedback_streams_total", "Streams given an expected text (reading feedback).", (double)M->feedback_streams);
    PROM_EACH("counter", "feedback_rest_total", "REST transcriptions with an expected text.", (double)M->feedback_rest);
    PROM_EACH("counter", "feedback_updates_total", "Partials and finals that carried word_feedback.", (double)M->feedback_updates);
    buf_puts(b, "# HELP asrd_verifications_total Verifications at the end of reading sessions, by result.\n"
                "# TYPE asrd_verifications_total counter\n");
    EACH_WORKER for (int i = 0; i < METRIC_VERIFY__N; i++)
        buf_printf(b, "asrd_verifications_total{worker=\"%s\",result=\"%s\"} %llu\n", w, verify_names[i],
                   (unsigned long long)M->verifications[i]);
    PROM_EACH("gauge", "streaming_latency_avg_seconds", "Mean of the last 1000 stream latencies (partial total, windowed: without the buffer part).", M->stream_lat_avg_ms / 1000.0);
    PROM_EACH("gauge", "streaming_latency_p95_seconds", "95th percentile of the last 1000 stream latencies.", M->stream_lat_p95_ms / 1000.0);
    PROM_EACH("gauge", "streaming_latency_samples", "Stream latencies behind the streaming latency gauges.", (double)M->stream_lat_samples);
    PROM_EACH("counter", "dropped_segments_total", "Windows skipped under load plus chunks refused with SERVER_BUSY.", (double)(M->windows_skipped + M->errors[MERR_SERVER_BUSY]));
    PROM_EACH("gauge", "adaptive_window_seconds", "The partial window new streaming sessions get (0: none).", (double)M->adaptive_window_ms / 1000.0);
    PROM_EACH("gauge", "vad_speech_ratio", "Share of VAD frames classified as speech.", M->vad_frames ? (double)M->vad_speech_frames / (double)M->vad_frames : 0.0);
    PROM_HIST("chunk_queue_seconds", "Chunk arrival to engine submit.", lat_queue);
    PROM_HIST("chunk_engine_seconds", "Engine submit to result.", lat_engine);
    PROM_HIST("chunk_latency_seconds", "Chunk arrival to answer queued.", lat_total);
    PROM_HIST("rest_latency_seconds", "REST transcription request to response.", lat_rest);
    PROM_EACH("counter", "loop_iterations_total", "Event loop iterations.", (double)M->loop_iterations);
    PROM_HIST("loop_busy_seconds", "Work per event loop iteration (callbacks and flushes, not waiting for events).", loop_busy);
    PROM_EACH("gauge", "loop_utilization", "Share of the last second the event loop was not waiting for events.", M->loop_utilization);
    PROM_EACH("gauge", "process_resident_memory_bytes", "Resident set size.", (double)M->rss_bytes);
    PROM_EACH("gauge", "process_open_fds", "Open file descriptors.", (double)M->open_fds);
    PROM_EACH("counter", "log_lines_dropped_total", "Log lines dropped because stderr would block.", (double)M->log_dropped);
    PROM_EACH("gauge", "uptime_seconds", "Seconds since start.", (double)(util_wall_ms() - M->start_ms) / 1000.0);
    prom_head(b, "gauge", "build_info", "Build information.");
    for (int k = 0; k < nv; k++)
        buf_printf(b, "asrd_build_info{worker=\"%s\",version=\"%s\"} 1\n", v[k].wid, ASRD_VERSION);
}
#undef EACH_WORKER
#undef PROM_EACH
#undef PROM_HIST

/* ---- workers' metrics in shared memory ---------------------------------- */

/* One slot per worker (two per master slot: the old and the new worker of a
 * rolling restart). The owner writes its whole struct each second under a
 * seqlock; readers retry on a torn copy. pid 0 = empty (the master clears a
 * slot when it reaps the worker). */
struct metrics_slot {
    uint64_t seq;                     /* odd while being written */
    int32_t  pid;
    char     wid[64];
    struct metrics m;
};

static struct metrics_slot *shared_;  /* MAP_SHARED region, nshared_ slots; NULL = stand-alone */
static int nshared_;
static int self_slot_ = -1;
static char self_wid_[64] = "w0";

int metrics_shared_create(int n) {
    void *p = mmap(NULL, sizeof(struct metrics_slot) * (size_t)n, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return ASR_ENOMEM;
    shared_ = p;
    nshared_ = n;
    return 0;
}

void metrics_shared_bind(int slot) {
    if (!shared_ || slot < 0 || slot >= nshared_) return;
    self_slot_ = slot;
    __atomic_store_n(&shared_[slot].pid, 0, __ATOMIC_RELEASE);
}

void metrics_shared_clear(int slot) {
    if (!shared_ || slot < 0 || slot >= nshared_) return;
    __atomic_store_n(&shared_[slot].pid, 0, __ATOMIC_RELEASE);
}

void metrics_set_worker_id(const char *id) { snprintf(self_wid_, sizeof self_wid_, "%s", id); }

static void fill_process(struct metrics *m) {
    m->rss_bytes = proc_.rss_bytes;
    m->open_fds = proc_.open_fds;
    m->log_dropped = log_dropped();
    rates(&m->chunks_per_s, &m->requests_per_s);
}

static void publish(void) {
    if (self_slot_ < 0) return;
    struct metrics_slot *s = &shared_[self_slot_];
    fill_process(&metrics);
    uint64_t q = s->seq;
    __atomic_store_n(&s->seq, q + 1, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    memcpy(&s->m, &metrics, sizeof metrics);
    snprintf(s->wid, sizeof s->wid, "%s", self_wid_);
    __atomic_store_n(&s->pid, (int32_t)getpid(), __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, q + 2, __ATOMIC_RELEASE);
}

/* Copies slot i if it holds a live worker other than this one. */
static int read_slot(int i, struct metrics *out, char *wid, int32_t *pid) {
    struct metrics_slot *s = &shared_[i];
    for (int tries = 0; tries < 100; tries++) {
        uint64_t a = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        if (a & 1) continue;
        int32_t p = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
        if (p == 0 || p == getpid()) return 0;
        memcpy(out, &s->m, sizeof *out);
        memcpy(wid, s->wid, 64);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) == a) {
            wid[63] = 0;
            *pid = p;
            return 1;
        }
    }
    return 0;
}

static void hist_sum(struct hist *a, const struct hist *b) {
    a->count += b->count;
    a->sum_ms += b->sum_ms;
    for (int i = 0; i < HIST_BUCKETS; i++) a->b[i] += b->b[i];
}

/* Adds every counter and gauge of b to a. */
static void metrics_sum(struct metrics *a, const struct metrics *b) {
#define S_(f) a->f += b->f
#define SA_(f) for (size_t i_ = 0; i_ < sizeof a->f / sizeof a->f[0]; i_++) a->f[i_] += b->f[i_]
    S_(connections_active); S_(connections_total); S_(connections_refused);
    S_(sessions_active); S_(sessions_attached); S_(sessions_detached); S_(sessions_evicted_for_room); S_(sessions_total); S_(sessions_resumed); S_(sessions_refused);
    SA_(sessions_ended);
    S_(chunks_total); S_(chunks_accepted); S_(partials_total); S_(partials_dropped); S_(finals_total);
    S_(speech_started_total); S_(bytes_in); S_(audio_ms_in);
    SA_(errors); SA_(close_codes);
    S_(rest_chunks); S_(rest_audio_ms); SA_(rest_failed); SA_(openai_refused); S_(rest_truncated); S_(rest_trailing);
    S_(mem_upload_bytes); S_(mem_upload_peak); S_(mem_upload_limit); S_(mem_upload_refused);
    S_(mem_message_bytes); S_(mem_message_peak); S_(mem_message_limit); S_(mem_message_refused);
    S_(requests_total);
    for (int r = 0; r < ROUTE__N; r++) SA_(requests[r]);
    S_(store_up); S_(store_ops); S_(store_errors); S_(store_timeouts); S_(store_reconnects); S_(store_writes);
    S_(store_republished);
    S_(engine_requests); S_(engine_errors); S_(windows_skipped); S_(utterances_cut);
    S_(feedback_streams); S_(feedback_rest); S_(feedback_updates); SA_(verifications);
    /* stream_lat_*, adaptive_window_ms: per worker (streaming_obj combines them) */
    S_(pool_threads); S_(pool_busy); S_(pool_queued); S_(pool_queued_finals); S_(pool_queue_max); S_(pool_completed); S_(pool_failed);
    S_(pool_refused); S_(pool_evicted); S_(pool_audio_ms); S_(pool_busy_ms); S_(vad_frames); S_(vad_speech_frames); S_(ws_paused);
    S_(ws_pings); S_(ws_pongs); S_(ws_ping_timeouts);
    S_(rss_bytes); S_(open_fds); S_(log_dropped); S_(chunks_per_s); S_(requests_per_s);
    S_(auth_tokens_issued); SA_(auth_refused); S_(cors_preflights); S_(cors_refused);
    S_(jobs_submitted); S_(jobs_new_runs); S_(jobs_dedup_joins); S_(jobs_cache_hits); S_(jobs_idem_replays);
    S_(jobs_idem_conflicts); S_(jobs_refused_full); S_(jobs_rate_limited); S_(jobs_runs); S_(jobs_completed);
    S_(jobs_failed); S_(jobs_abandoned); S_(jobs_dead); S_(jobs_reclaimed); S_(jobs_released); S_(jobs_lost_lease);
    S_(jobs_running); S_(jobs_audio_ms); S_(jobs_run_ms); SA_(jobs_fetch); SA_(hooks);
    hist_sum(&a->lat_job_wait, &b->lat_job_wait); hist_sum(&a->lat_job_run, &b->lat_job_run);
    hist_sum(&a->lat_job_submit, &b->lat_job_submit);
    hist_sum(&a->lat_queue, &b->lat_queue); hist_sum(&a->lat_engine, &b->lat_engine);
    hist_sum(&a->lat_total, &b->lat_total); hist_sum(&a->lat_rest, &b->lat_rest);
    hist_sum(&a->loop_busy, &b->loop_busy); S_(loop_iterations);
    if (b->start_ms && (a->start_ms == 0 || b->start_ms < a->start_ms)) a->start_ms = b->start_ms;
#undef S_
#undef SA_
}

/* This worker (live) first, then the other live workers. */
#define MAX_VIEWS 520
static struct metrics others_[MAX_VIEWS];
static char other_wid_[MAX_VIEWS][64];

static int collect(struct mview *v) {
    fill_process(&metrics);
    int n = 0;
    v[n++] = (struct mview){.wid = self_wid_, .m = &metrics, .pid = (int)getpid()};
    for (int i = 0; shared_ && i < nshared_ && n < MAX_VIEWS; i++) {
        int32_t pid;
        if (i == self_slot_ || !read_slot(i, &others_[n], other_wid_[n], &pid)) continue;
        v[n] = (struct mview){.wid = other_wid_[n], .m = &others_[n], .pid = pid};
        n++;
    }
    return n;
}

int metrics_shared_peers(struct metrics_peer *out, int max) {
    static struct metrics m;
    int n = 0;
    for (int i = 0; shared_ && i < nshared_ && n < max; i++) {
        char wid[64];
        int32_t pid;
        if (i == self_slot_ || !read_slot(i, &m, wid, &pid)) continue;
        out[n] = (struct metrics_peer){.pid = pid, .sessions_active = m.sessions_active,
                                       .sessions_detached = m.sessions_detached,
                                       .connections_active = m.connections_active};
        memcpy(out[n].worker_id, wid, sizeof out[n].worker_id);
        n++;
    }
    return n;
}

int metrics_json(struct buf *b, const char *worker_id) {
    static struct mview v[MAX_VIEWS];
    int nv = collect(v);
    static struct metrics sum;
    memset(&sum, 0, sizeof sum);
    for (int k = 0; k < nv; k++) metrics_sum(&sum, v[k].m);
    render_json(b, worker_id, &sum, v, nv);
    return b->len ? 0 : ASR_ENOMEM;
}

int metrics_streaming_json(struct buf *b) {
    static struct mview v[MAX_VIEWS];
    int nv = collect(v);
    static struct metrics sum;
    memset(&sum, 0, sizeof sum);
    for (int k = 0; k < nv; k++) metrics_sum(&sum, v[k].m);
    streaming_obj(b, &sum, v, nv);
    return b->len ? 0 : ASR_ENOMEM;
}

int metrics_prometheus(struct buf *b, const char *worker_id) {
    static struct mview v[MAX_VIEWS];
    int nv = collect(v);
    (void)worker_id;
    render_prom(b, v, nv);
    return b->len ? 0 : ASR_ENOMEM;
}
