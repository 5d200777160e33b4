/*
 * test_cli_input.c - what `sluice sendmail` makes of its standard input:
 * LF and CRLF lines to CRLF, stray CRs dropped, the lone-dot end (and -i),
 * dot-stuffing, long lines broken (body) or folded (headers), the header
 * section kept with its continuation lines, the mbox "From " line, the
 * start of the body at a non-header line, and the header size bound. Every
 * input is also fed one byte at a time: the result must not depend on how
 * reads split it. (The pure CLI file is compiled in.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../queue/cli_input.c"

/* The DATA bytes: header fields as sent (no Bcc filtering), a separator
 * when the body started, then the body. */
static void run(const char *input, size_t len, bool ignore_dots, bool bytewise, sbuf *wire,
                bool *ended)
{
    sbuf out;
    sbuf_init(&out, 0);
    cli_input in;
    cli_input_init(&in, ignore_dots, &out);
    size_t off = 0;
    while (off < len && !in.ended) {
        size_t n = bytewise ? 1 : len - off;
        long rc = cli_input_feed(&in, input + off, n);
        assert_true(rc >= 0);
        off += (size_t)rc;
        if ((size_t)rc < n)
            break;
    }
    assert_int_equal(cli_input_finish(&in), 0);
    sbuf_reset(wire);
    for (size_t i = 0; i < in.nfields; i++)
        assert_int_equal(cli_field_emit(&in, i, wire), 0);
    if (in.in_body)
        assert_int_equal(sbuf_append(wire, "\r\n", 2), 0);
    assert_int_equal(sbuf_append(wire, out.data ? out.data : "", out.len), 0);
    *ended = in.ended;
    cli_input_free(&in);
    sbuf_free(&out);
}

static void check(const char *input, bool ignore_dots, const char *want, bool want_ended)
{
    sbuf a, b;
    bool ea, eb;
    sbuf_init(&a, 0);
    sbuf_init(&b, 0);
    run(input, strlen(input), ignore_dots, false, &a, &ea);
    run(input, strlen(input), ignore_dots, true, &b, &eb);
    if (strcmp(a.data ? a.data : "", want) != 0)
        print_message("input %s\n got  '%s'\n want '%s'\n", input, a.data, want);
    assert_string_equal(a.data ? a.data : "", want);
    assert_string_equal(b.data ? b.data : "", want);
    assert_int_equal(ea, want_ended);
    assert_int_equal(eb, want_ended);
    sbuf_free(&a);
    sbuf_free(&b);
}

static void test_line_ends(void **state)
{
    (void)state;
    check("Subject: x\n\nline 1\nline 2\n", false, "Subject: x\r\n\r\nline 1\r\nline 2\r\n", false);
    check("Subject: x\r\n\r\nline 1\r\nline 2\r\n", false, "Subject: x\r\n\r\nline 1\r\nline 2\r\n",
          false);
    /* The last line without its line end gets one. */
    check("Subject: x\n\nno newline", false, "Subject: x\r\n\r\nno newline\r\n", false);
    /* A CR that ends nothing is dropped: the server refuses bare CRs. */
    check("S: a\rb\n\nx\ry\r\r\nz\r", false, "S: ab\r\n\r\nxy\r\nz\r\n", false);
    check("", false, "", false);
}

static void test_dots(void **state)
{
    (void)state;
    /* Without -i a lone "." ends the input; what follows is not sent. */
    check("S: x\n\nbefore\n.\nafter\n", false, "S: x\r\n\r\nbefore\r\n", true);
    check("S: x\n\nbefore\r\n.\r\nafter\n", false, "S: x\r\n\r\nbefore\r\n", true);
    check("S: x\n\nbefore\n.", false, "S: x\r\n\r\nbefore\r\n", true);
    check(".\nS: x\n", false, "", true);
    /* With -i it is text, dot-stuffed. */
    check("S: x\n\nbefore\n.\nafter\n", true, "S: x\r\n\r\nbefore\r\n..\r\nafter\r\n", false);
    /* Lines starting with a dot are stuffed either way. */
    check("S: x\n\n.hidden\n..two\n. space\n", false,
          "S: x\r\n\r\n..hidden\r\n...two\r\n.. space\r\n", false);
    /* ".x" is not the end; ".\r" then text is not either. */
    check("S: x\n\n.x\n.\rz\n", false, "S: x\r\n\r\n..x\r\n..z\r\n", false);
    /* A CR before the dot hides it: not a lone dot. */
    check("S: x\n\n\r.\nmore\n", false, "S: x\r\n\r\n..\r\nmore\r\n", false);
}

