/*
 * sync_group.h - many threads that need the same file synced share one sync.
 *
 * Deliveries into one Maildir each end with an fsync of its new/ folder.
 * Run one after the other, 20 threads delivering to the same Maildir ask
 * the disk for 20 flushes of the same directory, each of which already
 * covers the links of the others made before it started. A group commit
 * turns that into "one sync runs; whoever arrived while it ran waits for
 * the next one, which covers them all" (Postfix and OpenSMTPD sync each
 * delivery alone; this is the same idea as the spool's group commit).
 *
 * The promise of sync_group_run(): it returns only after a call of fn on
 * the object named by (dev, ino) that STARTED after sync_group_run was
 * entered has returned. So every change the caller made to the object
 * before the call is covered, exactly as if it had called fn itself.
 * If any sync that could have been the covering one failed, the caller gets
 * that error: after a failed fsync Linux may have dropped the dirty pages
 * and report success next time, so a later success proves nothing.
 *
 * Thread-safe; blocking (call it from a pool thread, never a loop). The
 * group has SYNC_GROUP_SLOTS objects in flight at once; past that, a call
 * runs fn itself (correct, just not shared).
 */
#ifndef SLUICE_SYNC_GROUP_H
#define SLUICE_SYNC_GROUP_H

#include <pthread.h>
#include <stdint.h>

#define SYNC_GROUP_SLOTS 64

typedef struct sync_group_slot {
    uint64_t dev, ino;
    unsigned users;    /* callers inside sync_group_run for this object; 0 = slot free */
    uint64_t started;  /* syncs started, numbered from 1; one runs while started > done */
    uint64_t done;     /* highest sync number that returned */
    uint64_t fail_gen; /* highest sync number that failed, 0 = none */
    int fail_rc;
    pthread_cond_t cv;
} sync_group_slot;

typedef struct sync_group {
    pthread_mutex_t mu;
    sync_group_slot slot[SYNC_GROUP_SLOTS];
    uint64_t calls; /* sync_group_run calls, for tests and logs */
    uint64_t runs;  /* calls of fn they led to */
} sync_group;

/* The sync itself: 0 or a negative errno. */
typedef int (*sync_group_fn)(void *arg);

/* 0 or a negative errno (pthread init failure). */
int sync_group_init(sync_group *g);
void sync_group_destroy(sync_group *g);

/*
 * Returns once the object (dev, ino) has been synced by a call of fn that
 * started after this call was entered: fn(arg) here, or another caller's
 * fn on the same object. 0, or the negative errno of a covering sync.
 */
int sync_group_run(sync_group *g, uint64_t dev, uint64_t ino, sync_group_fn fn, void *arg);

#endif
