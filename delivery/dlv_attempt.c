/*
 * dlv_attempt.c - the first half of an attempt, on the thread pool: take
 * the message's lock, read its envelope, and turn every due recipient
 * into a delivery task (a Maildir write, or a place in a remote request
 * per next hop), an immediate outcome (unknown mailbox, alias loop), or
 * an alias expansion.
 *
 * Alias expansion is written to the envelope before anything is
 * delivered: the alias becomes final ("expanded") and its targets become
 * recipients of their own, with the alias as ORCPT, so each has its own
 * state, retries and DSN line, and a retry never expands twice (the
 * envelope stores what was requested, as reference/USERS.md asks, and the
 * targets are re-resolved at delivery time). Targets already among the
 * recipients are not added again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/dlv_core.h"
#include "sluice/dlv_local.h"
#include "sluice/log.h"
#include "sluice/smtp_parse.h"

#define RETRY_BUSY_MS 2000
#define RETRY_ERROR_MS (60 * 1000)

static int ensure_res(dlv_msg *m, size_t n)
{
    if (n <= m->nres)
        return 0;
    dlv_result *v = realloc(m->res, n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    memset(v + m->nres, 0, (n - m->nres) * sizeof(*v));
    m->res = v;
    m->nres = n;
    return 0;
}

/* "rfc822;" + xtext of addr (RFC 3461 4: '+', '=', controls, space, 8-bit as +XX). */
static char *orcpt_for(const char *addr)
{
    size_t n = strlen(addr);
    char *out = malloc(7 + n * 3 + 1), *o;
    if (!out)
        return NULL;
    memcpy(out, "rfc822;", 7);
    o = out + 7;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '+' || *p == '=')
            o += sprintf(o, "+%02X", *p);
        else
            *o++ = (char)*p;
    }
    *o = '\0';
    return out;
}

static bool has_rcpt(const envelope *e, const char *addr)
{
    for (size_t i = 0; i < e->nrcpt; i++)
        if (dlv_addr_equal(e->rcpts[i].addr, addr))
            return true;
    return false;
}

/* Appends target as a new recipient that came from rcpt i. */
static int add_child(envelope *e, size_t i, const char *target, unsigned notify)
{
    if (e->nrcpt >= ENVELOPE_MAX_RCPTS)
        return -E2BIG;
    char *orcpt = e->rcpts[i].orcpt ? strdup(e->rcpts[i].orcpt) : orcpt_for(e->rcpts[i].addr);
    if (!orcpt)
        return -ENOMEM;
    int rc = envelope_add_rcpt(e, target, orcpt, notify);
    free(orcpt);
    return rc;
}

static int set_res(dlv_msg *m, size_t i, int code, const char *status, const char *reply,
                   const char *relay)
{
    int rc = ensure_res(m, m->e.nrcpt);
    return rc ? rc : dlv_result_set(&m->res[i], code, status, reply, relay, "none");
}

/* What to do with local recipient i: a Maildir write (res[i].maildir
 * set), or an outcome decided here. 0, or -ENOMEM. */
