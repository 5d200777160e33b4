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

#include "spool_int.h"
#include "spool_journal.h"

/* Upper bound of one batch: keeps the descriptors a batch holds (two per
 * message) well under the usual 1024 limit. */
#define SPOOL_BATCH_MAX 256

/* A journaled message between its 250 and its checkpoint: its files in
 * incoming/ (msg_fd keeps the lock) and its journal sequence number. */
typedef struct spool_ckpt_item {
    struct spool_ckpt_item *next; /* (mu) pending or announced list */
    struct spool_txn txn;
    uint64_t seq;
    bool void_rec; /* its files failed (452): no rename, the mark just passes it */
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
    bool written;        /* (mu) journaled: the writer is done with its files */
    int write_rc;        /* (mu) journaled: the result of writing them */
    bool journaled;      /* committed through the journal: announced after its checkpoint */
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
    pthread_cond_t cv_req;                /* writer waits: request or closing */
    pthread_cond_t cv_prep;               /* syncer waits: prepared or writer gone */
    pthread_cond_t cv_ckpt;               /* checkpointer waits (CLOCK_MONOTONIC) */
    pthread_cond_t cv_mark;               /* syncer waits: mark raised, or broken */
    pthread_cond_t cv_written;            /* syncer waits: a journaled message's files */
    spool_msg *req_head, *req_tail;       /* (mu) commits to write */
    spool_msg *prep_head, *prep_tail;     /* (mu) written, waiting for a sync */
    spool_msg *done_head, *done_tail;     /* (mu) results for the loop */
    unsigned deferred;                    /* (mu) commits waiting for a flush */
    bool closing;                         /* (mu) no new commits; drain and stop */
    bool writer_exited;                   /* (mu) no more prepared messages */
    bool syncer_exited;                   /* (mu) no more journaled messages */
    bool exited;                          /* (mu) the checkpointer has returned too */
    spool_ckpt_item *ck_head, *ck_tail;   /* (mu) journaled, waiting for a checkpoint */
    size_t ck_count;                      /* (mu) */
    uint64_t ck_first_us;                 /* (mu) when the oldest of them was journaled */
    bool ck_urgent;                       /* (mu) the syncer waits for a checkpoint */
    spool_ckpt_item *ntf_head, *ntf_tail; /* (mu) checkpointed: to announce */
    uint64_t mark;                        /* (mu) journal records up to here are in queue/ */
    int broken;                           /* (mu) a journal write or checkpoint failed */
    uint64_t ckpt_delay_us;               /* how long journaled messages wait for a checkpoint */
    spool_stats stats;                    /* (mu) */
    /* loop thread only */
    bool joined, wake_closed, retry_closed;
    /* " ID ID ..." the runner's full socket refused (EAGAIN): sent again by
     * the retry timer or the next batch. Bounded: past it the runner's scan
     * finds them. */
    sbuf unsent;
    uv_timer_t retry;
    unsigned long dropped;
    size_t live; /* spool_msg not yet freed */
    void (*close_done)(void *arg);
    void *close_arg;
};

/* spool_ckpt.c */
/* Syncer: journals b[0..n) (all with ck; their files may still be being
 * written) and settles each once the writer is done with it: status 0
 * (durable, queued for the checkpoint) or a failure. */
void spool_journal_batch(spool *s, spool_msg **b, size_t n);
void *spool_ckpt_main(void *arg); /* the checkpointer thread */
int spool_sync_fs(spool *s);
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
