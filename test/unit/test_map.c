/*
 * test_map.c - "key value" maps: lookups, the case rules of map.h, comments,
 * bad lines with their exact "FILE:LINE: message", bounds, and growth.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/map.h"

#define MAX_DIAGS 32

struct diags {
    int n;
    char *msg[MAX_DIAGS];
};

static void collect(void *arg, const char *diag)
{
    struct diags *d = arg;
    if (d->n < MAX_DIAGS) {
        d->msg[d->n] = strdup(diag);
        assert_non_null(d->msg[d->n]);
    }
    d->n++;
}

static void diags_free(struct diags *d)
{
    for (int i = 0; i < d->n && i < MAX_DIAGS; i++)
        free(d->msg[i]);
    memset(d, 0, sizeof(*d));
}

static void print_diags(const struct diags *d)
{
    for (int i = 0; i < d->n && i < MAX_DIAGS; i++)
        print_message("  diag: %s\n", d->msg[i]);
}

static map *load_ok(const char *text)
{
    struct diags d = {0};
    map *m = NULL;
    int rc = map_load_buffer("t.map", text, strlen(text), &m, collect, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    assert_int_equal(d.n, 0);
    assert_non_null(m);
    diags_free(&d);
    return m;
}

static const char *lk(const map *m, const char *key)
{
    return map_lookup(m, key, strlen(key));
}

static void test_basic(void **state)
{
    map *m = load_ok("# mailboxes\n"
                     "\n"
                     "bob@example.test    users/bob/Maildir/\n"
                     "  amy@example.test\tusers/amy   \n"
                     "postmaster@example.test  bob@example.test,  amy@example.test , x@y.test\n"
                     "last@example.test last");
    assert_int_equal(map_count(m), 4);
    assert_string_equal(lk(m, "bob@example.test"), "users/bob/Maildir/");
    assert_string_equal(lk(m, "amy@example.test"), "users/amy");
    /* Values keep their inner text as written. */
    assert_string_equal(lk(m, "postmaster@example.test"),
                        "bob@example.test,  amy@example.test , x@y.test");
    assert_string_equal(lk(m, "last@example.test"), "last");
    assert_null(lk(m, "carl@example.test"));
    assert_null(lk(m, "bob@example"));
    assert_null(lk(m, ""));

    /* Entries come back in file order, with their lines. */
    const char *k, *v;
    map_entry(m, 0, &k, &v);
    assert_string_equal(k, "bob@example.test");
    assert_string_equal(v, "users/bob/Maildir/");
    assert_int_equal(map_entry_line(m, 0), 3);
    map_entry(m, 3, &k, &v);
    assert_string_equal(k, "last@example.test");
    assert_int_equal(map_entry_line(m, 3), 6);
    map_entry(m, 4, &k, &v);
    assert_null(k);
    assert_null(v);
    assert_int_equal(map_entry_line(m, 4), 0);

    /* keylen bounds the key: no NUL needed, and a NUL inside never matches. */
    assert_string_equal(map_lookup(m, "amy@example.testXYZ", 16), "users/amy");
    assert_null(map_lookup(m, "amy@example.tes\0", 16));
    map_free(m);
}

static void test_case_rules(void **state)
{
    map *m = load_ok("User@Example.TEST   exact-user\n"
                     "user@example.test   lower-user\n"
                     "Alice@Example.Test  alice\n"
                     "Example.ORG         [relay.test]:25\n"
                     "PostMaster          local-part-only\n"
                     "@Catch.Test         catch-all\n");
    /* The domain part of an address key is case-insensitive... */
    assert_string_equal(lk(m, "User@example.test"), "exact-user");
    assert_string_equal(lk(m, "User@EXAMPLE.test"), "exact-user");
    /* ...and the local part is exact first: both spellings stay distinct. */
    assert_string_equal(lk(m, "user@example.test"), "lower-user");
    assert_string_equal(lk(m, "user@EXAMPLE.TEST"), "lower-user");
    /* A miss falls back to ignoring case everywhere; the first such key wins. */
    assert_string_equal(lk(m, "USER@example.test"), "exact-user");
    assert_string_equal(lk(m, "alice@example.test"), "alice");
    assert_string_equal(lk(m, "ALICE@EXAMPLE.TEST"), "alice");
    /* Keys without '@' compare without case, whole. */
    assert_string_equal(lk(m, "example.org"), "[relay.test]:25");
    assert_string_equal(lk(m, "EXAMPLE.org"), "[relay.test]:25");
    assert_string_equal(lk(m, "postmaster"), "local-part-only");
    assert_string_equal(lk(m, "POSTMASTER"), "local-part-only");
    assert_string_equal(lk(m, "@catch.test"), "catch-all");
    assert_null(lk(m, "x@catch.test"));
    assert_null(lk(m, "bob@example.test"));

    /* Stored keys are shown normalized: local part kept, domain lower-cased. */
    const char *k;
    map_entry(m, 0, &k, NULL);
    assert_string_equal(k, "User@example.test");
    map_entry(m, 3, &k, NULL);
    assert_string_equal(k, "example.org");
    map_free(m);

    /* The domain is after the last '@'. */
    m = load_ok("\"a@b\"@Example.Test quoted\n");
    assert_string_equal(lk(m, "\"a@b\"@example.test"), "quoted");
    assert_string_equal(lk(m, "\"A@B\"@example.test"), "quoted");
    map_free(m);
}

