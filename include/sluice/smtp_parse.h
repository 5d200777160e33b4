/*
 * smtp_parse.h - pure parsers for SMTP command lines (RFC 5321), paths
 * (RFC 5321 4.1.2, RFC 6531) and the ESMTP parameters of MAIL and RCPT
 * (SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT, AUTH).
 *
 * No I/O, no allocation, no global state: bytes in, a struct out. Inputs are
 * lines WITHOUT the trailing CRLF and are not NUL-terminated.
 */
#ifndef SLUICE_SMTP_PARSE_H
#define SLUICE_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1: path 256 octets, local part 64, domain 255. */
#define SMTP_PATH_MAX 256
#define SMTP_LOCAL_MAX 64
#define SMTP_DOMAIN_MAX 255
#define SMTP_ENVID_MAX 100 /* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500 /* RFC 3461 4.2 */

typedef enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_BDAT,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
} smtp_verb;

/* Result codes shared by the parsers; the session maps each to one reply. */
typedef enum smtp_perr {
    SMTP_POK = 0,
    SMTP_PERR_SYNTAX,            /* 501 5.5.4 (or 500 5.5.2 for a garbled line) */
    SMTP_PERR_ADDR_SYNTAX,       /* 501 5.1.3 (RCPT) / 501 5.1.7 (MAIL) */
    SMTP_PERR_ADDR_TOO_LONG,     /* 501 5.1.3 */
    SMTP_PERR_PARAM_UNKNOWN,     /* 555 5.5.4 */
    SMTP_PERR_PARAM_SYNTAX,      /* 501 5.5.4 */
    SMTP_PERR_PARAM_DUP,         /* 501 5.5.4 */
    SMTP_PERR_UTF8_NOT_DECLARED, /* 553 5.6.7: non-ASCII address without SMTPUTF8 */
} smtp_perr;

typedef struct smtp_cmd {
    smtp_verb verb;
    const char *arg; /* points into the line: text after the verb and spaces */
    size_t arg_len;  /* trailing spaces trimmed */
} smtp_cmd;

/*
 * Splits a command line. The verb is case-insensitive. For MAIL and RCPT the
 * "FROM:" / "TO:" keyword is part of the verb match: arg starts after the
 * colon (and after any spaces, which RFC 5321 forbids but clients send).
 * Returns SMTP_POK, or SMTP_PERR_SYNTAX for MAIL/RCPT without FROM:/TO:.
 * An unrecognised verb is SMTP_POK with verb == SMTP_VERB_UNKNOWN.
 */
smtp_perr smtp_cmd_parse(const char *line, size_t len, smtp_cmd *out);

typedef struct smtp_path {
    /*
     * The mailbox, NUL-terminated, without angle brackets and without any
     * source route ("@a,@b:" is accepted and dropped). Quoted local parts are
     * kept in their quoted form as received. Empty for the null path "<>".
     */
    char addr[SMTP_PATH_MAX + 1];
    size_t len;
    size_t at;       /* index of the '@' that splits local@domain; == len if none */
    bool is_null;    /* "<>" */
    bool non_ascii;  /* any octet >= 0x80 (needs SMTPUTF8) */
    bool ip_literal; /* domain is "[...]" */
} smtp_path;

/*
 * Parses a path at the start of s: "<...>" with optional source route, a
 * quoted or dot-atom local part, and a domain (dot-separated labels, or an
 * address literal "[1.2.3.4]" / "[IPv6:...]"). A domain-less address is
 * accepted only as "postmaster" (any case), for RCPT. *consumed is set to
 * the number of bytes used (up to and including '>').
 * allow_null: "<>" is valid (MAIL FROM).
 */
smtp_perr smtp_path_parse(const char *s, size_t len, bool allow_null, smtp_path *out,
                          size_t *consumed);

enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
enum smtp_ret { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

#define SMTP_NOTIFY_NEVER 0x1u
#define SMTP_NOTIFY_SUCCESS 0x2u
#define SMTP_NOTIFY_FAILURE 0x4u
#define SMTP_NOTIFY_DELAY 0x8u

typedef struct smtp_mail_args {
    smtp_path from;
    uint64_t size; /* SIZE=, 0 if absent */
    bool has_size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    char envid[SMTP_ENVID_MAX + 1]; /* xtext as received (still encoded); "" if absent */
    char auth[SMTP_PATH_MAX + 3];   /* AUTH= value as received; "" if absent */
} smtp_mail_args;

typedef struct smtp_rcpt_args {
    smtp_path to;
    unsigned notify;                /* SMTP_NOTIFY_* bits; 0 if absent */
    char orcpt[SMTP_ORCPT_MAX + 1]; /* "addr-type;xtext" as received; "" if absent */
} smtp_rcpt_args;

/*
 * Parse the argument of MAIL FROM: / RCPT TO: (smtp_cmd.arg): the path, then
 * space-separated ESMTP keyword[=value] parameters, keywords case-insensitive.
 * Checks: NOTIFY=NEVER alone or any of SUCCESS,FAILURE,DELAY; RET=FULL|HDRS;
 * BODY=7BIT|8BITMIME|BINARYMIME; SIZE a decimal that fits 64 bits; ENVID and
 * ORCPT valid xtext within their bounds; ORCPT has "type;" prefix; no
 * parameter twice. A non-ASCII path without SMTPUTF8 (MAIL) is
 * SMTP_PERR_UTF8_NOT_DECLARED; for RCPT pass the transaction's smtputf8 flag.
 * On error, *bad (if not NULL) points to the offending parameter text.
 */
smtp_perr smtp_mail_args_parse(const char *arg, size_t len, smtp_mail_args *out, const char **bad);
smtp_perr smtp_rcpt_args_parse(const char *arg, size_t len, bool smtputf8, smtp_rcpt_args *out,
                               const char **bad);

/*
 * BDAT argument: "<size> [LAST]". size must be decimal, no sign, fits 64 bits.
 */
smtp_perr smtp_bdat_args_parse(const char *arg, size_t len, uint64_t *size, bool *last);

/* RFC 3461 4: xtext ("+XX" hex escapes, printable ASCII except '+' and '='). */
bool smtp_xtext_valid(const char *s, size_t len);
/* Decodes into out (NUL-terminated). Returns decoded length or -1 if invalid/too long. */
long smtp_xtext_decode(const char *s, size_t len, char *out, size_t outsz);

/*
 * HELO/EHLO argument: a domain or address literal. Lenient as Postfix is by
 * default: any non-empty run of printable non-space ASCII (or UTF-8) up to
 * 255 octets. Returns SMTP_POK or SMTP_PERR_SYNTAX.
 */
smtp_perr smtp_helo_parse(const char *arg, size_t len);

/*
 * Length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) that starts at s, reading at most len
 * bytes; 0 if s does not start with one. An ASCII byte counts as 1.
 */
size_t smtp_utf8_seq_len(const char *s, size_t len);

#endif
