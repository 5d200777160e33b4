/*
 * dlv_scan.c - the scan of queue/: at start (crash recovery: everything
 * committed is somebody's job) and periodically (messages nobody
 * announced: a lost datagram, a runner that was down, `sluice queue
 * release` or a tool's inject). Postfix's qmgr scans its incoming and
 * deferred queues the same way; we keep one queue and a schedule.
 *
 * Two passes on the thread pool: list the ids, then (for ids the schedule
 * does not know) read their envelopes without the lock - a rename makes
 * every envelope update atomic, so we see the old or the new state, and
 * a stale view only costs an attempt that finds nothing to do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/dlv_core.h"
#include "sluice/log.h"

typedef char qid_t[QUEUE_ID_LEN + 1];

struct scan_job {
    uv_work_t work;
    dlv_runner *r;
    qid_t *ids;
    int64_t *due;
    size_t n;
    int64_t now_ms;
    bool skip_young;
    int rc;
};

/*
 * sluice-smtpd announces a message only once it is in queue/ for good (its
 * journal's mark covers it, spool_ckpt.c); until then its recovery may write
 * it back into queue/, so a runner that had already delivered and removed it
 * would deliver it again. A periodic scan therefore leaves sluice-smtpd's
 * messages younger than this to their announcement. The scan at start takes
 * everything: a message that arrived before the runner started gets the
 * duplicate check anyway (dlv_message.c).
 */
#define SCAN_YOUNG_US (10 * 1000000LL)

static bool young_smtpd_id(const char *id, int64_t now_us)
{
    return id[QUEUE_ID_LEN - 1] == '0' + QUEUE_ID_SMTPD &&
           queue_id_time(id) > now_us - SCAN_YOUNG_US;
}

int64_t dlv_envelope_due_ms(const envelope *e, int64_t now_ms)
{
    if (e->hold)
        return -1;
    int64_t due = -1;
    for (size_t i = 0; i < e->nrcpt; i++) {
        const env_rcpt *r = &e->rcpts[i];
        if (r->state == RCPT_DELIVERED || r->state == RCPT_FAILED)
            continue;
        int64_t t =
            r->state == RCPT_PENDING || r->next_attempt <= 0 ? now_ms : r->next_attempt * 1000;
        if (due < 0 || t < due)
            due = t;
    }
    /* Every recipient final but still here: a DSN or the removal is left. */
    return due < 0 ? now_ms : due;
}

static void free_job(struct scan_job *j)
{
    free(j->ids);
    free(j->due);
    free(j);
}

static void load_work(uv_work_t *w)
{
    struct scan_job *j = w->data;
    envelope e;
    envelope_init(&e);
    for (size_t i = 0; i < j->n; i++) {
        int rc = spool_fs_load(j->r->fs, j->ids[i], &e);
        if (rc == 0)
            j->due[i] = dlv_envelope_due_ms(&e, j->now_ms);
        else if (rc == -ENOENT || rc == -EBADMSG)
            j->due[i] = -1; /* gone, or quarantined (the spool logged it) */
        else
            j->due[i] = j->now_ms; /* let the attempt meet the error and retry */
        envelope_free(&e);
    }
}

static void scan_finished(dlv_runner *r)
{
    r->scanning = false;
    if (r->scan_again && !r->stopping) {
        r->scan_again = false;
        dlv_scan_start(r);
    }
    r->jobs--;
    dlv_runner_job_done(r);
}

static void load_done(uv_work_t *w, int status)
{
    struct scan_job *j = w->data;
    dlv_runner *r = j->r;
    size_t added = 0;
    if (status == 0 && !r->stopping) {
        for (size_t i = 0; i < j->n; i++) {
            if (j->due[i] < 0)
                continue;
            if (dlv_sched_add(&r->sched, j->ids[i], j->due[i], 0) == 0)
                added++;
        }
    }
    if (added)
        log_info("scan: %zu message%s scheduled (%zu in the queue)", added, added == 1 ? "" : "s",
                 dlv_sched_queued(&r->sched) + dlv_sched_active(&r->sched));
    free_job(j);
    scan_finished(r);
}

static void list_work(uv_work_t *w)
{
    struct scan_job *j = w->data;
    j->rc = spool_fs_list(j->r->fs, &j->ids, &j->n);
}

static void list_done(uv_work_t *w, int status)
{
    struct scan_job *j = w->data;
    dlv_runner *r = j->r;
    if (status != 0 || j->rc != 0 || r->stopping) {
        if (j->rc != 0)
            log_err("scan: cannot list the queue: %s", strerror(-j->rc));
        free_job(j);
        scan_finished(r);
        return;
    }
    /* Keep only ids the schedule does not know. */
    size_t k = 0;
    int64_t now_us = dlv_now_us();
    for (size_t i = 0; i < j->n; i++)
        if (!dlv_sched_known(&r->sched, j->ids[i]) &&
            !(j->skip_young && young_smtpd_id(j->ids[i], now_us)))
            memcpy(j->ids[k++], j->ids[i], sizeof(qid_t));
    j->n = k;
    if (k == 0 || !(j->due = calloc(k, sizeof(*j->due)))) {
        if (k)
            log_err("scan: out of memory");
        free_job(j);
        scan_finished(r);
        return;
    }
    j->now_ms = dlv_now_ms();
    int rc = uv_queue_work(r->loop, &j->work, load_work, load_done);
    if (rc) {
        log_err("scan: %s", uv_strerror(rc));
        free_job(j);
        scan_finished(r);
    }
}

void dlv_scan_start(dlv_runner *r)
{
    if (r->stopping)
        return;
    if (r->scanning) {
        r->scan_again = true;
        return;
    }
    struct scan_job *j = calloc(1, sizeof(*j));
    if (!j) {
        log_err("scan: out of memory");
        return;
    }
    j->r = r;
    j->work.data = j;
    j->skip_young = r->scanned;
    r->scanned = true;
    int rc = uv_queue_work(r->loop, &j->work, list_work, list_done);
    if (rc) {
        log_err("scan: %s", uv_strerror(rc));
        free(j);
        return;
    }
    r->scanning = true;
    r->jobs++;
}
