/*
 * sender_login.h - on submission, the envelope sender must belong to the
 * login (RFC 6409 section 6.1 lets a submission server enforce this; Postfix
 * calls it reject_sender_login_mismatch).
 *
 * A sender belongs to a login when any of these holds:
 *  1. it is the login itself (domain compared without case; the local part
 *     too, unless the mailboxes or aliases map tells the two spellings apart);
 *  2. it is a key of the aliases map whose targets (comma or space separated)
 *     include the login, or a mailbox of the login (rule 3) - one level only:
 *     an alias of an alias needs sender_login_map;
 *  3. it is a key of the mailboxes map with the same maildir as the login's
 *     own mailboxes entry (trailing '/' ignored);
 *  4. sender_login_map has an entry for the login listing the sender, or
 *     "@domain" for every address of that domain (comma or space separated).
 * The null sender "<>" is always allowed: authenticated clients send bounces
 * and read receipts with it.
 */
#ifndef SLUICE_SENDER_LOGIN_H
#define SLUICE_SENDER_LOGIN_H

#include <stdbool.h>

#include "map.h"

/*
 * login: the SASL identity (smtp_auth_result.user). sender: the MAIL FROM
 * address without angle brackets; NULL, "" or "<>" for the null sender. Any
 * map may be NULL (no entries). Pure: no I/O, safe on the loop.
 */
bool sender_login_allowed(const char *login, const char *sender, const map *mailboxes,
                          const map *aliases, const map *sender_login_map);

#endif
