/* event.h - the record that travels ingest -> spool -> forward.
 *
 * One record per accepted device event: who it is for (route), where it came
 * from (topic, payload, receive time), and the PublishMessageRequest already
 * serialized with protobuf-c, so forwarding sends bytes without re-rendering
 * and a replay after restart sends exactly what was rendered at receipt.
 * The encoding is versioned and little-endian; the spool adds its own
 * framing (length + checksum) around it. Every field is stored with a
 * trailing NUL (not counted in its length), so route, topic, message_id and
 * correlation_key can be used as C strings straight from the record.
 *
 * Ordering (key_hash): events are ordered per (tenant, correlation key), NOT
 * per (message name, key). Zeebe correlates by name + key, but one process
 * instance waits for several names with the same key in turn ("started",
 * then "stopped"); with a short TTL, sending those out of order would lose
 * the second. So all events for one key go one at a time, whatever their
 * name. Exception: an empty correlation key (message start events only) is
 * hashed together with the message id, so such events are not ordered among
 * themselves and do not share one lane. */
#ifndef M2Z_EVENT_H
#define M2Z_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct publish_msg;

/* A decoded record. Every pointer borrows from the buffer given to
 * event_decode() and lives as long as it does. */
struct event {
	int64_t recv_ms;            /* wall clock, ms since the epoch */
	uint64_t key_hash;          /* event_hash(tenant_id NUL correlation_key)
				       (see above): events with equal hashes are
				       sent in order, one at a time */
	const char *route;   size_t route_len;
	const char *topic;   size_t topic_len;
	const uint8_t *payload; size_t payload_len;
	const char *message_id; size_t message_id_len;
	const char *correlation_key; size_t correlation_key_len;
	const uint8_t *request; size_t request_len; /* serialized PublishMessageRequest */
};

/* Append the record for MSG (rendered from TOPIC/PAYLOAD) to OUT (not reset
 * first). Returns 0 or M2Z_ERR_NOMEM. */
int event_encode(const struct publish_msg *msg, const char *topic,
		 const void *payload, size_t len, int64_t recv_ms, struct buf *out);

/* Decode a record; 0 or M2Z_ERR_CORRUPT (unknown version, a length that
 * runs past LEN, a missing NUL terminator, a NUL inside a text field or
 * trailing bytes). Never reads outside REC[0..LEN). */
int event_decode(const void *rec, size_t len, struct event *out);

/* Size of the PublishMessageRequest MSG would serialize to. */
size_t event_request_size(const struct publish_msg *msg);

/* 64-bit FNV-1a, used for key_hash. */
uint64_t event_hash(const void *data, size_t len);

#endif
