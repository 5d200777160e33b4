/*
 * smtp_session.c - session I/O: reading, line splitting, reply batching,
 * timeouts and the close protocol (see smtp_session.h).
 *
 * Memory per idle session is the struct alone: reads land in one buffer
 * shared by the loop, and a session copies out only bytes it cannot
 * process yet (bounded by SMTP_PENDING_MAX).
 */
#include "sluice/smtp_session.h"

#include <errno.h>
#include <pwd.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/log.h"
#include "sluice/smtp_auth.h"
#include "sluice/spf_check.h"

#define RBUF_SIZE (64u * 1024u)

static void session_process(smtp_session *s);
static bool session_flush(smtp_session *s);

void smtp_session_ref(smtp_session *s)
{
    s->refs++;
}

void smtp_session_unref(smtp_session *s)
{
    if (--s->refs > 0)
        return;
    envelope_free(&s->env);
    free(s->spf_header);
    smtp_auth_cmd_abort(s);
    tls_conn_free(&s->tls);
    sbuf_free(&s->pend);
    sbuf_free(&s->out);
    sbuf_free(&s->wout);
    config_release(s->cfg);
    free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    smtp_session_unref(h->data);
}

void smtp_session_drain(smtp_session *s)
{
    if (s->closing || s->quitting)
        return;
    bool idle = !s->waiting && !s->auth && (s->state == SMTP_S_GREET || s->state == SMTP_S_READY);
    if (!idle)
        return; /* smtp_tx_reset drains it when its transaction ends */
    if (s->tls_on && !s->tls.handshake_done) {
        smtp_session_close(s); /* nothing readable can be said yet */
        return;
    }
    smtp_reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
    s->quitting = true;
    session_flush(s);
}

void smtp_session_close(smtp_session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->msg) {
        spool_msg_abort(s->msg);
        s->msg = NULL;
    }
    if (s->counted) {
        smtp_server_conn_del(s->srv, (struct sockaddr *)&s->peer);
        s->counted = false;
    }
    /* unlink from the server's list */
    if (s->prev)
        s->prev->next = s->next;
    else if (s->srv->sessions == s)
        s->srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;

    smtp_rdns_cancel(s);
    if (s->spf_req)
        spf_check_cancel(s->spf_req); /* its callback still runs, then lets go */
    log_info("disconnect from %s[%s]", s->peer_name, s->peer_ip);
    smtp_server_session_gone(s->srv);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close(&s->io.handle, on_handle_closed);
}

/*
 * Once a message body has begun, the transaction must also average
 * min_data_rate: its end may come no later than timeout_data_block after
 * the first body byte plus the time its bytes take at that rate (the
 * budget of Postfix's smtpd_min_data_rate). A client that keeps sending a
 * byte just inside every timeout_data_block cannot hold the session for
 * ever. Returns 0 when no budget applies.
 */
static uint64_t body_budget_end(const smtp_session *s)
{
    const sluice_config *cfg = s->cfg;
    if (!s->body_start_ms || !cfg->min_data_rate)
        return 0;
    return s->body_start_ms + (uint64_t)cfg->timeout_data_block * 1000 +
           s->body_bytes * 1000 / cfg->min_data_rate;
}

static bool in_body(const smtp_session *s)
{
    return s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT;
}

static bool arm_timer(smtp_session *s);

static void on_timeout(uv_timer_t *t)
{
    smtp_session *s = t->data;
    uint64_t end = body_budget_end(s), now = uv_now(s->srv->loop);
    if (end && now >= end)
        log_info("timeout: message body from %s[%s] too slow: %llu bytes in %llu ms "
                 "(min_data_rate %u bytes/s)",
                 s->peer_name, s->peer_ip, (unsigned long long)s->body_bytes,
                 (unsigned long long)(now - s->body_start_ms), s->cfg->min_data_rate);
    else
        log_info("timeout after %s from %s[%s]", in_body(s) ? "DATA" : "command", s->peer_name,
                 s->peer_ip);
    /*
     * A client that stopped reading may never let a queued write finish:
     * say goodbye only if the socket takes it now, then close regardless.
     */
    char msg[300];
    int n =
        snprintf(msg, sizeof(msg), "421 4.4.2 %s Error: timeout exceeded\r\n", s->cfg->hostname);
    /* Before a TLS handshake completes, no reply can be read: just close. */
    if (!s->writing && n > 0) {
        if (!s->tls_on) {
            uv_buf_t b = uv_buf_init(msg, (unsigned)n);
            uv_try_write(&s->io.stream, &b, 1);
        } else if (s->tls.handshake_done && tls_conn_write(&s->tls, msg, (size_t)n) == 0) {
            /* under TLS the goodbye must be a TLS record too */
            char rec[1024];
            size_t len = tls_conn_take(&s->tls, rec, sizeof(rec));
            uv_buf_t b = uv_buf_init(rec, (unsigned)len);
            if (len)
                uv_try_write(&s->io.stream, &b, 1);
        }
    }
    smtp_session_close(s);
}

