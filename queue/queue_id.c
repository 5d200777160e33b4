/*
 * queue_id.c - queue ids (see include/sluice/queue_id.h).
 *
 * An id is 13 upper-case hex digits of microseconds since the epoch plus one
 * hex digit for the kind of process that made it: "18F3A2B4C5D6E" "0". Ids
 * sort by arrival as plain strings, which is what spool_fs_list relies on.
 *
 * Uniqueness within a process: the time part is strictly increasing. When
 * the clock has not advanced (or went backwards: NTP steps, VM migration)
 * the last value + 1 is used instead, so ids never repeat and never go
 * backwards within a process, and drift back to the real clock by themselves.
 * Across processes of different kinds the last digit differs; across two
 * processes of the same kind the spool's O_EXCL create and RENAME_NOREPLACE
 * are the final guard (spool_fs_inject returns -EEXIST and the caller takes
 * a new id).
 */
#include "sluice/queue_id.h"

#include <pthread.h>
#include <time.h>

#define QUEUE_ID_TIME_DIGITS 13
#define QUEUE_ID_TIME_MAX ((UINT64_C(1) << 52) - 1) /* 13 hex digits: year 2112 */

static pthread_mutex_t queue_id_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t queue_id_last;

static uint64_t queue_id_now_us(void)
{
    struct timespec ts;

    /* CLOCK_REALTIME cannot fail with a valid clock id and pointer. */
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void queue_id_new(enum queue_id_source src, char out[QUEUE_ID_LEN + 1])
{
    static const char hex[] = "0123456789ABCDEF";
    uint64_t t = queue_id_now_us();

    pthread_mutex_lock(&queue_id_lock);
    if (t <= queue_id_last)
        t = queue_id_last + 1;
    /* Past 2112 the time part would need a 14th digit; wrap rather than
     * change the id length (a broken clock, not a real date). */
    t &= QUEUE_ID_TIME_MAX;
    queue_id_last = t;
    pthread_mutex_unlock(&queue_id_lock);

    for (int i = QUEUE_ID_TIME_DIGITS - 1; i >= 0; i--) {
        out[i] = hex[t & 0xf];
        t >>= 4;
    }
    out[QUEUE_ID_TIME_DIGITS] = hex[(unsigned)src & 0xf];
    out[QUEUE_ID_LEN] = '\0';
}

static int queue_id_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lower case is not an id: file names must be canonical */
}

bool queue_id_valid(const char *s, size_t len)
{
    if (!s || len != QUEUE_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (queue_id_digit(s[i]) < 0)
            return false;
    return true;
}

int64_t queue_id_time(const char *id)
{
    uint64_t t = 0;

    for (int i = 0; i < QUEUE_ID_TIME_DIGITS; i++) {
        int d = queue_id_digit(id[i]);
        if (d < 0)
            return 0;
        t = t << 4 | (unsigned)d;
    }
    return (int64_t)t;
}
