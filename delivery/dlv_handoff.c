/*
 * dlv_handoff.c - the runner's side of the journal hand-off (see
 * dlv_handoff.h for the protocol, handoff_format.h for the bytes).
 *
 * Answers are datagrams to sluice-smtpd's run/journal.sock, gathered over
 * one loop iteration (a confirm batch finishes many messages at once) and
 * sent from a check handle. A full socket keeps them for a retry; any
 * other error drops them: sluice-smtpd is gone, and its restart announces
 * the messages "late" from its journal.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/dlv_handoff.h"
#include "sluice/envelope.h"
#include "sluice/handoff_format.h"
#include "sluice/log.h"
#include "sluice/spool.h"

#define NBUCKETS 4096
#define ANSWER_PENDING_MAX (1u << 20) /* unsent answer text kept for a retry */
#define RETRY_MS 10

static size_t bucket_of(const dlv_handoff *h, const char *id)
{
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < QUEUE_ID_LEN; i++)
        x = (x ^ (unsigned char)id[i]) * 1099511628211ull;
    return (size_t)(x & (h->nbuckets - 1));
}

static void send_answers(dlv_handoff *h);

static void on_check(uv_check_t *c)
{
    dlv_handoff *h = c->data;
    send_answers(h);
}

static void on_retry(uv_timer_t *t)
{
    send_answers(t->data);
}

int dlv_handoff_init(uv_loop_t *loop, dlv_handoff *h, const char *root)
{
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    sbuf_init(&h->done, ANSWER_PENDING_MAX);
    sbuf_init(&h->keep, ANSWER_PENDING_MAX);
    h->nbuckets = NBUCKETS;
    if (!(h->buckets = calloc(h->nbuckets, sizeof(*h->buckets))))
        return -ENOMEM;
    uv_check_init(loop, &h->check);
    h->check.data = h;
    uv_timer_init(loop, &h->retry);
    h->retry.data = h;
    /* A spool path too long for a socket name: nothing is ever handed to
     * us either (sluice-smtpd cannot bind its side), so no answers. */
    if (spool_path(root, SPOOL_JOURNAL_SOCK, h->path, sizeof(h->path)) == 0)
        h->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return 0;
}

/* Drops every record held, answering "keep" for each when answer is set. */
static void drop_all(dlv_handoff *h, bool answer)
{
    for (size_t b = 0; h->buckets && b < h->nbuckets; b++)
        for (dlv_jrec *j = h->buckets[b], *next; j; j = next) {
            next = j->next;
            if (answer)
                dlv_handoff_answer(h, true, j->seq, j->id);
            free(j);
        }
    if (h->buckets)
        memset(h->buckets, 0, h->nbuckets * sizeof(*h->buckets));
    h->count = h->bytes = 0;
}

void dlv_handoff_close(dlv_handoff *h, uv_close_cb cb, void *data)
{
    /* What we hold and will not attempt: sluice-smtpd writes it into queue/
     * now rather than after its wait. */
    drop_all(h, true);
    send_answers(h);
    uv_timer_stop(&h->retry);
    h->check.data = h->retry.data = data; /* no callback of ours runs from here on */
    uv_close((uv_handle_t *)&h->check, cb);
    uv_close((uv_handle_t *)&h->retry, cb);
}

