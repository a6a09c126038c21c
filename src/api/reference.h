/* The reference library of reading feedback (docs/API.md "Reading
 * feedback"): expected texts the operator keeps in ASR_REFERENCE_DIR, one
 * UTF-8 file <id>.txt per reference_id (a verse, a lesson, a script), read
 * when a stream or an upload names its id. Used by stream.c and rest.c,
 * with expected_text_for(), which also takes the inline text. */
#ifndef ASRD_API_REFERENCE_H
#define ASRD_API_REFERENCE_H

#include <stddef.h>

#include "base/config.h"
#include "base/util.h"
#include "net/http.h"

/* 1 when id[0..n) can name a reference: 1 to 128 of A-Z a-z 0-9 . _ -,
 * not starting with a dot (no path, no hidden file). */
int reference_id_valid(const char *id, size_t n);

/* Reads the text of reference id from dir into out (reset first). Returns
 * 0; ASR_E_NOT_FOUND (no library configured, an id that is not valid, no
 * such file or not a regular file); ASR_E_TOO_LARGE (more than max_bytes);
 * ASR_E_BAD_REQUEST (not UTF-8); ASR_EIO. The files are small and local:
 * read at once, on the caller's thread. */
int reference_load(const char *dir, const char *id, size_t n, size_t max_bytes, struct buf *out);

/* The expected text of a request from its two optional sources: the text
 * itself (text, NULL = none) or a reference id (ref, NULL = none), with
 * the checks every route makes: not both, within cfg's size bound, UTF-8,
 * a known reference. On 0 out holds the text (empty: neither given). Else
 * returns the HTTP status to answer (400, 404, 500) with a static code and
 * message in *code and *why. */
int reference_expected_text(const struct config *cfg, const char *text, size_t text_len, const char *ref,
                            size_t ref_len, struct buf *out, const char **code, const char **why);

/* The same from a request's query parameters expected_text and
 * reference_id (URL-encoded), the text then split into words to make sure
 * it has some: 0 (out empty when neither was given) or the HTTP status to
 * answer with *code and *why (out then freed). */
int reference_from_query(const struct config *cfg, const struct http_req *req, struct buf *out, const char **code,
                         const char **why);

#endif
