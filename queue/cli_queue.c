/*
 * cli_queue.c - `sluice queue`: the subcommand dispatcher, the walk over
 * the queue every reading command shares, and `queue list` (mailq).
 *
 * Speed: a list reads each envelope exactly once (spool_fs_list, then
 * one spool_fs_load per id: open, read, parse, stat of the data file) and
 * streams its output, so memory stays flat and 100,000 messages take
 * about a second (docs/queue.md, "Measurements"). No lock is taken: every
 * envelope update is a rename, so each envelope read is whole; a list is
 * a snapshot that may be a moment old, as Postfix's mailq is.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "sluice/cli.h"

void cli_format_local(int64_t us, char *out, size_t outsz)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || strftime(out, outsz, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(out, outsz, "?");
}

int cli_each_message(cli_ctx *c, const cli_filter *f, int64_t now_us, cli_msg_fn fn, void *arg)
{
    char(*ids)[QUEUE_ID_LEN + 1] = NULL;
    size_t n = 0;
    envelope e;
    int rc = spool_fs_list(c->fs, &ids, &n);
    if (rc) {
        cli_err("cannot list %s/queue: %s", c->cfg.spool, strerror(-rc));
        return CLI_EXIT_FAIL;
    }
    envelope_init(&e);
    int status = 0;
    for (size_t i = 0; i < n && status == 0; i++) {
        rc = spool_fs_load(c->fs, ids[i], &e);
        if (rc == -ENOENT)
            continue; /* delivered or removed since the listing */
        if (rc == -EBADMSG) {
            cli_warn("%s: damaged; moved to %s/corrupt/", ids[i], c->cfg.spool);
            continue;
        }
        if (rc) {
            cli_err("%s: cannot read the envelope: %s", ids[i], strerror(-rc));
            status = CLI_EXIT_FAIL;
            break;
        }
        if (!f || cli_filter_match(f, &e, now_us))
            status = fn(arg, &e);
        envelope_free(&e);
    }
    envelope_free(&e);
    free(ids);
    return status;
}

/* ---- queue list ---- */

struct list_run {
    bool json;
    int64_t now_us;
    size_t count, held, deferred;
    uint64_t bytes;
};

static int list_json_one(void *arg, const envelope *e)
{
    struct list_run *L = arg;
    cJSON *o = cli_envelope_json(e, L->now_us);
    if (!o) {
        cli_err("out of memory");
        return CLI_EXIT_FAIL;
    }
    fputs(L->count ? ",\n" : "\n", stdout);
    int rc = cli_json_print(o, stdout);
    cJSON_Delete(o);
    L->count++;
    if (rc || ferror(stdout))
        return CLI_EXIT_FAIL; /* the reader went away */
    return 0;
}

static int list_text_one(void *arg, const envelope *e)
{
    struct list_run *L = arg;
    char when[40], age[32];

    if (L->count == 0)
        printf("%-15s %9s  %-19s  %s\n", "-Queue ID-", "-Size-", "-Arrival Time-",
               "-Sender/Recipient (state, attempts, last reply)-");
    enum cli_msg_state st = cli_msg_state(e);
    L->count++;
    L->bytes += e->size;
    L->held += st == CLI_MSG_HOLD;
    L->deferred += st == CLI_MSG_DEFERRED;
    cli_format_local(e->arrival_us, when, sizeof(when));
    /* "!" marks a held message, as postqueue does. */
    printf("%s%c %9llu  %-19s  <%s>\n", e->id, e->hold ? '!' : ' ', (unsigned long long)e->size,
           when, e->sender ? e->sender : "");
    for (size_t i = 0; i < e->nrcpt; i++) {
        const env_rcpt *r = &e->rcpts[i];
        printf("    %-9s %3u  <%s>\n", rcpt_state_name(r->state), r->attempts, r->addr);
        bool open = r->state == RCPT_PENDING || r->state == RCPT_DEFERRED;
        if (r->last_reply && r->last_reply[0]) {
            if (open && r->next_attempt > 0 && !e->hold) {
                int64_t left = r->next_attempt - L->now_us / 1000000;
                cli_format_age(left, age, sizeof(age));
                printf("                   (%s; next attempt %s%s)\n", r->last_reply,
                       left > 0 ? "in " : "due now", left > 0 ? age : "");
            } else {
                printf("                   (%s)\n", r->last_reply);
            }
        }
    }
    putchar('\n');
    return ferror(stdout) ? CLI_EXIT_FAIL : 0;
}

