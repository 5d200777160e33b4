/*
 * test_auth_text.c - the pure helpers of the AUTH backends: strict base64,
 * mechanism lists, "IP;PORT", Dovecot's tab escaping and the login check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../smtpd/smtp_auth_text.h"
#include "sluice/smtp_auth.h"

static void test_b64_strict(void **state)
{
    unsigned char out[64];
    (void)state;

    assert_int_equal(auth_b64_decode("", 0, out), 0);
    assert_int_equal(auth_b64_decode("AGFsaWNlAHNlY3JldA==", 20, out), 13);
    assert_memory_equal(out, "\0alice\0secret", 13);
    assert_int_equal(auth_b64_decode("YWI=", 4, out), 2);
    assert_int_equal(auth_b64_decode("YWJj", 4, NULL), 3); /* length only */
    /* not base64: length, alphabet, blanks, data after padding, padding in the middle */
    assert_int_equal(auth_b64_decode("YWJ", 3, out), -1);
    assert_int_equal(auth_b64_decode("YW J", 4, out), -1);
    assert_int_equal(auth_b64_decode("YW\tJ", 4, out), -1);
    assert_int_equal(auth_b64_decode("YW=j", 4, out), -1);
    assert_int_equal(auth_b64_decode("YQ==YWJj", 8, out), -1);
    assert_int_equal(auth_b64_decode("Y===", 4, out), -1);
    /* not canonical: the bits a padded quantum leaves over must be zero */
    assert_int_equal(auth_b64_decode("YQ==", 4, out), 1);
    assert_int_equal(auth_b64_decode("YWJ=", 4, out), -1);
    assert_int_equal(auth_b64_decode("YWK=", 4, out), -1);
    assert_int_equal(auth_b64_decode("YR==", 4, out), -1);
}

static void test_mech_lists(void **state)
{
    (void)state;
    assert_true(auth_list_has("PLAIN LOGIN", "LOGIN", 5));
    assert_true(auth_list_has("PLAIN LOGIN", "PLAIN", 5));
    assert_false(auth_list_has("PLAIN LOGIN", "LOG", 3));
    assert_false(auth_list_has("PLAINX", "PLAIN", 5));
    assert_false(auth_list_has("", "PLAIN", 5));
    assert_false(auth_list_has(NULL, "PLAIN", 5));

    char *m = auth_mechs_normalize(" plain,login\tPLAIN anonymous external cram-md5 ");
    assert_non_null(m);
    assert_string_equal(m, "PLAIN LOGIN CRAM-MD5");
    free(m);
    m = auth_mechs_normalize("bad/name scram-sha-256");
    assert_non_null(m);
    assert_string_equal(m, "SCRAM-SHA-256");
    free(m);
    m = auth_mechs_normalize(NULL);
    assert_non_null(m);
    assert_string_equal(m, "");
    free(m);
}

static void test_split_ipport(void **state)
{
    char ip[64], port[8];
    (void)state;

    assert_true(auth_split_ipport("192.0.2.1;587", ip, sizeof(ip), port, sizeof(port)));
    assert_string_equal(ip, "192.0.2.1");
    assert_string_equal(port, "587");
    assert_true(auth_split_ipport("2001:db8::1;25", ip, sizeof(ip), port, sizeof(port)));
    assert_string_equal(ip, "2001:db8::1");
    assert_false(auth_split_ipport("192.0.2.1", ip, sizeof(ip), port, sizeof(port)));
    assert_false(auth_split_ipport(";25", ip, sizeof(ip), port, sizeof(port)));
    assert_false(auth_split_ipport("192.0.2.1;", ip, sizeof(ip), port, sizeof(port)));
    assert_false(auth_split_ipport("192.0.2.1;65536", ip, sizeof(ip), port, sizeof(port)));
    assert_false(auth_split_ipport("192.0.2.1;2x", ip, sizeof(ip), port, sizeof(port)));
    assert_false(auth_split_ipport("mail.example;25", ip, sizeof(ip), port, sizeof(port)));
    assert_false(auth_split_ipport("192.0.2.1;25", ip, 4, port, sizeof(port))); /* too long */
}

static void test_tab_unescape(void **state)
{
    char s[32];
    (void)state;

    memcpy(s, "a\001tb\001nc\0011d\0010e\001r", 15);
    size_t n = dovecot_tab_unescape(s, 15);
    assert_int_equal(n, 10);
    assert_memory_equal(s, "a\tb\nc\001d\0e\r", 10);
    memcpy(s, "end\001", 4); /* a lone \001 at the end stays */
    assert_int_equal(dovecot_tab_unescape(s, 4), 4);
    assert_memory_equal(s, "end\001", 4);
}

static void test_copy_identity(void **state)
{
    char out[SMTP_AUTH_USER_MAX + 1];
    char longname[SMTP_AUTH_USER_MAX + 2];
    (void)state;

    assert_true(auth_copy_identity(out, "Alice@Example.ORG", 17));
    assert_string_equal(out, "Alice@example.org"); /* only the domain is lower-cased */
    assert_true(auth_copy_identity(out, "SystemUser", 10));
    assert_string_equal(out, "SystemUser");
    assert_false(auth_copy_identity(out, "", 0));
    assert_false(auth_copy_identity(out, "a b@x", 5));
    assert_false(auth_copy_identity(out, "a\r@x", 4));
    assert_false(auth_copy_identity(out, "a@b@c", 5));
    assert_false(auth_copy_identity(out, "@x", 2));
    assert_false(auth_copy_identity(out, "a@", 2));
    memset(longname, 'a', sizeof(longname));
    assert_true(auth_copy_identity(out, longname, SMTP_AUTH_USER_MAX));
    assert_false(auth_copy_identity(out, longname, SMTP_AUTH_USER_MAX + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_strict),    cmocka_unit_test(test_mech_lists),
        cmocka_unit_test(test_split_ipport),  cmocka_unit_test(test_tab_unescape),
        cmocka_unit_test(test_copy_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
