/*
 * dlv_core.h - private to delivery/dlv_*.c: the runner's state and the
 * parts of one delivery attempt, shared by the files that make up the
 * runner (dlv_runner.c, dlv_message.c, dlv_attempt.c, dlv_remote.c,
 * dlv_scan.c, dlv_notify.c). Other modules use dlv_runner.h.
 */
#ifndef SLUICE_DLV_CORE_H
#define SLUICE_DLV_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "dlv_handoff.h"
#include "dlv_keyindex.h"
#include "dlv_runner.h"
#include "dlv_sched.h"
#include "dlv_slots.h"
#include "dlv_syncfs.h"
#include "envelope.h"
#include "maildir.h"
#include "map.h"
#include "spool.h"

/* Maps shared by attempts in flight: replaced whole on SIGHUP, freed when
 * the last attempt that uses them ends (refs change on the loop only). */
typedef struct dlv_maps {
    map *aliases, *mailboxes, *transport;
    unsigned refs;
} dlv_maps;

/* ---- the notify socket (dlv_notify.c) ---- */

typedef struct dlv_notify {
    uv_poll_t poll;
    int fd;
    bool open;
    char path[108];
    void (*on_msg)(void *arg, const char *text, size_t len);
    void *arg;
    uv_close_cb close_cb;
    char buf[65536];
} dlv_notify;

/* Binds <root>/run/delivery.sock (replacing a stale one) and polls it. */
int dlv_notify_open(uv_loop_t *loop, dlv_notify *n, const char *root,
                    void (*on_msg)(void *arg, const char *text, size_t len), void *arg);
/* Stops, unlinks the socket; the handle closes (cb may be NULL). */
void dlv_notify_close(dlv_notify *n, uv_close_cb cb);

/*
 * Parses one datagram: "new ID [ID...]", "late ID [ID...]" or "flush
 * [ID...]". Calls each(arg, id, flags) per id (DLV_SCHED_FORCE for flush,
 * DLV_SCHED_CHECK for late), and each(arg, NULL, DLV_SCHED_FORCE) for a
 * bare flush. Returns the number of ids taken, or -EINVAL for an unknown
 * verb.
 */
int dlv_notify_parse(const char *text, size_t len,
                     void (*each)(void *arg, const char *id, unsigned flags), void *arg);

/* ---- the runner (dlv_runner.c) ---- */

typedef struct dlv_msg dlv_msg;

struct dlv_runner {
    uv_loop_t *loop;
    /*
     * For skipping the Maildir duplicate scan (an O(mailbox) directory
     * listing per delivery): a message that arrived after this process
     * started, whose recipient has no recorded attempt, cannot have been
     * written to a Maildir before, unless recording an outcome failed in
     * this process (then every delivery checks, for the process's life).
     */
    int64_t start_us;
    atomic_bool store_failed;
    const sluice_config *cfg;
    spool_fs *fs;
    dlv_transport *transport;
    dlv_sched sched;
    dlv_slots slots;
    dlv_syncfs syncfs;     /* the data sync of staged Maildir files */
    dlv_keyindex keyindex; /* the delivery keys each Maildir may hold */
    dlv_maps *maps;
    dlv_notify notify;
    dlv_handoff handoff; /* records sluice-smtpd handed over, and our answers */
    bool handoff_open;

    uv_timer_t due_timer;  /* the schedule's earliest entry */
    uv_timer_t scan_timer; /* periodic scan for messages nobody announced */
    uv_timer_t grace_timer;
    unsigned handles_open;

