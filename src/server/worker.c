/* The worker: one libuv loop that owns the listener and every connection of
 * this process. Signal handlers only flag (libuv delivers them on the loop).
 * Drain (WORKER_SIG_DRAIN from the master: keeps accepting so health says
 * "draining"; WORKER_SIG_RETIRE from its rolling restart: stops accepting)
 * ends every session with a final and close 1001, and exits when the last
 * connection is gone or ASR_DRAIN_TIMEOUT_S passed. WORKER_SIG_STOP stops
 * at once. */
#include "server/worker.h"

#include <http_parser.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "net/conn.h"
#include "core/adaptive.h"
#include "core/engine.h"
#include "engines/registry.h"
#include "base/err.h"
#include "net/http.h"
#include "net/httpc.h"
#include "base/log.h"
#include "base/metrics.h"
#include "server/status.h"

/* ---- connections per client address (ASR_MAX_CONNECTIONS_PER_IP) ----
 * A chained hash of addresses with open connections; an entry lives while
 * its count is above zero. Only used when the limit is set. */
struct ip_slot {
    struct ip_slot *next;
    unsigned count;
    char ip[48];
};
#define IP_BUCKETS 4096
static struct ip_slot *ip_table[IP_BUCKETS];

static unsigned ip_hash(const char *ip) {
    unsigned h = 2166136261u;
    for (; *ip; ip++) h = (h ^ (unsigned char)*ip) * 16777619u;
    return h % IP_BUCKETS;
}

/* Counts c under its peer address; 0, or -1 when the address is at the limit. */
static int ip_take(struct conn *c, unsigned limit) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ip[48] = "";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
    else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
    else return 0;
    unsigned b = ip_hash(ip);
    struct ip_slot *e = ip_table[b];
    while (e && strcmp(e->ip, ip) != 0) e = e->next;
    if (e && e->count >= limit) return -1;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) return 0;
        snprintf(e->ip, sizeof e->ip, "%s", ip);
        e->next = ip_table[b];
        ip_table[b] = e;
    }
    e->count++;
    c->owner_slot = e;
    return 0;
}

static void ip_release(struct conn *c) {
    struct ip_slot *e = c->owner_slot;
    if (!e) return;
    c->owner_slot = NULL;
    if (--e->count) return;
    struct ip_slot **pp = &ip_table[ip_hash(e->ip)];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    free(e);
}

/* A draining worker exits once no connection is left and no job run is in
 * progress (runs finish; a run still going at the drain timeout goes back
 * to the queue at exit). */
static int drained(struct worker *w) {
    return w->api_env.draining && metrics.connections_active == 0 && api_jobs_running(w->api) == 0;
}

/* conn_set's hook: a connection was freed. */
static void on_conn_closed(void *ctx, struct conn *c) {
    struct worker *w = ctx;
    ip_release(c);
    metrics.connections_active--;
    if (drained(w)) uv_stop(w->loop);
}

static void on_connection(uv_stream_t *server, int status) {
    struct worker *w = server->data;
    if (status < 0) {
        /* EMFILE/ENFILE: libuv accepts and closes the pending connection
         * with its reserve fd (no busy loop); count it, log once a second */
        metrics.connections_refused++;
        static uint64_t last_log_ms;
        if (uv_now(w->loop) - last_log_ms >= 1000) {
            last_log_ms = uv_now(w->loop);
            struct log_line *l = log_begin(LOG_WARN, "accept failed");
            if (l) {
                log_str(l, "error", uv_strerror(status));
                log_u64(l, "open_connections", metrics.connections_active);
                log_end(l);
            }
        }
        return;
    }
    struct conn *c = conn_create(&w->conns);
    if (!c) return;
    metrics.connections_active++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    metrics.connections_total++;
    int per_ip_full = w->cfg->max_connections_per_ip > 0 &&
                      ip_take(c, (unsigned)w->cfg->max_connections_per_ip) != 0;
    if (per_ip_full || metrics.connections_active > (uint64_t)w->cfg->max_connections) {
        metrics.connections_refused++;
#define BUSY_BODY "{\"error\":{\"code\":\"CONNECTION_LIMIT\",\"message\":\"too many connections\"}}"
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                   "Retry-After: 1\r\nConnection: close\r\nContent-Length: 70\r\n\r\n" BUSY_BODY;
        _Static_assert(sizeof BUSY_BODY - 1 == 70, "Content-Length of the refusal");
        if (conn_write(c, busy, sizeof busy - 1) == 0) conn_close_after_write(c);
        else conn_close(c);
        return;
    }
    if (http_conn_start(c, &w->http) != 0) conn_close(c);
}

