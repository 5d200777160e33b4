/*
 * envelope.c - the envelope in memory and its serialiser (pure code; the
 * parser is envelope_parse.c). See include/sluice/envelope.h for the format.
 *
 * The serialiser validates before it writes: everything it accepts, the
 * parser accepts and reads back equal (the fuzz target checks exactly that).
 * So a bug elsewhere (a negative retry time, an unknown NOTIFY bit) fails the
 * write with -EINVAL instead of producing a file that would be quarantined
 * at the next load.
 */
#include "sluice/envelope.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "envelope_keys.h"
#include "sluice/queue_id.h"
#include "sluice/smtp_parse.h"

const struct env_key_info env_keys[EK_COUNT] = {
    [EK_ID] = {"id", true},
    [EK_ARRIVAL] = {"arrival", true},
    [EK_SIZE] = {"size", true},
    [EK_CRC32] = {"crc32", true},
    [EK_SENDER] = {"sender", true},
    [EK_HELO] = {"helo", false},
    [EK_CLIENT_ADDR] = {"client-addr", false},
    [EK_CLIENT_NAME] = {"client-name", false},
    [EK_PROTO] = {"proto", false},
    [EK_AUTH] = {"auth", false},
    [EK_ENVID] = {"envid", false},
    [EK_RET] = {"ret", false},
    [EK_BODY] = {"body", false},
    [EK_SMTPUTF8] = {"smtputf8", true},
    [EK_HOLD] = {"hold", true},
    [EK_DELAY_WARNED] = {"delay-warned", true},
    [EK_SPF] = {"spf", false},
    [EK_RCPT] = {"rcpt", true},
    [EK_RCPT_ORCPT] = {"rcpt-orcpt", false},
    [EK_RCPT_NOTIFY] = {"rcpt-notify", false},
    [EK_RCPT_STATE] = {"rcpt-state", true},
    [EK_RCPT_ATTEMPTS] = {"rcpt-attempts", true},
    [EK_RCPT_NEXT_ATTEMPT] = {"rcpt-next-attempt", true},
    [EK_RCPT_LAST_ATTEMPT] = {"rcpt-last-attempt", true},
    [EK_RCPT_LAST_REPLY] = {"rcpt-last-reply", false},
    [EK_RCPT_RELAY] = {"rcpt-relay", false},
    [EK_RCPT_DSN_STATUS] = {"rcpt-dsn-status", false},
    [EK_RCPT_DSN_SENT] = {"rcpt-dsn-sent", true},
};

void envelope_init(envelope *e)
{
    memset(e, 0, sizeof(*e));
}

static void rcpt_free(env_rcpt *r)
{
    free(r->addr);
    free(r->orcpt);
    free(r->last_reply);
    free(r->relay);
    free(r->dsn_status);
}

void envelope_free(envelope *e)
{
    free(e->sender);
    free(e->helo);
    free(e->client_addr);
    free(e->client_name);
    free(e->proto);
    free(e->auth_id);
    free(e->envid);
    free(e->spf);
    for (size_t i = 0; i < e->nrcpt; i++)
        rcpt_free(&e->rcpts[i]);
    free(e->rcpts);
    envelope_init(e);
}

int envelope_set(char **field, const char *value)
{
    char *copy = NULL;

    if (value) {
        copy = strdup(value);
        if (!copy)
            return -ENOMEM;
    }
    free(*field);
    *field = copy;
    return 0;
}

