/*
 * test_smtp_parse.c - command line splitting, BDAT and HELO arguments, xtext
 * and UTF-8 (smtpd/smtp_parse.c). Paths: test_smtp_path.c; MAIL/RCPT
 * parameters: test_smtp_params.c.
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

/* A literal and its length, embedded NULs included. */
#define L(s) s, sizeof(s) - 1

static char *exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

/* ---- smtp_cmd_parse ---------------------------------------------------- */

static const struct cmd_case {
    const char *in;
    size_t len;
    smtp_perr err;
    smtp_verb verb;
    const char *arg; /* expected argument, NULL: empty */
    size_t arg_len;
} cmd_cases[] = {
    {L("HELO client.example.test"), SMTP_POK, SMTP_VERB_HELO, L("client.example.test")},
    {L("helo x"), SMTP_POK, SMTP_VERB_HELO, L("x")},
    {L("EhLo mail.example.test"), SMTP_POK, SMTP_VERB_EHLO, L("mail.example.test")},
    {L("EHLO"), SMTP_POK, SMTP_VERB_EHLO, NULL, 0},
    {L("EHLO "), SMTP_POK, SMTP_VERB_EHLO, NULL, 0},
    {L("HELO   x   "), SMTP_POK, SMTP_VERB_HELO, L("x")},
    {L("HELO a b"), SMTP_POK, SMTP_VERB_HELO, L("a b")},
    {L("MAIL FROM:<a@b.test>"), SMTP_POK, SMTP_VERB_MAIL, L("<a@b.test>")},
    {L("mail from:<a@b.test>"), SMTP_POK, SMTP_VERB_MAIL, L("<a@b.test>")},
    {L("Mail From:<a@b.test>"), SMTP_POK, SMTP_VERB_MAIL, L("<a@b.test>")},
    {L("MAIL FROM: <a@b.test>"), SMTP_POK, SMTP_VERB_MAIL, L("<a@b.test>")},
    {L("MAIL FROM:   <a@b.test>"), SMTP_POK, SMTP_VERB_MAIL, L("<a@b.test>")},
    {L("MAIL  FROM:<a@b.test>"), SMTP_POK, SMTP_VERB_MAIL, L("<a@b.test>")},
    {L("MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME  "), SMTP_POK, SMTP_VERB_MAIL,
     L("<a@b.test> SIZE=10 BODY=8BITMIME")},
    {L("MAIL FROM:<>"), SMTP_POK, SMTP_VERB_MAIL, L("<>")},
    {L("MAIL FROM:"), SMTP_POK, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FROM:   "), SMTP_POK, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FROM:a@b.test"), SMTP_POK, SMTP_VERB_MAIL, L("a@b.test")}, /* path parser refuses */
    {L("MAIL"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL "), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FROM"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FROM <a@b.test>"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FROM :<a@b.test>"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL TO:<a@b.test>"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FRO"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAIL FROMX:<a@b.test>"), SMTP_PERR_SYNTAX, SMTP_VERB_MAIL, NULL, 0},
    {L("MAILFROM:<a@b.test>"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("RCPT TO:<a@b.test>"), SMTP_POK, SMTP_VERB_RCPT, L("<a@b.test>")},
    {L("rcpt to: <a@b.test> NOTIFY=NEVER"), SMTP_POK, SMTP_VERB_RCPT, L("<a@b.test> NOTIFY=NEVER")},
    {L("RcPt tO:<postmaster>"), SMTP_POK, SMTP_VERB_RCPT, L("<postmaster>")},
    {L("RCPT"), SMTP_PERR_SYNTAX, SMTP_VERB_RCPT, NULL, 0},
    {L("RCPT TO"), SMTP_PERR_SYNTAX, SMTP_VERB_RCPT, NULL, 0},
    {L("RCPT T"), SMTP_PERR_SYNTAX, SMTP_VERB_RCPT, NULL, 0},
    {L("RCPT FROM:<a@b.test>"), SMTP_PERR_SYNTAX, SMTP_VERB_RCPT, NULL, 0},
    {L("RCPT TO:"), SMTP_POK, SMTP_VERB_RCPT, NULL, 0},
    {L("DATA"), SMTP_POK, SMTP_VERB_DATA, NULL, 0},
    {L("data"), SMTP_POK, SMTP_VERB_DATA, NULL, 0},
    {L("DATA "), SMTP_POK, SMTP_VERB_DATA, NULL, 0},
    {L("DATA junk"), SMTP_POK, SMTP_VERB_DATA, L("junk")},
    {L("DATAX"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("DAT"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("DATA\tx"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("BDAT 100 LAST"), SMTP_POK, SMTP_VERB_BDAT, L("100 LAST")},
    {L("bdat 0"), SMTP_POK, SMTP_VERB_BDAT, L("0")},
    {L("RSET"), SMTP_POK, SMTP_VERB_RSET, NULL, 0},
    {L("RSET x"), SMTP_POK, SMTP_VERB_RSET, L("x")},
    {L("NOOP"), SMTP_POK, SMTP_VERB_NOOP, NULL, 0},
    {L("noop anything at all"), SMTP_POK, SMTP_VERB_NOOP, L("anything at all")},
    {L("QUIT"), SMTP_POK, SMTP_VERB_QUIT, NULL, 0},
    {L("QUIT now"), SMTP_POK, SMTP_VERB_QUIT, L("now")},
    {L("VRFY user"), SMTP_POK, SMTP_VERB_VRFY, L("user")},
    {L("EXPN list"), SMTP_POK, SMTP_VERB_EXPN, L("list")},
    {L("HELP"), SMTP_POK, SMTP_VERB_HELP, NULL, 0},
    {L("HELP MAIL"), SMTP_POK, SMTP_VERB_HELP, L("MAIL")},
    {L("STARTTLS"), SMTP_POK, SMTP_VERB_STARTTLS, NULL, 0},
    {L("starttls"), SMTP_POK, SMTP_VERB_STARTTLS, NULL, 0},
    {L("STARTTLS x"), SMTP_POK, SMTP_VERB_STARTTLS, L("x")},
    {L("STARTTLSX"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("STARTTL"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("AUTH PLAIN dGVzdAB0ZXN0AHBhc3M="), SMTP_POK, SMTP_VERB_AUTH,
     L("PLAIN dGVzdAB0ZXN0AHBhc3M=")},
    {L("AUTH LOGIN"), SMTP_POK, SMTP_VERB_AUTH, L("LOGIN")},
    {L(""), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L(" "), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L(" HELO x"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("FOO bar"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("HEL"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("GET / HTTP/1.1"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("HELO\0x"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    {L("\xc3\xa9HLO x"), SMTP_POK, SMTP_VERB_UNKNOWN, NULL, 0},
    /* Arguments are passed through verbatim, NUL and 8-bit included. */
    {L("NOOP \0x"), SMTP_POK, SMTP_VERB_NOOP, L("\0x")},
    {L("VRFY \xc3\xa9"), SMTP_POK, SMTP_VERB_VRFY, L("\xc3\xa9")},
};

static void test_cmd_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cmd_cases / sizeof cmd_cases[0]; i++) {
        const struct cmd_case *c = &cmd_cases[i];
        char *buf = exact(c->in, c->len);
        smtp_cmd cmd;
        smtp_perr r = smtp_cmd_parse(buf, c->len, &cmd);
        if (r != c->err || cmd.verb != c->verb)
            fail_msg("case %zu \"%.*s\": err %d verb %d, want err %d verb %d", i, (int)c->len,
                     c->in, r, cmd.verb, c->err, c->verb);
        if (r == SMTP_POK) {
            assert_non_null(cmd.arg);
            assert_true(cmd.arg >= buf && cmd.arg + cmd.arg_len <= buf + c->len);
            if (cmd.arg_len != c->arg_len || memcmp(cmd.arg, c->arg ? c->arg : "", c->arg_len))
                fail_msg("case %zu \"%.*s\": arg \"%.*s\"", i, (int)c->len, c->in, (int)cmd.arg_len,
                         cmd.arg);
        }
        free(buf);
    }
}

static void test_cmd_every_prefix(void **state)
{
    /* Truncations of real lines must never read past their end. */
    (void)state;
    static const char *lines[] = {"MAIL FROM: <a@b.test> SIZE=1", "RCPT TO:<x@y.test>", "STARTTLS",
                                  "BDAT 10 LAST", "EHLO x.test"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        size_t n = strlen(lines[i]);
        for (size_t k = 0; k <= n; k++) {
            char *buf = exact(lines[i], k);
            smtp_cmd cmd;
            (void)smtp_cmd_parse(buf, k, &cmd);
            assert_true(cmd.arg_len <= k);
            free(buf);
        }
    }
}

/* ---- smtp_bdat_args_parse --------------------------------------------- */

static const struct bdat_case {
    const char *in;
    size_t len;
    smtp_perr err;
    uint64_t size;
    bool last;
} bdat_cases[] = {
    {L("100"), SMTP_POK, 100, false},
    {L("100 LAST"), SMTP_POK, 100, true},
    {L("0 last"), SMTP_POK, 0, true},
    {L("0"), SMTP_POK, 0, false},
    {L("007 Last"), SMTP_POK, 7, true},
    {L("  100   LAST  "), SMTP_POK, 100, true},
    {L("100 "), SMTP_POK, 100, false},
    {L("18446744073709551615"), SMTP_POK, UINT64_MAX, false},
    {L("18446744073709551615 LAST"), SMTP_POK, UINT64_MAX, true},
    {L("18446744073709551616"), SMTP_PERR_SYNTAX, 0, false},
    {L("99999999999999999999999"), SMTP_PERR_SYNTAX, 0, false},
    {L(""), SMTP_PERR_SYNTAX, 0, false},
    {L(" "), SMTP_PERR_SYNTAX, 0, false},
    {L("LAST"), SMTP_PERR_SYNTAX, 0, false},
    {L("-1"), SMTP_PERR_SYNTAX, 0, false},
    {L("+1"), SMTP_PERR_SYNTAX, 0, false},
    {L("0x10"), SMTP_PERR_SYNTAX, 0, false},
    {L("100x"), SMTP_PERR_SYNTAX, 0, false},
    {L("1 2"), SMTP_PERR_SYNTAX, 0, false},
    {L("100 LASTX"), SMTP_PERR_SYNTAX, 0, false},
    {L("100 LAS"), SMTP_PERR_SYNTAX, 0, false},
    {L("100 LAST x"), SMTP_PERR_SYNTAX, 0, false},
    {L("100 LAST LAST"), SMTP_PERR_SYNTAX, 0, false},
    {L("100\tLAST"), SMTP_PERR_SYNTAX, 0, false},
    {L("100\0"), SMTP_PERR_SYNTAX, 0, false},
    {L("1\xc2\xb2"), SMTP_PERR_SYNTAX, 0, false},
};

static void test_bdat_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bdat_cases / sizeof bdat_cases[0]; i++) {
        const struct bdat_case *c = &bdat_cases[i];
        char *buf = exact(c->in, c->len);
        uint64_t size = 12345;
        bool last = true;
        smtp_perr r = smtp_bdat_args_parse(buf, c->len, &size, &last);
        if (r != c->err)
            fail_msg("case %zu \"%.*s\": err %d want %d", i, (int)c->len, c->in, r, c->err);
        if (r == SMTP_POK && (size != c->size || last != c->last))
            fail_msg("case %zu: size %llu last %d", i, (unsigned long long)size, last);
        free(buf);
    }
}

/* ---- smtp_helo_parse -------------------------------------------------- */

static const struct helo_case {
    const char *in;
    size_t len;
    smtp_perr err;
} helo_cases[] = {
    {L("mail.example.test"), SMTP_POK},
    {L("x"), SMTP_POK},
    {L("localhost"), SMTP_POK},
    {L("[192.0.2.1]"), SMTP_POK},
    {L("[IPv6:2001:db8::1]"), SMTP_POK},
    {L("under_score.example"), SMTP_POK}, /* lenient, as Postfix */
    {L("trailing.dot.test."), SMTP_POK},  /* lenient */
    {L("b\xc3\xbc"
       "cher.test"),
     SMTP_POK}, /* UTF-8 */
    {L(""), SMTP_PERR_SYNTAX},
    {L("a b"), SMTP_PERR_SYNTAX},
    {L("a\tb"), SMTP_PERR_SYNTAX},
    {L("a\0b"), SMTP_PERR_SYNTAX},
    {L("a\rb"), SMTP_PERR_SYNTAX},
    {L("a\nb"), SMTP_PERR_SYNTAX},
    {L("a\x7f"), SMTP_PERR_SYNTAX},
    {L("\x01"), SMTP_PERR_SYNTAX},
    {L("\xff"), SMTP_PERR_SYNTAX},
    {L("bad\xc3"), SMTP_PERR_SYNTAX},
    {L("\xc0\xae"), SMTP_PERR_SYNTAX},
    {L("\xed\xa0\x80"), SMTP_PERR_SYNTAX},
};

static void test_helo_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof helo_cases / sizeof helo_cases[0]; i++) {
        const struct helo_case *c = &helo_cases[i];
        char *buf = exact(c->in, c->len);
        smtp_perr r = smtp_helo_parse(buf, c->len);
        if (r != c->err)
            fail_msg("case %zu \"%.*s\": err %d want %d", i, (int)c->len, c->in, r, c->err);
        free(buf);
    }
}

static void test_helo_length(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'a', sizeof name);
    char *buf = exact(name, 255);
    assert_int_equal(smtp_helo_parse(buf, 255), SMTP_POK);
    free(buf);
    buf = exact(name, 256);
    assert_int_equal(smtp_helo_parse(buf, 256), SMTP_PERR_SYNTAX);
    free(buf);
}

/* ---- xtext ------------------------------------------------------------ */

static const struct xtext_case {
    const char *in;
    size_t len;
    bool valid;
    const char *dec; /* decoded, when valid */
    size_t declen;
} xtext_cases[] = {
    {L(""), true, L("")},
    {L("abc"), true, L("abc")},
    {L("user@example.test"), true, L("user@example.test")},
    {L("a+2Bb"), true, L("a+b")},
    {L("+3D"), true, L("=")},
    {L("+20+09"), true, L(" \t")},
    {L("+00"), true, L("\0")},
    {L("+FF"), true, L("\xff")},
    {L("!~"), true, L("!~")},
    {L("<>"), true, L("<>")},
    {L("+"), false, NULL, 0},
    {L("+2"), false, NULL, 0},
    {L("a+"), false, NULL, 0},
    {L("+2b"), false, NULL, 0}, /* RFC 3461: upper-case hex only */
    {L("+ab"), false, NULL, 0},
    {L("+GG"), false, NULL, 0},
    {L("+-1"), false, NULL, 0},
    {L("="), false, NULL, 0},
    {L("a=b"), false, NULL, 0},
    {L("a b"), false, NULL, 0},
    {L("a\tb"), false, NULL, 0},
    {L("\x7f"), false, NULL, 0},
    {L("\x80"), false, NULL, 0},
    {L("\xc3\xa9"), false, NULL, 0},
    {L("a\0"), false, NULL, 0},
    {L("a\r\n"), false, NULL, 0},
};

static void test_xtext_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof xtext_cases / sizeof xtext_cases[0]; i++) {
        const struct xtext_case *c = &xtext_cases[i];
        char *buf = exact(c->in, c->len);
        if (smtp_xtext_valid(buf, c->len) != c->valid)
            fail_msg("case %zu \"%.*s\": valid != %d", i, (int)c->len, c->in, c->valid);
        char out[64];
        memset(out, 'X', sizeof out);
        long n = smtp_xtext_decode(buf, c->len, out, sizeof out);
        if (c->valid) {
            assert_int_equal(n, (long)c->declen);
            assert_memory_equal(out, c->dec, c->declen);
            assert_int_equal(out[n], '\0');
        } else {
            assert_int_equal(n, -1);
            assert_int_equal(out[0], '\0');
        }
        free(buf);
    }
}

static void test_xtext_decode_bounds(void **state)
{
    (void)state;
    char out[8];
    char *buf = exact(L("abc+2B"));
    /* "abc+" needs 5 bytes with the NUL. */
    assert_int_equal(smtp_xtext_decode(buf, 6, out, 5), 4);
    assert_string_equal(out, "abc+");
    assert_int_equal(smtp_xtext_decode(buf, 6, out, 4), -1);
    assert_int_equal(out[0], '\0');
    assert_int_equal(smtp_xtext_decode(buf, 6, out, 0), -1);
    assert_int_equal(smtp_xtext_decode(buf, 6, NULL, 8), -1);
    assert_int_equal(smtp_xtext_decode(buf, 0, out, 1), 0);
    assert_string_equal(out, "");
    free(buf);
}

/* ---- UTF-8 ------------------------------------------------------------ */

static const struct utf8_case {
    const char *in;
    size_t len;
    size_t want;
} utf8_cases[] = {
    {L("a"), 1},
    {L("\0"), 1},
    {L(""), 0},
    {L("\xc2\x80"), 2},             /* U+0080 */
    {L("\xc3\xa9"), 2},             /* é */
    {L("\xdf\xbf"), 2},             /* U+07FF */
    {L("\xe0\xa0\x80"), 3},         /* U+0800 */
    {L("\xe2\x82\xac"), 3},         /* € */
    {L("\xed\x9f\xbf"), 3},         /* U+D7FF */
    {L("\xee\x80\x80"), 3},         /* U+E000 */
    {L("\xef\xbf\xbf"), 3},         /* U+FFFF */
    {L("\xf0\x90\x80\x80"), 4},     /* U+10000 */
    {L("\xf0\x9f\x98\x80"), 4},     /* emoji */
    {L("\xf4\x8f\xbf\xbf"), 4},     /* U+10FFFF */
    {L("\xc3\xa9zz"), 2},           /* only the first character */
    {L("\x80"), 0},                 /* lone continuation */
    {L("\xbf"), 0},                 /* lone continuation */
    {L("\xc0\xaf"), 0},             /* overlong '/' */
    {L("\xc1\xbf"), 0},             /* overlong */
    {L("\xe0\x80\xaf"), 0},         /* overlong */
    {L("\xe0\x9f\xbf"), 0},         /* overlong */
    {L("\xf0\x80\x80\xaf"), 0},     /* overlong */
    {L("\xf0\x8f\xbf\xbf"), 0},     /* overlong */
    {L("\xed\xa0\x80"), 0},         /* surrogate U+D800 */
    {L("\xed\xbf\xbf"), 0},         /* surrogate U+DFFF */
    {L("\xf4\x90\x80\x80"), 0},     /* U+110000 */
    {L("\xf5\x80\x80\x80"), 0},     /* F5 lead */
    {L("\xf8\x88\x80\x80\x80"), 0}, /* 5-byte form */
    {L("\xfe"), 0},
    {L("\xff"), 0},
    {L("\xc3"), 0},             /* truncated */
    {L("\xe2\x82"), 0},         /* truncated */
    {L("\xf0\x9f\x98"), 0},     /* truncated */
    {L("\xc3\x41"), 0},         /* bad continuation */
    {L("\xe2\x82\x41"), 0},     /* bad continuation */
    {L("\xf0\x9f\x98\xc0"), 0}, /* bad continuation */
};

static void test_utf8_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const struct utf8_case *c = &utf8_cases[i];
        char *buf = exact(c->in, c->len);
        size_t n = smtp_utf8_seq_len(buf, c->len);
        if (n != c->want)
            fail_msg("case %zu: got %zu want %zu", i, n, c->want);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_table),           cmocka_unit_test(test_cmd_every_prefix),
        cmocka_unit_test(test_bdat_table),          cmocka_unit_test(test_helo_table),
        cmocka_unit_test(test_helo_length),         cmocka_unit_test(test_xtext_table),
        cmocka_unit_test(test_xtext_decode_bounds), cmocka_unit_test(test_utf8_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
