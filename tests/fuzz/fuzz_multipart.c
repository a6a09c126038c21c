/* fuzz_multipart: mp_parse() (src/api/multipart.c, GMime 3 underneath):
 * multipart/form-data bodies of POST /v1/audio/transcriptions.
 *
 * Input: byte 0 chooses the mode (bit 0) and the boundary (bits 1-3, an
 * index into BOUNDARIES).
 * - raw mode (bit 0 clear): the rest is the body, with the chosen boundary
 *   in the Content-Type (bit 4: the Content-Type is the body's first line
 *   instead, up to '\n', at most 200 bytes).
 * - form mode (bit 0 set): the rest is a list of part records the harness
 *   encodes as a client would: flags (bit 0 a filename, bit 1 a
 *   Content-Type, bit 2 the name "file"), a name length byte and the name
 *   (its bytes mapped into [a-z0-9_[]]), a 16-bit little-endian data length
 *   and the data.
 *
 * Checks beyond the sanitizers. Always: the return code is one mp_parse()
 * documents, the body was adopted, every part lies inside the form's bytes
 * with a NUL-terminated name, at most MP_MAX_PARTS parts, fields within the
 * bound; on an error no part is left. Form mode adds an exact oracle, an
 * encoder written here independently of GMime: when no part's data holds
 * "--<boundary>" (where the delimiter's meaning is GMime's business), the
 * parse succeeds with exactly the parts encoded (names, filenames,
 * Content-Types, bytes), or fails with ASR_E_TOO_LARGE exactly when a field
 * passes the bound, or ASR_E_BAD_REQUEST exactly when there are too many
 * parts or too many lines starting with "--". */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/multipart.h"
#include "base/err.h"
#include "common.h"

#define MAX_FIELD 512

static const char *const BOUNDARIES[] = {
    "----formdata-undici-0123456789", "X-curl", "b", "----WebKitFormBoundary7MA4YWxkTrZu0gW",
    "a'()+_,-./:=?z", "with space", "0", "--",
};

static void fail(const char *what, int rc) { fuzz_fail("fuzz_multipart: %s (rc %d)", what, rc); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_common_init();
    return 0;
}

/* The invariants every answer keeps. */
static void check_form(const struct mp_form *f, int rc) {
    if (rc != 0 && rc != ASR_E_BAD_REQUEST && rc != ASR_E_TOO_LARGE && rc != ASR_ENOMEM)
        fail("undocumented return code", rc);
    if (rc != 0 && f->n) fail("parts left after an error", rc);
    if (f->n > MP_MAX_PARTS) fail("more than MP_MAX_PARTS", rc);
    if (f->n && !f->bytes_.data) fail("parts without bytes", rc);
    const uint8_t *lo = (const uint8_t *)f->bytes_.data, *hi = lo ? lo + f->bytes_.len : lo;
    for (size_t i = 0; i < f->n; i++) {
        const struct mp_part *p = &f->parts[i];
        if (!p->name || !p->data) fail("part without name or data", rc);
        if (p->data < lo || p->data > hi || p->len > (size_t)(hi - p->data)) fail("part outside the body", rc);
        if (strcmp(p->name, "file") != 0 && p->len > MAX_FIELD) fail("field past the bound", rc);
        volatile size_t n = strlen(p->name) + (p->filename ? strlen(p->filename) : 0) +
                            (p->content_type ? strlen(p->content_type) : 0);
        (void)n;
    }
}

static int run(const uint8_t *body, size_t n, const char *ct, struct mp_form *f) {
    struct buf b;
    buf_init(&b, 0);
    if (n && buf_append(&b, body, n) != 0) return ASR_ENOMEM;
    char err[160];
    memset(err, 'x', sizeof err);
    int rc = mp_parse(f, &b, ct, "file", MAX_FIELD, err, sizeof err);
    if (b.data || b.len) fail("body not adopted", rc);
    if (!memchr(err, '\0', sizeof err)) fail("errbuf not terminated", rc);
    if (rc != 0 && !err[0]) fail("no error message", rc);
    check_form(f, rc);
    return rc;
}

struct want {
    char name[64];
    int has_filename, has_type;
    const uint8_t *data;
    size_t len;
};

static size_t dash_lines(const uint8_t *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if ((i == 0 || p[i - 1] == '\n') && p[i] == '-' && p[i + 1] == '-') c++;
    return c;
}

