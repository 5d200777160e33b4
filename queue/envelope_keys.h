/*
 * envelope_keys.h - private to queue/envelope*.c: the key table of the
 * envelope text form, shared by the serializer and the parser so the two
 * cannot drift apart.
 *
 * Adding a key compatibly: the parser rejects unknown keys on purpose (a
 * reader that silently ignored a key it does not understand could lose
 * state, e.g. a hold flag). So a new key needs ENVELOPE_VERSION 2: teach the
 * parser to accept versions 1 and 2 and the new key only under 2, and let
 * the serializer keep writing version 1 whenever none of the new keys has a
 * non-default value, so that a rollback to the old binary can still read
 * most of the queue (and quarantines, never misreads, the rest).
 */
#ifndef SLUICE_ENVELOPE_KEYS_H
#define SLUICE_ENVELOPE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_MAGIC "sluice-envelope"

enum env_key {
    /* message keys: only before the first "rcpt:" line */
    EK_ID,
    EK_ARRIVAL,
    EK_SIZE,
    EK_CRC32,
    EK_SENDER,
    EK_HELO,
    EK_CLIENT_ADDR,
    EK_CLIENT_NAME,
    EK_PROTO,
    EK_AUTH,
    EK_ENVID,
    EK_RET,
    EK_BODY,
    EK_SMTPUTF8,
    EK_HOLD,
    EK_DELAY_WARNED,
    EK_SPF,
    /* recipient keys: "rcpt:" opens a block, the others belong to it */
    EK_RCPT,
    EK_RCPT_ORCPT,
    EK_RCPT_NOTIFY,
    EK_RCPT_STATE,
    EK_RCPT_ATTEMPTS,
    EK_RCPT_NEXT_ATTEMPT,
    EK_RCPT_LAST_ATTEMPT,
    EK_RCPT_LAST_REPLY,
    EK_RCPT_RELAY,
    EK_RCPT_DSN_STATUS,
    EK_RCPT_DSN_SENT,
    EK_COUNT
};

#define EK_FIRST_RCPT EK_RCPT

struct env_key_info {
    const char *name;
    bool required; /* the serializer always writes it; the parser demands it */
};

extern const struct env_key_info env_keys[EK_COUNT];

/* Latest time the format can hold: 9999-12-31T23:59:59.999999Z. */
#define ENVELOPE_TIME_MAX INT64_C(253402300799999999)

/* RFC 3339 "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" is exactly this long. */
#define ENVELOPE_TIME_LEN 27

/* NOTIFY keyword list; returns false for bits the format cannot hold. */
bool env_notify_valid(unsigned notify);

#endif
