/* pocketsphinx (CMU Sphinx, Debian's libpocketsphinx 0.8+5prealpha) as a
 * WINDOWED engine (docs/internals/engine.md, docs/internals/pocketsphinx.md).
 *
 * One decoder per inference-pool thread: a decoder holds the acoustic
 * model, the language model and the dictionary (~91 MiB with Debian's
 * en-us model) and is not shared between threads. The decoders are built
 * in the master before the workers fork (preload, ASR_PS_PRELOAD=1, the
 * default), as many as one worker has threads: every worker's thread k
 * starts from the master's decoder k, whose pages the workers share
 * copy-on-write, and only the search state it writes becomes its own
 * (~24 MiB after decoding instead of ~94 MiB). ps_init() writes
 * process-wide variables, so decoders are built one at a time. decode() runs one window as one utterance: a new stream so word
 * times count from the window's first sample, the whole window in one
 * ps_process_raw, then the best path's segments. Fillers and silence
 * (<s>, </s>, <sil> and the model's noise dictionary: [NOISE], [SPEECH],
 * ...) never reach the output; pronunciation variants ("read(2)") lose
 * their marker. A word's confidence is its lattice posterior
 * (ps_seg_prob through the decoder's logmath).
 *
 * Settings: ASR_PS_HMM, ASR_PS_LM, ASR_PS_DICT (Debian's model by default).
 * load() checks that they can be read, so a bad path stops start-up with a
 * clear message instead of failing in every pool thread.
 *
 * The text hint (HINT: the expected text of reading feedback): a window
 * with a hint is decoded with a language model that mixes the general one
 * with a small trigram model of the hint's words (ASR_PS_HINT_WEIGHT of
 * it; 0 turns hints off), so the words the speaker should say are likelier
 * while any other word can still be heard (a grammar of the text alone
 * would hear the expected words whatever was said, and no mistake could be
 * found). Each model is a named search of this thread's decoder, built the
 * first time a hint is seen (the general model's vocabulary merged and its
 * lexicon tree built: docs/BENCHMARKS.md has the cost) and kept for the
 * next windows in a small cache per decoder (ASR_PS_HINT_CACHE, least
 * recently used out). Every decode selects its search, the hint's or the
 * general one, so a session's hint never reaches another's windows. */
#define _GNU_SOURCE /* memfd_create */
#include "core/engine.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include <pocketsphinx.h>
#include <sphinxbase/err.h>
#include <sphinxbase/ngram_model.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"

#define PS_MODEL_DIR "/usr/share/pocketsphinx/model/en-us"
#define PS_PATH_MAX  512
#define PS_FILLERS_MAX 64

struct ps_settings {
    char hmm[PS_PATH_MAX];       /* ASR_PS_HMM: acoustic model directory */
    char lm[PS_PATH_MAX];        /* ASR_PS_LM: n-gram language model */
    char dict[PS_PATH_MAX];      /* ASR_PS_DICT: pronunciation dictionary */
    double hint_weight;          /* ASR_PS_HINT_WEIGHT: share of the hint's model (0 = hints off) */
    int  hint_vocab;             /* ASR_PS_HINT_VOCAB: background words of a hint model (0 = the whole
                                    general model, mixed) */
    int  hint_cache;             /* ASR_PS_HINT_CACHE: hint searches kept per decoder */
    int  preload;                /* ASR_PS_PRELOAD: build the decoders in the master */
};

