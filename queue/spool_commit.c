/*
 * spool_commit.c - the group committer of sluice-smtpd (spool_open,
 * spool_close, and the two threads that make messages durable).
 *
 * Why a group commit: a durable commit costs a disk flush, a millisecond
 * or more whatever is in it, so one flush per message caps a server near
 * 1,000 messages/s however many sessions it serves. One flush for every
 * message that is ready makes the cost per message shrink as load grows,
 * which is when it matters (docs/spool.md has the numbers).
 *
 * Two threads form a pipeline, so writing the next group overlaps with
 * syncing this one (both take milliseconds; in series they would add up):
 *
 *   writer (request list -> prepared list), one message at a time:
 *     1. write what is still in memory to the message file (a file
 *        claimed in free/ and written where it lies, else incoming/ID.msg
 *        created O_EXCL; locked either way; unless a flush already did) and
 *        the envelope to a second one (spool_txn.c). A write error fails
 *        only that message: its files are removed (or left free) and it
 *        goes straight back to the loop.
 *   syncer (prepared list -> done list), ALL prepared messages as a batch:
 *     2. sync: one syncfs() of the spool filesystem (default), or an
 *        fdatasync() of each file ($SLUICE_SPOOL_SYNC=fdatasync). Data and
 *        envelope reach the disk before any name in queue/ points at them.
 *        Only messages whose write() calls had all returned are in the
 *        batch, so the sync covers every byte of them. A failed syncfs
 *        fails the whole batch (we cannot tell whose data was lost); a
 *        failed fdatasync fails that message.
 *     3. rename each .msg, then its .env, into queue/ (never replacing).
 *     4. fsync(queue/) once: the new names are durable. If it fails, the
 *        batch's names are removed again and the batch fails.
 *     5. close (releasing the locks), hand the batch to the loop
 *        (spool_wake_loop); there each callback runs (status 0 = durable: the
 *        session may say 250), then one "new ID ..." datagram per batch
 *        goes to sluice-delivery.
 * Never is a success reported for a message whose files were not synced,
 * and every failure removes the message's files (spool_txn_discard).
 *
 * Messages written while a batch is being synced form the next batch; so
 * batches grow with the load by themselves, with no timer and no waiting
 * when the server is idle.
 *
 * Small messages (all of them in memory, record up to JOURNAL_REC_MAX) skip
 * steps 1-4 before their 250: they go to the syncer when submitted, which
 * appends them to the journal with one write made durable, and that is the
 * 250. The syncer then hands their records to sluice-delivery, which may
 * deliver them straight from that copy; whatever the runner does not
 * report done in time, the checkpointer (spool_ckpt.c) writes into queue/
 * with steps 1-4, off the path of the reply.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"
#include "sluice/handoff_format.h"
#include "sluice/journal_format.h"
#include "spool_recv.h"

/* ---- writer and syncer threads ---- */

/* Step 1, for one message: its file and its envelope's. */
static int write_files(spool *s, spool_msg *m)
{
    int rc = spool_txn_write_msg(s->fs, &m->txn, m->buf.data, m->buf.len);
    return rc ? rc : spool_txn_write_env(s->fs, &m->txn, m->env.data, m->env.len);
}

/* Step 2 for a batch: its data and envelopes on disk. 0, or the syncfs error. */
static int sync_data(spool *s, spool_msg **batch, size_t n)
{
    int rc;
    if (s->method == SPOOL_SYNC_FDATASYNC) {
        for (size_t i = 0; i < n; i++)
            if ((rc = spool_txn_datasync(&batch[i]->txn)) != 0)
                spool_fail_msg(s, batch[i], rc, "fdatasync");
        return 0;
    }
    return spool_sync_fs(s);
}

/* Step 3: renames each written message into queue/; returns how many made it. */
static size_t rename_batch(spool *s, spool_msg **batch, size_t n, spool_msg **named)
{
    size_t k = 0;
    int rc;
    for (size_t i = 0; i < n; i++) {
        spool_msg *m = batch[i];
        if (m->status != 0)
            continue;
        if ((rc = spool_txn_rename(s->fs, &m->txn)) != 0)
            spool_fail_msg(s, m, rc, "rename");
        else
            named[k++] = m;
    }
    return k;
}

