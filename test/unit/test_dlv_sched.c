/*
 * test_dlv_sched.c - the runner's schedule (heap + id table), the retry
 * backoff, and the concurrency slots.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/dlv_sched.h"
#include "sluice/dlv_slots.h"

static void make_id(unsigned n, char out[QUEUE_ID_LEN + 1])
{
    snprintf(out, QUEUE_ID_LEN + 1, "%013X0", n);
}

static void test_order(void **state)
{
    (void)state;
    dlv_sched s;
    dlv_sched_init(&s);
    char id[QUEUE_ID_LEN + 1], got[QUEUE_ID_LEN + 1];
    unsigned flags;
    /* Due times in scrambled order; ties ordered by id. */
    const int64_t due[] = {50, 10, 30, 10, 40, 20};
    for (unsigned i = 0; i < 6; i++) {
        make_id(100 + i, id);
        assert_int_equal(dlv_sched_add(&s, id, due[i], 0), 0);
    }
    assert_int_equal(dlv_sched_queued(&s), 6);
    int64_t next;
    assert_true(dlv_sched_next_due(&s, &next));
    assert_int_equal(next, 10);
    assert_false(dlv_sched_pop_due(&s, 9, got, &flags));
    const unsigned want[] = {101, 103, 105, 102, 104, 100};
    for (unsigned i = 0; i < 6; i++) {
        assert_true(dlv_sched_pop_due(&s, 1000, got, &flags));
        make_id(want[i], id);
        assert_string_equal(got, id);
    }
    assert_false(dlv_sched_pop_due(&s, 1000, got, &flags));
    assert_int_equal(dlv_sched_active(&s), 6);
    dlv_sched_free(&s);
}

static void test_lower_and_flags(void **state)
{
    (void)state;
    dlv_sched s;
    dlv_sched_init(&s);
    char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1], got[QUEUE_ID_LEN + 1];
    unsigned flags;
    make_id(1, a);
    make_id(2, b);
    assert_int_equal(dlv_sched_add(&s, a, 100, 0), 0);
    assert_int_equal(dlv_sched_add(&s, b, 200, 0), 0);
    /* A later request never delays; an earlier one moves it up. */
    assert_int_equal(dlv_sched_add(&s, a, 500, 0), 0);
    assert_int_equal(dlv_sched_add(&s, b, 50, DLV_SCHED_FORCE), 0);
    assert_int_equal(dlv_sched_queued(&s), 2);
    assert_true(dlv_sched_pop_due(&s, 60, got, &flags));
    assert_string_equal(got, b);
    assert_int_equal(flags, DLV_SCHED_FORCE);
    assert_false(dlv_sched_pop_due(&s, 60, got, &flags));
    assert_true(dlv_sched_pop_due(&s, 100, got, &flags));
    assert_string_equal(got, a);
    assert_int_equal(flags, 0);
    assert_int_equal(dlv_sched_add(&s, "bad", 1, 0), -EINVAL);
    dlv_sched_free(&s);
}

static void test_active_requests(void **state)
{
    (void)state;
    dlv_sched s;
    dlv_sched_init(&s);
    char a[QUEUE_ID_LEN + 1], got[QUEUE_ID_LEN + 1];
    unsigned flags;
    make_id(7, a);
    assert_int_equal(dlv_sched_add(&s, a, 0, 0), 0);
    assert_true(dlv_sched_pop_due(&s, 0, got, &flags));
    assert_true(dlv_sched_known(&s, a));
    /* A request while active: no second attempt now... */
    assert_int_equal(dlv_sched_add(&s, a, 5, DLV_SCHED_FORCE), 0);
    assert_false(dlv_sched_pop_due(&s, 100, got, &flags));
    /* ...but it wins over the attempt's own "later" or "forget". */
    assert_int_equal(dlv_sched_done(&s, a, -1), 0);
    assert_true(dlv_sched_pop_due(&s, 5, got, &flags));
    assert_int_equal(flags, DLV_SCHED_FORCE);
    assert_int_equal(dlv_sched_done(&s, a, 3000), 0);
    assert_false(dlv_sched_pop_due(&s, 2999, got, &flags));
    assert_true(dlv_sched_pop_due(&s, 3000, got, &flags));
    assert_int_equal(dlv_sched_done(&s, a, -1), 0);
    assert_false(dlv_sched_known(&s, a));
    assert_int_equal(dlv_sched_done(&s, a, -1), -ENOENT);
    dlv_sched_free(&s);
}

