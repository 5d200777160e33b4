/* test_envelope.c - the envelope text form: round trip, exact form, and the
 * strict parser's refusals (truncation, damage, versions, bounds). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "sluice/envelope.h"
#include "sluice/smtp_parse.h"

static void fill_full(envelope *e)
{
    envelope_init(e);
    memcpy(e->id, "18F3A2B4C5D6E0", QUEUE_ID_LEN + 1);
    e->arrival_us = INT64_C(1700000000123456);
    e->size = 1234;
    e->crc32 = 0x1a2b3c4d;
    assert_int_equal(envelope_set(&e->sender, "alice@example.test"), 0);
    assert_int_equal(envelope_set(&e->helo, "client.example.test"), 0);
    assert_int_equal(envelope_set(&e->client_addr, "192.0.2.7"), 0);
    assert_int_equal(envelope_set(&e->client_name, "client.example.test"), 0);
    assert_int_equal(envelope_set(&e->proto, "ESMTPSA"), 0);
    assert_int_equal(envelope_set(&e->auth_id, "alice"), 0);
    assert_int_equal(envelope_set(&e->envid, "QQ314159"), 0);
    e->ret = SMTP_RET_HDRS;
    e->body = SMTP_BODY_8BITMIME;
    e->smtputf8 = true;
    e->hold = true;
    e->delay_warned = true;
    assert_int_equal(envelope_set(&e->spf, "pass"), 0);
    assert_int_equal(envelope_add_rcpt(e, "bob@example.test", "rfc822;bob@example.test",
                                       SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY),
                     0);
    assert_int_equal(envelope_add_rcpt(e, "carol@example.test", NULL, SMTP_NOTIFY_NEVER), 0);
    assert_int_equal(envelope_add_rcpt(e, "dave@example.test", NULL, 0), 0);
    assert_int_equal(
        envelope_add_rcpt(e, "erin@example.test", NULL,
                          SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY),
        0);
    env_rcpt *r = &e->rcpts[0];
    r->state = RCPT_DEFERRED;
    r->attempts = 3;
    r->next_attempt = 1700003600;
    r->last_attempt = 1700000300;
    assert_int_equal(envelope_set(&r->last_reply, "451 4.3.0 try later"), 0);
    assert_int_equal(envelope_set(&r->relay, "mx.example.test[192.0.2.25]:25"), 0);
    assert_int_equal(envelope_set(&r->dsn_status, "4.3.0"), 0);
    e->rcpts[1].state = RCPT_DELIVERED;
    assert_int_equal(envelope_set(&e->rcpts[1].relay, "maildir"), 0);
    e->rcpts[1].dsn_sent = true;
    e->rcpts[2].state = RCPT_FAILED;
    assert_int_equal(envelope_set(&e->rcpts[2].last_reply, ""), 0); /* "" is not NULL */
}

