/*
 * smtp_auth_dovecot.c - SMTP AUTH (RFC 4954) through Dovecot's auth-client
 * socket (see smtp_auth_dovecot.h).
 *
 * The auth-client protocol (Dovecot's doc "Dovecot Authentication Protocol",
 * version 1.2) is line based, fields separated by TAB:
 *
 *   C: VERSION 1 2            S: VERSION 1 2
 *   C: CPID <pid>             S: MECH <name> [flags...]   (one per mechanism)
 *                             S: SPID / CUID / COOKIE     (ignored here)
 *                             S: DONE
 *   C: AUTH <id> <MECH> service=smtp secured no-penalty lip= rip= ... resp=<b64>
 *                             S: CONT <id> <b64>   -> 334 <b64>
 *   C: CONT <id> <b64>        S: OK <id> user=<login> ...
 *                             S: FAIL <id> [code=...] [reason=...] [temp]
 *
 * Choices, each for a reason:
 * - One connection per exchange. Dovecot keeps a SASL exchange's state on the
 *   connection that began it, and an exchange may wait minutes for its SMTP
 *   client; a shared connection would need a reader thread and request
 *   routing for no gain on a local socket.
 * - CPID is our pid on every connection. Dovecot checks CPIDs for
 *   uniqueness only on its login sockets (the ones imap-login uses to hand a
 *   session over); on auth-client sockets the CPID is ignored, so concurrent
 *   connections may share it (checked against Dovecot 2.3).
 * - The mechanism is checked against Dovecot's MECH lines before AUTH is sent:
 *   Dovecot drops the connection on an unknown mechanism, which would
 *   otherwise look like an outage (454) instead of 504.
 * - Client base64 is checked here before it is sent on: a line is never
 *   forwarded unless it is pure base64, so nothing the client sends can add a
 *   TAB or LF (a new field or line) to the request. resp= is the last field,
 *   as the protocol asks.
 * - PLAIN data without exactly two NULs is refused here with 501 (as the
 *   Cyrus backend does), not sent to Dovecot to come back as a 535 that would
 *   count against the client's failure limit.
 * - no-penalty: Dovecot's anvil would delay the next request from a failing
 *   address by up to 15 s, holding a thread-pool thread for that long; Sluice
 *   throttles failed logins itself (smtp_auth_throttle.h).
 * - "*" (cancel) is answered locally; closing the connection ends the request
 *   in Dovecot.
 */
#include "sluice/smtp_auth_dovecot.h"

#include "sluice/log.h"
#include "smtp_auth_text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Decoded size of the longest base64 line we accept. */
#define DV_DECODED_MAX (SMTP_AUTH_LINE_MAX / 4 * 3)
/* Longest line taken from Dovecot: a CONT with a full-size challenge, and room. */
#define DV_LINE_MAX (SMTP_AUTH_LINE_MAX + 1024)
/* Longest request line: AUTH, its fields, and resp= with a full-size line. */
#define DV_REQ_MAX (SMTP_AUTH_LINE_MAX + 512)
/* Mechanism names Dovecot may announce, space-separated. */
#define DV_MECHS_MAX 1024
/* The request id: one request per connection. */
#define DV_ID "1"

enum dv_phase {
    DV_NEW,   /* created; start not called */
    DV_CONT,  /* a CONT came; waiting for the client's line */
    DV_FINAL, /* OK with success data came; the client must send an empty line */
    DV_DONE,  /* a final result was given: only free is valid */
};

struct smtp_auth_dovecot {
    int fd;
    enum dv_phase phase;
    char lip[INET6_ADDRSTRLEN], rip[INET6_ADDRSTRLEN];
    char lport[8], rport[8];
    char server_mechs[DV_MECHS_MAX]; /* from the handshake, non-private, space-separated */
    size_t rlen;                     /* bytes buffered in rbuf */
    size_t skip;                     /* bytes of the last line handed out */
    char user[SMTP_AUTH_USER_MAX + 1];
    char pending_user[SMTP_AUTH_USER_MAX + 1]; /* DV_FINAL: the login to report */
    char out[SMTP_AUTH_LINE_MAX + 1];          /* base64 challenge for the client */
    char rbuf[DV_LINE_MAX + 1];
    char req[DV_REQ_MAX + 1];              /* request line: holds credentials, zeroed after use */
    unsigned char dec[DV_DECODED_MAX + 1]; /* decoded PLAIN data: zeroed after use */
};

