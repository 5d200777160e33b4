/*
 * dlv_slots.c - global and per-destination concurrency (see dlv_slots.h).
 *
 * A destination exists while it has a slot in use or a waiter. Each one
 * queues its own waiters, so a release finds the next delivery without
 * walking every waiter of every busy destination (with thousands of
 * messages in flight for a few Maildirs, that walk was a visible share of
 * the runner's CPU). Destinations that have a waiter and a free slot of
 * their own sit on the ready list, ordered by the age of their oldest
 * waiter; a freed global slot goes to its head, which keeps the original
 * promise: the oldest delivery that may run, runs.
 */
#include "sluice/dlv_slots.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct dlv_dest {
    struct dlv_dest *hnext;         /* hash chain */
    struct dlv_dest *rprev, *rnext; /* ready list */
    unsigned active;
    dlv_slot_req *head, *tail; /* waiting, oldest first */
    char name[];
};

void dlv_slots_init(dlv_slots *s, unsigned total_max, unsigned per_dest_max)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->total_max = total_max ? total_max : 1;
    s->per_dest_max = per_dest_max ? per_dest_max : 1;
}

void dlv_slots_free(dlv_slots *s)
{
    for (size_t b = 0; b < DLV_SLOTS_BUCKETS; b++)
        while (s->buckets[b]) {
            struct dlv_dest *d = s->buckets[b];
            s->buckets[b] = d->hnext;
            free(d);
        }
    s->ndests = 0;
    pthread_mutex_destroy(&s->mu);
}

static size_t bucket_of(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % DLV_SLOTS_BUCKETS;
}

static struct dlv_dest *find_dest(const dlv_slots *s, const char *name)
{
    for (struct dlv_dest *d = s->buckets[bucket_of(name)]; d; d = d->hnext)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static struct dlv_dest *get_dest(dlv_slots *s, const char *name)
{
    struct dlv_dest *d = find_dest(s, name);
    if (d)
        return d;
    size_t n = strlen(name);
    if (!(d = calloc(1, sizeof(*d) + n + 1)))
        return NULL;
    memcpy(d->name, name, n + 1);
    size_t b = bucket_of(name);
    d->hnext = s->buckets[b];
    s->buckets[b] = d;
    s->ndests++;
    return d;
}

/* On the ready list: the links say so (the head has no rprev). */
static bool in_ready(const dlv_slots *s, const struct dlv_dest *d)
{
    return d->rprev != NULL || s->ready == d;
}

/* Forgets d once nothing uses it. */
static void put_dest(dlv_slots *s, struct dlv_dest *d)
{
    if (d->active > 0 || d->head || in_ready(s, d))
        return;
    struct dlv_dest **pp = &s->buckets[bucket_of(d->name)];
    while (*pp != d)
        pp = &(*pp)->hnext;
    *pp = d->hnext;
    s->ndests--;
    free(d);
}

static void ready_remove(dlv_slots *s, struct dlv_dest *d)
{
    if (!in_ready(s, d))
        return;
    if (d->rprev)
        d->rprev->rnext = d->rnext;
    else
        s->ready = d->rnext;
    if (d->rnext)
        d->rnext->rprev = d->rprev;
    d->rprev = d->rnext = NULL;
}

/* Puts d on the ready list (or takes it off) as its state says; the list
 * stays ordered by the seq of each destination's oldest waiter. */
static void ready_update(dlv_slots *s, struct dlv_dest *d)
{
    ready_remove(s, d);
    if (!d->head || d->active >= s->per_dest_max)
        return;
    struct dlv_dest *prev = NULL, *q = s->ready;
    while (q && q->head->seq < d->head->seq) {
        prev = q;
        q = q->rnext;
    }
    d->rprev = prev;
    d->rnext = q;
    if (prev)
        prev->rnext = d;
    else
        s->ready = d;
    if (q)
        q->rprev = d;
}

/* Under the lock: the oldest request that may run now, its slot taken. */
static dlv_slot_req *next_grant(dlv_slots *s)
{
    struct dlv_dest *d = s->ready;
    if (!d || s->total >= s->total_max)
        return NULL;
    dlv_slot_req *q = d->head;
    d->head = q->next;
    if (!d->head)
        d->tail = NULL;
    q->next = NULL;
    s->waiting--;
    d->active++;
    s->total++;
    ready_update(s, d);
    return q;
}

/* Runs waiting requests while slots allow. Not re-entered: a run callback
 * that finishes at once and releases its slot is picked up by the loop. */
static void grant(dlv_slots *s)
{
    if (s->granting) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->granting = true;
    dlv_slot_req *q;
    while ((q = next_grant(s)) != NULL) {
        pthread_mutex_unlock(&s->mu);
        q->run(q);
        pthread_mutex_lock(&s->mu);
    }
    s->granting = false;
    pthread_mutex_unlock(&s->mu);
}

int dlv_slots_submit(dlv_slots *s, dlv_slot_req *req)
{
    pthread_mutex_lock(&s->mu);
    struct dlv_dest *d = get_dest(s, req->dest);
    if (!d) {
        pthread_mutex_unlock(&s->mu);
        return -ENOMEM;
    }
    req->next = NULL;
    req->seq = ++s->seq;
    if (d->tail)
        d->tail->next = req;
    else
        d->head = req;
    d->tail = req;
    s->waiting++;
    if (!in_ready(s, d))
        ready_update(s, d);
    grant(s); /* unlocks */
    return 0;
}

bool dlv_slots_try_take(dlv_slots *s, const char *dest)
{
    bool took = false;
    pthread_mutex_lock(&s->mu);
    if (s->total < s->total_max) {
        struct dlv_dest *d = find_dest(s, dest);
        if (!d || (!d->head && d->active < s->per_dest_max)) {
            if (d || (d = get_dest(s, dest)) != NULL) {
                d->active++;
                s->total++;
                took = true;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return took;
}

void dlv_slots_release(dlv_slots *s, const char *dest)
{
    pthread_mutex_lock(&s->mu);
    struct dlv_dest *d = find_dest(s, dest);
    if (d && d->active > 0) {
        d->active--;
        if (s->total > 0)
            s->total--;
        ready_update(s, d);
        put_dest(s, d);
    }
    grant(s); /* unlocks */
}

void dlv_slots_drain(dlv_slots *s, void (*cb)(dlv_slot_req *req))
{
    dlv_slot_req *all = NULL, **tail = &all;
    pthread_mutex_lock(&s->mu);
    for (size_t b = 0; b < DLV_SLOTS_BUCKETS; b++)
        for (struct dlv_dest *d = s->buckets[b], *next; d; d = next) {
            next = d->hnext;
            ready_remove(s, d);
            *tail = d->head;
            if (d->tail)
                tail = &d->tail->next;
            d->head = d->tail = NULL;
            put_dest(s, d);
        }
    s->waiting = 0;
    pthread_mutex_unlock(&s->mu);
    while (all) {
        dlv_slot_req *next = all->next;
        all->next = NULL;
        cb(all);
        all = next;
    }
}

unsigned dlv_slots_in_use(dlv_slots *s, const char *dest)
{
    pthread_mutex_lock(&s->mu);
    const struct dlv_dest *d = find_dest(s, dest);
    unsigned n = d ? d->active : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}
