/*
 * cli_sendmail.c - `sluice sendmail` (also run as `sendmail`): the
 * interface scripts and cron use to send mail.
 *
 * The message is submitted to sluice-smtpd over its unix socket
 * (run/submit.sock) in plain SMTP, so local mail meets the same policy,
 * gets the same headers (Received, Date, Message-ID) and the same durable
 * commit as SMTP mail; we exit 0 only after "250 ... queued as ID". The
 * server identifies us by our uid (SO_PEERCRED), not by anything we say.
 *
 * Standard input is streamed: only the header section is kept (bounded,
 * for -t and the From: check, cli_input.c); the body goes to the socket as
 * it is read. Recipients are all-or-nothing: if the server refuses one,
 * nothing is sent and we exit with EX_NOUSER, so a script that retries
 * never sends twice to the recipients that were fine.
 *
 * Decisions (docs/sluice.8): the default envelope sender is login@ the
 * first [domains] local domain (bounces come back to a mailbox here;
 * [server] hostname when there is none); -t adds the header recipients to
 * those of the command line, as Postfix does; Bcc: (and Resent-Bcc:) is
 * always removed; sendmail's compatibility flags are accepted with a
 * warning.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "sluice/cli.h"

#define CMD_TIMEOUT_MS (5 * 60 * 1000)
#define DATA_TIMEOUT_MS (10 * 60 * 1000) /* RFC 5321 4.5.3.2.6: after the dot */
#define READ_CHUNK 65536
#define ADDR_MAX 512

enum sm_mode { SM_SEND, SM_LIST, SM_FLUSH, SM_NOTHING };

struct sm {
    cli_ctx *c;
    enum sm_mode mode;
    bool extract, ignore_dots, verbose;
    const char *from_arg, *fullname;
    char notify[64], ret[8], body[16], envid[256];
    char **args; /* recipient arguments */
    int nargs;
    char domain[256], login[256], sender[ADDR_MAX + 1];
    char **rcpts;
    size_t nrcpt, rcap;
    const char *source; /* of the addresses being parsed, for messages */
};

static void sm_usage(FILE *f)
{
    fputs("usage: sendmail [-t] [-i] [-f ADDR] [-F NAME] [-v] [-N DSN] [-R RET] [-V ENVID]\n"
          "                [-B BODY] [-C CONFIG] [RCPT...]\n"
          "       sendmail -bp (list the queue)   sendmail -q (deliver deferred mail now)\n"
          "Reads a message on standard input and submits it to sluice-smtpd.\n"
          "  -t        also take recipients from To:, Cc:, Bcc: (Bcc: is removed)\n"
          "  -i, -oi   a line with a single \".\" does not end the message\n"
          "  -f ADDR   envelope sender (default: login@first local domain)\n"
          "  -F NAME   full name for the From: header added when there is none\n"
          "  -N never|success,failure,delay   DSN notify; -R full|hdrs; -V envid\n"
          "  -B 7BIT|8BITMIME   body type; -C FILE  sluice configuration\n"
          "  -v        show the SMTP dialogue on stderr\n"
          "Other sendmail flags are accepted and ignored with a warning. See sluice(8).\n",
          f);
}

