/*
 * spf_header.c - the Received-SPF header field (RFC 7208 9.1): the result
 * word, a comment a person can read, and key=value pairs, folded at 78
 * columns, every value a dot-atom or a quoted-string, nothing the client
 * sent able to end the field or add one. Pure: see spf_header.h.
 */
#include "spf_header.h"

#include <stdio.h>
#include <string.h>

#define SPF_LINE_FOLD 78 /* RFC 5322 2.1.1 */

struct hbuf {
    char *p;
    size_t size, len;
    size_t col; /* width of the current line */
    bool full;
};

/*
 * Adds one token, folding before it when the line would pass 78 columns
 * (unless keep: the comment stays beside the result word it explains).
 */
static void h_token(struct hbuf *h, const char *tok, bool keep)
{
    size_t tl = strlen(tok);
    bool first = h->len == 0;
    bool fold = !first && !keep && h->col + 1 + tl > SPF_LINE_FOLD;
    size_t need = tl + (first ? 0 : fold ? 3 : 1);
    if (h->full || h->len + need + 1 > h->size) {
        h->full = true; /* drop whole tokens, never half of one */
        return;
    }
    if (!first) {
        if (fold) {
            memcpy(h->p + h->len, "\r\n\t", 3);
            h->len += 3;
            h->col = 8; /* a tab */
        } else {
            h->p[h->len++] = ' ';
            h->col++;
        }
    }
    memcpy(h->p + h->len, tok, tl + 1);
    h->len += tl;
    h->col += tl;
}

static bool is_atext(unsigned char ch)
{
    /* RFC 5322 3.2.3; bytes >= 0x80 as RFC 6532 allows for UTF-8 */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL || ch >= 0x80;
}

static bool is_dot_atom(const char *s)
{
    if (!*s || *s == '.')
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (p[1] == '.' || p[1] == '\0')
                return false;
        } else if (!is_atext((unsigned char)*p)) {
            return false;
        }
    }
    return true;
}

/*
 * Appends src to out (size bytes) as the inside of a quoted-string (quote)
 * or a comment: quoted-pairs for the specials, '?' for controls. At most
 * max source bytes are used.
 */
static size_t escape(char *out, size_t size, size_t len, const char *src, size_t max, bool quote)
{
    for (size_t i = 0; src[i] && i < max; i++) {
        unsigned char ch = (unsigned char)src[i];
        bool special = quote ? (ch == '"' || ch == '\\') : (ch == '(' || ch == ')' || ch == '\\');
        if (len + 3 > size)
            break;
        if (special)
            out[len++] = '\\';
        out[len++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[len] = '\0';
    return len;
}

/* "key=value;" with value as dot-atom when it is one, else quoted. */
static void h_pair(struct hbuf *h, const char *key, const char *value, bool force_quote)
{
    char tok[1100];
    int n = snprintf(tok, sizeof(tok), "%s=", key);
    size_t len = (size_t)n;
    if (!force_quote && is_dot_atom(value) && strlen(value) < 512) {
        len = (size_t)snprintf(tok + len, sizeof(tok) - len, "%s", value) + len;
    } else {
        tok[len++] = '"';
        len = escape(tok, sizeof(tok) - 3, len, value, 512, true);
        tok[len++] = '"';
        tok[len] = '\0';
    }
    if (len + 2 > sizeof(tok))
        return;
    tok[len++] = ';';
    tok[len] = '\0';
    h_token(h, tok, false);
}

void spf_header_build(const spf_header_in *in, char *out, size_t size)
{
    const char *rcv = in->receiver, *ip = in->ip;
    /* who: the sender for MAIL FROM, the HELO name for HELO */
    const char *who = in->identity == SPF_ID_MAILFROM ? in->sender : in->helo;
    char whoq[600];
    escape(whoq, sizeof(whoq), 0, who, 254, false);
    /* with the field name and result word, the first line stays under 998 octets */
    char com[900];
    int n;
    const char *d = in->detail && in->detail[0] ? in->detail : "unknown error";
    char detq[400];
    escape(detq, sizeof(detq), 0, d, 160, false);

    switch (in->result) {
    case SPF_RES_PASS:
        n = snprintf(com, sizeof(com), "(%.253s: domain of %s designates %s as permitted sender)",
                     rcv, whoq, ip);
        break;
    case SPF_RES_FAIL:
        n = snprintf(com, sizeof(com),
                     "(%.253s: domain of %s does not designate %s as permitted sender)", rcv, whoq,
                     ip);
        break;
    case SPF_RES_SOFTFAIL:
        n = snprintf(com, sizeof(com),
                     "(%.253s: domain of transitioning %s does not designate %s as permitted "
                     "sender)",
                     rcv, whoq, ip);
        break;
    case SPF_RES_NEUTRAL:
        n = snprintf(com, sizeof(com),
                     "(%.253s: %s is neither permitted nor denied by domain of %s)", rcv, ip, whoq);
        break;
    case SPF_RES_TEMPERROR:
        n = snprintf(com, sizeof(com), "(%.253s: temporary error checking domain of %s: %s)", rcv,
                     whoq, detq);
        break;
    case SPF_RES_PERMERROR:
        n = snprintf(com, sizeof(com), "(%.253s: permanent error in the policy of %s: %s)", rcv,
                     whoq, detq);
        break;
    case SPF_RES_NONE:
    default:
        if (in->identity == SPF_ID_NONE)
            n = snprintf(com, sizeof(com),
                         "(%.253s: no identity to check: null sender and HELO "
                         "name is not a domain)",
                         rcv);
        else
            n = snprintf(com, sizeof(com),
                         "(%.253s: domain of %s does not designate permitted sender hosts)", rcv,
                         whoq);
        break;
    }
    if (n < 0 || (size_t)n >= sizeof(com))
        snprintf(com, sizeof(com), "(%.253s)", rcv); /* never cut an escape in half */

    struct hbuf h = {.p = out, .size = size};
    if (size == 0)
        return;
    out[0] = '\0';
    h.col = sizeof("Received-SPF:"); /* the field name and its space come first */
    h_token(&h, spf_result_name(in->result), false);
    h_token(&h, com, true);
    h_pair(&h, "client-ip", ip, false);
    if (in->sender[0])
        h_pair(&h, "envelope-from", in->sender, true);
    if (in->helo[0])
        h_pair(&h, "helo", in->helo, false);
    if (in->result == SPF_RES_TEMPERROR || in->result == SPF_RES_PERMERROR)
        h_pair(&h, "problem", d, true);
    h_pair(&h, "receiver", rcv, false);
    if (in->identity != SPF_ID_NONE)
        h_pair(&h, "identity", in->identity == SPF_ID_HELO ? "helo" : "mailfrom", false);
}
