/*
 * test_smtp_data.c - the DATA reader: end marker, dot-unstuffing, bare
 * CR/LF (smuggling), long lines, size limit, and independence from how the
 * input is split into reads; and agreement with a byte-by-byte model.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/smtp_data.h"

struct out {
    char buf[8192];
    size_t len;
};

static void emit(void *arg, const char *p, size_t n)
{
    struct out *o = arg;
    assert_true(o->len + n <= sizeof(o->buf));
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

struct result {
    struct out o;
    size_t consumed;
    smtp_data_reader r;
};

/* Feeds in chunks of `step` bytes (0 = all at once). */
static void run(const char *in, size_t len, size_t step, uint64_t max, struct result *res)
{
    memset(res, 0, sizeof(*res));
    smtp_data_init(&res->r, max);
    size_t off = 0;
    while (off < len && !res->r.done) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        /* exact-size heap copy: ASan catches any read past the chunk */
        char *chunk = malloc(n ? n : 1);
        memcpy(chunk, in + off, n);
        size_t used = smtp_data_feed(&res->r, chunk, n, emit, &res->o);
        free(chunk);
        assert_true(used <= n);
        off += used;
        if (used < n)
            assert_true(res->r.done);
    }
    res->consumed = off;
}

#define S(x) x, sizeof(x) - 1

static void check(const char *in, size_t len, const char *want, size_t wantlen, size_t consumed,
                  bool done, bool bare)
{
    for (size_t step = 0; step <= len; step++) {
        struct result res;
        run(in, len, step, 0, &res);
        assert_int_equal(res.r.done, done);
        assert_int_equal(res.r.bare_newline, bare);
        if (done)
            assert_int_equal(res.consumed, consumed);
        assert_int_equal(res.o.len, wantlen);
        assert_memory_equal(res.o.buf, want, wantlen);
    }
}

static void test_simple(void **st)
{
    (void)st;
    check(S("Subject: x\r\n\r\nhello\r\n.\r\n"), S("Subject: x\r\n\r\nhello\r\n"), 24, true, false);
}

static void test_empty_message(void **st)
{
    (void)st;
    check(S(".\r\n"), "", 0, 3, true, false);
}

static void test_rest_is_next_command(void **st)
{
    (void)st;
    const char in[] = "a\r\n.\r\nMAIL FROM:<x@y.test>\r\n";
    struct result res;
    run(in, sizeof(in) - 1, 0, 0, &res);
    assert_true(res.r.done);
    assert_int_equal(res.consumed, 6);
    assert_int_equal(res.o.len, 3);
}

static void test_dot_unstuffing_once(void **st)
{
    (void)st;
    check(S("..x\r\n...\r\n. \r\n.\r\n"), S(".x\r\n..\r\n \r\n"), 17, true, false);
}

static void test_dot_in_middle_of_line_kept(void **st)
{
    (void)st;
    check(S("a.b\r\nc.\r\n.\r\n"), S("a.b\r\nc.\r\n"), 12, true, false);
}

static void test_smuggling_variants_do_not_end(void **st)
{
    (void)st;
    /* Each fake end marker is followed by a smuggled command; the reader
     * must keep going until the real CRLF.CRLF and flag the message. */
    static const char *const fakes[] = {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r\n.\r"};
    for (size_t i = 0; i < sizeof(fakes) / sizeof(fakes[0]); i++) {
        char in[256];
        int n = snprintf(in, sizeof(in), "body%sMAIL FROM:<evil@x.test>\r\n.\r\n", fakes[i]);
        for (size_t step = 0; step <= (size_t)n; step++) {
            struct result res;
            run(in, (size_t)n, step, 0, &res);
            assert_true(res.r.done);
            assert_true(res.r.bare_newline);
            assert_int_equal(res.consumed, (size_t)n); /* the real end only */
        }
    }
}

static void test_bare_lf_and_cr_flagged(void **st)
{
    (void)st;
    check(S("a\nb\r\n.\r\n"), S("a\nb\r\n"), 8, true, true);
    check(S("a\rb\r\n.\r\n"), S("a\rb\r\n"), 8, true, true);
    check(S("a\r\r\n.\r\n"), S("a\r\r\n"), 7, true, true);
}

static void test_long_line(void **st)
{
    (void)st;
    char in[1200];
    struct result res;
    /* 998 octets + CRLF = 1000: fine */
    memset(in, 'a', 998);
    memcpy(in + 998, "\r\n.\r\n", 5);
    run(in, 1003, 0, 0, &res);
    assert_true(res.r.done);
    assert_false(res.r.long_line);
    /* 999 + CRLF = 1001: too long */
    memset(in, 'a', 999);
    memcpy(in + 999, "\r\n.\r\n", 5);
    run(in, 1004, 7, 0, &res);
    assert_true(res.r.done);
    assert_true(res.r.long_line);
}

static void test_size_limit(void **st)
{
    (void)st;
    struct result res;
    run(S("0123456789\r\n.\r\n"), 0, 12, &res);
    assert_true(res.r.done);
    assert_false(res.r.too_big);
    assert_int_equal(res.o.len, 12);
    run(S("0123456789\r\nx\r\n.\r\n"), 3, 12, &res);
    assert_true(res.r.done);
    assert_true(res.r.too_big);
    assert_true(res.o.len <= 12);
}

static void test_eight_bit_and_nul_pass(void **st)
{
    (void)st;
    check("\xc3\xa9\x00z\r\n.\r\n", 9, "\xc3\xa9\x00z\r\n", 6, 9, true, false);
}

static void test_incomplete_stays_open(void **st)
{
    (void)st;
    check(S("abc\r\n.\r"), S("abc\r\n"), 0, false, false);
}

/*
 * The reference: the reader as it was before its text state scanned with
 * memchr, one byte at a time, kept here as the model the fast one must
 * match on every input and every split.
 */
enum { R_BOL, R_TEXT, R_CR, R_DOT, R_DOT_CR };

struct ref {
    int state;
    size_t line_len, consumed;
    bool bare, long_line, done;
    struct out o;
};

static void ref_byte_out(struct ref *m, const char *p, size_t n)
{
    memcpy(m->o.buf + m->o.len, p, n);
    m->o.len += n;
}

static void ref_line_byte(struct ref *m)
{
    if (++m->line_len > SMTP_DATA_LINE_MAX)
        m->long_line = true;
}

static void ref_run(const char *in, size_t len, struct ref *m)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < len && !m->done;) {
        char c = in[i];
        switch (m->state) {
        case R_BOL:
            m->line_len = 0;
            if (c == '.') {
                ref_line_byte(m);
                m->state = R_DOT;
                i++;
            } else {
                m->state = R_TEXT;
            }
            break;
        case R_TEXT:
            ref_line_byte(m);
            if (c == '\r') {
                m->state = R_CR;
            } else if (c == '\n') {
                m->bare = true;
                m->line_len = 0;
            }
            ref_byte_out(m, &c, 1);
            i++;
            break;
        case R_CR:
            if (c == '\n') {
                ref_line_byte(m);
                ref_byte_out(m, &c, 1);
                m->state = R_BOL;
                i++;
            } else {
                m->bare = true;
                m->state = R_TEXT;
            }
            break;
        case R_DOT:
            if (c == '\r') {
                ref_line_byte(m);
                m->state = R_DOT_CR;
                i++;
            } else {
                m->state = R_TEXT; /* the stuffing dot is dropped */
            }
            break;
        case R_DOT_CR:
            if (c == '\n') {
                m->done = true;
                m->consumed = i + 1;
            } else {
                m->bare = true;
                ref_byte_out(m, "\r", 1);
                m->state = R_TEXT;
            }
            break;
        }
    }
}

