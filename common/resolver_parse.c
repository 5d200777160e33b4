/*
 * resolver_parse.c - the pure half of the resolver: DNS reply parsing into
 * our result structures, MX ordering, status classes, server strings,
 * name checks. No I/O and no channel, so it is unit-tested and fuzzed alone.
 *
 * The wire format itself is decoded by c-ares's ares_parse_*_reply (well
 * kept and fuzzed upstream); what is ours is the policy on top: null MX,
 * preference order with shuffling, TXT string joining, result classes.
 */
#include "sluice/resolver.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *resolver_strerror(int status)
{
    switch (status) {
    case RESOLVER_OK:
        return "ok";
    case RESOLVER_ENXDOMAIN:
        return "name does not exist";
    case RESOLVER_ENODATA:
        return "no record of that type";
    case RESOLVER_ENULLMX:
        return "domain accepts no mail (null MX)";
    case RESOLVER_ETEMP:
        return "temporary DNS failure";
    case RESOLVER_ECANCELED:
        return "lookup canceled";
    default:
        return status < 0 && status > -4096 ? strerror(-status) : "unknown resolver status";
    }
}

void resolver_result_free(resolver_result *res)
{
    for (size_t i = 0; i < res->nmx; i++)
        free(res->mx[i].host);
    free(res->mx);
    free(res->addrs);
    for (size_t i = 0; i < res->ntxt; i++)
        free(res->txt[i].data);
    free(res->txt);
    free(res->name);
    memset(res, 0, sizeof(*res));
}

int resolver_status_from_ares(int st)
{
    switch (st) {
    case ARES_SUCCESS:
        return RESOLVER_OK;
    case ARES_ENOTFOUND:
        return RESOLVER_ENXDOMAIN;
    case ARES_ENODATA:
        return RESOLVER_ENODATA;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return RESOLVER_ECANCELED;
    default:
        /*
         * SERVFAIL, REFUSED, FORMERR, NOTIMP, timeouts, refused connections,
         * bad replies, no memory: none proves the name's absence, so retry.
         */
        return RESOLVER_ETEMP;
    }
}

/* ---- server strings and names ---- */

static int parse_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    if (*s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 65535)
            return -EINVAL;
    }
    if (v == 0)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int resolver_server_parse(const char *s, int *family, unsigned char addr[16], uint16_t *port)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *p;
    size_t hlen;

    if (s == NULL)
        return -EINVAL;
    *port = 53;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return -EINVAL;
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        if (close[1] == ':') {
            if (parse_port(close + 2, port) < 0)
                return -EINVAL;
        } else if (close[1] != '\0') {
            return -EINVAL;
        }
        if (inet_pton(AF_INET6, host, addr) != 1)
            return -EINVAL;
        *family = AF_INET6;
        return 0;
    }
    p = strchr(s, ':');
    if (p != NULL && strchr(p + 1, ':') != NULL) {
        /* Two colons: a bare IPv6 address, port 53. */
        if (inet_pton(AF_INET6, s, addr) != 1)
            return -EINVAL;
        *family = AF_INET6;
        return 0;
    }
    hlen = p ? (size_t)(p - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (p != NULL && parse_port(p + 1, port) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, host, addr) != 1)
        return -EINVAL;
    *family = AF_INET;
    return 0;
}

