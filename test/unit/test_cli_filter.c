/*
 * test_cli_filter.c - queue selection for `sluice queue`: durations, the
 * message states of --state, address patterns of --sender/--rcpt, the
 * combined filter, option parsing, and the UTF-8 cleaner behind --json.
 * (The pure CLI file is compiled in: cli_*.c are not in a library.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../queue/cli_filter.c"

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t secs;
    } ok[] = {{"0", 0},
              {"90", 90},
              {"90s", 90},
              {"15m", 900},
              {"4h", 14400},
              {"2d", 172800},
              {"1w", 604800},
              {"1h30m", 5400},
              {"1d2h3m4s", 93784},
              {"0s", 0},
              {"315360000000", 315360000000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        assert_int_equal(cli_parse_duration(ok[i].s, &v), 0);
        assert_true(v == ok[i].secs);
    }
    static const char *const bad[] = {"",
                                      "h",
                                      "5x",
                                      "-5m",
                                      "1.5h",
                                      "1h30",
                                      " 5m",
                                      "5m ",
                                      "5 m",
                                      "m5",
                                      "99999999999999999999",
                                      "315360000001",
                                      "5200000000w"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 7;
        if (cli_parse_duration(bad[i], &v) != -EINVAL)
            print_message("accepted: '%s'\n", bad[i]);
        assert_int_equal(cli_parse_duration(bad[i], &v), -EINVAL);
        assert_true(v == 7); /* untouched on error */
    }
    int64_t v;
    assert_int_equal(cli_parse_duration(NULL, &v), -EINVAL);
}

static void add(envelope *e, const char *addr, enum rcpt_state st)
{
    assert_int_equal(envelope_add_rcpt(e, addr, NULL, 0), 0);
    e->rcpts[e->nrcpt - 1].state = st;
}

static void test_states(void **state)
{
    (void)state;
    envelope e;
    envelope_init(&e);
    assert_int_equal(cli_msg_state(&e), CLI_MSG_DONE); /* nothing left to deliver */
    add(&e, "a@x.test", RCPT_DELIVERED);
    assert_int_equal(cli_msg_state(&e), CLI_MSG_DONE);
    add(&e, "b@x.test", RCPT_PENDING);
    assert_int_equal(cli_msg_state(&e), CLI_MSG_PENDING);
    add(&e, "c@x.test", RCPT_DEFERRED);
    assert_int_equal(cli_msg_state(&e), CLI_MSG_DEFERRED);
    e.hold = true;
    assert_int_equal(cli_msg_state(&e), CLI_MSG_HOLD);
    envelope_free(&e);

    assert_string_equal(cli_msg_state_name(CLI_MSG_PENDING), "pending");
    assert_string_equal(cli_msg_state_name(CLI_MSG_DEFERRED), "deferred");
    assert_string_equal(cli_msg_state_name(CLI_MSG_HOLD), "hold");
    assert_string_equal(cli_msg_state_name(CLI_MSG_DONE), "done");
    assert_int_equal(cli_msg_state_parse("deferred"), CLI_MSG_DEFERRED);
    assert_int_equal(cli_msg_state_parse("held"), CLI_MSG_HOLD);
    assert_int_equal(cli_msg_state_parse("active"), -1);
    assert_int_equal(cli_msg_state_parse(""), -1);
}

static void test_addr_patterns(void **state)
{
    (void)state;
    assert_true(cli_addr_match("alice@example.test", "alice@example.test"));
    assert_true(cli_addr_match("Alice@Example.TEST", "alice@example.test"));
    assert_false(cli_addr_match("alice@example.test", "bob@example.test"));
    assert_false(cli_addr_match("alice@example.test", "alice@example.test.evil"));
    /* Domains: "@d" and "d" match d and its subdomains, never a suffix. */
    assert_true(cli_addr_match("@example.test", "x@example.test"));
    assert_true(cli_addr_match("example.test", "x@EXAMPLE.test"));
    assert_true(cli_addr_match("example.test", "x@mail.example.test"));
    assert_false(cli_addr_match("example.test", "x@badexample.test"));
    assert_false(cli_addr_match("example.test", "example.test")); /* no '@' in addr */
    assert_false(cli_addr_match("@", "x@y.test"));
    /* The null sender. */
    assert_true(cli_addr_match("<>", ""));
    assert_true(cli_addr_match("", ""));
    assert_false(cli_addr_match("<>", "a@x.test"));
    assert_false(cli_addr_match("a@x.test", ""));
    assert_false(cli_addr_match(NULL, "a@x.test"));
}

