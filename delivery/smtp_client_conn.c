/*
 * smtp_client_conn.c - one outbound TCP connection: connect with a
 * timeout, one timer for whatever it waits for, reads split into reply
 * lines, writes (through TLS over memory BIOs once STARTTLS is done), and
 * close. The SMTP meaning of it all is in smtp_client_proto.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_int.h"
#include "sluice/log.h"

typedef struct smtpc_wreq {
    uv_write_t w;
    smtpc_conn *conn;
    char data[];
} smtpc_wreq;

static void on_close(uv_handle_t *h)
{
    smtpc_conn *conn = h->data;
    if (--conn->open_handles > 0)
        return;
    dlv_smtp *c = conn->c;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        c->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    c->nconns--;
    if (conn->tls_init)
        tls_conn_free(&conn->tls);
    sbuf_free(&conn->in);
    free(conn->key);
    free(conn);
    smtpc_client_conn_gone(c);
}

void smtpc_conn_close(smtpc_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = true;
    conn->cached = false;
    conn->expect = X_NONE;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    uv_timer_stop(&conn->timer);
    uv_close((uv_handle_t *)&conn->tcp, on_close);
    uv_close((uv_handle_t *)&conn->timer, on_close);
}

static void on_write(uv_write_t *w, int status)
{
    smtpc_wreq *wr = (smtpc_wreq *)w;
    smtpc_conn *conn = wr->conn;
    free(wr);
    conn->writes--;
    if (conn->closing)
        return;
    if (status < 0) {
        smtpc_proto_error(conn, status, NULL);
        return;
    }
    if (conn->writes == 0 && conn->drain_notify) {
        conn->drain_notify = false;
        smtpc_proto_drained(conn);
    }
}

static int raw_write(smtpc_conn *conn, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    smtpc_wreq *wr = malloc(sizeof(*wr) + len);
    if (!wr)
        return -ENOMEM;
    memcpy(wr->data, p, len);
    wr->conn = conn;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    int rc = uv_write(&wr->w, (uv_stream_t *)&conn->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(wr);
        return rc;
    }
    conn->writes++;
    return 0;
}

/* Hands the ciphertext OpenSSL produced to the socket. */
static int tls_flush(smtpc_conn *conn)
{
    size_t n;
    while ((n = tls_conn_pending(&conn->tls)) > 0) {
        smtpc_wreq *wr = malloc(sizeof(*wr) + n);
        if (!wr)
            return -ENOMEM;
        size_t got = tls_conn_take(&conn->tls, wr->data, n);
        if (got == 0) {
            free(wr);
            return -EPROTO;
        }
        wr->conn = conn;
        uv_buf_t b = uv_buf_init(wr->data, (unsigned)got);
        int rc = uv_write(&wr->w, (uv_stream_t *)&conn->tcp, &b, 1, on_write);
        if (rc < 0) {
            free(wr);
            return rc;
        }
        conn->writes++;
    }
    return 0;
}

int smtpc_conn_write(smtpc_conn *conn, const void *p, size_t len)
{
    if (conn->closing)
        return -ECANCELED;
    if (!conn->tls_on)
        return raw_write(conn, p, len);
    if (tls_conn_write(&conn->tls, p, len) < 0)
        return -EPROTO;
    return tls_flush(conn);
}

int smtpc_conn_start_tls(smtpc_conn *conn)
{
    dlv_smtp *c = conn->c;
    bool verify = c->o.tls == TLS_VERIFY;
    /* SNI and the name check use the MX host name; an address literal has none. */
    int rc = tls_conn_init(&conn->tls, verify ? c->ctx_verify : c->ctx_any, false,
                           conn->literal ? NULL : conn->host, verify && !conn->literal);
    if (rc < 0)
        return rc;
    conn->tls_init = true;
    char err[256];
    rc = tls_conn_handshake(&conn->tls, err, sizeof(err));
    if (rc < 0)
        return rc;
    return tls_flush(conn);
}