static void test_round_trip_all_fields(void **state)
{
    envelope e, f;
    sbuf a, b;
    char err[128];

    fill_full(&e);
    envelope_init(&f);
    sbuf_init(&a, 0);
    sbuf_init(&b, 0);
    assert_int_equal(envelope_serialize(&e, &a), 0);
    assert_int_equal(envelope_parse(a.data, a.len, &f, err, sizeof(err)), 0);
    assert_true(envelope_equal(&e, &f));
    assert_int_equal(envelope_serialize(&f, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    /* Parsing into a used envelope resets it first. */
    assert_int_equal(envelope_parse(a.data, a.len, &f, err, sizeof(err)), 0);
    assert_true(envelope_equal(&e, &f));
    assert_false(envelope_all_final(&e));
    e.rcpts[0].state = RCPT_DELIVERED;
    e.rcpts[3].state = RCPT_FAILED;
    assert_true(envelope_all_final(&e));
    assert_false(envelope_equal(&e, &f));
    envelope_free(&e);
    envelope_free(&f);
    sbuf_free(&a);
    sbuf_free(&b);
}

/* Appends the end line a correct writer would add. */
static char *with_end(const char *body, size_t *len)
{
    size_t n = strlen(body);
    char *s = malloc(n + 32);
    memcpy(s, body, n);
    uLong crc = crc32(0L, (const Bytef *)body, (uInt)n);
    *len = n + (size_t)sprintf(s + n, "end: %08lx\n", crc);
    return s;
}

static const char minimal_body[] = "sluice-envelope 1\n"
                                   "id: 18F3A2B4C5D6E0\n"
                                   "arrival: 2023-11-14T22:13:20.123456Z\n"
                                   "size: 0\n"
                                   "crc32: 00000000\n"
                                   "sender:\n"
                                   "smtputf8: no\n"
                                   "hold: no\n"
                                   "delay-warned: no\n"
                                   "rcpt: bob@example.test\n"
                                   "rcpt-state: pending\n"
                                   "rcpt-attempts: 0\n"
                                   "rcpt-next-attempt: 0\n"
                                   "rcpt-last-attempt: 0\n"
                                   "rcpt-dsn-sent: no\n";

static void test_exact_form(void **state)
{
    envelope e;
    sbuf out;
    size_t len;

    envelope_init(&e);
    memcpy(e.id, "18F3A2B4C5D6E0", QUEUE_ID_LEN + 1);
    e.arrival_us = INT64_C(1700000000123456);
    assert_int_equal(envelope_set(&e.sender, ""), 0);
    assert_int_equal(envelope_add_rcpt(&e, "bob@example.test", NULL, 0), 0);
    sbuf_init(&out, 0);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    char *want = with_end(minimal_body, &len);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, want, len);
    free(want);
    /* NULL sender is written as the null sender too. */
    envelope_set(&e.sender, NULL);
    sbuf_reset(&out);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    assert_non_null(strstr(out.data, "\nsender:\n"));
    sbuf_free(&out);
    envelope_free(&e);
}

static void test_control_chars_replaced(void **state)
{
    envelope e, f;
    sbuf out;
    char err[128];

    envelope_init(&e);
    envelope_init(&f);
    memcpy(e.id, "18F3A2B4C5D6E0", QUEUE_ID_LEN + 1);
    envelope_set(&e.sender, "a@b.test");
    envelope_set(&e.helo, "evil\r\nhold: yes");
    envelope_add_rcpt(&e, "bob@example.test", NULL, 0);
    envelope_set(&e.rcpts[0].last_reply, "550-5.1.1 no\r\n550 5.1.1 such\tuser\x7f");
    sbuf_init(&out, 0);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), 0);
    assert_string_equal(f.helo, "evil  hold: yes");
    assert_false(f.hold);
    assert_string_equal(f.rcpts[0].last_reply, "550-5.1.1 no  550 5.1.1 such user ");
    sbuf_free(&out);
    envelope_free(&e);
    envelope_free(&f);
}

static void test_reply_truncated(void **state)
{
    envelope e, f;
    sbuf out;
    char err[128], reply[3000];

    envelope_init(&e);
    envelope_init(&f);
    memcpy(e.id, "18F3A2B4C5D6E0", QUEUE_ID_LEN + 1);
    envelope_add_rcpt(&e, "bob@example.test", NULL, 0);
    /* 999 ASCII bytes, then "é" (2 bytes) straddling the 1000 cut. */
    memset(reply, 'x', sizeof(reply));
    memcpy(reply + 999, "\xc3\xa9", 2);
    reply[sizeof(reply) - 1] = '\0';
    envelope_set(&e.rcpts[0].last_reply, reply);
    sbuf_init(&out, 0);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), 0);
    assert_int_equal(strlen(f.rcpts[0].last_reply), 999);
    sbuf_free(&out);
    envelope_free(&e);
    envelope_free(&f);
}

static void test_truncated_every_offset(void **state)
{
    envelope e, f;
    sbuf out;
    char err[128];

    fill_full(&e);
    envelope_init(&f);
    sbuf_init(&out, 0);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    for (size_t n = 0; n < out.len; n++) {
        char *copy = malloc(n + 1); /* exact size: ASan sees any overread */
        memcpy(copy, out.data, n);
        assert_int_equal(envelope_parse(copy, n, &f, err, sizeof(err)), -EINVAL);
        assert_int_equal(strncmp(err, "line ", 5), 0);
        assert_int_equal(f.nrcpt, 0);
        assert_null(f.sender);
        free(copy);
    }
    sbuf_free(&out);
    envelope_free(&e);
}

