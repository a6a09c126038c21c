/* ps_probe: the measurements behind docs/internals/pocketsphinx.md, one
 * subcommand each. Bounded runs on the Debian en-us model; every figure the
 * note quotes comes from here or from ps_decode, through measure.sh.
 *
 *   ps_probe mem FILE                 RSS/PSS of ps_init, a decode, a second
 *                                     decoder; AM / dictionary / LM shares
 *   ps_probe fork N FILE...           N forked children: own decoder after
 *                                     fork, own decoder with a loaded parent,
 *                                     the parent's decoder copy-on-write
 *   ps_probe threads N ITER FILE [--stream MS]
 *                                     one decoder per thread, same file,
 *                                     hypotheses compared with one thread's
 *   ps_probe window FILE [--step MS] [--chunk MS] [--no-redecode]
 *                                     growing-prefix re-decodes vs partial
 *                                     hypotheses of one utterance: cost and
 *                                     stability (LocalAgreement-2)
 *   ps_probe hint FILE TEXT [--weight W]... [--kws-threshold T] [--no-lm-text]
 *                                     the expected text as a hint: default
 *                                     LM, JSGF grammars, keyword spotting,
 *                                     an n-gram from the text
 *   ps_probe cmn X Y Z                how a stream decoder's cepstral mean
 *                                     carries over between utterances, and
 *                                     saving/restoring it
 *   ps_probe lmdict OUT               the dictionary cut to the LM's words
 * Options that start with one dash, before the subcommand, go to
 * pocketsphinx (see eval_config_create), e.g. ps_probe -samprate 8000 mem x.
 *
 * Every decode here is "whole utterance" (ps_process_raw with full_utt =
 * TRUE, batch CMN) unless it says stream: then chunks go in with full_utt =
 * FALSE and the decoder's live CMN carries its mean into the next utterance.
 * Every utterance starts a new stream (ps_start_stream), so word times count
 * from its first sample. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pocketsphinx.h>
#include <sphinxbase/ckd_alloc.h>
#include <sphinxbase/cmn.h>
#include <sphinxbase/feat.h>
#include <sphinxbase/hash_table.h>
#include <sphinxbase/jsgf.h>
#include <sphinxbase/ngram_model.h>

#include "eval_util.h"

static int    ps_argc;        /* pass-through pocketsphinx options */
static char **ps_argv;        /* borrowed from main's argv */

static ps_decoder_t *decoder_create(void) {
    cmd_ln_t *config = eval_config_create(ps_argc, ps_argv);
    if (!config) return NULL;
    ps_decoder_t *ps = ps_init(config);
    cmd_ln_free_r(config);                       /* ps_init keeps its own reference */
    if (!ps) fprintf(stderr, "ps_init failed\n");
    return ps;
}

/* One whole-file utterance in a new stream. Returns the hypothesis (owned by the decoder,
 * valid until its next utterance; "" for none) or NULL on failure. */
static const char *decode_full(ps_decoder_t *ps, const int16_t *pcm, size_t n) {
    ps_start_stream(ps);                         /* times from this audio's start */
    if (ps_start_utt(ps) < 0) return NULL;
    if (ps_process_raw(ps, pcm, n, FALSE, TRUE) < 0) {
        ps_end_utt(ps);
        return NULL;
    }
    if (ps_end_utt(ps) < 0) return NULL;
    const char *hyp = ps_get_hyp(ps, NULL);
    return hyp ? hyp : "";
}

static int read_audio(struct eval_audio *a, const char *path, ps_decoder_t *ps) {
    unsigned rate = (unsigned)cmd_ln_float32_r(ps_get_config(ps), "-samprate");
    if (eval_audio_read(a, path, rate)) return -1;
    if (a->rate != rate) {
        fprintf(stderr, "%s: %u Hz, the decoder wants %u Hz\n", path, a->rate, rate);
        eval_audio_cleanup(a);
        return -1;
    }
    return 0;
}

static void mem_print(const char *label, const struct eval_mem *m, const struct eval_mem *base) {
    printf("%-34s rss %7ld  pss %7ld  anon %7ld  file-backed rss %6ld   delta: rss %+7ld pss %+7ld anon %+7ld\n",
           label, m->rss, m->pss, m->anonymous, m->rss - m->anonymous,
           m->rss - base->rss, m->pss - base->pss, m->anonymous - base->anonymous);
}

/* ---- words ---------------------------------------------------------- */

struct words {
    char  *buf;     /* owned copy of the text, split in place */
    char **w;       /* owned array of pointers into buf */
    size_t n;
};

static void words_split(struct words *ws, const char *text) {
    ws->buf = eval_xstrdup(text ? text : "");
    ws->w = eval_xmalloc((strlen(ws->buf) / 2 + 1) * sizeof(char *));
    ws->n = 0;
    for (char *p = ws->buf; *p;) {
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        ws->w[ws->n++] = p;
        while (*p && *p != ' ') p++;
    }
}

static void words_cleanup(struct words *ws) {
    free(ws->buf);
    free(ws->w);
}

/* Length, in words, of the longest common prefix. */
static size_t lcp(const struct words *a, const struct words *b) {
    size_t i = 0;
    while (i < a->n && i < b->n && strcmp(a->w[i], b->w[i]) == 0) i++;
    return i;
}

/* ---- mem ------------------------------------------------------------ */

/* Writes a dictionary of the few words given, their lines copied from the
 * Debian dictionary, to a temporary file. Returns its path (owned) or NULL. */
static char *tiny_dict_create(const char *const *want, size_t nwant) {
    char *path = eval_xstrdup("/tmp/ps_probe_dict.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    FILE *out = fdopen(fd, "w"), *in = fopen(EVAL_DICT, "r");
    char line[1024];
    while (in && fgets(line, sizeof(line), in)) {
        size_t len = strcspn(line, " \t");
        for (size_t i = 0; i < nwant; i++)
            if (strlen(want[i]) == len && strncmp(line, want[i], len) == 0) fputs(line, out);
    }
    if (in) fclose(in);
    fclose(out);
    return path;
}

/* One configuration in a fresh child: memory after ps_init and after one
 * decode, relative to the child's own start. */
static void mem_variant(const char *label, char **args, int nargs, const char *file) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return;
    }
    if (pid == 0) {
        struct eval_mem m0, m1, m2;
        eval_mem_read(0, &m0);
        cmd_ln_t *config = eval_config_create(nargs, args);
        ps_decoder_t *ps = config ? ps_init(config) : NULL;
        if (!ps) _exit(1);
        eval_mem_read(0, &m1);
        char l1[96];
        snprintf(l1, sizeof(l1), "%s: ps_init", label);
        mem_print(l1, &m1, &m0);
        if (file && cmd_ln_str_r(config, "-lm")) {
            struct eval_audio a;
            if (read_audio(&a, file, ps) == 0) {
                decode_full(ps, a.pcm, a.n);
                eval_audio_cleanup(&a);
                eval_mem_read(0, &m2);
                snprintf(l1, sizeof(l1), "%s: + one decode", label);
                mem_print(l1, &m2, &m0);
            }
        }
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
}

