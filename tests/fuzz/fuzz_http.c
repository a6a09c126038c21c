/* fuzz_http: raw client bytes on a fresh connection of the real server
 * (src/net/http.c on http-parser, the routing table, REST handlers, the
 * upgrade checks of api/stream.c and api/auth.c, keep-alive and pipelining,
 * limits, drain).
 *
 * Input: one flags byte, then the bytes the client sends.
 *   bits 0-3  write size: 0 = all at once, k = pieces of 2^(k-1) bytes with a
 *             loop turn between them (so http-parser sees split tokens); the
 *             first 4 KiB only, then the rest at once
 *   bit 4     ASR_API_KEYS=fuzzkey1,fuzzkey2,
 *             ASR_ALLOWED_ORIGINS=https://fuzz.example, http://127.0.0.1:8000
 *             and ASR_CORS_ORIGINS=https://fuzz.example for this input
 *             (ASR_TOKEN_SECRET is always net.c's, so seeds carry tokens)
 *   bit 5     drain the worker after the first piece (as SIGTERM would)
 *   bit 6     half-close (shutdown SHUT_WR) after the last byte, before
 *             the answers are read (EOF while a response is pending)
 *   bit 7     small socket buffers: the server's writes go short
 * The connection is then settled (answers read, REST jobs finished), closed,
 * and everything is checked to be freed. Successful upgrades continue as
 * WebSocket with whatever bytes follow; fuzz_ws covers that side in depth.
 *
 * Oracle (API.md "HTTP errors", "Request ids"): the bytes the server sent
 * must parse as HTTP/1.1 responses (http-parser in response mode) up to a
 * 101; every response carries X-Request-Id; every 4xx/5xx has a JSON body
 * {"error":{"code":string,"message":string}} (but the health body of a
 * draining 503); a 405 has Allow; a 400, 408,
 * 411, 413 or 431 says Connection: close and nothing follows it; nothing
 * follows a Connection: close response; an Access-Control-Allow-Origin
 * names the one listed origin, and only under bit 4 (CORS on). (Skipped when the input holds
 * "HEAD", whose answers have no body for their Content-Length.) */
#define _GNU_SOURCE /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <jansson.h>

#include "api/api.h"
#include "common.h"
#include "net/conn.h"
#include "net/http.h"
#include "net.h"
#include "server/worker.h"

/* ---- the response oracle ------------------------------------------------ */

static int cors_on_;               /* this input has ASR_CORS_ORIGINS (bit 4) */

struct rcheck {
    int  status;
    int  in_field, field;          /* header being read: 1 x-request-id, 2 connection, 3 allow, 4 a-c-allow-origin, 0 other */
    char name[32];
    size_t name_len;
    int  has_rid, has_allow, close;
    struct buf body;
    int  after_close;              /* a response followed Connection: close */
    int  responses;
    int  upgraded;
};

static int rc_begin(http_parser *p) {
    struct rcheck *r = p->data;
    if (r->close) r->after_close = 1;
    r->has_rid = r->has_allow = r->close = 0;
    r->name_len = 0;
    r->in_field = 0;
    buf_reset(&r->body);
    return 0;
}

static int rc_field(http_parser *p, const char *at, size_t n) {
    struct rcheck *r = p->data;
    if (!r->in_field) r->name_len = 0;
    r->in_field = 1;
    size_t k = n < sizeof r->name - 1 - r->name_len ? n : sizeof r->name - 1 - r->name_len;
    memcpy(r->name + r->name_len, at, k);
    r->name_len += k;
    r->name[r->name_len] = '\0';
    return 0;
}

static int rc_value(http_parser *p, const char *at, size_t n) {
    struct rcheck *r = p->data;
    if (r->in_field) {
        r->in_field = 0;
        r->field = strcasecmp(r->name, "x-request-id") == 0 ? 1 : strcasecmp(r->name, "connection") == 0 ? 2
                   : strcasecmp(r->name, "allow") == 0      ? 3
                   : strcasecmp(r->name, "access-control-allow-origin") == 0 ? 4 : 0;
        if (r->field == 1) r->has_rid = n > 0;
        if (r->field == 3) r->has_allow = 1;
        /* the origin as the client spelled it (case aside); one piece here */
        if (r->field == 4 && (!cors_on_ || n != 20 || strncasecmp(at, "https://fuzz.example", 20) != 0))
            fuzz_fail("fuzz_http: Access-Control-Allow-Origin %.*s%s", (int)(n < 80 ? n : 80), at,
                      cors_on_ ? "" : " with CORS off");
    }
    if (r->field == 2 && n == 5 && strncasecmp(at, "close", 5) == 0) r->close = 1;
    return 0;
}

