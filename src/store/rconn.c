/* One Redis connection with reconnect, deadlines and scripts (rconn.h).
 * Used by the session store (store/redis.c: its main and pub/sub
 * connections) and the job queue (store/jobs.c).
 *
 * Host names are resolved with uv_getaddrinfo (hiredis 0.14 would call
 * getaddrinfo on the loop thread), so hiredis only ever sees an address.
 *
 * The loop attachment (ev_*) is ours rather than hiredis' adapters/libuv.h:
 * the Debian 12 (0.14) adapter ignores a poll error, so hiredis never hears
 * of a refused connect or a reset connection and a pub/sub connection,
 * which sends nothing, would hang for ever. Ours hands an error to hiredis
 * as the events it waits for, so it reads the error and disconnects.
 *
 * Deadlines: hiredis 0.14 has no command timeout, so the commands sent are
 * kept in a list ordered by deadline with one timer for the oldest. When it
 * fires the expired ones complete with ASR_E_TIMEOUT and the connection is
 * dropped (replies come in order: if the oldest gets none, the later ones
 * will not either), which fails the rest at once and starts the reconnect.
 * A timed-out command stays allocated, marked completed, until hiredis
 * hands its privdata back (reply, or NULL when the context is freed).
 * The code is written against hiredis 0.14 (Debian 12) and uses nothing
 * that 1.x changed. */
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
#define RC_KEEP_ARGS_MAX  (64u << 10)   /* the default of rconn_cfg.keep_args_max */

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
    uint64_t       wait_ms;            /* the deadline's length, for the log */
    long           script;             /* script number, or -1 */
    int            retried;            /* re-sent after NOSCRIPT */
    unsigned       gen;                /* rc->script_gen when sent */
    int            argc;               /* kept arguments (script calls up to RC_KEEP_ARGS_MAX) */
    char         **argv;               /* owned */
    size_t        *lens;               /* owned */
};

struct rconn {
    uv_loop_t         *loop;           /* borrowed */
    struct store_url   url;            /* password inside: never logged */
    char               addr[300];      /* for logs */
    const char        *name;           /* static */
    const char *const *scripts;        /* borrowed: outlive rc */
    size_t             n_scripts;
    char             (*sha)[41];       /* owned: SHA-1 of each script */
    unsigned           script_gen;     /* SCRIPT LOADs queued so far (rounds) */
    uint64_t           op_timeout_ms;
    size_t             keep_args_max;  /* bytes of a script call kept for a re-send */
    char              *channel;        /* owned: pub/sub mode's channel, or NULL */
    rconn_state_fn     on_state;
    rconn_message_fn   on_message;
    rconn_hs_begin_fn  hs_begin;
    rconn_hs_end_fn    hs_end;
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
    uint64_t           down_since_ms;  /* loop ms the outage started */
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
    free(rc->channel);
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
        rc->down_since_ms = now_ms(rc);
        log_conn(LOG_WARN, "store connection lost", rc, why);
        rc->down_logged = 1;
        if (rc->on_state) rc->on_state(rc->ctx, 0);
    } else if (!rc->down_logged) {
        if (!rc->down_since_ms) rc->down_since_ms = now_ms(rc);
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
    if (rc->ever_ready) {
        struct log_line *l = log_begin(LOG_INFO, "store connection restored");
        if (l) {
            log_str(l, "store", "redis");
            log_str(l, "conn", rc->name);
            log_str(l, "addr", rc->addr);
            log_u64(l, "down_ms", now_ms(rc) - rc->down_since_ms);
            log_end(l);
        }
    } else {
        log_conn(LOG_INFO, "store connected", rc, NULL);
    }
    rc->ever_ready = 1;
    rc->down_logged = 0;
    rc->down_since_ms = 0;
    if (rc->on_state) rc->on_state(rc->ctx, 1);
}

/* ---- loop attachment ---------------------------------------------------------------- */

/* hiredis event hooks on a uv_poll_t. Freed by the close callback that
 * ev_cleanup (hiredis freeing the context) starts; the connection waits for
 * it (a hold) so that nothing of it is left on the loop after close. */

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

/* A reply callback's common start: 0 when the reply belongs to a context
 * that was replaced (ignore it) or is NULL (the connection is lost; handled
 * here). */
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

/* The last handshake step answered (PING, or the caller's step, which
 * judges its reply): ready. */
static void on_hs_last(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (!reply_live(rc, ac, reply)) return;
    const char *why = rc->hs_end ? rc->hs_end(rc->ctx, reply)
                      : reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (why) rc_drop(rc, why);
    else if (rc->state == RC_CONNECTING) rc_ready(rc);
}

/* Pub/sub mode: the subscribe confirmation makes the connection READY; each
 * message on the channel goes to on_message. */
