/* fuzz_ws: a client's bytes after a successful WebSocket upgrade, through
 * wslay into src/net/ws.c (message cap, send queue, close handshake, pausing)
 * and src/api/stream.c (docs/API.md messages, sessions, sequence numbers,
 * rate limit, stop/finalize, resume), with the mock engine answering.
 *
 * Input: two flags bytes, then the client's bytes.
 * byte 0:
 *   bits 0-1  sample_rate query: none (16000), 8000, 32000, 48000
 *   bit 2     the upgrade request and the first bytes in one write (they
 *             reach ws through http_upgrade's `rest`), else the client waits
 *             for the 101 first (and sends nothing if the upgrade is refused)
 *   bit 3     ASR_SHED_LOAD=1 (SERVER_BUSY instead of pausing)
 *   bits 4-7  write size: 0 = all at once, k = pieces of 2^(k-1) bytes with
 *             a loop turn between them (the first 4 KiB; then the rest)
 * byte 1:
 *   bit 0     frame mode: the rest is a list of frame records that the
 *             harness encodes as masked frames (below); else raw bytes
 *   bit 1     resume: the first half goes on one connection, which is then
 *             dropped without a close frame; the second half on a new
 *             connection that resumes the session (?session_id=...), sent
 *             only once that upgrade is answered 101
 *   bit 2     slow reader: replies are not read while sending
 *   bit 3     small socket buffers: the server's writes go short
 *   bit 4     half-close after the last byte instead of settling
 *   bit 5     ASR_MOCK_ERROR_RATE=0.25 (MODEL_ERROR answers)
 *   bit 6     the worker's message budget is 8 KiB (set on the worker's
 *             budget directly: the setting allows no less than twice the
 *             largest message), so a message reassembled from pieces past it
 *             closes the connection 1013 (src/net/ws.c)
 *
 * Oracle (docs/API.md "What the server sends", "Sequence numbers", RFC 6455):
 * what the server sent after its 101 must be unmasked frames with no RSV
 * bits and known opcodes, control frames short and whole, nothing after a
 * close frame, a close code RFC 6455 allows; every text message a JSON
 * object whose "type" is one of the five, the first one `session`;
 * `partial`s and in-order `error`s (all but OUT_OF_ORDER and
 * INVALID_MESSAGE) carry strictly increasing sequence numbers, above the
 * session's last_sequence; a `final` never names a sequence not yet
 * answered. Skipped past the 64 KiB the harness keeps of the replies.
 *
 * Frame record (frame mode): [b0 = FIN|RSV1-3|opcode, as on the wire]
 *   [b1: bit 0 = no mask (a protocol error), bit 1 = a fixed non-zero mask
 *   key instead of 0, bit 2 = 16-bit length even when short, bits 4-7 = r:
 *   the frame is sent 4r times instead of once (so that a small input can
 *   outrun the rate limit or fill the engine queue); at most 1 MiB in all]
 *   [len: 2 bytes little-endian] [payload: len bytes, fewer at the end]. */
#define _GNU_SOURCE /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common.h"
#include "net.h"
#include "base/util.h"

#define UPGRADE_FMT                                                                                   \
    "GET /v1/transcribe/stream%s%s HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"                 \
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                         \
    "Sec-WebSocket-Version: 13\r\n\r\n"

#define WIRE_MAX (1u << 20)  /* bytes of encoded frames per input */
#define SPLIT_MAX 4096       /* bytes written in small pieces; the rest at once */

static struct buf wire_;   /* encoded frames (frame mode); reused */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_net_init();
    buf_init(&wire_, 0);
    return 0;
}

/* Encodes frame records into wire_. */
static void encode_frames(const uint8_t *p, size_t n) {
    static const uint8_t key_fixed[4] = {0x37, 0xfa, 0x21, 0x3d};
    buf_reset(&wire_);
    while (n >= 4) {
        uint8_t b0 = p[0], opt = p[1];
        size_t len = (size_t)p[2] | (size_t)p[3] << 8;
        p += 4;
        n -= 4;
        if (len > n) len = n;
        uint8_t hdr[14];
        size_t h = 0;
        int masked = !(opt & 1);
        hdr[h++] = b0;
        if (len < 126 && !(opt & 4)) {
            hdr[h++] = (uint8_t)((masked ? 0x80 : 0) | len);
        } else {
            hdr[h++] = (uint8_t)((masked ? 0x80 : 0) | 126);
            hdr[h++] = (uint8_t)(len >> 8);
            hdr[h++] = (uint8_t)len;
        }
        const uint8_t *key = (opt & 2) ? key_fixed : (const uint8_t *)"\0\0\0\0";
        if (masked) {
            memcpy(hdr + h, key, 4);
            h += 4;
        }
        unsigned reps = (opt >> 4) ? (opt >> 4) * 4u : 1u;
        for (unsigned r = 0; r < reps && wire_.len + h + len <= WIRE_MAX; r++) {
            buf_append(&wire_, hdr, h);
            size_t at = wire_.len;
            buf_append(&wire_, p, len);
            if (masked)
                for (size_t i = 0; i < len; i++) wire_.data[at + i] ^= key[i & 3];
        }
        p += len;
        n -= len;
    }
}

