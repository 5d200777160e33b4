/*
 * test_smtp_params.c - smtp_mail_args_parse / smtp_rcpt_args_parse
 * (smtpd/smtp_params.c): ESMTP parameters of MAIL and RCPT, duplicates,
 * unknown keywords, the SMTPUTF8 rule and where *bad points.
 *
 * Every input is copied into a malloc'd buffer of exactly its length, not
 * NUL-terminated, so that ASan reports any read past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/smtp_parse.h"

#define L(s) s, sizeof(s) - 1

static char *exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* ---- MAIL ------------------------------------------------------------- */

static const struct mail_case {
    const char *in;
    size_t len;
    smtp_perr err;
    long bad;         /* expected offset of *bad on error */
    const char *from; /* expected on success */
    uint64_t size;
    bool has_size;
    enum smtp_body body;
    bool utf8;
    enum smtp_ret ret;
    const char *envid;
    const char *auth;
} mail_cases[] = {
#define MERR(in, err, bad)                                                                         \
    {                                                                                              \
        in, err, bad, NULL, 0, false, 0, false, 0, NULL, NULL                                      \
    }
    {L("<a@b.test>"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0, "", ""},
    {L("<>"), SMTP_POK, 0, "", 0, false, 0, false, 0, "", ""},
    {L("<> SIZE=0"), SMTP_POK, 0, "", 0, true, 0, false, 0, "", ""},
    {L("<a@b.test> SIZE=1000"), SMTP_POK, 0, "a@b.test", 1000, true, 0, false, 0, "", ""},
    {L("<a@b.test> size=000123"), SMTP_POK, 0, "a@b.test", 123, true, 0, false, 0, "", ""},
    {L("<a@b.test> SIZE=18446744073709551615"), SMTP_POK, 0, "a@b.test", UINT64_MAX, true, 0, false,
     0, "", ""},
    MERR(L("<a@b.test> SIZE=18446744073709551616"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=99999999999999999999999999"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=-1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=+1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=1k"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=0x10"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE="), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE =1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE= 1"), SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> BODY=7BIT"), SMTP_POK, 0, "a@b.test", 0, false, SMTP_BODY_7BIT, false, 0, "",
     ""},
    {L("<a@b.test> body=8bitmime"), SMTP_POK, 0, "a@b.test", 0, false, SMTP_BODY_8BITMIME, false, 0,
     "", ""},
    {L("<a@b.test> Body=BinaryMIME"), SMTP_POK, 0, "a@b.test", 0, false, SMTP_BODY_BINARYMIME,
     false, 0, "", ""},
    MERR(L("<a@b.test> BODY=8BIT"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> BODY=8BITMIMEX"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> BODY="), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> BODY"), SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> SMTPUTF8"), SMTP_POK, 0, "a@b.test", 0, false, 0, true, 0, "", ""},
    {L("<a@b.test> smtputf8"), SMTP_POK, 0, "a@b.test", 0, false, 0, true, 0, "", ""},
    MERR(L("<a@b.test> SMTPUTF8=YES"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SMTPUTF8="), SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> RET=FULL"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, SMTP_RET_FULL, "", ""},
    {L("<a@b.test> ret=hdrs"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, SMTP_RET_HDRS, "", ""},
    MERR(L("<a@b.test> RET=NONE"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> RET"), SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> ENVID=QQ314159"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0, "QQ314159",
     ""},
    {L("<a@b.test> ENVID=abc+2Bdef+3D"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0,
     "abc+2Bdef+3D", ""},
    MERR(L("<a@b.test> ENVID=abc+2b"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> ENVID=a+"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> ENVID=a+4"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> ENVID=a+GG"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> ENVID="), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> ENVID"), SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> AUTH=<>"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0, "", "<>"},
    {L("<a@b.test> AUTH=user+40example.test"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0, "",
     "user+40example.test"},
    {L("<a@b.test> AUTH=e+3Dmc2@example.test"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0, "",
     "e+3Dmc2@example.test"},
    MERR(L("<a@b.test> AUTH=a+zz"), SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> AUTH=<x>"), SMTP_POK, 0, "a@b.test", 0, false, 0, false, 0, "", "<x>"},
    MERR(L("<a@b.test> AUTH="), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> AUTH"), SMTP_PERR_PARAM_SYNTAX, 11),
    /* Everything together, any case, extra spaces. */
    {L("<a@b.test>   SIZE=42   body=8BITMIME SMTPUTF8  RET=HDRS ENVID=x AUTH=<>  "), SMTP_POK, 0,
     "a@b.test", 42, true, SMTP_BODY_8BITMIME, true, SMTP_RET_HDRS, "x", "<>"},
    {L("<> SMTPUTF8 BODY=8BITMIME SIZE=7"), SMTP_POK, 0, "", 7, true, SMTP_BODY_8BITMIME, true, 0,
     "", ""},
    /* Unknown keywords, including RCPT's and ones of unoffered extensions. */
    MERR(L("<a@b.test> FOO=bar"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> FOO"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> X-FOO=1"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> NOTIFY=NEVER"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> ORCPT=rfc822;a@b.test"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> REQUIRETLS"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> SIZE=1 FOO"), SMTP_PERR_PARAM_UNKNOWN, 18),
    MERR(L("<a@b.test> SIZES=1"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> SIZ=1"), SMTP_PERR_PARAM_UNKNOWN, 11),
    MERR(L("<a@b.test> FOO SIZE=x"), SMTP_PERR_PARAM_UNKNOWN, 11),
    /* Broken keyword or value syntax. */
    MERR(L("<a@b.test> =1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> -X=1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> S_Z=1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=1=2"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=1\x01"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=1\0"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE\0=1"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> ENVID=\xc3\xa9"), SMTP_PERR_PARAM_SYNTAX, 11),
    MERR(L("<a@b.test> SIZE=1 \t"), SMTP_PERR_PARAM_SYNTAX, 18),
    MERR(L("<a@b.test> SIZE=1\r\n"), SMTP_PERR_PARAM_SYNTAX, 11),
    /* Duplicates, whatever the case or value. */
    MERR(L("<a@b.test> SIZE=1 SIZE=2"), SMTP_PERR_PARAM_DUP, 18),
    MERR(L("<a@b.test> SIZE=1 size=1"), SMTP_PERR_PARAM_DUP, 18),
    MERR(L("<a@b.test> SIZE=1 SIZE=x"), SMTP_PERR_PARAM_DUP, 18),
    MERR(L("<a@b.test> SMTPUTF8 smtputf8"), SMTP_PERR_PARAM_DUP, 20),
    MERR(L("<a@b.test> BODY=7BIT BODY=8BITMIME"), SMTP_PERR_PARAM_DUP, 21),
    MERR(L("<a@b.test> RET=FULL RET=FULL"), SMTP_PERR_PARAM_DUP, 20),
    MERR(L("<a@b.test> ENVID=a ENVID=b"), SMTP_PERR_PARAM_DUP, 19),
    MERR(L("<a@b.test> AUTH=<> AUTH=<>"), SMTP_PERR_PARAM_DUP, 19),
    /* No space between path and parameters. */
    MERR(L("<a@b.test>SIZE=1"), SMTP_PERR_SYNTAX, 10),
    MERR(L("<>SIZE=1"), SMTP_PERR_SYNTAX, 2),
    MERR(L("<a@b.test>\tSIZE=1"), SMTP_PERR_SYNTAX, 10),
    MERR(L("<a@b.test>>"), SMTP_PERR_SYNTAX, 10),
    /* Path errors point at the path. */
    MERR(L(""), SMTP_PERR_ADDR_SYNTAX, 0),
    MERR(L("a@b.test"), SMTP_PERR_ADDR_SYNTAX, 0),
    MERR(L("a@b.test SIZE=1"), SMTP_PERR_ADDR_SYNTAX, 0),
    MERR(L("<a@b.test.>"), SMTP_PERR_ADDR_SYNTAX, 0),
    MERR(L("<postmaster>"), SMTP_PERR_ADDR_SYNTAX, 0),
    MERR(L(" <a@b.test>"), SMTP_PERR_ADDR_SYNTAX, 0),
    /* SMTPUTF8 (RFC 6531 3.4): a non-ASCII path needs the parameter. */
    MERR(L("<j\xc3\xb6ran@b.test>"), SMTP_PERR_UTF8_NOT_DECLARED, 0),
    MERR(L("<a@b\xc3\xbc"
           "cher.test> SIZE=1"),
         SMTP_PERR_UTF8_NOT_DECLARED, 0),
    {L("<j\xc3\xb6ran@b.test> SMTPUTF8"), SMTP_POK, 0, "j\xc3\xb6ran@b.test", 0, false, 0, true, 0,
     "", ""},
    {L("<j\xc3\xb6ran@b.test> SIZE=1 SMTPUTF8"), SMTP_POK, 0, "j\xc3\xb6ran@b.test", 1, true, 0,
     true, 0, "", ""},
    MERR(L("<j\xc3\xb6ran@b.test> FOO"), SMTP_PERR_PARAM_UNKNOWN, 16),
    MERR(L("<j\xc3\xb6ran\xff@b.test> SMTPUTF8"), SMTP_PERR_ADDR_SYNTAX, 0),
};

static void test_mail_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mail_cases / sizeof mail_cases[0]; i++) {
        const struct mail_case *c = &mail_cases[i];
        char *buf = exact(c->in, c->len);
        smtp_mail_args a;
        memset(&a, 0x5a, sizeof a);
        const char *bad = NULL;
        smtp_perr r = smtp_mail_args_parse(buf, c->len, &a, &bad);
        if (r != c->err)
            fail_msg("case %zu \"%.*s\": err %d want %d", i, (int)c->len, c->in, r, c->err);
        if (r != SMTP_POK) {
            assert_non_null(bad);
            if (bad - buf != c->bad)
                fail_msg("case %zu \"%.*s\": bad at %ld want %ld", i, (int)c->len, c->in,
                         (long)(bad - buf), c->bad);
            /* Also without a bad pointer. */
            assert_int_equal(smtp_mail_args_parse(buf, c->len, &a, NULL), c->err);
        } else {
            assert_string_equal(a.from.addr, c->from);
            assert_int_equal(a.from.is_null, c->from[0] == '\0');
            assert_int_equal(a.has_size, c->has_size);
            assert_true(a.size == c->size);
            assert_int_equal(a.body, c->body);
            assert_int_equal(a.smtputf8, c->utf8);
            assert_int_equal(a.ret, c->ret);
            assert_string_equal(a.envid, c->envid);
            assert_string_equal(a.auth, c->auth);
        }
        free(buf);
    }
}

static void test_mail_value_limits(void **state)
{
    (void)state;
    char s[1200];
    smtp_mail_args a;
    const char *bad;

    /* ENVID: 100 characters as sent (still encoded), RFC 3461 4.4. */
    memcpy(s, "<a@b.test> ENVID=", 17);
    memset(s + 17, 'e', 100);
    int n = 17 + 100;
    char *buf = exact(s, (size_t)n);
    assert_int_equal(smtp_mail_args_parse(buf, (size_t)n, &a, &bad), SMTP_POK);
    assert_int_equal(strlen(a.envid), 100);
    free(buf);
    s[n++] = 'e';
    buf = exact(s, (size_t)n);
    assert_int_equal(smtp_mail_args_parse(buf, (size_t)n, &a, &bad), SMTP_PERR_PARAM_SYNTAX);
    assert_ptr_equal(bad, buf + 11);
    free(buf);
    /* Encoded "+2B" counts three. */
    memcpy(s + 17, "+2B", 3);
    n = 17 + 100;
    buf = exact(s, (size_t)n);
    assert_int_equal(smtp_mail_args_parse(buf, (size_t)n, &a, &bad), SMTP_POK);
    free(buf);

    /* AUTH: as much as out->auth holds. */
    size_t max = sizeof a.auth - 1;
    memcpy(s, "<a@b.test> AUTH=", 16);
    memset(s + 16, 'u', max + 1);
    buf = exact(s, 16 + max);
    assert_int_equal(smtp_mail_args_parse(buf, 16 + max, &a, &bad), SMTP_POK);
    assert_int_equal(strlen(a.auth), max);
    free(buf);
    buf = exact(s, 16 + max + 1);
    assert_int_equal(smtp_mail_args_parse(buf, 16 + max + 1, &a, &bad), SMTP_PERR_PARAM_SYNTAX);
    free(buf);
}

static void test_mail_every_prefix(void **state)
{
    /* Truncated lines: never a read past the end, never a crash. */
    (void)state;
    static const char line[] = "<@r.test:j\xc3\xb6ran@[IPv6:2001:db8::1]> SIZE=12 BODY=8BITMIME "
                               "SMTPUTF8 RET=HDRS ENVID=a+2Bb AUTH=<>";
    for (size_t k = 0; k <= sizeof line - 1; k++) {
        char *buf = exact(line, k);
        smtp_mail_args a;
        const char *bad = NULL;
        smtp_perr r = smtp_mail_args_parse(buf, k, &a, &bad);
        if (r != SMTP_POK)
            assert_true(bad >= buf && bad <= buf + k);
        free(buf);
    }
}

/* ---- RCPT ------------------------------------------------------------- */

#define N_ SMTP_NOTIFY_NEVER
#define S_ SMTP_NOTIFY_SUCCESS
#define F_ SMTP_NOTIFY_FAILURE
#define D_ SMTP_NOTIFY_DELAY

static const struct rcpt_case {
    const char *in;
    size_t len;
    bool utf8;
    smtp_perr err;
    long bad;
    const char *to;
    unsigned notify;
    const char *orcpt;
} rcpt_cases[] = {
#define RERR(in, utf8, err, bad)                                                                   \
    {                                                                                              \
        in, utf8, err, bad, NULL, 0, NULL                                                          \
    }
    {L("<a@b.test>"), false, SMTP_POK, 0, "a@b.test", 0, ""},
    {L("<postmaster>"), false, SMTP_POK, 0, "postmaster", 0, ""},
    {L("<Postmaster> NOTIFY=NEVER"), false, SMTP_POK, 0, "Postmaster", N_, ""},
    RERR(L("<>"), false, SMTP_PERR_ADDR_SYNTAX, 0),
    RERR(L(""), false, SMTP_PERR_ADDR_SYNTAX, 0),
    {L("<a@b.test> NOTIFY=NEVER"), false, SMTP_POK, 0, "a@b.test", N_, ""},
    {L("<a@b.test> notify=never"), false, SMTP_POK, 0, "a@b.test", N_, ""},
    {L("<a@b.test> NOTIFY=SUCCESS"), false, SMTP_POK, 0, "a@b.test", S_, ""},
    {L("<a@b.test> NOTIFY=SUCCESS,FAILURE,DELAY"), false, SMTP_POK, 0, "a@b.test", S_ | F_ | D_,
     ""},
    {L("<a@b.test> NOTIFY=delay,Success"), false, SMTP_POK, 0, "a@b.test", S_ | D_, ""},
    {L("<a@b.test> NOTIFY=FAILURE"), false, SMTP_POK, 0, "a@b.test", F_, ""},
    RERR(L("<a@b.test> NOTIFY=NEVER,SUCCESS"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=DELAY,NEVER"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=NEVER,NEVER"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=SUCCESS,SUCCESS"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=SUCCESS,success"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY="), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=,"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=SUCCESS,"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=,SUCCESS"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=SUCCESS,,DELAY"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=FOO"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=SUCCES"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> NOTIFY=SUCCESS;DELAY"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> ORCPT=rfc822;a+40b.test"), false, SMTP_POK, 0, "a@b.test", 0,
     "rfc822;a+40b.test"},
    {L("<a@b.test> ORCPT=RFC822;user@example.test"), false, SMTP_POK, 0, "a@b.test", 0,
     "RFC822;user@example.test"},
    {L("<a@b.test> ORCPT=rfc822;"), false, SMTP_POK, 0, "a@b.test", 0, "rfc822;"},
    {L("<a@b.test> ORCPT=x-local;a+2Bb"), false, SMTP_POK, 0, "a@b.test", 0, "x-local;a+2Bb"},
    {L("<a@b.test> ORCPT=utf-8;j\\x{F6}ran@b.test"), false, SMTP_POK, 0, "a@b.test", 0,
     "utf-8;j\\x{F6}ran@b.test"},
    {L("<a@b.test> ORCPT=rfc822;a;b"), false, SMTP_POK, 0, "a@b.test", 0, "rfc822;a;b"},
    RERR(L("<a@b.test> ORCPT=rfc822"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT=;a@b.test"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT=rfc822;a+4"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT=rfc822;a+4a"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT=rf(c;x"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT=rf.c;x"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT="), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    RERR(L("<a@b.test> ORCPT=rfc822;a\xc3\xa9"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    {L("<a@b.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a@b.test"), false, SMTP_POK, 0, "a@b.test",
     S_ | D_, "rfc822;a@b.test"},
    {L("<a@b.test>   ORCPT=rfc822;x   NOTIFY=NEVER   "), false, SMTP_POK, 0, "a@b.test", N_,
     "rfc822;x"},
    RERR(L("<a@b.test> NOTIFY=NEVER NOTIFY=NEVER"), false, SMTP_PERR_PARAM_DUP, 24),
    RERR(L("<a@b.test> NOTIFY=NEVER notify=SUCCESS"), false, SMTP_PERR_PARAM_DUP, 24),
    RERR(L("<a@b.test> ORCPT=rfc822;a ORCPT=rfc822;a"), false, SMTP_PERR_PARAM_DUP, 26),
    RERR(L("<a@b.test> SIZE=1"), false, SMTP_PERR_PARAM_UNKNOWN, 11),
    RERR(L("<a@b.test> SMTPUTF8"), false, SMTP_PERR_PARAM_UNKNOWN, 11),
    RERR(L("<a@b.test> BODY=8BITMIME"), false, SMTP_PERR_PARAM_UNKNOWN, 11),
    RERR(L("<a@b.test> XFOO"), false, SMTP_PERR_PARAM_UNKNOWN, 11),
    RERR(L("<a@b.test>NOTIFY=NEVER"), false, SMTP_PERR_SYNTAX, 10),
    RERR(L("<a@b.test> NOTIFY=NEVER=1"), false, SMTP_PERR_PARAM_SYNTAX, 11),
    /* Relay-hack forms parse; the policy judges them. */
    {L("<user%other@local.test>"), false, SMTP_POK, 0, "user%other@local.test", 0, ""},
    {L("<@route.test:user@other.test>"), false, SMTP_POK, 0, "user@other.test", 0, ""},
    {L("<\"user@other\"@local.test>"), false, SMTP_POK, 0, "\"user@other\"@local.test", 0, ""},
    RERR(L("<user@other@local.test>"), false, SMTP_PERR_ADDR_SYNTAX, 0),
    RERR(L("<user@local.test.>"), false, SMTP_PERR_ADDR_SYNTAX, 0),
    /* SMTPUTF8 comes from the transaction (MAIL FROM). */
    RERR(L("<j\xc3\xb6ran@b.test>"), false, SMTP_PERR_UTF8_NOT_DECLARED, 0),
    {L("<j\xc3\xb6ran@b.test>"), true, SMTP_POK, 0, "j\xc3\xb6ran@b.test", 0, ""},
    {L("<a@b.test>"), true, SMTP_POK, 0, "a@b.test", 0, ""},
    RERR(L("<j\xc3\xb6ran@b.test> NOTIFY=BAD"), false, SMTP_PERR_PARAM_SYNTAX, 16),
};

static void test_rcpt_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rcpt_cases / sizeof rcpt_cases[0]; i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        char *buf = exact(c->in, c->len);
        smtp_rcpt_args a;
        memset(&a, 0x5a, sizeof a);
        const char *bad = NULL;
        smtp_perr r = smtp_rcpt_args_parse(buf, c->len, c->utf8, &a, &bad);
        if (r != c->err)
            fail_msg("case %zu \"%.*s\": err %d want %d", i, (int)c->len, c->in, r, c->err);
        if (r != SMTP_POK) {
            assert_non_null(bad);
            if (bad - buf != c->bad)
                fail_msg("case %zu \"%.*s\": bad at %ld want %ld", i, (int)c->len, c->in,
                         (long)(bad - buf), c->bad);
            assert_int_equal(smtp_rcpt_args_parse(buf, c->len, c->utf8, &a, NULL), c->err);
        } else {
            assert_string_equal(a.to.addr, c->to);
            assert_int_equal(a.notify, c->notify);
            assert_string_equal(a.orcpt, c->orcpt);
        }
        free(buf);
    }
}

static void test_rcpt_orcpt_limit(void **state)
{
    /* RFC 3461 4.2: the whole "type;xtext" value at most 500 characters. */
    (void)state;
    char s[700];
    smtp_rcpt_args a;
    const char *bad;
    memcpy(s, "<a@b.test> ORCPT=rfc822;", 24);
    size_t head = 17; /* value starts here */
    size_t n = head + 500;
    memset(s + 24, 'x', sizeof s - 24);
    char *buf = exact(s, n);
    assert_int_equal(smtp_rcpt_args_parse(buf, n, false, &a, &bad), SMTP_POK);
    assert_int_equal(strlen(a.orcpt), 500);
    free(buf);
    buf = exact(s, n + 1);
    assert_int_equal(smtp_rcpt_args_parse(buf, n + 1, false, &a, &bad), SMTP_PERR_PARAM_SYNTAX);
    assert_ptr_equal(bad, buf + 11);
    free(buf);
}

static void test_rcpt_every_prefix(void **state)
{
    (void)state;
    static const char line[] = "<@r.test:\"a b\"@[192.0.2.1]> NOTIFY=SUCCESS,DELAY "
                               "ORCPT=rfc822;a+40b.test";
    for (size_t k = 0; k <= sizeof line - 1; k++) {
        char *buf = exact(line, k);
        smtp_rcpt_args a;
        const char *bad = NULL;
        smtp_perr r = smtp_rcpt_args_parse(buf, k, true, &a, &bad);
        if (r != SMTP_POK)
            assert_true(bad >= buf && bad <= buf + k);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mail_table),        cmocka_unit_test(test_mail_value_limits),
        cmocka_unit_test(test_mail_every_prefix), cmocka_unit_test(test_rcpt_table),
        cmocka_unit_test(test_rcpt_orcpt_limit),  cmocka_unit_test(test_rcpt_every_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
