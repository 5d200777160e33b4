/*
 * test_resolver.c - the resolver: pure parts on crafted DNS replies, then
 * the real thing against a dnsmasq started here on a loopback port.
 *
 * Only that dnsmasq (and loopback ports where nothing answers) is ever
 * asked: every resolver below is given its servers explicitly. The live
 * tests skip, saying why, only when dnsmasq cannot be started.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "sluice/resolver.h"

/* ------------------------------------------------------------------ */
/* A builder of DNS replies for the parser tests.                       */

typedef struct dnsmsg {
    unsigned char b[4096];
    size_t len;
    size_t ancount_at;
} dnsmsg;

static void put16(dnsmsg *m, unsigned v)
{
    m->b[m->len++] = (unsigned char)(v >> 8);
    m->b[m->len++] = (unsigned char)v;
}

static void put_name(dnsmsg *m, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        m->b[m->len++] = (unsigned char)l;
        memcpy(m->b + m->len, name, l);
        m->len += l;
        name += l;
        if (*name == '.')
            name++;
    }
    m->b[m->len++] = 0;
}

/* Header and question; rcode in the low bits of the flags. */
static void msg_begin(dnsmsg *m, const char *qname, unsigned qtype, unsigned rcode)
{
    memset(m, 0, sizeof(*m));
    put16(m, 0x4242);
    put16(m, 0x8180 | rcode);
    put16(m, 1);
    m->ancount_at = m->len;
    put16(m, 0);
    put16(m, 0);
    put16(m, 0);
    put_name(m, qname);
    put16(m, qtype);
    put16(m, C_IN);
}

/* An answer owned by the question's name (pointer to offset 12). */
static void msg_rr(dnsmsg *m, unsigned type, const void *rdata, size_t rdlen)
{
    unsigned an = (unsigned)(m->b[m->ancount_at] << 8 | m->b[m->ancount_at + 1]) + 1;
    m->b[m->ancount_at] = (unsigned char)(an >> 8);
    m->b[m->ancount_at + 1] = (unsigned char)an;
    put16(m, 0xc00c);
    put16(m, type);
    put16(m, C_IN);
    put16(m, 0);
    put16(m, 300);
    put16(m, (unsigned)rdlen);
    memcpy(m->b + m->len, rdata, rdlen);
    m->len += rdlen;
}

static void msg_mx(dnsmsg *m, unsigned pref, const char *host)
{
    dnsmsg tmp;
    tmp.len = 0;
    put16(&tmp, pref);
    put_name(&tmp, host);
    msg_rr(m, T_MX, tmp.b, tmp.len);
}

/* ------------------------------------------------------------------ */
/* Pure parts.                                                           */

static void test_server_parse(void **state)
{
    unsigned char a[16];
    uint16_t port;
    int fam;
    (void)state;

    assert_int_equal(resolver_server_parse("127.0.0.1:5353", &fam, a, &port), 0);
    assert_int_equal(fam, AF_INET);
    assert_int_equal(port, 5353);
    assert_memory_equal(a, "\x7f\0\0\x01", 4);
    assert_int_equal(resolver_server_parse("10.1.2.3", &fam, a, &port), 0);
    assert_int_equal(port, 53);
    assert_int_equal(resolver_server_parse("[::1]:5353", &fam, a, &port), 0);
    assert_int_equal(fam, AF_INET6);
    assert_int_equal(port, 5353);
    assert_int_equal(a[15], 1);
    assert_int_equal(resolver_server_parse("[::1]", &fam, a, &port), 0);
    assert_int_equal(port, 53);
    assert_int_equal(resolver_server_parse("fe80::1", &fam, a, &port), 0);
    assert_int_equal(fam, AF_INET6);
    assert_int_equal(port, 53);

    static const char *const bad[] = {"",          "ns.example.test:53",
                                      "1.2.3.4:0", "1.2.3.4:65536",
                                      "1.2.3.4:",  "[::1",
                                      "[::1]x",    "[::1]:",
                                      "[]:53",     "1.2.3.4:53x",
                                      "1.2.3:53",  "[1.2.3.4]:53",
                                      ":53",       "1.2.3.4 :53",
                                      "::1:53x",   "1.2.3.4:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (resolver_server_parse(bad[i], &fam, a, &port) != -EINVAL)
            fail_msg("accepted bad server \"%s\"", bad[i]);
    }
    assert_int_equal(resolver_server_parse(NULL, &fam, a, &port), -EINVAL);
}

static void test_name_valid(void **state)
{
    char longlabel[80], longname[300];
    (void)state;

    assert_true(resolver_name_valid("a.test"));
    assert_true(resolver_name_valid("a.test."));
    assert_true(resolver_name_valid("_spf.example.test"));
    assert_true(resolver_name_valid("xn--caf-dma.test"));
    assert_false(resolver_name_valid(""));
    assert_false(resolver_name_valid("."));
    assert_false(resolver_name_valid("a..test"));
    assert_false(resolver_name_valid(".a.test"));
    assert_false(resolver_name_valid("a test"));
    assert_false(resolver_name_valid("a\\.test"));
    assert_false(resolver_name_valid("caf\xc3\xa9.test"));
    assert_false(resolver_name_valid(NULL));
    memset(longlabel, 'a', 64);
    strcpy(longlabel + 64, ".test");
    assert_false(resolver_name_valid(longlabel));
    longlabel[1] = '.';
    assert_true(resolver_name_valid(longlabel));
    for (size_t i = 0; i < 254; i++)
        longname[i] = i % 2 ? '.' : 'a';
    longname[253] = 'a';
    longname[254] = '\0';
    assert_false(resolver_name_valid(longname));
    longname[253] = '\0';
    assert_true(resolver_name_valid(longname));
}