static void test_header_section(void **state)
{
    (void)state;
    /* Continuation lines stay with their field; stored joined by CRLF. */
    check("To: a@x.test,\n  b@y.test\nSubject: s\n\nbody\n", false,
          "To: a@x.test,\r\n  b@y.test\r\nSubject: s\r\n\r\nbody\r\n", false);
    /* No header at all: the body starts at once (after a separator). */
    check("just text\nmore\n", false, "\r\njust text\r\nmore\r\n", false);
    /* A non-header line ends the header section; the body starts there. */
    check("Subject: s\nnot a header\n", false, "Subject: s\r\n\r\nnot a header\r\n", false);
    check("Subject: s\n continued\n", false, "Subject: s\r\n continued\r\n", false);
    /* A continuation without a field is body. */
    check(" indented\n", false, "\r\n indented\r\n", false);
    /* The mbox separator line is dropped. */
    check("From alice Mon Jan  1 00:00:00 2026\nSubject: s\n\nb\n", false,
          "Subject: s\r\n\r\nb\r\n", false);
    /* "From " later is just text. */
    check("Subject: s\n\nFrom here on\n", false, "Subject: s\r\n\r\nFrom here on\r\n", false);
    /* Obsolete "Name :" form is a field; headers only, no body. */
    check("Subject : s\n", false, "Subject : s\r\n", false);
    /* An empty first line: no headers, empty separator, then the body. */
    check("\nbody\n", false, "\r\nbody\r\n", false);
}

static void test_fields(void **state)
{
    (void)state;
    const char *msg = "To: a@x.test,\n\tb@y.test\nBCC: hidden@z.test\nSubject: s\n\nbody\n";
    sbuf out, v;
    sbuf_init(&out, 0);
    sbuf_init(&v, 0);
    cli_input in;
    cli_input_init(&in, false, &out);
    assert_int_equal(cli_input_feed(&in, msg, strlen(msg)), (long)strlen(msg));
    assert_int_equal(cli_input_finish(&in), 0);
    assert_true(in.in_body);
    assert_int_equal(in.nfields, 3);
    assert_true(cli_field_is(&in, 0, "to"));
    assert_true(cli_field_is(&in, 1, "Bcc"));
    assert_false(cli_field_is(&in, 1, "Bc"));
    assert_false(cli_field_is(&in, 2, "Subjects"));
    assert_int_equal(cli_field_value(&in, 0, &v), 0);
    assert_string_equal(v.data, " a@x.test,\tb@y.test");
    assert_int_equal(cli_field_value(&in, 1, &v), 0);
    assert_string_equal(v.data, " hidden@z.test");
    assert_string_equal(out.data, "body\r\n");
    cli_input_free(&in);
    sbuf_free(&out);
    sbuf_free(&v);
}

static void test_long_lines(void **state)
{
    (void)state;
    /* Body: broken at CLI_LINE_MAX with CRLF; a dot at a new line start is stuffed. */
    char in[3000], want[3100];
    memcpy(in, "S: x\n\n", 6);
    memset(in + 6, 'a', 2500);
    in[6 + CLI_LINE_MAX] = '.';
    strcpy(in + 6 + 2500, "\n");
    sbuf w;
    bool ended;
    sbuf_init(&w, 0);
    run(in, strlen(in), false, false, &w, &ended);
    size_t o = 0;
    o += (size_t)sprintf(want + o, "S: x\r\n\r\n");
    memset(want + o, 'a', CLI_LINE_MAX);
    o += CLI_LINE_MAX;
    o += (size_t)sprintf(want + o, "\r\n..");
    memset(want + o, 'a', CLI_LINE_MAX - 2);
    o += CLI_LINE_MAX - 2;
    o += (size_t)sprintf(want + o, "\r\n");
    size_t rest = 2500 - CLI_LINE_MAX - 1 - (CLI_LINE_MAX - 2);
    memset(want + o, 'a', rest);
    o += rest;
    o += (size_t)sprintf(want + o, "\r\n");
    want[o] = '\0';
    assert_string_equal(w.data, want);
    /* No wire line is longer than 1000 octets with its CRLF. */
    for (char *p = w.data, *nl; (nl = strstr(p, "\r\n")); p = nl + 2)
        assert_true((size_t)(nl - p) <= CLI_LINE_MAX);

    /* A header: folded with CRLF SP, so the field goes on. */
    char h[1600];
    memcpy(h, "X-Long: ", 8);
    memset(h + 8, 'b', 1500);
    strcpy(h + 1508, "\n\nbody\n");
    run(h, strlen(h), false, true, &w, &ended);
    char *fold = strstr(w.data, "\r\n ");
    assert_non_null(fold);
    assert_int_equal(fold - w.data, CLI_LINE_MAX);
    assert_non_null(strstr(w.data, "\r\n\r\nbody\r\n"));
    sbuf_free(&w);
}

