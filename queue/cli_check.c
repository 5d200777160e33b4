/*
 * cli_check.c - `sluice check [--defaults]`: the configuration and every
 * file it names, checked by the same code the daemons run at start
 * (config_load, then config_check_files), so a config that passes here
 * starts, and one that fails says exactly where: "FILE:LINE: message", one
 * problem a line, on stderr (as compilers do, so editors can jump there).
 *
 * Both passes always run (the daemons stop after the first that fails):
 * an admin fixing a config wants every problem at once.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "sluice/cli.h"

static void print_diag(void *arg, const char *diag)
{
    int *n = arg;
    fprintf(stderr, "%s\n", diag);
    (*n)++;
}

static void check_usage(FILE *f)
{
    fputs("usage: sluice [-c FILE] check [--defaults]\n"
          "Reads the configuration and every map, certificate and folder it names;\n"
          "prints each problem as FILE:LINE: message and exits 1 if there is any.\n"
          "  --defaults   print every key with its type, default and meaning\n",
          f);
}

static void print_defaults(void)
{
    int n = 0;
    const config_key_doc *k = config_keys(&n);
    const char *section = NULL;
    for (int i = 0; i < n; i++) {
        if (!section || strcmp(section, k[i].section) != 0) {
            printf("%s[%s]\n", section ? "\n" : "", k[i].section);
            section = k[i].section;
        }
        printf("; %s (%s)\n%s = %s\n", k[i].doc ? k[i].doc : "", k[i].type ? k[i].type : "",
               k[i].name, k[i].def ? k[i].def : "");
    }
}

int cli_check(cli_ctx *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            check_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--defaults") == 0) {
            print_defaults();
            return 0;
        }
        fprintf(stderr, "sluice: check: unexpected argument '%s'\n", argv[i]);
        check_usage(stderr);
        return EX_USAGE;
    }
    const char *path = config_default_path(c->config_arg);
    int shown = 0;
    int rc = config_load(path, &c->cfg, print_diag, &shown);
    c->cfg_loaded = true;
    if (rc < 0) {
        if (shown == 0)
            fprintf(stderr, "%s: cannot read the configuration\n", path);
        return CLI_EXIT_FAIL;
    }
    int problems = rc + config_check_files(&c->cfg, print_diag, &shown);
    if (shown > problems)
        problems = shown;
    if (problems) {
        fprintf(stderr, "sluice: %s: %d problem%s\n", path, problems, problems == 1 ? "" : "s");
        return CLI_EXIT_FAIL;
    }
    printf("%s: OK\n", path);
    return 0;
}
