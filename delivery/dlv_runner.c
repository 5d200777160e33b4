/*
 * dlv_runner.c - the runner's life: start (recovery, socket, first scan),
 * the pump that turns due schedule entries into attempts within the
 * concurrency limits, map reloads, and a stop that lets attempts in
 * flight finish. See dlv_runner.h and docs/delivery.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sysexits.h>
#include <unistd.h>

#include "sluice/daemon.h"
#include "sluice/dlv_core.h"
#include "sluice/handoff_format.h"
#include "sluice/log.h"

#define SCAN_INTERVAL_MS (60 * 1000)
/* Re-check the schedule at least this often: the wall clock may jump. */
#define MAX_SLEEP_MS (60 * 1000)
/* After the grace period and the transport's abort: how long to wait. */
#define ABORT_WAIT_MS (10 * 1000)

int64_t dlv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t dlv_now_ms(void)
{
    return dlv_now_us() / 1000;
}

/* ---- maps ---- */

void dlv_maps_unref(dlv_maps *m)
{
    if (m && --m->refs == 0) {
        map_free(m->aliases);
        map_free(m->mailboxes);
        map_free(m->transport);
        free(m);
    }
}

static int maps_load(const sluice_config *cfg, config_diag_fn diag, void *arg, dlv_maps **out)
{
    dlv_maps *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m)
        return -ENOMEM;
    m->refs = 1;
    int p1 = map_load(cfg->aliases ? cfg->aliases : "", &m->aliases, diag, arg);
    int p2 = map_load(cfg->mailboxes ? cfg->mailboxes : "", &m->mailboxes, diag, arg);
    int p3 = map_load(cfg->transport ? cfg->transport : "", &m->transport, diag, arg);
    if (p1 || p2 || p3) {
        dlv_maps_unref(m);
        return p1 < 0 ? p1 : p2 < 0 ? p2 : p3 < 0 ? p3 : -EINVAL;
    }
    *out = m;
    return 0;
}

struct reload_job {
    uv_work_t work;
    dlv_runner *r;
    dlv_maps *maps;
    int rc;
};

static void reload_work(uv_work_t *w)
{
    struct reload_job *j = w->data;
    j->rc = maps_load(j->r->cfg, daemon_log_diag, NULL, &j->maps);
}

static void reload_done(uv_work_t *w, int status)
{
    struct reload_job *j = w->data;
    dlv_runner *r = j->r;
    r->reloading = false;
    if (status == 0 && j->rc == 0) {
        dlv_maps_unref(r->maps);
        r->maps = j->maps;
        log_info("reload: maps reloaded");
    } else {
        log_warn("reload: the maps have problems; keeping the old ones");
    }
    free(j);
    r->jobs--;
    dlv_runner_job_done(r);
}

void dlv_runner_reload(dlv_runner *r)
{
    if (r->stopping || r->reloading) {
        log_info("reload: the maps are being reloaded already");
        return;
    }
    struct reload_job *j = calloc(1, sizeof(*j));
    if (!j) {
        log_err("reload: out of memory");
        return;
    }
    j->r = r;
    j->work.data = j;
    if (uv_queue_work(r->loop, &j->work, reload_work, reload_done) != 0) {
        free(j);
        return;
    }
    r->reloading = true;
    r->jobs++;
}

/* ---- creation and start ---- */

/*
 * Messages in an attempt at once (Postfix's "active queue"): more than
 * `concurrency`, because a message that waits for a busy destination's
 * slot must not keep others, for idle destinations, from starting. One
 * waiting costs its envelope and two descriptors (lock, message), so the
 * cap follows the open-file limit too.
 */
static size_t max_inflight(unsigned concurrency)
{
    size_t n = (size_t)(concurrency ? concurrency : 1) * 10;
    if (n < 100)
        n = 100;
    if (n > 5000)
        n = 5000;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t fds = rl.rlim_cur > 256 ? (size_t)(rl.rlim_cur - 128) / 3 : 32;
        if (n > fds)
            n = fds;
    }
    return n;
}

