/*
 * fuzz_handoff.c - libFuzzer target for the journal hand-off's datagrams
 * (handoff_format.h): sluice-delivery parses the records sluice-smtpd
 * hands over, and sluice-smtpd parses the runner's answers; either side
 * treats the other's bytes as untrusted.
 *
 * Properties checked (abort() on violation):
 *   - no crash, leak or out-of-bounds read (ASan);
 *   - every record accepted lies inside the datagram, back to back, and
 *     the unread rest is what follows the last one;
 *   - every answer item accepted encodes back to the very bytes it was
 *     parsed from (one spelling), and accepted + malformed = items given.
 * Seeds: test/fuzz/corpus/handoff/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/handoff_format.h"

struct ctx {
    const uint8_t *base, *next;
    size_t size;
};

static void rec(void *arg, const journal_rec *r)
{
    struct ctx *c = arg;
    const uint8_t *start = r->env - JOURNAL_REC_HDR;
    size_t len = journal_rec_size(r->env_len, r->msg_len);
    if (start != c->next || start + len > c->base + c->size || r->msg != r->env + r->env_len)
        abort();
    c->next = start + len;
}

struct acks {
    const char *text;
    size_t len, found;
};

static void ack(void *arg, bool keep, uint64_t seq, const char *id)
{
    struct acks *a = arg;
    char item[HANDOFF_ACK_ITEM_MAX + 1];
    size_t n = handoff_ack_item(item, seq, id);
    item[n] = '\0';
    /* The canonical spelling (without its leading space) is in the text. */
    if (!memmem(a->text, a->len, item + 1, n - 1))
        abort();
    (void)keep;
    a->found++;
}

static size_t count_items(const char *t, size_t len)
{
    size_t i = 0, n = 0;
    bool in = false, verb = true;
    for (; i < len; i++) {
        bool space = t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n';
        if (!space && !in) {
            if (verb)
                verb = false;
            else
                n++;
        }
        in = !space;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {data, data + HANDOFF_HDR_LEN, size};
    size_t rest;
    int n = handoff_records_parse(data, size, 1u << 20, 1u << 20, rec, &c, &rest);
    if (n >= 0 && (size_t)(c.next - data) + rest != size)
        abort();
    struct acks a = {(const char *)data, size, 0};
    size_t bad;
    int k = handoff_ack_parse((const char *)data, size, ack, &a, &bad);
    if (k >= 0 && ((size_t)k != a.found || a.found + bad != count_items(a.text, size)))
        abort();
    return 0;
}
