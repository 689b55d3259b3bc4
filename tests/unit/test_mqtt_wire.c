/* test_mqtt_wire.c - the MQTT 3.1.1 codec (mqtt_wire.c). Client packets
 * are checked against bytes written by hand from the standard's layout
 * (the decoder takes only server packets, so no round trip); the decoder
 * against hand-written server packets, malformed ones included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "mqtt_wire.h"

#define B(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

/* ---- helpers ------------------------------------------------------------- */

static ssize_t decode(const uint8_t *d, size_t n, struct mqtt_packet *p)
{
	return mqtt_decode(d, n, p);
}

static void expect_bytes(const struct buf *b, const uint8_t *want, size_t n)
{
	assert_int_equal(b->len, n);
	assert_memory_equal(b->p, want, n);
	assert_int_equal(b->p[b->len], '\0');
}

/* An encoder's error leaves a buffer that already holds "xyz" as it was. */
static void expect_unchanged(const struct buf *b)
{
	assert_int_equal(b->len, 3);
	assert_memory_equal(b->p, "xyz", 4);
}

static void prefill(struct buf *b)
{
	buf_reset(b);
	assert_int_equal(buf_puts(b, "xyz"), 0);
}

/* 65,536 bytes of FILL: one over the string limit (1.5.3); cutting it at
 * [65535] gives the largest string allowed. Caller frees. */
static char *too_long(char fill)
{
	char *s = malloc(65537);

	assert_non_null(s);
	memset(s, fill, 65536);
	s[65536] = '\0';
	return s;
}

/* ---- remaining length ---------------------------------------------------- */

static void test_remaining_length_boundaries(void **state)
{
	static const struct {
		uint8_t bytes[5];
		size_t n;
		size_t rem;
	} t[] = {
		{ { 0x00 }, 1, 0 },
		{ { 0x7F }, 1, 127 },
		{ { 0x80, 0x01 }, 2, 128 },
		{ { 0xFF, 0x7F }, 2, 16383 },
		{ { 0x80, 0x80, 0x01 }, 3, 16384 },
		{ { 0xFF, 0xFF, 0x7F }, 3, 2097151 },
		{ { 0x80, 0x80, 0x80, 0x01 }, 4, 2097152 },
		{ { 0xFF, 0xFF, 0xFF, 0x7F }, 4, 268435455 },
		/* not minimal, still well-formed (2.2.3 asks minimal of the sender only) */
		{ { 0x80, 0x00 }, 2, 0 },
		{ { 0x81, 0x80, 0x80, 0x00 }, 4, 1 },
	};
	uint8_t hdr[6];

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		hdr[0] = 0x30;
		memcpy(hdr + 1, t[i].bytes, t[i].n);
		/* the header alone tells the frame's length */
		assert_int_equal(mqtt_frame_len(hdr, 1 + t[i].n, SIZE_MAX), 1 + t[i].n + t[i].rem);
		/* one byte short of it does not */
		assert_int_equal(mqtt_frame_len(hdr, t[i].n, SIZE_MAX), 0);
	}
	/* a fifth length byte is malformed, known as soon as the fourth arrives */
	assert_int_equal(mqtt_frame_len(B(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), SIZE_MAX),
			 M2Z_ERR_PARSE);
	assert_int_equal(mqtt_frame_len(B(0x30, 0x80, 0x80, 0x80, 0x80), SIZE_MAX), M2Z_ERR_PARSE);
	assert_int_equal(mqtt_frame_len(B(0x30, 0x80, 0x80, 0x80), SIZE_MAX), 0);
	assert_int_equal(mqtt_frame_len(NULL, 0, SIZE_MAX), 0);
}

static void test_frame_len_too_big_from_header(void **state)
{
	(void)state;
	/* 256 MB announced, 5 bytes received: refused before the body */
	assert_int_equal(mqtt_frame_len(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 1 << 20), M2Z_ERR_TOO_BIG);
	/* 1 + 2 + 200 = 203 */
	assert_int_equal(mqtt_frame_len(B(0x30, 0xC8, 0x01), 203), 203);
	assert_int_equal(mqtt_frame_len(B(0x30, 0xC8, 0x01), 202), M2Z_ERR_TOO_BIG);
}

