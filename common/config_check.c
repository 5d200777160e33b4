/*
 * config_check.c - config_check_files: the checks that touch the filesystem,
 * for `sluice check` and daemon start. A config can parse cleanly and still
 * point at a missing map, a key that does not match its certificate or a
 * spool that cannot be created; those are found here, before the first
 * client meets them.
 *
 * Each problem names the line it comes from: a map entry's own file:line, or
 * the sluice.conf line that set the key (just the file when the key has its
 * default).
 */
#include "config_int.h"
#include "sluice/map.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct check {
    const sluice_config *cfg;
    const char *name; /* the config file, for messages */
    config_diag_fn diag;
    void *arg;
    int problems;
};

static void problem(struct check *C, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct check *C, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(C->diag, C->arg, file, line, fmt, ap);
    va_end(ap);
    C->problems++;
}

/* Whether path is readable now; on failure, says why at the key's line. */
static bool readable(struct check *C, const char *key, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        problem(C, C->name, cfg_key_line(C->cfg, key), "%s: cannot open %s: %s", key, path,
                strerror(errno));
        return false;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    int err = errno;
    close(fd);
    if (rc < 0) {
        problem(C, C->name, cfg_key_line(C->cfg, key), "%s: cannot stat %s: %s", key, path,
                strerror(err));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        problem(C, C->name, cfg_key_line(C->cfg, key), "%s: %s is not a regular file", key, path);
        return false;
    }
    return true;
}

/* Loads the map named by key, counting its problems; NULL if unset or unreadable. */
static map *check_map(struct check *C, const char *key, const char *path)
{
    map *m = NULL;
    if (!path || !*path || !readable(C, key, path))
        return NULL;
    int rc = map_load(path, &m, C->diag, C->arg);
    if (rc < 0) {
        C->problems++; /* map_load said why */
        return NULL;
    }
    C->problems += rc;
    return m;
}

/*
 * Whether path is a writable folder, or could be made one: its nearest
 * existing ancestor is a writable folder. why gets the reason when not.
 */
static bool dir_usable(const char *path, char *why, size_t whylen)
{
    struct stat st;

    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(why, whylen, "exists but is not a folder");
            return false;
        }
        if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) != 0) {
            snprintf(why, whylen, "is not writable: %s", strerror(errno));
            return false;
        }
        return true;
    }
    /* ENOTDIR: some ancestor is a file; the climb below names it. */
    if (errno != ENOENT && errno != ENOTDIR) {
        snprintf(why, whylen, "%s", strerror(errno));
        return false;
    }
    char *p = strdup(path);
    if (!p) {
        snprintf(why, whylen, "%s", strerror(ENOMEM));
        return false;
    }
    bool ok = false;
    for (;;) {
        char *slash = strrchr(p, '/');
        if (!slash) { /* not absolute: nothing left to climb */
            snprintf(why, whylen, "does not exist");
            break;
        }
        if (slash == p)
            p[1] = '\0';
        else
            *slash = '\0';
        if (stat(p, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                snprintf(why, whylen, "cannot be created: %s is not a folder", p);
            else if (faccessat(AT_FDCWD, p, W_OK | X_OK, AT_EACCESS) != 0)
                snprintf(why, whylen, "does not exist and cannot be created: %s is not writable",
                         p);
            else
                ok = true;
            break;
        }
        if ((errno != ENOENT && errno != ENOTDIR) || strcmp(p, "/") == 0) {
            snprintf(why, whylen, "cannot be created: %s: %s", p, strerror(errno));
            break;
        }
    }
    free(p);
    return ok;
}

