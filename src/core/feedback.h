/* Reading feedback: word-by-word verification of speech against an expected
 * text (docs/internals/reading-feedback.md, docs/API.md "Reading feedback").
 * Pure: no I/O, no loop, no clock; unit-tested in tests/unit/test_feedback.c
 * and fuzzed by tests/fuzz/fuzz_feedback.c.
 *
 * The expected text is split into words (fb_text_parse). What the engine
 * heard so far (a hypothesis: the session's words from earlier utterances,
 * then the open utterance's) is aligned with it by a word-level edit
 * distance after normalisation, which gives every expected word a status:
 *
 *   correct        heard, equal after normalisation (NFKC, case folding,
 *                  punctuation and format characters dropped)
 *   minor_mistake  heard, and either equal once diacritics are dropped too,
 *                  or within a small character edit distance (fb_classify)
 *   wrong          heard as another word
 *   missing        skipped: the speaker went past it without saying it
 *                  (and, at the end of a session, never reached)
 *   pending        not reached yet
 *
 * A session's alignment (struct fb_session) keeps the words of finished
 * utterances (fb_commit) and their alignment columns, so each evaluation of
 * a window costs only the open utterance's words times the expected words.
 * Statuses shown to a client are smoothed (fb_smooth): a mistake shows only
 * when the previous evaluation said so too, so one bad window cannot make
 * a word flicker. */
#ifndef ASRD_CORE_FEEDBACK_H
#define ASRD_CORE_FEEDBACK_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

enum fb_status { FB_PENDING, FB_CORRECT, FB_MINOR, FB_WRONG, FB_MISSING, FB__N };

/* "pending", "correct", "minor_mistake", "wrong", "missing". */
const char *fb_status_name(enum fb_status st);

/* ---- normalisation ---------------------------------------------------------- */

/* Appends the normalised form of the UTF-8 word s[0..n) to out: Unicode
 * case folding with NFKC (libunistring u8_casefold), then every code point of
 * general category P (punctuation) or Cf (format: soft hyphen, zero width
 * joiner...) dropped. strip_marks: also decomposes (NFKD), drops nonspacing
 * marks (Mn: the diacritics of Latin, Greek, Cyrillic...) and recomposes
 * (NFKC), so that "Café" and "cafe" are equal. Invalid UTF-8 sequences are
 * dropped. Returns 0, or ASR_ENOMEM (out as it was). */
struct buf;
int fb_normalize(const char *s, size_t n, int strip_marks, struct buf *out);

/* ---- the expected text ------------------------------------------------------- */

struct fb_text;

/* The most words an expected text may have where the server takes one: a
 * session's alignment keeps (words + 1) bytes per heard word, up to 4 x
 * words + 64 heard words (4 MB at this bound), and a window costs the open
 * utterance's words times this many steps on the loop. */
#define FB_TEXT_MAX_WORDS 1000

/* Splits UTF-8 text into words: runs of characters between white space
 * (Unicode White_Space), dashes (category Pd) and control characters (Cc,
 * NUL included); a run that normalises to
 * nothing (punctuation only, like "--" or "...") is not a word. Returns 0 and
 * *out, or ASR_E_BAD_REQUEST with a static reason in *why (the text is not
 * valid UTF-8, has no word, or has more than max_words words), or
 * ASR_ENOMEM. */
int  fb_text_parse(const char *s, size_t n, size_t max_words, struct fb_text **out, const char **why);
void fb_text_destroy(struct fb_text *t);
size_t fb_text_count(const struct fb_text *t);
/* Word i as written in the text (punctuation kept), borrowed. */
const char *fb_text_word(const struct fb_text *t, size_t i, size_t *len);

/* ---- alignment --------------------------------------------------------------- */

/* The status of one expected word, and the word heard in its place (for
 * correct, minor_mistake and wrong; NULL otherwise). heard is borrowed: see
 * the function that gave the entry. */
struct fb_entry {
    uint8_t     status;            /* enum fb_status */
    const char *heard;             /* UTF-8 as the engine gave it */
    size_t      heard_len;
};

