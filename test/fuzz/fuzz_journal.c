/*
 * fuzz_journal.c - libFuzzer target for the spool journal reader
 * (journal_region_scan, journal_rec_decode, the header and mark decoders):
 * the journal is read back at every start of sluice-smtpd, and on-disk data
 * is untrusted input.
 *
 * Input: 4 bytes of generation, then the body of a region (what follows its
 * header page). Properties checked (abort() on violation):
 *   - no crash, leak or out-of-bounds read (ASan);
 *   - every record the scan accepts lies inside the input, has a queue id,
 *     and encodes back to the very same bytes (one spelling);
 *   - sequence numbers of accepted records grow.
 * Seeds: test/fuzz/corpus/journal/ (valid regions with 1-3 writes).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/journal_format.h"
#include "sluice/queue_id.h"

struct ctx {
    const uint8_t *base;
    size_t size;
    size_t off; /* where the next accepted record must start, at least */
    uint64_t prev;
    size_t n;
};

static void check(void *arg, const journal_rec *r)
{
    struct ctx *c = arg;
    const uint8_t *start = r->env - JOURNAL_REC_HDR;
    size_t len = journal_rec_size(r->env_len, r->msg_len);
    if (start < c->base + c->off || start + len > c->base + c->size)
        abort();
    if (!queue_id_valid(r->id, QUEUE_ID_LEN) || (c->n > 0 && r->seq <= c->prev))
        abort();
    uint8_t *again = malloc(len);
    if (!again)
        return;
    journal_rec_encode(again, r->gen, r->seq, r->id, 0, r->env, r->env_len, r->msg, r->msg_len);
    if (r->flags & JOURNAL_F_LAST)
        journal_rec_set_last(again);
    if (memcmp(again, start, len) != 0)
        abort();
    free(again);
    c->off = (size_t)(start - c->base) + len;
    c->prev = r->seq;
    c->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > (1u << 20))
        return 0;
    uint32_t gen = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                   (uint32_t)data[3] << 24;
    size_t body = size - 4;
    size_t rsize = JOURNAL_PAGE + body;
    uint8_t *region = malloc(rsize);
    if (!region)
        return 0;
    journal_region_encode(region, 0, gen, rsize);
    memcpy(region + JOURNAL_PAGE, data + 4, body);

    struct ctx c = {.base = region, .size = rsize, .off = JOURNAL_PAGE};
    size_t end;
    bool torn;
    size_t n = journal_region_scan(region, rsize, gen, 1u << 20, 1u << 20, check, &c, &end, &torn);
    if (n != c.n || end > rsize || end < JOURNAL_PAGE)
        abort();

    /* The fixed-size decoders on the raw bytes. */
    uint32_t g;
    uint64_t v;
    if (body >= JOURNAL_PAGE)
        (void)journal_region_decode(data + 4, 0, &g, &v);
    if (body >= JOURNAL_MARK_SLOT)
        (void)journal_mark_decode(data + 4, &v);
    free(region);
    return 0;
}
