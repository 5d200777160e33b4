/* test_spool.c - the spool on a real filesystem and a real libuv loop:
 * group commit, flushes, aborts, recovery, load/quarantine, store, locks,
 * inject, notify, and a full disk (tmpfs in a private mount namespace). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "sluice/handoff_format.h"
#include "sluice/log.h"
#include "sluice/smtp_parse.h"
#include "sluice/spool.h"

/* ---- fixture: a fresh spool folder per test ---- */

struct fx {
    char root[256];
};

static int rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fx->root, sizeof(fx->root), "%s/sluice-spool-XXXXXX", base);
    if (!mkdtemp(fx->root))
        return -1;
    strcat(fx->root, "/spool"); /* spool_fs_open creates it */
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    char *slash = strrchr(fx->root, '/');
    *slash = '\0';
    rm_rf(fx->root);
    free(fx);
    return 0;
}

static int count_files(const char *root, const char *sub)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", root, sub);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static bool exists(const char *root, const char *sub, const char *id, const char *ext)
{
    char path[1200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s/%s%s", root, sub, id, ext);
    return lstat(path, &st) == 0;
}

static mode_t mode_of(const char *root, const char *rel)
{
    char path[1200];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (lstat(path, &st) != 0)
        return (mode_t)-1;
    return st.st_mode & 07777;
}

static void write_file(const char *root, const char *rel, const void *data, size_t len)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void make_env(envelope *e, const char *sender)
{
    envelope_init(e);
    assert_int_equal(envelope_set(&e->sender, sender), 0);
    assert_int_equal(envelope_set(&e->client_addr, "192.0.2.1"), 0);
    assert_int_equal(envelope_set(&e->proto, "ESMTP"), 0);
    assert_int_equal(envelope_add_rcpt(e, "bob@example.test", NULL, SMTP_NOTIFY_FAILURE), 0);
}

/* Injects a message with a fresh id; returns it in id. */
static void inject_one(spool_fs *fs, const char *data, char id[QUEUE_ID_LEN + 1])
{
    envelope e;
    make_env(&e, "alice@example.test");
    queue_id_new(QUEUE_ID_CLI, e.id);
    assert_int_equal(spool_fs_inject(fs, &e, data, strlen(data)), 0);
    memcpy(id, e.id, QUEUE_ID_LEN + 1);
    envelope_free(&e);
}

/* A datagram socket standing in for sluice-delivery. */
static int bind_delivery(const char *root)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_int_equal(spool_path(root, SPOOL_DELIVERY_SOCK, sa.sun_path, sizeof(sa.sun_path)), 0);
    unlink(sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* ---- async commit helpers ---- */

struct result {
    int calls;
    int status;
};

static void on_done(void *arg, int status)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
}

static void run_until(uv_loop_t *loop, const int *counter, int want)
{
    for (int i = 0; i < 100000 && *counter < want; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(*counter, want);
}

static int closed;
static void on_closed(void *arg)
{
    closed++;
}

static void close_spool(uv_loop_t *loop, spool *s)
{
    closed = 0;
    spool_close_then(s, on_closed, NULL);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    /* Nothing of ours is left on the loop. */
    assert_int_equal(uv_loop_close(loop), 0);
}

static void check_message(spool_fs *fs, const char *id, const char *data, size_t len,
                          const char *sender)
{
    envelope e;
    envelope_init(&e);
    assert_int_equal(spool_fs_load(fs, id, &e), 0);
    assert_string_equal(e.id, id);
    assert_int_equal(e.size, len);
    assert_int_equal(e.crc32, (uint32_t)crc32_z(crc32(0, Z_NULL, 0), (const Bytef *)data, len));
    assert_string_equal(e.sender, sender);
    assert_int_equal(e.arrival_us, queue_id_time(id));
    assert_int_equal(e.nrcpt, 1);
    assert_int_equal(spool_fs_verify_message(fs, &e), 0);
    envelope_free(&e);

    int fd;
    assert_int_equal(spool_fs_open_message(fs, id, &fd), 0);
    char *buf = malloc(len + 1);
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf + got, len + 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    assert_int_equal(got, len);
    assert_memory_equal(buf, data, len);
    free(buf);
}

static int read_notes(int sock, char ids[][QUEUE_ID_LEN + 1], int n)
{
    int heard = 0;
    char dg[4096];
    ssize_t len;
    while ((len = recv(sock, dg, sizeof(dg) - 1, 0)) > 0) {
        dg[len] = '\0';
        assert_int_equal(strncmp(dg, "new ", 4), 0);
        for (int k = 0; k < n; k++)
            if (strstr(dg, ids[k]))
                heard++;
    }
    return heard;
}

/* Commits N messages through the group committer and checks them on disk. */
static void commit_several(const char *root)
{
    enum { N = 40 };
    uv_loop_t loop;
    spool *s;
    spool_msg *m[N];
    char ids[N][QUEUE_ID_LEN + 1], data[N][64];
    struct result res[N];
    int done = 0;

    spool_fs *fs;
    assert_int_equal(spool_fs_open(root, true, &fs), 0); /* for run/ */
    spool_fs_close(fs);
    int sock = bind_delivery(root);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    envelope e;
    make_env(&e, "alice@example.test");
    memset(res, 0, sizeof(res));
    for (int i = 0; i < N; i++) {
        assert_int_equal(spool_msg_begin(s, &m[i], ids[i]), 0);
        snprintf(data[i], sizeof(data[i]), "Subject: %d\r\n\r\nbody %d\r\n", i, i);
        /* In pieces, as a session would. */
        assert_int_equal(spool_msg_write(m[i], data[i], 5), 0);
        assert_int_equal(spool_msg_write(m[i], data[i] + 5, strlen(data[i]) - 5), 0);
        assert_int_equal(spool_msg_size(m[i]), strlen(data[i]));
        assert_int_equal(spool_msg_commit(m[i], &e, on_done, &res[i]), 0);
    }
    envelope_free(&e); /* the spool serialised it already */
    /* Read the runner's socket as the runner would, while committing: a
     * datagram socket queues only net.unix.max_dgram_qlen (10) messages. */
    int heard = 0;
    for (int i = 0; i < 100000 && done < N; i++) {
        uv_run(&loop, UV_RUN_ONCE);
        done = 0;
        for (int k = 0; k < N; k++)
            done += res[k].calls;
        heard += read_notes(sock, ids, N);
    }
    /* Unsent notifications are retried by a timer: give it time. */
    for (int i = 0; i < 300 && heard < N; i++) {
        heard += read_notes(sock, ids, N);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].status, 0);
    }
    spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.committed, N);
    assert_int_equal(st.failed, 0);
    assert_true(st.batches >= 1 && st.batches <= N);
    close_spool(&loop, s);

    assert_int_equal(spool_fs_open(root, false, &fs), 0);
    assert_int_equal(count_files(root, "incoming"), 0);
    assert_int_equal(count_files(root, "queue"), 2 * N);
    for (int i = 0; i < N; i++) {
        char rel[700];
        snprintf(rel, sizeof(rel), "queue/%s.msg", ids[i]);
        assert_int_equal(mode_of(root, rel), 0600);
        snprintf(rel, sizeof(rel), "queue/%s.env", ids[i]);
        assert_int_equal(mode_of(root, rel), 0600);
        check_message(fs, ids[i], data[i], strlen(data[i]), "alice@example.test");
    }
    char(*list)[QUEUE_ID_LEN + 1];
    size_t n;
    assert_int_equal(spool_fs_list(fs, &list, &n), 0);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++)
        assert_string_equal(list[i], ids[i]); /* sorted = in order of begin */
    free(list);
    spool_fs_close(fs);

    /* sluice-delivery heard of every id: "new ID ID ..." datagrams. */
    heard += read_notes(sock, ids, N);
    assert_int_equal(heard, N);
    close(sock);
}