static void test_filter(void **state)
{
    (void)state;
    envelope e;
    envelope_init(&e);
    e.arrival_us = 1000000000LL * 1000000; /* 2001-09-09 */
    assert_int_equal(envelope_set(&e.sender, "alice@example.test"), 0);
    add(&e, "bob@remote.test", RCPT_DEFERRED);
    add(&e, "carol@example.test", RCPT_DELIVERED);
    int64_t now = e.arrival_us + 3600LL * 1000000; /* an hour later */

    cli_filter f;
    cli_filter_init(&f);
    assert_false(cli_filter_active(&f));
    assert_true(cli_filter_match(&f, &e, now));

    f.sender = "@example.test";
    assert_true(cli_filter_active(&f));
    assert_true(cli_filter_match(&f, &e, now));
    f.rcpt = "remote.test";
    assert_true(cli_filter_match(&f, &e, now));
    f.rcpt = "dave@remote.test";
    assert_false(cli_filter_match(&f, &e, now));
    f.rcpt = "carol@example.test"; /* any recipient, whatever its state */
    assert_true(cli_filter_match(&f, &e, now));

    f.state = CLI_MSG_DEFERRED;
    assert_true(cli_filter_match(&f, &e, now));
    f.state = CLI_MSG_PENDING;
    assert_false(cli_filter_match(&f, &e, now));
    f.state = -1;

    f.older_than = 3599;
    assert_true(cli_filter_match(&f, &e, now));
    f.older_than = 3600;
    assert_true(cli_filter_match(&f, &e, now));
    f.older_than = 3601;
    assert_false(cli_filter_match(&f, &e, now));
    envelope_free(&e);
}

static void test_filter_options(void **state)
{
    (void)state;
    char *argv[] = {"list",     "--sender",     "a@x.test", "--rcpt=@y.test", "--state",
                    "deferred", "--older-than", "1h30m",    "--json",         NULL};
    int argc = 9, i = 1;
    cli_filter f;
    cli_filter_init(&f);
    assert_int_equal(cli_filter_option(&f, argc, argv, &i), 1);
    assert_int_equal(i, 3);
    assert_string_equal(f.sender, "a@x.test");
    assert_int_equal(cli_filter_option(&f, argc, argv, &i), 1);
    assert_int_equal(i, 4);
    assert_string_equal(f.rcpt, "@y.test");
    assert_int_equal(cli_filter_option(&f, argc, argv, &i), 1);
    assert_int_equal(f.state, CLI_MSG_DEFERRED);
    assert_int_equal(cli_filter_option(&f, argc, argv, &i), 1);
    assert_true(f.older_than == 5400);
    assert_int_equal(i, 8);
    assert_int_equal(cli_filter_option(&f, argc, argv, &i), 0); /* --json: not ours */
    assert_int_equal(i, 8);

    char *bad_state[] = {"list", "--state", "frozen", NULL};
    i = 1;
    assert_int_equal(cli_filter_option(&f, 3, bad_state, &i), -1);
    char *bad_age[] = {"list", "--older-than=soon", NULL};
    i = 1;
    assert_int_equal(cli_filter_option(&f, 2, bad_age, &i), -1);
    char *missing[] = {"list", "--sender", NULL};
    i = 1;
    assert_int_equal(cli_filter_option(&f, 2, missing, &i), -1);
    char *prefix[] = {"list", "--senders", "x", NULL};
    i = 1;
    assert_int_equal(cli_filter_option(&f, 3, prefix, &i), 0);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b, 0);
    assert_int_equal(cli_utf8_clean("plain ascii", &b), 0);
    assert_string_equal(b.data, "plain ascii");
    assert_int_equal(cli_utf8_clean("", &b), 0);
    assert_string_equal(b.data, "");
    assert_int_equal(cli_utf8_clean("J\xc3\xb6rg \xe2\x82\xac \xf0\x9f\x93\xa7", &b), 0);
    assert_string_equal(b.data, "J\xc3\xb6rg \xe2\x82\xac \xf0\x9f\x93\xa7");
    /* Latin-1, a truncated sequence, overlong forms, surrogates, > U+10FFFF. */
    assert_int_equal(cli_utf8_clean("caf\xe9!", &b), 0);
    assert_string_equal(b.data, "caf\xef\xbf\xbd!");
    assert_int_equal(cli_utf8_clean("\xe2\x82", &b), 0);
    assert_string_equal(b.data, "\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(cli_utf8_clean("\xc0\xaf", &b), 0);
    assert_string_equal(b.data, "\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(cli_utf8_clean("\xe0\x80\xaf", &b), 0);
    assert_string_equal(b.data, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(cli_utf8_clean("\xed\xa0\x80", &b), 0);
    assert_string_equal(b.data, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_int_equal(cli_utf8_clean("\xf4\x90\x80\x80", &b), 0);
    assert_string_equal(b.data, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),      cmocka_unit_test(test_states),
        cmocka_unit_test(test_addr_patterns),  cmocka_unit_test(test_filter),
        cmocka_unit_test(test_filter_options), cmocka_unit_test(test_utf8_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
