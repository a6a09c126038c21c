/* Table-driven settings: one row per ASR_* variable gives its type, default,
 * range and meaning. Loading, --help and the masked dump all walk the table,
 * so a new setting is one row plus one struct field. */
#include "base/config.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/util.h"

#define F(field) CONFIG_FIELD(struct config, field)
#define OPT_INT CONFIG_INT
#define OPT_LONG CONFIG_LONG
#define OPT_SIZE CONFIG_SIZE
#define OPT_DOUBLE CONFIG_DOUBLE
#define OPT_STR CONFIG_STR
#define OPT_CHOICE CONFIG_CHOICE

static const struct config_opt opts[] = {
    {"ASR_HOST", OPT_STR, F(host), "0.0.0.0", 0, 0, NULL, 0, "address to listen on"},
    {"ASR_PORT", OPT_INT, F(port), "8000", 1, 65535, NULL, 0, "TCP port to listen on"},
    {"ASR_BACKLOG", OPT_INT, F(backlog), "1024", 1, 65535, NULL, 0, "listen(2) backlog"},
    {"ASR_WORKER_ID", OPT_STR, F(worker_id), "w", 0, 0, NULL, 0,
     "worker id prefix: worker i is <prefix><i>, shown in session, health, logs and metrics"},
    {"ASR_API_KEYS", OPT_STR, F(api_keys), "", 0, 0, NULL, 1,
     "comma-separated API keys guarding /v1/transcribe*, /v1/audio/* and /v1/models; empty = no auth"},
    {"ASR_ALLOWED_ORIGINS", OPT_STR, F(allowed_origins), "", 0, 0, NULL, 0,
     "comma-separated origins (https://app.example.com) or *: a WebSocket upgrade whose Origin is not listed gets 403; "
     "requests without Origin pass; empty = off"},
    {"ASR_CORS_ORIGINS", OPT_STR, F(cors_origins), "", 0, 0, NULL, 0,
     "comma-separated origins (https://app.example.com) or *: pages there may call the HTTP routes (CORS); "
     "other origins get 403; also the WebSocket's list when ASR_ALLOWED_ORIGINS is empty; empty = off"},
    {"ASR_CORS_MAX_AGE_S", OPT_INT, F(cors_max_age_s), "600", 0, 86400, NULL, 0,
     "seconds browsers may keep a CORS preflight answer (Access-Control-Max-Age)"},
    {"ASR_TOKEN_SECRET", OPT_STR, F(token_secret), "", 0, 0, NULL, 1,
     "key that signs access tokens (POST /v1/auth/token), 16 bytes or more; instances sharing it accept each "
     "other's tokens; empty = a random key made at start (tokens hold on this instance, until it restarts)"},
    {"ASR_TOKEN_TTL_S", OPT_INT, F(token_ttl_s), "300", 10, 86400, NULL, 0,
     "lifetime of access tokens, seconds (the default, and the most a client may ask for)"},
    {"ASR_WEB_DIR", OPT_STR, F(web_dir), "", 0, 0, NULL, 0,
     "directory of the page served at / (index.html, app.js...); empty = the one installed with the binary "
     "(../share/asrd/web) or the source tree's web/ (../../web); off = no page"},
    {"ASR_WORKERS", OPT_INT, F(workers), "0", 0, 256, NULL, 0,
     "worker processes sharing the port (SO_REUSEPORT); 0 = one per CPU this process may run on (its affinity)"},
    {"ASR_REDIS_URL", OPT_STR, F(redis_url), "", 0, 0, NULL, 1,
     "session store: empty = a private redis-server the master starts (unix socket, no persistence); "
     "redis://[:password@]host:port[/db] or unix:///path = a shared Redis; "
     "memory = in-process store (one worker's view; ASR_WORKERS=1 only)"},
    {"ASR_JOB_REDIS_URL", OPT_STR, F(job_redis_url), "", 0, 0, NULL, 1,
     "the job queue's Redis: empty = the session store's (ASR_REDIS_URL; none with memory); "
     "redis://[:password@]host:port[/db] or unix:///path = a Redis of its own"},
    {"ASR_REDIS_SERVER", OPT_STR, F(redis_server), "/usr/bin/redis-server", 0, 0, NULL, 0,
     "redis-server binary of the private store (ASR_REDIS_URL empty)"},
    {"ASR_REDIS_MAXMEMORY_MB", OPT_INT, F(redis_maxmemory_mb), "256", 8, 1048576, NULL, 0,
     "memory bound of the private store, MiB (noeviction: past it, new sessions are served without the store)"},
    {"ASR_RUNTIME_DIR", OPT_STR, F(runtime_dir), "", 0, 0, NULL, 0,
     "where the private store's directory (mode 0700, removed at exit) is made; empty = $XDG_RUNTIME_DIR, else /tmp"},
    {"ASR_STORE_REQUIRED", OPT_INT, F(store_required), "0", 0, 1, NULL, 0,
     "1: refuse new sessions (503 STORE_UNAVAILABLE) while Redis is unreachable; 0: serve them locally"},
    {"ASR_MAX_GLOBAL_SESSIONS", OPT_INT, F(max_global_sessions), "0", 0, 100000000, NULL, 0,
     "streaming sessions across all workers sharing the store; 0 = unlimited"},
    {"ASR_ENGINE", OPT_STR, F(engine), "mock", 0, 0, NULL, 0,
     "speech engine (asrd --help lists the engines built in and their own settings)"},
    {"ASR_INFERENCE_THREADS", OPT_INT, F(inference_threads), "0", 0, 1024, NULL, 0,
     "windowed engines: inference threads (one engine instance each) of the whole instance, shared out "
     "to the workers; 0 = one per CPU this process may run on"},
    {"ASR_INFERENCE_QUEUE_MAX", OPT_INT, F(inference_queue_max), "64", 1, 100000, NULL, 0,
     "windowed engines: inference jobs waiting per worker before partial windows are skipped "
     "(server_busy) and REST answers 503"},
    {"ASR_WINDOW_MS", OPT_INT, F(window_ms), "1000", 0, 60000, NULL, 0,
     "windowed engines: new utterance audio that makes a partial window; 0 = finals only"},
    {"ASR_WINDOW_OVERLAP_MS", OPT_INT, F(window_overlap_ms), "0", 0, 60000, NULL, 0,
     "windowed engines: 0 = each window decodes the utterance from its start; else from the committed "
     "words' end minus this much"},
    {"ASR_MAX_UTTERANCE_MS", OPT_INT, F(max_utterance_ms), "30000", 0, 600000, NULL, 0,
     "an utterance this long ends with a final and the next speech begins another; 0 = no limit"},
    {"ASR_ADAPTIVE_WINDOW", OPT_INT, F(adaptive_window), "1", 0, 1, NULL, 0,
     "windowed engines: 1 = new sessions get the adaptive window (starts at ASR_WINDOW_MS, moves by 500 ms "
     "between ASR_WINDOW_MIN_MS and ASR_WINDOW_MAX_MS with the mean stream latency); 0 = always ASR_WINDOW_MS"},
    {"ASR_ADAPTIVE_LATENCY_HIGH_MS", OPT_INT, F(adaptive_latency_high_ms), "800", 1, 600000, NULL, 0,
     "adaptive window: a mean stream latency above this makes the window 500 ms longer"},
    {"ASR_ADAPTIVE_LATENCY_LOW_MS", OPT_INT, F(adaptive_latency_low_ms), "300", 0, 600000, NULL, 0,
     "adaptive window: a mean stream latency below this makes the window 500 ms shorter"},
    {"ASR_WINDOW_MIN_MS", OPT_INT, F(window_min_ms), "1000", 100, 60000, NULL, 0,
     "adaptive window: the shortest it gets"},
    {"ASR_WINDOW_MAX_MS", OPT_INT, F(window_max_ms), "5000", 100, 60000, NULL, 0,
     "adaptive window: the longest it gets"},
    {"ASR_EXPECTED_TEXT_MAX_BYTES", OPT_SIZE, F(expected_text_max_bytes), "4096", 16, 65536, NULL, 0,
     "reading feedback: largest expected text (query parameter, config message, reference file), bytes of UTF-8"},
    {"ASR_REFERENCE_DIR", OPT_STR, F(reference_dir), "", 0, 0, NULL, 0,
     "reading feedback: a directory of expected texts, one UTF-8 file <id>.txt per reference_id; empty = none"},
    {"ASR_VERIFY_MAX_AUDIO_MS", OPT_INT, F(verify_max_audio_ms), "120000", 0, 600000, NULL, 0,
     "reading feedback, windowed engines: session audio kept for the verification decode at stop (longer "
     "sessions get verification_error AUDIO_TOO_LONG); 0 = the verification aligns the session's finals"},
    {"ASR_VAD_FRAME_MS", OPT_CHOICE, F(vad_frame_ms), "30", 0, 0, "10|20|30", 0,
     "VAD frame length, ms"},
    {"ASR_VAD_MODE", OPT_INT, F(vad_mode), "2", 0, 3, NULL, 0,
     "WebRTC VAD aggressiveness, 0 (least) to 3 (most)"},
    {"ASR_ENDPOINTING_MS", OPT_INT, F(endpointing_ms), "300", 30, 10000, NULL, 0,
     "silence after speech that ends an utterance, ms of audio"},
    {"ASR_MAX_SESSIONS_PER_WORKER", OPT_INT, F(max_sessions_per_worker), "10000", 1, 1000000, NULL, 0,
     "streaming sessions per worker (live and resumable); beyond it upgrades get 503"},
    {"ASR_MAX_CONNECTIONS", OPT_INT, F(max_connections), "20000", 1, 1000000, NULL, 0,
     "open client connections per worker; beyond it new ones are refused"},
    {"ASR_MAX_CONNECTIONS_PER_IP", OPT_INT, F(max_connections_per_ip), "0", 0, 1000000, NULL, 0,
     "open connections per client IP address per worker (503 beyond); 0 = unlimited"},
    {"ASR_IDLE_TIMEOUT_S", OPT_INT, F(idle_timeout_s), "300", 1, 86400, NULL, 0,
     "seconds without audio, keepalive or ping before a session ends"},
    {"ASR_RESUME_TIMEOUT_S", OPT_INT, F(resume_timeout_s), "60", 1, 86400, NULL, 0,
     "seconds a dropped session stays resumable (detached) before it expires"},
    {"ASR_SNAPSHOT_INTERVAL_S", OPT_INT, F(snapshot_interval_s), "1", 1, 60, NULL, 0,
     "shared store: a changed session's progress is written this often (finals and drops at once); "
     "a session resumed after its worker died goes back at most this far"},
    {"ASR_MAX_DETACHED_SESSIONS", OPT_INT, F(max_detached_sessions), "1000", 1, 1000000, NULL, 0,
     "dropped, resumable sessions per worker; past it the oldest is evicted (ended); they also give way "
     "(oldest first) to a new live session at ASR_MAX_SESSIONS_PER_WORKER"},
    {"ASR_MAX_DETACHED_PER_IP", OPT_INT, F(max_detached_per_ip), "0", 0, 1000000, NULL, 0,
     "dropped, resumable sessions per client IP address per worker; past it that address's oldest is "
     "evicted; 0 = ASR_MAX_CONNECTIONS_PER_IP (no per-address bound when that is 0, as behind a balancer)"},
    {"ASR_HANDSHAKE_TIMEOUT_S", OPT_INT, F(handshake_timeout_s), "10", 1, 3600, NULL, 0,
     "seconds to receive a request's head (slowloris guard) and keep-alive idle time"},
    {"ASR_BODY_TIMEOUT_S", OPT_INT, F(body_timeout_s), "30", 1, 3600, NULL, 0,
     "a request body must bring 1 KiB (or its end) within this many seconds, again and again (408); slow uploads pass, trickles do not"},
    {"ASR_DRAIN_TIMEOUT_S", OPT_INT, F(drain_timeout_s), "30", 1, 86400, NULL, 0,
     "on SIGTERM/SIGINT, seconds to let sessions finish before exiting anyway"},
    {"ASR_MAX_CHUNK_BYTES", OPT_SIZE, F(max_chunk_bytes), "65536", 2, 16777216, NULL, 0,
     "largest audio chunk, bytes of PCM (CHUNK_TOO_LARGE beyond)"},
    {"ASR_MAX_MESSAGE_BYTES", OPT_SIZE, F(max_message_bytes), "0", 0, 67108864, NULL, 0,
     "largest WebSocket message (close 1009 beyond); 0 = room for a max chunk in base64 JSON"},
    {"ASR_MAX_AUDIO_RATE_BYTES_PER_SEC", OPT_SIZE, F(max_audio_rate), "0", 0, 1073741824, NULL, 0,
     "audio rate limit per session (token bucket of 2 s); 0 = twice real time at its rate"},
    {"ASR_MAX_HEADER_BYTES", OPT_SIZE, F(max_header_bytes), "16384", 1024, 1048576, NULL, 0,
     "request line + headers limit, bytes (431 beyond)"},
    {"ASR_MAX_UPLOAD_BYTES", OPT_SIZE, F(max_upload_bytes), "26214400", 1, 1073741824, NULL, 0,
     "POST body limit, bytes as sent (413 beyond)"},
    {"ASR_UPLOAD_MEMORY_BYTES", OPT_SIZE, F(upload_memory_bytes), "134217728", 0, 68719476736.0, NULL, 0,
     "per worker: bytes of request bodies being received and of uploads' decoding in flight (503 with "
     "Retry-After beyond); 0 = no bound, else at least ASR_MAX_UPLOAD_BYTES + 4 MiB"},
    {"ASR_MESSAGE_MEMORY_BYTES", OPT_SIZE, F(message_memory_bytes), "33554432", 0, 68719476736.0, NULL, 0,
     "per worker: bytes of WebSocket messages received in pieces and not complete yet (close 1013 beyond); "
     "0 = no bound, else at least twice the largest message"},
    {"ASR_MAX_PENDING_CHUNKS", OPT_INT, F(max_pending_chunks), "16", 1, 1024, NULL, 0,
     "chunks of one session waiting for the engine before its socket is paused (or SERVER_BUSY with ASR_SHED_LOAD=1)"},
    {"ASR_MAX_SESSION_BUFFER_BYTES", OPT_SIZE, F(max_session_buffer_bytes), "1048576", 65536, 1073741824, NULL, 0,
     "audio bytes of one session waiting in the VAD/engine before its socket is paused (or SERVER_BUSY)"},
    {"ASR_SHED_LOAD", OPT_INT, F(shed_load), "0", 0, 1, NULL, 0,
     "1: answer SERVER_BUSY for chunks past ASR_MAX_PENDING_CHUNKS instead of pausing the socket"},
    {"ASR_MAX_SEND_QUEUE_BYTES", OPT_SIZE, F(max_send_queue_bytes), "262144", 1024, 67108864, NULL, 0,
     "bytes of unsent messages per connection before partials are dropped"},
    {"ASR_MAX_SEND_QUEUE_SIZE", OPT_INT, F(max_send_queue_size), "256", 2, 1000000, NULL, 0,
     "unsent messages per connection before partials are dropped"},
    {"ASR_SLOW_CLIENT_THRESHOLD", OPT_INT, F(slow_client_threshold), "10", 1, 1000000, NULL, 0,
     "send-queue overflows in a row before close 1008"},
    {"ASR_SEND_TIMEOUT_S", OPT_INT, F(send_timeout_s), "30", 1, 3600, NULL, 0,
     "seconds a connection's pending write may make no progress before it is closed"},
    {"ASR_PING_INTERVAL_S", OPT_INT, F(ping_interval_s), "10", 0, 3600, NULL, 0,
     "seconds from a WebSocket's start, and from each pong, to the server's next ping; 0 = no pings"},
    {"ASR_PING_TIMEOUT_S", OPT_INT, F(ping_timeout_s), "10", 1, 3600, NULL, 0,
     "a pong missing this many seconds after its ping means a dead or stuck peer: the connection is "
     "dropped and its session stays resumable (found within interval + timeout)"},
    {"ASR_RATE_ABUSE_THRESHOLD", OPT_INT, F(rate_abuse_threshold), "20", 1, 1000000, NULL, 0,
     "RATE_LIMITED chunks in a row before close 1008"},
    {"ASR_JOB_CONCURRENCY", OPT_INT, F(job_concurrency), "2", 0, 256, NULL, 0,
     "job runs each worker does at once (on the inference pool below live streams); 0 = this instance only "
     "takes jobs, others run them"},
    {"ASR_JOB_LEASE_S", OPT_INT, F(job_lease_s), "30", 2, 3600, NULL, 0,
     "a job run whose worker stopped renewing its lease this long is taken over by another worker"},
    {"ASR_JOB_MAX_ATTEMPTS", OPT_INT, F(job_max_attempts), "3", 1, 100, NULL, 0,
     "deliveries of a job run (worker deaths, engine failures) before it ends in error, dead-lettered"},
    {"ASR_JOB_TTL_S", OPT_INT, F(job_ttl_s), "86400", 1, 2592000, NULL, 0,
     "how long a job is kept after its last change (results, GET); a job waiting longer expires"},
    {"ASR_JOB_CACHE_TTL_S", OPT_INT, F(job_cache_ttl_s), "3600", 0, 2592000, NULL, 0,
     "results cached by content hash (audio + options) for this long; 0 = no cache"},
    {"ASR_JOB_QUEUE_MAX", OPT_INT, F(job_queue_max), "10000", 0, 100000000, NULL, 0,
     "job runs waiting for a worker before submissions get 503 QUEUE_FULL; 0 = unlimited"},
    {"ASR_JOB_SPOOL_MAX_MB", OPT_INT, F(job_spool_max_mb), "64", 0, 1048576, NULL, 0,
     "uploaded job audio kept in Redis until a worker takes it, MiB; past it 503 QUEUE_FULL; 0 = unlimited"},
    {"ASR_JOB_BATCH_MAX", OPT_INT, F(job_batch_max), "100", 1, 1000, NULL, 0,
     "files in one multipart POST /v1/jobs (a batch)"},
    {"ASR_JOB_FETCH_TIMEOUT_S", OPT_INT, F(job_fetch_timeout_s), "60", 1, 3600, NULL, 0,
     "downloading a job's audio URL (the size cap is ASR_MAX_UPLOAD_BYTES)"},
    {"ASR_OUTBOUND_ALLOW_PRIVATE", OPT_INT, F(outbound_allow_private), "0", 0, 1, NULL, 0,
     "1: audio URLs and webhooks may reach loopback, private and link-local addresses; 0: refused"},
    {"ASR_WEBHOOK_SECRET", OPT_STR, F(webhook_secret), "", 0, 0, NULL, 1,
     "signs webhooks (Standard Webhooks: webhook-signature v1 HMAC-SHA256); whsec_<base64> or any text; "
     "empty = unsigned"},
    {"ASR_WEBHOOK_MAX_ATTEMPTS", OPT_INT, F(webhook_max_attempts), "8", 1, 100, NULL, 0,
     "delivery attempts of a webhook; a 4xx other than 408 and 429 stops at once"},
    {"ASR_WEBHOOK_RETRY_MS", OPT_INT, F(webhook_retry_ms), "1000", 10, 3600000, NULL, 0,
     "delay before a webhook's second attempt, doubling for each next one (at most 1 h)"},
    {"ASR_WEBHOOK_TIMEOUT_S", OPT_INT, F(webhook_timeout_s), "10", 1, 300, NULL, 0,
     "one webhook delivery attempt"},
    {"ASR_RATE_PER_KEY", OPT_DOUBLE, F(rate_per_key), "0", 0, 1000000, NULL, 0,
     "job API requests per second per API key across the cluster (a token bucket of 2 s); 0 = off"},
    {"ASR_RATE_PER_IP", OPT_DOUBLE, F(rate_per_ip), "0", 0, 1000000, NULL, 0,
     "job API requests per second per client address across the cluster (a token bucket of 2 s); 0 = off"},
    {"ASR_WORKER_MAX_JOBS", OPT_INT, F(worker_max_jobs), "0", 0, 100000000, NULL, 0,
     "a worker that finished this many job runs is replaced by a fresh one (nothing dropped); 0 = never"},
    {"ASR_LOG_LEVEL", OPT_CHOICE, F(log_level), "info", 0, 0, "debug|info|warn|error", 0, "log level"},
    {"ASR_LOG_FORMAT", OPT_CHOICE, F(log_format), "json", 0, 0, "json|logfmt", 0, "log line format"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int choice_ok(const char *choices, const char *v) {
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == vl && strncmp(p, v, l) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int set_opt(void *dst, const struct config_opt *o, const char *v, char *err, size_t errlen) {
    char *field = (char *)dst + o->off;
    char *end = NULL;
    if (o->type == OPT_STR) {
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: value too long, allowed at most %zu bytes", o->name, o->size - 1);
            return ASR_EINVAL;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    }
    if (o->type == OPT_CHOICE) {
        if (!choice_ok(o->choices, v)) {
            snprintf(err, errlen, "%s: invalid value \"%s\", allowed %s", o->name, v, o->choices);
            return ASR_EINVAL;
        }
        if (o->size == sizeof(int) && strspn(v, "0123456789") == strlen(v))
            *(int *)field = (int)strtol(v, NULL, 10); /* numeric choice; already validated as digits */
        else
            snprintf(field, o->size, "%s", v);
        return 0;
    }
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || isnan(d)) {
        snprintf(err, errlen, "%s: \"%s\" is not a number, allowed %.17g..%.17g", o->name, v, o->min, o->max);
        return ASR_EINVAL;
    }
    if (o->type != OPT_DOUBLE && d != floor(d)) {
        snprintf(err, errlen, "%s: \"%s\" is not an integer, allowed %.0f..%.0f", o->name, v, o->min, o->max);
        return ASR_EINVAL;
    }
    if (d < o->min || d > o->max) {
        snprintf(err, errlen, "%s: %s is out of range, allowed %.17g..%.17g", o->name, v, o->min, o->max);
        return ASR_EINVAL;
    }
    switch (o->type) {
    case OPT_INT: *(int *)field = (int)d; break;
    case OPT_LONG: *(long *)field = (long)d; break;
    case OPT_SIZE: *(size_t *)field = (size_t)d; break;
    case OPT_DOUBLE: *(double *)field = d; break;
    default: break;
    }
    return 0;
}

static const char *env_get(const char *name) { return getenv(name); }

int config_opts_load(void *dst, const struct config_opt *o, size_t n, const char *(*get)(const char *name),
                     char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++)
        if (set_opt(dst, &o[i], o[i].def, err, errlen) != 0) return ASR_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const char *v = get(o[i].name);
        if (v && set_opt(dst, &o[i], v, err, errlen) != 0) return ASR_EINVAL;
    }
    return 0;
}

