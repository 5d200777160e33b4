/*
 * test_maildir.c - Maildir delivery on a real filesystem (a temporary folder).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "scratch_dir.h"

#include "sluice/maildir.h"

static char g_root[256];

/*
 * The scratch filesystem takes renameat2's RENAME_NOREPLACE and hard links,
 * so maildir.c's fallbacks (link() where the flag is refused, rename() where
 * links are too) would never run here. These definitions stand in for
 * libc's in this program (an executable's own symbols come first): they go
 * straight to the kernel unless a test tells them to refuse, as such a
 * filesystem would.
 */
static int g_renameat2_errno, g_linkat_errno, g_linkat_eexist_left;
static int g_renameat2_calls, g_linkat_calls, g_renameat_calls;

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    g_renameat2_calls++;
    if (g_renameat2_errno) {
        errno = g_renameat2_errno;
        return -1;
    }
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    g_renameat_calls++;
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, 0);
}

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
    g_linkat_calls++;
    if (g_linkat_eexist_left > 0) {
        g_linkat_eexist_left--;
        errno = EEXIST;
        return -1;
    }
    if (g_linkat_errno) {
        errno = g_linkat_errno;
        return -1;
    }
    return (int)syscall(SYS_linkat, olddirfd, oldpath, newdirfd, newpath, flags);
}

static void refuse_reset(void)
{
    g_renameat2_errno = g_linkat_errno = g_linkat_eexist_left = 0;
    g_renameat2_calls = g_linkat_calls = g_renameat_calls = 0;
}

static int setup(void **state)
{
    (void)state;
    return scratch_make(g_root, sizeof(g_root), "maildir");
}

static int teardown(void **state)
{
    (void)state;
    return scratch_remove(g_root);
}

static void path(char *out, size_t n, const char *rel)
{
    snprintf(out, n, "%s/%s", g_root, rel);
}

/* A message file with the given bytes, open for reading at offset 0. */
static int msg_fd(const void *data, size_t len)
{
    char p[512];
    int fd;
    path(p, sizeof(p), "msg.XXXXXX");
    fd = mkstemp(p);
    assert_true(fd >= 0);
    unlink(p);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    return fd;
}

/* Number of entries (not . or ..) in a folder; -1 if it cannot be opened. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static char *slurp(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    char *buf;
    long n;
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void test_creates_folders(void **state)
{
    char md[512], sub[1024], name[MAILDIR_NAME_MAX];
    struct stat st;
    int fd = msg_fd("Subject: hi\r\n\r\nbody\r\n", 21);
    maildir_delivery d = {.key = "18F3A2B4C5D6E0_0", .hostname = "mx.example.test", .fd = fd};
    (void)state;

    path(md, sizeof(md), "Maildir");
    d.dir = md;
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    for (const char *s = "tmp\0new\0cur\0"; *s; s += strlen(s) + 1) {
        snprintf(sub, sizeof(sub), "%s/%s", md, s);
        assert_int_equal(stat(sub, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    assert_non_null(strstr(name, "P"));
    assert_non_null(strstr(name, "Q18F3A2B4C5D6E0_0.mx.example.test"));
    snprintf(sub, sizeof(sub), "%s/new/%s", md, name);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(sub, sizeof(sub), "%s/tmp", md);
    assert_int_equal(count_entries(sub), 0);
    /* A second delivery into the existing Maildir. */
    assert_int_equal(maildir_deliver(&d, NULL, 0), 0);
    snprintf(sub, sizeof(sub), "%s/new", md);
    assert_int_equal(count_entries(sub), 2);

    /* An existing Maildir that lost its subfolders gets them back. */
    for (const char *s = "tmp\0cur\0"; *s; s += strlen(s) + 1) {
        snprintf(sub, sizeof(sub), "%s/%s", md, s);
        assert_int_equal(rmdir(sub), 0);
    }
    assert_int_equal(maildir_deliver(&d, NULL, 0), 0);
    snprintf(sub, sizeof(sub), "%s/cur", md);
    assert_int_equal(stat(sub, &st), 0);
    snprintf(sub, sizeof(sub), "%s/new", md);
    assert_int_equal(count_entries(sub), 3);
    /* ...and new/ too, when only new/ is gone (the file is then published). */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/new'", md);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(maildir_deliver(&d, NULL, 0), 0);
    assert_int_equal(count_entries(sub), 1);
    snprintf(sub, sizeof(sub), "%s/tmp", md);
    assert_int_equal(count_entries(sub), 0);
    close(fd);
}