static int add_rcpt(void *arg, const char *addr)
{
    struct sm *S = arg;
    char q[ADDR_MAX + 300];
    if (!strchr(addr, '@')) {
        snprintf(q, sizeof(q), "%s@%s", addr, S->domain);
        addr = q;
    }
    if (strlen(addr) > ADDR_MAX) {
        fprintf(stderr, "sluice: %s: address too long: %.60s...\n", S->source, addr);
        return -E2BIG;
    }
    for (size_t i = 0; i < S->nrcpt; i++)
        if (strcasecmp(S->rcpts[i], addr) == 0)
            return 0; /* one copy per recipient */
    if (S->nrcpt == S->rcap) {
        size_t cap = S->rcap ? S->rcap * 2 : 16;
        char **v = realloc(S->rcpts, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        S->rcpts = v;
        S->rcap = cap;
    }
    if (!(S->rcpts[S->nrcpt] = strdup(addr)))
        return -ENOMEM;
    S->nrcpt++;
    return 0;
}

/* Parses an address list from source (an argument or a header field). */
static int add_list(struct sm *S, const char *source, const char *s, size_t len, int bad_status)
{
    char err[160];
    S->source = source;
    int rc = cli_addrlist_parse(s, len, add_rcpt, S, err, sizeof(err));
    if (rc >= 0)
        return 0;
    if (rc == -EINVAL)
        fprintf(stderr, "sluice: %s: %s\n", source, err);
    if (rc == -EINVAL || rc == -E2BIG)
        return bad_status;
    fprintf(stderr, "sluice: out of memory\n");
    return EX_SOFTWARE;
}

/* A flag's value: -N, -R, -B, -V are passed on as DSN/BODY parameters. */
static int take_value(struct sm *S, char f, const char *v)
{
    switch (f) {
    case 'f':
    case 'r':
        S->from_arg = v;
        return 0;
    case 'F':
        S->fullname = v;
        return 0;
    case 'C':
        S->c->config_arg = v;
        return 0;
    case 'o':
        if (strcmp(v, "i") == 0)
            S->ignore_dots = true;
        else
            fprintf(stderr, "sluice: warning: -o%s ignored\n", v);
        return 0;
    case 'b':
        if (strcmp(v, "m") == 0)
            S->mode = SM_SEND;
        else if (strcmp(v, "p") == 0)
            S->mode = SM_LIST;
        else if (strcmp(v, "i") == 0) {
            fprintf(stderr, "sluice: -bi: nothing to do: the aliases map is read as it is\n");
            S->mode = SM_NOTHING;
        } else if (strcmp(v, "h") == 0 || strcmp(v, "H") == 0) {
            fprintf(stderr, "sluice: warning: -b%s ignored\n", v);
        } else {
            fprintf(stderr, "sluice: -b%s is not supported (-bm sends, -bp lists the queue)\n", v);
            return EX_USAGE;
        }
        return 0;
    case 'N': {
        /* "never" or a list of success, failure, delay (RFC 3461 4.1). */
        char up[64];
        size_t n = strlen(v);
        bool ok = n > 0 && n < sizeof(up);
        for (size_t i = 0; ok && i < n; i++)
            up[i] = (char)(v[i] >= 'a' && v[i] <= 'z' ? v[i] - 32 : v[i]);
        up[ok ? n : 0] = '\0';
        if (ok && strcmp(up, "NEVER") != 0) {
            char tmp[64], *save = NULL;
            memcpy(tmp, up, n + 1);
            for (char *w = strtok_r(tmp, ",", &save); w && ok; w = strtok_r(NULL, ",", &save))
                ok = strcmp(w, "SUCCESS") == 0 || strcmp(w, "FAILURE") == 0 ||
                     strcmp(w, "DELAY") == 0;
        }
        if (ok)
            snprintf(S->notify, sizeof(S->notify), "%s", up);
        else
            fprintf(stderr, "sluice: warning: -N %s ignored (never, or success,failure,delay)\n",
                    v);
        return 0;
    }
    case 'R':
        if (strcasecmp(v, "full") == 0 || strcasecmp(v, "hdrs") == 0)
            snprintf(S->ret, sizeof(S->ret), "%s", strcasecmp(v, "full") == 0 ? "FULL" : "HDRS");
        else
            fprintf(stderr, "sluice: warning: -R %s ignored (full or hdrs)\n", v);
        return 0;
    case 'B':
        if (strcasecmp(v, "8BITMIME") == 0 || strcasecmp(v, "7BIT") == 0)
            snprintf(S->body, sizeof(S->body), "%s",
                     strcasecmp(v, "7BIT") == 0 ? "7BIT" : "8BITMIME");
        else
            fprintf(stderr, "sluice: warning: -B %s ignored (7BIT or 8BITMIME)\n", v);
        return 0;
    case 'V': {
        /* ENVID is xtext (RFC 3461 4): '+', '=' and non-printables as +XX. */
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)v; *p && o + 4 < sizeof(S->envid);
             p++) {
            if (*p < 0x21 || *p > 0x7e || *p == '+' || *p == '=')
                o += (size_t)snprintf(S->envid + o, sizeof(S->envid) - o, "+%02X", *p);
            else
                S->envid[o++] = (char)*p;
        }
        S->envid[o] = '\0';
        return 0;
    }
    default: /* -L tag, -X log, -O opt=val, -h hops, -p proto: sendmail-only */
        fprintf(stderr, "sluice: warning: -%c %s ignored\n", f, v);
        return 0;
    }
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(struct sm *S, int argc, char **argv)
{
    bool opts_done = false;
    S->args = calloc((size_t)argc + 1, sizeof(char *));
    if (!S->args)
        return EX_SOFTWARE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (opts_done || a[0] != '-' || a[1] == '\0') {
            S->args[S->nargs++] = argv[i];
            continue;
        }
        if (strcmp(a, "--help") == 0) { /* not -h: that is sendmail's hop count */
            sm_usage(stdout);
            return 0;
        }
        for (const char *p = a + 1; *p; p++) {
            char f = *p;
            if (strchr("BCFLNORVXbfhopr", f)) {
                const char *v = p[1] ? p + 1 : i + 1 < argc ? argv[++i] : NULL;
                if (!v) {
                    fprintf(stderr, "sluice: -%c needs a value (--help for usage)\n", f);
                    return EX_USAGE;
                }
                int rc = take_value(S, f, v);
                if (rc)
                    return rc;
                break;
            }
            if (f == 'q') {
                /* -q: run the queue now; -q1h and friends were for daemons. */
                if (p[1])
                    fprintf(stderr, "sluice: warning: -q%s ignored\n", p + 1);
                S->mode = p[1] ? SM_NOTHING : SM_FLUSH;
                break;
            }
            if (f == 'd' || f == 'A' || f == 'e') {
                fprintf(stderr, "sluice: warning: -%s ignored\n", p);
                break;
            }
            if (f == 't')
                S->extract = true;
            else if (f == 'i')
                S->ignore_dots = true;
            else if (f == 'v')
                S->verbose = true;
            else
                fprintf(stderr, "sluice: warning: -%c ignored\n", f);
        }
    }
    return -1;
}

