/*
 * sync_group.c - group commit of fsyncs of one object. See sync_group.h.
 */
#include "sluice/sync_group.h"

#include <errno.h>
#include <string.h>

int sync_group_init(sync_group *g)
{
    int rc;
    size_t i;

    memset(g, 0, sizeof(*g));
    if ((rc = pthread_mutex_init(&g->mu, NULL)) != 0)
        return -rc;
    for (i = 0; i < SYNC_GROUP_SLOTS; i++) {
        if ((rc = pthread_cond_init(&g->slot[i].cv, NULL)) != 0) {
            while (i-- > 0)
                pthread_cond_destroy(&g->slot[i].cv);
            pthread_mutex_destroy(&g->mu);
            return -rc;
        }
    }
    return 0;
}

void sync_group_destroy(sync_group *g)
{
    for (size_t i = 0; i < SYNC_GROUP_SLOTS; i++)
        pthread_cond_destroy(&g->slot[i].cv);
    pthread_mutex_destroy(&g->mu);
}

/* The slot of (dev, ino), or a free one claimed for it, or NULL. Locked. */
static sync_group_slot *slot_for(sync_group *g, uint64_t dev, uint64_t ino)
{
    sync_group_slot *free_slot = NULL;

    for (size_t i = 0; i < SYNC_GROUP_SLOTS; i++) {
        sync_group_slot *s = &g->slot[i];
        if (s->users == 0) {
            if (free_slot == NULL)
                free_slot = s;
        } else if (s->dev == dev && s->ino == ino) {
            return s;
        }
    }
    if (free_slot) {
        /* A fresh history: numbers of an earlier object must not count. */
        free_slot->dev = dev;
        free_slot->ino = ino;
        free_slot->started = free_slot->done = free_slot->fail_gen = 0;
        free_slot->fail_rc = 0;
    }
    return free_slot;
}

int sync_group_run(sync_group *g, uint64_t dev, uint64_t ino, sync_group_fn fn, void *arg)
{
    sync_group_slot *s;
    uint64_t target;
    int rc = 0;

    pthread_mutex_lock(&g->mu);
    g->calls++;
    s = slot_for(g, dev, ino);
    if (s == NULL) { /* every slot busy with other objects: sync alone */
        g->runs++;
        pthread_mutex_unlock(&g->mu);
        return fn(arg);
    }
    s->users++;
    /* A sync running now may have started before our change: wait for the next. */
    target = s->started + 1;
    while (s->done < target) {
        if (s->started > s->done) { /* a sync is running */
            pthread_cond_wait(&s->cv, &g->mu);
            continue;
        }
        uint64_t gen = ++s->started;
        g->runs++;
        pthread_mutex_unlock(&g->mu);
        int r = fn(arg);
        pthread_mutex_lock(&g->mu);
        s->done = gen;
        if (r < 0) {
            s->fail_gen = gen;
            s->fail_rc = r;
        }
        pthread_cond_broadcast(&s->cv);
    }
    if (s->fail_gen >= target)
        rc = s->fail_rc;
    s->users--;
    pthread_mutex_unlock(&g->mu);
    return rc;
}
