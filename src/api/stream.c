/* docs/API.md "Streaming": the upgrade, client messages -> session calls,
 * session answers -> server messages, idle timeout, resume and drain.
 * docs/internals/session-lifecycle.md tells the life of a stream (stream.h)
 * state by state.
 *
 * The file reads top to bottom as a session lives: the state machine; the
 * sink that turns session answers into messages (encoded by wire.c); the
 * end of a stream (destroy, end, idle timer, the connection going away);
 * client messages; the upgrade, whose store half (a new record, or a claim
 * of another worker's) completes in on_registered / on_claimed; the drain. */
#include "api/stream.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "api/auth.h"
#include "api/reference.h"
#include "api/wire.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/audio.h"
#include "core/session.h"
#include "net/http.h"
#include "net/ws.h"
#include "store/store.h"

/* An upgrade waiting for the session store. */
struct pending_upgrade {
    struct api *api;              /* borrowed */
    struct http_conn *hc;         /* borrowed; invalid once aborted */
    struct stream *st;            /* new session being registered, or NULL (a claim) */
    unsigned rate;                /* requested sample_rate, 0 = none */
    int      aborted;             /* the connection died meanwhile */
    char     accept[29];
    char     request_id[64];
};

static void on_idle_timer(uv_timer_t *t);

static const struct config *cfg_of(const struct stream *st) { return st->api->env->cfg; }
static uint64_t idle_ms(const struct config *c) { return (uint64_t)c->idle_timeout_s * 1000; }
static uint64_t resume_ms(const struct config *c) { return (uint64_t)c->resume_timeout_s * 1000; }

/* ---- the detached list ------------------------------------------------------------ */

/* Kept by stream_transition: a stream enters the tail when it becomes
 * DETACHED and leaves when it stops being so (resumed, or gone). */
static void detached_add(struct api *api, struct stream *st) {
    st->dnext = NULL;
    st->dprev = api->detached_tail;
    if (api->detached_tail) api->detached_tail->dnext = st;
    else api->detached_head = st;
    api->detached_tail = st;
    api->n_detached++;
    metrics.sessions_detached++;
}

static void detached_remove(struct api *api, struct stream *st) {
    if (st->dprev) st->dprev->dnext = st->dnext;
    else api->detached_head = st->dnext;
    if (st->dnext) st->dnext->dprev = st->dprev;
    else api->detached_tail = st->dprev;
    st->dprev = st->dnext = NULL;
    api->n_detached--;
    metrics.sessions_detached--;
}

/* ---- state machine ------------------------------------------------------------ */

static const char *const state_names[STREAM__N] = {"upgrading", "attached", "ending",
                                                   "draining",  "detached", "gone"};

/* The one place where a stream changes state; stream.h lists the legal
 * moves. An illegal one is our bug: logged, refused, state kept. */
static int stream_transition(struct stream *st, enum stream_state to) {
    static const unsigned char legal[STREAM__N][STREAM__N] = {
        /* to:          UPGRADING ATTACHED ENDING DRAINING DETACHED GONE */
        /* UPGRADING */ {0, 1, 0, 0, 1, 1},
        /* ATTACHED  */ {0, 0, 1, 1, 1, 1},
        /* ENDING    */ {0, 0, 0, 0, 0, 1},
        /* DRAINING  */ {0, 0, 0, 0, 1, 1},
        /* DETACHED  */ {0, 1, 0, 0, 1, 1},
        /* GONE      */ {0, 0, 0, 0, 0, 0},
    };
    if (!legal[st->state][to]) {
        struct log_line *l = log_begin(LOG_ERROR, "illegal stream state change");
        if (l) {
            log_str(l, "session_id", st->sess ? sess_id(st->sess) : "");
            log_str(l, "from", state_names[st->state]);
            log_str(l, "to", state_names[to]);
            log_end(l);
        }
        return ASR_EINVAL;
    }
    if (st->state == STREAM_DETACHED && to != STREAM_DETACHED) detached_remove(st->api, st);
    else if (st->state != STREAM_DETACHED && to == STREAM_DETACHED) detached_add(st->api, st);
    st->state = to;
    return 0;
}

/* ---- output: session answers -> server messages ---------------------------------- */

/* Sends the message encoded in the api's out buffer (copied into the
 * connection's queue); nothing while no connection holds the stream. */
static void send_out(struct stream *st, int droppable) {
    if (st->ws) ws_send_text(st->ws, st->api->out.data, st->api->out.len, droppable);
}

