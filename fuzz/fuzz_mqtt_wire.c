/* fuzz_mqtt_wire.c - libFuzzer target: the MQTT 3.1.1 reader of what a
 * broker sends (mqtt_frame_len + mqtt_decode) over the input as a byte
 * stream, and the topic helpers (mqtt_topic_matches, mqtt_filter_valid)
 * over the input split at its first NUL into a filter and a topic.
 * Oracle: a known frame length is the same under any limit and is already
 * known once the fixed header is whole; decode consumes exactly the frame,
 * refuses it one byte short, and ignores what follows it; topic, payload
 * and granted codes lie inside the frame; a decoded PUBLISH encodes again
 * (mqtt_encode_publish, never M2Z_ERR_INVAL) to the same flags and body;
 * a valid topic matches itself, "#", its levels as '+' and itself + "/#"
 * (with the '$' exception of 4.7.2).
 * Seeds: fuzz/corpus/mqtt_wire/ (server packets: CONNACK, PUBLISH QoS 0-2,
 * SUBACK, acks, PINGRESP; "filter NUL topic" pairs). */
#include "buf.h"
#include "err.h"
#include "mqtt_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that hostile lengths hit M2Z_ERR_TOO_BIG often. */
#define MAX_PACKET 4096

static struct buf enc = BUF_INIT; /* reused across inputs */
static char text[65536 + 8];       /* a topic, NUL-terminated */
static char pat[2 * 65536 + 8];    /* a filter built from it */

static void in_frame(const void *p, size_t n, const uint8_t *f, size_t fl)
{
	const uint8_t *q = p;

	if (n && (!q || q < f || q + n > f + fl))
		abort();
}

static size_t header_len(const uint8_t *f)
{
	size_t h = 2;

	while (f[h - 1] & 0x80)
		h++;
	return h;
}

static bool same(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
	return a->type == b->type && a->topic == b->topic && a->topic_len == b->topic_len &&
	       a->payload == b->payload && a->payload_len == b->payload_len && a->qos == b->qos &&
	       a->retain == b->retain && a->dup == b->dup && a->id == b->id &&
	       a->session_present == b->session_present && a->return_code == b->return_code &&
	       a->granted == b->granted && a->n_granted == b->n_granted;
}

static bool topic_valid(const char *t)
{
	size_t before = enc.len;
	int r = mqtt_encode_publish(&enc, t, NULL, 0, 0, false, false, 0);

	if (r == M2Z_ERR_NOMEM)
		abort();
	enc.len = before;
	return r == 0;
}

/* TEXT holds a valid topic of N bytes: the filters that must match it. */
static void check_topic(size_t n)
{
	bool dollar = text[0] == '$';
	/* as a filter, "$share/G/..." is a shared subscription to "..." */
	bool shared = strncmp(text, "$share/", 7) == 0;
	size_t k = 0;

	if (!mqtt_filter_valid(text) && !shared)
		abort();
	if (!shared && !mqtt_topic_matches(text, text, n))
		abort();
	if (mqtt_topic_matches("#", text, n) == dollar)
		abort();
	if (mqtt_topic_matches("$share/g/#", text, n) == dollar)
		abort();
	memcpy(pat, text, n);
	memcpy(pat + n, "/#", 3);
	if (!shared && !mqtt_topic_matches(pat, text, n))
		abort();
	/* every level as '+' */
	for (size_t i = 0; i <= n; i++) {
		if (i == 0 || text[i - 1] == '/')
			pat[k++] = '+';
		if (i < n && text[i] == '/')
			pat[k++] = '/';
	}
	pat[k] = '\0';
	if (mqtt_topic_matches(pat, text, n) == dollar)
		abort();
}

/* A decoded PUBLISH is one mqtt_encode_publish can write, byte for byte
 * (but for a remaining length the broker did not encode minimally). */
