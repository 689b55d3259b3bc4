/* health.c - peer states, state-change lines and reminders, snapshots;
 * see health.h. */
#define LOG_MODULE "state"
#include "health.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "forward.h"
#include "log.h"
#include "oauth.h"
#include "spool.h"
#include "util.h"
#include "worker.h"
#include "zeebe.h"

struct health {
	pthread_mutex_t lock;       /* guards everything below */
	struct health_sources src;
	struct health_peer_info peer[HEALTH_N_PEERS];
	int64_t last_remind[HEALTH_N_PEERS]; /* monotonic */
	int64_t start_ms;
	uint64_t token_failures_seen;
	bool changed;
};

/* Words for each peer's states, in log lines and the status document. */
static const char *const up_word[HEALTH_N_PEERS] = { "connected", "reachable", "ok" };
static const char *const down_word[HEALTH_N_PEERS] = { "disconnected", "unreachable", "failing" };
static const char *const peer_title[HEALTH_N_PEERS] = { "MQTT broker", "gateway", "token" };

const char *health_peer_name(enum health_peer p)
{
	static const char *const names[HEALTH_N_PEERS] = { "mqtt", "gateway", "token" };
	return (unsigned)p < HEALTH_N_PEERS ? names[p] : "?";
}

const char *health_state_name(enum health_state st)
{
	static const char *const names[] = { "unknown", "up", "down", "off" };
	return (unsigned)st <= HEALTH_OFF ? names[st] : "?";
}

/* ---- formatting (pure) ------------------------------------------------------ */

