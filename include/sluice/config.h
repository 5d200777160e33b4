/*
 * config.h - sluice.conf: one table of every key (name, type, default, doc),
 * as Postfix's mail_params.h; the loader, `sluice check` and docs use it.
 *
 * Relative paths in the file are resolved against the config file's folder
 * at load time, so every path field below is absolute (or empty).
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CFG_MAX_LISTEN 32
#define CFG_MAX_NETS 64
#define CFG_MAX_DOMAINS 256
#define CFG_MAX_DNS 8

enum listen_kind {
    LISTEN_MX,
    LISTEN_SUBMISSION,
    LISTEN_SMTPS,
    LISTEN_LOCAL /* run/submit.sock, for `sluice sendmail`; never in the config */
};
enum spf_mode { SPF_OFF, SPF_TAG, SPF_REJECT };
enum tls_policy { TLS_MAY, TLS_ENCRYPT, TLS_VERIFY };
enum auth_backend { AUTH_BACKEND_SASL, AUTH_BACKEND_DOVECOT };

typedef struct cfg_listen {
    char host[64]; /* "127.0.0.1", "::1", "0.0.0.0", "::" (brackets stripped) */
    int port;
    enum listen_kind kind;
} cfg_listen;

typedef struct cfg_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix;
} cfg_cidr;

typedef struct sluice_config {
    char *path; /* the config file, absolute */
    char *dir;  /* its folder */

    /* [server] */
    char *hostname;
    char *spool; /* absolute */
    char *user;  /* "" = do not drop */
    bool log_syslog;

    /* [smtpd] */
    cfg_listen listen[CFG_MAX_LISTEN];
    int nlisten;
    uint64_t max_message_size;
    unsigned max_recipients;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    cfg_cidr trusted_networks[CFG_MAX_NETS];
    int ntrusted;
    char *tls_cert; /* absolute or "" */
    char *tls_key;
    char *auth_mechanisms;
    char *sasl_db;
    enum auth_backend auth_backend; /* who checks AUTH passwords: Cyrus SASL or Dovecot */
    char *dovecot_auth_socket;      /* Dovecot's auth-client socket (auth_backend = dovecot) */
    enum spf_mode spf;
    unsigned timeout_command;    /* seconds: waiting for a command (RFC 5321 4.5.3.2.7: 5m) */
    unsigned timeout_data_block; /* seconds between DATA/BDAT reads (4.5.3.2.6: 3m) */
    unsigned min_data_rate;      /* bytes/s a message body must average; 0 = none */
    unsigned max_bad_commands;   /* errors before 421 and close */
    bool allow_plaintext_auth;   /* AUTH without TLS from loopback (testing only) */
    unsigned auth_fail_limit;    /* failed AUTHs per client IP in auth_fail_window */
    unsigned auth_fail_window;   /* seconds */
    char *sender_login_map;      /* optional map: login  sender[, sender...] */

    /* [domains] */
    char *local_domains[CFG_MAX_DOMAINS]; /* lower case */
    int nlocal_domains;
    char *mailboxes; /* map file path */
    char *aliases;   /* map file path */

    /* [delivery] */
    char *dns_servers[CFG_MAX_DNS]; /* "host:port" */
    int ndns_servers;
    int remote_port;
    char *relayhost;      /* "" or "[host]:port" / "host:port" */
    char *relayhost_auth; /* "" or a file: "user password" for smarthost AUTH */
    char *transport;      /* map file path */
    enum tls_policy tls;
    unsigned concurrency;
    unsigned concurrency_per_destination;
    unsigned retry_initial;      /* seconds */
    unsigned retry_max;          /* seconds */
    unsigned max_queue_lifetime; /* seconds */
    unsigned delay_warning;      /* seconds; 0 = off */

    /* Private to common/config*.c: where each key was set, for messages. */
    struct config_src *src;
    /* Holders of a malloc'd config (config_hold/config_release); 0 after load. */
    unsigned refs;
} sluice_config;

/*
 * A diagnostic sink: each problem arrives formatted as "FILE:LINE: message"
 * (LINE omitted when the problem has no line, e.g. a missing file).
 */
typedef void (*config_diag_fn)(void *arg, const char *diag);

/* Resolves -c FILE, else $SLUICE_CONFIG, else /etc/sluice/sluice.conf. */
const char *config_default_path(const char *cli_path);

/*
 * Loads the file into cfg (defaults first). Returns the number of problems
 * found (each reported through diag), or a negative errno if the file cannot
 * be read at all (also reported). cfg must be freed with config_free either way.
 */
