/*
 * test_smtp_auth.c - SMTP AUTH on Cyrus SASL (smtpd/smtp_auth.c) against a
 * real sasldb made with saslpasswd2 in a temporary folder.
 *
 * Cyrus can be initialized once per process in practice (plugins stay
 * loaded), so one group setup makes the database and calls smtp_auth_init;
 * the missing-sasldb case moves the file away and back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/smtp_auth.h"

#define PASSWORD "s3cret pass"
#define LOGIN "demo@example.test"

static char tmpdir[] = "/tmp/sluice-auth-XXXXXX";
static char dbpath[512];
static sluice_config cfg;

/* ---- helpers ------------------------------------------------------------ */

static int add_user(const char *db, const char *realm, const char *user, const char *pass)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "saslpasswd2 -f '%s' -u '%s' -c -p '%s' 2>&1", db, realm, user);
    FILE *p = popen(cmd, "w");
    if (!p)
        return -1;
    fputs(pass, p);
    int st = pclose(p);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static char *b64(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

/* Decodes the challenge (test side: OpenSSL, independent of the module). */
static size_t unb64(const char *s, unsigned char *out)
{
    size_t n = strlen(s);
    if (n == 0)
        return 0;
    int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    assert_true(r >= 0);
    size_t len = (size_t)r;
    if (n >= 1 && s[n - 1] == '=')
        len--;
    if (n >= 2 && s[n - 2] == '=')
        len--;
    out[len] = '\0';
    return len;
}

static char *plain_b64(const char *authz, const char *user, const char *pass)
{
    char buf[1024];
    size_t a = strlen(authz), u = strlen(user), p = strlen(pass);
    memcpy(buf, authz, a);
    buf[a] = '\0';
    memcpy(buf + a + 1, user, u);
    buf[a + 1 + u] = '\0';
    memcpy(buf + a + 2 + u, pass, p);
    return b64(buf, a + u + p + 2);
}

static smtp_auth *new_auth(void)
{
    smtp_auth *a = NULL;
    assert_int_equal(
        smtp_auth_new("mail.example.test", NULL, "127.0.0.1;587", "127.0.0.1;40000", &a), 0);
    assert_non_null(a);
    return a;
}

/* One PLAIN exchange with an initial response; returns the final status. */
static enum smtp_auth_status plain_ir(const char *authz, const char *user, const char *pass,
                                      char *who, size_t whosize)
{
    smtp_auth *a = new_auth();
    smtp_auth_result res;
    char *ir = plain_b64(authz, user, pass);
    assert_int_equal(smtp_auth_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    if (res.status == SMTP_AUTH_OK && who)
        snprintf(who, whosize, "%s", res.user);
    free(ir);
    smtp_auth_free(a);
    return res.status;
}

static int group_setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dbpath, sizeof(dbpath), "%s/sasldb2", tmpdir);
    if (add_user(dbpath, "example.test", "demo", PASSWORD) != 0 ||
        add_user(dbpath, "other.test", "bob", "bobpass") != 0)
        return -1;
    memset(&cfg, 0, sizeof(cfg));
    cfg.hostname = "mail.example.test";
    cfg.auth_mechanisms = "plain LOGIN CRAM-MD5 SCRAM-SHA-256 XOAUTH2 ANONYMOUS";
    cfg.sasl_db = dbpath;
    return smtp_auth_init(&cfg);
}

