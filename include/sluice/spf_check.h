/*
 * spf_check.h - SPF (RFC 7208) for the mx listeners, off the event loop.
 *
 * libspf2 evaluates the records; its DNS layer is ours (smtpd/spf_dns.c):
 * synchronous c-ares queries to the configured [delivery] dns_servers (else
 * /etc/resolv.conf), never libc's resolver. Because those lookups block,
 * every check runs on one of the checker's own worker threads (not libuv's
 * thread pool, which the spool needs for its fsyncs: a check may wait on DNS
 * for up to 20 s). The result comes back on the loop through a uv_async_t.
 *
 * What is checked (RFC 7208 2.3, 2.4): the HELO identity first when the
 * HELO name is a domain; a "fail" there decides. Otherwise the MAIL FROM
 * identity decides; for the null sender that identity is postmaster@HELO,
 * whose evaluation is the HELO check itself, so it is not repeated. Loopback
 * clients get no free pass (libspf2 would give one): the session decides
 * who is exempt. See docs/spf.md.
 *
 * libuv's contract: functions return 0 or a negative errno; the caller owns
 * the request; the callback always runs later from the loop, never from
 * inside spf_check_start.
 */
#ifndef SLUICE_SPF_CHECK_H
#define SLUICE_SPF_CHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"

enum spf_result {
    SPF_RES_NONE,
    SPF_RES_NEUTRAL,
    SPF_RES_PASS,
    SPF_RES_FAIL,
    SPF_RES_SOFTFAIL,
    SPF_RES_TEMPERROR,
    SPF_RES_PERMERROR,
};

/* Which identity decided the result. */
enum spf_identity {
    SPF_ID_NONE,     /* nothing could be checked (null sender, HELO not a domain) */
    SPF_ID_HELO,     /* RFC 7208 2.3 */
    SPF_ID_MAILFROM, /* RFC 7208 2.4 */
};

/* What the session does with a result (spf_policy). */
enum spf_action {
    SPF_ACT_ACCEPT,       /* go on, add no header (spf = off) */
    SPF_ACT_ACCEPT_TAG,   /* go on, prepend "Received-SPF: " req->header */
    SPF_ACT_REJECT_550,   /* refuse MAIL: "550 5.7.23 ..." (RFC 7372) */
    SPF_ACT_TEMPFAIL_451, /* refuse MAIL for now: "451 4.7.24 ..." */
};

/* Bounds of the texts in a request. */
#define SPF_HEADER_MAX 3072 /* Received-SPF value, folded lines each <= 998 */
#define SPF_EXPLANATION_MAX 256
#define SPF_DOMAIN_MAX 256

typedef struct spf_checker spf_checker;
typedef struct spf_request spf_request;

/*
 * status: 0, or UV_ECANCELED after spf_check_cancel (the outputs are then
 * NONE and empty). req may be freed or reused inside the callback.
 */
typedef void (*spf_done_cb)(spf_request *req, int status);

/*
 * A check, allocated by the caller (like uv_work_t). It must stay valid
 * until its callback has run.
 */
struct spf_request {
    void *data; /* for the caller */

    /* Outputs: valid in and after the callback. */
    enum spf_result result;
    enum spf_identity identity;
    /*
     * The Received-SPF field value (RFC 7208 9.1) without the "Received-SPF: "
     * name and without a final CRLF. Long values are folded with "\r\n\t"
     * between key-value pairs, so write it as "Received-SPF: %s\r\n".
     */
    char header[SPF_HEADER_MAX];
    /*
     * For fail: the domain's explanation (exp=, RFC 7208 6.2) or ours,
     * printable ASCII only; "" otherwise. spf_reply() puts it in the 550.
     */
    char explanation[SPF_EXPLANATION_MAX];
    /* The domain whose policy decided ("" for SPF_ID_NONE). */
    char domain[SPF_DOMAIN_MAX];

    /* private */
    spf_checker *checker_;
    spf_done_cb cb_;
    spf_request *prev_, *next_; /* in the checker's queue or done list */
    char *ip_, *helo_, *sender_;
    atomic_bool canceled_;
    int status_;
    int where_; /* queued, running, done */
    bool active_;
};

/*
 * Creates a checker for loop: copies what it needs from cfg (hostname as
 * the receiver, dns_servers), so cfg may go away after. Worker threads start
 * on demand. Returns -EINVAL for a bad dns_servers entry, -ENOMEM, or -EIO
 * when c-ares cannot start.
 */
int spf_checker_new(uv_loop_t *loop, const sluice_config *cfg, spf_checker **out);

/*
 * Stops the workers and releases the checker. Only once every started check
 * has had its callback. The last of the memory is released from the loop
 * (its uv_async_t must close), so run the loop once more before
 * uv_loop_close().
 */
void spf_checker_free(spf_checker *c);

