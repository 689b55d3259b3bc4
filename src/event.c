/* event.c - the record that travels ingest -> spool -> forward.
 *
 * Layout (little-endian), version 1:
 *   u8  version (1)
 *   i64 recv_ms
 *   u64 key_hash
 *   6 x { u32 len, len bytes, u8 0 }   route, topic, payload, message_id,
 *                                       correlation_key, request
 * Every field carries a trailing NUL (not counted in len) so the decoded
 * strings can be used as C strings straight from the buffer. */
#include "event.h"

#include "err.h"
#include "gateway.pb-c.h"
#include "route.h"

#include <string.h>

#define EVENT_VERSION 1
#define HEADER_BYTES (1 + 8 + 8)
#define N_FIELDS 6

uint64_t event_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t key_hash(const struct publish_msg *msg)
{
	uint64_t h = event_hash(msg->tenant_id, strlen(msg->tenant_id) + 1);
	size_t klen = strlen(msg->correlation_key);

	/* FNV-1a continued over the key: same as hashing tenant NUL key. */
	for (size_t i = 0; i < klen; i++) {
		h ^= (unsigned char)msg->correlation_key[i];
		h *= 0x100000001b3ULL;
	}
	/* An empty key only reaches message start events, where order between
	 * events has no meaning; spread them by id instead of one lane. */
	if (klen == 0 && msg->message_id[0]) {
		size_t n = strlen(msg->message_id);
		for (size_t i = 0; i < n; i++) {
			h ^= (unsigned char)msg->message_id[i];
			h *= 0x100000001b3ULL;
		}
	}
	return h;
}

static void request_init(GatewayProtocol__PublishMessageRequest *req, const struct publish_msg *msg)
{
	gateway_protocol__publish_message_request__init(req);
	/* protobuf-c never writes through these for packing. */
	req->name = (char *)msg->name;
	req->correlationkey = (char *)msg->correlation_key;
	req->timetolive = msg->ttl_ms;
	req->messageid = (char *)msg->message_id;
	req->variables = (char *)msg->variables;
	req->tenantid = (char *)msg->tenant_id;
}

size_t event_request_size(const struct publish_msg *msg)
{
	GatewayProtocol__PublishMessageRequest req;

	request_init(&req, msg);
	return gateway_protocol__publish_message_request__get_packed_size(&req);
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_field(uint8_t **w, const void *data, size_t len)
{
	put_le(*w, len, 4);
	if (len)
		memcpy(*w + 4, data, len);
	(*w)[4 + len] = 0;
	*w += 4 + len + 1;
}

int event_encode(const struct publish_msg *msg, const char *topic,
		 const void *payload, size_t len, int64_t recv_ms, struct buf *out)
{
	GatewayProtocol__PublishMessageRequest req;
	const void *data[N_FIELDS - 1] = { msg->route, topic, payload, msg->message_id, msg->correlation_key };
	size_t lens[N_FIELDS - 1] = { strlen(msg->route), strlen(topic), len, strlen(msg->message_id),
				      strlen(msg->correlation_key) };
	size_t total = HEADER_BYTES, rlen;
	uint8_t *start, *w;

	request_init(&req, msg);
	rlen = gateway_protocol__publish_message_request__get_packed_size(&req);
	for (int i = 0; i < N_FIELDS - 1; i++) {
		if (lens[i] > UINT32_MAX)
			return M2Z_ERR_TOO_BIG;
		total += 4 + lens[i] + 1;
	}
	if (rlen > UINT32_MAX)
		return M2Z_ERR_TOO_BIG;
	total += 4 + rlen + 1;
	if (buf_reserve(out, total))
		return M2Z_ERR_NOMEM;
	start = w = (uint8_t *)out->p + out->len;
	w[0] = EVENT_VERSION;
	put_le(w + 1, (uint64_t)recv_ms, 8);
	put_le(w + 9, key_hash(msg), 8);
	w += HEADER_BYTES;
	for (int i = 0; i < N_FIELDS - 1; i++)
		put_field(&w, data[i], lens[i]);
	put_le(w, rlen, 4);
	gateway_protocol__publish_message_request__pack(&req, w + 4);
	w[4 + rlen] = 0;
	w += 4 + rlen + 1;
	out->len += (size_t)(w - start);
	out->p[out->len] = '\0';
	return M2Z_OK;
}

/* Take the next field; bounds-checked against the record's end. */
static int get_field(const uint8_t **r, const uint8_t *end, const uint8_t **data, size_t *len)
{
	uint64_t n;

	if (end - *r < 4)
		return M2Z_ERR_CORRUPT;
	n = get_le(*r, 4);
	if ((uint64_t)(end - *r - 4) < n + 1 || (*r)[4 + n] != 0)
		return M2Z_ERR_CORRUPT;
	*data = *r + 4;
	*len = (size_t)n;
	*r += 4 + n + 1;
	return M2Z_OK;
}

/* Text fields must not hold a NUL of their own: callers use them as C strings. */
static bool text_ok(const uint8_t *p, size_t n)
{
	return memchr(p, 0, n) == NULL;
}

int event_decode(const void *rec, size_t len, struct event *out)
{
	const uint8_t *r = rec, *end = r + len, *f[N_FIELDS];
	size_t n[N_FIELDS];
	struct event ev;

	if (!rec || len < HEADER_BYTES || r[0] != EVENT_VERSION)
		return M2Z_ERR_CORRUPT;
	ev.recv_ms = (int64_t)get_le(r + 1, 8);
	ev.key_hash = get_le(r + 9, 8);
	r += HEADER_BYTES;
	for (int i = 0; i < N_FIELDS; i++)
		if (get_field(&r, end, &f[i], &n[i]))
			return M2Z_ERR_CORRUPT;
	if (r != end)
		return M2Z_ERR_CORRUPT;
	if (!text_ok(f[0], n[0]) || !text_ok(f[1], n[1]) || !text_ok(f[3], n[3]) || !text_ok(f[4], n[4]))
		return M2Z_ERR_CORRUPT;
	ev.route = (const char *)f[0];           ev.route_len = n[0];
	ev.topic = (const char *)f[1];           ev.topic_len = n[1];
	ev.payload = f[2];                       ev.payload_len = n[2];
	ev.message_id = (const char *)f[3];      ev.message_id_len = n[3];
	ev.correlation_key = (const char *)f[4]; ev.correlation_key_len = n[4];
	ev.request = f[5];                       ev.request_len = n[5];
	*out = ev;
	return M2Z_OK;
}
