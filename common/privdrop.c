/*
 * privdrop.c - dropping root after binding (see include/sluice/privdrop.h).
 */
#include "sluice/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/log.h"

int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid)
{
    struct passwd *pw;
    errno = 0;
    pw = getpwnam(user);
    if (!pw)
        return errno ? -errno : -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

int privdrop_to(const char *user)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    int rc = privdrop_lookup(user, &uid, &gid);
    if (rc < 0) {
        log_err("user %s: %s", user, rc == -ENOENT ? "no such user" : strerror(-rc));
        return rc;
    }
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
        rc = -errno;
        log_err("cannot drop privileges to %s: %s", user, strerror(errno));
        return rc;
    }
    /* Check that it held: root must be gone for good. */
    if (setuid(0) == 0 || getuid() != uid || geteuid() != uid || getgid() != gid) {
        log_err("privilege drop to %s did not hold", user);
        return -EPERM;
    }
    return 0;
}