static void test_byte_exact(void **state)
{
    static const char in[] = "Received: from x\r\n"
                             "Subject: =?utf-8?q?caf=C3=A9?=\r\n"
                             "\r\n"
                             "..leading dots stay (the spool is unstuffed)\r\n"
                             ".\r\n"
                             "lone\rCR stays, LF alone\nstays too\r\n"
                             "8-bit \xc3\xa9\xff and NUL \0 byte\r\n"
                             "CR CR LF\r\r\n"
                             "no newline at end\r";
    static const char want[] = "Return-Path: <alice@example.test>\n"
                               "Delivered-To: bob@example.test\n"
                               "Received: from x\n"
                               "Subject: =?utf-8?q?caf=C3=A9?=\n"
                               "\n"
                               "..leading dots stay (the spool is unstuffed)\n"
                               ".\n"
                               "lone\rCR stays, LF alone\nstays too\n"
                               "8-bit \xc3\xa9\xff and NUL \0 byte\n"
                               "CR CR LF\r\n"
                               "no newline at end\r";
    char md[512], p[1024], name[MAILDIR_NAME_MAX];
    size_t len;
    char *got;
    int fd = msg_fd(in, sizeof(in) - 1);
    maildir_delivery d = {.key = "K_1",
                          .hostname = "h",
                          .return_path = "alice@example.test",
                          .delivered_to = "bob@example.test",
                          .fd = fd};
    (void)state;

    path(md, sizeof(md), "exact");
    d.dir = md;
    /* The fd's own offset is at EOF: delivery must read from 0 with pread. */
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    got = slurp(p, &len);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(got, want, len);
    free(got);
    close(fd);

    /* The same bytes from memory (a message handed over with its journal
     * record): the same file, and no descriptor is needed. */
    d.fd = -1;
    d.data = in;
    d.len = sizeof(in) - 1;
    d.key = "K_1m";
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    got = slurp(p, &len);
    assert_int_equal(len, sizeof(want) - 1);
    assert_memory_equal(got, want, len);
    free(got);
    /* An empty message from memory: our header lines alone. */
    d.len = 0;
    d.key = "K_1e";
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    got = slurp(p, &len);
    assert_int_equal(len,
                     strlen("Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n"));
    free(got);
}

static void test_null_sender_and_no_headers(void **state)
{
    char md[512], p[1024], name[MAILDIR_NAME_MAX];
    size_t len;
    char *got;
    int fd = msg_fd("A: b\r\n\r\nx\r\n", 11);
    maildir_delivery d = {.key = "K_2", .hostname = "h", .return_path = "", .fd = fd};
    (void)state;

    path(md, sizeof(md), "nullsender");
    d.dir = md;
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    got = slurp(p, &len);
    assert_int_equal(len, strlen("Return-Path: <>\nA: b\n\nx\n"));
    assert_memory_equal(got, "Return-Path: <>\nA: b\n\nx\n", len);
    free(got);

    d.return_path = NULL;
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    got = slurp(p, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(got, "A: b\n\nx\n", 8);
    free(got);
    close(fd);
}

/* CRLF split across the 64 KiB read chunks, and a CR at a chunk end followed by text. */
static void test_chunk_boundaries(void **state)
{
    const size_t chunk = 64 * 1024;
    size_t n = 3 * chunk + 10, len, k = 0;
    char *in = malloc(n), *want = malloc(n);
    char md[512], p[1024], name[MAILDIR_NAME_MAX];
    char *got;
    int fd;
    maildir_delivery d = {.key = "K_3", .hostname = "h"};
    (void)state;

    assert_non_null(in);
    assert_non_null(want);
    memset(in, 'a', n);
    in[chunk - 1] = '\r'; /* CRLF split: CR last of chunk 1, LF first of chunk 2 */
    in[chunk] = '\n';
    in[2 * chunk - 1] = '\r'; /* lone CR at the end of chunk 2 */
    in[2 * chunk] = 'b';
    in[3 * chunk - 1] = '\r'; /* CR then CR across the boundary, then LF */
    in[3 * chunk] = '\r';
    in[3 * chunk + 1] = '\n';
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
            continue;
        want[k++] = in[i];
    }
    fd = msg_fd(in, n);
    path(md, sizeof(md), "chunks");
    d.dir = md;
    d.fd = fd;
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    got = slurp(p, &len);
    assert_int_equal(len, k);
    assert_memory_equal(got, want, k);
    free(got);
    free(in);
    free(want);
    close(fd);
}

