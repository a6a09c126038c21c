/* net/conn's lifecycle (conn.h, "Lifecycle"): the table of moves, and the
 * states a connection passes through when it is started, written and
 * closed. conn.c is included to reach conn_set_state. */
#include "net/conn.c"

#include "net_pair.h"

/* The moves conn.h's diagram draws, and no others. */
static const int conn_moves[][2] = {
    {CONN_NEW, CONN_OPEN},         {CONN_NEW, CONN_LAST_WRITE},     {CONN_NEW, CONN_CLOSING},
    {CONN_OPEN, CONN_LAST_WRITE},  {CONN_OPEN, CONN_CLOSING},       {CONN_LAST_WRITE, CONN_CLOSING},
    {CONN_CLOSING, CONN_CLOSED},
};

static int drawn(int from, int to) {
    for (size_t i = 0; i < sizeof conn_moves / sizeof *conn_moves; i++)
        if (conn_moves[i][0] == from && conn_moves[i][1] == to) return 1;
    return 0;
}

struct move { int from, to; };

static void try_move(void *arg) {
    const struct move *m = arg;
    struct conn c = {.state = (enum conn_state)m->from};
    conn_set_state(&c, (enum conn_state)m->to);
    if ((int)c.state != m->to) _exit(3); /* neither moved nor aborted */
}

TEST(conn_moves_follow_the_table) {
    for (int from = CONN_NEW; from <= CONN_CLOSED; from++)
        for (int to = CONN_NEW; to <= CONN_CLOSED; to++) {
            struct move m = {from, to};
            int aborted = np_aborts(try_move, &m);
            if (aborted == drawn(from, to))
                TEST_FAIL_("%s -> %s: %s", conn_state_name(from), conn_state_name(to),
                           aborted ? "refused, but the diagram has it" : "allowed, but the diagram lacks it");
        }
}

static int frees_, reads_;
static enum conn_state state_at_free_;

static void h_on_read(struct conn *c, const char *p, size_t n) {
    (void)c;
    (void)p;
    reads_ += (int)n;
}
static void h_on_free(struct conn *c) {
    frees_++;
    state_at_free_ = c->state;
}
static const struct conn_handler handler = {.on_read = h_on_read, .on_free = h_on_free};

TEST(conn_open_write_then_close_after_write) {
    np_init();
    int peer;
    struct conn *c = np_conn(&peer);
    ASSERT_EQ_INT(conn_state(c), CONN_NEW);
    ASSERT_EQ_INT(conn_start(c, &handler, NULL), 0);
    ASSERT_EQ_INT(conn_state(c), CONN_OPEN);
    np_send(peer, "ping", 4);
    np_pump(3);
    ASSERT_EQ_INT(reads_, 4);
    ASSERT_EQ_INT(conn_write(c, "pong", 4), 0);
    conn_close_after_write(c);
    ASSERT_EQ_INT(conn_state(c), CONN_LAST_WRITE);
    ASSERT(!conn_closing(c));
    conn_close_after_write(c); /* again: no move */
    ASSERT_EQ_INT(conn_state(c), CONN_LAST_WRITE);
    ASSERT_EQ_INT(conn_write(c, "!", 1), 0); /* still takes bytes until written */
    conn_flush_all(&np_set_);
    /* Written in full: closing now, freed on a later loop phase. */
    ASSERT_EQ_INT(conn_state(c), CONN_CLOSING);
    ASSERT(conn_closing(c));
    ASSERT_EQ_INT(conn_write(c, "x", 1), ASR_EIO);
    ASSERT_EQ_INT(frees_, 0);
    np_pump(3);
    ASSERT_EQ_INT(frees_, 1);
    ASSERT_EQ_INT(state_at_free_, CONN_CLOSED);
    ASSERT_EQ_INT(np_closed_, 1);
    char buf[64];
    int eof;
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT_STR_EQ(buf, "pong!");
    ASSERT(eof);
    close(peer);
}

TEST(conn_close_is_once) {
    np_init();
    int peer;
    struct conn *c = np_conn(&peer);
    ASSERT_EQ_INT(conn_start(c, &handler, NULL), 0);
    conn_close(c);
    ASSERT_EQ_INT(conn_state(c), CONN_CLOSING);
    conn_close(c);              /* no move, no second uv_close */
    conn_abort(c);
    conn_close_after_write(c);  /* too late: stays CLOSING */
    ASSERT_EQ_INT(conn_state(c), CONN_CLOSING);
    np_pump(3);
    ASSERT_EQ_INT(frees_, 1);
    ASSERT_EQ_INT(np_closed_, 1);
    close(peer);
}

/* The worker's refusal at the connection cap: bytes written and closed
 * before any handler is installed (NEW -> LAST_WRITE -> CLOSING). */
TEST(conn_refusal_without_a_handler) {
    np_init();
    int peer;
    struct conn *c = np_conn(&peer);
    ASSERT_EQ_INT(conn_write(c, "busy", 4), 0);
    conn_close_after_write(c);
    ASSERT_EQ_INT(conn_state(c), CONN_LAST_WRITE);
    np_pump(3);
    ASSERT_EQ_INT(np_closed_, 1);
    char buf[64];
    int eof;
    np_recv(peer, buf, sizeof buf, &eof);
    ASSERT_STR_EQ(buf, "busy");
    ASSERT(eof);
    close(peer);
}

/* The same refusal to a peer that has gone: the write fails and the
 * connection closes (it had no handler to tell; it used to crash here). */
TEST(conn_refusal_to_a_peer_that_reset) {
    np_init();
    int peer;
    struct conn *c = np_conn(&peer);
    close(peer);
    ASSERT_EQ_INT(conn_write(c, "busy", 4), 0);
    conn_close_after_write(c);
    np_pump(3);
    ASSERT_EQ_INT(np_closed_, 1);
}

static void start_twice(void *arg) {
    (void)arg;
    np_init();
    int peer;
    struct conn *c = np_conn(&peer);
    conn_start(c, &handler, NULL);
    conn_start(c, &handler, NULL);
}

TEST(conn_start_twice_is_a_bug) {
    ASSERT(np_aborts(start_twice, NULL));
}
