/* Redis session store: the keys, the scripts and the ops on two store/rconn
 * connections (rconn.h has the connection logic: name resolution, the loop
 * attachment, handshake, backoff, op deadlines, fail-fast).
 * docs/internals/store.md has the keys, the scripts' logic and the failure
 * behaviour.
 *
 *   main: AUTH, SELECT, SCRIPT LOAD, then the register script as the last
 *         handshake step (hs_begin/hs_end), then every op and the heartbeat;
 *   sub:  AUTH, SUBSCRIBE <prefix>released:<worker> for release notices.
 *
 * Ops are accepted only while main is READY (a connecting main fails them
 * fast, as a down one). All writes go through Lua scripts, sent with
 * EVALSHA; a NOSCRIPT answer (script cache flushed) loads the scripts again
 * and re-sends the op once, keeping its deadline. An op without a reply in
 * op_timeout_ms completes with STORE_UNAVAILABLE, counts in stats.timeouts,
 * and drops the connection. */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/log.h"
#include "base/util.h"
#include "store/rconn.h"

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

#define REDIS_KEY_MAX         512
/* A script call's arguments kept by rconn for a re-send after NOSCRIPT: the
 * largest blob with room for the id and the small arguments. */
#define REDIS_KEEP_ARGS_MAX   (STORE_BLOB_MAX + 4096)

/* A user op sent to Redis. Starts with struct store__op. */
struct rop {
    struct store__op op;
    struct rstore   *rs;                /* borrowed */
    char            *id;                /* owned: session id (claim, get: the record's) */
};

struct rstore {
    struct store   base;
    char           nonce[33];           /* this process's instance id */
    char          *script[S__N];        /* owned: prelude + body; borrowed by the connections */
    struct rconn  *main;                /* owned: ops, heartbeat, register; NULL once closing */
    struct rconn  *sub;                 /* owned: release notices; NULL once closing */
    uv_timer_t     hb_timer;            /* heartbeat, every heartbeat_ttl/3 */
    int            main_ever_up;        /* main was READY once: the next READY is a reconnect */
    int            registered;          /* the first register (adoption) ran */
    uint64_t       err_log_ms;          /* loop ms of the last error-reply log line */
    uint64_t       err_suppressed;      /* error replies not logged since */
};

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

/* The inflight gauge follows main's list of commands sent and not answered
 * (ops and heartbeat); set after every send and every completion. */
static void sync_inflight(struct rstore *rs) {
    rs->base.stats_.inflight = rs->main ? rconn_inflight(rs->main) : 0;
}

/* ---- ops ---------------------------------------------------------------------- */

static void rop_free(struct rop *o) {
    free(o->id);
    o->id = NULL;
    store__op_free(&o->op);
}

/* Completes a user op that was never sent (or could not be): later, through
 * the deferred queue, which also frees it. */
static void rop_fail_fast(struct rop *o) {
    free(o->id);
    o->id = NULL;
    store__defer(&o->op, STORE_UNAVAILABLE);
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
static void rop_complete(struct rstore *rs, struct rop *o, const redisReply *r) {
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

/* rconn hands every sent op back here exactly once: with its reply, with
 * ASR_E_TIMEOUT (no reply in op_timeout_ms: counted, and the connection is
 * being dropped), or with STORE_UNAVAILABLE (the connection lost). */
static void on_op_reply(void *arg, int status, const redisReply *reply) {
    struct rop *o = arg;
    struct rstore *rs = o->rs;
    sync_inflight(rs);
    if (status == ASR_E_TIMEOUT) rs->base.stats_.timeouts++;
    if (status != 0) store__finish(&o->op, STORE_UNAVAILABLE, NULL, NULL, NULL, 0, 0);
    else rop_complete(rs, o, reply);
    rop_free(o);
}

/* Sends o's script with the common ARGV (prefix, worker) and its own. */
static int rop_send_script(struct rstore *rs, struct rop *o, enum script script, const struct store__args *a) {
    char ttl[24], limit[24];
    const char *argv[8];
    size_t len[8];
    int n = 0;
#define ARG(p, l) do { argv[n] = (p); len[n] = (l); n++; } while (0)
#define ARGS(p) ARG((p), strlen(p))
    ARGS(rs->base.prefix_);
    ARGS(rs->base.worker_);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)rs->base.session_ttl_ms_);
    switch (script) {
    case S_CREATE:
        snprintf(limit, sizeof limit, "%llu", (unsigned long long)rs->base.max_sessions_);
        ARGS(a->id);
        ARG(a->blob ? (const char *)a->blob : "", a->blob_len);
        ARGS(ttl);
        ARGS(limit);
        break;
    case S_UPDATE:
        ARGS(a->id);
        ARGS(ttl);
        ARGS(a->attached ? "1" : "0");
        ARGS(a->blob ? "1" : "0");
        ARG(a->blob ? (const char *)a->blob : "", a->blob ? a->blob_len : 0);
        break;
    case S_CLAIM:
        ARGS(a->id);
        ARGS(ttl);
        break;
    case S_DELETE:
        ARGS(a->id);
        break;
    case S_REPUBLISH:
        ARGS(a->id);
        ARGS(ttl);
        ARGS(a->attached ? "1" : "0");
        ARG(a->blob ? (const char *)a->blob : "", a->blob_len);
        break;
    case S_LIST:
        ARGS(a->worker);
        break;
    default:
        break;
    }
#undef ARG
#undef ARGS
    return rconn_eval(rs->main, (size_t)script, n, argv, len, on_op_reply, o);
}