static int cmd_mem(int argc, char **argv) {
    if (argc != 1) return -1;
    const char *file = argv[0];
    printf("== breakdown: one configuration per fresh child process (KiB)\n");
    static const char *const few[] = {"go", "forward", "ten", "meters", "he", "was", "not"};
    char *tiny = tiny_dict_create(few, sizeof(few) / sizeof(few[0]));
    if (!tiny) {
        perror("mkstemp");
        return 1;
    }
    char *a_am[] = {"-dict", tiny, "-lm", "none"};
    char *a_dict[] = {"-lm", "none"};
    mem_variant("A  AM + 7-word dict, no LM", a_am, 4, NULL);
    mem_variant("B  AM + cmudict, no LM", a_dict, 2, NULL);
    mem_variant("C  AM + cmudict + en-us LM", NULL, 0, file);
    unlink(tiny);
    free(tiny);

    /* The LM file on its own, outside any decoder. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct eval_mem m0, m1;
        eval_mem_read(0, &m0);
        cmd_ln_t *config = eval_config_create(0, NULL);
        logmath_t *lmath = logmath_init(1.0001, 0, 0);
        ngram_model_t *lm = ngram_model_read(config, EVAL_LM, NGRAM_AUTO, lmath);
        if (!lm) _exit(1);
        eval_mem_read(0, &m1);
        mem_print("L  en-us.lm.bin alone (ngram_model_read)", &m1, &m0);
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);

    printf("== two decoders in one process, same config object (KiB)\n");
    struct eval_mem m0, m1, m2, m3, m4, m5;
    eval_mem_read(0, &m0);
    mem_print("start", &m0, &m0);
    cmd_ln_t *config = eval_config_create(ps_argc, ps_argv);
    if (!config) return 1;
    double c0 = eval_cpu_process();
    ps_decoder_t *ps1 = ps_init(config);
    double c1 = eval_cpu_process();
    if (!ps1) return 1;
    eval_mem_read(0, &m1);
    mem_print("decoder 1: ps_init", &m1, &m0);
    printf("   mapped files of decoder 1 (rss KiB): sendump %ld, mdef %ld, means %ld, "
           "en-us.lm.bin %ld, cmudict %ld\n",
           eval_mapped_rss_kib("/sendump"), eval_mapped_rss_kib("/mdef"),
           eval_mapped_rss_kib("/means"), eval_mapped_rss_kib("/en-us.lm.bin"),
           eval_mapped_rss_kib("/cmudict-en-us.dict"));
    struct eval_audio a;
    if (read_audio(&a, file, ps1)) return 1;
    decode_full(ps1, a.pcm, a.n);
    eval_mem_read(0, &m2);
    mem_print("decoder 1: + one decode", &m2, &m1);
    double c2 = eval_cpu_process();
    ps_decoder_t *ps2 = ps_init(config);
    double c3 = eval_cpu_process();
    if (!ps2) return 1;
    eval_mem_read(0, &m3);
    mem_print("decoder 2: ps_init (same config)", &m3, &m2);
    decode_full(ps2, a.pcm, a.n);
    eval_mem_read(0, &m4);
    mem_print("decoder 2: + one decode", &m4, &m3);
    printf("   ps_init CPU s: decoder 1 %.3f, decoder 2 %.3f\n", c1 - c0, c3 - c2);
    printf("   sendump mapped rss now %ld KiB (both decoders map it)\n",
           eval_mapped_rss_kib("/sendump"));
    ps_free(ps2);
    ps_free(ps1);
    eval_mem_read(0, &m5);
    mem_print("both ps_free'd", &m5, &m0);
    malloc_trim(0);
    eval_mem_read(0, &m5);
    mem_print("  + malloc_trim(0)", &m5, &m0);
    eval_audio_cleanup(&a);
    cmd_ln_free_r(config);
    return 0;
}

/* ---- fork ----------------------------------------------------------- */

enum fork_mode { FORK_FRESH, FORK_OWN, FORK_COW };
static const char *const fork_names[] = {
    "fresh: parent loads nothing, each child ps_init after fork",
    "own:   parent loaded a decoder, each child ps_init its own",
    "cow:   parent loaded a decoder, children decode with it (copy-on-write)",
};

/* A child: get a decoder (its own, or the inherited one), decode the files,
 * report CPU and the last hypothesis on the ready pipe, then wait until the
 * leader has measured us (the go pipe closes) so that all children are
 * alive at measurement. */
static void fork_child(enum fork_mode mode, ps_decoder_t *inherited, char **files, int nfiles,
                       int ready_w, int go_r) {
    ps_decoder_t *ps = mode == FORK_COW ? inherited : decoder_create();
    char msg[512] = "ERROR";
    double cpu = 0;
    for (int i = 0; ps && i < nfiles; i++) {
        struct eval_audio a;
        if (read_audio(&a, files[i], ps)) break;
        double c0 = eval_cpu_process();
        const char *hyp = decode_full(ps, a.pcm, a.n);
        cpu += eval_cpu_process() - c0;
        snprintf(msg, sizeof(msg), "%.3f\t%s", cpu, hyp ? hyp : "(failed)");
        eval_audio_cleanup(&a);
    }
    size_t len = strlen(msg) + 1;
    if (write(ready_w, msg, len) != (ssize_t)len) _exit(1);
    char c;
    while (read(go_r, &c, 1) > 0) {}
    _exit(0);
}

static void fork_scenario(enum fork_mode mode, int n, char **files, int nfiles) {
    printf("== %s (N=%d)\n", fork_names[mode], n);
    fflush(stdout);
    pid_t leader = fork();
    if (leader != 0) {
        waitpid(leader, NULL, 0);
        return;
    }
    ps_decoder_t *ps = NULL;
    if (mode != FORK_FRESH) {
        ps = decoder_create();
        if (!ps) _exit(1);
        for (int i = 0; i < nfiles; i++) {            /* warm: buffers grown */
            struct eval_audio a;
            if (read_audio(&a, files[i], ps)) _exit(1);
            const char *hyp = decode_full(ps, a.pcm, a.n);
            if (i == nfiles - 1) printf("parent, last hypothesis: %s\n", hyp ? hyp : "(failed)");
            eval_audio_cleanup(&a);
        }
    }
    int ready[2], go[2];
    if (pipe(ready) || pipe(go)) _exit(1);
    pid_t *kids = eval_xmalloc((size_t)n * sizeof(pid_t));
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(ready[0]);
            close(go[1]);
            fork_child(mode, ps, files, nfiles, ready[1], go[0]);
        }
    }
    close(ready[1]);
    close(go[0]);
    /* Messages are under PIPE_BUF, so each arrives whole; read N of them. */
    char buf[4096];
    size_t have = 0;
    int got = 0;
    while (got < n) {
        ssize_t r = read(ready[0], buf + have, sizeof(buf) - 1 - have);
        if (r <= 0) break;
        have += (size_t)r;
        char *p = buf, *end = buf + have;
        for (char *z = memchr(p, '\0', (size_t)(end - p)); z;
             z = memchr(p, '\0', (size_t)(end - p))) {
            printf("child %d: decode cpu_s, last hypothesis: %s\n", got, p);
            got++;
            p = z + 1;
        }
        have = (size_t)(end - p);
        memmove(buf, p, have);
    }
    struct eval_mem m, total = {0};
    eval_mem_read(0, &m);
    printf("%-10s rss %7s pss %7s anon %7s private_dirty %7s shared_clean %7s (KiB)\n", "process",
           "", "", "", "", "");
    printf("%-10s %11ld %11ld %11ld %21ld %20ld\n", "parent", m.rss, m.pss, m.anonymous,
           m.private_dirty, m.shared_clean);
    total.pss = m.pss;
    total.rss = m.rss;
    for (int i = 0; i < n; i++) {
        eval_mem_read(kids[i], &m);
        char name[24];
        snprintf(name, sizeof(name), "child %d", i);
        printf("%-10s %11ld %11ld %11ld %21ld %20ld\n", name, m.rss, m.pss, m.anonymous,
               m.private_dirty, m.shared_clean);
        total.pss += m.pss;
        total.rss += m.rss;
    }
    printf("total PSS of parent + %d children: %ld KiB (%.1f MiB); sum of RSS %ld KiB\n", n,
           total.pss, total.pss / 1024.0, total.rss);
    fflush(stdout);
    close(go[1]);
    for (int i = 0; i < n; i++) waitpid(kids[i], NULL, 0);
    free(kids);
    _exit(0);
}

