/*
 * smtp_policy.c - recipient and relay decisions (see smtp_policy.h).
 *
 * The forms that opened relays in older MTAs (user%other@local,
 * "user@other"@local, bang paths, source routes) need no special case here:
 * the parser has already dropped source routes, and every other form is
 * either a local address that must exist verbatim in a map, or a remote
 * domain that needs relay permission. Nothing here reinterprets '%' or '!'.
 */
#include "sluice/smtp_policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_postmaster(const char *local, size_t len)
{
    return len == 10 && strncasecmp(local, "postmaster", 10) == 0;
}

enum rcpt_verdict smtp_policy_rcpt(const sluice_config *cfg, const map *mailboxes,
                                   const map *aliases, smtp_path *to, bool may_relay)
{
    if (to->at == to->len) {
        /* RFC 5321 4.5.1: "postmaster" without a domain must be accepted. */
        if (cfg->nlocal_domains == 0)
            return RCPT_REJECT_UNKNOWN;
        int n = snprintf(to->addr, sizeof(to->addr), "postmaster@%s", cfg->local_domains[0]);
        if (n < 0 || (size_t)n >= sizeof(to->addr))
            return RCPT_REJECT_UNKNOWN;
        to->at = 10;
        to->len = (size_t)n;
        return RCPT_ACCEPT_LOCAL;
    }

    const char *domain = to->addr + to->at + 1;
    size_t dlen = to->len - to->at - 1;
    if (to->ip_literal || !config_is_local_domain(cfg, domain, dlen))
        return may_relay ? RCPT_ACCEPT_RELAY : RCPT_REJECT_RELAY;

    if (map_lookup(aliases, to->addr, to->len) || map_lookup(mailboxes, to->addr, to->len))
        return RCPT_ACCEPT_LOCAL;
    /* RFC 5321 4.5.1: postmaster@ every local domain is accepted. */
    if (is_postmaster(to->addr, to->at))
        return RCPT_ACCEPT_LOCAL;
    return RCPT_REJECT_UNKNOWN;
}
