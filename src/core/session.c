/* Streaming session logic. See session.h for the contract and
 * docs/internals/chunk-pipeline.md for the design:
 *
 * An accepted chunk runs through the VAD at once (on the loop, cheap), which
 * may report utterance starts and ends inside it. The chunk's audio is cut at
 * each end into segments; each segment is one engine submit, and each end is
 * one engine finalize, in that order. The engine completes requests of a
 * session in order, so completions need no tags: a segment completion belongs
 * to the oldest partial still waiting for parts, a finalize completion to the
 * oldest final still waiting for text.
 *
 * Answers wait in one ring in the order they must leave (docs/API.md
 * "Sequence numbers": answers in sequence order; "Fine points":
 * speech_started before the partial of its chunk). For one chunk the order is
 * its speech_started events, its partial (or error), then the finals its
 * audio decided. The ring is flushed from the head whenever an answer at the
 * head becomes ready. */
#include "core/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/err.h"
#include "base/metrics.h"
#include "base/util.h"
#include "core/agree.h"
#include "core/audio.h"
#include "core/engine.h"
#include "core/feedback.h"
#include "core/pool.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "asrd reads s16le PCM in place and needs a little-endian host"
#endif

enum ans_kind { ANS_PARTIAL, ANS_FINAL, ANS_SPEECH, ANS_ERROR, ANS_VERIFY };

struct answer {
    uint8_t  kind;             /* enum ans_kind */
    uint8_t  failed;           /* PARTIAL: a part failed -> MODEL_ERROR; FINAL: its text did not come;
                                  VERIFY: none (err says why) */
    uint8_t  is_speech;        /* PARTIAL */
    uint8_t  has_text;         /* FINAL: text arrived (or empty final); VERIFY: ready */
    uint8_t  server_busy;      /* PARTIAL (windowed): its window was skipped */
    uint8_t  redecoded;        /* VERIFY: from a second decode of the session's audio */
    uint16_t parts_left;       /* PARTIAL: engine submits not yet done */
    int      err;              /* ERROR: asr_err; failed PARTIAL/FINAL: the first engine status */
    uint64_t seq;              /* sequence it answers / refers to */
    uint64_t a, b;             /* FINAL: start_ms, end_ms; SPEECH: offset_ms; ERROR: detail;
                                  VERIFY: audio_ms decoded (0: the session's finals) */
    uint64_t t_arrival_ns;     /* PARTIAL timing */
    uint64_t t_submit_ns;
    uint64_t t_done_ns;
    const char *why;           /* ERROR without a sequence (INVALID_MESSAGE): static reason */
    char    *text;             /* FINAL, VERIFY: owned, malloc'd; NULL = empty */
    size_t   text_len;
    struct engine_word *words; /* FINAL, VERIFY: owned, one block with the words' texts (words_copy); NULL = none */
    size_t   n_words;
    uint64_t end_sample;       /* PARTIAL: stream position after its chunk */
    size_t   bytes;            /* PARTIAL: PCM bytes of its chunk (pending bytes) */
    uint32_t vad_silence_ms;   /* PARTIAL: VAD state after its chunk (snapshot) */
    uint64_t vad_speech_end_ms;
    uint64_t vad_speech_seq;   /* PARTIAL: the chunk of the last speech frame, after its chunk */
};

#define KEPT_FINALS_MAX 16
#define SESS_UTT_TEXT_MAX (16 * 1024)

/* Windowed engines (docs/internals/windowed-streaming.md): the open
 * utterance's audio, the window in flight, the agreement of hypotheses. */
struct win {
    struct pool_client pc;           /* this session's place in the pool */
    int16_t *audio;                  /* owned: samples at the engine rate, from base on */
    size_t   n, cap;
    uint64_t base;                   /* stream position (samples) of audio[0] */
    uint64_t utt_start;              /* stream position of the open utterance's first speech */
    uint64_t utt_id;                 /* utterances begun (window jobs carry theirs) */
    uint64_t last_window_end;        /* stream position the last window reached */
    int      window_out;             /* a window job is waiting or running */
    struct pool_job *window_job;     /* that job while it is out (the pool owns it) */
    uint64_t window_first_ns;        /* arrival of the oldest audio the job out covers anew */
    /* A window's result waits here for the next partial that goes out (a
     * partial never waits for a window: chunks are answered at once). */
    struct buf pending;              /* committed words no partial carried yet */
    int      has_pending;            /* a window result came since the last partial */
    struct sess_latency pending_lat; /* its buffer, queue and inference times */
    uint64_t pending_from_ns;        /* arrival of its oldest new audio (for latency.total) */
    uint64_t first_new_ns;           /* arrival of the oldest chunk no window has covered (0 = none) */
    struct agree agree;              /* this utterance's committed words and tentative tail */
    struct buf tentative;            /* the tail as text, for partials */
    char    *hint;                   /* owned copy of cfg.hint */
    int      verify_lost;            /* reading feedback: the session's audio passed verify_max_ms, so
                                        the buffer is trimmed as usual and no verification decode */
};

/* Reading feedback (core/feedback.h): the expected text, the alignment of
 * what was heard, and for per-chunk engines the open utterance's words. */
struct fbk {
    struct fb_text    *text;         /* owned */
    struct fb_session *fb;           /* owned */
    struct fb_entry   *raw;          /* owned: scratch, one entry per expected word */
    struct buf         utt;          /* STREAMING engines: the open utterance's partial words */
    struct buf         heard;        /* the session's finals, space-joined (bounded), for a
                                        verification without a second decode */
};

struct asr_session {
    char     id[33];                 /* 128-bit random id, hex */
    enum sess_state state;
    struct sess_cfg cfg;
    unsigned rate;                   /* Hz of the VAD and the engine (cfg.engine_rate or sample_rate) */
    struct audio_resampler *rs;      /* owned: client rate -> rate; NULL when they match */
    struct win *win;                 /* owned: windowed engines only */
    struct fbk *fbk;                 /* owned: reading feedback, NULL without an expected text */
    struct vad *vad;                 /* owned */
    struct engine_session *eng;      /* owned: STREAMING engines only */
    const struct sess_sink *sink;    /* borrowed; NULL while detached */
    void    *sink_ctx;               /* borrowed */
    uint64_t last_seq;               /* highest sequence answered (docs/API.md "Sequence numbers") */
    size_t   pending_bytes;          /* PCM bytes of pending chunks (ASR_MAX_SESSION_BUFFER_BYTES) */
    int      pending;                /* accepted chunks not yet answered */
    int      rate_strikes;           /* RATE_LIMITED in a row */
    double   tokens;                 /* rate bucket, bytes; above the 2 s cap only by a hold's credit */
    uint64_t tokens_ns;              /* last refill */
    int      held;                   /* pending at its bound and the caller stopped reading: the
                                        bucket refills without its cap until the hold ends (refill) */
    uint64_t last_speech_seq;        /* chunk in which the last speech frame was classified */
    uint64_t utt_start_ms;           /* open utterance start */
    struct answer *ring;             /* owned; answers waiting to leave */
    unsigned ring_cap, ring_head, ring_len;
    struct buf ptext;                /* text of the partial being completed */
    struct answer *kept;             /* owned, allocated on first use: finals decided while detached */
    unsigned n_kept;
    int      flushing;               /* re-entrancy guard for flush */
    struct { uint64_t seq, start; } recent[8]; /* last accepted chunks: sequence, first sample */
    unsigned n_recent;
    struct sess_stats stats;
    /* What the client has been told (answers emitted), for the store's
     * snapshot: a resume elsewhere continues from exactly here. */
    uint64_t ans_seq;                /* highest sequence answered */
    uint64_t ans_samples;            /* stream position after that chunk */
    unsigned ans_silence_ms;         /* VAD silence run and last speech end there */
    uint64_t ans_speech_end_ms;
    uint64_t ans_speech_seq;         /* last_speech_seq there (the open utterance's final goes to it) */
    int      ans_utt_open;           /* speech_started sent, its final not yet */
    uint64_t ans_utt_start_ms;
    struct buf utt_text;             /* partial texts of the open utterance, space-joined */
    uint64_t finals_sent;
    char    *utt_prefix;             /* owned: restored text of an utterance open at the
                                        move; prefixed to its final */
    int      dirty;                  /* SESS_DIRTY_* since sess_take_dirty() */
    int      hint_given;             /* cfg.hint was set: the expected text does not replace it */
};

/* ---- state machine ---------------------------------------------------- */

/* The one place where a session changes state. Legal moves only go forward;
 * CLOSING -> CLOSING is allowed so stop is idempotent. */
int sess_transition(struct asr_session *s, enum sess_state to) {
    static const unsigned char legal[4][4] = {
        /* to:      CREATED ACTIVE CLOSING CLOSED */
        /* CREATED */ {0, 1, 1, 1},
        /* ACTIVE  */ {0, 0, 1, 1},
        /* CLOSING */ {0, 0, 1, 1},
        /* CLOSED  */ {0, 0, 0, 0},
    };
    if (!legal[s->state][to]) return ASR_EINVAL;
    s->state = to;
    return 0;
}

