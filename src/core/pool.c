/* The inference pool (pool.h, docs/internals/inference-pool.md).
 *
 * One mutex guards the ready lists, the clients' FIFOs and the done list;
 * threads wait on one condition variable. A thread takes the first client
 * of the highest class that has one, runs that client's oldest job with the
 * lock released, and puts the job on the done list; a uv_async wakes the
 * loop, which delivers done lists in order and puts the client back in line
 * (at the tail of its class: round robin) if it has more work. */
#include "core/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/util.h"

/* What decode() writes (engine.h): the words joined by single spaces in
 * text, and each word's place in it. */
struct out_word {
    size_t   off, len;                  /* in text */
    uint64_t start_ms, end_ms;
    float    confidence;
};

struct engine_output {
    struct buf       text;
    struct out_word *words;             /* owned */
    size_t           n, cap;
};

#define POOL_OUTPUT_MAX (1u << 20)      /* bytes of text one decode may produce */

int engine_output_word(struct engine_output *o, const char *w, size_t len, uint64_t start_ms, uint64_t end_ms,
                       float confidence) {
    if (!o || (!w && len)) return ASR_EINVAL;
    if (len == 0) return 0;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 32;
        struct out_word *nw = realloc(o->words, cap * sizeof *nw);
        if (!nw) return ASR_ENOMEM;
        o->words = nw;
        o->cap = cap;
    }
    size_t off = o->text.len + (o->text.len ? 1 : 0);
    if ((o->text.len && buf_append(&o->text, " ", 1) != 0) || buf_append(&o->text, w, len) != 0) return ASR_ENOMEM;
    o->words[o->n++] = (struct out_word){off, len, start_ms, end_ms, confidence};
    return 0;
}

static void output_free(struct engine_output *o) {
    if (!o) return;
    buf_cleanup(&o->text);
    free(o->words);
    free(o);
}

struct pool {
    uv_loop_t        *loop;             /* borrowed */
    const struct engine_ops *ops;       /* static table */
    const void       *settings;         /* borrowed, process lifetime */
    unsigned          rate;
    pthread_mutex_t   mu;
    pthread_cond_t    cv;               /* work arrived, or stop */
    pthread_cond_t    started_cv;       /* a thread finished creating its instance */
    pthread_t        *tids;             /* owned */
    unsigned          next_index;       /* instance index handed to the next thread that starts */
    unsigned          n_threads;        /* started */
    unsigned          n_started;        /* reported in (ok or not) */
    unsigned          n_failed;         /* could not create an instance */
    int               stop;
    struct pool_client *ready_head[POOL__CLASSES], *ready_tail[POOL__CLASSES];
    struct pool_job  *done_head, *done_tail;  /* decoded, not yet delivered */
    uv_async_t        async;            /* wakes the loop for the done list */
    struct pool_stats stats;            /* under mu, except what the loop alone writes */
    struct pool_stats snap;             /* copy handed to pool_stats() */
};

static uint64_t queued_bounded(const struct pool *p) {
    return p->stats.queued - p->stats.queued_class[POOL_FINAL];
}

/* ---- jobs -------------------------------------------------------------- */

struct pool_job *pool_job_create(const int16_t *pcm, size_t n, unsigned rate, const char *hint, size_t hint_len) {
    struct pool_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    if (n && !(j->pcm_ = malloc(n * sizeof *pcm))) goto fail;
    if (n) memcpy(j->pcm_, pcm, n * sizeof *pcm);
    j->n_ = n;
    j->rate_ = rate;
    if (hint && hint_len) {
        if (!(j->hint_ = malloc(hint_len + 1))) goto fail;
        memcpy(j->hint_, hint, hint_len);
        j->hint_[hint_len] = '\0';
        j->hint_len_ = hint_len;
    }
    return j;
fail:
    pool_job_free(j);
    return NULL;
}

void pool_job_free(struct pool_job *j) {
    if (!j) return;
    free(j->pcm_);
    free(j->hint_);
    output_free(j->out_);
    free(j);
}

/* ---- ready lists (under mu) ---------------------------------------------- */

