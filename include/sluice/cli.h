/*
 * cli.h - the `sluice` admin program (queue/sluice_main.c, queue/cli_*.c):
 * its shared context and helpers, and the pure parts the unit tests reach
 * (duration parsing, queue filters, RFC 5322 address lists, the sendmail
 * input transformer). See docs/queue.md and docs/sluice.8.
 *
 * Exit statuses: 0 success; 1 a runtime failure (no such message, a spool
 * error, a message that could not be changed); EX_USAGE (64) bad
 * arguments; EX_CONFIG (78) an unreadable config file. `sluice sendmail`
 * uses sysexits.h throughout (docs/sluice.8, EXIT STATUS).
 */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "config.h"
#include "envelope.h"
#include "spool.h"

#define CLI_EXIT_FAIL 1

typedef struct cli_filter cli_filter; /* below, with the pure helpers */

/* ---- the program's context (cli_common.c) ---- */

typedef struct cli_ctx {
    const char *config_arg; /* -c FILE, or NULL */
    const char *config_path;
    sluice_config cfg;
    bool cfg_loaded;
    spool_fs *fs;
    long invoker_uid; /* who ran us, for the log (before leaving root) */
} cli_ctx;

/* "sluice: ..." (and "sluice: warning: ...") on stderr, one line. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Loads the config for commands that only need a few values: problems are
 * printed as warnings (an admin must still be able to see the queue when
 * one key is wrong). Returns 0, or an exit status after saying why.
 */
int cli_load_config(cli_ctx *c);
/*
 * Loads the config, leaves root for [server] user (files we write must
 * belong to the daemons' user), and opens the spool without creating it.
 * Returns 0, or an exit status after saying why.
 */
int cli_open_spool(cli_ctx *c);
void cli_ctx_free(cli_ctx *c);

/* Whether arg is "-h" or "--help". */
bool cli_is_help(const char *arg);

/* Copies a checked queue id (upper-cased) to out; false if it is not one. */
bool cli_parse_id(const char *arg, char out[QUEUE_ID_LEN + 1]);

/* Current time, microseconds since the epoch. */
int64_t cli_now_us(void);

/* "3d4h", "12m", "40s": a short age for humans (secs >= 0). */
void cli_format_age(int64_t secs, char *out, size_t outsz);

/* ---- walking the queue (cli_queue.c) ---- */

/*
 * Calls fn for every committed message matching f (NULL: all), in id
 * order (= arrival order), each envelope read once without the lock (a
 * rename makes every update atomic, so each view is whole). A message
 * removed meanwhile is skipped; a damaged one is reported (the spool
 * moves it to corrupt/). fn returning non-zero stops the walk with that
 * value. Returns 0, or an exit status after saying why.
 */
typedef int (*cli_msg_fn)(void *arg, const envelope *e);
int cli_each_message(cli_ctx *c, const cli_filter *f, int64_t now_us, cli_msg_fn fn, void *arg);

/* Local time as "2026-11-22 20:38:01" (what admins read in lists). */
void cli_format_local(int64_t us, char *out, size_t outsz);

/* ---- JSON (cli_json.c) ---- */

struct cJSON;
/*
 * The envelope as a JSON object: the contract fields of `queue list
 * --json` (id, size, arrival, sender, hold, recipients[{address, state,
 * attempts, last_reply}]) and every other envelope field. Absent text
 * is null; text is made valid UTF-8. NULL when out of memory.
 */
struct cJSON *cli_envelope_json(const envelope *e, int64_t now_us);
/* Adds k: v (cleaned UTF-8; null when v is NULL). 0 or -ENOMEM. */
int cli_json_str(struct cJSON *o, const char *k, const char *v);
/* Prints o unformatted on one line to f, then frees nothing. 0 or -errno. */
int cli_json_print(struct cJSON *o, FILE *f);

/* ---- subcommands: each returns the exit status ---- */

int cli_queue(cli_ctx *c, int argc, char **argv);      /* argv[0] = "queue" */
int cli_queue_list(cli_ctx *c, int argc, char **argv); /* argv[0] = "list" */
int cli_queue_stats(cli_ctx *c, int argc, char **argv);
int cli_queue_show(cli_ctx *c, int argc, char **argv);
/* delete, hold, release, requeue, flush */
int cli_queue_change(cli_ctx *c, int argc, char **argv);
int cli_sendmail(cli_ctx *c, int argc, char **argv); /* argv[0] = "sendmail" */
int cli_check(cli_ctx *c, int argc, char **argv);

/* ---- queue filters and durations (cli_filter.c, pure) ---- */

/*
 * "90", "90s", "15m", "4h", "2d", "1w", and sums of them ("1h30m").
 * 0, or -EINVAL (empty, unknown unit, overflow).
 */
int cli_parse_duration(const char *s, int64_t *secs);

/* What a message is waiting for, as `--state` names it. */
enum cli_msg_state {
    CLI_MSG_PENDING,  /* not held; every open recipient is new (never tried) */
    CLI_MSG_DEFERRED, /* not held; some recipient was tried and waits for a retry */
    CLI_MSG_HOLD,     /* on hold (`queue hold`): nothing is attempted */
    CLI_MSG_DONE,     /* every recipient final; a DSN or the removal is left */
};
enum cli_msg_state cli_msg_state(const envelope *e);
const char *cli_msg_state_name(enum cli_msg_state s);
/* "pending" | "deferred" | "hold" | "done" -> state; -1 if unknown. */
int cli_msg_state_parse(const char *s);

/*
 * Address patterns of --sender and --rcpt: "user@domain" matches that
 * address (any case); "@domain" or "domain" matches the domain and its
 * subdomains; "<>" matches the null sender.
 */
