/* Unit tests of the session store (store.c, store_memory.c, store_redis.c).
 *
 * Every semantic scenario runs against both backends (store_<name>_memory and
 * store_<name>_redis); scenarios that need several workers run on Redis only,
 * with several store instances (other worker ids) on one loop. A Redis test
 * starts its own redis-server on a free loopback port and kills it at the
 * end (the server also dies with the test process: PR_SET_PDEATHSIG).
 * Times are measured on the loop clock with generous bounds; waits poll
 * a condition with a deadline and never stand in for an assertion. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "base/err.h"
#include "base/log.h"
#include "store/store.h"

enum backend { MEM, REDIS };

/* Longest wait for a reconnect once Redis is back: the backoff ceiling
 * (5 s) plus the handshake, with slack. */
#define REDIS_BACKOFF_BOUND_MS 7000

/* ---- loop ------------------------------------------------------------------ */

static uv_loop_t loop;
static uv_timer_t tick;                 /* keeps UV_RUN_ONCE returning often */
static int in_call;                     /* 1 while a store function runs */
static int completions;                 /* callbacks so far, for ordering */

static void on_tick(uv_timer_t *t) {}

static uint64_t now_ms(void) {
    uv_update_time(&loop);
    return uv_now(&loop);
}

#define WAIT_UNTIL(cond, ms) do {                                              \
        uint64_t dl_ = now_ms() + (ms);                                        \
        while (!(cond)) {                                                      \
            if (now_ms() > dl_) TEST_FAIL_("waited %d ms for %s", (int)(ms), #cond); \
            uv_run(&loop, UV_RUN_ONCE);                                        \
        }                                                                      \
    } while (0)

static void run_for(uint64_t ms) {
    uint64_t end = now_ms() + ms;
    while (now_ms() < end) uv_run(&loop, UV_RUN_ONCE);
}

/* ---- captured log lines (stderr) ------------------------------------------------ */

static int saved_stderr = -1;
static char cap_path[64];

