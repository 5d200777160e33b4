/*
 * spool_fs.c - synchronous spool operations (see include/sluice/spool.h):
 * open, list, load, store, remove, lock, quarantine. Used by
 * sluice-delivery (from libuv worker threads) and by the CLI; they block.
 *
 * Thread safety: a spool_fs holds only directory descriptors that are never
 * changed after spool_fs_open, and every operation works relative to them
 * with *at() calls and its own descriptors, so any number of threads may
 * call these functions at once. What two callers must not do at once to
 * the same message (store, remove) is serialised by spool_fs_lock, which
 * works across processes.
 *
 * Crash behaviour: every change is a rename or an unlink followed by a sync
 * of the folder, in an order that leaves either the old or the new state
 * (docs/spool.md, "Commit protocol"); leftovers of a crash are files that
 * spool_fs_recover removes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sluice/log.h"
#include "spool_int.h"
#include "spool_journal.h"

static const char *const spool_subdirs[] = {"incoming", "queue", "corrupt", "run"};

/* mkdir -p with the last component 0700: the spool may sit in a fresh
 * var/ beside the config file. Returns 1 if root was created. */
static int make_root(const char *root)
{
    char *path = strdup(root);
    int rc = 0;

    if (!path)
        return -ENOMEM;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            rc = -errno;
        *p = '/';
        if (rc)
            break;
    }
    if (rc == 0) {
        if (mkdir(path, 0700) == 0)
            rc = 1;
        else if (errno != EEXIST)
            rc = -errno;
    }
    free(path);
    return rc;
}

