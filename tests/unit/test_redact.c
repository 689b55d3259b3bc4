/* test_redact.c - masking of token-like text from peers (redact.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "redact.h"

static char out[256];

static const char *r(const char *s)
{
	return redact(out, sizeof(out), s);
}

static void test_bearer_any_case(void **state)
{
	(void)state;
	assert_string_equal(r("Expected a valid token, but found: Bearer tok-545d.x_y"),
			    "Expected a valid token, but found: Bearer [redacted]");
	assert_string_equal(r("authorization: bearer abc123==, next"),
			    "authorization: bearer [redacted], next");
	assert_string_equal(r("BEARER  zzz"), "BEARER [redacted]");
	assert_string_equal(r("Bearer"), "Bearer");
	/* not a credential: a word that merely ends in "bearer" */
	assert_string_equal(r("flagbearer x"), "flagbearer x");
}

static void test_jwt_shaped(void **state)
{
	(void)state;
	assert_string_equal(r("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl expired"),
			    "token [redacted] expired");
	/* dotted names are not JWTs */
	assert_string_equal(r("login.cloud.camunda.io and a.b.c"), "login.cloud.camunda.io and a.b.c");
	assert_string_equal(r("eyJonly.two"), "eyJonly.two");
}

static void test_registered_secrets(void **state)
{
	(void)state;
	assert_int_equal(redact_add("opaque-secret-42"), 0);
	assert_string_equal(r("bad client_secret=opaque-secret-42!"),
			    "bad client_secret=[redacted]!");
	assert_string_equal(r("xopaque-secret-42x"), "x[redacted]x");
	redact_remove("opaque-secret-42");
	assert_string_equal(r("opaque-secret-42"), "opaque-secret-42");
	assert_int_equal(redact_add("abc"), 0);          /* too short: ignored */
	assert_string_equal(r("abc"), "abc");
}

static void test_bounded_and_printable(void **state)
{
	char small[8];

	(void)state;
	assert_int_equal(redact_add("0123456789-secret"), 0);
	/* Cut where the secret starts: never a partial secret. */
	assert_string_equal(redact(small, sizeof(small), "ab 0123456789-secret"), "ab ");
	redact_remove("0123456789-secret");
	assert_string_equal(r("a\nb\x01"), "a?b?");
	assert_string_equal(r(NULL), "");
	assert_string_equal(redact(small, 1, "xyz"), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bearer_any_case),
		cmocka_unit_test(test_jwt_shaped),
		cmocka_unit_test(test_registered_secrets),
		cmocka_unit_test(test_bounded_and_printable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
