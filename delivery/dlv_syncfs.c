/*
 * dlv_syncfs.c - one syncfs() per filesystem per confirm batch. See
 * dlv_syncfs.h for why the descriptors live as long as the runner.
 */
#include "sluice/dlv_syncfs.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "sluice/log.h"

int dlv_syncfs_init(dlv_syncfs *s)
{
    memset(s, 0, sizeof(*s));
    return uv_mutex_init(&s->mu);
}

void dlv_syncfs_free(dlv_syncfs *s)
{
    for (size_t i = 0; i < s->n; i++)
        close(s->fs[i].fd);
    s->n = 0;
    uv_mutex_destroy(&s->mu);
}

/* The entry of dev, or NULL; under mu. */
static dlv_syncfs_fs *find(dlv_syncfs *s, dev_t dev)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->fs[i].dev == dev)
            return &s->fs[i];
    return NULL;
}

int dlv_syncfs_enter(dlv_syncfs *s, dev_t dev, const char *dir, unsigned *ticket)
{
    int rc = 0;
    uv_mutex_lock(&s->mu);
    dlv_syncfs_fs *f = find(s, dev);
    if (f == NULL) {
        struct stat st;
        int fd = s->n < DLV_SYNCFS_MAX ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (s->n >= DLV_SYNCFS_MAX)
            rc = -ENFILE;
        else if (fd < 0 || fstat(fd, &st) < 0)
            rc = -errno;
        else if (st.st_dev != dev)
            rc = -EXDEV; /* dir is not where its tmp/ is: sync on its own */
        if (rc < 0) {
            if (fd >= 0)
                close(fd);
        } else {
            f = &s->fs[s->n++];
            *f = (dlv_syncfs_fs){.dev = dev, .fd = fd};
        }
    }
    if (f != NULL)
        *ticket = f->fails;
    uv_mutex_unlock(&s->mu);
    return rc;
}

void dlv_syncfs_batch(dlv_syncfs *s)
{
    uv_mutex_lock(&s->mu);
    s->batch++;
    uv_mutex_unlock(&s->mu);
}

int dlv_syncfs_covered(dlv_syncfs *s, dev_t dev, unsigned ticket)
{
    uv_mutex_lock(&s->mu);
    dlv_syncfs_fs *f = find(s, dev);
    if (f == NULL) {
        uv_mutex_unlock(&s->mu);
        return -EINVAL; /* never entered: cannot be */
    }
    if (f->batch != s->batch) {
        int fd = f->fd;
        uint64_t batch = s->batch;
        /* Staging goes on meanwhile: the sync runs without the lock. Only
         * this job syncs, so no one else changes f's sync fields. */
        uv_mutex_unlock(&s->mu);
        int rc = syncfs(fd) < 0 ? -errno : 0;
        uv_mutex_lock(&s->mu);
        f->batch = batch;
        f->rc = rc;
        if (rc < 0) {
            f->fails++;
            log_err("cannot sync the filesystem of the Maildirs (device %u:%u): %s; "
                    "the deliveries written since the last sync will be made again",
                    major(dev), minor(dev), strerror(-rc));
        }
    }
    int rc = f->fails != ticket ? (f->rc < 0 ? f->rc : -EIO) : 0;
    uv_mutex_unlock(&s->mu);
    return rc;
}