/* Set by smtp_auth_dovecot_init before any session, read-only afterwards. */
static struct {
    bool configured;
    char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *mech_list; /* configured, upper case, one space apart */
    char *mechs;     /* those announced in EHLO */
} g;

/* ---- socket I/O with one deadline per reply ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline. 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int dv_connect(const char *path, long long deadline, int *out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        /* a unix socket whose backlog is full: wait for room */
        if (e != EAGAIN && e != EINPROGRESS) {
            close(fd);
            return -e;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        socklen_t sl = sizeof(e);
        if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e != 0)
            r = -e;
        if (r < 0) {
            close(fd);
            return r;
        }
    }
    *out = fd;
    return 0;
}

static int write_all(int fd, const char *p, size_t n, long long deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        return w < 0 ? -errno : -EPIPE;
    }
    return 0;
}

/*
 * Reads one line (LF removed, NUL-terminated in place) from the socket;
 * *line and *n describe it, at the front of a->rbuf, until the next call.
 * 0, -ETIMEDOUT, -EPIPE (closed), -EMSGSIZE (a line over DV_LINE_MAX) or
 * -errno.
 */
static int read_line(smtp_auth_dovecot *a, long long deadline, char **line, size_t *n)
{
    if (a->skip > 0) { /* drop the line handed out last time */
        memmove(a->rbuf, a->rbuf + a->skip, a->rlen - a->skip);
        a->rlen -= a->skip;
        a->skip = 0;
    }
    for (;;) {
        char *nl = memchr(a->rbuf, '\n', a->rlen);
        if (nl) {
            *nl = '\0';
            *line = a->rbuf;
            *n = (size_t)(nl - a->rbuf);
            a->skip = *n + 1;
            return 0;
        }
        if (a->rlen >= DV_LINE_MAX)
            return -EMSGSIZE;
        ssize_t r = recv(a->fd, a->rbuf + a->rlen, DV_LINE_MAX - a->rlen, 0);
        if (r > 0) {
            a->rlen += (size_t)r;
            continue;
        }
        if (r == 0)
            return -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int w = wait_fd(a->fd, POLLIN, deadline);
        if (w < 0)
            return w;
    }
}

/* The next TAB-separated field of *p (which advances), NUL-terminated in place. */
static char *next_field(char **p)
{
    char *f = *p;
    if (!f)
        return NULL;
    char *t = strchr(f, '\t');
    if (t) {
        *t = '\0';
        *p = t + 1;
    } else {
        *p = NULL;
    }
    return f;
}

static const char *errname(int e)
{
    return e == -ETIMEDOUT  ? "no answer in time"
           : e == -EPIPE    ? "connection closed by Dovecot"
           : e == -EMSGSIZE ? "line too long"
                            : strerror(-e);
}

/*
 * Connects and does the handshake; fills a->server_mechs. 0 or a negative
 * errno (-EPROTO: not the protocol we speak). Logs what went wrong.
 */
