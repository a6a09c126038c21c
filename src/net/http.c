#include "net/http.h"

#include <assert.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"

/* A body renews its ASR_BODY_TIMEOUT_S deadline with every this many bytes:
 * any real client on any real link sends 1 KiB in seconds, a slowloris body
 * trickled a byte at a time does not. */
#define HTTP_BODY_PROGRESS_BYTES 1024

/* After a refusal made while the client may still be sending its body (413,
 * 503, an early answer to Expect: 100-continue), the connection goes on
 * reading and discarding until the client has been silent this long, for at
 * most HTTP_LINGER_MAX_MS in all: closing with unread bytes makes the kernel
 * send a reset, and a client still sending would lose the answer to it. */
#define HTTP_LINGER_MS 1000
#define HTTP_LINGER_MAX_MS 10000

/* Header capture (cb_header_field, cb_header_value): what the last piece
 * was. http-parser hands names and values over in pieces; a piece of the
 * same kind extends the current one. */
enum hdr_cap { CAP_NONE, CAP_NAME, CAP_VALUE };

struct http_conn {
    http_parser parser;
    struct conn *c;                  /* borrowed: the connection we serve */
    const struct http_server *srv;   /* borrowed: routes and limits */
    struct http_req req;
    struct buf held;                 /* bytes received and not yet parsed; owned */
    enum http_state state;           /* the request's phase: only http_set_state changes it */
    enum hdr_cap cap;                /* header capture: the last piece was a name or a value */
    size_t header_bytes;             /* request line + headers so far */
    int  error;                      /* asr_err found while parsing (this pass of process), 0 = none */
    const char *error_msg;           /* its message (static), NULL = the default */
    int  method_known;               /* the request line's method was read (req.method is valid) */
    int  fold;                       /* obs-fold scanner state (scan_head) */
    unsigned char rl_n;              /* bytes in rl_tail */
    char rl_tail[9];                 /* the request line's last bytes: "HTTP/1.1\r" */
    unsigned served;                 /* responses written on this connection */
    uint64_t chunk_left;             /* bytes of the current chunk still to come */
    uint64_t body_expect;            /* the request's Content-Length, 0 = unknown (chunked) or none */
    int  body_declared;              /* the request's head announced a body (chunked or a length > 0) */
    size_t   body_mark;              /* body length when the body timer was last renewed */
    int  crlf_need;                  /* bytes of the CRLF after a chunk still to check */
    const char *exec_end;            /* end of the bytes being parsed */
    /* Flags beside the state. peer_eof and draining only decide how the
     * current request ends (with Connection: close), whatever its phase;
     * in_process is a re-entrancy guard of process(), on the C stack's
     * behalf, not a phase of the request. */
    int  peer_eof;                   /* the client half-closed during a request */
    int  draining;                   /* answer the current request, then close */
    int  in_process;                 /* process() is on the stack */
    int  head_in;                    /* the request's head is complete: its headers can be read */
    int  streaming;                  /* BUSY with a streamed answer: 1 chunked, 2 close-delimited */
    int  stream_status;              /* its status, for the request's accounting */
    /* linger: answered (DONE) before the body was all read; reading and
     * discarding until the client is silent (HTTP_LINGER_MS), the bytes
     * run out or the deadline passes. Set by fail_parse, acted on by
     * finish_request; a detail of DONE, not a state of its own. */
    int  linger;
    size_t linger_left;              /* bytes still to discard before closing anyway */
    uint64_t linger_deadline;        /* loop time (ms) to close by */
    void (*abort_fn)(void *ctx);     /* async handler's abort hook */
    void *abort_ctx;
};

struct conn *http_conn_of(struct http_conn *hc) { return hc->c; }

/* ---- state ------------------------------------------------------------------ */

static const char *const state_names[] = {
    [HTTP_ST_IDLE] = "idle", [HTTP_ST_HEAD] = "head", [HTTP_ST_BODY] = "body", [HTTP_ST_READY] = "ready",
    [HTTP_ST_BUSY] = "busy", [HTTP_ST_DONE] = "done", [HTTP_ST_UPGRADED] = "upgraded",
};

const char *http_state_name(enum http_state st) {
    return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st] : "?";
}

enum http_state http_state(const struct http_conn *hc) { return hc->state; }

/* The moves of http.h's diagram. */
static const unsigned char legal[7][7] = {
    /* to:         IDLE HEAD BODY READY BUSY DONE UPGRADED */
    /* IDLE     */ {0,   1,   0,   0,    1,   0,   0},
    /* HEAD     */ {0,   0,   1,   0,    1,   0,   0},
    /* BODY     */ {0,   0,   0,   1,    1,   0,   0},
    /* READY    */ {0,   0,   0,   0,    1,   0,   0},
    /* BUSY     */ {1,   0,   0,   0,    0,   1,   1},
    /* DONE     */ {0,   0,   0,   0,    0,   0,   0},
    /* UPGRADED */ {0,   0,   0,   0,    0,   0,   0},
};

/* Every change of hc->state goes through here. Returns 0, or ASR_EINVAL
 * for a move the table does not have (the state is kept). The moves that
 * http-parser's callbacks make (to HEAD, BODY, READY) follow the bytes a
 * client sent, so parser_move turns a refused one into a 400; every other
 * move is ours, and http_move asserts it. */
static int http_set_state(struct http_conn *hc, enum http_state to) {
    if (!legal[hc->state][to]) return ASR_EINVAL;
    hc->state = to;
    return 0;
}

/* A move of our own: an illegal one is a bug here, not the client's. It is
 * logged and asserted; a build without asserts keeps the state. */
static void http_move(struct http_conn *hc, enum http_state to) {
    if (http_set_state(hc, to) == 0) return;
    struct log_line *l = log_begin(LOG_ERROR, "illegal http state change");
    if (l) {
        log_u64(l, "conn", hc->c->id);
        log_str(l, "from", http_state_name(hc->state));
        log_str(l, "to", http_state_name(to));
        log_end(l);
    }
    assert(!"illegal http state change");
}


/* ---- request capture -------------------------------------------------- */

static void req_reset(struct http_req *r) {
    buf_reset(&r->head);
    buf_reset(&r->body);
    r->url_off = r->url_len = r->path_len = r->query_off = r->query_len = 0;
    r->n_headers = 0;
    r->keep_alive = r->upgrade = 0;
    r->request_id[0] = '\0';
    r->route = ROUTE_OTHER;
}

/* Records why the request is refused; returns 1 so callbacks can stop the
 * parser with `return refuse(...)`. */
static int refuse(struct http_conn *hc, int err, const char *msg) {
    hc->error = err;
    hc->error_msg = msg;
    return 1;
}

/* A move that http-parser's callbacks make, on the client's bytes: one
 * the table does not have is the client's error (400). Returns 0, or 1 to
 * stop the parser. */