int envelope_add_rcpt(envelope *e, const char *addr, const char *orcpt, unsigned notify)
{
    if (!addr)
        return -EINVAL;
    if (e->nrcpt >= ENVELOPE_MAX_RCPTS)
        return -E2BIG;
    if (e->nrcpt == e->rcpt_cap) {
        size_t cap = e->rcpt_cap ? e->rcpt_cap * 2 : 4;
        if (cap > ENVELOPE_MAX_RCPTS)
            cap = ENVELOPE_MAX_RCPTS;
        env_rcpt *r = realloc(e->rcpts, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        e->rcpts = r;
        e->rcpt_cap = cap;
    }
    env_rcpt *r = &e->rcpts[e->nrcpt];
    memset(r, 0, sizeof(*r));
    r->notify = notify;
    if (envelope_set(&r->addr, addr) || envelope_set(&r->orcpt, orcpt)) {
        rcpt_free(r);
        return -ENOMEM;
    }
    e->nrcpt++;
    return 0;
}

const char *rcpt_state_name(enum rcpt_state s)
{
    switch (s) {
    case RCPT_PENDING:
        return "pending";
    case RCPT_DEFERRED:
        return "deferred";
    case RCPT_DELIVERED:
        return "delivered";
    case RCPT_FAILED:
        return "failed";
    }
    return "unknown";
}

bool envelope_all_final(const envelope *e)
{
    for (size_t i = 0; i < e->nrcpt; i++)
        if (e->rcpts[i].state != RCPT_DELIVERED && e->rcpts[i].state != RCPT_FAILED)
            return false;
    return true;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool envelope_equal(const envelope *a, const envelope *b)
{
    if (strcmp(a->id, b->id) || a->arrival_us != b->arrival_us || a->size != b->size ||
        a->crc32 != b->crc32 || !str_eq(a->sender, b->sender) || !str_eq(a->helo, b->helo) ||
        !str_eq(a->client_addr, b->client_addr) || !str_eq(a->client_name, b->client_name) ||
        !str_eq(a->proto, b->proto) || !str_eq(a->auth_id, b->auth_id) ||
        !str_eq(a->envid, b->envid) || a->ret != b->ret || a->body != b->body ||
        a->smtputf8 != b->smtputf8 || a->hold != b->hold || a->delay_warned != b->delay_warned ||
        !str_eq(a->spf, b->spf) || a->nrcpt != b->nrcpt)
        return false;
    for (size_t i = 0; i < a->nrcpt; i++) {
        const env_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];
        if (!str_eq(x->addr, y->addr) || !str_eq(x->orcpt, y->orcpt) || x->notify != y->notify ||
            x->state != y->state || x->attempts != y->attempts ||
            x->next_attempt != y->next_attempt || x->last_attempt != y->last_attempt ||
            !str_eq(x->last_reply, y->last_reply) || !str_eq(x->relay, y->relay) ||
            !str_eq(x->dsn_status, y->dsn_status) || x->dsn_sent != y->dsn_sent)
            return false;
    }
    return true;
}

/* ---- time ---- */

/* Howard Hinnant's days_from_civil / civil_from_days: exact, no locale, no
 * TZ, thread-safe (gmtime_r and timegm would consult the environment). */
static int64_t env_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void env_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void envelope_format_time(int64_t us, char *out, size_t outsz)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    env_civil_from_days(days, &y, &m, &d);
    snprintf(out, outsz, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u.%06uZ", y, m, d,
             (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60),
             (unsigned)frac);
}

static bool env_digits(const char *s, size_t n, unsigned *v)
{
    unsigned x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (unsigned)(s[i] - '0');
    }
    *v = x;
    return true;
}

int envelope_parse_time(const char *s, size_t len, int64_t *us)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, d, h, mi, sec, frac;

    /* Exactly "YYYY-MM-DDTHH:MM:SS.uuuuuuZ": one spelling per instant, so
     * parse then format gives back the same bytes. */
    if (len != ENVELOPE_TIME_LEN || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[26] != 'Z')
        return -EINVAL;
    if (!env_digits(s, 4, &y) || !env_digits(s + 5, 2, &mo) || !env_digits(s + 8, 2, &d) ||
        !env_digits(s + 11, 2, &h) || !env_digits(s + 14, 2, &mi) || !env_digits(s + 17, 2, &sec) ||
        !env_digits(s + 20, 6, &frac))
        return -EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return -EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -EINVAL;
    int64_t days = env_days_from_civil(y, mo, d);
    *us = ((days * 86400) + h * 3600 + mi * 60 + sec) * INT64_C(1000000) + frac;
    return 0;
}

/* ---- serialiser ---- */

