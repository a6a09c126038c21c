/* The command line of asrd-load (opts.h, docs/LOAD.md "Options"). */
#define _GNU_SOURCE
#include "opts.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/util.h"
#include "clips.h"
#include "scenario.h"

#define SLOW_RCVBUF 16384               /* default SO_RCVBUF of slow readers, bytes */

void opts_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("asrd-load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: asrd-load [options]\n"
        "Load generator for asrd (loopback targets only). See docs/LOAD.md.\n\n"
        "  --url URL               server, ws://HOST[:PORT][/PATH][?QUERY]     default ws://127.0.0.1:8000\n"
        "                          (path defaults to " LOAD_STREAM_PATH "; the query is passed on)\n"
        "  --scenario S            %s\n"
        "                          default sustained\n"
        "  --sessions N            sessions held (rest: ignored)             default 100\n"
        "                          (speech: default one per audio file)\n"
        "  --ramp R                seconds over which sessions start evenly   default 0 (ramp: 10)\n"
        "  --duration D            seconds all sessions stream together       default 10\n"
        "                          (each streams R + D from its own start, so\n"
        "                          a phase is R up, D full, R down)\n"
        "                          (capacity: per step; rest: seconds of requests)\n"
        "  --chunk-ms MS           audio per chunk, 10..1000                  default 100\n"
        "  --mode M                binary|json                                default binary\n"
        "  --wav FILE              audio to stream (looped), any rate/channels default " LOAD_DEFAULT_WAV "\n"
        "                          if present (speech: repeat it, or name a directory of .wav files)\n"
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
        "  --capacity-start N      capacity: sessions of the first step       default 500 (speech-capacity: 1)\n"
        "  --capacity-step N       capacity: sessions added per step          default 500 (speech-capacity: 1)\n"
        "  --capacity-max N        capacity: largest step                     default 10000 (speech-capacity: 64)\n"
        "  --p99-threshold-ms MS   capacity: highest p99 added latency that holds  default 10\n"
        "  --max-errors N          capacity: most connect failures + errors + missing answers\n"
        "                          a step may have and hold                   default 0\n"
        "  --mock-latency-ms MS    the server's engine latency, subtracted for \"added\"  default 50\n"
        "  --final-p95-threshold-ms MS  speech-capacity: highest p95 final latency that holds  default 1500\n"
        "  --gap-ms MS             speech: silence after each file, so its utterance ends  default 1000\n"
        "  --hyp FILE              speech: write the finals' text as \"fileid<TAB>text\" lines  default none\n"
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
        "  --help                  this text\n",
        scenario_names());
}

static double opt_num(const char *name, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) opts_die("--%s: \"%s\" is not a number in %g..%g", name, v, lo, hi);
    return d;
}

static unsigned opt_uint(const char *name, const char *v, unsigned lo, unsigned hi) {
    uint64_t u;
    if (util_parse_u64(v, strlen(v), hi, &u) != 0 || u < lo) opts_die("--%s: \"%s\" is not an integer in %u..%u", name, v, lo, hi);
    return (unsigned)u;
}

/* Parses ws://HOST[:PORT][/PATH][?QUERY] and refuses anything but a
 * loopback address (127.0.0.0/8, ::1, localhost): this tool generates
 * enough traffic to hurt a shared network or someone else's server. No
 * name is ever looked up. */