/* The header an encoder writes for remaining lengths across each boundary. */
static void test_encode_remaining_length(void **state)
{
	static const struct {
		size_t rem;
		uint8_t bytes[4];
		size_t n;
	} t[] = {
		{ 127, { 0x7F }, 1 },
		{ 128, { 0x80, 0x01 }, 2 },
		{ 16383, { 0xFF, 0x7F }, 2 },
		{ 16384, { 0x80, 0x80, 0x01 }, 3 },
		{ 2097151, { 0xFF, 0xFF, 0x7F }, 3 },
		{ 2097152, { 0x80, 0x80, 0x80, 0x01 }, 4 },
	};
	struct buf b = BUF_INIT;
	uint8_t *payload = calloc(1, 2097152);
	struct mqtt_packet p;

	(void)state;
	assert_non_null(payload);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t plen = t[i].rem - 3; /* topic "t": 2 + 1 bytes */

		buf_reset(&b);
		assert_int_equal(mqtt_encode_publish(&b, "t", payload, plen, 0, false, false, 0), 0);
		assert_int_equal(b.len, 1 + t[i].n + t[i].rem);
		assert_int_equal((uint8_t)b.p[0], 0x30);
		assert_memory_equal(b.p + 1, t[i].bytes, t[i].n);
		/* the decoder reads back what the encoder wrote */
		assert_int_equal(mqtt_frame_len((uint8_t *)b.p, b.len, SIZE_MAX), b.len);
		assert_int_equal(decode((uint8_t *)b.p, b.len, &p), b.len);
		assert_int_equal(p.payload_len, plen);
	}
	/* over 268,435,455 cannot be encoded (the payload is not read) */
	prefill(&b);
	assert_int_equal(mqtt_encode_publish(&b, "t", payload, MQTT_MAX_REMAINING - 2, 0, false,
					     false, 0), M2Z_ERR_INVAL);
	expect_unchanged(&b);
	assert_int_equal(mqtt_encode_publish(&b, "t", payload, SIZE_MAX - 1, 0, false, false, 0),
			 M2Z_ERR_INVAL);
	expect_unchanged(&b);
	free(payload);
	buf_free(&b);
}

/* ---- decoding: valid server packets --------------------------------------- */

static void test_decode_connack(void **state)
{
	struct mqtt_packet p;

	(void)state;
	assert_int_equal(decode(B(0x20, 0x02, 0x00, 0x00), &p), 4);
	assert_int_equal(p.type, MQTT_CONNACK);
	assert_false(p.session_present);
	assert_int_equal(p.return_code, 0);
	assert_int_equal(decode(B(0x20, 0x02, 0x01, 0x00), &p), 4);
	assert_true(p.session_present);
	for (uint8_t rc = 1; rc <= 5; rc++) {
		uint8_t f[] = { 0x20, 0x02, 0x00, rc };

		assert_int_equal(decode(f, sizeof(f), &p), 4);
		assert_int_equal(p.return_code, rc);
	}
}

