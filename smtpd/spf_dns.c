/*
 * spf_dns.c - libspf2's DNS layer over c-ares, for one worker thread.
 *
 * libspf2 asks for DNS synchronously (SPF_dns_server_t.lookup returns the
 * records). We answer from a private c-ares channel configured with the
 * project's name servers, driven with poll() on this worker thread, so a
 * check never touches libc's resolver (res_nquery and /etc/resolv.conf with
 * its options) and never blocks the event loop.
 *
 * On top of the lookups this layer keeps the limits of RFC 7208 4.6.4 for a
 * whole evaluation. libspf2 counts DNS mechanisms per record and starts a
 * fresh count in every include, so a tree of includes could make thousands
 * of queries; here every term that queries DNS (include, redirect, a, mx,
 * ptr, exists) counts once per evaluation, void lookups are limited to two,
 * the total number of queries is capped, and the evaluation has a time
 * budget. It also fetches the SPF record itself (get_spf), because libspf2
 * asks for the obsolete type 99 first, misses a bare "v=spf1", and cannot
 * tell "no record" from "broken record" apart in its error codes.
 */
#include "sluice/spf_check.h"
#include "sluice/resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#define DNS_MAX_TERMS 10    /* RFC 7208 4.6.4 */
#define DNS_MAX_VOID 2      /* RFC 7208 4.6.4 */
#define DNS_MAX_QUERIES 150 /* all queries of one evaluation: 1 + 10 * (1 + 10) + %{p} + exp */
#define DNS_MAX_DERIVED 11  /* names from one MX or PTR answer whose addresses are looked up */
#define DNS_TXT_MAX 4096    /* bytes of one TXT record kept; a longer SPF record is refused */
#define DNS_MAX_TXT 64      /* TXT records kept from one answer */
#define DNS_MAX_ADDRS 128   /* A / AAAA records kept from one answer */
#define DNS_MAX_MX 11       /* more than 10 makes libspf2 answer permerror (4.6.4) */
#define DNS_MAX_PTR 10      /* RFC 7208 5.5: only the first 10 PTR names are used */
#define DNS_WAKE_MS 100     /* poll slice, so a cancel is noticed quickly */
#define DNS_QUERY_MS 5000   /* default per-query deadline */

struct spf_dns {
    ares_channel ch;
    SPF_dns_server_t layer; /* hook points back here; destroy NULL: we own it */
    unsigned query_ms;

    /* Per evaluation (spf_dns_begin). */
    uint64_t deadline; /* uv_hrtime() ns */
    const atomic_bool *cancel;
    unsigned terms, voids, queries;
    bool top_done;
    enum spf_dns_top top;
    enum spf_dns_stop stop;
    char detail[160];
    char derived[DNS_MAX_DERIVED][256];
    unsigned nderived;
};

/* ---- names ---- */

bool spf_domain_ok(const char *name)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253 || name[0] == '[')
        return false;
    size_t label = 0, labels = 0, last_start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            labels++;
            label = 0;
            last_start = i + 1;
            continue;
        }
        /* DNS allows more than LDH, but never controls, spaces, escapes or non-ASCII */
        if (ch <= 0x20 || ch >= 0x7f || ch == '\\')
            return false;
        if (++label > 63)
            return false;
    }
    if (label == 0)
        return false;
    labels++;
    if (labels < 2)
        return false; /* RFC 7208 4.3: must be a multi-label domain name */
    /* an all-numeric last label is an IP address, not a domain */
    for (size_t i = last_start; i < len; i++)
        if (name[i] < '0' || name[i] > '9')
            return true;
    return false;
}

/* ---- limits ---- */

static void stop(spf_dns *d, enum spf_dns_stop why, const char *fmt, const char *name)
{
    if (d->stop != SPF_DNS_GO)
        return; /* the first reason is the one reported */
    d->stop = why;
    snprintf(d->detail, sizeof(d->detail), fmt, name ? name : "");
}

