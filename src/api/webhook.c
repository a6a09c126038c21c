/* Webhook deliveries (webhook.h). */
#include "api/webhook.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobreq.h"
#include "api/jobview.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/metrics.h"

#define HOOK_POLL_MS      200
#define HOOK_MAX_HELD     64
#define HOOK_MAX_DELAY_MS 3600000u

/* One webhook held by this worker: in flight, or waiting for its retry. */
struct delivery {
    struct webhooks *w;                /* borrowed */
    char     entry[64];                /* outbox entry */
    char     job_id[40];
    char     event[32];
    char     msg_id[96];               /* webhook-id: the same for every attempt */
    char     url[JOBREQ_URL_MAX + 1];
    struct buf body;                   /* the payload, fixed when taken */
    uint64_t attempts;                 /* made so far (a taken-over entry goes on counting) */
    uv_timer_t timer;                  /* the wait before the next attempt */
    struct httpc_xfer *x;              /* the attempt in flight, or NULL */
    struct delivery *next, *prev;
};

struct webhooks {
    struct api_env *env;               /* borrowed */
    struct jobs    *q;                 /* borrowed */
    struct httpc   *http;              /* borrowed */
    uv_timer_t      poll;              /* the outbox, every HOOK_POLL_MS */
    uv_timer_t      renew;             /* keeps the held entries' leases */
    struct delivery *held;
    size_t          n_held;
    int             taking;            /* a jobs_hooks_take is out */
    int             stopped;
    int             handles_open;
};

/* ---- signing and payload ----------------------------------------------------------- */

