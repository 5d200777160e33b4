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
#define ECHO_MAX CFG_ECHO_MAX

/* The loader's state: the shared part (config_int.h), then the reader's. */
struct load {
    struct cfg_load c;

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

static void *field(sluice_config *cfg, int idx)
{
    return (char *)cfg + cfg_key_tab[idx].off;
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
        cfg_problem(&L->c, L->lineno, "line is longer than %d bytes", CFG_LINE_MAX);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            cfg_problem(&L->c, L->lineno, "control character 0x%02x in line", c);
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
            cfg_problem(&L->c, L->lineno, "bad section header: expected [name]");
            set_cooked(L, "[!]\n", 4); /* keys below it are ignored, not misfiled */
            return;
        }
        n = len - 2;
        memcpy(name, line + 1, n);
        name[n] = '\0';
        for (size_t i = 0; i < n; i++) {
            if (!key_char(name[i])) {
                cfg_problem(&L->c, L->lineno, "bad section header: expected [name]");
                set_cooked(L, "[!]\n", 4);
                return;
            }
        }
        if (!cfg_section_known(name)) {
            const char *s = cfg_section_suggest(name);
            if (s)
                cfg_problem(&L->c, L->lineno, "unknown section [%s]; did you mean [%s]?", name, s);
            else
                cfg_problem(&L->c, L->lineno,
                            "unknown section [%s] (sections: server, smtpd, domains, delivery)",
                            name);
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
            cfg_problem(&L->c, L->lineno, "missing '=' after '%.*s'",
                        (int)(kl < ECHO_MAX ? kl : ECHO_MAX), line);
        else
            cfg_problem(&L->c, L->lineno, "expected 'key = value' or '[section]'");
        return;
    }
    kl = (size_t)(eq - line);
    while (kl > 0 && is_space(line[kl - 1]))
        kl--;
    for (size_t i = 0; i < kl; i++) {
        if (!key_char(line[i])) {
            cfg_problem(&L->c, L->lineno, "bad key name '%.*s'",
                        (int)(kl < ECHO_MAX ? kl : ECHO_MAX), line);
            return;
        }
    }
    if (kl == 0) {
        cfg_problem(&L->c, L->lineno, "missing key name before '='");
        return;
    }
    if (kl + 3 > sizeof(L->cooked)) {
        cfg_problem(&L->c, L->lineno, "unknown key '%.*s'", ECHO_MAX, line);
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

    if (L->c.fatal || !L->has_value)
        return 1;
    unsigned line = lineno > 0 ? (unsigned)lineno : L->lineno;
    if (section[0] == '\0') {
        const config_key_doc *d = cfg_key_suggest("", name);
        if (d && strcmp(d->name, name) == 0)
            cfg_problem(&L->c, line, "'%s' is outside any section; put it under [%s]", name,
                        d->section);
        else
            cfg_problem(&L->c, line, "'%s' is outside any section", name);
        return 1;
    }
    if (!cfg_section_known(section))
        return 1; /* reported once, at the section header */
    int idx = cfg_key_find(section, name);
    if (idx < 0) {
        const config_key_doc *d = cfg_key_suggest(section, name);
        if (d && strcmp(d->section, section) != 0 && strlen(d->name) == strlen(name) &&
            cfg_caseeq(d->name, name, strlen(name)))
            cfg_problem(&L->c, line, "'%s' belongs in [%s], not [%s]", name, d->section, section);
        else if (d && strcmp(d->section, section) != 0)
            cfg_problem(&L->c, line, "unknown key '%s' in [%s]; did you mean '%s' in [%s]?", name,
                        section, d->name, d->section);
        else if (d)
            cfg_problem(&L->c, line, "unknown key '%s' in [%s]; did you mean '%s'?", name, section,
                        d->name);
        else
            cfg_problem(&L->c, line, "unknown key '%s' in [%s]", name, section);
        return 1;
    }
    cfg_set_key(&L->c, idx, L->value, line);
    return 1;
}

static void set_defaults(struct load *L)
{
    const config_key_doc *docs = config_keys(NULL);
    for (int i = 0; i < cfg_nkeys && !L->c.fatal; i++) {
        if (cfg_key_tab[i].flags & CK_DEFHOST) {
            char host[256];
            /* POSIX leaves truncation unterminated; the last byte stays NUL. */
            memset(host, 0, sizeof(host));
            if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
                strcpy(host, "localhost");
            cfg_set_string(&L->c, i, strdup(host));
        } else {
            cfg_set_key(&L->c, i, docs[i].def, 0);
        }
    }
}

/* Problems that involve more than one key. */
static void cross_check(struct load *L)
{
    sluice_config *cfg = L->c.cfg;
    bool cert = cfg->tls_cert[0] != '\0', key = cfg->tls_key[0] != '\0';

    if (cert && !key)
        cfg_problem(&L->c, cfg_key_line(cfg, "tls_cert"), "tls_cert is set but tls_key is empty");
    if (key && !cert)
        cfg_problem(&L->c, cfg_key_line(cfg, "tls_key"), "tls_key is set but tls_cert is empty");
    for (int i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].kind == LISTEN_SMTPS && !(cert && key))
            cfg_problem(&L->c, cfg->src->listen_line[i],
                        "listen: the smtps listener on port %d needs tls_cert and tls_key",
                        cfg->listen[i].port);
    if (cfg->auth_backend == AUTH_BACKEND_DOVECOT && !cfg->dovecot_auth_socket[0])
        cfg_problem(&L->c, cfg_key_line(cfg, "auth_backend"),
                    "auth_backend = dovecot needs dovecot_auth_socket");
    if (cfg->retry_max < cfg->retry_initial) {
        unsigned line = cfg_key_line(cfg, "retry_max");
        cfg_problem(&L->c, line ? line : cfg_key_line(cfg, "retry_initial"),
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
    L->c.cfg = cfg;
    L->c.name = name;
    L->c.diag = diag;
    L->c.arg = arg;
    L->p = data ? data : "";
    L->end = L->p + len;

    set_defaults(L);
    if (!L->c.fatal) {
        rc = ini_parse_stream(cfg_ini_read, L, cfg_ini_line, L);
        if (rc == -2)
            L->c.fatal = -ENOMEM;
        else if (rc > 0 && L->c.problems == 0) /* every bad line is caught before inih */
            cfg_problem(&L->c, (unsigned)rc, "syntax error");
    }
    if (!L->c.fatal)
        cross_check(L);
    rc = L->c.fatal ? L->c.fatal : L->c.problems;
    if (L->c.fatal)
        cfg_report(diag, arg, name, 0, "cannot load: %s", strerror(-L->c.fatal));
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
        enum cfg_type t = cfg_key_tab[i].type;
        if (cfg_type_is_string(t))
            free(*(char **)field(cfg, i));
        else if (t == CT_DOMAINS || t == CT_DNS)
            cfg_clear_list(cfg, t);
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
