/* asrd-load --scenario jobs (jobs.h, docs/LOAD.md "jobs").
 *
 * Steady mode (--rate R for --duration D): a submission is due every 1/R s;
 * it goes out on an idle keep-alive connection of a pool (--connections),
 * and its latency runs from the time it was due, not sent, so a server (or
 * pool) that falls behind shows in the latency instead of slowing the
 * clock (no coordinated omission).
 *
 * Burst mode (--count N): N submissions as fast as --connections allow,
 * each with ?callback= pointing at a small HTTP receiver in this process;
 * a job is done when its webhook arrives, so the end-to-end time is submit
 * to result delivered (the server needs ASR_OUTBOUND_ALLOW_PRIVATE=1).
 * Jobs per second = N / (last webhook - first submission).
 *
 * Every submission's audio differs by a few trailing samples (--same:
 * identical audio, to measure joins and cache hits instead). With
 * --server-pid (the master), the server's CPU time (the master and its
 * children: workers, the private redis-server) over the run gives audio
 * seconds per CPU second. One libuv loop; loopback only. */
#define _GNU_SOURCE
#include "jobs.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <getopt.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/util.h"
#include "loadstat.h"

#define JL_MAX_CONNS 1024

static struct {
    char     host[64];
    unsigned port;
    char     wav[512];
    double   rate;                   /* steady: submissions per second */
    double   duration;               /* steady: seconds */
    unsigned count;                  /* burst: jobs; 0 = steady mode */
    unsigned conns;                  /* connections */
    int      same;                   /* identical audio every time */
    char     api_key[256];
    char     json_out[512];
    int      server_pid;
    double   timeout;                /* burst: seconds to wait for the webhooks */
    char     query[512];             /* extra query parameters (granularity=segment&...) */
} O = {.host = "127.0.0.1", .port = 8000, .rate = 50, .duration = 10, .conns = 16, .timeout = 300};

struct jconn;

static struct {
    uv_loop_t *loop;
    struct sockaddr_in addr;
    uint8_t  *audio;                 /* the WAV file */
    size_t    audio_len;
    double    audio_s;               /* its length */
    struct jconn *conns;
    uv_timer_t tick;
    uint64_t  t0_ns, first_submit_ns, last_done_ns;
    uint64_t  due, sent, answered, accepted, code429, code503, other, errors;
    uint64_t  done;                  /* webhooks received */
    struct loadstat_hist submit, e2e;
    uint64_t *submit_ns;             /* burst: per job index, when it was sent */
    long     *retry;                 /* burst: refused indices to send again (429/503), a stack */
    size_t    nretry;
    uint64_t  retry_at_ns;           /* not before (Retry-After) */
    uint64_t  retries;
    char    (*ids)[33];              /* burst: job ids by index */
    uv_tcp_t recv_srv;               /* the webhook receiver */
    unsigned recv_port;
    int       finished;
    double    cpu0, cpu1;
} S;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "asrd-load: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- the server's CPU time ----------------------------------------------------------- */

/* utime + stime (s) of pid and of every process whose parent it is. */
static double tree_cpu(int pid) {
    long hz = sysconf(_SC_CLK_TCK);
    double total = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], buf[1024];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *rp = strrchr(buf, ')');
        if (!rp) continue;
        int me = (int)strtol(e->d_name, NULL, 10), ppid = 0;
        unsigned long ut = 0, st = 0;
        /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (sscanf(rp + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid, &ut, &st) != 3) continue;
        if (me == pid || ppid == pid) total += (double)(ut + st) / (double)hz;
    }
    closedir(d);
    return total;
}

/* ---- client connections ------------------------------------------------------------- */

struct jconn {
    uv_tcp_t  tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    http_parser parser;
    int       up, busy, closing;
    uint64_t  due_ns;                /* the submission's scheduled (steady) or sent (burst) time */
    long      index;                 /* burst: the job's index */
    struct buf req;                  /* the request being sent */
    struct buf body;                 /* the answer's body */
    unsigned long retry_after;       /* the answer's Retry-After (s), 0 = none */
    int       hdr_is_ra;             /* the header being read is Retry-After */
    char      rbuf[65536];
};

static void pump(void);

static void conn_open(struct jconn *c);

