/*
 * config.c - loads sluice.conf into struct sluice_config, driven by the key
 * table in config_table.c. Every problem is reported as "FILE:LINE: message"
 * and counted; loading goes on after a problem so one run shows them all.
 *
 * inih does the INI structure ([section], key = value), fed through our own
 * reader. The reader checks each raw line first, because inih reports only
 * the first bad line (as a return value, without saying what is wrong), and
 * Debian's build holds a line in a 200-byte buffer: longer lines would be cut
 * and the rest read as a new line. So the reader hands inih only "[section]"
 * or "key=" and keeps the value, whatever its length, for the handler. That
 * also keeps inih's process-wide settings (comment characters, multi-line
 * values) out of the picture: comments are stripped here, by our rule.
 */
#include "config_int.h"

#define INI_HANDLER_LINENO 1
#include <ini.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CFG_FILE_MAX (4u << 20) /* a config past 4 MiB is not a config */
#define ECHO_MAX 80             /* longest value quoted back in a message */

struct load {
    sluice_config *cfg;
    const char *name; /* for messages */
    config_diag_fn diag;
    void *arg;
    int problems;
    int fatal; /* negative errno: out of memory */

    /* reader state */
    const char *p, *end;
    unsigned lineno;
    char cooked[96]; /* what inih sees of the current line */
    size_t clen, coff;
    bool has_value; /* value[] belongs to the line being parsed */
    char value[CFG_LINE_MAX + 1];
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void problem(struct load *L, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(struct load *L, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(L->diag, L->arg, L->name, line, fmt, ap);
    va_end(ap);
    L->problems++;
}

static void *field(sluice_config *cfg, int idx)
{
    return (char *)cfg + cfg_key_tab[idx].off;
}

/* Replaces a string field; the old value is freed. */
static int set_string(struct load *L, int idx, char *s)
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

static void clear_list(sluice_config *cfg, enum cfg_type type)
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

static void set_list(struct load *L, int idx, const config_key_doc *d, const char *v,
                     unsigned line)
{
    sluice_config *cfg = L->cfg;
    enum cfg_type type = cfg_key_tab[idx].type;
    const char *why = NULL, *tok, *p = v;
    size_t len;

    if (type == CT_LISTEN) {
        cfg_listen l;
        if (cfg_parse_listen(v, &l, &why) < 0) {
            problem(L, line, "listen: bad value '%.*s': %s", ECHO_MAX, v, why);
            return;
        }
        for (int i = 0; i < cfg->nlisten; i++) {
            if (cfg->listen[i].port == l.port && strcmp(cfg->listen[i].host, l.host) == 0) {
                problem(L, line, "listen: %s port %d is already a listener (line %u)", l.host,
                        l.port, cfg->src->listen_line[i]);
                return;
            }
        }
        if (cfg->nlisten >= CFG_MAX_LISTEN) {
            problem(L, line, "listen: too many listeners (at most %d)", CFG_MAX_LISTEN);
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
                problem(L, line, "%s: bad network '%.*s': %s", d->name, (int)len, tok, why);
            } else if (cfg->ntrusted >= CFG_MAX_NETS) {
                problem(L, line, "%s: too many networks (at most %d)", d->name, CFG_MAX_NETS);
                return;
            } else {
                cfg->trusted_networks[cfg->ntrusted++] = c;
            }
        } else if (type == CT_DOMAINS) {
            if (len > 1 && tok[len - 1] == '.') {
                problem(L, line, "%s: write '%.*s' without the trailing dot", d->name,
                        (int)len - 1, tok);
                continue;
            }
            if (!cfg_valid_domain(tok, len)) {
                problem(L, line, "%s: bad domain '%.*s'", d->name, (int)len, tok);
                continue;
            }
            if (config_is_local_domain(cfg, tok, len))
                continue; /* listed twice: harmless */
            if (cfg->nlocal_domains >= CFG_MAX_DOMAINS) {
                problem(L, line, "%s: too many domains (at most %d)", d->name, CFG_MAX_DOMAINS);
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
                problem(L, line, "%s: bad server '%.*s': %s", d->name, (int)len, tok, why);
                continue;
            }
            if (cfg->ndns_servers >= CFG_MAX_DNS) {
                problem(L, line, "%s: too many servers (at most %d)", d->name, CFG_MAX_DNS);
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

/* Parses v for key idx and stores it. line 0 = the built-in default. */
static void set_key(struct load *L, int idx, const char *v, unsigned line)
{
    const struct cfg_key *k = &cfg_key_tab[idx];
    const config_key_doc *d = &config_keys(NULL)[idx];
    sluice_config *cfg = L->cfg;
    unsigned *lines = cfg->src->line;
    const char *why = NULL;

    if (line > 0 && (k->flags & CK_LIST)) {
        /* The first line given replaces the default list; later lines add to it. */
        if (lines[idx] == 0) {
            clear_list(cfg, k->type);
            lines[idx] = line;
        }
        set_list(L, idx, d, v, line);
        return;
    }
    if (line > 0 && lines[idx] > 0)
        problem(L, line, "duplicate key '%s' (first set at line %u); this later value is used",
                d->name, lines[idx]);
    if (line > 0)
        lines[idx] = line;
    if ((k->flags & CK_NONEMPTY) && *v == '\0') {
        problem(L, line, "%s must not be empty (default: %s)", d->name, d->def);
        return;
    }

    switch (k->type) {
    case CT_STRING:
        set_string(L, idx, strdup(v));
        return;
    case CT_HOSTNAME:
        if (!cfg_valid_domain(v, strlen(v))) {
            problem(L, line, "%s: bad host name '%.*s'", d->name, ECHO_MAX, v);
            return;
        }
        set_string(L, idx, strdup(v));
        return;
    case CT_USER:
        if (!valid_user(v)) {
            problem(L, line, "%s: bad user name '%.*s'", d->name, ECHO_MAX, v);
            return;
        }
        set_string(L, idx, strdup(v));
        return;
    case CT_PATH:
        set_string(L, idx, cfg_path_join(cfg->dir, v));
        return;
    case CT_MECHS: {
        char *m = norm_mechs(v, &why);
        if (!m && !why) {
            L->fatal = -ENOMEM;
            return;
        }
        if (!m) {
            problem(L, line, "%s: bad value '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        set_string(L, idx, m);
        return;
    }
    case CT_RELAY: {
        cfg_relay r;
        if (*v && cfg_parse_relay(v, &r, &why) < 0) {
            problem(L, line, "%s: bad next hop '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        set_string(L, idx, strdup(v));
        return;
    }
    case CT_BOOL: {
        bool b;
        if (cfg_parse_bool(v, &b, &why) < 0) {
            problem(L, line, "%s: bad value '%.*s': %s", d->name, ECHO_MAX, v, why);
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
                problem(L, line, "%s: bad value '%.*s': expected %s", d->name, ECHO_MAX, v,
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
                problem(L, line, "%s: bad duration '%.*s': expected a number with s, m, h or d "
                                 "(30s, 5m, 1h, 2d)",
                        d->name, ECHO_MAX, v);
                return;
            }
            n = u;
        } else if (cfg_parse_u64(v, &n, &why) < 0) {
            problem(L, line, "%s: bad value '%.*s': %s", d->name, ECHO_MAX, v, why);
            return;
        }
        if (n < k->min || n > k->max) {
            if (n < k->min)
                problem(L, line, "%s: %s is too small (at least %llu)", d->name, v,
                        (unsigned long long)k->min);
            else
                problem(L, line, "%s: %.*s is too large (at most %llu)", d->name, ECHO_MAX, v,
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

static void set_cooked(struct load *L, const char *s, size_t n)
{
    memcpy(L->cooked, s, n);
    L->clen = n;
    L->coff = 0;
}

static bool key_char(char c)
{
    return cfg_alnum(c) || c == '_' || c == '-' || c == '.';
}

/*
 * Takes the next raw line, checks it, and leaves in cooked[] what inih should
 * see: "[section]\n", "key=\n" (value kept in value[]) or "\n" for a line
 * that is blank, a comment, or already reported as wrong.
 */
static void cook_next_line(struct load *L)
{
    const char *line = L->p;
    const char *nl = memchr(L->p, '\n', (size_t)(L->end - L->p));
    size_t len = nl ? (size_t)(nl - L->p) : (size_t)(L->end - L->p);

    L->p = nl ? nl + 1 : L->end;
    L->lineno++;
    L->has_value = false;
    set_cooked(L, "\n", 1);

    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (L->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3; /* a UTF-8 byte order mark, as some editors write */
        len -= 3;
    }
    if (len > CFG_LINE_MAX) {
        problem(L, L->lineno, "line is longer than %d bytes", CFG_LINE_MAX);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            problem(L, L->lineno, "control character 0x%02x in line", c);
            return;
        }
    }
    /* ';' or '#' starts a comment at the start of a line, after blank space or right after '='. */
    for (size_t i = 0; i < len; i++) {
        if ((line[i] == ';' || line[i] == '#') &&
            (i == 0 || is_space(line[i - 1]) || line[i - 1] == '=')) {
            len = i;
            break;
        }
    }
    while (len > 0 && is_space(line[0])) {
        line++;
        len--;
    }
    while (len > 0 && is_space(line[len - 1]))
        len--;
    if (len == 0)
        return;

    if (line[0] == '[') {
        size_t n;
        char name[32];
        if (line[len - 1] != ']' || len < 3 || len - 2 >= sizeof(name)) {
            problem(L, L->lineno, "bad section header: expected [name]");
            set_cooked(L, "[!]\n", 4); /* keys below it are ignored, not misfiled */
            return;
        }
        n = len - 2;
        memcpy(name, line + 1, n);
        name[n] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (!key_char(name[i])) {
                problem(L, L->lineno, "bad section header: expected [name]");
                set_cooked(L, "[!]\n", 4);
                return;
            }
        }
        if (!cfg_section_known(name)) {
            const char *s = cfg_section_suggest(name);
            if (s)
                problem(L, L->lineno, "unknown section [%s]; did you mean [%s]?", name, s);
            else
                problem(L, L->lineno,
                        "unknown section [%s] (sections: server, smtpd, domains, delivery)", name);
            set_cooked(L, "[!]\n", 4);
            return;
        }
        L->cooked[0] = '[';
        memcpy(L->cooked + 1, name, n);
        memcpy(L->cooked + 1 + n, "]\n", 2);
        L->clen = n + 3;
        return;
    }

    const char *eq = memchr(line, '=', len);
    size_t kl = 0;
    if (!eq) {
        while (kl < len && key_char(line[kl]))
            kl++;
        if (kl > 0 && (kl == len || is_space(line[kl])))
            problem(L, L->lineno, "missing '=' after '%.*s'",
                    (int)(kl < ECHO_MAX ? kl : ECHO_MAX), line);
        else
            problem(L, L->lineno, "expected 'key = value' or '[section]'");
        return;
    }
    kl = (size_t)(eq - line);
    while (kl > 0 && is_space(line[kl - 1]))
        kl--;
    for (size_t i = 0; i < kl; i++) {
        if (!key_char(line[i])) {
            problem(L, L->lineno, "bad key name '%.*s'", (int)(kl < ECHO_MAX ? kl : ECHO_MAX),
                    line);
            return;
        }
    }
    if (kl == 0) {
        problem(L, L->lineno, "missing key name before '='");
        return;
    }
    if (kl + 3 > sizeof(L->cooked)) {
        problem(L, L->lineno, "unknown key '%.*s'", ECHO_MAX, line);
        return;
    }
    const char *v = eq + 1, *vend = line + len;
    while (v < vend && is_space(*v))
        v++;
    memcpy(L->value, v, (size_t)(vend - v));
    L->value[vend - v] = '\0';
    L->has_value = true;
    memcpy(L->cooked, line, kl);
    memcpy(L->cooked + kl, "=\n", 2);
    L->clen = kl + 2;
}

/* inih's fgets-like reader: serves cooked lines, in pieces if inih asks for less. */
static char *cfg_ini_read(char *str, int num, void *stream)
{
    struct load *L = stream;
    if (num < 2)
        return NULL;
    if (L->coff >= L->clen) {
        if (L->p >= L->end)
            return NULL;
        cook_next_line(L);
    }
    size_t n = L->clen - L->coff;
    if (n > (size_t)num - 1)
        n = (size_t)num - 1;
    memcpy(str, L->cooked + L->coff, n);
    str[n] = '\0';
    L->coff += n;
    return str;
}

static int cfg_ini_line(void *user, const char *section, const char *name, const char *value,
                       int lineno)
{
    struct load *L = user;
    (void)value; /* the real value, at any length, is in L->value */

    if (L->fatal || !L->has_value)
        return 1;
    unsigned line = lineno > 0 ? (unsigned)lineno : L->lineno;
    if (section[0] == '\0') {
        const config_key_doc *d = cfg_key_suggest("", name);
        if (d && strcmp(d->name, name) == 0)
            problem(L, line, "'%s' is outside any section; put it under [%s]", name, d->section);
        else
            problem(L, line, "'%s' is outside any section", name);
        return 1;
    }
    if (!cfg_section_known(section))
        return 1; /* reported once, at the section header */
    int idx = cfg_key_find(section, name);
    if (idx < 0) {
        const config_key_doc *d = cfg_key_suggest(section, name);
        if (d && strcmp(d->section, section) != 0 && strlen(d->name) == strlen(name) && cfg_caseeq(d->name, name, strlen(name)))
            problem(L, line, "'%s' belongs in [%s], not [%s]", name, d->section, section);
        else if (d && strcmp(d->section, section) != 0)
            problem(L, line, "unknown key '%s' in [%s]; did you mean '%s' in [%s]?", name,
                    section, d->name, d->section);
        else if (d)
            problem(L, line, "unknown key '%s' in [%s]; did you mean '%s'?", name, section,
                    d->name);
        else
            problem(L, line, "unknown key '%s' in [%s]", name, section);
        return 1;
    }
    set_key(L, idx, L->value, line);
    return 1;
}

static void set_defaults(struct load *L)
{
    const config_key_doc *docs = config_keys(NULL);
    for (int i = 0; i < cfg_nkeys && !L->fatal; i++) {
        if (cfg_key_tab[i].flags & CK_DEFHOST) {
            char host[256];
            /* POSIX leaves truncation unterminated; the last byte stays NUL. */
            memset(host, 0, sizeof(host));
            if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
                strcpy(host, "localhost");
            set_string(L, i, strdup(host));
        } else {
            set_key(L, i, docs[i].def, 0);
        }
    }
}

/* Problems that involve more than one key. */
static void cross_check(struct load *L)
{
    sluice_config *cfg = L->cfg;
    bool cert = cfg->tls_cert[0] != '\0', key = cfg->tls_key[0] != '\0';

    if (cert && !key)
        problem(L, cfg_key_line(cfg, "tls_cert"), "tls_cert is set but tls_key is empty");
    if (key && !cert)
        problem(L, cfg_key_line(cfg, "tls_key"), "tls_key is set but tls_cert is empty");
    for (int i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].kind == LISTEN_SMTPS && !(cert && key))
            problem(L, cfg->src->listen_line[i],
                    "listen: the smtps listener on port %d needs tls_cert and tls_key",
                    cfg->listen[i].port);
    if (cfg->retry_max < cfg->retry_initial) {
        unsigned line = cfg_key_line(cfg, "retry_max");
        problem(L, line ? line : cfg_key_line(cfg, "retry_initial"),
                "retry_max (%us) is shorter than retry_initial (%us)", cfg->retry_max,
                cfg->retry_initial);
    }
}

/* Fills path, dir and src; name may be relative to the current folder. */
static int init_paths(sluice_config *cfg, const char *name)
{
    char *cwd = NULL;

    if (name[0] != '/') {
        cwd = getcwd(NULL, 0);
        if (!cwd)
            return -errno;
    }
    cfg->path = cfg_path_join(cwd ? cwd : "/", name);
    free(cwd);
    if (!cfg->path)
        return -ENOMEM;
    char *slash = strrchr(cfg->path, '/');
    size_t dl = slash == cfg->path ? 1 : (size_t)(slash - cfg->path);
    cfg->dir = strndup(cfg->path, dl);
    cfg->src = calloc(1, sizeof(*cfg->src));
    if (!cfg->dir || !cfg->src)
        return -ENOMEM;
    cfg->src->name = strdup(name);
    cfg->src->line = calloc((size_t)cfg_nkeys, sizeof(unsigned));
    if (!cfg->src->name || !cfg->src->line)
        return -ENOMEM;
    return 0;
}

int config_load_buffer(const char *name, const char *data, size_t len, sluice_config *cfg,
                       config_diag_fn diag, void *arg)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!name || !*name || (!data && len > 0))
        return -EINVAL;
    int rc = init_paths(cfg, name);
    if (rc < 0) {
        cfg_report(diag, arg, name, 0, "cannot load: %s", strerror(-rc));
        return rc;
    }
    struct load *L = calloc(1, sizeof(*L));
    if (!L) {
        cfg_report(diag, arg, name, 0, "cannot load: %s", strerror(ENOMEM));
        return -ENOMEM;
    }
    L->cfg = cfg;
    L->name = name;
    L->diag = diag;
    L->arg = arg;
    L->p = data ? data : "";
    L->end = L->p + len;

    set_defaults(L);
    if (!L->fatal) {
        rc = ini_parse_stream(cfg_ini_read, L, cfg_ini_line, L);
        if (rc == -2)
            L->fatal = -ENOMEM;
        else if (rc > 0 && L->problems == 0) /* every bad line is caught before inih */
            problem(L, (unsigned)rc, "syntax error");
    }
    if (!L->fatal)
        cross_check(L);
    rc = L->fatal ? L->fatal : L->problems;
    if (L->fatal)
        cfg_report(diag, arg, name, 0, "cannot load: %s", strerror(-L->fatal));
    free(L);
    return rc;
}

int config_load(const char *path, sluice_config *cfg, config_diag_fn diag, void *arg)
{
    char *data = NULL;
    size_t len = 0;

    memset(cfg, 0, sizeof(*cfg));
    if (!path || !*path) {
        cfg_report(diag, arg, "(config)", 0, "no config file given");
        return -EINVAL;
    }
    int rc = cfg_read_file(path, CFG_FILE_MAX, &data, &len);
    if (rc < 0) {
        if (rc == -EFBIG)
            cfg_report(diag, arg, path, 0, "cannot read: larger than %u bytes", CFG_FILE_MAX);
        else
            cfg_report(diag, arg, path, 0, "cannot read: %s", strerror(-rc));
        return rc;
    }
    rc = config_load_buffer(path, data, len, cfg, diag, arg);
    free(data);
    return rc;
}

void config_free(sluice_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg_nkeys; i++) {
        switch (cfg_key_tab[i].type) {
        case CT_STRING:
        case CT_HOSTNAME:
        case CT_USER:
        case CT_PATH:
        case CT_MECHS:
        case CT_RELAY:
            free(*(char **)field(cfg, i));
            break;
        case CT_DOMAINS:
        case CT_DNS:
            clear_list(cfg, cfg_key_tab[i].type);
            break;
        default:
            break;
        }
    }
    free(cfg->path);
    free(cfg->dir);
    if (cfg->src) {
        free(cfg->src->name);
        free(cfg->src->line);
        free(cfg->src);
    }
    memset(cfg, 0, sizeof(*cfg));
}