/* The From: field for a message without one: "Name <addr>" or "addr". */
static int from_field(const struct sm *S, sbuf *out)
{
    const char *addr = S->sender[0] ? S->sender : NULL;
    char own[ADDR_MAX + 300];
    if (!addr) {
        snprintf(own, sizeof(own), "%s@%s", S->login, S->domain);
        addr = own;
    }
    char gecos[256] = "";
    const char *name = S->fullname;
    if (!name) {
        struct passwd *pw = getpwuid(getuid());
        if (pw && pw->pw_gecos) {
            snprintf(gecos, sizeof(gecos), "%s", pw->pw_gecos);
            gecos[strcspn(gecos, ",")] = '\0'; /* name,room,phone,... */
            name = gecos;
        }
    }
    return cli_from_field(name, addr, out);
}

/* Reads standard input into in until the header section is complete. */
static int read_headers(cli_input *in, char *buf, bool *eof)
{
    while (!in->in_body && !in->ended && !*eof) {
        ssize_t n = read(STDIN_FILENO, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "sluice: cannot read standard input: %s\n", strerror(errno));
            return EX_IOERR;
        }
        long rc = n == 0 ? cli_input_finish(in) : cli_input_feed(in, buf, (size_t)n);
        *eof = n == 0;
        if (rc == -ENOBUFS) {
            fprintf(stderr, "sluice: the message's header section is larger than %u KiB\n",
                    CLI_HEADER_MAX / 1024);
            return EX_DATAERR;
        }
        if (rc < 0) {
            fprintf(stderr, "sluice: out of memory\n");
            return EX_SOFTWARE;
        }
    }
    return 0;
}

