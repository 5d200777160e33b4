/*
 * smtp_session.h - one SMTP server session.
 *
 * smtp_session.c owns the I/O: reads into the loop-wide buffer, keeps only
 * unprocessed bytes (bounded), splits command lines, feeds DATA/BDAT bytes,
 * batches replies for PIPELINING (RFC 2920), runs the timeouts, and frees
 * the session only in its close callbacks (libuv's rule). smtp_commands.c
 * holds the RFC 5321 state machine: one handler per verb. A session never
 * processes input while an asynchronous step (a spool flush or commit) is
 * outstanding: input waits in the pending buffer, in order.
 */
#ifndef SLUICE_SMTP_SESSION_H
#define SLUICE_SMTP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "envelope.h"
#include "resolver.h"
#include "smtp_data.h"
#include "smtp_headers.h"
#include "smtp_parse.h"
#include "smtp_server.h"
#include "spool.h"
#include "tls.h"

/* 512 octets (RFC 5321 4.5.3.1.4) plus the allowance for ESMTP parameters. */
#define SMTP_CMD_LINE_MAX 1024
/* Replies waiting for a slow reader; past this we stop reading (backpressure). */
#define SMTP_OUT_MAX (64u * 1024u)
/* Unprocessed input kept while the session waits (one read's worth). */
#define SMTP_PENDING_MAX (128u * 1024u)

enum smtp_state {
    SMTP_S_GREET = 0, /* before HELO/EHLO */
    SMTP_S_READY,     /* after HELO/EHLO, no transaction */
    SMTP_S_MAIL,      /* MAIL accepted */
    SMTP_S_DATA,      /* reading DATA */
    SMTP_S_BDAT,      /* reading a BDAT chunk */
    SMTP_S_BDAT_WAIT, /* between BDAT chunks (expecting BDAT) */
};

struct smtp_session {
    union {
        uv_tcp_t tcp;   /* mx, submission, smtps */
        uv_pipe_t pipe; /* the local submit socket */
        uv_stream_t stream;
        uv_handle_t handle;
    } io;
    uv_timer_t timer;
    smtp_server *srv;
    /* The config in force when the session began: a SIGHUP swaps the
     * server's, and this session keeps its own until it ends (as Postfix's
     * smtpd processes do). */
    sluice_config *cfg;
    smtp_session *prev, *next;
    enum listen_kind kind;
    int refs; /* close callbacks + outstanding spool callbacks */

    struct sockaddr_storage peer;
    char peer_ip[64];
    char peer_name[256]; /* forward-confirmed reverse name, or "unknown" */
    char rdns_name[256];
    resolver_req rdns;
    bool rdns_active;
    char helo[SMTP_DOMAIN_MAX + 1];
    bool esmtp;
    bool counted; /* holds a slot in the connection counters */

    enum smtp_state state;
    unsigned bad_commands;

    /* input */
    sbuf pend;         /* unprocessed input, in order */
    bool discard_line; /* an overlong command line is being skipped */
    bool reading;      /* uv_read_start is active */
    bool waiting;      /* an async step is outstanding: do not process input */
    bool quitting;     /* QUIT or a fatal error: close after the replies */
    bool closing;

    /* TLS: STARTTLS (mx, submission) or implicit (smtps) */
    tls_conn tls;
    bool tls_on;                       /* every byte from here on is TLS */
    bool starttls_pending;             /* 220 queued; switch once it is handed to the socket */
    char auth_id[SMTP_PATH_MAX + 1];   /* SASL login or local user name, "" if none */
    long local_uid;                    /* the local submitter's uid, or -1 */
    struct smtp_auth *auth;            /* an AUTH exchange in progress (Cyrus SASL) */
    struct smtp_auth_dovecot *auth_dv; /* an AUTH exchange in progress (Dovecot) */
    char auth_mech[24];

    /* output: replies accumulate in out; wout is the write in flight */
    sbuf out, wout;
    uv_write_t wreq;
    bool writing;

    /* the transaction */
    envelope env;
    smtp_mail_args mail;
    spool_msg *msg;
    char id[QUEUE_ID_LEN + 1];
    int tx_error; /* negative errno from the spool; reply at the end */
    smtp_data_reader data;
    hdr_scan hdr;                /* submission: which headers must be added */
    struct spf_request *spf_req; /* an SPF check in flight (mx listeners) */
    char *spf_header;            /* "Received-SPF: ...\r\n" for this transaction */
    uint64_t bdat_left;          /* bytes still to read of the current chunk */
    bool bdat_last;
    bool bdat_failed;       /* this BDAT transaction is refused; chunks discarded */
    uint64_t body_start_ms; /* loop time of this transaction's first body byte; 0 = none yet */
    uint64_t body_bytes;    /* body bytes (DATA, or BDAT chunks) read since then */
    const char *bdat_reply; /* the refusal, replied to each later chunk */
};

/* smtp_session.c */
void smtp_session_accept(smtp_server *srv, uv_stream_t *listener, enum listen_kind kind);
/* Whether the session came in over the local submit socket. */
#define smtp_session_is_local(s) ((s)->kind == LISTEN_LOCAL)
void smtp_session_close(smtp_session *s);
/* Shutdown: an idle session says 421 4.3.2 and closes; a busy one goes on. */
void smtp_session_drain(smtp_session *s);
/* Queues one reply line (a complete "NNN X.Y.Z text"; CRLF is added). */
void smtp_reply(smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stops input processing until smtp_session_resume. */
void smtp_session_wait(smtp_session *s);
void smtp_session_resume(smtp_session *s);
void smtp_session_ref(smtp_session *s);
void smtp_session_unref(smtp_session *s);

/* smtp_commands.c */
void smtp_cmd_greet(smtp_session *s);
void smtp_cmd_line(smtp_session *s, const char *line, size_t len);
/* DATA or BDAT bytes; returns bytes consumed. */
size_t smtp_cmd_body(smtp_session *s, const char *p, size_t len);
void smtp_tx_reset(smtp_session *s);
/* "ESMTPS" etc. (RFC 3848) for the Received header, envelope and log. */
const char *smtp_session_proto(const smtp_session *s);
/* A bad command: counts it and closes after too many. */
void smtp_cmd_error(smtp_session *s);

/* smtp_auth_cmd.c: AUTH (RFC 4954) */
bool smtp_auth_offered(const smtp_session *s);
const char *smtp_auth_cmd_mechs(const smtp_session *s);
void smtp_auth_cmd(smtp_session *s, const char *arg, size_t len);
void smtp_auth_cmd_line(smtp_session *s, const char *line, size_t len); /* a client response */
void smtp_auth_cmd_abort(smtp_session *s);

/* smtp_rdns.c: the client name (never delays the dialogue) */
void smtp_rdns_start(smtp_session *s);
void smtp_rdns_cancel(smtp_session *s);

/* smtp_received.c: the Received header for the message (RFC 5321 4.4). */
int smtp_received_header(const smtp_session *s, sbuf *out);

#endif
