/* The audio asrd-load sends (clips.h). */
#define _GNU_SOURCE
#include "clips.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "core/audio.h"
#include "opts.h"
#include "scenario.h"

#define DEFAULT_TEXT "hello world this is a speech test"   /* what tests/integration/run.sh speaks */

static char tmp_wav[64];

static void remove_tmp_wav(void) {
    if (tmp_wav[0]) unlink(tmp_wav);
}

void clips_find_default(char *out, size_t n) {
    if (access(LOAD_DEFAULT_WAV, R_OK) == 0) {
        snprintf(out, n, "%s", LOAD_DEFAULT_WAV);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s/../../%s", exe, LOAD_DEFAULT_WAV);
            if (access(cand, R_OK) == 0 && strlen(cand) < n) {
                snprintf(out, n, "%s", cand);
                return;
            }
        }
    }
    snprintf(tmp_wav, sizeof tmp_wav, "/tmp/asrd-load-speech-XXXXXX.wav");
    int fd = mkstemps(tmp_wav, 4);
    if (fd < 0) opts_die("no audio: %s is not there and no temporary file for espeak-ng (%s); pass --wav FILE or --tone",
                         LOAD_DEFAULT_WAV, strerror(errno));
    close(fd);
    atexit(remove_tmp_wav);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("espeak-ng", "espeak-ng", "-v", "en", "-s", "160", "-w", tmp_wav, DEFAULT_TEXT, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        remove_tmp_wav();
        tmp_wav[0] = 0;
        opts_die("no audio: %s is not there (tests/integration/run.sh --gen-only makes it) and espeak-ng %s; "
                 "pass --wav FILE or --tone", LOAD_DEFAULT_WAV,
                 pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127 ? "is not installed" : "failed");
    }
    snprintf(out, n, "%s", tmp_wav);
    fprintf(stderr, "asrd-load: %s is not there; made the audio with espeak-ng\n", LOAD_DEFAULT_WAV);
}

/* A voiced synthetic signal (a harmonic tone with a wandering pitch and
 * syllable-rate modulation) that VAD calls speech: 1.6 s on, 0.4 s off,
 * repeated for 10 s, so the server also sees utterances end. */
static void synth_tone(struct audio_pcm *pcm) {
    pcm->rate = LOAD_SAMPLE_RATE;
    pcm->n = (size_t)LOAD_SAMPLE_RATE * 10;
    pcm->samples = xcalloc(pcm->n, sizeof(int16_t));
    for (size_t i = 0; i < pcm->n; i++) {
        double t = (double)i / LOAD_SAMPLE_RATE;
        if (fmod(t, 2.0) >= 1.6) continue;
        double f0 = 120.0 + 20.0 * sin(2 * M_PI * 1.5 * t), s = 0;
        for (int h = 1; h <= 30 && f0 * h < 3800; h++) {
            double g = 1.0 / h, f = f0 * h;
            if (fabs(f - 700) < 200 || fabs(f - 1200) < 250) g *= 3;
            s += g * sin(2 * M_PI * f * t + h);
        }
        s *= 0.6 + 0.4 * sin(2 * M_PI * 4 * t);
        pcm->samples[i] = (int16_t)lrint(s * 3000);
    }
}

static void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_le32(uint8_t *p, uint32_t v) { put_le16(p, (uint16_t)v); put_le16(p + 2, (uint16_t)(v >> 16)); }

/* A WAV of pcm, for the rest scenario's uploads. */
static void wav_of(struct clips *c, const struct audio_pcm *pcm) {
    size_t data = pcm->n * 2;
    c->file_len = 44 + data;
    c->file = xmalloc(c->file_len);
    memcpy(c->file, "RIFF", 4);
    put_le32(c->file + 4, (uint32_t)(36 + data));
    memcpy(c->file + 8, "WAVEfmt ", 8);
    put_le32(c->file + 16, 16);
    put_le16(c->file + 20, 1);
    put_le16(c->file + 22, 1);
    put_le32(c->file + 24, LOAD_SAMPLE_RATE);
    put_le32(c->file + 28, LOAD_SAMPLE_RATE * 2);
    put_le16(c->file + 32, 2);
    put_le16(c->file + 34, 16);
    memcpy(c->file + 36, "data", 4);
    put_le32(c->file + 40, (uint32_t)data);
    for (size_t i = 0; i < pcm->n; i++) put_le16(c->file + 44 + 2 * i, (uint16_t)pcm->samples[i]);
    c->file_is_wav = 1;
}