static void on_conn_closed(uv_handle_t *h) {
    struct jconn *c = h->data;
    c->up = c->busy = c->closing = 0;
    if (!S.finished) conn_open(c);   /* the server closed a keep-alive connection: again */
}

static void conn_drop(struct jconn *c) {
    if (c->closing) return;
    c->closing = 1;
    if (c->busy) S.errors++, S.answered++;
    c->busy = 0;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static int on_body(http_parser *p, const char *at, size_t len) {
    struct jconn *c = p->data;
    buf_append(&c->body, at, len);
    return 0;
}

static int on_complete(http_parser *p) {
    struct jconn *c = p->data;
    uint64_t now = util_now_ns();
    unsigned st = p->status_code;
    S.answered++;
    loadstat_hist_add(&S.submit, (now - c->due_ns) / 1000);
    if (st == 200 || st == 202) {
        S.accepted++;
        if (c->index >= 0 && c->body.data) {
            const char *q = strstr(c->body.data, "\"id\":\"");
            if (q && strlen(q) >= 6 + 32) memcpy(S.ids[c->index], q + 6, 32);
        }
    } else if (st == 429 || st == 503) {
        if (st == 429) S.code429++;
        else S.code503++;
        if (c->index >= 0) {          /* burst: the same job again after Retry-After */
            unsigned long ra;
            ra = c->retry_after ? c->retry_after : 1;
            S.retry[S.nretry++] = c->index;
            uint64_t at = now + (uint64_t)ra * 1000000000ull;
            if (at > S.retry_at_ns) S.retry_at_ns = at;
        }
    } else {
        S.other++;
        if (S.other <= 3) fprintf(stderr, "asrd-load: POST /v1/jobs answered %u: %.200s\n", st, c->body.data ? c->body.data : "");
    }
    c->busy = 0;
    buf_reset(&c->body);
    return 0;
}

static int on_hfield(http_parser *p, const char *at, size_t len) {
    struct jconn *c = p->data;
    c->hdr_is_ra = len == 11 && strncasecmp(at, "Retry-After", 11) == 0;
    return 0;
}

static int on_hvalue(http_parser *p, const char *at, size_t len) {
    struct jconn *c = p->data;
    if (c->hdr_is_ra) {
        char t[16];
        snprintf(t, sizeof t, "%.*s", (int)(len < 15 ? len : 15), at);
        c->retry_after = strtoul(t, NULL, 10);
    }
    return 0;
}

static int on_begin(http_parser *p) {
    struct jconn *c = p->data;
    c->retry_after = 0;
    return 0;
}

static const http_parser_settings resp_settings = {.on_message_begin = on_begin, .on_header_field = on_hfield,
                                                   .on_header_value = on_hvalue, .on_body = on_body,
                                                   .on_message_complete = on_complete};

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
    struct jconn *c = h->data;
    (void)sug;
    *b = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    struct jconn *c = st->data;
    if (n < 0) {
        conn_drop(c);
        return;
    }
    size_t k = http_parser_execute(&c->parser, &resp_settings, b->base, (size_t)n);
    if ((ssize_t)k != n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        conn_drop(c);
        return;
    }
    if (!c->busy) pump();
}

static void on_connected(uv_connect_t *r, int status) {
    struct jconn *c = r->data;
    if (status != 0) {
        S.errors++;
        conn_drop(c);
        return;
    }
    c->up = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    pump();
}

static void conn_open(struct jconn *c) {
    uv_tcp_init(S.loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&S.addr, on_connected) != 0) conn_drop(c);
}

static void on_written(uv_write_t *w, int status) {
    struct jconn *c = w->data;
    if (status != 0) conn_drop(c);
}

