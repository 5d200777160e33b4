/*
 * test_smtp_path.c - smtp_path_parse (smtpd/smtp_path.c): valid paths, every
 * historical relay-hack form, address literals, limits of RFC 5321 4.5.3.1,
 * control characters and UTF-8.
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

enum { M = 1, R = 2, MR = 3 };     /* allow_null true (MAIL), false (RCPT), both */
enum { NA = 1, LIT = 2, NUL = 4 }; /* non_ascii, ip_literal, is_null */
#define NOAT ((size_t)-1)          /* at == len */

static const struct path_case {
    const char *in;
    size_t len;
    int modes;
    smtp_perr err;
    const char *addr; /* expected mailbox when SMTP_POK */
    size_t at;        /* expected index of '@', or NOAT */
    int flags;
    size_t consumed; /* 0: the whole input */
} path_cases[] = {
    /* Plain mailboxes. */
    {L("<user@example.test>"), MR, SMTP_POK, "user@example.test", 4, 0, 0},
    {L("<a@b>"), MR, SMTP_POK, "a@b", 1, 0, 0},
    {L("<User.Name+tag@Example.TEST>"), MR, SMTP_POK, "User.Name+tag@Example.TEST", 13, 0, 0},
    {L("<USER@EXAMPLE.TEST>"), MR, SMTP_POK, "USER@EXAMPLE.TEST", 4, 0, 0},
    {L("<a.b.c@x-y.example.test>"), MR, SMTP_POK, "a.b.c@x-y.example.test", 5, 0, 0},
    {L("<!#$%&'*+-/=?^_`{|}~@x.test>"), MR, SMTP_POK, "!#$%&'*+-/=?^_`{|}~@x.test", 19, 0, 0},
    {L("<user@localhost>"), MR, SMTP_POK, "user@localhost", 4, 0, 0},
    {L("<user@123abc>"), MR, SMTP_POK, "user@123abc", 4, 0, 0},
    {L("<user@1.example.test>"), MR, SMTP_POK, "user@1.example.test", 4, 0, 0},
    {L("<user@x.test>"), MR, SMTP_POK, "user@x.test", 4, 0, 0},
    /* Lenient on hyphen placement in labels. */
    {L("<user@-example.test>"), MR, SMTP_POK, "user@-example.test", 4, 0, 0},
    {L("<user@example-.test>"), MR, SMTP_POK, "user@example-.test", 4, 0, 0},
    {L("<user@xn--bcher-kva.test>"), MR, SMTP_POK, "user@xn--bcher-kva.test", 4, 0, 0},
    /* Trailing bytes are the caller's business. */
    {L("<user@x.test> SIZE=1"), MR, SMTP_POK, "user@x.test", 4, 0, 13},
    {L("<user@x.test>>"), MR, SMTP_POK, "user@x.test", 4, 0, 13},

    /* Null path and Postmaster. */
    {L("<>"), M, SMTP_POK, "", NOAT, NUL, 0},
    {L("<>"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<> SIZE=1"), M, SMTP_POK, "", NOAT, NUL, 2},
    {L("<>x"), M, SMTP_POK, "", NOAT, NUL, 2},
    {L("<postmaster>"), R, SMTP_POK, "postmaster", NOAT, 0, 0},
    {L("<Postmaster>"), R, SMTP_POK, "Postmaster", NOAT, 0, 0},
    {L("<POSTMASTER>"), R, SMTP_POK, "POSTMASTER", NOAT, 0, 0},
    {L("<postmaster>"), M, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<postmaster@example.test>"), MR, SMTP_POK, "postmaster@example.test", 10, 0, 0},
    {L("<postmastr>"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<postmasterx>"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"postmaster\">"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test:postmaster>"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<abuse>"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},

    /* Historical relay-hack forms. */
    {L("<user%other@local>"), MR, SMTP_POK, "user%other@local", 10, 0, 0},
    {L("<user%other.test@local.test>"), MR, SMTP_POK, "user%other.test@local.test", 15, 0, 0},
    {L("<@route:user@other>"), MR, SMTP_POK, "user@other", 4, 0, 0},
    {L("<@a.test,@b.test:user@c.test>"), MR, SMTP_POK, "user@c.test", 4, 0, 0},
    {L("<@a.test,@b.test,@c.test:u@d.test>"), MR, SMTP_POK, "u@d.test", 1, 0, 0},
    {L("<\"user@other\"@local>"), MR, SMTP_POK, "\"user@other\"@local", 12, 0, 0},
    {L("<\"user%other\"@local>"), MR, SMTP_POK, "\"user%other\"@local", 12, 0, 0},
    {L("<user@other@local>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@other@local>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<a!b@local>"), MR, SMTP_POK, "a!b@local", 3, 0, 0},
    {L("<other!user@local>"), MR, SMTP_POK, "other!user@local", 10, 0, 0},
    {L("<a!b!c@local.test>"), MR, SMTP_POK, "a!b!c@local.test", 5, 0, 0},
    {L("<user@example.test.>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@local.>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user%other@local.>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@.example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example..test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@.>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@127.0.0.1>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@2130706433>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example.123>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@exa_mple.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example.test:25>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example.test,other@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[192.0.2.1]>"), MR, SMTP_POK, "user@[192.0.2.1]", 4, LIT, 0},
    {L("<user%other@[192.0.2.1]>"), MR, SMTP_POK, "user%other@[192.0.2.1]", 10, LIT, 0},
    {L("<USER@EXAMPLE.TEST>"), R, SMTP_POK, "USER@EXAMPLE.TEST", 4, 0, 0},

    /* Source route syntax. */
    {L("<@a.test,b.test:u@c.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test,:u@c.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test:>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@:u@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test;u@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test.:u@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@[192.0.2.1]:u@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test:@b.test:u@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test:<u@x.test>>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test:>"), R, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a.test:"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},

    /* Local part syntax. */
    {L("<.user@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user.@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us..er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us(er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us,er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us:er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us;er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us[er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us\\er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us<er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<a\"b\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"quoted string\"@x.test>"), MR, SMTP_POK, "\"quoted string\"@x.test", 15, 0, 0},
    {L("<\"a\\\"b\"@x.test>"), MR, SMTP_POK, "\"a\\\"b\"@x.test", 6, 0, 0},
    {L("<\"a\\\\b\"@x.test>"), MR, SMTP_POK, "\"a\\\\b\"@x.test", 6, 0, 0},
    {L("<\"a\\ b\"@x.test>"), MR, SMTP_POK, "\"a\\ b\"@x.test", 6, 0, 0},
    {L("<\"\"@x.test>"), MR, SMTP_POK, "\"\"@x.test", 2, 0, 0},
    {L("<\"a>b\"@x.test>"), MR, SMTP_POK, "\"a>b\"@x.test", 5, 0, 0},
    {L("<\"a,b:c\"@x.test>"), MR, SMTP_POK, "\"a,b:c\"@x.test", 7, 0, 0},
    {L("<\"a\"b@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\".b@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\\\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0}, /* unterminated */
    {L("<\"abc"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"abc\\"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\\\tb\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\tb\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\x01"
       "b\"@x.test>"),
     MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\\\x7f\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\x7f\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\\\xc3\xa9\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},

    /* Brackets and spaces. */
    {L("user@example.test"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example.test"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("user@example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L(" <user@example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("< user@example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example.test >"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user @example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@ example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<<user@example.test>>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("< >"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L(">"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L(""), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("Joe <user@example.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},

    /* Address literals. */
    {L("<user@[0.0.0.0]>"), MR, SMTP_POK, "user@[0.0.0.0]", 4, LIT, 0},
    {L("<user@[255.255.255.255]>"), MR, SMTP_POK, "user@[255.255.255.255]", 4, LIT, 0},
    {L("<user@[127.0.0.1]>"), MR, SMTP_POK, "user@[127.0.0.1]", 4, LIT, 0},
    {L("<user@[256.0.0.1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.999]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.1000]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4.5]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[.1.2.3]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1..2.3]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[01.2.3.4]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[127.000.000.001]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[0x7f.0.0.1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[2130706433]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4 ]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[ 1.2.3.4]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[-1.2.3.4]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4]"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4]x>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.4].test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x.[1.2.3.4]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:2001:db8::1]>"), MR, SMTP_POK, "user@[IPv6:2001:db8::1]", 4, LIT, 0},
    {L("<user@[ipv6:::1]>"), MR, SMTP_POK, "user@[ipv6:::1]", 4, LIT, 0},
    {L("<user@[IPV6:::]>"), MR, SMTP_POK, "user@[IPV6:::]", 4, LIT, 0},
    {L("<user@[IPv6:::ffff:192.0.2.1]>"), MR, SMTP_POK, "user@[IPv6:::ffff:192.0.2.1]", 4, LIT, 0},
    {L("<user@[IPv6:2001:DB8:0:0:0:0:0:1]>"), MR, SMTP_POK, "user@[IPv6:2001:DB8:0:0:0:0:0:1]", 4,
     LIT, 0},
    {L("<user@[IPv6:ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]>"), MR, SMTP_POK,
     "user@[IPv6:ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]", 4, LIT, 0},
    {L("<user@[IPv6:2001:db8::g]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:2001:db8:::1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:1:2:3:4:5:6:7:8:9]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:fe80::1%eth0]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:192.0.2.1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6: ::1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:::1\0junk]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv6:0000:0000:0000:0000:0000:0000:0000:0000:0000]>"), MR, SMTP_PERR_ADDR_SYNTAX,
     NULL, 0, 0, 0},
    {L("<user@[IPv6::1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[::1]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[IPv4:1.2.3.4]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[tag:foo]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[x400:c=us]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[example.test]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},

    /* NUL, controls, CR and LF anywhere. */
    {L("<us\0er@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\0user@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x.te\0st>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x.test\0>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"us\0er\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"us\\\0er\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<@a\0.test:u@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\0>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\r@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x.test\n>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x.test\r\n>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\"a\r\nb\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us\ter@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us\x1b"
       "er@x.test>"),
     MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<us\x7f"
       "er@x.test>"),
     MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x\x7f.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},

    /* UTF-8 (RFC 6531). */
    {L("<j\xc3\xb6ran@x.test>"), MR, SMTP_POK, "j\xc3\xb6ran@x.test", 6, NA, 0},
    {L("<user@b\xc3\xbc"
       "cher.test>"),
     MR, SMTP_POK,
     "user@b\xc3\xbc"
     "cher.test",
     4, NA, 0},
    {L("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>"), MR,
     SMTP_POK, "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", 6, NA,
     0},
    {L("<\xf0\x9f\x98\x80@x.test>"), MR, SMTP_POK, "\xf0\x9f\x98\x80@x.test", 4, NA, 0},
    {L("<\"j\xc3\xb6ran\"@x.test>"), MR, SMTP_POK, "\"j\xc3\xb6ran\"@x.test", 8, NA, 0},
    {L("<@b\xc3\xbc"
       "cher.test:u@x.test>"),
     MR, SMTP_POK, "u@x.test", 1, NA, 0},
    {L("<user@\xe4\xbe\x8b.\xe6\xb5\x8b\xe8\xaf\x95>"), MR, SMTP_POK,
     "user@\xe4\xbe\x8b.\xe6\xb5\x8b\xe8\xaf\x95", 4, NA, 0},
    {L("<\xe3\x80\x82@x.test>"), MR, SMTP_POK, "\xe3\x80\x82@x.test", 3, NA, 0},
    {L("<user@example\xe3\x80\x82test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example\xef\xbc\x8etest>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@example\xef\xbd\xa1test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<\xc0\xafuser@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\x80@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\xe4\xb8@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\xed\xa0\x80@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\xf5\x80\x80\x80@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\xff@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\xc2\x85@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0}, /* C1 NEL */
    {L("<\"user\xc2\x9b\"@x.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user\xc2\xa0@x.test>"), MR, SMTP_POK, "user\xc2\xa0@x.test", 6, NA, 0},
    {L("<user@x\xc3.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x\xc2\x80.test>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@x.t\xc3"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
    {L("<user@[1.2.3.\xc2\xb9]>"), MR, SMTP_PERR_ADDR_SYNTAX, NULL, 0, 0, 0},
};

static void check_path_case(size_t i, const struct path_case *c, bool allow_null)
{
    char *buf = exact(c->in, c->len);
    smtp_path p;
    memset(&p, 0x5a, sizeof p);
    size_t used = 999;
    smtp_perr r = smtp_path_parse(buf, c->len, allow_null, &p, &used);
    if (r != c->err)
        fail_msg("case %zu (%s) \"%.*s\": err %d want %d", i, allow_null ? "MAIL" : "RCPT",
                 (int)c->len, c->in, r, c->err);
    if (r == SMTP_POK) {
        size_t alen = strlen(c->addr);
        if (p.len != alen || strcmp(p.addr, c->addr) != 0)
            fail_msg("case %zu: addr \"%s\" want \"%s\"", i, p.addr, c->addr);
        assert_int_equal(p.at, c->at == NOAT ? alen : c->at);
        if (p.at < p.len)
            assert_int_equal(p.addr[p.at], '@');
        assert_int_equal(p.non_ascii, (c->flags & NA) != 0);
        assert_int_equal(p.ip_literal, (c->flags & LIT) != 0);
        assert_int_equal(p.is_null, (c->flags & NUL) != 0);
        assert_int_equal(used, c->consumed ? c->consumed : c->len);
    } else {
        assert_int_equal(used, 0);
        assert_int_equal(p.addr[0], '\0');
    }
    free(buf);
}

static void test_path_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct path_case *c = &path_cases[i];
        if (c->modes & M)
            check_path_case(i, c, true);
        if (c->modes & R)
            check_path_case(i, c, false);
    }
}

static void test_path_every_prefix(void **state)
{
    /* No proper prefix of a path ending in '>' is a path, and parsing one
     * must never read past its end (ASan watches the exact-size copies). */
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct path_case *c = &path_cases[i];
        if (c->err != SMTP_POK || c->consumed)
            continue;
        for (size_t k = 0; k < c->len; k++) {
            char *buf = exact(c->in, k);
            smtp_path p;
            size_t used;
            assert_int_not_equal(smtp_path_parse(buf, k, true, &p, &used), SMTP_POK);
            assert_int_not_equal(smtp_path_parse(buf, k, false, &p, &used), SMTP_POK);
            free(buf);
        }
    }
}

/* Builds "<" local "@" domain ">" from repeated characters. */
static size_t build(char *dst, const char *route, size_t local, char lc, const char *domain)
{
    size_t n = 0;
    dst[n++] = '<';
    if (route) {
        memcpy(dst + n, route, strlen(route));
        n += strlen(route);
    }
    memset(dst + n, lc, local);
    n += local;
    if (domain) {
        dst[n++] = '@';
        memcpy(dst + n, domain, strlen(domain));
        n += strlen(domain);
    }
    dst[n++] = '>';
    return n;
}

/* A domain of exactly n octets: labels of 62 'd's (the last up to 63) joined by dots. */
static void make_domain(char *dst, size_t n)
{
    size_t i = 0, in_label = 0;
    while (i < n) {
        /* Never end on a dot, never let a label pass 63. */
        if (in_label == 62 && i + 1 < n) {
            dst[i++] = '.';
            in_label = 0;
        } else {
            dst[i++] = 'd';
            in_label++;
        }
    }
    dst[n] = '\0';
}

static smtp_perr parse_buf(const char *s, size_t n, bool allow_null, smtp_path *p)
{
    char *buf = exact(s, n);
    size_t used;
    smtp_perr r = smtp_path_parse(buf, n, allow_null, p, &used);
    if (r == SMTP_POK)
        assert_int_equal(used, n);
    free(buf);
    return r;
}

static void test_path_local_limits(void **state)
{
    (void)state;
    char s[2048];
    smtp_path p;
    size_t n = build(s, NULL, 64, 'a', "x.test");
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_POK);
    assert_int_equal(p.at, 64);
    n = build(s, NULL, 65, 'a', "x.test");
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_PERR_ADDR_TOO_LONG);
    n = build(s, NULL, 1000, 'a', "x.test");
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_PERR_ADDR_TOO_LONG);

    /* Quoted local parts count their quotes: "..." of 64 octets in all. */
    char q[80];
    q[0] = '"';
    memset(q + 1, 'q', 62);
    q[63] = '"';
    q[64] = '\0';
    n = (size_t)snprintf(s, sizeof s, "<%s@x.test>", q);
    assert_int_equal(parse_buf(s, n, false, &p), SMTP_POK);
    assert_int_equal(p.at, 64);
    memset(q + 1, 'q', 63);
    q[64] = '"';
    q[65] = '\0';
    n = (size_t)snprintf(s, sizeof s, "<%s@x.test>", q);
    assert_int_equal(parse_buf(s, n, false, &p), SMTP_PERR_ADDR_TOO_LONG);

    /* UTF-8 counts octets: 32 two-octet characters fit, 33 do not. */
    n = 0;
    s[n++] = '<';
    for (int i = 0; i < 32; i++) {
        s[n++] = '\xc3';
        s[n++] = '\xa9';
    }
    memcpy(s + n, "@x.test>", 8);
    n += 8;
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_POK);
    assert_true(p.non_ascii);
    memmove(s + 3, s + 1, n - 1);
    s[1] = '\xc3';
    s[2] = '\xa9';
    assert_int_equal(parse_buf(s, n + 2, true, &p), SMTP_PERR_ADDR_TOO_LONG);
}

static void test_path_domain_limits(void **state)
{
    (void)state;
    char s[2048], d[600];
    smtp_path p;

    /* Labels: 63 octets fine, 64 not (ASCII). */
    memset(d, 'l', 63);
    strcpy(d + 63, ".test");
    size_t n = build(s, NULL, 1, 'a', d);
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_POK);
    memset(d, 'l', 64);
    strcpy(d + 64, ".test");
    n = build(s, NULL, 1, 'a', d);
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_PERR_ADDR_SYNTAX);
    memset(d, 'l', 64);
    d[64] = '\0';
    n = build(s, NULL, 1, 'a', d);
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_PERR_ADDR_SYNTAX);

    /* A U-label is not held to 63 octets (its A-label may still fit). */
    n = 0;
    n += (size_t)snprintf(s, sizeof s, "<a@");
    for (int i = 0; i < 40; i++) {
        s[n++] = '\xc3';
        s[n++] = '\xbc';
    }
    memcpy(s + n, ".test>", 6);
    n += 6;
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_POK);
    assert_true(p.non_ascii);

    /* "<a@" + domain + ">" is 4 + domain octets: 252 fits the 256-octet path,
     * 253 does not; 255 is the domain maximum but can never fit a path, and
     * 256 breaks the domain limit itself. */
    make_domain(d, 252);
    n = build(s, NULL, 1, 'a', d);
    assert_int_equal(n, 256);
    assert_int_equal(parse_buf(s, n, true, &p), SMTP_POK);
    assert_int_equal(p.len, 254);
    assert_int_equal(p.at, 1);
    size_t limits[] = {253, 254, 255, 256, 300, 500};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        make_domain(d, limits[i]);
        n = build(s, NULL, 1, 'a', d);
        assert_int_equal(parse_buf(s, n, true, &p), SMTP_PERR_ADDR_TOO_LONG);
    }
}

static void test_path_total_limits(void **state)
{
    (void)state;
    char s[20000], d[300];
    smtp_path p;

    /* 64-octet local part + 187-octet domain: "<" 64 "@" 187 ">" = 254. */
    make_domain(d, 189);
    size_t n = build(s, NULL, 64, 'u', d);
    assert_int_equal(n, 256);
    assert_int_equal(parse_buf(s, n, false, &p), SMTP_POK);
    assert_int_equal(p.len, 254);
    assert_int_equal(p.addr[254], '\0');
    make_domain(d, 190);
    n = build(s, NULL, 64, 'u', d);
    assert_int_equal(n, 257);
    assert_int_equal(parse_buf(s, n, false, &p), SMTP_PERR_ADDR_TOO_LONG);

    /* The source route counts towards the 256 octets, though dropped. */
    char route[300];
    make_domain(route + 1, 200);
    route[0] = '@';
    strcat(route, ":");
    make_domain(d, 48);
    n = build(s, route, 1, 'u', d); /* 1 + 202 + 1 + 1 + 48 + 1 = 254 */
    assert_int_equal(n, 254);
    assert_int_equal(parse_buf(s, n, false, &p), SMTP_POK);
    assert_int_equal(p.len, 50);
    make_domain(d, 51);
    n = build(s, route, 1, 'u', d);
    assert_int_equal(n, 257);
    assert_int_equal(parse_buf(s, n, false, &p), SMTP_PERR_ADDR_TOO_LONG);

    /* Overlong inputs of every shape are refused without overflow. */
    memset(s, 'a', sizeof s);
    s[0] = '<';
    assert_int_not_equal(parse_buf(s, sizeof s, true, &p), SMTP_POK);
    s[sizeof s - 1] = '>';
    assert_int_equal(parse_buf(s, sizeof s, true, &p), SMTP_PERR_ADDR_TOO_LONG);
    make_domain(s + 3, sizeof s - 4);
    s[1] = 'a';
    s[2] = '@';
    s[sizeof s - 1] = '>';
    assert_int_equal(parse_buf(s, sizeof s, true, &p), SMTP_PERR_ADDR_TOO_LONG);
    memset(s + 1, '.', sizeof s - 2);
    assert_int_equal(parse_buf(s, sizeof s, true, &p), SMTP_PERR_ADDR_SYNTAX);
}

static void test_path_roundtrip(void **state)
{
    /* What the parser returns parses again to itself: one reading only. */
    (void)state;
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const struct path_case *c = &path_cases[i];
        if (c->err != SMTP_POK || (c->flags & NUL))
            continue;
        bool allow_null = (c->modes & M) != 0;
        smtp_path a, b;
        size_t used;
        char *buf = exact(c->in, c->len);
        assert_int_equal(smtp_path_parse(buf, c->len, allow_null, &a, &used), SMTP_POK);
        free(buf);
        char s[SMTP_PATH_MAX + 3];
        s[0] = '<';
        memcpy(s + 1, a.addr, a.len);
        s[a.len + 1] = '>';
        assert_int_equal(parse_buf(s, a.len + 2, allow_null, &b), SMTP_POK);
        assert_string_equal(a.addr, b.addr);
        assert_int_equal(a.at, b.at);
        assert_int_equal(a.non_ascii || !b.non_ascii, true);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),        cmocka_unit_test(test_path_every_prefix),
        cmocka_unit_test(test_path_local_limits), cmocka_unit_test(test_path_domain_limits),
        cmocka_unit_test(test_path_total_limits), cmocka_unit_test(test_path_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
