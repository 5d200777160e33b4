/*
 * dlv_remote.c - the runner's side of remote delivery: the next hop of a
 * domain (transport map, relayhost, else the domain's MX), and the glue
 * that hands one request per next hop to the transport (the SMTP client)
 * and turns its per-recipient verdicts into results.
 *
 * The transport decides temporary versus permanent where the I/O failed
 * (DESIGN.md); the runner only reads the class of the enhanced status and
 * falls back to the reply code when a transport left it out.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sluice/dlv_core.h"
#include "sluice/log.h"

const char *dlv_nexthop(const sluice_config *cfg, const map *transport, const char *domain)
{
    const char *v = transport ? map_lookup(transport, domain, strlen(domain)) : NULL;
    if (v && *v)
        return v;
    if (cfg->relayhost && *cfg->relayhost)
        return cfg->relayhost;
    return domain;
}

static bool status_valid(const char *s)
{
    return (s[0] == '2' || s[0] == '4' || s[0] == '5') && s[1] == '.' && s[2] >= '0' && s[2] <= '9';
}

static void remote_done(dlv_remote_req *req)
{
    dlv_task *t = req->data;
    dlv_msg *m = t->msg;
    for (size_t k = 0; k < req->nrcpt; k++) {
        dlv_remote_rcpt *rr = &req->rcpts[k];
        char status[8];
        if (status_valid(rr->status))
            snprintf(status, sizeof(status), "%s", rr->status);
        else if (rr->code >= 200 && rr->code < 600)
            /* 2xx sent, 5xx bounced; 3xx here is a protocol slip: retry. */
            snprintf(status, sizeof(status), "%c.0.0",
                     rr->code / 100 == 3 ? '4' : (char)('0' + rr->code / 100));
        else
            snprintf(status, sizeof(status), "4.4.0"); /* unknown: retrying is safe */
        rr->reply[sizeof(rr->reply) - 1] = '\0';
        rr->relay[sizeof(rr->relay) - 1] = '\0';
        rr->tls[sizeof(rr->tls) - 1] = '\0';
        dlv_result *res = &m->res[t->idx[k]];
        if (dlv_result_set(res, rr->code, status, rr->reply[0] ? rr->reply : "(no reply)",
                           rr->relay[0] ? rr->relay : "none", rr->tls) != 0)
            res->tried = false; /* out of memory: retried as if not attempted */
    }
    dlv_task_end(t);
}

void dlv_remote_run(dlv_task *t)
{
    dlv_msg *m = t->msg;
    dlv_transport *tr = m->r->transport;
    t->req.done = remote_done;
    t->req.data = t;
    int rc = tr->send ? tr->send(tr, &t->req) : -ENOTSUP;
    if (rc == 0)
        return;
    const char *reply = rc == -ENOTSUP ? "451 4.4.0 remote delivery not available"
                                       : "451 4.3.0 remote delivery could not start";
    if (rc != -ENOTSUP)
        log_warn("%s: remote delivery to %s: %s", m->id, t->dest, strerror(-rc));
    for (size_t k = 0; k < t->req.nrcpt; k++) {
        dlv_result *res = &m->res[t->idx[k]];
        if (dlv_result_set(res, 451, rc == -ENOTSUP ? "4.4.0" : "4.3.0", reply, "none", "none"))
            res->tried = false;
    }
    dlv_task_end(t);
}

static dlv_transport unavailable = {.send = NULL, .cancel_all = NULL, .close = NULL, .data = NULL};

dlv_transport *dlv_transport_unavailable(void)
{
    return &unavailable;
}
