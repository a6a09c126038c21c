/* Webhooks (docs/API.md "Webhooks"): a finished job with a callback URL
 * leaves an entry in the queue's webhook outbox (store/jobs.h); every
 * worker takes due entries (and those whose taker died), POSTs the job to
 * the URL with libcurl (net/httpc.h) on its loop, signed the Standard
 * Webhooks way, and retries with a doubling delay: a 2xx delivers, a 4xx
 * other than 408 and 429 stops at once, anything else (5xx, 408, 429, no
 * answer) is tried again up to ASR_WEBHOOK_MAX_ATTEMPTS. The entry stays
 * in Redis until its outcome is recorded, so a worker that dies while it
 * holds one leaves it to another (at least once; the receiver dedups on
 * webhook-id, which is the same for every attempt). */
#ifndef ASRD_API_WEBHOOK_H
#define ASRD_API_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "base/util.h"
#include "net/httpc.h"
#include "store/jobs.h"

struct webhooks;

/* Starts polling the outbox of q (every 200 ms while there is room for
 * more deliveries). env, q and http are borrowed and must outlive it. */
struct webhooks *webhooks_start(struct api_env *env, struct jobs *q, struct httpc *http);
/* Stops polling and drops the deliveries in progress (their entries stay
 * in the outbox and are taken over once their lease runs out); frees w
 * once its handles closed. */
void webhooks_stop(struct webhooks *w);
/* Deliveries held (in flight or waiting to retry). */
size_t webhooks_held(const struct webhooks *w);

/* The Standard Webhooks signature of a message: "v1," + base64 of
 * HMAC-SHA256(key, msg_id + "." + ts + "." + body), where key is the
 * secret's bytes, base64-decoded when it starts with "whsec_". Writes the
 * NUL-terminated header value into out (at least 64 bytes). 0, or
 * ASR_EINVAL (a whsec_ secret that is not base64, out too small). */
int webhook_sign(const char *secret, const char *msg_id, uint64_t ts, const char *body, size_t len, char *out,
                 size_t outlen);

/* The body POSTed: {"type":event,"timestamp":...,"data":<the job object
 * with its result>}. */
int webhook_payload(struct buf *out, const char *event, const struct jobs_view *job, uint64_t now_ms);

#endif