static void redis_submit(struct store *s, struct store__op *op, const struct store__args *a) {
    struct rstore *rs = (struct rstore *)s;
    struct rop *o = (struct rop *)op;
    o->rs = rs;
    /* Connecting counts as down: ops wait for nobody (the handshake may
     * take op_timeout_ms). */
    if (!rs->main || !rconn_up(rs->main)) {
        rop_fail_fast(o);
        return;
    }
    if (a->id) o->id = xstrdup(a->id);
    int r;
    if (op->kind_ == STORE_OP_GET) {
        /* the only plain user command */
        char key[REDIS_KEY_MAX];
        key_session(rs, o->id, key);
        const char *argv[] = {"HMGET", key, "owner", "attached", "created", "last", "blob"};
        r = rconn_argv(rs->main, 7, argv, NULL, 0, on_op_reply, o);
    } else {
        static const enum script op_script[STORE_OP__N] = {
            [STORE_OP_CREATE] = S_CREATE, [STORE_OP_UPDATE] = S_UPDATE, [STORE_OP_CLAIM] = S_CLAIM,
            [STORE_OP_GET] = S__N,        [STORE_OP_DELETE] = S_DELETE, [STORE_OP_LIST] = S_LIST,
            [STORE_OP_COUNT] = S_COUNT,   [STORE_OP_REPUBLISH] = S_REPUBLISH,
        };
        enum script script = (unsigned)op->kind_ < STORE_OP__N ? op_script[op->kind_] : S__N;
        r = script == S__N ? ASR_EINVAL : rop_send_script(rs, o, script, a);
    }
    if (r != 0) {
        rop_fail_fast(o);
        return;
    }
    sync_inflight(rs);
}

/* ---- heartbeat -------------------------------------------------------------- */

static void on_hb_reply(void *arg, int status, const redisReply *reply) {
    struct rstore *rs = arg;
    sync_inflight(rs);
    if (status == 0 && reply->type == REDIS_REPLY_ERROR) log_reply_error(rs, "heartbeat", reply->str);
}

/* Refreshes this worker's heartbeat key and its place in the worker set.
 * The replies have deadlines like ops, so a hung Redis is noticed within
 * heartbeat_ttl/3 + op_timeout even when no session writes. */
static void on_hb_timer(uv_timer_t *t) {
    struct rstore *rs = t->data;
    if (!rs->main || !rconn_up(rs->main)) return;
    char alive[REDIS_KEY_MAX], workers[REDIS_KEY_MAX], ttl[24];
    key_alive(rs, alive);
    key_workers(rs, workers);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)rs->base.heartbeat_ttl_ms_);
    const char *set[] = {"SET", alive, rs->nonce, "PX", ttl};
    const char *sadd[] = {"SADD", workers, rs->base.worker_};
    (void)rconn_argv(rs->main, 5, set, NULL, 0, on_hb_reply, rs);    /* down: the next beat */
    (void)rconn_argv(rs->main, 3, sadd, NULL, 0, on_hb_reply, rs);
    sync_inflight(rs);
}

/* ---- connections -------------------------------------------------------------- */

/* The main connection's last handshake step: the register script (every
 * connect; ARGV[5] says whether it is this process's first). */
static void main_hs_begin(void *ctx, struct rconn *rc) {
    struct rstore *rs = ctx;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)rs->base.heartbeat_ttl_ms_);
    const char *argv[] = {rs->base.prefix_, rs->base.worker_, ttl, rs->nonce, rs->registered ? "0" : "1"};
    (void)rconn_hs_eval(rc, S_REGISTER, 5, argv, NULL);    /* not sent: the connect deadline */
}