static void test_reverse_name(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    char out[80];
    (void)state;

    inet_pton(AF_INET, "192.0.2.10", &sin.sin_addr);
    assert_int_equal(resolver_reverse_name((struct sockaddr *)&sin, out, sizeof(out)), 0);
    assert_string_equal(out, "10.2.0.192.in-addr.arpa");
    assert_int_equal(resolver_reverse_name((struct sockaddr *)&sin, out, 10), -ENOSPC);
    inet_pton(AF_INET6, "2001:db8::567:89ab", &sin6.sin6_addr);
    assert_int_equal(resolver_reverse_name((struct sockaddr *)&sin6, out, sizeof(out)), 0);
    assert_string_equal(out,
                        "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    assert_int_equal(resolver_reverse_name((struct sockaddr *)&sin6, out, 72), -ENOSPC);
    sin.sin_family = AF_UNIX;
    assert_int_equal(resolver_reverse_name((struct sockaddr *)&sin, out, sizeof(out)), -EINVAL);
}

static void test_status_classes(void **state)
{
    (void)state;
    assert_int_equal(resolver_status_from_ares(ARES_SUCCESS), RESOLVER_OK);
    assert_int_equal(resolver_status_from_ares(ARES_ENOTFOUND), RESOLVER_ENXDOMAIN);
    assert_int_equal(resolver_status_from_ares(ARES_ENODATA), RESOLVER_ENODATA);
    assert_int_equal(resolver_status_from_ares(ARES_ESERVFAIL), RESOLVER_ETEMP);
    assert_int_equal(resolver_status_from_ares(ARES_ETIMEOUT), RESOLVER_ETEMP);
    assert_int_equal(resolver_status_from_ares(ARES_EREFUSED), RESOLVER_ETEMP);
    assert_int_equal(resolver_status_from_ares(ARES_ECONNREFUSED), RESOLVER_ETEMP);
    assert_int_equal(resolver_status_from_ares(ARES_EBADRESP), RESOLVER_ETEMP);
    assert_int_equal(resolver_status_from_ares(ARES_EFORMERR), RESOLVER_ETEMP);
    assert_int_equal(resolver_status_from_ares(ARES_ECANCELLED), RESOLVER_ECANCELED);
    assert_int_equal(resolver_status_from_ares(ARES_EDESTRUCTION), RESOLVER_ECANCELED);
    assert_int_equal(resolver_status_from_ares(12345), RESOLVER_ETEMP);
    assert_string_equal(resolver_strerror(RESOLVER_ENXDOMAIN), "name does not exist");
    assert_string_equal(resolver_strerror(-ENOMEM), strerror(ENOMEM));
}

static void test_parse_mx(void **state)
{
    resolver_result res;
    dnsmsg m;
    (void)state;

    msg_begin(&m, "a.test", T_MX, 0);
    msg_mx(&m, 30, "c.a.test");
    msg_mx(&m, 10, "b1.a.test");
    msg_mx(&m, 20, "d.a.test");
    msg_mx(&m, 10, "b2.a.test");
    assert_int_equal(resolver_parse_mx(m.b, m.len, &res), RESOLVER_OK);
    assert_int_equal(res.nmx, 4);
    /* Sorted by preference; reply order kept among equals (shuffling is separate). */
    assert_string_equal(res.mx[0].host, "b1.a.test");
    assert_int_equal(res.mx[0].pref, 10);
    assert_string_equal(res.mx[1].host, "b2.a.test");
    assert_string_equal(res.mx[2].host, "d.a.test");
    assert_string_equal(res.mx[3].host, "c.a.test");
    assert_int_equal(res.mx[3].pref, 30);
    resolver_result_free(&res);
    assert_null(res.mx);

    /* RFC 7505 null MX. */
    msg_begin(&m, "nullmx.test", T_MX, 0);
    msg_mx(&m, 0, "");
    assert_int_equal(resolver_parse_mx(m.b, m.len, &res), RESOLVER_ENULLMX);
    assert_int_equal(res.nmx, 0);

    /* "." beside a real host: the "." is dropped. */
    msg_begin(&m, "mixed.test", T_MX, 0);
    msg_mx(&m, 0, "");
    msg_mx(&m, 10, "mx.mixed.test");
    assert_int_equal(resolver_parse_mx(m.b, m.len, &res), RESOLVER_OK);
    assert_int_equal(res.nmx, 1);
    assert_string_equal(res.mx[0].host, "mx.mixed.test");
    resolver_result_free(&res);

    /* No answer: NODATA. An answer of another type only: NODATA. */
    msg_begin(&m, "a.test", T_MX, 0);
    assert_int_equal(resolver_parse_mx(m.b, m.len, &res), RESOLVER_ENODATA);
    msg_rr(&m, T_A, "\x7f\0\0\x01", 4);
    assert_int_equal(resolver_parse_mx(m.b, m.len, &res), RESOLVER_ENODATA);

    /* Truncated and empty replies are malformed: temporary. */
    msg_begin(&m, "a.test", T_MX, 0);
    msg_mx(&m, 10, "mx.a.test");
    assert_int_equal(resolver_parse_mx(m.b, m.len - 3, &res), RESOLVER_ETEMP);
    assert_int_equal(resolver_parse_mx(m.b, 5, &res), RESOLVER_ETEMP);
    assert_int_equal(resolver_parse_mx(m.b, 0, &res), RESOLVER_ETEMP);
    assert_int_equal(res.nmx, 0);
}

static void test_mx_shuffle(void **state)
{
    resolver_mx mx[6];
    static const uint16_t prefs[6] = {20, 10, 10, 10, 10, 5};
    char names[6][8];
    int first_seen[6] = {0};
    uint64_t rng = 12345;
    (void)state;

    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 6; i++) {
            snprintf(names[i], sizeof(names[i]), "h%d", i);
            mx[i].host = names[i];
            mx[i].pref = prefs[i];
        }
        assert_int_equal(resolver_mx_shuffle(mx, 6, &rng), 0);
        assert_string_equal(mx[0].host, "h5");
        assert_string_equal(mx[5].host, "h0");
        for (int i = 1; i < 5; i++) {
            assert_int_equal(mx[i].pref, 10);
            if (i > 1)
                assert_string_not_equal(mx[i].host, mx[i - 1].host);
        }
        first_seen[mx[1].host[1] - '0']++;
    }
    /* Each of the four equal hosts comes first sometimes. */
    for (int i = 1; i <= 4; i++)
        assert_true(first_seen[i] > 10);
}

