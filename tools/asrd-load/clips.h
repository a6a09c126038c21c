/* clips: the audio asrd-load sends (docs/LOAD.md "Build and first run"),
 * loaded once before the loop starts: each file (or the synthetic tone)
 * decoded to 16 kHz mono s16le with core/audio (any container, rate and
 * channel count libsndfile reads; resampled with soxr) and cut into chunks
 * of --chunk-ms, with each chunk's base64 in json mode; and the bytes the
 * rest scenario uploads (the first file as it is on disk).
 *
 * The looped scenarios stream clip 0 over and over: its last chunk is
 * completed from its beginning, so each chunk is a contiguous slice of the
 * loop. The speech scenarios stream every clip once per play: the last
 * chunk is completed with silence, and `silence` is the chunk of zeros sent
 * between files. Loading dies (opts_die, exit 2) when a file cannot be
 * read or decoded. */
#ifndef ASRD_LOAD_CLIPS_H
#define ASRD_LOAD_CLIPS_H

#include <stddef.h>
#include <stdint.h>

struct load_cfg;

struct clip {
    char     id[128];                   /* file name without directory and extension ("tone" for --tone) */
    char     path[512];                 /* "" for --tone */
    uint8_t *pcm;                       /* owned; nchunks * chunk_bytes of s16le */
    char   **b64;                       /* owned (each and the array); json mode: base64 of each chunk, else NULL */
    size_t   nchunks;
    size_t   samples;                   /* decoded samples before the last chunk was completed */
};

struct clips {
    struct clip *v;                     /* owned; n >= 1 */
    size_t   n;
    size_t   chunk_bytes;               /* bytes per chunk: 16000 * chunk_ms / 1000 samples of 2 bytes */
    uint8_t *silence;                   /* owned; one chunk of zeros */
    char    *silence_b64;               /* owned; its base64 (json mode), else NULL */
    uint8_t *file;                      /* owned; the first file's bytes (a WAV of the tone), for rest */
    size_t   file_len;
    int      file_is_wav;               /* file starts RIFF....WAVE: sent as audio/wav */
};

/* Loads every file of cfg->wavs (or the tone) into c. Dies on error. */
void clips_load(struct clips *c, const struct load_cfg *cfg);
void clips_cleanup(struct clips *c);

/* The default audio: tests/data/generated/speech16k.wav looked for in the
 * working directory and then next to this executable (build/<dir>/asrd-load
 * -> ../../tests/data/generated); without it, the same sentence
 * tests/integration/run.sh speaks is made with espeak-ng into a temporary
 * WAV, removed at exit. Writes the path to out[0..n). Dies when neither
 * works. */
void clips_find_default(char *out, size_t n);

#endif
