/*
 * fuzz_config.c - libFuzzer target for the sluice.conf loader and the value
 * parsers it uses (durations, listen lines, CIDRs, next hops).
 *
 * Beyond memory safety it checks what callers rely on: the returned count is
 * the number of messages, every message names the file, every string field is
 * set, every path is absolute or empty, and lists stay inside their bounds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define NAME "/fuzz/sluice.conf"

static void count_diag(void *arg, const char *diag)
{
    CHECK(strncmp(diag, NAME ":", strlen(NAME) + 1) == 0);
    ++*(int *)arg;
}

static void check_path(const char *p)
{
    CHECK(p != NULL);
    CHECK(p[0] == '\0' || p[0] == '/');
}

static void check_config(const sluice_config *c)
{
    CHECK(c->path && strcmp(c->path, NAME) == 0);
    CHECK(c->dir && strcmp(c->dir, "/fuzz") == 0);
    CHECK(c->hostname && c->hostname[0]);
    CHECK(c->user && c->auth_mechanisms && c->relayhost);
    check_path(c->spool);
    CHECK(c->spool[0] == '/');
    check_path(c->tls_cert);
    check_path(c->tls_key);
    check_path(c->sasl_db);
    check_path(c->sender_login_map);
    check_path(c->mailboxes);
    check_path(c->aliases);
    check_path(c->transport);
    check_path(c->relayhost_auth);
    CHECK(c->nlisten >= 0 && c->nlisten <= CFG_MAX_LISTEN);
    for (int i = 0; i < c->nlisten; i++)
        CHECK(c->listen[i].port >= 1 && c->listen[i].port <= 65535 && c->listen[i].host[0]);
    CHECK(c->ntrusted >= 0 && c->ntrusted <= CFG_MAX_NETS);
    for (int i = 0; i < c->ntrusted; i++) {
        const cfg_cidr *n = &c->trusted_networks[i];
        CHECK(n->family == AF_INET || n->family == AF_INET6);
        CHECK(n->prefix >= 1 && n->prefix <= (n->family == AF_INET ? 32 : 128));
    }
    CHECK(c->nlocal_domains >= 0 && c->nlocal_domains <= CFG_MAX_DOMAINS);
    for (int i = 0; i < c->nlocal_domains; i++) {
        const char *d = c->local_domains[i];
        for (const char *p = d; *p; p++)
            CHECK(!(*p >= 'A' && *p <= 'Z'));
        CHECK(config_is_local_domain(c, d, strlen(d)));
    }
    CHECK(c->ndns_servers >= 0 && c->ndns_servers <= CFG_MAX_DNS);
    for (int i = 0; i < c->ndns_servers; i++)
        CHECK(strchr(c->dns_servers[i], ':') != NULL);
    CHECK(c->remote_port >= 1 && c->remote_port <= 65535);
    CHECK(c->retry_initial >= 1 && c->max_queue_lifetime >= 1);
}

/* A network contains its own first address, and the v4-mapped form of it. */
static void check_cidr(const cfg_cidr *c)
{
    struct sockaddr_in6 s6;
    struct sockaddr_in s4;
    memset(&s6, 0, sizeof(s6));
    memset(&s4, 0, sizeof(s4));
    if (c->family == AF_INET) {
        s4.sin_family = AF_INET;
        memcpy(&s4.sin_addr, c->addr, 4);
        CHECK(config_cidr_match(c, (struct sockaddr *)&s4));
        s6.sin6_family = AF_INET6;
        s6.sin6_addr.s6_addr[10] = 0xff;
        s6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&s6.sin6_addr.s6_addr[12], c->addr, 4);
        CHECK(config_cidr_match(c, (struct sockaddr *)&s6));
    } else {
        CHECK(c->family == AF_INET6);
        s6.sin6_family = AF_INET6;
        memcpy(&s6.sin6_addr, c->addr, 16);
        CHECK(config_cidr_match(c, (struct sockaddr *)&s6));
    }
}

static void fuzz_parsers(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';

    unsigned secs;
    (void)config_parse_duration(s, &secs);

    cfg_listen l;
    if (config_parse_listen(s, &l) == 0) {
        static const char *const kinds[] = {"mx", "submission", "smtps"};
        char again[128];
        cfg_listen l2;
        CHECK(l.port >= 1 && l.port <= 65535);
        CHECK((int)l.kind >= 0 && (int)l.kind < 3);
        /* What was accepted prints back to a line with the same meaning. */
        snprintf(again, sizeof(again), strchr(l.host, ':') ? "[%s]:%d %s" : "%s:%d %s", l.host,
                 l.port, kinds[l.kind]);
        CHECK(config_parse_listen(again, &l2) == 0);
        CHECK(strcmp(l.host, l2.host) == 0 && l.port == l2.port && l.kind == l2.kind);
    }

    cfg_cidr c;
    if (config_parse_cidr(s, &c) == 0)
        check_cidr(&c);

    cfg_relay r;
    if (config_parse_relay(s, &r) == 0) {
        CHECK(r.host[0] != '\0');
        CHECK(r.port >= 0 && r.port <= 65535);
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sluice_config cfg;
    int ndiag = 0;
    int rc = config_load_buffer(NAME, (const char *)data, size, &cfg, count_diag, &ndiag);
    if (rc >= 0) {
        CHECK(rc == ndiag);
        check_config(&cfg);
    } else {
        CHECK(rc == -ENOMEM);
    }
    config_free(&cfg);

    if (size < 512)
        fuzz_parsers(data, size);
    return 0;
}
