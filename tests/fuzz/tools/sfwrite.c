/* Writes raw s16le mono PCM (stdin) as an audio file through libsndfile, for
 * the fuzz seed corpus (gen_corpus.py): formats sox cannot write here.
 * usage: sfwrite OUT FORMAT_HEX RATE CHANNELS < in.raw
 * FORMAT_HEX is SF_FORMAT major|subtype, e.g. 230082 (MPEG Layer III). */
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: sfwrite OUT FORMAT_HEX RATE CHANNELS < in.raw\n");
        return 2;
    }
    SF_INFO info = {0};
    info.format = (int)strtol(argv[2], NULL, 16);
    info.samplerate = (int)strtol(argv[3], NULL, 10);
    info.channels = (int)strtol(argv[4], NULL, 10);
    SNDFILE *f = sf_open(argv[1], SFM_WRITE, &info);
    if (!f) {
        fprintf(stderr, "sfwrite: %s\n", sf_strerror(NULL));
        return 1;
    }
    short in[4096], out[4096 * 8];
    size_t n;
    while ((n = fread(in, 2, 4096, stdin)) > 0) {
        for (size_t i = 0; i < n; i++)
            for (int c = 0; c < info.channels && c < 8; c++) out[i * info.channels + c] = in[i];
        sf_writef_short(f, out, (sf_count_t)n);
    }
    sf_close(f);
    return 0;
}
