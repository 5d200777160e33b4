/*
 * smtp_client_proto.c - the SMTP dialogue of one connection (RFC 5321):
 * greeting, EHLO (HELO when EHLO gets a 5xx), STARTTLS per the tls policy
 * (RFC 3207), AUTH PLAIN to the relayhost (RFC 4954, under TLS only), then
 * one transaction per request: MAIL, RCPT..., DATA, pipelined in one write
 * when the server offers PIPELINING (RFC 2920), replies read in order.
 *
 * Where a failure is temporary or permanent is decided here, from the
 * reply class or the kind of I/O failure (DESIGN.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "smtp_client_int.h"
#include "sluice/log.h"
#include "sluice/smtp_parse.h"

static const char *req_id(const smtpc_conn *conn)
{
    return conn->job && conn->job->req->id ? conn->job->req->id : "-";
}

/* Sends a command and waits for its reply. false: the connection is gone. */
static bool send_cmd(smtpc_conn *conn, enum smtpc_expect x, unsigned ms, const char *doing,
                     const char *line)
{
    conn->expect = x;
    dlv_smtp_reply_init(&conn->reply);
    smtpc_conn_timer(conn, ms, doing);
    int rc = smtpc_conn_write(conn, line, strlen(line));
    if (rc < 0) {
        smtpc_proto_error(conn, rc, NULL);
        return false;
    }
    return true;
}

/* The session failed before a transaction: the job moves on to the next candidate. */
static void session_fail(smtpc_conn *conn, int code, const char *status, const char *text)
{
    if (conn->job)
        smtpc_job_candidate_failed(conn->job, code, status, text);
    else
        smtpc_conn_close(conn);
}

static void session_fail_reply(smtpc_conn *conn, const char *in_reply_to)
{
    char text[DLV_REPLY_MAX + 1];
    dlv_smtp_reply_format(&conn->reply, text, sizeof(text));
    log_info("%s: %s said: %s (in reply to %s)", req_id(conn), conn->relay, text, in_reply_to);
    session_fail(conn, conn->reply.code, conn->reply.status, text);
}

static void send_ehlo(smtpc_conn *conn)
{
    char line[300];
    memset(&conn->ext, 0, sizeof(conn->ext));
    snprintf(line, sizeof(line), "EHLO %s\r\n", conn->c->helo);
    send_cmd(conn, X_EHLO, conn->c->o.timeouts.ehlo_ms, "sending EHLO", line);
}

void smtpc_proto_connected(smtpc_conn *conn)
{
    conn->expect = X_GREETING;
    dlv_smtp_reply_init(&conn->reply);
    smtpc_conn_timer(conn, conn->c->o.timeouts.greeting_ms,
                     "receiving the initial server greeting");
}

void smtpc_proto_ehlo_line(smtpc_conn *conn, const char *text, size_t len)
{
    dlv_smtp_ext_line(&conn->ext, text, len);
}

static void ready(smtpc_conn *conn)
{
    if (conn->job)
        smtpc_proto_start(conn);
    else
        smtpc_conn_quit(conn);
}

static void maybe_auth(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    dlv_smtp *c = conn->c;
    if (!j || !j->need_auth || conn->authed) {
        ready(conn);
        return;
    }
    char text[DLV_REPLY_MAX];
    if (!conn->tls_on) {
        snprintf(text, sizeof(text),
                 "not sending the relayhost password to %s without TLS (STARTTLS failed or not "
                 "offered)",
                 conn->relay);
        session_fail(conn, 0, "4.7.0", text);
        return;
    }
    if (!(conn->ext.flags & DLV_SMTP_EXT_AUTH)) {
        log_info("%s: %s offers no AUTH; sending without authentication", req_id(conn),
                 conn->relay);
        ready(conn);
        return;
    }
    /* RFC 4616: authzid NUL authcid NUL password, in base64. */
    unsigned char raw[520];
    unsigned char b64[700 + 20];
    size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
    raw[0] = '\0';
    memcpy(raw + 1, c->auth_user, ul);
    raw[1 + ul] = '\0';
    memcpy(raw + 2 + ul, c->auth_pass, pl);
    int n = EVP_EncodeBlock(b64, raw, (int)(2 + ul + pl));
    OPENSSL_cleanse(raw, sizeof(raw));
    char line[sizeof(b64) + 16];
    snprintf(line, sizeof(line), "AUTH PLAIN %.*s\r\n", n, (const char *)b64);
    OPENSSL_cleanse(b64, sizeof(b64));
    send_cmd(conn, X_AUTH, c->o.timeouts.auth_ms, "sending AUTH", line);
    OPENSSL_cleanse(line, sizeof(line));
}

