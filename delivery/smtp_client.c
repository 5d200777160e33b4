/*
 * smtp_client.c - the outbound SMTP client (dlv_smtp.h): requests, routing,
 * the candidate loop, the idle connection cache and the runner's
 * transport interface. The dialogue itself is in smtp_client_proto.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "smtp_client_int.h"
#include "sluice/log.h"

uint64_t smtpc_now_ms(const dlv_smtp *c)
{
    return uv_now(c->loop);
}

void dlv_smtp_options_default(dlv_smtp_options *o)
{
    memset(o, 0, sizeof(*o));
    o->helo_name = "localhost";
    o->tls = TLS_MAY;
    o->remote_port = 25;
    o->relayhost = "";
    o->relayhost_auth = "";
    o->cache_per_dest = 20;
    o->cache_total = 64;
    dlv_smtp_timeouts *t = &o->timeouts;
    t->connect_ms = 30 * 1000;
    t->greeting_ms = 5 * 60 * 1000;
    t->ehlo_ms = 5 * 60 * 1000;
    t->starttls_ms = 5 * 60 * 1000;
    t->auth_ms = 5 * 60 * 1000;
    t->mail_ms = 5 * 60 * 1000;
    t->rcpt_ms = 5 * 60 * 1000;
    t->data_init_ms = 2 * 60 * 1000;
    t->data_block_ms = 3 * 60 * 1000;
    t->data_end_ms = 10 * 60 * 1000;
    t->rset_ms = 20 * 1000;
    t->quit_ms = 5 * 1000;
    t->idle_ms = 5 * 1000;
    t->reuse_max_ms = 300 * 1000;
}

void dlv_smtp_options_from_config(const sluice_config *cfg, dlv_smtp_options *o)
{
    dlv_smtp_options_default(o);
    if (cfg->hostname && *cfg->hostname)
        o->helo_name = cfg->hostname;
    o->tls = cfg->tls;
    if (cfg->remote_port > 0 && cfg->remote_port <= 65535)
        o->remote_port = (uint16_t)cfg->remote_port;
    o->dns_servers = (const char *const *)cfg->dns_servers;
    o->ndns_servers = (size_t)cfg->ndns_servers;
    o->relayhost = cfg->relayhost ? cfg->relayhost : "";
    o->relayhost_auth = cfg->relayhost_auth ? cfg->relayhost_auth : "";
    if (cfg->concurrency_per_destination > 0)
        o->cache_per_dest = cfg->concurrency_per_destination;
}

/* ---- recipients' outcomes ---- */

void smtpc_rcpt_set(smtpc_job *j, size_t i, int code, const char *status, const char *text,
                    const smtpc_conn *conn)
{
    if (j->rs[i] & RS_SET)
        return;
    j->rs[i] |= RS_SET;
    dlv_remote_rcpt *r = &j->req->rcpts[i];
    r->code = code;
    snprintf(r->status, sizeof(r->status), "%s", status);
    snprintf(r->reply, sizeof(r->reply), "%s", text);
    if (conn) {
        snprintf(r->relay, sizeof(r->relay), "%s", conn->relay);
        snprintf(r->tls, sizeof(r->tls), "%s", conn->tls_on ? conn->tls_version : "none");
    } else {
        snprintf(r->relay, sizeof(r->relay), "%s", j->err_relay);
        snprintf(r->tls, sizeof(r->tls), "%s", j->err_tls[0] ? j->err_tls : "none");
    }
}

void smtpc_rcpt_set_rest(smtpc_job *j, int code, const char *status, const char *text,
                         const smtpc_conn *conn)
{
    for (size_t i = 0; i < j->req->nrcpt; i++)
        smtpc_rcpt_set(j, i, code, status, text, conn);
}

/* ---- the done list ---- */

static void defer_cb(uv_timer_t *t);
static void close_maybe_finish(dlv_smtp *c);

static void job_unlink(smtpc_job *j)
{
    dlv_smtp *c = j->c;
    if (j->prev)
        j->prev->next = j->next;
    else
        c->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->next = j->prev = NULL;
}