#define P(field) CONFIG_FIELD(struct ps_settings, field)
static const struct config_opt ps_opts[] = {
    {"ASR_PS_HMM", CONFIG_STR, P(hmm), PS_MODEL_DIR "/en-us", 0, 0, NULL, 0,
     "pocketsphinx: acoustic model directory (Debian's pocketsphinx-en-us)"},
    {"ASR_PS_LM", CONFIG_STR, P(lm), PS_MODEL_DIR "/en-us.lm.bin", 0, 0, NULL, 0,
     "pocketsphinx: n-gram language model"},
    {"ASR_PS_DICT", CONFIG_STR, P(dict), PS_MODEL_DIR "/cmudict-en-us.dict", 0, 0, NULL, 0,
     "pocketsphinx: pronunciation dictionary"},
    {"ASR_PS_HINT_WEIGHT", CONFIG_DOUBLE, P(hint_weight), "0.5", 0, 0.99, NULL, 0,
     "pocketsphinx: weight of a language model of the text hint (reading feedback's expected text) mixed "
     "with the general one; 0 = hints are not used"},
    {"ASR_PS_HINT_VOCAB", CONFIG_INT, P(hint_vocab), "10000", 0, 200000, NULL, 0,
     "pocketsphinx: a hint's model holds the hint's trigrams over the general model's this many likeliest words "
     "(unigrams); 0 = mix the hint's model with the whole general model (more memory and time per hint)"},
    {"ASR_PS_HINT_CACHE", CONFIG_INT, P(hint_cache), "4", 1, 64, NULL, 0,
     "pocketsphinx: hint models kept per decoder (each holds a lexicon tree: docs/BENCHMARKS.md)"},
    {"ASR_PS_PRELOAD", CONFIG_INT, P(preload), "1", 0, 1, NULL, 0,
     "pocketsphinx: 1 = build every decoder in the master before the workers fork, so their model pages "
     "are shared (copy-on-write); 0 = each worker thread loads its own"},
};
#undef P

#define PS_HINT_CACHE_MAX 64

/* A hint's search in a decoder's cache. */
struct ps_hint {
    char    *text;               /* owned: the hint (NULL: free slot) */
    size_t   len;
    uint64_t hash;
    uint64_t used;               /* the decoder's decode count when last used */
    int      usable;             /* 0: the hint gave no model (no word in the dictionary): general search */
    char     name[24];           /* the search's name */
};

/* The background of a hint model (ASR_PS_HINT_VOCAB > 0): the general
 * model's most likely words that the dictionary knows, with their unigram
 * probabilities renormalised over them; sorted by word. Built once per
 * decoder. */
struct ps_bg {
    char  **w;                   /* owned */
    double *p;                   /* owned: probabilities, summing to 1 */
    size_t  n;
};

/* One decoder; lives on one pool thread. */
struct ps_instance {
    ps_decoder_t *ps;            /* owned */
    cmd_ln_t     *config;        /* owned (ps_init takes its own reference) */
    int           frate;         /* frames per second (-frate, 100) */
    char         *fillers[PS_FILLERS_MAX]; /* owned: words that are not speech */
    size_t        n_fillers;
    const struct ps_settings *st;/* borrowed, process lifetime */
    char          general[64];   /* the default search's name */
    struct ps_hint hints[PS_HINT_CACHE_MAX];
    uint64_t      decodes;
    struct ps_bg  bg;            /* hint models' background words (empty: mixed models) */
};

static int  bg_build(struct ps_instance *in, size_t k, struct ps_bg *bg);
static void bg_free(struct ps_bg *bg);

/* The library logs through sphinxbase's err module: warnings and errors go
 * to ours, the rest (its chatty INFO lines, the settings table it prints
 * at ps_init) nowhere. */
static void ps_log(void *user, err_lvl_t lvl, const char *fmt, ...) {
    if (lvl < ERR_WARN) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    msg[strcspn(msg, "\n")] = '\0';
    struct log_line *l = log_begin(lvl >= ERR_ERROR ? LOG_ERROR : LOG_WARN, "pocketsphinx");
    if (l) {
        log_str(l, "library", msg);
        log_end(l);
    }
}

/* ps_init() writes process-wide variables: one at a time. */
static pthread_mutex_t ps_init_lock = PTHREAD_MUTEX_INITIALIZER;

/* Decoders built by preload() in the master, by pool thread index; each
 * worker takes index i at most once (the slot is emptied in its copy). */
static struct ps_instance **preloaded;
static unsigned n_preloaded;

static int readable(const char *path, const char *what) {
    if (access(path, R_OK) == 0) return 1;
    fprintf(stderr, "asrd: pocketsphinx: %s \"%s\" cannot be read: %s\n", what, path, strerror(errno));
    return 0;
}

