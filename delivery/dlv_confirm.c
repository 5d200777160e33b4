/*
 * dlv_confirm.c - the group commit of Maildir deliveries.
 *
 * A Maildir write is durable once its data and then its name in new/ are
 * on stable storage, and the message may leave the spool only after that.
 * Syncing in each delivery cost a flush of the disk's cache per file and
 * made every delivery wait for a directory flush; the threads that shared
 * one woke together and fought over the thread pool's lock.
 *
 * So the deliveries stage their files in tmp/, unsynced (maildir.h). A
 * message whose deliveries have ended queues here (on the loop); one pool
 * job at a time takes the whole queue and:
 *   1. syncs the filesystem of the batch's staged files, once each
 *      (dlv_syncfs.c), then moves each file into new/;
 *   2. fsyncs the new/ of each Maildir the batch wrote to, once;
 *   3. runs finish (dlv_record.c: outcomes, DSNs, removal) for the
 *      messages whose finish is a plain removal; the others get a finish
 *      job each.
 * Messages that end while a batch runs form the next batch, so the batch
 * grows with the load, as a group commit should. When the load is light,
 * batches start at most every CONFIRM_GAP_MS: each costs two flushes of
 * the disk, and messages handed over from sluice-smtpd's journal arrive
 * one by one, each journal write itself a flush the client waits for. One
 * batch per message made every 250 wait behind our flushes
 * (docs/performance.md, "Delivery from the journal"). The order promised by
 * DESIGN.md holds: data before name, name before the spool removal. A
 * failed filesystem sync removes the staged files it should have covered
 * and makes their deliveries temporary failures; a failed sync of new/
 * does the same to the deliveries it covered, whose files stay in new/,
 * where the retry finds them by their delivery keys (maildir_find_delivered).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/dlv_core.h"
#include "sluice/log.h"
#include "sluice/maildir.h"

#define CONFIRM_GAP_MS 50

bool dlv_confirm_needed(const dlv_msg *m)
{
    for (size_t i = 0; i < m->ntasks; i++)
        if (m->tasks[i].wrote || m->tasks[i].staged)
            return true;
    return false;
}

/* A Maildir the batch touches: opened once for its moves and its sync. */
struct folder {
    const char *dir;
    int dfd; /* or -errno */
    bool synced;
    int rc; /* of the sync */
};

struct folders {
    struct folder *v;
    size_t n, cap;
};

/* dir's entry, opening it on first use; NULL without memory (the caller
 * then works by path). */
