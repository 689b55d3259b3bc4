/* https.c - one HTTP/1.1 POST per connection over platform/tls.h. */
#include "https.h"
#include "buf.h"
#include "err.h"
#include "tls.h"
#include "util.h"

#include <ctype.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Raw bytes we accept on the wire: headers, body, and chunk framing. */
#define MAX_RAW (HTTPS_MAX_HEADER + 2 * HTTPS_MAX_BODY)
#define MAX_CHUNK_LINE 1024

/* ======================================================================== */
/* URL                                                                      */
/* ======================================================================== */

/* Authority "host[:port]" or "[v6][:port]" of length N into OUT. */
static int parse_authority(const char *a, size_t n, struct https_url *out)
{
	const char *host = a, *port = NULL;
	size_t hlen;

	if (memchr(a, '@', n))
		return M2Z_ERR_PARSE;   /* credentials in URLs would end up in logs */
	if (n > 0 && a[0] == '[') {
		const char *rb = memchr(a, ']', n);
		if (!rb)
			return M2Z_ERR_PARSE;
		host = a + 1;
		hlen = (size_t)(rb - host);
		if (rb + 1 < a + n) {
			if (rb[1] != ':')
				return M2Z_ERR_PARSE;
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(a, ':', n);
		hlen = colon ? (size_t)(colon - a) : n;
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(out->host))
		return M2Z_ERR_PARSE;
	for (size_t i = 0; i < hlen; i++)
		if (!isgraph((unsigned char)host[i]) || host[i] == '[' || host[i] == ']')
			return M2Z_ERR_PARSE;
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	if (port && parse_port(port, (size_t)(a + n - port), &out->port))
		return M2Z_ERR_PARSE;
	return 0;
}

int https_url_parse(const char *url, struct https_url *out)
{
	struct https_url u;
	const char *a, *end;
	size_t plen;

	memset(&u, 0, sizeof(u));
	if (!url)
		return M2Z_ERR_PARSE;
	if (strncasecmp(url, "https://", 8) == 0) {
		u.tls = true;
		u.port = 443;
		a = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		u.port = 80;
		a = url + 7;
	} else {
		return M2Z_ERR_PARSE;
	}
	end = a + strcspn(a, "/?#");
	if (parse_authority(a, (size_t)(end - a), &u))
		return M2Z_ERR_PARSE;

	plen = strcspn(end, "#");
	for (size_t i = 0; i < plen; i++)
		if (!isgraph((unsigned char)end[i]))
			return M2Z_ERR_PARSE;   /* would break the request line */
	if (plen + 2 > sizeof(u.path))
		return M2Z_ERR_PARSE;
	if (plen == 0 || end[0] != '/')
		u.path[0] = '/';
	memcpy(u.path + strlen(u.path), end, plen);
	*out = u;
	return 0;
}

/* ======================================================================== */
/* Response parsing                                                         */
/* ======================================================================== */

/* Next line in [P, END): sets *LINE_END (before CR LF / LF) and returns the
 * start of the following line, or NULL when no complete line is there. */
static const char *next_line(const char *p, const char *end, const char **line_end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	if (!nl)
		return NULL;
	*line_end = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
	return nl + 1;
}

struct head {
	int status;
	size_t head_len;         /* bytes up to and including the blank line */
	bool chunked;
	bool te_seen;            /* Transfer-Encoding overrides Content-Length */
	bool has_length;
	size_t length;
	char content_type[128];
	char retry_after[64];
};

static int parse_status_line(const char *s, const char *e, int *status)
{
	if (e - s < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[7]) ||
	    s[8] != ' ')
		return M2Z_ERR_PARSE;
	for (int i = 9; i < 12; i++)
		if (!isdigit((unsigned char)s[i]))
			return M2Z_ERR_PARSE;
	if (e - s > 12 && s[12] != ' ')
		return M2Z_ERR_PARSE;
	*status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	return *status >= 100 ? 0 : M2Z_ERR_PARSE;
}

static bool name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Does a Transfer-Encoding value end in the "chunked" coding? */
static bool te_is_chunked(const char *v, size_t n)
{
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n >= 7 && strncasecmp(v + n - 7, "chunked", 7) == 0 &&
	       (n == 7 || v[n - 8] == ',' || v[n - 8] == ' ' || v[n - 8] == '\t');
}

