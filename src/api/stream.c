/* docs/API.md "Streaming": the upgrade, client messages -> session calls,
 * session answers -> JSON messages, idle timeout, resume and drain.
 *
 * A `struct stream` pairs a session with its WebSocket (or none while the
 * client is away and the session is resumable) and owns the idle timer,
 * which lives as long as the session because a detached session must expire
 * without a connection. */
#include "api/api.h"

#include <http_parser.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"
#include "core/session.h"
#include "net/ws.h"
#include "store/store.h"
#include "api/stream_msg.h"
#include "core/audio.h"

struct stream {
    struct asr_session *sess;     /* owned */
    struct ws_conn *ws;           /* borrowed; NULL while detached */
    uv_timer_t idle;              /* idle / resumable expiry */
    uint64_t last_activity;       /* loop time, ms */
    int      end_reason;          /* enum metric_end, -1 while not ending */
    int      close_code;          /* to send when the session has drained */
    const char *close_reason;
    int      ended;               /* gone: not resumable */
    int      destroyed;
    int      upgrading;           /* waiting for the store before the 101 */
    int      uncounted;           /* refused before it started: no end logged or counted */
    int      stored;              /* this worker owns its record in the store */
    int      unsynced;            /* created while the store was down: register later */
    uint64_t stored_ms;           /* loop time of the last snapshot write */
    struct stream *hnext;         /* registry chain */
};

/* An upgrade waiting for the session store. */
struct pending_upgrade {
    struct http_conn *hc;         /* borrowed; invalid once aborted */
    struct stream *st;            /* new session being registered, or NULL */
    unsigned rate;                /* requested sample_rate, 0 = none */
    int      aborted;             /* the connection died meanwhile */
    char     accept[29];
    char     request_id[64];
};

struct sync_ctx { char id[STORE_ID_MAX]; };

static struct api_env *env_;     /* borrowed: set by api_stream_init */
static struct store *store_;      /* owned; opened by api_stream_init */
static uv_timer_t sync_timer_;    /* 1 s: snapshots of changed sessions (shared store) */

static int shared(void) { return store_ && strcmp(store_backend(store_), "redis") == 0; }

static void finish_upgrade(struct pending_upgrade *pu, struct stream *st, int resumed);
static void on_created(void *arg, int status);
static void on_claimed(void *arg, int status, const struct store_record *rec, const char *prev_owner);
static void pending_abort(void *ctx);
static void stream_sync(struct stream *st);
static void on_sync_tick(uv_timer_t *t);

/* ---- registry: id -> stream ------------------------------------------ */

static struct stream **table;
static size_t table_size, table_count;

static size_t hash_id(const char *id) {
    size_t h = 1469598103934665603ull;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h;
}

static void reg_add(struct stream *st) {
    if (table_count + 1 > table_size) {
        size_t ns = table_size ? table_size * 2 : 1024;
        struct stream **nt = xcalloc(ns, sizeof *nt);
        for (size_t i = 0; i < table_size; i++)
            for (struct stream *e = table[i], *n; e; e = n) {
                n = e->hnext;
                size_t b = hash_id(sess_id(e->sess)) & (ns - 1);
                e->hnext = nt[b];
                nt[b] = e;
            }
        free(table);
        table = nt;
        table_size = ns;
    }
    size_t b = hash_id(sess_id(st->sess)) & (table_size - 1);
    st->hnext = table[b];
    table[b] = st;
    table_count++;
}

static struct stream *reg_find(const char *id) {
    if (!table_size) return NULL;
    for (struct stream *e = table[hash_id(id) & (table_size - 1)]; e; e = e->hnext)
        if (strcmp(sess_id(e->sess), id) == 0) return e;
    return NULL;
}

