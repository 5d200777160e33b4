/*
 * daemon.h - what both daemons do first: parse -c FILE / --help, load and
 * check the configuration (each problem printed as "PROG: FILE:LINE: ..."),
 * and start logging (stderr, or syslog per [server] log).
 */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include "config.h"

/*
 * check_skip: checks of config_check_files_but to leave out (sluice-delivery,
 * which never uses the certificate and runs as [server] user under systemd,
 * skips the TLS key a root-only file would fail).
 * Returns -1 when the daemon should go on, with *cfg a malloc'd config
 * holding one reference (config_release) and logging set up; else the exit
 * status: 0 after --help, EX_USAGE, EX_OSERR or EX_CONFIG.
 */
int daemon_config(const char *prog, int argc, char **argv, unsigned check_skip,
                  sluice_config **cfg);

/*
 * SIGHUP: loads running->path again and checks it as at start, all but the
 * TLS certificate and key (the caller's business: see smtpd_main.c). Each problem
 * is logged as "reload: FILE:LINE: ..."; keys in fixed (see
 * config_keep_fixed) keep their running value, with a warning. Returns 0 with
 * *out a new config holding one reference, or the number of problems (then
 * the running config should stay, and *out is NULL).
 */
int daemon_reload_config(const char *prog, const sluice_config *running, const char *const *fixed,
                         sluice_config **out);

/* A config_diag_fn printing "PROG: DIAG" to stderr; arg is the program name. */
void daemon_print_diag(void *prog, const char *diag);
/* A config_diag_fn logging a warning; arg is a prefix for it, or NULL. */
void daemon_log_diag(void *prefix, const char *diag);
#define DAEMON_RELOAD "reload: " /* the prefix of a SIGHUP's diagnostics */

/*
 * Raises the soft open-file limit to the hard one: sessions (smtpd) and
 * messages waiting for a busy destination (delivery) each hold descriptors.
 */
void daemon_raise_nofile(void);

#endif
