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
#define SPOOL_FREE_HELD 4096            /* inodes of our own claims, skipped by a listing */

struct spool_free {
    pthread_mutex_t mu;
    char names[SPOOL_FREE_HINTS][QUEUE_ID_LEN + sizeof(".env.new")];
    size_t n;           /* names[0..n) were in free/ at the last listing */
    size_t count;       /* files in free/, as far as we know */
    int64_t scanned_ms; /* last listing (names and count) */
    /* Files we hold claimed stay in free/ until renamed; a listing skips
     * them (else they cluster at the end of the next list, where the
     * takers look first). Open addressing by inode, 0 = empty. */
    ino_t held[SPOOL_FREE_HELD];
    size_t nheld;
    uint64_t pick; /* xorshift state: which hint to try next */
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
 * Claims a file in free/ where it lies: opens it for writing at offset 0,
 * flock()s it, checks that free/name still names it, and returns that name,
 * the descriptor and the file's size. The file stays in free/ under its old
 * name until the caller renames it (spool_txn_rename); whatever happens,
 * nobody else touches it while the caller holds the descriptor, and if the
 * caller closes it unrenamed it is simply free again. Not truncated:
 * freeing blocks costs a synchronous discard on a filesystem mounted with
 * it, so the caller overwrites the old content and cuts the file to its new
 * length when it was longer. -ENOENT when free/ has nothing usable (the
 * caller creates a file instead).
 */
int spool_free_claim(spool_fs *fs, char name[SPOOL_NAME_MAX], int *fd, off_t *size, ino_t *ino);
/* The claim on inode ino ended: the file left free/, or is free again. */
void spool_free_release(spool_fs *fs, ino_t ino);

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
 * One message on its way into queue/ (spool_txn.c), shared by the group
 * committer and spool_fs_inject so both follow one protocol:
 *   write_msg -> write_env -> [caller makes the files durable] ->
 *   rename (.msg, then .env) -> [caller syncs queue/] -> finish (closes,
 *   releasing the locks).
 * Each file is either claimed in free/ and written where it lies, under its
 * old name, or (free/ has nothing) created in incoming/ as ID.msg, ID.env.
 * The two are in the same folder, so a recovery in another process sees
 * either both (incoming/, protected by the lock on ID.msg) or neither
 * (free/, which it never reads). discard undoes whatever was done, wherever
 * the files are now.
 */
struct spool_txn {
    char id[QUEUE_ID_LEN + 1];
    int msg_fd;             /* locked; -1 until claimed or created */
    int env_fd;             /* open (and locked if claimed) from write_env to finish */
    int msg_dir;            /* folder of msg_fd until renamed: fs->free_fd or fs->incoming_fd */
    int env_dir;            /* likewise; -1 until written */
    ino_t msg_ino, env_ino; /* inodes of claimed files (0 when created) */
    char msg_name[SPOOL_NAME_MAX], env_name[SPOOL_NAME_MAX]; /* their names there */
    bool msg_renamed, env_renamed;
    off_t msg_old_size; /* a claimed file's old length (cut if longer than ours) */
    uint64_t msg_len;   /* bytes written to msg_fd */
};

void spool_txn_init(struct spool_txn *t, const char *id);
int spool_txn_write_msg(spool_fs *fs, struct spool_txn *t, const void *data, size_t len);
int spool_txn_write_env(spool_fs *fs, struct spool_txn *t, const void *text, size_t len);
/* fdatasync of both files (the per-file sync method). */
int spool_txn_datasync(struct spool_txn *t);
int spool_txn_rename(spool_fs *fs, struct spool_txn *t);
void spool_txn_discard(spool_fs *fs, struct spool_txn *t);
void spool_txn_finish(struct spool_txn *t);

#endif
