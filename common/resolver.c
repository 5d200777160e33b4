/*
 * resolver.c - c-ares on a libuv loop (the I/O half; parsing is in
 * resolver_parse.c).
 *
 * c-ares owns its sockets and tells us through ARES_OPT_SOCK_STATE_CB which
 * to watch for what; each gets a uv_poll_t that calls ares_process_fd().
 * One uv_timer_t is re-armed to ares_timeout() after every c-ares call, so
 * retransmissions and timeouts happen without a periodic tick.
 *
 * c-ares may finish a query inside ares_query() itself (no server reachable,
 * no memory); such completions, cancellations and the teardown at close run
 * from a second, zero-delay timer, so a caller's callback never runs inside
 * the call that started the request (libuv's rule) and c-ares is never torn
 * down from inside one of its own callbacks.
 */
#include "sluice/resolver.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "sluice/log.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_TRIES 2

struct resolver_sock {
    uv_poll_t poll;
    ares_socket_t fd;
    resolver *r;
    struct resolver_sock *next;
};

/* One lookup inside c-ares; outlives a canceled request until c-ares answers. */
struct resolver_query {
    resolver *r;
    resolver_req *req;          /* NULL once the request was canceled */
    int type;                   /* T_MX, T_A, T_AAAA, T_TXT, T_PTR */
    bool unspec;                /* an AF_UNSPEC address lookup: T_AAAA and T_A both sent */
    int pending;                /* c-ares queries still out (2 for AF_UNSPEC) */
    struct sockaddr_storage sa; /* PTR: the address asked about */
    /* AF_UNSPEC: per family status and result, merged when both are in */
    int st4, st6;
    resolver_result res4, res6;
};

static void update_timer(resolver *r);

/* ---- completion ---- */

static void defer_cb(uv_timer_t *t);

static void deliver(resolver_req *req)
{
    req->active_ = false;
    req->cb_(req, req->status_);
}

static void defer_push(resolver *r, resolver_req *req)
{
    req->next_ = NULL;
    if (r->deferred_tail_)
        r->deferred_tail_->next_ = req;
    else
        r->deferred_head_ = req;
    r->deferred_tail_ = req;
    if (!r->torn_down_)
        uv_timer_start(&r->defer_, defer_cb, 0, 0);
}

static void complete(resolver_req *req, int status)
{
    resolver *r = req->resolver;

    req->q_ = NULL;
    req->status_ = status;
    if (status != RESOLVER_OK)
        resolver_result_free(&req->result);
    if (r->submitting_ > 0)
        defer_push(r, req); /* we are inside the caller's own call */
    else
        deliver(req);
}

static void run_deferred(resolver *r)
{
    /* Take the list first: a callback may start requests that defer again. */
    resolver_req *req = r->deferred_head_;
    r->deferred_head_ = r->deferred_tail_ = NULL;
    while (req) {
        resolver_req *next = req->next_;
        req->next_ = NULL;
        deliver(req);
        req = next;
    }
}

/* ---- sockets and timer ---- */

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct resolver_sock *s = p->data;
    resolver *r = s->r;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

    /* On a poll error let c-ares read and write, so that it sees the error itself. */
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE;
    if (events & UV_READABLE)
        rfd = s->fd;
    if (events & UV_WRITABLE)
        wfd = s->fd;
    ares_process_fd(r->channel_, rfd, wfd);
    update_timer(r);
}

/* A socket closed in normal use must not end the resolver: hence torn_down_. */
static void one_closed(resolver *r)
{
    if (--r->pending_closes_ == 0 && r->torn_down_ && r->close_cb_)
        r->close_cb_(r);
}

static void handle_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

static void sock_closed(uv_handle_t *h)
{
    struct resolver_sock *s = h->data;
    resolver *r = s->r;
    free(s);
    one_closed(r);
}

