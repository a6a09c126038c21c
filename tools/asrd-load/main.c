/* asrd-load: load generator for asrd (docs/LOAD.md).
 *
 * One libuv loop, single-threaded. Each streaming session is a WebSocket
 * client (wslay client mode, our own upgrade request and 101 check through
 * http-parser) that sends real-time chunks on absolute deadlines
 * (loadstat_sched) and matches every answer to the chunk it answers
 * (docs/API.md "Sequence numbers"). All sessions share one uv_timer that
 * services a min-heap of deadlines, so thousands of sessions cost one
 * wake-up per due millisecond, not one timer each.
 *
 * Every state has a deadline (connect, handshake, `session` message, the
 * `final` and close after `stop`) and a phase has a hard end (its duration
 * plus --grace), so a run always ends even when the server misbehaves.
 * Only loopback targets are accepted. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <http_parser.h>
#include <math.h>
#include <nettle/sha1.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "core/audio.h"
#include "base/err.h"
#include "jobs.h"
#include "loadstat.h"
#include "base/util.h"

#define DEFAULT_WAV       "tests/data/generated/speech16k.wav"
#define DEFAULT_TEXT      "hello world this is a speech test"   /* what tests/integration/run.sh speaks */
#define STREAM_PATH       "/v1/transcribe/stream"
#define SAMPLE_RATE       16000
#define RING              128          /* chunks in flight remembered per session */
#define SLOW_RCVBUF       16384        /* default SO_RCVBUF of slow readers, bytes */
#define MAX_WQ_BYTES      (256u << 10) /* unsent bytes per session before chunks are held back */
#define STALL_BYTES       (64u << 10)  /* unsent bytes that mark a session stalled */
#define SPAWN_BATCH       256          /* connects started per spawner wake-up */
#define REST_TIMEOUT_NS   (30ull * 1000000000ull)
#define WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NS                1000000000ull

#define SAMPLE_TIMEOUT_NS (3ull * 1000000000ull)   /* a /v1/metrics sample not answered by then is dropped */

enum scenario { SC_SUSTAINED, SC_RAMP, SC_CAPACITY, SC_SLOW, SC_CHURN, SC_REST, SC_FLOOD };
static const char *const scenario_names[] = {"sustained", "ramp", "capacity", "slow-readers", "churn", "rest", "flood"};
#define SCENARIO_LIST "sustained|ramp|capacity|slow-readers|churn|rest|flood"

/* ---- configuration ----------------------------------------------------- */

static struct cfg {
    struct loadstat_opts o;
    enum scenario sc;
    int      json_mode;                 /* --mode json */
    char     host[300];                 /* as written in the URL, for Host: */
    char     path[512];                 /* request target of the upgrade */
    struct sockaddr_storage addr;       /* resolved loopback address */
    char     api_key[256];
    char     json_out[512], svg_out[512];
    unsigned slow_rcvbuf;               /* SO_RCVBUF of slow readers, 0 = kernel default */
    int      quiet;
} C;

/* ---- audio ------------------------------------------------------------- */

static struct {
    uint8_t *pcm;          /* owned; s16le, a whole number of chunks */
    size_t   chunk_bytes;
    size_t   nchunks;
    char   **b64;          /* owned; base64 of each chunk (json mode) */
    uint8_t *file;         /* owned; bytes POSTed by the rest scenario */
    size_t   file_len;
    int      file_is_wav;
} AU;

/* ---- sessions ---------------------------------------------------------- */

enum sess_state {
    ST_IDLE = 0,       /* slot free */
    ST_CONNECTING,     /* TCP connect in flight */
    ST_HANDSHAKE,      /* upgrade sent, waiting for 101 */
    ST_OPEN,           /* WebSocket open, waiting for `session` */
    ST_STREAMING,      /* sending chunks */
    ST_STOPPING,       /* `stop` sent, waiting for `final` and close */
    ST_ENDED,          /* accounted; handle closing */
};

struct sess {
    uv_tcp_t    tcp;                    /* valid while in_use */
    uv_connect_t creq;
    unsigned    idx;                    /* slot index */
    enum sess_state st;
    int         in_use;                 /* handle initialised, close callback pending or not run yet */
    int         closing;                /* uv_close called */
    int         slow;                   /* slow-readers: stops reading after `session` */
    size_t      audio_off;              /* chunk of the looped audio this session starts at */
    int         flood;                  /* flood: sends chunks flood_factor times faster than real time */
    wslay_event_context_ptr ctx;        /* owned; NULL before the 101 */
    http_parser hp;                     /* upgrade response parser */
    char        hname[32];              /* current response header name (truncated) */
    size_t      hname_len;
    int         hvalue_last;            /* last header callback was a value */
    char        accept[40];             /* Sec-WebSocket-Accept received */
    size_t      accept_len;
    int         hdr_done;
    char        expect[32];             /* Sec-WebSocket-Accept expected */
    const uint8_t *rbuf;                /* bytes being fed to wslay; borrowed */
    size_t      rlen;
    struct loadstat_sched sched;
    struct loadstat_heap_node hn;       /* key: next chunk or stop */
    uint64_t    stop_at;                /* ns: when to send `stop` */
    uint64_t    deadline;               /* ns: timeout of the current state, 0 = none */
    uint64_t    seq;                    /* chunks sent = last sequence used */
    uint64_t    answered;               /* distinct chunks answered */
    uint64_t    last_ans;               /* highest answered sequence */
    struct { uint64_t seq, t_ns; } ring[RING];  /* send times; t_ns 0 once answered */
    size_t      wq_bytes;               /* bytes in pending uv_writes */
    int         close_after_write;
    int         got_final, got_close;
    unsigned    close_code;
    int         counted_open;           /* got `session`: counts in the results */
    int         lost_streaming;         /* connection ended before our `stop` */
    int         stalled;                /* unsent bytes passed STALL_BYTES: server not reading */
    int         failed;                 /* counted as a connect failure */
};

/* One GET /v1/metrics during a phase (--sample), on the loop: never blocks
 * the sessions. At most one is in flight; it is dropped after
 * SAMPLE_TIMEOUT_NS. Heap-allocated per fetch and freed by its close callback. */
struct sampler {
    uv_tcp_t     tcp;
    uv_connect_t creq;
    uv_write_t   wreq;
    http_parser  hp;
    struct buf   body;                  /* response body, bounded */
    uint64_t     started;               /* ns */
    int          complete, closing;
    char         req[1024];             /* the request: host <= 300 and key <= 255 bytes fit */
    size_t       req_len;
};

struct rest_client {
    uv_tcp_t    tcp;
    uv_connect_t creq;
    int         in_use, closing;
    int         busy;                   /* a request is in flight */
    http_parser hp;
    uint64_t    sent_ns;                /* request start */
    int         complete;
    int         failed;                 /* the last connection failed: retry later */
    uint64_t    retry_at;               /* ns: earliest restart after a failure */
    size_t      wq;                     /* pending uv_writes */
};

/* One phase: the whole run, or one capacity step. */
struct phase {
    unsigned target;                    /* sessions to hold (rest: clients) */
    uint64_t t_start, t_stop, t_hard;   /* ns */
    unsigned started;                   /* sessions started */
    unsigned rest_sent;                 /* rest: requests sent */
    unsigned open;                      /* slots in use */
    int      stopping;                  /* t_stop passed: nothing new starts */
    int      hard;                      /* t_hard passed */
    int      finishing;
    struct loadstat_run run;
    struct loadstat_hist lat, added;    /* us */
    struct rusage ru0;
};

static struct app {
    uv_loop_t   *loop;
    uv_timer_t   sched_timer;           /* services the deadline heap */
    uint64_t     sched_due;             /* key the timer is armed for, UINT64_MAX = idle */
    uv_timer_t   tick;                  /* 1 s: progress, timeline, timeouts */
    uv_timer_t   spawner;               /* starts sessions (ramp, churn) */
    uv_timer_t   phase_timer;           /* t_stop, then t_hard, then finish */
    uv_signal_t  sigint;
    uv_timer_t   sample_timer;          /* --sample: starts a /v1/metrics fetch */
    struct sampler *sample;             /* the fetch in flight, NULL when none; owned */
    struct loadstat_server last_sample; /* the newest sample read (ok 0 before any) */
    uint64_t     last_sample_ns;
    struct loadstat_heap heap;
    struct sess *sess;                  /* owned array of nsess slots */
    unsigned     nsess;
    unsigned    *freelist;              /* owned stack of free slot indices */
    unsigned     nfree;
    struct rest_client *rest;           /* owned array of opts.rest_concurrency */
    struct phase ph;
    struct loadstat_hist interval;      /* latency since the last tick, us */
    struct loadstat_hist all_lat, all_added;
    struct loadstat_result res;
    uint64_t     run_t0;
    uint64_t     tick_chunks, tick_answers;  /* counters at the previous tick */
    unsigned     cap_next;              /* capacity: next step size */
    int          interrupted;           /* SIGINT count */
    int          done;
    struct buf   out;                   /* wslay output gathered per pump */
    struct buf   scratch;               /* json chunk message */
    uint8_t      mask_pool[4096];
    size_t       mask_pos;
} A;

static char rbuf_shared[65536];         /* read buffer: consumed inside read_cb */

static void sess_end(struct sess *s);
static void sess_fail(struct sess *s, const char *why);
static void phase_maybe_finish(void);
static void phase_start(unsigned target);
static void sched_arm(void);
static void spawn_kick(uint64_t delay_ms);

/* ---- small helpers ----------------------------------------------------- */

static uint64_t now_ns(void) { return util_now_ns(); }

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("asrd-load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static double rusage_cpu(const struct rusage *ru) {
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           (double)ru->ru_stime.tv_usec / 1e6;
}

static unsigned rand_below(unsigned n) { return n ? randombytes_uniform(n) : 0; }

/* ---- options ----------------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
        "usage: asrd-load [options]\n"
        "Load generator for asrd (loopback targets only). See docs/LOAD.md.\n\n"
        "  --url URL               server, ws://HOST[:PORT][/PATH][?QUERY]     default ws://127.0.0.1:8000\n"
        "                          (path defaults to " STREAM_PATH "; the query is passed on)\n"
        "  --scenario S            " SCENARIO_LIST "  default sustained\n"
        "  --sessions N            sessions held (rest: ignored)             default 100\n"
        "  --ramp R                seconds over which sessions start evenly   default 0 (ramp: 10)\n"
        "  --duration D            seconds all sessions stream together       default 10\n"
        "                          (each streams R + D from its own start, so\n"
        "                          a phase is R up, D full, R down)\n"
        "                          (capacity: per step; rest: seconds of requests)\n"
        "  --chunk-ms MS           audio per chunk, 10..1000                  default 100\n"
        "  --mode M                binary|json                                default binary\n"
        "  --wav FILE              audio to stream (looped), any rate/channels default " DEFAULT_WAV "\n"
        "                          if present\n"
        "  --tone                  synthetic voiced signal instead of a WAV   default off\n"
        "  --json FILE             write the machine-readable result          default none\n"
        "  --svg FILE              write a latency chart                      default none\n"
        "  --slow-fraction F       slow-readers: share of sessions that never read  default 0.1\n"
        "  --slow-sessions N       slow-readers: exactly N of the sessions never read (instead of the fraction)\n"
        "  --slow-rcvbuf BYTES     slow-readers: their SO_RCVBUF, 0 = kernel default  default 16384\n"
        "                          (below ~8192 loopback TCP stalls the client's own sends)\n"
        "  --flood-fraction F      flood: share of sessions that send faster than real time  default 0.1\n"
        "  --flood-sessions N      flood: exactly N of the sessions flood (instead of the fraction)\n"
        "  --flood-factor X        flood: their chunks come X times faster than real time  default 10\n"
        "  --capacity-start N      capacity: sessions of the first step       default 500\n"
        "  --capacity-step N       capacity: sessions added per step          default 500\n"
        "  --capacity-max N        capacity: largest step                     default 10000\n"
        "  --p99-threshold-ms MS   capacity: highest p99 added latency that holds  default 10\n"
        "  --max-errors N          capacity: most connect failures + errors + missing answers\n"
        "                          a step may have and hold                   default 0\n"
        "  --mock-latency-ms MS    the server's engine latency, subtracted for \"added\"  default 50\n"
        "  --rest-concurrency N    rest: requests in flight                   default 8\n"
        "  --requests N            rest: stop after N requests, 0 = until --duration ends  default 0\n"
        "  --churn-life S          churn: mean seconds a session streams      default 3\n"
        "  --churn-rate R          churn: start R sessions a second (at most --sessions open at once);\n"
        "                          0 = start one whenever a slot frees        default 0\n"
        "  --metrics-interval S    read /v1/metrics every S s during the run (RSS, fds, peaks);\n"
        "                          0 = only before and after                  default 1\n"
        "  --max-burst N           most chunks sent at once after a late wake-up;\n"
        "                          older missed chunks are skipped            default 10\n"
        "  --connect-timeout S     connect + upgrade + `session` deadline     default 10\n"
        "  --grace S               wait for finals/closes after the end, <= 30  default 10\n"
        "  --api-key KEY           sent as Authorization: Bearer KEY          default none\n"
        "  --quiet                 no per-second progress lines on stderr\n"
        "  --help                  this text\n");
}

static double opt_num(const char *name, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) die("--%s: \"%s\" is not a number in %g..%g", name, v, lo, hi);
    return d;
}

static unsigned opt_uint(const char *name, const char *v, unsigned lo, unsigned hi) {
    uint64_t u;
    if (util_parse_u64(v, strlen(v), hi, &u) != 0 || u < lo) die("--%s: \"%s\" is not an integer in %u..%u", name, v, lo, hi);
    return (unsigned)u;
}

/* Parses ws://HOST[:PORT][/PATH][?QUERY] and refuses anything but a
 * loopback address (127.0.0.0/8, ::1, localhost): this tool generates
 * enough traffic to hurt a shared network or someone else's server. No
 * name is ever looked up. */