static int cmd_fork(int argc, char **argv) {
    unsigned n;
    if (argc < 2 || eval_parse_uint(argv[0], 1, 16, &n)) return -1;
    for (int mode = FORK_FRESH; mode <= FORK_COW; mode++)
        fork_scenario((enum fork_mode)mode, (int)n, argv + 1, argc - 1);
    return 0;
}

/* ---- threads -------------------------------------------------------- */

struct thread_job {
    pthread_t          tid;
    int                index;
    int                iters;
    unsigned           stream_ms;    /* 0: whole utterance */
    const struct eval_audio *audio;  /* borrowed, shared read-only */
    pthread_barrier_t *barrier;      /* borrowed */
    char             **hyps;         /* owned: one per iteration */
    double             cpu_s;        /* this thread's CPU for the decodes */
    int                failed;
};

static const char *decode_stream(ps_decoder_t *ps, const struct eval_audio *a, unsigned ms) {
    size_t step = (size_t)a->rate * ms / 1000;
    ps_start_stream(ps);
    if (ps_start_utt(ps) < 0) return NULL;
    for (size_t off = 0; off < a->n; off += step) {
        size_t k = a->n - off < step ? a->n - off : step;
        if (ps_process_raw(ps, a->pcm + off, k, FALSE, FALSE) < 0) {
            ps_end_utt(ps);
            return NULL;
        }
    }
    if (ps_end_utt(ps) < 0) return NULL;
    const char *hyp = ps_get_hyp(ps, NULL);
    return hyp ? hyp : "";
}

/* Each thread makes its own decoder (ps_init runs concurrently in all of
 * them), waits for the others, then decodes the same audio iters times. */
static void *thread_main(void *arg) {
    struct thread_job *job = arg;
    ps_decoder_t *ps = decoder_create();
    if (job->barrier) pthread_barrier_wait(job->barrier);
    if (!ps) {
        job->failed = 1;
        for (int i = 0; i < job->iters; i++) job->hyps[i] = eval_xstrdup("(no decoder)");
        return NULL;
    }
    double c0 = eval_cpu_thread();
    for (int i = 0; i < job->iters; i++) {
        const char *hyp = job->stream_ms ? decode_stream(ps, job->audio, job->stream_ms)
                                         : decode_full(ps, job->audio->pcm, job->audio->n);
        job->hyps[i] = eval_xstrdup(hyp ? hyp : "(failed)");
    }
    job->cpu_s = eval_cpu_thread() - c0;
    ps_free(ps);
    return NULL;
}

static int cmd_threads(int argc, char **argv) {
    unsigned stream_ms = 0, un, uiters;
    if (argc == 5 && strcmp(argv[3], "--stream") == 0) {
        if (eval_parse_uint(argv[4], 10, 10000, &stream_ms)) return -1;
        argc = 3;
    }
    if (argc != 3 || eval_parse_uint(argv[0], 1, 16, &un) ||
        eval_parse_uint(argv[1], 1, 100, &uiters))
        return -1;
    int n = (int)un, iters = (int)uiters;
    ps_decoder_t *probe = decoder_create();
    struct eval_audio a;
    if (!probe || read_audio(&a, argv[2], probe)) return 1;
    ps_free(probe);
    double secs = (double)a.n / a.rate;

    /* Reference: the same sequence in one thread, nothing else running. */
    struct thread_job ref = {.index = -1, .iters = iters, .stream_ms = stream_ms, .audio = &a};
    ref.hyps = eval_xcalloc((size_t)iters, sizeof(char *));
    double w0 = eval_wall();
    thread_main(&ref);
    double ref_wall = eval_wall() - w0;
    printf("mode %s; reference (1 thread): %d x %.2f s audio, cpu %.3f s, wall %.3f s, "
           "%.2f audio-s per wall-s\n",
           stream_ms ? "stream" : "whole utterance", iters, secs, ref.cpu_s, ref_wall,
           iters * secs / ref_wall);
    for (int i = 0; i < iters; i++) printf("  ref iter %d: %s\n", i, ref.hyps[i]);

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    struct thread_job *jobs = eval_xcalloc((size_t)n, sizeof(*jobs));
    w0 = eval_wall();
    for (int t = 0; t < n; t++) {
        jobs[t] = (struct thread_job){.index = t, .iters = iters, .stream_ms = stream_ms,
                                      .audio = &a, .barrier = &barrier};
        jobs[t].hyps = eval_xcalloc((size_t)iters, sizeof(char *));
        if (pthread_create(&jobs[t].tid, NULL, thread_main, &jobs[t]) != 0) {
            perror("pthread_create");
            abort();                     /* the barrier would wait forever */
        }
    }
    int mismatches = 0;
    double cpu = 0;
    for (int t = 0; t < n; t++) {
        pthread_join(jobs[t].tid, NULL);
        cpu += jobs[t].cpu_s;
    }
    double wall = eval_wall() - w0;
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < iters; i++) {
            if (!jobs[t].hyps[i] || strcmp(jobs[t].hyps[i], ref.hyps[i]) != 0) {
                mismatches++;
                printf("  MISMATCH thread %d iter %d: %s\n", t, i,
                       jobs[t].hyps[i] ? jobs[t].hyps[i] : "(none)");
            }
            free(jobs[t].hyps[i]);
        }
        free(jobs[t].hyps);
    }
    printf("%d threads x %d decodes: %d hypotheses differ from the reference; "
           "decode cpu %.3f s, wall %.3f s (incl. concurrent ps_init), "
           "%.2f audio-s per wall-s\n",
           n, iters, mismatches, cpu, wall, n * iters * secs / wall);
    for (int i = 0; i < iters; i++) free(ref.hyps[i]);
    free(ref.hyps);
    free(jobs);
    pthread_barrier_destroy(&barrier);
    eval_audio_cleanup(&a);
    return mismatches ? 3 : 0;
}

