/* mqtt_in.c - libmosquitto session: connect, subscribe, reconnect.
 *
 * Threaded loop on purpose: in that mode libmosquitto sends the QoS 1 PUBACK
 * after on_message returns (with loop_forever it is sent before), so the
 * broker lets go of a message only once our callback has spooled it.
 *
 * The first connection is ours to retry: libmosquitto's loop thread
 * (mosquitto__thread_main) waits while the client is in its "new" state and
 * only then enters loop_forever, whose reconnect logic we rely on later. A
 * connect_async that fails at once (broker not up yet: the boot race) can
 * leave the client in that state, and the thread then waits forever without
 * one more attempt. So the loop thread is started only after a
 * connect_async succeeded; until then a small connector thread retries with
 * the configured backoff. */
#define LOG_MODULE "mqtt"
#include "mqtt_in.h"

#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "log.h"
#include "util.h"

struct mqtt_in {
	struct mosquitto *mosq;
	struct conf_mqtt conf;       /* strings borrowed from the config */
	struct mqtt_sub *subs;       /* owned, filters strdup'ed */
	size_t n_subs;
	pthread_mutex_t subs_lock;   /* guards subs/n_subs (reload vs on_connect) */
	atomic_int sub_mid_first;    /* mid of the SUBSCRIBE we sent last */
	atomic_int n_filters;        /* n_subs, for the "subscribed" line */
	mqtt_in_msg_fn fn;
	void *arg;
	atomic_bool connected;
	bool started;                /* the loop thread runs */
	/* connector thread: retries the first connect until it succeeds */
	pthread_t connector;
	bool connector_running;
	pthread_mutex_t mu;          /* guards stopping, started (vs. the connector) */
	pthread_cond_t cond;         /* CLOCK_MONOTONIC; signalled on stop */
	bool stopping;
	mqtt_in_state_fn state_fn;   /* may be NULL */
	void *state_arg;
	atomic_int last_puback;      /* mid of the last PUBACK we got */
	/* worker hooks (mqtt_in_add_handler / mqtt_in_on_publish), set before start */
	struct mqtt_handler *handlers;
	size_t n_handlers;
	mqtt_in_pub_fn pub_fn;
	void *pub_arg;
};

struct mqtt_handler {
	char *filter;
	int qos;
	mqtt_in_msg_fn fn;
	void *arg;
};

static void report(struct mqtt_in *mi, enum mqtt_in_event ev, const char *reason)
{
	if (mi->state_fn)
		mi->state_fn(mi->state_arg, ev, reason);
}

