/* The session registry (registry.h). */
#include "api/registry.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static size_t hash_id(const char *id) {
    size_t h = 1469598103934665603ull;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h;
}

void registry_init(struct registry *r) { memset(r, 0, sizeof *r); }

void registry_cleanup(struct registry *r) {
    free(r->table_);
    memset(r, 0, sizeof *r);
}

void registry_add(struct registry *r, struct registry_entry *e, const char *id, void *owner) {
    e->id = id;
    e->owner = owner;
    if (r->count_ + 1 > r->size_) {
        size_t ns = r->size_ ? r->size_ * 2 : 1024;
        struct registry_entry **nt = xcalloc(ns, sizeof *nt);
        for (size_t i = 0; i < r->size_; i++)
            for (struct registry_entry *x = r->table_[i], *n; x; x = n) {
                n = x->next_;
                size_t b = hash_id(x->id) & (ns - 1);
                x->next_ = nt[b];
                nt[b] = x;
            }
        free(r->table_);
        r->table_ = nt;
        r->size_ = ns;
    }
    size_t b = hash_id(id) & (r->size_ - 1);
    e->next_ = r->table_[b];
    r->table_[b] = e;
    r->count_++;
}

void *registry_find(const struct registry *r, const char *id) {
    if (!r->size_) return NULL;
    for (struct registry_entry *e = r->table_[hash_id(id) & (r->size_ - 1)]; e; e = e->next_)
        if (strcmp(e->id, id) == 0) return e->owner;
    return NULL;
}

void registry_remove(struct registry *r, struct registry_entry *e) {
    if (!r->size_) return;
    struct registry_entry **pp = &r->table_[hash_id(e->id) & (r->size_ - 1)];
    for (; *pp; pp = &(*pp)->next_)
        if (*pp == e) {
            *pp = e->next_;
            r->count_--;
            return;
        }
}

size_t registry_count(const struct registry *r) { return r->count_; }

void registry_each(struct registry *r, registry_each_fn fn, void *ctx) {
    for (size_t i = 0; i < r->size_; i++)
        for (struct registry_entry *e = r->table_[i], *n; e; e = n) {
            n = e->next_; /* fn may remove e */
            fn(ctx, e->owner);
        }
}