static void test_parse_txt(void **state)
{
    resolver_result res;
    dnsmsg m;
    (void)state;

    msg_begin(&m, "a.test", T_TXT, 0);
    msg_rr(&m, T_TXT, "\x08v=spf1 a\x05 -all", 15);
    msg_rr(&m, T_TXT, "\x05other", 6);
    msg_rr(&m, T_TXT, "\x00", 1); /* one empty string */
    assert_int_equal(resolver_parse_txt(m.b, m.len, &res), RESOLVER_OK);
    assert_int_equal(res.ntxt, 3);
    /* RFC 7208 3.3: the strings of one record joined with nothing between. */
    assert_int_equal(res.txt[0].len, 13);
    assert_string_equal(res.txt[0].data, "v=spf1 a -all");
    assert_string_equal(res.txt[1].data, "other");
    assert_int_equal(res.txt[2].len, 0);
    assert_string_equal(res.txt[2].data, "");
    resolver_result_free(&res);

    msg_begin(&m, "a.test", T_TXT, 3);
    assert_int_equal(resolver_parse_txt(m.b, m.len, &res), RESOLVER_ENODATA);
    msg_begin(&m, "a.test", T_TXT, 0);
    msg_rr(&m, T_TXT, "\x09short", 6); /* string length beyond the record */
    assert_int_equal(resolver_parse_txt(m.b, m.len, &res), RESOLVER_ETEMP);
    assert_int_equal(res.ntxt, 0);
}

static void test_parse_addrs(void **state)
{
    resolver_result res;
    struct sockaddr_in *sin;
    struct sockaddr_in6 *sin6;
    unsigned char v6[16];
    dnsmsg m;
    (void)state;

    msg_begin(&m, "h.test", T_A, 0);
    msg_rr(&m, T_A, "\x7f\0\0\x02", 4);
    msg_rr(&m, T_A, "\xc0\0\x02\x01", 4);
    assert_int_equal(resolver_parse_addrs(m.b, m.len, AF_INET, &res), RESOLVER_OK);
    assert_int_equal(res.naddrs, 2);
    sin = (struct sockaddr_in *)&res.addrs[0];
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(sin->sin_port, 0);
    assert_memory_equal(&sin->sin_addr, "\x7f\0\0\x02", 4);
    sin = (struct sockaddr_in *)&res.addrs[1];
    assert_memory_equal(&sin->sin_addr, "\xc0\0\x02\x01", 4);
    resolver_result_free(&res);

    inet_pton(AF_INET6, "2001:db8::1", v6);
    msg_begin(&m, "h.test", T_AAAA, 0);
    msg_rr(&m, T_AAAA, v6, 16);
    assert_int_equal(resolver_parse_addrs(m.b, m.len, AF_INET6, &res), RESOLVER_OK);
    assert_int_equal(res.naddrs, 1);
    sin6 = (struct sockaddr_in6 *)&res.addrs[0];
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_memory_equal(&sin6->sin6_addr, v6, 16);
    resolver_result_free(&res);

    /* An AAAA reply read as A has no A records. */
    assert_int_equal(resolver_parse_addrs(m.b, m.len, AF_INET, &res), RESOLVER_ENODATA);
    msg_begin(&m, "h.test", T_A, 0);
    msg_rr(&m, T_A, "\x7f\0\0", 3); /* bad rdlength: c-ares skips such a record */
    assert_int_equal(resolver_parse_addrs(m.b, m.len, AF_INET, &res), RESOLVER_ENODATA);
    assert_int_equal(resolver_parse_addrs(m.b, m.len - 2, AF_INET, &res), RESOLVER_ETEMP);
    assert_int_equal(resolver_parse_addrs(m.b, m.len, AF_UNIX, &res), RESOLVER_ETEMP);
}

static void test_parse_ptr(void **state)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    resolver_result res;
    dnsmsg m, rd;
    (void)state;

    inet_pton(AF_INET, "192.0.2.10", &sin.sin_addr);
    msg_begin(&m, "10.2.0.192.in-addr.arpa", T_PTR, 0);
    rd.len = 0;
    put_name(&rd, "mail.example.test");
    msg_rr(&m, T_PTR, rd.b, rd.len);
    assert_int_equal(resolver_parse_ptr(m.b, m.len, (struct sockaddr *)&sin, &res), RESOLVER_OK);
    assert_string_equal(res.name, "mail.example.test");
    resolver_result_free(&res);
    msg_begin(&m, "10.2.0.192.in-addr.arpa", T_PTR, 0);
    assert_int_equal(resolver_parse_ptr(m.b, m.len, (struct sockaddr *)&sin, &res),
                     RESOLVER_ENODATA);
}