static void capture_stderr(void) {
    snprintf(cap_path, sizeof cap_path, "/tmp/asrd-test-store-log-%d", (int)getpid());
    int fd = open(cap_path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    ASSERT(fd >= 0);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
    log_setup("info", "json", "w1");
}

/* Restores stderr and returns what was logged (static buffer). */
static const char *captured(void) {
    static char text[65536];
    dup2(saved_stderr, 2);
    close(saved_stderr);
    FILE *f = fopen(cap_path, "r");
    ASSERT(f != NULL);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    unlink(cap_path);
    return text;
}

/* ---- a throwaway redis-server ------------------------------------------------ */

static pid_t redis_pid;
static int redis_port;
static char redis_url[128];
static char redis_sock[108];

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A synchronous connection for set-up and checks (tests only). */
static redisContext *redis_sync(void) {
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static int redis_ping(void) {
    redisContext *c = redis_sync();
    if (!c) return 0;
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

static void redis_kill(void);

/* Whatever the test's end: the server and its files go. */
static void test_cleanup(void) {
    redis_kill();
    if (redis_sock[0]) unlink(redis_sock);
    if (cap_path[0]) unlink(cap_path);
}

/* Starts redis-server on redis_port (a new free one when 0) with a unix
 * socket too, plus extra arguments (NULL-terminated, may be NULL), and waits
 * until it answers PING. */
static void redis_start(const char *const *extra) {
    if (!redis_port) redis_port = free_port();
    snprintf(redis_sock, sizeof redis_sock, "/tmp/asrd-test-store-%d.sock", (int)getpid());
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", redis_port);
    char port[16];
    snprintf(port, sizeof port, "%d", redis_port);
    const char *argv[32] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--unixsocket", redis_sock, "--loglevel", "warning"};
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 30; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    static int cleanup_registered;
    if (!cleanup_registered) {
        atexit(test_cleanup);             /* also when an assertion exits */
        cleanup_registered = 1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);          /* the test died before prctl */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    redis_pid = pid;
    int need_auth = 0;
    for (int i = 0; extra && extra[i]; i++)
        if (strcmp(extra[i], "--requirepass") == 0) need_auth = 1;
    for (int i = 0; i < 500; i++) {
        int st;
        ASSERT(waitpid(pid, &st, WNOHANG) == 0);        /* died: not installed? */
        if (need_auth) {
            redisContext *c = redis_sync();
            if (c) {
                redisFree(c);
                return;
            }
        } else if (redis_ping()) {
            return;
        }
        usleep(10000);
    }
    TEST_FAIL_("redis-server did not answer PING on port %d", redis_port);
}

static void redis_kill(void) {
    if (redis_pid <= 0) return;
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = 0;
}

/* 'T' once a SIGSTOP took effect. */
static char proc_state(pid_t pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* Runs a command on a fresh sync connection; returns the reply (caller frees). */
static redisReply *redis_cmd(const char *fmt, const char *arg) {
    redisContext *c = redis_sync();
    ASSERT(c != NULL);
    redisReply *r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
    redisFree(c);
    ASSERT(r != NULL);
    return r;
}

/* ---- results ------------------------------------------------------------------ */

struct res {
    int      calls;
    int      status;
    int      has_rec;
    char     id[160], owner[64], prev[64];
    int      attached;
    uint64_t created, last;
    char     blob[512];
    size_t   blob_len;
    size_t   n;
    char     ids[256][48];
    uint64_t count;
    uint64_t t_done;                    /* loop ms at the callback */
    int      seq;                       /* completion order */
};

static void note(struct res *r, int status) {
    ASSERT(!in_call);                   /* never inside the caller's call */
    r->calls++;
    ASSERT_EQ_INT(r->calls, 1);         /* exactly once */
    r->status = status;
    r->t_done = uv_now(&loop);
    r->seq = ++completions;
}

static void copy_rec(struct res *r, const struct store_record *rec) {
    ASSERT(rec && rec->id && rec->owner);
    r->has_rec = 1;
    snprintf(r->id, sizeof r->id, "%s", rec->id);
    snprintf(r->owner, sizeof r->owner, "%s", rec->owner);
    r->attached = rec->attached;
    r->created = rec->created_ms;
    r->last = rec->last_activity_ms;
    ASSERT(rec->blob_len < sizeof r->blob);
    if (rec->blob_len) memcpy(r->blob, rec->blob, rec->blob_len);
    r->blob_len = rec->blob_len;
}

static void cb_done(void *arg, int status) { note(arg, status); }

static void cb_rec(void *arg, int status, const struct store_record *rec) {
    note(arg, status);
    if (status == STORE_OK) copy_rec(arg, rec);
    else ASSERT(rec == NULL);
}

static void cb_claim(void *arg, int status, const struct store_record *rec, const char *prev) {
    struct res *r = arg;
    note(r, status);
    if (status == STORE_OK) {
        copy_rec(r, rec);
        ASSERT(prev != NULL);
        snprintf(r->prev, sizeof r->prev, "%s", prev);
    } else {
        ASSERT(rec == NULL && prev == NULL);
    }
}

static void cb_list(void *arg, int status, const char *const *ids, size_t n) {
    struct res *r = arg;
    note(r, status);
    ASSERT(n < 256);
    r->n = n;
    for (size_t i = 0; i < n; i++) snprintf(r->ids[i], sizeof r->ids[i], "%s", ids[i]);
}

static void cb_count(void *arg, int status, uint64_t n) {
    note(arg, status);
    ((struct res *)arg)->count = n;
}

static int has_id(const struct res *r, const char *id) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->ids[i], id) == 0) return 1;
    return 0;
}

/* ---- workers: one store instance each ------------------------------------------ */

struct wk {
    struct store *s;
    int  released;                      /* on_released calls */
    char rel_id[160];
    int  states[32];                    /* on_state values in order */
    int  nstates;
    int  closed;
};

static void on_released(void *ctx, const char *id) {
    struct wk *w = ctx;
    ASSERT(!in_call);
    w->released++;
    snprintf(w->rel_id, sizeof w->rel_id, "%s", id);
}

static void on_state(void *ctx, int up) {
    struct wk *w = ctx;
    ASSERT(!in_call);
    if (w->nstates < 32) w->states[w->nstates++] = up;
}

static void on_closed(void *arg) { ((struct wk *)arg)->closed = 1; }

static struct store_cfg cfg_for(enum backend b, struct wk *w, const char *worker) {
    struct store_cfg c = {
        .redis_url = b == REDIS ? redis_url : NULL,
        .worker_id = worker,
        .session_ttl_s = 60,
        .heartbeat_ttl_s = 1,
        .op_timeout_ms = 500,
        .key_prefix = "t:",
        .on_released = on_released,
        .on_state = on_state,
        .ctx = w,
    };
    return c;
}

static int wk_ready(struct wk *w) {
    return store_available(w->s) &&
           (strcmp(store_backend(w->s), "memory") == 0 || store_stats(w->s)->pubsub_connected);
}

static void wk_open_cfg(struct wk *w, const struct store_cfg *c) {
    memset(w, 0, sizeof *w);
    struct store_cfg cc = *c;
    cc.ctx = w;
    in_call = 1;
    int rc = store_open(&loop, &cc, &w->s);
    in_call = 0;
    ASSERT_EQ_INT(rc, 0);
    ASSERT(w->s != NULL);
    WAIT_UNTIL(wk_ready(w), 5000);
}

static void wk_open(struct wk *w, enum backend b, const char *worker) {
    struct store_cfg c = cfg_for(b, w, worker);
    wk_open_cfg(w, &c);
}

static void wk_close(struct wk *w) {
    in_call = 1;
    store_close(w->s, on_closed, w);
    in_call = 0;
    ASSERT(!w->closed);
    WAIT_UNTIL(w->closed, 5000);
    w->s = NULL;
}

/* ---- ops, waited for ------------------------------------------------------------ */

#define CALL(expr) do { in_call = 1; int rc_ = (expr); in_call = 0; ASSERT_EQ_INT(rc_, 0); } while (0)
#define OP_WAIT(r) do { ASSERT_EQ_INT((r)->calls, 0); WAIT_UNTIL((r)->calls, 10000); } while (0)

static int op_create(struct store *s, const char *id, const char *blob) {
    struct res r = {0};
    CALL(store_create(s, id, blob, blob ? strlen(blob) : 0, cb_done, &r));
    OP_WAIT(&r);
    return r.status;
}

static int op_update(struct store *s, const char *id, int attached, const char *blob) {
    struct res r = {0};
    CALL(store_update(s, id, attached, blob, blob ? strlen(blob) : 0, cb_done, &r));
    OP_WAIT(&r);
    return r.status;
}

static int op_republish(struct store *s, const char *id, int attached, const char *blob) {
    struct res r = {0};
    CALL(store_republish(s, id, attached, blob, blob ? strlen(blob) : 0, cb_done, &r));
    OP_WAIT(&r);
    return r.status;
}

static int op_claim(struct store *s, const char *id, struct res *r) {
    memset(r, 0, sizeof *r);
    CALL(store_claim(s, id, cb_claim, r));
    OP_WAIT(r);
    return r->status;
}

static int op_get(struct store *s, const char *id, struct res *r) {
    memset(r, 0, sizeof *r);
    CALL(store_get(s, id, cb_rec, r));
    OP_WAIT(r);
    return r->status;
}

static int op_delete(struct store *s, const char *id) {
    struct res r = {0};
    CALL(store_delete(s, id, cb_done, &r));
    OP_WAIT(&r);
    return r.status;
}

static int op_list(struct store *s, const char *worker, struct res *r) {
    memset(r, 0, sizeof *r);
    CALL(store_list_by_worker(s, worker, cb_list, r));
    OP_WAIT(r);
    return r->status;
}

static uint64_t op_count(struct store *s) {
    struct res r = {0};
    CALL(store_count_active(s, cb_count, &r));
    OP_WAIT(&r);
    ASSERT_EQ_INT(r.status, STORE_OK);
    return r.count;
}

/* ---- set-up ----------------------------------------------------------------------- */

static void setup(enum backend b) {
    log_setup("error", "json", "w1");     /* tests that read logs turn them on */
    ASSERT_EQ_INT(uv_loop_init(&loop), 0);
    ASSERT_EQ_INT(uv_timer_init(&loop, &tick), 0);
    ASSERT_EQ_INT(uv_timer_start(&tick, on_tick, 5, 5), 0);
    if (b == REDIS) redis_start(NULL);
}

/* Every store must be closed: then nothing may be left on the loop. */
static void teardown(void) {
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ_INT(uv_loop_close(&loop), 0);
    redis_kill();
    unlink(redis_sock);
}

/* BOTH(name) defines scen_name(b) and one test per backend. */
#define BOTH(name)                                                              \
    static void scen_##name(enum backend b);                                    \
    TEST(store_##name##_memory) { setup(MEM); scen_##name(MEM); teardown(); }   \
    TEST(store_##name##_redis) { setup(REDIS); scen_##name(REDIS); teardown(); } \
    static void scen_##name(enum backend b)

/* ---- pure functions ---------------------------------------------------------------- */

TEST(store_result_codes_distinct) {
    const int codes[] = {STORE_OK, STORE_EXISTS, STORE_LIMIT, STORE_NOT_FOUND, STORE_NOT_OWNER,
                         STORE_BUSY, STORE_UNAVAILABLE};
    for (unsigned i = 0; i < sizeof codes / sizeof codes[0]; i++)
        for (unsigned j = i + 1; j < sizeof codes / sizeof codes[0]; j++)
            ASSERT_NE_INT(codes[i], codes[j]);
    ASSERT_STR_EQ(asr_err_code(STORE_UNAVAILABLE), "STORE_UNAVAILABLE");
    ASSERT_STR_EQ(store_op_name(STORE_OP_CLAIM), "claim");
    ASSERT_STR_EQ(store_op_name(STORE_OP_COUNT), "count");
}

TEST(store_url_parse) {
    struct store_url u;
    ASSERT_EQ_INT(store_url_parse("redis://10.0.0.5:6380/2", &u), 0);
    ASSERT_EQ_INT(u.is_unix, 0);
    ASSERT_STR_EQ(u.host, "10.0.0.5");
    ASSERT_EQ_INT(u.port, 6380);
    ASSERT_EQ_INT(u.db, 2);
    ASSERT_STR_EQ(u.password, "");

    ASSERT_EQ_INT(store_url_parse("redis://redis", &u), 0);
    ASSERT_STR_EQ(u.host, "redis");
    ASSERT_EQ_INT(u.port, 6379);
    ASSERT_EQ_INT(u.db, 0);

    ASSERT_EQ_INT(store_url_parse("redis://:s%40cr%3At@h:1/", &u), 0);
    ASSERT_STR_EQ(u.user, "");
    ASSERT_STR_EQ(u.password, "s@cr:t");
    ASSERT_STR_EQ(u.host, "h");
    ASSERT_EQ_INT(u.port, 1);

    ASSERT_EQ_INT(store_url_parse("redis://app:pw@[::1]:7000/15", &u), 0);
    ASSERT_STR_EQ(u.user, "app");
    ASSERT_STR_EQ(u.password, "pw");
    ASSERT_STR_EQ(u.host, "::1");
    ASSERT_EQ_INT(u.port, 7000);
    ASSERT_EQ_INT(u.db, 15);

    ASSERT_EQ_INT(store_url_parse("unix:///run/redis/redis.sock", &u), 0);
    ASSERT_EQ_INT(u.is_unix, 1);
    ASSERT_STR_EQ(u.path, "/run/redis/redis.sock");
    ASSERT_EQ_INT(store_url_parse("unix://:pw@/tmp/r.sock?db=3", &u), 0);
    ASSERT_STR_EQ(u.path, "/tmp/r.sock");
    ASSERT_STR_EQ(u.password, "pw");
    ASSERT_EQ_INT(u.db, 3);

    const char *bad[] = {"", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x",
                         "redis://h:1/x", "redis://h/1/2", "rediss://h", "http://h",
                         "redis://user@h", "redis://[::1", "redis://[]:1", "unix://",
                         "unix:///", "unix://relative", "unix:///s?x=1", "redis://:%zz@h",
                         "redis://:%4@h", NULL};
    for (int i = 0; bad[i]; i++)
        if (store_url_parse(bad[i], &u) != ASR_EINVAL) TEST_FAIL_("accepted \"%s\"", bad[i]);
    ASSERT_EQ_INT(store_url_parse(NULL, &u), ASR_EINVAL);
}

TEST(store_open_rejects_bad_cfg) {
    setup(MEM);
    struct wk w = {0};
    struct store *s = NULL;
    struct store_cfg c = cfg_for(MEM, &w, "w1");
    c.worker_id = NULL;
    ASSERT_EQ_INT(store_open(&loop, &c, &s), ASR_EINVAL);
    c.worker_id = "";
    ASSERT_EQ_INT(store_open(&loop, &c, &s), ASR_EINVAL);
    c.worker_id = "has space";
    ASSERT_EQ_INT(store_open(&loop, &c, &s), ASR_EINVAL);
    char longid[80];
    memset(longid, 'w', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    c.worker_id = longid;
    ASSERT_EQ_INT(store_open(&loop, &c, &s), ASR_EINVAL);
    c.worker_id = "w1";
    c.session_ttl_s = 0;
    ASSERT_EQ_INT(store_open(&loop, &c, &s), ASR_EINVAL);
    c.session_ttl_s = 60;
    c.redis_url = "rediss://h";
    ASSERT_EQ_INT(store_open(&loop, &c, &s), ASR_EINVAL);
    ASSERT(s == NULL);

    /* Bad op arguments fail at once; their callback never runs. */
    wk_open(&w, MEM, "w1");
    struct res r = {0};
    ASSERT_EQ_INT(store_create(w.s, "", "x", 1, cb_done, &r), ASR_EINVAL);
    ASSERT_EQ_INT(store_create(w.s, NULL, "x", 1, cb_done, &r), ASR_EINVAL);
    ASSERT_EQ_INT(store_create(w.s, "a b", "x", 1, cb_done, &r), ASR_EINVAL);
    ASSERT_EQ_INT(store_create(w.s, "id", NULL, 3, cb_done, &r), ASR_EINVAL);
    ASSERT_EQ_INT(store_create(w.s, "id", "x", STORE_BLOB_MAX + 1, cb_done, &r), ASR_E_TOO_LARGE);
    ASSERT_EQ_INT(store_list_by_worker(w.s, "", cb_list, &r), ASR_EINVAL);
    run_for(50);
    ASSERT_EQ_INT(r.calls, 0);
    ASSERT_EQ_INT(store_stats(w.s)->ops[STORE_OP_CREATE], 0);
    wk_close(&w);
    teardown();
}

/* ---- semantics, both backends ----------------------------------------------------- */

BOTH(create_nx) {
    struct wk w;
    struct res r;
    wk_open(&w, b, "w1");
    ASSERT_STR_EQ(store_backend(w.s), b == REDIS ? "redis" : "memory");
    ASSERT_EQ_INT(op_create(w.s, "s1", "first"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "s1", "second"), STORE_EXISTS);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_STR_EQ(r.id, "s1");
    ASSERT_STR_EQ(r.owner, "w1");
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT_EQ_INT(r.blob_len, 5);
    ASSERT(memcmp(r.blob, "first", 5) == 0);
    uint64_t wall = (uint64_t)time(NULL) * 1000;
    ASSERT_NEAR((double)r.created, (double)wall, 5000.0);
    ASSERT_EQ_INT(r.last, r.created);
    ASSERT_EQ_INT(op_count(w.s), 1);
    /* An empty blob and a binary one round-trip. */
    ASSERT_EQ_INT(op_create(w.s, "s2", NULL), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s2", &r), STORE_OK);
    ASSERT_EQ_INT(r.blob_len, 0);
    struct res d = {0};
    CALL(store_create(w.s, "s3", "a\0b\xff", 4, cb_done, &d));
    OP_WAIT(&d);
    ASSERT_EQ_INT(d.status, STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s3", &r), STORE_OK);
    ASSERT_EQ_INT(r.blob_len, 4);
    ASSERT(memcmp(r.blob, "a\0b\xff", 4) == 0);
    ASSERT_EQ_INT(op_count(w.s), 3);
    ASSERT_EQ_INT(store_stats(w.s)->ops[STORE_OP_CREATE], 4);
    ASSERT_EQ_INT(store_stats(w.s)->ops[STORE_OP_GET], 3);
    ASSERT_EQ_INT(store_stats(w.s)->errors, 0);
    wk_close(&w);
}

BOTH(update_xx) {
    struct wk w;
    struct res r;
    wk_open(&w, b, "w1");
    ASSERT_EQ_INT(op_update(w.s, "nope", 1, "x"), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_get(w.s, "nope", &r), STORE_NOT_FOUND);     /* update never creates */
    ASSERT_EQ_INT(op_count(w.s), 0);
    ASSERT_EQ_INT(op_create(w.s, "s1", "one"), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    uint64_t created = r.created;
    run_for(20);
    ASSERT_EQ_INT(op_update(w.s, "s1", 0, "two"), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_EQ_INT(r.attached, 0);
    ASSERT_EQ_INT(r.blob_len, 3);
    ASSERT(memcmp(r.blob, "two", 3) == 0);
    ASSERT_EQ_INT(r.created, created);
    ASSERT(r.last > created);
    /* blob NULL keeps the blob. */
    ASSERT_EQ_INT(op_update(w.s, "s1", 1, NULL), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT(r.blob_len == 3 && memcmp(r.blob, "two", 3) == 0);
    /* An empty blob (non-NULL, len 0) replaces it. */
    ASSERT_EQ_INT(op_update(w.s, "s1", 1, ""), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_EQ_INT(r.blob_len, 0);
    ASSERT_EQ_INT(op_count(w.s), 1);
    wk_close(&w);
}

/* republish: absent -> written as ours, with no limit check (the session
 * was admitted before the store lost it) and counted again; present and
 * ours -> rewritten, created kept. */
BOTH(republish_upserts) {
    struct wk w;
    struct res r;
    struct store_cfg c = cfg_for(b, &w, "w1");
    c.max_global_sessions = 1;
    wk_open_cfg(&w, &c);
    ASSERT_EQ_INT(op_create(w.s, "s1", "one"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "s2", "two"), STORE_LIMIT);
    ASSERT_EQ_INT(op_republish(w.s, "s2", 0, "held"), STORE_OK);   /* past the limit: admitted before */
    ASSERT_EQ_INT(op_get(w.s, "s2", &r), STORE_OK);
    ASSERT_STR_EQ(r.owner, "w1");
    ASSERT_EQ_INT(r.attached, 0);
    ASSERT(r.blob_len == 4 && memcmp(r.blob, "held", 4) == 0);
    ASSERT_EQ_INT(op_count(w.s), 2);                               /* its slot is taken again */
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    uint64_t created = r.created;
    run_for(20);
    ASSERT_EQ_INT(op_republish(w.s, "s1", 1, "ONE"), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT(r.blob_len == 3 && memcmp(r.blob, "ONE", 3) == 0);
    ASSERT_EQ_INT(r.created, created);
    ASSERT_EQ_INT(op_count(w.s), 2);
    ASSERT_EQ_INT(store_stats(w.s)->ops[STORE_OP_REPUBLISH], 2);
    ASSERT_STR_EQ(store_op_name(STORE_OP_REPUBLISH), "republish");
    wk_close(&w);
}

BOTH(claim_self) {
    struct wk w;
    struct res r;
    wk_open(&w, b, "w1");
    ASSERT_EQ_INT(op_claim(w.s, "nope", &r), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_create(w.s, "s1", "state"), STORE_OK);
    /* Attached here: a live connection of a live worker holds it. */
    ASSERT_EQ_INT(op_claim(w.s, "s1", &r), STORE_BUSY);
    ASSERT_EQ_INT(op_update(w.s, "s1", 0, NULL), STORE_OK);
    ASSERT_EQ_INT(op_claim(w.s, "s1", &r), STORE_OK);
    ASSERT_STR_EQ(r.id, "s1");
    ASSERT_STR_EQ(r.owner, "w1");
    ASSERT_STR_EQ(r.prev, "w1");
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT(r.blob_len == 5 && memcmp(r.blob, "state", 5) == 0);
    ASSERT_EQ_INT(op_claim(w.s, "s1", &r), STORE_BUSY);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT_EQ_INT(op_count(w.s), 1);             /* the slot did not double */
    ASSERT_EQ_INT(w.released, 0);
    wk_close(&w);
}

BOTH(delete_frees_slot) {
    struct wk w;
    struct res r;
    struct store_cfg c = cfg_for(b, &w, "w1");
    c.max_global_sessions = 2;
    wk_open_cfg(&w, &c);
    ASSERT_EQ_INT(op_create(w.s, "a", "1"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "b", "2"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "c", "3"), STORE_LIMIT);
    ASSERT_EQ_INT(op_get(w.s, "c", &r), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_delete(w.s, "nope"), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_delete(w.s, "a"), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "a", &r), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_delete(w.s, "a"), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_count(w.s), 1);
    ASSERT_EQ_INT(op_create(w.s, "c", "3"), STORE_OK);
    ASSERT_EQ_INT(op_count(w.s), 2);
    ASSERT_EQ_INT(op_create(w.s, "d", "4"), STORE_LIMIT);
    wk_close(&w);
}

/* Creates issued together (one loop iteration, pipelined for Redis) against
 * a limit of 100: exactly 100 succeed. Redis: 4 workers x 50; memory: one
 * worker x 200 (it is one process's view). */
BOTH(limit_concurrent) {
    enum { LIMIT = 100 };
    int nw = b == REDIS ? 4 : 1, per = b == REDIS ? 50 : 200;
    struct wk w[4];
    static struct res r[4][200];
    memset(r, 0, sizeof r);
    for (int i = 0; i < nw; i++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", i);
        struct store_cfg c = cfg_for(b, &w[i], id);
        c.max_global_sessions = LIMIT;
        wk_open_cfg(&w[i], &c);
    }
    for (int k = 0; k < per; k++)
        for (int i = 0; i < nw; i++) {
            char id[32];
            snprintf(id, sizeof id, "s-%d-%d", i, k);
            CALL(store_create(w[i].s, id, "x", 1, cb_done, &r[i][k]));
        }
    int ok = 0, limit = 0, other = 0;
    for (int i = 0; i < nw; i++)
        for (int k = 0; k < per; k++) {
            WAIT_UNTIL(r[i][k].calls, 10000);
            if (r[i][k].status == STORE_OK) ok++;
            else if (r[i][k].status == STORE_LIMIT) limit++;
            else other++;
        }
    ASSERT_EQ_INT(ok, LIMIT);
    ASSERT_EQ_INT(limit, nw * per - LIMIT);
    ASSERT_EQ_INT(other, 0);
    for (int i = 0; i < nw; i++) ASSERT_EQ_INT(op_count(w[i].s), LIMIT);
    /* Each worker's list holds exactly its successes. */
    int listed = 0;
    for (int i = 0; i < nw; i++) {
        struct res lr;
        char id[16];
        snprintf(id, sizeof id, "w%d", i);
        ASSERT_EQ_INT(op_list(w[i].s, id, &lr), STORE_OK);
        int mine = 0;
        for (int k = 0; k < per; k++) {
            char sid[32];
            snprintf(sid, sizeof sid, "s-%d-%d", i, k);
            if (r[i][k].status == STORE_OK) {
                mine++;
                ASSERT(has_id(&lr, sid));
            }
        }
        ASSERT_EQ_INT(lr.n, mine);
        listed += (int)lr.n;
    }
    ASSERT_EQ_INT(listed, LIMIT);
    for (int i = 0; i < nw; i++) wk_close(&w[i]);
}

BOTH(ttl_expiry) {
    struct wk w;
    struct res r;
    struct store_cfg c = cfg_for(b, &w, "w1");
    c.session_ttl_s = 2;
    wk_open_cfg(&w, &c);
    uint64_t t0 = now_ms();
    ASSERT_EQ_INT(op_create(w.s, "x", "1"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "y", "2"), STORE_OK);
    run_for(1200);
    ASSERT_EQ_INT(op_update(w.s, "y", 0, NULL), STORE_OK);      /* refreshes y's TTL */
    ASSERT_EQ_INT(op_get(w.s, "x", &r), STORE_OK);
    /* x expires 2 s after its create; poll for it, never expecting it early. */
    for (;;) {
        int st = op_get(w.s, "x", &r);
        if (st == STORE_NOT_FOUND) break;
        ASSERT_EQ_INT(st, STORE_OK);
        ASSERT_LE_INT(now_ms() - t0, 5000);
        run_for(50);
    }
    ASSERT_GE_INT(now_ms() - t0, 1900);
    /* y was written 1.2 s in: alive until ~3.2 s. */
    ASSERT_LE_INT(now_ms() - t0, 2900);
    ASSERT_EQ_INT(op_get(w.s, "y", &r), STORE_OK);
    ASSERT_EQ_INT(op_count(w.s), 1);
    struct res lr;
    ASSERT_EQ_INT(op_list(w.s, "w1", &lr), STORE_OK);
    ASSERT_EQ_INT(lr.n, 1);
    ASSERT(has_id(&lr, "y"));
    ASSERT_EQ_INT(op_update(w.s, "x", 1, "late"), STORE_NOT_FOUND);
    ASSERT_EQ_INT(op_claim(w.s, "x", &r), STORE_NOT_FOUND);
    WAIT_UNTIL(op_get(w.s, "y", &r) == STORE_NOT_FOUND, 5000);
    ASSERT_EQ_INT(op_count(w.s), 0);
    wk_close(&w);
}

BOTH(list_by_worker) {
    struct wk w;
    struct res r;
    wk_open(&w, b, "w1");
    ASSERT_EQ_INT(op_list(w.s, "w1", &r), STORE_OK);
    ASSERT_EQ_INT(r.n, 0);
    ASSERT_EQ_INT(op_create(w.s, "a", "1"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "b", "2"), STORE_OK);
    ASSERT_EQ_INT(op_create(w.s, "c", "3"), STORE_OK);
    ASSERT_EQ_INT(op_list(w.s, "w1", &r), STORE_OK);
    ASSERT_EQ_INT(r.n, 3);
    ASSERT(has_id(&r, "a") && has_id(&r, "b") && has_id(&r, "c"));
    ASSERT_EQ_INT(op_list(w.s, "w9", &r), STORE_OK);
    ASSERT_EQ_INT(r.n, 0);
    ASSERT_EQ_INT(op_delete(w.s, "b"), STORE_OK);
    ASSERT_EQ_INT(op_list(w.s, "w1", &r), STORE_OK);
    ASSERT_EQ_INT(r.n, 2);
    ASSERT(has_id(&r, "a") && has_id(&r, "c") && !has_id(&r, "b"));
    wk_close(&w);
}

/* Callbacks fire in call order, after the call returns, also when one
 * callback closes the store; ops made after close fail at once; ops made
 * before it complete normally before on_closed. */
static struct wk *close_from_cb_w;
static void cb_close_inside(void *arg, int status) {
    note(arg, status);
    store_close(close_from_cb_w->s, on_closed, close_from_cb_w);
}

BOTH(order_and_close) {
    struct wk w;
    wk_open(&w, b, "w1");
    struct res r[6];
    memset(r, 0, sizeof r);
    CALL(store_create(w.s, "s1", "x", 1, cb_done, &r[0]));
    CALL(store_update(w.s, "s1", 0, "y", 1, cb_done, &r[1]));
    CALL(store_get(w.s, "s1", cb_rec, &r[2]));
    CALL(store_claim(w.s, "s1", cb_claim, &r[3]));
    CALL(store_count_active(w.s, cb_count, &r[4]));
    close_from_cb_w = &w;
    CALL(store_delete(w.s, "s1", cb_close_inside, &r[5]));
    CALL(store_create(w.s, "s2", "x", 1, NULL, NULL));          /* no callback */
    for (int i = 0; i < 6; i++) ASSERT_EQ_INT(r[i].calls, 0);
    WAIT_UNTIL(w.closed, 5000);
    for (int i = 0; i < 6; i++) {
        ASSERT_EQ_INT(r[i].calls, 1);
        if (i) ASSERT_EQ_INT(r[i].seq, r[i - 1].seq + 1);
    }
    ASSERT_EQ_INT(r[0].status, STORE_OK);
    ASSERT_EQ_INT(r[1].status, STORE_OK);
    ASSERT_EQ_INT(r[2].status, STORE_OK);
    ASSERT(r[2].blob_len == 1 && r[2].blob[0] == 'y' && r[2].attached == 0);
    ASSERT_EQ_INT(r[3].status, STORE_OK);
    ASSERT_EQ_INT(r[4].status, STORE_OK);
    ASSERT_EQ_INT(r[4].count, 1);
    ASSERT_EQ_INT(r[5].status, STORE_OK);
}

TEST(store_ops_after_close_fail_at_once) {
    setup(MEM);
    struct wk w;
    wk_open(&w, MEM, "w1");
    struct res r[3];
    memset(r, 0, sizeof r);
    CALL(store_create(w.s, "a", "x", 1, cb_done, &r[0]));
    CALL(store_create(w.s, "b", "x", 1, cb_done, &r[1]));
    store_close(w.s, on_closed, &w);
    ASSERT_EQ_INT(store_create(w.s, "c", "x", 1, cb_done, &r[2]), ASR_EINVAL);
    ASSERT_EQ_INT(store_count_active(w.s, cb_count, &r[2]), ASR_EINVAL);
    ASSERT(!w.closed);
    WAIT_UNTIL(w.closed, 5000);
    ASSERT_EQ_INT(r[0].status, STORE_OK);
    ASSERT_EQ_INT(r[1].status, STORE_OK);
    ASSERT(r[0].seq < r[1].seq);
    ASSERT_EQ_INT(r[2].calls, 0);
    teardown();
}

/* ---- several workers (Redis) ------------------------------------------------------- */

TEST(store_update_delete_need_owner_redis) {
    setup(REDIS);
    struct wk a, b;
    struct res r;
    wk_open(&a, REDIS, "wa");
    wk_open(&b, REDIS, "wb");
    ASSERT_EQ_INT(op_create(a.s, "s1", "A"), STORE_OK);
    ASSERT_EQ_INT(op_create(b.s, "s1", "B"), STORE_EXISTS);
    ASSERT_EQ_INT(op_update(b.s, "s1", 0, "B"), STORE_NOT_OWNER);
    ASSERT_EQ_INT(op_delete(b.s, "s1"), STORE_NOT_OWNER);
    ASSERT_EQ_INT(op_get(b.s, "s1", &r), STORE_OK);              /* nothing changed */
    ASSERT_STR_EQ(r.owner, "wa");
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT(r.blob_len == 1 && r.blob[0] == 'A');
    ASSERT_EQ_INT(op_count(b.s), 1);
    wk_close(&a);
    wk_close(&b);
    teardown();
}

/* republish never takes another worker's record. */
TEST(store_republish_needs_owner_redis) {
    setup(REDIS);
    struct wk a, b;
    struct res r;
    wk_open(&a, REDIS, "wa");
    wk_open(&b, REDIS, "wb");
    ASSERT_EQ_INT(op_create(a.s, "s1", "A"), STORE_OK);
    ASSERT_EQ_INT(op_republish(b.s, "s1", 0, "B"), STORE_NOT_OWNER);
    ASSERT_EQ_INT(op_get(b.s, "s1", &r), STORE_OK);
    ASSERT_STR_EQ(r.owner, "wa");
    ASSERT(r.blob_len == 1 && r.blob[0] == 'A');
    ASSERT_EQ_INT(op_count(b.s), 1);
    wk_close(&a);
    wk_close(&b);
    teardown();
}

/* Redis restarted empty: a record written before is gone, and republish
 * brings it back with its slot, claimable by another worker. */
TEST(store_republish_after_empty_restart_redis) {
    setup(REDIS);
    struct wk a, b;
    struct res r;
    wk_open(&a, REDIS, "wa");
    ASSERT_EQ_INT(op_create(a.s, "s1", "snap"), STORE_OK);
    redis_kill();
    WAIT_UNTIL(!store_available(a.s), 2000);
    redis_start(NULL);
    WAIT_UNTIL(wk_ready(&a), 10000);
    ASSERT_EQ_INT(op_get(a.s, "s1", &r), STORE_NOT_FOUND);         /* lost with the restart */
    ASSERT_EQ_INT(op_update(a.s, "s1", 0, NULL), STORE_NOT_FOUND);  /* an update cannot bring it back */
    ASSERT_EQ_INT(op_republish(a.s, "s1", 0, "snap2"), STORE_OK);
    ASSERT_EQ_INT(op_count(a.s), 1);
    wk_open(&b, REDIS, "wb");
    ASSERT_EQ_INT(op_claim(b.s, "s1", &r), STORE_OK);
    ASSERT_STR_EQ(r.prev, "wa");
    ASSERT(r.blob_len == 5 && memcmp(r.blob, "snap2", 5) == 0);
    wk_close(&a);
    wk_close(&b);
    teardown();
}

/* Claim from a live worker: BUSY while attached; once detached, the claim
 * moves owner and slot, returns the blob, and the old owner's on_released
 * fires (pub/sub). The old owner's writes then get NOT_OWNER. */
TEST(store_claim_live_owner_redis) {
    setup(REDIS);
    struct wk a, b;
    struct res r;
    wk_open(&a, REDIS, "wa");
    wk_open(&b, REDIS, "wb");
    ASSERT_EQ_INT(op_create(a.s, "s1", "{\"seq\":7}"), STORE_OK);
    ASSERT_EQ_INT(op_create(a.s, "s2", "other"), STORE_OK);
    ASSERT_EQ_INT(op_claim(b.s, "s1", &r), STORE_BUSY);
    ASSERT_EQ_INT(op_update(a.s, "s1", 0, "{\"seq\":8}"), STORE_OK);   /* connection dropped */
    uint64_t t0 = now_ms();
    ASSERT_EQ_INT(op_claim(b.s, "s1", &r), STORE_OK);
    ASSERT_STR_EQ(r.prev, "wa");
    ASSERT_STR_EQ(r.owner, "wb");
    ASSERT_EQ_INT(r.attached, 1);
    ASSERT(r.blob_len == 9 && memcmp(r.blob, "{\"seq\":8}", 9) == 0);
    ASSERT(r.created > 0 && r.last >= r.created);
    WAIT_UNTIL(a.released == 1, 3000);
    ASSERT_STR_EQ(a.rel_id, "s1");
    ASSERT_LE_INT(now_ms() - t0, 3000);
    ASSERT_EQ_INT(store_stats(a.s)->releases, 1);
    ASSERT_EQ_INT(b.released, 0);
    ASSERT_EQ_INT(op_update(a.s, "s1", 1, "stale"), STORE_NOT_OWNER);
    ASSERT_EQ_INT(op_delete(a.s, "s1"), STORE_NOT_OWNER);
    ASSERT_EQ_INT(op_claim(a.s, "s1", &r), STORE_BUSY);          /* attached at wb now */
    struct res la, lb;
    ASSERT_EQ_INT(op_list(a.s, "wa", &la), STORE_OK);
    ASSERT_EQ_INT(op_list(a.s, "wb", &lb), STORE_OK);
    ASSERT(la.n == 1 && has_id(&la, "s2"));
    ASSERT(lb.n == 1 && has_id(&lb, "s1"));
    ASSERT_EQ_INT(op_count(a.s), 2);                              /* moved, not added */
    ASSERT_EQ_INT(op_update(b.s, "s1", 1, "new"), STORE_OK);
    ASSERT_EQ_INT(op_delete(b.s, "s1"), STORE_OK);
    ASSERT_EQ_INT(op_count(a.s), 1);
    run_for(100);
    ASSERT_EQ_INT(a.released, 1);                                 /* no duplicate notice */
    wk_close(&a);
    wk_close(&b);
    teardown();
}

/* A dead owner (closed, heartbeat left to expire): BUSY until its heartbeat
 * expires (heartbeat_ttl_s = 1), then claimable; nobody is notified. */
TEST(store_claim_dead_owner_redis) {
    setup(REDIS);
    struct wk a, b;
    struct res r;
    wk_open(&a, REDIS, "wa");
    wk_open(&b, REDIS, "wb");
    ASSERT_EQ_INT(op_create(a.s, "s1", "blob"), STORE_OK);
    wk_close(&a);                         /* like a crash: heartbeat not deleted */
    uint64_t t0 = now_ms();
    ASSERT_EQ_INT(op_claim(b.s, "s1", &r), STORE_BUSY);
    int st;
    while ((st = op_claim(b.s, "s1", &r)) == STORE_BUSY) {
        ASSERT_LE_INT(now_ms() - t0, 1000 + 1500);
        run_for(50);
    }
    ASSERT_EQ_INT(st, STORE_OK);
    ASSERT_STR_EQ(r.prev, "wa");
    ASSERT_STR_EQ(r.owner, "wb");
    ASSERT(r.blob_len == 4 && memcmp(r.blob, "blob", 4) == 0);
    run_for(100);
    ASSERT_EQ_INT(b.released, 0);
    ASSERT_EQ_INT(op_count(b.s), 1);
    wk_close(&b);
    teardown();
}

/* A dead worker's share of the global limit is reclaimed once its heartbeat
 * expires; its sessions re-count when claimed. */
TEST(store_dead_worker_slots_reclaimed_redis) {
    setup(REDIS);
    struct wk a, b;
    struct store_cfg c = cfg_for(REDIS, &a, "wa");
    c.max_global_sessions = 10;
    wk_open_cfg(&a, &c);
    c.worker_id = "wb";
    wk_open_cfg(&b, &c);
    char id[16];
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof id, "a%d", i);
        ASSERT_EQ_INT(op_create(a.s, id, "x"), STORE_OK);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "b%d", i);
        ASSERT_EQ_INT(op_create(b.s, id, "x"), STORE_OK);
    }
    ASSERT_EQ_INT(op_create(b.s, "b4", "x"), STORE_LIMIT);
    ASSERT_EQ_INT(op_count(b.s), 10);
    wk_close(&a);
    uint64_t t0 = now_ms();
    ASSERT_EQ_INT(op_create(b.s, "b4", "x"), STORE_LIMIT);        /* wa's heartbeat lives */
    int st;
    while ((st = op_create(b.s, "b4", "x")) == STORE_LIMIT) {
        ASSERT_LE_INT(now_ms() - t0, 1000 + 1500);
        run_for(50);
    }
    ASSERT_EQ_INT(st, STORE_OK);
    ASSERT_EQ_INT(op_count(b.s), 5);
    for (int i = 5; i < 10; i++) {
        snprintf(id, sizeof id, "b%d", i);
        ASSERT_EQ_INT(op_create(b.s, id, "x"), STORE_OK);
    }
    ASSERT_EQ_INT(op_create(b.s, "b10", "x"), STORE_LIMIT);
    /* wa's sessions are still resumable (until their TTL); a claim re-counts
     * one and never fails on the limit. */
    struct res r;
    ASSERT_EQ_INT(op_claim(b.s, "a0", &r), STORE_OK);
    ASSERT_STR_EQ(r.prev, "wa");
    ASSERT_EQ_INT(op_count(b.s), 11);
    ASSERT_EQ_INT(op_delete(b.s, "a0"), STORE_OK);
    ASSERT_EQ_INT(op_delete(b.s, "b0"), STORE_OK);
    ASSERT_EQ_INT(op_create(b.s, "b10", "x"), STORE_OK);
    wk_close(&b);
    teardown();
}

/* A new process with the worker id of a dead one detaches what that one
 * left attached: claimable at once, although the id's heartbeat is alive. */
TEST(store_restarted_worker_releases_old_sessions_redis) {
    setup(REDIS);
    struct wk a, a2, b;
    struct res r;
    struct store_cfg c = cfg_for(REDIS, &a, "wa");
    c.heartbeat_ttl_s = 30;
    wk_open_cfg(&a, &c);
    ASSERT_EQ_INT(op_create(a.s, "s1", "x"), STORE_OK);
    ASSERT_EQ_INT(op_create(a.s, "s2", "y"), STORE_OK);
    ASSERT_EQ_INT(op_update(a.s, "s2", 0, NULL), STORE_OK);
    wk_close(&a);
    wk_open(&b, REDIS, "wb");
    ASSERT_EQ_INT(op_claim(b.s, "s1", &r), STORE_BUSY);          /* wa looks alive */
    wk_open_cfg(&a2, &c);                                         /* wa again */
    ASSERT_EQ_INT(op_claim(b.s, "s1", &r), STORE_OK);
    ASSERT_STR_EQ(r.prev, "wa");
    WAIT_UNTIL(a2.released == 1, 3000);                           /* wa is alive: told */
    ASSERT_STR_EQ(a2.rel_id, "s1");
    ASSERT_EQ_INT(op_get(b.s, "s2", &r), STORE_OK);
    ASSERT_EQ_INT(r.attached, 0);
    ASSERT_EQ_INT(op_count(b.s), 2);
    wk_close(&a2);
    wk_close(&b);
    teardown();
}

/* ---- Redis failures ----------------------------------------------------------------- */

/* Kill Redis: ops fail fast without blocking; restart it on the same port:
 * the store reconnects (backoff) and works. */
TEST(store_redis_restart) {
    setup(REDIS);
    capture_stderr();
    struct wk w;
    struct res r;
    wk_open(&w, REDIS, "w1");
    ASSERT_EQ_INT(w.nstates, 1);
    ASSERT_EQ_INT(w.states[0], 1);
    ASSERT_EQ_INT(store_stats(w.s)->connected, 1);
    ASSERT_EQ_INT(op_create(w.s, "s1", "x"), STORE_OK);
    redis_kill();
    uint64_t t0 = now_ms();
    ASSERT_EQ_INT(op_create(w.s, "s2", "x"), STORE_UNAVAILABLE);
    ASSERT_LE_INT(now_ms() - t0, 500 + 500);
    WAIT_UNTIL(!store_available(w.s), 2000);
    ASSERT_EQ_INT(store_stats(w.s)->connected, 0);
    ASSERT_EQ_INT(w.states[w.nstates - 1], 0);
    for (int i = 0; i < 5; i++) {                                 /* fail fast */
        t0 = now_ms();
        ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_UNAVAILABLE);
        ASSERT_LE_INT(r.t_done - t0, 200);
    }
    ASSERT_GE_INT(store_stats(w.s)->errors, 6);
    run_for(700);                                                 /* a few failed attempts */
    ASSERT(!store_available(w.s));
    redis_start(NULL);                                            /* same port */
    t0 = now_ms();
    WAIT_UNTIL(wk_ready(&w), 10000);
    ASSERT_LE_INT(now_ms() - t0, REDIS_BACKOFF_BOUND_MS);
    ASSERT_EQ_INT(store_stats(w.s)->reconnects, 1);
    ASSERT_EQ_INT(w.states[w.nstates - 1], 1);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_NOT_FOUND);        /* no persistence here */
    ASSERT_EQ_INT(op_create(w.s, "s1", "x"), STORE_OK);
    ASSERT_EQ_INT(op_count(w.s), 1);
    wk_close(&w);
    const char *log = captured();
    /* Logged once per connection when lost and when restored. */
    const char *lost = strstr(log, "\"store connection lost\",\"store\":\"redis\",\"conn\":\"main\"");
    const char *back = strstr(log, "\"store connection restored\",\"store\":\"redis\",\"conn\":\"main\"");
    ASSERT(lost != NULL && back != NULL && lost < back);
    const char *eol = strchr(back, '\n');
    const char *down = strstr(back, "\"down_ms\":");
    ASSERT(down != NULL && (!eol || down < eol));                 /* how long it was down */
    ASSERT(strstr(lost + 1, "\"store connection lost\",\"store\":\"redis\",\"conn\":\"main\"") == NULL);
    ASSERT(strstr(log, "\"conn\":\"pubsub\"") != NULL);
    teardown();
}

/* A hung Redis (SIGSTOP): an op gets no reply and completes with
 * UNAVAILABLE at op_timeout_ms; later ops fail fast; after SIGCONT the store
 * reconnects. */
TEST(store_redis_hung_times_out) {
    setup(REDIS);
    struct wk w;
    struct res r;
    struct store_cfg c = cfg_for(REDIS, &w, "w1");
    c.heartbeat_ttl_s = 30;               /* no heartbeat in flight to time out first */
    c.op_timeout_ms = 400;
    wk_open_cfg(&w, &c);
    ASSERT_EQ_INT(op_create(w.s, "s1", "x"), STORE_OK);
    kill(redis_pid, SIGSTOP);
    WAIT_UNTIL(proc_state(redis_pid) == 'T', 2000);
    uint64_t t0 = now_ms();
    memset(&r, 0, sizeof r);
    CALL(store_get(w.s, "s1", cb_rec, &r));
    ASSERT_EQ_INT(store_stats(w.s)->inflight, 1);               /* sent, no reply */
    WAIT_UNTIL(r.calls, 10000);
    ASSERT_EQ_INT(r.status, STORE_UNAVAILABLE);
    ASSERT_GE_INT(r.t_done - t0, 400 - 20);
    ASSERT_LE_INT(r.t_done - t0, 400 + 500);
    ASSERT_EQ_INT(store_stats(w.s)->timeouts, 1);
    ASSERT_EQ_INT(store_stats(w.s)->inflight, 0);
    ASSERT_EQ_INT(store_stats(w.s)->errors, 1);
    ASSERT(!store_available(w.s));
    t0 = now_ms();
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_UNAVAILABLE);
    ASSERT_LE_INT(r.t_done - t0, 200);
    run_for(1000);                        /* reconnects time out in the handshake */
    ASSERT(!store_available(w.s));
    kill(redis_pid, SIGCONT);
    WAIT_UNTIL(store_available(w.s), 10000);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_OK);
    ASSERT_GE_INT(store_stats(w.s)->reconnects, 1);
    wk_close(&w);
    teardown();
}

/* Redis not there at start: the store opens, ops fail fast, close works. */
TEST(store_redis_unreachable_at_start) {
    setup(MEM);
    capture_stderr();
    redis_port = free_port();             /* nothing listens */
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", redis_port);
    struct wk w;
    memset(&w, 0, sizeof w);
    struct store_cfg c = cfg_for(REDIS, &w, "w1");
    ASSERT_EQ_INT(store_open(&loop, &c, &w.s), 0);
    ASSERT(!store_available(w.s));
    struct res r;
    uint64_t t0 = now_ms();
    ASSERT_EQ_INT(op_create(w.s, "s1", "x"), STORE_UNAVAILABLE);
    ASSERT_EQ_INT(op_get(w.s, "s1", &r), STORE_UNAVAILABLE);
    ASSERT_LE_INT(now_ms() - t0, 200);
    run_for(500);
    ASSERT(!store_available(w.s));
    ASSERT_EQ_INT(w.nstates, 0);
    wk_close(&w);
    const char *log = captured();
    ASSERT(strstr(log, "\"store unavailable\"") != NULL);
    ASSERT(strstr(log, "refused") != NULL);              /* seen at once, not by the deadline */
    teardown();
}

/* The script cache is flushed under the store: EVALSHA gets NOSCRIPT, the
 * scripts are loaded again and the op is re-sent; the ops after it find
 * them loaded. Several ops answered NOSCRIPT together load them once. */
TEST(store_redis_noscript_fallback) {
    setup(REDIS);
    struct wk w;
    struct res r;
    wk_open(&w, REDIS, "w1");
    freeReplyObject(redis_cmd("SCRIPT FLUSH", NULL));
    freeReplyObject(redis_cmd("CONFIG RESETSTAT", NULL));
    ASSERT_EQ_INT(op_create(w.s, "s1", "x"), STORE_OK);
    ASSERT_EQ_INT(op_claim(w.s, "s1", &r), STORE_BUSY);
    redisReply *info = redis_cmd("INFO commandstats", NULL);
    ASSERT_EQ_INT(info->type, REDIS_REPLY_STRING);
    ASSERT(strstr(info->str, "cmdstat_script|load:calls=8,") != NULL);   /* one round of S__N */
    ASSERT(strstr(info->str, "cmdstat_evalsha:calls=3,") != NULL);       /* NOSCRIPT, re-send, claim */
    freeReplyObject(info);
    ASSERT_EQ_INT(store_stats(w.s)->errors, 0);

    /* Five ops in flight when the cache is flushed: one more round. */
    freeReplyObject(redis_cmd("SCRIPT FLUSH", NULL));
    freeReplyObject(redis_cmd("CONFIG RESETSTAT", NULL));
    struct res rs[5];
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%d", i);
        CALL(store_create(w.s, id, "y", 1, cb_done, &rs[i]));
    }
    WAIT_UNTIL(rs[0].calls && rs[1].calls && rs[2].calls && rs[3].calls && rs[4].calls, 10000);
    for (int i = 0; i < 5; i++) ASSERT_EQ_INT(rs[i].status, STORE_OK);
    info = redis_cmd("INFO commandstats", NULL);
    ASSERT_EQ_INT(info->type, REDIS_REPLY_STRING);
    ASSERT(strstr(info->str, "cmdstat_script|load:calls=8,") != NULL);
    ASSERT(strstr(info->str, "cmdstat_evalsha:calls=10,") != NULL);
    freeReplyObject(info);
    ASSERT_EQ_INT(store_stats(w.s)->errors, 0);

    /* A blob past rconn's default of kept arguments (64 KiB) is re-sent too. */
    static char big[200 * 1024];
    memset(big, 'b', sizeof big - 1);
    freeReplyObject(redis_cmd("SCRIPT FLUSH", NULL));
    ASSERT_EQ_INT(op_create(w.s, "big", big), STORE_OK);
    ASSERT_EQ_INT(op_update(w.s, "big", 1, big), STORE_OK);
    wk_close(&w);
    teardown();
}

/* unix:// URL, a host name (resolved off the loop), a password and a db. */
TEST(store_redis_url_variants) {
    setup(MEM);
    capture_stderr();
    const char *extra[] = {"--requirepass", "s3cret", NULL};
    redis_start(extra);
    struct wk w;
    struct res r;
    struct store_cfg c;
    char url[256];

    snprintf(url, sizeof url, "unix://:s3cret@%s", redis_sock);
    c = cfg_for(REDIS, &w, "w1");
    c.redis_url = url;
    wk_open_cfg(&w, &c);
    ASSERT_EQ_INT(op_create(w.s, "u1", "x"), STORE_OK);
    wk_close(&w);

    snprintf(url, sizeof url, "redis://:s3cret@localhost:%d/3", redis_port);
    c.redis_url = url;
    wk_open_cfg(&w, &c);
    ASSERT_EQ_INT(op_create(w.s, "h1", "x"), STORE_OK);
    ASSERT_EQ_INT(op_get(w.s, "u1", &r), STORE_NOT_FOUND);       /* other db */
    wk_close(&w);

    redisContext *sc = redis_sync();
    ASSERT(sc != NULL);
    redisReply *rr = redisCommand(sc, "AUTH s3cret");
    freeReplyObject(rr);
    rr = redisCommand(sc, "SELECT 3");
    freeReplyObject(rr);
    rr = redisCommand(sc, "EXISTS t:session:h1");
    ASSERT(rr && rr->type == REDIS_REPLY_INTEGER && rr->integer == 1);
    freeReplyObject(rr);
    redisFree(sc);

    /* A wrong password never becomes available; ops fail fast. */
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", redis_port);
    c.redis_url = url;
    memset(&w, 0, sizeof w);
    ASSERT_EQ_INT(store_open(&loop, &c, &w.s), 0);
    run_for(600);
    ASSERT(!store_available(w.s));
    ASSERT_EQ_INT(op_create(w.s, "h2", "x"), STORE_UNAVAILABLE);
    wk_close(&w);
    const char *log = captured();
    ASSERT(strstr(log, "WRONGPASS") != NULL || strstr(log, "invalid") != NULL);
    ASSERT(strstr(log, "s3cret") == NULL && strstr(log, ":wrong@") == NULL);
    teardown();
}

/* Keys carry the prefix and TTLs; nothing is left without one. */
TEST(store_redis_keys_have_ttls) {
    setup(REDIS);
    struct wk w;
    wk_open(&w, REDIS, "w1");
    ASSERT_EQ_INT(op_create(w.s, "s1", "x"), STORE_OK);
    redisReply *k = redis_cmd("KEYS *", NULL);
    ASSERT_EQ_INT(k->type, REDIS_REPLY_ARRAY);
    int seen = 0;
    for (size_t i = 0; i < k->elements; i++) {
        const char *key = k->element[i]->str;
        ASSERT(strncmp(key, "t:", 2) == 0);
        redisReply *t = redis_cmd("PTTL %s", key);
        if (strcmp(key, "t:workers") == 0) {
            ASSERT_EQ_INT(t->integer, -1);          /* pruned by the scripts instead */
        } else {
            ASSERT(t->integer > 0);
            if (strcmp(key, "t:session:s1") == 0) ASSERT_NEAR((double)t->integer, 60000.0, 2000.0);
            if (strcmp(key, "t:worker:w1:alive") == 0) ASSERT_LE_INT(t->integer, 1000);
            seen++;
        }
        freeReplyObject(t);
    }
    ASSERT_EQ_INT(seen, 3);               /* session, worker's sessions, heartbeat */
    freeReplyObject(k);
    wk_close(&w);
    teardown();
}
