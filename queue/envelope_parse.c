/*
 * envelope_parse.c - the strict parser of the envelope text form (pure).
 *
 * On-disk data is untrusted input (DESIGN.md): the file may be truncated by
 * a crash, altered by hand, or garbage. The parser therefore
 *   1. bounds the file (ENVELOPE_MAX_SIZE) and checks the last line
 *      "end: CRC" against the CRC-32 of all bytes before it, before it looks
 *      at anything else: a truncated or altered file fails here;
 *   2. then reads line by line, accepting exactly one spelling of every
 *      value (digits without sign or leading zeros, "yes"/"no", fixed time
 *      form), so that parse -> serialize gives back the same bytes;
 *   3. rejects unknown keys, duplicate keys, message keys inside recipient
 *      blocks, values over their bounds and control characters.
 * Errors name the line: "line 7: bad rcpt-state". The envelope is reset on
 * entry and left empty on failure, so the caller never sees half a parse.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "envelope_keys.h"
#include "sluice/envelope.h"
#include "sluice/queue_id.h"
#include "sluice/smtp_parse.h"

#define ENV_KEY_MAX 32 /* longer than any key: no need to look further */

struct env_parser {
    envelope *e;
    unsigned line;
    uint64_t seen;      /* message keys seen (bit = enum env_key) */
    uint64_t rcpt_seen; /* keys of the current recipient block */
    char *err;
    size_t errlen;
};

static int fail(struct env_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct env_parser *p, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        int n = snprintf(p->err, p->errlen, "line %u: ", p->line);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

/* Decimal without sign or leading zeros, at most max. */
static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (d > max || v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool parse_bool(const char *s, size_t n, bool *out)
{
    if (n == 3 && memcmp(s, "yes", 3) == 0)
        *out = true;
    else if (n == 2 && memcmp(s, "no", 2) == 0)
        *out = false;
    else
        return false;
    return true;
}

static bool parse_word(const char *s, size_t n, const char *const *words, size_t nwords, int *out)
{
    for (size_t i = 0; i < nwords; i++) {
        if (words[i] && strlen(words[i]) == n && memcmp(words[i], s, n) == 0) {
            *out = (int)i;
            return true;
        }
    }
    return false;
}

static bool parse_notify(const char *s, size_t n, unsigned *out)
{
    static const struct {
        const char *word;
        unsigned bit;
    } kw[] = {{"NEVER", SMTP_NOTIFY_NEVER},
              {"SUCCESS", SMTP_NOTIFY_SUCCESS},
              {"FAILURE", SMTP_NOTIFY_FAILURE},
              {"DELAY", SMTP_NOTIFY_DELAY}};
    unsigned bits = 0;
    size_t i = 0;

    if (n == 0)
        return false;
    while (i <= n) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof(kw) / sizeof(kw[0]); k++)
            if (strlen(kw[k].word) == j - i && memcmp(kw[k].word, s + i, j - i) == 0)
                bit = kw[k].bit;
        if (!bit || (bits & bit))
            return false; /* unknown, empty or repeated keyword */
        bits |= bit;
        i = j + 1;
    }
    if (!env_notify_valid(bits))
        return false;
    *out = bits;
    return true;
}

static int set_str(char **field, const char *v, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, v, n);
    copy[n] = '\0';
    free(*field);
    *field = copy;
    return 0;
}

static int check_required(struct env_parser *p, uint64_t seen, enum env_key from, enum env_key to)
{
    for (int k = from; k < (int)to; k++)
        if (env_keys[k].required && !(seen & (UINT64_C(1) << k)))
            return fail(p, "missing %s", env_keys[k].name);
    return 0;
}

static int set_message_key(struct env_parser *p, enum env_key k, const char *v, size_t n)
{
    static const char *const rets[] = {NULL, "FULL", "HDRS"};
    static const char *const bodies[] = {NULL, "7BIT", "8BITMIME", "BINARYMIME"};
    envelope *e = p->e;
    uint64_t u;
    int64_t t;

    switch (k) {
    case EK_ID:
        if (!queue_id_valid(v, n))
            return fail(p, "bad id");
        memcpy(e->id, v, n);
        e->id[n] = '\0';
        return 0;
    case EK_ARRIVAL:
        if (envelope_parse_time(v, n, &t) != 0)
            return fail(p, "bad arrival");
        e->arrival_us = t;
        return 0;
    case EK_SIZE:
        if (!parse_u64(v, n, UINT64_MAX, &u))
            return fail(p, "bad size");
        e->size = u;
        return 0;
    case EK_CRC32:
        if (n != 8)
            return fail(p, "bad crc32");
        u = 0;
        for (size_t i = 0; i < n; i++) {
            char c = v[i];
            if (c >= '0' && c <= '9')
                u = u << 4 | (uint64_t)(c - '0');
            else if (c >= 'a' && c <= 'f')
                u = u << 4 | (uint64_t)(c - 'a' + 10);
            else
                return fail(p, "bad crc32");
        }
        e->crc32 = (uint32_t)u;
        return 0;
    case EK_SENDER:
        return set_str(&e->sender, v, n);
    case EK_HELO:
        return set_str(&e->helo, v, n);
    case EK_CLIENT_ADDR:
        return set_str(&e->client_addr, v, n);
    case EK_CLIENT_NAME:
        return set_str(&e->client_name, v, n);
    case EK_PROTO:
        return set_str(&e->proto, v, n);
    case EK_AUTH:
        return set_str(&e->auth_id, v, n);
    case EK_ENVID:
        return set_str(&e->envid, v, n);
    case EK_SPF:
        return set_str(&e->spf, v, n);
    case EK_RET:
        if (!parse_word(v, n, rets, 3, &e->ret))
            return fail(p, "bad ret");
        return 0;
    case EK_BODY:
        if (!parse_word(v, n, bodies, 4, &e->body))
            return fail(p, "bad body");
        return 0;
    case EK_SMTPUTF8:
        return parse_bool(v, n, &e->smtputf8) ? 0 : fail(p, "bad smtputf8");
    case EK_HOLD:
        return parse_bool(v, n, &e->hold) ? 0 : fail(p, "bad hold");
    case EK_DELAY_WARNED:
        return parse_bool(v, n, &e->delay_warned) ? 0 : fail(p, "bad delay-warned");
    default:
        return fail(p, "internal: %s is not a message key", env_keys[k].name);
    }
}