/* Step 4 alone: one fsync(queue/) makes the names durable, or all fail. */
static void sync_names(spool *s, spool_msg **named, size_t n)
{
    int rc;
    if (n == 0)
        return;
    if ((rc = spool_fsync(s->fs->queue_fd)) != 0) {
        for (size_t i = 0; i < n; i++)
            spool_fail_msg(s, named[i], rc, "fsync queue/");
        /* Best effort to make the removals durable; a message that comes
         * back after a crash was never acknowledged, so the worst case is
         * a duplicate, never a loss. */
        spool_fsync(s->fs->queue_fd);
        return;
    }
    for (size_t i = 0; i < n; i++)
        spool_txn_finish(&named[i]->txn); /* 5. committed */
}

/* Appends m to the done list and counts it; under mu. */
static void push_done(spool *s, spool_msg *m)
{
    m->next = NULL;
    if (s->done_tail)
        s->done_tail->next = m;
    else
        s->done_head = m;
    s->done_tail = m;
    if (m->status == 0)
        s->stats.committed++;
    else
        s->stats.failed++;
}

/* Under mu: to the syncer's list. */
static void push_prepared(spool *s, spool_msg *m)
{
    m->pnext = NULL;
    if (s->prep_tail)
        s->prep_tail->pnext = m;
    else
        s->prep_head = m;
    s->prep_tail = m;
    pthread_cond_signal(&s->cv_prep);
}

static void *writer_main(void *arg)
{
    spool *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->req_head && !(s->closing && s->deferred == 0))
            pthread_cond_wait(&s->cv_req, &s->mu);
        spool_msg *m = s->req_head;
        if (!m)
            break; /* closing, and nothing queued or on its way */
        s->req_head = m->next;
        if (!s->req_head)
            s->req_tail = NULL;
        int broken = s->broken;
        pthread_mutex_unlock(&s->mu);

        uint64_t t0 = spool_mono_us();
        int rc = broken ? broken : write_files(s, m);
        if (rc != 0) {
            if (broken)
                spool_txn_discard(s->fs, &m->txn); /* logged once, when it broke */
            else
                spool_fail_msg(s, m, rc, "write");
        }
        uint64_t t1 = spool_mono_us();

        pthread_mutex_lock(&s->mu);
        s->stats.write_us += t1 - t0;
        m->status = rc;
        if (rc != 0) {
            /* Failed: straight back to the loop, no need to wait for a sync. */
            push_done(s, m);
            pthread_mutex_unlock(&s->mu);
            spool_wake_loop(s);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        push_prepared(s, m);
    }
    s->writer_exited = true;
    pthread_cond_signal(&s->cv_prep);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void *syncer_main(void *arg)
{
    spool *s = arg;
    spool_msg *batch[SPOOL_BATCH_MAX];
    spool_msg *named[SPOOL_BATCH_MAX];
    spool_msg *files[SPOOL_BATCH_MAX];
    spool_msg *journaled[SPOOL_BATCH_MAX];

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->prep_head && !s->writer_exited)
            pthread_cond_wait(&s->cv_prep, &s->mu);
        if (!s->prep_head)
            break; /* the writer is gone and everything is synced */
        size_t n = 0;
        while (s->prep_head && n < SPOOL_BATCH_MAX) {
            batch[n++] = s->prep_head;
            s->prep_head = s->prep_head->pnext;
        }
        if (!s->prep_head)
            s->prep_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        uint64_t t0 = spool_mono_us();
        /* Journaled messages first: theirs is the short path. */
        size_t nj = 0, nf = 0;
        for (size_t i = 0; i < n; i++) {
            if (batch[i]->ck)
                journaled[nj++] = batch[i];
            else
                files[nf++] = batch[i];
        }
        if (nj)
            spool_journal_batch(s, journaled, nj);
        int rc = nf ? sync_data(s, files, nf) : 0;
        if (rc != 0) {
            /* We cannot tell whose data was lost: the whole batch fails. */
            for (size_t i = 0; i < nf; i++)
                spool_fail_msg(s, files[i], rc, "syncfs");
        } else if (nf) {
            /*
             * Steps 3 and 4 always follow the data sync of their own batch.
             * Folding the fsync(queue/) into the next batch's syncfs was
             * measured (16 % more at 50 sessions) and left out: on ext4
             * without a journal syncfs writes the last metadata blocks (the
             * directory's inode among them) after its device cache flush,
             * so only the fsync of queue/ makes the new names survive a
             * power cut.
             */
            sync_names(s, named, rename_batch(s, files, nf, named));
        }
        uint64_t t1 = spool_mono_us();

        pthread_mutex_lock(&s->mu);
        s->stats.sync_us += t1 - t0;
        s->stats.batches++;
        if (n > s->stats.max_batch)
            s->stats.max_batch = n;
        for (size_t i = 0; i < n; i++)
            push_done(s, batch[i]);
        pthread_mutex_unlock(&s->mu);
        spool_wake_loop(s);
        pthread_mutex_lock(&s->mu);
    }
    s->syncer_exited = true;
    pthread_cond_signal(&s->cv_ckpt);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- loop side ---- */

