/*
 * smtp_auth_throttle.c - failed-AUTH counting per client address (see
 * smtp_auth_throttle.h).
 *
 * One allocation holds everything: the slots, a ring of the last `limit`
 * failure times per slot, and the hash buckets. Slots sit on an LRU list
 * (most recent failure first) so that a full table forgets the address that
 * has been quiet longest; an address that is failing right now stays near
 * the front and keeps its count however many others arrive.
 *
 * A sliding window needs the times of the last `limit` failures, not just a
 * counter: a fixed window would let 2*limit-1 guesses through across a
 * boundary. The cost is limit * 8 bytes a slot, bounded by
 * AUTH_THROTTLE_LIMIT_MAX.
 */
#include "sluice/smtp_auth_throttle.h"

#include "sluice/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NIL UINT32_MAX

struct slot {
    uint8_t key[16];
    uint32_t hnext;      /* next slot in the same bucket, or NIL */
    uint32_t prev, next; /* LRU list, or NIL */
    uint32_t n;          /* failure times held in the ring */
    uint32_t head;       /* ring index of the oldest */
};

struct auth_throttle {
    unsigned limit;
    uint64_t window_ms;
    uint32_t nslots, used;
    uint32_t lru_head, lru_tail; /* most and least recently failing */
    uint32_t mask;               /* buckets - 1 */
    uint64_t seed[2];
    struct slot *slots;
    uint64_t *times; /* nslots * limit */
    uint32_t *buckets;
    size_t bytes;
};

/* Packs sa into a 16-byte key; false for non-IP families. */
static bool make_key(const struct sockaddr *sa, uint8_t key[16])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (!sa)
        return false;
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(key, v4mapped, 12);
        memcpy(key + 12, &s4->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memcpy(key, s6->sin6_addr.s6_addr, 16);
            return true;
        }
        /*
         * The /64 prefix. The low 8 bytes stay zero, so no IPv6 key equals an
         * IPv4 one (those have ff ff in bytes 10 and 11).
         */
        memcpy(key, s6->sin6_addr.s6_addr, 8);
        return true;
    }
    return false;
}

static uint64_t mix64(uint64_t x)
{
    /* The murmur3 finalizer: every input bit affects every output bit. */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint32_t bucket_of(const auth_throttle *t, const uint8_t key[16])
{
    uint64_t w0, w1;
    memcpy(&w0, key, 8);
    memcpy(&w1, key + 8, 8);
    uint64_t h = mix64(w0 ^ t->seed[0]);
    h = mix64(h ^ w1 ^ t->seed[1]);
    return (uint32_t)h & t->mask;
}

static uint32_t find(const auth_throttle *t, const uint8_t key[16])
{
    for (uint32_t i = t->buckets[bucket_of(t, key)]; i != NIL; i = t->slots[i].hnext)
        if (memcmp(t->slots[i].key, key, 16) == 0)
            return i;
    return NIL;
}

static void lru_unlink(auth_throttle *t, uint32_t i)
{
    struct slot *s = &t->slots[i];
    if (s->prev != NIL)
        t->slots[s->prev].next = s->next;
    else
        t->lru_head = s->next;
    if (s->next != NIL)
        t->slots[s->next].prev = s->prev;
    else
        t->lru_tail = s->prev;
    s->prev = s->next = NIL;
}

static void lru_push_front(auth_throttle *t, uint32_t i)
{
    struct slot *s = &t->slots[i];
    s->prev = NIL;
    s->next = t->lru_head;
    if (t->lru_head != NIL)
        t->slots[t->lru_head].prev = i;
    t->lru_head = i;
    if (t->lru_tail == NIL)
        t->lru_tail = i;
}

static void hash_unlink(auth_throttle *t, uint32_t i)
{
    uint32_t *p = &t->buckets[bucket_of(t, t->slots[i].key)];
    while (*p != NIL && *p != i)
        p = &t->slots[*p].hnext;
    if (*p == i)
        *p = t->slots[i].hnext;
    t->slots[i].hnext = NIL;
}

static void seed_hash(auth_throttle *t)
{
    if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) == (ssize_t)sizeof(t->seed))
        return;
    /* Early boot without entropy: still unpredictable enough from outside. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t->seed[0] = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32));
    t->seed[1] = mix64((uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)t);
}

int auth_throttle_new(unsigned limit, unsigned window_s, size_t entries, auth_throttle **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (entries == 0)
        entries = AUTH_THROTTLE_ENTRIES;
    if (entries > ((size_t)1 << 24))
        return -EINVAL;
    if (limit > AUTH_THROTTLE_LIMIT_MAX) {
        log_warn("auth_fail_limit %u is above %u; using %u", limit, AUTH_THROTTLE_LIMIT_MAX,
                 AUTH_THROTTLE_LIMIT_MAX);
        limit = AUTH_THROTTLE_LIMIT_MAX;
    }
    if (window_s == 0)
        limit = 0; /* disabled: keep no state at all */

    size_t nbuckets = 1;
    while (nbuckets < entries)
        nbuckets <<= 1;
    size_t nslots = limit ? entries : 0;
    size_t bytes = sizeof(auth_throttle) + nslots * sizeof(struct slot) +
                   nslots * limit * sizeof(uint64_t) + (limit ? nbuckets : 0) * sizeof(uint32_t);

    auth_throttle *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->limit = limit;
    t->window_ms = (uint64_t)window_s * 1000u;
    t->nslots = (uint32_t)nslots;
    t->lru_head = t->lru_tail = NIL;
    t->mask = (uint32_t)(nbuckets - 1);
    t->bytes = bytes;
    if (limit) {
        t->slots = calloc(nslots, sizeof(struct slot));
        t->times = calloc(nslots * limit, sizeof(uint64_t));
        t->buckets = malloc(nbuckets * sizeof(uint32_t));
        if (!t->slots || !t->times || !t->buckets) {
            auth_throttle_free(t);
            return -ENOMEM;
        }
        for (size_t i = 0; i < nbuckets; i++)
            t->buckets[i] = NIL;
    }
    seed_hash(t);
    *out = t;
    return 0;
}