static void on_sub_message(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    redisReply *reply = r;
    if (!reply_live(rc, ac, reply)) return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || !reply->element[0] ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    const redisReply *payload = reply->element[2];
    if (strcmp(kind, "subscribe") == 0) {
        if (rc->state == RC_CONNECTING) rc_ready(rc);
    } else if (strcmp(kind, "message") == 0 && payload && payload->type == REDIS_REPLY_STRING) {
        if (rc->on_message) rc->on_message(rc->ctx, payload->str, payload->len);
    }
}

int rconn_hs_eval(struct rconn *rc, size_t script, int argc, const char *const *argv, const size_t *lens) {
    if (!rc->ac || rc->state != RC_CONNECTING || script >= rc->n_scripts || argc < 0) return ASR_EINVAL;
    const char *full[argc + 3];
    size_t flen[argc + 3];
    full[0] = "EVALSHA";
    full[1] = rc->sha[script];
    full[2] = "0";
    for (int i = 0; i < 3; i++) flen[i] = strlen(full[i]);
    for (int i = 0; i < argc; i++) {
        full[i + 3] = argv[i];
        flen[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    return redisAsyncCommandArgv(rc->ac, on_hs_last, rc, argc + 3, full, flen) == REDIS_OK ? 0 : STORE_UNAVAILABLE;
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
    rc->script_gen++;
    for (size_t i = 0; i < rc->n_scripts; i++)
        redisAsyncCommand(rc->ac, on_hs_reply, rc, "SCRIPT LOAD %s", rc->scripts[i]);
}

/* Queues the handshake; hiredis writes it once the socket connects. */
static void rc_handshake(struct rconn *rc) {
    redisAsyncContext *ac = rc->ac;
    const struct store_url *u = &rc->url;
    if (u->password[0]) {
        if (u->user[0]) redisAsyncCommand(ac, on_hs_reply, rc, "AUTH %s %s", u->user, u->password);
        else redisAsyncCommand(ac, on_hs_reply, rc, "AUTH %s", u->password);
    }
    if (rc->channel) {                 /* channels are not per db: no SELECT */
        redisAsyncCommand(ac, on_sub_message, rc, "SUBSCRIBE %s", rc->channel);
        return;
    }
    if (u->db) redisAsyncCommand(ac, on_hs_reply, rc, "SELECT %u", u->db);
    load_scripts(rc);
    if (rc->hs_begin) rc->hs_begin(rc->ctx, rc);
    else redisAsyncCommand(ac, on_hs_last, rc, "PING");
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
    /* TCP keepalive finds a dead peer on a quiet (pub/sub) connection. (On
     * a unix socket it would fail and leave an error in the context.) */
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
        /* IPv4 first, as hiredis itself prefers ("localhost" may list ::1
         * first while Redis listens on 127.0.0.1 only). */
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
 * with ASR_E_TIMEOUT (new commands from those callbacks fail fast: the
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
    uint64_t wait_ms = h->wait_ms;
    while ((h = rc->in_head) && h->deadline_ms <= now) {
        inflight_remove(rc, h);
        expired++;
        op_complete(h, ASR_E_TIMEOUT, NULL);
    }
    char why[96];
    snprintf(why, sizeof why, "%zu op(s) without reply in %llu ms", expired, (unsigned long long)wait_ms);
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
        /* Load them again unless that was queued after o was sent (then it
         * runs before the re-send): one round per flush, not one per op. */
        if (o->gen == rc->script_gen) load_scripts(rc);
        o->gen = rc->script_gen;
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
    if (rc->closing || rc->channel) return ASR_EINVAL;
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
        if (total <= rc->keep_args_max) {
            /* Sized by the caller's data (a session blob): a failed
             * allocation fails the command instead of aborting. */
            o->argv = xcalloc((size_t)argc + 1, sizeof *o->argv);
            o->lens = xcalloc((size_t)argc + 1, sizeof *o->lens);
            for (int i = 0; i < argc; i++) {
                size_t n = lens ? lens[i] : strlen(argv[i]);
                char *copy = malloc(n + 1);
                if (!copy) {
                    op_free(o);
                    return STORE_UNAVAILABLE;
                }
                memcpy(copy, argv[i], n);
                copy[n] = 0;
                o->argv[i] = copy;
                o->lens[i] = n;
                o->argc = i + 1;
            }
        }
    }
    if (op_send(rc, o, argc, argv, lens) != 0) {
        op_free(o);
        return STORE_UNAVAILABLE;
    }
    o->gen = rc->script_gen;
    o->wait_ms = rc->op_timeout_ms + extra_ms;
    o->deadline_ms = now_ms(rc) + o->wait_ms;
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
int rconn_usable(const struct rconn *rc) {
    return !rc->channel && (rc->state == RC_READY || (rc->state == RC_CONNECTING && rc->ac));
}
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
    rc->keep_args_max = cfg->keep_args_max ? cfg->keep_args_max : RC_KEEP_ARGS_MAX;
    if (cfg->subscribe) rc->channel = xstrdup(cfg->subscribe);
    rc->on_state = cfg->on_state;
    rc->on_message = cfg->on_message;
    rc->hs_begin = cfg->hs_begin;
    rc->hs_end = cfg->hs_end;
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
