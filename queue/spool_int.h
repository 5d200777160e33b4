/*
 * spool_int.h - private to queue/spool_*.c: the spool_fs structure and the
 * small I/O helpers every spool file uses. Every helper returns 0 (or a
 * count) or a negative errno, retries EINTR and loops on short writes.
 */
#ifndef SLUICE_SPOOL_INT_H
#define SLUICE_SPOOL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sluice/buf.h"
#include "sluice/spool.h"

/* free/ (spool_free.c): recycled spool files. */
#define SPOOL_FREE_MAX 2048             /* files kept */
#define SPOOL_FREE_SIZE_MAX (64 * 1024) /* larger files are deleted, not kept */
#define SPOOL_FREE_HINTS 1024           /* names remembered from one listing */
#define SPOOL_FREE_RESCAN_MS 100        /* an empty list is refilled at most this often */
#define SPOOL_FREE_RECOUNT_MS 5000      /* a giver recounts the folder this often */
#define SPOOL_FREE_TRIES 8              /* files tried per take before creating one */

struct spool_free {
    pthread_mutex_t mu;
    char names[SPOOL_FREE_HINTS][QUEUE_ID_LEN + sizeof(".env.new")];
    size_t n;           /* names[0..n) were in free/ at the last listing */
    size_t count;       /* files in free/, as far as we know */
    int64_t scanned_ms; /* last listing (names and count) */
};

struct spool_fs {
    char *root;
    /* Kept open for the life of the handle: every operation is an *at()
     * call relative to these, so a long root path is parsed once and a
     * rename of the spool's parent cannot redirect us halfway. */
    int root_fd;
    int incoming_fd;
    int queue_fd;
    int corrupt_fd;
    int run_fd;
    int free_fd; /* -1: no recycling (free/ missing and not created) */
    struct spool_free free;
    uid_t euid; /* at open (after any privilege drop): owner of files we made */
};

/* "ID.msg", "ID.env", "ID.env.new": an id plus the longest extension. */
#define SPOOL_NAME_MAX (QUEUE_ID_LEN + sizeof(".env.new"))
#define SPOOL_EXT_MSG ".msg"
#define SPOOL_EXT_ENV ".env"
#define SPOOL_EXT_NEW ".env.new"
#define JOURNAL_NAME "journal" /* sluice-smtpd's write-ahead journal, in the spool root */

void spool_name(char out[SPOOL_NAME_MAX], const char *id, const char *ext);

/*
 * Instead of unlinking dirfd/name (a spool file no longer needed), keeps it
 * in free/ for reuse, or unlinks it when it is large or free/ is full.
 * 0 when the name is gone from dirfd, else -errno (-ENOENT: it was not there).
 */
int spool_free_give(spool_fs *fs, int dirfd, const char *name);
/*
 * Renames a file from free/ to dirfd/name (which must not exist) and opens
 * it for writing at offset 0, flock()ed when lock. Not truncated: freeing
 * blocks costs a synchronous discard on a filesystem mounted with it, so
 * the caller overwrites the old content and cuts the file to its new
 * length when done (ftruncate). 0 with *fd, or -ENOENT when free/ has
 * nothing usable (the caller creates the file instead).
 */
int spool_free_take(spool_fs *fs, int dirfd, const char *name, bool lock, int *fd);

int spool_write_all(int fd, const void *data, size_t len);
int spool_fsync(int fd);
int spool_fdatasync(int fd);
/* CLOCK_MONOTONIC in microseconds (the committer's timings, free/'s rescans). */
uint64_t spool_mono_us(void);
/* close() of a file we wrote: an error there is a write error. */
int spool_close_written(int fd);

/*
 * Creates dirfd/name with O_EXCL, mode 0600, and takes flock(LOCK_EX) on
 * it. The lock marks the file as live for spool_fs_recover running in
 * another process; if recover removed the name between our create and our
 * lock (st_nlink == 0 once we hold it), the create is retried.
 */
int spool_create_locked(int dirfd, const char *name, int *fd);

/* rename that refuses to replace an existing target (RENAME_NOREPLACE),
 * falling back to renameat() where the filesystem lacks it. */
int spool_rename_noreplace(int from_dir, const char *from, int to_dir, const char *to);

/* Reads all of dirfd/name (at most max bytes, else -EFBIG) into out;
 * -EBADMSG if it is not a regular file (a symlink, FIFO, folder). */
int spool_read_file(int dirfd, const char *name, size_t max, sbuf *out);

/* Unlinks dirfd/name, ignoring ENOENT (cleanup paths). */
void spool_unlink_quiet(int dirfd, const char *name);

/* How the committer makes a batch durable (docs/spool.md, "Measurements"). */
enum spool_sync_method {
    SPOOL_SYNC_SYNCFS = 0, /* one syncfs() of the spool filesystem per batch */
    SPOOL_SYNC_FDATASYNC,  /* fdatasync() of every file of the batch */
};
/* From $SLUICE_SPOOL_SYNC ("syncfs" | "fdatasync"); default syncfs. */
enum spool_sync_method spool_sync_method_from_env(void);

/*
 * One message on its way from incoming/ into queue/ (spool_txn.c), shared
 * by the group committer and spool_fs_inject so both follow one protocol:
 *   write_msg (creates incoming/ID.msg O_EXCL + lock) -> write_env ->
 *   [caller makes the files durable] -> rename (.msg, then .env) ->
 *   [caller syncs queue/] -> finish (closes, releasing the lock).
 * discard undoes whatever was done, wherever the files are now.
 */
struct spool_txn {
    char id[QUEUE_ID_LEN + 1];
    int msg_fd; /* incoming/ID.msg, locked; -1 until created */
    int env_fd; /* incoming/ID.env while open; -1 otherwise */
    bool env_created;
    bool msg_renamed, env_renamed;
    bool msg_reused;  /* msg_fd is a file from free/: cut to length when complete */
    uint64_t msg_len; /* bytes written to msg_fd */
};

void spool_txn_init(struct spool_txn *t, const char *id);
int spool_txn_write_msg(spool_fs *fs, struct spool_txn *t, const void *data, size_t len);
/* keep_open: leave env_fd open for an fdatasync by the caller. */
int spool_txn_write_env(spool_fs *fs, struct spool_txn *t, const void *text, size_t len,
                        bool keep_open);
/* fdatasync of both files (the per-file sync method). */
int spool_txn_datasync(struct spool_txn *t);
int spool_txn_rename(spool_fs *fs, struct spool_txn *t);
void spool_txn_discard(spool_fs *fs, struct spool_txn *t);
void spool_txn_finish(struct spool_txn *t);

#endif