static void ready_push(struct pool *p, struct pool_client *c) {
    enum pool_class k = c->head_->cls_;
    c->next_ = NULL;
    if (p->ready_tail[k]) p->ready_tail[k]->next_ = c;
    else p->ready_head[k] = c;
    p->ready_tail[k] = c;
    c->ready_ = 1;
}

static void ready_remove(struct pool *p, struct pool_client *c) {
    for (int k = 0; k < POOL__CLASSES; k++) {
        struct pool_client *prev = NULL;
        for (struct pool_client *e = p->ready_head[k]; e; prev = e, e = e->next_) {
            if (e != c) continue;
            if (prev) prev->next_ = e->next_;
            else p->ready_head[k] = e->next_;
            if (p->ready_tail[k] == e) p->ready_tail[k] = prev;
            c->ready_ = 0;
            c->next_ = NULL;
            return;
        }
    }
}

/* The next job to run: the oldest job of the first client of the highest
 * class that has one; among partial windows, of the client served least
 * so far (first in line among equals). Streams that start together send
 * their windows at the same instants: served in a fixed arrival order, the
 * same streams would always wait longest; least served first takes turns.
 * NULL when nothing is ready. */
static struct pool_job *take_job(struct pool *p) {
    for (int k = 0; k < POOL__CLASSES; k++) {
        struct pool_client *c = p->ready_head[k];
        if (!c) continue;
        if (k == POOL_WINDOW)
            for (struct pool_client *e = c->next_; e; e = e->next_)
                if (e->served_ < c->served_) c = e;
        ready_remove(p, c);
        c->served_++;
        struct pool_job *j = c->head_;
        c->head_ = j->next_;
        if (!c->head_) c->tail_ = NULL;
        j->next_ = NULL;
        c->running_ = j;
        p->stats.queued--;
        p->stats.queued_class[j->cls_]--;
        return j;
    }
    return NULL;
}

/* ---- threads -------------------------------------------------------------- */

static void *thread_main(void *arg) {
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    unsigned index = p->next_index++;
    pthread_mutex_unlock(&p->mu);
    void *inst = p->ops->instance_create(p->settings, index);
    pthread_mutex_lock(&p->mu);
    p->n_started++;
    if (!inst) p->n_failed++;
    pthread_cond_broadcast(&p->started_cv);
    pthread_mutex_unlock(&p->mu);
    if (!inst) return NULL;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct pool_job *j = NULL;
        while (!p->stop && !(j = take_job(p))) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        p->stats.busy++;
        pthread_mutex_unlock(&p->mu);

        j->t_start_ns = util_now_ns();
        int status = ASR_ENOMEM;
        j->out_ = calloc(1, sizeof *j->out_);
        if (j->out_) {
            buf_init(&j->out_->text, POOL_OUTPUT_MAX);
            struct engine_window w = {
                .pcm = j->pcm_, .n = j->n_, .sample_rate = j->rate_, .offset_ms = j->offset_ms,
                .hint = j->hint_, .hint_len = j->hint_len_, .final = j->final,
            };
            status = p->ops->decode(inst, &w, j->out_);
            if (status > 0) status = ASR_E_MODEL_ERROR; /* engines answer 0 or a negative asr_err */
        }
        j->status_ = status;
        j->t_done_ns = util_now_ns();

        pthread_mutex_lock(&p->mu);
        p->stats.busy--;
        p->stats.completed++;
        if (status != 0) p->stats.failed++;
        p->stats.audio_ms += (uint64_t)j->n_ * 1000 / (j->rate_ ? j->rate_ : 1);
        p->stats.busy_ms += (j->t_done_ns - j->t_start_ns) / 1000000;
        j->next_ = NULL;
        if (p->done_tail) p->done_tail->next_ = j;
        else p->done_head = j;
        p->done_tail = j;
        uv_async_send(&p->async);
    }
    pthread_mutex_unlock(&p->mu);
    p->ops->instance_destroy(inst);
    return NULL;
}

/* Delivers decoded jobs on the loop, in the order they finished. A client
 * with more work goes back in line before its done() runs, so a done() that
 * cancels the client finds it where cancel looks. */