static void test_decode_publish(void **state)
{
	struct mqtt_packet p;
	const uint8_t q0[] = { 0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i' };
	const uint8_t q1[] = { 0x3B, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, '{', '}' };
	const uint8_t q2_empty[] = { 0x34, 0x05, 0x00, 0x01, 'x', 0x00, 0x01 };
	/* topic "d/é/😀" (2- and 4-byte UTF-8) */
	const uint8_t utf[] = { 0x31, 0x0B, 0x00, 0x09, 'd', '/', 0xC3, 0xA9, '/', 0xF0, 0x9F, 0x98, 0x80 };
	/* the frame followed by the next one's first byte: only the frame is consumed */
	const uint8_t more[] = { 0x30, 0x04, 0x00, 0x01, 'k', 'v', 0xD0 };

	(void)state;
	assert_int_equal(decode(q0, sizeof(q0), &p), sizeof(q0));
	assert_int_equal(p.type, MQTT_PUBLISH);
	assert_int_equal(p.qos, 0);
	assert_false(p.retain);
	assert_false(p.dup);
	assert_int_equal(p.id, 0);
	assert_ptr_equal(p.topic, (const char *)q0 + 4);
	assert_int_equal(p.topic_len, 3);
	assert_ptr_equal(p.payload, q0 + 7);
	assert_int_equal(p.payload_len, 2);

	assert_int_equal(decode(q1, sizeof(q1), &p), sizeof(q1));
	assert_int_equal(p.qos, 1);
	assert_true(p.retain);
	assert_true(p.dup);
	assert_int_equal(p.id, 0x1234);
	assert_ptr_equal(p.payload, q1 + 9);
	assert_int_equal(p.payload_len, 2);

	assert_int_equal(decode(q2_empty, sizeof(q2_empty), &p), sizeof(q2_empty));
	assert_int_equal(p.qos, 2);
	assert_int_equal(p.id, 1);
	assert_int_equal(p.payload_len, 0);

	assert_int_equal(decode(utf, sizeof(utf), &p), sizeof(utf));
	assert_int_equal(p.topic_len, 9);
	assert_true(p.retain);

	/* the smallest code point of each length and the largest allowed */
	assert_int_equal(decode(B(0x30, 0x04, 0x00, 0x02, 0xC2, 0x80), &p), 6);
	assert_int_equal(decode(B(0x30, 0x05, 0x00, 0x03, 0xE0, 0xA0, 0x80), &p), 7);
	assert_int_equal(decode(B(0x30, 0x06, 0x00, 0x04, 0xF0, 0x90, 0x80, 0x80), &p), 8);
	assert_int_equal(decode(B(0x30, 0x06, 0x00, 0x04, 0xF4, 0x8F, 0xBF, 0xBF), &p), 8);
	/* either side of the surrogates */
	assert_int_equal(decode(B(0x30, 0x05, 0x00, 0x03, 0xED, 0x9F, 0xBF), &p), 7);
	assert_int_equal(decode(B(0x30, 0x05, 0x00, 0x03, 0xEE, 0x80, 0x80), &p), 7);

	assert_int_equal(decode(more, sizeof(more), &p), 6);
	assert_int_equal(p.payload_len, 1);
	assert_int_equal(p.payload[0], 'v');
}

static void test_decode_acks(void **state)
{
	struct mqtt_packet p;
	const uint8_t suback[] = { 0x90, 0x06, 0x00, 0x07, 0x00, 0x01, 0x02, 0x80 };

	(void)state;
	assert_int_equal(decode(B(0x40, 0x02, 0x00, 0x01), &p), 4);
	assert_int_equal(p.type, MQTT_PUBACK);
	assert_int_equal(p.id, 1);
	assert_int_equal(decode(B(0x50, 0x02, 0xFF, 0xFF), &p), 4);
	assert_int_equal(p.type, MQTT_PUBREC);
	assert_int_equal(p.id, 0xFFFF);
	assert_int_equal(decode(B(0x62, 0x02, 0x01, 0x00), &p), 4);
	assert_int_equal(p.type, MQTT_PUBREL);
	assert_int_equal(p.id, 0x100);
	assert_int_equal(decode(B(0x70, 0x02, 0x00, 0x09), &p), 4);
	assert_int_equal(p.type, MQTT_PUBCOMP);
	assert_int_equal(decode(B(0xB0, 0x02, 0x00, 0x05), &p), 4);
	assert_int_equal(p.type, MQTT_UNSUBACK);
	assert_int_equal(p.id, 5);
	assert_int_equal(decode(B(0xD0, 0x00), &p), 2);
	assert_int_equal(p.type, MQTT_PINGRESP);

	assert_int_equal(decode(suback, sizeof(suback), &p), sizeof(suback));
	assert_int_equal(p.type, MQTT_SUBACK);
	assert_int_equal(p.id, 7);
	assert_int_equal(p.n_granted, 4);
	assert_ptr_equal(p.granted, suback + 4);
	assert_int_equal(p.granted[3], 0x80);
}

/* ---- decoding: malformed ------------------------------------------------- */

struct bad {
	const char *why;
	uint8_t b[16];
	size_t n;
};

static const struct bad bad_packets[] = {
	{ "CONNACK flags", { 0x21, 0x02, 0x00, 0x00 }, 4 },
	{ "CONNACK remlen 3", { 0x20, 0x03, 0x00, 0x00, 0x00 }, 5 },
	{ "CONNACK remlen 1", { 0x20, 0x01, 0x00 }, 3 },
	{ "CONNACK reserved ack flag", { 0x20, 0x02, 0x02, 0x00 }, 4 },
	{ "CONNACK return code 6", { 0x20, 0x02, 0x00, 0x06 }, 4 },
	{ "CONNACK refusal with session", { 0x20, 0x02, 0x01, 0x05 }, 4 },
	{ "PUBLISH QoS 3", { 0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01 }, 7 },
	{ "PUBLISH DUP with QoS 0", { 0x38, 0x03, 0x00, 0x01, 'a' }, 5 },
	{ "PUBLISH empty topic", { 0x30, 0x03, 0x00, 0x00, 'x' }, 5 },
	{ "PUBLISH topic past frame", { 0x30, 0x03, 0x00, 0x02, 'a', 'b' }, 6 },
	{ "PUBLISH no topic length", { 0x30, 0x01, 0x00 }, 3 },
	{ "PUBLISH remlen 0", { 0x30, 0x00 }, 2 },
	{ "PUBLISH topic with +", { 0x30, 0x05, 0x00, 0x03, 'a', '/', '+' }, 7 },
	{ "PUBLISH topic with #", { 0x30, 0x03, 0x00, 0x01, '#' }, 5 },
	{ "PUBLISH topic with U+0000", { 0x30, 0x04, 0x00, 0x02, 'a', 0x00 }, 6 },
	{ "PUBLISH overlong 2-byte", { 0x30, 0x04, 0x00, 0x02, 0xC0, 0xAF }, 6 },
	{ "PUBLISH overlong NUL", { 0x30, 0x04, 0x00, 0x02, 0xC0, 0x80 }, 6 },
	{ "PUBLISH overlong 3-byte", { 0x30, 0x05, 0x00, 0x03, 0xE0, 0x80, 0xAF }, 7 },
	{ "PUBLISH overlong 3-byte U+0080", { 0x30, 0x05, 0x00, 0x03, 0xE0, 0x82, 0x80 }, 7 },
	{ "PUBLISH overlong 3-byte U+07FF", { 0x30, 0x05, 0x00, 0x03, 0xE0, 0x9F, 0xBF }, 7 },
	{ "PUBLISH overlong 4-byte U+FFFF", { 0x30, 0x06, 0x00, 0x04, 0xF0, 0x8F, 0xBF, 0xBF }, 8 },
	{ "PUBLISH overlong 4-byte", { 0x30, 0x06, 0x00, 0x04, 0xF0, 0x80, 0x80, 0xAF }, 8 },
	{ "PUBLISH surrogate D800", { 0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80 }, 7 },
	{ "PUBLISH surrogate DFFF", { 0x30, 0x05, 0x00, 0x03, 0xED, 0xBF, 0xBF }, 7 },
	{ "PUBLISH above U+10FFFF", { 0x30, 0x06, 0x00, 0x04, 0xF4, 0x90, 0x80, 0x80 }, 8 },
	{ "PUBLISH byte F5", { 0x30, 0x06, 0x00, 0x04, 0xF5, 0x80, 0x80, 0x80 }, 8 },
	{ "PUBLISH byte FF", { 0x30, 0x03, 0x00, 0x01, 0xFF }, 5 },
	{ "PUBLISH lone continuation", { 0x30, 0x03, 0x00, 0x01, 0x80 }, 5 },
	{ "PUBLISH truncated sequence", { 0x30, 0x05, 0x00, 0x02, 0xE2, 0x82, 'x' }, 7 },
	{ "PUBLISH QoS 1 id 0", { 0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00 }, 7 },
	{ "PUBLISH QoS 2 id 0", { 0x34, 0x06, 0x00, 0x01, 'a', 0x00, 0x00, 'p' }, 8 },
	{ "PUBLISH QoS 1 no id", { 0x32, 0x03, 0x00, 0x01, 'a' }, 5 },
	{ "PUBLISH QoS 1 half id", { 0x32, 0x04, 0x00, 0x01, 'a', 0x01 }, 6 },
	{ "PUBACK flags", { 0x41, 0x02, 0x00, 0x01 }, 4 },
	{ "PUBACK remlen 3", { 0x40, 0x03, 0x00, 0x01, 0x00 }, 5 },
	{ "PUBACK remlen 1", { 0x40, 0x01, 0x01 }, 3 },
	{ "PUBACK id 0", { 0x40, 0x02, 0x00, 0x00 }, 4 },
	{ "PUBREC flags", { 0x52, 0x02, 0x00, 0x01 }, 4 },
	{ "PUBREC id 0", { 0x50, 0x02, 0x00, 0x00 }, 4 },
	{ "PUBREL flags 0", { 0x60, 0x02, 0x00, 0x01 }, 4 },
	{ "PUBREL remlen 3", { 0x62, 0x03, 0x00, 0x01, 0x00 }, 5 },
	{ "PUBREL id 0", { 0x62, 0x02, 0x00, 0x00 }, 4 },
	{ "PUBCOMP flags", { 0x78, 0x02, 0x00, 0x01 }, 4 },
	{ "PUBCOMP id 0", { 0x70, 0x02, 0x00, 0x00 }, 4 },
	{ "SUBACK flags", { 0x92, 0x03, 0x00, 0x01, 0x00 }, 5 },
	{ "SUBACK empty", { 0x90, 0x02, 0x00, 0x01 }, 4 },
	{ "SUBACK id 0", { 0x90, 0x03, 0x00, 0x00, 0x00 }, 5 },
	{ "SUBACK return code 3", { 0x90, 0x03, 0x00, 0x01, 0x03 }, 5 },
	{ "SUBACK return code 0x81", { 0x90, 0x04, 0x00, 0x01, 0x00, 0x81 }, 6 },
	{ "SUBACK remlen 1", { 0x90, 0x01, 0x00 }, 3 },
	{ "UNSUBACK flags", { 0xB2, 0x02, 0x00, 0x01 }, 4 },
	{ "UNSUBACK remlen 3", { 0xB0, 0x03, 0x00, 0x01, 0x00 }, 5 },
	{ "UNSUBACK id 0", { 0xB0, 0x02, 0x00, 0x00 }, 4 },
	{ "PINGRESP remlen 1", { 0xD0, 0x01, 0x00 }, 3 },
	{ "PINGRESP flags", { 0xD1, 0x00 }, 2 },
	{ "type 0", { 0x00, 0x00 }, 2 },
	{ "CONNECT", { 0x10, 0x00 }, 2 },
	{ "SUBSCRIBE", { 0x82, 0x03, 0x00, 0x01, 0x00 }, 5 },
	{ "UNSUBSCRIBE", { 0xA2, 0x02, 0x00, 0x01 }, 4 },
	{ "PINGREQ", { 0xC0, 0x00 }, 2 },
	{ "DISCONNECT", { 0xE0, 0x00 }, 2 },
	{ "type 15", { 0xF0, 0x00 }, 2 },
	{ "fifth length byte", { 0xD0, 0x80, 0x80, 0x80, 0x80, 0x00 }, 6 },
	{ "frame longer than data", { 0x40, 0x02, 0x00 }, 3 },
	{ "header incomplete", { 0x30, 0x80 }, 2 },
	{ "nothing", { 0 }, 0 },
};

static void test_decode_malformed(void **state)
{
	struct mqtt_packet p;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_packets) / sizeof(bad_packets[0]); i++) {
		ssize_t r;

		memset(&p, 0xA5, sizeof(p));
		r = decode(bad_packets[i].b, bad_packets[i].n, &p);
		if (r != M2Z_ERR_PARSE)
			fail_msg("%s: got %zd, want M2Z_ERR_PARSE", bad_packets[i].why, r);
		/* nothing half-filled a caller could mistake for a packet */
		assert_null(p.topic);
		assert_null(p.granted);
	}
}