static int parser_move(struct http_conn *hc, enum http_state to) {
    if (http_set_state(hc, to) == 0) return 0;
    return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: message out of order");
}

static int count_head(struct http_conn *hc, size_t n) {
    hc->header_bytes += n;
    if (hc->header_bytes > hc->srv->max_header_bytes) return refuse(hc, ASR_E_HEADERS_TOO_LARGE, NULL);
    return 0;
}

/* RFC 9110 5.6.2 tchar. Non-strict http-parser lets spaces into a header
 * name and then matches "Transfer-Encoding " as Transfer-Encoding: a
 * request smuggling vector that RFC 9112 5.1 says to refuse with 400. */
static int is_tchar(unsigned char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* What non-strict http-parser lets through in the head is checked on the
 * bytes it took, before the request is acted on:
 * - obsolete line folding (a header line starting with SP or HT) is refused
 *   with 400 (RFC 9112 5.2 allows that or unfolding; http-parser unfolds,
 *   which makes "Transfer-Encoding:\r\n chunked" chunked);
 * - the protocol name: it checks "HTTP/" only loosely ("HTTX/1.1" passes).
 * Line starts are tracked from the request line to the blank line that
 * ends the head, across reads. */
enum { FOLD_START, FOLD_REQ_LINE, FOLD_LINE, FOLD_LF, FOLD_LF_CR, FOLD_DONE };

static int version_ok(const struct http_conn *hc) {
    const char *t = hc->rl_tail;
    size_t n = hc->rl_n;
    if (n && t[n - 1] == '\r') n--;
    return n >= 8 && memcmp(t + n - 8, "HTTP/", 5) == 0 && t[n - 3] >= '0' && t[n - 3] <= '9' &&
           t[n - 2] == '.' && t[n - 1] >= '0' && t[n - 1] <= '9';
}

static int scan_head(struct http_conn *hc, const char *p, size_t n) {
    for (size_t i = 0; i < n && hc->fold != FOLD_DONE; i++) {
        char ch = p[i];
        if (hc->fold == FOLD_START) { /* empty lines before the request line are skipped */
            if (ch == '\r' || ch == '\n') continue;
            hc->fold = FOLD_REQ_LINE;
            hc->rl_n = 0;
        }
        switch (hc->fold) {
        case FOLD_REQ_LINE:
            if (ch == '\n') {
                hc->fold = FOLD_LF;
                if (!version_ok(hc)) return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: bad HTTP version");
            } else {
                if (hc->rl_n == sizeof hc->rl_tail) {
                    memmove(hc->rl_tail, hc->rl_tail + 1, sizeof hc->rl_tail - 1);
                    hc->rl_n--;
                }
                hc->rl_tail[hc->rl_n++] = ch;
            }
            break;
        case FOLD_LINE:
            if (ch == '\n') hc->fold = FOLD_LF;
            break;
        case FOLD_LF:
            if (ch == ' ' || ch == '\t')
                return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: obsolete line folding in a header");
            hc->fold = ch == '\r' ? FOLD_LF_CR : ch == '\n' ? FOLD_DONE : FOLD_LINE;
            break;
        case FOLD_LF_CR:
            hc->fold = ch == '\n' ? FOLD_DONE : FOLD_LINE;
            break;
        }
    }
    return 0;
}

static int cb_message_begin(http_parser *p) {
    struct http_conn *hc = p->data;
    if (parser_move(hc, HTTP_ST_HEAD)) return 1;
    req_reset(&hc->req);
    hc->header_bytes = 0;
    hc->cap = CAP_NONE;
    hc->method_known = 0;
    hc->chunk_left = 0;
    hc->crlf_need = 0;
    hc->head_in = 0;
    hc->body_declared = 0;
    hc->body_expect = 0;
    hc->req.start_ns = util_now_ns();
    return 0;
}

static int cb_url(http_parser *p, const char *at, size_t n) {
    struct http_conn *hc = p->data;
    hc->req.method = p->method; /* known once the URL starts: for the log line */
    hc->method_known = 1;
    if (count_head(hc, n)) return 1;
    if (buf_append(&hc->req.head, at, n) != 0) return refuse(hc, ASR_E_HEADERS_TOO_LARGE, NULL);
    hc->req.url_len += n;
    return 0;
}

/* Names and values arrive in pieces; each piece extends the current one.
 * They are stored NUL-separated in req.head, which is bounded by the header
 * limit. Trailer fields of a chunked body count toward the limit but are
 * not stored: they must not act as headers (RFC 9110 6.5.1), e.g. supply a
 * Content-Type or a key after the body. */
static int cb_header_field(http_parser *p, const char *at, size_t n) {
    struct http_conn *hc = p->data;
    struct http_req *r = &hc->req;
    if (count_head(hc, n)) return 1;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)at[i]))
            return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: invalid character in a header name");
    if (hc->state != HTTP_ST_HEAD) return 0; /* after the head: a trailer */
    if (hc->cap != CAP_NAME) {
        if (r->n_headers == HTTP_MAX_HEADERS) return refuse(hc, ASR_E_HEADERS_TOO_LARGE, NULL);
        buf_append(&r->head, "", 1);
        r->hdr_name[r->n_headers] = r->head.len;
        r->hdr_name_len[r->n_headers] = 0;
        r->hdr_val[r->n_headers] = 0;
        r->hdr_val_len[r->n_headers] = 0;
        r->n_headers++;
        hc->cap = CAP_NAME;
    }
    if (buf_append(&r->head, at, n) != 0) return refuse(hc, ASR_E_HEADERS_TOO_LARGE, NULL);
    r->hdr_name_len[r->n_headers - 1] += n;
    return 0;
}

static int cb_header_value(http_parser *p, const char *at, size_t n) {
    struct http_conn *hc = p->data;
    struct http_req *r = &hc->req;
    if (count_head(hc, n)) return 1;
    if (hc->state != HTTP_ST_HEAD) return 0; /* after the head: a trailer */
    if (hc->cap != CAP_VALUE) {
        buf_append(&r->head, "", 1);
        r->hdr_val[r->n_headers - 1] = r->head.len;
        hc->cap = CAP_VALUE;
    }
    if (buf_append(&r->head, at, n) != 0) return refuse(hc, ASR_E_HEADERS_TOO_LARGE, NULL);
    r->hdr_val_len[r->n_headers - 1] += n;
    return 0;
}

/* v, without surrounding spaces and tabs, equals lit ignoring case. */
static int value_is(const char *v, const char *lit) {
    if (!v) return 0;
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    return util_ieq(v, n, lit);
}

/* CORS (below): what it makes of a request, decided in dispatch and, for
 * a request waiting for 100 Continue, in expect_continue. */