static void test_flipped_bytes(void **state)
{
    envelope e, f;
    sbuf out;
    char err[128];

    fill_full(&e);
    envelope_init(&f);
    sbuf_init(&out, 0);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    for (size_t i = 0; i < out.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            out.data[i] ^= (char)(1 << bit);
            assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), -EINVAL);
            out.data[i] ^= (char)(1 << bit);
        }
    }
    assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), 0);
    /* A body change is reported as a checksum mismatch on the end line. */
    out.data[20] ^= 1;
    assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "checksum"));
    sbuf_free(&out);
    envelope_free(&e);
    envelope_free(&f);
}

/* Parses minimal_body with one line replaced (or added); returns the result
 * and leaves the reason in err. */
static int parse_edit(const char *from, const char *to, char *err, size_t errlen)
{
    char body[sizeof(minimal_body) + 9000];
    const char *at = strstr(minimal_body, from);
    assert_non_null(at);
    size_t pre = (size_t)(at - minimal_body);
    assert_true(pre + strlen(to) + strlen(at + strlen(from)) < sizeof(body));
    memcpy(body, minimal_body, pre);
    strcpy(body + pre, to);
    strcat(body, at + strlen(from));
    size_t len;
    char *text = with_end(body, &len);
    envelope f;
    envelope_init(&f);
    int rc = envelope_parse(text, len, &f, err, errlen);
    free(text);
    envelope_free(&f);
    return rc;
}

#define ASSERT_BAD(from, to, why)                                                                  \
    do {                                                                                           \
        char err_[256];                                                                            \
        assert_int_equal(parse_edit(from, to, err_, sizeof(err_)), -EINVAL);                       \
        if (!strstr(err_, why))                                                                    \
            fail_msg("%s -> %s: got \"%s\", want \"%s\"", from, to, err_, why);                    \
    } while (0)

#define ASSERT_GOOD(from, to)                                                                      \
    do {                                                                                           \
        char err_[256];                                                                            \
        if (parse_edit(from, to, err_, sizeof(err_)) != 0)                                         \
            fail_msg("%s -> %s: %s", from, to, err_);                                              \
    } while (0)