static void after_hello(smtpc_conn *conn)
{
    dlv_smtp *c = conn->c;
    char text[DLV_REPLY_MAX];
    if (!conn->tls_on) {
        if ((conn->ext.flags & DLV_SMTP_EXT_STARTTLS) && !conn->no_tls) {
            send_cmd(conn, X_STARTTLS, c->o.timeouts.starttls_ms, "sending STARTTLS",
                     "STARTTLS\r\n");
            return;
        }
        if (c->o.tls != TLS_MAY) {
            snprintf(text, sizeof(text), "TLS is required, but was not offered by host %s",
                     conn->relay);
            session_fail(conn, 0, "4.7.5", text);
            return;
        }
    }
    maybe_auth(conn);
}

/* The handshake failed, or STARTTLS could not start. */
static void tls_failed(smtpc_conn *conn, const char *why)
{
    dlv_smtp *c = conn->c;
    smtpc_job *j = conn->job;
    char text[DLV_REPLY_MAX];
    snprintf(text, sizeof(text), "TLS handshake with %s failed: %s", conn->relay, why);
    if (c->o.tls == TLS_MAY && j) {
        /* Opportunistic TLS: a broken TLS stack must not stop mail (as Postfix). */
        log_warn("%s: %s; retrying without TLS (tls = may)", req_id(conn), text);
        j->plain_retry = true;
    } else {
        log_warn("%s: %s", req_id(conn), text);
    }
    conn->broken = true;
    session_fail(conn, 0, "4.7.5", text);
}

void smtpc_proto_tls_done(smtpc_conn *conn, int rc, const char *err)
{
    if (rc < 0) {
        tls_failed(conn, err ? err : "error");
        return;
    }
    log_debug("%s: TLS with %s: %s %s (%d bits)", req_id(conn), conn->relay,
              tls_conn_version(&conn->tls), tls_conn_cipher(&conn->tls), tls_conn_bits(&conn->tls));
    send_ehlo(conn); /* RFC 3207 4.2: forget what was learned before TLS */
}

static void on_starttls(smtpc_conn *conn)
{
    dlv_smtp *c = conn->c;
    char text[DLV_REPLY_MAX + 1];
    if (conn->reply.code != 220) {
        dlv_smtp_reply_format(&conn->reply, text, sizeof(text));
        if (c->o.tls == TLS_MAY) {
            log_info("%s: %s refused STARTTLS (%s); continuing without TLS", req_id(conn),
                     conn->relay, text);
            maybe_auth(conn);
            return;
        }
        char t2[DLV_REPLY_MAX + DLV_RELAY_MAX + 64];
        snprintf(t2, sizeof(t2), "TLS is required, but host %s refused to start TLS: %s",
                 conn->relay, text);
        session_fail(conn, 0, "4.7.5", t2);
        return;
    }
    /*
     * Anything after the 220 was sent before TLS and would be read as if it
     * came through it: response injection (NO STARTTLS, CVE-2021-38371).
     */
    if (conn->in.len > 0) {
        tls_failed(conn, "server sent data after its STARTTLS reply (injection?)");
        return;
    }
    conn->expect = X_NONE;
    smtpc_conn_timer(conn, c->o.timeouts.starttls_ms, "performing the TLS handshake");
    if (smtpc_conn_start_tls(conn) < 0)
        tls_failed(conn, "cannot start TLS");
}

/* ---- the transaction ---- */

/* An address from the envelope: bounded, no control characters, no brackets. */
static bool path_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > SMTP_PATH_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
            return false;
    }
    return true;
}

