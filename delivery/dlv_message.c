/*
 * dlv_message.c - one attempt of one message, the loop side:
 *
 *   prepare (pool)   lock, load, expand, decide what to deliver (dlv_attempt.c)
 *   deliver (loop)   each delivery waits for a slot (dlv_slots), then runs:
 *                    a Maildir write on the pool, or a remote request
 *   finish (pool)    record outcomes, DSNs, removal, unlock (dlv_record.c)
 *
 * A message whose deliveries are all local and find their slots free at
 * once is delivered in prepare's pool job (deliver_inline). A Maildir write
 * counts only after its new/ is synced: such messages go through the
 * confirm queue (dlv_confirm.c), which syncs for many and then finishes.
 *
 * The per-message lock is held from prepare to finish, so the CLI never
 * sees a half-recorded attempt. The envelope in the dlv_msg is only
 * changed by the pool halves; while deliveries run, outcomes go to the
 * separate result array (written on the loop), so no two threads ever
 * touch the same memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/dlv_core.h"
#include "sluice/dlv_dsn.h"
#include "sluice/dlv_local.h"
#include "sluice/log.h"

#define RETRY_ERROR_MS (60 * 1000)

int dlv_result_set(dlv_result *res, int code, const char *status, const char *reply,
                   const char *relay, const char *tls)
{
    char *rp = strdup(reply ? reply : ""), *rl = strdup(relay ? relay : "");
    if (!rp || !rl) {
        free(rp);
        free(rl);
        return -ENOMEM;
    }
    free(res->reply);
    free(res->relay);
    res->reply = rp;
    res->relay = rl;
    res->tried = true;
    res->code = code;
    snprintf(res->status, sizeof(res->status), "%s", status);
    snprintf(res->tls, sizeof(res->tls), "%s", tls && *tls ? tls : "none");
    return 0;
}

void dlv_log_rcpt(const envelope *e, const env_rcpt *r, const dlv_result *res,
                  const char *status_word, int64_t now_us)
{
    char orig[400] = "";
    /* Alias targets carry the alias as ORCPT: shown as Postfix's orig_to. */
    if (r->orcpt && strncasecmp(r->orcpt, "rfc822;", 7) == 0) {
        char dec[320];
        if (dlv_xtext_decode(r->orcpt + 7, dec, sizeof(dec)) == 0 && !dlv_addr_equal(dec, r->addr))
            snprintf(orig, sizeof(orig), ", orig_to=<%s>", dec);
    }
    int64_t delay = now_us - e->arrival_us;
    if (delay < 0)
        delay = 0;
    log_info("%s: to=<%s>%s, relay=%s, delay=%" PRId64 ".%" PRId64
             ", tls=%s, dsn=%s, status=%s (%s)",
             e->id, r->addr, orig, res->relay && *res->relay ? res->relay : "none", delay / 1000000,
             delay / 100000 % 10, res->tls[0] ? res->tls : "none",
             r->dsn_status ? r->dsn_status : res->status, status_word,
             r->last_reply ? r->last_reply
             : res->reply  ? res->reply
                           : "");
}

/* ---- ending ---- */

static void msg_free(dlv_msg *m)
{
    for (size_t i = 0; i < m->ntasks; i++) {
        dlv_task *t = &m->tasks[i];
        free(t->dest);
        free(t->maildir);
        free(t->idx);
        free(t->req.rcpts);
    }
    free(m->tasks);
    for (size_t i = 0; i < m->nres; i++) {
        free(m->res[i].reply);
        free(m->res[i].relay);
        free(m->res[i].maildir);
    }
    free(m->res);
    free(m->jrec);
    envelope_free(&m->e);
    dlv_maps_unref(m->maps);
    free(m);
}

void dlv_msg_end(dlv_msg *m)
{
    dlv_runner *r = m->r;
    int64_t now = dlv_now_ms();
    if (dlv_sched_done(&r->sched, m->id, m->next_ms) != 0)
        log_warn("%s: not active in the schedule", m->id);
    /* DSNs we just committed: deliver them now rather than at the scan. */
    for (size_t i = 0; i < m->ndsn; i++)
        if (dlv_sched_add(&r->sched, m->dsn_ids[i], now, 0) != 0)
            log_warn("%s: cannot schedule (the scan will)", m->dsn_ids[i]);
    /* A handed record: sluice-smtpd forgets it, or writes it into queue/. */
    if (m->jrec && r->handoff_open)
        dlv_handoff_answer(&r->handoff, !m->jdone, m->jrec->seq, m->id);
    r->inflight--;
    msg_free(m);
    dlv_runner_job_done(r);
}