void smtpc_job_try_complete(smtpc_job *j)
{
    if (!j->finishing || j->routing || j->fs_active || j->queued)
        return;
    dlv_smtp *c = j->c;
    j->queued = true;
    job_unlink(j);
    if (c->done_tail)
        c->done_tail->next = j;
    else
        c->done_head = j;
    c->done_tail = j;
    uv_timer_start(&c->defer, defer_cb, 0, 0);
}

static void job_free(smtpc_job *j)
{
    dlv_route_result_free(&j->cands);
    dlv_route_result_free(&j->route.result);
    free(j->rs);
    free(j->rbuf);
    free(j);
}

static void defer_cb(uv_timer_t *t)
{
    dlv_smtp *c = t->data;
    /* Take the list first: a done callback may start new requests. */
    smtpc_job *j = c->done_head;
    c->done_head = c->done_tail = NULL;
    while (j) {
        smtpc_job *next = j->next;
        dlv_remote_req *req = j->req;
        req->tdata = NULL;
        c->stats.requests++;
        job_free(j);
        req->done(req);
        j = next;
    }
    close_maybe_finish(c);
}

void smtpc_job_finish(smtpc_job *j)
{
    smtpc_conn *conn = j->conn;
    j->conn = NULL;
    j->finishing = true;
    if (conn) {
        conn->job = NULL;
        smtpc_conn_release(conn);
    }
    smtpc_job_try_complete(j);
}

/* ---- the candidate loop ---- */

static void route_start(smtpc_job *j);

static void next_candidate(smtpc_job *j)
{
    dlv_smtp *c = j->c;
    while (!j->canceled && j->icand < j->cands.ncands) {
        smtpc_conn *conn;
        const dlv_route_cand *cand = &j->cands.cands[j->icand];
        bool no_tls = j->plain_retry;
        j->plain_retry = false;
        int rc = smtpc_conn_open(c, j, cand, no_tls, &conn);
        if (rc == 0) {
            j->conn = conn;
            j->reused = false;
            return;
        }
        /* No socket at all (EMFILE, an address family this host lacks): next one. */
        smtpc_relay_format(cand, j->err_relay, sizeof(j->err_relay));
        j->err_tls[0] = '\0';
        j->err_code = 0;
        snprintf(j->err_status, sizeof(j->err_status), "4.4.1");
        snprintf(j->err_text, sizeof(j->err_text), "connect to %s: %s", j->err_relay,
                 strerror(-rc));
        j->icand++;
    }
    if (j->canceled)
        smtpc_rcpt_set_rest(j, 0, "4.3.2", "delivery canceled (shutting down)", NULL);
    else if (j->err_status[0])
        smtpc_rcpt_set_rest(j, j->err_code, j->err_status, j->err_text, NULL);
    else
        smtpc_rcpt_set_rest(j, 0, "4.4.1", "no address to connect to", NULL);
    smtpc_job_finish(j);
}

void smtpc_job_candidate_failed(smtpc_job *j, int code, const char *status, const char *text)
{
    smtpc_conn *conn = j->conn;
    j->conn = NULL;
    j->err_code = code;
    snprintf(j->err_status, sizeof(j->err_status), "%s", status);
    snprintf(j->err_text, sizeof(j->err_text), "%s", text);
    j->err_tls[0] = '\0';
    if (conn) {
        snprintf(j->err_relay, sizeof(j->err_relay), "%s", conn->relay);
        if (conn->tls_on)
            snprintf(j->err_tls, sizeof(j->err_tls), "%s", conn->tls_version);
        conn->job = NULL;
        conn->broken = true;
        /* A session that failed on a reply can still say goodbye. */
        if (code != 0 && code != 421 && !conn->closing)
            smtpc_conn_quit(conn);
        else
            smtpc_conn_close(conn);
    }
    if (j->reused && !j->rerouted) {
        /* A cached connection went stale: not this destination's fault. */
        j->reused = false;
        j->rerouted = true;
        j->err_status[0] = '\0';
        route_start(j);
        return;
    }
    if (!j->plain_retry)
        j->icand++;
    next_candidate(j);
}

