/*
 * test_smtp_client_reply.c - the SMTP client's pure parts: reply lines,
 * enhanced status codes, sanitising, EHLO keywords, the relayhost_auth
 * file, and dot-stuffing of the data.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/dlv_smtp.h"

static int feed(dlv_smtp_reply *r, const char *line)
{
    return dlv_smtp_reply_line(r, line, strlen(line), NULL, NULL);
}

static void test_single_line(void **state)
{
    dlv_smtp_reply r;
    char out[DLV_REPLY_MAX + 1];
    dlv_smtp_reply_init(&r);
    assert_int_equal(feed(&r, "250 2.1.5 Ok"), 1);
    assert_int_equal(r.code, 250);
    assert_true(r.has_status);
    assert_string_equal(r.status, "2.1.5");
    assert_string_equal(r.text, "Ok");
    dlv_smtp_reply_format(&r, out, sizeof(out));
    assert_string_equal(out, "250 2.1.5 Ok");

    /* No enhanced code: derived from the class, not shown in the text. */
    assert_int_equal(feed(&r, "550 no such user"), 1);
    assert_false(r.has_status);
    assert_string_equal(r.status, "5.0.0");
    dlv_smtp_reply_format(&r, out, sizeof(out));
    assert_string_equal(out, "550 no such user");

    /* A bare code. */
    assert_int_equal(feed(&r, "354"), 1);
    assert_int_equal(r.code, 354);
    assert_string_equal(r.text, "");

    /* A status of another class than the code is text, not a status. */
    assert_int_equal(feed(&r, "451 5.1.1 mixed"), 1);
    assert_string_equal(r.status, "4.0.0");
    assert_string_equal(r.text, "5.1.1 mixed");

    /* Two-digit subject and detail; longer ones do not fit the runner's status field. */
    assert_int_equal(feed(&r, "550 5.12.34 x"), 1);
    assert_string_equal(r.status, "5.12.34");
    assert_string_equal(r.text, "x");
    assert_int_equal(feed(&r, "550 5.123.456 x"), 1);
    assert_false(r.has_status);
    assert_string_equal(r.status, "5.0.0");
    assert_int_equal(feed(&r, "550 5.1234.1 x"), 1);
    assert_false(r.has_status);
    (void)state;
}

static void test_multi_line(void **state)
{
    dlv_smtp_reply r;
    char out[DLV_REPLY_MAX + 1];
    dlv_smtp_reply_init(&r);
    assert_int_equal(feed(&r, "550-5.7.1 Our policy"), 0);
    assert_int_equal(feed(&r, "550-5.7.1 says no"), 0);
    assert_int_equal(feed(&r, "550 5.7.1 see https://x.test"), 1);
    assert_string_equal(r.status, "5.7.1");
    assert_string_equal(r.text, "Our policy says no see https://x.test");
    assert_int_equal(r.nlines, 3);
    dlv_smtp_reply_format(&r, out, sizeof(out));
    assert_string_equal(out, "550 5.7.1 Our policy says no see https://x.test");

    /* The next line starts a new reply. */
    assert_int_equal(feed(&r, "250 ok"), 1);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.text, "ok");

    /* EHLO keywords come through text. */
    const char *t;
    size_t tl;
    dlv_smtp_reply_init(&r);
    assert_int_equal(dlv_smtp_reply_line(&r, "250-SIZE 1000", 13, &t, &tl), 0);
    assert_int_equal(tl, 9);
    assert_memory_equal(t, "SIZE 1000", 9);
    (void)state;
}

static void test_bad_replies(void **state)
{
    dlv_smtp_reply r;
    dlv_smtp_reply_init(&r);
    assert_int_equal(feed(&r, ""), -EPROTO);
    assert_int_equal(feed(&r, "25"), -EPROTO);
    assert_int_equal(feed(&r, "abc def"), -EPROTO);
    assert_int_equal(feed(&r, "150 x"), -EPROTO);
    assert_int_equal(feed(&r, "650 x"), -EPROTO);
    assert_int_equal(feed(&r, "250x"), -EPROTO);
    /* The code may not change inside a reply. */
    dlv_smtp_reply_init(&r);
    assert_int_equal(feed(&r, "250-a"), 0);
    assert_int_equal(feed(&r, "251 b"), -EPROTO);
    /* Endless lines are cut off. */
    dlv_smtp_reply_init(&r);
    int rc = 0;
    for (int i = 0; i < DLV_SMTP_REPLY_LINES + 5 && rc == 0; i++)
        rc = feed(&r, "220-more");
    assert_int_equal(rc, -E2BIG);
    (void)state;
}

