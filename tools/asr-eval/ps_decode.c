/* ps_decode: the bare pocketsphinx library decoding files in one process.
 * The accuracy reference and the throughput baseline for the engine that
 * will wrap the same library (docs/internals/pocketsphinx.md).
 *
 *   ps_decode [--seg] [--stream MS] [--continue-stream] [--repeat N] [--verbose]
 *             [--raw-rate HZ] [-pocketsphinx-option value ...] FILE...
 *
 * One decoder (ps_init) for all files. Each file is one utterance:
 * ps_start_utt, ps_process_raw, ps_end_utt, ps_get_hyp.
 *   default      the whole file in one ps_process_raw(full_utt = TRUE): batch
 *                cepstral mean normalisation over the file, as a file API would.
 *   --stream MS  MS-millisecond chunks with full_utt = FALSE, as a stream
 *                would arrive: live CMN, whose running mean carries over to
 *                the next utterance of the same decoder.
 * Each file starts a new stream (ps_start_stream): word times count from
 * its first sample and the front end's noise statistics start afresh.
 *   --continue-stream  leaves that out, as the library does by default: the
 *                frame count and noise statistics run on from the previous
 *                file, and word times come out offset (or, in whole-file mode
 *                with -remove_silence yes, simply wrong for later files).
 * Files: WAV and the like through libsndfile (mono, at the decoder's
 * -samprate; nothing is resampled), or .raw/.pcm as s16le at --raw-rate
 * (default: -samprate, 16000). Options starting with one dash go to
 * pocketsphinx (eval_config_create: the Debian en-us model by default).
 *
 * Output on stdout, readable by wer.py (which skips '#' lines):
 *   fileid<TAB>hypothesis
 *   #dur<TAB>fileid<TAB>audio seconds<TAB>CPU seconds of its decode
 *   #seg<TAB>fileid<TAB>word<TAB>start_ms<TAB>end_ms<TAB>confidence   (--seg)
 *   # summary lines: audio s, CPU s (getrusage, decoding only and ps_init),
 *     audio-s per CPU-s, peak RSS, RSS after ps_init
 * With --repeat N the file list is decoded N times; passes after the first
 * print "#passK<TAB>fileid<TAB>hypothesis", a summary line says whether
 * they matched the first pass, and another gives the fastest pass's speed
 * (the least disturbed by other processes on a shared machine). Confidence is exp(ps_seg_prob) through the
 * decoder's logmath: the word's lattice posterior, which the n-gram search
 * fills in only after ps_end_utt with -bestpath yes (the default); other
 * searches report 1.0 (log 0), meaning "not computed".
 *
 * Build: tools/asr-eval/build.sh. Exit status 0, 1 if a file failed, 2 on
 * usage or ps_init failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pocketsphinx.h>

#include "eval_util.h"

struct opts {
    int      seg;          /* print word segments */
    unsigned stream_ms;    /* 0: whole file, full_utt = TRUE */
    unsigned repeat;       /* passes over the file list */
    unsigned raw_rate;     /* Hz of .raw/.pcm input; 0: the decoder's */
    int      verbose;      /* keep the library's INFO log */
    int      continue_stream; /* no ps_start_stream between utterances */
};

static void usage(void) {
    fprintf(stderr,
            "usage: ps_decode [--seg] [--stream MS] [--continue-stream] [--repeat N] "
            "[--raw-rate HZ] [--verbose] [-psoption value ...] FILE...\n");
}

/* Word segments of the finished utterance, fillers skipped. Frame numbers
 * become milliseconds through -frate (frames per second). */