static void test_open_layout(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;

    assert_int_equal(spool_fs_open(fx->root, false, &fs), -ENOENT);
    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);
    assert_string_equal(spool_fs_root(fs), fx->root);
    assert_int_equal(mode_of(fx->root, "."), 0700);
    assert_int_equal(mode_of(fx->root, "incoming"), 0700);
    assert_int_equal(mode_of(fx->root, "queue"), 0700);
    assert_int_equal(mode_of(fx->root, "corrupt"), 0700);
    assert_int_equal(mode_of(fx->root, "run"), 0700);
    spool_fs_close(fs);
    assert_int_equal(spool_fs_open(fx->root, false, &fs), 0);
    spool_fs_close(fs);

    char p[64];
    assert_int_equal(spool_path("/var/spool/sluice", SPOOL_DELIVERY_SOCK, p, sizeof(p)), 0);
    assert_string_equal(p, "/var/spool/sluice/run/delivery.sock");
    assert_int_equal(spool_path("/var/spool/sluice", SPOOL_SUBMIT_SOCK, p, 20), -ENAMETOOLONG);
}

static void test_commit_syncfs(void **state)
{
    unsetenv("SLUICE_SPOOL_SYNC");
    commit_several(((struct fx *)*state)->root);
}

/*
 * One message per batch, the runner's socket unread meanwhile: 40
 * datagrams against a queue of 10. Every id must still reach the runner
 * once it reads again (the retry timer), none lost to its periodic scan.
 */
static void test_notify_backlog(void **state)
{
    enum { N = 40 };
    const char *root = ((struct fx *)*state)->root;
    unsetenv("SLUICE_SPOOL_SYNC");
    spool_fs *fs;
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    spool_fs_close(fs);
    int sock = bind_delivery(root);
    uv_loop_t loop;
    spool *s;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    envelope e;
    make_env(&e, "alice@example.test");
    char ids[N][QUEUE_ID_LEN + 1];
    for (int i = 0; i < N; i++) {
        spool_msg *m;
        struct result res = {0};
        assert_int_equal(spool_msg_begin(s, &m, ids[i]), 0);
        assert_int_equal(spool_msg_write(m, "Subject: x\r\n\r\nx\r\n", 17), 0);
        assert_int_equal(spool_msg_commit(m, &e, on_done, &res), 0);
        while (res.calls == 0)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(res.status, 0);
    }
    envelope_free(&e);
    spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.batches, N);
    int heard = 0;
    for (int i = 0; i < 300 && heard < N; i++) {
        heard += read_notes(sock, ids, N);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    assert_int_equal(heard, N);
    close_spool(&loop, s);
    close(sock);
}

/*
 * The journal's two regions are used in turn: 1,200 messages of 5 KiB, one
 * per write (each waits for its callback), take 8 KiB of journal each, so
 * the 2 x 4 MiB regions are switched and reused. Every message reaches
 * queue/, and one removed afterwards (as the runner removes a delivered
 * message) does not come back at the next start: the mark covers it.
 */
static void test_journal_regions_reused(void **state)
{
    enum { N = 1200 };
    const char *root = ((struct fx *)*state)->root;
    static char body[5000];
    unsetenv("SLUICE_SPOOL_SYNC");
    memset(body, 'b', sizeof(body));
    memcpy(body, "Subject: x\r\n\r\n", 14);
    uv_loop_t loop;
    spool *s;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    envelope e;
    make_env(&e, "alice@example.test");
    char first[QUEUE_ID_LEN + 1], id[QUEUE_ID_LEN + 1];
    for (int i = 0; i < N; i++) {
        spool_msg *m;
        struct result res = {0};
        assert_int_equal(spool_msg_begin(s, &m, i == 0 ? first : id), 0);
        assert_int_equal(spool_msg_write(m, body, sizeof(body)), 0);
        assert_int_equal(spool_msg_commit(m, &e, on_done, &res), 0);
        while (res.calls == 0)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(res.status, 0);
    }
    envelope_free(&e);
    spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.journaled, N);
    assert_true(st.checkpoints >= 1);
    close_spool(&loop, s);
    assert_int_equal(count_files(root, "queue"), 2 * N);
    assert_int_equal(count_files(root, "incoming"), 0);

    char path[1200];
    snprintf(path, sizeof(path), "%s/queue/%s.env", root, first);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/queue/%s.msg", root, first);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    close_spool(&loop, s);
    assert_false(exists(root, "queue", first, ".env"));
    assert_int_equal(count_files(root, "queue"), 2 * (N - 1));
}

static size_t inodes_of(const char *root, const char *sub, ino_t *out, size_t max)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", root, sub);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && n < max)
            out[n++] = de->d_ino;
    closedir(d);
    return n;
}

static void write_named(const char *root, const char *rel, size_t size)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < size; i++)
        assert_int_not_equal(fputc('x', f), EOF);
    assert_int_equal(fclose(f), 0);
}

/*
 * The runner's removals go to free/ and the next messages reuse those
 * files (their inodes) with nothing of the old content left; big files and
 * files past the bound are deleted instead.
 */