/* An xtext parameter value (ENVID, ORCPT) as stored: printable ASCII, no spaces. */
static bool xtext_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e || s[i] == '=')
            return false;
    return true;
}

static int add_rcpt_line(sbuf *b, const smtpc_conn *conn, const dlv_remote_rcpt *r)
{
    int rc = sbuf_printf(b, "RCPT TO:<%s>", r->addr);
    if (rc == 0 && (conn->ext.flags & DLV_SMTP_EXT_DSN)) {
        if (r->notify & SMTP_NOTIFY_NEVER) {
            rc = sbuf_puts(b, " NOTIFY=NEVER");
        } else if (r->notify) {
            const char *sep = " NOTIFY=";
            static const struct {
                unsigned bit;
                const char *name;
            } kw[] = {{SMTP_NOTIFY_SUCCESS, "SUCCESS"},
                      {SMTP_NOTIFY_FAILURE, "FAILURE"},
                      {SMTP_NOTIFY_DELAY, "DELAY"}};
            for (size_t k = 0; rc == 0 && k < 3; k++) {
                if (r->notify & kw[k].bit) {
                    rc = sbuf_printf(b, "%s%s", sep, kw[k].name);
                    sep = ",";
                }
            }
        }
        if (rc == 0 && r->orcpt && strchr(r->orcpt, ';') && xtext_ok(r->orcpt, SMTP_ORCPT_MAX))
            rc = sbuf_printf(b, " ORCPT=%s", r->orcpt);
    }
    return rc ? rc : sbuf_puts(b, "\r\n");
}

static int add_mail_line(sbuf *b, const smtpc_conn *conn, const dlv_remote_req *req)
{
    unsigned ext = conn->ext.flags;
    int rc = sbuf_printf(b, "MAIL FROM:<%s>", req->sender);
    if (rc == 0 && (ext & DLV_SMTP_EXT_SIZE))
        rc = sbuf_printf(b, " SIZE=%llu", (unsigned long long)req->size);
    if (rc == 0 && (ext & DLV_SMTP_EXT_8BITMIME)) {
        /* BINARYMIME needs BDAT, which we do not send: the data goes as 8-bit. */
        if (req->body == SMTP_BODY_8BITMIME || req->body == SMTP_BODY_BINARYMIME)
            rc = sbuf_puts(b, " BODY=8BITMIME");
        else if (req->body == SMTP_BODY_7BIT)
            rc = sbuf_puts(b, " BODY=7BIT");
    }
    if (rc == 0 && req->smtputf8)
        rc = sbuf_puts(b, " SMTPUTF8");
    if (rc == 0 && (ext & DLV_SMTP_EXT_DSN)) {
        if (req->ret == SMTP_RET_FULL)
            rc = sbuf_puts(b, " RET=FULL");
        else if (req->ret == SMTP_RET_HDRS)
            rc = sbuf_puts(b, " RET=HDRS");
        if (rc == 0 && req->envid && xtext_ok(req->envid, SMTP_ENVID_MAX))
            rc = sbuf_printf(b, " ENVID=%s", req->envid);
    }
    return rc ? rc : sbuf_puts(b, "\r\n");
}

/* The next recipient after i (or from 0 when i == SIZE_MAX) whose RCPT was sent. */
static size_t next_sent(const smtpc_job *j, size_t i)
{
    for (size_t k = i == SIZE_MAX ? 0 : i + 1; k < j->req->nrcpt; k++)
        if (j->rs[k] & RS_SENT)
            return k;
    return SIZE_MAX;
}

static void finish_trans(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    conn->expect = X_NONE;
    smtpc_conn_timer(conn, 0, NULL);
    if (conn->reply.code == 421)
        conn->broken = true;
    smtpc_rcpt_set_rest(j, 0, "4.4.2", "no reply from the server", conn);
    smtpc_job_finish(j); /* releases conn: RSET and cache, or QUIT */
}

