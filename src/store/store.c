/* Session store: configuration, argument checks, dispatch to the backend
 * chosen at open time, the deferred-completion queue both backends use so
 * that callbacks never run inside the caller's call, and the close sequence.
 * The backends are memory.c and redis.c. */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ---- URL --------------------------------------------------------------- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies s[0..n) into out (size cap), decoding %XX when decode is set.
 * ASR_EINVAL when it does not fit or an escape is malformed. */
static int copy_part(char *out, size_t cap, const char *s, size_t n, int decode) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (decode && c == '%') {
            if (i + 2 >= n) return ASR_EINVAL;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return ASR_EINVAL;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap) return ASR_EINVAL;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_uint(const char *s, size_t n, uint64_t max, unsigned *out) {
    uint64_t v;
    if (util_parse_u64(s, n, max, &v) != 0) return ASR_EINVAL;
    *out = (unsigned)v;
    return 0;
}

/* "[user]:password@" at the start of rest, up to the first '@' before any '/'.
 * Advances *rest past it. */
static int parse_userinfo(const char **rest, struct store_url *u) {
    const char *p = *rest;
    const char *at = NULL;
    for (const char *q = p; *q && *q != '/'; q++)
        if (*q == '@') at = q;
    if (!at) return 0;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon) return ASR_EINVAL;       /* user without a password: say what you mean */
    if (copy_part(u->user, sizeof u->user, p, (size_t)(colon - p), 1) != 0) return ASR_EINVAL;
    if (copy_part(u->password, sizeof u->password, colon + 1, (size_t)(at - colon - 1), 1) != 0)
        return ASR_EINVAL;
    *rest = at + 1;
    return 0;
}

int store_url_parse(const char *url, struct store_url *out) {
    struct store_url u;
    memset(&u, 0, sizeof u);
    u.port = 6379;
    if (!url) return ASR_EINVAL;
    const char *p;
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
        if (parse_userinfo(&p, &u) != 0) return ASR_EINVAL;
        const char *hend;
        if (*p == '[') {                               /* [IPv6] */
            hend = strchr(p, ']');
            if (!hend || hend == p + 1) return ASR_EINVAL;
            if (copy_part(u.host, sizeof u.host, p + 1, (size_t)(hend - p - 1), 0) != 0)
                return ASR_EINVAL;
            p = hend + 1;
        } else {
            hend = p + strcspn(p, ":/?");
            if (hend == p) return ASR_EINVAL;
            if (copy_part(u.host, sizeof u.host, p, (size_t)(hend - p), 0) != 0) return ASR_EINVAL;
            p = hend;
        }
        if (*p == ':') {
            p++;
            size_t n = strcspn(p, "/?");
            if (parse_uint(p, n, 65535, &u.port) != 0 || u.port == 0) return ASR_EINVAL;
            p += n;
        }
        if (*p == '/') {
            p++;
            size_t n = strcspn(p, "?");
            if (n && parse_uint(p, n, 1000000, &u.db) != 0) return ASR_EINVAL;
            p += n;
        }
        if (*p) return ASR_EINVAL;
    } else if (strncmp(url, "unix://", 7) == 0) {
        u.is_unix = 1;
        p = url + 7;
        if (parse_userinfo(&p, &u) != 0) return ASR_EINVAL;
        if (*p != '/') return ASR_EINVAL;
        size_t n = strcspn(p, "?");
        if (copy_part(u.path, sizeof u.path, p, n, 0) != 0 || n < 2) return ASR_EINVAL;
        p += n;
        if (*p == '?') {
            p++;
            if (strncmp(p, "db=", 3) != 0) return ASR_EINVAL;
            p += 3;
            if (parse_uint(p, strlen(p), 1000000, &u.db) != 0) return ASR_EINVAL;
        }
    } else {
        return ASR_EINVAL;
    }
    *out = u;
    return 0;
}

/* ---- open / close -------------------------------------------------------- */

int store__valid_name(const char *s, size_t max) {
    if (!s) return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c <= 0x20 || c >= 0x7f || n >= max) return 0;
    }
    return n > 0;
}

static void on_idle(uv_idle_t *h);

