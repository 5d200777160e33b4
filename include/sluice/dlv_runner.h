/*
 * dlv_runner.h - sluice-delivery's runner: drains the spool until every
 * recipient is delivered or failed (docs/delivery.md).
 *
 * One libuv loop. Everything that touches a disk (spool_fs_*, Maildir
 * writes) runs on libuv's thread pool; the loop thread only schedules.
 * libuv's contract: functions return 0 or a negative errno, callbacks run
 * from the loop, never from inside the call that started the work.
 *
 * The runner hands remote recipients to a transport (the SMTP client,
 * dlv_smtp.h) through the small interface below, so that either side can
 * be tested without the other.
 */
#ifndef SLUICE_DLV_RUNNER_H
#define SLUICE_DLV_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "spool.h"

/* ---- the remote transport interface ---- */

#define DLV_REPLY_MAX 1000 /* = ENVELOPE_MAX_REPLY */
#define DLV_RELAY_MAX 300  /* "host[ip]:port" */

/* One recipient of a remote request: inputs, then the transport's verdict. */
typedef struct dlv_remote_rcpt {
    /* in */
    const char *addr;  /* for RCPT TO, without brackets */
    const char *orcpt; /* DSN ORCPT "type;xtext" as received, or NULL */
    unsigned notify;   /* SMTP_NOTIFY_* bits (smtp_parse.h), 0 = not given */

    /* out: every field set by the transport before it calls done */
    int code;       /* reply code (RCPT, or the reply to the data); 0 = no reply */
    char status[8]; /* "X.Y.Z", decides the outcome: 2 = sent, 4 = deferred, 5 = bounced */
    /*
     * One line: the server's reply with its code ("550 5.1.1 <a@b.test>:
     * no such user"; a multi-line reply joined with spaces), or, when no
     * server answered, what went wrong ("connect to mx.b.test[192.0.2.1]:25:
     * Connection refused", "Host or domain name not found..."). It ends up
     * in the envelope, the log and the DSN's Diagnostic-Code.
     */
    char reply[DLV_REPLY_MAX + 1];
    char relay[DLV_RELAY_MAX]; /* "mx.b.test[192.0.2.1]:25" that replied; "" if none */
    char tls[32];              /* "TLSv1.3" etc., or "none" */
} dlv_remote_rcpt;

typedef struct dlv_remote_req dlv_remote_req;
typedef void (*dlv_remote_done_cb)(dlv_remote_req *req);

/*
 * One delivery request: all recipients of one message that share a next
 * hop, to go in one SMTP transaction. Everything "in" stays valid and
 * unchanged until done(req) has run; the runner frees req after that.
 */
struct dlv_remote_req {
    /* in */
    const char *id; /* queue id, for logs */
    /*
     * The next hop, in config_parse_relay() syntax: "[host]:port" (that
     * host, no MX lookup), "host:port" or "host" (MX lookup of host). It
     * is the transport map's value for the domain, else relayhost, else
     * the recipients' domain. Also the concurrency_per_destination key.
     */
    const char *nexthop;
    const char *domain; /* the recipients' domain if they share one, else NULL */
    const char *sender; /* MAIL FROM address, "" = the null sender <> */
    const char *envid;  /* DSN ENVID xtext as received, or NULL */
    int ret;            /* enum smtp_ret: 0 none, 1 FULL, 2 HDRS */
    int body;           /* enum smtp_body: 0 none, 1 7BIT, 2 8BITMIME, 3 BINARYMIME */
    bool smtputf8;      /* the message needs SMTPUTF8 */
    uint64_t size;      /* bytes of the message file (SIZE=) */
    /*
     * The message: CRLF line ends, not dot-stuffed, from offset 0 to EOF.
     * Read it with pread() or read(): the descriptor is this request's
     * own. The runner closes it after done.
     */
    int fd;
    dlv_remote_rcpt *rcpts;
    size_t nrcpt;

    dlv_remote_done_cb done; /* set by the runner */
    void *data;              /* the runner's */
    void *tdata;             /* free for the transport */
};

typedef struct dlv_transport dlv_transport;
struct dlv_transport {
    /*
     * Starts req. 0: done(req) runs later from the loop (never inside this
     * call) with every rcpt's out fields set. < 0: nothing started, no
     * callback; the runner defers every recipient of req (4.3.0).
     */
    int (*send)(dlv_transport *t, dlv_remote_req *req);
    /*
     * Shutdown after the grace period: abort what is in flight; each
     * pending done still runs (with 4.x.x outcomes) soon after. May be NULL.
     */
    void (*cancel_all)(dlv_transport *t);
    /* Frees the transport's resources; cb(arg) from the loop when done. May be NULL. */
    void (*close)(dlv_transport *t, void (*cb)(void *arg), void *arg);
    void *data;
};

/*
 * A transport that answers every request with "451 4.4.0 remote delivery
 * not available" (for a build or a test without the SMTP client).
 */
dlv_transport *dlv_transport_unavailable(void);

/* ---- the runner ---- */

typedef struct dlv_runner dlv_runner;

/*
 * Creates a runner over an open spool. cfg and fs must outlive it. Loads
 * the maps (aliases, mailboxes, transport): problems go to diag and give
 * -EINVAL (config error). transport may be NULL (= unavailable).
 */
int dlv_runner_new(uv_loop_t *loop, const sluice_config *cfg, spool_fs *fs,
                   dlv_transport *transport, config_diag_fn diag, void *diag_arg, dlv_runner **out);

/*
 * Binds run/delivery.sock, recovers the spool (leftovers only, see
 * docs/delivery.md), scans it and starts delivering. Blocking parts of the
 * start (the listing) run on the thread pool.
 */
int dlv_runner_start(dlv_runner *r);

/* SIGHUP: reloads the maps off the loop; a broken map keeps the old one. */
void dlv_runner_reload(dlv_runner *r);

/* Asks for an attempt of id now (NULL: every queued message), with
 * DLV_SCHED_* flags (FORCE: a flush). */
void dlv_runner_request(dlv_runner *r, const char *id, unsigned flags);

/*
 * Stops taking work; attempts in flight finish (after grace_s seconds the
 * transport is told to abort them). Then every handle is closed and cb(arg)
 * runs; the loop then has nothing left and uv_run returns.
 */
void dlv_runner_stop(dlv_runner *r, unsigned grace_s, void (*cb)(void *arg), void *arg);

/*
 * One runner per spool: flock()s <root>/run/delivery.lock for the life of
 * the process (fd stays open). -EBUSY when another runner holds it.
 */
int dlv_runner_lock_instance(const char *root, int *fd);

/* Frees the runner (after the stop callback, or if start was never called). */
void dlv_runner_free(dlv_runner *r);

#endif
