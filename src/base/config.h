/* asrd settings: every one comes from an ASR_* environment variable with an
 * embedded default (README.md has the table; `asrd --help` prints it).
 * config_load() validates each value against its range and names the
 * variable on error; main() exits with status 2 then. */
#ifndef ASRD_CONFIG_H
#define ASRD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct config {
    /* network */
    char     host[256];                /* ASR_HOST, listen address */
    int      port;                     /* ASR_PORT */
    int      backlog;                  /* ASR_BACKLOG */
    char     worker_id[64];            /* ASR_WORKER_ID: prefix; the master appends the worker index */
    char     api_keys[1024];           /* ASR_API_KEYS, comma separated; secret */
    char     allowed_origins[1024];    /* ASR_ALLOWED_ORIGINS: WebSocket Origins, comma separated, or "*"; "" = off */
    char     cors_origins[1024];       /* ASR_CORS_ORIGINS: origins whose pages may call the HTTP routes, or "*"; "" = off */
    int      cors_max_age_s;           /* ASR_CORS_MAX_AGE_S: how long browsers keep a preflight answer */
    char     token_secret[256];        /* ASR_TOKEN_SECRET: HMAC key of access tokens; secret. main() fills
                                        * it with random bytes (hex) when empty: tokens then hold on this
                                        * instance only (token_secret_random) */
    int      token_secret_random;      /* 1: token_secret was made up at start */
    int      token_ttl_s;              /* ASR_TOKEN_TTL_S: lifetime of access tokens (default and maximum) */
    char     web_dir[512];             /* ASR_WEB_DIR: the page's static files; "" = found next to the
                                        * binary; "off" = no page */
    int      workers;                  /* ASR_WORKERS: worker processes (0 = one per core) */
    /* session store */
    char     redis_url[512];           /* ASR_REDIS_URL: empty = a private redis-server the master
                                        * starts; "memory" = in-process store (one worker);
                                        * else redis:// or unix:// (shared); secret (password) */
    char     job_redis_url[512];       /* ASR_JOB_REDIS_URL: the job queue's Redis; empty = the
                                        * session store's; secret (password) */
    char     redis_server[256];        /* ASR_REDIS_SERVER: redis-server binary for the private store */
    int      redis_maxmemory_mb;       /* ASR_REDIS_MAXMEMORY_MB: memory bound of the private store */
    char     runtime_dir[200];         /* ASR_RUNTIME_DIR: parent of the private runtime directory
                                        * ("" = $XDG_RUNTIME_DIR, else /tmp) */
    int      store_required;           /* ASR_STORE_REQUIRED: 1 = refuse sessions while the store is down */
    int      max_global_sessions;      /* ASR_MAX_GLOBAL_SESSIONS: across workers (0 = unlimited) */
    /* engine */
    char     engine[32];               /* ASR_ENGINE */
    const void *engine_settings;       /* the selected engine's own settings (its table,
                                          engine_ops.settings), filled by main; process lifetime */
    int      inference_threads;        /* ASR_INFERENCE_THREADS: windowed engines, pool threads of the
                                          whole instance (0 = one per core), shared out to workers */
    int      inference_queue_max;      /* ASR_INFERENCE_QUEUE_MAX: jobs waiting per worker's pool */
    int      window_ms;                /* ASR_WINDOW_MS: new utterance audio per partial window */
    int      window_overlap_ms;        /* ASR_WINDOW_OVERLAP_MS: 0 = windows from the utterance start */
    int      max_utterance_ms;         /* ASR_MAX_UTTERANCE_MS: longer utterances end with a final */
    /* adaptive window (docs/internals/reading-feedback.md, "Adaptive window") */
    int      adaptive_window;          /* ASR_ADAPTIVE_WINDOW: 1 = new sessions get the adaptive window */
    int      adaptive_latency_high_ms; /* ASR_ADAPTIVE_LATENCY_HIGH_MS: mean latency above it: +500 ms */
    int      adaptive_latency_low_ms;  /* ASR_ADAPTIVE_LATENCY_LOW_MS: below it: -500 ms */
    int      window_min_ms;            /* ASR_WINDOW_MIN_MS: the adaptive window's floor */
    int      window_max_ms;            /* ASR_WINDOW_MAX_MS: its ceiling */
    /* reading feedback */
    size_t   expected_text_max_bytes;  /* ASR_EXPECTED_TEXT_MAX_BYTES: largest expected text */
    char     reference_dir[512];       /* ASR_REFERENCE_DIR: <id>.txt files; "" = no library */
    int      verify_max_audio_ms;      /* ASR_VERIFY_MAX_AUDIO_MS: audio kept for the verification decode */
    /* VAD */
    int      vad_frame_ms;             /* ASR_VAD_FRAME_MS: 10, 20, 30 (an int choice) */
    int      vad_mode;                 /* ASR_VAD_MODE: 0..3 */
    int      endpointing_ms;           /* ASR_ENDPOINTING_MS */
    /* sessions */
    int      max_sessions_per_worker;  /* ASR_MAX_SESSIONS_PER_WORKER */
    int      max_connections;          /* ASR_MAX_CONNECTIONS */
    int      max_connections_per_ip;   /* ASR_MAX_CONNECTIONS_PER_IP (0 = unlimited) */
    int      idle_timeout_s;           /* ASR_IDLE_TIMEOUT_S */
    int      resume_timeout_s;         /* ASR_RESUME_TIMEOUT_S: a dropped session stays resumable this long */
    int      snapshot_interval_s;      /* ASR_SNAPSHOT_INTERVAL_S: a changed session's record is rewritten
                                        * this often (shared store) */
    int      max_detached_sessions;    /* ASR_MAX_DETACHED_SESSIONS: dropped, resumable sessions per worker */
    int      max_detached_per_ip;      /* ASR_MAX_DETACHED_PER_IP: of those, per client address
                                        * (0 = max_connections_per_ip, itself 0 = no bound) */
    int      handshake_timeout_s;      /* ASR_HANDSHAKE_TIMEOUT_S: request head deadline, keep-alive idle */
    int      body_timeout_s;           /* ASR_BODY_TIMEOUT_S: body progress deadline (1 KiB per period) */
    int      drain_timeout_s;          /* ASR_DRAIN_TIMEOUT_S */
    /* limits */
    size_t   max_chunk_bytes;          /* ASR_MAX_CHUNK_BYTES */
    size_t   max_message_bytes;        /* ASR_MAX_MESSAGE_BYTES (0 = derived from chunk) */
    size_t   max_audio_rate;           /* ASR_MAX_AUDIO_RATE_BYTES_PER_SEC (0 = 2x real time) */
    size_t   max_header_bytes;         /* ASR_MAX_HEADER_BYTES */
    size_t   max_upload_bytes;         /* ASR_MAX_UPLOAD_BYTES */
    size_t   upload_memory_bytes;      /* ASR_UPLOAD_MEMORY_BYTES: bodies + decoding of uploads in flight,
                                          per worker (0 = no bound) */
    size_t   message_memory_bytes;     /* ASR_MESSAGE_MEMORY_BYTES: WebSocket messages being reassembled,
                                          per worker (0 = no bound) */
    int      max_pending_chunks;       /* ASR_MAX_PENDING_CHUNKS */
    size_t   max_session_buffer_bytes; /* ASR_MAX_SESSION_BUFFER_BYTES: audio waiting in VAD/engine */
    int      shed_load;                /* ASR_SHED_LOAD: 1 = SERVER_BUSY instead of pausing */
    size_t   max_send_queue_bytes;     /* ASR_MAX_SEND_QUEUE_BYTES */
    int      max_send_queue_size;      /* ASR_MAX_SEND_QUEUE_SIZE, messages */
    int      slow_client_threshold;    /* ASR_SLOW_CLIENT_THRESHOLD */
    int      send_timeout_s;           /* ASR_SEND_TIMEOUT_S: a write making no progress */
    int      ping_interval_s;          /* ASR_PING_INTERVAL_S: WebSocket ping after this long (0 = none) */
    int      ping_timeout_s;           /* ASR_PING_TIMEOUT_S: a pong missing this long: dead or stuck peer */
    int      rate_abuse_threshold;     /* ASR_RATE_ABUSE_THRESHOLD: RATE_LIMITED in a row before 1008 */
    /* jobs (docs/API.md "Jobs") */
    int      job_concurrency;          /* ASR_JOB_CONCURRENCY: runs a worker does at once (0 = none here) */
    int      job_lease_s;              /* ASR_JOB_LEASE_S: a run not renewed this long is taken over */
    int      job_max_attempts;         /* ASR_JOB_MAX_ATTEMPTS: deliveries before a run is dead */
    int      job_ttl_s;                /* ASR_JOB_TTL_S: how long jobs (and waiting runs) are kept */
    int      job_cache_ttl_s;          /* ASR_JOB_CACHE_TTL_S: results by content hash (0 = no cache) */
    int      job_queue_max;            /* ASR_JOB_QUEUE_MAX: runs waiting before 503 (0 = unlimited) */
    int      job_spool_max_mb;         /* ASR_JOB_SPOOL_MAX_MB: audio spooled in Redis (0 = unlimited) */
    int      job_batch_max;            /* ASR_JOB_BATCH_MAX: files in one multipart request */
    int      job_fetch_timeout_s;      /* ASR_JOB_FETCH_TIMEOUT_S: downloading an audio URL */
    int      outbound_allow_private;   /* ASR_OUTBOUND_ALLOW_PRIVATE: audio URLs and webhooks to
                                          loopback/private addresses */
    char     webhook_secret[512];      /* ASR_WEBHOOK_SECRET: signs webhooks (whsec_<base64> or text); secret */
    int      webhook_max_attempts;     /* ASR_WEBHOOK_MAX_ATTEMPTS */
    int      webhook_retry_ms;         /* ASR_WEBHOOK_RETRY_MS: first retry delay, doubling */
    int      webhook_timeout_s;        /* ASR_WEBHOOK_TIMEOUT_S: one delivery attempt */
    double   rate_per_key;             /* ASR_RATE_PER_KEY: job API requests/s per API key (0 = off) */
    double   rate_per_ip;              /* ASR_RATE_PER_IP: job API requests/s per client address (0 = off) */
    int      worker_max_jobs;          /* ASR_WORKER_MAX_JOBS: a worker retires after this many runs (0 = never) */
    /* logging */
    char     log_level[16];            /* ASR_LOG_LEVEL */
    char     log_format[16];           /* ASR_LOG_FORMAT: json | logfmt */
};

