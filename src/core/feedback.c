/* Reading feedback (feedback.h, docs/internals/reading-feedback.md).
 *
 * Normalisation is libunistring's: u8_casefold (with NFKC), u8_normalize
 * (NFKD and NFKC for the diacritics-insensitive form) and its general
 * categories. Every word, expected or heard, is normalised once into a
 * struct fb_word: its two forms with their hashes (a comparison is a hash
 * compare first) and the code points of the looser form (for the edit
 * distance of a minor mistake).
 *
 * The alignment is the classic dynamic programme over expected words i
 * (rows) and hypothesis words j (columns), D[i][j] the cheapest way to
 * explain the first j heard words by the first i expected ones. Column j
 * depends only on column j - 1 and heard word j, so the columns of the
 * session's finished utterances are computed once (fb_commit) and kept
 * with their back pointers; an evaluation computes only the open
 * utterance's columns, picks the cheapest row of the last column (the
 * speaker is somewhere in the text) and walks the back pointers home. */
#include "core/feedback.h"

#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "base/err.h"
#include "base/util.h"

/* Alignment costs (feedback.h says what they mean). A wrong word (4) is
 * cheaper than a skipped word plus an extra one (6): a misread word is a
 * substitution, not a deletion and an insertion. */
#define COST_MINOR 1u
#define COST_WRONG 4u
#define COST_INS   3u
#define COST_DEL   3u
/* At the end of a reading, each expected word after the last one aligned
 * (never reached) costs this: less than a word skipped in the middle, so
 * heard words are not stretched over the rest of the text to reach it
 * (2 x COST_END < COST_WRONG + COST_INS), more than nothing, so a last
 * misread word is a wrong word, not an extra one (COST_WRONG < COST_INS +
 * COST_END). */
#define COST_END   2u

/* The longest word (code points) the edit distance looks at; longer ones
 * are minor mistakes only when equal without diacritics. */
#define LEV_MAX 128

enum { OP_DIAG = 1, OP_UP = 2, OP_LEFT = 3 };  /* low 2 bits of a back pointer; DIAG's class above */

const char *fb_status_name(enum fb_status st) {
    static const char *const names[FB__N] = {"pending", "correct", "minor_mistake", "wrong", "missing"};
    return (unsigned)st < FB__N ? names[st] : "pending";
}

/* ---- normalisation ---------------------------------------------------------- */

/* Appends the code points of s[0..n) that keep passes, as UTF-8. */
static int filter_cps(const uint8_t *s, size_t n, int (*keep)(ucs4_t), struct buf *out) {
    for (size_t i = 0; i < n;) {
        ucs4_t c;
        int k = u8_mbtouc(&c, s + i, n - i);
        if (k <= 0) break;
        if (keep(c)) {
            uint8_t enc[6];
            int el = u8_uctomb(enc, c, sizeof enc);
            if (el > 0 && buf_append(out, enc, (size_t)el) != 0) return ASR_ENOMEM;
        }
        i += (size_t)k;
    }
    return 0;
}

static int keep_not_punct(ucs4_t c) {
    return !uc_is_general_category(c, UC_CATEGORY_P) && !uc_is_general_category(c, UC_CATEGORY_Cf);
}
static int keep_not_mark(ucs4_t c) { return !uc_is_general_category(c, UC_CATEGORY_Mn); }
static int keep_valid(ucs4_t c) { return c != 0xfffd; }

/* The NFC/NFKC/NFKD form nf of s[0..n) in a fresh malloc'd block, or NULL. */
static uint8_t *normalized(uninorm_t nf, const uint8_t *s, size_t n, size_t *len) {
    *len = 0;
    return u8_normalize(nf, s, n, NULL, len);
}

