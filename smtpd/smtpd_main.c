/*
 * smtpd_main.c - sluice-smtpd: reads the config, binds the listeners,
 * drops privileges, opens the spool, and serves until SIGTERM/SIGINT.
 * SIGHUP re-reads sluice.conf, the maps and the certificate; any problem in
 * them keeps everything as it was.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>
#include <uv.h>

#include "sluice/config.h"
#include "sluice/daemon.h"
#include "sluice/log.h"
#include "sluice/map.h"
#include "sluice/privdrop.h"
#include "sluice/smtp_auth.h"
#include "sluice/smtp_auth_dovecot.h"
#include "sluice/smtp_auth_throttle.h"
#include "sluice/smtp_server.h"
#include "sluice/spool.h"
#include "sluice/spf_check.h"

static smtp_server server;
static spool *the_spool;
static uv_signal_t sig_term, sig_int, sig_hup;

/* Every session is gone: no commit can start any more; close the spool. */
static void on_drained(smtp_server *srv)
{
    (void)srv;
    log_info("shutdown: all sessions closed");
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_hup);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    /* Closing the handles restored the default actions; the shutdown is
     * under way, so a further SIGTERM must not kill it half-way. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    spool_close(the_spool);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (server.stopping) {
        /* a second signal: no more waiting for transactions in flight */
        log_info("%s again: closing every session now", name);
        smtp_server_hurry(&server);
        return;
    }
    log_info("%s: shutting down (transactions in flight may finish)", name);
    smtp_server_stop(&server, SMTP_SHUTDOWN_GRACE_MS, on_drained);
    (void)h;
}

/*
 * What a running sluice-smtpd cannot change: its sockets, its spool and
 * user, how it logs, and what was set up once at start (the SASL library,
 * the AUTH throttle table, the DNS channels).
 */
static const char *const smtpd_fixed[] = {
    "server.spool",
    "server.user",
    "server.log",
    "smtpd.listen",
    "smtpd.auth_mechanisms",
    "smtpd.sasl_db",
    "smtpd.auth_backend",
    "smtpd.dovecot_auth_socket",
    "smtpd.auth_fail_limit",
    "smtpd.auth_fail_window",
    "delivery.dns_servers",
    NULL,
};

static int load_map(const char *path, map **out)
{
    *out = NULL;
    if (!path || !path[0])
        return 0;
    return map_load(path, out, daemon_log_diag, (void *)DAEMON_RELOAD) != 0 ? -1 : 0;
}

static bool same_tls_files(const sluice_config *a, const sluice_config *b)
{
    return config_key_same(a, b, "smtpd.tls_cert") && config_key_same(a, b, "smtpd.tls_key");
}

/*
 * SIGHUP: sluice.conf, the maps and the certificate are loaded and checked
 * as a whole first; any problem keeps everything as it was, except that a
 * certificate at unchanged paths that cannot be read again (a root-only key
 * after the privilege drop) keeps the running one and lets the rest apply.
 * Open sessions finish with the config they began with; new ones get the
 * new one.
 */
static void on_hup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    if (server.stopping)
        return;
    log_info("SIGHUP: reloading %s, maps and certificate", server.cfg->path);
    sluice_config *cfg;
    if (daemon_reload_config("sluice-smtpd", server.cfg, smtpd_fixed, &cfg) != 0)
        return;
    bool any_mx = false;
    for (int i = 0; i < server.nlisteners; i++)
        any_mx |= server.listen_kind[i] == LISTEN_MX;
    if (!server.spf && any_mx && cfg->spf != SPF_OFF) {
        /* the checker's threads and DNS channels are made at start */
        log_warn("reload: spf = %s needs a restart of sluice-smtpd; SPF stays off",
                 cfg->spf == SPF_TAG ? "tag" : "reject");
        cfg->spf = SPF_OFF;
    }
    map *mailboxes = NULL, *aliases = NULL, *sender_logins = NULL;
    SSL_CTX *ctx = NULL;
    bool keep_tls = false;
    int rc = load_map(cfg->mailboxes, &mailboxes);
    if (rc == 0)
        rc = load_map(cfg->aliases, &aliases);
    if (rc == 0)
        rc = load_map(cfg->sender_login_map, &sender_logins);
    if (rc == 0 && smtp_server_tls_load(cfg, &ctx) < 0) {
        if (same_tls_files(cfg, server.cfg) && server.tls_ctx) {
            /* The same files, now unreadable: typically a root-only key
             * after the privilege drop. The running certificate stays (a
             * restart reads the new one); the rest of the reload goes on. */
            log_warn("reload: certificate %s not read again; the running one stays until a "
                     "restart",
                     cfg->tls_cert);
            keep_tls = true;
        } else {
            rc = -1; /* new files that do not load: refuse it all */
        }
    }
    if (rc < 0) {
        log_warn("reload: keeping the running configuration, maps and certificate");
        map_free(mailboxes);
        map_free(aliases);
        map_free(sender_logins);
        config_release(cfg);
        return;
    }
    map_free(server.mailboxes);
    map_free(server.aliases);
    map_free(server.sender_logins);
    server.mailboxes = mailboxes;
    server.aliases = aliases;
    server.sender_logins = sender_logins;
    config_release(server.cfg);
    server.cfg = cfg;
    if (!keep_tls)
        smtp_server_tls_set(&server, ctx);
    log_info("reload: %s in force for new sessions; %u open session%s keep%s the previous one",
             cfg->path, server.nconn, server.nconn == 1 ? "" : "s", server.nconn == 1 ? "s" : "");
}

