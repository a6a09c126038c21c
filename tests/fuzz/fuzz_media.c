/* fuzz_media: the libavformat/libavcodec path of audio_decode()
 * (src/core/media.c behind src/core/audio.c): sniffing of WebM/Matroska,
 * MP4/M4A/3GP, ADTS AAC and Ogg, the memory AVIOContext, the demuxer and
 * decoder lists, libswresample's mix to mono, the caller's sink (soxr, the
 * max_samples cap) and the errors of each step.
 *
 * Input: one flags byte, then the body, sent without a Content-Type (so it
 * is sniffed, as a browser's upload often is).
 * byte 0: bits 0-1 target rate (16000 as REST uses, 8000, 48000, 22050);
 *         bit 2 max_samples one second instead of one minute.
 *
 * Checks beyond the sanitizers (and libFuzzer's -timeout and
 * -rss_limit_mb, which bound time and memory): the return code is one
 * audio_decode() documents; on success the rate is the target, at most
 * max_samples samples, every sample readable; on failure *out is zeroed and
 * errbuf holds a message; and a second decode of the same bytes gives the
 * same code and the same samples (libav state does not leak from one decode
 * into the next, and nothing reads uninitialised memory into the output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "common.h"
#include "core/audio.h"

static const unsigned TARGETS[] = {16000, 8000, 48000, 22050};

static void fail(const char *what, int rc) { fuzz_fail("fuzz_media: %s (rc %d)", what, rc); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_common_init();
    return 0;
}

static int decode(const uint8_t *body, size_t size, unsigned target, size_t max_samples, struct audio_pcm *out) {
    char err[160];
    memset(err, 'x', sizeof err);
    int rc = audio_decode(body, size, NULL, target, max_samples, out, err, sizeof err);
    if (memchr(err, '\0', sizeof err) == NULL) fail("errbuf not terminated", rc);
    switch (rc) {
    case 0:
        if (out->rate != target) fail("wrong output rate", rc);
        if (out->n > max_samples) fail("more than max_samples", rc);
        if (out->n && !out->samples) fail("samples missing", rc);
        break;
    case ASR_E_BAD_REQUEST: case ASR_E_INVALID_AUDIO: case ASR_E_NOT_AUDIO: case ASR_E_TOO_LARGE:
    case ASR_ENOMEM: case ASR_E_INTERNAL:
        if (out->samples || out->n || out->rate) fail("*out not zeroed on error", rc);
        if (!err[0]) fail("no error message", rc);
        break;
    default:
        fail("undocumented return code", rc);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t f = data[0];
    data++;
    size--;
    unsigned target = TARGETS[f & 3];
    size_t max_samples = (f & 4) ? 16000 : 16000 * 60;
    /* A fresh copy: ASan sees any read past the body. */
    uint8_t *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);

    struct audio_pcm a, b;
    int rc = decode(body, size, target, max_samples, &a);
    int rc2 = decode(body, size, target, max_samples, &b);
    if (rc != rc2 && rc != ASR_ENOMEM && rc2 != ASR_ENOMEM) fail("a second decode answered differently", rc2);
    if (rc == 0 && rc2 == 0 && (a.n != b.n || (a.n && memcmp(a.samples, b.samples, a.n * sizeof *a.samples) != 0)))
        fail("a second decode gave other samples", rc);
    audio_pcm_cleanup(&a);
    audio_pcm_cleanup(&b);
    free(body);
    return 0;
}
