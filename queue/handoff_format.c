/*
 * handoff_format.c - the journal hand-off's datagrams (handoff_format.h).
 * Pure: everything a peer sends is checked before it is used.
 */
#include <errno.h>
#include <string.h>

#include "sluice/handoff_format.h"
#include "sluice/queue_id.h"

bool handoff_is_records(const void *p, size_t len)
{
    return len >= HANDOFF_MAGIC_LEN && memcmp(p, HANDOFF_MAGIC, HANDOFF_MAGIC_LEN) == 0;
}

void handoff_header(uint8_t out[HANDOFF_HDR_LEN], uint32_t gen)
{
    memcpy(out, HANDOFF_MAGIC, HANDOFF_MAGIC_LEN);
    for (int i = 0; i < 4; i++)
        out[HANDOFF_MAGIC_LEN + i] = (uint8_t)(gen >> (8 * i));
}

int handoff_records_parse(const void *p, size_t len, uint32_t env_max, uint32_t msg_max,
                          void (*fn)(void *arg, const journal_rec *r), void *arg, size_t *rest)
{
    const uint8_t *b = p;
    *rest = len;
    if (!handoff_is_records(p, len) || len < HANDOFF_HDR_LEN)
        return -EINVAL;
    uint32_t gen = 0;
    for (int i = 0; i < 4; i++)
        gen |= (uint32_t)b[HANDOFF_MAGIC_LEN + i] << (8 * i);
    size_t off = HANDOFF_HDR_LEN;
    int n = 0;
    while (off < len) {
        journal_rec r;
        size_t used = journal_rec_decode(b + off, len - off, gen, env_max, msg_max, &r);
        if (used == 0)
            break;
        fn(arg, &r);
        n++;
        off += used;
    }
    *rest = len - off;
    return n;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

size_t handoff_next_word(const char *text, size_t len, size_t *pos, size_t *start)
{
    size_t i = *pos;
    while (i < len && is_space(text[i]))
        i++;
    *start = i;
    while (i < len && !is_space(text[i]))
        i++;
    *pos = i;
    return i - *start;
}

/* "SEQ:ID" at p (n bytes): canonical decimal, a colon, a queue id. */
static bool parse_item(const char *p, size_t n, uint64_t *seq, char id[QUEUE_ID_LEN + 1])
{
    if (n < 2 + QUEUE_ID_LEN || p[n - QUEUE_ID_LEN - 1] != ':')
        return false;
    size_t digits = n - QUEUE_ID_LEN - 1;
    if (digits > 20 || (digits > 1 && p[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (!queue_id_valid(p + digits + 1, QUEUE_ID_LEN))
        return false;
    *seq = v;
    memcpy(id, p + digits + 1, QUEUE_ID_LEN);
    id[QUEUE_ID_LEN] = '\0';
    return true;
}

int handoff_ack_parse(const char *text, size_t len,
                      void (*fn)(void *arg, bool keep, uint64_t seq, const char *id), void *arg,
                      size_t *bad)
{
    size_t i = 0, w, wl = handoff_next_word(text, len, &i, &w);
    *bad = 0;
    bool keep;
    if (wl == 4 && memcmp(text + w, "done", 4) == 0)
        keep = false;
    else if (wl == 4 && memcmp(text + w, "keep", 4) == 0)
        keep = true;
    else
        return -EINVAL;
    int n = 0;
    while ((wl = handoff_next_word(text, len, &i, &w)) > 0) {
        uint64_t seq;
        char id[QUEUE_ID_LEN + 1];
        if (parse_item(text + w, wl, &seq, id)) {
            fn(arg, keep, seq, id);
            n++;
        } else {
            (*bad)++;
        }
    }
    return n;
}

size_t handoff_ack_item(char *out, uint64_t seq, const char *id)
{
    char digits[21];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq);
    size_t k = 0;
    out[k++] = ' ';
    while (nd)
        out[k++] = digits[--nd];
    out[k++] = ':';
    memcpy(out + k, id, QUEUE_ID_LEN);
    return k + QUEUE_ID_LEN;
}