static void test_unique_names(void **state)
{
    enum { N = 100 }; /* each costs two syncs */
    char md[512], p[600], key[32];
    int fd = msg_fd("x\r\n", 3);
    maildir_delivery d = {.hostname = "host/with:odd", .fd = fd};
    (void)state;

    path(md, sizeof(md), "many");
    d.dir = md;
    for (int i = 0; i < N; i++) {
        /* Same key for half of them: names must still differ (usec, O_EXCL retry). */
        snprintf(key, sizeof(key), "ID_%d", i % 2 ? i : 0);
        d.key = key;
        assert_int_equal(maildir_deliver(&d, NULL, 0), 0);
    }
    snprintf(p, sizeof(p), "%s/new", md);
    assert_int_equal(count_entries(p), N);
    snprintf(p, sizeof(p), "%s/tmp", md);
    assert_int_equal(count_entries(p), 0);
    close(fd);
}

static void test_make_name(void **state)
{
    char name[MAILDIR_NAME_MAX], longhost[400];
    (void)state;

    assert_int_equal(maildir_make_name(name, sizeof(name), 1700000000, 42, 1234, "ABC_3", "a/b:c"),
                     0);
    assert_string_equal(name, "1700000000.M000042P1234QABC_3.a\\057b\\072c");
    assert_int_equal(maildir_make_name(name, sizeof(name), 1, 2, 3, "bad.key", "h"), -EINVAL);
    assert_int_equal(maildir_make_name(name, sizeof(name), 1, 2, 3, "", "h"), -EINVAL);
    assert_int_equal(maildir_make_name(name, 10, 1700000000, 2, 3, "K", "h"), -ENAMETOOLONG);
    memset(longhost, 'h', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    longhost[150] = '/';
    assert_int_equal(maildir_make_name(name, sizeof(name), 1, 2, 3, "K", longhost), 0);
    assert_true(strlen(name) <= MAILDIR_NAME_LIMIT);
    assert_true(maildir_key_valid("18F3A2B4C5D6E0_3"));
    assert_false(maildir_key_valid("a:b"));
    assert_false(maildir_key_valid("a/b"));
    assert_false(maildir_key_valid(NULL));
}

static void test_find_delivered(void **state)
{
    char md[512], from[1024], to[1024], name[MAILDIR_NAME_MAX], found[MAILDIR_NAME_MAX];
    int fd = msg_fd("x\r\n", 3);
    maildir_delivery d = {.key = "18F3A2B4C5D6E0_3", .hostname = "h", .fd = fd};
    (void)state;

    path(md, sizeof(md), "dups");
    /* No Maildir yet: nothing delivered. */
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_3", NULL, 0), 0);
    d.dir = md;
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_3", found, sizeof(found)), 1);
    assert_string_equal(found, name);
    /* Prefixes and extensions of the key are other deliveries. */
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_", NULL, 0), 0);
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_30", NULL, 0), 0);
    assert_int_equal(maildir_find_delivered(md, "8F3A2B4C5D6E0_3", NULL, 0), 0);
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_4", NULL, 0), 0);

    /* A reader (Dovecot) moved it to cur/ with flags. */
    snprintf(from, sizeof(from), "%s/new/%s", md, name);
    snprintf(to, sizeof(to), "%s/cur/%s:2,S", md, name);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_3", found, sizeof(found)), 1);
    assert_non_null(strstr(found, ":2,S"));

    /* A leftover in tmp/ is not a delivery. */
    snprintf(to, sizeof(to), "%s/tmp/1.M1P1Q18F3A2B4C5D6E0_9.h", md);
    fclose(fopen(to, "w"));
    assert_int_equal(maildir_find_delivered(md, "18F3A2B4C5D6E0_9", NULL, 0), 0);
    assert_int_equal(maildir_find_delivered(md, "bad.key", NULL, 0), -EINVAL);
    close(fd);
}

static void no_leftovers(const char *md)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/tmp", md);
    assert_int_equal(count_entries(p), 0);
    snprintf(p, sizeof(p), "%s/new", md);
    assert_int_equal(count_entries(p), 0);
}

