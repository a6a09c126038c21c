/* core/feedback: normalisation, the expected text's words, alignment
 * (insertions, deletions, substitutions, repeated words, restarts), the
 * session's fixed words, smoothing and the score. */
#include "test.h"

#include <time.h>

#include "base/err.h"
#include "base/util.h"
#include "core/feedback.h"

static char *norm(const char *s, int strip) {
    static char out[8][256];
    static int k;
    struct buf b;
    buf_init(&b, 0);
    ASSERT_EQ_INT(fb_normalize(s, strlen(s), strip, &b), 0);
    char *o = out[k++ % 8];
    snprintf(o, 256, "%.*s", (int)b.len, b.data ? b.data : "");
    buf_cleanup(&b);
    return o;
}

TEST(feedback_normalize_case_punctuation_nfkc) {
    ASSERT_STR_EQ(norm("Hello,", 0), "hello");
    ASSERT_STR_EQ(norm("\"DON'T!\"", 0), "dont");
    ASSERT_STR_EQ(norm("Stra\xc3\x9f" "e", 0), "strasse");          /* case folding: ß -> ss */
    ASSERT_STR_EQ(norm("\xef\xac\x81" "ne", 0), "fine");            /* NFKC: the ligature fi */
    ASSERT_STR_EQ(norm("\xef\xbc\xa1\xef\xbc\xa2", 0), "ab");       /* NFKC: fullwidth AB */
    ASSERT_STR_EQ(norm("co\xc2\xad" "operate", 0), "cooperate");    /* soft hyphen (Cf) dropped */
    ASSERT_STR_EQ(norm("\xc2\xbfQu\xc3\xa9?", 0), "qu\xc3\xa9");    /* ¿Qué? keeps its accent */
    ASSERT_STR_EQ(norm("...", 0), "");
    /* a mark cut from its letter by punctuation is composed again */
    ASSERT_STR_EQ(norm("e.\xcc\x81", 0), "\xc3\xa9");
    /* composed and decomposed é are the same word */
    ASSERT_STR_EQ(norm("caf\xc3\xa9", 0), norm("cafe\xcc\x81", 0));
}

TEST(feedback_normalize_strips_diacritics_when_asked) {
    ASSERT_STR_EQ(norm("Caf\xc3\xa9", 1), "cafe");
    ASSERT_STR_EQ(norm("na\xc3\xafve", 1), "naive");
    ASSERT_STR_EQ(norm("\xc3\x85ngstr\xc3\xb6m", 1), "angstrom");
    ASSERT_STR_EQ(norm("caf\xc3\xa9", 0), "caf\xc3\xa9");
}

TEST(feedback_normalize_drops_invalid_utf8) {
    ASSERT_STR_EQ(norm("ab\xff" "c", 0), "abc");
    ASSERT_STR_EQ(norm("\xc3", 0), "");
}

TEST(feedback_classify_rules) {
    ASSERT_EQ_INT(fb_classify("Meters.", 7, "meters", 6), FB_CORRECT);
    ASSERT_EQ_INT(fb_classify("caf\xc3\xa9", 5, "cafe", 4), FB_MINOR);      /* diacritics */
    ASSERT_EQ_INT(fb_classify("meters", 6, "meter", 5), FB_MINOR);          /* 1 edit, 6 letters */
    ASSERT_EQ_INT(fb_classify("house", 5, "horse", 5), FB_MINOR);           /* 1 edit, 5 letters */
    ASSERT_EQ_INT(fb_classify("ten", 3, "tan", 3), FB_WRONG);               /* 3 letters: no edit allowed */
    ASSERT_EQ_INT(fb_classify("house", 5, "hearse", 6), FB_WRONG);          /* 2 edits, 5 letters */
    ASSERT_EQ_INT(fb_classify("respectable", 11, "respectful", 10), FB_WRONG); /* 3 edits, 11 letters: 2 allowed */
    ASSERT_EQ_INT(fb_classify("prudently", 9, "prudentli", 9), FB_MINOR);   /* 1 edit, 9 letters */
    ASSERT_EQ_INT(fb_classify("young", 5, "old", 3), FB_WRONG);
}

