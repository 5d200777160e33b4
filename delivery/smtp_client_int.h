/*
 * smtp_client_int.h - private to delivery/smtp_client*.c: the client's
 * state shared by its files.
 *
 *   smtp_client.c        the client object, requests (jobs), routing, the
 *                        candidate loop, the connection cache, the transport
 *   smtp_client_conn.c   one TCP connection: connect, timer, reads, writes,
 *                        TLS over memory BIOs, close
 *   smtp_client_proto.c  the SMTP dialogue: greeting, EHLO, STARTTLS, AUTH,
 *                        MAIL/RCPT/DATA (pipelined or not), RSET, QUIT
 *   smtp_client_data.c   the message body: read from the spool file off the
 *                        loop, dot-stuffed, written with backpressure
 *   smtp_client_reply.c  pure parsers (reply lines, EHLO keywords)
 *
 * Ownership: the client owns its jobs and connections. A job belongs to
 * one request from dlv_smtp_send() until its done callback ran; a
 * connection is freed only in the close callback of its last handle.
 */
#ifndef SLUICE_SMTP_CLIENT_INT_H
#define SLUICE_SMTP_CLIENT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "sluice/buf.h"
#include "sluice/dlv_route.h"
#include "sluice/dlv_smtp.h"
#include "sluice/resolver.h"
#include "sluice/tls.h"

typedef struct smtpc_conn smtpc_conn;
typedef struct smtpc_job smtpc_job;

/* The reply a connection waits for. */
enum smtpc_expect {
    X_NONE = 0,
    X_GREETING,
    X_EHLO,
    X_HELO,
    X_STARTTLS,
    X_AUTH,
    X_MAIL,
    X_RCPT,
    X_DATA,
    X_DOT,
    X_RSET,
    X_QUIT,
};

#define SMTPC_RBUF 65536            /* one socket read */
#define SMTPC_IN_LIMIT (256 * 1024) /* unprocessed plaintext from the peer */
#define SMTPC_CHUNK 65536           /* one read of the message file */

struct smtpc_conn {
    dlv_smtp *c;
    smtpc_job *job; /* the request served now; NULL when cached or quitting */
    char *key;      /* the next hop it was opened for (cache key) */

    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    unsigned open_handles;
    bool connected;
    bool closing;
    bool broken;   /* not reusable (a 421, an early reply during data, an error) */
    bool cached;   /* in the idle cache (maybe with its RSET reply pending) */
    bool no_tls;   /* plaintext retry after a failed handshake (tls=may) */
    bool tls_on;   /* the handshake is done: all traffic goes through tls */
    bool tls_init; /* tls holds an SSL object */
    bool esmtp;
    bool authed;
    bool drain_notify; /* tell the data writer when every write has completed */
    bool dot_ignore;   /* the reply to "." is for a transaction without recipients */
    tls_conn tls;
    char tls_version[32];

    enum smtpc_expect expect;
    const char *doing; /* "receiving the initial server greeting", for errors */
    dlv_smtp_reply reply;
    dlv_smtp_ext ext;
    sbuf in; /* plaintext received, not yet parsed */
    unsigned writes;

    char host[DLV_ROUTE_HOST_MAX]; /* for TLS SNI and name checks */
    bool literal;
    char relay[DLV_RELAY_MAX]; /* "host[ip]:port" */
    uint64_t born_ms;
    uint64_t transactions;

    smtpc_conn *next, *prev; /* every connection of the client */
    char rbuf[SMTPC_RBUF];
};

struct smtpc_job {
    dlv_smtp *c;
    dlv_remote_req *req;

    /* routing */
    dlv_route_req route;
    bool routing;
    dlv_route_result cands;
    size_t icand;
    bool plain_retry; /* reconnect to this candidate without STARTTLS */
    bool rerouted;    /* a cached connection failed: routed afresh once */
    bool need_auth;   /* nexthop is the relayhost and credentials are set */

    smtpc_conn *conn;
    bool reused; /* conn came from the cache */

    /* the last failure before a transaction: reported if no candidate works */
    int err_code;
    char err_status[8];
    char err_text[DLV_REPLY_MAX + 1];
    char err_relay[DLV_RELAY_MAX];
    char err_tls[32];

    /* the transaction */
    unsigned char *rs; /* per recipient: RS_* */
    size_t irc;        /* recipient whose RCPT reply comes next */
    size_t naccepted;
    bool pipelined;
    bool mail_ok;
    bool mail_replied;
    bool in_trans;  /* MAIL went out on conn */
    bool data_done; /* the final "." went out */

    /* the data */
    uv_fs_t fs;
    bool fs_active;
    uint64_t off;
    int stuff_state;
    char *rbuf; /* SMTPC_CHUNK bytes */