static int ps_load(const struct engine_cfg *cfg) {
    const struct ps_settings *st = cfg ? cfg->settings : NULL;
    if (!st) return ASR_EINVAL;
    char mdef[PS_PATH_MAX + 8];
    snprintf(mdef, sizeof mdef, "%s/mdef", st->hmm);
    if (!readable(mdef, "acoustic model (ASR_PS_HMM)") || !readable(st->lm, "language model (ASR_PS_LM)") ||
        !readable(st->dict, "dictionary (ASR_PS_DICT)"))
        return ASR_EINVAL;
    err_set_logfp(NULL);
    err_set_callback(ps_log, NULL);
    return 0;
}

/* <s>, </s>, <sil> and every word of the model's noise dictionary. */
static void load_fillers(struct ps_instance *in, const char *hmm) {
    static const char *const always[] = {"<s>", "</s>", "<sil>"};
    for (size_t i = 0; i < 3; i++) in->fillers[in->n_fillers++] = strdup(always[i]);
    char path[PS_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/noisedict", hmm);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[256];
    while (in->n_fillers < PS_FILLERS_MAX && fgets(line, sizeof line, f)) {
        char *w = line + strspn(line, " \t");
        size_t len = strcspn(w, " \t\r\n");
        if (!len || w[0] == '#') continue;
        w[len] = '\0';
        in->fillers[in->n_fillers++] = strdup(w);
    }
    fclose(f);
}

static int is_filler(const struct ps_instance *in, const char *w) {
    for (size_t i = 0; i < in->n_fillers; i++)
        if (in->fillers[i] && strcmp(in->fillers[i], w) == 0) return 1;
    return w[0] == '+' || w[0] == '[' || w[0] == '<'; /* the shapes fillers take in Sphinx models */
}

static void ps_instance_destroy(void *p) {
    struct ps_instance *in = p;
    if (!in) return;
    for (size_t i = 0; i < PS_HINT_CACHE_MAX; i++) free(in->hints[i].text);
    bg_free(&in->bg);
    if (in->ps) ps_free(in->ps);
    if (in->config) cmd_ln_free_r(in->config);
    for (size_t i = 0; i < in->n_fillers; i++) free(in->fillers[i]);
    free(in);
}

static struct ps_instance *build(const struct ps_settings *st) {
    struct ps_instance *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    char *argv[] = {"-hmm", (char *)st->hmm, "-lm", (char *)st->lm, "-dict", (char *)st->dict,
                    "-samprate", "16000"};
    pthread_mutex_lock(&ps_init_lock);
    in->config = cmd_ln_parse_r(NULL, ps_args(), (int)(sizeof argv / sizeof argv[0]), argv, TRUE);
    if (in->config) in->ps = ps_init(in->config);
    pthread_mutex_unlock(&ps_init_lock);
    if (!in->ps) goto fail;
    in->frate = cmd_ln_int32_r(in->config, "-frate");
    if (in->frate <= 0) in->frate = 100;
    load_fillers(in, st->hmm);
    in->st = st;
    /* the default search is "_default" (pocketsphinx 5prealpha); ps_get_search()
     * would tell too, but leaks a hash table iterator each call */
    snprintf(in->general, sizeof in->general, "%s", "_default");
    if (!ps_get_lm(in->ps, in->general)) {
        const char *cur = ps_get_search(in->ps);
        snprintf(in->general, sizeof in->general, "%s", cur ? cur : "_default");
    }
    if (st->hint_weight > 0 && st->hint_vocab > 0 && bg_build(in, (size_t)st->hint_vocab, &in->bg) != 0)
        bg_free(&in->bg); /* hints then mix with the whole general model */
    return in;
fail:
    ps_instance_destroy(in);
    return NULL;
}

/* ---- the text hint's language model ---------------------------------------- */

/* A growable list of words (the hint's, in order; NULL separates sentences). */
struct wlist {
    char  **w;                   /* owned strings; NULL = a sentence break */
    size_t  n, cap;
};

static int wl_push(struct wlist *l, char *w) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **nw = realloc(l->w, cap * sizeof *nw);
        if (!nw) return -1;
        l->w = nw;
        l->cap = cap;
    }
    l->w[l->n++] = w;
    return 0;
}

static void wl_free(struct wlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->w[i]);
    free(l->w);
}