static void print_segments(ps_decoder_t *ps, const struct eval_fillers *fillers,
                           const char *id, int frate) {
    logmath_t *lmath = ps_get_logmath(ps);
    for (ps_seg_t *seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
        const char *word = ps_seg_word(seg);
        if (eval_fillers_is(fillers, word)) continue;
        int sf, ef;
        int32 ascr, lscr, lback;
        ps_seg_frames(seg, &sf, &ef);
        int32 post = ps_seg_prob(seg, &ascr, &lscr, &lback);
        printf("#seg\t%s\t%s\t%ld\t%ld\t%.3f\n", id, word, (long)sf * 1000 / frate,
               (long)(ef + 1) * 1000 / frate, logmath_exp(lmath, post));
    }
}

/* Decodes one file as one utterance; returns the hypothesis (owned by the
 * decoder, valid until the next utterance) or NULL after printing why. */
static const char *decode(ps_decoder_t *ps, const struct eval_audio *a, unsigned stream_ms,
                          int new_stream) {
    if (new_stream) ps_start_stream(ps);   /* word times from this file's start */
    if (ps_start_utt(ps) < 0) {
        fprintf(stderr, "%s: ps_start_utt failed\n", a->id);
        return NULL;
    }
    if (!stream_ms) {
        if (ps_process_raw(ps, a->pcm, a->n, FALSE, TRUE) < 0) goto fail;
    } else {
        size_t step = (size_t)a->rate * stream_ms / 1000;
        for (size_t off = 0; off < a->n; off += step) {
            size_t k = a->n - off < step ? a->n - off : step;
            if (ps_process_raw(ps, a->pcm + off, k, FALSE, FALSE) < 0) goto fail;
        }
    }
    if (ps_end_utt(ps) < 0) {
        fprintf(stderr, "%s: ps_end_utt failed\n", a->id);
        return NULL;
    }
    const char *hyp = ps_get_hyp(ps, NULL);
    return hyp ? hyp : "";
fail:
    fprintf(stderr, "%s: ps_process_raw failed\n", a->id);
    ps_end_utt(ps);
    return NULL;
}