static void on_prepare(uv_prepare_t *h) {
    struct worker *w = h->data;
    conn_flush_all(&w->conns);
}
/* Loop accounting, once per iteration (metrics.loop_*): the time since the
 * previous check callback minus what libuv spent blocked in epoll_wait is
 * the work of one iteration: timers, reads, flushes. Two clock reads. */
static void on_check(uv_check_t *h) {
    struct worker *w = h->data;
    conn_flush_all(&w->conns);
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(w->loop);
    if (w->it_prev_ns) {
        uint64_t wall = now - w->it_prev_ns, waited = idle - w->it_prev_idle_ns;
        hist_add(&metrics.loop_busy, (double)(wall > waited ? wall - waited : 0) / 1e6);
        metrics.loop_iterations++;
    }
    w->it_prev_ns = now;
    w->it_prev_idle_ns = idle;
}

/* Share of the wall time since the previous tick not spent waiting. */
static void loop_utilization(struct worker *w) {
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(w->loop);
    if (w->tick_prev_ns && now > w->tick_prev_ns) {
        double u = 1.0 - (double)(idle - w->tick_prev_idle_ns) / (double)(now - w->tick_prev_ns);
        metrics.loop_utilization = u < 0 ? 0 : u > 1 ? 1 : u;
    }
    w->tick_prev_ns = now;
    w->tick_prev_idle_ns = idle;
}

/* While draining, requests are still answered (health: 503 draining, new
 * sessions: 503 DRAINING) so a balancer sees the state; keep-alive
 * connections idle between requests are closed each tick. */
static void close_idle_http(struct worker *w) {
    for (struct conn *c = w->conns.conns, *n; c; c = n) {
        n = c->next;
        if (c->kind == CONN_HTTP && !conn_closing(c)) http_conn_drain(c);
    }
}

/* ---- process figures: descriptors counted a slice per iteration --------- */

static void on_proc_idle(uv_idle_t *h);
static void budget_figures(struct worker *w);

static void proc_start(struct worker *w) {
    w->proc_busy = 1;
    metrics_fdwalk_begin(&w->proc_walk);
    uv_idle_start(&w->proc_idle, on_proc_idle);
}

static void on_proc_idle(uv_idle_t *h) {
    struct worker *w = h->data;
    if (!metrics_fdwalk_step(&w->proc_walk, METRICS_FDWALK_SLOTS)) return;
    uv_idle_stop(h);
    w->proc_busy = 0;
    struct metrics_proc p = {.rss_bytes = metrics_rss_bytes(), .open_fds = w->proc_walk.open};
    metrics_proc_set(&p);
    budget_figures(w);
    struct worker_proc_waiter *wt = w->proc_waiters;
    w->proc_waiters = w->proc_next;  /* they came during this count: the next one is theirs */
    w->proc_next = NULL;
    if (w->proc_waiters) proc_start(w);
    while (wt) {
        struct worker_proc_waiter *next = wt->next; /* cb may free wt */
        wt->cb(wt);
        wt = next;
    }
}

void worker_proc_init(struct worker *w) {
    uv_idle_init(w->loop, &w->proc_idle);
    w->proc_idle.data = w;
    struct metrics_proc proc = {.rss_bytes = metrics_rss_bytes()};
    metrics_fdwalk_begin(&w->proc_walk);    /* few descriptors yet: count at once */
    while (!metrics_fdwalk_step(&w->proc_walk, METRICS_FDWALK_SLOTS)) {}
    proc.open_fds = w->proc_walk.open;
    metrics_proc_set(&proc);
}