static void parse_url(struct load_target *t, const char *url) {
    if (strncmp(url, "ws://", 5) != 0) opts_die("--url: only ws:// URLs are supported (got \"%s\")", url);
    const char *p = url + 5, *hs = p, *he;
    char host[256];
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he) opts_die("--url: unterminated [ in \"%s\"", url);
        hs = p + 1;
        p = he + 1;
    } else {
        p += strcspn(p, ":/?");
        he = p;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof host) opts_die("--url: bad host in \"%s\"", url);
    memcpy(host, hs, hl);
    host[hl] = 0;
    unsigned port = 80;
    if (*p == ':') {
        const char *ps = ++p;
        p += strcspn(p, "/?");
        char tmp[8];
        if ((size_t)(p - ps) == 0 || (size_t)(p - ps) >= sizeof tmp) opts_die("--url: bad port in \"%s\"", url);
        memcpy(tmp, ps, (size_t)(p - ps));
        tmp[p - ps] = 0;
        port = opt_uint("url port", tmp, 1, 65535);
    }
    const char *path = p;
    if (*path == 0 || strcmp(path, "/") == 0) snprintf(t->path, sizeof t->path, "%s", LOAD_STREAM_PATH);
    else if (*path == '?') snprintf(t->path, sizeof t->path, "%s%s", LOAD_STREAM_PATH, path);
    else snprintf(t->path, sizeof t->path, "%s", path);
    memset(&t->addr, 0, sizeof t->addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&t->addr;
    if (strcasecmp(host, "localhost") == 0) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
            opts_die("refusing %s: asrd-load only targets loopback (127.0.0.0/8, ::1, localhost)", host);
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
            opts_die("refusing %s: asrd-load only targets loopback (127.0.0.0/8, ::1, localhost)", host);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
    } else {
        opts_die("refusing \"%s\": asrd-load only targets loopback (127.0.0.0/8, ::1, localhost), "
                 "written as an address or localhost", host);
    }
    if (strchr(host, ':')) snprintf(t->host, sizeof t->host, "[%s]:%u", host, port);
    else snprintf(t->host, sizeof t->host, "%s:%u", host, port);
}

static void add_wav(struct load_cfg *cfg, const char *path) {
    if (strlen(path) >= sizeof cfg->o.wav) opts_die("--wav: path too long");
    cfg->wavs = xrealloc(cfg->wavs, (cfg->n_wavs + 1) * sizeof *cfg->wavs);
    cfg->wavs[cfg->n_wavs++] = xstrdup(path);
}

static int wav_name(const struct dirent *d) {
    size_t n = strlen(d->d_name);
    return n > 4 && d->d_name[0] != '.' && strcasecmp(d->d_name + n - 4, ".wav") == 0;
}

/* Speech: every --wav in order; a directory stands for its *.wav files,
 * sorted by name. */
static void expand_wavs(struct load_cfg *cfg) {
    char **given = cfg->wavs;
    size_t n = cfg->n_wavs;
    cfg->wavs = NULL;
    cfg->n_wavs = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(given[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            struct dirent **list;
            int k = scandir(given[i], &list, wav_name, alphasort);
            if (k < 0) opts_die("--wav %s: %s", given[i], strerror(errno));
            if (k == 0) opts_die("--wav %s: no .wav file in this directory", given[i]);
            for (int j = 0; j < k; j++) {
                char p[1024];
                int len = snprintf(p, sizeof p, "%s/%s", given[i], list[j]->d_name);
                if (len < 0 || (size_t)len >= sizeof p) opts_die("--wav %s: path too long", given[i]);
                add_wav(cfg, p);
                free(list[j]);
            }
            free(list);
        } else {
            add_wav(cfg, given[i]);
        }
        free(given[i]);
    }
    free(given);
}

