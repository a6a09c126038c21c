/* Structured logging: one JSON object (or logfmt line, ASR_LOG_FORMAT) per
 * line on stderr, with time, level, worker id, message and fields.
 *
 *     struct log_line *l = log_begin(LOG_INFO, "session end");
 *     if (l) { log_str(l, "session_id", id); log_u64(l, "chunks", n); log_end(l); }
 *
 * log_begin returns NULL when the level is filtered out, so fields cost
 * nothing then. Lines are built in one process-wide buffer (the loop is
 * single-threaded) and written with a single write(2); a line that cannot be
 * written at once (full pipe) is dropped and counted, never blocking the loop. */
#ifndef ASRD_LOG_H
#define ASRD_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* level_name: debug|info|warn|error; format: json|logfmt. */
void log_setup(const char *level_name, const char *format, const char *worker_id);

struct log_line;
struct log_line *log_begin(enum log_level level, const char *msg);
void log_str(struct log_line *l, const char *key, const char *val);
void log_u64(struct log_line *l, const char *key, uint64_t val);
void log_f64(struct log_line *l, const char *key, double val);
/* Adds pre-formatted JSON as the value (json format) or as-is (logfmt). */
void log_raw(struct log_line *l, const char *key, const char *json);
void log_end(struct log_line *l);

/* Lines dropped because stderr would have blocked. */
uint64_t log_dropped(void);

#endif
