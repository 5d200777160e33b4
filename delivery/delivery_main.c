/*
 * delivery_main.c - sluice-delivery: reads the config, drops privileges,
 * opens the spool and runs the delivery runner until SIGTERM/SIGINT (in
 * flight attempts finish, bounded by a grace period; exit 0). SIGHUP
 * re-reads sluice.conf and the maps (a broken one keeps the old ones; a
 * changed sluice.conf restarts the runner in place). See docs/delivery.md.
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

static sluice_config *cfg;      /* in force; the runner reads it */
static sluice_config *next_cfg; /* SIGHUP: checked, waiting for the runner to stop */
static spool_fs *fs;
static uv_loop_t *loop;
static dlv_runner *runner;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t restart_timer; /* runs the restart outside the runner's callback */
static bool terminating;

/*
 * What a running sluice-delivery keeps until it is restarted: its spool
 * (and the instance lock on it), its user and its log.
 */
static const char *const delivery_fixed[] = {"server.spool", "server.user", "server.log", NULL};

static void free_unstarted(void *arg)
{
    dlv_runner_free(arg);
}

/* The SMTP client and the runner over c; on failure nothing is left running. */
static int runner_up(sluice_config *c, config_diag_fn diag, void *diag_arg)
{
    /* The SMTP client (remote recipients): the runner's stop closes it. */
    dlv_transport *transport = NULL;
    char err[256] = "";
    int rc = dlv_smtp_transport_new(loop, c, &transport, err, sizeof(err));
    if (rc < 0) {
        log_err("SMTP client: %s", err[0] ? err : strerror(-rc));
        return rc;
    }
    rc = dlv_runner_new(loop, c, fs, transport, diag, diag_arg, &runner);
    if (rc < 0) {
        if (rc != -EINVAL)
            log_err("cannot start: %s", strerror(-rc));
        /* Never started: its close only frees, in a later loop turn. */
        if (transport->close)
            transport->close(transport, NULL, NULL);
        runner = NULL;
        return rc;
    }
    if ((rc = dlv_runner_start(runner)) < 0) {
        log_err("cannot start: %s", strerror(-rc));
        /* Never started: the stop closes its SMTP client, then it is freed
         * (a reload that falls back to the old config must not leak it). */
        dlv_runner *half = runner;
        runner = NULL;
        dlv_runner_stop(half, 0, free_unstarted, half);
        return rc;
    }
    return 0;
}

static void close_signals(void)
{
    uv_signal_stop(&sig_term);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_hup);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&restart_timer, NULL);
    /* Closing the handles restored the default actions: a SIGHUP from a
     * `systemctl reload` during the stop must not kill us half-way. */
    signal(SIGHUP, SIG_IGN);
}