/*
 * A message that was never flushed (all of it in memory) and is small
 * enough goes through the journal (spool_ckpt.c). It goes to the syncer at
 * once, as well as to the writer: its record holds every byte, so the
 * journal write need not wait for its files, and the 250 waits for the
 * longer of the two instead of their sum (traced at one session without
 * the runner: body to journal write 0.20 -> 0.10 ms of the ~0.8 ms a
 * message cost; docs/performance.md).
 */
void spool_submit(spool *s, spool_msg *m, bool was_deferred)
{
    if (s->journal && m->txn.msg_fd < 0 &&
        journal_rec_size(m->env.len, m->buf.len) <= JOURNAL_REC_MAX)
        m->ck = calloc(1, sizeof(*m->ck)); /* NULL: the file commit, as for big ones */
    m->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (was_deferred)
        s->deferred--;
    if (s->broken && m->ck) {
        free(m->ck); /* the writer fails it */
        m->ck = NULL;
    }
    if (m->ck) {
        push_prepared(s, m); /* the syncer alone: its record is its only copy */
    } else {
        if (s->req_tail)
            s->req_tail->next = m;
        else
            s->req_head = m;
        s->req_tail = m;
        pthread_cond_signal(&s->cv_req);
    }
    pthread_mutex_unlock(&s->mu);
}

void spool_undefer(spool *s)
{
    pthread_mutex_lock(&s->mu);
    s->deferred--;
    pthread_cond_signal(&s->cv_req);
    pthread_mutex_unlock(&s->mu);
}

static void spool_free(spool *s)
{
    void (*done)(void *) = s->close_done;
    void *arg = s->close_arg;

    spool_journal_close(s->journal);
    spool_fs_close(s->fs);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    sbuf_free(&s->unsent);
    sbuf_free(&s->unsent_late);
    free(s->ck);
    if (s->handoff_fd >= 0)
        close(s->handoff_fd);
    if (s->ack_fd >= 0)
        close(s->ack_fd);
    pthread_cond_destroy(&s->cv_req);
    pthread_cond_destroy(&s->cv_prep);
    pthread_cond_destroy(&s->cv_ckpt);
    pthread_cond_destroy(&s->cv_mark);
    pthread_mutex_destroy(&s->mu);
    free(s);
    if (done)
        done(arg);
}

static bool all_closed(const spool *s)
{
    return s->wake_closed && s->retry_closed && s->ack_closed && s->live == 0;
}

void spool_msg_free(spool_msg *m)
{
    spool *s = m->s;

    sbuf_free(&m->buf);
    sbuf_free(&m->fbuf);
    sbuf_free(&m->env);
    free(m);
    s->live--;
    if (all_closed(s))
        spool_free(s);
}

static void on_wake_closed(uv_handle_t *h)
{
    spool *s = h->data;
    s->wake_closed = true;
    if (all_closed(s))
        spool_free(s);
}

static void on_retry_closed(uv_handle_t *h)
{
    spool *s = h->data;
    s->retry_closed = true;
    if (all_closed(s))
        spool_free(s);
}