bool env_notify_valid(unsigned notify)
{
    const unsigned all =
        SMTP_NOTIFY_NEVER | SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    if (notify & ~all)
        return false;
    /* RFC 3461 4.1: NEVER stands alone. */
    return !(notify & SMTP_NOTIFY_NEVER) || notify == SMTP_NOTIFY_NEVER;
}

static int put_line(sbuf *out, enum env_key k, const char *value, size_t max)
{
    size_t n = strlen(value);
    int rc;

    if (n > max) {
        if (k != EK_RCPT_LAST_REPLY)
            return -EINVAL;
        /* A remote reply is free text of any length: keep its head, cut on
         * a UTF-8 character boundary so the file stays valid UTF-8. */
        n = max;
        while (n > 0 && ((unsigned char)value[n] & 0xc0) == 0x80)
            n--;
    }
    if ((rc = sbuf_puts(out, env_keys[k].name)) != 0)
        return rc;
    if (n == 0)
        return sbuf_append(out, ":\n", 2);
    if ((rc = sbuf_append(out, ": ", 2)) != 0)
        return rc;
    size_t at = out->len;
    if ((rc = sbuf_append(out, value, n)) != 0)
        return rc;
    /* One value, one line: a CR or LF in free text (a multi-line reply)
     * would otherwise start a forged key. */
    for (size_t i = at; i < out->len; i++) {
        unsigned char c = (unsigned char)out->data[i];
        if (c < 0x20 || c == 0x7f)
            out->data[i] = ' ';
    }
    return sbuf_append(out, "\n", 1);
}

static int put_str(sbuf *out, enum env_key k, const char *value)
{
    if (!value)
        return 0; /* optional key, omitted */
    return put_line(out, k, value,
                    k == EK_RCPT_LAST_REPLY ? ENVELOPE_MAX_REPLY : ENVELOPE_MAX_VALUE);
}

static int put_bool(sbuf *out, enum env_key k, bool v)
{
    return put_line(out, k, v ? "yes" : "no", ENVELOPE_MAX_VALUE);
}

static int put_num(sbuf *out, enum env_key k, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%" PRIu64, v);
    return put_line(out, k, num, ENVELOPE_MAX_VALUE);
}

static int put_notify(sbuf *out, unsigned notify)
{
    char list[32] = "";

    if (notify == 0)
        return 0;
    if (notify == SMTP_NOTIFY_NEVER)
        return put_line(out, EK_RCPT_NOTIFY, "NEVER", ENVELOPE_MAX_VALUE);
    /* Canonical order, so parse(serialize(e)) is byte-stable. */
    if (notify & SMTP_NOTIFY_SUCCESS)
        strcat(list, ",SUCCESS");
    if (notify & SMTP_NOTIFY_FAILURE)
        strcat(list, ",FAILURE");
    if (notify & SMTP_NOTIFY_DELAY)
        strcat(list, ",DELAY");
    return put_line(out, EK_RCPT_NOTIFY, list + 1, ENVELOPE_MAX_VALUE);
}

static bool rcpt_serializable(const env_rcpt *r)
{
    return r->addr && r->addr[0] && env_notify_valid(r->notify) &&
           (unsigned)r->state <= RCPT_FAILED && r->next_attempt >= 0 && r->last_attempt >= 0;
}

static int envelope_check(const envelope *e)
{
    if (!queue_id_valid(e->id, strnlen(e->id, sizeof(e->id))))
        return -EINVAL;
    if (e->arrival_us < 0 || e->arrival_us > ENVELOPE_TIME_MAX)
        return -EINVAL;
    if (e->ret < SMTP_RET_NONE || e->ret > SMTP_RET_HDRS || e->body < SMTP_BODY_NONE ||
        e->body > SMTP_BODY_BINARYMIME)
        return -EINVAL;
    if (e->nrcpt > ENVELOPE_MAX_RCPTS)
        return -E2BIG;
    for (size_t i = 0; i < e->nrcpt; i++)
        if (!rcpt_serializable(&e->rcpts[i]))
            return -EINVAL;
    return 0;
}

