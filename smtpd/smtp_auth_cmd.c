/*
 * smtp_auth_cmd.c - the AUTH command (RFC 4954) between the session and
 * Cyrus SASL (smtp_auth.c). SASL calls may block on the sasldb file, so
 * each step runs on libuv's thread pool while the session waits; replies
 * come from smtp_auth_reply's one table. Failures are counted per client
 * address, and past the limit the client is told 421 and dropped.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sluice/log.h"
#include "sluice/smtp_auth.h"
#include "sluice/smtp_auth_dovecot.h"
#include "sluice/smtp_auth_throttle.h"
#include "sluice/smtp_session.h"

static uint64_t now_ms(const smtp_session *s)
{
    return uv_now(s->srv->loop);
}

/* Whether AUTH may be offered now: under TLS, or plaintext on loopback when allowed. */
bool smtp_auth_offered(const smtp_session *s)
{
    if (!s->srv->auth_ready || s->kind == LISTEN_LOCAL)
        return false;
    if (s->tls_on)
        return true;
    if (!s->cfg->allow_plaintext_auth)
        return false;
    const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

struct auth_work {
    uv_work_t req;
    smtp_session *s;
    char mech[sizeof(((smtp_session *)0)->auth_mech)];
    char *line; /* initial response or client line, NULL for none */
    size_t len;
    bool start;
    int rc;
    smtp_auth_result res;
};

static bool dovecot(const smtp_session *s)
{
    return s->cfg->auth_backend == AUTH_BACKEND_DOVECOT;
}

/* The mechanisms for "250-AUTH", from the backend in use. */
const char *smtp_auth_cmd_mechs(const smtp_session *s)
{
    return dovecot(s) ? smtp_auth_dovecot_mechs() : smtp_auth_mechs();
}

static void auth_end(smtp_session *s)
{
    if (s->auth) {
        smtp_auth_free(s->auth);
        s->auth = NULL;
    }
    if (s->auth_dv) {
        smtp_auth_dovecot_free(s->auth_dv);
        s->auth_dv = NULL;
    }
}

static void work_run(uv_work_t *req)
{
    struct auth_work *w = req->data;
    smtp_session *s = w->s;
    if (s->auth_dv && w->start)
        w->rc = smtp_auth_dovecot_start(s->auth_dv, w->mech, w->line, w->len, &w->res);
    else if (s->auth_dv)
        w->rc = smtp_auth_dovecot_step(s->auth_dv, w->line, w->len, &w->res);
    else if (w->start)
        w->rc = smtp_auth_start(s->auth, w->mech, w->line, w->len, &w->res);
    else
        w->rc = smtp_auth_step(s->auth, w->line, w->len, &w->res);
}

static void work_done(uv_work_t *req, int status)
{
    struct auth_work *w = req->data;
    smtp_session *s = w->s;
    if (w->line) {
        explicit_bzero(w->line, w->len);
        free(w->line);
    }
    if (s->closing) {
        auth_end(s);
        free(w);
        smtp_session_resume(s);
        return;
    }
    enum smtp_auth_status st = status < 0 || w->rc < 0 ? SMTP_AUTH_TEMP : w->res.status;
    switch (st) {
    case SMTP_AUTH_CONTINUE:
        smtp_reply(s, "334 %s", w->res.challenge ? w->res.challenge : "");
        break;
    case SMTP_AUTH_OK:
        snprintf(s->auth_id, sizeof(s->auth_id), "%s", w->res.user);
        smtp_reply(s, "%s", smtp_auth_reply(st));
        log_info("AUTH from %s[%s]: sasl_method=%s, sasl_username=%s", s->peer_name, s->peer_ip,
                 s->auth_mech, s->auth_id);
        auth_end(s);
        break;
    case SMTP_AUTH_FAIL:
        auth_throttle_fail(s->srv->auth_throttle, (struct sockaddr *)&s->peer, now_ms(s));
        /* fall through */
    default:
        smtp_reply(s, "%s", smtp_auth_reply(st));
        log_info("AUTH from %s[%s] failed: sasl_method=%s, result=%s", s->peer_name, s->peer_ip,
                 s->auth_mech, smtp_auth_status_name(st));
        auth_end(s);
        if (st == SMTP_AUTH_FAIL &&
            auth_throttle_blocked(s->srv->auth_throttle, (struct sockaddr *)&s->peer, now_ms(s))) {
            smtp_reply(s, "%s", AUTH_THROTTLE_REPLY);
            log_warn("too many AUTH failures from %s[%s]; closing", s->peer_name, s->peer_ip);
            s->quitting = true;
        }
        break;
    }
    free(w);
    smtp_session_resume(s);
}

static void run(smtp_session *s, bool start, const char *mech, const char *line, size_t len)
{
    struct auth_work *w = calloc(1, sizeof(*w));
    if (!w || (line && !(w->line = malloc(len + 1)))) {
        free(w);
        smtp_reply(s, "%s", smtp_auth_reply(SMTP_AUTH_TEMP));
        auth_end(s);
        return;
    }
    w->req.data = w;
    w->s = s;
    w->start = start;
    if (mech)
        snprintf(w->mech, sizeof(w->mech), "%s", mech);
    if (line) {
        memcpy(w->line, line, len);
        w->line[len] = '\0';
        w->len = len;
    }
    smtp_session_wait(s);
    if (uv_queue_work(s->srv->loop, &w->req, work_run, work_done) < 0) {
        free(w->line);
        free(w);
        smtp_reply(s, "%s", smtp_auth_reply(SMTP_AUTH_TEMP));
        auth_end(s);
        smtp_session_resume(s);
    }
}

void smtp_auth_cmd(smtp_session *s, const char *arg, size_t len)
{
    if (!smtp_auth_offered(s)) {
        if (s->srv->auth_ready && !s->tls_on)
            smtp_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
        else
            smtp_reply(s, "502 5.5.1 Error: authentication not enabled");
        return;
    }
    if (!s->esmtp) {
        smtp_reply(s, "503 5.5.1 Error: send EHLO first");
        return;
    }
    if (s->auth_id[0]) {
        smtp_reply(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (s->state != SMTP_S_READY) {
        smtp_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (auth_throttle_blocked(s->srv->auth_throttle, (struct sockaddr *)&s->peer, now_ms(s))) {
        smtp_reply(s, "%s", AUTH_THROTTLE_REPLY);
        log_warn("AUTH from %s[%s] refused: too many failures", s->peer_name, s->peer_ip);
        s->quitting = true;
        return;
    }
    size_t mlen = 0;
    while (mlen < len && arg[mlen] != ' ')
        mlen++;
    /* A name outside RFC 4422's alphabet is refused before anything logs it. */
    char up[SMTP_AUTH_MECH_MAX + 1];
    if (mlen > 0 && !smtp_auth_mech_name(arg, mlen, up)) {
        smtp_reply(s, "%s", smtp_auth_reply(SMTP_AUTH_NO_MECH));
        log_info("AUTH from %s[%s] failed: invalid mechanism name", s->peer_name, s->peer_ip);
        smtp_cmd_error(s);
        return;
    }
    if (mlen == 0) {
        smtp_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        smtp_cmd_error(s);
        return;
    }
    snprintf(s->auth_mech, sizeof(s->auth_mech), "%.*s", (int)mlen, arg);
    const char *ir = NULL;
    size_t irlen = 0;
    if (mlen < len) {
        ir = arg + mlen + 1;
        irlen = len - mlen - 1;
    }
    char local[128] = "", remote[128] = "";
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    if (uv_tcp_getsockname(&s->io.tcp, (struct sockaddr *)&ss, &namelen) == 0)
        smtp_auth_ipport((struct sockaddr *)&ss, local, sizeof(local));
    smtp_auth_ipport((struct sockaddr *)&s->peer, remote, sizeof(remote));
    int nr = dovecot(s) ? smtp_auth_dovecot_new(s->cfg->hostname, NULL, local, remote, &s->auth_dv)
                        : smtp_auth_new(s->cfg->hostname, NULL, local, remote, &s->auth);
    if (nr < 0) {
        smtp_reply(s, "%s", smtp_auth_reply(SMTP_AUTH_TEMP));
        return;
    }
    run(s, true, s->auth_mech, ir, irlen);
}

void smtp_auth_cmd_line(smtp_session *s, const char *line, size_t len)
{
    run(s, false, NULL, line, len);
}

void smtp_auth_cmd_abort(smtp_session *s)
{
    auth_end(s);
}
