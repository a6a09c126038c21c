/* One Redis connection with reconnect, deadlines and scripts (rconn.h).
 * The shape is store/redis.c's (the session store's connections); see there
 * for why the loop attachment is ours and why names are resolved with
 * uv_getaddrinfo. */
#include "store/rconn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <nettle/sha1.h>

#include "base/log.h"
#include "base/util.h"

#define RC_BACKOFF_MIN_MS 100
#define RC_BACKOFF_MAX_MS 5000
#define RC_MAX_INFLIGHT   100000         /* past this, commands fail fast */
/* Arguments of a script call kept for a re-send after NOSCRIPT (a flushed
 * script cache): calls larger than this (a spooled upload) fail instead,
 * and the scripts are loaded again for the next one. */
#define RC_KEEP_ARGS_MAX  (64u << 10)

enum rc_state { RC_DOWN, RC_CONNECTING, RC_READY };

/* A command sent (or a handshake step: cb NULL). */
struct rcop {
    struct rconn  *rc;                 /* borrowed */
    rconn_reply_fn cb;                 /* NULL: internal (handshake) */
    void          *arg;
    int            completed;          /* cb ran (timed out): waiting for hiredis to hand it back */
    int            in_list;
    struct rcop   *prev, *next;        /* in-flight list, by deadline */
    uint64_t       deadline_ms;        /* loop ms */
    long           script;             /* script number, or -1 */
    int            retried;            /* re-sent after NOSCRIPT */
    int            argc;               /* kept arguments (script calls up to RC_KEEP_ARGS_MAX) */
    char         **argv;               /* owned */
    size_t        *lens;               /* owned */
};

struct rconn {
    uv_loop_t         *loop;           /* borrowed */
    struct store_url   url;            /* password inside: never logged */
    char               addr[300];      /* for logs */
    const char        *name;           /* static */
    const char *const *scripts;        /* static */
    size_t             n_scripts;
    char             (*sha)[41];       /* owned: SHA-1 of each script */
    uint64_t           op_timeout_ms;
    rconn_state_fn     on_state;
    void              *ctx;
    redisAsyncContext *ac;             /* hiredis frees it; NULL while down */
    enum rc_state      state;
    uv_timer_t         timer;          /* connect deadline (CONNECTING), retry (DOWN) */
    uv_timer_t         op_timer;       /* deadline of the oldest command in flight */
    uv_getaddrinfo_t  *gai;            /* resolution in flight, or NULL */
    unsigned           attempt;        /* connect attempts; tags getaddrinfo answers */
    uint64_t           backoff_ms;
    int                ever_ready;
    int                down_logged;
    struct rcop       *in_head, *in_tail;  /* in flight, ordered by deadline */
    size_t             n_inflight;
    int                closing;
    int                handles_open;   /* our uv handles not yet closed */
    int                holds;          /* getaddrinfo requests and poll handles still out */
    rconn_closed_fn    on_closed;
    void              *closed_arg;
};

static void rc_connect(struct rconn *rc);
static void on_reply(redisAsyncContext *ac, void *r, void *priv);
static uint64_t now_ms(const struct rconn *rc) { return uv_now(rc->loop); }

/* ---- close accounting -------------------------------------------------------- */

static void maybe_free(struct rconn *rc) {
    if (!rc->closing || rc->handles_open || rc->holds || rc->ac) return;
    rconn_closed_fn cb = rc->on_closed;
    void *arg = rc->closed_arg;
    free(rc->sha);
    memset(&rc->url, 0, sizeof rc->url);
    free(rc);
    if (cb) cb(arg);
}

static void on_handle_closed(uv_handle_t *h) {
    struct rconn *rc = h->data;
    rc->handles_open--;
    maybe_free(rc);
}

static void release_hold(struct rconn *rc) {
    rc->holds--;
    maybe_free(rc);
}

/* ---- logging ------------------------------------------------------------------ */

static const char *ac_err(const redisAsyncContext *ac) {
    if (ac && ac->c.err && ac->c.errstr[0]) return ac->c.errstr;
    if (ac && ac->err && ac->errstr) return ac->errstr;
    return "connection closed";
}

