/* Process-wide counters, gauges and latency histograms.
 *
 * The loop is single-threaded, so counting is a plain increment on the
 * global `metrics` (no locks, no allocation). Histograms have fixed
 * log-spaced buckets (about 9% wide) from 1 us to ~100 s; percentiles are
 * read from them. metrics_json()/metrics_prometheus() render a snapshot for
 * GET /v1/metrics and GET /metrics. */
#ifndef ASRD_METRICS_H
#define ASRD_METRICS_H

#include <stdint.h>
#include "base/util.h"

#define HIST_BUCKETS 216

struct hist {
    uint64_t count;
    double   sum_ms;                  /* sum of observations, ms */
    uint32_t b[HIST_BUCKETS];         /* counts per log bucket */
};

enum metric_err {                     /* docs/API.md streaming error codes */
    MERR_INVALID_MESSAGE, MERR_INVALID_AUDIO, MERR_CHUNK_TOO_LARGE, MERR_OUT_OF_ORDER,
    MERR_RATE_LIMITED, MERR_SERVER_BUSY, MERR_MODEL_ERROR, MERR_INTERNAL, MERR__N
};

enum metric_route {
    ROUTE_TRANSCRIBE, ROUTE_STREAM, ROUTE_HEALTH, ROUTE_METRICS_JSON, ROUTE_METRICS_PROM,
    ROUTE_AUDIO_TRANSCRIPTIONS, ROUTE_AUDIO_TRANSLATIONS, ROUTE_MODELS, /* the OpenAI-compatible ones */
    ROUTE_AUTH_TOKEN, ROUTE_WEB,      /* POST /v1/auth/token; the page's static files */
    ROUTE_OTHER, ROUTE_JOBS, ROUTE_METRICS_STREAMING, ROUTE__N
};

enum metric_openai_refusal {          /* why POST /v1/audio/transcriptions refused a request (4xx) */
    OREF_FORM,                        /* not a multipart/form-data body it could read */
    OREF_PARAMS,                      /* a field missing, unknown or out of range, or a format mix */
    OREF_AUDIO,                       /* the file: not audio, broken, too long */
    OREF__N
};

enum metric_auth_refusal {            /* why a request's credential was refused (docs/API.md "Authentication") */
    AREF_UNAUTHORIZED,                /* none, or neither a key nor a token (401) */
    AREF_TOKEN_INVALID,               /* a token not signed here, malformed, or of a key now gone (401) */
    AREF_TOKEN_EXPIRED,               /* a token past its expires_at (401) */
    AREF_TOKEN_SCOPE,                 /* a token without this route's scope (403) */
    AREF__N
};

enum metric_end {                     /* why a session ended */
    END_STOP, END_IDLE, END_EXPIRED, END_SLOW_CLIENT, END_POLICY, END_TOO_BIG, END_SHUTDOWN,
    END_ERROR, END_MOVED, END_EVICTED, END__N
};

enum metric_rest_fail {               /* why a REST transcription did not answer 200 */
    RFAIL_MODEL_ERROR,                /* the engine failed on part of the audio (500) */
    RFAIL_ENGINE_BUSY,                /* the engine refused part of it: backlog full (503) */
    RFAIL_INTERNAL,                   /* no memory, no session (500) */
    RFAIL_ABORTED,                    /* the client went away mid-transcription */
    RFAIL__N
};

enum metric_verify {                  /* the verification at the end of a reading session */
    METRIC_VERIFY_OK,                 /* sent */
    METRIC_VERIFY_BUSY,               /* refused under load */
    METRIC_VERIFY_FAILED,             /* the engine failed, or no memory */
    METRIC_VERIFY_TOO_LONG,           /* the session's audio passed ASR_VERIFY_MAX_AUDIO_MS */
    METRIC_VERIFY__N
};

/* Stream latencies kept for the streaming figures (docs/API.md "GET
 * /metrics/streaming"): the last this many. */
#define METRIC_STREAM_LAT_SAMPLES 1000


enum metric_hook {                    /* webhook delivery attempts by outcome (docs/API.md "Webhooks") */
    HOOK_DELIVERED,                   /* a 2xx */
    HOOK_RETRIED,                     /* a 5xx, 408, 429 or no answer: tried again later */
    HOOK_REJECTED,                    /* another 4xx: no more tries */
    HOOK_GAVE_UP,                     /* the last try failed too */
    HOOK_DROPPED,                     /* the job was gone (purged, expired) before delivery */
    HOOK__N
};

