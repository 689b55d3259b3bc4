/* tls.h - the only TLS (and plain TCP) client API the rest of the code sees.
 *
 * One implementation per TLS library (tls_mbedtls.c); callers never include
 * a TLS library header. A connection always verifies the peer: the chain
 * against the configured trust roots and the certificate name against HOST.
 * Minimum protocol version is TLS 1.2.
 *
 * A connection is used by one thread at a time. Timeouts are in
 * milliseconds; each call fails with M2Z_ERR_TIMEOUT when its own budget is
 * spent. Errors carry a human-readable reason (the library's own text) in
 * ERR, which never contains application data. */
#ifndef M2Z_TLS_H
#define M2Z_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tls_conf;   /* trust roots + RNG; shareable by sequential connections */
struct tls_conn;   /* one TCP connection, with or without TLS on top */

/* Load trust roots from CA_FILE (PEM), or from the system store when CA_FILE
 * is NULL or "" (/etc/ssl/certs/ca-certificates.crt, else /etc/ssl/certs/).
 * Returns 0 and a conf the caller frees with tls_conf_free(), or
 * M2Z_ERR_CONFIG / M2Z_ERR_NOMEM / M2Z_ERR_TLS with ERR set. */
int tls_conf_new(const char *ca_file, struct tls_conf **out, char *err, size_t errlen);
void tls_conf_free(struct tls_conf *conf);

/* Present CERT_FILE (PEM chain) with KEY_FILE (PEM, unencrypted) as our
 * client certificate on every connection made with CONF. 0, or
 * M2Z_ERR_CONFIG with ERR set. */
int tls_conf_client_cert(struct tls_conf *conf, const char *cert_file, const char *key_file,
			 char *err, size_t errlen);

/* Accept a peer certificate whose name does not match HOST (the chain is
 * still verified against the trust roots): the [mqtt] tls_insecure switch,
 * for brokers reached by an address their certificate does not name. */
void tls_conf_skip_name_check(struct tls_conf *conf);

/* Resolve HOST, connect to each address in turn (non-blocking, within
 * TIMEOUT_MS overall), then, when USE_TLS, do the handshake with SNI and
 * name check against HOST. CONF may be NULL when !USE_TLS; it is borrowed
 * and must outlive the connection. CANCEL_FD is -1, or a descriptor (owned
 * by the caller, outliving the connection) that becomes readable to abort
 * every wait of this connection at once with M2Z_ERR_CLOSED - for a quick
 * shutdown. Returns 0 and *OUT (free with tls_close), or M2Z_ERR_NET /
 * M2Z_ERR_TLS / M2Z_ERR_TIMEOUT / M2Z_ERR_CLOSED / M2Z_ERR_NOMEM with ERR
 * set. */
int tls_connect(struct tls_conf *conf, const char *host, uint16_t port,
		int64_t timeout_ms, bool use_tls, int cancel_fd, struct tls_conn **out,
		char *err, size_t errlen);

/* Write all LEN bytes. 0 or M2Z_ERR_NET / M2Z_ERR_TLS / M2Z_ERR_TIMEOUT /
 * M2Z_ERR_CLOSED. */
int tls_write_all(struct tls_conn *c, const void *data, size_t len,
		  int64_t timeout_ms, char *err, size_t errlen);

/* Read up to LEN bytes. Returns the count (> 0), 0 at end of stream (peer
 * closed, or TLS close_notify), or a negative M2Z_ERR_*. */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t len, int64_t timeout_ms,
		 char *err, size_t errlen);

/* The connection's socket, for poll(2), shutdown(2) or a plain-TCP read(2)
 * by the owner (then tls_read is not used on it). Owned by C. */
int tls_fd(const struct tls_conn *c);

/* Bytes already decrypted and buffered inside the TLS layer, which a poll
 * on tls_fd() would not see (0 for plain TCP). */
size_t tls_pending(struct tls_conn *c);

/* Sends close_notify (best effort) and frees C. NULL is fine. */
void tls_close(struct tls_conn *c);

#endif
