/* Settings for the mock engines in unit tests: the engine's own table
 * (ASR_MOCK_*) filled from a few values, the way main() fills it from the
 * environment. */
#ifndef ASRD_TEST_MOCK_SETTINGS_H
#define ASRD_TEST_MOCK_SETTINGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/registry.h"

static char mock_env_latency[32], mock_env_wpc[32], mock_env_err[32], mock_env_seed[32];
static const char *mock_env_extra_name, *mock_env_extra_value;

static const char *mock_env_get(const char *name) {
    if (strcmp(name, "ASR_MOCK_LATENCY_MS") == 0) return mock_env_latency;
    if (strcmp(name, "ASR_MOCK_WORDS_PER_CHUNK") == 0) return mock_env_wpc;
    if (strcmp(name, "ASR_MOCK_ERROR_RATE") == 0) return mock_env_err;
    if (strcmp(name, "ASR_MOCK_SEED") == 0) return mock_env_seed;
    if (mock_env_extra_name && strcmp(name, mock_env_extra_name) == 0) return mock_env_extra_value;
    return NULL;
}

/* A heap settings struct for the mock engines (the caller frees it), or NULL
 * when a value is out of the table's range. */
static inline void *mock_settings(long latency_ms, long wpc, double error_rate, long seed) {
    snprintf(mock_env_latency, sizeof mock_env_latency, "%ld", latency_ms);
    snprintf(mock_env_wpc, sizeof mock_env_wpc, "%ld", wpc);
    snprintf(mock_env_err, sizeof mock_env_err, "%.17g", error_rate);
    snprintf(mock_env_seed, sizeof mock_env_seed, "%ld", seed);
    char err[256];
    return engines_settings_load(engines_find("mock"), mock_env_get, err, sizeof err);
}

#endif
