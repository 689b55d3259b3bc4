/* mqtt_wire.h - MQTT 3.1.1 packets (OASIS standard, 2014): the bytes a
 * client writes and an incremental reader of the bytes a server sends.
 *
 * Pure: no I/O, no locks, no allocation in the decoder. mqtt_in.c owns the
 * connection and calls these. Everything a broker sends is untrusted:
 * mqtt_decode() checks every length against the frame and refuses what
 * section 3 of the standard forbids, so a hostile broker gets the
 * connection dropped, never an out-of-bounds read. */
#ifndef M2Z_MQTT_WIRE_H
#define M2Z_MQTT_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

enum mqtt_type {
	MQTT_CONNECT = 1,
	MQTT_CONNACK = 2,
	MQTT_PUBLISH = 3,
	MQTT_PUBACK = 4,
	MQTT_PUBREC = 5,
	MQTT_PUBREL = 6,
	MQTT_PUBCOMP = 7,
	MQTT_SUBSCRIBE = 8,
	MQTT_SUBACK = 9,
	MQTT_UNSUBSCRIBE = 10,
	MQTT_UNSUBACK = 11,
	MQTT_PINGREQ = 12,
	MQTT_PINGRESP = 13,
	MQTT_DISCONNECT = 14,
};

/* The largest remaining length the 4-byte encoding can carry. */
#define MQTT_MAX_REMAINING 268435455u
/* A fixed header is at most 5 bytes: the type byte and 1-4 length bytes. */
#define MQTT_MAX_FIXED_HEADER 5

/* A packet from the server. Pointers point into the decoded buffer and live
 * as long as it does; TOPIC is not NUL-terminated. */
struct mqtt_packet {
	enum mqtt_type type;
	/* PUBLISH */
	const char *topic;
	size_t topic_len;
	const uint8_t *payload;
	size_t payload_len;
	int qos;                 /* 0..2 */
	bool retain;
	bool dup;
	/* PUBLISH with QoS > 0, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK,
	 * UNSUBACK: the packet identifier (never 0) */
	uint16_t id;
	/* CONNACK */
	bool session_present;
	uint8_t return_code;     /* 0 accepted; 1..5 refused (mqtt_connack_string) */
	/* SUBACK: one return code per filter, 0..2 granted QoS or 0x80 refused */
	const uint8_t *granted;
	size_t n_granted;
};

/* The length of the whole packet that starts at DATA[0..LEN): > 0 once
 * the fixed header is complete (so a reader knows how much to wait for),
 * 0 when more bytes are needed to tell, M2Z_ERR_PARSE for a malformed
 * length (a fifth length byte), M2Z_ERR_TOO_BIG when over MAX_PACKET. */
ssize_t mqtt_frame_len(const uint8_t *data, size_t len, size_t max_packet);

/* Decode the packet at DATA[0..LEN), which holds at least one whole frame
 * (mqtt_frame_len() bytes). Returns the bytes consumed (the frame length)
 * with *OUT filled, or M2Z_ERR_PARSE when the frame is not one a server
 * may send or breaks the standard: wrong fixed-header flags, QoS 3, a
 * length field past the frame, a topic that is empty, not UTF-8, holds
 * U+0000 or a wildcard, packet id 0, a CONNACK with reserved bits, an
 * empty SUBACK or one with a return code other than 0, 1, 2, 0x80, or
 * bytes left over in a packet whose length is fixed. */
ssize_t mqtt_decode(const uint8_t *data, size_t len, struct mqtt_packet *out);

/* ---- encoding: each appends one whole packet to OUT ----------------------
 * 0, M2Z_ERR_NOMEM, or M2Z_ERR_INVAL when a field cannot be encoded
 * (a string over 65,535 bytes, a packet over MQTT_MAX_REMAINING, a topic
 * that is empty, not UTF-8 or holds a wildcard, QoS outside 0..2, packet
 * id 0 where one is needed). On an error OUT is as it was. */

struct mqtt_connect {
	const char *client_id;
	const char *username;    /* NULL = none */
	const char *password;    /* NULL = none; only with a username */
	bool clean_session;
	uint16_t keepalive_s;
	const char *will_topic;  /* NULL = no will */
	const void *will_payload;
	size_t will_len;
	int will_qos;
	bool will_retain;
};
int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c);

/* QoS 0: ID is ignored (no identifier is written). */
int mqtt_encode_publish(struct buf *out, const char *topic, const void *payload, size_t len,
			int qos, bool retain, bool dup, uint16_t id);

/* PUBACK, PUBREC, PUBREL (flags 0010 as the standard requires), PUBCOMP:
 * 4 bytes each. */
int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t id);

/* One SUBSCRIBE for N filters, each with its own QoS (N >= 1). */
int mqtt_encode_subscribe(struct buf *out, uint16_t id, const char *const *filters,
			  const int *qos, size_t n);
int mqtt_encode_unsubscribe(struct buf *out, uint16_t id, const char *const *filters, size_t n);

/* PINGREQ or DISCONNECT (2 bytes). */
int mqtt_encode_simple(struct buf *out, enum mqtt_type type);

/* ---- helpers ------------------------------------------------------------- */

/* Does TOPIC (TOPIC_LEN bytes) match the subscription FILTER (NUL-ended)?
 * '+' matches one level, a final '#' any number (also none: "a/#" matches
 * "a"); wildcards do not match a topic starting with '$' at the first
 * level; a "$share/GROUP/" prefix on FILTER is skipped. */
bool mqtt_topic_matches(const char *filter, const char *topic, size_t topic_len);

/* Is FILTER a valid subscription filter ('+' and '#' only as whole levels,
 * '#' only last, UTF-8, 1..65,535 bytes)? */
bool mqtt_filter_valid(const char *filter);

/* "connection accepted", "refused: bad user name or password", ... for a
 * CONNACK return code. */
const char *mqtt_connack_string(int code);

#endif
