/*
 * test_dlv_route.c - routing decisions: next hop syntax, and how each DNS
 * verdict becomes a delivery verdict (temporary or permanent, with which
 * enhanced status). The lookups themselves run against a real dnsmasq in
 * test_smtp_client.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "sluice/dlv_route.h"

static void test_parse_names(void **state)
{
    dlv_route_target t;
    assert_int_equal(dlv_route_parse("B.Test", 25, &t), 0);
    assert_string_equal(t.host, "b.test");
    assert_int_equal(t.port, 25);
    assert_true(t.mx);
    assert_false(t.is_ip);

    assert_int_equal(dlv_route_parse("mx.b.test:2525", 25, &t), 0);
    assert_string_equal(t.host, "mx.b.test");
    assert_int_equal(t.port, 2525);
    assert_true(t.mx); /* no brackets: MX lookup, as Postfix */

    assert_int_equal(dlv_route_parse("[smart.test]:587", 25, &t), 0);
    assert_string_equal(t.host, "smart.test");
    assert_int_equal(t.port, 587);
    assert_false(t.mx);
    assert_false(t.is_ip);

    assert_int_equal(dlv_route_parse("[smart.test]", 2525, &t), 0);
    assert_int_equal(t.port, 2525);
    assert_false(t.mx);

    assert_int_equal(dlv_route_parse("b.test.", 25, &t), 0);
    assert_string_equal(t.host, "b.test");
    (void)state;
}

static void test_parse_addresses(void **state)
{
    dlv_route_target t;
    char ip[INET6_ADDRSTRLEN];

    assert_int_equal(dlv_route_parse("[192.0.2.1]", 25, &t), 0);
    assert_true(t.is_ip);
    assert_false(t.mx);
    assert_int_equal(t.addr.ss_family, AF_INET);
    struct sockaddr_in *sin = (struct sockaddr_in *)&t.addr;
    assert_int_equal(ntohs(sin->sin_port), 25);
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
    assert_string_equal(ip, "192.0.2.1");

    /* A bare IPv4 address is the host itself too. */
    assert_int_equal(dlv_route_parse("192.0.2.7:26", 25, &t), 0);
    assert_true(t.is_ip);
    assert_int_equal(ntohs(((struct sockaddr_in *)&t.addr)->sin_port), 26);

    /* RFC 5321 IPv6 literal as a recipient domain. */
    assert_int_equal(dlv_route_parse("[IPv6:2001:db8::1]", 25, &t), 0);
    assert_true(t.is_ip);
    assert_int_equal(t.addr.ss_family, AF_INET6);
    assert_int_equal(t.addrlen, sizeof(struct sockaddr_in6));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t.addr;
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
    assert_string_equal(ip, "2001:db8::1");
    assert_int_equal(ntohs(sin6->sin6_port), 25);

    assert_int_equal(dlv_route_parse("[::1]:2525", 25, &t), 0);
    assert_true(t.is_ip);
    assert_int_equal(t.port, 2525);
    (void)state;
}

static void test_parse_bad(void **state)
{
    dlv_route_target t;
    assert_int_equal(dlv_route_parse("", 25, &t), -EINVAL);
    assert_int_equal(dlv_route_parse(NULL, 25, &t), -EINVAL);
    assert_int_equal(dlv_route_parse("a b.test", 25, &t), -EINVAL);
    assert_int_equal(dlv_route_parse("b.test:99999", 25, &t), -EINVAL);
    assert_int_equal(dlv_route_parse("b.test:x", 25, &t), -EINVAL);
    assert_int_equal(dlv_route_parse("[b.test", 25, &t), -EINVAL);
    assert_int_equal(dlv_route_parse("2001:db8::1", 25, &t), -EINVAL); /* needs brackets */
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(dlv_route_parse(longname, 25, &t), -EINVAL);
    (void)state;
}