static void sock_close(resolver *r, struct resolver_sock *s)
{
    r->pending_closes_++;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

/* c-ares: start, change or stop watching fd. Called before c-ares closes fd. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    resolver *r = data;
    struct resolver_sock **pp, *s;
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

    for (pp = &r->socks_; *pp && (*pp)->fd != fd; pp = &(*pp)->next)
        ;
    s = *pp;
    if (events == 0) {
        if (s) {
            *pp = s->next;
            sock_close(r, s);
        }
        return;
    }
    if (s == NULL) {
        int rc;
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            /* The query on this socket will time out; nothing better to do. */
            log_err("resolver: no memory to watch a DNS socket");
            return;
        }
        rc = uv_poll_init_socket(r->loop_, &s->poll, fd);
        if (rc < 0) {
            log_err("resolver: cannot watch DNS socket %d: %s", (int)fd, uv_strerror(rc));
            free(s);
            return;
        }
        s->fd = fd;
        s->r = r;
        s->poll.data = s;
        s->next = r->socks_;
        r->socks_ = s;
    }
    uv_poll_start(&s->poll, events, poll_cb);
}

static void timer_cb(uv_timer_t *t)
{
    resolver *r = t->data;
    /* No fd: c-ares only handles the timeouts that are due. */
    ares_process_fd(r->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    update_timer(r);
}

static void update_timer(resolver *r)
{
    struct timeval buf, *tv;
    uint64_t ms;

    if (r->channel_ == NULL)
        return;
    tv = ares_timeout(r->channel_, NULL, &buf);
    if (tv == NULL) {
        uv_timer_stop(&r->timer_);
        return;
    }
    /* Round up: firing early would only make c-ares wait once more. */
    ms = (uint64_t)tv->tv_sec * 1000 + ((uint64_t)tv->tv_usec + 999) / 1000;
    uv_timer_start(&r->timer_, timer_cb, ms, 0);
}

/* ---- init and close ---- */

static void seed_rng(resolver *r)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
        seed = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    r->rng_ = seed ? seed : 1;
}

static int set_servers(ares_channel ch, const char *const *servers, size_t n)
{
    struct ares_addr_port_node *nodes;
    int st;

    nodes = calloc(n, sizeof(*nodes));
    if (nodes == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint16_t port;
        int family;
        unsigned char addr[16];
        if (resolver_server_parse(servers[i], &family, addr, &port) < 0) {
            log_err("resolver: bad DNS server \"%s\" (want IP, IP:port or [IPv6]:port)",
                    servers[i] ? servers[i] : "(null)");
            free(nodes);
            return -EINVAL;
        }
        nodes[i].next = i + 1 < n ? &nodes[i + 1] : NULL;
        nodes[i].family = family;
        if (family == AF_INET)
            memcpy(&nodes[i].addr.addr4, addr, 4);
        else
            memcpy(&nodes[i].addr.addr6, addr, 16);
        nodes[i].udp_port = port;
        nodes[i].tcp_port = port;
    }
    st = ares_set_servers_ports(ch, nodes);
    free(nodes);
    if (st != ARES_SUCCESS) {
        log_err("resolver: cannot set DNS servers: %s", ares_strerror(st));
        return st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
    }
    return 0;
}

