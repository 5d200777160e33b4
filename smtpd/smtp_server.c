/*
 * smtp_server.c - listeners and connection limits (see smtp_server.h).
 *
 * Per-IP counts live in an open-addressing table keyed by the address
 * bytes (IPv4-mapped IPv6 counted as IPv4), grown by doubling; a slot whose
 * count drops to zero becomes a tombstone so probe chains stay intact.
 */
#include "sluice/smtp_server.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/log.h"
#include "sluice/smtp_session.h"

struct ip_count {
    unsigned char key[16];
    unsigned char used; /* 0 empty, 1 live, 2 tombstone */
    unsigned count;
};

static void ip_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static size_t ip_hash(const unsigned char key[16])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h;
}

static struct ip_count *ip_find(smtp_server *srv, const unsigned char key[16], bool insert)
{
    if (srv->ip_cap == 0)
        return NULL;
    size_t mask = srv->ip_cap - 1, i = ip_hash(key) & mask;
    struct ip_count *tomb = NULL;
    for (size_t n = 0; n < srv->ip_cap; n++, i = (i + 1) & mask) {
        struct ip_count *e = &srv->ip_counts[i];
        if (e->used == 0)
            return insert ? (tomb ? tomb : e) : NULL;
        if (e->used == 2) {
            if (!tomb)
                tomb = e;
            continue;
        }
        if (memcmp(e->key, key, 16) == 0)
            return e;
    }
    return insert ? tomb : NULL;
}

/* Rebuilds the table (dropping tombstones), sized for twice the live count. */
static int ip_rehash(smtp_server *srv)
{
    size_t ncap = 256;
    while (ncap < 4 * ((size_t)srv->nconn + 1))
        ncap *= 2;
    struct ip_count *old = srv->ip_counts, *nt = calloc(ncap, sizeof(*nt));
    size_t ocap = srv->ip_cap;
    if (!nt)
        return -ENOMEM;
    srv->ip_counts = nt;
    srv->ip_cap = ncap;
    srv->ip_fill = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].used == 1) {
            struct ip_count *e = ip_find(srv, old[i].key, true);
            *e = old[i];
            srv->ip_fill++;
        }
    }
    free(old);
    return 0;
}

int smtp_server_conn_add(smtp_server *srv, const struct sockaddr *sa)
{
    const sluice_config *cfg = srv->cfg;
    if (cfg->max_connections && srv->nconn >= cfg->max_connections)
        return -EMFILE;
    unsigned char key[16];
    ip_key(sa, key);
    /* keep used slots (tombstones included) under 3/4 so probes end quickly */
    if (srv->ip_cap == 0 || (srv->ip_fill + 1) * 4 > srv->ip_cap * 3) {
        if (ip_rehash(srv) < 0)
            return -ENOMEM;
    }
    struct ip_count *e = ip_find(srv, key, true);
    if (!e)
        return -ENOMEM;
    if (e->used != 1) {
        if (e->used == 0)
            srv->ip_fill++;
        memcpy(e->key, key, 16);
        e->used = 1;
        e->count = 0;
    }
    if (cfg->max_connections_per_ip && e->count >= cfg->max_connections_per_ip)
        return -EUSERS;
    e->count++;
    srv->nconn++;
    return 0;
}

void smtp_server_conn_del(smtp_server *srv, const struct sockaddr *sa)
{
    unsigned char key[16];
    ip_key(sa, key);
    struct ip_count *e = ip_find(srv, key, false);
    if (e && e->count > 0 && --e->count == 0)
        e->used = 2;
    if (srv->nconn > 0)
        srv->nconn--;
}

static void on_connection(uv_stream_t *listener, int status)
{
    smtp_server *srv = listener->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    int idx = (int)((uv_tcp_t *)listener - srv->listeners);
    smtp_session_accept(srv, listener, srv->listen_kind[idx]);
}

static void on_local_connection(uv_stream_t *listener, int status)
{
    smtp_server *srv = listener->data;
    if (status < 0) {
        log_warn("accept on the submit socket: %s", uv_strerror(status));
        return;
    }
    smtp_session_accept(srv, listener, LISTEN_LOCAL);
}

int smtp_server_listen_local(smtp_server *srv, const char *spool_root)
{
    char path[4096];
    int rc = spool_path(spool_root, SPOOL_SUBMIT_SOCK, path, sizeof(path));
    if (rc < 0)
        return rc;
    if (unlink(path) < 0 && errno != ENOENT) {
        log_err("submit socket %s: %s", path, strerror(errno));
        return -errno;
    }
    uv_pipe_init(srv->loop, &srv->submit, 0);
    srv->submit.data = srv;
    srv->submit_open = true;
    rc = uv_pipe_bind(&srv->submit, path);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->submit, 128, on_local_connection);
    /*
     * Every local user may submit (cron jobs, web apps: `sendmail` as on any
     * Unix): the socket is 0666 and the folders on the way are search-only
     * (0711), like Postfix's public/. Who submitted is the kernel's word
     * (SO_PEERCRED), and the queue folders stay 0700.
     */
    if (rc == 0)
        rc = uv_pipe_chmod(&srv->submit, UV_READABLE | UV_WRITABLE);
    char run[4096];
    if (rc == 0 && spool_path(spool_root, "run", run, sizeof(run)) == 0 &&
        (chmod(spool_root, 0711) < 0 || chmod(run, 0711) < 0)) {
        log_warn("submit socket: cannot open the spool folders to local users: %s",
                 strerror(errno));
    }
    if (rc < 0) {
        log_err("submit socket %s: %s", path, uv_strerror(rc));
        return rc;
    }
    log_info("listening on %s (local submission)", path);
    return 0;
}

