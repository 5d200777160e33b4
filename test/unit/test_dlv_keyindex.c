/*
 * test_dlv_keyindex.c - the per-Maildir set of delivery keys that replaces a
 * listing per delivery: what a listing finds, what this process adds, and
 * a sure "no" for anything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "scratch_dir.h"

#include "sluice/dlv_keyindex.h"

static char g_root[256];

static int setup(void **state)
{
    (void)state;
    return scratch_make(g_root, sizeof(g_root), "keyindex");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_remove(g_root);
}

static void touch(const char *md, const char *sub, const char *name)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", md, sub);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/%s/%s", md, sub, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static void test_listing_and_adds(void **state)
{
    char md[512];
    dlv_keyindex x;
    (void)state;

    snprintf(md, sizeof(md), "%s/Maildir", g_root);
    assert_int_equal(mkdir(md, 0700), 0);
    touch(md, "new", "1700000000.M1P12Q18F3A2B4C5D6E0_0.mx.example.test");
    touch(md, "cur", "1700000000.M2P12Q18F3A2B4C5D6E0_1.mx.example.test:2,S");
    touch(md, "cur", "1700000001.M3P13.dovecot-host,S=100:2,");
    touch(md, "tmp", "1700000002.M4P12Q18F3A2B4C5D6E0_2.mx.example.test");

    assert_int_equal(dlv_keyindex_init(&x), 0);
    /* What the listing of new/ and cur/ found. */
    assert_true(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0_0"));
    assert_true(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0_1"));
    /* tmp/ never counts, and other keys are a sure no. */
    assert_false(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0_2"));
    assert_false(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0_3"));
    assert_false(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0"));

    /* The set is the listing of the first question: a file put there
     * behind its back is not seen; one this process adds is. */
    touch(md, "new", "1700000003.M5P12Q18F3A2B4C5D6E0_3.mx.example.test");
    assert_false(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0_3"));
    dlv_keyindex_add(&x, md, "18F3A2B4C5D6E0_3");
    assert_true(dlv_keyindex_may_hold(&x, md, "18F3A2B4C5D6E0_3"));

    /* Sets are per Maildir; a Maildir that does not exist holds nothing,
     * and an add before its first question is left to its listing. */
    char other[600];
    snprintf(other, sizeof(other), "%s/Other", g_root);
    dlv_keyindex_add(&x, other, "18F3A2B4C5D6E0_0");
    assert_false(dlv_keyindex_may_hold(&x, other, "18F3A2B4C5D6E0_0"));
    dlv_keyindex_free(&x);
}

static void test_many_keys_grow(void **state)
{
    char md[512], key[32];
    dlv_keyindex x;
    (void)state;

    snprintf(md, sizeof(md), "%s/Big", g_root);
    assert_int_equal(dlv_keyindex_init(&x), 0);
    assert_false(dlv_keyindex_may_hold(&x, md, "K_0")); /* empty, listed */
    for (int i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof(key), "K_%d", i);
        dlv_keyindex_add(&x, md, key);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "K_%d", i);
        assert_int_equal(dlv_keyindex_may_hold(&x, md, key), i % 2 == 0);
    }
    assert_int_equal(x.nkeys, 2500);
    dlv_keyindex_free(&x);
}

static void test_unreadable_says_maybe(void **state)
{
    char md[512];
    dlv_keyindex x;
    (void)state;

    /* A Maildir whose new/ is a file cannot be listed: every answer is
     * "maybe", so the caller does its own listing. */
    snprintf(md, sizeof(md), "%s/Broken", g_root);
    assert_int_equal(mkdir(md, 0700), 0);
    char p[600];
    snprintf(p, sizeof(p), "%s/new", md);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(dlv_keyindex_init(&x), 0);
    assert_true(dlv_keyindex_may_hold(&x, md, "K_1"));
    assert_true(dlv_keyindex_may_hold(&x, md, "K_2"));
    assert_int_equal(x.nkeys, 0);
    dlv_keyindex_free(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing_and_adds),
        cmocka_unit_test(test_many_keys_grow),
        cmocka_unit_test(test_unreadable_says_maybe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