static void log_conn(enum log_level lv, const char *msg, const struct rconn *rc, const char *why) {
    struct log_line *l = log_begin(lv, msg);
    if (!l) return;
    log_str(l, "store", "redis");
    log_str(l, "conn", rc->name);
    log_str(l, "addr", rc->addr);
    if (why) log_str(l, "error", why);
    log_end(l);
}

/* ---- in-flight list (by deadline) ---------------------------------------------- */

static void on_op_timer(uv_timer_t *t);

static void inflight_add(struct rconn *rc, struct rcop *o) {
    struct rcop *after = rc->in_tail;
    while (after && after->deadline_ms > o->deadline_ms) after = after->prev;
    o->prev = after;
    o->next = after ? after->next : rc->in_head;
    if (o->next) o->next->prev = o;
    else rc->in_tail = o;
    if (after) after->next = o;
    else rc->in_head = o;
    o->in_list = 1;
    rc->n_inflight++;
    if (rc->in_head == o) {
        uint64_t now = now_ms(rc);
        uv_timer_start(&rc->op_timer, on_op_timer, o->deadline_ms > now ? o->deadline_ms - now : 0, 0);
    }
}

static void inflight_remove(struct rconn *rc, struct rcop *o) {
    if (!o->in_list) return;
    if (o->prev) o->prev->next = o->next;
    else rc->in_head = o->next;
    if (o->next) o->next->prev = o->prev;
    else rc->in_tail = o->prev;
    o->prev = o->next = NULL;
    o->in_list = 0;
    rc->n_inflight--;
    if (!rc->in_head) uv_timer_stop(&rc->op_timer);
}

static void op_free(struct rcop *o) {
    for (int i = 0; i < o->argc; i++) free(o->argv[i]);
    free(o->argv);
    free(o->lens);
    free(o);
}

/* Completes o's callback once (a timed-out op stays allocated until hiredis
 * hands it back). */
static void op_complete(struct rcop *o, int status, const redisReply *r) {
    if (o->completed) return;
    o->completed = 1;
    if (o->cb) o->cb(o->arg, status, r);
}

/* ---- connection state ------------------------------------------------------------ */

static void on_rc_timer(uv_timer_t *t);

static void set_down(struct rconn *rc, int was_ready, const char *why) {
    rc->state = RC_DOWN;
    uv_timer_stop(&rc->timer);
    if (rc->closing) return;
    if (was_ready) {
        log_conn(LOG_WARN, "store connection lost", rc, why);
        rc->down_logged = 1;
        if (rc->on_state) rc->on_state(rc->ctx, 0);
    } else if (!rc->down_logged) {
        log_conn(LOG_WARN, "store unavailable", rc, why);
        rc->down_logged = 1;
    } else {
        log_conn(LOG_DEBUG, "store connect failed", rc, why);
    }
    uv_timer_start(&rc->timer, on_rc_timer, rc->backoff_ms, 0);
    rc->backoff_ms *= 2;
    if (rc->backoff_ms > RC_BACKOFF_MAX_MS) rc->backoff_ms = RC_BACKOFF_MAX_MS;
}

/* hiredis dropped the context on its own (it frees it after this returns). */
static void rc_lost(struct rconn *rc, const char *why) {
    if (!rc->ac) return;
    int was_ready = rc->state == RC_READY;
    rc->ac = NULL;
    set_down(rc, was_ready, why);
}

/* We drop the context: its pending callbacks run with NULL (ops fail).
 * Safe inside a hiredis reply callback, never inside onConnect. */
static void rc_drop(struct rconn *rc, const char *why) {
    redisAsyncContext *ac = rc->ac;
    int was_ready = rc->state == RC_READY;
    rc->ac = NULL;
    rc->state = RC_DOWN;
    if (ac) redisAsyncFree(ac);
    set_down(rc, was_ready, why);
}

