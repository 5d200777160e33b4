/*
 * spool_journal.c - the journal file of sluice-smtpd: creation, the
 * syncer's appends, the checkpointer's mark, and recovery at start (see
 * spool_journal.h for why, journal_format.h for the bytes).
 *
 * Space: two regions used in turn. The syncer appends to the active one;
 * when it is full it moves to the other, which it may only do once every
 * record there is at or below the mark (the checkpointer has committed
 * them to queue/); it then writes that region's header with a new
 * generation, so the old records there stop counting without being
 * erased. Writes are whole pages at page boundaries, into blocks that were
 * written when the file was made: an fdatasync of them has no metadata to
 * write, which is the point of the whole exercise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sluice/journal_format.h"
#include "sluice/log.h"
#include "spool_journal.h"

struct spool_journal {
    int fd;  /* buffered: the lock, and reading at start */
    int wfd; /* O_DIRECT | O_DSYNC for every write; -1: fd + fdatasync */
    uint64_t region_size;
    /* syncer */
    int active;          /* region being appended to; -1 before the first */
    uint64_t pos;        /* next page-aligned write offset in the active region */
    uint32_t gen[2];     /* generation of each region's header */
    uint32_t next_gen;   /* the next switch's generation: above all seen */
    uint64_t max_seq[2]; /* highest seq written to each region (0: none above the mark) */
    uint64_t next_seq;
    uint8_t *stage; /* the pending write: starts at region offset stage_off */
    size_t stage_len;
    uint64_t stage_off;
    size_t last_rec; /* offset in stage of the last record staged */
    bool has_rec;
    /* checkpointer */
    unsigned mark_slot;
    uint64_t last_mark;
    uint8_t *mark_page; /* page 0 as written: both slots */
};

static uint64_t region_off(const spool_journal *j, int r)
{
    return JOURNAL_PAGE + (uint64_t)r * j->region_size;
}

/* pwrite or pread of all len bytes at off; a short read means the file
 * changed under us (-EIO). */
static int pio_all(int fd, void *buf, size_t len, uint64_t off, bool write)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    return pio_all(fd, (void *)buf, len, off, true);
}

static void *aligned_page_alloc(size_t size)
{
    void *p = NULL;
    return posix_memalign(&p, JOURNAL_PAGE, size) == 0 ? p : NULL;
}

/*
 * The journal's writes go through O_DIRECT | O_DSYNC when the filesystem
 * allows: measured here, a 4 KiB overwrite made durable that way costs
 * 0.14 ms at the median (the block layer sends it with FUA, no cache flush),
 * against 0.4-4 ms for pwrite + fdatasync, whose cost jumps to 4 ms whenever
 * the coarse clock ticked since the last write (the new mtime makes ext4
 * without a journal write the inode too). Whole pages from page-aligned
 * buffers at page offsets, as direct I/O wants.
 */
static int open_direct(spool_fs *fs)
{
    const char *v = getenv("SLUICE_SPOOL_JOURNAL");
    if (v && strcmp(v, "buffered") == 0)
        return -1; /* for measurements: pwrite + fdatasync */
    int fd =
        openat(fs->root_fd, JOURNAL_NAME, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECT | O_DSYNC);
    if (fd < 0)
        log_info("spool: %s: no direct I/O here (%s): pwrite + fdatasync", JOURNAL_NAME,
                 strerror(errno));
    return fd;
}

/* Writes and makes durable (O_DSYNC, else fdatasync). */
static int write_durably(spool_journal *j, const void *buf, size_t len, uint64_t off)
{
    if (j->wfd >= 0)
        return pwrite_all(j->wfd, buf, len, off);
    int rc = pwrite_all(j->fd, buf, len, off);
    return rc ? rc : spool_fdatasync(j->fd);
}

/* ---- creation ---- */

/* Writes a new journal as journal.new, every byte of it, syncs it and
 * renames it into place; the rename's folder is synced too. */
