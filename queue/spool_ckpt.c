/*
 * spool_ckpt.c - the journal side of the group committer: the syncer's
 * journal write for a batch of small messages, and the checkpointer thread
 * that moves them into queue/ afterwards (docs/spool.md, "The journal").
 *
 *   syncer:        stage each message's record, one pwrite + fdatasync of
 *                  the journal, while the writer writes the same messages'
 *                  files; once it is done with them, status 0 (the loop
 *                  says 250) and the files, still locked (in free/ or
 *                  incoming/), go to the checkpointer's list, in the
 *                  order of their records (the mark relies on it).
 *   checkpointer:  every SPOOL_CKPT_DELAY_MS (or at CKPT_BATCH messages, or at
 *                  once when the syncer needs journal space or the spool
 *                  closes), for all that is listed: syncfs, rename each into
 *                  queue/, fsync(queue/), raise the journal's mark, close
 *                  (unlock). Only then is sluice-delivery told about them.
 *
 * Why the runner hears of a message only after the mark: recovery writes
 * back every record above the mark that is not in queue/. A message the
 * runner had delivered and removed before the mark covered it would come
 * back. (Its periodic scan leaves young messages to the announcement for
 * the same reason; dlv_scan.c.)
 *
 * After a failed journal write or checkpoint the spool is "broken": every
 * later commit fails (452) until sluice-smtpd restarts, when recovery
 * writes back what the journal holds. A failed sync is never retried.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"
#include "spool_recv.h"

#define CKPT_BATCH 256 /* a checkpoint starts at once when this many wait */
#define CKPT_MAX 512   /* messages per checkpoint */
/* The syncer waits past this many: each holds two descriptors (its files
 * stay open and locked until renamed), so with a batch in flight that is up
 * to 1,536; sluice-smtpd raises its open-file limit to the hard limit. */
#define CKPT_PENDING_MAX 512

