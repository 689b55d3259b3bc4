/* test_oauth.c - token JSON parsing and form body encoding of oauth.c,
 * plus argument checks of oauth_new that need no network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "oauth.h"

static char err[512];

static int parse(const char *json, struct oauth_token *t)
{
	err[0] = '\0';
	return oauth_parse_token(json, strlen(json), t, err, sizeof(err));
}

static void test_token_number_and_string_expiry(void **state)
{
	struct oauth_token t;

	(void)state;
	assert_int_equal(parse("{\"access_token\":\"abc.def-ghi\",\"token_type\":\"Bearer\","
			       "\"expires_in\":300,\"scope\":\"x\"}", &t), 0);
	assert_string_equal(t.access_token, "abc.def-ghi");
	assert_string_equal(t.token_type, "Bearer");
	assert_int_equal(t.expires_in_s, 300);
	oauth_token_clear(&t);
	assert_null(t.access_token);

	assert_int_equal(parse("{\"access_token\":\"a\",\"expires_in\":\"3600\"}", &t), 0);
	assert_int_equal(t.expires_in_s, 3600);
	oauth_token_clear(&t);

	/* Fractional seconds round down. */
	assert_int_equal(parse("{\"access_token\":\"a\",\"expires_in\":59.9}", &t), 0);
	assert_int_equal(t.expires_in_s, 59);
	oauth_token_clear(&t);
}

static void test_token_no_expiry(void **state)
{
	struct oauth_token t;

	(void)state;
	assert_int_equal(parse("{\"access_token\":\"a\"}", &t), 0);
	assert_int_equal(t.expires_in_s, -1);
	oauth_token_clear(&t);
	assert_int_equal(parse("{\"access_token\":\"a\",\"expires_in\":null}", &t), 0);
	assert_int_equal(t.expires_in_s, -1);
	oauth_token_clear(&t);
	/* 0 means "no expiry" as in the Go client. */
	assert_int_equal(parse("{\"access_token\":\"a\",\"expires_in\":0}", &t), 0);
	assert_int_equal(t.expires_in_s, -1);
	oauth_token_clear(&t);
}

static void test_token_bad_expiry(void **state)
{
	static const char *const bad[] = {
		"{\"access_token\":\"a\",\"expires_in\":\"soon\"}",
		"{\"access_token\":\"a\",\"expires_in\":\"12x\"}",
		"{\"access_token\":\"a\",\"expires_in\":\"-5\"}",
		"{\"access_token\":\"a\",\"expires_in\":\"\"}",
		"{\"access_token\":\"a\",\"expires_in\":-1}",
		"{\"access_token\":\"a\",\"expires_in\":true}",
		"{\"access_token\":\"a\",\"expires_in\":[1]}",
		"{\"access_token\":\"a\",\"expires_in\":1e300}",
	};
	struct oauth_token t;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &t) != M2Z_ERR_PARSE)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(err, "expires_in"));
	}
}

static void test_token_missing_or_empty(void **state)
{
	struct oauth_token t;

	(void)state;
	assert_int_equal(parse("{\"token_type\":\"Bearer\",\"expires_in\":5}", &t), M2Z_ERR_PARSE);
	assert_non_null(strstr(err, "no access_token"));
	assert_int_equal(parse("{\"access_token\":\"\"}", &t), M2Z_ERR_PARSE);
	assert_non_null(strstr(err, "empty access_token"));
	assert_int_equal(parse("{\"access_token\":42}", &t), M2Z_ERR_PARSE);
	assert_int_equal(parse("{\"access_token\":\"a b\"}", &t), M2Z_ERR_PARSE);
	assert_int_equal(parse("{\"access_token\":\"a\\r\\nX-Evil: 1\"}", &t), M2Z_ERR_PARSE);
	assert_int_equal(parse("not json", &t), M2Z_ERR_PARSE);
	assert_non_null(strstr(err, "JSON"));
	assert_int_equal(parse("[\"access_token\"]", &t), M2Z_ERR_PARSE);
	assert_int_equal(parse("", &t), M2Z_ERR_PARSE);
	/* Length is honoured: the token is cut off after LEN bytes. */
	{
		const char *j = "{\"access_token\":\"a\"}";
		assert_int_equal(oauth_parse_token(j, strlen(j) - 1, &t, err, sizeof(err)),
				 M2Z_ERR_PARSE);
	}
}