static void on_speech_started(void *ctx, uint64_t seq, uint64_t offset_ms) {
    struct stream *st = ctx;
    wire_encode_speech_started(&st->api->out, seq, offset_ms, util_wall_ms());
    send_out(st, 0);
}

static void on_partial(void *ctx, const struct sess_partial *p) {
    struct stream *st = ctx;
    wire_encode_partial(&st->api->out, p, util_wall_ms());
    send_out(st, 1);
}

static void on_final(void *ctx, const struct sess_final *f) {
    struct stream *st = ctx;
    wire_encode_final(&st->api->out, f, util_wall_ms());
    send_out(st, 0);
    /* a final is written through to a shared store: a resume elsewhere must
     * neither repeat nor lose it */
    sync_snapshot(&st->api->sync, st);
}

static void on_error(void *ctx, int err, int has_seq, uint64_t seq, const char *msg) {
    struct stream *st = ctx;
    wire_encode_error(&st->api->out, err, has_seq, seq, msg);
    send_out(st, 0);
}

/* The verification of a reading session, after its last final (docs/API.md
 * "Reading feedback"). */
static void on_verification(void *ctx, const struct sess_verification *v) {
    struct stream *st = ctx;
    wire_encode_verification(&st->api->out, v, util_wall_ms());
    send_out(st, 0);
}

/* The session has answered everything after its stop or drain (ENDING,
 * DRAINING): the close goes out behind the answers. */
static void on_done(void *ctx) {
    struct stream *st = ctx;
    if (!st->ws) return;
    ws_resume(st->ws); /* read the peer's close reply (wslay drops data frames now) */
    ws_close(st->ws, st->close_code, st->close_reason, 1);
}

/* The session's pending chunks fell below their bound: read again, unless
 * reading stopped for good (the rate-abuse close). */
static void on_pending_low(void *ctx) {
    struct stream *st = ctx;
    int stopped_for_good = st->state == STREAM_ENDING && st->end_reason == END_POLICY;
    if (st->ws && !stopped_for_good) ws_resume(st->ws);
}

static const struct sess_sink sink = {
    .on_speech_started = on_speech_started, .on_partial = on_partial, .on_final = on_final,
    .on_error = on_error, .on_done = on_done, .on_pending_low = on_pending_low,
    .on_verification = on_verification,
};

/* ---- the end of a stream ----------------------------------------------------------- */

static const char *const end_names[END__N] = {"stop", "idle", "expired", "slow_client",
                                              "policy", "too_big", "shutdown", "error", "moved", "evicted"};

static void on_idle_closed(uv_handle_t *h) { free(h->data); }

/* -> GONE (stream.h). counted: 0 for a session refused before it started
 * (the store said no, or the client left during the upgrade): no `session
 * end` line, no sessions_ended count. */
static int destroy(struct stream *st, enum metric_end reason, int counted) {
    enum stream_state was = st->state;
    if (stream_transition(st, STREAM_GONE) != 0) return ASR_EINVAL;
    /* A drain leaves a session that was not ending for good resumable on
     * another worker: its record stays, with a last snapshot. */
    sync_end(&st->api->sync, st, reason == END_SHUTDOWN && was != STREAM_ENDING);
    if (counted) {
        const struct sess_stats *ss = sess_stats(st->sess);
        struct log_line *l = log_begin(LOG_INFO, "session end");
        if (l) {
            log_str(l, "session_id", sess_id(st->sess));
            log_str(l, "reason", end_names[reason]);
            log_u64(l, "audio_ms", ss->audio_ms);
            log_u64(l, "bytes", ss->bytes);
            log_u64(l, "chunks", ss->chunks);
            log_u64(l, "partials", ss->partials);
            log_u64(l, "finals", ss->finals);
            log_u64(l, "errors", ss->errors);
            log_u64(l, "duration_ms", util_wall_ms() - ss->created_ms);
            log_end(l);
        }
        metrics.sessions_ended[reason]++;
    }
    metrics.sessions_active--;
    registry_remove(&st->api->streams, &st->reg);
    sess_transition(st->sess, SESS_CLOSED);
    sess_destroy(st->sess);
    st->sess = NULL;
    uv_close((uv_handle_t *)&st->idle, on_idle_closed);
    return 0;
}

int stream_destroy(struct stream *st, enum metric_end reason) { return destroy(st, reason, 1); }

/* A session refused before it started: not counted. */
static void stream_refuse(struct stream *st) { destroy(st, END_ERROR, 0); }

/* ATTACHED -> ENDING or DRAINING, with why and how the close will go. */
static int begin_end(struct stream *st, enum stream_state to, enum metric_end reason, int code, const char *why) {
    if (stream_transition(st, to) != 0) return ASR_EINVAL;
    st->end_reason = reason;
    st->close_code = code;
    st->close_reason = why;
    return 0;
}