static bool canceled(spf_dns *d)
{
    if (d->cancel && atomic_load(d->cancel)) {
        stop(d, SPF_DNS_CANCELED, "canceled%s", NULL);
        return true;
    }
    return false;
}

/* Counts a term that queries DNS; false when over the limit. */
static bool count_term(spf_dns *d, const char *name)
{
    if (++d->terms > DNS_MAX_TERMS) {
        stop(d, SPF_DNS_LIMIT, "more than 10 DNS lookups (at %.100s)", name);
        return false;
    }
    return true;
}

static bool count_void(spf_dns *d, const char *name)
{
    if (++d->voids > DNS_MAX_VOID) {
        stop(d, SPF_DNS_VOID, "more than 2 void DNS lookups (at %.100s)", name);
        return false;
    }
    return true;
}

/*
 * Whether name came from the last MX or PTR answer and has not been looked
 * up yet. Each name is used once, so a later "a:" term naming the same
 * host is counted like any other.
 */
static bool take_derived(spf_dns *d, const char *name)
{
    for (unsigned i = 0; i < d->nderived; i++) {
        if (d->derived[i][0] && strcasecmp(d->derived[i], name) == 0) {
            d->derived[i][0] = '\0';
            return true;
        }
    }
    return false;
}

/* ---- one query, synchronously ---- */

struct qwait {
    bool done;
    int status;
    unsigned char *buf;
    int len;
};

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct qwait *w = arg;
    w->done = true;
    w->status = status;
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        /* c-ares frees abuf when we return */
        w->buf = malloc((size_t)alen);
        if (w->buf) {
            memcpy(w->buf, abuf, (size_t)alen);
            w->len = alen;
        } else {
            w->status = ARES_ENOMEM;
        }
    }
}

/*
 * Sends one query and waits for it. soft: the lookup does not matter for
 * the result (an explanation), so running out of time is not recorded.
 * Returns an h_errno class: NETDB_SUCCESS (w->buf holds the reply),
 * HOST_NOT_FOUND, NO_DATA or TRY_AGAIN.
 */
