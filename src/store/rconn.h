/* One Redis connection: a hiredis async context on a libuv loop that
 * reconnects on its own, with a deadline on every command and Lua scripts
 * sent by SHA. The session store (store/redis.c: a main connection and a
 * pub/sub one, docs/internals/store.md) and the job queue (store/jobs.c,
 * docs/internals/jobs.md) use it; the connection logic lives here only.
 *
 * Host names are resolved with uv_getaddrinfo; the loop attachment is our
 * own (hiredis 0.14's libuv adapter ignores poll errors); the handshake is
 * AUTH and SELECT, SCRIPT LOAD of the caller's scripts on every connect,
 * then the caller's own last step (hs_begin/hs_end) or a PING; backoff from
 * 100 ms to 5 s between attempts; a command that gets no reply within its
 * deadline drops the connection (replies come in order: the later ones
 * will not come either). In pub/sub mode (cfg.subscribe) the handshake is
 * AUTH and SUBSCRIBE, the subscribe confirmation makes it READY, messages
 * go to on_message, and commands are refused.
 *
 *   DOWN --(backoff timer)--> CONNECTING --(handshake replied)--> READY
 *     ^----------(error, EOF, connect or op timeout)---------------'
 *
 * Log lines (store "redis", conn cfg.name): "store connected" and "store
 * connection restored" (with down_ms) at info, "store connection lost" and
 * "store unavailable" (the first failure of an outage) at warn, later
 * failed attempts at debug.
 *
 * Contract of rconn_argv / rconn_eval: 0, and cb runs exactly once, later,
 * from the loop (never inside the call), with a reply, with ASR_E_TIMEOUT
 * (no reply within the deadline) or with STORE_UNAVAILABLE (the connection
 * lost, rconn_close); or a negative asr_err at once (down, between
 * attempts, past 100,000 commands in flight: STORE_UNAVAILABLE; closing or
 * pub/sub mode: ASR_EINVAL) and cb never runs. A command made while
 * connecting waits for the handshake, within its deadline. Commands leave
 * in the order they were made. Replies are borrowed for the callback. */
#ifndef ASRD_STORE_RCONN_H
#define ASRD_STORE_RCONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hiredis/hiredis.h>

#include "store/store.h"

struct rconn;

/* status: 0 with a reply (which may be an error reply, REDIS_REPLY_ERROR),
 * or ASR_E_TIMEOUT / STORE_UNAVAILABLE with reply NULL. */
typedef void (*rconn_reply_fn)(void *arg, int status, const redisReply *reply);
/* The connection became ready (1) or went down (0): after the log line. */
typedef void (*rconn_state_fn)(void *ctx, int up);
typedef void (*rconn_closed_fn)(void *arg);
/* Pub/sub mode: one message on the channel (payload borrowed for the call,
 * NUL-terminated, len bytes). */
typedef void (*rconn_message_fn)(void *ctx, const char *payload, size_t len);
/* The caller's last handshake step, on every connect, after SCRIPT LOAD:
 * sends one command with rconn_hs_eval(). If it sends nothing, the connect
 * deadline drops the attempt. */
typedef void (*rconn_hs_begin_fn)(void *ctx, struct rconn *rc);
/* Judges the reply to that command (borrowed; may be an error reply): NULL
 * and the connection becomes READY, or why it is dropped (a string that
 * lives through the call, for the log). */
typedef const char *(*rconn_hs_end_fn)(void *ctx, const redisReply *reply);

struct rconn_cfg {
    const struct store_url *url;     /* copied */
    unsigned    op_timeout_ms;       /* deadline of a command (and of a connect); 0 = 1000 */
    const char *name;                /* for log lines ("main", "jobs"); static storage */
    const char *const *scripts;      /* n_scripts Lua bodies, borrowed: must outlive the
                                      * connection; loaded on every connect */
    size_t      n_scripts;
    size_t      keep_args_max;       /* script calls up to this many argument bytes are kept
                                      * for a re-send after NOSCRIPT; larger ones fail
                                      * then; 0 = 64 KiB */
    const char *subscribe;           /* pub/sub mode: the channel (copied); NULL: commands */
    rconn_state_fn   on_state;       /* optional */
    rconn_message_fn on_message;     /* pub/sub mode */
    rconn_hs_begin_fn hs_begin;      /* optional, with hs_end; commands mode only */
    rconn_hs_end_fn   hs_end;
    void       *ctx;                 /* passed to on_state, on_message, hs_begin, hs_end */
};

/* Opens (connects in the background). 0 and *out, or ASR_EINVAL. */
int rconn_open(uv_loop_t *loop, const struct rconn_cfg *cfg, struct rconn **out);
/* Closes: commands not answered yet complete with STORE_UNAVAILABLE (their
 * callbacks may run inside this call), handles close, then on_closed(arg)
 * runs from the loop and the connection is freed. */
void rconn_close(struct rconn *rc, rconn_closed_fn on_closed, void *arg);
/* 1 while READY (pub/sub mode: subscribed). */
int rconn_up(const struct rconn *rc);
/* 1 when a command can be sent now: READY, or CONNECTING with a socket
 * (hiredis sends it after the handshake); 0 in pub/sub mode. */
int rconn_usable(const struct rconn *rc);
/* Commands sent and not answered yet. */
size_t rconn_inflight(const struct rconn *rc);

/* Sends argv[0..argc) (borrowed for the call; lens may be NULL for C
 * strings). The deadline is the op timeout plus extra_ms (a blocking
 * command's own wait). */
int rconn_argv(struct rconn *rc, int argc, const char *const *argv, const size_t *lens, uint64_t extra_ms,
               rconn_reply_fn cb, void *arg);
/* EVALSHA of script number `script` with no keys and argv as its ARGV; a
 * NOSCRIPT answer (script cache flushed) loads the scripts again and sends
 * the call once more (when its arguments were kept, see keep_args_max),
 * with the same deadline. */
int rconn_eval(struct rconn *rc, size_t script, int argc, const char *const *argv, const size_t *lens,
               rconn_reply_fn cb, void *arg);
/* From hs_begin only: EVALSHA of script number `script` (loaded just
 * before) as the last handshake step; its reply goes to hs_end. Arguments
 * are borrowed for the call. 0, or a negative asr_err (not connecting:
 * ASR_EINVAL). */
int rconn_hs_eval(struct rconn *rc, size_t script, int argc, const char *const *argv, const size_t *lens);

#endif