static void route_cb(dlv_route_req *rr)
{
    smtpc_job *j = rr->data;
    j->routing = false;
    if (j->canceled) {
        smtpc_rcpt_set_rest(j, 0, "4.3.2", "delivery canceled (shutting down)", NULL);
        j->finishing = true;
        smtpc_job_try_complete(j);
        return;
    }
    dlv_route_result_free(&j->cands);
    j->cands = rr->result;
    memset(&rr->result, 0, sizeof(rr->result));
    if (j->cands.klass != DLV_ROUTE_OK) {
        j->err_relay[0] = '\0';
        smtpc_rcpt_set_rest(j, 0, j->cands.status, j->cands.text, NULL);
        smtpc_job_finish(j);
        return;
    }
    j->icand = 0;
    next_candidate(j);
}

static void route_start(smtpc_job *j)
{
    dlv_smtp *c = j->c;
    j->route.data = j;
    int rc = dlv_route_resolve(&c->res, &j->route, j->req->nexthop, j->req->domain,
                               c->o.remote_port, route_cb);
    if (rc == 0) {
        j->routing = true;
        return;
    }
    if (rc == 1) { /* an IP address: no DNS */
        route_cb(&j->route);
        return;
    }
    const char *text = rc == -EINVAL ? "bad next hop" : "cannot look up the next hop";
    char buf[DLV_REPLY_MAX];
    snprintf(buf, sizeof(buf), "%s \"%s\": %s", text, j->req->nexthop,
             rc == -EINVAL ? "expected [host]:port or host:port" : resolver_strerror(rc));
    /* A bad next hop comes from the transport map or relayhost: the admin's to fix. */
    smtpc_rcpt_set_rest(j, 0, rc == -EINVAL ? "4.3.5" : "4.3.0", buf, NULL);
    smtpc_job_finish(j);
}

/* ---- the connection cache ---- */

static smtpc_conn *cache_take(dlv_smtp *c, const char *key)
{
    uint64_t now = smtpc_now_ms(c);
    for (smtpc_conn *k = c->conns; k; k = k->next) {
        if (!k->cached || k->closing || k->broken || k->job || strcmp(k->key, key) != 0)
            continue;
        if (now - k->born_ms > c->o.timeouts.reuse_max_ms)
            continue;
        k->cached = false;
        return k;
    }
    return NULL;
}

void smtpc_conn_release(smtpc_conn *conn)
{
    dlv_smtp *c = conn->c;
    if (conn->closing)
        return;
    unsigned per = 0, total = 0;
    for (smtpc_conn *k = c->conns; k; k = k->next) {
        if (!k->cached || k->closing)
            continue;
        total++;
        if (strcmp(k->key, conn->key) == 0)
            per++;
    }
    unsigned cap_total = c->o.cache_total ? c->o.cache_total : 64;
    bool keep = !conn->broken && !c->closing && conn->tls_init == conn->tls_on &&
                smtpc_now_ms(c) - conn->born_ms < c->o.timeouts.reuse_max_ms &&
                per < c->o.cache_per_dest && total < cap_total;
    if (!keep) {
        smtpc_conn_quit(conn);
        return;
    }
    /* RSET now, so a reply proves the session is sane before the next message uses it. */
    conn->cached = true;
    conn->expect = X_RSET;
    smtpc_conn_timer(conn, c->o.timeouts.rset_ms, "sending RSET");
    if (smtpc_conn_write(conn, "RSET\r\n", 6) < 0)
        smtpc_conn_close(conn);
}

void smtpc_cache_idle(smtpc_conn *conn)
{
    dlv_smtp *c = conn->c;
    if (conn->job) { /* taken while its RSET was in flight */
        smtpc_proto_start(conn);
        return;
    }
    conn->expect = X_NONE;
    smtpc_conn_timer(conn, c->o.timeouts.idle_ms, "idle");
}

/* ---- requests ---- */

int dlv_smtp_send(dlv_smtp *c, dlv_remote_req *req)
{
    if (!req || !req->done || req->nrcpt == 0 || !req->rcpts || !req->nexthop || !req->sender)
        return -EINVAL;
    if (c->closing)
        return -ECANCELED;
    smtpc_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->rs = calloc(req->nrcpt, 1);
    if (!j->rs) {
        free(j);
        return -ENOMEM;
    }
    for (size_t i = 0; i < req->nrcpt; i++) {
        dlv_remote_rcpt *r = &req->rcpts[i];
        r->code = 0;
        r->status[0] = r->reply[0] = r->relay[0] = '\0';
        snprintf(r->tls, sizeof(r->tls), "none");
    }
    j->c = c;
    j->req = req;
    j->started_ms = smtpc_now_ms(c);
    j->need_auth =
        c->have_auth && c->relayhost && *c->relayhost && strcmp(req->nexthop, c->relayhost) == 0;
    req->tdata = j;
    j->next = c->jobs;
    if (c->jobs)
        c->jobs->prev = j;
    c->jobs = j;

    smtpc_conn *conn = cache_take(c, req->nexthop);
    if (conn) {
        j->conn = conn;
        j->reused = true;
        conn->job = j;
        c->stats.reused++;
        if (conn->expect == X_NONE) /* idle: its RSET reply is in */
            smtpc_proto_start(conn);
        return 0;
    }
    route_start(j);
    return 0;
}

