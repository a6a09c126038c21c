/* asrd entry point: settings from the environment, then the master, which
 * forks the workers (master.h). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"
#include "server/master.h"
#include "store/store.h"
#include "server/worker.h"

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_print_help(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("asrd %s\n", ASRD_VERSION);
            return 0;
        }
        fprintf(stderr, "asrd: unknown argument \"%s\" (settings are ASR_* environment variables; see --help)\n",
                argv[i]);
        return 2;
    }
    static struct config cfg;
    char err[256];
    if (config_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "asrd: invalid configuration: %s\n", err);
        return 2;
    }
    struct store_url su;
    if (cfg.redis_url[0] && store_url_parse(cfg.redis_url, &su) != 0) {
        fprintf(stderr, "asrd: invalid configuration: ASR_REDIS_URL: not a redis://[:password@]host[:port][/db] "
                        "or unix:///path URL\n");
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "asrd: libsodium failed to initialize\n");
        return 1;
    }
    log_setup(cfg.log_level, cfg.log_format, "master");
    char dump[4096];
    config_dump_json(&cfg, dump, sizeof dump);
    struct log_line *l = log_begin(LOG_INFO, "configuration");
    if (l) {
        log_str(l, "version", ASRD_VERSION);
        log_raw(l, "config", dump);
        log_end(l);
    }
    return master_run(&cfg);
}
