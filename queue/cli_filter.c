/*
 * cli_filter.c - the pure parts of queue selection: durations, the state
 * of a message as `--state` names it, address patterns, the filter that
 * `queue list`, `stats` and the changing commands share, and a UTF-8
 * cleaner for JSON output. No I/O besides the option error messages.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sluice/cli.h"

int cli_parse_duration(const char *s, int64_t *secs)
{
    int64_t total = 0;
    const char *p = s;
    bool first = true;

    if (!s || !*s)
        return -EINVAL;
    while (*p) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        int64_t n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n > (INT64_MAX - 9) / 10)
                return -EINVAL;
            n = n * 10 + (*p++ - '0');
        }
        int64_t mul;
        switch (*p) {
        case '\0':
            /* A bare number is seconds, but only on its own: "1h30" is a typo. */
            if (!first)
                return -EINVAL;
            mul = 1;
            break;
        case 's':
            mul = 1;
            break;
        case 'm':
            mul = 60;
            break;
        case 'h':
            mul = 3600;
            break;
        case 'd':
            mul = 86400;
            break;
        case 'w':
            mul = 7 * 86400;
            break;
        default:
            return -EINVAL;
        }
        if (*p)
            p++;
        first = false;
        /* Ten thousand years is more than any queue needs; beyond is a typo. */
        if (n > 315360000000 / mul || total + n * mul > 315360000000)
            return -EINVAL;
        total += n * mul;
    }
    *secs = total;
    return 0;
}

enum cli_msg_state cli_msg_state(const envelope *e)
{
    bool open = false, deferred = false;

    if (e->hold)
        return CLI_MSG_HOLD;
    for (size_t i = 0; i < e->nrcpt; i++) {
        if (e->rcpts[i].state == RCPT_PENDING)
            open = true;
        else if (e->rcpts[i].state == RCPT_DEFERRED)
            open = deferred = true;
    }
    if (deferred)
        return CLI_MSG_DEFERRED;
    return open ? CLI_MSG_PENDING : CLI_MSG_DONE;
}

static const char *const state_names[] = {"pending", "deferred", "hold", "done"};

const char *cli_msg_state_name(enum cli_msg_state s)
{
    return (unsigned)s < 4 ? state_names[s] : "unknown";
}

int cli_msg_state_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    if (strcmp(s, "held") == 0)
        return CLI_MSG_HOLD;
    return -1;
}

/* Whether domain d equals pattern domain p or is below it (any case). */
static bool domain_match(const char *p, const char *d)
{
    size_t pl = strlen(p), dl = strlen(d);
    if (pl == 0)
        return false;
    if (dl == pl)
        return strcasecmp(p, d) == 0;
    return dl > pl && d[dl - pl - 1] == '.' && strcasecmp(d + dl - pl, p) == 0;
}

bool cli_addr_match(const char *pattern, const char *addr)
{
    if (!pattern || !addr)
        return false;
    if (strcmp(pattern, "<>") == 0 || pattern[0] == '\0')
        return addr[0] == '\0';
    const char *at = strrchr(pattern, '@');
    if (at && at != pattern)
        return strcasecmp(pattern, addr) == 0;
    const char *dom = at ? at + 1 : pattern;
    const char *aat = strrchr(addr, '@');
    return aat && domain_match(dom, aat + 1);
}

void cli_filter_init(cli_filter *f)
{
    memset(f, 0, sizeof(*f));
    f->state = -1;
    f->older_than = -1;
}

bool cli_filter_active(const cli_filter *f)
{
    return f->sender || f->rcpt || f->state >= 0 || f->older_than >= 0;
}

bool cli_filter_match(const cli_filter *f, const envelope *e, int64_t now_us)
{
    if (f->state >= 0 && (int)cli_msg_state(e) != f->state)
        return false;
    if (f->older_than >= 0 && now_us - e->arrival_us < f->older_than * 1000000)
        return false;
    if (f->sender && !cli_addr_match(f->sender, e->sender ? e->sender : ""))
        return false;
    if (f->rcpt) {
        bool any = false;
        for (size_t i = 0; i < e->nrcpt && !any; i++)
            any = cli_addr_match(f->rcpt, e->rcpts[i].addr);
        if (!any)
            return false;
    }
    return true;
}

/* Matches "--name VALUE" or "--name=VALUE"; *val points at VALUE. */
static int take(const char *name, int argc, char **argv, int *i, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        (*i)++;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sluice: %s needs a value\n", name);
        return -1;
    }
    *val = argv[*i + 1];
    *i += 2;
    return 1;
}

int cli_filter_option(cli_filter *f, int argc, char **argv, int *i)
{
    const char *v = NULL;
    int rc;

    if ((rc = take("--sender", argc, argv, i, &v)) != 0) {
        f->sender = v;
        return rc;
    }
    if ((rc = take("--rcpt", argc, argv, i, &v)) != 0) {
        f->rcpt = v;
        return rc;
    }
    if ((rc = take("--state", argc, argv, i, &v)) != 0) {
        if (rc < 0)
            return rc;
        if ((f->state = cli_msg_state_parse(v)) < 0) {
            fprintf(stderr, "sluice: --state: unknown state '%s' (pending, deferred, hold, done)\n",
                    v);
            return -1;
        }
        return 1;
    }
    if ((rc = take("--older-than", argc, argv, i, &v)) != 0) {
        if (rc < 0)
            return rc;
        if (cli_parse_duration(v, &f->older_than) != 0) {
            fprintf(stderr,
                    "sluice: --older-than: bad duration '%s' (e.g. 90s, 15m, 4h, 2d, 1h30m)\n", v);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min, cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int cli_utf8_clean(const char *s, sbuf *out)
{
    const unsigned char *p = (const unsigned char *)s;
    int rc = 0;

    sbuf_reset(out);
    while (*p && rc == 0) {
        size_t n = utf8_seq(p);
        if (n) {
            rc = sbuf_append(out, p, n);
            p += n;
        } else {
            rc = sbuf_append(out, "\xef\xbf\xbd", 3);
            p++;
        }
    }
    if (rc == 0 && !out->data)
        rc = sbuf_append(out, "", 0);
    return rc;
}
