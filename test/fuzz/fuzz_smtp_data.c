/*
 * fuzz_smtp_data.c - the DATA reader fed arbitrary bytes at arbitrary
 * splits. The first input byte seeds the split points; the result (output
 * bytes, bytes consumed, every flag) must equal the one-piece run's, since
 * where reads happen to end must never change what a message is.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/smtp_data.h"

struct out {
    unsigned char *buf;
    size_t len, cap;
};

static void emit(void *arg, const char *p, size_t n)
{
    struct out *o = arg;
    if (o->len + n > o->cap)
        abort(); /* the reader emitted more than it was given */
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static size_t run(const uint8_t *in, size_t len, unsigned seed, struct out *o, smtp_data_reader *r)
{
    smtp_data_init(r, 4096);
    size_t off = 0;
    while (off < len && !r->done) {
        size_t n = len - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % (n < 64 ? n : 64);
        }
        /* exact-size copy: ASan sees any read past the chunk */
        char *chunk = malloc(n);
        if (!chunk)
            abort();
        memcpy(chunk, in + off, n);
        size_t used = smtp_data_feed(r, chunk, n, emit, o);
        free(chunk);
        if (used > n || (used < n && !r->done))
            abort();
        off += used;
    }
    return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0] | 1u;
    data++;
    size--;
    unsigned char *b1 = malloc(size + 1), *b2 = malloc(size + 1);
    if (!b1 || !b2)
        abort();
    struct out o1 = {b1, 0, size}, o2 = {b2, 0, size};
    smtp_data_reader r1, r2;
    size_t c1 = run(data, size, 0, &o1, &r1);
    size_t c2 = run(data, size, seed, &o2, &r2);
    if (c1 != c2 || o1.len != o2.len || memcmp(b1, b2, o1.len) != 0 || r1.done != r2.done ||
        r1.bare_newline != r2.bare_newline || r1.long_line != r2.long_line ||
        r1.too_big != r2.too_big || r1.size != r2.size)
        abort();
    free(b1);
    free(b2);
    return 0;
}
