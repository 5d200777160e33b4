/*
 * smtp_path.c - the Reverse-path / Forward-path of MAIL FROM and RCPT TO
 * (RFC 5321 4.1.2, limits 4.5.3.1, UTF-8 per RFC 6531 3.3). Public entry:
 * smtp_path_parse() (see include/sluice/smtp_parse.h).
 *
 * Pure: no allocation, no I/O, no global state; never reads past len.
 *
 * The parser is deliberately strict. Almost every open-relay hole in MTA
 * history came from two components (the relay check and the router) reading
 * one address two ways, so anything that a later stage could reinterpret is
 * refused here and everything accepted has exactly one reading:
 * - angle brackets are required ("MAIL FROM:user@x" is a syntax error),
 *   no spaces inside them;
 * - the local part is a dot-atom or a quoted string, kept verbatim. '%' and
 *   '!' are ordinary atext: "user%other@local" and "a!b@local" are valid,
 *   and the relay policy must judge them by the domain after the '@' only;
 * - "user@other@local" is refused: '@' is not atext;
 * - source routes ("@a,@b:user@c", RFC 5321 4.1.2 and Appendix C) are
 *   accepted and dropped, so no later stage can route by them;
 * - the domain is dot-separated labels of letters, digits, '-' and UTF-8
 *   (U-labels), or an address literal [1.2.3.4] / [IPv6:...];
 * - malformed UTF-8, C0/C1 controls, DEL, NUL, CR and LF are refused
 *   wherever they appear.
 */
#include "sluice/smtp_parse.h"

#include <arpa/inet.h>
#include <string.h>

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 5322 3.2.3 atext, ASCII part. */
static bool is_atext(unsigned char c)
{
    if (is_alpha(c) || is_digit(c))
        return true;
    return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool ieq(const char *s, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 'a' + 'A');
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

/*
 * A non-ASCII character at s[0] acceptable in an address (RFC 6531
 * UTF8-non-ascii): well-formed UTF-8 but not a C1 control (U+0080..U+009F,
 * encoded C2 80..C2 9F). Returns its length or 0.
 */
static size_t utf8_char(const char *s, size_t len)
{
    size_t n = smtp_utf8_seq_len(s, len);
    if (n == 2 && (unsigned char)s[0] == 0xC2 && (unsigned char)s[1] < 0xA0)
        return 0;
    return n;
}

/*
 * IDNA2003 (UTS #46) maps these to '.', so "user@example。test" could be
 * routed as example.test by one component while the relay check compares
 * the unmapped string: refuse them in domains.
 */
static bool is_idna_dot(const char *s, size_t n)
{
    static const char dots[3][3] = {
        {'\xE3', '\x80', '\x82'}, /* U+3002 IDEOGRAPHIC FULL STOP */
        {'\xEF', '\xBC', '\x8E'}, /* U+FF0E FULLWIDTH FULL STOP */
        {'\xEF', '\xBD', '\xA1'}, /* U+FF61 HALFWIDTH IDEOGRAPHIC FULL STOP */
    };
    if (n != 3)
        return false;
    for (size_t i = 0; i < 3; i++)
        if (memcmp(s, dots[i], 3) == 0)
            return true;
    return false;
}

/*
 * IPv4-address-literal content, RFC 5321 4.1.3: Snum "." Snum "." Snum "."
 * Snum, each 0..255. Leading zeros are refused although the ABNF allows
 * them: inet_aton() reads "010" as octal 8, so "[127.000.000.010]" would
 * name different hosts to different readers. What passes here is exactly
 * what inet_pton(AF_INET) accepts.
 */
static bool ipv4_literal(const char *s, size_t len)
{
    size_t p = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (p >= len || s[p] != '.')
                return false;
            p++;
        }
        size_t start = p;
        unsigned v = 0;
        while (p < len && is_digit((unsigned char)s[p]) && p - start < 3)
            v = v * 10 + (unsigned)(s[p++] - '0');
        size_t n = p - start;
        if (n == 0 || v > 255 || (n > 1 && s[start] == '0'))
            return false;
    }
    return p == len;
}

/* "IPv6:" IPv6-addr, checked by inet_pton on a NUL-terminated copy. */
static bool ipv6_literal(const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof buf)
        return false;
    /* inet_pton stops at a NUL, so "::1\0junk" would pass: allow only the
     * characters an IPv6 text address can contain (no "%zone" either). */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_digit(c) && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') && c != ':' &&
            c != '.')
            return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    unsigned char addr[16];
    return inet_pton(AF_INET6, buf, addr) == 1;
}

