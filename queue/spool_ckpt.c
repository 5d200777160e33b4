/*
 * spool_ckpt.c - the journal side of the group committer: the syncer's
 * journal write for a batch of small messages and its hand-off to
 * sluice-delivery, and the checkpointer thread that writes into queue/
 * whatever the runner did not deliver (docs/spool.md, "The journal").
 *
 *   syncer:        stage each message's record, one durable write of the
 *                  journal: status 0 (the loop says 250). The items (the
 *                  records' payloads) join the checkpointer's ring, in
 *                  seq order, and the records go to the runner in one
 *                  datagram or a few ("jnl", handoff_format.h).
 *   runner:        delivers a handed message from its record, and answers
 *                  "done SEQ:ID" once its copies are synced, or "keep"
 *                  when it cannot finish it that way (remote recipients,
 *                  aliases, a failure).
 *   checkpointer:  every SPOOL_CKPT_DELAY_MS, writes into queue/ each item
 *                  that is due and not done (handed ones after
 *                  SPOOL_HANDOFF_MS or a "keep", others at once): files,
 *                  syncfs, renames, fsync(queue/). Then it raises the
 *                  journal's mark past the items at the front of the ring
 *                  that are done or in queue/, and announces those it
 *                  wrote: "new ID" when the runner never had them, "late
 *                  ID" when it did (it may have delivered them, so it looks
 *                  for their delivery keys first).
 *
 * Why the mark waits for "done" or queue/: recovery writes back every
 * record above the mark that is not in queue/. So a restart can only ever
 * bring back a message the runner delivered (announced "late", found by
 * its keys), never lose one.
 *
 * After a failed journal write or checkpoint the spool is "broken": every
 * later commit fails (452) until sluice-smtpd restarts, when recovery
 * writes back what the journal holds. A failed sync is never retried.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sluice/handoff_format.h"
#include "sluice/journal_format.h"
#include "sluice/log.h"
#include "spool_recv.h"

#define CKPT_MAX 512 /* messages written into queue/ per checkpoint */
/* How long the mark may lag behind messages reported done (see the round). */
#define SPOOL_MARK_LAZY_US (200 * 1000)

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

/* ---- the ring of items (under mu) ---- */

static spool_ckpt_item *ck_at(const spool *s, size_t i)
{
    return s->ck[(s->ck_head + i) % s->ck_cap];
}

