/* The driver of REST uploads and the rest scenario (rest.h). */
#define _GNU_SOURCE
#include "rest.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/util.h"
#include "clips.h"
#include "opts.h"
#include "report.h"
#include "runner.h"

#define REST_TIMEOUT_NS (30ull * 1000000000ull)

struct rest_client {
    struct load *L;                     /* borrowed */
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

struct rest_wreq {
    uv_write_t req;
    struct rest_client *rc;
    char       data[];
};

static char rbuf_shared[65536];         /* read buffer: consumed inside the read callback */

static struct rest_client *clients(struct load *L) { return L->drv; }

static void rest_start(struct rest_client *rc);

/* --requests reached: no request starts any more. */
static int rest_quota_done(const struct load *L) {
    return L->cfg->o.rest_requests && L->ph.rest_sent >= L->cfg->o.rest_requests;
}

static void on_rest_close(uv_handle_t *h) {
    struct rest_client *rc = h->data;
    struct load *L = rc->L;
    rc->in_use = rc->closing = 0;
    L->ph.open--;
    /* A failed connection is retried by the spawner after 100 ms, so a
     * refusing server is not hammered in a tight connect loop. */
    if (rest_quota_done(L)) {
        /* The last requests are answered: the phase ends now. */
        if (!L->ph.stopping && L->ph.open == 0) runner_stop_now(L);
    } else if (rc->failed) {
        rc->retry_at = util_now_ns() + 100000000ull;
        runner_spawn_kick(L, 101);
    } else if (!L->ph.stopping) {
        rest_start(rc);
    }
    runner_maybe_finish(L);
}

static void rest_close(struct rest_client *rc) {
    if (!rc->in_use || rc->closing) return;
    rc->closing = 1;
    uv_close((uv_handle_t *)&rc->tcp, on_rest_close);
}

static void rest_failed(struct rest_client *rc, const char *why) {
    struct loadstat_run *run = &rc->L->ph.run;
    run->request_failures++;
    rc->failed = 1;
    loadstat_counts_add(&run->request_errors, why, 1);
    rc->busy = 0;
    rest_close(rc);
}

static void on_rest_write(uv_write_t *req, int status) {
    struct rest_wreq *w = (struct rest_wreq *)req;
    struct rest_client *rc = w->rc;
    rc->wq--;
    free(w);
    if (status < 0 && rc->busy && !rc->closing) rest_failed(rc, uv_err_name(status));
}

static void rest_send(struct rest_client *rc) {
    struct load *L = rc->L;
    const struct clips *au = L->clips;
    const char *key = L->cfg->t.api_key;
    if (rest_quota_done(L)) {
        rc->busy = 0;
        rest_close(rc);
        return;
    }
    L->ph.rest_sent++;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST /v1/transcribe HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "User-Agent: asrd-load\r\n%s%s%s\r\n",
                     L->cfg->t.host, au->file_is_wav ? "audio/wav" : "application/octet-stream", au->file_len,
                     key[0] ? "Authorization: Bearer " : "", key, key[0] ? "\r\n" : "");
    struct rest_wreq *w = xmalloc(sizeof *w + (size_t)n);
    w->rc = rc;
    memcpy(w->data, head, (size_t)n);
    uv_buf_t bufs[2] = {uv_buf_init(w->data, (unsigned)n), uv_buf_init((char *)au->file, (unsigned)au->file_len)};
    rc->busy = 1;
    rc->complete = 0;
    rc->sent_ns = util_now_ns();
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

static void rest_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    b->base = rbuf_shared;
    b->len = sizeof rbuf_shared;
}

static void on_rest_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct rest_client *rc = st->data;
    struct load *L = rc->L;
    if (rc->closing) return;
    if (nread < 0) {
        if (rc->busy) rest_failed(rc, nread == UV_EOF ? "EOF" : uv_err_name((int)nread));
        else rest_close(rc);
        return;
    }
    if (nread == 0) return;
    size_t used = http_parser_execute(&rc->hp, &rest_settings, b->base, (size_t)nread);
    if (rc->complete) {
        uint64_t lat = (util_now_ns() - rc->sent_ns) / 1000;
        char code[16];
        snprintf(code, sizeof code, "%u", rc->hp.status_code);
        L->ph.run.requests++;
        loadstat_counts_add(&L->ph.run.http_status, code, 1);
        if (rc->hp.status_code != 200) L->ph.run.request_failures++;
        loadstat_hist_add(&L->ph.lat, lat);
        loadstat_hist_add(&L->interval, lat);
        rc->busy = 0;
        rc->complete = 0;
        if (L->ph.stopping || !http_should_keep_alive(&rc->hp) || used != (size_t)nread) rest_close(rc);
        else rest_send(rc);
        return;
    }
    if (HTTP_PARSER_ERRNO(&rc->hp) != HPE_OK) rest_failed(rc, "bad_response");
}

