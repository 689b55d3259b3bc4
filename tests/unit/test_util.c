/* test_util.c - the forwarder's status classes and the small pure helpers
 * (UTF-8 check, base64, RFC 3339 time, bounded random). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "util.h"
#include "zeebe.h"

static void test_classify_every_code(void **state)
{
	static const struct { int code; enum fwd_class want; } table[] = {
		{ ZEEBE_OK, FWD_DONE },
		{ ZEEBE_ALREADY_EXISTS, FWD_DONE },
		{ ZEEBE_UNAVAILABLE, FWD_RETRY },
		{ ZEEBE_DEADLINE_EXCEEDED, FWD_RETRY },
		{ ZEEBE_RESOURCE_EXHAUSTED, FWD_RETRY },
		{ ZEEBE_ABORTED, FWD_RETRY },
		{ ZEEBE_CANCELLED, FWD_RETRY },
		{ ZEEBE_INTERNAL, FWD_RETRY },
		{ ZEEBE_UNKNOWN, FWD_RETRY },
		{ ZEEBE_UNAUTHENTICATED, FWD_REAUTH },
		{ ZEEBE_INVALID_ARGUMENT, FWD_DEAD },
		{ ZEEBE_NOT_FOUND, FWD_DEAD },
		{ ZEEBE_FAILED_PRECONDITION, FWD_DEAD },
		{ ZEEBE_PERMISSION_DENIED, FWD_DEAD },
		{ ZEEBE_OUT_OF_RANGE, FWD_DEAD },
		{ ZEEBE_UNIMPLEMENTED, FWD_DEAD },
		{ ZEEBE_DATA_LOSS, FWD_DEAD },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (forward_classify(table[i].code) != table[i].want)
			fail_msg("%s classed %d, want %d", zeebe_code_name(table[i].code),
				 forward_classify(table[i].code), table[i].want);
	}
	assert_string_equal(zeebe_code_name(ZEEBE_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
	assert_string_equal(zeebe_code_name(99), "UNKNOWN");
}

static void test_utf8(void **state)
{
	(void)state;
	assert_true(utf8_valid("", 0));
	assert_true(utf8_valid("plain ascii", 11));
	assert_true(utf8_valid("\xc3\xa9t\xc3\xa9", 6));                 /* été */
	assert_true(utf8_valid("\xe2\x82\xac", 3));                      /* € */
	assert_true(utf8_valid("\xf0\x9f\x98\x80", 4));                  /* U+1F600 */
	assert_true(utf8_valid("a\0b", 3));                              /* NUL is valid UTF-8 */
	assert_false(utf8_valid("\xff", 1));
	assert_false(utf8_valid("\xc3", 1));                             /* truncated */
	assert_false(utf8_valid("\xe2\x82", 2));                         /* truncated */
	assert_false(utf8_valid("\xc0\xaf", 2));                         /* overlong '/' */
	assert_false(utf8_valid("\xe0\x80\xaf", 3));                     /* overlong */
	assert_false(utf8_valid("\xed\xa0\x80", 3));                     /* surrogate */
	assert_false(utf8_valid("\xf4\x90\x80\x80", 4));                 /* > U+10FFFF */
	assert_false(utf8_valid("\xc3\x28", 2));                         /* bad continuation */
}

static void test_base64_round_trip(void **state)
{
	static const char *const vectors[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	unsigned char bin[256];
	(void)state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char *enc = base64_encode(vectors[i][0], strlen(vectors[i][0]));
		size_t n = 0;
		unsigned char *dec;

		assert_string_equal(enc, vectors[i][1]);
		dec = base64_decode(enc, &n);
		assert_non_null(dec);
		assert_int_equal(n, strlen(vectors[i][0]));
		assert_memory_equal(dec, vectors[i][0], n);
		free(enc);
		free(dec);
	}
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)(255 - i);
	for (size_t len = 0; len <= sizeof(bin); len += 37) {
		char *enc = base64_encode(bin, len);
		size_t n = 0;
		unsigned char *dec = base64_decode(enc, &n);

		assert_int_equal(n, len);
		assert_memory_equal(dec, bin, len);
		free(enc);
		free(dec);
	}
	assert_null(base64_decode("Zm9v!", &(size_t){ 0 }));
}

