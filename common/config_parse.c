/*
 * config_parse.c - parsers for config values: durations, booleans, numbers,
 * listen lines, CIDRs, DNS server and next-hop addresses.
 *
 * Pure functions over bytes (DESIGN.md "Code shape"): no allocation, no I/O,
 * so they are cheap to unit test and to fuzz. Each failure carries a short
 * static reason that the loader puts into its "FILE:LINE: message".
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Digits only (no sign, no spaces: strtoul would accept both). */
static int parse_u64n(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -EINVAL;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int cfg_parse_u64(const char *s, uint64_t *out, const char **why)
{
    int rc = parse_u64n(s, strlen(s), out);
    if (rc == -ERANGE) {
        *why = "number too large";
        return -EINVAL;
    }
    if (rc < 0) {
        *why = "expected a whole number (digits only)";
        return -EINVAL;
    }
    return 0;
}

int config_parse_duration(const char *s, unsigned *out)
{
    size_t len = strlen(s);
    uint64_t mult = 1, v;

    if (len > 0 && !is_digit(s[len - 1])) {
        switch (s[len - 1]) {
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        default:
            return -EINVAL;
        }
        len--;
    }
    if (parse_u64n(s, len, &v) < 0 || v > UINT_MAX / mult)
        return -EINVAL;
    *out = (unsigned)(v * mult);
    return 0;
}

int cfg_parse_bool(const char *s, bool *out, const char **why)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strlen(s) == strlen(yes[i]) && cfg_caseeq(s, yes[i], strlen(s))) {
            *out = true;
            return 0;
        }
        if (strlen(s) == strlen(no[i]) && cfg_caseeq(s, no[i], strlen(s))) {
            *out = false;
            return 0;
        }
    }
    *why = "expected yes or no (also true/false, on/off, 1/0)";
    return -EINVAL;
}

int cfg_parse_port(const char *s, size_t len, int *out, const char **why)
{
    uint64_t v;
    if (parse_u64n(s, len, &v) < 0 || v < 1 || v > 65535) {
        *why = "port must be a number from 1 to 65535";
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

const char *cfg_next_token(const char **p, size_t *len)
{
    const char *s = *p;
    while (*s && (is_space(*s) || *s == ','))
        s++;
    if (!*s) {
        *p = s;
        return NULL;
    }
    const char *start = s;
    while (*s && !is_space(*s) && *s != ',')
        s++;
    *len = (size_t)(s - start);
    *p = s;
    return start;
}

bool cfg_valid_domain(const char *s, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-';
        if (!ok || (c == '-' && label == 0) || ++label > 63)
            return false;
    }
    return label > 0 && s[len - 1] != '-';
}

/*
 * Splits "[host]:port", "host:port", "[host]" or "host". *port is 0 when no
 * port is given. An unbracketed host with more than one ':' is an IPv6
 * address whose port could not be told apart: brackets are required.
 */
static int split_hostport(const char *s, size_t len, char *host, size_t hostsz, int *port,
                          bool *bracketed, const char **why)
{
    const char *h = s, *rest;
    size_t hl;

    *port = 0;
    *bracketed = false;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) {
            *why = "missing ']'";
            return -EINVAL;
        }
        h = s + 1;
        hl = (size_t)(close - h);
        rest = close + 1;
        *bracketed = true;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s))) {
            *why = "an IPv6 address needs brackets, as [::1]:25";
            return -EINVAL;
        }
        hl = colon ? (size_t)(colon - s) : len;
        rest = s + hl;
    }
    size_t restlen = len - (size_t)(rest - s);
    if (restlen > 0) {
        if (rest[0] != ':') {
            *why = "expected ':' and a port after ']'";
            return -EINVAL;
        }
        if (cfg_parse_port(rest + 1, restlen - 1, port, why) < 0)
            return -EINVAL;
    }
    if (hl == 0) {
        *why = "missing host";
        return -EINVAL;
    }
    if (hl >= hostsz) {
        *why = "host name too long";
        return -EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    return 0;
}

/* Address family of an IP literal, or 0. */
static int ip_family(const char *host, void *addr)
{
    unsigned char tmp[16];
    if (!addr)
        addr = tmp;
    if (inet_pton(AF_INET, host, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, host, addr) == 1)
        return AF_INET6;
    return 0;
}

int cfg_parse_listen(const char *s, cfg_listen *out, const char **why)
{
    static const char *const kinds[] = {"mx", "submission", "smtps"};
    const char *p = s;
    size_t alen, klen, xlen;
    const char *addr = cfg_next_token(&p, &alen);
    const char *kind = addr ? cfg_next_token(&p, &klen) : NULL;
    cfg_listen l;
    bool br;

    if (!addr) {
        *why = "expected ADDRESS:PORT mx|submission|smtps";
        return -EINVAL;
    }
    if (!kind) {
        *why = "missing kind after the address: mx, submission or smtps";
        return -EINVAL;
    }
    if (cfg_next_token(&p, &xlen)) {
        *why = "extra text after the kind";
        return -EINVAL;
    }
    memset(&l, 0, sizeof(l));
    if (split_hostport(addr, alen, l.host, sizeof(l.host), &l.port, &br, why) < 0)
        return -EINVAL;
    if (l.port == 0) {
        *why = "missing ':PORT' after the address";
        return -EINVAL;
    }
    int fam = ip_family(l.host, NULL);
    if (fam == 0) {
        *why = "the address must be an IP address (0.0.0.0 or [::] for all)";
        return -EINVAL;
    }
    if (fam == AF_INET6 && !br) {
        *why = "an IPv6 address needs brackets, as [::1]:25";
        return -EINVAL;
    }
    size_t k;
    for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        if (strlen(kinds[k]) == klen && cfg_caseeq(kind, kinds[k], klen))
            break;
    if (k == sizeof(kinds) / sizeof(kinds[0])) {
        *why = "kind must be mx, submission or smtps";
        return -EINVAL;
    }
    l.kind = (enum listen_kind)k;
    *out = l;
    return 0;
}