enum cors_verdict { CORS_PASS, CORS_REFUSE, CORS_PREFLIGHT };
static enum cors_verdict cors_verdict(const struct http_conn *hc);
#define CORS_REFUSAL_MSG "this Origin may not call this server (ASR_CORS_ORIGINS)"

/* Whether route rt serves path: an exact route its whole path, a prefix
 * route (path ending in '/') every longer path under it. */
static int route_matches(const struct http_route *rt, const char *path, size_t pl) {
    size_t rl = strlen(rt->path);
    if (rt->prefix) return pl > rl && memcmp(rt->path, path, rl) == 0;
    return rl == pl && memcmp(rt->path, path, pl) == 0;
}

/* Which kind of route serves path: 0 exact routes, 1 prefix routes (only
 * when no exact route has the path: /v1/jobs is not /v1/jobs/<id>), -1 none. */
static int route_pass(const struct http_server *srv, const char *path, size_t pl) {
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < srv->n_routes; i++)
            if (srv->routes[i].prefix == pass && route_matches(&srv->routes[i], path, pl)) return pass;
    return -1;
}

/* The route for the request's path and method (GET routes answer HEAD
 * too), or NULL; *path_route is the metrics route of the path when some
 * route has it, else ROUTE_OTHER, and *path_known whether one has (NULL
 * then is a 405, not a 404). */
static const struct http_route *route_find(const struct http_server *srv, const struct http_req *r,
                                           enum metric_route *path_route, int *path_known) {
    size_t pl;
    const char *path = http_path(r, &pl);
    *path_route = ROUTE_OTHER;
    *path_known = 0;
    int pass = route_pass(srv, path, pl);
    if (pass < 0) return NULL;
    const struct http_route *known = NULL;
    for (size_t i = 0; i < srv->n_routes; i++) {
        const struct http_route *rt = &srv->routes[i];
        if (rt->prefix != pass || !route_matches(rt, path, pl)) continue;
        if (!known) known = rt;
        if (rt->method == r->method || (rt->method == HTTP_GET && r->method == HTTP_HEAD)) {
            *path_route = rt->route;
            return rt;
        }
    }
    *path_route = known->route;
    *path_known = 1;
    return NULL;
}

/* Expect: 100-continue on a request with a body (cb_headers_complete, after
 * the limits passed): the route decides now, before the body is sent. No
 * such route or method, or the route's check refusing, is answered at once
 * (process: fail_parse, with the connection closed after it); else the
 * client is told to send. An HTTP/1.0 request's expectation is ignored
 * (RFC 9110 10.1.1); so is any other expectation. */
static int expect_continue(struct http_conn *hc, http_parser *p) {
    struct http_req *r = &hc->req;
    if (p->http_minor < 1 || !value_is(http_header(r, "expect", NULL), "100-continue")) return 0;
    enum metric_route mr;
    int known;
    const struct http_route *rt = route_find(hc->srv, r, &mr, &known);
    int fallback_serves = !rt && !known && hc->srv->fallback && (r->method == HTTP_GET || r->method == HTTP_HEAD);
    if (fallback_serves) mr = hc->srv->fallback_route;
    enum cors_verdict cv = cors_verdict(hc);
    if (cv == CORS_REFUSE) {
        r->route = mr;
        metrics.cors_refused++;
        return refuse(hc, ASR_E_ORIGIN_NOT_ALLOWED, CORS_REFUSAL_MSG);
    }
    if (cv == CORS_PREFLIGHT || fallback_serves) {
        rt = NULL; /* dispatch answers: the preflight, or the page's file */
    } else if (!rt) {
        r->route = mr;
        return known ? refuse(hc, ASR_E_METHOD, "method not allowed on this path")
                     : refuse(hc, ASR_E_NOT_FOUND, "no such route");
    }
    if (rt && rt->check) {
        const char *msg = NULL;
        int err = rt->check(rt->ctx, r, &msg);
        if (err) {
            r->route = rt->route;
            return refuse(hc, err, msg);
        }
    }
    /* Like every response, the interim one names the request (docs/API.md
     * "Request ids"). */
    struct buf b;
    buf_init(&b, 0);
    buf_printf(&b, "HTTP/1.1 100 Continue\r\nX-Request-Id: %s\r\n\r\n", r->request_id);
    conn_write(hc->c, b.data, b.len);
    buf_cleanup(&b);
    return 0;
}

static int cb_headers_complete(http_parser *p) {
    struct http_conn *hc = p->data;
    struct http_req *r = &hc->req;
    buf_append(&r->head, "", 1);
    /* NUL-terminate names and values in place: each is followed by a
     * separator byte we wrote, except the last value, terminated above. */
    for (int i = 0; i < r->n_headers; i++) {
        r->head.data[r->hdr_name[i] + r->hdr_name_len[i]] = '\0';
        if (r->hdr_val[i]) r->head.data[r->hdr_val[i] + r->hdr_val_len[i]] = '\0';
    }
    hc->head_in = 1;
    const char *url = r->head.data;
    const char *q = memchr(url, '?', r->url_len);
    r->path_len = q ? (size_t)(q - url) : r->url_len;
    if (q) {
        r->query_off = (size_t)(q - url) + 1;
        r->query_len = r->url_len - r->query_off;
    }
    r->method = p->method;
    r->keep_alive = http_should_keep_alive(p);
    r->upgrade = p->upgrade;
    size_t idl = 0;
    const char *rid = http_header(r, "x-request-id", &idl);
    if (rid && idl > 0 && idl < sizeof r->request_id) {
        int ok = 1;
        for (size_t i = 0; i < idl; i++)
            if (rid[i] <= 0x20 || rid[i] >= 0x7f || rid[i] == '"' || rid[i] == '\\') ok = 0;
        if (ok) memcpy(r->request_id, rid, idl + 1);
    }
    if (!r->request_id[0]) {
        char id[33];
        util_random_id(id);
        memcpy(r->request_id, id, 33);
    }
    if (parser_move(hc, HTTP_ST_BODY)) return 1;
    hc->body_declared = (p->flags & F_CHUNKED) || (p->content_length != ULLONG_MAX && p->content_length > 0);
    if (p->http_major != 1) return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: unsupported HTTP version");
    /* The one transfer coding understood is chunked, alone: with another one
     * the body length cannot be known (RFC 9112 6.3: 400 when chunked is not
     * last) or the body would be read still encoded. */
    int n_te = 0;
    for (int i = 0; i < r->n_headers; i++)
        if (util_ieq(r->head.data + r->hdr_name[i], r->hdr_name_len[i], "transfer-encoding")) n_te++;
    if (n_te && (n_te > 1 || !(p->flags & F_CHUNKED) ||
                 !value_is(http_header(r, "transfer-encoding", NULL), "chunked")))
        return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: Transfer-Encoding other than chunked");
    int has_body_method = p->method == HTTP_POST || p->method == HTTP_PUT || p->method == HTTP_PATCH;
    if (p->content_length != ULLONG_MAX && p->content_length > hc->srv->max_upload_bytes)
        return refuse(hc, ASR_E_TOO_LARGE, NULL);
    if (has_body_method && !(p->flags & F_CHUNKED) && p->content_length == ULLONG_MAX && !p->upgrade)
        return refuse(hc, ASR_E_LENGTH_REQUIRED, NULL);
    /* A body the worker cannot hold now is refused before it is sent (or
     * while it is being sent: the answer lingers); one that fits is charged
     * as its bytes arrive (cb_body), so a client must send the bytes it
     * holds the budget with. */
    hc->body_expect = p->content_length != ULLONG_MAX ? p->content_length : 0;
    if (hc->body_expect && budget_check(hc->srv->body_budget, (size_t)hc->body_expect + 1) != 0) {
        enum metric_route mr;
        int known;
        route_find(hc->srv, r, &mr, &known);
        r->route = mr;
        return refuse(hc, ASR_E_SERVER_BUSY, "too many request bodies in flight on this worker; retry later");
    }
    if (((p->flags & F_CHUNKED) || hc->body_expect) && !p->upgrade && expect_continue(hc, p)) return 1;
    /* A body a handler did not adopt (another route, an early answer) is
     * freed here rather than forgotten. */
    buf_cleanup(&r->body);
    buf_init(&r->body, hc->srv->max_upload_bytes);
    buf_set_budget(&r->body, hc->srv->body_budget);
    /* The head deadline is over; a body gets its own, renewed by progress
     * (cb_body), so a large upload on a slow link passes and a trickle
     * does not. */
    if ((p->flags & F_CHUNKED) || (p->content_length != ULLONG_MAX && p->content_length > 0)) {
        hc->body_mark = 0;
        conn_timer(hc->c, hc->srv->body_timeout_ms);
    }
    return 0;
}