/* One setting: the row of a table that config_opts_load(), --help and the
 * dump walk. The server's table is in config.c; an engine declares its own
 * (engine_ops.settings) for a struct of its own. */
enum config_type { CONFIG_INT, CONFIG_LONG, CONFIG_SIZE, CONFIG_DOUBLE, CONFIG_STR, CONFIG_CHOICE };

struct config_opt {
    const char      *name;     /* environment variable, ASR_... */
    enum config_type type;
    size_t           off;      /* offset of the field in its struct */
    size_t           size;     /* field size (strings: buffer size) */
    const char      *def;      /* default, as text */
    double           min, max; /* numeric range, inclusive */
    const char      *choices;  /* CONFIG_CHOICE: "a|b|c" (an int field takes numeric choices) */
    int              secret;   /* masked in the dump */
    const char      *help;
};

/* offset and size of a field, for a config_opt row */
#define CONFIG_FIELD(type, field) offsetof(type, field), sizeof(((type *)0)->field)

/* Fills dst (a struct the table describes) with the defaults of opts[0..n),
 * then the values get() returns. 0, or ASR_EINVAL with "ASR_X: <why>,
 * allowed <range>" in err. */
int config_opts_load(void *dst, const struct config_opt *opts, size_t n, const char *(*get)(const char *name),
                     char *err, size_t errlen);