static void on_ack_closed(uv_handle_t *h)
{
    spool *s = h->data;
    s->ack_closed = true;
    if (all_closed(s))
        spool_free(s);
}

/* "new ID ID ...", one datagram per ~4000 bytes (well under the default
 * datagram limits, and one read for the runner). */
#define NOTIFY_MAX 4000

/* One " ID" of a notification. */
#define NOTIFY_ID_LEN (1 + QUEUE_ID_LEN)
/* Unsent ids kept for a retry: a few seconds of traffic at full speed. */
#define NOTIFY_UNSENT_MAX (4096 * NOTIFY_ID_LEN)
#define NOTIFY_RETRY_MS 10

/*
 * A notification being built: "new ID ..." for messages the runner has not
 * seen, "late ID ..." for messages it was handed and did not report done
 * (it may have delivered them: it looks for their delivery keys first).
 */
typedef struct notice {
    spool *s;
    const char *verb;
    size_t verb_len;
    sbuf *unsent;
    size_t len;
    char text[NOTIFY_MAX];
} notice;

static void notice_init(notice *n, spool *s, bool late)
{
    n->s = s;
    n->verb = late ? "late" : "new";
    n->verb_len = strlen(n->verb);
    n->unsent = late ? &s->unsent_late : &s->unsent;
    memcpy(n->text, n->verb, n->verb_len);
    n->len = n->verb_len;
}

static void send_unsent(spool *s);

static void on_retry(uv_timer_t *t)
{
    send_unsent(t->data);
}

/* Sends the kept ids again shortly (not once the spool is closing). */
static void arm_retry(spool *s)
{
    if (!s->joined && !uv_is_active((uv_handle_t *)&s->retry))
        uv_timer_start(&s->retry, on_retry, NOTIFY_RETRY_MS, 0);
}

/*
 * The runner's socket queues only net.unix.max_dgram_qlen (10) datagrams.
 * When it is full, the ids are kept and sent again shortly, rather than
 * left for the runner's periodic scan (a minute away).
 */
static void keep_unsent(spool *s, sbuf *unsent, const char *ids, size_t n)
{
    if (sbuf_append(unsent, ids, n) < 0) {
        if (s->dropped++ % 1000 == 0)
            log_warn("spool: sluice-delivery is not reading its socket; its scan will find the "
                     "new messages");
    }
    arm_retry(s);
}

/* Sends text ("new ID ID ..."); 0, or -EAGAIN when the socket is full. */
static int notify_send(spool *s, const char *text, size_t len)
{
    int rc = spool_notify_delivery(spool_fs_root(s->fs), text, len);
    /* Other errors (no runner listening) drop it: a runner scans at start. */
    return rc == -EAGAIN || rc == -ENOBUFS ? -EAGAIN : 0;
}

static void send_unsent_of(spool *s, bool late)
{
    notice n;
    notice_init(&n, s, late);
    while (n.unsent->len) {
        size_t k = n.unsent->len;
        size_t max = (sizeof(n.text) - n.verb_len) / NOTIFY_ID_LEN * NOTIFY_ID_LEN;
        if (k > max)
            k = max;
        memcpy(n.text + n.verb_len, n.unsent->data, k);
        if (notify_send(s, n.text, n.verb_len + k) != 0) {
            arm_retry(s);
            return;
        }
        sbuf_consume(n.unsent, k);
    }
}

static void send_unsent(spool *s)
{
    send_unsent_of(s, false);
    send_unsent_of(s, true);
}

static void notify_flush(notice *n)
{
    /* Older ids first: while some wait for a retry, new ones queue behind. */
    if (n->len > n->verb_len && (n->unsent->len || notify_send(n->s, n->text, n->len) != 0))
        keep_unsent(n->s, n->unsent, n->text + n->verb_len, n->len - n->verb_len);
    n->len = n->verb_len;
}

/* Appends " ID" to the notification being built, sending it first if full. */
static void notify_add(notice *n, const char *id)
{
    if (n->len + NOTIFY_ID_LEN > NOTIFY_MAX)
        notify_flush(n);
    n->text[n->len++] = ' ';
    memcpy(n->text + n->len, id, QUEUE_ID_LEN);
    n->len += QUEUE_ID_LEN;
}

