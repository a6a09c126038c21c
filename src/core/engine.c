/* Loading an engine and the wrappers the core calls (the registry of
 * engines built in is src/engines/registry.c).
 * docs/internals/engine.md describes the ABI and how to add an engine. */
#include "core/engine.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Caller requests kept in each session's ring before it moves to the heap. */
#define ENGINE_RING_INLINE 8

static const struct engine_ops *engine_loaded; /* process-wide; static table */

int engine_load(const struct engine_ops *ops, const struct engine_cfg *cfg) {
    if (!ops || !cfg || engine_loaded) return ASR_EINVAL;
    if (ops->abi != ENGINE_ABI) return ASR_EINVAL;
    if (!ops->name || !ops->load || !ops->session_init || !ops->submit ||
        !ops->finalize || !ops->session_cleanup)
        return ASR_EINVAL;
    int rc = ops->load(cfg);
    if (rc != 0) return rc;
    engine_loaded = ops;
    return 0;
}

void engine_unload(void) {
    if (!engine_loaded) return;
    if (engine_loaded->unload) engine_loaded->unload();
    engine_loaded = NULL;
}

const struct engine_ops *engine_current(void) {
    return engine_loaded;
}

/* Outstanding-request accounting without a per-request allocation.
 *
 * The wrappers hand the engine their own trampoline (engine_on_done) with the
 * session as its argument, and keep the caller's done/arg in a per-session
 * ring. The contract says a session's requests complete in the order they
 * were made, so the trampoline always belongs to the oldest ring entry: it
 * pops it, drops the count, then calls the caller's done as its last act
 * (the caller may destroy the session in there). The ring lives inside the
 * session for the first ENGINE_RING_INLINE requests and moves to a doubling
 * heap array past that, up to ENGINE_MAX_OUTSTANDING; it never shrinks, so a
 * session in steady state allocates nothing per chunk. A dropped request
 * (session_cleanup) never reaches the trampoline, and the ring goes with the
 * session. */
struct engine_req {
    engine_done_fn done;                /* the caller's callback */
    void          *arg;                 /* the caller's argument, borrowed */
};

struct engine_session {
    const struct engine_ops *ops;       /* the engine it belongs to; static table */
    unsigned           outstanding;     /* requests accepted, done not yet run */
    unsigned           head;            /* ring index of the oldest request */
    unsigned           cap;             /* ring entries, a power of two */
    struct engine_req *ring;            /* ring_inline or heap (owned, freed in destroy) */
    struct engine_req  ring_inline[ENGINE_RING_INLINE];
    max_align_t        state[];         /* the engine's ops->session_size bytes */
};

struct engine_session *engine_session_create(const struct engine_session_cfg *cfg) {
    const struct engine_ops *ops = engine_loaded;
    if (!ops || !cfg) return NULL;
    struct engine_session *es =
        calloc(1, offsetof(struct engine_session, state) + ops->session_size);
    if (!es) return NULL;
    es->ops = ops;
    es->cap = ENGINE_RING_INLINE;
    es->ring = es->ring_inline;
    if (ops->session_init(es->state, cfg) != 0) {
        free(es);
        return NULL;
    }
    return es;
}

void engine_session_destroy(struct engine_session *es) {
    if (!es) return;
    es->ops->session_cleanup(es->state);
    if (es->ring != es->ring_inline) free(es->ring);
    free(es);
}

unsigned engine_outstanding(const struct engine_session *es) {
    return es ? es->outstanding : 0;
}

static void engine_on_done(void *arg, int status, const struct engine_result *res) {
    struct engine_session *es = arg;
    assert(es->outstanding > 0);
    assert(status <= 0 && (status == 0 || res == NULL));
    struct engine_req req = es->ring[es->head];
    es->head = (es->head + 1) & (es->cap - 1);
    es->outstanding--;
    req.done(req.arg, status, res);     /* last: es may be gone after this */
}

/* Makes room for one more entry, doubling the ring when full. */
static int engine_ring_reserve(struct engine_session *es) {
    if (es->outstanding < es->cap) return 0;
    if (es->cap >= ENGINE_MAX_OUTSTANDING) return ASR_EAGAIN;
    unsigned cap = es->cap * 2;
    struct engine_req *ring = malloc(cap * sizeof(*ring));
    if (!ring) return ASR_ENOMEM;
    for (unsigned i = 0; i < es->outstanding; i++)
        ring[i] = es->ring[(es->head + i) & (es->cap - 1)];
    if (es->ring != es->ring_inline) free(es->ring);
    es->ring = ring;
    es->cap = cap;
    es->head = 0;
    return 0;
}

/* Writes the caller's request into the next free entry. It only counts once
 * the engine accepted the request, which cannot complete before we return. */
static int engine_ring_push(struct engine_session *es, engine_done_fn done, void *arg) {
    int rc = engine_ring_reserve(es);
    if (rc != 0) return rc;
    es->ring[(es->head + es->outstanding) & (es->cap - 1)] =
        (struct engine_req){.done = done, .arg = arg};
    return 0;
}

int engine_submit(struct engine_session *es, const struct engine_chunk *chunk,
                  engine_done_fn done, void *arg) {
    if (!es || !chunk || !done || (chunk->n && !chunk->pcm)) return ASR_EINVAL;
    int rc = engine_ring_push(es, done, arg);
    if (rc != 0) return rc;
    rc = es->ops->submit(es->state, chunk, engine_on_done, es);
    if (rc != 0) return rc;
    es->outstanding++;
    return 0;
}

int engine_finalize(struct engine_session *es, engine_done_fn done, void *arg) {
    if (!es || !done) return ASR_EINVAL;
    int rc = engine_ring_push(es, done, arg);
    if (rc != 0) return rc;
    rc = es->ops->finalize(es->state, engine_on_done, es);
    if (rc != 0) return rc;
    es->outstanding++;
    return 0;
}