static int dv_open(smtp_auth_dovecot *a, long long deadline)
{
    int r = dv_connect(g.socket, deadline, &a->fd);
    if (r < 0) {
        log_err("auth: dovecot auth socket %s: %s", g.socket, strerror(-r));
        a->fd = -1;
        return r;
    }
    char hello[64];
    int hl = snprintf(hello, sizeof(hello), "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
    r = write_all(a->fd, hello, (size_t)hl, deadline);
    bool version = false;
    size_t o = 0;
    a->server_mechs[0] = '\0';
    while (r == 0) {
        char *line, *p;
        size_t n;
        r = read_line(a, deadline, &line, &n);
        if (r < 0)
            break;
        p = line;
        const char *cmd = next_field(&p);
        if (strcmp(cmd, "VERSION") == 0) {
            const char *major = next_field(&p);
            if (!major || strcmp(major, "1") != 0) {
                log_err("auth: dovecot auth socket %s speaks protocol version %s, not 1", g.socket,
                        major ? major : "(none)");
                return -EPROTO;
            }
            version = true;
        } else if (strcmp(cmd, "MECH") == 0) {
            const char *name = next_field(&p);
            bool private = false;
            const char *flag;
            while ((flag = next_field(&p)) != NULL)
                if (strcmp(flag, "private") == 0)
            private = true;
            char up[SMTP_AUTH_MECH_MAX + 1];
            if (!name || private || !smtp_auth_mech_name(name, strlen(name), up))
                continue;
            size_t l = strlen(up);
            if (o + l + 2 > sizeof(a->server_mechs))
                continue;
            if (o > 0)
                a->server_mechs[o++] = ' ';
            memcpy(a->server_mechs + o, up, l + 1);
            o += l;
        } else if (strcmp(cmd, "DONE") == 0) {
            if (!version) {
                log_err("auth: dovecot auth socket %s: handshake without VERSION", g.socket);
                return -EPROTO;
            }
            return 0;
        }
        /* SPID, CUID, COOKIE and anything newer: not needed here */
    }
    log_err("auth: dovecot auth socket %s: handshake failed: %s", g.socket, errname(r));
    return r;
}

/* ---- init ---- */

static void reset_globals(void)
{
    free(g.mech_list);
    free(g.mechs);
    memset(&g, 0, sizeof(g));
}

int smtp_auth_dovecot_init(const char *socket_path, const char *mechanisms)
{
    if (g.configured)
        return -EALREADY;
    if (!socket_path || !socket_path[0] || strlen(socket_path) >= sizeof(g.socket))
        return -EINVAL;
    memcpy(g.socket, socket_path, strlen(socket_path) + 1);
    g.mech_list = auth_mechs_normalize(mechanisms);
    if (!g.mech_list) {
        reset_globals();
        return -ENOMEM;
    }
    g.configured = true;
    if (!g.mech_list[0]) {
        g.mechs = strdup("");
        if (!g.mechs) {
            reset_globals();
            return -ENOMEM;
        }
        return 0;
    }

    /* Ask Dovecot once what it offers. */
    smtp_auth_dovecot *probe = calloc(1, sizeof(*probe));
    if (!probe) {
        reset_globals();
        return -ENOMEM;
    }
    probe->fd = -1;
    int r = dv_open(probe, now_ms() + 5000);
    if (r < 0) {
        log_warn("auth: Dovecot is not answering on %s; offering %s, and AUTH answers 454 "
                 "until it does",
                 g.socket, g.mech_list);
        g.mechs = strdup(g.mech_list);
    } else {
        g.mechs = calloc(1, strlen(g.mech_list) + 1);
        if (g.mechs) {
            size_t o = 0;
            const char *p = g.mech_list;
            while (*p) {
                const char *e = strchr(p, ' ');
                size_t l = e ? (size_t)(e - p) : strlen(p);
                if (auth_list_has(probe->server_mechs, p, l)) {
                    if (o > 0)
                        g.mechs[o++] = ' ';
                    memcpy(g.mechs + o, p, l);
                    o += l;
                } else {
                    log_warn("auth: mechanism %.*s in auth_mechanisms is not offered by Dovecot "
                             "(its auth_mechanisms: %s)",
                             (int)l, p, probe->server_mechs);
                }
                p = e ? e + 1 : p + l;
            }
            g.mechs[o] = '\0';
            if (!g.mechs[0])
                log_warn("auth: none of auth_mechanisms (%s) is offered by Dovecot: AUTH is not "
                         "offered",
                         g.mech_list);
        }
    }
    smtp_auth_dovecot_free(probe);
    if (!g.mechs) {
        reset_globals();
        return -ENOMEM;
    }
    return 0;
}

void smtp_auth_dovecot_done(void)
{
    reset_globals();
}

const char *smtp_auth_dovecot_mechs(void)
{
    return g.configured && g.mechs ? g.mechs : "";
}

/* ---- one exchange ---- */

int smtp_auth_dovecot_new(const char *fqdn, const char *user_realm, const char *local_ipport,
                          const char *remote_ipport, smtp_auth_dovecot **out)
{
    (void)fqdn;
    (void)user_realm;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!g.configured || !g.mechs || !g.mechs[0])
        return -EINVAL;
    smtp_auth_dovecot *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->fd = -1;
    if ((local_ipport && local_ipport[0] &&
         !auth_split_ipport(local_ipport, a->lip, sizeof(a->lip), a->lport, sizeof(a->lport))) ||
        (remote_ipport && remote_ipport[0] &&
         !auth_split_ipport(remote_ipport, a->rip, sizeof(a->rip), a->rport, sizeof(a->rport)))) {
        free(a);
        return -EINVAL;
    }
    *out = a;
    return 0;
}

