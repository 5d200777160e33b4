/*
 * spf_check.c - SPF checks on worker threads, results back on the loop.
 *
 * Each worker owns a libspf2 server and a DNS layer (spf_dns.c) with its
 * own c-ares channel, so workers share nothing but the queue. Requests go
 * through a mutex-protected queue; finished ones come back through a done
 * list and a uv_async_t, and their callbacks run on the loop thread.
 *
 * libspf2's own entry point (SPF_request_query_mailfrom) is not used: it
 * passes every loopback client without looking (which would make the check
 * untestable and differs from RFC 7208), and it cannot tell "no record"
 * from "broken record". We fetch the record through our layer and run
 * SPF_record_interpret() on it ourselves.
 */
#include "sluice/spf_check.h"
#include "sluice/log.h"
#include "spf_header.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spf2/spf.h>

#define SPF_MAX_WORKERS 32 /* checks that may wait on DNS at once; more queue up */
#define SPF_QUERY_MS 5000
#define SPF_BUDGET_MS 20000 /* RFC 7208 4.6.4: at least 20 s per evaluation */

enum { WHERE_IDLE, WHERE_QUEUED, WHERE_RUNNING, WHERE_DONE };

struct worker {
    spf_checker *c;
    uv_thread_t tid;
    spf_dns *dns;
    SPF_server_t *server;
};

struct spf_checker {
    uv_loop_t *loop;
    uv_async_t async;
    uv_mutex_t mu;
    uv_cond_t cv;
    spf_request *q_head, *q_tail; /* waiting for a worker (mu) */
    unsigned nqueued;             /* (mu) */
    spf_request *d_head, *d_tail; /* finished, waiting for the loop (mu) */
    struct worker workers[SPF_MAX_WORKERS];
    unsigned nworkers; /* threads started (mu) */
    unsigned idle;     /* threads waiting for work (mu) */
    bool stopping;     /* (mu) */
    unsigned active;   /* started, callback not yet run (loop thread) */
    unsigned query_ms, budget_ms;
    char *hostname;
    char *servers[CFG_MAX_DNS];
    size_t nservers;
};

/* ---- libspf2's logging ---- */

__attribute__((noreturn)) static void spf_log_error(const char *file, int line, const char *msg)
{
    /* libspf2 calls this on broken invariants only (NULL asserts), then aborts */
    log_err("libspf2: %s (%s:%d)", msg, file ? file : "?", line);
    abort();
}

static void spf_log_warning(const char *file, int line, const char *msg)
{
    log_warn("libspf2: %s", msg);
}

static void spf_log_info(const char *file, int line, const char *msg)
{
    log_debug("libspf2: %s", msg);
}

/* Replaces the stdio defaults once, before any worker runs. */
static void spf_log_setup(void)
{
    SPF_error_handler = spf_log_error;
    SPF_warning_handler = spf_log_warning;
    SPF_info_handler = spf_log_info;
    SPF_debug_handler = NULL; /* we never set libspf2's debug level; silence it anyway */
}

/* ---- small strings ---- */

const char *spf_result_name(enum spf_result r)
{
    switch (r) {
    case SPF_RES_NONE:
        return "none";
    case SPF_RES_NEUTRAL:
        return "neutral";
    case SPF_RES_PASS:
        return "pass";
    case SPF_RES_FAIL:
        return "fail";
    case SPF_RES_SOFTFAIL:
        return "softfail";
    case SPF_RES_TEMPERROR:
        return "temperror";
    case SPF_RES_PERMERROR:
        return "permerror";
    }
    return "permerror";
}

enum spf_action spf_policy(enum spf_mode mode, enum spf_result r)
{
    switch (mode) {
    case SPF_OFF:
        return SPF_ACT_ACCEPT;
    case SPF_TAG:
        return SPF_ACT_ACCEPT_TAG;
    case SPF_REJECT:
        break;
    }
    switch (r) {
    case SPF_RES_FAIL:
        return SPF_ACT_REJECT_550;
    case SPF_RES_TEMPERROR:
        return SPF_ACT_TEMPFAIL_451;
    default:
        /* permerror included: see spf_check.h and docs/spf.md */
        return SPF_ACT_ACCEPT_TAG;
    }
}

