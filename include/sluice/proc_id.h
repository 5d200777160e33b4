/*
 * proc_id.h - this process's id, cached.
 *
 * getpid(2) is a real system call (glibc stopped caching it), and the hot
 * paths asked for it per message: every log line and every Maildir file
 * name. A fork in any thread resets the cache in the child.
 */
#ifndef SLUICE_PROC_ID_H
#define SLUICE_PROC_ID_H

#include <sys/types.h>

pid_t proc_id(void);

#endif