/* Writes p[0..n) in pieces of `piece` bytes (the first SPLIT_MAX bytes;
 * what follows goes in one write: splitting deep into a megabyte of
 * repeated frames costs a loop turn per piece and finds nothing new). */
static void send_pieces(struct fuzz_client *fc, const uint8_t *p, size_t n, size_t piece) {
    if (!piece) piece = n ? n : 1;
    for (size_t off = 0; off < n && !fc->eof;) {
        size_t k = off >= SPLIT_MAX ? n - off : n - off < piece ? n - off : piece;
        fuzz_client_send(fc, p + off, k);
        off += k;
    }
}

/* The session id from the captured `session` message, or "" . */
static void find_session_id(const struct buf *rx, char out[40]) {
    out[0] = '\0';
    static const char tag[] = "\"session_id\":\"";
    if (!rx->data) return;
    const char *s = memmem(rx->data, rx->len, tag, sizeof tag - 1);
    if (!s) return;
    s += sizeof tag - 1;
    size_t i = 0;
    while (i < 39 && s + i < rx->data + rx->len && s[i] != '"') {
        out[i] = s[i];
        i++;
    }
    out[i] = '\0';
}

/* ---- the reply oracle ---------------------------------------------------- */

static void check_message(const char *p, size_t n, int *nmsg, uint64_t *last_seq, uint64_t *max_answered) {
    json_error_t e;
    json_t *j = json_loadb(p, n, 0, &e);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) fuzz_fail("fuzz_ws: a text message is not a JSON object with a type: %.200s", p);
    json_t *seqj = json_object_get(j, "sequence");
    uint64_t seq = json_is_integer(seqj) ? (uint64_t)json_integer_value(seqj) : 0;
    if ((*nmsg)++ == 0) {
        if (strcmp(type, "session") != 0) fuzz_fail("fuzz_ws: the first message is %s, not session", type);
        json_t *ls = json_object_get(j, "last_sequence");
        if (!json_is_integer(ls) || !json_is_string(json_object_get(j, "session_id")))
            fuzz_fail("fuzz_ws: session message without session_id/last_sequence: %.200s", p);
        *last_seq = *max_answered = (uint64_t)json_integer_value(ls);
    } else if (strcmp(type, "session") == 0) {
        fuzz_fail("fuzz_ws: a second session message");
    } else if (strcmp(type, "partial") == 0 || strcmp(type, "error") == 0) {
        const char *code = json_string_value(json_object_get(j, "code"));
        int ordered = strcmp(type, "partial") == 0 ||
                      (code && json_is_integer(seqj) && strcmp(code, "OUT_OF_ORDER") != 0);
        if (strcmp(type, "error") == 0 && (!code || !json_is_string(json_object_get(j, "message"))))
            fuzz_fail("fuzz_ws: error without code/message: %.200s", p);
        if (strcmp(type, "partial") == 0 && !json_is_integer(seqj)) fuzz_fail("fuzz_ws: partial without sequence");
        if (ordered) {
            if (seq <= *last_seq)
                fuzz_fail("fuzz_ws: %s %s sequence %llu after %llu: answers out of order", type, code ? code : "",
                          (unsigned long long)seq, (unsigned long long)*last_seq);
            *last_seq = seq;
        }
        if (json_is_integer(seqj) && seq > *max_answered && (!code || strcmp(code, "OUT_OF_ORDER") != 0))
            *max_answered = seq;
    } else if (strcmp(type, "final") == 0) {
        if (!json_is_integer(seqj) || seq > *max_answered)
            fuzz_fail("fuzz_ws: final names sequence %llu, highest answered %llu", (unsigned long long)seq,
                      (unsigned long long)*max_answered);
    } else if (strcmp(type, "speech_started") != 0) {
        fuzz_fail("fuzz_ws: unknown message type %s", type);
    }
    json_decref(j);
}