static void finish_work(uv_work_t *w)
{
    dlv_attempt_finish(w->data);
}

static void finish_done(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: we do not call uv_cancel */
    dlv_msg_end(w->data);
}

void dlv_msg_finish(dlv_msg *m)
{
    if (dlv_confirm_needed(m)) {
        dlv_confirm_add(m); /* finish follows the sync of new/ */
        return;
    }
    int rc = uv_queue_work(m->r->loop, &m->work, finish_work, finish_done);
    if (rc) {
        /* Cannot happen with a valid loop; keep the lock's promise anyway. */
        log_err("%s: %s", m->id, uv_strerror(rc));
        spool_fs_unlock(m->lockfd);
        m->next_ms = dlv_now_ms() + RETRY_ERROR_MS;
        dlv_msg_end(m);
    }
}

/* ---- deliveries ---- */

void dlv_task_end(dlv_task *t)
{
    dlv_msg *m = t->msg;
    if (t->started)
        dlv_slots_release(&m->r->slots, t->dest);
    if (--m->left == 0)
        dlv_msg_finish(m);
}

/* maildir_deliver's staging hook: the confirm job will sync the file's
 * filesystem, unless it cannot hold a descriptor on it. */
static int stage_here(void *arg, dev_t dev)
{
    dlv_task *t = arg;
    if (dlv_syncfs_enter(&t->msg->r->syncfs, dev, t->maildir, &t->ticket) < 0)
        return -1;
    t->dev = dev;
    return 0;
}

/*
 * The Maildir write of one local task (on the pool). The file is staged
 * (its data and its name in new/ made durable by the confirm job, many
 * files at once), else in new/ waiting for new/'s sync.
 */
static void local_deliver(dlv_task *t)
{
    dlv_msg *m = t->msg;
    const envelope *e = &m->e;
    bool fresh = e->arrival_us > m->r->start_us && e->rcpts[t->rcpt].attempts == 0 &&
                 !(m->flags & DLV_SCHED_CHECK) && !atomic_load(&m->r->store_failed);
    bool check = !fresh && dlv_keyindex_may_hold(&m->r->keyindex, t->maildir, t->key);
    maildir_delivery d = {
        .dir = t->maildir,
        .key = t->key,
        .hostname = m->r->cfg->hostname,
        .return_path = e->sender,
        .delivered_to = e->rcpts[t->rcpt].addr,
        .fd = m->lockfd,
        .data = m->jrec ? m->jrec->data + m->jrec->env_len : NULL,
        .len = m->jrec ? m->jrec->msg_len : 0,
        .defer_sync = true,
        .stage = stage_here,
        .stage_arg = t,
    };
    int rc = dlv_local_deliver(&d, check, &t->dup, t->name, sizeof(t->name));
    if (rc == 0 && !t->dup)
        dlv_keyindex_add(&m->r->keyindex, t->maildir, t->key); /* in new/ already */
    t->rc = rc < 0 ? rc : 0;
    t->staged = rc == 1;
    /* A copy found from before a restart is synced too: its first sync may
     * be the one that failed. */
    t->wrote = rc == 0;
}

/* Its outcome, in its recipient's own result (either thread: no two tasks
 * share a recipient, and a task's result is written by one thread at a
 * time: its delivery, then the confirm job). */
void dlv_local_record(dlv_task *t, int rc)
{
    dlv_msg *m = t->msg;
    dlv_result *res = &m->res[t->rcpt];
    int set;
    if (rc == 0) {
        set =
            dlv_result_set(res, 250, "2.0.0",
                           t->dup ? "250 2.0.0 already in the mailbox (delivered before a restart)"
                                  : "250 2.0.0 delivered to maildir",
                           "local", "none");
    } else {
        char reply[300], st[8];
        dlv_local_error_reply(rc, reply, sizeof(reply), st);
        log_warn("%s: maildir %s: %s", m->id, t->maildir, strerror(-rc));
        set = dlv_result_set(res, atoi(reply), st, reply, "local", "none");
    }
    if (set)
        res->tried = false; /* out of memory: left as it was, retried later */
}

static void local_work(uv_work_t *w)
{
    local_deliver(w->data);
}

static void local_done(uv_work_t *w, int status)
{
    dlv_task *t = w->data;
    dlv_local_record(t, status ? status : t->rc);
    dlv_task_end(t);
}

