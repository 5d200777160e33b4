/*
 * map.c - "key value" tables read from flat files (mailboxes, aliases,
 * transport, sender_login_map), looked up with open-addressing hash tables.
 *
 * Case rules (map.h): a key with '@' keeps its local part as written and has
 * its domain lower-cased (RFC 5321 2.4: local parts may be case-sensitive,
 * domains are not); a key without '@' is lower-cased whole. A lookup of an
 * address that misses falls back to a match ignoring case everywhere, since in
 * practice mailbox names are case-insensitive (Postfix, chasquid do the same);
 * for that a second table indexes the fully folded address keys.
 *
 * Keys are stored in that normalized form, so map_entry shows them so.
 */
#include "sluice/map.h"

#include "config_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAP_FILE_MAX ((size_t)1 << 30) /* a map past 1 GiB is a mistake */

struct map_ent {
    char *key; /* key '\0' value '\0', one allocation */
    const char *value;
    size_t keylen;
    uint64_t hash;      /* of the normalized key */
    uint64_t fold_hash; /* of the fully folded key */
    unsigned line;
};

struct map {
    struct map_ent *ents;
    size_t n, cap;
    uint32_t *exact; /* slots: entry index + 1, 0 = empty; size nslots */
    uint32_t *fold;  /* address keys only, folded whole */
    size_t nslots;   /* a power of two, at least twice the entries */
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* FNV-1a; fold = lower-case every byte first. */
static uint64_t hash_bytes(const char *s, size_t n, bool fold)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (fold)
            c = (unsigned char)cfg_lower((char)c);
        h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

/* Writes the normalized form of s[0..n) into out (n bytes). */
static void normalize(const char *s, size_t n, char *out)
{
    const char *at = memrchr(s, '@', n);
    size_t from = at ? (size_t)(at - s) + 1 : 0;
    memcpy(out, s, from);
    for (size_t i = from; i < n; i++)
        out[i] = cfg_lower(s[i]);
}

static int grow_slots(map *m, size_t want_entries)
{
    size_t ns = m->nslots ? m->nslots : 16;
    while (ns < want_entries * 2) {
        if (ns > SIZE_MAX / 2 / sizeof(uint32_t))
            return -ENOMEM;
        ns *= 2;
    }
    if (ns == m->nslots)
        return 0;
    uint32_t *ex = calloc(ns, sizeof(uint32_t));
    uint32_t *fo = calloc(ns, sizeof(uint32_t));
    if (!ex || !fo) {
        free(ex);
        free(fo);
        return -ENOMEM;
    }
    for (int t = 0; t < 2; t++) {
        uint32_t *old = t == 0 ? m->exact : m->fold;
        uint32_t *nt = t == 0 ? ex : fo;
        for (size_t i = 0; old && i < m->nslots; i++) {
            if (!old[i])
                continue;
            const struct map_ent *e = &m->ents[old[i] - 1];
            size_t j = (size_t)(t == 0 ? e->hash : e->fold_hash) & (ns - 1);
            while (nt[j])
                j = (j + 1) & (ns - 1);
            nt[j] = old[i];
        }
    }
    free(m->exact);
    free(m->fold);
    m->exact = ex;
    m->fold = fo;
    m->nslots = ns;
    return 0;
}

/* Slot holding key (normalized) in the exact table, or the empty slot where it would go. */
static size_t find_exact(const map *m, const char *key, size_t n, uint64_t h)
{
    size_t j = (size_t)h & (m->nslots - 1);
    while (m->exact[j]) {
        const struct map_ent *e = &m->ents[m->exact[j] - 1];
        if (e->hash == h && e->keylen == n && memcmp(e->key, key, n) == 0)
            break;
        j = (j + 1) & (m->nslots - 1);
    }
    return j;
}

static size_t find_fold(const map *m, const char *key, size_t n, uint64_t h)
{
    size_t j = (size_t)h & (m->nslots - 1);
    while (m->fold[j]) {
        const struct map_ent *e = &m->ents[m->fold[j] - 1];
        if (e->fold_hash == h && e->keylen == n && cfg_caseeq(e->key, key, n))
            break;
        j = (j + 1) & (m->nslots - 1);
    }
    return j;
}

/* Adds key/value (key already normalized). 1 if the key was there, 0 added, -ENOMEM. */
static int add(map *m, const char *key, size_t kl, const char *val, size_t vl, unsigned line,
               unsigned *first_line)
{
    if (m->n >= UINT32_MAX - 1)
        return -ENOMEM;
    if (grow_slots(m, m->n + 1) < 0)
        return -ENOMEM;
    uint64_t h = hash_bytes(key, kl, false);
    size_t slot = find_exact(m, key, kl, h);
    if (m->exact[slot]) {
        *first_line = m->ents[m->exact[slot] - 1].line;
        return 1;
    }
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 16;
        struct map_ent *ne = reallocarray(m->ents, nc, sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        m->ents = ne;
        m->cap = nc;
    }
    char *mem = malloc(kl + vl + 2);
    if (!mem)
        return -ENOMEM;
    memcpy(mem, key, kl);
    mem[kl] = '\0';
    memcpy(mem + kl + 1, val, vl);
    mem[kl + 1 + vl] = '\0';
    struct map_ent *e = &m->ents[m->n];
    e->key = mem;
    e->value = mem + kl + 1;
    e->keylen = kl;
    e->hash = h;
    e->fold_hash = hash_bytes(key, kl, true);
    e->line = line;
    m->n++;
    m->exact[slot] = (uint32_t)m->n;
    if (memchr(key, '@', kl)) {
        /* First key wins the folded slot: "User@x" and "user@x" both stay exact. */
        size_t fs = find_fold(m, key, kl, e->fold_hash);
        if (!m->fold[fs])
            m->fold[fs] = (uint32_t)m->n;
    }
    return 0;
}

static map *map_new(void)
{
    map *m = calloc(1, sizeof(*m));
    if (m && grow_slots(m, 1) < 0) {
        free(m);
        return NULL;
    }
    return m;
}

int map_load_buffer(const char *name, const char *data, size_t len, map **out, config_diag_fn diag,
                    void *arg)
{
    const char *p, *end;
    unsigned lineno = 0;
    int problems = 0;
    char *norm = malloc(CFG_LINE_MAX + 1);
    map *m = map_new();

    *out = NULL;
    if (!data && len > 0) {
        free(norm);
        map_free(m);
        return -EINVAL;
    }
    p = data ? data : "";
    end = p + len;
    if (!m || !norm) {
        free(norm);
        map_free(m);
        cfg_report(diag, arg, name, 0, "cannot load: %s", strerror(ENOMEM));
        return -ENOMEM;
    }
    while (p < end) {
        const char *line = p;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        p = nl ? nl + 1 : end;
        lineno++;

        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        if (ll > CFG_LINE_MAX) {
            cfg_report(diag, arg, name, lineno, "line is longer than %d bytes", CFG_LINE_MAX);
            problems++;
            continue;
        }
        size_t bad = ll;
        for (size_t i = 0; i < ll; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                bad = i;
                break;
            }
        }
        if (bad < ll) {
            cfg_report(diag, arg, name, lineno, "control character 0x%02x in line",
                       (unsigned char)line[bad]);
            problems++;
            continue;
        }
        /* '#' starts a comment at the start of a line or after blank space. */
        for (size_t i = 0; i < ll; i++) {
            if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) {
                ll = i;
                break;
            }
        }
        while (ll > 0 && is_space(*line)) {
            line++;
            ll--;
        }
        while (ll > 0 && is_space(line[ll - 1]))
            ll--;
        if (ll == 0)
            continue;
        size_t kl = 0;
        while (kl < ll && !is_space(line[kl]))
            kl++;
        const char *val = line + kl;
        size_t vl = ll - kl;
        while (vl > 0 && is_space(*val)) {
            val++;
            vl--;
        }
        if (vl == 0) {
            cfg_report(diag, arg, name, lineno, "key '%.*s' has no value", (int)(kl > 80 ? 80 : kl),
                       line);
            problems++;
            continue;
        }
        normalize(line, kl, norm);
        unsigned first = 0;
        int rc = add(m, norm, kl, val, vl, lineno, &first);
        if (rc < 0) {
            free(norm);
            map_free(m);
            cfg_report(diag, arg, name, 0, "cannot load: %s", strerror(-rc));
            return rc;
        }
        if (rc == 1) {
            /* Postfix's postmap warns and keeps the first; so do we, as a problem. */
            cfg_report(diag, arg, name, lineno, "duplicate key '%.*s' (first at line %u)",
                       (int)(kl > 80 ? 80 : kl), line, first);
            problems++;
        }
    }
    free(norm);
    *out = m;
    return problems;
}