/* Reads and decodes path into pcm; the file's bytes go to *bytes (owned by
 * the caller) when bytes is not NULL. */
static void decode_file(const char *path, struct audio_pcm *pcm, struct buf *bytes) {
    FILE *f = fopen(path, "rb");
    if (!f) opts_die("--wav %s: %s", path, strerror(errno));
    struct buf b;
    buf_init(&b, 256u << 20);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (buf_append(&b, tmp, n) != 0) opts_die("--wav %s: larger than 256 MiB", path);
    int err = ferror(f);
    fclose(f);
    if (err) opts_die("--wav %s: read error", path);
    char msg[256];
    int rc = audio_decode((const uint8_t *)b.data, b.len, NULL, LOAD_SAMPLE_RATE, (size_t)LOAD_SAMPLE_RATE * 3600, pcm,
                          msg, sizeof msg);
    if (rc != 0) opts_die("--wav %s: %s", path, msg);
    if (pcm->n == 0) opts_die("--wav %s: no samples", path);
    if (bytes) *bytes = b;   /* adopted */
    else buf_cleanup(&b);
}

static char *b64_of(const uint8_t *p, size_t n) {
    size_t bl = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = xmalloc(bl);
    sodium_bin2base64(s, bl, p, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* Cuts pcm into whole chunks: the last one completed from the clip's start
 * (loop) or with zeros. */
static void cut_chunks(struct clip *cl, const struct audio_pcm *pcm, size_t chunk_bytes, int loop, int json_mode) {
    size_t cs = chunk_bytes / 2;
    cl->samples = pcm->n;
    cl->nchunks = (pcm->n + cs - 1) / cs;
    cl->pcm = xcalloc(cl->nchunks, chunk_bytes);
    size_t total = loop ? cl->nchunks * cs : pcm->n;
    for (size_t i = 0; i < total; i++) put_le16(cl->pcm + 2 * i, (uint16_t)pcm->samples[i % pcm->n]);
    if (json_mode) {
        cl->b64 = xcalloc(cl->nchunks, sizeof *cl->b64);
        for (size_t i = 0; i < cl->nchunks; i++) cl->b64[i] = b64_of(cl->pcm + i * chunk_bytes, chunk_bytes);
    }
}

static void clip_id(struct clip *cl, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    if (n >= sizeof cl->id) n = sizeof cl->id - 1;
    memcpy(cl->id, base, n);
    cl->id[n] = 0;
    snprintf(cl->path, sizeof cl->path, "%s", path);
}

void clips_load(struct clips *c, const struct load_cfg *cfg) {
    memset(c, 0, sizeof *c);
    int loop = !(cfg->sc->flags & SCF_SPEECH);
    c->chunk_bytes = (size_t)LOAD_SAMPLE_RATE * cfg->o.chunk_ms / 1000 * 2;
    c->n = cfg->o.tone ? 1 : cfg->n_wavs;
    c->v = xcalloc(c->n, sizeof *c->v);
    for (size_t i = 0; i < c->n; i++) {
        struct clip *cl = &c->v[i];
        struct audio_pcm pcm = {0};
        if (cfg->o.tone) {
            synth_tone(&pcm);
            snprintf(cl->id, sizeof cl->id, "tone");
            wav_of(c, &pcm);
        } else {
            struct buf bytes = {0};
            decode_file(cfg->wavs[i], &pcm, i == 0 ? &bytes : NULL);
            clip_id(cl, cfg->wavs[i]);
            if (i == 0) {
                c->file = (uint8_t *)bytes.data;   /* adopted */
                c->file_len = bytes.len;
                c->file_is_wav = bytes.len >= 12 && memcmp(bytes.data, "RIFF", 4) == 0 &&
                                 memcmp(bytes.data + 8, "WAVE", 4) == 0;
            }
        }
        cut_chunks(cl, &pcm, c->chunk_bytes, loop, cfg->json_mode);
        audio_pcm_cleanup(&pcm);
    }
    c->silence = xcalloc(1, c->chunk_bytes);
    if (cfg->json_mode) c->silence_b64 = b64_of(c->silence, c->chunk_bytes);
}

void clips_cleanup(struct clips *c) {
    for (size_t i = 0; i < c->n; i++) {
        struct clip *cl = &c->v[i];
        if (cl->b64)
            for (size_t k = 0; k < cl->nchunks; k++) free(cl->b64[k]);
        free(cl->b64);
        free(cl->pcm);
    }
    free(c->v);
    free(c->silence);
    free(c->silence_b64);
    free(c->file);
    memset(c, 0, sizeof *c);
}