void opts_parse(struct load_cfg *cfg, int argc, char **argv) {
    memset(cfg, 0, sizeof *cfg);
    struct loadstat_opts *o = &cfg->o;
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
    o->final_p95_threshold_ms = 1500;
    o->gap_ms = 1000;
    long slow_n = -1, flood_n = -1;
    int flood_given = 0, speech_given = 0;
    o->max_burst = 10;
    o->connect_timeout_s = 10;
    o->grace_s = 10;
    cfg->slow_rcvbuf = SLOW_RCVBUF;
    enum { O_URL = 256, O_SC, O_SESS, O_RAMP, O_DUR, O_CHUNK, O_MODE, O_WAV, O_TONE, O_JSON, O_SVG, O_SLOW,
           O_CSTART, O_CSTEP, O_CMAX, O_P99, O_MOCK, O_RESTC, O_CHURN, O_BURST, O_CTO, O_GRACE, O_KEY,
           O_QUIET, O_HELP, O_RCVBUF, O_MAXERR, O_RESTN, O_SLOWN, O_FLOODF, O_FLOODN, O_FLOODX, O_CRATE,
           O_SAMPLE, O_FINALP95, O_GAP, O_HYP };
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
        {"final-p95-threshold-ms", 1, 0, O_FINALP95}, {"gap-ms", 1, 0, O_GAP}, {"hyp", 1, 0, O_HYP},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_URL:
            if (strlen(optarg) >= sizeof o->url) opts_die("--url: too long");
            snprintf(o->url, sizeof o->url, "%s", optarg);
            break;
        case O_SC:
            if (strlen(optarg) >= sizeof o->scenario || !scenario_find(optarg))
                opts_die("--scenario: \"%s\" is not one of %s", optarg, scenario_names());
            snprintf(o->scenario, sizeof o->scenario, "%s", optarg);
            break;
        case O_SESS: o->sessions = opt_uint("sessions", optarg, 1, 100000); cfg->given |= OPT_GIVEN_SESSIONS; break;
        case O_RAMP: o->ramp_s = opt_num("ramp", optarg, 0, 3600); break;
        case O_DUR: o->duration_s = opt_num("duration", optarg, 0.1, 86400); break;
        case O_CHUNK: o->chunk_ms = opt_uint("chunk-ms", optarg, 10, 1000); break;
        case O_MODE:
            if (strcmp(optarg, "binary") != 0 && strcmp(optarg, "json") != 0) opts_die("--mode: binary or json");
            snprintf(o->mode, sizeof o->mode, "%s", optarg);
            break;
        case O_WAV:
            add_wav(cfg, optarg);
            cfg->given |= OPT_GIVEN_WAV;
            break;
        case O_TONE: o->tone = 1; break;
        case O_JSON: snprintf(cfg->json_out, sizeof cfg->json_out, "%s", optarg); break;
        case O_SVG: snprintf(cfg->svg_out, sizeof cfg->svg_out, "%s", optarg); break;
        case O_SLOW: o->slow_fraction = opt_num("slow-fraction", optarg, 0, 1); break;
        case O_CSTART: o->capacity_start = opt_uint("capacity-start", optarg, 1, 100000); cfg->given |= OPT_GIVEN_CSTART; break;
        case O_CSTEP: o->capacity_step = opt_uint("capacity-step", optarg, 1, 100000); cfg->given |= OPT_GIVEN_CSTEP; break;
        case O_CMAX: o->capacity_max = opt_uint("capacity-max", optarg, 1, 100000); cfg->given |= OPT_GIVEN_CMAX; break;
        case O_P99: o->p99_threshold_ms = opt_num("p99-threshold-ms", optarg, 0, 1e6); break;
        case O_MAXERR: o->max_errors = opt_uint("max-errors", optarg, 0, 1000000000); break;
        case O_MOCK: o->mock_latency_ms = opt_num("mock-latency-ms", optarg, 0, 60000); break;
        case O_RESTC: o->rest_concurrency = opt_uint("rest-concurrency", optarg, 1, 10000); break;
        case O_RESTN: o->rest_requests = opt_uint("requests", optarg, 0, 1000000000); break;
        case O_CHURN: o->churn_life_s = opt_num("churn-life", optarg, 0.2, 3600); break;
        case O_BURST: o->max_burst = opt_uint("max-burst", optarg, 1, 1000); break;
        case O_CTO: o->connect_timeout_s = opt_num("connect-timeout", optarg, 0.1, 600); break;
        case O_GRACE: o->grace_s = opt_num("grace", optarg, 0.5, 30); break;
        case O_KEY: snprintf(cfg->t.api_key, sizeof cfg->t.api_key, "%s", optarg); break;
        case O_QUIET: cfg->quiet = 1; break;
        case O_RCVBUF: cfg->slow_rcvbuf = opt_uint("slow-rcvbuf", optarg, 0, 1u << 24); break;
        case O_SLOWN: slow_n = opt_uint("slow-sessions", optarg, 0, 100000); break;
        case O_FLOODF: o->flood_fraction = opt_num("flood-fraction", optarg, 0, 1); flood_given = 1; break;
        case O_FLOODN: flood_n = opt_uint("flood-sessions", optarg, 0, 100000); flood_given = 1; break;
        case O_FLOODX: o->flood_factor = opt_num("flood-factor", optarg, 1, 1000); flood_given = 1; break;
        case O_CRATE: o->churn_rate = opt_num("churn-rate", optarg, 0, 100000); break;
        case O_SAMPLE: o->sample_s = opt_num("metrics-interval", optarg, 0, 3600); break;
        case O_FINALP95:
            o->final_p95_threshold_ms = opt_num("final-p95-threshold-ms", optarg, 0, 1e7);
            speech_given = 1;
            break;
        case O_GAP: o->gap_ms = opt_num("gap-ms", optarg, 0, 60000); speech_given = 1; break;
        case O_HYP: snprintf(cfg->hyp_out, sizeof cfg->hyp_out, "%s", optarg); speech_given = 1; break;
        case 'h': case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) opts_die("unexpected argument \"%s\" (see --help)", argv[optind]);
    const struct scenario *sc = cfg->sc = scenario_find(o->scenario);
    if (o->ramp_s < 0) o->ramp_s = sc->ramp_default_s;
    if (sc->ramp_default_s > 0 && o->ramp_s <= 0) opts_die("--scenario %s needs --ramp > 0", sc->name);
    if (o->sample_s > 0 && o->sample_s < 0.1) opts_die("--metrics-interval: at least 0.1 s (or 0 for none)");
    /* Roles: counts of the --sessions slots, given or from the fraction. */
    if (slow_n > (long)o->sessions) opts_die("--slow-sessions %ld is above --sessions %u", slow_n, o->sessions);
    if (flood_n > (long)o->sessions) opts_die("--flood-sessions %ld is above --sessions %u", flood_n, o->sessions);
    if (flood_given && !(sc->flags & SCF_FLOOD)) opts_die("--flood-* options need --scenario flood");
    if (slow_n >= 0 && !(sc->flags & SCF_SLOW)) opts_die("--slow-sessions needs --scenario slow-readers");
    if (o->churn_rate > 0 && !(sc->flags & SCF_CHURN)) opts_die("--churn-rate needs --scenario churn");
    if (speech_given && !(sc->flags & SCF_SPEECH))
        opts_die("--final-p95-threshold-ms, --gap-ms and --hyp need --scenario speech or speech-capacity");
    if (sc->flags & SCF_SLOW) {
        o->slow_count = slow_n >= 0 ? (unsigned)slow_n : (unsigned)llround(o->slow_fraction * o->sessions);
        o->slow_fraction = (double)o->slow_count / o->sessions;
    }
    if (sc->flags & SCF_FLOOD) {
        o->flood_count = flood_n >= 0 ? (unsigned)flood_n : (unsigned)llround(o->flood_fraction * o->sessions);
        o->flood_fraction = (double)o->flood_count / o->sessions;
        if ((double)o->chunk_ms / o->flood_factor < 1.0)
            opts_die("--flood-factor %g with --chunk-ms %u: a chunk every %.2f ms, at least 1 ms is needed",
                     o->flood_factor, o->chunk_ms, (double)o->chunk_ms / o->flood_factor);
    }
    cfg->json_mode = strcmp(o->mode, "json") == 0;
    if (o->tone && cfg->n_wavs) opts_die("--tone and --wav exclude each other");
    if (cfg->n_wavs) {
        /* The JSON records the first --wav as given (a file or a directory);
         * only the speech scenarios stream several files, the others the
         * last one given. */
        snprintf(o->wav, sizeof o->wav, "%s", (sc->flags & SCF_SPEECH) ? cfg->wavs[0] : cfg->wavs[cfg->n_wavs - 1]);
        if (sc->flags & SCF_SPEECH) {
            expand_wavs(cfg);
        } else {
            for (size_t i = 0; i + 1 < cfg->n_wavs; i++) free(cfg->wavs[i]);
            cfg->wavs[0] = cfg->wavs[cfg->n_wavs - 1];
            cfg->n_wavs = 1;
        }
    } else if (!o->tone) {
        clips_find_default(o->wav, sizeof o->wav);
        add_wav(cfg, o->wav);
    }
    o->files = o->tone ? 1 : (unsigned)cfg->n_wavs;
    if (sc->configure) sc->configure(cfg);
    parse_url(&cfg->t, o->url);
}

void opts_cleanup(struct load_cfg *cfg) {
    for (size_t i = 0; i < cfg->n_wavs; i++) free(cfg->wavs[i]);
    free(cfg->wavs);
    cfg->wavs = NULL;
    cfg->n_wavs = 0;
}

unsigned opts_max_target(const struct load_cfg *cfg) {
    const struct scenario *sc = cfg->sc;
    if (sc->max_target) return sc->max_target(cfg);
    return sc->first_target ? sc->first_target(cfg) : cfg->o.sessions;
}