const struct config_opt *config_table(size_t *n) {
    *n = NOPTS;
    return opts;
}

/* ---- unknown variables -------------------------------------------------- */

struct config_names config_own_names(void) {
    static const char *names[NOPTS];
    if (!names[0])
        for (size_t i = 0; i < NOPTS; i++) names[i] = opts[i].name;
    return (struct config_names){.names = names, .n = NOPTS};
}

/* Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions), capped: names are short (< 64 bytes). */
static size_t edit_distance(const char *a, const char *b) {
    enum { M = 64 };
    size_t la = strnlen(a, M - 1), lb = strnlen(b, M - 1);
    static size_t d[M][M];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *config_closest(const char *name, const struct config_names *tables, size_t ntables) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    size_t nl = strlen(name);
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].n; i++) {
            const char *k = tables[t].names[i];
            size_t d = edit_distance(name, k);
            /* a likely typo: a few edits, fewer for short names */
            size_t kl = strlen(k), limit = kl / 4 < 2 ? 2 : kl / 4;
            /* or a known name cut short: ASR_MAX_SESSIONS -> ASR_MAX_SESSIONS_PER_WORKER */
            if (d > limit && !(nl >= 8 && nl < kl && strncmp(name, k, nl) == 0)) continue;
            if (d < best_d) best = k, best_d = d;
        }
    return best;
}

