/* fuzz_stream_msg: wire_decode_client_msg() (src/api/wire.h), the decoder of
 * every client text message, on arbitrary bytes.
 *
 * Besides the sanitizers, each input is checked against a reference decoder
 * written from docs/API.md "What the client sends" with nothing but jansson
 * (JSON_REJECT_DUPLICATES) and the strict base64 decoder of common.c (API.md:
 * standard alphabet, padded, no whitespace): same verdict (message or
 * INVALID_MESSAGE), same type, same sequence, same INVALID_AUDIO verdict,
 * same PCM bytes, and for a config message the same string (expected_text
 * or reference_id, exactly one of them a string). wire.c takes a faster path for messages over 256
 * bytes (the base64 value is cut out before jansson sees the rest), so this
 * is a differential test of that path against the plain one.
 * (It found docs/FUZZING.md findings 3 and 4.) */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "base/err.h"
#include "api/wire.h"
#include "base/util.h"

struct ref {
    int rc;                  /* 0 or ASR_E_INVALID_MESSAGE */
    int type, has_seq, audio_err;
    uint64_t seq;
    unsigned char *audio;    /* owned */
    size_t audio_len;
    const char *text;        /* config: borrowed from the jansson value until ref_free */
    size_t text_len;
    int is_reference;
    json_t *json;            /* owned */
};

static void ref_decode(const uint8_t *p, size_t n, struct ref *r) {
    memset(r, 0, sizeof *r);
    r->rc = ASR_E_INVALID_MESSAGE;
    json_error_t e;
    json_t *m = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
    if (!m) return;
    const char *type = json_is_object(m) ? json_string_value(json_object_get(m, "type")) : NULL;
    if (!type) goto out;
    if (strcmp(type, "stop") == 0) r->type = WIRE_STOP;
    else if (strcmp(type, "finalize") == 0) r->type = WIRE_FINALIZE;
    else if (strcmp(type, "keepalive") == 0) r->type = WIRE_KEEPALIVE;
    else if (strcmp(type, "config") == 0) {
        json_t *t = json_object_get(m, "expected_text"), *ref = json_object_get(m, "reference_id");
        if ((t != NULL) == (ref != NULL)) goto out;
        json_t *v = t ? t : ref;
        if (!json_is_string(v)) goto out;
        r->type = WIRE_CONFIG;
        r->text = json_string_value(v);
        r->text_len = json_string_length(v);
        r->is_reference = ref != NULL;
        r->json = json_incref(m);
    } else if (strcmp(type, "audio_chunk") == 0) {
        json_t *data = json_object_get(m, "data"), *seq = json_object_get(m, "sequence");
        if (!json_is_string(data)) goto out;
        if (seq) {
            if (!json_is_integer(seq) || json_integer_value(seq) < 0) goto out;
            r->has_seq = 1;
            r->seq = (uint64_t)json_integer_value(seq);
        }
        r->type = WIRE_AUDIO_CHUNK;
        size_t bl = json_string_length(data);
        r->audio = xmalloc(bl / 4 * 3 + 1);
        if (fuzz_b64_strict((const uint8_t *)json_string_value(data), bl, r->audio, &r->audio_len) != 0)
            r->audio_err = ASR_E_INVALID_AUDIO;
    } else {
        goto out;
    }
    r->rc = 0;
out:
    json_decref(m);
}

static void mismatch(const char *what, const struct wire_client_msg *m, const struct ref *r, int rc) {
    fuzz_fail("fuzz_stream_msg: %s: decode rc %d type %d seq %d/%llu audio_err %d len %zu; "
              "reference rc %d type %d seq %d/%llu audio_err %d len %zu",
              what, rc, rc ? 0 : (int)m->type, m->has_seq, (unsigned long long)m->seq, m->audio_err, m->audio_len,
              r->rc, r->type, r->has_seq, (unsigned long long)r->seq, r->audio_err, r->audio_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_common_init();
    if (sodium_init() < 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct buf scratch; /* reused across messages, as api/stream.c does */
    struct wire_client_msg m;
    int rc = wire_decode_client_msg(data, size, &scratch, &m);
    struct ref r;
    ref_decode(data, size, &r);

    if (rc != 0 && rc != ASR_E_INVALID_MESSAGE) mismatch("unexpected return code", &m, &r, rc);
    if (rc == ASR_E_INVALID_MESSAGE && !m.why) mismatch("INVALID_MESSAGE without a reason", &m, &r, rc);
    if (rc != r.rc) mismatch("verdicts differ", &m, &r, rc);
    if (rc == 0) {
        if ((int)m.type != r.type) mismatch("types differ", &m, &r, rc);
        if (m.has_seq != r.has_seq || (m.has_seq && m.seq != r.seq)) mismatch("sequences differ", &m, &r, rc);
        if (m.type == WIRE_CONFIG &&
            (m.is_reference != r.is_reference || m.text_len != r.text_len ||
             (m.text_len && memcmp(m.text, r.text, m.text_len) != 0) || m.text[m.text_len] != '\0' ||
             m.text < scratch.data || m.text + m.text_len >= scratch.data + scratch.cap))
            mismatch("config strings differ", &m, &r, rc);
        if (m.type == WIRE_AUDIO_CHUNK) {
            if (m.audio_err != r.audio_err) mismatch("base64 verdicts differ", &m, &r, rc);
            if (!m.audio_err && !r.audio_err) {
                if (m.audio_len != r.audio_len || (m.audio_len && memcmp(m.audio, r.audio, m.audio_len) != 0))
                    mismatch("decoded audio differs", &m, &r, rc);
                /* The PCM lies in the scratch buffer the caller owns. */
                if (m.audio_len && ((const char *)m.audio < scratch.data ||
                                    (const char *)m.audio + m.audio_len > scratch.data + scratch.cap))
                    mismatch("audio outside the scratch buffer", &m, &r, rc);
            }
        }
    }
    free(r.audio);
    json_decref(r.json);
    return 0;
}
