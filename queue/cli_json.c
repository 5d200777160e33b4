/*
 * cli_json.c - envelopes as JSON (cJSON) for `queue list --json`, `queue
 * show --json` and `queue stats --json`.
 *
 * The fields named in DESIGN.md are a contract with outside tools; the
 * rest mirror the envelope's keys with '-' as '_'. Times are RFC 3339 UTC
 * strings (null when never), counts are numbers, absent text is null.
 * Envelope text comes from the network (replies of remote servers), so
 * every string is made valid UTF-8 first: one bad byte must not make the
 * whole array unreadable to json.loads or jq.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/cli.h"
#include "sluice/smtp_parse.h"

int cli_json_str(cJSON *o, const char *k, const char *v)
{
    if (!v)
        return cJSON_AddNullToObject(o, k) ? 0 : -ENOMEM;
    sbuf b;
    sbuf_init(&b, 0);
    int rc = cli_utf8_clean(v, &b);
    if (rc == 0 && !cJSON_AddStringToObject(o, k, b.data))
        rc = -ENOMEM;
    sbuf_free(&b);
    return rc;
}

static int json_num(cJSON *o, const char *k, double v)
{
    return cJSON_AddNumberToObject(o, k, v) ? 0 : -ENOMEM;
}

static int json_bool(cJSON *o, const char *k, bool v)
{
    return cJSON_AddBoolToObject(o, k, v) ? 0 : -ENOMEM;
}

/* Unix seconds as RFC 3339, or null for 0 ("never" / "as soon as possible"). */
static int json_time_s(cJSON *o, const char *k, int64_t secs)
{
    if (secs <= 0)
        return cJSON_AddNullToObject(o, k) ? 0 : -ENOMEM;
    char t[40];
    envelope_format_time(secs * 1000000, t, sizeof(t));
    return cJSON_AddStringToObject(o, k, t) ? 0 : -ENOMEM;
}

static int json_notify(cJSON *o, unsigned notify)
{
    if (notify == 0)
        return cJSON_AddNullToObject(o, "notify") ? 0 : -ENOMEM;
    cJSON *a = cJSON_AddArrayToObject(o, "notify");
    if (!a)
        return -ENOMEM;
    static const struct {
        unsigned bit;
        const char *name;
    } bits[] = {{SMTP_NOTIFY_NEVER, "never"},
                {SMTP_NOTIFY_SUCCESS, "success"},
                {SMTP_NOTIFY_FAILURE, "failure"},
                {SMTP_NOTIFY_DELAY, "delay"}};
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (!(notify & bits[i].bit))
            continue;
        cJSON *s = cJSON_CreateString(bits[i].name);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            return -ENOMEM;
        }
    }
    return 0;
}

static cJSON *rcpt_json(const env_rcpt *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int rc = cli_json_str(o, "address", r->addr);
    if (rc == 0 && !cJSON_AddStringToObject(o, "state", rcpt_state_name(r->state)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = json_num(o, "attempts", r->attempts);
    if (rc == 0)
        rc = cli_json_str(o, "last_reply", r->last_reply);
    if (rc == 0)
        rc = json_time_s(o, "last_attempt", r->last_attempt);
    if (rc == 0) {
        /* A final recipient has no next attempt, whatever the file says. */
        bool open = r->state == RCPT_PENDING || r->state == RCPT_DEFERRED;
        rc = json_time_s(o, "next_attempt", open ? r->next_attempt : 0);
    }
    if (rc == 0)
        rc = cli_json_str(o, "relay", r->relay);
    if (rc == 0)
        rc = cli_json_str(o, "dsn_status", r->dsn_status);
    if (rc == 0)
        rc = json_bool(o, "dsn_sent", r->dsn_sent);
    if (rc == 0)
        rc = cli_json_str(o, "orcpt", r->orcpt);
    if (rc == 0)
        rc = json_notify(o, r->notify);
    if (rc) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *cli_envelope_json(const envelope *e, int64_t now_us)
{
    static const char *const rets[] = {NULL, "FULL", "HDRS"};
    static const char *const bodies[] = {NULL, "7BIT", "8BITMIME", "BINARYMIME"};
    char when[40];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;

    envelope_format_time(e->arrival_us, when, sizeof(when));
    int64_t age = (now_us - e->arrival_us) / 1000000;
    int rc = cli_json_str(o, "id", e->id);
    if (rc == 0)
        rc = json_num(o, "size", (double)e->size);
    if (rc == 0)
        rc = cli_json_str(o, "arrival", when);
    if (rc == 0)
        rc = json_num(o, "age", (double)(age > 0 ? age : 0));
    if (rc == 0)
        rc = cli_json_str(o, "sender", e->sender ? e->sender : "");
    if (rc == 0)
        rc = json_bool(o, "hold", e->hold);
    if (rc == 0)
        rc = cli_json_str(o, "state", cli_msg_state_name(cli_msg_state(e)));
    if (rc == 0)
        rc = cli_json_str(o, "client_addr", e->client_addr);
    if (rc == 0)
        rc = cli_json_str(o, "client_name", e->client_name);
    if (rc == 0)
        rc = cli_json_str(o, "helo", e->helo);
    if (rc == 0)
        rc = cli_json_str(o, "proto", e->proto);
    if (rc == 0)
        rc = cli_json_str(o, "auth", e->auth_id);
    if (rc == 0)
        rc = cli_json_str(o, "envid", e->envid);
    if (rc == 0)
        rc = cli_json_str(o, "ret", (unsigned)e->ret < 3 ? rets[e->ret] : NULL);
    if (rc == 0)
        rc = cli_json_str(o, "body", (unsigned)e->body < 4 ? bodies[e->body] : NULL);
    if (rc == 0)
        rc = json_bool(o, "smtputf8", e->smtputf8);
    if (rc == 0)
        rc = json_bool(o, "delay_warned", e->delay_warned);
    if (rc == 0)
        rc = cli_json_str(o, "spf", e->spf);
    cJSON *a = rc == 0 ? cJSON_AddArrayToObject(o, "recipients") : NULL;
    if (!a)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < e->nrcpt; i++) {
        cJSON *r = rcpt_json(&e->rcpts[i]);
        if (!r || !cJSON_AddItemToArray(a, r)) {
            cJSON_Delete(r);
            rc = -ENOMEM;
        }
    }
    if (rc) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int cli_json_print(cJSON *o, FILE *f)
{
    char *s = cJSON_PrintUnformatted(o);
    if (!s)
        return -ENOMEM;
    int rc = fputs(s, f) == EOF ? -EIO : 0;
    free(s);
    return rc;
}
