/* The API context (api.h): one per worker, created by the server. */
#include "api/api_int.h"

#include <stdlib.h>

#include "api/jobrun.h"
#include "api/webhook.h"
#include "base/log.h"
#include "base/metrics.h"
#include "net/httpc.h"
#include "store/jobs.h"

/* The shared queue's figures for the metrics, once a second. */
static void on_stats(void *arg, int status, const struct jobs_stats *st) {
    if (status != STORE_OK) return;
    metrics.jobs_queue_depth = st->queued;
    metrics.jobs_pending = st->pending;
    metrics.jobs_spool_bytes = st->spool_bytes;
    metrics.jobs_dead_letters = st->dead;
    metrics.jobs_hooks_due = st->hooks;
}

static void on_stats_timer(uv_timer_t *t) {
    struct api *api = t->data;
    if (api->jobs && jobs_up(api->jobs)) (void)jobs_stats(api->jobs, on_stats, api);
}

/* The job queue, its runner and the webhook deliveries, on the session
 * store's Redis or on ASR_JOB_REDIS_URL's (docs/internals/jobs.md, "Where
 * the queue lives"). Without either (ASR_REDIS_URL=memory alone) there are
 * none: the job routes answer 503 JOBS_UNAVAILABLE. */
static int jobs_create(struct api *api) {
    const struct config *c = api->env->cfg;
    const char *url = c->job_redis_url[0] ? c->job_redis_url : c->redis_url;
    if (!url[0]) return 0;
    struct jobs_cfg jc = {
        .redis_url = url,
        .worker_id = c->worker_id,
        .lease_ms = (uint64_t)c->job_lease_s * 1000,
        .max_attempts = (unsigned)c->job_max_attempts,
        .ttl_ms = (uint64_t)c->job_ttl_s * 1000,
        .cache_ttl_ms = (uint64_t)c->job_cache_ttl_s * 1000,
        .max_queued = (uint64_t)c->job_queue_max,
        .spool_max_bytes = (uint64_t)c->job_spool_max_mb << 20,
    };
    int r = jobs_open(api->env->loop, &jc, &api->jobs);
    if (r != 0) return r;
    r = httpc_create(api->env->loop, &api->httpc);
    if (r != 0) return r;
    if (c->job_concurrency > 0) api->runner = jobrun_start(api->env, api->jobs, api->httpc);
    api->hooks = webhooks_start(api->env, api->jobs, api->httpc);
    uv_timer_init(api->env->loop, &api->stats_timer);
    api->stats_timer.data = api;
    uv_timer_start(&api->stats_timer, on_stats_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&api->stats_timer);
    api->stats_timer_on = 1;
    return 0;
}

int api_create(struct api_env *env, struct api **out) {
    struct api *api = xcalloc(1, sizeof *api);
    api->env = env;
    registry_init(&api->streams);
    buf_init(&api->out, 0);
    buf_init(&api->pcm, 0);
    int r = sync_open(&api->sync, env->loop, env->cfg, &api->streams);
    if (r == 0) r = jobs_create(api);
    if (r != 0) {
        api_close(api);
        api_destroy(api);
        return r;
    }
    *out = api;
    return 0;
}

static void on_flag(void *arg) { *(int *)arg = 1; }

/* The jobs part of the close: runs still here go back to the queue
 * (uncharged), deliveries stop, then the connections and handles close;
 * the loop runs until they did (bounded by the queue's op timeout). */
static void jobs_close_all(struct api *api) {
    if (!api->jobs) return;
    int stopped = 0, q_closed = 0, h_closed = 0;
    if (api->stats_timer_on) {
        uv_timer_stop(&api->stats_timer);
        uv_close((uv_handle_t *)&api->stats_timer, NULL);
        api->stats_timer_on = 0;
    }
    jobrun_stop(api->runner, on_flag, &stopped);
    api->runner = NULL;
    while (!stopped && uv_run(api->env->loop, UV_RUN_ONCE)) {}
    webhooks_stop(api->hooks);
    api->hooks = NULL;
    jobs_close(api->jobs, on_flag, &q_closed);
    api->jobs = NULL;
    if (api->httpc) httpc_close(api->httpc, on_flag, &h_closed);
    else h_closed = 1;
    api->httpc = NULL;
    while ((!q_closed || !h_closed) && uv_run(api->env->loop, UV_RUN_ONCE)) {}
}

void api_close(struct api *api) {
    jobs_close_all(api);
    sync_close(&api->sync);
}

void api_destroy(struct api *api) {
    if (!api) return;
    buf_cleanup(&api->pcm);
    buf_cleanup(&api->out);
    registry_cleanup(&api->streams);
    free(api);
}