static void test_all_due(void **state)
{
    (void)state;
    dlv_sched s;
    dlv_sched_init(&s);
    char id[QUEUE_ID_LEN + 1], got[QUEUE_ID_LEN + 1];
    unsigned flags;
    for (unsigned i = 0; i < 10; i++) {
        make_id(i + 1, id);
        assert_int_equal(dlv_sched_add(&s, id, 1000 + i, 0), 0);
    }
    dlv_sched_all_due(&s, 10, DLV_SCHED_FORCE);
    for (unsigned i = 0; i < 10; i++) {
        assert_true(dlv_sched_pop_due(&s, 10, got, &flags));
        make_id(i + 1, id);
        assert_string_equal(got, id);
        assert_int_equal(flags, DLV_SCHED_FORCE);
    }
    dlv_sched_free(&s);
}

/* Many entries, removals and re-adds: the heap stays ordered through
 * table rebuilds and tombstones. */
static void test_many(void **state)
{
    (void)state;
    enum { N = 20000 };
    dlv_sched s;
    dlv_sched_init(&s);
    char id[QUEUE_ID_LEN + 1], got[QUEUE_ID_LEN + 1];
    unsigned flags;
    uint64_t x = 88172645463325252ull;
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < N; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            make_id(i + 1, id);
            assert_int_equal(dlv_sched_add(&s, id, (int64_t)(x % 100000), 0), 0);
        }
        /* Pop in order; every other one comes back much later. */
        int64_t prev = -1, d;
        size_t n = 0;
        while (dlv_sched_next_due(&s, &d) && d < 1000000) {
            assert_true(d >= prev);
            prev = d;
            assert_true(dlv_sched_pop_due(&s, INT64_MAX, got, &flags));
            n++;
            assert_int_equal(dlv_sched_done(&s, got, (n % 2) ? -1 : 1000000 + d), 0);
        }
        assert_int_equal(n, N);
        assert_int_equal(dlv_sched_queued(&s), N / 2);
        prev = -1;
        while (dlv_sched_next_due(&s, &d)) {
            assert_true(d >= prev);
            prev = d;
            assert_true(dlv_sched_pop_due(&s, INT64_MAX, got, &flags));
            assert_int_equal(dlv_sched_done(&s, got, -1), 0);
        }
        assert_int_equal(dlv_sched_queued(&s) + dlv_sched_active(&s), 0);
        assert_false(dlv_sched_known(&s, id));
    }
    dlv_sched_free(&s);
}

static void test_backoff(void **state)
{
    (void)state;
    /* retry_initial 5m doubling to retry_max 1h. */
    const unsigned want[] = {300, 600, 1200, 2400, 3600, 3600, 3600};
    for (unsigned i = 0; i < 7; i++)
        assert_int_equal(dlv_backoff(300, 3600, i + 1), want[i]);
    assert_int_equal(dlv_backoff(300, 3600, 0), 300);
    assert_int_equal(dlv_backoff(1, 4, 1), 1);
    assert_int_equal(dlv_backoff(1, 4, 2), 2);
    assert_int_equal(dlv_backoff(1, 4, 3), 4);
    assert_int_equal(dlv_backoff(1, 4, 1000000), 4);
    assert_int_equal(dlv_backoff(0, 0, 3), 1);
    assert_int_equal(dlv_backoff(4000000000u, 4000000000u, 50), 4000000000u);
}

