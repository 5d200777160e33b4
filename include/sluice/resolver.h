/*
 * resolver.h - asynchronous DNS on a libuv loop (c-ares), for MX routing and SPF.
 *
 * The c-ares channel is driven the way Node.js did it: c-ares reports every
 * socket it opens through its socket-state callback, we watch each one with a
 * uv_poll_t, and one uv_timer_t follows ares_timeout(). Nothing here blocks
 * the loop. Lookups go to DNS only (never /etc/hosts: an MTA routes by DNS),
 * names are queried as given (no search list), and the servers are either the
 * configured [delivery] dns_servers or /etc/resolv.conf. See docs/dns.md.
 *
 * libuv's contract: functions return 0 or a negative code; callbacks get a
 * status; the caller allocates the resolver and the requests and may free
 * the resolver only in (or after) its close callback, a request only after
 * its callback ran. A callback is never called from inside the function that
 * started the request: it always runs later from the loop.
 *
 * Single-threaded: use one resolver from its loop's thread only.
 */
#ifndef SLUICE_RESOLVER_H
#define SLUICE_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/*
 * Result classes: the status given to callbacks. They lie outside the errno
 * range, so a function may also return a plain negative errno (-EINVAL,
 * -ENOMEM) without ambiguity. How an MTA maps them: RESOLVER_ENXDOMAIN and
 * RESOLVER_ENULLMX are permanent (bounce), RESOLVER_ENODATA on an MX query
 * means "use the domain itself" (RFC 5321 5.1 implicit MX) and on an address
 * query "this host has no address of that family", RESOLVER_ETEMP is retried
 * later.
 */
enum {
    RESOLVER_OK = 0,
    RESOLVER_ENXDOMAIN = -30001, /* the name does not exist (rcode NXDOMAIN) */
    RESOLVER_ENODATA = -30002,   /* the name exists but has no record of that type */
    RESOLVER_ENULLMX = -30003,   /* MX only: the domain accepts no mail (RFC 7505 "0 .") */
    RESOLVER_ETEMP = -30004,     /* SERVFAIL, REFUSED, timeout, unreachable server, bad reply */
    RESOLVER_ECANCELED = -30005, /* resolver_cancel() or resolver_close() */
};

/* "ok", "name does not exist", ...; also knows negative errno values. */
const char *resolver_strerror(int status);

/* ---- results ---- */

typedef struct resolver_mx {
    char *host; /* without the trailing dot */
    uint16_t pref;
} resolver_mx;

typedef struct resolver_txt {
    char *data; /* the record's character-strings concatenated (RFC 7208 3.3); NUL added */
    size_t len; /* bytes in data, without that NUL (data may hold NUL bytes itself) */
} resolver_txt;

typedef struct resolver_result {
    /* MX: lowest preference first, equal preferences in random order (RFC 5321 5.1). */
    resolver_mx *mx;
    size_t nmx;
    /* A / AAAA: addresses with port 0 (set sin_port / sin6_port yourself). */
    struct sockaddr_storage *addrs;
    size_t naddrs;
    /* TXT: one entry per record, in reply order. */
    resolver_txt *txt;
    size_t ntxt;
    /* PTR: the first name of the reply, without the trailing dot. */
    char *name;
} resolver_result;

/* Frees what a result holds and zeroes it; safe on a zeroed result. */
void resolver_result_free(resolver_result *res);

/* ---- the resolver handle ---- */

typedef struct resolver resolver;
typedef struct resolver_req resolver_req;
typedef void (*resolver_cb)(resolver_req *req, int status);
typedef void (*resolver_close_cb)(resolver *r);

typedef struct resolver_options {
    /*
     * Name servers as "IP", "IP:port" or "[IPv6]:port" (IP literals only:
     * there is nobody to resolve a server's name). NULL or 0 entries =
     * the servers of /etc/resolv.conf. Tried in order.
     */
    const char *const *servers;
    size_t nservers;
    unsigned timeout_ms; /* per try and server; 0 = 5000 */
    unsigned tries;      /* rounds over all servers; 0 = 2 */
} resolver_options;

struct resolver {
    void *data; /* for the caller */

    /* private */
    uv_loop_t *loop_;
    struct ares_channeldata *channel_;
    uv_timer_t timer_; /* fires at ares_timeout() */
    uv_timer_t defer_; /* runs callbacks that must not run inside the caller's call */
    struct resolver_sock *socks_;
    resolver_req *deferred_head_, *deferred_tail_;
    resolver_close_cb close_cb_;
    unsigned submitting_;     /* depth of calls into c-ares made for our caller */
    unsigned pending_closes_; /* handles whose close callback has not run */
    bool closing_;
    bool torn_down_;
    uint64_t rng_; /* for the MX shuffle */
};

/*
 * A request: allocated by the caller, it must stay valid until its callback
 * has run. The result lives in req->result from the callback on; free it
 * with resolver_req_cleanup() (in the callback or later). A request may be
 * reused after its callback and a cleanup.
 */
struct resolver_req {
    void *data; /* for the caller */

    /* read-only: valid in and after the callback */
    resolver *resolver;
    resolver_result result;
    const char *detail; /* why it failed, for logs ("Timeout while contacting DNS servers") */

