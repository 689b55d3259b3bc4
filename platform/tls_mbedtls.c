/* tls_mbedtls.c - tls.h on mbedTLS (2.28 and 3.x).
 *
 * The only file that includes mbedTLS TLS headers. The socket is ours
 * (non-blocking, poll with a per-call deadline), handed to mbedTLS through
 * our own bio callbacks, so connect, handshake, writes and reads all honour
 * the caller's time budget without relying on the library's timers. */
#include "tls.h"
#include "err.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/version.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
#include <psa/crypto.h>
#endif

#define CLOSE_NOTIFY_MS 200

struct tls_conf {
	mbedtls_ssl_config ssl;
	mbedtls_x509_crt ca;
	mbedtls_x509_crt own_cert;   /* client certificate, when configured */
	mbedtls_pk_context own_key;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
};

struct tls_conn {
	int fd;
	bool use_tls;
	bool handshake_done;
	int64_t deadline_ms;   /* of the call in progress */
	int cancel_fd;         /* -1 or readable when the owner shuts down */
	bool cancelled;
	int sys_errno;         /* errno behind the last socket failure */
	mbedtls_ssl_context ssl;
};

/* ---- helpers ------------------------------------------------------------ */

static int64_t deadline_after(int64_t timeout_ms)
{
	return mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
}

/* Library error -> "what: library text (-0xNNNN)". */
static void set_tls_err(char *err, size_t errlen, const char *what, int ret)
{
	char text[160];

	mbedtls_strerror(ret, text, sizeof(text));
	snprintf(err, errlen, "%s: %s (-0x%04x)", what, text, (unsigned)-ret);
}

#define WAIT_CANCELLED (-2)

/* Wait until FD is ready for EVENTS, DEADLINE passes or CANCEL_FD (-1 =
 * none) turns readable. 1 ready, 0 timed out, -1 error (errno set),
 * WAIT_CANCELLED. */
