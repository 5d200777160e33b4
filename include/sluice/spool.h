/*
 * spool.h - the on-disk queue. Layout under [server] spool:
 *
 *   incoming/ID.msg    a message being received (smtpd only); never
 *                      committed; emptied at start
 *   queue/ID.msg       committed message data, immutable; also the lock file
 *   queue/ID.env       committed envelope (envelope.h text form); its
 *                      presence is what makes a message committed
 *   queue/ID.env.new   an envelope update being written; removed at start
 *   corrupt/           quarantined files that failed to parse or verify
 *   run/delivery.sock  datagram socket of sluice-delivery (notify + control)
 *   run/submit.sock    stream socket of sluice-smtpd for `sluice sendmail`
 *
 * Commit (docs/spool.md): data and envelope are written under incoming/,
 * made durable, renamed into queue/ (.msg first, .env last), and the queue/
 * directory is synced; only then is the commit reported done and 250 sent.
 * Many sessions' messages share one sync (group commit).
 *
 * Folders are 0700, files 0600. All functions return 0 or a negative errno.
 */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "envelope.h"
#include "queue_id.h"

/* ---- synchronous filesystem operations (delivery, CLI; may block) ---- */

typedef struct spool_fs spool_fs;

/* Opens the spool at root; create: make missing folders (0700). */
int spool_fs_open(const char *root, bool create, spool_fs **out);
void spool_fs_close(spool_fs *fs);
const char *spool_fs_root(const spool_fs *fs);

/*
 * Start-of-day recovery: empties incoming/, removes queue/ *.env.new and a
 * queue/ID.msg that has no ID.env (a crash between the two renames, never
 * acknowledged). Quarantines names that are not queue ids. Returns the
 * number of leftovers removed, or a negative errno.
 */
int spool_fs_recover(spool_fs *fs);

/*
 * Waits (up to timeout_ms) for the commits under way when called to reach
 * queue/: a message whose 250 came from the journal is moved there by a
 * checkpoint some milliseconds later. For the CLI, so that an id just
 * given in a 250 is found. Best effort; never fails.
 */
void spool_fs_settle(spool_fs *fs, int timeout_ms);

/* All committed ids, sorted (= by arrival). Caller frees *ids. */
int spool_fs_list(spool_fs *fs, char (**ids)[QUEUE_ID_LEN + 1], size_t *n);

/*
 * Reads and parses queue/ID.env into e (initialised by the caller).
 * -ENOENT if the message is gone. A file that does not parse, or whose
 * message file is missing or of the wrong size, is moved to corrupt/, logged,
 * and -EBADMSG returned.
 */
int spool_fs_load(spool_fs *fs, const char *id, envelope *e);
/* The same without the message file's checks, for a caller that holds the
 * lock (spool_fs_lock opened the file and checked its name) and verifies
 * it next (spool_fs_verify_message_fd checks its size and CRC). */
int spool_fs_load_locked(spool_fs *fs, const char *id, envelope *e);

/* Atomic envelope replace: write ID.env.new, fsync, rename, fsync queue/. */
int spool_fs_store(spool_fs *fs, const envelope *e);

/* Removes a committed message: ID.env first (uncommits), then ID.msg; syncs. */
int spool_fs_remove(spool_fs *fs, const char *id);

/*
 * The same without the fsync of queue/, for the runner's removal of a
 * message that is done. Nothing depends on that removal being durable: a
 * power cut may bring the message back, and then its delivery keys find the
 * local copies already in their Maildirs (remote ones are sent again, as
 * with Postfix, which does not sync its removals either). A kill -9 cannot
 * bring it back: the unlink is in the kernel once it returns.
 */
int spool_fs_remove_unsynced(spool_fs *fs, const char *id);

/* Opens queue/ID.msg read-only. */
int spool_fs_open_message(spool_fs *fs, const char *id, int *fd);

/*
 * Per-message lock shared by sluice-delivery and the CLI: flock() on
 * queue/ID.msg. wait=false gives -EWOULDBLOCK when another holds it.
 * A crashed holder's lock vanishes with it. Release with spool_fs_unlock.
 */
int spool_fs_lock(spool_fs *fs, const char *id, bool wait, int *lockfd);
void spool_fs_unlock(int lockfd);

/* Moves queue/ID.env and queue/ID.msg to corrupt/ and logs why. */
int spool_fs_quarantine(spool_fs *fs, const char *id, const char *why);

/*
 * Commits a whole new message in one call (used for DSNs and by tools):
 * e->id must be set (queue_id_new); e->size and e->crc32 are filled in.
 * Durable when it returns 0.
 */
int spool_fs_inject(spool_fs *fs, envelope *e, const char *data, size_t len);

/* Path helpers: "<root>/run/delivery.sock", "<root>/run/submit.sock". */
int spool_path(const char *root, const char *rel, char *out, size_t outsz);
#define SPOOL_DELIVERY_SOCK "run/delivery.sock"
#define SPOOL_SUBMIT_SOCK "run/submit.sock"
/* sluice-smtpd's datagram socket for the runner's "done"/"keep" (handoff_format.h). */
#define SPOOL_JOURNAL_SOCK "run/journal.sock"

