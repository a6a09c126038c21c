/* Outbound HTTP on libcurl's multi interface and the libuv loop (httpc.h).
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: a
 * uv_poll_t per socket, created on first use, closed on CURL_POLL_REMOVE)
 * and when it next needs a call (CURLMOPT_TIMERFUNCTION: one uv_timer_t);
 * both call curl_multi_socket_action, after which finished transfers are
 * collected (curl_multi_info_read) and reported. */
#include "net/httpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/err.h"

#define HTTPC_DEFAULT_MAX   (1u << 20)
#define HTTPC_MAX_REDIRECTS 5L

struct httpc {
    uv_loop_t  *loop;                  /* borrowed */
    CURLM      *multi;                 /* owned */
    uv_timer_t  timer;                 /* libcurl's timeout */
    struct httpc_xfer *xfers;          /* in progress */
    struct hsock *socks;               /* watched sockets */
    size_t      n;
    int         closing;
    int         handles_open;          /* the timer and the poll handles not yet closed */
    void      (*on_closed)(void *arg);
    void       *closed_arg;
};

struct httpc_xfer {
    struct httpc *h;                   /* borrowed */
    CURL       *easy;                  /* owned */
    struct curl_slist *headers;        /* owned */
    char       *body;                  /* owned: the request body */
    struct buf  resp;                  /* owned: the response body */
    size_t      max_bytes;
    int         allow_private;
    int         refused;               /* the open-socket check refused an address */
    int         too_large;             /* the write callback stopped the transfer */
    httpc_done_fn done;
    void       *arg;
    struct httpc_xfer *next, *prev;
    char        errbuf[CURL_ERROR_SIZE];
};

/* A watched socket. */
struct hsock {
    uv_poll_t     poll;
    struct httpc *h;                   /* borrowed */
    curl_socket_t fd;
    struct hsock *next, *prev;         /* every watched socket of h */
    int           closing;
};

void httpc_global_init(void) {
    static int done;
    if (!done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        done = 1;
    }
}

/* ---- addresses ------------------------------------------------------------------ */

static int v4_refused(uint32_t a) {
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a & 0xffc00000u) == 0x64400000u ||
           (a & 0xffff0000u) == 0xa9fe0000u || (a & 0xfff00000u) == 0xac100000u ||
           (a & 0xffffff00u) == 0xc0000000u || (a & 0xffffff00u) == 0xc0000200u ||
           (a & 0xffff0000u) == 0xc0a80000u || (a & 0xfffe0000u) == 0xc6120000u ||
           (a & 0xffffff00u) == 0xc6336400u || (a & 0xffffff00u) == 0xcb007100u || (a >> 28) >= 0xe;
}

int httpc_addr_refused(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) return v4_refused(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6) return 1;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return v4_refused((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
    int zero = 1;
    for (int i = 0; i < 15; i++) zero &= b[i] == 0;
    if (zero && (b[15] == 0 || b[15] == 1)) return 1;               /* ::, ::1 */
    if ((b[0] & 0xfe) == 0xfc) return 1;                              /* fc00::/7 */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return 1;              /* fe80::/10 */
    if (b[0] == 0xff) return 1;                                       /* multicast */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return 1; /* documentation */
    return 0;
}

/* libcurl is about to connect to address: the last word on where it goes. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address) {
    struct httpc_xfer *x = clientp;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (!x->allow_private && httpc_addr_refused(&address->addr)) {
        x->refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype, address->protocol);
}

/* ---- transfers -------------------------------------------------------------------- */

static size_t on_write(char *p, size_t size, size_t nmemb, void *userdata) {
    struct httpc_xfer *x = userdata;
    size_t n = size * nmemb;
    if (x->resp.len + n > x->max_bytes || buf_append(&x->resp, p, n) != 0) {
        x->too_large = 1;
        return 0;                      /* CURLE_WRITE_ERROR: the transfer stops */
    }
    return n;
}

static void xfer_unlink(struct httpc_xfer *x) {
    struct httpc *h = x->h;
    if (x->prev) x->prev->next = x->next;
    else h->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    h->n--;
}

static void xfer_free(struct httpc_xfer *x) {
    if (x->h->multi) curl_multi_remove_handle(x->h->multi, x->easy);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    buf_cleanup(&x->resp);
    free(x);
}

static void report(struct httpc_xfer *x, CURLcode code) {
    struct httpc_res r = {.content_type = "", .error = ""};
    long status = 0;
    char *ct = NULL;
    double secs = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &secs);
    r.status = status;
    r.seconds = secs;
    if (ct) r.content_type = ct;
    if (code == CURLE_OK) {
        r.err = HTTPC_OK;
        r.body = x->resp.data ? x->resp.data : "";
        r.body_len = x->resp.len;
    } else if (x->refused) {
        r.err = HTTPC_REFUSED;
        r.error = "the address is not public (loopback, private, link-local or reserved)";
    } else if (x->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        r.err = HTTPC_TOO_LARGE;
        r.error = "the response is larger than allowed";
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        r.err = HTTPC_TIMEOUT;
        r.error = "timed out";
    } else if (code == CURLE_UNSUPPORTED_PROTOCOL || code == CURLE_URL_MALFORMAT) {
        r.err = HTTPC_BAD_URL;
        r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
    } else {
        r.err = HTTPC_FAILED;
        r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
    }
    httpc_done_fn done = x->done;
    void *arg = x->arg;
    xfer_unlink(x);
    done(arg, &r);
    xfer_free(x);
}

