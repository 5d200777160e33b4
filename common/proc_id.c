/*
 * proc_id.c - see proc_id.h.
 */
#include "sluice/proc_id.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

static atomic_int cached; /* 0: not known (never a real pid here) */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void forget(void)
{
    atomic_store_explicit(&cached, 0, memory_order_relaxed);
}

static bool may_cache;

static void register_fork_reset(void)
{
    /* Without the handler a child would keep its parent's id: no cache. */
    may_cache = pthread_atfork(NULL, NULL, forget) == 0;
}

pid_t proc_id(void)
{
    int p = atomic_load_explicit(&cached, memory_order_relaxed);
    if (p != 0)
        return (pid_t)p;
    pthread_once(&once, register_fork_reset);
    p = (int)getpid();
    if (may_cache)
        atomic_store_explicit(&cached, p, memory_order_relaxed);
    return (pid_t)p;
}