/* Ends the session the graceful way: pending chunks are answered, one final
 * follows, then the close (code) once everything is out. Code 1001 (a
 * drain) leaves the session resumable (DRAINING); any other ends it for
 * good (ENDING). Only an attached stream starts to end: when it is ending
 * already, the first reason stands. */
static void stream_end(struct stream *st, enum metric_end reason, int code, const char *why) {
    if (st->state != STREAM_ATTACHED) return;
    if (begin_end(st, code == 1001 ? STREAM_DRAINING : STREAM_ENDING, reason, code, why) != 0) return;
    sess_stop(st->sess);
}

static void stream_touch(struct stream *st) { st->last_activity = uv_now(st->api->env->loop); }

/* Ends a detached session before its resume window is over (reason
 * `evicted`): the bounds of the detached sessions below, or a new live
 * session that needs its slot. Its record is deleted: a resume is 404. */
static void evict(struct stream *st, const char *why) {
    struct log_line *l = log_begin(LOG_INFO, "session evicted");
    if (l) {
        log_str(l, "session_id", sess_id(st->sess));
        log_str(l, "why", why);
        log_str(l, "peer_ip", st->peer_ip);
        log_end(l);
    }
    stream_destroy(st, END_EVICTED);
}

/* st just became DETACHED (it is the newest). Dropped connections must not
 * pile up resumable sessions for the whole resume window: each client
 * address may hold ASR_MAX_DETACHED_PER_IP of them and the worker
 * ASR_MAX_DETACHED_SESSIONS; past either, the oldest (of that address, or
 * of all) is evicted (docs/API.md "Resuming a session"). The address walk is
 * over the detached list only, which the worker bound keeps short. */
static void detached_bound(struct stream *st) {
    struct api *api = st->api;
    const struct config *c = cfg_of(st);
    /* 0 follows the connection limit per address: behind a balancer both
     * are 0, every client having the balancer's address */
    int per_ip = c->max_detached_per_ip > 0 ? c->max_detached_per_ip : c->max_connections_per_ip;
    if (per_ip > 0) {
        size_t same = 0;
        struct stream *oldest = NULL;
        for (struct stream *x = api->detached_head; x; x = x->dnext)
            if (strcmp(x->peer_ip, st->peer_ip) == 0 && same++ == 0) oldest = x;
        if (same > (size_t)per_ip && oldest && oldest != st) evict(oldest, "address bound");
    }
    while (api->n_detached > (size_t)c->max_detached_sessions && api->detached_head &&
           api->detached_head != st)
        evict(api->detached_head, "worker bound");
}

/* Detaches st (ATTACHED, DRAINING, or UPGRADING/DETACHED whose WebSocket
 * could not start): resumable for ASR_RESUME_TIMEOUT_S, then the bounds. */
static int stream_detach(struct stream *st) {
    if (stream_transition(st, STREAM_DETACHED) != 0) return ASR_EINVAL;
    stream_touch(st);
    uv_timer_start(&st->idle, on_idle_timer, resume_ms(cfg_of(st)), 0);
    detached_bound(st);
    return 0;
}

/* The idle timer is not restarted on activity (stream_touch only stores
 * the time); when it fires it re-arms itself for the remainder. */
static void on_idle_timer(uv_timer_t *t) {
    struct stream *st = t->data;
    uint64_t now = uv_now(t->loop);
    uint64_t limit = st->state == STREAM_DETACHED ? resume_ms(cfg_of(st)) : idle_ms(cfg_of(st));
    if (now - st->last_activity < limit) {
        uv_timer_start(&st->idle, on_idle_timer, limit - (now - st->last_activity), 0);
        return;
    }
    if (st->state == STREAM_DETACHED) {
        stream_destroy(st, END_EXPIRED);
        return;
    }
    stream_end(st, END_IDLE, 1000, "idle timeout");
}

/* The connection is gone (ws.c calls this once). Which close it was decides
 * whether the session ends, and why, or stays resumable
 * (docs/internals/session-lifecycle.md has the table). */