    /* private */
    resolver_cb cb_;
    struct resolver_query *q_; /* the lookup in flight, NULL once finished */
    resolver_req *next_;       /* in the deferred list */
    int status_;
    bool active_; /* started and callback not yet called */
};

/*
 * Creates the channel. Returns -EINVAL for a bad server string (nothing is
 * then left to close), -ENOMEM, or RESOLVER_ETEMP if c-ares cannot start.
 * After 0, resolver_close() must be called eventually.
 */
int resolver_init(uv_loop_t *loop, resolver *r, const resolver_options *opts);

/*
 * Cancels every request (their callbacks get RESOLVER_ECANCELED), closes
 * every socket and handle, then calls cb (may be NULL) from the loop; free r
 * only then. May be called from inside a request callback.
 */
void resolver_close(resolver *r, resolver_close_cb cb);

/*
 * Lookups. name is a domain without a search list ("a.test" or "a.test.").
 * Return 0 (the callback will run), -EINVAL for a name that is not a valid
 * DNS name or a request already active, -ENOMEM, or RESOLVER_ECANCELED when
 * the resolver is closing.
 */

/*
 * MX records. Status RESOLVER_ENULLMX when every record is "." (a null MX
 * per RFC 7505; "." records mixed with real ones are dropped and the real
 * ones returned). RESOLVER_ENODATA: no MX, the domain exists.
 */
int resolver_mx_query(resolver *r, resolver_req *req, const char *name, resolver_cb cb);

/*
 * Addresses: family AF_INET (A), AF_INET6 (AAAA) or AF_UNSPEC (both queries
 * in parallel: IPv6 addresses first, then IPv4, as the RFC 6724 default
 * policy orders them). With AF_UNSPEC the status is RESOLVER_OK when either
 * family gave addresses, else RESOLVER_ETEMP if either failed temporarily,
 * else RESOLVER_ENXDOMAIN if either said so, else RESOLVER_ENODATA.
 */
int resolver_addr_query(resolver *r, resolver_req *req, const char *name, int family,
                        resolver_cb cb);

/* TXT records (for SPF): every record, strings of one record concatenated. */
int resolver_txt_query(resolver *r, resolver_req *req, const char *name, resolver_cb cb);

/* PTR of an address (AF_INET or AF_INET6 sockaddr): result.name. */
int resolver_ptr_query(resolver *r, resolver_req *req, const struct sockaddr *sa, resolver_cb cb);

/*
 * Cancels one active request: its callback runs later from the loop with
 * RESOLVER_ECANCELED (the DNS reply, if any, is dropped). -EINVAL if the
 * request is not active, -EBUSY if it has finished and only waits for its
 * callback (which will then report the real status).
 */
int resolver_cancel(resolver_req *req);

/* Frees req->result. Safe to call more than once. */
void resolver_req_cleanup(resolver_req *req);

/* ---- pure helpers (resolver_parse.c): no I/O, used by the above and tests ---- */

/*
 * Parses one "IP", "IP:port" or "[IPv6]:port" server string (port defaults
 * to 53). Returns 0 or -EINVAL. Used by `sluice check` for dns_servers too.
 */
int resolver_server_parse(const char *s, int *family, unsigned char addr[16], uint16_t *port);

/*
 * Whether name can be queried: 1..253 characters (a trailing dot allowed),
 * labels of 1..63 printable ASCII characters without spaces or backslashes.
 */
bool resolver_name_valid(const char *name);

/* "4.3.2.1.in-addr.arpa" / nibble ".ip6.arpa" name of an address. 0, -EINVAL, -ENOSPC. */
int resolver_reverse_name(const struct sockaddr *sa, char *out, size_t outsz);

/*
 * Maps a c-ares status (ARES_*) to a result class. ARES_SUCCESS maps to
 * RESOLVER_OK; anything unknown to RESOLVER_ETEMP (retrying is safe,
 * bouncing is not).
 */
int resolver_status_from_ares(int ares_status);

/*
 * Reply parsers over the raw DNS message (as c-ares hands it over). They
 * fill out (zeroed first) and return RESOLVER_OK, RESOLVER_ENODATA (no
 * record of the type in the answer), RESOLVER_ENULLMX (MX), or
 * RESOLVER_ETEMP for a malformed reply or no memory. On failure out is
 * left empty. The MX list comes sorted by preference, reply order kept
 * among equal ones; resolver_mx_shuffle() randomises those.
 */
int resolver_parse_mx(const unsigned char *buf, size_t len, resolver_result *out);
int resolver_parse_addrs(const unsigned char *buf, size_t len, int family, resolver_result *out);
int resolver_parse_txt(const unsigned char *buf, size_t len, resolver_result *out);
int resolver_parse_ptr(const unsigned char *buf, size_t len, const struct sockaddr *sa,
                       resolver_result *out);

/*
 * Sorts mx by preference and puts records of equal preference in random
 * order, drawing from *rng (any nonzero seed; advanced). Returns -ENOMEM
 * (mx left unchanged) or 0.
 */
int resolver_mx_shuffle(resolver_mx *mx, size_t n, uint64_t *rng);

#endif
