/* test_https.c - URL parsing and HTTP response parsing of https.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "https.h"

/* ---- URL ---------------------------------------------------------------- */

static void test_url_defaults(void **state)
{
	struct https_url u;

	(void)state;
	assert_int_equal(https_url_parse("https://login.example.com/oauth/token", &u), 0);
	assert_true(u.tls);
	assert_string_equal(u.host, "login.example.com");
	assert_int_equal(u.port, 443);
	assert_string_equal(u.path, "/oauth/token");

	assert_int_equal(https_url_parse("http://localhost", &u), 0);
	assert_false(u.tls);
	assert_string_equal(u.host, "localhost");
	assert_int_equal(u.port, 80);
	assert_string_equal(u.path, "/");

	assert_int_equal(https_url_parse("HTTPS://Host.Example", &u), 0);
	assert_true(u.tls);
	assert_string_equal(u.host, "Host.Example");
}

static void test_url_ports_query_v6(void **state)
{
	struct https_url u;

	(void)state;
	assert_int_equal(https_url_parse("https://localhost:8443/a/b?x=1&y=2#frag", &u), 0);
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.path, "/a/b?x=1&y=2");

	assert_int_equal(https_url_parse("http://h:65535?q=1", &u), 0);
	assert_int_equal(u.port, 65535);
	assert_string_equal(u.path, "/?q=1");

	assert_int_equal(https_url_parse("https://[::1]:9443/t", &u), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 9443);
	assert_string_equal(u.path, "/t");

	assert_int_equal(https_url_parse("https://[fe80::1]", &u), 0);
	assert_string_equal(u.host, "fe80::1");
	assert_int_equal(u.port, 443);
}

static void test_url_bad(void **state)
{
	static const char *const bad[] = {
		NULL, "", "ftp://h/", "https//h/", "https://", "https:///path",
		"https://h:/x", "https://h:0/", "https://h:65536/", "https://h:12a/",
		"https://h:123456/", "https://user:pw@h/", "https://[::1/",
		"https://[::1]x/", "https://h/a b", "https://h/a\tb", "https://h\x01/",
		"localhost:443",
	};
	struct https_url u;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (https_url_parse(bad[i], &u) != M2Z_ERR_PARSE)
			fail_msg("accepted bad URL #%zu: %s", i, bad[i] ? bad[i] : "(null)");
	}
	{
		char longhost[400];
		memset(longhost, 'a', sizeof(longhost));
		memcpy(longhost, "https://", 8);
		longhost[sizeof(longhost) - 1] = '\0';
		assert_int_equal(https_url_parse(longhost, &u), M2Z_ERR_PARSE);
	}
}

/* ---- response ----------------------------------------------------------- */

static int parse_str(const char *s, bool eof, struct https_response *r)
{
	return https_response_parse(s, strlen(s), eof, r);
}