static void test_recycle(void **state)
{
    const char *root = ((struct fx *)*state)->root;
    unsetenv("SLUICE_SPOOL_SYNC");
    commit_several(root); /* 40 messages */
    spool_fs *fs;
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    char(*list)[QUEUE_ID_LEN + 1];
    size_t n;
    assert_int_equal(spool_fs_list(fs, &list, &n), 0);
    assert_int_equal(n, 40);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(spool_fs_remove_unsynced(fs, list[i]), 0);
    assert_int_equal(spool_fs_remove_unsynced(fs, list[0]), -ENOENT);
    free(list);
    spool_fs_close(fs);
    assert_int_equal(count_files(root, "queue"), 0);
    assert_int_equal(count_files(root, "free"), 80);
    ino_t freed[80], reused[80];
    assert_int_equal(inodes_of(root, "free", freed, 80), 80);

    commit_several(root); /* checks every byte and envelope of 40 new messages */
    assert_int_equal(count_files(root, "free"), 0);
    assert_int_equal(inodes_of(root, "queue", reused, 80), 80);
    for (size_t i = 0; i < 80; i++) {
        bool found = false;
        for (size_t k = 0; k < 80 && !found; k++)
            found = reused[i] == freed[k];
        assert_true(found);
    }

    /* A big message file is deleted, its envelope kept. */
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    const char *big = "0123456789ABCD";
    write_named(root, "queue/0123456789ABCD.msg", 70000);
    write_named(root, "queue/0123456789ABCD.env", 100);
    assert_int_equal(spool_fs_remove_unsynced(fs, big), 0);
    assert_int_equal(count_files(root, "free"), 1);
    spool_fs_close(fs);

    /* A full free/ takes nothing more; names not ours are never reused. */
    char rel[64];
    for (int i = 0; i < 2100; i++) {
        snprintf(rel, sizeof(rel), "free/junk%d", i);
        write_named(root, rel, 0);
    }
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    write_named(root, "queue/0123456789ABCE.msg", 10);
    write_named(root, "queue/0123456789ABCE.env", 10);
    assert_int_equal(spool_fs_remove_unsynced(fs, "0123456789ABCE"), 0);
    assert_int_equal(count_files(root, "free"), 2101);
    assert_int_equal(count_files(root, "queue"), 80);
    spool_fs_close(fs);
}

/* What someone planted in free/ is never written into, and never stalls a commit. */
static void test_recycle_hostile(void **state)
{
    const char *root = ((struct fx *)*state)->root;
    unsetenv("SLUICE_SPOOL_SYNC");
    spool_fs *fs;
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    spool_fs_close(fs);
    char path[700], other[700];
    snprintf(path, sizeof(path), "%s/free/0123456789ABCF.msg", root);
    assert_int_equal(mkfifo(path, 0600), 0); /* an open for writing would block */
    snprintf(other, sizeof(other), "%s/../victim", root);
    write_named(root, "../victim", 5);
    snprintf(path, sizeof(path), "%s/free/0123456789ABD0.env", root);
    assert_int_equal(link(other, path), 0); /* two links: someone else's file */
    commit_several(root);                   /* every message exact, in time */
    assert_int_equal(count_files(root, "free"), 0);
    struct stat st;
    assert_int_equal(stat(other, &st), 0);
    assert_int_equal(st.st_size, 5); /* untouched */
    assert_int_equal(st.st_nlink, 1);
    unlink(other);
}

static void test_commit_fdatasync(void **state)
{
    setenv("SLUICE_SPOOL_SYNC", "fdatasync", 1);
    commit_several(((struct fx *)*state)->root);
    unsetenv("SLUICE_SPOOL_SYNC");
}

/* A 3 MiB message written in 16 KiB reads, flushed whenever pending
 * reaches SPOOL_MSG_FLUSH_AT; writes continue while a flush is in flight,
 * and the commit is issued while the last flush still runs. */
struct big {
    spool_msg *m;
    char *data;
    size_t len, at;
    int flushes, flush_errors;
    bool flushing;
    struct result commit;
};

static void big_flushed(void *arg, int status)
{
    struct big *b = arg;
    b->flushing = false;
    b->flushes++;
    if (status)
        b->flush_errors++;
}

static void test_commit_large_with_flushes(void **state)
{
    struct fx *fx = *state;
    uv_loop_t loop;
    spool *s;
    struct big b = {0};
    char id[QUEUE_ID_LEN + 1];

    b.len = 3u << 20;
    b.data = malloc(b.len);
    for (size_t i = 0; i < b.len; i++)
        b.data[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, fx->root, &s), 0);
    assert_int_equal(spool_msg_begin(s, &b.m, id), 0);
    bool wrote_during_flush = false;
    while (b.at < b.len) {
        size_t n = b.len - b.at < 16384 ? b.len - b.at : 16384;
        assert_int_equal(spool_msg_write(b.m, b.data + b.at, n), 0);
        b.at += n;
        if (b.flushing)
            wrote_during_flush = true;
        if (spool_msg_pending(b.m) >= SPOOL_MSG_FLUSH_AT) {
            if (b.flushing) {
                /* Both buffers full: the session pauses reading. */
                assert_int_equal(spool_msg_flush(b.m, big_flushed, &b), -EBUSY);
                while (b.flushing)
                    uv_run(&loop, UV_RUN_ONCE);
            }
            b.flushing = true;
            assert_int_equal(spool_msg_flush(b.m, big_flushed, &b), 0);
            assert_int_equal(spool_msg_pending(b.m), 0);
        }
    }
    assert_true(wrote_during_flush);
    assert_true(b.flushing); /* commit behind a flush in flight */
    assert_true(exists(fx->root, "incoming", id, ".msg"));
    envelope e;
    make_env(&e, "");
    assert_int_equal(spool_msg_commit(b.m, &e, on_done, &b.commit), 0);
    envelope_free(&e);
    assert_int_equal(spool_msg_write(b.m, "x", 1), -EINVAL); /* after commit */
    run_until(&loop, &b.commit.calls, 1);
    assert_int_equal(b.commit.status, 0);
    assert_false(b.flushing); /* the flush callback ran before the commit's */
    assert_int_equal(b.flush_errors, 0);
    assert_true(b.flushes >= 10);
    close_spool(&loop, s);

    spool_fs *fs;
    assert_int_equal(spool_fs_open(fx->root, false, &fs), 0);
    check_message(fs, id, b.data, b.len, "");
    assert_int_equal(count_files(fx->root, "incoming"), 0);
    spool_fs_close(fs);
    free(b.data);
}

/* Files in free/ that someone holds locked: claims in progress. */
static int count_claimed(const char *root)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/free", root);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            continue; /* an abort removing it right now */
        assert_true(fd >= 0);
        if (flock(fd, LOCK_EX | LOCK_NB) != 0)
            n++;
        close(fd);
    }
    closedir(d);
    return n;
}

