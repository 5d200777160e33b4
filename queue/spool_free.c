/*
 * spool_free.c - free/: spool files kept for reuse instead of deleted.
 *
 * Why: every message is two new files, and the runner deletes them again
 * moments later. On ext4 without a journal the inode allocator will not
 * hand out an inode freed in the last minute and checks every such inode
 * on its way (fs/ext4/ialloc.c, recently_deleted), so under sustained load
 * each create walked thousands of them: 57 % of sluice-smtpd's CPU in the
 * end-to-end benchmark (docs/performance.md). A file renamed into free/
 * keeps its inode; the next message renames it back in and writes over it,
 * so steady traffic allocates no inodes at all. Nor does it free blocks:
 * the file is overwritten in place and cut to its new length at the end,
 * because freeing blocks (a truncate, an unlink) costs a synchronous
 * discard on a filesystem mounted with -o discard, as this one is.
 * PostgreSQL recycles its WAL segments for the same reasons.
 *
 * Nothing in free/ is ever read: its content is whatever a finished message
 * left there, and a file taken from it is truncated before anything is
 * written (spool_txn cuts it to the new length). It is bounded: SPOOL_FREE_MAX files, none larger
 * than SPOOL_FREE_SIZE_MAX (bigger ones, and any past the bound, are unlinked as before), and
 * spool_fs_recover never needs to look at it.
 *
 * Both daemons may give and take (the runner gives when it removes a
 * message and takes for a DSN; smtpd takes), so every step is a rename
 * that either wins or finds the name gone, and the in-memory list of names
 * is only a hint refilled from the folder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool_int.h"

static int64_t mono_ms(void)
{
    return (int64_t)(spool_mono_us() / 1000);
}

static bool free_name_ok(const char *n)
{
    size_t len = strlen(n);
    return len > QUEUE_ID_LEN && len < SPOOL_NAME_MAX && queue_id_valid(n, QUEUE_ID_LEN) &&
           (strcmp(n + QUEUE_ID_LEN, SPOOL_EXT_MSG) == 0 ||
            strcmp(n + QUEUE_ID_LEN, SPOOL_EXT_ENV) == 0);
}

/* Lists free/ into the hint list and the count (under mu). */
static void scan(spool_fs *fs)
{
    struct spool_free *f = &fs->free;
    f->n = 0;
    f->scanned_ms = mono_ms();
    int dfd = openat(fs->free_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    size_t seen = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        seen++;
        if (f->n < SPOOL_FREE_HINTS && free_name_ok(de->d_name))
            snprintf(f->names[f->n++], SPOOL_NAME_MAX, "%s", de->d_name);
    }
    closedir(d);
    f->count = seen;
}

static int unlink_it(int dirfd, const char *name)
{
    return unlinkat(dirfd, name, 0) == 0 ? 0 : -errno;
}

int spool_free_give(spool_fs *fs, int dirfd, const char *name)
{
    struct stat st;
    if (fs->free_fd < 0)
        return unlink_it(dirfd, name);
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size > SPOOL_FREE_SIZE_MAX)
        return unlink_it(dirfd, name);
    struct spool_free *f = &fs->free;
    pthread_mutex_lock(&f->mu);
    /* The count goes stale as the other daemon takes files: recount now and
     * then, and when full no more often than a taker would (not on every
     * removal: that is a listing of SPOOL_FREE_MAX names per message). */
    int64_t age = mono_ms() - f->scanned_ms;
    if (age > (f->count >= SPOOL_FREE_MAX ? SPOOL_FREE_RESCAN_MS : SPOOL_FREE_RECOUNT_MS))
        scan(fs);
    bool keep = f->count < SPOOL_FREE_MAX;
    if (keep)
        f->count++;
    pthread_mutex_unlock(&f->mu);
    if (keep && renameat2(dirfd, name, fs->free_fd, name, RENAME_NOREPLACE) == 0)
        return 0;
    return unlink_it(dirfd, name);
}

/* Takes the file renamed to dirfd/name, or removes it: 0 with *out, or -1. */
static int adopt(spool_fs *fs, int dirfd, const char *name, const char *from, bool lock, int *out)
{
    int fd;
    /* O_NONBLOCK: a FIFO planted in free/ must not hang the writer. */
    do
        fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        (void)unlinkat(dirfd, name, 0);
        return -1;
    }
    /* Not blocking: whoever removed the message may hold its lock a moment
     * longer (the runner unlocks after the removal). Then it goes back. */
    if (lock && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        if (renameat2(dirfd, name, fs->free_fd, from, RENAME_NOREPLACE) != 0)
            (void)unlinkat(dirfd, name, 0);
        return -1;
    }
    /* O_NONBLOCK may stay set: it has no effect on a regular file's I/O (open(2)). */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != fs->euid) {
        /* Not a file we could have put there (or a recovery removed it
         * under us): never write into it. */
        close(fd);
        (void)unlinkat(dirfd, name, 0);
        return -1;
    }
    *out = fd;
    return 0;
}

int spool_free_take(spool_fs *fs, int dirfd, const char *name, bool lock, int *out)
{
    if (fs->free_fd < 0)
        return -ENOENT;
    struct spool_free *f = &fs->free;
    /* A few tries, then a plain create: nothing here may stall a commit. */
    for (int tries = 0; tries < SPOOL_FREE_TRIES; tries++) {
        char from[SPOOL_NAME_MAX];
        pthread_mutex_lock(&f->mu);
        /* An empty list is refilled at most every SPOOL_FREE_RESCAN_MS:
         * when free/ is empty, a create is cheaper than a readdir each time. */
        if (f->n == 0 && mono_ms() - f->scanned_ms >= SPOOL_FREE_RESCAN_MS)
            scan(fs);
        if (f->n == 0) {
            pthread_mutex_unlock(&f->mu);
            return -ENOENT;
        }
        memcpy(from, f->names[--f->n], SPOOL_NAME_MAX);
        if (f->count)
            f->count--;
        pthread_mutex_unlock(&f->mu);

        if (renameat2(fs->free_fd, from, dirfd, name, RENAME_NOREPLACE) != 0) {
            if (errno == ENOENT)
                continue;   /* the other daemon took it first */
            return -ENOENT; /* odd; create instead */
        }
        if (adopt(fs, dirfd, name, from, lock, out) == 0)
            return 0;
    }
    return -ENOENT;
}
