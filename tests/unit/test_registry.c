#include "test.h"

#include "api/registry.h"

struct item {
    char id[33];
    struct registry_entry reg;
    int visits;
};

#define N_ITEMS 3000 /* past two doublings of the 1024 buckets */

static struct item items[N_ITEMS];

static void fill(struct registry *r) {
    registry_init(r);
    for (int i = 0; i < N_ITEMS; i++) {
        snprintf(items[i].id, sizeof items[i].id, "%032x", (unsigned)(i * 2654435761u));
        items[i].visits = 0;
        registry_add(r, &items[i].reg, items[i].id, &items[i]);
    }
}

TEST(registry_add_find_remove_across_growth) {
    struct registry r;
    ASSERT(registry_find(&(struct registry){0}, "nothing") == NULL); /* empty: no table yet */
    fill(&r);
    ASSERT_EQ_INT(registry_count(&r), N_ITEMS);
    for (int i = 0; i < N_ITEMS; i++) ASSERT(registry_find(&r, items[i].id) == &items[i]);
    ASSERT(registry_find(&r, "not-an-id") == NULL);
    for (int i = 0; i < N_ITEMS; i += 2) registry_remove(&r, &items[i].reg);
    ASSERT_EQ_INT(registry_count(&r), N_ITEMS / 2);
    for (int i = 0; i < N_ITEMS; i++) ASSERT(registry_find(&r, items[i].id) == (i % 2 ? &items[i] : NULL));
    registry_remove(&r, &items[0].reg); /* not registered any more: nothing happens */
    ASSERT_EQ_INT(registry_count(&r), N_ITEMS / 2);
    registry_cleanup(&r);
    ASSERT_EQ_INT(registry_count(&r), 0);
}

/* registry_each visits every entry once and lets the callback remove the
 * entry it was given (the drain destroys streams while walking). */
static void visit_and_remove_odd(void *ctx, void *owner) {
    struct registry *r = ctx;
    struct item *it = owner;
    it->visits++;
    if ((it - items) % 2) registry_remove(r, &it->reg);
}

TEST(registry_each_visits_all_and_allows_removing_the_current) {
    struct registry r;
    fill(&r);
    registry_each(&r, visit_and_remove_odd, &r);
    for (int i = 0; i < N_ITEMS; i++) ASSERT_EQ_INT(items[i].visits, 1);
    ASSERT_EQ_INT(registry_count(&r), N_ITEMS / 2);
    for (int i = 0; i < N_ITEMS; i++) ASSERT(registry_find(&r, items[i].id) == (i % 2 ? NULL : &items[i]));
    registry_cleanup(&r);
}
