/*
 * dlv_smtp.h - the outbound SMTP client of sluice-delivery (RFC 5321 with
 * STARTTLS, PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN, AUTH PLAIN to a
 * smarthost), on a libuv loop. docs/delivery.md, "Remote delivery".
 *
 * It implements the runner's transport interface (dlv_runner.h): the
 * request is the runner's dlv_remote_req (caller-owned: all recipients of
 * one message that share a next hop), the callback is req->done, and every
 * recipient's out fields (code, status, reply, relay, tls) are set before
 * it runs. Temporary versus permanent is decided here, where the I/O
 * failed: 2.x.x delivered, 4.x.x deferred (4xx replies, timeouts, refused
 * connections, TLS required but unavailable), 5.x.x bounced (5xx replies,
 * null MX, NXDOMAIN, SIZE or SMTPUTF8 the peer cannot take).
 *
 * Concurrency: the runner limits how many requests run per destination
 * (its slots, concurrency_per_destination, keyed by req->nexthop); this
 * client opens at most one connection per request and keeps at most
 * cache_per_dest idle connections per next hop for reuse (RSET between
 * messages, QUIT when the idle time is over), so it never holds more
 * connections to one destination than the runner allows requests.
 *
 * libuv's contract: functions return 0 or a negative errno; callbacks run
 * from the loop, never inside the call that started the work; the client
 * is freed only after its close callback.
 */
#ifndef SLUICE_DLV_SMTP_H
#define SLUICE_DLV_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "dlv_runner.h"

/* ---- replies: a pure parser (smtp_client_reply.c) ---- */

#define DLV_SMTP_LINE_MAX 2048   /* a reply line, CRLF excluded (RFC 5321 says 512) */
#define DLV_SMTP_REPLY_LINES 128 /* lines of one reply; more is a protocol error */

/*
 * One reply, built line by line. text: every line's text after the code
 * (and after the enhanced status code when the line has one), joined with
 * single spaces; control and non-ASCII bytes turned into '?' (a UTF-8
 * sequence is kept whole); cut at DLV_REPLY_MAX bytes.
 */
typedef struct dlv_smtp_reply {
    int code;        /* 200..599 */
    char status[8];  /* the first line's "X.Y.Z", or "X.0.0" derived from the code */
    bool has_status; /* the peer sent an enhanced status code */
    bool done;       /* the last line ("NNN " or "NNN") was seen */
    unsigned nlines;
    size_t text_len;
    char text[DLV_REPLY_MAX + 1];
} dlv_smtp_reply;

void dlv_smtp_reply_init(dlv_smtp_reply *r);

/*
 * Feeds one line (without CRLF). Returns 1 when the reply is complete, 0
 * when more lines follow, -EPROTO for a malformed line (no 3-digit code in
 * 2xx..5xx, a code that changes between lines, a bad separator) and -E2BIG
 * past DLV_SMTP_REPLY_LINES lines. *text / *text_len (may be NULL) get the
 * line's text after "NNN-" / "NNN " (for EHLO keywords).
 */
int dlv_smtp_reply_line(dlv_smtp_reply *r, const char *line, size_t len, const char **text,
                        size_t *text_len);

/*
 * Takes the next line out of buf[0..len): *line_len excludes the line end
 * (CRLF or a bare LF). Returns the bytes consumed, 0 when no full line is
 * there yet, or -E2BIG when len already exceeds DLV_SMTP_LINE_MAX + 2
 * without a line end (a peer that never ends its line).
 */
long dlv_smtp_next_line(const char *buf, size_t len, size_t *line_len);

/* "code status text" of a reply, one line, into out (the form stored in the envelope). */
void dlv_smtp_reply_format(const dlv_smtp_reply *r, char *out, size_t outsz);

