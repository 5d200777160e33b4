/*
 * dlv_handoff.h - messages sluice-smtpd hands to the runner with their
 * journal records (handoff_format.h; docs/spool.md, "Delivery from the
 * journal"), and the runner's answers.
 *
 * A handed message exists only in sluice-smtpd's journal (durable) and in
 * the record here: it is not in queue/. The runner delivers it from the
 * record when every recipient is a local mailbox, then answers "done"
 * once the copies are synced: sluice-smtpd forgets it. In every other case
 * (remote recipients, an alias, a hold, a failure, no room here) it
 * answers "keep": sluice-smtpd writes it into queue/ and announces it
 * "late", and the runner attempts it from there, looking for the delivery
 * keys of anything it wrote before. No answer at all (a crash) ends the
 * same way after SPOOL_HANDOFF_MS.
 *
 * Loop thread only.
 */
#ifndef SLUICE_DLV_HANDOFF_H
#define SLUICE_DLV_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sluice/buf.h"
#include "sluice/queue_id.h"

/* Records held at once, and their bytes: past either, a record is answered
 * "keep" at once (the runner is far behind; queue/ holds the rest). */
#define DLV_HANDOFF_MAX_RECS 20000
#define DLV_HANDOFF_MAX_BYTES (64u << 20)

typedef struct dlv_jrec {
    struct dlv_jrec *next; /* hash chain */
    char id[QUEUE_ID_LEN + 1];
    uint64_t seq;
    size_t env_len, msg_len;
    char data[]; /* the envelope, then the message */
} dlv_jrec;

typedef struct dlv_handoff {
    dlv_jrec **buckets; /* by id */
    size_t nbuckets, count, bytes;
    int fd;           /* for the answers; -1: none sent (no socket) */
    char path[108];   /* sluice-smtpd's run/journal.sock */
    sbuf done, keep;  /* " SEQ:ID" items not sent yet */
    uv_check_t check; /* sends them once per loop iteration */
    uv_timer_t retry; /* and again shortly when smtpd's socket was full */
    unsigned long dropped;
} dlv_handoff;

/* Opens the answer socket; the handles are the caller's to close (dlv_handoff_close). */
int dlv_handoff_init(uv_loop_t *loop, dlv_handoff *h, const char *root);
/* Closes both handles (cb per handle, which finds data in handle->data)
 * after a last send; the records left are answered "keep". */
void dlv_handoff_close(dlv_handoff *h, uv_close_cb cb, void *data);
void dlv_handoff_free(dlv_handoff *h);

/*
 * Takes the records of one hand-off datagram: each is kept and on_rec(arg,
 * id) is called (the caller schedules it), or answered "keep" when there is
 * no room. Returns the number of records, -EINVAL for a malformed datagram.
 */
int dlv_handoff_receive(dlv_handoff *h, const void *dgram, size_t len,
                        void (*on_rec)(void *arg, const char *id), void *arg);

/* The record of id, removed from the table (the caller frees it), or NULL. */
dlv_jrec *dlv_handoff_take(dlv_handoff *h, const char *id);

/* Queues the answer about one record (sent at the end of this loop iteration). */
void dlv_handoff_answer(dlv_handoff *h, bool keep, uint64_t seq, const char *id);

#endif