/* ---- a reader fed the byte stream split at every offset ------------------- */

struct stream {
	uint8_t data[400];
	size_t len;
	size_t ends[8]; /* where each frame ends */
	size_t n;
};

static void stream_add(struct stream *s, const uint8_t *b, size_t n)
{
	memcpy(s->data + s->len, b, n);
	s->len += n;
	s->ends[s->n++] = s->len;
}

static void make_stream(struct stream *s)
{
	uint8_t pub[1 + 2 + 2 + 3 + 2 + 200];

	memset(s, 0, sizeof(*s));
	stream_add(s, B(0x20, 0x02, 0x00, 0x00));
	stream_add(s, B(0x90, 0x04, 0x00, 0x01, 0x01, 0x80));
	/* remaining length 207 in two bytes: 0xCF 0x01 */
	pub[0] = 0x32;
	pub[1] = 0xCF;
	pub[2] = 0x01;
	memcpy(pub + 3, "\x00\x03" "a/b" "\x00\x2A", 7);
	memset(pub + 10, 'p', 200);
	stream_add(s, pub, sizeof(pub));
	stream_add(s, B(0x62, 0x02, 0x00, 0x2A));
	stream_add(s, B(0xD0, 0x00));
	stream_add(s, B(0x30, 0x03, 0x00, 0x01, 't'));
}