int main(int argc, char **argv) {
    struct opts o = {.repeat = 1};
    char **psargv = eval_xcalloc((size_t)argc, sizeof(char *));
    int psargc = 0, i, status = 0;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--seg") == 0) {
            o.seg = 1;
        } else if (strcmp(a, "--continue-stream") == 0) {
            o.continue_stream = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            o.verbose = 1;
        } else if (strcmp(a, "--stream") == 0 && i + 1 < argc) {
            if (eval_parse_uint(argv[++i], 10, 60000, &o.stream_ms)) goto bad;
        } else if (strcmp(a, "--repeat") == 0 && i + 1 < argc) {
            if (eval_parse_uint(argv[++i], 1, 1000, &o.repeat)) goto bad;
        } else if (strcmp(a, "--raw-rate") == 0 && i + 1 < argc) {
            if (eval_parse_uint(argv[++i], 8000, 48000, &o.raw_rate)) goto bad;
        } else if (a[1] != '-' && i + 1 < argc) {
            psargv[psargc++] = argv[i];
            psargv[psargc++] = argv[++i];
        } else {
            goto bad;
        }
    }
    if (i == argc) goto bad;
    int first_file = i, n_files = argc - i;

    eval_log_init(o.verbose);
    double cpu0 = eval_cpu_process(), wall0 = eval_wall();
    cmd_ln_t *config = eval_config_create(psargc, psargv);
    if (!config) return 2;
    ps_decoder_t *ps = ps_init(config);
    if (!ps) {
        fprintf(stderr, "ps_init failed (run with --verbose for the library's log)\n");
        return 2;
    }
    double init_cpu = eval_cpu_process() - cpu0, init_wall = eval_wall() - wall0;
    struct eval_mem mem_init;
    eval_mem_read(0, &mem_init);
    struct eval_fillers *fillers = eval_fillers_create(ps);
    unsigned rate = (unsigned)cmd_ln_float32_r(config, "-samprate");
    int frate = cmd_ln_int32_r(config, "-frate");
    if (!o.raw_rate) o.raw_rate = rate;

    /* The first pass's hypotheses, to compare later passes with. */
    char **first = eval_xcalloc((size_t)n_files, sizeof(char *));
    double audio_s = 0, dec_cpu = 0, dec_wall = 0;
    double best_ratio = 0;          /* audio-s per CPU-s of the fastest pass */
    unsigned mismatches = 0, decoded = 0;
    for (unsigned pass = 0; pass < o.repeat; pass++) {
        double pass_audio = audio_s, pass_cpu = dec_cpu;
        for (int f = 0; f < n_files; f++) {
            struct eval_audio a;
            if (eval_audio_read(&a, argv[first_file + f], o.raw_rate)) {
                status = 1;
                continue;
            }
            if (a.rate != rate) {
                fprintf(stderr, "%s: %u Hz, the decoder wants %u Hz (-samprate)\n",
                        argv[first_file + f], a.rate, rate);
                eval_audio_cleanup(&a);
                status = 1;
                continue;
            }
            double c0 = eval_cpu_process(), w0 = eval_wall();
            const char *hyp = decode(ps, &a, o.stream_ms, !o.continue_stream);
            double c = eval_cpu_process() - c0;
            dec_wall += eval_wall() - w0;
            dec_cpu += c;
            if (!hyp) {
                status = 1;
                eval_audio_cleanup(&a);
                continue;
            }
            double secs = (double)a.n / a.rate;
            audio_s += secs;
            decoded++;
            if (pass == 0) {
                printf("%s\t%s\n", a.id, hyp);
                printf("#dur\t%s\t%.3f\t%.3f\n", a.id, secs, c);
                first[f] = eval_xstrdup(hyp);
                if (o.seg) print_segments(ps, fillers, a.id, frate);
            } else {
                printf("#pass%u\t%s\t%s\n", pass + 1, a.id, hyp);
                if (!first[f] || strcmp(first[f], hyp) != 0) mismatches++;
            }
            fflush(stdout);
            eval_audio_cleanup(&a);
        }
        pass_audio = audio_s - pass_audio;
        pass_cpu = dec_cpu - pass_cpu;
        if (pass_cpu > 0 && pass_audio / pass_cpu > best_ratio) best_ratio = pass_audio / pass_cpu;
    }
    printf("# mode: %s", o.stream_ms ? "stream" : "whole file (full_utt)");
    if (o.stream_ms) printf(", %u ms chunks", o.stream_ms);
    printf("; %u decodes of %d files in %u passes\n", decoded, n_files, o.repeat);
    printf("# audio_s %.3f  decode_cpu_s %.3f  decode_wall_s %.3f\n", audio_s, dec_cpu, dec_wall);
    printf("# audio_s_per_cpu_s %.2f  (real-time factor %.4f CPU-s per audio-s)\n",
           dec_cpu > 0 ? audio_s / dec_cpu : 0.0, audio_s > 0 ? dec_cpu / audio_s : 0.0);
    if (o.repeat > 1) printf("# best_pass_audio_s_per_cpu_s %.2f\n", best_ratio);
    printf("# ps_init_cpu_s %.3f  ps_init_wall_s %.3f\n", init_cpu, init_wall);
    printf("# rss_after_init_kib %ld  pss_after_init_kib %ld  anon_after_init_kib %ld\n",
           mem_init.rss, mem_init.pss, mem_init.anonymous);
    struct eval_mem mem_end;
    eval_mem_read(0, &mem_end);
    printf("# rss_end_kib %ld  peak_rss_kib %ld\n", mem_end.rss, eval_peak_rss_kib());
    if (o.repeat > 1)
        printf("# later passes identical to pass 1: %s (%u differ)\n",
               mismatches ? "no" : "yes", mismatches);

    for (int f = 0; f < n_files; f++) free(first[f]);
    free(first);
    eval_fillers_destroy(fillers);
    ps_free(ps);
    cmd_ln_free_r(config);
    free(psargv);
    return status;
bad:
    usage();
    free(psargv);
    return 2;
}
