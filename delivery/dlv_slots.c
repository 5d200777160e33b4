/*
 * dlv_slots.c - global and per-destination concurrency (see dlv_slots.h).
 *
 * The destination table holds only destinations with a slot in use, so it
 * stays as small as the number of deliveries in flight; a linear list is
 * enough for that. The waiting list is scanned from the oldest: a busy
 * destination does not block others behind it (Postfix's qmgr keeps one
 * queue per destination for the same reason).
 */
#include "sluice/dlv_slots.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct dlv_dest {
    struct dlv_dest *next;
    unsigned active;
    char name[];
};

void dlv_slots_init(dlv_slots *s, unsigned total_max, unsigned per_dest_max)
{
    memset(s, 0, sizeof(*s));
    s->total_max = total_max ? total_max : 1;
    s->per_dest_max = per_dest_max ? per_dest_max : 1;
}

void dlv_slots_free(dlv_slots *s)
{
    while (s->dests) {
        struct dlv_dest *d = s->dests;
        s->dests = d->next;
        free(d);
    }
}

static struct dlv_dest *find_dest(const dlv_slots *s, const char *name)
{
    for (struct dlv_dest *d = s->dests; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

unsigned dlv_slots_in_use(const dlv_slots *s, const char *dest)
{
    const struct dlv_dest *d = find_dest(s, dest);
    return d ? d->active : 0;
}

static bool may_run(const dlv_slots *s, const char *dest)
{
    return s->total < s->total_max && dlv_slots_in_use(s, dest) < s->per_dest_max;
}

/* Takes a slot for dest (may_run was true). */
static int take(dlv_slots *s, const char *dest)
{
    struct dlv_dest *d = find_dest(s, dest);
    if (!d) {
        size_t n = strlen(dest);
        d = malloc(sizeof(*d) + n + 1);
        if (!d)
            return -ENOMEM;
        memcpy(d->name, dest, n + 1);
        d->active = 0;
        d->next = s->dests;
        s->dests = d;
    }
    d->active++;
    s->total++;
    return 0;
}

/* Runs waiting requests while slots allow. Not re-entered: a run callback
 * that finishes at once and releases its slot is picked up by the loop. */
static void grant(dlv_slots *s)
{
    if (s->granting)
        return;
    s->granting = true;
    bool progress = true;
    while (progress && s->head && s->total < s->total_max) {
        progress = false;
        dlv_slot_req *prev = NULL;
        for (dlv_slot_req *q = s->head; q; prev = q, q = q->next) {
            if (!may_run(s, q->dest) || take(s, q->dest) != 0)
                continue;
            if (prev)
                prev->next = q->next;
            else
                s->head = q->next;
            if (s->tail == q)
                s->tail = prev;
            s->waiting--;
            q->next = NULL;
            q->run(q);
            progress = true;
            break; /* the list may have changed under run() */
        }
    }
    s->granting = false;
}

int dlv_slots_submit(dlv_slots *s, dlv_slot_req *req)
{
    req->next = NULL;
    if (!s->head && !s->granting && may_run(s, req->dest)) {
        int rc = take(s, req->dest);
        if (rc)
            return rc;
        req->run(req);
        return 0;
    }
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
    s->waiting++;
    grant(s);
    return 0;
}

void dlv_slots_release(dlv_slots *s, const char *dest)
{
    struct dlv_dest **pp = &s->dests;
    while (*pp && strcmp((*pp)->name, dest) != 0)
        pp = &(*pp)->next;
    if (*pp) {
        struct dlv_dest *d = *pp;
        if (d->active > 0)
            d->active--;
        if (d->active == 0) {
            *pp = d->next;
            free(d);
        }
        if (s->total > 0)
            s->total--;
    }
    grant(s);
}

void dlv_slots_drain(dlv_slots *s, void (*cb)(dlv_slot_req *req))
{
    dlv_slot_req *q = s->head;
    s->head = s->tail = NULL;
    s->waiting = 0;
    while (q) {
        dlv_slot_req *next = q->next;
        q->next = NULL;
        cb(q);
        q = next;
    }
}
