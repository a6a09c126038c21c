/* asrd entry point: settings from the environment, then the master, which
 * forks the workers (master.h). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "base/config.h"
#include "base/log.h"
#include "engines/registry.h"
#include "server/master.h"
#include "server/worker.h"
#include "store/store.h"

static const char *env_get(const char *name) { return getenv(name); }

/* --help: the server's settings, then each built-in engine's own. */
static void print_help(void) {
    config_print_help(stdout);
    size_t n;
    const struct engine_ops *const *all = engines_all(&n);
    for (size_t i = 0; i < n; i++) {
        if (!all[i]->n_settings) continue;
        printf("\nsettings of engine %s (ASR_ENGINE=%s):\n", all[i]->name, all[i]->name);
        /* two engines may share one table (the mock ones): print it once */
        int seen = 0;
        for (size_t k = 0; k < i; k++) seen |= all[k]->settings == all[i]->settings;
        if (seen) printf("  (the same as above)\n");
        else config_opts_help(stdout, all[i]->settings, all[i]->n_settings);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
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
    const struct engine_ops *ops = engines_find(cfg.engine);
    if (!ops) {
        if (engines_missing(cfg.engine))
            fprintf(stderr, "asrd: invalid configuration: ASR_ENGINE: \"%s\" is not built into this binary (its "
                            "library was missing when it was built; see mk/engines.mk); built in: %s\n",
                    cfg.engine, engines_names());
        else
            fprintf(stderr, "asrd: invalid configuration: ASR_ENGINE: unknown engine \"%s\", allowed %s\n",
                    cfg.engine, engines_names());
        return 2;
    }
    void *engine_settings = engines_settings_load(ops, env_get, err, sizeof err);
    if (!engine_settings) {
        fprintf(stderr, "asrd: invalid configuration: %s\n", err);
        return 2;
    }
    cfg.engine_settings = engine_settings; /* process lifetime */
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
    config_dump_json(&cfg, ops->settings, ops->n_settings, dump, sizeof dump);
    struct log_line *l = log_begin(LOG_INFO, "configuration");
    if (l) {
        log_str(l, "version", ASRD_VERSION);
        log_raw(l, "config", dump);
        log_end(l);
    }
    return master_run(&cfg);
}
