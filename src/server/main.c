/* asrd entry point: settings from the environment, checked for what cannot
 * work (exit 2 with a message naming the setting), then the master, which
 * forks the workers (master.h). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>

#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
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

extern char **environ;

/* Every ASR_* variable must be a setting: a typo such as ASR_API_KEY would
 * otherwise leave the server open without a word. The known names come
 * from every settings table: the server's and each built-in engine's (an
 * engine's setting is no typo when another engine is selected). */
static int check_unknown(void) {
    struct config_names tables[16];
    tables[0] = config_own_names();
    size_t nt = 1 + engines_setting_names(tables + 1, sizeof tables / sizeof tables[0] - 1);
    char err[2048];
    if (config_check_unknown(environ, tables, nt, err, sizeof err) == 0) return 0;
    for (char *line = err, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        fprintf(stderr, "asrd: %.*s\n", (int)(nl ? nl - line : (long)strlen(line)), line);
    }
    return 2;
}

/* What the settings select must exist: the engine, the store. */
static int check_choices(const struct config *cfg) {
    if (!engines_find(cfg->engine)) {
        if (engines_missing(cfg->engine))
            fprintf(stderr, "asrd: ASR_ENGINE: \"%s\" is not built into this binary (its library was missing "
                            "when it was built: install it and rebuild, see mk/engines.mk); built in: %s\n",
                    cfg->engine, engines_names());
        else
            fprintf(stderr, "asrd: ASR_ENGINE: unknown engine \"%s\", allowed %s\n", cfg->engine, engines_names());
        return 2;
    }
    struct store_url su;
    if (cfg->job_redis_url[0] && store_url_parse(cfg->job_redis_url, &su) != 0) {
        fprintf(stderr, "asrd: invalid configuration: ASR_JOB_REDIS_URL: not a redis://[:password@]host[:port][/db] "
                        "or unix:///path URL\n");
        return 2;
    }
    if (strcmp(cfg->redis_url, CONFIG_STORE_MEMORY) == 0) {
        if (cfg->workers != 1) {
            fprintf(stderr, "asrd: ASR_REDIS_URL=memory keeps sessions inside one worker process, so it needs "
                            "ASR_WORKERS=1 (now %d%s); leave ASR_REDIS_URL empty for the private redis-server "
                            "that all workers share\n",
                    cfg->workers, cfg->workers == 0 ? ": one per CPU core" : "");
            return 2;
        }
        return 0;
    }
    if (cfg->redis_url[0] && store_url_parse(cfg->redis_url, &su) != 0) {
        fprintf(stderr, "asrd: invalid configuration: ASR_REDIS_URL: not a redis://[:password@]host[:port][/db] "
                        "or unix:///path URL, nor \"memory\"\n");
        return 2;
    }
    if (!cfg->redis_url[0] && access(cfg->redis_server, X_OK) != 0) {
        fprintf(stderr, "asrd: the default session store is a private redis-server, and %s is not there "
                        "(ASR_REDIS_SERVER). Install it (apt-get install redis-server), or point ASR_REDIS_URL "
                        "at a Redis you run (redis://host:port), or run one worker with its sessions in "
                        "memory: ASR_REDIS_URL=memory ASR_WORKERS=1\n", cfg->redis_server);
        return 2;
    }
    return 0;
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
    if (check_unknown() != 0) return 2;
    static struct config cfg;
    char err[256];
    if (config_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "asrd: invalid configuration: %s\n", err);
        return 2;
    }
    if (check_choices(&cfg) != 0) return 2;
    const struct engine_ops *ops = engines_find(cfg.engine);
    void *engine_settings = engines_settings_load(ops, env_get, err, sizeof err);
    if (!engine_settings) {
        fprintf(stderr, "asrd: invalid configuration: %s\n", err);
        return 2;
    }
    cfg.engine_settings = engine_settings; /* process lifetime */
    if (sodium_init() < 0) {
        fprintf(stderr, "asrd: libsodium failed to initialize\n");
        return 1;
    }
    if (!cfg.token_secret[0]) { /* tokens then hold on this instance only (base/config.h) */
        util_random_id(cfg.token_secret);
        util_random_id(cfg.token_secret + 32);
        cfg.token_secret_random = 1;
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
    if (cfg.token_secret_random && (l = log_begin(LOG_INFO, "access tokens hold on this instance only"))) {
        log_str(l, "why", "ASR_TOKEN_SECRET is empty: a random secret was made at start");
        log_end(l);
    }
    return master_run(&cfg);
}
