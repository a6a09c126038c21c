/* Redis session store: hiredis async contexts on the worker's libuv loop
 * (hiredis adapters/libuv.h), never blocking it. docs/internals/store.md has
 * the keys, the scripts' logic and the failure behaviour.
 *
 * Two connections, each with its own state machine and backoff:
 *   main: AUTH, SELECT, SCRIPT LOAD, the register script, then every op and
 *         the heartbeat;
 *   sub:  AUTH, SUBSCRIBE <prefix>released:<worker> for release notices.
 *   DOWN --(backoff timer)--> CONNECTING --(handshake replied)--> READY
 *     ^----------(error, EOF, connect or op timeout)---------------'
 * Host names are resolved with uv_getaddrinfo (hiredis 0.14 would call
 * getaddrinfo on the loop thread), so hiredis only ever sees an address.
 *
 * The loop attachment (ev_*) is ours rather than hiredis' adapters/libuv.h:
 * the Debian 12 (0.14) adapter ignores a poll error, so hiredis never hears
 * of a refused connect or a reset connection and the pub/sub connection,
 * which sends nothing, would hang for ever. Ours hands an error to hiredis
 * as the events it waits for, so it reads the error and disconnects.
 *
 * Op deadlines: hiredis 0.14 has no command timeout, so the store keeps the
 * ops it sent in a list ordered by deadline with one timer for the oldest.
 * When it fires the expired ops complete with STORE_UNAVAILABLE and the
 * connection is dropped (replies come in order: if the oldest gets none, the
 * later ones will not either), which fails the rest at once and starts the
 * reconnect. A timed-out op stays allocated, marked completed, until hiredis
 * hands its privdata back (reply or NULL when the context is freed).
 *
 * All writes go through Lua scripts, sent with EVALSHA; a NOSCRIPT answer
 * (script cache flushed) re-sends the op once with EVAL, keeping its deadline.
 * The code is written against hiredis 0.14 (Debian 12) and uses nothing that
 * 1.x changed. */
#include "store/store.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <nettle/sha1.h>

#include "base/log.h"
#include "base/util.h"

/* ---- scripts ------------------------------------------------------------- */

/* Every script gets ARGV[1] = key prefix, ARGV[2] = this worker's id, and
 * the op's own arguments from ARGV[3]. Times are the Redis server's clock
 * (TIME), so workers' clocks never need to agree. Keys are built here and in
 * key_*() below, nowhere else. */
#define LUA_PRELUDE                                                              \
    "if redis.replicate_commands then redis.replicate_commands() end\n"          \
    "local p, me = ARGV[1], ARGV[2]\n"                                           \
    "local function now_ms()\n"                                                  \
    "  local t = redis.call('TIME')\n"                                           \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"       \
    "end\n"                                                                      \
    "local function skey(id) return p .. 'session:' .. id end\n"                 \
    "local function zkey(w) return p .. 'worker:' .. w .. ':sessions' end\n"     \
    "local function hbkey(w) return p .. 'worker:' .. w .. ':alive' end\n"       \
    "local function alive(w) return w == me or redis.call('EXISTS', hbkey(w)) == 1 end\n" \
    "local function count_active(now)\n"                                         \
    "  local total = 0\n"                                                        \
    "  for _, w in ipairs(redis.call('SMEMBERS', p .. 'workers')) do\n"          \
    "    local zk = zkey(w)\n"                                                   \
    "    if alive(w) then\n"                                                     \
    "      redis.call('ZREMRANGEBYSCORE', zk, '-inf', '(' .. now)\n"             \
    "      total = total + redis.call('ZCARD', zk)\n"                            \
    "    elseif redis.call('EXISTS', zk) == 0 then\n"                            \
    "      redis.call('SREM', p .. 'workers', w)\n"                              \
    "    end\n"                                                                  \
    "  end\n"                                                                    \
    "  return total\n"                                                           \
    "end\n"                                                                      \
    "local function own(id, now, ttl)\n"                                         \
    "  local zk = zkey(me)\n"                                                    \
    "  redis.call('ZADD', zk, now + ttl, id)\n"                                  \
    "  redis.call('PEXPIRE', zk, ttl)\n"                                         \
    "end\n"

/* Result codes the scripts return. */
enum { SR_OK = 0, SR_EXISTS = 1, SR_LIMIT = 2, SR_NOT_FOUND = 3, SR_NOT_OWNER = 4, SR_BUSY = 5 };

enum script { S_CREATE, S_UPDATE, S_CLAIM, S_DELETE, S_LIST, S_COUNT, S_REGISTER, S_REPUBLISH, S__N };

