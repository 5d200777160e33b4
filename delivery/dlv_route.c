/*
 * dlv_route.c - a next hop to an ordered list of addresses (dlv_route.h).
 *
 * The MX lookup runs first (unless the next hop is bracketed or an IP
 * address), then one AF_UNSPEC address lookup per MX host, one after the
 * other: MX lists are short, and sequential lookups keep the order of the
 * candidates the order of the MX list without sorting afterwards.
 */
#include "sluice/dlv_route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/config.h"

void dlv_route_result_free(dlv_route_result *res)
{
    free(res->cands);
    memset(res, 0, sizeof(*res));
}

/* An IPv4 or IPv6 address in text: fills ss (port set). */
static bool parse_ip(const char *s, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
        return true;
    }
    if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
        return true;
    }
    return false;
}

int dlv_route_parse(const char *nexthop, uint16_t default_port, dlv_route_target *out)
{
    char buf[DLV_ROUTE_HOST_MAX + 16];
    memset(out, 0, sizeof(*out));
    if (!nexthop || !*nexthop || strlen(nexthop) >= sizeof(buf))
        return -EINVAL;
    snprintf(buf, sizeof(buf), "%s", nexthop);
    /*
     * RFC 5321 4.1.3 writes IPv6 address literals "[IPv6:addr]": a recipient
     * domain arrives in that form; config_parse_relay knows only "[addr]".
     */
    if (strncasecmp(buf, "[IPv6:", 6) == 0)
        memmove(buf + 1, buf + 6, strlen(buf + 6) + 1);
    size_t bl = strlen(buf);
    if (bl > 1 && buf[bl - 1] == '.') /* "b.test." is "b.test" */
        buf[bl - 1] = '\0';

    cfg_relay r;
    if (config_parse_relay(buf, &r) < 0)
        return -EINVAL;
    if (r.port < 0 || r.port > 65535)
        return -EINVAL;
    size_t hl = strlen(r.host);
    if (hl == 0 || hl >= sizeof(out->host))
        return -EINVAL;
    for (size_t i = 0; i < hl; i++)
        out->host[i] = (char)tolower((unsigned char)r.host[i]);
    out->port = r.port ? (uint16_t)r.port : default_port;
    out->is_ip = parse_ip(out->host, out->port, &out->addr, &out->addrlen);
    out->mx = !r.literal && !out->is_ip;
    return 0;
}

void dlv_route_dns_failure(int status, const char *what, const char *name, const char *detail,
                           bool final, dlv_route_result *out)
{
    const char *why;
    bool perm = false;
    const char *st = "4.4.3";
    switch (status) {
    case RESOLVER_ENXDOMAIN:
        why = "Host not found";
        perm = true;
        st = strcmp(what, "MX") == 0 ? "5.1.2" : "5.4.4";
        break;
    case RESOLVER_ENODATA:
        why = "Host found but no data record of requested type";
        perm = true;
        st = "5.4.4";
        break;
    case RESOLVER_ENULLMX:
        why = "Domain does not accept mail (null MX, RFC 7505)";
        perm = true;
        st = "5.1.10";
        break;
    case RESOLVER_ECANCELED:
        why = "lookup canceled";
        break;
    default:
        why = "Host not found, try again";
        break;
    }
    /* A relayhost or transport entry that does not resolve is the admin's to fix. */
    if (perm && !final)
        st = "4.4.4";
    perm = perm && final;

    out->klass = perm ? DLV_ROUTE_PERM : DLV_ROUTE_TEMP;
    out->code = perm ? (status == RESOLVER_ENULLMX ? 556 : 550) : 451;
    snprintf(out->status, sizeof(out->status), "%s", st);
    if (status == RESOLVER_ENULLMX)
        snprintf(out->text, sizeof(out->text), "Domain %s does not accept mail (null MX)", name);
    else
        snprintf(out->text, sizeof(out->text),
                 "Host or domain name not found. Name service error for name=%s type=%s: %s%s%s%s",
                 name, what, why, detail && *detail ? " (" : "", detail ? detail : "",
                 detail && *detail ? ")" : "");
}

/* ---- the lookup ---- */