/* What a reader holding DATA[0..AVAIL) at offset OFF can do: returns the
 * offset past every whole frame, checking each against S. */
static size_t reader(const struct stream *s, size_t off, size_t avail, size_t *frame)
{
	for (;;) {
		ssize_t fl = mqtt_frame_len(s->data + off, avail - off, 1024);
		struct mqtt_packet p;

		assert_true(fl >= 0);
		if (fl == 0 || (size_t)fl > avail - off) {
			/* a known length must be the true one even before the body */
			if (fl > 0)
				assert_int_equal(off + (size_t)fl, s->ends[*frame]);
			return off;
		}
		assert_int_equal(off + (size_t)fl, s->ends[*frame]);
		assert_int_equal(decode(s->data + off, (size_t)fl, &p), fl);
		off += (size_t)fl;
		(*frame)++;
	}
}

static void test_split_every_offset(void **state)
{
	struct stream s;

	(void)state;
	make_stream(&s);
	for (size_t cut = 0; cut <= s.len; cut++) {
		size_t frame = 0;
		size_t off = reader(&s, 0, cut, &frame);

		off = reader(&s, off, s.len, &frame);
		assert_int_equal(off, s.len);
		assert_int_equal(frame, s.n);
	}
	/* the header is whole only with its last length byte; a body cut short
	 * never decodes */
	for (size_t k = 0; k < 3; k++)
		assert_int_equal(mqtt_frame_len(s.data + 10, k, 1024), 0);
	assert_int_equal(mqtt_frame_len(s.data + 10, 3, 1024), 210);
	for (size_t k = 0; k < 210; k++) {
		struct mqtt_packet p;

		assert_int_equal(decode(s.data + 10, k, &p), M2Z_ERR_PARSE);
	}
}

