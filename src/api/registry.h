/* The session registry: session id -> the object that holds the session
 * (in practice a struct stream, api/stream.h), for one worker. A chained
 * hash table (FNV-1a of the id, power-of-two buckets from 1024, doubled at
 * load factor 1, never shrunk). Intrusive: the registered object embeds a
 * struct registry_entry, so adding never fails and removing never frees.
 * Loop thread only. */
#ifndef ASRD_API_REGISTRY_H
#define ASRD_API_REGISTRY_H

#include <stddef.h>

/* Embedded in each registered object; filled by registry_add(). */
struct registry_entry {
    const char *id;                 /* borrowed: the owner's key; must not change while registered */
    void       *owner;              /* borrowed: the object that embeds this entry */
    struct registry_entry *next_;   /* bucket chain */
};

struct registry {
    struct registry_entry **table_; /* owned: bucket heads (NULL until the first add) */
    size_t size_;                   /* buckets, a power of two (0 before the first add) */
    size_t count_;                  /* registered entries */
};

/* Calls made by registry_each(), with the entry's owner. */
typedef void (*registry_each_fn)(void *ctx, void *owner);

/* An empty registry (allocates nothing yet). */
void registry_init(struct registry *r);
/* Frees the table. Entries still registered are the owners' business:
 * nothing is called on them. */
void registry_cleanup(struct registry *r);

/* Registers owner under id through its embedded entry e. id is borrowed
 * and must stay valid and unchanged until registry_remove(e); ids are
 * unique (the caller checks with registry_find() when it matters). Grows
 * the table with xcalloc (aborts on failure: the table is sized by the
 * session cap, not by client input). */
void registry_add(struct registry *r, struct registry_entry *e, const char *id, void *owner);
/* The owner registered under id, or NULL. */
void *registry_find(const struct registry *r, const char *id);
/* Unregisters e (a no-op when e is not registered). */
void registry_remove(struct registry *r, struct registry_entry *e);
/* Entries registered. */
size_t registry_count(const struct registry *r);
/* Calls fn(ctx, owner) for every entry, in no particular order. fn may
 * remove the entry it was called with, nothing else, and must not add. */
void registry_each(struct registry *r, registry_each_fn fn, void *ctx);

#endif
