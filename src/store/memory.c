/* In-memory session store: one process's view (the default backend).
 *
 * Records live in a chained hash table keyed by id. Every op takes effect
 * when it is made and its callback is queued (store__defer), so callers see
 * the same asynchronous contract as with Redis. A record expires
 * session_ttl_ms after its last write (monotonic clock): expired records are
 * dropped when an op finds them, and by a sweep timer. There is one worker,
 * so the owner is always this worker, a record attached here is BUSY for a
 * claim, and on_released never fires. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct mrec {
    struct mrec *next;          /* bucket chain */
    char        *id;            /* owned */
    int          attached;
    uint64_t     created_ms;    /* wall clock */
    uint64_t     last_ms;       /* wall clock, last write */
    uint64_t     expires_ms;    /* monotonic ms */
    void        *blob;          /* owned, malloc'd (NULL when blob_len is 0) */
    size_t       blob_len;
};

struct mstore {
    struct store   base;
    struct mrec  **buckets;     /* owned; nbuckets chains */
    size_t         nbuckets;    /* power of two */
    size_t         count;       /* records held, expired ones not yet dropped included */
    uv_timer_t     sweep;       /* drops expired records */
};

#define MEM_INITIAL_BUCKETS 64

static uint64_t mono_ms(void) { return util_now_ns() / 1000000u; }

static size_t hash_id(const char *id) {
    uint64_t h = 1469598103934665603ull;            /* FNV-1a */
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)h;
}

static void rec_free(struct mrec *r) {
    free(r->id);
    free(r->blob);
    free(r);
}

/* Unlinks *pp (a chain link) and frees the record. */
static void rec_remove(struct mstore *m, struct mrec **pp) {
    struct mrec *r = *pp;
    *pp = r->next;
    m->count--;
    rec_free(r);
}

/* The live record id, or NULL; drops it when expired. */
static struct mrec *rec_find(struct mstore *m, const char *id, struct mrec ***link) {
    struct mrec **pp = &m->buckets[hash_id(id) & (m->nbuckets - 1)];
    uint64_t now = mono_ms();
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) != 0) continue;
        if ((*pp)->expires_ms <= now) {
            rec_remove(m, pp);
            return NULL;
        }
        if (link) *link = pp;
        return *pp;
    }
    return NULL;
}

static void sweep_all(struct mstore *m) {
    uint64_t now = mono_ms();
    for (size_t b = 0; b < m->nbuckets; b++) {
        struct mrec **pp = &m->buckets[b];
        while (*pp) {
            if ((*pp)->expires_ms <= now) rec_remove(m, pp);
            else pp = &(*pp)->next;
        }
    }
}

static void on_sweep(uv_timer_t *t) { sweep_all(t->data); }

static void grow(struct mstore *m) {
    size_t nb = m->nbuckets * 2;
    struct mrec **nbk = xcalloc(nb, sizeof *nbk);
    for (size_t b = 0; b < m->nbuckets; b++) {
        struct mrec *r = m->buckets[b];
        while (r) {
            struct mrec *next = r->next;
            size_t i = hash_id(r->id) & (nb - 1);
            r->next = nbk[i];
            nbk[i] = r;
            r = next;
        }
    }
    free(m->buckets);
    m->buckets = nbk;
    m->nbuckets = nb;
}

/* A malloc'd copy of p[0..n), NULL for n == 0; *ok = 0 when malloc failed. */
static void *dup_bytes(const void *p, size_t n, int *ok) {
    *ok = 1;
    if (!n) return NULL;
    void *q = malloc(n);
    if (!q) *ok = 0;
    else memcpy(q, p, n);
    return q;
}

/* Copies r into the op's deferred result. 0, or STORE_UNAVAILABLE when the
 * blob copy cannot be allocated. */
static int res_from(struct store__op *op, const struct mrec *r, int with_prev) {
    struct store__res *res = &op->res_;
    int ok;
    res->blob = dup_bytes(r->blob, r->blob_len, &ok);
    if (!ok) return STORE_UNAVAILABLE;
    res->has_rec = 1;
    res->id = xstrdup(r->id);
    res->owner = xstrdup(op->s_->worker_);
    if (with_prev) res->prev_owner = xstrdup(op->s_->worker_);
    res->blob_len = r->blob_len;
    res->attached = r->attached;
    res->created_ms = r->created_ms;
    res->last_ms = r->last_ms;
    return STORE_OK;
}

static int do_create(struct mstore *m, const struct store__args *a) {
    struct store *s = &m->base;
    if (rec_find(m, a->id, NULL)) return STORE_EXISTS;
    if (s->max_sessions_) {
        if (m->count >= s->max_sessions_) sweep_all(m);
        if (m->count >= s->max_sessions_) return STORE_LIMIT;
    }
    int ok;
    void *blob = dup_bytes(a->blob, a->blob_len, &ok);
    if (!ok) return STORE_UNAVAILABLE;
    struct mrec *r = xcalloc(1, sizeof *r);
    r->id = xstrdup(a->id);
    r->attached = 1;
    r->created_ms = r->last_ms = util_wall_ms();
    r->expires_ms = mono_ms() + s->session_ttl_ms_;
    r->blob = blob;
    r->blob_len = a->blob_len;
    if (m->count >= m->nbuckets) grow(m);
    struct mrec **head = &m->buckets[hash_id(r->id) & (m->nbuckets - 1)];
    r->next = *head;
    *head = r;
    m->count++;
    return STORE_OK;
}

