/*
 * smtp_headers.h - a pure scanner over the start of a message that finds
 * the end of the header section and notes which of the fields submission
 * must supply (RFC 6409 8.2 Date, 8.3 Message-ID) are present. It keeps
 * no bytes: only a 16-octet window of the current field name.
 */
#ifndef SLUICE_SMTP_HEADERS_H
#define SLUICE_SMTP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hdr_scan {
    bool done; /* the header section ended */
    bool have_date;
    bool have_msgid;
    bool at_bol;
    bool in_name;
    char name[16];
    size_t name_len;
} hdr_scan;

void hdr_scan_init(hdr_scan *h);
/*
 * Scans len bytes. Returns the offset in p where the empty line that ends
 * the header section begins, or -1 when the section goes on (or was over).
 */
long hdr_scan_feed(hdr_scan *h, const char *p, size_t len);

#endif
