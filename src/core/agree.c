/* LocalAgreement-2 (agree.h). */
#include "core/agree.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* A word's comparable bytes: ASCII letters folded to lower case, digits and
 * bytes >= 0x80 (UTF-8 of other scripts) kept, ASCII punctuation dropped,
 * and a trailing "(N)" (pocketsphinx's pronunciation variants) cut. */
static size_t norm(const char *s, size_t n, char *out, size_t cap) {
    if (n >= 3 && s[n - 1] == ')') {
        size_t k = n - 2;
        while (k > 0 && s[k] >= '0' && s[k] <= '9') k--;
        if (s[k] == '(' && k < n - 2) n = k;
    }
    size_t o = 0;
    for (size_t i = 0; i < n && o < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') out[o++] = (char)(c + 32);
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80) out[o++] = (char)c;
        /* else: punctuation, apostrophes, hyphens: dropped */
    }
    return o;
}

int agree_same_word(const char *a, size_t al, const char *b, size_t bl) {
    char x[128], y[128];
    size_t xl = norm(a, al, x, sizeof x), yl = norm(b, bl, y, sizeof y);
    return xl == yl && memcmp(x, y, xl) == 0;
}

void agree_init(struct agree *a) { memset(a, 0, sizeof *a); }

static void words_free(struct agree_word *w, size_t n) {
    for (size_t i = 0; i < n; i++) free(w[i].text);
}

void agree_reset(struct agree *a) {
    words_free(a->committed, a->n_committed);
    words_free(a->prev, a->n_prev);
    a->n_committed = a->n_prev = 0;
    a->commit_end_ms = 0;
}

void agree_cleanup(struct agree *a) {
    agree_reset(a);
    free(a->committed);
    free(a->prev);
    memset(a, 0, sizeof *a);
}

static int reserve(struct agree_word **arr, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    struct agree_word *n = realloc(*arr, c * sizeof *n);
    if (!n) return ASR_ENOMEM;
    *arr = n;
    *cap = c;
    return 0;
}

static int copy_word(struct agree_word *dst, const struct engine_word *w) {
    char *t = malloc(w->len + 1);
    if (!t) return ASR_ENOMEM;
    memcpy(t, w->text, w->len);
    t[w->len] = '\0';
    *dst = (struct agree_word){t, w->len, w->start_ms, w->end_ms, w->confidence};
    return 0;
}

/* Start tolerance: a word that starts this much before the commit point
 * still counts as new (engines place boundaries a frame or two apart). */
#define AGREE_TOLERANCE_MS 100
/* A repeated n-gram at the join is looked for up to this long. */
#define AGREE_NGRAM_MAX 5

int agree_feed(struct agree *a, const struct engine_word *w, size_t n, size_t *first_new) {
    *first_new = a->n_committed;
    /* 1. the part of the hypothesis after the committed audio */
    size_t from = 0;
    if (a->n_committed)
        while (from < n && w[from].start_ms + AGREE_TOLERANCE_MS < a->commit_end_ms) from++;
    /* 2. a window that restarts earlier may repeat the last committed words */
    if (a->n_committed && from < n && w[from].start_ms < a->commit_end_ms + 1000) {
        size_t max = AGREE_NGRAM_MAX;
        if (max > a->n_committed) max = a->n_committed;
        if (max > n - from) max = n - from;
        for (size_t k = 1; k <= max; k++) {
            int same = 1;
            for (size_t i = 0; i < k && same; i++) {
                const struct agree_word *c = &a->committed[a->n_committed - k + i];
                same = agree_same_word(c->text, c->len, w[from + i].text, w[from + i].len);
            }
            if (same) {
                from += k;
                break;
            }
        }
    }
    /* 3. commit the longest common prefix with the previous hypothesis */
    size_t agree_n = 0;
    while (agree_n < a->n_prev && from + agree_n < n &&
           agree_same_word(a->prev[agree_n].text, a->prev[agree_n].len, w[from + agree_n].text,
                           w[from + agree_n].len))
        agree_n++;
    size_t tail = n - from - agree_n;
    if (reserve(&a->committed, &a->cap_committed, a->n_committed + agree_n) != 0 ||
        reserve(&a->prev, &a->cap_prev, tail) != 0)
        return ASR_ENOMEM;
    /* copy first, so a failure leaves the state untouched */
    struct agree_word *newc = agree_n ? calloc(agree_n, sizeof *newc) : NULL;
    struct agree_word *newt = tail ? calloc(tail, sizeof *newt) : NULL;
    int rc = (agree_n && !newc) || (tail && !newt) ? ASR_ENOMEM : 0;
    size_t made_c = 0, made_t = 0;
    for (; rc == 0 && made_c < agree_n; made_c++) rc = copy_word(&newc[made_c], &w[from + made_c]);
    for (; rc == 0 && made_t < tail; made_t++) rc = copy_word(&newt[made_t], &w[from + agree_n + made_t]);
    if (rc != 0) {
        words_free(newc, made_c);
        words_free(newt, made_t);
        free(newc);
        free(newt);
        return rc;
    }
    if (agree_n) memcpy(a->committed + a->n_committed, newc, agree_n * sizeof *newc);
    a->n_committed += agree_n;
    if (agree_n) a->commit_end_ms = a->committed[a->n_committed - 1].end_ms;
    words_free(a->prev, a->n_prev);
    if (tail) memcpy(a->prev, newt, tail * sizeof *newt);
    a->n_prev = tail;
    free(newc);
    free(newt);
    return 0;
}
