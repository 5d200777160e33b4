/*
 * dlv_local.c - local recipients: alias expansion (depth-first, with the
 * path kept for loop detection), the mailbox map, and the Maildir write.
 * See dlv_local.h.
 *
 * Loops are found on the expansion path rather than by a hop counter:
 * "a -> b -> a" is reported with the names involved, which is what the
 * admin needs to fix the map. A target that is already a leaf is dropped,
 * so "team: a, b" plus "all: team, a" gives a once (as Postfix and Exim
 * do; see reference/FEATURES.md).
 */
#include "sluice/dlv_local.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/log.h"
#include "sluice/maildir.h"

#define ADDR_MAX 320

const char *dlv_addr_domain(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

bool dlv_addr_equal(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

void dlv_expansion_free(dlv_expansion *x)
{
    for (size_t i = 0; i < x->nleaves; i++)
        free(x->leaves[i]);
    free(x->leaves);
    x->leaves = NULL;
    x->nleaves = 0;
}

struct expand_ctx {
    const map *aliases;
    dlv_expansion *out;
    size_t cap;
    const char *path[DLV_ALIAS_DEPTH_MAX + 1];
    size_t depth;
};

static int add_leaf(struct expand_ctx *c, const char *addr)
{
    dlv_expansion *x = c->out;
    for (size_t i = 0; i < x->nleaves; i++)
        if (dlv_addr_equal(x->leaves[i], addr))
            return 0;
    if (x->nleaves >= DLV_ALIAS_TARGETS_MAX) {
        snprintf(x->status, sizeof(x->status), "5.3.5");
        snprintf(x->reason, sizeof(x->reason), "alias %s expands to more than %d recipients",
                 c->path[0], DLV_ALIAS_TARGETS_MAX);
        return -ELOOP;
    }
    if (x->nleaves == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 8;
        char **v = realloc(x->leaves, ncap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        x->leaves = v;
        c->cap = ncap;
    }
    if (!(x->leaves[x->nleaves] = strdup(addr)))
        return -ENOMEM;
    x->nleaves++;
    return 0;
}

/*
 * Cuts the next target off *p: trims blanks, drops <>, completes a bare
 * local part with domain. Returns 1 with out set, 0 at the end, -EINVAL
 * for a target we do not take (|command, /file, :include:, bad syntax).
 */
static int next_target(const char **p, const char *domain, char *out, size_t outsz)
{
    const char *s = *p;
    while (*s == ',' || isspace((unsigned char)*s))
        s++;
    if (!*s) {
        *p = s;
        return 0;
    }
    const char *end = strchr(s, ',');
    if (!end)
        end = s + strlen(s);
    *p = end;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    if (end - s >= 2 && *s == '<' && end[-1] == '>') {
        s++;
        end--;
    }
    size_t n = (size_t)(end - s);
    if (n == 0 || *s == '|' || *s == '/' || *s == ':' || *s == '"')
        return -EINVAL;
    for (const char *q = s; q < end; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f || *q == '<' || *q == '>')
            return -EINVAL;
    const char *at = memchr(s, '@', n);
    int len;
    if (!at)
        len = snprintf(out, outsz, "%.*s@%s", (int)n, s, domain);
    else if (at == s || at == end - 1)
        return -EINVAL;
    else
        len = snprintf(out, outsz, "%.*s", (int)n, s);
    if (len < 0 || (size_t)len >= outsz || !*domain)
        return -EINVAL;
    return 1;
}

static int loop_reason(struct expand_ctx *c, const char *again, const char *why)
{
    dlv_expansion *x = c->out;
    size_t off = 0;
    snprintf(x->status, sizeof(x->status), "5.4.6");
    int n = snprintf(x->reason, sizeof(x->reason), "%s: ", why);
    off = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < c->depth && off < sizeof(x->reason); i++) {
        n = snprintf(x->reason + off, sizeof(x->reason) - off, "%s -> ", c->path[i]);
        off += n > 0 ? (size_t)n : 0;
    }
    if (off < sizeof(x->reason))
        snprintf(x->reason + off, sizeof(x->reason) - off, "%s", again);
    return -ELOOP;
}

static int expand(struct expand_ctx *c, const char *addr)
{
    const char *value = c->aliases ? map_lookup(c->aliases, addr, strlen(addr)) : NULL;
    if (!value)
        return add_leaf(c, addr);
    if (c->depth >= DLV_ALIAS_DEPTH_MAX)
        return loop_reason(c, addr, "alias nesting too deep");
    c->path[c->depth++] = addr;
    const char *p = value;
    char target[ADDR_MAX + 1];
    int rc = 0, n;
    while (rc == 0 && (n = next_target(&p, dlv_addr_domain(addr), target, sizeof(target))) != 0) {
        if (n < 0) {
            log_warn("alias %s: ignoring a target that is not an address", addr);
            continue;
        }
        if (dlv_addr_equal(target, addr)) {
            rc = add_leaf(c, addr); /* names itself: its own mailbox */
            continue;
        }
        for (size_t i = 0; i < c->depth; i++)
            if (dlv_addr_equal(target, c->path[i]))
                return loop_reason(c, target, "alias loop");
        /* target lives in this frame's stack; leaves copy what they keep. */
        char *copy = strdup(target);
        if (!copy)
            return -ENOMEM;
        rc = expand(c, copy);
        free(copy);
    }
    c->depth--;
    return rc;
}

int dlv_alias_expand(const map *aliases, const char *addr, dlv_expansion *out)
{
    memset(out, 0, sizeof(*out));
    if (!aliases || !map_lookup(aliases, addr, strlen(addr)))
        return 0;
    struct expand_ctx c = {.aliases = aliases, .out = out};
    int rc = expand(&c, addr);
    if (rc < 0) {
        dlv_expansion_free(out);
        return rc;
    }
    out->self = false;
    for (size_t i = 0; i < out->nleaves; i++)
        if (dlv_addr_equal(out->leaves[i], addr))
            out->self = true;
    if (out->nleaves == 0) {
        snprintf(out->status, sizeof(out->status), "5.1.1");
        snprintf(out->reason, sizeof(out->reason), "alias %s has no valid target", addr);
        return -ELOOP;
    }
    if (out->self && out->nleaves == 1) {
        dlv_expansion_free(out);
        out->self = true;
        return 0;
    }
    return 1;
}

bool dlv_is_postmaster(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at && at - addr == 10 && strncasecmp(addr, "postmaster", 10) == 0;
}

static char *resolve(const sluice_config *cfg, const char *value, bool *nomem)
{
    char *path = config_abs_path(cfg, value);
    if (!path) {
        *nomem = true;
        return NULL;
    }
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    return path;
}

char *dlv_mailbox_path(const sluice_config *cfg, const map *mailboxes, const char *addr,
                       bool *nomem)
{
    *nomem = false;
    const char *v = mailboxes ? map_lookup(mailboxes, addr, strlen(addr)) : NULL;
    if (!v && mailboxes && dlv_is_postmaster(addr))
        v = map_lookup(mailboxes, "postmaster", 10);
    return v ? resolve(cfg, v, nomem) : NULL;
}

void dlv_local_error_reply(int err, char *reply, size_t replysz, char status[8])
{
    const char *code = "451", *st = "4.3.0", *what = "cannot write to mailbox";
    if (err == -EDQUOT) {
        code = "452";
        st = "4.2.2";
        what = "mailbox full";
    } else if (err == -ENOSPC) {
        code = "452";
        st = "4.3.1";
        what = "mail system full";
    }
    snprintf(status, 8, "%s", st);
    snprintf(reply, replysz, "%s %s %s: %s", code, st, what, strerror(-err));
}

int dlv_local_deliver(const maildir_delivery *d, bool check_dup, bool *dup, char *name,
                      size_t namesz)
{
    *dup = false;
    int rc = check_dup ? maildir_find_delivered(d->dir, d->key, NULL, 0) : 0;
    if (rc == 1) {
        *dup = true;
        return 0;
    }
    if (rc < 0)
        return rc; /* maildir_deliver would fail the same way */
    return maildir_deliver(d, name, namesz);
}