int config_parse_listen(const char *s, cfg_listen *out)
{
    const char *why;
    return cfg_parse_listen(s, out, &why);
}

static const unsigned char v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int cfg_parse_cidr(const char *s, size_t len, cfg_cidr *out, const char **why)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *end = s + len;
    const char *slash = memchr(s, '/', len);
    size_t hl = slash ? (size_t)(slash - s) : len;
    cfg_cidr c;

    memset(&c, 0, sizeof(c));
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++; /* "[::1]/128" is written by people used to brackets elsewhere */
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host)) {
        *why = "expected an address or ADDRESS/PREFIX";
        return -EINVAL;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    c.family = ip_family(host, c.addr);
    if (c.family == 0) {
        *why = "not an IP address";
        return -EINVAL;
    }
    int maxp = c.family == AF_INET ? 32 : 128;
    c.prefix = maxp;
    if (slash) {
        uint64_t p;
        if (parse_u64n(slash + 1, (size_t)(end - slash - 1), &p) < 0 || p > (uint64_t)maxp) {
            *why = c.family == AF_INET ? "prefix must be 0 to 32" : "prefix must be 0 to 128";
            return -EINVAL;
        }
        c.prefix = (int)p;
    }
    /* Host bits set ("10.1.2.3/8") usually mean a typo; say so, as Postfix warns. */
    int nbytes = c.family == AF_INET ? 4 : 16;
    for (int i = 0; i < nbytes; i++) {
        int keep = c.prefix - i * 8;
        unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
        if (c.addr[i] & ~mask) {
            *why = "address has bits set beyond the prefix";
            return -EINVAL;
        }
    }
    if (c.prefix == 0) {
        /* Trusting the whole Internet is an open relay (DESIGN.md: never). */
        *why = "a /0 network would make an open relay";
        return -EINVAL;
    }
    /* ::ffff:a.b.c.d/n is an IPv4 network; store it as one so matching is uniform. */
    if (c.family == AF_INET6 && c.prefix >= 96 && memcmp(c.addr, v4mapped_prefix, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        c.prefix -= 96;
        if (c.prefix == 0) {
            *why = "a /0 network would make an open relay";
            return -EINVAL;
        }
    }
    *out = c;
    return 0;
}

int config_parse_cidr(const char *s, cfg_cidr *out)
{
    const char *why;
    return cfg_parse_cidr(s, strlen(s), out, &why);
}

bool config_cidr_match(const cfg_cidr *c, const struct sockaddr *sa)
{
    const unsigned char *a;
    int fam;

    if (!c || !sa)
        return false;
    if (sa->sa_family == AF_INET) {
        a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        fam = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        fam = AF_INET6;
        if (memcmp(a, v4mapped_prefix, 12) == 0) {
            a += 12;
            fam = AF_INET;
        }
    } else {
        return false;
    }
    if (fam != c->family)
        return false;
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

int cfg_parse_dns(const char *s, size_t len, char *out, size_t outsz, const char **why)
{
    char host[INET6_ADDRSTRLEN + 2];
    int port, n;
    bool br;

    if (split_hostport(s, len, host, sizeof(host), &port, &br, why) < 0)
        return -EINVAL;
    int fam = ip_family(host, NULL);
    if (fam == 0) {
        /* Resolving the resolver's name would need a resolver. */
        *why = "a DNS server must be an IP address";
        return -EINVAL;
    }
    if (port == 0)
        port = 53;
    /* c-ares (ares_set_servers_ports_csv) takes "[v6]:port" and "v4:port". */
    if (fam == AF_INET6)
        n = snprintf(out, outsz, "[%s]:%d", host, port);
    else
        n = snprintf(out, outsz, "%s:%d", host, port);
    if (n < 0 || (size_t)n >= outsz) {
        *why = "address too long";
        return -EINVAL;
    }
    return 0;
}

int cfg_parse_relay(const char *s, cfg_relay *out, const char **why)
{
    cfg_relay r;
    size_t len = strlen(s);

    memset(&r, 0, sizeof(r));
    for (size_t i = 0; i < len; i++) {
        if (is_space(s[i])) {
            *why = "a next hop is one [host]:port, without spaces";
            return -EINVAL;
        }
    }
    if (split_hostport(s, len, r.host, sizeof(r.host), &r.port, &r.literal, why) < 0)
        return -EINVAL;
    int fam = ip_family(r.host, NULL);
    if (fam == AF_INET6 && !r.literal) {
        *why = "an IPv6 address needs brackets, as [::1]:25";
        return -EINVAL;
    }
    if (!cfg_valid_domain(r.host, strlen(r.host)) && fam == 0) {
        *why = "expected a host name or an IP address";
        return -EINVAL;
    }
    /* An IP address has no MX records: it is always the host itself. */
    if (fam != 0)
        r.literal = true;
    *out = r;
    return 0;
}

int config_parse_relay(const char *s, cfg_relay *out)
{
    const char *why;
    return cfg_parse_relay(s, out, &why);
}