int webhook_sign(const char *secret, const char *msg_id, uint64_t ts, const char *body, size_t len, char *out,
                 size_t outlen) {
    unsigned char key[512];
    size_t klen = 0;
    if (strncmp(secret, "whsec_", 6) == 0) {
        const char *b64 = secret + 6;
        if (sodium_base642bin(key, sizeof key, b64, strlen(b64), NULL, &klen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
            return ASR_EINVAL;
    } else {
        klen = strlen(secret);
        if (klen > sizeof key) return ASR_EINVAL;
        memcpy(key, secret, klen);
    }
    char tsbuf[24];
    snprintf(tsbuf, sizeof tsbuf, "%llu", (unsigned long long)ts);
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, key, klen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg_id, strlen(msg_id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)tsbuf, strlen(tsbuf));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(key, sizeof key);
    size_t need = sodium_base64_ENCODED_LEN(sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    if (outlen < need + 3) return ASR_EINVAL;
    memcpy(out, "v1,", 3);
    sodium_bin2base64(out + 3, outlen - 3, mac, sizeof mac, sodium_base64_VARIANT_ORIGINAL);
    return 0;
}

int webhook_payload(struct buf *out, const char *event, const struct jobs_view *job, uint64_t now_ms) {
    char t[40];
    jobview_time(t, sizeof t, now_ms);
    int bad = buf_puts(out, "{\"type\":");
    bad |= buf_json_str(out, event, strlen(event));
    bad |= buf_printf(out, ",\"timestamp\":\"%s\",\"data\":", t);
    bad |= jobview_json(out, job, 1);
    bad |= buf_puts(out, "}");
    return bad ? ASR_ENOMEM : 0;
}

/* ---- deliveries ------------------------------------------------------------------------ */

static void maybe_free(struct webhooks *w) {
    if (w->stopped && !w->handles_open && !w->taking) free(w);
}

static void on_delivery_closed(uv_handle_t *h) {
    struct delivery *d = h->data;
    struct webhooks *w = d->w;
    buf_cleanup(&d->body);
    free(d);
    w->handles_open--;
    maybe_free(w);
}

static void delivery_end(struct delivery *d) {
    struct webhooks *w = d->w;
    if (d->prev) d->prev->next = d->next;
    else w->held = d->next;
    if (d->next) d->next->prev = d->prev;
    w->n_held--;
    if (d->x) httpc_cancel(d->x);
    d->x = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, on_delivery_closed);
}

static void log_hook(enum log_level lv, const char *msg, const struct delivery *d, long status, const char *why) {
    struct log_line *l = log_begin(lv, msg);
    if (!l) return;
    log_str(l, "job_id", d->job_id);
    log_str(l, "event", d->event);
    log_u64(l, "attempt", d->attempts);
    if (status) log_u64(l, "status", (uint64_t)status);
    if (why) log_str(l, "error", why);
    log_end(l);
}

/* Records the outcome in the outbox (fire and forget: if Redis does not
 * hear it, the entry is taken over later and delivered again: at least
 * once) and forgets the delivery. */
static void finish(struct delivery *d, const char *outcome) {
    (void)jobs_hook_done(d->w->q, d->entry, d->job_id, outcome, d->attempts, NULL, NULL);
    delivery_end(d);
}

static void attempt(struct delivery *d);

static void on_retry_timer(uv_timer_t *t) { attempt(t->data); }

static void on_response(void *arg, const struct httpc_res *r) {
    struct delivery *d = arg;
    struct webhooks *w = d->w;
    d->x = NULL;
    long st = r->err == HTTPC_OK ? r->status : 0;
    if (st >= 200 && st < 300) {
        metrics.hooks[HOOK_DELIVERED]++;
        log_hook(LOG_INFO, "webhook delivered", d, st, NULL);
        finish(d, "delivered");
        return;
    }
    if ((st >= 400 && st < 500 && st != 408 && st != 429) || r->err == HTTPC_REFUSED || r->err == HTTPC_BAD_URL) {
        /* the receiver said no, or the URL can never be reached from here */
        metrics.hooks[HOOK_REJECTED]++;
        log_hook(LOG_WARN, "webhook rejected", d, st, r->err ? r->error : NULL);
        finish(d, "rejected");
        return;
    }
    if (d->attempts >= (uint64_t)w->env->cfg->webhook_max_attempts) {
        metrics.hooks[HOOK_GAVE_UP]++;
        log_hook(LOG_WARN, "webhook failed", d, st, r->err ? r->error : NULL);
        finish(d, "failed");
        return;
    }
    metrics.hooks[HOOK_RETRIED]++;
    uint64_t delay = (uint64_t)w->env->cfg->webhook_retry_ms;
    for (uint64_t i = 1; i < d->attempts && delay < HOOK_MAX_DELAY_MS; i++) delay *= 2;
    if (delay > HOOK_MAX_DELAY_MS) delay = HOOK_MAX_DELAY_MS;
    log_hook(LOG_INFO, "webhook attempt failed, retrying", d, st, r->err ? r->error : NULL);
    uv_timer_start(&d->timer, on_retry_timer, delay, 0);
}

static void attempt(struct delivery *d) {
    struct webhooks *w = d->w;
    const struct config *c = w->env->cfg;
    d->attempts++;
    (void)jobs_hook_attempt(w->q, d->entry, d->job_id, d->attempts, NULL, NULL);
    uint64_t ts = util_wall_ms() / 1000;
    char h_id[128], h_ts[64], h_sig[128], sig[96];
    snprintf(h_id, sizeof h_id, "webhook-id: %s", d->msg_id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %llu", (unsigned long long)ts);
    const char *headers[5] = {"Content-Type: application/json", h_id, h_ts, NULL, NULL};
    if (c->webhook_secret[0] &&
        webhook_sign(c->webhook_secret, d->msg_id, ts, d->body.data, d->body.len, sig, sizeof sig) == 0) {
        snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
        headers[3] = h_sig;
    }
    struct httpc_req r = {.method = "POST", .url = d->url, .headers = headers, .body = d->body.data,
                          .body_len = d->body.len, .max_bytes = 65536,
                          .timeout_ms = (uint64_t)c->webhook_timeout_s * 1000,
                          .allow_private = c->outbound_allow_private};
    int rc = httpc_request(w->http, &r, on_response, d, &d->x);
    if (rc != 0) {
        d->x = NULL;
        struct httpc_res fake = {.err = HTTPC_FAILED, .error = "could not start the request"};
        on_response(d, &fake);
    }
}

/* ---- the outbox ----------------------------------------------------------------------- */

static void on_hooks(void *arg, int status, size_t n, const struct jobs_hook *hooks) {
    struct webhooks *w = arg;
    w->taking = 0;
    if (w->stopped) {
        maybe_free(w);
        return;        /* taken entries stay pending: taken over after their lease */
    }
    for (size_t i = 0; status == STORE_OK && i < n; i++) {
        const struct jobs_hook *h = &hooks[i];
        if (!h->job) {
            metrics.hooks[HOOK_DROPPED]++;
            continue;   /* the script already removed the entry */
        }
        struct delivery *d = xcalloc(1, sizeof *d);
        d->w = w;
        snprintf(d->entry, sizeof d->entry, "%s", h->entry);
        snprintf(d->job_id, sizeof d->job_id, "%s", h->job_id);
        snprintf(d->event, sizeof d->event, "%s", h->event);
        snprintf(d->msg_id, sizeof d->msg_id, "msg_%s_%s", h->job_id,
                 strchr(h->event, '.') ? strchr(h->event, '.') + 1 : h->event);
        snprintf(d->url, sizeof d->url, "%s", h->job->callback);
        d->attempts = h->job->hook_attempts;
        buf_init(&d->body, 0);
        if (webhook_payload(&d->body, h->event, h->job, util_wall_ms()) != 0) {
            buf_cleanup(&d->body);
            free(d);
            continue;
        }
        uv_timer_init(w->env->loop, &d->timer);
        d->timer.data = d;
        w->handles_open++;
        d->next = w->held;
        if (d->next) d->next->prev = d;
        w->held = d;
        w->n_held++;
        if (!d->url[0]) {                 /* the job lost its callback: nothing to do */
            metrics.hooks[HOOK_DROPPED]++;
            finish(d, "gone");
            continue;
        }
        attempt(d);
    }
}

static void on_poll(uv_timer_t *t) {
    struct webhooks *w = t->data;
    if (w->stopped || w->taking || w->n_held >= HOOK_MAX_HELD || !jobs_up(w->q)) return;
    if (jobs_hooks_take(w->q, HOOK_MAX_HELD - w->n_held, on_hooks, w) == 0) w->taking = 1;
}

static void on_renew(uv_timer_t *t) {
    struct webhooks *w = t->data;
    for (struct delivery *d = w->held; d; d = d->next)
        (void)jobs_hook_attempt(w->q, d->entry, d->job_id, d->attempts, NULL, NULL);
}

static void on_timer_closed(uv_handle_t *h) {
    struct webhooks *w = h->data;
    w->handles_open--;
    maybe_free(w);
}

struct webhooks *webhooks_start(struct api_env *env, struct jobs *q, struct httpc *http) {
    struct webhooks *w = xcalloc(1, sizeof *w);
    w->env = env;
    w->q = q;
    w->http = http;
    uv_timer_init(env->loop, &w->poll);
    w->poll.data = w;
    uv_timer_start(&w->poll, on_poll, HOOK_POLL_MS, HOOK_POLL_MS);
    uv_unref((uv_handle_t *)&w->poll);
    uint64_t every = (uint64_t)env->cfg->job_lease_s * 1000 / 3;
    uv_timer_init(env->loop, &w->renew);
    w->renew.data = w;
    uv_timer_start(&w->renew, on_renew, every, every);
    uv_unref((uv_handle_t *)&w->renew);
    w->handles_open = 2;
    return w;
}

void webhooks_stop(struct webhooks *w) {
    if (!w || w->stopped) return;
    w->stopped = 1;
    while (w->held) delivery_end(w->held);
    uv_timer_stop(&w->poll);
    uv_timer_stop(&w->renew);
    uv_close((uv_handle_t *)&w->poll, on_timer_closed);
    uv_close((uv_handle_t *)&w->renew, on_timer_closed);
}

size_t webhooks_held(const struct webhooks *w) { return w ? w->n_held : 0; }