int spf_reply(const spf_request *req, enum spf_action act, char *buf, size_t size)
{
    int n;
    if (act == SPF_ACT_REJECT_550)
        n = snprintf(buf, size, "550 5.7.23 SPF: %s", req->explanation);
    else if (act == SPF_ACT_TEMPFAIL_451)
        n = snprintf(buf, size, "451 4.7.24 SPF: temporary error checking %s, try again later",
                     req->domain[0] ? req->domain : "the sender");
    else
        return -EINVAL;
    return n < 0 ? -EINVAL : (size_t)n >= size ? -ENOSPC : 0;
}

/* Copies src as printable ASCII (an SMTP reply line), at most size - 1 bytes. */
static void copy_printable(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    for (; src && *src && n + 1 < size; src++) {
        unsigned char ch = (unsigned char)*src;
        dst[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

struct eval {
    enum spf_result result;
    char domain[SPF_DOMAIN_MAX];
    char detail[160];
    char explanation[SPF_EXPLANATION_MAX];
};

/* ---- one evaluation (check_host(), RFC 7208 4) ---- */

struct client {
    int family;
    struct in_addr v4;
    struct in6_addr v6;
    char text[INET6_ADDRSTRLEN];
};

static int client_parse(const char *s, struct client *cl)
{
    memset(cl, 0, sizeof(*cl));
    if (inet_pton(AF_INET, s, &cl->v4) == 1) {
        cl->family = AF_INET;
    } else if (inet_pton(AF_INET6, s, &cl->v6) == 1) {
        cl->family = AF_INET6;
        if (IN6_IS_ADDR_V4MAPPED(&cl->v6)) {
            /* a dual-stack listener's IPv4 client is checked as IPv4 */
            memcpy(&cl->v4, &cl->v6.s6_addr[12], 4);
            cl->family = AF_INET;
        }
    } else {
        return -EINVAL;
    }
    const void *a = cl->family == AF_INET ? (const void *)&cl->v4 : (const void *)&cl->v6;
    if (!inet_ntop(cl->family, a, cl->text, sizeof(cl->text)))
        return -EINVAL;
    return 0;
}

static enum spf_result from_libspf2(SPF_result_t r)
{
    switch (r) {
    case SPF_RESULT_NEUTRAL:
        return SPF_RES_NEUTRAL;
    case SPF_RESULT_PASS:
        return SPF_RES_PASS;
    case SPF_RESULT_FAIL:
        return SPF_RES_FAIL;
    case SPF_RESULT_SOFTFAIL:
        return SPF_RES_SOFTFAIL;
    case SPF_RESULT_NONE:
        return SPF_RES_NONE;
    case SPF_RESULT_TEMPERROR:
        return SPF_RES_TEMPERROR;
    case SPF_RESULT_PERMERROR:
        return SPF_RES_PERMERROR;
    case SPF_RESULT_INVALID:
    default:
        /* never expected; accepting and tagging beats blocking mail on a library bug */
        log_warn("spf: libspf2 returned no result; treated as permerror");
        return SPF_RES_PERMERROR;
    }
}

/*
 * check_host(ip, domain, sender). sender NULL: the HELO identity, whose
 * sender is postmaster@helo (RFC 7208 2.3). Returns false if canceled.
 */
static bool evaluate(struct worker *w, spf_request *req, const struct client *cl,
                     const char *sender, struct eval *ev)
{
    spf_checker *c = w->c;
    memset(ev, 0, sizeof(*ev));
    ev->result = SPF_RES_TEMPERROR;

    SPF_request_t *sr = SPF_request_new(w->server);
    if (!sr) {
        snprintf(ev->detail, sizeof(ev->detail), "out of memory");
        return true;
    }
    SPF_errcode_t err =
        cl->family == AF_INET ? SPF_request_set_ipv4(sr, cl->v4) : SPF_request_set_ipv6(sr, cl->v6);
    /* set_helo_dom also sets the sender to postmaster@helo when none is set */
    if (err == SPF_E_SUCCESS && req->helo_[0])
        err = SPF_request_set_helo_dom(sr, req->helo_);
    if (err == SPF_E_SUCCESS && sender)
        err = SPF_request_set_env_from(sr, sender);
    if (err != SPF_E_SUCCESS) {
        snprintf(ev->detail, sizeof(ev->detail), "cannot set up the check: %s", SPF_strerror(err));
        SPF_request_free(sr);
        return true;
    }
    const char *domain = sender ? sr->env_from_dp : sr->helo_dom;
    snprintf(ev->domain, sizeof(ev->domain), "%s", domain ? domain : "");

    SPF_response_t *resp = SPF_response_new(sr);
    if (!resp) {
        snprintf(ev->detail, sizeof(ev->detail), "out of memory");
        SPF_request_free(sr);
        return true;
    }
    spf_dns_begin(w->dns, c->query_ms, c->budget_ms, &req->canceled_);
    sr->cur_dom = domain;
    SPF_record_t *rec = NULL;
    err = domain ? SPF_server_get_record(w->server, sr, resp, &rec) : SPF_E_NOT_SPF;
    if (err == SPF_E_SUCCESS && rec) {
        resp->spf_record_exp = rec;
        SPF_record_interpret(rec, sr, resp, 0);
        ev->result = from_libspf2(SPF_response_result(resp));
        /* an empty explanation means the domain gave none (our default is "") */
        if (ev->result == SPF_RES_FAIL)
            copy_printable(ev->explanation, sizeof(ev->explanation),
                           SPF_response_get_explanation(resp));
        if ((ev->result == SPF_RES_TEMPERROR || ev->result == SPF_RES_PERMERROR) &&
            !spf_dns_detail(w->dns)[0])
            snprintf(ev->detail, sizeof(ev->detail), "%s",
                     SPF_strerror(SPF_response_errcode(resp)));
        SPF_record_free(rec);
    } else {
        if (rec)
            SPF_record_free(rec);
        switch (spf_dns_top(w->dns)) {
        case SPF_TOP_PERM:
            ev->result = SPF_RES_PERMERROR;
            break;
        case SPF_TOP_TEMP:
            ev->result = SPF_RES_TEMPERROR;
            break;
        case SPF_TOP_NONE:
        case SPF_TOP_NOT_TRIED: /* no domain at all */
            ev->result = SPF_RES_NONE;
            break;
        case SPF_TOP_OK:
            ev->result = SPF_RES_PERMERROR;
            break;
        }
    }
    /* the limits libspf2 does not keep across includes (spf_dns.c) win */
    switch (spf_dns_stopped(w->dns)) {
    case SPF_DNS_LIMIT:
    case SPF_DNS_VOID:
        ev->result = SPF_RES_PERMERROR;
        break;
    case SPF_DNS_BUDGET:
        ev->result = SPF_RES_TEMPERROR;
        break;
    case SPF_DNS_CANCELED:
    case SPF_DNS_GO:
        break;
    }
    if (!ev->detail[0])
        snprintf(ev->detail, sizeof(ev->detail), "%s", spf_dns_detail(w->dns));
    bool canceled = spf_dns_stopped(w->dns) == SPF_DNS_CANCELED || atomic_load(&req->canceled_);
    SPF_response_free(resp);
    SPF_request_free(sr);
    return !canceled;
}

/* RFC 7208 2.3, 2.4: HELO first when it is a domain; MAIL FROM decides otherwise. */
static void run_check(struct worker *w, spf_request *req)
{
    struct client cl;
    struct eval ev;
    memset(&ev, 0, sizeof(ev));
    if (client_parse(req->ip_, &cl) < 0) { /* checked in spf_check_start */
        req->status_ = UV_EINVAL;
        return;
    }
    if (atomic_load(&req->canceled_)) {
        req->status_ = UV_ECANCELED;
        return;
    }
    bool null_sender = req->sender_[0] == '\0';
    bool decided = false;
    if (spf_domain_ok(req->helo_)) {
        if (!evaluate(w, req, &cl, NULL, &ev)) {
            req->status_ = UV_ECANCELED;
            return;
        }
        /* a null sender's MAIL FROM identity is postmaster@HELO: the same check */
        if (ev.result == SPF_RES_FAIL || null_sender) {
            req->identity = SPF_ID_HELO;
            decided = true;
        }
    }
    if (!decided && !null_sender) {
        if (!evaluate(w, req, &cl, req->sender_, &ev)) {
            req->status_ = UV_ECANCELED;
            return;
        }
        req->identity = SPF_ID_MAILFROM;
        decided = true;
    }
    if (!decided) {
        memset(&ev, 0, sizeof(ev));
        ev.result = SPF_RES_NONE;
        req->identity = SPF_ID_NONE;
    }
    req->result = ev.result;
    snprintf(req->domain, sizeof(req->domain), "%s", ev.domain);
    if (ev.result == SPF_RES_FAIL) {
        if (ev.explanation[0])
            snprintf(req->explanation, sizeof(req->explanation), "%s", ev.explanation);
        else
            snprintf(req->explanation, sizeof(req->explanation),
                     "%.160s does not designate %.46s as permitted sender", ev.domain, cl.text);
        copy_printable(req->explanation, sizeof(req->explanation), req->explanation);
    }
    spf_header_in hin = {.receiver = w->c->hostname,
                         .identity = req->identity,
                         .result = req->result,
                         .sender = req->sender_,
                         .helo = req->helo_,
                         .detail = ev.detail,
                         .ip = cl.text};
    spf_header_build(&hin, req->header, sizeof(req->header));
    req->status_ = 0;
}

/* ---- workers and the queue ---- */

static void list_push(spf_request **head, spf_request **tail, spf_request *r)
{
    r->next_ = NULL;
    r->prev_ = *tail;
    if (*tail)
        (*tail)->next_ = r;
    else
        *head = r;
    *tail = r;
}

static void list_remove(spf_request **head, spf_request **tail, spf_request *r)
{
    if (r->prev_)
        r->prev_->next_ = r->next_;
    else
        *head = r->next_;
    if (r->next_)
        r->next_->prev_ = r->prev_;
    else
        *tail = r->prev_;
    r->prev_ = r->next_ = NULL;
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    spf_checker *c = w->c;
    uv_mutex_lock(&c->mu);
    for (;;) {
        while (!c->q_head && !c->stopping) {
            c->idle++;
            uv_cond_wait(&c->cv, &c->mu);
            c->idle--;
        }
        if (c->stopping)
            break;
        spf_request *req = c->q_head;
        list_remove(&c->q_head, &c->q_tail, req);
        c->nqueued--;
        req->where_ = WHERE_RUNNING;
        uv_mutex_unlock(&c->mu);

        run_check(w, req);

        uv_mutex_lock(&c->mu);
        req->where_ = WHERE_DONE;
        list_push(&c->d_head, &c->d_tail, req);
        /* spf_checker_free joins us before it closes the handle */
        uv_async_send(&c->async);
    }
    uv_mutex_unlock(&c->mu);
}

/* Runs the callbacks of finished checks, on the loop thread. */
static void on_async(uv_async_t *h)
{
    spf_checker *c = h->data;
    uv_mutex_lock(&c->mu);
    spf_request *r = c->d_head;
    c->d_head = c->d_tail = NULL;
    uv_mutex_unlock(&c->mu);
    while (r) {
        spf_request *next = r->next_;
        r->prev_ = r->next_ = NULL;
        r->where_ = WHERE_IDLE;
        r->active_ = false;
        /* after spf_check_cancel() returned 0 the answer is always UV_ECANCELED */
        int status = atomic_load(&r->canceled_) ? UV_ECANCELED : r->status_;
        if (status == UV_ECANCELED) {
            r->result = SPF_RES_NONE;
            r->identity = SPF_ID_NONE;
            r->header[0] = r->explanation[0] = r->domain[0] = '\0';
        }
        free(r->ip_);
        free(r->helo_);
        free(r->sender_);
        r->ip_ = r->helo_ = r->sender_ = NULL;
        if (--c->active == 0)
            uv_unref((uv_handle_t *)&c->async);
        r->cb_(r, status); /* may free or reuse r */
        r = next;
    }
}

/* Starts one more worker; called with mu held. */
static int worker_spawn(spf_checker *c)
{
    struct worker *w = &c->workers[c->nworkers];
    if (uv_thread_create(&w->tid, worker_main, w) != 0)
        return -EIO;
    c->nworkers++;
    return 0;
}

int spf_checker_new(uv_loop_t *loop, const sluice_config *cfg, spf_checker **out)
{
    *out = NULL;
    spf_checker *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->query_ms = SPF_QUERY_MS;
    c->budget_ms = SPF_BUDGET_MS;
    c->hostname = strdup(cfg->hostname && cfg->hostname[0] ? cfg->hostname : "localhost");
    int err = c->hostname ? 0 : -ENOMEM;
    for (int i = 0; err == 0 && i < cfg->ndns_servers && i < CFG_MAX_DNS; i++) {
        c->servers[i] = strdup(cfg->dns_servers[i]);
        if (!c->servers[i])
            err = -ENOMEM;
        else
            c->nservers++;
    }
    if (err == 0 && ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        err = -EIO;
    if (err < 0) {
        for (size_t i = 0; i < c->nservers; i++)
            free(c->servers[i]);
        free(c->hostname);
        free(c);
        return err;
    }
    spf_log_setup();

    /*
     * Every worker's DNS layer and libspf2 server are made here, at start,
     * where reading /etc/resolv.conf may block; threads start on demand.
     */
    for (int i = 0; i < SPF_MAX_WORKERS && err == 0; i++) {
        struct worker *w = &c->workers[i];
        w->c = c;
        err = spf_dns_new((const char *const *)c->servers, c->nservers, &w->dns);
        if (err < 0)
            break;
        w->server = SPF_server_new_dns(spf_dns_layer(w->dns), 0);
        if (!w->server) {
            err = -ENOMEM;
            break;
        }
        SPF_response_t *resp = NULL;
        /* "": the domain's exp= or nothing; we word the default ourselves */
        if (SPF_server_set_explanation(w->server, "", &resp) != SPF_E_SUCCESS ||
            SPF_server_set_rec_dom(w->server, c->hostname) != SPF_E_SUCCESS)
            err = -ENOMEM;
        if (resp)
            SPF_response_free(resp);
        SPF_server_set_sanitize(w->server, 1);
    }
    if (err == 0 && uv_mutex_init(&c->mu) != 0)
        err = -EIO;
    if (err == 0 && uv_cond_init(&c->cv) != 0) {
        uv_mutex_destroy(&c->mu);
        err = -EIO;
    }
    if (err == 0 && uv_async_init(loop, &c->async, on_async) != 0) {
        uv_cond_destroy(&c->cv);
        uv_mutex_destroy(&c->mu);
        err = -EIO;
    }
    if (err < 0) {
        for (int i = 0; i < SPF_MAX_WORKERS; i++) {
            if (c->workers[i].server)
                SPF_server_free(c->workers[i].server);
            spf_dns_free(c->workers[i].dns);
        }
        for (size_t i = 0; i < c->nservers; i++)
            free(c->servers[i]);
        free(c->hostname);
        free(c);
        ares_library_cleanup();
        return err;
    }
    c->async.data = c;
    /* the async handle keeps the loop alive only while checks are in flight */
    uv_unref((uv_handle_t *)&c->async);
    *out = c;
    return 0;
}

void spf_checker_set_timeouts(spf_checker *c, unsigned query_ms, unsigned budget_ms)
{
    if (query_ms)
        c->query_ms = query_ms;
    if (budget_ms)
        c->budget_ms = budget_ms;
}

static void on_async_closed(uv_handle_t *h)
{
    spf_checker *c = h->data;
    free(c);
}

void spf_checker_free(spf_checker *c)
{
    if (!c)
        return;
    if (c->active > 0) {
        /* a check would call back into freed memory: a caller bug, not a network event */
        log_err("spf: spf_checker_free with %u checks active", c->active);
        abort();
    }
    uv_mutex_lock(&c->mu);
    c->stopping = true;
    uv_cond_broadcast(&c->cv);
    uv_mutex_unlock(&c->mu);
    for (unsigned i = 0; i < c->nworkers; i++)
        uv_thread_join(&c->workers[i].tid);
    for (int i = 0; i < SPF_MAX_WORKERS; i++) {
        if (c->workers[i].server)
            SPF_server_free(c->workers[i].server);
        spf_dns_free(c->workers[i].dns);
    }
    uv_cond_destroy(&c->cv);
    uv_mutex_destroy(&c->mu);
    for (size_t i = 0; i < c->nservers; i++)
        free(c->servers[i]);
    free(c->hostname);
    ares_library_cleanup();
    uv_close((uv_handle_t *)&c->async, on_async_closed);
}

int spf_check_start(spf_checker *c, spf_request *req, const char *client_ip, const char *helo,
                    const char *sender, spf_done_cb cb, void *arg)
{
    struct client cl;
    if (!c || !req || !cb || !client_ip || req->active_ || client_parse(client_ip, &cl) < 0)
        return -EINVAL;
    req->data = arg;
    req->result = SPF_RES_NONE;
    req->identity = SPF_ID_NONE;
    req->header[0] = req->explanation[0] = req->domain[0] = '\0';
    req->ip_ = strdup(client_ip);
    req->helo_ = strdup(helo ? helo : "");
    req->sender_ = strdup(sender ? sender : "");
    if (!req->ip_ || !req->helo_ || !req->sender_) {
        free(req->ip_);
        free(req->helo_);
        free(req->sender_);
        req->ip_ = req->helo_ = req->sender_ = NULL;
        return -ENOMEM;
    }
    req->checker_ = c;
    req->cb_ = cb;
    req->status_ = 0;
    atomic_store(&req->canceled_, false);

    uv_mutex_lock(&c->mu);
    /* idle threads not yet claimed by earlier requests serve this one; else one more */
    if (c->idle <= c->nqueued && c->nworkers < SPF_MAX_WORKERS && worker_spawn(c) < 0 &&
        c->nworkers == 0) {
        uv_mutex_unlock(&c->mu);
        free(req->ip_);
        free(req->helo_);
        free(req->sender_);
        req->ip_ = req->helo_ = req->sender_ = NULL;
        return -EIO;
    }
    req->active_ = true;
    req->where_ = WHERE_QUEUED;
    list_push(&c->q_head, &c->q_tail, req);
    c->nqueued++;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
    /* like a uv_work_t, a check in flight keeps the loop alive */
    if (c->active++ == 0)
        uv_ref((uv_handle_t *)&c->async);
    return 0;
}

int spf_check_cancel(spf_request *req)
{
    if (!req || !req->active_)
        return -EINVAL;
    spf_checker *c = req->checker_;
    atomic_store(&req->canceled_, true);
    uv_mutex_lock(&c->mu);
    if (req->where_ == WHERE_QUEUED) {
        /* never started: finish it now; the callback still runs from the loop */
        list_remove(&c->q_head, &c->q_tail, req);
        c->nqueued--;
        req->status_ = UV_ECANCELED;
        req->where_ = WHERE_DONE;
        list_push(&c->d_head, &c->d_tail, req);
        uv_async_send(&c->async);
    }
    /* running: the worker notices the flag within 100 ms; done: on_async reports it */
    uv_mutex_unlock(&c->mu);
    return 0;
}