void dlv_handoff_free(dlv_handoff *h)
{
    drop_all(h, false);
    free(h->buckets);
    h->buckets = NULL;
    sbuf_free(&h->done);
    sbuf_free(&h->keep);
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

struct rx {
    dlv_handoff *h;
    void (*on_rec)(void *arg, const char *id);
    void *arg;
};

static void take_rec(void *arg, const journal_rec *r)
{
    struct rx *x = arg;
    dlv_handoff *h = x->h;
    size_t size = (size_t)r->env_len + r->msg_len;
    size_t b = bucket_of(h, r->id);
    bool known = false;
    for (dlv_jrec *j = h->buckets[b]; j && !known; j = j->next)
        known = strcmp(j->id, r->id) == 0;
    dlv_jrec *j = NULL;
    if (!known && h->count < DLV_HANDOFF_MAX_RECS && h->bytes + size <= DLV_HANDOFF_MAX_BYTES)
        j = malloc(sizeof(*j) + size);
    if (!j) {
        /* Known already (sent twice?), or no room: queue/ will hold it. */
        dlv_handoff_answer(h, true, r->seq, r->id);
        return;
    }
    memcpy(j->id, r->id, sizeof(j->id));
    j->seq = r->seq;
    j->env_len = r->env_len;
    j->msg_len = r->msg_len;
    memcpy(j->data, r->env, r->env_len);
    memcpy(j->data + r->env_len, r->msg, r->msg_len);
    j->next = h->buckets[b];
    h->buckets[b] = j;
    h->count++;
    h->bytes += size;
    x->on_rec(x->arg, j->id);
}

int dlv_handoff_receive(dlv_handoff *h, const void *dgram, size_t len,
                        void (*on_rec)(void *arg, const char *id), void *arg)
{
    struct rx x = {h, on_rec, arg};
    size_t rest;
    int n = handoff_records_parse(dgram, len, ENVELOPE_MAX_SIZE, UINT32_MAX, take_rec, &x, &rest);
    if (n >= 0 && rest > 0)
        log_warn("delivery socket: a hand-off with %zu bytes that are not a record (ignored; "
                 "sluice-smtpd writes what they were into queue/)",
                 rest);
    return n;
}

dlv_jrec *dlv_handoff_take(dlv_handoff *h, const char *id)
{
    for (dlv_jrec **p = &h->buckets[bucket_of(h, id)]; *p; p = &(*p)->next) {
        dlv_jrec *j = *p;
        if (strcmp(j->id, id) == 0) {
            *p = j->next;
            h->count--;
            h->bytes -= j->env_len + j->msg_len;
            j->next = NULL;
            return j;
        }
    }
    return NULL;
}

void dlv_handoff_answer(dlv_handoff *h, bool keep, uint64_t seq, const char *id)
{
    char item[HANDOFF_ACK_ITEM_MAX];
    size_t n = handoff_ack_item(item, seq, id);
    if (h->fd < 0)
        return;
    if (sbuf_append(keep ? &h->keep : &h->done, item, n) != 0) {
        /* sluice-smtpd has not read its socket for a long while: it writes
         * these into queue/ after its wait, and announces them "late". */
        if (h->dropped++ % 1000 == 0)
            log_warn("hand-off: sluice-smtpd is not reading %s; answers dropped",
                     SPOOL_JOURNAL_SOCK);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&h->check) && !uv_is_closing((uv_handle_t *)&h->check))
        uv_check_start(&h->check, on_check);
}

/* Sends b's items after verb, in datagrams of at most HANDOFF_DGRAM_MAX;
 * false when the socket was full (the rest stays in b). */
static bool send_buf(dlv_handoff *h, sbuf *b, const char *verb)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, h->path, sizeof(sa.sun_path) - 1);
    char text[HANDOFF_DGRAM_MAX];
    while (b->len) {
        size_t vl = strlen(verb), take = 0;
        /* Whole items only: each starts with a space. */
        while (take < b->len) {
            const char *next = memchr(b->data + take + 1, ' ', b->len - take - 1);
            size_t end = next ? (size_t)(next - b->data) : b->len;
            if (vl + end > sizeof(text))
                break;
            take = end;
        }
        memcpy(text, verb, vl);
        memcpy(text + vl, b->data, take);
        ssize_t n;
        do
            n = sendto(h->fd, text, vl + take, MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof(sa));
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == ENOBUFS))
            return false;
        /* Sent, or nobody listens (sluice-smtpd restarting: its recovery
         * announces these messages "late"). */
        sbuf_consume(b, take);
    }
    return true;
}

static void send_answers(dlv_handoff *h)
{
    uv_check_stop(&h->check);
    if (h->fd < 0)
        return;
    bool ok = send_buf(h, &h->done, "done");
    ok = send_buf(h, &h->keep, "keep") && ok;
    if (!ok && !uv_is_closing((uv_handle_t *)&h->retry))
        uv_timer_start(&h->retry, on_retry, RETRY_MS, 0);
}