/* ------------------------------------------------------------------ */
/* Live tests against dnsmasq.                                           */

static pid_t g_dnsmasq = -1;
static int g_port;
static char g_server[32];
static const char *g_skip_reason;
static char g_skip_buf[256];
static char g_log[64];

/* A port that was free a moment ago (dnsmasq binds UDP and TCP). */
static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sin);
    int s = socket(AF_INET, SOCK_STREAM, 0), port;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(s, (struct sockaddr *)&sin, &sl) < 0) {
        if (s >= 0)
            close(s);
        return -1;
    }
    port = ntohs(sin.sin_port);
    close(s);
    return port;
}

static int tcp_ready(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int s = socket(AF_INET, SOCK_STREAM, 0), ok;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = s >= 0 && connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    if (s >= 0)
        close(s);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define X10(s) s s s s s s s s s s
#define X50(s) X10(s) X10(s) X10(s) X10(s) X10(s)
#define BIG_A X50("aaaaa")
#define BIG_B X50("bbbbb")
#define BIG_C X50("ccccc")

static int start_dnsmasq_once(void)
{
    static const char dnsmasq[] = "/usr/sbin/dnsmasq";
    char port_arg[32], big_arg[800];
    pid_t pid;

    g_port = free_port();
    if (g_port < 0)
        return -1;
    snprintf(port_arg, sizeof(port_arg), "--port=%d", g_port);
    /* Three 250-byte strings: the reply exceeds 512 bytes, so UDP is truncated and TCP used. */
    snprintf(big_arg, sizeof(big_arg), "--txt-record=big.test,%.250s,%.250s,%.250s", BIG_A, BIG_B,
             BIG_C);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(dnsmasq, dnsmasq, "--no-resolv", "--no-hosts", "--keep-in-foreground",
              "--conf-file=/dev/null", "--pid-file=", "--log-facility=-", port_arg,
              "--listen-address=127.0.0.1", "--bind-interfaces",
              /* authoritative NXDOMAIN for *.test instead of REFUSED */
              "--local=/test/", "--mx-host=a.test,mx1.a.test,10", "--mx-host=a.test,mx2.a.test,20",
              "--host-record=mx1.a.test,127.0.0.2", "--host-record=mx2.a.test,127.0.0.3,::1",
              "--txt-record=a.test,v=spf1 ip4:127.0.0.0/8 -all",
              "--txt-record=multi.test,v=spf1 ,ip4:10.0.0.0/8 ,-all", "--txt-record=two.test,first",
              "--txt-record=two.test,second", "--mx-host=nullmx.test,.,0",
              "--host-record=only-a.test,127.0.0.9", "--cname=alias.test,mx1.a.test",
              "--mx-host=eq.test,e1.eq.test,10", "--mx-host=eq.test,e2.eq.test,10",
              "--mx-host=eq.test,e3.eq.test,10", "--mx-host=eq.test,e4.eq.test,10",
              "--mx-host=eq.test,top.eq.test,5", big_arg, (char *)NULL);
        _exit(127);
    }
    /* Ready when it accepts on its TCP port; gone if it exited. */
    for (int i = 0; i < 100; i++) {
        int wst;
        if (waitpid(pid, &wst, WNOHANG) == pid)
            return -1;
        if (tcp_ready(g_port)) {
            g_dnsmasq = pid;
            snprintf(g_server, sizeof(g_server), "127.0.0.1:%d", g_port);
            return 0;
        }
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static int live_group_setup(void **state)
{
    (void)state;
    snprintf(g_log, sizeof(g_log), "/tmp/sluice-dnsmasq-%ld.log", (long)getpid());
    if (access("/usr/sbin/dnsmasq", X_OK) != 0) {
        g_skip_reason = "dnsmasq not installed (/usr/sbin/dnsmasq; Debian package dnsmasq-base)";
        return 0;
    }
    /* A lost race for the port makes dnsmasq exit: try a few ports. */
    for (int i = 0; i < 5; i++)
        if (start_dnsmasq_once() == 0)
            return 0;
    {
        /* Its last words (the first line may be blank). */
        FILE *f = fopen(g_log, "r");
        char line[160], last[160] = "no output";
        while (f && fgets(line, sizeof(line), f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            if (line[0] != '\0')
                memcpy(last, line, sizeof(last));
        }
        if (f)
            fclose(f);
        snprintf(g_skip_buf, sizeof(g_skip_buf), "dnsmasq did not start: %s", last);
        g_skip_reason = g_skip_buf;
    }
    return 0;
}

static int live_group_teardown(void **state)
{
    (void)state;
    if (g_dnsmasq > 0) {
        kill(g_dnsmasq, SIGTERM);
        waitpid(g_dnsmasq, NULL, 0);
        g_dnsmasq = -1;
    }
    unlink(g_log);
    return 0;
}

#define SKIP_IF_NO_DNSMASQ()                                                                       \
    do {                                                                                           \
        if (g_skip_reason) {                                                                       \
            print_message("skipped: %s\n", g_skip_reason);                                         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* One loop and one resolver per test; teardown proves that close leaks no handle. */
typedef struct fixture {
    uv_loop_t loop;
    resolver res;
    bool res_open;
    int closed;
} fixture;

static int fx_open(fixture *fx, const char *server, unsigned timeout_ms, unsigned tries)
{
    const char *servers[1] = {server};
    resolver_options o = {
        .servers = servers, .nservers = 1, .timeout_ms = timeout_ms, .tries = tries};
    int rc = resolver_init(&fx->loop, &fx->res, &o);
    fx->res_open = rc == 0;
    fx->closed = 0;
    return rc;
}

static int live_setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL || uv_loop_init(&fx->loop) != 0)
        return -1;
    *state = fx;
    if (g_skip_reason == NULL && fx_open(fx, g_server, 2000, 2) != 0)
        return -1;
    return 0;
}

static void on_closed(resolver *r)
{
    fixture *fx = r->data;
    fx->closed++;
}

static void watchdog_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
    uv_stop(t->loop);
}

/* Before each poll: stop when the flag is up (UV_RUN_ONCE would block on). */
static void until_cb(uv_prepare_t *p)
{
    if (*(const int *)p->data)
        uv_stop(p->loop);
}

/* Runs the loop until *flag is set; fails the test after 15 s rather than hang. */
static void run_until(uv_loop_t *loop, const int *flag)
{
    uv_timer_t wd;
    uv_prepare_t until;
    int expired = 0;

    uv_timer_init(loop, &wd);
    wd.data = &expired;
    uv_timer_start(&wd, watchdog_cb, 15000, 0);
    uv_prepare_init(loop, &until);
    until.data = (void *)flag;
    uv_prepare_start(&until, until_cb);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_close((uv_handle_t *)&until, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (expired)
        fail_msg("timed out waiting for the resolver");
}

static void fx_close(fixture *fx)
{
    if (!fx->res_open)
        return;
    fx->closed = 0;
    fx->res.data = fx;
    resolver_close(&fx->res, on_closed);
    run_until(&fx->loop, &fx->closed);
    assert_int_equal(fx->closed, 1);
    fx->res_open = false;
}

static int live_teardown(void **state)
{
    fixture *fx = *state;
    int rc;
    fx_close(fx);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&fx->loop); /* UV_EBUSY: a handle was left open */
    free(fx);
    return rc == 0 ? 0 : -1;
}

typedef struct waiter {
    int done;
    int status;
    int in_call; /* set while the starting function runs: a callback then is a bug */
    int called_inside;
} waiter;

static void on_done(resolver_req *req, int status)
{
    waiter *w = req->data;
    if (w->in_call)
        w->called_inside = 1;
    w->status = status;
    w->done++;
}

typedef int (*start_fn)(resolver *, resolver_req *, const char *, resolver_cb);

/* Runs one lookup to its end; returns its status, result in req. */
static int lookup(fixture *fx, resolver_req *req, start_fn fn, const char *name)
{
    waiter w = {0};
    int rc;

    memset(req, 0, sizeof(*req));
    req->data = &w;
    w.in_call = 1;
    rc = fn(&fx->res, req, name, on_done);
    w.in_call = 0;
    assert_int_equal(rc, 0);
    run_until(&fx->loop, &w.done);
    assert_int_equal(w.done, 1);
    assert_false(w.called_inside);
    req->data = NULL;
    return w.status;
}

static int addr_v4(resolver *r, resolver_req *q, const char *n, resolver_cb cb)
{
    return resolver_addr_query(r, q, n, AF_INET, cb);
}
static int addr_v6(resolver *r, resolver_req *q, const char *n, resolver_cb cb)
{
    return resolver_addr_query(r, q, n, AF_INET6, cb);
}
static int addr_any(resolver *r, resolver_req *q, const char *n, resolver_cb cb)
{
    return resolver_addr_query(r, q, n, AF_UNSPEC, cb);
}

static const char *ntop(const struct sockaddr_storage *ss, char *buf, size_t n)
{
    const void *a = ss->ss_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)ss)->sin6_addr;
    return inet_ntop(ss->ss_family, a, buf, (socklen_t)n);
}