static int wait_fd(int fd, short events, int64_t deadline, int cancel_fd)
{
	for (;;) {
		int64_t left = deadline - mono_ms();
		struct pollfd p[2] = { { .fd = fd, .events = events },
				       { .fd = cancel_fd, .events = POLLIN } };
		int r;

		if (left <= 0)
			return 0;
		r = poll(p, cancel_fd >= 0 ? 2 : 1, left > 60000 ? 60000 : (int)left);
		if (r > 0 && cancel_fd >= 0 && p[1].revents)
			return WAIT_CANCELLED;
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* ---- configuration ------------------------------------------------------ */

static int load_ca(struct tls_conf *tc, const char *ca_file, char *err, size_t errlen)
{
	int ret;

	if (ca_file && *ca_file) {
		ret = mbedtls_x509_crt_parse_file(&tc->ca, ca_file);
		if (ret < 0) {
			set_tls_err(err, errlen, ca_file, ret);
			return M2Z_ERR_CONFIG;
		}
	} else {
		ret = mbedtls_x509_crt_parse_file(&tc->ca, SYSTEM_CA_FILE);
		if (ret < 0)
			ret = mbedtls_x509_crt_parse_path(&tc->ca, SYSTEM_CA_DIR);
		if (ret < 0) {
			set_tls_err(err, errlen, "system trust store", ret);
			return M2Z_ERR_CONFIG;
		}
	}
	/* A positive return counts certificates that failed to parse; a file
	 * with none usable already failed above (the chain's fields are
	 * private in 3.x, so we do not count them ourselves). */
	return 0;
}

static int setup_ssl_conf(struct tls_conf *tc, char *err, size_t errlen)
{
	static const char pers[] = "mqtt2zeebe-tls";
	int ret;

	ret = mbedtls_ctr_drbg_seed(&tc->drbg, mbedtls_entropy_func, &tc->entropy,
				    (const unsigned char *)pers, sizeof(pers) - 1);
	if (ret) {
		set_tls_err(err, errlen, "RNG seed", ret);
		return M2Z_ERR_TLS;
	}
	ret = mbedtls_ssl_config_defaults(&tc->ssl, MBEDTLS_SSL_IS_CLIENT,
					  MBEDTLS_SSL_TRANSPORT_STREAM,
					  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret) {
		set_tls_err(err, errlen, "TLS config", ret);
		return M2Z_ERR_TLS;
	}
#if MBEDTLS_VERSION_NUMBER >= 0x03010000   /* min_version is deprecated there */
	mbedtls_ssl_conf_min_tls_version(&tc->ssl, MBEDTLS_SSL_VERSION_TLS1_2);
#else
	mbedtls_ssl_conf_min_version(&tc->ssl, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
#endif
	mbedtls_ssl_conf_authmode(&tc->ssl, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&tc->ssl, &tc->ca, NULL);
	mbedtls_ssl_conf_rng(&tc->ssl, mbedtls_ctr_drbg_random, &tc->drbg);
	return 0;
}

int tls_conf_new(const char *ca_file, struct tls_conf **out, char *err, size_t errlen)
{
	struct tls_conf *tc;
	int rc;

	*out = NULL;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_PSA_CRYPTO_C)
	/* 3.x routes TLS 1.3 and much of the crypto through PSA. */
	if (psa_crypto_init() != PSA_SUCCESS) {
		snprintf(err, errlen, "psa_crypto_init failed");
		return M2Z_ERR_TLS;
	}
#endif
	tc = calloc(1, sizeof(*tc));
	if (!tc) {
		snprintf(err, errlen, "out of memory");
		return M2Z_ERR_NOMEM;
	}
	mbedtls_ssl_config_init(&tc->ssl);
	mbedtls_x509_crt_init(&tc->ca);
	mbedtls_x509_crt_init(&tc->own_cert);
	mbedtls_pk_init(&tc->own_key);
	mbedtls_entropy_init(&tc->entropy);
	mbedtls_ctr_drbg_init(&tc->drbg);

	rc = load_ca(tc, ca_file, err, errlen);
	if (rc == 0)
		rc = setup_ssl_conf(tc, err, errlen);
	if (rc) {
		tls_conf_free(tc);
		return rc;
	}
	*out = tc;
	return 0;
}

void tls_conf_free(struct tls_conf *tc)
{
	if (!tc)
		return;
	mbedtls_ssl_config_free(&tc->ssl);
	mbedtls_ctr_drbg_free(&tc->drbg);
	mbedtls_entropy_free(&tc->entropy);
	mbedtls_x509_crt_free(&tc->ca);
	mbedtls_x509_crt_free(&tc->own_cert);
	mbedtls_pk_free(&tc->own_key);
	free(tc);
}

int tls_conf_client_cert(struct tls_conf *tc, const char *cert_file, const char *key_file,
			 char *err, size_t errlen)
{
	int ret = mbedtls_x509_crt_parse_file(&tc->own_cert, cert_file);

	if (ret < 0) {
		set_tls_err(err, errlen, cert_file, ret);
		return M2Z_ERR_CONFIG;
	}
#if MBEDTLS_VERSION_NUMBER >= 0x03000000   /* 3.x takes an RNG for blinding */
	ret = mbedtls_pk_parse_keyfile(&tc->own_key, key_file, NULL, mbedtls_ctr_drbg_random,
				       &tc->drbg);
#else
	ret = mbedtls_pk_parse_keyfile(&tc->own_key, key_file, NULL);
#endif
	if (ret < 0) {
		set_tls_err(err, errlen, key_file, ret);
		return M2Z_ERR_CONFIG;
	}
	ret = mbedtls_ssl_conf_own_cert(&tc->ssl, &tc->own_cert, &tc->own_key);
	if (ret) {
		set_tls_err(err, errlen, "client certificate", ret);
		return M2Z_ERR_CONFIG;
	}
	return 0;
}

/* Verify callback: forgive only a name mismatch on the peer's own
 * certificate; every chain error still fails the handshake. */
static int forgive_name(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	(void)ctx;
	(void)crt;
	if (depth == 0)
		*flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
	return 0;
}

void tls_conf_skip_name_check(struct tls_conf *tc)
{
	mbedtls_ssl_conf_verify(&tc->ssl, forgive_name, NULL);
}

/* ---- socket bio ----------------------------------------------------------- */

/* Returns bytes sent, or a negative mbedTLS code (used for plain TCP too). */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tls_conn *c = ctx;

	for (;;) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		int w;

		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			c->sys_errno = errno;
			return errno == EPIPE || errno == ECONNRESET ?
				MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
		}
		w = wait_fd(c->fd, POLLOUT, c->deadline_ms, c->cancel_fd);
		c->cancelled = w == WAIT_CANCELLED;
		if (w == 0 || c->cancelled)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		if (w < 0) {
			c->sys_errno = errno;
			return MBEDTLS_ERR_NET_SEND_FAILED;
		}
	}
}