/* ---- encoders ------------------------------------------------------------- */

static void test_encode_connect(void **state)
{
	struct buf b = BUF_INIT;
	struct mqtt_connect c = { .client_id = "c1", .clean_session = true, .keepalive_s = 60 };
	const uint8_t minimal[] = { 0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3C,
				    0x00, 0x02, 'c', '1' };
	const uint8_t full[] = { 0x10, 0x1D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xEC, 0x01, 0x2C,
				 0x00, 0x02, 'c', '1', 0x00, 0x01, 'w', 0x00, 0x03, 'b', 0x00, 'e',
				 0x00, 0x01, 'u', 0x00, 0x02, 'p', 'w' };
	const uint8_t empty_id[] = { 0x10, 0x0F, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x82, 0x00, 0x00,
				     0x00, 0x00, 0x00, 0x01, 'u' };

	(void)state;
	assert_int_equal(mqtt_encode_connect(&b, &c), 0);
	expect_bytes(&b, minimal, sizeof(minimal));

	/* user name, password, will QoS 1 retained with a binary payload, no clean session */
	buf_reset(&b);
	c.clean_session = false;
	c.keepalive_s = 300;
	c.username = "u";
	c.password = "pw";
	c.will_topic = "w";
	c.will_payload = "b\0e";
	c.will_len = 3;
	c.will_qos = 1;
	c.will_retain = true;
	assert_int_equal(mqtt_encode_connect(&b, &c), 0);
	expect_bytes(&b, full, sizeof(full));

	/* an empty client id only with a clean session (3.1.3.1) */
	buf_reset(&b);
	memset(&c, 0, sizeof(c));
	c.client_id = "";
	c.clean_session = true;
	c.username = "u";
	assert_int_equal(mqtt_encode_connect(&b, &c), 0);
	expect_bytes(&b, empty_id, sizeof(empty_id));
	buf_free(&b);
}

static void test_encode_connect_invalid(void **state)
{
	struct buf b = BUF_INIT;
	struct mqtt_connect ok = { .client_id = "id", .clean_session = true };
	struct mqtt_connect c;
	char *big = too_long('x');

	(void)state;
	prefill(&b);
#define BAD(field_setup)                                                          \
	do {                                                                      \
		c = ok;                                                           \
		field_setup;                                                      \
		assert_int_equal(mqtt_encode_connect(&b, &c), M2Z_ERR_INVAL);     \
		expect_unchanged(&b);                                             \
	} while (0)
	BAD((c.client_id = "", c.clean_session = false));
	BAD((c.client_id = NULL, c.clean_session = false));
	BAD(c.client_id = "\xC0\xAF");
	BAD(c.client_id = big);
	BAD(c.password = "p");
	BAD(c.username = "\xED\xA0\x80");
	BAD(c.username = big);
	BAD((c.username = "u", c.password = big));
	BAD(c.will_topic = "");
	BAD(c.will_topic = "a/#");
	BAD(c.will_topic = "a/+/b");
	BAD((c.will_topic = "w", c.will_qos = 3));
	BAD((c.will_topic = "w", c.will_qos = -1));
	BAD((c.will_topic = "w", c.will_payload = NULL, c.will_len = 1));
	BAD((c.will_topic = "w", c.will_payload = big, c.will_len = 65536));
#undef BAD
	/* the limits themselves are fine */
	big[65535] = '\0';
	c = ok;
	c.client_id = big;
	assert_int_equal(mqtt_encode_connect(&b, &c), 0);
	assert_int_equal(b.len, 3 + 1 + 3 + 10 + 2 + 65535);
	free(big);
	buf_free(&b);
}