static int close_code_ok(unsigned c) {
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* Checks what the server sent on one connection (captured in rx). */
static void check_replies(const struct buf *rx) {
    static struct buf msg;
    static const char ok[] = "HTTP/1.1 101 ";
    if (rx->len < sizeof ok - 1 || memcmp(rx->data, ok, sizeof ok - 1) != 0) return;
    const char *end = memmem(rx->data, rx->len, "\r\n\r\n", 4);
    if (!end) return;
    const uint8_t *p = (const uint8_t *)end + 4, *lim = (const uint8_t *)rx->data + rx->len;
    int nmsg = 0, in_msg = 0, closed = 0;
    uint64_t last_seq = 0, max_answered = 0;
    buf_reset(&msg);
    while (p < lim) {
        if (lim - p < 2) return;
        uint8_t b0 = p[0], b1 = p[1];
        size_t h = 2;
        uint64_t len = b1 & 0x7f;
        if (len == 126) {
            if (lim - p < 4) return;
            len = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (len == 127) {
            if (lim - p < 10) return;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
            h = 10;
        }
        if ((uint64_t)(lim - p) - h < len) return; /* cut by the capture bound */
        unsigned op = b0 & 15;
        const uint8_t *pl = p + h;
        if (closed) fuzz_fail("fuzz_ws: a frame (opcode %u) after the close frame", op);
        if (b1 & 0x80) fuzz_fail("fuzz_ws: a masked server frame");
        if (b0 & 0x70) fuzz_fail("fuzz_ws: RSV bits set in a server frame");
        if (op >= 8) {
            if (!(b0 & 0x80) || len > 125 || (op != 8 && op != 9 && op != 10))
                fuzz_fail("fuzz_ws: bad control frame (opcode %u, length %llu)", op, (unsigned long long)len);
            if (op == 8) {
                closed = 1;
                if (len == 1) fuzz_fail("fuzz_ws: close frame of one byte");
                if (len >= 2 && !close_code_ok((unsigned)pl[0] << 8 | pl[1]))
                    fuzz_fail("fuzz_ws: close code %u", (unsigned)pl[0] << 8 | pl[1]);
            }
        } else {
            if (op != 0 && op != 1 && op != 2) fuzz_fail("fuzz_ws: unknown opcode %u", op);
            if (op == 2) fuzz_fail("fuzz_ws: the server sent a binary message");
            if ((op == 0) != (in_msg != 0)) fuzz_fail("fuzz_ws: fragmentation out of order");
            if (op == 1) buf_reset(&msg);
            buf_append(&msg, pl, (size_t)len);
            in_msg = !(b0 & 0x80);
            if (!in_msg) check_message(msg.data ? msg.data : "", msg.len, &nmsg, &last_seq, &max_answered);
        }
        p = pl + len;
    }
}

/* One connection: upgrade, then the client's bytes. together: the head and
 * the first piece in one write; otherwise the client waits for the answer
 * and sends nothing unless it is 101 (a refused resume, for one). */
static void run_conn(struct fuzz_client *fc, int oflags, const char *query, const uint8_t *p, size_t n,
                     int together, size_t piece) {
    char req[512];
    int rl = snprintf(req, sizeof req, UPGRADE_FMT, query[0] ? "?" : "", query);
    if (together) {
        fuzz_client_open(fc, oflags | FUZZ_OPEN_CAPTURE);
        size_t first = n < piece || !piece ? n : piece;
        uint8_t *b = xmalloc((size_t)rl + first);
        memcpy(b, req, (size_t)rl);
        memcpy(b + rl, p, first);
        fuzz_client_send(fc, b, (size_t)rl + first);
        free(b);
        p += first;
        n -= first;
    } else {
        fuzz_client_open(fc, (oflags & ~FUZZ_OPEN_NOREAD) | FUZZ_OPEN_CAPTURE);
        fuzz_client_send(fc, req, (size_t)rl);
        fuzz_client_settle(fc);
        static const char ok[] = "HTTP/1.1 101 ";
        if (fc->rx.len < sizeof ok - 1 || memcmp(fc->rx.data, ok, sizeof ok - 1) != 0) return;
        fc->flags = oflags | FUZZ_OPEN_CAPTURE;
    }
    send_pieces(fc, p, n, piece);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t f0 = data[0], f1 = data[1];
    data += 2;
    size -= 2;
    static const char *const rates[] = {"", "sample_rate=8000", "sample_rate=32000", "sample_rate=48000"};
    const char *rate = rates[f0 & 3];
    int together = (f0 >> 2) & 1;
    if (f0 & 8) fuzz_cfg.shed_load = 1;
    unsigned k = f0 >> 4;
    size_t piece = k ? (size_t)1 << (k - 1) : 0;
    fuzz_net_engine_error_rate((f1 & 0x20) ? 0.25 : 0);
    if (f1 & 0x40) fuzz_net_worker()->message_mem.limit = 8192;
    const uint8_t *p = data;
    size_t n = size;
    if (f1 & 1) {
        encode_frames(data, size);
        p = wire_.data ? (const uint8_t *)wire_.data : data; /* empty: no records */
        n = wire_.len;
    }
    int oflags = ((f1 & 4) ? FUZZ_OPEN_NOREAD : 0) | ((f1 & 8) ? FUZZ_OPEN_SMALLBUF : 0);

    struct fuzz_client fc;
    if (f1 & 2) {
        /* Resume: first half, drop, then the rest on a new connection. */
        size_t half = n / 2;
        run_conn(&fc, oflags | FUZZ_OPEN_CAPTURE, rate, p, half, together, piece);
        fuzz_client_settle(&fc);
        char sid[40], q[128];
        find_session_id(&fc.rx, sid);
        check_replies(&fc.rx);
        fuzz_client_close(&fc);
        snprintf(q, sizeof q, "%s%ssession_id=%s", rate, rate[0] ? "&" : "", sid);
        run_conn(&fc, oflags, q, p + half, n - half, 0, piece);
    } else {
        run_conn(&fc, oflags, rate, p, n, together, piece);
    }
    if (f1 & 0x10) fuzz_client_shutdown(&fc);
    else fuzz_client_settle(&fc);
    check_replies(&fc.rx);
    fuzz_client_close(&fc);
    fuzz_net_reset();
    return 0;
}