static void on_stopped(void *arg)
{
    (void)arg;
    log_info("all attempts finished");
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_info("%s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    terminating = true;
    if (next_cfg)
        return; /* a reload is stopping the runner: on_restart ends it all */
    close_signals();
    dlv_runner_stop(runner, STOP_GRACE_S, on_stopped, NULL);
}

/* The old runner has stopped: start one on the new config (or the old one). */
static void on_restart(uv_timer_t *t)
{
    (void)t;
    dlv_runner_free(runner);
    runner = NULL;
    sluice_config *c = next_cfg;
    next_cfg = NULL;
    if (terminating) {
        config_release(c);
        close_signals();
        return;
    }
    if (runner_up(c, daemon_log_diag, NULL) == 0) {
        config_release(cfg);
        cfg = c;
        log_info("reload: delivery runner restarted with the new configuration");
        return;
    }
    log_err("reload: the runner did not start with the new configuration; going on with the "
            "previous one");
    config_release(c);
    if (runner_up(cfg, daemon_log_diag, NULL) < 0) {
        log_err("cannot restart the delivery runner; exiting");
        exit(EX_SOFTWARE);
    }
}

static void on_reload_stopped(void *arg)
{
    (void)arg;
    uv_timer_start(&restart_timer, on_restart, 0, 0);
}

/*
 * SIGHUP. sluice.conf and the maps are read and checked first; a problem
 * keeps everything as it was. If only the maps changed they are swapped in
 * place. If sluice.conf changed, the runner stops (attempts in flight
 * finish) and starts again on the new config: the SMTP client, the
 * concurrency limits and the schedule all follow it.
 */
static void on_hup(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    if (terminating || next_cfg) {
        log_info("SIGHUP: ignored, a %s is under way", terminating ? "shutdown" : "reload");
        return;
    }
    log_info("SIGHUP: reloading %s and the maps", cfg->path);
    sluice_config *c;
    if (daemon_reload_config("sluice-delivery", cfg, delivery_fixed, &c) != 0)
        return;
    if (config_same(c, cfg)) {
        config_release(c);
        log_info("reload: %s unchanged; reloading the maps", cfg->path);
        dlv_runner_reload(runner);
        return;
    }
    log_info("reload: %s changed: restarting the delivery runner once attempts in flight finish",
             cfg->path);
    next_cfg = c;
    dlv_runner_stop(runner, STOP_GRACE_S, on_reload_stopped, NULL);
}

/*
 * Maildir writes and spool syncs run on libuv's pool. Its threads only
 * overlap disk waits (the SMTP client runs on the loop), and each idle one
 * costs a wake-up per job: with 25 threads (the old concurrency / 4) the
 * runner switched 3.1 times a message at 50 sessions, with 4 0.86 times,
 * for 8 % less of its CPU and deferrals as fast (docs/performance.md). So 4,
 * plus one per 25 deliveries past 100 for configurations that raise
 * concurrency. An explicit UV_THREADPOOL_SIZE wins.
 */
static void size_thread_pool(unsigned concurrency)
{
    if (getenv("UV_THREADPOOL_SIZE"))
        return;
    unsigned n = concurrency <= 100 ? 4 : 4 + (concurrency - 100) / 25;
    n = n > 32 ? 32 : n;
    char buf[16];
    snprintf(buf, sizeof(buf), "%u", n);
    if (setenv("UV_THREADPOOL_SIZE", buf, 0) != 0)
        log_warn("cannot size the thread pool: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    int status = daemon_config("sluice-delivery", argc, argv, CFG_CHECK_SKIP_TLS, &cfg);
    if (status >= 0)
        return status;

    /* Nothing here needs root: leave it before touching the spool, so
     * every file we make (envelopes, DSNs, Maildirs) belongs to the user. */
    if (cfg->user && cfg->user[0] && geteuid() == 0) {
        if (privdrop_to(cfg->user) < 0) {
            config_release(cfg);
            return EX_OSERR;
        }
    } else if (geteuid() == 0) {
        log_warn("running as root: set [server] user to drop privileges");
    }

    signal(SIGPIPE, SIG_IGN);
    daemon_raise_nofile();
    size_thread_pool(cfg->concurrency);

    int rc = spool_fs_open(cfg->spool, true, &fs);
    if (rc < 0) {
        log_err("spool %s: %s", cfg->spool, strerror(-rc));
        config_release(cfg);
        return EX_CANTCREAT;
    }
    int instance_fd = -1;
    rc = dlv_runner_lock_instance(cfg->spool, &instance_fd);
    if (rc < 0) {
        log_err("spool %s: %s", cfg->spool,
                rc == -EBUSY ? "another sluice-delivery runs on this spool" : strerror(-rc));
        spool_fs_close(fs);
        config_release(cfg);
        return EX_TEMPFAIL;
    }

    loop = uv_default_loop();
    /* Before the socket appears: whoever sees it may signal us. */
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_hup);
    uv_timer_init(loop, &restart_timer);
    uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);

    rc = runner_up(cfg, daemon_print_diag, (void *)"sluice-delivery");
    if (rc < 0) {
        close_signals();
        uv_run(loop, UV_RUN_DEFAULT); /* close callbacks */
        close(instance_fd);
        spool_fs_close(fs);
        config_release(cfg);
        return rc == -EINVAL ? EX_CONFIG : runner ? EX_CANTCREAT : EX_OSERR;
    }

    log_info("started: hostname=%s spool=%s concurrency=%u", cfg->hostname, cfg->spool,
             cfg->concurrency);
    uv_run(loop, UV_RUN_DEFAULT);
    log_info("stopped");

    dlv_runner_free(runner);
    close(instance_fd);
    spool_fs_close(fs);
    uv_loop_close(loop);
    config_release(cfg);
    return 0;
}
