/*
 * dlv_sched.c - the runner's schedule: a hash table of ids (linear probing
 * with tombstones, so slot indices stay put between rebuilds) and a binary
 * min-heap of the queued slots' indices. See dlv_sched.h.
 *
 * Why not a timer wheel or Postfix's active/deferred queues: the runner
 * needs "earliest due" and "lower this id's due" (a notice or a flush),
 * and a heap with a position index gives both in O(log n) with 48 bytes
 * per message, while knowing which ids are active prevents a second
 * attempt of a message that is being delivered.
 */
#include "sluice/dlv_sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/queue_id.h"

enum { SLOT_EMPTY = 0, SLOT_TOMB, SLOT_QUEUED, SLOT_ACTIVE };

struct dlv_sched_slot {
    char id[QUEUE_ID_LEN + 1];
    uint8_t state;
    uint8_t flags; /* queued: flags for the next attempt */
    uint8_t again; /* active: a request arrived during the attempt */
    uint8_t again_flags;
    uint32_t hpos;     /* queued: index in the heap */
    int64_t due;       /* queued: when */
    int64_t again_due; /* active: the earliest requested time */
};

#define NO_SLOT ((size_t)-1)

void dlv_sched_init(dlv_sched *s)
{
    memset(s, 0, sizeof(*s));
}

void dlv_sched_free(dlv_sched *s)
{
    free(s->slots);
    free(s->heap);
    memset(s, 0, sizeof(*s));
}

static uint64_t id_hash(const char *id)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < QUEUE_ID_LEN; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static size_t find(const dlv_sched *s, const char *id)
{
    if (s->nslots == 0)
        return NO_SLOT;
    size_t mask = s->nslots - 1;
    for (size_t i = id_hash(id) & mask, n = 0; n < s->nslots; i = (i + 1) & mask, n++) {
        const struct dlv_sched_slot *sl = &s->slots[i];
        if (sl->state == SLOT_EMPTY)
            return NO_SLOT;
        if (sl->state != SLOT_TOMB && memcmp(sl->id, id, QUEUE_ID_LEN) == 0)
            return i;
    }
    return NO_SLOT;
}

/* ---- the heap ---- */

static bool before(const dlv_sched *s, uint32_t a, uint32_t b)
{
    const struct dlv_sched_slot *x = &s->slots[a], *y = &s->slots[b];
    if (x->due != y->due)
        return x->due < y->due;
    return memcmp(x->id, y->id, QUEUE_ID_LEN) < 0;
}

static void heap_set(dlv_sched *s, size_t pos, uint32_t slot)
{
    s->heap[pos] = slot;
    s->slots[slot].hpos = (uint32_t)pos;
}

static void sift_up(dlv_sched *s, size_t pos)
{
    uint32_t slot = s->heap[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (!before(s, slot, s->heap[parent]))
            break;
        heap_set(s, pos, s->heap[parent]);
        pos = parent;
    }
    heap_set(s, pos, slot);
}

static void sift_down(dlv_sched *s, size_t pos)
{
    uint32_t slot = s->heap[pos];
    for (;;) {
        size_t l = 2 * pos + 1, best = pos;
        uint32_t best_slot = slot;
        if (l < s->nheap && before(s, s->heap[l], best_slot)) {
            best = l;
            best_slot = s->heap[l];
        }
        if (l + 1 < s->nheap && before(s, s->heap[l + 1], best_slot)) {
            best = l + 1;
            best_slot = s->heap[l + 1];
        }
        if (best == pos)
            break;
        heap_set(s, pos, best_slot);
        pos = best;
    }
    heap_set(s, pos, slot);
}

