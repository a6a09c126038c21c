/* Static files from one directory over HTTP (docs/API.md "The page at /"):
 * GET and HEAD, a content type by extension, an ETag with Cache-Control:
 * no-cache (browsers revalidate, and get 304 when nothing changed), and a
 * bounded in-memory cache. Meant as an http_server's fallback, for the few
 * small files of the page asrd serves at /.
 *
 * A URL path maps to a file only when every segment is made of letters,
 * digits, '-', '_' and '.' and does not start with '.' (no "..", no hidden
 * files, no percent-encoding); "/" and paths ending in '/' mean index.html.
 * The file must be a regular file whose real path (symbolic links
 * resolved) is inside the directory's. Anything else is 404.
 *
 * The file system is read on the loop: a stat() per request to see whether
 * the cached copy is current (so edited files show at the next load), a
 * read only when it is not. Files are small and local; a large or slow
 * directory does not belong here. */
#ifndef ASRD_NET_FILES_H
#define ASRD_NET_FILES_H

#include <stddef.h>

#include "net/http.h"

#define FILES_MAX_FILE_BYTES (4u << 20)   /* larger files are not served (404) */
#define FILES_CACHE_BYTES    (4u << 20)   /* bytes of file contents kept, in all */
#define FILES_CACHE_ENTRIES  64           /* files kept */

struct files;

/* Serves dir (its real path is taken now). Returns 0 and *out, or
 * ASR_EINVAL when dir is not a directory that can be read. The caller owns
 * *out (files_destroy). */
int  files_create(const char *dir, struct files **out);
void files_destroy(struct files *f);

/* The route handler (http_handler_fn): ctx is the struct files. Answers
 * 200, 304 (If-None-Match names the current ETag) or 404, at once. */
void files_serve(void *ctx, struct http_conn *hc, struct http_req *req);

/* The file a URL path names, relative to the directory, into out
 * (NUL-terminated). Pure, for tests and the fuzzer. Returns its length, or
 * -1 when the path names no servable file (the rules above) or does not fit
 * in cap. */
int files_map_path(const char *path, size_t len, char *out, size_t cap);

/* The Content-Type of a file name, by its extension
 * (application/octet-stream when unknown). Static storage. */
const char *files_type(const char *name);

#endif
