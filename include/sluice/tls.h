/*
 * tls.h - TLS for libuv streams through OpenSSL memory BIOs.
 *
 * OpenSSL never touches a socket: ciphertext read from the network is fed
 * in with tls_conn_feed, plaintext comes out of tls_conn_read, plaintext
 * written with tls_conn_write becomes ciphertext that tls_conn_take hands
 * back for uv_write. Nothing here blocks. Used by sluice-smtpd (server) and
 * sluice-delivery (client). TLS 1.2 and 1.3 only.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

/*
 * Server context from a PEM chain and key. On failure returns a negative
 * errno-style code and puts the reason (OpenSSL's, with the file) in err.
 */
int tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out, char *err,
                       size_t errlen);
/* Client context; verify: check the peer's chain against the system CAs. */
int tls_client_ctx_new(bool verify, SSL_CTX **out);

typedef struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
    bool handshake_done;
} tls_conn;

/* sni: client side only, the name to send and (with verify) to check. */
int tls_conn_init(tls_conn *t, SSL_CTX *ctx, bool server, const char *sni, bool verify_name);
void tls_conn_free(tls_conn *t);

/* Ciphertext from the network. 0 or -ENOMEM. */
int tls_conn_feed(tls_conn *t, const void *p, size_t n);

/*
 * Advances the handshake. 1 = done, 0 = needs more input (send what
 * tls_conn_take gives first), negative = failed (reason in err).
 */
int tls_conn_handshake(tls_conn *t, char *err, size_t errlen);

/* Plaintext out: > 0 bytes, 0 = needs more input, TLS_EOF, or < 0 error. */
#define TLS_EOF (-4095)
int tls_conn_read(tls_conn *t, void *buf, size_t n);

/* Plaintext in; all of it is taken (memory BIO). 0 or negative. */
int tls_conn_write(tls_conn *t, const void *p, size_t n);

/* Ciphertext waiting to be sent, and taking it. */
size_t tls_conn_pending(const tls_conn *t);
size_t tls_conn_take(tls_conn *t, void *buf, size_t n);

/* "TLSv1.3", "TLS_AES_256_GCM_SHA384", bits; valid after the handshake. */
const char *tls_conn_version(const tls_conn *t);
const char *tls_conn_cipher(const tls_conn *t);
int tls_conn_bits(const tls_conn *t);

#endif
