/* WebSocket connection after the upgrade: wslay does framing, masking,
 * fragmentation, ping/pong and the close handshake; this module adds the
 * message size cap (close 1009), the bounded send queue with its drop policy
 * (PROTOCOL.md "Slow readers") and read pausing for backpressure.
 *
 * Send queue: ws_send() copies a message into the queue. The queue is fed to
 * wslay, and so to the socket, only when the connection has nothing unsent,
 * so everything not yet on the wire is still in the queue where the policy
 * can act: past ASR_MAX_SEND_QUEUE_BYTES or _SIZE the oldest droppable
 * message (a partial) is dropped and counted; after slow_client_threshold
 * overflows in a row the connection is closed with 1008. */
#ifndef ASRD_WS_H
#define ASRD_WS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct ws_conn;

struct ws_limits {
    size_t max_message_bytes;     /* largest incoming message */
    size_t max_queue_bytes;       /* send queue bound, bytes */
    size_t max_queue_msgs;        /* send queue bound, messages */
    int    slow_client_threshold; /* overflows in a row before 1008 */
};

struct ws_handler {
    void (*on_text)(void *ctx, const uint8_t *p, size_t n);
    void (*on_binary)(void *ctx, const uint8_t *p, size_t n);
    void (*on_ping)(void *ctx);
    /* Once, when the connection is gone. code_sent: close code we sent (0 =
     * none); code_received: close code the peer sent (0 = none, 1005 = a
     * close frame without a code). */
    void (*on_closed)(void *ctx, int code_sent, int code_received);
};

/* Sec-WebSocket-Accept for a client key (RFC 6455 4.2.2): base64(SHA-1(key + GUID)). */
void ws_accept_key(const char *key, size_t len, char out[29]);

/* Takes over c (after http_upgrade): installs the WebSocket handler, feeds
 * the bytes that followed the request head. Returns NULL on failure (c is
 * closed then). */
struct ws_conn *ws_start(struct conn *c, const struct ws_limits *lim, const struct ws_handler *h,
                         void *ctx, const void *rest, size_t rest_len);

/* Queues a text message (copied). droppable: may be dropped when the queue
 * overflows (partials). Returns 0, or ASR_EIO when closing. */
int ws_send_text(struct ws_conn *ws, const char *p, size_t n, int droppable);

/* Starts the close handshake with code/reason. after_queued: 1 sends what
 * is queued first (final before 1000/1001), 0 drops it (1008/1009). */
void ws_close(struct ws_conn *ws, int code, const char *reason, int after_queued);

void ws_pause(struct ws_conn *ws);
void ws_resume(struct ws_conn *ws);

#endif
