/*
 * spool_msg.c - receiving one message (loop side of include/sluice/spool.h):
 * begin, write to memory, flush to the message file in the libuv pool,
 * commit (handed to the group committer, spool_commit.c), abort.
 *
 * Double buffering: spool_msg_flush moves the bytes written so far to the
 * flush buffer and writes that one in a worker; spool_msg_write keeps
 * appending to the other, so the session need not stop reading the moment
 * it asks for a flush. The CRC-32 is computed here as the bytes arrive, on
 * the loop, so the commit never has to read the file back.
 *
 * Removal of files (abort, a commit that failed after a flush) is blocking
 * I/O, so it runs in the pool too ("discard" work); the message is freed
 * when that is done.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sluice/log.h"
#include "spool_recv.h"

int spool_msg_begin(spool *s, spool_msg **out, char id_out[QUEUE_ID_LEN + 1])
{
    *out = NULL;
    if (s->closing)
        return -ECANCELED;
    spool_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    char id[QUEUE_ID_LEN + 1];
    queue_id_new(QUEUE_ID_SMTPD, id);
    m->s = s;
    spool_txn_init(&m->txn, id);
    sbuf_init(&m->buf, SPOOL_MSG_MEM_MAX);
    sbuf_init(&m->fbuf, SPOOL_MSG_MEM_MAX);
    sbuf_init(&m->env, ENVELOPE_MAX_SIZE + 64);
    m->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    s->live++;
    if (id_out)
        memcpy(id_out, id, QUEUE_ID_LEN + 1);
    *out = m;
    return 0;
}

int spool_msg_write(spool_msg *m, const void *data, size_t len)
{
    if (m->commit_wanted || m->aborted)
        return -EINVAL;
    if (m->error)
        return m->error;
    if (len == 0)
        return 0;
    if (len > SPOOL_MSG_MEM_MAX || m->buf.len + m->fbuf.len > SPOOL_MSG_MEM_MAX - len)
        return -ENOBUFS;
    int rc = sbuf_append(&m->buf, data, len);
    if (rc)
        return rc;
    m->crc = (uint32_t)crc32_z(m->crc, data, len);
    m->size += len;
    return 0;
}

size_t spool_msg_pending(const spool_msg *m)
{
    /* Bytes the next flush would write: not those of a flush in flight.
     * So a session may keep reading while one flush runs and pause only
     * when the next buffer is full too; memory stays under about
     * 2 * SPOOL_MSG_FLUSH_AT (docs/spool.md, "Receiving"). */
    return m->buf.len;
}

uint64_t spool_msg_size(const spool_msg *m)
{
    return m->size;
}

/* ---- discard: remove the files, then free (after a commit cb, if any) ---- */

static void discard_work(uv_work_t *w)
{
    spool_msg *m = w->data;
    spool_txn_discard(m->s->fs, &m->txn);
}

static void discard_after(uv_work_t *w, int status)
{
    spool_msg *m = w->data;
    (void)status; /* the work is never cancelled */
    if (m->commit_wanted && m->commit_cb)
        m->commit_cb(m->commit_arg, m->error);
    spool_msg_free(m);
}

static void discard(spool_msg *m)
{
    if (m->txn.msg_fd < 0 && m->txn.env_dir < 0) {
        /* Nothing on disk: no need to leave the loop. */
        if (m->commit_wanted && m->commit_cb)
            m->commit_cb(m->commit_arg, m->error);
        spool_msg_free(m);
        return;
    }
    m->work.data = m;
    uv_queue_work(m->s->loop, &m->work, discard_work, discard_after);
}

/* ---- flush ---- */

static void flush_work(uv_work_t *w)
{
    spool_msg *m = w->data;
    m->work_status = spool_txn_write_msg(m->s->fs, &m->txn, m->fbuf.data, m->fbuf.len);
}

static void flush_after(uv_work_t *w, int status)
{
    spool_msg *m = w->data;
    spool *s = m->s;

    (void)status; /* never cancelled */
    m->flushing = false;
    sbuf_reset(&m->fbuf);
    if (m->work_status < 0 && !m->error) {
        m->error = m->work_status;
        log_warn("%s: writing the message file: %s", m->txn.id, strerror(-m->work_status));
    }
    if (m->aborted) {
        discard(m); /* no callbacks after an abort */
        return;
    }
    bool commit_now = m->commit_wanted;
    spool_done_cb cb = m->flush_cb;
    m->flush_cb = NULL;
    /* The callback may abort (then m is gone), or flush or commit again;
     * unless a commit was already waiting, m must not be touched after. */
    if (cb)
        cb(m->flush_arg, m->error);
    if (!commit_now)
        return;
    if (m->error) {
        spool_undefer(s);
        discard(m); /* commit_cb gets the error, then m is freed */
    } else {
        spool_submit(s, m, true);
    }
}

int spool_msg_flush(spool_msg *m, spool_done_cb cb, void *arg)
{
    if (m->commit_wanted || m->aborted)
        return -EINVAL;
    if (m->error)
        return m->error;
    if (m->flushing)
        return -EBUSY;
    /* Swap: the flush buffer is empty (reset after every flush), so the
     * writer continues into its memory while the worker writes ours. */
    sbuf t = m->fbuf;
    m->fbuf = m->buf;
    m->buf = t;
    m->flushing = true;
    m->flush_cb = cb;
    m->flush_arg = arg;
    m->work.data = m;
    int rc = uv_queue_work(m->s->loop, &m->work, flush_work, flush_after);
    if (rc) {
        /* Undo: the bytes go back in front of anything written since. */
        t = m->buf;
        m->buf = m->fbuf;
        m->fbuf = t;
        m->flushing = false;
        return rc;
    }
    return 0;
}

/* ---- commit and abort ---- */

int spool_msg_commit(spool_msg *m, const envelope *env, spool_done_cb cb, void *arg)
{
    spool *s = m->s;

    if (!env || m->commit_wanted || m->aborted)
        return -EINVAL;
    if (m->error)
        return m->error;
    if (s->closing)
        return -ECANCELED;

    /* Serialised now, so the caller may free env when we return. The
     * spool fills in what only it knows. */
    envelope e = *env;
    memcpy(e.id, m->txn.id, sizeof(e.id));
    e.size = m->size;
    e.crc32 = m->crc;
    if (e.arrival_us == 0)
        e.arrival_us = queue_id_time(m->txn.id);
    sbuf_reset(&m->env);
    int rc = envelope_serialize(&e, &m->env);
    if (rc)
        return rc;

    m->commit_wanted = true;
    m->commit_cb = cb;
    m->commit_arg = arg;
    if (m->flushing) {
        /* flush_after submits it: the committer must not write the file
         * while the worker still does. */
        pthread_mutex_lock(&s->mu);
        s->deferred++;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    spool_submit(s, m, false);
    return 0;
}

void spool_msg_abort(spool_msg *m)
{
    if (!m)
        return;
    if (m->commit_wanted || m->aborted) {
        /* The spool owns it now (or it is already going): a caller bug,
         * but not one worth a crash of the whole server. */
        log_err("%s: spool_msg_abort after commit or abort ignored", m->txn.id);
        return;
    }
    m->aborted = true;
    if (m->flushing)
        return; /* flush_after discards it */
    discard(m);
}
