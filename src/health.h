/* health.h - what the agent knows about its peers, in one place.
 *
 * Three peers: the MQTT broker, the Zeebe gateway, the token endpoint. Each
 * is UNKNOWN until first heard of, then UP or DOWN with a reason in our own
 * words ("cannot reach localhost:26500: connection refused"). A change is
 * logged once ([state] tag, warn when it goes down, info when it comes
 * back); while a peer stays down the line is repeated every
 * reminder_ms with how long and how many events wait. The status topic
 * (status.c), /metrics and /healthz (metrics.c) and the systemd STATUS=
 * text read a struct health_snapshot.
 *
 * Thread-safety: health_set() may be called from any thread (MQTT loop,
 * forwarder); health_tick() from the main thread; health_snapshot() from any
 * thread (the metrics server's). */
#ifndef M2Z_HEALTH_H
#define M2Z_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stats.h"

struct spool;
struct oauth;
struct forward;
struct workers;
struct health;

enum health_peer { HEALTH_MQTT = 0, HEALTH_GATEWAY, HEALTH_TOKEN, HEALTH_N_PEERS };
enum health_state { HEALTH_UNKNOWN = 0, HEALTH_UP, HEALTH_DOWN, HEALTH_OFF };

struct health_peer_info {
	enum health_state state;
	int64_t since_ms;           /* wall clock of the last change, 0 = never */
	char reason[400];           /* why (DOWN) or what (UP); "" if none */
};

/* A consistent copy of everything worth reporting. */
struct health_snapshot {
	int64_t now_ms, start_ms;   /* wall clock */
	struct health_peer_info peer[HEALTH_N_PEERS];
	uint64_t received, unrouted, spooled, published, duplicates, retries;
	uint64_t dead_lettered, dropped, rejected;
	uint64_t own, retained_skipped;
	uint64_t latency_bucket[STATS_N_BOUNDS + 1];
	uint64_t latency_sum_ms;
	uint64_t backlog_events, backlog_bytes, spool_max_bytes;
	int64_t oldest_age_ms;      /* 0 when the backlog is empty */
	int64_t last_publish_ms;    /* wall clock of the last OK, 0 = none yet */
	int64_t token_expires_ms;   /* 0 = no token / no OAuth; INT64_MAX = never */
	uint64_t token_failures;
	int window, in_flight;
	int64_t forwarder_idle_ms;  /* since the forwarder loop last ran; -1 = not running */
	bool has_workers;           /* [worker NAME] sections: the jobs_* counters mean something */
	uint64_t jobs_activated, jobs_completed, jobs_failed, jobs_timed_out, jobs_errors_thrown;
};

/* Where health_snapshot()/health_tick() look. All borrowed; pointers may be
 * NULL. Set them again (with NULL) before freeing what they point to. */
struct health_sources {
	struct spool *spool;
	struct oauth *oauth;
	struct forward *fw;
	struct workers *workers;    /* the job workers, or NULL */
	uint64_t spool_max_bytes;
	int64_t reminder_ms;        /* repeat interval for a peer that stays down */
};

int health_new(struct health **out);
void health_free(struct health *h);
void health_set_sources(struct health *h, const struct health_sources *src);

/* Peer P is now ST (REASON copied, may be NULL). Logs when the state
 * changes; a new reason alone is kept quietly. Any thread. */
void health_set(struct health *h, enum health_peer p, enum health_state st, const char *reason);

/* Main thread, about once a second: polls the token cache, logs reminders
 * for peers that stay down. */
void health_tick(struct health *h);

/* True once after any state change (status topic: publish now). */
bool health_take_changed(struct health *h);

void health_snapshot(struct health *h, struct health_snapshot *s);

/* The forwarder's view of the gateway: OK is true after a success, false
 * after a gateway-wide failure with CODE (enum zeebe_code) and the gRPC
 * DETAILS; ADDRESS names it in the reason. Suits forward_opts.on_gateway. */
void health_gateway_event(struct health *h, const char *address, bool ok, int code,
			  const char *details);

/* ---- pure parts, for unit tests ------------------------------------------- */

const char *health_peer_name(enum health_peer p);     /* "mqtt", "gateway", "token" */
const char *health_state_name(enum health_state st);  /* "unknown", "up", "down", "off" */

/* A gateway failure in our words: "cannot reach ADDRESS: connection
 * refused", "TLS handshake with ADDRESS failed: ...", "ADDRESS did not answer
 * within the deadline", "ADDRESS answered UNAVAILABLE: ...". */
void health_gateway_reason(const char *address, int code, const char *details, char *out,
			   size_t len);

/* 45s, 5m, 5m30s, 2h5m, 3d4h. */
void health_format_duration(int64_t ms, char *out, size_t len);

/* 1234567 -> "1,234,567". */
void health_format_count(uint64_t n, char *out, size_t len);

/* /healthz: true when the agent can forward, or buffers within bounds.
 * False (REASON says why) when the forwarder loop has not run for
 * STALL_MS, or the spool is 90% full or more. */
bool health_verdict(const struct health_snapshot *s, int64_t stall_ms, char *reason, size_t len);

/* One line for systemd's STATUS=: "forwarding; backlog 0; gateway ok". */
void health_status_line(const struct health_snapshot *s, char *out, size_t len);

#endif
