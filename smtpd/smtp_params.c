/*
 * smtp_params.c - the argument of MAIL FROM: and RCPT TO: after the verb:
 * a path (smtp_path.c) and ESMTP parameters (RFC 5321 4.1.2 Mail-parameters
 * / Rcpt-parameters). Public entries: smtp_mail_args_parse(),
 * smtp_rcpt_args_parse() (see include/sluice/smtp_parse.h).
 *
 * Pure: no allocation, no I/O, no global state; never reads past len.
 *
 * Known parameters, and nothing else (an unknown one is 555 5.5.4 per RFC
 * 5321 4.1.1.11, so a client never believes we honoured it):
 *   MAIL: SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531),
 *         RET and ENVID (RFC 3461), AUTH (RFC 4954 5)
 *   RCPT: NOTIFY and ORCPT (RFC 3461)
 * Errors are reported in the order the parameters appear; the SMTPUTF8
 * check on the path comes last because SMTPUTF8 may follow it anywhere.
 */
#include "sluice/smtp_parse.h"

#include <string.h>

static unsigned char up(unsigned char c)
{
    return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

/* s[0..n) equals the upper-case literal lit, ignoring ASCII case. */
static bool ieq_lit(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n != l)
        return false;
    for (size_t i = 0; i < n; i++)
        if (up((unsigned char)s[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

static bool is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 5322 atext (RFC 3461 addr-type is an RFC 822 atom: the same set). */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool parse_u64(const char *s, size_t len, uint64_t *v)
{
    if (len == 0)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *v = n;
    return true;
}

/* One esmtp-param split into keyword and value (value NULL when no '='). */
typedef struct param {
    const char *start;
    const char *kw;
    size_t kwlen;
    const char *val;
    size_t vallen;
} param;

/*
 * Splits arg into the path and its parameters, calling handle() for each
 * parameter in order. Shared by MAIL and RCPT.
 */
typedef smtp_perr (*param_fn)(void *ctx, const param *pm);

static smtp_perr parse_args(const char *arg, size_t len, bool allow_null, smtp_path *path,
                            param_fn handle, void *ctx, const char **bad)
{
    size_t used = 0;
    smtp_perr r = smtp_path_parse(arg, len, allow_null, path, &used);
    if (r != SMTP_POK) {
        if (bad)
            *bad = arg;
        return r;
    }
    size_t p = used;
    /* Mail-parameters are separated from the path by SP: "<a@b>SIZE=1" is a
     * broken line, not a path followed by a parameter. */
    if (p < len && arg[p] != ' ') {
        if (bad)
            *bad = arg + p;
        return SMTP_PERR_SYNTAX;
    }
    for (;;) {
        while (p < len && arg[p] == ' ')
            p++;
        if (p >= len)
            break;
        size_t s = p;
        while (p < len && arg[p] != ' ')
            p++;
        param pm = {.start = arg + s, .kw = arg + s, .kwlen = 0, .val = NULL, .vallen = 0};
        const char *eq = memchr(arg + s, '=', p - s);
        pm.kwlen = eq ? (size_t)(eq - (arg + s)) : p - s;
        if (eq) {
            pm.val = eq + 1;
            pm.vallen = (size_t)(arg + p - pm.val);
        }
        /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
        bool ok = pm.kwlen > 0 && is_alnum((unsigned char)pm.kw[0]);
        for (size_t i = 1; ok && i < pm.kwlen; i++)
            ok = is_alnum((unsigned char)pm.kw[i]) || pm.kw[i] == '-';
        /* esmtp-value = 1*(%d33-60 / %d62-126): no '=', no controls. The
         * UTF-8 extension of RFC 6531 does not matter: no value we know may
         * contain it. */
        if (ok && eq) {
            ok = pm.vallen > 0;
            for (size_t i = 0; ok && i < pm.vallen; i++) {
                unsigned char c = (unsigned char)pm.val[i];
                ok = c >= 33 && c <= 126 && c != '=';
            }
        }
        r = ok ? handle(ctx, &pm) : SMTP_PERR_PARAM_SYNTAX;
        if (r != SMTP_POK) {
            if (bad)
                *bad = pm.start;
            return r;
        }
    }
    return SMTP_POK;
}

enum {
    SEEN_SIZE = 1u << 0,
    SEEN_BODY = 1u << 1,
    SEEN_SMTPUTF8 = 1u << 2,
    SEEN_RET = 1u << 3,
    SEEN_ENVID = 1u << 4,
    SEEN_AUTH = 1u << 5,
    SEEN_NOTIFY = 1u << 6,
    SEEN_ORCPT = 1u << 7,
};

/* Marks bit seen; PARAM_DUP when it already was. */
static smtp_perr once(unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return SMTP_PERR_PARAM_DUP;
    *seen |= bit;
    return SMTP_POK;
}

typedef struct mail_ctx {
    smtp_mail_args *out;
    unsigned seen;
} mail_ctx;

static smtp_perr mail_param(void *vctx, const param *pm)
{
    mail_ctx *ctx = vctx;
    smtp_mail_args *out = ctx->out;
    const char *v = pm->val;
    size_t vl = pm->vallen;

    if (ieq_lit(pm->kw, pm->kwlen, "SIZE")) {
        if (once(&ctx->seen, SEEN_SIZE) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        /* RFC 1870: size-value = 1*20DIGIT; "fits 64 bits" is our bound. */
        if (!v || !parse_u64(v, vl, &out->size))
            return SMTP_PERR_PARAM_SYNTAX;
        out->has_size = true;
    } else if (ieq_lit(pm->kw, pm->kwlen, "BODY")) {
        if (once(&ctx->seen, SEEN_BODY) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        if (v && ieq_lit(v, vl, "7BIT"))
            out->body = SMTP_BODY_7BIT;
        else if (v && ieq_lit(v, vl, "8BITMIME"))
            out->body = SMTP_BODY_8BITMIME;
        else if (v && ieq_lit(v, vl, "BINARYMIME"))
            out->body = SMTP_BODY_BINARYMIME;
        else
            return SMTP_PERR_PARAM_SYNTAX;
    } else if (ieq_lit(pm->kw, pm->kwlen, "SMTPUTF8")) {
        if (once(&ctx->seen, SEEN_SMTPUTF8) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        if (v) /* RFC 6531 3.4: takes no value */
            return SMTP_PERR_PARAM_SYNTAX;
        out->smtputf8 = true;
    } else if (ieq_lit(pm->kw, pm->kwlen, "RET")) {
        if (once(&ctx->seen, SEEN_RET) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        if (v && ieq_lit(v, vl, "FULL"))
            out->ret = SMTP_RET_FULL;
        else if (v && ieq_lit(v, vl, "HDRS"))
            out->ret = SMTP_RET_HDRS;
        else
            return SMTP_PERR_PARAM_SYNTAX;
    } else if (ieq_lit(pm->kw, pm->kwlen, "ENVID")) {
        if (once(&ctx->seen, SEEN_ENVID) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        /* RFC 3461 4.4: at most 100 characters, counted as sent (encoded). */
        if (!v || vl > SMTP_ENVID_MAX || !smtp_xtext_valid(v, vl))
            return SMTP_PERR_PARAM_SYNTAX;
        memcpy(out->envid, v, vl);
        out->envid[vl] = '\0';
    } else if (ieq_lit(pm->kw, pm->kwlen, "AUTH")) {
        if (once(&ctx->seen, SEEN_AUTH) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        /* RFC 4954 5: "AUTH=" (xtext / "<>"), the xtext an encoded mailbox:
         * bounded by what fits out->auth. */
        if (!v || vl > sizeof out->auth - 1)
            return SMTP_PERR_PARAM_SYNTAX;
        if (!(vl == 2 && v[0] == '<' && v[1] == '>') && !smtp_xtext_valid(v, vl))
            return SMTP_PERR_PARAM_SYNTAX;
        memcpy(out->auth, v, vl);
        out->auth[vl] = '\0';
    } else {
        return SMTP_PERR_PARAM_UNKNOWN;
    }
    return SMTP_POK;
}

smtp_perr smtp_mail_args_parse(const char *arg, size_t len, smtp_mail_args *out, const char **bad)
{
    memset(out, 0, sizeof *out);
    mail_ctx ctx = {.out = out, .seen = 0};
    smtp_perr r = parse_args(arg, len, true, &out->from, mail_param, &ctx, bad);
    if (r != SMTP_POK)
        return r;
    if (out->from.non_ascii && !out->smtputf8) {
        if (bad)
            *bad = arg;
        return SMTP_PERR_UTF8_NOT_DECLARED;
    }
    return SMTP_POK;
}

typedef struct rcpt_ctx {
    smtp_rcpt_args *out;
    unsigned seen;
} rcpt_ctx;

/* RFC 3461 4.1: "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY. */
static bool parse_notify(const char *v, size_t vl, unsigned *bits)
{
    unsigned b = 0;
    size_t i = 0;
    for (;;) {
        size_t s = i;
        while (i < vl && v[i] != ',')
            i++;
        unsigned bit;
        if (ieq_lit(v + s, i - s, "NEVER"))
            bit = SMTP_NOTIFY_NEVER;
        else if (ieq_lit(v + s, i - s, "SUCCESS"))
            bit = SMTP_NOTIFY_SUCCESS;
        else if (ieq_lit(v + s, i - s, "FAILURE"))
            bit = SMTP_NOTIFY_FAILURE;
        else if (ieq_lit(v + s, i - s, "DELAY"))
            bit = SMTP_NOTIFY_DELAY;
        else
            return false; /* also the empty item of "a,,b" or a trailing ',' */
        if (b & bit)
            return false;
        b |= bit;
        if (i >= vl)
            break;
        i++; /* ',' */
    }
    if ((b & SMTP_NOTIFY_NEVER) && b != SMTP_NOTIFY_NEVER)
        return false;
    *bits = b;
    return true;
}

static smtp_perr rcpt_param(void *vctx, const param *pm)
{
    rcpt_ctx *ctx = vctx;
    smtp_rcpt_args *out = ctx->out;
    const char *v = pm->val;
    size_t vl = pm->vallen;

    if (ieq_lit(pm->kw, pm->kwlen, "NOTIFY")) {
        if (once(&ctx->seen, SEEN_NOTIFY) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        if (!v || !parse_notify(v, vl, &out->notify))
            return SMTP_PERR_PARAM_SYNTAX;
    } else if (ieq_lit(pm->kw, pm->kwlen, "ORCPT")) {
        if (once(&ctx->seen, SEEN_ORCPT) != SMTP_POK)
            return SMTP_PERR_PARAM_DUP;
        /* RFC 3461 4.2: addr-type ";" xtext, at most 500 characters. */
        if (!v || vl > SMTP_ORCPT_MAX)
            return SMTP_PERR_PARAM_SYNTAX;
        const char *semi = memchr(v, ';', vl);
        if (!semi || semi == v)
            return SMTP_PERR_PARAM_SYNTAX;
        for (const char *c = v; c < semi; c++)
            if (!is_atext((unsigned char)*c))
                return SMTP_PERR_PARAM_SYNTAX;
        if (!smtp_xtext_valid(semi + 1, (size_t)(v + vl - (semi + 1))))
            return SMTP_PERR_PARAM_SYNTAX;
        memcpy(out->orcpt, v, vl);
        out->orcpt[vl] = '\0';
    } else {
        return SMTP_PERR_PARAM_UNKNOWN;
    }
    return SMTP_POK;
}

smtp_perr smtp_rcpt_args_parse(const char *arg, size_t len, bool smtputf8, smtp_rcpt_args *out,
                               const char **bad)
{
    memset(out, 0, sizeof *out);
    rcpt_ctx ctx = {.out = out, .seen = 0};
    smtp_perr r = parse_args(arg, len, false, &out->to, rcpt_param, &ctx, bad);
    if (r != SMTP_POK)
        return r;
    if (out->to.non_ascii && !smtputf8) {
        if (bad)
            *bad = arg;
        return SMTP_PERR_UTF8_NOT_DECLARED;
    }
    return SMTP_POK;
}