/* -t: recipients of To/Cc/Bcc, or of Resent-To/Cc/Bcc when there are any. */
static int extract_rcpts(struct sm *S, const cli_input *in)
{
    static const char *const plain[] = {"To", "Cc", "Bcc"};
    static const char *const resent[] = {"Resent-To", "Resent-Cc", "Resent-Bcc"};
    const char *const *names = plain;
    for (size_t i = 0; i < in->nfields; i++)
        for (int k = 0; k < 3; k++)
            if (cli_field_is(in, i, resent[k]))
                names = resent;
    sbuf v;
    sbuf_init(&v, 0);
    int status = 0;
    for (size_t i = 0; i < in->nfields && status == 0; i++) {
        for (int k = 0; k < 3 && status == 0; k++) {
            if (!cli_field_is(in, i, names[k]))
                continue;
            char source[64];
            snprintf(source, sizeof(source), "%s: header", names[k]);
            if (cli_field_value(in, i, &v) != 0)
                status = EX_SOFTWARE;
            else
                status = add_list(S, source, v.data, v.len, EX_DATAERR);
        }
    }
    sbuf_free(&v);
    return status;
}

/* The exit status and message for a refused or failed step. */
static int smtp_fail(cli_smtp *sm, int rc, const char *what, const char *sock)
{
    if (rc == -ETIMEDOUT) {
        fprintf(stderr, "sluice: %s: sluice-smtpd did not answer in time; not sent\n", what);
        return EX_TEMPFAIL;
    }
    if (rc == -ECONNRESET) {
        fprintf(stderr, "sluice: %s: sluice-smtpd closed the connection (%s); not sent\n", what,
                sock);
        return EX_TEMPFAIL;
    }
    if (rc == -EPROTO) {
        fprintf(stderr, "sluice: %s: malformed reply from sluice-smtpd; not sent\n", what);
        return EX_PROTOCOL;
    }
    if (rc < 0) {
        fprintf(stderr, "sluice: %s: %s; not sent\n", what, strerror(-rc));
        return EX_TEMPFAIL;
    }
    fprintf(stderr, "sluice: %s: %s%s\n", what, sm->reply,
            rc >= 500 || rc < 400 ? "" : " (try again later)");
    return rc >= 400 && rc < 500 ? EX_TEMPFAIL : EX_UNAVAILABLE;
}

/* Whether s has bytes beyond ASCII (the MAIL then needs SMTPUTF8). */
static bool non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* Connects and sends the envelope. Returns 0 at DATA's 354, else a status. */
static int open_transaction(struct sm *S, cli_smtp *sm, const char *sock)
{
    int rc = cli_smtp_connect(sm, sock, S->verbose);
    if (rc == -ENOENT || rc == -ECONNREFUSED) {
        fprintf(stderr, "sluice: sluice-smtpd is not running (%s %s); not sent\n",
                rc == -ENOENT ? "no" : "nothing listens on", sock);
        return EX_TEMPFAIL;
    }
    if (rc == -EACCES || rc == -EPERM) {
        fprintf(stderr, "sluice: cannot connect to %s: %s; not sent\n", sock, strerror(-rc));
        return EX_NOPERM;
    }
    if (rc) {
        fprintf(stderr, "sluice: cannot connect to %s: %s; not sent\n", sock, strerror(-rc));
        return rc == -ENAMETOOLONG ? EX_CONFIG : EX_TEMPFAIL;
    }
    if ((rc = cli_smtp_reply(sm, CMD_TIMEOUT_MS)) != 220)
        return smtp_fail(sm, rc, "greeting", sock);
    if ((rc = cli_smtp_cmd(sm, CMD_TIMEOUT_MS, "EHLO localhost")) != 250)
        return smtp_fail(sm, rc, "EHLO", sock);
    bool utf8 = non_ascii(S->sender);
    for (size_t i = 0; i < S->nrcpt; i++)
        utf8 = utf8 || non_ascii(S->rcpts[i]);
    rc = cli_smtp_cmd(sm, CMD_TIMEOUT_MS, "MAIL FROM:<%s>%s%s%s%s%s%s%s", S->sender,
                      S->body[0] ? " BODY=" : "", S->body, S->ret[0] ? " RET=" : "", S->ret,
                      S->envid[0] ? " ENVID=" : "", S->envid, utf8 ? " SMTPUTF8" : "");
    if (rc / 100 != 2) {
        int st = smtp_fail(sm, rc, "sender refused", sock);
        return rc == 501 || rc == 553 ? EX_DATAERR : st;
    }
    for (size_t i = 0; i < S->nrcpt; i++) {
        rc = cli_smtp_cmd(sm, CMD_TIMEOUT_MS, "RCPT TO:<%s>%s%s", S->rcpts[i],
                          S->notify[0] ? " NOTIFY=" : "", S->notify);
        if (rc / 100 == 2)
            continue;
        char what[ADDR_MAX + 40];
        snprintf(what, sizeof(what), "recipient <%s> refused", S->rcpts[i]);
        int st = smtp_fail(sm, rc, what, sock);
        if (rc > 0)
            fprintf(stderr, "sluice: nothing was sent (to any recipient)\n");
        return rc >= 500 ? EX_NOUSER : st;
    }
    if ((rc = cli_smtp_cmd(sm, CMD_TIMEOUT_MS, "DATA")) != 354)
        return smtp_fail(sm, rc, "DATA", sock);
    return 0;
}