static void finish(dlv_route_req *req)
{
    req->active_ = false;
    for (size_t i = 0; i < req->nmx_; i++) {
        free(req->mx_[i].host);
        req->mx_[i].host = NULL;
    }
    req->nmx_ = 0;
    req->cb_(req);
}

static void fail(dlv_route_req *req, int status, const char *what, const char *name,
                 const char *detail)
{
    dlv_route_result_free(&req->result);
    dlv_route_dns_failure(status, what, name, detail, req->final_, &req->result);
    finish(req);
}

static int add_cand(dlv_route_req *req, const char *host, const struct sockaddr_storage *ss,
                    socklen_t len, bool literal)
{
    dlv_route_result *res = &req->result;
    if (res->ncands >= DLV_ROUTE_MAX_CANDIDATES)
        return 0;
    for (size_t i = 0; i < res->ncands; i++) /* two MX names for one address: try it once */
        if (res->cands[i].addrlen == len && memcmp(&res->cands[i].addr, ss, len) == 0)
            return 0;
    if (!res->cands) {
        res->cands = calloc(DLV_ROUTE_MAX_CANDIDATES, sizeof(*res->cands));
        if (!res->cands)
            return -ENOMEM;
    }
    dlv_route_cand *c = &res->cands[res->ncands++];
    memset(c, 0, sizeof(*c));
    snprintf(c->host, sizeof(c->host), "%s", host);
    memcpy(&c->addr, ss, len);
    c->addrlen = len;
    c->port = req->target_.port;
    c->literal = literal;
    if (c->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&c->addr)->sin_port = htons(c->port);
    else
        ((struct sockaddr_in6 *)&c->addr)->sin6_port = htons(c->port);
    return 0;
}

/* How telling a failed address lookup is: a temporary one wins (retry later). */
static int severity(int status)
{
    switch (status) {
    case RESOLVER_ETEMP:
        return 3;
    case RESOLVER_ENXDOMAIN:
        return 2;
    case RESOLVER_ENODATA:
        return 1;
    default:
        return 3;
    }
}

static void next_host(dlv_route_req *req);

static void addr_cb(resolver_req *dns, int status)
{
    dlv_route_req *req = dns->data;
    const char *host = req->mx_[req->imx_].host;
    if (req->canceled_) {
        resolver_req_cleanup(dns);
        fail(req, RESOLVER_ECANCELED, "A", host, NULL);
        return;
    }
    if (status == RESOLVER_OK) {
        for (size_t i = 0; i < dns->result.naddrs; i++) {
            struct sockaddr_storage *ss = &dns->result.addrs[i];
            socklen_t len =
                ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
            if (add_cand(req, host, ss, len, false) < 0) {
                resolver_req_cleanup(dns);
                fail(req, RESOLVER_ETEMP, "A", host, "out of memory");
                return;
            }
        }
    } else if (req->worst_ == 0 || severity(status) > severity(req->worst_)) {
        req->worst_ = status;
        snprintf(req->worst_name_, sizeof(req->worst_name_), "%s", host);
        snprintf(req->worst_detail_, sizeof(req->worst_detail_), "%s",
                 dns->detail ? dns->detail : "");
    }
    resolver_req_cleanup(dns);
    req->imx_++;
    next_host(req);
}

/* Looks up the addresses of the next MX host, or ends the lookup. */
static void next_host(dlv_route_req *req)
{
    while (req->imx_ < req->nmx_ && req->result.ncands < DLV_ROUTE_MAX_CANDIDATES) {
        const char *host = req->mx_[req->imx_].host;
        struct sockaddr_storage ss;
        socklen_t len;
        /* An MX naming an address is wrong (RFC 5321 5.1) but common: use it. */
        if (parse_ip(host, 0, &ss, &len)) {
            if (add_cand(req, host, &ss, len, true) < 0) {
                fail(req, RESOLVER_ETEMP, "A", host, "out of memory");
                return;
            }
            req->imx_++;
            continue;
        }
        req->dns_.data = req;
        int rc = resolver_addr_query(req->res_, &req->dns_, host, AF_UNSPEC, addr_cb);
        if (rc == 0)
            return;
        if (rc == -EINVAL) { /* a name DNS cannot hold: this host does not exist */
            if (req->worst_ == 0) {
                req->worst_ = RESOLVER_ENXDOMAIN;
                snprintf(req->worst_name_, sizeof(req->worst_name_), "%s", host);
                req->worst_detail_[0] = '\0';
            }
            req->imx_++;
            continue;
        }
        fail(req, RESOLVER_ETEMP, "A", host, rc == -ENOMEM ? "out of memory" : "resolver closing");
        return;
    }
    if (req->result.ncands > 0) {
        req->result.klass = DLV_ROUTE_OK;
        finish(req);
        return;
    }
    fail(req, req->worst_ ? req->worst_ : RESOLVER_ENODATA, "A",
         req->worst_name_[0] ? req->worst_name_ : req->target_.host, req->worst_detail_);
}

