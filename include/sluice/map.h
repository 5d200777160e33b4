/*
 * map.h - "key value" lookup tables (mailboxes, aliases, transport, ...).
 *
 * File format: one entry a line, key then whitespace then value (the rest of
 * the line, trimmed); '#' starts a comment; blank lines ignored. Keys that are
 * addresses compare case-insensitively in the domain part; a key without '@'
 * (a domain or a bare local part) compares case-insensitively whole.
 * Lookups of "user@domain" fall back to a fully case-insensitive match.
 */
#ifndef SLUICE_MAP_H
#define SLUICE_MAP_H

#include <stddef.h>

#include "config.h"

typedef struct map map;

/*
 * Loads path into *out. Problems ("FILE:LINE: message") go to diag. Returns
 * the number of problems (entries with problems are skipped), or a negative
 * errno when the file cannot be read. An empty path gives an empty map.
 */
int map_load(const char *path, map **out, config_diag_fn diag, void *arg);
void map_free(map *m);

/* Value for key, or NULL. The pointer lives as long as the map. */
const char *map_lookup(const map *m, const char *key, size_t keylen);
size_t map_count(const map *m);

/* Iterate: i from 0 to map_count-1. */
void map_entry(const map *m, size_t i, const char **key, const char **value);

/* The line of the file entry i came from (for messages). */
unsigned map_entry_line(const map *m, size_t i);

/*
 * Like map_load, over len bytes of data named name (used in messages only).
 * Returns the number of problems, or -ENOMEM.
 */
int map_load_buffer(const char *name, const char *data, size_t len, map **out, config_diag_fn diag,
                    void *arg);

/* Longest line a map (or sluice.conf) may have, in bytes, without the newline. */
#define MAP_LINE_MAX 4096

#endif