int dlv_runner_new(uv_loop_t *loop, const sluice_config *cfg, spool_fs *fs,
                   dlv_transport *transport, config_diag_fn diag, void *diag_arg, dlv_runner **out)
{
    *out = NULL;
    dlv_runner *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    r->start_us = dlv_now_us(); /* after any earlier runner on this spool had exited */
    atomic_init(&r->store_failed, false);
    r->cfg = cfg;
    r->fs = fs;
    r->transport = transport ? transport : dlv_transport_unavailable();
    dlv_sched_init(&r->sched);
    dlv_slots_init(&r->slots, cfg->concurrency, cfg->concurrency_per_destination);
    r->max_inflight = max_inflight(cfg->concurrency);
    r->confirm_tail = &r->confirm_head;
    int rc = dlv_syncfs_init(&r->syncfs);
    if (rc) {
        dlv_slots_free(&r->slots);
        free(r);
        return rc;
    }
    rc = dlv_keyindex_init(&r->keyindex);
    if (rc == 0 && (rc = maps_load(cfg, diag, diag_arg, &r->maps)) != 0)
        dlv_keyindex_free(&r->keyindex);
    if (rc) {
        dlv_syncfs_free(&r->syncfs);
        dlv_slots_free(&r->slots);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void request_one(void *arg, const char *id, unsigned flags)
{
    dlv_runner_request(arg, id, flags);
}

static void handed_one(void *arg, const char *id)
{
    dlv_runner *r = arg;
    if (dlv_sched_add(&r->sched, id, dlv_now_ms(), DLV_SCHED_JOURNAL) != 0)
        log_warn("%s: cannot schedule (out of memory); sluice-smtpd will queue it", id);
}

static void on_notify(void *arg, const char *text, size_t len)
{
    dlv_runner *r = arg;
    if (handoff_is_records(text, len)) {
        if (r->stopping || !r->handoff_open ||
            dlv_handoff_receive(&r->handoff, text, len, handed_one, r) < 0)
            return; /* unanswered: sluice-smtpd writes them into queue/ after its wait */
        dlv_runner_pump(r);
        return;
    }
    if (dlv_notify_parse(text, len, request_one, r) < 0)
        log_warn("delivery socket: unknown request '%.40s'", text);
}

static void on_due(uv_timer_t *t)
{
    dlv_runner_pump(t->data);
}

static void on_scan(uv_timer_t *t)
{
    dlv_scan_start(t->data);
}

int dlv_runner_start(dlv_runner *r)
{
    /* Leftovers of interrupted writes (ours: ID.env.new; and orphans of
     * a removal). Safe beside a live smtpd: every removal takes the id's
     * lock first, which a live receive holds (spool_recover.c). */
    int rc = spool_fs_recover(r->fs);
    if (rc < 0)
        log_err("spool recovery: %s", strerror(-rc));
    else if (rc > 0)
        log_info("spool recovery: %d leftover%s removed", rc, rc == 1 ? "" : "s");

    rc = dlv_notify_open(r->loop, &r->notify, spool_fs_root(r->fs), on_notify, r);
    if (rc == -ENAMETOOLONG)
        log_warn("spool path too long for %s: new mail is found by the scan only",
                 SPOOL_DELIVERY_SOCK);
    else if (rc < 0)
        return rc;
    else
        r->handles_open++;
    if (dlv_handoff_init(r->loop, &r->handoff, spool_fs_root(r->fs)) == 0) {
        r->handoff_open = true;
        r->handles_open += 2;
    }
    uv_timer_t *timers[] = {&r->due_timer, &r->scan_timer, &r->grace_timer, &r->confirm_timer};
    for (size_t i = 0; i < 4; i++) {
        uv_timer_init(r->loop, timers[i]);
        timers[i]->data = r;
        r->handles_open++;
    }
    uv_timer_start(&r->scan_timer, on_scan, SCAN_INTERVAL_MS, SCAN_INTERVAL_MS);
    r->started = true;
    dlv_scan_start(r);
    return 0;
}

/* ---- requests and the pump ---- */

void dlv_runner_request(dlv_runner *r, const char *id, unsigned flags)
{
    if (r->stopping)
        return;
    int64_t now = dlv_now_ms();
    if (!id) {
        dlv_sched_all_due(&r->sched, now, flags);
        dlv_scan_start(r); /* and whatever is on disk but not scheduled */
    } else if (dlv_sched_add(&r->sched, id, now, flags) != 0) {
        log_warn("%s: cannot schedule (out of memory); the scan will", id);
    }
    dlv_runner_pump(r);
}

void dlv_runner_pump(dlv_runner *r)
{
    if (r->stopping || !r->started)
        return;
    int64_t now = dlv_now_ms();
    char id[QUEUE_ID_LEN + 1];
    unsigned flags;
    while (r->inflight < r->max_inflight && dlv_sched_pop_due(&r->sched, now, id, &flags)) {
        r->inflight++;
        dlv_msg_start(r, id, flags);
    }
    int64_t due;
    if (r->inflight < r->max_inflight && dlv_sched_next_due(&r->sched, &due)) {
        int64_t wait = due - now;
        if (wait < 0)
            wait = 0;
        if (wait > MAX_SLEEP_MS)
            wait = MAX_SLEEP_MS;
        uv_timer_start(&r->due_timer, on_due, (uint64_t)wait, 0);
    } else {
        uv_timer_stop(&r->due_timer);
    }
}

/* ---- stop ---- */

static void transport_closed(void *arg)
{
    dlv_runner *r = arg;
    r->stopped = true;
    if (r->stop_cb)
        r->stop_cb(r->stop_arg);
}

static void close_transport(dlv_runner *r)
{
    if (r->transport->close)
        r->transport->close(r->transport, transport_closed, r);
    else
        transport_closed(r);
}

static void handle_closed(uv_handle_t *h)
{
    dlv_runner *r = h->type == UV_POLL ? ((dlv_notify *)h->data)->arg : h->data;
    if (--r->handles_open == 0)
        close_transport(r); /* last: its callbacks may still reach us until now */
}

static void finish_stop(dlv_runner *r)
{
    if (r->closing)
        return;
    r->closing = true;
    if (r->handoff_open)
        dlv_handoff_close(&r->handoff, handle_closed, r);
    uv_close((uv_handle_t *)&r->due_timer, handle_closed);
    uv_close((uv_handle_t *)&r->scan_timer, handle_closed);
    uv_close((uv_handle_t *)&r->grace_timer, handle_closed);
    uv_close((uv_handle_t *)&r->confirm_timer, handle_closed);
}

static bool idle(const dlv_runner *r)
{
    return r->inflight == 0 && r->jobs == 0;
}

void dlv_runner_job_done(dlv_runner *r)
{
    if (r->stopping) {
        if (idle(r))
            finish_stop(r);
        return;
    }
    dlv_runner_pump(r);
}

static void on_grace(uv_timer_t *t)
{
    dlv_runner *r = t->data;
    if (!r->aborted) {
        r->aborted = true;
        log_warn("stop: %zu attempt%s still running after the grace period; aborting them",
                 r->inflight, r->inflight == 1 ? "" : "s");
        if (r->transport->cancel_all)
            r->transport->cancel_all(r->transport);
        uv_timer_start(&r->grace_timer, on_grace, ABORT_WAIT_MS, 0);
        return;
    }
    /* Something blocks in the kernel (a hung NFS Maildir?). Nothing is
     * lost by leaving: the envelopes say what is left, and delivery keys
     * catch a Maildir write that finished unrecorded. */
    log_err("stop: %zu attempt%s did not finish; exiting anyway", r->inflight,
            r->inflight == 1 ? "" : "s");
    /* Not a clean stop: a non-zero status lets systemd (Restart=on-failure)
     * start us again when this was a reload. */
    _exit(EX_TEMPFAIL);
}

void dlv_runner_stop(dlv_runner *r, unsigned grace_s, void (*cb)(void *arg), void *arg)
{
    if (r->stopping)
        return;
    r->stopping = true;
    r->stop_cb = cb;
    r->stop_arg = arg;
    if (!r->started) {
        close_transport(r);
        return;
    }
    dlv_notify_close(&r->notify, handle_closed);
    uv_timer_stop(&r->due_timer);
    uv_timer_stop(&r->scan_timer);
    dlv_msg_cancel_waiting(r);
    if (idle(r)) {
        finish_stop(r);
        return;
    }
    log_info("stop: waiting for %zu attempt%s in flight", r->inflight, r->inflight == 1 ? "" : "s");
    uv_timer_start(&r->grace_timer, on_grace, (uint64_t)grace_s * 1000, 0);
}

void dlv_runner_free(dlv_runner *r)
{
    if (!r)
        return;
    dlv_sched_free(&r->sched);
    dlv_slots_free(&r->slots);
    dlv_syncfs_free(&r->syncfs);
    dlv_keyindex_free(&r->keyindex);
    if (r->handoff_open)
        dlv_handoff_free(&r->handoff);
    dlv_maps_unref(r->maps);
    free(r);
}
