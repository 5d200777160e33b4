/*
 * dlv_syncfs.h - one syncfs() makes many staged Maildir files durable.
 *
 * A Maildir file synced on its own costs a flush of the disk's write cache
 * (fdatasync); on this machine that was most of the runner's system time
 * per message. Staged files (maildir.h) are written unsynced; the confirm
 * job (dlv_confirm.c) then syncs each filesystem they are on once per
 * batch, and only after that moves them into new/.
 *
 * syncfs() reports a failure to write data back only to a descriptor that
 * was open when the failure happened, and only once per descriptor. So each
 * filesystem gets one descriptor, opened before the first file staged on it
 * is written and kept for the life of the runner, and a failed sync counts
 * against every file staged on that filesystem before it returned, not only
 * the batch's: one of those files may be the one whose write failed, and
 * its own batch's sync would then report nothing.
 */
#ifndef SLUICE_DLV_SYNCFS_H
#define SLUICE_DLV_SYNCFS_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* More filesystems than this and a file is synced on its own. */
#define DLV_SYNCFS_MAX 64

typedef struct dlv_syncfs_fs {
    dev_t dev;
    int fd;         /* a folder on it, open for the life of the runner */
    unsigned fails; /* syncs that failed; a file staged before one does not count */
    uint64_t batch; /* the last batch that synced it */
    int rc;         /* and how that went */
} dlv_syncfs_fs;

typedef struct dlv_syncfs {
    uv_mutex_t mu;
    dlv_syncfs_fs fs[DLV_SYNCFS_MAX];
    size_t n;
    uint64_t batch;
} dlv_syncfs;

int dlv_syncfs_init(dlv_syncfs *s);
void dlv_syncfs_free(dlv_syncfs *s);

/*
 * Any pool thread, before a staged file on dev (in Maildir dir) gets a
 * byte: registers it. 0 with *ticket set, or a negative errno: then sync
 * that file on its own.
 */
int dlv_syncfs_enter(dlv_syncfs *s, dev_t dev, const char *dir, unsigned *ticket);

/* The confirm job (one at a time): a new batch; each filesystem is synced
 * at most once in it. */
void dlv_syncfs_batch(dlv_syncfs *s);

/*
 * The confirm job: 0 when a file entered with (dev, ticket) before this
 * batch began is on stable storage, syncing dev's filesystem if this batch
 * has not yet; else a negative errno, and the file must not be published.
 */
int dlv_syncfs_covered(dlv_syncfs *s, dev_t dev, unsigned ticket);

#endif
