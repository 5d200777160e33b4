/*
 * cli_change.c - the queue commands that change messages: delete, hold,
 * release, requeue, flush.
 *
 * Every change follows one protocol, safe beside both running daemons:
 * take the message's lock (spool_fs_lock, shared with sluice-delivery,
 * which holds it for a whole attempt), read the envelope again under it
 * (what a listing saw may be stale), check that the message still
 * qualifies, change it, spool_fs_store (atomic rename) or spool_fs_remove,
 * unlock. sluice-delivery re-reads the envelope under the same lock at the
 * start of every attempt, so it never delivers a deleted message and never
 * overwrites a change with an older view.
 *
 * A message in a delivery attempt is locked. We wait for the attempt for a
 * bounded time (--wait, default 5 s; a remote attempt can take minutes),
 * then refuse with "ID is being delivered right now; try again" - never a
 * change behind the runner's back. flush does not wait: a message being
 * attempted is being flushed already.
 *
 * Then sluice-delivery is told (run/delivery.sock): "new ID..." after
 * release, "flush ID..." after requeue and flush. The notice is a
 * datagram; when nobody listens the change is on disk anyway and the runner
 * acts on it when it starts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "sluice/cli.h"
#include "sluice/log.h"

#define DEFAULT_WAIT_S 5
#define NOTIFY_CHUNK 3800 /* bytes per datagram: far below any socket limit */

enum op { OP_DELETE, OP_HOLD, OP_RELEASE, OP_REQUEUE, OP_FLUSH };
static const char *const op_names[] = {"delete", "hold", "release", "requeue", "flush"};

typedef char qid[QUEUE_ID_LEN + 1];

struct change {
    cli_ctx *c;
    enum op op;
    cli_filter f;
    bool batch; /* selected by --all or filters: recheck, summarise */
    int64_t wait_s;
    int64_t now_us;
    size_t changed, unchanged, failed;
    qid *ids; /* the selection */
    size_t nids, cap;
    qid *notify; /* to announce to sluice-delivery */
    size_t nnotify, notify_cap;
};

static void change_usage(FILE *f, const char *cmd)
{
    fprintf(f,
            "usage: sluice queue %s [--wait SECONDS] ID... | - | --all | FILTERS\n"
            "       (\"-\": ids from standard input; FILTERS: --sender ADDR --rcpt ADDR\n"
            "        --state pending|deferred|hold|done --older-than DURATION)\n",
            cmd);
    if (strcmp(cmd, "delete") == 0)
        fputs("Removes the messages from the queue for good. No bounce is sent.\n", f);
    else if (strcmp(cmd, "hold") == 0)
        fputs("Keeps the messages from delivery until `queue release`.\n", f);
    else if (strcmp(cmd, "release") == 0)
        fputs("Ends a hold; recipients are tried when due (deferred ones keep their time).\n", f);
    else if (strcmp(cmd, "requeue") == 0)
        fputs("Resets attempts and retry times of the recipients still to deliver and\n"
              "tries them now (the retry backoff starts over).\n",
              f);
    else
        fputs("Makes deferred recipients due now and wakes sluice-delivery. Without ids:\n"
              "every message with deferred recipients.\n",
              f);
    fputs("A message in a delivery attempt is locked: the command waits up to --wait\n"
          "seconds (default 5) for the attempt, then gives up on that message.\n",
          f);
}

static int add_id(qid **v, size_t *n, size_t *cap, const char *id)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        qid *p = realloc(*v, nc * sizeof(*p));
        if (!p)
            return -ENOMEM;
        *v = p;
        *cap = nc;
    }
    memcpy((*v)[(*n)++], id, sizeof(qid));
    return 0;
}

