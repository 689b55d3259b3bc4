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


/* ---- pacing, Retry-After, refresh schedule (fake clock: times passed in) */

static void test_backoff_ceiling_doubles_to_cap(void **state)
{
	(void)state;
	assert_int_equal(oauth_backoff_ceiling(1), 1000);
	assert_int_equal(oauth_backoff_ceiling(2), 2000);
	assert_int_equal(oauth_backoff_ceiling(6), 32000);
	assert_int_equal(oauth_backoff_ceiling(7), 60000);
	assert_int_equal(oauth_backoff_ceiling(500), 60000);
}

static void test_pace_min_interval_however_often_rejected(void **state)
{
	struct oauth_pace p;
	int64_t now = 1000000, fetches = 0;

	(void)state;
	oauth_pace_init(&p, 5000);
	assert_int_equal(oauth_pace_earliest(&p), 0);   /* first fetch: now */
	/* A gateway rejecting every token for 60 s (oauth.c reports each token
	 * once); every fetch succeeds, which must not reset the backoff. */
	for (int64_t t = now; t < now + 60000; t += 20) {
		if (t >= oauth_pace_earliest(&p)) {
			oauth_pace_attempt(&p, t);
			fetches++;
			oauth_pace_failure(&p, t + 20, -1, 0.999);
		}
	}
	/* 60 s / 5 s + 1 at most; the backoff makes it fewer: 0 5 10 15 23 39. */
	assert_true(fetches >= 4 && fetches <= 13);
	assert_int_equal(p.streak, fetches);
}

static void test_pace_backoff_is_not_reset_by_a_fetch(void **state)
{
	struct oauth_pace p;
	int64_t d1, d2, d3;

	(void)state;
	oauth_pace_init(&p, 100);
	oauth_pace_attempt(&p, 0);
	d1 = oauth_pace_failure(&p, 0, -1, 0.0);        /* fetch failed */
	oauth_pace_attempt(&p, d1);                     /* fetch OK ... */
	d2 = oauth_pace_failure(&p, d1, -1, 0.0);       /* ... token rejected */
	assert_int_equal(d1, 500);                      /* [c/2, c] of 1 s */
	assert_int_equal(d2, 1000);                     /* of 2 s: still growing */
	assert_int_equal(oauth_pace_earliest(&p), d1 + d2);
	oauth_pace_ok(&p);                              /* the gateway took one */
	d3 = oauth_pace_failure(&p, 10000, -1, 0.5);
	assert_int_equal(d3, 750);
	assert_int_equal(p.streak, 1);
}

static void test_pace_jitter_range(void **state)
{
	struct oauth_pace p;

	(void)state;
	for (double j = 0; j < 1; j += 0.1) {
		oauth_pace_init(&p, 0);
		p.streak = 3;                           /* next: ceiling 8 s */
		int64_t d = oauth_pace_failure(&p, 0, -1, j);
		assert_true(d >= 4000 && d <= 8000);
	}
}

static void test_pace_retry_after_wins_when_longer(void **state)
{
	struct oauth_pace p;

	(void)state;
	oauth_pace_init(&p, 5000);
	oauth_pace_attempt(&p, 100);
	assert_int_equal(oauth_pace_failure(&p, 200, 4000, 0.0), 4000);
	assert_int_equal(oauth_pace_earliest(&p), 5100);    /* min interval later */
	oauth_pace_init(&p, 100);
	oauth_pace_attempt(&p, 0);
	assert_int_equal(oauth_pace_failure(&p, 0, 30000, 0.0), 30000);
	assert_int_equal(oauth_pace_earliest(&p), 30000);
	assert_int_equal(oauth_pace_failure(&p, 0, 10, 0.0), 1000);  /* backoff longer */
	assert_int_equal(oauth_pace_earliest(&p), 30000);            /* never shortened */
}

static void test_retry_after_values(void **state)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT */
	int64_t t0 = 784111777LL * 1000;

	(void)state;
	assert_int_equal(oauth_retry_after_ms("4", 0), 4000);
	assert_int_equal(oauth_retry_after_ms("0", 0), 0);
	assert_int_equal(oauth_retry_after_ms("", 0), -1);
	assert_int_equal(oauth_retry_after_ms(NULL, 0), -1);
	assert_int_equal(oauth_retry_after_ms("4s", 0), -1);
	assert_int_equal(oauth_retry_after_ms("-1", 0), -1);
	assert_int_equal(oauth_retry_after_ms("99999999999999999999", 0), OAUTH_RETRY_AFTER_CAP_MS);
	assert_int_equal(oauth_retry_after_ms("Sun, 06 Nov 1994 08:49:41 GMT", t0), 4000);
	assert_int_equal(oauth_retry_after_ms("Sunday, 06-Nov-94 08:49:47 GMT", t0), 10000);
	assert_int_equal(oauth_retry_after_ms("Sun Nov  6 08:49:39 1994", t0), 2000);
	assert_int_equal(oauth_retry_after_ms("Sun, 06 Nov 1994 08:49:30 GMT", t0), 0); /* past */
	assert_int_equal(oauth_retry_after_ms("Sun, 06 Nov 2994 08:49:30 GMT", t0),
			 OAUTH_RETRY_AFTER_CAP_MS);
	assert_int_equal(oauth_retry_after_ms("tomorrow", t0), -1);
}

static void test_refresh_at_short_tokens_used_until_expiry(void **state)
{
	(void)state;
	assert_int_equal(oauth_refresh_at(1000, 300000, 30000), 1000 + 270000);
	assert_int_equal(oauth_refresh_at(1000, 1000, 30000), 2000);     /* expires_in=1 */
	assert_int_equal(oauth_refresh_at(1000, 30000, 30000), 31000);
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
		cmocka_unit_test(test_backoff_ceiling_doubles_to_cap),
		cmocka_unit_test(test_pace_min_interval_however_often_rejected),
		cmocka_unit_test(test_pace_backoff_is_not_reset_by_a_fetch),
		cmocka_unit_test(test_pace_jitter_range),
		cmocka_unit_test(test_pace_retry_after_wins_when_longer),
		cmocka_unit_test(test_retry_after_values),
		cmocka_unit_test(test_refresh_at_short_tokens_used_until_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
