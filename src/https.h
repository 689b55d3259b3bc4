/* https.h - a minimal HTTP/1.1 client for one POST per connection, over
 * platform/tls.h (https://, verified) or plain TCP (http://).
 *
 * Enough for an OAuth token endpoint: one request, "Connection: close",
 * a response framed by Content-Length, chunked transfer coding or end of
 * stream, capped at HTTPS_MAX_BODY bytes. The URL and response parsers are
 * pure functions, exposed for unit tests. */
#ifndef M2Z_HTTPS_H
#define M2Z_HTTPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTPS_MAX_BODY   (64 * 1024)
#define HTTPS_MAX_HEADER (16 * 1024)

/* ---- URL ---------------------------------------------------------------- */

struct https_url {
	bool tls;                /* https:// */
	char host[256];          /* without [] for an IPv6 literal */
	uint16_t port;           /* default 443 / 80 */
	char path[1024];         /* path + query, "/" when empty; no fragment */
};

/* Parse "http[s]://host[:port][/path][?query][#frag]". User info (user@)
 * is refused so a URL is always safe to log. Returns 0 or M2Z_ERR_PARSE. */
int https_url_parse(const char *url, struct https_url *out);

/* ---- response ----------------------------------------------------------- */

struct https_response {
	int status;              /* e.g. 200 */
	char content_type[128];  /* "" when absent; truncated if longer */
	char retry_after[64];    /* Retry-After value, "" when absent or longer */
	char *body;              /* malloc'ed, NUL-terminated (not counted); owner frees
	                          * with https_response_clear() */
	size_t body_len;
};

/* Parse the bytes DATA[0..LEN) received so far; EOF tells whether the peer
 * has closed the stream. Returns:
 *   0               a whole response: OUT filled (free with https_response_clear)
 *   M2Z_ERR_AGAIN   need more bytes (only when !EOF)
 *   M2Z_ERR_PARSE   malformed, or truncated by EOF
 *   M2Z_ERR_TOO_BIG headers over HTTPS_MAX_HEADER or body over HTTPS_MAX_BODY
 * Interim 1xx responses are skipped. OUT is untouched unless 0 is returned. */
int https_response_parse(const char *data, size_t len, bool eof,
			 struct https_response *out);
void https_response_clear(struct https_response *r);

/* ---- client ------------------------------------------------------------- */

struct https_client;

/* CA_FILE: PEM trust roots, NULL or "" = system store. Loaded lazily, on
 * the first https:// request (a client that only speaks http:// never
 * touches the trust store); https_client_check_tls() loads it up front.
 * 0 or M2Z_ERR_NOMEM. */
int https_client_new(const char *ca_file, struct https_client **out);
void https_client_free(struct https_client *hc);

/* From any thread: abort the request in flight (it fails with
 * M2Z_ERR_CLOSED) and every later one. For shutdown. */
void https_client_cancel(struct https_client *hc);

/* Load the trust roots now. 0, or M2Z_ERR_CONFIG / M2Z_ERR_TLS with ERR set. */
int https_client_check_tls(struct https_client *hc, char *err, size_t errlen);

struct https_request {
	const char *url;
	const char *content_type;  /* of BODY */
	const char *accept;        /* NULL = not sent */
	const char *user_agent;    /* NULL = not sent */
	const char *body;          /* borrowed for the call */
	size_t body_len;
	int64_t timeout_ms;        /* whole exchange: connect to last byte */
};

/* One POST. Returns 0 with RESP filled for ANY status (the caller judges
 * it), or M2Z_ERR_PARSE (bad URL or response), M2Z_ERR_NET, M2Z_ERR_TLS,
 * M2Z_ERR_TIMEOUT, M2Z_ERR_CLOSED (cancelled), M2Z_ERR_TOO_BIG, M2Z_ERR_CONFIG (trust store),
 * M2Z_ERR_NOMEM with the reason in ERR (never the body). The client is
 * used by one thread at a time. */
int https_post(struct https_client *hc, const struct https_request *req,
	       struct https_response *resp, char *err, size_t errlen);

#endif
