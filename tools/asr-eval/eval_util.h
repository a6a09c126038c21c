/* eval_util: what ps_decode and ps_probe share. Audio files in, a
 * pocketsphinx configuration with the Debian model as default, the filler
 * words of the loaded model, and process measurements (CPU time, RSS/PSS).
 *
 * Tools only: nothing here is part of the server. Functions that can fail
 * for a normal reason (a missing file, an option pocketsphinx refuses) print
 * one line on stderr and return NULL or a negative number; allocation
 * failure aborts (eval_xmalloc), since these are bounded command-line runs. */
#ifndef ASR_EVAL_UTIL_H
#define ASR_EVAL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <pocketsphinx.h>

#define EVAL_MODEL_DIR "/usr/share/pocketsphinx/model/en-us"
#define EVAL_HMM       EVAL_MODEL_DIR "/en-us"
#define EVAL_LM        EVAL_MODEL_DIR "/en-us.lm.bin"
#define EVAL_DICT      EVAL_MODEL_DIR "/cmudict-en-us.dict"

void *eval_xmalloc(size_t n);
void *eval_xcalloc(size_t n, size_t size);
void *eval_xrealloc(void *p, size_t n);
char *eval_xstrdup(const char *s);

/* Parses a decimal integer in [lo, hi] into *out: 0, or -1 (out unchanged). */
int eval_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);
/* Parses a decimal floating-point number: 0, or -1 (out unchanged). */
int eval_parse_double(const char *s, double *out);

/* One audio file, mono 16-bit. */
struct eval_audio {
    int16_t *pcm;        /* samples, owned; free with eval_audio_cleanup */
    size_t   n;          /* samples at pcm */
    unsigned rate;       /* Hz: the WAV header's, or raw_rate for raw files */
    char    *id;         /* basename without extension, owned */
};

/* Reads path: a file ending in .raw or .pcm is headerless s16le at raw_rate;
 * anything else goes through libsndfile (WAV, FLAC, ...) and must be mono.
 * Returns 0, or -1 after printing why. On -1, a is left empty. */
int  eval_audio_read(struct eval_audio *a, const char *path, unsigned raw_rate);
void eval_audio_cleanup(struct eval_audio *a);

/* Routes the library's log through a filter: messages at ERR_WARN and above
 * go to stderr, INFO is dropped unless verbose. Process-wide (sphinxbase
 * keeps the callback in a global). */
void eval_log_init(int verbose);

/* A configuration for ps_init(): -hmm/-lm/-dict of the Debian model, then
 * the pairs in argv ("-name value"), which override a default of the same
 * name. "-lm none" drops the default LM; so does any of -jsgf, -fsg, -kws,
 * -keyphrase, -lmctl, -allphone when -lm is not given explicitly.
 * Returns a new config (cmd_ln_free_r it), or NULL after printing why. */
cmd_ln_t *eval_config_create(int argc, char **argv);

/* The filler words of a decoder's dictionary: the words of its noise
 * dictionary (the file the decoder loaded, -fdict or <hmm>/noisedict) plus
 * the three the dictionary always adds (<s>, </s>, <sil>). The 0.8+5prealpha
 * library has no public way to ask the dictionary (ps_get_dict and dict.h
 * are internal), so the noise dictionary file is read again. */
struct eval_fillers;
struct eval_fillers *eval_fillers_create(ps_decoder_t *ps);
void eval_fillers_destroy(struct eval_fillers *f);
/* 1 if word (with or without a "(2)" variant suffix) is a filler, or the
 * "(NULL)" that FSG searches report for a null transition. */
int  eval_fillers_is(const struct eval_fillers *f, const char *word);

/* CPU seconds (user + system) of the process, or of the calling thread. */
double eval_cpu_process(void);
double eval_cpu_thread(void);
double eval_wall(void);          /* CLOCK_MONOTONIC seconds */
long   eval_peak_rss_kib(void);  /* getrusage ru_maxrss */

/* Memory of a process from /proc/<pid>/smaps_rollup (pid 0: this process),
 * in KiB. Returns 0, or -1 if the file could not be read. */
struct eval_mem {
    long rss, pss, pss_anon, pss_file, shared_clean, shared_dirty,
         private_clean, private_dirty, anonymous;
};
int eval_mem_read(int pid, struct eval_mem *m);

/* Resident KiB of the mappings of one file in this process (summed over
 * /proc/self/smaps entries whose path ends with suffix); 0 if not mapped. */
long eval_mapped_rss_kib(const char *suffix);

#endif
