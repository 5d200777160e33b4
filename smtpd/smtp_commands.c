/*
 * smtp_commands.c - the RFC 5321 state machine: one handler per verb,
 * and the end of a message (DATA/BDAT) into the spool's group commit.
 *
 * Every reply carries an enhanced status code (RFC 2034, RFC 3463).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sluice/log.h"
#include "sluice/sender_login.h"
#include "sluice/smtp_auth.h"
#include "sluice/smtp_policy.h"
#include "sluice/smtp_reply.h"
#include "sluice/smtp_session.h"
#include "sluice/spf_check.h"

static const char *verb_name(smtp_verb v)
{
    static const char *const names[] = {
        [SMTP_VERB_UNKNOWN] = "UNKNOWN", [SMTP_VERB_HELO] = "HELO",
        [SMTP_VERB_EHLO] = "EHLO",       [SMTP_VERB_MAIL] = "MAIL",
        [SMTP_VERB_RCPT] = "RCPT",       [SMTP_VERB_DATA] = "DATA",
        [SMTP_VERB_BDAT] = "BDAT",       [SMTP_VERB_RSET] = "RSET",
        [SMTP_VERB_NOOP] = "NOOP",       [SMTP_VERB_QUIT] = "QUIT",
        [SMTP_VERB_VRFY] = "VRFY",       [SMTP_VERB_EXPN] = "EXPN",
        [SMTP_VERB_HELP] = "HELP",       [SMTP_VERB_STARTTLS] = "STARTTLS",
        [SMTP_VERB_AUTH] = "AUTH",
    };
    return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

void smtp_cmd_greet(smtp_session *s)
{
    smtp_reply(s, "220 %s ESMTP Sluice", s->cfg->hostname);
}

void smtp_cmd_error(smtp_session *s)
{
    unsigned max = s->cfg->max_bad_commands;
    if (max && ++s->bad_commands > max) {
        smtp_reply(s, "421 4.7.0 %s Error: too many errors", s->cfg->hostname);
        log_info("too many errors from %s[%s]; closing", s->peer_name, s->peer_ip);
        s->quitting = true;
    }
}

void smtp_tx_reset(smtp_session *s)
{
    if (s->msg) {
        spool_msg_abort(s->msg);
        s->msg = NULL;
    }
    envelope_free(&s->env);
    envelope_init(&s->env);
    free(s->spf_header);
    s->spf_header = NULL;
    memset(&s->mail, 0, sizeof(s->mail));
    s->id[0] = '\0';
    s->tx_error = 0;
    s->bdat_left = 0;
    s->bdat_last = false;
    s->bdat_failed = false;
    s->body_start_ms = 0;
    s->body_bytes = 0;
    s->bdat_reply = NULL;
    s->state = s->helo[0] ? SMTP_S_READY : SMTP_S_GREET;
    if (smtp_server_draining(s->srv) && !s->closing && !s->quitting) {
        /* a transaction ended during shutdown: say goodbye now */
        smtp_reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
        s->quitting = true;
    }
}

/* Logs a refusal in one line: what was refused, to whom, and the reply. */
static void log_reject(smtp_session *s, smtp_verb v, const char *what, const char *reply)
{
    log_info("%s%sreject: %s from %s[%s]: %s; from=<%s>%s%s%s helo=<%s>", s->id,
             s->id[0] ? ": " : "", verb_name(v), s->peer_name, s->peer_ip, reply,
             s->env.sender ? s->env.sender : "", what ? " to=<" : "", what ? what : "",
             what ? ">" : "", s->helo);
}

static void reply_reject(smtp_session *s, smtp_verb v, const char *what, const char *reply)
{
    smtp_reply(s, "%s", reply);
    log_reject(s, v, what, reply);
}

/* Relaying: local submissions, authenticated clients, trusted networks. */
static bool may_relay(const smtp_session *s)
{
    if (s->kind == LISTEN_LOCAL || s->auth_id[0])
        return true;
    return config_is_trusted(s->cfg, (const struct sockaddr *)&s->peer);
}

/* ---- HELO / EHLO ---- */

