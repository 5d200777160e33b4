/*
 * smtp_client_reply.c - pure parsing for the SMTP client (dlv_smtp.h):
 * reply lines, EHLO keywords, the relayhost_auth file. No I/O.
 *
 * Replies come from servers we do not control: every line is bounded,
 * every byte that is not printable ASCII or well-formed UTF-8 is replaced
 * before the text reaches a log, an envelope or a DSN.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sluice/dlv_smtp.h"

/* Room kept in front of the text for "NNN X.YYY.ZZZ " when formatting. */
#define TEXT_MAX (DLV_REPLY_MAX - 16)

void dlv_smtp_reply_init(dlv_smtp_reply *r)
{
    memset(r, 0, sizeof(*r));
}

void dlv_smtp_status_from_code(int code, char out[8])
{
    int c = code / 100;
    snprintf(out, 8, "%d.0.0", c == 2 || c == 5 ? c : 4);
}

/* Length of a well-formed UTF-8 sequence at s (RFC 3629), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t len)
{
    size_t n;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2, min = 0x80, cp = s[0] & 0x1fu;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3, min = 0x800, cp = s[0] & 0x0fu;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4, min = 0x10000, cp = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Appends sanitized text, keeping whole UTF-8 sequences within the bound. */
static void text_append(dlv_smtp_reply *r, const char *p, size_t len)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_len(s + i, len - i);
        if (n == 0 || (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
            if (r->text_len + 1 > TEXT_MAX)
                break;
            r->text[r->text_len++] = s[i] == '\t' ? ' ' : '?';
            i++;
            continue;
        }
        if (r->text_len + n > TEXT_MAX)
            break;
        memcpy(r->text + r->text_len, s + i, n);
        r->text_len += n;
        i += n;
    }
    r->text[r->text_len] = '\0';
}

/* Length of "C.SSS.DDD" at s when followed by a space or the end, else 0. */
static size_t status_len(const char *s, size_t len, char cls)
{
    size_t i = 0;
    if (len < 5 || s[0] != cls || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < len && d < 4 && isdigit((unsigned char)s[i]))
            i++, d++;
        if (d == 0 || d > 3)
            return 0;
        if (part == 0) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
    }
    if (i < len && s[i] != ' ')
        return 0;
    return i;
}

int dlv_smtp_reply_line(dlv_smtp_reply *r, const char *line, size_t len, const char **text,
                        size_t *text_len)
{
    if (r->done)
        dlv_smtp_reply_init(r);
    if (len < 3 || line[0] < '2' || line[0] > '5' || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]))
        return -EPROTO;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return -EPROTO;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (r->nlines > 0 && code != r->code)
        return -EPROTO;
    if (r->nlines >= DLV_SMTP_REPLY_LINES)
        return -E2BIG;
    bool last = len == 3 || line[3] == ' ';
    const char *t = len > 4 ? line + 4 : line + len;
    size_t tl = len > 4 ? len - 4 : 0;
    if (text)
        *text = t;
    if (text_len)
        *text_len = tl;

    size_t sl = status_len(t, tl, line[0]);
    if (sl >= sizeof(r->status)) /* "5.123.456" is valid but does not fit: keep it as text */
        sl = 0;
    if (r->nlines == 0) {
        r->code = code;
        if (sl > 0) {
            memcpy(r->status, t, sl);
            r->status[sl] = '\0';
            r->has_status = true;
        } else {
            dlv_smtp_status_from_code(code, r->status);
        }
    }
    if (sl > 0) { /* drop the code from the text: it is kept in status */
        t += sl;
        tl -= sl;
    }
    while (tl > 0 && *t == ' ')
        t++, tl--;
    while (tl > 0 && t[tl - 1] == ' ')
        tl--;
    if (tl > 0) {
        if (r->text_len > 0)
            text_append(r, " ", 1);
        text_append(r, t, tl);
    }
    r->nlines++;
    if (last)
        r->done = true;
    return last ? 1 : 0;
}

