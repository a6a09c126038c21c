/* Health and metrics routes (status.h). */
#include "server/status.h"

#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/metrics.h"
#include "base/util.h"
#include "server/worker.h"

/* docs/API.md "GET /v1/health": the figures describe the instance (every
 * worker of this master); the other workers' counts are the ones they
 * published, up to one second old. */
void status_health(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct worker *w = ctx;
    const struct config *c = w->cfg;
    static struct metrics_peer peers[2 * 256];   /* two generations per slot (master.h) */
    int np = metrics_shared_peers(peers, (int)(sizeof peers / sizeof peers[0]));
    size_t mine = api_stream_count(w->api), active = mine;
    size_t mine_detached = (size_t)metrics.sessions_detached, detached = mine_detached;
    for (int i = 0; i < np; i++) {
        active += (size_t)peers[i].sessions_active;
        detached += (size_t)peers[i].sessions_detached;
    }
    /* Degraded (still 200: the instance serves): some worker has no slot
     * for a new live session (every one held by a live session, none
     * detached to give way: its new clients get 503 SESSION_LIMIT), or
     * holds ASR_MAX_DETACHED_SESSIONS dropped sessions (each new drop
     * evicts an older one: resumability is being cut short). */
    size_t per = (size_t)c->max_sessions_per_worker, dmax = (size_t)c->max_detached_sessions;
    int full = mine - mine_detached >= per, dfull = mine_detached >= dmax;
    for (int i = 0; i < np; i++) {
        size_t a = (size_t)peers[i].sessions_active, d = (size_t)peers[i].sessions_detached;
        if (a - (d < a ? d : a) >= per) full = 1;
        if (d >= dmax) dfull = 1;
    }
    /* capacity: the per-worker limit times the worker slots, capped by the
     * global limit when one is set */
    size_t nworkers = c->workers > 0 ? (size_t)c->workers : 1;
    size_t max = (size_t)c->max_sessions_per_worker * nworkers;
    if (c->max_global_sessions > 0 && (size_t)c->max_global_sessions < max) max = (size_t)c->max_global_sessions;
    struct buf b;
    buf_init(&b, 0);
    /* a worker being replaced (rolling restart) is not the host going away:
     * its successor already accepts on the same socket */
    int down = w->api_env.draining && !w->api_env.retiring;
    const char *status = down ? "draining" : full || dfull ? "degraded" : "ok";
    buf_printf(&b, "{\"status\":\"%s\",", status);
    if (!down && (full || dfull))
        buf_printf(&b, "\"degraded\":[%s%s%s],", full ? "\"session_limit\"" : "", full && dfull ? "," : "",
                   dfull ? "\"detached_limit\"" : "");
    buf_printf(&b, "\"active_sessions\":%zu,\"detached_sessions\":%zu,\"worker_id\":", active, detached);
    buf_json_str(&b, c->worker_id, strlen(c->worker_id));
    buf_printf(&b, ",\"uptime_s\":%llu,\"capacity\":{\"max_sessions\":%zu,\"free_sessions\":%zu}",
               (unsigned long long)((util_wall_ms() - w->start_ms) / 1000), max, active < max ? max - active : 0);
    buf_puts(&b, ",\"workers\":[{\"worker_id\":");
    buf_json_str(&b, c->worker_id, strlen(c->worker_id));
    buf_printf(&b, ",\"active_sessions\":%zu,\"detached_sessions\":%zu}", mine, mine_detached);
    for (int i = 0; i < np; i++) {
        buf_puts(&b, ",{\"worker_id\":");
        buf_json_str(&b, peers[i].worker_id, strlen(peers[i].worker_id));
        buf_printf(&b, ",\"active_sessions\":%llu,\"detached_sessions\":%llu}",
                   (unsigned long long)peers[i].sessions_active, (unsigned long long)peers[i].sessions_detached);
    }
    buf_puts(&b, "]}");
    http_respond(hc, down ? 503 : 200, "application/json", b.data, b.len, NULL);
    buf_cleanup(&b);
}

/* The metrics routes answer once the worker has fresh process figures
 * (worker_proc_refresh: open descriptors are counted a slice per loop
 * iteration; listing /proc/self/fd in one go stalled every stream for 2-5 ms
 * at 2,800 connections). */
struct metrics_req {
    struct worker_proc_waiter wt; /* first member: the callback gets &wt */
    struct worker *w;             /* borrowed */
    struct http_conn *hc;
    int prometheus;
};

static void metrics_abort(void *ctx) {
    struct metrics_req *r = ctx;
    worker_proc_cancel(r->w, &r->wt);
    free(r);
}

static void metrics_ready(struct worker_proc_waiter *wt) {
    struct metrics_req *r = (struct metrics_req *)wt;
    struct http_conn *hc = r->hc;
    const char *worker_id = r->w->cfg->worker_id;
    int prom = r->prometheus;
    free(r);
    http_set_abort(hc, NULL, NULL);
    struct buf b;
    buf_init(&b, 0);
    if (prom) {
        metrics_prometheus(&b, worker_id);
        http_respond(hc, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, NULL);
    } else {
        metrics_json(&b, worker_id);
        http_respond(hc, 200, "application/json", b.data, b.len, NULL);
    }
    buf_cleanup(&b);
}

static void metrics_any(struct worker *w, struct http_conn *hc, int prometheus) {
    struct metrics_req *r = xcalloc(1, sizeof *r);
    r->w = w;
    r->wt.cb = metrics_ready;
    r->hc = hc;
    r->prometheus = prometheus;
    http_set_abort(hc, metrics_abort, r);
    worker_proc_refresh(w, &r->wt);
}

void status_metrics_json(void *ctx, struct http_conn *hc, struct http_req *req) { metrics_any(ctx, hc, 0); }
void status_metrics_prometheus(void *ctx, struct http_conn *hc, struct http_req *req) {
    metrics_any(ctx, hc, 1);
}


void status_metrics_streaming(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct buf b;
    buf_init(&b, 0);
    if (metrics_streaming_json(&b) == 0) http_respond(hc, 200, "application/json", b.data, b.len, NULL);
    else http_respond_error(hc, 500, "INTERNAL", "out of memory", NULL);
    buf_cleanup(&b);
}
