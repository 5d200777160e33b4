/*
 * dlv_keyindex.h - which delivery keys a Maildir may already hold.
 *
 * A delivery that may repeat an earlier one (its message arrived before
 * this process started, or an earlier attempt's outcome may be lost) first
 * looks for a file carrying its delivery key (maildir.h). That look is a
 * listing of new/ and cur/: after a restart with many queued messages it
 * was one listing per message, O(mailbox) each.
 *
 * Instead, each Maildir is listed once per process, when a delivery first
 * needs it, into a set of key hashes; every file this process then moves
 * into new/ is added. "Not in the set" is a sure no. "In the set" is a
 * maybe (a hash collision, or a key-like host part) and the caller does
 * the real listing, which finds the name. Files only ever come into a
 * Maildir with our keys from this runner (one per spool), so nothing can
 * appear behind the set's back; readers renaming to cur/ keep the key,
 * and a file a reader deleted was delivered all the same.
 */
#ifndef SLUICE_DLV_KEYINDEX_H
#define SLUICE_DLV_KEYINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Keys held in all sets together; past it, no new set is made and the
 * deliveries that would need one list the Maildir as before. */
#define DLV_KEYINDEX_MAX_KEYS (4u * 1024 * 1024)

typedef struct dlv_keyset dlv_keyset;

typedef struct dlv_keyindex {
    uv_mutex_t mu; /* the list and the count; each set has its own lock */
    dlv_keyset *sets;
    size_t nkeys;
} dlv_keyindex;

int dlv_keyindex_init(dlv_keyindex *x);
void dlv_keyindex_free(dlv_keyindex *x);

/*
 * Any pool thread: whether dir may hold a file with key. Lists dir the
 * first time it is asked about (other threads asking about the same dir
 * wait for that listing). true also when it cannot tell (no memory, a
 * listing error, the bound): the caller then lists.
 */
bool dlv_keyindex_may_hold(dlv_keyindex *x, const char *dir, const char *key);

/* Any pool thread: a file with key is now in dir's new/. */
void dlv_keyindex_add(dlv_keyindex *x, const char *dir, const char *key);

#endif