/* The item of seq, or NULL (already resolved and gone, or never ours). */
static spool_ckpt_item *ck_find(const spool *s, uint64_t seq)
{
    size_t lo = 0, hi = s->ck_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        spool_ckpt_item *it = ck_at(s, mid);
        if (it->seq == seq)
            return it;
        if (it->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void item_free(spool_ckpt_item *it)
{
    sbuf_free(&it->env);
    sbuf_free(&it->msg);
    free(it);
}

/* Takes the item at the front off the ring. */
static spool_ckpt_item *ck_pop(spool *s)
{
    spool_ckpt_item *it = ck_at(s, 0);
    s->ck_head = (s->ck_head + 1) % s->ck_cap;
    s->ck_count--;
    return it;
}

/* Frees every item: the journal, above the mark, keeps them for the next
 * start's recovery. */
static void ck_clear(spool *s)
{
    while (s->ck_count > 0)
        item_free(ck_pop(s));
}

void spool_ckpt_ack(spool *s, bool keep, uint64_t seq, const char *id)
{
    pthread_mutex_lock(&s->mu);
    spool_ckpt_item *it = ck_find(s, seq);
    /* Only an item we handed out and still hold: a late answer about one
     * the checkpointer took meanwhile changes nothing (it is announced
     * "late", and the runner finds its copies by their keys). */
    if (it && it->handed && it->state == CK_PENDING && strcmp(it->txn.id, id) == 0) {
        if (keep) {
            it->due_us = 0;
            pthread_cond_signal(&s->cv_ckpt);
        } else {
            it->state = CK_DONE;
            s->stats.handed_done++;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- syncer ---- */

/* A run of records for one hand-off datagram: b[from..to) */
typedef struct handoff_run {
    size_t from, to, off, len;
} handoff_run;

/* Sends b[0..k)'s records (at offs[i], lens[i] bytes, in the journal's
 * stage, just written) to the runner; the items were queued as handed, and
 * those whose datagram could not go (no runner, its socket full) are not. */
static void hand_off(spool *s, spool_msg **b, const size_t *offs, const size_t *lens, size_t k)
{
    const uint8_t *stage = spool_journal_stage_buf(s->journal);
    uint8_t hdr[HANDOFF_HDR_LEN];
    handoff_header(hdr, spool_journal_gen(s->journal));
    size_t i = 0;
    while (i < k) {
        handoff_run run = {i, i, offs[i], 0};
        while (run.to < k && run.len + lens[run.to] <= HANDOFF_DGRAM_MAX - HANDOFF_HDR_LEN)
            run.len += lens[run.to++];
        if (run.to == run.from) {
            i++; /* one too big for a datagram: settle did not hand it */
            continue;
        }
        struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)(stage + run.off), run.len}};
        struct msghdr mh = {.msg_name = &s->runner_sa,
                            .msg_namelen = sizeof(s->runner_sa),
                            .msg_iov = iov,
                            .msg_iovlen = 2};
        ssize_t n;
        do
            n = sendmsg(s->handoff_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)(sizeof(hdr) + run.len)) {
            /* Nobody will answer for these: the checkpointer writes them
             * into queue/ after its usual delay and announces them "new". */
            uint64_t now = spool_mono_us();
            pthread_mutex_lock(&s->mu);
            for (size_t x = run.from; x < run.to; x++) {
                spool_ckpt_item *it = ck_find(s, b[x]->ck_seq);
                if (it && it->state == CK_PENDING && it->handed) {
                    it->handed = false;
                    it->due_us = now + s->ckpt_delay_us;
                }
            }
            s->stats.handoff_failed += run.to - run.from;
            pthread_mutex_unlock(&s->mu);
        }
        i = run.to;
    }
}

/* b[0..k) are staged (their records at offs, lens bytes each); rc is
 * their flush's result. */
static void settle(spool *s, spool_msg **b, const size_t *offs, const size_t *lens, size_t k,
                   int rc)
{
    if (k == 0)
        return;
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
    uint64_t now = spool_mono_us();
    bool any_handed = false;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < k; i++) {
        spool_msg *m = b[i];
        spool_ckpt_item *it = m->ck;
        m->ck = NULL;
        spool_txn_init(&it->txn, m->txn.id);
        it->env = m->env; /* the payloads move to the item */
        it->msg = m->buf;
        sbuf_init(&m->env, 0);
        sbuf_init(&m->buf, 0);
        it->state = CK_PENDING;
        it->handed = s->handoff_fd >= 0 && lens[i] <= HANDOFF_DGRAM_MAX - HANDOFF_HDR_LEN;
        it->due_us = now + (it->handed ? s->handoff_us : s->ckpt_delay_us);
        any_handed |= it->handed;
        m->ck_seq = it->seq;
        m->journaled = true;
        m->status = 0;
        s->ck[(s->ck_head + s->ck_count) % s->ck_cap] = it;
        s->ck_count++;
    }
    s->stats.journaled += k;
    pthread_cond_signal(&s->cv_ckpt);
    pthread_mutex_unlock(&s->mu);
    if (any_handed)
        hand_off(s, b, offs, lens, k);
}

/*
 * Waits until the mark has reached up_to and at most max_pending items
 * wait; returns 0, the broken error, or the error that keeps the
 * checkpointer from writing items into queue/ (a full disk: the journal
 * has no room left either, so this batch gets its 452 rather than a wait
 * without end).
 */
static int wait_mark(spool *s, uint64_t up_to, size_t max_pending)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (!s->broken && (s->mark < up_to || s->ck_count > max_pending)) {
        if (s->ck_write_err && s->ck_urgent_seen) {
            rc = s->ck_write_err;
            break;
        }
        s->ck_urgent = true;
        pthread_cond_signal(&s->cv_ckpt);
        pthread_cond_wait(&s->cv_mark, &s->mu);
    }
    s->ck_urgent = false;
    s->ck_urgent_seen = false;
    if (rc == 0)
        rc = s->broken;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void spool_journal_batch(spool *s, spool_msg **b, size_t n)
{
    spool_journal *j = s->journal;
    size_t first = 0, i = 0;                             /* b[first..i) staged, not yet written */
    size_t offs[SPOOL_BATCH_MAX], lens[SPOOL_BATCH_MAX]; /* each record in the stage */
    int rc = wait_mark(s, 0, SPOOL_CK_PENDING_MAX);

    for (; i < n && rc == 0; i++) {
        spool_msg *m = b[i];
        uint64_t seq = 0;
        /* Cannot be -E2BIG: only records up to JOURNAL_REC_MAX come here,
         * well under the stage and the region. */
        rc = spool_journal_stage(j, m->txn.id, m->env.data, m->env.len, m->buf.data, m->buf.len,
                                 &seq, &offs[i]);
        if (rc == -ENOBUFS || rc == -ENOSPC) {
            bool region_full = rc == -ENOSPC;
            rc = spool_journal_flush(j);
            settle(s, b + first, offs + first, lens + first, i - first, rc);
            first = i;
            if (rc == 0 && region_full) {
                rc = wait_mark(s, spool_journal_other_max(j), SIZE_MAX);
                if (rc == 0)
                    spool_journal_switch(j);
            }
            if (rc == 0)
                rc = spool_journal_stage(j, m->txn.id, m->env.data, m->env.len, m->buf.data,
                                         m->buf.len, &seq, &offs[i]);
        }
        if (rc == 0) {
            m->ck->seq = seq;
            lens[i] = journal_rec_size(m->env.len, m->buf.len);
        }
    }
    if (rc == 0) {
        settle(s, b + first, offs + first, lens + first, n - first, spool_journal_flush(j));
        return;
    }
    /* Nothing of b[first..n) was staged past a flush: they fail here. */
    for (i = first; i < n; i++)
        spool_fail_msg(s, b[i], rc, "journal");
}

