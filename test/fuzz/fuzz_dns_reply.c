/*
 * fuzz_dns_reply.c - libFuzzer target for the resolver's reply handling:
 * the bytes are a DNS message as a server (or an attacker spoofing one)
 * might send it, run through every parser the resolver uses, plus the
 * MX shuffle. Nothing may crash, leak or read out of bounds, and what a
 * parser returns must be a consistent result.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sluice/resolver.h"

static void check(int st, const resolver_result *r)
{
    if (st != RESOLVER_OK && (r->nmx || r->naddrs || r->ntxt || r->name))
        abort(); /* a failed parse must leave nothing behind */
    for (size_t i = 0; i < r->nmx; i++) {
        if (r->mx[i].host == NULL || (i > 0 && r->mx[i - 1].pref > r->mx[i].pref))
            abort();
    }
    for (size_t i = 0; i < r->ntxt; i++) {
        if (r->txt[i].data == NULL || r->txt[i].data[r->txt[i].len] != '\0')
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    resolver_result r;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    uint64_t rng = size + 1;
    int st;

    st = resolver_parse_mx(data, size, &r);
    check(st, &r);
    if (st == RESOLVER_OK) {
        resolver_mx_shuffle(r.mx, r.nmx, &rng);
        check(st, &r);
    }
    resolver_result_free(&r);

    st = resolver_parse_addrs(data, size, AF_INET, &r);
    check(st, &r);
    resolver_result_free(&r);
    st = resolver_parse_addrs(data, size, AF_INET6, &r);
    check(st, &r);
    resolver_result_free(&r);

    st = resolver_parse_txt(data, size, &r);
    check(st, &r);
    resolver_result_free(&r);

    if (size >= 4)
        memcpy(&sin.sin_addr, data, 4);
    st = resolver_parse_ptr(data, size, (struct sockaddr *)&sin, &r);
    check(st, &r);
    resolver_result_free(&r);
    if (size >= 16)
        memcpy(&sin6.sin6_addr, data, 16);
    st = resolver_parse_ptr(data, size, (struct sockaddr *)&sin6, &r);
    check(st, &r);
    resolver_result_free(&r);
    return 0;
}