static void do_helo(smtp_session *s, const smtp_cmd *c, bool esmtp)
{
    const sluice_config *cfg = s->cfg;
    if (c->arg_len == 0 || smtp_helo_parse(c->arg, c->arg_len) != SMTP_POK) {
        smtp_reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        smtp_cmd_error(s);
        return;
    }
    size_t n = c->arg_len < sizeof(s->helo) - 1 ? c->arg_len : sizeof(s->helo) - 1;
    memcpy(s->helo, c->arg, n);
    s->helo[n] = '\0';
    s->esmtp = esmtp;
    smtp_tx_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
    if (!esmtp) {
        smtp_reply(s, "250 %s", cfg->hostname);
        return;
    }
    smtp_reply(s, "250-%s", cfg->hostname);
    smtp_reply(s, "250-PIPELINING");
    smtp_reply(s, "250-SIZE %llu", (unsigned long long)cfg->max_message_size);
    smtp_reply(s, "250-8BITMIME");
    smtp_reply(s, "250-ENHANCEDSTATUSCODES");
    smtp_reply(s, "250-SMTPUTF8");
    smtp_reply(s, "250-CHUNKING");
    if (s->srv->tls_ctx && !s->tls_on && s->kind != LISTEN_LOCAL)
        smtp_reply(s, "250-STARTTLS");
    if (smtp_auth_offered(s))
        smtp_reply(s, "250-AUTH %s", smtp_auth_cmd_mechs(s));
    smtp_reply(s, "250 DSN");
}

/* ---- SPF (RFC 7208) at MAIL, for strangers on mx listeners ---- */

static bool may_relay(const smtp_session *s);

static bool spf_applies(const smtp_session *s)
{
    return s->srv->spf && s->cfg->spf != SPF_OFF && s->kind == LISTEN_MX && !may_relay(s);
}

static void on_spf(spf_request *req, int status)
{
    smtp_session *s = req->data;
    s->spf_req = NULL;
    if (status == 0 && !s->closing) {
        const sluice_config *cfg = s->cfg;
        enum spf_action act = spf_policy(cfg->spf, req->result);
        char reply[600];
        log_info("SPF %s for %s[%s]: helo=<%s> from=<%s> identity=%s domain=%s",
                 spf_result_name(req->result), s->peer_name, s->peer_ip, s->helo, s->env.sender,
                 req->identity == SPF_ID_HELO       ? "helo"
                 : req->identity == SPF_ID_MAILFROM ? "mailfrom"
                                                    : "none",
                 req->domain);
        if (act == SPF_ACT_REJECT_550 || act == SPF_ACT_TEMPFAIL_451) {
            spf_reply(req, act, reply, sizeof(reply));
            reply_reject(s, SMTP_VERB_MAIL, NULL, reply);
            smtp_tx_reset(s);
        } else {
            if (act == SPF_ACT_ACCEPT_TAG) {
                sbuf h;
                sbuf_init(&h, 0);
                if (sbuf_printf(&h, "Received-SPF: %s\r\n", req->header) == 0)
                    s->spf_header = h.data;
                else
                    sbuf_free(&h);
                envelope_set(&s->env.spf, spf_result_name(req->result));
            }
            s->state = SMTP_S_MAIL;
            smtp_reply(s, "250 2.1.0 Ok");
        }
    }
    free(req);
    smtp_session_resume(s);
}

/* The MAIL reply waits for the check; pipelined commands wait behind it. */
static void spf_start(smtp_session *s)
{
    spf_request *req = calloc(1, sizeof(*req));
    if (!req) {
        smtp_reply(s, "451 4.7.24 Error: SPF check not possible now");
        return;
    }
    smtp_session_wait(s);
    s->spf_req = req;
    if (spf_check_start(s->srv->spf, req, s->peer_ip, s->helo, s->env.sender, on_spf, s) < 0) {
        s->spf_req = NULL;
        free(req);
        reply_reject(s, SMTP_VERB_MAIL, NULL, "451 4.7.24 Error: SPF check not possible now");
        smtp_tx_reset(s);
        smtp_session_resume(s);
    }
}

/* ---- MAIL ---- */

/* Whether anything follows the path (a quoted local part may hold spaces). */
static bool has_params(const smtp_cmd *c, bool allow_null)
{
    smtp_path p;
    size_t used = 0;
    if (smtp_path_parse(c->arg, c->arg_len, allow_null, &p, &used) != SMTP_POK)
        return false;
    return used < c->arg_len;
}