/* Commits n small messages through the journal; their callbacks have run. */
static void commit_journaled(uv_loop_t *loop, spool *s, int n, char ids[][QUEUE_ID_LEN + 1],
                             char data[][64])
{
    struct result res[8] = {{0}};
    int done = 0;
    envelope e;
    make_env(&e, "carol@example.test");
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        spool_msg *m;
        assert_int_equal(spool_msg_begin(s, &m, ids[i]), 0);
        snprintf(data[i], 64, "Subject: held %d\r\n\r\nclaimed in place %d\r\n", i, i);
        assert_int_equal(spool_msg_write(m, data[i], strlen(data[i])), 0);
        assert_int_equal(spool_msg_commit(m, &e, on_done, &res[i]), 0);
    }
    envelope_free(&e);
    for (int k = 0; k < 100000 && done < n; k++) {
        uv_run(loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < n; i++)
            done += res[i].calls;
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(res[i].status, 0);
}

/*
 * A file taken from free/ is written where it lies and renamed once, into
 * queue/ at the checkpoint. Until then it is claimed (locked): the other
 * daemon takes only files nobody holds, so neither overwrites the other.
 */
static void test_recycle_in_place(void **state)
{
    const char *root = ((struct fx *)*state)->root;
    unsetenv("SLUICE_SPOOL_SYNC");
    commit_several(root);
    spool_fs *fs;
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    char(*list)[QUEUE_ID_LEN + 1];
    size_t n;
    assert_int_equal(spool_fs_list(fs, &list, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(spool_fs_remove_unsynced(fs, list[i]), 0);
    free(list);
    assert_int_equal(count_files(root, "free"), 80);

    /* Five messages acknowledged through the journal, their checkpoint far off. */
    setenv("SLUICE_SPOOL_CKPT_MS", "600000", 1);
    uv_loop_t loop;
    spool *s;
    char held[8][QUEUE_ID_LEN + 1], held_data[8][64];
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    commit_journaled(&loop, s, 5, held, held_data);
    assert_int_equal(count_files(root, "queue"), 0);
    /* The journal is their only copy until the checkpoint writes them:
     * no file is claimed for them yet. */
    assert_int_equal(count_files(root, "incoming"), 0);
    assert_int_equal(count_files(root, "free"), 80);
    assert_int_equal(count_claimed(root), 0);

    /* The runner's DSNs meanwhile take 40 of the 80. (Its list of free
     * names was empty: it is refilled after 100 ms.) */
    usleep(150 * 1000);
    char ids[20][QUEUE_ID_LEN + 1], data[20][64];
    for (int i = 0; i < 20; i++) {
        snprintf(data[i], sizeof(data[i]), "Subject: dsn %d\r\n\r\nreport %d\r\n", i, i);
        inject_one(fs, data[i], ids[i]);
    }
    assert_int_equal(count_files(root, "free"), 40);
    assert_int_equal(count_claimed(root), 0);

    /* An abort leaves its claimed file free again, unless it grew past
     * what free/ keeps. */
    static char chunk[SPOOL_MSG_FLUSH_AT];
    memset(chunk, 'q', sizeof(chunk));
    const size_t sizes[2] = {100 * 1024, 1000};
    for (int i = 0; i < 2; i++) {
        struct big b = {0};
        char id[QUEUE_ID_LEN + 1];
        assert_int_equal(spool_msg_begin(s, &b.m, id), 0);
        assert_int_equal(spool_msg_write(b.m, chunk, sizes[i]), 0);
        b.flushing = true;
        assert_int_equal(spool_msg_flush(b.m, big_flushed, &b), 0);
        while (b.flushing)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(count_claimed(root), 1);
        spool_msg_abort(b.m);
        for (int k = 0; k < 1000 && count_claimed(root) > 0; k++)
            uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
        assert_int_equal(count_claimed(root), 0);
    }
    assert_int_equal(count_files(root, "free"), 39);
    close_spool(&loop, s); /* checkpoints the five */
    unsetenv("SLUICE_SPOOL_CKPT_MS");

    assert_int_equal(count_claimed(root), 0);
    assert_int_equal(count_files(root, "free"), 29);
    assert_int_equal(count_files(root, "incoming"), 0);
    assert_int_equal(count_files(root, "queue"), 2 * (5 + 20));
    for (int i = 0; i < 5; i++)
        check_message(fs, held[i], held_data[i], strlen(held_data[i]), "carol@example.test");
    for (int i = 0; i < 20; i++)
        check_message(fs, ids[i], data[i], strlen(data[i]), "alice@example.test");

    /* One file left: the checkpoint takes it for the message and creates
     * the envelope beside it (in incoming/, where a recovery sees the pair). */
    for (int i = 0; i < 14; i++)
        inject_one(fs, data[i], ids[i]);
    assert_int_equal(count_files(root, "free"), 1);
    setenv("SLUICE_SPOOL_CKPT_MS", "600000", 1);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    commit_journaled(&loop, s, 1, held, held_data);
    assert_int_equal(count_files(root, "free"), 1);
    close_spool(&loop, s);
    unsetenv("SLUICE_SPOOL_CKPT_MS");
    assert_int_equal(count_files(root, "free"), 0);
    assert_int_equal(count_files(root, "incoming"), 0);
    check_message(fs, held[0], held_data[0], strlen(held_data[0]), "carol@example.test");
    spool_fs_close(fs);
}

/* ---- the hand-off to the runner (a socket standing in for it) ---- */

struct handed {
    int n;
    uint64_t seq[8];
    char id[8][QUEUE_ID_LEN + 1];
};

static void take_handed(void *arg, const journal_rec *r)
{
    struct handed *h = arg;
    assert_true(h->n < 8);
    h->seq[h->n] = r->seq;
    memcpy(h->id[h->n], r->id, sizeof(h->id[0]));
    h->n++;
}

static void answer(const char *root, const char *verb, uint64_t seq, const char *id)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_int_equal(spool_path(root, SPOOL_JOURNAL_SOCK, sa.sun_path, sizeof(sa.sun_path)), 0);
    char text[100];
    size_t len = (size_t)snprintf(text, sizeof(text), "%s", verb);
    len += handoff_ack_item(text + len, seq, id);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(sendto(fd, text, len, 0, (struct sockaddr *)&sa, sizeof(sa)), (ssize_t)len);
    close(fd);
}

/* Datagrams on the runner's socket: records into h, "late"/"new" ids into notes. */
static void drain_runner(int sock, struct handed *h, char *notes, size_t notes_size)
{
    char dg[65536];
    ssize_t len;
    while ((len = recv(sock, dg, sizeof(dg) - 1, 0)) > 0) {
        size_t rest;
        if (handoff_is_records(dg, (size_t)len)) {
            assert_true(handoff_records_parse(dg, (size_t)len, 1u << 20, 1u << 20, take_handed, h,
                                              &rest) > 0);
            assert_int_equal(rest, 0);
            continue;
        }
        dg[len] = '\0';
        strncat(notes, dg, notes_size - strlen(notes) - 1);
        strncat(notes, "\n", notes_size - strlen(notes) - 1);
    }
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool in_queue(const char *root, const char *id)
{
    return exists(root, "queue", id, ".env") && exists(root, "queue", id, ".msg");
}

/*
 * Journaled messages go to the runner with their records. "done" makes the
 * spool forget one (never in queue/); "keep" writes it into queue/ at the
 * next round; no answer writes it there after SLUICE_SPOOL_HANDOFF_MS. Both
 * are announced "late" (the runner may have delivered them). An answer
 * whose id does not match the record changes nothing. The mark passes all
 * three: a restart writes nothing back.
 */
static void test_handoff(void **state)
{
    const char *root = ((struct fx *)*state)->root;
    spool_fs *fs;
    assert_int_equal(spool_fs_open(root, true, &fs), 0);
    int sock = bind_delivery(root);
    setenv("SLUICE_SPOOL_HANDOFF_MS", "400", 1);
    uv_loop_t loop;
    spool *s;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    char ids[8][QUEUE_ID_LEN + 1], data[8][64];
    commit_journaled(&loop, s, 3, ids, data);

    struct handed h = {0};
    char notes[4096] = "";
    for (int i = 0; i < 1000 && h.n < 3; i++)
        drain_runner(sock, &h, notes, sizeof(notes)), usleep(1000);
    assert_int_equal(h.n, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(h.id[i], ids[i]);
    assert_int_equal(h.seq[1], h.seq[0] + 1);

    answer(root, "done", h.seq[2], ids[0]); /* wrong id: ignored */
    answer(root, "done", h.seq[0], ids[0]);
    answer(root, "keep", h.seq[1], ids[1]);
    uint64_t t0 = mono_us();
    while (!in_queue(root, ids[1]) && mono_us() - t0 < 2000000)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    assert_true(in_queue(root, ids[1]));
    assert_false(in_queue(root, ids[2])); /* its wait is not over */
    while (!in_queue(root, ids[2]) && mono_us() - t0 < 3000000)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    assert_true(in_queue(root, ids[2]));
    assert_false(in_queue(root, ids[0]));
    for (int i = 0; i < 200 && !(strstr(notes, ids[1]) && strstr(notes, ids[2])); i++)
        uv_run(&loop, UV_RUN_NOWAIT), drain_runner(sock, &h, notes, sizeof(notes)), usleep(1000);
    char want[40];
    for (int i = 1; i < 3; i++) {
        snprintf(want, sizeof(want), "late %s", ids[i]);
        assert_non_null(strstr(notes, want)); /* each keep or timeout alone in its round */
    }
    assert_null(strstr(notes, ids[0]));
    assert_null(strstr(notes, "new "));
    spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.handed_done, 1);
    close_spool(&loop, s);
    setenv("SLUICE_SPOOL_HANDOFF_MS", "0", 1);

    /* The mark is past all three: nothing is written back. */
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, root, &s), 0);
    close_spool(&loop, s);
    assert_false(in_queue(root, ids[0]));
    assert_int_equal(count_files(root, "queue"), 4);
    check_message(fs, ids[1], data[1], strlen(data[1]), "carol@example.test");
    check_message(fs, ids[2], data[2], strlen(data[2]), "carol@example.test");
    spool_fs_close(fs);
    close(sock);
}