static void job_cancel(smtpc_job *j)
{
    if (j->finishing || j->canceled)
        return;
    j->canceled = true;
    if (j->routing)
        dlv_route_cancel(&j->route);
    smtpc_conn *conn = j->conn;
    j->conn = NULL;
    if (conn) {
        conn->job = NULL;
        conn->broken = true;
        smtpc_conn_close(conn);
    }
    if (!j->routing) {
        smtpc_rcpt_set_rest(j, 0, "4.3.2", "delivery canceled (shutting down)", NULL);
        j->finishing = true;
        smtpc_job_try_complete(j);
    }
}

void dlv_smtp_cancel_all(dlv_smtp *c)
{
    smtpc_job *j = c->jobs;
    while (j) {
        smtpc_job *next = j->next; /* try_complete moves j to the done list */
        job_cancel(j);
        j = next;
    }
    /* Idle connections say goodbye (quit_ms bounds it); half-set-up ones just close. */
    for (smtpc_conn *k = c->conns; k; k = k->next) {
        if (k->job || k->closing || k->expect == X_QUIT)
            continue;
        if (k->cached && k->expect == X_NONE)
            smtpc_conn_quit(k);
        else
            smtpc_conn_close(k);
    }
}

/* ---- the client ---- */

static int load_auth(dlv_smtp *c, const char *path, char *err, size_t errlen)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "relayhost_auth %s: %s", path, strerror(errno));
        return -EINVAL;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    int e = errno;
    close(fd);
    int rc = 0;
    if (n < 0) {
        snprintf(err, errlen, "relayhost_auth %s: %s", path, strerror(e));
        rc = -EINVAL;
    } else if (dlv_smtp_auth_parse(buf, (size_t)n, c->auth_user, sizeof(c->auth_user), c->auth_pass,
                                   sizeof(c->auth_pass)) < 0) {
        snprintf(err, errlen, "relayhost_auth %s: expected a line \"user password\"", path);
        rc = -EINVAL;
    } else {
        c->have_auth = true;
    }
    OPENSSL_cleanse(buf, sizeof(buf)); /* the password does not linger on the stack */
    return rc;
}

static void client_free(dlv_smtp *c)
{
    if (c->ctx_any)
        SSL_CTX_free(c->ctx_any);
    if (c->ctx_verify)
        SSL_CTX_free(c->ctx_verify);
    for (size_t i = 0; c->dns && i < c->o.ndns_servers; i++)
        free(c->dns[i]);
    free(c->dns);
    free(c->helo);
    free(c->relayhost);
    OPENSSL_cleanse(c->auth_pass, sizeof(c->auth_pass));
    free(c);
}

static int transport_send(dlv_transport *t, dlv_remote_req *req)
{
    return dlv_smtp_send(t->data, req);
}

static void transport_cancel(dlv_transport *t)
{
    dlv_smtp_cancel_all(t->data);
}

static void transport_close(dlv_transport *t, void (*cb)(void *arg), void *arg)
{
    dlv_smtp_close(t->data, cb, arg);
}

static void early_closed(uv_handle_t *h)
{
    client_free(h->data);
}