static int lib_refs;
static pthread_mutex_t lib_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- callbacks (libmosquitto's thread) --------------------------------- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt_in *mi = obj;
	char *filters[CONF_MAX_ROUTES];
	int mid = 0;

	if (rc != 0) {
		log_warn("broker %s:%d refused the connection: %s", mi->conf.host,
			 mi->conf.port, mosquitto_connack_string(rc));
		report(mi, MQTT_IN_DOWN, mosquitto_connack_string(rc));
		return;
	}
	atomic_store(&mi->connected, true);
	{
		char where[300];
		snprintf(where, sizeof(where), "%s:%d", mi->conf.host, mi->conf.port);
		report(mi, MQTT_IN_CONNECTED, where);
	}
	for (size_t i = 0; i < mi->n_handlers; i++) {
		rc = mosquitto_subscribe(mosq, &mid, mi->handlers[i].filter, mi->handlers[i].qos);
		if (rc != MOSQ_ERR_SUCCESS)
			log_err("subscribe to '%s' failed: %s", mi->handlers[i].filter, mosquitto_strerror(rc));
	}
	log_info("connected to %s:%d as '%s' (clean_session=%s)", mi->conf.host, mi->conf.port,
		 mi->conf.client_id, mi->conf.clean_session ? "true" : "false");
	/* Subscribe on every connect: cheap, and right even if the broker lost
	 * our session. One SUBSCRIBE per QoS keeps mosquitto_subscribe_multiple
	 * usable (it takes one QoS for all filters). */
	pthread_mutex_lock(&mi->subs_lock);
	for (int qos = 0; qos <= 2; qos++) {
		int n = 0;
		for (size_t i = 0; i < mi->n_subs; i++)
			if (mi->subs[i].qos == qos)
				filters[n++] = (char *)mi->subs[i].filter;
		if (n == 0)
			continue;
		rc = mosquitto_subscribe_multiple(mosq, &mid, n, filters, qos, 0, NULL);
		if (rc != MOSQ_ERR_SUCCESS)
			log_err("subscribe failed: %s", mosquitto_strerror(rc));
	}
	atomic_store(&mi->sub_mid_first, mid);
	pthread_mutex_unlock(&mi->subs_lock);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
			 const int *granted)
{
	struct mqtt_in *mi = obj;
	int refused = 0;
	bool all;

	(void)mosq;
	for (int i = 0; i < qos_count; i++)
		if (granted[i] == 0x80)
			refused++;
	if (refused)
		log_err("broker refused %d of %d subscription(s) (check its ACL)", refused, qos_count);
	/* The last SUBSCRIBE acknowledged means every filter is in place. */
	/* Under subs_lock: a reload stores the mid it waits for before this
	 * can compare (the SUBACK may be quicker than mosquitto_subscribe). */
	pthread_mutex_lock(&mi->subs_lock);
	all = mid == atomic_load(&mi->sub_mid_first);
	if (all)
		log_info("subscribed to %d filter(s)", atomic_load(&mi->n_filters));
	pthread_mutex_unlock(&mi->subs_lock);
	if (all)
		report(mi, MQTT_IN_SUBSCRIBED, "");
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt_in *mi = obj;

	(void)mosq;
	atomic_store(&mi->connected, false);
	if (rc != 0) {
		char why[300];
		log_warn("connection to %s:%d lost (%s); reconnecting", mi->conf.host,
			 mi->conf.port, mosquitto_strerror(rc));
		snprintf(why, sizeof(why), "connection to %s:%d lost (%s)", mi->conf.host,
			 mi->conf.port, mosquitto_strerror(rc));
		report(mi, MQTT_IN_DOWN, why);
	}
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m)
{
	struct mqtt_in *mi = obj;

	(void)mosq;
	for (size_t i = 0; i < mi->n_handlers; i++) {
		bool match = false;
		if (mosquitto_topic_matches_sub(mi->handlers[i].filter, m->topic, &match) == MOSQ_ERR_SUCCESS &&
		    match) {
			mi->handlers[i].fn(mi->handlers[i].arg, m->topic, m->payload, (size_t)m->payloadlen,
					   m->qos, m->retain);
			return;
		}
	}
	mi->fn(mi->arg, m->topic, m->payload, (size_t)m->payloadlen, m->qos, m->retain);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
	struct mqtt_in *mi = obj;

	(void)mosq;
	atomic_store(&mi->last_puback, mid);
	if (mi->pub_fn)
		mi->pub_fn(mi->pub_arg, mid);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
	(void)mosq;
	(void)obj;
	if (level & (MOSQ_LOG_ERR))
		log_warn("libmosquitto: %s", str);
	else if (log_threshold >= LOG_LVL_DEBUG && (level & (MOSQ_LOG_WARNING | MOSQ_LOG_NOTICE)))
		log_debug("libmosquitto: %s", str);
}

/* ---- setup --------------------------------------------------------------- */

static int configure(struct mqtt_in *mi)
{
	const struct conf_mqtt *c = &mi->conf;
	int rc;

	if (c->username[0]) {
		rc = mosquitto_username_pw_set(mi->mosq, c->username,
					       c->password[0] ? c->password : NULL);
		if (rc != MOSQ_ERR_SUCCESS)
			goto fail;
	} else if (c->password[0]) {
		/* MQTT 3.1.1 has no password without a user name. */
		log_warn("password is set but username is not: the password is not sent");
	}
	if (c->tls) {
		rc = mosquitto_tls_set(mi->mosq, c->ca_file[0] ? c->ca_file : NULL,
				       c->ca_file[0] ? NULL : SYSTEM_CA_DIR,
				       c->cert_file[0] ? c->cert_file : NULL,
				       c->key_file[0] ? c->key_file : NULL, NULL);
		if (rc != MOSQ_ERR_SUCCESS)
			goto fail;
		if (c->tls_insecure)
			mosquitto_tls_insecure_set(mi->mosq, true);
	}
	rc = mosquitto_reconnect_delay_set(mi->mosq,
					   (unsigned)((c->reconnect_min_ms + 999) / 1000),
					   (unsigned)((c->reconnect_max_ms + 999) / 1000), true);
	if (rc != MOSQ_ERR_SUCCESS)
		goto fail;
	mosquitto_connect_callback_set(mi->mosq, on_connect);
	mosquitto_subscribe_callback_set(mi->mosq, on_subscribe);
	mosquitto_disconnect_callback_set(mi->mosq, on_disconnect);
	mosquitto_message_callback_set(mi->mosq, on_message);
	mosquitto_publish_callback_set(mi->mosq, on_publish);
	mosquitto_log_callback_set(mi->mosq, on_log);
	return M2Z_OK;
fail:
	log_err("cannot configure the MQTT client: %s", mosquitto_strerror(rc));
	return M2Z_ERR_CONFIG;
}