enum sess_state sess_state(const struct asr_session *s) { return s->state; }
const char *sess_id(const struct asr_session *s) { return s->id; }
unsigned sess_sample_rate(const struct asr_session *s) { return s->cfg.sample_rate; }
uint64_t sess_last_sequence(const struct asr_session *s) { return s->last_seq; }
const struct sess_stats *sess_stats(const struct asr_session *s) { return &s->stats; }
int sess_pending(const struct asr_session *s) { return s->pending; }
int sess_idle(const struct asr_session *s) { return s->ring_len == 0; }
unsigned sess_engine_outstanding(const struct asr_session *s) {
    return s->win ? pool_client_jobs(&s->win->pc) : engine_outstanding(s->eng);
}
int sess_pending_full(const struct asr_session *s) {
    return s->pending >= s->cfg.max_pending_chunks ||
           (s->cfg.max_pending_bytes && s->pending_bytes >= s->cfg.max_pending_bytes);
}
/* Abuse: the rate limit broken too often in a row, or so many refusals
 * waiting behind owed answers that the ring passes its bound. */
int sess_abusive(const struct asr_session *s) {
    return s->rate_strikes >= s->cfg.rate_abuse_threshold ||
           s->ring_len > 4 * (unsigned)s->cfg.max_pending_chunks + 256;
}

/* ---- counters ------------------------------------------------------------ */

/* A stream moves the streaming counters, a REST upload rest.* only
 * (docs/API.md "GET /v1/metrics"); engine and VAD counters are shared. */
static int is_rest(const struct asr_session *s) { return s->cfg.kind == SESS_KIND_REST; }

static void count_error(const struct asr_session *s, int err) {
    if (!is_rest(s)) metrics_count_error(err);
}

/* An engine request failed or was refused: the answer it belongs to
 * remembers the first status. */
static void mark_failed(struct answer *a, int status) {
    if (!a->failed) a->err = status ? status : ASR_E_INTERNAL;
    a->failed = 1;
    metrics.engine_errors++;
}

/* ---- create / destroy ---------------------------------------------------- */

unsigned sess_rate_for(unsigned client_rate, unsigned engine_rate) {
    if (engine_rate) return engine_rate;
    return audio_rate_supported(client_rate) ? client_rate : 16000;
}

static void win_destroy(struct asr_session *s);

/* ---- reading feedback (core/feedback.h) ------------------------------------- */

static void fbk_destroy(struct fbk *k) {
    if (!k) return;
    fb_destroy(k->fb);
    fb_text_destroy(k->text);
    free(k->raw);
    buf_cleanup(&k->utt);
    buf_cleanup(&k->heard);
    free(k);
}

#define SESS_HEARD_MAX (64 * 1024)

static int fbk_create(const char *text, size_t len, struct fbk **out, const char **why) {
    struct fbk *k = calloc(1, sizeof *k);
    if (!k) return ASR_ENOMEM;
    buf_init(&k->utt, SESS_UTT_TEXT_MAX);
    buf_init(&k->heard, SESS_HEARD_MAX);
    int rc = fb_text_parse(text, len, FB_TEXT_MAX_WORDS, &k->text, why);
    if (rc == 0 && !(k->fb = fb_create(k->text, 0))) rc = ASR_ENOMEM;
    if (rc == 0 && !(k->raw = calloc(fb_text_count(k->text), sizeof *k->raw))) rc = ASR_ENOMEM;
    if (rc != 0) {
        fbk_destroy(k);
        return rc;
    }
    *out = k;
    return 0;
}

struct asr_session *sess_create(const struct sess_cfg *cfg) {
    struct asr_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = *cfg;
    s->cfg.hint = NULL; /* borrowed for this call only: copied below where kept */
    s->cfg.hint_len = 0;
    s->cfg.expected = NULL;
    s->cfg.expected_len = 0;
    s->hint_given = cfg->hint != NULL;
    /* the expected text is the engine's hint unless one was given */
    const char *hint = cfg->hint ? cfg->hint : cfg->expected;
    size_t hint_len = cfg->hint ? cfg->hint_len : cfg->expected_len;
    if (cfg->expected) {
        const char *why;
        if (fbk_create(cfg->expected, cfg->expected_len, &s->fbk, &why) != 0) {
            free(s);
            return NULL;
        }
        if (cfg->kind == SESS_KIND_STREAM) metrics.feedback_streams++;
    }
    s->rate = cfg->engine_rate ? cfg->engine_rate : cfg->sample_rate;
    s->cfg.vad.sample_rate = s->rate;
    util_random_id(s->id);
    if (s->rate != cfg->sample_rate && !(s->rs = audio_resampler_create(cfg->sample_rate, s->rate))) goto fail;
    s->vad = vad_create(&s->cfg.vad);
    if (!s->vad) goto fail;
    if (cfg->pool) {
        if (!(s->win = calloc(1, sizeof *s->win))) goto fail;
        pool_client_init(&s->win->pc);
        agree_init(&s->win->agree);
        buf_init(&s->win->tentative, SESS_UTT_TEXT_MAX);
        buf_init(&s->win->pending, SESS_UTT_TEXT_MAX);
        if (hint && hint_len) {
            if (!(s->win->hint = malloc(hint_len + 1))) goto fail;
            memcpy(s->win->hint, hint, hint_len);
            s->win->hint[hint_len] = '\0';
            s->cfg.hint = s->win->hint;
            s->cfg.hint_len = hint_len;
        }
    } else {
        struct engine_session_cfg ecfg = {.sample_rate = s->rate, .hint = hint, .hint_len = hint_len};
        s->eng = engine_session_create(&ecfg);
        if (!s->eng) goto fail;
    }
    buf_init(&s->ptext, 64 * 1024);
    buf_init(&s->utt_text, SESS_UTT_TEXT_MAX);
    s->tokens = 2.0 * (double)cfg->rate_bytes_per_sec;
    s->tokens_ns = 0; /* set by the first chunk's arrival time */
    s->stats.created_ms = util_wall_ms();
    return s;
fail:
    win_destroy(s);
    fbk_destroy(s->fbk);
    audio_resampler_destroy(s->rs);
    if (s->vad) vad_destroy(s->vad);
    free(s);
    return NULL;
}

size_t sess_expected_words(const struct asr_session *s) { return s->fbk ? fb_text_count(s->fbk->text) : 0; }

int sess_set_expected(struct asr_session *s, const char *text, size_t len, const char **why) {
    if (s->stats.chunks || (s->state != SESS_CREATED && s->state != SESS_ACTIVE)) {
        *why = "the expected text must come before any audio";
        return ASR_EINVAL;
    }
    struct fbk *k;
    int rc = fbk_create(text, len, &k, why);
    if (rc != 0) return rc;
    if (!s->hint_given && s->win) {
        char *h = malloc(len + 1);
        if (!h) {
            fbk_destroy(k);
            return ASR_ENOMEM;
        }
        memcpy(h, text, len);
        h[len] = '\0';
        free(s->win->hint);
        s->win->hint = h;
        s->cfg.hint = h;
        s->cfg.hint_len = len;
    } else if (!s->hint_given) {
        /* no audio yet, so no request is out: a new engine session with the hint */
        struct engine_session_cfg ecfg = {.sample_rate = s->rate, .hint = text, .hint_len = len};
        struct engine_session *e = engine_session_create(&ecfg);
        if (!e) {
            fbk_destroy(k);
            return ASR_ENOMEM;
        }
        engine_session_destroy(s->eng);
        s->eng = e;
    }
    if (!s->fbk && s->cfg.kind == SESS_KIND_STREAM) metrics.feedback_streams++;
    fbk_destroy(s->fbk);
    s->fbk = k;
    return 0;
}

static void win_destroy(struct asr_session *s) {
    struct win *w = s->win;
    if (!w) return;
    pool_client_cancel(s->cfg.pool, &w->pc); /* a job in flight is delivered to nobody */
    agree_cleanup(&w->agree);
    buf_cleanup(&w->tentative);
    buf_cleanup(&w->pending);
    free(w->audio);
    free(w->hint);
    free(w);
    s->win = NULL;
}

void sess_destroy(struct asr_session *s) {
    if (!s) return;
    engine_session_destroy(s->eng);
    win_destroy(s);
    fbk_destroy(s->fbk);
    audio_resampler_destroy(s->rs);
    vad_destroy(s->vad);
    for (unsigned i = 0; i < s->ring_len; i++) {
        free(s->ring[(s->ring_head + i) % s->ring_cap].text);
        free(s->ring[(s->ring_head + i) % s->ring_cap].words);
    }
    for (unsigned i = 0; i < s->n_kept; i++) free(s->kept[i].words);
    for (unsigned i = 0; i < s->n_kept; i++) free(s->kept[i].text);
    free(s->kept);
    free(s->ring);
    buf_cleanup(&s->ptext);
    buf_cleanup(&s->utt_text);
    free(s->utt_prefix);
    free(s);
}

size_t sess_footprint(const struct asr_session *s) {
    return sizeof *s + vad_sizeof(&s->cfg.vad) + s->ring_cap * sizeof(struct answer) + s->ptext.cap +
           (s->eng && engine_current() ? engine_current()->session_size : 0) +
           (s->win ? sizeof *s->win + s->win->cap * sizeof(int16_t) + s->win->tentative.cap : 0);
}

/* ---- the answer ring ------------------------------------------------------ */

static struct answer *ring_at(struct asr_session *s, unsigned i) {
    return &s->ring[(s->ring_head + i) % s->ring_cap];
}

