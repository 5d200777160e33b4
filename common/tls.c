/*
 * tls.c - OpenSSL over memory BIOs (see include/sluice/tls.h).
 */
#include "sluice/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites with forward secrecy and AEAD only (1.3 suites are all fine). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"       \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", what, buf);
    ERR_clear_error();
}

static int ctx_common(SSL_CTX *ctx)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS))
        return -EINVAL;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle sessions hold less memory */
    return 0;
}

int tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out, char *err,
                       size_t errlen)
{
    char what[600];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    *out = NULL;
    if (!ctx) {
        ssl_err(err, errlen, "SSL_CTX_new");
        return -ENOMEM;
    }
    if (ctx_common(ctx) < 0) {
        ssl_err(err, errlen, "TLS settings");
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(what, sizeof(what), "certificate %s", cert_file);
        ssl_err(err, errlen, what);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof(what), "key %s", key_file);
        ssl_err(err, errlen, what);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "key %s does not match certificate %s", key_file, cert_file);
        ssl_err(err, errlen, what);
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    /* No session tickets: no ticket key to rotate, nothing gained for SMTP. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    *out = ctx;
    return 0;
}

int tls_client_ctx_new(bool verify, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    *out = NULL;
    if (!ctx)
        return -ENOMEM;
    if (ctx_common(ctx) < 0) {
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    if (verify) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            SSL_CTX_free(ctx);
            return -EINVAL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    *out = ctx;
    return 0;
}

int tls_conn_init(tls_conn *t, SSL_CTX *ctx, bool server, const char *sni, bool verify_name)
{
    memset(t, 0, sizeof(*t));
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        memset(t, 0, sizeof(*t));
        return -ENOMEM;
    }
    /* An empty memory BIO must say "retry", not EOF. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        if (sni && sni[0]) {
            SSL_set_tlsext_host_name(t->ssl, sni);
            if (verify_name && SSL_set1_host(t->ssl, sni) != 1) {
                tls_conn_free(t);
                return -EINVAL;
            }
        }
        SSL_set_connect_state(t->ssl);
    }
    return 0;
}

void tls_conn_free(tls_conn *t)
{
    if (t->ssl)
        SSL_free(t->ssl);
    memset(t, 0, sizeof(*t));
}

int tls_conn_feed(tls_conn *t, const void *p, size_t n)
{
    while (n > 0) {
        int chunk = n > 1u << 30 ? 1 << 30 : (int)n;
        int w = BIO_write(t->rbio, p, chunk);
        if (w <= 0)
            return -ENOMEM;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

int tls_conn_handshake(tls_conn *t, char *err, size_t errlen)
{
    if (t->handshake_done)
        return 1;
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->handshake_done = true;
        return 1;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_SSL && SSL_get_verify_result(t->ssl) != X509_V_OK && err) {
        snprintf(err, errlen, "certificate verification failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
        ERR_clear_error();
        return -EPROTO;
    }
    ssl_err(err, errlen, "handshake");
    return -EPROTO;
}

int tls_conn_read(tls_conn *t, void *buf, size_t n)
{
    ERR_clear_error();
    int chunk = n > 1u << 30 ? 1 << 30 : (int)n;
    int rc = SSL_read(t->ssl, buf, chunk);
    if (rc > 0)
        return rc;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return TLS_EOF;
    ERR_clear_error();
    return -EPROTO;
}

int tls_conn_write(tls_conn *t, const void *p, size_t n)
{
    while (n > 0) {
        ERR_clear_error();
        int chunk = n > 1u << 30 ? 1 << 30 : (int)n;
        int rc = SSL_write(t->ssl, p, chunk);
        if (rc <= 0) {
            ERR_clear_error();
            return -EPROTO;
        }
        p = (const char *)p + rc;
        n -= (size_t)rc;
    }
    return 0;
}

size_t tls_conn_pending(const tls_conn *t)
{
    return t->wbio ? BIO_ctrl_pending(t->wbio) : 0;
}

size_t tls_conn_take(tls_conn *t, void *buf, size_t n)
{
    int chunk = n > 1u << 30 ? 1 << 30 : (int)n;
    int rc = BIO_read(t->wbio, buf, chunk);
    return rc > 0 ? (size_t)rc : 0;
}

const char *tls_conn_version(const tls_conn *t)
{
    return SSL_get_version(t->ssl);
}

const char *tls_conn_cipher(const tls_conn *t)
{
    return SSL_get_cipher_name(t->ssl);
}

int tls_conn_bits(const tls_conn *t)
{
    return SSL_get_cipher_bits(t->ssl, NULL);
}