/* Random mail-like input: text runs (some past the line limit), CRLFs,
 * dots at line starts, bare CRs and LFs. */
static size_t random_input(char *buf, size_t cap, uint32_t *seed)
{
    size_t n = 0;
    while (n + 1200 < cap) {
        *seed = *seed * 1103515245u + 12345u;
        unsigned pick = (*seed >> 16) % 16, run;
        if (pick < 6) {
            run = (*seed >> 8) % (pick == 0 ? 1100 : 80);
            memset(buf + n, 'x', run);
            n += run;
        } else if (pick < 11) {
            memcpy(buf + n, "\r\n", 2);
            n += 2;
        } else if (pick < 14) {
            buf[n++] = '.';
        } else {
            buf[n++] = pick == 14 ? '\r' : '\n';
        }
        if (((*seed >> 4) & 63) == 0)
            break;
    }
    return n;
}

static void test_matches_byte_by_byte_model(void **st)
{
    (void)st;
    static char in[6000];
    uint32_t seed = 20261123;
    for (int k = 0; k < 3000; k++) {
        size_t len = random_input(in, sizeof(in), &seed);
        struct ref m;
        ref_run(in, len, &m);
        const size_t steps[] = {0, 1, 2, 3, 7, 64, 999, 1000, 1001};
        for (size_t j = 0; j < sizeof(steps) / sizeof(steps[0]); j++) {
            struct result res;
            run(in, len, steps[j], 0, &res);
            assert_int_equal(res.r.done, m.done);
            assert_int_equal(res.r.bare_newline, m.bare);
            assert_int_equal(res.r.long_line, m.long_line);
            if (m.done)
                assert_int_equal(res.consumed, m.consumed);
            assert_int_equal(res.o.len, m.o.len);
            assert_memory_equal(res.o.buf, m.o.buf, m.o.len);
        }
    }
}

static void count_emit(void *arg, const char *p, size_t n)
{
    (void)p;
    *(size_t *)arg += n;
}

/*
 * 2 Mi lines ended by bare LFs in one read. The reader must search each
 * byte once: a search for the next CR from every line start would take
 * hours here instead of milliseconds. The alarm turns such a hang into a
 * failure (SIGALRM ends the test) instead of a stuck suite.
 */
static void test_bare_lf_lines_scan_once(void **st)
{
    (void)st;
    size_t lines = (size_t)2 << 20, len = lines * 2 + 5;
    char *in = malloc(len);
    assert_non_null(in);
    for (size_t k = 0; k < lines; k++)
        memcpy(in + 2 * k, "a\n", 2);
    memcpy(in + lines * 2, "\r\n.\r\n", 5);
    smtp_data_reader r;
    smtp_data_init(&r, 0);
    size_t got = 0;
    alarm(60);
    size_t used = smtp_data_feed(&r, in, len, count_emit, &got);
    alarm(0);
    free(in);
    assert_int_equal(used, len);
    assert_true(r.done);
    assert_true(r.bare_newline);
    assert_false(r.long_line);
    assert_int_equal(got, lines * 2 + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_rest_is_next_command),
        cmocka_unit_test(test_dot_unstuffing_once),
        cmocka_unit_test(test_dot_in_middle_of_line_kept),
        cmocka_unit_test(test_smuggling_variants_do_not_end),
        cmocka_unit_test(test_bare_lf_and_cr_flagged),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_eight_bit_and_nul_pass),
        cmocka_unit_test(test_incomplete_stays_open),
        cmocka_unit_test(test_matches_byte_by_byte_model),
        cmocka_unit_test(test_bare_lf_lines_scan_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
