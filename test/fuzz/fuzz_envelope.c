/*
 * fuzz_envelope.c - libFuzzer target for envelope_parse (on-disk data is
 * untrusted input).
 *
 * Properties checked (abort() on violation, so the fuzzer reports them):
 *   - the parser never crashes, leaks or reads out of bounds (ASan);
 *   - a failure leaves the envelope empty and names a line ("line N: ...");
 *   - whatever parses, serialises, and parses back equal (envelope_equal),
 *     and serialising that gives the very same bytes (one spelling).
 *
 * Every input is tried twice: as is, and with its last "end:" line replaced
 * by the right CRC. Without the second try nearly every mutation would stop
 * at the checksum and the fuzzer would never reach the key/value grammar.
 *
 * Build (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     test/fuzz/fuzz_envelope.c queue/envelope.c queue/envelope_parse.c \
 *     queue/queue_id.c common/buf.c -lz -o fuzz_envelope
 *   ./fuzz_envelope test/fuzz/corpus/envelope
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sluice/envelope.h"

static void check(const char *data, size_t len)
{
    envelope e, f;
    sbuf a, b;
    char err[256];

    envelope_init(&e);
    envelope_init(&f);
    if (envelope_parse(data, len, &e, err, sizeof(err)) != 0) {
        if (strncmp(err, "line ", 5) != 0 || e.nrcpt != 0 || e.sender != NULL)
            abort();
        envelope_free(&e);
        return;
    }
    sbuf_init(&a, 0);
    sbuf_init(&b, 0);
    if (envelope_serialize(&e, &a) != 0)
        abort(); /* parsed, so it must be writable */
    if (envelope_parse(a.data, a.len, &f, err, sizeof(err)) != 0) {
        fprintf(stderr, "re-parse failed: %s\n", err);
        abort();
    }
    if (!envelope_equal(&e, &f))
        abort();
    if (envelope_serialize(&f, &b) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
    sbuf_free(&a);
    sbuf_free(&b);
    envelope_free(&e);
    envelope_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data;

    if (size > ENVELOPE_MAX_SIZE + 1)
        return 0;
    check(d, size);

    /* Again with a valid end line: drop a trailing "end: ..." line, end
     * the body with a newline, append the right CRC. */
    size_t body = size;
    if (body > 0 && d[body - 1] == '\n') {
        size_t start = body - 1;
        while (start > 0 && d[start - 1] != '\n')
            start--;
        if (body - start >= 5 && memcmp(d + start, "end: ", 5) == 0)
            body = start;
    }
    char *fixed = malloc(body + 32);
    if (!fixed)
        return 0;
    memcpy(fixed, d, body);
    if (body > 0 && fixed[body - 1] != '\n')
        fixed[body++] = '\n';
    uLong crc = crc32(0L, (const Bytef *)fixed, (uInt)body);
    int n = snprintf(fixed + body, 32, "end: %08lx\n", crc);
    check(fixed, body + (size_t)n);
    free(fixed);
    return 0;
}