/* Sends submission number k on c (its audio made distinct by k). */
static void send_submit(struct jconn *c, uint64_t k, uint64_t due_ns, long index) {
    char cb[160] = "";
    if (S.recv_port) snprintf(cb, sizeof cb, "callback=http%%3A%%2F%%2F127.0.0.1%%3A%u%%2Fhook&", S.recv_port);
    size_t extra = O.same ? 0 : 8;   /* 4 samples: the submission number */
    buf_reset(&c->req);
    buf_printf(&c->req,
               "POST /v1/jobs?%s%s HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: audio/wav\r\nContent-Length: %zu\r\n%s%s%s\r\n",
               cb, O.query, O.host, O.port, S.audio_len + extra, O.api_key[0] ? "X-API-Key: " : "", O.api_key,
               O.api_key[0] ? "\r\n" : "");
    size_t head = c->req.len;
    buf_append(&c->req, S.audio, S.audio_len);
    if (extra) {
        /* the WAV's data chunk grows by 8 bytes: patch both sizes (a RIFF written by sox/libsndfile) */
        uint8_t *w = (uint8_t *)c->req.data + head;
        uint32_t riff = (uint32_t)(w[4] | w[5] << 8 | w[6] << 16 | (uint32_t)w[7] << 24) + 8;
        w[4] = riff & 255, w[5] = riff >> 8 & 255, w[6] = riff >> 16 & 255, w[7] = riff >> 24 & 255;
        for (size_t i = 12; i + 8 <= S.audio_len; ) {
            uint32_t sz = (uint32_t)(w[i + 4] | w[i + 5] << 8 | w[i + 6] << 16 | (uint32_t)w[i + 7] << 24);
            if (memcmp(w + i, "data", 4) == 0) {
                sz += 8;
                w[i + 4] = sz & 255, w[i + 5] = sz >> 8 & 255, w[i + 6] = sz >> 16 & 255, w[i + 7] = sz >> 24 & 255;
                break;
            }
            i += 8 + sz + (sz & 1);
        }
        uint8_t tag[8];
        for (int i = 0; i < 8; i++) tag[i] = (uint8_t)(k >> (8 * i));
        buf_append(&c->req, tag, 8);
    }
    c->busy = 1;
    c->due_ns = due_ns;
    c->index = index;
    S.sent++;
    if (!S.first_submit_ns) S.first_submit_ns = util_now_ns();
    uv_buf_t b = uv_buf_init(c->req.data, (unsigned)c->req.len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) conn_drop(c);
}

static struct jconn *idle_conn(void) {
    for (unsigned i = 0; i < O.conns; i++)
        if (S.conns[i].up && !S.conns[i].busy && !S.conns[i].closing) return &S.conns[i];
    return NULL;
}

/* Sends what is due on idle connections. */
static void pump(void) {
    if (S.finished) return;
    uint64_t now = util_now_ns();
    if (O.count) {
        while (S.nretry && now >= S.retry_at_ns) {
            struct jconn *c = idle_conn();
            if (!c) return;
            long k = S.retry[--S.nretry];
            S.retries++;
            S.submit_ns[k] = now;
            send_submit(c, (uint64_t)k, now, k);
        }
        while (S.sent - S.retries < O.count) {
            struct jconn *c = idle_conn();
            if (!c) return;
            uint64_t k = S.sent - S.retries;
            S.submit_ns[k] = now;
            send_submit(c, k, now, (long)k);
        }
        return;
    }
    uint64_t period = (uint64_t)(1e9 / O.rate);
    uint64_t end = S.t0_ns + (uint64_t)(O.duration * 1e9);
    while (S.sent < S.due) {
        struct jconn *c = idle_conn();
        if (!c) return;
        uint64_t due = S.t0_ns + S.sent * period;
        send_submit(c, S.sent, due, -1);
    }
    (void)end;
}

/* ---- the webhook receiver ------------------------------------------------------------ */

struct rconn_ {
    uv_tcp_t tcp;
    http_parser parser;
    struct buf body;
    char rbuf[65536];
};

static void r_closed(uv_handle_t *h) {
    struct rconn_ *r = h->data;
    buf_cleanup(&r->body);
    free(r);
}

static int r_body(http_parser *p, const char *at, size_t len) {
    struct rconn_ *r = p->data;
    buf_append(&r->body, at, len);
    return 0;
}

static void r_written(uv_write_t *w, int status) {
    (void)status;
    free(w);
}