static void parse_url(const char *url) {
    if (strncmp(url, "ws://", 5) != 0) die("--url: only ws:// URLs are supported (got \"%s\")", url);
    const char *p = url + 5, *hs = p, *he;
    char host[256];
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he) die("--url: unterminated [ in \"%s\"", url);
        hs = p + 1;
        p = he + 1;
    } else {
        p += strcspn(p, ":/?");
        he = p;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof host) die("--url: bad host in \"%s\"", url);
    memcpy(host, hs, hl);
    host[hl] = 0;
    unsigned port = 80;
    if (*p == ':') {
        const char *ps = ++p;
        p += strcspn(p, "/?");
        char tmp[8];
        if ((size_t)(p - ps) == 0 || (size_t)(p - ps) >= sizeof tmp) die("--url: bad port in \"%s\"", url);
        memcpy(tmp, ps, (size_t)(p - ps));
        tmp[p - ps] = 0;
        port = opt_uint("url port", tmp, 1, 65535);
    }
    const char *path = p;
    if (*path == 0 || strcmp(path, "/") == 0) snprintf(C.path, sizeof C.path, "%s", STREAM_PATH);
    else if (*path == '?') snprintf(C.path, sizeof C.path, "%s%s", STREAM_PATH, path);
    else snprintf(C.path, sizeof C.path, "%s", path);
    memset(&C.addr, 0, sizeof C.addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&C.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&C.addr;
    if (strcasecmp(host, "localhost") == 0) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
            die("refusing %s: asrd-load only targets loopback (127.0.0.0/8, ::1, localhost)", host);
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
            die("refusing %s: asrd-load only targets loopback (127.0.0.0/8, ::1, localhost)", host);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
    } else {
        die("refusing \"%s\": asrd-load only targets loopback (127.0.0.0/8, ::1, localhost), "
            "written as an address or localhost", host);
    }
    if (strchr(host, ':')) snprintf(C.host, sizeof C.host, "[%s]:%u", host, port);
    else snprintf(C.host, sizeof C.host, "%s:%u", host, port);
}

/* The default audio: the repo's speech file, looked for relative to the
 * working directory and then to this executable (build/<dir>/asrd-load ->
 * ../../tests/data/generated), so the tool runs from anywhere in or outside
 * the tree. Without it, the same sentence tests/integration/run.sh speaks
 * is made with espeak-ng into a temporary WAV (any rate: load_audio
 * resamples). Dies when neither works. */
static char tmp_wav[64];

static void remove_tmp_wav(void) {
    if (tmp_wav[0]) unlink(tmp_wav);
}

static void find_default_wav(char *out, size_t n) {
    if (access(DEFAULT_WAV, R_OK) == 0) {
        snprintf(out, n, "%s", DEFAULT_WAV);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/../../%s", exe, DEFAULT_WAV);
            if (access(cand, R_OK) == 0 && strlen(cand) < n) {
                snprintf(out, n, "%s", cand);
                return;
            }
        }
    }
    snprintf(tmp_wav, sizeof tmp_wav, "/tmp/asrd-load-speech-XXXXXX.wav");
    int fd = mkstemps(tmp_wav, 4);
    if (fd < 0) die("no audio: %s is not there and no temporary file for espeak-ng (%s); pass --wav FILE or --tone",
                    DEFAULT_WAV, strerror(errno));
    close(fd);
    atexit(remove_tmp_wav);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("espeak-ng", "espeak-ng", "-v", "en", "-s", "160", "-w", tmp_wav, DEFAULT_TEXT, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        remove_tmp_wav();
        tmp_wav[0] = 0;
        die("no audio: %s is not there (tests/integration/run.sh --gen-only makes it) and espeak-ng %s; "
            "pass --wav FILE or --tone", DEFAULT_WAV,
            pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127 ? "is not installed" : "failed");
    }
    snprintf(out, n, "%s", tmp_wav);
    fprintf(stderr, "asrd-load: %s is not there; made the audio with espeak-ng\n", DEFAULT_WAV);
}

static void parse_args(int argc, char **argv) {
    struct loadstat_opts *o = &C.o;
    snprintf(o->url, sizeof o->url, "ws://127.0.0.1:8000");
    snprintf(o->scenario, sizeof o->scenario, "sustained");
    snprintf(o->mode, sizeof o->mode, "binary");
    o->sessions = 100;
    o->ramp_s = -1;
    o->duration_s = 10;
    o->chunk_ms = 100;
    o->slow_fraction = 0.1;
    o->capacity_start = 500;
    o->capacity_step = 500;
    o->capacity_max = 10000;
    o->p99_threshold_ms = 10;
    o->max_errors = 0;
    o->mock_latency_ms = 50;
    o->rest_concurrency = 8;
    o->churn_life_s = 3;
    o->flood_fraction = 0.1;
    o->flood_factor = 10;
    o->sample_s = 1;
    long slow_n = -1, flood_n = -1;
    int flood_given = 0;
    o->max_burst = 10;
    o->connect_timeout_s = 10;
    o->grace_s = 10;
    int wav_given = 0;
    C.slow_rcvbuf = SLOW_RCVBUF;
    enum { O_URL = 256, O_SC, O_SESS, O_RAMP, O_DUR, O_CHUNK, O_MODE, O_WAV, O_TONE, O_JSON, O_SVG, O_SLOW,
           O_CSTART, O_CSTEP, O_CMAX, O_P99, O_MOCK, O_RESTC, O_CHURN, O_BURST, O_CTO, O_GRACE, O_KEY,
           O_QUIET, O_HELP, O_RCVBUF, O_MAXERR, O_RESTN, O_SLOWN, O_FLOODF, O_FLOODN, O_FLOODX, O_CRATE,
           O_SAMPLE };
    static const struct option lo[] = {
        {"url", 1, 0, O_URL}, {"scenario", 1, 0, O_SC}, {"sessions", 1, 0, O_SESS}, {"ramp", 1, 0, O_RAMP},
        {"duration", 1, 0, O_DUR}, {"chunk-ms", 1, 0, O_CHUNK}, {"mode", 1, 0, O_MODE}, {"wav", 1, 0, O_WAV},
        {"tone", 0, 0, O_TONE}, {"json", 1, 0, O_JSON}, {"svg", 1, 0, O_SVG}, {"slow-fraction", 1, 0, O_SLOW},
        {"capacity-start", 1, 0, O_CSTART}, {"capacity-step", 1, 0, O_CSTEP}, {"capacity-max", 1, 0, O_CMAX},
        {"p99-threshold-ms", 1, 0, O_P99}, {"max-errors", 1, 0, O_MAXERR}, {"mock-latency-ms", 1, 0, O_MOCK},
        {"rest-concurrency", 1, 0, O_RESTC}, {"requests", 1, 0, O_RESTN}, {"churn-life", 1, 0, O_CHURN}, {"max-burst", 1, 0, O_BURST},
        {"connect-timeout", 1, 0, O_CTO}, {"grace", 1, 0, O_GRACE}, {"api-key", 1, 0, O_KEY},
        {"slow-rcvbuf", 1, 0, O_RCVBUF}, {"quiet", 0, 0, O_QUIET}, {"help", 0, 0, O_HELP},
        {"slow-sessions", 1, 0, O_SLOWN}, {"flood-fraction", 1, 0, O_FLOODF}, {"flood-sessions", 1, 0, O_FLOODN},
        {"flood-factor", 1, 0, O_FLOODX}, {"churn-rate", 1, 0, O_CRATE}, {"metrics-interval", 1, 0, O_SAMPLE},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_URL:
            if (strlen(optarg) >= sizeof o->url) die("--url: too long");
            snprintf(o->url, sizeof o->url, "%s", optarg);
            break;
        case O_SC: {
            size_t i;
            for (i = 0; i < sizeof scenario_names / sizeof scenario_names[0]; i++)
                if (strcmp(optarg, scenario_names[i]) == 0) break;
            if (i == sizeof scenario_names / sizeof scenario_names[0])
                die("--scenario: \"%s\" is not one of " SCENARIO_LIST, optarg);
            snprintf(o->scenario, sizeof o->scenario, "%s", optarg);
            break;
        }
        case O_SESS: o->sessions = opt_uint("sessions", optarg, 1, 100000); break;
        case O_RAMP: o->ramp_s = opt_num("ramp", optarg, 0, 3600); break;
        case O_DUR: o->duration_s = opt_num("duration", optarg, 0.1, 86400); break;
        case O_CHUNK: o->chunk_ms = opt_uint("chunk-ms", optarg, 10, 1000); break;
        case O_MODE:
            if (strcmp(optarg, "binary") != 0 && strcmp(optarg, "json") != 0) die("--mode: binary or json");
            snprintf(o->mode, sizeof o->mode, "%s", optarg);
            break;
        case O_WAV:
            if (strlen(optarg) >= sizeof o->wav) die("--wav: path too long");
            snprintf(o->wav, sizeof o->wav, "%s", optarg);
            wav_given = 1;
            break;
        case O_TONE: o->tone = 1; break;
        case O_JSON: snprintf(C.json_out, sizeof C.json_out, "%s", optarg); break;
        case O_SVG: snprintf(C.svg_out, sizeof C.svg_out, "%s", optarg); break;
        case O_SLOW: o->slow_fraction = opt_num("slow-fraction", optarg, 0, 1); break;
        case O_CSTART: o->capacity_start = opt_uint("capacity-start", optarg, 1, 100000); break;
        case O_CSTEP: o->capacity_step = opt_uint("capacity-step", optarg, 1, 100000); break;
        case O_CMAX: o->capacity_max = opt_uint("capacity-max", optarg, 1, 100000); break;
        case O_P99: o->p99_threshold_ms = opt_num("p99-threshold-ms", optarg, 0, 1e6); break;
        case O_MAXERR: o->max_errors = opt_uint("max-errors", optarg, 0, 1000000000); break;
        case O_MOCK: o->mock_latency_ms = opt_num("mock-latency-ms", optarg, 0, 60000); break;
        case O_RESTC: o->rest_concurrency = opt_uint("rest-concurrency", optarg, 1, 10000); break;
        case O_RESTN: o->rest_requests = opt_uint("requests", optarg, 0, 1000000000); break;
        case O_CHURN: o->churn_life_s = opt_num("churn-life", optarg, 0.2, 3600); break;
        case O_BURST: o->max_burst = opt_uint("max-burst", optarg, 1, 1000); break;
        case O_CTO: o->connect_timeout_s = opt_num("connect-timeout", optarg, 0.1, 600); break;
        case O_GRACE: o->grace_s = opt_num("grace", optarg, 0.5, 30); break;
        case O_KEY: snprintf(C.api_key, sizeof C.api_key, "%s", optarg); break;
        case O_QUIET: C.quiet = 1; break;
        case O_RCVBUF: C.slow_rcvbuf = opt_uint("slow-rcvbuf", optarg, 0, 1u << 24); break;
        case O_SLOWN: slow_n = opt_uint("slow-sessions", optarg, 0, 100000); break;
        case O_FLOODF: o->flood_fraction = opt_num("flood-fraction", optarg, 0, 1); flood_given = 1; break;
        case O_FLOODN: flood_n = opt_uint("flood-sessions", optarg, 0, 100000); flood_given = 1; break;
        case O_FLOODX: o->flood_factor = opt_num("flood-factor", optarg, 1, 1000); flood_given = 1; break;
        case O_CRATE: o->churn_rate = opt_num("churn-rate", optarg, 0, 100000); break;
        case O_SAMPLE: o->sample_s = opt_num("metrics-interval", optarg, 0, 3600); break;
        case 'h': case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) die("unexpected argument \"%s\" (see --help)", argv[optind]);
    for (size_t i = 0; i < sizeof scenario_names / sizeof scenario_names[0]; i++)
        if (strcmp(o->scenario, scenario_names[i]) == 0) C.sc = (enum scenario)i;
    if (o->ramp_s < 0) o->ramp_s = C.sc == SC_RAMP ? 10 : 0;
    if (C.sc == SC_RAMP && o->ramp_s <= 0) die("--scenario ramp needs --ramp > 0");
    if (C.sc == SC_CAPACITY && o->capacity_start > o->capacity_max) die("--capacity-start is above --capacity-max");
    if (o->sample_s > 0 && o->sample_s < 0.1) die("--metrics-interval: at least 0.1 s (or 0 for none)");
    /* Roles: counts of the --sessions slots, given or from the fraction. */
    if (slow_n > (long)o->sessions) die("--slow-sessions %ld is above --sessions %u", slow_n, o->sessions);
    if (flood_n > (long)o->sessions) die("--flood-sessions %ld is above --sessions %u", flood_n, o->sessions);
    if (flood_given && C.sc != SC_FLOOD) die("--flood-* options need --scenario flood");
    if (slow_n >= 0 && C.sc != SC_SLOW) die("--slow-sessions needs --scenario slow-readers");
    if (o->churn_rate > 0 && C.sc != SC_CHURN) die("--churn-rate needs --scenario churn");
    if (C.sc == SC_SLOW) {
        o->slow_count = slow_n >= 0 ? (unsigned)slow_n : (unsigned)llround(o->slow_fraction * o->sessions);
        o->slow_fraction = (double)o->slow_count / o->sessions;
    }
    if (C.sc == SC_FLOOD) {
        o->flood_count = flood_n >= 0 ? (unsigned)flood_n : (unsigned)llround(o->flood_fraction * o->sessions);
        o->flood_fraction = (double)o->flood_count / o->sessions;
        if ((double)o->chunk_ms / o->flood_factor < 1.0)
            die("--flood-factor %g with --chunk-ms %u: a chunk every %.2f ms, at least 1 ms is needed", o->flood_factor,
                o->chunk_ms, (double)o->chunk_ms / o->flood_factor);
    }
    C.json_mode = strcmp(o->mode, "json") == 0;
    if (o->tone && wav_given) die("--tone and --wav exclude each other");
    if (!wav_given && !o->tone) find_default_wav(o->wav, sizeof o->wav);
    parse_url(o->url);
}