static const char *const script_body[S__N] = {
    /* create: ARGV[3] id, [4] blob, [5] ttl ms, [6] limit (0 = none) */
    [S_CREATE] =
    "local id, ttl, limit = ARGV[3], tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local sk = skey(id)\n"
    "if redis.call('EXISTS', sk) == 1 then return 1 end\n"
    "local now = now_ms()\n"
    "if limit > 0 and count_active(now) >= limit then return 2 end\n"
    "redis.call('HSET', sk, 'owner', me, 'attached', '1', 'created', now, 'last', now, 'blob', ARGV[4])\n"
    "redis.call('PEXPIRE', sk, ttl)\n"
    "own(id, now, ttl)\n"
    "redis.call('SADD', p .. 'workers', me)\n"
    "return 0\n",
    /* update: ARGV[3] id, [4] ttl ms, [5] attached, [6] has blob, [7] blob */
    [S_UPDATE] =
    "local id, ttl = ARGV[3], tonumber(ARGV[4])\n"
    "local sk = skey(id)\n"
    "local owner = redis.call('HGET', sk, 'owner')\n"
    "if not owner then return 3 end\n"
    "if owner ~= me then return 4 end\n"
    "local now = now_ms()\n"
    "if ARGV[6] == '1' then\n"
    "  redis.call('HSET', sk, 'attached', ARGV[5], 'last', now, 'blob', ARGV[7])\n"
    "else\n"
    "  redis.call('HSET', sk, 'attached', ARGV[5], 'last', now)\n"
    "end\n"
    "redis.call('PEXPIRE', sk, ttl)\n"
    "own(id, now, ttl)\n"
    "return 0\n",
    /* claim: ARGV[3] id, [4] ttl ms -> {code, prev owner, created, now, blob} */
    [S_CLAIM] =
    "local id, ttl = ARGV[3], tonumber(ARGV[4])\n"
    "local sk = skey(id)\n"
    "local r = redis.call('HMGET', sk, 'owner', 'attached', 'created', 'blob')\n"
    "local owner = r[1]\n"
    "if not owner then return {3} end\n"
    "local live = alive(owner)\n"
    "if r[2] == '1' and live then return {5} end\n"
    "local now = now_ms()\n"
    "redis.call('HSET', sk, 'owner', me, 'attached', '1', 'last', now)\n"
    "redis.call('PEXPIRE', sk, ttl)\n"
    "if owner ~= me then\n"
    "  redis.call('ZREM', zkey(owner), id)\n"
    "  if live then redis.call('PUBLISH', p .. 'released:' .. owner, id) end\n"
    "end\n"
    "own(id, now, ttl)\n"
    "redis.call('SADD', p .. 'workers', me)\n"
    "return {0, owner, r[3], now, r[4]}\n",
    /* delete: ARGV[3] id */
    [S_DELETE] =
    "local id = ARGV[3]\n"
    "local sk = skey(id)\n"
    "local owner = redis.call('HGET', sk, 'owner')\n"
    "if not owner then return 3 end\n"
    "if owner ~= me then return 4 end\n"
    "redis.call('DEL', sk)\n"
    "redis.call('ZREM', zkey(me), id)\n"
    "return 0\n",
    /* list: ARGV[3] worker -> ids of its live records */
    [S_LIST] =
    "return redis.call('ZRANGEBYSCORE', zkey(ARGV[3]), now_ms(), '+inf')\n",
    /* count -> sessions of live workers */
    [S_COUNT] =
    "return count_active(now_ms())\n",
    /* register (each connect): ARGV[3] heartbeat ttl ms, [4] instance
     * nonce, [5] first connect of this process. Sets the heartbeat, prunes
     * dead workers with no sessions left from the set, and on the first
     * connect detaches what an earlier process with this worker id left
     * attached -> the number detached */
    [S_REGISTER] =
    "redis.call('SET', hbkey(me), ARGV[4], 'PX', ARGV[3])\n"
    "redis.call('SADD', p .. 'workers', me)\n"
    "for _, w in ipairs(redis.call('SMEMBERS', p .. 'workers')) do\n"
    "  if not alive(w) and redis.call('EXISTS', zkey(w)) == 0 then\n"
    "    redis.call('SREM', p .. 'workers', w)\n"
    "  end\n"
    "end\n"
    "if ARGV[5] ~= '1' then return 0 end\n"
    "local now = now_ms()\n"
    "local zk = zkey(me)\n"
    "redis.call('ZREMRANGEBYSCORE', zk, '-inf', '(' .. now)\n"
    "local n = 0\n"
    "for _, id in ipairs(redis.call('ZRANGE', zk, 0, -1)) do\n"
    "  local sk = skey(id)\n"
    "  local r = redis.call('HMGET', sk, 'owner', 'attached')\n"
    "  if r[1] ~= me then redis.call('ZREM', zk, id)\n"
    "  elseif r[2] == '1' then redis.call('HSET', sk, 'attached', '0'); n = n + 1 end\n"
    "end\n"
    "return n\n",
    /* republish (after a reconnect: the store may have restarted empty):
     * ARGV[3] id, [4] ttl ms, [5] attached, [6] blob. Absent or mine:
     * written as mine (no limit check: admitted before), slot re-taken;
     * another worker's: 4 (NOT_OWNER), nothing changes */
    [S_REPUBLISH] =
    "local id, ttl = ARGV[3], tonumber(ARGV[4])\n"
    "local sk = skey(id)\n"
    "local owner = redis.call('HGET', sk, 'owner')\n"
    "if owner and owner ~= me then return 4 end\n"
    "local now = now_ms()\n"
    "redis.call('HSETNX', sk, 'created', now)\n"
    "redis.call('HSET', sk, 'owner', me, 'attached', ARGV[5], 'last', now, 'blob', ARGV[6])\n"
    "redis.call('PEXPIRE', sk, ttl)\n"
    "own(id, now, ttl)\n"
    "redis.call('SADD', p .. 'workers', me)\n"
    "return 0\n",
};

/* ---- types ---------------------------------------------------------------- */

#define REDIS_BACKOFF_MIN_MS  100
#define REDIS_BACKOFF_MAX_MS  5000
#define REDIS_MAX_INFLIGHT    100000    /* past this, ops fail fast */
#define REDIS_KEY_MAX         512

enum rc_state { RC_DOWN, RC_CONNECTING, RC_READY };

struct rstore;

/* One hiredis connection and its reconnect logic. */
struct rconn {
    struct rstore     *rs;              /* borrowed: owner */
    redisAsyncContext *ac;              /* hiredis frees it; NULL while down */
    enum rc_state      state;
    int                is_sub;          /* 1: the pub/sub connection */
    uv_timer_t         timer;           /* connect deadline (CONNECTING), retry (DOWN) */
    uv_getaddrinfo_t  *gai;             /* owned until its callback: resolution in flight */
    unsigned           attempt;         /* connect attempts; tags getaddrinfo answers */
    uint64_t           backoff_ms;      /* delay before the next attempt */
    int                ever_ready;      /* was READY once */
    int                down_logged;     /* this outage was logged */
    uint64_t           down_since_ms;   /* loop ms the outage started */
};

