/*
 * smtp_client_data.c - the message body after "354": read from the spool
 * file in SMTPC_CHUNK pieces on libuv's thread pool (file reads never block
 * the loop), dot-stuffed, written, and the next piece read only when every
 * write has completed. So one message costs at most a chunk and its
 * stuffed copy in memory, however large it is, and a slow peer slows the
 * reading instead of filling memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_int.h"
#include "sluice/log.h"

enum { ST_BOL = 0, ST_MID, ST_CR };

size_t dlv_smtp_stuff(int *state, const char *in, size_t len, char *out)
{
    size_t o = 0;
    int st = *state;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (st == ST_CR) {
            out[o++] = '\r';
            out[o++] = '\n';
            st = ST_BOL;
            if (ch == '\n')
                continue;
        }
        if (ch == '\r') {
            st = ST_CR; /* CRLF, or a bare CR that goes out as CRLF */
            continue;
        }
        if (ch == '\n') { /* a bare LF */
            out[o++] = '\r';
            out[o++] = '\n';
            st = ST_BOL;
            continue;
        }
        if (st == ST_BOL && ch == '.')
            out[o++] = '.';
        out[o++] = ch;
        st = ST_MID;
    }
    *state = st;
    return o;
}

size_t dlv_smtp_stuff_end(int *state, char *out)
{
    size_t o = 0;
    if (*state != ST_BOL) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    *state = ST_BOL;
    return o + 3;
}

/* The stuffed copy of a chunk lives after the chunk itself in j->rbuf. */
#define OUT_OFF SMTPC_CHUNK
#define RBUF_SIZE (SMTPC_CHUNK + 2 * SMTPC_CHUNK + 8)

static void read_next(smtpc_job *j);

/* The file cannot be read: the transaction is abandoned without its final dot. */
static void data_fail(smtpc_job *j, int err)
{
    smtpc_conn *conn = j->conn;
    char text[DLV_REPLY_MAX];
    snprintf(text, sizeof(text), "error reading the queued message: %s", strerror(-err));
    log_err("%s: %s", j->req->id ? j->req->id : "-", text);
    j->conn = NULL;
    if (conn) {
        conn->job = NULL;
        conn->broken = true;
        smtpc_conn_close(conn);
    }
    smtpc_rcpt_set_rest(j, 0, "4.3.0", text, conn);
    smtpc_job_finish(j);
}

static void on_fs_read(uv_fs_t *fs)
{
    smtpc_job *j = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    j->fs_active = false;
    smtpc_conn *conn = j->conn;
    if (j->finishing || !conn || conn->closing) {
        smtpc_job_try_complete(j);
        return;
    }
    if (n < 0) {
        data_fail(j, (int)n);
        return;
    }
    dlv_smtp *c = j->c;
    char *out = j->rbuf + OUT_OFF;
    size_t m;
    if (n == 0) {
        m = dlv_smtp_stuff_end(&j->stuff_state, out);
        j->data_done = true;
        smtpc_conn_timer(conn, c->o.timeouts.data_end_ms, "sending end of data");
    } else {
        j->off += (uint64_t)n;
        m = dlv_smtp_stuff(&j->stuff_state, j->rbuf, (size_t)n, out);
        conn->drain_notify = true;
        smtpc_conn_timer(conn, c->o.timeouts.data_block_ms, "sending message body");
    }
    int rc = smtpc_conn_write(conn, out, m);
    if (rc < 0)
        smtpc_proto_error(conn, rc, NULL);
}

static void read_next(smtpc_job *j)
{
    uv_buf_t b = uv_buf_init(j->rbuf, SMTPC_CHUNK);
    j->fs.data = j;
    int rc = uv_fs_read(j->c->loop, &j->fs, j->req->fd, &b, 1, (int64_t)j->off, on_fs_read);
    if (rc < 0) {
        data_fail(j, rc);
        return;
    }
    j->fs_active = true;
}

void smtpc_data_start(smtpc_job *j)
{
    if (!j->rbuf && !(j->rbuf = malloc(RBUF_SIZE))) {
        data_fail(j, -ENOMEM);
        return;
    }
    j->off = 0;
    j->stuff_state = ST_BOL;
    j->data_done = false;
    smtpc_conn_timer(j->conn, j->c->o.timeouts.data_block_ms, "sending message body");
    read_next(j);
}

void smtpc_data_drained(smtpc_job *j)
{
    if (!j->fs_active && !j->finishing)
        read_next(j);
}