static void test_sanitize_and_bound(void **state)
{
    dlv_smtp_reply r;
    dlv_smtp_reply_init(&r);
    const char *l1 = "550 a\x01\tb\x7f\xff\xc3\xa9!";
    assert_int_equal(dlv_smtp_reply_line(&r, l1, strlen(l1), NULL, NULL), 1);
    assert_string_equal(r.text, "a? b??\xc3\xa9!");

    /* A truncated UTF-8 sequence at the end is replaced, never cut mid-way. */
    assert_int_equal(dlv_smtp_reply_line(&r, "550 x\xe2\x82", 7, NULL, NULL), 1);
    assert_string_equal(r.text, "x??");

    /* Many long lines: the text stays within bounds. */
    char line[1100];
    memset(line, 'x', sizeof(line));
    memcpy(line, "550-", 4);
    dlv_smtp_reply_init(&r);
    for (int i = 0; i < 10; i++)
        assert_int_equal(dlv_smtp_reply_line(&r, line, sizeof(line), NULL, NULL), 0);
    line[3] = ' ';
    assert_int_equal(dlv_smtp_reply_line(&r, line, sizeof(line), NULL, NULL), 1);
    assert_true(r.text_len <= DLV_REPLY_MAX - 16);
    assert_int_equal(strlen(r.text), r.text_len);
    char out[DLV_REPLY_MAX + 1];
    dlv_smtp_reply_format(&r, out, sizeof(out));
    assert_true(strlen(out) <= DLV_REPLY_MAX);

    /* An é at the bound is not split. */
    char l2[DLV_REPLY_MAX + 20];
    memcpy(l2, "550 ", 4);
    size_t n = 4;
    while (n + 2 < sizeof(l2)) {
        l2[n++] = '\xc3';
        l2[n++] = '\xa9';
    }
    dlv_smtp_reply_init(&r);
    assert_int_equal(dlv_smtp_reply_line(&r, l2, n, NULL, NULL), 1);
    assert_int_equal(r.text_len % 2, 0);
    (void)state;
}

static void test_next_line(void **state)
{
    size_t ll = 99;
    assert_int_equal(dlv_smtp_next_line("250 ok\r\n250", 11, &ll), 8);
    assert_int_equal(ll, 6);
    assert_int_equal(dlv_smtp_next_line("250 ok\n", 7, &ll), 7);
    assert_int_equal(ll, 6);
    assert_int_equal(dlv_smtp_next_line("250 o", 5, &ll), 0);
    assert_int_equal(dlv_smtp_next_line("\r\n", 2, &ll), 2);
    assert_int_equal(ll, 0);

    static char big[DLV_SMTP_LINE_MAX + 10];
    memset(big, 'a', sizeof(big));
    assert_int_equal(dlv_smtp_next_line(big, DLV_SMTP_LINE_MAX, &ll), 0);
    assert_int_equal(dlv_smtp_next_line(big, sizeof(big), &ll), -E2BIG);
    big[DLV_SMTP_LINE_MAX] = '\r';
    big[DLV_SMTP_LINE_MAX + 1] = '\n';
    assert_int_equal(dlv_smtp_next_line(big, sizeof(big), &ll), DLV_SMTP_LINE_MAX + 2);
    assert_int_equal(ll, DLV_SMTP_LINE_MAX);
    (void)state;
}

static void ext(dlv_smtp_ext *e, const char *s)
{
    dlv_smtp_ext_line(e, s, strlen(s));
}

static void test_ehlo_keywords(void **state)
{
    dlv_smtp_ext e = {0};
    ext(&e, "PIPELINING");
    ext(&e, "size 35882577");
    ext(&e, "8BITMIME");
    ext(&e, "STARTTLS");
    ext(&e, "SMTPUTF8");
    ext(&e, "DSN");
    ext(&e, "ENHANCEDSTATUSCODES");
    ext(&e, "AUTH LOGIN PLAIN");
    ext(&e, "PIPELININGX");
    assert_int_equal(e.flags, DLV_SMTP_EXT_PIPELINING | DLV_SMTP_EXT_SIZE | DLV_SMTP_EXT_8BITMIME |
                                  DLV_SMTP_EXT_STARTTLS | DLV_SMTP_EXT_SMTPUTF8 | DLV_SMTP_EXT_DSN |
                                  DLV_SMTP_EXT_ENHANCEDSTATUSCODES | DLV_SMTP_EXT_AUTH |
                                  DLV_SMTP_EXT_AUTH_PLAIN);
    assert_int_equal(e.size, 35882577);

    dlv_smtp_ext f = {0};
    ext(&f, "AUTH=LOGIN PLAIN");
    assert_true(f.flags & DLV_SMTP_EXT_AUTH_PLAIN);
    dlv_smtp_ext g = {0};
    ext(&g, "AUTH CRAM-MD5 PLAINX");
    assert_true(g.flags & DLV_SMTP_EXT_AUTH);
    assert_false(g.flags & DLV_SMTP_EXT_AUTH_PLAIN);
    ext(&g, "SIZE");
    assert_int_equal(g.size, 0);
    ext(&g, "SIZE 99999999999999999999999");
    assert_int_equal(g.size, 0); /* absurd: no limit rather than a wrong one */
    (void)state;
}