int fb_normalize(const char *s, size_t n, int strip_marks, struct buf *out) {
    size_t mark = out->len;
    struct buf clean, t;
    buf_init(&clean, 0);
    buf_init(&t, 0);
    uint8_t stack[256], *cf = NULL, *d = NULL, *c = NULL;
    const uint8_t *in = (const uint8_t *)s;
    /* Invalid sequences dropped first: libunistring refuses them. (A
     * literal U+FFFD goes too, which no word needs.) */
    if (u8_check(in, n)) {
        if (filter_cps(in, n, keep_valid, &clean) != 0) goto fail;
        in = (const uint8_t *)clean.data;
        n = clean.len;
    }
    if (!n) goto done;
    size_t len = sizeof stack;
    if (!(cf = u8_casefold(in, n, NULL, UNINORM_NFKC, stack, &len))) goto fail;
    if (filter_cps(cf, len, keep_not_punct, &t) != 0) goto fail;
    if (strip_marks && t.len) {
        size_t dl;
        if (!(d = normalized(UNINORM_NFKD, (const uint8_t *)t.data, t.len, &dl))) goto fail;
        buf_reset(&t);
        if (filter_cps(d, dl, keep_not_mark, &t) != 0) goto fail;
    }
    /* composed again: what was dropped may have stood between a letter
     * and its mark */
    if (t.len) {
        size_t cl;
        if (!(c = normalized(UNINORM_NFKC, (const uint8_t *)t.data, t.len, &cl)) || buf_append(out, c, cl) != 0)
            goto fail;
    }
done:
    if (cf != stack) free(cf);
    free(d);
    free(c);
    buf_cleanup(&clean);
    buf_cleanup(&t);
    return 0;
fail:
    out->len = mark;
    if (out->data && out->len < out->cap) out->data[out->len] = '\0';
    if (cf != stack) free(cf);
    free(d);
    free(c);
    buf_cleanup(&clean);
    buf_cleanup(&t);
    return ASR_ENOMEM;
}

/* ---- words -------------------------------------------------------------------- */

/* A word with its normalised forms, all in one owned block (mem). */
struct fb_word {
    void       *mem;           /* owned: the block every pointer below points into */
    const char *orig;          /* as written or heard */
    uint32_t    orig_len;
    const char *n1;            /* fb_normalize(strip_marks 0) */
    uint32_t    n1_len;
    const char *n2;            /* fb_normalize(strip_marks 1) */
    uint32_t    n2_len;
    uint64_t    h1, h2;        /* FNV-1a of n1, n2 */
    const uint32_t *cp;        /* code points of n2 */
    uint32_t    ncp;
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* Fills w from s[0..n). 0 (w->n1_len 0: the word normalises to nothing) or
 * ASR_ENOMEM. */
static int word_make(const char *s, size_t n, struct fb_word *w) {
    memset(w, 0, sizeof *w);
    if (n > UINT32_MAX / 8) return ASR_ENOMEM;
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    int rc = fb_normalize(s, n, 0, &a);
    if (rc == 0) rc = fb_normalize(a.data ? a.data : "", a.len, 1, &b);
    size_t ncp = b.len ? u8_mbsnlen((const uint8_t *)b.data, b.len) : 0;
    size_t bytes = ncp * sizeof(uint32_t) + n + 1 + a.len + 1 + b.len + 1;
    char *mem = rc == 0 ? malloc(bytes) : NULL;
    if (!mem) {
        buf_cleanup(&a);
        buf_cleanup(&b);
        return ASR_ENOMEM;
    }
    uint32_t *cp = (uint32_t *)(void *)mem;
    for (size_t i = 0, k = 0; i < b.len && k < ncp; k++) {
        ucs4_t c;
        int l = u8_mbtouc(&c, (const uint8_t *)b.data + i, b.len - i);
        cp[k] = c;
        i += (size_t)(l > 0 ? l : 1);
    }
    char *p = mem + ncp * sizeof(uint32_t);
    memcpy(p, s, n);
    p[n] = '\0';
    w->orig = p;
    w->orig_len = (uint32_t)n;
    p += n + 1;
    if (a.len) memcpy(p, a.data, a.len);
    p[a.len] = '\0';
    w->n1 = p;
    w->n1_len = (uint32_t)a.len;
    p += a.len + 1;
    if (b.len) memcpy(p, b.data, b.len);
    p[b.len] = '\0';
    w->n2 = p;
    w->n2_len = (uint32_t)b.len;
    w->h1 = fnv1a(w->n1, w->n1_len);
    w->h2 = fnv1a(w->n2, w->n2_len);
    w->cp = cp;
    w->ncp = (uint32_t)ncp;
    w->mem = mem;
    buf_cleanup(&a);
    buf_cleanup(&b);
    return 0;
}

static void word_free(struct fb_word *w) {
    free(w->mem);
    w->mem = NULL;
}

/* Levenshtein distance of a and b, or limit + 1 when it is above limit. */
static unsigned lev_bounded(const uint32_t *a, unsigned la, const uint32_t *b, unsigned lb, unsigned limit) {
    if (la > LEV_MAX || lb > LEV_MAX) return limit + 1;
    if ((la > lb ? la - lb : lb - la) > limit) return limit + 1;
    unsigned row[LEV_MAX + 1], prev[LEV_MAX + 1];
    for (unsigned j = 0; j <= lb; j++) prev[j] = j;
    for (unsigned i = 1; i <= la; i++) {
        row[0] = i;
        unsigned best = row[0];
        for (unsigned j = 1; j <= lb; j++) {
            unsigned v = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < v) v = prev[j] + 1;
            if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
            row[j] = v;
            if (v < best) best = v;
        }
        if (best > limit) return limit + 1;
        memcpy(prev, row, (lb + 1) * sizeof *row);
    }
    return prev[lb];
}