/* ---- slots ---- */

struct fake {
    dlv_slot_req q;
    int ran;
};

static int runs;

static void run_cb(dlv_slot_req *q)
{
    ((struct fake *)q)->ran = ++runs;
}

static void test_slots(void **state)
{
    (void)state;
    dlv_slots s;
    dlv_slots_init(&s, 3, 2);
    struct fake f[6];
    const char *dest[] = {"a", "a", "a", "b", "c", "b"};
    runs = 0;
    for (int i = 0; i < 6; i++) {
        memset(&f[i], 0, sizeof(f[i]));
        f[i].q.dest = dest[i];
        f[i].q.run = run_cb;
        assert_int_equal(dlv_slots_submit(&s, &f[i].q), 0);
    }
    /* a, a run; the third a waits (per dest 2); b runs (total 3). */
    assert_int_equal(f[0].ran, 1);
    assert_int_equal(f[1].ran, 2);
    assert_int_equal(f[2].ran, 0);
    assert_int_equal(f[3].ran, 3);
    assert_int_equal(f[4].ran, 0);
    assert_int_equal(dlv_slots_in_use(&s, "a"), 2);
    /* Freeing b's slot: the third a still may not run (a has 2), c may. */
    dlv_slots_release(&s, "b");
    assert_int_equal(f[2].ran, 0);
    assert_int_equal(f[4].ran, 4);
    dlv_slots_release(&s, "a");
    assert_int_equal(f[2].ran, 5);
    assert_int_equal(f[5].ran, 0);
    dlv_slots_release(&s, "c");
    assert_int_equal(f[5].ran, 6);
    dlv_slots_release(&s, "a");
    dlv_slots_release(&s, "a");
    dlv_slots_release(&s, "b");
    assert_int_equal(s.total, 0);
    assert_int_equal(s.ndests, 0);
    dlv_slots_free(&s);
}

static int drained;
static void drain_cb(dlv_slot_req *q)
{
    (void)q;
    drained++;
}

static void test_slots_drain(void **state)
{
    (void)state;
    dlv_slots s;
    dlv_slots_init(&s, 1, 1);
    struct fake f[3];
    runs = 0;
    for (int i = 0; i < 3; i++) {
        memset(&f[i], 0, sizeof(f[i]));
        f[i].q.dest = "x";
        f[i].q.run = run_cb;
        dlv_slots_submit(&s, &f[i].q);
    }
    assert_int_equal(runs, 1);
    drained = 0;
    dlv_slots_drain(&s, drain_cb);
    assert_int_equal(drained, 2);
    dlv_slots_release(&s, "x");
    assert_int_equal(runs, 1);
    dlv_slots_free(&s);
}

/* A pool thread's try_take: only with a free slot, and never past a waiter. */
static void test_slots_try_take(void **state)
{
    (void)state;
    dlv_slots s;
    dlv_slots_init(&s, 3, 2);
    assert_true(dlv_slots_try_take(&s, "a"));
    assert_true(dlv_slots_try_take(&s, "a"));
    assert_false(dlv_slots_try_take(&s, "a")); /* per destination */
    assert_true(dlv_slots_try_take(&s, "b"));
    assert_false(dlv_slots_try_take(&s, "c")); /* in all */
    dlv_slots_release(&s, "b");
    assert_true(dlv_slots_try_take(&s, "c"));
    dlv_slots_release(&s, "a");
    dlv_slots_release(&s, "a");
    dlv_slots_release(&s, "c");
    assert_int_equal(s.total, 0);
    assert_int_equal(s.ndests, 0);
    dlv_slots_free(&s);

    /* A queued request for a is not overtaken, even with a slot free. */
    dlv_slots_init(&s, 2, 1);
    struct fake f[2];
    runs = 0;
    for (int i = 0; i < 2; i++) {
        memset(&f[i], 0, sizeof(f[i]));
        f[i].q.dest = "a";
        f[i].q.run = run_cb;
        assert_int_equal(dlv_slots_submit(&s, &f[i].q), 0);
    }
    assert_int_equal(f[0].ran, 1);
    assert_int_equal(f[1].ran, 0);
    assert_false(dlv_slots_try_take(&s, "a"));
    assert_true(dlv_slots_try_take(&s, "b")); /* another destination may */
    dlv_slots_release(&s, "a");
    assert_int_equal(f[1].ran, 2);
    assert_false(dlv_slots_try_take(&s, "a"));
    dlv_slots_release(&s, "a");
    dlv_slots_release(&s, "b");
    assert_int_equal(s.ndests, 0);
    dlv_slots_free(&s);
}