void smtp_auth_dovecot_free(smtp_auth_dovecot *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    explicit_bzero(a->req, sizeof(a->req));
    explicit_bzero(a->dec, sizeof(a->dec));
    free(a);
}

static void set_status(smtp_auth_dovecot *a, smtp_auth_result *res, enum smtp_auth_status st)
{
    res->status = st;
    res->challenge = NULL;
    res->challenge_len = 0;
    res->user = NULL;
    if (st != SMTP_AUTH_CONTINUE)
        a->phase = DV_DONE;
}

static void refuse(smtp_auth_result *res)
{
    res->status = SMTP_AUTH_PROTOCOL;
    res->challenge = res->user = NULL;
    res->challenge_len = 0;
}

/* Reads Dovecot's answer to a request and fills res from it. */
static void read_reply(smtp_auth_dovecot *a, smtp_auth_result *res)
{
    char *line, *p;
    size_t n;
    int r = read_line(a, now_ms() + SMTP_AUTH_DOVECOT_TIMEOUT_MS, &line, &n);
    if (r < 0) {
        log_err("auth: dovecot auth socket %s: %s", g.socket, errname(r));
        set_status(a, res, SMTP_AUTH_TEMP);
        return;
    }
    p = line;
    const char *cmd = next_field(&p);
    const char *id = next_field(&p);
    if (!id || strcmp(id, DV_ID) != 0 ||
        (strcmp(cmd, "OK") != 0 && strcmp(cmd, "CONT") != 0 && strcmp(cmd, "FAIL") != 0)) {
        log_err("auth: dovecot auth socket %s: unexpected answer '%.60s'", g.socket, cmd);
        set_status(a, res, SMTP_AUTH_TEMP);
        return;
    }

    if (strcmp(cmd, "CONT") == 0) {
        const char *data = p ? p : "";
        size_t l = strlen(data);
        if (l > SMTP_AUTH_LINE_MAX || auth_b64_decode(data, l, NULL) < 0) {
            log_err("auth: dovecot auth socket %s: challenge is not base64 or too long", g.socket);
            set_status(a, res, SMTP_AUTH_TEMP);
            return;
        }
        memcpy(a->out, data, l + 1);
        set_status(a, res, SMTP_AUTH_CONTINUE);
        a->phase = DV_CONT;
        res->challenge = a->out;
        res->challenge_len = l;
        return;
    }

    const char *user = NULL, *resp = NULL, *code = NULL, *reason = NULL;
    bool temp = false;
    size_t userlen = 0;
    char *f;
    while ((f = next_field(&p)) != NULL) {
        if (strncmp(f, "user=", 5) == 0) {
            userlen = dovecot_tab_unescape(f + 5, strlen(f + 5));
            user = f + 5;
        } else if (strncmp(f, "resp=", 5) == 0) {
            resp = f + 5;
        } else if (strncmp(f, "code=", 5) == 0) {
            code = f + 5;
        } else if (strncmp(f, "reason=", 7) == 0) {
            reason = f + 7;
        } else if (strcmp(f, "temp") == 0) {
            temp = true;
        }
    }

    if (strcmp(cmd, "FAIL") == 0) {
        if (temp || (code && strcmp(code, "temp_fail") == 0)) {
            log_err("auth: Dovecot reports a temporary failure%s%s", reason ? ": " : "",
                    reason ? reason : "");
            set_status(a, res, SMTP_AUTH_TEMP);
        } else if (code && strcmp(code, "invalid_base64") == 0) {
            set_status(a, res, SMTP_AUTH_BAD_BASE64);
        } else {
            log_debug("auth: Dovecot: FAIL%s%s%s%s", code ? " code=" : "", code ? code : "",
                      reason ? " reason=" : "", reason ? reason : "");
            set_status(a, res, SMTP_AUTH_FAIL);
        }
        return;
    }

    /* OK */
    char login[SMTP_AUTH_USER_MAX + 1];
    if (!user || !auth_copy_identity(login, user, userlen)) {
        log_err("auth: Dovecot accepted a login Sluice cannot use (%s)",
                user ? "a space, control character or two '@' in it, or too long" : "no user=");
        set_status(a, res, user ? SMTP_AUTH_FAIL : SMTP_AUTH_TEMP);
        return;
    }
    if (resp && resp[0]) {
        /*
         * Success data (only sent when a client asks for it with final-resp-ok,
         * which Sluice never does; kept for safety): SMTP has no room for it in
         * the 235 reply, so it goes out as one more 334 (RFC 4954 section 4).
         */
        size_t l = strlen(resp);
        if (l > SMTP_AUTH_LINE_MAX || auth_b64_decode(resp, l, NULL) < 0) {
            log_err("auth: dovecot auth socket %s: success data is not base64", g.socket);
            set_status(a, res, SMTP_AUTH_TEMP);
            return;
        }
        memcpy(a->out, resp, l + 1);
        memcpy(a->pending_user, login, strlen(login) + 1);
        set_status(a, res, SMTP_AUTH_CONTINUE);
        a->phase = DV_FINAL;
        res->challenge = a->out;
        res->challenge_len = l;
        return;
    }
    memcpy(a->user, login, strlen(login) + 1);
    set_status(a, res, SMTP_AUTH_OK);
    res->user = a->user;
}