static void test_header_bound(void **state)
{
    (void)state;
    sbuf out;
    sbuf_init(&out, 0);
    cli_input in;
    cli_input_init(&in, false, &out);
    char line[1000];
    memset(line, 'v', sizeof(line));
    memcpy(line, "X-H: ", 5);
    line[sizeof(line) - 1] = '\n';
    long rc = 0;
    for (size_t total = 0; total <= CLI_HEADER_MAX + sizeof(line) && rc >= 0; total += sizeof(line))
        rc = cli_input_feed(&in, line, sizeof(line));
    assert_int_equal(rc, -ENOBUFS);
    assert_true(in.hdr.len <= CLI_HEADER_MAX);
    cli_input_free(&in);

    /* The body has no bound: it is never kept. */
    cli_input_init(&in, false, &out);
    assert_int_equal(cli_input_feed(&in, "S: x\n\n", 6), 6);
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(cli_input_feed(&in, line, sizeof(line)), (long)sizeof(line));
        sbuf_reset(&out); /* what the caller does after each write */
    }
    cli_input_free(&in);
    sbuf_free(&out);
}

static void test_header_emit(void **state)
{
    (void)state;
    sbuf w;
    sbuf_init(&w, 0);
    assert_int_equal(cli_header_emit(&w, "From: A <a@x.test>", 18), 0);
    assert_string_equal(w.data, "From: A <a@x.test>\r\n");
    sbuf_free(&w);
}

static void from(const char *name, const char *want)
{
    sbuf w;
    sbuf_init(&w, 0);
    assert_int_equal(cli_from_field(name, "a@x.test", &w), 0);
    assert_string_equal(w.data, want);
    sbuf_free(&w);
}

static void test_from_field(void **state)
{
    (void)state;
    from(NULL, "From: a@x.test");
    from("", "From: a@x.test");
    from("Build Robot", "From: Build Robot <a@x.test>");
    from("J. Smith", "From: \"J. Smith\" <a@x.test>");
    from("Smith, \"J\" \\", "From: \"Smith, \\\"J\\\" \\\\\" <a@x.test>");
    from("J\xc3\xb6rg", "From: =?UTF-8?B?SsO2cmc=?= <a@x.test>");
    from("a\r\nBcc: x", "From: =?UTF-8?B?YQ0KQmNjOiB4?= <a@x.test>");
    /* Long names: several encoded words, never splitting a UTF-8 sequence. */
    char name[200] = "";
    for (int i = 0; i < 30; i++)
        strcat(name, "\xc3\xa9");
    sbuf w;
    sbuf_init(&w, 0);
    assert_int_equal(cli_from_field(name, "a@x.test", &w), 0);
    assert_non_null(strstr(w.data, "?= =?UTF-8?B?"));
    for (char *p = w.data; (p = strstr(p, "=?UTF-8?B?")); p += 10)
        assert_true(strchr(p, '?') && strstr(p + 10, "?=") - (p + 10) <= 60);
    sbuf_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_ends),      cmocka_unit_test(test_dots),
        cmocka_unit_test(test_header_section), cmocka_unit_test(test_fields),
        cmocka_unit_test(test_long_lines),     cmocka_unit_test(test_header_bound),
        cmocka_unit_test(test_header_emit),    cmocka_unit_test(test_from_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
