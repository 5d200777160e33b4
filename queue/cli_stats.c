/*
 * cli_stats.c - `sluice queue stats [--json]`: what is in the queue at a
 * glance, in one pass over the envelopes: messages by state, recipients
 * by state, open recipients by destination domain (where mail is stuck),
 * the oldest message, total bytes, and files waiting in corrupt/.
 * This is what monitoring wants (USERS.md 2: exporters scraping mailq).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "sluice/cli.h"

#define TOP_DOMAINS 20

struct dom {
    char *name; /* lower case; NULL = empty slot */
    size_t pending, deferred;
};

struct stats {
    int64_t now_us;
    size_t messages, by_state[4];
    size_t rcpts[4]; /* by enum rcpt_state */
    uint64_t bytes;
    char oldest_id[QUEUE_ID_LEN + 1];
    int64_t oldest_us;
    struct dom *doms; /* open addressing, power-of-two size */
    size_t ndoms, cap;
    bool nomem;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct dom *dom_slot(struct dom *v, size_t cap, const char *name)
{
    for (size_t i = hash_str(name) & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!v[i].name || strcmp(v[i].name, name) == 0)
            return &v[i];
}

static struct dom *dom_get(struct stats *S, const char *domain)
{
    char name[256];
    size_t n = strlen(domain);
    if (n >= sizeof(name))
        n = sizeof(name) - 1;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] + 32 : domain[i]);
    name[n] = '\0';
    if ((S->ndoms + 1) * 2 > S->cap) {
        size_t cap = S->cap ? S->cap * 2 : 256;
        struct dom *v = calloc(cap, sizeof(*v));
        if (!v)
            return NULL;
        for (size_t i = 0; i < S->cap; i++)
            if (S->doms[i].name)
                *dom_slot(v, cap, S->doms[i].name) = S->doms[i];
        free(S->doms);
        S->doms = v;
        S->cap = cap;
    }
    struct dom *d = dom_slot(S->doms, S->cap, name);
    if (!d->name) {
        if (!(d->name = strdup(name)))
            return NULL;
        S->ndoms++;
    }
    return d;
}

static int count_one(void *arg, const envelope *e)
{
    struct stats *S = arg;
    S->messages++;
    S->by_state[cli_msg_state(e)]++;
    S->bytes += e->size;
    if (S->messages == 1 || e->arrival_us < S->oldest_us) {
        S->oldest_us = e->arrival_us;
        memcpy(S->oldest_id, e->id, sizeof(S->oldest_id));
    }
    for (size_t i = 0; i < e->nrcpt; i++) {
        const env_rcpt *r = &e->rcpts[i];
        if ((unsigned)r->state < 4)
            S->rcpts[r->state]++;
        if (r->state != RCPT_PENDING && r->state != RCPT_DEFERRED)
            continue;
        const char *at = strrchr(r->addr, '@');
        struct dom *d = dom_get(S, at ? at + 1 : "(no domain)");
        if (!d) {
            S->nomem = true;
            return CLI_EXIT_FAIL;
        }
        if (r->state == RCPT_PENDING)
            d->pending++;
        else
            d->deferred++;
    }
    return 0;
}