/*
 * Domain at s[*p]: labels, or (when literal_ok) an address literal. On
 * success *p is just past it. Sets *non_ascii for any U-label and
 * *is_literal for "[...]".
 */
static smtp_perr scan_domain(const char *s, size_t len, size_t *p, bool literal_ok, bool *non_ascii,
                             bool *is_literal)
{
    size_t start = *p;
    size_t i = start;

    if (i < len && s[i] == '[') {
        if (!literal_ok)
            return SMTP_PERR_ADDR_SYNTAX;
        size_t c = i + 1;
        while (c < len && s[c] != ']' && s[c] != '>')
            c++;
        if (c >= len || s[c] != ']')
            return SMTP_PERR_ADDR_SYNTAX;
        const char *in = s + i + 1;
        size_t inlen = c - i - 1;
        bool ok;
        if (inlen >= 5 && ieq(in, "IPV6:", 5))
            ok = ipv6_literal(in + 5, inlen - 5);
        else
            ok = ipv4_literal(in, inlen); /* General-address-literal: refused */
        /* A literal that passed is at most "[IPv6:" + 45 + "]" octets: no
         * length check needed against SMTP_DOMAIN_MAX. */
        if (!ok)
            return SMTP_PERR_ADDR_SYNTAX;
        *is_literal = true;
        *p = c + 1;
        return SMTP_POK;
    }

    bool last_numeric = false;
    for (;;) {
        size_t lstart = i;
        bool ascii = true, numeric = true;
        while (i < len) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x80) {
                if (!is_alpha(c) && !is_digit(c) && c != '-')
                    break;
                if (!is_digit(c))
                    numeric = false;
                i++;
                continue;
            }
            size_t n = utf8_char(s + i, len - i);
            if (n == 0 || is_idna_dot(s + i, n))
                return SMTP_PERR_ADDR_SYNTAX;
            ascii = false;
            numeric = false;
            *non_ascii = true;
            i += n;
        }
        /* Empty label: covers "..", a leading dot and a trailing dot. */
        if (i == lstart)
            return SMTP_PERR_ADDR_SYNTAX;
        /* RFC 1035 2.3.4: 63 octets a label. A U-label is measured by its
         * A-label, which we cannot compute without IDNA tables: its UTF-8
         * form may exceed 63 octets legitimately, so only ASCII is checked. */
        if (ascii && i - lstart > 63)
            return SMTP_PERR_ADDR_SYNTAX;
        last_numeric = numeric;
        /*
         * A trailing dot ("user@example.test.") is refused although DNS reads
         * it as example.test: a relay check that compares strings with the
         * local-domain list and a router that asks DNS then disagree on
         * whether the domain is ours, which is how the trailing-dot forms of
         * the classic relay tests ("user%remote@local.", "user@remote.")
         * got through. One spelling per domain keeps policy and router agreed.
         */
        if (i < len && s[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    /*
     * RFC 3696 2: a top-level domain is never all-numeric. Refusing it stops
     * "user@127.0.0.1" or "user@2130706433" (no brackets) from reaching a
     * resolver that treats the name as a numeric address.
     */
    if (last_numeric)
        return SMTP_PERR_ADDR_SYNTAX;
    if (i - start > SMTP_DOMAIN_MAX)
        return SMTP_PERR_ADDR_TOO_LONG;
    *p = i;
    return SMTP_POK;
}

/* Dot-string (RFC 5321 4.1.2): Atom *("." Atom), atext plus UTF-8. */
static smtp_perr scan_dot_string(const char *s, size_t len, size_t *p, bool *non_ascii)
{
    size_t i = *p;
    for (;;) {
        size_t astart = i;
        while (i < len) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x80) {
                if (!is_atext(c))
                    break;
                i++;
                continue;
            }
            size_t n = utf8_char(s + i, len - i);
            if (n == 0)
                return SMTP_PERR_ADDR_SYNTAX;
            *non_ascii = true;
            i += n;
        }
        if (i == astart) /* leading, trailing or doubled dot */
            return SMTP_PERR_ADDR_SYNTAX;
        if (i < len && s[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    *p = i;
    return SMTP_POK;
}

/* Quoted-string (RFC 5321 4.1.2, RFC 6531 3.3): s[*p] is the opening '"'. */
static smtp_perr scan_quoted(const char *s, size_t len, size_t *p, bool *non_ascii)
{
    size_t i = *p + 1;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            *p = i + 1;
            return SMTP_POK;
        }
        if (c == '\\') {
            /* quoted-pairSMTP = %d92 %d32-126 */
            if (i + 1 >= len || (unsigned char)s[i + 1] < 32 || (unsigned char)s[i + 1] > 126)
                return SMTP_PERR_ADDR_SYNTAX;
            i += 2;
        } else if (c >= 32 && c <= 126) {
            i++; /* qtextSMTP: %d32-33 / %d35-91 / %d93-126 */
        } else if (c >= 0x80) {
            size_t n = utf8_char(s + i, len - i);
            if (n == 0)
                return SMTP_PERR_ADDR_SYNTAX;
            *non_ascii = true;
            i += n;
        } else {
            return SMTP_PERR_ADDR_SYNTAX;
        }
    }
    return SMTP_PERR_ADDR_SYNTAX; /* unterminated */
}

