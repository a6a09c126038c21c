/* Helpers every fuzz target shares. */
#ifndef ASRD_FUZZ_COMMON_H
#define ASRD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Call from LLVMFuzzerInitialize: keeps a copy of stderr for fuzz_fail(),
 * because run.sh passes -close_fd_mask=2 (the server's log lines on fd 2
 * are discarded; libFuzzer reports on its own copy of fd 2, taken later). */
void fuzz_common_init(void);

/* Prints "fuzz: <message>" where libFuzzer's report goes, then aborts (a
 * crash libFuzzer saves as crash-<sha1>). */
void fuzz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Strict base64 as API.md states it for audio_chunk.data: RFC 4648
 * section 4 alphabet, '=' padding to a multiple of 4, no whitespace, and
 * canonical (the unused bits of the last symbol are zero). On 0 the bytes
 * are in out (room for n / 4 * 3 needed) and their count in *outlen; -1
 * when s is not such base64. Written here, independently of libsodium. */
int fuzz_b64_strict(const uint8_t *s, size_t n, uint8_t *out, size_t *outlen);

#endif