/* The dictionary form of one token of the hint: lowercase ASCII letters,
 * digits and inner apostrophes ("Don't!" -> "don't"), or NULL when it has
 * something else (non-ASCII) or the dictionary does not know it. */
static char *dict_word(struct ps_instance *in, const char *t, size_t n) {
    while (n && !isalnum((unsigned char)t[0])) t++, n--;
    while (n && !isalnum((unsigned char)t[n - 1])) n--;
    if (!n || n > 64) return NULL;
    char *w = malloc(n + 1);
    if (!w) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!isalnum(c) && c != '\'') {
            free(w);
            return NULL;
        }
        w[i] = (char)tolower(c);
    }
    w[n] = '\0';
    char *phones = ps_lookup_word(in->ps, w);
    if (!phones) {
        free(w);
        return NULL;
    }
    free(phones);
    return w;
}

/* The hint as sentences of dictionary words: a word the dictionary does
 * not know, and . ! ? ; : end a sentence. */
static int hint_words(struct ps_instance *in, const char *h, size_t n, struct wlist *l) {
    size_t known = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && (isspace((unsigned char)h[i]) || h[i] == '-')) i++;
        size_t s = i;
        while (i < n && !isspace((unsigned char)h[i]) && h[i] != '-') i++;
        if (i == s) break;
        char *w = dict_word(in, h + s, i - s);
        int end = strchr(".!?;:", h[i - 1]) != NULL;
        if (w) {
            if (wl_push(l, w) != 0) {
                free(w);
                return -1;
            }
            known++;
        }
        if ((!w || end) && l->n && l->w[l->n - 1] && wl_push(l, NULL) != 0) return -1;
    }
    if (l->n && l->w[l->n - 1] && wl_push(l, NULL) != 0) return -1;
    return known ? 0 : 1;
}

/* n-gram counts of the hint: each distinct n-gram once, with its count. */
struct gram {
    const char *w[3];            /* borrowed from the word list, or "<s>"/"</s>" */
    int         n;
    unsigned    count;
    double      logp, bow;       /* log10 */
};

struct grams {
    struct gram *g;
    size_t n, cap;
    const struct ps_bg *bg;      /* borrowed, or NULL */
    double lambda;               /* with bg: the hint's share of the unigrams */
    unsigned total;              /* unigram tokens of the hint (without <s>) */
};

static int same_gram(const struct gram *g, const char *const *w, int n) {
    if (g->n != n) return 0;
    for (int k = 0; k < n; k++)
        if (strcmp(g->w[k], w[k]) != 0) return 0;
    return 1;
}

static struct gram *gram_find(struct grams *gs, const char *const *w, int n) {
    for (size_t i = 0; i < gs->n; i++)
        if (same_gram(&gs->g[i], w, n)) return &gs->g[i];
    return NULL;
}