static void check_mailboxes(struct check *C, const map *m)
{
    char why[512];
    for (size_t i = 0; i < map_count(m); i++) {
        const char *key, *val;
        map_entry(m, i, &key, &val);
        char *path = config_abs_path(C->cfg, val);
        if (!path) {
            problem(C, C->cfg->mailboxes, map_entry_line(m, i), "%s", strerror(ENOMEM));
            return;
        }
        /* "user/Maildir/" and "user/Maildir" name the same folder. */
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
            path[--n] = '\0';
        if (!dir_usable(path, why, sizeof(why)))
            problem(C, C->cfg->mailboxes, map_entry_line(m, i), "mailbox of %s: %s %s", key, path,
                    why);
        free(path);
    }
}

static void check_transport(struct check *C, const map *m)
{
    for (size_t i = 0; i < map_count(m); i++) {
        const char *key, *val, *why = NULL;
        cfg_relay r;
        map_entry(m, i, &key, &val);
        if (cfg_parse_relay(val, &r, &why) < 0)
            problem(C, C->cfg->transport, map_entry_line(m, i), "next hop for %s: bad '%.80s': %s",
                    key, val, why);
    }
}

/* The first queued OpenSSL error, as text; clears the queue. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, len, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "unknown error");
    ERR_clear_error();
    return buf;
}

static void check_tls(struct check *C)
{
    const sluice_config *cfg = C->cfg;
    unsigned cert_line = cfg_key_line(cfg, "tls_cert"), key_line = cfg_key_line(cfg, "tls_key");
    char buf[256];

    if (!cfg->tls_cert || !*cfg->tls_cert || !cfg->tls_key || !*cfg->tls_key)
        return; /* config_load already reported a half-set pair */
    bool cert_ok = readable(C, "tls_cert", cfg->tls_cert);
    bool key_ok = readable(C, "tls_key", cfg->tls_key);
    if (!cert_ok || !key_ok)
        return;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        problem(C, C->name, cert_line, "cannot create a TLS context: %s",
                ssl_reason(buf, sizeof(buf)));
        return;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        problem(C, C->name, cert_line, "tls_cert: cannot load a certificate chain from %s: %s",
                cfg->tls_cert, ssl_reason(buf, sizeof(buf)));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL compares the key with the certificate while loading it. */
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            problem(C, C->name, cert_line, "tls_cert %s does not match the private key in %s",
                    cfg->tls_cert, cfg->tls_key);
        } else {
            problem(C, C->name, key_line, "tls_key: cannot load a private key from %s: %s",
                    cfg->tls_key, ssl_reason(buf, sizeof(buf)));
        }
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        problem(C, C->name, cert_line, "tls_cert %s does not match the private key in %s",
                cfg->tls_cert, cfg->tls_key);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
}

int config_check_files(const sluice_config *cfg, config_diag_fn diag, void *arg)
{
    return config_check_files_but(cfg, 0, diag, arg);
}

int config_check_files_but(const sluice_config *cfg, unsigned skip, config_diag_fn diag, void *arg)
{
    struct check C = {cfg, cfg_display_name(cfg), diag, arg, 0};
    char why[512];
    map *m;

    if ((m = check_map(&C, "mailboxes", cfg->mailboxes))) {
        check_mailboxes(&C, m);
        map_free(m);
    }
    map_free(check_map(&C, "aliases", cfg->aliases));
    map_free(check_map(&C, "sender_login_map", cfg->sender_login_map));
    if ((m = check_map(&C, "transport", cfg->transport))) {
        check_transport(&C, m);
        map_free(m);
    }
    if ((m = check_map(&C, "relayhost_auth", cfg->relayhost_auth))) {
        if (map_count(m) != 1)
            problem(&C, cfg->relayhost_auth, 0, "expected exactly one line 'user password'");
        map_free(m);
    }
    if (!(skip & CFG_CHECK_SKIP_TLS))
        check_tls(&C);
    if (cfg->sasl_db && *cfg->sasl_db)
        readable(&C, "sasl_db", cfg->sasl_db);
    if (cfg->spool && *cfg->spool && !dir_usable(cfg->spool, why, sizeof(why)))
        problem(&C, C.name, cfg_key_line(cfg, "spool"), "spool: %s %s", cfg->spool, why);
    return C.problems;
}
