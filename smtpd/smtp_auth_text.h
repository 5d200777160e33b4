/*
 * smtp_auth_text.h - pure text helpers of the AUTH backends, private to
 * smtpd/ (see smtp_auth_text.c).
 */
#ifndef SLUICE_SMTP_AUTH_TEXT_H
#define SLUICE_SMTP_AUTH_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the space-separated list holds name (exact, n bytes). */
bool auth_list_has(const char *list, const char *name, size_t n);

/*
 * The configured mechanism list, upper case, one space apart, without
 * mechanisms that are never offered and without duplicates (each dropped
 * one is logged). Allocated; NULL when out of memory.
 */
char *auth_mechs_normalize(const char *s);

/*
 * Strict base64 (RFC 4648 section 4, padded, canonical, no blanks). With out
 * non-NULL the data is decoded there (room for len / 4 * 3 bytes). The
 * decoded length, or -1 when s is not base64.
 */
long auth_b64_decode(const char *s, size_t len, unsigned char *out);

/* Splits "IP;PORT" (a numeric address) into its parts; false when it is not that. */
bool auth_split_ipport(const char *s, char *ip, size_t ipsize, char *port, size_t portsize);

/* Undoes Dovecot's tab escaping (\001 then 0, 1, t, r, n or l) in place; the new length. */
size_t dovecot_tab_unescape(char *s, size_t n);

/*
 * Vets a login of n bytes (no controls or blanks, at most one '@', not at
 * either end; at most SMTP_AUTH_USER_MAX) and copies it to dst (n + 1
 * bytes) with its domain lower-cased. NULL, or why it was refused (for the
 * Cyrus backend's error; nothing is copied then).
 */
const char *auth_identity_take(char *dst, const char *src, size_t n);

/* auth_identity_take() as a yes/no. */
bool auth_copy_identity(char *dst, const char *src, size_t n);

#endif
