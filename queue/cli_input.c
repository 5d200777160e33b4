/*
 * cli_input.c - what `sluice sendmail` does to its standard input before
 * it goes into DATA (pure: bytes in, bytes out).
 *
 * Scripts write lines ended by LF; SMTP wants CRLF and refuses a bare CR
 * or LF (smuggling, see smtp_data.h), lines over 1000 octets, and needs
 * dot-stuffing. So, as sendmail does:
 *   - a line ends at LF; a CR before it is dropped, and so is a CR that
 *     ends nothing (the server would refuse the message for it);
 *   - without -i, a line holding only "." ends the input;
 *   - lines longer than CLI_LINE_MAX octets are broken: CRLF in the body,
 *     CRLF SP (folding, so the field goes on) in the header section;
 *   - a leading "From " line (an mbox separator) is dropped.
 *
 * The header section is kept (bounded by CLI_HEADER_MAX) so that the
 * caller can read To/Cc/Bcc for -t, drop Bcc, and see whether From: is
 * there; it ends at the empty line, or at the first line that is neither a
 * field nor a continuation (the body then starts there, after an empty
 * line the caller inserts). The body is never kept: it is converted into
 * in->out, which the caller drains to the socket as it goes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/cli.h"

enum { L_BOL = 0, L_TEXT, L_CR_BOL, L_CR_TEXT, L_DOT, L_DOT_CR };

void cli_input_init(cli_input *in, bool ignore_dots, sbuf *out)
{
    memset(in, 0, sizeof(*in));
    in->ignore_dots = ignore_dots;
    in->first_line = true;
    in->out = out;
    sbuf_init(&in->line, CLI_HEADER_MAX);
    sbuf_init(&in->hdr, CLI_HEADER_MAX);
}

void cli_input_free(cli_input *in)
{
    sbuf_free(&in->line);
    sbuf_free(&in->hdr);
    free(in->fields);
    in->fields = NULL;
    in->nfields = in->fcap = 0;
}

/* ---- output lines ---- */

/*
 * Appends one line's bytes to out, starting at column *col, breaking it
 * before CLI_LINE_MAX with brk ("\r\n" or "\r\n "), dot-stuffing every
 * line start.
 */
static int put_text(sbuf *out, size_t *col, const char *p, size_t n, const char *brk)
{
    int rc = 0;
    while (n > 0 && rc == 0) {
        if (*col >= CLI_LINE_MAX) {
            if ((rc = sbuf_puts(out, brk)) != 0)
                break;
            *col = strlen(brk) - 2;
        }
        if (*col == 0 && p[0] == '.') {
            if ((rc = sbuf_append(out, ".", 1)) != 0)
                break;
            (*col)++;
        }
        size_t room = CLI_LINE_MAX - *col, k = n < room ? n : room;
        rc = sbuf_append(out, p, k);
        *col += k;
        p += k;
        n -= k;
    }
    return rc;
}

static int put_eol(sbuf *out, size_t *col)
{
    *col = 0;
    return sbuf_append(out, "\r\n", 2);
}

/* A field: its lines (joined by CRLF in storage) folded for the wire. */
static int emit_field_text(sbuf *out, const char *p, size_t n)
{
    size_t col = 0;
    int rc = 0;
    while (rc == 0) {
        const char *nl = memchr(p, '\r', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        rc = put_text(out, &col, p, k, "\r\n ");
        if (rc == 0)
            rc = put_eol(out, &col);
        if (!nl)
            break;
        p += k + 2;
        n -= k + 2;
    }
    return rc;
}

int cli_header_emit(sbuf *out, const char *text, size_t len)
{
    return emit_field_text(out, text, len);
}

int cli_field_emit(const cli_input *in, size_t i, sbuf *out)
{
    const cli_field *f = &in->fields[i];
    return emit_field_text(out, in->hdr.data + f->off, f->len);
}

bool cli_field_is(const cli_input *in, size_t i, const char *name)
{
    const cli_field *f = &in->fields[i];
    return strlen(name) == f->name_len &&
           strncasecmp(in->hdr.data + f->off, name, f->name_len) == 0;
}

int cli_field_value(const cli_input *in, size_t i, sbuf *out)
{
    const cli_field *f = &in->fields[i];
    const char *p = in->hdr.data + f->off, *end = p + f->len;
    const char *colon = memchr(p, ':', f->len);
    int rc = 0;

    sbuf_reset(out);
    for (p = colon ? colon + 1 : end; p < end && rc == 0; p++)
        if (*p != '\r' && *p != '\n')
            rc = sbuf_append(out, p, 1);
    if (rc == 0 && !out->data)
        rc = sbuf_append(out, "", 0);
    return rc;
}

/* ---- the header section ---- */

/* "Name:" or "Name :" (obs-optional); returns the name's length or 0. */
static size_t field_name_len(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (unsigned char)p[i] > 32 && (unsigned char)p[i] < 127 && p[i] != ':')
        i++;
    size_t name = i;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return name > 0 && i < n && p[i] == ':' ? name : 0;
}