static void rc_ready(struct rconn *rc) {
    uv_timer_stop(&rc->timer);
    rc->state = RC_READY;
    rc->backoff_ms = RC_BACKOFF_MIN_MS;
    log_conn(LOG_INFO, rc->ever_ready ? "store connection restored" : "store connected", rc, NULL);
    rc->ever_ready = 1;
    rc->down_logged = 0;
    if (rc->on_state) rc->on_state(rc->ctx, 1);
}

/* ---- loop attachment (as store/redis.c) -------------------------------------------- */

struct uvev {
    redisAsyncContext *ac;             /* borrowed; NULL once hiredis cleaned up */
    struct rconn      *rc;             /* borrowed: released when the handle closed */
    uv_poll_t          poll;
    int                events;
};

static void ev_on_poll(uv_poll_t *h, int status, int events) {
    struct uvev *e = h->data;
    int ev = status < 0 ? e->events : events;    /* an error: let hiredis find it */
    if (e->ac && (ev & UV_READABLE)) redisAsyncHandleRead(e->ac);
    if (e->ac && (ev & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void ev_update(struct uvev *e) {
    if (e->events) uv_poll_start(&e->poll, e->events, ev_on_poll);
    else uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p) { struct uvev *e = p; e->events |= UV_READABLE; ev_update(e); }
static void ev_del_read(void *p) { struct uvev *e = p; e->events &= ~UV_READABLE; ev_update(e); }
static void ev_add_write(void *p) { struct uvev *e = p; e->events |= UV_WRITABLE; ev_update(e); }
static void ev_del_write(void *p) { struct uvev *e = p; e->events &= ~UV_WRITABLE; ev_update(e); }

static void ev_on_closed(uv_handle_t *h) {
    struct uvev *e = h->data;
    struct rconn *rc = e->rc;
    free(e);
    release_hold(rc);                  /* may free rc: last */
}

static void ev_cleanup(void *p) {
    struct uvev *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_on_closed);
}

static int ev_attach(struct rconn *rc, redisAsyncContext *ac) {
    if (ac->ev.data) return -1;
    struct uvev *e = xcalloc(1, sizeof *e);
    if (uv_poll_init(rc->loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->rc = rc;
    e->poll.data = e;
    rc->holds++;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- handshake ------------------------------------------------------------------------ */

static int reply_live(struct rconn *rc, redisAsyncContext *ac, const redisReply *reply) {
    if (ac != rc->ac) return 0;
    if (!reply) {
        rc_lost(rc, ac_err(ac));
        return 0;
    }
    return 1;
}

static void on_hs_reply(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (!reply_live(rc, ac, reply)) return;
    if (reply->type == REDIS_REPLY_ERROR) rc_drop(rc, reply->str);
}

/* The last handshake step answered: ready. */
static void on_hs_ping(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (!reply_live(rc, ac, reply)) return;
    if (reply->type == REDIS_REPLY_ERROR) rc_drop(rc, reply->str);
    else if (rc->state == RC_CONNECTING) rc_ready(rc);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    struct rconn *rc = ac->data;
    if (ac != rc->ac) return;
    if (status != REDIS_OK) rc_lost(rc, ac_err(ac));
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    struct rconn *rc = ac->data;
    if (ac != rc->ac) return;
    rc_lost(rc, status == REDIS_OK ? "connection closed" : ac_err(ac));
}

static void load_scripts(struct rconn *rc) {
    for (size_t i = 0; i < rc->n_scripts; i++)
        redisAsyncCommand(rc->ac, on_hs_reply, rc, "SCRIPT LOAD %s", rc->scripts[i]);
}

static void rc_handshake(struct rconn *rc) {
    redisAsyncContext *ac = rc->ac;
    const struct store_url *u = &rc->url;
    if (u->password[0]) {
        if (u->user[0]) redisAsyncCommand(ac, on_hs_reply, rc, "AUTH %s %s", u->user, u->password);
        else redisAsyncCommand(ac, on_hs_reply, rc, "AUTH %s", u->password);
    }
    if (u->db) redisAsyncCommand(ac, on_hs_reply, rc, "SELECT %u", u->db);
    load_scripts(rc);
    redisAsyncCommand(ac, on_hs_ping, rc, "PING");
}

static void rc_start(struct rconn *rc, const char *ip) {
    redisAsyncContext *ac = rc->url.is_unix ? redisAsyncConnectUnix(rc->url.path)
                                            : redisAsyncConnect(ip, (int)rc->url.port);
    if (!ac) {
        set_down(rc, 0, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac_err(ac));
        redisAsyncFree(ac);
        set_down(rc, 0, why);
        return;
    }
    ac->data = rc;
    if (ev_attach(rc, ac) != 0) {
        redisAsyncFree(ac);
        set_down(rc, 0, "cannot attach to the loop");
        return;
    }
    if (!rc->url.is_unix) redisEnableKeepAlive(&ac->c);
    rc->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc_handshake(rc);
}

struct gai_req {
    uv_getaddrinfo_t req;
    struct rconn    *rc;
    unsigned         attempt;
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    struct gai_req *g = (struct gai_req *)req;
    struct rconn *rc = g->rc;
    int current = rc->gai == req && rc->attempt == g->attempt && rc->state == RC_CONNECTING && !rc->closing;
    if (rc->gai == req) rc->gai = NULL;
    if (current) {
        char ip[64] = "";
        const struct addrinfo *v4 = NULL, *v6 = NULL;
        for (const struct addrinfo *ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET && !v4) v4 = ai;
            if (ai->ai_family == AF_INET6 && !v6) v6 = ai;
        }
        if (v4) uv_ip4_name((const struct sockaddr_in *)v4->ai_addr, ip, sizeof ip);
        else if (v6) uv_ip6_name((const struct sockaddr_in6 *)v6->ai_addr, ip, sizeof ip);
        if (ip[0]) rc_start(rc, ip);
        else set_down(rc, 0, status ? uv_strerror(status) : "no address");
    }
    if (res) uv_freeaddrinfo(res);
    free(g);
    release_hold(rc);                  /* may free rc: last */
}

static int is_numeric_host(const char *h) {
    unsigned char a[16];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static void rc_connect(struct rconn *rc) {
    rc->state = RC_CONNECTING;
    rc->attempt++;
    uint64_t deadline = rc->op_timeout_ms < 100 ? 100 : rc->op_timeout_ms;
    uv_timer_start(&rc->timer, on_rc_timer, deadline, 0);
    if (rc->url.is_unix || is_numeric_host(rc->url.host)) {
        rc_start(rc, rc->url.host);
        return;
    }
    struct gai_req *g = xcalloc(1, sizeof *g);
    g->rc = rc;
    g->attempt = rc->attempt;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (uv_getaddrinfo(rc->loop, &g->req, on_resolved, rc->url.host, NULL, &hints) != 0) {
        free(g);
        set_down(rc, 0, "getaddrinfo failed");
        return;
    }
    rc->gai = &g->req;
    rc->holds++;
}

static void on_rc_timer(uv_timer_t *t) {
    struct rconn *rc = t->data;
    if (rc->closing) return;
    if (rc->state == RC_DOWN) {
        rc_connect(rc);
    } else if (rc->state == RC_CONNECTING) {
        if (rc->gai) {
            uv_cancel((uv_req_t *)rc->gai);
            rc->gai = NULL;
        }
        char why[64];
        snprintf(why, sizeof why, "connect timeout (%llu ms)", (unsigned long long)rc->op_timeout_ms);
        rc_drop(rc, why);
    }
}

/* ---- commands ---------------------------------------------------------------------------- */

/* The oldest command got no reply in time: every expired one completes
 * with STORE_UNAVAILABLE (new commands from those callbacks fail fast: the
 * state is DOWN first), then the connection is dropped, which fails the
 * rest and starts the reconnect. */
static void on_op_timer(uv_timer_t *t) {
    struct rconn *rc = t->data;
    uint64_t now = now_ms(rc);
    struct rcop *h = rc->in_head;
    if (!h) return;
    if (h->deadline_ms > now) {
        uv_timer_start(t, on_op_timer, h->deadline_ms - now, 0);
        return;
    }
    int was_ready = rc->state == RC_READY;
    rc->state = RC_DOWN;
    size_t expired = 0;
    while ((h = rc->in_head) && h->deadline_ms <= now) {
        inflight_remove(rc, h);
        expired++;
        op_complete(h, STORE_UNAVAILABLE, NULL);
    }
    char why[96];
    snprintf(why, sizeof why, "%zu command(s) without reply in time", expired);
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    if (ac) redisAsyncFree(ac);
    set_down(rc, was_ready, why);
}

static int op_send(struct rconn *rc, struct rcop *o, int argc, const char *const *argv, const size_t *lens) {
    if (o->script < 0)
        return redisAsyncCommandArgv(rc->ac, on_reply, o, argc, (const char **)argv, lens) == REDIS_OK ? 0 : -1;
    const char *full[argc + 3];
    size_t flen[argc + 3];
    full[0] = "EVALSHA";
    full[1] = rc->sha[o->script];
    full[2] = "0";
    for (int i = 0; i < 3; i++) flen[i] = strlen(full[i]);
    for (int i = 0; i < argc; i++) {
        full[i + 3] = argv[i];
        flen[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    return redisAsyncCommandArgv(rc->ac, on_reply, o, argc + 3, full, flen) == REDIS_OK ? 0 : -1;
}

/* hiredis hands every sent command back here exactly once: with its reply,
 * or with NULL when the context is being freed. */
static void on_reply(redisAsyncContext *ac, void *r, void *priv) {
    struct rcop *o = priv;
    struct rconn *rc = o->rc;
    redisReply *reply = r;
    inflight_remove(rc, o);
    if (!reply && ac == rc->ac) rc_lost(rc, ac_err(ac));
    if (o->completed) {
        op_free(o);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_ERROR && o->script >= 0 && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
        ac == rc->ac && rc->state == RC_READY) {
        load_scripts(rc);              /* for this op and the ones after it */
        if (!o->retried && o->argv && op_send(rc, o, o->argc, (const char *const *)o->argv, o->lens) == 0) {
            o->retried = 1;
            inflight_add(rc, o);
            return;
        }
    }
    op_complete(o, reply ? 0 : STORE_UNAVAILABLE, reply);
    op_free(o);
}

static int submit(struct rconn *rc, long script, int argc, const char *const *argv, const size_t *lens,
                  uint64_t extra_ms, rconn_reply_fn cb, void *arg) {
    if (rc->closing) return ASR_EINVAL;
    /* CONNECTING: hiredis holds the command behind the handshake and sends
     * it once connected (its deadline runs from now). */
    if (rc->state == RC_DOWN || !rc->ac || rc->n_inflight >= RC_MAX_INFLIGHT) return STORE_UNAVAILABLE;
    struct rcop *o = xcalloc(1, sizeof *o);
    o->rc = rc;
    o->cb = cb;
    o->arg = arg;
    o->script = script;
    if (script >= 0) {
        size_t total = 0;
        for (int i = 0; i < argc; i++) total += lens ? lens[i] : strlen(argv[i]);
        if (total <= RC_KEEP_ARGS_MAX) {
            o->argv = xcalloc((size_t)argc + 1, sizeof *o->argv);
            o->lens = xcalloc((size_t)argc + 1, sizeof *o->lens);
            for (int i = 0; i < argc; i++) {
                size_t n = lens ? lens[i] : strlen(argv[i]);
                o->argv[i] = xmalloc(n + 1);
                memcpy(o->argv[i], argv[i], n);
                o->argv[i][n] = 0;
                o->lens[i] = n;
            }
            o->argc = argc;
        }
    }
    if (op_send(rc, o, argc, argv, lens) != 0) {
        op_free(o);
        return STORE_UNAVAILABLE;
    }
    o->deadline_ms = now_ms(rc) + rc->op_timeout_ms + extra_ms;
    inflight_add(rc, o);
    return 0;
}

int rconn_argv(struct rconn *rc, int argc, const char *const *argv, const size_t *lens, uint64_t extra_ms,
               rconn_reply_fn cb, void *arg) {
    return submit(rc, -1, argc, argv, lens, extra_ms, cb, arg);
}

int rconn_eval(struct rconn *rc, size_t script, int argc, const char *const *argv, const size_t *lens,
               rconn_reply_fn cb, void *arg) {
    if (script >= rc->n_scripts) return ASR_EINVAL;
    return submit(rc, (long)script, argc, argv, lens, 0, cb, arg);
}

int rconn_up(const struct rconn *rc) { return rc->state == RC_READY; }
int rconn_usable(const struct rconn *rc) { return rc->state == RC_READY || (rc->state == RC_CONNECTING && rc->ac); }
size_t rconn_inflight(const struct rconn *rc) { return rc->n_inflight; }

/* ---- open / close -------------------------------------------------------------------------- */

int rconn_open(uv_loop_t *loop, const struct rconn_cfg *cfg, struct rconn **out) {
    if (!loop || !cfg || !cfg->url || !out) return ASR_EINVAL;
    struct rconn *rc = xcalloc(1, sizeof *rc);
    rc->loop = loop;
    rc->url = *cfg->url;
    if (rc->url.is_unix) snprintf(rc->addr, sizeof rc->addr, "%s", rc->url.path);
    else if (strchr(rc->url.host, ':')) snprintf(rc->addr, sizeof rc->addr, "[%s]:%u", rc->url.host, rc->url.port);
    else snprintf(rc->addr, sizeof rc->addr, "%s:%u", rc->url.host, rc->url.port);
    rc->name = cfg->name ? cfg->name : "redis";
    rc->scripts = cfg->scripts;
    rc->n_scripts = cfg->n_scripts;
    rc->sha = xcalloc(cfg->n_scripts ? cfg->n_scripts : 1, sizeof *rc->sha);
    for (size_t i = 0; i < cfg->n_scripts; i++) {
        struct sha1_ctx c;
        uint8_t d[SHA1_DIGEST_SIZE];
        sha1_init(&c);
        sha1_update(&c, strlen(cfg->scripts[i]), (const uint8_t *)cfg->scripts[i]);
        sha1_digest(&c, SHA1_DIGEST_SIZE, d);
        for (int k = 0; k < SHA1_DIGEST_SIZE; k++) snprintf(&rc->sha[i][2 * k], 3, "%02x", d[k]);
    }
    rc->op_timeout_ms = cfg->op_timeout_ms ? cfg->op_timeout_ms : 1000;
    rc->on_state = cfg->on_state;
    rc->ctx = cfg->ctx;
    rc->state = RC_DOWN;
    rc->backoff_ms = RC_BACKOFF_MIN_MS;
    uv_timer_init(loop, &rc->timer);
    rc->timer.data = rc;
    uv_unref((uv_handle_t *)&rc->timer);
    uv_timer_init(loop, &rc->op_timer);
    rc->op_timer.data = rc;
    uv_unref((uv_handle_t *)&rc->op_timer);
    rc->handles_open = 2;
    rc_connect(rc);
    *out = rc;
    return 0;
}

void rconn_close(struct rconn *rc, rconn_closed_fn on_closed, void *arg) {
    if (!rc || rc->closing) return;
    rc->closing = 1;
    rc->on_closed = on_closed;
    rc->closed_arg = arg;
    if (rc->gai) {
        uv_cancel((uv_req_t *)rc->gai);
        rc->gai = NULL;
    }
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    rc->state = RC_DOWN;
    if (ac) redisAsyncFree(ac);        /* pending commands complete with STORE_UNAVAILABLE */
    uv_timer_stop(&rc->timer);
    uv_timer_stop(&rc->op_timer);
    uv_close((uv_handle_t *)&rc->timer, on_handle_closed);
    uv_close((uv_handle_t *)&rc->op_timer, on_handle_closed);
}