/*
 * While the loop grants (its lock released around each run callback), a
 * slot may be free with a request still queued for it: a pool thread's
 * try_take then must not take it before that request.
 */
static dlv_slots *window_slots;
static bool window_took;

static void window_cb(dlv_slot_req *q)
{
    run_cb(q);
    dlv_slots_release(window_slots, "a"); /* a1 ends meanwhile: a has room */
    window_took = dlv_slots_try_take(window_slots, "a");
}

static void test_slots_no_overtake(void **state)
{
    (void)state;
    dlv_slots s;
    dlv_slots_init(&s, 2, 2);
    window_slots = &s;
    window_took = true;
    struct fake f[4];
    const char *dest[] = {"a", "b", "a", "a"};
    runs = 0;
    for (int i = 0; i < 4; i++) {
        memset(&f[i], 0, sizeof(f[i]));
        f[i].q.dest = dest[i];
        f[i].q.run = i == 2 ? window_cb : run_cb;
        assert_int_equal(dlv_slots_submit(&s, &f[i].q), 0);
    }
    assert_int_equal(s.waiting, 2);
    dlv_slots_release(&s, "b"); /* a2 runs, and inside it the window */
    assert_int_equal(f[2].ran, 3);
    assert_false(window_took);
    assert_int_equal(f[3].ran, 4); /* the queued a3 got the slot */
    dlv_slots_release(&s, "a");
    dlv_slots_release(&s, "a");
    assert_int_equal(s.total, 0);
    assert_int_equal(s.ndests, 0);
    dlv_slots_free(&s);
}

/* A freed slot goes to the oldest waiter whose destination may run,
 * whichever destination queued it. */
static void test_slots_oldest_first(void **state)
{
    (void)state;
    dlv_slots s;
    dlv_slots_init(&s, 1, 1);
    struct fake f[4];
    const char *dest[] = {"x", "y", "x", "z"};
    runs = 0;
    for (int i = 0; i < 4; i++) {
        memset(&f[i], 0, sizeof(f[i]));
        f[i].q.dest = dest[i];
        f[i].q.run = run_cb;
        assert_int_equal(dlv_slots_submit(&s, &f[i].q), 0);
    }
    assert_int_equal(f[0].ran, 1);
    assert_int_equal(s.waiting, 3);
    dlv_slots_release(&s, "x");
    assert_int_equal(f[1].ran, 2); /* y1 is older than x2 */
    dlv_slots_release(&s, "y");
    assert_int_equal(f[2].ran, 3);
    assert_int_equal(f[3].ran, 0);
    dlv_slots_release(&s, "x");
    assert_int_equal(f[3].ran, 4);
    dlv_slots_release(&s, "z");
    assert_int_equal(s.waiting, 0);
    assert_int_equal(s.ndests, 0);
    dlv_slots_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_lower_and_flags),
        cmocka_unit_test(test_active_requests),
        cmocka_unit_test(test_all_due),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_slots_drain),
        cmocka_unit_test(test_slots_try_take),
        cmocka_unit_test(test_slots_oldest_first),
        cmocka_unit_test(test_slots_no_overtake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
