/*
 * test_dlv_dsn.c - DSN messages (RFC 3464) built and parsed back: the MIME
 * structure, the delivery-status fields, RET=HDRS/FULL, folding, xtext.
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

#include "sluice/dlv_dsn.h"
#include "sluice/smtp_parse.h"

static const char ORIG[] = "Subject: test\r\nFrom: alice@a.test\r\nMessage-ID: <m1@a.test>\r\n"
                           "\r\nbody line\r\n.dot line\r\n";

static void make_env(envelope *e)
{
    envelope_init(e);
    snprintf(e->id, sizeof(e->id), "18F3A2B4C5D6E0");
    e->arrival_us = 1700000000000000ll;
    assert_int_equal(envelope_set(&e->sender, "alice@a.test"), 0);
    assert_int_equal(envelope_add_rcpt(e, "bob@b.test", "rfc822;bob+2Bx@b.test", 0), 0);
    assert_int_equal(envelope_add_rcpt(e, "carol@c.test", NULL, SMTP_NOTIFY_SUCCESS), 0);
    env_rcpt *r = &e->rcpts[0];
    r->state = RCPT_FAILED;
    r->last_attempt = 1700000100;
    assert_int_equal(envelope_set(&r->last_reply, "550 5.1.1 <bob@b.test>: no such user"), 0);
    assert_int_equal(envelope_set(&r->relay, "mx.b.test[192.0.2.1]:25"), 0);
    assert_int_equal(envelope_set(&r->dsn_status, "5.1.1"), 0);
    r = &e->rcpts[1];
    r->state = RCPT_DELIVERED;
    assert_int_equal(envelope_set(&r->last_reply, "250 2.0.0 delivered to maildir"), 0);
    assert_int_equal(envelope_set(&r->relay, "local"), 0);
    assert_int_equal(envelope_set(&r->dsn_status, "2.0.0"), 0);
}

/* The text between "--b" lines: the parts of a multipart body. */
static int split_parts(const char *msg, char parts[4][8192])
{
    const char *ct = strstr(msg, "boundary=\"");
    assert_non_null(ct);
    ct += 10;
    const char *q = strchr(ct, '"');
    char delim[300];
    snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)(q - ct), ct);
    int n = 0;
    const char *p = strstr(msg, delim);
    assert_non_null(p);
    for (;;) {
        p += strlen(delim);
        if (strncmp(p, "--", 2) == 0) {
            assert_string_equal(p, "--\r\n"); /* the close delimiter ends the message */
            break;
        }
        assert_memory_equal(p, "\r\n", 2);
        p += 2;
        const char *next = strstr(p, delim);
        assert_non_null(next);
        assert_true(n < 4);
        snprintf(parts[n++], 8192, "%.*s", (int)(next - p), p);
        p = next;
    }
    return n;
}

static void check_lines(const char *msg)
{
    /* CRLF only, no line over 998 bytes. */
    size_t col = 0;
    for (const char *p = msg; *p; p++) {
        if (*p == '\n') {
            assert_true(p > msg && p[-1] == '\r');
            col = 0;
        } else {
            assert_true(*p != '\r' || p[1] == '\n');
            assert_true(++col <= 998);
        }
    }
}