void smtpc_proto_start(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    dlv_remote_req *req = j->req;
    dlv_smtp *c = conn->c;
    char text[DLV_REPLY_MAX];

    smtpc_conn_timer(conn, 0, NULL);
    for (size_t i = 0; i < req->nrcpt; i++)
        j->rs[i] &= RS_SET;
    j->naccepted = 0;
    j->mail_ok = j->mail_replied = j->in_trans = j->data_done = false;
    j->pipelined = (conn->ext.flags & DLV_SMTP_EXT_PIPELINING) != 0;

    if (req->smtputf8 && !(conn->ext.flags & DLV_SMTP_EXT_SMTPUTF8)) {
        snprintf(text, sizeof(text), "SMTPUTF8 is required, but was not offered by host %s",
                 conn->relay);
        smtpc_rcpt_set_rest(j, 0, "5.6.7", text, conn);
        smtpc_job_finish(j);
        return;
    }
    if ((conn->ext.flags & DLV_SMTP_EXT_SIZE) && conn->ext.size > 0 && req->size > conn->ext.size) {
        snprintf(text, sizeof(text), "message size %llu exceeds size limit %llu of server %s",
                 (unsigned long long)req->size, (unsigned long long)conn->ext.size, conn->relay);
        smtpc_rcpt_set_rest(j, 0, "5.3.4", text, conn);
        smtpc_job_finish(j);
        return;
    }
    if ((req->body == SMTP_BODY_8BITMIME || req->body == SMTP_BODY_BINARYMIME) &&
        !(conn->ext.flags & DLV_SMTP_EXT_8BITMIME))
        log_info("%s: %s does not announce 8BITMIME; sending the 8-bit message as is", req_id(conn),
                 conn->relay);
    if (!path_ok(req->sender)) {
        smtpc_rcpt_set_rest(j, 0, "5.1.7", "bad sender address syntax", conn);
        smtpc_job_finish(j);
        return;
    }

    sbuf b;
    sbuf_init(&b, 0);
    int rc = add_mail_line(&b, conn, req);
    size_t nsent = 0;
    for (size_t i = 0; i < req->nrcpt && rc == 0; i++) {
        if (j->rs[i] & RS_SET)
            continue;
        if (!req->rcpts[i].addr || !path_ok(req->rcpts[i].addr) || !req->rcpts[i].addr[0]) {
            smtpc_rcpt_set(j, i, 0, "5.1.3", "bad recipient address syntax", conn);
            continue;
        }
        j->rs[i] |= RS_SENT;
        nsent++;
        if (j->pipelined)
            rc = add_rcpt_line(&b, conn, &req->rcpts[i]);
    }
    if (rc == 0 && j->pipelined)
        rc = sbuf_puts(&b, "DATA\r\n");
    if (rc < 0 || nsent == 0) {
        sbuf_free(&b);
        if (rc < 0)
            smtpc_rcpt_set_rest(j, 0, "4.3.0", "out of memory", conn);
        smtpc_job_finish(j);
        return;
    }
    j->in_trans = true;
    j->irc = next_sent(j, SIZE_MAX);
    conn->transactions++;
    conn->expect = X_MAIL;
    dlv_smtp_reply_init(&conn->reply);
    smtpc_conn_timer(conn, c->o.timeouts.mail_ms, "sending MAIL FROM");
    rc = smtpc_conn_write(conn, b.data, b.len);
    sbuf_free(&b);
    if (rc < 0)
        smtpc_proto_error(conn, rc, NULL);
}

static bool send_rcpt(smtpc_conn *conn, size_t i)
{
    sbuf b;
    sbuf_init(&b, 0);
    int rc = add_rcpt_line(&b, conn, &conn->job->req->rcpts[i]);
    if (rc < 0) {
        sbuf_free(&b);
        smtpc_proto_error(conn, rc, NULL);
        return false;
    }
    bool ok = send_cmd(conn, X_RCPT, conn->c->o.timeouts.rcpt_ms, "sending RCPT TO", b.data);
    sbuf_free(&b);
    return ok;
}