static int serialize_body(const envelope *e, sbuf *out, size_t start)
{
    static const char *const rets[] = {NULL, "FULL", "HDRS"};
    static const char *const bodies[] = {NULL, "7BIT", "8BITMIME", "BINARYMIME"};
    char when[40], crc[12];
    int rc = 0;

#define PUT(expr)                                                                                  \
    do {                                                                                           \
        if ((rc = (expr)) != 0)                                                                    \
            return rc;                                                                             \
    } while (0)

    PUT(sbuf_printf(out, "%s %d\n", ENVELOPE_MAGIC, ENVELOPE_VERSION));
    PUT(put_line(out, EK_ID, e->id, ENVELOPE_MAX_VALUE));
    envelope_format_time(e->arrival_us, when, sizeof(when));
    PUT(put_line(out, EK_ARRIVAL, when, ENVELOPE_MAX_VALUE));
    PUT(put_num(out, EK_SIZE, e->size));
    snprintf(crc, sizeof(crc), "%08" PRIx32, e->crc32);
    PUT(put_line(out, EK_CRC32, crc, ENVELOPE_MAX_VALUE));
    PUT(put_line(out, EK_SENDER, e->sender ? e->sender : "", ENVELOPE_MAX_VALUE));
    PUT(put_str(out, EK_HELO, e->helo));
    PUT(put_str(out, EK_CLIENT_ADDR, e->client_addr));
    PUT(put_str(out, EK_CLIENT_NAME, e->client_name));
    PUT(put_str(out, EK_PROTO, e->proto));
    PUT(put_str(out, EK_AUTH, e->auth_id));
    PUT(put_str(out, EK_ENVID, e->envid));
    PUT(put_str(out, EK_RET, rets[e->ret]));
    PUT(put_str(out, EK_BODY, bodies[e->body]));
    PUT(put_bool(out, EK_SMTPUTF8, e->smtputf8));
    PUT(put_bool(out, EK_HOLD, e->hold));
    PUT(put_bool(out, EK_DELAY_WARNED, e->delay_warned));
    PUT(put_str(out, EK_SPF, e->spf));
    for (size_t i = 0; i < e->nrcpt; i++) {
        const env_rcpt *r = &e->rcpts[i];
        PUT(put_str(out, EK_RCPT, r->addr));
        PUT(put_str(out, EK_RCPT_ORCPT, r->orcpt));
        PUT(put_notify(out, r->notify));
        PUT(put_str(out, EK_RCPT_STATE, rcpt_state_name(r->state)));
        PUT(put_num(out, EK_RCPT_ATTEMPTS, r->attempts));
        PUT(put_num(out, EK_RCPT_NEXT_ATTEMPT, (uint64_t)r->next_attempt));
        PUT(put_num(out, EK_RCPT_LAST_ATTEMPT, (uint64_t)r->last_attempt));
        PUT(put_str(out, EK_RCPT_LAST_REPLY, r->last_reply));
        PUT(put_str(out, EK_RCPT_RELAY, r->relay));
        PUT(put_str(out, EK_RCPT_DSN_STATUS, r->dsn_status));
        PUT(put_bool(out, EK_RCPT_DSN_SENT, r->dsn_sent));
        /* Checked per recipient so 100,000 long addresses fail early. */
        if (out->len - start > ENVELOPE_MAX_SIZE)
            return -EFBIG;
    }
#undef PUT
    return 0;
}

int envelope_serialize(const envelope *e, sbuf *out)
{
    size_t start = out->len;
    int rc = envelope_check(e);

    if (rc == 0)
        rc = serialize_body(e, out, start);
    if (rc == 0) {
        uLong crc = crc32(0L, (const Bytef *)out->data + start, (uInt)(out->len - start));
        rc = sbuf_printf(out, "end: %08lx\n", crc);
    }
    if (rc == 0 && out->len - start > ENVELOPE_MAX_SIZE)
        rc = -EFBIG; /* the parser would refuse it: never write such a file */
    if (rc != 0) {
        /* Leave out as it was: the caller may reuse it for a retry. */
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}
