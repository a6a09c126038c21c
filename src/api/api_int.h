/* What the api modules share: the fields of struct api (api/api.h). Not
 * for the server, which sees struct api as opaque. */
#ifndef ASRD_API_INT_H
#define ASRD_API_INT_H

#include "api/api.h"
#include "api/registry.h"
#include "api/sync.h"
#include "base/util.h"

struct jreq;

struct api {
    struct api_env *env;          /* borrowed: the server's (loop, config, draining flags) */
    struct registry streams;      /* every stream of this worker (struct stream), by session id */
    struct sync sync;             /* the session store side of the streams */
    struct buf out;               /* scratch: the server message being encoded; one at a time */
    struct buf pcm;               /* scratch: a client message's decoded audio (wire_decode_client_msg) */
    /* jobs (jobs.c, jobrun.c, webhook.c); all NULL without Redis */
    struct jobs *jobs;            /* owned: the queue */
    struct httpc *httpc;          /* owned: webhooks and audio URLs */
    struct jobrun *runner;        /* owned */
    struct webhooks *hooks;       /* owned */
    struct jreq *events;          /* event streams open (jobs.c), a list */
    uv_timer_t stats_timer;       /* the queue's figures for the metrics, 1 s */
    int stats_timer_on;
    /* DETACHED streams, oldest detach first (stream.c keeps it in
     * stream_transition): the resumable window's bounds evict from the head. */
    struct stream *detached_head, *detached_tail;   /* borrowed: the registry owns the streams */
    size_t n_detached;
};

/* POST /v1/transcribe?callback= (jobs.c): a job, answered at once with its
 * id (docs/API.md "POST /v1/transcribe?callback="). */
void api_jobs_shorthand(struct api *api, struct http_conn *hc, struct http_req *req);

#endif
