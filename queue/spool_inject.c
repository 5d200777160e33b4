/*
 * spool_inject.c - spool_fs_inject: a complete, synchronous commit of one
 * message (DSNs from sluice-delivery, tools). Same files, same order and
 * same syncs as the group committer (spool_commit.c), for one message:
 *
 *   incoming/ID.msg  create O_EXCL + lock, write, fdatasync
 *   incoming/ID.env  create O_EXCL, write, fdatasync
 *   rename .msg, then .env, into queue/ (never replacing)
 *   fsync queue/     the renames are durable: the message is committed
 *   close            releases the lock
 *
 * Per-file fdatasync rather than syncfs: one message gains nothing from a
 * filesystem-wide flush and should not pay for other writers' dirty data.
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>

#include "sluice/log.h"
#include "spool_int.h"

int spool_fs_inject(spool_fs *fs, envelope *e, const char *data, size_t len)
{
    struct spool_txn t;
    sbuf text;
    int rc;

    if (!queue_id_valid(e->id, strnlen(e->id, sizeof(e->id))) || (!data && len))
        return -EINVAL;
    e->size = len;
    e->crc32 = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), (const Bytef *)(data ? data : ""), len);
    if (e->arrival_us == 0)
        e->arrival_us = queue_id_time(e->id);
    sbuf_init(&text, ENVELOPE_MAX_SIZE + 64);
    if ((rc = envelope_serialize(e, &text)) != 0) {
        sbuf_free(&text);
        return rc;
    }

    spool_txn_init(&t, e->id);
    rc = spool_txn_write_msg(fs, &t, data, len);
    if (rc == 0)
        rc = spool_txn_write_env(fs, &t, text.data, text.len);
    sbuf_free(&text);
    if (rc == 0)
        rc = spool_txn_datasync(&t);
    if (rc == 0)
        rc = spool_txn_rename(fs, &t);
    if (rc == 0)
        rc = spool_fsync(fs->queue_fd);
    if (rc != 0) {
        log_err("%s: inject failed: %s", e->id, strerror(-rc));
        spool_txn_discard(fs, &t);
        return rc;
    }
    spool_txn_finish(&t);
    return 0;
}