enum metric_fetch {                   /* audio URL fetches of job runs by outcome */
    FETCH_OK, FETCH_REFUSED, FETCH_TOO_LARGE, FETCH_HTTP_ERROR, FETCH_FAILED, FETCH__N
};

#define METRIC_STATUSES 22
#define METRIC_CLOSE_CODES 8

struct metrics {
    uint64_t start_ms;                /* wall clock at start */
    uint64_t connections_active;      /* gauge: open TCP connections */
    uint64_t connections_total;
    uint64_t connections_refused;     /* over ASR_MAX_CONNECTIONS */
    uint64_t sessions_active;         /* gauge: live + resumable sessions */
    uint64_t sessions_attached;       /* gauge: sessions with a live connection */
    uint64_t sessions_detached;       /* gauge: dropped, resumable sessions held */
    uint64_t sessions_evicted_for_room; /* detached sessions ended to make room for a new live one */
    uint64_t sessions_total;          /* created (resumes not counted) */
    uint64_t sessions_resumed;
    uint64_t sessions_refused;        /* 503 at the session limit */
    uint64_t sessions_ended[END__N];
    uint64_t chunks_total;            /* chunks received (accepted or refused) */
    uint64_t chunks_accepted;
    uint64_t partials_total;
    uint64_t partials_dropped;        /* dropped from full send queues */
    uint64_t finals_total;
    uint64_t speech_started_total;
    uint64_t bytes_in;                /* PCM bytes of accepted chunks */
    uint64_t audio_ms_in;             /* ms of streamed audio accepted */
    uint64_t errors[MERR__N];         /* streaming error answers by code */
    uint64_t rest_chunks;             /* chunks of REST uploads fed to their sessions */
    uint64_t rest_audio_ms;           /* ms of REST audio fed */
    uint64_t rest_failed[RFAIL__N];   /* REST transcriptions that failed, by cause */
    uint64_t openai_refused[OREF__N]; /* OpenAI-compatible transcriptions refused, by cause */
    uint64_t rest_truncated;          /* uploads whose header states more audio than their bytes hold */
    uint64_t rest_trailing;           /* uploads with bytes after the audio their header describes */
    uint64_t close_codes[METRIC_CLOSE_CODES]; /* 1000,1001,1008,1009,1011,1013,other,none */
    uint64_t requests_total;
    uint64_t requests[ROUTE__N][METRIC_STATUSES];
    uint64_t engine_requests;
    uint64_t engine_errors;
    uint64_t windows_skipped;         /* windowed engines: partial windows skipped under load */
    uint64_t utterances_cut;          /* utterances ended at ASR_MAX_UTTERANCE_MS */
    /* reading feedback (docs/internals/reading-feedback.md) */
    uint64_t feedback_streams;        /* streams given an expected text */
    uint64_t feedback_rest;           /* REST transcriptions with an expected text */
    uint64_t feedback_updates;        /* partials and finals that carried word_feedback */
    uint64_t verifications[METRIC_VERIFY__N];
    /* the streaming figures: gauges set by metrics_tick() from the last
     * METRIC_STREAM_LAT_SAMPLES stream latencies, and the adaptive window */
    double   stream_lat_avg_ms, stream_lat_p95_ms;
    uint64_t stream_lat_samples;      /* gauge: how many of those there are */
    uint64_t adaptive_window_ms;      /* gauge: the window new sessions get (0: no partial windows) */
    /* the inference pool of a windowed engine (the worker copies its figures
     * each tick); gauges: threads, busy, queued, queue_max */
    uint64_t pool_threads, pool_busy, pool_queued, pool_queued_finals, pool_queue_max;
    uint64_t pool_completed, pool_failed, pool_refused, pool_evicted;
    uint64_t pool_audio_ms, pool_busy_ms;     /* audio decoded, thread time spent on it */
    uint64_t vad_frames;              /* VAD frames classified (speech ratio) */
    uint64_t vad_speech_frames;
    uint64_t ws_paused;               /* times a socket was paused for backpressure */
    uint64_t ws_pings;                /* pings sent (liveness) */
    uint64_t ws_pongs;                /* pongs received that answered our last ping */
    uint64_t ws_ping_timeouts;        /* connections reset: pong missing (dead or stuck peer) */
    uint64_t auth_tokens_issued;      /* access tokens minted (POST /v1/auth/token) */
    uint64_t auth_refused[AREF__N];   /* credentials refused, by cause */
    uint64_t cors_preflights;         /* CORS preflights answered 204 */
    uint64_t cors_refused;            /* requests refused: an Origin not in ASR_CORS_ORIGINS */
    /* the worker's memory budgets (base/budget.h; the worker copies them each
     * tick and before a metrics answer): bytes charged now, the most since
     * start, the bound (0 = none), charges refused */
    uint64_t mem_upload_bytes, mem_upload_peak, mem_upload_limit, mem_upload_refused;
    uint64_t mem_message_bytes, mem_message_peak, mem_message_limit, mem_message_refused;
    uint64_t store_up;                /* gauge: 1 while the session store is available */
    uint64_t store_ops;               /* store operations started */
    uint64_t store_errors;            /* store operations that failed (unavailable/timeout) */
    uint64_t store_timeouts;
    uint64_t store_reconnects;
    uint64_t store_writes;            /* session snapshots written (shared store) */
    uint64_t store_republished;       /* records written again after the store (re)connected */
    struct hist lat_queue;            /* chunk arrival -> engine submit */
    struct hist lat_engine;           /* engine submit -> result */
    struct hist lat_total;            /* chunk arrival -> answer queued */
    struct hist lat_rest;             /* REST transcribe request -> response */
    /* the event loop (worker.c): saturation shows here before it shows in
     * chunk latency */
    uint64_t loop_iterations;
    struct hist loop_busy;            /* work per loop iteration (callbacks and flushes, not waiting) */
    double   loop_utilization;        /* share of the last tick's wall time not spent waiting for events */
    /* jobs (docs/API.md "Jobs"): submissions on this worker, runs done by it */
    uint64_t jobs_submitted;          /* jobs accepted (202/200), batches' files included */
    uint64_t jobs_new_runs;           /* of them: queued as a new run (a cache miss) */
    uint64_t jobs_dedup_joins;        /* of them: joined an identical run queued or running */
    uint64_t jobs_cache_hits;         /* of them: answered from the result cache */
    uint64_t jobs_idem_replays;       /* an Idempotency-Key's earlier job returned */
    uint64_t jobs_idem_conflicts;     /* 422: the key with another payload */
    uint64_t jobs_refused_full;       /* 503: queue depth or spool bound */
    uint64_t jobs_rate_limited;       /* 429 */
    uint64_t jobs_runs;               /* runs this worker finished (completed or failed) */
    uint64_t jobs_completed, jobs_failed;     /* runs that ended so, here */
    uint64_t jobs_abandoned;          /* runs stopped because every job waiting for them was canceled */
    uint64_t jobs_dead;               /* runs found past their delivery limit (dead-lettered) */
    uint64_t jobs_reclaimed;          /* runs taken over from a worker whose lease ran out */
    uint64_t jobs_released;           /* runs given back for another delivery */
    uint64_t jobs_lost_lease;         /* runs dropped here because another worker took them over */
    uint64_t jobs_running;            /* gauge: runs in progress here */
    uint64_t jobs_audio_ms;           /* audio of completed runs, ms */
    uint64_t jobs_run_ms;             /* their wall time, ms (real-time factor = run / audio) */
    uint64_t jobs_fetch[FETCH__N];    /* audio URL fetches */
    uint64_t hooks[HOOK__N];          /* webhook attempts by outcome */
    /* the shared queue as this worker last read it (each tick); gauges of
     * the queue, the same for every worker: the JSON takes the largest,
     * not the sum */
    uint64_t jobs_queue_depth;        /* runs waiting for a worker */
    uint64_t jobs_pending;            /* runs taken, not finished */
    uint64_t jobs_spool_bytes;        /* audio spooled */
    uint64_t jobs_dead_letters;       /* entries in the dead-letter stream */
    uint64_t jobs_hooks_due;          /* webhooks not yet delivered */
    struct hist lat_job_wait;         /* a run: queued -> first started */
    struct hist lat_job_run;          /* a run: started here -> finished */
    struct hist lat_job_submit;       /* POST /v1/jobs: request start -> answer */
    /* process figures: the newest count (metrics_proc_set) and counters
     * read when published or rendered */
    uint64_t rss_bytes, open_fds, log_dropped;
    double   chunks_per_s, requests_per_s;
};

