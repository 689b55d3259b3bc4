/* event.h - the record that travels ingest -> spool -> forward.
 *
 * One record per accepted device event: who it is for (route), where it came
 * from (topic, payload, receive time), and the PublishMessageRequest already
 * serialized with protobuf-c, so forwarding sends bytes without re-rendering
 * and a replay after restart sends exactly what was rendered at receipt.
 * The encoding is versioned and little-endian; the spool adds its own
 * framing (length + checksum) around it. */
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
	uint64_t key_hash;          /* hash of correlation key: events with equal
				       hashes are sent in order, one at a time */
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

/* Decode a record; 0 or M2Z_ERR_CORRUPT. */
int event_decode(const void *rec, size_t len, struct event *out);

/* Size of the PublishMessageRequest MSG would serialize to. */
size_t event_request_size(const struct publish_msg *msg);

/* 64-bit FNV-1a, used for key_hash. */
uint64_t event_hash(const void *data, size_t len);

#endif
