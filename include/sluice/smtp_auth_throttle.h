/*
 * smtp_auth_throttle.h - refuse AUTH from client addresses that keep
 * failing it (password guessing).
 *
 * A client is blocked while its last auth_fail_limit failed AUTH attempts all
 * fall within the last auth_fail_window: a sliding window, so a burst that
 * straddles a window boundary is caught too. Blocking ends by itself once the
 * oldest of those failures is older than the window. Successes do not clear
 * failures: behind a shared NAT, one user's success must not buy an attacker
 * on the same address more guesses.
 *
 * The key is the client address: IPv4 (and IPv4-mapped IPv6) by the full
 * address, IPv6 by its /64 prefix, since one IPv6 host usually owns a whole
 * /64 and could otherwise rotate through it to evade the limit.
 *
 * Memory is fixed at creation and never grows: entries slots (default
 * AUTH_THROTTLE_ENTRIES), each holding up to min(limit, AUTH_THROTTLE_LIMIT_MAX)
 * failure times of 8 bytes; with the defaults (4096 entries, limit 5) that is
 * about 320 KiB. When all slots are in use, the least recently failing
 * address is forgotten. Each call is O(1) on average (a hash table with a
 * per-process random seed, so clients cannot aim at one bucket).
 *
 * Runs on the event loop only: not thread-safe. Times are milliseconds from a
 * monotonic clock (uv_now).
 */
#ifndef SLUICE_SMTP_AUTH_THROTTLE_H
#define SLUICE_SMTP_AUTH_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_THROTTLE_ENTRIES 4096
/* A larger auth_fail_limit is clamped to this (with a warning in the log). */
#define AUTH_THROTTLE_LIMIT_MAX 100
/* What the session sends, then closes, when a blocked client tries AUTH. */
#define AUTH_THROTTLE_REPLY "421 4.7.0 Too many authentication failures"

typedef struct auth_throttle auth_throttle;

/*
 * limit: failures that block (cfg->auth_fail_limit); window_s: seconds
 * (cfg->auth_fail_window); entries: slots, 0 = AUTH_THROTTLE_ENTRIES.
 * limit 0 or window 0 disables throttling (never blocked).
 * Returns 0, -EINVAL (entries over 1<<24) or -ENOMEM.
 */
int auth_throttle_new(unsigned limit, unsigned window_s, size_t entries, auth_throttle **out);
void auth_throttle_free(auth_throttle *t);

/* Records one failed AUTH (SMTP_AUTH_FAIL) from sa at now_ms. Non-IP: ignored. */
void auth_throttle_fail(auth_throttle *t, const struct sockaddr *sa, uint64_t now_ms);

/* Whether sa has limit failures within the window ending at now_ms. */
bool auth_throttle_blocked(const auth_throttle *t, const struct sockaddr *sa, uint64_t now_ms);

/* Failures of sa still inside the window at now_ms (for log lines). */
unsigned auth_throttle_failures(const auth_throttle *t, const struct sockaddr *sa, uint64_t now_ms);

/* Slots in use, and the fixed number of bytes allocated (for tests). */
size_t auth_throttle_used(const auth_throttle *t);
size_t auth_throttle_bytes(const auth_throttle *t);

#endif