static void test_live_mx(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    SKIP_IF_NO_DNSMASQ();

    assert_int_equal(lookup(fx, &req, resolver_mx_query, "a.test"), RESOLVER_OK);
    assert_int_equal(req.result.nmx, 2);
    assert_string_equal(req.result.mx[0].host, "mx1.a.test");
    assert_int_equal(req.result.mx[0].pref, 10);
    assert_string_equal(req.result.mx[1].host, "mx2.a.test");
    assert_int_equal(req.result.mx[1].pref, 20);
    assert_null(req.detail);
    resolver_req_cleanup(&req);
    resolver_req_cleanup(&req); /* twice is harmless */

    /* Trailing dot: the same. */
    assert_int_equal(lookup(fx, &req, resolver_mx_query, "a.test."), RESOLVER_OK);
    assert_int_equal(req.result.nmx, 2);
    resolver_req_cleanup(&req);

    assert_int_equal(lookup(fx, &req, resolver_mx_query, "nullmx.test"), RESOLVER_ENULLMX);
    assert_int_equal(req.result.nmx, 0);
    assert_int_equal(lookup(fx, &req, resolver_mx_query, "only-a.test"), RESOLVER_ENODATA);
    assert_int_equal(lookup(fx, &req, resolver_mx_query, "nope.test"), RESOLVER_ENXDOMAIN);
    assert_non_null(req.detail);
    resolver_req_cleanup(&req);
}