static int classify_local(dlv_msg *m, size_t i, bool *changed)
{
    const sluice_config *cfg = m->r->cfg;
    envelope *e = &m->e;
    char reply[DLV_REPLY_MAX + 1];
    dlv_expansion x;

    int rc = dlv_alias_expand(m->maps->aliases, e->rcpts[i].addr, &x);
    if (rc == -ELOOP) {
        log_warn("%s: <%s>: %s", m->id, e->rcpts[i].addr, x.reason);
        snprintf(reply, sizeof(reply), "550 %s %s", x.status, x.reason);
        return set_res(m, i, 550, x.status, reply, "local");
    }
    if (rc < 0)
        return rc;
    if (rc == 1) {
        /*
         * RFC 3461 6.2.7: forwarding to one address passes the DSN request
         * on (and the alias itself reports nothing); a fan-out reports
         * "expanded" for the alias and asks no success DSN of the targets.
         */
        unsigned notify = e->rcpts[i].notify;
        if (x.nleaves == 1 && !x.self) {
            e->rcpts[i].notify &= ~SMTP_NOTIFY_SUCCESS;
        } else if (notify & SMTP_NOTIFY_SUCCESS) {
            notify &= ~SMTP_NOTIFY_SUCCESS;
            if (notify == 0)
                notify = SMTP_NOTIFY_NEVER; /* SUCCESS alone: nothing else wanted */
        }
        size_t added = 0;
        for (size_t k = 0; k < x.nleaves && rc >= 0; k++) {
            if (dlv_addr_equal(x.leaves[k], e->rcpts[i].addr) || has_rcpt(e, x.leaves[k]))
                continue;
            if ((rc = add_child(e, i, x.leaves[k], notify)) == 0)
                added++;
        }
        bool self = x.self;
        size_t total = x.nleaves;
        dlv_expansion_free(&x);
        if (rc == -E2BIG)
            return set_res(m, i, 550, "5.3.5", "550 5.3.5 alias expands to too many recipients",
                           "local");
        if (rc < 0)
            return rc;
        *changed = *changed || added > 0;
        if (!self) {
            snprintf(reply, sizeof(reply), "250 2.0.0 alias expanded to %zu recipient%s", total,
                     total == 1 ? "" : "s");
            if ((rc = set_res(m, i, 250, "2.0.0", reply, "alias")) == 0)
                m->res[i].expanded = true;
            return rc;
        }
    }
    /* Not an alias (or one that also keeps a copy): its mailbox. */
    bool nomem;
    const char *addr = e->rcpts[i].addr;
    if ((rc = ensure_res(m, e->nrcpt)) != 0)
        return rc;
    m->res[i].maildir = dlv_mailbox_path(cfg, m->maps->mailboxes, addr, &nomem);
    if (m->res[i].maildir)
        return 0;
    if (nomem)
        return -ENOMEM;
    if (dlv_is_postmaster(addr) && cfg->nlocal_domains > 0) {
        /* smtpd takes postmaster@ every local domain (RFC 5321 4.5.1):
         * without entries of its own it goes to the first domain's. */
        char first[300];
        snprintf(first, sizeof(first), "postmaster@%s", cfg->local_domains[0]);
        if (!dlv_addr_equal(first, addr)) {
            if (!has_rcpt(e, first)) {
                if ((rc = add_child(e, i, first, e->rcpts[i].notify)) < 0)
                    return rc;
                e->rcpts[i].notify &= ~SMTP_NOTIFY_SUCCESS; /* a forward, as above */
                *changed = true;
            }
            if ((rc = set_res(m, i, 250, "2.0.0", "250 2.0.0 postmaster alias", "alias")) == 0)
                m->res[i].expanded = true;
            return rc;
        }
    }
    snprintf(reply, sizeof(reply), "550 5.1.1 <%s>: no such mailbox here", addr);
    return set_res(m, i, 550, "5.1.1", reply, "local");
}

static bool due(const dlv_msg *m, const env_rcpt *r, int64_t now_s)
{
    if (r->state == RCPT_DELIVERED || r->state == RCPT_FAILED)
        return false;
    return r->state == RCPT_PENDING || r->next_attempt <= now_s || (m->flags & DLV_SCHED_FORCE);
}

/* The remote task for nexthop, made on first use. */
static dlv_task *remote_task(dlv_msg *m, const char *nexthop, size_t cap)
{
    for (size_t k = 0; k < m->ntasks; k++)
        if (!m->tasks[k].local && strcmp(m->tasks[k].dest, nexthop) == 0)
            return &m->tasks[k];
    dlv_task *t = &m->tasks[m->ntasks];
    memset(t, 0, sizeof(*t));
    t->req.fd = -1;
    if (!(t->dest = strdup(nexthop)) || !(t->idx = calloc(cap, sizeof(*t->idx))) ||
        !(t->req.rcpts = calloc(cap, sizeof(*t->req.rcpts)))) {
        free(t->dest);
        free(t->idx);
        return NULL;
    }
    m->ntasks++;
    return t;
}