static void ws_on_closed(void *ctx, int code_sent, int code_received) {
    struct stream *st = ctx;
    st->ws = NULL;
    metrics.sessions_attached--;
    if (st->state == STREAM_GONE) return;
    sess_attach(st->sess, NULL, NULL);
    int ending = st->state == STREAM_ENDING || st->state == STREAM_DRAINING;
    enum metric_end reason;
    if (code_sent == 1008) reason = ending ? st->end_reason : END_SLOW_CLIENT;
    else if (code_sent == 1009) reason = END_TOO_BIG;
    else if (st->state == STREAM_ENDING) reason = st->end_reason;
    else if (code_received && code_sent != 1001) reason = END_STOP; /* the client closed the handshake */
    else if (code_sent && code_sent != 1001 && code_sent != 1000) reason = END_ERROR;
    else {
        /* Dropped without a close handshake (or for a missing pong), or
         * drained with 1001: resumable for resume_timeout_s (docs/API.md
         * "Resuming a session"). */
        if (st->api->env->draining) {
            stream_destroy(st, END_SHUTDOWN);
            return;
        }
        if (stream_detach(st) != 0) return;
        sync_snapshot(&st->api->sync, st); /* detached: resumable by any worker */
        struct log_line *l = log_begin(LOG_INFO, "session detached");
        if (l) {
            log_str(l, "session_id", sess_id(st->sess));
            log_u64(l, "last_sequence", sess_last_sequence(st->sess));
            log_end(l);
        }
        return;
    }
    stream_destroy(st, reason);
}

/* ---- client messages ----------------------------------------------------------- */

/* After each chunk: the rate-abuse close, or backpressure (pause reading
 * while the session's pending chunks are at their bound, unless shedding
 * load; docs/internals/backpressure.md). */
static void after_chunk(struct stream *st) {
    if (!st->ws) return;
    if (sess_abusive(st->sess) && st->state == STREAM_ATTACHED) {
        /* Answer what is pending (the RATE_LIMITED errors among it), then
         * close 1008; read nothing more meanwhile. */
        if (begin_end(st, STREAM_ENDING, END_POLICY, 1008, "rate limit exceeded repeatedly") != 0) return;
        ws_pause(st->ws);
        sess_drain(st->sess);
        return;
    }
    if (!cfg_of(st)->shed_load && sess_pending_full(st->sess)) ws_pause(st->ws);
}

static void ws_on_binary(void *ctx, const uint8_t *p, size_t n) {
    struct stream *st = ctx;
    stream_touch(st);
    sess_chunk(st->sess, p, n, 0, 0, 0, util_now_ns());
    after_chunk(st);
}

/* A config message: the expected text of reading feedback, inline or from
 * the reference library, before any audio (docs/API.md "Reading
 * feedback"). Answered with a `config` message, or INVALID_MESSAGE. */
static void stream_config(struct stream *st, const struct wire_client_msg *m) {
    struct buf t;
    buf_init(&t, 0);
    const char *code, *why;
    int status = reference_expected_text(cfg_of(st), m->is_reference ? NULL : m->text, m->text_len,
                                         m->is_reference ? m->text : NULL, m->text_len, &t, &code, &why);
    if (status != 0) {
        sess_invalid_message(st->sess, why);
    } else if (sess_set_expected(st->sess, t.data ? t.data : "", t.len, &why) != 0) {
        sess_invalid_message(st->sess, why);
    } else {
        wire_encode_config(&st->api->out, sess_expected_words(st->sess));
        send_out(st, 0);
    }
    buf_cleanup(&t);
}

static void ws_on_text(void *ctx, const uint8_t *p, size_t n) {
    struct stream *st = ctx;
    uint64_t now_ns = util_now_ns();
    stream_touch(st);
    struct wire_client_msg m;
    if (wire_decode_client_msg(p, n, &st->api->pcm, &m) != 0) {
        sess_invalid_message(st->sess, m.why);
        return;
    }
    switch (m.type) {
    case WIRE_AUDIO_CHUNK:
        sess_chunk(st->sess, m.audio, m.audio_len, m.audio_err, m.has_seq, m.seq, now_ns);
        after_chunk(st);
        break;
    case WIRE_STOP:
        /* the client's stop: with an expected text, a verification follows
         * the last final (sess_stop_verify) */
        if (st->state == STREAM_ATTACHED && begin_end(st, STREAM_ENDING, END_STOP, 1000, "") == 0)
            sess_stop_verify(st->sess);
        break;
    case WIRE_CONFIG:
        stream_config(st, &m);
        break;
    case WIRE_FINALIZE:
        if (sess_state(st->sess) == SESS_ACTIVE) sess_finalize(st->sess);
        else sess_invalid_message(st->sess, "the session is closing");
        break;
    case WIRE_KEEPALIVE:
        break; /* activity recorded above */
    }
}

static void ws_on_ping(void *ctx) { stream_touch(ctx); }

static const struct ws_handler ws_h = {
    .on_text = ws_on_text, .on_binary = ws_on_binary, .on_ping = ws_on_ping, .on_closed = ws_on_closed,
};