static void test_comments(void **state)
{
    map *m = load_ok("#key value\n"
                     "   # indented comment\n"
                     "a@x.test   value # comment\n"
                     "b@x.test   val#ue\n"
                     "c#d@x.test v\n"
                     "e@x.test   v\t# tab comment\n");
    assert_int_equal(map_count(m), 4);
    assert_string_equal(lk(m, "a@x.test"), "value");
    assert_string_equal(lk(m, "b@x.test"), "val#ue");
    assert_string_equal(lk(m, "c#d@x.test"), "v");
    assert_string_equal(lk(m, "e@x.test"), "v");
    assert_null(lk(m, "#key"));
    map_free(m);
}

static void test_crlf_and_empty(void **state)
{
    map *m = load_ok("a@x.test one\r\nb@x.test two\r\n\r\n");
    assert_string_equal(lk(m, "a@x.test"), "one");
    assert_string_equal(lk(m, "b@x.test"), "two");
    map_free(m);

    m = load_ok("");
    assert_int_equal(map_count(m), 0);
    assert_null(lk(m, "a"));
    map_free(m);

    /* An empty path is an empty map, not an error. */
    m = NULL;
    assert_int_equal(map_load("", &m, NULL, NULL), 0);
    assert_non_null(m);
    assert_int_equal(map_count(m), 0);
    map_free(m);
    m = NULL;
    assert_int_equal(map_load(NULL, &m, NULL, NULL), 0);
    map_free(m);

    /* NULL maps answer like empty ones. */
    assert_null(map_lookup(NULL, "a", 1));
    assert_int_equal(map_count(NULL), 0);
    map_free(NULL);
}

