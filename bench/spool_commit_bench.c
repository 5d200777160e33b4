/*
 * spool_commit_bench.c - what a durable commit costs, and what grouping buys.
 *
 *   spool_commit_bench raw DIR [COUNT [METHOD BATCH]]
 *       The commit protocol of the spool (spool_txn: O_EXCL create + lock,
 *       write 1 KiB message + its envelope, sync, rename .msg then .env,
 *       fsync queue/) for COUNT messages (default 2048) per cell, with:
 *         permsg     each message alone: fdatasync both files, rename,
 *                    fsync queue/ (the no-batching baseline)
 *         syncfs     per batch: one syncfs(), renames, one fsync queue/
 *         fdatasync  per batch: fdatasync of every file, renames, one fsync
 *         fdatasync4 the same, the fdatasyncs spread over 4 threads
 *       and batches of 1, 8, 32, 64.
 *
 *   spool_commit_bench spool DIR SESSIONS SECONDS [delete]
 *       End to end through the real API (spool_open, spool_msg_begin/write/
 *       commit) on one libuv loop: SESSIONS virtual sessions, each commits a
 *       1 KiB message, and on its callback the next. Reports messages/s,
 *       batch sizes and commit latency. $SLUICE_SPOOL_SYNC picks the method.
 *       "delete": a second thread removes committed messages as a delivery
 *       runner would (steady state: the queue does not grow).
 *
 * DIR is created and emptied; put it on the filesystem you want to measure.
 * Build: see bench/CMakeLists.txt or docs/spool.md ("Measurements").
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"
#include "sluice/spool.h"
#include "spool_int.h" /* the spool's own commit steps, for the raw cells */

#define MSG_SIZE 1024

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "spool_commit_bench: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static void rm_rf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        die("rm -rf", EIO);
}

static char payload[MSG_SIZE];

static void make_envelope(envelope *e)
{
    envelope_init(e);
    envelope_set(&e->sender, "alice@example.test");
    envelope_set(&e->helo, "client.example.test");
    envelope_set(&e->client_addr, "192.0.2.7");
    envelope_set(&e->client_name, "client.example.test");
    envelope_set(&e->proto, "ESMTP");
    envelope_add_rcpt(e, "bob@example.test", NULL, 0);
}

/* ---- raw cells ---- */

struct par {
    struct spool_txn *t;
    size_t n;
    int rc;
};

static void *par_sync(void *arg)
{
    struct par *p = arg;
    for (size_t i = 0; i < p->n && !p->rc; i++)
        p->rc = spool_txn_datasync(&p->t[i]);
    return NULL;
}

static double raw_cell(const char *dir, const char *method, size_t batch, size_t count)
{
    spool_fs *fs;
    envelope e;
    sbuf env;
    int rc;

    rm_rf(dir);
    if ((rc = spool_fs_open(dir, true, &fs)) != 0)
        die("spool_fs_open", rc);
    make_envelope(&e);
    sbuf_init(&env, 0);
    struct spool_txn *t = calloc(batch, sizeof(*t));
    int threads = !strcmp(method, "fdatasync4") ? 4 : 1;

    double t0 = now();
    for (size_t done = 0; done < count; done += batch) {
        for (size_t i = 0; i < batch; i++) {
            queue_id_new(QUEUE_ID_CLI, e.id);
            e.size = MSG_SIZE;
            sbuf_reset(&env);
            if ((rc = envelope_serialize(&e, &env)) != 0)
                die("serialize", rc);
            spool_txn_init(&t[i], e.id);
            if ((rc = spool_txn_write_msg(fs, &t[i], payload, MSG_SIZE)) != 0 ||
                (rc = spool_txn_write_env(fs, &t[i], env.data, env.len)) != 0)
                die("write", rc);
            if (!strcmp(method, "permsg")) {
                if ((rc = spool_txn_datasync(&t[i])) != 0 ||
                    (rc = spool_txn_rename(fs, &t[i])) != 0 ||
                    (rc = spool_fsync(fs->queue_fd)) != 0)
                    die("permsg commit", rc);
                spool_txn_finish(&t[i]);
            }
        }
        if (!strcmp(method, "permsg"))
            continue;
        if (!strcmp(method, "syncfs")) {
            if (syncfs(fs->incoming_fd) != 0)
                die("syncfs", errno);
        } else if (threads == 1) {
            for (size_t i = 0; i < batch; i++)
                if ((rc = spool_txn_datasync(&t[i])) != 0)
                    die("fdatasync", rc);
        } else {
            pthread_t th[4];
            struct par p[4];
            size_t per = (batch + 3) / 4, k = 0;
            for (size_t lo = 0; lo < batch; lo += per, k++) {
                p[k] = (struct par){t + lo, lo + per > batch ? batch - lo : per, 0};
                pthread_create(&th[k], NULL, par_sync, &p[k]);
            }
            for (size_t j = 0; j < k; j++) {
                pthread_join(th[j], NULL);
                if (p[j].rc)
                    die("fdatasync", p[j].rc);
            }
        }
        for (size_t i = 0; i < batch; i++)
            if ((rc = spool_txn_rename(fs, &t[i])) != 0)
                die("rename", rc);
        if ((rc = spool_fsync(fs->queue_fd)) != 0)
            die("fsync queue/", rc);
        for (size_t i = 0; i < batch; i++)
            spool_txn_finish(&t[i]);
    }
    double rate = (double)count / (now() - t0);
    free(t);
    sbuf_free(&env);
    envelope_free(&e);
    spool_fs_close(fs);
    rm_rf(dir);
    return rate;
}