static void test_dns_verdicts(void **state)
{
    dlv_route_result r;

    memset(&r, 0, sizeof(r));
    dlv_route_dns_failure(RESOLVER_ENXDOMAIN, "MX", "nx.test", NULL, true, &r);
    assert_int_equal(r.klass, DLV_ROUTE_PERM);
    assert_string_equal(r.status, "5.1.2");
    assert_int_equal(r.code, 550);
    assert_non_null(strstr(r.text, "name=nx.test type=MX: Host not found"));

    dlv_route_dns_failure(RESOLVER_ENULLMX, "MX", "null.test", NULL, true, &r);
    assert_int_equal(r.klass, DLV_ROUTE_PERM);
    assert_string_equal(r.status, "5.1.10");
    assert_int_equal(r.code, 556);
    assert_non_null(strstr(r.text, "null.test does not accept mail"));

    dlv_route_dns_failure(RESOLVER_ETEMP, "MX", "b.test", "Timeout while contacting DNS servers",
                          true, &r);
    assert_int_equal(r.klass, DLV_ROUTE_TEMP);
    assert_string_equal(r.status, "4.4.3");
    assert_int_equal(r.code, 451);
    assert_non_null(strstr(r.text, "try again (Timeout while contacting DNS servers)"));

    dlv_route_dns_failure(RESOLVER_ENODATA, "A", "mx.b.test", NULL, true, &r);
    assert_int_equal(r.klass, DLV_ROUTE_PERM);
    assert_string_equal(r.status, "5.4.4");

    dlv_route_dns_failure(RESOLVER_ENXDOMAIN, "A", "mx.b.test", "", true, &r);
    assert_string_equal(r.status, "5.4.4");
    assert_null(strstr(r.text, "()"));

    dlv_route_dns_failure(RESOLVER_ECANCELED, "MX", "b.test", NULL, true, &r);
    assert_int_equal(r.klass, DLV_ROUTE_TEMP);

    /* A relayhost or transport entry that does not resolve: never a bounce. */
    dlv_route_dns_failure(RESOLVER_ENXDOMAIN, "MX", "smart.test", NULL, false, &r);
    assert_int_equal(r.klass, DLV_ROUTE_TEMP);
    assert_string_equal(r.status, "4.4.4");
    dlv_route_dns_failure(RESOLVER_ENULLMX, "MX", "smart.test", NULL, false, &r);
    assert_int_equal(r.klass, DLV_ROUTE_TEMP);
    assert_int_equal(r.code, 451);
    (void)state;
}

static int cb_calls;
static void never_cb(dlv_route_req *req)
{
    cb_calls++;
}

/* IP next hops need no DNS: answered at once, no callback. */
static void test_resolve_ip_now(void **state)
{
    uv_loop_t loop;
    resolver res;
    const char *servers[] = {"127.0.0.1:9"}; /* never asked */
    resolver_options ro = {.servers = servers, .nservers = 1};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(resolver_init(&loop, &res, &ro), 0);

    dlv_route_req req;
    memset(&req, 0, sizeof(req));
    assert_int_equal(dlv_route_resolve(&res, &req, "[127.0.0.2]:2525", "[127.0.0.2]", 25, never_cb),
                     1);
    assert_int_equal(req.result.klass, DLV_ROUTE_OK);
    assert_int_equal(req.result.ncands, 1);
    assert_string_equal(req.result.cands[0].host, "127.0.0.2");
    assert_int_equal(req.result.cands[0].port, 2525);
    assert_true(req.result.cands[0].literal);
    dlv_route_result_free(&req.result);

    assert_int_equal(dlv_route_resolve(&res, &req, "bad hop", NULL, 25, never_cb), -EINVAL);

    resolver_close(&res, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(cb_calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_names),    cmocka_unit_test(test_parse_addresses),
        cmocka_unit_test(test_parse_bad),      cmocka_unit_test(test_dns_verdicts),
        cmocka_unit_test(test_resolve_ip_now),
    };
    return cmocka_run_group_tests_name("dlv_route", tests, NULL, NULL);
}