/* ---- window --------------------------------------------------------- */

/* A sequence of hypotheses over growing audio, and the final one. */
struct series {
    const char *name;
    size_t      n;
    char      **hyp;        /* owned */
    unsigned   *t_ms;       /* audio ms seen when hyp[i] was taken */
    char       *final;      /* owned: the utterance's final hypothesis */
    long       *final_end;  /* owned: end ms of each real word of final */
    size_t      final_n;
};

static void series_add(struct series *s, unsigned t_ms, const char *hyp) {
    s->hyp = eval_xrealloc(s->hyp, (s->n + 1) * sizeof(char *));
    s->t_ms = eval_xrealloc(s->t_ms, (s->n + 1) * sizeof(unsigned));
    s->hyp[s->n] = eval_xstrdup(hyp ? hyp : "");
    s->t_ms[s->n++] = t_ms;
}

static void series_final(struct series *s, ps_decoder_t *ps, const struct eval_fillers *f) {
    const char *hyp = ps_get_hyp(ps, NULL);
    s->final = eval_xstrdup(hyp ? hyp : "");
    int frate = cmd_ln_int32_r(ps_get_config(ps), "-frate");
    for (ps_seg_t *seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
        if (eval_fillers_is(f, ps_seg_word(seg))) continue;
        int sf, ef;
        ps_seg_frames(seg, &sf, &ef);
        s->final_end = eval_xrealloc(s->final_end, (s->final_n + 1) * sizeof(long));
        s->final_end[s->final_n++] = (long)(ef + 1) * 1000 / frate;
    }
}

static void series_cleanup(struct series *s) {
    for (size_t i = 0; i < s->n; i++) free(s->hyp[i]);
    free(s->hyp);
    free(s->t_ms);
    free(s->final);
    free(s->final_end);
}

/* Aligns words a (n of them) with the best-matching prefix of b (edit
 * distance, any prefix length of b). Returns the distance; match[i] is the
 * index in b that a[i] equals in that alignment, or -1. */
static size_t prefix_align(char **a, size_t n, char **b, size_t m, long *match) {
    size_t *d = eval_xmalloc((n + 1) * (m + 1) * sizeof(size_t));
#define D(i, j) d[(i) * (m + 1) + (j)]
    for (size_t i = 0; i <= n; i++) D(i, 0) = i;
    for (size_t j = 0; j <= m; j++) D(0, j) = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t sub = D(i - 1, j - 1) + (strcmp(a[i - 1], b[j - 1]) != 0);
            size_t del = D(i - 1, j) + 1, ins = D(i, j - 1) + 1;
            D(i, j) = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    size_t best = 0;
    for (size_t j = 1; j <= m; j++)
        if (D(n, j) < D(n, best)) best = j;
    size_t dist = D(n, best), i = n, j = best;
    for (size_t k = 0; k < n; k++) match[k] = -1;
    while (i > 0 && j > 0) {
        int same = strcmp(a[i - 1], b[j - 1]) == 0;
        if (D(i, j) == D(i - 1, j - 1) + !same) {
            if (same) match[i - 1] = (long)(j - 1);
            i--, j--;
        } else if (D(i, j) == D(i - 1, j) + 1) {
            i--;
        } else {
            j--;
        }
    }
#undef D
    free(d);
    return dist;
}

/* How stable the hypotheses of a series are, and what LocalAgreement-2
 * would have shown: a word is committed once two consecutive hypotheses
 * agree on it and on everything before it; committed words are never taken
 * back. The committed words are then aligned with the utterance's final
 * hypothesis: how many the final contradicts, and how long after the end of
 * each word (in the final's segmentation) it was committed. */
static void series_report(const struct series *s) {
    struct words prev = {0}, cur, fin;
    size_t retracted = 0, unstable_steps = 0, committed = 0;
    char **commit_w = NULL;
    unsigned *commit_t = NULL;
    words_split(&fin, s->final);
    for (size_t k = 0; k < s->n; k++) {
        words_split(&cur, s->hyp[k]);
        if (k > 0) {
            size_t l = lcp(&prev, &cur);
            if (l < prev.n) {
                unstable_steps++;
                retracted += prev.n - l;
            }
            /* Extend the committed prefix only where cur still agrees with it. */
            size_t agree = 0;
            while (agree < committed && agree < cur.n && strcmp(commit_w[agree], cur.w[agree]) == 0)
                agree++;
            if (agree == committed && l > committed) {
                commit_w = eval_xrealloc(commit_w, l * sizeof(char *));
                commit_t = eval_xrealloc(commit_t, l * sizeof(unsigned));
                for (size_t i = committed; i < l; i++) {
                    commit_w[i] = eval_xstrdup(cur.w[i]);
                    commit_t[i] = s->t_ms[k];
                }
                committed = l;
            }
            words_cleanup(&prev);
        }
        prev = cur;
    }
    if (s->n) words_cleanup(&prev);
    long *match = eval_xmalloc((committed + 1) * sizeof(long));
    size_t wrong = prefix_align(commit_w, committed, fin.w, fin.n, match);
    double lat_sum = 0, lat_max = 0;
    size_t lat_n = 0;
    if (s->final_n == fin.n) {
        for (size_t i = 0; i < committed; i++) {
            if (match[i] < 0) continue;
            double l = ((double)commit_t[i] - (double)s->final_end[match[i]]) / 1000.0;
            lat_sum += l;
            if (l > lat_max) lat_max = l;
            lat_n++;
        }
    }
    printf("stability %-14s steps %2zu, steps that changed shown words %2zu, words retracted %3zu; "
           "LA-2 committed %2zu words (final has %2zu), final contradicts %zu (edit distance)",
           s->name, s->n, unstable_steps, retracted, committed, fin.n, wrong);
    if (lat_n)
        printf("; commit delay after word end: mean %.2f s, max %.2f s", lat_sum / lat_n, lat_max);
    printf("\n");
    free(match);
    for (size_t i = 0; i < committed; i++) free(commit_w[i]);
    free(commit_w);
    free(commit_t);
    words_cleanup(&fin);
}

/* One utterance in chunk_ms pieces (full_utt = FALSE), ps_get_hyp every
 * step_ms of audio and at the end of the audio, then ps_end_utt. */
