/*
 * dlv_dsn.c - builds RFC 3464 delivery status notifications (see dlv_dsn.h).
 *
 * The layout follows Postfix's bounce(8) output, which every mail reader
 * and every bounce parser knows: a human part first, then the machine
 * part, then the original. Long field values are folded at spaces (RFC
 * 5322 2.2.3), so no line passes 998 bytes whatever a remote server said.
 */
#include "sluice/dlv_dsn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sluice/smtp_parse.h"

#define FOLD_AT 78
#define HARD_MAX 990

bool dlv_notify_wants_failure(unsigned notify)
{
    return notify == 0 || (notify & SMTP_NOTIFY_FAILURE);
}

bool dlv_notify_wants_success(unsigned notify)
{
    return (notify & SMTP_NOTIFY_SUCCESS) != 0;
}

bool dlv_notify_wants_delay(unsigned notify)
{
    return notify == 0 || (notify & SMTP_NOTIFY_DELAY);
}

void dlv_rfc5322_date(int64_t us, char *out, size_t outsz)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, outsz, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
        snprintf(out, outsz, "Thu, 01 Jan 1970 00:00:00 +0000");
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int dlv_xtext_decode(const char *s, char *out, size_t outsz)
{
    size_t o = 0;
    if (outsz == 0)
        return -EINVAL;
    for (; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '+') {
            int h = hexval(s[1]), l = h < 0 ? -1 : hexval(s[2]);
            if (l < 0)
                return -EINVAL;
            c = h * 16 + l;
            s += 2;
        }
        if (c < 0x20 || c == 0x7f || o + 1 >= outsz)
            return -EINVAL;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

size_t dlv_dsn_header_len(const char *msg, size_t len)
{
    if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
        return 2; /* no header at all */
    for (size_t i = 0; i + 3 < len; i++)
        if (msg[i] == '\r' && msg[i + 1] == '\n' && msg[i + 2] == '\r' && msg[i + 3] == '\n')
            return i + 4;
    return len;
}

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

static bool is_ascii(const char *s)
{
    return !has_8bit(s, strlen(s));
}

/*
 * Appends "name: value" folded at spaces near FOLD_AT (continuation lines
 * start with a space); a run without spaces is cut at HARD_MAX. With name
 * NULL the lines are plain text (no indent).
 */
static int put_folded(sbuf *b, const char *name, const char *value)
{
    size_t col = 0;
    int rc = 0;
    if (name) {
        rc = sbuf_printf(b, "%s: ", name);
        col = strlen(name) + 2;
    }
    const char *p = value;
    while (rc == 0 && *p) {
        size_t n = strlen(p), room = col < FOLD_AT ? FOLD_AT - col : 1;
        if (n <= room) {
            rc = sbuf_puts(b, p);
            break;
        }
        /* The last space within reach, else the first one after it. */
        size_t cut = 0;
        for (size_t i = room; i > 0; i--)
            if (p[i] == ' ') {
                cut = i;
                break;
            }
        if (cut == 0) {
            const char *sp = strchr(p + room, ' ');
            cut = sp ? (size_t)(sp - p) : n;
        }
        if (cut + col > HARD_MAX)
            cut = HARD_MAX - col;
        rc = sbuf_append(b, p, cut);
        p += cut;
        while (*p == ' ')
            p++;
        if (rc == 0 && *p)
            rc = sbuf_puts(b, name ? "\r\n " : "\r\n    ");
        col = 4;
    }
    return rc ? rc : sbuf_puts(b, "\r\n");
}

/* "rfc822; a@b" or, for a non-ASCII address, RFC 6533's "utf-8; ...". */
static int put_addr_field(sbuf *b, const char *name, const char *addr)
{
    char v[1100];
    snprintf(v, sizeof(v), "%s; %s", is_ascii(addr) ? "rfc822" : "utf-8", addr);
    return put_folded(b, name, v);
}

static const char *default_status(const char *action)
{
    if (strcmp(action, "failed") == 0)
        return "5.0.0";
    if (strcmp(action, "delayed") == 0)
        return "4.0.0";
    return "2.0.0";
}

/* Whether a reply starts with an SMTP code ("550 ..." or "550-..."). */
static bool is_smtp_reply(const char *s)
{
    return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' &&
           (s[3] == ' ' || s[3] == '-' || s[3] == '\0');
}

static int put_rcpt_status(sbuf *b, const dlv_dsn_params *p, const dlv_dsn_rcpt *d)
{
    const env_rcpt *r = d->r;
    char v[1200], date[64];
    int rc = sbuf_puts(b, "\r\n");

    if (rc == 0)
        rc = put_addr_field(b, "Final-Recipient", r->addr);
    if (rc == 0 && r->orcpt) {
        /* ORCPT is "addr-type;xtext": shown decoded, as RFC 3464 2.3.1 wants. */
        const char *semi = strchr(r->orcpt, ';');
        char dec[1024];
        if (semi && semi > r->orcpt && dlv_xtext_decode(semi + 1, dec, sizeof(dec)) == 0) {
            snprintf(v, sizeof(v), "%.*s; %s", (int)(semi - r->orcpt), r->orcpt, dec);
            rc = put_folded(b, "Original-Recipient", v);
        }
    }
    if (rc == 0)
        rc = sbuf_printf(b, "Action: %s\r\n", d->action);
    if (rc == 0)
        rc = sbuf_printf(b, "Status: %s\r\n",
                         r->dsn_status && *r->dsn_status ? r->dsn_status
                                                         : default_status(d->action));
    if (rc == 0 && r->relay && *r->relay && strcmp(r->relay, "local") != 0) {
        const char *br = strchr(r->relay, '[');
        size_t hl = br ? (size_t)(br - r->relay) : strlen(r->relay);
        if (hl > 0) {
            snprintf(v, sizeof(v), "dns; %.*s", (int)hl, r->relay);
            rc = put_folded(b, "Remote-MTA", v);
        }
    }
    if (rc == 0 && r->last_reply && *r->last_reply) {
        snprintf(v, sizeof(v), "%s; %s", is_smtp_reply(r->last_reply) ? "smtp" : "X-Sluice",
                 r->last_reply);
        rc = put_folded(b, "Diagnostic-Code", v);
    }
    if (rc == 0 && r->last_attempt > 0) {
        dlv_rfc5322_date(r->last_attempt * 1000000, date, sizeof(date));
        rc = sbuf_printf(b, "Last-Attempt-Date: %s\r\n", date);
    }
    if (rc == 0 && p->kind == DLV_DSN_DELAY && p->retry_until_us > 0) {
        dlv_rfc5322_date(p->retry_until_us, date, sizeof(date));
        rc = sbuf_printf(b, "Will-Retry-Until: %s\r\n", date);
    }
    return rc;
}

static int put_human(sbuf *b, const dlv_dsn_params *p, const dlv_dsn_rcpt *rcpts, size_t n)
{
    int rc = sbuf_printf(b, "This is the mail system at host %s.\r\n\r\n", p->hostname);
    if (rc)
        return rc;
    switch (p->kind) {
    case DLV_DSN_FAILURE:
        rc = sbuf_puts(b, "I'm sorry to have to inform you that your message could not\r\n"
                          "be delivered to one or more recipients. It's attached below.\r\n\r\n"
                          "For further assistance, please send mail to postmaster.\r\n\r\n"
                          "If you do so, please include this problem report. You can\r\n"
                          "delete your own text from the attached returned message.\r\n");
        break;
    case DLV_DSN_DELAY:
        rc = sbuf_puts(b, "####################################################################\r\n"
                          "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
                          "####################################################################\r\n"
                          "\r\nYour message could not be delivered yet. The mail system will\r\n"
                          "keep trying");
        if (rc == 0 && p->retry_until_us > 0) {
            char date[64];
            dlv_rfc5322_date(p->retry_until_us, date, sizeof(date));
            rc = sbuf_printf(b, " until %s", date);
        }
        if (rc == 0)
            rc = sbuf_puts(b, ".\r\n");
        break;
    case DLV_DSN_SUCCESS:
        rc = sbuf_puts(b, "Your message was successfully delivered to the destination(s)\r\n"
                          "listed below.\r\n");
        break;
    }
    if (rc == 0)
        rc = sbuf_puts(b, "\r\n");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const env_rcpt *r = rcpts[i].r;
        char line[1400];
        snprintf(line, sizeof(line), "<%s>: %s%s%s", r->addr, rcpts[i].action,
                 r->last_reply ? ": " : "", r->last_reply ? r->last_reply : "");
        rc = put_folded(b, NULL, line);
    }
    return rc;
}