static int r_complete(http_parser *p) {
    struct rconn_ *r = p->data;
    uint64_t now = util_now_ns();
    const char *q = r->body.data ? strstr(r->body.data, "\"data\":{\"id\":\"") : NULL;
    if (q && strlen(q) >= 14 + 32) {
        for (unsigned i = 0; i < O.count; i++)
            if (memcmp(S.ids[i], q + 14, 32) == 0 && S.submit_ns[i]) {
                loadstat_hist_add(&S.e2e, (now - S.submit_ns[i]) / 1000);
                S.submit_ns[i] = 0;   /* once */
                S.done++;
                S.last_done_ns = now;
                break;
            }
    }
    buf_reset(&r->body);
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    uv_write_t *w = malloc(sizeof *w);
    if (w) {
        uv_buf_t b = uv_buf_init((char *)ok, sizeof ok - 1);
        if (uv_write(w, (uv_stream_t *)&r->tcp, &b, 1, r_written) != 0) free(w);
    }
    return 0;
}

static const http_parser_settings req_settings = {.on_body = r_body, .on_message_complete = r_complete};

static void r_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
    struct rconn_ *r = h->data;
    (void)sug;
    *b = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void r_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    struct rconn_ *r = st->data;
    if (n < 0 || (size_t)http_parser_execute(&r->parser, &req_settings, b->base, (size_t)n) != (size_t)n) {
        if (!uv_is_closing((uv_handle_t *)&r->tcp)) uv_close((uv_handle_t *)&r->tcp, r_closed);
    }
}

