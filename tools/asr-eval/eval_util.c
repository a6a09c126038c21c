/* eval_util: see eval_util.h. */
#define _GNU_SOURCE
#include "eval_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <sndfile.h>
#include <sphinxbase/err.h>

void *eval_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

void *eval_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

void *eval_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

char *eval_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(eval_xmalloc(n), s, n);
}

int eval_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || v < lo || v > hi) return -1;
    *out = (unsigned)v;
    return 0;
}

int eval_parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno) return -1;
    *out = v;
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static char *path_id(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *id = eval_xstrdup(base);
    char *dot = strrchr(id, '.');
    if (dot && dot != id) *dot = '\0';
    return id;
}

/* Headerless little-endian 16-bit samples; bytes are assembled explicitly so
 * the result does not depend on the host's byte order. */
static int read_raw(struct eval_audio *a, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = eval_xmalloc(cap);
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        if (got == 0) break;
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = eval_xrealloc(buf, cap);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    a->n = len / 2;
    a->pcm = eval_xmalloc(a->n * sizeof(int16_t));
    for (size_t i = 0; i < a->n; i++)
        a->pcm[i] = (int16_t)(uint16_t)(buf[2 * i] | (unsigned)buf[2 * i + 1] << 8);
    free(buf);
    return 0;
}

static int read_sndfile(struct eval_audio *a, const char *path) {
    SF_INFO info;
    memset(&info, 0, sizeof(info));
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) {
        fprintf(stderr, "%s: %s\n", path, sf_strerror(NULL));
        return -1;
    }
    if (info.channels != 1 || info.frames <= 0) {
        fprintf(stderr, "%s: %d channels, %lld frames: want mono audio\n", path,
                info.channels, (long long)info.frames);
        sf_close(sf);
        return -1;
    }
    a->pcm = eval_xmalloc((size_t)info.frames * sizeof(int16_t));
    sf_count_t got = sf_readf_short(sf, a->pcm, info.frames);
    sf_close(sf);
    if (got <= 0) {
        fprintf(stderr, "%s: no samples read\n", path);
        free(a->pcm);
        a->pcm = NULL;
        return -1;
    }
    a->n = (size_t)got;
    a->rate = (unsigned)info.samplerate;
    return 0;
}

int eval_audio_read(struct eval_audio *a, const char *path, unsigned raw_rate) {
    memset(a, 0, sizeof(*a));
    int rc;
    if (ends_with(path, ".raw") || ends_with(path, ".pcm")) {
        a->rate = raw_rate;
        rc = read_raw(a, path);
    } else {
        rc = read_sndfile(a, path);
    }
    if (rc == 0) a->id = path_id(path);
    return rc;
}

void eval_audio_cleanup(struct eval_audio *a) {
    free(a->pcm);
    free(a->id);
    memset(a, 0, sizeof(*a));
}

static int log_verbose;

static void log_cb(void *user_data, err_lvl_t lvl, const char *fmt, ...) {
    (void)user_data;
    if (!log_verbose && lvl < ERR_WARN) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void eval_log_init(int verbose) {
    log_verbose = verbose;
    err_set_callback(log_cb, NULL);
    /* cmd_ln prints its table of settings straight to the log file, not
     * through the callback; NULL disables that file. */
    if (!verbose) err_set_logfp(NULL);
}

/* The options that choose a search other than the default n-gram LM. */
static int is_search_option(const char *name) {
    static const char *const names[] = {"-jsgf", "-fsg", "-kws", "-keyphrase",
                                        "-lmctl", "-allphone"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}

cmd_ln_t *eval_config_create(int argc, char **argv) {
    const char *hmm = EVAL_HMM, *lm = EVAL_LM, *dict = EVAL_DICT;
    int lm_given = 0, other_search = 0;
    char **av = eval_xmalloc(((size_t)argc + 6) * sizeof(char *));
    int n = 0;
    cmd_ln_t *config = NULL;

    if (argc % 2) {
        fprintf(stderr, "pocketsphinx option %s has no value\n", argv[argc - 1]);
        goto done;
    }
    for (int i = 0; i < argc; i += 2) {
        if (strcmp(argv[i], "-hmm") == 0) {
            hmm = argv[i + 1];
        } else if (strcmp(argv[i], "-lm") == 0) {
            lm = argv[i + 1];
            lm_given = 1;
        } else if (strcmp(argv[i], "-dict") == 0) {
            dict = argv[i + 1];
        } else {
            other_search |= is_search_option(argv[i]);
            av[n++] = argv[i];
            av[n++] = argv[i + 1];
        }
    }
    if (strcmp(lm, "none") == 0 || (other_search && !lm_given)) lm = NULL;
    av[n++] = "-hmm";
    av[n++] = (char *)hmm;
    av[n++] = "-dict";
    av[n++] = (char *)dict;
    if (lm) {
        av[n++] = "-lm";
        av[n++] = (char *)lm;
    }
    config = cmd_ln_parse_r(NULL, ps_args(), n, av, TRUE);
    if (!config) fprintf(stderr, "pocketsphinx refused the options\n");
done:
    free(av);
    return config;
}

struct eval_fillers {
    char  **words;       /* owned, each owned */
    size_t  n;
};

static void fillers_add(struct eval_fillers *f, const char *w, size_t len) {
    f->words = eval_xrealloc(f->words, (f->n + 1) * sizeof(char *));
    char *copy = eval_xmalloc(len + 1);
    memcpy(copy, w, len);
    copy[len] = '\0';
    f->words[f->n++] = copy;
}

struct eval_fillers *eval_fillers_create(ps_decoder_t *ps) {
    struct eval_fillers *f = eval_xcalloc(1, sizeof(*f));
    /* dict_init() adds these three to every dictionary as fillers. */
    fillers_add(f, "<s>", 3);
    fillers_add(f, "</s>", 4);
    fillers_add(f, "<sil>", 5);
    cmd_ln_t *config = ps_get_config(ps);
    const char *path = cmd_ln_exists_r(config, "_fdict") ? cmd_ln_str_r(config, "_fdict")
                                                         : NULL;
    if (!path) path = cmd_ln_str_r(config, "-fdict");
    if (!path) return f;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "%s: %s (fillers: only <s> </s> <sil>)\n", path, strerror(errno));
        return f;
    }
    char line[512];
    while (fgets(line, sizeof(line), fp)) {
        char *w = line + strspn(line, " \t");
        size_t len = strcspn(w, " \t\r\n");
        if (len && w[0] != '#') fillers_add(f, w, len);
    }
    fclose(fp);
    return f;
}