    bool canceled;
    bool finishing; /* every outcome is set: waiting for async parts to end */
    bool queued;    /* on the done list */
    uint64_t started_ms;
    smtpc_job *next, *prev; /* active list, then done list */
};

/* Per-recipient state in a job: bits. */
enum {
    RS_SENT = 0x1,     /* its RCPT went out in this transaction */
    RS_REPLIED = 0x2,  /* its RCPT reply came */
    RS_ACCEPTED = 0x4, /* the reply was 2xx: the data's reply decides */
    RS_SET = 0x8,      /* its outcome is set */
};

struct dlv_smtp {
    uv_loop_t *loop;
    dlv_smtp_options o;
    char *helo;
    char *relayhost;
    char **dns;
    bool have_auth;
    char auth_user[256];
    char auth_pass[256];

    resolver res;
    bool res_open;
    SSL_CTX *ctx_any;    /* no verification: tls=may and encrypt */
    SSL_CTX *ctx_verify; /* system CAs (+ ca_file): tls=verify */

    uv_timer_t defer; /* runs done callbacks */
    bool defer_open;

    smtpc_job *jobs;
    smtpc_job *done_head, *done_tail;
    smtpc_conn *conns;
    unsigned nconns;
    dlv_smtp_stats stats;
    dlv_transport transport;

    bool closing;
    void (*close_cb)(void *arg);
    void *close_arg;
};

uint64_t smtpc_now_ms(const dlv_smtp *c);

/* ---- smtp_client.c: jobs and the cache ---- */

/* Sets the outcome of recipient i (once). code 0 = no reply. */
void smtpc_rcpt_set(smtpc_job *j, size_t i, int code, const char *status, const char *text,
                    const smtpc_conn *conn);
/* Sets every recipient still without an outcome. */
void smtpc_rcpt_set_rest(smtpc_job *j, int code, const char *status, const char *text,
                         const smtpc_conn *conn);
/*
 * The connection failed before a transaction began: remember why, drop it,
 * and go on with the next candidate (or the same one in plaintext).
 */
void smtpc_job_candidate_failed(smtpc_job *j, int code, const char *status, const char *text);
/* Every outcome is set: detach from conn (released to the cache if usable) and finish. */
void smtpc_job_finish(smtpc_job *j);
/* Ends the job once nothing asynchronous of it is left. */
void smtpc_job_try_complete(smtpc_job *j);
/* A connection finished a transaction (or failed its RSET): cache it or QUIT. */
void smtpc_conn_release(smtpc_conn *conn);
/* A cached connection's RSET succeeded: it is idle now. */
void smtpc_cache_idle(smtpc_conn *conn);
/* A connection was freed (the client may be waiting for that to close). */
void smtpc_client_conn_gone(dlv_smtp *c);

/* ---- smtp_client_conn.c ---- */

/* "host[ip]:port" of a candidate, as logs and results show it. */
void smtpc_relay_format(const dlv_route_cand *cand, char *out, size_t outsz);
int smtpc_conn_open(dlv_smtp *c, smtpc_job *j, const dlv_route_cand *cand, bool no_tls,
                    smtpc_conn **out);
/* Arms the timer for what the connection does next (ms 0 = stop it). */
void smtpc_conn_timer(smtpc_conn *conn, unsigned ms, const char *doing);
/* Writes bytes (through TLS when on). 0 or a negative errno. */
int smtpc_conn_write(smtpc_conn *conn, const void *p, size_t len);
/* Starts the TLS handshake (after a 220 to STARTTLS). */
int smtpc_conn_start_tls(smtpc_conn *conn);
/* Closes at once (no QUIT); the memory goes in the close callback. */
void smtpc_conn_close(smtpc_conn *conn);
/* Sends QUIT, then closes on its reply or after quit_ms. */
void smtpc_conn_quit(smtpc_conn *conn);

/* ---- smtp_client_proto.c ---- */

void smtpc_proto_connected(smtpc_conn *conn);
void smtpc_proto_reply(smtpc_conn *conn);
void smtpc_proto_ehlo_line(smtpc_conn *conn, const char *text, size_t len);
/* The connection broke (err: negative errno, UV_EOF, or UV_ETIMEDOUT for our timer). */
void smtpc_proto_error(smtpc_conn *conn, int err, const char *detail);
void smtpc_proto_tls_done(smtpc_conn *conn, int rc, const char *err);
/* A reused or fresh connection is ready for the job's transaction. */
void smtpc_proto_start(smtpc_conn *conn);
/* Every write has completed (drain_notify). */
void smtpc_proto_drained(smtpc_conn *conn);

/* ---- smtp_client_data.c ---- */

void smtpc_data_start(smtpc_job *j);
void smtpc_data_drained(smtpc_job *j);

#endif
