/* mqtt_wire.c - MQTT 3.1.1 packets: client encoders and a bounds-checked
 * decoder of what a server sends (mqtt_wire.h). Section numbers refer to
 * the OASIS MQTT 3.1.1 standard. */
#include "mqtt_wire.h"
#include "err.h"
#include "util.h"

#include <string.h>

/* ---- strings and topics (1.5.3, 4.7) ------------------------------------ */

/* Well-formed UTF-8 (util.h: RFC 3629, no overlong forms or surrogates)
 * without U+0000, as 1.5.3 requires of every MQTT string. */
static bool mqtt_string_valid(const void *s, size_t n)
{
	return !memchr(s, 0, n) && utf8_valid(s, n);
}

/* A topic name a PUBLISH may carry (4.7.3): 1..65,535 bytes of UTF-8,
 * no wildcard characters. */
static bool topic_valid(const char *t, size_t n)
{
	if (n == 0 || n > 65535)
		return false;
	if (memchr(t, '+', n) || memchr(t, '#', n))
		return false;
	return mqtt_string_valid((const uint8_t *)t, n);
}

/* Filter levels only: '+' and '#' alone in their level, '#' last. */
static bool filter_levels_valid(const char *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool starts = i == 0 || f[i - 1] == '/';
		bool ends = i + 1 == n || f[i + 1] == '/';

		if (f[i] == '+' && !(starts && ends))
			return false;
		if (f[i] == '#' && !(starts && i + 1 == n))
			return false;
	}
	return true;
}

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN (sizeof(SHARE_PREFIX) - 1)