/* As root with a user configured, the spool top must belong to that user. */
static int prepare_spool_owner(const sluice_config *cfg)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    int rc = privdrop_lookup(cfg->user, &uid, &gid);
    if (rc < 0) {
        log_err("[server] user %s: %s", cfg->user, rc == -ENOENT ? "no such user" : strerror(-rc));
        return rc;
    }
    if (mkdir(cfg->spool, 0700) < 0 && errno != EEXIST) {
        log_err("spool %s: %s", cfg->spool, strerror(errno));
        return -errno;
    }
    if (chown(cfg->spool, uid, gid) < 0) {
        log_err("spool %s: chown: %s", cfg->spool, strerror(errno));
        return -errno;
    }
    return 0;
}

int main(int argc, char **argv)
{
    sluice_config *cfg; /* becomes server.cfg's reference; sessions add theirs */
    int status = daemon_config("sluice-smtpd", argc, argv, 0, &cfg);
    if (status >= 0)
        return status;

    map *mailboxes = NULL, *aliases = NULL;
    if (map_load(cfg->mailboxes, &mailboxes, daemon_print_diag, (void *)"sluice-smtpd") != 0 ||
        map_load(cfg->aliases, &aliases, daemon_print_diag, (void *)"sluice-smtpd") != 0) {
        config_release(cfg);
        return EX_CONFIG;
    }

    map *sender_logins = NULL;
    if (cfg->sender_login_map && cfg->sender_login_map[0] &&
        map_load(cfg->sender_login_map, &sender_logins, daemon_print_diag,
                 (void *)"sluice-smtpd") != 0) {
        config_release(cfg);
        return EX_CONFIG;
    }

    signal(SIGPIPE, SIG_IGN);
    daemon_raise_nofile();
    uv_loop_t *loop = uv_default_loop();

    bool drop = cfg->user && cfg->user[0] && geteuid() == 0;
    if (drop && prepare_spool_owner(cfg) < 0)
        return EX_CONFIG;
    /* Signals first: a SIGTERM right after start must stop us cleanly. */
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);

    if (smtp_server_start(&server, loop, cfg, NULL, mailboxes, aliases) < 0)
        return EX_OSERR;
    if (drop && privdrop_to(cfg->user) < 0)
        return EX_OSERR;
    if (!drop && geteuid() == 0)
        log_warn("running as root: set [server] user to drop privileges");

    int rc = spool_open(loop, cfg->spool, &the_spool);
    if (rc < 0) {
        log_err("spool %s: %s", cfg->spool, uv_strerror(rc));
        return EX_CANTCREAT;
    }
    server.spool = the_spool;
    server.sender_logins = sender_logins;
    if (auth_throttle_new(cfg->auth_fail_limit, cfg->auth_fail_window, AUTH_THROTTLE_ENTRIES,
                          &server.auth_throttle) < 0) {
        log_err("out of memory");
        return EX_OSERR;
    }
    bool sasl_started = false, dovecot_started = false;
    if (cfg->auth_backend == AUTH_BACKEND_DOVECOT) {
        if (cfg->auth_mechanisms && cfg->auth_mechanisms[0] &&
            smtp_auth_dovecot_init(cfg->dovecot_auth_socket, cfg->auth_mechanisms) < 0)
            log_warn("AUTH disabled: dovecot_auth_socket %s is not usable",
                     cfg->dovecot_auth_socket);
        else if ((dovecot_started = true), smtp_auth_dovecot_mechs()[0])
            server.auth_ready = true;
    } else if (cfg->sasl_db && cfg->sasl_db[0] && cfg->auth_mechanisms && cfg->auth_mechanisms[0]) {
        if (smtp_auth_init(cfg) < 0)
            log_warn("AUTH disabled: Cyrus SASL did not start");
        else if ((sasl_started = true), smtp_auth_mechs()[0])
            server.auth_ready = true;
        else
            log_warn("AUTH disabled: none of auth_mechanisms (%s) is available",
                     cfg->auth_mechanisms);
    }
    if (smtp_server_listen_local(&server, cfg->spool) < 0)
        return EX_CANTCREAT;

    bool any_mx = false;
    for (int i = 0; i < cfg->nlisten; i++)
        any_mx |= cfg->listen[i].kind == LISTEN_MX;
    if (cfg->spf != SPF_OFF && any_mx && spf_checker_new(loop, cfg, &server.spf) < 0) {
        log_err("SPF checker did not start");
        return EX_OSERR;
    }

    log_info("started: hostname=%s spool=%s", cfg->hostname, cfg->spool);
    uv_run(loop, UV_RUN_DEFAULT);
    log_info("stopped");
    if (server.spf) {
        spf_checker_free(server.spf);
        uv_run(loop, UV_RUN_NOWAIT); /* its handles' close callbacks */
    }
    if (sasl_started)
        smtp_auth_done();
    if (dovecot_started)
        smtp_auth_dovecot_done();
    auth_throttle_free(server.auth_throttle);
    map_free(server.sender_logins);

    if (server.tls_ctx)
        SSL_CTX_free(server.tls_ctx);
    free(server.rbuf);
    free(server.pbuf);
    free(server.ip_counts);
    map_free(server.mailboxes);
    map_free(server.aliases);
    uv_loop_close(loop);
    config_release(server.cfg); /* the current one: a SIGHUP may have replaced cfg */
    return 0;
}