static void on_timer(uv_timer_t *t)
{
    smtpc_conn *conn = t->data;
    if (conn->closing)
        return;
    if (!conn->connected) {
        char text[DLV_REPLY_MAX];
        snprintf(text, sizeof(text), "connect to %s: Connection timed out", conn->relay);
        if (conn->job)
            smtpc_job_candidate_failed(conn->job, 0, "4.4.1", text);
        else
            smtpc_conn_close(conn);
        return;
    }
    if (conn->expect == X_QUIT || (!conn->job && conn->expect == X_NONE && !conn->cached)) {
        smtpc_conn_close(conn);
        return;
    }
    if (conn->cached && conn->expect == X_NONE && !conn->job) {
        smtpc_conn_quit(conn); /* idle long enough */
        return;
    }
    smtpc_proto_error(conn, UV_ETIMEDOUT, NULL);
}

void smtpc_conn_timer(smtpc_conn *conn, unsigned ms, const char *doing)
{
    if (conn->closing)
        return;
    conn->doing = doing;
    if (ms == 0)
        uv_timer_stop(&conn->timer);
    else
        uv_timer_start(&conn->timer, on_timer, ms, 0);
}

void smtpc_conn_quit(smtpc_conn *conn)
{
    if (conn->closing || conn->expect == X_QUIT)
        return;
    conn->cached = false;
    conn->broken = true;
    if (!conn->connected) {
        smtpc_conn_close(conn);
        return;
    }
    conn->expect = X_QUIT;
    smtpc_conn_timer(conn, conn->c->o.timeouts.quit_ms, "sending QUIT");
    if (smtpc_conn_write(conn, "QUIT\r\n", 6) < 0)
        smtpc_conn_close(conn);
}

/* Parses the plaintext received so far into reply lines. */
static void process_input(smtpc_conn *conn)
{
    while (!conn->closing && conn->in.len > 0) {
        size_t ll = 0;
        long n = dlv_smtp_next_line(conn->in.data, conn->in.len, &ll);
        if (n == 0)
            return;
        if (n < 0) {
            smtpc_proto_error(conn, -E2BIG, "reply line too long");
            return;
        }
        if (conn->expect == X_NONE) {
            /* Unasked-for text: an idle peer saying 421 before it hangs up, or garbage. */
            if (!conn->job)
                smtpc_conn_close(conn);
            else
                smtpc_proto_error(conn, -EPROTO, "unexpected text from the server");
            return;
        }
        const char *text = NULL;
        size_t tl = 0;
        int rc = dlv_smtp_reply_line(&conn->reply, conn->in.data, ll, &text, &tl);
        if (rc < 0) {
            smtpc_proto_error(conn, rc, rc == -E2BIG ? "reply too long" : "malformed reply");
            return;
        }
        if (conn->expect == X_EHLO && conn->reply.nlines > 1)
            smtpc_proto_ehlo_line(conn, text, tl);
        sbuf_consume(&conn->in, (size_t)n);
        if (rc == 1)
            smtpc_proto_reply(conn);
    }
}

static void take_plain(smtpc_conn *conn, const char *p, size_t n)
{
    if (sbuf_append(&conn->in, p, n) < 0) {
        smtpc_proto_error(conn, -E2BIG, "too much text from the server");
        return;
    }
    process_input(conn);
}

