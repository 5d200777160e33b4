/*
 * dlv_sched.h - the delivery runner's in-memory schedule (pure code).
 *
 * One entry per known queue id: its due time and a few flags, nothing
 * else (envelopes stay on disk; memory grows with the number of queued
 * messages times ~48 bytes). Entries are either queued (in a min-heap by
 * due time, ties in id order = arrival order) or active (an attempt is
 * running; not in the heap). A request for an active id is remembered and
 * applied when the attempt ends, so a "new" or "flush" notice that races
 * an attempt is never lost and never starts a second attempt.
 *
 * Times are milliseconds on the wall clock (the envelope's next-attempt is
 * wall-clock seconds). Functions return 0 or a negative errno.
 */
#ifndef SLUICE_DLV_SCHED_H
#define SLUICE_DLV_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h" /* QUEUE_ID_LEN */

/* Flags carried by an entry until its next attempt starts. */
#define DLV_SCHED_FORCE 0x1u /* flush: deferred recipients are due now */
/* "late": the runner was handed this message's record and may have
 * delivered it; every local delivery looks for its key first. */
#define DLV_SCHED_CHECK 0x2u
/* Its record was handed over: the attempt starts from that (dlv_handoff.c). */
#define DLV_SCHED_JOURNAL 0x4u

struct dlv_sched_slot;

typedef struct dlv_sched {
    struct dlv_sched_slot *slots; /* open addressing, linear probing */
    size_t nslots;                /* a power of two (0 before the first add) */
    size_t used;                  /* live entries */
    size_t tombs;                 /* deleted slots not yet reused */
    uint32_t *heap;               /* slot indices of queued entries */
    size_t nheap, heap_cap;
    size_t active; /* entries with an attempt running */
} dlv_sched;

void dlv_sched_init(dlv_sched *s);
void dlv_sched_free(dlv_sched *s);

/*
 * Asks for an attempt of id at due (or earlier if already asked) with
 * flags added. Unknown id: queued. Queued: due lowered, flags or'ed.
 * Active: remembered for dlv_sched_done. -EINVAL for a bad id, -ENOMEM.
 */
int dlv_sched_add(dlv_sched *s, const char *id, int64_t due, unsigned flags);

/*
 * Takes the earliest queued entry if it is due at now: copies its id and
 * flags out, marks it active. Returns false when nothing is due.
 */
bool dlv_sched_pop_due(dlv_sched *s, int64_t now, char id[QUEUE_ID_LEN + 1], unsigned *flags);

/*
 * Ends id's attempt: next < 0 forgets it (removed, held, gone) unless a
 * request came in meanwhile; else it is queued at next (or the earlier
 * requested time). Returns -ENOENT if id was not active.
 */
int dlv_sched_done(dlv_sched *s, const char *id, int64_t next);

/* Due time of the earliest queued entry; false if none is queued. */
bool dlv_sched_next_due(const dlv_sched *s, int64_t *due);

/* Whether id is known (queued or active). */
bool dlv_sched_known(const dlv_sched *s, const char *id);

/* Makes every queued entry due at now with flags added (flush of all). */
void dlv_sched_all_due(dlv_sched *s, int64_t now, unsigned flags);

size_t dlv_sched_queued(const dlv_sched *s);
size_t dlv_sched_active(const dlv_sched *s);

/*
 * Retry backoff: the wait after the attempts-th failed attempt (1, 2, ...):
 * initial * 2^(attempts-1), at most max (and at least 1 s). Seconds.
 */
unsigned dlv_backoff(unsigned initial, unsigned max, unsigned attempts);

#endif
