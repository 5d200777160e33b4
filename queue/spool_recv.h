/*
 * spool_recv.h - private to spool_msg.c and spool_commit.c: the receiving
 * spool of sluice-smtpd and its messages.
 *
 * Threads and ownership:
 *   loop thread     every spool_* / spool_msg_* call, every callback
 *   libuv pool      flush and discard work for one message
 *   writer          writes committed messages into incoming/ (req -> prep)
 *   syncer          group commits what the writer prepared (prep -> done)
 * A spool_msg belongs to the loop until spool_msg_commit queues it; from
 * then on to the writer, then the syncer, until it is on the done list; the
 * loop runs its callback and frees it. Fields marked (mu) are shared and
 * only touched under spool.mu.
 */
#ifndef SLUICE_SPOOL_RECV_H
#define SLUICE_SPOOL_RECV_H

#include <pthread.h>
#include <sys/un.h>

#include "spool_int.h"
#include "spool_journal.h"

/* Upper bound of one batch: keeps the descriptors a batch holds (two per
 * message) well under the usual 1024 limit. */
#define SPOOL_BATCH_MAX 256
/* Journaled messages not yet done or in queue/ before the syncer waits:
 * each holds its record's payloads in memory (~1-100 KiB). */
#define SPOOL_CK_PENDING_MAX 8192

/*
 * A journaled message between its 250 and the moment the mark may pass its
 * record: sluice-delivery said "done" (its copies exist), or the
 * checkpointer wrote it into queue/. Until then the item holds the
 * record's payloads: they are the only copy outside the journal.
 */
enum spool_ck_state {
    CK_PENDING = 0, /* in the journal only */
    CK_DONE,        /* the runner has delivered it: nothing to write */
    CK_WRITING,     /* the checkpointer is writing it into queue/ */
    CK_WRITTEN,     /* in queue/ */
};

typedef struct spool_ckpt_item {
    struct spool_ckpt_item *next; /* (mu) the announce list */
    struct spool_txn txn;         /* the checkpointer's files, when it writes them */
    uint64_t seq;
    sbuf env, msg;   /* the record's payloads */
    uint64_t due_us; /* (mu) when the checkpointer writes it, unless done first */
    int state;       /* (mu) enum spool_ck_state */
    bool handed;     /* (mu) sent to sluice-delivery: announced "late" if written */
} spool_ckpt_item;

struct spool_msg {
    spool *s;
    spool_msg *next;  /* on the request or done list (mu) */
    spool_msg *pnext; /* on the prepared list (mu): a journaled one is on both */
    struct spool_txn txn;
    sbuf buf;  /* written by spool_msg_write, not yet handed to a flush */
    sbuf fbuf; /* being written by the flush in flight */
    uint64_t size;
    uint32_t crc;
    int error; /* sticky: a failed flush fails everything after it */
    bool flushing, aborted, commit_wanted;
    spool_done_cb flush_cb, commit_cb;
    void *flush_arg, *commit_arg;
    sbuf env;            /* serialised envelope, from spool_msg_commit on */
    spool_ckpt_item *ck; /* set at submit when the message goes through the journal */
    bool journaled;      /* committed through the journal: announced by the checkpointer */
    uint64_t ck_seq;     /* journaled: its record's sequence number */
    int status;          /* result of the commit, set by the committer */
    uv_work_t work;      /* flush or discard in the libuv pool */
    int work_status;     /* result of that work */
};

