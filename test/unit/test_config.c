/*
 * test_config.c - sluice.conf loading: defaults, a round trip of every key,
 * each class of error with its exact "FILE:LINE: message", path resolution,
 * value parsers (listen, CIDR, durations), trust and local-domain questions,
 * config_check_files, and docs/config.md against the key table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/config.h"

/* ---- helpers ---- */

#define MAX_DIAGS 64

struct diags {
    int n;
    char *msg[MAX_DIAGS];
};

static void collect(void *arg, const char *diag)
{
    struct diags *d = arg;
    if (d->n < MAX_DIAGS) {
        d->msg[d->n] = strdup(diag);
        assert_non_null(d->msg[d->n]);
    }
    d->n++;
}

static void diags_free(struct diags *d)
{
    for (int i = 0; i < d->n && i < MAX_DIAGS; i++)
        free(d->msg[i]);
    memset(d, 0, sizeof(*d));
}

static bool has_diag(const struct diags *d, const char *want)
{
    for (int i = 0; i < d->n && i < MAX_DIAGS; i++)
        if (strcmp(d->msg[i], want) == 0)
            return true;
    return false;
}

static void print_diags(const struct diags *d)
{
    for (int i = 0; i < d->n && i < MAX_DIAGS; i++)
        print_message("  diag: %s\n", d->msg[i]);
}

/* Loads text as /etc/t/s.conf; returns config_load_buffer's result. */
static int load(const char *text, sluice_config *cfg, struct diags *d)
{
    memset(d, 0, sizeof(*d));
    return config_load_buffer("/etc/t/s.conf", text, strlen(text), cfg, collect, d);
}

