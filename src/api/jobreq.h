/* Job requests (docs/API.md "POST /v1/jobs"): the options a job takes
 * (from the query string, a JSON body or multipart fields), a JSON body
 * naming an audio URL, and multipart/form-data bodies of several files (a
 * batch). Pure: bytes in, values or an error out (tests/unit/test_jobreq.c,
 * tests/fuzz/fuzz_jobreq.c). The multipart reader is this module's own: it
 * only splits form-data parts for the job routes. */
#ifndef ASRD_API_JOBREQ_H
#define ASRD_API_JOBREQ_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define JOBREQ_URL_MAX      2048        /* bytes of an audio or callback URL */
#define JOBREQ_TEXT_MAX     1024        /* bytes of a hint or metadata */
#define JOBREQ_JSON_MAX     65536       /* bytes of a JSON job request */

enum jobreq_granularity { JOBREQ_WORD, JOBREQ_SEGMENT };

/* A job's options; "" / 0 when not given. */
struct jobreq_opts {
    char     callback[JOBREQ_URL_MAX + 1];  /* http(s) URL the result is POSTed to */
    enum jobreq_granularity granularity;    /* word: segments with word times when the engine gives them */
    char     hint[JOBREQ_TEXT_MAX + 1];     /* engine text hint */
    unsigned endpointing_ms;                /* 0 = the server's ASR_ENDPOINTING_MS; else 30..10000 */
    char     metadata[JOBREQ_TEXT_MAX + 1]; /* the client's own string, shown back and in webhooks */
};

/* A JSON job request: an audio URL and options. */
struct jobreq {
    char url[JOBREQ_URL_MAX + 1];
    struct jobreq_opts opts;
};

/* Defaults (word granularity, nothing else). */
void jobreq_opts_init(struct jobreq_opts *o);

/* Sets option name (callback, granularity, hint, endpointing_ms,
 * metadata) from its text value v[0..n). 0; ASR_E_NOT_FOUND for a name
 * that is not an option (the caller decides whether that is an error);
 * ASR_E_BAD_REQUEST with a message in err for a bad value. */
int jobreq_set(struct jobreq_opts *o, const char *name, const char *v, size_t n, char *err, size_t errlen);

/* 1 when u[0..n) is an http:// or https:// URL of at most JOBREQ_URL_MAX
 * printable ASCII bytes without spaces, with a host. */
int jobreq_url_ok(const char *u, size_t n);

/* Parses a JSON job request: an object with "url" (required) and any of the
 * options, nothing else (unknown keys, wrong types, duplicate keys: 400).
 * Returns 0, or ASR_E_BAD_REQUEST with a message in err. */
int jobreq_parse_json(const char *p, size_t n, struct jobreq *out, char *err, size_t errlen);

/* The options as stored and shown: {"granularity":...,"callback":...,...}
 * (only what was given, besides granularity). 0 or ASR_ENOMEM. */
int jobreq_opts_json(const struct jobreq_opts *o, struct buf *out);
/* What changes a transcript (granularity, hint, endpointing), canonical:
 * part of the content hash and what the run gets. 0 or ASR_ENOMEM. */
int jobreq_run_json(const struct jobreq_opts *o, struct buf *out);
/* The inverse of jobreq_run_json (for the runner). 0 or ASR_E_BAD_REQUEST. */
int jobreq_parse_run_json(const char *p, size_t n, struct jobreq_opts *out);

/* The content hash of a job (docs/API.md "Deduplication and the result
 * cache"), 64 hex characters into out: SHA-256 over "asrd-job-1", the
 * engine's name, the audio's Content-Type (lowercased, spaces dropped; ""
 * for none), the run options (jobreq_run_json) and the SHA-256 of the
 * audio, each followed by a NUL byte. */
void jobreq_content_hash(const void *audio, size_t len, const char *ctype, const char *run_json, const char *engine,
                         char out[65]);
/* An idempotency fingerprint: SHA-256 of what (a content hash, or an audio
 * URL), a NUL and the options as stored (jobreq_opts_json), in hex. */
void jobreq_fingerprint(const char *what, const char *opts_json, char out[65]);

/* One part of a multipart/form-data body; everything points into the body. */
struct jobreq_part {
    const char    *name;                    /* the form field's name */
    size_t         name_len;
    const char    *filename;                /* NULL when the part has none */
    size_t         filename_len;
    const char    *ctype;                   /* its Content-Type, NULL when absent */
    size_t         ctype_len;
    const uint8_t *data;
    size_t         len;
};

/* 1 when content_type is multipart/form-data (case-insensitive). */
int jobreq_is_multipart(const char *content_type);

/* Splits a multipart/form-data body (RFC 7578) whose Content-Type carries
 * the boundary into at most max parts (*n of them). Every part must have a
 * Content-Disposition of form-data with a name. Returns 0, or
 * ASR_E_BAD_REQUEST (no or bad boundary, a part without its closing
 * delimiter, a malformed part head, more than max parts) with a message in
 * err. */
int jobreq_multipart(const char *content_type, const uint8_t *body, size_t len, struct jobreq_part *parts,
                     size_t max, size_t *n, char *err, size_t errlen);

#endif