void worker_proc_refresh(struct worker *w, struct worker_proc_waiter *wt) {
    if (!w->proc_busy) {
        if (wt) {
            wt->next = w->proc_waiters;
            w->proc_waiters = wt;
        }
        proc_start(w);
    } else if (wt) {
        /* part of the table was counted before this call: wait for a count
         * that starts after it, so the answer includes every descriptor
         * open now */
        wt->next = w->proc_next;
        w->proc_next = wt;
    }
}

void worker_proc_cancel(struct worker *w, struct worker_proc_waiter *wt) {
    struct worker_proc_waiter **lists[2] = {&w->proc_waiters, &w->proc_next};
    for (int i = 0; i < 2; i++)
        for (struct worker_proc_waiter **pp = lists[i]; *pp; pp = &(*pp)->next)
            if (*pp == wt) {
                *pp = wt->next;
                return;
            }
}

static void pool_figures(struct worker *w) {
    if (!w->pool) return;
    const struct pool_stats *p = pool_stats(w->pool);
    metrics.pool_threads = p->threads;
    metrics.pool_busy = p->busy;
    metrics.pool_queued = p->queued;
    metrics.pool_queued_finals = p->queued_class[POOL_FINAL];
    metrics.pool_queue_max = p->queue_max;
    metrics.pool_completed = p->completed;
    metrics.pool_failed = p->failed;
    metrics.pool_refused = p->refused;
    metrics.pool_evicted = p->evicted;
    metrics.pool_audio_ms = p->audio_ms;
    metrics.pool_busy_ms = p->busy_ms;
}

/* The adaptive window (core/adaptive.h): once a second, from the stream
 * latencies recorded since the window last changed. Windowed engines with
 * partial windows only. */
static void adapt_window(struct worker *w) {
    const struct config *c = w->cfg;
    if (!w->pool || !c->window_ms) {
        metrics.adaptive_window_ms = 0;
        return;
    }
    unsigned cur = w->api_env.window_ms ? w->api_env.window_ms : (unsigned)c->window_ms;
    if (c->adaptive_window) {
        struct adaptive_cfg ac = {.high_ms = (unsigned)c->adaptive_latency_high_ms,
                                  .low_ms = (unsigned)c->adaptive_latency_low_ms,
                                  .min_ms = (unsigned)c->window_min_ms, .max_ms = (unsigned)c->window_max_ms,
                                  .step_ms = 500, .min_samples = 5};
        double avg;
        uint64_t n;
        metrics_stream_latency_since(w->adapt_mark, &avg, &n);
        unsigned next = adaptive_next(&ac, cur, avg, n);
        if (next != cur) {
            struct log_line *l = log_begin(LOG_INFO, "adaptive window");
            if (l) {
                log_u64(l, "from_ms", cur);
                log_u64(l, "to_ms", next);
                log_u64(l, "mean_latency_ms", (uint64_t)avg);
                log_u64(l, "samples", n);
                log_end(l);
            }
            cur = next;
            w->adapt_mark = metrics_stream_latency_count();
        }
    }
    w->api_env.window_ms = cur;
    metrics.adaptive_window_ms = cur;
}

/* The memory budgets' figures, for the metrics (each tick, and before a
 * metrics answer). */
static void budget_figures(struct worker *w) {
    const struct budget *u = &w->upload_mem, *m = &w->message_mem;
    metrics.mem_upload_bytes = budget_used(u);
    metrics.mem_upload_peak = __atomic_load_n(&u->peak, __ATOMIC_RELAXED);
    metrics.mem_upload_limit = u->limit;
    metrics.mem_upload_refused = __atomic_load_n(&u->refused, __ATOMIC_RELAXED);
    metrics.mem_message_bytes = budget_used(m);
    metrics.mem_message_peak = __atomic_load_n(&m->peak, __ATOMIC_RELAXED);
    metrics.mem_message_limit = m->limit;
    metrics.mem_message_refused = __atomic_load_n(&m->refused, __ATOMIC_RELAXED);
}

