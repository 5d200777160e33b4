/*
 * test_smtp_auth_dovecot.c - SMTP AUTH through Dovecot's auth-client socket
 * (smtpd/smtp_auth_dovecot.c).
 *
 * Two servers:
 * - a real Dovecot (dovecot -F -c CONF) in a temporary folder: its own
 *   base_dir and state_dir, no protocols (only the auth service runs), a
 *   passwd-file passdb and an auth-client unix_listener for us. PLAIN,
 *   LOGIN and CRAM-MD5, good and bad; a password changed in the passwd-file
 *   applies at once; Dovecot stopped gives 454 and started again works.
 * - a scripted fake on another socket, for answers a healthy Dovecot does not
 *   give (temporary failures, unusable logins, protocol errors), and to see
 *   the exact request line sent.
 *
 * Skipped (with the reason) when Dovecot is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice/smtp_auth.h"
#include "sluice/smtp_auth_dovecot.h"

#define LOGIN "demo@example.test"
#define PASSWORD "s3cret pass"
#define CONFIGURED "plain, login CRAM-MD5 scram-sha-1 anonymous"

static const char *dovecot_bin;
static char tmpdir[] = "/tmp/sluice-dovecot-XXXXXX";
static char sock_path[96], fake_path[96], passwd_path[96], conf_path[96], log_path[96];
static pid_t dovecot_pid = -1;
static const char *skip_reason;

/* ---- helpers ------------------------------------------------------------ */