/* Prints each setting with its default, range and meaning (--help). */
void config_opts_help(FILE *out, const struct config_opt *opts, size_t n);
/* Appends "NAME":value pairs of src (secrets masked) to an open JSON object
 * in out (struct buf, base/util.h); first: no leading comma. */
struct buf;
void config_opts_dump(struct buf *out, const void *src, const struct config_opt *opts, size_t n, int first);

/* The server's own table (everything but the engines' settings). */
const struct config_opt *config_table(size_t *n);

/* Fills cfg with defaults, then overrides from the environment (getenv).
 * On error returns ASR_EINVAL and writes "ASR_X: <why>, allowed <range>" to
 * err. */
int config_load(struct config *cfg, char *err, size_t errlen);

/* Same, reading variables through get (for tests). */
int config_load_from(struct config *cfg, const char *(*get)(const char *name),
                     char *err, size_t errlen);

/* The value of ASR_REDIS_URL that selects the in-process store. */
#define CONFIG_STORE_MEMORY "memory"

/* The setting names one table knows: base/config.c's own, or a module's. */
struct config_names {
    const char *const *names;          /* n names, borrowed (static storage) */
    size_t             n;
};

/* The names config_load() reads (base/config.c's table). */
struct config_names config_own_names(void);

/* Start-up check for typos: every "ASR_*=value" entry of env (a
 * NULL-terminated array like environ; other entries are skipped) must be
 * named in one of the ntables tables. Returns 0, or ASR_EINVAL with one line
 * per unknown variable in err (truncated at errlen), naming the closest
 * known name when one is close: "ASR_API_KEY is not a setting; did you mean
 * ASR_API_KEYS?". */
int config_check_unknown(char *const *env, const struct config_names *tables, size_t ntables,
                         char *err, size_t errlen);

/* The known name closest to name (edit distance, or name a prefix of it),
 * or NULL when none is close enough to be a likely typo. */
const char *config_closest(const char *name, const struct config_names *tables, size_t ntables);

/* Prints every setting with its default and meaning (--help). */
void config_print_help(FILE *out);

/* Writes the effective configuration as one JSON object into buf with secrets
 * masked ("****"), the engine's settings (engine_opts, filled into
 * cfg->engine_settings) included when given. Returns bytes written
 * (truncated at len - 1). */
size_t config_dump_json(const struct config *cfg, const struct config_opt *engine_opts, size_t n_engine,
                        char *buf, size_t len);

/* Memory one upload's decoding may hold beside its body (api/rest.c
 * charges it to the upload budget): ASR_UPLOAD_MEMORY_BYTES must leave room
 * for the largest body and this. */
#define CONFIG_UPLOAD_DECODE_BYTES ((size_t)4 << 20)

/* Derived values. */
size_t config_max_message_bytes(const struct config *cfg);
size_t config_audio_rate(const struct config *cfg, unsigned sample_rate);

#endif
