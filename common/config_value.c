/*
 * config_value.c - parses one config value by its key's type (from the table
 * in config_table.c) and stores it into struct sluice_config. Bad values are
 * reported as "FILE:LINE: key: ..." and leave the field as it was (its
 * default), so one bad line does not hide the next.
 */
#include "config_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_MAX CFG_ECHO_MAX

static void *field(sluice_config *cfg, int idx)
{
    return (char *)cfg + cfg_key_tab[idx].off;
}

int cfg_set_string(struct cfg_load *L, int idx, char *s)
{
    if (!s) {
        L->fatal = -ENOMEM;
        return -ENOMEM;
    }
    char **f = field(L->cfg, idx);
    free(*f);
    *f = s;
    return 0;
}

void cfg_clear_list(sluice_config *cfg, enum cfg_type type)
{
    switch (type) {
    case CT_LISTEN:
        cfg->nlisten = 0;
        break;
    case CT_CIDRS:
        cfg->ntrusted = 0;
        break;
    case CT_DOMAINS:
        for (int i = 0; i < cfg->nlocal_domains; i++)
            free(cfg->local_domains[i]);
        cfg->nlocal_domains = 0;
        break;
    case CT_DNS:
        for (int i = 0; i < cfg->ndns_servers; i++)
            free(cfg->dns_servers[i]);
        cfg->ndns_servers = 0;
        break;
    default:
        break;
    }
}