/* Expects text to give exactly one problem, want. */
static void expect_one(const char *text, const char *want)
{
    sluice_config cfg;
    struct diags d;
    int rc = load(text, &cfg, &d);
    if (rc != 1 || !has_diag(&d, want)) {
        print_message("input:\n%s\nwanted: %s\n", text, want);
        print_diags(&d);
    }
    assert_int_equal(rc, 1);
    assert_true(has_diag(&d, want));
    diags_free(&d);
    config_free(&cfg);
}

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int setup_tmp(void **state)
{
    strcpy(tmpdir, "/tmp/sluice-cfg-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    sluice_config cfg;
    struct diags d;
    char host[256] = {0};

    assert_int_equal(load("", &cfg, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
    assert_string_equal(cfg.hostname, host);
    assert_string_equal(cfg.path, "/etc/t/s.conf");
    assert_string_equal(cfg.dir, "/etc/t");
    assert_string_equal(cfg.spool, "/var/spool/sluice");
    assert_string_equal(cfg.user, "");
    assert_false(cfg.log_syslog);
    assert_int_equal(cfg.nlisten, 1);
    assert_string_equal(cfg.listen[0].host, "127.0.0.1");
    assert_int_equal(cfg.listen[0].port, 25);
    assert_int_equal(cfg.listen[0].kind, LISTEN_MX);
    assert_true(cfg.max_message_size == 36700160);
    assert_int_equal(cfg.max_recipients, 1000);
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.max_connections_per_ip, 50);
    assert_int_equal(cfg.ntrusted, 0);
    assert_string_equal(cfg.tls_cert, "");
    assert_string_equal(cfg.tls_key, "");
    assert_string_equal(cfg.auth_mechanisms, "PLAIN LOGIN");
    assert_string_equal(cfg.sasl_db, "");
    assert_int_equal(cfg.spf, SPF_REJECT);
    assert_int_equal(cfg.timeout_command, 300);
    assert_int_equal(cfg.timeout_data_block, 180);
    assert_int_equal(cfg.max_bad_commands, 20);
    assert_false(cfg.allow_plaintext_auth);
    assert_int_equal(cfg.auth_fail_limit, 5);
    assert_int_equal(cfg.auth_fail_window, 300);
    assert_string_equal(cfg.sender_login_map, "");
    assert_int_equal(cfg.nlocal_domains, 1);
    assert_string_equal(cfg.local_domains[0], "localhost");
    assert_string_equal(cfg.mailboxes, "");
    assert_string_equal(cfg.aliases, "");
    assert_int_equal(cfg.ndns_servers, 0);
    assert_int_equal(cfg.remote_port, 25);
    assert_string_equal(cfg.relayhost, "");
    assert_string_equal(cfg.relayhost_auth, "");
    assert_string_equal(cfg.transport, "");
    assert_int_equal(cfg.tls, TLS_MAY);
    assert_int_equal(cfg.concurrency, 100);
    assert_int_equal(cfg.concurrency_per_destination, 20);
    assert_int_equal(cfg.retry_initial, 300);
    assert_int_equal(cfg.retry_max, 3600);
    assert_int_equal(cfg.max_queue_lifetime, 5 * 86400);
    assert_int_equal(cfg.delay_warning, 4 * 3600);
    config_free(&cfg);
    /* config_free leaves a zeroed struct, safe to free again. */
    assert_null(cfg.hostname);
    config_free(&cfg);
}

/* ---- every key, through a real file ---- */

static const char full_conf[] = "; the DESIGN.md example, every key set\n"
                                "[server]\n"
                                "hostname = mail.example.test\n"
                                "spool = var/spool\n"
                                "user =                          ; when started as root\n"
                                "log = syslog                    ; stderr | syslog\n"
                                "\n"
                                "[smtpd]\n"
                                "listen = 127.0.0.1:2525 mx          ; repeatable\n"
                                "listen = 127.0.0.1:2587 submission\n"
                                "listen = 127.0.0.1:2465 smtps\n"
                                "listen = [::1]:2526 MX\n"
                                "max_message_size = 1048576\n"
                                "max_recipients = 100\n"
                                "max_connections = 500\n"
                                "max_connections_per_ip = 7\n"
                                "trusted_networks = 192.168.0.0/16, 10.1.2.3 ::1  2001:db8::/32\n"
                                "tls_cert = var/tls/cert.pem\n"
                                "tls_key = /abs/key.pem\n"
                                "auth_mechanisms = plain,login  cram-md5\n"
                                "sasl_db = var/sasldb2\n"
                                "spf = tag\n"
                                "timeout_command = 2m\n"
                                "timeout_data_block = 90s\n"
                                "max_bad_commands = 3\n"
                                "allow_plaintext_auth = yes\n"
                                "auth_fail_limit = 9\n"
                                "auth_fail_window = 1h\n"
                                "sender_login_map = senders\n"
                                "\n"
                                "[domains]\n"
                                "local = localhost Example.TEST\n"
                                "local = other.test\n"
                                "mailboxes = mailboxes\n"
                                "aliases = ./maps//aliases\n"
                                "\n"
                                "[delivery]\n"
                                "dns_servers = 127.0.0.1:5353, [::1]:5300 10.0.0.1\n"
                                "remote_port = 2500\n"
                                "relayhost = [smart.example.test]:587\n"
                                "relayhost_auth = relay.auth\n"
                                "transport = transport\n"
                                "tls = verify\n"
                                "concurrency = 10\n"
                                "concurrency_per_destination = 2\n"
                                "retry_initial = 30s\n"
                                "retry_max = 2h\n"
                                "max_queue_lifetime = 3d\n"
                                "delay_warning = 0\n";

static void test_full_round_trip(void **state)
{
    char conf[256], want[512];
    sluice_config cfg;
    struct diags d = {0};

    write_file("sluice.conf", full_conf);
    snprintf(conf, sizeof(conf), "%s/sluice.conf", tmpdir);
    int rc = config_load(conf, &cfg, collect, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.path, conf);
    assert_string_equal(cfg.dir, tmpdir);
    assert_string_equal(cfg.hostname, "mail.example.test");
    snprintf(want, sizeof(want), "%s/var/spool", tmpdir);
    assert_string_equal(cfg.spool, want);
    assert_string_equal(cfg.user, "");
    assert_true(cfg.log_syslog);

    assert_int_equal(cfg.nlisten, 4);
    assert_string_equal(cfg.listen[0].host, "127.0.0.1");
    assert_int_equal(cfg.listen[0].port, 2525);
    assert_int_equal(cfg.listen[0].kind, LISTEN_MX);
    assert_int_equal(cfg.listen[1].port, 2587);
    assert_int_equal(cfg.listen[1].kind, LISTEN_SUBMISSION);
    assert_int_equal(cfg.listen[2].port, 2465);
    assert_int_equal(cfg.listen[2].kind, LISTEN_SMTPS);
    assert_string_equal(cfg.listen[3].host, "::1");
    assert_int_equal(cfg.listen[3].port, 2526);
    assert_int_equal(cfg.listen[3].kind, LISTEN_MX);

    assert_true(cfg.max_message_size == 1048576);
    assert_int_equal(cfg.max_recipients, 100);
    assert_int_equal(cfg.max_connections, 500);
    assert_int_equal(cfg.max_connections_per_ip, 7);
    assert_int_equal(cfg.ntrusted, 4);
    assert_int_equal(cfg.trusted_networks[0].family, AF_INET);
    assert_int_equal(cfg.trusted_networks[0].prefix, 16);
    assert_int_equal(cfg.trusted_networks[1].prefix, 32);
    assert_int_equal(cfg.trusted_networks[2].family, AF_INET6);
    assert_int_equal(cfg.trusted_networks[2].prefix, 128);
    assert_int_equal(cfg.trusted_networks[3].prefix, 32);

    snprintf(want, sizeof(want), "%s/var/tls/cert.pem", tmpdir);
    assert_string_equal(cfg.tls_cert, want);
    assert_string_equal(cfg.tls_key, "/abs/key.pem");
    assert_string_equal(cfg.auth_mechanisms, "PLAIN LOGIN CRAM-MD5");
    snprintf(want, sizeof(want), "%s/var/sasldb2", tmpdir);
    assert_string_equal(cfg.sasl_db, want);
    assert_int_equal(cfg.spf, SPF_TAG);
    assert_int_equal(cfg.timeout_command, 120);
    assert_int_equal(cfg.timeout_data_block, 90);
    assert_int_equal(cfg.max_bad_commands, 3);
    assert_true(cfg.allow_plaintext_auth);
    assert_int_equal(cfg.auth_fail_limit, 9);
    assert_int_equal(cfg.auth_fail_window, 3600);
    snprintf(want, sizeof(want), "%s/senders", tmpdir);
    assert_string_equal(cfg.sender_login_map, want);

    assert_int_equal(cfg.nlocal_domains, 3);
    assert_string_equal(cfg.local_domains[0], "localhost");
    assert_string_equal(cfg.local_domains[1], "example.test");
    assert_string_equal(cfg.local_domains[2], "other.test");
    snprintf(want, sizeof(want), "%s/mailboxes", tmpdir);
    assert_string_equal(cfg.mailboxes, want);
    snprintf(want, sizeof(want), "%s/maps/aliases", tmpdir);
    assert_string_equal(cfg.aliases, want);

    assert_int_equal(cfg.ndns_servers, 3);
    assert_string_equal(cfg.dns_servers[0], "127.0.0.1:5353");
    assert_string_equal(cfg.dns_servers[1], "[::1]:5300");
    assert_string_equal(cfg.dns_servers[2], "10.0.0.1:53");
    assert_int_equal(cfg.remote_port, 2500);
    assert_string_equal(cfg.relayhost, "[smart.example.test]:587");
    snprintf(want, sizeof(want), "%s/relay.auth", tmpdir);
    assert_string_equal(cfg.relayhost_auth, want);
    snprintf(want, sizeof(want), "%s/transport", tmpdir);
    assert_string_equal(cfg.transport, want);
    assert_int_equal(cfg.tls, TLS_VERIFY);
    assert_int_equal(cfg.concurrency, 10);
    assert_int_equal(cfg.concurrency_per_destination, 2);
    assert_int_equal(cfg.retry_initial, 30);
    assert_int_equal(cfg.retry_max, 7200);
    assert_int_equal(cfg.max_queue_lifetime, 3 * 86400);
    assert_int_equal(cfg.delay_warning, 0);
    config_free(&cfg);
    diags_free(&d);
}

static void test_enum_and_bool_spellings(void **state)
{
    static const struct {
        const char *text;
        int spf, tls;
        bool plain;
    } cases[] = {
        {"[smtpd]\nspf = off\nallow_plaintext_auth = true\n[delivery]\ntls = encrypt\n", SPF_OFF,
         TLS_ENCRYPT, true},
        {"[smtpd]\nspf = REJECT\nallow_plaintext_auth = Off\n[delivery]\ntls = may\n", SPF_REJECT,
         TLS_MAY, false},
        {"[smtpd]\nspf = tag\nallow_plaintext_auth = 1\n", SPF_TAG, TLS_MAY, true},
        {"[smtpd]\nallow_plaintext_auth = 0\n", SPF_REJECT, TLS_MAY, false},
        {"[smtpd]\nallow_plaintext_auth = on\n", SPF_REJECT, TLS_MAY, true},
        {"[smtpd]\nallow_plaintext_auth = NO\n", SPF_REJECT, TLS_MAY, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sluice_config cfg;
        struct diags d;
        assert_int_equal(load(cases[i].text, &cfg, &d), 0);
        assert_int_equal(cfg.spf, cases[i].spf);
        assert_int_equal(cfg.tls, cases[i].tls);
        assert_int_equal(cfg.allow_plaintext_auth, cases[i].plain);
        config_free(&cfg);
        diags_free(&d);
    }
}

/* ---- errors, each with its exact FILE:LINE ---- */

static void test_error_structure(void **state)
{
    expect_one("[server]\n\n[smtp]\nhostname = x.test\n",
               "/etc/t/s.conf:3: unknown section [smtp]; did you mean [smtpd]?");
    expect_one("[frobnicate]\nfoo = 1\nbar = 2\n",
               "/etc/t/s.conf:1: unknown section [frobnicate] (sections: server, smtpd, "
               "domains, delivery)");
    expect_one("[smtpd]\ntls_crt = /x\n",
               "/etc/t/s.conf:2: unknown key 'tls_crt' in [smtpd]; did you mean 'tls_cert'?");
    expect_one("[server]\nHostname = a.test\n",
               "/etc/t/s.conf:2: unknown key 'Hostname' in [server]; did you mean 'hostname'?");
    expect_one("[server]\ntls_cert = /x\n", "/etc/t/s.conf:2: 'tls_cert' belongs in [smtpd], "
                                            "not [server]");
    expect_one("[server]\nwhatever = 1\n", "/etc/t/s.conf:2: unknown key 'whatever' in [server]");
    expect_one("hostname = a.test\n[server]\n",
               "/etc/t/s.conf:1: 'hostname' is outside any section; put it under [server]");
    expect_one("[server]\n\nhostname a.test\n", "/etc/t/s.conf:3: missing '=' after 'hostname'");
    expect_one("[server]\n\"hostname\" a.test\n",
               "/etc/t/s.conf:2: expected 'key = value' or '[section]'");
    expect_one("[server]\nhost name = a.test\n", "/etc/t/s.conf:2: bad key name 'host name'");
    expect_one("[server]\n= a.test\n", "/etc/t/s.conf:2: missing key name before '='");
    expect_one("[server\nhostname = a.test\n",
               "/etc/t/s.conf:1: bad section header: expected [name]");
    expect_one("[server]\nhostname = a.test\nspool = /s\nhostname = b.test\n",
               "/etc/t/s.conf:4: duplicate key 'hostname' (first set at line 2); this later "
               "value is used");
    expect_one("[server]\nhostname = a.test\x01\n",
               "/etc/t/s.conf:2: control character 0x01 in line");
}

static void test_error_values(void **state)
{
    expect_one("[delivery]\nretry_initial = 5 m\n",
               "/etc/t/s.conf:2: retry_initial: bad duration '5 m': expected a number with s, m, "
               "h or d (30s, 5m, 1h, 2d)");
    expect_one("[smtpd]\nallow_plaintext_auth = maybe\n",
               "/etc/t/s.conf:2: allow_plaintext_auth: bad value 'maybe': expected yes or no "
               "(also true/false, on/off, 1/0)");
    expect_one("[smtpd]\nspf = soft\n",
               "/etc/t/s.conf:2: spf: bad value 'soft': expected off|tag|reject");
    expect_one("[server]\nlog = file\n",
               "/etc/t/s.conf:2: log: bad value 'file': expected stderr|syslog");
    expect_one("[smtpd]\nmax_recipients = 10k\n",
               "/etc/t/s.conf:2: max_recipients: bad value '10k': expected a whole number "
               "(digits only)");
    expect_one("[smtpd]\nmax_recipients = -1\n",
               "/etc/t/s.conf:2: max_recipients: bad value '-1': expected a whole number "
               "(digits only)");
    expect_one("[smtpd]\nmax_recipients = 0\n",
               "/etc/t/s.conf:2: max_recipients: 0 is too small (at least 1)");
    expect_one("[smtpd]\nmax_recipients = 4294967296\n",
               "/etc/t/s.conf:2: max_recipients: 4294967296 is too large (at most 4294967295)");
    expect_one("[smtpd]\nmax_message_size = 99999999999999999999\n",
               "/etc/t/s.conf:2: max_message_size: bad value '99999999999999999999': number too "
               "large");
    expect_one("[delivery]\nremote_port = 65536\n",
               "/etc/t/s.conf:2: remote_port: 65536 is too large (at most 65535)");
    expect_one("[server]\nhostname = mail example\n",
               "/etc/t/s.conf:2: hostname: bad host name 'mail example'");
    expect_one("[server]\nhostname =\n",
               "/etc/t/s.conf:2: hostname must not be empty (default: (this host's name))");
    expect_one("[server]\nspool = ; none\n",
               "/etc/t/s.conf:2: spool must not be empty (default: /var/spool/sluice)");
    expect_one("[server]\nuser = mail user\n", "/etc/t/s.conf:2: user: bad user name 'mail user'");
    expect_one("[smtpd]\nauth_mechanisms = PLAIN LOG/IN\n",
               "/etc/t/s.conf:2: auth_mechanisms: bad value 'PLAIN LOG/IN': SASL mechanism "
               "names are letters, digits, '-' and '_'");
    expect_one("[delivery]\nrelayhost = ::1:25\n",
               "/etc/t/s.conf:2: relayhost: bad next hop '::1:25': an IPv6 address needs "
               "brackets, as [::1]:25");
    expect_one("[delivery]\nrelayhost = 10.0.0.1:99999\n",
               "/etc/t/s.conf:2: relayhost: bad next hop '10.0.0.1:99999': port must be a "
               "number from 1 to 65535");
    expect_one("[domains]\nlocal = example.test.\n",
               "/etc/t/s.conf:2: local: write 'example.test' without the trailing dot");
    expect_one("[domains]\nlocal = good.test bad_domain.test\n",
               "/etc/t/s.conf:2: local: bad domain 'bad_domain.test'");
    expect_one("[delivery]\ndns_servers = 127.0.0.1:53 ns.example.test\n",
               "/etc/t/s.conf:2: dns_servers: bad server 'ns.example.test': a DNS server must be "
               "an IP address");
    expect_one("[delivery]\ndns_servers = ::1\n",
               "/etc/t/s.conf:2: dns_servers: bad server '::1': an IPv6 address needs brackets, "
               "as [::1]:25");
    expect_one("[smtpd]\ntrusted_networks = 10.0.0.0/8 10.1.2.3/8\n",
               "/etc/t/s.conf:2: trusted_networks: bad network '10.1.2.3/8': address has bits "
               "set beyond the prefix");
    expect_one("[smtpd]\ntrusted_networks = 0.0.0.0/0\n",
               "/etc/t/s.conf:2: trusted_networks: bad network '0.0.0.0/0': a /0 network would "
               "make an open relay");
    expect_one("[smtpd]\ntrusted_networks = 10.0.0.0/33\n",
               "/etc/t/s.conf:2: trusted_networks: bad network '10.0.0.0/33': prefix must be 0 "
               "to 32");
    expect_one("[smtpd]\ntrusted_networks = 10.0.0.300\n",
               "/etc/t/s.conf:2: trusted_networks: bad network '10.0.0.300': not an IP address");
}

static void test_error_listen(void **state)
{
    expect_one("[smtpd]\nlisten = ::1:25 mx\n",
               "/etc/t/s.conf:2: listen: bad value '::1:25 mx': an IPv6 address needs brackets, "
               "as [::1]:25");
    expect_one("[smtpd]\nlisten = 127.0.0.1 mx\n",
               "/etc/t/s.conf:2: listen: bad value '127.0.0.1 mx': missing ':PORT' after the "
               "address");
    expect_one("[smtpd]\nlisten = 127.0.0.1:25\n",
               "/etc/t/s.conf:2: listen: bad value '127.0.0.1:25': missing kind after the "
               "address: mx, submission or smtps");
    expect_one("[smtpd]\nlisten = 127.0.0.1:25 lmtp\n",
               "/etc/t/s.conf:2: listen: bad value '127.0.0.1:25 lmtp': kind must be mx, "
               "submission or smtps");
    expect_one("[smtpd]\nlisten = localhost:25 mx\n",
               "/etc/t/s.conf:2: listen: bad value 'localhost:25 mx': the address must be an IP "
               "address (0.0.0.0 or [::] for all)");
    expect_one("[smtpd]\nlisten = 127.0.0.1:0 mx\n",
               "/etc/t/s.conf:2: listen: bad value '127.0.0.1:0 mx': port must be a number from "
               "1 to 65535");
    expect_one("[smtpd]\nlisten = 127.0.0.1:25 mx extra\n",
               "/etc/t/s.conf:2: listen: bad value '127.0.0.1:25 mx extra': extra text after the "
               "kind");
    expect_one("[smtpd]\nlisten = [::1:25 mx\n",
               "/etc/t/s.conf:2: listen: bad value '[::1:25 mx': missing ']'");
    expect_one("[smtpd]\nlisten = 127.0.0.1:25 mx\nlisten = 127.0.0.1:25 submission\n",
               "/etc/t/s.conf:3: listen: 127.0.0.1 port 25 is already a listener (line 2)");
}

static void test_error_cross(void **state)
{
    expect_one("[smtpd]\n\ntls_cert = c.pem\n",
               "/etc/t/s.conf:3: tls_cert is set but tls_key is empty");
    expect_one("[smtpd]\ntls_key = k.pem\n",
               "/etc/t/s.conf:2: tls_key is set but tls_cert is empty");
    expect_one("[smtpd]\nlisten = 127.0.0.1:2525 mx\nlisten = 127.0.0.1:2465 smtps\n",
               "/etc/t/s.conf:3: listen: the smtps listener on port 2465 needs tls_cert and "
               "tls_key");
    expect_one("[delivery]\nretry_initial = 2h\n",
               "/etc/t/s.conf:2: retry_max (3600s) is shorter than retry_initial (7200s)");
    expect_one("[delivery]\nretry_initial = 2h\nretry_max = 30m\n",
               "/etc/t/s.conf:3: retry_max (1800s) is shorter than retry_initial (7200s)");
}

/* Many problems in one file: all reported, each at its own line, and counted. */
static void test_error_count_and_lines(void **state)
{
    const char *text = "[server]\n"               /* 1 */
                       "hostname = ok.test\n"     /* 2 */
                       "bogus = 1\n"              /* 3 */
                       "[smtpd]\n"                /* 4 */
                       "max_recipients = x\n"     /* 5 */
                       "; comment\n"              /* 6 */
                       "listen = 1.2.3.4:25 mx\n" /* 7 */
                       "listen = nope\n"          /* 8 */
                       "[nope]\n"                 /* 9 */
                       "anything = goes\n"        /* 10 */
                       "[delivery]\n"             /* 11 */
                       "tls = sometimes\n"        /* 12 */
                       "concurrency = 5\n";       /* 13 */
    sluice_config cfg;
    struct diags d;
    int rc = load(text, &cfg, &d);
    print_diags(&d);
    assert_int_equal(rc, 5);
    assert_int_equal(d.n, 5);
    assert_true(strncmp(d.msg[0], "/etc/t/s.conf:3: ", 17) == 0);
    assert_true(strncmp(d.msg[1], "/etc/t/s.conf:5: ", 17) == 0);
    assert_true(strncmp(d.msg[2], "/etc/t/s.conf:8: ", 17) == 0);
    assert_true(strncmp(d.msg[3], "/etc/t/s.conf:9: ", 17) == 0);
    assert_true(strncmp(d.msg[4], "/etc/t/s.conf:12: ", 18) == 0);
    /* Good lines around the bad ones still count. */
    assert_string_equal(cfg.hostname, "ok.test");
    assert_int_equal(cfg.nlisten, 1);
    assert_string_equal(cfg.listen[0].host, "1.2.3.4");
    assert_int_equal(cfg.concurrency, 5);
    assert_int_equal(cfg.max_recipients, 1000); /* bad value leaves the default */
    config_free(&cfg);
    diags_free(&d);
}

static void test_long_lines(void **state)
{
    /* Past inih's 200-byte line buffer: 300 domains on one line. */
    size_t cap = 300 * 16 + 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap, "[domains]\nlocal =");
    for (int i = 0; i < 250; i++)
        o += (size_t)snprintf(text + o, cap - o, " d%03d.test", i);
    o += (size_t)snprintf(text + o, cap - o, "\n[server]\nhostname = after.test\n");
    assert_true(o < cap);

    sluice_config cfg;
    struct diags d;
    assert_int_equal(load(text, &cfg, &d), 0);
    assert_int_equal(cfg.nlocal_domains, 250);
    assert_string_equal(cfg.local_domains[249], "d249.test");
    assert_string_equal(cfg.hostname, "after.test");
    config_free(&cfg);
    diags_free(&d);
    free(text);

    /* A line over 4096 bytes is one problem at its line; the next lines still count. */
    text = malloc(6000);
    assert_non_null(text);
    strcpy(text, "[server]\nuser = ");
    memset(text + strlen(text), 'a', 4200);
    strcpy(text + 16 + 4200, "\nhostname = next.test\n");
    expect_one(text, "/etc/t/s.conf:2: line is longer than 4096 bytes");
    assert_int_equal(load(text, &cfg, &d), 1);
    assert_string_equal(cfg.hostname, "next.test");
    config_free(&cfg);
    diags_free(&d);
    free(text);
}

static void test_limits(void **state)
{
    char text[4096];
    size_t o = (size_t)snprintf(text, sizeof(text), "[smtpd]\ntrusted_networks =");
    for (int i = 0; i < CFG_MAX_NETS + 1; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, " 10.0.%d.0/24", i);
    snprintf(text + o, sizeof(text) - o, "\n");
    expect_one(text, "/etc/t/s.conf:2: trusted_networks: too many networks (at most 64)");

    o = (size_t)snprintf(text, sizeof(text), "[delivery]\n");
    for (int i = 0; i < CFG_MAX_DNS + 1; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "dns_servers = 127.0.0.%d\n", i + 1);
    expect_one(text, "/etc/t/s.conf:10: dns_servers: too many servers (at most 8)");
}

/* ---- syntax details ---- */

static void test_comments_and_whitespace(void **state)
{
    const char *text = "\xEF\xBB\xBF# hash comment\r\n"
                       "; semicolon comment\r\n"
                       "  [server]   ; section comment\r\n"
                       "\thostname\t=\tmail.test\t# trailing hash\r\n"
                       "spool = /var/sp#ool;x ; comment\r\n"
                       "user =# nothing\r\n"
                       "[smtpd]\n"
                       "auth_mechanisms = ; none at all\n"
                       "max_recipients=12";
    sluice_config cfg;
    struct diags d;
    int rc = load(text, &cfg, &d);
    print_diags(&d);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.hostname, "mail.test");
    assert_string_equal(cfg.spool, "/var/sp#ool;x");
    assert_string_equal(cfg.user, "");
    assert_string_equal(cfg.auth_mechanisms, "");
    assert_int_equal(cfg.max_recipients, 12);
    config_free(&cfg);
    diags_free(&d);
}

static void test_paths(void **state)
{
    sluice_config cfg;
    struct diags d = {0};
    const char *text = "[server]\nspool = ./var//spool/\n[smtpd]\ntls_cert = ../c.pem\n"
                       "tls_key = /k//./key.pem\n[domains]\nmailboxes = m\n";

    assert_int_equal(config_load_buffer("/a/b/c.conf", text, strlen(text), &cfg, collect, &d), 0);
    assert_string_equal(cfg.dir, "/a/b");
    assert_string_equal(cfg.spool, "/a/b/var/spool");
    assert_string_equal(cfg.tls_cert, "/a/b/../c.pem"); /* ".." is left to the kernel */
    assert_string_equal(cfg.tls_key, "/k/key.pem");
    assert_string_equal(cfg.mailboxes, "/a/b/m");
    char *p = config_abs_path(&cfg, "users/bob/Maildir/");
    assert_string_equal(p, "/a/b/users/bob/Maildir");
    free(p);
    p = config_abs_path(&cfg, "/srv/mail");
    assert_string_equal(p, "/srv/mail");
    free(p);
    config_free(&cfg);

    /* A config at the root. */
    assert_int_equal(config_load_buffer("/s.conf", text, strlen(text), &cfg, collect, &d), 0);
    assert_string_equal(cfg.dir, "/");
    assert_string_equal(cfg.spool, "/var/spool");
    config_free(&cfg);

    /* A relative config name is taken from the current folder. */
    char cwd[1024], want[1200];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(config_load_buffer("rel/s.conf", text, strlen(text), &cfg, collect, &d), 0);
    snprintf(want, sizeof(want), "%s/rel/s.conf", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(cfg.path, want);
    snprintf(want, sizeof(want), "%s/rel/var/spool", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(cfg.spool, want);
    config_free(&cfg);
    diags_free(&d);
}

static void test_load_file_errors(void **state)
{
    sluice_config cfg;
    struct diags d = {0};
    char path[256], want[512];

    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    assert_int_equal(config_load(path, &cfg, collect, &d), -ENOENT);
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msg[0], want);
    config_free(&cfg);
    diags_free(&d);

    assert_int_equal(config_load(tmpdir, &cfg, collect, &d), -EISDIR);
    assert_int_equal(d.n, 1);
    config_free(&cfg);
    diags_free(&d);
}

static void test_default_path(void **state)
{
    assert_int_equal(unsetenv("SLUICE_CONFIG"), 0);
    assert_string_equal(config_default_path(NULL), "/etc/sluice/sluice.conf");
    assert_string_equal(config_default_path(""), "/etc/sluice/sluice.conf");
    assert_int_equal(setenv("SLUICE_CONFIG", "/env/s.conf", 1), 0);
    assert_string_equal(config_default_path(NULL), "/env/s.conf");
    assert_string_equal(config_default_path("/cli.conf"), "/cli.conf");
    assert_int_equal(unsetenv("SLUICE_CONFIG"), 0);
}

/* ---- value parsers ---- */

static void test_duration(void **state)
{
    static const struct {
        const char *s;
        unsigned v;
    } ok[] = {
        {"0", 0},
        {"30", 30},
        {"30s", 30},
        {"5m", 300},
        {"1h", 3600},
        {"2d", 172800},
        {"0d", 0},
        {"4294967295", 4294967295u},
        {"49710d", 49710u * 86400u},
    };
    static const char *const bad[] = {"",       "m",   "5x",  "-1",    "1.5h",
                                      " 5m",    "5m ", "5M",  "1h30m", "4294967296",
                                      "49711d", "+5",  "5 m", "s5",    "0x10"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        unsigned v = 12345;
        assert_int_equal(config_parse_duration(ok[i].s, &v), 0);
        assert_int_equal(v, ok[i].v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned v = 12345;
        if (config_parse_duration(bad[i], &v) != -EINVAL)
            fail_msg("duration '%s' accepted", bad[i]);
        assert_int_equal(v, 12345);
    }
}

static void test_listen_parse(void **state)
{
    cfg_listen l;
    assert_int_equal(config_parse_listen("127.0.0.1:2525 mx", &l), 0);
    assert_string_equal(l.host, "127.0.0.1");
    assert_int_equal(l.port, 2525);
    assert_int_equal(l.kind, LISTEN_MX);
    assert_int_equal(config_parse_listen("[::1]:2587 submission", &l), 0);
    assert_string_equal(l.host, "::1");
    assert_int_equal(l.port, 2587);
    assert_int_equal(l.kind, LISTEN_SUBMISSION);
    assert_int_equal(config_parse_listen("  [::]:465\tsmtps ", &l), 0);
    assert_string_equal(l.host, "::");
    assert_int_equal(l.kind, LISTEN_SMTPS);
    assert_int_equal(config_parse_listen("0.0.0.0:25 MX", &l), 0);
    assert_string_equal(l.host, "0.0.0.0");
    assert_int_equal(config_parse_listen("[2001:db8::1]:25 mx", &l), 0);
    assert_string_equal(l.host, "2001:db8::1");

    static const char *const bad[] = {
        "",
        "mx",
        "::1:25 mx",
        "[::1] mx",
        "[::1]25 mx",
        "1.2.3.4:25",
        "1.2.3.4:25 mx x",
        "1.2.3.4:-1 mx",
        "1.2.3.4:65536 mx",
        "host.test:25 mx",
        "[]:25 mx",
        "1.2.3.4: mx",
        ":25 mx",
        "1.2.3:25 mx",
        "[fe80::1%eth0]:25 mx",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_listen(bad[i], &l) != -EINVAL)
            fail_msg("listen '%s' accepted", bad[i]);
}

static struct sockaddr_storage sa_from(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
    }
    return ss;
}

static bool matches(const char *cidr, const char *ip)
{
    cfg_cidr c;
    assert_int_equal(config_parse_cidr(cidr, &c), 0);
    struct sockaddr_storage ss = sa_from(ip);
    return config_cidr_match(&c, (struct sockaddr *)&ss);
}

static void test_cidr(void **state)
{
    assert_true(matches("10.0.0.0/8", "10.255.1.2"));
    assert_true(matches("10.0.0.0/8", "::ffff:10.1.2.3")); /* v4-mapped client */
    assert_false(matches("10.0.0.0/8", "11.0.0.1"));
    assert_false(matches("10.0.0.0/8", "::a00:1")); /* v4-compatible is not mapped */
    assert_true(matches("192.168.1.128/25", "192.168.1.200"));
    assert_false(matches("192.168.1.128/25", "192.168.1.127"));
    assert_true(matches("192.0.2.7", "192.0.2.7")); /* bare address = /32 */
    assert_false(matches("192.0.2.7", "192.0.2.8"));
    assert_true(matches("::1", "::1"));
    assert_false(matches("::1", "127.0.0.1"));
    assert_false(matches("127.0.0.1", "::1"));
    assert_true(matches("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(matches("2001:db8::/32", "2001:db9::1"));
    assert_true(matches("2001:db8::/31", "2001:db9::1"));
    assert_true(matches("[::1]/128", "::1"));
    /* A v4-mapped network is an IPv4 network, for both kinds of client. */
    assert_true(matches("::ffff:192.168.0.0/112", "192.168.3.4"));
    assert_true(matches("::ffff:192.168.0.0/112", "::ffff:192.168.3.4"));
    assert_false(matches("::ffff:192.168.0.0/112", "192.169.0.1"));
    cfg_cidr c;
    assert_int_equal(config_parse_cidr("::ffff:192.168.0.0/112", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 16);

    static const char *const bad[] = {"",
                                      "10.0.0.0/",
                                      "10.0.0.0/33",
                                      "10.0.0.1/24",
                                      "0.0.0.0/0",
                                      "::/0",
                                      "10.0.0.0/8x",
                                      "10/8",
                                      "::1/129",
                                      "10.0.0.0/-1",
                                      "host.test",
                                      "/8",
                                      "::ffff:0.0.0.0/96"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_cidr(bad[i], &c) != -EINVAL)
            fail_msg("cidr '%s' accepted", bad[i]);

    /* Non-IP families are never trusted. */
    struct sockaddr sa = {.sa_family = AF_UNIX};
    assert_false(config_cidr_match(&c, &sa));
}

static void test_trusted(void **state)
{
    sluice_config cfg;
    struct diags d;
    assert_int_equal(load("[smtpd]\ntrusted_networks = 192.0.2.0/24, 2001:db8::/48\n", &cfg, &d),
                     0);
    struct sockaddr_storage a = sa_from("192.0.2.9"), b = sa_from("::ffff:192.0.2.10"),
                            c = sa_from("2001:db8:0:1::5"), e = sa_from("2001:db8:1::5"),
                            f = sa_from("198.51.100.1");
    assert_true(config_is_trusted(&cfg, (struct sockaddr *)&a));
    assert_true(config_is_trusted(&cfg, (struct sockaddr *)&b));
    assert_true(config_is_trusted(&cfg, (struct sockaddr *)&c));
    assert_false(config_is_trusted(&cfg, (struct sockaddr *)&e));
    assert_false(config_is_trusted(&cfg, (struct sockaddr *)&f));
    assert_false(config_is_trusted(&cfg, NULL));
    config_free(&cfg);

    /* Empty by default: nobody relays on address alone. */
    assert_int_equal(load("", &cfg, &d), 0);
    a = sa_from("127.0.0.1");
    assert_false(config_is_trusted(&cfg, (struct sockaddr *)&a));
    config_free(&cfg);
}

static void test_relay_parse(void **state)
{
    cfg_relay r;
    assert_int_equal(config_parse_relay("[smart.test]:587", &r), 0);
    assert_string_equal(r.host, "smart.test");
    assert_int_equal(r.port, 587);
    assert_true(r.literal);
    assert_int_equal(config_parse_relay("mx.test", &r), 0);
    assert_string_equal(r.host, "mx.test");
    assert_int_equal(r.port, 0);
    assert_false(r.literal);
    assert_int_equal(config_parse_relay("[::1]:2525", &r), 0);
    assert_string_equal(r.host, "::1");
    assert_true(r.literal);
    assert_int_equal(config_parse_relay("[127.0.0.1]", &r), 0);
    assert_int_equal(r.port, 0);
    /* An IP address needs no brackets to skip the MX lookup. */
    assert_int_equal(config_parse_relay("192.0.2.1:2525", &r), 0);
    assert_string_equal(r.host, "192.0.2.1");
    assert_int_equal(r.port, 2525);
    assert_true(r.literal);
    static const char *const bad[] = {"",          "::1",     "[::1",        "a b",
                                      "[x]:0",     "[x]25",   "host:",       "[bad host]",
                                      "-bad.test", "a..test", "[::1]:70000", "[]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_relay(bad[i], &r) != -EINVAL)
            fail_msg("relay '%s' accepted", bad[i]);
}

static void test_local_domain(void **state)
{
    sluice_config cfg;
    struct diags d;
    assert_int_equal(load("[domains]\nlocal = Example.TEST localhost\n", &cfg, &d), 0);
    assert_true(config_is_local_domain(&cfg, "example.test", 12));
    assert_true(config_is_local_domain(&cfg, "EXAMPLE.test", 12));
    assert_true(config_is_local_domain(&cfg, "localhost", 9));
    assert_false(config_is_local_domain(&cfg, "example.test.", 13)); /* documented */
    assert_false(config_is_local_domain(&cfg, "sub.example.test", 16));
    assert_false(config_is_local_domain(&cfg, "example.tes", 11));
    assert_false(config_is_local_domain(&cfg, "", 0));
    /* len bounds the name: no NUL needed. */
    assert_true(config_is_local_domain(&cfg, "example.testXYZ", 12));
    assert_false(config_is_local_domain(&cfg, "example.te\0t", 12));
    config_free(&cfg);

    /* local = (empty) means no local domains at all. */
    assert_int_equal(load("[domains]\nlocal =\n", &cfg, &d), 0);
    assert_int_equal(cfg.nlocal_domains, 0);
    assert_false(config_is_local_domain(&cfg, "localhost", 9));
    config_free(&cfg);
}

/* ---- the table and its documentation ---- */

/* A Markdown table cell: '|' must be escaped. */
static void md_cell(const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (; *in && o + 3 < n; in++) {
        if (*in == '|')
            out[o++] = '\\';
        out[o++] = *in;
    }
    out[o] = '\0';
}

static void test_keys_table_and_docs(void **state)
{
    int n = 0;
    const config_key_doc *k = config_keys(&n);
    assert_int_equal(n, 40);

    /* docs/config.md must show every key exactly as the table does. */
    char path[1024];
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *cut = strstr(path, "test/unit/"); /* CMake gives an absolute __FILE__ */
    assert_non_null(cut);
    strcpy(cut, "docs/config.md");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char doc[65536];
    size_t len = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[len] = '\0';

    for (int i = 0; i < n; i++) {
        char row[1024], type[128], def[128];
        assert_true(k[i].section[0] && k[i].name[0] && k[i].type[0] && k[i].doc[0]);
        md_cell(k[i].type, type, sizeof(type));
        /* Defaults are shown as code, except "(empty)" and "(described)" ones. */
        if (!k[i].def[0])
            snprintf(def, sizeof(def), "(empty)");
        else if (k[i].def[0] == '(')
            snprintf(def, sizeof(def), "%s", k[i].def);
        else
            snprintf(def, sizeof(def), "`%s`", k[i].def);
        snprintf(row, sizeof(row), "| `%s` | %s | %s | %s |", k[i].name, type, def, k[i].doc);
        if (!strstr(doc, row))
            fail_msg("docs/config.md lacks the row:\n%s", row);
        /* The key's row is under its section's heading. */
        char head[64];
        snprintf(head, sizeof(head), "## [%s]", k[i].section);
        const char *h = strstr(doc, head), *r = strstr(doc, row);
        assert_non_null(h);
        assert_true(h < r);
        const char *next = strstr(h + 1, "\n## ");
        assert_true(next == NULL || r < next);
    }
}

/* ---- config_check_files ---- */

/* Writes a self-signed P-256 certificate and key (and a second, unrelated key). */
static void make_tls_files(void)
{
    char path[512];
    EVP_PKEY *pk = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(pk);
    assert_non_null(other);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"mail.test", -1, -1,
                               0);
    assert_int_equal(X509_set_issuer_name(x, nm), 1);
    assert_int_equal(X509_set_pubkey(x, pk), 1);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);

    snprintf(path, sizeof(path), "%s/cert.pem", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    snprintf(path, sizeof(path), "%s/other.pem", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, other, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(other);
}

/* Loads conf (written to tmpdir/c.conf) and runs config_check_files. */
static int check(const char *conf, struct diags *d)
{
    char path[256];
    sluice_config cfg;
    write_file("c.conf", conf);
    snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
    memset(d, 0, sizeof(*d));
    int rc = config_load(path, &cfg, collect, d);
    if (rc != 0)
        print_diags(d);
    assert_int_equal(rc, 0);
    rc = config_check_files(&cfg, collect, d);
    config_free(&cfg);
    return rc;
}

static void want_check(const char *conf, int problems, const char *want_fmt)
{
    struct diags d;
    char want[1024];
    int rc = check(conf, &d);
    want[0] = '\0';
    if (want_fmt)
        snprintf(want, sizeof(want), want_fmt, tmpdir, tmpdir, tmpdir);
    if (rc != problems || (want_fmt && !has_diag(&d, want))) {
        print_message("config:\n%swanted %d problems, with: %s\n", conf, problems, want);
        print_diags(&d);
    }
    assert_int_equal(rc, problems);
    if (want_fmt)
        assert_true(has_diag(&d, want));
    diags_free(&d);
}

static void test_check_files(void **state)
{
    make_tls_files();
    char mail[256];
    snprintf(mail, sizeof(mail), "%s/mail", tmpdir);
    assert_int_equal(mkdir(mail, 0755), 0);
    write_file("mailboxes", "# address  maildir\n"
                            "bob@example.test   mail/bob/\n"
                            "amy@example.test   deep/er/amy\n");
    write_file("aliases", "postmaster@example.test bob@example.test, amy@example.test\n");
    write_file("transport", "example.org [127.0.0.1]:2525\nexample.net mx.example.net\n");
    write_file("relay.auth", "user secret password\n");
    write_file("sasldb2", "x");
    write_file("afile", "x");

    /* Everything in order. */
    want_check("[server]\nspool = spool\n"
               "[smtpd]\ntls_cert = cert.pem\ntls_key = key.pem\nsasl_db = sasldb2\n"
               "[domains]\nmailboxes = mailboxes\naliases = aliases\n"
               "[delivery]\ntransport = transport\nrelayhost_auth = relay.auth\n",
               0, NULL);

    /* Key from another pair: reported at the tls_cert line. */
    want_check("[server]\nspool = spool\n[smtpd]\ntls_cert = cert.pem\ntls_key = other.pem\n", 1,
               "%s/c.conf:4: tls_cert %s/cert.pem does not match the private key in "
               "%s/other.pem");
    /* A key file that is not a key: reported at the tls_key line. */
    want_check("[server]\nspool = spool\n[smtpd]\ntls_cert = cert.pem\n\ntls_key = afile\n", 1,
               NULL);
    {
        struct diags d;
        assert_int_equal(check("[server]\nspool = spool\n[smtpd]\ntls_cert = cert.pem\n\n"
                               "tls_key = afile\n",
                               &d),
                         1);
        char want[512];
        snprintf(want, sizeof(want),
                 "%s/c.conf:6: tls_key: cannot load a private key from %s/afile", tmpdir, tmpdir);
        assert_true(strncmp(d.msg[0], want, strlen(want)) == 0);
        diags_free(&d);
    }
    /* A certificate file that is not one. */
    want_check("[server]\nspool = spool\n[smtpd]\ntls_cert = key.pem\ntls_key = key.pem\n", 1,
               NULL);
    /* Missing certificate. */
    want_check("[server]\nspool = spool\n[smtpd]\ntls_cert = nope.pem\ntls_key = key.pem\n", 1,
               "%s/c.conf:4: tls_cert: cannot open %s/nope.pem: No such file or directory");
    /* Missing sasl_db. */
    want_check("[server]\nspool = spool\n[smtpd]\nsasl_db = nosasl\n", 1,
               "%s/c.conf:4: sasl_db: cannot open %s/nosasl: No such file or directory");
    /* Missing map. */
    want_check("[server]\nspool = spool\n[domains]\n\naliases = noaliases\n", 1,
               "%s/c.conf:5: aliases: cannot open %s/noaliases: No such file or directory");
    /* Spool under a regular file. */
    want_check("[server]\nspool = afile/spool\n", 1,
               "%s/c.conf:2: spool: %s/afile/spool cannot be created: %s/afile is not a folder");
    want_check("[server]\nspool = afile\n", 1,
               "%s/c.conf:2: spool: %s/afile exists but is not a folder");

    /* Bad lines inside maps are reported at the map's own file:line. */
    write_file("mailboxes", "bob@example.test mail/bob\nbroken\ncarl@example.test afile/x\n");
    want_check("[server]\nspool = spool\n[domains]\nmailboxes = mailboxes\n", 2,
               "%s/mailboxes:2: key 'broken' has no value");
    want_check("[server]\nspool = spool\n[domains]\nmailboxes = mailboxes\n", 2,
               "%s/mailboxes:3: mailbox of carl@example.test: %s/afile/x cannot be created: "
               "%s/afile is not a folder");
    write_file("transport", "example.org [127.0.0.1:2525\n");
    want_check("[server]\nspool = spool\n[delivery]\ntransport = transport\n", 1,
               "%s/transport:1: next hop for example.org: bad '[127.0.0.1:2525': missing ']'");
    write_file("relay.auth", "u p\nv q\n");
    want_check("[server]\nspool = spool\n[delivery]\nrelayhost_auth = relay.auth\n", 1,
               "%s/relay.auth: expected exactly one line 'user password'");
}

/* ---- reload: fixed keys, sameness, references ---- */

static void test_reload_keep_fixed(void **state)
{
    (void)state;
    sluice_config run, upd;
    struct diags d1, d2;
    assert_int_equal(load("[server]\nspool = /var/s\nhostname = a.test\n"
                          "[smtpd]\nlisten = 127.0.0.1:25 mx\n"
                          "[delivery]\ndns_servers = 127.0.0.1:53\n",
                          &run, &d1),
                     0);
    assert_int_equal(load("[server]\nspool = /var/other\nhostname = b.test\n"
                          "[smtpd]\nlisten = 127.0.0.1:25 mx\nlisten = 127.0.0.1:587 submission\n"
                          "[delivery]\ndns_servers = 127.0.0.1:53\n",
                          &upd, &d2),
                     0);
    assert_false(config_same(&run, &upd));
    static const char *const fixed[] = {"server.spool", "smtpd.listen", "delivery.dns_servers",
                                        "no.such",      "nodot",        NULL};
    struct diags d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(config_keep_fixed(&upd, &run, fixed, "prog", collect, &d), 2);
    if (d.n != 2)
        print_diags(&d);
    assert_int_equal(d.n, 2);
    assert_true(has_diag(&d, "/etc/t/s.conf:2: [server] spool changed: it takes effect when "
                             "prog restarts; the running value stays"));
    assert_true(has_diag(&d, "/etc/t/s.conf:5: [smtpd] listen changed: it takes effect when "
                             "prog restarts; the running value stays"));
    /* the running values were copied, the others left alone */
    assert_string_equal(upd.spool, "/var/s");
    assert_int_equal(upd.nlisten, 1);
    assert_int_equal(upd.listen[0].port, 25);
    assert_string_equal(upd.hostname, "b.test");
    assert_false(config_same(&run, &upd));
    /* its own copy: freeing run must not touch upd */
    config_free(&run);
    assert_string_equal(upd.spool, "/var/s");
    assert_string_equal(upd.dns_servers[0], "127.0.0.1:53");

    /* with the hostname set back, the two are the same */
    sluice_config again;
    struct diags d3;
    assert_int_equal(load("[server]\nspool = /var/s\nhostname = b.test\n"
                          "[smtpd]\nlisten = 127.0.0.1:25 mx\n"
                          "[delivery]\ndns_servers = 127.0.0.1:53\n",
                          &again, &d3),
                     0);
    assert_true(config_same(&again, &upd));
    config_free(&again);
    config_free(&upd);
    diags_free(&d);
    diags_free(&d1);
    diags_free(&d2);
    diags_free(&d3);
}

static void test_reload_refs(void **state)
{
    (void)state;
    sluice_config *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    struct diags d;
    assert_int_equal(load("[server]\nhostname = a.test\n", c, &d), 0);
    c->refs = 1;
    assert_ptr_equal(config_hold(c), c);
    assert_int_equal(c->refs, 2);
    config_release(c);
    assert_int_equal(c->refs, 1);
    assert_string_equal(c->hostname, "a.test");
    config_release(c); /* freed here: LeakSanitizer checks it */
    config_release(NULL);
    assert_null(config_hold(NULL));
    diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_round_trip),
        cmocka_unit_test(test_enum_and_bool_spellings),
        cmocka_unit_test(test_error_structure),
        cmocka_unit_test(test_error_values),
        cmocka_unit_test(test_error_listen),
        cmocka_unit_test(test_error_cross),
        cmocka_unit_test(test_error_count_and_lines),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_comments_and_whitespace),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_trusted),
        cmocka_unit_test(test_relay_parse),
        cmocka_unit_test(test_local_domain),
        cmocka_unit_test(test_keys_table_and_docs),
        cmocka_unit_test(test_check_files),
        cmocka_unit_test(test_reload_keep_fixed),
        cmocka_unit_test(test_reload_refs),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