static int known(const char *name, size_t len, const struct config_names *tables, size_t ntables) {
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].n; i++)
            if (strlen(tables[t].names[i]) == len && strncmp(tables[t].names[i], name, len) == 0) return 1;
    return 0;
}

int config_check_unknown(char *const *env, const struct config_names *tables, size_t ntables,
                         char *err, size_t errlen) {
    struct buf b;
    buf_init(&b, 0);
    int bad = 0;
    for (size_t e = 0; env && env[e]; e++) {
        const char *kv = env[e];
        if (strncmp(kv, "ASR_", 4) != 0) continue;
        const char *eq = strchr(kv, '=');
        size_t len = eq ? (size_t)(eq - kv) : strlen(kv);
        if (known(kv, len, tables, ntables)) continue;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), kv);
        const char *near = config_closest(name, tables, ntables);
        if (near) buf_printf(&b, "%s%s is not a setting; did you mean %s?", bad ? "\n" : "", name, near);
        else buf_printf(&b, "%s%s is not a setting (asrd --help lists them)", bad ? "\n" : "", name);
        bad++;
    }
    if (errlen) snprintf(err, errlen, "%.*s", (int)b.len, b.data ? b.data : "");
    buf_cleanup(&b);
    return bad ? ASR_EINVAL : 0;
}

