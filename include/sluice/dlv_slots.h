/*
 * dlv_slots.h - the runner's concurrency limits: at most `total`
 * deliveries at once, and at most `per_dest` to one destination (a next
 * hop, or "local" for Maildir writes). Deliveries that must wait are kept
 * in arrival order; a freed slot goes to the oldest one that may run.
 * Pure bookkeeping on the loop thread; no I/O.
 */
#ifndef SLUICE_DLV_SLOTS_H
#define SLUICE_DLV_SLOTS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dlv_slot_req dlv_slot_req;
struct dlv_slot_req {
    const char *dest;               /* compared byte-wise; must outlive the request */
    void (*run)(dlv_slot_req *req); /* the slot is granted: start the delivery */
    dlv_slot_req *next;             /* private */
};

struct dlv_dest;

typedef struct dlv_slots {
    unsigned total_max, per_dest_max;
    unsigned total; /* slots in use */
    struct dlv_dest *dests;
    dlv_slot_req *head, *tail; /* waiting */
    size_t waiting;
    bool granting;
} dlv_slots;

void dlv_slots_init(dlv_slots *s, unsigned total_max, unsigned per_dest_max);
/* Frees the destination table (nothing may be in use or waiting). */
void dlv_slots_free(dlv_slots *s);

/*
 * Asks for a slot: run(req) is called at once when one is free, else
 * later from dlv_slots_release. -ENOMEM (nothing queued) or 0.
 */
int dlv_slots_submit(dlv_slots *s, dlv_slot_req *req);

/* Gives back the slot of a finished delivery to dest; grants waiters. */
void dlv_slots_release(dlv_slots *s, const char *dest);

/* Removes every waiting request (not yet run) and hands each to cb. */
void dlv_slots_drain(dlv_slots *s, void (*cb)(dlv_slot_req *req));

/* Slots in use for dest. */
unsigned dlv_slots_in_use(const dlv_slots *s, const char *dest);

#endif
