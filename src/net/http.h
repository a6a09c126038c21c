/* HTTP/1.1 on top of http-parser (kept behind this interface so llhttp can
 * replace it): request limits, header capture, routing table, response
 * writer, keep-alive and pipelining (one request at a time: bytes of the next
 * request wait while a response is pending).
 *
 * Limits (docs/API.md "REST"): request line + headers over
 * ASR_MAX_HEADER_BYTES -> 431; body over ASR_MAX_UPLOAD_BYTES (as sent) ->
 * 413; a body the worker's body budget cannot hold (a Content-Length over
 * what is left of it, or bytes arriving past it) -> 503 with Retry-After;
 * a POST with neither Content-Length nor chunked encoding -> 411;
 * anything http-parser refuses (including Content-Length with
 * Transfer-Encoding, duplicate lengths) -> 400; no complete request within
 * ASR_HANDSHAKE_TIMEOUT_S -> 408; the client's half-close before its
 * request is complete (a body shorter than its Content-Length) -> 400.
 * Every refusal answers JSON {"error":{"code","message"}} and closes.
 *
 * Expect: 100-continue (HTTP/1.1, a request with a body): once its head is
 * in, the request is either answered at once with its final status and the
 * body is never read (a limit above, no such route or method: 404/405, the
 * route's check: e.g. 401) or told "100 Continue". A refusal made while the
 * client may still be sending its body (413, 503, the early answers) does
 * not close at once: the connection reads and discards for up to
 * HTTP_LINGER_MS of silence, so the answer is not lost to a reset.
 *
 * Lifecycle of a connection, one request at a time (enum http_state; every
 * move goes through http_set_state in http.c and its table):
 *
 *   IDLE --first byte--> HEAD --head in--> BODY --message complete--> READY
 *    ^ |                  |                 |     (or an upgrade       |
 *    | |                  |                 |      request's head)     | dispatch
 *    | +------------------+---refusal-------+--------------------+     |
 *    |                                                           v     v
 *    +------------------answer, keep-alive---------------------- BUSY <+
 *                                                                 |  |
 *                              DONE <--answer, Connection: close--+  +--http_upgrade--> UPGRADED
 *
 * (READY also goes to BUSY with a refusal: a request that completed in the
 * same bytes that broke a rule.)
 * IDLE: between requests, nothing of the next one parsed (keep-alive idle).
 * HEAD: the request line and headers are arriving. BODY: the head is
 * complete; body and trailers are arriving. READY: the request is complete
 * and the parser paused; it is dispatched in the same pass (never seen
 * outside http.c's process). BUSY: a route handler, or a refusal, is
 * answering; bytes of the next request are held. DONE: answered with
 * Connection: close; nothing more is parsed and the connection closes once
 * the answer is written. UPGRADED: handed to another protocol; the
 * http_conn is gone.
 * The moves to HEAD, BODY and READY follow the client's bytes (http-parser's
 * callbacks): one the table does not have is answered 400. The others are
 * ours and asserted. The handshake timer answers 408 in HEAD, BODY and READY;
 * in IDLE it closes silently. Draining and a client's half-close are not
 * states: they only make the current request end with Connection: close. */
#ifndef ASRD_HTTP_H
#define ASRD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"
#include "base/budget.h"
#include "base/metrics.h"
#include "base/util.h"

#define HTTP_MAX_HEADERS 64

struct http_req {
    int      method;                 /* http-parser enum http_method */
    int      keep_alive;
    int      upgrade;
    struct buf head;                 /* url, then header names/values, NUL-separated; owned */
    size_t   url_off, url_len;
    size_t   path_len;               /* path = url[0..path_len) */
    size_t   query_off, query_len;   /* after '?', may be 0 */
    size_t   hdr_name[HTTP_MAX_HEADERS], hdr_name_len[HTTP_MAX_HEADERS];
    size_t   hdr_val[HTTP_MAX_HEADERS], hdr_val_len[HTTP_MAX_HEADERS];
    int      n_headers;
    struct buf body;                 /* owned, limited to max upload */
    char     request_id[64];         /* X-Request-Id, honoured or generated */
    uint64_t start_ns;
    enum metric_route route;
};

struct http_conn;

/* Where a connection is in its request cycle (the diagram above). The
 * order matters to http.c: IDLE..READY are the phases that parse. */
enum http_state {
    HTTP_ST_IDLE,      /* between requests */
    HTTP_ST_HEAD,      /* a request began: request line and headers */
    HTTP_ST_BODY,      /* the head is complete: body, trailers */
    HTTP_ST_READY,     /* the request is complete, to be dispatched */
    HTTP_ST_BUSY,      /* a handler or a refusal is answering */
    HTTP_ST_DONE,      /* answered with Connection: close: parse nothing more */
    HTTP_ST_UPGRADED,  /* handed to another protocol (transient: hc is freed) */
};

enum http_state http_state(const struct http_conn *hc);
/* The state's name ("idle", "head", ...), for logs and tests. */
const char *http_state_name(enum http_state s);

/* Route handler: answers with http_respond*(), now or later. ctx is the
 * route's ctx. An asynchronous handler registers http_set_abort() so
 * it learns when the connection dies. */
typedef void (*http_handler_fn)(void *ctx, struct http_conn *hc, struct http_req *req);

/* Writes the JSON body of an error answer on a route's path (code: the
 * docs/API.md code, msg: for people) into out. Returns 0 or ASR_ENOMEM. */
typedef int (*http_error_body_fn)(struct buf *out, int status, const char *code, const char *msg);