/* FILTER, or "$share/GROUP/FILTER" when GROUP is set (several agents
 * sharing one subscription: the broker hands each message to one of them). */
static char *shared_filter(const char *group, const char *filter)
{
	char *s;

	if (!group || !group[0])
		return strdup(filter);
	if (asprintf(&s, "$share/%s/%s", group, filter) < 0)
		return NULL;
	return s;
}

static void free_subs(struct mqtt_sub *subs, size_t n)
{
	for (size_t i = 0; subs && i < n; i++)
		free((char *)subs[i].filter);
	free(subs);
}

/* Deep copy with the shared-subscription prefix of GROUP, or NULL when out
 * of memory. */
static struct mqtt_sub *copy_subs(const char *group, const struct mqtt_sub *subs, size_t n)
{
	struct mqtt_sub *c = calloc(n ? n : 1, sizeof(*c));

	for (size_t i = 0; c && i < n; i++) {
		c[i].qos = subs[i].qos;
		c[i].filter = shared_filter(group, subs[i].filter);
		if (!c[i].filter) {
			free_subs(c, i);
			return NULL;
		}
	}
	return c;
}

int mqtt_in_new(const struct conf_mqtt *conf, const struct mqtt_sub *subs, size_t n,
		mqtt_in_msg_fn fn, void *arg, struct mqtt_in **out)
{
	struct mqtt_in *mi = calloc(1, sizeof(*mi));


	if (!mi)
		return M2Z_ERR_NOMEM;
	pthread_mutex_init(&mi->mu, NULL);
	pthread_mutex_init(&mi->subs_lock, NULL);
	cond_init_monotonic(&mi->cond);
	pthread_mutex_lock(&lib_lock);
	if (lib_refs++ == 0)
		mosquitto_lib_init();
	pthread_mutex_unlock(&lib_lock);
	mi->conf = *conf;
	mi->fn = fn;
	mi->arg = arg;
	mi->subs = copy_subs(conf->shared_group, subs, n);
	if (!mi->subs)
		goto nomem;
	mi->n_subs = n;
	atomic_store(&mi->n_filters, (int)n);
	mi->mosq = mosquitto_new(conf->client_id, conf->clean_session, mi);
	if (!mi->mosq)
		goto nomem;
	if (configure(mi) != M2Z_OK) {
		mqtt_in_free(mi);
		return M2Z_ERR_CONFIG;
	}
	*out = mi;
	return M2Z_OK;
nomem:
	mqtt_in_free(mi);
	return M2Z_ERR_NOMEM;
}

/* ---- the first connection ------------------------------------------------ */

static const char *connect_error(int rc)
{
	return rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
}

/* One connect_async; on success, the loop thread takes over (and does
 * every later reconnect itself). Caller holds mi->mu. */
static int try_connect(struct mqtt_in *mi)
{
	int rc = mosquitto_connect_async(mi->mosq, mi->conf.host, mi->conf.port,
					 mi->conf.keepalive_s);

	if (rc != MOSQ_ERR_SUCCESS)
		return rc;
	rc = mosquitto_loop_start(mi->mosq);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_err("cannot start the MQTT loop: %s", mosquitto_strerror(rc));
		return rc;
	}
	mi->started = true;
	return MOSQ_ERR_SUCCESS;
}

/* Wait DELAY_MS or until stopped (mu held). */
static void connector_wait(struct mqtt_in *mi, int64_t delay_ms)
{
	struct timespec ts = mono_deadline(delay_ms);

	while (!mi->stopping && pthread_cond_timedwait(&mi->cond, &mi->mu, &ts) == 0)
		;
}