static void test_encode_publish(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(mqtt_encode_publish(&b, "a/b", "hi", 2, 0, false, false, 77), 0);
	expect_bytes(&b, B(0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'));
	buf_reset(&b);
	assert_int_equal(mqtt_encode_publish(&b, "a/b", "{}", 2, 1, true, true, 0x1234), 0);
	expect_bytes(&b, B(0x3B, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, '{', '}'));
	buf_reset(&b);
	assert_int_equal(mqtt_encode_publish(&b, "x", NULL, 0, 2, false, false, 1), 0);
	expect_bytes(&b, B(0x34, 0x05, 0x00, 0x01, 'x', 0x00, 0x01));
	/* appends after what is there */
	assert_int_equal(mqtt_encode_publish(&b, "$SYS/x", "", 0, 0, true, false, 0), 0);
	assert_int_equal(b.len, 7 + 10);
	assert_memory_equal(b.p + 7, "\x31\x08\x00\x06$SYS/x", 10);
	buf_free(&b);
}

static void test_encode_publish_invalid(void **state)
{
	struct buf b = BUF_INIT;
	char *big = too_long('x');

	(void)state;
	prefill(&b);
	assert_int_equal(mqtt_encode_publish(&b, NULL, "", 0, 0, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "", "", 0, 0, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "a/+", "", 0, 0, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "a/#", "", 0, 0, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "a\xC0\x80", "", 0, 0, false, false, 0),
			 M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, big, "", 0, 0, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "t", "", 0, 3, false, false, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "t", "", 0, -1, false, false, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "t", "", 0, 1, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "t", "", 0, 2, false, false, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "t", "", 0, 0, false, true, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_publish(&b, "t", NULL, 1, 0, false, false, 0), M2Z_ERR_INVAL);
	expect_unchanged(&b);
	/* a 65,535-byte topic is the largest */
	big[65535] = '\0';
	assert_int_equal(mqtt_encode_publish(&b, big, "", 0, 0, false, false, 0), 0);
	assert_int_equal(b.len, 3 + 1 + 3 + 2 + 65535);
	free(big);
	buf_free(&b);
}

static void test_encode_acks_and_simple(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 1), 0);
	assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBREC, 0x0102), 0);
	assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBREL, 0xFFFF), 0);
	assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBCOMP, 0x8000), 0);
	assert_int_equal(mqtt_encode_simple(&b, MQTT_PINGREQ), 0);
	assert_int_equal(mqtt_encode_simple(&b, MQTT_DISCONNECT), 0);
	expect_bytes(&b, B(0x40, 0x02, 0x00, 0x01, 0x50, 0x02, 0x01, 0x02, 0x62, 0x02, 0xFF, 0xFF,
			   0x70, 0x02, 0x80, 0x00, 0xC0, 0x00, 0xE0, 0x00));

	prefill(&b);
	assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_ack(&b, MQTT_SUBACK, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_ack(&b, MQTT_CONNACK, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_simple(&b, MQTT_PINGRESP), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_simple(&b, MQTT_CONNECT), M2Z_ERR_INVAL);
	expect_unchanged(&b);
	buf_free(&b);
}

