/* The API layer: the transcription routes (rest.c) and the streaming
 * endpoint (stream.c). The server creates one api_env per worker and passes
 * it in; nothing here reaches up for the worker. */
#ifndef ASRD_API_H
#define ASRD_API_H

#include <stdint.h>
#include <uv.h>

#include "base/config.h"
#include "net/http.h"

/* What the API layer gets from the process that runs it. The server owns it
 * (one per worker, process lifetime) and changes draining/retiring only
 * through api_stream_shutdown(). */
struct api_env {
    uv_loop_t           *loop;      /* borrowed: the worker's loop */
    const struct config *cfg;       /* borrowed, process lifetime */
    int      draining;              /* shutdown or rolling restart began: no new sessions */
    int      retiring;              /* rolling restart: a successor accepts on our socket */
};

/* POST /v1/transcribe (rest.c). ctx is the api_env. */
void api_rest_transcribe(void *ctx, struct http_conn *hc, struct http_req *req);

/* GET /v1/transcribe/stream: validates and upgrades (stream.c). ctx is the api_env. */
void api_stream_upgrade(void *ctx, struct http_conn *hc, struct http_req *req);
/* Streaming sessions held by this process (live and resumable). */
size_t api_stream_count(void);
/* Drain: every live session gets its final and close 1001; resumable ones
 * are dropped. retiring: a rolling restart (the successor takes new
 * sessions) rather than a shutdown. */
void api_stream_shutdown(int retiring);

/* Opens the session store (ASR_REDIS_URL, memory when empty) on env->loop
 * and starts the 1 s snapshot timer. env must outlive the api. 0 or an
 * asr_err (bad URL). */
int api_stream_init(struct api_env *env);
/* At exit, after the drain: lets store writes in flight finish (bounded by
 * the store's op timeout), then closes it. */
void api_stream_close(void);

/* API keys (ASR_API_KEYS): 0 when the request may pass, ASR_E_UNAUTHORIZED
 * otherwise. Keys come from Authorization: Bearer, X-API-Key or ?api_key=. */
int api_check_key(const struct config *cfg, const struct http_req *req);

#endif
