/*
 * test_cli_addrlist.c - RFC 5322 address lists as `sendmail -t` reads To,
 * Cc and Bcc: display names, angle addresses, groups, comments, quoted
 * strings, folding, empty elements, routes, and what must be refused.
 *
 * The CLI's sources are not in a library (queue/CMakeLists.txt keeps
 * cli_*.c for the `sluice` program), so the pure file is compiled in here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../queue/cli_addrlist.c"

#define MAXA 16

struct got {
    int n;
    char a[MAXA][600];
};

static int collect(void *arg, const char *addr)
{
    struct got *g = arg;
    if (g->n < MAXA)
        snprintf(g->a[g->n], sizeof(g->a[0]), "%s", addr);
    g->n++;
    return 0;
}

/* Parses s and checks the addresses (NULL-terminated list). */
static void expect(const char *s, ...)
{
    struct got g = {0};
    char err[200];
    int rc = cli_addrlist_parse(s, strlen(s), collect, &g, err, sizeof(err));
    if (rc < 0)
        print_message("parse of '%s' failed: %s\n", s, err);
    va_list ap;
    va_start(ap, s);
    int i = 0;
    for (const char *want; (want = va_arg(ap, const char *)); i++) {
        assert_true(i < g.n);
        assert_string_equal(g.a[i], want);
    }
    va_end(ap);
    assert_int_equal(rc, i);
    assert_int_equal(g.n, i);
}

static void expect_bad(const char *s, const char *why)
{
    struct got g = {0};
    char err[200];
    int rc = cli_addrlist_parse(s, strlen(s), collect, &g, err, sizeof(err));
    if (rc >= 0)
        print_message("'%s' was accepted (%d addresses)\n", s, rc);
    assert_int_equal(rc, -EINVAL);
    if (!strstr(err, why))
        print_message("error for '%s': %s (expected '%s')\n", s, err, why);
    assert_non_null(strstr(err, why));
}

static void test_plain(void **state)
{
    (void)state;
    expect("user@example.test", "user@example.test", NULL);
    expect("  a@x.test ,b@y.test,   c@z.test  ", "a@x.test", "b@y.test", "c@z.test", NULL);
    expect("", NULL);
    expect("   ", NULL);
    expect("root", "root", NULL); /* bare local part: the caller qualifies */
    expect("first.last@sub.example.test", "first.last@sub.example.test", NULL);
    expect("a+tag@x.test", "a+tag@x.test", NULL);
}

static void test_display_names(void **state)
{
    (void)state;
    expect("Joe Q. Public <john.q.public@example.com>", "john.q.public@example.com", NULL);
    expect("\"Smith, John\" <js@x.test>, Jane <jane@x.test>", "js@x.test", "jane@x.test", NULL);
    expect("\"quoted \\\" and , and <>\" <q@x.test>", "q@x.test", NULL);
    expect("<bare@angle.test>", "bare@angle.test", NULL);
    expect("=?UTF-8?B?SsO2aG4=?= <j@x.test>", "j@x.test", NULL);
    expect("J\xc3\xb6rg <j@x.test>", "j@x.test", NULL);
}

static void test_comments_and_folding(void **state)
{
    (void)state;
    expect("user@example.test (Full Name)", "user@example.test", NULL);
    expect("(lead) user (inner (nested) comment) @ example.test", "user@example.test", NULL);
    expect("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", "pete@silly.test",
           NULL);
    /* Folding: CRLF and white space count as white space. */
    expect("a@x.test,\r\n b@y.test,\r\n\tC <c@z.test>", "a@x.test", "b@y.test", "c@z.test", NULL);
    expect("john . smith @ example . test", "john.smith@example.test", NULL);
}

static void test_groups(void **state)
{
    (void)state;
    expect("undisclosed-recipients:;", NULL);
    expect("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;", "c@a.test",
           "joe@where.test", "jdoe@one.test", NULL);
    expect("friends: a@x.test, b@x.test; other@y.test", "a@x.test", "b@x.test", "other@y.test",
           NULL);
    expect("open group: a@x.test, b@x.test", "a@x.test", "b@x.test", NULL); /* no ';' */
}

static void test_obsolete_forms(void **state)
{
    (void)state;
    expect("a@x.test,,b@y.test,", "a@x.test", "b@y.test", NULL);
    expect(", ,a@x.test", "a@x.test", NULL);
    expect("<@relay1.test,@relay2.test:user@final.test>", "user@final.test", NULL);
    expect("\"odd local\"@x.test", "\"odd local\"@x.test", NULL);
    expect("user@[192.0.2.1]", "user@[192.0.2.1]", NULL);
}

static void test_refused(void **state)
{
    (void)state;
    expect_bad("john smith", "a name needs <address>");
    expect_bad("john smith@x.test", "a name needs <address>");
    expect_bad("<a@x.test", "missing '>'");
    expect_bad("<>", "empty address <>");
    expect_bad("a@x.test (unterminated", "unterminated comment");
    expect_bad("\"open quote@x.test", "unterminated quoted string");
    expect_bad("@x.test", "bad address");
    expect_bad("user@", "bad address");
    expect_bad("a@b@c.test", "bad address");
    expect_bad("g1: g2: a@x.test;;", "group inside a group");
    expect_bad("a@x.test;", "';' outside a group");
    expect_bad("<a@x.test> trailing", "text after '>'");
    expect_bad("a@x.test\x01", "control character");
    expect_bad(".a@x.test", "bad address");
}

static void test_long_and_many(void **state)
{
    (void)state;
    char big[2000];
    memset(big, 'a', 600);
    strcpy(big + 600, "@x.test");
    expect_bad(big, "address too long");

    /* Many addresses: each one handed over. */
    char list[8000] = "";
    for (int i = 0; i < 300; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "u%d@x.test, ", i);
    struct got g = {0};
    char err[100];
    assert_int_equal(cli_addrlist_parse(list, strlen(list), collect, &g, err, sizeof(err)), 300);
    assert_string_equal(g.a[0], "u0@x.test");
}

static int stop_second(void *arg, const char *addr)
{
    int *n = arg;
    (void)addr;
    return ++*n == 2 ? -ENOMEM : 0;
}

static void test_callback_stops(void **state)
{
    (void)state;
    int n = 0;
    char err[100];
    const char *s = "a@x.test, b@x.test, c@x.test";
    assert_int_equal(cli_addrlist_parse(s, strlen(s), stop_second, &n, err, sizeof(err)), -ENOMEM);
    assert_int_equal(n, 2);
}

static void test_not_nul_terminated(void **state)
{
    (void)state;
    /* The length bounds the parse: bytes after it are never read. */
    const char buf[] = {'a', '@', 'x', '.', 't', 'e', 's', 't', ',', 'b', '@'};
    struct got g = {0};
    char err[100];
    assert_int_equal(cli_addrlist_parse(buf, 8, collect, &g, err, sizeof(err)), 1);
    assert_string_equal(g.a[0], "a@x.test");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_display_names),
        cmocka_unit_test(test_comments_and_folding),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_obsolete_forms),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_long_and_many),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_not_nul_terminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