static void test_rfc3339(void **state)
{
	char buf[40];
	(void)state;
	format_rfc3339_ms(1700000000123LL, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20.123Z");
	format_rfc3339_ms(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
}

static void test_rand_below_stays_in_range(void **state)
{
	int seen[10] = { 0 };
	(void)state;
	assert_int_equal(rand_below(0), 0);
	assert_int_equal(rand_below(1), 0);
	for (int i = 0; i < 10000; i++) {
		uint64_t r = rand_below(10);
		assert_true(r < 10);
		seen[r]++;
	}
	for (int i = 0; i < 10; i++)
		assert_true(seen[i] > 700); /* ~1000 each; a stuck generator fails */
}

static void test_backoff(void **state)
{
	(void)state;
	assert_int_equal(backoff_cap_ms(1000, 60000, 0), 1000);
	assert_int_equal(backoff_cap_ms(1000, 60000, 1), 1000);
	assert_int_equal(backoff_cap_ms(1000, 60000, 6), 32000);
	assert_int_equal(backoff_cap_ms(1000, 60000, 7), 60000);
	assert_int_equal(backoff_cap_ms(1000, 60000, 4000000000u), 60000);
	assert_int_equal(backoff_next_ms(250, 5000), 500);
	assert_int_equal(backoff_next_ms(3000, 5000), 5000);
	assert_int_equal(backoff_next_ms(5000, 5000), 5000);
	assert_int_equal(backoff_next_ms(INT64_MAX / 2 + 1, INT64_MAX), INT64_MAX);
	assert_int_equal(jitter_ms(0), 0);
	assert_int_equal(jitter_ms(-5), 0);
	for (int i = 0; i < 1000; i++) {
		int64_t j = jitter_ms(100);
		assert_true(j >= 0 && j <= 100);
	}
}

static void test_format_duration(void **state)
{
	static const struct { int64_t ms; const char *s; } v[] = {
		{ 0, "0" }, { 1, "1ms" }, { 1500, "1500ms" }, { 90000, "90s" }, { 120000, "2m" },
		{ 7200000, "2h" }, { 604800000, "7d" }, { -3000, "-3s" },
	};
	char b[32];
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		format_duration(v[i].ms, b, sizeof(b));
		assert_string_equal(b, v[i].s);
	}
}

/* A deadline made by mono_deadline is MS ahead of the monotonic clock (and
 * normalised), and a timed wait on a cond_init_monotonic condition honours it. */
static void test_mono_deadline_and_wait(void **state)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t c;
	struct timespec now, d;
	int64_t t0;
	(void)state;
	assert_int_equal(cond_init_monotonic(&c), 0);
	clock_gettime(CLOCK_MONOTONIC, &now);
	d = mono_deadline(1999);
	assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
	int64_t ahead = (int64_t)(d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
	assert_true(ahead >= 1998 && ahead <= 2100);
	d = mono_deadline(-10);
	assert_true(d.tv_sec >= now.tv_sec);
	t0 = mono_ms();
	d = mono_deadline(50);
	pthread_mutex_lock(&mu);
	while (pthread_cond_timedwait(&c, &mu, &d) == 0)
		;
	pthread_mutex_unlock(&mu);
	assert_true(mono_ms() - t0 >= 49);
	pthread_cond_destroy(&c);
}

static void test_base64_into_buffer(void **state)
{
	char out[16];
	(void)state;
	assert_int_equal(base64_len(0), 0);
	assert_int_equal(base64_len(1), 4);
	assert_int_equal(base64_len(3), 4);
	assert_int_equal(base64_len(4), 8);
	memset(out, '#', sizeof(out));
	base64_encode_to(out, "foob", 4);
	assert_memory_equal(out, "Zm9vYg==", 8);
	assert_int_equal(out[8], '#'); /* exactly base64_len bytes, no NUL */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_every_code),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_base64_round_trip),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_rand_below_stays_in_range),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_mono_deadline_and_wait),
		cmocka_unit_test(test_base64_into_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