static int group_teardown(void **state)
{
    (void)state;
    smtp_auth_done();
    unlink(dbpath);
    rmdir(tmpdir);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_mechs(void **state)
{
    (void)state;
    const char *m = smtp_auth_mechs();
    /* Config order, upper case; XOAUTH2 has no plugin, ANONYMOUS is refused. */
    assert_non_null(strstr(m, "PLAIN LOGIN"));
    assert_null(strstr(m, "XOAUTH2"));
    assert_null(strstr(m, "ANONYMOUS"));
    assert_int_equal(smtp_auth_init(&cfg), -EALREADY);
    print_message("available: %s\n", m);
}

static void test_plain_initial_response(void **state)
{
    (void)state;
    char who[SMTP_AUTH_USER_MAX + 1] = "";
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, who, sizeof(who)), SMTP_AUTH_OK);
    assert_string_equal(who, LOGIN);
    /* authzid equal to the login is fine */
    assert_int_equal(plain_ir(LOGIN, LOGIN, PASSWORD, who, sizeof(who)), SMTP_AUTH_OK);
    /* the domain is case-insensitive and comes back in lower case */
    assert_int_equal(plain_ir("", "demo@Example.TEST", PASSWORD, who, sizeof(who)), SMTP_AUTH_OK);
    assert_string_equal(who, LOGIN);
    /* a second realm in the same database */
    assert_int_equal(plain_ir("", "bob@other.test", "bobpass", who, sizeof(who)), SMTP_AUTH_OK);
    assert_string_equal(who, "bob@other.test");
}