static int parse_length(const char *v, size_t n, struct head *h)
{
	size_t len = 0;

	if (n == 0)
		return M2Z_ERR_PARSE;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)v[i]))
			return M2Z_ERR_PARSE;
		if (len > HTTPS_MAX_BODY)
			return M2Z_ERR_TOO_BIG;
		len = len * 10 + (size_t)(v[i] - '0');
	}
	if (h->has_length && h->length != len)
		return M2Z_ERR_PARSE;   /* conflicting lengths: smuggling risk */
	if (len > HTTPS_MAX_BODY)
		return M2Z_ERR_TOO_BIG;
	h->has_length = true;
	h->length = len;
	return 0;
}

static int parse_header_line(const char *s, const char *e, struct head *h)
{
	const char *colon = memchr(s, ':', (size_t)(e - s));
	const char *v;
	size_t nlen, vlen;

	if (!colon || colon == s || s[0] == ' ' || s[0] == '\t' ||
	    colon[-1] == ' ' || colon[-1] == '\t')
		return M2Z_ERR_PARSE;   /* also refuses obsolete line folding */
	nlen = (size_t)(colon - s);
	v = colon + 1;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	vlen = (size_t)(e - v);
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;

	if (name_is(s, nlen, "content-length"))
		return h->te_seen ? 0 : parse_length(v, vlen, h);
	if (name_is(s, nlen, "transfer-encoding")) {
		/* Any transfer coding: framing is chunked or, failing that, EOF. */
		h->chunked = te_is_chunked(v, vlen);
		h->has_length = false;
		h->length = 0;
		h->te_seen = true;
		return 0;
	}
	if (name_is(s, nlen, "retry-after")) {
		if (vlen < sizeof(h->retry_after)) {
			memcpy(h->retry_after, v, vlen);
			h->retry_after[vlen] = '\0';
		}
		return 0;
	}
	if (name_is(s, nlen, "content-type")) {
		size_t c = vlen < sizeof(h->content_type) - 1 ? vlen : sizeof(h->content_type) - 1;
		memcpy(h->content_type, v, c);
		h->content_type[c] = '\0';
	}
	return 0;
}

static int parse_head(const char *data, size_t len, bool eof, struct head *h)
{
	const char *p = data, *end = data + len, *le, *next;
	int rc;

	memset(h, 0, sizeof(*h));
	next = next_line(p, end, &le);
	if (!next)
		goto incomplete;
	if (parse_status_line(p, le, &h->status))
		return M2Z_ERR_PARSE;
	for (p = next; (next = next_line(p, end, &le)) != NULL; p = next) {
		if (le == p) {
			h->head_len = (size_t)(next - data);
			return h->head_len > HTTPS_MAX_HEADER ? M2Z_ERR_TOO_BIG : 0;
		}
		rc = parse_header_line(p, le, h);
		if (rc)
			return rc;
	}
incomplete:
	if (len > HTTPS_MAX_HEADER)
		return M2Z_ERR_TOO_BIG;
	return eof ? M2Z_ERR_PARSE : M2Z_ERR_AGAIN;
}

/* Chunk-size line "HEX[ ][;ext...]" in [S, E). */
static int parse_chunk_size(const char *s, const char *e, size_t *size)
{
	size_t v = 0;
	const char *p = s;

	for (; p < e && isxdigit((unsigned char)*p); p++) {
		int d = isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10);
		if (v > HTTPS_MAX_BODY)
			return M2Z_ERR_TOO_BIG;
		v = v * 16 + (size_t)d;
	}
	if (p == s)
		return M2Z_ERR_PARSE;
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	if (p < e && *p != ';')
		return M2Z_ERR_PARSE;
	if (v > HTTPS_MAX_BODY)
		return M2Z_ERR_TOO_BIG;
	*size = v;
	return 0;
}

/* Skip trailer lines after the last chunk. 0 done, AGAIN, PARSE. */
static int skip_trailers(const char *p, const char *end, bool eof)
{
	const char *le, *next;

	while ((next = next_line(p, end, &le)) != NULL) {
		if (le == p)
			return 0;
		p = next;
	}
	/* Peer closed right after the last chunk: the body is whole. */
	return eof ? 0 : M2Z_ERR_AGAIN;
}

