/* Unit tests for src/core/agree.c: LocalAgreement-2 over hypotheses given
 * as "word@start-end word@start-end ..." strings. */
#include "test.h"

#include "core/agree.h"

/* Parses "go@0-300 forward@300-700" into words (texts point into a copy
 * kept in buf). */
static size_t parse(const char *spec, struct engine_word *w, size_t cap, char *buf, size_t bufcap) {
    snprintf(buf, bufcap, "%s", spec);
    size_t n = 0;
    for (char *tok = buf, *save = NULL; n < cap;) {
        char *end = strchr(tok, ' ');
        if (end) *end = '\0';
        if (*tok) {
            char *at = strchr(tok, '@');
            ASSERT(at != NULL);
            *at = '\0';
            w[n].text = tok;
            w[n].len = strlen(tok);
            w[n].start_ms = strtoull(at + 1, &save, 10);
            w[n].end_ms = strtoull(save + 1, NULL, 10);
            w[n].confidence = -1;
            n++;
        }
        if (!end) break;
        tok = end + 1;
    }
    return n;
}

/* Feeds spec; returns the newly committed words and the tail as text. */
static void feed(struct agree *a, const char *spec, char *committed, size_t clen, char *tail, size_t tlen) {
    struct engine_word w[64];
    char buf[1024];
    size_t n = parse(spec, w, 64, buf, sizeof buf);
    size_t first = 0;
    ASSERT_EQ_INT(agree_feed(a, w, n, &first), 0);
    committed[0] = tail[0] = '\0';
    for (size_t i = first; i < a->n_committed; i++)
        snprintf(committed + strlen(committed), clen - strlen(committed), "%s%s", i > first ? " " : "",
                 a->committed[i].text);
    for (size_t i = 0; i < a->n_prev; i++)
        snprintf(tail + strlen(tail), tlen - strlen(tail), "%s%s", i ? " " : "", a->prev[i].text);
}

TEST(agree_commits_what_two_hypotheses_share) {
    struct agree a;
    agree_init(&a);
    char c[256], t[256];
    feed(&a, "go@0-300 four@300-600", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "");                      /* nothing to agree with yet */
    ASSERT_STR_EQ(t, "go four");
    feed(&a, "go@0-300 forward@300-700 ten@700-900", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "go");                    /* "four" vs "forward": only "go" agrees */
    ASSERT_STR_EQ(t, "forward ten");
    feed(&a, "go@0-300 forward@300-700 ten@700-950 meters@950-1400", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "forward ten");
    ASSERT_STR_EQ(t, "meters");
    ASSERT_EQ_INT(a.n_committed, 3);
    ASSERT_EQ_INT(a.commit_end_ms, 950);       /* times from the newer hypothesis */
    agree_cleanup(&a);
}

TEST(agree_committed_words_never_change) {
    struct agree a;
    agree_init(&a);
    char c[256], t[256];
    feed(&a, "the@0-200 cat@200-500", c, sizeof c, t, sizeof t);
    feed(&a, "the@0-200 cat@200-500 sat@500-800", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "the cat");
    /* a later window hears the start differently: committed words stay */
    feed(&a, "a@0-200 hat@200-500 sat@500-800 down@800-1000", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(a.committed[0].text, "the");
    ASSERT_STR_EQ(a.committed[1].text, "cat");
    ASSERT_STR_EQ(c, "sat");                   /* after the committed audio, "sat" agreed */
    ASSERT_STR_EQ(t, "down");
    agree_cleanup(&a);
}

TEST(agree_normalises_case_punctuation_and_variants) {
    ASSERT(agree_same_word("Forward", 7, "forward", 7));
    ASSERT(agree_same_word("forward(2)", 10, "forward", 7));
    ASSERT(agree_same_word("meters.", 7, "Meters", 6));
    ASSERT(agree_same_word("don't", 5, "dont", 4));
    ASSERT(!agree_same_word("four", 4, "forward", 7));
    ASSERT(!agree_same_word("(2)", 3, "2x", 2));
    ASSERT(agree_same_word("caf\xc3\xa9", 5, "CAF\xc3\xa9", 5)); /* UTF-8 bytes kept, ASCII folded */
}

/* A window that starts before the commit point (an overlap) repeats the
 * last committed words: they are not committed twice. */
TEST(agree_skips_the_overlap_and_a_repeated_join) {
    struct agree a;
    agree_init(&a);
    char c[256], t[256];
    feed(&a, "one@0-300 two@300-600 three@600-900", c, sizeof c, t, sizeof t);
    feed(&a, "one@0-300 two@300-600 three@600-900 four@900-1200", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "one two three");
    /* the next window starts at 500 ms: "two" lies before the commit point,
     * "three" is repeated at the join (its start moved a little) */
    feed(&a, "two@450-600 three@620-900 four@900-1200 five@1200-1500", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "four");
    ASSERT_STR_EQ(t, "five");
    ASSERT_EQ_INT(a.n_committed, 4);
    agree_reset(&a);                           /* a new utterance */
    ASSERT_EQ_INT(a.n_committed, 0);
    ASSERT_EQ_INT(a.n_prev, 0);
    feed(&a, "six@2000-2300", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(c, "");
    ASSERT_STR_EQ(t, "six");
    agree_cleanup(&a);
}

TEST(agree_empty_hypotheses) {
    struct agree a;
    agree_init(&a);
    char c[256], t[256];
    feed(&a, "", c, sizeof c, t, sizeof t);
    ASSERT_STR_EQ(t, "");
    feed(&a, "hello@0-400", c, sizeof c, t, sizeof t);
    feed(&a, "", c, sizeof c, t, sizeof t);    /* a window with nothing: the tail goes */
    ASSERT_STR_EQ(c, "");
    ASSERT_EQ_INT(a.n_prev, 0);
    agree_cleanup(&a);
}