static void test_encode_subscribe(void **state)
{
	struct buf b = BUF_INIT;
	const char *const f[] = { "a/#", "+", "$share/g/s/+" };
	const int q[] = { 1, 0, 2 };
	const int q3[] = { 1, 3 };
	const char *const bad[] = { "a/#", "a#" };

	(void)state;
	assert_int_equal(mqtt_encode_subscribe(&b, 10, f, q, 3), 0);
	expect_bytes(&b, B(0x82, 0x1B, 0x00, 0x0A, 0x00, 0x03, 'a', '/', '#', 0x01, 0x00, 0x01, '+',
			   0x00, 0x00, 0x0C, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 's', '/',
			   '+', 0x02));
	buf_reset(&b);
	assert_int_equal(mqtt_encode_unsubscribe(&b, 0x0B0C, f, 2), 0);
	expect_bytes(&b, B(0xA2, 0x0A, 0x0B, 0x0C, 0x00, 0x03, 'a', '/', '#', 0x00, 0x01, '+'));

	prefill(&b);
	assert_int_equal(mqtt_encode_subscribe(&b, 0, f, q, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_subscribe(&b, 1, f, q, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_subscribe(&b, 1, f, NULL, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_subscribe(&b, 1, f, q3, 2), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_subscribe(&b, 1, bad, q, 2), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_unsubscribe(&b, 0, f, 1), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_unsubscribe(&b, 1, f, 0), M2Z_ERR_INVAL);
	assert_int_equal(mqtt_encode_unsubscribe(&b, 1, bad, 2), M2Z_ERR_INVAL);
	expect_unchanged(&b);
	buf_free(&b);
}

/* ---- topics and filters (4.7) --------------------------------------------- */

static void test_topic_matches(void **state)
{
	static const struct {
		const char *filter, *topic;
		bool match;
	} t[] = {
		{ "a/b", "a/b", true },
		{ "a/b", "a/c", false },
		{ "a/b", "a/b/c", false },
		{ "a/b/c", "a/b", false },
		{ "a/b", "A/b", false },
		{ "a/b", "a/b/", false },
		{ "#", "a", true },
		{ "#", "a/b/c", true },
		{ "#", "/", true },
		{ "#", "$SYS/broker", false },
		{ "+", "a", true },
		{ "+", "a/b", false },
		{ "+", "/", false },
		{ "+/+", "/", true },
		{ "+/+", "/finance", true },
		{ "+/+", "a/b", true },
		{ "+/+", "a", false },
		{ "/+", "/finance", true },
		{ "+", "$SYS", false },
		{ "+/monitor/Clients", "$SYS/monitor/Clients", false },
		{ "$SYS/#", "$SYS/monitor/Clients", true },
		{ "$SYS/monitor/+", "$SYS/monitor/Clients", true },
		{ "$SYS/#", "$SYS", true },
		{ "a/+/c", "a/b/c", true },
		{ "a/+/c", "a//c", true },
		{ "a/+/c", "a/b/d", false },
		{ "a/+/c", "a/b/c/d", false },
		{ "a/+/c", "a/c", false },
		{ "a/#", "a", true },
		{ "a/#", "a/", true },
		{ "a/#", "a/b/c", true },
		{ "a/#", "ab", false },
		{ "a/#", "b/a", false },
		{ "a/+", "a", false },
		{ "a/+", "a/", true },
		{ "a//b", "a//b", true },
		{ "a//b", "a/b", false },
		{ "a/+/+", "a//", true },
		{ "a/+/#", "a/b", true },
		{ "+/#", "a", true },
		{ "sport/tennis/player1/#", "sport/tennis/player1/ranking", true },
		{ "sport/+/player1", "sport/tennis/player1", true },
		{ "$share/grp/a/+", "a/b", true },
		{ "$share/grp/#", "x/y", true },
		{ "$share/grp/#", "$SYS/x", false },
		{ "$share/grp/a", "$share/grp/a", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		bool m = mqtt_topic_matches(t[i].filter, t[i].topic, strlen(t[i].topic));

		if (m != t[i].match)
			fail_msg("filter \"%s\" topic \"%s\": got %d", t[i].filter, t[i].topic, m);
		assert_true(mqtt_filter_valid(t[i].filter));
	}
	/* the topic is TOPIC_LEN bytes, not NUL-ended */
	assert_true(mqtt_topic_matches("a/b", "a/bcd", 3));
	assert_false(mqtt_topic_matches("a/bcd", "a/bcd", 3));
}

static void test_filter_valid(void **state)
{
	static const char *const valid[] = {
		"a", "/", "a/b", "#", "+", "+/+", "a/#", "/#", "a/+/b", "+/#", "a//b", "$SYS/#",
		"$share/g/a/b", "$share/g/#", "$share/group1/+/x", "caf\xC3\xA9", "a/b/",
	};
	static const char *const invalid[] = {
		"", "a#", "#a", "a/#/b", "a/b#", "##", "+a", "a+", "a/+b/c", "a/++", "#/", "a/#/",
		"$share/g", "$share/g/", "$share//a", "$share/g+/a", "$share/#/a", "a\xC0\xAF",
		"\xED\xA0\x80", "\xFF",
	};
	char *big = too_long('f');

	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		if (!mqtt_filter_valid(valid[i]))
			fail_msg("\"%s\" should be valid", valid[i]);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		if (mqtt_filter_valid(invalid[i]))
			fail_msg("\"%s\" should be invalid", invalid[i]);
	assert_false(mqtt_filter_valid(NULL));
	assert_false(mqtt_filter_valid(big));
	big[65535] = '\0';
	assert_true(mqtt_filter_valid(big));
	free(big);
}

static void test_connack_string(void **state)
{
	(void)state;
	assert_string_equal(mqtt_connack_string(0), "connection accepted");
	assert_string_equal(mqtt_connack_string(4), "refused: bad user name or password");
	assert_string_equal(mqtt_connack_string(5), "refused: not authorized");
	for (int i = 1; i <= 5; i++)
		assert_non_null(strstr(mqtt_connack_string(i), "refused"));
	assert_string_equal(mqtt_connack_string(6), "unknown return code");
	assert_string_equal(mqtt_connack_string(-1), "unknown return code");
	assert_string_equal(mqtt_connack_string(0x80), "unknown return code");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remaining_length_boundaries),
		cmocka_unit_test(test_frame_len_too_big_from_header),
		cmocka_unit_test(test_encode_remaining_length),
		cmocka_unit_test(test_decode_connack),
		cmocka_unit_test(test_decode_publish),
		cmocka_unit_test(test_decode_acks),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_split_every_offset),
		cmocka_unit_test(test_encode_connect),
		cmocka_unit_test(test_encode_connect_invalid),
		cmocka_unit_test(test_encode_publish),
		cmocka_unit_test(test_encode_publish_invalid),
		cmocka_unit_test(test_encode_acks_and_simple),
		cmocka_unit_test(test_encode_subscribe),
		cmocka_unit_test(test_topic_matches),
		cmocka_unit_test(test_filter_valid),
		cmocka_unit_test(test_connack_string),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