/* ---- audio ------------------------------------------------------------- */

/* A voiced synthetic signal (a harmonic tone with a wandering pitch and
 * syllable-rate modulation) that VAD calls speech: 1.6 s on, 0.4 s off,
 * repeated for 10 s, so the server also sees utterances end. */
static void synth_tone(struct audio_pcm *pcm) {
    pcm->rate = SAMPLE_RATE;
    pcm->n = (size_t)SAMPLE_RATE * 10;
    pcm->samples = xcalloc(pcm->n, sizeof(int16_t));
    for (size_t i = 0; i < pcm->n; i++) {
        double t = (double)i / SAMPLE_RATE;
        if (fmod(t, 2.0) >= 1.6) continue;
        double f0 = 120.0 + 20.0 * sin(2 * M_PI * 1.5 * t), s = 0;
        for (int h = 1; h <= 30 && f0 * h < 3800; h++) {
            double g = 1.0 / h, f = f0 * h;
            if (fabs(f - 700) < 200 || fabs(f - 1200) < 250) g *= 3;
            s += g * sin(2 * M_PI * f * t + h);
        }
        s *= 0.6 + 0.4 * sin(2 * M_PI * 4 * t);
        pcm->samples[i] = (int16_t)lrint(s * 3000);
    }
}

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v) { put_le16(p, (uint16_t)v); put_le16(p + 2, (uint16_t)(v >> 16)); }

static void load_audio(void) {
    struct audio_pcm pcm = {0};
    if (C.o.tone) {
        synth_tone(&pcm);
        /* A WAV of the tone for the rest scenario. */
        size_t data = pcm.n * 2;
        AU.file_len = 44 + data;
        AU.file = xmalloc(AU.file_len);
        memcpy(AU.file, "RIFF", 4);
        put_le32(AU.file + 4, (uint32_t)(36 + data));
        memcpy(AU.file + 8, "WAVEfmt ", 8);
        put_le32(AU.file + 16, 16);
        put_le16(AU.file + 20, 1);
        put_le16(AU.file + 22, 1);
        put_le32(AU.file + 24, SAMPLE_RATE);
        put_le32(AU.file + 28, SAMPLE_RATE * 2);
        put_le16(AU.file + 32, 2);
        put_le16(AU.file + 34, 16);
        memcpy(AU.file + 36, "data", 4);
        put_le32(AU.file + 40, (uint32_t)data);
        for (size_t i = 0; i < pcm.n; i++) put_le16(AU.file + 44 + 2 * i, (uint16_t)pcm.samples[i]);
        AU.file_is_wav = 1;
    } else {
        FILE *f = fopen(C.o.wav, "rb");
        if (!f) die("--wav %s: %s", C.o.wav, strerror(errno));
        struct buf b;
        buf_init(&b, 256u << 20);
        char tmp[65536];
        size_t n;
        while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
            if (buf_append(&b, tmp, n) != 0) die("--wav %s: larger than 256 MiB", C.o.wav);
        int err = ferror(f);
        fclose(f);
        if (err) die("--wav %s: read error", C.o.wav);
        char msg[256];
        int rc = audio_decode((const uint8_t *)b.data, b.len, NULL, SAMPLE_RATE, (size_t)SAMPLE_RATE * 3600, &pcm,
                              msg, sizeof msg);
        if (rc != 0) die("--wav %s: %s", C.o.wav, msg);
        if (pcm.n == 0) die("--wav %s: no samples", C.o.wav);
        AU.file = (uint8_t *)b.data;   /* adopted */
        AU.file_len = b.len;
        AU.file_is_wav = b.len >= 12 && memcmp(b.data, "RIFF", 4) == 0 && memcmp(b.data + 8, "WAVE", 4) == 0;
    }
    /* Loop the audio up to a whole number of chunks, so each chunk is a
     * contiguous slice and slot k always maps to the same audio. */
    size_t cs = (size_t)SAMPLE_RATE * C.o.chunk_ms / 1000;
    AU.chunk_bytes = cs * 2;
    AU.nchunks = (pcm.n + cs - 1) / cs;
    AU.pcm = xmalloc(AU.nchunks * AU.chunk_bytes);
    for (size_t i = 0; i < AU.nchunks * cs; i++) put_le16(AU.pcm + 2 * i, (uint16_t)pcm.samples[i % pcm.n]);
    audio_pcm_cleanup(&pcm);
    if (C.json_mode) {
        size_t bl = sodium_base64_ENCODED_LEN(AU.chunk_bytes, sodium_base64_VARIANT_ORIGINAL);
        AU.b64 = xcalloc(AU.nchunks, sizeof *AU.b64);
        for (size_t i = 0; i < AU.nchunks; i++) {
            AU.b64[i] = xmalloc(bl);
            sodium_bin2base64(AU.b64[i], bl, AU.pcm + i * AU.chunk_bytes, AU.chunk_bytes,
                              sodium_base64_VARIANT_ORIGINAL);
        }
    }
}

/* ---- blocking GET /v1/metrics ------------------------------------------ */

/* Used only between phases, when no session is running, so blocking the
 * loop for at most 3 s does not disturb any measurement. */
struct mfetch {
    struct buf body;
    int complete;
};

static int mf_on_body(http_parser *p, const char *at, size_t len) {
    struct mfetch *m = p->data;
    return buf_append(&m->body, at, len) == 0 ? 0 : -1;
}
static int mf_on_complete(http_parser *p) {
    ((struct mfetch *)p->data)->complete = 1;
    return 0;
}

static void fetch_metrics(struct loadstat_server *out) {
    memset(out, 0, sizeof *out);
    uint64_t deadline = now_ns() + 3 * NS;
    int fd = socket(C.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    struct mfetch m = {0};
    buf_init(&m.body, 8u << 20);
    socklen_t al = C.addr.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    char req[600];
    int rl = snprintf(req, sizeof req, "GET /v1/metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", C.host);
    size_t sent = 0;
    http_parser hp;
    http_parser_settings hs = {0};
    hs.on_body = mf_on_body;
    hs.on_message_complete = mf_on_complete;
    http_parser_init(&hp, HTTP_RESPONSE);
    hp.data = &m;
    if (connect(fd, (struct sockaddr *)&C.addr, al) != 0 && errno != EINPROGRESS) goto done;
    while (!m.complete) {
        uint64_t now = now_ns();
        if (now >= deadline) goto done;
        struct pollfd pfd = {fd, (short)(sent < (size_t)rl ? POLLOUT : POLLIN), 0};
        int pr = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) goto done;
        if (sent < (size_t)rl) {
            ssize_t w = send(fd, req + sent, (size_t)rl - sent, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) goto done;
            if (w > 0) sent += (size_t)w;
            continue;
        }
        char tmp[16384];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EAGAIN) continue;
        if (r <= 0) {
            http_parser_execute(&hp, &hs, NULL, 0);
            break;
        }
        if (http_parser_execute(&hp, &hs, tmp, (size_t)r) != (size_t)r) goto done;
    }
    if (m.complete && hp.status_code == 200) loadstat_metrics_parse(m.body.data, m.body.len, out);
done:
    close(fd);
    buf_cleanup(&m.body);
}

/* The snapshot after a phase, once the server has settled: its counters of
 * a session are complete only when that session has ended there too, which
 * can be a little after our side saw the close. So the snapshot is retaken
 * (every 100 ms, for at most 3 s) until sessions.active and
 * connections.active are back to their values before the phase. A master's
 * workers publish their counters once a second (the answering worker's are
 * live), so with more than one worker the first read waits 1.1 s. */
static void fetch_metrics_settled(const struct loadstat_server *before, struct loadstat_server *out) {
    uint64_t deadline = now_ns() + 3 * NS;
    if (before->workers > 1) {
        struct timespec ts = {1, 100000000};
        nanosleep(&ts, NULL);
    }
    for (;;) {
        fetch_metrics(out);
        if (!out->ok || !before->ok || now_ns() >= deadline) return;
        if (out->sessions_active <= before->sessions_active && out->connections_active <= before->connections_active)
            return;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
}

/* ---- /v1/metrics samples during a phase --------------------------------- */

/* Every --metrics-interval seconds of a phase, one GET /v1/metrics on the
 * loop (struct sampler): the server's RSS and open fds over time (the
 * timeline) and their peaks (loadstat_run_peak). A sample the server has
 * not answered after SAMPLE_TIMEOUT_NS is dropped, and none starts while
 * one is in flight, so a stalled server costs one idle socket. */
static void sample_close_cb(uv_handle_t *h) {
    struct sampler *m = h->data;
    buf_cleanup(&m->body);
    free(m);
}

static void sample_end(struct sampler *m) {
    if (m->closing) return;
    m->closing = 1;
    if (A.sample == m) A.sample = NULL;
    uv_close((uv_handle_t *)&m->tcp, sample_close_cb);
}

static int sample_on_body(http_parser *p, const char *at, size_t len) {
    struct sampler *m = p->data;
    return buf_append(&m->body, at, len) == 0 ? 0 : -1;
}

static int sample_on_complete(http_parser *p) {
    ((struct sampler *)p->data)->complete = 1;
    return 0;
}

static const http_parser_settings sample_settings = {.on_body = sample_on_body,
                                                     .on_message_complete = sample_on_complete};

static void sample_done(struct sampler *m) {
    struct loadstat_server snap;
    if (m->complete && m->hp.status_code == 200 &&
        loadstat_metrics_parse(m->body.data, m->body.len, &snap) == 0) {
        A.last_sample = snap;
        A.last_sample_ns = now_ns();
        A.ph.run.server_samples++;
        loadstat_run_peak(&A.ph.run, &snap);
    }
    sample_end(m);
}

static void sample_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct sampler *m = st->data;
    if (m->closing) return;
    if (nread < 0) {
        http_parser_execute(&m->hp, &sample_settings, NULL, 0);
        sample_done(m);
        return;
    }
    if (nread == 0) return;
    if (http_parser_execute(&m->hp, &sample_settings, b->base, (size_t)nread) != (size_t)nread || m->complete)
        sample_done(m);
}

static void sample_on_write(uv_write_t *req, int status) {
    struct sampler *m = req->data;
    if (status < 0) sample_end(m);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);