static void list_usage(FILE *f)
{
    fputs("usage: sluice queue list [--json] [--sender ADDR] [--rcpt ADDR]\n"
          "                         [--state pending|deferred|hold|done] [--older-than DURATION]\n"
          "One entry per message, oldest first: id (\"!\" = on hold), size, arrival,\n"
          "sender, then each recipient with its state, attempts and last reply.\n"
          "  --json              one JSON array (fields: docs/queue.md)\n"
          "  --sender, --rcpt    ADDR is user@domain, @domain or domain (and subdomains),\n"
          "                      or <> for the null sender\n"
          "  --state             pending: not tried yet; deferred: waiting for a retry;\n"
          "                      hold: on hold; done: only a bounce or removal left\n"
          "  --older-than        arrived more than DURATION ago (90s, 15m, 4h, 2d, 1h30m)\n",
          f);
}

int cli_queue_list(cli_ctx *c, int argc, char **argv)
{
    struct list_run L = {0};
    cli_filter f;

    cli_filter_init(&f);
    for (int i = 1; i < argc;) {
        int rc = cli_filter_option(&f, argc, argv, &i);
        if (rc < 0)
            return EX_USAGE;
        if (rc > 0)
            continue;
        if (cli_is_help(argv[i])) {
            list_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0) {
            L.json = true;
            i++;
            continue;
        }
        fprintf(stderr, "sluice: queue list: unexpected argument '%s'\n", argv[i]);
        list_usage(stderr);
        return EX_USAGE;
    }
    int rc = cli_open_spool(c);
    if (rc)
        return rc;
    L.now_us = cli_now_us();
    if (L.json)
        fputs("[", stdout);
    rc = cli_each_message(c, &f, L.now_us, L.json ? list_json_one : list_text_one, &L);
    if (L.json) {
        fputs(L.count ? "\n]\n" : "]\n", stdout);
        return rc;
    }
    if (rc)
        return rc;
    if (L.count == 0) {
        puts(cli_filter_active(&f) ? "No matching messages." : "Mail queue is empty");
        return 0;
    }
    printf("-- %llu KiB in %zu message%s", (unsigned long long)((L.bytes + 1023) / 1024), L.count,
           L.count == 1 ? "" : "s");
    if (L.held || L.deferred)
        printf(" (%zu deferred, %zu on hold)", L.deferred, L.held);
    puts(".");
    return 0;
}

/* ---- the dispatcher ---- */

static void queue_usage(FILE *f)
{
    fputs("usage: sluice queue list|show|stats|delete|hold|release|requeue|flush [ARGS]\n"
          "  list [--json] [FILTERS]         the queue (mailq)\n"
          "  show ID [--body|--json]         envelope and headers of one message\n"
          "  stats [--json]                  counts by state and destination, age, bytes\n"
          "  delete ID...|-|--all|FILTERS    remove messages (no bounce is sent)\n"
          "  hold ID...|-|--all|FILTERS      keep messages from delivery\n"
          "  release ID...|-|--all|FILTERS   undo hold\n"
          "  requeue ID...|-|--all|FILTERS   reset attempts and retry times; deliver now\n"
          "  flush [ID...|-|FILTERS]         deferred recipients due now; wake sluice-delivery\n"
          "\"-\" reads ids from standard input. `sluice queue COMMAND --help` for more.\n",
          f);
}

int cli_queue(cli_ctx *c, int argc, char **argv)
{
    if (argc < 2) {
        queue_usage(stderr);
        return EX_USAGE;
    }
    const char *sub = argv[1];
    if (cli_is_help(sub) || strcmp(sub, "help") == 0) {
        queue_usage(stdout);
        return 0;
    }
    if (strcmp(sub, "list") == 0)
        return cli_queue_list(c, argc - 1, argv + 1);
    if (strcmp(sub, "show") == 0)
        return cli_queue_show(c, argc - 1, argv + 1);
    if (strcmp(sub, "stats") == 0)
        return cli_queue_stats(c, argc - 1, argv + 1);
    if (strcmp(sub, "delete") == 0 || strcmp(sub, "hold") == 0 || strcmp(sub, "release") == 0 ||
        strcmp(sub, "requeue") == 0 || strcmp(sub, "flush") == 0)
        return cli_queue_change(c, argc - 1, argv + 1);
    fprintf(stderr, "sluice: queue: unknown command '%s'\n", sub);
    queue_usage(stderr);
    return EX_USAGE;
}