/* EHLO extensions the client uses. */
#define DLV_SMTP_EXT_PIPELINING 0x01u
#define DLV_SMTP_EXT_SIZE 0x02u
#define DLV_SMTP_EXT_8BITMIME 0x04u
#define DLV_SMTP_EXT_SMTPUTF8 0x08u
#define DLV_SMTP_EXT_DSN 0x10u
#define DLV_SMTP_EXT_STARTTLS 0x20u
#define DLV_SMTP_EXT_AUTH_PLAIN 0x40u
#define DLV_SMTP_EXT_ENHANCEDSTATUSCODES 0x80u
#define DLV_SMTP_EXT_AUTH 0x100u /* AUTH offered, any mechanism */

typedef struct dlv_smtp_ext {
    unsigned flags;
    uint64_t size; /* SIZE limit; 0 = none announced */
} dlv_smtp_ext;

/* Reads one EHLO reply line's text ("SIZE 1000", "AUTH PLAIN LOGIN") into ext. */
void dlv_smtp_ext_line(dlv_smtp_ext *ext, const char *text, size_t len);

/*
 * The enhanced status for a reply code without one: "2.0.0", "4.0.0",
 * "5.0.0" (RFC 3463 3.1 classes).
 */
void dlv_smtp_status_from_code(int code, char out[8]);

/*
 * The message body as DATA sends it (RFC 5321 4.5.2, smtp_client_data.c):
 * a '.' that starts a line is doubled, and every line end goes out as
 * CRLF (the spool holds CRLF already; a bare CR or LF from a damaged file
 * becomes CRLF too, so no receiver can read a line end where we sent
 * none: SMTP smuggling). *state starts at 0 and carries over between
 * chunks. out needs room for 2 * len + 2 bytes. Returns the bytes written.
 */
size_t dlv_smtp_stuff(int *state, const char *in, size_t len, char *out);
/* The end of the data: a missing last CRLF, then ".\r\n". out: 5 bytes. */
size_t dlv_smtp_stuff_end(int *state, char *out);

/* ---- the client ---- */

/*
 * RFC 5321 4.5.3.2 client timeouts, in milliseconds (a struct so tests can
 * shorten them). dlv_smtp_options_default() sets the RFC values.
 */
typedef struct dlv_smtp_timeouts {
    unsigned connect_ms;    /* TCP connect per address: 30 s (Postfix smtp_connect_timeout) */
    unsigned greeting_ms;   /* 220 greeting: 5 min (4.5.3.2.1) */
    unsigned ehlo_ms;       /* EHLO/HELO reply: 5 min */
    unsigned starttls_ms;   /* STARTTLS reply and the handshake: 5 min */
    unsigned auth_ms;       /* AUTH reply: 5 min */
    unsigned mail_ms;       /* MAIL reply: 5 min (4.5.3.2.2) */
    unsigned rcpt_ms;       /* each RCPT reply: 5 min (4.5.3.2.3) */
    unsigned data_init_ms;  /* 354 to DATA: 2 min (4.5.3.2.4) */
    unsigned data_block_ms; /* each write of the data: 3 min (4.5.3.2.5) */
    unsigned data_end_ms;   /* reply to the final dot: 10 min (4.5.3.2.6) */
    unsigned rset_ms;       /* RSET before reusing a connection: 20 s (Postfix) */
    unsigned quit_ms;       /* QUIT reply before closing: 5 s, then close anyway */
    unsigned idle_ms;       /* an idle cached connection: 5 s, then QUIT */
    unsigned reuse_max_ms;  /* a connection is not reused after this age: 300 s */
} dlv_smtp_timeouts;

