/*
 * sender_login.c - whether an authenticated login may use an envelope sender
 * (see sender_login.h).
 *
 * Everything is decided from the maps already loaded for delivery, so the
 * rule needs no configuration for the common case: a user may send as
 * themself, as the aliases that deliver to them and as the other names of
 * their mailbox. sender_login_map is for everything else (shared role
 * addresses, whole domains for an administrator).
 */
#include "sluice/sender_login.h"

#include <string.h>
#include <strings.h>

/* Domain part after the last '@' (a quoted local part may hold '@'). */
static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : NULL;
}

/*
 * Whether a and b (a_len bytes of a; b NUL-terminated) name the same address.
 * Local part exactly and domain without case is RFC 5321 2.4. Spellings that
 * differ only in the case of the local part count as the same too when the
 * maps cannot tell them apart (map lookups ignore case as a fallback, so
 * such spellings reach the same mailbox anyway).
 */
static bool same_address(const char *a, size_t a_len, const char *b, const map *mailboxes,
                         const map *aliases)
{
    size_t b_len = strlen(b);
    if (a_len != b_len || a_len == 0)
        return false;
    if (strncasecmp(a, b, a_len) != 0)
        return false;
    const char *at = memrchr(a, '@', a_len);
    size_t local = at ? (size_t)(at - a) : a_len;
    if (memcmp(a, b, local) == 0)
        return true;
    return map_lookup(mailboxes, a, a_len) == map_lookup(mailboxes, b, b_len) &&
           map_lookup(aliases, a, a_len) == map_lookup(aliases, b, b_len);
}

/* Maildir paths equal, ignoring trailing '/'. */
static bool same_maildir(const char *x, const char *y)
{
    size_t xl = strlen(x), yl = strlen(y);
    while (xl > 1 && x[xl - 1] == '/')
        xl--;
    while (yl > 1 && y[yl - 1] == '/')
        yl--;
    return xl == yl && memcmp(x, y, xl) == 0;
}

/* Whether addr (len bytes) is a mailbox with the same maildir as the login's. */
static bool shares_mailbox(const char *addr, size_t len, const char *login_maildir,
                           const map *mailboxes)
{
    if (!login_maildir)
        return false;
    const char *md = map_lookup(mailboxes, addr, len);
    return md && same_maildir(md, login_maildir);
}

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t';
}

/* Calls match on each item of a comma/space separated list until it says yes. */
typedef bool (*item_fn)(const char *item, size_t len, const void *ctx);

static bool any_item(const char *list, item_fn match, const void *ctx)
{
    const char *p = list;
    while (p && *p) {
        while (*p && is_sep(*p))
            p++;
        const char *s = p;
        while (*p && !is_sep(*p))
            p++;
        if (p > s && match(s, (size_t)(p - s), ctx))
            return true;
    }
    return false;
}

struct ctx {
    const char *login, *sender, *login_maildir;
    const map *mailboxes, *aliases;
};

/* Rule 2: an alias target that is the login or shares its mailbox. */
static bool target_is_login(const char *item, size_t len, const void *vctx)
{
    const struct ctx *c = vctx;
    return same_address(item, len, c->login, c->mailboxes, c->aliases) ||
           shares_mailbox(item, len, c->login_maildir, c->mailboxes);
}

/* Rule 4: "@domain" or an address equal to the sender. */
static bool item_allows_sender(const char *item, size_t len, const void *vctx)
{
    const struct ctx *c = vctx;
    if (item[0] == '@') {
        const char *d = domain_of(c->sender);
        return d && len > 1 && strlen(d) == len - 1 && strncasecmp(d, item + 1, len - 1) == 0;
    }
    return same_address(item, len, c->sender, c->mailboxes, c->aliases);
}

bool sender_login_allowed(const char *login, const char *sender, const map *mailboxes,
                          const map *aliases, const map *sender_login_map)
{
    if (!sender || sender[0] == '\0' || strcmp(sender, "<>") == 0)
        return true;
    if (!login || login[0] == '\0')
        return false;

    size_t slen = strlen(sender), llen = strlen(login);
    struct ctx c = {
        .login = login,
        .sender = sender,
        .login_maildir = map_lookup(mailboxes, login, llen),
        .mailboxes = mailboxes,
        .aliases = aliases,
    };

    /* 1: the login itself. */
    if (same_address(sender, slen, login, mailboxes, aliases))
        return true;
    /* 2: an alias that delivers to the login. */
    const char *targets = map_lookup(aliases, sender, slen);
    if (targets && any_item(targets, target_is_login, &c))
        return true;
    /* 3: another name of the login's mailbox. */
    if (shares_mailbox(sender, slen, c.login_maildir, mailboxes))
        return true;
    /* 4: what the administrator allowed explicitly. */
    const char *allowed = map_lookup(sender_login_map, login, llen);
    return allowed && any_item(allowed, item_allows_sender, &c);
}