/* Appends a zeroed answer. The ring grows by doubling; its size is bounded by
 * the pending-chunk limit times the answers one chunk can make. */
static struct answer *ring_push(struct asr_session *s, enum ans_kind kind, uint64_t seq) {
    if (s->ring_len == s->ring_cap) {
        unsigned cap = s->ring_cap ? s->ring_cap * 2 : 4;
        struct answer *r = xmalloc(cap * sizeof *r);
        for (unsigned i = 0; i < s->ring_len; i++) r[i] = *ring_at(s, i);
        free(s->ring);
        s->ring = r;
        s->ring_cap = cap;
        s->ring_head = 0;
    }
    struct answer *a = ring_at(s, s->ring_len++);
    memset(a, 0, sizeof *a);
    a->kind = (uint8_t)kind;
    a->seq = seq;
    return a;
}

/* Inserts a zeroed answer before position i (0 = head). */
static struct answer *ring_insert(struct asr_session *s, unsigned i, enum ans_kind kind, uint64_t seq) {
    ring_push(s, kind, seq);
    for (unsigned k = s->ring_len - 1; k > i; k--) *ring_at(s, k) = *ring_at(s, k - 1);
    struct answer *a = ring_at(s, i);
    memset(a, 0, sizeof *a);
    a->kind = (uint8_t)kind;
    a->seq = seq;
    return a;
}

/* speech_started names the chunk holding the first speech frame's start
 * (docs/API.md), which can be an earlier chunk than the one whose audio
 * completed that frame. If that chunk's partial is still waiting, the event
 * goes just before it; otherwise it goes out now. */
static void queue_speech_started(struct asr_session *s, uint64_t cur_seq, uint64_t offset_ms) {
    uint64_t sample = offset_ms * s->cfg.sample_rate / 1000, seq = cur_seq;
    for (unsigned k = 0; k < s->n_recent && k < 8; k++) {
        unsigned idx = (s->n_recent - 1 - k) % 8;
        if (s->recent[idx].start <= sample) { seq = s->recent[idx].seq; break; }
    }
    if (seq != cur_seq)
        for (unsigned i = 0; i < s->ring_len; i++) {
            struct answer *a = ring_at(s, i);
            if ((a->kind == ANS_PARTIAL || a->kind == ANS_ERROR) && a->seq == seq && !a->why) {
                ring_insert(s, i, ANS_SPEECH, seq)->a = offset_ms;
                return;
            }
        }
    ring_push(s, ANS_SPEECH, seq)->a = offset_ms;
}

static int answer_ready(const struct answer *a) {
    switch (a->kind) {
    case ANS_PARTIAL: return a->parts_left == 0;
    case ANS_FINAL:
    case ANS_VERIFY: return a->has_text;
    default: return 1;
    }
}

static void error_message(const struct asr_session *s, const struct answer *a, char *m, size_t n) {
    switch (a->err) {
    case ASR_E_CHUNK_TOO_LARGE:
        snprintf(m, n, "chunk is %llu bytes, limit %zu", (unsigned long long)a->a, s->cfg.max_chunk_bytes);
        break;
    case ASR_E_INVALID_AUDIO:
        snprintf(m, n, "%s", a->a == 1 ? "audio is not valid base64" : a->a == 2 ? "chunk is empty"
                                                                                   : "odd number of bytes: PCM is 16-bit");
        break;
    case ASR_E_RATE_LIMITED:
        snprintf(m, n, "audio faster than %zu bytes/s", s->cfg.rate_bytes_per_sec);
        break;
    case ASR_E_SERVER_BUSY:
        snprintf(m, n, "server busy: chunk skipped, %d chunks (%zu bytes) already waiting", s->pending,
                 s->pending_bytes);
        break;
    case ASR_E_MODEL_ERROR: snprintf(m, n, "the engine failed on this chunk"); break;
    default: snprintf(m, n, "%s", asr_strerror(a->err)); break;
    }
}

/* Prepends the text of an utterance that was open when the session moved
 * here (resume on another worker) to that utterance's final. */
static void apply_prefix(struct asr_session *s, struct answer *a) {
    size_t pl = strlen(s->utt_prefix);
    char *t = malloc(pl + 1 + a->text_len);
    if (t) {
        memcpy(t, s->utt_prefix, pl);
        size_t n = pl;
        if (a->text_len && pl) t[n++] = ' ';
        if (a->text_len) memcpy(t + n, a->text, a->text_len);
        free(a->text);
        a->text = t;
        a->text_len = n + a->text_len;
    }
    free(s->utt_prefix);
    s->utt_prefix = NULL;
}

/* Reading feedback of a partial that brought a new hypothesis: windowed,
 * the partial that carries a window's result (carries: it goes out after
 * one or more windows came back; their words are this utterance's
 * committed words and the tentative tail); per-chunk engines, the open
 * utterance's words so far. 0 and *v
 * (the smoothed statuses), ASR_EAGAIN when the partial brings nothing new,
 * or ASR_ENOMEM. */
static int fb_partial(struct asr_session *s, int carries, const char *text, size_t tlen, struct fb_view *v) {
    struct fbk *k = s->fbk;
    int rc;
    if (s->win) {
        if (!carries) return ASR_EAGAIN;
        const struct agree *ag = &s->win->agree;
        size_t n = ag->n_committed + ag->n_prev;
        struct engine_word *w = malloc((n ? n : 1) * sizeof *w);
        if (!w) return ASR_ENOMEM;
        for (size_t i = 0; i < ag->n_committed; i++)
            w[i] = (struct engine_word){.text = ag->committed[i].text, .len = ag->committed[i].len};
        for (size_t i = 0; i < ag->n_prev; i++)
            w[ag->n_committed + i] = (struct engine_word){.text = ag->prev[i].text, .len = ag->prev[i].len};
        rc = fb_evaluate(k->fb, w, n, 0, k->raw);
        free(w);
    } else {
        if (!tlen) return ASR_EAGAIN;
        /* bounded: an utterance past it stops adding words to the hypothesis */
        if (!k->utt.len || buf_append(&k->utt, " ", 1) == 0) buf_append(&k->utt, text, tlen);
        rc = fb_evaluate_text(k->fb, k->utt.data ? k->utt.data : "", k->utt.len, 0, k->raw);
    }
    if (rc == 0) rc = fb_smooth(k->fb, k->raw, 0);
    if (rc == 0) *v = fb_shown(k->fb);
    return rc;
}

/* Reading feedback of a final: its words after the session's earlier
 * ones, smoothed as settled (the utterance's words will not change, so
 * its mistakes show at once); then they join the session's words. */
static int fb_final(struct asr_session *s, const struct answer *a, struct fb_view *v) {
    struct fbk *k = s->fbk;
    buf_reset(&k->utt);
    if (!a->text_len) return ASR_EAGAIN;
    int rc = a->words ? fb_evaluate(k->fb, a->words, a->n_words, 0, k->raw)
                      : fb_evaluate_text(k->fb, a->text, a->text_len, 0, k->raw);
    if (rc == 0) rc = fb_smooth(k->fb, k->raw, 1);
    if (rc == 0) rc = a->words ? fb_commit(k->fb, a->words, a->n_words) : fb_commit_text(k->fb, a->text, a->text_len);
    if (rc == 0) *v = fb_shown(k->fb);
    /* bounded: past it a verification without a second decode shows less text */
    if (!k->heard.len || buf_append(&k->heard, " ", 1) == 0) buf_append(&k->heard, a->text, a->text_len);
    return rc;
}

/* The verification (sess_stop_verify): a second decode's words aligned on
 * their own, or the session's words; raw statuses, words never reached
 * missing. */
static void emit_verification(struct asr_session *s, struct answer *a) {
    struct sess_verification v = {.status = a->failed ? a->err : 0, .audio_ms = a->redecoded ? a->a : 0};
    struct fbk *k = s->fbk;
    struct fb_session *fresh = NULL;
    struct fb_view view;
    if (!v.status && k) {
        int rc;
        if (a->redecoded) {
            fresh = fb_create(k->text, 0);
            rc = !fresh ? ASR_ENOMEM
                 : a->words ? fb_evaluate(fresh, a->words, a->n_words, 1, k->raw)
                            : fb_evaluate_text(fresh, a->text ? a->text : "", a->text_len, 1, k->raw);
            v.text = a->text ? a->text : "";
            v.len = a->text_len;
        } else {
            rc = fb_evaluate(k->fb, NULL, 0, 1, k->raw);
            v.text = k->heard.data ? k->heard.data : "";
            v.len = k->heard.len;
        }
        if (rc == 0) {
            view = (struct fb_view){.text = k->text, .e = k->raw, .n = fb_text_count(k->text)};
            v.feedback = &view;
            v.score = fb_score(&view, NULL);
        } else {
            v.status = ASR_ENOMEM;
            v.text = NULL;
            v.len = 0;
        }
    } else if (!v.status) {
        v.status = ASR_EINVAL;
    }
    int m = v.status == 0 ? METRIC_VERIFY_OK : v.status == ASR_E_SERVER_BUSY ? METRIC_VERIFY_BUSY
            : v.status == ASR_E_TOO_LARGE ? METRIC_VERIFY_TOO_LONG : METRIC_VERIFY_FAILED;
    metrics.verifications[m]++;
    if (s->sink && s->sink->on_verification) s->sink->on_verification(s->sink_ctx, &v);
    fb_destroy(fresh);
    free(a->text);
    free(a->words);
    a->text = NULL;
    a->words = NULL;
}

