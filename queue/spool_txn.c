/*
 * spool_txn.c - the steps of moving one message into queue/ (see struct
 * spool_txn in spool_int.h). The caller decides how the files are made
 * durable between write and rename, and syncs queue/ after the rename;
 * these functions do the rest and can always be undone.
 *
 * Rename order: .msg first, .env last. The .env's presence is what makes a
 * message committed, so at every instant queue/ holds either nothing of the
 * message, a .msg alone (never acknowledged, and locked by us until the
 * .env follows; spool_fs_recover removes it after a crash), or both.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "spool_int.h"

void spool_txn_init(struct spool_txn *t, const char *id)
{
    memcpy(t->id, id, QUEUE_ID_LEN);
    t->id[QUEUE_ID_LEN] = '\0';
    t->msg_fd = t->env_fd = -1;
    t->msg_dir = t->env_dir = -1;
    t->msg_ino = t->env_ino = 0;
    t->msg_name[0] = t->env_name[0] = '\0';
    t->msg_renamed = t->env_renamed = false;
    t->msg_old_size = 0;
    t->msg_len = 0;
}

int spool_txn_write_msg(spool_fs *fs, struct spool_txn *t, const void *data, size_t len)
{
    if (t->msg_fd < 0) {
        int rc = spool_free_claim(fs, t->msg_name, &t->msg_fd, &t->msg_old_size, &t->msg_ino);
        if (rc == 0)
            t->msg_dir = fs->free_fd;
        else if (rc == -ENOENT) {
            spool_name(t->msg_name, t->id, SPOOL_EXT_MSG);
            rc = spool_create_locked(fs->incoming_fd, t->msg_name, &t->msg_fd);
            t->msg_dir = fs->incoming_fd;
            t->msg_old_size = 0;
        }
        if (rc)
            return rc;
    }
    int rc = len ? spool_write_all(t->msg_fd, data, len) : 0;
    if (rc == 0)
        t->msg_len += len;
    return rc;
}

/* Creates incoming/ID.env: 0 with *fd, or -errno. */
static int create_env(spool_fs *fs, struct spool_txn *t, int *fd)
{
    spool_name(t->env_name, t->id, SPOOL_EXT_ENV);
    do
        *fd = openat(fs->incoming_fd, t->env_name,
                     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    while (*fd < 0 && errno == EINTR);
    if (*fd < 0)
        return -errno;
    t->env_dir = fs->incoming_fd;
    return 0;
}

int spool_txn_write_env(spool_fs *fs, struct spool_txn *t, const void *text, size_t len)
{
    int fd = -1, rc = -ENOENT;
    off_t old_size = 0;

    /* The message is complete now: a reused file loses its old tail. */
    if ((off_t)t->msg_len < t->msg_old_size && ftruncate(t->msg_fd, (off_t)t->msg_len) != 0)
        return -errno;
    if (t->msg_dir == fs->free_fd) {
        rc = spool_free_claim(fs, t->env_name, &fd, &old_size, &t->env_ino);
        if (rc == 0)
            t->env_dir = fs->free_fd;
        else if (rc == -ENOENT) {
            /* Nothing left to claim: the pair goes to incoming/, where a
             * recovery elsewhere sees the .env's message file locked. */
            char name[SPOOL_NAME_MAX];
            spool_name(name, t->id, SPOOL_EXT_MSG);
            if ((rc = spool_rename_noreplace(fs->free_fd, t->msg_name, fs->incoming_fd, name)) != 0)
                return rc;
            memcpy(t->msg_name, name, SPOOL_NAME_MAX);
            t->msg_dir = fs->incoming_fd;
            spool_free_release(fs, t->msg_ino);
            t->msg_ino = 0;
            rc = -ENOENT;
        }
    }
    if (rc == -ENOENT)
        rc = create_env(fs, t, &fd);
    if (rc)
        return rc;
    t->env_fd = fd;
    rc = spool_write_all(fd, text, len);
    if (rc == 0 && (off_t)len < old_size && ftruncate(fd, (off_t)len) != 0)
        rc = -errno;
    return rc;
}

int spool_txn_datasync(struct spool_txn *t)
{
    int rc = spool_fdatasync(t->msg_fd);
    if (rc == 0 && t->env_fd >= 0)
        rc = spool_fdatasync(t->env_fd);
    return rc;
}

int spool_txn_rename(spool_fs *fs, struct spool_txn *t)
{
    char name[SPOOL_NAME_MAX];
    int rc;

    /* NOREPLACE: an id clash with another process must fail this commit,
     * never overwrite a committed message. */
    spool_name(name, t->id, SPOOL_EXT_MSG);
    if ((rc = spool_rename_noreplace(t->msg_dir, t->msg_name, fs->queue_fd, name)) != 0)
        return rc;
    t->msg_renamed = true;
    spool_name(name, t->id, SPOOL_EXT_ENV);
    if ((rc = spool_rename_noreplace(t->env_dir, t->env_name, fs->queue_fd, name)) != 0)
        return rc;
    t->env_renamed = true;
    /* Out of free/: no listing can offer them any more. */
    spool_free_release(fs, t->msg_ino);
    spool_free_release(fs, t->env_ino);
    t->msg_ino = t->env_ino = 0;
    return 0;
}

/* Removes a file of ours; one claimed in free/ stays there (it is free
 * again once closed) unless it grew past what free/ keeps. */
static void drop(spool_fs *fs, int dir, const char *name, bool renamed, const char *id,
                 const char *ext, uint64_t len)
{
    char qname[SPOOL_NAME_MAX];
    if (renamed) {
        spool_name(qname, id, ext);
        spool_unlink_quiet(fs->queue_fd, qname);
    } else if (dir >= 0 && (dir != fs->free_fd || len > SPOOL_FREE_SIZE_MAX))
        spool_unlink_quiet(dir, name);
}

void spool_txn_discard(spool_fs *fs, struct spool_txn *t)
{
    /* .env before .msg, as in every removal; each while its descriptor
     * (and so our lock) is still held, so a recovery elsewhere never sees
     * them unlocked and a claimer never sees them at all. */
    drop(fs, t->env_dir, t->env_name, t->env_renamed, t->id, SPOOL_EXT_ENV, 0);
    if (t->env_fd >= 0)
        close(t->env_fd);
    if (t->msg_fd >= 0) {
        drop(fs, t->msg_dir, t->msg_name, t->msg_renamed, t->id, SPOOL_EXT_MSG, t->msg_len);
        close(t->msg_fd);
    }
    spool_free_release(fs, t->msg_ino);
    spool_free_release(fs, t->env_ino);
    t->msg_ino = t->env_ino = 0;
    t->env_fd = t->msg_fd = -1;
    t->env_dir = t->msg_dir = -1;
    t->env_renamed = t->msg_renamed = false;
}

void spool_txn_finish(struct spool_txn *t)
{
    if (t->env_fd >= 0) {
        close(t->env_fd);
        t->env_fd = -1;
    }
    if (t->msg_fd >= 0) {
        close(t->msg_fd); /* releases the lock: the message is committed */
        t->msg_fd = -1;
    }
}