int resolver_init(uv_loop_t *loop, resolver *r, const resolver_options *opts)
{
    struct ares_options ao;
    int mask, st, rc;
    char lookups[] = "b"; /* DNS only, never /etc/hosts */

    memset(r, 0, sizeof(*r));
    r->loop_ = loop;
    seed_rng(r);

    /* Only reference counting on Unix; pairs with ares_library_cleanup at close. */
    st = ares_library_init(ARES_LIB_INIT_ALL);
    if (st != ARES_SUCCESS)
        return RESOLVER_ETEMP;

    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = r;
    ao.timeout = (int)(opts && opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS);
    ao.tries = (int)(opts && opts->tries ? opts->tries : DEFAULT_TRIES);
    ao.lookups = lookups;
    /*
     * Names are absolute: no search list, no HOSTALIASES file. No EDNS0:
     * c-ares 1.18 does not fall back when a server or middlebox mishandles
     * it, while a truncated UDP reply is always retried over TCP.
     */
    ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    /* NOROTATE: the configured order is the order of preference, whatever resolv.conf says. */
    mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS |
           ARES_OPT_FLAGS | ARES_OPT_NOROTATE;
    st = ares_init_options(&r->channel_, &ao, mask);
    if (st != ARES_SUCCESS) {
        log_err("resolver: c-ares init: %s", ares_strerror(st));
        r->channel_ = NULL;
        ares_library_cleanup();
        return st == ARES_ENOMEM ? -ENOMEM : RESOLVER_ETEMP;
    }
    if (opts && opts->servers && opts->nservers > 0) {
        rc = set_servers(r->channel_, opts->servers, opts->nservers);
        if (rc < 0) {
            ares_destroy(r->channel_);
            r->channel_ = NULL;
            ares_library_cleanup();
            return rc;
        }
    }
    uv_timer_init(loop, &r->timer_);
    uv_timer_init(loop, &r->defer_);
    r->timer_.data = r;
    r->defer_.data = r;
    return 0;
}

static void teardown(resolver *r)
{
    r->torn_down_ = true;
    /* Every query ends with ARES_ECANCELLED: callbacks get RESOLVER_ECANCELED. */
    ares_cancel(r->channel_);
    /* Closes the sockets; c-ares reports each through sock_state_cb first. */
    ares_destroy(r->channel_);
    r->channel_ = NULL;
    ares_library_cleanup();
    /* Anything canceled above by a callback that was deferred. */
    run_deferred(r);
    while (r->socks_) {
        struct resolver_sock *s = r->socks_;
        r->socks_ = s->next;
        sock_close(r, s);
    }
    r->pending_closes_ += 2;
    uv_close((uv_handle_t *)&r->timer_, handle_closed);
    uv_close((uv_handle_t *)&r->defer_, handle_closed);
}

static void defer_cb(uv_timer_t *t)
{
    resolver *r = t->data;
    run_deferred(r);
    if (r->closing_ && !r->torn_down_)
        teardown(r);
}

void resolver_close(resolver *r, resolver_close_cb cb)
{
    if (r->closing_)
        return;
    r->closing_ = true;
    r->close_cb_ = cb;
    /* From the loop, not here: we may be inside a c-ares callback. */
    uv_timer_start(&r->defer_, defer_cb, 0, 0);
}

/* ---- queries ---- */

static void merge_unspec(struct resolver_query *q, resolver_req *req)
{
    resolver_result *res = &req->result;
    int st;

    if (q->st6 == RESOLVER_OK || q->st4 == RESOLVER_OK) {
        size_t n = q->res6.naddrs + q->res4.naddrs;
        res->addrs = calloc(n, sizeof(*res->addrs));
        if (res->addrs == NULL) {
            st = RESOLVER_ETEMP;
        } else {
            /* RFC 6724's default policy: IPv6 before IPv4. */
            if (q->res6.naddrs)
                memcpy(res->addrs, q->res6.addrs, q->res6.naddrs * sizeof(*res->addrs));
            if (q->res4.naddrs)
                memcpy(res->addrs + q->res6.naddrs, q->res4.addrs,
                       q->res4.naddrs * sizeof(*res->addrs));
            res->naddrs = n;
            st = RESOLVER_OK;
        }
    } else if (q->st6 == RESOLVER_ETEMP || q->st4 == RESOLVER_ETEMP) {
        st = RESOLVER_ETEMP;
    } else if (q->st6 == RESOLVER_ECANCELED || q->st4 == RESOLVER_ECANCELED) {
        st = RESOLVER_ECANCELED;
    } else if (q->st6 == RESOLVER_ENXDOMAIN || q->st4 == RESOLVER_ENXDOMAIN) {
        st = RESOLVER_ENXDOMAIN;
    } else {
        st = RESOLVER_ENODATA;
    }
    if (st == RESOLVER_OK)
        req->detail = NULL; /* one family may have failed; the lookup did not */
    resolver_result_free(&q->res4);
    resolver_result_free(&q->res6);
    complete(req, st);
}