static void test_token_error_member(void **state)
{
	struct oauth_token t;

	(void)state;
	assert_int_equal(parse("{\"error\":\"invalid_client\",\"error_description\":"
			       "\"Invalid client credentials\"}", &t), M2Z_ERR_PARSE);
	assert_non_null(strstr(err, "invalid_client"));
	assert_non_null(strstr(err, "Invalid client credentials"));

	/* An error member wins even when a token is present. */
	assert_int_equal(parse("{\"access_token\":\"a\",\"error\":\"access_denied\"}", &t),
			 M2Z_ERR_PARSE);
	assert_non_null(strstr(err, "access_denied"));

	/* Control characters from the server never reach the message raw. */
	assert_int_equal(parse("{\"error\":\"x\",\"error_description\":\"line1\\nline2\"}", &t),
			 M2Z_ERR_PARSE);
	assert_null(strchr(err, '\n'));
	assert_non_null(strstr(err, "line1?line2"));
}

static void test_token_type_normalised(void **state)
{
	static const struct { const char *json, *want; } cases[] = {
		{ "{\"access_token\":\"a\",\"token_type\":\"bearer\"}", "Bearer" },
		{ "{\"access_token\":\"a\",\"token_type\":\"BEARER\"}", "Bearer" },
		{ "{\"access_token\":\"a\",\"token_type\":\"\"}", "Bearer" },
		{ "{\"access_token\":\"a\"}", "Bearer" },
		{ "{\"access_token\":\"a\",\"token_type\":null}", "Bearer" },
		{ "{\"access_token\":\"a\",\"token_type\":\"DPoP\"}", "DPoP" },
	};
	struct oauth_token t;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].json, &t), 0);
		assert_string_equal(t.token_type, cases[i].want);
		oauth_token_clear(&t);
	}
	assert_int_equal(parse("{\"access_token\":\"a\",\"token_type\":7}", &t), M2Z_ERR_PARSE);
}

static void test_form_body(void **state)
{
	struct oauth_opts o = {
		.client_id = "my id",
		.client_secret = "p@ss&w=rd+%/~é",
		.audience = "zeebe.camunda.io",
		.scope = "",
	};
	char *b;

	(void)state;
	b = oauth_form_body(&o);
	assert_non_null(b);
	assert_string_equal(b, "grant_type=client_credentials&client_id=my+id"
			    "&client_secret=p%40ss%26w%3Drd%2B%25%2F~%C3%A9"
			    "&audience=zeebe.camunda.io");
	free(b);

	o.scope = "read write";
	b = oauth_form_body(&o);
	assert_non_null(b);
	assert_non_null(strstr(b, "&audience=zeebe.camunda.io&scope=read+write"));
	free(b);

	o.scope = NULL;
	o.audience = NULL;
	b = oauth_form_body(&o);
	assert_non_null(b);
	assert_null(strstr(b, "scope="));
	assert_null(strstr(b, "audience="));
	free(b);
}

static void test_new_rejects_bad_opts(void **state)
{
	struct oauth_opts o = {
		.url = "ftp://x/", .client_id = "id", .client_secret = "s",
		.timeout_ms = 1000, .refresh_ahead_ms = 10000,
	};
	struct oauth *oa = (struct oauth *)1;

	(void)state;
	log_set_level(LOG_LVL_ERROR);
	assert_int_equal(oauth_new(&o, &oa), M2Z_ERR_CONFIG);
	assert_null(oa);
	o.url = "https://user:pw@localhost/";
	assert_int_equal(oauth_new(&o, &oa), M2Z_ERR_CONFIG);
	o.url = "https://localhost/";
	o.client_secret = "";
	assert_int_equal(oauth_new(&o, &oa), M2Z_ERR_CONFIG);
	o.client_secret = "s";
	o.ca_file = "/nonexistent/ca.pem";
	assert_int_equal(oauth_new(&o, &oa), M2Z_ERR_CONFIG);
	assert_null(oa);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_number_and_string_expiry),
		cmocka_unit_test(test_token_no_expiry),
		cmocka_unit_test(test_token_bad_expiry),
		cmocka_unit_test(test_token_missing_or_empty),
		cmocka_unit_test(test_token_error_member),
		cmocka_unit_test(test_token_type_normalised),
		cmocka_unit_test(test_form_body),
		cmocka_unit_test(test_new_rejects_bad_opts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
