/*
 * spool_journal.h - private to queue/: sluice-smtpd's write-ahead journal
 * (<spool>/journal; format in journal_format.h, protocol in docs/spool.md
 * "The journal").
 *
 * Why: a 250 must wait for stable storage, and on these disks one flush of
 * blocks that are already allocated and written (fdatasync of an overwrite,
 * no metadata) costs ~0.4 ms, while the file commit (syncfs, renames,
 * fsync of queue/) costs two flushes and metadata writes, ~2 ms. So a small
 * message is appended to this preallocated file and made durable with one
 * fdatasync, and the 250 goes out then; its files in incoming/ are
 * committed into queue/ by a checkpoint shortly after, which then raises
 * the journal's mark. At start, every journaled message above the mark that
 * is not in queue/ is written there again.
 *
 * Threads: open and close on the loop thread before the committer threads
 * start and after they stop; stage/flush/switch on the syncer only;
 * write_mark on the checkpointer only.
 */
#ifndef SLUICE_SPOOL_JOURNAL_H
#define SLUICE_SPOOL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool_int.h"

#define JOURNAL_REGION_SIZE (4u << 20) /* two of them: 8 MiB + 4 KiB on disk */
/* Largest record the committer journals (envelope + message + header);
 * bigger messages take the file commit alone. Files up to this size are
 * also the ones free/ recycles, so a journaled message allocates nothing. */
#define JOURNAL_REC_MAX (SPOOL_FREE_SIZE_MAX + 32u * 1024u)
#define JOURNAL_STAGE_MAX (1u << 20) /* bytes staged for one write */
/* How long a journaled message may wait for its checkpoint (and so for
 * sluice-delivery to hear of it): one checkpoint costs three flushes, so
 * let a few milliseconds' worth gather. */
#define SPOOL_CKPT_DELAY_MS 20
/* How long a message handed to sluice-delivery may wait for its "done"
 * before the checkpointer writes it into queue/ (the runner is down, stuck
 * or far behind). Well above a Maildir delivery with its syncs. */
#define SPOOL_HANDOFF_MS 1000

typedef struct spool_journal spool_journal;

/*
 * Opens <spool>/journal, creating it when missing (written out in full and
 * synced, so later writes never allocate), and takes its lock (-EBUSY: an
 * other sluice-smtpd has it). Then recovers: every record above the mark
 * whose message is not in queue/ is written there again (synced), and the
 * mark is raised past all of them. The ids of those messages, and of the
 * ones found already in queue/, are appended to notify as " ID" each, for
 * sluice-delivery. *restored and *found count them. Errors are logged with
 * the file and what to do.
 */
int spool_journal_open(spool_fs *fs, spool_journal **out, sbuf *notify, int *restored, int *found);
void spool_journal_close(spool_journal *j);

/*
 * Syncer. stage encodes one record into the pending write: 0 and *seq, or
 * -ENOBUFS (the pending write is full: flush, then stage again), or
 * -ENOSPC (the region is full: flush, switch, then stage again).
 */
int spool_journal_stage(spool_journal *j, const char *id, const void *env, size_t env_len,
                        const void *msg, size_t msg_len, uint64_t *seq, size_t *off);
/* The pending write's bytes: a record staged at *off (above) is at
 * stage + off, until the first stage or switch after the next flush; and
 * the generation its records carry. */
const uint8_t *spool_journal_stage_buf(const spool_journal *j);
uint32_t spool_journal_gen(const spool_journal *j);
/* Writes what is staged and fdatasyncs it (nothing staged: 0). */
int spool_journal_flush(spool_journal *j);
/* The highest seq in the region a switch would reuse: every record in it
 * must be at or below the durable mark before switch is called. */
uint64_t spool_journal_other_max(const spool_journal *j);
/* Starts a new generation in the other region (staged; written by the next flush). */
void spool_journal_switch(spool_journal *j);

/* Checkpointer: records up to mark are in queue/ for good (pwrite + fdatasync). */
int spool_journal_write_mark(spool_journal *j, uint64_t mark);

/*
 * For a reader while sluice-smtpd runs (the CLI's settle), on a descriptor
 * of the journal opened read-only: the mark, and the highest sequence
 * number in the region written last. A message acknowledged before the
 * call is in queue/ or delivered once the mark reaches that number.
 */
int spool_journal_read_mark(int fd, uint64_t *mark);
int spool_journal_last_seq(int fd, uint64_t *last);

#endif