int config_load(const char *path, sluice_config *cfg, config_diag_fn diag, void *arg);

/*
 * Deeper checks that touch the filesystem: maps parse, certificate and key
 * readable and matching, mailbox folders writable, spool creatable. Used by
 * `sluice check` and at daemon start. Returns the number of problems.
 */
int config_check_files(const sluice_config *cfg, config_diag_fn diag, void *arg);

/*
 * config_check_files without some checks. CFG_CHECK_SKIP_TLS: the
 * certificate and key, which a daemon that dropped its privileges may no
 * longer read (sluice-smtpd handles them itself on SIGHUP) or never uses
 * (sluice-delivery).
 */
#define CFG_CHECK_SKIP_TLS 1u
int config_check_files_but(const sluice_config *cfg, unsigned skip, config_diag_fn diag, void *arg);

void config_free(sluice_config *cfg);

/* Whether domain (any case) is one of [domains] local. */
bool config_is_local_domain(const sluice_config *cfg, const char *domain, size_t len);

/* Whether the socket address is inside trusted_networks. */
bool config_is_trusted(const sluice_config *cfg, const struct sockaddr *sa);

/* Table access for `sluice check --defaults` and the docs generator. */
typedef struct config_key_doc {
    const char *section;
    const char *name;
    const char *type;
    const char *def;
    const char *doc;
} config_key_doc;
const config_key_doc *config_keys(int *count);

/* Parses "30s", "5m", "1h", "2d" or a bare number of seconds. 0 or -EINVAL. */
int config_parse_duration(const char *s, unsigned *out);

/*
 * Like config_load, but parses len bytes of data (not NUL-terminated) as if
 * they were the file named name: name is used in messages, and its folder
 * anchors relative paths (a relative name is taken from the current folder).
 * For tests and the fuzzer.
 */
int config_load_buffer(const char *name, const char *data, size_t len, sluice_config *cfg,
                       config_diag_fn diag, void *arg);

/*
 * Resolves path against the config file's folder (absolute paths are kept).
 * Used for relative paths found inside maps, e.g. maildir paths in the
 * mailboxes map. Returns a malloc'd string, or NULL when out of memory.
 */
char *config_abs_path(const sluice_config *cfg, const char *path);

/*
 * For SIGHUP. fixed is a NULL-terminated list of "section.key" names that
 * prog cannot change while it runs (its listeners, its spool...). For each
 * one whose value in loaded differs from running, reports "FILE:LINE: [section]
 * key changed: it takes effect when PROG restarts" and gives loaded a copy of
 * the running value, so that loaded describes what will really be in force.
 * Returns how many keys were kept, or -ENOMEM.
 */
int config_keep_fixed(sluice_config *loaded, const sluice_config *running, const char *const *fixed,
                      const char *prog, config_diag_fn diag, void *arg);

/* Whether every key has the same value in a and b. */
bool config_same(const sluice_config *a, const sluice_config *b);
/* Whether key "section.key" has the same value in a and b (false for no such key). */
bool config_key_same(const sluice_config *a, const sluice_config *b, const char *dotted);

/*
 * A malloc'd config shared by holders that may outlive a reload (sessions):
 * config_hold adds a holder; config_release drops one, and the last one
 * frees it (config_free, then free).
 */
sluice_config *config_hold(sluice_config *cfg);
void config_release(sluice_config *cfg);

/* Parses one listen value, "ADDRESS:PORT KIND". 0 or -EINVAL. */
int config_parse_listen(const char *s, cfg_listen *out);

/* Parses "ADDR", "ADDR/PREFIX" (IPv4 or IPv6). 0 or -EINVAL. */
int config_parse_cidr(const char *s, cfg_cidr *out);

/* Whether sa (AF_INET or AF_INET6, v4-mapped counts as IPv4) is inside c. */
bool config_cidr_match(const cfg_cidr *c, const struct sockaddr *sa);

/*
 * A next hop as written in relayhost and in transport map values:
 * "[host]:port", "host:port", "[host]" or "host". Brackets mean "this host
 * itself, no MX lookup" (as in Postfix); so does an IP address, bracketed or
 * not (IPv6 needs the brackets).
 */
typedef struct cfg_relay {
    char host[256]; /* brackets stripped */
    int port;       /* 0 when not given: use remote_port */
    bool literal;   /* in brackets, or an IP address: no MX lookup */
} cfg_relay;
int config_parse_relay(const char *s, cfg_relay *out);

#endif