static int add_field(cli_input *in, size_t name_len)
{
    if (in->nfields == in->fcap) {
        size_t cap = in->fcap ? in->fcap * 2 : 16;
        cli_field *v = realloc(in->fields, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        in->fields = v;
        in->fcap = cap;
    }
    cli_field *f = &in->fields[in->nfields++];
    f->off = in->hdr.len;
    f->len = in->line.len;
    f->name_len = name_len;
    return sbuf_append(&in->hdr, in->line.data ? in->line.data : "", in->line.len);
}

/* The body starts with a line the header phase already holds. */
static int body_text(cli_input *in, const char *p, size_t n);

/* A whole line of the header phase (in->line, without its line end). */
static int header_line(cli_input *in)
{
    const char *p = in->line.data ? in->line.data : "";
    size_t n = in->line.len;
    int rc = 0;

    if (in->first_line && n >= 5 && memcmp(p, "From ", 5) == 0) {
        in->first_line = false; /* mbox separator: not part of the message */
        sbuf_reset(&in->line);
        return 0;
    }
    in->first_line = false;
    if (n == 0) {
        in->in_body = true;
    } else if ((p[0] == ' ' || p[0] == '\t') && in->nfields > 0) {
        cli_field *f = &in->fields[in->nfields - 1];
        if ((rc = sbuf_append(&in->hdr, "\r\n", 2)) == 0 && (rc = sbuf_append(&in->hdr, p, n)) == 0)
            f->len += 2 + n;
    } else {
        size_t name = field_name_len(p, n);
        if (name) {
            rc = add_field(in, name);
        } else {
            /* Not a header: the body starts here (after a separator). */
            in->in_body = true;
            in->need_separator = true;
            rc = body_text(in, p, n);
            if (rc == 0)
                rc = put_eol(in->out, &in->col);
        }
    }
    sbuf_reset(&in->line);
    return rc;
}

/* ---- the line splitter ---- */

static int body_text(cli_input *in, const char *p, size_t n)
{
    return put_text(in->out, &in->col, p, n, "\r\n");
}

static int text(cli_input *in, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (in->in_body)
        return body_text(in, p, n);
    if (in->hdr.len + in->line.len + n > CLI_HEADER_MAX)
        return -ENOBUFS;
    return sbuf_append(&in->line, p, n);
}

static int eol(cli_input *in)
{
    if (in->in_body)
        return put_eol(in->out, &in->col);
    return header_line(in);
}

long cli_input_feed(cli_input *in, const char *p, size_t len)
{
    size_t i = 0;
    int rc = 0;

    while (i < len && !in->ended && rc == 0) {
        char c = p[i];
        switch (in->lstate) {
        case L_BOL:
            if (c == '.' && !in->ignore_dots) {
                in->lstate = L_DOT;
                i++;
                continue;
            }
            /* fall through */
        case L_TEXT: {
            if (c == '\n') {
                rc = eol(in);
                in->lstate = L_BOL;
                i++;
            } else if (c == '\r') {
                in->lstate = in->lstate == L_BOL ? L_CR_BOL : L_CR_TEXT;
                i++;
            } else {
                /* A run of ordinary bytes in one call. */
                size_t j = i;
                while (j < len && p[j] != '\n' && p[j] != '\r')
                    j++;
                rc = text(in, p + i, j - i);
                in->lstate = L_TEXT;
                i = j;
            }
            break;
        }
        case L_CR_BOL:
        case L_CR_TEXT:
            if (c == '\n') {
                rc = eol(in);
                in->lstate = L_BOL;
                i++;
            } else {
                /* A CR that ends nothing is dropped; c is read again. */
                in->lstate = in->lstate == L_CR_BOL ? L_BOL : L_TEXT;
                if (in->lstate == L_BOL && c == '.')
                    in->lstate = L_TEXT; /* ".": not alone on its line */
            }
            break;
        case L_DOT:
        case L_DOT_CR:
            if (c == '\n') {
                in->ended = true;
                i++;
            } else if (c == '\r') {
                in->lstate = L_DOT_CR;
                i++;
            } else {
                rc = text(in, ".", 1);
                in->lstate = L_TEXT;
            }
            break;
        }
    }
    if (rc < 0)
        return rc;
    return (long)i;
}

int cli_input_finish(cli_input *in)
{
    int rc = 0;
    if (in->ended)
        return 0;
    /* A lone "." as the last line, without its line end, also ends it. */
    if (in->lstate == L_DOT || in->lstate == L_DOT_CR) {
        in->ended = true;
        return 0;
    }
    if (in->lstate == L_TEXT || in->lstate == L_CR_TEXT || (!in->in_body && in->line.len))
        rc = eol(in);
    in->lstate = L_BOL;
    return rc;
}

/* ---- the From: field sendmail adds ---- */

int cli_from_field(const char *name, const char *addr, sbuf *out)
{
    int rc = sbuf_puts(out, "From: ");
    if (rc == 0 && name && *name) {
        bool ascii = true, plain = true;
        for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
            if (*p >= 0x80 || *p < 0x20 || *p == 0x7f)
                ascii = false;
            else if (!strchr(" !#$%&'*+-/=?^_`{|}~", *p) && !(*p >= '0' && *p <= '9') &&
                     !((*p | 32) >= 'a' && (*p | 32) <= 'z'))
                plain = false;
        }
        if (ascii && plain) {
            rc = sbuf_printf(out, "%s ", name);
        } else if (ascii) {
            /* quoted-string (RFC 5322 3.2.4) */
            rc = sbuf_puts(out, "\"");
            for (const char *p = name; *p && rc == 0; p++)
                rc = (*p == '"' || *p == '\\') ? sbuf_printf(out, "\\%c", *p)
                                               : sbuf_append(out, p, 1);
            if (rc == 0)
                rc = sbuf_puts(out, "\" ");
        } else {
            /* One RFC 2047 encoded word per <= 45 bytes, split between
             * UTF-8 sequences (control characters are encoded too, so no
             * name can break the header line). */
            static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            const unsigned char *p = (const unsigned char *)name;
            size_t left = strlen(name);
            while (left && rc == 0) {
                size_t k = left < 45 ? left : 45;
                while (k < left && k > 1 && (p[k] & 0xc0) == 0x80)
                    k--;
                rc = sbuf_puts(out, "=?UTF-8?B?");
                for (size_t i = 0; i < k && rc == 0; i += 3) {
                    unsigned v = (unsigned)p[i] << 16 | (i + 1 < k ? (unsigned)p[i + 1] << 8 : 0) |
                                 (i + 2 < k ? p[i + 2] : 0);
                    char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63],
                                 i + 1 < k ? b64[v >> 6 & 63] : '=', i + 2 < k ? b64[v & 63] : '='};
                    rc = sbuf_append(out, q, 4);
                }
                if (rc == 0)
                    rc = sbuf_puts(out, "?= ");
                p += k;
                left -= k;
            }
        }
        if (rc == 0)
            rc = sbuf_printf(out, "<%s>", addr);
    } else if (rc == 0) {
        rc = sbuf_puts(out, addr);
    }
    return rc;
}
