/*
 * dlv_slots.h - the runner's concurrency limits: at most `total`
 * deliveries at once, and at most `per_dest` to one destination (a next
 * hop, or "local:<maildir>" for Maildir writes). Deliveries that must wait
 * queue per destination; a freed slot goes to the oldest waiting delivery
 * whose destination may run, so a busy destination never holds up the
 * others behind it (Postfix's qmgr keeps one queue per destination for the
 * same reason).
 *
 * Bookkeeping only, no I/O. Everything but dlv_slots_try_take runs on the
 * loop thread; dlv_slots_try_take may be called from the thread pool, so
 * the state is under a mutex, and run() and drain callbacks are called
 * with it released.
 */
#ifndef SLUICE_DLV_SLOTS_H
#define SLUICE_DLV_SLOTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DLV_SLOTS_BUCKETS 256

struct dlv_dest;

typedef struct dlv_slot_req dlv_slot_req;
struct dlv_slot_req {
    const char *dest;               /* compared byte-wise; must outlive the request */
    void (*run)(dlv_slot_req *req); /* the slot is granted: start the delivery */
    /* private */
    dlv_slot_req *next;
    uint64_t seq;
};

typedef struct dlv_slots {
    pthread_mutex_t mu;
    unsigned total_max, per_dest_max;
    unsigned total;         /* slots in use */
    size_t ndests;          /* destinations with a slot in use or a waiter */
    size_t waiting;         /* requests not yet run */
    uint64_t seq;           /* arrival order of requests */
    bool granting;          /* grant() is running on the loop */
    struct dlv_dest *ready; /* may run a waiter, oldest head first */
    struct dlv_dest *buckets[DLV_SLOTS_BUCKETS];
} dlv_slots;

void dlv_slots_init(dlv_slots *s, unsigned total_max, unsigned per_dest_max);
/* Frees the destination table (nothing may be in use or waiting). */
void dlv_slots_free(dlv_slots *s);

/*
 * Asks for a slot: run(req) is called at once when one is free, else
 * later from dlv_slots_release. -ENOMEM (nothing queued) or 0.
 */
int dlv_slots_submit(dlv_slots *s, dlv_slot_req *req);

/*
 * Takes a slot for dest now if one is free and nothing waits for dest
 * (so it never overtakes a queued delivery), without queueing anything.
 * Thread-safe. The slot is given back with dlv_slots_release, on the loop.
 */
bool dlv_slots_try_take(dlv_slots *s, const char *dest);

/* Gives back the slot of a finished delivery to dest; grants waiters. */
void dlv_slots_release(dlv_slots *s, const char *dest);

/* Removes every waiting request (not yet run) and hands each to cb. */
void dlv_slots_drain(dlv_slots *s, void (*cb)(dlv_slot_req *req));

/* Slots in use for dest. */
unsigned dlv_slots_in_use(dlv_slots *s, const char *dest);

#endif