static const char *subject(enum dlv_dsn_kind k)
{
    switch (k) {
    case DLV_DSN_DELAY:
        return "Delayed Mail (still being retried)";
    case DLV_DSN_SUCCESS:
        return "Successful Mail Delivery Report";
    default:
        return "Undelivered Mail Returned to Sender";
    }
}

/* A boundary that occurs nowhere in the original. */
static void make_boundary(const dlv_dsn_params *p, char *out, size_t outsz)
{
    for (unsigned i = 0;; i++) {
        snprintf(out, outsz, "%s.%u/%s", p->dsn_id, i, p->hostname);
        if (!p->orig || !memmem(p->orig, p->orig_len, out, strlen(out)) || i > 1000)
            return;
    }
}

int dlv_dsn_build(const dlv_dsn_params *p, const dlv_dsn_rcpt *rcpts, size_t n, sbuf *out)
{
    const envelope *e = p->e;
    char date[64], boundary[400];
    if (n == 0 || !e->sender || !*e->sender)
        return -EINVAL;

    size_t hlen = p->orig ? dlv_dsn_header_len(p->orig, p->orig_len) : 0;
    bool full = p->whole_ok && e->ret == SMTP_RET_FULL && p->kind != DLV_DSN_DELAY;
    size_t olen = full ? p->orig_len : hlen;
    /* Without the empty line that ends it: the part's body is the header. */
    if (!full && olen >= 2 && p->orig[olen - 1] == '\n' && p->orig[olen - 2] == '\r' &&
        (olen == 2 || (olen >= 4 && p->orig[olen - 3] == '\n')))
        olen -= 2;
    bool orig8 = p->orig && has_8bit(p->orig, olen);

    sbuf text;
    sbuf_init(&text, 0);
    int rc = put_human(&text, p, rcpts, n);
    bool human8 = text.data && has_8bit(text.data, text.len);

    make_boundary(p, boundary, sizeof(boundary));
    dlv_rfc5322_date(p->now_us, date, sizeof(date));
    if (rc == 0)
        rc = sbuf_printf(out,
                         "Date: %s\r\n"
                         "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
                         "To: <%s>\r\n"
                         "Subject: %s\r\n"
                         "Message-ID: <%s@%s>\r\n"
                         "Auto-Submitted: auto-replied\r\n"
                         "MIME-Version: 1.0\r\n"
                         "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                         "\tboundary=\"%s\"\r\n"
                         "Content-Transfer-Encoding: %s\r\n"
                         "\r\n"
                         "This is a MIME-encapsulated message.\r\n"
                         "\r\n"
                         "--%s\r\n"
                         "Content-Description: Notification\r\n"
                         "Content-Type: text/plain; charset=%s\r\n"
                         "%s"
                         "\r\n",
                         date, p->hostname, e->sender, subject(p->kind), p->dsn_id, p->hostname,
                         boundary, orig8 || human8 ? "8bit" : "7bit", boundary,
                         human8 ? "utf-8" : "us-ascii",
                         human8 ? "Content-Transfer-Encoding: 8bit\r\n" : "");
    if (rc == 0)
        rc = sbuf_append(out, text.data ? text.data : "", text.len);
    sbuf_free(&text);

    if (rc == 0)
        rc = sbuf_printf(out,
                         "\r\n--%s\r\n"
                         "Content-Description: Delivery report\r\n"
                         "Content-Type: message/delivery-status\r\n"
                         "\r\n",
                         boundary);
    if (rc == 0)
        rc = sbuf_printf(out, "Reporting-MTA: dns; %s\r\nX-Sluice-Queue-ID: %s\r\n", p->hostname,
                         e->id);
    if (rc == 0 && e->envid) {
        char dec[512];
        if (dlv_xtext_decode(e->envid, dec, sizeof(dec)) == 0)
            rc = put_folded(out, "Original-Envelope-Id", dec);
    }
    if (rc == 0 && e->sender) {
        char v[600];
        snprintf(v, sizeof(v), "rfc822; %s", e->sender);
        rc = put_folded(out, "X-Sluice-Sender", v);
    }
    if (rc == 0) {
        dlv_rfc5322_date(e->arrival_us, date, sizeof(date));
        rc = sbuf_printf(out, "Arrival-Date: %s\r\n", date);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = put_rcpt_status(out, p, &rcpts[i]);

    if (rc == 0 && p->orig) {
        rc = sbuf_printf(out, "\r\n--%s\r\n", boundary);
        if (rc == 0)
            rc = sbuf_printf(out,
                             "Content-Description: %s\r\n"
                             "Content-Type: %s\r\n"
                             "%s\r\n",
                             full ? "Undelivered Message" : "Undelivered Message Headers",
                             full ? "message/rfc822" : "text/rfc822-headers",
                             orig8 ? "Content-Transfer-Encoding: 8bit\r\n" : "");
        if (rc == 0)
            rc = sbuf_append(out, p->orig, olen);
        /* A part's last line needs its CRLF before the boundary's. */
        if (rc == 0 && olen > 0 && p->orig[olen - 1] != '\n')
            rc = sbuf_puts(out, "\r\n");
    }
    if (rc == 0)
        rc = sbuf_printf(out, "\r\n--%s--\r\n", boundary);
    return rc;
}
