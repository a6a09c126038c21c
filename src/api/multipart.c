/* multipart/form-data over GMime 3 (multipart.h).
 *
 * GMime parses MIME entities, which start with headers, and an HTTP body
 * has its Content-Type in the request head instead: the body's buffer
 * grows by one header line, the bytes move up behind it, and GMime parses
 * the whole from a memory stream that borrows the buffer (a GByteArray
 * wrapping it, not copying it). With GMime's persistent streams (its
 * default for seekable input) a part's content is a substream of that
 * memory stream, so its bounds are offsets into our buffer and no part is
 * copied. Everything GMime made is released before mp_parse returns; the
 * parts point into the bytes the form keeps. */
#define _GNU_SOURCE /* memmem */
#include "api/multipart.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "base/err.h"

#define MP_MAX_BOUNDARY 70  /* RFC 2046 5.1.1 */

static pthread_once_t mp_once = PTHREAD_ONCE_INIT;

static void mp_init_once(void) { g_mime_init(); }

static int fail_msg(int err, char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_msg(int err, char *errbuf, size_t errlen, const char *fmt, ...) {
    if (errbuf && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return err;
}

void mp_form_cleanup(struct mp_form *form) {
    buf_cleanup(&form->bytes_);
    buf_cleanup(&form->strings_);
    memset(form->parts, 0, sizeof form->parts);
    form->n = 0;
}

const struct mp_part *mp_find(const struct mp_form *form, const char *name) {
    for (size_t i = 0; i < form->n; i++)
        if (strcmp(form->parts[i].name, name) == 0) return &form->parts[i];
    return NULL;
}

/* RFC 2046 5.1.1: 1 to 70 bchars, not ending in a space. */
static int boundary_ok(const char *b) {
    size_t n = strlen(b);
    if (n < 1 || n > MP_MAX_BOUNDARY || b[n - 1] == ' ') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr("'()+_,-./:=? ", c)))
            return 0;
    }
    return 1;
}

/* Lines of p[0..n) that start with "--", counted up to cap + 1. */
static size_t dash_lines(const uint8_t *p, size_t n, size_t cap) {
    size_t count = n >= 2 && p[0] == '-' && p[1] == '-';
    const uint8_t *q = p, *end = p + n;
    while (count <= cap && q < end) {
        const uint8_t *nl = memchr(q, '\n', (size_t)(end - q));
        if (!nl) break;
        if (end - nl > 2 && nl[1] == '-' && nl[2] == '-') count++;
        q = nl + 1;
    }
    return count;
}

/* "--boundary--" at the start of a line somewhere in p[0..n). */
static int has_close_delimiter(const uint8_t *p, size_t n, const char *b) {
    char d[MP_MAX_BOUNDARY + 8];
    int dl = snprintf(d, sizeof d, "\n--%s--", b);
    if (n >= (size_t)dl - 1 && memcmp(p, d + 1, (size_t)dl - 1) == 0) return 1;
    return memmem(p, n, d, (size_t)dl) != NULL;
}

/* Appends s with its NUL to the strings; *off gets where it starts. */
static int put_str(struct mp_form *f, const char *s, size_t *off) {
    *off = f->strings_.len;
    return buf_append(&f->strings_, s, strlen(s) + 1);
}

struct offs {
    size_t name, filename, ctype;   /* into strings_; SIZE_MAX = none */
};

/* One part of the top-level multipart into the form (its strings as
 * offsets, fixed up once strings_ stops moving). */
static int take_part(struct mp_form *f, GMimeObject *obj, GByteArray *arr, const char *file_field,
                     size_t max_field, struct offs *o, char *errbuf, size_t errlen) {
    size_t idx = f->n;
    if (!GMIME_IS_PART(obj))
        return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "part %zu is a nested multipart or a message", idx + 1);
    GMimeContentDisposition *d = g_mime_object_get_content_disposition(obj);
    const char *disp = d ? g_mime_content_disposition_get_disposition(d) : NULL;
    const char *name = d ? g_mime_content_disposition_get_parameter(d, "name") : NULL;
    if (!disp || strcasecmp(disp, "form-data") != 0 || !name)
        return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                        "part %zu has no Content-Disposition: form-data with a name", idx + 1);
    GMimeContentEncoding enc = g_mime_part_get_content_encoding(GMIME_PART(obj));
    if (enc != GMIME_CONTENT_ENCODING_DEFAULT && enc != GMIME_CONTENT_ENCODING_7BIT &&
        enc != GMIME_CONTENT_ENCODING_8BIT && enc != GMIME_CONTENT_ENCODING_BINARY)
        return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                        "part \"%.64s\" has a Content-Transfer-Encoding; form-data parts are sent as they are", name);

    struct mp_part *p = &f->parts[idx];
    p->data = (const uint8_t *)f->bytes_.data;
    p->len = 0;
    GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));
    GMimeStream *s = w ? g_mime_data_wrapper_get_stream(w) : NULL;
    if (s) {
        /* A persistent substream of our memory stream: its bounds are
         * offsets into arr, which is f->bytes_. */
        if (!GMIME_IS_STREAM_MEM(s) || GMIME_STREAM_MEM(s)->buffer != arr || s->bound_start < 0 ||
            (gint64)s->bound_start > (gint64)arr->len)
            return fail_msg(ASR_E_INTERNAL, errbuf, errlen, "multipart parser did not keep the part in place");
        gint64 end = s->bound_end < 0 || s->bound_end > (gint64)arr->len ? (gint64)arr->len : s->bound_end;
        if (end < s->bound_start) end = s->bound_start;
        p->data = arr->data + s->bound_start;
        p->len = (size_t)(end - s->bound_start);
    }
    int is_file = file_field && strcmp(name, file_field) == 0;
    if (!is_file && p->len > max_field)
        return fail_msg(ASR_E_TOO_LARGE, errbuf, errlen, "field \"%.64s\" is %zu bytes, more than %zu", name, p->len,
                        max_field);

    o->filename = o->ctype = SIZE_MAX;
    int bad = put_str(f, name, &o->name);
    const char *fn = g_mime_content_disposition_get_parameter(d, "filename");
    if (fn) bad |= put_str(f, fn, &o->filename);
    if (g_mime_object_get_header(obj, "Content-Type")) {
        GMimeContentType *ct = g_mime_object_get_content_type(obj);
        char *mt = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
        if (mt) {
            for (char *c = mt; *c; c++)
                if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
            bad |= put_str(f, mt, &o->ctype);
            g_free(mt);
        }
    }
    if (bad) return fail_msg(ASR_ENOMEM, errbuf, errlen, "out of memory");
    f->n++;
    return 0;
}