static void reg_remove(struct stream *st) {
    struct stream **pp = &table[hash_id(sess_id(st->sess)) & (table_size - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == st) {
            *pp = st->hnext;
            table_count--;
            return;
        }
}

size_t api_stream_count(void) { return table_count; }

/* ---- output ---------------------------------------------------------------- */

static struct buf out_;   /* scratch for one message; process lifetime */

static const struct config *cfg(void) { return env_->cfg; }

static void send_msg(struct stream *st, int droppable) {
    if (st->ws) ws_send_text(st->ws, out_.data, out_.len, droppable);
}

static void on_speech_started(void *ctx, uint64_t seq, uint64_t offset_ms) {
    struct stream *st = ctx;
    buf_reset(&out_);
    buf_printf(&out_, "{\"type\":\"speech_started\",\"sequence\":%llu,\"offset_ms\":%llu,\"timestamp\":%llu}",
               (unsigned long long)seq, (unsigned long long)offset_ms, (unsigned long long)util_wall_ms());
    send_msg(st, 0);
}

static void on_partial(void *ctx, uint64_t seq, const char *text, size_t len, int is_speech,
                       const struct sess_latency *lat) {
    struct stream *st = ctx;
    buf_reset(&out_);
    /* one of these per chunk: built without printf (which was ~7% of the
     * user-space instructions per chunk) */
    buf_puts(&out_, "{\"type\":\"partial\",\"sequence\":");
    buf_put_u64(&out_, seq);
    buf_puts(&out_, ",\"text\":");
    buf_json_str(&out_, text, len);
    buf_puts(&out_, is_speech ? ",\"is_speech\":true,\"timestamp\":" : ",\"is_speech\":false,\"timestamp\":");
    buf_put_u64(&out_, util_wall_ms());
    buf_puts(&out_, ",\"latency_ms\":{\"queue\":");
    buf_put_fixed3(&out_, lat->queue_ms);
    buf_puts(&out_, ",\"inference\":");
    buf_put_fixed3(&out_, lat->inference_ms);
    buf_puts(&out_, ",\"total\":");
    buf_put_fixed3(&out_, lat->total_ms);
    buf_puts(&out_, "}}");
    send_msg(st, 1);
}

static void on_final(void *ctx, uint64_t seq, const char *text, size_t len, uint64_t start_ms, uint64_t end_ms) {
    struct stream *st = ctx;
    buf_reset(&out_);
    buf_printf(&out_, "{\"type\":\"final\",\"sequence\":%llu,\"text\":", (unsigned long long)seq);
    buf_json_str(&out_, text, len);
    buf_printf(&out_, ",\"start_ms\":%llu,\"end_ms\":%llu,\"timestamp\":%llu}", (unsigned long long)start_ms,
               (unsigned long long)end_ms, (unsigned long long)util_wall_ms());
    send_msg(st, 0);
    /* a final is written through to a shared store: a resume elsewhere must
     * neither repeat nor lose it */
    if (shared() && st->sess) stream_sync(st);
}

static void on_error(void *ctx, int err, int has_seq, uint64_t seq, const char *msg) {
    struct stream *st = ctx;
    buf_reset(&out_);
    buf_puts(&out_, "{\"type\":\"error\",\"code\":");
    buf_json_str(&out_, asr_err_code(err), strlen(asr_err_code(err)));
    buf_puts(&out_, ",\"message\":");
    buf_json_str(&out_, msg, strlen(msg));
    if (has_seq) buf_printf(&out_, ",\"sequence\":%llu", (unsigned long long)seq);
    buf_puts(&out_, "}");
    send_msg(st, 0);
}

static void on_done(void *ctx) {
    struct stream *st = ctx;
    if (!st->ws) return;
    ws_resume(st->ws); /* read the peer's close reply (wslay drops data frames now) */
    ws_close(st->ws, st->close_code, st->close_reason, 1);
}

static void on_pending_low(void *ctx) {
    struct stream *st = ctx;
    if (st->ws && st->end_reason != END_POLICY) ws_resume(st->ws);
}

static const struct sess_sink sink = {
    .on_speech_started = on_speech_started, .on_partial = on_partial, .on_final = on_final,
    .on_error = on_error, .on_done = on_done, .on_pending_low = on_pending_low,
};

/* ---- lifecycle ----------------------------------------------------------------- */

static const char *const end_names[END__N] = {"stop", "idle", "expired", "slow_client",
                                              "policy", "too_big", "shutdown", "error", "moved"};

static void on_idle_closed(uv_handle_t *h) { free(h->data); }

/* Frees the stream: logs the session's counters, counts its end, and settles
 * its store record: deleted when the session is over; kept (detached, with a
 * last snapshot) when a shutdown leaves it resumable on another worker. */
static void stream_destroy(struct stream *st, int reason) {
    if (st->destroyed) return;
    if (st->stored && store_) {
        if (reason == END_SHUTDOWN && !st->ended && shared()) stream_sync(st);
        else if (reason != END_MOVED) store_delete(store_, sess_id(st->sess), NULL, NULL);
    }
    st->destroyed = 1;
    if (!st->uncounted) {
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
    reg_remove(st);
    sess_transition(st->sess, SESS_CLOSED);
    sess_destroy(st->sess);
    st->sess = NULL;
    uv_close((uv_handle_t *)&st->idle, on_idle_closed);
}

/* A session refused before it started (store said no): not counted. */
static void stream_destroy_uncounted(struct stream *st) {
    st->uncounted = 1;
    stream_destroy(st, END_ERROR);
}

/* Ends the session the graceful way: pending chunks are answered, one final
 * follows, then the close (code) once everything is out. */
static void stream_end(struct stream *st, int reason, int code, const char *why) {
    if (st->end_reason >= 0) return;
    st->end_reason = reason;
    st->close_code = code;
    st->close_reason = why;
    st->ended = code != 1001;
    sess_stop(st->sess);
}

static void stream_touch(struct stream *st) { st->last_activity = uv_now(env_->loop); }

static void on_idle_timer(uv_timer_t *t) {
    struct stream *st = t->data;
    uint64_t now = uv_now(t->loop), limit = (uint64_t)cfg()->idle_timeout_s * 1000;
    if (now - st->last_activity < limit) {
        uv_timer_start(&st->idle, on_idle_timer, limit - (now - st->last_activity), 0);
        return;
    }
    if (!st->ws) {
        stream_destroy(st, END_EXPIRED);
        return;
    }
    if (st->end_reason < 0) stream_end(st, END_IDLE, 1000, "idle timeout");
}

static void ws_on_closed(void *ctx, int code_sent, int code_received) {
    struct stream *st = ctx;
    st->ws = NULL;
    metrics.sessions_attached--;
    if (st->destroyed) return;
    sess_attach(st->sess, NULL, NULL);
    int reason;
    if (code_sent == 1008) reason = st->end_reason >= 0 ? st->end_reason : END_SLOW_CLIENT;
    else if (code_sent == 1009) reason = END_TOO_BIG;
    else if (st->end_reason >= 0 && st->ended) reason = st->end_reason;
    else if (code_received && code_sent != 1001) reason = END_STOP; /* the client closed the handshake */
    else if (code_sent && code_sent != 1001 && code_sent != 1000) reason = END_ERROR;
    else {
        /* Dropped without a close handshake, or drained with 1001:
         * resumable for idle_timeout_s (docs/API.md "Resuming a session"). */
        if (env_->draining) {
            stream_destroy(st, END_SHUTDOWN);
            return;
        }
        if (st->end_reason >= 0 && !st->ended) st->end_reason = -1;
        stream_touch(st);
        uv_timer_start(&st->idle, on_idle_timer, (uint64_t)cfg()->idle_timeout_s * 1000, 0);
        stream_sync(st); /* detached: resumable by any worker */
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

static struct buf pcm_;   /* scratch for decoded base64 audio */

static void after_chunk(struct stream *st) {
    if (!st->ws) return;
    if (sess_abusive(st->sess) && st->end_reason < 0) {
        /* Answer what is pending (the RATE_LIMITED errors among it), then
         * close 1008; read nothing more meanwhile. */
        st->end_reason = END_POLICY;
        st->ended = 1;
        st->close_code = 1008;
        st->close_reason = "rate limit exceeded repeatedly";
        ws_pause(st->ws);
        sess_drain(st->sess);
        return;
    }
    if (!cfg()->shed_load && sess_pending_full(st->sess)) ws_pause(st->ws);
}

static void ws_on_binary(void *ctx, const uint8_t *p, size_t n) {
    struct stream *st = ctx;
    stream_touch(st);
    sess_chunk(st->sess, p, n, 0, 0, 0, util_now_ns());
    after_chunk(st);
}

static void ws_on_text(void *ctx, const uint8_t *p, size_t n) {
    struct stream *st = ctx;
    uint64_t now_ns = util_now_ns();
    stream_touch(st);
    struct stream_msg m;
    if (stream_msg_decode(p, n, &pcm_, &m) != 0) {
        sess_invalid_message(st->sess, m.why);
        return;
    }
    switch (m.type) {
    case MSG_AUDIO_CHUNK:
        sess_chunk(st->sess, m.audio, m.audio_len, m.audio_err, m.has_seq, m.seq, now_ns);
        after_chunk(st);
        break;
    case MSG_STOP:
        stream_end(st, END_STOP, 1000, "");
        break;
    case MSG_FINALIZE:
        if (sess_state(st->sess) == SESS_ACTIVE) sess_finalize(st->sess);
        else sess_invalid_message(st->sess, "the session is closing");
        break;
    case MSG_KEEPALIVE:
        break; /* activity recorded above */
    }
}

static void ws_on_ping(void *ctx) { stream_touch(ctx); }

static const struct ws_handler ws_h = {
    .on_text = ws_on_text, .on_binary = ws_on_binary, .on_ping = ws_on_ping, .on_closed = ws_on_closed,
};

/* ---- upgrade ----------------------------------------------------------------------- */

static void session_message(struct stream *st, int resumed) {
    const struct config *c = cfg();
    unsigned rate = sess_sample_rate(st->sess);
    buf_reset(&out_);
    buf_printf(&out_, "{\"type\":\"session\",\"session_id\":\"%s\",\"worker_id\":", sess_id(st->sess));
    buf_json_str(&out_, c->worker_id, strlen(c->worker_id));
    buf_printf(&out_,
               ",\"sample_rate\":%u,\"resumed\":%s,\"last_sequence\":%llu,\"limits\":{\"max_chunk_bytes\":%zu,"
               "\"max_message_bytes\":%zu,\"max_audio_rate_bytes_per_sec\":%zu,\"idle_timeout_s\":%d,"
               "\"endpointing_ms\":%d}}",
               rate, resumed ? "true" : "false", (unsigned long long)sess_last_sequence(st->sess),
               c->max_chunk_bytes, config_max_message_bytes(c), config_audio_rate(c, rate), c->idle_timeout_s,
               c->endpointing_ms);
    send_msg(st, 0);
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
 * WebSocket, the `session` message. pu is freed. */
static void finish_upgrade(struct pending_upgrade *pu, struct stream *st, int resumed) {
    const struct config *c = cfg();
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
        .max_queue_bytes = c->max_send_queue_bytes,
        .max_queue_msgs = (size_t)c->max_send_queue_size,
        .slow_client_threshold = c->slow_client_threshold,
    };
    if (resumed) metrics.sessions_resumed++;
    else metrics.sessions_total++;
    if (sess_state(st->sess) == SESS_CREATED) sess_transition(st->sess, SESS_ACTIVE);
    stream_touch(st);
    uv_timer_start(&st->idle, on_idle_timer, (uint64_t)c->idle_timeout_s * 1000, 0);
    /* The session message goes before any answer, and bytes that came with
     * the upgrade are fed only once the session is attached. */
    st->ws = NULL;
    struct ws_conn *ws = ws_start(cn, &lim, &ws_h, st, NULL, 0);
    if (!ws) {
        /* The conn is closing without a WebSocket: the session stays
         * resumable (or expires), like a dropped connection. */
        buf_cleanup(&rest);
        if (st->stored && shared()) store_update(store_, sess_id(st->sess), 0, NULL, 0, NULL, NULL);
        return;
    }
    metrics.sessions_attached++;
    st->ws = ws;
    session_message(st, resumed);
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

static void sess_cfg_for(struct sess_cfg *scfg, unsigned rate) {
    const struct config *c = cfg();
    *scfg = (struct sess_cfg){
        .sample_rate = rate,
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

/* A stream around a new session (sess NULL: fails), registered. */
static struct stream *stream_new(struct asr_session *sess) {
    if (!sess) return NULL;
    struct stream *st = calloc(1, sizeof *st);
    if (!st) {
        sess_destroy(sess);
        return NULL;
    }
    st->sess = sess;
    st->end_reason = -1;
    uv_timer_init(env_->loop, &st->idle);
    st->idle.data = st;
    reg_add(st);
    metrics.sessions_active++;
    return st;
}

void api_stream_upgrade(void *ctx, struct http_conn *hc, struct http_req *req) {
    const struct config *c = cfg();
    if (env_->draining) {
        refuse(hc, 503, "DRAINING", "server is draining; retry on another instance", "Retry-After: 1\r\n");
        return;
    }
    if (api_check_key(c, req) != 0) {
        http_respond_err(hc, ASR_E_UNAUTHORIZED, NULL);
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
        if (util_parse_u64(v, (size_t)r, 1000000, &x) != 0 || !audio_rate_supported((unsigned)x)) {
            refuse(hc, 400, "BAD_REQUEST", "sample_rate must be one of 8000, 16000, 32000, 48000", NULL);
            return;
        }
        rate = (int)x;
    } else if (r == -2) {
        refuse(hc, 400, "BAD_REQUEST", "sample_rate must be one of 8000, 16000, 32000, 48000", NULL);
        return;
    }
    r = http_query(req, "encoding", v, sizeof v);
    if (r == -2 || (r >= 0 && strcmp(v, "pcm_s16le") != 0)) {
        refuse(hc, 400, "BAD_REQUEST", "encoding must be pcm_s16le", NULL);
        return;
    }
    char sid[80];
    r = http_query(req, "session_id", sid, sizeof sid);
    struct pending_upgrade *pu = xcalloc(1, sizeof *pu);
    pu->hc = hc;
    pu->rate = (unsigned)rate;
    ws_accept_key(key, kl, pu->accept);
    memcpy(pu->request_id, req->request_id, sizeof pu->request_id);
    if (r >= 0 || r == -2) {
        struct stream *st = r >= 0 ? reg_find(sid) : NULL;
        if (st && (st->ended || st->destroyed)) st = NULL;
        if (st) { /* held here */
            if (st->ws || st->upgrading) {
                free(pu);
                refuse(hc, 409, "SESSION_BUSY", "that session is attached to a live connection", NULL);
                return;
            }
            if (rate && (unsigned)rate != sess_sample_rate(st->sess)) {
                free(pu);
                refuse(hc, 400, "BAD_REQUEST", "sample_rate differs from the session's", NULL);
                return;
            }
            if (st->stored && shared()) store_update(store_, sess_id(st->sess), 1, NULL, 0, NULL, NULL);
            finish_upgrade(pu, st, 1);
            return;
        }
        if (r < 0 || !shared() || strlen(sid) >= STORE_ID_MAX) {
            free(pu);
            refuse(hc, 404, "SESSION_NOT_FOUND", "unknown or expired session_id", NULL);
            return;
        }
        /* Maybe another worker's: claim it from the shared store. */
        http_set_abort(hc, pending_abort, pu);
        if (store_claim(store_, sid, on_claimed, pu) != 0) {
            http_set_abort(hc, NULL, NULL);
            free(pu);
            refuse(hc, 503, "STORE_UNAVAILABLE", "session store unavailable", "Retry-After: 1\r\n");
        }
        return;
    }
    if (api_stream_count() >= (size_t)c->max_sessions_per_worker) {
        free(pu);
        metrics.sessions_refused++;
        refuse(hc, 503, "SESSION_LIMIT", "session limit reached", "Retry-After: 1\r\n");
        return;
    }
    struct sess_cfg scfg;
    sess_cfg_for(&scfg, rate ? (unsigned)rate : 16000);
    struct stream *st = stream_new(sess_create(&scfg));
    if (!st) {
        free(pu);
        refuse(hc, 500, "INTERNAL", "could not create a session", NULL);
        return;
    }
    pu->st = st;
    st->upgrading = 1;
    http_set_abort(hc, pending_abort, pu);
    struct buf snap;
    buf_init(&snap, 0);
    if (shared()) sess_snapshot(st->sess, &snap);
    r = store_create(store_, sess_id(st->sess), snap.data, snap.len, on_created, pu);
    buf_cleanup(&snap);
    if (r != 0) on_created(pu, STORE_UNAVAILABLE);
}

/* ---- the session store ---------------------------------------------------------- */

static void on_created(void *arg, int status) {
    struct pending_upgrade *pu = arg;
    struct stream *st = pu->st;
    st->upgrading = 0;
    if (pu->aborted) {
        /* the client left while we waited: nothing was promised */
        st->stored = status == STORE_OK;
        stream_destroy_uncounted(st);
        free(pu);
        return;
    }
    http_set_abort(pu->hc, NULL, NULL);
    if (status == STORE_LIMIT) {
        metrics.sessions_refused++;
        stream_destroy_uncounted(st);
        refuse(pu->hc, 503, "SESSION_LIMIT", "global session limit reached", "Retry-After: 1\r\n");
        free(pu);
        return;
    }
    if (status != STORE_OK) {
        if (cfg()->store_required || status != STORE_UNAVAILABLE) {
            stream_destroy_uncounted(st);
            if (status == STORE_UNAVAILABLE) {
                metrics.sessions_refused++;
                refuse(pu->hc, 503, "STORE_UNAVAILABLE", "session store unavailable", "Retry-After: 1\r\n");
            } else {
                refuse(pu->hc, 500, "INTERNAL", "could not register the session", NULL);
            }
            free(pu);
            return;
        }
        st->unsynced = 1; /* served locally; registered when the store is back */
    } else {
        st->stored = 1;
    }
    finish_upgrade(pu, st, 0);
}

static void on_claimed(void *arg, int status, const struct store_record *rec, const char *prev_owner) {
    struct pending_upgrade *pu = arg;
    if (pu->aborted) {
        /* claimed for nobody: leave it detached and resumable */
        if (status == STORE_OK) store_update(store_, rec->id, 0, NULL, 0, NULL, NULL);
        free(pu);
        return;
    }
    http_set_abort(pu->hc, NULL, NULL);
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
        store_update(store_, rec->id, 0, NULL, 0, NULL, NULL);
        refuse(pu->hc, 400, "BAD_REQUEST", "sample_rate differs from the session's", NULL);
        free(pu);
        return;
    }
    struct sess_cfg scfg;
    sess_cfg_for(&scfg, srate ? srate : 16000);
    struct stream *st = reg_find(rec->id) ? NULL : stream_new(sess_restore(&scfg, rec->id, rec->blob, rec->blob_len));
    if (!st) {
        store_update(store_, rec->id, 0, NULL, 0, NULL, NULL);
        refuse(pu->hc, 500, "INTERNAL", "could not restore the session", NULL);
        free(pu);
        return;
    }
    st->stored = 1;
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

static void on_sync_done(void *arg, int status);

/* Writes the session's snapshot (shared store only). */
static void stream_sync(struct stream *st) {
    if (!shared() || !st->stored || st->destroyed || !st->sess) return;
    static struct buf snap;
    if (!snap.limit) buf_init(&snap, STORE_BLOB_MAX);
    buf_reset(&snap);
    if (sess_snapshot(st->sess, &snap) != 0) return;
    st->stored_ms = uv_now(env_->loop);
    struct sync_ctx *sc = xmalloc(sizeof *sc);
    snprintf(sc->id, sizeof sc->id, "%s", sess_id(st->sess));
    metrics.store_writes++;
    if (store_update(store_, sc->id, st->ws != NULL, snap.data, snap.len, on_sync_done, sc) != 0) free(sc);
}

static void on_sync_done(void *arg, int status) {
    struct sync_ctx *sc = arg;
    if (status == STORE_NOT_OWNER || status == STORE_NOT_FOUND) {
        struct stream *st = reg_find(sc->id);
        /* claimed by another worker (or expired there): our copy is stale */
        if (st && !st->ws && !st->destroyed) {
            st->stored = 0;
            stream_destroy(st, END_MOVED);
        }
    }
    free(sc);
}

static void on_released(void *ctx, const char *id) {
    struct stream *st = reg_find(id);
    if (st && !st->ws && !st->destroyed) {
        st->stored = 0;
        stream_destroy(st, END_MOVED);
    }
}

static void on_store_state(void *ctx, int available) {
    struct log_line *l = log_begin(available ? LOG_INFO : LOG_WARN,
                                   available ? "session store available" : "session store unavailable");
    if (l) { log_str(l, "backend", store_backend(store_)); log_end(l); }
    if (!available) return;
    /* reconcile: register the sessions served while the store was down */
    for (size_t i = 0; i < table_size; i++)
        for (struct stream *e = table[i]; e; e = e->hnext) {
            if (!e->unsynced || e->destroyed) continue;
            e->unsynced = 0;
            e->stored = 1;
            struct buf snap;
            buf_init(&snap, 0);
            sess_snapshot(e->sess, &snap);
            store_create(store_, sess_id(e->sess), snap.data, snap.len, NULL, NULL);
            buf_cleanup(&snap);
        }
}

int api_stream_init(struct api_env *env) {
    env_ = env;
    uv_loop_t *loop = env->loop;
    const struct config *c = cfg();
    struct store_cfg sc = {
        .redis_url = c->redis_url,
        .worker_id = c->worker_id,
        .session_ttl_s = (unsigned)c->idle_timeout_s + 60,
        .max_global_sessions = (uint64_t)c->max_global_sessions,
        .on_released = on_released,
        .on_state = on_store_state,
    };
    int r = store_open(loop, &sc, &store_);
    if (r != 0) return r;
    uv_timer_init(loop, &sync_timer_);
    uv_timer_start(&sync_timer_, on_sync_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&sync_timer_);
    return 0;
}

static void on_store_closed(void *arg) { *(int *)arg = 1; }

void api_stream_close(void) {
    if (!store_) return;
    uv_loop_t *loop = env_->loop;
    uv_timer_stop(&sync_timer_);
    if (!uv_is_closing((uv_handle_t *)&sync_timer_)) uv_close((uv_handle_t *)&sync_timer_, NULL);
    int closed = 0;
    store_close(store_, on_store_closed, &closed); /* writes in flight finish first (bounded) */
    while (!closed && uv_run(loop, UV_RUN_ONCE)) {}
    store_ = NULL;
}

static void on_sync_tick(uv_timer_t *t) {
    const struct store_stats *ss = store_stats(store_);
    metrics.store_up = store_available(store_) ? 1 : 0;
    metrics.store_errors = ss->errors;
    metrics.store_timeouts = ss->timeouts;
    metrics.store_reconnects = ss->reconnects;
    uint64_t ops = 0;
    for (int i = 0; i < STORE_OP__N; i++) ops += ss->ops[i];
    metrics.store_ops = ops;
    if (!shared()) return;
    /* changed sessions, and (so that the record's TTL never runs out under a
     * session that only sends keepalives) any not written for a minute */
    uint64_t now = uv_now(t->loop);
    for (size_t i = 0; i < table_size; i++)
        for (struct stream *e = table[i]; e; e = e->hnext)
            if (!e->destroyed && e->sess && (sess_take_dirty(e->sess) || now - e->stored_ms >= 60000))
                stream_sync(e);
}

/* ---- drain and housekeeping ---------------------------------------------------------- */

void api_stream_shutdown(int retiring) {
    if (!env_->draining) {
        env_->draining = 1;
        env_->retiring = retiring;
    }
    for (size_t i = 0; i < table_size; i++)
        for (struct stream *e = table[i], *n; e; e = n) {
            n = e->hnext;
            if (e->ws) stream_end(e, END_SHUTDOWN, 1001, "server shutting down");
            else stream_destroy(e, END_SHUTDOWN);
        }
}


int api_check_key(const struct config *c, const struct http_req *req) {
    const char *keys = c->api_keys;
    if (!keys[0]) return 0;
    char given[256] = "";
    size_t gl = 0;
    const char *h = http_header(req, "authorization", &gl);
    if (h && gl > 7 && strncasecmp(h, "Bearer ", 7) == 0 && gl - 7 < sizeof given) {
        memcpy(given, h + 7, gl - 7);
        given[gl - 7] = '\0';
    } else if ((h = http_header(req, "x-api-key", &gl)) && gl < sizeof given) {
        memcpy(given, h, gl);
        given[gl] = '\0';
    } else if (http_query(req, "api_key", given, sizeof given) < 0) {
        return ASR_E_UNAUTHORIZED;
    }
    /* Compare hashes so the time taken does not depend on where keys differ. */
    unsigned char hg[crypto_generichash_BYTES], hk[crypto_generichash_BYTES];
    crypto_generichash(hg, sizeof hg, (const unsigned char *)given, strlen(given), NULL, 0);
    int ok = 0;
    for (const char *p = keys; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        crypto_generichash(hk, sizeof hk, (const unsigned char *)p, l, NULL, 0);
        if (l && sodium_memcmp(hg, hk, sizeof hg) == 0) ok = 1;
        if (!e) break;
        p = e + 1;
    }
    return ok ? 0 : ASR_E_UNAUTHORIZED;
}