static int run_query(spf_dns *d, const char *name, int type, bool soft, struct qwait *w)
{
    memset(w, 0, sizeof(*w));
    if (canceled(d))
        return TRY_AGAIN;
    uint64_t now = uv_hrtime();
    if (now >= d->deadline) {
        if (!soft)
            stop(d, SPF_DNS_BUDGET, "time limit for the SPF evaluation exceeded%s", NULL);
        return TRY_AGAIN;
    }
    if (++d->queries > DNS_MAX_QUERIES) {
        stop(d, SPF_DNS_LIMIT, "too many DNS queries (at %.100s)", name);
        return TRY_AGAIN;
    }
    uint64_t qdeadline = now + (uint64_t)d->query_ms * 1000000u;
    if (qdeadline > d->deadline)
        qdeadline = d->deadline;

    ares_query(d->ch, name, ns_c_in, type, on_answer, w);
    while (!w->done) {
        now = uv_hrtime();
        if (canceled(d) || now >= qdeadline) {
            if (!soft && now >= d->deadline)
                stop(d, SPF_DNS_BUDGET, "time limit for the SPF evaluation exceeded%s", NULL);
            /* only our query is on this channel; its callback runs inside */
            ares_cancel(d->ch);
            if (w->status == ARES_ECANCELLED)
                w->status = ARES_ETIMEOUT;
            continue;
        }
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        nfds_t n = 0;
        /* ARES_GETSOCK_WRITABLE shifts a signed 1 into the sign bit for the 16th socket */
        unsigned bits = (unsigned)ares_getsock(d->ch, socks, ARES_GETSOCK_MAXNUM);
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = 0;
            if ((bits >> i) & 1u)
                ev |= POLLIN;
            if ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u)
                ev |= POLLOUT;
            if (ev) {
                pfd[n].fd = socks[i];
                pfd[n].events = ev;
                pfd[n].revents = 0;
                n++;
            }
        }
        uint64_t left = qdeadline - now;
        if (left > (uint64_t)DNS_WAKE_MS * 1000000u)
            left = (uint64_t)DNS_WAKE_MS * 1000000u;
        struct timeval maxtv = {.tv_sec = 0, .tv_usec = (suseconds_t)(left / 1000u)};
        struct timeval tv;
        struct timeval *tvp = ares_timeout(d->ch, &maxtv, &tv);
        int ms = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
        int r = poll(pfd, n, ms);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            ares_cancel(d->ch); /* cannot wait: give up on this query */
            w->status = ARES_ECONNREFUSED;
            continue;
        }
        if (r == 0) {
            ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
            continue;
        }
        for (nfds_t i = 0; i < n; i++) {
            ares_socket_t rfd =
                (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD;
            ares_socket_t wfd = (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD;
            if (rfd != ARES_SOCKET_BAD || wfd != ARES_SOCKET_BAD)
                ares_process_fd(d->ch, rfd, wfd);
        }
    }

    switch (w->status) {
    case ARES_SUCCESS:
        return NETDB_SUCCESS;
    case ARES_ENODATA:
        return NO_DATA;
    case ARES_ENOTFOUND:
    case ARES_EBADNAME: /* a malformed name has no records (RFC 7208 4.3, 4.6.4) */
        return HOST_NOT_FOUND;
    case ARES_ETIMEOUT:
        if (!soft && d->stop == SPF_DNS_GO) /* a stop's reason stays */
            snprintf(d->detail, sizeof(d->detail), "DNS timeout for %.100s", name);
        return TRY_AGAIN;
    default:
        if (!soft && d->stop == SPF_DNS_GO)
            snprintf(d->detail, sizeof(d->detail), "DNS error for %.100s: %s", name,
                     ares_strerror(w->status));
        return TRY_AGAIN;
    }
}

/* ---- replies into libspf2's records ---- */

static SPF_dns_rr_t *rr_new(spf_dns *d, const char *domain, ns_type type, int herrno)
{
    SPF_dns_rr_t *rr = SPF_dns_rr_new_init(&d->layer, domain, type, 0, herrno);
    /* libspf2 has no way to report a failed lookup other than a record; it aborts on NULL */
    if (!rr)
        SPF_error("out of memory for a DNS record");
    return rr;
}

/* Appends TXT strings (RFC 7208 3.3: concatenated without spaces), bounded. */
static int txt_add(SPF_dns_rr_t *rr, int idx, const unsigned char *p, size_t n)
{
    char tmp[DNS_TXT_MAX + 1];
    size_t len = 0;
    size_t i = 0;
    while (i < n) {
        size_t sl = p[i++];
        if (sl > n - i)
            return -1; /* a string runs past its record: malformed */
        for (size_t k = 0; k < sl && len < DNS_TXT_MAX; k++) {
            unsigned char ch = p[i + k];
            /* a NUL would end libspf2's string early; make it a byte no record may hold */
            tmp[len++] = ch ? (char)ch : '\x01';
        }
        i += sl;
    }
    tmp[len] = '\0';
    if (SPF_dns_rr_buf_realloc(rr, idx, len + 1) != SPF_E_SUCCESS)
        return -1;
    memcpy(rr->rr[idx]->txt, tmp, len + 1);
    return 0;
}

