/*
 * smtp_rdns.c - the client's name: a PTR lookup confirmed by a forward
 * lookup (the name must resolve back to the client's address, as Postfix
 * requires before it trusts a name). It runs beside the dialogue and never
 * delays the greeting; until it finishes, and when it fails, the client is
 * "unknown". The result goes into the log and the Received header.
 */
#include <string.h>

#include "sluice/log.h"
#include "sluice/smtp_session.h"

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

static void on_forward(resolver_req *req, int status)
{
    smtp_session *s = req->data;
    if (status == RESOLVER_OK && !s->closing) {
        for (size_t i = 0; i < req->result.naddrs; i++) {
            if (same_addr(&req->result.addrs[i], &s->peer)) {
                snprintf(s->peer_name, sizeof(s->peer_name), "%s", s->rdns_name);
                break;
            }
        }
        if (strcmp(s->peer_name, "unknown") == 0)
            log_info("hostname %s does not resolve to address %s", s->rdns_name, s->peer_ip);
    }
    resolver_req_cleanup(req);
    s->rdns_active = false;
    smtp_session_unref(s);
}

static void on_ptr(resolver_req *req, int status)
{
    smtp_session *s = req->data;
    if (status == RESOLVER_OK && req->result.name && !s->closing &&
        strlen(req->result.name) < sizeof(s->rdns_name)) {
        snprintf(s->rdns_name, sizeof(s->rdns_name), "%s", req->result.name);
        resolver_req_cleanup(req);
        int family = s->peer.ss_family;
        if (resolver_addr_query(&s->srv->resolver, req, s->rdns_name, family, on_forward) == 0)
            return; /* the reference travels on */
    } else {
        resolver_req_cleanup(req);
    }
    s->rdns_active = false;
    smtp_session_unref(s);
}

void smtp_rdns_start(smtp_session *s)
{
    if (!s->srv->resolver_ok || (s->peer.ss_family != AF_INET && s->peer.ss_family != AF_INET6))
        return;
    s->rdns.data = s;
    if (resolver_ptr_query(&s->srv->resolver, &s->rdns, (struct sockaddr *)&s->peer, on_ptr) == 0) {
        s->rdns_active = true;
        smtp_session_ref(s);
    }
}

void smtp_rdns_cancel(smtp_session *s)
{
    if (s->rdns_active)
        resolver_cancel(&s->rdns); /* the callback still runs, and drops the reference */
}
