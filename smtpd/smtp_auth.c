/*
 * smtp_auth.c - SMTP AUTH (RFC 4954) on the Cyrus SASL server API (see
 * smtp_auth.h).
 *
 * Cyrus is configured entirely from here: a SASL_CB_GETOPT callback answers
 * the options a file under /etc/sasl2 would otherwise hold, so a packaged
 * sluice needs no SASL configuration file and cannot pick up a stray one for
 * the options that matter (password check, auxprop plugin, sasldb path,
 * mechanism list). Passwords are checked by the sasldb auxprop plugin
 * (pwcheck_method auxprop), which also serves CRAM-MD5, DIGEST-MD5 and SCRAM
 * secrets written by saslpasswd2.
 *
 * Logins are "user@domain". Cyrus keeps "user" and the realm "domain" apart
 * in sasldb (saslpasswd2 -u domain -c user); the sasldb plugin splits a login
 * at its '@' into exactly that pair, so no user_realm is needed. A
 * SASL_CB_CANON_USER callback runs before Cyrus's own canonicalization: it
 * lower-cases the domain (domains are case-insensitive, RFC 5321 2.4) and
 * refuses identities that could not be carried safely into the envelope,
 * the logs or the AUTH= parameter (control characters, spaces, two '@').
 *
 * sasl_server_new is called without SASL_SUCCESS_DATA: SMTP has no room for
 * data in the 235 reply, so Cyrus sends a mechanism's last server message
 * (SCRAM's server signature) as one more challenge and finishes after the
 * client's empty answer, exactly as RFC 4954 section 4 wants.
 */
#include "sluice/smtp_auth.h"

#include "sluice/log.h"
#include "smtp_auth_text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Cyrus's own default when sasldb_path is not set. */
#define SASLDB_DEFAULT "/etc/sasldb2"
/* Decoded size of the longest base64 line we accept. */
#define AUTH_DECODED_MAX (SMTP_AUTH_LINE_MAX / 4 * 3)

struct smtp_auth {
    sasl_conn_t *conn;
    bool started; /* smtp_auth_start was called */
    bool done;    /* a final result was given: only free is valid */
    char user[SMTP_AUTH_USER_MAX + 1];
    char out[SMTP_AUTH_LINE_MAX + 1]; /* base64 challenge */
    char dec[AUTH_DECODED_MAX + 1];   /* decoded client data: zeroed after use */
    bool login;       /* the LOGIN mechanism: its first client datum is the user name */
    bool bogus_login; /* a refused LOGIN user name: ask for the password, then fail */
    unsigned steps;   /* client data given to Cyrus so far */
};

/*
 * Cyrus 2.1.28's LOGIN plugin keeps its copy of the password when the user
 * name is then refused (empty, or with spaces or control bytes): about a
 * password's worth of memory leaked per attempt. Such names can never log
 * in, so they are refused here, before Cyrus sees them.
 */
