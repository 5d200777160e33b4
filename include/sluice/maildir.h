/*
 * maildir.h - delivery of one message into a Maildir (cr.yp.to/proto/maildir.html).
 *
 * BLOCKING by design (mkdir, write, fsync, rename): call these from libuv's
 * thread pool (uv_queue_work), never on the loop thread. They are safe to
 * run in parallel, also for the same Maildir and the same message fd (the
 * message is read with pread). They share no state.
 *
 * A delivery: <dir>/tmp/NAME is created with O_CREAT|O_EXCL (0600), the
 * Return-Path and Delivered-To lines are written, then the message is
 * copied from the spool, fdatasync'ed, moved to <dir>/new/NAME without
 * ever replacing a file (renameat2 with RENAME_NOREPLACE; where that flag is
 * refused, the spec's link(); without hard links, rename()) and new/ is
 * fsync'ed. Only then is it reported delivered. Any
 * failure removes the tmp/ file; nothing half-written ever shows in new/.
 * A caller that delivers many messages may take new/'s fsync into its own
 * hands (defer_sync, then one maildir_sync_new for many files): it must
 * not count a delivery as done before that sync has returned.
 *
 * It may take the data's sync too (stage): the file is then written to
 * tmp/ and left there unsynced, and the caller makes many such files
 * durable at once (one syncfs() of their filesystem, rather than a flush of
 * the disk's cache per file), then moves each into new/ (maildir_publish),
 * or removes it (maildir_discard) when that sync failed. The order of the
 * spec holds: no name in new/ before its data is on stable storage.
 *
 * NAME is "<sec>.M<usec>P<pid>Q<key>.<host>": the Q part carries the
 * caller's delivery key (queue id and recipient index), so that after a
 * crash between "in new/" and "envelope updated" maildir_find_delivered()
 * tells the retry that this recipient already has the message.
 *
 * Line ends: the spool holds the message with CRLF (SMTP's form); a Maildir
 * holds LF, as Postfix's local/virtual and Dovecot's LDA write it and as
 * mail readers expect. Every CRLF pair becomes LF while copying; a lone CR
 * and every other byte (8-bit, NUL, leading dots) is copied unchanged.
 *
 * All functions return 0 (or a count) or a negative errno. Worth telling
 * apart for the caller: -ENOSPC / -EDQUOT (disk or quota full) and -EACCES
 * / -EPERM / -EROFS (permissions) are conditions an admin fixes, so defer;
 * -ENOENT means the Maildir's parent folder does not exist (it is not
 * created: a typo in the mailbox map must not grow folder trees); -ENOTDIR
 * a path component is a file; -EINVAL bad arguments.
 */
#ifndef SLUICE_MAILDIR_H
#define SLUICE_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Longest key accepted; longest name we make (the host part is cut to fit,
 * leaving readers room for ":2,FLAGS" within NAME_MAX); a buffer that holds
 * any name we make or find.
 */
#define MAILDIR_KEY_MAX 64
#define MAILDIR_NAME_LIMIT 200
#define MAILDIR_NAME_MAX 256

typedef struct maildir_delivery {
    const char *dir; /* the Maildir itself; created with tmp/ new/ cur/ (0700) if missing */
    /* [A-Za-z0-9_-], 1..MAILDIR_KEY_MAX: e.g. "18F3A2B4C5D6E0_3" (queue id _ recipient) */
    const char *key;
    const char *hostname;     /* for the name; NULL = gethostname() */
    const char *return_path;  /* "Return-Path: <...>" first; "" for <>; NULL = no line */
    const char *delivered_to; /* "Delivered-To: ..." second; NULL = no line */
    int fd;                   /* the message (CRLF ends), read with pread from offset 0 to EOF */
    const char *data;         /* or, when not NULL, the message in memory (fd unused) */
    size_t len;
    bool defer_sync; /* leave new/'s fsync to the caller (maildir_sync_new) */
    /*
     * Staging, when not NULL: called with the filesystem of tmp/NAME once
     * the file exists and before a byte is written to it. Returning 0 makes
     * the data's sync the caller's: maildir_deliver leaves the file in tmp/
     * and returns 1. Anything else: the file is synced and moved here, as
     * without a hook. A caller that syncs with syncfs() must hold a
     * descriptor on that filesystem from before this call, so that a
     * failure to write the data back is reported to it.
     */
    int (*stage)(void *arg, dev_t dev);
    void *stage_arg;
} maildir_delivery;

/*
 * Delivers d. On success the file name in new/ goes to name_out (if not
 * NULL; MAILDIR_NAME_MAX bytes is always enough) and 0 is returned; a
 * staged file (see stage) returns 1 with its name in tmp/ in name_out,
 * which is then required. A
 * return_path or delivered_to holding CR, LF or other control characters
 * is refused with -EINVAL (header injection).
 *
 * If it fails after the file reached new/ (the sync of new/ failed), the
 * file stays there (a reader may already see it) and the error is
 * returned: the retry will find it with maildir_find_delivered().
 */
int maildir_deliver(const maildir_delivery *d, char *name_out, size_t name_len);

/*
 * After maildir_deliver returned 1 (staged) and the caller made the file
 * durable: moves tmp/NAME into new/, under a fresh name if NAME is taken
 * there (name is updated; namesz at least MAILDIR_NAME_MAX). new/ is not
 * synced: maildir_sync_new. On failure tmp/NAME is removed. 0 or -errno.
 */
int maildir_publish(const char *dir, const char *key, const char *hostname, char *name,
                    size_t namesz);
/* The same in the Maildir open as dfd (a caller moving many files). */
int maildir_publish_at(int dfd, const char *key, const char *hostname, char *name, size_t namesz);

/* Removes a staged tmp/NAME that will not be published. 0 or -errno. */
int maildir_discard(const char *dir, const char *name);

/*
 * fsyncs <dir>/new: after it returns, every file linked there before the
 * call survives a power cut. 0 or a negative errno.
 */
int maildir_sync_new(const char *dir);
/* The same for the Maildir open as dfd. */
int maildir_sync_new_at(int dfd);

/*
 * Whether a message with this delivery key is already in <dir>/new or
 * <dir>/cur (where readers move it, renamed to "NAME:2,FLAGS"). Returns 1
 * (its name, as found, copied to name_out if not NULL), 0 when not found or
 * when the Maildir does not exist yet, or a negative errno. tmp/ is not
 * looked at: a file there never finished.
 */
int maildir_find_delivered(const char *dir, const char *key, char *name_out, size_t name_len);

/*
 * Calls fn with each delivery key carried by a name in <dir>/new, then
 * <dir>/cur: every key maildir_find_delivered could match there, and
 * maybe more (a host part may look like one). fn returns 0 to go on;
 * anything else stops the walk and is returned. 0 for a missing Maildir;
 * else 0 or a negative errno.
 */
int maildir_each_key(const char *dir, int (*fn)(void *arg, const char *key, size_t klen),
                     void *arg);

/*
 * Builds a unique name from its parts: "<sec>.M<usec>P<pid>Q<key>.<host>",
 * '/' and ':' in host written as "\057" and "\072" (the spec's escaping),
 * the host cut so that the name stays within MAILDIR_NAME_LIMIT.
 * 0, -EINVAL (bad key), -ENAMETOOLONG (outsz too small).
 */
int maildir_make_name(char *out, size_t outsz, int64_t sec, long usec, long pid, const char *key,
                      const char *host);

/* Whether key is acceptable ([A-Za-z0-9_-], 1..MAILDIR_KEY_MAX). */
bool maildir_key_valid(const char *key);

#endif