static void r_conn(uv_stream_t *srv, int status) {
    if (status != 0) return;
    struct rconn_ *r = xcalloc(1, sizeof *r);
    uv_tcp_init(S.loop, &r->tcp);
    r->tcp.data = r;
    buf_init(&r->body, 0);
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    if (uv_accept(srv, (uv_stream_t *)&r->tcp) != 0) {
        uv_close((uv_handle_t *)&r->tcp, r_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&r->tcp, r_alloc, r_read);
}

static void receiver_start(void) {
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(S.loop, &S.recv_srv);
    if (uv_tcp_bind(&S.recv_srv, (struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&S.recv_srv, 512, r_conn) != 0)
        die("cannot listen for webhooks");
    int len = sizeof a;
    uv_tcp_getsockname(&S.recv_srv, (struct sockaddr *)&a, &len);
    S.recv_port = ntohs(a.sin_port);
}

/* ---- the run ------------------------------------------------------------------------------ */

static void finish(void) {
    S.finished = 1;
    uv_timer_stop(&S.tick);
    uv_stop(S.loop);
}

static void on_tick(uv_timer_t *t) {
    uint64_t now = util_now_ns();
    double el = (double)(now - S.t0_ns) / 1e9;
    if (!O.count) {
        uint64_t period = (uint64_t)(1e9 / O.rate);
        uint64_t due = (now - S.t0_ns) / period + 1;
        uint64_t max = (uint64_t)(O.duration * O.rate);
        S.due = due < max ? due : max;
        pump();
        if (S.due >= max && S.answered >= S.sent && S.sent >= max) finish();
        if (el > O.duration + 30) finish();
        return;
    }
    pump();
    if (S.done >= O.count || el > O.timeout) finish();
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: asrd-load --scenario jobs [options]\n"
            "  --url http://HOST:PORT   the server (loopback only)          default http://127.0.0.1:8000\n"
            "  --wav FILE               the audio submitted (a WAV)         default tests/data/generated/speech16k.wav\n"
            "  --rate R                 steady mode: submissions per second default 50\n"
            "  --duration D             steady mode: seconds                 default 10\n"
            "  --count N                burst mode: N jobs, done when each one's webhook arrived\n"
            "  --connections K          keep-alive connections               default 16\n"
            "  --same                   identical audio every time (joins, cache hits)\n"
            "  --query Q                more query parameters, e.g. granularity=segment\n"
            "  --api-key KEY            X-API-Key\n"
            "  --server-pid PID         the master: its tree's CPU time over the run\n"
            "  --timeout S              burst mode: seconds to wait for the webhooks (default 300)\n"
            "  --json FILE              write the result as JSON\n");
}

static void parse(int argc, char **argv) {
    static const struct option lo[] = {
        {"scenario", 1, 0, 's'}, {"url", 1, 0, 'u'}, {"wav", 1, 0, 'w'}, {"rate", 1, 0, 'r'},
        {"duration", 1, 0, 'd'}, {"count", 1, 0, 'n'}, {"connections", 1, 0, 'c'}, {"same", 0, 0, 'S'},
        {"api-key", 1, 0, 'k'}, {"json", 1, 0, 'j'}, {"server-pid", 1, 0, 'p'}, {"timeout", 1, 0, 't'},
        {"query", 1, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    snprintf(O.wav, sizeof O.wav, "tests/data/generated/speech16k.wav");
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 's': if (strcmp(optarg, "jobs") != 0) die("--scenario: jobs"); break;
        case 'u': {
            unsigned port = 0;
            char host[64];
            if (sscanf(optarg, "http://%63[^:/]:%u", host, &port) != 2) die("--url: http://HOST:PORT");
            snprintf(O.host, sizeof O.host, "%s", host);
            O.port = port;
            break;
        }
        case 'w': snprintf(O.wav, sizeof O.wav, "%s", optarg); break;
        case 'r': O.rate = strtod(optarg, NULL); break;
        case 'd': O.duration = strtod(optarg, NULL); break;
        case 'n': O.count = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': O.conns = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'S': O.same = 1; break;
        case 'k': snprintf(O.api_key, sizeof O.api_key, "%s", optarg); break;
        case 'j': snprintf(O.json_out, sizeof O.json_out, "%s", optarg); break;
        case 'p': O.server_pid = (int)strtol(optarg, NULL, 10); break;
        case 't': O.timeout = strtod(optarg, NULL); break;
        case 'q': snprintf(O.query, sizeof O.query, "%s&", optarg); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (O.rate <= 0 || O.rate > 100000 || O.duration <= 0 || O.conns == 0 || O.conns > JL_MAX_CONNS)
        die("bad --rate, --duration or --connections");
    if (strcmp(O.host, "localhost") == 0) snprintf(O.host, sizeof O.host, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, O.host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
        die("refusing %s: asrd-load only targets loopback", O.host);
}

static void load_wav(void) {
    FILE *f = fopen(O.wav, "rb");
    if (!f) die("cannot open %s", O.wav);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 44) die("%s is not a WAV", O.wav);
    S.audio = xmalloc((size_t)n);
    if (fread(S.audio, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", O.wav);
    fclose(f);
    S.audio_len = (size_t)n;
    if (memcmp(S.audio, "RIFF", 4) != 0 || memcmp(S.audio + 8, "WAVE", 4) != 0) die("%s is not a RIFF WAV", O.wav);
    uint32_t rate = S.audio[24] | S.audio[25] << 8 | S.audio[26] << 16 | (uint32_t)S.audio[27] << 24;
    unsigned ch = S.audio[22], bits = S.audio[34];
    double bytes_per_s = (double)rate * ch * (bits / 8);
    S.audio_s = bytes_per_s > 0 ? (double)(S.audio_len - 44) / bytes_per_s : 0;
}

static void pct_json(FILE *f, const char *name, const struct loadstat_hist *h) {
    struct loadstat_pct p;
    loadstat_hist_summary(h, &p);
    fprintf(f, "\"%s\":{\"count\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f}",
            name, (unsigned long long)p.count, p.p50, p.p90, p.p99, p.p999, p.max, p.mean);
}

int jobs_scenario_wanted(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scenario=jobs") == 0) return 1;
        if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc && strcmp(argv[i + 1], "jobs") == 0) return 1;
    }
    return 0;
}

int jobs_scenario_main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    load_wav();
    S.loop = uv_default_loop();
    uv_ip4_addr(O.host, (int)O.port, &S.addr);
    loadstat_hist_reset(&S.submit);
    loadstat_hist_reset(&S.e2e);
    if (O.count) {
        S.submit_ns = xcalloc(O.count, sizeof *S.submit_ns);
        S.retry = xcalloc(O.count, sizeof *S.retry);
        S.ids = xcalloc(O.count, sizeof *S.ids);
        receiver_start();
    }
    S.conns = xcalloc(O.conns, sizeof *S.conns);
    for (unsigned i = 0; i < O.conns; i++) {
        buf_init(&S.conns[i].req, 0);
        buf_init(&S.conns[i].body, 0);
        S.conns[i].index = -1;
        conn_open(&S.conns[i]);
    }
    /* let the connections open before the clock starts */
    uint64_t wait_end = util_now_ns() + 2000000000ull;
    while (util_now_ns() < wait_end) {
        uv_run(S.loop, UV_RUN_NOWAIT);
        unsigned up = 0;
        for (unsigned i = 0; i < O.conns; i++) up += S.conns[i].up;
        if (up == O.conns) break;
        usleep(1000);
    }
    if (O.server_pid) S.cpu0 = tree_cpu(O.server_pid);
    S.t0_ns = util_now_ns();
    uv_timer_init(S.loop, &S.tick);
    uv_timer_start(&S.tick, on_tick, 0, 1);
    uv_run(S.loop, UV_RUN_DEFAULT);
    if (O.server_pid) S.cpu1 = tree_cpu(O.server_pid);
    double elapsed = (double)(util_now_ns() - S.t0_ns) / 1e9;
    double e2e_span = O.count && S.last_done_ns ? (double)(S.last_done_ns - S.first_submit_ns) / 1e9 : 0;
    double cpu = S.cpu1 - S.cpu0;
    double audio = O.count ? S.audio_s * (double)S.done : S.audio_s * (double)S.accepted;
    struct loadstat_pct sp, ep;
    loadstat_hist_summary(&S.submit, &sp);
    loadstat_hist_summary(&S.e2e, &ep);
    printf("jobs: %s, %llu submitted (%llu of them again after a 429/503), %llu accepted, 429: %llu, 503: %llu, "
           "other: %llu, connection errors: %llu\n",
           O.count ? "burst" : "steady", (unsigned long long)S.sent, (unsigned long long)S.retries,
           (unsigned long long)S.accepted,
           (unsigned long long)S.code429, (unsigned long long)S.code503, (unsigned long long)S.other,
           (unsigned long long)S.errors);
    printf("submit latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (rate %.1f/s, %.1f s)\n", sp.p50,
           sp.p90, sp.p99, sp.p999, sp.max, O.count ? (double)S.sent / (elapsed > 0 ? elapsed : 1) : O.rate, elapsed);
    if (O.count)
        printf("end to end: %llu of %u jobs' webhooks in %.2f s = %.1f jobs/s; submit->webhook ms p50 %.1f p99 %.1f max %.1f\n",
               (unsigned long long)S.done, O.count, e2e_span, e2e_span > 0 ? (double)S.done / e2e_span : 0, ep.p50, ep.p99,
               ep.max);
    if (O.server_pid)
        printf("server CPU %.2f s for %.1f s of audio: %.1f audio s per CPU s\n", cpu, audio, cpu > 0 ? audio / cpu : 0);
    if (O.json_out[0]) {
        FILE *f = fopen(O.json_out, "w");
        if (!f) die("cannot write %s", O.json_out);
        fprintf(f, "{\"scenario\":\"jobs\",\"mode\":\"%s\",\"rate\":%.3f,\"duration_s\":%.3f,\"count\":%u,"
                   "\"connections\":%u,\"same_audio\":%s,\"audio_s_each\":%.3f,\"submitted\":%llu,\"accepted\":%llu,"
                   "\"refused_429\":%llu,\"refused_503\":%llu,\"other\":%llu,\"connection_errors\":%llu,",
                O.count ? "burst" : "steady", O.rate, elapsed, O.count, O.conns, O.same ? "true" : "false", S.audio_s,
                (unsigned long long)S.sent, (unsigned long long)S.accepted, (unsigned long long)S.code429,
                (unsigned long long)S.code503, (unsigned long long)S.other, (unsigned long long)S.errors);
        pct_json(f, "submit_ms", &S.submit);
        fprintf(f, ",");
        pct_json(f, "end_to_end_ms", &S.e2e);
        fprintf(f, ",\"done\":%llu,\"jobs_per_s\":%.3f,\"server_cpu_s\":%.3f,\"audio_s\":%.3f,\"audio_s_per_cpu_s\":%.3f}\n",
                (unsigned long long)S.done, e2e_span > 0 ? (double)S.done / e2e_span : 0, cpu, audio,
                cpu > 0 ? audio / cpu : 0);
        fclose(f);
    }
    int bad = S.errors || S.other || (O.count && S.done < O.count);
    return bad ? 1 : 0;
}
