/* fuzz_feedback: reading feedback's text handling and alignment
 * (src/core/feedback.h) on arbitrary bytes: the expected text's parser
 * (what a config message, an expected_text query parameter or a reference
 * file brings), normalisation, the alignment of a hypothesis split into
 * utterances, smoothing and the score.
 *
 * Input: byte 0 flags (bit 0: evaluate at the end of the reading; bit 1:
 * settled smoothing), then the expected text, a 0xFF byte (never in UTF-8),
 * then the hypothesis: utterances separated by '\n' (each but the last
 * committed as a finished utterance), words by spaces.
 *
 * Oracle beyond the sanitizers: the parser answers 0 or BAD_REQUEST with a
 * reason; its words are non-empty pieces of the input; normalisation is
 * idempotent; every entry has a valid status, heard words exactly for
 * correct/minor/wrong and each one a word of the hypothesis; pending words
 * only after the last reached one (none at the end of a reading); the
 * alignment is the same whether the hypothesis came as finished utterances
 * and a tail or as one tail; the score is the share of correct entries;
 * smoothing shows no mistake the raw statuses did not make. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "base/err.h"
#include "base/util.h"
#include "core/feedback.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_common_init();
    return 0;
}

static void check_idempotent(const char *w, size_t n) {
    for (int strip = 0; strip < 2; strip++) {
        struct buf a, b;
        buf_init(&a, 0);
        buf_init(&b, 0);
        if (fb_normalize(w, n, strip, &a) != 0 || fb_normalize(a.data ? a.data : "", a.len, strip, &b) != 0)
            fuzz_fail("fuzz_feedback: fb_normalize failed");
        if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
            fuzz_fail("fuzz_feedback: fb_normalize(strip %d) is not idempotent on %zu bytes", strip, n);
        buf_cleanup(&a);
        buf_cleanup(&b);
    }
}

/* 1 when heard[0..hl) is a space-free piece of hyp. */
static int in_hyp(const char *hyp, size_t n, const char *heard, size_t hl) {
    if (!hl || memchr(heard, ' ', hl) || memchr(heard, '\n', hl)) return 0;
    for (size_t i = 0; i + hl <= n; i++)
        if (memcmp(hyp + i, heard, hl) == 0) return 1;
    return 0;
}