smtp_perr smtp_path_parse(const char *s, size_t len, bool allow_null, smtp_path *out,
                          size_t *consumed)
{
    out->addr[0] = '\0';
    out->len = 0;
    out->at = 0;
    out->is_null = false;
    out->non_ascii = false;
    out->ip_literal = false;
    *consumed = 0;

    if (len == 0 || s[0] != '<')
        return SMTP_PERR_ADDR_SYNTAX;
    size_t p = 1;

    if (p < len && s[p] == '>') {
        if (!allow_null)
            return SMTP_PERR_ADDR_SYNTAX;
        out->is_null = true;
        *consumed = 2;
        return SMTP_POK;
    }

    bool non_ascii = false, literal = false, route = false;
    smtp_perr r;

    /* A-d-l ":" -- At-domain *( "," At-domain ), At-domain = "@" Domain.
     * Syntax-checked, then dropped (RFC 5321 4.1.2, Appendix C). */
    if (p < len && s[p] == '@') {
        route = true;
        for (;;) {
            bool lit_unused = false;
            p++; /* the '@' */
            r = scan_domain(s, len, &p, false, &non_ascii, &lit_unused);
            if (r != SMTP_POK)
                return r == SMTP_PERR_ADDR_TOO_LONG ? r : SMTP_PERR_ADDR_SYNTAX;
            if (p < len && s[p] == ',' && p + 1 < len && s[p + 1] == '@') {
                p++;
                continue;
            }
            if (p < len && s[p] == ':') {
                p++;
                break;
            }
            return SMTP_PERR_ADDR_SYNTAX;
        }
    }

    size_t mstart = p;
    if (p < len && s[p] == '"')
        r = scan_quoted(s, len, &p, &non_ascii);
    else
        r = scan_dot_string(s, len, &p, &non_ascii);
    if (r != SMTP_POK)
        return r;
    size_t local_len = p - mstart;
    if (local_len > SMTP_LOCAL_MAX)
        return SMTP_PERR_ADDR_TOO_LONG;

    size_t at;
    if (p < len && s[p] == '>') {
        /* RFC 5321 4.1.1.3: "<Postmaster>" is the only domain-less path, and
         * only for RCPT; it takes no source route. */
        if (allow_null || route || local_len != 10 || !ieq(s + mstart, "POSTMASTER", 10))
            return SMTP_PERR_ADDR_SYNTAX;
        at = local_len;
    } else if (p < len && s[p] == '@') {
        at = local_len;
        p++;
        r = scan_domain(s, len, &p, true, &non_ascii, &literal);
        if (r != SMTP_POK)
            return r;
        if (p >= len || s[p] != '>')
            return SMTP_PERR_ADDR_SYNTAX;
    } else {
        return SMTP_PERR_ADDR_SYNTAX;
    }

    /* s[p] == '>'. RFC 5321 4.5.3.1.3: 256 octets including punctuation,
     * which is what we count: '<', any source route, the mailbox and '>'. */
    size_t total = p + 1;
    if (total > SMTP_PATH_MAX)
        return SMTP_PERR_ADDR_TOO_LONG;

    size_t alen = p - mstart;
    memcpy(out->addr, s + mstart, alen);
    out->addr[alen] = '\0';
    out->len = alen;
    out->at = at == local_len && at < alen ? at : alen;
    out->non_ascii = non_ascii;
    out->ip_literal = literal;
    *consumed = total;
    return SMTP_POK;
}