static void emit_final(struct asr_session *s, struct answer *a) {
    if (a->failed && s->sink && s->sink->on_engine_error)
        s->sink->on_engine_error(s->sink_ctx, a->err, 1, a->seq, a->a, a->b);
    if (!is_rest(s)) metrics.finals_total++;
    s->stats.finals++;
    if (s->utt_prefix) apply_prefix(s, a);
    s->ans_utt_open = 0;
    buf_reset(&s->utt_text);
    s->finals_sent++;
    s->dirty |= SESS_DIRTY_CHANGED | SESS_DIRTY_FINAL;
    struct fb_view view;
    const struct fb_view *fbv = s->fbk && fb_final(s, a, &view) == 0 ? &view : NULL;
    if (fbv && !is_rest(s)) metrics.feedback_updates++;
    if (s->sink) {
        struct sess_final f = {.seq = a->seq, .text = a->text ? a->text : "", .len = a->text_len,
                               .start_ms = a->a, .end_ms = a->b, .words = a->words, .n_words = a->n_words,
                               .feedback = fbv};
        s->sink->on_final(s->sink_ctx, &f);
        free(a->text);
        free(a->words);
    } else if (s->n_kept < KEPT_FINALS_MAX &&
               (s->kept || (s->kept = malloc(KEPT_FINALS_MAX * sizeof *s->kept)) != NULL)) {
        s->kept[s->n_kept++] = *a; /* adopts a->text and a->words */
    } else {
        free(a->text);
        free(a->words);
    }
    a->text = NULL;
    a->words = NULL;
}

static void emit(struct asr_session *s, struct answer *a) {
    char msg[160];
    switch (a->kind) {
    case ANS_SPEECH:
        s->ans_utt_open = 1;
        s->ans_utt_start_ms = a->a;
        buf_reset(&s->utt_text);
        s->dirty |= SESS_DIRTY_CHANGED;
        if (!is_rest(s)) metrics.speech_started_total++;
        if (s->sink && s->sink->on_speech_started) s->sink->on_speech_started(s->sink_ctx, a->seq, a->a);
        break;
    case ANS_FINAL:
        emit_final(s, a);
        break;
    case ANS_VERIFY:
        emit_verification(s, a);
        break;
    case ANS_PARTIAL:
        s->pending--;
        s->pending_bytes -= a->bytes;
        if (a->failed) {
            if (s->sink && s->sink->on_engine_error) {
                uint64_t n = a->bytes / 2, rate = s->cfg.sample_rate;
                s->sink->on_engine_error(s->sink_ctx, a->err, 0, a->seq, (a->end_sample - n) * 1000 / rate,
                                         a->end_sample * 1000 / rate);
            }
            a->kind = ANS_ERROR;
            a->err = ASR_E_MODEL_ERROR;
            buf_reset(&s->ptext);
            emit(s, a);
            return;
        }
        {
            uint64_t now = util_now_ns();
            struct sess_latency lat = {
                .queue_ms = (double)(a->t_submit_ns - a->t_arrival_ns) / 1e6,
                .inference_ms = (double)(a->t_done_ns - a->t_submit_ns) / 1e6,
                .total_ms = (double)(now - a->t_arrival_ns) / 1e6,
            };
            /* windowed: the partial that carries a window's result reports
             * that window: how long its oldest new audio waited for it
             * (buffer), the pool's wait (queue), the decode (inference), and
             * from that audio's arrival to now (total) */
            int carries = s->win && s->win->has_pending;
            if (carries) {
                lat = s->win->pending_lat;
                lat.total_ms = (double)(now - s->win->pending_from_ns) / 1e6;
            }
            if (!is_rest(s)) {
                hist_add(&metrics.lat_queue, lat.queue_ms);
                hist_add(&metrics.lat_engine, lat.inference_ms);
                hist_add(&metrics.lat_total, lat.total_ms);
                metrics.partials_total++;
                /* the streaming latency of docs/API.md "GET /metrics/streaming": a chunk's
                 * processing (for a windowed engine, of a chunk whose window came back) */
                if (!s->win) metrics_stream_latency(lat.total_ms);
                else if (carries) metrics_stream_latency(lat.total_ms - lat.buffer_ms);
            }
            s->stats.partials++;
            if (a->seq > s->ans_seq) s->ans_seq = a->seq;
            s->ans_samples = a->end_sample;
            s->ans_silence_ms = a->vad_silence_ms;
            s->ans_speech_end_ms = a->vad_speech_end_ms;
            s->ans_speech_seq = a->vad_speech_seq;
            /* per-chunk engines: the text gathered in ptext; windowed: the
             * words the latest window(s) committed */
            const char *text = carries ? (s->win->pending.data ? s->win->pending.data : "")
                                       : (s->ptext.data ? s->ptext.data : "");
            size_t tlen = carries ? s->win->pending.len : (s->win ? 0 : s->ptext.len);
            if (s->ans_utt_open && tlen) {
                if (s->utt_text.len) buf_append(&s->utt_text, " ", 1);
                buf_append(&s->utt_text, text, tlen); /* bounded: may stop growing */
            }
            s->dirty |= SESS_DIRTY_CHANGED;
            if (a->server_busy) s->stats.skipped_windows++;
            struct fb_view view;
            const struct fb_view *fbv = s->fbk && fb_partial(s, carries, text, tlen, &view) == 0 ? &view : NULL;
            if (fbv && !is_rest(s)) metrics.feedback_updates++;
            if (s->sink) {
                struct sess_partial p = {.seq = a->seq, .text = text, .len = tlen, .is_speech = a->is_speech,
                                         .server_busy = a->server_busy, .lat = lat, .feedback = fbv};
                if (s->win) {
                    p.tentative = s->win->tentative.data ? s->win->tentative.data : "";
                    p.tentative_len = s->win->tentative.len;
                }
                s->sink->on_partial(s->sink_ctx, &p);
            }
            buf_reset(&s->ptext);
            if (carries) {
                buf_reset(&s->win->pending);
                s->win->has_pending = 0;
            }
        }
        break;
    case ANS_ERROR:
        count_error(s, a->err);
        s->stats.errors++;
        if (!a->why && a->seq > s->ans_seq) {
            s->ans_seq = a->seq;
            s->dirty |= SESS_DIRTY_CHANGED;
        }
        if (s->sink && a->why) {
            s->sink->on_error(s->sink_ctx, a->err, 0, 0, a->why);
        } else if (s->sink) {
            error_message(s, a, msg, sizeof msg);
            s->sink->on_error(s->sink_ctx, a->err, 1, a->seq, msg);
        }
        break;
    }
}

static void hold_end(struct asr_session *s);

/* Sends every ready answer at the head, in order. When the pending count
 * drops below the limit it ends the hold of the session's input (refill) and
 * fires on_pending_low; on_done fires when a CLOSING session has nothing
 * left. Callbacks may re-enter the session (e.g. stop from on_done is
 * harmless), so a guard keeps one flush running at a time. */
static void flush(struct asr_session *s) {
    if (s->flushing) return;
    s->flushing = 1;
    int was_full = sess_pending_full(s);
    while (s->ring_len && answer_ready(ring_at(s, 0))) {
        struct answer a = *ring_at(s, 0);
        s->ring_head = (s->ring_head + 1) % s->ring_cap;
        s->ring_len--;
        emit(s, &a);
    }
    s->flushing = 0;
    if (s->held && !sess_pending_full(s)) hold_end(s);
    if (was_full && !sess_pending_full(s) && s->sink && s->sink->on_pending_low)
        s->sink->on_pending_low(s->sink_ctx);
    if (s->state == SESS_CLOSING && s->ring_len == 0 && s->sink && s->sink->on_done)
        s->sink->on_done(s->sink_ctx);
}

void sess_attach(struct asr_session *s, const struct sess_sink *sink, void *ctx) {
    s->sink = sink;
    s->sink_ctx = ctx;
    if (!sink) return;
    unsigned n = s->n_kept;
    s->n_kept = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct answer *k = &s->kept[i];
        struct sess_final f = {.seq = k->seq, .text = k->text ? k->text : "", .len = k->text_len,
                               .start_ms = k->a, .end_ms = k->b, .words = k->words, .n_words = k->n_words};
        sink->on_final(ctx, &f);
        free(s->kept[i].text);
        free(s->kept[i].words);
    }
    free(s->kept);
    s->kept = NULL;
}

/* ---- engine completions ----------------------------------------------------- */

static void on_segment_done(void *arg, int status, const struct engine_result *res) {
    struct asr_session *s = arg;
    for (unsigned i = 0; i < s->ring_len; i++) {
        struct answer *a = ring_at(s, i);
        if (a->kind != ANS_PARTIAL || a->parts_left == 0) continue;
        if (status != 0) {
            mark_failed(a, status);
        } else if (res && res->len) {
            if (s->ptext.len) buf_append(&s->ptext, " ", 1);
            if (buf_append(&s->ptext, res->text, res->len) != 0 && !a->failed) {
                a->failed = 1; /* text past the partial's bound: not an engine error */
                a->err = ASR_ENOMEM;
            }
        }
        if (--a->parts_left == 0) a->t_done_ns = util_now_ns();
        break;
    }
    flush(s);
}

