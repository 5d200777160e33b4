/* test_handoff.c - the journal hand-off's datagrams (handoff_format.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/handoff_format.h"

#define ID1 "18F3A2B4C5D6E0"
#define ID2 "18F3A2B4C5D6F0"

struct seen {
    int n;
    char ids[4][QUEUE_ID_LEN + 1];
    uint64_t seqs[4];
    bool keep[4];
    char env[4][64], msg[4][64];
};

static void see_rec(void *arg, const journal_rec *r)
{
    struct seen *s = arg;
    assert_true(s->n < 4);
    snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", r->id);
    s->seqs[s->n] = r->seq;
    snprintf(s->env[s->n], sizeof(s->env[0]), "%.*s", (int)r->env_len, r->env);
    snprintf(s->msg[s->n], sizeof(s->msg[0]), "%.*s", (int)r->msg_len, r->msg);
    s->n++;
}

static void see_ack(void *arg, bool keep, uint64_t seq, const char *id)
{
    struct seen *s = arg;
    assert_true(s->n < 4);
    snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", id);
    s->seqs[s->n] = seq;
    s->keep[s->n] = keep;
    s->n++;
}

/* A hand-off of two records of generation 7, as the syncer sends it. */
static size_t two_records(uint8_t *buf, uint32_t gen)
{
    handoff_header(buf, gen);
    size_t off = HANDOFF_HDR_LEN;
    journal_rec_encode(buf + off, gen, 41, ID1, 0, "env-a", 5, "msg-a", 5);
    off += journal_rec_size(5, 5);
    journal_rec_encode(buf + off, gen, 42, ID2, 0, "env-b", 5, "message b", 9);
    journal_rec_set_last(buf + off);
    return off + journal_rec_size(5, 9);
}

static void test_records(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = two_records(buf, 7);
    struct seen s = {0};
    size_t rest = 99;
    assert_true(handoff_is_records(buf, len));
    assert_int_equal(handoff_records_parse(buf, len, 1000, 1000, see_rec, &s, &rest), 2);
    assert_int_equal(rest, 0);
    assert_string_equal(s.ids[0], ID1);
    assert_int_equal(s.seqs[1], 42);
    assert_string_equal(s.env[1], "env-b");
    assert_string_equal(s.msg[1], "message b");
}

static void test_records_damaged(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = two_records(buf, 7);
    struct seen s = {0};
    size_t rest;
    /* Cut inside the second record: the first counts, the rest is reported. */
    assert_int_equal(handoff_records_parse(buf, len - 3, 1000, 1000, see_rec, &s, &rest), 1);
    assert_int_equal(rest, journal_rec_size(5, 9) - 3);
    /* A flipped payload byte fails the record's crc. */
    memset(&s, 0, sizeof(s));
    buf[HANDOFF_HDR_LEN + JOURNAL_REC_HDR] ^= 1;
    assert_int_equal(handoff_records_parse(buf, len, 1000, 1000, see_rec, &s, &rest), 0);
    assert_int_equal(rest, len - HANDOFF_HDR_LEN);
    /* The header's generation must be the records'. */
    len = two_records(buf, 7);
    handoff_header(buf, 8);
    assert_int_equal(handoff_records_parse(buf, len, 1000, 1000, see_rec, &s, &rest), 0);
    /* Bounds on the payloads. */
    handoff_header(buf, 7);
    assert_int_equal(handoff_records_parse(buf, len, 4, 1000, see_rec, &s, &rest), 0);
    /* Not a hand-off at all. */
    assert_false(handoff_is_records("new " ID1, 18));
    assert_int_equal(handoff_records_parse("jnl\n", 4, 10, 10, see_rec, &s, &rest), -EINVAL);
    assert_int_equal(handoff_records_parse("new x", 5, 10, 10, see_rec, &s, &rest), -EINVAL);
}

static void test_ack_roundtrip(void **state)
{
    (void)state;
    char text[200] = "done";
    size_t len = 4;
    len += handoff_ack_item(text + len, 0, ID1);
    len += handoff_ack_item(text + len, UINT64_MAX, ID2);
    text[len] = '\0';
    assert_string_equal(text, "done 0:" ID1 " 18446744073709551615:" ID2);
    struct seen s = {0};
    size_t bad = 9;
    assert_int_equal(handoff_ack_parse(text, len, see_ack, &s, &bad), 2);
    assert_int_equal(bad, 0);
    assert_false(s.keep[0]);
    assert_int_equal(s.seqs[0], 0);
    assert_int_equal(s.seqs[1], UINT64_MAX);
    assert_string_equal(s.ids[1], ID2);
    memset(&s, 0, sizeof(s));
    const char *k = "keep 7:" ID1 "\n";
    assert_int_equal(handoff_ack_parse(k, strlen(k), see_ack, &s, &bad), 1);
    assert_true(s.keep[0]);
    assert_int_equal(s.seqs[0], 7);
}

static void test_ack_malformed(void **state)
{
    (void)state;
    struct seen s = {0};
    size_t bad;
    const char *t = "done 07:" ID1 " 1:" ID1 "x 1-" ID1 " 18446744073709551616:" ID1 " :" ID1
                    " 5:../../etc/pas 3:" ID2;
    /* Leading zero, long id, no colon, overflow, no digits, not an id: skipped. */
    assert_int_equal(handoff_ack_parse(t, strlen(t), see_ack, &s, &bad), 1);
    assert_int_equal(bad, 6);
    assert_int_equal(s.seqs[0], 3);
    assert_int_equal(handoff_ack_parse("flush", 5, see_ack, &s, &bad), -EINVAL);
    assert_int_equal(handoff_ack_parse("", 0, see_ack, &s, &bad), -EINVAL);
    assert_int_equal(handoff_ack_parse("done", 4, see_ack, &s, &bad), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_records_damaged),
        cmocka_unit_test(test_ack_roundtrip),
        cmocka_unit_test(test_ack_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
