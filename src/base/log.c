#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

#include "base/util.h"

struct log_line {
    struct buf b;         /* the line being built; owned by the module */
    int        logfmt;    /* 1 = key=value output */
};

static struct log_line line_;
static int min_level_ = LOG_INFO;
static char worker_[64] = "w0";
static uint64_t dropped_;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(const char *level_name, const char *format, const char *worker_id) {
    for (int i = 0; i < 4; i++)
        if (level_name && strcmp(level_name, level_names[i]) == 0) min_level_ = i;
    line_.logfmt = format && strcmp(format, "logfmt") == 0;
    if (worker_id) snprintf(worker_, sizeof worker_, "%s", worker_id);
    if (!line_.b.limit) buf_init(&line_.b, 64 * 1024);
}

static void put_key(struct log_line *l, const char *key) {
    if (l->logfmt) buf_printf(&l->b, " %s=", key);
    else buf_printf(&l->b, ",\"%s\":", key);
}

/* logfmt values are quoted when they hold spaces, quotes or '='. */
static void put_str_val(struct log_line *l, const char *v) {
    size_t n = strlen(v);
    if (!l->logfmt || n == 0 || strpbrk(v, " \"=\t\n\\")) buf_json_str(&l->b, v, n);
    else buf_append(&l->b, v, n);
}

struct log_line *log_begin(enum log_level level, const char *msg) {
    if ((int)level < min_level_) return NULL;
    struct log_line *l = &line_;
    if (!l->b.limit) buf_init(&l->b, 64 * 1024);
    buf_reset(&l->b);
    uint64_t ms = util_wall_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[80];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
    if (l->logfmt) {
        buf_printf(&l->b, "ts=%s level=%s worker=%s msg=", ts, level_names[level], worker_);
        buf_json_str(&l->b, msg, strlen(msg));
    } else {
        buf_printf(&l->b, "{\"ts\":\"%s\",\"level\":\"%s\",\"worker\":", ts, level_names[level]);
        buf_json_str(&l->b, worker_, strlen(worker_));
        buf_puts(&l->b, ",\"msg\":");
        buf_json_str(&l->b, msg, strlen(msg));
    }
    return l;
}

void log_str(struct log_line *l, const char *key, const char *val) {
    put_key(l, key);
    put_str_val(l, val ? val : "");
}

void log_u64(struct log_line *l, const char *key, uint64_t val) {
    put_key(l, key);
    buf_printf(&l->b, "%llu", (unsigned long long)val);
}

void log_f64(struct log_line *l, const char *key, double val) {
    put_key(l, key);
    buf_printf(&l->b, "%.3f", val);
}

void log_raw(struct log_line *l, const char *key, const char *json) {
    put_key(l, key);
    buf_puts(&l->b, json);
}

/* A blocking stderr (a terminal, a pipe a supervisor reads) must not stall the
 * loop: poll with a zero timeout first and drop the line if it cannot take it. */
void log_end(struct log_line *l) {
    if (!l->logfmt) buf_puts(&l->b, "}");
    buf_puts(&l->b, "\n");
    struct pollfd p = {.fd = 2, .events = POLLOUT};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) {
        dropped_++;
        return;
    }
    ssize_t w = write(2, l->b.data, l->b.len);
    if (w < 0 && errno != EINTR) dropped_++;
}

uint64_t log_dropped(void) { return dropped_; }