/* An id named by the admin; a bad one is "no such message" like any other. */
static int select_arg(struct change *C, const char *arg)
{
    qid id;
    size_t n = strlen(arg);
    char tmp[QUEUE_ID_LEN + 2];
    /* "ID!" as `queue list` shows a held message. */
    if (n == QUEUE_ID_LEN + 1 && (arg[n - 1] == '!' || arg[n - 1] == '*')) {
        memcpy(tmp, arg, QUEUE_ID_LEN);
        tmp[QUEUE_ID_LEN] = '\0';
        arg = tmp;
    }
    if (!cli_parse_id(arg, id)) {
        cli_err("no such message: %s", arg);
        C->failed++;
        return 0;
    }
    return add_id(&C->ids, &C->nids, &C->cap, id);
}

static int select_stdin(struct change *C)
{
    char word[64];
    size_t n = 0;
    int ch, rc = 0;
    do {
        ch = getchar();
        if (ch == EOF || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == ',') {
            if (n > 0 && n < sizeof(word)) {
                word[n] = '\0';
                rc = select_arg(C, word);
            } else if (n >= sizeof(word)) {
                cli_err("no such message: %.20s...", word);
                C->failed++;
            }
            n = 0;
        } else if (n < sizeof(word) - 1) {
            word[n++] = (char)ch;
        } else {
            n = sizeof(word);
        }
    } while (ch != EOF && rc == 0);
    if (ferror(stdin)) {
        cli_err("reading ids from standard input: %s", strerror(errno));
        return -EIO;
    }
    return rc;
}