static void test_errors(void **state)
{
    char md[512], file[400], p[1024];
    int fd = msg_fd("x\r\n", 3), dirfd, wfd;
    maildir_delivery d = {.key = "K_9", .hostname = "h", .fd = fd};
    (void)state;

    /* A path component that is a file. */
    path(file, sizeof(file), "plainfile");
    fclose(fopen(file, "w"));
    snprintf(md, sizeof(md), "%s/Maildir", file);
    d.dir = md;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -ENOTDIR);
    d.dir = file;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -ENOTDIR);

    /* The Maildir's parent is not created. */
    path(md, sizeof(md), "missing/Maildir");
    d.dir = md;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -ENOENT);
    path(p, sizeof(p), "missing");
    assert_int_equal(access(p, F_OK), -1);

    /* tmp/ is a file: nothing can be created. */
    path(md, sizeof(md), "badtmp");
    assert_int_equal(mkdir(md, 0700), 0);
    snprintf(p, sizeof(p), "%s/tmp", md);
    fclose(fopen(p, "w"));
    d.dir = md;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -ENOTDIR);
    /* nothing published: new/ is not even made (its mkdir waits for a need) */
    snprintf(p, sizeof(p), "%s/new", md);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(errno, ENOENT);

    /* Reading the message fails halfway: the tmp/ file goes, new/ stays empty. */
    path(md, sizeof(md), "readfail");
    d.dir = md;
    dirfd = open(g_root, O_RDONLY | O_DIRECTORY);
    assert_true(dirfd >= 0);
    d.fd = dirfd;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EISDIR);
    no_leftovers(md);
    close(dirfd);
    path(p, sizeof(p), "wronly");
    wfd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(wfd >= 0);
    d.fd = wfd;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EBADF);
    no_leftovers(md);
    close(wfd);

    /* Header injection and bad arguments. */
    d.fd = fd;
    d.return_path = "a@b>\nX-Evil: 1";
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EINVAL);
    d.return_path = NULL;
    d.delivered_to = "bob@example.test\r";
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EINVAL);
    d.delivered_to = NULL;
    d.key = "with.dot";
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EINVAL);
    d.key = "K_9";
    d.fd = -1;
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EINVAL);
    assert_int_equal(maildir_deliver(NULL, NULL, 0), -EINVAL);
    no_leftovers(md);
    close(fd);
}

/* The staging hook: remembers the filesystem, says yes or no. */
struct stage_probe {
    int answer;
    int calls;
    dev_t dev;
};

static int probe_stage(void *arg, dev_t dev)
{
    struct stage_probe *p = arg;
    p->calls++;
    p->dev = dev;
    return p->answer;
}

static void test_staged(void **state)
{
    static const char msg[] = "Subject: s\r\n\r\nstaged\r\n";
    char md[512], sub[1024], name[MAILDIR_NAME_MAX], first[MAILDIR_NAME_MAX];
    struct stat st;
    struct stage_probe probe = {.answer = 0};
    int fd = msg_fd(msg, sizeof(msg) - 1);
    maildir_delivery d = {
        .key = "K_5", .hostname = "h", .fd = fd, .stage = probe_stage, .stage_arg = &probe};
    (void)state;

    path(md, sizeof(md), "Staged");
    d.dir = md;
    /* A staged file needs room for its name. */
    assert_int_equal(maildir_deliver(&d, NULL, 0), -EINVAL);
    assert_int_equal(maildir_deliver(&d, name, 10), -EINVAL);
    assert_int_equal(probe.calls, 0);

    /* Staged: in tmp/ with all its bytes, nothing in new/, the hook told
     * which filesystem. */
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 1);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(stat(md, &st), 0);
    assert_true(probe.dev == st.st_dev);
    snprintf(sub, sizeof(sub), "%s/new", md);
    assert_int_equal(count_entries(sub), 0);
    snprintf(sub, sizeof(sub), "%s/tmp/%s", md, name);
    size_t len;
    char *got = slurp(sub, &len);
    assert_true(len == strlen("Subject: s\n\nstaged\n"));
    assert_memory_equal(got, "Subject: s\n\nstaged\n", len);
    free(got);

    /* Published: the same bytes, now in new/, none left in tmp/. */
    snprintf(first, sizeof(first), "%s", name);
    assert_int_equal(maildir_publish(md, d.key, d.hostname, name, sizeof(name)), 0);
    assert_string_equal(name, first);
    snprintf(sub, sizeof(sub), "%s/new/%s", md, name);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal((size_t)st.st_size, len);
    snprintf(sub, sizeof(sub), "%s/tmp", md);
    assert_int_equal(count_entries(sub), 0);
    assert_int_equal(maildir_find_delivered(md, d.key, NULL, 0), 1);

    /* A name already taken in new/ gets a fresh one; nothing is replaced. */
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 1);
    char from[1200], to[1200];
    snprintf(from, sizeof(from), "%s/tmp/%s", md, name);
    snprintf(to, sizeof(to), "%s/tmp/%s", md, first);
    assert_int_equal(rename(from, to), 0);
    snprintf(name, sizeof(name), "%s", first);
    assert_int_equal(maildir_publish(md, d.key, d.hostname, name, sizeof(name)), 0);
    assert_string_not_equal(name, first);
    snprintf(sub, sizeof(sub), "%s/new", md);
    assert_int_equal(count_entries(sub), 2);

    /* Discarded: gone from tmp/, never in new/. */
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 1);
    assert_int_equal(maildir_discard(md, name), 0);
    assert_int_equal(maildir_discard(md, name), -ENOENT);
    assert_int_equal(count_entries(sub), 2);
    snprintf(sub, sizeof(sub), "%s/tmp", md);
    assert_int_equal(count_entries(sub), 0);

    /* A publish whose tmp/ file is gone fails, and names are checked. */
    assert_int_equal(maildir_publish(md, d.key, d.hostname, name, sizeof(name)), -ENOENT);
    char bad[MAILDIR_NAME_MAX] = "../new/x";
    assert_int_equal(maildir_publish(md, d.key, d.hostname, bad, sizeof(bad)), -EINVAL);
    assert_int_equal(maildir_discard(md, "../cur"), -EINVAL);
    assert_int_equal(maildir_discard(md, ".."), -EINVAL);

    /* A hook that declines: delivered here, as without one. */
    probe.answer = -1;
    assert_int_equal(maildir_deliver(&d, name, sizeof(name)), 0);
    snprintf(sub, sizeof(sub), "%s/new/%s", md, name);
    assert_int_equal(stat(sub, &st), 0);
    snprintf(sub, sizeof(sub), "%s/tmp", md);
    assert_int_equal(count_entries(sub), 0);
    close(fd);
}