static void test_parse_errors(void **state)
{
    ASSERT_GOOD("size: 0\n", "size: 0\n");
    ASSERT_BAD("sluice-envelope 1\n", "sluice-envelope 2\n", "line 1: unsupported version 2");
    ASSERT_BAD("sluice-envelope 1\n", "sluice-envelope 01\n", "line 1: bad version");
    ASSERT_BAD("sluice-envelope 1\n", "postfix-queue 1\n", "line 1: not a sluice envelope");
    ASSERT_BAD("size: 0\n", "size: 0\nsize: 1\n", "line 5: duplicate size");
    ASSERT_BAD("hold: no\n", "hold: no\nfrobnicate: yes\n", "line 9: unknown key");
    ASSERT_BAD("hold: no\n", "hold: no\nHOLD: yes\n", "bad key");
    ASSERT_BAD("rcpt-dsn-sent: no\n", "rcpt-dsn-sent: no\nhold: yes\n", "after the first rcpt");
    ASSERT_BAD("hold: no\n", "hold: no\nrcpt-state: pending\n", "outside a recipient block");
    ASSERT_BAD("rcpt-state: pending\n", "rcpt-state: pending\nrcpt-state: failed\n",
               "duplicate rcpt-state");
    ASSERT_BAD("hold: no\n", "", "line 9: missing hold"); /* reported at the first rcpt */
    ASSERT_BAD("rcpt-attempts: 0\n", "", "missing rcpt-attempts");
    ASSERT_BAD("rcpt-dsn-sent: no\n", "rcpt-dsn-sent: no\nrcpt: x@y.test\n", "missing rcpt-state");
    ASSERT_BAD("size: 0\n", "size: 00\n", "bad size");
    ASSERT_BAD("size: 0\n", "size: -1\n", "bad size");
    ASSERT_BAD("size: 0\n", "size: +1\n", "bad size");
    ASSERT_BAD("size: 0\n", "size: 18446744073709551616\n", "bad size");
    ASSERT_GOOD("size: 0\n", "size: 18446744073709551615\n");
    ASSERT_BAD("size: 0\n", "size:0\n", "expected \"key: value\"");
    ASSERT_BAD("size: 0\n", "size: \n", "expected \"key: value\"");
    ASSERT_BAD("size: 0\n", "size 0\n", "not a \"key: value\" line");
    ASSERT_BAD("crc32: 00000000\n", "crc32: 0000000A\n", "bad crc32");
    ASSERT_BAD("crc32: 00000000\n", "crc32: 0000000\n", "bad crc32");
    ASSERT_BAD("id: 18F3A2B4C5D6E0\n", "id: 18f3a2b4c5d6e0\n", "bad id");
    ASSERT_BAD("arrival: 2023-11-14T22:13:20.123456Z\n", "arrival: 2023-02-29T22:13:20.123456Z\n",
               "bad arrival");
    ASSERT_GOOD("arrival: 2023-11-14T22:13:20.123456Z\n", "arrival: 2024-02-29T23:59:59.999999Z\n");
    ASSERT_BAD("arrival: 2023-11-14T22:13:20.123456Z\n", "arrival: 2023-11-14T24:00:00.000000Z\n",
               "bad arrival");
    ASSERT_BAD("arrival: 2023-11-14T22:13:20.123456Z\n", "arrival: 2023-11-14T22:13:20.12345Z\n",
               "bad arrival");
    ASSERT_BAD("arrival: 2023-11-14T22:13:20.123456Z\n", "arrival: 2023-11-14 22:13:20.123456Z\n",
               "bad arrival");
    ASSERT_BAD("hold: no\n", "hold: true\n", "bad hold");
    ASSERT_BAD("hold: no\n", "hold: no\nret: full\n", "bad ret");
    ASSERT_BAD("hold: no\n", "hold: no\nbody: 9BIT\n", "bad body");
    ASSERT_BAD("rcpt-state: pending\n", "rcpt-state: active\n", "bad rcpt-state");
    ASSERT_BAD("rcpt-attempts: 0\n", "rcpt-attempts: 4294967296\n", "bad rcpt-attempts");
    ASSERT_GOOD("rcpt-attempts: 0\n", "rcpt-attempts: 4294967295\n");
    ASSERT_BAD("rcpt-next-attempt: 0\n", "rcpt-next-attempt: -5\n", "bad rcpt-next-attempt");
    ASSERT_BAD("rcpt-state: pending\n", "rcpt-state: pending\nrcpt-notify: NEVER,DELAY\n",
               "bad rcpt-notify");
    ASSERT_BAD("rcpt-state: pending\n", "rcpt-state: pending\nrcpt-notify: DELAY,DELAY\n",
               "bad rcpt-notify");
    ASSERT_BAD("rcpt-state: pending\n", "rcpt-state: pending\nrcpt-notify: FAILURE,\n",
               "bad rcpt-notify");
    ASSERT_GOOD("rcpt-state: pending\n", "rcpt-state: pending\nrcpt-notify: DELAY,FAILURE\n");
    ASSERT_BAD("rcpt: bob@example.test\n", "rcpt:\n", "empty rcpt");
    ASSERT_BAD("sender:\n", "sender: a\rb\n", "control character in sender");
    ASSERT_BAD("sender:\n", "sender: a\x7f\n", "control character in sender");
    ASSERT_GOOD("sender:\n", "sender: j\xc3\xb8rgen@example.test\n");
    ASSERT_BAD("hold: no\n", "hold: no\n\n", "not a \"key: value\" line");

    /* Values: 4096 bytes pass, 4097 do not; replies stop at 1000. */
    char big[5000];
    memcpy(big, "helo: ", 6);
    memset(big + 6, 'h', 4096);
    strcpy(big + 6 + 4096, "\nhold: no\n");
    ASSERT_GOOD("hold: no\n", big);
    memset(big + 6, 'h', 4097);
    strcpy(big + 6 + 4097, "\nhold: no\n");
    ASSERT_BAD("hold: no\n", big, "helo value longer than 4096 bytes");
    memcpy(big, "rcpt-last-reply: ", 17);
    memset(big + 17, 'r', 1001);
    strcpy(big + 17 + 1001, "\nrcpt-state: pending\n");
    ASSERT_BAD("rcpt-state: pending\n", big, "rcpt-last-reply too long");
}