static int select_one(void *arg, const envelope *e)
{
    struct change *C = arg;
    if (add_id(&C->ids, &C->nids, &C->cap, e->id) != 0) {
        cli_err("out of memory");
        return CLI_EXIT_FAIL;
    }
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* spool_fs_lock, retried for up to wait_s while an attempt holds it. */
static int lock_wait(struct change *C, const char *id, int *fd)
{
    int64_t deadline = mono_ms() + C->wait_s * 1000;
    bool said = false;
    for (;;) {
        int rc = spool_fs_lock(C->c->fs, id, false, fd);
        if (rc != -EWOULDBLOCK || mono_ms() >= deadline)
            return rc;
        if (!said && !C->batch) {
            fprintf(stderr, "sluice: %s is being delivered; waiting up to %llds\n", id,
                    (long long)C->wait_s);
            said = true;
        }
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void note(struct change *C, const char *id, const char *what)
{
    if (!C->batch)
        printf("%s: %s\n", id, what);
}

/* Applies the command to one message under its lock. */
static void apply(struct change *C, const char *id)
{
    spool_fs *fs = C->c->fs;
    int lockfd, rc = lock_wait(C, id, &lockfd);
    if (rc == -ENOENT) {
        if (!C->batch) {
            cli_err("no such message: %s", id);
            C->failed++;
        }
        return; /* batch: delivered since we listed it */
    }
    if (rc == -EWOULDBLOCK) {
        if (C->op == OP_FLUSH) {
            note(C, id, "being delivered right now");
            C->unchanged++;
        } else {
            cli_err("%s is being delivered right now; try again", id);
            C->failed++;
        }
        return;
    }
    if (rc) {
        cli_err("%s: cannot lock: %s", id, strerror(-rc));
        C->failed++;
        return;
    }
    envelope e;
    envelope_init(&e);
    rc = spool_fs_load(fs, id, &e);
    if (rc) {
        if (rc == -ENOENT && C->batch)
            ;
        else if (rc == -ENOENT)
            cli_err("no such message: %s", id);
        else if (rc == -EBADMSG)
            cli_err("%s: damaged; moved to %s/corrupt/", id, C->c->cfg.spool);
        else
            cli_err("%s: cannot read the envelope: %s", id, strerror(-rc));
        C->failed += !(rc == -ENOENT && C->batch);
        spool_fs_unlock(lockfd);
        return;
    }
    /* A batch chose the message from an unlocked view: it must still fit. */
    if (C->batch && !cli_filter_match(&C->f, &e, C->now_us)) {
        envelope_free(&e);
        spool_fs_unlock(lockfd);
        return;
    }
    bool store = false, tell = false;
    const char *done = NULL;
    int64_t now_s = C->now_us / 1000000;
    switch (C->op) {
    case OP_DELETE:
        rc = spool_fs_remove(fs, id);
        done = "deleted";
        break;
    case OP_HOLD:
        store = !e.hold;
        e.hold = true;
        done = store ? "on hold" : "already on hold";
        break;
    case OP_RELEASE:
        store = tell = e.hold;
        e.hold = false;
        done = store ? "released" : "not on hold";
        break;
    case OP_REQUEUE:
        for (size_t i = 0; i < e.nrcpt; i++) {
            env_rcpt *r = &e.rcpts[i];
            if (r->state != RCPT_PENDING && r->state != RCPT_DEFERRED)
                continue;
            store = store || r->attempts != 0 || r->next_attempt != 0;
            r->attempts = 0;
            r->next_attempt = 0;
        }
        tell = !e.hold;
        done = e.hold ? "requeued (still on hold)" : "requeued";
        break;
    case OP_FLUSH:
        if (e.hold) {
            done = "on hold; release it to deliver it";
            break;
        }
        for (size_t i = 0; i < e.nrcpt; i++) {
            env_rcpt *r = &e.rcpts[i];
            if (r->state == RCPT_DEFERRED && r->next_attempt > now_s) {
                r->next_attempt = 0;
                store = true;
            }
        }
        tell = true;
        done = "due now";
        break;
    }
    if (rc == 0 && store)
        rc = spool_fs_store(fs, &e);
    spool_fs_unlock(lockfd);
    envelope_free(&e);
    if (rc) {
        cli_err("%s: cannot %s: %s", id, op_names[C->op], strerror(-rc));
        C->failed++;
        return;
    }
    if (store || C->op == OP_DELETE || (C->op == OP_FLUSH && tell)) {
        C->changed++;
        log_info("%s: %s by `sluice queue %s` (uid %ld)", id, done, op_names[C->op],
                 C->c->invoker_uid);
    } else {
        C->unchanged++;
    }
    note(C, id, done);
    if (tell && add_id(&C->notify, &C->nnotify, &C->notify_cap, id) != 0)
        cli_warn("%s: out of memory; sluice-delivery finds it at its next scan", id);
}

/* Sends "VERB ID ID..." datagrams; bare "flush" when all is true. */
static void tell_runner(struct change *C, const char *verb, bool all)
{
    char buf[NOTIFY_CHUNK + QUEUE_ID_LEN + 16];
    size_t i = 0;
    int first_rc = 1;
    do {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", verb);
        while (!all && i < C->nnotify && n + 1 + QUEUE_ID_LEN <= NOTIFY_CHUNK) {
            buf[n++] = ' ';
            memcpy(buf + n, C->notify[i++], QUEUE_ID_LEN);
            n += QUEUE_ID_LEN;
        }
        int rc;
        /* A full socket means a busy runner: give it a moment, not up. */
        for (int tries = 0;
             (rc = spool_notify_delivery(C->c->cfg.spool, buf, n)) == -EAGAIN && tries < 20;
             tries++) {
            struct timespec ts = {0, 50 * 1000000};
            nanosleep(&ts, NULL);
        }
        if (first_rc == 1)
            first_rc = rc;
        if (rc == -ENOENT || rc == -ECONNREFUSED)
            break;
    } while (!all && i < C->nnotify);
    if (first_rc == -ENOENT || first_rc == -ECONNREFUSED)
        fprintf(stderr, "sluice: sluice-delivery is not running; the messages will be delivered "
                        "when it starts\n");
    else if (first_rc < 0)
        cli_warn("cannot reach sluice-delivery (%s); its next queue scan picks the changes up",
                 strerror(-first_rc));
}

static int parse_args(struct change *C, int argc, char **argv, bool *all)
{
    const char *cmd = argv[0];
    bool from_stdin = false;
    for (int i = 1; i < argc;) {
        int rc = cli_filter_option(&C->f, argc, argv, &i);
        if (rc < 0)
            return EX_USAGE;
        if (rc > 0)
            continue;
        const char *a = argv[i];
        if (cli_is_help(a)) {
            change_usage(stdout, cmd);
            return -1;
        } else if (strcmp(a, "--all") == 0 || strcmp(a, "ALL") == 0) {
            *all = true;
        } else if (strcmp(a, "--wait") == 0 || strncmp(a, "--wait=", 7) == 0) {
            const char *v = a[6] == '=' ? a + 7 : i + 1 < argc ? argv[++i] : NULL;
            if (!v || cli_parse_duration(v, &C->wait_s) != 0) {
                fprintf(stderr, "sluice: --wait needs a duration (5, 30s, 2m)\n");
                return EX_USAGE;
            }
        } else if (strcmp(a, "-") == 0) {
            from_stdin = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "sluice: queue %s: unknown option '%s'\n", cmd, a);
            change_usage(stderr, cmd);
            return EX_USAGE;
        } else if (select_arg(C, a) != 0) {
            cli_err("out of memory");
            return CLI_EXIT_FAIL;
        }
        i++;
    }
    bool named = C->nids > 0 || C->failed > 0 || from_stdin;
    if (named && (*all || cli_filter_active(&C->f))) {
        fprintf(stderr, "sluice: queue %s: give ids, or --all, or filters - not both\n", cmd);
        change_usage(stderr, cmd);
        return EX_USAGE;
    }
    if (!named && !*all && !cli_filter_active(&C->f) && C->op != OP_FLUSH) {
        fprintf(stderr, "sluice: queue %s: which messages? (ID..., -, --all, or filters)\n", cmd);
        change_usage(stderr, cmd);
        return EX_USAGE;
    }
    if (from_stdin && select_stdin(C) != 0)
        return CLI_EXIT_FAIL;
    return 0;
}

int cli_queue_change(cli_ctx *c, int argc, char **argv)
{
    struct change C;
    bool all = false;

    memset(&C, 0, sizeof(C));
    C.c = c;
    C.wait_s = DEFAULT_WAIT_S;
    cli_filter_init(&C.f);
    for (int k = 0; k < 5; k++)
        if (strcmp(argv[0], op_names[k]) == 0)
            C.op = (enum op)k;
    if (C.op == OP_FLUSH)
        C.wait_s = 0;
    int status = parse_args(&C, argc, argv, &all);
    if (status != 0) {
        free(C.ids);
        return status < 0 ? 0 : status;
    }
    /* Flush without a selection: every message with deferred recipients. */
    bool flush_all =
        C.op == OP_FLUSH && C.nids == 0 && C.failed == 0 && !all && !cli_filter_active(&C.f);
    if (flush_all)
        C.f.state = CLI_MSG_DEFERRED;
    C.batch = all || cli_filter_active(&C.f);
    if ((status = cli_open_spool(c)) != 0) {
        free(C.ids);
        return status;
    }
    C.now_us = cli_now_us();
    if (C.batch)
        status = cli_each_message(c, &C.f, C.now_us, select_one, &C);
    for (size_t i = 0; i < C.nids && status == 0; i++)
        apply(&C, C.ids[i]);
    if (status == 0 && (C.nnotify || flush_all)) {
        const char *verb = C.op == OP_RELEASE ? "new" : "flush";
        tell_runner(&C, verb, flush_all);
    }
    if (C.batch && status == 0) {
        static const char *const past[] = {"deleted", "put on hold", "released", "requeued",
                                           "made due now"};
        printf("%zu message%s %s", C.changed, C.changed == 1 ? "" : "s", past[C.op]);
        if (C.unchanged)
            printf(" (%zu unchanged)", C.unchanged);
        if (C.failed)
            printf(", %zu failed", C.failed);
        puts(".");
    }
    free(C.ids);
    free(C.notify);
    if (status)
        return status;
    return C.failed ? CLI_EXIT_FAIL : 0;
}
