/*
 * smtp_reply.h - the one table of SMTP replies with enhanced status codes
 * (RFC 3463, RFC 5248). Temporary versus permanent is decided where the
 * failure happens, by picking an entry here, never re-decided later.
 */
#ifndef SLUICE_SMTP_REPLY_H
#define SLUICE_SMTP_REPLY_H

/* Maps a negative errno from the spool to the reply for the client. */
const char *smtp_reply_for_spool_error(int err);

#endif