bool resolver_name_valid(const char *name)
{
    size_t len, label = 0;

    if (name == NULL)
        return false;
    len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--; /* the root's dot */
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        /* c-ares reads backslash escapes; we pass names literally. */
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

int resolver_reverse_name(const struct sockaddr *sa, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";

    if (sa == NULL || out == NULL)
        return -EINVAL;
    if (sa->sa_family == AF_INET) {
        const unsigned char *a =
            (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        int n = snprintf(out, outsz, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return n < 0 || (size_t)n >= outsz ? -ENOSPC : 0;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *a =
            (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        static const char tail[] = "ip6.arpa";
        size_t need = 16 * 4 + sizeof(tail); /* "n.n." per byte, then tail and NUL */
        char *p = out;
        if (outsz < need)
            return -ENOSPC;
        for (int i = 15; i >= 0; i--) {
            *p++ = hex[a[i] & 0xf];
            *p++ = '.';
            *p++ = hex[a[i] >> 4];
            *p++ = '.';
        }
        memcpy(p, tail, sizeof(tail));
        return 0;
    }
    return -EINVAL;
}

/* ---- MX ordering ---- */

/* xorshift64*: enough to spread load over equal MX hosts, not for secrets. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

struct mx_ord {
    resolver_mx mx;
    uint64_t key; /* random, or the reply position for a stable order */
};

static int mx_ord_cmp(const void *a, const void *b)
{
    const struct mx_ord *x = a, *y = b;
    if (x->mx.pref != y->mx.pref)
        return x->mx.pref < y->mx.pref ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

static int mx_sort(resolver_mx *mx, size_t n, uint64_t *rng)
{
    struct mx_ord *o;

    if (n < 2)
        return 0;
    o = calloc(n, sizeof(*o));
    if (o == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        o[i].mx = mx[i];
        o[i].key = rng ? rng_next(rng) : i;
    }
    qsort(o, n, sizeof(*o), mx_ord_cmp);
    for (size_t i = 0; i < n; i++)
        mx[i] = o[i].mx;
    free(o);
    return 0;
}

int resolver_mx_shuffle(resolver_mx *mx, size_t n, uint64_t *rng)
{
    return mx_sort(mx, n, rng);
}

/* ---- reply parsers ---- */

static int check_len(size_t len)
{
    /* A DNS message is at most 65535 bytes (TCP length prefix). */
    return len > 0 && len <= 65535 ? 0 : -1;
}

static int parse_status(int ares_st)
{
    /* A reply that c-ares cannot parse is treated as a transient failure. */
    if (ares_st == ARES_ENODATA)
        return RESOLVER_ENODATA;
    return RESOLVER_ETEMP;
}

static bool is_root(const char *host)
{
    return host[0] == '\0' || (host[0] == '.' && host[1] == '\0');
}

int resolver_parse_mx(const unsigned char *buf, size_t len, resolver_result *out)
{
    struct ares_mx_reply *head = NULL, *m;
    size_t n = 0, nroot = 0, k = 0;
    int st;

    memset(out, 0, sizeof(*out));
    if (check_len(len) < 0)
        return RESOLVER_ETEMP;
    st = ares_parse_mx_reply(buf, (int)len, &head);
    if (st != ARES_SUCCESS)
        return parse_status(st);
    for (m = head; m; m = m->next) {
        n++;
        if (m->host == NULL || is_root(m->host))
            nroot++;
    }
    if (n == 0) {
        ares_free_data(head);
        return RESOLVER_ENODATA;
    }
    if (nroot == n) {
        /*
         * RFC 7505: a null MX ("0 .") says the domain takes no mail. We also
         * accept a "." with another preference: no host there either.
         */
        ares_free_data(head);
        return RESOLVER_ENULLMX;
    }
    out->mx = calloc(n - nroot, sizeof(*out->mx));
    if (out->mx == NULL)
        goto nomem;
    for (m = head; m; m = m->next) {
        size_t hl;
        if (m->host == NULL || is_root(m->host))
            continue; /* "." beside real hosts: unusable, skip it (RFC 7505 3) */
        hl = strlen(m->host);
        if (hl > 0 && m->host[hl - 1] == '.')
            hl--;
        out->mx[k].host = strndup(m->host, hl);
        if (out->mx[k].host == NULL)
            goto nomem;
        out->mx[k].pref = m->priority;
        out->nmx = ++k;
    }
    ares_free_data(head);
    if (mx_sort(out->mx, out->nmx, NULL) < 0) {
        resolver_result_free(out);
        return RESOLVER_ETEMP;
    }
    return RESOLVER_OK;
nomem:
    ares_free_data(head);
    resolver_result_free(out);
    return RESOLVER_ETEMP;
}

int resolver_parse_addrs(const unsigned char *buf, size_t len, int family, resolver_result *out)
{
    struct hostent *h = NULL;
    size_t n = 0;
    int st;

    memset(out, 0, sizeof(*out));
    if (check_len(len) < 0)
        return RESOLVER_ETEMP;
    if (family == AF_INET)
        st = ares_parse_a_reply(buf, (int)len, &h, NULL, NULL);
    else if (family == AF_INET6)
        st = ares_parse_aaaa_reply(buf, (int)len, &h, NULL, NULL);
    else
        return RESOLVER_ETEMP;
    if (st != ARES_SUCCESS)
        return parse_status(st);
    if (h == NULL || h->h_addr_list == NULL || h->h_addrtype != family) {
        if (h)
            ares_free_hostent(h);
        return RESOLVER_ENODATA;
    }
    while (h->h_addr_list[n])
        n++;
    if (n == 0) {
        ares_free_hostent(h);
        return RESOLVER_ENODATA;
    }
    out->addrs = calloc(n, sizeof(*out->addrs));
    if (out->addrs == NULL) {
        ares_free_hostent(h);
        return RESOLVER_ETEMP;
    }
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage *ss = &out->addrs[i];
        if (family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)ss;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, h->h_addr_list[i], sizeof(sin->sin_addr));
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, h->h_addr_list[i], sizeof(sin6->sin6_addr));
        }
    }
    out->naddrs = n;
    ares_free_hostent(h);
    return RESOLVER_OK;
}