static void test_live_mx_random_order(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    int first[5] = {0};
    SKIP_IF_NO_DNSMASQ();

    for (int i = 0; i < 40; i++) {
        assert_int_equal(lookup(fx, &req, resolver_mx_query, "eq.test"), RESOLVER_OK);
        assert_int_equal(req.result.nmx, 5);
        assert_string_equal(req.result.mx[0].host, "top.eq.test");
        for (size_t k = 1; k < 5; k++)
            assert_int_equal(req.result.mx[k].pref, 10);
        first[req.result.mx[1].host[1] - '0']++;
        resolver_req_cleanup(&req);
    }
    /* 40 draws from four equal hosts: each one never first has odds of (3/4)^40. */
    int distinct = 0;
    for (int k = 1; k <= 4; k++)
        distinct += first[k] > 0;
    assert_true(distinct >= 2);
}

static void test_live_addrs(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    char buf[64];
    SKIP_IF_NO_DNSMASQ();

    assert_int_equal(lookup(fx, &req, addr_v4, "mx1.a.test"), RESOLVER_OK);
    assert_int_equal(req.result.naddrs, 1);
    assert_string_equal(ntop(&req.result.addrs[0], buf, sizeof(buf)), "127.0.0.2");
    resolver_req_cleanup(&req);

    assert_int_equal(lookup(fx, &req, addr_v6, "mx2.a.test"), RESOLVER_OK);
    assert_int_equal(req.result.naddrs, 1);
    assert_int_equal(req.result.addrs[0].ss_family, AF_INET6);
    assert_string_equal(ntop(&req.result.addrs[0], buf, sizeof(buf)), "::1");
    resolver_req_cleanup(&req);

    /* Both families: IPv6 first. */
    assert_int_equal(lookup(fx, &req, addr_any, "mx2.a.test"), RESOLVER_OK);
    assert_int_equal(req.result.naddrs, 2);
    assert_string_equal(ntop(&req.result.addrs[0], buf, sizeof(buf)), "::1");
    assert_string_equal(ntop(&req.result.addrs[1], buf, sizeof(buf)), "127.0.0.3");
    resolver_req_cleanup(&req);

    /* Only IPv4: AF_UNSPEC still succeeds, AAAA alone is NODATA. */
    assert_int_equal(lookup(fx, &req, addr_any, "only-a.test"), RESOLVER_OK);
    assert_int_equal(req.result.naddrs, 1);
    assert_string_equal(ntop(&req.result.addrs[0], buf, sizeof(buf)), "127.0.0.9");
    assert_null(req.detail);
    resolver_req_cleanup(&req);
    assert_int_equal(lookup(fx, &req, addr_v6, "only-a.test"), RESOLVER_ENODATA);

    /* A CNAME is followed. */
    assert_int_equal(lookup(fx, &req, addr_v4, "alias.test"), RESOLVER_OK);
    assert_int_equal(req.result.naddrs, 1);
    assert_string_equal(ntop(&req.result.addrs[0], buf, sizeof(buf)), "127.0.0.2");
    resolver_req_cleanup(&req);

    assert_int_equal(lookup(fx, &req, addr_v4, "nope.test"), RESOLVER_ENXDOMAIN);
    assert_int_equal(lookup(fx, &req, addr_any, "nope.test"), RESOLVER_ENXDOMAIN);
    assert_int_equal(lookup(fx, &req, addr_any, "a.test"), RESOLVER_ENODATA);
}

static void test_live_txt(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    SKIP_IF_NO_DNSMASQ();

    assert_int_equal(lookup(fx, &req, resolver_txt_query, "a.test"), RESOLVER_OK);
    assert_int_equal(req.result.ntxt, 1);
    assert_string_equal(req.result.txt[0].data, "v=spf1 ip4:127.0.0.0/8 -all");
    resolver_req_cleanup(&req);

    /* One record of three strings: joined without separators. */
    assert_int_equal(lookup(fx, &req, resolver_txt_query, "multi.test"), RESOLVER_OK);
    assert_int_equal(req.result.ntxt, 1);
    assert_string_equal(req.result.txt[0].data, "v=spf1 ip4:10.0.0.0/8 -all");
    resolver_req_cleanup(&req);

    assert_int_equal(lookup(fx, &req, resolver_txt_query, "two.test"), RESOLVER_OK);
    assert_int_equal(req.result.ntxt, 2);
    assert_true((strcmp(req.result.txt[0].data, "first") == 0 &&
                 strcmp(req.result.txt[1].data, "second") == 0) ||
                (strcmp(req.result.txt[0].data, "second") == 0 &&
                 strcmp(req.result.txt[1].data, "first") == 0));
    resolver_req_cleanup(&req);

    /* Too big for UDP: c-ares retries over TCP, through the same poll handles. */
    assert_int_equal(lookup(fx, &req, resolver_txt_query, "big.test"), RESOLVER_OK);
    assert_int_equal(req.result.ntxt, 1);
    assert_int_equal(req.result.txt[0].len, 750);
    assert_memory_equal(req.result.txt[0].data, BIG_A BIG_B BIG_C, 750);
    resolver_req_cleanup(&req);

    assert_int_equal(lookup(fx, &req, resolver_txt_query, "only-a.test"), RESOLVER_ENODATA);
    assert_int_equal(lookup(fx, &req, resolver_txt_query, "nope.test"), RESOLVER_ENXDOMAIN);
}

static int ptr_127_0_0_2(resolver *r, resolver_req *q, const char *n, resolver_cb cb)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    (void)n;
    inet_pton(AF_INET, "127.0.0.2", &sin.sin_addr);
    return resolver_ptr_query(r, q, (struct sockaddr *)&sin, cb);
}