/* A chunk that cannot fit in what is left of the upload limit is refused
 * before its bytes are read (like a too large Content-Length). */
static int cb_chunk_header(http_parser *p) {
    struct http_conn *hc = p->data;
    size_t limit = hc->srv->max_upload_bytes, have = hc->req.body.len;
    if (p->content_length > limit - have) return refuse(hc, ASR_E_TOO_LARGE, NULL);
    hc->chunk_left = p->content_length;
    return 0;
}

/* The body's bytes, charged to the body budget as the buffer grows: by
 * doubling, but never past a stated Content-Length, so a body whose length
 * is known ends in a buffer of exactly its size. */
static int body_append(struct http_conn *hc, const char *at, size_t n) {
    struct buf *b = &hc->req.body;
    if (hc->body_expect && b->len + n + 1 > b->cap) {
        size_t want = b->cap ? 2 * b->cap : 4096;
        if (want > hc->body_expect + 1) want = (size_t)hc->body_expect + 1;
        if (want < b->len + n + 1) want = b->len + n + 1;
        int rc = buf_reserve_exact(b, want - b->len - 1);
        if (rc != 0) return rc;
    }
    return buf_append(b, at, n);
}

/* Non-strict http-parser skips the two bytes after a chunk's data without
 * looking at them, so "4\r\nabcdXY0\r\n\r\n" is a complete body: a framing
 * a stricter front end reads differently (request smuggling). The bytes are
 * checked here: in [p, end), and where they are not there yet, at the start
 * of the next read. */
static int check_crlf(struct http_conn *hc, const char *p, const char *end) {
    for (; hc->crlf_need && p < end; p++, hc->crlf_need--)
        if (*p != "\r\n"[2 - hc->crlf_need])
            return refuse(hc, ASR_E_BAD_REQUEST, "malformed request: chunk data not followed by CRLF");
    return 0;
}

static int cb_body(http_parser *p, const char *at, size_t n) {
    struct http_conn *hc = p->data;
    int rc = body_append(hc, at, n);
    if (rc == ASR_EAGAIN)
        return refuse(hc, ASR_E_SERVER_BUSY, "too many request bodies in flight on this worker; retry later");
    if (rc != 0) return refuse(hc, ASR_E_TOO_LARGE, NULL);
    if (hc->req.body.len - hc->body_mark >= HTTP_BODY_PROGRESS_BYTES) {
        hc->body_mark = hc->req.body.len;
        conn_timer(hc->c, hc->srv->body_timeout_ms);
    }
    if ((p->flags & F_CHUNKED) && n && (hc->chunk_left -= n) == 0) {
        hc->crlf_need = 2;
        return check_crlf(hc, at + n, hc->exec_end);
    }
    return 0;
}

static int cb_message_complete(http_parser *p) {
    struct http_conn *hc = p->data;
    if (parser_move(hc, HTTP_ST_READY)) return 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_chunk_header = cb_chunk_header,
    .on_message_complete = cb_message_complete,
};

/* ---- lookups -------------------------------------------------------------- */

const char *http_header(const struct http_req *r, const char *name, size_t *len) {
    for (int i = 0; i < r->n_headers; i++) {
        if (!r->hdr_val[i]) continue;
        if (util_ieq(r->head.data + r->hdr_name[i], r->hdr_name_len[i], name)) {
            if (len) *len = r->hdr_val_len[i];
            return r->head.data + r->hdr_val[i];
        }
    }
    return NULL;
}

const char *http_path(const struct http_req *r, size_t *len) {
    *len = r->path_len;
    return r->head.data + r->url_off;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int http_query(const struct http_req *r, const char *name, char *out, size_t outlen) {
    const char *q = r->head.data + r->query_off, *end = q + r->query_len;
    size_t nl = strlen(name);
    if (!r->query_len) return -1;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - q) == nl && memcmp(q, name, nl) == 0) {
            size_t o = 0;
            for (const char *v = eq ? eq + 1 : pe; v < pe; v++) {
                int ch = (unsigned char)*v;
                if (ch == '+') ch = ' ';
                else if (ch == '%' && pe - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    ch = hexval(v[1]) * 16 + hexval(v[2]);
                    v += 2;
                }
                if (ch == 0 || o + 1 >= outlen) return -2; /* %00: no C string holds it */
                out[o++] = (char)ch;
            }
            out[o] = '\0';
            return (int)o;
        }
        q = pe + 1;
    }
    return -1;
}

/* ---- responses ------------------------------------------------------------- */

