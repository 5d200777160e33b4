/*
 * spool_txn.c - the steps of moving one message from incoming/ into queue/
 * (see struct spool_txn in spool_int.h). The caller decides how the files
 * are made durable between write and rename, and syncs queue/ after the
 * rename; these functions do the rest and can always be undone.
 *
 * Rename order: .msg first, .env last. The .env's presence is what makes a
 * message committed, so at every instant queue/ holds either nothing of the
 * message, a .msg alone (never acknowledged; spool_fs_recover removes it),
 * or both.
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
    t->env_created = t->msg_renamed = t->env_renamed = t->msg_reused = false;
    t->msg_len = 0;
}

int spool_txn_write_msg(spool_fs *fs, struct spool_txn *t, const void *data, size_t len)
{
    char name[SPOOL_NAME_MAX];

    if (t->msg_fd < 0) {
        spool_name(name, t->id, SPOOL_EXT_MSG);
        int rc = spool_free_take(fs, fs->incoming_fd, name, true, &t->msg_fd);
        t->msg_reused = rc == 0;
        if (rc == -ENOENT)
            rc = spool_create_locked(fs->incoming_fd, name, &t->msg_fd);
        if (rc)
            return rc;
    }
    int rc = len ? spool_write_all(t->msg_fd, data, len) : 0;
    if (rc == 0)
        t->msg_len += len;
    return rc;
}

int spool_txn_write_env(spool_fs *fs, struct spool_txn *t, const void *text, size_t len,
                        bool keep_open)
{
    char name[SPOOL_NAME_MAX];
    int fd, rc;

    /* The message is complete now: a reused file loses its old tail. */
    if (t->msg_reused && ftruncate(t->msg_fd, (off_t)t->msg_len) != 0)
        return -errno;
    spool_name(name, t->id, SPOOL_EXT_ENV);
    rc = spool_free_take(fs, fs->incoming_fd, name, false, &fd);
    bool reused = rc == 0;
    if (rc == -ENOENT) {
        do
            fd = openat(fs->incoming_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                        0600);
        while (fd < 0 && errno == EINTR);
        rc = fd < 0 ? -errno : 0;
    }
    if (rc)
        return rc;
    t->env_created = true;
    rc = spool_write_all(fd, text, len);
    if (rc == 0 && reused && ftruncate(fd, (off_t)len) != 0)
        rc = -errno;
    if (rc == 0 && keep_open) {
        t->env_fd = fd;
        return 0;
    }
    int crc = spool_close_written(fd);
    return rc ? rc : crc;
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
    if ((rc = spool_rename_noreplace(fs->incoming_fd, name, fs->queue_fd, name)) != 0)
        return rc;
    t->msg_renamed = true;
    spool_name(name, t->id, SPOOL_EXT_ENV);
    if ((rc = spool_rename_noreplace(fs->incoming_fd, name, fs->queue_fd, name)) != 0)
        return rc;
    t->env_renamed = true;
    return 0;
}

void spool_txn_discard(spool_fs *fs, struct spool_txn *t)
{
    char name[SPOOL_NAME_MAX];

    /* Only names this transaction created (O_EXCL), so never another
     * process's files; .env before .msg, as in every removal. */
    if (t->env_fd >= 0) {
        close(t->env_fd);
        t->env_fd = -1;
    }
    if (t->env_created) {
        spool_name(name, t->id, SPOOL_EXT_ENV);
        spool_unlink_quiet(t->env_renamed ? fs->queue_fd : fs->incoming_fd, name);
        t->env_created = t->env_renamed = false;
    }
    if (t->msg_fd >= 0) {
        /* Unlinked while still locked: a recovery elsewhere never sees it
         * unlocked. */
        spool_name(name, t->id, SPOOL_EXT_MSG);
        spool_unlink_quiet(t->msg_renamed ? fs->queue_fd : fs->incoming_fd, name);
        close(t->msg_fd);
        t->msg_fd = -1;
        t->msg_renamed = false;
    }
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