long dlv_smtp_next_line(const char *buf, size_t len, size_t *line_len)
{
    size_t scan = len < DLV_SMTP_LINE_MAX + 2 ? len : DLV_SMTP_LINE_MAX + 2;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl)
        return len >= DLV_SMTP_LINE_MAX + 2 ? -E2BIG : 0;
    size_t n = (size_t)(nl - buf);
    *line_len = n > 0 && buf[n - 1] == '\r' ? n - 1 : n;
    if (*line_len > DLV_SMTP_LINE_MAX)
        return -E2BIG;
    return (long)(n + 1);
}

void dlv_smtp_reply_format(const dlv_smtp_reply *r, char *out, size_t outsz)
{
    if (r->has_status)
        snprintf(out, outsz, "%d %s%s%s", r->code, r->status, r->text_len ? " " : "", r->text);
    else
        snprintf(out, outsz, "%d%s%s", r->code, r->text_len ? " " : "", r->text);
}

static bool word_is(const char *s, size_t len, const char *w)
{
    return strlen(w) == len && strncasecmp(s, w, len) == 0;
}

void dlv_smtp_ext_line(dlv_smtp_ext *ext, const char *text, size_t len)
{
    size_t k = 0;
    while (k < len && text[k] != ' ' && text[k] != '=')
        k++;
    const char *rest = text + k;
    size_t rl = len - k;
    if (word_is(text, k, "PIPELINING")) {
        ext->flags |= DLV_SMTP_EXT_PIPELINING;
    } else if (word_is(text, k, "8BITMIME")) {
        ext->flags |= DLV_SMTP_EXT_8BITMIME;
    } else if (word_is(text, k, "SMTPUTF8")) {
        ext->flags |= DLV_SMTP_EXT_SMTPUTF8;
    } else if (word_is(text, k, "DSN")) {
        ext->flags |= DLV_SMTP_EXT_DSN;
    } else if (word_is(text, k, "STARTTLS")) {
        ext->flags |= DLV_SMTP_EXT_STARTTLS;
    } else if (word_is(text, k, "ENHANCEDSTATUSCODES")) {
        ext->flags |= DLV_SMTP_EXT_ENHANCEDSTATUSCODES;
    } else if (word_is(text, k, "SIZE")) {
        /* "SIZE" alone or "SIZE 0" means no fixed limit (RFC 1870). */
        uint64_t n = 0;
        size_t i = 0;
        while (i < rl && rest[i] == ' ')
            i++;
        for (; i < rl && isdigit((unsigned char)rest[i]); i++) {
            if (n > (UINT64_MAX - 9) / 10) {
                n = 0; /* absurd: treat as no limit rather than a tiny one */
                break;
            }
            n = n * 10 + (uint64_t)(rest[i] - '0');
        }
        ext->flags |= DLV_SMTP_EXT_SIZE;
        ext->size = n;
    } else if (word_is(text, k, "AUTH")) {
        ext->flags |= DLV_SMTP_EXT_AUTH;
        size_t i = 0;
        while (i < rl) { /* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN" */
            while (i < rl && (rest[i] == ' ' || rest[i] == '='))
                i++;
            size_t s = i;
            while (i < rl && rest[i] != ' ')
                i++;
            if (word_is(rest + s, i - s, "PLAIN"))
                ext->flags |= DLV_SMTP_EXT_AUTH_PLAIN;
        }
    }
}

int dlv_smtp_auth_parse(const char *text, size_t len, char *user, size_t usersz, char *pass,
                        size_t passsz)
{
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        size_t s = i, end = e;
        i = e + 1;
        while (s < end && (text[s] == ' ' || text[s] == '\t'))
            s++;
        while (end > s && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r'))
            end--;
        if (s == end || text[s] == '#')
            continue;
        size_t u = s;
        while (u < end && text[u] != ' ' && text[u] != '\t')
            u++;
        size_t p = u;
        while (p < end && (text[p] == ' ' || text[p] == '\t'))
            p++;
        if (p == end || u - s >= usersz || end - p >= passsz)
            return -EINVAL;
        for (size_t k = s; k < end; k++)
            if (text[k] == '\0' || text[k] == '\r')
                return -EINVAL;
        memcpy(user, text + s, u - s);
        user[u - s] = '\0';
        memcpy(pass, text + p, end - p);
        pass[end - p] = '\0';
        return 0;
    }
    return -EINVAL;
}
