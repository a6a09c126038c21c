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
 * clear message instead of failing in every pool thread. */
#include "core/engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pocketsphinx.h>
#include <sphinxbase/err.h>

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
    {"ASR_PS_PRELOAD", CONFIG_INT, P(preload), "1", 0, 1, NULL, 0,
     "pocketsphinx: 1 = build every decoder in the master before the workers fork, so their model pages "
     "are shared (copy-on-write); 0 = each worker thread loads its own"},
};
#undef P

/* One decoder; lives on one pool thread. */
struct ps_instance {
    ps_decoder_t *ps;            /* owned */
    cmd_ln_t     *config;        /* owned (ps_init takes its own reference) */
    int           frate;         /* frames per second (-frate, 100) */
    char         *fillers[PS_FILLERS_MAX]; /* owned: words that are not speech */
    size_t        n_fillers;
};

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
    return in;
fail:
    ps_instance_destroy(in);
    return NULL;
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
    .caps = ENGINE_CAP_WINDOWED | ENGINE_CAP_WORD_TIMES | ENGINE_CAP_CONFIDENCE,
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