static void *connector_main(void *arg)
{
	struct mqtt_in *mi = arg;
	int64_t delay = mi->conf.reconnect_min_ms;
	unsigned attempt = 1;

	thread_name("m2z-connect");
	pthread_mutex_lock(&mi->mu);
	for (;;) {
		connector_wait(mi, delay);
		if (mi->stopping)
			break;
		attempt++;
		int rc = try_connect(mi);
		if (rc == MOSQ_ERR_SUCCESS) {
			log_info("connecting to %s:%d (attempt %u)", mi->conf.host, mi->conf.port,
				 attempt);
			break;
		}
		log_debug("cannot connect to %s:%d (%s); attempt %u, next in %lld ms",
			  mi->conf.host, mi->conf.port, connect_error(rc), attempt, (long long)delay);
		delay = backoff_next_ms(delay, mi->conf.reconnect_max_ms);
	}
	pthread_mutex_unlock(&mi->mu);
	return NULL;
}

int mqtt_in_start(struct mqtt_in *mi)
{
	int rc;

	pthread_mutex_lock(&mi->mu);
	rc = try_connect(mi);
	if (rc == MOSQ_ERR_SUCCESS || mi->started) {
		pthread_mutex_unlock(&mi->mu);
		return rc == MOSQ_ERR_SUCCESS ? M2Z_OK : M2Z_ERR_NET;
	}
	/* Not fatal: the broker may come up after us (boot order). */
	{
		char why[300];
		snprintf(why, sizeof(why), "cannot reach %s:%d (%s)", mi->conf.host, mi->conf.port,
			 connect_error(rc));
		log_warn("%s; will retry every %lld..%lld ms", why,
			 (long long)mi->conf.reconnect_min_ms, (long long)mi->conf.reconnect_max_ms);
		report(mi, MQTT_IN_DOWN, why);
	}
	if (pthread_create(&mi->connector, NULL, connector_main, mi) != 0) {
		pthread_mutex_unlock(&mi->mu);
		log_err("cannot start the MQTT connector thread");
		return M2Z_ERR_NOMEM;
	}
	mi->connector_running = true;
	pthread_mutex_unlock(&mi->mu);
	return M2Z_OK;
}

