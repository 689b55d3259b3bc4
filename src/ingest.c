/* ingest.c - one MQTT message -> a durable spool record or a dead letter;
 * see ingest.h. Read top to bottom: the message path, then the hold. */
#define LOG_MODULE "ingest"
#include "ingest.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "deadletter.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "route.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

#define HOLD_FIRST_MS 100
#define HOLD_MAX_MS 5000
#define HOLD_REMIND_MS 60000

static atomic_bool g_holding;

/* The routes in force and the config they were compiled from. A message
 * holds a reference from route match to its last use (a hold included), so
 * a reload can swap the set at any moment; the last holder frees it. */
struct route_set {
	const struct routes *rt;
	struct routes *owned_rt;     /* NULL for the first set (borrowed from opts) */
	struct config *owned_cfg;
	atomic_int refs;
};

struct ingest {
	struct ingest_opts o;
	pthread_mutex_t lock;        /* guards stopping and cur; cond wakes a hold */
	pthread_cond_t cond;
	bool stopping;
	struct route_set *cur;
	/* the MQTT thread only */
	struct render_buf rb;
	struct buf rec;
	long crash_before, crash_after; /* test hooks, see crash_hook() */
};

/* What one durable write needs: the record, or the dead letter. */
struct keep_job {
	const struct routes *rt;
	int route;
	const char *topic;
	const void *payload;
	size_t len;
	const char *status, *reason;
};

static int hold_until_kept(struct ingest *ing, int (*write)(struct ingest *, const struct keep_job *),
			   const struct keep_job *job);
static int write_record(struct ingest *ing, const struct keep_job *job);
static int write_dead(struct ingest *ing, const struct keep_job *job);

/* Test-only: M2Z_TEST_CRASH=before_spool:N or after_spool:N kills the
 * process with SIGKILL while it handles the Nth message (before it returns,
 * so before the broker gets the PUBACK). The fault tests use it to prove a
 * crash at that moment loses nothing. */
static void crash_hook(long *when)
{
	if (*when > 0 && --*when == 0)
		raise(SIGKILL);
}

static long env_hook(const char *name)
{
	const char *v = getenv("M2Z_TEST_CRASH");
	size_t n = strlen(name);

	if (v && strncmp(v, name, n) == 0 && v[n] == ':')
		return strtol(v + n + 1, NULL, 10);
	return 0;
}

/* ---- the message path ------------------------------------------------------ */

static enum ingest_outcome dead_letter(struct ingest *ing, struct keep_job *job,
				       const char *status, const char *reason)
{
	job->status = status;
	job->reason = reason;
	return hold_until_kept(ing, write_dead, job) == M2Z_OK ? INGEST_DEAD : INGEST_NOT_KEPT;
}

/* Our own dead letters and status document come back to us through a
 * route on plant/# or #; routing them would nest dead letters without end. */
static bool own_topic(const struct config *cfg, const char *topic)
{
	const char *dl = cfg->forward.dead_letter_topic;

	return (dl && dl[0] && strcmp(topic, dl) == 0) ||
	       (cfg->status.enabled && cfg->status.topic && strcmp(topic, cfg->status.topic) == 0);
}