/* Makes a folder we created durable by syncing the folder that names it. */
static int sync_parent_of(const char *root)
{
    char *path = strdup(root);
    if (!path)
        return -ENOMEM;
    char *slash = strrchr(path, '/');
    const char *parent = ".";
    if (slash == path)
        parent = "/";
    else if (slash) {
        *slash = '\0';
        parent = path;
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : spool_fsync(fd);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

static int open_dir(int dirfd, const char *name, bool warn_mode)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    /* Search-only for others (0711) is how sluice-smtpd opens the way to
     * run/submit.sock for local users; reading or writing is never right. */
    if (warn_mode && fstat(fd, &st) == 0 && (st.st_mode & 066))
        log_warn("spool folder %s is open to group or others (mode %03o); it should be 0700", name,
                 (unsigned)(st.st_mode & 0777));
    return fd;
}

int spool_fs_open(const char *root, bool create, spool_fs **out)
{
    int *fds[4];
    bool created = false;
    int rc = 0;

    *out = NULL;
    if (!root || !*root)
        return -EINVAL;
    spool_fs *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    fs->root_fd = fs->incoming_fd = fs->queue_fd = fs->corrupt_fd = fs->run_fd = -1;
    fs->free_fd = -1;
    fs->euid = geteuid();
    pthread_mutex_init(&fs->free.mu, NULL);
    fs->free.pick = spool_mono_us() | 1; /* xorshift needs a non-zero seed */
    fds[0] = &fs->incoming_fd;
    fds[1] = &fs->queue_fd;
    fds[2] = &fs->corrupt_fd;
    fds[3] = &fs->run_fd;
    fs->root = strdup(root);
    if (!fs->root) {
        rc = -ENOMEM;
        goto fail;
    }
    if (create) {
        rc = make_root(root);
        if (rc < 0)
            goto fail;
        if (rc == 1 && (rc = sync_parent_of(root)) < 0)
            goto fail;
        rc = 0;
    }
    if ((fs->root_fd = open_dir(AT_FDCWD, root, true)) < 0) {
        rc = fs->root_fd;
        goto fail;
    }
    for (size_t i = 0; i < 4; i++) {
        if (create) {
            if (mkdirat(fs->root_fd, spool_subdirs[i], 0700) == 0)
                created = true;
            else if (errno != EEXIST) {
                rc = -errno;
                goto fail;
            }
        }
        if ((*fds[i] = open_dir(fs->root_fd, spool_subdirs[i], true)) < 0) {
            rc = *fds[i];
            goto fail;
        }
    }
    /* A queue/ folder whose own name is not durable could vanish with every
     * message committed in it. */
    if (created && (rc = spool_fsync(fs->root_fd)) < 0)
        goto fail;

    /* free/ is an optimisation: a spool without it (read-only use, an old
     * spool opened by the CLI) just creates and deletes files. */
    if (create && mkdirat(fs->root_fd, "free", 0700) != 0 && errno != EEXIST)
        log_warn("spool %s: cannot create free/: %s", root, strerror(errno));
    fs->free_fd = open_dir(fs->root_fd, "free", true);
    if (fs->free_fd < 0)
        fs->free_fd = -1;

    /* Commit renames incoming/ -> queue/: both must be on one filesystem. */
    struct stat a, b;
    if (fstat(fs->incoming_fd, &a) != 0 || fstat(fs->queue_fd, &b) != 0) {
        rc = -errno;
        goto fail;
    }
    if (a.st_dev != b.st_dev) {
        rc = -EXDEV;
        goto fail;
    }
    *out = fs;
    return 0;
fail:
    spool_fs_close(fs);
    return rc;
}

void spool_fs_close(spool_fs *fs)
{
    if (!fs)
        return;
    int fds[] = {fs->root_fd,    fs->incoming_fd, fs->queue_fd,
                 fs->corrupt_fd, fs->run_fd,      fs->free_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_mutex_destroy(&fs->free.mu);
    free(fs->root);
    free(fs);
}

const char *spool_fs_root(const spool_fs *fs)
{
    return fs->root;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, QUEUE_ID_LEN);
}

#define SETTLE_MAX 4096 /* envelopes waited for; past it, the rest are not */

/* The journal, read-only, if a sluice-smtpd holds its lock (runs on this
 * spool); else -1. */
static int running_journal(spool_fs *fs)
{
    int fd = openat(fs->root_fd, JOURNAL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        return fd;
    close(fd);
    return -1;
}

static void nap_5ms(void)
{
    struct timespec ts = {0, 5 * 1000000};
    nanosleep(&ts, NULL);
}

/*
 * Messages acknowledged through the journal are in queue/ (or delivered)
 * once the journal's mark passes their records: waits for the mark to
 * reach the last record written now.
 */
static void settle_journal(int fd, uint64_t deadline)
{
    uint64_t last, mark;
    if (spool_journal_last_seq(fd, &last) != 0)
        return;
    while (spool_journal_read_mark(fd, &mark) == 0 && mark < last && spool_mono_us() < deadline)
        nap_5ms();
}

void spool_fs_settle(spool_fs *fs, int timeout_ms)
{
    char(*names)[QUEUE_ID_LEN + sizeof(SPOOL_EXT_ENV)] = NULL;
    size_t n = 0;
    uint64_t deadline = spool_mono_us() + (uint64_t)timeout_ms * 1000;
    /* Without a running sluice-smtpd nothing in incoming/ moves: leftovers,
     * or messages its next start writes back from the journal. */
    int jfd = running_journal(fs);
    if (jfd < 0)
        return;
    settle_journal(jfd, deadline);
    close(jfd);
    int fd = openat(fs->incoming_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    names = malloc(SETTLE_MAX * sizeof(*names));
    struct dirent *de;
    while (names && n < SETTLE_MAX && (de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl == QUEUE_ID_LEN + 4 && strcmp(de->d_name + QUEUE_ID_LEN, SPOOL_EXT_ENV) == 0)
            memcpy(names[n++], de->d_name, nl + 1);
    }
    closedir(d);
    /* An envelope in incoming/ is a file commit under way (a large message,
     * or one the checkpointer is writing). */
    while (n > 0 && spool_mono_us() < deadline) {
        size_t k = 0;
        struct stat st;
        for (size_t i = 0; i < n; i++)
            if (fstatat(fs->incoming_fd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
                memcpy(names[k++], names[i], sizeof(names[i]));
        n = k;
        if (n)
            nap_5ms();
    }
    free(names);
}

int spool_fs_list(spool_fs *fs, char (**ids)[QUEUE_ID_LEN + 1], size_t *n)
{
    char(*v)[QUEUE_ID_LEN + 1] = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;

    *ids = NULL;
    *n = 0;
    /* A descriptor of our own: a dup would share the read offset with
     * every other thread listing through the same spool_fs. */
    int fd = openat(fs->queue_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        rc = -errno;
        close(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            rc = -errno;
            break;
        }
        size_t nl = strlen(de->d_name);
        if (nl != QUEUE_ID_LEN + 4 || strcmp(de->d_name + QUEUE_ID_LEN, SPOOL_EXT_ENV) != 0 ||
            !queue_id_valid(de->d_name, QUEUE_ID_LEN))
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *p = realloc(v, ncap * sizeof(*v));
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            v = p;
            cap = ncap;
        }
        memcpy(v[len], de->d_name, QUEUE_ID_LEN);
        v[len][QUEUE_ID_LEN] = '\0';
        len++;
    }
    closedir(d);
    if (rc) {
        free(v);
        return rc;
    }
    if (len)
        qsort(v, len, sizeof(*v), cmp_id);
    *ids = v;
    *n = len;
    return 0;
}

/* Moves dirfd/name to corrupt/name (or name.1, name.2 ... if taken). */
static int quarantine_name(spool_fs *fs, int dirfd, const char *name)
{
    char target[NAME_MAX + 1];
    int rc = -EEXIST;

    for (int i = 0; i < 1000 && rc == -EEXIST; i++) {
        if (i == 0)
            snprintf(target, sizeof(target), "%s", name);
        else if (snprintf(target, sizeof(target), "%s.%d", name, i) >= (int)sizeof(target))
            return -ENAMETOOLONG;
        rc = spool_rename_noreplace(dirfd, name, fs->corrupt_fd, target);
    }
    return rc;
}

int spool_fs_quarantine(spool_fs *fs, const char *id, const char *why)
{
    /* .env first: once it is gone nothing treats the message as committed. */
    static const char *const exts[] = {SPOOL_EXT_ENV, SPOOL_EXT_MSG, SPOOL_EXT_NEW};
    char name[SPOOL_NAME_MAX];
    int moved = 0, err = 0;

    if (!id || !queue_id_valid(id, strlen(id)))
        return -EINVAL;
    for (size_t i = 0; i < 3; i++) {
        spool_name(name, id, exts[i]);
        int rc = quarantine_name(fs, fs->queue_fd, name);
        if (rc == 0)
            moved++;
        else if (rc != -ENOENT && !err)
            err = rc;
    }
    if (moved) {
        /* Durable, so a crash does not bring a corrupt file back to queue/. */
        int rc = spool_fsync(fs->corrupt_fd);
        int rc2 = spool_fsync(fs->queue_fd);
        if (!err)
            err = rc ? rc : rc2;
        log_warn("%s: moved to corrupt/: %s", id, why ? why : "unknown reason");
    }
    if (err) {
        log_err("%s: cannot quarantine: %s", id, strerror(-err));
        return err;
    }
    return moved ? 0 : -ENOENT;
}

/* Whether queue/ID.env still exists (a concurrent spool_fs_remove). */
static bool env_exists(spool_fs *fs, const char *id)
{
    char name[SPOOL_NAME_MAX];
    struct stat st;

    spool_name(name, id, SPOOL_EXT_ENV);
    return fstatat(fs->queue_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
}

static int load_bad(spool_fs *fs, const char *id, envelope *e, const char *why)
{
    envelope_free(e);
    spool_fs_quarantine(fs, id, why);
    return -EBADMSG;
}

/* The envelope alone: read, parsed, its id checked. */
static int load_env(spool_fs *fs, const char *id, envelope *e)
{
    char name[SPOOL_NAME_MAX], err[160], why[200];
    sbuf text;
    int rc;

    if (!id || !queue_id_valid(id, strlen(id)))
        return -EINVAL;
    envelope_free(e);
    sbuf_init(&text, 0); /* spool_read_file enforces the bound itself */
    spool_name(name, id, SPOOL_EXT_ENV);
    rc = spool_read_file(fs->queue_fd, name, ENVELOPE_MAX_SIZE, &text);
    if (rc == -EBADMSG || rc == -EFBIG || rc == -EIO) {
        /* Unreadable for good (not a file, too large, bad sector):
         * quarantine. Transient errors (EMFILE, ENOMEM, EACCES) return. */
        sbuf_free(&text);
        snprintf(why, sizeof(why), "envelope unreadable: %s", strerror(-rc));
        return load_bad(fs, id, e, why);
    }
    if (rc) {
        sbuf_free(&text);
        return rc;
    }
    rc = envelope_parse(text.data ? text.data : "", text.len, e, err, sizeof(err));
    sbuf_free(&text);
    if (rc == -ENOMEM)
        return rc;
    if (rc) {
        snprintf(why, sizeof(why), "envelope: %s", err);
        return load_bad(fs, id, e, why);
    }
    if (strcmp(e->id, id) != 0) {
        snprintf(why, sizeof(why), "envelope holds id %s", e->id);
        return load_bad(fs, id, e, why);
    }
    return 0;
}

int spool_fs_load_locked(spool_fs *fs, const char *id, envelope *e)
{
    return load_env(fs, id, e);
}

int spool_fs_load(spool_fs *fs, const char *id, envelope *e)
{
    char name[SPOOL_NAME_MAX], why[200];
    int rc = load_env(fs, id, e);
    if (rc)
        return rc;

    struct stat st;
    spool_name(name, id, SPOOL_EXT_MSG);
    if (fstatat(fs->queue_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = -errno;
        if (rc == -ENOENT && !env_exists(fs, id)) {
            envelope_free(e); /* removed while we read it: not corruption */
            return -ENOENT;
        }
        if (rc != -ENOENT) {
            envelope_free(e);
            return rc;
        }
        return load_bad(fs, id, e, "message file missing");
    }
    if (!S_ISREG(st.st_mode))
        return load_bad(fs, id, e, "message file is not a regular file");
    if ((uint64_t)st.st_size != e->size) {
        snprintf(why, sizeof(why), "message file has %lld bytes, envelope says %llu",
                 (long long)st.st_size, (unsigned long long)e->size);
        return load_bad(fs, id, e, why);
    }
    return 0;
}

int spool_fs_store(spool_fs *fs, const envelope *e)
{
    char name[SPOOL_NAME_MAX], tmp[SPOOL_NAME_MAX];
    struct stat st;
    sbuf text;
    int fd, rc;

    if (!queue_id_valid(e->id, strnlen(e->id, sizeof(e->id))))
        return -EINVAL;
    /* Never resurrect a removed message as an envelope without data (the
     * caller holds the lock, so this check cannot race a remove). */
    spool_name(name, e->id, SPOOL_EXT_MSG);
    if (fstatat(fs->queue_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;

    sbuf_init(&text, ENVELOPE_MAX_SIZE + 64);
    if ((rc = envelope_serialize(e, &text)) != 0) {
        sbuf_free(&text);
        return rc;
    }
    spool_name(tmp, e->id, SPOOL_EXT_NEW);
    spool_name(name, e->id, SPOOL_EXT_ENV);
    do
        fd = openat(fs->queue_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        rc = -errno;
        sbuf_free(&text);
        return rc;
    }
    rc = spool_write_all(fd, text.data, text.len);
    sbuf_free(&text);
    /* The new content must be on disk before the name points at it, or a
     * crash could leave an empty envelope where a good one was. */
    if (rc == 0)
        rc = spool_fdatasync(fd);
    int crc = spool_close_written(fd);
    if (rc == 0)
        rc = crc;
    if (rc == 0 && renameat(fs->queue_fd, tmp, fs->queue_fd, name) != 0)
        rc = -errno;
    if (rc != 0) {
        spool_unlink_quiet(fs->queue_fd, tmp);
        return rc;
    }
    return spool_fsync(fs->queue_fd);
}

static int remove_files(spool_fs *fs, const char *id, bool recycle);

int spool_fs_remove(spool_fs *fs, const char *id)
{
    int rc = remove_files(fs, id, false);
    return rc ? rc : spool_fsync(fs->queue_fd);
}

int spool_fs_remove_unsynced(spool_fs *fs, const char *id)
{
    return remove_files(fs, id, true);
}

/*
 * Renames name out of queue/ into free/ when recycle and it can be kept
 * there, else unlinks it. 0 or -errno (ENOENT when it was not there).
 */
static int drop_file(spool_fs *fs, const char *name, bool recycle)
{
    if (recycle)
        return spool_free_give(fs, fs->queue_fd, name);
    return unlinkat(fs->queue_fd, name, 0) == 0 ? 0 : -errno;
}

static int remove_files(spool_fs *fs, const char *id, bool recycle)
{
    char name[SPOOL_NAME_MAX];
    int rc_env = 0, rc_msg = 0;

    if (!id || !queue_id_valid(id, strlen(id)))
        return -EINVAL;
    /* .env first: from that moment the message is not committed, and a
     * crash before the .msg goes leaves an orphan recover removes. */
    spool_name(name, id, SPOOL_EXT_ENV);
    rc_env = drop_file(fs, name, recycle);
    if (rc_env && rc_env != -ENOENT)
        return rc_env;
    spool_name(name, id, SPOOL_EXT_MSG);
    rc_msg = drop_file(fs, name, recycle);
    if (rc_msg && rc_msg != -ENOENT)
        return rc_msg;
    if (rc_env == -ENOENT && rc_msg == -ENOENT)
        return -ENOENT;
    return 0;
}

int spool_fs_open_message(spool_fs *fs, const char *id, int *fd)
{
    char name[SPOOL_NAME_MAX];

    *fd = -1;
    if (!id || !queue_id_valid(id, strlen(id)))
        return -EINVAL;
    spool_name(name, id, SPOOL_EXT_MSG);
    int f;
    do
        f = openat(fs->queue_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    while (f < 0 && errno == EINTR);
    if (f < 0)
        return -errno;
    *fd = f;
    return 0;
}

int spool_fs_lock(spool_fs *fs, const char *id, bool wait, int *lockfd)
{
    struct stat st;
    int fd, rc;

    *lockfd = -1;
    if ((rc = spool_fs_open_message(fs, id, &fd)) != 0)
        return rc;
    while ((rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        rc = -errno;
        close(fd);
        return rc == -EAGAIN ? -EWOULDBLOCK : rc;
    }
    /* The holder we waited for may have removed the message: unlinked it,
     * or given its file to free/ (the name then leads elsewhere, or nowhere). */
    char name[SPOOL_NAME_MAX];
    struct stat now;
    spool_name(name, id, SPOOL_EXT_MSG);
    if (fstat(fd, &st) != 0 || st.st_nlink == 0 ||
        fstatat(fs->queue_fd, name, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != st.st_ino ||
        now.st_dev != st.st_dev) {
        close(fd);
        return -ENOENT;
    }
    *lockfd = fd;
    return 0;
}

void spool_fs_unlock(int lockfd)
{
    if (lockfd >= 0)
        close(lockfd);
}

int spool_fs_verify_message_fd(spool_fs *fs, const envelope *e, int fd)
{
    char buf[65536];
    uint64_t size = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    int rc = 0;

    for (;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), (off_t)size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        crc = crc32(crc, (const Bytef *)buf, (uInt)n);
        size += (uint64_t)n;
        /* A short read is the end: nobody writes a committed file. */
        if ((size_t)n < sizeof(buf))
            break;
    }
    if (rc == -EIO || (rc == 0 && (size != e->size || crc != e->crc32))) {
        char why[120];
        if (rc)
            snprintf(why, sizeof(why), "message file unreadable: %s", strerror(EIO));
        else
            snprintf(why, sizeof(why), "message file does not match its envelope (crc32 %08lx)",
                     crc);
        spool_fs_quarantine(fs, e->id, why);
        return -EBADMSG;
    }
    return rc;
}

int spool_fs_verify_message(spool_fs *fs, const envelope *e)
{
    int fd, rc;

    if ((rc = spool_fs_open_message(fs, e->id, &fd)) != 0)
        return rc;
    rc = spool_fs_verify_message_fd(fs, e, fd);
    close(fd);
    return rc;
}

int spool_path(const char *root, const char *rel, char *out, size_t outsz)
{
    if (!root || !rel || !out || outsz == 0)
        return -EINVAL;
    int n = snprintf(out, outsz, "%s/%s", root, rel);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= outsz)
        return -ENAMETOOLONG;
    return 0;
}
