/* core/adaptive: the window new sessions get follows the mean latency. */
#include "test.h"

#include "core/adaptive.h"

static const struct adaptive_cfg seed = {.high_ms = 800, .low_ms = 300, .min_ms = 1000, .max_ms = 5000,
                                         .step_ms = 500, .min_samples = 10};

TEST(adaptive_grows_above_high_up_to_max) {
    ASSERT_EQ_INT(adaptive_next(&seed, 1000, 801, 50), 1500);
    ASSERT_EQ_INT(adaptive_next(&seed, 4500, 2000, 50), 5000);
    ASSERT_EQ_INT(adaptive_next(&seed, 5000, 2000, 50), 5000);
    ASSERT_EQ_INT(adaptive_next(&seed, 4800, 2000, 50), 5000);      /* not past max */
}

TEST(adaptive_shrinks_below_low_down_to_min) {
    ASSERT_EQ_INT(adaptive_next(&seed, 3000, 299, 50), 2500);
    ASSERT_EQ_INT(adaptive_next(&seed, 1500, 10, 50), 1000);
    ASSERT_EQ_INT(adaptive_next(&seed, 1000, 10, 50), 1000);
    ASSERT_EQ_INT(adaptive_next(&seed, 1200, 10, 50), 1000);        /* not below min */
}

TEST(adaptive_stays_between_thresholds_or_without_samples) {
    ASSERT_EQ_INT(adaptive_next(&seed, 2000, 300, 50), 2000);
    ASSERT_EQ_INT(adaptive_next(&seed, 2000, 800, 50), 2000);
    ASSERT_EQ_INT(adaptive_next(&seed, 2000, 5000, 9), 2000);       /* too few latencies */
    ASSERT_EQ_INT(adaptive_next(&seed, 2000, 0, 0), 2000);
}

TEST(adaptive_window_set_outside_the_bounds) {
    /* ASR_WINDOW_MS=500 with a floor of 1000: shrinking leaves it, growing starts from it */
    ASSERT_EQ_INT(adaptive_next(&seed, 500, 10, 50), 500);
    ASSERT_EQ_INT(adaptive_next(&seed, 500, 900, 50), 1000);
    ASSERT_EQ_INT(adaptive_next(&seed, 8000, 900, 50), 8000);
    ASSERT_EQ_INT(adaptive_next(&seed, 8000, 10, 50), 7500);
}
