/*
 * dlv_notify.c - run/delivery.sock: the datagram socket through which
 * sluice-smtpd announces committed messages ("new ID ...") and `sluice
 * queue flush` asks for an early retry ("flush [ID ...]").
 *
 * A datagram socket because the senders must never block or wait for us
 * (spool_notify_delivery is fire-and-forget): a lost notice only costs the
 * wait for the next periodic scan. Watched with uv_poll_t, read with
 * recv(MSG_DONTWAIT) until empty.
 *
 * One runner per spool: run/delivery.lock is flock()ed for the process's
 * life, so a second sluice-delivery cannot steal the socket (binding
 * unlinks the old one) and deliver the same messages twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/dlv_core.h"
#include "sluice/handoff_format.h"
#include "sluice/log.h"
#include "sluice/queue_id.h"

int dlv_runner_lock_instance(const char *root, int *out)
{
    char path[4096];
    int rc = spool_path(root, "run/delivery.lock", path, sizeof(path));
    if (rc)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int dlv_notify_parse(const char *text, size_t len,
                     void (*each)(void *arg, const char *id, unsigned flags), void *arg)
{
    size_t i = 0, n = 0, s, vlen = handoff_next_word(text, len, &i, &s);
    unsigned flags;
    if (vlen == 3 && memcmp(text + s, "new", 3) == 0)
        flags = 0;
    else if (vlen == 4 && memcmp(text + s, "late", 4) == 0)
        flags = DLV_SCHED_CHECK;
    else if (vlen == 5 && memcmp(text + s, "flush", 5) == 0)
        flags = DLV_SCHED_FORCE;
    else
        return -EINVAL;
    int taken = 0;
    size_t wl;
    while ((wl = handoff_next_word(text, len, &i, &s)) > 0) {
        n++;
        if (wl == QUEUE_ID_LEN && queue_id_valid(text + s, QUEUE_ID_LEN)) {
            char id[QUEUE_ID_LEN + 1];
            memcpy(id, text + s, QUEUE_ID_LEN);
            id[QUEUE_ID_LEN] = '\0';
            each(arg, id, flags);
            taken++;
        }
    }
    if (flags == DLV_SCHED_FORCE && n == 0)
        each(arg, NULL, DLV_SCHED_FORCE);
    return taken;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    dlv_notify *n = h->data;
    if (status < 0) {
        log_warn("delivery socket: %s", uv_strerror(status));
        return;
    }
    (void)events;
    /* A bounded batch per wake-up: a flood cannot starve the loop. */
    for (int i = 0; i < 256; i++) {
        ssize_t len = recv(n->fd, n->buf, sizeof(n->buf) - 1, MSG_DONTWAIT);
        if (len < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("delivery socket: recv: %s", strerror(errno));
            return;
        }
        n->buf[len] = '\0';
        n->on_msg(n->arg, n->buf, (size_t)len);
    }
}

int dlv_notify_open(uv_loop_t *loop, dlv_notify *n, const char *root,
                    void (*on_msg)(void *arg, const char *text, size_t len), void *arg)
{
    struct sockaddr_un sa;
    int rc;

    memset(n, 0, sizeof(*n));
    n->fd = -1;
    n->on_msg = on_msg;
    n->arg = arg;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if ((rc = spool_path(root, SPOOL_DELIVERY_SOCK, sa.sun_path, sizeof(sa.sun_path))) != 0)
        return rc;
    snprintf(n->path, sizeof(n->path), "%s", sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A socket left by a runner that died: we hold the instance lock, so
     * nobody else uses it. */
    if (unlink(sa.sun_path) != 0 && errno != ENOENT) {
        rc = -errno;
        close(fd);
        return rc;
    }
    mode_t old = umask(0077);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    /* Room for bursts of notices from a busy smtpd. */
    int rcvbuf = 1 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if ((rc = uv_poll_init(loop, &n->poll, fd)) != 0) {
        close(fd);
        unlink(sa.sun_path);
        return rc;
    }
    n->poll.data = n;
    n->fd = fd;
    n->open = true;
    if ((rc = uv_poll_start(&n->poll, UV_READABLE, on_readable)) != 0) {
        log_err("delivery socket: poll: %s", uv_strerror(rc));
        /* Still usable through the periodic scan; the handle is closed later. */
    }
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    dlv_notify *n = h->data;
    /* libuv leaves a polled descriptor to its owner: closed only now that
     * the handle no longer watches it. */
    close(n->fd);
    n->fd = -1;
    if (n->close_cb)
        n->close_cb(h);
}

void dlv_notify_close(dlv_notify *n, uv_close_cb cb)
{
    if (!n->open)
        return;
    n->open = false;
    uv_poll_stop(&n->poll);
    unlink(n->path);
    n->close_cb = cb;
    uv_close((uv_handle_t *)&n->poll, on_closed);
}