static void sample_on_connect(uv_connect_t *req, int status) {
    struct sampler *m = req->data;
    if (m->closing) return;
    uv_buf_t b = uv_buf_init(m->req, (unsigned)m->req_len);
    if (status < 0 || uv_write(&m->wreq, (uv_stream_t *)&m->tcp, &b, 1, sample_on_write) != 0 ||
        uv_read_start((uv_stream_t *)&m->tcp, on_alloc, sample_on_read) != 0)
        sample_end(m);
}

static void sample_timer_cb(uv_timer_t *t) {
    uint64_t now = now_ns();
    if (A.sample) {
        if (now - A.sample->started < SAMPLE_TIMEOUT_NS) return;
        sample_end(A.sample);
    }
    struct sampler *m = xcalloc(1, sizeof *m);
    if (uv_tcp_init_ex(A.loop, &m->tcp, C.addr.ss_family) != 0) {
        free(m);
        return;
    }
    m->tcp.data = m->creq.data = m->wreq.data = m;
    buf_init(&m->body, 8u << 20);
    http_parser_init(&m->hp, HTTP_RESPONSE);
    m->hp.data = m;
    m->started = now;
    m->req_len = (size_t)snprintf(m->req, sizeof m->req,
                                  "GET /v1/metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s\r\n", C.host,
                                  C.api_key[0] ? "Authorization: Bearer " : "", C.api_key, C.api_key[0] ? "\r\n" : "");
    A.sample = m;
    if (uv_tcp_connect(&m->creq, &m->tcp, (const struct sockaddr *)&C.addr, sample_on_connect) != 0) sample_end(m);
}

static void sampling_start(void) {
    if (C.o.sample_s <= 0) return;
    uint64_t ms = (uint64_t)(C.o.sample_s * 1000);
    uv_timer_start(&A.sample_timer, sample_timer_cb, ms, ms);
}

static void sampling_stop(void) {
    uv_timer_stop(&A.sample_timer);
    if (A.sample) sample_end(A.sample);
}

/* ---- scheduler timer --------------------------------------------------- */

static void sess_service(struct sess *s, uint64_t now);

static void sched_cb(uv_timer_t *t) {
    A.sched_due = UINT64_MAX;
    uint64_t now = now_ns();
    struct loadstat_heap_node *top;
    while ((top = loadstat_heap_peek(&A.heap)) && top->key <= now) {
        loadstat_heap_pop(&A.heap);
        struct sess *s = (struct sess *)((char *)top - offsetof(struct sess, hn));
        sess_service(s, now);
    }
    sched_arm();
}

/* Arms the one scheduler timer for the earliest deadline in the heap.
 * libuv timers count whole milliseconds from the loop's cached time, so the
 * delay is rounded up: a chunk leaves at most ~1 ms after its deadline, and
 * latency is measured from the actual send. */
static void sched_arm(void) {
    struct loadstat_heap_node *top = loadstat_heap_peek(&A.heap);
    if (!top) {
        uv_timer_stop(&A.sched_timer);
        A.sched_due = UINT64_MAX;
        return;
    }
    if (A.sched_due != UINT64_MAX && A.sched_due <= top->key) return;
    uint64_t now = now_ns();
    uint64_t ms = top->key > now ? (top->key - now + 999999) / 1000000 : 0;
    uv_update_time(A.loop);
    uv_timer_start(&A.sched_timer, sched_cb, ms, 0);
    A.sched_due = top->key;
}

static void sched_put(struct sess *s, uint64_t key) {
    loadstat_heap_remove(&A.heap, &s->hn);
    s->hn.key = key;
    loadstat_heap_push(&A.heap, &s->hn);
    sched_arm();
}

/* ---- session I/O ------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    void      *owner;      /* struct sess or struct rest_client */
    int        rest;
    size_t     len;
    char       data[];
};

static void sess_lost(struct sess *s, int err);

static void on_sess_write(uv_write_t *req, int status) {
    struct wreq *w = (struct wreq *)req;
    struct sess *s = w->owner;
    s->wq_bytes -= w->len;
    free(w);
    if (s->st == ST_IDLE || s->st == ST_ENDED) return;
    if (status < 0) {
        sess_lost(s, status);
        return;
    }
    if (s->close_after_write && s->wq_bytes == 0) sess_end(s);
}

/* Writes p[0..n) to the session's socket: directly when nothing is queued
 * and the kernel takes it, else a copy goes on a uv_write. Returns 0 or a
 * libuv error (the connection is then lost). */
static int sess_write(struct sess *s, const void *p, size_t n) {
    if (s->closing) return UV_EPIPE;
    const char *d = p;
    if (n == 0) return 0;
    if (s->wq_bytes == 0) {
        uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
        int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (r == (int)n) return 0;
        if (r < 0 && r != UV_EAGAIN) return r;
        if (r > 0) {
            d += r;
            n -= (size_t)r;
        }
    }
    struct wreq *w = xmalloc(sizeof *w + n);
    w->owner = s;
    w->rest = 0;
    w->len = n;
    memcpy(w->data, d, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int r = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_sess_write);
    if (r != 0) {
        free(w);
        return r;
    }
    s->wq_bytes += n;
    if (s->wq_bytes > STALL_BYTES) s->stalled = 1;
    return 0;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user) {
    struct sess *s = user;
    if (s->rlen == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < s->rlen ? len : s->rlen;
    memcpy(buf, s->rbuf, n);
    s->rbuf += n;
    s->rlen -= n;
    return (ssize_t)n;
}

/* wslay hands over frames piecewise; they are gathered in A.out and
 * written once per pump (sess_pump). */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user) {
    if (buf_append(&A.out, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Masks come from a pool refilled by libsodium's randombytes, which keeps
 * one getrandom() per ~1000 frames instead of one per frame. */
static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user) {
    if (len > sizeof A.mask_pool) return -1;
    if (A.mask_pos + len > sizeof A.mask_pool) {
        randombytes_buf(A.mask_pool, sizeof A.mask_pool);
        A.mask_pos = 0;
    }
    memcpy(buf, A.mask_pool + A.mask_pos, len);
    A.mask_pos += len;
    return 0;
}

static void sess_on_text(struct sess *s, const uint8_t *msg, size_t len);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_sess_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user) {
    struct sess *s = user;
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        sess_on_text(s, arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        s->got_close = 1;
        s->close_code = arg->status_code ? arg->status_code : 1005;
    }
}

/* Sends what wslay has queued. Returns 0, or -1 when the connection was
 * lost (the session is then ended). */
static int sess_pump(struct sess *s) {
    if (!s->ctx) return 0;
    A.out.len = 0;
    int rc = wslay_event_send(s->ctx);
    if (A.out.len) {
        int w = sess_write(s, A.out.data, A.out.len);
        A.out.len = 0;
        if (w != 0) {
            sess_lost(s, w);
            return -1;
        }
    }
    if (rc != 0) {
        sess_lost(s, UV_EPROTO);
        return -1;
    }
    return 0;
}

/* After reading or sending: both close frames exchanged means done, once
 * our close reply has left. */
static void sess_check_closed(struct sess *s) {
    if (!s->ctx || s->st == ST_ENDED) return;
    if (s->st == ST_OPEN && s->got_close) {
        /* Closed before the `session` message: a limit found after the
         * upgrade (1013, docs/API.md) or a refusal. */
        char why[32];
        snprintf(why, sizeof why, "close_%u", s->close_code);
        sess_fail(s, why);
        return;
    }
    if (wslay_event_get_close_received(s->ctx) && !wslay_event_want_write(s->ctx)) {
        if (s->wq_bytes == 0) sess_end(s);
        else s->close_after_write = 1;
    }
}

static void sess_queue(struct sess *s, int opcode, const void *p, size_t n) {
    struct wslay_event_msg m = {.opcode = (uint8_t)opcode, .msg = p, .msg_length = n};
    if (wslay_event_queue_msg(s->ctx, &m) != 0) return;   /* closing: nothing more goes out */
    sess_pump(s);
}

static void sess_send_stop(struct sess *s) {
    static const char stop[] = "{\"type\":\"stop\"}";
    loadstat_heap_remove(&A.heap, &s->hn);
    s->st = ST_STOPPING;
    uint64_t now = now_ns();
    s->deadline = now + (uint64_t)(C.o.grace_s * 1e9);
    if (s->slow) {
        /* Read again, to see the final and the close code (1000, or 1008 if
         * the server gave up on us without our noticing). */
        uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_sess_read);
    }
    sess_queue(s, WSLAY_TEXT_FRAME, stop, sizeof stop - 1);
}

/* Sends the chunks due now (see loadstat_sched_due for the catch-up
 * policy) and re-queues the session for its next deadline or its stop. */
static void sess_service(struct sess *s, uint64_t now) {
    if (s->st != ST_STREAMING) return;
    if (now >= s->stop_at) {
        sess_send_stop(s);
        return;
    }
    uint64_t first, skipped;
    unsigned n = loadstat_sched_due(&s->sched, now, &first, &skipped);
    A.ph.run.chunks_skipped += skipped;
    for (unsigned i = 0; i < n && s->st == ST_STREAMING; i++) {
        uint64_t slot = first + i;
        size_t ci = (size_t)((slot + s->audio_off) % AU.nchunks);
        if (s->wq_bytes > MAX_WQ_BYTES) {
            /* The socket does not drain: sending more would only queue here. */
            A.ph.run.chunks_blocked++;
            continue;
        }
        uint64_t seq = ++s->seq;
        s->ring[seq % RING].seq = seq;
        s->ring[seq % RING].t_ns = now_ns();
        A.ph.run.chunks_sent++;
        if (s->slow) A.ph.run.slow_chunks++;
        else if (s->flood) A.ph.run.flood_chunks++;
        else A.ph.run.normal_chunks++;
        if (C.json_mode) {
            A.scratch.len = 0;
            buf_printf(&A.scratch, "{\"type\":\"audio_chunk\",\"data\":\"%s\",\"sequence\":%llu}", AU.b64[ci],
                       (unsigned long long)seq);
            sess_queue(s, WSLAY_TEXT_FRAME, A.scratch.data, A.scratch.len);
        } else {
            sess_queue(s, WSLAY_BINARY_FRAME, AU.pcm + ci * AU.chunk_bytes, AU.chunk_bytes);
        }
    }
    if (s->st != ST_STREAMING) return;
    uint64_t next = loadstat_sched_next(&s->sched);
    sched_put(s, next < s->stop_at ? next : s->stop_at);
}

/* An answer (partial, or error with a sequence) to chunk seq. */
static void sess_answer(struct sess *s, uint64_t seq, int partial) {
    struct loadstat_run *run = &A.ph.run;
    uint64_t t = now_ns();
    if (s->slow) {          /* slow readers read late on purpose: counted, not measured */
        run->slow_answers++;
        return;
    }
    if (s->answered && seq <= s->last_ans) run->out_of_order++;
    if (seq > s->last_ans) s->last_ans = seq;
    if (seq == 0 || seq > s->seq || s->ring[seq % RING].seq != seq || s->ring[seq % RING].t_ns == 0) {
        run->unmatched++;
        return;
    }
    uint64_t lat = (t - s->ring[seq % RING].t_ns) / 1000;
    s->ring[seq % RING].t_ns = 0;
    s->answered++;
    if (s->flood) {         /* flooders: counted apart, not measured */
        run->flood_answers++;
        if (partial) run->flood_partials++;
        return;
    }
    run->answers++;
    if (partial) run->partials++;
    uint64_t mock = (uint64_t)(C.o.mock_latency_ms * 1000);
    loadstat_hist_add(&A.ph.lat, lat);
    loadstat_hist_add(&A.ph.added, lat > mock ? lat - mock : 0);
    loadstat_hist_add(&A.interval, lat);
}