static int do_update(struct mstore *m, const struct store__args *a) {
    struct mrec *r = rec_find(m, a->id, NULL);
    if (!r) return STORE_NOT_FOUND;
    if (a->blob) {
        int ok;
        void *blob = dup_bytes(a->blob, a->blob_len, &ok);
        if (!ok) return STORE_UNAVAILABLE;
        free(r->blob);
        r->blob = blob;
        r->blob_len = a->blob_len;
    }
    r->attached = a->attached;
    r->last_ms = util_wall_ms();
    r->expires_ms = mono_ms() + m->base.session_ttl_ms_;
    return STORE_OK;
}

/* One process's view loses nothing, but the contract is the same: absent
 * -> created (no limit check), present -> updated with the blob. */
static int do_republish(struct mstore *m, const struct store__args *a) {
    if (!rec_find(m, a->id, NULL)) {
        uint64_t max = m->base.max_sessions_;
        m->base.max_sessions_ = 0;
        int st = do_create(m, a);
        m->base.max_sessions_ = max;
        if (st != STORE_OK) return st;
    }
    return do_update(m, a);
}

static int do_claim(struct mstore *m, struct store__op *op, const struct store__args *a) {
    struct mrec *r = rec_find(m, a->id, NULL);
    if (!r) return STORE_NOT_FOUND;
    if (r->attached) return STORE_BUSY;
    r->attached = 1;
    r->last_ms = util_wall_ms();
    r->expires_ms = mono_ms() + m->base.session_ttl_ms_;
    int st = res_from(op, r, 1);
    if (st != STORE_OK) r->attached = 0;           /* not claimed after all */
    return st;
}

static int do_list(struct mstore *m, struct store__op *op, const struct store__args *a) {
    if (strcmp(a->worker, m->base.worker_) != 0) return STORE_OK;
    sweep_all(m);
    struct store__res *res = &op->res_;
    res->ids = xcalloc(m->count ? m->count : 1, sizeof *res->ids);
    for (size_t b = 0; b < m->nbuckets; b++)
        for (struct mrec *r = m->buckets[b]; r; r = r->next)
            res->ids[res->n_ids++] = xstrdup(r->id);
    return STORE_OK;
}

static void mem_submit(struct store *s, struct store__op *op, const struct store__args *a) {
    struct mstore *m = (struct mstore *)s;
    int st = STORE_OK;
    struct mrec **link;
    struct mrec *r;
    switch (op->kind_) {
    case STORE_OP_CREATE: st = do_create(m, a); break;
    case STORE_OP_UPDATE: st = do_update(m, a); break;
    case STORE_OP_CLAIM:  st = do_claim(m, op, a); break;
    case STORE_OP_GET:
        r = rec_find(m, a->id, NULL);
        st = r ? res_from(op, r, 0) : STORE_NOT_FOUND;
        break;
    case STORE_OP_DELETE:
        r = rec_find(m, a->id, &link);
        if (r) rec_remove(m, link);
        st = r ? STORE_OK : STORE_NOT_FOUND;
        break;
    case STORE_OP_LIST:  st = do_list(m, op, a); break;
    case STORE_OP_REPUBLISH: st = do_republish(m, a); break;
    case STORE_OP_COUNT:
        sweep_all(m);
        op->res_.count = m->count;
        break;
    case STORE_OP__N: st = ASR_EINVAL; break;
    }
    store__defer(op, st);
}

static void mem_open(struct store *s, const struct store_url *url) {
    struct mstore *m = (struct mstore *)s;
    m->nbuckets = MEM_INITIAL_BUCKETS;
    m->buckets = xcalloc(m->nbuckets, sizeof *m->buckets);
    uint64_t every = s->session_ttl_ms_ / 2;
    if (every > 1000) every = 1000;
    if (every < 10) every = 10;
    uv_timer_init(s->loop_, &m->sweep);
    m->sweep.data = m;
    uv_timer_start(&m->sweep, on_sweep, every, every);
    uv_unref((uv_handle_t *)&m->sweep);
    s->stats_.connected = 1;          /* always; on_state never fires */
}

static int mem_available(const struct store *s) { return 1; }

static void mem_teardown(struct store *s) {
    struct mstore *m = (struct mstore *)s;
    uv_timer_stop(&m->sweep);
    store__close_handle(s, (uv_handle_t *)&m->sweep);
}

static void mem_destroy(struct store *s) {
    struct mstore *m = (struct mstore *)s;
    for (size_t b = 0; b < m->nbuckets; b++) {
        struct mrec *r = m->buckets[b];
        while (r) {
            struct mrec *next = r->next;
            rec_free(r);
            r = next;
        }
    }
    free(m->buckets);
}

const struct store__backend store__memory = {
    .name = "memory",
    .size = sizeof(struct mstore),
    .op_size = sizeof(struct store__op),
    .open = mem_open,
    .available = mem_available,
    .submit = mem_submit,
    .teardown = mem_teardown,
    .destroy = mem_destroy,
};
