/*
 * test_spf.c - SPF checks against a real DNS server: dnsmasq on a loopback
 * port serving the .test records below, a real uv loop, real worker
 * threads. Every checker is given its DNS server explicitly, so nothing is
 * ever asked of /etc/resolv.conf's servers.
 *
 * Skipped (with the reason printed) only when dnsmasq cannot be started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/spf_check.h"

#define DNSMASQ "/usr/sbin/dnsmasq"
#define RECEIVER "mail.example.test"

static pid_t dns_pid = -1;
static int dns_port;
static char dns_server[64];
static const char *dns_why = "not started";

/* The zone: --txt-record NAME,TEXT / --host-record NAME,ADDR / --mx-host. */
static const char *const zone[] = {
    "--txt-record=pass.test,v=spf1 ip4:127.0.0.1 -all",
    "--txt-record=fail.test,v=spf1 ip4:192.0.2.1 -all",
    "--txt-record=softfail.test,v=spf1 ~all",
    "--txt-record=neutral.test,v=spf1 ?all",
    "--txt-record=perm.test,v=spf1 foo:bar -all",
    "--txt-record=bare.test,v=spf1",
    "--txt-record=other.test,google-site-verification=abc",
    "--txt-record=multi.test,v=spf1 -all",
    "--txt-record=multi.test,v=spf1 +all",
    "--txt-record=include.test,v=spf1 include:pass.test -all",
    "--txt-record=incnone.test,v=spf1 include:none.test -all",
    "--txt-record=redirect.test,v=spf1 redirect=fail.test",
    "--txt-record=a.test,v=spf1 a -all",
    "--host-record=a.test,127.0.0.3",
    "--txt-record=mx.test,v=spf1 mx -all",
    "--mx-host=mx.test,mx1.test,10",
    "--host-record=mx1.test,127.0.0.2",
    "--txt-record=v6.test,v=spf1 a -all",
    "--host-record=v6.test,::1",
    "--txt-record=exp.test,v=spf1 -all exp=explain.exp.test",
    "--txt-record=explain.exp.test,Mail from %{o} is refused: see https://exp.test/%{i}",
    "--txt-record=helofail.test,v=spf1 -all",
    "--txt-record=split.test,v=spf1 ip4:,127.0.0.1 -all", /* two strings */
    /* 2 includes + 12 a terms: each record is within libspf2's own limit */
    "--txt-record=deep.test,v=spf1 include:l1.test include:l2.test -all",
    "--txt-record=l1.test,v=spf1 a:h.test a:h.test a:h.test a:h.test a:h.test a:h.test ?all",
    "--txt-record=l2.test,v=spf1 a:h.test a:h.test a:h.test a:h.test a:h.test a:h.test ?all",
    "--host-record=h.test,192.0.2.77",
    "--txt-record=void.test,v=spf1 a:nx1.test a:nx2.test a:nx3.test -all",
    "--txt-record=void2.test,v=spf1 a:nx1.test a:nx2.test -all",
    "--txt-record=ptr.test,v=spf1 ptr:a.test -all",
    "--txt-record=exists.test,v=spf1 exists:%{i}.ex.test -all",
    "--host-record=127.0.0.1.ex.test,192.0.2.200",
};

/* ---- dnsmasq ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* One TXT query for pass.test; true when any reply arrives within ms. */
static bool dns_answers(int port, int ms)
{
    static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0,   0,   0,
                                      0,    0,    0,    4,    'p', 'a', 's', 's', 4,
                                      't',  'e',  's',  't',  0,   0,   16,  0,   1};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sa, sizeof(sa)) == (ssize_t)sizeof(q)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        unsigned char buf[512];
        ok = poll(&p, 1, ms) == 1 && recv(fd, buf, sizeof(buf), 0) > 12;
    }
    close(fd);
    return ok;
}

