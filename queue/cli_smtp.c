/*
 * cli_smtp.c - the small SMTP client `sluice sendmail` speaks over
 * sluice-smtpd's unix socket (run/submit.sock). Blocking I/O with poll()
 * deadlines: one command, one reply, nothing pipelined, so a refusal is
 * tied to the command that caused it. Replies are bounded: a line longer
 * than the buffer or without a code is a protocol error, never a crash.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sluice/cli.h"

/* Each write may wait this long for the server to read (its own data
 * timeout is 3 minutes; a stuck server must not hang a cron job forever). */
#define WRITE_TIMEOUT_MS (5 * 60 * 1000)

int cli_smtp_connect(cli_smtp *s, const char *path, bool verbose)
{
    struct sockaddr_un sa;

    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->verbose = verbose;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    s->fd = fd;
    return 0;
}

void cli_smtp_close(cli_smtp *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on the socket until deadline. 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* One line (through LF) out of s->in into line; reads more as needed. */
static int read_line(cli_smtp *s, char *line, size_t linesz, int64_t deadline)
{
    for (;;) {
        char *nl = memchr(s->in, '\n', s->inlen);
        if (nl) {
            size_t n = (size_t)(nl - s->in) + 1;
            if (n >= linesz)
                return -EPROTO;
            memcpy(line, s->in, n);
            line[n] = '\0';
            memmove(s->in, s->in + n, s->inlen - n);
            s->inlen -= n;
            return 0;
        }
        if (s->inlen == sizeof(s->in))
            return -EPROTO; /* a line longer than any reply may be */
        int rc = wait_fd(s->fd, POLLIN, deadline);
        if (rc)
            return rc;
        ssize_t got = recv(s->fd, s->in + s->inlen, sizeof(s->in) - s->inlen, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0)
            return errno == ECONNRESET || errno == EPIPE ? -ECONNRESET : -errno;
        if (got == 0)
            return -ECONNRESET;
        s->inlen += (size_t)got;
    }
}

int cli_smtp_reply(cli_smtp *s, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    char line[sizeof(s->in) + 1];
    int code = -1;

    for (;;) {
        int rc = read_line(s, line, sizeof(line), deadline);
        if (rc)
            return rc;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (s->verbose)
            fprintf(stderr, "<<< %s\n", line);
        if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
            line[2] < '0' || line[2] > '9' || (n > 3 && line[3] != ' ' && line[3] != '-'))
            return -EPROTO;
        int c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (code >= 0 && c != code)
            return -EPROTO;
        code = c;
        /* Control characters from the server never reach the terminal. */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                line[i] = ' ';
        snprintf(s->reply, sizeof(s->reply), "%s", line);
        if (n == 3 || line[3] == ' ') {
            s->code = code;
            return code;
        }
    }
}

int cli_smtp_write(cli_smtp *s, const void *p, size_t n)
{
    const char *c = p;
    int64_t deadline = now_ms() + WRITE_TIMEOUT_MS;
    while (n > 0) {
        ssize_t w = send(s->fd, c, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(s->fd, POLLOUT, deadline);
            if (rc)
                return rc;
            continue;
        }
        if (w < 0)
            return errno == EPIPE ? -ECONNRESET : -errno;
        c += w;
        n -= (size_t)w;
        deadline = now_ms() + WRITE_TIMEOUT_MS; /* progress: a fresh wait */
    }
    return 0;
}

int cli_smtp_cmd(cli_smtp *s, int timeout_ms, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2)
        return -EINVAL;
    if (s->verbose)
        fprintf(stderr, ">>> %s\n", line);
    memcpy(line + n, "\r\n", 2);
    int rc = cli_smtp_write(s, line, (size_t)n + 2);
    return rc ? rc : cli_smtp_reply(s, timeout_ms);
}