static void task_run(dlv_slot_req *q)
{
    dlv_task *t = (dlv_task *)q;
    t->started = true;
    if (!t->local) {
        dlv_remote_run(t);
        return;
    }
    t->work.data = t;
    int rc = uv_queue_work(t->msg->r->loop, &t->work, local_work, local_done);
    if (rc)
        local_done(&t->work, rc);
}

static void task_skip(dlv_slot_req *q)
{
    dlv_task_end((dlv_task *)q);
}

void dlv_msg_cancel_waiting(dlv_runner *r)
{
    dlv_slots_drain(&r->slots, task_skip);
}

/* ---- starting ---- */

/*
 * On the pool, right after prepare: each local delivery whose slot is free
 * now runs here (and, when nothing needs a sync of new/, finish too). Each
 * trip through the pool costs wake-ups of a pool thread and of the loop.
 * Deliveries that must wait for a slot, and remote ones, take the loop's
 * way (prepare_done).
 */
static void deliver_inline(dlv_msg *m)
{
    size_t ran = 0;
    for (size_t i = 0; i < m->ntasks; i++) {
        dlv_task *t = &m->tasks[i];
        if (!t->local || !dlv_slots_try_take(&m->r->slots, t->dest))
            continue;
        t->msg = m;
        t->started = t->inline_ran = true;
        local_deliver(t);
        dlv_local_record(t, t->rc);
        ran++;
    }
    if (ran > 0 && ran == m->ntasks && !dlv_confirm_needed(m)) {
        dlv_attempt_finish(m);
        m->finished = true;
    }
}

static void prepare_work(uv_work_t *w)
{
    dlv_msg *m = w->data;
    if (m->jrec)
        dlv_attempt_prepare_journal(m);
    else
        dlv_attempt_prepare(m);
    if (m->prep == DLV_PREP_GO)
        deliver_inline(m);
}

static void prepare_done(uv_work_t *w, int status)
{
    dlv_msg *m = w->data;
    dlv_runner *r = m->r;
    (void)status;
    if (m->prep != DLV_PREP_GO) {
        dlv_msg_end(m); /* prepare unlocked and chose next_ms */
        return;
    }
    size_t waiting = m->ntasks;
    for (size_t i = 0; i < m->ntasks; i++)
        if (m->tasks[i].inline_ran) {
            dlv_slots_release(&r->slots, m->tasks[i].dest);
            waiting--;
        }
    if (m->finished) {
        dlv_msg_end(m); /* finish ran on the pool too */
        return;
    }
    if (waiting == 0 || r->stopping) {
        dlv_msg_finish(m);
        return;
    }
    m->left = waiting;
    for (size_t i = 0; i < m->ntasks; i++) {
        dlv_task *t = &m->tasks[i];
        if (t->inline_ran)
            continue;
        t->msg = m;
        t->slot.dest = t->dest;
        t->slot.run = task_run;
        if (dlv_slots_submit(&r->slots, &t->slot) != 0)
            dlv_task_end(t); /* not attempted; stays due */
    }
}

void dlv_msg_start(dlv_runner *r, const char *id, unsigned flags)
{
    dlv_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        log_err("%s: out of memory", id);
        dlv_sched_done(&r->sched, id, dlv_now_ms() + RETRY_ERROR_MS);
        r->inflight--;
        return;
    }
    m->r = r;
    memcpy(m->id, id, sizeof(m->id));
    m->flags = flags;
    m->maps = r->maps;
    m->maps->refs++;
    m->lockfd = -1;
    m->next_ms = -1;
    envelope_init(&m->e);
    if ((flags & DLV_SCHED_JOURNAL) && r->handoff_open) {
        m->jrec = dlv_handoff_take(&r->handoff, id); /* NULL: not (or no longer) handed */
        /* Announced "late" meanwhile: sluice-smtpd has written it into
         * queue/ and expects no answer; the attempt is made from there. */
        if (m->jrec && (flags & DLV_SCHED_CHECK)) {
            free(m->jrec);
            m->jrec = NULL;
        }
    }
    m->work.data = m;
    int rc = uv_queue_work(r->loop, &m->work, prepare_work, prepare_done);
    if (rc) {
        log_err("%s: %s", id, uv_strerror(rc));
        m->next_ms = dlv_now_ms() + RETRY_ERROR_MS;
        dlv_msg_end(m);
    }
}