static int rc_headers(http_parser *p) {
    struct rcheck *r = p->data;
    r->status = (int)p->status_code;
    if (r->status == 101) {
        r->upgraded = 1;
        return 2; /* no body; the rest is WebSocket */
    }
    return 0;
}

static int rc_body(http_parser *p, const char *at, size_t n) {
    struct rcheck *r = p->data;
    buf_append(&r->body, at, n);
    return 0;
}

static int rc_complete(http_parser *p) {
    struct rcheck *r = p->data;
    int st = r->status;
    r->responses++;
    if (r->after_close) fuzz_fail("fuzz_http: a response after Connection: close (status %d)", st);
    if (!r->has_rid) fuzz_fail("fuzz_http: response %d without X-Request-Id", st);
    if (st == 405 && !r->has_allow) fuzz_fail("fuzz_http: 405 without Allow");
    if ((st == 400 || st == 408 || st == 411 || st == 413 || st == 431) && !r->close)
        fuzz_fail("fuzz_http: %d without Connection: close", st);
    if (st >= 400) {
        json_error_t e;
        json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &e);
        json_t *err = json_object_get(j, "error");
        /* GET /v1/health answers 503 with its own body while draining. */
        int health = st == 503 && json_is_string(json_object_get(j, "status"));
        if (!health &&
            (!json_is_string(json_object_get(err, "code")) || !json_is_string(json_object_get(err, "message"))))
            fuzz_fail("fuzz_http: %d body is not {\"error\":{\"code\",\"message\"}}: %.200s", st,
                      r->body.data ? r->body.data : "");
        json_decref(j);
    }
    if (r->status == 101) {
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings rc_settings = {
    .on_message_begin = rc_begin, .on_header_field = rc_field, .on_header_value = rc_value,
    .on_headers_complete = rc_headers, .on_body = rc_body, .on_message_complete = rc_complete,
};

static void check_responses(const struct buf *rx, int complete) {
    static struct rcheck r;
    http_parser p;
    memset(&r.status, 0, offsetof(struct rcheck, body));
    r.after_close = r.responses = r.upgraded = 0;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &r;
    if (!rx->len) return;
    size_t n = http_parser_execute(&p, &rc_settings, rx->data, rx->len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if (r.upgraded || e == HPE_PAUSED) return;
    /* A capture cut at its bound may end inside a response. */
    if (e != HPE_OK || (n != rx->len && complete))
        fuzz_fail("fuzz_http: the server's bytes are not HTTP responses (%s at byte %zu of %zu): %.80s",
                  http_errno_name(e), n, rx->len, rx->data + (n < rx->len ? n : 0));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_net_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    data++;
    size--;
    cors_on_ = (flags & 0x10) != 0;
    if (flags & 0x10) {
        snprintf(fuzz_cfg.api_keys, sizeof fuzz_cfg.api_keys, "fuzzkey1,fuzzkey2");
        snprintf(fuzz_cfg.allowed_origins, sizeof fuzz_cfg.allowed_origins,
                 "https://fuzz.example, http://127.0.0.1:8000");
        snprintf(fuzz_cfg.cors_origins, sizeof fuzz_cfg.cors_origins, "https://fuzz.example");
    }

    struct fuzz_client fc;
    fuzz_client_open(&fc, FUZZ_OPEN_CAPTURE | ((flags & 0x80) ? FUZZ_OPEN_SMALLBUF : 0));
    unsigned k = flags & 0x0f;
    size_t piece = k ? (size_t)1 << (k - 1) : (size ? size : 1);
    size_t off = 0;
    int drained = 0;
    do {
        /* Small pieces for the first 4 KiB, then the rest at once. */
        size_t n = off >= 4096 ? size - off : size - off < piece ? size - off : piece;
        fuzz_client_send(&fc, data + off, n);
        off += n;
        if ((flags & 0x20) && !drained) {
            /* What worker.c's start_drain does to HTTP connections. */
            struct worker *w = fuzz_net_worker();
            drained = 1;
            w->api_env.draining = 1;
            for (struct conn *c = w->conns.conns, *nx; c; c = nx) {
                nx = c->next;
                if (c->kind == CONN_HTTP && !conn_closing(c)) http_conn_drain(c);
            }
        }
    } while (off < size && !fc.eof);
    if (flags & 0x40) fuzz_client_shutdown(&fc);
    else fuzz_client_settle(&fc);
    if (!memmem(data, size, "HEAD", 4) && !memmem(data, size, "head", 4))
        check_responses(&fc.rx, fc.rx.len < 65536);
    fuzz_client_close(&fc);
    fuzz_net_reset();
    return 0;
}