static const char *perr_reply(smtp_perr e, bool mail)
{
    switch (e) {
    case SMTP_PERR_ADDR_SYNTAX:
    case SMTP_PERR_ADDR_TOO_LONG:
        return mail ? "501 5.1.7 Bad sender address syntax"
                    : "501 5.1.3 Bad recipient address syntax";
    case SMTP_PERR_PARAM_UNKNOWN:
        return "555 5.5.4 Unsupported option";
    case SMTP_PERR_UTF8_NOT_DECLARED:
        return "553 5.6.7 Non-ASCII address requires SMTPUTF8";
    case SMTP_PERR_PARAM_DUP:
        return "501 5.5.4 Duplicate parameter";
    default:
        return "501 5.5.4 Syntax error in parameters";
    }
}

static void do_mail(smtp_session *s, const smtp_cmd *c)
{
    const sluice_config *cfg = s->cfg;
    if (s->state == SMTP_S_GREET) {
        smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (s->state != SMTP_S_READY) {
        smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if ((s->kind == LISTEN_SUBMISSION || s->kind == LISTEN_SMTPS) && !s->auth_id[0]) {
        /* RFC 6409 4.3: submission needs authentication (issue: TLS/AUTH). */
        reply_reject(s, SMTP_VERB_MAIL, NULL, "530 5.7.0 Authentication required");
        return;
    }
    const char *bad = NULL;
    smtp_perr pe = smtp_mail_args_parse(c->arg, c->arg_len, &s->mail, &bad);
    if (pe == SMTP_POK && !s->esmtp && has_params(c, true))
        pe = SMTP_PERR_PARAM_UNKNOWN; /* HELO clients get no ESMTP parameters */
    if (pe == SMTP_POK && s->mail.body == SMTP_BODY_BINARYMIME)
        pe = SMTP_PERR_PARAM_UNKNOWN; /* BINARYMIME is not offered */
    if (pe != SMTP_POK) {
        reply_reject(s, SMTP_VERB_MAIL, NULL, perr_reply(pe, true));
        smtp_cmd_error(s);
        return;
    }
    if (s->mail.has_size && cfg->max_message_size && s->mail.size > cfg->max_message_size) {
        reply_reject(s, SMTP_VERB_MAIL, NULL,
                     "552 5.3.4 Message size exceeds fixed maximum message size");
        return;
    }
    if (s->auth_id[0] && s->kind != LISTEN_LOCAL &&
        !sender_login_allowed(s->auth_id, s->mail.from.addr, s->srv->mailboxes, s->srv->aliases,
                              s->srv->sender_logins)) {
        char reply[SMTP_PATH_MAX + 120];
        snprintf(reply, sizeof(reply),
                 "553 5.7.1 <%s>: Sender address rejected: not owned by user %s", s->mail.from.addr,
                 s->auth_id);
        reply_reject(s, SMTP_VERB_MAIL, NULL, reply);
        return;
    }
    if (envelope_set(&s->env.sender, s->mail.from.addr) < 0) {
        smtp_reply(s, "451 4.3.0 Error: out of memory");
        return;
    }
    if (spf_applies(s)) {
        spf_start(s);
        return;
    }
    s->state = SMTP_S_MAIL;
    smtp_reply(s, "250 2.1.0 Ok");
}

/* ---- RCPT ---- */

static void do_rcpt(smtp_session *s, const smtp_cmd *c)
{
    const sluice_config *cfg = s->cfg;
    smtp_rcpt_args r;
    const char *bad = NULL;

    if (s->state != SMTP_S_MAIL) {
        smtp_reply(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    smtp_perr pe = smtp_rcpt_args_parse(c->arg, c->arg_len, s->mail.smtputf8, &r, &bad);
    if (pe == SMTP_POK && !s->esmtp && has_params(c, false))
        pe = SMTP_PERR_PARAM_UNKNOWN;
    if (pe != SMTP_POK) {
        reply_reject(s, SMTP_VERB_RCPT, NULL, perr_reply(pe, false));
        smtp_cmd_error(s);
        return;
    }
    if (cfg->max_recipients && s->env.nrcpt >= cfg->max_recipients) {
        reply_reject(s, SMTP_VERB_RCPT, r.to.addr, "452 4.5.3 Error: too many recipients");
        return;
    }
    char reply[SMTP_PATH_MAX + 100];
    switch (smtp_policy_rcpt(cfg, s->srv->mailboxes, s->srv->aliases, &r.to, may_relay(s))) {
    case RCPT_REJECT_UNKNOWN:
        snprintf(reply, sizeof(reply), "550 5.1.1 <%s>: Recipient address rejected: User unknown",
                 r.to.addr);
        reply_reject(s, SMTP_VERB_RCPT, r.to.addr, reply);
        return;
    case RCPT_REJECT_RELAY:
        snprintf(reply, sizeof(reply), "554 5.7.1 <%s>: Relay access denied", r.to.addr);
        reply_reject(s, SMTP_VERB_RCPT, r.to.addr, reply);
        return;
    case RCPT_ACCEPT_LOCAL:
    case RCPT_ACCEPT_RELAY:
        break;
    }
    if (envelope_add_rcpt(&s->env, r.to.addr, r.orcpt[0] ? r.orcpt : NULL, r.notify) < 0) {
        smtp_reply(s, "452 4.3.1 Error: insufficient system resources");
        return;
    }
    smtp_reply(s, "250 2.1.5 Ok");
}

/* ---- the message: DATA and BDAT into the spool ---- */

static void on_flushed(void *arg, int status)
{
    smtp_session *s = arg;
    if (status < 0 && !s->tx_error) {
        s->tx_error = status;
        log_warn("%s: spool write failed: %s", s->id, uv_strerror(status));
    }
    smtp_session_resume(s);
}

/* The spool wants its buffer written out: wait for it, in order. */
static void maybe_flush(smtp_session *s)
{
    if (!s->msg || s->tx_error || spool_msg_pending(s->msg) < SPOOL_MSG_FLUSH_AT)
        return;
    int rc = spool_msg_flush(s->msg, on_flushed, s);
    if (rc < 0) {
        s->tx_error = rc;
        return;
    }
    smtp_session_wait(s);
}

static void spool_out(smtp_session *s, const char *p, size_t n)
{
    int rc = spool_msg_write(s->msg, p, n);
    if (rc < 0)
        s->tx_error = rc;
}

/* RFC 6409 8.2, 8.3: submission supplies a missing Date and Message-ID. */
static void add_missing_headers(smtp_session *s)
{
    char buf[600];
    if (!s->hdr.have_date) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof(buf), "Date: %a, %d %b %Y %H:%M:%S %z\r\n", &tm);
        spool_out(s, buf, n);
    }
    if (!s->hdr.have_msgid) {
        int n = snprintf(buf, sizeof(buf), "Message-ID: <%s@%s>\r\n", s->id, s->cfg->hostname);
        if (n > 0 && (size_t)n < sizeof(buf))
            spool_out(s, buf, (size_t)n);
    }
    s->hdr.have_date = s->hdr.have_msgid = true;
}

static bool fixes_headers(const smtp_session *s)
{
    return s->kind != LISTEN_MX;
}

static void emit_body(void *arg, const char *p, size_t n)
{
    smtp_session *s = arg;
    if (s->tx_error || !s->msg)
        return;
    if (fixes_headers(s) && !s->hdr.done) {
        long end = hdr_scan_feed(&s->hdr, p, n);
        if (end >= 0) {
            spool_out(s, p, (size_t)end);
            add_missing_headers(s);
            p += end;
            n -= (size_t)end;
        }
    }
    spool_out(s, p, n);
}

/* Begins the spool message with its Received header. */
static int begin_message(smtp_session *s)
{
    int rc = spool_msg_begin(s->srv->spool, &s->msg, s->id);
    if (rc < 0)
        return rc;
    sbuf hdr;
    sbuf_init(&hdr, 0);
    /* RFC 7208 9.1: Received-SPF goes above our own Received. */
    rc = s->spf_header ? sbuf_puts(&hdr, s->spf_header) : 0;
    if (rc == 0)
        rc = smtp_received_header(s, &hdr);
    if (rc == 0)
        rc = spool_msg_write(s->msg, hdr.data, hdr.len);
    sbuf_free(&hdr);
    hdr_scan_init(&s->hdr);
    return rc;
}

/* RFC 3848 names: S for TLS, A for an authenticated client. */
static const char *proto_name(const smtp_session *s)
{
    if (!s->esmtp)
        return s->tls_on ? "SMTPS" : "SMTP";
    static const char *const names[] = {"ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA"};
    return names[(s->tls_on ? 1 : 0) + (s->auth_id[0] ? 2 : 0)];
}

const char *smtp_session_proto(const smtp_session *s)
{
    return proto_name(s);
}

static int fill_envelope(smtp_session *s)
{
    envelope *e = &s->env;
    int rc = 0;
    e->arrival_us = queue_id_time(s->id);
    rc |= envelope_set(&e->helo, s->helo[0] ? s->helo : NULL);
    rc |= envelope_set(&e->client_addr, s->peer_ip);
    rc |= envelope_set(&e->client_name, s->peer_name);
    rc |= envelope_set(&e->proto, s->kind == LISTEN_LOCAL ? "LOCAL" : proto_name(s));
    rc |= envelope_set(&e->auth_id, s->auth_id[0] ? s->auth_id : NULL);
    rc |= envelope_set(&e->envid, s->mail.envid[0] ? s->mail.envid : NULL);
    e->ret = s->mail.ret;
    e->body = s->mail.body;
    e->smtputf8 = s->mail.smtputf8;
    return rc ? -ENOMEM : 0;
}

static void on_committed(void *arg, int status)
{
    smtp_session *s = arg; /* s->msg was handed over at commit */
    if (status == 0) {
        smtp_reply(s, "250 2.0.0 Ok: queued as %s", s->id);
        log_info("%s: from=<%s>, size=%llu, nrcpt=%zu, client=%s[%s], proto=%s%s%s", s->id,
                 s->env.sender, (unsigned long long)s->env.size, s->env.nrcpt, s->peer_name,
                 s->peer_ip, s->env.proto, s->auth_id[0] ? ", user=" : "",
                 s->auth_id[0] ? s->auth_id : "");
    } else {
        const char *reply = smtp_reply_for_spool_error(status);
        smtp_reply(s, "%s", reply);
        log_warn("%s: commit failed: %s; replied %s", s->id, uv_strerror(status), reply);
    }
    smtp_tx_reset(s);
    smtp_session_resume(s);
}

/* The client has sent the whole message: refuse it, or commit it. */
static void end_message(smtp_session *s, smtp_verb v)
{
    const char *refusal = NULL;
    if (s->data.bare_newline)
        refusal = "550 5.6.0 Message refused: bare CR or LF in DATA (see RFC 5321 2.3.8)";
    else if (s->data.long_line)
        refusal = "500 5.5.2 Message refused: line longer than 1000 octets";
    else if (s->data.too_big)
        refusal = "552 5.3.4 Message size exceeds fixed maximum message size";
    else if (s->tx_error)
        refusal = smtp_reply_for_spool_error(s->tx_error);
    if (!refusal && fixes_headers(s) && !s->hdr.done)
        add_missing_headers(s); /* a message of headers only */
    if (!refusal && s->tx_error)
        refusal = smtp_reply_for_spool_error(s->tx_error);
    if (!refusal && fill_envelope(s) < 0)
        refusal = "451 4.3.0 Error: out of memory";
    if (refusal) {
        reply_reject(s, v, NULL, refusal);
        smtp_tx_reset(s);
        return;
    }
    s->env.size = s->data.size; /* for the log; the spool sets the real size */
    int rc = spool_msg_commit(s->msg, &s->env, on_committed, s);
    if (rc < 0) {
        /* not taken: the message is still ours to abort */
        reply_reject(s, v, NULL, smtp_reply_for_spool_error(rc));
        smtp_tx_reset(s);
        return;
    }
    /* Taken: the spool owns it now, even if the client goes away before the
     * callback (a close must not abort a message being committed). */
    s->msg = NULL;
    smtp_session_wait(s);
}

static bool rcpt_ready(smtp_session *s)
{
    if (s->state == SMTP_S_GREET || s->state == SMTP_S_READY) {
        smtp_reply(s, "503 5.5.1 Error: need MAIL command");
        return false;
    }
    if (s->env.nrcpt == 0) {
        smtp_reply(s, "554 5.5.1 Error: no valid recipients");
        return false;
    }
    return true;
}

static void do_data(smtp_session *s, const smtp_cmd *c)
{
    if (c->arg_len) {
        smtp_reply(s, "501 5.5.4 Syntax: DATA");
        smtp_cmd_error(s);
        return;
    }
    if (s->state == SMTP_S_BDAT_WAIT) {
        smtp_reply(s, "503 5.5.1 Error: DATA after BDAT");
        return;
    }
    if (!rcpt_ready(s))
        return;
    int rc = begin_message(s);
    if (rc < 0) {
        reply_reject(s, SMTP_VERB_DATA, NULL, smtp_reply_for_spool_error(rc));
        smtp_tx_reset(s);
        return;
    }
    smtp_data_init(&s->data, s->cfg->max_message_size);
    s->state = SMTP_S_DATA;
    smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void do_bdat(smtp_session *s, const smtp_cmd *c)
{
    uint64_t size;
    bool last;
    if (smtp_bdat_args_parse(c->arg, c->arg_len, &size, &last) != SMTP_POK) {
        /* The chunk size is unknown, so the byte stream cannot be followed. */
        smtp_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]; closing");
        s->quitting = true;
        return;
    }
    s->bdat_left = size;
    s->bdat_last = last;
    if (s->state != SMTP_S_BDAT_WAIT) {
        /* The first chunk: the transaction must be ready, or the chunk is
         * read and thrown away with the reason (RFC 3030 4.2). */
        const char *why = NULL;
        if (s->state == SMTP_S_GREET || s->state == SMTP_S_READY)
            why = "503 5.5.1 Error: need MAIL command";
        else if (s->env.nrcpt == 0)
            why = "554 5.5.1 Error: no valid recipients";
        else if (s->state != SMTP_S_MAIL)
            why = "503 5.5.1 Error: bad sequence of commands";
        if (!why) {
            int rc = begin_message(s);
            if (rc < 0)
                why = smtp_reply_for_spool_error(rc);
        }
        if (why) {
            s->bdat_failed = true;
            s->bdat_reply = why;
            log_reject(s, SMTP_VERB_BDAT, NULL, why);
        }
        smtp_data_init(&s->data, s->cfg->max_message_size);
    }
    s->state = SMTP_S_BDAT;
    if (size == 0)
        smtp_cmd_body(s, "", 0);
}

/* One BDAT chunk's bytes: raw, no dot-stuffing, no line rules (RFC 3030). */
static size_t bdat_bytes(smtp_session *s, const char *p, size_t len)
{
    size_t n = len < s->bdat_left ? len : (size_t)s->bdat_left;
    if (n && !s->bdat_failed) {
        uint64_t max = s->cfg->max_message_size;
        if (max && s->data.size + n > max)
            s->data.too_big = true;
        else {
            s->data.size += n;
            emit_body(s, p, n);
        }
    }
    s->bdat_left -= n;
    if (s->bdat_left == 0) {
        if (s->bdat_failed) {
            smtp_reply(s, "%s", s->bdat_reply);
            if (s->bdat_last)
                smtp_tx_reset(s);
            else
                s->state = SMTP_S_BDAT_WAIT;
        } else if (s->data.too_big || s->tx_error) {
            /* refuse now; later chunks of this transaction are discarded */
            const char *r = s->tx_error ? smtp_reply_for_spool_error(s->tx_error)
                                        : "552 5.3.4 Message size exceeds fixed maximum "
                                          "message size";
            reply_reject(s, SMTP_VERB_BDAT, NULL, r);
            if (s->bdat_last) {
                smtp_tx_reset(s);
            } else {
                s->bdat_failed = true;
                s->bdat_reply = r;
                s->state = SMTP_S_BDAT_WAIT;
            }
        } else if (s->bdat_last) {
            end_message(s, SMTP_VERB_BDAT);
        } else {
            smtp_reply(s, "250 2.0.0 Ok: %llu octets received", (unsigned long long)s->data.size);
            s->state = SMTP_S_BDAT_WAIT;
        }
    }
    maybe_flush(s);
    return n;
}

size_t smtp_cmd_body(smtp_session *s, const char *p, size_t len)
{
    if (s->state == SMTP_S_BDAT)
        return bdat_bytes(s, p, len);
    size_t n = smtp_data_feed(&s->data, p, len, emit_body, s);
    if (s->data.done)
        end_message(s, SMTP_VERB_DATA);
    else
        maybe_flush(s);
    return n;
}

/* ---- STARTTLS (RFC 3207) ---- */

static void do_starttls(smtp_session *s, const smtp_cmd *c)
{
    if (c->arg_len) {
        smtp_reply(s, "501 5.5.4 Syntax: STARTTLS");
        smtp_cmd_error(s);
    } else if (s->tls_on) {
        smtp_reply(s, "554 5.5.1 Error: TLS already active");
    } else if (!s->srv->tls_ctx) {
        smtp_reply(s, "454 4.7.0 TLS not available");
    } else if (s->state == SMTP_S_MAIL || s->state == SMTP_S_BDAT_WAIT) {
        smtp_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
    } else {
        smtp_reply(s, "220 2.0.0 Ready to start TLS");
        s->starttls_pending = true; /* the session switches once this is sent */
    }
}

/* ---- the rest ---- */

void smtp_cmd_line(smtp_session *s, const char *line, size_t len)
{
    smtp_cmd c;
    if (s->auth || s->auth_dv) {
        smtp_auth_cmd_line(s, line, len); /* a SASL response, not a command */
        return;
    }
    smtp_perr pe = smtp_cmd_parse(line, len, &c);

    if (s->state == SMTP_S_BDAT_WAIT && c.verb != SMTP_VERB_BDAT && c.verb != SMTP_VERB_RSET &&
        c.verb != SMTP_VERB_QUIT && c.verb != SMTP_VERB_NOOP) {
        smtp_reply(s, "503 5.5.1 Error: expected BDAT");
        smtp_cmd_error(s);
        return;
    }
    if (pe != SMTP_POK) {
        smtp_reply(s, "501 5.5.4 Syntax error in command");
        smtp_cmd_error(s);
        return;
    }
    switch (c.verb) {
    case SMTP_VERB_EHLO:
        do_helo(s, &c, true);
        break;
    case SMTP_VERB_HELO:
        do_helo(s, &c, false);
        break;
    case SMTP_VERB_MAIL:
        do_mail(s, &c);
        break;
    case SMTP_VERB_RCPT:
        do_rcpt(s, &c);
        break;
    case SMTP_VERB_DATA:
        do_data(s, &c);
        break;
    case SMTP_VERB_BDAT:
        do_bdat(s, &c);
        break;
    case SMTP_VERB_RSET:
        if (c.arg_len) {
            smtp_reply(s, "501 5.5.4 Syntax: RSET");
            break;
        }
        smtp_tx_reset(s);
        smtp_reply(s, "250 2.0.0 Ok");
        break;
    case SMTP_VERB_NOOP:
        smtp_reply(s, "250 2.0.0 Ok");
        break;
    case SMTP_VERB_QUIT:
        smtp_reply(s, "221 2.0.0 Bye");
        s->quitting = true;
        break;
    case SMTP_VERB_VRFY:
        if (c.arg_len == 0) {
            smtp_reply(s, "501 5.5.4 Syntax: VRFY address");
            break;
        }
        /* RFC 5321 3.5.3: no address harvesting, but no false "no". */
        smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case SMTP_VERB_EXPN:
        smtp_reply(s, "502 5.5.1 Error: EXPN is not supported");
        break;
    case SMTP_VERB_HELP:
        smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY "
                      "HELP; see RFC 5321");
        break;
    case SMTP_VERB_STARTTLS:
        do_starttls(s, &c);
        break;
    case SMTP_VERB_AUTH:
        smtp_auth_cmd(s, c.arg, c.arg_len);
        break;
    case SMTP_VERB_UNKNOWN:
    default:
        smtp_reply(s, "500 5.5.2 Error: command not recognized");
        smtp_cmd_error(s);
        break;
    }
}
