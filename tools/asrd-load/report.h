/* report: what asrd-load prints and writes (docs/LOAD.md "Output"):
 *
 *   - the progress line on stderr, once a second;
 *   - the report on stdout at the end: a header, the scenario's head (the
 *     capacity steps), the driver's part of the totals, the scenario's
 *     body, the client's CPU, and the server's deltas with the client/server
 *     agreement;
 *   - the output files: --json (loadstat_result plus the scenario's
 *     members) and --svg.
 *
 * The printing helpers are shared with the drivers and scenarios, so every
 * part of the report lines up the same way: a 14-column label, then the
 * figures. */
#ifndef ASRD_LOAD_REPORT_H
#define ASRD_LOAD_REPORT_H

#include <stdint.h>

#include "loadstat.h"

struct load;

/* The progress line for the point just added to the timeline: d_chunks and
 * d_answers in the last second, stalled sessions now, fresh: pt carries a
 * server sample. Nothing with --quiet. */
void report_progress(const struct load *L, const struct loadstat_point *pt, uint64_t d_chunks, uint64_t d_answers,
                     unsigned stalled, int fresh);

/* The whole report on stdout. */
void report_print(const struct load *L);

/* Writes --json and --svg (and the scenario's own files). Returns 0, or 1
 * when a file could not be written (said on stderr). */
int report_write_outputs(const struct load *L);

/* The drivers' parts of the totals (struct load_driver.report). */
void report_streams(const struct load *L, const struct loadstat_run *t);
void report_rest(const struct load *L, const struct loadstat_run *t);

/* Helpers: "label  name n, name n" ("none" when empty) and
 * "label  p50 .. p90 .. p99 .. p99.9 .. max .. mean .. (n=..)". */
void report_counts(const char *label, const struct loadstat_counts *c);
void report_pct(const char *label, const struct loadstat_pct *p);
/* after - before, 0 when the counter went down. */
unsigned long long report_dlt(uint64_t before, uint64_t after);

#endif
