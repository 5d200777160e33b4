/*
 * test_dlv_local.c - alias expansion (fan-out, nesting, self-reference,
 * loops, depth), mailbox paths, local error replies, and the notify
 * datagram parser.
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

#include "sluice/dlv_core.h"
#include "sluice/dlv_local.h"

static void quiet(void *arg, const char *diag)
{
    (void)arg;
    (void)diag;
}

static map *load(const char *text)
{
    map *m = NULL;
    assert_int_equal(map_load_buffer("aliases", text, strlen(text), &m, quiet, NULL), 0);
    return m;
}

static void assert_leaves(const dlv_expansion *x, const char *const *want, size_t n)
{
    assert_int_equal(x->nleaves, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(x->leaves[i], want[i]);
}

static void test_not_alias(void **state)
{
    (void)state;
    map *m = load("team@a.test bob@a.test\n");
    dlv_expansion x;
    assert_int_equal(dlv_alias_expand(m, "bob@a.test", &x), 0);
    assert_int_equal(x.nleaves, 0);
    assert_int_equal(dlv_alias_expand(NULL, "bob@a.test", &x), 0);
    map_free(m);
}

static void test_fanout_nested(void **state)
{
    (void)state;
    map *m = load("team@a.test bob@a.test, <carol@a.test>, dave , list\n"
                  "list@a.test eve@b.test, Bob@A.TEST\n"
                  "dave@a.test dave@elsewhere.test\n");
    dlv_expansion x;
    assert_int_equal(dlv_alias_expand(m, "team@a.test", &x), 1);
    /* dave expands further; "list" is list@a.test; Bob@A.TEST is a duplicate. */
    const char *want[] = {"bob@a.test", "carol@a.test", "dave@elsewhere.test", "eve@b.test"};
    assert_leaves(&x, want, 4);
    assert_false(x.self);
    dlv_expansion_free(&x);
    map_free(m);
}

static void test_self(void **state)
{
    (void)state;
    map *m = load("root@a.test root@a.test, admin@a.test\n"
                  "only@a.test only@a.test\n"
                  "x@a.test root@a.test\n");
    dlv_expansion x;
    assert_int_equal(dlv_alias_expand(m, "root@a.test", &x), 1);
    const char *want[] = {"root@a.test", "admin@a.test"};
    assert_leaves(&x, want, 2);
    assert_true(x.self);
    dlv_expansion_free(&x);
    /* Naming only itself: just its mailbox. */
    assert_int_equal(dlv_alias_expand(m, "only@a.test", &x), 0);
    assert_true(x.self);
    dlv_expansion_free(&x);
    /* Nested self reference: root's mailbox is a leaf of x. */
    assert_int_equal(dlv_alias_expand(m, "x@a.test", &x), 1);
    assert_leaves(&x, want, 2);
    assert_false(x.self);
    dlv_expansion_free(&x);
    map_free(m);
}

static void test_loop(void **state)
{
    (void)state;
    map *m = load("a@a.test b@a.test\n"
                  "b@a.test c@a.test, ok@a.test\n"
                  "c@a.test A@a.test\n");
    dlv_expansion x;
    assert_int_equal(dlv_alias_expand(m, "a@a.test", &x), -ELOOP);
    assert_string_equal(x.status, "5.4.6");
    assert_non_null(strstr(x.reason, "alias loop"));
    assert_non_null(strstr(x.reason, "a@a.test -> b@a.test -> c@a.test -> A@a.test"));
    assert_int_equal(x.nleaves, 0);
    dlv_expansion_free(&x);
    map_free(m);
}

static void test_depth(void **state)
{
    (void)state;
    char text[4096] = "";
    size_t off = 0;
    for (int i = 0; i < DLV_ALIAS_DEPTH_MAX + 2; i++)
        off +=
            (size_t)snprintf(text + off, sizeof(text) - off, "n%d@a.test n%d@a.test\n", i, i + 1);
    map *m = load(text);
    dlv_expansion x;
    assert_int_equal(dlv_alias_expand(m, "n0@a.test", &x), -ELOOP);
    assert_string_equal(x.status, "5.4.6");
    assert_non_null(strstr(x.reason, "too deep"));
    dlv_expansion_free(&x);
    /* Just within the limit is fine. */
    char key[32];
    snprintf(key, sizeof(key), "n%d@a.test", 3);
    assert_int_equal(dlv_alias_expand(m, key, &x), 1);
    assert_int_equal(x.nleaves, 1);
    dlv_expansion_free(&x);
    map_free(m);
}