static void on_mail(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    char text[DLV_REPLY_MAX + 1];
    j->mail_replied = true;
    j->mail_ok = conn->reply.code / 100 == 2;
    if (!j->mail_ok) {
        if (j->reused && conn->reply.code == 421 && !j->rerouted) {
            /* The cached session was timed out by the peer: start afresh. */
            conn->broken = true;
            session_fail_reply(conn, "MAIL FROM");
            return;
        }
        dlv_smtp_reply_format(&conn->reply, text, sizeof(text));
        for (size_t i = 0; i < j->req->nrcpt; i++)
            if (j->rs[i] & RS_SENT)
                smtpc_rcpt_set(j, i, conn->reply.code, conn->reply.status, text, conn);
        if (conn->reply.code == 421)
            conn->broken = true;
        if (!j->pipelined) {
            finish_trans(conn);
            return;
        }
        /* The RCPT and DATA replies are still to come. */
    }
    if (j->pipelined) {
        conn->expect = X_RCPT;
        dlv_smtp_reply_init(&conn->reply);
        smtpc_conn_timer(conn, conn->c->o.timeouts.rcpt_ms, "sending RCPT TO");
        return;
    }
    send_rcpt(conn, j->irc);
}

static void on_rcpt(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    dlv_smtp *c = conn->c;
    size_t i = j->irc;
    if (i == SIZE_MAX) {
        smtpc_proto_error(conn, -EPROTO, "more replies than commands");
        return;
    }
    j->rs[i] |= RS_REPLIED;
    if (conn->reply.code == 421)
        conn->broken = true;
    if (j->mail_ok) {
        if (conn->reply.code / 100 == 2) {
            j->rs[i] |= RS_ACCEPTED;
            j->naccepted++;
        } else {
            char text[DLV_REPLY_MAX + 1];
            dlv_smtp_reply_format(&conn->reply, text, sizeof(text));
            smtpc_rcpt_set(j, i, conn->reply.code, conn->reply.status, text, conn);
        }
    }
    j->irc = next_sent(j, i);
    if (j->irc != SIZE_MAX) {
        if (j->pipelined) {
            dlv_smtp_reply_init(&conn->reply);
            smtpc_conn_timer(conn, c->o.timeouts.rcpt_ms, "sending RCPT TO");
        } else {
            send_rcpt(conn, j->irc);
        }
        return;
    }
    if (j->pipelined) {
        conn->expect = X_DATA;
        dlv_smtp_reply_init(&conn->reply);
        smtpc_conn_timer(conn, c->o.timeouts.data_init_ms, "sending DATA");
        return;
    }
    if (j->naccepted == 0 || conn->broken) {
        finish_trans(conn);
        return;
    }
    send_cmd(conn, X_DATA, c->o.timeouts.data_init_ms, "sending DATA", "DATA\r\n");
}

static void set_accepted(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    char text[DLV_REPLY_MAX + 1];
    dlv_smtp_reply_format(&conn->reply, text, sizeof(text));
    for (size_t i = 0; i < j->req->nrcpt; i++)
        if (j->rs[i] & RS_ACCEPTED)
            smtpc_rcpt_set(j, i, conn->reply.code, conn->reply.status, text, conn);
}

static void on_data(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    if (conn->reply.code == 354) {
        if (j->mail_ok && j->naccepted > 0 && !conn->broken) {
            conn->expect = X_DOT;
            dlv_smtp_reply_init(&conn->reply);
            smtpc_data_start(j);
            return;
        }
        /* A pipelining server said 354 with nobody to deliver to: end it empty. */
        conn->dot_ignore = true;
        send_cmd(conn, X_DOT, conn->c->o.timeouts.data_end_ms, "sending end of data", ".\r\n");
        return;
    }
    if (j->mail_ok)
        set_accepted(conn);
    finish_trans(conn);
}

static void on_dot(smtpc_conn *conn)
{
    smtpc_job *j = conn->job;
    if (conn->dot_ignore) {
        conn->dot_ignore = false;
        finish_trans(conn);
        return;
    }
    if (!j->data_done) /* a reply before our dot: whatever follows is out of step */
        conn->broken = true;
    set_accepted(conn);
    finish_trans(conn);
}