/* Delivers msg into folder rel with the refusals set up; checks the file in
 * new/ holds want and that tmp/ is empty. */
static void deliver_and_check(const char *rel, const char *want)
{
    static const char msg[] = "Subject: f\r\n\r\nfallback\r\n";
    char md[512], p[1024], name[MAILDIR_NAME_MAX];
    size_t len;
    int fd = msg_fd(msg, sizeof(msg) - 1);
    maildir_delivery d = {.key = "K_f", .hostname = "h", .fd = fd};

    path(md, sizeof(md), rel);
    d.dir = md;
    int rc = maildir_deliver(&d, name, sizeof(name));
    g_renameat2_errno = g_linkat_errno = 0; /* nothing else here is to be refused */
    assert_int_equal(rc, 0);
    snprintf(p, sizeof(p), "%s/new/%s", md, name);
    char *got = slurp(p, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
    snprintf(p, sizeof(p), "%s/tmp", md);
    assert_int_equal(count_entries(p), 0);
    snprintf(p, sizeof(p), "%s/new", md);
    assert_int_equal(count_entries(p), 1);
    close(fd);
}

/* A filesystem that refuses RENAME_NOREPLACE (EINVAL): the spec's link()
 * into new/, then the tmp/ name goes. */
static void test_move_by_link(void **state)
{
    (void)state;
    refuse_reset();
    g_renameat2_errno = EINVAL;
    deliver_and_check("ByLink", "Subject: f\n\nfallback\n");
    assert_int_equal(g_renameat2_calls, 1);
    assert_int_equal(g_linkat_calls, 1);
    assert_int_equal(g_renameat_calls, 0);
}

/* No RENAME_NOREPLACE and no hard links (EPERM, as on FAT): rename(). */
static void test_move_by_rename(void **state)
{
    (void)state;
    refuse_reset();
    g_renameat2_errno = EINVAL;
    g_linkat_errno = EPERM;
    deliver_and_check("ByRename", "Subject: f\n\nfallback\n");
    assert_int_equal(g_linkat_calls, 1);
    assert_int_equal(g_renameat_calls, 1);
}

/* link() finds the name in new/ taken: the next try has a fresh name and,
 * the flag being known refused, goes straight to link(). */
static void test_link_name_taken(void **state)
{
    (void)state;
    refuse_reset();
    g_renameat2_errno = EINVAL;
    g_linkat_eexist_left = 1;
    deliver_and_check("LinkTaken", "Subject: f\n\nfallback\n");
    assert_int_equal(g_renameat2_calls, 1);
    assert_int_equal(g_linkat_calls, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creates_folders),
        cmocka_unit_test(test_byte_exact),
        cmocka_unit_test(test_null_sender_and_no_headers),
        cmocka_unit_test(test_chunk_boundaries),
        cmocka_unit_test(test_unique_names),
        cmocka_unit_test(test_make_name),
        cmocka_unit_test(test_find_delivered),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_staged),
        cmocka_unit_test(test_move_by_link),
        cmocka_unit_test(test_move_by_rename),
        cmocka_unit_test(test_link_name_taken),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