static void on_async(uv_async_t *h) {
    struct pool *p = h->data;
    for (;;) {
        /* one at a time: a done() may cancel a client whose evicted jobs
         * still wait in the list (cancel unhooks them there) */
        pthread_mutex_lock(&p->mu);
        struct pool_job *j = p->done_head;
        if (!j) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->done_head = j->next_;
        if (!p->done_head) p->done_tail = NULL;
        j->next_ = NULL;
        struct pool_client *c = j->client_;
        if (c && !j->evicted_) {
            c->running_ = NULL;
            if (c->head_ && !c->ready_) {
                ready_push(p, c);
                pthread_cond_signal(&p->cv);
            }
        }
        pthread_mutex_unlock(&p->mu);
        if (c && j->done) {
            struct engine_word *words = NULL;
            struct engine_result res = {0};
            int status = j->status_;
            if (status == 0 && j->out_) {
                struct engine_output *o = j->out_;
                if (o->n && !(words = malloc(o->n * sizeof *words))) status = ASR_ENOMEM;
                for (size_t i = 0; status == 0 && i < o->n; i++)
                    words[i] = (struct engine_word){
                        .text = o->text.data + o->words[i].off, .len = o->words[i].len,
                        .start_ms = j->offset_ms + o->words[i].start_ms, .end_ms = j->offset_ms + o->words[i].end_ms,
                        .confidence = o->words[i].confidence,
                    };
                res = (struct engine_result){
                    .text = o->text.data ? o->text.data : "", .len = o->text.len, .words = words, .n_words = o->n,
                };
            }
            j->done(j, status, status == 0 ? &res : NULL);
            free(words);
        }
        pool_job_free(j);
    }
}

int pool_create(uv_loop_t *loop, const struct engine_ops *ops, const void *settings, const struct pool_cfg *cfg,
                struct pool **out) {
    if (!loop || !ops || !(ops->caps & ENGINE_CAP_WINDOWED) || !ops->decode || !cfg || cfg->threads == 0 || !out)
        return ASR_EINVAL;
    struct pool *p = calloc(1, sizeof *p);
    if (!p) return ASR_ENOMEM;
    p->loop = loop;
    p->ops = ops;
    p->settings = settings;
    p->rate = ops->sample_rate ? ops->sample_rate : 16000;
    p->stats.threads = cfg->threads;
    p->next_index = 0;
    p->stats.queue_max = cfg->queue_max;
    if (!(p->tids = calloc(cfg->threads, sizeof *p->tids))) {
        free(p);
        return ASR_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->started_cv, NULL);
    if (uv_async_init(loop, &p->async, on_async) != 0) {
        free(p->tids);
        free(p);
        return ASR_EIO;
    }
    p->async.data = p;
    int rc = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        if (pthread_create(&p->tids[i], NULL, thread_main, p) != 0) {
            rc = ASR_ENOMEM;
            break;
        }
        p->n_threads++;
    }
    pthread_mutex_lock(&p->mu);
    while (p->n_started < p->n_threads) pthread_cond_wait(&p->started_cv, &p->mu);
    if (rc == 0 && p->n_failed) rc = ASR_E_MODEL_ERROR;
    pthread_mutex_unlock(&p->mu);
    if (rc != 0) {
        pool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

static void on_async_closed(uv_handle_t *h) { free(h->data); }

void pool_destroy(struct pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++) pthread_join(p->tids[i], NULL);
    for (int k = 0; k < POOL__CLASSES; k++)
        for (struct pool_client *c = p->ready_head[k]; c; c = c->next_)
            while (c->head_) {
                struct pool_job *j = c->head_;
                c->head_ = j->next_;
                pool_job_free(j);
            }
    for (struct pool_job *j = p->done_head, *n; j; j = n) {
        n = j->next_;
        pool_job_free(j);
    }
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->started_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    p->async.data = p; /* freed when the handle has closed */
    uv_close((uv_handle_t *)&p->async, on_async_closed);
}

const struct pool_stats *pool_stats(struct pool *p) {
    pthread_mutex_lock(&p->mu);
    p->snap = p->stats;
    pthread_mutex_unlock(&p->mu);
    return &p->snap;
}

unsigned pool_sample_rate(const struct pool *p) { return p->rate; }

/* ---- clients --------------------------------------------------------------- */

void pool_client_init(struct pool_client *c) { memset(c, 0, sizeof *c); }