static void on_tick(uv_timer_t *t) {
    struct worker *w = t->data;
    pool_figures(w);
    adapt_window(w);
    budget_figures(w);
    loop_utilization(w);
    metrics_tick();             /* publishes the figures of the previous refresh */
    worker_proc_refresh(w, NULL);
    conn_check_timeouts(&w->conns);
    if (w->api_env.draining) close_idle_http(w);
    if (drained(w)) uv_stop(w->loop);
    if (w->api_env.draining && uv_now(w->loop) >= w->drain_deadline_ms) {
        struct log_line *l = log_begin(LOG_WARN, "drain timeout");
        if (l) { log_u64(l, "connections", metrics.connections_active); log_end(l); }
        uv_stop(w->loop);
    }
}

/* close_listener: 1 when this worker is being replaced (rolling restart: its
 * successor accepts on the same socket); 0 on shutdown, where the listener
 * stays open so that health checks see 503 "draining" until the exit. */
static void start_drain(struct worker *w, const char *why, int close_listener) {
    if (w->api_env.draining) return;
    w->drain_deadline_ms = uv_now(w->loop) + (uint64_t)w->cfg->drain_timeout_s * 1000;
    struct log_line *l = log_begin(LOG_INFO, "draining");
    if (l) { log_str(l, "signal", why); log_u64(l, "connections", metrics.connections_active); log_end(l); }
    if (w->listening && close_listener) {
        uv_close((uv_handle_t *)&w->listener, NULL);
        w->listening = 0;
    }
    api_stream_shutdown(w->api, close_listener); /* sets w->api_env.draining */
    api_jobs_drain(w->api);
    close_idle_http(w);
    if (drained(w)) uv_stop(w->loop);
}

static void on_signal(uv_signal_t *s, int signum) {
    struct worker *w = s->data;
    if (signum == WORKER_SIG_STOP) {
        struct log_line *l = log_begin(LOG_INFO, "stopping now");
        if (l) { log_u64(l, "connections", metrics.connections_active); log_end(l); }
        uv_stop(w->loop);
    } else if (signum == WORKER_SIG_RETIRE) {
        start_drain(w, "replaced", 1);
    } else if (signum == WORKER_SIG_DRAIN) {
        start_drain(w, "shutdown", 0); /* repeated: nothing more (the master sends STOP for "now") */
    } else if (w->api_env.draining) {
        uv_stop(w->loop);              /* stand-alone: a second SIGTERM/SIGINT stops now */
    } else {
        start_drain(w, signum == SIGTERM ? "SIGTERM" : "SIGINT", 0);
    }
}

static void signal_watch(struct worker *w, uv_signal_t *h, int signum) {
    uv_signal_init(w->loop, h);
    h->data = w;
    uv_signal_start(h, on_signal, signum);
}

static int bind_listener(struct worker *w, int fd) {
    const struct config *c = w->cfg;
    if (fd >= 0) { /* inherited from the master */
        int r;
        uv_tcp_init(w->loop, &w->listener);
        w->listener.data = w;
        if ((r = uv_tcp_open(&w->listener, fd)) != 0 ||
            (r = uv_listen((uv_stream_t *)&w->listener, c->backlog, on_connection)) != 0) {
            fprintf(stderr, "asrd: worker cannot listen on its socket: %s\n", uv_strerror(r));
            return 1;
        }
        w->listening = 1;
        return 0;
    }
    struct sockaddr_storage ss;
    int r = uv_ip4_addr(c->host, c->port, (struct sockaddr_in *)&ss);
    if (r != 0) r = uv_ip6_addr(c->host, c->port, (struct sockaddr_in6 *)&ss);
    if (r != 0) {
        fprintf(stderr, "asrd: ASR_HOST: \"%s\" is not an IPv4 or IPv6 address\n", c->host);
        return 2;
    }
    uv_tcp_init(w->loop, &w->listener);
    w->listener.data = w;
    if ((r = uv_tcp_bind(&w->listener, (struct sockaddr *)&ss, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&w->listener, c->backlog, on_connection)) != 0) {
        fprintf(stderr, "asrd: cannot listen on %s:%d: %s\n", c->host, c->port, uv_strerror(r));
        return 1;
    }
    w->listening = 1;
    return 0;
}