/* Writes out to the socket and empties it. */
static int drain(cli_smtp *sm, sbuf *out, const char *sock)
{
    int rc = out->len ? cli_smtp_write(sm, out->data, out->len) : 0;
    sbuf_reset(out);
    if (rc == 0)
        return 0;
    /* A server that stops reading usually said why first: report that. */
    int code = cli_smtp_reply(sm, 2000);
    if (code > 0) {
        int st = smtp_fail(sm, code, "message refused", sock);
        return strstr(sm->reply, " 5.3.4") ? EX_DATAERR : st;
    }
    return smtp_fail(sm, rc, "sending the message", sock);
}

/* Sends the header section, then streams the rest of standard input. */
static int send_message(struct sm *S, cli_smtp *sm, cli_input *in, sbuf *out, char *buf, bool eof,
                        const char *sock)
{
    sbuf head;
    sbuf_init(&head, 0);
    bool has_from = false;
    int rc = 0;
    for (size_t i = 0; i < in->nfields && rc == 0; i++) {
        has_from = has_from || cli_field_is(in, i, "From");
        if (cli_field_is(in, i, "Bcc") || cli_field_is(in, i, "Resent-Bcc"))
            continue; /* blind copies stay blind */
        rc = cli_field_emit(in, i, &head);
    }
    if (rc == 0 && !has_from) {
        sbuf f;
        sbuf_init(&f, 0);
        rc = from_field(S, &f);
        if (rc == 0)
            rc = cli_header_emit(&head, f.data, f.len);
        sbuf_free(&f);
    }
    if (rc == 0 && in->in_body)
        rc = sbuf_append(&head, "\r\n", 2);
    if (rc) {
        sbuf_free(&head);
        fprintf(stderr, "sluice: out of memory\n");
        return EX_SOFTWARE;
    }
    int st = drain(sm, &head, sock);
    sbuf_free(&head);
    if (st)
        return st;
    while (!in->ended && !eof) {
        if ((st = drain(sm, out, sock)) != 0)
            return st;
        ssize_t n = read(STDIN_FILENO, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "sluice: cannot read standard input: %s; not sent\n", strerror(errno));
            return EX_IOERR;
        }
        eof = n == 0;
        long r = eof ? cli_input_finish(in) : cli_input_feed(in, buf, (size_t)n);
        if (r < 0) {
            fprintf(stderr, "sluice: out of memory\n");
            return EX_SOFTWARE;
        }
    }
    if (cli_input_finish(in) != 0 || sbuf_append(out, ".\r\n", 3) != 0) {
        fprintf(stderr, "sluice: out of memory\n");
        return EX_SOFTWARE;
    }
    if ((st = drain(sm, out, sock)) != 0)
        return st;
    if (S->verbose)
        fprintf(stderr, ">>> (message) .\n");
    rc = cli_smtp_reply(sm, DATA_TIMEOUT_MS);
    if (rc / 100 == 2) {
        const char *q = strstr(sm->reply, "queued as ");
        if (S->verbose)
            fprintf(stderr, "sluice: %s%s\n", q ? "" : "accepted: ", q ? q : sm->reply);
        cli_smtp_cmd(sm, CMD_TIMEOUT_MS, "QUIT"); /* committed already */
        return 0;
    }
    st = smtp_fail(sm, rc, "message refused", sock);
    if (rc == 552 || strstr(sm->reply, " 5.3.4") || strstr(sm->reply, " 5.6."))
        st = EX_DATAERR;
    return st;
}

