/* fuzz_jobreq: the job request parsers of src/api/jobreq.c: JSON job
 * requests (jobreq_parse_json), multipart/form-data bodies
 * (jobreq_multipart) and single options (jobreq_set).
 *
 * Input: byte 0 chooses the parser (bits 0-1: 0 JSON, 1 multipart, 2 an
 * option; bits 2-4: the option's name, or the parts' bound for multipart);
 * multipart then takes the Content-Type up to the first '\n' and the body
 * after it; the others take the rest as the text.
 *
 * Oracles: a JSON request that parses has an http(s) URL (jobreq_url_ok)
 * and options within their ranges; its options, written back as JSON
 * (jobreq_opts_json), are JSON that jansson reads, and the run options
 * (jobreq_run_json) read back (jobreq_parse_run_json) to the same values.
 * Multipart: at most the bound of parts, each part's name, filename, type
 * and data inside the body, in order, not overlapping, each with a
 * non-empty name. An option accepted keeps its documented range. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobreq.h"
#include "base/err.h"
#include "common.h"

static void check_opts(const struct jobreq_opts *o) {
    if (o->callback[0] && !jobreq_url_ok(o->callback, strlen(o->callback)))
        fuzz_fail("fuzz_jobreq: a callback that is not an http(s) URL was accepted");
    if (o->endpointing_ms && (o->endpointing_ms < 30 || o->endpointing_ms > 10000))
        fuzz_fail("fuzz_jobreq: endpointing_ms %u accepted", o->endpointing_ms);
    if (o->granularity != JOBREQ_WORD && o->granularity != JOBREQ_SEGMENT) fuzz_fail("fuzz_jobreq: granularity");
    if (!util_utf8_valid(o->hint, strlen(o->hint)) || !util_utf8_valid(o->metadata, strlen(o->metadata)))
        fuzz_fail("fuzz_jobreq: text that is not UTF-8 was accepted");
    struct buf b;
    buf_init(&b, 0);
    if (jobreq_opts_json(o, &b) != 0) fuzz_fail("fuzz_jobreq: opts_json failed");
    json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    if (!j) fuzz_fail("fuzz_jobreq: opts_json wrote invalid JSON: %s", b.data);
    json_decref(j);
    buf_reset(&b);
    if (jobreq_run_json(o, &b) != 0) fuzz_fail("fuzz_jobreq: run_json failed");
    struct jobreq_opts back;
    if (jobreq_parse_run_json(b.data, b.len, &back) != 0) fuzz_fail("fuzz_jobreq: run_json does not read back");
    if (back.granularity != o->granularity || back.endpointing_ms != o->endpointing_ms ||
        strcmp(back.hint, o->hint) != 0)
        fuzz_fail("fuzz_jobreq: run options changed on the way back");
    buf_cleanup(&b);
}

static int inside(const void *p, size_t n, const uint8_t *b, size_t len) {
    const uint8_t *q = p;
    return q >= b && n <= len && q - b <= (ptrdiff_t)(len - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        fuzz_common_init();
        init = 1;
    }
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++;
    size--;
    char err[256];
    switch (sel & 3) {
    case 0: {
        struct jobreq r;
        int rc = jobreq_parse_json((const char *)data, size, &r, err, sizeof err);
        if (rc != 0 && rc != ASR_E_BAD_REQUEST) fuzz_fail("fuzz_jobreq: parse_json returned %d", rc);
        if (rc == 0) {
            if (!jobreq_url_ok(r.url, strlen(r.url))) fuzz_fail("fuzz_jobreq: url not http(s): %s", r.url);
            check_opts(&r.opts);
        }
        break;
    }
    case 1: {
        const uint8_t *nl = memchr(data, '\n', size);
        if (!nl) return 0;
        size_t cl = (size_t)(nl - data);
        char *ct = malloc(cl + 1);
        memcpy(ct, data, cl);
        ct[cl] = 0;
        size_t blen = size - cl - 1;
        uint8_t *body = malloc(blen ? blen : 1);  /* exact size: ASan sees a read past it */
        memcpy(body, nl + 1, blen);
        size_t max = 1 + ((sel >> 2) & 7);
        struct jobreq_part parts[8];
        size_t n = 99;
        int rc = jobreq_multipart(ct, body, blen, parts, max, &n, err, sizeof err);
        if (rc != 0 && rc != ASR_E_BAD_REQUEST) fuzz_fail("fuzz_jobreq: multipart returned %d", rc);
        if (rc == 0) {
            if (n > max) fuzz_fail("fuzz_jobreq: %zu parts, bound %zu", n, max);
            const uint8_t *prev_end = body;
            for (size_t i = 0; i < n; i++) {
                const struct jobreq_part *p = &parts[i];
                if (!p->name || !p->name_len || !inside(p->name, p->name_len, body, blen))
                    fuzz_fail("fuzz_jobreq: part %zu name outside the body", i);
                if (p->filename && !inside(p->filename, p->filename_len, body, blen))
                    fuzz_fail("fuzz_jobreq: part %zu filename outside the body", i);
                if (p->ctype && !inside(p->ctype, p->ctype_len, body, blen))
                    fuzz_fail("fuzz_jobreq: part %zu type outside the body", i);
                if (!inside(p->data, p->len, body, blen)) fuzz_fail("fuzz_jobreq: part %zu data outside", i);
                if (p->data < prev_end) fuzz_fail("fuzz_jobreq: part %zu overlaps the one before", i);
                prev_end = p->data + p->len;
            }
        }
        free(body);
        free(ct);
        break;
    }
    default: {
        static const char *const names[] = {"callback", "granularity", "hint", "endpointing_ms", "metadata",
                                            "url", "", "callbackx"};
        struct jobreq_opts o;
        jobreq_opts_init(&o);
        char *v = malloc(size ? size : 1);
        memcpy(v, data, size);
        int rc = jobreq_set(&o, names[(sel >> 2) & 7], v, size, err, sizeof err);
        if (rc != 0 && rc != ASR_E_BAD_REQUEST && rc != ASR_E_NOT_FOUND) fuzz_fail("fuzz_jobreq: set returned %d", rc);
        if (rc == 0) check_opts(&o);
        free(v);
        break;
    }
    }
    return 0;
}
