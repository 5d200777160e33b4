/*
 * maildir.c - Maildir delivery: tmp/ with O_EXCL, write, sync, link into
 * new/, sync new/ (the spec's steps; OpenSMTPD's mail.maildir.c plus the
 * fsyncs it lacks). Blocking: runs on the thread pool. See maildir.h.
 */
#include "sluice/maildir.h"
#include "sluice/proc_id.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define COPY_CHUNK (64 * 1024)
/* O_EXCL or link() collisions are near impossible (usec + pid + key); cap the retries. */
#define NAME_TRIES 16

bool maildir_key_valid(const char *key)
{
    size_t n = 0;

    if (key == NULL)
        return false;
    for (; key[n]; n++) {
        char c = key[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
        if (n >= MAILDIR_KEY_MAX)
            return false;
    }
    return n > 0;
}

int maildir_make_name(char *out, size_t outsz, int64_t sec, long usec, long pid, const char *key,
                      const char *host)
{
    size_t limit, len;
    int n;

    if (out == NULL || outsz == 0 || !maildir_key_valid(key))
        return -EINVAL;
    limit = outsz - 1 < MAILDIR_NAME_LIMIT ? outsz - 1 : MAILDIR_NAME_LIMIT;
    n = snprintf(out, outsz, "%lld.M%06ldP%ldQ%s.", (long long)sec, usec, pid, key);
    if (n < 0 || (size_t)n >= outsz || (size_t)n > limit)
        return -ENAMETOOLONG;
    len = (size_t)n;
    if (host == NULL || *host == '\0')
        host = "localhost";
    for (; *host; host++) {
        /* The spec: '/' would make a path, ':' starts the info part. */
        const char *piece = *host == '/' ? "\\057" : *host == ':' ? "\\072" : NULL;
        size_t plen = piece ? 4 : 1;
        if (len + plen > limit)
            break; /* a shortened host keeps the name unique: time, pid and key do that */
        if (piece)
            memcpy(out + len, piece, plen);
        else
            out[len] = *host;
        len += plen;
    }
    out[len] = '\0';
    return 0;
}

/* A header value must stay one line: control characters could add headers. */
static bool header_value_ok(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Converts n bytes at p, every CRLF made LF, to o; returns the end of the
 * output. *cr carries a CR that ended the previous piece until this one
 * shows what follows it (a lone CR stays).
 */
static char *crlf_to_lf(const char *p, size_t n, char *o, bool *cr)
{
    const char *end = p + n;
    if (*cr && n > 0) {
        if (*p != '\n')
            *o++ = '\r';
        *cr = false;
    }
    while (p < end) {
        const char *q = memchr(p, '\r', (size_t)(end - p));
        size_t run = (size_t)((q ? q : end) - p);
        memcpy(o, p, run);
        o += run;
        p += run;
        if (q == NULL)
            break;
        if (q + 1 == end) {
            *cr = true; /* decide with the next piece */
            p = end;
        } else if (q[1] == '\n') {
            *o++ = '\n';
            p = q + 2;
        } else {
            *o++ = '\r';
            p = q + 1;
        }
    }
    return o;
}

/*
 * Copies head (our header lines), then the message (from d->data, else
 * from d->fd, offset 0 to EOF) to `out`, every CRLF made LF. The header
 * goes out with the first chunk, and a short read is the end of the file
 * (a committed spool file never grows): a small message is one pread (or
 * none) and one write.
 */
static int copy_message(const maildir_delivery *d, int out, const char *head, size_t headlen)
{
    char *ibuf = NULL, *obuf;
    size_t chunk = d->data ? d->len : COPY_CHUNK;
    off_t off = 0;
    bool cr = false;
    int rc = 0;

    if (!d->data && (ibuf = malloc(COPY_CHUNK)) == NULL)
        return -ENOMEM;
    if ((obuf = malloc(headlen + chunk + 1)) == NULL) {
        free(ibuf);
        return -ENOMEM;
    }
    for (;;) {
        const char *in = d->data;
        ssize_t n = (ssize_t)d->len;
        if (!in) {
            in = ibuf;
            n = pread(d->fd, ibuf, COPY_CHUNK, off);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                rc = -errno;
                goto out;
            }
        }
        char *o = obuf;
        if (headlen) {
            memcpy(o, head, headlen);
            o += headlen;
            headlen = 0;
        }
        off += n;
        o = crlf_to_lf(in, (size_t)n, o, &cr);
        if (o > obuf && (rc = write_all(out, obuf, (size_t)(o - obuf))) < 0)
            goto out;
        if (d->data || n < COPY_CHUNK)
            break;
    }
    if (cr)
        rc = write_all(out, "\r", 1);
out:
    free(ibuf);
    free(obuf);
    return rc;
}

/* Our header lines (Return-Path, Delivered-To) into a malloc'd *out. */
static int make_headers(const maildir_delivery *d, char **out, size_t *outlen)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return -ENOMEM;
    if (d->return_path)
        fprintf(f, "Return-Path: <%s>\n", d->return_path);
    if (d->delivered_to)
        fprintf(f, "Delivered-To: %s\n", d->delivered_to);
    if (fclose(f) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

/* mkdir that is content when the folder is already there. */
static int ensure_dir(int at, const char *path)
{
    if (mkdirat(at, path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int ensure_subdirs(int dfd)
{
    static const char *const sub[] = {"tmp", "new", "cur"};
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        int rc = ensure_dir(dfd, sub[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * An existing Maildir is opened with one syscall: its subfolders are made
 * only when a write into them finds one missing (ENOENT), not checked with
 * three mkdirs on every delivery.
 */
static int open_maildir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        return dfd;
    if (errno != ENOENT)
        return -errno;
    /* The Maildir itself, but not its parents: see maildir.h. */
    int rc = ensure_dir(AT_FDCWD, dir);
    if (rc < 0)
        return rc;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    rc = ensure_subdirs(dfd);
    if (rc < 0) {
        close(dfd);
        return rc;
    }
    return dfd;
}

static int sync_dir(int dfd, const char *sub)
{
    int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int maildir_sync_new_at(int dfd)
{
    return dfd < 0 ? -EBADF : sync_dir(dfd, "new");
}

int maildir_sync_new(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return -EINVAL;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    int rc = sync_dir(dfd, "new");
    close(dfd);
    return rc;
}

static void now(int64_t *sec, long *usec)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *sec = (int64_t)ts.tv_sec;
    *usec = ts.tv_nsec / 1000;
}

static int fresh_name(const char *key, const char *host, char *name, size_t namesz)
{
    int64_t sec;
    long usec;

    now(&sec, &usec);
    return maildir_make_name(name, namesz, sec, usec, (long)proc_id(), key, host);
}

/* The host part of names: the caller's, else gethostname()'s into buf. */
static const char *pick_host(const char *host, char *buf, size_t bufsz)
{
    if (host != NULL)
        return host;
    if (gethostname(buf, bufsz) < 0)
        snprintf(buf, bufsz, "localhost");
    buf[bufsz - 1] = '\0';
    return buf;
}

/* Creates tmp/NAME exclusively; a taken name (same usec) gets another try. */
static int create_tmp(int dfd, const maildir_delivery *d, const char *host, char *tmp, size_t tmpsz,
                      char *name, size_t namesz)
{
    bool made = false;
    for (int i = 0; i < NAME_TRIES; i++) {
        int fd, rc = fresh_name(d->key, host, name, namesz);
        if (rc < 0)
            return rc;
        if ((size_t)snprintf(tmp, tmpsz, "tmp/%s", name) >= tmpsz)
            return -ENAMETOOLONG;
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        if (errno == ENOENT && !made) { /* tmp/ is missing: make the subfolders */
            made = true;
            if ((rc = ensure_subdirs(dfd)) < 0)
                return rc;
            i--;
            continue;
        }
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

/*
 * Puts tmp/NAME into new/ under a name no other file has. The move must
 * never replace a file: renameat2(RENAME_NOREPLACE) does that in one call
 * (as Dovecot moves with rename()); where the filesystem does not take the
 * flag, the spec's link() (which refuses to replace) and an unlink of the
 * tmp/ name; where it has no hard links either, rename(), whose name is
 * unique all the same. A collision gets a fresh name.
 */
/* One try of the move to dst: 0 or -errno. *no_flags remembers that the
 * filesystem refused renameat2's flag, so later tries go straight to link(). */
static int move_once(int dfd, const char *tmp, const char *dst, bool *no_flags)
{
    if (!*no_flags) {
        if (renameat2(dfd, tmp, dfd, dst, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        *no_flags = true;
    }
    if (linkat(dfd, tmp, dfd, dst, 0) == 0) {
        /* The tmp/ name is only a leftover now; readers clean tmp/ anyway. */
        (void)unlinkat(dfd, tmp, 0);
        return 0;
    }
    if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS)
        return renameat(dfd, tmp, dfd, dst) == 0 ? 0 : -errno;
    return -errno;
}

static int publish(int dfd, const char *key, const char *host, const char *tmp, char *name,
                   size_t namesz)
{
    char dst[MAILDIR_NAME_MAX + 8];
    bool made = false, no_flags = false;

    for (int i = 0; i < NAME_TRIES; i++) {
        if (i > 0 && fresh_name(key, host, name, namesz) < 0)
            return -ENAMETOOLONG;
        if ((size_t)snprintf(dst, sizeof(dst), "new/%s", name) >= sizeof(dst))
            return -ENAMETOOLONG;
        int rc = move_once(dfd, tmp, dst, &no_flags);
        if (rc == 0)
            return 0;
        if (rc == -EEXIST)
            continue;
        if (rc == -ENOENT && !made) { /* new/ is missing: make the subfolders */
            made = true;
            if ((rc = ensure_subdirs(dfd)) < 0)
                return rc;
            i--;
            continue;
        }
        return rc;
    }
    return -EEXIST;
}

/*
 * Staging: the caller takes the file's data sync into its own hands when
 * its hook says so, called once tmp/NAME exists and before a byte is in it
 * (so any error writing the data back is one the caller's sync will see).
 */
static bool staged_by_caller(const maildir_delivery *d, int fd, int *rc)
{
    struct stat st;
    if (d->stage == NULL)
        return false;
    if (fstat(fd, &st) < 0) {
        *rc = -errno;
        return false;
    }
    return d->stage(d->stage_arg, st.st_dev) == 0;
}

int maildir_deliver(const maildir_delivery *d, char *name_out, size_t name_len)
{
    char hostbuf[HOST_NAME_MAX + 1];
    char name[MAILDIR_NAME_MAX], tmp[MAILDIR_NAME_MAX + 8];
    const char *host;
    int dfd, fd, rc = 0;
    bool staged;

    if (d == NULL || d->dir == NULL || d->dir[0] == '\0' || (d->fd < 0 && !d->data) ||
        !maildir_key_valid(d->key))
        return -EINVAL;
    if ((d->return_path && !header_value_ok(d->return_path)) ||
        (d->delivered_to && !header_value_ok(d->delivered_to)))
        return -EINVAL;
    if (d->stage != NULL && (name_out == NULL || name_len < MAILDIR_NAME_MAX))
        return -EINVAL; /* a staged file is known by its name only */
    host = pick_host(d->hostname, hostbuf, sizeof(hostbuf));

    dfd = open_maildir(d->dir);
    if (dfd < 0)
        return dfd;
    fd = create_tmp(dfd, d, host, tmp, sizeof(tmp), name, sizeof(name));
    if (fd < 0) {
        close(dfd);
        return fd;
    }
    staged = staged_by_caller(d, fd, &rc);
    char *head = NULL;
    size_t headlen = 0;
    if (rc == 0)
        rc = make_headers(d, &head, &headlen);
    if (rc == 0)
        rc = copy_message(d, fd, head, headlen);
    free(head);
    /* Data before name: the file is durable before new/ shows it. */
    if (rc == 0 && !staged && fdatasync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno; /* NFS reports write errors as late as close() */
    if (rc == 0 && !staged)
        rc = publish(dfd, d->key, host, tmp, name, sizeof(name));
    if (rc < 0) {
        (void)unlinkat(dfd, tmp, 0);
        close(dfd);
        return rc;
    }
    if (staged) {
        close(dfd);
        snprintf(name_out, name_len, "%s", name);
        return 1;
    }
    /* Now the name: after this the delivery survives a power cut. */
    rc = d->defer_sync ? 0 : sync_dir(dfd, "new");
    close(dfd);
    if (rc < 0)
        return rc; /* the file stays in new/; see maildir.h */
    if (name_out && name_len > 0)
        snprintf(name_out, name_len, "%s", name);
    return 0;
}

/* A staged name must be one of ours: no path, no dot file. */
static bool staged_name_ok(const char *name)
{
    return name != NULL && name[0] != '\0' && name[0] != '.' && strchr(name, '/') == NULL &&
           strlen(name) < MAILDIR_NAME_MAX;
}

int maildir_publish_at(int dfd, const char *key, const char *hostname, char *name, size_t namesz)
{
    char hostbuf[HOST_NAME_MAX + 1], tmp[MAILDIR_NAME_MAX + 8];

    if (dfd < 0 || !maildir_key_valid(key) || !staged_name_ok(name) || namesz < MAILDIR_NAME_MAX)
        return -EINVAL;
    snprintf(tmp, sizeof(tmp), "tmp/%s", name);
    int rc = publish(dfd, key, pick_host(hostname, hostbuf, sizeof(hostbuf)), tmp, name, namesz);
    if (rc < 0)
        (void)unlinkat(dfd, tmp, 0);
    return rc;
}

int maildir_publish(const char *dir, const char *key, const char *hostname, char *name,
                    size_t namesz)
{
    if (dir == NULL)
        return -EINVAL;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int rc = -errno;
        (void)maildir_discard(dir, name); /* as a failed move does */
        return rc;
    }
    int rc = maildir_publish_at(dfd, key, hostname, name, namesz);
    close(dfd);
    return rc;
}

int maildir_discard(const char *dir, const char *name)
{
    char path[PATH_MAX];

    if (dir == NULL || !staged_name_ok(name))
        return -EINVAL;
    if ((size_t)snprintf(path, sizeof(path), "%s/tmp/%s", dir, name) >= sizeof(path))
        return -ENAMETOOLONG;
    return unlink(path) < 0 ? -errno : 0;
}

/*
 * Calls fn with every delivery key a file name may carry: each "<digit>Q"
 * followed by a key and a '.', before the name's ":2,..." info part (the
 * host part might hold one too: a superset is harmless, a miss is not).
 * fn returns 0 to go on; anything else stops and is returned.
 */
static int name_keys(const char *name, int (*fn)(void *arg, const char *key, size_t klen),
                     void *arg)
{
    const char *colon = strchr(name, ':');
    size_t base = colon ? (size_t)(colon - name) : strlen(name);
    for (size_t i = 1; i + 2 < base; i++) {
        if (name[i] != 'Q' || name[i - 1] < '0' || name[i - 1] > '9')
            continue;
        const char *key = name + i + 1;
        const char *dot = memchr(key, '.', base - i - 1);
        if (dot == NULL || dot == key)
            continue;
        int rc = fn(arg, key, (size_t)(dot - key));
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * Calls fn for every name in <dir>/new, then <dir>/cur (in that order: a
 * reader moving a file from new/ to cur/ meanwhile is seen in cur/).
 * fn returns 0 to go on; anything else stops the walk and is returned. A
 * missing Maildir or subfolder has no names.
 */
static int each_name(const char *dir, int (*fn)(void *arg, const char *name), void *arg)
{
    static const char *const sub[] = {"new", "cur"};
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(sub) / sizeof(sub[0]); i++) {
        int fd = openat(dfd, sub[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT)
                rc = -errno;
            continue;
        }
        DIR *dp = fdopendir(fd);
        if (dp == NULL) {
            rc = -errno;
            close(fd);
            break;
        }
        for (;;) {
            errno = 0;
            struct dirent *de = readdir(dp);
            if (de == NULL) {
                if (errno != 0)
                    rc = -errno;
                break;
            }
            if (de->d_name[0] != '.' && (rc = fn(arg, de->d_name)) != 0)
                break;
        }
        closedir(dp);
    }
    close(dfd);
    return rc;
}

struct find_arg {
    const char *key;
    size_t klen;
    char *name_out;
    size_t name_len;
};

static int key_is(void *arg, const char *key, size_t klen)
{
    const struct find_arg *f = arg;
    return klen == f->klen && memcmp(key, f->key, klen) == 0;
}

static int find_one(void *arg, const char *name)
{
    struct find_arg *f = arg;
    if (!name_keys(name, key_is, f))
        return 0;
    if (f->name_out && f->name_len > 0)
        snprintf(f->name_out, f->name_len, "%s", name);
    return 1;
}

int maildir_find_delivered(const char *dir, const char *key, char *name_out, size_t name_len)
{
    if (dir == NULL || !maildir_key_valid(key))
        return -EINVAL;
    struct find_arg f = {key, strlen(key), name_out, name_len};
    return each_name(dir, find_one, &f);
}

struct keys_arg {
    int (*fn)(void *arg, const char *key, size_t klen);
    void *arg;
};

static int keys_of(void *arg, const char *name)
{
    struct keys_arg *k = arg;
    return name_keys(name, k->fn, k->arg);
}

int maildir_each_key(const char *dir, int (*fn)(void *arg, const char *key, size_t klen), void *arg)
{
    if (dir == NULL || fn == NULL)
        return -EINVAL;
    struct keys_arg k = {fn, arg};
    return each_name(dir, keys_of, &k);
}
