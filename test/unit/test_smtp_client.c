/*
 * test_smtp_client.c - the SMTP client against real peers: a dnsmasq on a
 * loopback port for MX/A records, and a receiving MTA made of
 * python3-aiosmtpd (test/integration/peer_smtpd.py) listening on several
 * loopback addresses (127.0.0.2-8), each with its own behaviour:
 *
 *   127.0.0.2  STARTTLS, PIPELINING, DSN, SMTPUTF8 (mx.a.test)
 *   127.0.0.3  no STARTTLS, no PIPELINING, no DSN, no SMTPUTF8, SIZE 1000 (mx.plain.test)
 *   127.0.0.4  STARTTLS + AUTH required (smart.test)
 *   127.0.0.5  greets after 3 s; 127.0.0.6 endless greeting; 127.0.0.7 broken TLS;
 *   127.0.0.8  554 greeting; 127.0.0.9  nothing listens (refused)
 *
 * Nothing but loopback is ever contacted. Skipped, saying why, only when
 * dnsmasq, python3-aiosmtpd or openssl are missing.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "sluice/dlv_route.h"
#include "sluice/dlv_smtp.h"
#include "sluice/smtp_parse.h"

static char g_tmp[64];
static char g_rec[128], g_cert[128], g_auth[128], g_badauth[128];
static char g_dns[32];
static int g_port; /* every peer listener's port */
static pid_t g_dnsmasq = -1, g_peer = -1;
static const char *g_skip;
static char g_skip_buf[300];
static int g_msgno;

/* ---- helpers: processes ---- */