static int parse_chunked(const char *p, const char *end, bool eof, struct buf *body)
{
	for (;;) {
		const char *le, *next = next_line(p, end, &le);
		size_t size;
		int rc;

		if (!next) {
			if (end - p > MAX_CHUNK_LINE)
				return M2Z_ERR_PARSE;
			return eof ? M2Z_ERR_PARSE : M2Z_ERR_AGAIN;
		}
		rc = parse_chunk_size(p, le, &size);
		if (rc)
			return rc;
		if (size == 0)
			return skip_trailers(next, end, eof);
		if (body->len + size > HTTPS_MAX_BODY)
			return M2Z_ERR_TOO_BIG;
		if ((size_t)(end - next) < size + 1)
			return eof ? M2Z_ERR_PARSE : M2Z_ERR_AGAIN;
		p = next + size;
		if (p[0] == '\r') {
			if (end - p < 2)
				return eof ? M2Z_ERR_PARSE : M2Z_ERR_AGAIN;
			if (p[1] != '\n')
				return M2Z_ERR_PARSE;
			p += 2;
		} else if (p[0] == '\n') {
			p += 1;
		} else {
			return M2Z_ERR_PARSE;
		}
		if (buf_append(body, next, size))
			return M2Z_ERR_NOMEM;
	}
}

/* Body of a response whose head is H, from P to END. */
static int parse_body(const struct head *h, const char *p, const char *end, bool eof,
		      struct buf *body)
{
	size_t avail = (size_t)(end - p);

	if (h->status == 204 || h->status == 304)
		return 0;
	if (h->chunked)
		return parse_chunked(p, end, eof, body);
	if (h->has_length) {
		if (avail < h->length)
			return eof ? M2Z_ERR_PARSE : M2Z_ERR_AGAIN;
		return buf_append(body, p, h->length) ? M2Z_ERR_NOMEM : 0;
	}
	if (avail > HTTPS_MAX_BODY)
		return M2Z_ERR_TOO_BIG;
	if (!eof)
		return M2Z_ERR_AGAIN;
	return buf_append(body, p, avail) ? M2Z_ERR_NOMEM : 0;
}

int https_response_parse(const char *data, size_t len, bool eof,
			 struct https_response *out)
{
	struct head h;
	struct buf body = BUF_INIT;
	int rc;

	for (;;) {
		rc = parse_head(data, len, eof, &h);
		if (rc)
			return rc;
		if (h.status >= 200)
			break;
		data += h.head_len;   /* interim 1xx: the real response follows */
		len -= h.head_len;
	}
	rc = parse_body(&h, data + h.head_len, data + len, eof, &body);
	if (rc == 0 && buf_reserve(&body, 1))
		rc = M2Z_ERR_NOMEM;
	if (rc) {
		buf_free(&body);
		return rc;
	}
	out->status = h.status;
	memcpy(out->content_type, h.content_type, sizeof(out->content_type));
	memcpy(out->retry_after, h.retry_after, sizeof(out->retry_after));
	out->body = body.p;
	out->body[body.len] = '\0';
	out->body_len = body.len;
	return 0;
}

