/* Transcript output formats for files (REST, jobs, the OpenAI-compatible
 * route): plain text, SubRip (SRT), WebVTT and OpenAI's verbose_json, from
 * the same list of segments (one per utterance, with words when the engine
 * gives them). Pure: values in, text out (tests/unit/test_formats.c). */
#ifndef ASRD_API_FORMATS_H
#define ASRD_API_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "core/engine.h"

/* One utterance of a transcript. Everything is borrowed. */
struct fmt_segment {
    uint64_t    start_ms, end_ms;
    const char *text;
    size_t      len;
    const struct engine_word *words; /* NULL when the engine gives no word times */
    size_t      n_words;
};

struct fmt_transcript {
    const struct fmt_segment *segs;
    size_t      n;
    uint64_t    duration_ms;       /* of the audio */
    const char *language;          /* e.g. "english"; NULL = "english" */
};

enum fmt_kind { FMT_JSON, FMT_TEXT, FMT_SRT, FMT_VTT, FMT_VERBOSE_JSON, FMT__N };

/* "json", "text", "srt", "vtt", "verbose_json" -> its kind; -1 otherwise. */
int fmt_parse(const char *name, size_t len);
const char *fmt_name(enum fmt_kind k);
/* The Content-Type of a format. */
const char *fmt_content_type(enum fmt_kind k);

/* The segments' texts joined by single spaces. */
int fmt_text(struct buf *out, const struct fmt_transcript *t);
/* SubRip: numbered cues "HH:MM:SS,mmm --> HH:MM:SS,mmm", one per segment. */
int fmt_srt(struct buf *out, const struct fmt_transcript *t);
/* WebVTT: "WEBVTT" then cues "HH:MM:SS.mmm --> HH:MM:SS.mmm". */
int fmt_vtt(struct buf *out, const struct fmt_transcript *t);
/* OpenAI's verbose_json: task, language, duration (s), text, and segments
 * and/or words (seconds) as asked. */
int fmt_verbose_json(struct buf *out, const struct fmt_transcript *t, int want_segments, int want_words);
/* {"text": ...} (OpenAI's json). */
int fmt_json_text(struct buf *out, const struct fmt_transcript *t);
/* Any of the above by kind (FMT_VERBOSE_JSON with segments, and words when
 * there are some). Returns 0 or ASR_ENOMEM. */
int fmt_render(struct buf *out, enum fmt_kind k, const struct fmt_transcript *t);

#endif
