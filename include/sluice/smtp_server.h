/*
 * smtp_server.h - sluice-smtpd's listeners and the state sessions share:
 * config, maps, spool, and the connection counters behind max_connections
 * and max_connections_per_ip.
 */
#ifndef SLUICE_SMTP_SERVER_H
#define SLUICE_SMTP_SERVER_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "map.h"
#include "resolver.h"
#include "spool.h"
#include "tls.h"

typedef struct smtp_server smtp_server;
typedef struct smtp_session smtp_session;

struct smtp_server {
    uv_loop_t *loop;
    sluice_config *cfg; /* the current one; holds a reference (config_hold) */
    map *mailboxes;
    map *aliases;
    spool *spool;

    uv_tcp_t listeners[CFG_MAX_LISTEN];
    enum listen_kind listen_kind[CFG_MAX_LISTEN];
    int nlisteners;
    uv_pipe_t submit; /* run/submit.sock for `sluice sendmail` */
    bool submit_open;

    unsigned nconn;
    struct ip_count *ip_counts; /* per-IP connection counts (open hashing) */
    size_t ip_cap;
    size_t ip_fill;         /* live + tombstone slots */
    smtp_session *sessions; /* doubly linked, for shutdown */
    bool stopping;
    uv_timer_t grace; /* SIGTERM: how long transactions may finish */
    bool grace_on;
    void (*drained)(smtp_server *); /* every session gone after a stop */

    map *sender_logins; /* [smtpd] sender_login_map, may be NULL */
    bool auth_ready;    /* Cyrus SASL initialised with at least one mechanism */
    struct auth_throttle *auth_throttle;
    struct spf_checker *spf; /* NULL when spf = off */
    resolver resolver;       /* reverse lookups of clients */
    bool resolver_ok;
    SSL_CTX *tls_ctx; /* NULL when no certificate is configured */

    /* Loop-wide buffers: reads (ciphertext or plaintext) and decrypted
     * plaintext. Sessions copy out only what they must keep. */
    char *rbuf;
    char *pbuf;
};

/* Binds every listener of cfg (and the submit socket). 0 or negative errno. */
int smtp_server_start(smtp_server *srv, uv_loop_t *loop, sluice_config *cfg, spool *sp,
                      map *mailboxes, map *aliases);
/* Listens on <spool>/run/submit.sock for `sluice sendmail` (after spool_open). */
int smtp_server_listen_local(smtp_server *srv, const char *spool_root);
/* A server context for cfg's tls_cert/tls_key (*out NULL when none is set). 0 or negative. */
int smtp_server_tls_load(const sluice_config *cfg, SSL_CTX **out);
/* Puts ctx (may be NULL) in force for new handshakes; frees the server's old one. */
void smtp_server_tls_set(smtp_server *srv, SSL_CTX *ctx);
/*
 * Stops accepting; idle sessions get 421 4.3.2 and close, sessions in a
 * transaction may finish it within grace_ms (then 421 and close), and the
 * rest are closed when the grace ends. drained runs once no session is left.
 */
#define SMTP_SHUTDOWN_GRACE_MS 10000
void smtp_server_stop(smtp_server *srv, unsigned grace_ms, void (*drained)(smtp_server *));
/* Closes every session now (a second SIGTERM, or the grace is over). */
void smtp_server_hurry(smtp_server *srv);
/* Called by a session as it goes away, and when it becomes idle. */
void smtp_server_session_gone(smtp_server *srv);
bool smtp_server_draining(const smtp_server *srv);

/* Called by sessions. */
int smtp_server_conn_add(smtp_server *srv, const struct sockaddr *sa);
void smtp_server_conn_del(smtp_server *srv, const struct sockaddr *sa);

#endif