static int classify_words(const struct fb_word *e, const struct fb_word *h) {
    if (e->h1 == h->h1 && e->n1_len == h->n1_len && memcmp(e->n1, h->n1, e->n1_len) == 0) return FB_CORRECT;
    if (e->h2 == h->h2 && e->n2_len == h->n2_len && memcmp(e->n2, h->n2, e->n2_len) == 0) return FB_MINOR;
    unsigned limit = e->ncp / 4;
    if (limit && lev_bounded(e->cp, e->ncp, h->cp, h->ncp, limit) <= limit) return FB_MINOR;
    return FB_WRONG;
}

int fb_classify(const char *e, size_t el, const char *h, size_t hl) {
    struct fb_word a, b;
    if (word_make(e, el, &a) != 0) return FB_WRONG;
    if (word_make(h, hl, &b) != 0) {
        word_free(&a);
        return FB_WRONG;
    }
    int c = classify_words(&a, &b);
    word_free(&a);
    word_free(&b);
    return c;
}

/* A growable array of words. */
struct wordv {
    struct fb_word *w;         /* owned, each with its block */
    size_t n, cap;
};

static void wordv_clear(struct wordv *v) {
    for (size_t i = 0; i < v->n; i++) word_free(&v->w[i]);
    v->n = 0;
}

static void wordv_cleanup(struct wordv *v) {
    wordv_clear(v);
    free(v->w);
    v->w = NULL;
    v->cap = 0;
}

/* Appends s[0..n) unless it normalises to nothing. 0 or ASR_ENOMEM. */
static int wordv_add(struct wordv *v, const char *s, size_t n) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct fb_word *nw = realloc(v->w, cap * sizeof *nw);
        if (!nw) return ASR_ENOMEM;
        v->w = nw;
        v->cap = cap;
    }
    struct fb_word w;
    if (word_make(s, n, &w) != 0) return ASR_ENOMEM;
    if (!w.n1_len) {
        word_free(&w);
        return 0;
    }
    v->w[v->n++] = w;
    return 0;
}

/* Appends each space-separated word of text to v. */
static int each_text_word(const char *t, size_t n, struct wordv *v) {
    for (size_t i = 0; i < n;) {
        while (i < n && t[i] == ' ') i++;
        size_t s = i;
        while (i < n && t[i] != ' ') i++;
        if (i > s && wordv_add(v, t + s, i - s) != 0) return ASR_ENOMEM;
    }
    return 0;
}

/* ---- the expected text -------------------------------------------------------- */

struct fb_text {
    struct wordv words;
};

static int is_separator(ucs4_t c) {
    return uc_is_property_white_space(c) || uc_is_general_category(c, UC_CATEGORY_Pd) ||
           uc_is_general_category(c, UC_CATEGORY_Cc);
}