static const char *main_hs_end(void *ctx, const redisReply *reply) {
    struct rstore *rs = ctx;
    if (reply->type != REDIS_REPLY_INTEGER)
        return reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected register reply";
    if (!rs->registered && reply->integer > 0) {
        struct log_line *l = log_begin(LOG_INFO, "store detached sessions of an earlier process");
        if (l) {
            log_str(l, "store", "redis");
            log_u64(l, "sessions", (uint64_t)reply->integer);
            log_end(l);
        }
    }
    rs->registered = 1;
    return NULL;
}

/* A connection lost while the store is closing is not reported (nor
 * counted): the close fails what is left. */
static void main_state(void *ctx, int up) {
    struct rstore *rs = ctx;
    if (!up && rs->base.closing_) return;
    if (up && rs->main_ever_up) rs->base.stats_.reconnects++;
    if (up) rs->main_ever_up = 1;
    store__set_available(&rs->base, up);
}

static void sub_state(void *ctx, int up) {
    struct rstore *rs = ctx;
    if (!up && rs->base.closing_) return;
    rs->base.stats_.pubsub_connected = up ? 1 : 0;
}

/* A release notice: another worker claimed this session from this one. */
static void sub_message(void *ctx, const char *id, size_t len) {
    struct rstore *rs = ctx;
    (void)len;
    if (!store__valid_name(id, STORE_ID_MAX)) return;
    rs->base.stats_.releases++;
    if (rs->base.on_released_) rs->base.on_released_(rs->base.ctx_, id);
}

static void on_conn_closed(void *arg) {
    struct rstore *rs = arg;
    store__release_hold(&rs->base);   /* may free the store: last */
}

/* ---- backend ------------------------------------------------------------------ */

static void build_scripts(struct rstore *rs) {
    size_t pl = strlen(LUA_PRELUDE);
    for (int i = 0; i < S__N; i++) {
        size_t bl = strlen(script_body[i]);
        rs->script[i] = xmalloc(pl + bl + 1);
        memcpy(rs->script[i], LUA_PRELUDE, pl);
        memcpy(rs->script[i] + pl, script_body[i], bl + 1);
    }
}

static void redis_open(struct store *s, const struct store_url *url) {
    struct rstore *rs = (struct rstore *)s;
    util_random_id(rs->nonce);
    build_scripts(rs);
    uint64_t every = s->heartbeat_ttl_ms_ / 3;
    if (every < 100) every = 100;
    uv_timer_init(s->loop_, &rs->hb_timer);
    rs->hb_timer.data = rs;
    uv_timer_start(&rs->hb_timer, on_hb_timer, every, every);
    uv_unref((uv_handle_t *)&rs->hb_timer);
    struct rconn_cfg mc = {
        .url = url, .op_timeout_ms = (unsigned)s->op_timeout_ms_, .name = "main",
        .scripts = (const char *const *)rs->script, .n_scripts = S__N,
        .keep_args_max = REDIS_KEEP_ARGS_MAX, .on_state = main_state,
        .hs_begin = main_hs_begin, .hs_end = main_hs_end, .ctx = rs,
    };
    char ch[REDIS_KEY_MAX];
    key_channel(rs, ch);
    struct rconn_cfg sc = {
        .url = url, .op_timeout_ms = (unsigned)s->op_timeout_ms_, .name = "pubsub",
        .subscribe = ch, .on_state = sub_state, .on_message = sub_message, .ctx = rs,
    };
    /* Cannot fail: the loop, cfg and url are given. */
    if (rconn_open(s->loop_, &mc, &rs->main) != 0) rs->main = NULL;
    if (rconn_open(s->loop_, &sc, &rs->sub) != 0) rs->sub = NULL;
}

static int redis_available(const struct store *s) {
    const struct rstore *rs = (const struct rstore *)s;
    return rs->main && rconn_up(rs->main);
}

/* No user op is pending; the heartbeat's commands complete inside
 * rconn_close (ignored). The store is freed once both connections said
 * they closed (holds) and the timer closed. */
static void redis_teardown(struct store *s) {
    struct rstore *rs = (struct rstore *)s;
    uv_timer_stop(&rs->hb_timer);
    store__close_handle(s, (uv_handle_t *)&rs->hb_timer);
    struct rconn *conns[2] = {rs->main, rs->sub};
    rs->main = rs->sub = NULL;
    for (int i = 0; i < 2; i++) {
        if (!conns[i]) continue;
        s->holds_++;
        rconn_close(conns[i], on_conn_closed, rs);
    }
    s->stats_.connected = 0;
    s->stats_.pubsub_connected = 0;
    s->stats_.inflight = 0;
}

static void redis_destroy(struct store *s) {
    struct rstore *rs = (struct rstore *)s;
    for (int i = 0; i < S__N; i++) free(rs->script[i]);
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