static pid_t dnsmasq_start(int port)
{
    char portarg[32];
    snprintf(portarg, sizeof(portarg), "--port=%d", port);
    const char *argv[64];
    int n = 0;
    argv[n++] = DNSMASQ;
    argv[n++] = "--no-resolv";
    argv[n++] = "--no-hosts";
    argv[n++] = "--keep-in-foreground";
    argv[n++] = portarg;
    argv[n++] = "--listen-address=127.0.0.1";
    argv[n++] = "--bind-interfaces";
    argv[n++] = "--conf-file=/dev/null";
    argv[n++] = "--local=/test/";
    argv[n++] = "--pid-file=";
    for (size_t i = 0; i < sizeof(zone) / sizeof(zone[0]); i++)
        argv[n++] = zone[i];
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(DNSMASQ, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int group_setup(void **state)
{
    if (access(DNSMASQ, X_OK) != 0) {
        dns_why = DNSMASQ " is not installed (apt-get install dnsmasq-base)";
        return 0;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        dns_port = free_port();
        if (dns_port <= 0)
            continue;
        pid_t pid = dnsmasq_start(dns_port);
        if (pid < 0)
            break;
        for (int i = 0; i < 100; i++) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1; /* died: port taken, bad option, ... */
                break;
            }
            if (dns_answers(dns_port, 50)) {
                dns_pid = pid;
                snprintf(dns_server, sizeof(dns_server), "127.0.0.1:%d", dns_port);
                return 0;
            }
        }
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    dns_why = "dnsmasq did not start or did not answer on a loopback port";
    return 0;
}

static int group_teardown(void **state)
{
    if (dns_pid > 0) {
        kill(dns_pid, SIGTERM);
        waitpid(dns_pid, NULL, 0);
        dns_pid = -1;
    }
    return 0;
}

#define NEED_DNS()                                                                                 \
    do {                                                                                           \
        if (dns_pid <= 0) {                                                                        \
            print_message("skipped: %s\n", dns_why);                                               \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- a loop and a checker ---- */

struct fixture {
    uv_loop_t loop;
    spf_checker *c;
};

static void fixture_open(struct fixture *f, const char *server)
{
    sluice_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.hostname = RECEIVER;
    cfg.dns_servers[0] = (char *)server;
    cfg.ndns_servers = 1;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(spf_checker_new(&f->loop, &cfg, &f->c), 0);
}

static void fixture_close(struct fixture *f)
{
    spf_checker_free(f->c);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the checker's handle closes */
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

struct done {
    int calls;
    int status;
};

static void on_done(spf_request *req, int status)
{
    struct done *d = req->data;
    d->calls++;
    d->status = status;
}

static void run(struct fixture *f, spf_request *req, const char *ip, const char *helo,
                const char *sender)
{
    struct done d = {0};
    memset(req, 0, sizeof(*req));
    assert_int_equal(spf_check_start(f->c, req, ip, helo, sender, on_done, &d), 0);
    assert_int_equal(d.calls, 0); /* never from inside spf_check_start */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, 0);
}

static enum spf_result check(const char *ip, const char *helo, const char *sender, spf_request *req)
{
    struct fixture f;
    fixture_open(&f, dns_server);
    run(&f, req, ip, helo, sender);
    fixture_close(&f);
    return req->result;
}

/* ---- results ---- */

static void test_pass_header(void **state)
{
    NEED_DNS();
    spf_request req;
    /* a loopback client gets no free pass from libspf2: pass comes from ip4: */
    assert_int_equal(check("127.0.0.1", "pass.test", "x@pass.test", &req), SPF_RES_PASS);
    assert_int_equal(req.identity, SPF_ID_MAILFROM);
    assert_string_equal(req.domain, "pass.test");
    assert_string_equal(req.explanation, "");
    assert_string_equal(req.header,
                        "pass (" RECEIVER ": domain of x@pass.test designates 127.0.0.1 as "
                        "permitted sender)\r\n"
                        "\tclient-ip=127.0.0.1; envelope-from=\"x@pass.test\"; helo=pass.test;\r\n"
                        "\treceiver=" RECEIVER "; identity=mailfrom;");
}

static void test_fail_explanation(void **state)
{
    NEED_DNS();
    spf_request req;
    /* loopback, and still fail: the record does not list it */
    assert_int_equal(check("127.0.0.1", "client.example", "x@fail.test", &req), SPF_RES_FAIL);
    assert_int_equal(req.identity, SPF_ID_MAILFROM);
    assert_string_equal(req.explanation,
                        "fail.test does not designate 127.0.0.1 as permitted sender");
    assert_string_equal(
        req.header, "fail (" RECEIVER ": domain of x@fail.test does not designate 127.0.0.1 "
                    "as permitted sender)\r\n"
                    "\tclient-ip=127.0.0.1; envelope-from=\"x@fail.test\"; helo=client.example;\r\n"
                    "\treceiver=" RECEIVER "; identity=mailfrom;");
    char reply[512];
    assert_int_equal(spf_reply(&req, SPF_ACT_REJECT_550, reply, sizeof(reply)), 0);
    assert_string_equal(
        reply, "550 5.7.23 SPF: fail.test does not designate 127.0.0.1 as permitted sender");
}

static void test_fail_domain_explanation(void **state)
{
    NEED_DNS();
    spf_request req;
    assert_int_equal(check("192.0.2.9", "", "bob@exp.test", &req), SPF_RES_FAIL);
    /* exp= is looked up and its macros expanded (RFC 7208 6.2) */
    assert_string_equal(req.explanation,
                        "Mail from exp.test is refused: see https://exp.test/192.0.2.9");
}

static void test_softfail_neutral_none(void **state)
{
    NEED_DNS();
    spf_request req;
    assert_int_equal(check("192.0.2.9", "", "a@softfail.test", &req), SPF_RES_SOFTFAIL);
    assert_non_null(strstr(req.header, "softfail (" RECEIVER ": domain of transitioning "
                                       "a@softfail.test does not designate 192.0.2.9"));
    assert_int_equal(check("192.0.2.9", "", "a@neutral.test", &req), SPF_RES_NEUTRAL);
    assert_non_null(strstr(req.header, "neutral (" RECEIVER ": 192.0.2.9 is neither permitted "
                                       "nor denied by domain of a@neutral.test)"));
    /* no TXT at all (NXDOMAIN), and TXT records none of which is SPF */
    assert_int_equal(check("192.0.2.9", "", "a@none.test", &req), SPF_RES_NONE);
    assert_int_equal(req.identity, SPF_ID_MAILFROM);
    assert_non_null(strstr(req.header, "none (" RECEIVER ": domain of a@none.test does not "
                                       "designate permitted sender hosts)"));
    assert_int_equal(check("192.0.2.9", "", "a@other.test", &req), SPF_RES_NONE);
    /* "v=spf1" alone is a record that ends neutral (libspf2 alone says none) */
    assert_int_equal(check("192.0.2.9", "", "a@bare.test", &req), SPF_RES_NEUTRAL);
}

static void test_permerror(void **state)
{
    NEED_DNS();
    spf_request req;
    assert_int_equal(check("127.0.0.1", "", "a@perm.test", &req), SPF_RES_PERMERROR);
    assert_non_null(strstr(req.header, "permerror (" RECEIVER ": permanent error in the policy "
                                       "of a@perm.test: bad SPF record for perm.test"));
    assert_non_null(strstr(req.header, "problem=\"bad SPF record for perm.test"));
    /* two SPF records (RFC 7208 4.5) */
    assert_int_equal(check("127.0.0.1", "", "a@multi.test", &req), SPF_RES_PERMERROR);
    assert_non_null(strstr(req.header, "several SPF records for multi.test"));
    /* include: of a domain without a record (RFC 7208 5.2) */
    assert_int_equal(check("127.0.0.1", "", "a@incnone.test", &req), SPF_RES_PERMERROR);
}

static void test_mechanisms(void **state)
{
    NEED_DNS();
    spf_request req;
    assert_int_equal(check("127.0.0.1", "", "a@include.test", &req), SPF_RES_PASS);
    assert_int_equal(check("192.0.2.9", "", "a@include.test", &req), SPF_RES_FAIL);
    assert_int_equal(check("127.0.0.1", "", "a@redirect.test", &req), SPF_RES_FAIL);
    assert_int_equal(check("192.0.2.1", "", "a@redirect.test", &req), SPF_RES_PASS);
    assert_int_equal(check("127.0.0.3", "", "a@a.test", &req), SPF_RES_PASS);
    assert_int_equal(check("127.0.0.1", "", "a@a.test", &req), SPF_RES_FAIL);
    assert_int_equal(check("127.0.0.2", "", "a@mx.test", &req), SPF_RES_PASS);
    assert_int_equal(check("127.0.0.1", "", "a@mx.test", &req), SPF_RES_FAIL);
    assert_int_equal(check("::1", "", "a@v6.test", &req), SPF_RES_PASS);
    assert_non_null(strstr(req.header, "client-ip=\"::1\";"));
    assert_int_equal(check("::2", "", "a@v6.test", &req), SPF_RES_FAIL);
    /* ptr: 127.0.0.3 has the PTR a.test (from --host-record), whose A is 127.0.0.3 */
    assert_int_equal(check("127.0.0.3", "", "a@ptr.test", &req), SPF_RES_PASS);
    assert_int_equal(check("127.0.0.2", "", "a@ptr.test", &req), SPF_RES_FAIL);
    /* exists: with a macro (RFC 7208 5.7, 7) */
    assert_int_equal(check("127.0.0.1", "", "a@exists.test", &req), SPF_RES_PASS);
    assert_int_equal(check("127.0.0.5", "", "a@exists.test", &req), SPF_RES_FAIL);
    /* a record split into several strings is joined without spaces (RFC 7208 3.3) */
    assert_int_equal(check("127.0.0.1", "", "a@split.test", &req), SPF_RES_PASS);
    /* an IPv4 client on a dual-stack socket is checked as IPv4 */
    assert_int_equal(check("::ffff:127.0.0.1", "", "a@pass.test", &req), SPF_RES_PASS);
    assert_non_null(strstr(req.header, "client-ip=127.0.0.1;"));
}

static void test_limits(void **state)
{
    NEED_DNS();
    spf_request req;
    /* 14 DNS terms spread over two includes: libspf2 alone counts per record */
    assert_int_equal(check("127.0.0.1", "", "a@deep.test", &req), SPF_RES_PERMERROR);
    assert_non_null(strstr(req.header, "more than 10 DNS lookups"));
    /* three void lookups (RFC 7208 4.6.4), two are fine */
    assert_int_equal(check("127.0.0.1", "", "a@void.test", &req), SPF_RES_PERMERROR);
    assert_non_null(strstr(req.header, "more than 2 void DNS lookups"));
    assert_int_equal(check("127.0.0.1", "", "a@void2.test", &req), SPF_RES_FAIL);
}

/* ---- identities (RFC 7208 2.3, 2.4) ---- */

static void test_helo_identity(void **state)
{
    NEED_DNS();
    spf_request req;
    /* a failing HELO decides even though MAIL FROM would pass */
    assert_int_equal(check("127.0.0.1", "helofail.test", "x@pass.test", &req), SPF_RES_FAIL);
    assert_int_equal(req.identity, SPF_ID_HELO);
    assert_string_equal(req.domain, "helofail.test");
    assert_non_null(strstr(req.header, "identity=helo;"));
    assert_non_null(strstr(req.header, "domain of helofail.test does not designate"));
    /* a passing HELO does not: MAIL FROM decides */
    assert_int_equal(check("127.0.0.1", "pass.test", "x@fail.test", &req), SPF_RES_FAIL);
    assert_int_equal(req.identity, SPF_ID_MAILFROM);
    /* null sender: postmaster@HELO, which is the HELO check */
    assert_int_equal(check("127.0.0.1", "pass.test", "", &req), SPF_RES_PASS);
    assert_int_equal(req.identity, SPF_ID_HELO);
    assert_null(strstr(req.header, "envelope-from"));
    assert_non_null(strstr(req.header, "identity=helo;"));
    /* null sender and an address literal: nothing to check */
    assert_int_equal(check("127.0.0.1", "[127.0.0.1]", "", &req), SPF_RES_NONE);
    assert_int_equal(req.identity, SPF_ID_NONE);
    assert_non_null(strstr(req.header, "helo=\"[127.0.0.1]\";"));
    assert_null(strstr(req.header, "identity="));
    /* a HELO that is no domain is skipped; MAIL FROM still decides */
    assert_int_equal(check("127.0.0.1", "localhost", "x@pass.test", &req), SPF_RES_PASS);
    assert_int_equal(req.identity, SPF_ID_MAILFROM);
    /* a sender domain that is an address literal has no policy (RFC 7208 4.3) */
    assert_int_equal(check("127.0.0.1", "", "x@[127.0.0.1]", &req), SPF_RES_NONE);
}

static void test_header_quoting(void **state)
{
    NEED_DNS();
    spf_request req;
    assert_int_equal(check("127.0.0.1", "", "\"a (b)\\\"c\"@pass.test", &req), SPF_RES_PASS);
    /* comments escape parentheses; quoted-strings escape quotes and backslashes */
    assert_non_null(strstr(req.header, "domain of \"a \\(b\\)\\\\\"c\"@pass.test designates"));
    assert_non_null(strstr(req.header, "envelope-from=\"\\\"a (b)\\\\\\\"c\\\"@pass.test\";"));
    /* every physical line is short enough, every fold is CRLF TAB */
    for (const char *p = req.header; (p = strstr(p, "\r\n")); p += 2)
        assert_int_equal(p[2], '\t');
}

/* ---- DNS failures, cancellation, concurrency ---- */

/* A UDP port that takes queries and never answers. */
static int silent_socket(char *server, size_t size)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(server, size, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

static void test_temperror(void **state)
{
    char server[64];
    int fd = silent_socket(server, sizeof(server));
    struct fixture f;
    fixture_open(&f, server);
    spf_checker_set_timeouts(f.c, 200, 1000);
    spf_request req;
    run(&f, &req, "192.0.2.9", "", "x@pass.test");
    assert_int_equal(req.result, SPF_RES_TEMPERROR);
    assert_non_null(strstr(req.header, "temperror (" RECEIVER ": temporary error checking "
                                       "domain of x@pass.test: DNS timeout for pass.test)"));
    assert_int_equal(spf_policy(SPF_REJECT, req.result), SPF_ACT_TEMPFAIL_451);
    char reply[512];
    assert_int_equal(spf_reply(&req, SPF_ACT_TEMPFAIL_451, reply, sizeof(reply)), 0);
    assert_string_equal(reply, "451 4.7.24 SPF: temporary error checking pass.test, try again "
                               "later");
    fixture_close(&f);

    /* the evaluation's time budget runs out before the query's own timeout */
    fixture_open(&f, server);
    spf_checker_set_timeouts(f.c, 5000, 300);
    run(&f, &req, "192.0.2.9", "pass.test", "x@pass.test");
    assert_int_equal(req.result, SPF_RES_TEMPERROR);
    assert_int_equal(req.identity, SPF_ID_MAILFROM);
    assert_non_null(strstr(req.header, "problem=\"time limit for the SPF evaluation exceeded\";"));
    fixture_close(&f);
    close(fd);
}

static void cancel_later(uv_timer_t *t)
{
    assert_int_equal(spf_check_cancel(t->data), 0);
    assert_int_equal(spf_check_cancel(t->data), 0); /* still active until the callback */
}

static void test_cancel(void **state)
{
    char server[64];
    int fd = silent_socket(server, sizeof(server));
    struct fixture f;
    fixture_open(&f, server);
    spf_request req;
    memset(&req, 0, sizeof(req));
    struct done d = {0};

    /* running: waiting on a 5 s DNS timeout, interrupted */
    assert_int_equal(spf_check_start(f.c, &req, "192.0.2.9", "", "x@pass.test", on_done, &d), 0);
    assert_int_equal(spf_check_start(f.c, &req, "192.0.2.9", "", "x@pass.test", on_done, &d),
                     -EINVAL); /* already active */
    uv_timer_t t;
    uv_timer_init(&f.loop, &t);
    t.data = &req;
    uv_timer_start(&t, cancel_later, 50, 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, UV_ECANCELED);
    assert_int_equal(req.result, SPF_RES_NONE);
    assert_string_equal(req.header, "");
    assert_int_equal(spf_check_cancel(&req), -EINVAL); /* finished */

    /* many at once, more than there are workers: queued ones are canceled too */
    enum { N = 40 };
    spf_request *many = calloc(N, sizeof(*many));
    struct done md[N];
    memset(md, 0, sizeof(md));
    for (int i = 0; i < N; i++)
        assert_int_equal(
            spf_check_start(f.c, &many[i], "192.0.2.9", "", "x@pass.test", on_done, &md[i]), 0);
    for (int i = N - 1; i >= 0; i--)
        assert_int_equal(spf_check_cancel(&many[i]), 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(md[i].calls, 1);
        assert_int_equal(md[i].status, UV_ECANCELED);
    }
    free(many);
    uv_close((uv_handle_t *)&t, NULL);
    fixture_close(&f);
    close(fd);
}

static void test_concurrent(void **state)
{
    NEED_DNS();
    struct fixture f;
    fixture_open(&f, dns_server);
    enum { N = 64 };
    spf_request *reqs = calloc(N, sizeof(*reqs));
    struct done d[N];
    memset(d, 0, sizeof(d));
    for (int i = 0; i < N; i++) {
        const char *sender = i % 2 ? "x@pass.test" : "x@mx.test";
        assert_int_equal(spf_check_start(f.c, &reqs[i], "127.0.0.1", "", sender, on_done, &d[i]),
                         0);
    }
    uv_run(&f.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].status, 0);
        assert_int_equal(reqs[i].result, i % 2 ? SPF_RES_PASS : SPF_RES_FAIL);
    }
    /* a request is reusable after its callback */
    run(&f, &reqs[0], "127.0.0.1", "", "x@pass.test");
    assert_int_equal(reqs[0].result, SPF_RES_PASS);
    free(reqs);
    fixture_close(&f);
}

static void test_bad_input(void **state)
{
    struct fixture f;
    fixture_open(&f, "127.0.0.1:9"); /* never queried: every start below fails */
    spf_request req;
    memset(&req, 0, sizeof(req));
    struct done d = {0};
    assert_int_equal(spf_check_start(f.c, &req, "not-an-ip", "", "", on_done, &d), -EINVAL);
    assert_int_equal(spf_check_start(f.c, &req, "1.2.3.4.5", "", "", on_done, &d), -EINVAL);
    fixture_close(&f);

    sluice_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.hostname = RECEIVER;
    cfg.dns_servers[0] = "dns.example:53"; /* a name, not an address */
    cfg.ndns_servers = 1;
    uv_loop_t loop;
    spf_checker *c = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(spf_checker_new(&loop, &cfg, &c), -EINVAL);
    assert_null(c);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- pure parts ---- */

static void test_policy(void **state)
{
    static const struct {
        enum spf_result r;
        enum spf_action off, tag, reject;
    } t[] = {
        {SPF_RES_PASS, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_ACCEPT_TAG},
        {SPF_RES_FAIL, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_REJECT_550},
        {SPF_RES_SOFTFAIL, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_ACCEPT_TAG},
        {SPF_RES_NEUTRAL, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_ACCEPT_TAG},
        {SPF_RES_NONE, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_ACCEPT_TAG},
        {SPF_RES_TEMPERROR, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_TEMPFAIL_451},
        {SPF_RES_PERMERROR, SPF_ACT_ACCEPT, SPF_ACT_ACCEPT_TAG, SPF_ACT_ACCEPT_TAG},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_int_equal(spf_policy(SPF_OFF, t[i].r), t[i].off);
        assert_int_equal(spf_policy(SPF_TAG, t[i].r), t[i].tag);
        assert_int_equal(spf_policy(SPF_REJECT, t[i].r), t[i].reject);
    }
    assert_string_equal(spf_result_name(SPF_RES_NONE), "none");
    assert_string_equal(spf_result_name(SPF_RES_NEUTRAL), "neutral");
    assert_string_equal(spf_result_name(SPF_RES_PASS), "pass");
    assert_string_equal(spf_result_name(SPF_RES_FAIL), "fail");
    assert_string_equal(spf_result_name(SPF_RES_SOFTFAIL), "softfail");
    assert_string_equal(spf_result_name(SPF_RES_TEMPERROR), "temperror");
    assert_string_equal(spf_result_name(SPF_RES_PERMERROR), "permerror");

    spf_request req;
    memset(&req, 0, sizeof(req));
    char buf[64];
    assert_int_equal(spf_reply(&req, SPF_ACT_ACCEPT, buf, sizeof(buf)), -EINVAL);
    snprintf(req.explanation, sizeof(req.explanation), "%s",
             "a.test does not designate 192.0.2.1 as permitted sender");
    assert_int_equal(spf_reply(&req, SPF_ACT_REJECT_550, buf, 20), -ENOSPC);
}

static void test_domain_ok(void **state)
{
    assert_true(spf_domain_ok("a.test"));
    assert_true(spf_domain_ok("a.test."));
    assert_true(spf_domain_ok("_spf.a-b.test"));
    assert_false(spf_domain_ok(""));
    assert_false(spf_domain_ok("localhost"));
    assert_false(spf_domain_ok("[127.0.0.1]"));
    assert_false(spf_domain_ok("127.0.0.1"));
    assert_false(spf_domain_ok("a..test"));
    assert_false(spf_domain_ok(".a.test"));
    assert_false(spf_domain_ok("a test.example"));
    assert_false(spf_domain_ok("\xc3\xa9.test"));
    char big[300];
    memset(big, 'a', 64);
    memcpy(big + 64, ".test", 6);
    assert_false(spf_domain_ok(big)); /* 64-octet label */
    memset(big, 'a', sizeof(big));
    for (int i = 50; i < 290; i += 51)
        big[i] = '.';
    big[254] = '\0';
    assert_false(spf_domain_ok(big)); /* 254 octets */
}

int main(void)
{
    /* libspf2's messages and ours go to stderr; nothing below needs them */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_domain_ok),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_pass_header),
        cmocka_unit_test(test_fail_explanation),
        cmocka_unit_test(test_fail_domain_explanation),
        cmocka_unit_test(test_softfail_neutral_none),
        cmocka_unit_test(test_permerror),
        cmocka_unit_test(test_mechanisms),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_helo_identity),
        cmocka_unit_test(test_header_quoting),
        cmocka_unit_test(test_temperror),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