static void test_live_ptr(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    SKIP_IF_NO_DNSMASQ();

    assert_int_equal(lookup(fx, &req, ptr_127_0_0_2, NULL), RESOLVER_OK);
    assert_string_equal(req.result.name, "mx1.a.test");
    resolver_req_cleanup(&req);
}

/* The server answers REFUSED for names outside its zones: retry later, not bounce. */
static void test_live_refused_is_temporary(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    SKIP_IF_NO_DNSMASQ();

    assert_int_equal(lookup(fx, &req, resolver_mx_query, "example.invalid"), RESOLVER_ETEMP);
    assert_non_null(req.detail);
}

/* A UDP socket that takes queries and never answers. */
static int silent_server(int *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sin);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(s >= 0);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    *port = ntohs(sin.sin_port);
    return s;
}

static void test_timeout_is_temporary(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    char server[32];
    int port, s;
    SKIP_IF_NO_DNSMASQ();
    s = silent_server(&port);

    fx_close(fx);
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    assert_int_equal(fx_open(fx, server, 200, 2), 0);
    assert_int_equal(lookup(fx, &req, resolver_mx_query, "a.test"), RESOLVER_ETEMP);
    assert_string_equal(req.detail, ares_strerror(ARES_ETIMEOUT));
    assert_int_equal(lookup(fx, &req, addr_any, "a.test"), RESOLVER_ETEMP);
    close(s);
}

static void test_nobody_listening_is_temporary(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    char server[32];
    int port = free_port();
    SKIP_IF_NO_DNSMASQ();

    assert_true(port > 0);
    fx_close(fx);
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    assert_int_equal(fx_open(fx, server, 300, 1), 0);
    assert_int_equal(lookup(fx, &req, resolver_mx_query, "a.test"), RESOLVER_ETEMP);
    assert_int_equal(lookup(fx, &req, resolver_txt_query, "a.test"), RESOLVER_ETEMP);
}

/* The second server answers when the first is silent. */
static void test_second_server(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    char server[32];
    const char *servers[2];
    int port, s;
    resolver_options o = {.servers = servers, .nservers = 2, .timeout_ms = 200, .tries = 1};
    SKIP_IF_NO_DNSMASQ();
    s = silent_server(&port);

    fx_close(fx);
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    servers[0] = server;
    servers[1] = g_server;
    assert_int_equal(resolver_init(&fx->loop, &fx->res, &o), 0);
    fx->res_open = true;
    fx->closed = 0;
    assert_int_equal(lookup(fx, &req, resolver_mx_query, "a.test"), RESOLVER_OK);
    assert_int_equal(req.result.nmx, 2);
    resolver_req_cleanup(&req);
    close(s);
}

static void test_bad_arguments(void **state)
{
    fixture *fx = *state;
    resolver_req req;
    resolver r2;
    const char *bad[1] = {"dns.example.test:53"};
    resolver_options o = {.servers = bad, .nservers = 1};
    SKIP_IF_NO_DNSMASQ();

    memset(&req, 0, sizeof(req));
    assert_int_equal(resolver_mx_query(&fx->res, &req, "a..test", on_done), -EINVAL);
    assert_int_equal(resolver_mx_query(&fx->res, &req, "", on_done), -EINVAL);
    assert_int_equal(resolver_mx_query(&fx->res, &req, NULL, on_done), -EINVAL);
    assert_int_equal(resolver_mx_query(&fx->res, &req, "a.test", NULL), -EINVAL);
    assert_int_equal(resolver_addr_query(&fx->res, &req, "a.test", AF_UNIX, on_done), -EINVAL);
    assert_int_equal(resolver_ptr_query(&fx->res, &req, NULL, on_done), -EINVAL);
    assert_int_equal(resolver_cancel(&req), -EINVAL);
    /* A bad server string: nothing to close afterwards. */
    assert_int_equal(resolver_init(&fx->loop, &r2, &o), -EINVAL);
}

static void test_cancel(void **state)
{
    fixture *fx = *state;
    resolver_req req, req2;
    waiter w = {0}, w2 = {0};
    char server[32];
    int port, s;
    SKIP_IF_NO_DNSMASQ();
    s = silent_server(&port);

    fx_close(fx);
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    assert_int_equal(fx_open(fx, server, 5000, 2), 0);
    memset(&req, 0, sizeof(req));
    memset(&req2, 0, sizeof(req2));
    req.data = &w;
    req2.data = &w2;
    assert_int_equal(resolver_mx_query(&fx->res, &req, "a.test", on_done), 0);
    assert_int_equal(resolver_addr_query(&fx->res, &req2, "a.test", AF_UNSPEC, on_done), 0);
    /* Active: a second start on the same request is refused. */
    assert_int_equal(resolver_txt_query(&fx->res, &req, "a.test", on_done), -EINVAL);
    w.in_call = 1;
    assert_int_equal(resolver_cancel(&req), 0);
    w.in_call = 0;
    assert_int_equal(resolver_cancel(&req), -EBUSY);
    assert_int_equal(resolver_cancel(&req2), 0);
    run_until(&fx->loop, &w2.done);
    assert_int_equal(w.done, 1);
    assert_int_equal(w.status, RESOLVER_ECANCELED);
    assert_false(w.called_inside);
    assert_int_equal(w2.status, RESOLVER_ECANCELED);
    assert_int_equal(resolver_cancel(&req), -EINVAL);
    /* The detached c-ares queries are still out; close must free them. */
    close(s);
}