/* ---- upgrade ----------------------------------------------------------------------- */

static void send_session_message(struct stream *st, int resumed) {
    const struct config *c = cfg_of(st);
    unsigned rate = sess_sample_rate(st->sess);
    struct wire_session s = {
        .session_id = sess_id(st->sess),
        .worker_id = c->worker_id,
        .sample_rate = rate,
        .resumed = resumed,
        .last_sequence = sess_last_sequence(st->sess),
        .max_chunk_bytes = c->max_chunk_bytes,
        .max_message_bytes = config_max_message_bytes(c),
        .max_audio_rate = config_audio_rate(c, rate),
        .idle_timeout_s = c->idle_timeout_s,
        .resume_timeout_s = c->resume_timeout_s,
        .endpointing_ms = c->endpointing_ms,
        .expected_words = sess_expected_words(st->sess),
    };
    wire_encode_session(&st->api->out, &s);
    send_out(st, 0);
}

static int header_has_token(const char *v, const char *tok) {
    if (!v) return 0;
    size_t tl = strlen(tok);
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, tok, tl) == 0) return 1;
        p = e;
    }
    return 0;
}

static void refuse(struct http_conn *hc, int status, const char *code, const char *msg, const char *extra) {
    http_respond_error(hc, status, code, msg, extra);
}

/* Second half of an upgrade, once the session is known: the 101, the
 * WebSocket, the `session` message. st is UPGRADING (new, or just restored
 * from a claimed record) or DETACHED (a resume of a session held here). pu
 * is freed. */
