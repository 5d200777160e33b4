/*
 * handoff_format.h - the two datagrams of the journal hand-off between
 * sluice-smtpd and sluice-delivery (docs/spool.md, "Delivery from the
 * journal"). Pure functions over bytes: no I/O, unit-tested and fuzzed.
 *
 *   smtpd -> runner (run/delivery.sock):  "jnl\n", the generation (u32,
 *       little-endian), then journal records (journal_format.h) of that
 *       generation back to back, exactly as they were written: messages
 *       whose records are durable, each whole, so the runner can deliver
 *       them without reading a spool file.
 *   runner -> smtpd (run/journal.sock):   "done SEQ:ID SEQ:ID ..." or
 *       "keep SEQ:ID ...". done: every copy the message needs exists
 *       (delivered and synced); the spool may forget it. keep: the runner
 *       did not finish it; the spool puts it in queue/ now.
 */
#ifndef SLUICE_HANDOFF_FORMAT_H
#define SLUICE_HANDOFF_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/journal_format.h"

#define HANDOFF_MAGIC "jnl\n"
#define HANDOFF_MAGIC_LEN 4u
#define HANDOFF_HDR_LEN 8u /* magic and generation */
/* Largest datagram either side sends: the runner reads into 64 KiB. */
#define HANDOFF_DGRAM_MAX 60000u
/* "done" + one " SEQ:ID" (20 digits, ':', 14): a bound for builders. */
#define HANDOFF_ACK_ITEM_MAX (1u + 20u + 1u + 14u)

/* Whether a datagram is a hand-off (starts with HANDOFF_MAGIC). */
bool handoff_is_records(const void *p, size_t len);

/* The header of a hand-off of records of generation gen (HANDOFF_HDR_LEN bytes). */
void handoff_header(uint8_t out[HANDOFF_HDR_LEN], uint32_t gen);

/*
 * Calls fn for every record of a hand-off datagram, in order; stops at the
 * first position that is not a whole valid record (journal_rec_decode
 * with the header's generation). Returns the number of records, -EINVAL
 * when p is not a hand-off at all; *rest is how many bytes were left unread (0 for
 * a well-formed datagram).
 */
int handoff_records_parse(const void *p, size_t len, uint32_t env_max, uint32_t msg_max,
                          void (*fn)(void *arg, const journal_rec *r), void *arg, size_t *rest);

/*
 * Parses an acknowledgement. Calls fn(arg, keep, seq, id) for every well
 * formed "SEQ:ID" (SEQ decimal without sign or leading zero, ID a queue
 * id); malformed items are skipped and counted in *bad. Returns the number
 * of items passed to fn, or -EINVAL for another verb.
 */
int handoff_ack_parse(const char *text, size_t len,
                      void (*fn)(void *arg, bool keep, uint64_t seq, const char *id), void *arg,
                      size_t *bad);

/* The next word of a datagram's text from *pos (words are separated by
 * spaces, tabs, CR or LF): its start in *start, its length returned (0 at
 * the end); *pos moves past it. Both daemons' text datagrams use it. */
size_t handoff_next_word(const char *text, size_t len, size_t *pos, size_t *start);

/* Appends " SEQ:ID" at out (room for HANDOFF_ACK_ITEM_MAX); returns its length. */
size_t handoff_ack_item(char *out, uint64_t seq, const char *id);

#endif
