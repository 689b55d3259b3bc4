/* deadletter.h - append-only JSON-lines file of events that cannot be
 * delivered, with the reason. One line per event:
 *   {"time":"…","route":"…","topic":"…","payload":"…"|"payload_base64":"…",
 *    "message_id":"…","correlation_key":"…","status":"INVALID_ARGUMENT",
 *    "reason":"…"}
 * Written with one write(2) per line and fsync'ed, so a line is whole or
 * absent. `mqtt2zeebe --replay-dead-letters FILE -c CONF` publishes the
 * payloads again through the routes. */
#ifndef M2Z_DEADLETTER_H
#define M2Z_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

struct deadletter;

struct dead_event {
	const char *route;          /* "" when no route applies */
	const char *topic;
	const void *payload;
	size_t payload_len;
	const char *message_id;     /* may be "" */
	const char *correlation_key;/* may be "" */
	const char *status;         /* gRPC code name, or "RENDER"/"ENCODE"/"TOO_BIG" for local reasons */
	const char *reason;
	int64_t time_ms;
};

/* Open PATH for appending (mode 0600). */
int deadletter_open(const char *path, struct deadletter **out);
/* Thread-safe. When LINE_OUT is not NULL the JSON line (without newline) is
 * also returned there, malloc'ed (for republishing to MQTT). */
int deadletter_write(struct deadletter *dl, const struct dead_event *ev, char **line_out);
void deadletter_close(struct deadletter *dl);

#endif
