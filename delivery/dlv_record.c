/*
 * dlv_record.c - the second half of an attempt, on the thread pool:
 * record every outcome in the envelope, then send the DSNs they call
 * for, then remove the message if nothing is left, then unlock.
 *
 * The order is the whole point (DESIGN.md, "what may never happen"):
 *
 *   1. spool_fs_store   outcomes, attempts, next attempt (dsn-sent still no)
 *   2. spool_fs_inject  the DSN, a message of its own, durable on return
 *   3. spool_fs_remove_unsynced  only when every recipient is final and each DSN
 *                       owed is committed; otherwise store dsn-sent: yes
 *
 * A crash after 1 repeats the DSN decision (a duplicate DSN at worst), a
 * crash after 2 sends that DSN twice; none loses one. A recipient whose
 * DSN is owed keeps dsn-sent: no until the DSN is committed, so a failed
 * inject is retried, and the message stays until it succeeds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/dlv_core.h"
#include "sluice/dlv_dsn.h"
#include "sluice/dlv_local.h"
#include "sluice/log.h"
#include "sluice/queue_id.h"
#include "sluice/smtp_parse.h"

#define RETRY_DSN_MS (60 * 1000)
#define HEADER_READ_MAX (1u << 20) /* more header than this is cut */
#define RET_FULL_MAX (10u << 20)   /* a larger original is returned as headers */

/* Reads the original (whole, or its header) through the lock descriptor. */
static int read_original(dlv_msg *m, bool want_full, sbuf *out, bool *whole)
{
    uint64_t limit = want_full && m->e.size <= RET_FULL_MAX ? m->e.size : HEADER_READ_MAX;
    char buf[65536];
    off_t off = 0;
    *whole = false;
    while ((uint64_t)off < limit) {
        size_t want = sizeof(buf);
        if ((uint64_t)off + want > limit)
            want = (size_t)(limit - (uint64_t)off);
        ssize_t n = pread(m->lockfd, buf, want, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0) {
            *whole = true;
            break;
        }
        int rc = sbuf_append(out, buf, (size_t)n);
        if (rc)
            return rc;
        off += n;
        /* Only the header wanted: stop once its end is in. */
        if (!want_full && dlv_dsn_header_len(out->data, out->len) < out->len)
            break;
    }
    if ((uint64_t)off >= m->e.size)
        *whole = true;
    return 0;
}

/* Builds and commits one DSN to the sender; its id goes to m->dsn_ids. */
static int send_dsn(dlv_msg *m, enum dlv_dsn_kind kind, const dlv_dsn_rcpt *list, size_t n,
                    char newid[QUEUE_ID_LEN + 1])
{
    const envelope *e = &m->e;
    const sluice_config *cfg = m->r->cfg;
    sbuf orig, text;
    bool whole;
    int rc;

    sbuf_init(&orig, 0);
    sbuf_init(&text, 0);
    rc = read_original(m, e->ret == SMTP_RET_FULL && kind != DLV_DSN_DELAY, &orig, &whole);
    queue_id_new(QUEUE_ID_DELIVERY, newid);
    dlv_dsn_params p = {
        .kind = kind,
        .e = e,
        .hostname = cfg->hostname,
        .dsn_id = newid,
        .now_us = dlv_now_us(),
        .retry_until_us = e->arrival_us + (int64_t)cfg->max_queue_lifetime * 1000000,
        .orig = orig.data ? orig.data : "",
        .orig_len = orig.len,
        .whole_ok = whole,
    };
    if (rc == 0)
        rc = dlv_dsn_build(&p, list, n, &text);
    sbuf_free(&orig);

    envelope d;
    envelope_init(&d);
    memcpy(d.id, newid, sizeof(d.id));
    if (rc == 0)
        rc = envelope_set(&d.sender, "");
    if (rc == 0)
        rc = envelope_set(&d.client_addr, "local");
    if (rc == 0)
        rc = envelope_set(&d.proto, "LOCAL");
    if (rc == 0)
        rc = envelope_add_rcpt(&d, e->sender, NULL, SMTP_NOTIFY_NEVER);
    if (rc == 0) {
        bool eight = false;
        for (size_t i = 0; i < text.len && !eight; i++)
            eight = (unsigned char)text.data[i] >= 0x80;
        d.body = eight ? SMTP_BODY_8BITMIME : SMTP_BODY_7BIT;
        for (const char *s = e->sender; *s; s++)
            d.smtputf8 = d.smtputf8 || (unsigned char)*s >= 0x80;
        rc = spool_fs_inject(m->r->fs, &d, text.data, text.len);
    }
    envelope_free(&d);
    sbuf_free(&text);
    if (rc == 0 && m->ndsn < 2)
        memcpy(m->dsn_ids[m->ndsn++], newid, QUEUE_ID_LEN + 1);
    return rc;
}