void auth_throttle_free(auth_throttle *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->times);
    free(t->buckets);
    free(t);
}

static bool expired(const auth_throttle *t, uint64_t then, uint64_t now)
{
    /* A clock that went back counts as "just now", never as long ago. */
    return now > then && now - then >= t->window_ms;
}

/* Failures of slot i inside the window at now (the ring is oldest first). */
static unsigned live(const auth_throttle *t, uint32_t i, uint64_t now)
{
    const struct slot *s = &t->slots[i];
    const uint64_t *ring = t->times + (size_t)i * t->limit;
    unsigned n = s->n, k = s->head;
    while (n > 0 && expired(t, ring[k], now)) {
        k = (k + 1) % t->limit;
        n--;
    }
    return n;
}

void auth_throttle_fail(auth_throttle *t, const struct sockaddr *sa, uint64_t now_ms)
{
    uint8_t key[16];
    if (!t || t->limit == 0 || !make_key(sa, key))
        return;

    uint32_t i = find(t, key);
    if (i == NIL) {
        if (t->used < t->nslots) {
            i = t->used++;
        } else {
            i = t->lru_tail; /* forget the address quiet the longest */
            lru_unlink(t, i);
            hash_unlink(t, i);
        }
        struct slot *s = &t->slots[i];
        memcpy(s->key, key, 16);
        s->n = s->head = 0;
        uint32_t b = bucket_of(t, key);
        s->hnext = t->buckets[b];
        t->buckets[b] = i;
    } else {
        lru_unlink(t, i);
    }
    lru_push_front(t, i);

    struct slot *s = &t->slots[i];
    uint64_t *ring = t->times + (size_t)i * t->limit;
    /* Drop what has left the window, then append (overwriting the oldest). */
    while (s->n > 0 && expired(t, ring[s->head], now_ms)) {
        s->head = (s->head + 1) % t->limit;
        s->n--;
    }
    if (s->n < t->limit) {
        ring[(s->head + s->n) % t->limit] = now_ms;
        s->n++;
    } else {
        ring[s->head] = now_ms;
        s->head = (s->head + 1) % t->limit;
    }
}

unsigned auth_throttle_failures(const auth_throttle *t, const struct sockaddr *sa, uint64_t now_ms)
{
    uint8_t key[16];
    if (!t || t->limit == 0 || !make_key(sa, key))
        return 0;
    uint32_t i = find(t, key);
    return i == NIL ? 0 : live(t, i, now_ms);
}

bool auth_throttle_blocked(const auth_throttle *t, const struct sockaddr *sa, uint64_t now_ms)
{
    return t && t->limit > 0 && auth_throttle_failures(t, sa, now_ms) >= t->limit;
}

size_t auth_throttle_used(const auth_throttle *t)
{
    return t ? t->used : 0;
}

size_t auth_throttle_bytes(const auth_throttle *t)
{
    return t ? t->bytes : 0;
}