static void stream_series(ps_decoder_t *ps, const struct eval_audio *a, unsigned chunk_ms,
                          unsigned step_ms, struct series *s, const struct eval_fillers *f) {
    size_t chunk = (size_t)a->rate * chunk_ms / 1000, mark = (size_t)a->rate * step_ms / 1000;
    size_t next = mark;
    double cpu_proc = 0, cpu_hyp = 0;
    unsigned nhyp = 0;
    ps_start_stream(ps);
    ps_start_utt(ps);
    for (size_t off = 0; off < a->n; off += chunk) {
        size_t k = a->n - off < chunk ? a->n - off : chunk;
        double c0 = eval_cpu_process();
        ps_process_raw(ps, a->pcm + off, k, FALSE, FALSE);
        cpu_proc += eval_cpu_process() - c0;
        if (off + k >= next || off + k == a->n) {
            c0 = eval_cpu_process();
            const char *hyp = ps_get_hyp(ps, NULL);
            cpu_hyp += eval_cpu_process() - c0;
            nhyp++;
            unsigned t = (unsigned)((off + k) * 1000 / a->rate);
            series_add(s, t, hyp);
            printf("%-14s %6u ms  %s\n", s->name, t, hyp ? hyp : "");
            while (next <= off + k) next += mark;
        }
    }
    double c0 = eval_cpu_process();
    ps_end_utt(ps);
    series_final(s, ps, f);
    double cpu_final = eval_cpu_process() - c0;
    printf("%-14s final    %s\n", s->name, s->final);
    printf("cost %-14s process_raw %.3f s (%.3f per audio s), %u ps_get_hyp %.4f s "
           "(%.2f ms each), end_utt + final hyp %.3f s; total %.3f s\n",
           s->name, cpu_proc, cpu_proc / ((double)a->n / a->rate), nhyp, cpu_hyp,
           nhyp ? 1000 * cpu_hyp / nhyp : 0.0, cpu_final, cpu_proc + cpu_hyp + cpu_final);
}

static int cmd_window(int argc, char **argv) {
    unsigned step_ms = 1000, chunk_ms = 100;
    int redecode = 1;
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--no-redecode") == 0) {
            redecode = 0;
            continue;
        }
        if (strcmp(argv[i], "--step") == 0 && i + 1 < argc) {
            if (eval_parse_uint(argv[++i], 100, 60000, &step_ms)) return -1;
        } else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
            if (eval_parse_uint(argv[++i], 10, 60000, &chunk_ms)) return -1;
        }
        else if (!file)
            file = argv[i];
        else
            return -1;
    }
    if (!file || chunk_ms > step_ms) return -1;
    ps_decoder_t *ps = decoder_create();
    struct eval_audio a;
    if (!ps || read_audio(&a, file, ps)) return 1;
    struct eval_fillers *f = eval_fillers_create(ps);
    double secs = (double)a.n / a.rate;

    double c0 = eval_cpu_process();
    const char *full = decode_full(ps, a.pcm, a.n);
    double cpu_full = eval_cpu_process() - c0;
    printf("file %s: %.2f s; whole-file decode cpu %.3f s: %s\n", a.id, secs, cpu_full,
           full ? full : "(failed)");

    /* Growing prefixes, each its own utterance with batch CMN. */
    struct series pre = {.name = "re-decode"};
    double cpu_pre = 0;
    size_t mark = (size_t)a.rate * step_ms / 1000;
    for (size_t len = mark; redecode; len += mark) {
        if (len > a.n) len = a.n;
        c0 = eval_cpu_process();
        const char *hyp = decode_full(ps, a.pcm, len);
        double c = eval_cpu_process() - c0;
        cpu_pre += c;
        unsigned t = (unsigned)(len * 1000 / a.rate);
        series_add(&pre, t, hyp);
        printf("%-14s %6u ms  cpu %.3f  %s\n", pre.name, t, c, hyp ? hyp : "");
        if (len == a.n) break;
    }
    if (redecode) {
        series_final(&pre, ps, f);         /* the last prefix is the whole file */
        printf("cost %-14s %zu decodes, cpu %.3f s = %.1f x the whole-file decode "
               "(%.3f per audio s of the file)\n",
               pre.name, pre.n, cpu_pre, cpu_full > 0 ? cpu_pre / cpu_full : 0.0, cpu_pre / secs);
    }

    /* Partial hypotheses of one streamed utterance: a fresh decoder (live
     * CMN starts from -cmninit), then the same decoder again (CMN adapted). */
    ps_decoder_t *ps2 = decoder_create();
    if (!ps2) return 1;
    struct series cold = {.name = "partial-cold"}, warm = {.name = "partial-warm"};
    stream_series(ps2, &a, chunk_ms, step_ms, &cold, f);
    stream_series(ps2, &a, chunk_ms, step_ms, &warm, f);
    if (redecode) series_report(&pre);
    series_report(&cold);
    series_report(&warm);
    series_cleanup(&pre);
    series_cleanup(&cold);
    series_cleanup(&warm);
    eval_fillers_destroy(f);
    ps_free(ps2);
    ps_free(ps);
    eval_audio_cleanup(&a);
    return 0;
}

/* ---- hint ----------------------------------------------------------- */

/* Lower case, letters, digits and apostrophes; the words of the hint. */
static void hint_words(struct words *ws, const char *text) {
    char *norm = eval_xstrdup(text);
    size_t j = 0;
    for (size_t i = 0; norm[i]; i++) {
        unsigned char c = (unsigned char)norm[i];
        if (isalnum(c) || c == '\'')
            norm[j++] = (char)tolower(c);
        else if (j && norm[j - 1] != ' ')
            norm[j++] = ' ';
    }
    norm[j] = '\0';
    words_split(ws, norm);
    free(norm);
}

static char *join(const struct words *ws, const char *sep, const char *open, const char *close) {
    size_t len = 1;
    for (size_t i = 0; i < ws->n; i++)
        len += strlen(ws->w[i]) + strlen(sep) + strlen(open) + strlen(close);
    char *out = eval_xmalloc(len);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ws->n; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%s%s%s", i ? sep : "", open,
                                 ws->w[i], close);
    return out;
}

/* A back-off bigram LM of the text in ARPA format, to a temporary file:
 * unigrams add-one smoothed over the text's words and </s>; bigrams of the
 * text with absolute discounting (D = 0.5), the mass left over going to the
 * unigrams through each history's back-off weight. */
