/* net/ws's close handshake (ws.h, the diagram): the table of moves, and the
 * states a WebSocket passes through when we close behind queued messages,
 * when the peer closes first (also while our close waits), and when the
 * peer breaks the protocol in a way ws.c answers itself. ws.c is included
 * to reach ws_set_state and the private struct. */
#define _GNU_SOURCE /* memmem */
#include "net/ws.c"

#include "net_pair.h"

/* ---- the table --------------------------------------------------------------- */

static const int ws_moves[][2] = {
    {WS_ST_OPEN, WS_ST_CLOSE_PENDING},         {WS_ST_OPEN, WS_ST_CLOSE_QUEUED},
    {WS_ST_OPEN, WS_ST_FAILED},                {WS_ST_CLOSE_PENDING, WS_ST_CLOSE_QUEUED},
    {WS_ST_CLOSE_PENDING, WS_ST_FAILED},       {WS_ST_CLOSE_QUEUED, WS_ST_LINGER},
};

static int drawn(int from, int to) {
    for (size_t i = 0; i < sizeof ws_moves / sizeof *ws_moves; i++)
        if (ws_moves[i][0] == from && ws_moves[i][1] == to) return 1;
    return 0;
}

struct move { int from, to; };

static void try_move(void *arg) {
    const struct move *m = arg;
    struct conn c = {.id = 1};
    struct ws_conn ws = {.c = &c, .state = (enum ws_state)m->from};
    ws_set_state(&ws, (enum ws_state)m->to);
    if ((int)ws.state != m->to) _exit(3);
}

TEST(ws_moves_follow_the_table) {
    for (int from = WS_ST_OPEN; from <= WS_ST_FAILED; from++)
        for (int to = WS_ST_OPEN; to <= WS_ST_FAILED; to++) {
            struct move m = {from, to};
            int aborted = np_aborts(try_move, &m);
            if (aborted == drawn(from, to))
                TEST_FAIL_("%s -> %s: %s", ws_state_name(from), ws_state_name(to),
                           aborted ? "refused, but the diagram has it" : "allowed, but the diagram lacks it");
        }
}

/* ---- a WebSocket on a socketpair ------------------------------------------------- */

static int binaries_, closed_, sent_code_, rcvd_code_;

static void on_text(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)p;
    (void)n;
}
static void on_binary(void *ctx, const uint8_t *p, size_t n) {
    (void)ctx;
    (void)p;
    (void)n;
    binaries_++;
}
static void on_closed(void *ctx, int sent, int rcvd) {
    (void)ctx;
    closed_++;
    sent_code_ = sent;
    rcvd_code_ = rcvd;
}
static const struct ws_handler wsh = {.on_text = on_text, .on_binary = on_binary, .on_closed = on_closed};

static void nothing_read(struct conn *c, const char *p, size_t n) {
    (void)c;
    (void)p;
    (void)n;
}
static const struct conn_handler before_ws = {.on_read = nothing_read};

static struct budget *budget_; /* the message budget of the next start(), NULL = none */

static struct ws_conn *start(int *peer) {
    struct ws_limits lim = {
        .max_message_bytes = 65536, .max_queue_bytes = 262144, .max_queue_msgs = 256, .slow_client_threshold = 10,
        .msg_budget = budget_,
    };
    np_init();
    binaries_ = closed_ = sent_code_ = rcvd_code_ = 0;
    struct conn *c = np_conn(peer);
    ASSERT_EQ_INT(conn_start(c, &before_ws, NULL), 0); /* what http does before the upgrade */
    struct ws_conn *ws = ws_start(c, &lim, &wsh, NULL, NULL, 0);
    ASSERT(ws != NULL);
    ASSERT_EQ_INT(ws_state(ws), WS_ST_OPEN);
    return ws;
}

