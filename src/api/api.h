/* The API layer, as the server sees it: the transcription routes. One
 * `struct api` per worker holds everything the layer keeps between calls
 * (the session registry, the session store, scratch buffers); the server
 * creates it from its api_env and passes it as the route handlers' ctx, so
 * nothing in api/ reaches for a global.
 *
 * Inside the layer (docs/internals/architecture.md):
 *   stream.c    GET /v1/transcribe/stream: the upgrade, the WebSocket glue,
 *               each session's lifecycle (stream.h)
 *   rest.c      POST /v1/transcribe
 *   openai.c    POST /v1/audio/transcriptions, /v1/audio/translations,
 *               GET /v1/models (OpenAI's shapes)
 *   transcribe.c  one file's transcription, for rest.c and openai.c
 *   multipart.c multipart/form-data bodies (GMime)
 *   formats.c   transcript formats (text, SRT, WebVTT, verbose_json)
 *   wire.c      client messages decoded, server messages encoded (wire.h)
 *   sync.c      streams <-> the session store (sync.h)
 *   registry.c  session id -> stream (registry.h)
 *   auth.c      API keys, access tokens and POST /v1/auth/token, the
 *               Origin allowlist (auth.h)
 *   api.c       the context: create, close, destroy */
#ifndef ASRD_API_H
#define ASRD_API_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/budget.h"
#include "base/config.h"
#include "core/engine.h"
#include "core/pool.h"
#include "net/http.h"

/* What the API layer gets from the process that runs it. The server owns it
 * (one per worker, process lifetime) and changes draining/retiring only
 * through api_stream_shutdown(). */
struct api_env {
    uv_loop_t           *loop;      /* borrowed: the worker's loop */
    const struct config *cfg;       /* borrowed, process lifetime */
    struct pool         *pool;      /* borrowed: the inference pool of a windowed engine, or NULL */
    const struct engine_ops *engine;/* borrowed: the loaded engine's table */
    unsigned window_ms;             /* the adaptive window new sessions get (set by the server each
                                       second); 0 = ASR_WINDOW_MS */
    struct budget       *upload_mem;  /* borrowed: uploads' bodies and decoding in flight (NULL = no bound) */
    struct budget       *message_mem; /* borrowed: partial WebSocket messages (NULL = no bound) */
    int      draining;              /* shutdown or rolling restart began: no new sessions */
    int      retiring;              /* rolling restart: a successor accepts on our socket */
    /* The job runner finished ASR_WORKER_MAX_JOBS runs: the server arranges
     * for a successor (then drains this worker). Called once; may be NULL. */
    void   (*on_want_replacement)(void *ctx);
    void    *replacement_ctx;        /* borrowed: passed to on_want_replacement */
};

/* The API context of one worker. Opaque here (api/api_int.h has its fields,
 * for the api modules). */
struct api;

/* Creates the context: an empty session registry, the session store
 * (ASR_REDIS_URL, the in-memory store when empty) opened on env->loop, and
 * its 1 s snapshot timer; with Redis, the job queue, its runner and the
 * webhook deliveries (docs/internals/jobs.md). env is borrowed and must outlive the api. Returns
 * 0 and *out, or an asr_err (a bad store URL), with nothing to free. */
int api_create(struct api_env *env, struct api **out);
/* At exit, after the drain (api_stream_shutdown): gives job runs still here
 * back to the queue, lets store writes in flight finish (bounded by the
 * store's op timeout; runs the loop until then), then closes the stores. The api stays usable for the close
 * callbacks of connections that are still open: streams find no store. */
void api_close(struct api *api);
/* Frees the context, once nothing on the loop can call into it any more
 * (after uv_loop_close). api may be NULL. */
void api_destroy(struct api *api);

/* POST /v1/transcribe (rest.c). ctx is the struct api. With ?callback= it
 * is a job (docs/API.md "POST /v1/transcribe?callback="). */
void api_rest_transcribe(void *ctx, struct http_conn *hc, struct http_req *req);
/* Its http_check_fn (also the OpenAI transcription route's and POST
 * /v1/jobs'): what can be refused before the body is sent: the credential
 * (auth_check's errors, counted in auth.refused, with their message). */
int api_rest_check(void *ctx, const struct http_req *req, const char **msg);

/* The OpenAI-compatible routes (openai.c; docs/API.md "OpenAI-compatible
 * API"). ctx is the struct api. */
void api_openai_transcriptions(void *ctx, struct http_conn *hc, struct http_req *req); /* POST /v1/audio/transcriptions */
void api_openai_translations(void *ctx, struct http_conn *hc, struct http_req *req);   /* POST /v1/audio/translations */
void api_openai_models(void *ctx, struct http_conn *hc, struct http_req *req);         /* GET /v1/models */
/* The error body of those routes (an http_route's error_body): OpenAI's
 * {"error":{"message","type","param","code"}}. */
int api_openai_error_body(struct buf *out, int status, const char *code, const char *msg);

/* POST /v1/auth/token (auth.c; docs/API.md "Access tokens"): an API key
 * asks for a short-lived token. ctx is the struct api. */
void api_auth_token(void *ctx, struct http_conn *hc, struct http_req *req);

/* The job routes (jobs.c, docs/API.md "Jobs"); ctx is the struct api.
 * POST /v1/jobs; GET /v1/jobs/{id}, /v1/jobs/{id}/result,
 * /v1/jobs/{id}/events and DELETE /v1/jobs/{id} (prefix routes on
 * "/v1/jobs/"); GET /v1/batches/{id} (prefix "/v1/batches/"). */
void api_jobs_submit(void *ctx, struct http_conn *hc, struct http_req *req);
void api_jobs_get(void *ctx, struct http_conn *hc, struct http_req *req);
void api_jobs_delete(void *ctx, struct http_conn *hc, struct http_req *req);
void api_jobs_batch(void *ctx, struct http_conn *hc, struct http_req *req);
/* Drain (with api_stream_shutdown): the runner takes no more runs (those in
 * progress go on) and event streams end. */
void api_jobs_drain(struct api *api);
/* Job runs in progress on this worker: a draining worker waits for them. */
size_t api_jobs_running(const struct api *api);

/* GET /v1/transcribe/stream: checks the request in the order of docs/API.md
 * "Connecting" and upgrades it, or answers the refusal (stream.c). ctx is
 * the struct api. */
void api_stream_upgrade(void *ctx, struct http_conn *hc, struct http_req *req);
/* Streaming sessions held by this worker (live and resumable). */
size_t api_stream_count(const struct api *api);
/* Drain: sets env->draining (and env->retiring the first time); every live
 * session gets its final and close 1001; resumable ones are dropped; an
 * upgrade still waiting for the store is answered 503 DRAINING when the
 * store replies. retiring: a rolling restart (the successor takes new
 * sessions) rather than a shutdown. May be called again (the worker does
 * at exit). */
void api_stream_shutdown(struct api *api, int retiring);


#endif