static void test_bad_lines(void **state)
{
    size_t cap = 8192;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap,
                                "good@x.test 1\n"    /* 1 */
                                "lonely@x.test\n"    /* 2 */
                                "spaced@x.test   \n" /* 3 */
                                "tab\x01@x.test 2\n" /* 4 */
                                "long@x.test ");     /* 5 */
    memset(text + o, 'v', 4100);
    o += 4100;
    o += (size_t)snprintf(text + o, cap - o,
                          "\n"
                          "dup@x.test first\n"         /* 6 */
                          "DUP@X.test other\n"         /* 7: differs in local part */
                          "dup@X.TEST second\n"        /* 8: same after normalizing */
                          "after@x.test 3\n"           /* 9 */
                          "comment-only@x.test #x\n"); /* 10 */
    assert_true(o < cap);

    struct diags d = {0};
    map *m = NULL;
    int rc = map_load_buffer("/etc/m/aliases", text, o, &m, collect, &d);
    print_diags(&d);
    assert_int_equal(rc, 6);
    assert_int_equal(d.n, 6);
    assert_string_equal(d.msg[0], "/etc/m/aliases:2: key 'lonely@x.test' has no value");
    assert_string_equal(d.msg[1], "/etc/m/aliases:3: key 'spaced@x.test' has no value");
    assert_string_equal(d.msg[2], "/etc/m/aliases:4: control character 0x01 in line");
    assert_string_equal(d.msg[3], "/etc/m/aliases:5: line is longer than 4096 bytes");
    assert_string_equal(d.msg[4], "/etc/m/aliases:8: duplicate key 'dup@X.TEST' (first at line 6)");
    assert_string_equal(d.msg[5], "/etc/m/aliases:10: key 'comment-only@x.test' has no value");
    /* Good lines around bad ones load; a duplicate keeps the first value. */
    assert_non_null(m);
    assert_int_equal(map_count(m), 4);
    assert_string_equal(lk(m, "good@x.test"), "1");
    assert_string_equal(lk(m, "after@x.test"), "3");
    assert_string_equal(lk(m, "dup@x.test"), "first");
    assert_string_equal(lk(m, "DUP@x.test"), "other");
    assert_null(lk(m, "long@x.test"));
    assert_null(lk(m, "lonely@x.test"));
    map_free(m);
    diags_free(&d);

    /* A NUL byte is a control character too, and does not end the input. */
    m = NULL;
    static const char nul[] = "a@x.test o\0k\nb@x.test fine\n";
    rc = map_load_buffer("n.map", nul, sizeof(nul) - 1, &m, collect, &d);
    assert_int_equal(rc, 1);
    assert_string_equal(d.msg[0], "n.map:1: control character 0x00 in line");
    assert_string_equal(lk(m, "b@x.test"), "fine");
    map_free(m);
    diags_free(&d);

    /* Exactly 4096 bytes is still fine. */
    memset(text, 'k', 10);
    text[10] = ' ';
    memset(text + 11, 'v', 4096 - 11);
    m = NULL;
    assert_int_equal(map_load_buffer("e.map", text, 4096, &m, collect, &d), 0);
    assert_int_equal(map_count(m), 1);
    assert_int_equal(strlen(lk(m, "kkkkkkkkkk")), 4096 - 11);
    map_free(m);
    diags_free(&d);
    free(text);
}

static void test_long_key_lookup(void **state)
{
    map *m = load_ok("a@x.test 1\n");
    size_t n = 10000;
    char *k = malloc(n);
    assert_non_null(k);
    memset(k, 'a', n);
    assert_null(map_lookup(m, k, n));
    assert_null(map_lookup(m, k, 4096));
    free(k);
    map_free(m);
}

static void test_many_entries(void **state)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 40;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = 0;
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(text + o, cap - o, "User%d@Domain%d.test value-%d\n", i, i % 97, i);
    map *m = NULL;
    assert_int_equal(map_load_buffer("big.map", text, o, &m, NULL, NULL), 0);
    assert_int_equal(map_count(m), N);
    for (int i = 0; i < N; i++) {
        char key[64], want[32];
        snprintf(key, sizeof(key), "User%d@DOMAIN%d.TEST", i, i % 97);
        snprintf(want, sizeof(want), "value-%d", i);
        assert_string_equal(lk(m, key), want);
        snprintf(key, sizeof(key), "user%d@domain%d.test", i, i % 97);
        assert_string_equal(lk(m, key), want);
        assert_int_equal(map_entry_line(m, (size_t)i), (unsigned)i + 1);
    }
    assert_null(lk(m, "User20000@domain0.test"));
    map_free(m);
    free(text);
}

static void test_files(void **state)
{
    char dir[] = "/tmp/sluice-map-XXXXXX", path[128], want[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/aliases", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("root@example.test bob@example.test\nbad\n", f);
    assert_int_equal(fclose(f), 0);

    struct diags d = {0};
    map *m = NULL;
    assert_int_equal(map_load(path, &m, collect, &d), 1);
    snprintf(want, sizeof(want), "%s:2: key 'bad' has no value", path);
    assert_string_equal(d.msg[0], want);
    assert_string_equal(lk(m, "root@example.test"), "bob@example.test");
    map_free(m);
    diags_free(&d);

    snprintf(path, sizeof(path), "%s/missing", dir);
    m = (map *)1;
    assert_int_equal(map_load(path, &m, collect, &d), -ENOENT);
    assert_null(m);
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    assert_string_equal(d.msg[0], want);
    diags_free(&d);

    assert_int_equal(map_load(dir, &m, collect, &d), -EISDIR);
    assert_null(m);
    diags_free(&d);

    snprintf(path, sizeof(path), "%s/aliases", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),        cmocka_unit_test(test_case_rules),
        cmocka_unit_test(test_comments),     cmocka_unit_test(test_crlf_and_empty),
        cmocka_unit_test(test_bad_lines),    cmocka_unit_test(test_long_key_lookup),
        cmocka_unit_test(test_many_entries), cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
