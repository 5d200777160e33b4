/*
 * delivery_main.c - sluice-delivery: reads the config, drops privileges,
 * opens the spool and runs the delivery runner until SIGTERM/SIGINT (in
 * flight attempts finish, bounded by a grace period; exit 0). SIGHUP
 * reloads the maps (a broken one keeps the old). See docs/delivery.md.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <uv.h>

#include "sluice/config.h"
#include "sluice/daemon.h"
#include "sluice/dlv_runner.h"
#include "sluice/dlv_smtp.h"
#include "sluice/log.h"
#include "sluice/privdrop.h"
#include "sluice/spool.h"

#define STOP_GRACE_S 30

static dlv_runner *runner;
static uv_signal_t sig_term, sig_int, sig_hup;

static void on_stopped(void *arg)
{
    (void)arg;
    log_info("all attempts finished");
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_info("%s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_hup);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    dlv_runner_stop(runner, STOP_GRACE_S, on_stopped, NULL);
}

static void on_hup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    log_info("SIGHUP: reloading maps");
    dlv_runner_reload(runner);
}

/*
 * Maildir writes and spool syncs run on libuv's pool (4 threads by
 * default): more threads let more fsyncs wait in parallel. An explicit
 * UV_THREADPOOL_SIZE wins.
 */
static void size_thread_pool(unsigned concurrency)
{
    if (getenv("UV_THREADPOOL_SIZE"))
        return;
    unsigned n = concurrency / 4;
    n = n < 4 ? 4 : n > 32 ? 32 : n;
    char buf[16];
    snprintf(buf, sizeof(buf), "%u", n);
    if (setenv("UV_THREADPOOL_SIZE", buf, 0) != 0)
        log_warn("cannot size the thread pool: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    static sluice_config cfg;
    int status = daemon_config("sluice-delivery", argc, argv, &cfg);
    if (status >= 0)
        return status;

    /* Nothing here needs root: leave it before touching the spool, so
     * every file we make (envelopes, DSNs, Maildirs) belongs to the user. */
    if (cfg.user && cfg.user[0] && geteuid() == 0) {
        if (privdrop_to(cfg.user) < 0) {
            config_free(&cfg);
            return EX_OSERR;
        }
    } else if (geteuid() == 0) {
        log_warn("running as root: set [server] user to drop privileges");
    }

    signal(SIGPIPE, SIG_IGN);
    daemon_raise_nofile();
    size_thread_pool(cfg.concurrency);

    spool_fs *fs = NULL;
    int rc = spool_fs_open(cfg.spool, true, &fs);
    if (rc < 0) {
        log_err("spool %s: %s", cfg.spool, strerror(-rc));
        config_free(&cfg);
        return EX_CANTCREAT;
    }
    int instance_fd = -1;
    rc = dlv_runner_lock_instance(cfg.spool, &instance_fd);
    if (rc < 0) {
        log_err("spool %s: %s", cfg.spool,
                rc == -EBUSY ? "another sluice-delivery runs on this spool" : strerror(-rc));
        spool_fs_close(fs);
        config_free(&cfg);
        return EX_TEMPFAIL;
    }

    uv_loop_t *loop = uv_default_loop();
    /* The SMTP client (remote recipients): the runner's stop closes it. */
    dlv_transport *transport = NULL;
    char err[256] = "";
    rc = dlv_smtp_transport_new(loop, &cfg, &transport, err, sizeof(err));
    if (rc < 0) {
        log_err("SMTP client: %s", err[0] ? err : strerror(-rc));
        close(instance_fd);
        spool_fs_close(fs);
        config_free(&cfg);
        return rc == -EINVAL ? EX_CONFIG : EX_OSERR;
    }
    rc = dlv_runner_new(loop, &cfg, fs, transport, daemon_print_diag, (void *)"sluice-delivery",
                        &runner);
    if (rc < 0) {
        if (rc != -EINVAL)
            log_err("cannot start: %s", strerror(-rc));
        /* Never started: its close only frees; run the loop for its callback. */
        if (transport->close) {
            transport->close(transport, NULL, NULL);
            uv_run(loop, UV_RUN_DEFAULT);
        }
        close(instance_fd);
        spool_fs_close(fs);
        config_free(&cfg);
        return rc == -EINVAL ? EX_CONFIG : EX_OSERR;
    }
    /* Before the socket appears: whoever sees it may signal us. */
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);

    if ((rc = dlv_runner_start(runner)) < 0) {
        log_err("cannot start: %s", strerror(-rc));
        return EX_CANTCREAT;
    }

    log_info("started: hostname=%s spool=%s concurrency=%u", cfg.hostname, cfg.spool,
             cfg.concurrency);
    uv_run(loop, UV_RUN_DEFAULT);
    log_info("stopped");

    dlv_runner_free(runner);
    close(instance_fd);
    spool_fs_close(fs);
    uv_loop_close(loop);
    config_free(&cfg);
    return 0;
}
