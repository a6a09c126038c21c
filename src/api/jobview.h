/* How a job looks on the wire (docs/API.md "The job object") and its
 * result in each format (docs/API.md "GET /v1/jobs/{id}/result"). Pure:
 * values in, text out (tests/unit/test_jobview.c). */
#ifndef ASRD_API_JOBVIEW_H
#define ASRD_API_JOBVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "api/formats.h"
#include "base/util.h"
#include "store/jobs.h"

/* Unix ms as "2025-01-31T12:34:56.789Z" into out (at least 32 bytes). */
void jobview_time(char *out, size_t len, uint64_t ms);

/* The job object. with_result: a completed job's transcript is included. */
int jobview_json(struct buf *out, const struct jobs_view *v, int with_result);

/* A batch: {"id","created_at","counts":{...},"jobs":[{"id","status"}...]}. */
int jobview_batch_json(struct buf *out, const struct jobs_batch *b);

/* A completed job's result (the JSON a run stored: text, duration_ms,
 * segments with words) in format k: json is that object itself; text,
 * srt, vtt and verbose_json come from api/formats. 0, ASR_ENOMEM, or
 * ASR_E_INTERNAL when the stored result does not read. */
int jobview_result(struct buf *out, const char *result, size_t len, enum fmt_kind k);

#endif