/*
 * Arms the session's timer; returns whether the min_data_rate budget, not
 * the plain timeout, set it (then more body bytes move it).
 */
static bool arm_timer(smtp_session *s)
{
    if (s->closing)
        return false;
    const sluice_config *cfg = s->cfg;
    unsigned secs = in_body(s) ? cfg->timeout_data_block : cfg->timeout_command;
    uint64_t ms = (uint64_t)secs * 1000, end = body_budget_end(s), now = uv_now(s->srv->loop);
    bool budget = end && (end <= now || end - now < ms);
    if (budget)
        ms = end <= now ? 0 : end - now;
    uv_timer_start(&s->timer, on_timeout, ms, 0);
    return budget;
}

/* ---- output ---- */

static void on_write(uv_write_t *req, int status)
{
    smtp_session *s = req->data;
    s->writing = false;
    sbuf_reset(&s->wout);
    if (status < 0) {
        if (!s->closing)
            log_info("write to %s[%s] failed: %s", s->peer_name, s->peer_ip, uv_strerror(status));
        smtp_session_close(s);
        smtp_session_unref(s);
        return;
    }
    if (!s->closing) {
        if (s->quitting && s->out.len == 0)
            smtp_session_close(s);
        else if (!s->waiting)
            session_process(s); /* output may have held input back: go on */
        else
            session_flush(s);
    }
    smtp_session_unref(s);
}

static void start_tls(smtp_session *s);

/*
 * Sends what the replies (and TLS) have queued. Returns true when it all
 * went out at once: then no write is in flight and nothing will call back,
 * so the caller goes on with input that output had held back.
 */
static bool session_flush(smtp_session *s)
{
    if (s->closing || s->writing)
        return false;
    if (s->tls_on) {
        /* plaintext replies become ciphertext; handshake records join them */
        if (s->out.len && s->tls.handshake_done) {
            if (tls_conn_write(&s->tls, s->out.data, s->out.len) < 0) {
                smtp_session_close(s);
                return false;
            }
            sbuf_reset(&s->out);
        }
        size_t n = tls_conn_pending(&s->tls);
        if (n && sbuf_reserve(&s->wout, n) == 0)
            s->wout.len += tls_conn_take(&s->tls, s->wout.data + s->wout.len, n);
    } else {
        sbuf t = s->wout;
        s->wout = s->out;
        s->out = t;
        sbuf_reset(&s->out);
    }
    if (s->wout.len == 0) {
        if (s->quitting)
            smtp_session_close(s);
        return false;
    }
    /*
     * A reply almost always fits in the socket's buffer: written here, it
     * needs no write request, and libuv then has no completion to queue and
     * no poll registration to touch (one epoll_ctl per reply otherwise).
     */
    int n = uv_try_write(&s->io.stream, &(uv_buf_t){.base = s->wout.data, .len = s->wout.len}, 1);
    if (n < 0 && n != UV_EAGAIN) {
        log_info("write to %s[%s] failed: %s", s->peer_name, s->peer_ip, uv_strerror(n));
        smtp_session_close(s);
        return false;
    }
    bool all = n >= 0 && (size_t)n == s->wout.len;
    if (all) {
        sbuf_reset(&s->wout);
    } else {
        if (n > 0)
            sbuf_consume(&s->wout, (size_t)n);
        uv_buf_t b = uv_buf_init(s->wout.data, (unsigned)s->wout.len);
        s->wreq.data = s;
        int rc = uv_write(&s->wreq, &s->io.stream, &b, 1, on_write);
        if (rc < 0) {
            smtp_session_close(s);
            return false;
        }
        s->writing = true;
        smtp_session_ref(s);
    }
    /* The 220 for STARTTLS is now with the socket, in plaintext. */
    if (s->starttls_pending && s->out.len == 0)
        start_tls(s);
    if (all && s->quitting && s->out.len == 0) {
        smtp_session_close(s);
        return false;
    }
    return all;
}

