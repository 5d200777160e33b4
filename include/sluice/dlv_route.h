/*
 * dlv_route.h - where remote mail goes: from a next hop to an ordered list
 * of addresses to try (docs/delivery.md, "Remote delivery").
 *
 * The runner picks the next hop of a recipient domain (transport map, else
 * relayhost, else the domain itself: dlv_nexthop() in dlv_core.h); this
 * module turns that next hop into candidates:
 *
 *   "[host]:port", "[host]", an IP address   -> the host's own addresses
 *   "host:port", "host", a recipient domain  -> MX lookup, then each MX's
 *                                               addresses, in MX order
 *   "[192.0.2.1]", "[IPv6:2001:db8::1]"      -> that address (no DNS)
 *
 * MX rules (RFC 5321 5.1, RFC 7505, docs/dns.md): lowest preference first,
 * random order among equal ones (the resolver shuffles); no MX records
 * (NODATA) -> the name itself as the only MX; null MX -> permanent 5.1.10;
 * NXDOMAIN -> permanent 5.1.2; a temporary DNS failure -> 4.4.3. Every
 * address (AAAA first, then A) of every MX becomes a candidate, in order,
 * up to DLV_ROUTE_MAX_CANDIDATES.
 *
 * A permanent DNS verdict about a next hop that is NOT the recipients'
 * domain (a relayhost or a transport map entry) is made temporary: it is a
 * configuration error to fix, not a reason to bounce mail (Postfix does
 * the same).
 *
 * libuv's contract: 0 or a negative code; the callback runs later from the
 * loop, never inside dlv_route_resolve(). One exception, said by the
 * return value: a next hop that is an IP address needs no DNS, so
 * dlv_route_resolve() returns 1 with req->result already filled and never
 * calls the callback.
 */
#ifndef SLUICE_DLV_ROUTE_H
#define SLUICE_DLV_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resolver.h"

#define DLV_ROUTE_MAX_MX 16         /* MX hosts looked at, best first */
#define DLV_ROUTE_MAX_CANDIDATES 32 /* addresses tried within one attempt */
#define DLV_ROUTE_HOST_MAX 256      /* host name with NUL */
#define DLV_ROUTE_TEXT_MAX 400

/* One address to connect to. */
typedef struct dlv_route_cand {
    char host[DLV_ROUTE_HOST_MAX]; /* MX / relay host name, or the IP text for literals */
    struct sockaddr_storage addr;  /* port set */
    socklen_t addrlen;
    uint16_t port;
    bool literal; /* reached by address, not by name (no name to verify in TLS) */
} dlv_route_cand;

enum dlv_route_class {
    DLV_ROUTE_OK = 0,
    DLV_ROUTE_TEMP = 4, /* defer: try again later */
    DLV_ROUTE_PERM = 5, /* bounce */
};

typedef struct dlv_route_result {
    enum dlv_route_class klass;
    dlv_route_cand *cands; /* malloc'd, ncands entries (DLV_ROUTE_OK only) */
    size_t ncands;
    /* on failure: */
    int code;       /* 450 / 550 style, for the recipient's reply code */
    char status[8]; /* "5.1.2", "4.4.3", ... */
    /* one line, e.g. "Host or domain name not found. Name service error for name=x.test type=MX:
     * ..." */
    char text[DLV_ROUTE_TEXT_MAX];
} dlv_route_result;

/* Frees the candidates and zeroes res. Safe on a zeroed result. */
void dlv_route_result_free(dlv_route_result *res);

/* ---- pure parts (unit-tested) ---- */

/* A parsed next hop. */
typedef struct dlv_route_target {
    char host[DLV_ROUTE_HOST_MAX]; /* brackets and "IPv6:" stripped, lower case */
    uint16_t port;                 /* the default when the next hop names none */
    bool mx;                       /* look up MX records of host */
    bool is_ip;                    /* host is an IP address: addr holds it */
    struct sockaddr_storage addr;  /* when is_ip: port set */
    socklen_t addrlen;
} dlv_route_target;

/*
 * Parses a next hop ("[host]:port", "host:port", "[host]", "host",
 * "[1.2.3.4]", "[IPv6:::1]", a bare IPv4 address) with default_port for
 * one that names none. 0 or -EINVAL.
 */
int dlv_route_parse(const char *nexthop, uint16_t default_port, dlv_route_target *out);

/*
 * The verdict for a failed DNS lookup: status is a RESOLVER_* class, what
 * "MX" or "A"/"AAAA", name the queried name, detail the resolver's text or
 * NULL. final: name is the recipients' domain (else permanent verdicts are
 * made temporary, see above). Fills klass, code, status and text of out.
 * Used for the MX query, and for address queries when no MX host had any
 * address.
 */
void dlv_route_dns_failure(int status, const char *what, const char *name, const char *detail,
                           bool final, dlv_route_result *out);

/* ---- the lookup ---- */

typedef struct dlv_route_req dlv_route_req;
typedef void (*dlv_route_cb)(dlv_route_req *req);

/*
 * Caller-owned; valid until the callback ran. req->result is the caller's
 * from the callback on (dlv_route_result_free it). The other fields are
 * private.
 */
struct dlv_route_req {
    void *data; /* for the caller */
    dlv_route_result result;

    /* private */
    resolver *res_;
    resolver_req dns_;
    dlv_route_cb cb_;
    dlv_route_target target_;
    bool final_;
    bool active_;
    bool canceled_;
    resolver_mx mx_[DLV_ROUTE_MAX_MX]; /* hosts owned (strdup'd) */
    size_t nmx_, imx_;
    int worst_; /* the most telling address lookup failure so far */
    char worst_name_[DLV_ROUTE_HOST_MAX];
    char worst_detail_[128];
    char worst_what_[8];
};

/*
 * Resolves nexthop (see dlv_route_parse) into candidates. domain: the
 * recipients' domain, or NULL; decides "final" above (a next hop equal to
 * the domain is final). 0: cb runs later; 1: an IP address, req->result is
 * ready now and cb is not called; -EINVAL (bad next hop: nothing started,
 * no callback), -ENOMEM, or the resolver's error.
 */
int dlv_route_resolve(resolver *r, dlv_route_req *req, const char *nexthop, const char *domain,
                      uint16_t default_port, dlv_route_cb cb);

/* Cancels an active lookup: the callback still runs, with DLV_ROUTE_TEMP 4.4.3. */
void dlv_route_cancel(dlv_route_req *req);

#endif