/* A masked client frame (FIN), payload under 126 bytes. */
static void send_frame(int fd, int opcode, const void *payload, size_t n) {
    uint8_t f[2 + 4 + 125];
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    ASSERT(n < 126);
    f[0] = (uint8_t)(0x80 | opcode);
    f[1] = (uint8_t)(0x80 | n);
    memcpy(f + 2, key, 4);
    for (size_t i = 0; i < n; i++) f[6 + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
    np_send(fd, f, 6 + n);
}

static void send_close(int fd, int code) {
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    send_frame(fd, 0x8, p, 2);
}

/* Reads all the server sent; returns the offset of its close frame (opcode
 * 8, 2-byte code first), or -1; *code gets the code. */
static long read_until_close(int fd, uint8_t *buf, size_t cap, size_t *len, int *code, int *eof) {
    *len = np_recv(fd, (char *)buf, cap, eof);
    for (size_t i = 0; i + 1 < *len;) {
        size_t pl = buf[i + 1] & 0x7f, h = 2;
        if (pl == 126) {
            pl = (size_t)buf[i + 2] << 8 | buf[i + 3];
            h = 4;
        }
        if ((buf[i] & 0x0f) == 0x8) {
            *code = pl >= 2 ? buf[i + h] << 8 | buf[i + h + 1] : 0;
            return (long)i;
        }
        i += h + pl;
    }
    return -1;
}

/* A message ws_send_text frames into c->out at once: more than
 * WS_PUMP_BYTES of it makes the next messages wait in the queue. */
static void fill_past_the_pump(struct ws_conn *ws) {
    static char big[WS_PUMP_BYTES + 100];
    memset(big, 'a', sizeof big);
    ASSERT_EQ_INT(ws_send_text(ws, big, sizeof big, 0), 0);
    ASSERT_EQ_INT(ws->q_msgs, 0);
    ASSERT_EQ_INT(ws_send_text(ws, "{\"queued\":1}", 12, 0), 0);
    ASSERT_EQ_INT(ws->q_msgs, 1);
}

TEST(ws_our_close_goes_behind_the_queue_then_lingers) {
    int peer;
    struct ws_conn *ws = start(&peer);
    struct conn *c = ws->c;
    static uint8_t buf[65536];
    size_t len;
    int code = 0, eof;
    fill_past_the_pump(ws);
    ws_close(ws, 1000, "bye", 1);
    ASSERT_EQ_INT(ws_state(ws), WS_ST_CLOSE_PENDING);
    ws_close(ws, 1001, "again", 0); /* a second close is ignored */
    ASSERT_EQ_INT(ws->close_code, 1000);
    ASSERT_EQ_INT(ws_send_text(ws, "late", 4, 0), ASR_EIO);
    np_pump(4);
    /* Everything written, our close with it; the peer's close is awaited. */
    ASSERT_EQ_INT(ws_state(ws), WS_ST_LINGER);
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    long at = read_until_close(peer, buf, sizeof buf, &len, &code, &eof);
    ASSERT(at > 0);
    ASSERT_EQ_INT(code, 1000);
    ASSERT(memmem(buf, len, "{\"queued\":1}", 12) != NULL);
    ASSERT(memmem(buf, len, "{\"queued\":1}", 12) < (void *)(buf + at));
    send_close(peer, 1000);
    np_pump(3);
    ASSERT_EQ_INT(closed_, 1);
    ASSERT_EQ_INT(sent_code_, 1000);
    ASSERT_EQ_INT(rcvd_code_, 1000);
    ASSERT_EQ_INT(np_closed_, 1);
    close(peer);
}

TEST(ws_peer_closes_first) {
    int peer;
    struct ws_conn *ws = start(&peer);
    static uint8_t buf[4096];
    size_t len;
    int code = 0, eof;
    send_close(peer, 1001);
    uv_run(&np_loop_, UV_RUN_NOWAIT); /* read; the echo is written at the flush */
    ASSERT_EQ_INT(ws_state(ws), WS_ST_CLOSE_QUEUED);
    np_pump(3);
    ASSERT(read_until_close(peer, buf, sizeof buf, &len, &code, &eof) == 0);
    ASSERT_EQ_INT(code, 1001); /* wslay's echo */
    ASSERT(eof);
    ASSERT_EQ_INT(closed_, 1);
    ASSERT_EQ_INT(sent_code_, 0);
    ASSERT_EQ_INT(rcvd_code_, 1001);
    close(peer);
}

/* Our close waits behind the queue when the peer's arrives: the queue and
 * our close frame are dropped, wslay echoes the peer's; on_closed still
 * reports the close this side decided. */
TEST(ws_peer_close_while_ours_is_pending) {
    int peer;
    struct ws_conn *ws = start(&peer);
    static uint8_t buf[65536];
    size_t len;
    int code = 0, eof;
    fill_past_the_pump(ws);
    ws_close(ws, 1000, "bye", 1);
    ASSERT_EQ_INT(ws_state(ws), WS_ST_CLOSE_PENDING);
    send_close(peer, 1001);
    uv_run(&np_loop_, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(ws_state(ws), WS_ST_CLOSE_QUEUED);
    ASSERT_EQ_INT(ws->q_msgs, 0);
    np_pump(4);
    ASSERT(read_until_close(peer, buf, sizeof buf, &len, &code, &eof) > 0);
    ASSERT_EQ_INT(code, 1001);
    ASSERT(memmem(buf, len, "{\"queued\":1}", 12) == NULL);
    ASSERT_EQ_INT(closed_, 1);
    ASSERT_EQ_INT(sent_code_, 1000);
    ASSERT_EQ_INT(rcvd_code_, 1001);
    close(peer);
}

/* A close frame with a 1-byte payload: wslay would answer with a close
 * without a code; ws.c writes the 1002 itself (FAILED) and reads no more. */
TEST(ws_protocol_error_fails) {
    int peer;
    struct ws_conn *ws = start(&peer);
    static uint8_t buf[4096];
    int eof;
    send_frame(peer, 0x8, "x", 1);
    uv_run(&np_loop_, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(ws_state(ws), WS_ST_FAILED);
    ASSERT_EQ_INT(conn_state(ws->c), CONN_LAST_WRITE);
    np_pump(3);
    size_t len = np_recv(peer, (char *)buf, sizeof buf, &eof);
    ASSERT_EQ_INT(len, 4);
    ASSERT(memcmp(buf, "\x88\x02\x03\xea", 4) == 0);
    ASSERT(eof);
    ASSERT_EQ_INT(closed_, 1);
    ASSERT_EQ_INT(sent_code_, 1002);
    close(peer);
}

/* Messages received once a close is decided are dropped, on the fast path
 * (a whole binary frame in one read) as through wslay. */
TEST(ws_no_messages_after_a_close_is_decided) {
    int peer;
    struct ws_conn *ws = start(&peer);
    send_frame(peer, 0x2, "\x01\x02", 2);
    np_pump(2);
    ASSERT_EQ_INT(binaries_, 1);
    fill_past_the_pump(ws); /* keeps our close pending for the next read */
    ws_close(ws, 1000, "", 1);
    send_frame(peer, 0x2, "\x01\x02", 2);
    uv_run(&np_loop_, UV_RUN_NOWAIT);
    ASSERT_EQ_INT(binaries_, 1);
    close(peer);
    np_pump(3);
    ASSERT_EQ_INT(closed_, 1);
}

/* ---- liveness: ping and pong ------------------------------------------------------- */

static struct ws_conn *start_pinging(int *peer, uint64_t interval_ms, uint64_t timeout_ms) {
    static struct ws_limits lim = {
        .max_message_bytes = 65536, .max_queue_bytes = 262144, .max_queue_msgs = 256, .slow_client_threshold = 10,
    };
    lim.ping_interval_ms = interval_ms;
    lim.ping_timeout_ms = timeout_ms;
    np_init();
    binaries_ = closed_ = sent_code_ = rcvd_code_ = 0;
    struct conn *c = np_conn(peer);
    ASSERT_EQ_INT(conn_start(c, &before_ws, NULL), 0);
    struct ws_conn *ws = ws_start(c, &lim, &wsh, NULL, NULL, 0);
    ASSERT(ws != NULL);
    return ws;
}

/* Runs the loop (with the worker's flushes) for about ms. */
static void run_ms(uint64_t ms) {
    uint64_t end = uv_now(&np_loop_) + ms;
    while (uv_now(&np_loop_) < end && np_closed_ == 0) {
        np_pump(1);
        usleep(2000);
        uv_update_time(&np_loop_);
    }
}

/* The payload of the server's ping among what the peer received, or 0 bytes. */
static size_t read_ping(int fd, uint8_t payload[8]) {
    uint8_t buf[4096];
    int eof;
    size_t len = np_recv(fd, (char *)buf, sizeof buf, &eof);
    for (size_t i = 0; i + 1 < len;) {
        size_t pl = buf[i + 1] & 0x7f;
        if ((buf[i] & 0x0f) == 0x9 && pl == 8 && i + 2 + 8 <= len) {
            memcpy(payload, buf + i + 2, 8);
            return 8;
        }
        i += 2 + pl;
    }
    return 0;
}

TEST(ws_pong_keeps_it_and_a_missing_pong_resets_it) {
    int peer;
    uint64_t timeouts0 = metrics.ws_ping_timeouts;
    struct ws_conn *ws = start_pinging(&peer, 40, 60);
    uint8_t p[8];
    for (int round = 0; round < 3; round++) { /* answered: kept */
        run_ms(50);
        ASSERT_EQ_INT(read_ping(peer, p), 8);
        send_frame(peer, 0xA, p, 8);
        run_ms(5);
        ASSERT_EQ_INT(ws->ping_awaiting, 0);
    }
    /* a pong with another payload does not count */
    run_ms(50);
    ASSERT_EQ_INT(read_ping(peer, p), 8);
    p[7] ^= 1;
    send_frame(peer, 0xA, p, 8);
    run_ms(100);
    ASSERT_EQ_INT(np_closed_, 1);
    ASSERT_EQ_INT(closed_, 1);
    ASSERT_EQ_INT(sent_code_, 0); /* a dropped connection: no close codes */
    ASSERT_EQ_INT(rcvd_code_, 0);
    ASSERT_EQ_INT(metrics.ws_ping_timeouts, timeouts0 + 1);
    close(peer);
}

/* While reading is paused for backpressure the pong cannot be read: the
 * deadline waits until reading resumes. */
TEST(ws_ping_deadline_waits_while_reading_is_paused) {
    int peer;
    struct ws_conn *ws = start_pinging(&peer, 20, 40);
    uint8_t p[8];
    run_ms(25);
    ASSERT_EQ_INT(read_ping(peer, p), 8);
    ws_pause(ws);
    run_ms(150);
    ASSERT_EQ_INT(np_closed_, 0);
    send_frame(peer, 0xA, p, 8); /* answered meanwhile; read once resumed */
    ws_resume(ws);
    run_ms(10);
    ASSERT_EQ_INT(np_closed_, 0);
    ASSERT_EQ_INT(ws->ping_awaiting, 0);
    ws_close(ws, 1000, "", 1);
    run_ms(10);
    close(peer);
    run_ms(50);
}

TEST(ws_no_pings_when_off) {
    int peer;
    struct ws_conn *ws = start_pinging(&peer, 0, 10);
    uint8_t p[8];
    run_ms(60);
    ASSERT_EQ_INT(read_ping(peer, p), 0);
    ASSERT_EQ_INT(ws->ping_seq, 0);
    ASSERT_EQ_INT(np_closed_, 0);
    close(peer);
    run_ms(20);
}
/* A masked client frame of any length, FIN as given. */
static void send_frame_any(int fd, int opcode, int fin, const uint8_t *payload, size_t n, int pieces) {
    static uint8_t f[10 + 4 + 70000];
    size_t h = 2;
    ASSERT(n <= 70000);
    f[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (n < 126) {
        f[1] = (uint8_t)(0x80 | n);
    } else if (n <= 0xffff) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(n >> 8);
        f[3] = (uint8_t)n;
        h = 4;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) f[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        h = 10;
    }
    memset(f + h, 0, 4); /* a zero mask: the payload as it is */
    memcpy(f + h + 4, payload, n);
    size_t all = h + 4 + n, step = all / (size_t)pieces + 1;
    for (size_t off = 0; off < all; off += step) { /* each piece in a read of its own */
        np_send(fd, f + off, off + step < all ? step : all - off);
        np_pump(1);
    }
}

/* Messages that come in pieces are charged to the message budget while they
 * are open, exactly their size when one frame holds them, and given back
 * when complete; one that cannot grow in it is dropped and the connection
 * closed 1013 at once (the budget given back when it is freed). */
TEST(ws_message_budget) {
    static uint8_t payload[60000];
    memset(payload, 'p', sizeof payload);
    struct budget bud;
    budget_init(&bud, 50000);
    budget_ = &bud;
    int peer;
    struct ws_conn *ws = start(&peer);
    /* one frame of 40,000 bytes in two reads: 40,001 charged, then none */
    send_frame_any(peer, 0x2, 1, payload, 40000, 2);
    ASSERT_EQ_INT(ws_state(ws), WS_ST_OPEN);
    np_pump(3);
    ASSERT_EQ_INT(binaries_, 1);
    ASSERT_EQ_INT(bud.peak, 40001);
    ASSERT_EQ_INT(budget_used(&bud), 0);
    /* fragments of an unfinished message: held, charged */
    send_frame_any(peer, 0x2, 0, payload, 10000, 1);
    np_pump(2);
    ASSERT_EQ_INT(ws->msg_state, WS_MSG_KEEP);
    ASSERT_GE_INT(budget_used(&bud), 10000);
    /* another holder takes the rest: the next fragment cannot grow */
    size_t other = 50000 - budget_used(&bud) - 100;
    ASSERT_EQ_INT(budget_try_charge(&bud, other), 0);
    send_frame_any(peer, 0x0, 0, payload, 10000, 1);
    np_pump(3);
    uint8_t buf[4096];
    size_t len;
    int code = 0, eof;
    long at = read_until_close(peer, buf, sizeof buf, &len, &code, &eof);
    ASSERT(at >= 0);
    ASSERT_EQ_INT(code, 1013);
    ASSERT(memmem(buf, len, "server busy", 11) != NULL);
    ASSERT_EQ_INT(bud.refused, 1);
    np_pump(3);
    ASSERT_EQ_INT(closed_, 1);
    ASSERT_EQ_INT(sent_code_, 1013);
    ASSERT_EQ_INT(budget_used(&bud), other);
    budget_release(&bud, other);
    budget_ = NULL;
    close(peer);
}
