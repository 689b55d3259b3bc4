/* metrics.c - /metrics and /healthz on libmicrohttpd; see metrics.h. */
#define LOG_MODULE "metrics"
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "log.h"

struct metrics {
	struct MHD_Daemon *d;
	struct health *h;
	const char *version;        /* static */
	int64_t stall_ms;
};

/* ---- exposition text (pure) --------------------------------------------------- */

static void head(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	head(b, name, "counter", help);
	buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
	head(b, name, "gauge", help);
	if (isinf(v))
		buf_printf(b, "%s +Inf\n", name);
	else
		buf_printf(b, "%s %.15g\n", name, v);
}

static void histogram(struct buf *b, const struct health_snapshot *s)
{
	const char *n = "mqtt2zeebe_publish_duration_seconds";
	uint64_t cum = 0;

	head(b, n, "histogram", "Time from sending a PublishMessage call to its answer (OK or duplicate).");
	for (int i = 0; i < STATS_N_BOUNDS; i++) {
		cum += s->latency_bucket[i];
		buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", n,
			   stats_latency_bounds_ms[i] / 1000.0, cum);
	}
	cum += s->latency_bucket[STATS_N_BOUNDS];
	buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", n, cum);
	buf_printf(b, "%s_sum %.15g\n%s_count %" PRIu64 "\n", n, (double)s->latency_sum_ms / 1000.0, n, cum);
}

static void counters(struct buf *b, const struct health_snapshot *s)
{
	counter(b, "mqtt2zeebe_mqtt_messages_received_total", "MQTT messages received.", s->received);
	counter(b, "mqtt2zeebe_mqtt_messages_unrouted_total", "MQTT messages that matched no route.",
		s->unrouted);
	counter(b, "mqtt2zeebe_mqtt_messages_own_total",
		"The agent's own publications (dead letters, status) seen and skipped.", s->own);
	counter(b, "mqtt2zeebe_mqtt_messages_retained_skipped_total",
		"Retained MQTT messages skipped by a route with retained = skip.", s->retained_skipped);
	counter(b, "mqtt2zeebe_mqtt_messages_rejected_total",
		"MQTT messages refused by a full spool (on_full = reject_newest).", s->rejected);
	counter(b, "mqtt2zeebe_events_spooled_total", "Events appended to the spool.", s->spooled);
	counter(b, "mqtt2zeebe_events_dropped_total", "Events dropped by the spool bounds.", s->dropped);
	counter(b, "mqtt2zeebe_messages_published_total", "Messages the gateway accepted (OK).",
		s->published);
	counter(b, "mqtt2zeebe_messages_duplicate_total",
		"Messages the gateway already had (ALREADY_EXISTS).", s->duplicates);
	counter(b, "mqtt2zeebe_publish_retries_total", "PublishMessage calls retried.", s->retries);
	counter(b, "mqtt2zeebe_dead_letters_total", "Events written to the dead-letter file.",
		s->dead_lettered);
	counter(b, "mqtt2zeebe_token_failures_total", "Failed token requests.", s->token_failures);
	if (!s->has_workers)
		return;
	counter(b, "mqtt2zeebe_jobs_activated_total", "Jobs the workers activated.", s->jobs_activated);
	counter(b, "mqtt2zeebe_jobs_completed_total", "Jobs the workers completed.", s->jobs_completed);
	counter(b, "mqtt2zeebe_jobs_failed_total", "Jobs the workers failed back (FailJob).", s->jobs_failed);
	counter(b, "mqtt2zeebe_jobs_timed_out_total", "Jobs whose device reply did not come in time.",
		s->jobs_timed_out);
	counter(b, "mqtt2zeebe_jobs_errors_thrown_total", "Jobs ended with a BPMN error (ThrowError).",
		s->jobs_errors_thrown);
}

