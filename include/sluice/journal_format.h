/*
 * journal_format.h - the bytes of the spool journal (<spool>/journal), and
 * pure functions to write and read them (no I/O; unit-tested and fuzzed).
 * Why a journal and how it is used: spool_journal.c and docs/spool.md.
 *
 * File layout (all integers little-endian):
 *
 *   [0, 4096)            mark block: two 512-byte slots written in turn,
 *                        each { "SLJM", version, mark (u64), crc32 }. The
 *                        mark is the highest sequence number whose message
 *                        is durable in queue/; the valid slot with the
 *                        higher mark counts, so a torn slot write falls back
 *                        to the other one.
 *   [4096 + r*R, ...)    region r (r = 0, 1), R bytes: a 4096-byte header
 *                        { "SLJR", version, r, gen, R, crc32 }, then records.
 *
 *   record:  "SLJ1" | gen u32 | seq u64 | id[14] | flags u16 | env_len u32
 *            | msg_len u32 | crc32 u32 | envelope bytes | message bytes
 *
 * A record belongs to its region only when its gen equals the region
 * header's: a region is reused by writing a header with gen + 1, which
 * turns every older record in it into garbage without touching them. The
 * crc32 covers the record's header fields and both payloads. Records of one
 * write follow each other; the last one has JOURNAL_F_LAST, and the next
 * write starts at the next 4096-byte boundary of the region (whole pages:
 * no read-modify-write of a page that left the cache). Reading stops at the
 * first position that does not hold a valid record: a torn write can only
 * be the last one, and it was never acknowledged.
 */
#ifndef SLUICE_JOURNAL_FORMAT_H
#define SLUICE_JOURNAL_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/envelope.h" /* QUEUE_ID_LEN */

#define JOURNAL_VERSION 1u
#define JOURNAL_PAGE 4096u
#define JOURNAL_MARK_SLOT 512u
#define JOURNAL_REC_HDR 44u  /* record header bytes, crc included */
#define JOURNAL_F_LAST 0x1u  /* the next record starts at the next page */
#define JOURNAL_F_KNOWN 0x1u /* flags a reader accepts */

typedef struct journal_rec {
    uint32_t gen;
    uint64_t seq;
    char id[QUEUE_ID_LEN + 1];
    uint16_t flags;
    const uint8_t *env;
    uint32_t env_len;
    const uint8_t *msg;
    uint32_t msg_len;
} journal_rec;

/* Bytes a record with these payloads takes, header included. */
size_t journal_rec_size(size_t env_len, size_t msg_len);

/* Writes a record at out (journal_rec_size bytes). */
void journal_rec_encode(uint8_t *out, uint32_t gen, uint64_t seq, const char *id, uint16_t flags,
                        const void *env, uint32_t env_len, const void *msg, uint32_t msg_len);

/* Sets JOURNAL_F_LAST on the record encoded at rec (and its crc). */
void journal_rec_set_last(uint8_t *rec);

/*
 * Reads the record at p (avail bytes) that belongs to generation gen.
 * Returns its size and fills *out (pointers into p), or 0 when p does not
 * hold a whole valid record of that generation: wrong magic or gen, sizes
 * past avail or the bounds below, an id that is not a queue id, unknown
 * flags, or a crc mismatch.
 */
size_t journal_rec_decode(const uint8_t *p, size_t avail, uint32_t gen, uint32_t env_max,
                          uint32_t msg_max, journal_rec *out);

/* Region header: JOURNAL_PAGE bytes at out (zeros after the fields). */
void journal_region_encode(uint8_t *out, uint32_t region, uint32_t gen, uint64_t size);
/* Whether p (JOURNAL_PAGE bytes) is a valid header of region; its gen and size. */
bool journal_region_decode(const uint8_t *p, uint32_t region, uint32_t *gen, uint64_t *size);

/* Mark slot: JOURNAL_MARK_SLOT bytes. */
void journal_mark_encode(uint8_t *out, uint64_t mark);
bool journal_mark_decode(const uint8_t *p, uint64_t *mark);

/*
 * Calls fn for every valid record of a region's body (the bytes after its
 * header; offsets are relative to the region start, so the body starts at
 * JOURNAL_PAGE), in order, until the first invalid position. Returns the
 * number of records; *end_off is where reading stopped, *torn whether
 * something that looked like a record of this gen (magic and gen) failed
 * its checks there.
 */
size_t journal_region_scan(const uint8_t *region, size_t size, uint32_t gen, uint32_t env_max,
                           uint32_t msg_max, void (*fn)(void *arg, const journal_rec *r), void *arg,
                           size_t *end_off, bool *torn);

#endif