int spool_sync_fs(spool *s)
{
    for (;;) {
        if (syncfs(s->fs->incoming_fd) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

void spool_fail_msg(spool *s, spool_msg *m, int rc, const char *step)
{
    log_err("%s: commit failed (%s): %s", m->txn.id, step, strerror(-rc));
    m->status = rc;
    spool_txn_discard(s->fs, &m->txn);
    free(m->ck);
    m->ck = NULL;
}

/* Under mu: the first failure makes the spool refuse mail until a restart. */
static void set_broken(spool *s, int rc, const char *what)
{
    if (s->broken)
        return;
    s->broken = rc;
    log_err("spool: %s failed: %s. No mail is accepted until sluice-smtpd restarts; at start it "
            "writes back what the journal holds",
            what, strerror(-rc));
    pthread_cond_broadcast(&s->cv_mark);
}

static void wait_monotonic_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
    pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- syncer ---- */

/* Waits until the writer is done with the files of b[0..k): only then may
 * the syncer hand them on, or discard them. The writer never waits for the
 * syncer, so this ends. */
static void wait_written(spool *s, spool_msg **b, size_t k)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < k; i++)
        while (!b[i]->written)
            pthread_cond_wait(&s->cv_written, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* b[0..k) are staged; rc is their flush's result. */
static void settle(spool *s, spool_msg **b, size_t k, int rc)
{
    if (k == 0)
        return;
    wait_written(s, b, k);
    if (rc != 0) {
        pthread_mutex_lock(&s->mu);
        set_broken(s, rc, "the journal write");
        pthread_mutex_unlock(&s->mu);
        /* Their records may be on disk and come back at the next start:
         * a duplicate of a message that got 452, never a loss. */
        for (size_t i = 0; i < k; i++)
            spool_fail_msg(s, b[i], rc, "journal");
        return;
    }
    /* A message whose files could not be written gets its 452 although its
     * record is durable. Its item still goes to the checkpointer, in order,
     * as a void one: the next checkpoint raises the mark past the record, so
     * a restart does not write back a message the client will send again.
     * A crash before that checkpoint does: a duplicate, never a loss (as
     * for a failed journal write above). */
    for (size_t i = 0; i < k; i++) {
        spool_msg *m = b[i];
        if (m->write_rc == 0)
            continue;
        spool_ckpt_item *it = m->ck;
        m->ck = NULL;
        spool_txn_init(&it->txn, m->txn.id);
        it->void_rec = true;
        spool_fail_msg(s, m, m->write_rc, "write");
        m->ck = it; /* settled below, as a void item */
    }
    uint64_t now = spool_mono_us();
    size_t journaled = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < k; i++) {
        spool_msg *m = b[i];
        spool_ckpt_item *it = m->ck;
        m->ck = NULL;
        if (!it->void_rec) {
            journaled++;
            it->txn = m->txn; /* the descriptors (and the lock) move to the item */
            spool_txn_init(&m->txn, it->txn.id);
            m->journaled = true;
            m->status = 0;
        }
        it->next = NULL;
        if (s->ck_tail)
            s->ck_tail->next = it;
        else {
            s->ck_head = it;
            s->ck_first_us = now;
        }
        s->ck_tail = it;
        s->ck_count++;
    }
    s->stats.journaled += journaled;
    pthread_cond_signal(&s->cv_ckpt);
    pthread_mutex_unlock(&s->mu);
}

/* Waits until the checkpointer has caught up with *up_to (or the spool
 * broke); returns 0 or the broken error. */
static int wait_mark(spool *s, uint64_t up_to, size_t max_pending)
{
    pthread_mutex_lock(&s->mu);
    while (!s->broken && (s->mark < up_to || s->ck_count > max_pending)) {
        s->ck_urgent = true;
        pthread_cond_signal(&s->cv_ckpt);
        pthread_cond_wait(&s->cv_mark, &s->mu);
    }
    s->ck_urgent = false;
    int rc = s->broken;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void spool_journal_batch(spool *s, spool_msg **b, size_t n)
{
    spool_journal *j = s->journal;
    size_t first = 0, i = 0; /* b[first..i) staged, not yet written */
    int rc = wait_mark(s, 0, CKPT_PENDING_MAX);

    for (; i < n && rc == 0; i++) {
        spool_msg *m = b[i];
        uint64_t seq = 0;
        /* Cannot be -E2BIG: the writer journals only records up to
         * JOURNAL_REC_MAX, well under the stage and the region. */
        rc = spool_journal_stage(j, m->txn.id, m->env.data, m->env.len, m->buf.data, m->buf.len,
                                 &seq);
        if (rc == -ENOBUFS || rc == -ENOSPC) {
            bool region_full = rc == -ENOSPC;
            rc = spool_journal_flush(j);
            settle(s, b + first, i - first, rc);
            first = i;
            if (rc == 0 && region_full) {
                rc = wait_mark(s, spool_journal_other_max(j), SIZE_MAX);
                if (rc == 0)
                    spool_journal_switch(j);
            }
            if (rc == 0)
                rc = spool_journal_stage(j, m->txn.id, m->env.data, m->env.len, m->buf.data,
                                         m->buf.len, &seq);
        }
        if (rc == 0)
            m->ck->seq = seq;
    }
    if (rc == 0) {
        settle(s, b + first, n - first, spool_journal_flush(j));
        return;
    }
    /* Nothing of b[first..n) was staged past a flush: they fail here. */
    wait_written(s, b + first, n - first);
    for (i = first; i < n; i++)
        spool_fail_msg(s, b[i], rc, "journal");
}

/* ---- checkpointer ---- */

/* Moves items[0..n) into queue/ for good; 0 or the failed step's error. */
static int checkpoint(spool *s, spool_ckpt_item **items, size_t n, const char **step)
{
    int rc;
    *step = "syncfs";
    if ((rc = spool_sync_fs(s)) != 0)
        return rc;
    *step = "rename into queue/";
    for (size_t i = 0; i < n; i++)
        if (!items[i]->void_rec && (rc = spool_txn_rename(s->fs, &items[i]->txn)) != 0)
            return rc;
    *step = "fsync queue/";
    if ((rc = spool_fsync(s->fs->queue_fd)) != 0)
        return rc;
    *step = "the journal mark";
    return spool_journal_write_mark(s->journal, items[n - 1]->seq);
}

void *spool_ckpt_main(void *arg)
{
    spool *s = arg;
    spool_ckpt_item *items[CKPT_MAX];

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->ck_head && !s->syncer_exited)
            pthread_cond_wait(&s->cv_ckpt, &s->mu);
        if (!s->ck_head)
            break;
        /* Let a few milliseconds' worth gather: one checkpoint costs
         * three flushes whatever it holds, and they compete with the
         * journal's own flush on the disk. */
        while (!s->ck_urgent && !s->syncer_exited && !s->broken && s->ck_count < CKPT_BATCH) {
            uint64_t due = s->ck_first_us + s->ckpt_delay_us;
            if (spool_mono_us() >= due)
                break;
            wait_monotonic_until(&s->cv_ckpt, &s->mu, due);
        }
        size_t n = 0;
        while (s->ck_head && n < CKPT_MAX) {
            items[n++] = s->ck_head;
            s->ck_head = s->ck_head->next;
        }
        if (!s->ck_head)
            s->ck_tail = NULL;
        s->ck_count -= n;
        s->ck_first_us = spool_mono_us();
        int rc = s->broken;
        pthread_mutex_unlock(&s->mu);

        const char *step = "checkpoint";
        uint64_t t0 = spool_mono_us();
        if (rc == 0)
            rc = checkpoint(s, items, n, &step);
        uint64_t t1 = spool_mono_us();
        /* Committed or not, the files are closed: on failure they stay
         * where they are and the journal, above its mark, still holds them. */
        for (size_t i = 0; i < n; i++)
            spool_txn_finish(&items[i]->txn);

        pthread_mutex_lock(&s->mu);
        if (rc == 0) {
            s->mark = items[n - 1]->seq;
            s->stats.checkpoints++;
            s->stats.ckpt_us += t1 - t0;
            for (size_t i = 0; i < n; i++) {
                if (items[i]->void_rec) {
                    free(items[i]); /* nothing to announce */
                    continue;
                }
                items[i]->next = NULL;
                if (s->ntf_tail)
                    s->ntf_tail->next = items[i];
                else
                    s->ntf_head = items[i];
                s->ntf_tail = items[i];
            }
        } else {
            set_broken(s, rc, step);
            for (size_t i = 0; i < n; i++)
                free(items[i]);
        }
        pthread_cond_broadcast(&s->cv_mark);
        pthread_mutex_unlock(&s->mu);
        if (rc == 0)
            spool_wake_loop(s);
        pthread_mutex_lock(&s->mu);
    }
    s->exited = true;
    pthread_mutex_unlock(&s->mu);
    /* The loop joins us only after it has seen exited, i.e. after this. */
    spool_wake_loop(s);
    return NULL;
}
