/*
 * smtp_auth_text.c - the pure text helpers of the AUTH backends
 * (smtp_auth.c for Cyrus SASL, smtp_auth_dovecot.c): mechanism lists,
 * strict base64, Dovecot's tab escaping, the login check. No I/O.
 */
#include "smtp_auth_text.h"

#include "sluice/log.h"
#include "sluice/smtp_auth.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

/* Whether the space-separated list holds name (exact). */
bool auth_list_has(const char *list, const char *name, size_t n)
{
    const char *p = list;
    while (p && *p) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

/*
 * The configured list, upper case, one space apart, without mechanisms that
 * are never offered and without duplicates. NULL when out of memory.
 */
char *auth_mechs_normalize(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    out[0] = '\0';
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t b = i;
        while (i < n && !(s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        if (i == b)
            break;
        char up[SMTP_AUTH_MECH_MAX + 1];
        if (!smtp_auth_mech_name(s + b, i - b, up)) {
            log_warn("auth: '%.*s' in auth_mechanisms is not a SASL mechanism name", (int)(i - b),
                     s + b);
            continue;
        }
        if (strcmp(up, "ANONYMOUS") == 0 || strcmp(up, "EXTERNAL") == 0) {
            log_warn("auth: %s in auth_mechanisms is never offered", up);
            continue;
        }
        if (auth_list_has(out, up, strlen(up)))
            continue;
        if (o > 0)
            out[o++] = ' ';
        memcpy(out + o, up, strlen(up) + 1);
        o += strlen(up);
    }
    return out;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Strict base64 (RFC 4648 section 4, padded, no blanks). With out non-NULL
 * the data is decoded there (room for len / 4 * 3 bytes). Returns the
 * decoded length, or -1 when s is not base64.
 */
long auth_b64_decode(const char *s, size_t len, unsigned char *out)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0) /* data after '=' */
                return -1;
            v[k] = b64val(c);
            if (v[k] < 0)
                return -1;
        }
        unsigned bits =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        /* the bits a padded quantum leaves over must be zero (canonical) */
        if ((pad == 1 && (v[2] & 0x3)) || (pad == 2 && (v[1] & 0xf)))
            return -1;
        unsigned char b[3] = {(unsigned char)(bits >> 16), (unsigned char)(bits >> 8),
                              (unsigned char)bits};
        if (out)
            memcpy(out + o, b, (size_t)(3 - pad));
        o += (size_t)(3 - pad);
    }
    return (long)o;
}

/* Splits "IP;PORT" into its parts; false when it is not that. */
bool auth_split_ipport(const char *s, char *ip, size_t ipsize, char *port, size_t portsize)
{
    const char *semi = strrchr(s, ';');
    unsigned char bin[sizeof(struct in6_addr)];
    if (!semi || semi == s || (size_t)(semi - s) >= ipsize)
        return false;
    size_t nd = strlen(semi + 1);
    if (nd == 0 || nd >= portsize || nd > 5 || strspn(semi + 1, "0123456789") != nd ||
        atoi(semi + 1) > 65535)
        return false;
    memcpy(ip, s, (size_t)(semi - s));
    ip[semi - s] = '\0';
    memcpy(port, semi + 1, nd + 1);
    return inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;
}

/*
 * Undoes Dovecot's tab-escaping (\001 then 0, 1, t, r, n or l) in place.
 * Returns the new length.
 */
size_t dovecot_tab_unescape(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\001' && i + 1 < n) {
            char e = s[++i];
            c = e == '0'                 ? '\0'
                : e == '1'               ? '\001'
                : e == 't'               ? '\t'
                : e == 'r'               ? '\r'
                : (e == 'n' || e == 'l') ? '\n'
                                         : e;
        }
        s[o++] = c;
    }
    return o;
}

/*
 * Vets a login for the envelope, the logs and AUTH= and copies it with its
 * domain lower-cased. A login without '@' (a system user in Dovecot's
 * passdb) is kept as it is. NULL, or why it was refused.
 */
const char *auth_identity_take(char *dst, const char *src, size_t n)
{
    size_t at = n;
    if (n == 0 || n > SMTP_AUTH_USER_MAX)
        return "identity empty or too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c <= 0x20 || c == 0x7f)
            return "identity holds a control character or space";
        if (c == '@') {
            if (at != n)
                return "identity holds two '@'";
            at = i;
        }
    }
    if (at != n && (at == 0 || at + 1 == n))
        return "identity with an empty local part or domain";
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (i > at && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        dst[i] = c;
    }
    dst[n] = '\0';
    return NULL;
}

bool auth_copy_identity(char *dst, const char *src, size_t n)
{
    return auth_identity_take(dst, src, n) == NULL;
}
