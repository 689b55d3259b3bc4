/* mqtt_in.h - our MQTT 3.1.1 client session (mqtt_in.c over mqtt_wire.h
 * and platform/tls.h): connect, subscribe, reconnect, acknowledge.
 *
 * One IO thread ("m2z-mqtt") reads, dispatches and writes the PUBACK /
 * PUBREC only after the message callback returned, so a message handed to
 * MSG_FN is acknowledged to the broker only once MSG_FN has returned — by
 * then it is in the spool. Persistent session (clean_session = false) by
 * default, so the broker keeps QoS>0 messages while we are away. The broker
 * absent at start is fine: connects are retried with backoff
 * (reconnect_min..reconnect_max) forever. */
#ifndef M2Z_MQTT_IN_H
#define M2Z_MQTT_IN_H

#include <stdbool.h>
#include <stddef.h>

struct conf_mqtt;
struct mqtt_in;

/* Called on the MQTT thread for every message. TOPIC and PAYLOAD are
 * borrowed for the duration of the call. */
typedef void (*mqtt_in_msg_fn)(void *arg, const char *topic, const void *payload,
			       size_t len, int qos, bool retain);

struct mqtt_sub {
	const char *filter;
	int qos;
};

/* Copies SUBS; CONF (and its strings) is borrowed and must outlive MI. */
int mqtt_in_new(const struct conf_mqtt *conf, const struct mqtt_sub *subs, size_t n,
		mqtt_in_msg_fn fn, void *arg, struct mqtt_in **out);
/* Start the MQTT thread, which connects (failures are retried with
 * backoff). 0 or M2Z_ERR_NOMEM. */
int mqtt_in_start(struct mqtt_in *mi);
/* Publish (dead-letter republish). One write under the connection's write
 * lock; 0 or M2Z_ERR_NET (not connected, or refused). */
int mqtt_in_publish(struct mqtt_in *mi, const char *topic, const void *payload,
		    size_t len, int qos);
/* Publish with RETAIN; *MID (may be NULL) gets the message id that
 * mqtt_in_on_publish's callback reports. QoS 1/2 are kept until the broker
 * completes them and sent again after a reconnect. 0, M2Z_ERR_INVAL
 * (topic or payload refused: malformed UTF-8, too large) or M2Z_ERR_NET
 * (not connected). */
int mqtt_in_publish_mid(struct mqtt_in *mi, const char *topic, const void *payload,
			size_t len, int qos, bool retain, int *mid);
/* Called on the MQTT thread when a publish is done: QoS 0 written (reported
 * at the thread's next wake-up, which a PINGREQ sent along brings), QoS 1
 * PUBACK, QoS 2 PUBCOMP received. Note it may run before
 * mqtt_in_publish_mid() returned MID to the publisher: callers that map
 * mids hold their own lock across the publish. */
typedef void (*mqtt_in_pub_fn)(void *arg, int mid);
/* Before mqtt_in_start(): messages matching FILTER go to FN (not to the
 * message callback); FILTER is subscribed with QOS on every connect. */
int mqtt_in_add_handler(struct mqtt_in *mi, const char *filter, int qos, mqtt_in_msg_fn fn, void *arg);
void mqtt_in_on_publish(struct mqtt_in *mi, mqtt_in_pub_fn fn, void *arg);
bool mqtt_in_connected(struct mqtt_in *mi);

/* ---- operability hooks (status topic, peer state) ------------------------ */

enum mqtt_in_event {
	MQTT_IN_CONNECTED,      /* CONNACK accepted (REASON: "host:port") */
	MQTT_IN_SUBSCRIBED,     /* every filter acknowledged */
	MQTT_IN_DOWN,           /* refused, lost, or the first connect failed (REASON says why) */
};
/* Called on the MQTT thread; REASON borrowed. */
typedef void (*mqtt_in_state_fn)(void *arg, enum mqtt_in_event ev, const char *reason);

/* Both before mqtt_in_start(). The will is retained, QoS 1; strings
 * copied. */
int mqtt_in_set_will(struct mqtt_in *mi, const char *topic, const char *payload);
void mqtt_in_set_state_fn(struct mqtt_in *mi, mqtt_in_state_fn fn, void *arg);
/* Retained QoS 1 publish; *MID gets its message id. 0 or M2Z_ERR_NET. */
int mqtt_in_publish_retained(struct mqtt_in *mi, const char *topic, const char *payload, int *mid);
/* Wait up to TIMEOUT_MS for the broker's PUBACK of MID (a condition
 * variable: returns as soon as it came). */
bool mqtt_in_wait_published(struct mqtt_in *mi, int mid, int timeout_ms);
/* Send DISCONNECT (best effort) and stop the MQTT thread. A message
 * callback in progress finishes first (its ack may then not go out: the
 * broker delivers the message again). */
void mqtt_in_stop(struct mqtt_in *mi);
void mqtt_in_free(struct mqtt_in *mi);

/* Reload, from any thread: make SUBS (copied; the [mqtt] shared_group
 * prefix is added as at start) the subscriptions. Filters that are new or
 * changed QoS are subscribed now (the "subscribed to N filter(s)" line
 * follows the SUBACK), removed ones unsubscribed; the next (re)connect
 * subscribes the new list. 0 or M2Z_ERR_NOMEM (nothing changed). */
int mqtt_in_set_subs(struct mqtt_in *mi, const struct mqtt_sub *subs, size_t n);

#endif