/* The job runner reached ASR_WORKER_MAX_JOBS: the master starts a successor
 * and then retires this worker (docs/internals/workers.md, "Retiring after
 * N jobs"). A stand-alone worker has no one to ask: it says so and goes on
 * (taking no more runs). */
static void want_replacement(void *ctx) {
    struct worker *w = ctx;
    if (w->under_master && getppid() > 1) {
        kill(getppid(), WORKER_SIG_REPLACE_ME);
        return;
    }
    struct log_line *l = log_begin(LOG_WARN, "job limit reached, but no master to start a successor");
    if (l) log_end(l);
}

static void close_walk(uv_handle_t *h, void *arg) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void routes_init(struct worker *w) {
    const struct http_route routes[] = {
        {"/v1/transcribe", HTTP_POST, ROUTE_TRANSCRIBE, api_rest_transcribe, w->api, NULL, api_rest_check, 0},
        {"/v1/transcribe/stream", HTTP_GET, ROUTE_STREAM, api_stream_upgrade, w->api, NULL, NULL, 0},
        {"/v1/auth/token", HTTP_POST, ROUTE_AUTH_TOKEN, api_auth_token, w->api, NULL, NULL, 0},
        {"/v1/audio/transcriptions", HTTP_POST, ROUTE_AUDIO_TRANSCRIPTIONS, api_openai_transcriptions, w->api,
         api_openai_error_body, api_rest_check, 0},
        {"/v1/audio/translations", HTTP_POST, ROUTE_AUDIO_TRANSLATIONS, api_openai_translations, w->api,
         api_openai_error_body, NULL, 0},
        {"/v1/models", HTTP_GET, ROUTE_MODELS, api_openai_models, w->api, api_openai_error_body, NULL, 0},
        {"/v1/health", HTTP_GET, ROUTE_HEALTH, status_health, w, NULL, NULL, 0},
        {"/v1/metrics", HTTP_GET, ROUTE_METRICS_JSON, status_metrics_json, w, NULL, NULL, 0},
        {"/metrics", HTTP_GET, ROUTE_METRICS_PROM, status_metrics_prometheus, w, NULL, NULL, 0},
        {"/v1/jobs", HTTP_POST, ROUTE_JOBS, api_jobs_submit, w->api, NULL, api_rest_check, 0},
        {"/v1/jobs/", HTTP_GET, ROUTE_JOBS, api_jobs_get, w->api, NULL, NULL, 1},
        {"/v1/jobs/", HTTP_DELETE, ROUTE_JOBS, api_jobs_delete, w->api, NULL, NULL, 1},
        {"/v1/batches/", HTTP_GET, ROUTE_JOBS, api_jobs_batch, w->api, NULL, NULL, 1},
        {"/metrics/streaming", HTTP_GET, ROUTE_METRICS_STREAMING, status_metrics_streaming, w, NULL, NULL, 0},
    };
    _Static_assert(sizeof routes / sizeof routes[0] <= WORKER_ROUTES, "WORKER_ROUTES");
    memcpy(w->routes, routes, sizeof routes);
    const struct config *c = w->cfg;
    w->cors = (struct http_cors){.origins = c->cors_origins, .max_age_s = (unsigned)c->cors_max_age_s};
    w->http = (struct http_server){
        .routes = w->routes,
        .n_routes = sizeof routes / sizeof routes[0],
        .cors = &w->cors,
        .max_header_bytes = c->max_header_bytes,
        .max_upload_bytes = c->max_upload_bytes,
        .body_budget = &w->upload_mem,
        .handshake_timeout_ms = (uint64_t)c->handshake_timeout_s * 1000,
        .body_timeout_ms = (uint64_t)c->body_timeout_s * 1000,
    };
}

/* The page's directory (ASR_WEB_DIR, docs/API.md "The page at /"): the
 * setting; when empty, the first of <binary's directory>/../share/asrd/web
 * (installed) and <binary's directory>/../../web (the source tree, where
 * the build leaves the binary in build/<kind>/) that holds an index.html;
 * "off", or nothing found: no page. Returns 0 with out set ("" = no page),
 * or 2 with a message when ASR_WEB_DIR names no directory. */