/*
 * Sends one datagram to sluice-delivery: "new ID [ID...]", "flush [ID...]".
 * Non-blocking and best effort: -ENOENT / -ECONNREFUSED / -EAGAIN when no
 * runner listens or its queue is full (its periodic scan catches up).
 */
int spool_notify_delivery(const char *root, const char *text, size_t len);

/* ---- asynchronous receive and group commit (sluice-smtpd, libuv) ---- */

typedef struct spool spool;
typedef struct spool_msg spool_msg;
typedef void (*spool_done_cb)(void *arg, int status);

/*
 * Opens the spool for receiving on loop: runs recovery of incoming/, starts
 * the committer. Blocking (call at start, before serving).
 */
int spool_open(uv_loop_t *loop, const char *root, spool **out);
/* Stops the committer after pending commits finish; then cb. */
void spool_close(spool *s);

/*
 * Starts a message: a new queue id (copied to id_out) and an empty
 * in-memory buffer. No file exists until data is flushed or committed.
 */
int spool_msg_begin(spool *s, spool_msg **out, char id_out[QUEUE_ID_LEN + 1]);

/*
 * Appends message bytes (already dot-unstuffed, CRLF line ends) to memory.
 * Never blocks. When spool_msg_pending() reaches SPOOL_MSG_FLUSH_AT the
 * caller should pause reading its client and call spool_msg_flush.
 */
#define SPOOL_MSG_FLUSH_AT (256u * 1024u)
int spool_msg_write(spool_msg *m, const void *data, size_t len);
size_t spool_msg_pending(const spool_msg *m);
uint64_t spool_msg_size(const spool_msg *m); /* total bytes written so far */

/*
 * Writes the pending bytes to incoming/ID.msg off the loop; cb(arg, status)
 * on the loop when done. At most one flush in flight per message;
 * spool_msg_write may be called meanwhile (the data waits in memory).
 */
int spool_msg_flush(spool_msg *m, spool_done_cb cb, void *arg);

/*
 * Commits: the envelope (id, size and crc32 are filled in from the message;
 * env is serialised before this returns, so the caller may free it) and the
 * data become durable in a group commit; then the message is renamed into
 * queue/, sluice-delivery is notified, and cb(arg, 0) runs on the loop.
 * On failure cb gets a negative errno and nothing of the message remains.
 * The spool_msg is freed after cb returns, whatever the status.
 */
int spool_msg_commit(spool_msg *m, const envelope *env, spool_done_cb cb, void *arg);

/* Discards an uncommitted message and frees it (safe with a flush in flight). */
void spool_msg_abort(spool_msg *m);

/* ---- added by the spool module ---- */

/*
 * Reads queue/ID.msg and checks its size and CRC-32 against e (loaded
 * with spool_fs_load). On a mismatch or a read error the message is moved
 * to corrupt/, logged, and -EBADMSG returned. Reads the whole file.
 */
int spool_fs_verify_message(spool_fs *fs, const envelope *e);
/* The same through fd, an open descriptor of queue/ID.msg (read with pread,
 * so its offset is left alone): the lock's, which saves an open. */
int spool_fs_verify_message_fd(spool_fs *fs, const envelope *e, int fd);

/*
 * Bytes of one message spool_msg_write keeps in memory (the caller flushes
 * long before: SPOOL_MSG_FLUSH_AT); beyond it spool_msg_write fails with
 * -ENOBUFS instead of growing without bound.
 */
#define SPOOL_MSG_MEM_MAX (64u << 20)

/*
 * spool_close, then done(arg) on the loop once the committer has finished,
 * its handle is closed and the last spool_msg is gone (the spool is freed
 * just before done runs). spool_close(s) is spool_close_then(s, NULL, NULL).
 */
void spool_close_then(spool *s, void (*done)(void *arg), void *arg);

/* Counters of the group committer (for logs, `queue stats`, the bench). */
typedef struct spool_stats {
    uint64_t batches;        /* group commits (syncs) done */
    uint64_t committed;      /* messages reported committed (cb status 0) */
    uint64_t failed;         /* messages reported failed */
    size_t max_batch;        /* largest batch seen */
    uint64_t write_us;       /* time spent writing files into incoming/ */
    uint64_t sync_us;        /* time spent in the batches' syncs, renames, fsyncs */
    uint64_t journaled;      /* messages committed through the journal */
    uint64_t checkpoints;    /* checkpoints of journaled messages into queue/ */
    uint64_t handed_done;    /* journaled messages sluice-delivery delivered from the hand-off */
    uint64_t handoff_failed; /* journaled messages the hand-off could not reach the runner with */
    uint64_t ckpt_us;        /* time spent in them */
} spool_stats;
void spool_get_stats(spool *s, spool_stats *out);

#endif
