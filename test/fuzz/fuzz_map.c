/*
 * fuzz_map.c - libFuzzer target for map files ("key value" lines).
 *
 * Beyond memory safety it checks the promises of map.h: the returned count is
 * the number of messages, each message names the file, every stored entry is
 * found again by its own key (also upper-cased, through the case fallback),
 * and lookups of arbitrary bytes never fail.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/map.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define NAME "fuzz.map"

static void count_diag(void *arg, const char *diag)
{
    CHECK(strncmp(diag, NAME ":", strlen(NAME) + 1) == 0);
    ++*(int *)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    map *m = NULL;
    int ndiag = 0;
    int rc = map_load_buffer(NAME, (const char *)data, size, &m, count_diag, &ndiag);
    if (rc < 0) {
        CHECK(rc == -ENOMEM && m == NULL);
        return 0;
    }
    CHECK(rc == ndiag && m != NULL);

    unsigned last_line = 0;
    for (size_t i = 0; i < map_count(m); i++) {
        const char *k, *v;
        map_entry(m, i, &k, &v);
        CHECK(k && v && k[0] && v[0]);
        CHECK(strpbrk(k, " \t\r\n") == NULL);
        CHECK(v[strlen(v) - 1] != ' ' && v[strlen(v) - 1] != '\t');
        /* Entries keep file order. */
        CHECK(map_entry_line(m, i) > last_line);
        last_line = map_entry_line(m, i);
        /* Keys are unique after normalizing, so a key finds its own value. */
        CHECK(map_lookup(m, k, strlen(k)) == v);
        size_t kl = strlen(k);
        char *up = malloc(kl + 1);
        CHECK(up != NULL);
        for (size_t j = 0; j <= kl; j++)
            up[j] = (k[j] >= 'a' && k[j] <= 'z') ? (char)(k[j] - 32) : k[j];
        CHECK(map_lookup(m, up, kl) != NULL);
        free(up);
    }
    /* The raw input as a key: any bytes, any length. */
    (void)map_lookup(m, (const char *)data, size);
    map_free(m);
    return 0;
}