static void on_tls_read(smtpc_conn *conn, const char *p, size_t n)
{
    if (tls_conn_feed(&conn->tls, p, n) < 0) {
        smtpc_proto_error(conn, -ENOMEM, NULL);
        return;
    }
    if (!conn->tls_on) {
        char err[256] = "";
        int rc = tls_conn_handshake(&conn->tls, err, sizeof(err));
        int frc = tls_flush(conn);
        if (rc == 0 && frc == 0)
            return;
        if (rc < 0 || frc < 0) {
            smtpc_proto_tls_done(conn, rc < 0 ? rc : frc, err[0] ? err : "handshake failed");
            return;
        }
        conn->tls_on = true;
        snprintf(conn->tls_version, sizeof(conn->tls_version), "%s", tls_conn_version(&conn->tls));
        smtpc_proto_tls_done(conn, 0, NULL);
        if (conn->closing)
            return;
    }
    char buf[16384];
    for (;;) {
        int r = tls_conn_read(&conn->tls, buf, sizeof(buf));
        if (tls_flush(conn) < 0) { /* TLS 1.3 may answer a key update */
            smtpc_proto_error(conn, -EPROTO, NULL);
            return;
        }
        if (r == 0)
            return;
        if (r == TLS_EOF) {
            smtpc_proto_error(conn, UV_EOF, NULL);
            return;
        }
        if (r < 0) {
            smtpc_proto_error(conn, -EPROTO, "TLS error");
            return;
        }
        take_plain(conn, buf, (size_t)r);
        if (conn->closing)
            return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    smtpc_conn *conn = h->data;
    *buf = uv_buf_init(conn->rbuf, sizeof(conn->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    smtpc_conn *conn = s->data;
    if (conn->closing || nread == 0)
        return;
    if (nread < 0) {
        smtpc_proto_error(conn, (int)nread, NULL);
        return;
    }
    if (conn->tls_init)
        on_tls_read(conn, buf->base, (size_t)nread);
    else
        take_plain(conn, buf->base, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
    smtpc_conn *conn = req->data;
    if (status == UV_ECANCELED || conn->closing)
        return;
    uv_timer_stop(&conn->timer);
    if (status < 0) {
        char text[DLV_REPLY_MAX];
        snprintf(text, sizeof(text), "connect to %s: %s", conn->relay, strerror(-status));
        if (conn->job)
            smtpc_job_candidate_failed(conn->job, 0, "4.4.1", text);
        else
            smtpc_conn_close(conn);
        return;
    }
    conn->connected = true;
    int rc = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
    if (rc < 0) {
        smtpc_proto_error(conn, rc, NULL);
        return;
    }
    smtpc_proto_connected(conn);
}

void smtpc_relay_format(const dlv_route_cand *cand, char *out, size_t outsz)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (cand->addr.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&cand->addr)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&cand->addr)->sin6_addr, ip, sizeof(ip));
    snprintf(out, outsz, "%.200s[%s]:%u", cand->host, ip, cand->port);
}

int smtpc_conn_open(dlv_smtp *c, smtpc_job *j, const dlv_route_cand *cand, bool no_tls,
                    smtpc_conn **out)
{
    smtpc_conn *conn = calloc(1, sizeof(*conn));
    if (!conn)
        return -ENOMEM;
    conn->key = strdup(j->req->nexthop);
    if (!conn->key) {
        free(conn);
        return -ENOMEM;
    }
    conn->c = c;
    sbuf_init(&conn->in, SMTPC_IN_LIMIT);
    snprintf(conn->host, sizeof(conn->host), "%s", cand->host);
    conn->literal = cand->literal;
    conn->no_tls = no_tls;
    smtpc_relay_format(cand, conn->relay, sizeof(conn->relay));

    int rc = uv_tcp_init(c->loop, &conn->tcp);
    if (rc < 0) {
        free(conn->key);
        free(conn);
        return rc;
    }
    uv_timer_init(c->loop, &conn->timer);
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->connect_req.data = conn;
    conn->open_handles = 2;
    conn->next = c->conns;
    if (c->conns)
        c->conns->prev = conn;
    c->conns = conn;
    c->nconns++;
    conn->born_ms = smtpc_now_ms(c);

    uv_tcp_nodelay(&conn->tcp, 1);
    rc = uv_tcp_connect(&conn->connect_req, &conn->tcp, (const struct sockaddr *)&cand->addr,
                        on_connect);
    if (rc < 0) {
        smtpc_conn_close(conn);
        return rc;
    }
    c->stats.connections++;
    conn->job = j;
    smtpc_conn_timer(conn, c->o.timeouts.connect_ms, "connecting");
    log_debug("%s: connecting to %s", j->req->id ? j->req->id : "-", conn->relay);
    *out = conn;
    return 0;
}
