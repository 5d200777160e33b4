/*
 * cli_show.c - `sluice queue show ID [--body|--json]`.
 *
 * The envelope is printed in its own text form (envelope_serialize), so
 * every field the file holds is shown, new ones included, and the admin
 * sees what `less queue/ID.env` shows - with times also given in human
 * terms. Then the message's header section (bounded; CRLF shown as LF),
 * or with --body the whole message byte for byte as stored.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "sluice/cli.h"

/* The header section shown is cut here: a runaway message is not paged. */
#define SHOW_HEADER_MAX (256u * 1024u)

static void show_usage(FILE *f)
{
    fputs("usage: sluice queue show ID [--body | --json]\n"
          "The envelope as stored (sender, client, every recipient with its state,\n"
          "attempts, last and next attempt, last reply, relay, DSN status), then the\n"
          "message's headers.\n"
          "  --body   print the whole message as stored (raw bytes, CRLF line ends)\n"
          "  --json   envelope and headers as one JSON object\n",
          f);
}

/* A "key: value" line of the text form, with unix times explained. */
static void show_line(const char *line, size_t n, int64_t now_s)
{
    bool rcpt_key = n > 5 && strncmp(line, "rcpt-", 5) == 0;
    printf("%s%.*s", rcpt_key ? "    " : "", (int)n, line);
    const char *colon = memchr(line, ':', n);
    if (!colon)
        goto done;
    size_t klen = (size_t)(colon - line);
    bool next = klen == 17 && strncmp(line, "rcpt-next-attempt", klen) == 0;
    bool last = klen == 17 && strncmp(line, "rcpt-last-attempt", klen) == 0;
    if (!next && !last)
        goto done;
    long long t = strtoll(colon + 1, NULL, 10);
    if (t <= 0) {
        printf(" (%s)", next ? "as soon as possible" : "never");
        goto done;
    }
    char when[40], age[32];
    cli_format_local((int64_t)t * 1000000, when, sizeof(when));
    int64_t d = (int64_t)t - now_s;
    cli_format_age(d < 0 ? -d : d, age, sizeof(age));
    printf(" (%s, %s%s)", when, d < 0 ? age : "in ", d < 0 ? " ago" : age);
done:
    putchar('\n');
}

static int show_envelope(const envelope *e, int64_t now_us)
{
    sbuf text;
    sbuf_init(&text, 0);
    int rc = envelope_serialize(e, &text);
    if (rc) {
        sbuf_free(&text);
        cli_err("%s: cannot format the envelope: %s", e->id, strerror(-rc));
        return CLI_EXIT_FAIL;
    }
    char age[32];
    cli_format_age((now_us - e->arrival_us) / 1000000, age, sizeof(age));
    printf("=== envelope %s (%s in the queue, state %s)\n", e->id, age,
           cli_msg_state_name(cli_msg_state(e)));
    const char *p = text.data, *end = text.data + text.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        /* The version and end lines are the file's framing, not data. */
        if (!(n > 4 && strncmp(p, "end:", 4) == 0) &&
            !(n > 15 && strncmp(p, "sluice-envelope", 15) == 0))
            show_line(p, n, now_us / 1000000);
        p += n + 1;
    }
    sbuf_free(&text);
    return 0;
}

/* Reads the header section of the message (up to the empty line). */
static int read_headers(cli_ctx *c, const char *id, sbuf *out)
{
    int fd, rc = spool_fs_open_message(c->fs, id, &fd);
    if (rc)
        return rc;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        size_t take = (size_t)n;
        if (out->len + take > SHOW_HEADER_MAX)
            take = SHOW_HEADER_MAX - out->len;
        if ((rc = sbuf_append(out, buf, take)) != 0)
            break;
        char *end = memmem(out->data, out->len, "\r\n\r\n", 4);
        if (end) {
            out->len = (size_t)(end - out->data) + 2;
            out->data[out->len] = '\0';
            break;
        }
        if (out->len >= SHOW_HEADER_MAX)
            break;
    }
    close(fd);
    return rc;
}

/* Copies the stored message to stdout, byte for byte. */
static int print_body(cli_ctx *c, const char *id)
{
    int fd, rc = spool_fs_open_message(c->fs, id, &fd);
    if (rc)
        return rc;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            rc = -EIO;
            break;
        }
    }
    close(fd);
    return rc;
}

static void print_crlf_as_lf(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))
            putchar(p[i]);
}

int cli_queue_show(cli_ctx *c, int argc, char **argv)
{
    bool body = false, json = false;
    const char *arg = NULL;
    char id[QUEUE_ID_LEN + 1];

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            show_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--body") == 0) {
            body = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-' || arg) {
            fprintf(stderr, "sluice: queue show: unexpected argument '%s'\n", argv[i]);
            show_usage(stderr);
            return EX_USAGE;
        } else {
            arg = argv[i];
        }
    }
    if (!arg || (body && json)) {
        show_usage(stderr);
        return EX_USAGE;
    }
    int rc = cli_open_spool(c);
    if (rc)
        return rc;
    if (!cli_parse_id(arg, id)) {
        cli_err("no such message: %s", arg);
        return CLI_EXIT_FAIL;
    }
    envelope e;
    envelope_init(&e);
    rc = spool_fs_load(c->fs, id, &e);
    if (rc == -ENOENT) {
        cli_err("no such message: %s", id);
        return CLI_EXIT_FAIL;
    }
    if (rc) {
        cli_err("%s: %s", id,
                rc == -EBADMSG ? "damaged; moved to corrupt/ (see the log)" : strerror(-rc));
        return CLI_EXIT_FAIL;
    }
    int status = 0;
    int64_t now = cli_now_us();
    if (body) {
        rc = print_body(c, id);
        if (rc) {
            cli_err("%s: cannot read the message: %s", id,
                    rc == -ENOENT ? "removed meanwhile" : strerror(-rc));
            status = CLI_EXIT_FAIL;
        }
        envelope_free(&e);
        return status;
    }
    sbuf h;
    sbuf_init(&h, SHOW_HEADER_MAX + 1);
    rc = read_headers(c, id, &h);
    if (rc && rc != -ENOENT) {
        cli_err("%s: cannot read the message: %s", id, strerror(-rc));
        status = CLI_EXIT_FAIL;
    }
    if (json) {
        cJSON *o = cli_envelope_json(&e, now);
        if (!o || cli_json_str(o, "headers", h.data ? h.data : "") != 0 ||
            cli_json_print(o, stdout) != 0) {
            cli_err("out of memory");
            status = CLI_EXIT_FAIL;
        }
        putchar('\n');
        cJSON_Delete(o);
    } else if (show_envelope(&e, now) != 0) {
        status = CLI_EXIT_FAIL;
    } else {
        printf("\n=== headers (%llu bytes in all)\n", (unsigned long long)e.size);
        print_crlf_as_lf(h.data ? h.data : "", h.len);
        if (h.len >= SHOW_HEADER_MAX)
            printf("[... cut at %u KiB; --body shows everything]\n", SHOW_HEADER_MAX / 1024);
    }
    sbuf_free(&h);
    envelope_free(&e);
    return status;
}