int config_load_from(struct config *cfg, const char *(*get)(const char *name), char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    if (config_opts_load(cfg, opts, NOPTS, get, err, errlen) != 0) return ASR_EINVAL;
    /* Cross-field rules. */
    if (cfg->max_message_bytes && cfg->max_message_bytes < 1024) {
        snprintf(err, errlen, "ASR_MAX_MESSAGE_BYTES: %zu is too small, allowed 0 or 1024..67108864",
                 cfg->max_message_bytes);
        return ASR_EINVAL;
    }
    if (cfg->max_chunk_bytes % 2) {
        snprintf(err, errlen, "ASR_MAX_CHUNK_BYTES: %zu is odd, allowed even values 2..16777216",
                 cfg->max_chunk_bytes);
        return ASR_EINVAL;
    }
    if (cfg->token_secret[0] && strlen(cfg->token_secret) < 16) {
        snprintf(err, errlen, "ASR_TOKEN_SECRET: %zu bytes is too short, allowed 16..255 bytes (or empty)",
                 strlen(cfg->token_secret));
        return ASR_EINVAL;
    }
    if (cfg->adaptive_latency_low_ms >= cfg->adaptive_latency_high_ms) {
        snprintf(err, errlen, "ASR_ADAPTIVE_LATENCY_LOW_MS: %d is not below ASR_ADAPTIVE_LATENCY_HIGH_MS (%d)",
                 cfg->adaptive_latency_low_ms, cfg->adaptive_latency_high_ms);
        return ASR_EINVAL;
    }
    if (cfg->window_min_ms > cfg->window_max_ms) {
        snprintf(err, errlen, "ASR_WINDOW_MIN_MS: %d is above ASR_WINDOW_MAX_MS (%d)", cfg->window_min_ms,
                 cfg->window_max_ms);
        return ASR_EINVAL;
    }
    if (cfg->upload_memory_bytes && cfg->upload_memory_bytes < cfg->max_upload_bytes + CONFIG_UPLOAD_DECODE_BYTES) {
        snprintf(err, errlen,
                 "ASR_UPLOAD_MEMORY_BYTES: %zu leaves no room for the largest upload, allowed 0 or at least "
                 "ASR_MAX_UPLOAD_BYTES + 4194304 (%zu)",
                 cfg->upload_memory_bytes, cfg->max_upload_bytes + CONFIG_UPLOAD_DECODE_BYTES);
        return ASR_EINVAL;
    }
    if (cfg->message_memory_bytes && cfg->message_memory_bytes < 2 * config_max_message_bytes(cfg)) {
        snprintf(err, errlen,
                 "ASR_MESSAGE_MEMORY_BYTES: %zu leaves no room for the largest message, allowed 0 or at least "
                 "twice ASR_MAX_MESSAGE_BYTES (%zu)",
                 cfg->message_memory_bytes, 2 * config_max_message_bytes(cfg));
        return ASR_EINVAL;
    }
    if (cfg->endpointing_ms < cfg->vad_frame_ms) {
        snprintf(err, errlen, "ASR_ENDPOINTING_MS: %d is shorter than ASR_VAD_FRAME_MS, allowed %d..10000",
                 cfg->endpointing_ms, cfg->vad_frame_ms);
        return ASR_EINVAL;
    }
    return 0;
}