/*
 * Starts a check. client_ip is textual (IPv4, IPv6, or IPv4-mapped IPv6);
 * helo is the EHLO/HELO argument as received ("" if none); sender is the
 * MAIL FROM address without brackets, "" for the null sender. All are
 * copied; arg lands in req->data. Returns 0 (cb will run), -EINVAL (bad
 * IP, request already active), -ENOMEM, or -EIO if no worker could start.
 * While checks are in flight they keep the loop alive, as uv_work_t does.
 */
int spf_check_start(spf_checker *c, spf_request *req, const char *client_ip, const char *helo,
                    const char *sender, spf_done_cb cb, void *arg);

/*
 * Cancels an active check. As with uv_cancel(), the callback still runs
 * later from the loop, with UV_ECANCELED, so whatever it touches (the
 * session) must stay alive until then: take a reference when starting and
 * drop it in the callback. Unlike uv_cancel(), a check already running is
 * interrupted too (within ~100 ms, between or during DNS waits), and once
 * this returned 0 the status is UV_ECANCELED even if the check had just
 * finished. Returns 0, or -EINVAL if req is not active.
 */
int spf_check_cancel(spf_request *req);

/* "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror". */
const char *spf_result_name(enum spf_result r);

/*
 * The one place results become decisions:
 *   off:    everything ACCEPT (and the session should not check at all);
 *   tag:    everything ACCEPT_TAG;
 *   reject: fail -> REJECT_550, temperror -> TEMPFAIL_451, everything else
 *           (pass, none, neutral, softfail, permerror) -> ACCEPT_TAG.
 * permerror is accepted: a broken record says nothing about this message,
 * and RFC 7208 8.7 leaves the choice to the receiver (docs/spf.md).
 */
enum spf_action spf_policy(enum spf_mode mode, enum spf_result r);

/*
 * Formats the SMTP reply (no CRLF) for REJECT_550 or TEMPFAIL_451 into buf,
 * e.g. "550 5.7.23 SPF: a.test does not designate 192.0.2.9 as permitted
 * sender". Returns 0, -EINVAL for another action, or -ENOSPC (truncated).
 */
int spf_reply(const spf_request *req, enum spf_action act, char *buf, size_t size);

/*
 * Test hook: per-query DNS timeout and the time budget of one identity's
 * evaluation (RFC 7208 4.6.4: at least 20 s), in milliseconds; 0 keeps the
 * default (5000 / 20000). Only before the first check.
 */
void spf_checker_set_timeouts(spf_checker *c, unsigned query_ms, unsigned budget_ms);

/* ---- internal to smtpd/spf_check.c and smtpd/spf_dns.c ---- */

/*
 * One worker's DNS layer for libspf2: a private c-ares channel, driven
 * synchronously with poll(), plus the per-evaluation limits of RFC 7208
 * 4.6.4 that libspf2 does not keep across include/redirect.
 */
typedef struct spf_dns spf_dns;
struct SPF_dns_server_struct;

enum spf_dns_stop {
    SPF_DNS_GO,       /* no limit hit */
    SPF_DNS_LIMIT,    /* more than 10 DNS terms or too many queries: permerror */
    SPF_DNS_VOID,     /* more than 2 void lookups: permerror */
    SPF_DNS_BUDGET,   /* the evaluation's time ran out: temperror */
    SPF_DNS_CANCELED, /* spf_check_cancel() */
};

/* How the top-level record fetch of the last evaluation ended. */
enum spf_dns_top {
    SPF_TOP_OK,        /* one record, compiled */
    SPF_TOP_NONE,      /* no record, no domain, or a malformed domain */
    SPF_TOP_TEMP,      /* DNS failure */
    SPF_TOP_PERM,      /* several records, or one that does not compile */
    SPF_TOP_NOT_TRIED, /* no fetch yet */
};

/*
 * servers: "IP", "IP:port", "[IPv6]:port" (n = 0: /etc/resolv.conf).
 * Returns 0, -EINVAL, -ENOMEM or -EIO.
 */
int spf_dns_new(const char *const *servers, size_t n, spf_dns **out);
void spf_dns_free(spf_dns *d);
struct SPF_dns_server_struct *spf_dns_layer(spf_dns *d);
/*
 * Starts an evaluation: resets its counters, sets the per-query timeout
 * and the evaluation's budget (ms); cancel is polled during waits.
 */
void spf_dns_begin(spf_dns *d, unsigned query_ms, unsigned budget_ms, const atomic_bool *cancel);
enum spf_dns_stop spf_dns_stopped(const spf_dns *d);
enum spf_dns_top spf_dns_top(const spf_dns *d);
/* Why the evaluation stopped or the top fetch failed, for the header. */
const char *spf_dns_detail(const spf_dns *d);
/* Whether name is a multi-label domain that can be queried (RFC 7208 4.3). */
bool spf_domain_ok(const char *name);

#endif