enum rop_internal { ROP_USER = 0, ROP_HEARTBEAT };

/* An op sent to Redis (user or internal). Starts with struct store__op. */
struct rop {
    struct store__op op;
    struct rstore   *rs;                /* borrowed */
    enum rop_internal internal;
    int              script;            /* enum script, or -1 for a plain command */
    int              retried;           /* re-sent with EVAL after NOSCRIPT */
    int              completed;         /* callback ran (timed out); waiting for hiredis */
    int              in_list;
    struct rop      *prev, *next;       /* in-flight list, by deadline */
    uint64_t         deadline_ms;       /* loop ms */
    char            *id;                /* owned: session id */
    char            *worker;            /* owned: list's worker */
    void            *blob;              /* owned: create/update blob copy */
    size_t           blob_len;
    int              has_blob;
    int              attached;
};

struct rstore {
    struct store   base;
    struct store_url url;               /* password inside: never logged */
    char           addr[300];           /* host:port or path, for logs */
    char           nonce[33];           /* this process's instance id */
    char          *script[S__N];        /* owned: prelude + body */
    size_t         script_len[S__N];
    char           sha[S__N][41];
    struct rconn   main, sub;
    uv_timer_t     op_timer;            /* deadline of the oldest in-flight op */
    uv_timer_t     hb_timer;            /* heartbeat, every heartbeat_ttl/3 */
    struct rop    *in_head, *in_tail;   /* in-flight ops, ordered by deadline */
    size_t         n_inflight;
    int            registered;          /* the first register (adoption) ran */
    uint64_t       err_log_ms;          /* loop ms of the last error-reply log line */
    uint64_t       err_suppressed;      /* error replies not logged since */
};

static void rc_connect(struct rconn *rc);
static void on_reply(redisAsyncContext *ac, void *r, void *priv);

static uv_loop_t *rs_loop(struct rstore *rs) { return rs->base.loop_; }
static uint64_t rs_now(struct rstore *rs) { return uv_now(rs->base.loop_); }

/* ---- keys ----------------------------------------------------------------- */

static void key_session(const struct rstore *rs, const char *id, char out[REDIS_KEY_MAX]) {
    snprintf(out, REDIS_KEY_MAX, "%ssession:%s", rs->base.prefix_, id);
}
static void key_alive(const struct rstore *rs, char out[REDIS_KEY_MAX]) {
    snprintf(out, REDIS_KEY_MAX, "%sworker:%s:alive", rs->base.prefix_, rs->base.worker_);
}
static void key_workers(const struct rstore *rs, char out[REDIS_KEY_MAX]) {
    snprintf(out, REDIS_KEY_MAX, "%sworkers", rs->base.prefix_);
}
static void key_channel(const struct rstore *rs, char out[REDIS_KEY_MAX]) {
    snprintf(out, REDIS_KEY_MAX, "%sreleased:%s", rs->base.prefix_, rs->base.worker_);
}

/* ---- logging ---------------------------------------------------------------- */

/* The context's error: in onConnect hiredis has not yet copied c.err to
 * ac->err, so read the inner one. */
static const char *ac_err(const redisAsyncContext *ac) {
    if (ac && ac->c.err && ac->c.errstr[0]) return ac->c.errstr;
    if (ac && ac->err && ac->errstr) return ac->errstr;
    return "connection closed";
}

static const char *rc_name(const struct rconn *rc) { return rc->is_sub ? "pubsub" : "main"; }

static void log_conn(enum log_level lv, const char *msg, const struct rconn *rc, const char *why) {
    struct log_line *l = log_begin(lv, msg);
    if (!l) return;
    log_str(l, "store", "redis");
    log_str(l, "conn", rc_name(rc));
    log_str(l, "addr", rc->rs->addr);
    if (why) log_str(l, "error", why);
    log_end(l);
}

/* Error replies (OOM, READONLY, LOADING, script errors) are logged at most
 * once a second, with the number suppressed since. */
static void log_reply_error(struct rstore *rs, const char *what, const char *err) {
    uint64_t now = rs_now(rs);
    if (rs->err_log_ms && now - rs->err_log_ms < 1000) {
        rs->err_suppressed++;
        return;
    }
    struct log_line *l = log_begin(LOG_WARN, "store error reply");
    if (l) {
        log_str(l, "store", "redis");
        log_str(l, "op", what);
        log_str(l, "error", err);
        log_u64(l, "suppressed", rs->err_suppressed);
        log_end(l);
    }
    rs->err_log_ms = now ? now : 1;
    rs->err_suppressed = 0;
}

/* ---- in-flight list ---------------------------------------------------------- */

static void on_op_timer(uv_timer_t *t);

/* Inserts o by deadline (from the tail: fresh ops go last, a re-sent one
 * keeps its older deadline) and arms the timer when o is the new head. */
static void inflight_add(struct rstore *rs, struct rop *o) {
    struct rop *after = rs->in_tail;
    while (after && after->deadline_ms > o->deadline_ms) after = after->prev;
    o->prev = after;
    o->next = after ? after->next : rs->in_head;
    if (o->next) o->next->prev = o;
    else rs->in_tail = o;
    if (after) after->next = o;
    else rs->in_head = o;
    o->in_list = 1;
    rs->n_inflight++;
    rs->base.stats_.inflight = rs->n_inflight;
    if (rs->in_head == o) {
        uint64_t now = rs_now(rs);
        uv_timer_start(&rs->op_timer, on_op_timer, o->deadline_ms > now ? o->deadline_ms - now : 0, 0);
    }
}

/* The timer is left armed for the old head; it re-arms itself when it finds
 * the new head not yet expired. */
