/* The API layer: routes (api_rest.c) and the streaming endpoint
 * (api_stream.c), plus what the worker needs from them. */
#ifndef ASRD_API_H
#define ASRD_API_H

#include <uv.h>

#include "http.h"

/* Installs the routing table (REST and the stream upgrade). */
void api_routes_install(void);

/* GET /v1/transcribe/stream: validates and upgrades (api_stream.c). */
void api_stream_upgrade(struct http_conn *hc, struct http_req *req);
/* Streaming sessions held by this process (live and resumable). */
size_t api_stream_count(void);
/* Drain: every live session gets its final and close 1001; resumable ones
 * are dropped. */
void api_stream_shutdown(void);

/* Opens the session store (ASR_REDIS_URL, memory when empty) on loop and
 * starts the 1 s snapshot timer. 0 or an asr_err (bad URL). */
int api_stream_init(uv_loop_t *loop);
/* At exit, after the drain: lets store writes in flight finish (bounded by
 * the store's op timeout), then closes it. */
void api_stream_close(uv_loop_t *loop);

/* API keys (ASR_API_KEYS): 0 when the request may pass, ASR_E_UNAUTHORIZED
 * otherwise. Keys come from Authorization: Bearer, X-API-Key or ?api_key=. */
int api_check_key(const struct http_req *req);

#endif