static void never_called(void *arg, int status)
{
    fail_msg("callback after abort (status %d)", status);
}

static void test_abort(void **state)
{
    struct fx *fx = *state;
    uv_loop_t loop;
    spool *s;
    spool_msg *m;
    char id[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1], id3[QUEUE_ID_LEN + 1];
    static char chunk[400000];

    memset(chunk, 'z', sizeof(chunk));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, fx->root, &s), 0);

    /* Abort with a flush in flight: cleaned up when the flush ends. */
    assert_int_equal(spool_msg_begin(s, &m, id), 0);
    assert_int_equal(spool_msg_write(m, chunk, sizeof(chunk)), 0);
    assert_int_equal(spool_msg_flush(m, never_called, NULL), 0);
    assert_int_equal(spool_msg_write(m, chunk, 10), 0);
    spool_msg_abort(m);

    /* Abort after a completed flush: the file exists and must go. */
    struct big b = {0};
    assert_int_equal(spool_msg_begin(s, &b.m, id2), 0);
    assert_int_equal(spool_msg_write(b.m, chunk, 1000), 0);
    b.flushing = true;
    assert_int_equal(spool_msg_flush(b.m, big_flushed, &b), 0);
    while (b.flushing)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(exists(fx->root, "incoming", id2, ".msg"));
    spool_msg_abort(b.m);

    /* Abort before any file exists. */
    assert_int_equal(spool_msg_begin(s, &m, id3), 0);
    assert_int_equal(spool_msg_write(m, "hello", 5), 0);
    spool_msg_abort(m);

    close_spool(&loop, s); /* runs until every message is freed */
    assert_int_equal(count_files(fx->root, "incoming"), 0);
    assert_int_equal(count_files(fx->root, "queue"), 0);
}

