/* test_queue_id.c - queue ids: form, validity, time, uniqueness and order. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sluice/queue_id.h"

static void test_form(void **state)
{
    char id[QUEUE_ID_LEN + 1];

    queue_id_new(QUEUE_ID_DELIVERY, id);
    assert_int_equal(strlen(id), QUEUE_ID_LEN);
    assert_true(queue_id_valid(id, strlen(id)));
    assert_int_equal(id[QUEUE_ID_LEN - 1], '1');
    queue_id_new(QUEUE_ID_CLI, id);
    assert_int_equal(id[QUEUE_ID_LEN - 1], '2');
    queue_id_new(QUEUE_ID_SMTPD, id);
    assert_int_equal(id[QUEUE_ID_LEN - 1], '0');
    for (size_t i = 0; i < QUEUE_ID_LEN; i++)
        assert_true((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'F'));
}

static void test_valid(void **state)
{
    assert_true(queue_id_valid("18F3A2B4C5D6E0", 14));
    assert_false(queue_id_valid("18f3a2b4c5d6e0", 14)); /* lower case */
    assert_false(queue_id_valid("18F3A2B4C5D6E", 13));
    assert_false(queue_id_valid("18F3A2B4C5D6E00", 15));
    assert_false(queue_id_valid("18F3A2B4C5D6G0", 14));
    assert_false(queue_id_valid("18F3A2B4C5D6/0", 14));
    assert_false(queue_id_valid("18F3A2B4\0C5D6E", 14));
    assert_false(queue_id_valid(NULL, 14));
    assert_false(queue_id_valid("", 0));
}

static void test_time(void **state)
{
    char id[QUEUE_ID_LEN + 1];
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    queue_id_new(QUEUE_ID_SMTPD, id);
    int64_t t = queue_id_time(id);
    assert_true(t >= now);
    assert_true(t - now < 5 * 1000000); /* a few seconds at most */
    assert_int_equal(queue_id_time("0000000000001F"), 1);
    assert_int_equal(queue_id_time("FFFFFFFFFFFFF0"), (INT64_C(1) << 52) - 1);
}

static void test_increasing_fast(void **state)
{
    /* Far more ids than microseconds pass: the +1 rule must kick in. */
    char prev[QUEUE_ID_LEN + 1], id[QUEUE_ID_LEN + 1];

    queue_id_new(QUEUE_ID_SMTPD, prev);
    for (int i = 0; i < 200000; i++) {
        queue_id_new(QUEUE_ID_SMTPD, id);
        assert_true(strcmp(prev, id) < 0);
        memcpy(prev, id, sizeof(id));
    }
}

#define THREADS 8
#define PER_THREAD 20000

static char (*all_ids)[QUEUE_ID_LEN + 1];

static void *make_ids(void *arg)
{
    size_t base = (size_t)(uintptr_t)arg * PER_THREAD;
    for (size_t i = 0; i < PER_THREAD; i++)
        queue_id_new(QUEUE_ID_SMTPD, all_ids[base + i]);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_unique_across_threads(void **state)
{
    pthread_t th[THREADS];

    all_ids = calloc(THREADS * PER_THREAD, sizeof(*all_ids));
    assert_non_null(all_ids);
    for (uintptr_t t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, make_ids, (void *)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    /* Each thread sees its own ids strictly increasing ... */
    for (size_t t = 0; t < THREADS; t++)
        for (size_t i = 1; i < PER_THREAD; i++)
            assert_true(strcmp(all_ids[t * PER_THREAD + i - 1], all_ids[t * PER_THREAD + i]) < 0);
    /* ... and no id appears twice in the process. */
    qsort(all_ids, THREADS * PER_THREAD, sizeof(*all_ids), cmp);
    for (size_t i = 1; i < THREADS * PER_THREAD; i++)
        assert_true(strcmp(all_ids[i - 1], all_ids[i]) < 0);
    free(all_ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_increasing_fast),
        cmocka_unit_test(test_unique_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