static int create_file(spool_fs *fs)
{
    const char *tmp = JOURNAL_NAME ".new";
    uint64_t size = JOURNAL_PAGE + 2ull * JOURNAL_REGION_SIZE;
    size_t chunk = 256 * 1024;
    uint8_t *buf = calloc(1, chunk);
    if (!buf)
        return -ENOMEM;
    spool_unlink_quiet(fs->root_fd, tmp);
    int fd = openat(fs->root_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = fd < 0 ? -errno : 0;
    /* Page 0: both mark slots at 0; then each region's header (gen 1). */
    journal_mark_encode(buf, 0);
    journal_mark_encode(buf + JOURNAL_MARK_SLOT, 0);
    for (uint64_t off = 0; rc == 0 && off < size; off += chunk) {
        size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
        rc = pwrite_all(fd, buf, n, off);
        if (off == 0)
            memset(buf, 0, JOURNAL_PAGE);
    }
    for (int r = 0; rc == 0 && r < 2; r++) {
        journal_region_encode(buf, (uint32_t)r, 1, JOURNAL_REGION_SIZE);
        rc = pwrite_all(fd, buf, JOURNAL_PAGE, JOURNAL_PAGE + (uint64_t)r * JOURNAL_REGION_SIZE);
    }
    free(buf);
    if (rc == 0)
        rc = spool_fsync(fd);
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0)
        rc = renameat(fs->root_fd, tmp, fs->root_fd, JOURNAL_NAME) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = spool_fsync(fs->root_fd);
    if (rc != 0)
        spool_unlink_quiet(fs->root_fd, tmp);
    return rc;
}

/* ---- recovery ---- */

struct found {
    journal_rec *recs;
    size_t n, cap;
    uint64_t mark, max_seq;
    bool oom;
};

static void collect(void *arg, const journal_rec *r)
{
    struct found *f = arg;
    if (r->seq > f->max_seq)
        f->max_seq = r->seq;
    if (r->seq <= f->mark)
        return; /* already in queue/ for good */
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        journal_rec *p = realloc(f->recs, cap * sizeof(*p));
        if (!p) {
            f->oom = true;
            return;
        }
        f->recs = p;
        f->cap = cap;
    }
    f->recs[f->n++] = *r;
}