static void test_close_refuses_new_work(void **state)
{
    struct fx *fx = *state;
    uv_loop_t loop;
    spool *s;
    spool_msg *m, *m2;
    char id[QUEUE_ID_LEN + 1];
    struct result r = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, fx->root, &s), 0);
    assert_int_equal(spool_msg_begin(s, &m, id), 0);
    assert_int_equal(spool_msg_begin(s, &m2, id), 0);
    assert_int_equal(spool_msg_write(m, "x\r\n", 3), 0);
    envelope e;
    make_env(&e, "a@b.test");
    assert_int_equal(spool_msg_commit(m, &e, on_done, &r), 0);
    closed = 0;
    spool_close_then(s, on_closed, NULL);
    /* The commit queued before close still completes; new work is refused
     * and the caller still owns the message (no callback). */
    assert_int_equal(spool_msg_commit(m2, &e, never_called, NULL), -ECANCELED);
    spool_msg *m3;
    assert_int_equal(spool_msg_begin(s, &m3, id), -ECANCELED);
    spool_msg_abort(m2);
    envelope_free(&e);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_recover(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;
    char keep[QUEUE_ID_LEN + 1], a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1], c[QUEUE_ID_LEN + 1],
        live[QUEUE_ID_LEN + 1], rel[700];

    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);
    inject_one(fs, "committed\r\n", keep);
    queue_id_new(QUEUE_ID_SMTPD, a);
    queue_id_new(QUEUE_ID_SMTPD, b);
    queue_id_new(QUEUE_ID_SMTPD, c);
    queue_id_new(QUEUE_ID_SMTPD, live);
    /* An interrupted receive and an interrupted commit. */
    snprintf(rel, sizeof(rel), "incoming/%s.msg", a);
    write_file(fx->root, rel, "partial", 7);
    snprintf(rel, sizeof(rel), "incoming/%s.env", a);
    write_file(fx->root, rel, "sluice-env", 10);
    /* A crash between the two renames: .msg in queue/ without .env. */
    snprintf(rel, sizeof(rel), "queue/%s.msg", b);
    write_file(fx->root, rel, "orphan", 6);
    /* An interrupted envelope update of a committed message, and one of
     * a message that no longer exists. */
    snprintf(rel, sizeof(rel), "queue/%s.env.new", keep);
    write_file(fx->root, rel, "half", 4);
    snprintf(rel, sizeof(rel), "queue/%s.env.new", c);
    write_file(fx->root, rel, "half", 4);
    /* Foreign names: quarantined, not deleted. */
    write_file(fx->root, "queue/README", "hi", 2);
    write_file(fx->root, "incoming/core", "x", 1);
    /* A live receive in another process: its message file is locked. */
    snprintf(rel, sizeof(rel), "%s/incoming/%s.msg", fx->root, live);
    int lfd = open(rel, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(lfd >= 0);
    assert_int_equal(flock(lfd, LOCK_EX), 0);

    assert_int_equal(spool_fs_recover(fs), 5);
    assert_false(exists(fx->root, "incoming", a, ".msg"));
    assert_false(exists(fx->root, "incoming", a, ".env"));
    assert_false(exists(fx->root, "queue", b, ".msg"));
    assert_false(exists(fx->root, "queue", keep, ".env.new"));
    assert_false(exists(fx->root, "queue", c, ".env.new"));
    assert_true(exists(fx->root, "incoming", live, ".msg")); /* live: kept */
    assert_true(exists(fx->root, "corrupt", "queue-README", ""));
    assert_true(exists(fx->root, "corrupt", "incoming-core", ""));
    check_message(fs, keep, "committed\r\n", 11, "alice@example.test");
    close(lfd);
    /* Once its writer is gone, the leftover goes too. */
    assert_int_equal(spool_fs_recover(fs), 1);
    assert_int_equal(count_files(fx->root, "incoming"), 0);
    assert_int_equal(count_files(fx->root, "queue"), 2);
    assert_int_equal(spool_fs_recover(fs), 0);
    spool_fs_close(fs);

    /* spool_open recovers too. */
    snprintf(rel, sizeof(rel), "incoming/%s.msg", a);
    write_file(fx->root, rel, "partial", 7);
    uv_loop_t loop;
    spool *s;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spool_open(&loop, fx->root, &s), 0);
    assert_int_equal(count_files(fx->root, "incoming"), 0);
    close_spool(&loop, s);
}

static void test_load_quarantine(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;
    envelope e;
    char id[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1], id3[QUEUE_ID_LEN + 1], rel[700];

    log_set_level(LOG_LVL_ERR); /* the quarantine warnings are expected */
    envelope_init(&e);
    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);

    /* A flipped byte in the envelope. */
    inject_one(fs, "hello\r\n", id);
    snprintf(rel, sizeof(rel), "%s/queue/%s.env", fx->root, id);
    int fd = open(rel, O_RDWR);
    char c;
    assert_int_equal(pread(fd, &c, 1, 40), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, 40), 1);
    close(fd);
    assert_int_equal(spool_fs_load(fs, id, &e), -EBADMSG);
    assert_null(e.sender);
    assert_false(exists(fx->root, "queue", id, ".env"));
    assert_false(exists(fx->root, "queue", id, ".msg"));
    assert_true(exists(fx->root, "corrupt", id, ".env"));
    assert_true(exists(fx->root, "corrupt", id, ".msg"));
    assert_int_equal(spool_fs_load(fs, id, &e), -ENOENT);

    /* A message file of the wrong size. */
    inject_one(fs, "hello again\r\n", id2);
    snprintf(rel, sizeof(rel), "%s/queue/%s.msg", fx->root, id2);
    assert_int_equal(truncate(rel, 3), 0);
    assert_int_equal(spool_fs_load(fs, id2, &e), -EBADMSG);
    assert_true(exists(fx->root, "corrupt", id2, ".msg"));

    /* A missing message file, and an envelope that is not a file. */
    inject_one(fs, "third\r\n", id3);
    snprintf(rel, sizeof(rel), "%s/queue/%s.msg", fx->root, id3);
    assert_int_equal(unlink(rel), 0);
    assert_int_equal(spool_fs_load(fs, id3, &e), -EBADMSG);
    assert_true(exists(fx->root, "corrupt", id3, ".env"));
    char id4[QUEUE_ID_LEN + 1];
    queue_id_new(QUEUE_ID_CLI, id4);
    snprintf(rel, sizeof(rel), "%s/queue/%s.env", fx->root, id4);
    assert_int_equal(mkfifo(rel, 0600), 0);
    assert_int_equal(spool_fs_load(fs, id4, &e), -EBADMSG);
    assert_true(exists(fx->root, "corrupt", id4, ".env"));

    /* An envelope over the size bound (sparse: costs no disk). */
    char id6[QUEUE_ID_LEN + 1];
    inject_one(fs, "big\r\n", id6);
    snprintf(rel, sizeof(rel), "%s/queue/%s.env", fx->root, id6);
    assert_int_equal(truncate(rel, ENVELOPE_MAX_SIZE + 1), 0);
    assert_int_equal(spool_fs_load(fs, id6, &e), -EBADMSG);
    assert_true(exists(fx->root, "corrupt", id6, ".env"));

    /* A second quarantine of the same name does not overwrite the first. */
    snprintf(rel, sizeof(rel), "queue/%s.env", id);
    write_file(fx->root, rel, "garbage", 7);
    assert_int_equal(spool_fs_load(fs, id, &e), -EBADMSG);
    assert_true(exists(fx->root, "corrupt", id, ".env.1"));

    /* Data that does not match its CRC: verify quarantines. */
    char id5[QUEUE_ID_LEN + 1];
    inject_one(fs, "original\r\n", id5);
    snprintf(rel, sizeof(rel), "queue/%s.msg", id5);
    write_file(fx->root, rel, "ORIGINAL\r\n", 10);
    assert_int_equal(spool_fs_load(fs, id5, &e), 0); /* same size */
    assert_int_equal(spool_fs_verify_message(fs, &e), -EBADMSG);
    assert_true(exists(fx->root, "corrupt", id5, ".msg"));
    envelope_free(&e);

    assert_int_equal(spool_fs_load(fs, "not-an-id", &e), -EINVAL);
    assert_int_equal(spool_fs_quarantine(fs, id5, "again"), -ENOENT);
    assert_int_equal(count_files(fx->root, "queue"), 0);
    spool_fs_close(fs);
    log_set_level(LOG_LVL_INFO);
}