int mqtt_in_publish(struct mqtt_in *mi, const char *topic, const void *payload, size_t len,
		    int qos)
{
	int rc = mosquitto_publish(mi->mosq, NULL, topic, (int)len, payload, qos, false);

	if (rc != MOSQ_ERR_SUCCESS) {
		log_warn("publish to '%s' failed: %s", topic, mosquitto_strerror(rc));
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

int mqtt_in_publish_mid(struct mqtt_in *mi, const char *topic, const void *payload, size_t len,
			int qos, bool retain, int *mid)
{
	int rc = mosquitto_publish(mi->mosq, mid, topic, (int)len, payload, qos, retain);

	if (rc != MOSQ_ERR_SUCCESS) {
		log_warn("publish to '%s' failed: %s", topic, mosquitto_strerror(rc));
		/* refused for what it is, not for where we are: retrying cannot help */
		if (rc == MOSQ_ERR_MALFORMED_UTF8 || rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_INVAL)
			return M2Z_ERR_INVAL;
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

int mqtt_in_add_handler(struct mqtt_in *mi, const char *filter, int qos, mqtt_in_msg_fn fn, void *arg)
{
	struct mqtt_handler *h = realloc(mi->handlers, (mi->n_handlers + 1) * sizeof(*h));

	if (!h)
		return M2Z_ERR_NOMEM;
	mi->handlers = h;
	h += mi->n_handlers;
	if (!(h->filter = strdup(filter)))
		return M2Z_ERR_NOMEM;
	h->qos = qos;
	h->fn = fn;
	h->arg = arg;
	mi->n_handlers++;
	return M2Z_OK;
}

void mqtt_in_on_publish(struct mqtt_in *mi, mqtt_in_pub_fn fn, void *arg)
{
	mi->pub_fn = fn;
	mi->pub_arg = arg;
}

bool mqtt_in_connected(struct mqtt_in *mi)
{
	return atomic_load(&mi->connected);
}

int mqtt_in_set_will(struct mqtt_in *mi, const char *topic, const char *payload)
{
	int rc = mosquitto_will_set(mi->mosq, topic, (int)strlen(payload), payload, 1, true);

	if (rc != MOSQ_ERR_SUCCESS) {
		log_err("cannot set the Last Will on '%s': %s", topic, mosquitto_strerror(rc));
		return M2Z_ERR_CONFIG;
	}
	return M2Z_OK;
}

void mqtt_in_set_state_fn(struct mqtt_in *mi, mqtt_in_state_fn fn, void *arg)
{
	mi->state_fn = fn;
	mi->state_arg = arg;
}

int mqtt_in_publish_retained(struct mqtt_in *mi, const char *topic, const char *payload, int *mid)
{
	int rc = mosquitto_publish(mi->mosq, mid, topic, (int)strlen(payload), payload, 1, true);

	if (rc != MOSQ_ERR_SUCCESS) {
		log_debug("retained publish to '%s' failed: %s", topic, mosquitto_strerror(rc));
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

bool mqtt_in_wait_published(struct mqtt_in *mi, int mid, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 10) {
		if (atomic_load(&mi->last_puback) == mid)
			return true;
		usleep(10 * 1000);
	}
	return atomic_load(&mi->last_puback) == mid;
}

void mqtt_in_stop(struct mqtt_in *mi)
{
	if (!mi)
		return;
	pthread_mutex_lock(&mi->mu);
	mi->stopping = true;
	pthread_cond_broadcast(&mi->cond);
	pthread_mutex_unlock(&mi->mu);
	if (mi->connector_running) {
		pthread_join(mi->connector, NULL);
		mi->connector_running = false;
	}
	if (!mi->started)
		return;
	mosquitto_disconnect(mi->mosq);
	/* Not forced: a message callback in progress finishes (and is acked)
	 * before the thread exits. */
	mosquitto_loop_stop(mi->mosq, false);
	mi->started = false;
}

void mqtt_in_free(struct mqtt_in *mi)
{
	if (!mi)
		return;
	mqtt_in_stop(mi);
	if (mi->mosq)
		mosquitto_destroy(mi->mosq);
	free_subs(mi->subs, mi->n_subs);
	pthread_cond_destroy(&mi->cond);
	pthread_mutex_destroy(&mi->mu);
	pthread_mutex_destroy(&mi->subs_lock);
	for (size_t i = 0; i < mi->n_handlers; i++)
		free(mi->handlers[i].filter);
	free(mi->handlers);
	free(mi);
	pthread_mutex_lock(&lib_lock);
	if (--lib_refs == 0)
		mosquitto_lib_cleanup();
	pthread_mutex_unlock(&lib_lock);
}

/* ---- reload ---------------------------------------------------------------- */

static const struct mqtt_sub *find_sub(const struct mqtt_sub *subs, size_t n, const char *filter)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(subs[i].filter, filter) == 0)
			return &subs[i];
	return NULL;
}

/* Not connected is fine: on_connect subscribes from the new list. */
static void sub_result(const char *what, const char *filter, int rc)
{
	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
		log_err("%s '%s' failed: %s", what, filter, mosquitto_strerror(rc));
}

int mqtt_in_set_subs(struct mqtt_in *mi, const struct mqtt_sub *subs, size_t n)
{
	struct mqtt_sub *next = copy_subs(mi->conf.shared_group, subs, n), *old;
	size_t n_old;
	int mid = 0, sent = 0;

	if (!next)
		return M2Z_ERR_NOMEM;
	pthread_mutex_lock(&mi->subs_lock);
	old = mi->subs;
	n_old = mi->n_subs;
	for (size_t i = 0; i < n_old; i++) {
		if (find_sub(next, n, old[i].filter))
			continue;
		log_info("unsubscribing from '%s'", old[i].filter);
		sub_result("unsubscribe from", old[i].filter,
			   mosquitto_unsubscribe(mi->mosq, NULL, old[i].filter));
	}
	atomic_store(&mi->n_filters, (int)n);
	for (size_t i = 0; i < n; i++) {
		const struct mqtt_sub *was = find_sub(old, n_old, next[i].filter);
		int rc;
		if (was && was->qos == next[i].qos)
			continue;
		log_info("subscribing to '%s' (QoS %d)", next[i].filter, next[i].qos);
		rc = mosquitto_subscribe(mi->mosq, &mid, next[i].filter, next[i].qos);
		sub_result("subscribe to", next[i].filter, rc);
		sent += rc == MOSQ_ERR_SUCCESS;
	}
	if (sent)
		atomic_store(&mi->sub_mid_first, mid);
	mi->subs = next;
	mi->n_subs = n;
	pthread_mutex_unlock(&mi->subs_lock);
	free_subs(old, n_old);
	return M2Z_OK;
}