static void sess_on_text(struct sess *s, const uint8_t *msg, size_t len) {
    struct loadstat_msg m;
    struct loadstat_run *run = &A.ph.run;
    if (loadstat_msg_parse((const char *)msg, len, &m) != 0) {
        loadstat_counts_add(&run->errors, "UNPARSEABLE", 1);
        return;
    }
    switch (m.type) {
    case LOADSTAT_MSG_SESSION: {
        if (s->st != ST_OPEN) break;
        uint64_t now = now_ns(), period = (uint64_t)C.o.chunk_ms * 1000000ull;
        s->st = ST_STREAMING;
        s->counted_open = 1;
        s->deadline = 0;
        run->sessions_opened++;
        if (s->slow) {
            uv_read_stop((uv_stream_t *)&s->tcp);
            run->slow_sessions++;
        } else if (s->flood) {
            /* The same chunks, flood_factor times as often. */
            period = (uint64_t)((double)period / C.o.flood_factor);
            run->flood_sessions++;
        } else {
            run->normal_sessions++;
        }
        /* A random phase within one period spreads the sessions' sends
         * evenly, as independent clients would. */
        loadstat_sched_init(&s->sched, now + (uint64_t)rand_below((unsigned)(period / 1000)) * 1000, period,
                            C.o.max_burst);
        /* ... and a random starting point in the audio: independent speakers
         * do not pause and talk in step (with a file of turns and pauses,
         * sessions that all start at its beginning would). */
        s->audio_off = rand_below((unsigned)AU.nchunks);
        if (C.sc == SC_CHURN) {
            double life = C.o.churn_life_s * (0.5 + (double)rand_below(1000) / 1000.0);
            uint64_t end = now + (uint64_t)(life * 1e9);
            s->stop_at = end < A.ph.t_stop ? end : A.ph.t_stop;
        } else {
            /* Every session streams ramp + duration seconds from its own
             * start: sessions stop as they started, spread over the ramp,
             * not all in the same millisecond (a herd of stops, finals and
             * closes no real set of clients makes), and all of them stream
             * together for duration seconds. */
            uint64_t end = now + (uint64_t)((C.o.ramp_s + C.o.duration_s) * 1e9);
            s->stop_at = end < A.ph.t_stop ? end : A.ph.t_stop;
        }
        uint64_t next = loadstat_sched_next(&s->sched);
        sched_put(s, next < s->stop_at ? next : s->stop_at);
        break;
    }
    case LOADSTAT_MSG_PARTIAL:
        run->partial_msgs++;
        if (m.has_sequence) sess_answer(s, m.sequence, 1);
        break;
    case LOADSTAT_MSG_ERROR:
        loadstat_counts_add(&run->errors, m.code[0] ? m.code : "NO_CODE", 1);
        if (s->flood) loadstat_counts_add(&run->flood_errors, m.code[0] ? m.code : "NO_CODE", 1);
        else if (!s->slow) run->normal_errors++;
        if (m.has_sequence) sess_answer(s, m.sequence, 0);
        break;
    case LOADSTAT_MSG_FINAL:
        run->finals++;
        s->got_final = 1;
        break;
    default:
        break;
    }
}

/* ---- upgrade ----------------------------------------------------------- */

static int hs_on_field(http_parser *p, const char *at, size_t len) {
    struct sess *s = p->data;
    if (s->hvalue_last) s->hname_len = 0;
    s->hvalue_last = 0;
    size_t room = sizeof s->hname - 1 - s->hname_len;
    size_t n = len < room ? len : room;
    memcpy(s->hname + s->hname_len, at, n);
    s->hname_len += n;
    return 0;
}

static int hs_on_value(http_parser *p, const char *at, size_t len) {
    struct sess *s = p->data;
    s->hvalue_last = 1;
    if (util_ieq(s->hname, s->hname_len, "sec-websocket-accept")) {
        size_t room = sizeof s->accept - 1 - s->accept_len;
        size_t n = len < room ? len : room;
        memcpy(s->accept + s->accept_len, at, n);
        s->accept_len += n;
    }
    return 0;
}

static int hs_on_headers_complete(http_parser *p) {
    ((struct sess *)p->data)->hdr_done = 1;
    return 0;
}

static const http_parser_settings hs_settings = {
    .on_header_field = hs_on_field,
    .on_header_value = hs_on_value,
    .on_headers_complete = hs_on_headers_complete,
};

static void ws_feed(struct sess *s, const uint8_t *p, size_t n) {
    s->rbuf = p;
    s->rlen = n;
    int rc = wslay_event_recv(s->ctx);
    s->rlen = 0;
    if (s->st == ST_ENDED) return;
    if (rc != 0) {
        sess_lost(s, UV_EPROTO);
        return;
    }
    if (sess_pump(s) != 0) return;
    sess_check_closed(s);
}

/* Upgrade response bytes. On the 101 with the right accept key the
 * WebSocket starts, and any bytes after the head are its first frames. */
static void hs_feed(struct sess *s, const char *p, size_t n) {
    size_t used = http_parser_execute(&s->hp, &hs_settings, p, n);
    if (s->hp.upgrade) {
        char why[32];
        if (s->hp.status_code != 101) {
            snprintf(why, sizeof why, "http_%u", s->hp.status_code);
            sess_fail(s, why);
            return;
        }
        if (s->accept_len != strlen(s->expect) || memcmp(s->accept, s->expect, s->accept_len) != 0) {
            sess_fail(s, "bad_accept");
            return;
        }
        static const struct wslay_event_callbacks cbs = {
            .recv_callback = ws_recv_cb, .send_callback = ws_send_cb,
            .genmask_callback = ws_genmask_cb, .on_msg_recv_callback = ws_msg_cb,
        };
        if (wslay_event_context_client_init(&s->ctx, &cbs, s) != 0) {
            s->ctx = NULL;
            sess_fail(s, "ENOMEM");
            return;
        }
        wslay_event_config_set_max_recv_msg_length(s->ctx, 1u << 20);
        s->st = ST_OPEN;
        if (used < n) ws_feed(s, (const uint8_t *)p + used, n - used);
        return;
    }
    if (HTTP_PARSER_ERRNO(&s->hp) != HPE_OK) {
        sess_fail(s, "bad_handshake");
    } else if (s->hdr_done) {
        char why[32];
        snprintf(why, sizeof why, "http_%u", s->hp.status_code);
        sess_fail(s, s->hp.status_code == 101 ? "bad_handshake" : why);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    b->base = rbuf_shared;
    b->len = sizeof rbuf_shared;
}

static void on_sess_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct sess *s = st->data;
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (nread < 0) {
        sess_lost(s, (int)nread);
        return;
    }
    if (nread == 0) return;
    if (s->st == ST_HANDSHAKE) hs_feed(s, b->base, (size_t)nread);
    else ws_feed(s, (const uint8_t *)b->base, (size_t)nread);
}

static void on_sess_connect(uv_connect_t *req, int status) {
    struct sess *s = req->data;
    if (s->st != ST_CONNECTING) return;
    if (status < 0) {
        sess_fail(s, uv_err_name(status));
        return;
    }
    uint8_t key[16];
    char key64[32];
    randombytes_buf(key, sizeof key);
    sodium_bin2base64(key64, sizeof key64, key, sizeof key, sodium_base64_VARIANT_ORIGINAL);
    struct sha1_ctx sha;
    uint8_t dig[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, strlen(key64), (const uint8_t *)key64);
    sha1_update(&sha, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof dig, dig);
    sodium_bin2base64(s->expect, sizeof s->expect, dig, sizeof dig, sodium_base64_VARIANT_ORIGINAL);
    char req_text[1400];
    int n = snprintf(req_text, sizeof req_text,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: asrd-load\r\n%s%s%s\r\n",
                     C.path, C.host, key64, C.api_key[0] ? "Authorization: Bearer " : "", C.api_key,
                     C.api_key[0] ? "\r\n" : "");
    http_parser_init(&s->hp, HTTP_RESPONSE);
    s->hp.data = s;
    s->st = ST_HANDSHAKE;
    int r = sess_write(s, req_text, (size_t)n);
    if (r == 0) r = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_sess_read);
    if (r != 0) sess_fail(s, uv_err_name(r));
}

/* ---- session lifecycle ------------------------------------------------- */

static void phase_timer_cb(uv_timer_t *t);

static void on_sess_close(uv_handle_t *h) {
    struct sess *s = h->data;
    s->in_use = 0;
    s->closing = 0;
    s->st = ST_IDLE;
    A.freelist[A.nfree++] = s->idx;
    A.ph.open--;
    /* Churn replaces it: at once, or after 100 ms when it never opened (a
     * refusing server is not hammered in a tight connect loop). */
    if (C.sc == SC_CHURN) spawn_kick(s->failed ? 100 : 0);
    /* Everything started has ended early (refused, closed by the server):
     * nothing is left to measure, so the phase stops now. */
    if (!A.ph.stopping && C.sc != SC_CHURN && A.ph.open == 0 && A.ph.started >= A.ph.target)
        uv_timer_start(&A.phase_timer, phase_timer_cb, 0, 0);
    phase_maybe_finish();
}

/* Accounts the session once and closes its handle. */
static void sess_end(struct sess *s) {
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    struct loadstat_run *run = &A.ph.run;
    if (s->counted_open) {
        if (s->flood) run->flood_missing += s->seq - s->answered;
        else if (!s->slow) run->missing += s->seq - s->answered;
        char code[16];
        if (s->got_close) snprintf(code, sizeof code, "%u", s->close_code);
        else snprintf(code, sizeof code, "%s", s->st == ST_STOPPING && !s->lost_streaming && s->deadline &&
                                                   now_ns() >= s->deadline ? "timeout" : "none");
        loadstat_counts_add(&run->close_codes, code, 1);
        if (s->slow) loadstat_counts_add(&run->slow_close_codes, code, 1);
        if (s->flood) loadstat_counts_add(&run->flood_close_codes, code, 1);
        int completed = s->got_final && s->got_close && s->close_code == 1000;
        if (completed) run->sessions_completed++;
        if (completed && !s->slow && !s->flood) run->normal_completed++;
        if (s->slow && (s->lost_streaming || (s->got_close && s->close_code == 1008))) run->slow_closed++;
        /* Ended before our `stop`: the server closed it (1008) or reset it. */
        if (s->flood && s->st == ST_STREAMING) run->flood_closed++;
        if (s->stalled) run->sessions_stalled++;
    }
    loadstat_heap_remove(&A.heap, &s->hn);
    s->st = ST_ENDED;
    if (s->ctx) {
        wslay_event_context_free(s->ctx);
        s->ctx = NULL;
    }
    if (!s->closing) {
        s->closing = 1;
        uv_close((uv_handle_t *)&s->tcp, on_sess_close);
    }
}

/* A connect, upgrade or `session` that did not happen. why NULL: cancelled
 * by the end of the phase, not counted. */
static void sess_fail(struct sess *s, const char *why) {
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (why) {
        s->failed = 1;
        A.ph.run.connect_failures++;
        loadstat_counts_add(&A.ph.run.connect_errors, why, 1);
    }
    s->counted_open = 0;
    sess_end(s);
}

/* The TCP connection ended (EOF, reset, write error) or broke the protocol. */
static void sess_lost(struct sess *s, int err) {
    if (s->st == ST_ENDED || s->st == ST_IDLE) return;
    if (s->st < ST_STREAMING) {
        char why[32];
        snprintf(why, sizeof why, "%s_before_session", err == UV_EOF ? "EOF" : uv_err_name(err));
        sess_fail(s, why);
        return;
    }
    if (s->st == ST_STREAMING) s->lost_streaming = 1;
    sess_end(s);
}