static int run_raw(const char *dir, size_t count)
{
    static const char *const methods[] = {"syncfs", "fdatasync", "fdatasync4"};
    static const size_t batches[] = {1, 8, 32, 64};

    printf("1 KiB messages, %zu per cell, messages/s (durable commits)\n", count);
    printf("%-12s %10.0f  (no batching: every message synced and renamed alone)\n", "permsg",
           raw_cell(dir, "permsg", 1, count / 4));
    printf("%-12s", "batch");
    for (size_t b = 0; b < 4; b++)
        printf(" %9zu", batches[b]);
    printf("\n");
    for (size_t m = 0; m < 3; m++) {
        printf("%-12s", methods[m]);
        fflush(stdout);
        for (size_t b = 0; b < 4; b++) {
            printf(" %9.0f", raw_cell(dir, methods[m], batches[b], count));
            fflush(stdout);
        }
        printf("\n");
    }
    return 0;
}

/* ---- end to end through the spool API ---- */

struct sess {
    struct bench *b;
    spool_msg *m;
    char id[QUEUE_ID_LEN + 1];
    double started;
};

struct bench {
    uv_loop_t loop;
    spool *s;
    envelope env;
    double end;
    size_t done, failed, nlat, latcap;
    double *lat;
    bool stopping;
    int active;
    /* committed ids for the deleting thread */
    pthread_mutex_t mu;
    char (*ids)[QUEUE_ID_LEN + 1];
    size_t nids, idcap;
};

static void start_msg(struct sess *se);

static void committed(void *arg, int status)
{
    struct sess *se = arg;
    struct bench *b = se->b;
    double t = now();

    if (status) {
        b->failed++;
    } else {
        b->done++;
        if (b->nlat == b->latcap) {
            b->latcap = b->latcap ? b->latcap * 2 : 65536;
            b->lat = realloc(b->lat, b->latcap * sizeof(*b->lat));
        }
        b->lat[b->nlat++] = t - se->started;
        if (b->ids) {
            pthread_mutex_lock(&b->mu);
            if (b->nids == b->idcap) {
                b->idcap = b->idcap ? b->idcap * 2 : 65536;
                b->ids = realloc(b->ids, b->idcap * sizeof(*b->ids));
            }
            memcpy(b->ids[b->nids++], se->id, QUEUE_ID_LEN + 1);
            pthread_mutex_unlock(&b->mu);
        }
    }
    if (t < b->end) {
        start_msg(se);
    } else if (--b->active == 0 && !b->stopping) {
        b->stopping = true;
        spool_close(b->s);
    }
}

static void start_msg(struct sess *se)
{
    struct bench *b = se->b;
    int rc;

    se->started = now();
    if ((rc = spool_msg_begin(b->s, &se->m, se->id)) != 0 ||
        (rc = spool_msg_write(se->m, payload, MSG_SIZE)) != 0 ||
        (rc = spool_msg_commit(se->m, &b->env, committed, se)) != 0)
        die("commit", rc);
}

static const char *bench_dir;
static volatile int deleter_stop;
static size_t deleted;