bool mqtt_filter_valid(const char *filter)
{
	size_t n;

	if (!filter)
		return false;
	n = strlen(filter);
	if (n == 0 || n > 65535 || !mqtt_string_valid((const uint8_t *)filter, n))
		return false;
	if (strncmp(filter, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0) {
		/* $share/GROUP/FILTER: a group name of at least one character
		 * without '/', '+' or '#', then a non-empty filter. */
		const char *g = filter + SHARE_PREFIX_LEN;
		size_t glen = strcspn(g, "/+#");

		if (glen == 0 || g[glen] != '/' || g[glen + 1] == '\0')
			return false;
		filter = g + glen + 1;
		n = strlen(filter);
	}
	return filter_levels_valid(filter, n);
}

/* Past "$share/GROUP/" when FILTER has that prefix, else FILTER. */
static const char *skip_share(const char *filter)
{
	const char *slash;

	if (strncmp(filter, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0)
		return filter;
	slash = strchr(filter + SHARE_PREFIX_LEN, '/');
	return slash ? slash + 1 : filter;
}

bool mqtt_topic_matches(const char *filter, const char *topic, size_t topic_len)
{
	const char *f = skip_share(filter);
	size_t t = 0;

	/* 4.7.2: a leading wildcard does not match "$SYS/..." and the like */
	if (topic_len > 0 && topic[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		/* here F and TOPIC + T are both at the start of a level */
		if (f[0] == '#' && f[1] == '\0')
			return true;
		if (f[0] == '+' && (f[1] == '/' || f[1] == '\0')) {
			while (t < topic_len && topic[t] != '/')
				t++;
			f++;
		} else {
			for (; *f && *f != '/'; f++, t++)
				if (t >= topic_len || topic[t] != *f)
					return false;
			if (t < topic_len && topic[t] != '/')
				return false;
		}
		if (*f == '\0')
			return t == topic_len;
		if (t == topic_len) /* "a/#" matches "a" (4.7.1.2) */
			return f[1] == '#' && f[2] == '\0';
		f++;
		t++;
	}
}

const char *mqtt_connack_string(int code)
{
	static const char *const text[] = {
		"connection accepted",
		"refused: unacceptable protocol version",
		"refused: identifier rejected",
		"refused: server unavailable",
		"refused: bad user name or password",
		"refused: not authorized",
	};

	if (code < 0 || (size_t)code >= sizeof(text) / sizeof(text[0]))
		return "unknown return code";
	return text[code];
}

/* ---- decoding (2.2, 3.x) ------------------------------------------------ */

/* Remaining length at DATA[1..LEN): 1 when whole (*REM, *HDR set), 0 when
 * more bytes are needed, M2Z_ERR_PARSE on a fifth length byte (2.2.3). */
static int remaining_length(const uint8_t *data, size_t len, size_t *rem, size_t *hdr)
{
	size_t v = 0;

	for (size_t i = 1; i < MQTT_MAX_FIXED_HEADER; i++) {
		if (i >= len)
			return 0;
		v |= (size_t)(data[i] & 0x7F) << (7 * (i - 1));
		if (!(data[i] & 0x80)) {
			*rem = v;
			*hdr = i + 1;
			return 1;
		}
	}
	return M2Z_ERR_PARSE;
}

ssize_t mqtt_frame_len(const uint8_t *data, size_t len, size_t max_packet)
{
	size_t rem = 0, hdr = 0;
	int r = remaining_length(data, len, &rem, &hdr);

	if (r <= 0)
		return r;
	if (hdr + rem > max_packet)
		return M2Z_ERR_TOO_BIG;
	return (ssize_t)(hdr + rem);
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: the identifier and nothing else. */
static int decode_id_only(const uint8_t *body, size_t rem, struct mqtt_packet *out)
{
	if (rem != 2)
		return M2Z_ERR_PARSE;
	out->id = get_u16(body);
	return out->id ? M2Z_OK : M2Z_ERR_PARSE;
}

static int decode_connack(const uint8_t *body, size_t rem, struct mqtt_packet *out)
{
	if (rem != 2 || (body[0] & 0xFE) || body[1] > 5)
		return M2Z_ERR_PARSE;
	/* 3.2.2.2: a refusal never claims a session */
	if (body[1] != 0 && (body[0] & 1))
		return M2Z_ERR_PARSE;
	out->session_present = body[0] & 1;
	out->return_code = body[1];
	return M2Z_OK;
}

static int decode_publish(uint8_t flags, const uint8_t *body, size_t rem, struct mqtt_packet *out)
{
	size_t tlen, off;

	out->qos = (flags >> 1) & 3;
	out->dup = flags & 8;
	out->retain = flags & 1;
	if (out->qos == 3 || (out->dup && out->qos == 0)) /* 3.3.1.2, 3.3.1.1 */
		return M2Z_ERR_PARSE;
	if (rem < 2)
		return M2Z_ERR_PARSE;
	tlen = get_u16(body);
	off = 2 + tlen;
	if (off > rem || !topic_valid((const char *)body + 2, tlen))
		return M2Z_ERR_PARSE;
	out->topic = (const char *)body + 2;
	out->topic_len = tlen;
	if (out->qos > 0) {
		if (rem - off < 2)
			return M2Z_ERR_PARSE;
		out->id = get_u16(body + off);
		if (!out->id)
			return M2Z_ERR_PARSE;
		off += 2;
	}
	out->payload = body + off;
	out->payload_len = rem - off;
	return M2Z_OK;
}

static int decode_suback(const uint8_t *body, size_t rem, struct mqtt_packet *out)
{
	if (rem < 3)
		return M2Z_ERR_PARSE;
	out->id = get_u16(body);
	if (!out->id)
		return M2Z_ERR_PARSE;
	for (size_t i = 2; i < rem; i++)
		if (body[i] > 2 && body[i] != 0x80)
			return M2Z_ERR_PARSE;
	out->granted = body + 2;
	out->n_granted = rem - 2;
	return M2Z_OK;
}

/* The fixed-header flags each server packet must carry (2.2.2); PUBLISH's
 * are checked in decode_publish. */
static int decode_body(enum mqtt_type type, uint8_t flags, const uint8_t *body, size_t rem,
		       struct mqtt_packet *out)
{
	if (type == MQTT_PUBLISH)
		return decode_publish(flags, body, rem, out);
	if (flags != (type == MQTT_PUBREL ? 2 : 0))
		return M2Z_ERR_PARSE;
	switch (type) {
	case MQTT_CONNACK:
		return decode_connack(body, rem, out);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
	case MQTT_UNSUBACK:
		return decode_id_only(body, rem, out);
	case MQTT_SUBACK:
		return decode_suback(body, rem, out);
	case MQTT_PINGRESP:
		return rem == 0 ? M2Z_OK : M2Z_ERR_PARSE;
	default: /* client packets, 0 and 15 */
		return M2Z_ERR_PARSE;
	}
}

ssize_t mqtt_decode(const uint8_t *data, size_t len, struct mqtt_packet *out)
{
	size_t rem = 0, hdr = 0;
	int r;

	memset(out, 0, sizeof(*out));
	r = remaining_length(data, len, &rem, &hdr);
	if (r <= 0 || rem > len - hdr)
		return M2Z_ERR_PARSE;
	out->type = (enum mqtt_type)(data[0] >> 4);
	r = decode_body(out->type, data[0] & 0x0F, data + hdr, rem, out);
	if (r) {
		memset(out, 0, sizeof(*out));
		return r;
	}
	return (ssize_t)(hdr + rem);
}

/* ---- encoding ----------------------------------------------------------- */

/* Writes never fail after put_header's buf_reserve of the whole packet, so
 * the helpers below store bytes directly. */
static void put_u8(struct buf *b, uint8_t v)
{
	b->p[b->len++] = (char)v;
}

static void put_u16(struct buf *b, uint16_t v)
{
	put_u8(b, (uint8_t)(v >> 8));
	put_u8(b, (uint8_t)v);
}

static void put_bytes(struct buf *b, const void *p, size_t n)
{
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* A length-prefixed string or binary field (1.5.3); N <= 65,535 checked. */
static void put_str(struct buf *b, const void *p, size_t n)
{
	put_u16(b, (uint16_t)n);
	put_bytes(b, p, n);
}

/* Reserve room for the whole packet and write its fixed header. */
static int put_header(struct buf *b, uint8_t first, size_t rem)
{
	size_t nlen = 1;

	if (rem > MQTT_MAX_REMAINING)
		return M2Z_ERR_INVAL;
	for (size_t v = rem; v >= 128; v >>= 7)
		nlen++;
	if (buf_reserve(b, 1 + nlen + rem))
		return M2Z_ERR_NOMEM;
	put_u8(b, first);
	do {
		uint8_t d = rem & 0x7F;

		rem >>= 7;
		put_u8(b, (uint8_t)(d | (rem ? 0x80 : 0)));
	} while (rem);
	return M2Z_OK;
}

/* Keep the buffer NUL-terminated as buf.h promises. */
static int done(struct buf *b)
{
	b->p[b->len] = '\0';
	return M2Z_OK;
}

/* A client identifier, user name or will topic is a UTF-8 string. */
static bool string_ok(const char *s, size_t n)
{
	return n <= 65535 && mqtt_string_valid((const uint8_t *)s, n);
}

int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c)
{
	const char *id = c->client_id ? c->client_id : "";
	size_t idlen = strlen(id), wtlen = 0, ulen = 0, plen = 0;
	size_t rem = 10 + 2 + idlen;
	uint8_t flags = c->clean_session ? 0x02 : 0;
	int r;

	if (!string_ok(id, idlen) || (idlen == 0 && !c->clean_session))
		return M2Z_ERR_INVAL; /* 3.1.3.1 */
	if (c->will_topic) {
		wtlen = strlen(c->will_topic);
		if (!topic_valid(c->will_topic, wtlen) || c->will_qos < 0 || c->will_qos > 2 ||
		    c->will_len > 65535 || (c->will_len && !c->will_payload))
			return M2Z_ERR_INVAL;
		flags |= (uint8_t)(0x04 | c->will_qos << 3 | (c->will_retain ? 0x20 : 0));
		rem += 2 + wtlen + 2 + c->will_len;
	}
	if (c->password && !c->username)
		return M2Z_ERR_INVAL; /* 3.1.2.9 */
	if (c->username) {
		ulen = strlen(c->username);
		if (!string_ok(c->username, ulen))
			return M2Z_ERR_INVAL;
		flags |= 0x80;
		rem += 2 + ulen;
	}
	if (c->password) {
		plen = strlen(c->password);
		if (plen > 65535)
			return M2Z_ERR_INVAL;
		flags |= 0x40;
		rem += 2 + plen;
	}
	r = put_header(out, MQTT_CONNECT << 4, rem);
	if (r)
		return r;
	put_str(out, "MQTT", 4);
	put_u8(out, 4); /* protocol level 3.1.1 */
	put_u8(out, flags);
	put_u16(out, c->keepalive_s);
	put_str(out, id, idlen);
	if (c->will_topic) {
		put_str(out, c->will_topic, wtlen);
		put_str(out, c->will_payload, c->will_len);
	}
	if (c->username)
		put_str(out, c->username, ulen);
	if (c->password)
		put_str(out, c->password, plen);
	return done(out);
}

int mqtt_encode_publish(struct buf *out, const char *topic, const void *payload, size_t len,
			int qos, bool retain, bool dup, uint16_t id)
{
	size_t tlen = topic ? strlen(topic) : 0;
	size_t rem;
	int r;

	if (!topic_valid(topic, tlen) || qos < 0 || qos > 2 || (dup && qos == 0) ||
	    (qos > 0 && id == 0) || (len && !payload))
		return M2Z_ERR_INVAL;
	if (len > MQTT_MAX_REMAINING)
		return M2Z_ERR_INVAL; /* before the sum below could wrap */
	rem = 2 + tlen + (qos ? 2 : 0) + len;
	r = put_header(out, (uint8_t)(MQTT_PUBLISH << 4 | (dup ? 8 : 0) | qos << 1 | (retain ? 1 : 0)),
		       rem);
	if (r)
		return r;
	put_str(out, topic, tlen);
	if (qos)
		put_u16(out, id);
	put_bytes(out, payload, len);
	return done(out);
}

int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t id)
{
	int r;

	if ((type != MQTT_PUBACK && type != MQTT_PUBREC && type != MQTT_PUBREL &&
	     type != MQTT_PUBCOMP) || id == 0)
		return M2Z_ERR_INVAL;
	r = put_header(out, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2 : 0)), 2);
	if (r)
		return r;
	put_u16(out, id);
	return done(out);
}

/* SUBSCRIBE (QOS != NULL) or UNSUBSCRIBE: flags 0010 (3.8.1, 3.10.1). */
static int encode_filters(struct buf *out, enum mqtt_type type, uint16_t id,
			  const char *const *filters, const int *qos, size_t n)
{
	size_t rem = 2;
	int r;

	if (id == 0 || n == 0 || !filters)
		return M2Z_ERR_INVAL;
	for (size_t i = 0; i < n; i++) {
		if (!mqtt_filter_valid(filters[i]) || (qos && (qos[i] < 0 || qos[i] > 2)))
			return M2Z_ERR_INVAL;
		rem += 2 + strlen(filters[i]) + (qos ? 1 : 0);
		if (rem > MQTT_MAX_REMAINING)
			return M2Z_ERR_INVAL;
	}
	r = put_header(out, (uint8_t)(type << 4 | 2), rem);
	if (r)
		return r;
	put_u16(out, id);
	for (size_t i = 0; i < n; i++) {
		put_str(out, filters[i], strlen(filters[i]));
		if (qos)
			put_u8(out, (uint8_t)qos[i]);
	}
	return done(out);
}

int mqtt_encode_subscribe(struct buf *out, uint16_t id, const char *const *filters,
			  const int *qos, size_t n)
{
	if (!qos)
		return M2Z_ERR_INVAL;
	return encode_filters(out, MQTT_SUBSCRIBE, id, filters, qos, n);
}

int mqtt_encode_unsubscribe(struct buf *out, uint16_t id, const char *const *filters, size_t n)
{
	return encode_filters(out, MQTT_UNSUBSCRIBE, id, filters, NULL, n);
}

int mqtt_encode_simple(struct buf *out, enum mqtt_type type)
{
	int r;

	if (type != MQTT_PINGREQ && type != MQTT_DISCONNECT)
		return M2Z_ERR_INVAL;
	r = put_header(out, (uint8_t)(type << 4), 0);
	if (r)
		return r;
	return done(out);
}