TEST(feedback_text_parse_words) {
    struct fb_text *t = NULL;
    const char *why = NULL;
    const char *s = "  Mister John Dashwood -- had then  leisure\tto consider... how well-known \xe2\x80\x94 it was!";
    ASSERT_EQ_INT(fb_text_parse(s, strlen(s), 0, &t, &why), 0);
    const char *want[] = {"Mister", "John", "Dashwood", "had", "then", "leisure", "to", "consider...",
                          "how", "well", "known", "it", "was!"};
    ASSERT_EQ_INT(fb_text_count(t), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < fb_text_count(t); i++) {
        size_t l;
        const char *w = fb_text_word(t, i, &l);
        ASSERT_EQ_INT(l, strlen(want[i]));
        ASSERT(memcmp(w, want[i], l) == 0);
    }
    fb_text_destroy(t);
    ASSERT_EQ_INT(fb_text_parse("-- ... !", 8, 0, &t, &why), ASR_E_BAD_REQUEST);
    ASSERT_STR_EQ(why, "the expected text has no word");
    ASSERT_EQ_INT(fb_text_parse("a\xff", 2, 0, &t, &why), ASR_E_BAD_REQUEST);
    ASSERT_STR_EQ(why, "the expected text is not valid UTF-8");
    ASSERT_EQ_INT(fb_text_parse("a b c d", 7, 3, &t, &why), ASR_E_BAD_REQUEST);
    ASSERT_STR_EQ(why, "the expected text has too many words");
    ASSERT_EQ_INT(fb_text_parse("a b c", 5, 3, &t, &why), 0);
    fb_text_destroy(t);
    ASSERT_EQ_INT(fb_text_parse("a\0b\x01" "c", 5, 0, &t, &why), 0);     /* control characters separate */
    ASSERT_EQ_INT(fb_text_count(t), 3);
    fb_text_destroy(t);
}

/* Statuses of a raw evaluation as one letter per expected word:
 * c correct, m minor, w wrong, x missing, . pending. */
static const char *letters(const struct fb_entry *e, size_t n) {
    static char s[256];
    static const char map[FB__N] = {'.', 'c', 'm', 'w', 'x'};
    for (size_t i = 0; i < n && i < sizeof s - 1; i++) s[i] = map[e[i].status];
    s[n < sizeof s - 1 ? n : sizeof s - 1] = '\0';
    return s;
}

