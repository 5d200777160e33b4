/*
 * cli_addrlist.c - RFC 5322 3.4 address lists, for `sendmail -t` (pure).
 *
 * A tokenizer (atoms, quoted strings, domain literals, specials; white
 * space and nested comments skipped) and a small state machine over the
 * tokens of one list element at a time:
 *
 *   address-list = [address] *("," [address])   (empty elements: obs-addr-list)
 *   address      = mailbox / group
 *   mailbox      = [display-name] "<" [route ":"] addr-spec ">" / addr-spec
 *   group        = display-name ":" [mailbox-list] ";"
 *
 * The display name is dropped; what the caller gets is the addr-spec as
 * written (quoted local parts keep their quotes, as SMTP wants them).
 * "john smith" without <...> is refused rather than run together into
 * an address nobody meant. A group left open at the end is accepted, as
 * real mail does that.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sluice/cli.h"

#define ADDR_MAX 512 /* RFC 5321 4.5.3.1.3: a path is at most 256 octets */

enum tok_type { T_END = 0, T_WORD, T_QUOTED, T_LITERAL, T_SPECIAL };

typedef struct tok {
    enum tok_type type;
    const char *p;
    size_t n;
} tok;

typedef struct lexer {
    const char *s, *end;
    char *err;
    size_t errlen;
} lexer;

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_special(char c)
{
    return strchr("()<>[]:;@,.\"", c) != NULL;
}

static int lex_error(lexer *L, const char *at, const char *why)
{
    size_t left = (size_t)(L->end - at);
    snprintf(L->err, L->errlen, "%s near '%.*s'", why, (int)(left > 30 ? 30 : left), at);
    return -EINVAL;
}

/* Skips white space and (nested) comments. */
static int skip_cfws(lexer *L)
{
    while (L->s < L->end) {
        if (is_ws(*L->s)) {
            L->s++;
            continue;
        }
        if (*L->s != '(')
            break;
        const char *start = L->s;
        int depth = 0;
        do {
            if (*L->s == '\\' && L->s + 1 < L->end)
                L->s++;
            else if (*L->s == '(')
                depth++;
            else if (*L->s == ')')
                depth--;
            L->s++;
        } while (depth > 0 && L->s < L->end);
        if (depth > 0)
            return lex_error(L, start, "unterminated comment");
    }
    return 0;
}

static int next_tok(lexer *L, tok *t)
{
    int rc = skip_cfws(L);
    if (rc)
        return rc;
    memset(t, 0, sizeof(*t));
    if (L->s >= L->end)
        return 0; /* T_END */
    const char *start = L->s;
    char c = *L->s;
    if (c == '"' || c == '[') {
        char close = c == '"' ? '"' : ']';
        L->s++;
        while (L->s < L->end && *L->s != close) {
            if (*L->s == '\\' && L->s + 1 < L->end)
                L->s++;
            L->s++;
        }
        if (L->s >= L->end)
            return lex_error(
                L, start, c == '"' ? "unterminated quoted string" : "unterminated domain literal");
        L->s++;
        t->type = c == '"' ? T_QUOTED : T_LITERAL;
    } else if (c == ')' || c == ']') {
        return lex_error(L, start, "unbalanced bracket");
    } else if (is_special(c)) {
        L->s++;
        t->type = T_SPECIAL;
    } else {
        while (L->s < L->end && !is_ws(*L->s) && !is_special(*L->s) &&
               (unsigned char)*L->s >= 0x20 && *L->s != 0x7f)
            L->s++;
        if (L->s == start)
            return lex_error(L, start, "control character");
        t->type = T_WORD;
    }
    t->p = start;
    t->n = (size_t)(L->s - start);
    return 0;
}

static bool is_sp(const tok *t, char c)
{
    return t->type == T_SPECIAL && t->p[0] == c;
}

static bool wordish(const tok *t)
{
    return t->type == T_WORD || t->type == T_QUOTED || t->type == T_LITERAL;
}

/* The tokens of one list element, until we know what they are. */
#define ELEM_MAX 256

typedef struct elem {
    tok t[ELEM_MAX];
    size_t n;
} elem;

struct parse {
    lexer L;
    cli_addr_fn fn;
    void *arg;
    int count;
};

/*
 * Joins tokens t[0..n) into an addr-spec: words separated by '.', at most
 * one '@' with words on both sides. White space may sit around dots
 * (obs-local-part) but two words side by side are a display name missing
 * its <address> ("john smith"), never an address.
 */