static void query_free(struct resolver_query *q)
{
    resolver_result_free(&q->res4);
    resolver_result_free(&q->res6);
    free(q);
}

static int parse_reply(struct resolver_query *q, int type, const unsigned char *abuf, int alen,
                       resolver_result *res)
{
    int st;

    switch (type) {
    case T_MX:
        st = resolver_parse_mx(abuf, (size_t)alen, res);
        if (st == RESOLVER_OK && resolver_mx_shuffle(res->mx, res->nmx, &q->r->rng_) < 0) {
            resolver_result_free(res);
            st = RESOLVER_ETEMP;
        }
        return st;
    case T_A:
        return resolver_parse_addrs(abuf, (size_t)alen, AF_INET, res);
    case T_AAAA:
        return resolver_parse_addrs(abuf, (size_t)alen, AF_INET6, res);
    case T_TXT:
        return resolver_parse_txt(abuf, (size_t)alen, res);
    case T_PTR:
        return resolver_parse_ptr(abuf, (size_t)alen, (const struct sockaddr *)&q->sa, res);
    }
    return RESOLVER_ETEMP;
}

/* One c-ares callback; `type` tells the two halves of an AF_UNSPEC apart. */
static void answer(struct resolver_query *q, int type, int status, const unsigned char *abuf,
                   int alen)
{
    resolver_req *req = q->req;
    resolver_result tmp, *res;
    int st;

    q->pending--;
    if (req == NULL) { /* canceled: the caller has had its callback */
        if (q->pending == 0)
            query_free(q);
        return;
    }
    if (q->unspec)
        res = type == T_A ? &q->res4 : &q->res6;
    else
        res = &tmp;
    memset(res, 0, sizeof(*res));
    st = resolver_status_from_ares(status);
    if (st == RESOLVER_OK) {
        if (abuf != NULL && alen > 0)
            st = parse_reply(q, type, abuf, alen, res);
        else
            st = RESOLVER_ETEMP;
        if (st == RESOLVER_ETEMP && req->detail == NULL)
            req->detail = "malformed DNS reply";
    }
    if (st != RESOLVER_OK && req->detail == NULL)
        req->detail = status != ARES_SUCCESS ? ares_strerror(status) : resolver_strerror(st);

    if (q->unspec) {
        if (type == T_A)
            q->st4 = st;
        else
            q->st6 = st;
        if (q->pending > 0)
            return;
        req->q_ = NULL;
        merge_unspec(q, req);
        query_free(q);
        return;
    }
    req->result = tmp;
    req->q_ = NULL;
    query_free(q);
    complete(req, st);
}

/* The c-ares callbacks: arg is the query; one per record type we send. */
#define ANSWER_CB(name, type)                                                                      \
    static void name(void *arg, int status, int timeouts, unsigned char *abuf, int alen)           \
    {                                                                                              \
        (void)timeouts;                                                                            \
        answer(arg, type, status, abuf, alen);                                                     \
    }
ANSWER_CB(answer_mx, T_MX)
ANSWER_CB(answer_a, T_A)
ANSWER_CB(answer_aaaa, T_AAAA)
ANSWER_CB(answer_txt, T_TXT)
ANSWER_CB(answer_ptr, T_PTR)

static ares_callback callback_for(int type)
{
    switch (type) {
    case T_MX:
        return answer_mx;
    case T_A:
        return answer_a;
    case T_AAAA:
        return answer_aaaa;
    case T_TXT:
        return answer_txt;
    default:
        return answer_ptr;
    }
}

