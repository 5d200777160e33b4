/*
 * test_sender_login.c - "the envelope sender must belong to the login"
 * (smtpd/sender_login.c), one test per rule, over maps parsed by map.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/map.h"
#include "sluice/sender_login.h"

static map *mailboxes, *aliases, *slmap;

static void diag(void *arg, const char *msg)
{
    (void)arg;
    fail_msg("map problem: %s", msg);
}

static map *load(const char *name, const char *text)
{
    map *m = NULL;
    assert_int_equal(map_load_buffer(name, text, strlen(text), &m, diag, NULL), 0);
    assert_non_null(m);
    return m;
}

static int setup(void **state)
{
    (void)state;
    mailboxes = load("mailboxes", "demo@example.test     maildirs/demo\n"
                                  "d.emo@example.test    maildirs/demo/\n"
                                  "bob@example.test      maildirs/bob\n"
                                  "Case@example.test     maildirs/case-upper\n"
                                  "case@example.test     maildirs/case-lower\n");
    aliases = load("aliases", "info@example.test      demo@example.test, bob@example.test\n"
                              "sales@example.test     bob@example.test\n"
                              "abuse@example.test     D.EMO@EXAMPLE.TEST\n"
                              "team@example.test      info@example.test\n"
                              "ext@example.test       demo@elsewhere.test\n");
    slmap = load("sender_login_map", "demo@example.test   boss@example.test, @shared.test\n"
                                     "admin@example.test  @example.test @Other.Test\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    map_free(mailboxes);
    map_free(aliases);
    map_free(slmap);
    return 0;
}

static bool ok(const char *login, const char *sender)
{
    return sender_login_allowed(login, sender, mailboxes, aliases, slmap);
}

static void test_login_itself(void **state)
{
    (void)state;
    assert_true(ok("demo@example.test", "demo@example.test"));
    assert_true(ok("demo@example.test", "demo@EXAMPLE.Test"));
    /* a different local part spelling the maps cannot tell apart */
    assert_true(ok("demo@example.test", "Demo@example.test"));
    assert_false(ok("demo@example.test", "bob@example.test"));
    assert_false(ok("demo@example.test", "demo@example.test.evil"));
    assert_false(ok("demo@example.test", "demo@other.test"));
    assert_false(ok("demo@example.test", "xdemo@example.test"));
    /* not in any map: only the login itself */
    assert_true(ok("carol@remote.test", "carol@REMOTE.test"));
    assert_false(ok("carol@remote.test", "dave@remote.test"));
    /* the maps tell Case@ and case@ apart: they are two mailboxes */
    assert_true(ok("case@example.test", "case@example.test"));
    assert_false(ok("case@example.test", "Case@example.test"));
    assert_false(ok("Case@example.test", "case@example.test"));
}

static void test_null_sender(void **state)
{
    (void)state;
    assert_true(ok("demo@example.test", ""));
    assert_true(ok("demo@example.test", "<>"));
    assert_true(ok("demo@example.test", NULL));
    /* no login, no sender */
    assert_false(ok("", "demo@example.test"));
    assert_false(ok(NULL, "demo@example.test"));
}

static void test_alias_targets(void **state)
{
    (void)state;
    /* info@ delivers to demo and bob: both may send as it */
    assert_true(ok("demo@example.test", "info@example.test"));
    assert_true(ok("bob@example.test", "info@example.test"));
    assert_true(ok("bob@example.test", "INFO@example.test"));
    /* sales@ only to bob */
    assert_false(ok("demo@example.test", "sales@example.test"));
    /* abuse@ goes to d.emo, another name of demo's mailbox */
    assert_true(ok("demo@example.test", "abuse@example.test"));
    /* one level only: team@ -> info@ -> demo */
    assert_false(ok("demo@example.test", "team@example.test"));
    /* the target must be the login, not just share a local part */
    assert_false(ok("demo@example.test", "ext@example.test"));
    assert_true(ok("demo@elsewhere.test", "ext@example.test"));
}

static void test_same_mailbox(void **state)
{
    (void)state;
    /* d.emo@ and demo@ share maildirs/demo (trailing '/' ignored) */
    assert_true(ok("demo@example.test", "d.emo@example.test"));
    assert_true(ok("d.emo@example.test", "demo@example.test"));
    assert_false(ok("bob@example.test", "demo@example.test"));
    /* a login without a mailbox shares nothing */
    assert_false(ok("carol@remote.test", "demo@example.test"));
}

static void test_sender_login_map(void **state)
{
    (void)state;
    assert_true(ok("demo@example.test", "boss@example.test"));
    assert_true(ok("demo@example.test", "BOSS@Example.Test"));
    assert_true(ok("demo@example.test", "anyone@shared.test"));
    assert_true(ok("demo@example.test", "anyone@SHARED.test"));
    assert_false(ok("demo@example.test", "anyone@sub.shared.test"));
    assert_false(ok("demo@example.test", "anyone@notshared.test"));
    assert_false(ok("demo@example.test", "boss2@example.test"));
    /* "@domain" wildcards, space separated, any case */
    assert_true(ok("admin@example.test", "bob@example.test"));
    assert_true(ok("admin@example.test", "x@other.test"));
    assert_false(ok("admin@example.test", "x@third.test"));
    /* the map is keyed by login: bob gets nothing from demo's entry */
    assert_false(ok("bob@example.test", "boss@example.test"));
    /* without the optional map */
    assert_false(
        sender_login_allowed("demo@example.test", "boss@example.test", mailboxes, aliases, NULL));
    /* without any map only the login itself */
    assert_true(sender_login_allowed("demo@example.test", "demo@example.test", NULL, NULL, NULL));
    assert_false(sender_login_allowed("demo@example.test", "info@example.test", NULL, NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_itself),     cmocka_unit_test(test_null_sender),
        cmocka_unit_test(test_alias_targets),    cmocka_unit_test(test_same_mailbox),
        cmocka_unit_test(test_sender_login_map),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