static const char *reason(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void process(struct http_conn *hc);
static void http_free(struct http_conn *hc);

/* Counts a response and writes its one log line (every request, upgrades
 * included). */
static void account_request(struct http_conn *hc, int status) {
    struct http_req *r = &hc->req;
    double ms = (double)(util_now_ns() - r->start_ns) / 1e6;
    metrics_count_request(r->route, status);
    if (r->route == ROUTE_TRANSCRIBE) hist_add(&metrics.lat_rest, ms);
    struct log_line *l = log_begin(LOG_INFO, "request");
    if (l) {
        size_t pl;
        const char *path = r->head.data ? http_path(r, &pl) : "";
        char pbuf[256];
        snprintf(pbuf, sizeof pbuf, "%.*s", (int)(r->head.data ? (pl < 200 ? pl : 200) : 0), path);
        log_str(l, "request_id", r->request_id);
        log_str(l, "method", hc->method_known ? http_method_str((enum http_method)r->method) : "-");
        log_str(l, "path", pbuf);
        log_u64(l, "status", (uint64_t)status);
        log_f64(l, "duration_ms", ms);
        log_str(l, "peer", hc->c->peer);
        log_end(l);
    }
}

static void finish_request(struct http_conn *hc, int status, int close_after) {
    struct http_req *r = &hc->req;
    account_request(hc, status);
    hc->served++;
    hc->abort_fn = NULL;
    /* Bytes that fail before the next request begins are not this request. */
    r->request_id[0] = '\0';
    r->url_len = r->path_len = r->query_len = 0;
    r->route = ROUTE_OTHER;
    hc->method_known = 0;
    hc->head_in = 0;
    buf_cleanup(&r->body); /* an idle keep-alive connection holds no body */
    if (close_after || !r->keep_alive || hc->draining || hc->peer_eof) {
        http_move(hc, HTTP_ST_DONE); /* parse nothing more */
        if (hc->linger && !hc->peer_eof) {
            /* The body may still be coming: read and discard it (on_read) so
             * the answer is not lost to a reset; close on the client's EOF,
             * its silence (on_timer) or the limits. */
            buf_cleanup(&hc->held);
            hc->linger_left = hc->srv->max_upload_bytes + 65536;
            hc->linger_deadline = uv_now(hc->c->set->loop) + HTTP_LINGER_MAX_MS;
            conn_read_resume(hc->c);
            conn_timer(hc->c, HTTP_LINGER_MS);
            return;
        }
        conn_close_after_write(hc->c);
        return;
    }
    http_move(hc, HTTP_ST_IDLE);
    conn_timer(hc->c, hc->srv->handshake_timeout_ms);
    conn_read_resume(hc->c);
    process(hc);
}

/* ---- CORS (http.h, struct http_cors) ------------------------------------------ */

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* p[0..*n) without the spaces and tabs around it. */
static const char *trim(const char *p, size_t *n) {
    while (*n && is_space(*p)) p++, (*n)--;
    while (*n && is_space(p[*n - 1])) (*n)--;
    return p;
}

/* An entry of list equals v[0..vl) ignoring ASCII case, or is "*". */
static int list_has(const char *list, const char *v, size_t vl) {
    if (!list) return 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *entry = trim(p, &l);
        if (l == 1 && entry[0] == '*') return 1;
        if (l && l == vl && strncasecmp(entry, v, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* An origin is public (scheme, host, port): plain comparisons will do. The
 * server's own origin is recognised by its host and port alone, whatever
 * the scheme (a TLS proxy in front sees https, asrd plain HTTP). */
enum http_origin http_origin_check(const char *list, const struct http_req *req) {
    size_t ol = 0, hl = 0;
    const char *o = http_header(req, "origin", &ol);
    if (!o) return HTTP_ORIGIN_NONE;
    o = trim(o, &ol);
    const char *host = http_header(req, "host", &hl);
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= ol && !sep; i++)
        if (memcmp(o + i, "://", 3) == 0) sep = o + i;
    if (host && sep) {
        host = trim(host, &hl);
        size_t al = ol - (size_t)(sep + 3 - o);
        if (hl && al == hl && strncasecmp(sep + 3, host, hl) == 0) return HTTP_ORIGIN_SAME;
    }
    return list_has(list, o, ol) ? HTTP_ORIGIN_LISTED : HTTP_ORIGIN_OTHER;
}

static const char *cors_list(const struct http_server *srv) {
    const struct http_cors *c = srv->cors;
    return c && c->origins && c->origins[0] ? c->origins : NULL;
}

/* What CORS makes of a request whose head is complete (http.h, struct
 * http_cors): refused (an Origin not listed), a preflight from a listed
 * origin to answer, or nothing to do (CORS off, an upgrade, no Origin, the
 * server's own). */
static enum cors_verdict cors_verdict(const struct http_conn *hc) {
    const struct http_req *r = &hc->req;
    const char *list = cors_list(hc->srv);
    if (!list || r->upgrade) return CORS_PASS;
    enum http_origin o = http_origin_check(list, r);
    if (o == HTTP_ORIGIN_OTHER) return CORS_REFUSE;
    if (o == HTTP_ORIGIN_LISTED && r->method == HTTP_OPTIONS && http_header(r, "access-control-request-method", NULL))
        return CORS_PREFLIGHT;
    return CORS_PASS;
}

/* The CORS headers of an answer: Vary: Origin whenever the answer depends
 * on it (a list other than "*"); Allow-Origin and Expose-Headers when the
 * request came from a listed origin (its head must be complete to be read:
 * refusals of a head still arriving carry none). */
static void cors_headers(struct http_conn *hc, struct buf *h) {
    const char *list = cors_list(hc->srv);
    if (!list) return;
    size_t ll = strlen(list);
    const char *l = trim(list, &ll);
    int star = ll == 1 && l[0] == '*';
    if (!star) buf_puts(h, "Vary: Origin\r\n");
    if (!hc->head_in || hc->req.upgrade || http_origin_check(list, &hc->req) != HTTP_ORIGIN_LISTED) return;
    size_t ol = 0;
    const char *o = http_header(&hc->req, "origin", &ol);
    o = trim(o, &ol);
    if (star) buf_puts(h, "Access-Control-Allow-Origin: *\r\n");
    else buf_printf(h, "Access-Control-Allow-Origin: %.*s\r\n", (int)ol, o);
    buf_puts(h, "Access-Control-Expose-Headers: " HTTP_CORS_EXPOSE_HEADERS "\r\n");
}

static void respond(struct http_conn *hc, int status, const char *ctype, const char *body, size_t len,
                    const char *extra, int close_after) {
    if (hc->state == HTTP_ST_UPGRADED || conn_closing(hc->c) || hc->streaming) return;
    struct buf h;
    buf_init(&h, 0);
    int keep = hc->req.keep_alive && !close_after && !hc->draining && !hc->peer_eof;
    /* 204 and 304 have no body, and say nothing of one (RFC 9110 8.6). */
    int bodyless = status == 204 || status == 304;
    buf_printf(&h, "HTTP/1.1 %d %s\r\nServer: asrd\r\n", status, reason(status));
    if (!bodyless) buf_printf(&h, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
    buf_printf(&h, "X-Request-Id: %s\r\nConnection: %s\r\n", hc->req.request_id[0] ? hc->req.request_id : "-",
               keep ? "keep-alive" : "close");
    cors_headers(hc, &h);
    buf_printf(&h, "%s\r\n", extra ? extra : "");
    conn_write(hc->c, h.data, h.len);
    if (len && !bodyless && hc->req.method != HTTP_HEAD) conn_write(hc->c, body, len);
    buf_cleanup(&h);
    finish_request(hc, status, !keep);
}

void http_respond(struct http_conn *hc, int status, const char *ctype, const char *body, size_t len,
                  const char *extra) {
    respond(hc, status, ctype, body, len, extra, 0);
}

void http_respond_close(struct http_conn *hc, int status, const char *ctype, const char *body, size_t len,
                        const char *extra) {
    respond(hc, status, ctype, body, len, extra, 1);
}

int http_status_closes(int status) {
    return status == 400 || status == 408 || status == 411 || status == 413 || status == 431;
}

/* A streamed answer (http_stream_begin): the head now, the body in
 * pieces. The request is accounted when it ends, like any other. */
void http_stream_begin(struct http_conn *hc, int status, const char *ctype, const char *extra) {
    if (hc->state == HTTP_ST_UPGRADED || conn_closing(hc->c) || hc->streaming) return;
    struct buf h;
    buf_init(&h, 0);
    /* HTTP/1.0 has no chunked coding: the end of the body is the close. */
    int chunked = hc->parser.http_major > 1 || (hc->parser.http_major == 1 && hc->parser.http_minor >= 1);
    int keep = chunked && hc->req.keep_alive && !hc->draining && !hc->peer_eof;
    buf_printf(&h,
               "HTTP/1.1 %d %s\r\nServer: asrd\r\nContent-Type: %s\r\n%sX-Request-Id: %s\r\n"
               "Cache-Control: no-cache\r\nConnection: %s\r\n",
               status, reason(status), ctype, chunked ? "Transfer-Encoding: chunked\r\n" : "",
               hc->req.request_id[0] ? hc->req.request_id : "-", keep ? "keep-alive" : "close");
    cors_headers(hc, &h);
    buf_printf(&h, "%s\r\n", extra ? extra : "");
    conn_write(hc->c, h.data, h.len);
    buf_cleanup(&h);
    hc->streaming = chunked ? 1 : 2;
    hc->stream_status = status;
    if (!keep) hc->req.keep_alive = 0;
}

int http_stream_write(struct http_conn *hc, const void *p, size_t n) {
    if (!hc->streaming || conn_closing(hc->c)) return ASR_EIO;
    if (!n || hc->req.method == HTTP_HEAD) return 0;   /* a HEAD request gets the head only */
    if (hc->streaming == 2) return conn_write(hc->c, p, n);
    char head[24];
    int hl = snprintf(head, sizeof head, "%zx\r\n", n);
    int rc = conn_write2(hc->c, head, (size_t)hl, p, n);
    return rc ? rc : conn_write(hc->c, "\r\n", 2);
}

void http_stream_end(struct http_conn *hc) {
    if (!hc->streaming) return;
    int chunked = hc->streaming == 1;
    hc->streaming = 0;
    if (conn_closing(hc->c)) return;
    if (chunked && hc->req.method != HTTP_HEAD) conn_write(hc->c, "0\r\n\r\n", 5);
    finish_request(hc, hc->stream_status, !chunked || !hc->req.keep_alive);
}

static void error_body(struct buf *b, const char *code, const char *msg) {
    buf_puts(b, "{\"error\":{\"code\":");
    buf_json_str(b, code, strlen(code));
    buf_puts(b, ",\"message\":");
    buf_json_str(b, msg, strlen(msg));
    buf_puts(b, "}}");
}

/* The route of the request's path (any method), once its head is parsed;
 * NULL otherwise. */
static const struct http_route *path_route(const struct http_conn *hc) {
    const struct http_req *r = &hc->req;
    if (!r->path_len || !r->head.data) return NULL;
    const char *path = r->head.data + r->url_off;
    int pass = route_pass(hc->srv, path, r->path_len);
    for (size_t i = 0; pass >= 0 && i < hc->srv->n_routes; i++) {
        const struct http_route *rt = &hc->srv->routes[i];
        if (rt->prefix == pass && route_matches(rt, path, r->path_len)) return rt;
    }
    return NULL;
}

/* The error body in the shape of the request's route (its error_body), or
 * the house shape. */
static void route_error_body(const struct http_conn *hc, struct buf *b, int status, const char *code,
                             const char *msg) {
    const struct http_route *rt = path_route(hc);
    if (!rt || !rt->error_body || rt->error_body(b, status, code, msg) != 0) {
        buf_reset(b);
        error_body(b, code, msg);
    }
}

void http_respond_error(struct http_conn *hc, int status, const char *code, const char *msg,
                        const char *extra) {
    struct buf b;
    buf_init(&b, 0);
    route_error_body(hc, &b, status, code, msg);
    /* After a refused request the rest of the stream cannot be trusted. */
    respond(hc, status, "application/json", b.data, b.len, extra, http_status_closes(status));
    buf_cleanup(&b);
}

void http_respond_err(struct http_conn *hc, int err, const char *msg) {
    http_respond_error(hc, asr_err_http_status(err), asr_err_code(err), msg ? msg : asr_strerror(err), NULL);
}

void http_set_abort(struct http_conn *hc, void (*fn)(void *ctx), void *ctx) {
    hc->abort_fn = fn;
    hc->abort_ctx = ctx;
}

int http_peer_gone(const struct http_conn *hc) { return hc->peer_eof; }

void http_peer_ip(const struct http_conn *hc, char *out, size_t len) {
    const char *p = hc->c->peer;
    const char *colon = strrchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(out, len, "%.*s", (int)n, p);
}

/* ---- dispatch --------------------------------------------------------------- */

/* The methods path answers, "GET, DELETE" style, into out (an Allow
 * header's value): the routes' that serve it (its exact routes, else the
 * prefix routes over it: route_pass), or GET when only the fallback serves
 * it. Empty when nothing does. */
static void path_methods(const struct http_server *srv, const char *path, size_t pl, int fallback, char *out,
                         size_t cap) {
    out[0] = '\0';
    int pass = route_pass(srv, path, pl);
    for (size_t i = 0; pass >= 0 && i < srv->n_routes; i++) {
        const struct http_route *rt = &srv->routes[i];
        if (rt->prefix != pass || !route_matches(rt, path, pl)) continue;
        /* a GET route answers HEAD too (route_find) */
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? ", " : "",
                 rt->method == HTTP_GET ? "GET, HEAD" : http_method_str((enum http_method)rt->method));
    }
    if (fallback && !out[0]) snprintf(out, cap, "GET, HEAD");
}

/* methods (path_methods) names m exactly (methods are case-sensitive). */
static int methods_have(const char *methods, const char *m, size_t ml) {
    for (const char *p = methods; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *x = trim(p, &l);
        if (l && l == ml && memcmp(x, m, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* "Allow: GET, POST\r\n" for the methods the request's path has (its
 * routes'). */
static void allow_header(const struct http_conn *hc, char *allow, size_t len) {
    size_t pl;
    const char *path = http_path(&hc->req, &pl);
    char methods[96];
    path_methods(hc->srv, path, pl, 0, methods, sizeof methods);
    snprintf(allow, len, "Allow: %s\r\n", methods);
}

/* A CORS preflight from a listed origin (http.h, struct http_cors). The
 * answer's Allow-Origin comes from cors_headers, as on every answer. */
static void preflight(struct http_conn *hc, const char *methods) {
    if (!methods[0]) {
        http_respond_error(hc, 404, "NOT_FOUND", "no such route", NULL);
        return;
    }
    size_t ml = 0;
    const char *m = http_header(&hc->req, "access-control-request-method", &ml);
    m = trim(m, &ml);
    char h[256];
    if (!methods_have(methods, m, ml)) {
        snprintf(h, sizeof h, "Allow: %s\r\n", methods);
        http_respond_error(hc, 405, "METHOD_NOT_ALLOWED", "method not allowed on this path", h);
        return;
    }
    snprintf(h, sizeof h,
             "Access-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: " HTTP_CORS_ALLOW_HEADERS
             "\r\nAccess-Control-Max-Age: %u\r\n",
             methods, hc->srv->cors->max_age_s);
    metrics.cors_preflights++;
    http_respond(hc, 204, "", "", 0, h);
}

/* Routing: the route of the path and method; CORS before it (http.h), so
 * that a refusal or a preflight is counted under the path's route; then
 * 405 for a known path with another method, the fallback for GET and HEAD,
 * 404. expect_continue decides the same way before a body is sent. */
static void dispatch(struct http_conn *hc) {
    struct http_req *r = &hc->req;
    const struct http_server *srv = hc->srv;
    conn_timer(hc->c, 0);
    http_move(hc, HTTP_ST_BUSY);
    int known;
    const struct http_route *match = route_find(srv, r, &r->route, &known);
    /* A path no route has is the fallback's (and counted under its route)
     * for what it serves: GET and HEAD, and their preflights. */
    int fallback = !match && !known && srv->fallback;
    int fallback_serves = fallback && (r->method == HTTP_GET || r->method == HTTP_HEAD);
    if (fallback_serves) r->route = srv->fallback_route;
    switch (cors_verdict(hc)) {
    case CORS_REFUSE:
        metrics.cors_refused++;
        http_respond_err(hc, ASR_E_ORIGIN_NOT_ALLOWED, CORS_REFUSAL_MSG);
        return;
    case CORS_PREFLIGHT: {
        if (fallback) r->route = srv->fallback_route;
        size_t pl;
        const char *path = http_path(r, &pl);
        char methods[96];
        path_methods(srv, path, pl, fallback, methods, sizeof methods);
        preflight(hc, methods);
        return;
    }
    case CORS_PASS: break;
    }
    if (match) {
        match->handler(match->ctx, hc, r);
        return;
    }
    if (known) {
        char allow[128];
        allow_header(hc, allow, sizeof allow);
        http_respond_error(hc, 405, "METHOD_NOT_ALLOWED", "method not allowed on this path", allow);
        return;
    }
    if (fallback_serves) {
        srv->fallback(srv->fallback_ctx, hc, r);
        return;
    }
    http_respond_error(hc, 404, "NOT_FOUND", "no such route", NULL);
}

/* A request refused while it was being parsed (a limit, malformed bytes,
 * the timer, the client's half-close) or answered before its body (Expect:
 * 100-continue, the body budget): the answer closes the connection, since
 * the rest of the stream is not a request. Refused while its body may still
 * be coming for a reason other than broken framing, it lingers (finish_request). */
static void fail_parse(struct http_conn *hc, int err, const char *msg) {
    /* A refusal in cb_headers_complete ends the message there (http-parser
     * takes it for "no body"), so READY may have a body still to come too. */
    hc->linger = (hc->state == HTTP_ST_BODY || hc->state == HTTP_ST_READY) && hc->body_declared &&
                 err != ASR_E_BAD_REQUEST && err != ASR_E_TIMEOUT && err != ASR_E_HEADERS_TOO_LARGE;
    http_move(hc, HTTP_ST_BUSY);
    if (!hc->req.request_id[0]) util_random_id(hc->req.request_id); /* refused before the head was read */
    char extra[128] = "";
    if (err == ASR_E_METHOD) allow_header(hc, extra, sizeof extra);
    else if (asr_err_http_status(err) == 503) snprintf(extra, sizeof extra, "Retry-After: 1\r\n");
    struct buf b;
    buf_init(&b, 0);
    route_error_body(hc, &b, asr_err_http_status(err), asr_err_code(err), msg ? msg : asr_strerror(err));
    respond(hc, asr_err_http_status(err), "application/json", b.data, b.len, extra, 1);
    buf_cleanup(&b);
}

/* Parses held bytes while no handler is busy (IDLE, HEAD, BODY; READY is
 * dispatched in the same pass that reached it). A complete request pauses
 * the parser; what follows it stays held until the response is done. */
static void process(struct http_conn *hc) {
    if (hc->in_process) return;
    hc->in_process = 1;
    while (hc->state <= HTTP_ST_READY && !conn_closing(hc->c) && hc->held.len) {
        struct buf t = hc->held;
        buf_init(&hc->held, 0);
        hc->exec_end = t.data + t.len;
        size_t np = 0;
        if (!check_crlf(hc, t.data, hc->exec_end)) np = http_parser_execute(&hc->parser, &settings, t.data, t.len);
        enum http_errno e = HTTP_PARSER_ERRNO(&hc->parser);
        /* What the parser took is checked (scan_head) before it is acted on;
         * it stops at the end of a message, so this is one request's bytes. */
        if (!hc->error) scan_head(hc, t.data, np);
        if (hc->state == HTTP_ST_READY) hc->fold = FOLD_START; /* the next request's head is scanned afresh */
        if (np < t.len) buf_append(&hc->held, t.data + np, t.len - np);
        buf_cleanup(&t);
        if (hc->error) {
            int err = hc->error;
            const char *msg = hc->error_msg;
            hc->error = 0;
            hc->error_msg = NULL;
            if (!msg)
                msg = err == ASR_E_HEADERS_TOO_LARGE  ? "request headers too large"
                      : err == ASR_E_TOO_LARGE        ? "request body larger than the upload limit"
                      : err == ASR_E_LENGTH_REQUIRED  ? "a body needs Content-Length or chunked encoding"
                                                      : NULL; /* fail_parse: the error's own message */
            fail_parse(hc, err, msg);
            break;
        }
        /* An upgrade ends the HTTP part once its head is in. parser.upgrade
         * is stale until the next head completes: without the BODY and
         * errno checks, a byte that fails the parser after an answered
         * upgrade request re-dispatched that request forever. Dispatched
         * before its body is all in, the request cannot be followed by
         * another: if it is answered without an upgrade, the parser is
         * still inside its body (whose tail would complete it again), so
         * that answer closes the connection. */
        if (hc->parser.upgrade && hc->state == HTTP_ST_BODY && e == HPE_OK) {
            http_move(hc, HTTP_ST_READY);
            hc->req.keep_alive = 0;
        }
        if (hc->state == HTTP_ST_READY) {
            if (e == HPE_PAUSED) http_parser_pause(&hc->parser, 0);
            dispatch(hc);
            continue;
        }
        if (e != HPE_OK) {
            char m[128];
            snprintf(m, sizeof m, "malformed request: %s", http_errno_description(e));
            fail_parse(hc, e == HPE_HEADER_OVERFLOW ? ASR_E_HEADERS_TOO_LARGE : ASR_E_BAD_REQUEST, m);
            break;
        }
    }
    hc->in_process = 0;
    if (hc->state == HTTP_ST_UPGRADED) {
        http_free(hc);
        return;
    }
    if (hc->state == HTTP_ST_BUSY && hc->held.len > 65536) conn_read_pause(hc->c);
}

static void on_read(struct conn *c, const char *data, size_t n) {
    struct http_conn *hc = c->proto;
    if (hc->state == HTTP_ST_DONE) {
        /* Answered with Connection: close. Lingering: the bytes are
         * discarded, and the client's silence is waited for again. */
        if (!hc->linger || conn_closing(c)) return;
        if (n >= hc->linger_left || uv_now(c->set->loop) >= hc->linger_deadline) {
            conn_close_after_write(c);
            return;
        }
        hc->linger_left -= n;
        conn_timer(c, HTTP_LINGER_MS);
        return;
    }
    if (buf_append(&hc->held, data, n) != 0) {
        conn_close(c);
        return;
    }
    process(hc);
}

/* The client shut its sending side. A request in hand is still answered
 * (half-close is legal TCP and some clients end their upload that way),
 * then the connection closes; an answer already written is flushed first. */
static void on_eof(struct conn *c, int status) {
    struct http_conn *hc = c->proto;
    if (status == UV_EOF && hc && hc->state == HTTP_ST_BUSY) {
        hc->peer_eof = 1;
        conn_read_pause(c);
        return;
    }
    /* A request that began and will never be complete: its head or body
     * was cut by the half-close. It is answered (400) rather than dropped;
     * then the connection closes. */
    if (status == UV_EOF && hc && (hc->state == HTTP_ST_HEAD || hc->state == HTTP_ST_BODY)) {
        hc->peer_eof = 1;
        conn_read_pause(c);
        fail_parse(hc, ASR_E_BAD_REQUEST,
                   hc->state == HTTP_ST_HEAD
                       ? "request incomplete: the client closed its side before the end of the request head"
                       : hc->body_expect
                             ? "request incomplete: the client closed its side before the body's Content-Length"
                             : "request incomplete: the client closed its side before the last chunk of the body");
        return;
    }
    if (status == UV_EOF && conn_unsent(c) > 0) {
        conn_close_after_write(c);
        return;
    }
    conn_close(c);
}

static void on_timer(struct conn *c) {
    struct http_conn *hc = c->proto;
    if (hc->state == HTTP_ST_DONE) { /* the linger is over: the client went silent */
        conn_close_after_write(c);
        return;
    }
    if (hc->state >= HTTP_ST_HEAD && hc->state <= HTTP_ST_READY) { /* a request began, no one answers it yet */
        fail_parse(hc, ASR_E_TIMEOUT, "request not complete in time");
        return;
    }
    conn_close(c);
}

static void http_free(struct http_conn *hc) {
    buf_cleanup(&hc->held);
    buf_cleanup(&hc->req.head);
    buf_cleanup(&hc->req.body);
    free(hc);
}

static void on_free(struct conn *c) {
    struct http_conn *hc = c->proto;
    if (!hc) return;
    if (hc->abort_fn) hc->abort_fn(hc->abort_ctx);
    http_free(hc);
}

static const struct conn_handler http_handler = {
    .on_read = on_read, .on_eof = on_eof, .on_timer = on_timer, .on_free = on_free,
};

int http_conn_start(struct conn *c, const struct http_server *srv) {
    struct http_conn *hc = calloc(1, sizeof *hc);
    if (!hc) return ASR_ENOMEM;
    hc->c = c;
    hc->srv = srv;
    hc->req.route = ROUTE_OTHER; /* a request refused before it began is no route's */
    http_parser_init(&hc->parser, HTTP_REQUEST);
    hc->parser.data = hc;
    buf_init(&hc->held, 0);
    buf_init(&hc->req.head, srv->max_header_bytes + 2 * HTTP_MAX_HEADERS + 16);
    buf_init(&hc->req.body, srv->max_upload_bytes);
    conn_timer(c, srv->handshake_timeout_ms);
    return conn_start(c, &http_handler, hc);
}

void http_upgrade(struct http_conn *hc, const char *headers, struct buf *rest) {
    struct http_req *r = &hc->req;
    struct conn *c = hc->c;
    struct buf h;
    buf_init(&h, 0);
    buf_printf(&h, "HTTP/1.1 101 Switching Protocols\r\nServer: asrd\r\nX-Request-Id: %s\r\n%s\r\n",
               r->request_id, headers ? headers : "");
    conn_write(c, h.data, h.len);
    buf_cleanup(&h);
    account_request(hc, 101);
    *rest = hc->held;
    buf_init(&hc->held, 0);
    conn_timer(c, 0);
    c->proto = NULL;
    c->h = NULL;
    http_move(hc, HTTP_ST_UPGRADED);
    if (!hc->in_process) http_free(hc); /* else process() frees it on the way out */
}

void http_conn_drain(struct conn *c) {
    struct http_conn *hc = c->proto;
    if (c->kind != CONN_HTTP || !hc || hc->state == HTTP_ST_UPGRADED) return;
    hc->draining = 1;
    /* An idle keep-alive connection goes now. One that was accepted but
     * has not sent (or we have not read) its first request yet is not idle:
     * closing it answered a request in flight with a bare disconnect. It is
     * answered with Connection: close, or closed by its handshake timer.
     * "Idle" still may have its last response unsent: answered in this loop
     * iteration (written at the flush before the next poll) or still being
     * written to a slow reader. It goes after that response, not before:
     * a plain conn_close dropped it, and the client saw a disconnect with no
     * answer to a request that was served (rolling restart). */
    if (hc->state == HTTP_ST_IDLE && hc->held.len == 0 && hc->served) conn_close_after_write(c);
}