int fb_text_parse(const char *s, size_t n, size_t max_words, struct fb_text **out, const char **why) {
    static const char *const reasons[] = {"the expected text is not valid UTF-8", "the expected text has no word",
                                          "the expected text has too many words"};
    *out = NULL;
    if (!util_utf8_valid(s, n)) {
        *why = reasons[0];
        return ASR_E_BAD_REQUEST;
    }
    struct fb_text *t = calloc(1, sizeof *t);
    if (!t) return ASR_ENOMEM;
    const uint8_t *p = (const uint8_t *)s;
    size_t start = 0, i = 0;
    while (i <= n) {
        ucs4_t c = 0;
        int k = 1;
        int sep = 1;
        if (i < n) {
            k = u8_mbtouc(&c, p + i, n - i);
            if (k <= 0) k = 1;
            sep = is_separator(c);
        }
        if (sep) {
            if (i > start) {
                if (wordv_add(&t->words, s + start, i - start) != 0) {
                    fb_text_destroy(t);
                    return ASR_ENOMEM;
                }
                if (max_words && t->words.n > max_words) {
                    fb_text_destroy(t);
                    *why = reasons[2];
                    return ASR_E_BAD_REQUEST;
                }
            }
            start = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (t->words.n == 0) {
        fb_text_destroy(t);
        *why = reasons[1];
        return ASR_E_BAD_REQUEST;
    }
    *out = t;
    return 0;
}

void fb_text_destroy(struct fb_text *t) {
    if (!t) return;
    wordv_cleanup(&t->words);
    free(t);
}

size_t fb_text_count(const struct fb_text *t) { return t->words.n; }

const char *fb_text_word(const struct fb_text *t, size_t i, size_t *len) {
    *len = t->words.w[i].orig_len;
    return t->words.w[i].orig;
}

/* ---- the session's alignment ---------------------------------------------------- */

struct fb_session {
    const struct fb_text *text;    /* borrowed */
    size_t   m;                    /* expected words */
    size_t   max_words;            /* hypothesis bound */
    struct wordv fixed;            /* the finished utterances' words */
    uint32_t *col;                 /* owned: m + 1 costs after the fixed words (and c0, c1) */
    uint8_t  *bp;                  /* owned: back pointers, m + 1 per fixed word (column j at (j-1)*(m+1)) */
    size_t   bp_cols;              /* columns bp has room for */
    /* scratch of an evaluation */
    struct wordv tail;
    uint8_t  *tbp;                 /* owned: back pointers of the tail's columns */
    size_t   tbp_cols;
    uint32_t *c0, *c1;             /* two cost columns, in col's block */
    /* smoothing */
    uint8_t  *prev_raw;            /* owned: m statuses of the last raw evaluation */
    struct fb_entry *shown;        /* owned: m entries; heard points into shown_text */
    struct buf shown_text;         /* the shown entries' heard words */
    struct fb_entry *tmp;          /* owned: m entries, fb_smooth's new state */
};

static size_t max_words_for(size_t m, size_t max_words) { return max_words ? max_words : 4 * m + 64; }

struct fb_session *fb_create(const struct fb_text *t, size_t max_words) {
    struct fb_session *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->text = t;
    f->m = t->words.n;
    f->max_words = max_words_for(f->m, max_words);
    size_t m1 = f->m + 1;
    /* one block for the three cost columns */
    f->col = malloc(3 * m1 * sizeof *f->col);
    if (!f->col) {
        free(f);
        return NULL;
    }
    f->c0 = f->col + m1;
    f->c1 = f->col + 2 * m1;
    f->prev_raw = calloc(f->m, 1);
    f->shown = calloc(f->m, sizeof *f->shown);
    f->tmp = calloc(f->m, sizeof *f->tmp);
    if (!f->prev_raw || !f->shown || !f->tmp) {
        fb_destroy(f);
        return NULL;
    }
    for (size_t i = 0; i < m1; i++) f->col[i] = (uint32_t)i * COST_DEL;
    buf_init(&f->shown_text, 0);
    return f;
}

void fb_destroy(struct fb_session *f) {
    if (!f) return;
    wordv_cleanup(&f->fixed);
    wordv_cleanup(&f->tail);
    free(f->col); /* c0 and c1 with it */
    free(f->bp);
    free(f->tbp);
    free(f->prev_raw);
    free(f->shown);
    free(f->tmp);
    buf_cleanup(&f->shown_text);
    free(f);
}

size_t fb_fixed_count(const struct fb_session *f) { return f->fixed.n; }

/* Column j (heard word h) from column j - 1 (prev) into cur, with its back
 * pointers. */
static void column(const struct fb_session *f, const struct fb_word *h, const uint32_t *prev, uint32_t *cur,
                   uint8_t *bp) {
    const struct fb_word *e = f->text->words.w;
    cur[0] = prev[0] + COST_INS;
    bp[0] = OP_LEFT;
    for (size_t i = 1; i <= f->m; i++) {
        int cls = classify_words(&e[i - 1], h);
        uint32_t sub = cls == FB_CORRECT ? 0 : cls == FB_MINOR ? COST_MINOR : COST_WRONG;
        uint32_t best = cur[i - 1] + COST_DEL;
        uint8_t op = OP_UP;
        if (prev[i - 1] + sub < best) best = prev[i - 1] + sub, op = (uint8_t)(OP_DIAG | cls << 2);
        if (prev[i] + COST_INS < best) best = prev[i] + COST_INS, op = OP_LEFT;
        cur[i] = best;
        bp[i] = op;
    }
}

/* Makes room for cols columns of back pointers in *bp. */
static int bp_room(uint8_t **bp, size_t *have, size_t cols, size_t m1) {
    if (cols <= *have) return 0;
    size_t want = *have ? *have : 16;
    while (want < cols) want *= 2;
    uint8_t *nb = realloc(*bp, want * m1);
    if (!nb) return ASR_ENOMEM;
    *bp = nb;
    *have = want;
    return 0;
}

/* Computes the columns of the fixed words from index from on. */
static int fix_columns(struct fb_session *f, size_t from) {
    size_t m1 = f->m + 1;
    if (bp_room(&f->bp, &f->bp_cols, f->fixed.n, m1) != 0) return ASR_ENOMEM;
    for (size_t j = from; j < f->fixed.n; j++) {
        column(f, &f->fixed.w[j], f->col, f->c0, f->bp + j * m1);
        memcpy(f->col, f->c0, m1 * sizeof *f->col);
    }
    return 0;
}

static int commit_from(struct fb_session *f, size_t before) {
    if (f->fixed.n > f->max_words) {
        for (size_t j = f->max_words; j < f->fixed.n; j++) word_free(&f->fixed.w[j]);
        f->fixed.n = f->max_words;
    }
    if (fix_columns(f, before) != 0) {
        for (size_t j = before; j < f->fixed.n; j++) word_free(&f->fixed.w[j]);
        f->fixed.n = before;
        return ASR_ENOMEM;
    }
    return 0;
}

int fb_commit(struct fb_session *f, const struct engine_word *w, size_t n) {
    size_t before = f->fixed.n;
    for (size_t k = 0; k < n && f->fixed.n < f->max_words; k++)
        if (wordv_add(&f->fixed, w[k].text, w[k].len) != 0) {
            for (size_t j = before; j < f->fixed.n; j++) word_free(&f->fixed.w[j]);
            f->fixed.n = before;
            return ASR_ENOMEM;
        }
    return commit_from(f, before);
}

int fb_commit_text(struct fb_session *f, const char *text, size_t len) {
    size_t before = f->fixed.n;
    if (each_text_word(text, len, &f->fixed) != 0) {
        for (size_t j = before; j < f->fixed.n; j++) word_free(&f->fixed.w[j]);
        f->fixed.n = before;
        return ASR_ENOMEM;
    }
    return commit_from(f, before);
}

/* The evaluation proper, with f->tail filled. */
static int evaluate(struct fb_session *f, int at_end, struct fb_entry *out) {
    size_t m1 = f->m + 1, nf = f->fixed.n;
    if (nf + f->tail.n > f->max_words) {
        size_t keep = f->max_words > nf ? f->max_words - nf : 0;
        for (size_t j = keep; j < f->tail.n; j++) word_free(&f->tail.w[j]);
        f->tail.n = keep;
    }
    size_t nt = f->tail.n;
    if (bp_room(&f->tbp, &f->tbp_cols, nt ? nt : 1, m1) != 0) return ASR_ENOMEM;
    uint32_t *prev = f->c0, *cur = f->c1;
    memcpy(prev, f->col, m1 * sizeof *prev);
    for (size_t j = 0; j < nt; j++) {
        column(f, &f->tail.w[j], prev, cur, f->tbp + j * m1);
        uint32_t *x = prev;
        prev = cur;
        cur = x;
    }
    /* prev is the last column: the furthest of the cheapest ends */
    size_t end = 0;
    uint64_t tail = at_end ? COST_END : 0, best = (uint64_t)prev[0] + tail * f->m;
    for (size_t i = 1; i <= f->m; i++) {
        uint64_t c = (uint64_t)prev[i] + tail * (f->m - i);
        if (c <= best) best = c, end = i;
    }
    for (size_t i = 0; i < f->m; i++) out[i] = (struct fb_entry){.status = FB_PENDING};
    for (size_t i = end; i < f->m; i++) out[i].status = at_end ? FB_MISSING : FB_PENDING;
    size_t i = end, j = nf + nt;
    while (i > 0) {
        uint8_t op = j == 0 ? OP_UP : j > nf ? f->tbp[(j - nf - 1) * m1 + i] : f->bp[(j - 1) * m1 + i];
        if ((op & 3) == OP_DIAG) {
            const struct fb_word *h = j > nf ? &f->tail.w[j - nf - 1] : &f->fixed.w[j - 1];
            out[i - 1] = (struct fb_entry){.status = (uint8_t)(op >> 2), .heard = h->orig, .heard_len = h->orig_len};
            i--;
            j--;
        } else if ((op & 3) == OP_UP) {
            out[i - 1] = (struct fb_entry){.status = FB_MISSING};
            i--;
        } else {
            j--;
        }
    }
    return 0;
}

int fb_evaluate(struct fb_session *f, const struct engine_word *tail, size_t n, int at_end, struct fb_entry *out) {
    wordv_clear(&f->tail);
    for (size_t k = 0; k < n && f->fixed.n + f->tail.n < f->max_words; k++)
        if (wordv_add(&f->tail, tail[k].text, tail[k].len) != 0) return ASR_ENOMEM;
    return evaluate(f, at_end, out);
}

int fb_evaluate_text(struct fb_session *f, const char *tail, size_t len, int at_end, struct fb_entry *out) {
    wordv_clear(&f->tail);
    if (each_text_word(tail, len, &f->tail) != 0) return ASR_ENOMEM;
    return evaluate(f, at_end, out);
}

static int is_mistake(int st) { return st == FB_MINOR || st == FB_WRONG || st == FB_MISSING; }

int fb_smooth(struct fb_session *f, const struct fb_entry *raw, int settled) {
    /* the new shown state in tmp (heard still borrowed), then its heard
     * words copied into a fresh buffer, then swapped in */
    for (size_t i = 0; i < f->m; i++) {
        int r = raw[i].status;
        if (r == FB_CORRECT || (is_mistake(r) && (settled || is_mistake(f->prev_raw[i]))))
            f->tmp[i] = raw[i];
        else
            f->tmp[i] = f->shown[i];
    }
    struct buf nt;
    buf_init(&nt, 0);
    for (size_t i = 0; i < f->m; i++) {
        if (!f->tmp[i].heard) continue;
        if (buf_append(&nt, f->tmp[i].heard, f->tmp[i].heard_len) != 0 || buf_append(&nt, "", 1) != 0 ||
            nt.len > UINT32_MAX) {
            buf_cleanup(&nt);
            return ASR_ENOMEM;
        }
    }
    size_t off = 0;
    for (size_t i = 0; i < f->m; i++) {
        f->shown[i].status = f->tmp[i].status;
        if (!f->tmp[i].heard) {
            f->shown[i].heard = NULL;
            f->shown[i].heard_len = 0;
            continue;
        }
        f->shown[i].heard = nt.data + off;
        f->shown[i].heard_len = f->tmp[i].heard_len;
        off += f->tmp[i].heard_len + 1;
    }
    buf_cleanup(&f->shown_text);
    f->shown_text = nt;
    for (size_t i = 0; i < f->m; i++) f->prev_raw[i] = raw[i].status;
    return 0;
}

struct fb_view fb_shown(const struct fb_session *f) {
    return (struct fb_view){.text = f->text, .e = f->shown, .n = f->m};
}

double fb_score(const struct fb_view *v, size_t counts[FB__N]) {
    size_t c[FB__N] = {0};
    for (size_t i = 0; i < v->n; i++) c[v->e[i].status < FB__N ? v->e[i].status : FB_PENDING]++;
    if (counts) memcpy(counts, c, sizeof c);
    return v->n ? (double)c[FB_CORRECT] / (double)v->n : 0.0;
}