bool cli_addr_match(const char *pattern, const char *addr);

struct cli_filter {
    const char *sender; /* pattern or NULL */
    const char *rcpt;   /* pattern or NULL: any recipient matches */
    int state;          /* enum cli_msg_state, or -1 for any */
    int64_t older_than; /* seconds, or -1 */
};

void cli_filter_init(cli_filter *f);
bool cli_filter_active(const cli_filter *f);
bool cli_filter_match(const cli_filter *f, const envelope *e, int64_t now_us);
/*
 * Takes a filter option at argv[*i] (--sender X, --rcpt X, --state X,
 * --older-than X, also as --opt=X). Returns 1 if taken (*i advanced past
 * its value), 0 if argv[*i] is not a filter option, -1 after printing why
 * the value is bad.
 */
int cli_filter_option(cli_filter *f, int argc, char **argv, int *i);

/* ---- RFC 5322 address lists (cli_addrlist.c, pure) ---- */

typedef int (*cli_addr_fn)(void *arg, const char *addr);

/*
 * Parses an address-list field body (To, Cc, Bcc; folding already
 * removed or not: CR and LF count as white space): mailboxes with or
 * without display names, angle addresses (a source route is dropped),
 * groups, comments, quoted strings, and empty list elements. Each
 * addr-spec goes to fn as "local@domain" (or a bare "local", for the
 * caller to qualify); fn returning a negative value stops the parse with
 * that value. Returns the number of addresses, or -EINVAL with a reason in
 * err.
 */
int cli_addrlist_parse(const char *s, size_t len, cli_addr_fn fn, void *arg, char *err,
                       size_t errlen);

/* ---- the sendmail input transformer (cli_input.c, pure) ---- */

/* The header section kept in memory for -t and the From: check. */
#define CLI_HEADER_MAX (1024u * 1024u)
/* Longest line sent, without CRLF (RFC 5321 4.5.3.1.6: 1000 with CRLF). */
#define CLI_LINE_MAX 998u

typedef struct cli_field {
    size_t off, len; /* in cli_input.hdr: the raw field, lines joined by CRLF */
    size_t name_len;
} cli_field;

typedef struct cli_input {
    bool ignore_dots; /* -i: a lone "." does not end the input */
    int lstate;       /* the line splitter */
    bool ended;       /* a lone "." line was seen */
    bool in_body;     /* the header section is over */
    bool first_line;
    bool need_separator; /* the header section ended at a non-header line */
    bool overflow;       /* the header section is larger than CLI_HEADER_MAX */
    size_t col;          /* body: octets on the current output line */
    sbuf line;           /* header phase: the current line */
    sbuf hdr;            /* the fields, each line CRLF-ended */
    cli_field *fields;
    size_t nfields, fcap;
    sbuf *out; /* body bytes (CRLF, dot-stuffed, wrapped) go here */
} cli_input;

void cli_input_init(cli_input *in, bool ignore_dots, sbuf *out);
void cli_input_free(cli_input *in);
/*
 * Feeds raw input. Returns the bytes consumed: all, or fewer once the
 * end (a lone ".") was seen or the header section ended (the caller then
 * sends the headers before feeding the rest). -ENOBUFS when the header
 * section overflows, -ENOMEM.
 */
long cli_input_feed(cli_input *in, const char *p, size_t len);
/* End of input: completes the header section or the last body line. */
int cli_input_finish(cli_input *in);

/* Field i's name and whether it is name (any case). */
bool cli_field_is(const cli_input *in, size_t i, const char *name);
/* Field i's body with folding removed (CRLF dropped) into out. */
int cli_field_value(const cli_input *in, size_t i, sbuf *out);
/*
 * Appends field i to out as it goes on the wire: CRLF line ends and lines
 * longer than CLI_LINE_MAX folded with CRLF SP.
 */
int cli_field_emit(const cli_input *in, size_t i, sbuf *out);
/* Appends a header line (name: value, folded the same way) to out. */
int cli_header_emit(sbuf *out, const char *text, size_t len);

/*
 * Appends "From: NAME <addr>" (or "From: addr" when name is NULL or
 * empty) without a line end. The name is written as atoms when it can be,
 * else as a quoted-string, else (not ASCII) as RFC 2047 encoded words.
 */
int cli_from_field(const char *name, const char *addr, sbuf *out);

/* ---- an SMTP client over the local submit socket (cli_smtp.c) ---- */

typedef struct cli_smtp {
    int fd;
    bool verbose;  /* the dialogue on stderr (sendmail -v) */
    char in[8192]; /* bytes read, not yet parsed */
    size_t inlen;
    int code;         /* of the last reply */
    char reply[1024]; /* its last line, "NNN text" */
} cli_smtp;

/* Connects to the unix stream socket at path. 0 or a negative errno. */
int cli_smtp_connect(cli_smtp *s, const char *path, bool verbose);
/*
 * Reads one reply (multi-line aware) within timeout_ms. Returns its code,
 * or -ETIMEDOUT, -ECONNRESET (closed by the server), -EPROTO (malformed).
 */
int cli_smtp_reply(cli_smtp *s, int timeout_ms);
/* Sends one command line (CRLF added) and reads its reply. */
int cli_smtp_cmd(cli_smtp *s, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sends raw bytes (DATA content). 0 or a negative errno. */
int cli_smtp_write(cli_smtp *s, const void *p, size_t n);
void cli_smtp_close(cli_smtp *s);

/* ---- small shared helpers (cli_filter.c) ---- */

/*
 * Copies s to out with invalid UTF-8 replaced by U+FFFD, so JSON output
 * is always valid UTF-8 (envelope text is bytes from the network).
 */
int cli_utf8_clean(const char *s, sbuf *out);

#endif
