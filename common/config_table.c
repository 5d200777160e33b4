/*
 * config_table.c - every sluice.conf key in one table: section, name, type,
 * default, one-line doc and where it lives in struct sluice_config.
 *
 * This is the Postfix mail_params.h idea (reference/STYLE.md 1.3): one place
 * holds every default, so the loader, `sluice check --defaults` and
 * docs/config.md cannot drift apart. A test checks docs/config.md against it.
 *
 * Each row is written once, in CFG_TABLE; two expansions make the public doc
 * rows (config_keys) and the private parse rows (cfg_key_tab) in the same order.
 */
#include "config_int.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#define U UINT_MAX
#define U64 UINT64_MAX

/* X(section, name, type, type-doc, default, field, min, max, flags, doc) */
#define CFG_TABLE(X)                                                                               \
    X("server", "hostname", CT_HOSTNAME, "hostname", "(this host's name)", hostname, 0, 0,         \
      CK_NONEMPTY | CK_DEFHOST,                                                                    \
      "Name in the greeting, EHLO, Received: lines and DSNs; default is gethostname()")            \
    X("server", "spool", CT_PATH, "path", "/var/spool/sluice", spool, 0, 0, CK_NONEMPTY,           \
      "Spool folder (queue, corrupt messages, sockets); created if missing")                       \
    X("server", "user", CT_USER, "user name", "", user, 0, 0, 0,                                   \
      "When started as root: drop to this user after binding; empty = stay")                       \
    X("server", "log", CT_ENUM, "stderr|syslog", "stderr", log_syslog, 0, 0, 0,                    \
      "Where log lines go (syslog facility: mail)")                                                \
                                                                                                   \
    X("smtpd", "listen", CT_LISTEN, "ADDRESS:PORT mx|submission|smtps", "127.0.0.1:25 mx", listen, \
      0, 0, CK_LIST,                                                                               \
      "A listener (repeatable; IPv6 as [::1]:25); the first one replaces the default")             \
    X("smtpd", "max_message_size", CT_SIZE, "bytes", "36700160", max_message_size, 1, U64, 0,      \
      "Largest message accepted, announced in EHLO SIZE")                                          \
    X("smtpd", "max_recipients", CT_UINT, "count", "1000", max_recipients, 1, U, 0,                \
      "Recipients per message; more get 452 4.5.3")                                                \
    X("smtpd", "max_connections", CT_UINT, "count", "10000", max_connections, 1, U, 0,             \
      "Simultaneous SMTP sessions, all listeners together")                                        \
    X("smtpd", "max_connections_per_ip", CT_UINT, "count", "50", max_connections_per_ip, 1, U, 0,  \
      "Simultaneous SMTP sessions from one client address")                                        \
    X("smtpd", "trusted_networks", CT_CIDRS, "CIDR list", "", trusted_networks, 0, 0, CK_LIST,     \
      "Clients allowed to relay without AUTH (bare address = one host; /0 refused)")               \
    X("smtpd", "tls_cert", CT_PATH, "path", "", tls_cert, 0, 0, 0,                                 \
      "PEM certificate chain for STARTTLS and smtps; empty = no TLS")                              \
    X("smtpd", "tls_key", CT_PATH, "path", "", tls_key, 0, 0, 0,                                   \
      "PEM private key matching tls_cert")                                                         \
    X("smtpd", "auth_mechanisms", CT_MECHS, "SASL mechanism list", "PLAIN LOGIN", auth_mechanisms, \
      0, 0, 0, "SASL mechanisms offered after TLS; empty = no AUTH")                               \
    X("smtpd", "sasl_db", CT_PATH, "path", "", sasl_db, 0, 0, 0,                                   \
      "sasldb2 file (saslpasswd2 -f FILE -u REALM -c USER); empty = Cyrus default")                \
    X("smtpd", "auth_backend", CT_ENUM, "sasl|dovecot", "sasl", auth_backend, 0, 0, 0,             \
      "Who checks AUTH passwords: Cyrus SASL (sasl_db) or Dovecot (dovecot_auth_socket)")          \
    X("smtpd", "dovecot_auth_socket", CT_PATH, "path", "", dovecot_auth_socket, 0, 0, 0,           \
      "Dovecot's auth-client socket, for auth_backend = dovecot")                                  \
    X("smtpd", "spf", CT_ENUM, "off|tag|reject", "reject", spf, 0, 0, 0,                           \
      "SPF check on port 25: off, add Received-SPF only, or reject on fail")                       \
    X("smtpd", "timeout_command", CT_DURATION, "duration", "5m", timeout_command, 1, U, 0,         \
      "Wait for the next command (RFC 5321 4.5.3.2.7)")                                            \
    X("smtpd", "timeout_data_block", CT_DURATION, "duration", "3m", timeout_data_block, 1, U, 0,   \
      "Wait between reads inside DATA or BDAT (RFC 5321 4.5.3.2.6)")                               \
    X("smtpd", "min_data_rate", CT_UINT, "bytes/s", "500", min_data_rate, 0, U, 0,                 \
      "Slowest average a DATA/BDAT transfer may keep past timeout_data_block; 0 = no minimum")     \
    X("smtpd", "max_bad_commands", CT_UINT, "count", "20", max_bad_commands, 1, U, 0,              \
      "Protocol errors in a session before 421 and close")                                         \
    X("smtpd", "allow_plaintext_auth", CT_BOOL, "bool", "no", allow_plaintext_auth, 0, 0, 0,       \
      "Offer AUTH without TLS to loopback clients (testing only)")                                 \
    X("smtpd", "auth_fail_limit", CT_UINT, "count", "5", auth_fail_limit, 1, U, 0,                 \
      "Failed AUTH attempts per client address within auth_fail_window")                           \
    X("smtpd", "auth_fail_window", CT_DURATION, "duration", "5m", auth_fail_window, 1, U, 0,       \
      "Window for auth_fail_limit")                                                                \
    X("smtpd", "sender_login_map", CT_PATH, "path", "", sender_login_map, 0, 0, 0,                 \
      "Map: login  sender[, sender...]; empty = no MAIL FROM ownership check")                     \
                                                                                                   \
    X("domains", "local", CT_DOMAINS, "domain list", "localhost", local_domains, 0, 0, CK_LIST,    \
      "Domains delivered here (exact names, no trailing dot; repeatable)")                         \
    X("domains", "mailboxes", CT_PATH, "path", "", mailboxes, 0, 0, 0,                             \
      "Map: address  maildir-path (relative paths: from the config folder)")                       \
    X("domains", "aliases", CT_PATH, "path", "", aliases, 0, 0, 0,                                 \
      "Map: address  target[, target...]")                                                         \
                                                                                                   \
    X("delivery", "dns_servers", CT_DNS, "host:port list", "", dns_servers, 0, 0, CK_LIST,         \
      "DNS servers (IP[:port], [IPv6]:port); empty = /etc/resolv.conf")                            \
    X("delivery", "remote_port", CT_PORT, "port", "25", remote_port, 1, 65535, 0,                  \
      "Port used at MX hosts and at next hops given without a port")                               \
    X("delivery", "relayhost", CT_RELAY, "[host]:port", "", relayhost, 0, 0, 0,                    \
      "Smarthost for all remote mail; brackets = no MX lookup; empty = direct")                    \
    X("delivery", "relayhost_auth", CT_PATH, "path", "", relayhost_auth, 0, 0, 0,                  \
      "File with one line 'user password' for AUTH at the relayhost")                              \
    X("delivery", "transport", CT_PATH, "path", "", transport, 0, 0, 0,                            \
      "Map: domain  [host]:port, next hop per recipient domain")                                   \
    X("delivery", "tls", CT_ENUM, "may|encrypt|verify", "may", tls, 0, 0, 0,                       \
      "Outbound TLS: opportunistic, required, or required with a verified certificate")            \
    X("delivery", "concurrency", CT_UINT, "count", "100", concurrency, 1, U, 0,                    \
      "Simultaneous outbound deliveries")                                                          \
    X("delivery", "concurrency_per_destination", CT_UINT, "count", "20",                           \
      concurrency_per_destination, 1, U, 0, "Simultaneous deliveries to one destination")          \
    X("delivery", "retry_initial", CT_DURATION, "duration", "5m", retry_initial, 1, U, 0,          \
      "First retry delay after a temporary failure; doubles up to retry_max")                      \
    X("delivery", "retry_max", CT_DURATION, "duration", "1h", retry_max, 1, U, 0,                  \
      "Longest retry delay (at least retry_initial)")                                              \
    X("delivery", "max_queue_lifetime", CT_DURATION, "duration", "5d", max_queue_lifetime, 1, U,   \
      0, "Age after which a deferred message bounces")                                             \
    X("delivery", "delay_warning", CT_DURATION, "duration", "4h", delay_warning, 0, U, 0,          \
      "Age at which the sender gets a delay DSN once; 0 = never")

