/*
 * envelope.h - the message envelope and its on-disk text form (pure code).
 *
 * The text form is what `sluice queue show` prints and what an admin sees
 * with `less`: a version line first, then "key: value" lines, one recipient
 * block per "rcpt:" line, and a last line "end: CRC" holding the CRC-32 of
 * every byte before it, so a truncated or altered file is detected:
 *
 *   sluice-envelope 1
 *   id: 18F3A2B4C5D6E0
 *   arrival: 2026-11-22T20:38:01.123456Z
 *   size: 1234
 *   crc32: 1a2b3c4d
 *   sender: alice@example.test
 *   ...
 *   rcpt: bob@example.test
 *   rcpt-state: pending
 *   ...
 *   end: 89abcdef
 *
 * Values are single lines: serialize replaces CR, LF and other control
 * characters in free text (replies, names) by spaces. Parsing is strict:
 * unknown version, missing required key, a bad value, a duplicate key or a
 * bad end line is an error (the caller quarantines the file).
 */
#ifndef SLUICE_ENVELOPE_H
#define SLUICE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define ENVELOPE_VERSION 1
#define QUEUE_ID_LEN 14               /* see queue_id.h */
#define ENVELOPE_MAX_SIZE (16u << 20) /* a file larger than this is corrupt */

enum rcpt_state { RCPT_PENDING = 0, RCPT_DEFERRED, RCPT_DELIVERED, RCPT_FAILED };

typedef struct env_rcpt {
    char *addr;      /* the recipient as accepted (RCPT TO), no brackets */
    char *orcpt;     /* DSN ORCPT "type;xtext" as received, or NULL */
    unsigned notify; /* SMTP_NOTIFY_* bits, 0 = not given */
    enum rcpt_state state;
    unsigned attempts;
    int64_t next_attempt; /* unix seconds; 0 = as soon as possible */
    int64_t last_attempt; /* unix seconds; 0 = never */
    char *last_reply;     /* e.g. "451 4.3.0 try later" or a local error; or NULL */
    char *relay;          /* where the last attempt went, "host[ip]:port" or "maildir"; or NULL */
    char *dsn_status;     /* "X.Y.Z" of the last outcome, or NULL */
    bool dsn_sent;        /* the final DSN (success/failure) for this rcpt was generated */
} env_rcpt;

typedef struct envelope {
    char id[QUEUE_ID_LEN + 1];
    int64_t arrival_us; /* microseconds since the epoch */
    uint64_t size;      /* bytes of the message file */
    uint32_t crc32;     /* CRC-32 (zlib) of the message file */
    char *sender;       /* "" for the null sender <> */
    char *helo;         /* NULL if unknown (local submission) */
    char *client_addr;  /* textual IP, or "local" */
    char *client_name;  /* reverse name or "unknown" */
    char *proto;        /* "SMTP", "ESMTP", "ESMTPS", "ESMTPSA", "LOCAL" ... */
    char *auth_id;      /* SASL login, or NULL */
    char *envid;        /* DSN ENVID xtext as received, or NULL */
    int ret;            /* enum smtp_ret */
    int body;           /* enum smtp_body */
    bool smtputf8;
    bool hold;
    bool delay_warned; /* a delay DSN has been sent */
    char *spf;         /* Received-SPF result word, or NULL */
    env_rcpt *rcpts;
    size_t nrcpt;
    size_t rcpt_cap;
} envelope;

void envelope_init(envelope *e);
void envelope_free(envelope *e);

/* Setters copy their string; they return 0 or -ENOMEM. NULL clears. */
int envelope_set(char **field, const char *value);
/* Appends a pending recipient (addr copied, orcpt copied or NULL). */
int envelope_add_rcpt(envelope *e, const char *addr, const char *orcpt, unsigned notify);

/* Appends the text form to out. Returns 0 or a negative errno. */
int envelope_serialize(const envelope *e, sbuf *out);

/*
 * Parses the text form into e (which must be initialised and is reset
 * first). Returns 0, or -EINVAL with a reason ("line 7: bad rcpt-state")
 * in err. Never trusts the input: bounds, digits and the end CRC are checked.
 */
int envelope_parse(const char *data, size_t len, envelope *e, char *err, size_t errlen);

const char *rcpt_state_name(enum rcpt_state s); /* "pending", ... */
/* Whether every recipient is delivered or failed. */
bool envelope_all_final(const envelope *e);

/* Formats microseconds since the epoch as RFC 3339 UTC with microseconds. */
void envelope_format_time(int64_t us, char *out, size_t outsz);

/* ---- added by the spool module ---- */

/* Bounds of the text form: a value longer than ENVELOPE_MAX_VALUE bytes is
 * not serialised (-EINVAL) and not parsed; last_reply is cut to
 * ENVELOPE_MAX_REPLY bytes on serialise (on a UTF-8 boundary). */
#define ENVELOPE_MAX_VALUE 4096u
#define ENVELOPE_MAX_REPLY 1000u
#define ENVELOPE_MAX_RCPTS 100000u

/* Whether two envelopes hold the same data (NULL and "" differ). */
bool envelope_equal(const envelope *a, const envelope *b);

/* Parses envelope_format_time's form; 0 or -EINVAL. */
int envelope_parse_time(const char *s, size_t len, int64_t *us);

#endif
