/*
 * smtp_data.h - the DATA reader: a pure state machine over bytes.
 *
 * It finds the end of DATA (only CRLF "." CRLF; RFC 5321 4.1.1.4),
 * removes exactly one leading dot from dot-stuffed lines (4.5.2), counts
 * the message size, and flags what makes the message unacceptable without
 * stopping the scan, so the session stays in sync with the client:
 *   - a bare CR or bare LF anywhere (SMTP smuggling, CVE-2023-51764 class:
 *     such bytes can never end the message, and a message containing them
 *     is refused as a whole, so nothing pipelined behind a fake end marker
 *     is ever executed as a command);
 *   - a line longer than 1000 octets including CRLF (4.5.3.1.6);
 *   - more than max_size octets after unstuffing (RFC 1870).
 * Input may arrive split at any byte; the result does not depend on the
 * split. No I/O and no allocation: unstuffed bytes go to an emit callback.
 */
#ifndef SLUICE_SMTP_DATA_H
#define SLUICE_SMTP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_DATA_LINE_MAX 1000 /* octets, including CRLF */

typedef void (*smtp_data_emit_fn)(void *arg, const char *p, size_t n);

typedef struct smtp_data_reader {
    int state;
    size_t line_len;
    uint64_t size;     /* octets accepted so far (after unstuffing) */
    uint64_t max_size; /* 0 = no limit */
    bool bare_newline; /* a CR or LF not part of a CRLF pair was seen */
    bool long_line;
    bool too_big; /* size passed max_size: later bytes are not emitted */
    bool done;
} smtp_data_reader;

void smtp_data_init(smtp_data_reader *r, uint64_t max_size);

/*
 * Feeds len bytes. Emits message bytes (only while !too_big). Returns the
 * number of bytes consumed: all of them, or fewer when the end marker was
 * found (r->done is then true and the rest belongs to the next command).
 */
size_t smtp_data_feed(smtp_data_reader *r, const char *in, size_t len, smtp_data_emit_fn emit,
                      void *arg);

#endif