static int by_count(const void *a, const void *b)
{
    const struct dom *x = a, *y = b;
    size_t nx = x->pending + x->deferred, ny = y->pending + y->deferred;
    if (nx != ny)
        return nx > ny ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Files in corrupt/: quarantined messages wait there for a human. */
static long count_corrupt(const char *root)
{
    char path[4096];
    if (spool_path(root, "corrupt", path, sizeof(path)) != 0)
        return -1;
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void stats_usage(FILE *f)
{
    fputs("usage: sluice queue stats [--json] [FILTERS]\n"
          "Messages by state (pending, deferred, hold, done), recipients by state,\n"
          "recipients still to deliver by destination domain, the oldest message,\n"
          "total bytes, and files in corrupt/. FILTERS as for queue list.\n",
          f);
}

static int print_json(struct stats *S, struct dom *v, long corrupt)
{
    static const char *const mnames[] = {"pending", "deferred", "hold", "done"};
    static const char *const rnames[] = {"pending", "deferred", "delivered", "failed"};
    cJSON *o = cJSON_CreateObject(), *m = NULL, *r = NULL, *d = NULL;
    bool ok = o && cJSON_AddNumberToObject(o, "messages", (double)S->messages) &&
              cJSON_AddNumberToObject(o, "bytes", (double)S->bytes) &&
              (m = cJSON_AddObjectToObject(o, "by_state")) &&
              (r = cJSON_AddObjectToObject(o, "recipients")) &&
              (d = cJSON_AddArrayToObject(o, "domains"));
    for (int i = 0; ok && i < 4; i++)
        ok = cJSON_AddNumberToObject(m, mnames[i], (double)S->by_state[i]) &&
             cJSON_AddNumberToObject(r, rnames[i], (double)S->rcpts[i]);
    if (ok && S->messages) {
        char when[40];
        envelope_format_time(S->oldest_us, when, sizeof(when));
        int64_t age = (S->now_us - S->oldest_us) / 1000000;
        cJSON *old = cJSON_AddObjectToObject(o, "oldest");
        ok = old && cJSON_AddStringToObject(old, "id", S->oldest_id) &&
             cJSON_AddStringToObject(old, "arrival", when) &&
             cJSON_AddNumberToObject(old, "age", (double)(age > 0 ? age : 0));
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "oldest") != NULL;
    }
    if (ok)
        ok = corrupt >= 0 ? cJSON_AddNumberToObject(o, "corrupt", (double)corrupt) != NULL
                          : cJSON_AddNullToObject(o, "corrupt") != NULL;
    for (size_t i = 0; ok && i < S->ndoms; i++) {
        cJSON *x = cJSON_CreateObject();
        ok = x && cJSON_AddItemToArray(d, x);
        if (!ok) {
            cJSON_Delete(x);
            break;
        }
        ok = cli_json_str(x, "domain", v[i].name) == 0 &&
             cJSON_AddNumberToObject(x, "pending", (double)v[i].pending) &&
             cJSON_AddNumberToObject(x, "deferred", (double)v[i].deferred);
    }
    if (ok)
        ok = cli_json_print(o, stdout) == 0;
    putchar('\n');
    cJSON_Delete(o);
    if (!ok)
        cli_err("out of memory");
    return ok ? 0 : CLI_EXIT_FAIL;
}

static void print_text(struct stats *S, struct dom *v, long corrupt)
{
    printf("messages:   %zu (%llu KiB)\n", S->messages,
           (unsigned long long)((S->bytes + 1023) / 1024));
    printf("  pending %zu, deferred %zu, on hold %zu, done %zu\n", S->by_state[CLI_MSG_PENDING],
           S->by_state[CLI_MSG_DEFERRED], S->by_state[CLI_MSG_HOLD], S->by_state[CLI_MSG_DONE]);
    printf("recipients: pending %zu, deferred %zu, delivered %zu, failed %zu\n",
           S->rcpts[RCPT_PENDING], S->rcpts[RCPT_DEFERRED], S->rcpts[RCPT_DELIVERED],
           S->rcpts[RCPT_FAILED]);
    if (S->messages) {
        char when[40], age[32];
        cli_format_local(S->oldest_us, when, sizeof(when));
        cli_format_age((S->now_us - S->oldest_us) / 1000000, age, sizeof(age));
        printf("oldest:     %s, arrived %s (%s ago)\n", S->oldest_id, when, age);
    }
    if (corrupt > 0)
        printf("corrupt:    %ld file%s in corrupt/ (see the log)\n", corrupt,
               corrupt == 1 ? "" : "s");
    if (S->ndoms == 0)
        return;
    printf("\nrecipients to deliver, by domain:\n%9s %9s  %s\n", "pending", "deferred", "domain");
    for (size_t i = 0; i < S->ndoms && i < TOP_DOMAINS; i++)
        printf("%9zu %9zu  %s\n", v[i].pending, v[i].deferred, v[i].name);
    if (S->ndoms > TOP_DOMAINS)
        printf("... and %zu more domains (--json lists all)\n", S->ndoms - TOP_DOMAINS);
}

int cli_queue_stats(cli_ctx *c, int argc, char **argv)
{
    bool json = false;
    cli_filter f;
    cli_filter_init(&f);
    for (int i = 1; i < argc;) {
        int rc = cli_filter_option(&f, argc, argv, &i);
        if (rc < 0)
            return EX_USAGE;
        if (rc > 0)
            continue;
        if (cli_is_help(argv[i])) {
            stats_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--json") != 0) {
            fprintf(stderr, "sluice: queue stats: unexpected argument '%s'\n", argv[i]);
            stats_usage(stderr);
            return EX_USAGE;
        }
        json = true;
        i++;
    }
    int rc = cli_open_spool(c);
    if (rc)
        return rc;
    struct stats S;
    memset(&S, 0, sizeof(S));
    S.now_us = cli_now_us();
    rc = cli_each_message(c, &f, S.now_us, count_one, &S);
    if (S.nomem)
        cli_err("out of memory");
    struct dom *v = NULL;
    if (rc == 0 && S.ndoms) {
        /* Compact the table into a sorted array (the names move along). */
        v = malloc(S.ndoms * sizeof(*v));
        if (!v) {
            cli_err("out of memory");
            rc = CLI_EXIT_FAIL;
        } else {
            size_t k = 0;
            for (size_t i = 0; i < S.cap; i++)
                if (S.doms[i].name)
                    v[k++] = S.doms[i];
            qsort(v, k, sizeof(*v), by_count);
        }
    }
    if (rc == 0) {
        long corrupt = count_corrupt(c->cfg.spool);
        if (json)
            rc = print_json(&S, v, corrupt);
        else
            print_text(&S, v, corrupt);
    }
    free(v);
    for (size_t i = 0; i < S.cap; i++)
        free(S.doms[i].name);
    free(S.doms);
    return rc;
}