/* What a client is shown: the expected words with their entries, borrowed. */
struct fb_view {
    const struct fb_text  *text;
    const struct fb_entry *e;      /* fb_text_count(text) entries */
    size_t                 n;
};

/* How one expected word e compares with one heard word h (both UTF-8), as
 * the alignment scores a substitution: FB_CORRECT (equal after
 * fb_normalize), FB_MINOR (equal after fb_normalize with strip_marks, or a
 * Levenshtein distance over the code points of those forms of at most
 * len(e) / 4, len(e) counted in code points: 1 edit from 4 characters, 2
 * from 8, ...) or FB_WRONG. For tests and documentation: sessions classify
 * through their alignment. */
int fb_classify(const char *e, size_t el, const char *h, size_t hl);

struct fb_session;

/* An alignment of hypotheses against t (borrowed: it must outlive the
 * session). NULL on allocation failure. max_words bounds the hypothesis:
 * words past it (the speaker went on long past the text) are ignored; 0 =
 * 4 x the text's words + 64. */
struct fb_session *fb_create(const struct fb_text *t, size_t max_words);
void fb_destroy(struct fb_session *f);

/* Appends words (borrowed for the call; their times are not used) to the
 * session's fixed hypothesis: the words of a finished utterance. Words that
 * normalise to nothing are skipped. 0 or ASR_ENOMEM (nothing appended). */
int fb_commit(struct fb_session *f, const struct engine_word *w, size_t n);
/* The same for a text of words separated by spaces (engines without word
 * times). */
int fb_commit_text(struct fb_session *f, const char *text, size_t len);
/* Hypothesis words fixed so far. */
size_t fb_fixed_count(const struct fb_session *f);

/* Aligns the fixed words followed by tail (borrowed for the call) with the
 * expected text and writes one raw entry per expected word into out (an
 * array of fb_text_count() entries). The hypothesis may cover a prefix of
 * the text only: expected words after the last one aligned are pending, or
 * with at_end (the speaker is done) missing. Entries' heard pointers are
 * valid until the next call on f. 0 or ASR_ENOMEM.
 *
 * The alignment is a word-level edit distance that may stop anywhere in the
 * expected text: a matching word costs 0, a minor mistake 1, a wrong word
 * 4, an extra heard word (repetition, restart, filler) 3, a skipped expected
 * word 3, and with at_end each expected word after the end 2 (never
 * reached: cheaper than skipped, so heard words are not stretched over the
 * rest of the text, but not free, so a last misread word is wrong rather
 * than extra). Of the equally cheap ends the furthest one is taken; of
 * equally cheap paths, the one that skips an expected word as late as
 * possible, then the one that substitutes (so of "a a b" read as "a b", the
 * second "a" is the missing one). */
int fb_evaluate(struct fb_session *f, const struct engine_word *tail, size_t n, int at_end, struct fb_entry *out);
/* The same with the tail as a text of space-separated words. */
int fb_evaluate_text(struct fb_session *f, const char *tail, size_t len, int at_end, struct fb_entry *out);

/* Smoothing (the shown statuses, kept in f): for each expected word, a raw
 * correct shows at once; a raw mistake (minor_mistake, wrong, missing)
 * shows only when the previous raw evaluation also called it a mistake, or
 * when settled (the evaluation of an utterance's final: its words do not
 * change any more), else the word keeps the status it showed; a raw
 * pending keeps the status shown (a word once reached is not un-read by a
 * retracted tail). raw is what fb_evaluate() just wrote. 0 or ASR_ENOMEM
 * (nothing changed). */
int fb_smooth(struct fb_session *f, const struct fb_entry *raw, int settled);
/* The shown statuses (all pending before the first fb_smooth), borrowed
 * until the next fb_smooth. */
struct fb_view fb_shown(const struct fb_session *f);

/* Score: the share of expected words whose status is correct (0 for an
 * empty view). counts (may be NULL) gets the number of words per status. */
double fb_score(const struct fb_view *v, size_t counts[FB__N]);

#endif