static void check_done(struct httpc *h) {
    CURLMsg *m;
    int left;
    while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        struct httpc_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode code = m->data.result;
        if (x) report(x, code);
    }
}

/* ---- the loop's side -------------------------------------------------------------- */

static void maybe_free(struct httpc *h) {
    if (!h->closing || h->handles_open) return;
    void (*cb)(void *) = h->on_closed;
    void *arg = h->closed_arg;
    free(h);
    if (cb) cb(arg);
}

static void on_poll_closed(uv_handle_t *hd) {
    struct hsock *s = hd->data;
    struct httpc *h = s->h;
    if (s->prev) s->prev->next = s->next;
    else h->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
    h->handles_open--;
    maybe_free(h);
}

static void on_timer_closed(uv_handle_t *hd) {
    struct httpc *h = hd->data;
    h->handles_open--;
    maybe_free(h);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    struct hsock *s = p->data;
    struct httpc *h = s->h;
    if (h->closing) return;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_done(h);
}

static void on_timeout(uv_timer_t *t) {
    struct httpc *h = t->data;
    if (h->closing) return;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what, or stop watching it. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    struct httpc *h = userp;
    struct hsock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s && !s->closing) {
            s->closing = 1;
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_poll_closed);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->h = h;
        s->fd = fd;
        s->poll.data = s;
        s->next = h->socks;
        if (s->next) s->next->prev = s;
        h->socks = s;
        h->handles_open++;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? UV_READABLE : 0) |
             (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 stops the timer; 0 means "call soon". */
static int on_timer_change(CURLM *multi, long timeout_ms, void *userp) {
    struct httpc *h = userp;
    if (timeout_ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- the API ----------------------------------------------------------------------- */

int httpc_create(uv_loop_t *loop, struct httpc **out) {
    httpc_global_init();
    struct httpc *h = calloc(1, sizeof *h);
    if (!h) return ASR_ENOMEM;
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return ASR_ENOMEM;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->handles_open = 1;
    *out = h;
    return 0;
}

size_t httpc_active(const struct httpc *h) { return h->n; }

void httpc_cancel(struct httpc_xfer *x) {
    if (!x) return;
    xfer_unlink(x);
    xfer_free(x);
}

void httpc_close(struct httpc *h, void (*on_closed)(void *arg), void *arg) {
    if (!h || h->closing) return;
    h->closing = 1;
    h->on_closed = on_closed;
    h->closed_arg = arg;
    while (h->xfers) httpc_cancel(h->xfers);
    curl_multi_cleanup(h->multi);      /* may still call on_socket with REMOVE */
    h->multi = NULL;
    for (struct hsock *s = h->socks; s; s = s->next)
        if (!s->closing) {
            s->closing = 1;
            uv_close((uv_handle_t *)&s->poll, on_poll_closed);
        }
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

int httpc_request(struct httpc *h, const struct httpc_req *r, httpc_done_fn done, void *arg,
                  struct httpc_xfer **out) {
    if (h->closing || !r->url || !r->method) return ASR_EINVAL;
    struct httpc_xfer *x = calloc(1, sizeof *x);
    if (!x) return ASR_ENOMEM;
    x->h = h;
    x->done = done;
    x->arg = arg;
    x->max_bytes = r->max_bytes ? r->max_bytes : HTTPC_DEFAULT_MAX;
    x->allow_private = r->allow_private;
    buf_init(&x->resp, x->max_bytes + 1);
    x->easy = curl_easy_init();
    if (!x->easy) goto fail;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, "");           /* no proxy from the environment */
    curl_easy_setopt(e, CURLOPT_USERAGENT, "asrd/" ASRD_VERSION);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_bytes);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(r->timeout_ms ? r->timeout_ms : 30000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->connect_timeout_ms ? r->connect_timeout_ms : 10000));
    if (r->follow_redirects) {
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, HTTPC_MAX_REDIRECTS);
    }
    for (const char *const *hd = r->headers; hd && *hd; hd++) {
        struct curl_slist *l = curl_slist_append(x->headers, *hd);
        if (!l) goto fail;
        x->headers = l;
    }
    if (strcmp(r->method, "POST") == 0) {
        x->body = malloc(r->body_len ? r->body_len : 1);
        if (!x->body) goto fail;
        if (r->body_len) memcpy(x->body, r->body, r->body_len);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        /* no "Expect: 100-continue" round trip for larger bodies */
        struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
        if (!l) goto fail;
        x->headers = l;
    } else if (strcmp(r->method, "GET") != 0) {
        goto fail;
    }
    if (x->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) goto fail;
    x->next = h->xfers;
    if (x->next) x->next->prev = x;
    h->xfers = x;
    h->n++;
    if (out) *out = x;
    return 0;
fail:
    if (x->easy) curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    buf_cleanup(&x->resp);
    free(x);
    return ASR_EINVAL;
}