static int heap_push(dlv_sched *s, uint32_t slot)
{
    if (s->nheap == s->heap_cap) {
        size_t ncap = s->heap_cap ? s->heap_cap * 2 : 64;
        uint32_t *h = realloc(s->heap, ncap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        s->heap = h;
        s->heap_cap = ncap;
    }
    s->heap[s->nheap++] = slot;
    sift_up(s, s->nheap - 1);
    return 0;
}

static void heap_remove_at(dlv_sched *s, size_t pos)
{
    s->nheap--;
    if (pos == s->nheap)
        return;
    heap_set(s, pos, s->heap[s->nheap]);
    if (pos > 0 && before(s, s->heap[pos], s->heap[(pos - 1) / 2]))
        sift_up(s, pos);
    else
        sift_down(s, pos);
}

/* ---- table growth: rebuild both structures ---- */

static int rebuild(dlv_sched *s, size_t nslots)
{
    struct dlv_sched_slot *old = s->slots;
    size_t oldn = s->nslots;
    struct dlv_sched_slot *ns = calloc(nslots, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    if (nslots > s->heap_cap) {
        /* Never more queued entries than slots: no heap_push can fail
         * in the middle of the rebuild. */
        uint32_t *h = realloc(s->heap, nslots * sizeof(*h));
        if (!h) {
            free(ns);
            return -ENOMEM;
        }
        s->heap = h;
        s->heap_cap = nslots;
    }
    s->slots = ns;
    s->nslots = nslots;
    s->tombs = 0;
    s->nheap = 0;
    for (size_t i = 0; i < oldn; i++) {
        if (old[i].state != SLOT_QUEUED && old[i].state != SLOT_ACTIVE)
            continue;
        size_t mask = nslots - 1, j = id_hash(old[i].id) & mask;
        while (ns[j].state != SLOT_EMPTY)
            j = (j + 1) & mask;
        ns[j] = old[i];
        if (ns[j].state == SLOT_QUEUED)
            s->heap[s->nheap++] = (uint32_t)j;
    }
    free(old);
    /* Heapify bottom-up; also refreshes every hpos. */
    for (size_t i = 0; i < s->nheap; i++)
        s->slots[s->heap[i]].hpos = (uint32_t)i;
    for (size_t i = s->nheap / 2; i-- > 0;)
        sift_down(s, i);
    return 0;
}

/* A free slot for id (not present); grows first when the table is 3/4 full. */
static int insert_slot(dlv_sched *s, const char *id, size_t *out)
{
    if (s->nslots == 0 || (s->used + s->tombs + 1) * 4 > s->nslots * 3) {
        size_t want = s->nslots ? s->nslots : 64;
        while ((s->used + 1) * 2 > want)
            want *= 2;
        if (want > UINT32_MAX)
            return -ENOMEM;
        int rc = rebuild(s, want);
        if (rc)
            return rc;
    }
    size_t mask = s->nslots - 1, i = id_hash(id) & mask;
    while (s->slots[i].state == SLOT_QUEUED || s->slots[i].state == SLOT_ACTIVE)
        i = (i + 1) & mask;
    if (s->slots[i].state == SLOT_TOMB)
        s->tombs--;
    memset(&s->slots[i], 0, sizeof(s->slots[i]));
    memcpy(s->slots[i].id, id, QUEUE_ID_LEN);
    s->used++;
    *out = i;
    return 0;
}

static void delete_slot(dlv_sched *s, size_t i)
{
    s->slots[i].state = SLOT_TOMB;
    s->used--;
    s->tombs++;
}

/* ---- the API ---- */

int dlv_sched_add(dlv_sched *s, const char *id, int64_t due, unsigned flags)
{
    if (!id || strlen(id) != QUEUE_ID_LEN || !queue_id_valid(id, QUEUE_ID_LEN))
        return -EINVAL;
    size_t i = find(s, id);
    if (i == NO_SLOT) {
        int rc = insert_slot(s, id, &i);
        if (rc)
            return rc;
        struct dlv_sched_slot *sl = &s->slots[i];
        sl->state = SLOT_QUEUED;
        sl->due = due;
        sl->flags = (uint8_t)flags;
        /* Cannot fail: the heap has room for every slot (rebuild). */
        if (heap_push(s, (uint32_t)i) != 0) {
            delete_slot(s, i);
            return -ENOMEM;
        }
        return 0;
    }
    struct dlv_sched_slot *sl = &s->slots[i];
    if (sl->state == SLOT_ACTIVE) {
        if (!sl->again || due < sl->again_due)
            sl->again_due = due;
        sl->again = 1;
        sl->again_flags |= (uint8_t)flags;
        return 0;
    }
    sl->flags |= (uint8_t)flags;
    if (due < sl->due) {
        sl->due = due;
        sift_up(s, sl->hpos);
    }
    return 0;
}

bool dlv_sched_pop_due(dlv_sched *s, int64_t now, char id[QUEUE_ID_LEN + 1], unsigned *flags)
{
    if (s->nheap == 0)
        return false;
    uint32_t top = s->heap[0];
    struct dlv_sched_slot *sl = &s->slots[top];
    if (sl->due > now)
        return false;
    heap_remove_at(s, 0);
    memcpy(id, sl->id, QUEUE_ID_LEN);
    id[QUEUE_ID_LEN] = '\0';
    *flags = sl->flags;
    sl->state = SLOT_ACTIVE;
    sl->flags = 0;
    sl->again = 0;
    sl->again_flags = 0;
    s->active++;
    return true;
}

int dlv_sched_done(dlv_sched *s, const char *id, int64_t next)
{
    size_t i = find(s, id);
    if (i == NO_SLOT || s->slots[i].state != SLOT_ACTIVE)
        return -ENOENT;
    struct dlv_sched_slot *sl = &s->slots[i];
    s->active--;
    if (sl->again) {
        if (next < 0 || sl->again_due < next)
            next = sl->again_due;
        sl->flags = sl->again_flags;
    } else if (next < 0) {
        delete_slot(s, i);
        return 0;
    }
    sl->state = SLOT_QUEUED;
    sl->due = next;
    sl->again = 0;
    sl->again_flags = 0;
    if (heap_push(s, (uint32_t)i) != 0) {
        /* Unreachable (the heap holds a place for every slot); forgetting
         * is safe: the periodic scan finds the message again. */
        delete_slot(s, i);
        return -ENOMEM;
    }
    return 0;
}

bool dlv_sched_next_due(const dlv_sched *s, int64_t *due)
{
    if (s->nheap == 0)
        return false;
    *due = s->slots[s->heap[0]].due;
    return true;
}

bool dlv_sched_known(const dlv_sched *s, const char *id)
{
    return id && strlen(id) == QUEUE_ID_LEN && find(s, id) != NO_SLOT;
}

void dlv_sched_all_due(dlv_sched *s, int64_t now, unsigned flags)
{
    for (size_t i = 0; i < s->nslots; i++) {
        struct dlv_sched_slot *sl = &s->slots[i];
        if (sl->state == SLOT_QUEUED) {
            sl->flags |= (uint8_t)flags;
            if (sl->due > now)
                sl->due = now;
        } else if (sl->state == SLOT_ACTIVE) {
            if (!sl->again || now < sl->again_due)
                sl->again_due = now;
            sl->again = 1;
            sl->again_flags |= (uint8_t)flags;
        }
    }
    /* Lowered keys everywhere: one heapify instead of n sift-ups. */
    for (size_t i = s->nheap / 2; i-- > 0;)
        sift_down(s, i);
}

size_t dlv_sched_queued(const dlv_sched *s)
{
    return s->nheap;
}

size_t dlv_sched_active(const dlv_sched *s)
{
    return s->active;
}

unsigned dlv_backoff(unsigned initial, unsigned max, unsigned attempts)
{
    uint64_t wait = initial ? initial : 1;
    if (max < 1)
        max = 1;
    for (unsigned i = 1; i < attempts && wait < max; i++)
        wait *= 2;
    return wait > max ? max : (unsigned)wait;
}