static bool login_user_ok(const char *p, unsigned len)
{
    if (len == 0 || len > SMTP_AUTH_USER_MAX)
        return false;
    for (unsigned i = 0; i < len; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return false;
    return true;
}

/*
 * The dialogue goes on as for any user name ("334 Password:"), so clients
 * stay in step and nothing tells a refused name from an unknown one.
 */
static void fake_password_prompt(smtp_auth *a, smtp_auth_result *res)
{
    static const char prompt[] = "UGFzc3dvcmQ6"; /* base64 "Password:" */
    a->bogus_login = true;
    memcpy(a->out, prompt, sizeof(prompt));
    res->status = SMTP_AUTH_CONTINUE;
    res->challenge = a->out;
    res->challenge_len = sizeof(prompt) - 1;
    res->user = NULL;
}

/* Whether the client datum about to go to Cyrus is a LOGIN user name that must not. */
static bool login_user_refused(const smtp_auth *a, unsigned inlen)
{
    return a->login && a->steps == 0 && !login_user_ok(a->dec, inlen);
}

/*
 * Set once by smtp_auth_init before any thread can call into Cyrus, read-only
 * afterwards: the callbacks read it from pool threads without locking.
 */
static struct {
    bool configured; /* smtp_auth_init succeeded */
    bool sasl_up;    /* sasl_server_init succeeded (sasl_done owed) */
    char *sasldb;    /* sasl_db, or NULL for Cyrus's default */
    char *mech_list; /* configured mechanisms, upper case, one space apart */
    char *mechs;     /* those actually available */
} g;

/* ---- Cyrus callbacks ---- */

/* Declared with Cyrus's own function types, so a signature slip is an error. */
static sasl_getopt_t opt_cb;
static sasl_log_t log_cb;
static sasl_canon_user_t canon_cb;

static int opt_cb(void *ctx, const char *plugin, const char *option, const char **result,
                  unsigned *len)
{
    (void)ctx;
    (void)plugin;
    const char *v = NULL;

    if (!option || !result)
        return SASL_BADPARAM;
    if (strcmp(option, "pwcheck_method") == 0)
        v = "auxprop"; /* not saslauthd: no daemon to run, no socket */
    else if (strcmp(option, "auxprop_plugin") == 0)
        v = "sasldb"; /* never ldapdb/sql, even when their plugins are installed */
    else if (strcmp(option, "sasldb_path") == 0)
        v = g.sasldb; /* NULL: Cyrus's default */
    else if (strcmp(option, "mech_list") == 0)
        v = g.mech_list;
    else if (strcmp(option, "log_level") == 0)
        v = "3"; /* SASL_LOG_WARN: errors, failures and warnings, never passwords */
    else if (strcmp(option, "auto_transition") == 0)
        v = "no"; /* authenticating must never write to the sasldb */
    if (!v)
        return SASL_FAIL; /* "not set": Cyrus uses its default */
    *result = v;
    if (len)
        *len = (unsigned)strlen(v);
    return SASL_OK;
}

static int log_cb(void *ctx, int level, const char *message)
{
    (void)ctx;
    if (!message)
        return SASL_OK;
    switch (level) {
    case SASL_LOG_ERR:
        log_err("sasl: %s", message);
        break;
    case SASL_LOG_WARN:
        log_warn("sasl: %s", message);
        break;
    case SASL_LOG_FAIL:
    case SASL_LOG_NOTE:
    case SASL_LOG_DEBUG:
    case SASL_LOG_TRACE:
        /* The session logs every outcome once, with the client address. */
        log_debug("sasl: %s", message);
        break;
    default:
        /* SASL_LOG_PASS carries passwords: never written anywhere. */
        break;
    }
    return SASL_OK;
}

static int canon_cb(sasl_conn_t *conn, void *ctx, const char *in, unsigned inlen, unsigned flags,
                    const char *user_realm, char *out, unsigned out_max, unsigned *out_len)
{
    (void)ctx;
    (void)flags;
    (void)user_realm;
    const char *why;

    /* Identities end up in envelope lines, logs and AUTH= parameters. */
    if (inlen >= out_max)
        why = "identity empty or too long";
    else
        why = auth_identity_take(out, in, inlen);
    if (why) {
        sasl_seterror(conn, SASL_NOLOG, "%s", why);
        return SASL_BADAUTH;
    }
    *out_len = inlen;
    return SASL_OK;
}

static const sasl_callback_t global_cbs[] = {
    {SASL_CB_GETOPT, (int (*)(void))(void (*)(void))opt_cb, NULL},
    {SASL_CB_LOG, (int (*)(void))(void (*)(void))log_cb, NULL},
    {SASL_CB_CANON_USER, (int (*)(void))(void (*)(void))canon_cb, NULL},
    {SASL_CB_LIST_END, NULL, NULL},
};

/*
 * Cyrus's built-in mutexes do nothing; it serializes sasl_dispose and some
 * plugin state with these, and our exchanges run on several pool threads.
 */
static void *mtx_alloc(void)
{
    pthread_mutex_t *m = malloc(sizeof(*m));
    if (!m)
        return NULL;
    if (pthread_mutex_init(m, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static int mtx_lock(void *m)
{
    return pthread_mutex_lock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static int mtx_unlock(void *m)
{
    return pthread_mutex_unlock(m) == 0 ? SASL_OK : SASL_FAIL;
}

static void mtx_free(void *m)
{
    if (m) {
        pthread_mutex_destroy(m);
        free(m);
    }
}

/* ---- mechanism lists ---- */

/* Copies cfg's list, upper case, single spaces; NULL when out of memory. */
static char *normalize_mechs(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == ',') {
            if (o > 0 && out[o - 1] != ' ')
                out[o++] = ' ';
            continue;
        }
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        out[o++] = c;
    }
    if (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    return out;
}

static int set_props(sasl_conn_t *conn)
{
    /*
     * No SASL security layers (max_ssf 0): SMTP's protection is TLS, and the
     * session offers AUTH only under TLS (or, for tests, from loopback with
     * allow_plaintext_auth), so PLAIN and LOGIN are allowed here and
     * SASL_SSF_EXTERNAL is left alone rather than claim a TLS that a
     * plaintext test session does not have. ANONYMOUS is never acceptable
     * for submission.
     */
    sasl_security_properties_t sp;
    memset(&sp, 0, sizeof(sp));
    sp.min_ssf = 0;
    sp.max_ssf = 0;
    sp.maxbufsize = 0;
    sp.security_flags = SASL_SEC_NOANONYMOUS;
    return sasl_setprop(conn, SASL_SEC_PROPS, &sp);
}

/* Intersects the configured list with what a fresh connection offers. */
static int compute_mechs(const sluice_config *cfg)
{
    sasl_conn_t *conn = NULL;
    const char *avail = NULL;
    unsigned alen = 0;
    int count = 0;

    g.mechs = calloc(1, strlen(g.mech_list) + 1);
    if (!g.mechs)
        return -ENOMEM;
    int r = sasl_server_new("smtp", cfg->hostname, NULL, NULL, NULL, NULL, 0, &conn);
    if (r == SASL_OK)
        r = set_props(conn);
    if (r == SASL_OK)
        r = sasl_listmech(conn, NULL, "", " ", "", &avail, &alen, &count);
    if (r != SASL_OK) {
        log_warn("auth: no SASL mechanism usable: %s", sasl_errstring(r, NULL, NULL));
        sasl_dispose(&conn);
        return 0;
    }

    size_t o = 0;
    const char *p = g.mech_list;
    while (*p) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (auth_list_has(avail, p, l)) {
            if (o > 0)
                g.mechs[o++] = ' ';
            memcpy(g.mechs + o, p, l);
            o += l;
        } else {
            log_warn("auth: mechanism %.*s in auth_mechanisms is not available "
                     "(no Cyrus SASL plugin, or not allowed for submission)",
                     (int)l, p);
        }
        p = e ? e + 1 : p + l;
    }
    g.mechs[o] = '\0';
    sasl_dispose(&conn);
    return 0;
}

static void reset_globals(void)
{
    free(g.sasldb);
    free(g.mech_list);
    free(g.mechs);
    memset(&g, 0, sizeof(g));
}

int smtp_auth_init(const sluice_config *cfg)
{
    if (g.configured)
        return -EALREADY;
    if (!cfg)
        return -EINVAL;

    g.mech_list = normalize_mechs(cfg->auth_mechanisms);
    if (!g.mech_list)
        return -ENOMEM;
    if (g.mech_list[0] == '\0') {
        /* AUTH switched off: Cyrus is not even loaded. */
        g.mechs = g.mech_list;
        g.mech_list = NULL;
        g.configured = true;
        return 0;
    }
    if (cfg->sasl_db && cfg->sasl_db[0]) {
        g.sasldb = strdup(cfg->sasl_db);
        if (!g.sasldb) {
            reset_globals();
            return -ENOMEM;
        }
    }
    const char *db = g.sasldb ? g.sasldb : SASLDB_DEFAULT;
    if (access(db, R_OK) != 0)
        log_warn("auth: sasl_db %s: %s; AUTH will answer 454 until it exists (create it with "
                 "saslpasswd2 -f %s -u DOMAIN -c USER)",
                 db, strerror(errno), db);

    sasl_set_mutex(mtx_alloc, mtx_lock, mtx_unlock, mtx_free);
    int r = sasl_server_init(global_cbs, "sluice");
    if (r != SASL_OK) {
        log_err("auth: cannot start Cyrus SASL: %s", sasl_errstring(r, NULL, NULL));
        reset_globals();
        return -EIO;
    }
    g.sasl_up = true;
    r = compute_mechs(cfg);
    if (r < 0) {
        sasl_done();
        reset_globals();
        return r;
    }
    if (g.mechs[0] == '\0')
        log_warn("auth: none of auth_mechanisms (%s) is available: AUTH is not offered",
                 g.mech_list);
    g.configured = true;
    return 0;
}

void smtp_auth_done(void)
{
    if (g.sasl_up)
        sasl_done();
    reset_globals();
}

const char *smtp_auth_mechs(void)
{
    return g.configured && g.mechs ? g.mechs : "";
}

/* ---- one exchange ---- */

/*
 * Whether s is "IP;PORT" with a numeric IPv4 or IPv6 address. Checked here
 * because Cyrus 2.1.28 leaks its parameter block when sasl_server_new
 * rejects an address string.
 */
static bool valid_ipport(const char *s)
{
    const char *semi = strrchr(s, ';');
    char ip[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];

    if (!semi || semi == s || (size_t)(semi - s) >= sizeof(ip))
        return false;
    size_t nd = strlen(semi + 1);
    if (nd == 0 || nd > 5 || strspn(semi + 1, "0123456789") != nd || atoi(semi + 1) > 65535)
        return false;
    memcpy(ip, s, (size_t)(semi - s));
    ip[semi - s] = '\0';
    return inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;
}

int smtp_auth_new(const char *fqdn, const char *user_realm, const char *local_ipport,
                  const char *remote_ipport, smtp_auth **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!g.sasl_up || !g.mechs || g.mechs[0] == '\0')
        return -EINVAL;
    /* "" is "unknown", as NULL: callers format into empty buffers first. */
    if (local_ipport && !local_ipport[0])
        local_ipport = NULL;
    if (remote_ipport && !remote_ipport[0])
        remote_ipport = NULL;
    if ((local_ipport && !valid_ipport(local_ipport)) ||
        (remote_ipport && !valid_ipport(remote_ipport)))
        return -EINVAL;

    smtp_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    /*
     * flags 0: no SASL_SUCCESS_DATA (see the top of this file), no
     * SASL_NEED_PROXY (a login may only act as itself).
     */
    int r =
        sasl_server_new("smtp", fqdn, user_realm, local_ipport, remote_ipport, NULL, 0, &a->conn);
    if (r == SASL_OK)
        r = set_props(a->conn);
    if (r != SASL_OK) {
        int err = r == SASL_NOMEM ? -ENOMEM : r == SASL_BADPARAM ? -EINVAL : -EIO;
        log_warn("auth: sasl_server_new: %s",
                 a->conn ? sasl_errdetail(a->conn) : sasl_errstring(r, NULL, NULL));
        smtp_auth_free(a);
        return err;
    }
    *out = a;
    return 0;
}

void smtp_auth_free(smtp_auth *a)
{
    if (!a)
        return;
    if (a->conn)
        sasl_dispose(&a->conn);
    explicit_bzero(a->dec, sizeof(a->dec));
    free(a);
}

static void set_status(smtp_auth *a, smtp_auth_result *res, enum smtp_auth_status st)
{
    res->status = st;
    res->challenge = NULL;
    res->challenge_len = 0;
    res->user = NULL;
    if (st != SMTP_AUTH_CONTINUE)
        a->done = true;
}

/* Whether the sasldb can be read at all: a missing file is a server problem. */
static bool sasldb_readable(void)
{
    const char *db = g.sasldb ? g.sasldb : SASLDB_DEFAULT;
    if (access(db, R_OK) == 0)
        return true;
    log_err("auth: sasl_db %s: %s; answering 454", db, strerror(errno));
    return false;
}

/*
 * Decodes a client line into a->dec. "=" is an empty response (RFC 4954
 * section 4 for initial responses; accepted in later lines too, harmlessly).
 */
static enum smtp_auth_status decode(smtp_auth *a, const char *in, size_t len, unsigned *outlen)
{
    *outlen = 0;
    if (len > SMTP_AUTH_LINE_MAX)
        return SMTP_AUTH_TOO_LONG;
    if (len == 0 || (len == 1 && in[0] == '='))
        return SMTP_AUTH_CONTINUE;
    /* sasl_decode64 returns SASL_CONTINUE for a partial last quantum. */
    int r = sasl_decode64(in, (unsigned)len, a->dec, sizeof(a->dec), outlen);
    if (r != SASL_OK) {
        explicit_bzero(a->dec, sizeof(a->dec));
        *outlen = 0;
        return SMTP_AUTH_BAD_BASE64;
    }
    return SMTP_AUTH_CONTINUE;
}

/* Maps a Cyrus result to ours; logs what the client cannot have caused. */
static enum smtp_auth_status classify(smtp_auth *a, int r)
{
    switch (r) {
    case SASL_OK:
        return SMTP_AUTH_OK;
    case SASL_CONTINUE:
        return SMTP_AUTH_CONTINUE;
    case SASL_BADAUTH:  /* wrong password */
    case SASL_NOUSER:   /* unknown login */
    case SASL_NOAUTHZ:  /* PLAIN authzid other than the login */
    case SASL_NOVERIFY: /* the user has no secret for this mechanism */
    case SASL_EXPIRED:
    case SASL_DISABLED:
    case SASL_PWLOCK:
    case SASL_FAIL:
        /*
         * SASL_FAIL is Cyrus's catch-all, also for client data a mechanism
         * rejects (an empty LOGIN user name, a bad SCRAM proof). Counting it
         * as bad credentials keeps it under the throttle; server-side causes
         * (an unreadable sasldb) were ruled out before the exchange began.
         */
        return SMTP_AUTH_FAIL;
    case SASL_BADPROT:
    case SASL_BUFOVER:
        return SMTP_AUTH_PROTOCOL;
    case SASL_NOMECH:
        return SMTP_AUTH_NO_MECH;
    case SASL_TOOWEAK:
    case SASL_ENCRYPT:
        return SMTP_AUTH_TOO_WEAK;
    default:
        log_err("auth: Cyrus SASL: %s", sasl_errdetail(a->conn));
        return SMTP_AUTH_TEMP;
    }
}

/* Fills res from a Cyrus step result and its server output. */
static void finish(smtp_auth *a, int r, const char *sout, unsigned soutlen, smtp_auth_result *res)
{
    enum smtp_auth_status st = classify(a, r);
    if (st == SMTP_AUTH_CONTINUE) {
        unsigned n = 0;
        int e = sasl_encode64(sout ? sout : "", sout ? soutlen : 0, a->out, sizeof(a->out), &n);
        if (e != SASL_OK) {
            log_err("auth: server challenge of %u bytes does not fit a line", soutlen);
            set_status(a, res, SMTP_AUTH_TEMP);
            return;
        }
        set_status(a, res, SMTP_AUTH_CONTINUE);
        res->challenge = a->out;
        res->challenge_len = n;
        return;
    }
    if (st == SMTP_AUTH_OK) {
        const void *u = NULL;
        int e = sasl_getprop(a->conn, SASL_USERNAME, &u);
        size_t n = (e == SASL_OK && u) ? strlen(u) : 0;
        /* canon_cb bounds and vets every identity; this only guards that. */
        if (n == 0 || n > SMTP_AUTH_USER_MAX) {
            log_err("auth: no usable identity after a successful exchange");
            set_status(a, res, SMTP_AUTH_TEMP);
            return;
        }
        memcpy(a->user, u, n + 1);
        set_status(a, res, SMTP_AUTH_OK);
        res->user = a->user;
        return;
    }
    if (st == SMTP_AUTH_FAIL)
        log_debug("auth: %s", sasl_errdetail(a->conn));
    set_status(a, res, st);
}

bool smtp_auth_mech_name(const char *mech, size_t n, char up[SMTP_AUTH_MECH_MAX + 1])
{
    if (n == 0 || n > SMTP_AUTH_MECH_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = mech[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        /* RFC 4422 section 3.1: upper-case letters, digits, '-' and '_'. */
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
        up[i] = c;
    }
    up[n] = '\0';
    return true;
}

int smtp_auth_start(smtp_auth *a, const char *mech, const char *initial_response, size_t len,
                    smtp_auth_result *res)
{
    char up[SMTP_AUTH_MECH_MAX + 1];

    if (!res)
        return -EINVAL;
    if (!a || !mech || a->started) {
        res->status = SMTP_AUTH_PROTOCOL;
        res->challenge = res->user = NULL;
        res->challenge_len = 0;
        if (a)
            a->done = true;
        return -EINVAL;
    }
    a->started = true;

    /* Only what EHLO advertised: never EXTERNAL or anything Cyrus adds. */
    if (!smtp_auth_mech_name(mech, strlen(mech), up) || !auth_list_has(g.mechs, up, strlen(up))) {
        set_status(a, res, SMTP_AUTH_NO_MECH);
        return 0;
    }

    const char *in = NULL;
    unsigned inlen = 0;
    /* "AUTH PLAIN " with nothing after the space: no initial response. */
    if (initial_response && len > 0) {
        enum smtp_auth_status st = decode(a, initial_response, len, &inlen);
        if (st != SMTP_AUTH_CONTINUE) {
            set_status(a, res, st);
            return 0;
        }
        in = a->dec; /* non-NULL even when empty: "an empty initial response" */
    }
    a->login = strcmp(up, "LOGIN") == 0;
    if (in && login_user_refused(a, inlen)) {
        explicit_bzero(a->dec, inlen);
        fake_password_prompt(a, res);
        return 0;
    }
    if (in)
        a->steps++;
    if (!sasldb_readable()) {
        explicit_bzero(a->dec, inlen);
        set_status(a, res, SMTP_AUTH_TEMP);
        return 0;
    }

    const char *sout = NULL;
    unsigned soutlen = 0;
    int r = sasl_server_start(a->conn, up, in, inlen, &sout, &soutlen);
    explicit_bzero(a->dec, inlen);
    finish(a, r, sout, soutlen, res);
    return 0;
}

int smtp_auth_step(smtp_auth *a, const char *line, size_t len, smtp_auth_result *res)
{
    if (!res)
        return -EINVAL;
    if (!a || !line || !a->started || a->done) {
        res->status = SMTP_AUTH_PROTOCOL;
        res->challenge = res->user = NULL;
        res->challenge_len = 0;
        if (a)
            a->done = true;
        return -EINVAL;
    }
    if (len == 1 && line[0] == '*') {
        set_status(a, res, SMTP_AUTH_CANCELLED);
        return 0;
    }
    unsigned inlen = 0;
    enum smtp_auth_status st = decode(a, line, len, &inlen);
    if (st != SMTP_AUTH_CONTINUE) {
        set_status(a, res, st);
        return 0;
    }
    if (a->bogus_login) {
        explicit_bzero(a->dec, inlen); /* the password of a name that cannot exist */
        set_status(a, res, SMTP_AUTH_FAIL);
        return 0;
    }
    if (login_user_refused(a, inlen)) {
        explicit_bzero(a->dec, inlen);
        fake_password_prompt(a, res);
        return 0;
    }
    a->steps++;
    const char *sout = NULL;
    unsigned soutlen = 0;
    int r = sasl_server_step(a->conn, a->dec, inlen, &sout, &soutlen);
    explicit_bzero(a->dec, inlen);
    finish(a, r, sout, soutlen, res);
    return 0;
}

/* ---- replies ---- */

static const struct {
    const char *reply;
    const char *name;
} auth_table[] = {
    [SMTP_AUTH_CONTINUE] = {"334 ", "continue"},
    [SMTP_AUTH_OK] = {"235 2.7.0 Authentication successful", "ok"},
    [SMTP_AUTH_FAIL] = {"535 5.7.8 Authentication credentials invalid", "fail"},
    [SMTP_AUTH_BAD_BASE64] = {"501 5.5.2 Cannot decode base64 response", "bad-base64"},
    [SMTP_AUTH_PROTOCOL] = {"501 5.5.2 Malformed authentication exchange", "protocol"},
    [SMTP_AUTH_NO_MECH] = {"504 5.5.4 Unrecognized authentication type", "no-mech"},
    [SMTP_AUTH_TEMP] = {"454 4.7.0 Temporary authentication failure", "temp"},
    [SMTP_AUTH_CANCELLED] = {"501 5.7.0 Authentication cancelled", "cancelled"},
    [SMTP_AUTH_TOO_LONG] = {"500 5.5.6 Authentication exchange line is too long", "too-long"},
    [SMTP_AUTH_TOO_WEAK] = {"534 5.7.9 Authentication mechanism is too weak", "too-weak"},
};

const char *smtp_auth_reply(enum smtp_auth_status st)
{
    if ((unsigned)st >= sizeof(auth_table) / sizeof(auth_table[0]))
        return auth_table[SMTP_AUTH_TEMP].reply;
    return auth_table[st].reply;
}

const char *smtp_auth_status_name(enum smtp_auth_status st)
{
    if ((unsigned)st >= sizeof(auth_table) / sizeof(auth_table[0]))
        return "unknown";
    return auth_table[st].name;
}

int smtp_auth_ipport(const struct sockaddr *sa, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;

    if (!sa || !buf)
        return -EINVAL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        if (!inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip)))
            return -EINVAL;
        port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            if (!inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip)))
                return -EINVAL;
        } else if (!inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip))) {
            return -EINVAL;
        }
        port = ntohs(s6->sin6_port);
    } else {
        return -EINVAL;
    }
    int n = snprintf(buf, size, "%s;%u", ip, port);
    if (n < 0 || (size_t)n >= size)
        return -EINVAL;
    return 0;
}