static void sess_start(void) {
    if (!A.nfree) return;
    unsigned idx = A.freelist[--A.nfree];
    struct sess *s = &A.sess[idx];
    memset(s, 0, sizeof *s);
    s->idx = idx;
    enum loadstat_role role = loadstat_role(idx, A.nsess, C.o.slow_count, C.o.flood_count);
    s->slow = role == LOADSTAT_ROLE_SLOW;
    s->flood = role == LOADSTAT_ROLE_FLOOD;
    A.ph.started++;
    int r = uv_tcp_init_ex(A.loop, &s->tcp, C.addr.ss_family);
    if (r != 0) {
        A.freelist[A.nfree++] = idx;
        A.ph.run.connect_failures++;
        loadstat_counts_add(&A.ph.run.connect_errors, uv_err_name(r), 1);
        return;
    }
    s->tcp.data = s;
    s->creq.data = s;
    s->in_use = 1;
    s->st = ST_CONNECTING;
    A.ph.open++;
    s->deadline = now_ns() + (uint64_t)(C.o.connect_timeout_s * 1e9);
    uv_tcp_nodelay(&s->tcp, 1);
    if (s->slow) {
        uv_os_fd_t fd;
        int sz;
        sz = (int)C.slow_rcvbuf;
        if (sz > 0 && uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    r = uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&C.addr, on_sess_connect);
    if (r != 0) sess_fail(s, uv_err_name(r));
}

/* ---- rest -------------------------------------------------------------- */

static void rest_start(struct rest_client *rc);

/* --requests reached: no request starts any more. */
static int rest_quota_done(void) { return C.o.rest_requests && A.ph.rest_sent >= C.o.rest_requests; }

static void on_rest_close(uv_handle_t *h) {
    struct rest_client *rc = h->data;
    rc->in_use = rc->closing = 0;
    A.ph.open--;
    /* A failed connection is retried by the spawner after 100 ms, so a
     * refusing server is not hammered in a tight connect loop. */
    if (rest_quota_done()) {
        /* The last requests are answered: the phase ends now. */
        if (!A.ph.stopping && A.ph.open == 0) uv_timer_start(&A.phase_timer, phase_timer_cb, 0, 0);
    } else if (rc->failed) {
        rc->retry_at = now_ns() + 100000000ull;
        spawn_kick(101);
    } else if (!A.ph.stopping) {
        rest_start(rc);
    }
    phase_maybe_finish();
}

static void rest_close(struct rest_client *rc) {
    if (!rc->in_use || rc->closing) return;
    rc->closing = 1;
    uv_close((uv_handle_t *)&rc->tcp, on_rest_close);
}

static void rest_failed(struct rest_client *rc, const char *why) {
    A.ph.run.request_failures++;
    rc->failed = 1;
    loadstat_counts_add(&A.ph.run.request_errors, why, 1);
    rc->busy = 0;
    rest_close(rc);
}

static void on_rest_write(uv_write_t *req, int status) {
    struct wreq *w = (struct wreq *)req;
    struct rest_client *rc = w->owner;
    rc->wq--;
    free(w);
    if (status < 0 && rc->busy && !rc->closing) rest_failed(rc, uv_err_name(status));
}

static void rest_send(struct rest_client *rc) {
    if (rest_quota_done()) {
        rc->busy = 0;
        rest_close(rc);
        return;
    }
    A.ph.rest_sent++;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST /v1/transcribe HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "User-Agent: asrd-load\r\n%s%s%s\r\n",
                     C.host, AU.file_is_wav ? "audio/wav" : "application/octet-stream", AU.file_len,
                     C.api_key[0] ? "Authorization: Bearer " : "", C.api_key, C.api_key[0] ? "\r\n" : "");
    struct wreq *w = xmalloc(sizeof *w + (size_t)n);
    w->owner = rc;
    w->rest = 1;
    w->len = (size_t)n;
    memcpy(w->data, head, (size_t)n);
    uv_buf_t bufs[2] = {uv_buf_init(w->data, (unsigned)n), uv_buf_init((char *)AU.file, (unsigned)AU.file_len)};
    rc->busy = 1;
    rc->complete = 0;
    rc->sent_ns = now_ns();
    if (uv_write(&w->req, (uv_stream_t *)&rc->tcp, bufs, 2, on_rest_write) != 0) {
        free(w);
        rest_failed(rc, "write");
        return;
    }
    rc->wq++;
}

static int rest_on_complete(http_parser *p) {
    ((struct rest_client *)p->data)->complete = 1;
    return 0;
}

static const http_parser_settings rest_settings = {.on_message_complete = rest_on_complete};

static void on_rest_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct rest_client *rc = st->data;
    if (rc->closing) return;
    if (nread < 0) {
        if (rc->busy) rest_failed(rc, nread == UV_EOF ? "EOF" : uv_err_name((int)nread));
        else rest_close(rc);
        return;
    }
    if (nread == 0) return;
    size_t used = http_parser_execute(&rc->hp, &rest_settings, b->base, (size_t)nread);
    if (rc->complete) {
        uint64_t lat = (now_ns() - rc->sent_ns) / 1000;
        char code[16];
        snprintf(code, sizeof code, "%u", rc->hp.status_code);
        A.ph.run.requests++;
        loadstat_counts_add(&A.ph.run.http_status, code, 1);
        if (rc->hp.status_code != 200) A.ph.run.request_failures++;
        loadstat_hist_add(&A.ph.lat, lat);
        loadstat_hist_add(&A.interval, lat);
        rc->busy = 0;
        rc->complete = 0;
        if (A.ph.stopping || !http_should_keep_alive(&rc->hp) || used != (size_t)nread) rest_close(rc);
        else rest_send(rc);
        return;
    }
    if (HTTP_PARSER_ERRNO(&rc->hp) != HPE_OK) rest_failed(rc, "bad_response");
}

static void on_rest_connect(uv_connect_t *req, int status) {
    struct rest_client *rc = req->data;
    if (rc->closing) return;
    if (status < 0) {
        A.ph.run.connect_failures++;
        loadstat_counts_add(&A.ph.run.connect_errors, uv_err_name(status), 1);
        rc->failed = 1;
        rest_close(rc);
        return;
    }
    http_parser_init(&rc->hp, HTTP_RESPONSE);
    rc->hp.data = rc;
    uv_read_start((uv_stream_t *)&rc->tcp, on_alloc, on_rest_read);
    rest_send(rc);
}

static void rest_start(struct rest_client *rc) {
    if (A.ph.stopping || rest_quota_done()) return;
    memset(rc, 0, sizeof *rc);
    if (uv_tcp_init_ex(A.loop, &rc->tcp, C.addr.ss_family) != 0) return;
    rc->tcp.data = rc;
    rc->creq.data = rc;
    rc->in_use = 1;
    A.ph.open++;
    rc->sent_ns = now_ns();
    rc->busy = 1;   /* the connect counts toward the request's deadline */
    uv_tcp_nodelay(&rc->tcp, 1);
    int r = uv_tcp_connect(&rc->creq, &rc->tcp, (const struct sockaddr *)&C.addr, on_rest_connect);
    if (r != 0) rest_failed(rc, uv_err_name(r));
}

/* ---- phases ------------------------------------------------------------ */

static unsigned sessions_streaming(void) {
    unsigned n = 0;
    for (unsigned i = 0; i < A.nsess; i++)
        if (A.sess[i].st == ST_STREAMING) n++;
    return n;
}

/* The spawner is a one-shot timer, armed only while it has work: during
 * the ramp (for the next session's start), after a batch limit, when a churn
 * session's slot comes free (spawn_kick from on_sess_close), and for a rest
 * client's retry after a failure. Between those it sleeps. */
static void spawn_cb(uv_timer_t *t);

static void spawn_kick(uint64_t delay_ms) {
    if (A.ph.stopping || A.done) return;
    uint64_t due = uv_now(A.loop) + delay_ms;
    if (uv_is_active((uv_handle_t *)&A.spawner) && uv_timer_get_due_in(&A.spawner) + uv_now(A.loop) <= due) return;
    uv_timer_start(&A.spawner, spawn_cb, delay_ms, 0);
}

static void spawn_cb(uv_timer_t *t) {
    struct phase *ph = &A.ph;
    if (ph->stopping) return;
    uint64_t now = now_ns();
    if (C.sc == SC_REST) {
        uint64_t next = UINT64_MAX;
        for (unsigned i = 0; i < C.o.rest_concurrency; i++) {
            struct rest_client *rc = &A.rest[i];
            if (rc->in_use) continue;
            if (now >= rc->retry_at) rest_start(rc);
            else if (rc->retry_at < next) next = rc->retry_at;
        }
        if (next != UINT64_MAX) spawn_kick((next - now) / 1000000 + 1);
        return;
    }
    if (C.sc == SC_CHURN && C.o.churn_rate > 0) {
        /* Churn at a rate: session k starts k / rate s into the phase, when
         * a slot is free (at most --sessions open); a start that finds no
         * free slot waits for the next close (on_sess_close kicks us). */
        uint64_t due = loadstat_churn_due(C.o.churn_rate, now - ph->t_start);
        unsigned batch = 0;
        while (ph->started < due && batch < SPAWN_BATCH && A.nfree) {
            sess_start();
            batch++;
        }
        if (ph->started < due) {
            if (A.nfree) spawn_kick(1);
        } else {
            uint64_t next = ph->t_start + loadstat_churn_start_ns(C.o.churn_rate, ph->started);
            spawn_kick(next > now ? (next - now + 999999) / 1000000 : 1);
        }
        return;
    }
    unsigned want = ph->target;
    int ramping = 0;
    if (C.o.ramp_s > 0) {
        double f = (double)(now - ph->t_start) / (C.o.ramp_s * 1e9);
        if (f < 1) {
            want = (unsigned)ceil(f * ph->target);
            ramping = 1;
        }
        if (want < 1) want = 1;
    }
    /* Churn holds a population (slots in use, stopping ones included);
     * the others start each session once. */
    unsigned have = C.sc == SC_CHURN ? ph->open : ph->started;
    unsigned batch = 0;
    while (have < want && batch < SPAWN_BATCH && A.nfree) {
        sess_start();
        have++;
        batch++;
    }
    if (have < want && A.nfree) {
        spawn_kick(1);   /* the batch limit: the rest on the next turn */
    } else if (ramping && have < ph->target) {
        /* Session have + 1 is due when the ramp reaches have / target. */
        uint64_t due = ph->t_start + (uint64_t)(C.o.ramp_s * 1e9 * have / ph->target);
        spawn_kick(due > now ? (due - now + 999999) / 1000000 : 1);
    }
}

static void phase_timer_cb(uv_timer_t *t);

/* t_stop: nothing new starts; sessions stop on their own deadlines. t_hard:
 * whatever is still open is cut. */
static void phase_stop(void) {
    struct phase *ph = &A.ph;
    ph->stopping = 1;
    uv_timer_stop(&A.spawner);
    /* Sessions still connecting (churn replaces sessions up to the end) are
     * left to finish: once their `session` message comes they stop at once
     * (stop_at = t_stop is past), so the server sees a clean `stop` and
     * close rather than a dropped connection it would keep resumable. */
    if (A.rest)
        for (unsigned i = 0; i < C.o.rest_concurrency; i++)
            if (A.rest[i].in_use && !A.rest[i].busy) rest_close(&A.rest[i]);
    phase_maybe_finish();
}

static void phase_cut(void) {
    struct phase *ph = &A.ph;
    ph->hard = 1;
    for (unsigned i = 0; i < A.nsess; i++) {
        struct sess *s = &A.sess[i];
        if (s->st == ST_IDLE || s->st == ST_ENDED) continue;
        if (s->st < ST_STREAMING) sess_fail(s, "timeout");
        else sess_end(s);
    }
    if (A.rest)
        for (unsigned i = 0; i < C.o.rest_concurrency; i++)
            if (A.rest[i].in_use) {
                if (A.rest[i].busy) rest_failed(&A.rest[i], "timeout");
                else rest_close(&A.rest[i]);
            }
}

static void phase_timer_cb(uv_timer_t *t) {
    struct phase *ph = &A.ph;
    uint64_t now = now_ns();
    if (!ph->stopping) {
        int all_gone = C.sc == SC_REST ? rest_quota_done() && ph->open == 0
                                       : C.sc != SC_CHURN && ph->open == 0 && ph->started >= ph->target;
        if (now + 500000 < ph->t_stop && !all_gone) {
            uv_timer_start(&A.phase_timer, phase_timer_cb, (ph->t_stop - now) / 1000000 + 1, 0);
            return;
        }
        phase_stop();
        if (ph->finishing) return;
        uv_timer_start(&A.phase_timer, phase_timer_cb, (ph->t_hard - now) / 1000000 + 1, 0);
        return;
    }
    if (!ph->hard) phase_cut();
}

static void print_step_line(const struct loadstat_run *r);

static void close_all_and_quit(void) {
    A.done = 1;
    uv_close((uv_handle_t *)&A.sched_timer, NULL);
    uv_close((uv_handle_t *)&A.tick, NULL);
    uv_close((uv_handle_t *)&A.spawner, NULL);
    uv_close((uv_handle_t *)&A.phase_timer, NULL);
    uv_close((uv_handle_t *)&A.sigint, NULL);
    uv_close((uv_handle_t *)&A.sample_timer, NULL);
    if (A.sample) sample_end(A.sample);
}

/* Capacity: does a step hold? Sets run->held and run->verdict. */
static void judge_step(struct loadstat_run *r) {
    r->held = 0;
    uint64_t errs = loadstat_counts_sum(&r->errors);
    if (r->connect_failures + errs + r->missing > C.o.max_errors)
        snprintf(r->verdict, sizeof r->verdict, "%llu connect failures + %llu errors + %llu missing > %u",
                 (unsigned long long)r->connect_failures, (unsigned long long)errs, (unsigned long long)r->missing,
                 C.o.max_errors);
    else if (r->chunks_skipped)
        snprintf(r->verdict, sizeof r->verdict, "client saturated: %llu chunks skipped",
                 (unsigned long long)r->chunks_skipped);
    else if (r->sessions_stalled)
        snprintf(r->verdict, sizeof r->verdict, "%llu sessions stalled (server not reading)",
                 (unsigned long long)r->sessions_stalled);
    else if (r->added.p99 > C.o.p99_threshold_ms)
        snprintf(r->verdict, sizeof r->verdict, "p99 added %.2f ms > %.2f ms", r->added.p99, C.o.p99_threshold_ms);
    else if (r->sessions_opened < r->sessions_target)
        snprintf(r->verdict, sizeof r->verdict, "only %llu of %u sessions opened",
                 (unsigned long long)r->sessions_opened, r->sessions_target);
    else {
        r->held = 1;
        snprintf(r->verdict, sizeof r->verdict, "held");
    }
}

