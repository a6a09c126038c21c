/* Stable partials for windowed decoding: LocalAgreement-2 (the policy of
 * the whisper_streaming work, docs/internals/windowed-streaming.md).
 *
 * Each window of the open utterance is decoded into a hypothesis (words
 * with times in the session's audio). A word is committed once two
 * consecutive hypotheses agree on it: the longest common prefix of the new
 * hypothesis and the previous one, after the words already committed, is
 * committed; what follows it in the new hypothesis is the tentative tail.
 * Committed words never change; the tail is replaced by every hypothesis.
 *
 * Words are compared after normalisation (case, punctuation and
 * pronunciation-variant markers such as "(2)" ignored). Pure: no I/O, no
 * loop; unit-tested in tests/unit/test_agree.c. */
#ifndef ASRD_CORE_AGREE_H
#define ASRD_CORE_AGREE_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

struct agree_word {
    char    *text;                  /* owned, NUL-terminated */
    size_t   len;
    uint64_t start_ms, end_ms;
    float    confidence;
};

struct agree {
    struct agree_word *committed;   /* owned: this utterance's committed words, in order */
    size_t   n_committed, cap_committed;
    struct agree_word *prev;        /* owned: the previous hypothesis after the committed words */
    size_t   n_prev, cap_prev;
    uint64_t commit_end_ms;         /* end of the last committed word (0: none) */
};

void agree_init(struct agree *a);
void agree_cleanup(struct agree *a);
/* A new utterance: forgets everything. */
void agree_reset(struct agree *a);

/* Feeds a hypothesis (borrowed). Words that end before the committed audio
 * (a window that starts earlier than the commit point) and a repetition of
 * the last committed words at its start are skipped. On 0, the newly
 * committed words are a->committed[*first_new .. a->n_committed) and the
 * tentative tail is a->prev[0 .. a->n_prev). ASR_ENOMEM leaves the state as
 * it was. */
int agree_feed(struct agree *a, const struct engine_word *w, size_t n, size_t *first_new);

/* Normalised equality of two words (agree.c says exactly how). */
int agree_same_word(const char *a, size_t al, const char *b, size_t bl);

#endif