static char *arpa_create(const struct words *ws) {
    size_t n = ws->n, v = 0;
    const char **vocab = eval_xmalloc((n + 2) * sizeof(char *));
    unsigned *ucount = eval_xcalloc(n + 2, sizeof(unsigned));
    /* token sequence: <s> w1 ... wn </s> */
    const char **tok = eval_xmalloc((n + 2) * sizeof(char *));
    tok[0] = "<s>";
    for (size_t i = 0; i < n; i++) tok[i + 1] = ws->w[i];
    tok[n + 1] = "</s>";
    size_t *id = eval_xmalloc((n + 2) * sizeof(size_t));
    for (size_t i = 0; i < n + 2; i++) {
        size_t k = 0;
        while (k < v && strcmp(vocab[k], tok[i]) != 0) k++;
        if (k == v) vocab[v++] = tok[i];
        ucount[k]++;
        id[i] = k;
    }
    /* bigram types and counts */
    size_t nb = 0;
    size_t (*bg)[2] = eval_xmalloc((n + 1) * sizeof(*bg));
    unsigned *bcount = eval_xcalloc(n + 1, sizeof(unsigned));
    for (size_t i = 0; i + 1 < n + 2; i++) {
        size_t k = 0;
        while (k < nb && !(bg[k][0] == id[i] && bg[k][1] == id[i + 1])) k++;
        if (k == nb) {
            bg[nb][0] = id[i];
            bg[nb][1] = id[i + 1];
            nb++;
        }
        bcount[k]++;
    }
    /* unigram probabilities: <s> (index 0) never predicted */
    double *pu = eval_xcalloc(v, sizeof(double));
    double denom = 0;
    for (size_t k = 1; k < v; k++) denom += ucount[k] + 1;
    for (size_t k = 1; k < v; k++) pu[k] = (ucount[k] + 1) / denom;
    const double d = 0.5;
    char *path = eval_xstrdup("/tmp/ps_probe_lm.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) abort();
    FILE *out = fdopen(fd, "w");
    fprintf(out, "\\data\\\nngram 1=%zu\nngram 2=%zu\n\n\\1-grams:\n", v, nb);
    for (size_t k = 0; k < v; k++) {
        /* history count: occurrences of k as the first of a bigram */
        unsigned hc = 0, types = 0;
        double seen_uni = 0;
        for (size_t b = 0; b < nb; b++)
            if (bg[b][0] == k) {
                hc += bcount[b];
                types++;
                seen_uni += pu[bg[b][1]];
            }
        double logp = k == 0 ? -99.0 : log10(pu[k]);
        if (types) {
            double left = d * types / hc;
            double bow = left / (1.0 - seen_uni);
            fprintf(out, "%.6f %s %.6f\n", logp, vocab[k], log10(bow));
        } else {
            fprintf(out, "%.6f %s\n", logp, vocab[k]);
        }
    }
    fprintf(out, "\n\\2-grams:\n");
    for (size_t b = 0; b < nb; b++) {
        unsigned hc = 0;
        for (size_t c = 0; c < nb; c++)
            if (bg[c][0] == bg[b][0]) hc += bcount[c];
        fprintf(out, "%.6f %s %s\n", log10((bcount[b] - d) / hc), vocab[bg[b][0]],
                vocab[bg[b][1]]);
    }
    fprintf(out, "\n\\end\\\n");
    fclose(out);
    free(vocab);
    free(ucount);
    free(tok);
    free(id);
    free(bg);
    free(bcount);
    free(pu);
    return path;
}

struct hint_seg {
    char  *word;    /* owned, variant suffix removed; keyword phrases whole */
    int    sf;      /* start frame */
    double conf;    /* exp(ps_seg_prob) */
};

static int hint_seg_cmp(const void *pa, const void *pb) {
    const struct hint_seg *x = pa, *y = pb;
    return (x->sf > y->sf) - (x->sf < y->sf);
}

/* Decodes the file with the named search and prints the hypothesis, the
 * setup cost given, and each real word's confidence. The hypothesis is
 * rebuilt from the segments in time order, because the keyword search's
 * ps_get_hyp lists its detections newest first. */
static void hint_run(ps_decoder_t *ps, const char *search, const char *mode,
                     const struct eval_audio *a, const struct eval_fillers *f, double setup_cpu,
                     long setup_kib) {
    if (ps_set_search(ps, search) < 0) {
        printf("%s\t%s\t(search could not be selected)\n", mode, a->id);
        return;
    }
    double c0 = eval_cpu_process();
    const char *hyp = decode_full(ps, a->pcm, a->n);
    double cpu = eval_cpu_process() - c0;
    if (!hyp) {
        printf("%s\t%s\t(failed)\n", mode, a->id);
        return;
    }
    logmath_t *lmath = ps_get_logmath(ps);
    struct hint_seg *segs = NULL;
    size_t n = 0;
    for (ps_seg_t *seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
        const char *w = ps_seg_word(seg);
        if (eval_fillers_is(f, w)) continue;
        int32 as, ls, lb;
        int ef;
        segs = eval_xrealloc(segs, (n + 1) * sizeof(*segs));
        segs[n].word = eval_xstrdup(w);
        size_t len = strlen(segs[n].word);
        while (len && segs[n].word[len - 1] == ' ') segs[n].word[--len] = '\0';
        char *paren = strrchr(segs[n].word, '(');
        if (paren && len && segs[n].word[len - 1] == ')') *paren = '\0';
        ps_seg_frames(seg, &segs[n].sf, &ef);
        segs[n].conf = logmath_exp(lmath, ps_seg_prob(seg, &as, &ls, &lb));
        n++;
    }
    qsort(segs, n, sizeof(*segs), hint_seg_cmp);
    printf("%s\t%s\t", mode, a->id);
    for (size_t i = 0; i < n; i++) printf("%s%s", i ? " " : "", segs[i].word);
    printf("\n#cost\t%s\tsetup cpu %.3f s, setup rss %+ld KiB, decode cpu %.3f s\n", mode,
           setup_cpu, setup_kib, cpu);
    printf("#conf\t%s\t", mode);
    for (size_t i = 0; i < n; i++) {
        printf(" %s:%.2f", segs[i].word, segs[i].conf);
        free(segs[i].word);
    }
    printf("\n");
    free(segs);
}

/* ps_set_jsgf_string() of this library version never frees the parsed
 * grammar (a few KB per call: ASan shows it), so the same steps are done
 * here with the public sphinxbase calls, freeing both the grammar and the
 * FSG (ps_set_fsg keeps its own reference). 0 or -1. */
static int set_jsgf(ps_decoder_t *ps, const char *name, const char *text) {
    jsgf_t *jsgf = jsgf_parse_string(text, NULL);
    if (!jsgf) return -1;
    int rc = -1;
    jsgf_rule_t *rule = jsgf_get_public_rule(jsgf);
    if (rule) {
        float32 lw = cmd_ln_float32_r(ps_get_config(ps), "-lw");
        fsg_model_t *fsg = jsgf_build_fsg(jsgf, rule, ps_get_logmath(ps), lw);
        if (fsg) {
            rc = ps_set_fsg(ps, name, fsg);
            fsg_model_free(fsg);
        }
    }
    jsgf_grammar_free(jsgf);
    return rc;
}

static int cmd_hint(int argc, char **argv) {
    double weights_in[4] = {0.5};
    size_t n_weights = 0;
    const char *kws_thr = "1e-5";
    int skip_lm_text = 0;
    const char *file = NULL, *text = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--weight") == 0 && i + 1 < argc) {
            if (n_weights == 4 || eval_parse_double(argv[++i], &weights_in[n_weights]) ||
                weights_in[n_weights] <= 0 || weights_in[n_weights] >= 1)
                return -1;
            n_weights++;
        } else if (strcmp(argv[i], "--no-lm-text") == 0) {
            skip_lm_text = 1;
        } else if (strcmp(argv[i], "--kws-threshold") == 0 && i + 1 < argc)
            kws_thr = argv[++i];
        else if (!file)
            file = argv[i];
        else if (!text)
            text = argv[i];
        else
            return -1;
    }
    if (!file || !text) return -1;
    if (!n_weights) n_weights = 1;
    ps_decoder_t *ps = decoder_create();
    struct eval_audio a;
    if (!ps || read_audio(&a, file, ps)) return 1;
    struct eval_fillers *f = eval_fillers_create(ps);
    struct words ws;
    hint_words(&ws, text);
    size_t kept = 0;
    for (size_t i = 0; i < ws.n; i++) {
        char *pron = ps_lookup_word(ps, ws.w[i]);
        if (pron) {
            ws.w[kept++] = ws.w[i];
            ckd_free(pron);
        } else {
            printf("#oov\t%s (not in the dictionary: left out of every hint)\n", ws.w[i]);
        }
    }
    ws.n = kept;
    if (!ws.n) return 1;
    char *sentence = join(&ws, " ", "", "");
    printf("#hint\t%s\n", sentence);

    struct eval_mem m0, m1;
    double c0;