void https_response_clear(struct https_response *r)
{
	if (!r)
		return;
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* ======================================================================== */
/* Client                                                                   */
/* ======================================================================== */

struct https_client {
	char *ca_file;             /* owned; NULL = system store */
	struct tls_conf *tls;      /* owned; loaded on first use */
	int cancel_fd;             /* eventfd; readable once cancelled */
	atomic_bool cancelled;
};

int https_client_new(const char *ca_file, struct https_client **out)
{
	struct https_client *hc = calloc(1, sizeof(*hc));

	*out = NULL;
	if (!hc)
		return M2Z_ERR_NOMEM;
	hc->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (hc->cancel_fd < 0 || (ca_file && *ca_file && !(hc->ca_file = strdup(ca_file)))) {
		if (hc->cancel_fd >= 0)
			close(hc->cancel_fd);
		free(hc);
		return M2Z_ERR_NOMEM;
	}
	*out = hc;
	return 0;
}

void https_client_free(struct https_client *hc)
{
	if (!hc)
		return;
	tls_conf_free(hc->tls);
	close(hc->cancel_fd);
	free(hc->ca_file);
	free(hc);
}

void https_client_cancel(struct https_client *hc)
{
	uint64_t one = 1;

	atomic_store(&hc->cancelled, true);
	if (write(hc->cancel_fd, &one, sizeof(one)) < 0) {
		/* Only EAGAIN (counter full) is possible: already signalled. */
	}
}

int https_client_check_tls(struct https_client *hc, char *err, size_t errlen)
{
	if (hc->tls)
		return 0;
	return tls_conf_new(hc->ca_file, &hc->tls, err, errlen);
}

static int build_request(const struct https_url *u, const struct https_request *req,
			 struct buf *out)
{
	bool v6 = strchr(u->host, ':') != NULL;
	bool default_port = u->port == (u->tls ? 443 : 80);
	int rc = 0;

	rc |= buf_printf(out, "POST %s HTTP/1.1\r\nHost: %s%s%s", u->path,
			 v6 ? "[" : "", u->host, v6 ? "]" : "");
	if (!default_port)
		rc |= buf_printf(out, ":%u", (unsigned)u->port);
	rc |= buf_puts(out, "\r\n");
	if (req->user_agent)
		rc |= buf_printf(out, "User-Agent: %s\r\n", req->user_agent);
	if (req->accept)
		rc |= buf_printf(out, "Accept: %s\r\n", req->accept);
	rc |= buf_printf(out, "Content-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", req->content_type, req->body_len);
	rc |= buf_append(out, req->body, req->body_len);
	return rc ? M2Z_ERR_NOMEM : 0;
}

/* Read until the response is whole, EOF, or the deadline. */
static int read_response(struct tls_conn *c, int64_t deadline, struct https_response *resp,
			 char *err, size_t errlen)
{
	struct buf raw = BUF_INIT;
	int rc;

	for (;;) {
		int64_t left = deadline - mono_ms();
		ssize_t n;

		if (left <= 0) {
			snprintf(err, errlen, "read: timed out");
			rc = M2Z_ERR_TIMEOUT;
			break;
		}
		if (buf_reserve(&raw, 4096)) {
			rc = M2Z_ERR_NOMEM;
			break;
		}
		n = tls_read(c, raw.p + raw.len, raw.cap - raw.len - 1, left, err, errlen);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		raw.len += (size_t)n;
		rc = https_response_parse(raw.p, raw.len, n == 0, resp);
		if (rc == M2Z_ERR_AGAIN && raw.len > MAX_RAW)
			rc = M2Z_ERR_TOO_BIG;
		if (rc != M2Z_ERR_AGAIN)
			break;
	}
	if (rc == M2Z_ERR_PARSE)
		snprintf(err, errlen, "malformed or truncated HTTP response");
	else if (rc == M2Z_ERR_TOO_BIG)
		snprintf(err, errlen, "HTTP response over %d bytes", HTTPS_MAX_BODY);
	buf_free(&raw);
	return rc;
}

int https_post(struct https_client *hc, const struct https_request *req,
	       struct https_response *resp, char *err, size_t errlen)
{
	int64_t deadline = mono_ms() + req->timeout_ms;
	struct https_url u;
	struct tls_conn *c = NULL;
	struct buf out = BUF_INIT;
	int rc;

	if (atomic_load(&hc->cancelled)) {
		snprintf(err, errlen, "cancelled");
		return M2Z_ERR_CLOSED;
	}
	if (https_url_parse(req->url, &u)) {
		snprintf(err, errlen, "bad URL");
		return M2Z_ERR_PARSE;
	}
	if (u.tls && (rc = https_client_check_tls(hc, err, errlen)) != 0)
		return rc;
	rc = build_request(&u, req, &out);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = tls_connect(hc->tls, u.host, u.port, deadline - mono_ms(), u.tls, hc->cancel_fd,
			 &c, err, errlen);
	if (rc)
		goto out;
	rc = tls_write_all(c, out.p, out.len, deadline - mono_ms(), err, errlen);
	if (rc)
		goto out;
	rc = read_response(c, deadline, resp, err, errlen);
out:
	tls_close(c);
	buf_free(&out);
	return rc;
}