static int set_rcpt_key(struct env_parser *p, enum env_key k, const char *v, size_t n)
{
    static const char *const states[] = {"pending", "deferred", "delivered", "failed"};
    env_rcpt *r = &p->e->rcpts[p->e->nrcpt - 1];
    uint64_t u;
    int w;

    switch (k) {
    case EK_RCPT_ORCPT:
        return set_str(&r->orcpt, v, n);
    case EK_RCPT_NOTIFY:
        return parse_notify(v, n, &r->notify) ? 0 : fail(p, "bad rcpt-notify");
    case EK_RCPT_STATE:
        if (!parse_word(v, n, states, 4, &w))
            return fail(p, "bad rcpt-state");
        r->state = (enum rcpt_state)w;
        return 0;
    case EK_RCPT_ATTEMPTS:
        if (!parse_u64(v, n, UINT_MAX, &u))
            return fail(p, "bad rcpt-attempts");
        r->attempts = (unsigned)u;
        return 0;
    case EK_RCPT_NEXT_ATTEMPT:
    case EK_RCPT_LAST_ATTEMPT:
        if (!parse_u64(v, n, INT64_MAX, &u))
            return fail(p, "bad %s", env_keys[k].name);
        *(k == EK_RCPT_NEXT_ATTEMPT ? &r->next_attempt : &r->last_attempt) = (int64_t)u;
        return 0;
    case EK_RCPT_LAST_REPLY:
        if (n > ENVELOPE_MAX_REPLY)
            return fail(p, "rcpt-last-reply too long");
        return set_str(&r->last_reply, v, n);
    case EK_RCPT_RELAY:
        return set_str(&r->relay, v, n);
    case EK_RCPT_DSN_STATUS:
        return set_str(&r->dsn_status, v, n);
    case EK_RCPT_DSN_SENT:
        return parse_bool(v, n, &r->dsn_sent) ? 0 : fail(p, "bad rcpt-dsn-sent");
    default:
        return fail(p, "internal: %s is not a recipient key", env_keys[k].name);
    }
}

static int start_rcpt(struct env_parser *p, const char *v, size_t n)
{
    int rc;

    if (p->e->nrcpt == 0)
        rc = check_required(p, p->seen, 0, EK_FIRST_RCPT);
    else
        rc = check_required(p, p->rcpt_seen, EK_FIRST_RCPT, EK_COUNT);
    if (rc)
        return rc;
    if (n == 0)
        return fail(p, "empty rcpt");
    if (p->e->nrcpt >= ENVELOPE_MAX_RCPTS)
        return fail(p, "more than %u recipients", ENVELOPE_MAX_RCPTS);
    /* envelope_add_rcpt wants a C string; the value is not one. */
    char *addr = malloc(n + 1);
    if (!addr)
        return -ENOMEM;
    memcpy(addr, v, n);
    addr[n] = '\0';
    rc = envelope_add_rcpt(p->e, addr, NULL, 0);
    free(addr);
    if (rc)
        return rc;
    p->rcpt_seen = UINT64_C(1) << EK_RCPT;
    return 0;
}

