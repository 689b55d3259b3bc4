/* status.c - the retained MQTT status document; see status.h. */
#include "status.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "err.h"
#include "util.h"

static cJSON *time_or_null(int64_t ms)
{
	char t[40];

	if (ms <= 0)
		return cJSON_CreateNull();
	format_rfc3339_ms(ms, t, sizeof(t));
	return cJSON_CreateString(t);
}

static cJSON *peers(const struct health_snapshot *s)
{
	cJSON *o = cJSON_CreateObject();

	for (int p = 0; p < HEALTH_N_PEERS; p++) {
		const struct health_peer_info *pi = &s->peer[p];
		cJSON *e = cJSON_AddObjectToObject(o, health_peer_name((enum health_peer)p));

		cJSON_AddStringToObject(e, "state", health_state_name(pi->state));
		cJSON_AddItemToObject(e, "since", time_or_null(pi->since_ms));
		cJSON_AddStringToObject(e, "reason", pi->reason);
	}
	return o;
}

static cJSON *counters(const struct health_snapshot *s)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "received", (double)s->received);
	cJSON_AddNumberToObject(o, "unrouted", (double)s->unrouted);
	cJSON_AddNumberToObject(o, "spooled", (double)s->spooled);
	cJSON_AddNumberToObject(o, "published", (double)s->published);
	cJSON_AddNumberToObject(o, "duplicates", (double)s->duplicates);
	cJSON_AddNumberToObject(o, "retries", (double)s->retries);
	cJSON_AddNumberToObject(o, "dead_lettered", (double)s->dead_lettered);
	cJSON_AddNumberToObject(o, "dropped", (double)s->dropped);
	cJSON_AddNumberToObject(o, "rejected", (double)s->rejected);
	if (s->has_workers) {
		cJSON_AddNumberToObject(o, "jobs_activated", (double)s->jobs_activated);
		cJSON_AddNumberToObject(o, "jobs_completed", (double)s->jobs_completed);
		cJSON_AddNumberToObject(o, "jobs_failed", (double)s->jobs_failed);
		cJSON_AddNumberToObject(o, "jobs_timed_out", (double)s->jobs_timed_out);
		cJSON_AddNumberToObject(o, "jobs_errors_thrown", (double)s->jobs_errors_thrown);
	}
	return o;
}

int status_format(const struct health_snapshot *s, const char *version, struct buf *out)
{
	cJSON *o = cJSON_CreateObject(), *b;
	char *text;
	int rc = M2Z_ERR_NOMEM;

	if (!o)
		return rc;
	cJSON_AddStringToObject(o, "state", "online");
	cJSON_AddStringToObject(o, "version", version);
	cJSON_AddNumberToObject(o, "uptime_s", (double)((s->now_ms - s->start_ms) / 1000));
	cJSON_AddItemToObject(o, "peers", peers(s));
	cJSON_AddItemToObject(o, "counters", counters(s));
	b = cJSON_AddObjectToObject(o, "backlog");
	cJSON_AddNumberToObject(b, "events", (double)s->backlog_events);
	cJSON_AddNumberToObject(b, "bytes", (double)s->backlog_bytes);
	cJSON_AddNumberToObject(b, "oldest_age_s", (double)(s->oldest_age_ms / 1000));
	cJSON_AddItemToObject(o, "last_publish", time_or_null(s->last_publish_ms));
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text) {
		buf_reset(out);
		rc = buf_puts(out, text);
		free(text);
	}
	return rc;
}
