/*
 * queue_id.h - queue ids: unique, sortable by arrival, safe in file names.
 *
 * Form: 13 upper-case hex digits of microseconds since the epoch, then one
 * hex digit naming the process kind that made it (0 smtpd, 1 delivery,
 * 2 cli). Within a process the time part is strictly increasing (a clash
 * takes the last value + 1), and each kind has its own digit, so two live
 * processes of different kinds never collide; the spool's O_EXCL create is
 * the final guard.
 */
#ifndef SLUICE_QUEUE_ID_H
#define SLUICE_QUEUE_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h" /* QUEUE_ID_LEN */

enum queue_id_source { QUEUE_ID_SMTPD = 0, QUEUE_ID_DELIVERY = 1, QUEUE_ID_CLI = 2 };

/* Writes a new id (QUEUE_ID_LEN chars + NUL) to out; thread-safe. */
void queue_id_new(enum queue_id_source src, char out[QUEUE_ID_LEN + 1]);
/* Whether s (len bytes) has the form of a queue id. */
bool queue_id_valid(const char *s, size_t len);
/* The arrival time encoded in a valid id, microseconds since the epoch. */
int64_t queue_id_time(const char *id);

#endif