struct spool {
    uv_loop_t *loop;
    spool_fs *fs;
    enum spool_sync_method method;
    uv_poll_t wake; /* on wake_fd: the threads' results are ready */
    int wake_fd;    /* eventfd, threads -> loop (spool_wake_loop) */
    pthread_t writer, syncer, ckpt;
    spool_journal *journal; /* NULL: every message takes the file commit */
    pthread_mutex_t mu;
    pthread_cond_t cv_req;            /* writer waits: request or closing */
    pthread_cond_t cv_prep;           /* syncer waits: prepared or writer gone */
    pthread_cond_t cv_ckpt;           /* checkpointer waits (CLOCK_MONOTONIC) */
    pthread_cond_t cv_mark;           /* syncer waits: mark raised, or broken */
    spool_msg *req_head, *req_tail;   /* (mu) commits to write */
    spool_msg *prep_head, *prep_tail; /* (mu) written, waiting for a sync */
    spool_msg *done_head, *done_tail; /* (mu) results for the loop */
    unsigned deferred;                /* (mu) commits waiting for a flush */
    bool closing;                     /* (mu) no new commits; drain and stop */
    bool writer_exited;               /* (mu) no more prepared messages */
    bool syncer_exited;               /* (mu) no more journaled messages */
    bool exited;                      /* (mu) the checkpointer has returned too */
    /* (mu) journaled items in seq order, a ring of ck_cap: ck[(ck_head + i) % ck_cap] */
    spool_ckpt_item **ck;
    size_t ck_cap, ck_head, ck_count;
    bool ck_urgent;                       /* (mu) the syncer waits for a checkpoint */
    spool_ckpt_item *ntf_head, *ntf_tail; /* (mu) checkpointed: to announce */
    uint64_t mark;          /* (mu) records up to here are done or in queue/, durably */
    uint64_t mark_todo;     /* (mu) the mark to write next (>= mark) */
    uint64_t mark_us;       /* (mu) when the mark was last written */
    int broken;             /* (mu) a journal write or checkpoint failed */
    int ck_write_err;       /* (mu) items wait to be written again after this error (ENOSPC...) */
    bool ck_urgent_seen;    /* (mu) a round ran since the syncer asked for one */
    uint64_t ckpt_delay_us; /* how long journaled messages wait for a checkpoint */
    uint64_t handoff_us;    /* how long one handed to the runner may wait */
    /* The hand-off (syncer thread): the socket records go out on, to
     * runner_sa; -1 when nothing is handed out (no socket for the runner's
     * answers, or a spool path too long for a socket name). */
    int handoff_fd;
    struct sockaddr_un runner_sa;
    spool_stats stats; /* (mu) */
    /* loop thread only */
    bool joined, wake_closed, retry_closed;
    /* " ID ID ..." the runner's full socket refused (EAGAIN): sent again by
     * the retry timer or the next batch. Bounded: past it the runner's scan
     * finds them. */
    sbuf unsent;
    sbuf unsent_late; /* the same for "late ID": the runner may have delivered them */
    uv_timer_t retry;
    uv_poll_t ack;   /* run/journal.sock: the runner's "done" and "keep" */
    int ack_fd;      /* -1: no hand-off */
    bool ack_closed; /* its handle is closed (or was never opened) */
    unsigned long dropped;
    size_t live; /* spool_msg not yet freed */
    void (*close_done)(void *arg);
    void *close_arg;
};

/* spool_ckpt.c */
/* Syncer: journals b[0..n) (all with ck) and settles each: status 0
 * (durable, queued for the checkpointer and handed to the runner) or a
 * failure. */
void spool_journal_batch(spool *s, spool_msg **b, size_t n);
void *spool_ckpt_main(void *arg); /* the checkpointer thread */
int spool_sync_fs(spool *s);
/* Loop thread: the runner's answer about seq/id (run/journal.sock). */
void spool_ckpt_ack(spool *s, bool keep, uint64_t seq, const char *id);
void spool_fail_msg(spool *s, spool_msg *m, int rc, const char *step);

/* spool_commit.c */
/* Any thread: makes the loop look at the done and announce lists. */
void spool_wake_loop(spool *s);

/* spool_commit.c */
/* Queues a commit for the next batch (loop); was_deferred: it waited for
 * a flush, and s->deferred drops in the same critical section, so the
 * committer cannot see "nothing deferred, nothing queued" in between. */
void spool_submit(spool *s, spool_msg *m, bool was_deferred);
/* A deferred commit that will not be submitted (its flush failed). */
void spool_undefer(spool *s);
void spool_msg_free(spool_msg *m); /* free after its last callback */

#endif
