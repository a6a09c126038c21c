/* The registry: one line per engine compiled in. An optional engine's line
 * is guarded by the define its mk/engines.mk entry sets when the library
 * was found. */
#include "engines/registry.h"

#include <string.h>

extern const struct engine_ops engine_mock;

static const struct engine_ops *const engines[] = {
    &engine_mock,
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
