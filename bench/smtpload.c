/*
 * bench/smtpload.c - an SMTP load client for bench/compare.
 *
 * smtp-source (from Postfix) is the load generator of the throughput rows;
 * this client does what smtp-source cannot: it times every message from the
 * moment the final ".\r\n" has been written until the 250 reply arrives, and
 * it can hold thousands of idle connections open for the memory rows. When
 * Postfix (and so smtp-source) is not installed (`--quick --sluice-only`)
 * it is also the throughput load generator.
 *
 *   smtpload [-s SESSIONS] [-m MESSAGES] [-l BYTES] [-d] [-f FROM]
 *            [-t RCPT[,RCPT...]] [-T SECONDS] HOST:PORT
 *   smtpload -I CONNECTIONS [-P PARALLEL] [-T SECONDS] HOST:PORT
 *
 *   -s  parallel sessions (default 1)
 *   -m  messages in all (default 1)
 *   -l  message size in bytes, headers included (default 1024)
 *   -d  several messages per connection (else one per connection, QUIT after
 *       each), as smtp-source -d
 *   -t  recipients, comma-separated; messages go to them in turn
 *   -T  give up after this many seconds (default 600)
 *   -I  idle mode: open CONNECTIONS connections, read each greeting, print
 *       "ready ok=N fail=N" and hold them until standard input closes
 *   -P  idle mode: connections being opened at once (default 200)
 *
 * Like smtp-source, no PIPELINING: each command waits for its reply.
 * Output, one line: "msgs=N ok=N fail=N secs=S rate=R p50_ms=X p99_ms=X
 * max_ms=X"; exit 0 when every message got its 250.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum st {
    S_CONNECT,
    S_GREET,
    S_EHLO,
    S_MAIL,
    S_RCPT,
    S_DATA,
    S_BODY,
    S_DOT,
    S_QUIT,
    S_IDLE,
    S_DONE
};

struct sess {
    int fd;
    enum st st;
    char in[8192];
    size_t inlen;
    const char *out;
    size_t outlen, outoff;
    char cmd[600];
    double t_dot;
    int msgs_on_conn;
    int have_msg; /* a message of the total is assigned to this session */
};

static struct sockaddr_in addr;
static int epfd;
static int nsessions = 1, total = 1, msgsize = 1024, keep = 0, idle_n = 0, parallel = 200;
static double limit_s = 600;
static const char *from = "bench@client.test";
static char **rcpts;
static int nrcpts;
static char *body;
static size_t bodylen;
static int assigned, ok, fail, rr;
static double *lat;
static int nlat;
static int idle_ok, idle_fail, idle_pending, idle_started;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *m)
{
    perror(m);
    exit(2);
}

static void build_body(void)
{
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\n"
                     "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                     "Message-ID: <bench@client.test>\r\n\r\n",
                     from, rcpts[0]);
    size_t want = (size_t)msgsize > (size_t)n + 8 ? (size_t)msgsize : (size_t)n + 8;
    body = malloc(want + 8);
    if (!body)
        die("malloc");
    memcpy(body, hdr, (size_t)n);
    size_t len = (size_t)n;
    static const char pat[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t k = 0;
    while (len + 2 < want) {
        size_t line = want - len - 2;
        if (line > 76)
            line = 76;
        for (size_t i = 0; i < line; i++)
            body[len++] = pat[(k + i) % (sizeof pat - 1)];
        k++;
        body[len++] = '\r';
        body[len++] = '\n';
    }
    memcpy(body + len, ".\r\n", 3);
    bodylen = len + 3;
}

static void set_events(struct sess *s, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = s};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &e) < 0)
        die("epoll_ctl");
}

static void close_sess(struct sess *s)
{
    if (s->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
}

static int start_conn(struct sess *s)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->st = S_CONNECT;
    s->inlen = 0;
    s->msgs_on_conn = 0;
    int r = connect(s->fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = s};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &e) < 0)
        die("epoll_ctl add");
    return 0;
}

static void send_str(struct sess *s, const char *p, size_t n)
{
    s->out = p;
    s->outlen = n;
    s->outoff = 0;
    set_events(s, EPOLLOUT);
}

static void send_cmd(struct sess *s, const char *fmt, const char *arg)
{
    int n = snprintf(s->cmd, sizeof s->cmd, fmt, arg);
    send_str(s, s->cmd, (size_t)n);
}

/* Takes the next message of the total for this session; 0 when none left. */
static int take_msg(struct sess *s)
{
    if (s->have_msg)
        return 1;
    if (assigned >= total)
        return 0;
    assigned++;
    s->have_msg = 1;
    return 1;
}