static enum ingest_outcome ingest_routed(struct ingest *ing, const struct routes *rt,
					 const char *topic, const void *payload, size_t len, bool retain)
{
	struct keep_job job = { .rt = rt, .topic = topic, .payload = payload, .len = len };
	struct publish_msg msg;
	char reason[512];
	int64_t recv = now_ms();
	int rc;

	STAT_INC(received);
	crash_hook(&ing->crash_before);
	if (own_topic(ing->o.cfg, topic)) {
		STAT_INC(own);
		log_debug("skipped our own publication on %s", topic);
		return INGEST_SKIPPED;
	}
	job.route = routes_match(rt, topic);
	if (job.route < 0) {
		STAT_INC(unrouted);
		log_debug("no route for topic %s", topic);
		return INGEST_UNROUTED;
	}
	if (retain && !routes_forward_retained(rt, (size_t)job.route)) {
		STAT_INC(retained_skipped);
		log_debug("skipped a retained message on %s ([route %s] retained = skip)", topic,
			  routes_name(rt, (size_t)job.route));
		return INGEST_SKIPPED;
	}
	rc = routes_render(rt, (size_t)job.route, topic, payload, len, recv,
			   ing->o.cfg->zeebe.max_message_size, &ing->rb, &msg, reason, sizeof(reason));
	if (rc != M2Z_OK)
		return dead_letter(ing, &job, rc == M2Z_ERR_TOO_BIG ? "TOO_BIG" : "RENDER", reason);
	buf_reset(&ing->rec);
	if (event_encode(&msg, topic, payload, len, recv, &ing->rec) != M2Z_OK)
		return dead_letter(ing, &job, "ENCODE", "out of memory");
	rc = hold_until_kept(ing, write_record, &job);
	if (rc == M2Z_ERR_FULL) {
		STAT_INC(rejected);
		log_warn("spool full: rejected message on %s (on_full = reject_newest)", topic);
		return INGEST_REJECTED;
	}
	if (rc == M2Z_ERR_CLOSED || rc == M2Z_ERR_IO || rc == M2Z_ERR_NOMEM)
		return INGEST_NOT_KEPT;
	if (rc != M2Z_OK)
		return dead_letter(ing, &job, "SPOOL", m2z_strerror(rc));
	STAT_INC(spooled);
	crash_hook(&ing->crash_after);
	if (ing->o.on_kept)
		ing->o.on_kept(ing->o.on_kept_arg);
	return INGEST_KEPT;
}

static struct route_set *set_acquire(struct ingest *ing)
{
	struct route_set *rs;

	pthread_mutex_lock(&ing->lock);
	rs = ing->cur;
	atomic_fetch_add(&rs->refs, 1);
	pthread_mutex_unlock(&ing->lock);
	return rs;
}

static void set_release(struct route_set *rs)
{
	if (!rs || atomic_fetch_sub(&rs->refs, 1) != 1)
		return;
	routes_free(rs->owned_rt);
	conf_free(rs->owned_cfg);
	free(rs);
}

enum ingest_outcome ingest_message(struct ingest *ing, const char *topic,
				   const void *payload, size_t len, bool retain)
{
	struct route_set *rs = set_acquire(ing);
	enum ingest_outcome out = ingest_routed(ing, rs->rt, topic, payload, len, retain);

	set_release(rs);
	return out;
}

int ingest_set_routes(struct ingest *ing, struct config *cfg, struct routes *routes)
{
	struct route_set *rs = calloc(1, sizeof(*rs)), *old;

	if (!rs)
		return M2Z_ERR_NOMEM;
	rs->rt = rs->owned_rt = routes;
	rs->owned_cfg = cfg;
	atomic_init(&rs->refs, 1);
	pthread_mutex_lock(&ing->lock);
	old = ing->cur;
	ing->cur = rs;
	pthread_mutex_unlock(&ing->lock);
	set_release(old);
	return M2Z_OK;
}

void ingest_on_message(void *arg, const char *topic, const void *payload, size_t len,
		       int qos, bool retain)
{
	struct ingest *ing = arg;

	(void)qos;
	if (ingest_message(ing, topic, payload, len, retain) != INGEST_NOT_KEPT)
		return; /* kept, dead-lettered or counted: mqtt_in acks it */
	/* Returning would acknowledge a message we did not keep. Leave now;
	 * the broker redelivers it to the next run. */
	log_warn("stopping: exiting without acknowledging the message in hand on %s", topic);
	spool_sync(ing->o.spool);
	_exit(0);
}

/* ---- the two durable writes ------------------------------------------------ */

static int write_record(struct ingest *ing, const struct keep_job *job)
{
	(void)job;
	return spool_append(ing->o.spool, ing->rec.p, ing->rec.len, NULL);
}

