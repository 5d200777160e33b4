/*
 * dlv_dsn.h - delivery status notifications (RFC 3464 over RFC 3462's
 * multipart/report), built as the bytes of a new message (pure code).
 *
 *   multipart/report; report-type=delivery-status
 *     text/plain                  what happened, for a human
 *     message/delivery-status     Reporting-MTA, Arrival-Date, and per
 *                                 recipient Final-Recipient, Original-
 *                                 Recipient, Action, Status, Remote-MTA,
 *                                 Diagnostic-Code, Last-Attempt-Date
 *     text/rfc822-headers         the original header (RET=HDRS, default)
 *     or message/rfc822           the whole original (RET=FULL)
 *
 * From: MAILER-DAEMON@<hostname>, To: the envelope sender, Auto-Submitted:
 * auto-replied (RFC 3834). Lines end in CRLF, as in the spool.
 */
#ifndef SLUICE_DLV_DSN_H
#define SLUICE_DLV_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "envelope.h"

enum dlv_dsn_kind {
    DLV_DSN_FAILURE, /* some recipients failed (others may be listed as delivered) */
    DLV_DSN_DELAY,   /* a delay warning: still being retried */
    DLV_DSN_SUCCESS, /* only successes (NOTIFY=SUCCESS) */
};

typedef struct dlv_dsn_rcpt {
    const env_rcpt *r;  /* addr, orcpt, dsn_status, last_reply, relay, last_attempt */
    const char *action; /* "failed", "delayed", "delivered", "expanded", "relayed" */
} dlv_dsn_rcpt;

typedef struct dlv_dsn_params {
    enum dlv_dsn_kind kind;
    const envelope *e;    /* the original: id, arrival, envid, sender, ret, smtputf8 */
    const char *hostname; /* Reporting-MTA and MAILER-DAEMON's domain */
    const char *dsn_id;   /* the new message's queue id (Message-ID, boundary) */
    int64_t now_us;
    int64_t retry_until_us; /* DLV_DSN_DELAY: Will-Retry-Until; 0 = omitted */
    /* The original message (CRLF lines) or at least its header; whole_ok:
     * all of it is here (RET=FULL may be honoured). */
    const char *orig;
    size_t orig_len;
    bool whole_ok;
} dlv_dsn_params;

/*
 * Appends the DSN message to out. Returns 0, -EINVAL (no recipients, no
 * sender to send to), or -ENOMEM / -ENOBUFS.
 */
int dlv_dsn_build(const dlv_dsn_params *p, const dlv_dsn_rcpt *rcpts, size_t n, sbuf *out);

/*
 * Length of the header of a message (CRLF lines): up to and including the
 * empty line, or all of len when there is none.
 */
size_t dlv_dsn_header_len(const char *msg, size_t len);

/*
 * Decodes RFC 3461 xtext ("+XX" escapes) into out (NUL-terminated). A bad
 * escape or a result with control characters gives -EINVAL.
 */
int dlv_xtext_decode(const char *s, char *out, size_t outsz);

/* RFC 5322 date-time ("Tue, 01 Dec 2026 10:00:00 +0000") of microseconds. */
void dlv_rfc5322_date(int64_t us, char *out, size_t outsz);

/* Whether the DSN for a recipient with these NOTIFY bits is wanted. */
bool dlv_notify_wants_failure(unsigned notify);
bool dlv_notify_wants_success(unsigned notify);
/* Delay warnings: only with DELAY given, or with NOTIFY absent when
 * delay_warning is on (RFC 3461 4.1 leaves that to the MTA). */
bool dlv_notify_wants_delay(unsigned notify);

#endif
