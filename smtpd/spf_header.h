/*
 * spf_header.h - builds the value of a Received-SPF header field, private to
 * smtpd/ (the checker in spf_check.c fills spf_request.header with it).
 */
#ifndef SLUICE_SPF_HEADER_H
#define SLUICE_SPF_HEADER_H

#include <stddef.h>

#include "sluice/spf_check.h"

typedef struct spf_header_in {
    const char *receiver; /* our host name: receiver= and the comment */
    enum spf_identity identity;
    enum spf_result result;
    const char *sender; /* MAIL FROM address, "" for the null sender */
    const char *helo;   /* HELO name, "" if none */
    const char *detail; /* why, for temperror and permerror; NULL or "" = unknown */
    const char *ip;     /* the client's address as text */
} spf_header_in;

/*
 * The field's value (without "Received-SPF: ") into out, NUL-terminated,
 * folded with CRLF TAB. Tokens that do not fit in size are dropped whole.
 */
void spf_header_build(const spf_header_in *in, char *out, size_t size);

#endif
