/* One Redis connection for the job queue (store/jobs.c): a hiredis async
 * context on a libuv loop that reconnects on its own, with a deadline on
 * every command and Lua scripts sent by SHA (docs/internals/jobs.md).
 *
 * It follows the session store's connection (store/redis.c) and shares its
 * URL type: host names resolved with uv_getaddrinfo, our own loop
 * attachment (hiredis 0.14's libuv adapter ignores poll errors), AUTH and
 * SELECT in the handshake, SCRIPT LOAD of the caller's scripts on every
 * connect, backoff from 100 ms to 5 s between attempts, and an op that gets
 * no reply within its deadline drops the connection (replies come in
 * order: the later ones will not come either).
 *
 *   DOWN --(backoff timer)--> CONNECTING --(handshake replied)--> READY
 *     ^----------(error, EOF, connect or op timeout)---------------'
 *
 * Contract of rconn_argv / rconn_eval: 0, and cb runs exactly once, later,
 * from the loop (never inside the call), with a reply or with
 * STORE_UNAVAILABLE (no reply in time, the connection lost, rconn_close);
 * or a negative asr_err at once (down, between attempts:
 * STORE_UNAVAILABLE; closing: ASR_EINVAL) and cb never runs. A command
 * made while connecting waits for the handshake, within its deadline. Replies are borrowed for the callback. */
#ifndef ASRD_STORE_RCONN_H
#define ASRD_STORE_RCONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "store/store.h"

/* status: 0 with a reply (which may be an error reply, REDIS_REPLY_ERROR),
 * or STORE_UNAVAILABLE with reply NULL. */
typedef void (*rconn_reply_fn)(void *arg, int status, const redisReply *reply);
/* The connection became ready (1) or went down (0). */
typedef void (*rconn_state_fn)(void *ctx, int up);
typedef void (*rconn_closed_fn)(void *arg);

struct rconn_cfg {
    const struct store_url *url;     /* copied */
    unsigned    op_timeout_ms;       /* deadline of a command (and of a connect); 0 = 1000 */
    const char *name;                /* for log lines ("jobs", "jobs-read"); static storage */
    const char *const *scripts;      /* n_scripts Lua bodies, static storage; loaded on every connect */
    size_t      n_scripts;
    rconn_state_fn on_state;         /* optional */
    void       *ctx;                 /* passed to on_state */
};

struct rconn;

/* Opens (connects in the background). 0 and *out, or ASR_EINVAL. */
int rconn_open(uv_loop_t *loop, const struct rconn_cfg *cfg, struct rconn **out);
/* Closes: commands not answered yet complete with STORE_UNAVAILABLE (their
 * callbacks may run inside this call), handles close, then on_closed(arg)
 * runs from the loop and the connection is freed. */
void rconn_close(struct rconn *rc, rconn_closed_fn on_closed, void *arg);
/* 1 while READY. */
int rconn_up(const struct rconn *rc);
/* 1 when a command can be sent now: READY, or CONNECTING with a socket
 * (hiredis sends it after the handshake). */
int rconn_usable(const struct rconn *rc);
/* Commands sent and not answered yet. */
size_t rconn_inflight(const struct rconn *rc);

/* Sends argv[0..argc) (borrowed for the call; lens may be NULL for C
 * strings). The deadline is the op timeout plus extra_ms (a blocking
 * command's own wait). */
int rconn_argv(struct rconn *rc, int argc, const char *const *argv, const size_t *lens, uint64_t extra_ms,
               rconn_reply_fn cb, void *arg);
/* EVALSHA of script number `script` with no keys and argv as its ARGV; a
 * NOSCRIPT answer (script cache flushed) sends it once more as EVAL, with
 * the same deadline. */
int rconn_eval(struct rconn *rc, size_t script, int argc, const char *const *argv, const size_t *lens,
               rconn_reply_fn cb, void *arg);

#endif
