/*
 * spool_notify.c - spool_notify_delivery: one datagram to sluice-delivery's
 * socket (run/delivery.sock), e.g. "new 18F3A2B4C5D6E0 18F3A2B4C5D6F0".
 *
 * Best effort by design: the notice only saves the runner the wait for its
 * next periodic scan of queue/, which finds every committed message anyway.
 * So it never blocks (SOCK_NONBLOCK), never retries, and never logs: a
 * runner that is down or busy must not slow or flood the server. The
 * caller gets the errno and may count it.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/spool.h"

int spool_notify_delivery(const char *root, const char *text, size_t len)
{
    struct sockaddr_un sa;
    int fd, rc;

    if (!root || (!text && len))
        return -EINVAL;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    /* sun_path holds 107 bytes: a deeper spool cannot be notified (the
     * scan still finds its messages); docs/spool.md says so. */
    if ((rc = spool_path(root, SPOOL_DELIVERY_SOCK, sa.sun_path, sizeof(sa.sun_path))) != 0)
        return rc;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = sendto(fd, text, len, MSG_NOSIGNAL, (const struct sockaddr *)&sa, sizeof(sa));
    while (n < 0 && errno == EINTR);
    rc = n < 0 ? -errno : (size_t)n == len ? 0 : -EMSGSIZE;
    close(fd);
    return rc;
}
