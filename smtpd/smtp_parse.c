/*
 * smtp_parse.c - SMTP command line splitter, BDAT and HELO arguments, xtext
 * (RFC 3461 4) and UTF-8 well-formedness (see include/sluice/smtp_parse.h).
 * Paths are in smtp_path.c, MAIL/RCPT parameters in smtp_params.c.
 *
 * Contract for every function here: pure, no allocation, no I/O, no global
 * state, never reads past len, input need not be NUL-terminated.
 *
 * Decisions the session depends on:
 * - The verb starts at byte 0 and ends at a SP or at the end of the line:
 *   "DATAX" and "DATA\tx" are SMTP_VERB_UNKNOWN (RFC 5321 4.1.1: SP only).
 * - "MAIL" and "RCPT" need one or more SP, then "FROM:" / "TO:" (any case);
 *   anything else after those verbs is SMTP_PERR_SYNTAX. Spaces after the
 *   colon are skipped (RFC 5321 forbids them, clients send them anyway).
 * - arg is never NULL when line is not: an absent argument is arg_len == 0
 *   with arg pointing at the end of the line. arg may hold any octets (NUL,
 *   controls, 8-bit): the argument parsers are what reject them.
 */
#include "sluice/smtp_parse.h"

#include <string.h>

static const struct {
    const char *name;
    size_t len;
    smtp_verb verb;
} verbs[] = {
    {"HELO", 4, SMTP_VERB_HELO},         {"EHLO", 4, SMTP_VERB_EHLO}, {"MAIL", 4, SMTP_VERB_MAIL},
    {"RCPT", 4, SMTP_VERB_RCPT},         {"DATA", 4, SMTP_VERB_DATA}, {"BDAT", 4, SMTP_VERB_BDAT},
    {"RSET", 4, SMTP_VERB_RSET},         {"NOOP", 4, SMTP_VERB_NOOP}, {"QUIT", 4, SMTP_VERB_QUIT},
    {"VRFY", 4, SMTP_VERB_VRFY},         {"EXPN", 4, SMTP_VERB_EXPN}, {"HELP", 4, SMTP_VERB_HELP},
    {"STARTTLS", 8, SMTP_VERB_STARTTLS}, {"AUTH", 4, SMTP_VERB_AUTH},
};

/* ASCII-only case folding: toupper() depends on the locale. */
static unsigned char up(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

/* Case-insensitive compare of s[0..n) with the upper-case literal lit. */
static bool ieq(const char *s, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (up((unsigned char)s[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

smtp_perr smtp_cmd_parse(const char *line, size_t len, smtp_cmd *out)
{
    out->verb = SMTP_VERB_UNKNOWN;
    out->arg = line ? line + len : line;
    out->arg_len = 0;

    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;

    smtp_verb verb = SMTP_VERB_UNKNOWN;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (verbs[i].len == vlen && ieq(line, verbs[i].name, vlen)) {
            verb = verbs[i].verb;
            break;
        }
    }
    if (verb == SMTP_VERB_UNKNOWN)
        return SMTP_POK;

    size_t p = vlen;
    while (p < len && line[p] == ' ')
        p++;

    if (verb == SMTP_VERB_MAIL || verb == SMTP_VERB_RCPT) {
        const char *kw = verb == SMTP_VERB_MAIL ? "FROM:" : "TO:";
        size_t kwlen = verb == SMTP_VERB_MAIL ? 5 : 3;
        /* "MAILFROM:" never gets here (verb would be "MAILFROM:..."), and
         * "MAIL" with nothing after it has no keyword: both are syntax. */
        if (p == vlen || len - p < kwlen || !ieq(line + p, kw, kwlen)) {
            out->verb = verb;
            return SMTP_PERR_SYNTAX;
        }
        p += kwlen;
        while (p < len && line[p] == ' ')
            p++;
    }

    size_t end = len;
    while (end > p && line[end - 1] == ' ')
        end--;
    out->verb = verb;
    out->arg = line + p;
    out->arg_len = end - p;
    return SMTP_POK;
}

/* Decimal without sign, leading zeros allowed, must fit uint64_t. */
static bool parse_u64(const char *s, size_t len, uint64_t *v)
{
    if (len == 0)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *v = n;
    return true;
}

smtp_perr smtp_bdat_args_parse(const char *arg, size_t len, uint64_t *size, bool *last)
{
    /* RFC 3030: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF.
     * Extra spaces are tolerated as for MAIL/RCPT parameters. */
    size_t p = 0;
    while (p < len && arg[p] == ' ')
        p++;
    size_t s = p;
    while (p < len && arg[p] != ' ')
        p++;
    uint64_t n;
    if (!parse_u64(arg + s, p - s, &n))
        return SMTP_PERR_SYNTAX;
    while (p < len && arg[p] == ' ')
        p++;
    size_t m = p;
    while (p < len && arg[p] != ' ')
        p++;
    bool is_last = false;
    if (p > m) {
        if (p - m != 4 || !ieq(arg + m, "LAST", 4))
            return SMTP_PERR_SYNTAX;
        is_last = true;
    }
    while (p < len && arg[p] == ' ')
        p++;
    if (p != len)
        return SMTP_PERR_SYNTAX;
    *size = n;
    *last = is_last;
    return SMTP_POK;
}

size_t smtp_utf8_seq_len(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80)
        return 1;
    /* RFC 3629 section 4: the second octet's range depends on the first;
     * the rest are always 80..BF. */
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, F5..FF */
    }
    if (len < n || u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (u[i] < 0x80 || u[i] > 0xBF)
            return 0;
    return n;
}

smtp_perr smtp_helo_parse(const char *arg, size_t len)
{
    /* Lenient like Postfix: no domain-syntax check, because many clients
     * send a bare hostname or garbage and rejecting them only loses mail.
     * Still one token of visible characters, and well-formed UTF-8 so the
     * name can go into logs, Received: headers and JSON unchanged. */
    if (len == 0 || len > SMTP_DOMAIN_MAX)
        return SMTP_PERR_SYNTAX;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)arg[i];
        if (c < 0x80) {
            if (c <= 0x20 || c == 0x7F)
                return SMTP_PERR_SYNTAX;
            i++;
            continue;
        }
        size_t n = smtp_utf8_seq_len(arg + i, len - i);
        if (n == 0)
            return SMTP_PERR_SYNTAX;
        i += n;
    }
    return SMTP_POK;
}

static int hexval(unsigned char c)
{
    /* RFC 3461 4: "two upper case hexadecimal digits". */
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Walks xtext; with out != NULL also decodes. Returns decoded length or -1. */
static long xtext_walk(const char *s, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        unsigned char d;
        if (c == '+') {
            if (len - i < 3)
                return -1;
            int h = hexval((unsigned char)s[i + 1]);
            int l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            d = (unsigned char)(h * 16 + l);
            i += 3;
        } else if (c >= '!' && c <= '~' && c != '=') {
            d = c;
            i++;
        } else {
            return -1;
        }
        if (out) {
            if (o + 1 >= outsz)
                return -1;
            out[o] = (char)d;
        }
        o++;
    }
    if (out)
        out[o] = '\0';
    return (long)o;
}

bool smtp_xtext_valid(const char *s, size_t len)
{
    return xtext_walk(s, len, NULL, 0) >= 0;
}

long smtp_xtext_decode(const char *s, size_t len, char *out, size_t outsz)
{
    if (out == NULL || outsz == 0)
        return -1;
    long n = xtext_walk(s, len, out, outsz);
    if (n < 0)
        out[0] = '\0';
    return n;
}