/* ---- checkpointer ---- */

/* How long an item whose files could not be written waits before the
 * next try (the journal holds it meanwhile). */
#define CKPT_RETRY_US (1000 * 1000)

/*
 * Writes items[0..n) into queue/ for good; 0 or the failed step's error.
 * An item whose files cannot be written (EMFILE, ENOSPC, EIO before any
 * sync) is left out and flagged in retry[] for a later round: nothing of
 * it was synced, and the journal holds it until then. A failed sync or
 * rename fails the whole checkpoint (never retried).
 */
static int checkpoint(spool *s, spool_ckpt_item **items, size_t n, bool *retry, int *write_err,
                      const char **step)
{
    int rc;
    *write_err = 0;
    size_t written = 0;
    for (size_t i = 0; i < n; i++) {
        spool_ckpt_item *it = items[i];
        retry[i] = false;
        if ((rc = spool_txn_write_msg(s->fs, &it->txn, it->msg.data, it->msg.len)) != 0 ||
            (rc = spool_txn_write_env(s->fs, &it->txn, it->env.data, it->env.len)) != 0) {
            log_warn("%s: cannot write into queue/ yet (%s); the journal holds it, trying again "
                     "in a second",
                     it->txn.id, strerror(-rc));
            char id[QUEUE_ID_LEN + 1];
            memcpy(id, it->txn.id, sizeof(id));
            spool_txn_discard(s->fs, &it->txn);
            spool_txn_init(&it->txn, id);
            retry[i] = true;
            *write_err = rc;
            continue;
        }
        written++;
    }
    if (written == 0)
        return 0;
    *step = "syncfs";
    if ((rc = spool_sync_fs(s)) != 0)
        return rc;
    *step = "rename into queue/";
    for (size_t i = 0; i < n; i++)
        if (!retry[i] && (rc = spool_txn_rename(s->fs, &items[i]->txn)) != 0)
            return rc;
    *step = "fsync queue/";
    return spool_fsync(s->fs->queue_fd);
}

/*
 * Under mu: the items due for queue/ now (not done, and due, or all when
 * urgent or closing), marked CK_WRITING. Only from the front of the ring up
 * to the first one still waiting: a message may reach queue/ only when the
 * mark can pass its record in the same round. The runner's scan at its
 * start takes whatever is in queue/; a message it delivered and removed
 * while its record was still above the mark would be written back by a
 * restart of sluice-smtpd, and a remote one sent twice.
 */
static size_t take_due(spool *s, spool_ckpt_item **items, bool all)
{
    uint64_t now = spool_mono_us();
    size_t n = 0;
    for (size_t i = 0; i < s->ck_count && n < CKPT_MAX; i++) {
        spool_ckpt_item *it = ck_at(s, i);
        if (it->state != CK_PENDING)
            continue;
        if (!all && it->due_us > now)
            break;
        it->state = CK_WRITING;
        items[n++] = it;
    }
    return n;
}

/* Under mu: drops the done or written items at the front of the ring;
 * returns the highest seq dropped (0: none). Written ones go to the
 * announce list. */
static uint64_t pop_resolved(spool *s)
{
    uint64_t top = 0;
    while (s->ck_count > 0) {
        spool_ckpt_item *it = ck_at(s, 0);
        if (it->state != CK_DONE && it->state != CK_WRITTEN)
            break;
        top = ck_pop(s)->seq;
        if (it->state == CK_DONE) {
            item_free(it);
            continue;
        }
        sbuf_free(&it->env);
        sbuf_free(&it->msg);
        it->next = NULL;
        if (s->ntf_tail)
            s->ntf_tail->next = it;
        else
            s->ntf_head = it;
        s->ntf_tail = it;
    }
    return top;
}