/* A route's answer before a request's body is read: called when the head
 * of a request with a body is complete and the client waits for 100 Continue
 * (Expect: 100-continue). Returns 0 to let the body come, or an asr_err that
 * http.c answers at once (its status, docs/API.md code, and *msg when set:
 * static storage), closing the connection after it. ctx is the route's. */
typedef int (*http_check_fn)(void *ctx, const struct http_req *req, const char **msg);

struct http_route {
    const char *path;
    int         method;              /* HTTP_GET / HTTP_POST / HTTP_DELETE */
    enum metric_route route;
    http_handler_fn handler;
    void       *ctx;                 /* borrowed: handed to handler and check */
    /* The error bodies of requests to this path, refusals of the HTTP layer
     * (413, 408, 405...) included, when its clients expect another shape
     * than {"error":{"code","message"}}; NULL = that one. */
    http_error_body_fn error_body;
    http_check_fn check;             /* NULL = any request head may send its body */
    int         prefix;              /* 1: path ends with '/' and matches every longer path under it
                                        (/v1/jobs/<id>...); the handler parses the rest. An exact
                                        route of the same path is tried first */
};

/* What every connection of one server shares: its routes and limits. The
 * owner keeps it alive as long as any connection uses it. */
struct http_server {
    const struct http_route *routes; /* borrowed: lives as long as the server */
    size_t   n_routes;
    size_t   max_header_bytes;       /* request line + headers (431 beyond) */
    size_t   max_upload_bytes;       /* body as sent (413 beyond) */
    struct budget *body_budget;      /* borrowed, NULL = none: bodies being received are charged
                                        here (503 with Retry-After beyond) */
    uint64_t handshake_timeout_ms;   /* request head deadline; keep-alive idle */
    uint64_t body_timeout_ms;        /* the body brings 1 KiB (or its end) within this */
};

/* Starts HTTP on a freshly accepted connection, serving srv. */
int  http_conn_start(struct conn *c, const struct http_server *srv);

struct conn *http_conn_of(struct http_conn *hc);

/* Header lookup (case-insensitive name): the first header of that name.
 * Returns its value, NUL-terminated, borrowed from req (valid until the
 * response is sent), with its length in *len when len is not NULL; NULL when
 * absent. */
const char *http_header(const struct http_req *req, const char *name, size_t *len);
/* Percent-decodes query parameter name into out (NUL-terminated). Returns its
 * length, or -1 when absent, or -2 when present but unusable: longer than
 * outlen - 1, or holding a NUL byte (%00), which would cut the C string
 * short ("id%00junk" must not read as "id"). out is unspecified on -2. */
int http_query(const struct http_req *req, const char *name, char *out, size_t outlen);
const char *http_path(const struct http_req *req, size_t *len);

/* Sends a response. body is copied. extra_headers is "Name: value\r\n"... or
 * NULL. Finishes the request: keep-alive continues with the next one. */
void http_respond(struct http_conn *hc, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers);
/* The same, then Connection: close (what every 400, 408, 411, 413 and
 * 431 does, docs/API.md "HTTP errors", whoever builds its body). */
void http_respond_close(struct http_conn *hc, int status, const char *content_type, const char *body, size_t len,
                        const char *extra_headers);
/* Whether an error answer with this status closes the connection (400,
 * 408, 411, 413, 431: the rest of the stream cannot be trusted). */
int http_status_closes(int status);

/* A streamed answer (server-sent events): the head now, with
 * Transfer-Encoding: chunked (or, to an HTTP/1.0 client, Connection: close
 * and no length), then pieces as they come, then the end. The request stays
 * BUSY (its abort hook armed) until http_stream_end(). Pieces are copied;
 * each is one chunk on the wire. http_stream_write returns 0, or ASR_EIO
 * when the connection is closing (the abort hook runs soon) or ASR_ENOMEM.
 * http_stream_end finishes the request as http_respond does. A HEAD request
 * gets the head only. Used by stream=true (docs/API.md "OpenAI-compatible
 * API") and a job's events (docs/API.md "Jobs"). */
void http_stream_begin(struct http_conn *hc, int status, const char *content_type, const char *extra_headers);
int  http_stream_write(struct http_conn *hc, const void *p, size_t n);
void http_stream_end(struct http_conn *hc);

/* JSON error body {"error":{"code":code,"message":msg}} with status (or
 * the route's error_body, when the request's path has one). */
void http_respond_error(struct http_conn *hc, int status, const char *code, const char *msg,
                        const char *extra_headers);
/* Same, status and code from an asr_err. */
void http_respond_err(struct http_conn *hc, int err, const char *msg);

/* Async handlers: fn(ctx) runs if the connection closes before they answer. */
void http_set_abort(struct http_conn *hc, void (*fn)(void *ctx), void *ctx);

/* 1 once the client shut its sending side during this request (a closed
 * tab, a finished curl): a long answer may stop early. */
int  http_peer_gone(const struct http_conn *hc);
/* The client's address ("ip", without the port), for per-address limits. */
void http_peer_ip(const struct http_conn *hc, char *out, size_t len);

/* Graceful drain: an idle keep-alive connection closes now; one in the
 * middle of a request answers it with Connection: close. */
void http_conn_drain(struct conn *c);

/* The upgrade hand-off (docs/internals/architecture.md, "Ownership"): writes "101 Switching Protocols" with
 * headers ("Name: value\r\n"...), counts and logs the request, hands the
 * bytes read after the request head to *rest (caller owns; buf_cleanup) and
 * frees hc. Before: HTTP owns the conn's handler and req. After: hc and req
 * are gone; the caller must install its handler with conn_set_handler()
 * before returning to the loop. */
void http_upgrade(struct http_conn *hc, const char *headers, struct buf *rest);

#endif