    size_t inflight, max_inflight; /* messages in an attempt */
    /* Messages whose Maildir files wait for their new/ sync (dlv_confirm.c). */
    dlv_msg *confirm_head, **confirm_tail;
    dlv_msg *confirm_batch; /* being synced and finished on the pool */
    uv_work_t confirm_work;
    uv_timer_t confirm_timer; /* the next batch, at most every CONFIRM_GAP_MS */
    uint64_t confirm_last;    /* uv_now() when the last batch started */
    bool confirm_remote;      /* a queued message was sent remotely: no gap */
    unsigned jobs;            /* scans and map reloads on the pool */
    bool scanning, scan_again;
    bool scanned; /* the start's scan is done: later ones skip young smtpd ids */
    bool reloading;
    bool started, stopping, closing, stopped, aborted;
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

int64_t dlv_now_ms(void);
int64_t dlv_now_us(void);
/* Starts due attempts while limits allow, re-arms the timer. */
void dlv_runner_pump(dlv_runner *r);
/* An attempt or job ended: pump, or finish a stop. */
void dlv_runner_job_done(dlv_runner *r);
void dlv_maps_unref(dlv_maps *m);

/* ---- periodic scan (dlv_scan.c) ---- */

/* Lists queue/, reads the envelopes of ids not scheduled yet, and
 * schedules them by their recipients' next-attempt. One at a time. */
void dlv_scan_start(dlv_runner *r);
/* When an envelope wants its next attempt (ms), or -1: held / nothing to do. */
int64_t dlv_envelope_due_ms(const envelope *e, int64_t now_ms);

/* ---- one attempt of one message (dlv_message.c, dlv_attempt.c) ---- */

/* This round's outcome for one recipient. */
typedef struct dlv_result {
    bool tried;     /* an outcome was decided this round */
    bool expanded;  /* an alias: replaced by its targets */
    int code;       /* SMTP-style reply code (local replies use one too) */
    char status[8]; /* "X.Y.Z" */
    char *reply;    /* malloc'd */
    char *relay;    /* "local", "host[ip]:port", "alias" */
    char tls[32];
    char *maildir; /* prepare: a local recipient's Maildir, until its task takes it */
} dlv_result;

typedef struct dlv_task {
    dlv_slot_req slot;
    dlv_msg *msg;
    bool local;
    bool started;
    bool inline_ran; /* delivered in prepare's pool job (deliver_inline) */
    bool wrote;      /* a new file in the Maildir's new/, which is not synced yet */
    bool staged;     /* the file is in tmp/ as name, its data not synced yet */
    dev_t dev;       /* staged: its filesystem, */
    unsigned ticket; /* and its place in that filesystem's syncs (dlv_syncfs.h) */
    char name[MAILDIR_NAME_MAX];
    char *dest; /* "local" or the next hop */
    /* local: one recipient into one Maildir */
    size_t rcpt;
    char *maildir;
    char key[48];
    int rc;
    bool dup;
    uv_work_t work;
    /* remote: the recipients of one next hop */
    size_t *idx;
    dlv_remote_req req;
} dlv_task;

struct dlv_msg {
    dlv_runner *r;
    char id[QUEUE_ID_LEN + 1];
    unsigned flags; /* DLV_SCHED_* */
    uv_work_t work;
    dlv_maps *maps;
    envelope e;
    int lockfd;
    int64_t now_us;
    int prep; /* DLV_PREP_* */
    int err;
    dlv_result *res;
    size_t nres;
    dlv_task *tasks;
    size_t ntasks, left;
    bool finished;   /* finish ran in prepare's pool job */
    dlv_msg *cnext;  /* the confirm queue (dlv_confirm.c) */
    int64_t next_ms; /* after the attempt: when again, -1 = forget */
    dlv_jrec *jrec;  /* the attempt works from a handed-over record, not from queue/ */
    bool jdone;      /* ... and delivered every copy: answer "done", else "keep" */
    char dsn_ids[2][QUEUE_ID_LEN + 1]; /* DSNs committed by finish, to schedule */
    size_t ndsn;
};

enum {
    DLV_PREP_GO = 0,
    DLV_PREP_GONE,
    DLV_PREP_HELD,
    DLV_PREP_BUSY,
    DLV_PREP_ERROR,
    DLV_PREP_KEEP, /* a handed record this attempt will not deliver: to queue/ first */
};

/* Starts an attempt of id (dlv_message.c). */
void dlv_msg_start(dlv_runner *r, const char *id, unsigned flags);

/* A delivery ended (its result is set, or it was never attempted). */
void dlv_task_end(dlv_task *t);

/* Sets a local task's result from its outcome rc (either thread). */
void dlv_local_record(dlv_task *t, int rc);

/* The attempt is over: schedule what comes next, free m (loop thread). */
void dlv_msg_end(dlv_msg *m);

/* Deliveries have ended: finish on the pool, after new/'s sync if a
 * Maildir was written (loop thread). */
void dlv_msg_finish(dlv_msg *m);

/*
 * Maildir writes are reported only after their new/ is synced. Instead of
 * each delivery syncing (and every thread waiting on another's sync), the
 * messages whose deliveries have ended queue here; one pool job at a time
 * syncs the new/ of every Maildir the queued messages wrote to, once each,
 * then finishes those messages (dlv_confirm.c).
 */
bool dlv_confirm_needed(const dlv_msg *m);
void dlv_confirm_add(dlv_msg *m);

/* Stop: deliveries still waiting for a slot end unattempted. */
void dlv_msg_cancel_waiting(dlv_runner *r);

/* Thread-pool halves (dlv_attempt.c): decide what to deliver, and record
 * what happened (DSNs, removal). */
void dlv_attempt_prepare(dlv_msg *m);
void dlv_attempt_finish(dlv_msg *m);
/* prepare for a handed record (m->jrec): GO only when every due recipient
 * is a local mailbox and nothing must be written first; else KEEP. */
void dlv_attempt_prepare_journal(dlv_msg *m);

/*
 * Whether finish will only remove m (dlv_record.c, beside the rules it
 * predicts): every recipient final after this round and no DSN owed,
 * conservatively (a success that asked for one, any failure, anything left
 * unreported). Such a finish costs no sync.
 */
bool dlv_finish_is_removal(const dlv_msg *m);

/* Sets a result (copies reply and relay). 0 or -ENOMEM. */
int dlv_result_set(dlv_result *res, int code, const char *status, const char *reply,
                   const char *relay, const char *tls);

/* ---- remote glue (dlv_remote.c) ---- */

/* The next hop for a domain: transport map, relayhost, else the domain. */
const char *dlv_nexthop(const sluice_config *cfg, const map *transport, const char *domain);
/* Starts a remote task (slot granted). */
void dlv_remote_run(dlv_task *t);

/* ---- log lines (dlv_message.c) ---- */

/* "ID: to=<a>, relay=..., delay=1.2, tls=..., dsn=X.Y.Z, status=... (reply)". */
void dlv_log_rcpt(const envelope *e, const env_rcpt *r, const dlv_result *res,
                  const char *status_word, int64_t now_us);

#endif