#define SETUP_BEGIN() (eval_mem_read(0, &m0), c0 = eval_cpu_process())
#define SETUP_END(search, mode)                                                        \
    do {                                                                               \
        double c_ = eval_cpu_process() - c0;                                           \
        eval_mem_read(0, &m1);                                                         \
        hint_run(ps, search, mode, &a, f, c_, m1.anonymous - m0.anonymous);            \
    } while (0)

    SETUP_BEGIN();
    SETUP_END("_default", "lm");

    /* JSGF grammars from the text. */
    char *seq = join(&ws, " ", "", ""), *opt = join(&ws, " ", "[", "]"),
         *alt = join(&ws, " | ", "", "");
    size_t glen = strlen(seq) + strlen(opt) + strlen(alt) + 256;
    char *g = eval_xmalloc(glen);
    static const char *const gname[] = {"jsgf-exact", "jsgf-skip", "jsgf-loop"};
    for (int k = 0; k < 3; k++) {
        const char *body = k == 0 ? seq : k == 1 ? opt : alt;
        snprintf(g, glen, "#JSGF V1.0;\ngrammar hint;\npublic <s> = %s%s%s;\n",
                 k == 2 ? "( " : "", body, k == 2 ? " )+" : "");
        SETUP_BEGIN();
        if (set_jsgf(ps, gname[k], g) < 0) {
            printf("%s\t%s\t(grammar refused)\n", gname[k], a.id);
            continue;
        }
        SETUP_END(gname[k], gname[k]);
    }
    free(g);

    /* Keyword spotting: the whole sentence as one key phrase (threshold
     * -kws_threshold), and each distinct word as its own phrase. */
    SETUP_BEGIN();
    if (ps_set_keyphrase(ps, "kws-phrase", sentence) == 0)
        SETUP_END("kws-phrase", "kws-phrase");
    char *kpath = eval_xstrdup("/tmp/ps_probe_kws.XXXXXX");
    int kfd = mkstemp(kpath);
    if (kfd >= 0) {
        FILE *kf = fdopen(kfd, "w");
        for (size_t i = 0; i < ws.n; i++) {
            size_t j = 0;
            while (j < i && strcmp(ws.w[j], ws.w[i]) != 0) j++;
            if (j == i) fprintf(kf, "%s /%s/\n", ws.w[i], kws_thr);
        }
        fclose(kf);
        SETUP_BEGIN();
        if (ps_set_kws(ps, "kws-words", kpath) == 0) SETUP_END("kws-words", "kws-words");
        unlink(kpath);
    }
    free(kpath);

    /* An n-gram of the text: alone, and interpolated with the default LM. */
    char *arpa = arpa_create(&ws);
    SETUP_BEGIN();
    ngram_model_t *hint = ngram_model_read(ps_get_config(ps), arpa, NGRAM_ARPA,
                                           ps_get_logmath(ps));
    printf("#cost\tlm-text\treading the ARPA text: cpu %.3f s\n", eval_cpu_process() - c0);
    unlink(arpa);
    free(arpa);
    if (hint && !skip_lm_text && ps_set_lm(ps, "lm-text", hint) == 0)
        SETUP_END("lm-text", "lm-text");
    ngram_model_t *defset = ps_get_lm(ps, "_default");
    ngram_model_t *deflm = defset ? ngram_model_set_lookup(defset, "default") : NULL;
    for (size_t k = 0; hint && deflm && k < n_weights; k++) {
        /* The default LM first: the set's word hash is sized by its first
         * model, and a small first model makes mapping the dictionary's
         * words into it quadratic (the lm-text setup above). */
        ngram_model_t *models[2] = {deflm, hint};
        char *names[2] = {"default", "hint"};
        float32 weights[2] = {(float32)(1.0 - weights_in[k]), (float32)weights_in[k]};
        char mode[48];
        snprintf(mode, sizeof(mode), "lm-interp-%.2f", weights_in[k]);
        SETUP_BEGIN();
        ngram_model_t *set = ngram_model_set_init(ps_get_config(ps), models, names, weights, 2);
        if (set && ps_set_lm(ps, mode, set) == 0) SETUP_END(mode, mode);
        if (set) ngram_model_free(set);
    }
    if (hint) ngram_model_free(hint);
#undef SETUP_BEGIN
#undef SETUP_END
    free(seq);
    free(opt);
    free(alt);
    free(sentence);
    words_cleanup(&ws);
    eval_fillers_destroy(f);
    eval_audio_cleanup(&a);
    ps_free(ps);
    return 0;
}

/* ---- cmn ------------------------------------------------------------ */

/* The live cepstral mean of a decoder: the running state that stream
 * decoding carries from one utterance to the next (sphinxbase cmn_t, a
 * public struct reached through ps_get_feat). */
struct cmn_state {
    mfcc_t mean[64], sum[64];
    int32  nframe;
    int32  veclen;
};

static void cmn_save(ps_decoder_t *ps, struct cmn_state *st) {
    cmn_t *c = ps_get_feat(ps)->cmn_struct;
    st->veclen = c->veclen < 64 ? c->veclen : 64;
    memcpy(st->mean, c->cmn_mean, (size_t)st->veclen * sizeof(mfcc_t));
    memcpy(st->sum, c->sum, (size_t)st->veclen * sizeof(mfcc_t));
    st->nframe = c->nframe;
}