#define DOC_ROW(sec, name, type, tdoc, def, field, min, max, flags, doc)                           \
    {sec, name, tdoc, def, doc},
#define KEY_ROW(sec, name, type, tdoc, def, field, min, max, flags, doc)                           \
    {type, offsetof(sluice_config, field), sizeof(((sluice_config *)0)->field), min, max, flags},

static const config_key_doc key_docs[] = {CFG_TABLE(DOC_ROW)};
const struct cfg_key cfg_key_tab[] = {CFG_TABLE(KEY_ROW)};
const int cfg_nkeys = (int)(sizeof(key_docs) / sizeof(key_docs[0]));

_Static_assert(sizeof(key_docs) / sizeof(key_docs[0]) ==
                   sizeof(cfg_key_tab) / sizeof(cfg_key_tab[0]),
               "both expansions of CFG_TABLE have one row per key");

static const char *const sections[] = {"server", "smtpd", "domains", "delivery"};

const config_key_doc *config_keys(int *count)
{
    if (count)
        *count = cfg_nkeys;
    return key_docs;
}

int cfg_key_find(const char *section, const char *name)
{
    for (int i = 0; i < cfg_nkeys; i++)
        if (strcmp(key_docs[i].section, section) == 0 && strcmp(key_docs[i].name, name) == 0)
            return i;
    return -1;
}

