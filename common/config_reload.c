/*
 * config_reload.c - what a SIGHUP needs from the config module: comparing a
 * freshly loaded config with the running one, keeping the running value of
 * the keys a daemon cannot change in flight, and a reference count so that
 * sessions can go on with the config they started with.
 */
#include "config_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void *field(const sluice_config *cfg, int idx)
{
    return (char *)cfg + cfg_key_tab[idx].off;
}

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool strs_eq(char *const *a, int na, char *const *b, int nb)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (!str_eq(a[i], b[i]))
            return false;
    return true;
}

static bool key_equal(const sluice_config *a, const sluice_config *b, int idx)
{
    const struct cfg_key *k = &cfg_key_tab[idx];
    if (cfg_type_is_string(k->type))
        return str_eq(*(char **)field(a, idx), *(char **)field(b, idx));
    switch (k->type) {
    case CT_LISTEN:
        return a->nlisten == b->nlisten &&
               memcmp(a->listen, b->listen, (size_t)a->nlisten * sizeof(a->listen[0])) == 0;
    case CT_CIDRS:
        return a->ntrusted == b->ntrusted &&
               memcmp(a->trusted_networks, b->trusted_networks,
                      (size_t)a->ntrusted * sizeof(a->trusted_networks[0])) == 0;
    case CT_DOMAINS:
        return strs_eq(a->local_domains, a->nlocal_domains, b->local_domains, b->nlocal_domains);
    case CT_DNS:
        return strs_eq(a->dns_servers, a->ndns_servers, b->dns_servers, b->ndns_servers);
    default: /* scalars: compare the stored bytes */
        return memcmp(field(a, idx), field(b, idx), k->size) == 0;
    }
}

static int dup_strs(char **dst, int *ndst, char *const *src, int nsrc)
{
    for (int i = 0; i < *ndst; i++)
        free(dst[i]);
    *ndst = 0;
    for (int i = 0; i < nsrc; i++) {
        if (!(dst[i] = strdup(src[i])))
            return -ENOMEM;
        *ndst = i + 1;
    }
    return 0;
}

/* Gives dst its own copy of src's value of key idx. 0 or -ENOMEM. */
static int key_copy(sluice_config *dst, const sluice_config *src, int idx)
{
    const struct cfg_key *k = &cfg_key_tab[idx];
    if (cfg_type_is_string(k->type)) {
        const char *v = *(char **)field(src, idx);
        char *copy = v ? strdup(v) : NULL;
        if (v && !copy)
            return -ENOMEM;
        char **f = field(dst, idx);
        free(*f);
        *f = copy;
        return 0;
    }
    switch (k->type) {
    case CT_LISTEN:
        memcpy(dst->listen, src->listen, sizeof(dst->listen));
        dst->nlisten = src->nlisten;
        return 0;
    case CT_CIDRS:
        memcpy(dst->trusted_networks, src->trusted_networks, sizeof(dst->trusted_networks));
        dst->ntrusted = src->ntrusted;
        return 0;
    case CT_DOMAINS:
        return dup_strs(dst->local_domains, &dst->nlocal_domains, src->local_domains,
                        src->nlocal_domains);
    case CT_DNS:
        return dup_strs(dst->dns_servers, &dst->ndns_servers, src->dns_servers, src->ndns_servers);
    default:
        memcpy(field(dst, idx), field(src, idx), k->size);
        return 0;
    }
}

/* Index of "section.key", or -1. */
static int find_dotted(const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    char section[32];
    size_t n = dot ? (size_t)(dot - dotted) : sizeof(section);
    if (n >= sizeof(section))
        return -1;
    memcpy(section, dotted, n);
    section[n] = '\0';
    return cfg_key_find(section, dot + 1);
}

bool config_key_same(const sluice_config *a, const sluice_config *b, const char *dotted)
{
    int idx = find_dotted(dotted);
    return idx >= 0 && key_equal(a, b, idx);
}

int config_keep_fixed(sluice_config *loaded, const sluice_config *running, const char *const *fixed,
                      const char *prog, config_diag_fn diag, void *arg)
{
    int kept = 0;
    for (const char *const *f = fixed; *f; f++) {
        int idx = find_dotted(*f);
        if (idx < 0 || key_equal(loaded, running, idx))
            continue;
        unsigned line = loaded->src && loaded->src->line ? loaded->src->line[idx] : 0;
        if (cfg_key_tab[idx].type == CT_LISTEN && loaded->nlisten > 0 && loaded->src)
            line = loaded->src->listen_line[0]; /* where the list begins */
        cfg_report(diag, arg, cfg_display_name(loaded), line,
                   "[%s] %s changed: it takes effect when %s restarts; the running value stays",
                   config_keys(NULL)[idx].section, config_keys(NULL)[idx].name, prog);
        if (key_copy(loaded, running, idx) < 0)
            return -ENOMEM;
        kept++;
    }
    return kept;
}

bool config_same(const sluice_config *a, const sluice_config *b)
{
    for (int i = 0; i < cfg_nkeys; i++)
        if (!key_equal(a, b, i))
            return false;
    return true;
}

sluice_config *config_hold(sluice_config *cfg)
{
    if (cfg)
        cfg->refs++;
    return cfg;
}

void config_release(sluice_config *cfg)
{
    if (!cfg || --cfg->refs > 0)
        return;
    config_free(cfg);
    free(cfg);
}