static void inflight_remove(struct rstore *rs, struct rop *o) {
    if (!o->in_list) return;
    if (o->prev) o->prev->next = o->next;
    else rs->in_head = o->next;
    if (o->next) o->next->prev = o->prev;
    else rs->in_tail = o->prev;
    o->prev = o->next = NULL;
    o->in_list = 0;
    rs->n_inflight--;
    rs->base.stats_.inflight = rs->n_inflight;
    if (!rs->in_head) uv_timer_stop(&rs->op_timer);
}

/* ---- ops ---------------------------------------------------------------------- */

static void rop_free_args(struct rop *o) {
    free(o->id);
    free(o->worker);
    free(o->blob);
    o->id = o->worker = NULL;
    o->blob = NULL;
}

static void rop_free(struct rop *o) {
    rop_free_args(o);
    store__op_free(&o->op);
}

/* Completes a user op that was never sent (or could not be): later, through
 * the deferred queue, which also frees it. */
static void rop_fail_fast(struct rop *o) {
    rop_free_args(o);
    store__defer(&o->op, STORE_UNAVAILABLE);
}

/* Sends o as EVALSHA (or EVAL after NOSCRIPT). 0 or -1. */
static int rop_send_script(struct rstore *rs, struct rop *o) {
    char ttl[24], limit[24];
    const char *argv[12];
    size_t len[12];
    int n = 0;
#define ARG(p, l) do { argv[n] = (p); len[n] = (l); n++; } while (0)
#define ARGS(p) ARG((p), strlen(p))
    if (o->retried) ARG(rs->script[o->script], rs->script_len[o->script]);
    else ARGS(rs->sha[o->script]);
    ARGS("0");
    ARGS(rs->base.prefix_);
    ARGS(rs->base.worker_);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)rs->base.session_ttl_ms_);
    switch (o->script) {
    case S_CREATE:
        snprintf(limit, sizeof limit, "%llu", (unsigned long long)rs->base.max_sessions_);
        ARGS(o->id);
        ARG(o->blob ? o->blob : "", o->blob_len);
        ARGS(ttl);
        ARGS(limit);
        break;
    case S_UPDATE:
        ARGS(o->id);
        ARGS(ttl);
        ARGS(o->attached ? "1" : "0");
        ARGS(o->has_blob ? "1" : "0");
        ARG(o->blob ? o->blob : "", o->blob_len);
        break;
    case S_CLAIM:
        ARGS(o->id);
        ARGS(ttl);
        break;
    case S_DELETE:
        ARGS(o->id);
        break;
    case S_REPUBLISH:
        ARGS(o->id);
        ARGS(ttl);
        ARGS(o->attached ? "1" : "0");
        ARG(o->blob ? o->blob : "", o->blob_len);
        break;
    case S_LIST:
        ARGS(o->worker);
        break;
    default:
        break;
    }
#undef ARG
#undef ARGS
    /* EVALSHA/EVAL goes in front; shift by one. */
    const char *full[13];
    size_t flen[13];
    full[0] = o->retried ? "EVAL" : "EVALSHA";
    flen[0] = strlen(full[0]);
    for (int i = 0; i < n; i++) {
        full[i + 1] = argv[i];
        flen[i + 1] = len[i];
    }
    return redisAsyncCommandArgv(rs->main.ac, on_reply, o, n + 1, full, flen) == REDIS_OK ? 0 : -1;
}

static int rop_send(struct rstore *rs, struct rop *o) {
    if (o->script >= 0) return rop_send_script(rs, o);
    char key[REDIS_KEY_MAX];
    key_session(rs, o->id, key);
    /* get: the only plain user command */
    return redisAsyncCommand(rs->main.ac, on_reply, o, "HMGET %s owner attached created last blob",
                             key) == REDIS_OK ? 0 : -1;
}

static int code_status(long long code) {
    switch (code) {
    case SR_OK: return STORE_OK;
    case SR_EXISTS: return STORE_EXISTS;
    case SR_LIMIT: return STORE_LIMIT;
    case SR_NOT_FOUND: return STORE_NOT_FOUND;
    case SR_NOT_OWNER: return STORE_NOT_OWNER;
    case SR_BUSY: return STORE_BUSY;
    default: return STORE_UNAVAILABLE;
    }
}

static uint64_t reply_u64(const redisReply *r) {
    uint64_t v = 0;
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type == REDIS_REPLY_STRING && util_parse_u64(r->str, r->len, UINT64_MAX, &v) == 0) return v;
    return 0;
}

static int is_str(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING; }

