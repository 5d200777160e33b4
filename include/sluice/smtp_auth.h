/*
 * smtp_auth.h - server side of SMTP AUTH (RFC 4954) on Cyrus SASL.
 *
 * Passwords live in a sasldb file made with saslpasswd2 (config key sasl_db);
 * nothing under /etc/sasl2 is read or needed: every option Cyrus asks for
 * comes from sluice.conf through a getopt callback. Users log in as
 * "user@domain"; `saslpasswd2 -f DB -u domain -c user` creates that login.
 *
 * Threading: smtp_auth_init and smtp_auth_done run once, on the main thread,
 * before any session starts and after all have ended. smtp_auth_start and
 * smtp_auth_step may block (they read the sasldb file): run them on libuv's
 * thread pool (uv_queue_work), never on the loop. Distinct smtp_auth objects
 * may be used from different threads at once; one object must not be.
 * smtp_auth_new, smtp_auth_free, smtp_auth_mechs and smtp_auth_reply do no
 * I/O and may run on the loop.
 *
 * Protocol: one smtp_auth object per AUTH command. smtp_auth_start once, then
 * smtp_auth_step for every client line while the result is CONTINUE. Any
 * other result ends the exchange; only smtp_auth_free is valid after it.
 */
#ifndef SLUICE_SMTP_AUTH_H
#define SLUICE_SMTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

/*
 * RFC 4954 section 4: a server must accept an AUTH command line, and each
 * client response line, of 12288 octets (without CRLF). Longer base64 text is
 * refused with SMTP_AUTH_TOO_LONG; the session's line reader must allow this
 * length while an AUTH command or exchange is in progress.
 */
#define SMTP_AUTH_LINE_MAX 12288
/* Longest authenticated identity kept: local part 64 + '@' + domain 255. */
#define SMTP_AUTH_USER_MAX 320
/* RFC 4422 section 3.1: mechanism names are at most 20 characters. */
#define SMTP_AUTH_MECH_MAX 20

enum smtp_auth_status {
    SMTP_AUTH_CONTINUE = 0, /* send "334 " + challenge, read one more line */
    SMTP_AUTH_OK,           /* 235: authenticated as res->user */
    SMTP_AUTH_FAIL,         /* 535 5.7.8: bad credentials (count for throttling) */
    SMTP_AUTH_BAD_BASE64,   /* 501 5.5.2: a client line is not base64 */
    SMTP_AUTH_PROTOCOL,     /* 501 5.5.2: decoded data the mechanism cannot parse */
    SMTP_AUTH_NO_MECH,      /* 504 5.5.4: mechanism not offered */
    SMTP_AUTH_TEMP,         /* 454 4.7.0: sasldb unreadable, out of memory, ... (logged) */
    SMTP_AUTH_CANCELLED,    /* 501 5.7.0: the client sent "*" */
    SMTP_AUTH_TOO_LONG,     /* 500 5.5.6: a client line over SMTP_AUTH_LINE_MAX */
    SMTP_AUTH_TOO_WEAK,     /* 534 5.7.9: mechanism too weak for this user */
};

typedef struct smtp_auth_result {
    enum smtp_auth_status status;
    /*
     * CONTINUE: the server challenge, already base64-encoded, NUL-terminated
     * (may be ""). Owned by the smtp_auth object, valid until its next call.
     */
    const char *challenge;
    size_t challenge_len;
    /*
     * OK: the authenticated identity ("demo@example.test", domain in lower
     * case), NUL-terminated, at most SMTP_AUTH_USER_MAX bytes, never holding
     * a byte <= 0x20 or 0x7f. Owned by the object: copy it before freeing.
     */
    const char *user;
} smtp_auth_result;

typedef struct smtp_auth smtp_auth;

/*
 * Once per process, before any smtp_auth_new: sasl_server_init with our
 * options (pwcheck_method auxprop, auxprop_plugin sasldb, sasldb_path =
 * cfg->sasl_db, mech_list = cfg->auth_mechanisms). cfg must outlive
 * smtp_auth_done. With an empty auth_mechanisms nothing is initialized and
 * smtp_auth_mechs returns "". A missing sasldb file is only a warning here
 * (it may be created later); each AUTH then fails with SMTP_AUTH_TEMP.
 * Returns 0, -EALREADY, -ENOMEM, or -EIO when Cyrus SASL cannot start.
 */
int smtp_auth_init(const sluice_config *cfg);

/* Releases Cyrus SASL (sasl_done). No smtp_auth object may exist. */
void smtp_auth_done(void);

/*
 * The mechanisms both configured and actually loaded, in configuration
 * order, upper case, one space apart ("PLAIN LOGIN"), for the EHLO line
 * "250-AUTH <mechs>". "" when none: then AUTH is not offered.
 */
const char *smtp_auth_mechs(void);

/*
 * One AUTH exchange. fqdn: our hostname (cfg->hostname). user_realm: the
 * realm appended to logins that have no "@domain" (NULL: none; such logins
 * are looked up in the realm fqdn, as Cyrus does). local_ipport and
 * remote_ipport: "IP;PORT" as Cyrus wants it (see smtp_auth_ipport), or NULL
 * or "" when unknown.
 * Returns 0, -EINVAL (not initialized, or a bad address string), -ENOMEM, or
 * -EIO.
 */
int smtp_auth_new(const char *fqdn, const char *user_realm, const char *local_ipport,
                  const char *remote_ipport, smtp_auth **out);

/*
 * "AUTH mech [initial-response]": mech as received (any case);
 * initial_response is the base64 text after it, or NULL (or len 0) when there
 * was none ("=" means an empty initial response, RFC 4954 section 4). *res is always
 * filled. Returns 0, or -EINVAL for NULL arguments or a second start (*res is
 * then SMTP_AUTH_PROTOCOL). Blocks: thread pool only.
 */
int smtp_auth_start(smtp_auth *a, const char *mech, const char *initial_response, size_t len,
                    smtp_auth_result *res);

/*
 * One client line of the exchange, without CRLF: base64, "" or "=" for an
 * empty response, or "*" to cancel. *res is always filled. Returns 0, or
 * -EINVAL for NULL arguments or a step outside a CONTINUE (*res is then
 * SMTP_AUTH_PROTOCOL). Blocks: thread pool only. The caller should
 * explicit_bzero its copy of the line afterwards: it carries credentials.
 */
int smtp_auth_step(smtp_auth *a, const char *line, size_t len, smtp_auth_result *res);

void smtp_auth_free(smtp_auth *a);

/*
 * Whether mech[0..n) is an RFC 4422 3.1 mechanism name (letters, digits,
 * '-', '_'; 1 to SMTP_AUTH_MECH_MAX octets); if so, up gets it upper-cased.
 * Every backend and the AUTH command check names with this before use.
 */
bool smtp_auth_mech_name(const char *mech, size_t n, char up[SMTP_AUTH_MECH_MAX + 1]);

/*
 * The SMTP reply line for a final status, without CRLF, from one table
 * (RFC 4954 section 6). For SMTP_AUTH_CONTINUE it is "334 ": append the
 * challenge.
 */
const char *smtp_auth_reply(enum smtp_auth_status st);

/* A short name for logs: "ok", "fail", "temp", ... */
const char *smtp_auth_status_name(enum smtp_auth_status st);

/*
 * Formats an AF_INET/AF_INET6 address as Cyrus SASL's "IP;PORT" (v4-mapped
 * IPv6 as IPv4). Returns 0 or -EINVAL (other families, or buf too small;
 * 64 bytes always suffice).
 */
int smtp_auth_ipport(const struct sockaddr *sa, char *buf, size_t size);

#endif
