#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

struct metrics metrics;

/* Bucket i covers (BASE * R^(i-1), BASE * R^i] ms, with R = 2^(1/8): from
 * 1 us up to about 1e5 ms over HIST_BUCKETS buckets. */
#define HIST_BASE_MS 0.001
#define HIST_PER_OCTAVE 8.0

static const int status_codes[METRIC_STATUSES] = {101, 200, 400, 401, 404, 405, 408, 409,
                                                  411, 413, 415, 429, 431, 500, 503, 0};
static const int close_codes[METRIC_CLOSE_CODES] = {1000, 1001, 1008, 1009, 1011, 1013, -1, 0};
static const char *const err_names[MERR__N] = {"INVALID_MESSAGE", "INVALID_AUDIO", "CHUNK_TOO_LARGE",
                                               "OUT_OF_ORDER", "RATE_LIMITED", "SERVER_BUSY",
                                               "MODEL_ERROR", "INTERNAL"};
static const char *const route_names[ROUTE__N] = {"transcribe", "stream", "health",
                                                  "metrics_json", "metrics_prom", "other"};
static const char *const end_names[END__N] = {"stop", "idle", "expired", "slow_client",
                                              "policy", "too_big", "shutdown", "error"};

/* Per-second rates: a ring of samples taken by metrics_tick(). */
#define RATE_WINDOW 11
static struct { uint64_t t_ms, chunks, requests; } samples[RATE_WINDOW];
static unsigned sample_head, sample_count;