static void *deleter(void *arg)
{
    struct bench *b = arg;
    spool_fs *fs;
    char id[QUEUE_ID_LEN + 1];
    int rc;

    if ((rc = spool_fs_open(bench_dir, false, &fs)) != 0)
        die("deleter open", rc);
    for (;;) {
        bool have = false;
        pthread_mutex_lock(&b->mu);
        if (deleted < b->nids) {
            memcpy(id, b->ids[deleted], sizeof(id));
            have = true;
        }
        pthread_mutex_unlock(&b->mu);
        if (!have) {
            if (__atomic_load_n(&deleter_stop, __ATOMIC_RELAXED))
                break;
            usleep(1000);
            continue;
        }
        /* As the runner does. A journaled message reaches queue/ at its
         * checkpoint, milliseconds after its callback: wait for it. */
        if ((rc = spool_fs_remove_unsynced(fs, id)) == -ENOENT &&
            !__atomic_load_n(&deleter_stop, __ATOMIC_RELAXED)) {
            usleep(1000);
            continue;
        }
        if (rc != 0 && rc != -ENOENT)
            die("remove", rc);
        deleted++;
    }
    spool_fs_close(fs);
    return NULL;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_spool(const char *dir, int sessions, double seconds, bool del)
{
    struct bench b;
    pthread_t th;
    int rc;

    memset(&b, 0, sizeof(b));
    rm_rf(dir);
    bench_dir = dir;
    if ((rc = uv_loop_init(&b.loop)) != 0 || (rc = spool_open(&b.loop, dir, &b.s)) != 0)
        die("spool_open", rc);
    make_envelope(&b.env);
    pthread_mutex_init(&b.mu, NULL);
    if (del) {
        b.idcap = 65536;
        b.ids = malloc(b.idcap * sizeof(*b.ids));
        pthread_create(&th, NULL, deleter, &b);
    }
    struct sess *se = calloc((size_t)sessions, sizeof(*se));
    double t0 = now();
    b.end = t0 + seconds;
    b.active = sessions;
    for (int i = 0; i < sessions; i++) {
        se[i].b = &b;
        start_msg(&se[i]);
    }
    spool *s = b.s;
    spool_stats st = {0};
    /* Stats before the close frees the spool: poll them as we go. */
    while (uv_run(&b.loop, UV_RUN_ONCE)) {
        if (!b.stopping)
            spool_get_stats(s, &st);
    }
    double elapsed = now() - t0;
    if (del) {
        __atomic_store_n(&deleter_stop, 1, __ATOMIC_RELAXED);
        pthread_join(th, NULL);
    }
    qsort(b.lat, b.nlat, sizeof(*b.lat), cmpd);
    const char *method = getenv("SLUICE_SPOOL_SYNC") ? getenv("SLUICE_SPOOL_SYNC") : "syncfs";
    printf("%-9s sessions=%-4d %8.0f msgs/s  batches=%-6llu avg batch=%5.1f max=%-4zu "
           "latency p50=%.2f ms p99=%.2f ms%s\n",
           method, sessions, (double)b.done / elapsed, (unsigned long long)st.batches,
           st.batches ? (double)st.committed / (double)st.batches : 0.0, st.max_batch,
           b.nlat ? b.lat[b.nlat / 2] * 1e3 : 0.0, b.nlat ? b.lat[b.nlat * 99 / 100] * 1e3 : 0.0,
           del ? "  (with deletes)" : "");
    printf("          writer busy %4.1f%%  (%.0f us/msg)   syncer busy %4.1f%%  (%.2f ms/batch)\n",
           (double)st.write_us / 1e4 / elapsed,
           st.committed ? (double)st.write_us / (double)st.committed : 0.0,
           (double)st.sync_us / 1e4 / elapsed,
           st.batches ? (double)st.sync_us / 1e3 / (double)st.batches : 0.0);
    if (b.failed)
        printf("  %zu commits failed\n", b.failed);
    uv_loop_close(&b.loop);
    envelope_free(&b.env);
    free(b.lat);
    free(b.ids);
    free(se);
    rm_rf(dir);
    return b.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    memset(payload, 'x', sizeof(payload));
    memcpy(payload, "Subject: bench\r\n\r\n", 18);
    payload[MSG_SIZE - 2] = '\r';
    payload[MSG_SIZE - 1] = '\n';
    log_init("spool_commit_bench", 0);
    log_set_level(LOG_LVL_WARN);
    if (argc >= 6 && !strcmp(argv[1], "raw")) {
        size_t batch = (size_t)atol(argv[5]), count = (size_t)atol(argv[3]);
        if (batch < 1 || count < batch)
            return 2;
        printf("%-12s batch=%-3zu %9.0f msgs/s\n", argv[4], batch,
               raw_cell(argv[2], argv[4], batch, count - count % batch));
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "raw"))
        return run_raw(argv[2], argc > 3 ? (size_t)atol(argv[3]) : 2048);
    if (argc >= 5 && !strcmp(argv[1], "spool"))
        return run_spool(argv[2], atoi(argv[3]), atof(argv[4]),
                         argc > 5 && !strcmp(argv[5], "delete"));
    fprintf(stderr,
            "usage: %s raw DIR [COUNT [METHOD BATCH]]\n"
            "       %s spool DIR SESSIONS SECONDS [delete]\n",
            argv[0], argv[0]);
    return 2;
}