static const char *kind_name(enum listen_kind k)
{
    return k == LISTEN_MX ? "mx" : k == LISTEN_SUBMISSION ? "submission" : "smtps";
}

int smtp_server_start(smtp_server *srv, uv_loop_t *loop, sluice_config *cfg, spool *sp,
                      map *mailboxes, map *aliases)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = cfg;
    srv->spool = sp;
    srv->mailboxes = mailboxes;
    srv->aliases = aliases;

    /* Short timeouts: a client name is a nicety, not worth a long wait. */
    resolver_options ropts = {.servers = (const char *const *)cfg->dns_servers,
                              .nservers = (size_t)cfg->ndns_servers,
                              .timeout_ms = 2000,
                              .tries = 2};
    if (cfg->ndns_servers == 0)
        ropts.servers = NULL;
    int rrc = resolver_init(loop, &srv->resolver, &ropts);
    if (rrc < 0)
        log_warn("DNS resolver: %s; client names will be unknown", resolver_strerror(rrc));
    else
        srv->resolver_ok = true;

    SSL_CTX *ctx;
    int trc = smtp_server_tls_load(cfg, &ctx);
    if (trc < 0)
        return trc;
    smtp_server_tls_set(srv, ctx);
    for (int i = 0; i < cfg->nlisten; i++) {
        const cfg_listen *l = &cfg->listen[i];
        struct sockaddr_storage ss;
        int rc = strchr(l->host, ':') ? uv_ip6_addr(l->host, l->port, (struct sockaddr_in6 *)&ss)
                                      : uv_ip4_addr(l->host, l->port, (struct sockaddr_in *)&ss);
        if (rc < 0) {
            log_err("listen %s:%d: bad address: %s", l->host, l->port, uv_strerror(rc));
            return rc;
        }
        if (l->kind == LISTEN_SMTPS && !srv->tls_ctx) {
            /* Implicit TLS without a certificate: never serve it in plaintext. */
            log_err("listen [%s]:%d smtps: needs tls_cert and tls_key", l->host, l->port);
            return -EINVAL;
        }
        uv_tcp_t *t = &srv->listeners[srv->nlisteners];
        uv_tcp_init(loop, t);
        t->data = srv;
        srv->listen_kind[srv->nlisteners] = l->kind;
        srv->nlisteners++;
        rc = uv_tcp_bind(t, (struct sockaddr *)&ss, ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)t, 511, on_connection);
        if (rc < 0) {
            log_err("listen [%s]:%d: %s", l->host, l->port, uv_strerror(rc));
            return rc;
        }
        log_info("listening on [%s]:%d (%s)", l->host, l->port, kind_name(l->kind));
    }
    return 0;
}

int smtp_server_tls_load(const sluice_config *cfg, SSL_CTX **out)
{
    *out = NULL;
    if (!cfg->tls_cert || !cfg->tls_cert[0] || !cfg->tls_key || !cfg->tls_key[0])
        return 0;
    char err[512];
    int rc = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, out, err, sizeof(err));
    if (rc < 0)
        log_err("TLS: %s", err);
    return rc;
}

void smtp_server_tls_set(smtp_server *srv, SSL_CTX *ctx)
{
    /* Sessions hold their own reference through their SSL objects. */
    if (srv->tls_ctx)
        SSL_CTX_free(srv->tls_ctx);
    srv->tls_ctx = ctx;
    if (ctx)
        log_info("TLS: certificate %s loaded", srv->cfg->tls_cert);
}

bool smtp_server_draining(const smtp_server *srv)
{
    return srv->stopping;
}

static void grace_closed(uv_handle_t *h)
{
    smtp_server *srv = h->data;
    srv->grace_on = false;
    if (srv->drained) {
        void (*cb)(smtp_server *) = srv->drained;
        srv->drained = NULL;
        cb(srv);
    }
}

void smtp_server_session_gone(smtp_server *srv)
{
    if (srv->stopping && !srv->sessions && srv->grace_on &&
        !uv_is_closing((uv_handle_t *)&srv->grace))
        uv_close((uv_handle_t *)&srv->grace, grace_closed);
}

void smtp_server_hurry(smtp_server *srv)
{
    while (srv->sessions)
        smtp_session_close(srv->sessions);
    smtp_server_session_gone(srv);
}

static void on_grace_end(uv_timer_t *t)
{
    smtp_server *srv = t->data;
    log_warn("shutdown: grace period over; closing %s",
             srv->sessions ? "the remaining sessions" : "");
    smtp_server_hurry(srv);
}

void smtp_server_stop(smtp_server *srv, unsigned grace_ms, void (*drained)(smtp_server *))
{
    srv->stopping = true;
    srv->drained = drained;
    uv_timer_init(srv->loop, &srv->grace);
    srv->grace.data = srv;
    srv->grace_on = true;
    uv_timer_start(&srv->grace, on_grace_end, grace_ms, 0);
    if (srv->submit_open && !uv_is_closing((uv_handle_t *)&srv->submit))
        uv_close((uv_handle_t *)&srv->submit, NULL);
    for (int i = 0; i < srv->nlisteners; i++)
        if (!uv_is_closing((uv_handle_t *)&srv->listeners[i]))
            uv_close((uv_handle_t *)&srv->listeners[i], NULL);
    /* Idle sessions go now; a transaction in flight may finish (the session
     * says 421 as soon as it is idle again: smtp_tx_reset). */
    for (smtp_session *s = srv->sessions, *next; s; s = next) {
        next = s->next;
        smtp_session_drain(s);
    }
    smtp_server_session_gone(srv);
    if (srv->resolver_ok) {
        srv->resolver_ok = false;
        resolver_close(&srv->resolver, NULL);
    }
}
