/*
 * test_auth_throttle.c - failed-AUTH throttling (smtpd/smtp_auth_throttle.c):
 * the limit, the sliding window, address keys, and the memory bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "sluice/smtp_auth_throttle.h"

#define SEC 1000u /* times are milliseconds */

static struct sockaddr_storage ip(const char *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(40000);
    } else {
        assert_int_equal(inet_pton(AF_INET6, s, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(40001);
    }
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_limit(void **state)
{
    (void)state;
    auth_throttle *t = NULL;
    assert_int_equal(auth_throttle_new(3, 60, 0, &t), 0);
    struct sockaddr_storage a = ip("192.0.2.1"), b = ip("192.0.2.2");
    uint64_t now = 1000 * SEC;

    assert_false(auth_throttle_blocked(t, SA(a), now));
    auth_throttle_fail(t, SA(a), now);
    auth_throttle_fail(t, SA(a), now + 1 * SEC);
    assert_int_equal(auth_throttle_failures(t, SA(a), now + 1 * SEC), 2);
    assert_false(auth_throttle_blocked(t, SA(a), now + 1 * SEC));
    auth_throttle_fail(t, SA(a), now + 2 * SEC);
    assert_true(auth_throttle_blocked(t, SA(a), now + 2 * SEC));
    /* another address is not affected */
    assert_false(auth_throttle_blocked(t, SA(b), now + 2 * SEC));
    assert_int_equal(auth_throttle_failures(t, SA(b), now + 2 * SEC), 0);
    assert_string_equal(AUTH_THROTTLE_REPLY, "421 4.7.0 Too many authentication failures");
    auth_throttle_free(t);
}

static void test_window_expiry(void **state)
{
    (void)state;
    auth_throttle *t = NULL;
    assert_int_equal(auth_throttle_new(3, 60, 0, &t), 0);
    struct sockaddr_storage a = ip("198.51.100.9");
    uint64_t now = 5 * SEC;

    auth_throttle_fail(t, SA(a), now);            /* t=0  */
    auth_throttle_fail(t, SA(a), now + 10 * SEC); /* t=10 */
    auth_throttle_fail(t, SA(a), now + 20 * SEC); /* t=20 */
    assert_true(auth_throttle_blocked(t, SA(a), now + 59 * SEC));
    /* the first failure leaves the window at t=60: two remain */
    assert_false(auth_throttle_blocked(t, SA(a), now + 60 * SEC));
    assert_int_equal(auth_throttle_failures(t, SA(a), now + 60 * SEC), 2);
    /* sliding, not fixed: one more at t=61 blocks again (10, 20, 61) */
    auth_throttle_fail(t, SA(a), now + 61 * SEC);
    assert_true(auth_throttle_blocked(t, SA(a), now + 61 * SEC));
    assert_true(auth_throttle_blocked(t, SA(a), now + 69 * SEC));
    assert_false(auth_throttle_blocked(t, SA(a), now + 70 * SEC));
    /* all gone after a quiet window */
    assert_int_equal(auth_throttle_failures(t, SA(a), now + 200 * SEC), 0);
    auth_throttle_free(t);
}

static void test_ring_keeps_latest(void **state)
{
    (void)state;
    /* More failures than the limit: the newest `limit` decide. */
    auth_throttle *t = NULL;
    assert_int_equal(auth_throttle_new(2, 10, 0, &t), 0);
    struct sockaddr_storage a = ip("203.0.113.5");
    for (unsigned i = 0; i < 7; i++)
        auth_throttle_fail(t, SA(a), (uint64_t)i * SEC);
    assert_int_equal(auth_throttle_failures(t, SA(a), 6 * SEC), 2);
    assert_true(auth_throttle_blocked(t, SA(a), 14 * SEC)); /* 5 and 6 still inside */
    assert_false(auth_throttle_blocked(t, SA(a), 15 * SEC));
    /* a clock that goes back does not unblock or crash */
    auth_throttle_fail(t, SA(a), 20 * SEC);
    auth_throttle_fail(t, SA(a), 21 * SEC);
    assert_true(auth_throttle_blocked(t, SA(a), 3 * SEC));
    auth_throttle_free(t);
}

static void test_address_keys(void **state)
{
    (void)state;
    auth_throttle *t = NULL;
    assert_int_equal(auth_throttle_new(2, 60, 0, &t), 0);

    /* IPv4 and its IPv4-mapped IPv6 form are one client */
    struct sockaddr_storage v4 = ip("192.0.2.77"), mapped = ip("::ffff:192.0.2.77");
    auth_throttle_fail(t, SA(v4), 0);
    auth_throttle_fail(t, SA(mapped), 0);
    assert_true(auth_throttle_blocked(t, SA(v4), 1));
    assert_true(auth_throttle_blocked(t, SA(mapped), 1));

    /* IPv6 by /64: rotating the interface identifier does not help */
    struct sockaddr_storage x1 = ip("2001:db8:1:2::1"), x2 = ip("2001:db8:1:2:ffff::9"),
                            other = ip("2001:db8:1:3::1");
    auth_throttle_fail(t, SA(x1), 0);
    auth_throttle_fail(t, SA(x2), 0);
    assert_true(auth_throttle_blocked(t, SA(x1), 1));
    struct sockaddr_storage x3 = ip("2001:db8:1:2::abcd");
    assert_true(auth_throttle_blocked(t, SA(x3), 1));
    assert_false(auth_throttle_blocked(t, SA(other), 1));

    /* "::" (a /64 of zeros) is not confused with any IPv4 address */
    struct sockaddr_storage zero = ip("::1"), v4zero = ip("0.0.0.0");
    auth_throttle_fail(t, SA(zero), 0);
    auth_throttle_fail(t, SA(zero), 0);
    assert_true(auth_throttle_blocked(t, SA(zero), 1));
    assert_false(auth_throttle_blocked(t, SA(v4zero), 1));

    /* non-IP clients (the local socket) are never counted */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    auth_throttle_fail(t, (const struct sockaddr *)&un, 0);
    auth_throttle_fail(t, (const struct sockaddr *)&un, 0);
    assert_false(auth_throttle_blocked(t, (const struct sockaddr *)&un, 1));
    assert_false(auth_throttle_blocked(t, NULL, 1));
    auth_throttle_free(t);
}

static void test_eviction_bound(void **state)
{
    (void)state;
    auth_throttle *t = NULL;
    assert_int_equal(auth_throttle_new(3, 600, 64, &t), 0);
    size_t bytes = auth_throttle_bytes(t);
    assert_true(bytes > 0);

    /* the attacker keeps failing, interleaved with 10000 other addresses */
    struct sockaddr_storage attacker = ip("192.0.2.200");
    uint64_t now = 0;
    for (unsigned i = 0; i < 10000; i++) {
        char s[32];
        snprintf(s, sizeof(s), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        struct sockaddr_storage x = ip(s);
        auth_throttle_fail(t, SA(x), now);
        if (i % 16 == 0)
            auth_throttle_fail(t, SA(attacker), now);
        now += 10;
        assert_true(auth_throttle_used(t) <= 64);
    }
    assert_int_equal(auth_throttle_used(t), 64);
    assert_int_equal(auth_throttle_bytes(t), bytes); /* never grows */
    /* the recently active attacker survived the churn (LRU) */
    assert_true(auth_throttle_blocked(t, SA(attacker), now));
    /* the first quiet addresses were forgotten */
    struct sockaddr_storage first = ip("10.0.0.0");
    assert_int_equal(auth_throttle_failures(t, SA(first), now), 0);
    auth_throttle_free(t);

    /* the default table: 4096 entries, bytes as documented */
    assert_int_equal(auth_throttle_new(5, 300, 0, &t), 0);
    print_message("default table: %zu bytes\n", auth_throttle_bytes(t));
    assert_true(auth_throttle_bytes(t) < 512u * 1024u);
    for (unsigned i = 0; i < 3 * AUTH_THROTTLE_ENTRIES; i++) {
        struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
        s6.sin6_addr.s6_addr[0] = 0x20;
        memcpy(&s6.sin6_addr.s6_addr[4], &i, sizeof(i));
        auth_throttle_fail(t, (const struct sockaddr *)&s6, i);
    }
    assert_int_equal(auth_throttle_used(t), AUTH_THROTTLE_ENTRIES);
    auth_throttle_free(t);
}

static void test_disabled_and_args(void **state)
{
    (void)state;
    auth_throttle *t = NULL;
    struct sockaddr_storage a = ip("192.0.2.1");
    assert_int_equal(auth_throttle_new(0, 60, 0, &t), 0);
    for (int i = 0; i < 100; i++)
        auth_throttle_fail(t, SA(a), 0);
    assert_false(auth_throttle_blocked(t, SA(a), 0));
    auth_throttle_free(t);
    assert_int_equal(auth_throttle_new(5, 0, 0, &t), 0);
    auth_throttle_fail(t, SA(a), 0);
    assert_false(auth_throttle_blocked(t, SA(a), 0));
    auth_throttle_free(t);

    /* an absurd limit is clamped, not an allocation of gigabytes */
    assert_int_equal(auth_throttle_new(1000000, 60, 16, &t), 0);
    for (unsigned i = 0; i < AUTH_THROTTLE_LIMIT_MAX - 1; i++)
        auth_throttle_fail(t, SA(a), 0);
    assert_false(auth_throttle_blocked(t, SA(a), 0));
    auth_throttle_fail(t, SA(a), 0);
    assert_true(auth_throttle_blocked(t, SA(a), 0));
    auth_throttle_free(t);

    assert_int_equal(auth_throttle_new(5, 60, (size_t)1 << 30, &t), -EINVAL);
    assert_int_equal(auth_throttle_new(5, 60, 0, NULL), -EINVAL);
    auth_throttle_free(NULL);
    assert_false(auth_throttle_blocked(NULL, SA(a), 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_window_expiry),
        cmocka_unit_test(test_ring_keeps_latest),
        cmocka_unit_test(test_address_keys),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_disabled_and_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