/* Builds the tasks of the due recipients (after expansion). */
static int build_tasks(dlv_msg *m, int64_t now_s)
{
    envelope *e = &m->e;
    const sluice_config *cfg = m->r->cfg;
    if (!(m->tasks = calloc(e->nrcpt ? e->nrcpt : 1, sizeof(*m->tasks))))
        return -ENOMEM;
    for (size_t i = 0; i < e->nrcpt; i++) {
        if (m->res[i].tried || !due(m, &e->rcpts[i], now_s))
            continue;
        if (m->res[i].maildir) {
            dlv_task *t = &m->tasks[m->ntasks++];
            t->local = true;
            t->rcpt = i;
            t->maildir = m->res[i].maildir;
            m->res[i].maildir = NULL;
            snprintf(t->key, sizeof(t->key), "%s_%zu", m->id, i);
            /* Each mailbox is a destination of its own, as each recipient is for
             * Postfix's local(8): one busy mailbox cannot hold every local slot. */
            if (asprintf(&t->dest, "local:%s", t->maildir) < 0) {
                t->dest = NULL;
                return -ENOMEM;
            }
            continue;
        }
        const char *domain = dlv_addr_domain(e->rcpts[i].addr);
        dlv_task *t = remote_task(m, dlv_nexthop(cfg, m->maps->transport, domain), e->nrcpt);
        if (!t)
            return -ENOMEM;
        dlv_remote_req *q = &t->req;
        t->idx[q->nrcpt] = i;
        dlv_remote_rcpt *rr = &q->rcpts[q->nrcpt++];
        rr->addr = e->rcpts[i].addr;
        rr->orcpt = e->rcpts[i].orcpt;
        rr->notify = e->rcpts[i].notify;
        if (q->nrcpt == 1)
            q->domain = domain;
        else if (q->domain && strcasecmp(q->domain, domain) != 0)
            q->domain = NULL;
    }
    for (size_t k = 0; k < m->ntasks; k++) {
        dlv_task *t = &m->tasks[k];
        if (t->local)
            continue;
        dlv_remote_req *q = &t->req;
        q->id = m->id;
        q->nexthop = t->dest;
        q->sender = e->sender;
        q->envid = e->envid;
        q->ret = e->ret;
        q->body = e->body;
        q->smtputf8 = e->smtputf8;
        q->size = e->size;
        /* Its own descriptor: a transport may read() with the offset. */
        int rc = spool_fs_open_message(m->r->fs, m->id, &q->fd);
        if (rc)
            return rc;
    }
    return 0;
}

static void give_up(dlv_msg *m, int prep, int64_t next_ms)
{
    spool_fs_unlock(m->lockfd);
    m->lockfd = -1;
    m->prep = prep;
    m->next_ms = next_ms;
}

/*
 * Decides each due recipient's way: a local mailbox (res.maildir), an
 * immediate outcome (res.tried), an alias expanded into new recipients
 * (*changed), or remote (neither: build_tasks groups it).
 */
static int classify(dlv_msg *m, int64_t now_s, bool *changed)
{
    envelope *e = &m->e;
    const sluice_config *cfg = m->r->cfg;
    int rc = ensure_res(m, e->nrcpt);
    /* e->nrcpt grows while we go: targets are classified in the same round. */
    for (size_t i = 0; rc == 0 && i < e->nrcpt; i++) {
        if (!due(m, &e->rcpts[i], now_s))
            continue;
        const char *domain = dlv_addr_domain(e->rcpts[i].addr);
        if (!*domain)
            rc = set_res(m, i, 550, "5.1.3", "550 5.1.3 bad recipient address syntax", "local");
        else if (config_is_local_domain(cfg, domain, strlen(domain)))
            rc = classify_local(m, i, changed);
        /* else remote: build_tasks groups it */
        if (rc == 0)
            rc = ensure_res(m, e->nrcpt);
    }
    return rc;
}

/*
 * The attempt of a handed-over record: the envelope from the record, and
 * only the simple case, which is nearly all mail: every due recipient a
 * local mailbox. Anything else is answered "keep" before a byte is written
 * (sluice-smtpd puts it into queue/ and the usual attempt follows): remote
 * recipients read the message from queue/, an alias expansion must be
 * stored before its targets are delivered, and an immediate outcome (an
 * unknown mailbox) is recorded there.
 */
