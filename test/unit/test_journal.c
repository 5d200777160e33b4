/* test_journal.c - the spool journal's bytes: records, region scans, marks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/journal_format.h"

#define REGION (16 * JOURNAL_PAGE)
#define MAXLEN (REGION)

static const char ID1[] = "18F3A2B4C5D6A0";
static const char ID2[] = "18F3A2B4C5D6B0";
static const char ID3[] = "18F3A2B4C5D6C0";

struct seen {
    size_t n;
    uint64_t seq[16];
    char id[16][QUEUE_ID_LEN + 1];
    size_t env_len[16], msg_len[16];
};

static void see(void *arg, const journal_rec *r)
{
    struct seen *s = arg;
    if (s->n < 16) {
        s->seq[s->n] = r->seq;
        memcpy(s->id[s->n], r->id, QUEUE_ID_LEN + 1);
        s->env_len[s->n] = r->env_len;
        s->msg_len[s->n] = r->msg_len;
    }
    s->n++;
}

static void test_record_round_trip(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char env[] = "sluice-envelope 1\nid: 18F3A2B4C5D6A0\nend: 0\n";
    const char msg[] = "Subject: x\r\n\r\nbody\r\n";
    size_t len = journal_rec_size(strlen(env), strlen(msg));
    assert_int_equal(len, JOURNAL_REC_HDR + strlen(env) + strlen(msg));
    journal_rec_encode(buf, 7, 42, ID1, 0, env, (uint32_t)strlen(env), msg, (uint32_t)strlen(msg));

    journal_rec r;
    assert_int_equal(journal_rec_decode(buf, len, 7, MAXLEN, MAXLEN, &r), len);
    assert_int_equal(r.seq, 42);
    assert_string_equal(r.id, ID1);
    assert_int_equal(r.flags, 0);
    assert_memory_equal(r.env, env, strlen(env));
    assert_memory_equal(r.msg, msg, strlen(msg));

    journal_rec_set_last(buf);
    assert_int_equal(journal_rec_decode(buf, len, 7, MAXLEN, MAXLEN, &r), len);
    assert_int_equal(r.flags, JOURNAL_F_LAST);

    /* Empty payloads are records too. */
    journal_rec_encode(buf, 1, 1, ID2, 0, NULL, 0, NULL, 0);
    assert_int_equal(journal_rec_decode(buf, JOURNAL_REC_HDR, 1, MAXLEN, MAXLEN, &r),
                     JOURNAL_REC_HDR);
    assert_int_equal(r.env_len + r.msg_len, 0);
}

static void test_record_rejections(void **state)
{
    (void)state;
    uint8_t buf[256], bad[256];
    journal_rec r;
    size_t len = journal_rec_size(5, 7);
    journal_rec_encode(buf, 3, 9, ID1, 0, "hello", 5, "message", 7);

    assert_int_equal(journal_rec_decode(buf, len, 4, MAXLEN, MAXLEN, &r), 0);     /* other gen */
    assert_int_equal(journal_rec_decode(buf, len - 1, 3, MAXLEN, MAXLEN, &r), 0); /* cut */
    assert_int_equal(journal_rec_decode(buf, 10, 3, MAXLEN, MAXLEN, &r), 0);
    assert_int_equal(journal_rec_decode(buf, len, 3, 4, MAXLEN, &r), 0); /* env over bound */
    assert_int_equal(journal_rec_decode(buf, len, 3, MAXLEN, 6, &r), 0); /* msg over bound */
    for (size_t i = 0; i < len; i++) {
        /* Any one byte changed anywhere fails the magic, gen, bounds or crc. */
        memcpy(bad, buf, len);
        bad[i] ^= 0x01;
        assert_int_equal(journal_rec_decode(bad, len, 3, MAXLEN, MAXLEN, &r), 0);
    }
    /* An id that is not a queue id (a file name of our choosing) and
     * unknown flags are refused even with a right crc. */
    journal_rec_encode(bad, 3, 9, "../../etc/pwd0", 0, "hello", 5, "message", 7);
    assert_int_equal(journal_rec_decode(bad, len, 3, MAXLEN, MAXLEN, &r), 0);
    journal_rec_encode(bad, 3, 9, ID1, 0x8, "hello", 5, "message", 7);
    assert_int_equal(journal_rec_decode(bad, len, 3, MAXLEN, MAXLEN, &r), 0);
}

/* Appends records as one write: the last gets JOURNAL_F_LAST and the next
 * write starts at a page boundary, as spool_journal.c does. */
