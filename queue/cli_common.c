/*
 * cli_common.c - what every `sluice` subcommand shares: messages, the
 * config, leaving root, opening the spool, queue ids and times.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "sluice/cli.h"
#include "sluice/log.h"
#include "sluice/privdrop.h"
#include "sluice/queue_id.h"

void cli_err(const char *fmt, ...)
{
    va_list ap;
    fputs("sluice: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    fputs("sluice: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void warn_diag(void *arg, const char *diag)
{
    (void)arg;
    cli_warn("%s", diag);
}

int cli_load_config(cli_ctx *c)
{
    if (c->cfg_loaded)
        return 0;
    c->config_path = config_default_path(c->config_arg);
    int rc = config_load(c->config_path, &c->cfg, warn_diag, NULL);
    c->cfg_loaded = true;
    if (rc < 0) {
        /* config_load said why through the diag sink. */
        cli_err("cannot read the configuration %s (use -c FILE or $SLUICE_CONFIG)", c->config_path);
        return EX_CONFIG;
    }
    if (!c->cfg.spool || !*c->cfg.spool) {
        cli_err("%s: [server] spool is not set", c->config_path);
        return EX_CONFIG;
    }
    /* Spool warnings (a file moved to corrupt/) go where the daemons'
     * go: syslog when configured, else stderr; our own output is stdout. */
    log_init("sluice", c->cfg.log_syslog);
    log_set_level(LOG_LVL_WARN);
    return 0;
}

int cli_open_spool(cli_ctx *c)
{
    int rc = cli_load_config(c);
    if (rc)
        return rc;
    if (c->fs)
        return 0;
    c->invoker_uid = (long)getuid();
    /* Root becomes [server] user first: an envelope we rewrite as root
     * would be a file the daemons cannot read or replace. */
    if (geteuid() == 0 && c->cfg.user && c->cfg.user[0] && privdrop_to(c->cfg.user) < 0) {
        cli_err("cannot become user %s ([server] user)", c->cfg.user);
        return CLI_EXIT_FAIL;
    }
    rc = spool_fs_open(c->cfg.spool, false, &c->fs);
    if (rc == 0) {
        spool_fs_settle(c->fs, 2000);
        return 0;
    }
    const char *hint = "";
    if (rc == -ENOENT)
        hint = " (it is made when sluice-smtpd first starts; is [server] spool right?)";
    else if (rc == -EACCES || rc == -EPERM)
        hint = " (run as the spool's owner or root)";
    cli_err("cannot open the spool %s: %s%s", c->cfg.spool, strerror(-rc), hint);
    return CLI_EXIT_FAIL;
}

void cli_ctx_free(cli_ctx *c)
{
    if (c->fs)
        spool_fs_close(c->fs);
    c->fs = NULL;
    if (c->cfg_loaded)
        config_free(&c->cfg);
    c->cfg_loaded = false;
}

bool cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

bool cli_parse_id(const char *arg, char out[QUEUE_ID_LEN + 1])
{
    if (strlen(arg) != QUEUE_ID_LEN)
        return false;
    for (size_t i = 0; i < QUEUE_ID_LEN; i++)
        out[i] = (char)(arg[i] >= 'a' && arg[i] <= 'f' ? arg[i] - 'a' + 'A' : arg[i]);
    out[QUEUE_ID_LEN] = '\0';
    return queue_id_valid(out, QUEUE_ID_LEN);
}

int64_t cli_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cli_format_age(int64_t secs, char *out, size_t outsz)
{
    if (secs < 0)
        secs = 0;
    if (secs < 60)
        snprintf(out, outsz, "%llds", (long long)secs);
    else if (secs < 3600)
        snprintf(out, outsz, "%lldm%02llds", (long long)(secs / 60), (long long)(secs % 60));
    else if (secs < 86400)
        snprintf(out, outsz, "%lldh%02lldm", (long long)(secs / 3600), (long long)(secs / 60 % 60));
    else
        snprintf(out, outsz, "%lldd%02lldh", (long long)(secs / 86400),
                 (long long)(secs / 3600 % 24));
}