static int by_seq(const void *a, const void *b)
{
    const journal_rec *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool in_queue(spool_fs *fs, const char *id)
{
    char name[SPOOL_NAME_MAX];
    struct stat st;
    spool_name(name, id, SPOOL_EXT_ENV);
    return fstatat(fs->queue_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Writes one journaled message into queue/ (synced; queue/ itself is
 * synced by the caller once for all). */
static int restore(spool_fs *fs, const journal_rec *r)
{
    struct spool_txn t;
    char name[SPOOL_NAME_MAX];

    /* Leftovers of its receive: ours (an smtpd id, and we hold the lock). */
    spool_name(name, r->id, SPOOL_EXT_ENV);
    spool_unlink_quiet(fs->incoming_fd, name);
    spool_name(name, r->id, SPOOL_EXT_MSG);
    spool_unlink_quiet(fs->incoming_fd, name);
    spool_unlink_quiet(fs->queue_fd, name); /* a .msg without .env: never committed */

    spool_txn_init(&t, r->id);
    int rc = spool_txn_write_msg(fs, &t, r->msg, r->msg_len);
    if (rc == 0)
        rc = spool_txn_write_env(fs, &t, r->env, r->env_len);
    if (rc == 0)
        rc = spool_txn_datasync(&t);
    if (rc == 0)
        rc = spool_txn_rename(fs, &t);
    if (rc != 0) {
        spool_txn_discard(fs, &t);
        return rc;
    }
    spool_txn_finish(&t);
    return 0;
}

/* The higher of the valid marks in page 0's two slots; false if neither is valid. */
static bool mark_of(const uint8_t *page, uint64_t *mark)
{
    bool any = false;
    uint64_t m;
    *mark = 0;
    for (int i = 0; i < 2; i++)
        if (journal_mark_decode(page + i * JOURNAL_MARK_SLOT, &m)) {
            if (!any || m > *mark)
                *mark = m;
            any = true;
        }
    return any;
}

/* A region size this code could have written. */
static bool region_size_ok(uint64_t size)
{
    return size % JOURNAL_PAGE == 0 && size >= 16 * JOURNAL_PAGE && size <= (1ull << 30);
}

static void add_id(sbuf *notify, const char *id)
{
    char item[1 + QUEUE_ID_LEN];
    item[0] = ' ';
    memcpy(item + 1, id, QUEUE_ID_LEN);
    (void)sbuf_append(notify, item, sizeof(item)); /* bounded: the scan finds the rest */
}

static int replay(spool_journal *j, spool_fs *fs, const uint8_t *file, sbuf *notify, int *restored,
                  int *found)
{
    struct found f = {.mark = 0};

    if (!mark_of(file, &f.mark))
        log_warn("spool: %s/%s: no valid mark; every message in it is checked against queue/",
                 spool_fs_root(fs), JOURNAL_NAME);
    f.max_seq = f.mark;
    for (int r = 0; r < 2; r++) {
        size_t end;
        bool torn;
        journal_region_scan(file + region_off(j, r), j->region_size, j->gen[r],
                            (uint32_t)j->region_size, (uint32_t)j->region_size, collect, &f, &end,
                            &torn);
        if (torn)
            log_info("spool: %s: region %d ends in a write a crash cut short, at offset %zu "
                     "(never acknowledged)",
                     JOURNAL_NAME, r, end);
    }
    if (f.oom) {
        free(f.recs);
        return -ENOMEM;
    }
    if (f.n > 1)
        qsort(f.recs, f.n, sizeof(*f.recs), by_seq);
    int rc = 0;
    for (size_t i = 0; i < f.n && rc == 0; i++) {
        const journal_rec *r = &f.recs[i];
        if (i > 0 && strcmp(r->id, f.recs[i - 1].id) == 0)
            continue; /* one message journaled twice cannot happen; harmless if it did */
        if (in_queue(fs, r->id)) {
            (*found)++;
        } else if ((rc = restore(fs, r)) == 0) {
            (*restored)++;
            log_info("%s: restored from the journal into queue/", r->id);
        } else {
            log_err("%s: cannot restore from %s/%s: %s", r->id, spool_fs_root(fs), JOURNAL_NAME,
                    strerror(-rc));
            break;
        }
        add_id(notify, r->id);
    }
    free(f.recs);
    if (rc == 0 && *restored > 0)
        rc = spool_fsync(fs->queue_fd);
    if (rc != 0)
        return rc;
    /* Everything up to max_seq is in queue/ now: raise the mark past it, in
     * both slots, before any new record can be written. */
    j->next_seq = f.max_seq + 1;
    j->last_mark = f.max_seq;
    return spool_journal_write_mark(j, f.max_seq);
}

/* Checks the file's shape and reads the two region headers. */
static int check_shape(spool_journal *j, const char *root, const struct stat *st,
                       const uint8_t *file)
{
    uint64_t size[2];
    for (int r = 0; r < 2; r++) {
        uint64_t off = JOURNAL_PAGE + (uint64_t)r * JOURNAL_REGION_SIZE;
        if (r == 1 && j->region_size)
            off = JOURNAL_PAGE + j->region_size;
        if (off + JOURNAL_PAGE > (uint64_t)st->st_size ||
            !journal_region_decode(file + off, (uint32_t)r, &j->gen[r], &size[r])) {
            log_err("spool: %s/%s: region %d has no valid header: the file is damaged. Move it "
                    "aside to start (messages in it that are not in queue/ would be lost)",
                    root, JOURNAL_NAME, r);
            return -EBADMSG;
        }
        if (r == 0)
            j->region_size = size[0];
    }
    if (size[0] != size[1] || !region_size_ok(size[0]) ||
        (uint64_t)st->st_size != JOURNAL_PAGE + 2 * size[0]) {
        log_err("spool: %s/%s: sizes do not match (file %lld bytes, regions %llu and %llu): "
                "the file is damaged. Move it aside to start (messages in it that are not in "
                "queue/ would be lost)",
                root, JOURNAL_NAME, (long long)st->st_size, (unsigned long long)size[0],
                (unsigned long long)size[1]);
        return -EBADMSG;
    }
    return 0;
}

int spool_journal_open(spool_fs *fs, spool_journal **out, sbuf *notify, int *restored, int *found)
{
    const char *root = spool_fs_root(fs);
    struct stat st;
    int rc;

    *out = NULL;
    *restored = *found = 0;
    int fd = openat(fs->root_fd, JOURNAL_NAME, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        if ((rc = create_file(fs)) != 0) {
            log_err("spool: cannot create %s/%s: %s", root, JOURNAL_NAME, strerror(-rc));
            return rc;
        }
        fd = openat(fs->root_fd, JOURNAL_NAME, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        rc = -errno;
        log_err("spool: cannot open %s/%s: %s", root, JOURNAL_NAME, strerror(-rc));
        return rc;
    }
    /* A second, briefly: `sluice queue` takes a shared lock for a moment
     * to see whether we run (spool_fs_settle). */
    int locked;
    for (int i = 0; (locked = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK && i < 100;
         i++) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (locked != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        log_err("spool: %s/%s: %s", root, JOURNAL_NAME,
                rc == -EBUSY ? "locked: another sluice-smtpd uses this spool" : strerror(-rc));
        close(fd);
        return rc;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) || st.st_size > (off_t)(JOURNAL_PAGE + (2ull << 30))) {
        log_err("spool: %s/%s must be a regular file of ours, mode 0600, of the size we made it",
                root, JOURNAL_NAME);
        close(fd);
        return -EBADMSG;
    }

    spool_journal *j = calloc(1, sizeof(*j));
    uint8_t *file = malloc((size_t)st.st_size);
    if (j)
        j->stage = aligned_page_alloc(JOURNAL_STAGE_MAX);
    if (j)
        j->mark_page = aligned_page_alloc(JOURNAL_PAGE);
    if (!j || !file || !j->stage || !j->mark_page) {
        rc = -ENOMEM;
        goto fail;
    }
    j->fd = fd;
    j->wfd = open_direct(fs);
    j->active = -1;
    if ((rc = pio_all(fd, file, (size_t)st.st_size, 0, false)) != 0) {
        log_err("spool: cannot read %s/%s: %s", root, JOURNAL_NAME, strerror(-rc));
        goto fail;
    }
    if ((rc = check_shape(j, root, &st, file)) != 0)
        goto fail;
    j->next_gen = (j->gen[0] > j->gen[1] ? j->gen[0] : j->gen[1]) + 1;
    if ((rc = replay(j, fs, file, notify, restored, found)) != 0) {
        log_err("spool: recovery from %s/%s failed: %s", root, JOURNAL_NAME, strerror(-rc));
        goto fail;
    }
    free(file);
    *out = j;
    return 0;
fail:
    free(file);
    if (j) {
        free(j->stage);
        free(j->mark_page);
        if (j->wfd >= 0)
            close(j->wfd);
    }
    free(j);
    close(fd);
    return rc;
}

void spool_journal_close(spool_journal *j)
{
    if (!j)
        return;
    if (j->wfd >= 0)
        close(j->wfd);
    close(j->fd); /* releases the lock */
    free(j->stage);
    free(j->mark_page);
    free(j);
}

/* ---- the syncer's appends ---- */

static size_t page_up(size_t n)
{
    return (n + JOURNAL_PAGE - 1) / JOURNAL_PAGE * JOURNAL_PAGE;
}

int spool_journal_stage(spool_journal *j, const char *id, const void *env, size_t env_len,
                        const void *msg, size_t msg_len, uint64_t *seq, size_t *off)
{
    size_t len = journal_rec_size(env_len, msg_len);
    if (j->active < 0)
        return -ENOSPC; /* no region yet: switch first */
    if (len > JOURNAL_STAGE_MAX - JOURNAL_PAGE || len > j->region_size - JOURNAL_PAGE)
        return -E2BIG; /* not for the journal: the caller checks JOURNAL_REC_MAX */
    if (j->stage_off + page_up(j->stage_len + len) > j->region_size)
        return -ENOSPC;
    if (j->stage_len + len > JOURNAL_STAGE_MAX)
        return -ENOBUFS;
    *seq = j->next_seq++;
    journal_rec_encode(j->stage + j->stage_len, j->gen[j->active], *seq, id, 0, env,
                       (uint32_t)env_len, msg, (uint32_t)msg_len);
    j->last_rec = j->stage_len;
    *off = j->stage_len;
    j->has_rec = true;
    j->stage_len += len;
    j->max_seq[j->active] = *seq;
    return 0;
}

int spool_journal_flush(spool_journal *j)
{
    if (j->stage_len == 0)
        return 0;
    if (j->has_rec)
        journal_rec_set_last(j->stage + j->last_rec);
    size_t len = page_up(j->stage_len);
    memset(j->stage + j->stage_len, 0, len - j->stage_len);
    int rc = write_durably(j, j->stage, len, region_off(j, j->active) + j->stage_off);
    j->stage_off += len;
    j->stage_len = 0;
    j->has_rec = false;
    return rc;
}

const uint8_t *spool_journal_stage_buf(const spool_journal *j)
{
    return j->stage;
}

uint32_t spool_journal_gen(const spool_journal *j)
{
    return j->active < 0 ? 0 : j->gen[j->active];
}

uint64_t spool_journal_other_max(const spool_journal *j)
{
    return j->active < 0 ? 0 : j->max_seq[1 - j->active];
}

void spool_journal_switch(spool_journal *j)
{
    int r = j->active < 0 ? 0 : 1 - j->active;
    j->active = r;
    j->gen[r] = j->next_gen++;
    j->max_seq[r] = 0;
    /* The header goes out with the first records, in the same write and
     * fdatasync: a crash before it leaves the old generation in force, and
     * records of the new one are then garbage (never acknowledged). */
    journal_region_encode(j->stage, (uint32_t)r, j->gen[r], j->region_size);
    j->stage_off = 0;
    j->stage_len = JOURNAL_PAGE;
    j->has_rec = false;
}

/* ---- the checkpointer's mark ---- */

int spool_journal_write_mark(spool_journal *j, uint64_t mark)
{
    /* The whole page (direct I/O writes whole blocks): the new mark in one
     * slot, the last one again in the other, so a torn write leaves a
     * valid slot whichever sectors made it. */
    unsigned k = j->mark_slot++ % 2;
    memset(j->mark_page, 0, JOURNAL_PAGE);
    journal_mark_encode(j->mark_page + k * JOURNAL_MARK_SLOT, mark);
    journal_mark_encode(j->mark_page + (1 - k) * JOURNAL_MARK_SLOT, j->last_mark);
    int rc = write_durably(j, j->mark_page, JOURNAL_PAGE, 0);
    if (rc == 0)
        j->last_mark = mark;
    return rc;
}

/* ---- a reader's look (the CLI's settle) ---- */

static void see_seq(void *arg, const journal_rec *r)
{
    uint64_t *last = arg;
    if (r->seq > *last)
        *last = r->seq;
}

int spool_journal_read_mark(int fd, uint64_t *mark)
{
    uint8_t page[JOURNAL_MARK_SLOT * 2];
    int rc = pio_all(fd, page, sizeof(page), 0, false);
    if (rc)
        return rc;
    return mark_of(page, mark) ? 0 : -EBADMSG;
}

int spool_journal_last_seq(int fd, uint64_t *last)
{
    uint8_t hdr[JOURNAL_PAGE];
    uint32_t gen[2];
    uint64_t size[2];
    int rc;
    *last = 0;
    /* The region written last has the higher generation. */
    if ((rc = pio_all(fd, hdr, sizeof(hdr), JOURNAL_PAGE, false)) != 0)
        return rc;
    if (!journal_region_decode(hdr, 0, &gen[0], &size[0]) || !region_size_ok(size[0]))
        return -EBADMSG;
    if ((rc = pio_all(fd, hdr, sizeof(hdr), JOURNAL_PAGE + size[0], false)) != 0)
        return rc;
    if (!journal_region_decode(hdr, 1, &gen[1], &size[1]) || size[1] != size[0])
        return -EBADMSG;
    int r = gen[1] > gen[0] ? 1 : 0;
    uint8_t *region = malloc(size[0]);
    if (!region)
        return -ENOMEM;
    rc = pio_all(fd, region, size[0], JOURNAL_PAGE + (uint64_t)r * size[0], false);
    if (rc == 0) {
        size_t end;
        bool torn;
        journal_region_scan(region, size[0], gen[r], (uint32_t)size[0], (uint32_t)size[0], see_seq,
                            last, &end, &torn);
    }
    free(region);
    return rc;
}
