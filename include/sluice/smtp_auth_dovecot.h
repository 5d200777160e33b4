/*
 * smtp_auth_dovecot.h - server side of SMTP AUTH (RFC 4954) on Dovecot's
 * authentication service, the second AUTH backend beside Cyrus SASL
 * (smtp_auth.h), selected with `[smtpd] auth_backend = dovecot`.
 *
 * Sluice speaks Dovecot's auth-client protocol (protocol 1.2, Dovecot 2.x)
 * over a unix socket that Dovecot's `service auth` listens on, as Postfix
 * does with `smtpd_sasl_type = dovecot`. Dovecot then checks the password
 * against its own passdb, so the user who reads mail over IMAP and POP3 logs
 * in to Sluice with the same name and password: one user database, one
 * password, changed in one place (docs/dovecot.md).
 *
 * The API has the shape of smtp_auth.h, and shares its result type, status
 * codes, replies and limits: smtp_auth_result, enum smtp_auth_status,
 * smtp_auth_reply(), SMTP_AUTH_LINE_MAX. A session drives either backend the
 * same way.
 *
 * Threading: smtp_auth_dovecot_init and smtp_auth_dovecot_done run once, on
 * the main thread, before any session starts and after all have ended.
 * smtp_auth_dovecot_start and smtp_auth_dovecot_step block on the socket (at
 * most SMTP_AUTH_DOVECOT_TIMEOUT_MS per reply): run them on libuv's thread
 * pool (uv_queue_work), never on the loop. Distinct objects may be used from
 * different threads at once; one object must not be. new, free and mechs do
 * no I/O and may run on the loop.
 *
 * Connections: each exchange opens its own connection to the socket in
 * smtp_auth_dovecot_start (handshake, one AUTH request, its CONT lines) and
 * closes it in smtp_auth_dovecot_free. Dovecot keeps the state of a SASL
 * exchange on the connection that began it, so a connection cannot be shared
 * by exchanges that wait on different clients; a connect and a handshake on a
 * local socket cost well under a millisecond.
 *
 * Protocol: one object per AUTH command. smtp_auth_dovecot_start once, then
 * smtp_auth_dovecot_step for every client line while the result is
 * CONTINUE. Any other result ends the exchange; only free is valid after it.
 */
#ifndef SLUICE_SMTP_AUTH_DOVECOT_H
#define SLUICE_SMTP_AUTH_DOVECOT_H

#include <stddef.h>

#include "smtp_auth.h"

/*
 * Longest wait for one line from Dovecot. Dovecot holds back a failure
 * (auth_failure_delay, 2 s by default); the penalty delays of its anvil
 * process are switched off per request (no-penalty: Sluice throttles failed
 * logins itself, smtp_auth_throttle.h).
 */
#define SMTP_AUTH_DOVECOT_TIMEOUT_MS 30000

typedef struct smtp_auth_dovecot smtp_auth_dovecot;

/*
 * Once per process, before any smtp_auth_dovecot_new. socket_path: Dovecot's
 * auth-client socket (a unix_listener of `service auth`), absolute, at most
 * 107 bytes. mechanisms: what to offer, as auth_mechanisms ("PLAIN LOGIN";
 * blanks or commas between names, any case). ANONYMOUS, EXTERNAL and
 * mechanisms Dovecot marks private are never offered.
 *
 * Connects once to learn Dovecot's mechanisms: smtp_auth_dovecot_mechs is
 * then the configured ones Dovecot has, in configuration order, and each one
 * Dovecot lacks is logged. When Dovecot cannot be reached (it may start after
 * Sluice), that is a warning: every configured mechanism is offered, and each
 * exchange checks the mechanism against what Dovecot announces then
 * (SMTP_AUTH_NO_MECH when it lacks it, SMTP_AUTH_TEMP while it is down).
 * With an empty mechanism list nothing is offered and nothing is connected.
 * Returns 0, -EALREADY, -EINVAL (NULL or unusable socket_path), -ENOMEM.
 */
int smtp_auth_dovecot_init(const char *socket_path, const char *mechanisms);

/* Forgets the configuration. No smtp_auth_dovecot object may exist. */
void smtp_auth_dovecot_done(void);

/*
 * The mechanisms to announce, upper case, one space apart ("PLAIN LOGIN"),
 * for "250-AUTH <mechs>"; "" when none (then AUTH is not offered).
 */
const char *smtp_auth_dovecot_mechs(void);

/*
 * One AUTH exchange; nothing is connected yet. The arguments are those of
 * smtp_auth_new. fqdn and user_realm are not used (Dovecot applies its own
 * auth_default_realm and auth_username_format). local_ipport and
 * remote_ipport ("IP;PORT", see smtp_auth_ipport; NULL or "" when unknown)
 * are passed on as lip/lport and rip/rport, for Dovecot's log and for passdb
 * rules such as allow_nets.
 *
 * Every request is sent with "secured": the session offers AUTH only under
 * TLS, or on loopback with allow_plaintext_auth, and Dovecot counts both as
 * secured, so its disable_plaintext_auth does not refuse PLAIN and LOGIN.
 * Returns 0, -EINVAL (not initialized, no mechanism, a bad address string),
 * or -ENOMEM.
 */
int smtp_auth_dovecot_new(const char *fqdn, const char *user_realm, const char *local_ipport,
                          const char *remote_ipport, smtp_auth_dovecot **out);

/*
 * "AUTH mech [initial-response]", as smtp_auth_start: mech as received (any
 * case); initial_response is the base64 text after it, or NULL (or len 0)
 * when there was none ("=" is an empty initial response). Connects to
 * Dovecot. *res is always filled; SMTP_AUTH_TEMP when Dovecot cannot be
 * reached, times out, or answers outside the protocol (logged). Returns 0,
 * or -EINVAL for NULL arguments or a second start. Blocks: thread pool only.
 */
int smtp_auth_dovecot_start(smtp_auth_dovecot *a, const char *mech, const char *initial_response,
                            size_t len, smtp_auth_result *res);

/*
 * One client line, as smtp_auth_step: base64, "" or "=" for an empty
 * response, or "*" to cancel. *res is always filled. Returns 0, or -EINVAL
 * for NULL arguments or a step outside a CONTINUE. Blocks: thread pool only.
 */
int smtp_auth_dovecot_step(smtp_auth_dovecot *a, const char *line, size_t len,
                           smtp_auth_result *res);

/* Closes the connection (which also ends an unfinished request). */
void smtp_auth_dovecot_free(smtp_auth_dovecot *a);

#endif