static void phase_finish_cb(uv_timer_t *t) {
    struct phase *ph = &A.ph;
    struct loadstat_run *r = &ph->run;
    struct rusage ru1;
    getrusage(RUSAGE_SELF, &ru1);
    uv_timer_stop(&A.phase_timer);
    sampling_stop();
    r->sessions_target = ph->target;
    uint64_t now = now_ns();
    r->wall_s = (double)(now - ph->t_start) / 1e9;
    r->stream_s = (double)((ph->t_stop < now ? ph->t_stop : now) - ph->t_start) / 1e9;
    r->client_cpu_s = rusage_cpu(&ru1) - rusage_cpu(&ph->ru0);
    r->client_cpu_pct = r->wall_s >= 0.1 ? 100.0 * r->client_cpu_s / r->wall_s : 0;   /* too short to say */
    r->chunk_rate = r->stream_s > 0 ? (double)r->chunks_sent / r->stream_s : 0;
    r->answer_rate = r->stream_s > 0 ? (double)(C.sc == SC_REST ? r->requests : r->answers) / r->stream_s : 0;
    loadstat_hist_summary(&ph->lat, &r->latency);
    loadstat_hist_summary(&ph->added, &r->added);
    fetch_metrics_settled(&r->server_before, &r->server_after);
    loadstat_run_peak(r, &r->server_after);
    loadstat_hist_merge(&A.all_lat, &ph->lat);
    loadstat_hist_merge(&A.all_added, &ph->added);
    loadstat_run_merge(&A.res.total, r);
    if (C.sc == SC_CAPACITY) {
        judge_step(r);
        loadstat_result_add_step(&A.res, r);
        print_step_line(r);
        if (r->held) A.res.capacity_sessions = r->sessions_target;
        unsigned next = ph->target + C.o.capacity_step;
        if (r->held && next <= C.o.capacity_max && !A.interrupted) {
            phase_start(next);
            return;
        }
    }
    loadstat_hist_summary(&A.all_lat, &A.res.total.latency);
    loadstat_hist_summary(&A.all_added, &A.res.total.added);
    close_all_and_quit();
}

static void phase_maybe_finish(void) {
    struct phase *ph = &A.ph;
    if (!ph->stopping || ph->open > 0 || ph->finishing || A.done) return;
    ph->finishing = 1;
    uv_timer_start(&A.phase_timer, phase_finish_cb, 0, 0);
}

static void phase_start(unsigned target) {
    struct phase *ph = &A.ph;
    memset(ph, 0, sizeof *ph);
    ph->target = target;
    fetch_metrics(&ph->run.server_before);
    loadstat_run_peak(&ph->run, &ph->run.server_before);
    sampling_start();
    getrusage(RUSAGE_SELF, &ph->ru0);
    ph->t_start = now_ns();
    ph->run.start_s = (double)(ph->t_start - A.run_t0) / 1e9;
    /* ramp up, duration at full strength, ramp down (churn: sessions come
     * and go throughout; rest: no ramp) */
    double len = (C.sc == SC_REST ? 0 : C.sc == SC_CHURN ? C.o.ramp_s : 2 * C.o.ramp_s) + C.o.duration_s;
    ph->t_stop = ph->t_start + (uint64_t)(len * 1e9);
    ph->t_hard = ph->t_stop + (uint64_t)(C.o.grace_s * 1e9);
    if (!C.quiet && C.sc == SC_CAPACITY)
        fprintf(stderr, "asrd-load: capacity step: %u sessions for %.1f s\n", target, len);
    uv_timer_start(&A.phase_timer, phase_timer_cb, (uint64_t)(len * 1000) + 1, 0);
    if (C.sc == SC_REST)
        for (unsigned i = 0; i < C.o.rest_concurrency; i++) rest_start(&A.rest[i]);
    if (C.sc != SC_REST) uv_timer_start(&A.spawner, spawn_cb, 0, 0);
}

/* ---- progress ---------------------------------------------------------- */

static void tick_cb(uv_timer_t *t) {
    uint64_t now = now_ns();
    struct phase *ph = &A.ph;
    if (ph->finishing || A.done) return;
    /* Timeouts of individual states, and stalls: unsent bytes in libuv's
     * queue plus the kernel's send queue (SIOCOUTQ) past STALL_BYTES mean
     * the server stopped reading this connection. */
    unsigned stalled_now = 0;
    for (unsigned i = 0; i < A.nsess; i++) {
        struct sess *s = &A.sess[i];
        if (s->st == ST_STREAMING || s->st == ST_STOPPING) {
            uv_os_fd_t fd;
            int outq = 0;
            if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &outq) == 0 &&
                (size_t)outq + s->wq_bytes > STALL_BYTES) {
                s->stalled = 1;
                stalled_now++;
            }
        }
        if (s->st == ST_IDLE || s->st == ST_ENDED || !s->deadline || now < s->deadline) continue;
        if (s->st < ST_STREAMING) sess_fail(s, "timeout");
        else sess_end(s);
    }
    if (A.rest)
        for (unsigned i = 0; i < C.o.rest_concurrency; i++) {
            struct rest_client *rc = &A.rest[i];
            if (rc->in_use && rc->busy && !rc->closing && now - rc->sent_ns > REST_TIMEOUT_NS)
                rest_failed(rc, "timeout");
        }
    struct loadstat_run *r = &ph->run;
    uint64_t answers = C.sc == SC_REST ? r->requests : r->answers;
    uint64_t d_chunks = r->chunks_sent - A.tick_chunks, d_ans = answers - A.tick_answers;
    A.tick_chunks = r->chunks_sent;
    A.tick_answers = answers;
    unsigned streaming = C.sc == SC_REST ? ph->open : sessions_streaming();
    struct loadstat_point pt = {
        .t_s = (double)(now - A.run_t0) / 1e9,
        .sessions = streaming,
        .answers = A.interval.count,
        .p50_ms = (double)loadstat_hist_percentile(&A.interval, 50) / 1000.0,
        .p90_ms = (double)loadstat_hist_percentile(&A.interval, 90) / 1000.0,
        .p99_ms = (double)loadstat_hist_percentile(&A.interval, 99) / 1000.0,
    };
    /* The server's RSS and fds from a sample of the last 2.5 s, if any. */
    int fresh = A.last_sample.ok && now - A.last_sample_ns < 2500000000ull;
    if (fresh) {
        pt.rss_bytes = A.last_sample.rss_bytes;
        pt.open_fds = A.last_sample.open_fds;
        pt.loop_util = A.last_sample.loop_utilization;
    }
    loadstat_result_add_point(&A.res, &pt);
    loadstat_hist_reset(&A.interval);
    if (C.quiet) return;
    uint64_t errs = loadstat_counts_sum(&r->errors) + r->request_failures;
    char srv[64] = "";
    if (fresh)
        snprintf(srv, sizeof srv, "  server rss %.1f MB fds %llu loop %.0f%%", (double)pt.rss_bytes / 1048576.0,
                 (unsigned long long)pt.open_fds, pt.loop_util * 100);
    if (C.sc == SC_REST)
        fprintf(stderr, "[%6.1fs] clients %u  req/s %llu  p99 %.1f ms  failures %llu  connect-fail %llu%s\n", pt.t_s,
                streaming, (unsigned long long)d_ans, (double)loadstat_hist_percentile(&ph->lat, 99) / 1000.0,
                (unsigned long long)errs, (unsigned long long)r->connect_failures, srv);
    else
        fprintf(stderr,
                "[%6.1fs] open %u  chunks/s %llu  answers/s %llu  p99 %.1f ms (added %.1f)  errors %llu  "
                "connect-fail %llu  stalled %u%s%s\n",
                pt.t_s, streaming, (unsigned long long)d_chunks, (unsigned long long)d_ans,
                (double)loadstat_hist_percentile(&ph->lat, 99) / 1000.0,
                (double)loadstat_hist_percentile(&ph->added, 99) / 1000.0, (unsigned long long)errs,
                (unsigned long long)r->connect_failures, stalled_now, srv, ph->stopping ? "  (stopping)" : "");
}

static void sigint_cb(uv_signal_t *h, int sig) {
    A.interrupted++;
    if (A.ph.finishing || A.done) return;
    uint64_t now = now_ns();
    if (A.interrupted == 1) {
        fprintf(stderr, "asrd-load: interrupted, stopping sessions (^C again to cut)\n");
        A.ph.t_stop = now;
        for (unsigned i = 0; i < A.nsess; i++) {
            struct sess *s = &A.sess[i];
            if (s->st != ST_STREAMING) continue;
            s->stop_at = now;
            sched_put(s, now);
        }
        if (!A.ph.stopping) {
            A.ph.t_hard = now + (uint64_t)(C.o.grace_s * 1e9);
            uv_timer_start(&A.phase_timer, phase_timer_cb, 0, 0);
        }
    } else if (!A.ph.hard && !A.ph.finishing) {
        phase_cut();
    }
}

/* ---- report ------------------------------------------------------------ */

static void print_counts(const char *label, const struct loadstat_counts *c) {
    printf("%-14s", label);
    if (!c->len) printf("none");
    for (size_t i = 0; i < c->len; i++) printf("%s%s %llu", i ? ", " : "", c->v[i].name, (unsigned long long)c->v[i].n);
    printf("\n");
}

static void print_pct(const char *label, const struct loadstat_pct *p) {
    printf("%-14sp50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f  (n=%llu)\n", label, p->p50, p->p90,
           p->p99, p->p999, p->max, p->mean, (unsigned long long)p->count);
}

static void print_step_line(const struct loadstat_run *r) {
    if (C.quiet) return;
    fprintf(stderr, "asrd-load: step %u sessions: p50 added %.2f ms, p99 added %.2f ms, errors %llu, missing %llu: %s\n",
            r->sessions_target, r->added.p50, r->added.p99, (unsigned long long)loadstat_counts_sum(&r->errors),
            (unsigned long long)r->missing, r->verdict);
}

static unsigned long long dlt(uint64_t before, uint64_t after) {
    return after > before ? (unsigned long long)(after - before) : 0;
}

static void print_server(const struct loadstat_run *r) {
    const struct loadstat_server *a = &r->server_before, *b = &r->server_after;
    if (!a->ok || !b->ok) {
        printf("%-14s/v1/metrics unavailable%s\n", "server", a->ok || b->ok ? " (before or after)" : "");
        return;
    }
    printf("%-14ssessions.total +%llu  chunks.total +%llu  partials.total +%llu (dropped +%llu)  finals.total +%llu\n",
           "server", dlt(a->sessions_total, b->sessions_total), dlt(a->chunks_total, b->chunks_total),
           dlt(a->partials_total, b->partials_total), dlt(a->partials_dropped, b->partials_dropped),
           dlt(a->finals_total, b->finals_total));
    struct loadstat_counts cc, rs;
    loadstat_counts_delta(&cc, &b->close_codes, &a->close_codes);
    loadstat_counts_delta(&rs, &b->rest_status, &a->rest_status);
    printf("%-14serrors +%llu  slow_client closes +%llu  policy closes +%llu  close codes", "",
           dlt(a->errors_total, b->errors_total), dlt(a->slow_client_closes, b->slow_client_closes),
           dlt(a->policy_closes, b->policy_closes));
    if (!cc.len) printf(" none");
    for (size_t i = 0; i < cc.len; i++) printf("%s %s +%llu", i ? "," : "", cc.v[i].name, (unsigned long long)cc.v[i].n);
    if (rs.len) {
        printf("  transcribe");
        for (size_t i = 0; i < rs.len; i++)
            printf("%s %s +%llu", i ? "," : "", rs.v[i].name, (unsigned long long)rs.v[i].n);
    }
    printf("\n");
    struct loadstat_counts ec, en;
    loadstat_counts_delta(&ec, &b->error_codes, &a->error_codes);
    loadstat_counts_delta(&en, &b->ended, &a->ended);
    if (ec.len || en.len) {
        printf("%-14s", "");
        if (ec.len) printf("errors by code");
        for (size_t i = 0; i < ec.len; i++)
            printf("%s %s +%llu", i ? "," : "", ec.v[i].name, (unsigned long long)ec.v[i].n);
        if (en.len) printf("%ssessions ended", ec.len ? "  " : "");
        for (size_t i = 0; i < en.len; i++)
            printf("%s %s +%llu", i ? "," : "", en.v[i].name, (unsigned long long)en.v[i].n);
        printf("\n");
    }
    printf("%-14srss %.1f MB -> %.1f MB (peak %.1f MB)  open fds %llu -> %llu (peak %llu)  %llu samples during the run\n",
           "", (double)a->rss_bytes / 1048576.0, (double)b->rss_bytes / 1048576.0,
           (double)r->server_rss_peak / 1048576.0, (unsigned long long)a->open_fds, (unsigned long long)b->open_fds,
           (unsigned long long)r->server_fds_peak, (unsigned long long)r->server_samples);
    printf("%-14ssessions.active %llu -> %llu  connections.active %llu -> %llu  chunk p99 (server) %.2f ms", "",
           (unsigned long long)a->sessions_active, (unsigned long long)b->sessions_active,
           (unsigned long long)a->connections_active, (unsigned long long)b->connections_active, b->chunk_p99_ms);
    if (b->workers > 1) printf("  (%llu workers)", (unsigned long long)b->workers);
    printf("\n%-14sloop utilization peak %.0f %% (busiest worker, per second)\n", "", r->server_loop_util_peak * 100);
    /* The counts both sides keep, side by side (see loadstat_agreement). */
    struct loadstat_check ck[2 * LOADSTAT_MAX_NAMES + 8];
    size_t n = loadstat_agreement(r, C.sc == SC_REST, ck, sizeof ck / sizeof ck[0]);
    size_t bad = 0;
    printf("%-14s", "client/server");
    for (size_t i = 0; i < n; i++) {
        printf("%s%s %llu/%llu%s", i ? "  " : "", ck[i].name, (unsigned long long)ck[i].client,
               (unsigned long long)ck[i].server, ck[i].client == ck[i].server ? "" : " (differs)");
        if (ck[i].client != ck[i].server) bad++;
    }
    printf("\n");
    if (bad)
        printf("%-14s%zu count(s) differ: other clients on this server, sessions cut at the end, or slow readers "
               "closed 1008 (their queued partials are discarded uncounted)\n", "", bad);
}

