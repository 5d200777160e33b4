/*
 * test_dlv_syncfs.c - the bookkeeping that lets one syncfs() stand for many
 * Maildir files: once per batch, and a failed sync failing every file
 * registered before it returned, in whichever batch that file comes.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sluice/dlv_syncfs.h"

static const char *tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

static dev_t dev_of(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_dev;
}

/* Makes the filesystem's next sync fail: its descriptor is swapped for one
 * syncfs() refuses (EBADF), which is the path a write-back error takes. */
static void break_fd(dlv_syncfs *s)
{
    assert_int_equal(s->n, 1);
    close(s->fs[0].fd);
    s->fs[0].fd = -1;
}

static void test_sync_once_per_batch(void **state)
{
    dlv_syncfs s;
    unsigned a, b;
    dev_t dev = dev_of(tmpdir());
    (void)state;

    assert_int_equal(dlv_syncfs_init(&s), 0);
    assert_int_equal(dlv_syncfs_enter(&s, dev, tmpdir(), &a), 0);
    assert_int_equal(dlv_syncfs_enter(&s, dev, tmpdir(), &b), 0);
    assert_int_equal(s.n, 1); /* one descriptor per filesystem */
    dlv_syncfs_batch(&s);
    assert_int_equal(dlv_syncfs_covered(&s, dev, a), 0);
    /* The second file of the batch does not sync again: with the
     * descriptor broken now, only a second sync could fail. */
    int fd = s.fs[0].fd;
    s.fs[0].fd = -1;
    assert_int_equal(dlv_syncfs_covered(&s, dev, b), 0);
    s.fs[0].fd = fd;
    /* A filesystem never entered is not covered. */
    assert_int_equal(dlv_syncfs_covered(&s, dev + 1, 0), -EINVAL);
    dlv_syncfs_free(&s);
}

static void test_failure_reaches_later_batches(void **state)
{
    dlv_syncfs s;
    unsigned early, late;
    dev_t dev = dev_of(tmpdir());
    (void)state;

    assert_int_equal(dlv_syncfs_init(&s), 0);
    assert_int_equal(dlv_syncfs_enter(&s, dev, tmpdir(), &early), 0);
    break_fd(&s);
    /* This batch's sync fails: its own file fails with the error. */
    dlv_syncfs_batch(&s);
    assert_int_equal(dlv_syncfs_covered(&s, dev, early), -EBADF);
    /* The filesystem can be synced again... */
    s.fs[0].fd = open(tmpdir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(s.fs[0].fd >= 0);
    assert_int_equal(dlv_syncfs_enter(&s, dev, tmpdir(), &late), 0);
    dlv_syncfs_batch(&s);
    assert_int_equal(dlv_syncfs_covered(&s, dev, late), 0);
    /* ...but a file registered before the failure never counts as synced,
     * even in a batch whose own sync went well: the failed write-back may
     * have been its data. */
    assert_int_not_equal(dlv_syncfs_covered(&s, dev, early), 0);
    dlv_syncfs_free(&s);
}

static void test_wrong_folder_declines(void **state)
{
    dlv_syncfs s;
    unsigned t;
    dev_t dev = dev_of(tmpdir());
    (void)state;

    assert_int_equal(dlv_syncfs_init(&s), 0);
    /* A folder that is not on the file's filesystem is no proof of a sync. */
    assert_int_equal(dlv_syncfs_enter(&s, dev + 1, tmpdir(), &t), -EXDEV);
    char missing[512];
    snprintf(missing, sizeof(missing), "%s/no-such-maildir-%d", tmpdir(), (int)getpid());
    assert_int_equal(dlv_syncfs_enter(&s, dev, missing, &t), -ENOENT);
    assert_int_equal(s.n, 0);
    dlv_syncfs_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_once_per_batch),
        cmocka_unit_test(test_failure_reaches_later_batches),
        cmocka_unit_test(test_wrong_folder_declines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