int store_open(uv_loop_t *loop, const struct store_cfg *cfg, struct store **out) {
    struct store_url url;
    memset(&url, 0, sizeof url);
    if (!loop || !cfg || !out) return ASR_EINVAL;
    const struct store__backend *be = &store__memory;
    if (cfg->redis_url && cfg->redis_url[0]) {
        if (store_url_parse(cfg->redis_url, &url) != 0) return ASR_EINVAL;
        be = &store__redis;
    }
    if (!store__valid_name(cfg->worker_id, STORE_WORKER_ID_MAX)) return ASR_EINVAL;
    if (cfg->session_ttl_s == 0) return ASR_EINVAL;
    const char *prefix = cfg->key_prefix ? cfg->key_prefix : "asrd:";
    if (strlen(prefix) > STORE_PREFIX_MAX) return ASR_EINVAL;

    struct store *s = xcalloc(1, be->size);
    s->be_ = be;
    s->loop_ = loop;
    snprintf(s->worker_, sizeof s->worker_, "%s", cfg->worker_id);
    snprintf(s->prefix_, sizeof s->prefix_, "%s", prefix);
    s->session_ttl_ms_ = (uint64_t)cfg->session_ttl_s * 1000;
    s->heartbeat_ttl_ms_ = (uint64_t)(cfg->heartbeat_ttl_s ? cfg->heartbeat_ttl_s : 3) * 1000;
    s->max_sessions_ = cfg->max_global_sessions;
    s->op_timeout_ms_ = cfg->op_timeout_ms ? cfg->op_timeout_ms : 1000;
    s->on_released_ = cfg->on_released;
    s->on_state_ = cfg->on_state;
    s->ctx_ = cfg->ctx;
    uv_idle_init(loop, &s->idle_);
    s->idle_.data = s;
    be->open(s, &url);
    memset(&url, 0, sizeof url);        /* the password */
    *out = s;
    return 0;
}

/* Called whenever something the close waits for may have ended. The
 * backend's teardown runs once no user op is pending, from the idle
 * callback (never inside a hiredis callback or a user call); the store is
 * freed once every handle closed and every hold ended. */
static void maybe_finish_close(struct store *s) {
    if (!s->closing_ || !s->torn_down_ || s->handles_open_ || s->holds_) return;
    store_closed_fn cb = s->on_closed_;
    void *arg = s->closed_arg_;
    s->be_->destroy(s);
    free(s);
    if (cb) cb(arg);
}

static void on_handle_closed(uv_handle_t *h) {
    struct store *s = h->data;
    s->handles_open_--;
    maybe_finish_close(s);
}

void store__close_handle(struct store *s, uv_handle_t *h) {
    h->data = s;
    s->handles_open_++;
    uv_close(h, on_handle_closed);
}

void store__release_hold(struct store *s) {
    s->holds_--;
    maybe_finish_close(s);
}

void store_close(struct store *s, store_closed_fn on_closed, void *arg) {
    if (!s || s->closing_) return;
    s->closing_ = 1;
    s->on_closed_ = on_closed;
    s->closed_arg_ = arg;
    uv_idle_start(&s->idle_, on_idle);
}

/* ---- completions ---------------------------------------------------------- */

void store__finish(struct store__op *op, int status, const struct store_record *rec,
                   const char *prev_owner, const char *const *ids, size_t n, uint64_t count) {
    struct store *s = op->s_;
    if (status == STORE_UNAVAILABLE) s->stats_.errors++;
    s->pending_--;
    if (status != STORE_OK) {
        rec = NULL;
        ids = NULL;
        n = 0;
        count = 0;
        prev_owner = NULL;
    }
    switch (op->kind_) {
    case STORE_OP_CREATE: case STORE_OP_UPDATE: case STORE_OP_DELETE: case STORE_OP_REPUBLISH:
        if (op->cb_.done) op->cb_.done(op->arg_, status);
        break;
    case STORE_OP_GET:
        if (op->cb_.record) op->cb_.record(op->arg_, status, rec);
        break;
    case STORE_OP_CLAIM:
        if (op->cb_.claim) op->cb_.claim(op->arg_, status, rec, prev_owner);
        break;
    case STORE_OP_LIST:
        if (op->cb_.list) op->cb_.list(op->arg_, status, ids, n);
        break;
    case STORE_OP_COUNT:
        if (op->cb_.count) op->cb_.count(op->arg_, status, count);
        break;
    case STORE_OP__N:
        break;
    }
    if (s->closing_ && !s->pending_) uv_idle_start(&s->idle_, on_idle);
}

void store__op_free(struct store__op *op) {
    struct store__res *r = &op->res_;
    free(r->id);
    free(r->owner);
    free(r->prev_owner);
    free(r->blob);
    for (size_t i = 0; i < r->n_ids; i++) free(r->ids[i]);
    free(r->ids);
    free(op);
}

void store__defer(struct store__op *op, int status) {
    struct store *s = op->s_;
    op->status_ = status;
    op->next_ = NULL;
    if (s->dq_tail_) s->dq_tail_->next_ = op;
    else s->dq_head_ = op;
    s->dq_tail_ = op;
    uv_idle_start(&s->idle_, on_idle);
}

static void run_deferred(struct store__op *op) {
    struct store__res *r = &op->res_;
    struct store_record rec = {
        .id = r->id, .owner = r->owner, .attached = r->attached, .created_ms = r->created_ms,
        .last_activity_ms = r->last_ms, .blob = r->blob, .blob_len = r->blob_len,
    };
    store__finish(op, op->status_, r->has_rec ? &rec : NULL, r->prev_owner,
                  (const char *const *)r->ids, r->n_ids, r->count);
}

/* The idle callback runs the completions queued so far (ones queued by
 * their callbacks wait for the next round, so a callback that keeps making
 * ops cannot starve the loop), then, when closing, the teardown. */