static void on_finalize_done(void *arg, int status, const struct engine_result *res) {
    struct asr_session *s = arg;
    for (unsigned i = 0; i < s->ring_len; i++) {
        struct answer *a = ring_at(s, i);
        if (a->kind != ANS_FINAL || a->has_text) continue;
        a->has_text = 1;
        if (status == 0 && res && res->len) {
            a->text = malloc(res->len);
            if (a->text) {
                memcpy(a->text, res->text, res->len);
                a->text_len = res->len;
            } else {
                a->failed = 1; /* the text is lost: say so rather than send it empty */
                a->err = ASR_ENOMEM;
            }
        } else if (status != 0) {
            mark_failed(a, status);
        }
        break;
    }
    flush(s);
}

/* ---- chunks ------------------------------------------------------------------ */

static void refuse(struct asr_session *s, int err, uint64_t seq, uint64_t detail) {
    struct answer *a = ring_push(s, ANS_ERROR, seq);
    a->err = err;
    a->a = detail;
}

/* Queues a final for an utterance that ended (ev from the VAD) and asks the
 * engine for its text. */
static void win_request_final(struct asr_session *s, struct answer *f);

static void queue_final(struct asr_session *s, uint64_t seq, uint64_t start_ms, uint64_t end_ms) {
    struct answer *f = ring_push(s, ANS_FINAL, seq);
    f->a = start_ms;
    f->b = end_ms;
    if (s->win) {
        win_request_final(s, f);
        return;
    }
    metrics.engine_requests++;
    int rc = engine_finalize(s->eng, on_finalize_done, s);
    if (rc != 0) {
        f->has_text = 1;
        mark_failed(f, rc);
    }
}

static void queue_empty_final(struct asr_session *s) {
    struct answer *f = ring_push(s, ANS_FINAL, s->last_seq);
    f->a = f->b = vad_offset_ms(s->vad);
    f->has_text = 1;
}

static void submit_part(struct asr_session *s, struct answer *p, const int16_t *pcm, size_t n,
                        unsigned speech_ms, uint64_t offset_ms) {
    struct engine_chunk c = {.pcm = pcm, .n = n, .speech_ms = speech_ms, .offset_ms = offset_ms};
    metrics.engine_requests++;
    p->parts_left++;
    int rc = engine_submit(s->eng, &c, on_segment_done, s);
    if (rc != 0) {
        p->parts_left--;
        mark_failed(p, rc);
    }
}

/* The rate bucket (docs/API.md "error", the rate limit) measures the
 * client's rate, which it cannot do while the server does not read: a stream
 * whose pending chunks reach their bound stops being read (api/stream.c
 * after_chunk, docs/internals/backpressure.md), a live client's audio waits
 * in the kernel meanwhile and arrives in one burst when reading resumes.
 * So while the session is held (s->held, from the chunk that filled it to
 * the flush that ends the hold) the bucket refills without its 2 s cap: the
 * client gets credit for exactly what it could have sent at the allowed
 * rate during the hold, never more, so a client that floods gains nothing
 * it could not have had. Credit the burst does not use fades at the refill
 * rate once the hold is over (the bucket does not grow meanwhile): after a
 * hold of T the bucket is back at its cap within T, so saved credit cannot
 * buy a burst later. */
static void refill(struct asr_session *s, uint64_t now_ns) {
    double cap = 2.0 * (double)s->cfg.rate_bytes_per_sec;
    if (s->tokens_ns == 0) s->tokens_ns = now_ns;
    if (now_ns <= s->tokens_ns) return;
    double add = (double)(now_ns - s->tokens_ns) / 1e9 * (double)s->cfg.rate_bytes_per_sec;
    s->tokens_ns = now_ns;
    if (s->held) s->tokens += add;
    else if (s->tokens > cap) s->tokens = s->tokens - add > cap ? s->tokens - add : cap;
    else s->tokens = s->tokens + add < cap ? s->tokens + add : cap;
}

/* The caller of a stream stops reading when the pending chunks reach their
 * bound, unless it sheds load (SERVER_BUSY instead: the client is read and
 * measured as usual). A REST upload is paced by its own window. */
static int hold_starts(const struct asr_session *s) {
    return !s->held && !s->cfg.shed_load && !is_rest(s) && sess_pending_full(s);
}

/* The hold is over (flush took pending under its bound): the time since the
 * last refill is credited without the cap, on the clock of the arrival
 * times (util_now_ns, core/session.h sess_chunk). */
static void hold_end(struct asr_session *s) {
    refill(s, util_now_ns());
    s->held = 0;
}

/* ---- windowed engines (docs/internals/windowed-streaming.md) --------------
 *
 * The session keeps the audio of the open utterance (and a little before
 * it) at the engine's rate. Every window_ms of new utterance audio, one job
 * decodes a window of it on the pool (at most one window job per session:
 * a window that comes due while one is out is skipped, and its chunk's
 * partial says server_busy); its hypothesis goes through LocalAgreement-2
 * and the partial of the chunk that made the window carries the words it
 * committed. Each utterance end is one job that decodes the whole utterance
 * for the final. The pool runs a session's jobs one at a time in the order
 * made, so completions arrive in ring order: a window's belongs to the
 * oldest partial still waiting, a final's to the oldest final without text. */

/* Audio kept before an utterance's first speech frame, and after its last,
 * in the jobs for it: the VAD decides a few frames late, and recognizers
 * want a little silence around speech. */
#define WIN_PAD_MS 300

static uint64_t ms_to_samples(const struct asr_session *s, uint64_t ms) { return ms * s->rate / 1000; }

static int win_append(struct asr_session *s, const int16_t *x, size_t n) {
    struct win *w = s->win;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : (size_t)s->rate;
        while (cap < w->n + n) cap *= 2;
        int16_t *na = realloc(w->audio, cap * sizeof *na);
        if (!na) return ASR_ENOMEM;
        w->audio = na;
        w->cap = cap;
    }
    memcpy(w->audio + w->n, x, n * sizeof *x);
    w->n += n;
    return 0;
}

/* Drops audio no job will need: before the open utterance's pad, or, with
 * none open, all but the last pad (the next utterance's pre-roll). The
 * buffer gives memory back when it holds little again. */
static void win_trim(struct asr_session *s) {
    struct win *w = s->win;
    /* reading feedback: the whole session is kept for the verification
     * decode at stop, up to verify_max_ms */
    if (s->fbk && s->cfg.verify_max_ms && !is_rest(s) && !w->verify_lost) {
        if (w->base == 0 && w->n <= ms_to_samples(s, s->cfg.verify_max_ms)) return;
        w->verify_lost = 1;
    }
    uint64_t end = w->base + w->n, pad = ms_to_samples(s, WIN_PAD_MS) + ms_to_samples(s, s->cfg.vad.frame_ms);
    uint64_t keep_from = vad_in_utterance(s->vad) ? (w->utt_start > pad ? w->utt_start - pad : 0)
                                                   : (end > pad ? end - pad : 0);
    if (keep_from <= w->base) return;
    size_t drop = (size_t)(keep_from - w->base);
    if (drop > w->n) drop = w->n;
    memmove(w->audio, w->audio + drop, (w->n - drop) * sizeof *w->audio);
    w->n -= drop;
    w->base += drop;
    if (w->cap > 4 * (size_t)s->rate && w->n < w->cap / 4) {
        size_t cap = w->n > (size_t)s->rate ? w->n : (size_t)s->rate;
        int16_t *na = realloc(w->audio, cap * sizeof *na);
        if (na) {
            w->audio = na;
            w->cap = cap;
        }
    }
}

static void win_utterance_begins(struct asr_session *s, uint64_t start_ms) {
    struct win *w = s->win;
    w->utt_start = ms_to_samples(s, start_ms);
    w->utt_id++;
    w->last_window_end = w->utt_start;
}

/* A job over the buffered audio [from, to) (stream positions, clipped to
 * what the buffer holds). */
static struct pool_job *win_job(struct asr_session *s, uint64_t from, uint64_t to, int final, pool_done_fn done) {
    struct win *w = s->win;
    if (from < w->base) from = w->base;
    if (to > w->base + w->n) to = w->base + w->n;
    if (to < from) to = from;
    struct pool_job *j = pool_job_create(w->audio + (from - w->base), (size_t)(to - from), s->rate, s->cfg.hint,
                                         s->cfg.hint_len);
    if (!j) return NULL;
    j->done = done;
    j->arg = s;
    j->final = final;
    j->offset_ms = from * 1000 / s->rate;
    j->tag = w->utt_id;
    return j;
}

/* One block: the words, then their texts; each word's text points into it. */
static struct engine_word *words_copy(const struct engine_word *src, size_t n) {
    size_t bytes = n * sizeof *src;
    for (size_t i = 0; i < n; i++) bytes += src[i].len;
    struct engine_word *w = malloc(bytes ? bytes : 1);
    if (!w) return NULL;
    char *t = (char *)(w + n);
    for (size_t i = 0; i < n; i++) {
        w[i] = src[i];
        memcpy(t, src[i].text, src[i].len);
        w[i].text = t;
        t += src[i].len;
    }
    return w;
}

/* A window's result: LocalAgreement-2 commits what it shares with the last
 * one; the newly committed words wait in `pending` for the next partial to
 * go out (no partial waits for a window), and the tentative tail is
 * replaced. A failed window only counts: the final decodes the utterance. */