static void finish_upgrade(struct pending_upgrade *pu, struct stream *st, int resumed) {
    struct api *api = st->api;
    const struct config *c = api->env->cfg;
    struct http_conn *hc = pu->hc;
    char hdrs[160];
    snprintf(hdrs, sizeof hdrs, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", pu->accept);
    char request_id[64];
    memcpy(request_id, pu->request_id, sizeof request_id);
    free(pu);
    struct conn *cn = http_conn_of(hc);
    struct buf rest;
    http_upgrade(hc, hdrs, &rest); /* hc and req are gone after this */
    struct ws_limits lim = {
        .max_message_bytes = config_max_message_bytes(c),
        .msg_budget = api->env->message_mem,
        .max_queue_bytes = c->max_send_queue_bytes,
        .max_queue_msgs = (size_t)c->max_send_queue_size,
        .slow_client_threshold = c->slow_client_threshold,
        .ping_interval_ms = (uint64_t)c->ping_interval_s * 1000,
        .ping_timeout_ms = (uint64_t)c->ping_timeout_s * 1000,
    };
    if (resumed) metrics.sessions_resumed++;
    else metrics.sessions_total++;
    if (sess_state(st->sess) == SESS_CREATED) sess_transition(st->sess, SESS_ACTIVE);
    stream_touch(st);
    uv_timer_start(&st->idle, on_idle_timer, idle_ms(c), 0);
    /* The session message goes before any answer, and bytes that came with
     * the upgrade are fed only once the session is attached. */
    struct ws_conn *ws = ws_start(cn, &lim, &ws_h, st, NULL, 0);
    if (!ws) {
        /* The conn is closing without a WebSocket: the session stays
         * resumable (or expires), like a dropped connection. */
        buf_cleanup(&rest);
        sync_set_attached(&api->sync, st, 0);
        stream_detach(st);
        return;
    }
    metrics.sessions_attached++;
    st->ws = ws;
    /* the address, without the port, for the per-address bound of detached sessions */
    snprintf(st->peer_ip, sizeof st->peer_ip, "%s", cn->peer);
    char *colon = strrchr(st->peer_ip, ':');
    if (colon) *colon = '\0';
    stream_transition(st, STREAM_ATTACHED);
    send_session_message(st, resumed);
    sess_attach(st->sess, &sink, st);
    struct log_line *l = log_begin(LOG_INFO, resumed ? "session resumed" : "session start");
    if (l) {
        log_str(l, "session_id", sess_id(st->sess));
        log_str(l, "request_id", request_id);
        log_u64(l, "sample_rate", sess_sample_rate(st->sess));
        log_str(l, "peer", cn->peer);
        log_end(l);
    }
    if (rest.len) {
        cn->h->on_read(cn, rest.data, rest.len);
    }
    buf_cleanup(&rest);
}

static void sess_cfg_for(const struct api_env *env, struct sess_cfg *scfg, unsigned rate) {
    const struct config *c = env->cfg;
    *scfg = (struct sess_cfg){
        .sample_rate = rate,
        .engine_rate = sess_rate_for(rate, env->engine ? env->engine->sample_rate : 0),
        .pool = env->pool,
        .final_class = POOL_FINAL,
        .window_ms = env->window_ms ? env->window_ms : (unsigned)c->window_ms, /* the adaptive window */
        .window_overlap_ms = (unsigned)c->window_overlap_ms,
        .max_utterance_ms = (unsigned)c->max_utterance_ms,
        .verify_max_ms = (unsigned)c->verify_max_audio_ms,
        .max_chunk_bytes = c->max_chunk_bytes,
        .rate_bytes_per_sec = config_audio_rate(c, rate),
        .max_pending_chunks = c->max_pending_chunks,
        .max_pending_bytes = c->max_session_buffer_bytes,
        .shed_load = c->shed_load,
        .rate_abuse_threshold = c->rate_abuse_threshold,
        .vad = {.sample_rate = rate, .frame_ms = (unsigned)c->vad_frame_ms,
                .mode = c->vad_mode, .endpointing_ms = (unsigned)c->endpointing_ms},
    };
}

/* A stream around a new session (sess NULL: fails), UPGRADING, registered. */
static struct stream *stream_create(struct api *api, struct asr_session *sess) {
    if (!sess) return NULL;
    struct stream *st = calloc(1, sizeof *st);
    if (!st) {
        sess_destroy(sess);
        return NULL;
    }
    st->api = api;
    st->sess = sess;
    st->state = STREAM_UPGRADING;
    st->sync = SYNC_NONE;
    uv_timer_init(api->env->loop, &st->idle);
    st->idle.data = st;
    registry_add(&api->streams, &st->reg, sess_id(sess), st);
    metrics.sessions_active++;
    return st;
}

static void on_registered(void *arg, int status);
static void on_claimed(void *arg, int status, const struct store_record *rec, const char *prev_owner);
static void pending_abort(void *ctx);

void api_stream_upgrade(void *ctx, struct http_conn *hc, struct http_req *req) {
    struct api *api = ctx;
    const struct config *c = api->env->cfg;
    if (api->env->draining) {
        refuse(hc, 503, "DRAINING", "server is draining; retry on another instance", "Retry-After: 1\r\n");
        return;
    }
    int ar = auth_check_origin(c, req);
    if (ar == 0) ar = auth_check(c, req, AUTH_SCOPE_STREAM, util_wall_ms() / 1000);
    if (ar != 0) {
        auth_respond_refusal(hc, ar);
        return;
    }
    size_t kl = 0;
    const char *up = http_header(req, "upgrade", NULL);
    const char *key = http_header(req, "sec-websocket-key", &kl);
    const char *ver = http_header(req, "sec-websocket-version", NULL);
    if (!up || strcasecmp(up, "websocket") != 0 || !header_has_token(http_header(req, "connection", NULL), "upgrade")) {
        refuse(hc, 426, "UPGRADE_REQUIRED", "this endpoint speaks WebSocket: send an upgrade request",
               "Upgrade: websocket\r\n");
        return;
    }
    unsigned char raw[20];
    size_t raw_len = 0;
    if (!key || kl != 24 ||
        sodium_base642bin(raw, sizeof raw, key, kl, NULL, &raw_len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        raw_len != 16) {
        refuse(hc, 400, "BAD_REQUEST", "missing or malformed Sec-WebSocket-Key", NULL);
        return;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        refuse(hc, 400, "BAD_REQUEST", "unsupported Sec-WebSocket-Version; use 13",
               "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    char v[80];
    int rate = 0;
    int r = http_query(req, "sample_rate", v, sizeof v);
    if (r >= 0) {
        uint64_t x = 0;
        if (util_parse_u64(v, (size_t)r, 1000000, &x) != 0 || x < AUDIO_STREAM_RATE_MIN || x > AUDIO_STREAM_RATE_MAX) {
            refuse(hc, 400, "BAD_REQUEST", "sample_rate must be an integer from 8000 to 96000", NULL);
            return;
        }
        rate = (int)x;
    } else if (r == -2) {
        refuse(hc, 400, "BAD_REQUEST", "sample_rate must be an integer from 8000 to 96000", NULL);
        return;
    }
    r = http_query(req, "encoding", v, sizeof v);
    if (r == -2 || (r >= 0 && strcmp(v, "pcm_s16le") != 0)) {
        refuse(hc, 400, "BAD_REQUEST", "encoding must be pcm_s16le", NULL);
        return;
    }
    /* reading feedback: an expected text for a new session */
    struct buf expected;
    buf_init(&expected, 0);
    const char *ecode, *ewhy;
    int estatus = reference_from_query(c, req, &expected, &ecode, &ewhy);
    if (estatus != 0) {
        refuse(hc, estatus, ecode, ewhy, NULL);
        return;
    }
    char sid[80];
    r = http_query(req, "session_id", sid, sizeof sid);
    if ((r >= 0 || r == -2) && expected.len) {
        buf_cleanup(&expected);
        refuse(hc, 400, "BAD_REQUEST", "expected_text and reference_id are for new sessions, not a resume", NULL);
        return;
    }
    struct pending_upgrade *pu = xcalloc(1, sizeof *pu);
    pu->api = api;
    pu->hc = hc;
    pu->rate = (unsigned)rate;
    ws_accept_key(key, kl, pu->accept);
    memcpy(pu->request_id, req->request_id, sizeof pu->request_id);
    if (r >= 0 || r == -2) {
        struct stream *st = r >= 0 ? registry_find(&api->streams, sid) : NULL;
        if (st && (st->state == STREAM_ENDING || st->state == STREAM_GONE)) st = NULL;
        if (st) { /* held here */
            if (st->state != STREAM_DETACHED) {
                free(pu);
                refuse(hc, 409, "SESSION_BUSY", "that session is attached to a live connection", NULL);
                return;
            }
            if (rate && (unsigned)rate != sess_sample_rate(st->sess)) {
                free(pu);
                refuse(hc, 400, "BAD_REQUEST", "sample_rate differs from the session's", NULL);
                return;
            }
            sync_set_attached(&api->sync, st, 1);
            finish_upgrade(pu, st, 1);
            return;
        }
        if (r < 0 || !sync_shared(&api->sync) || strlen(sid) >= STORE_ID_MAX) {
            free(pu);
            refuse(hc, 404, "SESSION_NOT_FOUND", "unknown or expired session_id", NULL);
            return;
        }
        /* Maybe another worker's: claim it from the shared store. */
        http_set_abort(hc, pending_abort, pu);
        if (sync_claim(&api->sync, sid, on_claimed, pu) != 0) {
            http_set_abort(hc, NULL, NULL);
            free(pu);
            refuse(hc, 503, "STORE_UNAVAILABLE", "session store unavailable", "Retry-After: 1\r\n");
        }
        return;
    }
    if (api_stream_count(api) >= (size_t)c->max_sessions_per_worker && api->detached_head) {
        /* A live client before a resumable one: the oldest detached
         * session gives its slot (docs/API.md "Resuming a session"). */
        metrics.sessions_evicted_for_room++;
        evict(api->detached_head, "room for a live session");
    }
    if (api_stream_count(api) >= (size_t)c->max_sessions_per_worker) {
        free(pu);
        buf_cleanup(&expected);
        metrics.sessions_refused++;
        refuse(hc, 503, "SESSION_LIMIT", "session limit reached", "Retry-After: 1\r\n");
        return;
    }
    struct sess_cfg scfg;
    sess_cfg_for(api->env, &scfg, rate ? (unsigned)rate : 16000);
    scfg.expected = expected.len ? expected.data : NULL;
    scfg.expected_len = expected.len;
    struct stream *st = stream_create(api, sess_create(&scfg));
    buf_cleanup(&expected);
    if (!st) {
        free(pu);
        refuse(hc, 500, "INTERNAL", "could not create a session", NULL);
        return;
    }
    pu->st = st;
    http_set_abort(hc, pending_abort, pu);
    if (sync_register(&api->sync, st, on_registered, pu) != 0) on_registered(pu, STORE_UNAVAILABLE);
}

/* ---- the upgrade's store half ----------------------------------------------------- */

/* A new session's record: created (st is SYNC_STORED then), refused, or the
 * store is down. */
static void on_registered(void *arg, int status) {
    struct pending_upgrade *pu = arg;
    struct stream *st = pu->st;
    if (pu->aborted) {
        /* the client left while we waited: nothing was promised */
        stream_refuse(st);
        free(pu);
        return;
    }
    http_set_abort(pu->hc, NULL, NULL);
    if (pu->api->env->draining) {
        /* the drain began while we waited: it left this stream to us, and
         * a session attached now would get no 1001 (docs/API.md
         * "Connecting": DRAINING) */
        stream_refuse(st);
        refuse(pu->hc, 503, "DRAINING", "server is draining; retry on another instance", "Retry-After: 1\r\n");
        free(pu);
        return;
    }
    if (status == STORE_LIMIT) {
        metrics.sessions_refused++;
        stream_refuse(st);
        refuse(pu->hc, 503, "SESSION_LIMIT", "global session limit reached", "Retry-After: 1\r\n");
        free(pu);
        return;
    }
    if (status != STORE_OK) {
        if (cfg_of(st)->store_required || status != STORE_UNAVAILABLE) {
            stream_refuse(st);
            if (status == STORE_UNAVAILABLE) {
                metrics.sessions_refused++;
                refuse(pu->hc, 503, "STORE_UNAVAILABLE", "session store unavailable", "Retry-After: 1\r\n");
            } else {
                refuse(pu->hc, 500, "INTERNAL", "could not register the session", NULL);
            }
            free(pu);
            return;
        }
        sync_serve_unsynced(&pu->api->sync, st); /* served locally; registered when the store is back */
    }
    finish_upgrade(pu, st, 0);
}

/* A resume of a session this worker does not hold: the claimed record
 * becomes a stream here, or the claim is handed back. */
static void on_claimed(void *arg, int status, const struct store_record *rec, const char *prev_owner) {
    struct pending_upgrade *pu = arg;
    struct api *api = pu->api;
    if (pu->aborted) {
        /* claimed for nobody: leave it detached and resumable */
        if (status == STORE_OK) sync_unclaim(&api->sync, rec->id);
        free(pu);
        return;
    }
    http_set_abort(pu->hc, NULL, NULL);
    if (api->env->draining) { /* as in on_registered */
        if (status == STORE_OK) sync_unclaim(&api->sync, rec->id);
        refuse(pu->hc, 503, "DRAINING", "server is draining; retry on another instance", "Retry-After: 1\r\n");
        free(pu);
        return;
    }
    if (status == STORE_NOT_FOUND) {
        refuse(pu->hc, 404, "SESSION_NOT_FOUND", "unknown or expired session_id", NULL);
        free(pu);
        return;
    }
    if (status == STORE_BUSY) {
        refuse(pu->hc, 409, "SESSION_BUSY", "that session is attached to a live connection", NULL);
        free(pu);
        return;
    }
    if (status != STORE_OK) {
        refuse(pu->hc, 503, "STORE_UNAVAILABLE", "session store unavailable", "Retry-After: 1\r\n");
        free(pu);
        return;
    }
    unsigned srate = sess_snapshot_rate(rec->blob, rec->blob_len);
    if (pu->rate && srate && pu->rate != srate) {
        sync_unclaim(&api->sync, rec->id);
        refuse(pu->hc, 400, "BAD_REQUEST", "sample_rate differs from the session's", NULL);
        free(pu);
        return;
    }
    struct sess_cfg scfg;
    sess_cfg_for(api->env, &scfg, srate ? srate : 16000);
    struct stream *st = registry_find(&api->streams, rec->id)
                            ? NULL
                            : stream_create(api, sess_restore(&scfg, rec->id, rec->blob, rec->blob_len));
    if (!st) {
        sync_unclaim(&api->sync, rec->id);
        refuse(pu->hc, 500, "INTERNAL", "could not restore the session", NULL);
        free(pu);
        return;
    }
    sync_adopt(&api->sync, st);
    struct log_line *l = log_begin(LOG_INFO, "session claimed");
    if (l) {
        log_str(l, "session_id", rec->id);
        log_str(l, "from_worker", prev_owner ? prev_owner : "");
        log_u64(l, "last_sequence", sess_last_sequence(st->sess));
        log_end(l);
    }
    finish_upgrade(pu, st, 1);
}

/* The connection died while the store answered. */
static void pending_abort(void *ctx) {
    struct pending_upgrade *pu = ctx;
    pu->aborted = 1;
}

/* ---- drain -------------------------------------------------------------------------- */

size_t api_stream_count(const struct api *api) { return registry_count(&api->streams); }

/* Attached streams end with a final and 1001, detached ones go now. An
 * UPGRADING stream is left to its pending upgrade, which holds it and
 * answers 503 DRAINING (or drops it, the client being gone) when the store
 * replies. */
static void shutdown_one(void *ctx, void *owner) {
    struct stream *st = owner;
    if (st->state == STREAM_UPGRADING) return;
    if (st->state == STREAM_DETACHED) stream_destroy(st, END_SHUTDOWN);
    else stream_end(st, END_SHUTDOWN, 1001, "server shutting down"); /* ending already: unchanged */
}

void api_stream_shutdown(struct api *api, int retiring) {
    if (!api->env->draining) {
        api->env->draining = 1;
        api->env->retiring = retiring;
    }
    registry_each(&api->streams, shutdown_one, NULL);
}
