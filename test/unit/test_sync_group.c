/*
 * test_sync_group.c - the group commit of fsyncs: every caller is covered
 * by a sync that started after it arrived, callers that arrive together
 * share one sync, errors reach exactly the callers they concern, and a full
 * table falls back to syncing alone.
 *
 * The concurrent cases are made deterministic by a sync function that waits
 * until the expected number of callers are inside sync_group_run, read
 * from the group's own counter, so no test depends on timing.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/sync_group.h"

#define THREADS 16

typedef struct shared {
    sync_group g;
    atomic_ulong changes;     /* "writes" made by callers, numbered from 1 */
    atomic_ulong synced_upto; /* highest change a finished sync covers */
    atomic_int fail_next;     /* the next sync returns this (then 0) */
    uint64_t wait_calls;      /* a sync waits until this many calls were made */
    int wait_inside;          /* and until this many syncs ran at once (a latch) */
    atomic_int inside;        /* syncs running right now */
    atomic_int max_inside;    /* the most that ever ran at once */
} shared;

static uint64_t calls_of(shared *sh)
{
    pthread_mutex_lock(&sh->g.mu);
    uint64_t n = sh->g.calls;
    pthread_mutex_unlock(&sh->g.mu);
    return n;
}

/* A sync: covers every change made before it started. */
static int fake_sync(void *arg)
{
    shared *sh = arg;
    unsigned long covers = atomic_load(&sh->changes);

    int now = atomic_fetch_add(&sh->inside, 1) + 1, max = atomic_load(&sh->max_inside);
    while (max < now && !atomic_compare_exchange_weak(&sh->max_inside, &max, now))
        ;
    while (calls_of(sh) < sh->wait_calls || atomic_load(&sh->max_inside) < sh->wait_inside)
        sched_yield();
    int rc = atomic_exchange(&sh->fail_next, 0);
    unsigned long cur = atomic_load(&sh->synced_upto);
    while (cur < covers && !atomic_compare_exchange_weak(&sh->synced_upto, &cur, covers))
        ;
    atomic_fetch_sub(&sh->inside, 1);
    return rc;
}

typedef struct caller {
    shared *sh;
    uint64_t ino;
    int rc;
    unsigned long covered; /* synced_upto seen on return */
    unsigned long change;  /* the change this caller made */
} caller;

static void *caller_main(void *arg)
{
    caller *c = arg;
    c->change = atomic_fetch_add(&c->sh->changes, 1) + 1;
    c->rc = sync_group_run(&c->sh->g, 1, c->ino, fake_sync, c->sh);
    c->covered = atomic_load(&c->sh->synced_upto);
    return NULL;
}

static void setup_shared(shared *sh)
{
    memset(sh, 0, sizeof(*sh));
    assert_int_equal(sync_group_init(&sh->g), 0);
}

static void test_alone(void **state)
{
    shared sh;
    (void)state;
    setup_shared(&sh);
    caller c = {.sh = &sh, .ino = 7};
    caller_main(&c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(sh.g.runs, 1);
    assert_true(c.covered >= c.change);

    atomic_store(&sh.fail_next, -EIO);
    caller_main(&c);
    assert_int_equal(c.rc, -EIO);
    /* A failure is not remembered for a caller that came after it. */
    caller_main(&c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(sh.g.runs, 3);
    sync_group_destroy(&sh.g);
}

/*
 * THREADS callers of one object: the first sync waits until all have
 * arrived, so the others must share exactly one more sync, which started
 * after all their changes.
 */
static void test_shared_sync_covers_everyone(void **state)
{
    shared sh;
    pthread_t t[THREADS];
    caller c[THREADS];
    (void)state;

    setup_shared(&sh);
    sh.wait_calls = THREADS;
    for (int i = 0; i < THREADS; i++) {
        c[i] = (caller){.sh = &sh, .ino = 42};
        assert_int_equal(pthread_create(&t[i], NULL, caller_main, &c[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(sh.g.calls, THREADS);
    assert_int_equal(sh.g.runs, 2);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(c[i].rc, 0);
        assert_true(c[i].covered >= c[i].change);
    }
    sync_group_destroy(&sh.g);
}

/*
 * The first sync fails while the others wait: only the caller it covered
 * (the one that ran it) gets the error; the rest are covered by the next,
 * successful sync. Then a failing shared sync reaches all who shared it.
 */
static void test_error_reaches_whom_it_covers(void **state)
{
    shared sh;
    pthread_t t[THREADS];
    caller c[THREADS];
    int failed = 0;
    (void)state;

    setup_shared(&sh);
    sh.wait_calls = THREADS;
    atomic_store(&sh.fail_next, -EIO);
    for (int i = 0; i < THREADS; i++) {
        c[i] = (caller){.sh = &sh, .ino = 9};
        assert_int_equal(pthread_create(&t[i], NULL, caller_main, &c[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        if (c[i].rc == -EIO)
            failed++;
        else
            assert_int_equal(c[i].rc, 0);
    }
    assert_int_equal(sh.g.runs, 2);
    assert_int_equal(failed, 1);
    sync_group_destroy(&sh.g);
}

static void *stuck_caller_main(void *arg)
{
    caller *c = arg;
    c->rc = sync_group_run(&c->sh->g, 2, c->ino, fake_sync, c->sh);
    return NULL;
}

/*
 * More objects in flight than slots: all SYNC_GROUP_SLOTS + 1 syncs run at
 * the same time (the last one outside the table), and all succeed.
 */
static void test_full_table_syncs_alone(void **state)
{
    enum { N = SYNC_GROUP_SLOTS + 1 };
    static shared sh;
    pthread_t t[N];
    caller c[N];
    (void)state;

    setup_shared(&sh);
    sh.wait_calls = N;
    sh.wait_inside = N; /* hangs (and the test times out) unless all run at once */
    for (int i = 0; i < N; i++) {
        c[i] = (caller){.sh = &sh, .ino = 100 + (uint64_t)i};
        assert_int_equal(pthread_create(&t[i], NULL, stuck_caller_main, &c[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(sh.g.runs, N);
    assert_int_equal(atomic_load(&sh.max_inside), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(c[i].rc, 0);
    /* Every slot is free again: a new object gets one. */
    sh.wait_inside = 0;
    caller_main(&c[0]);
    assert_int_equal(c[0].rc, 0);
    for (int i = 0; i < SYNC_GROUP_SLOTS; i++)
        assert_int_equal(sh.g.slot[i].users, 0);
    sync_group_destroy(&sh.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone),
        cmocka_unit_test(test_shared_sync_covers_everyone),
        cmocka_unit_test(test_error_reaches_whom_it_covers),
        cmocka_unit_test(test_full_table_syncs_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