int config_load(struct config *cfg, char *err, size_t errlen) {
    return config_load_from(cfg, env_get, err, errlen);
}

void config_print_help(FILE *out) {
    fprintf(out,
            "usage: asrd [--help] [--version]\n\n"
            "asrd: real-time speech-to-text server. Every setting is an environment variable:\n\n");
    config_opts_help(out, opts, NOPTS);
}

void config_opts_help(FILE *out, const struct config_opt *o0, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const struct config_opt *o = &o0[i];
        char range[64] = "";
        if (o->type == OPT_CHOICE) snprintf(range, sizeof range, " (%s)", o->choices);
        else if (o->type == OPT_DOUBLE) snprintf(range, sizeof range, " (%g..%g)", o->min, o->max);
        else if (o->type != OPT_STR) snprintf(range, sizeof range, " (%.0f..%.0f)", o->min, o->max);
        fprintf(out, "  %-34s default \"%s\"%s\n      %s\n", o->name, o->def, range, o->help);
    }
}

void config_opts_dump(struct buf *b, const void *src, const struct config_opt *o0, size_t n, int first) {
    for (size_t i = 0; i < n; i++) {
        const struct config_opt *o = &o0[i];
        const char *field = (const char *)src + o->off;
        buf_printf(b, "%s\"%s\":", i || !first ? "," : "", o->name);
        switch (o->type) {
        case OPT_STR:
        case OPT_CHOICE:
            if (o->type == OPT_CHOICE && o->size == sizeof(int))
                buf_printf(b, "%d", *(const int *)field);
            else if (o->secret && field[0] && !(strcmp(o->name, "ASR_REDIS_URL") == 0 && strcmp(field, CONFIG_STORE_MEMORY) == 0))
                buf_puts(b, "\"****\""); /* a URL may hold a password; "memory" holds none */
            else
                buf_json_str(b, field, strlen(field));
            break;
        case OPT_INT: buf_printf(b, "%d", *(const int *)field); break;
        case OPT_LONG: buf_printf(b, "%ld", *(const long *)field); break;
        case OPT_SIZE: buf_printf(b, "%zu", *(const size_t *)field); break;
        case OPT_DOUBLE: buf_printf(b, "%g", *(const double *)field); break;
        }
    }
}

size_t config_dump_json(const struct config *cfg, const struct config_opt *engine_opts, size_t n_engine,
                        char *out, size_t len) {
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "{");
    config_opts_dump(&b, cfg, opts, NOPTS, 1);
    if (engine_opts && cfg->engine_settings) config_opts_dump(&b, cfg->engine_settings, engine_opts, n_engine, 0);
    buf_puts(&b, "}");
    size_t n = b.len < len ? b.len : (len ? len - 1 : 0);
    if (len) {
        memcpy(out, b.data, n);
        out[n] = '\0';
    }
    buf_cleanup(&b);
    return n;
}

size_t config_max_message_bytes(const struct config *cfg) {
    if (cfg->max_message_bytes) return cfg->max_message_bytes;
    /* A max chunk in base64 plus room for the JSON around it, rounded up to 1000. */
    size_t b64 = (cfg->max_chunk_bytes + 2) / 3 * 4;
    return (b64 + 256 + 999) / 1000 * 1000;
}

size_t config_audio_rate(const struct config *cfg, unsigned sample_rate) {
    if (cfg->max_audio_rate) return cfg->max_audio_rate;
    return (size_t)sample_rate * 2 * 2; /* twice real time of s16 mono */
}