void smtpc_proto_reply(smtpc_conn *conn)
{
    dlv_smtp *c = conn->c;
    int code = conn->reply.code;
    if (conn->expect == X_QUIT) {
        smtpc_conn_close(conn);
        return;
    }
    if (conn->expect == X_RSET) {
        if (code / 100 == 2) {
            smtpc_cache_idle(conn);
        } else if (conn->job) {
            conn->broken = true;
            session_fail_reply(conn, "RSET");
        } else {
            smtpc_conn_quit(conn);
        }
        return;
    }
    if (!conn->job) { /* canceled while waiting */
        smtpc_conn_close(conn);
        return;
    }
    switch (conn->expect) {
    case X_GREETING:
        if (code == 220)
            send_ehlo(conn);
        else
            session_fail_reply(conn, "the initial server greeting");
        return;
    case X_EHLO:
        if (code / 100 == 2) {
            conn->esmtp = true;
            after_hello(conn);
        } else if (code / 100 == 5) {
            char line[300];
            snprintf(line, sizeof(line), "HELO %s\r\n", c->helo);
            memset(&conn->ext, 0, sizeof(conn->ext));
            send_cmd(conn, X_HELO, c->o.timeouts.ehlo_ms, "sending HELO", line);
        } else {
            session_fail_reply(conn, "EHLO");
        }
        return;
    case X_HELO:
        if (code / 100 == 2)
            after_hello(conn);
        else
            session_fail_reply(conn, "HELO");
        return;
    case X_STARTTLS:
        on_starttls(conn);
        return;
    case X_AUTH:
        if (code == 235) {
            conn->authed = true;
            ready(conn);
        } else {
            /* Credentials the admin must fix: defer, never bounce (Postfix's default). */
            char text[DLV_REPLY_MAX + 1], st[8];
            dlv_smtp_reply_format(&conn->reply, text, sizeof(text));
            snprintf(st, sizeof(st), "4%s", conn->reply.status + 1);
            log_warn("%s: AUTH to %s failed: %s", req_id(conn), conn->relay, text);
            session_fail(conn, code, st, text);
        }
        return;
    case X_MAIL:
        on_mail(conn);
        return;
    case X_RCPT:
        on_rcpt(conn);
        return;
    case X_DATA:
        on_data(conn);
        return;
    case X_DOT:
        on_dot(conn);
        return;
    default:
        smtpc_proto_error(conn, -EPROTO, "unexpected reply");
        return;
    }
}

void smtpc_proto_error(smtpc_conn *conn, int err, const char *detail)
{
    if (conn->closing)
        return;
    smtpc_job *j = conn->job;
    if (!j || conn->expect == X_QUIT) {
        smtpc_conn_close(conn);
        return;
    }
    const char *doing = conn->doing ? conn->doing : "talking";
    char text[DLV_REPLY_MAX];
    const char *status = "4.4.2";
    if (err == UV_ETIMEDOUT)
        snprintf(text, sizeof(text), "conversation with %s timed out while %s", conn->relay, doing);
    else if (err == UV_EOF)
        snprintf(text, sizeof(text), "lost connection with %s while %s", conn->relay, doing);
    else if (err == -EPROTO || err == -E2BIG) {
        status = "4.5.0";
        snprintf(text, sizeof(text), "protocol error with %s while %s: %s", conn->relay, doing,
                 detail ? detail : "bad reply");
    } else
        snprintf(text, sizeof(text), "error with %s while %s: %s", conn->relay, doing,
                 detail ? detail : strerror(err < 0 ? -err : err));
    log_info("%s: %s", req_id(conn), text);
    conn->broken = true;
    if (conn->tls_init && !conn->tls_on) { /* the handshake broke: tls=may falls back */
        tls_failed(conn, text);
        return;
    }
    if (!j->in_trans || (j->reused && !j->mail_replied)) {
        session_fail(conn, 0, status, text);
        return;
    }
    /* Mid-transaction: nothing can have been delivered to whoever has no outcome yet. */
    j->conn = NULL;
    conn->job = NULL;
    smtpc_conn_close(conn);
    smtpc_rcpt_set_rest(j, 0, status, text, conn);
    smtpc_job_finish(j);
}

void smtpc_proto_drained(smtpc_conn *conn)
{
    if (conn->job && conn->expect == X_DOT && !conn->job->data_done)
        smtpc_data_drained(conn->job);
}