/* Closing with lookups in flight: each ends with ECANCELED, then the close callback. */
static void test_close_with_pending(void **state)
{
    fixture *fx = *state;
    enum { N = 5 };
    resolver_req req[N];
    waiter w[N];
    char server[32];
    int port, s;
    SKIP_IF_NO_DNSMASQ();
    s = silent_server(&port);

    fx_close(fx);
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    assert_int_equal(fx_open(fx, server, 5000, 2), 0);
    memset(w, 0, sizeof(w));
    for (int i = 0; i < N; i++) {
        memset(&req[i], 0, sizeof(req[i]));
        req[i].data = &w[i];
        assert_int_equal(i % 2
                             ? resolver_addr_query(&fx->res, &req[i], "a.test", AF_UNSPEC, on_done)
                             : resolver_mx_query(&fx->res, &req[i], "a.test", on_done),
                         0);
    }
    /* Let the queries go out, so sockets and timers are live. */
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    fx->res.data = fx;
    resolver_close(&fx->res, on_closed);
    resolver_close(&fx->res, on_closed); /* twice is a no-op */
    assert_int_equal(resolver_mx_query(&fx->res, &req[0], "a.test", on_done), RESOLVER_ECANCELED);
    run_until(&fx->loop, &fx->closed);
    fx->res_open = false;
    assert_int_equal(fx->closed, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].done, 1);
        assert_int_equal(w[i].status, RESOLVER_ECANCELED);
    }
    close(s);
}

/* A callback that closes the resolver, and one that starts the next lookup. */
static fixture *g_fx;
static int g_chain_status;
static int g_chain_done;

static void chain_second(resolver_req *req, int status)
{
    g_chain_status = status;
    g_chain_done = 1;
    resolver_req_cleanup(req);
    g_fx->res.data = g_fx;
    resolver_close(&g_fx->res, on_closed);
}

static void chain_first(resolver_req *req, int status)
{
    resolver_req *next = req->data;

    assert_int_equal(status, RESOLVER_OK);
    assert_int_equal(
        resolver_addr_query(req->resolver, next, req->result.mx[0].host, AF_INET, chain_second), 0);
    resolver_req_cleanup(req);
}

static void test_callbacks_chain_and_close(void **state)
{
    fixture *fx = *state;
    resolver_req first, second;
    SKIP_IF_NO_DNSMASQ();

    g_fx = fx;
    memset(&first, 0, sizeof(first));
    memset(&second, 0, sizeof(second));
    first.data = &second;
    assert_int_equal(resolver_mx_query(&fx->res, &first, "a.test", chain_first), 0);
    run_until(&fx->loop, &fx->closed);
    fx->res_open = false;
    assert_int_equal(g_chain_done, 1);
    assert_int_equal(g_chain_status, RESOLVER_OK);
    /* Reused request after close: refused. */
    assert_int_equal(resolver_mx_query(&fx->res, &first, "a.test", chain_first),
                     RESOLVER_ECANCELED);
}

/* Many lookups at once on one channel. */
static void test_many_parallel(void **state)
{
    fixture *fx = *state;
    enum { N = 200 };
    resolver_req *req = calloc(N, sizeof(*req));
    waiter *w = calloc(N, sizeof(*w));
    int all = 0, done = 0;
    SKIP_IF_NO_DNSMASQ();

    assert_non_null(req);
    assert_non_null(w);
    for (int i = 0; i < N; i++) {
        req[i].data = &w[i];
        assert_int_equal(
            i % 3 == 0   ? resolver_mx_query(&fx->res, &req[i], "a.test", on_done)
            : i % 3 == 1 ? resolver_addr_query(&fx->res, &req[i], "mx2.a.test", AF_UNSPEC, on_done)
                         : resolver_txt_query(&fx->res, &req[i], "nope.test", on_done),
            0);
    }
    while (!all) {
        run_until(&fx->loop, &w[done].done);
        while (done < N && w[done].done)
            done++;
        all = done == N;
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].status, i % 3 == 2 ? RESOLVER_ENXDOMAIN : RESOLVER_OK);
        resolver_req_cleanup(&req[i]);
    }
    free(req);
    free(w);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_server_parse), cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_reverse_name), cmocka_unit_test(test_status_classes),
        cmocka_unit_test(test_parse_mx),     cmocka_unit_test(test_mx_shuffle),
        cmocka_unit_test(test_parse_txt),    cmocka_unit_test(test_parse_addrs),
        cmocka_unit_test(test_parse_ptr),
    };
#define LIVE(t) cmocka_unit_test_setup_teardown(t, live_setup, live_teardown)
    const struct CMUnitTest live[] = {
        LIVE(test_live_mx),
        LIVE(test_live_mx_random_order),
        LIVE(test_live_addrs),
        LIVE(test_live_txt),
        LIVE(test_live_ptr),
        LIVE(test_live_refused_is_temporary),
        LIVE(test_timeout_is_temporary),
        LIVE(test_nobody_listening_is_temporary),
        LIVE(test_second_server),
        LIVE(test_bad_arguments),
        LIVE(test_cancel),
        LIVE(test_close_with_pending),
        LIVE(test_callbacks_chain_and_close),
        LIVE(test_many_parallel),
    };
    int failed = cmocka_run_group_tests_name("resolver_pure", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("resolver_dnsmasq", live, live_group_setup,
                                          live_group_teardown);
    return failed ? 1 : 0;
}