typedef struct dlv_smtp_options {
    const char *helo_name;          /* EHLO argument: [server] hostname */
    enum tls_policy tls;            /* [delivery] tls */
    uint16_t remote_port;           /* port for next hops that name none */
    const char *const *dns_servers; /* [delivery] dns_servers; none = /etc/resolv.conf */
    size_t ndns_servers;
    unsigned dns_timeout_ms, dns_tries; /* 0 = the resolver's defaults */
    /*
     * [delivery] relayhost ("" = none) and relayhost_auth (a file holding
     * "user password"; "" = no AUTH). AUTH PLAIN is sent only to a request
     * whose nexthop equals relayhost, only under TLS; without TLS the
     * recipients are deferred (4.7.0) rather than the password sent in clear.
     */
    const char *relayhost;
    const char *relayhost_auth;
    unsigned cache_per_dest; /* idle connections per next hop: concurrency_per_destination */
    unsigned cache_total;    /* idle connections in all; 0 = 64 */
    const char *ca_file;     /* extra CA file trusted under tls=verify (tests); NULL = none */
    dlv_smtp_timeouts timeouts;
} dlv_smtp_options;

/* Defaults: tls=may, port 25, helo "localhost", RFC timeouts, cache 20/64. */
void dlv_smtp_options_default(dlv_smtp_options *o);
/* The options of a config (pointers into cfg; dlv_smtp_new copies what it keeps). */
void dlv_smtp_options_from_config(const sluice_config *cfg, dlv_smtp_options *o);

/*
 * Parses a relayhost_auth file's text: "user password" on the first line
 * that is not blank or a '#' comment (password = the rest of the line,
 * trimmed). 0 or -EINVAL.
 */
int dlv_smtp_auth_parse(const char *text, size_t len, char *user, size_t usersz, char *pass,
                        size_t passsz);

typedef struct dlv_smtp dlv_smtp;

/*
 * Creates a client: its resolver, TLS contexts and connection cache. Reads
 * relayhost_auth. Problems go to err: -EINVAL (bad options or auth file),
 * -ENOMEM, or the resolver's code. After 0, dlv_smtp_close() must be
 * called eventually.
 */
int dlv_smtp_new(uv_loop_t *loop, const dlv_smtp_options *o, dlv_smtp **out, char *err,
                 size_t errlen);

/*
 * Delivers req (see dlv_runner.h for its fields): route, connect, one
 * transaction. The recipients' out fields are cleared here. 0:
 * req->done(req) runs later from the loop with every recipient's outcome
 * set (req->tdata is the client's until then). -EINVAL (no recipients, no
 * done), -ECANCELED (closing), -ENOMEM: nothing started, no callback.
 */
int dlv_smtp_send(dlv_smtp *c, dlv_remote_req *req);

/*
 * Aborts every request in flight (their connections are closed): each done
 * runs soon after from the loop, every recipient without an outcome
 * deferred with 4.3.2. Idle connections are QUIT.
 */
void dlv_smtp_cancel_all(dlv_smtp *c);

/*
 * Cancels everything (as above), QUITs idle connections, closes every
 * handle, frees the client, then calls cb(arg) from the loop (cb may be
 * NULL).
 */
void dlv_smtp_close(dlv_smtp *c, void (*cb)(void *arg), void *arg);

/*
 * The runner's view of c: send = dlv_smtp_send, cancel_all, close (which
 * closes and frees c). Lives as long as c.
 */
dlv_transport *dlv_smtp_transport(dlv_smtp *c);

/*
 * For sluice-delivery: dlv_smtp_new() with the options of cfg, returning
 * its transport. Pass it to dlv_runner_new(); the runner's stop closes it.
 */
int dlv_smtp_transport_new(uv_loop_t *loop, const sluice_config *cfg, dlv_transport **out,
                           char *err, size_t errlen);

/* Counters, for tests and logs. */
typedef struct dlv_smtp_stats {
    uint64_t connections; /* TCP connections opened */
    uint64_t reused;      /* transactions on a cached connection */
    uint64_t requests;    /* requests finished */
    unsigned idle;        /* idle connections now */
} dlv_smtp_stats;
void dlv_smtp_get_stats(const dlv_smtp *c, dlv_smtp_stats *out);

#endif
