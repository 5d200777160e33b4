/*
 * smtp_reply.c - replies chosen where a failure is classified (see
 * smtp_reply.h). Every spool failure is temporary for the client: the
 * message was not taken, and it should try again later (RFC 5321 4.2.5).
 */
#include "sluice/smtp_reply.h"

#include <errno.h>

const char *smtp_reply_for_spool_error(int err)
{
    switch (-err) {
    case ENOSPC:
    case EDQUOT:
        return "452 4.3.1 Error: insufficient system storage";
    case ENOMEM:
    case ENOBUFS:
        return "452 4.3.1 Error: insufficient system resources";
    default:
        return "452 4.3.1 Error: queue file write error";
    }
}
