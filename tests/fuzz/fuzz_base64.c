/* fuzz_base64: the base64 decoding of `audio_chunk.data` (wire.c:
 * decode_audio: b64_decode_strict, OpenSSL's EVP_DecodeBlock after a strict check, into
 * the caller's scratch buffer), reached the way a client reaches it: the
 * input is put into {"type":"audio_chunk","data":"<input>"...} and handed to
 * wire_decode_client_msg(). Oracles:
 *   - the specification: a strict RFC 4648 section 4 decoder written from
 *     API.md ("standard base64 *with* = padding and no whitespace";
 *     canonical: unused bits of the last symbol zero), common.c. asrd must
 *     accept exactly what it accepts (INVALID_AUDIO otherwise, or
 *     INVALID_MESSAGE when the text broke the JSON) and yield its bytes;
 *   - libsodium itself: whatever asrd accepts, sodium_base642bin on the
 *     input with a roomy buffer decodes to the same bytes (this checks
 *     asrd's buffer sizing and the fast path's span handling).
 * (It found docs/FUZZING.md finding 3: libsodium 1.0.18 takes bytes >= 0x80
 * for base64 digits.)
 *
 * Input: one flags byte, then the base64 text.
 *   bit 0  escape the text as a JSON string (quotes, backslashes, control
 *          characters become escapes; that also sends it down jansson's
 *          path), else insert it raw
 *   bit 1  "data" before "type" (else after)
 *   bit 2  add "sequence":7
 *   bit 3  pad the message past 256 bytes with an extra field, so that a
 *          short value still takes the fast path
 *   bit 4  spaces around the colon after "data" */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "base/err.h"
#include "api/wire.h"
#include "base/util.h"

static void fail(const char *what, const uint8_t *s, size_t n) {
    fuzz_fail("fuzz_base64: %s (input %zu bytes: \"%.*s\")", what, n, (int)(n < 200 ? n : 200), s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_common_init();
    if (sodium_init() < 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct buf scratch, msg;
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const uint8_t *s = data + 1;
    size_t n = size - 1;

    /* Build the message. */
    buf_reset(&msg);
    const char *colon = (flags & 16) ? " : " : ":";
    buf_puts(&msg, "{");
    if (!(flags & 2)) buf_puts(&msg, "\"type\":\"audio_chunk\",");
    if (flags & 8) {
        buf_puts(&msg, "\"pad\":\"");
        for (int i = 0; i < 260; i++) buf_append(&msg, "x", 1);
        buf_puts(&msg, "\",");
    }
    buf_printf(&msg, "\"data\"%s\"", colon);
    if (flags & 1) {
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\') buf_printf(&msg, "\\%c", s[i]);
            else if (s[i] < 0x20) buf_printf(&msg, "\\u%04x", s[i]);
            else buf_append(&msg, &s[i], 1);
        }
    } else {
        buf_append(&msg, s, n);
    }
    buf_puts(&msg, "\"");
    if (flags & 4) buf_puts(&msg, ",\"sequence\":7");
    if (flags & 2) buf_puts(&msg, ",\"type\":\"audio_chunk\"");
    buf_puts(&msg, "}");

    /* The decoders. */
    struct wire_client_msg m;
    int rc = wire_decode_client_msg((const uint8_t *)msg.data, msg.len, &scratch, &m);
    uint8_t *so = xmalloc(n + 1), *ro = xmalloc(n / 4 * 3 + 1);
    size_t sl = 0, rl = 0;
    int src = sodium_base642bin(so, n + 1, (const char *)s, n, NULL, &sl, NULL, sodium_base64_VARIANT_ORIGINAL);
    int rrc = fuzz_b64_strict(s, n, ro, &rl);

    /* Raw quotes or backslashes change the message's structure: the value
     * jansson sees is not the input then, so only the sanitizers judge. */
    int comparable = (flags & 1) || (!memchr(s, '"', n) && !memchr(s, '\\', n));
    if (!comparable) {
        /* nothing to compare */
    } else if (rc == ASR_E_INVALID_MESSAGE) {
        /* Only JSON-level trouble (raw control characters, bad UTF-8, NUL)
         * may make the message invalid: never valid base64. */
        if (rrc == 0) fail("valid base64 made the message invalid", s, n);
    } else if (rc != 0 || m.type != WIRE_AUDIO_CHUNK) {
        fail("not decoded as an audio_chunk", s, n);
    } else if (m.audio_err) {
        if (rrc == 0) fail("valid base64 refused as INVALID_AUDIO", s, n);
    } else {
        if (rrc != 0) fail("invalid base64 accepted as audio", s, n);
        if (rrc == 0 && (m.audio_len != rl || (rl && memcmp(m.audio, ro, rl) != 0)))
            fail("decoded bytes differ from RFC 4648", s, n);
        if (src != 0 || m.audio_len != sl || (sl && memcmp(m.audio, so, sl) != 0))
            fail("decoded bytes differ from sodium_base642bin", s, n);
        if (m.has_seq != !!(flags & 4) || (m.has_seq && m.seq != 7)) fail("sequence lost", s, n);
    }
    free(so);
    free(ro);
    return 0;
}
