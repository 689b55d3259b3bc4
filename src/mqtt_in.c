/* mqtt_in.c - libmosquitto session: connect, subscribe, reconnect.
 *
 * Threaded loop on purpose: in that mode libmosquitto sends the QoS 1 PUBACK
 * after on_message returns (with loop_forever it is sent before), so the
 * broker lets go of a message only once our callback has spooled it. */
#define LOG_MODULE "mqtt"
#include "mqtt_in.h"

#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "err.h"
#include "log.h"

struct mqtt_in {
	struct mosquitto *mosq;
	struct conf_mqtt conf;       /* strings borrowed from the config */
	struct mqtt_sub *subs;       /* owned, filters strdup'ed */
	size_t n_subs;
	int sub_mid_first;           /* mid of the SUBSCRIBE we sent last */
	mqtt_in_msg_fn fn;
	void *arg;
	atomic_bool connected;
	bool started;
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
		return;
	}
	atomic_store(&mi->connected, true);
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
	mi->sub_mid_first = mid;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
			 const int *granted)
{
	struct mqtt_in *mi = obj;
	int refused = 0;

	(void)mosq;
	for (int i = 0; i < qos_count; i++)
		if (granted[i] == 0x80)
			refused++;
	if (refused)
		log_err("broker refused %d of %d subscription(s) (check its ACL)", refused, qos_count);
	/* The last SUBSCRIBE acknowledged means every filter is in place. */
	if (mid == mi->sub_mid_first)
		log_info("subscribed to %zu filter(s)", mi->n_subs);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	struct mqtt_in *mi = obj;

	(void)mosq;
	atomic_store(&mi->connected, false);
	if (rc != 0)
		log_warn("connection to %s:%d lost (%s); reconnecting", mi->conf.host,
			 mi->conf.port, mosquitto_strerror(rc));
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
				       c->ca_file[0] ? NULL : "/etc/ssl/certs",
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

int mqtt_in_new(const struct conf_mqtt *conf, const struct mqtt_sub *subs, size_t n,
		mqtt_in_msg_fn fn, void *arg, struct mqtt_in **out)
{
	struct mqtt_in *mi = calloc(1, sizeof(*mi));

	if (!mi)
		return M2Z_ERR_NOMEM;
	pthread_mutex_lock(&lib_lock);
	if (lib_refs++ == 0)
		mosquitto_lib_init();
	pthread_mutex_unlock(&lib_lock);
	mi->conf = *conf;
	mi->fn = fn;
	mi->arg = arg;
	mi->subs = calloc(n ? n : 1, sizeof(*subs));
	if (!mi->subs)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		mi->subs[i].qos = subs[i].qos;
		mi->subs[i].filter = strdup(subs[i].filter);
		if (!mi->subs[i].filter)
			goto nomem;
		mi->n_subs++;
	}
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

int mqtt_in_start(struct mqtt_in *mi)
{
	int rc;

	rc = mosquitto_connect_async(mi->mosq, mi->conf.host, mi->conf.port, mi->conf.keepalive_s);
	if (rc != MOSQ_ERR_SUCCESS)
		/* Not fatal: the loop thread keeps retrying with backoff. */
		log_warn("cannot connect to %s:%d yet (%s); will retry", mi->conf.host,
			 mi->conf.port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	rc = mosquitto_loop_start(mi->mosq);
	if (rc != MOSQ_ERR_SUCCESS) {
		log_err("cannot start the MQTT loop: %s", mosquitto_strerror(rc));
		return M2Z_ERR_NET;
	}
	mi->started = true;
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

void mqtt_in_stop(struct mqtt_in *mi)
{
	if (!mi || !mi->started)
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
	for (size_t i = 0; i < mi->n_subs; i++)
		free((char *)mi->subs[i].filter);
	free(mi->subs);
	for (size_t i = 0; i < mi->n_handlers; i++)
		free(mi->handlers[i].filter);
	free(mi->handlers);
	free(mi);
	pthread_mutex_lock(&lib_lock);
	if (--lib_refs == 0)
		mosquitto_lib_cleanup();
	pthread_mutex_unlock(&lib_lock);
}