static struct folder *folder_of(struct folders *fs, const char *dir)
{
    for (size_t i = 0; i < fs->n; i++)
        if (strcmp(fs->v[i].dir, dir) == 0)
            return &fs->v[i];
    if (fs->n == fs->cap) {
        size_t ncap = fs->cap ? fs->cap * 2 : 8;
        struct folder *v = realloc(fs->v, ncap * sizeof(*v));
        if (!v)
            return NULL;
        fs->v = v;
        fs->cap = ncap;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    fs->v[fs->n] = (struct folder){.dir = dir, .dfd = dfd < 0 ? -errno : dfd};
    return &fs->v[fs->n++];
}

static void folders_close(struct folders *fs)
{
    for (size_t i = 0; i < fs->n; i++)
        if (fs->v[i].dfd >= 0)
            close(fs->v[i].dfd);
    free(fs->v);
}

/* A staged file: once its filesystem's sync covers it, into new/. */
static void publish_staged(dlv_runner *r, struct folders *fs, dlv_msg *m, dlv_task *t)
{
    int rc = dlv_syncfs_covered(&r->syncfs, t->dev, t->ticket);
    struct folder *f = rc == 0 ? folder_of(fs, t->maildir) : NULL;
    if (rc == 0 && f == NULL)
        rc = maildir_publish(t->maildir, t->key, r->cfg->hostname, t->name, sizeof(t->name));
    else if (rc == 0 && (rc = f->dfd) >= 0)
        rc = maildir_publish_at(f->dfd, t->key, r->cfg->hostname, t->name, sizeof(t->name));
    else /* not covered, or the Maildir would not open: the move was not tried */
        (void)maildir_discard(t->maildir, t->name);
    t->staged = false; /* a failed move removes its tmp/ file itself */
    if (rc < 0) {
        log_err("%s: cannot deliver into %s: %s", m->id, t->maildir, strerror(-rc));
        dlv_local_record(t, rc);
        return;
    }
    dlv_keyindex_add(&r->keyindex, t->maildir, t->key);
    t->wrote = true;
}

/* The sync of dir's new/, once per batch. */
static int sync_new_once(struct folders *fs, const char *dir)
{
    struct folder *f = folder_of(fs, dir);
    if (f == NULL)
        return maildir_sync_new(dir);
    if (!f->synced) {
        f->rc = f->dfd < 0 ? f->dfd : maildir_sync_new_at(f->dfd);
        f->synced = true;
    }
    return f->rc;
}

static void confirm_work(uv_work_t *w)
{
    dlv_runner *r = w->data;
    struct folders fs = {0};

    dlv_syncfs_batch(&r->syncfs);
    for (dlv_msg *m = r->confirm_batch; m; m = m->cnext)
        for (size_t i = 0; i < m->ntasks; i++)
            if (m->tasks[i].staged)
                publish_staged(r, &fs, m, &m->tasks[i]);
    for (dlv_msg *m = r->confirm_batch; m; m = m->cnext)
        for (size_t i = 0; i < m->ntasks; i++) {
            dlv_task *t = &m->tasks[i];
            if (!t->wrote)
                continue;
            int rc = sync_new_once(&fs, t->maildir);
            if (rc < 0) {
                log_err("%s: cannot sync %s/new: %s", m->id, t->maildir, strerror(-rc));
                dlv_local_record(t, rc);
            }
            t->wrote = false;
        }
    folders_close(&fs);
    for (dlv_msg *m = r->confirm_batch; m; m = m->cnext)
        if (dlv_finish_is_removal(m)) {
            dlv_attempt_finish(m);
            m->finished = true;
        }
}

static void confirm_start(dlv_runner *r);
static void confirm_kick(dlv_runner *r);

static void confirm_done(uv_work_t *w, int status)
{
    dlv_runner *r = w->data;
    (void)status; /* never cancelled */
    dlv_msg *m = r->confirm_batch;
    r->confirm_batch = NULL;
    while (m) {
        dlv_msg *next = m->cnext;
        if (m->finished)
            dlv_msg_end(m);
        else
            dlv_msg_finish(m); /* its own pool job (nothing left to sync) */
        m = next;
    }
    confirm_kick(r);
}

static void confirm_start(dlv_runner *r)
{
    r->confirm_last = uv_now(r->loop);
    r->confirm_remote = false;
    r->confirm_batch = r->confirm_head;
    r->confirm_head = NULL;
    r->confirm_tail = &r->confirm_head;
    r->confirm_work.data = r;
    int rc = uv_queue_work(r->loop, &r->confirm_work, confirm_work, confirm_done);
    if (rc) {
        /* Cannot happen with a valid loop. Nothing is recorded: the lock
         * goes, and the retry finds the files by their delivery keys (which
         * it looks for only while store_failed says an outcome was lost). */
        log_err("confirm: %s", uv_strerror(rc));
        atomic_store(&r->store_failed, true);
        dlv_msg *m = r->confirm_batch;
        r->confirm_batch = NULL;
        while (m) {
            dlv_msg *next = m->cnext;
            spool_fs_unlock(m->lockfd);
            m->lockfd = -1;
            m->next_ms = dlv_now_ms() + 60 * 1000;
            dlv_msg_end(m);
            m = next;
        }
    }
}

static void on_confirm_gap(uv_timer_t *t)
{
    confirm_kick(t->data);
}

/* Whether m was also sent to a remote server: its outcome is recorded
 * only after this batch, and a crash before that sends it again. */
static bool sent_remote(const dlv_msg *m)
{
    for (size_t i = 0; i < m->ntasks; i++)
        if (!m->tasks[i].local)
            return true;
    return false;
}

/* Starts the next batch now, or when CONFIRM_GAP_MS have passed since the
 * last one started (now when a queued message was sent remotely: the
 * wait would widen the window in which a crash sends it twice). */
static void confirm_kick(dlv_runner *r)
{
    if (r->confirm_batch || !r->confirm_head)
        return; /* the batch's end starts the next one */
    uint64_t now = uv_now(r->loop);
    if (r->stopping || now >= r->confirm_last + CONFIRM_GAP_MS || r->confirm_remote) {
        uv_timer_stop(&r->confirm_timer);
        confirm_start(r);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&r->confirm_timer))
        uv_timer_start(&r->confirm_timer, on_confirm_gap, r->confirm_last + CONFIRM_GAP_MS - now,
                       0);
}

void dlv_confirm_add(dlv_msg *m)
{
    dlv_runner *r = m->r;
    m->cnext = NULL;
    *r->confirm_tail = m;
    r->confirm_tail = &m->cnext;
    r->confirm_remote |= sent_remote(m);
    confirm_kick(r);
}