static void on_idle(uv_idle_t *h) {
    struct store *s = h->data;
    struct store__op *q = s->dq_head_;
    s->dq_head_ = s->dq_tail_ = NULL;
    while (q) {
        struct store__op *next = q->next_;
        run_deferred(q);
        store__op_free(q);
        q = next;
    }
    if (s->dq_head_) return;
    uv_idle_stop(h);
    if (s->closing_ && !s->pending_ && !s->torn_down_) {
        s->torn_down_ = 1;
        s->be_->teardown(s);
        store__close_handle(s, (uv_handle_t *)&s->idle_);
    }
}

/* ---- ops ---------------------------------------------------------------- */

static struct store__op *op_new(struct store *s, enum store_op_kind kind, void *arg) {
    struct store__op *op = xcalloc(1, s->be_->op_size);
    op->s_ = s;
    op->kind_ = kind;
    op->arg_ = arg;
    s->pending_++;
    s->stats_.ops[kind]++;
    return op;
}

static int check_id(struct store *s, const char *id) {
    if (!s || s->closing_) return ASR_EINVAL;
    return store__valid_name(id, STORE_ID_MAX) ? 0 : ASR_EINVAL;
}

int store_create(struct store *s, const char *id, const void *blob, size_t len,
                 store_done_fn cb, void *arg) {
    if (check_id(s, id) != 0 || (len && !blob)) return ASR_EINVAL;
    if (len > STORE_BLOB_MAX) return ASR_E_TOO_LARGE;
    struct store__op *op = op_new(s, STORE_OP_CREATE, arg);
    op->cb_.done = cb;
    struct store__args a = {.id = id, .blob = blob ? blob : "", .blob_len = len};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_update(struct store *s, const char *id, int attached, const void *blob, size_t len,
                 store_done_fn cb, void *arg) {
    if (check_id(s, id) != 0 || (len && !blob)) return ASR_EINVAL;
    if (len > STORE_BLOB_MAX) return ASR_E_TOO_LARGE;
    struct store__op *op = op_new(s, STORE_OP_UPDATE, arg);
    op->cb_.done = cb;
    struct store__args a = {.id = id, .attached = attached ? 1 : 0, .blob = blob, .blob_len = len};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_republish(struct store *s, const char *id, int attached, const void *blob, size_t len,
                    store_done_fn cb, void *arg) {
    if (check_id(s, id) != 0 || (len && !blob)) return ASR_EINVAL;
    if (len > STORE_BLOB_MAX) return ASR_E_TOO_LARGE;
    struct store__op *op = op_new(s, STORE_OP_REPUBLISH, arg);
    op->cb_.done = cb;
    struct store__args a = {.id = id, .attached = attached ? 1 : 0, .blob = blob ? blob : "", .blob_len = len};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_claim(struct store *s, const char *id, store_claim_fn cb, void *arg) {
    if (check_id(s, id) != 0) return ASR_EINVAL;
    struct store__op *op = op_new(s, STORE_OP_CLAIM, arg);
    op->cb_.claim = cb;
    struct store__args a = {.id = id};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_get(struct store *s, const char *id, store_record_fn cb, void *arg) {
    if (check_id(s, id) != 0) return ASR_EINVAL;
    struct store__op *op = op_new(s, STORE_OP_GET, arg);
    op->cb_.record = cb;
    struct store__args a = {.id = id};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_delete(struct store *s, const char *id, store_done_fn cb, void *arg) {
    if (check_id(s, id) != 0) return ASR_EINVAL;
    struct store__op *op = op_new(s, STORE_OP_DELETE, arg);
    op->cb_.done = cb;
    struct store__args a = {.id = id};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_list_by_worker(struct store *s, const char *worker_id, store_list_fn cb, void *arg) {
    if (!s || s->closing_ || !store__valid_name(worker_id, STORE_WORKER_ID_MAX)) return ASR_EINVAL;
    struct store__op *op = op_new(s, STORE_OP_LIST, arg);
    op->cb_.list = cb;
    struct store__args a = {.worker = worker_id};
    s->be_->submit(s, op, &a);
    return 0;
}

int store_count_active(struct store *s, store_count_fn cb, void *arg) {
    if (!s || s->closing_) return ASR_EINVAL;
    struct store__op *op = op_new(s, STORE_OP_COUNT, arg);
    op->cb_.count = cb;
    struct store__args a = {0};
    s->be_->submit(s, op, &a);
    return 0;
}

/* ---- state ---------------------------------------------------------------- */

int store_available(const struct store *s) { return s->be_->available(s); }

const char *store_backend(const struct store *s) { return s->be_->name; }

const struct store_stats *store_stats(const struct store *s) { return &s->stats_; }

const char *store_op_name(enum store_op_kind kind) {
    static const char *const names[STORE_OP__N] = {"create", "update", "claim", "get",
                                                   "delete", "list", "count", "republish"};
    return (unsigned)kind < STORE_OP__N ? names[kind] : "unknown";
}

void store__set_available(struct store *s, int up) {
    s->stats_.connected = up ? 1 : 0;
    if (s->on_state_) s->on_state_(s->ctx_, up);
}