/* Skips a (possibly compressed) name at buf[*off]; -1 if it runs off the end. */
static int skip_name(const unsigned char *buf, size_t len, size_t *off)
{
    size_t o = *off;
    for (;;) {
        if (o >= len)
            return -1;
        unsigned char l = buf[o];
        if ((l & 0xc0) == 0xc0) {
            if (o + 2 > len)
                return -1;
            *off = o + 2;
            return 0;
        }
        if (l & 0xc0)
            return -1; /* the reserved label types */
        o += 1u + l;
        if (l == 0) {
            *off = o;
            return 0;
        }
    }
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* The host name at rd (compression pointers resolved against buf), or NULL. */
static char *expand_name(const unsigned char *rd, const unsigned char *buf, size_t len)
{
    char *name = NULL;
    long enclen;
    if (ares_expand_name(rd, buf, (int)len, &name, &enclen) != ARES_SUCCESS)
        return NULL;
    return name;
}

/*
 * Turns a reply into libspf2's record list: the answer records of the type
 * asked for (a CNAME chain is followed by the server; its CNAMEs are
 * skipped), bounded in number and size. c-ares has already checked that
 * the reply belongs to our query.
 */
static SPF_dns_rr_t *rr_from_reply(spf_dns *d, const char *domain, ns_type type,
                                   const unsigned char *buf, int ilen)
{
    size_t len = (size_t)ilen;
    SPF_dns_rr_t *rr = rr_new(d, domain, type, NETDB_SUCCESS);
    int max = type == ns_t_mx    ? DNS_MAX_MX
              : type == ns_t_ptr ? DNS_MAX_PTR
              : type == ns_t_txt ? DNS_MAX_TXT
                                 : DNS_MAX_ADDRS;
    if (type == ns_t_mx || type == ns_t_ptr)
        d->nderived = 0;
    if (len < 12)
        goto malformed;
    unsigned qd = get16(buf + 4), an = get16(buf + 6);
    size_t off = 12;
    for (unsigned i = 0; i < qd; i++) {
        if (skip_name(buf, len, &off) < 0 || off + 4 > len)
            goto malformed;
        off += 4;
    }
    int cnt = 0;
    for (unsigned i = 0; i < an && cnt < max; i++) {
        if (skip_name(buf, len, &off) < 0 || off + 10 > len)
            goto malformed;
        unsigned rtype = get16(buf + off), rclass = get16(buf + off + 2);
        size_t rdlen = get16(buf + off + 8);
        off += 10;
        if (rdlen > len - off)
            goto malformed;
        const unsigned char *rd = buf + off;
        off += rdlen;
        if (rclass != ns_c_in || rtype != (unsigned)type)
            continue;
        switch (type) {
        case ns_t_a:
            if (rdlen != 4)
                goto malformed;
            if (SPF_dns_rr_buf_realloc(rr, cnt, sizeof(SPF_dns_rr_data_t)) != SPF_E_SUCCESS)
                goto nomem;
            memcpy(&rr->rr[cnt]->a, rd, 4);
            break;
        case ns_t_aaaa:
            if (rdlen != 16)
                goto malformed;
            if (SPF_dns_rr_buf_realloc(rr, cnt, sizeof(SPF_dns_rr_data_t)) != SPF_E_SUCCESS)
                goto nomem;
            memcpy(&rr->rr[cnt]->aaaa, rd, 16);
            break;
        case ns_t_mx:
        case ns_t_ptr: {
            if (type == ns_t_mx && rdlen < 3)
                goto malformed;
            char *name = expand_name(type == ns_t_mx ? rd + 2 : rd, buf, len);
            if (!name)
                goto malformed;
            size_t nl = strlen(name) + 1;
            /* the null MX "." (RFC 7505) names no host; over-long names cannot be looked up */
            if (nl == 1 || strcmp(name, ".") == 0 || nl > 254) {
                ares_free_string(name);
                continue;
            }
            if (SPF_dns_rr_buf_realloc(rr, cnt, nl) != SPF_E_SUCCESS) {
                ares_free_string(name);
                goto nomem;
            }
            memcpy(type == ns_t_mx ? rr->rr[cnt]->mx : rr->rr[cnt]->ptr, name, nl);
            if (d->nderived < DNS_MAX_DERIVED)
                memcpy(d->derived[d->nderived++], name, nl);
            ares_free_string(name);
            break;
        }
        case ns_t_txt:
            if (txt_add(rr, cnt, rd, rdlen) < 0)
                goto malformed;
            break;
        default:
            continue;
        }
        cnt++;
    }
    rr->num_rr = cnt;
    if (cnt == 0)
        rr->herrno = NO_DATA;
    return rr;

malformed:
    snprintf(d->detail, sizeof(d->detail), "malformed DNS reply for %.100s", domain);
    /* fall through: both leave a temporary failure */
nomem:
    rr->num_rr = 0;
    rr->herrno = TRY_AGAIN;
    return rr;
}

/*
 * An explanation (RFC 7208 6.2) may contain spaces, but libspf2's macro
 * parser takes a space for the end of the string and mangles the rest;
 * "%_" means a space in a macro string, so spell the spaces that way.
 */
static void exp_spaces(SPF_dns_rr_t *rr)
{
    for (int i = 0; i < rr->num_rr; i++) {
        size_t n = strlen(rr->rr[i]->txt), sp = 0;
        for (size_t k = 0; k < n; k++)
            sp += rr->rr[i]->txt[k] == ' ';
        if (sp == 0)
            continue;
        if (n + sp > DNS_TXT_MAX || SPF_dns_rr_buf_realloc(rr, i, n + sp + 1) != SPF_E_SUCCESS) {
            rr->rr[i]->txt[0] = '\0'; /* no explanation rather than a mangled one */
            continue;
        }
        char *t = rr->rr[i]->txt; /* may have moved */
        size_t j = n + sp;
        t[j] = '\0';
        for (size_t k = n; k-- > 0;) {
            if (t[k] == ' ') {
                t[--j] = '_';
                t[--j] = '%';
            } else {
                t[--j] = t[k];
            }
        }
    }
}

/* The lookup libspf2 calls for every mechanism, %{p} and exp=. */
static SPF_dns_rr_t *dns_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
                                int should_cache)
{
    spf_dns *d = layer->hook;

    /* RFC 7208 3.1, 14.1: type 99 is obsolete; never ask for it */
    if (type == ns_t_spf)
        return rr_new(d, domain, type, NO_DATA);

    /*
     * Which lookups are terms (4.6.4): MX and PTR queries, and A/AAAA
     * queries except for the names an MX or PTR answer just gave. TXT
     * queries arriving here are explanations (exp=): records come through
     * dns_get_spf. %{p} makes a PTR query that is counted too (a slight
     * overcount; the RFC discourages %{p} anyway).
     */
    bool soft = type == ns_t_txt;
    if (d->stop != SPF_DNS_GO)
        return rr_new(d, domain, type, TRY_AGAIN);
    bool term = !soft && !((type == ns_t_a || type == ns_t_aaaa) && take_derived(d, domain));
    if (term && !count_term(d, domain))
        return rr_new(d, domain, type, TRY_AGAIN);

    struct qwait w;
    int h = run_query(d, domain, type, soft, &w);
    SPF_dns_rr_t *rr;
    if (h == NETDB_SUCCESS)
        rr = rr_from_reply(d, domain, type, w.buf, w.len);
    else
        rr = rr_new(d, domain, type, h);
    free(w.buf);
    if (type == ns_t_txt)
        exp_spaces(rr);

    if (term && (rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA) && !count_void(d, domain)) {
        /* stop the evaluation now; the caller turns it into permerror */
        rr->herrno = TRY_AGAIN;
        rr->num_rr = 0;
    }
    return rr;
}

