/*
 * scratch_dir.h - a temporary folder for a unit test that needs a real
 * filesystem: made under $TMPDIR (else /tmp), removed with all it holds.
 */
#ifndef SLUICE_TEST_SCRATCH_DIR_H
#define SLUICE_TEST_SCRATCH_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static inline int scratch_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Makes $TMPDIR/sluice-TAG-XXXXXX into buf; 0 or -1. */
static inline int scratch_make(char *buf, size_t n, const char *tag)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/sluice-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    return mkdtemp(buf) ? 0 : -1;
}

/* Removes dir and everything in it; 0 or -1. */
static inline int scratch_remove(const char *dir)
{
    return nftw(dir, scratch_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