static void test_store_load(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;
    envelope e, f;
    char id[QUEUE_ID_LEN + 1];
    int lockfd;

    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);
    inject_one(fs, "data\r\n", id);
    envelope_init(&e);
    envelope_init(&f);
    assert_int_equal(spool_fs_lock(fs, id, false, &lockfd), 0);
    assert_int_equal(spool_fs_load(fs, id, &e), 0);
    e.rcpts[0].state = RCPT_DEFERRED;
    e.rcpts[0].attempts = 2;
    e.rcpts[0].next_attempt = 1700000600;
    e.rcpts[0].last_attempt = 1700000300;
    envelope_set(&e.rcpts[0].last_reply, "451 4.7.1 greylisted\r\n");
    envelope_set(&e.rcpts[0].relay, "mx.example.test[192.0.2.25]:25");
    envelope_set(&e.rcpts[0].dsn_status, "4.7.1");
    e.hold = true;
    assert_int_equal(spool_fs_store(fs, &e), 0);
    assert_false(exists(fx->root, "queue", id, ".env.new"));
    char rel[700];
    snprintf(rel, sizeof(rel), "queue/%s.env", id);
    assert_int_equal(mode_of(fx->root, rel), 0600);
    assert_int_equal(spool_fs_load(fs, id, &f), 0);
    envelope_set(&e.rcpts[0].last_reply, "451 4.7.1 greylisted  "); /* CRLF -> spaces */
    assert_true(envelope_equal(&e, &f));
    spool_fs_unlock(lockfd);

    /* Removing uncommits; a store afterwards cannot resurrect it. */
    assert_int_equal(spool_fs_remove(fs, id), 0);
    assert_int_equal(spool_fs_remove(fs, id), -ENOENT);
    assert_int_equal(spool_fs_store(fs, &e), -ENOENT);
    assert_int_equal(count_files(fx->root, "queue"), 0);
    assert_int_equal(spool_fs_load(fs, id, &f), -ENOENT);
    envelope_free(&e);
    envelope_free(&f);
    spool_fs_close(fs);
}

static void test_lock(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;
    char id[QUEUE_ID_LEN + 1];
    int l1, l2;

    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);
    inject_one(fs, "lock me\r\n", id);
    assert_int_equal(spool_fs_lock(fs, id, false, &l1), 0);
    /* Another open file description, even in this process, is excluded. */
    assert_int_equal(spool_fs_lock(fs, id, false, &l2), -EWOULDBLOCK);
    assert_int_equal(l2, -1);

    /* Another process: excluded while held; a waiter wakes up when the
     * holder removes the message and learns it is gone. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The inherited descriptor shares the parent's lock: drop it. */
        close(l1);
        int fd;
        if (spool_fs_lock(fs, id, false, &fd) != -EWOULDBLOCK)
            _exit(1);
        _exit(spool_fs_lock(fs, id, true, &fd) == -ENOENT ? 0 : 2);
    }
    usleep(100000); /* let the child reach its blocking wait */
    /* the runner's removal (no fsync) uncommits just the same */
    assert_int_equal(spool_fs_remove_unsynced(fs, id), 0);
    assert_int_equal(spool_fs_remove_unsynced(fs, id), -ENOENT);
    spool_fs_unlock(l1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    inject_one(fs, "again\r\n", id);
    assert_int_equal(spool_fs_lock(fs, id, false, &l1), 0);
    spool_fs_unlock(l1);
    assert_int_equal(spool_fs_lock(fs, id, true, &l2), 0); /* released */
    spool_fs_unlock(l2);
    spool_fs_unlock(-1); /* harmless */
    assert_int_equal(spool_fs_lock(fs, "00000000000000", false, &l1), -ENOENT);
    spool_fs_close(fs);
}

static void test_inject(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;
    envelope e;
    char rel[700];

    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);
    make_env(&e, "");
    queue_id_new(QUEUE_ID_DELIVERY, e.id);
    assert_int_equal(spool_fs_inject(fs, &e, "dsn\r\n", 5), 0);
    assert_int_equal(e.size, 5);
    assert_int_equal(e.crc32, (uint32_t)crc32(0, (const Bytef *)"dsn\r\n", 5));
    snprintf(rel, sizeof(rel), "queue/%s.msg", e.id);
    assert_int_equal(mode_of(fx->root, rel), 0600);
    snprintf(rel, sizeof(rel), "queue/%s.env", e.id);
    assert_int_equal(mode_of(fx->root, rel), 0600);
    check_message(fs, e.id, "dsn\r\n", 5, "");
    /* The same id again: refused, the committed message untouched. */
    log_set_level(LOG_LVL_ERR + 1);
    assert_int_equal(spool_fs_inject(fs, &e, "other\r\n", 7), -EEXIST);
    log_set_level(LOG_LVL_INFO);
    check_message(fs, e.id, "dsn\r\n", 5, "");
    assert_int_equal(count_files(fx->root, "incoming"), 0);
    /* Invalid input. */
    e.id[0] = 'x';
    assert_int_equal(spool_fs_inject(fs, &e, "x", 1), -EINVAL);
    envelope_free(&e);
    /* An empty message is a message. */
    char id[QUEUE_ID_LEN + 1];
    inject_one(fs, "", id);
    check_message(fs, id, "", 0, "alice@example.test");
    spool_fs_close(fs);
}

