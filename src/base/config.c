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

enum opt_type { OPT_INT, OPT_LONG, OPT_SIZE, OPT_DOUBLE, OPT_STR, OPT_CHOICE };

struct opt {
    const char   *name;     /* environment variable */
    enum opt_type type;
    size_t        off;      /* offset in struct config */
    size_t        size;     /* for strings: field size */
    const char   *def;      /* default, as text */
    double        min, max; /* numeric range, inclusive */
    const char   *choices;  /* OPT_CHOICE: "a|b|c" */
    int           secret;   /* masked in the dump */
    const char   *help;
};

#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)

static const struct opt opts[] = {
    {"ASR_HOST", OPT_STR, F(host), "0.0.0.0", 0, 0, NULL, 0, "address to listen on"},
    {"ASR_PORT", OPT_INT, F(port), "8000", 1, 65535, NULL, 0, "TCP port to listen on"},
    {"ASR_BACKLOG", OPT_INT, F(backlog), "1024", 1, 65535, NULL, 0, "listen(2) backlog"},
    {"ASR_WORKER_ID", OPT_STR, F(worker_id), "w", 0, 0, NULL, 0,
     "worker id prefix: worker i is <prefix><i>, shown in session, health, logs and metrics"},
    {"ASR_API_KEYS", OPT_STR, F(api_keys), "", 0, 0, NULL, 1,
     "comma-separated API keys guarding /v1/transcribe*; empty = no auth"},
    {"ASR_ALLOWED_ORIGINS", OPT_STR, F(allowed_origins), "", 0, 0, NULL, 0,
     "comma-separated origins (https://app.example.com) or *: a WebSocket upgrade whose Origin is not listed gets 403; "
     "requests without Origin pass; empty = off"},
    {"ASR_WORKERS", OPT_INT, F(workers), "0", 0, 256, NULL, 0,
     "worker processes sharing the port (SO_REUSEPORT); 0 = one per CPU core"},
    {"ASR_REDIS_URL", OPT_STR, F(redis_url), "", 0, 0, NULL, 1,
     "session store: redis://[:password@]host:port[/db] or unix:///path; empty = in-memory (one worker's view)"},
    {"ASR_STORE_REQUIRED", OPT_INT, F(store_required), "0", 0, 1, NULL, 0,
     "1: refuse new sessions (503 STORE_UNAVAILABLE) while Redis is unreachable; 0: serve them locally"},
    {"ASR_MAX_GLOBAL_SESSIONS", OPT_INT, F(max_global_sessions), "0", 0, 100000000, NULL, 0,
     "streaming sessions across all workers sharing the store; 0 = unlimited"},
    {"ASR_ENGINE", OPT_STR, F(engine), "mock", 0, 0, NULL, 0, "speech engine (registered: mock)"},
    {"ASR_MOCK_LATENCY_MS", OPT_INT, F(mock_latency_ms), "50", 0, 60000, NULL, 0,
     "mock engine: simulated latency of every request, ms"},
    {"ASR_MOCK_WORDS_PER_CHUNK", OPT_INT, F(mock_words_per_chunk), "2", 0, 100, NULL, 0,
     "mock engine: fake words per 100 ms of speech"},
    {"ASR_MOCK_ERROR_RATE", OPT_DOUBLE, F(mock_error_rate), "0", 0, 1, NULL, 0,
     "mock engine: probability that a chunk fails with MODEL_ERROR"},
    {"ASR_MOCK_SEED", OPT_LONG, F(mock_seed), "1", 0, 9007199254740991.0, NULL, 0,
     "mock engine: seed of its deterministic word and error choices"},
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
     "seconds without audio, keepalive or ping before a session ends; also how long a dropped session stays resumable"},
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
    {"ASR_RATE_ABUSE_THRESHOLD", OPT_INT, F(rate_abuse_threshold), "20", 1, 1000000, NULL, 0,
     "RATE_LIMITED chunks in a row before close 1008"},
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

static int set_opt(struct config *cfg, const struct opt *o, const char *v, char *err, size_t errlen) {
    char *field = (char *)cfg + o->off;
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

int config_load_from(struct config *cfg, const char *(*get)(const char *name), char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTS; i++)
        if (set_opt(cfg, &opts[i], opts[i].def, err, errlen) != 0) return ASR_EINVAL;
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = get(opts[i].name);
        if (v && set_opt(cfg, &opts[i], v, err, errlen) != 0) return ASR_EINVAL;
    }
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
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        char range[64] = "";
        if (o->type == OPT_CHOICE) snprintf(range, sizeof range, " (%s)", o->choices);
        else if (o->type == OPT_DOUBLE) snprintf(range, sizeof range, " (%g..%g)", o->min, o->max);
        else if (o->type != OPT_STR) snprintf(range, sizeof range, " (%.0f..%.0f)", o->min, o->max);
        fprintf(out, "  %-34s default \"%s\"%s\n      %s\n", o->name, o->def, range, o->help);
    }
}

size_t config_dump_json(const struct config *cfg, char *out, size_t len) {
    struct buf b;
    buf_init(&b, 0);
    buf_puts(&b, "{");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        const char *field = (const char *)cfg + o->off;
        buf_printf(&b, "%s\"%s\":", i ? "," : "", o->name);
        switch (o->type) {
        case OPT_STR:
        case OPT_CHOICE:
            if (o->type == OPT_CHOICE && o->size == sizeof(int))
                buf_printf(&b, "%d", *(const int *)field);
            else if (o->secret && field[0])
                buf_puts(&b, "\"****\"");
            else
                buf_json_str(&b, field, strlen(field));
            break;
        case OPT_INT: buf_printf(&b, "%d", *(const int *)field); break;
        case OPT_LONG: buf_printf(&b, "%ld", *(const long *)field); break;
        case OPT_SIZE: buf_printf(&b, "%zu", *(const size_t *)field); break;
        case OPT_DOUBLE: buf_printf(&b, "%g", *(const double *)field); break;
        }
    }
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
