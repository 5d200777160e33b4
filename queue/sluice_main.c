/*
 * sluice_main.c - the `sluice` admin program: global options and the
 * subcommands (queue, sendmail, check). Called as `sendmail` or `mailq`
 * (the links `make install` puts beside it), it behaves as `sluice
 * sendmail` or `sluice queue list`, as every MTA's sendmail does, so
 * scripts and cron find the interface they expect. See docs/sluice.8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "sluice/cli.h"

static void usage(FILE *f)
{
    fputs("usage: sluice [-c FILE] COMMAND [ARGS]\n"
          "\n"
          "Commands:\n"
          "  queue list [--json] [FILTERS]  the queue, one message per entry (also: mailq)\n"
          "  queue show ID [--body|--json]  a message's envelope and headers\n"
          "  queue stats [--json]           counts by state and destination, age, bytes\n"
          "  queue delete ID...|--all|FILTERS   remove messages (no bounce)\n"
          "  queue hold ID...|--all|FILTERS     keep messages from delivery\n"
          "  queue release ID...|--all|FILTERS  undo hold\n"
          "  queue requeue ID...|--all|FILTERS  reset attempts; deliver now\n"
          "  queue flush [ID...]            retry deferred recipients now\n"
          "  sendmail [-t] [-f ADDR] [-i] [RCPT...]  submit a message from stdin\n"
          "  check [--defaults]             check the configuration and its files\n"
          "\n"
          "  -c FILE   configuration (default: $SLUICE_CONFIG, else /etc/sluice/sluice.conf)\n"
          "Each command takes --help. FILTERS: --sender ADDR --rcpt ADDR\n"
          "--state pending|deferred|hold|done --older-than DURATION. See sluice(8).\n",
          f);
}

/* The last component of argv[0]. */
static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int main(int argc, char **argv)
{
    cli_ctx ctx;
    int rc;

    /* SIGPIPE keeps its default: `sluice queue list | head` ends quietly,
     * as mailq does. Sockets are written with MSG_NOSIGNAL instead. */
    memset(&ctx, 0, sizeof(ctx));

    const char *me = argc > 0 ? base_name(argv[0]) : "sluice";
    if (strcmp(me, "sendmail") == 0) {
        rc = cli_sendmail(&ctx, argc, argv);
        goto out;
    }
    if (strcmp(me, "mailq") == 0) {
        char *list[argc + 1];
        list[0] = "list";
        for (int i = 1; i < argc; i++)
            list[i] = argv[i];
        list[argc > 0 ? argc : 1] = NULL;
        rc = cli_queue_list(&ctx, argc > 0 ? argc : 1, list);
        goto out;
    }

    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sluice: -c needs a file\n");
                usage(stderr);
                return EX_USAGE;
            }
            ctx.config_arg = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "-c", 2) == 0) {
            ctx.config_arg = argv[i] + 2;
            i++;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            ctx.config_arg = argv[i] + 9;
            i++;
        } else if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("sluice 0.1.0\n");
            return 0;
        } else {
            fprintf(stderr, "sluice: unknown option %s\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "queue") == 0)
        rc = cli_queue(&ctx, sub_argc, sub_argv);
    else if (strcmp(cmd, "mailq") == 0)
        rc = cli_queue_list(&ctx, sub_argc, sub_argv);
    else if (strcmp(cmd, "sendmail") == 0)
        rc = cli_sendmail(&ctx, sub_argc, sub_argv);
    else if (strcmp(cmd, "check") == 0)
        rc = cli_check(&ctx, sub_argc, sub_argv);
    else if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        rc = 0;
    } else {
        fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
        usage(stderr);
        rc = EX_USAGE;
    }
out:
    cli_ctx_free(&ctx);
    /* Output that never reached its reader is a failure scripts must see. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (rc == 0)
            rc = CLI_EXIT_FAIL;
    }
    return rc;
}