void eval_fillers_destroy(struct eval_fillers *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->words[i]);
    free(f->words);
    free(f);
}

int eval_fillers_is(const struct eval_fillers *f, const char *word) {
    /* FSG searches report their null transitions as segments "(NULL)". */
    if (strcmp(word, "(NULL)") == 0) return 1;
    size_t len = strlen(word);
    const char *paren = strrchr(word, '(');
    if (paren && len > 2 && word[len - 1] == ')') len = (size_t)(paren - word);
    for (size_t i = 0; i < f->n; i++)
        if (strlen(f->words[i]) == len && strncmp(f->words[i], word, len) == 0) return 1;
    return 0;
}

static double tv_sec(struct timeval tv) { return (double)tv.tv_sec + tv.tv_usec / 1e6; }

double eval_cpu_process(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return tv_sec(ru.ru_utime) + tv_sec(ru.ru_stime);
}

double eval_cpu_thread(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return tv_sec(ru.ru_utime) + tv_sec(ru.ru_stime);
}

double eval_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

long eval_peak_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int eval_mem_read(int pid, struct eval_mem *m) {
    char path[64];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/smaps_rollup");
    memset(m, 0, sizeof(*m));
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    static const struct { const char *key; size_t off; } keys[] = {
        {"Rss:", offsetof(struct eval_mem, rss)},
        {"Pss:", offsetof(struct eval_mem, pss)},
        {"Pss_Anon:", offsetof(struct eval_mem, pss_anon)},
        {"Pss_File:", offsetof(struct eval_mem, pss_file)},
        {"Shared_Clean:", offsetof(struct eval_mem, shared_clean)},
        {"Shared_Dirty:", offsetof(struct eval_mem, shared_dirty)},
        {"Private_Clean:", offsetof(struct eval_mem, private_clean)},
        {"Private_Dirty:", offsetof(struct eval_mem, private_dirty)},
        {"Anonymous:", offsetof(struct eval_mem, anonymous)},
    };
    char line[256];
    while (fgets(line, sizeof(line), fp)) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            size_t k = strlen(keys[i].key);
            if (strncmp(line, keys[i].key, k) == 0) {
                *(long *)((char *)m + keys[i].off) = strtol(line + k, NULL, 10);
                break;
            }
        }
    }
    fclose(fp);
    return 0;
}

/* /proc/self/smaps: a header line per mapping ("start-end perms offset dev
 * inode path"), then "Key: value kB" lines; the Rss line of a mapping counts
 * when its header named a path with the suffix. */
long eval_mapped_rss_kib(const char *suffix) {
    FILE *fp = fopen("/proc/self/smaps", "r");
    if (!fp) return 0;
    char line[1024];
    int match = 0;
    long total = 0;
    while (fgets(line, sizeof(line), fp)) {
        size_t len = strcspn(line, "\n");
        line[len] = '\0';
        char *colon = strchr(line, ':');
        int is_header = !colon || (line[0] && strchr("0123456789abcdef", line[0]) &&
                                   strchr(line, '-') && strchr(line, '-') < colon);
        if (is_header)
            match = ends_with(line, suffix);
        else if (match && strncmp(line, "Rss:", 4) == 0)
            total += strtol(line + 4, NULL, 10);
    }
    fclose(fp);
    return total;
}