extern struct metrics metrics;

void metrics_init(void);
void hist_add(struct hist *h, double ms);
double hist_percentile(const struct hist *h, double p);   /* ms; 0 when empty */

/* Maps an asr_err to its counter; unknown errors count as INTERNAL. */
void metrics_count_error(int err);
/* Counts a WebSocket close code sent by the server (0 = no close frame). */
void metrics_count_close(int code);
/* Counts one HTTP response. */
void metrics_count_request(enum metric_route route, int status);
/* Samples the counters behind per-second rates and computes the streaming
 * latency gauges; call once a second. */
void metrics_tick(void);

/* Records one stream latency (ms) among the last METRIC_STREAM_LAT_SAMPLES:
 * a partial's latency_ms.total, without its buffer part for a windowed
 * engine (docs/API.md "GET /metrics/streaming"). */
void metrics_stream_latency(double ms);
/* Mean and 95th percentile of the latencies recorded (0 when none), and
 * their count; fresh (the gauges in `metrics` are from the last tick). */
void metrics_stream_latency_stats(double *avg_ms, double *p95_ms, uint64_t *n);
/* Stream latencies recorded since this process started (a position for
 * metrics_stream_latency_since). */
uint64_t metrics_stream_latency_count(void);
/* Mean of the latencies recorded since position from (at most the last
 * METRIC_STREAM_LAT_SAMPLES of them) and how many that is. */