void metrics_init(void) {
    memset(&metrics, 0, sizeof metrics);
    metrics.start_ms = util_wall_ms();
    sample_head = sample_count = 0;
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

void metrics_tick(void) {
    samples[sample_head].t_ms = util_wall_ms();
    samples[sample_head].chunks = metrics.chunks_total;
    samples[sample_head].requests = metrics.requests_total;
    sample_head = (sample_head + 1) % RATE_WINDOW;
    if (sample_count < RATE_WINDOW) sample_count++;
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

static uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    uint64_t n = 0;
    if (!d) return 0;
    while (readdir(d)) n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ".", ".." and the DIR's own fd */
}

static void json_hist(struct buf *b, const char *name, const struct hist *h) {
    buf_printf(b, "\"%s\":{\"count\":%llu,\"mean\":%.3f,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"p999\":%.3f}",
               name, (unsigned long long)h->count, h->count ? h->sum_ms / (double)h->count : 0.0,
               hist_percentile(h, 50), hist_percentile(h, 95), hist_percentile(h, 99),
               hist_percentile(h, 99.9));
}

int metrics_json(struct buf *b, const char *worker_id) {
    double cps, rps;
    rates(&cps, &rps);
    uint64_t sum_err = 0;
    for (int i = 0; i < MERR__N; i++) sum_err += metrics.errors[i];
    buf_puts(b, "{\"worker_id\":");
    buf_json_str(b, worker_id, strlen(worker_id));
    buf_printf(b, ",\"uptime_s\":%.1f", (double)(util_wall_ms() - metrics.start_ms) / 1000.0);
    buf_printf(b, ",\"connections\":{\"active\":%llu,\"total\":%llu,\"refused\":%llu}",
               (unsigned long long)metrics.connections_active, (unsigned long long)metrics.connections_total,
               (unsigned long long)metrics.connections_refused);
    buf_printf(b, ",\"sessions\":{\"active\":%llu,\"attached\":%llu,\"total\":%llu,\"resumed\":%llu,\"refused\":%llu,\"ended\":{",
               (unsigned long long)metrics.sessions_active, (unsigned long long)metrics.sessions_attached,
               (unsigned long long)metrics.sessions_total, (unsigned long long)metrics.sessions_resumed,
               (unsigned long long)metrics.sessions_refused);
    for (int i = 0; i < END__N; i++)
        buf_printf(b, "%s\"%s\":%llu", i ? "," : "", end_names[i], (unsigned long long)metrics.sessions_ended[i]);
    buf_printf(b, "}},\"chunks\":{\"total\":%llu,\"accepted\":%llu,\"per_sec\":%.2f}",
               (unsigned long long)metrics.chunks_total, (unsigned long long)metrics.chunks_accepted, cps);
    buf_printf(b, ",\"partials\":{\"total\":%llu,\"dropped\":%llu}", (unsigned long long)metrics.partials_total,
               (unsigned long long)metrics.partials_dropped);
    buf_printf(b, ",\"finals\":{\"total\":%llu},\"speech_started\":{\"total\":%llu}",
               (unsigned long long)metrics.finals_total, (unsigned long long)metrics.speech_started_total);
    buf_printf(b, ",\"bytes_in\":{\"total\":%llu},\"audio_ms_in\":{\"total\":%llu}",
               (unsigned long long)metrics.bytes_in, (unsigned long long)metrics.audio_ms_in);
    buf_printf(b, ",\"requests\":{\"total\":%llu,\"per_sec\":%.2f,\"by_route\":{",
               (unsigned long long)metrics.requests_total, rps);
    for (int r = 0; r < ROUTE__N; r++) {
        buf_printf(b, "%s\"%s\":{", r ? "," : "", route_names[r]);
        int first = 1;
        for (int s = 0; s < METRIC_STATUSES; s++) {
            if (!metrics.requests[r][s]) continue;
            buf_printf(b, "%s\"%d\":%llu", first ? "" : ",", status_codes[s] ? status_codes[s] : 0,
                       (unsigned long long)metrics.requests[r][s]);
            first = 0;
        }
        buf_puts(b, "}");
    }
    buf_printf(b, "}},\"errors\":{\"total\":%llu", (unsigned long long)sum_err);
    for (int i = 0; i < MERR__N; i++)
        buf_printf(b, ",\"%s\":%llu", err_names[i], (unsigned long long)metrics.errors[i]);
    buf_puts(b, "},\"close_codes\":{");
    for (int i = 0; i < METRIC_CLOSE_CODES; i++) {
        const char *name = close_codes[i] > 0 ? NULL : (close_codes[i] < 0 ? "other" : "none");
        if (name) buf_printf(b, "%s\"%s\":%llu", i ? "," : "", name, (unsigned long long)metrics.close_codes[i]);
        else buf_printf(b, "%s\"%d\":%llu", i ? "," : "", close_codes[i], (unsigned long long)metrics.close_codes[i]);
    }
    buf_printf(b, "},\"backpressure\":{\"read_pauses\":%llu}", (unsigned long long)metrics.ws_paused);
    buf_printf(b, ",\"engine\":{\"requests\":%llu,\"errors\":%llu}", (unsigned long long)metrics.engine_requests,
               (unsigned long long)metrics.engine_errors);
    buf_printf(b, ",\"vad\":{\"frames\":%llu,\"speech_frames\":%llu,\"speech_ratio\":%.4f}",
               (unsigned long long)metrics.vad_frames, (unsigned long long)metrics.vad_speech_frames,
               metrics.vad_frames ? (double)metrics.vad_speech_frames / (double)metrics.vad_frames : 0.0);
    buf_puts(b, ",\"latency_ms\":{");
    json_hist(b, "chunk", &metrics.lat_total);
    buf_puts(b, ",");
    json_hist(b, "chunk_queue", &metrics.lat_queue);
    buf_puts(b, ",");
    json_hist(b, "chunk_engine", &metrics.lat_engine);
    buf_puts(b, ",");
    json_hist(b, "rest", &metrics.lat_rest);
    buf_printf(b, "},\"process\":{\"rss_bytes\":%llu,\"open_fds\":%llu,\"log_lines_dropped\":%llu}}",
               (unsigned long long)rss_bytes(), (unsigned long long)open_fds(),
               (unsigned long long)log_dropped());
    return b->len ? 0 : ASR_ENOMEM;
}

/* Prometheus buckets: cumulative counts at fixed le bounds, read off the fine
 * log buckets (a fine bucket counts under the first le >= its upper bound). */
static const double prom_le[] = {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

static void prom_hist(struct buf *b, const char *name, const char *help, const struct hist *h, const char *w) {
    buf_printf(b, "# HELP asrd_%s %s\n# TYPE asrd_%s histogram\n", name, help, name);
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

static void prom_one(struct buf *b, const char *type, const char *name, const char *help, const char *w,
                     double v) {
    buf_printf(b, "# HELP asrd_%s %s\n# TYPE asrd_%s %s\nasrd_%s{worker=\"%s\"} %.17g\n", name, help, name, type,
               name, w, v);
}

int metrics_prometheus(struct buf *b, const char *w) {
    prom_one(b, "gauge", "connections_active", "Open client connections.", w, (double)metrics.connections_active);
    prom_one(b, "counter", "connections_total", "Client connections accepted.", w, (double)metrics.connections_total);
    prom_one(b, "counter", "connections_refused_total", "Connections refused at the connection limit.", w,
             (double)metrics.connections_refused);
    prom_one(b, "gauge", "sessions_active", "Streaming sessions, live or resumable.", w, (double)metrics.sessions_active);
    prom_one(b, "gauge", "sessions_attached", "Streaming sessions with a live connection.", w,
             (double)metrics.sessions_attached);
    prom_one(b, "counter", "sessions_total", "Streaming sessions created.", w, (double)metrics.sessions_total);
    prom_one(b, "counter", "sessions_resumed_total", "Streaming sessions resumed.", w, (double)metrics.sessions_resumed);
    prom_one(b, "counter", "sessions_refused_total", "Sessions refused at the session limit.", w,
             (double)metrics.sessions_refused);
    buf_puts(b, "# HELP asrd_sessions_ended_total Sessions ended, by reason.\n# TYPE asrd_sessions_ended_total counter\n");
    for (int i = 0; i < END__N; i++)
        buf_printf(b, "asrd_sessions_ended_total{worker=\"%s\",reason=\"%s\"} %llu\n", w, end_names[i],
                   (unsigned long long)metrics.sessions_ended[i]);
    prom_one(b, "counter", "chunks_total", "Audio chunks received.", w, (double)metrics.chunks_total);
    prom_one(b, "counter", "partials_total", "Partial results sent.", w, (double)metrics.partials_total);
    prom_one(b, "counter", "partials_dropped_total", "Partials dropped from full send queues.", w,
             (double)metrics.partials_dropped);
    prom_one(b, "counter", "finals_total", "Final results sent.", w, (double)metrics.finals_total);
    prom_one(b, "counter", "bytes_in_total", "PCM bytes of accepted chunks.", w, (double)metrics.bytes_in);
    buf_puts(b, "# HELP asrd_errors_total Streaming error answers, by code.\n# TYPE asrd_errors_total counter\n");
    for (int i = 0; i < MERR__N; i++)
        buf_printf(b, "asrd_errors_total{worker=\"%s\",code=\"%s\"} %llu\n", w, err_names[i],
                   (unsigned long long)metrics.errors[i]);
    buf_puts(b, "# HELP asrd_ws_close_total WebSocket close codes sent.\n# TYPE asrd_ws_close_total counter\n");
    for (int i = 0; i < METRIC_CLOSE_CODES; i++) {
        if (close_codes[i] > 0)
            buf_printf(b, "asrd_ws_close_total{worker=\"%s\",code=\"%d\"} %llu\n", w, close_codes[i],
                       (unsigned long long)metrics.close_codes[i]);
        else
            buf_printf(b, "asrd_ws_close_total{worker=\"%s\",code=\"%s\"} %llu\n", w,
                       close_codes[i] < 0 ? "other" : "none", (unsigned long long)metrics.close_codes[i]);
    }
    buf_puts(b, "# HELP asrd_requests_total HTTP responses, by route and status.\n# TYPE asrd_requests_total counter\n");
    for (int r = 0; r < ROUTE__N; r++)
        for (int s = 0; s < METRIC_STATUSES; s++)
            if (metrics.requests[r][s])
                buf_printf(b, "asrd_requests_total{worker=\"%s\",route=\"%s\",status=\"%d\"} %llu\n", w,
                           route_names[r], status_codes[s], (unsigned long long)metrics.requests[r][s]);
    prom_one(b, "counter", "read_pauses_total", "Times a session's socket stopped being read (engine backlog).", w,
             (double)metrics.ws_paused);
    prom_one(b, "counter", "engine_requests_total", "Engine requests made.", w, (double)metrics.engine_requests);
    prom_one(b, "counter", "engine_errors_total", "Engine requests that failed.", w, (double)metrics.engine_errors);
    prom_one(b, "gauge", "vad_speech_ratio", "Share of VAD frames classified as speech.", w,
             metrics.vad_frames ? (double)metrics.vad_speech_frames / (double)metrics.vad_frames : 0.0);
    prom_hist(b, "chunk_queue_seconds", "Chunk arrival to engine submit.", &metrics.lat_queue, w);
    prom_hist(b, "chunk_engine_seconds", "Engine submit to result.", &metrics.lat_engine, w);
    prom_hist(b, "chunk_latency_seconds", "Chunk arrival to answer queued.", &metrics.lat_total, w);
    prom_hist(b, "rest_latency_seconds", "REST transcription request to response.", &metrics.lat_rest, w);
    prom_one(b, "gauge", "process_resident_memory_bytes", "Resident set size.", w, (double)rss_bytes());
    prom_one(b, "gauge", "process_open_fds", "Open file descriptors.", w, (double)open_fds());
    prom_one(b, "counter", "log_lines_dropped_total", "Log lines dropped because stderr would block.", w,
             (double)log_dropped());
    prom_one(b, "gauge", "uptime_seconds", "Seconds since start.", w,
             (double)(util_wall_ms() - metrics.start_ms) / 1000.0);
    buf_printf(b, "# HELP asrd_build_info Build information.\n# TYPE asrd_build_info gauge\n"
                  "asrd_build_info{worker=\"%s\",version=\"%s\"} 1\n", w, ASRD_VERSION);
    return b->len ? 0 : ASR_ENOMEM;
}