int dlv_smtp_new(uv_loop_t *loop, const dlv_smtp_options *o, dlv_smtp **out, char *err,
                 size_t errlen)
{
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *out = NULL;
    dlv_smtp *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->o = *o;
    c->helo = strdup(o->helo_name && *o->helo_name ? o->helo_name : "localhost");
    c->relayhost = strdup(o->relayhost ? o->relayhost : "");
    c->dns = calloc(o->ndns_servers + 1, sizeof(char *));
    int rc = 0;
    if (!c->helo || !c->relayhost || !c->dns)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < o->ndns_servers; i++)
        if (!(c->dns[i] = strdup(o->dns_servers[i])))
            rc = -ENOMEM;
    c->o.helo_name = c->helo;
    c->o.relayhost = c->relayhost;
    c->o.dns_servers = (const char *const *)c->dns;
    c->o.ca_file = NULL;
    c->o.relayhost_auth = NULL;
    if (c->o.cache_per_dest == 0)
        c->o.cache_per_dest = 1;
    if (rc == 0 && o->relayhost_auth && *o->relayhost_auth)
        rc = load_auth(c, o->relayhost_auth, err, errlen);
    if (rc == 0 && (tls_client_ctx_new(false, &c->ctx_any) < 0 ||
                    tls_client_ctx_new(true, &c->ctx_verify) < 0)) {
        snprintf(err, errlen, "cannot set up TLS client contexts");
        rc = -EINVAL;
    }
    if (rc == 0 && o->ca_file && *o->ca_file &&
        SSL_CTX_load_verify_locations(c->ctx_verify, o->ca_file, NULL) != 1) {
        snprintf(err, errlen, "cannot load CA file %s", o->ca_file);
        rc = -EINVAL;
    }
    if (rc < 0) {
        if (!err[0])
            snprintf(err, errlen, "%s", strerror(-rc));
        client_free(c);
        return rc;
    }
    /* The timer first: uv_timer_init cannot fail, and it can be closed if the resolver does. */
    uv_timer_init(loop, &c->defer);
    c->defer.data = c;
    c->defer_open = true;
    resolver_options ro = {.servers = c->o.dns_servers,
                           .nservers = o->ndns_servers,
                           .timeout_ms = o->dns_timeout_ms,
                           .tries = o->dns_tries};
    rc = resolver_init(loop, &c->res, &ro);
    if (rc < 0) {
        snprintf(err, errlen, "resolver: %s", resolver_strerror(rc));
        uv_close((uv_handle_t *)&c->defer, early_closed); /* frees c */
        return rc;
    }
    c->res_open = true;
    c->res.data = c;
    c->transport.send = transport_send;
    c->transport.cancel_all = transport_cancel;
    c->transport.close = transport_close;
    c->transport.data = c;
    *out = c;
    return 0;
}

static void res_closed(resolver *r)
{
    dlv_smtp *c = r->data;
    c->res_open = false;
    close_maybe_finish(c);
}

static void defer_closed(uv_handle_t *h)
{
    dlv_smtp *c = h->data;
    void (*cb)(void *) = c->close_cb;
    void *arg = c->close_arg;
    client_free(c);
    if (cb)
        cb(arg);
}

static void close_maybe_finish(dlv_smtp *c)
{
    if (!c->closing || c->jobs || c->done_head || c->nconns > 0 || c->res_open || !c->defer_open)
        return;
    c->defer_open = false;
    uv_close((uv_handle_t *)&c->defer, defer_closed);
}

void dlv_smtp_close(dlv_smtp *c, void (*cb)(void *arg), void *arg)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_cb = cb;
    c->close_arg = arg;
    dlv_smtp_cancel_all(c);
    resolver_close(&c->res, res_closed);
    close_maybe_finish(c);
}

void smtpc_client_conn_gone(dlv_smtp *c)
{
    close_maybe_finish(c);
}

dlv_transport *dlv_smtp_transport(dlv_smtp *c)
{
    return &c->transport;
}

int dlv_smtp_transport_new(uv_loop_t *loop, const sluice_config *cfg, dlv_transport **out,
                           char *err, size_t errlen)
{
    dlv_smtp_options o;
    dlv_smtp *c;
    dlv_smtp_options_from_config(cfg, &o);
    int rc = dlv_smtp_new(loop, &o, &c, err, errlen);
    if (rc < 0)
        return rc;
    *out = dlv_smtp_transport(c);
    return 0;
}

void dlv_smtp_get_stats(const dlv_smtp *c, dlv_smtp_stats *out)
{
    *out = c->stats;
    out->idle = 0;
    for (const smtpc_conn *k = c->conns; k; k = k->next)
        if (k->cached && !k->closing)
            out->idle++;
}
