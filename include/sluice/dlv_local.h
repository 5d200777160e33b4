/*
 * dlv_local.h - local recipients: alias expansion, the mailbox map, and
 * the outcome of a Maildir write (pure code except dlv_local_deliver,
 * which blocks and runs on the thread pool).
 *
 * Aliases (docs/delivery.md): a value is a list of targets separated by
 * commas; a target is "user@domain", "<user@domain>" or a bare "user" (in
 * the alias's own domain). Targets may be remote. An alias that names
 * itself among its targets also delivers to its own mailbox (Postfix's
 * rule). Any other return to an address already on the expansion path is
 * a loop, and so is nesting deeper than DLV_ALIAS_DEPTH_MAX: the recipient
 * fails with 5.4.6. Leaves are de-duplicated (case-insensitively).
 */
#ifndef SLUICE_DLV_LOCAL_H
#define SLUICE_DLV_LOCAL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "map.h"
#include "maildir.h"

#define DLV_ALIAS_DEPTH_MAX 20
#define DLV_ALIAS_TARGETS_MAX 1000

typedef struct dlv_expansion {
    char **leaves; /* final addresses, in order of first appearance */
    size_t nleaves;
    bool self;        /* the address itself is among the leaves (its own mailbox) */
    char status[8];   /* on failure: "5.4.6" */
    char reason[160]; /* on failure: "alias loop: a@x -> b@x -> a@x" */
} dlv_expansion;

/*
 * Expands addr through aliases. Returns 0 when addr is not an alias (or
 * only names itself): deliver to its mailbox; 1 with out->leaves filled;
 * -ELOOP with out->status and out->reason set (loop, too deep, too many
 * targets); -ENOMEM. Free with dlv_expansion_free either way.
 */
int dlv_alias_expand(const map *aliases, const char *addr, dlv_expansion *out);
void dlv_expansion_free(dlv_expansion *x);

/*
 * The Maildir of a local address: the mailboxes map value, resolved
 * against the config folder when relative (config_abs_path), trailing
 * slashes dropped; "postmaster@..." without an entry falls back to the
 * bare "postmaster" key. NULL when unknown or out of memory (*nomem tells
 * which). Caller frees.
 */
char *dlv_mailbox_path(const sluice_config *cfg, const map *mailboxes, const char *addr,
                       bool *nomem);

/* Whether addr's local part is "postmaster" (any case). */
bool dlv_is_postmaster(const char *addr);

/* The domain part of addr (after the last '@'), or "" when there is none. */
const char *dlv_addr_domain(const char *addr);

/* Whether two addresses are the same (case-insensitive everywhere). */
bool dlv_addr_equal(const char *a, const char *b);

/*
 * A reply line for a failed Maildir write (negative errno): always
 * temporary (an admin fixes permissions or space): "452 4.2.2 ..." for a
 * quota, "452 4.3.1 ..." for a full disk, "451 4.3.0 ..." otherwise.
 * status gets "X.Y.Z".
 */
void dlv_local_error_reply(int err, char *reply, size_t replysz, char status[8]);

/*
 * One Maildir delivery of d, blocking (thread pool). With check_dup it
 * first looks for an earlier copy with d's key (a crash after the write,
 * before the envelope update: a listing of new/ and cur/); the caller
 * passes false only when no earlier attempt can have written one. Returns
 * what maildir_deliver does (0 delivered, 1 staged with its name in name,
 * or a negative errno); 0 with *dup set when the copy was already there.
 */
int dlv_local_deliver(const maildir_delivery *d, bool check_dup, bool *dup, char *name,
                      size_t namesz);

#endif