static int parse_line(struct env_parser *p, const char *s, size_t n)
{
    size_t klen = 0;

    while (klen < n && klen <= ENV_KEY_MAX && s[klen] != ':')
        klen++;
    if (klen >= n || s[klen] != ':')
        return fail(p, "not a \"key: value\" line");
    const char *v = s + klen + 1;
    size_t vlen = n - klen - 1;
    if (vlen > 0) {
        /* Exactly one space after the colon; the rest is the value as is. */
        if (v[0] != ' ' || vlen == 1)
            return fail(p, "expected \"key: value\"");
        v++;
        vlen--;
    }
    for (size_t i = 0; i < klen; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return fail(p, "bad key");
    int k = 0;
    while (k < EK_COUNT &&
           !(strlen(env_keys[k].name) == klen && !memcmp(env_keys[k].name, s, klen)))
        k++;
    if (k == EK_COUNT)
        return fail(p, "unknown key \"%.*s\"", (int)klen, s);
    if (vlen > ENVELOPE_MAX_VALUE)
        return fail(p, "%s value longer than %u bytes", env_keys[k].name, ENVELOPE_MAX_VALUE);
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f)
            return fail(p, "control character in %s", env_keys[k].name);
    }

    uint64_t bit = UINT64_C(1) << k;
    if (k == EK_RCPT)
        return start_rcpt(p, v, vlen);
    if (k > EK_RCPT) {
        if (p->e->nrcpt == 0)
            return fail(p, "%s outside a recipient block", env_keys[k].name);
        if (p->rcpt_seen & bit)
            return fail(p, "duplicate %s", env_keys[k].name);
        p->rcpt_seen |= bit;
        return set_rcpt_key(p, (enum env_key)k, v, vlen);
    }
    if (p->e->nrcpt > 0)
        return fail(p, "message key %s after the first rcpt", env_keys[k].name);
    if (p->seen & bit)
        return fail(p, "duplicate %s", env_keys[k].name);
    p->seen |= bit;
    return set_message_key(p, (enum env_key)k, v, vlen);
}

/* Checks the last line "end: xxxxxxxx" and the CRC; *body_len = bytes before it. */
static int check_end(struct env_parser *p, const char *data, size_t len, size_t *body_len)
{
    static const char tag[] = "end: ";
    const size_t endlen = sizeof(tag) - 1 + 8 + 1;

    /* Line numbers for the messages below: the last line's. */
    for (size_t i = 0; i + 1 < len; i++)
        if (data[i] == '\n')
            p->line++;
    if (len == 0 || data[len - 1] != '\n')
        return fail(p, "truncated: no end line");
    if (len < endlen || (len > endlen && data[len - endlen - 1] != '\n') ||
        memcmp(data + len - endlen, tag, sizeof(tag) - 1) != 0)
        return fail(p, "truncated: no end line");
    uint32_t want = 0;
    for (size_t i = len - 9; i < len - 1; i++) {
        char c = data[i];
        if (c >= '0' && c <= '9')
            want = want << 4 | (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            want = want << 4 | (uint32_t)(c - 'a' + 10);
        else
            return fail(p, "bad end line");
    }
    *body_len = len - endlen;
    uLong got = crc32(0L, (const Bytef *)data, (uInt)*body_len);
    if (got != want)
        return fail(p, "checksum mismatch (file altered or damaged)");
    return 0;
}

static int parse_all(struct env_parser *p, const char *data, size_t len)
{
    static const char magic[] = ENVELOPE_MAGIC " ";
    size_t body_len = 0, pos = 0;
    int rc;

    p->line = 1;
    if (len > ENVELOPE_MAX_SIZE)
        return fail(p, "file larger than %u bytes", ENVELOPE_MAX_SIZE);
    if ((rc = check_end(p, data, len, &body_len)) != 0)
        return rc;

    p->line = 0;
    while (pos < body_len) {
        const char *nl = memchr(data + pos, '\n', body_len - pos);
        size_t n = (size_t)(nl - (data + pos)); /* nl != NULL: body ends in '\n' */
        const char *s = data + pos;
        p->line++;
        pos += n + 1;
        if (p->line == 1) {
            if (n < sizeof(magic) - 1 || memcmp(s, magic, sizeof(magic) - 1) != 0)
                return fail(p, "not a sluice envelope");
            uint64_t version;
            if (!parse_u64(s + sizeof(magic) - 1, n - (sizeof(magic) - 1), 1000000, &version))
                return fail(p, "bad version line");
            if (version != ENVELOPE_VERSION)
                return fail(p, "unsupported version %llu", (unsigned long long)version);
            continue;
        }
        if ((rc = parse_line(p, s, n)) != 0)
            return rc;
    }
    if (p->line == 0)
        return fail(p, "not a sluice envelope");
    p->line++; /* the end line: report what is missing there */
    if (p->e->nrcpt == 0)
        return check_required(p, p->seen, 0, EK_FIRST_RCPT);
    return check_required(p, p->rcpt_seen, EK_FIRST_RCPT, EK_COUNT);
}

int envelope_parse(const char *data, size_t len, envelope *e, char *err, size_t errlen)
{
    struct env_parser p = {.e = e, .err = err, .errlen = errlen};

    envelope_free(e);
    if (err && errlen)
        err[0] = '\0';
    if (!data && len)
        return -EINVAL;
    int rc = parse_all(&p, data ? data : "", len);
    if (rc != 0) {
        if (rc == -ENOMEM && err && errlen)
            snprintf(err, errlen, "line %u: out of memory", p.line);
        envelope_free(e);
    }
    return rc;
}