static void cmn_restore(ps_decoder_t *ps, const struct cmn_state *st) {
    cmn_t *c = ps_get_feat(ps)->cmn_struct;
    memcpy(c->cmn_mean, st->mean, (size_t)st->veclen * sizeof(mfcc_t));
    memcpy(c->sum, st->sum, (size_t)st->veclen * sizeof(mfcc_t));
    c->nframe = st->nframe;
}

static const char *or_failed(const char *hyp) { return hyp ? hyp : "(failed)"; }

static const char *cmn_mode(ps_decoder_t *ps) {
    cmn_type_t t = ps_get_feat(ps)->cmn;
    return t == CMN_BATCH ? "batch" : t == CMN_LIVE ? "live" : "none";
}

/* Whether a stream decoder's result depends on what it decoded before, and
 * whether saving and restoring the CMN state makes a decoder portable
 * between sessions (a pool hands decoders to sessions). */
static int cmd_cmn(int argc, char **argv) {
    if (argc != 3) return -1;
    ps_decoder_t *p = decoder_create(), *q = decoder_create(), *r = decoder_create(),
                 *t = decoder_create();
    struct eval_audio x, y, z;
    if (!p || !q || !r || !t) return 1;
    if (read_audio(&x, argv[0], p) || read_audio(&y, argv[1], p) || read_audio(&z, argv[2], p))
        return 1;
    struct cmn_state after_x;
    char *h;

    printf("stream decoding of Y = %s (100 ms chunks):\n", y.id);
    h = eval_xstrdup(or_failed(decode_stream(q, &y, 100)));
    printf("  fresh decoder:                      %s\n", h);
    free(h);
    decode_stream(p, &x, 100);
    cmn_save(p, &after_x);
    h = eval_xstrdup(or_failed(decode_stream(p, &y, 100)));
    printf("  after the same decoder did X = %s: %s\n", x.id, h);
    decode_stream(r, &z, 100);
    decode_stream(r, &z, 100);
    cmn_restore(r, &after_x);
    const char *h2 = or_failed(decode_stream(r, &y, 100));
    printf("  a decoder that did Z = %s twice, then got X's CMN state restored:\n"
           "                                      %s (%s)\n",
           z.id, h2, strcmp(h, h2) == 0 ? "same as after X" : "DIFFERENT from after X");
    free(h);

    printf("whole-utterance decoding of Y on one decoder (feature CMN mode in brackets):\n");
    printf("  fresh [%s]:", cmn_mode(t));
    h = eval_xstrdup(or_failed(decode_full(t, y.pcm, y.n)));
    printf(" %s\n", h);
    decode_stream(t, &x, 100);
    const char *h3 = or_failed(decode_full(t, y.pcm, y.n));
    printf("  after one streamed utterance [%s]: %s\n", cmn_mode(t), h3);
    free(h);
    eval_audio_cleanup(&x);
    eval_audio_cleanup(&y);
    eval_audio_cleanup(&z);
    ps_free(p);
    ps_free(q);
    ps_free(r);
    ps_free(t);
    return 0;
}

/* ---- lmdict --------------------------------------------------------- */

/* Writes the lines of the Debian dictionary whose word (variant suffix
 * removed) is in the LM's vocabulary: the n-gram search can only ever
 * output those, so the rest of the dictionary is memory spent for nothing. */
static int cmd_lmdict(int argc, char **argv) {
    if (argc != 1) return -1;
    cmd_ln_t *config = eval_config_create(0, NULL);
    logmath_t *lmath = logmath_init(1.0001, 0, 0);
    ngram_model_t *lm = config ? ngram_model_read(config, EVAL_LM, NGRAM_AUTO, lmath) : NULL;
    if (!lm) return 1;
    int32 nwords = (int32)ngram_model_get_counts(lm)[0];
    hash_table_t *vocab = hash_table_new(nwords, HASH_CASE_YES);
    for (int32 w = 0; w < nwords; w++) hash_table_enter_int32(vocab, ngram_word(lm, w), w);
    FILE *in = fopen(EVAL_DICT, "r"), *out = fopen(argv[0], "w");
    if (!in || !out) {
        perror(in ? argv[0] : EVAL_DICT);
        return 1;
    }
    char line[1024], word[256];
    long kept = 0, total = 0;
    while (fgets(line, sizeof(line), in)) {
        size_t len = strcspn(line, " \t\n");
        if (!len || len >= sizeof(word)) continue;
        memcpy(word, line, len);
        word[len] = '\0';
        char *paren = strchr(word, '(');
        if (paren && paren != word) *paren = '\0';
        total++;
        void *val;
        if (hash_table_lookup(vocab, word, &val) == 0) {
            fputs(line, out);
            kept++;
        }
    }
    fclose(in);
    fclose(out);
    printf("LM vocabulary %d words; kept %ld of %ld dictionary entries in %s\n", nwords, kept,
           total, argv[0]);
    hash_table_free(vocab);
    ngram_model_free(lm);
    logmath_free(lmath);
    cmd_ln_free_r(config);
    return 0;
}

/* ---- main ----------------------------------------------------------- */

static int usage(void) {
    fprintf(stderr,
            "usage: ps_probe [--verbose] [-psoption value ...] SUBCOMMAND ...\n"
            "  mem FILE\n  fork N FILE...\n  threads N ITER FILE [--stream MS]\n"
            "  window FILE [--step MS] [--chunk MS] [--no-redecode]\n"
            "  hint FILE TEXT [--weight W]... [--kws-threshold T] [--no-lm-text]\n"
            "  cmn X Y Z\n  lmdict OUT\n");
    return 2;
}

int main(int argc, char **argv) {
    int i = 1, verbose = 0;
    ps_argv = eval_xmalloc((size_t)argc * sizeof(char *));
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--verbose") == 0)
            verbose = 1;
        else if (argv[i][1] != '-' && i + 1 < argc) {
            ps_argv[ps_argc++] = argv[i];
            ps_argv[ps_argc++] = argv[++i];
        } else
            return usage();
    }
    if (i == argc) return usage();
    eval_log_init(verbose);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[i++];
    int rc = -1;
    if (strcmp(cmd, "mem") == 0)
        rc = cmd_mem(argc - i, argv + i);
    else if (strcmp(cmd, "fork") == 0)
        rc = cmd_fork(argc - i, argv + i);
    else if (strcmp(cmd, "threads") == 0)
        rc = cmd_threads(argc - i, argv + i);
    else if (strcmp(cmd, "window") == 0)
        rc = cmd_window(argc - i, argv + i);
    else if (strcmp(cmd, "hint") == 0)
        rc = cmd_hint(argc - i, argv + i);
    else if (strcmp(cmd, "cmn") == 0)
        rc = cmd_cmn(argc - i, argv + i);
    else if (strcmp(cmd, "lmdict") == 0)
        rc = cmd_lmdict(argc - i, argv + i);
    free(ps_argv);
    return rc < 0 ? usage() : rc;
}