static void test_failure_hdrs(void **state)
{
    (void)state;
    envelope e;
    make_env(&e);
    dlv_dsn_rcpt list[] = {{&e.rcpts[0], "failed"}, {&e.rcpts[1], "delivered"}};
    dlv_dsn_params p = {
        .kind = DLV_DSN_FAILURE,
        .e = &e,
        .hostname = "mx.a.test",
        .dsn_id = "18F3A2B4C5D6F1",
        .now_us = 1700000200000000ll,
        .orig = ORIG,
        .orig_len = sizeof(ORIG) - 1,
        .whole_ok = true,
    };
    sbuf out;
    sbuf_init(&out, 0);
    assert_int_equal(dlv_dsn_build(&p, list, 2, &out), 0);
    const char *m = out.data;
    check_lines(m);
    assert_non_null(strstr(m, "From: Mail Delivery System <MAILER-DAEMON@mx.a.test>\r\n"));
    assert_non_null(strstr(m, "\r\nTo: <alice@a.test>\r\n"));
    assert_non_null(strstr(m, "\r\nAuto-Submitted: auto-replied\r\n"));
    assert_non_null(strstr(m, "Content-Type: multipart/report; report-type=delivery-status;"));
    assert_non_null(strstr(m, "Subject: Undelivered Mail Returned to Sender\r\n"));
    char parts[4][8192];
    assert_int_equal(split_parts(m, parts), 3);
    assert_non_null(strstr(parts[0], "Content-Type: text/plain"));
    assert_non_null(strstr(parts[0], "<bob@b.test>: failed: 550 5.1.1"));
    const char *ds = parts[1];
    assert_non_null(strstr(ds, "Content-Type: message/delivery-status\r\n\r\n"));
    assert_non_null(strstr(ds, "Reporting-MTA: dns; mx.a.test\r\n"));
    assert_non_null(strstr(ds, "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
    assert_non_null(strstr(ds, "\r\n\r\nFinal-Recipient: rfc822; bob@b.test\r\n"
                               "Original-Recipient: rfc822; bob+x@b.test\r\n"
                               "Action: failed\r\nStatus: 5.1.1\r\n"
                               "Remote-MTA: dns; mx.b.test\r\n"
                               "Diagnostic-Code: smtp; 550 5.1.1 <bob@b.test>: no such user\r\n"
                               "Last-Attempt-Date: "));
    assert_non_null(strstr(ds, "\r\n\r\nFinal-Recipient: rfc822; carol@c.test\r\n"
                               "Action: delivered\r\nStatus: 2.0.0\r\n"
                               "Diagnostic-Code: smtp; 250 2.0.0 delivered to maildir"));
    assert_null(strstr(ds, "Remote-MTA: dns; local"));
    assert_non_null(strstr(parts[2], "Content-Type: text/rfc822-headers\r\n\r\n"
                                     "Subject: test\r\nFrom: alice@a.test\r\n"
                                     "Message-ID: <m1@a.test>\r\n"));
    assert_null(strstr(parts[2], "body line"));
    sbuf_free(&out);
    envelope_free(&e);
}

static void test_ret_full_and_8bit(void **state)
{
    (void)state;
    envelope e;
    make_env(&e);
    e.ret = SMTP_RET_FULL;
    const char orig[] = "Subject: caf\xc3\xa9\r\n\r\nbody \xff\r\n";
    dlv_dsn_rcpt list[] = {{&e.rcpts[0], "failed"}};
    dlv_dsn_params p = {
        .kind = DLV_DSN_FAILURE,
        .e = &e,
        .hostname = "mx.a.test",
        .dsn_id = "18F3A2B4C5D6F1",
        .now_us = 1700000200000000ll,
        .orig = orig,
        .orig_len = sizeof(orig) - 1,
        .whole_ok = true,
    };
    sbuf out;
    sbuf_init(&out, 0);
    assert_int_equal(dlv_dsn_build(&p, list, 1, &out), 0);
    char parts[4][8192];
    assert_int_equal(split_parts(out.data, parts), 3);
    assert_non_null(strstr(out.data, "Content-Transfer-Encoding: 8bit\r\n"));
    assert_non_null(strstr(parts[2], "Content-Type: message/rfc822\r\n"));
    assert_non_null(strstr(parts[2], "body \xff\r\n"));
    sbuf_free(&out);
    /* Not all of it available: headers only, even with RET=FULL. */
    p.whole_ok = false;
    sbuf_init(&out, 0);
    assert_int_equal(dlv_dsn_build(&p, list, 1, &out), 0);
    assert_non_null(strstr(out.data, "text/rfc822-headers"));
    assert_null(strstr(out.data, "body \xff"));
    sbuf_free(&out);
    envelope_free(&e);
}

static void test_delay_and_fold(void **state)
{
    (void)state;
    envelope e;
    make_env(&e);
    env_rcpt *r = &e.rcpts[0];
    r->state = RCPT_DEFERRED;
    char longreply[1001];
    memset(longreply, 'x', sizeof(longreply) - 1);
    longreply[sizeof(longreply) - 1] = '\0';
    memcpy(longreply, "451 4.3.0 ", 10);
    for (int i = 60; i < 1000; i += 70)
        longreply[i] = ' ';
    assert_int_equal(envelope_set(&r->last_reply, longreply), 0);
    assert_int_equal(envelope_set(&r->dsn_status, "4.3.0"), 0);
    dlv_dsn_rcpt list[] = {{r, "delayed"}};
    dlv_dsn_params p = {
        .kind = DLV_DSN_DELAY,
        .e = &e,
        .hostname = "mx.a.test",
        .dsn_id = "18F3A2B4C5D6F1",
        .now_us = 1700000200000000ll,
        .retry_until_us = 1700432000000000ll,
        .orig = ORIG,
        .orig_len = sizeof(ORIG) - 1,
        .whole_ok = true,
    };
    sbuf out;
    sbuf_init(&out, 0);
    assert_int_equal(dlv_dsn_build(&p, list, 1, &out), 0);
    check_lines(out.data);
    assert_non_null(strstr(out.data, "Subject: Delayed Mail (still being retried)\r\n"));
    assert_non_null(strstr(out.data, "Action: delayed\r\nStatus: 4.3.0\r\n"));
    assert_non_null(strstr(out.data, "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"));
    assert_non_null(strstr(out.data, "Diagnostic-Code: smtp; 451 4.3.0\r\n xxx"));
    assert_non_null(strstr(out.data, "\r\n xxx")); /* folded */
    sbuf_free(&out);
    /* No sender, no recipients: nothing to build. */
    sbuf_init(&out, 0);
    assert_int_equal(dlv_dsn_build(&p, list, 0, &out), -EINVAL);
    assert_int_equal(envelope_set(&e.sender, ""), 0);
    assert_int_equal(dlv_dsn_build(&p, list, 1, &out), -EINVAL);
    sbuf_free(&out);
    envelope_free(&e);
}

static void test_helpers(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(dlv_xtext_decode("a+2Bb+3Dc", out, sizeof(out)), 0);
    assert_string_equal(out, "a+b=c");
    assert_int_equal(dlv_xtext_decode("a+2", out, sizeof(out)), -EINVAL);
    assert_int_equal(dlv_xtext_decode("a+0A", out, sizeof(out)), -EINVAL); /* LF */
    assert_int_equal(dlv_xtext_decode("abcdef", out, 4), -EINVAL);
    const char m[] = "A: b\r\nC: d\r\n\r\nbody";
    assert_int_equal(dlv_dsn_header_len(m, sizeof(m) - 1), 14);
    assert_int_equal(dlv_dsn_header_len("\r\nbody", 6), 2);
    assert_int_equal(dlv_dsn_header_len("A: b\r\n", 6), 6);
    dlv_rfc5322_date(0, out, sizeof(out));
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_true(dlv_notify_wants_failure(0));
    assert_false(dlv_notify_wants_failure(SMTP_NOTIFY_NEVER));
    assert_false(dlv_notify_wants_failure(SMTP_NOTIFY_SUCCESS));
    assert_true(dlv_notify_wants_failure(SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY));
    assert_false(dlv_notify_wants_success(0));
    assert_true(dlv_notify_wants_success(SMTP_NOTIFY_SUCCESS));
    assert_true(dlv_notify_wants_delay(0));
    assert_false(dlv_notify_wants_delay(SMTP_NOTIFY_FAILURE));
    assert_true(dlv_notify_wants_delay(SMTP_NOTIFY_DELAY));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_hdrs),
        cmocka_unit_test(test_ret_full_and_8bit),
        cmocka_unit_test(test_delay_and_fold),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
