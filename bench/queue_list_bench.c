/*
 * queue_list_bench.c - fills a spool with N synthetic committed messages
 * for bench/queue_list_bench.sh, which then times `sluice queue list`.
 *
 *   queue_list_bench SPOOL N
 *
 * The files are what a real commit leaves (queue/ID.msg, queue/ID.env in
 * the envelope's own text form, made by envelope_serialize, with the right
 * size and CRC-32), but written without fsync: the bench measures reading
 * the queue, and 100,000 durable commits would take minutes for nothing.
 * The mix is a queue with trouble in it: a third of the messages deferred
 * with a remote reply, some on hold, one to four recipients each.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sluice/envelope.h"
#include "sluice/queue_id.h"
#include "sluice/spool.h"

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd) == 0 ? 0 : -errno;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: queue_list_bench SPOOL N\n");
        return 64;
    }
    const char *root = argv[1];
    long n = strtol(argv[2], NULL, 10);
    spool_fs *fs;
    int rc = spool_fs_open(root, true, &fs);
    if (rc) {
        fprintf(stderr, "%s: %s\n", root, strerror(-rc));
        return 1;
    }
    spool_fs_close(fs);

    char body[1200];
    sbuf text;
    sbuf_init(&text, 0);
    char path[4096], reply[300];
    int64_t now = (int64_t)time(NULL);
    srand(42);
    for (long i = 0; i < n; i++) {
        envelope e;
        envelope_init(&e);
        queue_id_new(QUEUE_ID_CLI, e.id);
        e.arrival_us = queue_id_time(e.id) - (int64_t)(n - i) * 1000000; /* spread over time */
        int blen = snprintf(body, sizeof(body),
                            "Received: by bench.example.test (Sluice) id %s\r\n"
                            "From: sender%ld@example.test\r\nTo: someone@remote%ld.test\r\n"
                            "Subject: bench message %ld\r\n\r\n",
                            e.id, i % 5000, i % 300, i);
        while (blen < 1000)
            blen += snprintf(body + blen, sizeof(body) - (size_t)blen,
                             "The quick brown fox jumps over the lazy dog %ld.\r\n", i);
        e.size = (uint64_t)blen;
        e.crc32 = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)body, (uInt)blen);
        char addr[200];
        snprintf(addr, sizeof(addr), "sender%ld@example.test", i % 5000);
        if (envelope_set(&e.sender, addr) || envelope_set(&e.helo, "client.example.test") ||
            envelope_set(&e.client_addr, "192.0.2.10") ||
            envelope_set(&e.client_name, "client.example.test") ||
            envelope_set(&e.proto, "ESMTPS")) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        e.hold = i % 50 == 0;
        int nr = 1 + (int)(i % 4);
        for (int k = 0; k < nr; k++) {
            snprintf(addr, sizeof(addr), "user%d@remote%ld.test", k, (i + k) % 300);
            if (envelope_add_rcpt(&e, addr, NULL, 0)) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            env_rcpt *r = &e.rcpts[e.nrcpt - 1];
            if (i % 3 == 0) {
                r->state = RCPT_DEFERRED;
                r->attempts = 1 + (unsigned)(i % 7);
                r->last_attempt = now - 60;
                r->next_attempt = now + 300 + i % 3600;
                snprintf(reply, sizeof(reply), "451 4.7.1 <%s>: greylisted, try again later", addr);
                envelope_set(&r->last_reply, reply);
                envelope_set(&r->relay, "mx.remote.test[198.51.100.7]:25");
                envelope_set(&r->dsn_status, "4.7.1");
            }
        }
        sbuf_reset(&text);
        if ((rc = envelope_serialize(&e, &text)) != 0) {
            fprintf(stderr, "serialize: %s\n", strerror(-rc));
            return 1;
        }
        /* .msg first, .env last: the same order as a commit. */
        snprintf(path, sizeof(path), "%s/queue/%s.msg", root, e.id);
        if ((rc = write_file(path, body, (size_t)blen)) == 0) {
            snprintf(path, sizeof(path), "%s/queue/%s.env", root, e.id);
            rc = write_file(path, text.data, text.len);
        }
        if (rc) {
            fprintf(stderr, "%s: %s\n", path, strerror(-rc));
            return 1;
        }
        envelope_free(&e);
    }
    sbuf_free(&text);
    return 0;
}