/*
 * Checks a client's base64 (len > 0, not "="). CONTINUE when fine; with
 * plain set, also that the data is PLAIN's "authzid NUL authcid NUL passwd".
 */
static enum smtp_auth_status check_client_data(smtp_auth_dovecot *a, const char *s, size_t len,
                                               bool plain)
{
    if (len > SMTP_AUTH_LINE_MAX)
        return SMTP_AUTH_TOO_LONG;
    long n = auth_b64_decode(s, len, plain ? a->dec : NULL);
    if (n < 0)
        return SMTP_AUTH_BAD_BASE64;
    if (plain) {
        long nuls = 0;
        for (long i = 0; i < n; i++)
            nuls += a->dec[i] == '\0';
        explicit_bzero(a->dec, (size_t)n);
        if (nuls != 2)
            return SMTP_AUTH_PROTOCOL;
    }
    return SMTP_AUTH_CONTINUE;
}

int smtp_auth_dovecot_start(smtp_auth_dovecot *a, const char *mech, const char *initial_response,
                            size_t len, smtp_auth_result *res)
{
    char up[SMTP_AUTH_MECH_MAX + 1];

    if (!res)
        return -EINVAL;
    if (!a || !mech || a->phase != DV_NEW) {
        refuse(res);
        if (a)
            a->phase = DV_DONE;
        return -EINVAL;
    }
    a->phase = DV_CONT;

    if (!smtp_auth_mech_name(mech, strlen(mech), up) || !auth_list_has(g.mechs, up, strlen(up))) {
        set_status(a, res, SMTP_AUTH_NO_MECH);
        return 0;
    }
    bool ir = initial_response && len > 0;
    bool empty_ir = ir && len == 1 && initial_response[0] == '=';
    if (ir && !empty_ir) {
        enum smtp_auth_status st =
            check_client_data(a, initial_response, len, strcmp(up, "PLAIN") == 0);
        if (st != SMTP_AUTH_CONTINUE) {
            set_status(a, res, st);
            return 0;
        }
    }

    long long deadline = now_ms() + SMTP_AUTH_DOVECOT_TIMEOUT_MS;
    if (dv_open(a, deadline) < 0) {
        set_status(a, res, SMTP_AUTH_TEMP);
        return 0;
    }
    if (!auth_list_has(a->server_mechs, up, strlen(up))) {
        log_warn("auth: Dovecot does not offer %s (its mechanisms now: %s)", up,
                 a->server_mechs[0] ? a->server_mechs : "none");
        set_status(a, res, SMTP_AUTH_NO_MECH);
        return 0;
    }

    int n = snprintf(a->req, sizeof(a->req),
                     "AUTH\t" DV_ID "\t%s\tservice=smtp\tsecured\tno-penalty", up);
    if (a->lip[0])
        n += snprintf(a->req + n, sizeof(a->req) - (size_t)n, "\tlip=%s\tlport=%s", a->lip,
                      a->lport);
    if (a->rip[0])
        n += snprintf(a->req + n, sizeof(a->req) - (size_t)n, "\trip=%s\trport=%s", a->rip,
                      a->rport);
    /* resp= last: the protocol ignores whatever follows it */
    if (ir)
        n += snprintf(a->req + n, sizeof(a->req) - (size_t)n, "\tresp=%.*s\n",
                      empty_ir ? 0 : (int)len, initial_response);
    else
        n += snprintf(a->req + n, sizeof(a->req) - (size_t)n, "\n");
    int r = (size_t)n < sizeof(a->req) ? write_all(a->fd, a->req, (size_t)n, deadline) : -EMSGSIZE;
    explicit_bzero(a->req, sizeof(a->req));
    if (r < 0) {
        log_err("auth: dovecot auth socket %s: %s", g.socket, errname(r));
        set_status(a, res, SMTP_AUTH_TEMP);
        return 0;
    }
    read_reply(a, res);
    return 0;
}