static void on_rest_connect(uv_connect_t *req, int status) {
    struct rest_client *rc = req->data;
    if (rc->closing) return;
    if (status < 0) {
        rc->L->ph.run.connect_failures++;
        loadstat_counts_add(&rc->L->ph.run.connect_errors, uv_err_name(status), 1);
        rc->failed = 1;
        rest_close(rc);
        return;
    }
    http_parser_init(&rc->hp, HTTP_RESPONSE);
    rc->hp.data = rc;
    uv_read_start((uv_stream_t *)&rc->tcp, rest_alloc, on_rest_read);
    rest_send(rc);
}

static void rest_start(struct rest_client *rc) {
    struct load *L = rc->L;
    if (L->ph.stopping || rest_quota_done(L)) return;
    memset(rc, 0, sizeof *rc);
    rc->L = L;
    if (uv_tcp_init_ex(L->loop, &rc->tcp, L->cfg->t.addr.ss_family) != 0) return;
    rc->tcp.data = rc;
    rc->creq.data = rc;
    rc->in_use = 1;
    L->ph.open++;
    rc->sent_ns = util_now_ns();
    rc->busy = 1;   /* the connect counts toward the request's deadline */
    uv_tcp_nodelay(&rc->tcp, 1);
    int r = uv_tcp_connect(&rc->creq, &rc->tcp, (const struct sockaddr *)&L->cfg->t.addr, on_rest_connect);
    if (r != 0) rest_failed(rc, uv_err_name(r));
}

/* ---- the driver -------------------------------------------------------- */

static void rest_init(struct load *L) {
    unsigned n = L->cfg->o.rest_concurrency;
    struct rest_client *v = xcalloc(n, sizeof *v);
    for (unsigned i = 0; i < n; i++) v[i].L = L;
    L->drv = v;
}

static void rest_cleanup(struct load *L) {
    free(L->drv);
    L->drv = NULL;
}

static void rest_phase_start(struct load *L) {
    for (unsigned i = 0; i < L->cfg->o.rest_concurrency; i++) rest_start(&clients(L)[i]);
}

/* Restarts the clients whose retry is due; re-arms for the next one. */
static void rest_spawn(struct load *L) {
    uint64_t now = util_now_ns(), next = UINT64_MAX;
    for (unsigned i = 0; i < L->cfg->o.rest_concurrency; i++) {
        struct rest_client *rc = &clients(L)[i];
        if (rc->in_use) continue;
        if (now >= rc->retry_at) rest_start(rc);
        else if (rc->retry_at < next) next = rc->retry_at;
    }
    if (next != UINT64_MAX) runner_spawn_kick(L, (next - now) / 1000000 + 1);
}

static void rest_stop(struct load *L) {
    for (unsigned i = 0; i < L->cfg->o.rest_concurrency; i++)
        if (clients(L)[i].in_use && !clients(L)[i].busy) rest_close(&clients(L)[i]);
}

static void rest_cut(struct load *L) {
    for (unsigned i = 0; i < L->cfg->o.rest_concurrency; i++) {
        struct rest_client *rc = &clients(L)[i];
        if (!rc->in_use) continue;
        if (rc->busy) rest_failed(rc, "timeout");
        else rest_close(rc);
    }
}

static int rest_all_gone(struct load *L) { return rest_quota_done(L) && L->ph.open == 0; }

static unsigned rest_tick(struct load *L, uint64_t now, unsigned *stalled) {
    for (unsigned i = 0; i < L->cfg->o.rest_concurrency; i++) {
        struct rest_client *rc = &clients(L)[i];
        if (rc->in_use && rc->busy && !rc->closing && now - rc->sent_ns > REST_TIMEOUT_NS) rest_failed(rc, "timeout");
    }
    *stalled = 0;
    return L->ph.open;
}

static void rest_interrupt(struct load *L, uint64_t now) {}

static void rest_close_handles(struct load *L) {}

const struct load_driver rest_driver = {
    .name = "rest",
    .rest = 1,
    .init = rest_init,
    .cleanup = rest_cleanup,
    .phase_start = rest_phase_start,
    .spawn = rest_spawn,
    .stop = rest_stop,
    .cut = rest_cut,
    .all_gone = rest_all_gone,
    .tick = rest_tick,
    .interrupt = rest_interrupt,
    .close = rest_close_handles,
    .report = report_rest,
};

static unsigned rest_target(const struct load_cfg *cfg) { return cfg->o.rest_concurrency; }

/* POST the audio file back to back (docs/LOAD.md "Scenarios"). */
const struct scenario sc_rest = {
    .name = "rest",
    .flags = SCF_NO_RAMP,
    .driver = &rest_driver,
    .first_target = rest_target,
};