static int web_dir(const struct config *c, char *out, size_t cap) {
    out[0] = '\0';
    if (strcmp(c->web_dir, "off") == 0) return 0;
    if (c->web_dir[0]) {
        struct stat st;
        if (stat(c->web_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "asrd: ASR_WEB_DIR: \"%s\" is not a directory (\"off\" serves no page)\n", c->web_dir);
            return 2;
        }
        snprintf(out, cap, "%s", c->web_dir);
        return 0;
    }
    char exe[4096];
    size_t n = sizeof exe;
    if (uv_exepath(exe, &n) != 0) return 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return 0;
    *slash = '\0';
    static const char *const rel[] = {"../share/asrd/web", "../../web"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        char cand[4096 + 64];
        snprintf(cand, sizeof cand, "%s/%s/index.html", exe, rel[i]);
        if (access(cand, R_OK) != 0) continue;
        cand[strlen(cand) - sizeof "/index.html" + 1] = '\0';
        if (strlen(cand) >= cap) return 0;
        memcpy(out, cand, strlen(cand) + 1);
        return 0;
    }
    return 0;
}

int worker_init(struct worker *w, const struct config *cfg, uv_loop_t *loop) {
    memset(w, 0, sizeof *w);
    httpc_global_init(); /* before the inference pool's threads start */
    /* Large buffers (request bodies, decoded blocks, long messages) come
     * from mmap and go back to the kernel when freed. glibc's default moves
     * the threshold up to the size of the largest block freed (up to 32 MiB),
     * after which a 24 MB body was carved from the heap: realloc then copied
     * it (two copies at once) and free kept the pages, so RSS passed the
     * upload budget by half (docs/BENCHMARKS.md, "Memory in flight"). A
     * fixed threshold turns that adjustment off. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    w->loop = loop;
    w->cfg = cfg;
    w->start_ms = util_wall_ms();
    metrics_init();
    metrics_set_worker_id(cfg->worker_id);
    conn_set_init(&w->conns, loop);
    w->conns.send_timeout_ms = (uint64_t)cfg->send_timeout_s * 1000;
    w->conns.on_closed = on_conn_closed;
    w->conns.ctx = w;
    budget_init(&w->upload_mem, cfg->upload_memory_bytes);
    budget_init(&w->message_mem, cfg->message_memory_bytes);
    w->api_env = (struct api_env){.loop = loop, .cfg = cfg, .upload_mem = &w->upload_mem,
                                  .message_mem = &w->message_mem, .on_want_replacement = want_replacement,
                                  .replacement_ctx = w};
    struct engine_cfg ecfg = {.loop = loop, .settings = cfg->engine_settings};
    const struct engine_ops *ops = engines_find(cfg->engine);
    if (!ops) {
        fprintf(stderr, "asrd: ASR_ENGINE: unknown engine \"%s\", allowed %s\n", cfg->engine, engines_names());
        return 2;
    }
    if (engine_load(ops, &ecfg) != 0) {
        fprintf(stderr, "asrd: ASR_ENGINE: engine \"%s\" failed to load (its settings or files; see above)\n",
                cfg->engine);
        return 2;
    }
    w->api_env.engine = ops;
    if (ops->caps & ENGINE_CAP_WINDOWED) {
        unsigned threads = cfg->inference_threads > 0 ? (unsigned)cfg->inference_threads : util_cpu_count();
        struct pool_cfg pc = {.threads = threads, .queue_max = (unsigned)cfg->inference_queue_max};
        int rc = pool_create(loop, ops, cfg->engine_settings, &pc, &w->pool);
        if (rc != 0) {
            fprintf(stderr, "asrd: ASR_ENGINE: engine \"%s\" could not start %u inference threads: %s\n", cfg->engine,
                    threads, asr_strerror(rc));
            return 2;
        }
        w->api_env.pool = w->pool;
    }
    if (api_create(&w->api_env, &w->api) != 0) {
        fprintf(stderr, "asrd: ASR_REDIS_URL: cannot use \"%s\" (redis://[:password@]host:port[/db] or unix:///path)\n",
                cfg->redis_url);
        return 2;
    }
    routes_init(w); /* the API routes' ctx is w->api */
    if (web_dir(cfg, w->web_dir, sizeof w->web_dir) != 0) return 2;
    if (w->web_dir[0] && files_create(w->web_dir, &w->files) != 0) {
        fprintf(stderr, "asrd: ASR_WEB_DIR: \"%s\" cannot be read\n", w->web_dir);
        return 2;
    }
    if (w->files) {
        w->http.fallback = files_serve;
        w->http.fallback_ctx = w->files;
        w->http.fallback_route = ROUTE_WEB;
    }
    adapt_window(w);
    uv_prepare_init(loop, &w->prep);
    w->prep.data = w;
    uv_prepare_start(&w->prep, on_prepare);
    uv_check_init(loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_check);
    worker_proc_init(w);
    pool_figures(w); /* the pool's size is known before the first tick */
    metrics_tick();
    return 0;
}

