/* deadletter.h - the one place an undeliverable event is written down.
 *
 * An append-only JSON-lines file, one line per event:
 *   {"time":"…","route":"…","topic":"…","payload":"…"|"payload_base64":"…",
 *    "message_id":"…","correlation_key":"…","status":"INVALID_ARGUMENT",
 *    "reason":"…"}
 * A payload larger than 64 KiB (or a quarter of max_bytes, when that is
 * smaller) is not stored: the line
 * then has "payload_omitted":true and "payload_size":N instead, so one huge
 * message cannot fill the disk.
 *
 * Each line is one write(2) followed by fdatasync(2). A failed or short
 * write is cut away again (ftruncate to the old size), so the file never
 * holds a torn line, and the caller gets M2Z_ERR_IO: it must not consider
 * the event kept (ingest holds the MQTT acknowledgement, forward keeps the
 * spool record and tries again later).
 *
 * Bounds: when a line would take the file past max_bytes, the file is
 * rotated first: PATH -> PATH.1 -> PATH.2 … -> PATH.(max_files-1); the
 * oldest is removed. Disk use is at most max_bytes * max_files (+ one line).
 * Each rotation is logged and counted (g_stats.dead_letters_rotated).
 *
 * `mqtt2zeebe --replay-dead-letters FILE -c CONF` publishes the payloads
 * again through the routes (see commands.c). */
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

/* Called after a line was written (e.g. to republish it to MQTT), on the
 * thread that called deadletter_emit(). LINE (no newline) is borrowed for
 * the call. */
typedef void (*deadletter_line_fn)(void *arg, const char *line);

struct deadletter_opts {
	const char *path;           /* copied */
	uint64_t max_bytes;         /* one file; 0 = no bound (no rotation) */
	int max_files;              /* files kept including PATH; >= 1 */
	deadletter_line_fn on_line; /* may be NULL */
	void *on_line_arg;
};

/* Open PATH for appending (mode 0600). M2Z_OK, M2Z_ERR_NOMEM or M2Z_ERR_IO
 * (logged). */
int deadletter_open(const struct deadletter_opts *opts, struct deadletter **out);

/* Write EV down: log one WARN line, append the JSON line (rotating first
 * when needed), count g_stats.dead_lettered, call on_line. Thread-safe.
 * Returns M2Z_OK, or M2Z_ERR_IO / M2Z_ERR_NOMEM when the line is not on
 * disk (logged once per run of failures, not on every retry). */
int deadletter_emit(struct deadletter *dl, const struct dead_event *ev);

void deadletter_close(struct deadletter *dl);

#endif
