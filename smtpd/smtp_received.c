/*
 * smtp_received.c - the trace header sluice-smtpd prepends (RFC 5321 4.4,
 * with the protocol names of RFC 3848). "for <rcpt>" is given only for a
 * single recipient, so one recipient cannot learn the others (as Postfix).
 */
#include <stdio.h>
#include <time.h>

#include "sluice/smtp_session.h"

int smtp_received_header(const smtp_session *s, sbuf *out)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

    int rc;
    if (s->kind == LISTEN_LOCAL) {
        /* As Postfix's pickup: the kernel-verified user, no network data. */
        rc = sbuf_printf(out, "Received: by %s (Sluice, from userid %ld)\r\n\tid %s",
                         s->cfg->hostname, s->local_uid, s->id);
        if (rc == 0 && s->env.nrcpt == 1)
            rc = sbuf_printf(out, "\r\n\tfor <%s>", s->env.rcpts[0].addr);
        if (rc == 0)
            rc = sbuf_printf(out, "; %s\r\n", date);
        return rc;
    }
    rc = sbuf_printf(out, "Received: from %s (%s [%s])\r\n", s->helo[0] ? s->helo : "unknown",
                     s->peer_name, s->peer_ip);
    if (rc == 0 && s->tls_on)
        rc =
            sbuf_printf(out, "\t(using %s with cipher %s (%d bits))\r\n", tls_conn_version(&s->tls),
                        tls_conn_cipher(&s->tls), tls_conn_bits(&s->tls));
    if (rc == 0)
        rc = sbuf_printf(out, "\tby %s (Sluice) with %s id %s", s->cfg->hostname,
                         smtp_session_proto(s), s->id);
    if (rc == 0 && s->env.nrcpt == 1)
        rc = sbuf_printf(out, "\r\n\tfor <%s>", s->env.rcpts[0].addr);
    if (rc == 0)
        rc = sbuf_printf(out, "; %s\r\n", date);
    return rc;
}