/*
 * The threads wake the loop through an eventfd of our own rather than
 * uv_async_send: libuv's handshake makes the loop spin (then yield) while
 * the sender is between its write and its "done" flag, and when the woken
 * loop preempts the sender on the same CPU that is exactly where the sender
 * stops. Traced at one session: a sched_yield before one 250 in five,
 * after ~30 us of spinning (docs/performance.md).
 */
void spool_wake_loop(spool *s)
{
    uint64_t one = 1;
    /* EAGAIN: the counter is full, so the loop wakes anyway. */
    while (write(s->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void close_ack(spool *s)
{
    if (s->ack_fd >= 0 && !s->ack_closed && !uv_is_closing((uv_handle_t *)&s->ack)) {
        char path[4096];
        if (spool_path(spool_fs_root(s->fs), SPOOL_JOURNAL_SOCK, path, sizeof(path)) == 0)
            unlink(path);
        uv_close((uv_handle_t *)&s->ack, on_ack_closed);
    }
}

static void on_wake(uv_poll_t *h, int status, int events)
{
    spool *s = h->data;
    notice fresh, late;
    bool exited;
    uint64_t n;

    (void)status; /* an eventfd does not fail; the lists are read anyway */
    (void)events;
    /* Reset before reading the lists: a wake after this is not lost. */
    while (read(s->wake_fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&s->mu);
    spool_msg *m = s->done_head;
    s->done_head = s->done_tail = NULL;
    spool_ckpt_item *ck = s->ntf_head;
    s->ntf_head = s->ntf_tail = NULL;
    exited = s->exited;
    pthread_mutex_unlock(&s->mu);

    send_unsent(s);
    notice_init(&fresh, s, false);
    notice_init(&late, s, true);
    while (m) {
        spool_msg *next = m->next;
        /* A journaled message is handed over or announced by the committer's threads. */
        if (m->status == 0 && !m->journaled)
            notify_add(&fresh, m->txn.id);
        if (m->commit_cb)
            m->commit_cb(m->commit_arg, m->status);
        spool_msg_free(m);
        m = next;
    }
    while (ck) {
        spool_ckpt_item *next = ck->next;
        notify_add(ck->handed ? &late : &fresh, ck->txn.id);
        free(ck);
        ck = next;
    }
    /* After the callbacks: the 250s are on their way before the runner
     * starts reading the files. */
    notify_flush(&fresh);
    notify_flush(&late);

    if (exited && !s->joined) {
        pthread_join(s->writer, NULL);
        pthread_join(s->syncer, NULL);
        pthread_join(s->ckpt, NULL);
        s->joined = true;
        send_unsent(s); /* a last try; what is left, the runner's scan finds */
        uv_timer_stop(&s->retry);
        close_ack(s);
        uv_close((uv_handle_t *)&s->retry, on_retry_closed);
        uv_close((uv_handle_t *)&s->wake, on_wake_closed);
    }
}

/* ---- the runner's answers (run/journal.sock) ---- */

static void take_ack(void *arg, bool keep, uint64_t seq, const char *id)
{
    spool_ckpt_ack(arg, keep, seq, id);
}

static void on_ack(uv_poll_t *h, int status, int events)
{
    spool *s = h->data;
    char buf[HANDOFF_DGRAM_MAX + 1];
    (void)events;
    if (status < 0)
        return;
    /* A bounded batch per wake-up: a flood cannot starve the loop. */
    for (int i = 0; i < 64; i++) {
        ssize_t len = recv(s->ack_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (len < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("spool: %s: recv: %s", SPOOL_JOURNAL_SOCK, strerror(errno));
            return;
        }
        size_t bad;
        if (handoff_ack_parse(buf, (size_t)len, take_ack, s, &bad) < 0 || bad)
            log_warn("spool: %s: malformed answer '%.40s'", SPOOL_JOURNAL_SOCK, buf);
    }
}

/*
 * Binds run/journal.sock for the runner's answers and opens the socket the
 * syncer hands records out with. Without either (a spool path too long for
 * a socket name, say), nothing is handed out: every journaled message is
 * written into queue/ by the checkpointer, as before the hand-off existed.
 */
static void open_handoff(spool *s)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    s->ack_closed = true;
    if (spool_path(spool_fs_root(s->fs), SPOOL_JOURNAL_SOCK, sa.sun_path, sizeof(sa.sun_path)))
        return;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    /* One sluice-smtpd per spool (the journal's lock): a socket left here
     * is a dead one's. */
    (void)unlink(sa.sun_path);
    mode_t old = umask(0077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || uv_poll_init(s->loop, &s->ack, fd) != 0) {
        log_warn("spool: cannot bind %s (%s): sluice-delivery will read every message from "
                 "queue/",
                 sa.sun_path, strerror(errno));
        close(fd);
        return;
    }
    s->ack.data = s;
    s->ack_fd = fd;
    s->ack_closed = false;
    if (uv_poll_start(&s->ack, UV_READABLE, on_ack) != 0)
        return; /* closed with the spool; nothing handed out */
    s->runner_sa.sun_family = AF_UNIX;
    if (spool_path(spool_fs_root(s->fs), SPOOL_DELIVERY_SOCK, s->runner_sa.sun_path,
                   sizeof(s->runner_sa.sun_path)) == 0)
        s->handoff_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* $SLUICE_SPOOL_JOURNAL=off: every message takes the file commit (for
 * measurements, and a way out should the journal misbehave). */
static bool journal_wanted(void)
{
    const char *v = getenv("SLUICE_SPOOL_JOURNAL");
    return !v || strcmp(v, "off") != 0;
}

/*
 * Milliseconds from $name (at most an hour), else dflt. Used for
 * $SLUICE_SPOOL_CKPT_MS, how long journaled messages may wait for their
 * checkpoint (tests set it high to find messages still in the journal), and
 * $SLUICE_SPOOL_HANDOFF_MS, how long a message handed to the runner may
 * wait for its "done" before the checkpointer writes it into queue/ (0
 * hands nothing out: every message goes through queue/).
 */
static uint64_t ms_from_env(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    char *end;
    unsigned long ms = v ? strtoul(v, &end, 10) : 0;
    return v && *v && !*end && ms <= 3600000 ? ms : dflt;
}

static int init_sync(spool *s)
{
    pthread_condattr_t attr;
    int rc = pthread_mutex_init(&s->mu, NULL);
    if (rc)
        return rc;
    /* Rare enough not to track which one failed: leak a condvar, not a crash. */
    if ((rc = pthread_cond_init(&s->cv_req, NULL)) != 0 ||
        (rc = pthread_cond_init(&s->cv_prep, NULL)) != 0 ||
        (rc = pthread_cond_init(&s->cv_mark, NULL)) != 0 ||
        (rc = pthread_condattr_init(&attr)) != 0) {
        pthread_mutex_destroy(&s->mu);
        return rc;
    }
    /* The checkpointer's timed wait must not jump with the wall clock. */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&s->cv_ckpt, &attr);
    pthread_condattr_destroy(&attr);
    if (rc)
        pthread_mutex_destroy(&s->mu);
    return rc;
}

/* Starts checkpointer, syncer and writer; on failure stops and joins
 * those that started (each exits once it sees the one before it gone). */
static int start_threads(spool *s)
{
    int rc = pthread_create(&s->ckpt, NULL, spool_ckpt_main, s);
    if (rc)
        return rc;
    if ((rc = pthread_create(&s->syncer, NULL, syncer_main, s)) == 0) {
        if ((rc = pthread_create(&s->writer, NULL, writer_main, s)) == 0)
            return 0;
        pthread_mutex_lock(&s->mu);
        s->writer_exited = true;
        pthread_cond_signal(&s->cv_prep);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->syncer, NULL);
    } else {
        pthread_mutex_lock(&s->mu);
        s->syncer_exited = true;
        pthread_cond_signal(&s->cv_ckpt);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_join(s->ckpt, NULL);
    s->joined = true;
    return rc;
}

int spool_open(uv_loop_t *loop, const char *root, spool **out)
{
    spool_fs *fs;
    int rc;

    *out = NULL;
    if ((rc = spool_fs_open(root, true, &fs)) != 0)
        return rc;
    rc = spool_fs_recover(fs);
    if (rc < 0) {
        log_err("spool: recovery of %s failed: %s", root, strerror(-rc));
        spool_fs_close(fs);
        return rc;
    }
    if (rc > 0)
        log_info("spool: removed %d leftovers of interrupted receives", rc);

    spool *s = calloc(1, sizeof(*s));
    if (!s) {
        spool_fs_close(fs);
        return -ENOMEM;
    }
    s->loop = loop;
    s->fs = fs;
    s->wake_fd = -1;
    s->handoff_fd = -1;
    s->ack_fd = -1;
    s->ack_closed = true;
    s->method = spool_sync_method_from_env();
    s->ckpt_delay_us = ms_from_env("SLUICE_SPOOL_CKPT_MS", SPOOL_CKPT_DELAY_MS) * 1000;
    s->handoff_us = ms_from_env("SLUICE_SPOOL_HANDOFF_MS", SPOOL_HANDOFF_MS) * 1000;
    sbuf_init(&s->unsent, NOTIFY_UNSENT_MAX);
    sbuf_init(&s->unsent_late, NOTIFY_UNSENT_MAX);
    s->ck_cap = SPOOL_CK_PENDING_MAX + SPOOL_BATCH_MAX;
    if (!(s->ck = calloc(s->ck_cap, sizeof(*s->ck)))) {
        spool_fs_close(fs);
        free(s);
        return -ENOMEM;
    }
    if ((rc = init_sync(s)) != 0) {
        spool_fs_close(fs);
        free(s->ck);
        free(s);
        return -rc;
    }
    if (journal_wanted()) {
        int restored, found;
        /* "late": the runner may have delivered them from the hand-off
         * before we stopped; it looks for their delivery keys first. */
        rc = spool_journal_open(fs, &s->journal, &s->unsent_late, &restored, &found);
        if (rc == 0 && (restored || found))
            log_info("spool: journal: %d message%s written back into queue/, %d found there",
                     restored, restored == 1 ? "" : "s", found);
    }
    if (rc == 0 && (s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        rc = -errno;
    if (rc == 0 && (rc = uv_poll_init(loop, &s->wake, s->wake_fd)) == 0) {
        s->wake.data = s;
        if ((rc = uv_poll_start(&s->wake, UV_READABLE, on_wake)) != 0) {
            /* The handle must be closed through the loop; s goes with it. */
            s->close_done = NULL;
            s->retry_closed = true; /* not made yet */
            uv_close((uv_handle_t *)&s->wake, on_wake_closed);
            return rc;
        }
    }
    if (rc != 0) {
        /* Nothing of the loop's holds s now. */
        s->close_done = NULL;
        spool_free(s);
        return rc;
    }
    uv_timer_init(loop, &s->retry); /* cannot fail */
    s->retry.data = s;
    if (s->journal && s->handoff_us > 0)
        open_handoff(s); /* before the threads: the syncer reads handoff_fd */

    /* Signals belong to the loop thread (libuv's signal handling). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = start_threads(s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        /* The handles must be closed through the loop; s goes with them. */
        close_ack(s);
        uv_close((uv_handle_t *)&s->retry, on_retry_closed);
        uv_close((uv_handle_t *)&s->wake, on_wake_closed);
        return -rc;
    }
    if (s->method == SPOOL_SYNC_FDATASYNC)
        log_info("spool: group commit syncs each file (SLUICE_SPOOL_SYNC=fdatasync)");
    if (!s->journal)
        log_info(
            "spool: journal off (SLUICE_SPOOL_JOURNAL=off): every message takes the file commit");
    if (s->unsent_late.len)
        arm_retry(s); /* announce what recovery wrote back */
    *out = s;
    return 0;
}

void spool_close_then(spool *s, void (*done)(void *arg), void *arg)
{
    if (!s)
        return;
    s->close_done = done;
    s->close_arg = arg;
    pthread_mutex_lock(&s->mu);
    s->closing = true;
    pthread_cond_signal(&s->cv_req);
    pthread_mutex_unlock(&s->mu);
}

void spool_close(spool *s)
{
    spool_close_then(s, NULL, NULL);
}

void spool_get_stats(spool *s, spool_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}