static void msg_done(struct sess *s, int good, double t)
{
    if (!s->have_msg)
        return;
    s->have_msg = 0;
    if (good) {
        ok++;
        if (t >= 0)
            lat[nlat++] = t;
    } else {
        fail++;
    }
}

static void next_mail(struct sess *s)
{
    if (take_msg(s)) {
        s->st = S_MAIL;
        send_cmd(s, "MAIL FROM:<%s>\r\n", from);
    } else {
        s->st = S_QUIT;
        send_cmd(s, "QUIT\r\n%s", "");
    }
}

/* A connection ended (QUIT done, error or reset): open the next one if
 * messages are left, else this session is done. */
static void conn_over(struct sess *s, int error)
{
    if (error)
        msg_done(s, 0, -1);
    close_sess(s);
    if (idle_n) {
        return;
    }
    if (assigned < total || s->have_msg) {
        if (start_conn(s) < 0) {
            msg_done(s, 0, -1);
            if (take_msg(s))
                msg_done(s, 0, -1);
            s->st = S_DONE;
        }
    } else {
        s->st = S_DONE;
    }
}

/* One complete reply with code `code` arrived. */
static void on_reply(struct sess *s, int code)
{
    int good = code >= 200 && code < 300;
    switch (s->st) {
    case S_GREET:
        if (code != 220)
            goto bad;
        if (idle_n) {
            s->st = S_IDLE;
            idle_ok++;
            idle_pending--;
            set_events(s, EPOLLIN);
            return;
        }
        s->st = S_EHLO;
        send_cmd(s, "EHLO %s\r\n", "client.test");
        return;
    case S_EHLO:
        if (!good)
            goto bad;
        next_mail(s);
        return;
    case S_MAIL:
        if (!good)
            goto bad;
        s->st = S_RCPT;
        send_cmd(s, "RCPT TO:<%s>\r\n", rcpts[rr++ % nrcpts]);
        return;
    case S_RCPT:
        if (!good)
            goto bad;
        s->st = S_DATA;
        send_cmd(s, "DATA\r\n%s", "");
        return;
    case S_DATA:
        if (code != 354)
            goto bad;
        s->st = S_BODY;
        send_str(s, body, bodylen);
        return;
    case S_DOT:
        msg_done(s, good, now() - s->t_dot);
        s->msgs_on_conn++;
        if (keep && good) {
            next_mail(s);
        } else {
            s->st = S_QUIT;
            send_cmd(s, "QUIT\r\n%s", "");
        }
        return;
    case S_QUIT:
        conn_over(s, 0);
        return;
    default:
        goto bad;
    }
bad:
    if (s->st == S_GREET && idle_n) {
        idle_fail++;
        idle_pending--;
    }
    conn_over(s, 1);
}

static void on_readable(struct sess *s)
{
    for (;;) {
        ssize_t n = read(s->fd, s->in + s->inlen, sizeof s->in - s->inlen - 1);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (s->st == S_GREET && idle_n) {
                idle_fail++;
                idle_pending--;
            } else if (s->st == S_IDLE) {
                idle_ok--;
                idle_fail++;
            }
            conn_over(s, s->st != S_QUIT);
            return;
        }
        s->inlen += (size_t)n;
        /* complete lines; the last line of a reply has a space after the code */
        for (;;) {
            char *nl = memchr(s->in, '\n', s->inlen);
            if (!nl)
                break;
            size_t linelen = (size_t)(nl - s->in) + 1;
            int last = linelen >= 4 && s->in[3] != '-';
            int code = atoi(s->in);
            memmove(s->in, nl + 1, s->inlen - linelen);
            s->inlen -= linelen;
            if (last) {
                on_reply(s, code);
                if (s->fd < 0 || s->st == S_DONE)
                    return;
            }
        }
        if (s->inlen >= sizeof s->in - 1)
            s->inlen = 0; /* an overlong line: drop it */
    }
}

static void on_writable(struct sess *s)
{
    if (s->st == S_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            if (idle_n) {
                idle_fail++;
                idle_pending--;
            }
            conn_over(s, 1);
            return;
        }
        s->st = S_GREET;
        set_events(s, EPOLLIN);
        return;
    }
    while (s->outoff < s->outlen) {
        ssize_t n = write(s->fd, s->out + s->outoff, s->outlen - s->outoff);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            conn_over(s, 1);
            return;
        }
        s->outoff += (size_t)n;
    }
    if (s->st == S_BODY) {
        s->st = S_DOT;
        s->t_dot = now();
    }
    set_events(s, EPOLLIN);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (nlat == 0)
        return 0;
    size_t i = (size_t)(p * (nlat - 1) + 0.5);
    return lat[i] * 1000;
}