void *spool_ckpt_main(void *arg)
{
    spool *s = arg;
    spool_ckpt_item *items[CKPT_MAX];
    bool retry[CKPT_MAX];
    uint64_t last_round = 0;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->ck_count == 0 && !s->syncer_exited) {
            if (s->mark_todo <= s->mark) {
                pthread_cond_wait(&s->cv_ckpt, &s->mu);
                continue;
            }
            uint64_t due = s->mark_us + SPOOL_MARK_LAZY_US; /* a mark to write, later */
            if (spool_mono_us() >= due)
                break;
            wait_monotonic_until(&s->cv_ckpt, &s->mu, due);
        }
        if (s->ck_count == 0 && s->mark_todo <= s->mark)
            break; /* the syncer is gone and everything is settled */
        if (s->broken) {
            s->mark_todo = s->mark; /* nothing more goes into queue/ or the mark */
            ck_clear(s);
            pthread_cond_broadcast(&s->cv_mark);
            continue;
        }
        /* One round per delay at most: a round may cost a checkpoint's
         * three flushes and the mark's one, and they compete with the
         * journal's own flush on the disk. */
        while (!s->ck_urgent && !s->syncer_exited && !s->broken) {
            uint64_t due = last_round + s->ckpt_delay_us;
            if (spool_mono_us() >= due)
                break;
            wait_monotonic_until(&s->cv_ckpt, &s->mu, due);
        }
        last_round = spool_mono_us();
        bool all = s->ck_urgent || s->syncer_exited;
        bool urgent = s->ck_urgent;
        size_t n = take_due(s, items, all);
        pthread_mutex_unlock(&s->mu);

        const char *step = "checkpoint";
        uint64_t t0 = spool_mono_us();
        int write_err = 0;
        int rc = n ? checkpoint(s, items, n, retry, &write_err, &step) : 0;
        uint64_t t1 = spool_mono_us();
        /* Committed or not, the files are closed: on failure they stay
         * where they are and the journal, above its mark, still holds them. */
        for (size_t i = 0; i < n; i++)
            spool_txn_finish(&items[i]->txn);

        pthread_mutex_lock(&s->mu);
        if (rc != 0) {
            set_broken(s, rc, step);
            continue;
        }
        uint64_t now = spool_mono_us();
        for (size_t i = 0; i < n; i++) {
            items[i]->state = retry[i] ? CK_PENDING : CK_WRITTEN;
            if (retry[i])
                items[i]->due_us = now + CKPT_RETRY_US;
        }
        if (n)
            s->ck_write_err = write_err; /* 0 when every item was written */
        if (urgent)
            s->ck_urgent_seen = true; /* the syncer may now take ck_write_err as the answer */
        if (n) {
            s->stats.checkpoints++;
            s->stats.ckpt_us += t1 - t0;
        }
        uint64_t top = pop_resolved(s);
        if (top > s->mark_todo)
            s->mark_todo = top;
        bool announce = s->ntf_head != NULL;
        /*
         * The mark is written at once when messages wait for it (announced
         * only after it: they are in queue/), when the syncer waits for
         * journal space, and at close. For messages the runner reported
         * done it may wait SPOOL_MARK_LAZY_US: until it is written, a
         * restart would only bring them back to be found by their delivery
         * keys, and each write is a flush the next journal write would wait
         * behind.
         */
        bool write = s->mark_todo > s->mark && (announce || urgent || s->syncer_exited ||
                                                last_round >= s->mark_us + SPOOL_MARK_LAZY_US);
        if (write) {
            uint64_t mark = s->mark_todo;
            pthread_mutex_unlock(&s->mu);
            rc = spool_journal_write_mark(s->journal, mark);
            pthread_mutex_lock(&s->mu);
            if (rc != 0) {
                set_broken(s, rc, "the journal mark");
            } else {
                s->mark = mark;
                s->mark_us = spool_mono_us();
            }
        }
        if (s->syncer_exited && s->ck_write_err) {
            /* Closing, and some cannot be written: the journal keeps them
             * (above the mark) and the next start writes them back. */
            log_warn("spool: %zu message%s left in the journal for the next start (%s)",
                     s->ck_count, s->ck_count == 1 ? "" : "s", strerror(-s->ck_write_err));
            ck_clear(s);
        }
        pthread_cond_broadcast(&s->cv_mark);
        if (announce) {
            pthread_mutex_unlock(&s->mu);
            spool_wake_loop(s);
            pthread_mutex_lock(&s->mu);
        }
    }
    s->exited = true;
    pthread_mutex_unlock(&s->mu);
    /* The loop joins us only after it has seen exited, i.e. after this. */
    spool_wake_loop(s);
    return NULL;
}