bool cfg_section_known(const char *section)
{
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
        if (strcmp(sections[i], section) == 0)
            return true;
    return false;
}

/*
 * Case-insensitive edit distance (insert, delete, substitute, swap of two
 * neighbours), capped: names are short, and only near misses matter.
 */
static size_t edit_distance(const char *a, const char *b)
{
    enum { N = 40 };
    size_t la = strlen(a), lb = strlen(b);
    /* Lengths 3 apart are at least 3 edits apart: not worth the table. */
    if (la >= N || lb >= N || la > lb + 2 || lb > la + 2)
        return SIZE_MAX;
    size_t d[N][N];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            char ca = cfg_lower(a[i - 1]), cb = cfg_lower(b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == cfg_lower(b[j - 2]) && cfg_lower(a[i - 2]) == cb &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* A suggestion is worth making within 2 edits, and fewer for short names. */
static size_t suggest_limit(const char *name)
{
    size_t l = strlen(name);
    return l <= 4 ? 1 : 2;
}

const config_key_doc *cfg_key_suggest(const char *section, const char *name)
{
    const config_key_doc *best = NULL;
    size_t bestd = suggest_limit(name) + 1;

    /* The same name in another section is the likeliest mistake. */
    for (int i = 0; i < cfg_nkeys; i++)
        if (strlen(key_docs[i].name) == strlen(name) &&
            cfg_caseeq(key_docs[i].name, name, strlen(name)))
            return &key_docs[i];
    for (int pass = 0; pass < 2 && !best; pass++) {
        for (int i = 0; i < cfg_nkeys; i++) {
            if (pass == 0 && strcmp(key_docs[i].section, section) != 0)
                continue;
            size_t d = edit_distance(name, key_docs[i].name);
            if (d < bestd) {
                bestd = d;
                best = &key_docs[i];
            }
        }
    }
    return best;
}

const char *cfg_section_suggest(const char *name)
{
    const char *best = NULL;
    size_t bestd = suggest_limit(name) + 1;
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        size_t d = edit_distance(name, sections[i]);
        if (d < bestd) {
            bestd = d;
            best = sections[i];
        }
    }
    return best;
}
