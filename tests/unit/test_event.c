/* test_event.c - record round trip, request bytes, key hash, and decode
 * of truncated or garbage records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "event.h"
#include "gateway.pb-c.h"
#include "route.h"

static const struct publish_msg msg = {
	.route = "pump", .name = "pump-alarm", .correlation_key = "SN-1", .message_id = "m2z-abc",
	.ttl_ms = 3600000, .variables = "{\"t\":1}", .tenant_id = "t1",
};
static const char payload[] = "{\"t\":1}\0bin\xff"; /* binary-safe: NUL and 0xff inside */

static void test_round_trip(void **state)
{
	struct buf b = BUF_INIT;
	struct event ev;
	(void)state;

	buf_puts(&b, "prefix"); /* encode appends */
	assert_int_equal(event_encode(&msg, "plant/1/pump", payload, sizeof(payload) - 1, 1700000000123LL, &b), 0);
	assert_memory_equal(b.p, "prefix", 6);
	assert_int_equal(event_decode(b.p + 6, b.len - 6, &ev), 0);
	assert_int_equal(ev.recv_ms, 1700000000123LL);
	assert_string_equal(ev.route, "pump");
	assert_int_equal(ev.route_len, 4);
	assert_string_equal(ev.topic, "plant/1/pump");
	assert_int_equal(ev.topic_len, 12);
	assert_int_equal(ev.payload_len, sizeof(payload) - 1);
	assert_memory_equal(ev.payload, payload, sizeof(payload) - 1);
	assert_string_equal(ev.message_id, "m2z-abc");
	assert_string_equal(ev.correlation_key, "SN-1");
	assert_int_equal(ev.request_len, event_request_size(&msg));

	GatewayProtocol__PublishMessageRequest *req =
		gateway_protocol__publish_message_request__unpack(NULL, ev.request_len, ev.request);
	assert_non_null(req);
	assert_string_equal(req->name, "pump-alarm");
	assert_string_equal(req->correlationkey, "SN-1");
	assert_int_equal(req->timetolive, 3600000);
	assert_string_equal(req->messageid, "m2z-abc");
	assert_string_equal(req->variables, "{\"t\":1}");
	assert_string_equal(req->tenantid, "t1");
	gateway_protocol__publish_message_request__free_unpacked(req, NULL);
	buf_free(&b);
}

static void test_key_hash(void **state)
{
	struct buf b = BUF_INIT;
	struct event e1, e2, e3, e4;
	struct publish_msg m = msg;
	(void)state;

	/* FNV-1a reference values */
	assert_int_equal(event_hash("", 0), 0xcbf29ce484222325ULL);
	assert_int_equal(event_hash("a", 1), 0xaf63dc4c8601ec8cULL);

	event_encode(&m, "t", "x", 1, 0, &b);
	size_t l1 = b.len;
	m.name = "other-name"; /* same key, other name: same lane */
	event_encode(&m, "t", "y", 1, 0, &b);
	size_t l2 = b.len;
	m.correlation_key = "SN-2";
	event_encode(&m, "t", "y", 1, 0, &b);
	size_t l3 = b.len;
	m.correlation_key = "SN-1";
	m.tenant_id = "t2";
	event_encode(&m, "t", "y", 1, 0, &b);
	assert_int_equal(event_decode(b.p, l1, &e1), 0);
	assert_int_equal(event_decode(b.p + l1, l2 - l1, &e2), 0);
	assert_int_equal(event_decode(b.p + l2, l3 - l2, &e3), 0);
	assert_int_equal(event_decode(b.p + l3, b.len - l3, &e4), 0);
	assert_int_equal(e1.key_hash, e2.key_hash);
	assert_int_equal(e1.key_hash, event_hash("t1\0SN-1", 7));
	assert_int_not_equal(e1.key_hash, e3.key_hash);
	assert_int_not_equal(e1.key_hash, e4.key_hash);
	buf_free(&b);
}

static void test_corrupt(void **state)
{
	struct buf b = BUF_INIT;
	struct event ev;
	unsigned char *copy;
	(void)state;

	assert_int_equal(event_encode(&msg, "a/b", payload, sizeof(payload) - 1, 5, &b), 0);
	/* every truncation is rejected; the copy is exactly sized so ASan sees
	 * any read past the end */
	for (size_t n = 0; n < b.len; n++) {
		copy = malloc(n ? n : 1);
		memcpy(copy, b.p, n);
		if (event_decode(copy, n, &ev) != M2Z_ERR_CORRUPT)
			fail_msg("truncated to %zu accepted", n);
		free(copy);
	}
	/* trailing bytes */
	copy = malloc(b.len + 1);
	memcpy(copy, b.p, b.len);
	copy[b.len] = 0;
	assert_int_equal(event_decode(copy, b.len + 1, &ev), M2Z_ERR_CORRUPT);
	free(copy);
	/* version */
	b.p[0] = 2;
	assert_int_equal(event_decode(b.p, b.len, &ev), M2Z_ERR_CORRUPT);
	b.p[0] = 1;
	assert_int_equal(event_decode(b.p, b.len, &ev), 0);
	/* a length that runs past the end, and one huge length */
	b.p[17] = (char)0x7f;
	assert_int_equal(event_decode(b.p, b.len, &ev), M2Z_ERR_CORRUPT);
	memset(b.p + 17, 0xff, 4);
	assert_int_equal(event_decode(b.p, b.len, &ev), M2Z_ERR_CORRUPT);
	assert_int_equal(event_decode(NULL, 0, &ev), M2Z_ERR_CORRUPT);
	buf_free(&b);

	/* single-byte flips of a valid record either decode within bounds or
	 * are rejected; never crash */
	assert_int_equal(event_encode(&msg, "a/b", "p", 1, 5, &b), 0);
	for (size_t i = 0; i < b.len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			copy = malloc(b.len);
			memcpy(copy, b.p, b.len);
			copy[i] ^= (unsigned char)(1u << bit);
			if (event_decode(copy, b.len, &ev) == 0) {
				assert_true(ev.route_len + ev.topic_len + ev.payload_len + ev.message_id_len +
					    ev.correlation_key_len + ev.request_len <= b.len);
				assert_int_equal(strlen(ev.topic), ev.topic_len);
			}
			free(copy);
		}
	}
	/* pseudo-random garbage */
	srand(7);
	for (int k = 0; k < 2000; k++) {
		size_t n = (size_t)(rand() % 80);
		copy = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++)
			copy[i] = (unsigned char)(i < 1 ? 1 : (i >= 17 && i % 5 < 3 ? 0 : rand()));
		(void)event_decode(copy, n, &ev);
		free(copy);
	}
	buf_free(&b);
}

static void test_empty_fields(void **state)
{
	struct buf b = BUF_INIT;
	struct event ev;
	struct publish_msg m = { .route = "r", .name = "n", .correlation_key = "", .message_id = "",
				 .ttl_ms = 0, .variables = "{}", .tenant_id = "" };
	(void)state;
	assert_int_equal(event_encode(&m, "t", "", 0, -1, &b), 0);
	assert_int_equal(event_decode(b.p, b.len, &ev), 0);
	assert_int_equal(ev.payload_len, 0);
	assert_string_equal(ev.message_id, "");
	assert_string_equal(ev.correlation_key, "");
	assert_int_equal(ev.recv_ms, -1);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_key_hash),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_empty_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