static char *b64(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

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

static void write_file(const char *path, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void set_password(const char *pass)
{
    char line[512];
    snprintf(line, sizeof(line), "%s:{PLAIN}%s\nother@example.test:{PLAIN}other-pass\n", LOGIN,
             pass);
    write_file(passwd_path, line);
    /*
     * Dovecot re-reads a passwd-file when its mtime or size changed, looking
     * at most once a second. Two passwords of one length written within a
     * second differ in neither, so each version gets an mtime of its own;
     * and the next lookup must come a second after the last one.
     */
    static time_t stamp;
    if (!stamp)
        stamp = time(NULL) - 1000;
    stamp++;
    struct timespec ts[2] = {{stamp, 0}, {stamp, 0}};
    assert_int_equal(utimensat(AT_FDCWD, passwd_path, ts, 0), 0);
    sleep_ms(1100);
}

static bool socket_answers(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int start_dovecot(void)
{
    unlink(sock_path); /* Dovecot refuses to replace a socket file it finds */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(dovecot_bin, "dovecot", "-F", "-c", conf_path, (char *)NULL);
        _exit(127);
    }
    dovecot_pid = pid;
    for (int i = 0; i < 200; i++) {
        if (socket_answers(sock_path))
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            dovecot_pid = -1;
            return -1;
        }
        sleep_ms(50);
    }
    return -1;
}

static void stop_dovecot(void)
{
    if (dovecot_pid <= 0)
        return;
    kill(dovecot_pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        int st;
        if (waitpid(dovecot_pid, &st, WNOHANG) == dovecot_pid) {
            dovecot_pid = -1;
            break;
        }
        sleep_ms(50);
    }
    if (dovecot_pid > 0) {
        kill(dovecot_pid, SIGKILL);
        waitpid(dovecot_pid, NULL, 0);
        dovecot_pid = -1;
    }
    /* the master's children (auth) leave with it; give them a moment */
    for (int i = 0; i < 100 && socket_answers(sock_path); i++)
        sleep_ms(20);
}

static void print_log(void)
{
    FILE *f = fopen(log_path, "r");
    char line[512];
    if (!f)
        return;
    fprintf(stderr, "---- dovecot log (%s)\n", log_path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

static int use_real(void)
{
    smtp_auth_dovecot_done();
    return smtp_auth_dovecot_init(sock_path, CONFIGURED);
}

static int group_setup(void **state)
{
    (void)state;
    /* The folder and paths serve the fake too, which needs no Dovecot. */
    if (!mkdtemp(tmpdir))
        return -1;
    chmod(tmpdir, 0755);
    snprintf(sock_path, sizeof(sock_path), "%s/auth-client", tmpdir);
    snprintf(fake_path, sizeof(fake_path), "%s/fake-auth", tmpdir);
    snprintf(passwd_path, sizeof(passwd_path), "%s/passwd", tmpdir);
    snprintf(conf_path, sizeof(conf_path), "%s/dovecot.conf", tmpdir);
    snprintf(log_path, sizeof(log_path), "%s/dovecot.log", tmpdir);

    dovecot_bin = access("/usr/sbin/dovecot", X_OK) == 0 ? "/usr/sbin/dovecot" : NULL;
    if (!dovecot_bin) {
        skip_reason = "Dovecot is not installed (scripts/deps installs dovecot-core)";
        return use_real(); /* the fake's tests put this back after each one */
    }
    set_password(PASSWORD);

    /* Every Dovecot process runs as whoever runs the test: root in CI, or
     * an ordinary user (no protocols, so no login process needs another). */
    struct passwd *pw = getpwuid(geteuid());
    struct group *gr = getgrgid(getegid());
    char me[64], mygroup[64];
    snprintf(me, sizeof(me), "%s", pw ? pw->pw_name : "root");
    snprintf(mygroup, sizeof(mygroup), "%s", gr ? gr->gr_name : "root");
    char conf[4096];
    snprintf(conf, sizeof(conf),
             "protocols = none\n"
             "base_dir = %s/run\n"
             "state_dir = %s/state\n"
             "log_path = /dev/stderr\n"
             "ssl = no\n"
             "default_internal_user = %s\n"
             "default_internal_group = %s\n"
             "default_login_user = %s\n"
             "auth_failure_delay = 0\n"
             "auth_mechanisms = plain login cram-md5\n"
             "passdb {\n"
             "  driver = passwd-file\n"
             "  args = scheme=PLAIN %s\n"
             "}\n"
             "service auth {\n"
             "  user = %s\n"
             "  unix_listener %s {\n"
             "    mode = 0600\n"
             "  }\n"
             "}\n",
             tmpdir, tmpdir, me, mygroup, me, passwd_path, me, sock_path);
    write_file(conf_path, conf);
    char d[300];
    snprintf(d, sizeof(d), "%s/run", tmpdir);
    mkdir(d, 0755);
    snprintf(d, sizeof(d), "%s/state", tmpdir);
    mkdir(d, 0755);

    if (start_dovecot() != 0) {
        print_log();
        skip_reason = "Dovecot did not start here (log above)";
    }
    return use_real();
}

static int group_teardown(void **state)
{
    (void)state;
    smtp_auth_dovecot_done();
    stop_dovecot();
    if (tmpdir[strlen(tmpdir) - 1] != 'X') {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    return 0;
}

#define NEED_DOVECOT()                                                                             \
    do {                                                                                           \
        if (skip_reason) {                                                                         \
            fprintf(stderr, "skipped: %s\n", skip_reason);                                         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static smtp_auth_dovecot *new_auth(void)
{
    smtp_auth_dovecot *a = NULL;
    assert_int_equal(
        smtp_auth_dovecot_new("mail.example.test", NULL, "127.0.0.1;587", "192.0.2.1;40000", &a),
        0);
    assert_non_null(a);
    return a;
}

/* One PLAIN exchange with an initial response; returns the final status. */
static enum smtp_auth_status plain_ir(const char *authz, const char *user, const char *pass,
                                      char *who, size_t whosize)
{
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    char *ir = plain_b64(authz, user, pass);
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    if (res.status == SMTP_AUTH_OK && who)
        snprintf(who, whosize, "%s", res.user);
    free(ir);
    smtp_auth_dovecot_free(a);
    return res.status;
}

/* ---- against a real Dovecot --------------------------------------------- */

static void test_mechs(void **state)
{
    (void)state;
    NEED_DOVECOT();
    /* SCRAM-SHA-1: Dovecot does not offer it here; ANONYMOUS: never. */
    assert_string_equal(smtp_auth_dovecot_mechs(), "PLAIN LOGIN CRAM-MD5");
    assert_int_equal(smtp_auth_dovecot_init(sock_path, "PLAIN"), -EALREADY);
}

static void test_plain_good(void **state)
{
    (void)state;
    NEED_DOVECOT();
    char who[SMTP_AUTH_USER_MAX + 1] = "";
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, who, sizeof(who)), SMTP_AUTH_OK);
    assert_string_equal(who, LOGIN);
    /* authzid equal to the login is allowed */
    assert_int_equal(plain_ir(LOGIN, LOGIN, PASSWORD, who, sizeof(who)), SMTP_AUTH_OK);
    /* the domain is case-insensitive; the login comes back in lower case */
    assert_int_equal(plain_ir("", "demo@Example.TEST", PASSWORD, who, sizeof(who)), SMTP_AUTH_OK);
    assert_string_equal(who, LOGIN);
}

static void test_plain_without_initial_response(void **state)
{
    (void)state;
    NEED_DOVECOT();
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    assert_int_equal(smtp_auth_dovecot_start(a, "plain", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    assert_string_equal(res.challenge, "");
    char *line = plain_b64("", LOGIN, PASSWORD);
    assert_int_equal(smtp_auth_dovecot_step(a, line, strlen(line), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    assert_string_equal(res.user, LOGIN);
    /* after a final result only free is valid */
    assert_int_equal(smtp_auth_dovecot_step(a, line, strlen(line), &res), -EINVAL);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    free(line);
    smtp_auth_dovecot_free(a);
}

static void test_plain_failures(void **state)
{
    (void)state;
    NEED_DOVECOT();
    assert_int_equal(plain_ir("", LOGIN, "wrong", NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", "nobody@example.test", PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    /* acting as someone else (no master user configured) */
    assert_int_equal(plain_ir("other@example.test", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    /* the right password of another user */
    assert_int_equal(plain_ir("", LOGIN, "other-pass", NULL, 0), SMTP_AUTH_FAIL);
}

static void test_plain_malformed(void **state)
{
    (void)state;
    NEED_DOVECOT();
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    char *ir = b64("no nul bytes", 12);
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    free(ir);
    smtp_auth_dovecot_free(a);

    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", "not*base64", 10, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_dovecot_free(a);

    /* a TAB or LF must never reach the request line */
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", "AAAA\tuser=x", 11, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_dovecot_free(a);

    /* non-canonical padding bits */
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", "AB==", 4, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_dovecot_free(a);

    /* "=": an empty initial response, which PLAIN cannot use */
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", "=", 1, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_FAIL);
    smtp_auth_dovecot_free(a);
}

static void test_login(void **state)
{
    (void)state;
    NEED_DOVECOT();
    unsigned char dec[64];
    for (int good = 1; good >= 0; good--) {
        smtp_auth_dovecot *a = new_auth();
        smtp_auth_result res;
        assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), 0);
        assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
        unb64(res.challenge, dec);
        assert_string_equal((char *)dec, "Username:");
        char *u = b64(LOGIN, strlen(LOGIN));
        assert_int_equal(smtp_auth_dovecot_step(a, u, strlen(u), &res), 0);
        assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
        unb64(res.challenge, dec);
        assert_string_equal((char *)dec, "Password:");
        const char *pw = good ? PASSWORD : "nope";
        char *p = b64(pw, strlen(pw));
        assert_int_equal(smtp_auth_dovecot_step(a, p, strlen(p), &res), 0);
        assert_int_equal(res.status, good ? SMTP_AUTH_OK : SMTP_AUTH_FAIL);
        if (good)
            assert_string_equal(res.user, LOGIN);
        free(u);
        free(p);
        smtp_auth_dovecot_free(a);
    }
}

static void test_cancel_and_bad_input(void **state)
{
    (void)state;
    NEED_DOVECOT();
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    assert_int_equal(smtp_auth_dovecot_step(a, "*", 1, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CANCELLED);
    smtp_auth_dovecot_free(a);

    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_dovecot_step(a, "@@@@", 4, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_BAD_BASE64);
    smtp_auth_dovecot_free(a);

    /* a line over RFC 4954's 12288 octets */
    size_t n = SMTP_AUTH_LINE_MAX + 4;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'A', n);
    big[n] = '\0';
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_dovecot_step(a, big, n, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_TOO_LONG);
    smtp_auth_dovecot_free(a);
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", big, n, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_TOO_LONG);
    smtp_auth_dovecot_free(a);
    free(big);

    /* misuse: a step before start, a second start, NULLs */
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_step(a, "", 0, &res), -EINVAL);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    smtp_auth_dovecot_free(a);
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), -EINVAL);
    assert_int_equal(smtp_auth_dovecot_start(a, NULL, NULL, 0, NULL), -EINVAL);
    smtp_auth_dovecot_free(a);
    smtp_auth_dovecot_free(NULL);
    assert_int_equal(smtp_auth_dovecot_new(NULL, NULL, "bad", NULL, &a), -EINVAL);
    assert_null(a);
    assert_int_equal(smtp_auth_dovecot_new(NULL, NULL, NULL, "10.0.0.1;99999", &a), -EINVAL);
    assert_int_equal(smtp_auth_dovecot_new(NULL, NULL, "", "", &a), 0);
    smtp_auth_dovecot_free(a);
}

static void test_unknown_mech(void **state)
{
    (void)state;
    NEED_DOVECOT();
    const char *mechs[] = {"FOO", "SCRAM-SHA-1", "ANONYMOUS", "EXTERNAL", "PL@IN", ""};
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
        smtp_auth_dovecot *a = new_auth();
        smtp_auth_result res;
        assert_int_equal(smtp_auth_dovecot_start(a, mechs[i], NULL, 0, &res), 0);
        assert_int_equal(res.status, SMTP_AUTH_NO_MECH);
        smtp_auth_dovecot_free(a);
    }
}

static void test_cram_md5(void **state)
{
    (void)state;
    NEED_DOVECOT();
    for (int good = 1; good >= 0; good--) {
        smtp_auth_dovecot *a = new_auth();
        smtp_auth_result res;
        assert_int_equal(smtp_auth_dovecot_start(a, "CRAM-MD5", NULL, 0, &res), 0);
        assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
        unsigned char ch[512];
        size_t chlen = unb64(res.challenge, ch);
        assert_true(chlen > 0 && ch[0] == '<');
        const char *key = good ? PASSWORD : "bad";
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        HMAC(EVP_md5(), key, (int)strlen(key), ch, chlen, mac, &maclen);
        char resp[512];
        int o = snprintf(resp, sizeof(resp), "%s ", LOGIN);
        for (unsigned i = 0; i < maclen; i++)
            o += snprintf(resp + o, sizeof(resp) - (size_t)o, "%02x", mac[i]);
        char *line = b64(resp, (size_t)o);
        assert_int_equal(smtp_auth_dovecot_step(a, line, strlen(line), &res), 0);
        assert_int_equal(res.status, good ? SMTP_AUTH_OK : SMTP_AUTH_FAIL);
        free(line);
        smtp_auth_dovecot_free(a);
    }
}

static void test_password_change(void **state)
{
    (void)state;
    NEED_DOVECOT();
    set_password("the new one");
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", LOGIN, "the new one", NULL, 0), SMTP_AUTH_OK);
    set_password(PASSWORD);
    assert_int_equal(plain_ir("", LOGIN, "the new one", NULL, 0), SMTP_AUTH_FAIL);
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_OK);
}

static void *thread_main(void *arg)
{
    int *bad = arg;
    for (int i = 0; i < 10; i++) {
        smtp_auth_dovecot *a = NULL;
        smtp_auth_result res;
        char *ir = plain_b64("", LOGIN, PASSWORD);
        if (smtp_auth_dovecot_new(NULL, NULL, NULL, NULL, &a) != 0 ||
            smtp_auth_dovecot_start(a, "PLAIN", ir, strlen(ir), &res) != 0 ||
            res.status != SMTP_AUTH_OK || strcmp(res.user, LOGIN) != 0)
            (*bad)++;
        free(ir);
        smtp_auth_dovecot_free(a);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    NEED_DOVECOT();
    pthread_t t[8];
    int bad[8] = {0};
    /* and one exchange held open meanwhile, as a slow client's would be */
    smtp_auth_dovecot *held = new_auth();
    smtp_auth_result res;
    assert_int_equal(smtp_auth_dovecot_start(held, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &bad[i]), 0);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(bad[i], 0);
    }
    char *u = b64(LOGIN, strlen(LOGIN));
    char *p = b64(PASSWORD, strlen(PASSWORD));
    assert_int_equal(smtp_auth_dovecot_step(held, u, strlen(u), &res), 0);
    assert_int_equal(smtp_auth_dovecot_step(held, p, strlen(p), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    free(u);
    free(p);
    smtp_auth_dovecot_free(held);
}

static void test_dovecot_down_and_back(void **state)
{
    (void)state;
    NEED_DOVECOT();
    stop_dovecot();
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_TEMP);
    /* Sluice started before Dovecot: everything configured is offered */
    assert_int_equal(use_real(), 0);
    assert_string_equal(smtp_auth_dovecot_mechs(), "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1");
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_TEMP);
    assert_int_equal(start_dovecot(), 0);
    assert_int_equal(plain_ir("", LOGIN, PASSWORD, NULL, 0), SMTP_AUTH_OK);
    /* a mechanism Dovecot lacks is found out at the exchange: 504, not 454 */
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    assert_int_equal(smtp_auth_dovecot_start(a, "SCRAM-SHA-1", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_NO_MECH);
    smtp_auth_dovecot_free(a);
    assert_int_equal(use_real(), 0);
    assert_string_equal(smtp_auth_dovecot_mechs(), "PLAIN LOGIN CRAM-MD5");
}

static void test_init_arguments(void **state)
{
    (void)state;
    NEED_DOVECOT();
    smtp_auth_dovecot_done();
    smtp_auth_dovecot *a = NULL;
    assert_int_equal(smtp_auth_dovecot_new(NULL, NULL, NULL, NULL, &a), -EINVAL);
    assert_string_equal(smtp_auth_dovecot_mechs(), "");
    assert_int_equal(smtp_auth_dovecot_init(NULL, "PLAIN"), -EINVAL);
    assert_int_equal(smtp_auth_dovecot_init("", "PLAIN"), -EINVAL);
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(smtp_auth_dovecot_init(longpath, "PLAIN"), -EINVAL);
    /* no mechanisms: AUTH off, no exchange can begin */
    assert_int_equal(smtp_auth_dovecot_init(sock_path, " , "), 0);
    assert_string_equal(smtp_auth_dovecot_mechs(), "");
    assert_int_equal(smtp_auth_dovecot_new(NULL, NULL, NULL, NULL, &a), -EINVAL);
    assert_int_equal(use_real(), 0);
}

/* ---- against a scripted fake --------------------------------------------- */

static struct {
    int lfd;
    int stop[2];
    pthread_t thr;
    const char *handshake;
    const char *replies[4]; /* answers to AUTH, then to each CONT; "" = hang up */
    bool hangup_after_handshake;
    char request[40000]; /* the AUTH line of the last exchange */
    int conns;
} fake;

static void *fake_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p[2] = {{fake.lfd, POLLIN, 0}, {fake.stop[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 || p[1].revents)
            return NULL;
        int c = accept(fake.lfd, NULL, NULL);
        if (c < 0)
            continue;
        fake.conns++;
        if (write(c, fake.handshake, strlen(fake.handshake)) < 0 || fake.hangup_after_handshake) {
            close(c);
            continue;
        }
        char buf[40000];
        size_t len = 0;
        int nreply = 0;
        for (;;) {
            ssize_t r = read(c, buf + len, sizeof(buf) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            buf[len] = '\0';
            char *nl;
            while ((nl = strchr(buf, '\n')) != NULL) {
                *nl = '\0';
                if (strncmp(buf, "AUTH\t", 5) == 0)
                    snprintf(fake.request, sizeof(fake.request), "%s", buf);
                if ((strncmp(buf, "AUTH\t", 5) == 0 || strncmp(buf, "CONT\t", 5) == 0) &&
                    nreply < 4 && fake.replies[nreply]) {
                    const char *rep = fake.replies[nreply++];
                    if (!rep[0] || write(c, rep, strlen(rep)) < 0)
                        goto hangup;
                }
                size_t used = (size_t)(nl - buf) + 1;
                memmove(buf, nl + 1, len - used + 1);
                len -= used;
            }
        }
    hangup:
        close(c);
    }
}

#define HANDSHAKE_OK                                                                               \
    "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nMECH\tAPOP\tprivate\n"         \
    "SPID\t1\nCUID\t1\nCOOKIE\t00\nDONE\n"

static void fake_start(const char *handshake, const char *r0, const char *r1, bool hangup)
{
    memset(&fake, 0, sizeof(fake));
    fake.handshake = handshake;
    fake.hangup_after_handshake = hangup;
    fake.replies[0] = r0;
    fake.replies[1] = r1;
    unlink(fake_path);
    fake.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fake.lfd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fake_path);
    assert_int_equal(bind(fake.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fake.lfd, 16), 0);
    assert_int_equal(pipe(fake.stop), 0);
    assert_int_equal(pthread_create(&fake.thr, NULL, fake_main, NULL), 0);
    smtp_auth_dovecot_done();
    assert_int_equal(smtp_auth_dovecot_init(fake_path, "PLAIN LOGIN APOP"), 0);
}

static void fake_stop(void)
{
    assert_int_equal(write(fake.stop[1], "x", 1), 1);
    pthread_join(fake.thr, NULL);
    close(fake.lfd);
    close(fake.stop[0]);
    close(fake.stop[1]);
    unlink(fake_path);
    assert_int_equal(use_real(), 0);
}

static enum smtp_auth_status fake_plain(const char **user)
{
    static char who[SMTP_AUTH_USER_MAX + 1];
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    char *ir = plain_b64("", LOGIN, PASSWORD);
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    free(ir);
    who[0] = '\0';
    if (res.status == SMTP_AUTH_OK)
        snprintf(who, sizeof(who), "%s", res.user);
    if (user)
        *user = who;
    smtp_auth_dovecot_free(a);
    return res.status;
}

static void test_fake_request_line(void **state)
{
    (void)state;
    fake_start(HANDSHAKE_OK, "OK\t1\tuser=Demo@EXAMPLE.test\n", NULL, false);
    /* private mechanisms (APOP) are never offered */
    assert_string_equal(smtp_auth_dovecot_mechs(), "PLAIN LOGIN");
    const char *who;
    assert_int_equal(fake_plain(&who), SMTP_AUTH_OK);
    assert_string_equal(who, "Demo@example.test"); /* domain lower-cased, local part kept */
    char *ir = plain_b64("", LOGIN, PASSWORD);
    char want[1024];
    snprintf(want, sizeof(want),
             "AUTH\t1\tPLAIN\tservice=smtp\tsecured\tno-penalty\tlip=127.0.0.1\tlport=587"
             "\trip=192.0.2.1\trport=40000\tresp=%s",
             ir);
    assert_string_equal(fake.request, want);
    free(ir);
    fake_stop();
}

static void test_fake_failures(void **state)
{
    (void)state;
    struct {
        const char *reply;
        enum smtp_auth_status want;
    } cases[] = {
        {"FAIL\t1\tcode=temp_fail\treason=db down\n", SMTP_AUTH_TEMP},
        {"FAIL\t1\ttemp\n", SMTP_AUTH_TEMP},
        {"FAIL\t1\tuser=demo@example.test\tcode=user_disabled\n", SMTP_AUTH_FAIL},
        {"FAIL\t1\tcode=invalid_base64\n", SMTP_AUTH_BAD_BASE64},
        {"OK\t1\n", SMTP_AUTH_TEMP},                            /* no user= */
        {"OK\t1\tuser=a\001tb@example.test\n", SMTP_AUTH_FAIL}, /* a TAB in the login */
        {"OK\t1\tuser=a b@example.test\n", SMTP_AUTH_FAIL},
        {"OK\t1\tuser=a@b@example.test\n", SMTP_AUTH_FAIL},
        {"OK\t2\tuser=demo@example.test\n", SMTP_AUTH_TEMP}, /* another request's id */
        {"BOGUS\t1\n", SMTP_AUTH_TEMP},
        {"CONT\t1\tnot base64!\n", SMTP_AUTH_TEMP},
        {"", SMTP_AUTH_TEMP}, /* no answer: the connection closes */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_start(HANDSHAKE_OK, cases[i].reply, NULL, false);
        assert_int_equal(fake_plain(NULL), cases[i].want);
        fake_stop();
    }
}

static void test_fake_handshakes(void **state)
{
    (void)state;
    const char *bad[] = {
        "VERSION\t2\t0\nMECH\tPLAIN\nDONE\n", /* another major version */
        "MECH\tPLAIN\nDONE\n",                /* no VERSION */
        "VERSION\t1\t2\nMECH\tPLAIN\n",       /* never DONE: closed */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fake_start(bad[i], NULL, NULL, true);
        assert_int_equal(fake_plain(NULL), SMTP_AUTH_TEMP);
        fake_stop();
    }
}

static void test_fake_success_data(void **state)
{
    (void)state;
    /* success data in OK goes out as one more 334; an empty answer finishes */
    fake_start(HANDSHAKE_OK, "OK\t1\tuser=demo@example.test\tresp=dj1zaWc=\n", NULL, false);
    smtp_auth_dovecot *a = new_auth();
    smtp_auth_result res;
    char *ir = plain_b64("", LOGIN, PASSWORD);
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    assert_string_equal(res.challenge, "dj1zaWc=");
    assert_int_equal(smtp_auth_dovecot_step(a, "", 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_OK);
    assert_string_equal(res.user, LOGIN);
    smtp_auth_dovecot_free(a);
    /* anything but an empty answer there is a protocol error */
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "PLAIN", ir, strlen(ir), &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_CONTINUE);
    assert_int_equal(smtp_auth_dovecot_step(a, "AAAA", 4, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_PROTOCOL);
    smtp_auth_dovecot_free(a);
    free(ir);
    fake_stop();

    /* a mechanism Dovecot stopped offering since init: 504 */
    fake_start("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\nDONE\n", NULL, NULL, false);
    fake.handshake = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nDONE\n";
    a = new_auth();
    assert_int_equal(smtp_auth_dovecot_start(a, "LOGIN", NULL, 0, &res), 0);
    assert_int_equal(res.status, SMTP_AUTH_NO_MECH);
    smtp_auth_dovecot_free(a);
    fake_stop();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mechs),
        cmocka_unit_test(test_plain_good),
        cmocka_unit_test(test_plain_without_initial_response),
        cmocka_unit_test(test_plain_failures),
        cmocka_unit_test(test_plain_malformed),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_cancel_and_bad_input),
        cmocka_unit_test(test_unknown_mech),
        cmocka_unit_test(test_cram_md5),
        cmocka_unit_test(test_password_change),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_dovecot_down_and_back),
        cmocka_unit_test(test_init_arguments),
        cmocka_unit_test(test_fake_request_line),
        cmocka_unit_test(test_fake_failures),
        cmocka_unit_test(test_fake_handshakes),
        cmocka_unit_test(test_fake_success_data),
    };
    (void)test_setup;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