/* Turns a reply into the op's result and completes it. */
static void rop_complete(struct rstore *rs, struct rop *o, redisReply *r) {
    struct store__op *op = &o->op;
    int st = STORE_UNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR) {
        log_reply_error(rs, store_op_name(op->kind_), r->str);
        store__finish(op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
        return;
    }
    switch (op->kind_) {
    case STORE_OP_CREATE: case STORE_OP_UPDATE: case STORE_OP_DELETE: case STORE_OP_REPUBLISH:
        if (r->type == REDIS_REPLY_INTEGER) st = code_status(r->integer);
        store__finish(op, st, NULL, NULL, NULL, 0, 0);
        return;
    case STORE_OP_COUNT:
        if (r->type == REDIS_REPLY_INTEGER) st = STORE_OK;
        store__finish(op, st, NULL, NULL, NULL, 0, reply_u64(r));
        return;
    case STORE_OP_CLAIM: {
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
            r->element[0]->type == REDIS_REPLY_INTEGER)
            st = code_status(r->element[0]->integer);
        if (st == STORE_OK && (r->elements < 5 || !is_str(r->element[1]))) st = STORE_UNAVAILABLE;
        if (st != STORE_OK) {
            store__finish(op, st, NULL, NULL, NULL, 0, 0);
            return;
        }
        const redisReply *blob = r->element[4];
        struct store_record rec = {
            .id = o->id, .owner = rs->base.worker_, .attached = 1,
            .created_ms = reply_u64(r->element[2]), .last_activity_ms = reply_u64(r->element[3]),
            .blob = is_str(blob) ? blob->str : "", .blob_len = is_str(blob) ? blob->len : 0,
        };
        store__finish(op, STORE_OK, &rec, r->element[1]->str, NULL, 0, 0);
        return;
    }
    case STORE_OP_GET: {
        /* HMGET owner attached created last blob */
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
            store__finish(op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
            return;
        }
        if (!is_str(r->element[0])) {
            store__finish(op, STORE_NOT_FOUND, NULL, NULL, NULL, 0, 0);
            return;
        }
        const redisReply *blob = r->element[4];
        struct store_record rec = {
            .id = o->id, .owner = r->element[0]->str,
            .attached = is_str(r->element[1]) && strcmp(r->element[1]->str, "1") == 0,
            .created_ms = reply_u64(r->element[2]), .last_activity_ms = reply_u64(r->element[3]),
            .blob = is_str(blob) ? blob->str : "", .blob_len = is_str(blob) ? blob->len : 0,
        };
        store__finish(op, STORE_OK, &rec, NULL, NULL, 0, 0);
        return;
    }
    case STORE_OP_LIST: {
        if (r->type != REDIS_REPLY_ARRAY) {
            store__finish(op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
            return;
        }
        const char **ids = xcalloc(r->elements ? r->elements : 1, sizeof *ids);
        size_t n = 0;
        for (size_t i = 0; i < r->elements; i++)
            if (is_str(r->element[i])) ids[n++] = r->element[i]->str;
        store__finish(op, STORE_OK, NULL, NULL, ids, n, 0);
        free(ids);
        return;
    }
    case STORE_OP__N:
        break;
    }
    store__finish(op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
}

static void rc_lost(struct rconn *rc, const char *why);

/* hiredis hands every sent op back here exactly once: with its reply, or
 * with NULL when the context is being freed (error, EOF, or our drop). */
static void on_reply(redisAsyncContext *ac, void *r, void *priv) {
    struct rop *o = priv;
    struct rstore *rs = o->rs;
    redisReply *reply = r;
    inflight_remove(rs, o);
    if (!reply && ac == rs->main.ac) rc_lost(&rs->main, ac_err(ac));
    if (o->completed) {
        rop_free(o);
        return;
    }
    if (o->internal) {
        if (reply && reply->type == REDIS_REPLY_ERROR) log_reply_error(rs, "heartbeat", reply->str);
        rop_free(o);
        return;
    }
    if (!reply) {
        store__finish(&o->op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
        rop_free(o);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && o->script >= 0 && !o->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && ac == rs->main.ac) {
        o->retried = 1;
        if (rop_send(rs, o) == 0) {
            inflight_add(rs, o);
            return;
        }
    }
    rop_complete(rs, o, reply);
    rop_free(o);
}

static void redis_submit(struct store *s, struct store__op *op, const struct store__args *a) {
    struct rstore *rs = (struct rstore *)s;
    struct rop *o = (struct rop *)op;
    o->rs = rs;
    o->internal = ROP_USER;
    if (rs->main.state != RC_READY || rs->n_inflight >= REDIS_MAX_INFLIGHT) {
        rop_fail_fast(o);
        return;
    }
    if (a->id) o->id = xstrdup(a->id);
    if (a->worker) o->worker = xstrdup(a->worker);
    o->attached = a->attached;
    if (a->blob) {
        o->has_blob = 1;
        o->blob_len = a->blob_len;
        if (a->blob_len) {
            o->blob = malloc(a->blob_len);
            if (!o->blob) {
                rop_fail_fast(o);
                return;
            }
            memcpy(o->blob, a->blob, a->blob_len);
        }
    }
    switch (op->kind_) {
    case STORE_OP_CREATE: o->script = S_CREATE; break;
    case STORE_OP_UPDATE: o->script = S_UPDATE; break;
    case STORE_OP_CLAIM:  o->script = S_CLAIM; break;
    case STORE_OP_DELETE: o->script = S_DELETE; break;
    case STORE_OP_LIST:   o->script = S_LIST; break;
    case STORE_OP_COUNT:  o->script = S_COUNT; break;
    case STORE_OP_REPUBLISH: o->script = S_REPUBLISH; break;
    default:              o->script = -1; break;
    }
    if (rop_send(rs, o) != 0) {
        rop_fail_fast(o);
        return;
    }
    o->deadline_ms = rs_now(rs) + rs->base.op_timeout_ms_;
    inflight_add(rs, o);
}

/* The oldest in-flight op got no reply in time: complete every expired op
 * with STORE_UNAVAILABLE (the connection is marked down first, so callbacks
 * that make new ops see them fail fast), then drop the connection, which
 * fails the rest and starts the reconnect. */
static void rc_drop_ex(struct rconn *rc, int was_ready, const char *why);

static void on_op_timer(uv_timer_t *t) {
    struct rstore *rs = t->data;
    uint64_t now = rs_now(rs);
    struct rop *h = rs->in_head;
    if (!h) return;
    if (h->deadline_ms > now) {
        uv_timer_start(t, on_op_timer, h->deadline_ms - now, 0);
        return;
    }
    size_t expired = 0;
    int was_ready = rs->main.state == RC_READY;
    rs->main.state = RC_DOWN;           /* callbacks below: new ops fail fast */
    while ((h = rs->in_head) && h->deadline_ms <= now) {
        inflight_remove(rs, h);
        h->completed = 1;
        expired++;
        if (!h->internal) {
            rs->base.stats_.timeouts++;
            store__finish(&h->op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
        }
    }
    char why[96];
    snprintf(why, sizeof why, "%zu op(s) without reply in %llu ms", expired,
             (unsigned long long)rs->base.op_timeout_ms_);
    rc_drop_ex(&rs->main, was_ready, why);
}

/* ---- heartbeat -------------------------------------------------------------- */

static struct rop *internal_op(struct rstore *rs) {
    struct rop *o = xcalloc(1, sizeof *o);
    o->op.s_ = &rs->base;
    o->rs = rs;
    o->internal = ROP_HEARTBEAT;
    o->script = -1;
    return o;
}

/* Tracks a sent internal op (or frees it when hiredis refused it). */
static void internal_sent(struct rstore *rs, struct rop *o, int rc) {
    if (rc != REDIS_OK) {
        rop_free(o);
        return;
    }
    o->deadline_ms = rs_now(rs) + rs->base.op_timeout_ms_;
    inflight_add(rs, o);
}

/* Refreshes this worker's heartbeat key and its place in the worker set.
 * The replies are tracked like ops, so a hung Redis is noticed within
 * heartbeat_ttl/3 + op_timeout even when no session writes. */
static void on_hb_timer(uv_timer_t *t) {
    struct rstore *rs = t->data;
    if (rs->main.state != RC_READY) return;
    char alive[REDIS_KEY_MAX], workers[REDIS_KEY_MAX];
    key_alive(rs, alive);
    key_workers(rs, workers);
    struct rop *o = internal_op(rs);
    internal_sent(rs, o, redisAsyncCommand(rs->main.ac, on_reply, o, "SET %s %s PX %llu", alive,
                                           rs->nonce,
                                           (unsigned long long)rs->base.heartbeat_ttl_ms_));
    o = internal_op(rs);
    internal_sent(rs, o, redisAsyncCommand(rs->main.ac, on_reply, o, "SADD %s %s", workers,
                                           rs->base.worker_));
}

/* ---- loop attachment --------------------------------------------------------- */

/* hiredis event hooks on a uv_poll_t. Freed by the close callback that
 * ev_cleanup (hiredis freeing the context) starts; the store waits for it
 * (a hold) so that nothing of the store is left on the loop after close. */
struct uvev {
    redisAsyncContext *ac;          /* borrowed; NULL once hiredis cleaned up */
    struct store      *s;           /* borrowed: released when the handle closed */
    uv_poll_t          poll;
    int                events;      /* UV_READABLE | UV_WRITABLE hiredis wants */
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
    struct store *s = e->s;
    free(e);
    store__release_hold(s);           /* may free the store: last */
}

static void ev_cleanup(void *p) {
    struct uvev *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_on_closed);
}

static int ev_attach(struct rstore *rs, redisAsyncContext *ac) {
    if (ac->ev.data) return -1;
    struct uvev *e = xcalloc(1, sizeof *e);
    if (uv_poll_init(rs_loop(rs), &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->s = &rs->base;
    e->poll.data = e;
    rs->base.holds_++;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- connections -------------------------------------------------------------- */

static void on_rc_timer(uv_timer_t *t);

/* The connection is gone (hiredis is freeing the context, or we did):
 * tell (once per outage), and schedule the next attempt with backoff.
 * was_ready: it was READY when the trouble started. */
static void rc_down(struct rconn *rc, int was_ready, const char *why) {
    struct rstore *rs = rc->rs;
    rc->state = RC_DOWN;
    uv_timer_stop(&rc->timer);
    if (rs->base.closing_) return;
    if (was_ready) {
        rc->down_since_ms = rs_now(rs);
        if (rc->is_sub) rs->base.stats_.pubsub_connected = 0;
        else store__set_available(&rs->base, 0);
        log_conn(LOG_WARN, "store connection lost", rc, why);
        rc->down_logged = 1;
    } else if (!rc->down_logged) {
        if (!rc->down_since_ms) rc->down_since_ms = rs_now(rs);
        log_conn(LOG_WARN, "store unavailable", rc, why);
        rc->down_logged = 1;
    } else {
        log_conn(LOG_DEBUG, "store connect failed", rc, why);
    }
    uv_timer_start(&rc->timer, on_rc_timer, rc->backoff_ms, 0);
    rc->backoff_ms *= 2;
    if (rc->backoff_ms > REDIS_BACKOFF_MAX_MS) rc->backoff_ms = REDIS_BACKOFF_MAX_MS;
}

/* hiredis dropped the context on its own (it frees it after this returns):
 * EOF, socket error, failed connect. Idempotent per context. */
static void rc_lost(struct rconn *rc, const char *why) {
    if (!rc->ac) return;
    int was_ready = rc->state == RC_READY;
    rc->ac = NULL;
    rc->state = RC_DOWN;
    rc_down(rc, was_ready, why);
}

/* We drop the context: its pending callbacks run with NULL (ops fail).
 * Safe inside a hiredis reply callback (hiredis frees the context once the
 * callback returns), never inside onConnect. */
static void rc_drop_ex(struct rconn *rc, int was_ready, const char *why) {
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    rc->state = RC_DOWN;
    if (ac) redisAsyncFree(ac);
    rc_down(rc, was_ready, why);
}

static void rc_drop(struct rconn *rc, const char *why) {
    rc_drop_ex(rc, rc->state == RC_READY, why);
}

static void rc_ready(struct rconn *rc) {
    struct rstore *rs = rc->rs;
    uv_timer_stop(&rc->timer);
    rc->state = RC_READY;
    rc->backoff_ms = REDIS_BACKOFF_MIN_MS;
    if (rc->ever_ready) {
        if (!rc->is_sub) rs->base.stats_.reconnects++;
        struct log_line *l = log_begin(LOG_INFO, "store connection restored");
        if (l) {
            log_str(l, "store", "redis");
            log_str(l, "conn", rc_name(rc));
            log_str(l, "addr", rs->addr);
            log_u64(l, "down_ms", rs_now(rs) - rc->down_since_ms);
            log_end(l);
        }
    } else {
        log_conn(LOG_INFO, "store connected", rc, NULL);
    }
    rc->ever_ready = 1;
    rc->down_logged = 0;
    rc->down_since_ms = 0;
    if (rc->is_sub) rs->base.stats_.pubsub_connected = 1;
    else store__set_available(&rs->base, 1);
}

/* Handshake replies (AUTH, SELECT, SCRIPT LOAD): any error drops the
 * connection. privdata is the rconn; a reply for an older context is
 * ignored. */

/* A reply callback's common start: 0 when the reply belongs to a connection
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

static void on_register(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    struct rstore *rs = rc->rs;
    redisReply *reply = r;
    if (!reply_live(rc, ac, reply)) return;
    if (reply->type != REDIS_REPLY_INTEGER) {
        rc_drop(rc, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected register reply");
        return;
    }
    if (!rs->registered && reply->integer > 0) {
        struct log_line *l = log_begin(LOG_INFO, "store detached sessions of an earlier process");
        if (l) {
            log_str(l, "store", "redis");
            log_u64(l, "sessions", (uint64_t)reply->integer);
            log_end(l);
        }
    }
    rs->registered = 1;
    rc_ready(rc);
}

/* Pub/sub: the subscribe confirmation makes the connection READY; each
 * message names a session another worker claimed from this one. */
static void on_sub_message(redisAsyncContext *ac, void *r, void *priv) {
    struct rconn *rc = priv;
    struct rstore *rs = rc->rs;
    redisReply *reply = r;
    if (!reply_live(rc, ac, reply)) return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || !is_str(reply->element[0]))
        return;
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        if (rc->state == RC_CONNECTING) rc_ready(rc);
    } else if (strcmp(kind, "message") == 0 && is_str(reply->element[2])) {
        const char *id = reply->element[2]->str;
        if (!store__valid_name(id, STORE_ID_MAX)) return;
        rs->base.stats_.releases++;
        if (rs->base.on_released_) rs->base.on_released_(rs->base.ctx_, id);
    }
}

static void on_connect(const redisAsyncContext *ac, int status) {
    struct rconn *rc = ac->data;
    if (ac != rc->ac) return;
    /* On failure hiredis frees the context right after this returns. */
    if (status != REDIS_OK) rc_lost(rc, ac_err(ac));
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    struct rconn *rc = ac->data;
    if (ac != rc->ac) return;
    rc_lost(rc, status == REDIS_OK ? "connection closed" : ac_err(ac));
}

/* Queues the handshake; hiredis writes it once the socket connects. */
static void rc_handshake(struct rconn *rc) {
    struct rstore *rs = rc->rs;
    redisAsyncContext *ac = rc->ac;
    const struct store_url *u = &rs->url;
    if (u->password[0]) {
        if (u->user[0]) redisAsyncCommand(ac, on_hs_reply, rc, "AUTH %s %s", u->user, u->password);
        else redisAsyncCommand(ac, on_hs_reply, rc, "AUTH %s", u->password);
    }
    if (rc->is_sub) {
        char ch[REDIS_KEY_MAX];
        key_channel(rs, ch);
        redisAsyncCommand(ac, on_sub_message, rc, "SUBSCRIBE %s", ch);
        return;
    }
    if (u->db) redisAsyncCommand(ac, on_hs_reply, rc, "SELECT %u", u->db);
    for (int i = 0; i < S__N; i++)
        redisAsyncCommand(ac, on_hs_reply, rc, "SCRIPT LOAD %b", rs->script[i], rs->script_len[i]);
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)rs->base.heartbeat_ttl_ms_);
    const char *argv[] = {"EVALSHA", rs->sha[S_REGISTER], "0", rs->base.prefix_, rs->base.worker_,
                          ttl, rs->nonce, rs->registered ? "0" : "1"};
    size_t len[8];
    for (int i = 0; i < 8; i++) len[i] = strlen(argv[i]);
    redisAsyncCommandArgv(ac, on_register, rc, 8, argv, len);
}

/* Starts the hiredis connection to a resolved address (or the socket path). */
static void rc_start(struct rconn *rc, const char *ip) {
    struct rstore *rs = rc->rs;
    redisAsyncContext *ac = rs->url.is_unix ? redisAsyncConnectUnix(rs->url.path)
                                            : redisAsyncConnect(ip, (int)rs->url.port);
    if (!ac) {
        rc_down(rc, 0, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac_err(ac));
        redisAsyncFree(ac);
        rc_down(rc, 0, why);
        return;
    }
    ac->data = rc;
    if (ev_attach(rs, ac) != 0) {
        redisAsyncFree(ac);
        rc_down(rc, 0, "cannot attach to the loop");
        return;
    }
    /* TCP keepalive finds a dead peer on the quiet pub/sub connection. (On
     * a unix socket it would fail and leave an error in the context.) */
    if (!rs->url.is_unix) redisEnableKeepAlive(&ac->c);
    rc->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc_handshake(rc);
}

struct gai_req {
    uv_getaddrinfo_t req;
    struct rconn    *rc;        /* borrowed */
    unsigned         attempt;   /* rc->attempt when started */
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    struct gai_req *g = (struct gai_req *)req;
    struct rconn *rc = g->rc;
    struct store *s = &rc->rs->base;
    int current = rc->gai == req && rc->attempt == g->attempt && rc->state == RC_CONNECTING &&
                  !s->closing_;
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
        else rc_down(rc, 0, status ? uv_strerror(status) : "no address");
    }
    if (res) uv_freeaddrinfo(res);
    free(g);
    store__release_hold(s);           /* may free the store: last */
}

