/*
 * config_int.h - private to common/config*.c and common/map.c: the key table,
 * the value parsers and small helpers they share. Not part of the API.
 */
#ifndef SLUICE_CONFIG_INT_H
#define SLUICE_CONFIG_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

/* How a key's value is parsed and stored. */
enum cfg_type {
    CT_STRING,   /* char *, free text */
    CT_HOSTNAME, /* char *, a DNS name */
    CT_USER,     /* char *, a login name or "" */
    CT_PATH,     /* char *, resolved against the config folder */
    CT_MECHS,    /* char *, SASL mechanism names, upper case, one space apart */
    CT_RELAY,    /* char *, "" or a next hop (config_parse_relay) */
    CT_BOOL,     /* bool */
    CT_ENUM,     /* int or bool: index into the '|'-separated type string */
    CT_UINT,     /* unsigned */
    CT_SIZE,     /* uint64_t, bytes */
    CT_PORT,     /* int, 1..65535 */
    CT_DURATION, /* unsigned seconds */
    CT_LISTEN,   /* listen[] / nlisten */
    CT_CIDRS,    /* trusted_networks[] / ntrusted */
    CT_DOMAINS,  /* local_domains[] / nlocal_domains */
    CT_DNS,      /* dns_servers[] / ndns_servers */
};

enum {
    CK_LIST = 1u << 0,     /* repeatable: entries accumulate */
    CK_NONEMPTY = 1u << 1, /* "" is an error */
    CK_DEFHOST = 1u << 2,  /* default comes from gethostname() */
};

/* Whether a key of this type is stored as one malloc'd char * (NULL = unset). */
static inline bool cfg_type_is_string(enum cfg_type t)
{
    return t == CT_STRING || t == CT_HOSTNAME || t == CT_USER || t == CT_PATH || t == CT_MECHS ||
           t == CT_RELAY;
}

struct cfg_key {
    enum cfg_type type;
    size_t off;  /* offsetof(sluice_config, field) */
    size_t size; /* sizeof the field (enums store into bool or int) */
    uint64_t min, max;
    unsigned flags;
};

/* The table (common/config_table.c): cfg_key_tab[i] goes with config_keys()[i]. */
extern const struct cfg_key cfg_key_tab[];
extern const int cfg_nkeys;

/* Index of [section] name, or -1. */
int cfg_key_find(const char *section, const char *name);
/* Whether section is one of ours. */
bool cfg_section_known(const char *section);
/* Closest known key in section (or any section) to name, or NULL. */
const config_key_doc *cfg_key_suggest(const char *section, const char *name);
/* Closest known section name, or NULL. */
const char *cfg_section_suggest(const char *name);

/* Where things were set; allocated by config_load, owned by sluice_config. */
struct config_src {
    char *name;                           /* the file name as given, for messages */
    unsigned *line;                       /* [cfg_nkeys]: line of the last setting, 0 = default */
    unsigned listen_line[CFG_MAX_LISTEN]; /* line of each listen entry */
};

/* Line where key `name` was set in cfg, 0 when it has its default. */
unsigned cfg_key_line(const sluice_config *cfg, const char *name);
/* Name to show in messages about cfg's file. */
const char *cfg_display_name(const sluice_config *cfg);

/*
 * ASCII-only case and class tests: <ctype.h> and strcasecmp follow the
 * locale, and a program that calls setlocale must not change what matches.
 */
static inline char cfg_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}
static inline char cfg_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
}
static inline bool cfg_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
/* Whether a[0..n) and b[0..n) are equal ignoring ASCII case. */
static inline bool cfg_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cfg_lower(a[i]) != cfg_lower(b[i]))
            return false;
    return true;
}

/* Longest line in sluice.conf and in maps, without the newline. */
#define CFG_LINE_MAX 4096
/* Longest value quoted back in a message. */
#define CFG_ECHO_MAX 80

/* What a load shares between config.c (reading) and config_value.c (storing). */
struct cfg_load {
    sluice_config *cfg;
    const char *name; /* the file, for messages */
    config_diag_fn diag;
    void *arg;
    int problems;
    int fatal; /* negative errno (out of memory): stop */
};

/* Reports "FILE:LINE: message" and counts it. */
void cfg_problem(struct cfg_load *L, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Parses v for key idx (per its type) and stores it. line 0 = the built-in default. */
void cfg_set_key(struct cfg_load *L, int idx, const char *v, unsigned line);
/* Replaces string field idx with s (NULL = out of memory); the old value is freed. */
int cfg_set_string(struct cfg_load *L, int idx, char *s);
/* Empties a list field (freeing its strings). */
void cfg_clear_list(sluice_config *cfg, enum cfg_type type);

/* Formats "FILE:LINE: message" (or "FILE: message" when line is 0) to diag. */
void cfg_report(config_diag_fn diag, void *arg, const char *file, unsigned line, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
void cfg_vreport(config_diag_fn diag, void *arg, const char *file, unsigned line, const char *fmt,
                 va_list ap) __attribute__((format(printf, 5, 0)));

/*
 * Reads a whole file into a malloc'd, NUL-terminated buffer. Returns 0 or a
 * negative errno (-EISDIR for a folder, -EFBIG past max bytes).
 */
int cfg_read_file(const char *path, size_t max, char **data, size_t *len);

/*
 * dir + "/" + path, unless path is absolute; "." components and doubled
 * slashes removed. ".." is kept: folding it lexically would be wrong across
 * symlinks. "" gives "". NULL when out of memory.
 */
char *cfg_path_join(const char *dir, const char *path);

/*
 * Value parsers: 0, or -EINVAL with *why set to a static explanation.
 * s is a NUL-terminated, trimmed value.
 */
int cfg_parse_bool(const char *s, bool *out, const char **why);
int cfg_parse_u64(const char *s, uint64_t *out, const char **why);
int cfg_parse_port(const char *s, size_t len, int *out, const char **why);
int cfg_parse_listen(const char *s, cfg_listen *out, const char **why);
int cfg_parse_cidr(const char *s, size_t len, cfg_cidr *out, const char **why);
int cfg_parse_dns(const char *s, size_t len, char *out, size_t outsz, const char **why);
int cfg_parse_relay(const char *s, cfg_relay *out, const char **why);
/* A DNS name: letters, digits, '-', dots between labels. */
bool cfg_valid_domain(const char *s, size_t len);
/* Tokens of a list value, split on whitespace and commas. */
const char *cfg_next_token(const char **p, size_t *len);

#endif
