/*
 * journal_format.c - encoding and decoding of the spool journal's records,
 * region headers and mark slots (layout in journal_format.h). Pure: bytes
 * in, bytes out; every length read from the file is checked against what
 * is there before it is used.
 */
#include <string.h>
#include <zlib.h>

#include "sluice/journal_format.h"
#include "sluice/queue_id.h"

static const uint8_t REC_MAGIC[4] = {'S', 'L', 'J', '1'};
static const uint8_t REGION_MAGIC[4] = {'S', 'L', 'J', 'R'};
static const uint8_t MARK_MAGIC[4] = {'S', 'L', 'J', 'M'};

/* Field offsets of a record header. */
enum {
    R_MAGIC = 0,
    R_GEN = 4,
    R_SEQ = 8,
    R_ID = 16,
    R_FLAGS = R_ID + QUEUE_ID_LEN, /* 30 */
    R_ENV_LEN = 32,
    R_MSG_LEN = 36,
    R_CRC = 40,
};
_Static_assert(R_CRC + 4 == JOURNAL_REC_HDR, "record header layout");
_Static_assert(QUEUE_ID_LEN == 14, "record header layout assumes 14-character ids");

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    return (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), p, n);
}

/* crc of a record: its header up to the crc field, then both payloads. */
static uint32_t rec_crc(const uint8_t *hdr, const uint8_t *payload, size_t payload_len)
{
    uint32_t c = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), hdr, R_CRC);
    return (uint32_t)crc32_z(c, payload, payload_len);
}

size_t journal_rec_size(size_t env_len, size_t msg_len)
{
    return JOURNAL_REC_HDR + env_len + msg_len;
}

void journal_rec_encode(uint8_t *out, uint32_t gen, uint64_t seq, const char *id, uint16_t flags,
                        const void *env, uint32_t env_len, const void *msg, uint32_t msg_len)
{
    memcpy(out + R_MAGIC, REC_MAGIC, 4);
    put32(out + R_GEN, gen);
    put64(out + R_SEQ, seq);
    memcpy(out + R_ID, id, QUEUE_ID_LEN);
    put16(out + R_FLAGS, flags);
    put32(out + R_ENV_LEN, env_len);
    put32(out + R_MSG_LEN, msg_len);
    uint8_t *payload = out + JOURNAL_REC_HDR;
    if (env_len)
        memcpy(payload, env, env_len);
    if (msg_len)
        memcpy(payload + env_len, msg, msg_len);
    put32(out + R_CRC, rec_crc(out, payload, (size_t)env_len + msg_len));
}

void journal_rec_set_last(uint8_t *rec)
{
    put16(rec + R_FLAGS, (uint16_t)(get16(rec + R_FLAGS) | JOURNAL_F_LAST));
    size_t payload = (size_t)get32(rec + R_ENV_LEN) + get32(rec + R_MSG_LEN);
    put32(rec + R_CRC, rec_crc(rec, rec + JOURNAL_REC_HDR, payload));
}

size_t journal_rec_decode(const uint8_t *p, size_t avail, uint32_t gen, uint32_t env_max,
                          uint32_t msg_max, journal_rec *out)
{
    if (avail < JOURNAL_REC_HDR || memcmp(p + R_MAGIC, REC_MAGIC, 4) != 0 ||
        get32(p + R_GEN) != gen)
        return 0;
    uint32_t env_len = get32(p + R_ENV_LEN), msg_len = get32(p + R_MSG_LEN);
    uint16_t flags = get16(p + R_FLAGS);
    if (env_len > env_max || msg_len > msg_max || (flags & ~JOURNAL_F_KNOWN) != 0)
        return 0;
    size_t len = journal_rec_size(env_len, msg_len);
    if (len > avail || !queue_id_valid((const char *)p + R_ID, QUEUE_ID_LEN))
        return 0;
    if (get32(p + R_CRC) != rec_crc(p, p + JOURNAL_REC_HDR, len - JOURNAL_REC_HDR))
        return 0;
    out->gen = gen;
    out->seq = get64(p + R_SEQ);
    memcpy(out->id, p + R_ID, QUEUE_ID_LEN);
    out->id[QUEUE_ID_LEN] = '\0';
    out->flags = flags;
    out->env = p + JOURNAL_REC_HDR;
    out->env_len = env_len;
    out->msg = out->env + env_len;
    out->msg_len = msg_len;
    return len;
}

/* Region header fields: magic, version, region, gen, size, crc. */
void journal_region_encode(uint8_t *out, uint32_t region, uint32_t gen, uint64_t size)
{
    memset(out, 0, JOURNAL_PAGE);
    memcpy(out, REGION_MAGIC, 4);
    put32(out + 4, JOURNAL_VERSION);
    put32(out + 8, region);
    put32(out + 12, gen);
    put64(out + 16, size);
    put32(out + 24, crc_of(out, 24));
}

bool journal_region_decode(const uint8_t *p, uint32_t region, uint32_t *gen, uint64_t *size)
{
    if (memcmp(p, REGION_MAGIC, 4) != 0 || get32(p + 4) != JOURNAL_VERSION ||
        get32(p + 8) != region || get32(p + 24) != crc_of(p, 24))
        return false;
    *gen = get32(p + 12);
    *size = get64(p + 16);
    return true;
}

void journal_mark_encode(uint8_t *out, uint64_t mark)
{
    memset(out, 0, JOURNAL_MARK_SLOT);
    memcpy(out, MARK_MAGIC, 4);
    put32(out + 4, JOURNAL_VERSION);
    put64(out + 8, mark);
    put32(out + 16, crc_of(out, 16));
}

bool journal_mark_decode(const uint8_t *p, uint64_t *mark)
{
    if (memcmp(p, MARK_MAGIC, 4) != 0 || get32(p + 4) != JOURNAL_VERSION ||
        get32(p + 16) != crc_of(p, 16))
        return false;
    *mark = get64(p + 8);
    return true;
}

size_t journal_region_scan(const uint8_t *region, size_t size, uint32_t gen, uint32_t env_max,
                           uint32_t msg_max, void (*fn)(void *arg, const journal_rec *r), void *arg,
                           size_t *end_off, bool *torn)
{
    size_t off = JOURNAL_PAGE, n = 0;
    uint64_t prev = 0;

    *torn = false;
    while (off < size) {
        journal_rec r;
        size_t len = journal_rec_decode(region + off, size - off, gen, env_max, msg_max, &r);
        if (len != 0 && n > 0 && r.seq <= prev)
            len = 0; /* sequence numbers only grow within a generation */
        if (len == 0) {
            *torn = size - off >= 8 && memcmp(region + off, REC_MAGIC, 4) == 0 &&
                    get32(region + off + R_GEN) == gen;
            break;
        }
        fn(arg, &r);
        prev = r.seq;
        n++;
        off += len;
        if (r.flags & JOURNAL_F_LAST) {
            size_t rem = off % JOURNAL_PAGE;
            if (rem && size - off > JOURNAL_PAGE - rem)
                off += JOURNAL_PAGE - rem;
            else if (rem)
                off = size;
        }
    }
    *end_off = off < size ? off : size;
    return n;
}
