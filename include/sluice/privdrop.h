/*
 * privdrop.h - leaving root: a daemon started as root binds its ports,
 * then becomes [server] user (setgroups, setgid, setuid) and checks that
 * root cannot be regained, before it reads a byte from any client.
 */
#ifndef SLUICE_PRIVDROP_H
#define SLUICE_PRIVDROP_H

#include <sys/types.h>

int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid);
/* 0, or a negative errno after logging why. */
int privdrop_to(const char *user);

#endif