int map_load(const char *path, map **out, config_diag_fn diag, void *arg)
{
    char *data = NULL;
    size_t len = 0;

    *out = NULL;
    if (!path || !*path) {
        *out = map_new();
        return *out ? 0 : -ENOMEM;
    }
    int rc = cfg_read_file(path, MAP_FILE_MAX, &data, &len);
    if (rc < 0) {
        cfg_report(diag, arg, path, 0, "cannot read: %s", strerror(-rc));
        return rc;
    }
    rc = map_load_buffer(path, data, len, out, diag, arg);
    free(data);
    return rc;
}

void map_free(map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->ents[i].key);
    free(m->ents);
    free(m->exact);
    free(m->fold);
    free(m);
}

const char *map_lookup(const map *m, const char *key, size_t keylen)
{
    char buf[CFG_LINE_MAX];

    if (!m || !key || m->n == 0 || keylen == 0 || keylen > sizeof(buf))
        return NULL; /* no stored key is longer than a line */
    normalize(key, keylen, buf);
    size_t s = find_exact(m, buf, keylen, hash_bytes(buf, keylen, false));
    if (m->exact[s])
        return m->ents[m->exact[s] - 1].value;
    if (!memchr(key, '@', keylen))
        return NULL; /* already compared without case */
    s = find_fold(m, key, keylen, hash_bytes(key, keylen, true));
    return m->fold[s] ? m->ents[m->fold[s] - 1].value : NULL;
}

size_t map_count(const map *m)
{
    return m ? m->n : 0;
}

void map_entry(const map *m, size_t i, const char **key, const char **value)
{
    if (!m || i >= m->n) {
        if (key)
            *key = NULL;
        if (value)
            *value = NULL;
        return;
    }
    if (key)
        *key = m->ents[i].key;
    if (value)
        *value = m->ents[i].value;
}

unsigned map_entry_line(const map *m, size_t i)
{
    return m && i < m->n ? m->ents[i].line : 0;
}