/* ---- the SPF record ---- */

static SPF_errcode_t top_result(spf_dns *d, bool top, enum spf_dns_top t, SPF_errcode_t err)
{
    if (top)
        d->top = t;
    return err;
}

/*
 * Fetches and compiles the SPF record of spf_request->cur_dom: the first
 * call of an evaluation is check_host()'s own record, later calls are
 * include: and redirect= terms. libspf2 turns SPF_E_DNS_ERROR into
 * temperror and every other error into permerror for those.
 */
static SPF_errcode_t dns_get_spf(SPF_server_t *server, SPF_request_t *sr, SPF_response_t *resp,
                                 SPF_record_t **recp)
{
    spf_dns *d = server->resolver->hook;
    const char *domain = sr->cur_dom;
    bool top = !d->top_done;
    d->top_done = true;
    *recp = NULL;

    if (!top && (d->stop != SPF_DNS_GO || !count_term(d, domain)))
        return SPF_response_add_error(resp, SPF_E_BIG_DNS, "DNS lookup limit");
    if (!domain || !spf_domain_ok(domain)) {
        /* RFC 7208 4.3: a malformed or single-label domain has no policy */
        snprintf(d->detail, sizeof(d->detail), "not a valid domain: %.100s", domain ? domain : "");
        return top_result(d, top, SPF_TOP_NONE,
                          SPF_response_add_error(resp, SPF_E_NOT_SPF, "invalid domain"));
    }

    struct qwait w;
    int h = run_query(d, domain, ns_t_txt, false, &w);
    SPF_dns_rr_t *rr = h == NETDB_SUCCESS ? rr_from_reply(d, domain, ns_t_txt, w.buf, w.len) : NULL;
    free(w.buf);
    if (rr)
        h = rr->herrno;
    if (h == HOST_NOT_FOUND || h == NO_DATA) {
        if (rr)
            SPF_dns_rr_free(rr);
        if (!top && !count_void(d, domain))
            return SPF_response_add_error(resp, SPF_E_BIG_DNS, "void lookup limit");
        snprintf(d->detail, sizeof(d->detail), "no SPF record for %.100s", domain);
        return top_result(d, top, SPF_TOP_NONE,
                          SPF_response_add_error(resp, SPF_E_NOT_SPF, "no SPF record"));
    }
    if (h != NETDB_SUCCESS) {
        if (rr)
            SPF_dns_rr_free(rr);
        return top_result(d, top, SPF_TOP_TEMP,
                          SPF_response_add_error(resp, SPF_E_DNS_ERROR, "DNS failure"));
    }

    /* RFC 7208 4.5: exactly "v=spf1", then a space or the end */
    int found = 0, idx = -1;
    for (int i = 0; i < rr->num_rr; i++) {
        const char *t = rr->rr[i]->txt;
        if (strncasecmp(t, SPF_VER_STR, 6) == 0 && (t[6] == ' ' || t[6] == '\0')) {
            found++;
            idx = i;
        }
    }
    if (found == 0) {
        SPF_dns_rr_free(rr);
        snprintf(d->detail, sizeof(d->detail), "no SPF record for %.100s", domain);
        return top_result(d, top, SPF_TOP_NONE,
                          SPF_response_add_error(resp, SPF_E_NOT_SPF, "no SPF record"));
    }
    if (found > 1) {
        SPF_dns_rr_free(rr);
        snprintf(d->detail, sizeof(d->detail), "several SPF records for %.100s", domain);
        return top_result(d, top, SPF_TOP_PERM,
                          SPF_response_add_error(resp, SPF_E_MULTIPLE_RECORDS, "several records"));
    }
    if (strlen(rr->rr[idx]->txt) >= DNS_TXT_MAX) {
        SPF_dns_rr_free(rr);
        snprintf(d->detail, sizeof(d->detail), "SPF record of %.100s too long", domain);
        return top_result(d, top, SPF_TOP_PERM,
                          SPF_response_add_error(resp, SPF_E_BIG_STRING, "record too long"));
    }
    SPF_errcode_t err = SPF_record_compile(server, resp, recp, rr->rr[idx]->txt);
    SPF_dns_rr_free(rr);
    if (err != SPF_E_SUCCESS) {
        /* libspf2 leaves a half-built record behind on failure */
        if (*recp)
            SPF_record_free(*recp);
        *recp = NULL;
        snprintf(d->detail, sizeof(d->detail), "bad SPF record for %.100s: %s", domain,
                 SPF_strerror(err));
        return top_result(d, top, SPF_TOP_PERM, err == SPF_E_DNS_ERROR ? SPF_E_SYNTAX : err);
    }
    return top_result(d, top, SPF_TOP_OK, SPF_E_SUCCESS);
}