static void form_mode(const uint8_t *d, size_t n, const char *boundary) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_[]";
    struct want w[MP_MAX_PARTS + 2];
    size_t nw = 0;
    while (n >= 4 && nw < MP_MAX_PARTS + 2) {
        uint8_t fl = d[0], nl = d[1] % 40;
        d += 2, n -= 2;
        if (nl > n) nl = (uint8_t)n;
        struct want *x = &w[nw];
        if (fl & 4) {
            memcpy(x->name, "file", 5);
        } else {
            for (size_t i = 0; i < nl; i++) x->name[i] = alphabet[d[i] % (sizeof alphabet - 1)];
            x->name[nl] = '\0';
            if (!nl) memcpy(x->name, "f", 2);
        }
        d += nl, n -= nl;
        if (n < 2) break;
        size_t dl = (size_t)(d[0] | d[1] << 8);
        d += 2, n -= 2;
        if (dl > n) dl = n;
        x->has_filename = fl & 1;
        x->has_type = (fl & 2) != 0;
        x->data = d;
        x->len = dl;
        d += dl, n -= dl;
        nw++;
    }
    if (!nw) return;
    struct buf body;
    buf_init(&body, 0);
    int ambiguous = 0;
    size_t blen = strlen(boundary);
    for (size_t i = 0; i < nw; i++) {
        buf_printf(&body, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary, w[i].name);
        if (w[i].has_filename) buf_printf(&body, "; filename=\"part%zu.bin\"", i);
        buf_puts(&body, "\r\n");
        if (w[i].has_type) buf_puts(&body, "Content-Type: audio/wav\r\n");
        buf_puts(&body, "\r\n");
        buf_append(&body, w[i].data, w[i].len);
        buf_puts(&body, "\r\n");
        /* the delimiter inside data, or a data that could merge with ours */
        for (size_t k = 0; k + 2 + blen <= w[i].len && !ambiguous; k++)
            if (w[i].data[k] == '-' && w[i].data[k + 1] == '-' && memcmp(w[i].data + k + 2, boundary, blen) == 0)
                ambiguous = 1;
    }
    buf_printf(&body, "--%s--\r\n", boundary);
    char ct[128];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%s\"", boundary);
    size_t dashes = dash_lines((const uint8_t *)body.data, body.len);
    struct mp_form f;
    int rc = run((const uint8_t *)body.data, body.len, ct, &f);
    if (!ambiguous && rc != ASR_ENOMEM) {
        int too_large = 0;
        for (size_t i = 0; i < nw; i++) too_large |= strcmp(w[i].name, "file") != 0 && w[i].len > MAX_FIELD;
        int want_rc = dashes > MP_MAX_DASH_LINES ? ASR_E_BAD_REQUEST
                      : nw > MP_MAX_PARTS        ? ASR_E_BAD_REQUEST
                      : too_large                ? ASR_E_TOO_LARGE
                                                 : 0;
        if (rc != want_rc) fuzz_fail("fuzz_multipart: want rc %d, got %d (%zu parts, %zu dash lines)", want_rc, rc, nw, dashes);
        if (rc == 0) {
            if (f.n != nw) fail("part count differs", rc);
            for (size_t i = 0; i < nw; i++) {
                const struct mp_part *p = &f.parts[i];
                char fname[32];
                snprintf(fname, sizeof fname, "part%zu.bin", i);
                if (strcmp(p->name, w[i].name) != 0) fail("name differs", rc);
                if (w[i].has_filename != (p->filename != NULL) || (p->filename && strcmp(p->filename, fname) != 0))
                    fail("filename differs", rc);
                if (w[i].has_type != (p->content_type != NULL) ||
                    (p->content_type && strcmp(p->content_type, "audio/wav") != 0))
                    fail("content type differs", rc);
                if (p->len != w[i].len || (p->len && memcmp(p->data, w[i].data, p->len) != 0)) fail("data differs", rc);
            }
        }
    }
    mp_form_cleanup(&f);
    buf_cleanup(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t m = data[0];
    data++, size--;
    const char *boundary = BOUNDARIES[(m >> 1) & 7];
    if (m & 1) {
        form_mode(data, size, boundary);
        return 0;
    }
    char ct[256];
    if (m & 16) {
        const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
        size_t l = nl ? (size_t)(nl - data) : (size < 200 ? size : 200);
        memcpy(ct, data, l);
        ct[l] = '\0';
        data += nl ? l + 1 : l;
        size -= nl ? l + 1 : l;
    } else {
        snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%s\"", boundary);
    }
    struct mp_form f;
    run(data, size, ct, &f);
    mp_form_cleanup(&f);
    return 0;
}