int worker_run(const struct config *cfg, const struct worker_boot *boot) {
    static struct worker worker; /* process lifetime: one worker per process */
    struct worker *w = &worker;
    uv_loop_t *loop = uv_default_loop();
    uv_loop_configure(loop, UV_METRICS_IDLE_TIME); /* before the loop runs */
    int r = worker_init(w, cfg, loop);
    if (r != 0) return r;
    w->under_master = boot != NULL;
    if ((r = bind_listener(w, boot ? boot->listen_fd : -1)) != 0) return r;
    uv_timer_init(w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 1000, 1000);
    signal_watch(w, &w->sig_drain, WORKER_SIG_DRAIN);
    signal_watch(w, &w->sig_retire, WORKER_SIG_RETIRE);
    signal_watch(w, &w->sig_stop, WORKER_SIG_STOP);
    if (boot) {
        /* Under a master: a group signal (Ctrl-C, kill -TERM -<pgid>,
         * systemd's control-group kill) also reaches this process; only
         * the master's word counts (WORKER_SIG_*), so these are ignored. */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(WORKER_SIG_REPLACE_ME, SIG_IGN); /* the master's to receive */
    } else {
        signal_watch(w, &w->sig_term, SIGTERM);
        signal_watch(w, &w->sig_int, SIGINT);
    }
    signal(SIGPIPE, SIG_IGN);
    if (boot && boot->unblock) sigprocmask(SIG_UNBLOCK, boot->unblock, NULL);
    struct log_line *l = log_begin(LOG_INFO, "listening");
    if (l) {
        log_str(l, "host", cfg->host);
        log_u64(l, "port", (uint64_t)cfg->port);
        log_str(l, "engine", cfg->engine);
        log_str(l, "web_dir", w->web_dir);
        log_u64(l, "pid", (uint64_t)getpid());
        log_end(l);
    }
    if (boot && boot->ready_fd >= 0) {
        (void)!write(boot->ready_fd, "r", 1);
        close(boot->ready_fd);
    }
    uv_run(w->loop, UV_RUN_DEFAULT);
    /* Drained, or the drain timed out: close every connection that is left
     * (their close callbacks free sessions and log them), then the rest. */
    api_stream_shutdown(w->api, w->api_env.retiring);
    for (struct conn *c = w->conns.conns; c; c = c->next) conn_close(c);
    uv_run(w->loop, UV_RUN_NOWAIT);
    api_close(w->api);
    pool_destroy(w->pool); /* every session is gone: no client left in it */
    w->pool = NULL;
    engine_unload();
    uv_walk(w->loop, close_walk, NULL);
    uv_run(w->loop, UV_RUN_DEFAULT);
    uv_loop_close(w->loop);
    api_destroy(w->api);
    w->api = NULL;
    files_destroy(w->files);
    w->files = NULL;
    l = log_begin(LOG_INFO, "exit");
    if (l) { log_u64(l, "connections_left", metrics.connections_active); log_end(l); }
    return 0;
}