static void test_bad_targets(void **state)
{
    (void)state;
    map *m = load("a@a.test |/bin/sh, /var/mail/x, good@a.test, @bad, bad@\n"
                  "none@a.test |cmd\n");
    dlv_expansion x;
    assert_int_equal(dlv_alias_expand(m, "a@a.test", &x), 1);
    const char *want[] = {"good@a.test"};
    assert_leaves(&x, want, 1);
    dlv_expansion_free(&x);
    assert_int_equal(dlv_alias_expand(m, "none@a.test", &x), -ELOOP);
    assert_string_equal(x.status, "5.1.1");
    dlv_expansion_free(&x);
    map_free(m);
}

static void test_mailbox_path(void **state)
{
    (void)state;
    sluice_config cfg;
    const char conf[] = "[server]\nhostname = h.test\nspool = s\n[domains]\nlocal = a.test\n";
    assert_int_equal(
        config_load_buffer("/etc/sl/sluice.conf", conf, sizeof(conf) - 1, &cfg, quiet, NULL), 0);
    map *m = load("bob@a.test mail/bob/\n"
                  "abs@a.test /srv/mail/abs\n"
                  "postmaster pm\n");
    bool nomem;
    char *p = dlv_mailbox_path(&cfg, m, "bob@A.test", &nomem);
    assert_non_null(p);
    assert_string_equal(p, "/etc/sl/mail/bob");
    free(p);
    p = dlv_mailbox_path(&cfg, m, "abs@a.test", &nomem);
    assert_string_equal(p, "/srv/mail/abs");
    free(p);
    p = dlv_mailbox_path(&cfg, m, "PostMaster@a.test", &nomem);
    assert_string_equal(p, "/etc/sl/pm");
    free(p);
    assert_null(dlv_mailbox_path(&cfg, m, "nobody@a.test", &nomem));
    assert_false(nomem);
    map_free(m);
    config_free(&cfg);
}

static void test_error_reply(void **state)
{
    (void)state;
    char reply[200], st[8];
    dlv_local_error_reply(-ENOSPC, reply, sizeof(reply), st);
    assert_string_equal(st, "4.3.1");
    assert_memory_equal(reply, "452 4.3.1 ", 10);
    dlv_local_error_reply(-EDQUOT, reply, sizeof(reply), st);
    assert_string_equal(st, "4.2.2");
    dlv_local_error_reply(-ENOTDIR, reply, sizeof(reply), st);
    assert_string_equal(st, "4.3.0");
    assert_memory_equal(reply, "451 4.3.0 ", 10);
}

struct seen {
    char ids[8][QUEUE_ID_LEN + 1];
    unsigned flags[8];
    int n, all;
};

static void each(void *arg, const char *id, unsigned flags)
{
    struct seen *s = arg;
    if (!id) {
        s->all++;
        return;
    }
    snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", id);
    s->flags[s->n++] = flags;
}

static void test_notify_parse(void **state)
{
    (void)state;
    struct seen s = {0};
    const char *t = "new 18F3A2B4C5D6E0 18F3A2B4C5D6F0";
    assert_int_equal(dlv_notify_parse(t, strlen(t), each, &s), 2);
    assert_string_equal(s.ids[1], "18F3A2B4C5D6F0");
    assert_int_equal(s.flags[0], 0);
    memset(&s, 0, sizeof(s));
    t = "flush\n";
    assert_int_equal(dlv_notify_parse(t, strlen(t), each, &s), 0);
    assert_int_equal(s.all, 1);
    t = "flush 18F3A2B4C5D6E0 junk";
    assert_int_equal(dlv_notify_parse(t, strlen(t), each, &s), 1);
    assert_int_equal(s.flags[0], DLV_SCHED_FORCE);
    assert_int_equal(s.all, 1); /* ids given (even bad ones): not "all" */
    /* "late": handed over before; its deliveries look for their keys. */
    memset(&s, 0, sizeof(s));
    t = "late 18F3A2B4C5D6E0";
    assert_int_equal(dlv_notify_parse(t, strlen(t), each, &s), 1);
    assert_int_equal(s.flags[0], DLV_SCHED_CHECK);
    t = "late";
    assert_int_equal(dlv_notify_parse(t, strlen(t), each, &s), 0);
    assert_int_equal(s.all, 0); /* only a bare flush means "all" */
    t = "delete 18F3A2B4C5D6E0";
    assert_int_equal(dlv_notify_parse(t, strlen(t), each, &s), -EINVAL);
    assert_int_equal(dlv_notify_parse("", 0, each, &s), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_alias),    cmocka_unit_test(test_fanout_nested),
        cmocka_unit_test(test_self),         cmocka_unit_test(test_loop),
        cmocka_unit_test(test_depth),        cmocka_unit_test(test_bad_targets),
        cmocka_unit_test(test_mailbox_path), cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_notify_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