static const char *dsn_kind_name(enum dlv_dsn_kind k)
{
    return k == DLV_DSN_DELAY     ? "delay notification"
           : k == DLV_DSN_SUCCESS ? "delivery status notification"
                                  : "non-delivery notification";
}

/* Applies this round's outcome of rcpt i. Returns whether it changed. */
static bool apply(dlv_msg *m, size_t i, int64_t now_us)
{
    const sluice_config *cfg = m->r->cfg;
    if (i >= m->nres || !m->res[i].tried)
        return false;
    env_rcpt *r = &m->e.rcpts[i];
    dlv_result *res = &m->res[i];
    int64_t now_s = now_us / 1000000;
    int64_t expiry_us = m->e.arrival_us + (int64_t)cfg->max_queue_lifetime * 1000000;
    /* In whole seconds (next-attempt's unit), rounded up: never early. */
    int64_t expiry = (expiry_us + 999999) / 1000000;
    char reply[DLV_REPLY_MAX + 64];
    const char *word;

    r->attempts++;
    r->last_attempt = now_s;
    snprintf(reply, sizeof(reply), "%s", res->reply ? res->reply : "");
    const char *status = res->status;
    if (res->status[0] == '2') {
        r->state = RCPT_DELIVERED;
        word = res->expanded ? "expanded" : "sent";
    } else if (res->status[0] == '4' && now_us < expiry_us) {
        r->state = RCPT_DEFERRED;
        /* Rounded up to whole seconds: never sooner than the backoff. */
        int64_t wait = dlv_backoff(cfg->retry_initial, cfg->retry_max, r->attempts);
        int64_t next = (now_us + wait * 1000000 + 999999) / 1000000;
        /* The last try falls on the expiry itself, not up to retry_max later. */
        r->next_attempt = next > expiry ? expiry : next;
        word = "deferred";
    } else if (res->status[0] == '4') {
        r->state = RCPT_FAILED;
        snprintf(reply, sizeof(reply), "delivery time expired; last error: %s",
                 res->reply ? res->reply : "");
        status = "4.4.7";
        word = "bounced";
    } else {
        r->state = RCPT_FAILED; /* 5.x.x, or a transport that gave no class */
        word = "bounced";
    }
    if (envelope_set(&r->last_reply, reply) || envelope_set(&r->relay, res->relay) ||
        envelope_set(&r->dsn_status, status))
        log_err("%s: out of memory recording <%s>", m->id, r->addr);
    if (r->state != RCPT_DEFERRED)
        r->next_attempt = 0;
    dlv_log_rcpt(&m->e, r, res, word, dlv_now_us());
    return true;
}

static bool final(const env_rcpt *r)
{
    return r->state == RCPT_DELIVERED || r->state == RCPT_FAILED;
}

/* Every recipient final and every DSN it owed committed: the message may go. */
static bool nothing_left(const envelope *e)
{
    bool done = envelope_all_final(e);
    for (size_t i = 0; done && i < e->nrcpt; i++)
        done = e->rcpts[i].dsn_sent;
    return done;
}