int resolver_parse_txt(const unsigned char *buf, size_t len, resolver_result *out)
{
    struct ares_txt_ext *head = NULL, *t, *s;
    size_t nrec = 0, k = 0;
    int st;

    memset(out, 0, sizeof(*out));
    if (check_len(len) < 0)
        return RESOLVER_ETEMP;
    st = ares_parse_txt_reply_ext(buf, (int)len, &head);
    if (st != ARES_SUCCESS)
        return parse_status(st);
    for (t = head; t; t = t->next)
        if (t->record_start || t == head)
            nrec++;
    if (nrec == 0) {
        ares_free_data(head);
        return RESOLVER_ENODATA;
    }
    out->txt = calloc(nrec, sizeof(*out->txt));
    if (out->txt == NULL)
        goto nomem;
    /* Each record starts a run of strings; RFC 7208 3.3 joins them without spaces. */
    for (t = head; t; t = s) {
        size_t total = 0;
        char *p;
        for (s = t; s && (s == t || !s->record_start); s = s->next)
            total += s->length;
        p = malloc(total + 1);
        if (p == NULL)
            goto nomem;
        out->txt[k].data = p;
        out->txt[k].len = total;
        out->ntxt = ++k;
        for (s = t; s && (s == t || !s->record_start); s = s->next) {
            if (s->length)
                memcpy(p, s->txt, s->length);
            p += s->length;
        }
        *p = '\0';
    }
    ares_free_data(head);
    return RESOLVER_OK;
nomem:
    ares_free_data(head);
    resolver_result_free(out);
    return RESOLVER_ETEMP;
}

int resolver_parse_ptr(const unsigned char *buf, size_t len, const struct sockaddr *sa,
                       resolver_result *out)
{
    struct hostent *h = NULL;
    const void *addr;
    int addrlen, st;
    size_t nl;

    memset(out, 0, sizeof(*out));
    if (check_len(len) < 0 || sa == NULL)
        return RESOLVER_ETEMP;
    if (sa->sa_family == AF_INET) {
        addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        addrlen = 4;
    } else if (sa->sa_family == AF_INET6) {
        addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        addrlen = 16;
    } else {
        return RESOLVER_ETEMP;
    }
    st = ares_parse_ptr_reply(buf, (int)len, addr, addrlen, sa->sa_family, &h);
    if (st != ARES_SUCCESS)
        return parse_status(st);
    if (h == NULL || h->h_name == NULL || h->h_name[0] == '\0') {
        if (h)
            ares_free_hostent(h);
        return RESOLVER_ENODATA;
    }
    nl = strlen(h->h_name);
    if (h->h_name[nl - 1] == '.')
        nl--;
    out->name = strndup(h->h_name, nl);
    ares_free_hostent(h);
    return out->name ? RESOLVER_OK : RESOLVER_ETEMP;
}