static void test_notify(void **state)
{
    struct fx *fx = *state;
    spool_fs *fs;
    char buf[128];

    assert_int_equal(spool_fs_open(fx->root, true, &fs), 0);
    spool_fs_close(fs);
    /* Nobody listening: an error code, no block, no crash. */
    int rc = spool_notify_delivery(fx->root, "new 18F3A2B4C5D6E0", 18);
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
    int sock = bind_delivery(fx->root);
    assert_int_equal(spool_notify_delivery(fx->root, "new 18F3A2B4C5D6E0", 18), 0);
    ssize_t n = recv(sock, buf, sizeof(buf), 0);
    assert_int_equal(n, 18);
    assert_memory_equal(buf, "new 18F3A2B4C5D6E0", 18);
    /* A full receive queue: -EAGAIN, never a wait. */
    int sent = 0;
    while ((rc = spool_notify_delivery(fx->root, "flush", 5)) == 0 && sent < 100000)
        sent++;
    assert_int_equal(rc, -EAGAIN);
    close(sock);
    char longroot[200];
    memset(longroot, 'a', sizeof(longroot) - 1);
    longroot[sizeof(longroot) - 1] = '\0';
    assert_int_equal(spool_notify_delivery(longroot, "x", 1), -ENAMETOOLONG);
}

/* ---- full disk: a 256 KiB tmpfs in a private mount namespace ---- */

static void full_disk_child(const char *dir)
{
    char root[400];
    uv_loop_t loop;
    spool *s;
    static char chunk[64 * 1024];

    snprintf(root, sizeof(root), "%s/spool", dir);
    memset(chunk, 'f', sizeof(chunk));
    if (uv_loop_init(&loop) || spool_open(&loop, root, &s))
        _exit(10);
    envelope e;
    envelope_init(&e);
    envelope_set(&e.sender, "a@b.test");
    envelope_add_rcpt(&e, "c@d.test", NULL, 0);

    /* 1. A large message: a flush fails with ENOSPC; commit refuses. */
    spool_msg *m;
    char id[QUEUE_ID_LEN + 1];
    struct big b = {0};
    if (spool_msg_begin(s, &m, id))
        _exit(11);
    b.m = m;
    for (int i = 0; i < 16 && !b.flush_errors; i++) {
        for (int k = 0; k < 5; k++)
            if (spool_msg_write(m, chunk, sizeof(chunk)))
                _exit(12);
        b.flushing = true;
        if (spool_msg_flush(m, big_flushed, &b))
            _exit(13);
        while (b.flushing)
            uv_run(&loop, UV_RUN_ONCE);
    }
    if (!b.flush_errors)
        _exit(14);
    struct result r = {0};
    int rc = spool_msg_commit(m, &e, on_done, &r);
    if (rc != -ENOSPC)
        _exit(15);
    spool_msg_abort(m);
    /* The discard runs in the pool: wait for the space to come back (the
     * pages are freed at the close after the unlink). */
    struct statvfs sv;
    for (int i = 0; i < 100000; i++) {
        if (statvfs(dir, &sv) != 0)
            _exit(21);
        if (count_files(root, "incoming") == 0 && sv.f_bfree * sv.f_frsize >= 200 * 1024)
            break;
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    if (count_files(root, "incoming") != 0)
        _exit(21);

    /* 2. Fill the disk, then small messages: the journal was made whole
     * at start, so they are durable and acknowledged; their files cannot be
     * written, so the checkpointer keeps them and tries again. */
    char filler[400];
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT, 0600);
    while (write(fd, chunk, sizeof(chunk)) > 0)
        ;
    while (write(fd, chunk, 1) > 0)
        ;
    close(fd);
    struct result r2[4] = {{0}};
    char ids[4][QUEUE_ID_LEN + 1];
    for (int i = 0; i < 4; i++) {
        if (spool_msg_begin(s, &m, ids[i]))
            _exit(16);
        if (spool_msg_write(m, chunk, 5000) || spool_msg_commit(m, &e, on_done, &r2[i]))
            _exit(17);
    }
    int calls = 0;
    for (int i = 0; i < 100000 && calls < 4; i++) {
        uv_run(&loop, UV_RUN_ONCE);
        calls = r2[0].calls + r2[1].calls + r2[2].calls + r2[3].calls;
    }
    for (int i = 0; i < 4; i++)
        if (r2[i].calls != 1 || r2[i].status != 0) {
            dprintf(2, "full disk: message %d: %d calls, status %d\n", i, r2[i].calls,
                    r2[i].status);
            _exit(18);
        }
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(2000);
    if (count_files(root, "queue") != 0)
        _exit(19);

    /* 3. Space back: the next try writes them into queue/. */
    if (unlink(filler) != 0)
        _exit(20);
    for (int i = 0; i < 3000 && count_files(root, "queue") < 8; i++)
        uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    if (count_files(root, "queue") != 8)
        _exit(21);
    envelope_free(&e);
    closed = 0;
    spool_close_then(s, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (closed != 1 || uv_loop_close(&loop))
        _exit(22);

    /* 4. The mark passed them: a restart writes nothing back. */
    if (uv_loop_init(&loop) || spool_open(&loop, root, &s))
        _exit(23);
    closed = 0;
    spool_close_then(s, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (closed != 1 || uv_loop_close(&loop) || count_files(root, "queue") != 8)
        _exit(24);
    spool_fs *fs;
    if (spool_fs_open(root, false, &fs))
        _exit(25);
    for (int i = 0; i < 4; i++) {
        envelope got;
        envelope_init(&got);
        if (spool_fs_load(fs, ids[i], &got) != 0 || got.size != 5000)
            _exit(26);
        envelope_free(&got);
    }
    spool_fs_close(fs);
    _exit(0);
}

static void test_full_disk(void **state)
{
    struct fx *fx = *state;
    char dir[300];

    snprintf(dir, sizeof(dir), "%s", fx->root);
    *strrchr(dir, '/') = '\0';
    strcat(dir, "/tmpfs");
    assert_int_equal(mkdir(dir, 0700), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Private mounts: nothing is visible outside, and the mount goes
         * away with this process even if it crashes. */
        if (unshare(CLONE_NEWNS) != 0)
            _exit(100);
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            _exit(100);
        if (mount("tmpfs", dir, "tmpfs", 0, "size=8452k,mode=0700") != 0)
            _exit(100);
        log_set_level(LOG_LVL_ERR + 1); /* the failures are expected */
        full_disk_child(dir);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 100) {
        rmdir(dir);
        skip(); /* prints SKIPPED */
    }
    if (WEXITSTATUS(status) != 0)
        fail_msg("full-disk child failed at step %d", WEXITSTATUS(status));
    rmdir(dir);
}

int main(void)
{
    /* These tests stand in for the runner with a socket that only reads:
     * no records handed out (test_handoff covers that). */
    setenv("SLUICE_SPOOL_HANDOFF_MS", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_syncfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_fdatasync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycle_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycle_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_large_with_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_refuses_new_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_quarantine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_regions_reused, setup, teardown),
    };
    log_init("test_spool", 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