static bool valid_user(const char *s)
{
    size_t n = strlen(s);
    if (n > 32 || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!cfg_alnum(s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return false;
    return true;
}

/* "plain, login" -> "PLAIN LOGIN"; NULL with *why on a bad name. */
static char *norm_mechs(const char *v, const char **why)
{
    char *out = malloc(strlen(v) + 1);
    size_t o = 0, len;
    const char *tok, *p = v;

    if (!out) {
        *why = NULL;
        return NULL;
    }
    while ((tok = cfg_next_token(&p, &len))) {
        if (len > 20) { /* RFC 4422 3.1: at most 20 characters */
            *why = "a SASL mechanism name has at most 20 characters";
            free(out);
            return NULL;
        }
        for (size_t i = 0; i < len; i++) {
            if (!cfg_alnum(tok[i]) && tok[i] != '-' && tok[i] != '_') {
                *why = "SASL mechanism names are letters, digits, '-' and '_'";
                free(out);
                return NULL;
            }
        }
        if (o)
            out[o++] = ' ';
        for (size_t i = 0; i < len; i++)
            out[o++] = cfg_upper(tok[i]);
    }
    out[o] = '\0';
    return out;
}

static void set_list(struct cfg_load *L, int idx, const config_key_doc *d, const char *v,
                     unsigned line)
{
    sluice_config *cfg = L->cfg;
    enum cfg_type type = cfg_key_tab[idx].type;
    const char *why = NULL, *tok, *p = v;
    size_t len;

    if (type == CT_LISTEN) {
        cfg_listen l;
        if (cfg_parse_listen(v, &l, &why) < 0) {
            cfg_problem(L, line, "listen: bad value '%.*s': %s", ECHO_MAX, v, why);
            return;
        }
        for (int i = 0; i < cfg->nlisten; i++) {
            if (cfg->listen[i].port == l.port && strcmp(cfg->listen[i].host, l.host) == 0) {
                cfg_problem(L, line, "listen: %s port %d is already a listener (line %u)", l.host,
                            l.port, cfg->src->listen_line[i]);
                return;
            }
        }
        if (cfg->nlisten >= CFG_MAX_LISTEN) {
            cfg_problem(L, line, "listen: too many listeners (at most %d)", CFG_MAX_LISTEN);
            return;
        }
        cfg->src->listen_line[cfg->nlisten] = line;
        cfg->listen[cfg->nlisten++] = l;
        return;
    }
    while ((tok = cfg_next_token(&p, &len))) {
        if (type == CT_CIDRS) {
            cfg_cidr c;
            if (cfg_parse_cidr(tok, len, &c, &why) < 0) {
                cfg_problem(L, line, "%s: bad network '%.*s': %s", d->name, (int)len, tok, why);
            } else if (cfg->ntrusted >= CFG_MAX_NETS) {
                cfg_problem(L, line, "%s: too many networks (at most %d)", d->name, CFG_MAX_NETS);
                return;
            } else {
                cfg->trusted_networks[cfg->ntrusted++] = c;
            }
        } else if (type == CT_DOMAINS) {
            if (len > 1 && tok[len - 1] == '.') {
                cfg_problem(L, line, "%s: write '%.*s' without the trailing dot", d->name,
                            (int)len - 1, tok);
                continue;
            }
            if (!cfg_valid_domain(tok, len)) {
                cfg_problem(L, line, "%s: bad domain '%.*s'", d->name, (int)len, tok);
                continue;
            }
            if (config_is_local_domain(cfg, tok, len))
                continue; /* listed twice: harmless */
            if (cfg->nlocal_domains >= CFG_MAX_DOMAINS) {
                cfg_problem(L, line, "%s: too many domains (at most %d)", d->name, CFG_MAX_DOMAINS);
                return;
            }
            char *s = strndup(tok, len);
            if (!s) {
                L->fatal = -ENOMEM;
                return;
            }
            for (char *c = s; *c; c++)
                *c = cfg_lower(*c);
            cfg->local_domains[cfg->nlocal_domains++] = s;
        } else if (type == CT_DNS) {
            char buf[64];
            if (cfg_parse_dns(tok, len, buf, sizeof(buf), &why) < 0) {
                cfg_problem(L, line, "%s: bad server '%.*s': %s", d->name, (int)len, tok, why);
                continue;
            }
            if (cfg->ndns_servers >= CFG_MAX_DNS) {
                cfg_problem(L, line, "%s: too many servers (at most %d)", d->name, CFG_MAX_DNS);
                return;
            }
            char *s = strdup(buf);
            if (!s) {
                L->fatal = -ENOMEM;
                return;
            }
            cfg->dns_servers[cfg->ndns_servers++] = s;
        }
    }
}

void cfg_set_key(struct cfg_load *L, int idx, const char *v, unsigned line)
{
    const struct cfg_key *k = &cfg_key_tab[idx];
    const config_key_doc *d = &config_keys(NULL)[idx];
    sluice_config *cfg = L->cfg;
    unsigned *lines = cfg->src->line;
    const char *why = NULL;

    if (line > 0 && (k->flags & CK_LIST)) {
        /* The first line given replaces the default list; later lines add to it. */
        if (lines[idx] == 0) {
            cfg_clear_list(cfg, k->type);
            lines[idx] = line;
        }
        set_list(L, idx, d, v, line);
        return;
    }
    if (line > 0 && lines[idx] > 0)
        cfg_problem(L, line, "duplicate key '%s' (first set at line %u); this later value is used",
                    d->name, lines[idx]);
    if (line > 0)
        lines[idx] = line;
    if ((k->flags & CK_NONEMPTY) && *v == '\0') {
        cfg_problem(L, line, "%s must not be empty (default: %s)", d->name, d->def);
        return;
    }

    switch (k->type) {
    case CT_STRING:
        cfg_set_string(L, idx, strdup(v));
        return;
    case CT_HOSTNAME:
        if (!cfg_valid_domain(v, strlen(v))) {
            cfg_problem(L, line, "%s: bad host name '%.*s'", d->name, ECHO_MAX, v);
            return;
        }
        cfg_set_string(L, idx, strdup(v));
        return;
    case CT_USER:
        if (!valid_user(v)) {
            cfg_problem(L, line, "%s: bad user name '%.*s'", d->name, ECHO_MAX, v);
            return;
        }
        cfg_set_string(L, idx, strdup(v));
        return;
    case CT_PATH:
        cfg_set_string(L, idx, cfg_path_join(cfg->dir, v));
        return;
    case CT_MECHS: {
        char *m = norm_mechs(v, &why);
        if (!m && !why) {
            L->fatal = -ENOMEM;
            return;
        }
        if (!m) {
            cfg_problem(L, line, "%s: bad value '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        cfg_set_string(L, idx, m);
        return;
    }
    case CT_RELAY: {
        cfg_relay r;
        if (*v && cfg_parse_relay(v, &r, &why) < 0) {
            cfg_problem(L, line, "%s: bad next hop '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        cfg_set_string(L, idx, strdup(v));
        return;
    }
    case CT_BOOL: {
        bool b;
        if (cfg_parse_bool(v, &b, &why) < 0) {
            cfg_problem(L, line, "%s: bad value '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        *(bool *)field(cfg, idx) = b;
        return;
    }
    case CT_ENUM: {
        /* The choices are the type string itself: "off|tag|reject". */
        const char *c = d->type;
        int n = 0;
        size_t vl = strlen(v);
        for (;;) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == vl && cfg_caseeq(c, v, vl))
                break;
            if (!bar) {
                cfg_problem(L, line, "%s: bad value '%.*s': expected %s", d->name, ECHO_MAX, v,
                            d->type);
                return;
            }
            c = bar + 1;
            n++;
        }
        if (k->size == sizeof(bool))
            *(bool *)field(cfg, idx) = n != 0;
        else
            *(int *)field(cfg, idx) = n;
        return;
    }
    case CT_UINT:
    case CT_SIZE:
    case CT_PORT:
    case CT_DURATION: {
        uint64_t n;
        if (k->type == CT_DURATION) {
            unsigned u;
            if (config_parse_duration(v, &u) < 0) {
                cfg_problem(L, line,
                            "%s: bad duration '%.*s': expected a number with s, m, h or d "
                            "(30s, 5m, 1h, 2d)",
                            d->name, ECHO_MAX, v);
                return;
            }
            n = u;
        } else if (cfg_parse_u64(v, &n, &why) < 0) {
            cfg_problem(L, line, "%s: bad value '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        if (n < k->min || n > k->max) {
            if (n < k->min)
                cfg_problem(L, line, "%s: %s is too small (at least %llu)", d->name, v,
                            (unsigned long long)k->min);
            else
                cfg_problem(L, line, "%s: %.*s is too large (at most %llu)", d->name, ECHO_MAX, v,
                            (unsigned long long)k->max);
            return;
        }
        if (k->type == CT_SIZE)
            *(uint64_t *)field(cfg, idx) = n;
        else if (k->type == CT_PORT)
            *(int *)field(cfg, idx) = (int)n;
        else
            *(unsigned *)field(cfg, idx) = (unsigned)n;
        return;
    }
    case CT_LISTEN:
    case CT_CIDRS:
    case CT_DOMAINS:
    case CT_DNS:
        set_list(L, idx, d, v, line);
        return;
    }
}