void dlv_attempt_prepare_journal(dlv_msg *m)
{
    envelope *e = &m->e;
    const dlv_jrec *j = m->jrec;
    char err[128];
    m->prep = DLV_PREP_KEEP;
    m->next_ms = -1; /* forgotten here: the "late" announcement brings it back */
    int rc = envelope_parse(j->data, j->env_len, e, err, sizeof(err));
    if (rc != 0 || strcmp(e->id, m->id) != 0 || e->size != j->msg_len) {
        log_warn("%s: handed-over record not usable (%s); left to queue/", m->id,
                 rc == -ENOMEM ? "out of memory"
                 : rc          ? err
                               : "another message");
        return;
    }
    if (e->hold)
        return;
    m->now_us = dlv_now_us();
    int64_t now_s = m->now_us / 1000000;
    bool changed = false;
    if (classify(m, now_s, &changed) != 0 || changed)
        return;
    for (size_t i = 0; i < e->nrcpt; i++)
        if (due(m, &e->rcpts[i], now_s) && (m->res[i].tried || !m->res[i].maildir))
            return;
    if (build_tasks(m, now_s) != 0)
        return;
    m->prep = DLV_PREP_GO;
}

void dlv_attempt_prepare(dlv_msg *m)
{
    spool_fs *fs = m->r->fs;
    envelope *e = &m->e;
    int64_t now_ms = dlv_now_ms();

    int rc = spool_fs_lock(fs, m->id, false, &m->lockfd);
    if (rc == -EWOULDBLOCK) {
        m->prep = DLV_PREP_BUSY; /* the CLI is changing it; soon again */
        m->next_ms = now_ms + RETRY_BUSY_MS;
        return;
    }
    if (rc) {
        if (rc != -ENOENT)
            log_err("%s: cannot lock: %s", m->id, strerror(-rc));
        m->prep = rc == -ENOENT ? DLV_PREP_GONE : DLV_PREP_ERROR;
        m->next_ms = rc == -ENOENT ? -1 : now_ms + RETRY_ERROR_MS;
        return;
    }
    rc = spool_fs_load_locked(fs, m->id, e);
    if (rc == -ENOENT || rc == -EBADMSG) {
        /* -EBADMSG: the spool moved it to corrupt/ and said why. */
        if (rc == -EBADMSG)
            log_warn("%s: unreadable envelope quarantined; skipped", m->id);
        give_up(m, DLV_PREP_GONE, -1);
        return;
    }
    if (rc) {
        log_err("%s: cannot read the envelope: %s", m->id, strerror(-rc));
        give_up(m, DLV_PREP_ERROR, now_ms + RETRY_ERROR_MS);
        return;
    }
    if (e->hold) {
        give_up(m, DLV_PREP_HELD, -1); /* `queue release` asks again */
        return;
    }
    /*
     * The data must still be what was acknowledged: size and CRC-32 against
     * the envelope. A damaged file goes to corrupt/ (logged by the spool),
     * never to a mailbox.
     */
    rc = spool_fs_verify_message_fd(fs, e, m->lockfd);
    if (rc == -EBADMSG || rc == -ENOENT) {
        log_err("%s: message file damaged or missing; quarantined, not delivered", m->id);
        give_up(m, DLV_PREP_GONE, -1);
        return;
    }
    if (rc) {
        log_err("%s: cannot read the message: %s", m->id, strerror(-rc));
        give_up(m, DLV_PREP_ERROR, now_ms + RETRY_ERROR_MS);
        return;
    }
    m->now_us = dlv_now_us();
    int64_t now_s = m->now_us / 1000000;
    bool changed = false;
    rc = classify(m, now_s, &changed);
    const char *what = "out of memory";
    /* The expansion is on disk before any target is delivered: delivery
     * keys (id_index) must name the same recipient after a crash. */
    if (rc == 0 && changed && (rc = spool_fs_store(fs, e)) != 0)
        what = "cannot record the alias expansion";
    if (rc == 0 && (rc = build_tasks(m, now_s)) != 0 && rc != -ENOMEM)
        what = "cannot open the message";
    if (rc) {
        log_err("%s: %s: %s", m->id, what, strerror(-rc));
        for (size_t k = 0; k < m->ntasks; k++)
            if (!m->tasks[k].local && m->tasks[k].req.fd >= 0) {
                spool_fs_unlock(m->tasks[k].req.fd); /* a plain close */
                m->tasks[k].req.fd = -1;
            }
        give_up(m, DLV_PREP_ERROR, now_ms + RETRY_ERROR_MS);
        return;
    }
    m->prep = DLV_PREP_GO;
}
