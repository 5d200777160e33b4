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
 * Both daemons give and take (the runner gives when it removes a message
 * and takes for a DSN; smtpd takes). A file in free/ belongs to whoever
 * holds its flock() and has checked that its name there still refers to
 * it; only that holder writes it, renames it or removes it. So a taker
 * writes the file where it lies and renames it once, into queue/ at the
 * commit, instead of first renaming it out of free/ (two renames fewer per
 * message: renameat2 was a quarter of sluice-smtpd's CPU). A giver renames
 * (RENAME_NOREPLACE) a file nobody else can be writing. The in-memory list
 * of names is only a hint refilled from the folder.
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

/* ---- the inodes we hold claimed (under mu) ---- */

static size_t held_slot(ino_t ino)
{
    return (size_t)((uint64_t)ino * 0x9E3779B97F4A7C15ull >> 52) % SPOOL_FREE_HELD;
}

static bool held_has(const struct spool_free *f, ino_t ino)
{
    for (size_t i = held_slot(ino), k = 0; k < SPOOL_FREE_HELD && f->held[i]; k++) {
        if (f->held[i] == ino)
            return true;
        i = (i + 1) % SPOOL_FREE_HELD;
    }
    return false;
}

/* Past SPOOL_FREE_HELD - 1 claims (a huge fd limit), further ones go
 * unrecorded: a listing then offers them, and the claim fails on the lock. */
static void held_add(struct spool_free *f, ino_t ino)
{
    if (ino == 0 || f->nheld >= SPOOL_FREE_HELD - 1 || held_has(f, ino))
        return;
    size_t i = held_slot(ino);
    while (f->held[i])
        i = (i + 1) % SPOOL_FREE_HELD;
    f->held[i] = ino;
    f->nheld++;
}

/* Linear probing's deletion: later entries of the run move back into the
 * hole when their home slot allows it, so no lookup stops early. */
static void held_del(struct spool_free *f, ino_t ino)
{
    size_t i = held_slot(ino), k = 0;
    while (f->held[i] && f->held[i] != ino && k++ < SPOOL_FREE_HELD)
        i = (i + 1) % SPOOL_FREE_HELD;
    if (f->held[i] != ino || ino == 0)
        return;
    f->held[i] = 0;
    f->nheld--;
    for (size_t j = (i + 1) % SPOOL_FREE_HELD; f->held[j]; j = (j + 1) % SPOOL_FREE_HELD) {
        size_t home = held_slot(f->held[j]);
        /* Move j back to the hole i unless home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            f->held[i] = f->held[j];
            f->held[j] = 0;
            i = j;
        }
    }
}

void spool_free_release(spool_fs *fs, ino_t ino)
{
    if (ino == 0)
        return;
    pthread_mutex_lock(&fs->free.mu);
    held_del(&fs->free, ino);
    pthread_mutex_unlock(&fs->free.mu);
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
        if (f->n < SPOOL_FREE_HINTS && free_name_ok(de->d_name) && !held_has(f, de->d_ino))
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

/* Opens free/name and claims it: 0 with *out (locked), -EAGAIN when someone
 * else holds it or it is gone, -1 when it is not usable (and was removed if
 * that was safe). */
static int claim_one(spool_fs *fs, const char *name, int *out, off_t *size, ino_t *ino)
{
    int fd;
    /* O_NONBLOCK: a FIFO planted in free/ must not hang the writer. */
    do
        fd = openat(fs->free_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == ENOENT)
            return -EAGAIN; /* the other daemon took it first */
        /* A symlink or a FIFO: nobody can claim it, so nobody renames it
         * while we remove it. (A folder stays: unlinkat refuses it.) */
        if (errno == ELOOP || errno == ENXIO)
            (void)unlinkat(fs->free_fd, name, 0);
        return -1;
    }
    /* Not blocking: a claim is held while a message is written, and the
     * runner holds a finished message's lock a moment after giving it. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return -EAGAIN;
    }
    /* Only now is the file ours, and only if free/name still names it: we
     * may have opened it just before its claimer renamed it into queue/ and
     * let go of it. */
    struct stat st, named;
    if (fstat(fd, &st) != 0 || fstatat(fs->free_fd, name, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
        named.st_ino != st.st_ino || named.st_dev != st.st_dev) {
        close(fd);
        return -EAGAIN;
    }
    /* O_NONBLOCK may stay set: it has no effect on a regular file's I/O (open(2)). */
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != fs->euid ||
        st.st_size > SPOOL_FREE_SIZE_MAX) {
        /* Not a file we could have put there, or one that a crash left
         * large: never write into it. Removing the name is safe while we
         * hold the lock (a second link keeps its data). */
        (void)unlinkat(fs->free_fd, name, 0);
        close(fd);
        return -1;
    }
    *out = fd;
    *size = st.st_size;
    *ino = st.st_ino;
    return 0;
}

int spool_free_claim(spool_fs *fs, char name[SPOOL_NAME_MAX], int *out, off_t *size, ino_t *ino)
{
    if (fs->free_fd < 0)
        return -ENOENT;
    struct spool_free *f = &fs->free;
    /* A few tries, then a plain create: nothing here may stall a commit. */
    for (int tries = 0; tries < SPOOL_FREE_TRIES; tries++) {
        pthread_mutex_lock(&f->mu);
        /* An empty list is refilled at most every SPOOL_FREE_RESCAN_MS:
         * when free/ is empty, a create is cheaper than a readdir each time. */
        if (f->n == 0 && mono_ms() - f->scanned_ms >= SPOOL_FREE_RESCAN_MS)
            scan(fs);
        if (f->n == 0) {
            pthread_mutex_unlock(&f->mu);
            return -ENOENT;
        }
        /* A name at random: the other daemon's claims stay in free/ and,
         * both of us listing in the same order, would sit together where
         * a fixed choice looks first. */
        f->pick ^= f->pick << 13;
        f->pick ^= f->pick >> 7;
        f->pick ^= f->pick << 17;
        size_t i = (size_t)(f->pick % f->n);
        memcpy(name, f->names[i], SPOOL_NAME_MAX);
        memcpy(f->names[i], f->names[--f->n], SPOOL_NAME_MAX);
        if (f->count)
            f->count--;
        pthread_mutex_unlock(&f->mu);

        if (claim_one(fs, name, out, size, ino) == 0) {
            pthread_mutex_lock(&f->mu);
            held_add(f, *ino);
            pthread_mutex_unlock(&f->mu);
            return 0;
        }
    }
    return -ENOENT;
}
