/*
 * spool_io.c - the few system-call wrappers every spool file needs, written
 * once with their EINTR, short-write and error rules (see spool_int.h).
 *
 * No function here retries an fsync or fdatasync that failed: after a failed
 * sync the kernel may have dropped the dirty pages and a second call can
 * report success for data that is gone ("fsyncgate", PostgreSQL 2018). A
 * failed sync fails the operation.
 */
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool_int.h"

void spool_name(char out[SPOOL_NAME_MAX], const char *id, const char *ext)
{
    snprintf(out, SPOOL_NAME_MAX, "%.*s%s", QUEUE_ID_LEN, id, ext);
}

int spool_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* no progress and no error: do not spin */
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int spool_fsync(int fd)
{
    while (fsync(fd) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

int spool_fdatasync(int fd)
{
    while (fdatasync(fd) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

int spool_close_written(int fd)
{
    /* On Linux the descriptor is gone even when close() fails; EINTR is
     * not a write error, anything else (NFS, quota) is. */
    if (close(fd) != 0 && errno != EINTR)
        return -errno;
    return 0;
}

int spool_create_locked(int dirfd, const char *name, int *out)
{
    for (int tries = 0; tries < 3; tries++) {
        int fd;
        do
            fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        while (fd < 0 && errno == EINTR);
        if (fd < 0)
            return -errno;
        int rc;
        while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
            ;
        struct stat st;
        if (rc == 0 && fstat(fd, &st) != 0)
            rc = -1;
        if (rc != 0) {
            int err = -errno;
            close(fd);
            unlinkat(dirfd, name, 0);
            return err;
        }
        if (st.st_nlink > 0) {
            *out = fd;
            return 0;
        }
        /* A recovery in another process saw an unlocked leftover and
         * removed it: our name is free again, take it anew. */
        close(fd);
    }
    return -EAGAIN;
}

int spool_rename_noreplace(int from_dir, const char *from, int to_dir, const char *to)
{
    static int no_renameat2; /* set once if the filesystem lacks it */

    if (!__atomic_load_n(&no_renameat2, __ATOMIC_RELAXED)) {
        if (renameat2(from_dir, from, to_dir, to, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        __atomic_store_n(&no_renameat2, 1, __ATOMIC_RELAXED);
    }
    /* Without RENAME_NOREPLACE: ids are unique per process and the O_EXCL
     * create in incoming/ already caught clashes with live receives. */
    if (faccessat(to_dir, to, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return -EEXIST;
    if (renameat(from_dir, from, to_dir, to) != 0)
        return -errno;
    return 0;
}

int spool_read_file(int dirfd, const char *name, size_t max, sbuf *out)
{
    int fd;
    do
        /* O_NONBLOCK: a FIFO planted under a spool name must not hang us. */
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return errno == ELOOP ? -EBADMSG : -errno;

    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EBADMSG; /* a FIFO, device or folder where a file belongs */
    } else if ((uint64_t)st.st_size > max) {
        rc = -EFBIG;
    } else {
        rc = sbuf_reserve(out, (size_t)st.st_size + 1);
    }
    /* Read to EOF rather than trusting st_size: the file is untrusted and
     * a concurrent writer (a bug, an admin) may change it under us. A read
     * that returns less than asked for has met the end (the buffer has room
     * beyond st_size, so the usual file takes one read). */
    while (rc == 0) {
        if (out->len > max) {
            rc = -EFBIG;
            break;
        }
        if (out->cap - out->len < 2 && (rc = sbuf_reserve(out, 4096)) != 0)
            break;
        size_t want = out->cap - out->len - 1;
        ssize_t n = read(fd, out->data + out->len, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
        } else if (n == 0) {
            break;
        } else {
            out->len += (size_t)n;
            out->data[out->len] = '\0';
            if ((size_t)n < want && out->len <= max)
                break;
        }
    }
    close(fd);
    return rc;
}

void spool_unlink_quiet(int dirfd, const char *name)
{
    /* Cleanup after a failure: the name may never have been created, and
     * there is nothing better to do with another error than to leave the
     * file for spool_fs_recover. */
    (void)unlinkat(dirfd, name, 0);
}

enum spool_sync_method spool_sync_method_from_env(void)
{
    const char *v = getenv("SLUICE_SPOOL_SYNC");

    if (v && strcmp(v, "fdatasync") == 0)
        return SPOOL_SYNC_FDATASYNC;
    return SPOOL_SYNC_SYNCFS;
}

uint64_t spool_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
