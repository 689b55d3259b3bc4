/* stats.h - process-wide event counters (atomic), printed as one log line
 * at an interval and on SIGUSR1. */
#ifndef M2Z_STATS_H
#define M2Z_STATS_H

#include <stdatomic.h>
#include <stdint.h>

struct stats {
	atomic_uint_fast64_t received;      /* MQTT messages handed to us */
	atomic_uint_fast64_t unrouted;      /* matched no route */
	atomic_uint_fast64_t own;           /* our own dead letter or status document: skipped */
	atomic_uint_fast64_t retained_skipped; /* retained messages on a route with retained = skip */
	atomic_uint_fast64_t spooled;       /* appended to the spool */
	atomic_uint_fast64_t published;     /* gateway said OK */
	atomic_uint_fast64_t duplicates;    /* gateway said ALREADY_EXISTS */
	atomic_uint_fast64_t retries;       /* calls retried */
	atomic_uint_fast64_t dead_lettered; /* written to the dead-letter file */
	atomic_uint_fast64_t rejected;      /* refused by a full spool (reject_newest) */
	atomic_uint_fast64_t durability_failures; /* episodes in which an event could not be
						     made durable (ingest held the ack) */
	atomic_uint_fast64_t dead_letters_rotated; /* dead-letter file rotations */
	/* publish latency (call start to answer, OK or duplicate), for
	 * /metrics: counts per upper bound in STATS_LATENCY_BOUNDS_MS, the
	 * last slot is +Inf; sum in milliseconds */
	atomic_uint_fast64_t latency_bucket[12];
	atomic_uint_fast64_t latency_sum_ms;
	atomic_int_fast64_t last_publish_ms; /* wall clock of the last OK, 0 = none */
};

/* Upper bounds (ms) of the latency histogram; STATS_N_BOUNDS of them. */
#define STATS_N_BOUNDS 11
extern const int stats_latency_bounds_ms[STATS_N_BOUNDS];

/* Record one answered call that took MS milliseconds. Lock-free. */
void stats_observe_latency(int64_t ms);

extern struct stats g_stats;

#define STAT_INC(f) atomic_fetch_add_explicit(&g_stats.f, 1, memory_order_relaxed)
#define STAT_GET(f) ((uint64_t)atomic_load_explicit(&g_stats.f, memory_order_relaxed))

#endif