static int emit_spec(struct parse *P, const tok *t, size_t n, const char *where)
{
    char buf[ADDR_MAX + 1];
    size_t len = 0;
    bool want_word = true, at_seen = false;

    if (n == 0)
        return lex_error(&P->L, where, "empty address");
    for (size_t i = 0; i < n; i++) {
        if (want_word) {
            if (!wordish(&t[i]))
                return lex_error(&P->L, where, "bad address");
            if (t[i].type == T_LITERAL && !at_seen)
                return lex_error(&P->L, where, "bad address");
        } else if (!is_sp(&t[i], '.') && !is_sp(&t[i], '@')) {
            return lex_error(&P->L, where,
                             wordish(&t[i]) ? "not an address (a name needs <address>)"
                                            : "bad address");
        } else if (is_sp(&t[i], '@')) {
            if (at_seen)
                return lex_error(&P->L, where, "bad address");
            at_seen = true;
        }
        if (len + t[i].n > ADDR_MAX)
            return lex_error(&P->L, where, "address too long");
        memcpy(buf + len, t[i].p, t[i].n);
        len += t[i].n;
        want_word = !want_word;
    }
    if (want_word) /* ended on '.' or '@' */
        return lex_error(&P->L, where, "bad address");
    buf[len] = '\0';
    int rc = P->fn(P->arg, buf);
    if (rc < 0)
        return rc;
    P->count++;
    return 0;
}

/* After "<": the angle address up to ">" (a leading source route dropped). */
static int parse_angle(struct parse *P, const tok *open)
{
    elem a;
    tok t;
    int rc;
    bool route = false, first = true;

    a.n = 0;
    for (;;) {
        if ((rc = next_tok(&P->L, &t)) != 0)
            return rc;
        if (t.type == T_END)
            return lex_error(&P->L, open->p, "missing '>'");
        if (is_sp(&t, '>'))
            break;
        if (first && is_sp(&t, '@'))
            route = true; /* obs-route: "@a,@b:" before the address */
        first = false;
        if (route) {
            if (is_sp(&t, ':'))
                route = false;
            continue;
        }
        if (a.n == ELEM_MAX)
            return lex_error(&P->L, open->p, "address too long");
        a.t[a.n++] = t;
    }
    if (route)
        return lex_error(&P->L, open->p, "bad source route");
    if (a.n == 0)
        return lex_error(&P->L, open->p, "empty address <>");
    return emit_spec(P, a.t, a.n, open->p);
}

int cli_addrlist_parse(const char *s, size_t len, cli_addr_fn fn, void *arg, char *err,
                       size_t errlen)
{
    struct parse P = {{s, s + len, err, errlen}, fn, arg, 0};
    elem e; /* 8 KiB */
    tok t;
    int rc;
    bool in_group = false, had_angle = false;

    if (errlen)
        err[0] = '\0';
    e.n = 0;
    for (;;) {
        if ((rc = next_tok(&P.L, &t)) != 0)
            return rc;
        bool end = t.type == T_END;
        if (end || is_sp(&t, ',') || is_sp(&t, ';')) {
            if (is_sp(&t, ';') && !in_group)
                return lex_error(&P.L, t.p, "';' outside a group");
            if (!had_angle && e.n && (rc = emit_spec(&P, e.t, e.n, e.t[0].p)) != 0)
                return rc;
            if (is_sp(&t, ';'))
                in_group = false;
            e.n = 0;
            had_angle = false;
            if (end)
                return P.count;
            continue;
        }
        if (had_angle)
            return lex_error(&P.L, t.p, "text after '>'");
        if (is_sp(&t, '<')) {
            /* What came before is the display name: dropped. */
            if ((rc = parse_angle(&P, &t)) != 0)
                return rc;
            had_angle = true;
            continue;
        }
        if (is_sp(&t, ':')) {
            if (in_group)
                return lex_error(&P.L, t.p, "group inside a group");
            if (e.n == 0)
                return lex_error(&P.L, t.p, "':' without a group name");
            in_group = true; /* the group's name is dropped too */
            e.n = 0;
            continue;
        }
        if (t.type == T_SPECIAL && !is_sp(&t, '.') && !is_sp(&t, '@'))
            return lex_error(&P.L, t.p, "unexpected character");
        if (e.n == ELEM_MAX)
            return lex_error(&P.L, e.t[0].p, "address or name too long");
        e.t[e.n++] = t;
    }
}