static int is_numeric_host(const char *h) {
    unsigned char a[16];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

static void rc_connect(struct rconn *rc) {
    struct rstore *rs = rc->rs;
    rc->state = RC_CONNECTING;
    rc->attempt++;
    uint64_t deadline = rs->base.op_timeout_ms_ < 100 ? 100 : rs->base.op_timeout_ms_;
    uv_timer_start(&rc->timer, on_rc_timer, deadline, 0);
    if (rs->url.is_unix || is_numeric_host(rs->url.host)) {
        rc_start(rc, rs->url.host);
        return;
    }
    struct gai_req *g = xcalloc(1, sizeof *g);
    g->rc = rc;
    g->attempt = rc->attempt;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (uv_getaddrinfo(rs_loop(rs), &g->req, on_resolved, rs->url.host, NULL, &hints) != 0) {
        free(g);
        rc_down(rc, 0, "getaddrinfo failed");
        return;
    }
    rc->gai = &g->req;
    rs->base.holds_++;
}

/* DOWN: time to retry. CONNECTING: the connect deadline passed. */
static void on_rc_timer(uv_timer_t *t) {
    struct rconn *rc = t->data;
    if (rc->rs->base.closing_) return;
    if (rc->state == RC_DOWN) {
        rc_connect(rc);
    } else if (rc->state == RC_CONNECTING) {
        if (rc->gai) {
            uv_cancel((uv_req_t *)rc->gai);    /* its answer is ignored either way */
            rc->gai = NULL;
        }
        char why[64];
        snprintf(why, sizeof why, "connect timeout (%llu ms)",
                 (unsigned long long)rc->rs->base.op_timeout_ms_);
        rc_drop(rc, why);
    }
}

/* ---- backend ------------------------------------------------------------------ */

static void build_scripts(struct rstore *rs) {
    size_t pl = strlen(LUA_PRELUDE);
    for (int i = 0; i < S__N; i++) {
        size_t bl = strlen(script_body[i]);
        rs->script[i] = xmalloc(pl + bl + 1);
        memcpy(rs->script[i], LUA_PRELUDE, pl);
        memcpy(rs->script[i] + pl, script_body[i], bl + 1);
        rs->script_len[i] = pl + bl;
        struct sha1_ctx c;
        uint8_t d[SHA1_DIGEST_SIZE];
        sha1_init(&c);
        sha1_update(&c, rs->script_len[i], (const uint8_t *)rs->script[i]);
        sha1_digest(&c, SHA1_DIGEST_SIZE, d);
        for (int k = 0; k < SHA1_DIGEST_SIZE; k++) snprintf(&rs->sha[i][2 * k], 3, "%02x", d[k]);
    }
}

static void rc_init(struct rstore *rs, struct rconn *rc, int is_sub) {
    rc->rs = rs;
    rc->is_sub = is_sub;
    rc->state = RC_DOWN;
    rc->backoff_ms = REDIS_BACKOFF_MIN_MS;
    uv_timer_init(rs_loop(rs), &rc->timer);
    rc->timer.data = rc;
    uv_unref((uv_handle_t *)&rc->timer);
}

static void redis_open(struct store *s, const struct store_url *url) {
    struct rstore *rs = (struct rstore *)s;
    rs->url = *url;
    if (url->is_unix) snprintf(rs->addr, sizeof rs->addr, "%s", url->path);
    else if (strchr(url->host, ':')) snprintf(rs->addr, sizeof rs->addr, "[%s]:%u", url->host, url->port);
    else snprintf(rs->addr, sizeof rs->addr, "%s:%u", url->host, url->port);
    util_random_id(rs->nonce);
    build_scripts(rs);
    uv_timer_init(s->loop_, &rs->op_timer);
    rs->op_timer.data = rs;
    uint64_t every = s->heartbeat_ttl_ms_ / 3;
    if (every < 100) every = 100;
    uv_timer_init(s->loop_, &rs->hb_timer);
    rs->hb_timer.data = rs;
    uv_timer_start(&rs->hb_timer, on_hb_timer, every, every);
    uv_unref((uv_handle_t *)&rs->hb_timer);
    rc_init(rs, &rs->main, 0);
    rc_init(rs, &rs->sub, 1);
    rc_connect(&rs->main);
    rc_connect(&rs->sub);
}

static int redis_available(const struct store *s) {
    const struct rstore *rs = (const struct rstore *)s;
    return rs->main.state == RC_READY;
}

static void rc_teardown(struct rconn *rc) {
    struct store *s = &rc->rs->base;
    if (rc->gai) {
        uv_cancel((uv_req_t *)rc->gai);
        rc->gai = NULL;
    }
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    rc->state = RC_DOWN;
    if (ac) redisAsyncFree(ac);      /* internal ops and timed-out zombies get NULL: freed */
    uv_timer_stop(&rc->timer);
    store__close_handle(s, (uv_handle_t *)&rc->timer);
}

static void redis_teardown(struct store *s) {
    struct rstore *rs = (struct rstore *)s;
    uv_timer_stop(&rs->hb_timer);
    rc_teardown(&rs->main);
    rc_teardown(&rs->sub);
    uv_timer_stop(&rs->op_timer);
    store__close_handle(s, (uv_handle_t *)&rs->op_timer);
    store__close_handle(s, (uv_handle_t *)&rs->hb_timer);
    s->stats_.connected = 0;
    s->stats_.pubsub_connected = 0;
}

static void redis_destroy(struct store *s) {
    struct rstore *rs = (struct rstore *)s;
    for (int i = 0; i < S__N; i++) free(rs->script[i]);
    memset(&rs->url, 0, sizeof rs->url);
}

const struct store__backend store__redis = {
    .name = "redis",
    .size = sizeof(struct rstore),
    .op_size = sizeof(struct rop),
    .open = redis_open,
    .available = redis_available,
    .submit = redis_submit,
    .teardown = redis_teardown,
    .destroy = redis_destroy,
};