/* Common start of every lookup: checks, request and query set-up. */
static int start(resolver *r, resolver_req *req, const char *name, resolver_cb cb,
                 struct resolver_query **out)
{
    struct resolver_query *q;

    if (r == NULL || req == NULL || cb == NULL)
        return -EINVAL;
    if (r->closing_ || r->channel_ == NULL)
        return RESOLVER_ECANCELED;
    if (req->active_)
        return -EINVAL;
    if (!resolver_name_valid(name))
        return -EINVAL;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    q->r = r;
    q->req = req;
    req->resolver = r;
    memset(&req->result, 0, sizeof(req->result));
    req->detail = NULL;
    req->cb_ = cb;
    req->q_ = q;
    req->next_ = NULL;
    req->status_ = 0;
    req->active_ = true;
    *out = q;
    return 0;
}

static void send_one(resolver *r, struct resolver_query *q, const char *name, int type)
{
    q->pending++;
    r->submitting_++;
    ares_query(r->channel_, name, C_IN, type, callback_for(type), q);
    r->submitting_--;
}

static int query_simple(resolver *r, resolver_req *req, const char *name, int type, resolver_cb cb)
{
    struct resolver_query *q;
    int rc = start(r, req, name, cb, &q);
    if (rc < 0)
        return rc;
    q->type = type;
    send_one(r, q, name, type);
    update_timer(r);
    return 0;
}

int resolver_mx_query(resolver *r, resolver_req *req, const char *name, resolver_cb cb)
{
    return query_simple(r, req, name, T_MX, cb);
}

int resolver_txt_query(resolver *r, resolver_req *req, const char *name, resolver_cb cb)
{
    return query_simple(r, req, name, T_TXT, cb);
}

int resolver_addr_query(resolver *r, resolver_req *req, const char *name, int family,
                        resolver_cb cb)
{
    struct resolver_query *q;
    int rc;

    if (family == AF_INET)
        return query_simple(r, req, name, T_A, cb);
    if (family == AF_INET6)
        return query_simple(r, req, name, T_AAAA, cb);
    if (family != AF_UNSPEC)
        return -EINVAL;
    rc = start(r, req, name, cb, &q);
    if (rc < 0)
        return rc;
    q->unspec = true;
    q->type = T_AAAA;
    /* Both counted before either is sent: the first may finish at once. */
    q->pending = 2;
    r->submitting_++;
    ares_query(r->channel_, name, C_IN, T_AAAA, answer_aaaa, q);
    /* The first may have been canceled synchronously; q lives while pending > 0. */
    ares_query(r->channel_, name, C_IN, T_A, answer_a, q);
    r->submitting_--;
    update_timer(r);
    return 0;
}

int resolver_ptr_query(resolver *r, resolver_req *req, const struct sockaddr *sa, resolver_cb cb)
{
    struct resolver_query *q;
    char name[80];
    int rc;

    if (sa == NULL || resolver_reverse_name(sa, name, sizeof(name)) < 0)
        return -EINVAL;
    rc = start(r, req, name, cb, &q);
    if (rc < 0)
        return rc;
    q->type = T_PTR;
    memcpy(&q->sa, sa,
           sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    send_one(r, q, name, T_PTR);
    update_timer(r);
    return 0;
}

int resolver_cancel(resolver_req *req)
{
    struct resolver_query *q;

    if (req == NULL || !req->active_)
        return -EINVAL;
    q = req->q_;
    if (q == NULL)
        return -EBUSY; /* finished; its callback is queued */
    /* c-ares 1.18 cannot drop one query: detach it and ignore its answer. */
    q->req = NULL;
    req->q_ = NULL;
    req->status_ = RESOLVER_ECANCELED;
    req->detail = "canceled";
    resolver_result_free(&req->result);
    defer_push(req->resolver, req);
    return 0;
}

void resolver_req_cleanup(resolver_req *req)
{
    if (req)
        resolver_result_free(&req->result);
}