/* window_wait: the partial waiting for this window is free to go (it is
 * the next one out, so it carries the result). */
static void win_release_waiting(struct asr_session *s, int busy) {
    if (!s->cfg.window_wait) return;
    for (unsigned i = 0; i < s->ring_len; i++) {
        struct answer *a = ring_at(s, i);
        if (a->kind != ANS_PARTIAL || a->parts_left == 0) continue;
        a->parts_left = 0;
        if (busy) a->server_busy = 1;
        a->t_done_ns = util_now_ns();
        break;
    }
    flush(s);
}

static void on_window_done(struct pool_job *job, int status, const struct engine_result *res) {
    struct asr_session *s = job->arg;
    struct win *w = s->win;
    w->window_out = 0;
    w->window_job = NULL;
    size_t first = 0;
    if (status == ASR_ECANCELED) { /* given up in the pool for a less-served stream's window */
        metrics.windows_skipped++;
        win_release_waiting(s, 1);
        return;
    }
    if (status != 0) {
        metrics.engine_errors++;
        win_release_waiting(s, 0);
        return;
    }
    if (agree_feed(&w->agree, res->words, res->n_words, &first) != 0) { /* no memory: a window lost */
        win_release_waiting(s, 0);
        return;
    }
    for (size_t k = first; k < w->agree.n_committed; k++) {
        if (w->pending.len) buf_append(&w->pending, " ", 1);
        buf_append(&w->pending, w->agree.committed[k].text, w->agree.committed[k].len);
    }
    buf_reset(&w->tentative);
    for (size_t k = 0; k < w->agree.n_prev; k++) {
        if (w->tentative.len) buf_append(&w->tentative, " ", 1);
        buf_append(&w->tentative, w->agree.prev[k].text, w->agree.prev[k].len);
    }
    if (!w->has_pending) w->pending_from_ns = w->window_first_ns;
    w->pending_lat = (struct sess_latency){
        .buffer_ms = (double)(job->t_queued_ns - w->window_first_ns) / 1e6,
        .queue_ms = (double)(job->t_start_ns - job->t_queued_ns) / 1e6,
        .inference_ms = (double)(job->t_done_ns - job->t_start_ns) / 1e6,
    };
    w->has_pending = 1;
    win_release_waiting(s, 0);
}

static void on_win_final_done(struct pool_job *job, int status, const struct engine_result *res) {
    struct asr_session *s = job->arg;
    agree_reset(&s->win->agree); /* the utterance is over: its final has every word */
    buf_reset(&s->win->tentative);
    buf_reset(&s->win->pending);
    s->win->has_pending = 0;
    for (unsigned i = 0; i < s->ring_len; i++) {
        struct answer *a = ring_at(s, i);
        if (a->kind != ANS_FINAL || a->has_text) continue;
        a->has_text = 1;
        if (status == 0 && res->len) {
            a->text = malloc(res->len);
            a->words = res->n_words ? words_copy(res->words, res->n_words) : NULL;
            if (a->text) {
                memcpy(a->text, res->text, res->len);
                a->text_len = res->len;
            }
            if (!a->text || (res->n_words && !a->words)) {
                a->failed = 1; /* the text is lost: say so rather than send it empty */
                a->err = ASR_ENOMEM;
            } else {
                a->n_words = res->n_words;
            }
        } else if (status != 0) {
            mark_failed(a, status);
        }
        break;
    }
    flush(s);
}

/* The window still waiting when its utterance ends would only delay the
 * final (a session's jobs run in order) and its hypothesis is moot once
 * the whole utterance is decoded: it is taken back. */
static void win_cancel_queued_window(struct asr_session *s) {
    struct win *w = s->win;
    if (!w->window_out || !w->window_job || pool_job_cancel(s->cfg.pool, &w->pc, w->window_job) != 0) return;
    w->window_out = 0;
    w->window_job = NULL;
    metrics.windows_skipped++;
    if (s->cfg.window_wait)
        for (unsigned i = 0; i < s->ring_len; i++) {
            struct answer *a = ring_at(s, i);
            if (a->kind != ANS_PARTIAL || a->parts_left == 0) continue;
            a->parts_left = 0;
            a->server_busy = 1;
            a->t_done_ns = util_now_ns();
            break;
        }
}

/* The final of the utterance f closes: one job over all of it. */
static void win_request_final(struct asr_session *s, struct answer *f) {
    struct win *w = s->win;
    win_cancel_queued_window(s);
    metrics.engine_requests++;
    uint64_t pad = ms_to_samples(s, WIN_PAD_MS);
    uint64_t from = ms_to_samples(s, f->a), to = ms_to_samples(s, f->b) + pad;
    struct pool_job *j = win_job(s, from > pad ? from - pad : 0, to, 1, on_win_final_done);
    int rc = j ? pool_submit(s->cfg.pool, &w->pc, s->cfg.final_class, j) : ASR_ENOMEM;
    if (rc != 0) {
        pool_job_free(j);
        f->has_text = 1;
        mark_failed(f, rc); /* ASR_EAGAIN: the pool is full (REST answers 503) */
    }
    w->first_new_ns = 0;
}

static void on_verify_done(struct pool_job *job, int status, const struct engine_result *res) {
    struct asr_session *s = job->arg;
    for (unsigned i = 0; i < s->ring_len; i++) {
        struct answer *a = ring_at(s, i);
        if (a->kind != ANS_VERIFY || a->has_text) continue;
        a->has_text = 1;
        if (status != 0) {
            mark_failed(a, status);
            a->err = ASR_E_MODEL_ERROR;
        } else if (res->len) {
            a->text = malloc(res->len);
            a->words = res->n_words ? words_copy(res->words, res->n_words) : NULL;
            if (!a->text || (res->n_words && !a->words)) {
                a->failed = 1;
                a->err = ASR_ENOMEM;
            } else {
                memcpy(a->text, res->text, res->len);
                a->text_len = res->len;
                a->n_words = res->n_words;
            }
        }
        break;
    }
    flush(s);
}

/* The verification answer after the final sess_stop_verify() queued: ready
 * at once (the session's finals, or a refusal), or when its job is done. */
static void queue_verification(struct asr_session *s) {
    struct answer *v = ring_push(s, ANS_VERIFY, s->last_seq);
    struct win *w = s->win;
    if (!w || !s->cfg.verify_max_ms) {
        v->has_text = 1;
        return;
    }
    v->redecoded = 1;
    v->a = w->n * 1000 / s->rate;
    int rc = 0;
    if (w->verify_lost) {
        rc = ASR_E_TOO_LARGE;
    } else {
        /* refused when the pool would refuse a window: it is a big job */
        const struct pool_stats *ps = pool_stats(s->cfg.pool);
        if (ps->queued - ps->queued_class[POOL_FINAL] >= ps->queue_max) rc = ASR_E_SERVER_BUSY;
    }
    if (rc == 0) {
        struct pool_job *j = win_job(s, w->base, w->base + w->n, 1, on_verify_done);
        rc = j ? pool_submit(s->cfg.pool, &w->pc, POOL_FINAL, j) : ASR_ENOMEM;
        if (rc != 0) pool_job_free(j);
        else metrics.engine_requests++;
    }
    if (rc != 0) {
        v->has_text = 1;
        v->failed = 1;
        v->err = rc;
    }
}

/* After a chunk: a window of the open utterance if enough new audio came
 * since the last one. p is the chunk's partial: it is answered at once
 * either way (the window's words ride on a later partial); when the window
 * cannot be served in time (the last one is still out, or the pool is
 * full) it is skipped and p says server_busy. */
static void win_maybe_window(struct asr_session *s, struct answer *p, uint64_t now_ns) {
    struct win *w = s->win;
    if (!s->cfg.window_ms || !vad_in_utterance(s->vad)) return;
    uint64_t end = w->base + w->n;
    if (end < w->last_window_end + ms_to_samples(s, s->cfg.window_ms)) return;
    w->last_window_end = end;
    uint64_t first_ns = w->first_new_ns ? w->first_new_ns : now_ns;
    w->first_new_ns = 0;
    if (w->window_out) { /* the last window is still out: this one is late already */
        p->server_busy = 1;
        metrics.windows_skipped++;
        return;
    }
    uint64_t pad = ms_to_samples(s, WIN_PAD_MS);
    uint64_t from = w->utt_start > pad ? w->utt_start - pad : 0;
    if (s->cfg.window_overlap_ms && w->agree.n_committed) {
        uint64_t c = ms_to_samples(s, w->agree.commit_end_ms), ov = ms_to_samples(s, s->cfg.window_overlap_ms);
        if (c > ov && c - ov > from) from = c - ov;
    }
    struct pool_job *j = win_job(s, from, end, 0, on_window_done);
    int rc = j ? pool_submit(s->cfg.pool, &w->pc, POOL_WINDOW, j) : ASR_ENOMEM;
    if (rc != 0) {
        pool_job_free(j);
        p->server_busy = 1;
        metrics.windows_skipped++;
        return;
    }
    metrics.engine_requests++;
    w->window_out = 1;
    w->window_job = j;
    w->window_first_ns = first_ns;
    if (s->cfg.window_wait) p->parts_left = 1; /* answered with the window's words (on_window_done) */
}

