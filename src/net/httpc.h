/* Outbound HTTP: webhooks and audio URLs (docs/API.md "Jobs"). libcurl's
 * multi interface driven by the worker's libuv loop (a uv_poll per socket
 * libcurl asks about, one uv_timer for its timeouts), so a transfer never
 * blocks the loop; libcurl does the protocol (HTTP/1.1, TLS, redirects,
 * name resolution on its own thread).
 *
 * Safety: only http and https; no proxy from the environment; a cap on
 * the response body (Content-Length checked before, bytes counted while
 * reading); connect and whole-transfer timeouts; and, unless the request
 * allows them, no connection to a loopback, private, link-local,
 * multicast or otherwise non-public address: the check runs on the address
 * libcurl is about to connect to (after resolution, on every redirect hop),
 * so a name that resolves to 127.0.0.1 is refused as surely as the literal.
 *
 * Contract: httpc_request returns 0 and done runs exactly once, later, on
 * the loop (never inside the call), unless httpc_cancel ran first; or it
 * returns a negative asr_err at once and done never runs. */
#ifndef ASRD_NET_HTTPC_H
#define ASRD_NET_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "base/util.h"

/* What a request says. Strings and body are copied. */
struct httpc_req {
    const char *method;                 /* "GET" or "POST" */
    const char *url;
    const char *const *headers;         /* "Name: value" lines, NULL-terminated; may be NULL */
    const void *body;                   /* POST */
    size_t      body_len;
    size_t      max_bytes;              /* response body cap; 0 = 1 MiB */
    uint64_t    timeout_ms;             /* the whole transfer; 0 = 30 s */
    uint64_t    connect_timeout_ms;     /* 0 = 10 s */
    int         allow_private;          /* 1: loopback and private addresses too */
    int         follow_redirects;       /* up to 5 hops (each checked as above) */
};

/* Failures of a transfer (httpc_res.err). */
enum httpc_fail {
    HTTPC_OK = 0,
    HTTPC_REFUSED,                      /* the address is not allowed (private, loopback, ...) */
    HTTPC_TOO_LARGE,                    /* the body passed max_bytes */
    HTTPC_TIMEOUT,
    HTTPC_FAILED,                       /* DNS, connect, TLS, protocol: message in error */
    HTTPC_BAD_URL,                      /* not an http(s) URL libcurl takes */
};

/* The outcome, borrowed for the done call. */
struct httpc_res {
    enum httpc_fail err;                /* HTTPC_OK: a response came (any status) */
    long        status;                 /* HTTP status, 0 without a response */
    const char *body;                   /* err OK: the body (NUL-terminated after body_len) */
    size_t      body_len;
    const char *content_type;           /* "" when absent */
    const char *error;                  /* err: a one-line message */
    double      seconds;                /* the transfer's total time */
};

typedef void (*httpc_done_fn)(void *arg, const struct httpc_res *res);

struct httpc;
struct httpc_xfer;

/* Once per process, before any thread starts (curl_global_init). */
void httpc_global_init(void);

/* A client on loop. Returns 0 and *out, or ASR_ENOMEM. */
int  httpc_create(uv_loop_t *loop, struct httpc **out);
/* Cancels every transfer (their done never runs), closes the handles, then
 * on_closed(arg) runs from the loop and the client is freed. */
void httpc_close(struct httpc *h, void (*on_closed)(void *arg), void *arg);
/* Transfers in progress. */
size_t httpc_active(const struct httpc *h);

/* Starts a transfer. *out (may be NULL) identifies it for httpc_cancel
 * until done runs. ASR_EINVAL: no URL or method; ASR_ENOMEM. */
int  httpc_request(struct httpc *h, const struct httpc_req *r, httpc_done_fn done, void *arg,
                   struct httpc_xfer **out);
/* Stops a transfer; its done never runs. */
void httpc_cancel(struct httpc_xfer *x);

/* 1 when an outbound connection to sa is refused without allow_private:
 * IPv4 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24,
 * 192.0.2/24, 192.168/16, 198.18/15, 198.51.100/24, 203.0.113/24, 224/4,
 * 240/4; IPv6 ::, ::1, fc00::/7, fe80::/10, ff00::/8, 2001:db8::/32, and
 * IPv4-mapped or NAT64 (64:ff9b::/96) addresses by their IPv4 part; any
 * other family. */
int  httpc_addr_refused(const struct sockaddr *sa);

#endif
