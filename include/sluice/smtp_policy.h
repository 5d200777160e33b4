/*
 * smtp_policy.h - who may send what to whom (pure decisions, no I/O).
 *
 * Relaying is refused unless the client may relay (trusted network or,
 * later, authenticated). Recipients in local domains must exist in the
 * mailbox or alias map at RCPT time, so that unknown users are refused in
 * the SMTP dialogue instead of bounced later (no backscatter).
 */
#ifndef SLUICE_SMTP_POLICY_H
#define SLUICE_SMTP_POLICY_H

#include <stdbool.h>

#include "config.h"
#include "map.h"
#include "smtp_parse.h"

enum rcpt_verdict {
    RCPT_ACCEPT_LOCAL,
    RCPT_ACCEPT_RELAY,
    RCPT_REJECT_UNKNOWN, /* 550 5.1.1 */
    RCPT_REJECT_RELAY,   /* 554 5.7.1 */
};

/*
 * Decides for one recipient. to->addr may be rewritten in place: the bare
 * "postmaster" becomes "postmaster@<first local domain>".
 */
enum rcpt_verdict smtp_policy_rcpt(const sluice_config *cfg, const map *mailboxes,
                                   const map *aliases, smtp_path *to, bool may_relay);

#endif