/* Returns bytes read, 0 at EOF, or a negative mbedTLS code. */
static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tls_conn *c = ctx;

	for (;;) {
		ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
		int w;

		if (n >= 0)
			return (int)n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			c->sys_errno = errno;
			return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
						   : MBEDTLS_ERR_NET_RECV_FAILED;
		}
		w = wait_fd(c->fd, POLLIN, c->deadline_ms, c->cancel_fd);
		c->cancelled = w == WAIT_CANCELLED;
		if (w == 0 || c->cancelled)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		if (w < 0) {
			c->sys_errno = errno;
			return MBEDTLS_ERR_NET_RECV_FAILED;
		}
	}
}

/* Our code for a failed bio/ssl call, with the reason in ERR. */
static int io_err(struct tls_conn *c, int ret, const char *what, char *err, size_t errlen)
{
	if (c->cancelled) {
		snprintf(err, errlen, "%s: cancelled", what);
		return M2Z_ERR_CLOSED;
	}
	if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
		snprintf(err, errlen, "%s: timed out", what);
		return M2Z_ERR_TIMEOUT;
	}
	if (ret == MBEDTLS_ERR_NET_SEND_FAILED || ret == MBEDTLS_ERR_NET_RECV_FAILED ||
	    ret == MBEDTLS_ERR_NET_CONN_RESET) {
		snprintf(err, errlen, "%s: %s", what,
			 c->sys_errno ? strerror(c->sys_errno) : "connection reset");
		return M2Z_ERR_NET;
	}
	set_tls_err(err, errlen, what, ret);
	return M2Z_ERR_TLS;
}

/* ---- connect ------------------------------------------------------------ */

/* Non-blocking connect of one address within BUDGET_MS. fd or -1 (ERRNO_OUT). */
static int connect_one(const struct addrinfo *ai, int64_t budget_ms, int cancel_fd,
		       int *errno_out)
{
	int fd, soerr = 0, w;
	socklen_t sl = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0) {
		*errno_out = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		*errno_out = errno;
		close(fd);
		return -1;
	}
	w = wait_fd(fd, POLLOUT, deadline_after(budget_ms), cancel_fd);
	if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
		return fd;
	*errno_out = w == 0 ? ETIMEDOUT : w == WAIT_CANCELLED ? ECANCELED :
		     (w < 0 ? errno : soerr);
	close(fd);
	return -1;
}

/* fd, or -1 with ERR set and *CANCELLED when CANCEL_FD fired. */
static int tcp_connect(const char *host, uint16_t port, int64_t deadline, int cancel_fd,
		       bool *cancelled, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	char portstr[8];
	int gai, fd = -1, last_errno = 0, left = 0;

	snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
	gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai) {
		snprintf(err, errlen, "resolve %s: %s", host, gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next)
		left++;
	/* Share the budget between the addresses so one black hole cannot eat
	 * it all; an address that refuses fast leaves its share to the next. */
	for (ai = res; ai && fd < 0; ai = ai->ai_next, left--) {
		int64_t remain = deadline - mono_ms();
		if (remain <= 0) {
			last_errno = ETIMEDOUT;
			break;
		}
		fd = connect_one(ai, remain / left, cancel_fd, &last_errno);
		if (last_errno == ECANCELED)
			break;
	}
	freeaddrinfo(res);
	*cancelled = fd < 0 && last_errno == ECANCELED;
	if (fd < 0)
		snprintf(err, errlen, "connect %s:%u: %s", host, (unsigned)port,
			 strerror(last_errno ? last_errno : ECONNREFUSED));
	return fd;
}

/* Peer-certificate failure -> "certificate verification failed: a; b". */
static void set_verify_err(struct tls_conn *c, const char *host, char *err, size_t errlen)
{
	char info[512];
	uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
	int n;

	n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
	if (n < 0)
		n = 0;
	info[n < (int)sizeof(info) ? n : (int)sizeof(info) - 1] = '\0';
	for (char *p = info; *p; p++)
		if (*p == '\n')
			*p = (p[1] ? ';' : '\0');
	snprintf(err, errlen, "TLS certificate verification failed for %s: %s", host, info);
}