static int submit(struct sm *S)
{
    cli_ctx *c = S->c;
    int st = cli_load_config(c);
    if (st)
        return st;
    snprintf(S->domain, sizeof(S->domain), "%s",
             c->cfg.nlocal_domains > 0 ? c->cfg.local_domains[0] : c->cfg.hostname);
    struct passwd *pw = getpwuid(getuid());
    if (pw && pw->pw_name && *pw->pw_name)
        snprintf(S->login, sizeof(S->login), "%s", pw->pw_name);
    else
        snprintf(S->login, sizeof(S->login), "uid%ld", (long)getuid());
    if (S->from_arg) {
        /* "<a@b>" or "a@b"; "" and "<>" are the null sender. */
        const char *f = S->from_arg;
        size_t n = strlen(f);
        if (n >= 2 && f[0] == '<' && f[n - 1] == '>') {
            f++;
            n -= 2;
        }
        if (n > ADDR_MAX || memchr(f, '<', n) || memchr(f, '>', n) || memchr(f, ' ', n)) {
            fprintf(stderr, "sluice: -f: bad address '%s'\n", S->from_arg);
            return EX_USAGE;
        }
        if (n && !memchr(f, '@', n))
            snprintf(S->sender, sizeof(S->sender), "%.*s@%s", (int)n, f, S->domain);
        else
            snprintf(S->sender, sizeof(S->sender), "%.*s", (int)n, f);
    } else {
        snprintf(S->sender, sizeof(S->sender), "%s@%s", S->login, S->domain);
    }
    for (int i = 0; i < S->nargs; i++) {
        char source[64];
        snprintf(source, sizeof(source), "recipient '%.40s'", S->args[i]);
        if ((st = add_list(S, source, S->args[i], strlen(S->args[i]), EX_USAGE)) != 0)
            return st;
    }
    if (S->nrcpt == 0 && !S->extract) {
        fprintf(stderr, "sluice: no recipients given (name them, or use -t; --help for usage)\n");
        return EX_USAGE;
    }

    char *buf = malloc(READ_CHUNK);
    sbuf out;
    sbuf_init(&out, 0);
    cli_input in;
    cli_input_init(&in, S->ignore_dots, &out);
    bool eof = false;
    if (!buf) {
        fprintf(stderr, "sluice: out of memory\n");
        st = EX_SOFTWARE;
    }
    if (st == 0)
        st = read_headers(&in, buf, &eof);
    if (st == 0 && S->extract)
        st = extract_rcpts(S, &in);
    if (st == 0 && S->nrcpt == 0) {
        fprintf(stderr, "sluice: no recipient addresses found in the message header\n");
        st = EX_USAGE;
    }
    char sock[4200];
    if (st == 0 && spool_path(c->cfg.spool, SPOOL_SUBMIT_SOCK, sock, sizeof(sock)) != 0) {
        fprintf(stderr, "sluice: spool path too long: %s\n", c->cfg.spool);
        st = EX_CONFIG;
    }
    cli_smtp sm;
    memset(&sm, 0, sizeof(sm));
    sm.fd = -1;
    if (st == 0)
        st = open_transaction(S, &sm, sock);
    if (st == 0)
        st = send_message(S, &sm, &in, &out, buf, eof, sock);
    cli_smtp_close(&sm);
    cli_input_free(&in);
    sbuf_free(&out);
    free(buf);
    return st;
}

int cli_sendmail(cli_ctx *c, int argc, char **argv)
{
    struct sm S;
    memset(&S, 0, sizeof(S));
    S.c = c;
    int st = parse_args(&S, argc, argv);
    if (st < 0) {
        if (S.mode == SM_LIST) {
            char *list[] = {"list", NULL};
            st = cli_queue_list(c, 1, list);
        } else if (S.mode == SM_FLUSH) {
            char *flush[] = {"flush", NULL};
            st = cli_queue_change(c, 1, flush);
        } else if (S.mode == SM_NOTHING && S.nargs == 0 && !S.extract) {
            st = 0;
        } else {
            st = submit(&S);
        }
    }
    for (size_t i = 0; i < S.nrcpt; i++)
        free(S.rcpts[i]);
    free(S.rcpts);
    free(S.args);
    return st;
}