int sess_chunk(struct asr_session *s, const uint8_t *pcm, size_t len, int pre_err, int has_seq,
               uint64_t seq, uint64_t now_ns) {
    if (is_rest(s)) metrics.rest_chunks++;
    else metrics.chunks_total++;
    s->stats.chunks++;
    if (s->state != SESS_ACTIVE) {
        sess_invalid_message(s, "the session is closing: no more audio");
        return ASR_E_INVALID_MESSAGE;
    }
    /* Numbering (docs/API.md "Sequence numbers"). OUT_OF_ORDER leaves at once
     * and does not move `last`. */
    if (has_seq && seq <= s->last_seq) {
        count_error(s, ASR_E_OUT_OF_ORDER);
        s->stats.errors++;
        if (s->sink) {
            char m[96];
            snprintf(m, sizeof m, "sequence %llu is not greater than %llu", (unsigned long long)seq,
                     (unsigned long long)s->last_seq);
            s->sink->on_error(s->sink_ctx, ASR_E_OUT_OF_ORDER, 1, seq, m);
        }
        return ASR_E_OUT_OF_ORDER;
    }
    if (!has_seq) {
        if (s->last_seq == UINT64_MAX) {
            sess_invalid_message(s, "sequence numbers exhausted");
            return ASR_E_INVALID_MESSAGE;
        }
        seq = s->last_seq + 1;
    }
    s->last_seq = seq;

    int err = 0;
    uint64_t detail = 0;
    if (pre_err) { err = pre_err; detail = 1; }
    else if (len == 0) { err = ASR_E_INVALID_AUDIO; detail = 2; }
    else if (len % 2) { err = ASR_E_INVALID_AUDIO; detail = 3; }
    else if (len > s->cfg.max_chunk_bytes) { err = ASR_E_CHUNK_TOO_LARGE; detail = len; }
    if (!err) {
        refill(s, now_ns);
        if ((double)len > s->tokens) err = ASR_E_RATE_LIMITED;
    }
    if (!err && s->cfg.shed_load && sess_pending_full(s)) err = ASR_E_SERVER_BUSY;
    if (err) {
        if (err == ASR_E_RATE_LIMITED) s->rate_strikes++;
        refuse(s, err, seq, detail);
        flush(s);
        return err;
    }
    s->rate_strikes = 0;
    s->tokens -= (double)len;

    /* Accepted. */
    const int16_t *samples = (const int16_t *)(const void *)pcm;
    int16_t *copy = NULL;
    if ((uintptr_t)pcm % _Alignof(int16_t)) { /* unaligned input: rare, copy once */
        copy = malloc(len);
        if (!copy) { refuse(s, ASR_E_INTERNAL, seq, 0); flush(s); return ASR_E_INTERNAL; }
        memcpy(copy, pcm, len);
        samples = copy;
    }
    size_t n = len / 2;
    /* At the engine's rate from here on (the VAD, the engine, positions). */
    if (s->rs) {
        const int16_t *x;
        size_t nx;
        if (audio_resampler_process(s->rs, samples, n, &x, &nx) != 0) {
            free(copy);
            refuse(s, ASR_E_INTERNAL, seq, 0);
            flush(s);
            return ASR_E_INTERNAL;
        }
        samples = x;
        n = nx;
    }
    if (s->win && win_append(s, samples, n) != 0) {
        free(copy);
        refuse(s, ASR_E_INTERNAL, seq, 0);
        flush(s);
        return ASR_E_INTERNAL;
    }
    s->pending++;
    s->stats.bytes += len;
    s->stats.audio_ms += (uint64_t)len / 2 * 1000 / s->cfg.sample_rate;
    if (is_rest(s)) {
        metrics.rest_audio_ms += (uint64_t)len / 2 * 1000 / s->cfg.sample_rate;
    } else {
        metrics.chunks_accepted++;
        metrics.bytes_in += len;
        metrics.audio_ms_in += (uint64_t)len / 2 * 1000 / s->cfg.sample_rate;
    }

    uint64_t c0 = vad_samples(s->vad);
    uint64_t speech0 = vad_speech_ms_total(s->vad);
    s->recent[s->n_recent % 8].seq = seq;
    s->recent[s->n_recent % 8].start = c0;
    s->n_recent++;
    if (s->win && !s->win->first_new_ns) s->win->first_new_ns = now_ns;
    struct vad_event ev[32];
    size_t n_ev = 0, cap = sizeof ev / sizeof ev[0];
    /* The VAD reports at most two events per frame; feed in pieces small
     * enough that the event array never overflows. */
    size_t frame = (size_t)s->rate * s->cfg.vad.frame_ms / 1000;
    size_t piece = frame * (cap / 2 - 2);

    /* Order per chunk: its speech_started events, the partial, then its finals.
     * Speech answers are pushed before the partial as they are found, so the
     * partial slot is pushed after the VAD pass; finals wait in a small list. */
    struct { uint64_t seq, start, end; } finals[SESS_MAX_FINALS_PER_CHUNK];
    size_t n_finals = 0;
    struct { size_t from, to; unsigned speech_ms; } segs[2 * SESS_MAX_FINALS_PER_CHUNK + 1];
    size_t n_segs = 0, seg_from = 0;
    uint64_t seg_speech0 = speech0;
    for (size_t off = 0; off < n;) {
        size_t take = n - off < piece ? n - off : piece;
        vad_feed(s->vad, samples + off, take, ev, cap, &n_ev);
        for (size_t i = 0; i < n_ev; i++) {
            if (ev[i].type == VAD_SPEECH_START) {
                queue_speech_started(s, seq, ev[i].offset_ms);
                s->utt_start_ms = ev[i].offset_ms;
                if (s->win) win_utterance_begins(s, ev[i].offset_ms);
            } else if (n_finals < SESS_MAX_FINALS_PER_CHUNK) {
                uint64_t fseq = ev[i].speech_ms_total > speech0 ? seq : s->last_speech_seq;
                size_t cut = (size_t)(ev[i].at_sample - c0);
                if (cut > seg_from) {
                    segs[n_segs].from = seg_from;
                    segs[n_segs].to = cut;
                    segs[n_segs].speech_ms = (unsigned)(ev[i].speech_ms_total - seg_speech0);
                    n_segs++;
                }
                seg_from = cut;
                seg_speech0 = ev[i].speech_ms_total;
                finals[n_finals].seq = fseq;
                finals[n_finals].start = s->utt_start_ms;
                finals[n_finals].end = ev[i].offset_ms;
                n_finals++;
                /* Mark the segment list: a finalize follows segment n_segs-1. */
                segs[n_segs].from = (size_t)-1; /* sentinel slot for "finalize here" */
                segs[n_segs].to = n_finals - 1;
                n_segs++;
            }
        }
        off += take;
    }
    uint64_t speech_end = vad_speech_ms_total(s->vad);
    if (seg_from < n) {
        segs[n_segs].from = seg_from;
        segs[n_segs].to = n;
        segs[n_segs].speech_ms = (unsigned)(speech_end - seg_speech0);
        n_segs++;
    }
    if (speech_end > speech0) s->last_speech_seq = seq;
    metrics.vad_frames += n / (frame ? frame : 1);
    metrics.vad_speech_frames += (speech_end - speech0) / s->cfg.vad.frame_ms;

    struct answer *p = ring_push(s, ANS_PARTIAL, seq);
    p->end_sample = vad_samples(s->vad);
    p->vad_silence_ms = vad_silence_ms(s->vad);
    p->vad_speech_end_ms = vad_last_speech_end_ms(s->vad);
    p->vad_speech_seq = s->last_speech_seq;
    p->bytes = len;
    s->pending_bytes += len;
    p->is_speech = speech_end > speech0 || vad_in_utterance(s->vad);
    p->t_arrival_ns = now_ns;
    /* Engine requests in audio order: segments and finalizes interleaved.
     * parts_left counts submits only; the finals sit after the partial. */
    size_t fin_base = s->ring_len;
    for (size_t i = 0; i < n_finals; i++) {
        struct answer *f = ring_push(s, ANS_FINAL, finals[i].seq);
        f->a = finals[i].start;
        f->b = finals[i].end;
    }
    uint64_t base_ms = c0 * 1000 / s->rate;
    p = ring_at(s, fin_base - 1);
    p->t_submit_ns = util_now_ns();
    if (s->win) {
        /* windowed: each utterance end is one job for its final; then
         * perhaps a window of the utterance still open */
        for (size_t i = 0; i < n_finals; i++) win_request_final(s, ring_at(s, fin_base + i));
        win_maybe_window(s, p, now_ns);
    } else {
        for (size_t i = 0; i < n_segs; i++) {
            if (segs[i].from == (size_t)-1) {
                metrics.engine_requests++;
                int rc = engine_finalize(s->eng, on_finalize_done, s);
                if (rc != 0) {
                    struct answer *f = ring_at(s, fin_base + segs[i].to);
                    f->has_text = 1;
                    mark_failed(f, rc);
                }
                continue;
            }
            submit_part(s, p, samples + segs[i].from, segs[i].to - segs[i].from, segs[i].speech_ms,
                        base_ms + segs[i].from * 1000 / s->rate);
        }
    }
    free(copy);
    if (p->parts_left == 0) p->t_done_ns = util_now_ns();
    /* An utterance longer than max_utterance_ms ends here, with a final. */
    if (s->cfg.max_utterance_ms && vad_in_utterance(s->vad) &&
        vad_offset_ms(s->vad) - s->utt_start_ms >= s->cfg.max_utterance_ms) {
        struct vad_event end;
        if (vad_end_utterance(s->vad, &end)) {
            metrics.utterances_cut++;
            queue_final(s, s->last_speech_seq, s->utt_start_ms, end.offset_ms);
        }
    }
    if (s->win) win_trim(s);
    /* the caller stops reading now (refill: the bucket's clock is at now_ns) */
    if (hold_starts(s)) s->held = 1;
    flush(s);
    return 0;
}