int smtp_auth_dovecot_step(smtp_auth_dovecot *a, const char *line, size_t len,
                           smtp_auth_result *res)
{
    if (!res)
        return -EINVAL;
    if (!a || !line || (a->phase != DV_CONT && a->phase != DV_FINAL) || a->fd < 0) {
        refuse(res);
        if (a)
            a->phase = DV_DONE;
        return -EINVAL;
    }
    if (len == 1 && line[0] == '*') {
        set_status(a, res, SMTP_AUTH_CANCELLED);
        return 0;
    }
    bool empty = len == 0 || (len == 1 && line[0] == '=');
    if (a->phase == DV_FINAL) {
        if (!empty) {
            set_status(a, res, SMTP_AUTH_PROTOCOL);
            return 0;
        }
        memcpy(a->user, a->pending_user, strlen(a->pending_user) + 1);
        set_status(a, res, SMTP_AUTH_OK);
        res->user = a->user;
        return 0;
    }
    if (!empty) {
        enum smtp_auth_status st = check_client_data(a, line, len, false);
        if (st != SMTP_AUTH_CONTINUE) {
            set_status(a, res, st);
            return 0;
        }
    }
    int n = snprintf(a->req, sizeof(a->req), "CONT\t" DV_ID "\t%.*s\n", empty ? 0 : (int)len, line);
    long long deadline = now_ms() + SMTP_AUTH_DOVECOT_TIMEOUT_MS;
    int r = (size_t)n < sizeof(a->req) ? write_all(a->fd, a->req, (size_t)n, deadline) : -EMSGSIZE;
    explicit_bzero(a->req, sizeof(a->req));
    if (r < 0) {
        log_err("auth: dovecot auth socket %s: %s", g.socket, errname(r));
        set_status(a, res, SMTP_AUTH_TEMP);
        return 0;
    }
    read_reply(a, res);
    return 0;
}
