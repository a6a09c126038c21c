/* opts: the command line of asrd-load (docs/LOAD.md "Options"), parsed and
 * checked once at start into a struct load_cfg that the other modules read
 * and none writes. The scenario is looked up in the scenario table
 * (scenario.h), which also says which options it takes and checks its own.
 *
 * A usage error prints "asrd-load: <why>" and exits with status 2: the one
 * exit path before the loop starts (opts_die, also used by clips). */
#ifndef ASRD_LOAD_OPTS_H
#define ASRD_LOAD_OPTS_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "loadstat.h"

#define LOAD_STREAM_PATH "/v1/transcribe/stream"
#define LOAD_SAMPLE_RATE 16000
#define LOAD_DEFAULT_WAV "tests/data/generated/speech16k.wav"

struct scenario;

/* Where the server is. Only loopback addresses are accepted: the tool makes
 * enough traffic to hurt a shared network or someone else's server. */
struct load_target {
    char host[300];                     /* as written in the URL, with the port, for Host: */
    char path[512];                     /* request target of the upgrade */
    struct sockaddr_storage addr;       /* the loopback address (no name is looked up) */
    char api_key[256];                  /* sent as Authorization: Bearer; "" = none */
};

/* Options given on the command line (bits of load_cfg.given), for the
 * checks and the defaults that depend on whether an option was set. */
enum {
    OPT_GIVEN_SESSIONS = 1u << 0,
    OPT_GIVEN_WAV      = 1u << 1,
    OPT_GIVEN_CSTART   = 1u << 2,       /* --capacity-start */
    OPT_GIVEN_CSTEP    = 1u << 3,       /* --capacity-step */
    OPT_GIVEN_CMAX     = 1u << 4,       /* --capacity-max */
};

struct load_cfg {
    struct loadstat_opts o;             /* the options as the JSON result records them */
    const struct scenario *sc;          /* borrowed: its entry in the scenario table */
    struct load_target t;
    int      json_mode;                 /* --mode json */
    char     json_out[512], svg_out[512];
    char     hyp_out[512];              /* speech: --hyp, "" = none */
    unsigned slow_rcvbuf;               /* SO_RCVBUF of slow readers, 0 = kernel default */
    int      quiet;
    unsigned given;                     /* OPT_GIVEN_* */
    char   **wavs;                      /* owned (each and the array): every --wav, in order; directories expanded */
    size_t   n_wavs;
};

/* Fills cfg from argv (cfg is zeroed first). Prints --help and exits 0;
 * exits 2 on a usage error. Release with opts_cleanup. */
void opts_parse(struct load_cfg *cfg, int argc, char **argv);
void opts_cleanup(struct load_cfg *cfg);

/* Prints "asrd-load: <message>" on stderr and exits 2. */
void opts_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Slots the run needs at most: sessions (or rest clients) of its largest
 * phase, for the descriptor limit and the session table. */
unsigned opts_max_target(const struct load_cfg *cfg);

#endif
