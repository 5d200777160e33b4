/*
 * fuzz_smtp_path.c - libFuzzer target for smtp_path_parse and the MAIL/RCPT
 * argument parsers. The first input byte picks the mode (allow_null, the
 * RCPT smtputf8 flag); the rest is the path text. Beyond memory safety it
 * checks that every accepted path has exactly one reading: "<" addr ">"
 * parses back to the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/smtp_parse.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_path(const smtp_path *p)
{
    CHECK(p->len <= SMTP_PATH_MAX - 2);
    CHECK(p->addr[p->len] == '\0' && strlen(p->addr) == p->len);
    CHECK(p->at <= p->len);
    if (p->is_null) {
        CHECK(p->len == 0 && p->at == 0);
        return;
    }
    CHECK(p->len > 0);
    if (p->at < p->len) {
        CHECK(p->addr[p->at] == '@');
        CHECK(p->at <= SMTP_LOCAL_MAX);
        CHECK(p->len - p->at - 1 <= SMTP_DOMAIN_MAX);
        CHECK(p->ip_literal == (p->addr[p->at + 1] == '['));
    } else {
        CHECK(p->len == 10 && !p->ip_literal); /* postmaster */
    }
    for (size_t i = 0; i < p->len; i++) {
        unsigned char c = (unsigned char)p->addr[i];
        CHECK(c >= 0x20 && c != 0x7f);
        if (c == ' ')
            CHECK(p->addr[0] == '"' && i < p->at);
        if (c >= 0x80)
            CHECK(p->non_ascii);
    }
    /* Unquoted local parts and all domains hold at most one '@'. */
    if (p->addr[0] != '"')
        CHECK(memchr(p->addr, '@', p->at) == NULL);
    CHECK(p->at == p->len || memchr(p->addr + p->at + 1, '@', p->len - p->at - 1) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);

    bool allow_null = mode & 1;
    smtp_path p;
    size_t used = 12345;
    smtp_perr r = smtp_path_parse(s, size, allow_null, &p, &used);
    if (r == SMTP_POK) {
        check_path(&p);
        CHECK(used <= size && used <= SMTP_PATH_MAX);
        CHECK(!p.is_null || used == 2);
        CHECK(s[0] == '<' && s[used - 1] == '>');
        if (!p.is_null) {
            /* Round trip: the mailbox alone in brackets means the same. */
            char again[SMTP_PATH_MAX];
            again[0] = '<';
            memcpy(again + 1, p.addr, p.len);
            again[p.len + 1] = '>';
            smtp_path q;
            size_t used2;
            CHECK(smtp_path_parse(again, p.len + 2, allow_null, &q, &used2) == SMTP_POK);
            CHECK(used2 == p.len + 2 && q.len == p.len && q.at == p.at);
            CHECK(memcmp(q.addr, p.addr, p.len) == 0);
            CHECK(q.ip_literal == p.ip_literal);
            CHECK(!q.non_ascii || p.non_ascii);
        }
        /* Accepting as RCPT implies accepting as MAIL except for Postmaster,
         * and vice versa except for "<>". */
        smtp_path o;
        size_t used3;
        smtp_perr r2 = smtp_path_parse(s, size, !allow_null, &o, &used3);
        if (p.is_null || (p.at == p.len && !p.is_null))
            CHECK(r2 != SMTP_POK);
        else
            CHECK(r2 == SMTP_POK && used3 == used && strcmp(o.addr, p.addr) == 0);
    } else {
        CHECK(used == 0 && p.addr[0] == '\0');
        CHECK(r == SMTP_PERR_ADDR_SYNTAX || r == SMTP_PERR_ADDR_TOO_LONG);
    }

    const char *bad = NULL;
    if (allow_null) {
        smtp_mail_args m;
        r = smtp_mail_args_parse(s, size, &m, &bad);
        if (r == SMTP_POK)
            check_path(&m.from);
        else
            CHECK(bad >= s && bad <= s + size);
    } else {
        smtp_rcpt_args a;
        r = smtp_rcpt_args_parse(s, size, (mode & 2) != 0, &a, &bad);
        if (r == SMTP_POK) {
            check_path(&a.to);
            CHECK(!a.to.non_ascii || (mode & 2));
        } else {
            CHECK(bad >= s && bad <= s + size);
        }
    }
    free(s);
    return 0;
}