static void check_entries(const struct fb_entry *e, size_t m, int at_end, const char *hyp, size_t hn) {
    int seen_pending = 0;
    for (size_t i = 0; i < m; i++) {
        int st = e[i].status;
        if (st < 0 || st >= FB__N) fuzz_fail("fuzz_feedback: entry %zu has status %d", i, st);
        int has = st == FB_CORRECT || st == FB_MINOR || st == FB_WRONG;
        if (has != (e[i].heard != NULL)) fuzz_fail("fuzz_feedback: entry %zu (%s) heard %p", i, fb_status_name(st), (void *)e[i].heard);
        if (has && !in_hyp(hyp, hn, e[i].heard, e[i].heard_len))
            fuzz_fail("fuzz_feedback: entry %zu heard a word that is not in the hypothesis", i);
        if (st == FB_PENDING) {
            if (at_end) fuzz_fail("fuzz_feedback: pending at the end of a reading");
            seen_pending = 1;
        } else if (seen_pending) {
            fuzz_fail("fuzz_feedback: entry %zu is %s after a pending one", i, fb_status_name(st));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int at_end = data[0] & 1, settled = (data[0] >> 1) & 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    const char *sep = memchr(p, 0xff, n);
    size_t tn = sep ? (size_t)(sep - p) : n;
    const char *hyp = sep ? sep + 1 : "";
    size_t hn = sep ? n - tn - 1 : 0;

    struct fb_text *t = NULL;
    const char *why = NULL;
    int rc = fb_text_parse(p, tn, 200, &t, &why);
    if (rc != 0) {
        if (rc != ASR_E_BAD_REQUEST || !why || t) fuzz_fail("fuzz_feedback: fb_text_parse returned %d", rc);
        return 0;
    }
    size_t m = fb_text_count(t);
    if (m == 0 || m > 200) fuzz_fail("fuzz_feedback: %zu words", m);
    for (size_t i = 0; i < m; i++) {
        size_t wl;
        const char *w = fb_text_word(t, i, &wl);
        if (!wl || w < p || w + wl > p + tn) {
            /* words are copies: find them in the input */
            int found = 0;
            for (size_t k = 0; wl && k + wl <= tn && !found; k++) found = memcmp(p + k, w, wl) == 0;
            if (!found) fuzz_fail("fuzz_feedback: word %zu is not a piece of the text", i);
        }
        check_idempotent(w, wl);
    }

    /* the hypothesis as finished utterances and a tail, and as one tail */
    struct fb_session *split = fb_create(t, 0), *whole = fb_create(t, 0);
    struct fb_entry *a = calloc(m, sizeof *a), *b = calloc(m, sizeof *b);
    char *flat = malloc(hn + 1);
    if (!split || !whole || !a || !b || !flat) fuzz_fail("fuzz_feedback: out of memory");
    size_t start = 0;
    for (size_t i = 0; i <= hn; i++) {
        if (i < hn && hyp[i] != '\n') continue;
        if (i == hn) break;
        if (fb_commit_text(split, hyp + start, i - start) != 0) fuzz_fail("fuzz_feedback: fb_commit_text failed");
        start = i + 1;
    }
    if (fb_evaluate_text(split, hyp + start, hn - start, at_end, a) != 0) fuzz_fail("fuzz_feedback: evaluate failed");
    for (size_t i = 0; i < hn; i++) flat[i] = hyp[i] == '\n' ? ' ' : hyp[i];
    if (fb_evaluate_text(whole, flat, hn, at_end, b) != 0) fuzz_fail("fuzz_feedback: evaluate failed");
    check_entries(a, m, at_end, hyp, hn);
    for (size_t i = 0; i < m; i++)
        if (a[i].status != b[i].status || a[i].heard_len != b[i].heard_len ||
            (a[i].heard_len && memcmp(a[i].heard, b[i].heard, a[i].heard_len) != 0))
            fuzz_fail("fuzz_feedback: word %zu: %s as utterances, %s as one tail", i, fb_status_name(a[i].status),
                      fb_status_name(b[i].status));

    struct fb_view v = {.text = t, .e = a, .n = m};
    size_t counts[FB__N];
    double score = fb_score(&v, counts);
    if (score != (double)counts[FB_CORRECT] / (double)m) fuzz_fail("fuzz_feedback: score %g", score);

    /* smoothing: once, then again with the same statuses */
    for (int round = 0; round < 2; round++) {
        if (fb_smooth(split, a, settled) != 0) fuzz_fail("fuzz_feedback: fb_smooth failed");
        struct fb_view s = fb_shown(split);
        for (size_t i = 0; i < m; i++) {
            int st = s.e[i].status, raw = a[i].status;
            int mistake = st == FB_MINOR || st == FB_WRONG || st == FB_MISSING;
            if (mistake && st != raw) fuzz_fail("fuzz_feedback: shown %s, raw %s", fb_status_name(st), fb_status_name(raw));
            if (mistake && !settled && round == 0) fuzz_fail("fuzz_feedback: a mistake shown after one evaluation");
            if (round == 1 && st != raw && raw != FB_PENDING)
                fuzz_fail("fuzz_feedback: word %zu shows %s after two evaluations of %s", i, fb_status_name(st),
                          fb_status_name(raw));
            if ((s.e[i].heard != NULL) != (st == FB_CORRECT || st == FB_MINOR || st == FB_WRONG))
                fuzz_fail("fuzz_feedback: shown %s with heard %p", fb_status_name(st), (void *)s.e[i].heard);
        }
    }
    free(flat);
    free(a);
    free(b);
    fb_destroy(split);
    fb_destroy(whole);
    fb_text_destroy(t);
    return 0;
}
