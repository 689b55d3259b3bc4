/* ingest.h - one MQTT message -> a durable spool record or a dead letter.
 *
 * Runs on the MQTT thread, inside the message callback: mqtt_in.c sends
 * the PUBACK only after the callback returns, so returning means
 * "kept". The steps, in ingest.c top to bottom: route match -> render ->
 * event encode -> spool append (-> forward kick) -> return.
 *
 * Never acknowledge what was not kept:
 *   - spool full: the spool's own on_full policy (block waits inside
 *     spool_append(); reject_newest/drop_oldest are counted and logged);
 *   - the record (or its dead letter) cannot be written (ENOSPC, EIO,
 *     EROFS, ...): HOLD - the callback retries with exponential backoff
 *     (100 ms .. 5 s), logs one ERROR when the episode starts and a reminder
 *     every 60 s, counts g_stats.durability_failures, and ingest_holding()
 *     is true until it succeeds (then one INFO line);
 *   - a stop request while blocked or holding: the process exits at once
 *     (_exit) without returning, so the broker redelivers the message. */
#ifndef M2Z_INGEST_H
#define M2Z_INGEST_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct routes;
struct spool;
struct deadletter;
struct ingest;

struct ingest_opts {
	const struct config *cfg;   /* borrowed; all four outlive the ingest */
	const struct routes *routes; /* the first routes; ingest_set_routes() replaces them */
	struct spool *spool;
	struct deadletter *dead;
	void (*on_kept)(void *arg); /* after each append (forward_kick); may be NULL */
	void *on_kept_arg;
	bool no_hold;               /* one-shot commands: fail instead of holding */
};

enum ingest_outcome {
	INGEST_KEPT = 0,            /* in the spool */
	INGEST_UNROUTED,            /* no route matched (counted) */
	INGEST_DEAD,                /* written to the dead-letter file */
	INGEST_REJECTED,            /* spool full with on_full = reject_newest (counted) */
	INGEST_SKIPPED,             /* our own publication, or retained on a skip route (counted) */
	INGEST_NOT_KEPT,            /* stopped, or (no_hold) a write failed: do not ack */
};

int ingest_new(const struct ingest_opts *opts, struct ingest **out);

/* One message; TOPIC and PAYLOAD borrowed for the call. Not thread-safe:
 * one caller (the MQTT thread) at a time. RETAIN is the MQTT retain flag:
 * the broker sets it only for stored messages sent on a new subscription. */
enum ingest_outcome ingest_message(struct ingest *ing, const char *topic,
				   const void *payload, size_t len, bool retain);

/* Reload: from any thread, make ROUTES (compiled from CFG) the routes for
 * every message from now on. On M2Z_OK the ingest owns both; on
 * M2Z_ERR_NOMEM the caller still does. A message in hand finishes
 * with the routes it started with; the old set is freed by whoever drops
 * it last. Events already in the spool keep their rendered form. */
int ingest_set_routes(struct ingest *ing, struct config *cfg, struct routes *routes);

/* mqtt_in_msg_fn for mqtt_in_new(), ARG = the struct ingest. Does not
 * return when the message was not kept (see above). */
void ingest_on_message(void *arg, const char *topic, const void *payload, size_t len,
		       int qos, bool retain);

/* From any thread: wake a hold; later holds end at once. Call before
 * spool_close() (which wakes a blocked append) and mqtt_in_stop(). */
void ingest_stop(struct ingest *ing);

/* True while an event in hand cannot be made durable (read from any thread,
 * e.g. for a health report). */
bool ingest_holding(void);

void ingest_free(struct ingest *ing);

#endif
