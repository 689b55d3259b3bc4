/* fuzz_event.c - libFuzzer target: the spool record decoder
 * (event_decode), plus an encode/decode round trip of fields cut from the
 * input. Oracle: a decoded record's fields lie inside the input, text
 * fields are NUL-terminated at their length, and a round trip gives back
 * what was encoded. Seeds: fuzz/corpus/event/ (records event_encode wrote). */
#include "buf.h"
#include "err.h"
#include "event.h"
#include "route.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void in_range(const void *p, size_t n, const uint8_t *data, size_t size)
{
	const uint8_t *q = p;

	if (n && (q < data || q + n > data + size))
		abort();
}

static void check_text(const char *s, size_t n, const uint8_t *data, size_t size)
{
	in_range(s, n + 1, data, size);
	if (strlen(s) != n)
		abort();
}

static void round_trip(const uint8_t *data, size_t size)
{
	char *s = strndup((const char *)data, size > 64 ? 64 : size);
	struct publish_msg m = { .route = "r", .name = s, .correlation_key = s, .message_id = s,
				 .ttl_ms = (int64_t)size, .variables = "{}", .tenant_id = "" };
	struct buf b = BUF_INIT;
	struct event ev;

	if (!s)
		abort();
	if (event_encode(&m, s, data, size, 42, &b) == M2Z_OK) {
		if (event_decode(b.p, b.len, &ev) != M2Z_OK || ev.recv_ms != 42 ||
		    ev.payload_len != size || memcmp(ev.payload, data, size) != 0 ||
		    strcmp(ev.topic, s) != 0 || strcmp(ev.correlation_key, s) != 0)
			abort();
	}
	buf_free(&b);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A private copy: the decoder must not read past SIZE, and ASan only
	 * sees that when the buffer ends exactly there. */
	uint8_t *copy = malloc(size ? size : 1);
	struct event ev;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (event_decode(copy, size, &ev) == M2Z_OK) {
		check_text(ev.route, ev.route_len, copy, size);
		check_text(ev.topic, ev.topic_len, copy, size);
		check_text(ev.message_id, ev.message_id_len, copy, size);
		check_text(ev.correlation_key, ev.correlation_key_len, copy, size);
		in_range(ev.payload, ev.payload_len, copy, size);
		in_range(ev.request, ev.request_len, copy, size);
	}
	free(copy);
	round_trip(data, size);
	return 0;
}