static void usage(void)
{
    fprintf(stderr, "usage: smtpload [-s N] [-m N] [-l BYTES] [-d] [-f FROM] [-t RCPT,...] "
                    "[-T SECS] | -I N [-P N] HOST:PORT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int c;
    char *rcptarg = "user1@bench.test";
    while ((c = getopt(argc, argv, "s:m:l:df:t:T:I:P:")) != -1) {
        switch (c) {
        case 's':
            nsessions = atoi(optarg);
            break;
        case 'm':
            total = atoi(optarg);
            break;
        case 'l':
            msgsize = atoi(optarg);
            break;
        case 'd':
            keep = 1;
            break;
        case 'f':
            from = optarg;
            break;
        case 't':
            rcptarg = optarg;
            break;
        case 'T':
            limit_s = atof(optarg);
            break;
        case 'I':
            idle_n = atoi(optarg);
            break;
        case 'P':
            parallel = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (optind + 1 != argc || nsessions < 1 || total < 0)
        usage();
    char host[256];
    snprintf(host, sizeof host, "%s", argv[optind]);
    char *colon = strrchr(host, ':');
    if (!colon)
        usage();
    *colon = 0;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        usage();
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* recipients */
    nrcpts = 1;
    for (char *p = rcptarg; *p; p++)
        nrcpts += *p == ',';
    rcpts = calloc((size_t)nrcpts, sizeof *rcpts);
    char *save = NULL;
    int i = 0;
    for (char *t = strtok_r(rcptarg, ",", &save); t; t = strtok_r(NULL, ",", &save))
        rcpts[i++] = t;
    nrcpts = i;
    if (nrcpts == 0)
        usage();
    build_body();
    lat = calloc((size_t)total + 1, sizeof *lat);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");

    int n = idle_n ? idle_n : nsessions;
    struct sess *ss = calloc((size_t)n, sizeof *ss);
    for (i = 0; i < n; i++)
        ss[i].fd = -1;
    double t0 = now(), deadline = t0 + limit_s;
    if (idle_n) {
        /* stdin: its EOF ends the hold */
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e);
    } else {
        for (i = 0; i < n; i++) {
            if (start_conn(&ss[i]) < 0) {
                ss[i].st = S_DONE;
                if (take_msg(&ss[i]))
                    msg_done(&ss[i], 0, -1);
            }
        }
    }
    int announced = 0;
    struct epoll_event evs[256];
    for (;;) {
        if (idle_n) {
            while (idle_started < idle_n && idle_pending < parallel) {
                struct sess *s = &ss[idle_started++];
                if (start_conn(s) < 0)
                    idle_fail++;
                else
                    idle_pending++;
            }
            if (!announced && idle_started == idle_n && idle_pending == 0) {
                printf("ready ok=%d fail=%d secs=%.3f\n", idle_ok, idle_fail, now() - t0);
                fflush(stdout);
                announced = 1;
            }
        } else if (ok + fail >= total) {
            /* all messages answered; let sessions finish their QUIT */
            int busy = 0;
            for (i = 0; i < n; i++)
                busy += ss[i].fd >= 0;
            if (!busy)
                break;
        }
        double left = deadline - now();
        if (left <= 0) {
            fprintf(stderr, "smtpload: time limit reached\n");
            break;
        }
        int k = epoll_wait(epfd, evs, 256, (int)(left * 1000 < 100 ? left * 1000 + 1 : 100));
        if (k < 0 && errno != EINTR)
            die("epoll_wait");
        for (int j = 0; j < k; j++) {
            struct sess *s = evs[j].data.ptr;
            if (!s) { /* stdin */
                char buf[256];
                ssize_t r = read(0, buf, sizeof buf);
                if (r <= 0)
                    goto out;
                continue;
            }
            if (s->fd < 0)
                continue;
            if (evs[j].events & (EPOLLOUT))
                on_writable(s);
            else if (evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(s);
        }
        if (!idle_n && ok + fail >= total) {
            /* sessions left waiting for a message that will not come */
            for (i = 0; i < n; i++)
                if (ss[i].fd >= 0 && ss[i].st == S_CONNECT)
                    close_sess(&ss[i]);
        }
    }
out:;
    double secs = now() - t0;
    if (idle_n) {
        printf("closed ok=%d fail=%d\n", idle_ok, idle_fail);
        return idle_fail ? 1 : 0;
    }
    /* the time of the last 250, not of the last QUIT */
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_d);
    printf("msgs=%d ok=%d fail=%d secs=%.4f rate=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", total,
           ok, fail + (total - ok - fail), secs, secs > 0 ? ok / secs : 0, pct(0.50), pct(0.99),
           nlat ? lat[nlat - 1] * 1000 : 0);
    return ok == total ? 0 : 1;
}