static int write_dead(struct ingest *ing, const struct keep_job *job)
{
	struct dead_event de = {
		.route = job->route >= 0 ? routes_name(job->rt, (size_t)job->route) : "",
		.topic = job->topic, .payload = job->payload, .payload_len = job->len,
		.message_id = "", .correlation_key = "", .status = job->status,
		.reason = job->reason, .time_ms = now_ms(),
	};

	return deadletter_emit(ing->o.dead, &de);
}

/* ---- the hold ---------------------------------------------------------------- */

/* Sleep MS unless a stop comes first; true when stopping. */
static bool wait_or_stop(struct ingest *ing, int64_t ms)
{
	struct timespec ts = mono_deadline(ms);
	bool stop;

	pthread_mutex_lock(&ing->lock);
	if (!ing->stopping)
		pthread_cond_timedwait(&ing->cond, &ing->lock, &ts);
	stop = ing->stopping;
	pthread_mutex_unlock(&ing->lock);
	return stop;
}

/* Run WRITE until it is not an I/O failure. During a run of failures the
 * MQTT acknowledgement is held (we are inside the callback). Returns
 * WRITE's last result, or M2Z_ERR_CLOSED when stopped while holding. */
static int hold_until_kept(struct ingest *ing, int (*write)(struct ingest *, const struct keep_job *),
			   const struct keep_job *job)
{
	int64_t delay = HOLD_FIRST_MS, start = 0, reminded = 0, now;
	int rc;

	while ((rc = write(ing, job)) == M2Z_ERR_IO || rc == M2Z_ERR_NOMEM) {
		if (ing->o.no_hold)
			return rc;
		now = mono_ms();
		if (!start) {
			start = reminded = now;
			atomic_store(&g_holding, true);
			STAT_INC(durability_failures);
			log_err("cannot make an event on %s durable (%s): holding the MQTT "
				"acknowledgement and retrying; the broker keeps the message",
				job->topic, m2z_strerror(rc));
		} else if (now - reminded >= HOLD_REMIND_MS) {
			reminded = now;
			log_err("still holding: events not durable for %lld s (%s)",
				(long long)((now - start) / 1000), m2z_strerror(rc));
		}
		if (wait_or_stop(ing, delay)) {
			rc = M2Z_ERR_CLOSED;
			break;
		}
		delay = backoff_next_ms(delay, HOLD_MAX_MS);
	}
	if (start) {
		atomic_store(&g_holding, false);
		if (rc != M2Z_ERR_CLOSED)
			log_info("events are durable again after %lld ms of holding",
				 (long long)(mono_ms() - start));
	}
	return rc;
}

bool ingest_holding(void)
{
	return atomic_load(&g_holding);
}

/* ---- lifecycle --------------------------------------------------------------- */

int ingest_new(const struct ingest_opts *opts, struct ingest **out)
{
	struct ingest *ing = calloc(1, sizeof(*ing));

	if (!ing)
		return M2Z_ERR_NOMEM;
	ing->cur = calloc(1, sizeof(*ing->cur));
	if (!ing->cur) {
		free(ing);
		return M2Z_ERR_NOMEM;
	}
	ing->cur->rt = opts->routes;
	atomic_init(&ing->cur->refs, 1);
	ing->o = *opts;
	ing->crash_before = env_hook("before_spool");
	ing->crash_after = env_hook("after_spool");
	pthread_mutex_init(&ing->lock, NULL);
	cond_init_monotonic(&ing->cond);
	*out = ing;
	return M2Z_OK;
}

void ingest_stop(struct ingest *ing)
{
	if (!ing)
		return;
	pthread_mutex_lock(&ing->lock);
	ing->stopping = true;
	pthread_cond_broadcast(&ing->cond);
	pthread_mutex_unlock(&ing->lock);
}

void ingest_free(struct ingest *ing)
{
	if (!ing)
		return;
	set_release(ing->cur);
	pthread_mutex_destroy(&ing->lock);
	pthread_cond_destroy(&ing->cond);
	render_buf_free(&ing->rb);
	buf_free(&ing->rec);
	free(ing);
}