/* Aligns heard (space-separated) against expected, raw. */
static const char *align(const char *expected, const char *heard, int at_end) {
    struct fb_text *t;
    const char *why;
    ASSERT_EQ_INT(fb_text_parse(expected, strlen(expected), 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    ASSERT(f);
    struct fb_entry e[64];
    ASSERT_EQ_INT(fb_evaluate_text(f, heard, strlen(heard), at_end, e), 0);
    const char *r = letters(e, fb_text_count(t));
    fb_destroy(f);
    fb_text_destroy(t);
    return r;
}

TEST(feedback_align_exact_and_prefix) {
    ASSERT_STR_EQ(align("go forward ten meters", "go forward ten meters", 0), "cccc");
    ASSERT_STR_EQ(align("Go forward, ten meters.", "go forward", 0), "cc..");
    ASSERT_STR_EQ(align("go forward ten meters", "go forward", 1), "ccxx");   /* at the end: never read */
    ASSERT_STR_EQ(align("go forward ten meters", "", 0), "....");
}

TEST(feedback_align_insertions) {
    /* extra heard words are not expected words: nothing changes */
    ASSERT_STR_EQ(align("go forward ten meters", "um go go forward uh ten meters", 0), "cccc");
}

TEST(feedback_align_deletions) {
    ASSERT_STR_EQ(align("go forward ten meters", "go ten meters", 0), "cxcc");
    ASSERT_STR_EQ(align("go forward ten meters", "forward ten meters", 0), "xccc");
}

TEST(feedback_align_substitutions) {
    ASSERT_STR_EQ(align("he was not an ill disposed old man", "he was not an ill disposed young man", 0),
                  "cccccc" "wc");
    ASSERT_STR_EQ(align("go forward ten meters", "go forward ten meter", 0), "cccm");
    /* a wrong word at the very end stays pending until more is heard */
    ASSERT_STR_EQ(align("go forward ten meters now", "go forward ten", 0), "ccc..");
    ASSERT_STR_EQ(align("go forward ten meters now", "go forward ten beaters", 0), "ccc..");
    ASSERT_STR_EQ(align("go forward ten meters now", "go forward ten beaters now", 0), "cccwc");
    ASSERT_STR_EQ(align("go forward ten meters now", "go forward ten beaters", 1), "cccwx");
}

TEST(feedback_align_at_the_end_does_not_stretch_heard_words) {
    /* the last words of a reading heard wrong, two more sentences never
     * read: not matched word by word with the unread text */
    ASSERT_STR_EQ(align("he was not an ill disposed old man he was rich", "he was not an ill disposed he an man", 1),
                  "cccccc" "wc" "xxx");
    ASSERT_STR_EQ(align("he was not an ill disposed old man he was rich", "he was not an ill disposed he an man", 0),
                  "cccccc" "wc" "...");
}

TEST(feedback_align_heard_words) {
    struct fb_text *t;
    const char *why;
    const char *ex = "Go forward, TEN meters";
    ASSERT_EQ_INT(fb_text_parse(ex, strlen(ex), 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    struct fb_entry e[4];
    const char *h = "go backward ten";
    ASSERT_EQ_INT(fb_evaluate_text(f, h, strlen(h), 0, e), 0);
    ASSERT_STR_EQ(letters(e, 4), "cwc.");
    ASSERT(e[0].heard_len == 2 && memcmp(e[0].heard, "go", 2) == 0);
    ASSERT(e[1].heard_len == 8 && memcmp(e[1].heard, "backward", 8) == 0);
    ASSERT(e[3].heard == NULL && e[3].heard_len == 0);
    fb_destroy(f);
    fb_text_destroy(t);
}

TEST(feedback_align_repeated_words) {
    /* the same word twice in the text: each occurrence aligned on its own */
    ASSERT_STR_EQ(align("the cat and the dog", "the cat and the dog", 0), "ccccc");
    ASSERT_STR_EQ(align("the cat and the dog", "the cat and dog", 0), "cccxc");
    ASSERT_STR_EQ(align("a a a b", "a a b", 0), "ccxc");
    /* a stutter: a word said twice is one extra word */
    ASSERT_STR_EQ(align("the cat and the dog", "the the cat and the dog", 0), "ccccc");
}

TEST(feedback_align_restart_from_an_earlier_word) {
    /* read on, then back to an earlier word and again: all correct */
    ASSERT_STR_EQ(align("a b c d e f", "a b c d c d e f", 0), "cccccc");
    /* a misread word corrected by the restart is correct */
    ASSERT_STR_EQ(align("one two three four five six", "one two tree four three four five six", 0), "cccccc");
    /* a restart from the beginning */
    ASSERT_STR_EQ(align("one two three four", "one two one two three four", 0), "cccc");
}

TEST(feedback_fixed_words_and_tail_give_the_same_alignment) {
    struct fb_text *t;
    const char *why;
    const char *ex = "and mister john dashwood had then leisure to consider how much there might be";
    ASSERT_EQ_INT(fb_text_parse(ex, strlen(ex), 0, &t, &why), 0);
    size_t m = fb_text_count(t);
    const char *hyp = "and mister john dash wood had then leisure to consider how match there";
    struct fb_session *a = fb_create(t, 0), *b = fb_create(t, 0);
    struct fb_entry ea[32], eb[32];
    ASSERT_EQ_INT(fb_evaluate_text(a, hyp, strlen(hyp), 0, ea), 0);
    /* the same words, the first eight committed in two utterances */
    ASSERT_EQ_INT(fb_commit_text(b, "and mister john", 15), 0);
    ASSERT_EQ_INT(fb_commit_text(b, "dash wood had then leisure", 26), 0);
    ASSERT_EQ_INT(fb_fixed_count(b), 8);
    const char *tail = "to consider how match there";
    ASSERT_EQ_INT(fb_evaluate_text(b, tail, strlen(tail), 0, eb), 0);
    for (size_t i = 0; i < m; i++) {
        ASSERT_EQ_INT(ea[i].status, eb[i].status);
        ASSERT_EQ_INT(ea[i].heard_len, eb[i].heard_len);
        if (ea[i].heard_len) ASSERT(memcmp(ea[i].heard, eb[i].heard, ea[i].heard_len) == 0);
    }
    ASSERT_STR_EQ(letters(ea, m), "cccwccccccwc..");
    /* engine words commit the same way */
    struct engine_word w[2] = {{.text = "to", .len = 2}, {.text = "consider", .len = 8}};
    ASSERT_EQ_INT(fb_commit(b, w, 2), 0);
    ASSERT_EQ_INT(fb_fixed_count(b), 10);
    ASSERT_EQ_INT(fb_evaluate_text(b, "how match there", 15, 0, eb), 0);
    ASSERT_STR_EQ(letters(eb, m), "cccwccccccwc..");
    fb_destroy(a);
    fb_destroy(b);
    fb_text_destroy(t);
}

TEST(feedback_hypothesis_bound) {
    struct fb_text *t;
    const char *why;
    ASSERT_EQ_INT(fb_text_parse("a b c d", 7, 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 3);
    struct fb_entry e[4];
    ASSERT_EQ_INT(fb_commit_text(f, "a b", 3), 0);
    ASSERT_EQ_INT(fb_evaluate_text(f, "c d", 3, 0, e), 0); /* only "c" fits the bound */
    ASSERT_STR_EQ(letters(e, 4), "ccc.");
    ASSERT_EQ_INT(fb_commit_text(f, "c d", 3), 0);
    ASSERT_EQ_INT(fb_fixed_count(f), 3);
    fb_destroy(f);
    fb_text_destroy(t);
}

/* Smoothing: raw evaluations of a stream, and what is shown after each. */
static const char *smooth_step(struct fb_session *f, const char *heard) {
    struct fb_entry e[16];
    ASSERT_EQ_INT(fb_evaluate_text(f, heard, strlen(heard), 0, e), 0);
    ASSERT_EQ_INT(fb_smooth(f, e, 0), 0);
    struct fb_view v = fb_shown(f);
    return letters(v.e, v.n);
}

TEST(feedback_smoothing_needs_two_windows_for_a_mistake) {
    struct fb_text *t;
    const char *why;
    const char *ex = "go forward ten meters now";
    ASSERT_EQ_INT(fb_text_parse(ex, strlen(ex), 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    ASSERT_STR_EQ(letters(fb_shown(f).e, 5), ".....");
    ASSERT_STR_EQ(smooth_step(f, "go forward"), "cc...");
    /* one window misrecognises forward: not shown */
    ASSERT_STR_EQ(smooth_step(f, "go backward ten"), "ccc..");
    /* and the next one has it right again: no flicker */
    ASSERT_STR_EQ(smooth_step(f, "go forward ten meters"), "cccc.");
    /* a real mistake: shown once two windows in a row say so */
    ASSERT_STR_EQ(smooth_step(f, "go forward ten beaters now"), "ccccc");   /* raw w, prev raw c: keeps c */
    ASSERT_STR_EQ(smooth_step(f, "go forward ten beaters now"), "cccwc");
    ASSERT(fb_shown(f).e[3].heard_len == 7 && memcmp(fb_shown(f).e[3].heard, "beaters", 7) == 0);
    fb_destroy(f);
    fb_text_destroy(t);
}

TEST(feedback_smoothing_first_mistake_waits_and_pending_is_sticky) {
    struct fb_text *t;
    const char *why;
    ASSERT_EQ_INT(fb_text_parse("a b c d", 7, 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    ASSERT_STR_EQ(smooth_step(f, "a x c"), "c.c.");   /* b wrong once: stays pending */
    ASSERT_STR_EQ(smooth_step(f, "a x c"), "cwc.");   /* twice: shown */
    ASSERT_STR_EQ(smooth_step(f, "a b c"), "ccc.");   /* corrected: at once */
    ASSERT_STR_EQ(smooth_step(f, "a b"), "ccc.");     /* c retracted (raw pending): keeps correct */
    /* b skipped once after being read: a mistake needs two windows */
    ASSERT_STR_EQ(smooth_step(f, "a c d"), "cccc");
    fb_destroy(f);
    fb_text_destroy(t);
}

TEST(feedback_smoothing_a_settled_mistake_shows_at_once) {
    struct fb_text *t;
    const char *why;
    ASSERT_EQ_INT(fb_text_parse("a b c d", 7, 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    struct fb_entry e[4];
    ASSERT_EQ_INT(fb_evaluate_text(f, "a x c", 5, 0, e), 0);
    ASSERT_EQ_INT(fb_smooth(f, e, 1), 0);                 /* a final's words: no second opinion needed */
    ASSERT_STR_EQ(letters(fb_shown(f).e, 4), "cwc.");
    fb_destroy(f);
    fb_text_destroy(t);
}

TEST(feedback_smoothing_missing_is_a_mistake_too) {
    struct fb_text *t;
    const char *why;
    ASSERT_EQ_INT(fb_text_parse("a b c d", 7, 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    ASSERT_STR_EQ(smooth_step(f, "a c d"), "c.cc");   /* b skipped once */
    ASSERT_STR_EQ(smooth_step(f, "a c d"), "cxcc");   /* twice: missing */
    ASSERT_STR_EQ(smooth_step(f, "a b c d"), "cccc");
    fb_destroy(f);
    fb_text_destroy(t);
}

TEST(feedback_score_and_counts) {
    struct fb_entry e[5] = {{.status = FB_CORRECT}, {.status = FB_CORRECT}, {.status = FB_WRONG},
                            {.status = FB_MINOR}, {.status = FB_MISSING}};
    struct fb_view v = {.e = e, .n = 5};
    size_t c[FB__N];
    ASSERT_NEAR(fb_score(&v, c), 0.4, 1e-9);
    ASSERT_EQ_INT(c[FB_CORRECT], 2);
    ASSERT_EQ_INT(c[FB_WRONG], 1);
    ASSERT_EQ_INT(c[FB_MINOR], 1);
    ASSERT_EQ_INT(c[FB_MISSING], 1);
    ASSERT_EQ_INT(c[FB_PENDING], 0);
    struct fb_view empty = {.n = 0};
    ASSERT_NEAR(fb_score(&empty, NULL), 0.0, 1e-9);
    ASSERT_STR_EQ(fb_status_name(FB_MINOR), "minor_mistake");
    ASSERT_STR_EQ(fb_status_name(FB_MISSING), "missing");
}

/* The cost that bounds a session: a window of a long text late in the
 * session. 700 expected words (about 4 KB, ASR_EXPECTED_TEXT_MAX_BYTES),
 * 1,400 fixed words, a 40-word open utterance. */
TEST(feedback_window_cost_late_in_a_long_text) {
    static const char *vocab[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "river", "stone"};
    struct buf ex, hyp;
    buf_init(&ex, 0);
    buf_init(&hyp, 0);
    for (int i = 0; i < 700; i++) buf_printf(&ex, "%s%s", i ? " " : "", vocab[(i * 7 + i / 10) % 10]);
    for (int i = 0; i < 1400; i++) buf_printf(&hyp, "%s%s", i ? " " : "", vocab[(i * 7 + i / 10) % 10]);
    struct fb_text *t;
    const char *why;
    ASSERT_EQ_INT(fb_text_parse(ex.data, ex.len, 0, &t, &why), 0);
    struct fb_session *f = fb_create(t, 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ASSERT_EQ_INT(fb_commit_text(f, hyp.data, hyp.len), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double commit_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    struct fb_entry *e = calloc(700, sizeof *e);
    clock_gettime(CLOCK_MONOTONIC, &a);
    ASSERT_EQ_INT(fb_evaluate_text(f, hyp.data, 40 * 5, 0, e), 0);
    ASSERT_EQ_INT(fb_smooth(f, e, 0), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double eval_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    fprintf(stderr, "  1400 fixed words x 700: commit %.1f ms; a window of ~40 words: %.2f ms\n", commit_ms, eval_ms);
    ASSERT(eval_ms < 50);
    free(e);
    fb_destroy(f);
    fb_text_destroy(t);
    buf_cleanup(&ex);
    buf_cleanup(&hyp);
}