/* Takes no number, but waits its turn behind answers owed (docs/API.md
 * "Fine points": only OUT_OF_ORDER skips the line). */
void sess_invalid_message(struct asr_session *s, const char *why) {
    struct answer *a = ring_push(s, ANS_ERROR, 0);
    a->err = ASR_E_INVALID_MESSAGE;
    a->why = why;
    flush(s);
}

int sess_finalize(struct asr_session *s) {
    if (s->state != SESS_ACTIVE && s->state != SESS_CLOSING) return ASR_EINVAL;

    struct vad_event ev;
    if (vad_end_utterance(s->vad, &ev))
        queue_final(s, s->last_speech_seq, s->utt_start_ms, ev.offset_ms);
    else
        queue_empty_final(s);
    flush(s);
    return 0;
}

int sess_drain(struct asr_session *s) {
    if (s->state == SESS_CLOSING || s->state == SESS_CLOSED) return 0;
    if (sess_transition(s, SESS_CLOSING) != 0) return ASR_EINVAL;
    flush(s);
    return 0;
}

int sess_stop(struct asr_session *s) {
    if (s->state == SESS_CLOSING || s->state == SESS_CLOSED) return 0;
    if (s->state == SESS_ACTIVE) sess_finalize(s);
    return sess_drain(s);
}

int sess_stop_verify(struct asr_session *s) {
    if (s->state == SESS_CLOSING || s->state == SESS_CLOSED) return 0;
    if (s->state == SESS_ACTIVE) {
        sess_finalize(s);
        if (s->fbk) queue_verification(s);
    }
    return sess_drain(s);
}

/* ---- snapshot and restore (the session store) ------------------------------ */

int sess_take_dirty(struct asr_session *s) {
    int d = s->dirty;
    s->dirty = 0;
    return d;
}

static void json_text(struct buf *b, const char *key, const char *t, size_t n) {
    buf_printf(b, ",\"%s\":", key);
    buf_json_str(b, t ? t : "", t ? n : 0);
}

int sess_snapshot(const struct asr_session *s, struct buf *b) {
    int bad = 0;
    buf_printf(b, "{\"v\":1,\"rate\":%u,\"seq\":%llu,\"samples\":%llu,\"utt\":%d,\"utt_start_ms\":%llu"
                  ",\"silence_ms\":%u,\"speech_end_ms\":%llu,\"speech_seq\":%llu",
               s->cfg.sample_rate, (unsigned long long)s->ans_seq, (unsigned long long)s->ans_samples,
               s->ans_utt_open, (unsigned long long)s->ans_utt_start_ms, s->ans_silence_ms,
               (unsigned long long)s->ans_speech_end_ms, (unsigned long long)s->ans_speech_seq);
    /* an utterance that already moved once keeps its earlier text */
    if (s->ans_utt_open) {
        struct buf t;
        buf_init(&t, SESS_UTT_TEXT_MAX * 2);
        if (s->utt_prefix) buf_puts(&t, s->utt_prefix);
        if (s->utt_prefix && s->utt_text.len) buf_append(&t, " ", 1);
        if (s->utt_text.len) buf_append(&t, s->utt_text.data, s->utt_text.len);
        json_text(b, "utt_text", t.data, t.len);
        buf_cleanup(&t);
    }
    buf_printf(b, ",\"finals_sent\":%llu,\"created_ms\":%llu,\"stats\":[%llu,%llu,%llu,%llu,%llu,%llu]",
               (unsigned long long)s->finals_sent, (unsigned long long)s->stats.created_ms,
               (unsigned long long)s->stats.audio_ms, (unsigned long long)s->stats.bytes,
               (unsigned long long)s->stats.chunks, (unsigned long long)s->stats.partials,
               (unsigned long long)s->stats.finals, (unsigned long long)s->stats.errors);
    buf_puts(b, ",\"kept\":[");
    for (unsigned i = 0; i < s->n_kept; i++) {
        buf_printf(b, "%s{\"seq\":%llu,\"start_ms\":%llu,\"end_ms\":%llu", i ? "," : "",
                   (unsigned long long)s->kept[i].seq, (unsigned long long)s->kept[i].a,
                   (unsigned long long)s->kept[i].b);
        json_text(b, "text", s->kept[i].text, s->kept[i].text_len);
        buf_puts(b, "}");
    }
    bad |= buf_puts(b, "]}");
    return bad ? ASR_ENOMEM : 0;
}

struct asr_session *sess_restore(const struct sess_cfg *cfg, const char *id, const void *blob, size_t len) {
    json_error_t jerr;
    json_t *j = json_loadb(blob, len, 0, &jerr);
    if (!j || !json_is_object(j) || json_integer_value(json_object_get(j, "v")) != 1 ||
        (unsigned)json_integer_value(json_object_get(j, "rate")) != cfg->sample_rate ||
        strlen(id) >= sizeof ((struct asr_session *)0)->id) {
        json_decref(j);
        return NULL;
    }
    struct asr_session *s = sess_create(cfg);
    if (!s) {
        json_decref(j);
        return NULL;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    s->ans_seq = s->last_seq = s->last_speech_seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
    s->ans_samples = (uint64_t)json_integer_value(json_object_get(j, "samples"));
    s->ans_utt_open = json_is_true(json_object_get(j, "utt")) || json_integer_value(json_object_get(j, "utt")) == 1;
    s->ans_utt_start_ms = s->utt_start_ms = (uint64_t)json_integer_value(json_object_get(j, "utt_start_ms"));
    s->ans_silence_ms = (unsigned)json_integer_value(json_object_get(j, "silence_ms"));
    s->ans_speech_end_ms = (uint64_t)json_integer_value(json_object_get(j, "speech_end_ms"));
    /* The open utterance's final goes to the chunk of its last speech frame
     * (docs/API.md "final"), which may be before the snapshot's last chunk:
     * a snapshot taken during the endpointing silence. Older snapshots
     * without it fall back to their last chunk. */
    json_t *ss = json_object_get(j, "speech_seq");
    if (json_is_integer(ss) && (uint64_t)json_integer_value(ss) <= s->last_seq)
        s->last_speech_seq = s->ans_speech_seq = (uint64_t)json_integer_value(ss);
    else
        s->ans_speech_seq = s->last_seq;
    vad_restore(s->vad, s->ans_samples, s->ans_utt_open, s->utt_start_ms, s->ans_silence_ms,
                s->ans_speech_end_ms);
    if (s->win) {
        /* the buffer starts where the stream goes on (engine-rate positions,
         * as the VAD's), not at 0: else every job would be clipped empty */
        s->win->base = s->win->last_window_end = s->ans_samples;
        if (s->ans_utt_open) s->win->utt_start = ms_to_samples(s, s->utt_start_ms);
    }
    const char *ut = json_string_value(json_object_get(j, "utt_text"));
    if (s->ans_utt_open && ut && *ut && !(s->utt_prefix = strdup(ut))) {
        json_decref(j);
        sess_destroy(s);
        return NULL; /* no memory: a restore that lost the utterance's text would be wrong */
    }
    s->finals_sent = (uint64_t)json_integer_value(json_object_get(j, "finals_sent"));
    s->stats.created_ms = (uint64_t)json_integer_value(json_object_get(j, "created_ms"));
    json_t *st = json_object_get(j, "stats");
    uint64_t *f[] = {&s->stats.audio_ms, &s->stats.bytes, &s->stats.chunks, &s->stats.partials,
                     &s->stats.finals, &s->stats.errors};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) *f[i] = (uint64_t)json_integer_value(json_array_get(st, i));
    json_t *kept = json_object_get(j, "kept");
    size_t n = json_array_size(kept);
    if (n > KEPT_FINALS_MAX) n = KEPT_FINALS_MAX;
    if (n && (s->kept = calloc(KEPT_FINALS_MAX, sizeof *s->kept)) != NULL) {
        for (size_t i = 0; i < n; i++) {
            json_t *k = json_array_get(kept, i);
            struct answer *a = &s->kept[s->n_kept++];
            a->kind = ANS_FINAL;
            a->seq = (uint64_t)json_integer_value(json_object_get(k, "seq"));
            a->a = (uint64_t)json_integer_value(json_object_get(k, "start_ms"));
            a->b = (uint64_t)json_integer_value(json_object_get(k, "end_ms"));
            const char *t = json_string_value(json_object_get(k, "text"));
            if (t && *t) {
                a->text = strdup(t);
                a->text_len = a->text ? strlen(t) : 0;
            }
        }
    }
    json_decref(j);
    return s;
}

unsigned sess_snapshot_rate(const void *blob, size_t len) {
    json_t *j = json_loadb(blob, len, 0, NULL);
    unsigned r = (unsigned)json_integer_value(json_object_get(j, "rate"));
    json_decref(j);
    return r;
}