static void print_report(void) {
    const struct loadstat_run *t = &A.res.total;
    printf("\nasrd-load %s  %s  mode %s  chunk %u ms  duration %.1f s  ramp %.1f s\n", C.o.scenario, C.o.url, C.o.mode,
           C.o.chunk_ms, C.o.duration_s, C.o.ramp_s);
    if (C.sc == SC_CAPACITY) {
        printf("\n%8s %8s %9s %9s %9s %9s %7s %7s %6s %8s %7s  %s\n", "sessions", "opened", "chunks/s", "p50 add",
               "p99 add", "p99.9 add", "errors", "missing", "fail", "cpu %", "loop %", "verdict");
        for (size_t i = 0; i < A.res.n_steps; i++) {
            const struct loadstat_run *r = &A.res.steps[i];
            printf("%8u %8llu %9.1f %9.2f %9.2f %9.2f %7llu %7llu %6llu %8.1f %7.0f  %s\n", r->sessions_target,
                   (unsigned long long)r->sessions_opened, r->chunk_rate, r->added.p50, r->added.p99, r->added.p999,
                   (unsigned long long)loadstat_counts_sum(&r->errors), (unsigned long long)r->missing,
                   (unsigned long long)r->connect_failures, r->client_cpu_pct, r->server_loop_util_peak * 100,
                   r->verdict);
        }
        printf("\ncapacity      %u sessions held (p99 added <= %.2f ms, connect failures + errors + missing <= %u)%s\n\n",
               A.res.capacity_sessions, C.o.p99_threshold_ms, C.o.max_errors,
               A.res.n_steps && A.res.steps[A.res.n_steps - 1].held ? "; the largest step asked for held, "
                                                                      "raise --capacity-max to find the limit" : "");
        printf("all steps:\n");
    } else {
        printf("\n");
    }
    if (C.sc == SC_REST) {
        printf("%-14sclients %u  requests %llu (%.1f/s)  failures %llu  connect failures %llu\n", "requests",
               C.o.rest_concurrency, (unsigned long long)t->requests, t->answer_rate,
               (unsigned long long)t->request_failures, (unsigned long long)t->connect_failures);
        print_counts("http status", &t->http_status);
        if (t->request_errors.len) print_counts("no response", &t->request_errors);
        print_pct("latency ms", &t->latency);
    } else {
        printf("%-14starget %u  opened %llu  completed %llu  connect failures %llu\n", "sessions", t->sessions_target,
               (unsigned long long)t->sessions_opened, (unsigned long long)t->sessions_completed,
               (unsigned long long)t->connect_failures);
        if (t->connect_errors.len) print_counts("connect errs", &t->connect_errors);
        printf("%-14ssent %llu (%.1f/s)  skipped (client late) %llu  held back (socket full) %llu\n", "chunks",
               (unsigned long long)t->chunks_sent, t->chunk_rate, (unsigned long long)t->chunks_skipped,
               (unsigned long long)t->chunks_blocked);
        printf("%-14s%llu (%.1f/s)  missing %llu  out of order %llu  unmatched %llu  finals %llu\n", "answers",
               (unsigned long long)t->answers, t->answer_rate, (unsigned long long)t->missing,
               (unsigned long long)t->out_of_order, (unsigned long long)t->unmatched, (unsigned long long)t->finals);
        if (t->sessions_stalled)
            printf("%-14s%llu sessions had > %u KiB unsent (the server stopped reading them)\n", "stalled",
                   (unsigned long long)t->sessions_stalled, STALL_BYTES >> 10);
        print_pct("latency ms", &t->latency);
        print_pct("added ms", &t->added);
        print_counts("errors", &t->errors);
        print_counts("close codes", &t->close_codes);
        if (C.sc == SC_SLOW) {
            printf("%-14s%llu slow sessions sent %llu chunks and got %llu answers, late (not measured); %llu closed "
                   "by the server (write error, EOF or 1008)\n", "slow readers", (unsigned long long)t->slow_sessions,
                   (unsigned long long)t->slow_chunks, (unsigned long long)t->slow_answers,
                   (unsigned long long)t->slow_closed);
            if (t->server_before.ok && t->server_after.ok)
                printf("%-14sthe server ended %llu sessions as slow_client and sent close_codes.1008 +%llu\n", "",
                       dlt(t->server_before.slow_client_closes, t->server_after.slow_client_closes),
                       dlt(loadstat_counts_get(&t->server_before.close_codes, "1008"),
                           loadstat_counts_get(&t->server_after.close_codes, "1008")));
            print_counts("  close codes", &t->slow_close_codes);
        }
        if (C.sc == SC_FLOOD) {
            printf("%-14s%llu sessions at %.1fx real time sent %llu chunks: %llu answered (%llu partials), "
                   "missing %llu; %llu ended by the server before `stop`\n", "flooders",
                   (unsigned long long)t->flood_sessions, C.o.flood_factor, (unsigned long long)t->flood_chunks,
                   (unsigned long long)t->flood_answers, (unsigned long long)t->flood_partials,
                   (unsigned long long)t->flood_missing, (unsigned long long)t->flood_closed);
            print_counts("  errors", &t->flood_errors);
            print_counts("  close codes", &t->flood_close_codes);
        }
        if (C.sc == SC_SLOW || C.sc == SC_FLOOD)
            printf("%-14s%llu sessions sent %llu chunks: %llu answered (timed above), missing %llu, errors %llu, "
                   "%llu completed (final + 1000)\n", "normal", (unsigned long long)t->normal_sessions,
                   (unsigned long long)t->normal_chunks, (unsigned long long)t->answers,
                   (unsigned long long)t->missing, (unsigned long long)t->normal_errors,
                   (unsigned long long)t->normal_completed);
    }
    printf("%-14s%.2f s CPU over %.1f s wall (%.1f %% of one core); %.1f s of streaming\n", "client",
           t->client_cpu_s, t->wall_s, t->client_cpu_pct, t->stream_s);
    if (C.sc == SC_CAPACITY && A.res.n_steps) {
        struct loadstat_run both = *t;
        both.server_before = A.res.steps[0].server_before;
        both.server_after = A.res.steps[A.res.n_steps - 1].server_after;
        print_server(&both);
    } else {
        print_server(t);
    }
}

static int write_file(const char *path, const struct buf *b) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "asrd-load: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t w = fwrite(b->data, 1, b->len, f);
    int rc = fclose(f);
    if (w != b->len || rc != 0) {
        fprintf(stderr, "asrd-load: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

/* ---- main -------------------------------------------------------------- */

/* One descriptor per session or rest client, plus a few for the loop, the
 * metrics fetch and stdio. */
static rlim_t nofile_needed(void) {
    unsigned n = C.sc == SC_CAPACITY ? C.o.capacity_max : C.sc == SC_REST ? C.o.rest_concurrency : C.o.sessions;
    return (rlim_t)n + 64;
}

/* Raises the soft RLIMIT_NOFILE to the hard limit; when even the hard
 * limit is below what the run needs, tries to raise it too (allowed to root,
 * up to fs.nr_open). Warns when the result is still short: sessions past it
 * fail to connect with EMFILE (counted as connect failures). */
static void raise_nofile(void) {
    struct rlimit rl;
    rlim_t need = nofile_needed();
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && rl.rlim_max == RLIM_INFINITY) {
            rl.rlim_cur = need;   /* an infinite hard limit: ask for what is needed */
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        fprintf(stderr, "asrd-load: warning: RLIMIT_NOFILE is %llu (hard %llu), below the %llu this run needs\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, (unsigned long long)need);
}

int main(int argc, char **argv) {
    if (jobs_scenario_wanted(argc, argv)) return jobs_scenario_main(argc, argv); /* jobs.c */
    parse_args(argc, argv);
    if (sodium_init() < 0) die("libsodium failed to initialise");
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    load_audio();

    A.loop = uv_default_loop();
    loadstat_heap_init(&A.heap);
    buf_init(&A.out, 0);
    buf_init(&A.scratch, 0);
    A.mask_pos = sizeof A.mask_pool;
    A.sched_due = UINT64_MAX;
    loadstat_result_init(&A.res);
    A.res.opts = C.o;
    uv_timer_init(A.loop, &A.sched_timer);
    uv_timer_init(A.loop, &A.tick);
    uv_timer_init(A.loop, &A.spawner);
    uv_timer_init(A.loop, &A.phase_timer);
    uv_signal_init(A.loop, &A.sigint);
    uv_timer_init(A.loop, &A.sample_timer);
    uv_signal_start(&A.sigint, sigint_cb, SIGINT);

    if (C.sc == SC_REST) {
        A.rest = xcalloc(C.o.rest_concurrency, sizeof *A.rest);
    } else {
        A.nsess = C.sc == SC_CAPACITY ? C.o.capacity_max : C.o.sessions;
        A.sess = xcalloc(A.nsess, sizeof *A.sess);
        A.freelist = xcalloc(A.nsess, sizeof *A.freelist);
        for (unsigned i = 0; i < A.nsess; i++) A.freelist[A.nfree++] = A.nsess - 1 - i;
    }

    if (!C.quiet)
        fprintf(stderr, "asrd-load: %s against %s (%s, %u ms chunks, audio %.1f s)\n", C.o.scenario, C.o.url,
                C.o.mode, C.o.chunk_ms, (double)AU.nchunks * C.o.chunk_ms / 1000.0);
    A.run_t0 = now_ns();
    uv_timer_start(&A.tick, tick_cb, 1000, 1000);
    phase_start(C.sc == SC_CAPACITY ? C.o.capacity_start : C.sc == SC_REST ? C.o.rest_concurrency : C.o.sessions);
    uv_run(A.loop, UV_RUN_DEFAULT);

    print_report();
    int rc = 0;
    if (C.json_out[0]) {
        struct buf b;
        buf_init(&b, 0);
        if (loadstat_result_to_json(&A.res, &b) != 0 || write_file(C.json_out, &b) != 0) rc = 1;
        buf_cleanup(&b);
    }
    if (C.svg_out[0]) {
        struct buf b;
        buf_init(&b, 0);
        if (loadstat_svg(&A.res, &b) != 0 || write_file(C.svg_out, &b) != 0) rc = 1;
        buf_cleanup(&b);
    }
    if (A.res.total.sessions_opened == 0 && A.res.total.requests == 0) {
        fprintf(stderr, "asrd-load: nothing connected (is asrd listening on %s?)\n", C.host);
        rc = 1;
    }

    uv_loop_close(A.loop);
    loadstat_heap_cleanup(&A.heap);
    loadstat_result_cleanup(&A.res);
    buf_cleanup(&A.out);
    buf_cleanup(&A.scratch);
    free(A.sess);
    free(A.freelist);
    free(A.rest);
    if (AU.b64)
        for (size_t i = 0; i < AU.nchunks; i++) free(AU.b64[i]);
    free(AU.b64);
    free(AU.pcm);
    free(AU.file);
    return rc;
}