static size_t put_write(uint8_t *region, size_t off, uint32_t gen, const uint64_t *seqs,
                        const char *const *ids, size_t n, size_t msg_len)
{
    static char msg[3 * JOURNAL_PAGE];
    memset(msg, 'm', sizeof(msg));
    size_t last = off;
    for (size_t i = 0; i < n; i++) {
        last = off;
        journal_rec_encode(region + off, gen, seqs[i], ids[i], 0, "env", 3, msg, (uint32_t)msg_len);
        off += journal_rec_size(3, msg_len);
    }
    journal_rec_set_last(region + last);
    return (off + JOURNAL_PAGE - 1) / JOURNAL_PAGE * JOURNAL_PAGE;
}

static void test_region_scan(void **state)
{
    (void)state;
    uint8_t *region = calloc(1, REGION);
    struct seen s = {0};
    size_t end;
    bool torn;

    journal_region_encode(region, 0, 5, REGION);
    size_t off = JOURNAL_PAGE;
    off = put_write(region, off, 5, (uint64_t[]){10, 11}, (const char *[]){ID1, ID2}, 2, 100);
    assert_int_equal(off, 2 * JOURNAL_PAGE);
    off = put_write(region, off, 5, (uint64_t[]){12}, (const char *[]){ID3}, 1, 5000);
    assert_int_equal(off, 4 * JOURNAL_PAGE); /* 5 KiB: two pages */

    assert_int_equal(journal_region_scan(region, REGION, 5, MAXLEN, MAXLEN, see, &s, &end, &torn),
                     3);
    assert_false(torn);
    assert_int_equal(end, 4 * JOURNAL_PAGE);
    assert_int_equal(s.seq[0], 10);
    assert_int_equal(s.seq[2], 12);
    assert_string_equal(s.id[1], ID2);
    assert_int_equal(s.msg_len[2], 5000);

    /* Stale records of an older generation after the newest write do not
     * count, however valid they are in themselves. */
    size_t stale = put_write(region, off, 4, (uint64_t[]){99}, (const char *[]){ID1}, 1, 10);
    memset(&s, 0, sizeof(s));
    assert_int_equal(journal_region_scan(region, REGION, 5, MAXLEN, MAXLEN, see, &s, &end, &torn),
                     3);
    assert_false(torn);

    /* A write a crash cut short: magic and gen right, the rest not. */
    memset(region + off, 0, stale - off);
    put_write(region, off, 5, (uint64_t[]){13}, (const char *[]){ID1}, 1, 200);
    region[off + JOURNAL_REC_HDR + 50] ^= 0xff;
    memset(&s, 0, sizeof(s));
    assert_int_equal(journal_region_scan(region, REGION, 5, MAXLEN, MAXLEN, see, &s, &end, &torn),
                     3);
    assert_true(torn);
    assert_int_equal(end, off);

    /* Sequence numbers that do not grow end the region. */
    put_write(region, off, 5, (uint64_t[]){12}, (const char *[]){ID1}, 1, 200);
    memset(&s, 0, sizeof(s));
    assert_int_equal(journal_region_scan(region, REGION, 5, MAXLEN, MAXLEN, see, &s, &end, &torn),
                     3);

    /* The last write of a full region: reading ends at the region's end;
     * a region too short for a record header holds nothing. */
    memset(region + JOURNAL_PAGE, 0, REGION - JOURNAL_PAGE);
    put_write(region, JOURNAL_PAGE, 5, (uint64_t[]){1}, (const char *[]){ID1}, 1, 100);
    memset(&s, 0, sizeof(s));
    assert_int_equal(
        journal_region_scan(region, 2 * JOURNAL_PAGE, 5, MAXLEN, MAXLEN, see, &s, &end, &torn), 1);
    assert_int_equal(end, 2 * JOURNAL_PAGE);
    assert_int_equal(
        journal_region_scan(region, JOURNAL_PAGE + 20, 5, MAXLEN, MAXLEN, see, &s, &end, &torn), 0);
    assert_int_equal(end, JOURNAL_PAGE);
    free(region);
}

static void test_region_header_and_mark(void **state)
{
    (void)state;
    uint8_t page[JOURNAL_PAGE];
    uint32_t gen;
    uint64_t size, mark;

    journal_region_encode(page, 1, 77, 4u << 20);
    assert_true(journal_region_decode(page, 1, &gen, &size));
    assert_int_equal(gen, 77);
    assert_int_equal(size, 4u << 20);
    assert_false(journal_region_decode(page, 0, &gen, &size)); /* the other region's */
    page[13] ^= 1;
    assert_false(journal_region_decode(page, 1, &gen, &size));

    uint8_t slot[JOURNAL_MARK_SLOT];
    journal_mark_encode(slot, 123456789012ull);
    assert_true(journal_mark_decode(slot, &mark));
    assert_int_equal(mark, 123456789012ull);
    slot[9] ^= 0x10;
    assert_false(journal_mark_decode(slot, &mark));
    memset(slot, 0, sizeof(slot));
    assert_false(journal_mark_decode(slot, &mark));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_rejections),
        cmocka_unit_test(test_region_scan),
        cmocka_unit_test(test_region_header_and_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
