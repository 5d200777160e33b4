/*
 * daemon.c - the start shared by sluice-smtpd and sluice-delivery
 * (see include/sluice/daemon.h).
 */
#include "sluice/daemon.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <errno.h>

#include "sluice/log.h"

void daemon_print_diag(void *prog, const char *diag)
{
    fprintf(stderr, "%s: %s\n", (const char *)prog, diag);
}

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [-c FILE]\n"
            "  -c FILE  configuration (default: $SLUICE_CONFIG, else /etc/sluice/sluice.conf)\n"
            "Runs in the foreground and logs to stderr (or syslog, per [server] log).\n",
            prog);
}

void daemon_log_diag(void *prefix, const char *diag)
{
    log_warn("%s%s", prefix ? (const char *)prefix : "", diag);
}

int daemon_config(const char *prog, int argc, char **argv, unsigned check_skip, sluice_config **out)
{
    *out = NULL;
    const char *cfg_arg = NULL;
    int opt;
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            cfg_arg = optarg;
            break;
        case 'h':
            usage(stdout, prog);
            return 0;
        default:
            usage(stderr, prog);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr, prog);
        return EX_USAGE;
    }

    log_init(prog, 0);
    sluice_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EX_OSERR;
    }
    const char *path = config_default_path(cfg_arg);
    void *arg = (void *)prog;
    int problems = config_load(path, cfg, daemon_print_diag, arg);
    if (problems == 0)
        problems = config_check_files_but(cfg, check_skip, daemon_print_diag, arg);
    if (problems != 0) {
        fprintf(stderr, "%s: %s: configuration has errors; not starting\n", prog, path);
        config_free(cfg);
        free(cfg);
        return EX_CONFIG;
    }
    if (cfg->log_syslog)
        log_init(prog, 1);
    cfg->refs = 1;
    *out = cfg;
    return -1;
}

int daemon_reload_config(const char *prog, const sluice_config *running, const char *const *fixed,
                         sluice_config **out)
{
    *out = NULL;
    sluice_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        log_err("reload: out of memory; keeping the running configuration");
        return 1;
    }
    int problems = config_load(running->path, cfg, daemon_log_diag, (void *)DAEMON_RELOAD);
    /* Not the certificate: after the privilege drop a root-only key cannot
     * be read, and that must not block a map change (smtpd_main.c). */
    if (problems == 0)
        problems =
            config_check_files_but(cfg, CFG_CHECK_SKIP_TLS, daemon_log_diag, (void *)DAEMON_RELOAD);
    if (problems == 0 &&
        config_keep_fixed(cfg, running, fixed, prog, daemon_log_diag, (void *)DAEMON_RELOAD) < 0) {
        log_err("reload: out of memory");
        problems = 1;
    }
    if (problems != 0) {
        if (problems < 0)
            problems = 1; /* the file could not be read at all */
        log_warn("reload: %s has %d problem%s; keeping the running configuration", running->path,
                 problems, problems == 1 ? "" : "s");
        config_free(cfg);
        free(cfg);
        return problems;
    }
    cfg->refs = 1;
    *out = cfg;
    return 0;
}

void daemon_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("cannot raise the open file limit: %s", strerror(errno));
    }
}
