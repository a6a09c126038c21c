/* The engines built into this binary, by name. An engine is one file under
 * src/engines/ plus one line in registry.c; an engine whose library is
 * missing at build time is left out (mk/engines.mk) and named by
 * engines_missing() so start-up can say why it cannot be selected. */
#ifndef ASRD_ENGINES_REGISTRY_H
#define ASRD_ENGINES_REGISTRY_H

#include <stddef.h>

#include "core/engine.h"

/* The table named name, or NULL when no engine of that name is built in. */
const struct engine_ops *engines_find(const char *name);
/* Comma-separated names of the engines built in (for --help and errors). */
const char *engines_names(void);
/* The built-in tables; *n gets their count. Static storage. */
const struct engine_ops *const *engines_all(size_t *n);
/* 1 when name is an engine this source tree knows but this build left out
 * (its library was missing at build time). */
int engines_missing(const char *name);

#endif
