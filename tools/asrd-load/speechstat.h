/* speechstat: the pure logic of asrd-load's real-audio scenarios
 * (docs/LOAD.md "Real audio"), kept out of the scenario so it is
 * unit-tested without sockets (tests/unit/test_speechstat.c):
 *
 *   - reading a real engine's `partial` and `final` (docs/API.md "What the
 *     server sends"): text, latency_ms, server_busy, start_ms/end_ms;
 *   - the chunk that carried a stream position, to time a final from the
 *     moment the last audio of its utterance was sent;
 *   - exact latency summaries of a list of values (p50 .. p99, max, mean);
 *   - the hypothesis lines tools/asr-eval/wer.py reads ("fileid<TAB>text").
 *
 * Nothing here does I/O. */
#ifndef ASRD_LOAD_SPEECHSTAT_H
#define ASRD_LOAD_SPEECHSTAT_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

enum speechstat_type {
    SPEECHSTAT_OTHER = 0,
    SPEECHSTAT_PARTIAL,
    SPEECHSTAT_FINAL,
};

struct speechstat_msg {
    enum speechstat_type type;
    int      has_sequence;              /* a non-negative integer "sequence" */
    uint64_t sequence;
    int      server_busy;               /* partial: "server_busy": true */
    int      has_latency;               /* partial: "latency_ms" with a number "total" */
    double   lat_total_ms;              /* latency_ms.total */
    double   lat_buffer_ms;             /* latency_ms.buffer (0 when absent) */
    int      has_span;                  /* final: integer "start_ms" and "end_ms", start <= end */
    uint64_t start_ms, end_ms;
    const char *text;                   /* "text" (partial: committed words; final: the utterance), "" when absent;
                                         * points into the caller's text buffer */
    size_t   text_len;
};

/* Reads one server message p[0..n) (a JSON object) into *out; its "text"
 * is copied into text (reset first, owned by the caller; out->text points
 * into it, NUL-terminated). Values of the wrong type read as absent.
 * Returns 0, or ASR_EINVAL when p is not a JSON object (*out zeroed) and
 * ASR_ENOMEM when text cannot hold the text. */
int speechstat_msg_parse(const char *p, size_t n, struct speechstat_msg *out, struct buf *text);

/* The sequence number (1-based) of the chunk that carried the audio just
 * before stream position pos_ms, when chunk k holds [(k-1) c, k c) ms of
 * audio (c = chunk_ms, every chunk accepted): ceil(pos_ms / c), at least 1.
 * A final's end_ms is the end of its last speech frame, so this is the
 * chunk whose sending finished the utterance's audio. */
uint64_t speechstat_chunk_of(uint64_t pos_ms, unsigned chunk_ms);

/* A list of values (ms) with exact percentiles. */
struct speechstat_series {
    double *v;                          /* owned */
    size_t  n, cap;
    int     sorted_;                    /* private: v is in order */
};

struct speechstat_pct {
    uint64_t count;
    double   p50, p90, p95, p99, max, mean;   /* ms; all 0 when count is 0 */
};

void speechstat_series_add(struct speechstat_series *s, double v);
/* Appends every value of src to dst. */
void speechstat_series_merge(struct speechstat_series *dst, const struct speechstat_series *src);
/* Nearest rank: the p-th percentile is the value of rank ceil(p/100 * n)
 * (at least 1) in ascending order. Sorts s (hence not const). */
void speechstat_series_summary(struct speechstat_series *s, struct speechstat_pct *out);
void speechstat_series_cleanup(struct speechstat_series *s);

/* Appends "fileid<TAB>text\n" to out: the text with runs of whitespace
 * (tabs and newlines included) made single spaces and the ends trimmed.
 * Returns 0 or ASR_ENOMEM. */
int speechstat_hyp_line(struct buf *out, const char *fileid, const char *text);

#endif
