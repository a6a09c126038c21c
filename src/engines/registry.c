/* The registry: one line per engine compiled in. An optional engine's line
 * is guarded by the define its mk/engines.mk entry sets when the library
 * was found. */
#include "engines/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"

extern const struct engine_ops engine_mock, engine_mock_windowed;
#ifdef ASRD_ENGINE_POCKETSPHINX
extern const struct engine_ops engine_pocketsphinx;
#endif

static const struct engine_ops *const engines[] = {
    &engine_mock,
    &engine_mock_windowed,
#ifdef ASRD_ENGINE_POCKETSPHINX
    &engine_pocketsphinx,
#endif
};

/* Engines this tree has sources for that are optional parts of the build. */
static const struct { const char *name; int built; } optional[] = {
    {"pocketsphinx",
#ifdef ASRD_ENGINE_POCKETSPHINX
     1
#else
     0
#endif
    },
};

#define ENGINE_COUNT (sizeof(engines) / sizeof(engines[0]))

const struct engine_ops *engines_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < ENGINE_COUNT; i++)
        if (strcmp(engines[i]->name, name) == 0) return engines[i];
    return NULL;
}

const struct engine_ops *const *engines_all(size_t *n) {
    *n = ENGINE_COUNT;
    return engines;
}

const char *engines_names(void) {
    static char names[256];             /* built once; static storage */
    if (names[0]) return names;
    size_t len = 0;
    for (size_t i = 0; i < ENGINE_COUNT; i++) {
        size_t n = strlen(engines[i]->name);
        if (len + n + 2 > sizeof(names)) break;  /* cannot happen with short names */
        if (i) names[len++] = ',';
        memcpy(names + len, engines[i]->name, n);
        len += n;
    }
    names[len] = '\0';
    return names;
}

int engines_missing(const char *name) {
    if (!name) return 0;
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        if (!optional[i].built && strcmp(optional[i].name, name) == 0) return 1;
    return 0;
}

void *engines_settings_load(const struct engine_ops *ops, const char *(*get)(const char *name), char *err,
                            size_t errlen) {
    if (!ops) return NULL;
    void *st = calloc(1, ops->settings_size ? ops->settings_size : 1);
    if (!st) {
        snprintf(err, errlen, "no memory for the settings of engine %s", ops->name);
        return NULL;
    }
    if (ops->n_settings && config_opts_load(st, ops->settings, ops->n_settings, get, err, errlen) != 0) {
        free(st);
        return NULL;
    }
    return st;
}

size_t engines_setting_names(struct config_names *out, size_t max) {
    static const char *names[256];
    static size_t n_names;
    size_t nt = 0;
    n_names = 0;
    for (size_t i = 0; i < ENGINE_COUNT && nt < max; i++) {
        if (!engines[i]->n_settings) continue;
        size_t first = n_names;
        for (size_t k = 0; k < engines[i]->n_settings && n_names < sizeof names / sizeof names[0]; k++)
            names[n_names++] = engines[i]->settings[k].name;
        out[nt++] = (struct config_names){.names = names + first, .n = n_names - first};
    }
    return nt;
}