unsigned pool_client_jobs(const struct pool_client *c) {
    unsigned n = c->running_ ? 1 : 0;
    for (const struct pool_job *j = c->head_; j; j = j->next_) n++;
    return n;
}

void pool_client_cancel(struct pool *p, struct pool_client *c) {
    if (!p || !c) return;
    pthread_mutex_lock(&p->mu);
    if (c->ready_) ready_remove(p, c);
    while (c->head_) {
        struct pool_job *j = c->head_;
        c->head_ = j->next_;
        p->stats.queued--;
        p->stats.queued_class[j->cls_]--;
        pool_job_free(j);
    }
    c->tail_ = NULL;
    if (c->running_) c->running_->client_ = NULL; /* finishes on its thread; delivered to nobody */
    c->running_ = NULL;
    for (struct pool_job *j = p->done_head; j; j = j->next_) /* evicted, not delivered yet */
        if (j->client_ == c) j->client_ = NULL;
    pthread_mutex_unlock(&p->mu);
}

/* The queue is full and c wants a window in: the waiting window of the
 * most-served client (at the head of its FIFO, in the window ready list)
 * gives way if that client was served more than c. The evicted job goes to
 * the done list with ASR_ECANCELED, so its owner learns the window is off.
 * Under mu. Returns 1 when room was made. */
static int evict_for(struct pool *p, const struct pool_client *c) {
    struct pool_client *victim = NULL;
    for (struct pool_client *e = p->ready_head[POOL_WINDOW]; e; e = e->next_)
        if (e != c && e->head_ && e->head_->cls_ == POOL_WINDOW && (!victim || e->served_ > victim->served_))
            victim = e;
    if (!victim || victim->served_ <= c->served_) return 0;
    struct pool_job *j = victim->head_;
    ready_remove(p, victim);
    victim->head_ = j->next_;
    if (!victim->head_) victim->tail_ = NULL;
    else ready_push(p, victim);
    p->stats.queued--;
    p->stats.queued_class[POOL_WINDOW]--;
    p->stats.evicted++;
    j->status_ = ASR_ECANCELED;
    j->t_start_ns = j->t_done_ns = util_now_ns();
    /* delivered like a finished job; running_ is left alone (this one never ran) */
    j->evicted_ = 1;
    j->next_ = NULL;
    if (p->done_tail) p->done_tail->next_ = j;
    else p->done_head = j;
    p->done_tail = j;
    uv_async_send(&p->async);
    return 1;
}

int pool_job_cancel(struct pool *p, struct pool_client *c, struct pool_job *job) {
    if (!p || !c || !job) return ASR_EINVAL;
    pthread_mutex_lock(&p->mu);
    struct pool_job *prev = NULL, *j = c->head_;
    while (j && j != job) {
        prev = j;
        j = j->next_;
    }
    if (!j) {
        pthread_mutex_unlock(&p->mu);
        return ASR_EAGAIN;
    }
    if (prev) prev->next_ = j->next_;
    else c->head_ = j->next_;
    if (c->tail_ == j) c->tail_ = prev;
    p->stats.queued--;
    p->stats.queued_class[j->cls_]--;
    /* a client in a ready list is filed under its head job's class */
    if (c->ready_) {
        ready_remove(p, c);
        if (c->head_) ready_push(p, c);
    }
    pthread_mutex_unlock(&p->mu);
    pool_job_free(j);
    return 0;
}

int pool_submit(struct pool *p, struct pool_client *c, enum pool_class cls, struct pool_job *job) {
    if (!p || !c || !job || cls < 0 || cls >= POOL__CLASSES) return ASR_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (cls != POOL_FINAL && queued_bounded(p) >= p->stats.queue_max && !(cls == POOL_WINDOW && evict_for(p, c))) {
        p->stats.refused++;
        pthread_mutex_unlock(&p->mu);
        return ASR_EAGAIN;
    }
    job->client_ = c;
    job->cls_ = cls;
    job->next_ = NULL;
    job->t_queued_ns = util_now_ns();
    if (c->tail_) c->tail_->next_ = job;
    else c->head_ = job;
    c->tail_ = job;
    p->stats.queued++;
    p->stats.queued_class[cls]++;
    if (!c->running_ && !c->ready_) {
        ready_push(p, c);
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}