void smtp_reply(smtp_session *s, const char *fmt, ...)
{
    va_list ap;
    if (s->closing)
        return;
    va_start(ap, fmt);
    int rc = sbuf_vprintf(&s->out, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = sbuf_append(&s->out, "\r\n", 2);
    if (rc < 0) {
        /* Only a client that never reads can fill this: drop it. */
        log_warn("reply buffer for %s[%s] full; closing", s->peer_name, s->peer_ip);
        s->quitting = true;
    }
}

/* ---- input ---- */

void smtp_session_wait(smtp_session *s)
{
    s->waiting = true;
    smtp_session_ref(s);
}

void smtp_session_resume(smtp_session *s)
{
    s->waiting = false;
    /* Every wait (commit, flush, AUTH, SPF) ends here: during a shutdown a
     * session that is idle again says goodbye now, not at the grace's end. */
    if (!s->closing && smtp_server_draining(s->srv))
        smtp_session_drain(s);
    if (!s->closing) {
        arm_timer(s);
        session_process(s);
    }
    smtp_session_unref(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    smtp_session *s = h->data;
    smtp_server *srv = s->srv;
    (void)suggested;
    if (!srv->rbuf) {
        srv->rbuf = malloc(RBUF_SIZE);
        if (!srv->rbuf) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
    }
    *buf = uv_buf_init(srv->rbuf, RBUF_SIZE);
}

static void read_stop(smtp_session *s)
{
    if (s->reading) {
        uv_read_stop(&s->io.stream);
        s->reading = false;
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void read_start(smtp_session *s)
{
    if (!s->reading && !s->closing && !s->quitting) {
        if (uv_read_start(&s->io.stream, on_alloc, on_read) == 0)
            s->reading = true;
    }
}

/*
 * A client may pipeline faster than it reads replies. Past this much unsent
 * output, commands wait (in the pending buffer, then in the socket) until
 * the client has read some: backpressure, not a growing buffer.
 */
static bool output_full(const smtp_session *s)
{
    return s->out.len + s->wout.len >= SMTP_OUT_MAX / 2;
}

/*
 * Handles complete command lines at the start of p. Returns the bytes
 * consumed; stops early when the session starts waiting or changes into
 * a body state.
 */
static size_t process_commands(smtp_session *s, const char *p, size_t len)
{
    size_t used = 0;
    while (used < len && !s->waiting && !s->quitting && !s->closing && !s->starttls_pending &&
           !in_body(s) && !output_full(s)) {
        const char *line = p + used;
        size_t avail = len - used;
        const char *lf = memchr(line, '\n', avail);
        if (s->discard_line) {
            if (!lf)
                return len; /* keep skipping, hold nothing */
            used += (size_t)(lf - line) + 1;
            s->discard_line = false;
            smtp_reply(s, "500 5.5.2 Error: line too long");
            smtp_cmd_error(s);
            continue;
        }
        /* SASL responses may be long (RFC 4954 4: 12288 octets). */
        size_t max = (s->auth || s->auth_dv || (avail >= 5 && strncasecmp(line, "AUTH ", 5) == 0))
                         ? SMTP_AUTH_LINE_MAX
                         : SMTP_CMD_LINE_MAX;
        if (!lf) {
            if (avail > max) {
                s->discard_line = true;
                return len;
            }
            break; /* an incomplete line: wait for more */
        }
        size_t n = (size_t)(lf - line);
        used += n + 1;
        if (n + 1 > max) {
            smtp_reply(s, "500 5.5.2 Error: line too long");
            smtp_cmd_error(s);
            continue;
        }
        /*
         * A command line must end in CRLF. A bare LF is accepted as the end
         * of a command (as Postfix does): commands are not data, and
         * refusing them gains nothing. Only DATA is strict.
         */
        if (n > 0 && line[n - 1] == '\r')
            n--;
        arm_timer(s);
        smtp_cmd_line(s, line, n);
    }
    return used;
}

static size_t process_bytes(smtp_session *s, const char *p, size_t len)
{
    size_t used = 0;
    while (used < len && !s->waiting && !s->closing && !s->quitting && !s->starttls_pending) {
        size_t n;
        if (in_body(s)) {
            if (!s->body_start_ms)
                s->body_start_ms = uv_now(s->srv->loop);
            n = smtp_cmd_body(s, p + used, len - used);
            s->body_bytes += n;
        } else
            n = process_commands(s, p + used, len - used);
        if (n == 0)
            break;
        used += n;
    }
    return used;
}

/* New plaintext: processed at once when nothing waits, else kept in order. */
static void session_input(smtp_session *s, const char *p, size_t len)
{
    if (s->pend.len == 0 && !s->waiting && !s->starttls_pending) {
        size_t n = process_bytes(s, p, len);
        p += n;
        len -= n;
    }
    if (len && !s->closing && sbuf_append(&s->pend, p, len) < 0) {
        log_warn("input buffer of %s[%s] full; closing", s->peer_name, s->peer_ip);
        smtp_session_close(s);
    }
}

static void on_tls_ready(smtp_session *s)
{
    log_info("TLS established with %s[%s]: %s with cipher %s (%d bits)", s->peer_name, s->peer_ip,
             tls_conn_version(&s->tls), tls_conn_cipher(&s->tls), tls_conn_bits(&s->tls));
    if (s->kind == LISTEN_SMTPS)
        smtp_cmd_greet(s);
}

/* Decrypts what the TLS layer holds, while the session can take input. */
static void tls_pump(smtp_session *s)
{
    smtp_server *srv = s->srv;
    if (!srv->pbuf && !(srv->pbuf = malloc(RBUF_SIZE))) {
        smtp_session_close(s);
        return;
    }
    while (!s->closing && !s->waiting && !s->quitting && !s->starttls_pending && s->pend.len == 0) {
        int n = tls_conn_read(&s->tls, srv->pbuf, RBUF_SIZE);
        if (n == 0)
            return;
        if (n < 0) {
            if (n != TLS_EOF)
                log_info("TLS read from %s[%s] failed", s->peer_name, s->peer_ip);
            smtp_session_close(s);
            return;
        }
        session_input(s, srv->pbuf, (size_t)n);
    }
}

/* Processes what is pending; reading resumes when nothing blocks. */
static void session_process(smtp_session *s)
{
    bool again;
    do {
        if (s->pend.len && !s->waiting && !s->starttls_pending) {
            size_t n = process_bytes(s, s->pend.data, s->pend.len);
            sbuf_consume(&s->pend, n);
        }
        if (s->tls_on && s->tls.handshake_done && !s->closing)
            tls_pump(s);
        if (s->closing)
            return;
        /* Output that went out at once may have held pipelined commands
         * back (output_full): go on with them now, as on_write would. */
        again = session_flush(s) && s->pend.len && !s->waiting && !s->starttls_pending;
        if (s->closing)
            return;
    } while (again);
    /* Read only while a whole read buffer still fits behind what is pending. */
    if (s->waiting || s->quitting || output_full(s) || s->pend.len > SMTP_PENDING_MAX - RBUF_SIZE)
        read_stop(s);
    else
        read_start(s);
}

/*
 * Switches to TLS after "220 Ready to start TLS" went out. Whatever the
 * client pipelined behind STARTTLS is thrown away unread (CVE-2011-0411),
 * and everything learned before TLS is forgotten (RFC 3207 4.2).
 */
static void start_tls(smtp_session *s)
{
    s->starttls_pending = false;
    if (s->pend.len) {
        log_warn("discarding %zu bytes pipelined after STARTTLS from %s[%s]", s->pend.len,
                 s->peer_name, s->peer_ip);
        sbuf_reset(&s->pend);
    }
    if (tls_conn_init(&s->tls, s->srv->tls_ctx, true, NULL, false) < 0) {
        smtp_session_close(s);
        return;
    }
    s->tls_on = true;
    s->helo[0] = '\0';
    s->esmtp = false;
    smtp_tx_reset(s);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    smtp_session *s = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_info("read from %s[%s] failed: %s", s->peer_name, s->peer_ip,
                     uv_strerror((int)nread));
        else if (in_body(s))
            log_info("lost connection after DATA from %s[%s]", s->peer_name, s->peer_ip);
        smtp_session_close(s);
        return;
    }
    /*
     * In DATA the timeout runs between reads (RFC 5321 4.5.3.2.6). For
     * commands it is a deadline for the whole line, re-armed only when a
     * command completes, so a client trickling a byte at a time
     * (slowloris) cannot hold its connection open for ever.
     */
    bool was_body = in_body(s), budget = was_body && arm_timer(s);
    if (!s->tls_on) {
        session_input(s, buf->base, (size_t)nread);
    } else {
        if (tls_conn_feed(&s->tls, buf->base, (size_t)nread) < 0) {
            smtp_session_close(s);
            return;
        }
        if (!s->tls.handshake_done) {
            char err[256];
            int rc = tls_conn_handshake(&s->tls, err, sizeof(err));
            if (rc < 0) {
                log_info("TLS handshake with %s[%s] failed: %s", s->peer_name, s->peer_ip, err);
                s->quitting = true; /* send the alert, then close */
                session_flush(s);
                return;
            }
            if (rc == 1)
                on_tls_ready(s);
        }
    }
    if (!s->closing)
        session_process(s);
    /* A body whose first bytes came in this read gets its timeout; the bytes just
     * counted move a min_data_rate deadline (when the plain timeout was the
     * nearer one, more bytes leave it so: no second arm). */
    if ((budget || !was_body) && s->body_start_ms && !s->closing && in_body(s))
        arm_timer(s);
}

/*
 * Local submissions are identified by the kernel (SO_PEERCRED), not by
 * anything the client says: the uid becomes the session's identity.
 */
static void smtp_session_local_identity(smtp_session *s)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    uv_os_fd_t fd;
    if (uv_fileno(&s->io.handle, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        struct passwd pw, *res = NULL;
        char buf[1024];
        if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &res) == 0 && res)
            snprintf(s->auth_id, sizeof(s->auth_id), "%s", res->pw_name);
        else
            snprintf(s->auth_id, sizeof(s->auth_id), "uid%u", (unsigned)cred.uid);
        s->local_uid = (long)cred.uid;
    }
}

void smtp_session_accept(smtp_server *srv, uv_stream_t *listener, enum listen_kind kind)
{
    smtp_session *s = calloc(1, sizeof(*s));
    if (!s) {
        log_err("out of memory accepting a connection");
        return;
    }
    s->srv = srv;
    s->cfg = config_hold(srv->cfg);
    s->kind = kind;
    s->refs = 2; /* the two handles' close callbacks */
    s->io.handle.data = s;
    s->timer.data = s;
    sbuf_init(&s->pend, SMTP_PENDING_MAX);
    sbuf_init(&s->out, SMTP_OUT_MAX);
    sbuf_init(&s->wout, 0);
    envelope_init(&s->env);
    uv_timer_init(srv->loop, &s->timer);
    if (kind == LISTEN_LOCAL)
        uv_pipe_init(srv->loop, &s->io.pipe, 0);
    else
        uv_tcp_init(srv->loop, &s->io.tcp);
    s->closing = false;
    if (uv_accept(listener, &s->io.stream) < 0) {
        s->closing = true;
        uv_close((uv_handle_t *)&s->timer, on_handle_closed);
        uv_close(&s->io.handle, on_handle_closed);
        return;
    }
    if (kind != LISTEN_LOCAL) {
        uv_tcp_nodelay(&s->io.tcp, 1);
        int namelen = sizeof(s->peer);
        uv_tcp_getpeername(&s->io.tcp, (struct sockaddr *)&s->peer, &namelen);
    } else {
        s->peer.ss_family = AF_UNIX;
    }
    if (s->peer.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&s->peer, s->peer_ip, sizeof(s->peer_ip));
    else if (s->peer.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&s->peer, s->peer_ip, sizeof(s->peer_ip));
    else
        snprintf(s->peer_ip, sizeof(s->peer_ip), "local");
    s->local_uid = -1;
    /* Reverse lookups arrive with the resolver; until then, as Postfix says: */
    snprintf(s->peer_name, sizeof(s->peer_name), kind == LISTEN_LOCAL ? "localhost" : "unknown");
    if (kind == LISTEN_LOCAL)
        smtp_session_local_identity(s);

    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;

    log_info("connect from %s[%s]", s->peer_name, s->peer_ip);
    smtp_rdns_start(s);
    /* Local submissions are not network clients: no per-IP accounting. */
    int lim = kind == LISTEN_LOCAL ? 0 : smtp_server_conn_add(srv, (struct sockaddr *)&s->peer);
    if (lim < 0 && kind == LISTEN_SMTPS) {
        /* Before the handshake a plaintext 421 would only be a TLS error. */
        log_info("reject: connect from %s[%s]: too many connections", s->peer_name, s->peer_ip);
        smtp_session_close(s);
        return;
    }
    if (lim < 0) {
        smtp_reply(s, "421 4.7.0 %s Error: too many connections%s", srv->cfg->hostname,
                   lim == -EUSERS ? " from your address" : "");
        log_info("reject: connect from %s[%s]: too many connections%s", s->peer_name, s->peer_ip,
                 lim == -EUSERS ? " from this address" : "");
        s->quitting = true;
        session_flush(s);
        return;
    }
    s->counted = kind != LISTEN_LOCAL;
    if (kind == LISTEN_SMTPS) {
        /* RFC 8314: TLS first; the greeting comes after the handshake. */
        if (tls_conn_init(&s->tls, srv->tls_ctx, true, NULL, false) < 0) {
            smtp_session_close(s);
            return;
        }
        s->tls_on = true;
    } else {
        smtp_cmd_greet(s);
    }
    arm_timer(s);
    session_process(s);
}