static void test_status_from_code(void **state)
{
    char s[8];
    dlv_smtp_status_from_code(250, s);
    assert_string_equal(s, "2.0.0");
    dlv_smtp_status_from_code(421, s);
    assert_string_equal(s, "4.0.0");
    dlv_smtp_status_from_code(554, s);
    assert_string_equal(s, "5.0.0");
    dlv_smtp_status_from_code(354, s);
    assert_string_equal(s, "4.0.0");
    (void)state;
}

static void test_auth_file(void **state)
{
    char u[64], p[64];
    const char *t = "# smarthost\n\n  alice   s3cret with spaces \r\nbob x\n";
    assert_int_equal(dlv_smtp_auth_parse(t, strlen(t), u, sizeof(u), p, sizeof(p)), 0);
    assert_string_equal(u, "alice");
    assert_string_equal(p, "s3cret with spaces");
    assert_int_equal(dlv_smtp_auth_parse("alice\n", 6, u, sizeof(u), p, sizeof(p)), -EINVAL);
    assert_int_equal(dlv_smtp_auth_parse("# only\n", 7, u, sizeof(u), p, sizeof(p)), -EINVAL);
    assert_int_equal(dlv_smtp_auth_parse("", 0, u, sizeof(u), p, sizeof(p)), -EINVAL);
    assert_int_equal(dlv_smtp_auth_parse("a b", 3, u, 1, p, sizeof(p)), -EINVAL);
    assert_int_equal(dlv_smtp_auth_parse("a b\0c", 5, u, sizeof(u), p, sizeof(p)), -EINVAL);
    (void)state;
}

/* Stuffs in, chunked every `step` bytes, and returns the whole output. */
static size_t stuff_all(const char *in, size_t len, size_t step, char *out)
{
    int st = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        o += dlv_smtp_stuff(&st, in + i, n, out + o);
    }
    o += dlv_smtp_stuff_end(&st, out + o);
    return o;
}

static void check_stuff(const char *in, const char *want)
{
    char out[512];
    for (size_t step = 1; step <= strlen(in) + 1; step++) {
        size_t n = stuff_all(in, strlen(in), step, out);
        out[n] = '\0';
        assert_string_equal(out, want);
    }
}

static void test_dot_stuffing(void **state)
{
    check_stuff("", ".\r\n");
    check_stuff("a\r\n", "a\r\n.\r\n");
    check_stuff(".\r\n", "..\r\n.\r\n");
    check_stuff(".a\r\n..b\r\nc.\r\n", "..a\r\n...b\r\nc.\r\n.\r\n");
    check_stuff("x\r\n.\r\n.\r\n", "x\r\n..\r\n..\r\n.\r\n");
    /* No final line end: one is added before the dot. */
    check_stuff("abc", "abc\r\n.\r\n");
    check_stuff(".", "..\r\n.\r\n");
    /* Bare LF and bare CR go out as CRLF, and a dot after them is stuffed. */
    check_stuff("a\n.b\rc\r", "a\r\n..b\r\nc\r\n.\r\n");
    check_stuff("a\r\r\n.", "a\r\n\r\n..\r\n.\r\n");
    /* 8-bit bytes pass. */
    check_stuff("\xc3\xa9\r\n", "\xc3\xa9\r\n.\r\n");

    /* The documented bound holds for the worst case. */
    char in[64], out[2 * 64 + 2];
    for (size_t i = 0; i < sizeof(in); i += 2) {
        in[i] = '\r';
        in[i + 1] = '.';
    }
    int st = 2; /* a CR pending from the chunk before */
    size_t n = dlv_smtp_stuff(&st, in, sizeof(in), out);
    assert_true(n <= 2 * sizeof(in) + 2);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line),      cmocka_unit_test(test_multi_line),
        cmocka_unit_test(test_bad_replies),      cmocka_unit_test(test_sanitize_and_bound),
        cmocka_unit_test(test_next_line),        cmocka_unit_test(test_ehlo_keywords),
        cmocka_unit_test(test_status_from_code), cmocka_unit_test(test_auth_file),
        cmocka_unit_test(test_dot_stuffing),
    };
    return cmocka_run_group_tests_name("smtp_client_reply", tests, NULL, NULL);
}