static void test_plain_without_initial_response(void **state)
{
    (void)state;
    smtp_auth *a = new_auth();
    smtp_auth_result res;
    assert_int_equal(smtp_auth_start(a, "plain", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    assert_string_equal(res.challenge, "");
    assert_int_equal(res.challenge_len, 0);
    char *line = plain_b64("", LOGIN, PASSWORD);
    assert_int_equal(smtp_auth_step(a, line, strlen(line), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    assert_string_equal(res.user, LOGIN);
    /* after a final result only free is valid */
    assert_int_equal(smtp_auth_step(a, "", 0, &res), -EINVAL);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    smtp_auth_free(a);

    /* "AUTH PLAIN " (a trailing space, nothing after it) is no initial response */
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "PLAIN", "", 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    assert_int_equal(smtp_auth_step(a, line, strlen(line), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    free(line);
    smtp_auth_free(a);
}

static void test_plain_failures(void **state)
{
    (void)state;
    assert_int_equal(plain_ir("", LOGIN, "wrong", NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", "nobody@example.test", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    /* the realm is part of the login: bob is not in example.test */
    assert_int_equal(plain_ir("", "bob@example.test", "bobpass", NULL, 0), SMTP_AUTH_FAIL);
    /* without a domain the lookup is in the hostname's realm: no such user */
    assert_int_equal(plain_ir("", "demo", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    /* acting as someone else */
    assert_int_equal(plain_ir("bob@other.test", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    /* identities that could not travel in an envelope line */
    assert_int_equal(plain_ir("", "demo@example.test\r\nX", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", " demo@example.test", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", "demo@x@example.test", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", "", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
}

static void test_plain_malformed(void **state)
{
    (void)state;
    smtp_auth_result res;

    /* "=" is an empty initial response: PLAIN cannot parse it */
    smtp_auth *a = new_auth();
    assert_int_equal(smtp_auth_start(a, "PLAIN", "=", 1, &res), 0);
    print_message("PLAIN with '=': %s\n", smtp_auth_status_name(res.status));
    assert_true(res.status == SMTP_AUTH_PROTOCOL || res.status == SMTP_AUTH_FAIL);
    smtp_auth_free(a);

    /* no NULs at all */
    a = new_auth();
    char *ir = b64("demo", 4);
    assert_int_equal(smtp_auth_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    print_message("PLAIN without NULs: %s\n", smtp_auth_status_name(res.status));
    assert_true(res.status == SMTP_AUTH_PROTOCOL || res.status == SMTP_AUTH_FAIL);
    free(ir);
    smtp_auth_free(a);
}

static void test_login(void **state)
{
    (void)state;
    smtp_auth *a = new_auth();
    smtp_auth_result res;
    unsigned char dec[256];

    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    unb64(res.challenge, dec);
    assert_string_equal((char *)dec, "Username:");
    char *u = b64(LOGIN, strlen(LOGIN));
    assert_int_equal(smtp_auth_step(a, u, strlen(u), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    unb64(res.challenge, dec);
    assert_string_equal((char *)dec, "Password:");
    char *p = b64(PASSWORD, strlen(PASSWORD));
    assert_int_equal(smtp_auth_step(a, p, strlen(p), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    assert_string_equal(res.user, LOGIN);
    smtp_auth_free(a);

    /* user name as the initial response: straight to "Password:" */
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "login", u, strlen(u), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    unb64(res.challenge, dec);
    assert_string_equal((char *)dec, "Password:");
    char *bad = b64("nope", 4);
    assert_int_equal(smtp_auth_step(a, bad, strlen(bad), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_FAIL);
    smtp_auth_free(a);
    free(u);
    free(p);
    free(bad);
}

static void test_cancel_and_bad_input(void **state)
{
    (void)state;
    smtp_auth_result res;

    smtp_auth *a = new_auth();
    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_step(a, "*", 1, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CANCELLED);
    smtp_auth_free(a);

    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "PLAIN", "not base64!", 11, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_free(a);

    /* a partial last quantum is not base64 either */
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "PLAIN", "AGRlbW8", 7, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_free(a);

    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_step(a, "ZGVt b28=", 9, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_free(a);

    /* longer than RFC 4954's 12288 octets */
    size_t n = SMTP_AUTH_LINE_MAX + 4;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'A', n);
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_step(a, big, n, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_TOO_LONG);
    smtp_auth_free(a);
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "PLAIN", big, n, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_TOO_LONG);
    smtp_auth_free(a);
    /* exactly 12288 octets is accepted as a line (and is no valid login) */
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_step(a, big, SMTP_AUTH_LINE_MAX, &res), 0);
    assert_int_not_equal(res.status, SMTP_AUTH_TOO_LONG);
    assert_int_not_equal(res.status, SMTP_AUTH_BAD_BASE64);
    assert_int_not_equal(res.status, SMTP_AUTH_OK);
    smtp_auth_free(a);
    free(big);

    /* step before start, and a second start */
    a = new_auth();
    assert_int_equal(smtp_auth_step(a, "", 0, &res), -EINVAL);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    smtp_auth_free(a);
    a = new_auth();
    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_start(a, "LOGIN", NULL, 0, &res), -EINVAL);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    smtp_auth_free(a);
}

static void test_unknown_mech(void **state)
{
    (void)state;
    static const char *const mechs[] = {
        "FOO", "ANONYMOUS",   "EXTERNAL",   "XOAUTH2",
        "",    "PLAIN PLAIN", "DIGEST-MD5", "A23456789012345678901"};
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
        smtp_auth *a = new_auth();
        smtp_auth_result res;
        assert_int_equal(smtp_auth_start(a, mechs[i], NULL, 0, &res), 0);
        assert_int_equal(res.status, SMTP_AUTH_NO_MECH);
        smtp_auth_free(a);
    }
}

static void test_missing_sasldb(void **state)
{
    (void)state;
    char moved[600];
    snprintf(moved, sizeof(moved), "%s.away", dbpath);
    assert_int_equal(rename(dbpath, moved), 0);
    enum smtp_auth_status st = plain_ir("", LOGIN, PASSWORD, NULL, 0);
    assert_int_equal(rename(moved, dbpath), 0);
    /* Decided here: a server-side problem, so 454 and "try again later". */
    assert_int_equal(st, SMTP_AUTH_TEMP);
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_OK);
}

static bool mech_available(const char *name)
{
    const char *m = smtp_auth_mechs();
    size_t n = strlen(name);
    for (const char *p = m; (p = strstr(p, name)) != NULL; p += n)
        if ((p == m || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static void test_cram_md5(void **state)
{
    (void)state;
    if (!mech_available("CRAM-MD5")) {
        print_message("skipped: no CRAM-MD5 plugin (libsasl2-modules)\n");
        skip();
    }
    smtp_auth *a = new_auth();
    smtp_auth_result res;
    unsigned char chal[1024];

    assert_int_equal(smtp_auth_start(a, "CRAM-MD5", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    size_t cl = unb64(res.challenge, chal);
    assert_true(cl > 0);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    assert_non_null(HMAC(EVP_md5(), PASSWORD, (int)strlen(PASSWORD), chal, cl, mac, &maclen));
    char resp[512];
    int o = snprintf(resp, sizeof(resp), "%s ", LOGIN);
    for (unsigned i = 0; i < maclen; i++)
        o += snprintf(resp + o, sizeof(resp) - (size_t)o, "%02x", mac[i]);
    char *line = b64(resp, (size_t)o);
    assert_int_equal(smtp_auth_step(a, line, strlen(line), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    assert_string_equal(res.user, LOGIN);
    free(line);
    smtp_auth_free(a);
}

/* SCRAM-SHA-256 client side (RFC 5802, RFC 7677) with OpenSSL. */
static void hmac256(const void *key, size_t kl, const void *d, size_t dl, unsigned char out[32])
{
    unsigned ol = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)kl, d, dl, out, &ol));
    assert_int_equal(ol, 32);
}

static enum smtp_auth_status scram(const char *user, const char *pass)
{
    smtp_auth *a = new_auth();
    smtp_auth_result res;
    char first_bare[256], msg[2048], final_wo[512], auth_msg[4096];
    unsigned char sf[1024], salt[256];

    snprintf(first_bare, sizeof(first_bare), "n=%s,r=fyko+d2lbbFgONRv9qkxdawL", user);
    int n = snprintf(msg, sizeof(msg), "n,,%s", first_bare);
    char *line = b64(msg, (size_t)n);
    assert_int_equal(smtp_auth_start(a, "SCRAM-SHA-256", line, strlen(line), &res), 0);
    free(line);
    if (res.status != SMTP_AUTH_CONTINUE) {
        smtp_auth_free(a);
        return res.status;
    }
    unb64(res.challenge, sf); /* r=...,s=...,i=... */
    char *r = strstr((char *)sf, "r="), *s = strstr((char *)sf, ",s="),
         *i = strstr((char *)sf, ",i=");
    assert_true(r && s && i);
    int iter = atoi(i + 3);
    char nonce[256], saltb64[256];
    snprintf(nonce, sizeof(nonce), "%.*s", (int)(s - r - 2), r + 2);
    snprintf(saltb64, sizeof(saltb64), "%.*s", (int)(i - s - 3), s + 3);
    size_t saltlen = unb64(saltb64, salt);

    unsigned char salted[32], ckey[32], stored[32], csig[32], proof[32];
    assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), salt, (int)saltlen, iter,
                                       EVP_sha256(), 32, salted),
                     1);
    hmac256(salted, 32, "Client Key", 10, ckey);
    unsigned sl = 0;
    assert_int_equal(EVP_Digest(ckey, 32, stored, &sl, EVP_sha256(), NULL), 1);
    snprintf(final_wo, sizeof(final_wo), "c=biws,r=%s", nonce);
    int al = snprintf(auth_msg, sizeof(auth_msg), "%s,%s,%s", first_bare, (char *)sf, final_wo);
    hmac256(stored, 32, auth_msg, (size_t)al, csig);
    for (int k = 0; k < 32; k++)
        proof[k] = ckey[k] ^ csig[k];
    char *p64 = b64(proof, 32);
    n = snprintf(msg, sizeof(msg), "%s,p=%s", final_wo, p64);
    free(p64);
    line = b64(msg, (size_t)n);
    assert_int_equal(smtp_auth_step(a, line, strlen(line), &res), 0);
    free(line);
    if (res.status == SMTP_AUTH_CONTINUE) {
        /* server-final-message "v=..." as a challenge: check it, answer empty */
        unsigned char skey[32], ssig[32], v[256];
        hmac256(salted, 32, "Server Key", 10, skey);
        hmac256(skey, 32, auth_msg, (size_t)al, ssig);
        unb64(res.challenge, v);
        char *want = b64(ssig, 32);
        assert_true(strncmp((char *)v, "v=", 2) == 0);
        assert_string_equal((char *)v + 2, want);
        free(want);
        assert_int_equal(smtp_auth_step(a, "", 0, &res), 0);
        if (res.status == SMTP_AUTH_OK)
            assert_string_equal(res.user, user);
    }
    enum smtp_auth_status st = res.status;
    smtp_auth_free(a);
    return st;
}

static void test_scram_sha256(void **state)
{
    (void)state;
    if (!mech_available("SCRAM-SHA-256")) {
        print_message("skipped: no SCRAM-SHA-256 plugin (libsasl2-modules)\n");
        skip();
    }
    assert_int_equal(scram(LOGIN, PASSWORD), SMTP_AUTH_OK);
    assert_int_equal(scram(LOGIN, "wrong"), SMTP_AUTH_FAIL);
}

/* Several exchanges at once, as from libuv's thread pool. */
static void *auth_thread(void *arg)
{
    int *ok = arg;
    for (int i = 0; i < 20; i++) {
        smtp_auth *a = NULL;
        smtp_auth_result res;
        if (smtp_auth_new("mail.example.test", NULL, NULL, NULL, &a) != 0)
            continue;
        const char *pass = (i % 3 == 2) ? "wrong" : PASSWORD;
        char *ir = plain_b64("", LOGIN, pass);
        if (smtp_auth_start(a, "PLAIN", ir, strlen(ir), &res) == 0 &&
            res.status == (i % 3 == 2 ? SMTP_AUTH_FAIL : SMTP_AUTH_OK))
            (*ok)++;
        free(ir);
        smtp_auth_free(a);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[8];
    int ok[8] = {0};
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, auth_thread, &ok[i]), 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(ok[i], 20);
    }
}

static void test_replies(void **state)
{
    (void)state;
    assert_string_equal(smtp_auth_reply(SMTP_AUTH_OK), "235 2.7.0 Authentication successful");
    assert_string_equal(smtp_auth_reply(SMTP_AUTH_CONTINUE), "334 ");
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_FAIL), "535 5.7.8 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_BAD_BASE64), "501 5.5.2 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_PROTOCOL), "501 5.5.2 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_NO_MECH), "504 5.5.4 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_TEMP), "454 4.7.0 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_CANCELLED), "501 5.7.0 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_TOO_LONG), "500 5.5.6 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply(SMTP_AUTH_TOO_WEAK), "534 5.7.9 ", 10) == 0);
    assert_true(strncmp(smtp_auth_reply((enum smtp_auth_status)99), "454 ", 4) == 0);
    assert_string_equal(smtp_auth_status_name(SMTP_AUTH_FAIL), "fail");
}

static void test_ipport(void **state)
{
    (void)state;
    char buf[64];
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(587)};
    inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
    assert_int_equal(smtp_auth_ipport((struct sockaddr *)&s4, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "192.0.2.7;587");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(25)};
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    assert_int_equal(smtp_auth_ipport((struct sockaddr *)&s6, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2001:db8::1;25");
    inet_pton(AF_INET6, "::ffff:198.51.100.2", &s6.sin6_addr);
    assert_int_equal(smtp_auth_ipport((struct sockaddr *)&s6, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "198.51.100.2;25");
    assert_int_equal(smtp_auth_ipport((struct sockaddr *)&s6, buf, 5), -EINVAL);

    /* the formatted strings are what Cyrus accepts */
    smtp_auth *a = NULL;
    assert_int_equal(
        smtp_auth_new("mail.example.test", NULL, "2001:db8::1;25", "198.51.100.2;25", &a), 0);
    smtp_auth_free(a);
    assert_int_equal(smtp_auth_new("mail.example.test", NULL, "", "", &a), 0);
    smtp_auth_free(a);
    static const char *const bad[] = {"garbage",          "192.0.2.1",    "192.0.2.1;",
                                      "192.0.2.1;99999",  "192.0.2.1;2x", ";25",
                                      "[2001:db8::1];25", "host;25"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(smtp_auth_new("mail.example.test", NULL, bad[i], NULL, &a), -EINVAL);
        assert_null(a);
        assert_int_equal(smtp_auth_new("mail.example.test", NULL, NULL, bad[i], &a), -EINVAL);
        assert_null(a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mechs),
        cmocka_unit_test(test_plain_initial_response),
        cmocka_unit_test(test_plain_without_initial_response),
        cmocka_unit_test(test_plain_failures),
        cmocka_unit_test(test_plain_malformed),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_cancel_and_bad_input),
        cmocka_unit_test(test_unknown_mech),
        cmocka_unit_test(test_missing_sasldb),
        cmocka_unit_test(test_cram_md5),
        cmocka_unit_test(test_scram_sha256),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_ipport),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
