/* Transcript output formats (formats.h). */
#include "api/formats.h"

#include <string.h>

#include "base/err.h"

static const char *const names[FMT__N] = {"json", "text", "srt", "vtt", "verbose_json"};
static const char *const types[FMT__N] = {"application/json", "text/plain; charset=utf-8",
                                          "application/x-subrip; charset=utf-8", "text/vtt; charset=utf-8",
                                          "application/json"};

int fmt_parse(const char *name, size_t len) {
    for (int k = 0; k < FMT__N; k++)
        if (strlen(names[k]) == len && memcmp(names[k], name, len) == 0) return k;
    return -1;
}

const char *fmt_name(enum fmt_kind k) { return k < FMT__N ? names[k] : "?"; }
const char *fmt_content_type(enum fmt_kind k) { return k < FMT__N ? types[k] : "application/octet-stream"; }

static int join(struct buf *out, const struct fmt_transcript *t) {
    int bad = 0;
    size_t start = out->len;
    for (size_t i = 0; i < t->n; i++) {
        if (!t->segs[i].len) continue;
        if (out->len > start) bad |= buf_append(out, " ", 1);
        bad |= buf_append(out, t->segs[i].text, t->segs[i].len);
    }
    return bad;
}

int fmt_text(struct buf *out, const struct fmt_transcript *t) {
    int bad = join(out, t);
    bad |= buf_append(out, "\n", 1);
    return bad ? ASR_ENOMEM : 0;
}

/* HH:MM:SS<sep>mmm */
static int put_time(struct buf *out, uint64_t ms, char sep) {
    return buf_printf(out, "%02llu:%02llu:%02llu%c%03llu", (unsigned long long)(ms / 3600000),
                      (unsigned long long)(ms / 60000 % 60), (unsigned long long)(ms / 1000 % 60), sep,
                      (unsigned long long)(ms % 1000));
}

static int cues(struct buf *out, const struct fmt_transcript *t, char sep, int numbered) {
    int bad = 0;
    size_t cue = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct fmt_segment *s = &t->segs[i];
        if (!s->len) continue;
        cue++;
        if (numbered) bad |= buf_printf(out, "%zu\n", cue);
        bad |= put_time(out, s->start_ms, sep);
        bad |= buf_puts(out, " --> ");
        bad |= put_time(out, s->end_ms > s->start_ms ? s->end_ms : s->start_ms, sep);
        bad |= buf_append(out, "\n", 1);
        bad |= buf_append(out, s->text, s->len);
        bad |= buf_puts(out, "\n\n");
    }
    return bad;
}

int fmt_srt(struct buf *out, const struct fmt_transcript *t) { return cues(out, t, ',', 1) ? ASR_ENOMEM : 0; }

int fmt_vtt(struct buf *out, const struct fmt_transcript *t) {
    int bad = buf_puts(out, "WEBVTT\n\n");
    bad |= cues(out, t, '.', 0);
    return bad ? ASR_ENOMEM : 0;
}

static int put_seconds(struct buf *out, uint64_t ms) {
    return buf_printf(out, "%llu.%03llu", (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
}

int fmt_json_text(struct buf *out, const struct fmt_transcript *t) {
    struct buf txt;
    buf_init(&txt, 0);
    int bad = join(&txt, t);
    bad |= buf_puts(out, "{\"text\":");
    bad |= buf_json_str(out, txt.data ? txt.data : "", txt.len);
    bad |= buf_puts(out, "}");
    buf_cleanup(&txt);
    return bad ? ASR_ENOMEM : 0;
}

int fmt_verbose_json(struct buf *out, const struct fmt_transcript *t, int want_segments, int want_words) {
    struct buf txt;
    buf_init(&txt, 0);
    int bad = join(&txt, t);
    bad |= buf_puts(out, "{\"task\":\"transcribe\",\"language\":");
    const char *lang = t->language ? t->language : "english";
    bad |= buf_json_str(out, lang, strlen(lang));
    bad |= buf_puts(out, ",\"duration\":");
    bad |= put_seconds(out, t->duration_ms);
    bad |= buf_puts(out, ",\"text\":");
    bad |= buf_json_str(out, txt.data ? txt.data : "", txt.len);
    buf_cleanup(&txt);
    if (want_segments) {
        bad |= buf_puts(out, ",\"segments\":[");
        size_t id = 0;
        for (size_t i = 0; i < t->n; i++) {
            const struct fmt_segment *s = &t->segs[i];
            if (!s->len) continue;
            bad |= buf_printf(out, "%s{\"id\":%zu,\"seek\":0,\"start\":", id ? "," : "", id);
            bad |= put_seconds(out, s->start_ms);
            bad |= buf_puts(out, ",\"end\":");
            bad |= put_seconds(out, s->end_ms);
            bad |= buf_puts(out, ",\"text\":");
            bad |= buf_json_str(out, s->text, s->len);
            /* fields OpenAI's clients read; asrd has no token ids or log-probs */
            bad |= buf_puts(out, ",\"tokens\":[],\"temperature\":0.0,\"avg_logprob\":0.0,"
                                 "\"compression_ratio\":0.0,\"no_speech_prob\":0.0}");
            id++;
        }
        bad |= buf_puts(out, "]");
    }
    if (want_words) {
        bad |= buf_puts(out, ",\"words\":[");
        size_t k = 0;
        for (size_t i = 0; i < t->n; i++)
            for (size_t j = 0; j < t->segs[i].n_words; j++) {
                const struct engine_word *w = &t->segs[i].words[j];
                bad |= buf_puts(out, k++ ? ",{\"word\":" : "{\"word\":");
                bad |= buf_json_str(out, w->text, w->len);
                bad |= buf_puts(out, ",\"start\":");
                bad |= put_seconds(out, w->start_ms);
                bad |= buf_puts(out, ",\"end\":");
                bad |= put_seconds(out, w->end_ms);
                bad |= buf_puts(out, "}");
            }
        bad |= buf_puts(out, "]");
    }
    bad |= buf_puts(out, "}");
    return bad ? ASR_ENOMEM : 0;
}

int fmt_render(struct buf *out, enum fmt_kind k, const struct fmt_transcript *t) {
    switch (k) {
    case FMT_JSON: return fmt_json_text(out, t);
    case FMT_TEXT: return fmt_text(out, t);
    case FMT_SRT: return fmt_srt(out, t);
    case FMT_VTT: return fmt_vtt(out, t);
    case FMT_VERBOSE_JSON: {
        int words = 0;
        for (size_t i = 0; i < t->n; i++) words |= t->segs[i].n_words > 0;
        return fmt_verbose_json(out, t, 1, words);
    }
    default: return ASR_EINVAL;
    }
}