static void test_content_length(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			"Content-Length: 11\r\n\r\n{\"a\":\"bcd\"}trailing-junk";
	struct https_response r = { 0 };

	(void)state;
	assert_int_equal(parse_str(s, false, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.content_type, "application/json");
	assert_int_equal(r.body_len, 11);
	assert_string_equal(r.body, "{\"a\":\"bcd\"}");
	https_response_clear(&r);
	assert_null(r.body);

	/* Every proper prefix needs more; truncated at EOF is an error. */
	size_t hl = strlen(s) - strlen("trailing-junk");
	for (size_t n = 0; n < hl; n++) {
		assert_int_equal(https_response_parse(s, n, false, &r), M2Z_ERR_AGAIN);
		assert_int_equal(https_response_parse(s, n, true, &r), M2Z_ERR_PARSE);
	}
	assert_int_equal(https_response_parse(s, hl, true, &r), 0);
	https_response_clear(&r);

	/* Zero length, LF-only line ends, header case, 401 status. */
	assert_int_equal(parse_str("HTTP/1.0 401 Unauthorized\ncontent-LENGTH:  0 \n\n", false, &r), 0);
	assert_int_equal(r.status, 401);
	assert_int_equal(r.body_len, 0);
	assert_string_equal(r.body, "");
	assert_string_equal(r.content_type, "");
	https_response_clear(&r);
}

static void test_chunked(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
			"Content-Length: 999\r\n\r\n"     /* ignored: TE wins */
			"4;name=value\r\n{\"a\"\r\n"
			"A \r\n:\"01234567\r\n"
			"1\r\n}\r\n"
			"0\r\nX-Trailer: t\r\n\r\n";
	const char *want = "{\"a\":\"01234567}";
	struct https_response r = { 0 };
	size_t len = strlen(s);

	(void)state;
	assert_int_equal(parse_str(s, false, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, strlen(want));
	assert_string_equal(r.body, want);
	https_response_clear(&r);

	/* Split anywhere: AGAIN before the end, the same body at the end. */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(https_response_parse(s, n, false, &r), M2Z_ERR_AGAIN);

	/* Peer closed right after the last chunk, before the final CRLF. */
	const char *end = strstr(s, "0\r\n") + 3;
	assert_int_equal(https_response_parse(s, (size_t)(end - s), true, &r), 0);
	assert_string_equal(r.body, want);
	https_response_clear(&r);
	/* Closed inside a chunk: truncated. */
	assert_int_equal(https_response_parse(s, (size_t)(strstr(s, "012") - s), true, &r),
			 M2Z_ERR_PARSE);
	/* Upper-case hex and "gzip, chunked". */
	assert_int_equal(parse_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
				   "B\r\nhello world\r\n0\r\n\r\n", false, &r), 0);
	assert_string_equal(r.body, "hello world");
	https_response_clear(&r);
}

static void test_eof_delimited(void **state)
{
	const char *s = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"x\":1}";
	struct https_response r = { 0 };

	(void)state;
	assert_int_equal(parse_str(s, false, &r), M2Z_ERR_AGAIN);
	assert_int_equal(parse_str(s, true, &r), 0);
	assert_string_equal(r.body, "{\"x\":1}");
	https_response_clear(&r);
	/* 204 has no body, even without framing. */
	assert_int_equal(parse_str("HTTP/1.1 204 No Content\r\n\r\n", false, &r), 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body_len, 0);
	https_response_clear(&r);
	/* Interim 100 Continue is skipped. */
	assert_int_equal(parse_str("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
				   "Content-Length: 2\r\n\r\nok", false, &r), 0);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "ok");
	https_response_clear(&r);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"SMTP 220 hello\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nName : space before colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nab\r\n0\r\n\r\n",
	};
	struct https_response r = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse_str(bad[i], true, &r);
		if (rc != M2Z_ERR_PARSE)
			fail_msg("bad response #%zu gave %d", i, rc);
	}
}

static void test_limits(void **state)
{
	struct https_response r = { 0 };
	char *big;
	char hdr[128];
	size_t n;

	(void)state;
	snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
		 HTTPS_MAX_BODY + 1);
	assert_int_equal(parse_str(hdr, false, &r), M2Z_ERR_TOO_BIG);
	assert_int_equal(parse_str("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
				   false, &r), M2Z_ERR_TOO_BIG);
	assert_int_equal(parse_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "FFFFFFFFFFFFFFFFFFFFFF\r\n", false, &r), M2Z_ERR_TOO_BIG);

	/* EOF-delimited body one byte over the cap. */
	n = strlen("HTTP/1.1 200 OK\r\n\r\n") + HTTPS_MAX_BODY + 1;
	big = malloc(n + 1);
	assert_non_null(big);
	strcpy(big, "HTTP/1.1 200 OK\r\n\r\n");
	memset(big + strlen(big), 'x', HTTPS_MAX_BODY + 1);
	big[n] = '\0';
	assert_int_equal(https_response_parse(big, n, true, &r), M2Z_ERR_TOO_BIG);
	/* ... and exactly at the cap it is fine. */
	assert_int_equal(https_response_parse(big, n - 1, true, &r), 0);
	assert_int_equal(r.body_len, HTTPS_MAX_BODY);
	https_response_clear(&r);
	free(big);

	/* Headers that never end. */
	big = malloc(HTTPS_MAX_HEADER + 100);
	assert_non_null(big);
	strcpy(big, "HTTP/1.1 200 OK\r\n");
	n = strlen(big);
	while (n + 12 < HTTPS_MAX_HEADER + 50) {
		memcpy(big + n, "X-Pad: yes\r\n", 12);
		n += 12;
	}
	assert_int_equal(https_response_parse(big, n, false, &r), M2Z_ERR_TOO_BIG);
	/* ... and the same headers complete are still too big. */
	memcpy(big + n, "\r\n", 3);
	assert_int_equal(https_response_parse(big, n + 2, false, &r), M2Z_ERR_TOO_BIG);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_defaults),
		cmocka_unit_test(test_url_ports_query_v6),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_eof_delimited),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
