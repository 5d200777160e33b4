/*
 * smtp_headers.c - header-section scanner (see smtp_headers.h).
 */
#include "sluice/smtp_headers.h"

#include <strings.h>

void hdr_scan_init(hdr_scan *h)
{
    *h = (hdr_scan){.at_bol = true};
}

static void field_done(hdr_scan *h)
{
    if (h->name_len == 4 && strncasecmp(h->name, "date", 4) == 0)
        h->have_date = true;
    else if (h->name_len == 10 && strncasecmp(h->name, "message-id", 10) == 0)
        h->have_msgid = true;
}

long hdr_scan_feed(hdr_scan *h, const char *p, size_t len)
{
    for (size_t i = 0; i < len && !h->done; i++) {
        char c = p[i];
        if (h->at_bol) {
            h->at_bol = false;
            if (c == '\r' || c == '\n') {
                h->done = true; /* an empty line: the body follows */
                return (long)i;
            }
            h->name_len = 0;
            h->in_name = c != ' ' && c != '\t'; /* else a continuation line */
        }
        if (c == '\n') {
            h->at_bol = true;
            continue;
        }
        if (!h->in_name)
            continue;
        if (c == ':') {
            h->in_name = false;
            field_done(h);
        } else if (h->name_len < sizeof(h->name)) {
            h->name[h->name_len++] = c;
        } else {
            h->in_name = false; /* longer than any name we look for */
        }
    }
    return -1;
}
