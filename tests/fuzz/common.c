/* Helpers every fuzz target shares (common.h). */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int diag_fd_ = 2;

void fuzz_common_init(void) {
    int fd = dup(2);
    if (fd >= 0) diag_fd_ = fd;
}

void fuzz_fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof msg - 2) n = (int)sizeof msg - 2;
    msg[n++] = '\n';
    if (write(diag_fd_, "fuzz: ", 6) < 0 || write(diag_fd_, msg, (size_t)n) < 0) { /* nowhere to report */ }
    abort();
}

static int b64val(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int fuzz_b64_strict(const uint8_t *s, size_t n, uint8_t *out, size_t *outlen) {
    *outlen = 0;
    if (n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=') {
                if (i + 4 != n || j < 2) return -1; /* '=' only in the last group's last two places */
                pad++;
                v[j] = 0;
                continue;
            }
            if (pad) return -1;                     /* a symbol after '=' */
            if ((v[j] = b64val(s[i + j])) < 0) return -1;
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (pad == 2 && (x & 0xffff)) return -1;    /* non-canonical: leftover bits set */
        if (pad == 1 && (x & 0xff)) return -1;
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2) out[o++] = (uint8_t)(x >> 8);
        if (pad < 1) out[o++] = (uint8_t)x;
    }
    *outlen = o;
    return 0;
}
