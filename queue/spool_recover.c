/*
 * spool_recover.c - start-of-day clean-up of the spool (spool_fs_recover).
 *
 * What a crash can leave, and what happens to it:
 *   incoming/ID.msg, incoming/ID.env   a receive or commit that never got
 *                                      its 250: removed
 *   queue/ID.msg without queue/ID.env  a crash between the commit's two
 *                                      renames (never acknowledged), or
 *                                      between a remove's two unlinks:
 *                                      removed
 *   queue/ID.env.new                   an interrupted spool_fs_store (the old
 *                                      ID.env is intact): removed
 *   any other name in queue/           not ours: moved to corrupt/
 *
 * Several processes may run this while another one works on the spool
 * (sluice-delivery restarting under a live sluice-smtpd). A file that is
 * being written is always covered by an flock() on its message file, held
 * by the writer from the moment it creates incoming/ID.msg (or claims a file
 * in free/, which this never reads) until the commit is complete (the lock
 * follows the inode across the rename into queue/). Both files of a message
 * are in the same folder until that rename (spool_txn.c).
 * So before removing anything of an id we take that lock without waiting:
 * if it is held the id is live and skipped. The writer's side of the race
 * (create, then lock) is closed in spool_create_locked.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/log.h"
#include "spool_int.h"

/*
 * Takes the lock of id's message file, wherever it is now (incoming/ or,
 * after the commit's first rename, queue/). Returns a locked descriptor,
 * -ENOENT when no message file exists, -EWOULDBLOCK when the id is live.
 */
static int lock_id(spool_fs *fs, const char *id)
{
    const int dirs[] = {fs->incoming_fd, fs->queue_fd};
    char name[SPOOL_NAME_MAX];

    spool_name(name, id, SPOOL_EXT_MSG);
    for (size_t i = 0; i < 2; i++) {
        int fd = openat(dirs[i], name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno == EAGAIN ? -EWOULDBLOCK : -errno;
            close(fd);
            return err;
        }
        return fd;
    }
    return -ENOENT;
}

/* Whether name is "ID" + ext exactly; copies the id. */
static bool split_name(const char *name, const char *ext, char id[QUEUE_ID_LEN + 1])
{
    size_t n = strlen(name), el = strlen(ext);

    if (n != QUEUE_ID_LEN + el || strcmp(name + QUEUE_ID_LEN, ext) != 0 ||
        !queue_id_valid(name, QUEUE_ID_LEN))
        return false;
    memcpy(id, name, QUEUE_ID_LEN);
    id[QUEUE_ID_LEN] = '\0';
    return true;
}

static bool exists_in(int dirfd, const char *id, const char *ext)
{
    char name[SPOOL_NAME_MAX];
    struct stat st;

    spool_name(name, id, ext);
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

/* Moves a foreign name to corrupt/ (prefixed with its folder). */
static int move_foreign(spool_fs *fs, int dirfd, const char *folder, const char *name)
{
    char target[NAME_MAX + 1];
    int rc = -EEXIST;

    for (int i = 0; i < 1000 && rc == -EEXIST; i++) {
        int n = i == 0 ? snprintf(target, sizeof(target), "%s-%s", folder, name)
                       : snprintf(target, sizeof(target), "%s-%s.%d", folder, name, i);
        if (n < 0 || n >= (int)sizeof(target))
            return -ENAMETOOLONG;
        rc = spool_rename_noreplace(dirfd, name, fs->corrupt_fd, target);
    }
    if (rc == 0)
        log_warn("spool: %s/%s is not a spool file: moved to corrupt/%s", folder, name, target);
    else
        log_err("spool: cannot move %s/%s to corrupt/: %s", folder, name, strerror(-rc));
    return rc;
}

/* Removes one leftover of id if the id is not live. Returns 1 if removed. */
static int remove_leftover(spool_fs *fs, int dirfd, const char *name, const char *id,
                           bool need_orphan)
{
    /* The common case, a committed message: no lock needed to see that
     * (and none taken, so a runner's lock attempt never fails on us). */
    if (need_orphan && exists_in(fs->queue_fd, id, SPOOL_EXT_ENV))
        return 0;
    int fd = lock_id(fs, id);
    if (fd == -EWOULDBLOCK)
        return 0; /* a live receive, commit or update owns it */
    if (fd < 0 && fd != -ENOENT)
        return fd;
    int rc = 0;
    /* queue/ID.msg is a leftover only without its envelope; checked while
     * holding the lock, so a commit cannot be completing meanwhile. */
    if (!need_orphan || !exists_in(fs->queue_fd, id, SPOOL_EXT_ENV)) {
        if (unlinkat(dirfd, name, 0) == 0)
            rc = 1;
        else if (errno != ENOENT)
            rc = -errno;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static int scan(spool_fs *fs, int dirfd, const char *folder, int *removed)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    bool incoming = dirfd == fs->incoming_fd;
    int err = 0;
    for (;;) {
        char id[QUEUE_ID_LEN + 1];
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                err = -errno;
            break;
        }
        const char *name = de->d_name;
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        int rc = 0;
        if (incoming &&
            (split_name(name, SPOOL_EXT_MSG, id) || split_name(name, SPOOL_EXT_ENV, id)))
            rc = remove_leftover(fs, dirfd, name, id, false);
        else if (!incoming && split_name(name, SPOOL_EXT_ENV, id))
            continue; /* committed; spool_fs_load verifies it */
        else if (!incoming && split_name(name, SPOOL_EXT_MSG, id))
            rc = remove_leftover(fs, dirfd, name, id, true);
        else if (!incoming && split_name(name, SPOOL_EXT_NEW, id))
            rc = remove_leftover(fs, dirfd, name, id, false);
        else
            (void)move_foreign(fs, dirfd, folder, name); /* logged; not fatal */
        if (rc > 0) {
            (*removed)++;
            log_info("spool: removed leftover %s/%s", folder, name);
        } else if (rc < 0 && !err) {
            err = rc;
        }
    }
    closedir(d);
    return err;
}

int spool_fs_recover(spool_fs *fs)
{
    int removed = 0;
    int rc = scan(fs, fs->incoming_fd, "incoming", &removed);
    int rc2 = scan(fs, fs->queue_fd, "queue", &removed);

    if (rc == 0)
        rc = rc2;
    if (removed > 0) {
        /* Not needed for safety (a resurrected leftover is removed again
         * next time) but keeps the next start quiet. */
        spool_fsync(fs->incoming_fd);
        spool_fsync(fs->queue_fd);
    }
    if (rc < 0)
        return rc;
    return removed;
}