bool dlv_finish_is_removal(const dlv_msg *m)
{
    const envelope *e = &m->e;
    for (size_t i = 0; i < e->nrcpt; i++) {
        const env_rcpt *r = &e->rcpts[i];
        const dlv_result *res = i < m->nres ? &m->res[i] : NULL;
        if (res && res->tried) {
            /* apply() makes a 2xx delivered; a success DSN may be owed. */
            if (res->status[0] != '2' || dlv_notify_wants_success(r->notify))
                return false;
        } else if (!final(r) || !r->dsn_sent) {
            return false;
        }
    }
    return true;
}

/*
 * The end of a handed record's attempt. Nothing is stored: the message was
 * never in queue/. When every recipient is delivered and nothing is owed
 * (no success DSN), it is done: the same log lines as a removal, and
 * sluice-smtpd forgets it on our "done". Otherwise it is answered "keep":
 * sluice-smtpd writes it into queue/, announces it "late", and that
 * attempt finds what this one wrote by its delivery keys and records
 * every outcome the usual way.
 */
static void finish_journal(dlv_msg *m)
{
    m->next_ms = -1;
    if (!dlv_finish_is_removal(m)) {
        log_info("%s: not all delivered from the hand-off; continued from queue/", m->id);
        return;
    }
    /* The lines apply() would log; nothing is recorded, the envelope goes. */
    int64_t now_us = dlv_now_us();
    for (size_t i = 0; i < m->e.nrcpt; i++)
        dlv_log_rcpt(&m->e, &m->e.rcpts[i], &m->res[i], "sent", now_us);
    log_info("%s: removed", m->id);
    m->jdone = true;
}