static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sin);
    int s = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s >= 0 && bind(s, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(s, (struct sockaddr *)&sin, &sl) == 0)
        port = ntohs(sin.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

static bool tcp_ready(const char *ip, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = s >= 0 && connect(s, (struct sockaddr *)&sin, sizeof(sin)) == 0;
    if (s >= 0)
        close(s);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t spawn(char *const argv[], const char *log, int *out_fd)
{
    int p[2] = {-1, -1};
    if (out_fd && pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* A test that aborts must not leave its peers running. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(out_fd ? p[1] : fd, 1);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (out_fd) {
        close(p[1]);
        *out_fd = p[0];
    }
    return pid;
}

static int start_dnsmasq(void)
{
    char port[32], log[160];
    int dport = free_port();
    snprintf(port, sizeof(port), "--port=%d", dport);
    snprintf(log, sizeof(log), "%s/dnsmasq.log", g_tmp);
    char *argv[] = {"/usr/sbin/dnsmasq",
                    "--no-resolv",
                    "--no-hosts",
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--pid-file=",
                    "--log-facility=-",
                    port,
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--local=/test/",
                    "--mx-host=a.test,mx.a.test,10",
                    "--host-record=mx.a.test,127.0.0.2",
                    "--mx-host=plain.test,mx.plain.test,10",
                    "--host-record=mx.plain.test,127.0.0.3",
                    "--mx-host=pref.test,mx1.pref.test,10",
                    "--mx-host=pref.test,mx2.pref.test,20",
                    "--host-record=mx1.pref.test,127.0.0.9",
                    "--host-record=mx2.pref.test,127.0.0.2",
                    "--mx-host=order.test,hi.order.test,20",
                    "--mx-host=order.test,lo.order.test,10",
                    "--host-record=lo.order.test,127.0.0.3",
                    "--host-record=hi.order.test,127.0.0.2",
                    "--host-record=noamx.test,127.0.0.2",
                    "--mx-host=nullmx.test,.,0",
                    "--host-record=smart.test,127.0.0.4",
                    "--mx-host=slow.test,mx.slow.test,10",
                    "--host-record=mx.slow.test,127.0.0.5",
                    "--mx-host=flood.test,mx.flood.test,10",
                    "--host-record=mx.flood.test,127.0.0.6",
                    "--mx-host=badtls.test,mx.badtls.test,10",
                    "--host-record=mx.badtls.test,127.0.0.7",
                    "--mx-host=greet.test,mx1.greet.test,10",
                    "--mx-host=greet.test,mx2.greet.test,20",
                    "--host-record=mx1.greet.test,127.0.0.8",
                    "--host-record=mx2.greet.test,127.0.0.2",
                    "--mx-host=down.test,mx.down.test,10",
                    "--host-record=mx.down.test,127.0.0.9",
                    "--mx-host=dangling.test,nohost.dangling.test,10",
                    NULL};
    pid_t pid = spawn(argv, log, NULL);
    for (int i = 0; pid > 0 && i < 100; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        if (tcp_ready("127.0.0.1", dport)) {
            g_dnsmasq = pid;
            snprintf(g_dns, sizeof(g_dns), "127.0.0.1:%d", dport);
            return 0;
        }
        sleep_ms(50);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static int start_peer(void)
{
    char script[512], port[16], key[160], rules[160], log[160];
    snprintf(script, sizeof(script), "%s", __FILE__); /* CMake gives an absolute path */
    char *cut = strstr(script, "test/unit/");
    if (!cut)
        return -1;
    snprintf(cut, sizeof(script) - (size_t)(cut - script), "test/integration/peer_smtpd.py");
    g_port = free_port();
    snprintf(port, sizeof(port), "%d", g_port);
    snprintf(key, sizeof(key), "%s/key.pem", g_tmp);
    snprintf(rules, sizeof(rules), "%s/rules", g_tmp);
    snprintf(log, sizeof(log), "%s/peer.log", g_tmp);
    FILE *f = fopen(rules, "w");
    if (!f)
        return -1;
    fputs("later@a.test 451 4.3.0 try later\nnouser@a.test 550 5.1.1 no such user\n"
          "nouser@plain.test 550 no such user here\n",
          f);
    fclose(f);
    char *argv[] = {"/usr/bin/python3",
                    script,
                    "--port",
                    port,
                    "--record",
                    g_rec,
                    "--cert",
                    g_cert,
                    "--key",
                    key,
                    "--rules",
                    rules,
                    "--listen",
                    "127.0.0.2:tls,dsn,utf8",
                    "--listen",
                    "127.0.0.3:nopipelining,size=1000",
                    "--listen",
                    "127.0.0.4:auth",
                    "--listen",
                    "127.0.0.5:slow=3",
                    "--listen",
                    "127.0.0.6:flood",
                    "--listen",
                    "127.0.0.7:badtls",
                    "--listen",
                    "127.0.0.8:greet=554",
                    NULL};
    int fd;
    g_peer = spawn(argv, log, &fd);
    if (g_peer < 0)
        return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[64] = "";
    ssize_t n = 0;
    if (poll(&pfd, 1, 15000) == 1)
        n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0 || strncmp(buf, "READY", 5) != 0)
        return -1;
    return 0;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int group_setup(void **state)
{
    char cmd[600];
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/sluice-smtpc-XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    snprintf(g_rec, sizeof(g_rec), "%s/rec", g_tmp);
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_tmp);
    snprintf(g_auth, sizeof(g_auth), "%s/auth", g_tmp);
    snprintf(g_badauth, sizeof(g_badauth), "%s/badauth", g_tmp);
    if (mkdir(g_rec, 0700) < 0)
        return -1;
    FILE *f = fopen(g_auth, "w");
    if (!f)
        return -1;
    fputs("# smarthost login\nalice secret\n", f);
    fclose(f);
    if (!(f = fopen(g_badauth, "w")))
        return -1;
    fputs("alice wrong\n", f);
    fclose(f);
    if (access("/usr/sbin/dnsmasq", X_OK) != 0) {
        g_skip = "dnsmasq not installed (Debian package dnsmasq-base)";
        return 0;
    }
    if (system("/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null") != 0) {
        g_skip = "python3-aiosmtpd not installed for /usr/bin/python3";
        return 0;
    }
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mx.a.test "
             "-addext subjectAltName=DNS:mx.a.test,DNS:smart.test -keyout %s/key.pem -out %s "
             ">/dev/null 2>&1",
             g_tmp, g_cert);
    if (system(cmd) != 0) {
        g_skip = "openssl cannot make a test certificate";
        return 0;
    }
    for (int i = 0; i < 5 && g_dnsmasq < 0; i++)
        start_dnsmasq();
    if (g_dnsmasq < 0) {
        g_skip = "dnsmasq did not start";
        return 0;
    }
    if (start_peer() < 0) {
        snprintf(g_skip_buf, sizeof(g_skip_buf), "peer_smtpd.py did not start (see %s/peer.log)",
                 g_tmp);
        g_skip = g_skip_buf;
    }
    return 0;
}

static int group_teardown(void **state)
{
    pid_t *pids[] = {&g_peer, &g_dnsmasq};
    for (int i = 0; i < 2; i++) {
        if (*pids[i] > 0) {
            kill(*pids[i], SIGTERM);
            waitpid(*pids[i], NULL, 0);
            *pids[i] = -1;
        }
    }
    if (g_tmp[0] && !getenv("SLUICE_KEEP_TMP"))
        nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

#define SKIP_IF_NEEDED()                                                                           \
    do {                                                                                           \
        if (g_skip) {                                                                              \
            print_message("skipped: %s\n", g_skip);                                                \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- helpers: the peer's records ---- */

static void clear_records(void)
{
    char p[512];
    DIR *d = opendir(g_rec);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", g_rec, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
}

/* Reads a whole file (malloc'd, NUL-terminated); NULL if missing. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap + 1);
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b)
        b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

/* The messages the peer recorded since clear_records(), oldest first. */
static int messages(int *nums, int max)
{
    int n = 0;
    DIR *d = opendir(g_rec);
    struct dirent *e;
    int num;
    char tail[8];
    while (d && (e = readdir(d)) != NULL)
        if (sscanf(e->d_name, "msg-%d.tx%1s", &num, tail) == 2 && n < max)
            nums[n++] = num;
    if (d)
        closedir(d);
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && nums[k - 1] > nums[k]; k--) {
            int t = nums[k];
            nums[k] = nums[k - 1];
            nums[k - 1] = t;
        }
    return n;
}

static char *record(int num, const char *ext, size_t *len)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/msg-%d.%s", g_rec, num, ext);
    return slurp(p, len);
}

/* How many connections the peer saw on ip since clear_records(). */
static int conns(const char *ip)
{
    char p[256], line[64];
    snprintf(p, sizeof(p), "%s/conns.txt", g_rec);
    FILE *f = fopen(p, "r");
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, ip, strlen(ip)) == 0 && line[strlen(ip)] == '\n')
            n++;
    if (f)
        fclose(f);
    return n;
}

/* ---- helpers: the client ---- */

typedef struct fixture {
    uv_loop_t loop;
    dlv_smtp *c;
    dlv_smtp_options o;
    const char *dns[1];
    int done, closed;
    dlv_remote_rcpt rc[8];
    dlv_remote_req req;
    int fd;
    uv_timer_t wd; /* the watchdog of deliver() */
    int expired;
} fixture;

static int fx_setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (!fx || uv_loop_init(&fx->loop) != 0)
        return -1;
    fx->fd = -1;
    uv_timer_init(&fx->loop, &fx->wd);
    fx->wd.data = &fx->expired;
    dlv_smtp_options_default(&fx->o);
    fx->dns[0] = g_dns;
    fx->o.dns_servers = fx->dns;
    fx->o.ndns_servers = 1;
    fx->o.dns_timeout_ms = 2000;
    fx->o.dns_tries = 1;
    fx->o.helo_name = "client.test";
    fx->o.remote_port = (uint16_t)g_port;
    dlv_smtp_timeouts *t = &fx->o.timeouts;
    t->connect_ms = t->greeting_ms = t->ehlo_ms = t->starttls_ms = t->auth_ms = 5000;
    t->mail_ms = t->rcpt_ms = t->data_init_ms = t->data_block_ms = t->data_end_ms = 5000;
    t->idle_ms = 3000;
    *state = fx;
    clear_records();
    return 0;
}

static void on_closed(void *arg)
{
    ((fixture *)arg)->closed = 1;
}

static int fx_teardown(void **state)
{
    fixture *fx = *state;
    if (fx->c) {
        dlv_smtp_close(fx->c, on_closed, fx);
        uv_run(&fx->loop, UV_RUN_DEFAULT);
        assert_int_equal(fx->closed, 1);
    }
    if (fx->fd >= 0)
        close(fx->fd);
    uv_close((uv_handle_t *)&fx->wd, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    /* Every handle of the client is closed: nothing leaks. */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

static void client(fixture *fx)
{
    char err[256] = "";
    int rc = dlv_smtp_new(&fx->loop, &fx->o, &fx->c, err, sizeof(err));
    if (rc != 0)
        print_message("dlv_smtp_new: %s\n", err);
    assert_int_equal(rc, 0);
}

/* Writes the message to a file and opens it for the request. */
static void message(fixture *fx, const char *data, size_t len)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/spool-%d", g_tmp, ++g_msgno);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    close(fd);
    if (fx->fd >= 0)
        close(fx->fd);
    fx->fd = open(p, O_RDONLY);
    assert_true(fx->fd >= 0);
    fx->req.fd = fx->fd;
    fx->req.size = len;
}

static const char MSG[] = "From: a@b.test\r\nTo: ok@a.test\r\nSubject: hi\r\n\r\nHello.\r\n";

/* A request for the given recipients (NULL-terminated) over nexthop. */
static void request(fixture *fx, const char *nexthop, const char *domain, const char *const *to)
{
    memset(&fx->req, 0, sizeof(fx->req));
    memset(fx->rc, 0, sizeof(fx->rc));
    size_t n = 0;
    while (to[n] && n < 8) {
        fx->rc[n].addr = to[n];
        n++;
    }
    fx->req.id = "TESTID";
    fx->req.nexthop = nexthop;
    fx->req.domain = domain;
    fx->req.sender = "a@b.test";
    fx->req.rcpts = fx->rc;
    fx->req.nrcpt = n;
    fx->req.fd = -1;
    message(fx, MSG, sizeof(MSG) - 1);
}

static void done_cb(dlv_remote_req *req)
{
    fixture *fx = req->data;
    fx->done++;
}

static void watchdog_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Sends fx->req and runs the loop until its done callback (30 s at most). */
static void deliver(fixture *fx)
{
    if (!fx->c)
        client(fx);
    fx->done = 0;
    fx->req.done = done_cb;
    fx->req.data = fx;
    assert_int_equal(dlv_smtp_send(fx->c, &fx->req), 0);
    assert_int_equal(fx->done, 0); /* never called from inside send */
    fx->expired = 0;
    uv_timer_start(&fx->wd, watchdog_cb, 30000, 0);
    while (!fx->done && !fx->expired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->wd);
    assert_false(fx->expired);
    assert_int_equal(fx->done, 1);
    for (size_t i = 0; i < fx->req.nrcpt; i++)
        print_message("  %s: %d %s \"%s\" relay=%s tls=%s\n", fx->rc[i].addr, fx->rc[i].code,
                      fx->rc[i].status, fx->rc[i].reply, fx->rc[i].relay, fx->rc[i].tls);
}

static void relay_is(const dlv_remote_rcpt *r, const char *host, const char *ip)
{
    char want[DLV_RELAY_MAX];
    snprintf(want, sizeof(want), "%s[%s]:%d", host, ip, g_port);
    assert_string_equal(r->relay, want);
}

static bool has_line(const char *rec, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = rec; (p = strstr(p, line)) != NULL; p++)
        if ((p == rec || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* ---- routing against dnsmasq ---- */

typedef struct route_fx {
    dlv_route_req req;
    int done;
} route_fx;

static void route_done(dlv_route_req *req)
{
    ((route_fx *)req->data)->done = 1;
}

static void route(fixture *fx, resolver *res, const char *nexthop, const char *domain, route_fx *r)
{
    memset(r, 0, sizeof(*r));
    r->req.data = r;
    assert_int_equal(dlv_route_resolve(res, &r->req, nexthop, domain, 25, route_done), 0);
    while (!r->done)
        uv_run(&fx->loop, UV_RUN_ONCE);
}

static void test_route_live(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    resolver res;
    resolver_options ro = {.servers = fx->dns, .nservers = 1, .timeout_ms = 2000, .tries = 1};
    assert_int_equal(resolver_init(&fx->loop, &res, &ro), 0);
    route_fx r;

    /* Preference order, every MX's addresses, the default port. */
    route(fx, &res, "pref.test", "pref.test", &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_OK);
    assert_int_equal(r.req.result.ncands, 2);
    assert_string_equal(r.req.result.cands[0].host, "mx1.pref.test");
    assert_string_equal(r.req.result.cands[1].host, "mx2.pref.test");
    assert_int_equal(r.req.result.cands[1].port, 25);
    dlv_route_result_free(&r.req.result);

    /* No MX: the domain itself (RFC 5321 5.1). */
    route(fx, &res, "noamx.test", "noamx.test", &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_OK);
    assert_int_equal(r.req.result.ncands, 1);
    assert_string_equal(r.req.result.cands[0].host, "noamx.test");
    dlv_route_result_free(&r.req.result);

    /* Brackets: the host's own address, no MX lookup. */
    route(fx, &res, "[smart.test]:2526", NULL, &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_OK);
    assert_int_equal(r.req.result.cands[0].port, 2526);
    dlv_route_result_free(&r.req.result);

    route(fx, &res, "nullmx.test", "nullmx.test", &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_PERM);
    assert_string_equal(r.req.result.status, "5.1.10");

    route(fx, &res, "nosuch.test", "nosuch.test", &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_PERM);
    assert_string_equal(r.req.result.status, "5.1.2");

    /* The same name as a relayhost: a configuration error, deferred. */
    route(fx, &res, "nosuch.test", "b.test", &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_TEMP);
    assert_string_equal(r.req.result.status, "4.4.4");

    /* An MX whose host does not exist. */
    route(fx, &res, "dangling.test", "dangling.test", &r);
    assert_int_equal(r.req.result.klass, DLV_ROUTE_PERM);
    assert_string_equal(r.req.result.status, "5.4.4");
    assert_non_null(strstr(r.req.result.text, "nohost.dangling.test"));

    resolver_close(&res, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
}

/* ---- deliveries ---- */

static void test_pipelining_mix(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@a.test", "later@a.test", "nouser@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    assert_string_equal(fx->rc[0].status, "2.0.0");
    assert_string_equal(fx->rc[0].reply, "250 2.0.0 OK queued");
    relay_is(&fx->rc[0], "mx.a.test", "127.0.0.2");
    assert_memory_equal(fx->rc[0].tls, "TLSv1.", 6);
    assert_int_equal(fx->rc[1].code, 451);
    assert_string_equal(fx->rc[1].status, "4.3.0");
    assert_string_equal(fx->rc[1].reply, "451 4.3.0 try later");
    assert_int_equal(fx->rc[2].code, 550);
    assert_string_equal(fx->rc[2].status, "5.1.1");

    int nums[4];
    assert_int_equal(messages(nums, 4), 1);
    char *txt = record(nums[0], "txt", NULL);
    assert_non_null(txt);
    assert_true(has_line(txt, "tls yes"));
    assert_true(has_line(txt, "ehlo client.test"));
    assert_true(has_line(txt, "from a@b.test"));
    assert_true(has_line(txt, "rcpt ok@a.test"));
    assert_false(has_line(txt, "rcpt later@a.test"));
    free(txt);
    size_t len;
    char *eml = record(nums[0], "eml", &len);
    assert_int_equal(len, sizeof(MSG) - 1);
    assert_memory_equal(eml, MSG, len);
    free(eml);
}

/* No PIPELINING, no DSN, no STARTTLS: one command at a time, no DSN parameters. */
static void test_plain_peer(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@plain.test", "nouser@plain.test", "y@plain.test", NULL};
    request(fx, "plain.test", "plain.test", to);
    fx->rc[0].notify = SMTP_NOTIFY_SUCCESS;
    fx->rc[0].orcpt = "rfc822;x@plain.test";
    fx->req.ret = SMTP_RET_FULL;
    fx->req.envid = "ENV1";
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    assert_string_equal(fx->rc[0].tls, "none");
    assert_int_equal(fx->rc[1].code, 550);
    assert_string_equal(fx->rc[1].status, "5.0.0"); /* no enhanced code: from the class */
    assert_string_equal(fx->rc[1].reply, "550 no such user here");
    assert_int_equal(fx->rc[2].code, 250);
    int nums[4];
    assert_int_equal(messages(nums, 4), 1);
    char *txt = record(nums[0], "txt", NULL);
    assert_true(has_line(txt, "rcpt x@plain.test"));
    assert_true(has_line(txt, "rcpt y@plain.test"));
    assert_null(strstr(txt, "RET="));
    assert_null(strstr(txt, "NOTIFY="));
    assert_true(has_line(txt, "tls no"));
    free(txt);
}

static void test_dsn_params(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@a.test", "ok2@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    fx->req.ret = SMTP_RET_HDRS;
    fx->req.envid = "QQ+2B123";
    fx->req.body = SMTP_BODY_8BITMIME;
    fx->rc[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE;
    fx->rc[0].orcpt = "rfc822;ok@a.test";
    fx->rc[1].notify = SMTP_NOTIFY_NEVER;
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    assert_int_equal(fx->rc[1].code, 250);
    int nums[4];
    assert_int_equal(messages(nums, 4), 1);
    char *txt = record(nums[0], "txt", NULL);
    assert_true(has_line(txt, "mail_opt RET=HDRS"));
    assert_true(has_line(txt, "mail_opt ENVID=QQ+2B123"));
    assert_true(has_line(txt, "mail_opt BODY=8BITMIME"));
    assert_true(has_line(txt, "rcpt_opt NOTIFY=SUCCESS,FAILURE"));
    assert_true(has_line(txt, "rcpt_opt ORCPT=rfc822;ok@a.test"));
    assert_true(has_line(txt, "rcpt_opt NOTIFY=NEVER"));
    char size[64];
    snprintf(size, sizeof(size), "mail_opt SIZE=%zu", sizeof(MSG) - 1);
    assert_true(has_line(txt, size));
    free(txt);
}

static void test_mx_fallback(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@pref.test", NULL};
    request(fx, "pref.test", "pref.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    relay_is(&fx->rc[0], "mx2.pref.test", "127.0.0.2"); /* the best MX refused */
}

static void test_mx_preference(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@order.test", NULL};
    request(fx, "order.test", "order.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    relay_is(&fx->rc[0], "lo.order.test", "127.0.0.3");
    assert_int_equal(conns("127.0.0.2"), 0);
}

static void test_implicit_mx(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@noamx.test", NULL};
    request(fx, "noamx.test", "noamx.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    relay_is(&fx->rc[0], "noamx.test", "127.0.0.2");
}

static void test_dns_failures(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@nullmx.test", NULL};
    request(fx, "nullmx.test", "nullmx.test", to);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "5.1.10");
    assert_int_equal(fx->rc[0].code, 0);
    assert_string_equal(fx->rc[0].relay, "");

    const char *to2[] = {"x@nosuch.test", NULL};
    request(fx, "nosuch.test", "nosuch.test", to2);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "5.1.2");
    assert_non_null(strstr(fx->rc[0].reply, "Host or domain name not found"));
}

static void test_all_refused(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@down.test", NULL};
    request(fx, "down.test", "down.test", to);
    deliver(fx);
    char want[200];
    snprintf(want, sizeof(want), "connect to mx.down.test[127.0.0.9]:%d: Connection refused",
             g_port);
    assert_string_equal(fx->rc[0].status, "4.4.1");
    assert_string_equal(fx->rc[0].reply, want);
    relay_is(&fx->rc[0], "mx.down.test", "127.0.0.9");
}

static void test_greeting_554_next_mx(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@greet.test", NULL};
    request(fx, "greet.test", "greet.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    relay_is(&fx->rc[0], "mx2.greet.test", "127.0.0.2");
    assert_int_equal(conns("127.0.0.8"), 1);
}

static void test_ip_literal(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@[127.0.0.2]", NULL};
    request(fx, "[127.0.0.2]", "[127.0.0.2]", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    relay_is(&fx->rc[0], "127.0.0.2", "127.0.0.2");
}

static void test_bad_address_not_sent(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@a.test>\r\nRSET", "ok@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "5.1.3");
    assert_int_equal(fx->rc[1].code, 250);
}

/* ---- TLS and AUTH ---- */

static void test_tls_encrypt_not_offered(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    fx->o.tls = TLS_ENCRYPT;
    const char *to[] = {"x@plain.test", NULL};
    request(fx, "plain.test", "plain.test", to);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "4.7.5");
    assert_non_null(strstr(fx->rc[0].reply, "TLS is required, but was not offered"));
    int nums[2];
    assert_int_equal(messages(nums, 2), 0);
}

static void test_tls_verify(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    fx->o.tls = TLS_VERIFY;
    const char *to[] = {"ok@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    deliver(fx); /* self-signed: refused */
    assert_string_equal(fx->rc[0].status, "4.7.5");
    assert_non_null(strstr(fx->rc[0].reply, "certificate"));
    dlv_smtp_close(fx->c, NULL, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);

    /* Trusting that certificate, with the MX name in it: accepted. */
    fx->o.ca_file = g_cert;
    fx->c = NULL;
    request(fx, "a.test", "a.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    assert_memory_equal(fx->rc[0].tls, "TLSv1.", 6);
    dlv_smtp_close(fx->c, NULL, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);

    /* The same certificate for a name it does not carry: refused. */
    fx->c = NULL;
    const char *to2[] = {"ok@noamx.test", NULL};
    request(fx, "noamx.test", "noamx.test", to2);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "4.7.5");
}

static void test_tls_may_fallback(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@badtls.test", NULL};
    request(fx, "badtls.test", "badtls.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    assert_string_equal(fx->rc[0].tls, "none");
    assert_int_equal(conns("127.0.0.7"), 2); /* the broken handshake, then plaintext */
}

static void test_smarthost_auth(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    fx->o.relayhost = "[smart.test]";
    fx->o.relayhost_auth = g_auth;
    const char *to[] = {"someone@far.test", NULL};
    request(fx, "[smart.test]", "far.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    relay_is(&fx->rc[0], "smart.test", "127.0.0.4");
    int nums[2];
    assert_int_equal(messages(nums, 2), 1);
    char *txt = record(nums[0], "txt", NULL);
    assert_true(has_line(txt, "auth alice"));
    assert_true(has_line(txt, "tls yes"));
    free(txt);
    dlv_smtp_close(fx->c, NULL, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);

    /* A wrong password defers (the admin fixes it), it never bounces. */
    fx->c = NULL;
    fx->o.relayhost_auth = g_badauth;
    request(fx, "[smart.test]", "far.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].status[0], '4');
    assert_int_equal(fx->rc[0].code, 535);
}

/* ---- limits ---- */

static void test_size_too_small(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@plain.test", NULL};
    request(fx, "plain.test", "plain.test", to);
    char big[2000];
    memset(big, 'x', sizeof(big));
    memcpy(big + sizeof(big) - 2, "\r\n", 2);
    message(fx, big, sizeof(big));
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "5.3.4");
    assert_non_null(strstr(fx->rc[0].reply, "exceeds size limit 1000"));
    int nums[2];
    assert_int_equal(messages(nums, 2), 0);
}

static void test_smtputf8(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"j\xc3\xb8rgen@plain.test", NULL};
    request(fx, "plain.test", "plain.test", to);
    fx->req.smtputf8 = true;
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "5.6.7");

    const char *to2[] = {"j\xc3\xb8rgen@a.test", NULL};
    request(fx, "a.test", "a.test", to2);
    fx->req.smtputf8 = true;
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    int nums[2];
    assert_int_equal(messages(nums, 2), 1);
    char *txt = record(nums[0], "txt", NULL);
    assert_true(has_line(txt, "mail_opt SMTPUTF8"));
    assert_true(has_line(txt, "rcpt j\xc3\xb8rgen@a.test"));
    free(txt);
}

static void test_greeting_timeout(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    fx->o.timeouts.greeting_ms = 300;
    const char *to[] = {"x@slow.test", NULL};
    request(fx, "slow.test", "slow.test", to);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "4.4.2");
    assert_non_null(strstr(fx->rc[0].reply, "timed out while receiving the initial server"));
}

static void test_endless_reply(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@flood.test", NULL};
    request(fx, "flood.test", "flood.test", to);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "4.5.0");
    assert_non_null(strstr(fx->rc[0].reply, "protocol error"));
}

static void cancel_cb(uv_timer_t *t)
{
    dlv_smtp_cancel_all(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"x@slow.test", NULL};
    request(fx, "slow.test", "slow.test", to);
    client(fx);
    static uv_timer_t t;
    uv_timer_init(&fx->loop, &t);
    t.data = fx->c;
    uv_timer_start(&t, cancel_cb, 200, 0);
    deliver(fx);
    assert_string_equal(fx->rc[0].status, "4.3.2");
}

/* ---- the data ---- */

static void test_dot_stuffing_exact(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    static const char body[] = "Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\ntrailing.\r\n"
                               " .space\r\n\xc3\xa9t\xc3\xa9 8-bit\r\n.\r\n";
    const char *to[] = {"ok@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    message(fx, body, sizeof(body) - 1);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    int nums[2];
    assert_int_equal(messages(nums, 2), 1);
    size_t len;
    char *eml = record(nums[0], "eml", &len);
    assert_int_equal(len, sizeof(body) - 1);
    assert_memory_equal(eml, body, len);
    free(eml);
}

static void test_big_message(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    size_t cap = 5u << 20, n = 0;
    char *body = malloc(cap + 100);
    assert_non_null(body);
    n += (size_t)sprintf(body, "Subject: big\r\n\r\n");
    for (unsigned i = 0; n + 100 < cap; i++)
        n += (size_t)sprintf(body + n, "%sline %u of a large message, with some padding text\r\n",
                             i % 7 == 0 ? "." : "", i);
    const char *to[] = {"ok@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    message(fx, body, n);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    int nums[2];
    assert_int_equal(messages(nums, 2), 1);
    size_t len;
    char *eml = record(nums[0], "eml", &len);
    assert_int_equal(len, n);
    assert_memory_equal(eml, body, n);
    free(eml);
    free(body);
}

static void test_connection_reuse(void **state)
{
    SKIP_IF_NEEDED();
    fixture *fx = *state;
    const char *to[] = {"ok@a.test", NULL};
    request(fx, "a.test", "a.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    request(fx, "a.test", "a.test", to);
    deliver(fx);
    assert_int_equal(fx->rc[0].code, 250);
    assert_memory_equal(fx->rc[0].tls, "TLSv1.", 6);
    int nums[4];
    assert_int_equal(messages(nums, 4), 2);
    assert_int_equal(conns("127.0.0.2"), 1);
    dlv_smtp_stats st;
    dlv_smtp_get_stats(fx->c, &st);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.reused, 1);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.idle, 1);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_route_live),
        T(test_pipelining_mix),
        T(test_plain_peer),
        T(test_dsn_params),
        T(test_mx_fallback),
        T(test_mx_preference),
        T(test_implicit_mx),
        T(test_dns_failures),
        T(test_all_refused),
        T(test_greeting_554_next_mx),
        T(test_ip_literal),
        T(test_bad_address_not_sent),
        T(test_tls_encrypt_not_offered),
        T(test_tls_verify),
        T(test_tls_may_fallback),
        T(test_smarthost_auth),
        T(test_size_too_small),
        T(test_smtputf8),
        T(test_greeting_timeout),
        T(test_endless_reply),
        T(test_cancel),
        T(test_dot_stuffing_exact),
        T(test_big_message),
        T(test_connection_reuse),
    };
    return cmocka_run_group_tests_name("smtp_client", tests, group_setup, group_teardown);
}