static void check_publish(const struct mqtt_packet *p, const uint8_t *f, size_t fl)
{
	size_t h = header_len(f), eh;
	int r;

	memcpy(text, p->topic, p->topic_len);
	text[p->topic_len] = '\0';
	buf_reset(&enc);
	r = mqtt_encode_publish(&enc, text, p->payload, p->payload_len, p->qos, p->retain, p->dup,
				p->id);
	if (r == M2Z_ERR_NOMEM)
		return;
	if (r != 0)
		abort();
	eh = header_len((const uint8_t *)enc.p);
	if ((uint8_t)enc.p[0] != f[0] || enc.len - eh != fl - h || memcmp(enc.p + eh, f + h, fl - h))
		abort();
	check_topic(p->topic_len);
}

static void check_packet(const struct mqtt_packet *p, const uint8_t *f, size_t fl)
{
	in_frame(p->topic, p->topic_len, f, fl);
	in_frame(p->payload, p->payload_len, f, fl);
	in_frame(p->granted, p->n_granted, f, fl);
	if (p->type == MQTT_PUBLISH) {
		if (!p->topic || p->topic_len == 0 || p->qos > 2 || (p->qos && !p->id))
			abort();
		check_publish(p, f, fl);
	}
	if (p->type == MQTT_SUBACK && p->n_granted == 0)
		abort();
}

/* One frame at F (AVAIL bytes there): returns its length, 0 to stop. */
static size_t one_frame(const uint8_t *f, size_t avail)
{
	ssize_t fl = mqtt_frame_len(f, avail, MAX_PACKET);
	ssize_t any = mqtt_frame_len(f, avail, SIZE_MAX);
	struct mqtt_packet p, q;
	ssize_t r;

	if ((fl >= 0 && any != fl) || (fl == M2Z_ERR_TOO_BIG && any <= MAX_PACKET) ||
	    (fl < 0 && fl != M2Z_ERR_TOO_BIG && fl != M2Z_ERR_PARSE) || (fl == 0 && avail >= 5))
		abort();
	if (fl <= 0)
		return 0;
	/* known from the fixed header alone, unknown one byte before it */
	if (mqtt_frame_len(f, header_len(f), MAX_PACKET) != fl ||
	    mqtt_frame_len(f, header_len(f) - 1, MAX_PACKET) != 0)
		abort();
	if ((size_t)fl > avail) {
		if (mqtt_decode(f, avail, &p) != M2Z_ERR_PARSE)
			abort();
		return 0;
	}
	r = mqtt_decode(f, avail, &p);
	if (mqtt_decode(f, (size_t)fl, &q) != r || !same(&p, &q))
		abort();
	if (mqtt_decode(f, (size_t)fl - 1, &q) != M2Z_ERR_PARSE)
		abort();
	if (r >= 0) {
		if (r != fl)
			abort();
		check_packet(&p, f, (size_t)fl);
	} else if (r != M2Z_ERR_PARSE) {
		abort();
	}
	/* a reader drops the connection on a bad frame; going on past it
	 * covers more of the input */
	return (size_t)fl;
}

static void topics(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t flen, tlen;
	char *filter;

	if (!nul)
		return;
	flen = (size_t)(nul - data);
	tlen = size - flen - 1;
	filter = strndup((const char *)data, flen);
	if (!filter)
		return;
	(void)mqtt_filter_valid(filter);
	(void)mqtt_topic_matches(filter, (const char *)nul + 1, tlen);
	if (tlen <= 65535 && !memchr(nul + 1, 0, tlen)) {
		memcpy(text, nul + 1, tlen);
		text[tlen] = '\0';
		if (topic_valid(text)) {
			/* a filter without wildcards matches only the same topic */
			if (mqtt_filter_valid(filter) && !strpbrk(filter, "+#") &&
			    strncmp(filter, "$share/", 7) != 0 &&
			    mqtt_topic_matches(filter, text, tlen) != (flen == tlen && !memcmp(filter, text, tlen)))
				abort();
			check_topic(tlen);
		}
	}
	free(filter);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0, fl;

	while (off < size && (fl = one_frame(data + off, size - off)) > 0)
		off += fl;
	topics(data, size);
	return 0;
}
