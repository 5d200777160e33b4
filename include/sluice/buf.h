/*
 * buf.h - a length-counted, growable byte buffer with a hard upper bound.
 *
 * Every buffer that grows with client or disk input has a cap; appending past
 * it fails with -ENOBUFS instead of growing. Functions return 0 or a negative
 * errno value (libuv style).
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct sbuf {
    char *data; /* always NUL-terminated when data != NULL */
    size_t len;
    size_t cap;   /* allocated bytes */
    size_t limit; /* 0 = no limit (only for program-generated data) */
} sbuf;

void sbuf_init(sbuf *b, size_t limit);
void sbuf_free(sbuf *b);
void sbuf_reset(sbuf *b); /* len = 0, keeps memory */
int sbuf_reserve(sbuf *b, size_t extra);
int sbuf_append(sbuf *b, const void *data, size_t len);
int sbuf_puts(sbuf *b, const char *s);
int sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sbuf_vprintf(sbuf *b, const char *fmt, va_list ap);
/* Removes the first n bytes. */
void sbuf_consume(sbuf *b, size_t n);

#endif
