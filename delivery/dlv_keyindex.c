/*
 * dlv_keyindex.c - one listing per Maildir per process instead of one per
 * delivery that might repeat an earlier one. See dlv_keyindex.h.
 *
 * A set is an open-addressing table of 64-bit FNV-1a hashes of keys
 * (0 marks an empty slot; a hash of 0 is stored as 1), grown at 3/4 full.
 */
#include "sluice/dlv_keyindex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/log.h"
#include "sluice/maildir.h"

struct dlv_keyset {
    dlv_keyset *next;
    char *dir;
    uv_mutex_t mu;
    bool listed; /* the listing is done (under mu, held while listing) */
    bool broken; /* it failed, or memory ran out: every answer is "maybe" */
    uint64_t *slot;
    size_t cap, n; /* cap is 0 or a power of two */
};

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

static bool set_has(const dlv_keyset *s, uint64_t h)
{
    if (s->cap == 0)
        return false;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == h)
            return true;
        if (s->slot[i] == 0)
            return false;
    }
}

/* Inserts h; 1 added, 0 already there, -ENOMEM. */
static int set_put(dlv_keyset *s, uint64_t h)
{
    if ((s->n + 1) * 4 > s->cap * 3) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        uint64_t *v = calloc(ncap, sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slot[i] == 0)
                continue;
            size_t j = s->slot[i] & (ncap - 1);
            while (v[j] != 0)
                j = (j + 1) & (ncap - 1);
            v[j] = s->slot[i];
        }
        free(s->slot);
        s->slot = v;
        s->cap = ncap;
    }
    size_t i = h & (s->cap - 1);
    for (; s->slot[i] != 0; i = (i + 1) & (s->cap - 1))
        if (s->slot[i] == h)
            return 0;
    s->slot[i] = h;
    s->n++;
    return 1;
}

int dlv_keyindex_init(dlv_keyindex *x)
{
    memset(x, 0, sizeof(*x));
    return uv_mutex_init(&x->mu);
}

void dlv_keyindex_free(dlv_keyindex *x)
{
    dlv_keyset *s = x->sets;
    while (s) {
        dlv_keyset *next = s->next;
        uv_mutex_destroy(&s->mu);
        free(s->slot);
        free(s->dir);
        free(s);
        s = next;
    }
    x->sets = NULL;
    uv_mutex_destroy(&x->mu);
}

/* dir's set, made (empty, not listed) when create is set; under x->mu. */
static dlv_keyset *find_set(dlv_keyindex *x, const char *dir, bool create)
{
    for (dlv_keyset *s = x->sets; s; s = s->next)
        if (strcmp(s->dir, dir) == 0)
            return s;
    if (!create || x->nkeys >= DLV_KEYINDEX_MAX_KEYS)
        return NULL;
    dlv_keyset *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->dir = strdup(dir)) == NULL || uv_mutex_init(&s->mu) != 0) {
        if (s)
            free(s->dir);
        free(s);
        return NULL;
    }
    s->next = x->sets;
    x->sets = s;
    return s;
}

/* A set that cannot be trusted answers "maybe" from now on and gives its
 * memory back; under s->mu. */
static void forget(dlv_keyindex *x, dlv_keyset *s)
{
    s->broken = true;
    free(s->slot);
    s->slot = NULL;
    uv_mutex_lock(&x->mu);
    x->nkeys -= s->n;
    uv_mutex_unlock(&x->mu);
    s->cap = s->n = 0;
}

struct fill {
    dlv_keyset *s;
    size_t before; /* keys the set held (added, and counted) before the listing */
    size_t room;   /* keys the bound leaves for this listing */
};

static int fill_one(void *arg, const char *key, size_t klen)
{
    struct fill *f = arg;
    int rc = set_put(f->s, hash_key(key, klen));
    if (rc < 0)
        return rc;
    return f->s->n - f->before > f->room ? -E2BIG : 0;
}

bool dlv_keyindex_may_hold(dlv_keyindex *x, const char *dir, const char *key)
{
    uv_mutex_lock(&x->mu);
    dlv_keyset *s = find_set(x, dir, true);
    uv_mutex_unlock(&x->mu);
    if (s == NULL)
        return true;
    uv_mutex_lock(&s->mu);
    if (!s->listed) {
        struct fill f = {.s = s, .before = s->n};
        uv_mutex_lock(&x->mu);
        f.room = x->nkeys < DLV_KEYINDEX_MAX_KEYS ? DLV_KEYINDEX_MAX_KEYS - x->nkeys : 0;
        uv_mutex_unlock(&x->mu);
        int rc = maildir_each_key(dir, fill_one, &f);
        s->listed = true;
        /* The listing's keys are counted once, not each under the lock. */
        uv_mutex_lock(&x->mu);
        x->nkeys += s->n - f.before;
        uv_mutex_unlock(&x->mu);
        if (rc != 0) {
            forget(x, s);
            log_warn("maildir %s: cannot index its delivery keys (%s); each delivery that may "
                     "repeat an earlier one lists it",
                     dir, rc == -E2BIG ? "too many" : strerror(-rc));
        }
    }
    bool maybe = s->broken || set_has(s, hash_key(key, strlen(key)));
    uv_mutex_unlock(&s->mu);
    return maybe;
}

void dlv_keyindex_add(dlv_keyindex *x, const char *dir, const char *key)
{
    uv_mutex_lock(&x->mu);
    dlv_keyset *s = find_set(x, dir, false);
    uv_mutex_unlock(&x->mu);
    if (s == NULL)
        return; /* not listed yet: its listing will see the file */
    uv_mutex_lock(&s->mu);
    if (!s->broken) {
        int rc = set_put(s, hash_key(key, strlen(key)));
        if (rc < 0)
            forget(x, s);
        else if (rc == 1) {
            uv_mutex_lock(&x->mu);
            x->nkeys++;
            uv_mutex_unlock(&x->mu);
        }
    }
    uv_mutex_unlock(&s->mu);
}