static int tls_handshake(struct tls_conf *conf, struct tls_conn *c, const char *host,
			 char *err, size_t errlen)
{
	int ret;

	mbedtls_ssl_init(&c->ssl);
	ret = mbedtls_ssl_setup(&c->ssl, &conf->ssl);
	if (ret) {
		set_tls_err(err, errlen, "TLS setup", ret);
		return M2Z_ERR_TLS;
	}
	/* Without this, mbedTLS 2.28 skips the certificate name check. */
	ret = mbedtls_ssl_set_hostname(&c->ssl, host);
	if (ret) {
		set_tls_err(err, errlen, "TLS hostname", ret);
		return M2Z_ERR_TLS;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	do
		ret = mbedtls_ssl_handshake(&c->ssl);
	while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
	if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		set_verify_err(c, host, err, errlen);
		return M2Z_ERR_TLS;
	}
	if (ret)
		return io_err(c, ret, "TLS handshake", err, errlen);
	c->handshake_done = true;
	return 0;
}

int tls_connect(struct tls_conf *conf, const char *host, uint16_t port,
		int64_t timeout_ms, bool use_tls, int cancel_fd, struct tls_conn **out,
		char *err, size_t errlen)
{
	struct tls_conn *c;
	bool cancelled = false;
	int rc;

	*out = NULL;
	if (use_tls && !conf) {
		snprintf(err, errlen, "TLS requested without a TLS configuration");
		return M2Z_ERR_INVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return M2Z_ERR_NOMEM;
	}
	c->use_tls = use_tls;
	c->cancel_fd = cancel_fd;
	c->deadline_ms = deadline_after(timeout_ms);
	c->fd = tcp_connect(host, port, c->deadline_ms, cancel_fd, &cancelled, err, errlen);
	if (c->fd < 0) {
		free(c);
		return cancelled ? M2Z_ERR_CLOSED : M2Z_ERR_NET;
	}
	if (use_tls) {
		rc = tls_handshake(conf, c, host, err, errlen);
		if (rc) {
			tls_close(c);
			return rc;
		}
	}
	*out = c;
	return 0;
}

/* ---- I/O ---------------------------------------------------------------- */

int tls_write_all(struct tls_conn *c, const void *data, size_t len,
		  int64_t timeout_ms, char *err, size_t errlen)
{
	const unsigned char *p = data;

	c->deadline_ms = deadline_after(timeout_ms);
	while (len > 0) {
		int n = c->use_tls ? mbedtls_ssl_write(&c->ssl, p, len) : bio_send(c, p, len);

		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (n < 0)
			return io_err(c, n, "write", err, errlen);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool is_eof(int ret)
{
	return ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF;
}

ssize_t tls_read(struct tls_conn *c, void *buf, size_t len, int64_t timeout_ms,
		 char *err, size_t errlen)
{
	c->deadline_ms = deadline_after(timeout_ms);
	for (;;) {
		int n = c->use_tls ? mbedtls_ssl_read(&c->ssl, buf, len) : bio_recv(c, buf, len);

		if (n >= 0)
			return n;
		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
		/* TLS 1.3 (3.x): a ticket arrived; not data, read on. */
		if (n == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
			continue;
#endif
		/* Many servers close without close_notify; HTTP framing above
		 * (Content-Length, chunked) detects truncation where it can. */
		if (is_eof(n))
			return 0;
		return io_err(c, n, "read", err, errlen);
	}
}

int tls_fd(const struct tls_conn *c)
{
	return c->fd;
}

size_t tls_pending(struct tls_conn *c)
{
	return c->use_tls ? mbedtls_ssl_get_bytes_avail(&c->ssl) : 0;
}

void tls_close(struct tls_conn *c)
{
	if (!c)
		return;
	if (c->use_tls) {
		if (c->handshake_done && !c->cancelled) {
			c->deadline_ms = deadline_after(CLOSE_NOTIFY_MS);
			(void)mbedtls_ssl_close_notify(&c->ssl);
		}
		mbedtls_ssl_free(&c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}