/* ---- life cycle ---- */

static int set_servers(ares_channel ch, const char *const *servers, size_t n)
{
    struct ares_addr_port_node nodes[CFG_MAX_DNS];
    if (n > CFG_MAX_DNS)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int family;
        unsigned char addr[16];
        uint16_t port;
        if (resolver_server_parse(servers[i], &family, addr, &port) < 0)
            return -EINVAL;
        memset(&nodes[i], 0, sizeof(nodes[i]));
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
        nodes[i].family = family;
        if (family == AF_INET)
            memcpy(&nodes[i].addr.addr4, addr, 4);
        else
            memcpy(&nodes[i].addr.addr6, addr, 16);
        nodes[i].udp_port = port;
        nodes[i].tcp_port = port;
    }
    return ares_set_servers_ports(ch, nodes) == ARES_SUCCESS ? 0 : -ENOMEM;
}

int spf_dns_new(const char *const *servers, size_t n, spf_dns **out)
{
    *out = NULL;
    spf_dns *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->query_ms = DNS_QUERY_MS;
    d->top = SPF_TOP_NOT_TRIED;

    struct ares_options opts;
    memset(&opts, 0, sizeof(opts));
    /*
     * Several tries inside the default per-query deadline (c-ares doubles
     * the wait each round; run_query cuts it at the deadline), no
     * HOSTALIASES, and no search list (ares_query never uses one anyway).
     */
    opts.flags = ARES_FLAG_NOALIASES | ARES_FLAG_NOSEARCH;
    opts.timeout = DNS_QUERY_MS / 3;
    opts.tries = 3;
    /* servers in the order given, as the resolver module does (docs/dns.md) */
    int optmask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NOROTATE;
    int rc = ares_init_options(&d->ch, &opts, optmask);
    if (rc != ARES_SUCCESS) {
        free(d);
        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    if (n > 0) {
        int err = set_servers(d->ch, servers, n);
        if (err < 0) {
            ares_destroy(d->ch);
            free(d);
            return err;
        }
    }

    d->layer.destroy = NULL; /* SPF_server_free must not free it: spf_dns_free does */
    d->layer.lookup = dns_lookup;
    d->layer.get_spf = dns_get_spf;
    d->layer.get_exp = NULL; /* libspf2 expands exp= itself, looking up through dns_lookup */
    d->layer.add_cache = NULL;
    d->layer.layer_below = NULL;
    d->layer.name = "sluice-c-ares";
    d->layer.debug = 0;
    d->layer.hook = d;
    *out = d;
    return 0;
}

void spf_dns_free(spf_dns *d)
{
    if (!d)
        return;
    ares_destroy(d->ch);
    free(d);
}

struct SPF_dns_server_struct *spf_dns_layer(spf_dns *d)
{
    return &d->layer;
}

void spf_dns_begin(spf_dns *d, unsigned query_ms, unsigned budget_ms, const atomic_bool *cancel)
{
    d->query_ms = query_ms ? query_ms : DNS_QUERY_MS;
    d->deadline = uv_hrtime() + (uint64_t)(budget_ms ? budget_ms : 20000) * 1000000u;
    d->cancel = cancel;
    d->terms = d->voids = d->queries = 0;
    d->top_done = false;
    d->top = SPF_TOP_NOT_TRIED;
    d->stop = SPF_DNS_GO;
    d->detail[0] = '\0';
    d->nderived = 0;
}

enum spf_dns_stop spf_dns_stopped(const spf_dns *d)
{
    return d->stop;
}

enum spf_dns_top spf_dns_top(const spf_dns *d)
{
    return d->top;
}

const char *spf_dns_detail(const spf_dns *d)
{
    return d->detail;
}