static int gram_add(struct grams *gs, const char *const *w, int n) {
    struct gram *g = gram_find(gs, w, n);
    if (g) {
        g->count++;
        return 0;
    }
    if (gs->n == gs->cap) {
        size_t cap = gs->cap ? gs->cap * 2 : 256;
        struct gram *ng = realloc(gs->g, cap * sizeof *ng);
        if (!ng) return -1;
        gs->g = ng;
        gs->cap = cap;
    }
    g = &gs->g[gs->n++];
    memset(g, 0, sizeof *g);
    for (int k = 0; k < n; k++) g->w[k] = w[k];
    g->n = n;
    g->count = 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A word's probability in the background (0 when it is not there). */
static double bg_prob(const struct ps_bg *bg, const char *w) {
    if (!bg || !bg->n) return 0;
    char *const *hit = bsearch(&w, bg->w, bg->n, sizeof *bg->w, cmp_str);
    return hit ? bg->p[hit - bg->w] : 0;
}

/* The unigram probability: the hint's relative frequency, mixed with the
 * background when there is one. log10. */
static double uni_logp(const struct grams *gs, const char *w, unsigned count) {
    double p = gs->total ? (double)count / gs->total : 0;
    if (gs->bg) p = gs->lambda * p + (1 - gs->lambda) * bg_prob(gs->bg, w);
    return p > 0 ? log10(p) : -99;
}

/* The probability of w given its context (n words, the last one w) in the
 * model so far: the n-gram's own, or the context's back-off weight times
 * the (n-1)-gram's. log10. */
static double gram_logp(struct grams *gs, const char *const *w, int n) {
    struct gram *g = gram_find(gs, w, n);
    if (g) return g->logp;
    if (n == 1) return uni_logp(gs, w[0], 0);
    struct gram *ctx = gram_find(gs, w, n - 1);
    return (ctx ? ctx->bow : 0) + gram_logp(gs, w + 1, n - 1);
}

#define PS_HINT_DISCOUNT 0.5

/* An ARPA trigram model of the hint's sentences, absolute discounting
 * (PS_HINT_DISCOUNT) with back-off weights that make each context's
 * distribution sum to one, written to out. With a background, the
 * unigrams are lambda x the hint's plus (1 - lambda) x the background's,
 * and the background's words are in the vocabulary too. */
static int hint_arpa(const struct wlist *l, const struct ps_bg *bg, double lambda, FILE *out) {
    static const char *const bos = "<s>", *const eos = "</s>";
    struct grams gs = {.bg = bg, .lambda = lambda};
    const char *seq[3];
    size_t start = 0;
    int rc = 0;
    for (size_t i = 0; i <= l->n && rc == 0; i++) {
        if (i < l->n && l->w[i]) continue;
        /* the sentence l->w[start..i) */
        size_t len = i - start + 2;
        for (size_t k = 0; k < len && rc == 0; k++) {
            const char *cur = k == 0 ? bos : k == len - 1 ? eos : l->w[start + k - 1];
            const char *p1 = k >= 1 ? (k - 1 == 0 ? bos : l->w[start + k - 2]) : NULL;
            const char *p2 = k >= 2 ? (k - 2 == 0 ? bos : l->w[start + k - 3]) : NULL;
            seq[0] = cur;
            rc |= gram_add(&gs, seq, 1);
            if (p1) {
                seq[0] = p1;
                seq[1] = cur;
                rc |= gram_add(&gs, seq, 2);
            }
            if (p2) {
                seq[0] = p2;
                seq[1] = p1;
                seq[2] = cur;
                rc |= gram_add(&gs, seq, 3);
            }
        }
        start = i + 1;
    }
    if (rc != 0) {
        free(gs.g);
        return -1;
    }
    size_t nn[4] = {0}, extra = 0;
    for (size_t i = 0; i < gs.n; i++) {
        nn[gs.g[i].n]++;
        if (gs.g[i].n == 1 && strcmp(gs.g[i].w[0], bos) != 0) gs.total += gs.g[i].count;
    }
    for (size_t i = 0; i < gs.n; i++)
        if (gs.g[i].n == 1)
            gs.g[i].logp = strcmp(gs.g[i].w[0], bos) == 0 ? -99 : uni_logp(&gs, gs.g[i].w[0], gs.g[i].count);
    for (size_t i = 0; bg && i < bg->n; i++) {
        const char *w = bg->w[i];
        extra += !gram_find(&gs, &w, 1);
    }
    /* higher orders: discounted counts over the context's count; then each
     * context's back-off weight gives the rest to the lower order */
    for (int order = 2; order <= 3; order++) {
        for (size_t i = 0; i < gs.n; i++) {
            struct gram *g = &gs.g[i];
            if (g->n != order) continue;
            unsigned ctx = 0;
            for (size_t j = 0; j < gs.n; j++)
                if (gs.g[j].n == order && same_gram(&gs.g[j], g->w, order - 1)) ctx += gs.g[j].count;
            g->logp = log10(((double)g->count - PS_HINT_DISCOUNT) / ctx);
        }
        for (size_t i = 0; i < gs.n; i++) {
            struct gram *c = &gs.g[i];
            if (c->n != order - 1) continue;
            double seen = 0, lower = 0;
            int any = 0;
            for (size_t j = 0; j < gs.n; j++) {
                struct gram *g = &gs.g[j];
                if (g->n != order || !same_gram(g, c->w, order - 1)) continue;
                any = 1;
                seen += pow(10, g->logp);
                lower += pow(10, gram_logp(&gs, g->w + 1, order - 1));
            }
            if (!any) continue;
            double left = 1 - seen, room = 1 - lower;
            c->bow = left > 1e-9 && room > 1e-9 ? log10(left / room) : -99;
        }
    }
    fprintf(out, "\\data\\\nngram 1=%zu\nngram 2=%zu\nngram 3=%zu\n", nn[1] + extra, nn[2], nn[3]);
    for (int order = 1; order <= 3; order++) {
        fprintf(out, "\n\\%d-grams:\n", order);
        for (size_t i = 0; i < gs.n; i++) {
            struct gram *g = &gs.g[i];
            if (g->n != order) continue;
            fprintf(out, "%.4f", g->logp);
            for (int k = 0; k < order; k++) fprintf(out, " %s", g->w[k]);
            if (order < 3) fprintf(out, " %.4f", g->bow);
            fputc('\n', out);
        }
        for (size_t i = 0; order == 1 && bg && i < bg->n; i++) {
            const char *w = bg->w[i];
            if (!gram_find(&gs, &w, 1)) fprintf(out, "%.4f %s 0.0000\n", uni_logp(&gs, w, 0), w);
        }
    }
    fputs("\n\\end\\\n", out);
    free(gs.g);
    return ferror(out) ? -1 : 0;
}

struct bg_cand {
    double      p;
    const char *w;               /* borrowed from the model */
};

static int cmp_cand(const void *a, const void *b) {
    const struct bg_cand *x = a, *y = b;
    return x->p > y->p ? -1 : x->p < y->p;
}

static int cmp_cand_word(const void *a, const void *b) {
    return strcmp(((const struct bg_cand *)a)->w, ((const struct bg_cand *)b)->w);
}

/* The background of this decoder's hint models: the k most likely words of
 * the general model that the dictionary knows. */
static int bg_build(struct ps_instance *in, size_t k, struct ps_bg *bg) {
    ngram_model_t *lm = ps_get_lm(in->ps, in->general);
    if (!lm) return -1;
    size_t nu = ngram_model_get_counts(lm)[0], n = 0;
    struct bg_cand *c = malloc((nu ? nu : 1) * sizeof *c);
    if (!c) return -1;
    logmath_t *lmath = ps_get_logmath(in->ps);
    for (size_t wid = 0; wid < nu; wid++) {
        const char *w = ngram_word(lm, (int32)wid);
        if (!w || is_filler(in, w) || strchr(w, '(')) continue;
        const char *one[1] = {w};
        double p = logmath_exp(lmath, ngram_prob(lm, one, 1));
        if (p > 0) c[n++] = (struct bg_cand){p, w};
    }
    qsort(c, n, sizeof *c, cmp_cand);
    bg->w = calloc(k, sizeof *bg->w);
    bg->p = calloc(k, sizeof *bg->p);
    if (!bg->w || !bg->p) {
        free(c);
        return -1;
    }
    double sum = 0;
    for (size_t i = 0; i < n && bg->n < k; i++) {
        char *phones = ps_lookup_word(in->ps, c[i].w);
        if (!phones) continue;
        free(phones);
        char *w = strdup(c[i].w);
        if (!w) break;
        bg->w[bg->n] = w;
        bg->p[bg->n++] = c[i].p;
        sum += c[i].p;
    }
    free(c);
    for (size_t i = 0; i < bg->n; i++) bg->p[i] /= sum;
    /* sorted by word for bsearch, probabilities alongside */
    struct bg_cand *byw = malloc((bg->n ? bg->n : 1) * sizeof *byw);
    if (!byw) return -1;
    for (size_t i = 0; i < bg->n; i++) byw[i] = (struct bg_cand){bg->p[i], bg->w[i]};
    qsort(byw, bg->n, sizeof *byw, cmp_cand_word);
    for (size_t i = 0; i < bg->n; i++) {
        bg->w[i] = (char *)byw[i].w;
        bg->p[i] = byw[i].p;
    }
    free(byw);
    return bg->n ? 0 : -1;
}

static void bg_free(struct ps_bg *bg) {
    for (size_t i = 0; bg->w && i < bg->n; i++) free(bg->w[i]);
    free(bg->w);
    free(bg->p);
    memset(bg, 0, sizeof *bg);
}

/* Builds the search of hint slot h as search h->name: the hint's model read
 * from an in-memory file, with the background words (ASR_PS_HINT_VOCAB),
 * or mixed with the whole general model (0). 0, or 1 when the hint has no
 * word the dictionary knows, or -1. */
static int hint_search_build(struct ps_instance *in, struct ps_hint *h) {
    struct wlist l = {0};
    int rc = hint_words(in, h->text, h->len, &l);
    if (rc != 0) {
        wl_free(&l);
        return rc;
    }
    int fd = memfd_create("asrd-hint-lm", MFD_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        wl_free(&l);
        return -1;
    }
    int mixed = in->bg.n == 0;
    rc = hint_arpa(&l, mixed ? NULL : &in->bg, in->st->hint_weight, f);
    wl_free(&l);
    if (fflush(f) != 0) rc = -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    logmath_t *lmath = ps_get_logmath(in->ps);
    ngram_model_t *text = rc == 0 ? ngram_model_read(in->config, path, NGRAM_ARPA, logmath_retain(lmath)) : NULL;
    fclose(f);
    if (!text) return -1;
    if (!mixed) {
        rc = ps_set_lm(in->ps, h->name, text) == 0 ? 0 : -1;
        ngram_model_free(text); /* the search holds its own reference */
        return rc;
    }
    ngram_model_t *general = ps_get_lm(in->ps, in->general);
    if (!general) {
        ngram_model_free(text);
        return -1;
    }
    /* the set takes a reference to each model */
    ngram_model_t *models[2] = {ngram_model_retain(general), text};
    char *names[2] = {"general", "hint"};
    float32 weights[2] = {(float32)(1.0 - in->st->hint_weight), (float32)in->st->hint_weight};
    ngram_model_t *set = ngram_model_set_init(in->config, models, names, weights, 2);
    if (!set) {
        ngram_model_free(models[0]);
        ngram_model_free(models[1]);
        return -1;
    }
    rc = ps_set_lm(in->ps, h->name, set) == 0 ? 0 : -1;
    ngram_model_free(set); /* the search holds its own reference */
    return rc;
}

static uint64_t hint_hash(const char *s, size_t n) {
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* Selects the search for this window: its hint's (built or from the cache)
 * or the general one. Never fails: a hint without a model decodes with the
 * general search. */
static void select_search(struct ps_instance *in, const struct engine_window *w) {
    const char *name = in->general;
    if (w->hint && w->hint_len && in->st->hint_weight > 0) {
        uint64_t hv = hint_hash(w->hint, w->hint_len);
        size_t slots = (size_t)in->st->hint_cache, victim = 0;
        struct ps_hint *h = NULL;
        for (size_t i = 0; i < slots; i++) {
            struct ps_hint *c = &in->hints[i];
            if (c->text && c->hash == hv && c->len == w->hint_len && memcmp(c->text, w->hint, c->len) == 0) {
                h = c;
                break;
            }
            if (!c->text || (in->hints[victim].text && c->used < in->hints[victim].used)) victim = i;
        }
        if (!h) {
            h = &in->hints[victim];
            if (h->text) {
                if (h->usable) ps_unset_search(in->ps, h->name);
                free(h->text);
                h->text = NULL;
            }
            h->text = malloc(w->hint_len);
            if (h->text) {
                memcpy(h->text, w->hint, w->hint_len);
                h->len = w->hint_len;
                h->hash = hv;
                snprintf(h->name, sizeof h->name, "hint%zu", victim);
                ps_set_search(in->ps, in->general); /* not the one being replaced */
                int rc = hint_search_build(in, h);
                h->usable = rc == 0;
                if (rc < 0) {
                    struct log_line *l = log_begin(LOG_WARN, "pocketsphinx: no model for a hint");
                    if (l) {
                        log_u64(l, "hint_bytes", w->hint_len);
                        log_end(l);
                    }
                }
            }
        }
        if (h->text) {
            h->used = in->decodes;
            if (h->usable) name = h->name;
        }
    }
    if (ps_set_search(in->ps, name) < 0) ps_set_search(in->ps, in->general);
}

/* In the master, before fork: the instance's decoders, index by index. A
 * failure here is reported at once (exit 2) instead of in every worker. */
static int ps_preload(const void *settings, unsigned n) {
    const struct ps_settings *st = settings;
    if (!st || !st->preload || n == 0) return 0;
    err_set_logfp(NULL);
    err_set_callback(ps_log, NULL);
    if (!(preloaded = calloc(n, sizeof *preloaded))) return ASR_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (!(preloaded[i] = build(st))) {
            fprintf(stderr, "asrd: pocketsphinx: decoder %u of %u could not be built (ASR_PS_HMM/LM/DICT)\n", i + 1,
                    n);
            return ASR_E_MODEL_ERROR;
        }
        n_preloaded = i + 1;
    }
    return 0;
}

static void *ps_instance_create(const void *settings, unsigned index) {
    pthread_mutex_lock(&ps_init_lock);
    struct ps_instance *in = NULL;
    if (index < n_preloaded && preloaded[index]) {
        in = preloaded[index];
        preloaded[index] = NULL;
    }
    pthread_mutex_unlock(&ps_init_lock);
    return in ? in : build(settings);
}

static int ps_decode(void *p, const struct engine_window *w, struct engine_output *out) {
    struct ps_instance *in = p;
    if (w->sample_rate != 16000) return ASR_E_MODEL_ERROR;
    if (w->n == 0) return 0;
    in->decodes++;
    select_search(in, w);
    ps_start_stream(in->ps); /* word frames count from this window's first sample */
    if (ps_start_utt(in->ps) < 0) return ASR_E_MODEL_ERROR;
    if (ps_process_raw(in->ps, w->pcm, w->n, FALSE, TRUE) < 0) {
        ps_end_utt(in->ps);
        return ASR_E_MODEL_ERROR;
    }
    if (ps_end_utt(in->ps) < 0) return ASR_E_MODEL_ERROR;
    logmath_t *lmath = ps_get_logmath(in->ps);
    for (ps_seg_t *seg = ps_seg_iter(in->ps); seg; seg = ps_seg_next(seg)) {
        const char *word = ps_seg_word(seg);
        if (!word || is_filler(in, word)) continue;
        size_t len = strlen(word);
        if (len > 3 && word[len - 1] == ')') { /* "read(2)": a pronunciation variant */
            const char *open = strrchr(word, '(');
            if (open && open > word) len = (size_t)(open - word);
        }
        int sf = 0, ef = 0;
        int32 ascr = 0, lscr = 0, lback = 0;
        ps_seg_frames(seg, &sf, &ef);
        int32 post = ps_seg_prob(seg, &ascr, &lscr, &lback);
        double conf = logmath_exp(lmath, post);
        if (conf > 1 && conf < 1.01) conf = 1; /* a posterior of 1.001: rounding in log space */
        if (!(conf >= 0 && conf <= 1)) conf = -1;
        uint64_t start = (uint64_t)(sf > 0 ? sf : 0) * 1000 / (uint64_t)in->frate;
        uint64_t end = (uint64_t)(ef + 1 > 0 ? ef + 1 : 0) * 1000 / (uint64_t)in->frate;
        if (engine_output_word(out, word, len, start, end, (float)conf) != 0) {
            ps_seg_free(seg);
            return ASR_ENOMEM;
        }
    }
    return 0;
}

const struct engine_ops engine_pocketsphinx = {
    .name = "pocketsphinx",
    .abi = ENGINE_ABI,
    .caps = ENGINE_CAP_WINDOWED | ENGINE_CAP_WORD_TIMES | ENGINE_CAP_CONFIDENCE | ENGINE_CAP_HINT,
    .sample_rate = 16000,
    .settings = ps_opts,
    .n_settings = sizeof ps_opts / sizeof ps_opts[0],
    .settings_size = sizeof(struct ps_settings),
    .load = ps_load,
    .preload = ps_preload,
    .instance_create = ps_instance_create,
    .instance_destroy = ps_instance_destroy,
    .decode = ps_decode,
};