void metrics_stream_latency_since(uint64_t from, double *avg_ms, uint64_t *n);

/* Process figures: RSS and open descriptors. Counting descriptors by
 * listing /proc/self/fd makes the kernel build a directory entry per
 * descriptor (2-5 ms at 2,800), too long to stall every stream for, so the
 * worker counts them in slices, one per loop iteration (metrics_fdwalk_*,
 * worker_proc_refresh): one poll() over a slice of the descriptor table,
 * where a closed slot answers POLLNVAL (about 0.2 us per slot). Rendering
 * and publishing use the newest stored figures. */
struct metrics_proc {
    uint64_t rss_bytes;
    uint64_t open_fds;
};
#define METRICS_FDWALK_SLOTS 256
struct metrics_fdwalk {
    size_t next, end;                 /* slots [next, end) still to look at */
    uint64_t open;                    /* open descriptors below next */
};
/* Starts a count over the whole table (its size: FDSize in /proc/self/status). */
void metrics_fdwalk_begin(struct metrics_fdwalk *w);
/* Looks at up to slots (<= METRICS_FDWALK_SLOTS) more slots. Returns 1 when
 * the count is complete (w->open), 0 while slots are left. */
int metrics_fdwalk_step(struct metrics_fdwalk *w, size_t slots);
uint64_t metrics_rss_bytes(void);     /* /proc/self/statm: a few us */
/* Stores figures for rendering and publishing (loop thread). */
void metrics_proc_set(const struct metrics_proc *p);

/* Workers of one master share their metrics (master.h): the master maps n
 * slots before forking; a worker binds to its slot and publishes a copy of
 * its counters there every metrics_tick(); the master clears the slot of a
 * worker it reaped. Rendering then covers every live worker: JSON sums them
 * (with a per-worker list), Prometheus gives one series per worker label.
 * Other workers' figures are up to one second old; this worker's are live. */
int  metrics_shared_create(int n);
void metrics_shared_bind(int slot);
void metrics_shared_clear(int slot);
void metrics_set_worker_id(const char *id);

/* Another live worker of this instance, as it last published (up to one
 * second old). */
struct metrics_peer {
    char     worker_id[64];
    int      pid;
    uint64_t sessions_active;         /* live + resumable streaming sessions */
    uint64_t sessions_detached;       /* of those, resumable (no connection) */
    uint64_t connections_active;
};
/* Fills up to max entries with the other live workers (this one excluded;
 * none when stand-alone) and returns how many. */
int metrics_shared_peers(struct metrics_peer *out, int max);

/* Renders snapshots. worker_id is the answering worker. Return 0 or ASR_ENOMEM. */
int metrics_json(struct buf *out, const char *worker_id);
int metrics_prometheus(struct buf *out, const char *worker_id);
/* The streaming figures of the instance in the shape of docs/API.md "GET
 * /metrics/streaming". */
int metrics_streaming_json(struct buf *out);

#endif
