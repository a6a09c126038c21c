/* The scenario table (scenario.h): one line per scenario, in the order
 * --help lists them. Each X(name) is `const struct scenario sc_<name>`,
 * defined in its own file. */
#include "scenario.h"

#include <string.h>

#define SCENARIO_TABLE(X) \
    X(sustained)          \
    X(ramp)               \
    X(capacity)           \
    X(slow_readers)       \
    X(churn)              \
    X(rest)               \
    X(flood)              \
    X(speech)             \
    X(speech_capacity)

#define DECLARE_(n) extern const struct scenario sc_##n;
SCENARIO_TABLE(DECLARE_)
#undef DECLARE_

#define ENTRY_(n) &sc_##n,
static const struct scenario *const table[] = {SCENARIO_TABLE(ENTRY_)};
#undef ENTRY_

#define N_SCENARIOS (sizeof table / sizeof table[0])

const struct scenario *scenario_find(const char *name) {
    for (size_t i = 0; i < N_SCENARIOS; i++)
        if (strcmp(table[i]->name, name) == 0) return table[i];
    return NULL;
}

const char *scenario_names(void) {
    static char names[256];
    if (!names[0]) {
        size_t n = 0;
        for (size_t i = 0; i < N_SCENARIOS && n < sizeof names; i++) {
            size_t len = strlen(table[i]->name);
            if (n + len + 2 > sizeof names) break;
            if (i) names[n++] = '|';
            memcpy(names + n, table[i]->name, len);
            n += len;
        }
        names[n] = 0;
    }
    return names;
}
