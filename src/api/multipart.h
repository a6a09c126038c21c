/* multipart/form-data request bodies (RFC 7578), as HTML forms, curl -F and
 * the OpenAI SDKs send them, parsed by GMime 3 from memory once the whole
 * body is in (docs/API.md "POST /v1/audio/transcriptions").
 *
 * Pure: bytes in, parts out, no I/O and no loop, so it runs on a thread-pool
 * thread (a 25 MB body takes GMime about 25 ms) and under the fuzzer
 * (tests/fuzz/fuzz_multipart.c). Thread-safe: each call has its own GMime
 * objects; GMime is initialised once per process on first use.
 *
 * Bounded: at most MP_MAX_PARTS parts; every part but the one named
 * `file_field` (the upload) at most max_field_bytes; no nested multipart
 * and no message parts (RFC 7578 4.3 dropped multipart/mixed); a
 * Content-Transfer-Encoding other than 7bit, 8bit or binary is refused (RFC
 * 7578 4.7); and at most MP_MAX_DASH_LINES lines of the body may start
 * with "--", which bounds GMime's work on boundary lines whatever the body
 * holds (a legitimate form has one per part, binary audio a handful at
 * most). */
#ifndef ASRD_API_MULTIPART_H
#define ASRD_API_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define MP_MAX_PARTS      32
#define MP_MAX_DASH_LINES 1024

/* One form field. The strings and the data belong to the form. */
struct mp_part {
    const char    *name;          /* Content-Disposition name, NUL-terminated */
    const char    *filename;      /* its filename, or NULL when the part has none */
    const char    *content_type;  /* the part's "type/subtype" (lower case), or NULL when it states none */
    const uint8_t *data;          /* the part's bytes, into the form's copy of the body */
    size_t         len;
};

struct mp_form {
    struct mp_part parts[MP_MAX_PARTS];
    size_t         n;             /* parts, in body order */
    struct buf     bytes_;        /* owned: the body (adopted), what the parts point into */
    struct buf     strings_;      /* owned: the parts' strings */
};

/* Parses body as multipart/form-data with the boundary of content_type (the
 * request's Content-Type value). The form adopts body whatever the outcome
 * (body is left empty; the bytes are rewritten in place: GMime needs a
 * header before them) and must be released with mp_form_cleanup, also after
 * an error. file_field names the one part allowed past max_field_bytes (NULL:
 * none).
 *
 * Returns 0 with the parts in form->parts. Every refusal is
 * ASR_E_BAD_REQUEST (not multipart/form-data, no or a bad boundary, not
 * parseable, a part without a form-data name, nested or encoded parts, too
 * many parts or boundary lines, no closing delimiter "--boundary--") or
 * ASR_E_TOO_LARGE (a field over max_field_bytes), with a one-line message
 * in errbuf (when not NULL); or ASR_ENOMEM. */
int mp_parse(struct mp_form *form, struct buf *body, const char *content_type, const char *file_field,
             size_t max_field_bytes, char *errbuf, size_t errlen);

/* Frees what the form holds; the form is then empty. */
void mp_form_cleanup(struct mp_form *form);

/* The first part named name, or NULL. */
const struct mp_part *mp_find(const struct mp_form *form, const char *name);

#endif