void health_format_duration(int64_t ms, char *out, size_t len)
{
	int64_t s = ms < 0 ? 0 : ms / 1000;

	if (s < 60)
		snprintf(out, len, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(out, len, s % 60 ? "%" PRId64 "m%" PRId64 "s" : "%" PRId64 "m", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, len, (s / 60) % 60 ? "%" PRId64 "h%" PRId64 "m" : "%" PRId64 "h",
			 s / 3600, (s / 60) % 60);
	else
		snprintf(out, len, (s / 3600) % 24 ? "%" PRId64 "d%" PRId64 "h" : "%" PRId64 "d",
			 s / 86400, (s / 3600) % 24);
}

void health_format_count(uint64_t n, char *out, size_t len)
{
	char digits[32];
	int nd = snprintf(digits, sizeof(digits), "%" PRIu64, n);
	size_t o = 0;

	for (int i = 0; i < nd && o + 1 < len; i++) {
		if (i > 0 && (nd - i) % 3 == 0 && o + 2 < len)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	if (len)
		out[o < len ? o : len - 1] = '\0';
}

static bool has(const char *hay, const char *needle)
{
	return strcasestr(hay, needle) != NULL;
}

/* gRPC's details, cut at the first line and at a length a log line can carry. */
static void short_details(const char *details, char *out, size_t len)
{
	size_t n = strcspn(details, "\r\n");

	if (n > 300)
		n = 300;
	if (n >= len)
		n = len - 1;
	memcpy(out, details, n);
	out[n] = '\0';
}

/* OpenSSL's text ends in "...:SSL routines::certificate verify failed";
 * the words after the last ':' are the part a person reads. */
static const char *tls_reason(const char *details)
{
	static __thread char r[120];
	const char *colon = strrchr(details, ':');
	size_t n;

	snprintf(r, sizeof(r), "%s", colon && colon[1] ? colon + 1 : details);
	n = strcspn(r, "\r\n");
	while (n && (r[n - 1] == ')' || r[n - 1] == '.' || r[n - 1] == ' '))
		n--;
	r[n] = '\0';
	return r[0] == ' ' ? r + 1 : r;
}

void health_gateway_reason(const char *address, int code, const char *details, char *out,
			   size_t len)
{
	char d[320], pre[300];

	/* zeebe.c may have put the words below in front already: not twice */
	snprintf(pre, sizeof(pre), "cannot reach %s: ", address);
	if (details && strncmp(details, pre, strlen(pre)) == 0)
		details += strlen(pre);
	short_details(details ? details : "", d, sizeof(d));
	if (code == ZEEBE_UNAVAILABLE) {
		if (has(d, "DNS") || has(d, "resolution") || has(d, "resolve") || has(d, "not found"))
			snprintf(out, len, "cannot reach %s: its name does not resolve (%s)", address, d);
		else if (has(d, "empty address list"))
			snprintf(out, len, "cannot reach %s: the name resolves to no address", address);
		else if (has(d, "refused"))
			snprintf(out, len, "cannot reach %s: connection refused", address);
		else if (has(d, "handshake") || has(d, "ssl") || has(d, "tls") || has(d, "certificate"))
			snprintf(out, len, "TLS handshake with %s failed: %s (check [zeebe] ca_certificate "
				 "and the server name)", address, tls_reason(details ? details : ""));
		else if (has(d, "timed out") || has(d, "timeout"))
			snprintf(out, len, "cannot reach %s: connection timed out", address);
		else if (has(d, "connect") || has(d, "socket") || has(d, "unreachable") || has(d, "reset"))
			snprintf(out, len, "cannot reach %s: %s", address, d);
		else
			snprintf(out, len, "%s answered UNAVAILABLE: %s", address, d[0] ? d : "(no details)");
	} else if (code == ZEEBE_DEADLINE_EXCEEDED) {
		snprintf(out, len, "%s did not answer within the deadline", address);
	} else if (code == ZEEBE_UNAUTHENTICATED) {
		snprintf(out, len, "%s wants a token and none is configured: %s", address, d);
	} else {
		snprintf(out, len, "%s answered %s: %s", address, zeebe_code_name(code),
			 d[0] ? d : "(no details)");
	}
}

bool health_verdict(const struct health_snapshot *s, int64_t stall_ms, char *reason, size_t len)
{
	char age[32];

	if (s->forwarder_idle_ms < 0) {
		snprintf(reason, len, "the forwarder is not running");
		return false;
	}
	if (s->forwarder_idle_ms > stall_ms) {
		health_format_duration(s->forwarder_idle_ms, age, sizeof(age));
		snprintf(reason, len, "the forwarder has been stuck for %s", age);
		return false;
	}
	if (s->spool_max_bytes && s->backlog_bytes >= s->spool_max_bytes / 10 * 9) {
		snprintf(reason, len, "the spool is %" PRIu64 "%% full (%" PRIu64 " events waiting)",
			 s->backlog_bytes * 100 / s->spool_max_bytes, s->backlog_events);
		return false;
	}
	snprintf(reason, len, "%s", s->peer[HEALTH_GATEWAY].state == HEALTH_DOWN
		 ? "buffering within bounds" : "forwarding");
	return true;
}

void health_status_line(const struct health_snapshot *s, char *out, size_t len)
{
	char n[32];
	const struct health_peer_info *gw = &s->peer[HEALTH_GATEWAY];
	const struct health_peer_info *mq = &s->peer[HEALTH_MQTT];

	health_format_count(s->backlog_events, n, sizeof(n));
	snprintf(out, len, "%s; backlog %s; gateway %s; mqtt %s%s",
		 gw->state == HEALTH_DOWN ? "buffering" : "forwarding", n,
		 gw->state == HEALTH_UP ? "ok" : gw->state == HEALTH_DOWN ? "unreachable" : "not tried yet",
		 mq->state == HEALTH_UP ? "connected" : "disconnected",
		 s->peer[HEALTH_TOKEN].state == HEALTH_DOWN ? "; token failing" : "");
}

/* ---- state ------------------------------------------------------------------- */

int health_new(struct health **out)
{
	struct health *h = calloc(1, sizeof(*h));

	if (!h)
		return M2Z_ERR_NOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->start_ms = now_ms();
	h->src.reminder_ms = 60000;
	h->peer[HEALTH_TOKEN].state = HEALTH_OFF;
	*out = h;
	return M2Z_OK;
}

void health_free(struct health *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h);
}

void health_set_sources(struct health *h, const struct health_sources *src)
{
	pthread_mutex_lock(&h->lock);
	h->src = *src;
	if (h->src.reminder_ms <= 0)
		h->src.reminder_ms = 60000;
	if (src->oauth && h->peer[HEALTH_TOKEN].state == HEALTH_OFF)
		h->peer[HEALTH_TOKEN].state = HEALTH_UNKNOWN;
	pthread_mutex_unlock(&h->lock);
}

static uint64_t backlog_events(struct health *h)
{
	struct spool_stats ss;

	if (!h->src.spool)
		return 0;
	spool_get_stats(h->src.spool, &ss);
	return ss.records;
}

static void log_change(struct health *h, enum health_peer p, enum health_state old,
		       const struct health_peer_info *pi)
{
	char dur[32], n[32];

	if (pi->state == HEALTH_DOWN) {
		health_format_count(backlog_events(h), n, sizeof(n));
		log_warn("%s %s: %s; %s events waiting", peer_title[p], down_word[p], pi->reason, n);
	} else if (old == HEALTH_DOWN) {
		health_format_duration(pi->since_ms - h->peer[p].since_ms, dur, sizeof(dur));
		log_info("%s %s again after %s%s%s", peer_title[p], up_word[p], dur,
			 pi->reason[0] ? ": " : "", pi->reason);
	} else {
		log_info("%s %s%s%s", peer_title[p], up_word[p], pi->reason[0] ? ": " : "", pi->reason);
	}
}

void health_set(struct health *h, enum health_peer p, enum health_state st, const char *reason)
{
	struct health_peer_info pi = { .state = st, .since_ms = now_ms() };
	enum health_state old;

	if (!h || (unsigned)p >= HEALTH_N_PEERS)
		return;
	snprintf(pi.reason, sizeof(pi.reason), "%s", reason ? reason : "");
	pthread_mutex_lock(&h->lock);
	old = h->peer[p].state;
	if (old == st) {
		memcpy(h->peer[p].reason, pi.reason, sizeof(pi.reason));
		pthread_mutex_unlock(&h->lock);
		return;
	}
	log_change(h, p, old, &pi);
	h->peer[p] = pi;
	h->last_remind[p] = mono_ms();
	h->changed = true;
	pthread_mutex_unlock(&h->lock);
}

void health_gateway_event(struct health *h, const char *address, bool ok, int code,
			  const char *details)
{
	char reason[400];

	if (ok) {
		health_set(h, HEALTH_GATEWAY, HEALTH_UP, "");
		return;
	}
	health_gateway_reason(address, code, details, reason, sizeof(reason));
	health_set(h, HEALTH_GATEWAY, HEALTH_DOWN, reason);
}

/* The token cache has no callback: read its counters. A valid token means
 * ok; new failed attempts without a valid token mean failing. Any thread. */
static void poll_token(struct health *h)
{
	struct oauth_stats os;
	struct oauth *oa;
	uint64_t new_failures = 0;
	bool valid;
	char why[120];

	pthread_mutex_lock(&h->lock);
	oa = h->src.oauth;
	if (oa) {
		oauth_get_stats(oa, &os);
		valid = os.expires_at_ms > now_ms();
		if (valid)
			h->token_failures_seen = os.failures;
		else
			new_failures = os.failures - h->token_failures_seen;
	}
	pthread_mutex_unlock(&h->lock);
	if (!oa)
		return;
	if (valid) {
		health_set(h, HEALTH_TOKEN, HEALTH_UP, "");
	} else if (new_failures) {
		snprintf(why, sizeof(why), "no valid token; %" PRIu64 " failed request(s) to the token "
			 "endpoint so far (see the [oauth] lines)", new_failures);
		health_set(h, HEALTH_TOKEN, HEALTH_DOWN, why);
	}
}

void health_tick(struct health *h)
{
	int64_t mono = mono_ms(), wall = now_ms();
	char dur[32], n[32];

	poll_token(h);
	pthread_mutex_lock(&h->lock);
	for (int p = 0; p < HEALTH_N_PEERS; p++) {
		const struct health_peer_info *pi = &h->peer[p];

		if (pi->state != HEALTH_DOWN || mono - h->last_remind[p] < h->src.reminder_ms)
			continue;
		h->last_remind[p] = mono;
		health_format_duration(wall - pi->since_ms, dur, sizeof(dur));
		health_format_count(backlog_events(h), n, sizeof(n));
		log_warn("%s %s for %s: %s; %s events waiting", peer_title[p], down_word[p], dur,
			 pi->reason, n);
	}
	pthread_mutex_unlock(&h->lock);
}

bool health_take_changed(struct health *h)
{
	bool c;

	pthread_mutex_lock(&h->lock);
	c = h->changed;
	h->changed = false;
	pthread_mutex_unlock(&h->lock);
	return c;
}

static void copy_counters(struct health_snapshot *s)
{
	s->received = STAT_GET(received);
	s->unrouted = STAT_GET(unrouted);
	s->own = STAT_GET(own);
	s->retained_skipped = STAT_GET(retained_skipped);
	s->spooled = STAT_GET(spooled);
	s->published = STAT_GET(published);
	s->duplicates = STAT_GET(duplicates);
	s->retries = STAT_GET(retries);
	s->dead_lettered = STAT_GET(dead_lettered);
	s->rejected = STAT_GET(rejected);
	for (int i = 0; i <= STATS_N_BOUNDS; i++)
		s->latency_bucket[i] = STAT_GET(latency_bucket[i]);
	s->latency_sum_ms = STAT_GET(latency_sum_ms);
	s->last_publish_ms = (int64_t)atomic_load_explicit(&g_stats.last_publish_ms,
							   memory_order_relaxed);
}

void health_snapshot(struct health *h, struct health_snapshot *s)
{
	poll_token(h);
	memset(s, 0, sizeof(*s));
	s->now_ms = now_ms();
	copy_counters(s);
	pthread_mutex_lock(&h->lock);
	s->start_ms = h->start_ms;
	memcpy(s->peer, h->peer, sizeof(s->peer));
	s->spool_max_bytes = h->src.spool_max_bytes;
	if (h->src.spool) {
		struct spool_stats ss;
		spool_get_stats(h->src.spool, &ss);
		s->backlog_events = ss.records;
		s->backlog_bytes = ss.bytes;
		s->dropped = ss.dropped; /* the spool counts them (bounds, max_age) */
		s->oldest_age_ms = ss.oldest_ms ? s->now_ms - ss.oldest_ms : 0;
	}
	if (h->src.oauth) {
		struct oauth_stats os;
		oauth_get_stats(h->src.oauth, &os);
		s->token_expires_ms = os.expires_at_ms;
		s->token_failures = os.failures;
	}
	s->forwarder_idle_ms = -1;
	if (h->src.fw) {
		forward_get_state(h->src.fw, &s->window, &s->in_flight);
		s->forwarder_idle_ms = mono_ms() - forward_heartbeat_ms(h->src.fw);
	}
	if (h->src.workers && workers_count(h->src.workers)) {
		struct worker_stats ws;
		workers_get_stats(h->src.workers, &ws);
		s->has_workers = true;
		s->jobs_activated = ws.activated;
		s->jobs_completed = ws.completed;
		s->jobs_failed = ws.failed;
		s->jobs_timed_out = ws.timed_out;
		s->jobs_errors_thrown = ws.errors_thrown;
	}
	pthread_mutex_unlock(&h->lock);
}
