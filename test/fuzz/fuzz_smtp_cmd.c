/*
 * fuzz_smtp_cmd.c - libFuzzer target: one SMTP command line (without CRLF)
 * through smtp_cmd_parse and then the parser the session would call for its
 * verb. Checks the invariants of include/sluice/smtp_parse.h, not only the
 * absence of crashes: arg inside the line, paths NUL-terminated and
 * consistent, bad pointers inside the argument.
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
    CHECK(p->addr[p->len] == '\0');
    CHECK(strlen(p->addr) == p->len);
    CHECK(p->at <= p->len);
    if (p->at < p->len)
        CHECK(p->addr[p->at] == '@' && p->at <= SMTP_LOCAL_MAX);
    if (p->is_null)
        CHECK(p->len == 0);
    bool hi = false;
    for (size_t i = 0; i < p->len; i++) {
        unsigned char c = (unsigned char)p->addr[i];
        CHECK(c > 0x20 || (c == 0x20 && p->addr[0] == '"'));
        CHECK(c != 0x7f);
        hi |= c >= 0x80;
    }
    /* Source routes are dropped, so the flag may be set by them alone. */
    if (hi)
        CHECK(p->non_ascii);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy: ASan sees any read past the end. */
    char *line = malloc(size ? size : 1);
    if (!line)
        return 0;
    memcpy(line, data, size);

    smtp_cmd cmd;
    smtp_perr r = smtp_cmd_parse(line, size, &cmd);
    CHECK(r == SMTP_POK || r == SMTP_PERR_SYNTAX);
    if (r == SMTP_POK && size > 0) {
        CHECK(cmd.arg >= line && cmd.arg_len <= size);
        CHECK((size_t)(cmd.arg - line) + cmd.arg_len <= size);
        if (cmd.arg_len > 0)
            CHECK(cmd.arg[0] != ' ' && cmd.arg[cmd.arg_len - 1] != ' ');
    }

    if (r == SMTP_POK) {
        const char *bad = NULL;
        switch (cmd.verb) {
        case SMTP_VERB_MAIL: {
            smtp_mail_args m;
            r = smtp_mail_args_parse(cmd.arg, cmd.arg_len, &m, &bad);
            if (r == SMTP_POK) {
                check_path(&m.from);
                CHECK(!m.from.non_ascii || m.smtputf8);
                CHECK(strlen(m.envid) <= SMTP_ENVID_MAX);
                CHECK(smtp_xtext_valid(m.envid, strlen(m.envid)));
                char dec[SMTP_ENVID_MAX + 1];
                CHECK(smtp_xtext_decode(m.envid, strlen(m.envid), dec, sizeof dec) >= 0);
            } else {
                CHECK(bad >= cmd.arg && bad <= cmd.arg + cmd.arg_len);
            }
            break;
        }
        case SMTP_VERB_RCPT: {
            smtp_rcpt_args a;
            r = smtp_rcpt_args_parse(cmd.arg, cmd.arg_len, size & 1, &a, &bad);
            if (r == SMTP_POK) {
                check_path(&a.to);
                CHECK(!a.to.is_null);
                CHECK(a.notify == 0 || a.notify == SMTP_NOTIFY_NEVER ||
                      (a.notify & SMTP_NOTIFY_NEVER) == 0);
                CHECK(strlen(a.orcpt) <= SMTP_ORCPT_MAX);
                CHECK(a.orcpt[0] == '\0' || strchr(a.orcpt, ';') != NULL);
            } else {
                CHECK(bad >= cmd.arg && bad <= cmd.arg + cmd.arg_len);
            }
            break;
        }
        case SMTP_VERB_BDAT: {
            uint64_t n;
            bool last;
            (void)smtp_bdat_args_parse(cmd.arg, cmd.arg_len, &n, &last);
            break;
        }
        case SMTP_VERB_HELO:
        case SMTP_VERB_EHLO:
            if (smtp_helo_parse(cmd.arg, cmd.arg_len) == SMTP_POK)
                CHECK(memchr(cmd.arg, '\0', cmd.arg_len) == NULL);
            break;
        default: {
            /* Exercise the xtext decoder on whatever argument there is. */
            char out[64];
            long n = smtp_xtext_decode(cmd.arg, cmd.arg_len, out, sizeof out);
            CHECK(n < (long)sizeof out);
            if (n >= 0)
                CHECK(smtp_xtext_valid(cmd.arg, cmd.arg_len) && out[n] == '\0');
            break;
        }
        }
    }
    free(line);
    return 0;
}
