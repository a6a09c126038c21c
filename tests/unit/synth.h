/* Synthetic voiced "speech" for unit tests: harmonics of a wobbling 120 Hz
 * pitch with two formant boosts and a 4 Hz syllable envelope; WebRTC VAD
 * calls it speech at every mode. */
#ifndef ASRD_TEST_SYNTH_H
#define ASRD_TEST_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline void synth_voiced(int16_t *out, size_t n, unsigned rate, double t0) {
    for (size_t i = 0; i < n; i++) {
        double t = t0 + (double)i / rate;
        double f0 = 120.0 + 20.0 * sin(2 * M_PI * 1.5 * t);
        double s = 0;
        for (int h = 1; h <= 30; h++) {
            double f = f0 * h;
            if (f > 3800) break;
            double g = 1.0 / h;
            if (fabs(f - 700) < 200 || fabs(f - 1200) < 250) g *= 3;
            s += g * sin(2 * M_PI * f * t + h);
        }
        s *= 0.6 + 0.4 * sin(2 * M_PI * 4 * t);
        out[i] = (int16_t)lrint(s * 3000);
    }
}

#endif