int mp_parse(struct mp_form *form, struct buf *body, const char *content_type, const char *file_field,
             size_t max_field_bytes, char *errbuf, size_t errlen) {
    GMimeContentType *ct = NULL;
    GByteArray *arr = NULL;
    GMimeStream *stream = NULL;
    GMimeParser *parser = NULL;
    GMimeObject *top = NULL;
    struct offs offs[MP_MAX_PARTS];
    char header[MP_MAX_BOUNDARY + 64], boundary[MP_MAX_BOUNDARY + 1];
    int rc;

    pthread_once(&mp_once, mp_init_once);
    memset(form, 0, sizeof *form);
    form->bytes_ = *body; /* adopted, whatever happens */
    buf_init(body, 0);
    buf_init(&form->strings_, 0);
    if (errbuf && errlen) errbuf[0] = '\0';

    if (!content_type) return fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "no Content-Type: send multipart/form-data");
    ct = g_mime_content_type_parse(NULL, content_type);
    if (!ct || !g_mime_content_type_is_type(ct, "multipart", "form-data")) {
        rc = fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "Content-Type must be multipart/form-data");
        goto done;
    }
    const char *b = g_mime_content_type_get_parameter(ct, "boundary");
    if (!b || !boundary_ok(b)) {
        rc = fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen,
                      "multipart/form-data needs a boundary parameter of 1 to 70 allowed characters");
        goto done;
    }
    memcpy(boundary, b, strlen(b) + 1);

    const uint8_t *raw = (const uint8_t *)form->bytes_.data;
    size_t raw_n = form->bytes_.len;
    if (!raw_n || !has_close_delimiter(raw, raw_n, boundary)) {
        rc = fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "multipart body has no closing delimiter --%s--", boundary);
        goto done;
    }
    if (dash_lines(raw, raw_n, MP_MAX_DASH_LINES) > MP_MAX_DASH_LINES) {
        rc = fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "multipart body has more than %d lines starting with --",
                      MP_MAX_DASH_LINES);
        goto done;
    }

    /* The header GMime starts from, then the body moved up behind it. */
    int hl = snprintf(header, sizeof header, "Content-Type: multipart/form-data; boundary=\"%s\"\r\n\r\n", boundary);
    struct buf *by = &form->bytes_;
    if (buf_reserve(by, (size_t)hl) != 0 || by->len + (size_t)hl > G_MAXUINT) {
        rc = fail_msg(by->len + (size_t)hl > G_MAXUINT ? ASR_E_TOO_LARGE : ASR_ENOMEM, errbuf, errlen,
                      "multipart body too large to parse");
        goto done;
    }
    memmove(by->data + hl, by->data, by->len);
    memcpy(by->data, header, (size_t)hl);
    by->len += (size_t)hl;

    /* GMime borrows the bytes: the array wraps them without copying, the
     * stream does not own the array, and the array is freed below without
     * its data. (g_free and free are the same allocator since GLib 2.46.) */
    arr = g_byte_array_new_take((guint8 *)by->data, by->len);
    stream = g_mime_stream_mem_new_with_byte_array(arr);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_persist_stream(parser, TRUE);
    top = g_mime_parser_construct_part(parser, NULL);
    if (!top || !GMIME_IS_MULTIPART(top)) {
        rc = fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "cannot parse the multipart/form-data body");
        goto done;
    }
    int count = g_mime_multipart_get_count(GMIME_MULTIPART(top));
    if (count > MP_MAX_PARTS) {
        rc = fail_msg(ASR_E_BAD_REQUEST, errbuf, errlen, "multipart body has %d parts, more than %d", count,
                      MP_MAX_PARTS);
        goto done;
    }
    for (int i = 0; i < count; i++) {
        rc = take_part(form, g_mime_multipart_get_part(GMIME_MULTIPART(top), i), arr, file_field, max_field_bytes,
                       &offs[i], errbuf, errlen);
        if (rc != 0) goto done;
    }
    for (size_t i = 0; i < form->n; i++) {
        struct mp_part *p = &form->parts[i];
        p->name = form->strings_.data + offs[i].name;
        p->filename = offs[i].filename == SIZE_MAX ? NULL : form->strings_.data + offs[i].filename;
        p->content_type = offs[i].ctype == SIZE_MAX ? NULL : form->strings_.data + offs[i].ctype;
    }
    rc = 0;

done:
    if (top) g_object_unref(top);
    if (parser) g_object_unref(parser);
    if (stream) g_object_unref(stream);
    if (arr) g_byte_array_free(arr, FALSE); /* the bytes stay: form->bytes_ */
    if (ct) g_object_unref(ct);
    if (rc != 0) {
        memset(form->parts, 0, sizeof form->parts);
        form->n = 0;
    }
    return rc;
}