static void test_end_line(void **state)
{
    envelope f;
    char err[128];
    size_t len;
    char *text = with_end(minimal_body, &len);

    envelope_init(&f);
    assert_int_equal(envelope_parse(text, len, &f, err, sizeof(err)), 0);
    /* Upper-case CRC digits are not the canonical form. */
    char *copy = strdup(text);
    for (char *p = strstr(copy, "end: ") + 5; *p != '\n'; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    if (strcmp(copy, text) != 0) {
        assert_int_equal(envelope_parse(copy, len, &f, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "bad end line"));
    }
    free(copy);
    /* Bytes after the end line. */
    copy = malloc(len + 2);
    memcpy(copy, text, len);
    memcpy(copy + len, "x\n", 2);
    assert_int_equal(envelope_parse(copy, len + 2, &f, err, sizeof(err)), -EINVAL);
    free(copy);
    /* No end line at all: the body alone. */
    assert_int_equal(envelope_parse(minimal_body, strlen(minimal_body), &f, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(envelope_parse(NULL, 0, &f, err, sizeof(err)), -EINVAL);
    /* A NUL byte in a value. */
    copy = malloc(len);
    memcpy(copy, text, len);
    char *s = strstr(copy, "bob@");
    s[1] = '\0';
    assert_int_equal(envelope_parse(copy, len, &f, err, sizeof(err)), -EINVAL);
    free(copy);
    free(text);
    envelope_free(&f);
}

static void test_limits(void **state)
{
    envelope e, f;
    sbuf out;
    char err[128];

    envelope_init(&e);
    envelope_init(&f);
    memcpy(e.id, "18F3A2B4C5D6E0", QUEUE_ID_LEN + 1);
    for (unsigned i = 0; i < ENVELOPE_MAX_RCPTS; i++)
        assert_int_equal(envelope_add_rcpt(&e, "r@example.test", NULL, 0), 0);
    assert_int_equal(envelope_add_rcpt(&e, "r@example.test", NULL, 0), -E2BIG);
    sbuf_init(&out, 0);
    assert_int_equal(envelope_serialize(&e, &out), 0);
    assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), 0);
    assert_int_equal(f.nrcpt, ENVELOPE_MAX_RCPTS);

    /* One more recipient block, written by hand with a valid end line. */
    size_t body = out.len - 14;
    out.len = body;
    out.data[body] = '\0';
    sbuf_puts(&out, "rcpt: r@example.test\nrcpt-state: pending\nrcpt-attempts: 0\n"
                    "rcpt-next-attempt: 0\nrcpt-last-attempt: 0\nrcpt-dsn-sent: no\n");
    uLong crc = crc32(0L, (const Bytef *)out.data, (uInt)out.len);
    sbuf_printf(&out, "end: %08lx\n", crc);
    assert_int_equal(envelope_parse(out.data, out.len, &f, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "more than 100000 recipients"));
    assert_int_equal(f.nrcpt, 0);

    /* A file over ENVELOPE_MAX_SIZE is refused before it is read. */
    char *huge = calloc(1, ENVELOPE_MAX_SIZE + 1);
    assert_int_equal(envelope_parse(huge, ENVELOPE_MAX_SIZE + 1, &f, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "larger than"));
    free(huge);

    /* Long addresses: the serialiser refuses what the parser would. */
    envelope_free(&e);
    envelope_init(&e);
    memcpy(e.id, "18F3A2B4C5D6E0", QUEUE_ID_LEN + 1);
    char *addr = malloc(4000);
    memset(addr, 'a', 3999);
    addr[3999] = '\0';
    for (unsigned i = 0; i < 5000; i++)
        assert_int_equal(envelope_add_rcpt(&e, addr, NULL, 0), 0);
    sbuf_reset(&out);
    assert_int_equal(envelope_serialize(&e, &out), -EFBIG);
    assert_int_equal(out.len, 0);
    free(addr);
    sbuf_free(&out);
    envelope_free(&e);
    envelope_free(&f);
}

static void test_serialize_refuses(void **state)
{
    envelope e;
    sbuf out;

    sbuf_init(&out, 0);
    sbuf_puts(&out, "keep");
#define REFUSE(setup, want)                                                                        \
    do {                                                                                           \
        fill_full(&e);                                                                             \
        setup;                                                                                     \
        assert_int_equal(envelope_serialize(&e, &out), want);                                      \
        assert_int_equal(out.len, 4);                                                              \
        assert_string_equal(out.data, "keep");                                                     \
        envelope_free(&e);                                                                         \
    } while (0)
    REFUSE(e.id[0] = 'x', -EINVAL);
    REFUSE(e.id[0] = '\0', -EINVAL);
    REFUSE(e.arrival_us = -1, -EINVAL);
    REFUSE(e.ret = 7, -EINVAL);
    REFUSE(e.body = -1, -EINVAL);
    REFUSE(e.rcpts[0].notify = SMTP_NOTIFY_NEVER | SMTP_NOTIFY_DELAY, -EINVAL);
    REFUSE(e.rcpts[0].notify = 0x100, -EINVAL);
    REFUSE(e.rcpts[0].next_attempt = -1, -EINVAL);
    REFUSE(e.rcpts[0].state = (enum rcpt_state)9, -EINVAL);
    REFUSE(envelope_set(&e.rcpts[0].addr, ""), -EINVAL);
    char big[ENVELOPE_MAX_VALUE + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    REFUSE(envelope_set(&e.helo, big), -EINVAL);
    /* A bounded output buffer: its own error, output untouched. */
    sbuf small;
    sbuf_init(&small, 64);
    fill_full(&e);
    assert_int_equal(envelope_serialize(&e, &small), -ENOBUFS);
    assert_int_equal(small.len, 0);
    envelope_free(&e);
    sbuf_free(&small);
    sbuf_free(&out);
}

static void test_time_format(void **state)
{
    char buf[40];
    int64_t us;

    envelope_format_time(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    envelope_format_time(INT64_C(1700000000123456), buf, sizeof(buf));
    assert_string_equal(buf, "2023-11-14T22:13:20.123456Z");
    envelope_format_time(INT64_C(1709251199999999), buf, sizeof(buf));
    assert_string_equal(buf, "2024-02-29T23:59:59.999999Z");
    envelope_format_time(INT64_C(253402300799999999), buf, sizeof(buf));
    assert_string_equal(buf, "9999-12-31T23:59:59.999999Z");
    assert_int_equal(envelope_parse_time(buf, strlen(buf), &us), 0);
    assert_int_equal(us, INT64_C(253402300799999999));
    /* Every instant round-trips (a sample across the range). */
    for (int64_t t = 0; t < INT64_C(253402300799999999); t += INT64_C(98765432109877)) {
        envelope_format_time(t, buf, sizeof(buf));
        assert_int_equal(envelope_parse_time(buf, strlen(buf), &us), 0);
        assert_int_equal(us, t);
    }
    assert_int_equal(envelope_parse_time("1969-12-31T23:59:59.999999Z", 27, &us), -EINVAL);
    assert_int_equal(envelope_parse_time("2100-02-29T00:00:00.000000Z", 27, &us), -EINVAL);
    assert_int_equal(envelope_parse_time("2000-02-29T00:00:00.000000Z", 27, &us), 0);
    assert_int_equal(envelope_parse_time("2023-11-14T22:13:60.000000Z", 27, &us), -EINVAL);
}

static void test_names(void **state)
{
    assert_string_equal(rcpt_state_name(RCPT_PENDING), "pending");
    assert_string_equal(rcpt_state_name(RCPT_DEFERRED), "deferred");
    assert_string_equal(rcpt_state_name(RCPT_DELIVERED), "delivered");
    assert_string_equal(rcpt_state_name(RCPT_FAILED), "failed");
    envelope e;
    envelope_init(&e);
    assert_true(envelope_all_final(&e)); /* vacuously */
    assert_int_equal(envelope_add_rcpt(&e, NULL, NULL, 0), -EINVAL);
    envelope_free(&e);
    envelope_free(&e); /* free leaves it initialised: twice is fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_fields),
        cmocka_unit_test(test_exact_form),
        cmocka_unit_test(test_control_chars_replaced),
        cmocka_unit_test(test_reply_truncated),
        cmocka_unit_test(test_truncated_every_offset),
        cmocka_unit_test(test_flipped_bytes),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_end_line),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_serialize_refuses),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
