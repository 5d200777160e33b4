/*
 * daemon.h - what both daemons do first: parse -c FILE / --help, load and
 * check the configuration (each problem printed as "PROG: FILE:LINE: ..."),
 * and start logging (stderr, or syslog per [server] log).
 */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include "config.h"

/*
 * Returns -1 when the daemon should go on (cfg loaded, logging set up),
 * else the exit status: 0 after --help, EX_USAGE, or EX_CONFIG.
 */
int daemon_config(const char *prog, int argc, char **argv, sluice_config *cfg);

/* A config_diag_fn printing "PROG: DIAG" to stderr; arg is the program name. */
void daemon_print_diag(void *prog, const char *diag);

/*
 * Raises the soft open-file limit to the hard one: sessions (smtpd) and
 * messages waiting for a busy destination (delivery) each hold descriptors.
 */
void daemon_raise_nofile(void);

#endif