void dlv_attempt_finish(dlv_msg *m)
{
    if (m->jrec) {
        finish_journal(m);
        return;
    }
    const sluice_config *cfg = m->r->cfg;
    spool_fs *fs = m->r->fs;
    envelope *e = &m->e;
    int64_t now_us = dlv_now_us(), now_ms = now_us / 1000;
    bool changed = false, dsn_changed = false, dsn_retry = false;
    dlv_dsn_rcpt *list = NULL, *delayed = NULL;
    size_t nlist = 0, ndelayed = 0;
    int rc;

    for (size_t k = 0; k < m->ntasks; k++)
        if (!m->tasks[k].local && m->tasks[k].req.fd >= 0) {
            close(m->tasks[k].req.fd);
            m->tasks[k].req.fd = -1;
        }
    for (size_t i = 0; i < e->nrcpt; i++)
        changed |= apply(m, i, now_us);

    /* What is owed: per final recipient once; delay warnings once per message. */
    list = calloc(e->nrcpt ? e->nrcpt : 1, sizeof(*list));
    delayed = calloc(e->nrcpt ? e->nrcpt : 1, sizeof(*delayed));
    if (!list || !delayed) {
        log_err("%s: out of memory", m->id);
        dsn_retry = true;
    }
    bool null_sender = !e->sender || !*e->sender;
    bool warn_due = cfg->delay_warning > 0 && !e->delay_warned && !null_sender &&
                    now_us >= e->arrival_us + (int64_t)cfg->delay_warning * 1000000;
    for (size_t i = 0; list && delayed && i < e->nrcpt; i++) {
        env_rcpt *r = &e->rcpts[i];
        if (r->state == RCPT_DEFERRED && warn_due && !(r->notify & SMTP_NOTIFY_NEVER) &&
            dlv_notify_wants_delay(r->notify))
            delayed[ndelayed++] = (dlv_dsn_rcpt){r, "delayed"};
        if (!final(r) || r->dsn_sent)
            continue;
        bool failed = r->state == RCPT_FAILED;
        bool want = !null_sender && (failed ? dlv_notify_wants_failure(r->notify)
                                            : dlv_notify_wants_success(r->notify));
        if (failed && null_sender)
            log_info("%s: to=<%s>: undeliverable mail from <> dropped (never bounce a bounce)",
                     m->id, r->addr);
        if (!want) {
            r->dsn_sent = true; /* nothing owed */
            changed = true;
            continue;
        }
        const char *action = failed                                       ? "failed"
                             : r->relay && strcmp(r->relay, "alias") == 0 ? "expanded"
                                                                          : "delivered";
        list[nlist++] = (dlv_dsn_rcpt){r, action};
    }

    /*
     * 1. Outcomes first -- unless the message is about to be removed with
     * nothing owed: recording outcomes that the removal erases would cost
     * two syncs for nothing. A crash before the removal finds the recipients
     * as they were; local deliveries are then found by their delivery keys,
     * and remote ones are in the same position as after a crash just before
     * this record (SMTP's at-least-once).
     */
    /* (nothing_left implies no DSN is listed: final and dsn_sent are exclusive
     * with the lists above.) */
    bool removable = list && delayed && nothing_left(e);
    if (changed && !removable && (rc = spool_fs_store(fs, e)) != 0) {
        atomic_store(&m->r->store_failed, true);
        log_err("%s: cannot record the outcome: %s", m->id, strerror(-rc));
        m->next_ms = now_ms + RETRY_DSN_MS;
        goto out;
    }
    /* 2. The DSNs. */
    if (nlist > 0) {
        bool any_failed = false;
        for (size_t k = 0; k < nlist; k++)
            any_failed |= strcmp(list[k].action, "failed") == 0;
        enum dlv_dsn_kind kind = any_failed ? DLV_DSN_FAILURE : DLV_DSN_SUCCESS;
        char newid[QUEUE_ID_LEN + 1];
        if ((rc = send_dsn(m, kind, list, nlist, newid)) == 0) {
            log_info("%s: sender %s: %s", m->id, dsn_kind_name(kind), newid);
            for (size_t k = 0; k < nlist; k++)
                ((env_rcpt *)list[k].r)->dsn_sent = true;
            dsn_changed = true;
        } else {
            log_err("%s: cannot create the %s: %s", m->id, dsn_kind_name(kind), strerror(-rc));
            dsn_retry = true;
        }
    }
    if (ndelayed > 0) {
        char newid[QUEUE_ID_LEN + 1];
        if ((rc = send_dsn(m, DLV_DSN_DELAY, delayed, ndelayed, newid)) == 0) {
            log_info("%s: sender %s: %s", m->id, dsn_kind_name(DLV_DSN_DELAY), newid);
            e->delay_warned = true;
            dsn_changed = true;
        } else {
            log_err("%s: cannot create the delay notification: %s", m->id, strerror(-rc));
        }
    }
    /* 3. Gone when nothing is left to do. */
    if (nothing_left(e)) {
        if ((rc = spool_fs_remove_unsynced(fs, m->id)) == 0 || rc == -ENOENT) {
            log_info("%s: removed", m->id);
            m->next_ms = -1;
            goto out;
        }
        log_err("%s: cannot remove: %s", m->id, strerror(-rc));
        dsn_retry = true;
    }
    if (dsn_changed && (rc = spool_fs_store(fs, e)) != 0)
        log_err("%s: cannot record the DSN: %s (it may be sent again)", m->id, strerror(-rc));
    m->next_ms = dlv_envelope_due_ms(e, now_ms);
    if (envelope_all_final(e))
        m->next_ms = now_ms + RETRY_DSN_MS; /* only a DSN or the removal is left */
    else if (dsn_retry && m->next_ms > now_ms + RETRY_DSN_MS)
        m->next_ms = now_ms + RETRY_DSN_MS;
    if (e->hold)
        m->next_ms = -1;
out:
    free(list);
    free(delayed);
    spool_fs_unlock(m->lockfd);
    m->lockfd = -1;
}