static int set_hosts_one(dlv_route_req *req, const char *host)
{
    req->mx_[0].host = strdup(host);
    if (!req->mx_[0].host)
        return -ENOMEM;
    req->mx_[0].pref = 0;
    req->nmx_ = 1;
    return 0;
}

static void mx_cb(resolver_req *dns, int status)
{
    dlv_route_req *req = dns->data;
    const char *name = req->target_.host;
    if (req->canceled_)
        status = RESOLVER_ECANCELED;
    if (status == RESOLVER_OK) {
        size_t n = dns->result.nmx < DLV_ROUTE_MAX_MX ? dns->result.nmx : DLV_ROUTE_MAX_MX;
        for (size_t i = 0; i < n; i++) {
            req->mx_[i].host = strdup(dns->result.mx[i].host);
            req->mx_[i].pref = dns->result.mx[i].pref;
            if (!req->mx_[i].host) {
                req->nmx_ = i;
                resolver_req_cleanup(dns);
                fail(req, RESOLVER_ETEMP, "MX", name, "out of memory");
                return;
            }
            req->nmx_ = i + 1;
        }
        resolver_req_cleanup(dns);
        next_host(req);
        return;
    }
    if (status == RESOLVER_ENODATA) { /* RFC 5321 5.1: the domain is its own MX */
        resolver_req_cleanup(dns);
        if (set_hosts_one(req, name) < 0) {
            fail(req, RESOLVER_ETEMP, "MX", name, "out of memory");
            return;
        }
        next_host(req);
        return;
    }
    char detail[128];
    snprintf(detail, sizeof(detail), "%s", dns->detail ? dns->detail : "");
    resolver_req_cleanup(dns);
    fail(req, status, "MX", name, detail);
}

int dlv_route_resolve(resolver *r, dlv_route_req *req, const char *nexthop, const char *domain,
                      uint16_t default_port, dlv_route_cb cb)
{
    void *data = req->data;
    memset(req, 0, sizeof(*req));
    req->data = data;
    req->res_ = r;
    req->cb_ = cb;
    if (dlv_route_parse(nexthop, default_port, &req->target_) < 0)
        return -EINVAL;
    req->final_ = domain != NULL && req->target_.mx && strcasecmp(req->target_.host, domain) == 0;
    if (req->target_.is_ip) {
        int rc = add_cand(req, req->target_.host, &req->target_.addr, req->target_.addrlen, true);
        if (rc < 0) {
            dlv_route_result_free(&req->result);
            return rc;
        }
        req->result.klass = DLV_ROUTE_OK;
        return 1;
    }
    req->dns_.data = req;
    int rc;
    if (req->target_.mx) {
        rc = resolver_mx_query(r, &req->dns_, req->target_.host, mx_cb);
    } else {
        rc = set_hosts_one(req, req->target_.host);
        if (rc == 0) {
            rc = resolver_addr_query(r, &req->dns_, req->target_.host, AF_UNSPEC, addr_cb);
            if (rc < 0) {
                free(req->mx_[0].host);
                req->mx_[0].host = NULL;
                req->nmx_ = 0;
            }
        }
    }
    if (rc < 0)
        return rc;
    req->active_ = true;
    return 0;
}

void dlv_route_cancel(dlv_route_req *req)
{
    if (!req->active_ || req->canceled_)
        return;
    req->canceled_ = true;
    /* -EBUSY: the reply is in and its callback queued; canceled_ is checked there. */
    (void)resolver_cancel(&req->dns_);
}
