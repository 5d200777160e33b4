/*
 * config_util.c - what the config code shares with its users and with map.c:
 * the "FILE:LINE: message" formatter, whole-file reads, path joining, the
 * default config path and the questions asked of a loaded config (is this
 * domain local, is this client trusted).
 */
#include "config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cfg_vreport(config_diag_fn diag, void *arg, const char *file, unsigned line, const char *fmt,
                 va_list ap)
{
    char buf[1024 + 4096]; /* a message may quote a path of PATH_MAX */
    int n;

    if (!diag)
        return;
    if (line > 0)
        n = snprintf(buf, sizeof(buf), "%s:%u: ", file, line);
    else
        n = snprintf(buf, sizeof(buf), "%s: ", file);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(buf))
        vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    diag(arg, buf);
}

void cfg_report(config_diag_fn diag, void *arg, const char *file, unsigned line, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(diag, arg, file, line, fmt, ap);
    va_end(ap);
}

void cfg_problem(struct cfg_load *L, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(L->diag, L->arg, L->name, line, fmt, ap);
    va_end(ap);
    L->problems++;
}

int cfg_read_file(const char *path, size_t max, char **data, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int rc = 0;

    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
        goto out;
    }
    /* st_size is only a hint: pipes and /proc files report 0. */
    for (;;) {
        if (cap - used < 2) {
            size_t ncap = cap                                            ? cap * 2
                          : (st.st_size > 0 && (size_t)st.st_size < max) ? (size_t)st.st_size + 2
                                                                         : 8192;
            if (cap > max + 2) {
                rc = -EFBIG;
                goto out;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + used, cap - used - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > max) {
            rc = -EFBIG;
            goto out;
        }
    }
    buf[used] = '\0';
    *data = buf;
    *len = used;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

char *cfg_path_join(const char *dir, const char *path)
{
    if (!path || !*path)
        return strdup("");
    const char *parts[2] = {path[0] == '/' ? "" : (dir ? dir : "/"), path};
    char *out = malloc(strlen(parts[0]) + strlen(path) + 3);
    size_t o = 0;

    if (!out)
        return NULL;
    out[o++] = '/';
    for (int p = 0; p < 2; p++) {
        const char *s = parts[p];
        while (*s) {
            while (*s == '/')
                s++;
            const char *e = strchr(s, '/');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (n > 0 && !(n == 1 && s[0] == '.')) {
                if (o > 1)
                    out[o++] = '/';
                memcpy(out + o, s, n);
                o += n;
            }
            s += n;
        }
    }
    out[o] = '\0';
    return out;
}

const char *config_default_path(const char *cli_path)
{
    if (cli_path && *cli_path)
        return cli_path;
    /* secure_getenv: a set-id program must not take its config from the caller. */
    const char *env = secure_getenv("SLUICE_CONFIG");
    if (env && *env)
        return env;
    return "/etc/sluice/sluice.conf";
}

char *config_abs_path(const sluice_config *cfg, const char *path)
{
    if (cfg && cfg->dir)
        return cfg_path_join(cfg->dir, path);
    if (path && path[0] == '/')
        return cfg_path_join("/", path);
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return NULL;
    char *r = cfg_path_join(cwd, path);
    free(cwd);
    return r;
}

unsigned cfg_key_line(const sluice_config *cfg, const char *name)
{
    const config_key_doc *docs = config_keys(NULL);
    if (!cfg->src || !cfg->src->line)
        return 0;
    for (int i = 0; i < cfg_nkeys; i++)
        if (strcmp(docs[i].name, name) == 0)
            return cfg->src->line[i];
    return 0;
}

const char *cfg_display_name(const sluice_config *cfg)
{
    if (cfg->src && cfg->src->name)
        return cfg->src->name;
    return cfg->path ? cfg->path : "(config)";
}

bool config_is_local_domain(const sluice_config *cfg, const char *domain, size_t len)
{
    if (!cfg || !domain)
        return false;
    /* Exact names only: "example.test." (trailing dot) is not local. */
    for (int i = 0; i < cfg->nlocal_domains; i++) {
        const char *d = cfg->local_domains[i];
        if (strlen(d) == len && cfg_caseeq(d, domain, len))
            return true;
    }
    return false;
}

bool config_is_trusted(const sluice_config *cfg, const struct sockaddr *sa)
{
    if (!cfg || !sa)
        return false;
    for (int i = 0; i < cfg->ntrusted; i++)
        if (config_cidr_match(&cfg->trusted_networks[i], sa))
            return true;
    return false;
}