int metrics_format(const struct health_snapshot *s, const char *version, struct buf *out)
{
	const char *up = "mqtt2zeebe_peer_up";

	buf_reset(out);
	head(out, "mqtt2zeebe_build_info", "gauge", "Version of the running agent.");
	buf_printf(out, "mqtt2zeebe_build_info{version=\"%s\"} 1\n", version);
	gauge(out, "mqtt2zeebe_start_time_seconds", "Start time, Unix seconds.", (double)s->start_ms / 1000.0);
	counters(out, s);
	gauge(out, "mqtt2zeebe_backlog_events", "Events in the spool not yet delivered.",
	      (double)s->backlog_events);
	gauge(out, "mqtt2zeebe_backlog_bytes", "Bytes of live spool segments.", (double)s->backlog_bytes);
	gauge(out, "mqtt2zeebe_spool_limit_bytes", "The spool's max_bytes bound.", (double)s->spool_max_bytes);
	gauge(out, "mqtt2zeebe_backlog_oldest_age_seconds", "Age of the oldest event waiting.",
	      (double)s->oldest_age_ms / 1000.0);
	gauge(out, "mqtt2zeebe_calls_in_flight", "PublishMessage calls in flight.", (double)s->in_flight);
	gauge(out, "mqtt2zeebe_call_window", "Calls allowed in flight now (halved on backpressure).",
	      (double)s->window);
	gauge(out, "mqtt2zeebe_last_publish_timestamp_seconds",
	      "When the gateway last accepted a message, Unix seconds (0 = not yet).",
	      (double)s->last_publish_ms / 1000.0);
	gauge(out, "mqtt2zeebe_token_expiry_timestamp_seconds",
	      "Expiry of the cached OAuth token, Unix seconds (0 = none, +Inf = never).",
	      s->token_expires_ms == INT64_MAX ? INFINITY : (double)s->token_expires_ms / 1000.0);
	head(out, up, "gauge", "1 when the peer is up, 0 when down or not yet known.");
	for (int p = 0; p < HEALTH_N_PEERS; p++)
		if (s->peer[p].state != HEALTH_OFF)
			buf_printf(out, "%s{peer=\"%s\"} %d\n", up, health_peer_name((enum health_peer)p),
				   s->peer[p].state == HEALTH_UP);
	histogram(out, s);
	return out->p ? M2Z_OK : M2Z_ERR_NOMEM;
}

/* ---- the server ---------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
			     const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	rc = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result healthz(struct metrics *m, struct MHD_Connection *c)
{
	struct health_snapshot s;
	char reason[256], body[400];
	bool ok;

	health_snapshot(m->h, &s);
	ok = health_verdict(&s, m->stall_ms, reason, sizeof(reason));
	snprintf(body, sizeof(body), "{\"status\":\"%s\",\"reason\":\"%s\"}\n",
		 ok ? "ok" : "unhealthy", reason);
	return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body,
		     strlen(body));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct metrics *m = cls;
	struct health_snapshot s;
	struct buf b = BUF_INIT;
	enum MHD_Result rc;
	static const char nf[] = "not found: try /metrics or /healthz\n";

	(void)version;
	(void)upload;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		*upload_size = 0;
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET only\n", 9);
	}
	if (strcmp(url, "/healthz") == 0)
		return healthz(m, c);
	if (strcmp(url, "/metrics") != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", nf, sizeof(nf) - 1);
	health_snapshot(m->h, &s);
	if (metrics_format(&s, m->version, &b) != M2Z_OK) {
		buf_free(&b);
		return MHD_NO;
	}
	rc = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
	buf_free(&b);
	return rc;
}

/* FMT comes from libmicrohttpd: the attribute tells the compiler so. */
__attribute__((format(printf, 2, 0)))
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_debug("libmicrohttpd: %s", line);
}

/* "host:port", "[v6]:port", ":port" -> one resolved address. */
static int resolve(const char *listen, struct addrinfo **res, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	const char *colon = strrchr(listen, ':');
	char host[256];
	size_t n = colon ? (size_t)(colon - listen) : 0;
	int rc;

	if (!colon || n >= sizeof(host)) {
		snprintf(err, errlen, "[metrics] listen: expected host:port, got '%s'", listen);
		return M2Z_ERR_CONFIG;
	}
	memcpy(host, listen, n);
	host[n] = '\0';
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, res);
	if (rc != 0) {
		snprintf(err, errlen, "[metrics] listen %s: %s", listen, gai_strerror(rc));
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

int metrics_start(const char *listen, struct health *h, const char *version, int64_t stall_ms,
		  struct metrics **out, char *err, size_t errlen)
{
	struct metrics *m = calloc(1, sizeof(*m));
	struct addrinfo *ai = NULL;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int rc;

	if (!m)
		return M2Z_ERR_NOMEM;
	rc = resolve(listen, &ai, err, errlen);
	if (rc != M2Z_OK) {
		free(m);
		return rc;
	}
	m->h = h;
	m->version = version;
	m->stall_ms = stall_ms;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, m,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, 16u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!m->d) {
		snprintf(err, errlen, "[metrics] cannot listen on %s (address in use or not local?)", listen);
		free(m);
		return M2Z_ERR_NET;
	}
	log_info("serving /metrics and /healthz on http://%s", listen);
	*out = m;
	return M2Z_OK;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
