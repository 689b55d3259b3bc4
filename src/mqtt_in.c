/* mqtt_in.c - our MQTT 3.1.1 client session: connect, subscribe, read,
 * acknowledge, keep alive, reconnect. The bytes are mqtt_wire.c's; the
 * transport is platform/tls.h (plain TCP or TLS).
 *
 * One IO thread ("m2z-mqtt") owns the connection. Plain TCP: the socket is
 * blocking with SO_RCVTIMEO set to the time until the next keepalive duty,
 * and every wake-up is ONE read(2) of up to 64 KiB whose whole frames are
 * all decoded and dispatched; the acknowledgements they call for go out in
 * ONE write after the last callback returned, so the broker lets go of a
 * message only once it is spooled. TLS: poll (unless decrypted bytes are
 * pending) then the read under the write lock, since an mbedTLS context
 * takes no concurrent read and write.
 *
 * Other threads (publish, reload, stop) encode and write under the write
 * lock. Outgoing QoS 1/2 publishes stay in the inflight table until the
 * broker completes them and are sent again after a reconnect. */
#define LOG_MODULE "mqtt"
#include "mqtt_in.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "mqtt_wire.h"
#include "tls.h"
#include "util.h"

#define RBUF_SIZE (64 * 1024)            /* one read's worth; grown only for a bigger frame */
#define MAX_PACKET ((size_t)MQTT_MAX_REMAINING + MQTT_MAX_FIXED_HEADER)
#define CONNECT_TIMEOUT_MS 10000         /* TCP + TLS handshake */
#define CONNACK_TIMEOUT_MS 10000         /* at most; never more than the keepalive */
#define WRITE_TIMEOUT_MS 10000
#define DISCONNECT_TIMEOUT_MS 500
#define TLS_READ_MS 1000                 /* longest a TLS read holds the write lock */
#define MAX_PENDING_SUBS 32              /* SUBSCRIBE/UNSUBSCRIBE awaiting their ack */

/* An outgoing QoS 1/2 publish the broker has not completed yet. */
struct inflight {
	uint16_t mid;
	int qos;
	bool released;       /* QoS 2: PUBREC came, PUBREL sent */
	struct buf pkt;      /* the encoded PUBLISH, owned */
};

struct mqtt_handler {
	char *filter;
	int qos;
	mqtt_in_msg_fn fn;
	void *arg;
};

struct mqtt_in {
	struct conf_mqtt conf;       /* strings borrowed from the config */
	struct tls_conf *tls;        /* owned; NULL without TLS */
	char *will_topic, *will_payload; /* owned; NULL = no will */
	mqtt_in_msg_fn fn;
	void *arg;
	mqtt_in_state_fn state_fn;   /* may be NULL */
	void *state_arg;
	mqtt_in_pub_fn pub_fn;
	void *pub_arg;
	struct mqtt_handler *handlers;   /* set before start */
	size_t n_handlers;

	pthread_mutex_t subs_lock;   /* subs, n_subs, sub_mid; before wlock */
	struct mqtt_sub *subs;       /* owned, filters strdup'ed */
	size_t n_subs;
	uint16_t sub_mid;            /* the SUBSCRIBE whose SUBACK means "all in place" */

	/* thread control */
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;          /* stopping + the backoff wait */
	pthread_cond_t cond;         /* CLOCK_MONOTONIC; signalled on stop */
	atomic_bool stopping;
	int cancel_rd, cancel_wr;    /* pipe: readable once stopping (aborts connect, TLS waits) */

	/* the connection: everything below wlock is guarded by it */
	pthread_mutex_t wlock;
	pthread_cond_t pub_cond;     /* an inflight entry left (wait_published) */
	struct tls_conn *conn;       /* NULL while disconnected */
	int fd;
	atomic_bool connected;       /* CONNACK accepted, not lost since */
	int64_t last_sent_ms;
	struct buf obuf;             /* encoding scratch for other threads */
	struct inflight *infl;
	size_t n_infl, cap_infl;
	uint16_t next_mid;
	uint16_t pending[MAX_PENDING_SUBS]; /* SUBSCRIBE/UNSUBSCRIBE ids */
	size_t n_pending;
	int *qos0_done;              /* QoS 0 mids to report to pub_fn */
	size_t n_qos0, cap_qos0;

	/* IO thread only */
	uint8_t *rb;
	size_t rlen, rcap;
	struct buf acks;             /* acknowledgements of one read's frames */
	struct buf topic;            /* NUL-terminated copy for the callback */
	uint8_t qos2_in[65536 / 8];  /* ids of QoS 2 messages awaiting PUBREL */
	bool got_connack;
	int64_t connack_deadline;
	int64_t last_recv_ms;
	bool ping_out;
	int64_t ping_sent_ms;
	int64_t rcvtimeo_ms;         /* SO_RCVTIMEO in force (plain TCP) */
};

static void report(struct mqtt_in *mi, enum mqtt_in_event ev, const char *reason)
{
	if (mi->state_fn)
		mi->state_fn(mi->state_arg, ev, reason);
}

/* ---- subscriptions -------------------------------------------------------- */

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

/* ---- the write side (wlock held) ------------------------------------------ */

static struct inflight *find_inflight(struct mqtt_in *mi, uint16_t mid)
{
	for (size_t i = 0; i < mi->n_infl; i++)
		if (mi->infl[i].mid == mid)
			return &mi->infl[i];
	return NULL;
}

static bool pending_has(const struct mqtt_in *mi, uint16_t id)
{
	for (size_t i = 0; i < mi->n_pending; i++)
		if (mi->pending[i] == id)
			return true;
	return false;
}

/* A packet id not in use: 1..65535, skipping those in flight; 0 when all are. */
static uint16_t alloc_mid(struct mqtt_in *mi)
{
	for (unsigned tries = 0; tries < 65535; tries++) {
		mi->next_mid = (uint16_t)(mi->next_mid == 65535 ? 1 : mi->next_mid + 1);
		if (!find_inflight(mi, mi->next_mid) && !pending_has(mi, mi->next_mid))
			return mi->next_mid;
	}
	return 0;
}

/* Write B whole on the current connection. A failure (or a partial write
 * at the deadline) leaves the stream unusable: the socket is shut down so
 * the IO thread notices and reconnects. */
static int send_locked(struct mqtt_in *mi, const struct buf *b)
{
	char err[200];
	int rc;

	if (!mi->conn)
		return M2Z_ERR_NET;
	if (b->len == 0)
		return M2Z_OK;
	rc = tls_write_all(mi->conn, b->p, b->len, WRITE_TIMEOUT_MS, err, sizeof(err));
	if (rc != M2Z_OK) {
		log_debug("write to the broker failed: %s", err);
		shutdown(mi->fd, SHUT_RDWR);
		return M2Z_ERR_NET;
	}
	mi->last_sent_ms = mono_ms();
	return M2Z_OK;
}

static void drop_inflight(struct mqtt_in *mi, struct inflight *f)
{
	buf_free(&f->pkt);
	*f = mi->infl[--mi->n_infl];
	pthread_cond_broadcast(&mi->pub_cond);
}

/* ---- publishing (any thread) ----------------------------------------------- */

static int publish(struct mqtt_in *mi, const char *topic, const void *payload, size_t len,
		   int qos, bool retain, int *mid_out)
{
	struct inflight *f;
	uint16_t mid;
	int rc;

	pthread_mutex_lock(&mi->wlock);
	if (!atomic_load(&mi->connected) || !mi->conn) {
		rc = M2Z_ERR_NET;
		goto out;
	}
	mid = alloc_mid(mi);
	buf_reset(&mi->obuf);
	rc = mid ? mqtt_encode_publish(&mi->obuf, topic, payload, len, qos, retain, false, mid)
		 : M2Z_ERR_NET;
	if (rc != M2Z_OK)
		goto out;
	if (qos > 0) {
		if (mi->n_infl == mi->cap_infl) {
			size_t cap = mi->cap_infl ? 2 * mi->cap_infl : 16;
			f = realloc(mi->infl, cap * sizeof(*f));
			if (!f) {
				rc = M2Z_ERR_NOMEM;
				goto out;
			}
			mi->infl = f;
			mi->cap_infl = cap;
		}
		f = &mi->infl[mi->n_infl];
		*f = (struct inflight){ .mid = mid, .qos = qos, .pkt = BUF_INIT };
		if (buf_append(&f->pkt, mi->obuf.p, mi->obuf.len) != M2Z_OK) {
			rc = M2Z_ERR_NOMEM;
			goto out;
		}
		mi->n_infl++;
	} else if (mi->pub_fn) {
		/* Reported by the IO thread (never while the publisher may still
		 * hold its own lock); the PINGREQ's answer wakes that thread. */
		if (mi->n_qos0 == mi->cap_qos0) {
			size_t cap = mi->cap_qos0 ? 2 * mi->cap_qos0 : 16;
			int *q = realloc(mi->qos0_done, cap * sizeof(*q));
			if (!q) {
				rc = M2Z_ERR_NOMEM;
				goto out;
			}
			mi->qos0_done = q;
			mi->cap_qos0 = cap;
		}
		if ((rc = mqtt_encode_simple(&mi->obuf, MQTT_PINGREQ)) != M2Z_OK)
			goto out;
		mi->qos0_done[mi->n_qos0++] = mid;
	}
	if (mid_out)
		*mid_out = mid;
	/* A QoS > 0 publish whose write failed is in the table: sent again
	 * after the reconnect, as libmosquitto did. */
	rc = send_locked(mi, &mi->obuf);
	if (qos > 0)
		rc = M2Z_OK;
out:
	pthread_mutex_unlock(&mi->wlock);
	return rc;
}

int mqtt_in_publish(struct mqtt_in *mi, const char *topic, const void *payload, size_t len,
		    int qos)
{
	int rc = publish(mi, topic, payload, len, qos, false, NULL);

	if (rc != M2Z_OK) {
		log_warn("publish to '%s' failed: %s", topic, m2z_strerror(rc));
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

int mqtt_in_publish_mid(struct mqtt_in *mi, const char *topic, const void *payload, size_t len,
			int qos, bool retain, int *mid)
{
	int rc = publish(mi, topic, payload, len, qos, retain, mid);

	if (rc != M2Z_OK) {
		log_warn("publish to '%s' failed: %s", topic, m2z_strerror(rc));
		/* refused for what it is, not for where we are: retrying cannot help */
		return rc == M2Z_ERR_INVAL ? M2Z_ERR_INVAL : M2Z_ERR_NET;
	}
	return M2Z_OK;
}

int mqtt_in_publish_retained(struct mqtt_in *mi, const char *topic, const char *payload, int *mid)
{
	int rc = publish(mi, topic, payload, strlen(payload), 1, true, mid);

	if (rc != M2Z_OK) {
		log_debug("retained publish to '%s' failed: %s", topic, m2z_strerror(rc));
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

bool mqtt_in_wait_published(struct mqtt_in *mi, int mid, int timeout_ms)
{
	struct timespec until = mono_deadline(timeout_ms);
	bool done;

	pthread_mutex_lock(&mi->wlock);
	while (find_inflight(mi, (uint16_t)mid) &&
	       pthread_cond_timedwait(&mi->pub_cond, &mi->wlock, &until) == 0)
		;
	done = !find_inflight(mi, (uint16_t)mid);
	pthread_mutex_unlock(&mi->wlock);
	return done;
}

/* ---- session start (IO thread) --------------------------------------------- */

/* Append one SUBSCRIBE for every handler and subscription (each filter with
 * its own QoS) to OUT; remembers its id as the one whose SUBACK means
 * "subscribed". subs_lock and wlock held. */
static int encode_subscribe_all(struct mqtt_in *mi, struct buf *out)
{
	size_t n = mi->n_handlers + mi->n_subs, k = 0;
	const char **filters = calloc(n ? n : 1, sizeof(*filters));
	int *qos = calloc(n ? n : 1, sizeof(*qos));
	uint16_t id;
	int rc = M2Z_ERR_NOMEM;

	if (!filters || !qos)
		goto out;
	for (size_t i = 0; i < mi->n_handlers; i++, k++) {
		filters[k] = mi->handlers[i].filter;
		qos[k] = mi->handlers[i].qos;
	}
	for (size_t i = 0; i < mi->n_subs; i++, k++) {
		filters[k] = mi->subs[i].filter;
		qos[k] = mi->subs[i].qos;
	}
	rc = M2Z_OK;
	if (n == 0 || !(id = alloc_mid(mi)))
		goto out;
	rc = mqtt_encode_subscribe(out, id, filters, qos, n);
	if (rc == M2Z_OK) {
		mi->pending[mi->n_pending++] = id;
		mi->sub_mid = id;
	}
out:
	free(filters);
	free(qos);
	return rc;
}

/* Inflight publishes again after a reconnect: with DUP (and PUBREL for
 * those past PUBREC) when the broker kept our session, else as new. */
static int encode_resend(struct mqtt_in *mi, bool session_present, struct buf *out)
{
	for (size_t i = 0; i < mi->n_infl; i++) {
		struct inflight *f = &mi->infl[i];
		int rc;
		if (!session_present)
			f->released = false;
		if (f->released) {
			rc = mqtt_encode_ack(out, MQTT_PUBREL, f->mid);
		} else {
			if (session_present)
				f->pkt.p[0] = (char)(f->pkt.p[0] | 0x08);
			else
				f->pkt.p[0] = (char)(f->pkt.p[0] & ~0x08);
			rc = buf_append(out, f->pkt.p, f->pkt.len);
		}
		if (rc != M2Z_OK)
			return rc;
	}
	return M2Z_OK;
}

static int on_connack(struct mqtt_in *mi, const struct mqtt_packet *p, char *why, size_t wlen)
{
	struct buf out = BUF_INIT;
	char where[300];
	int rc;

	if (p->return_code != 0) {
		const char *text = mqtt_connack_string(p->return_code);
		log_warn("broker %s:%d refused the connection: %s", mi->conf.host, mi->conf.port, text);
		report(mi, MQTT_IN_DOWN, text);
		snprintf(why, wlen, "refused");
		return M2Z_ERR_AUTH;
	}
	mi->got_connack = true;
	if (!p->session_present)
		memset(mi->qos2_in, 0, sizeof(mi->qos2_in));
	snprintf(where, sizeof(where), "%s:%d", mi->conf.host, mi->conf.port);
	/* Subscribe on every connect: cheap, and right even if the broker lost
	 * our session. One SUBSCRIBE, one write with the resent publishes;
	 * "connected" (publishers may go) only after it, so a new publish
	 * never overtakes an older one being resent. */
	pthread_mutex_lock(&mi->subs_lock);
	pthread_mutex_lock(&mi->wlock);
	mi->n_pending = 0;
	rc = encode_subscribe_all(mi, &out);
	if (rc == M2Z_OK)
		rc = encode_resend(mi, p->session_present, &out);
	if (rc == M2Z_OK)
		rc = send_locked(mi, &out);
	if (rc == M2Z_OK)
		atomic_store(&mi->connected, true);
	pthread_mutex_unlock(&mi->wlock);
	pthread_mutex_unlock(&mi->subs_lock);
	buf_free(&out);
	if (rc != M2Z_OK) {
		snprintf(why, wlen, "cannot subscribe: %s", m2z_strerror(rc));
		return rc;
	}
	report(mi, MQTT_IN_CONNECTED, where);
	log_info("connected to %s:%d as '%s' (clean_session=%s)", mi->conf.host, mi->conf.port,
		 mi->conf.client_id, mi->conf.clean_session ? "true" : "false");
	return M2Z_OK;
}

/* ---- dispatch (IO thread) ------------------------------------------------- */

static bool qos2_held(const struct mqtt_in *mi, uint16_t id)
{
	return mi->qos2_in[id / 8] & (1u << (id % 8));
}

static void qos2_set(struct mqtt_in *mi, uint16_t id, bool on)
{
	if (on)
		mi->qos2_in[id / 8] = (uint8_t)(mi->qos2_in[id / 8] | (1u << (id % 8)));
	else
		mi->qos2_in[id / 8] = (uint8_t)(mi->qos2_in[id / 8] & ~(1u << (id % 8)));
}

static int on_message(struct mqtt_in *mi, const struct mqtt_packet *p)
{
	const char *topic;

	/* QoS 2 redelivered before our PUBREC arrived: spooled already. */
	if (p->qos == 2 && qos2_held(mi, p->id))
		return mqtt_encode_ack(&mi->acks, MQTT_PUBREC, p->id);
	buf_reset(&mi->topic);
	if (buf_append(&mi->topic, p->topic, p->topic_len) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	topic = mi->topic.p;
	for (size_t i = 0; i < mi->n_handlers; i++) {
		if (mqtt_topic_matches(mi->handlers[i].filter, p->topic, p->topic_len)) {
			mi->handlers[i].fn(mi->handlers[i].arg, topic, p->payload, p->payload_len,
					   p->qos, p->retain);
			goto ack;
		}
	}
	mi->fn(mi->arg, topic, p->payload, p->payload_len, p->qos, p->retain);
ack:
	/* The callback returned: the event is durable, the ack may go. */
	if (p->qos == 1)
		return mqtt_encode_ack(&mi->acks, MQTT_PUBACK, p->id);
	if (p->qos == 2) {
		qos2_set(mi, p->id, true);
		return mqtt_encode_ack(&mi->acks, MQTT_PUBREC, p->id);
	}
	return M2Z_OK;
}

/* PUBACK, PUBREC, PUBCOMP for one of our publishes. */
static int on_pub_ack(struct mqtt_in *mi, const struct mqtt_packet *p, char *why, size_t wlen)
{
	struct inflight *f;
	bool done = false;
	int rc = M2Z_OK;

	pthread_mutex_lock(&mi->wlock);
	f = find_inflight(mi, p->id);
	if (!f || (p->type == MQTT_PUBACK) != (f->qos == 1)) {
		rc = M2Z_ERR_PARSE;
	} else if (p->type == MQTT_PUBREC) {
		f->released = true;
		rc = mqtt_encode_ack(&mi->acks, MQTT_PUBREL, p->id);
	} else {
		drop_inflight(mi, f);
		done = true;
	}
	pthread_mutex_unlock(&mi->wlock);
	if (rc == M2Z_ERR_PARSE)
		snprintf(why, wlen, "the broker acknowledged packet id %u, not in flight",
			 (unsigned)p->id);
	if (done && mi->pub_fn)
		mi->pub_fn(mi->pub_arg, p->id);
	return rc;
}

static int on_suback(struct mqtt_in *mi, const struct mqtt_packet *p, char *why, size_t wlen)
{
	bool known, all;
	int refused = 0;

	pthread_mutex_lock(&mi->subs_lock);
	pthread_mutex_lock(&mi->wlock);
	known = pending_has(mi, p->id);
	for (size_t i = 0; known && i < mi->n_pending; i++)
		if (mi->pending[i] == p->id)
			mi->pending[i] = mi->pending[--mi->n_pending];
	pthread_mutex_unlock(&mi->wlock);
	all = known && p->type == MQTT_SUBACK && p->id == mi->sub_mid;
	pthread_mutex_unlock(&mi->subs_lock);
	if (!known) {
		snprintf(why, wlen, "the broker acknowledged a (un)subscription %u we did not send",
			 (unsigned)p->id);
		return M2Z_ERR_PARSE;
	}
	if (p->type != MQTT_SUBACK)
		return M2Z_OK;
	for (size_t i = 0; i < p->n_granted; i++)
		if (p->granted[i] == 0x80)
			refused++;
	if (refused)
		log_err("broker refused %d of %d subscription(s) (check its ACL)", refused,
			(int)p->n_granted);
	if (all) {
		/* The last SUBSCRIBE acknowledged: every filter is in place. */
		pthread_mutex_lock(&mi->subs_lock);
		log_info("subscribed to %d filter(s)", (int)mi->n_subs);
		pthread_mutex_unlock(&mi->subs_lock);
		report(mi, MQTT_IN_SUBSCRIBED, "");
	}
	return M2Z_OK;
}

static int handle(struct mqtt_in *mi, const struct mqtt_packet *p, char *why, size_t wlen)
{
	if (!mi->got_connack && p->type != MQTT_CONNACK) {
		snprintf(why, wlen, "packet type %d before CONNACK", (int)p->type);
		return M2Z_ERR_PARSE;
	}
	switch (p->type) {
	case MQTT_CONNACK:
		if (mi->got_connack)
			break;
		return on_connack(mi, p, why, wlen);
	case MQTT_PUBLISH:
		return on_message(mi, p);
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBCOMP:
		return on_pub_ack(mi, p, why, wlen);
	case MQTT_PUBREL:
		qos2_set(mi, p->id, false);
		return mqtt_encode_ack(&mi->acks, MQTT_PUBCOMP, p->id);
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		return on_suback(mi, p, why, wlen);
	case MQTT_PINGRESP:
		mi->ping_out = false;
		return M2Z_OK;
	default:
		break;
	}
	snprintf(why, wlen, "unexpected packet type %d from the broker", (int)p->type);
	return M2Z_ERR_PARSE;
}

/* Report QoS 0 publishes written since the last wake-up. */
static void report_qos0(struct mqtt_in *mi)
{
	int mids[64];
	size_t n;

	do {
		pthread_mutex_lock(&mi->wlock);
		n = mi->n_qos0 < 64 ? mi->n_qos0 : 64;
		for (size_t i = 0; i < mi->n_qos0; i++)   /* in publish order */
			if (i < n)
				mids[i] = mi->qos0_done[i];
			else
				mi->qos0_done[i - n] = mi->qos0_done[i];
		mi->n_qos0 -= n;
		pthread_mutex_unlock(&mi->wlock);
		for (size_t i = 0; i < n; i++)
			mi->pub_fn(mi->pub_arg, mids[i]);
	} while (n == 64);
}

static int flush_acks(struct mqtt_in *mi)
{
	int rc;

	if (mi->acks.len == 0)
		return M2Z_OK;
	pthread_mutex_lock(&mi->wlock);
	rc = send_locked(mi, &mi->acks);
	pthread_mutex_unlock(&mi->wlock);
	buf_reset(&mi->acks);
	return rc;
}

/* Decode and dispatch every whole frame in the reader buffer, then write
 * their acknowledgements at once. M2Z_OK, or an error with WHY set. */
static int process(struct mqtt_in *mi, char *why, size_t wlen)
{
	size_t off = 0;
	int rc = M2Z_OK;

	while (off < mi->rlen && rc == M2Z_OK) {
		struct mqtt_packet p;
		ssize_t fl = mqtt_frame_len(mi->rb + off, mi->rlen - off, MAX_PACKET);
		if (fl < 0) {
			snprintf(why, wlen, "malformed frame from the broker (%s)",
				 m2z_strerror((int)fl));
			rc = M2Z_ERR_PARSE;
		} else if (fl == 0 || (size_t)fl > mi->rlen - off) {
			break;
		} else if (mqtt_decode(mi->rb + off, (size_t)fl, &p) < 0) {
			snprintf(why, wlen, "malformed packet from the broker (type byte 0x%02x)",
				 mi->rb[off]);
			rc = M2Z_ERR_PARSE;
		} else {
			rc = handle(mi, &p, why, wlen);
			off += (size_t)fl;
		}
	}
	/* A read we answer with nothing (a PUBACK, SUBACK or PINGRESP for us)
	 * would leave its TCP ACK to the delayed-ACK timer (~40 ms; our
	 * PUBACKs put the socket in the kernel's "pingpong" mode). A broker
	 * that writes with Nagle on (mosquitto's default) then holds the next
	 * PUBLISH until that ACK: a 40 ms stall per status or job publish.
	 * So ask for the ACK now; a read we answer carries it in our reply. */
	if (mi->acks.len == 0 && off > 0 && mi->fd >= 0) {
		int one = 1;
		(void)setsockopt(mi->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
	}
	/* Acks of what was dispatched go out even when a later frame is bad. */
	if (flush_acks(mi) != M2Z_OK && rc == M2Z_OK) {
		snprintf(why, wlen, "write failed");
		rc = M2Z_ERR_NET;
	}
	if (mi->pub_fn)
		report_qos0(mi);
	memmove(mi->rb, mi->rb + off, mi->rlen - off);
	mi->rlen -= off;
	return rc;
}

/* Room for the frame at the buffer's start. A frame bigger than the buffer
 * grows it with the bytes that came (doubling once half full), never with
 * what the header merely claims: a broker that announces 256 MiB and sends
 * 1 KiB costs RBUF_SIZE. Shrunk back to RBUF_SIZE after a big frame. */
static int size_reader(struct mqtt_in *mi)
{
	ssize_t fl = mi->rlen ? mqtt_frame_len(mi->rb, mi->rlen, MAX_PACKET) : 0;
	size_t want = RBUF_SIZE;
	uint8_t *nb;

	if (fl > RBUF_SIZE) {
		want = mi->rcap > RBUF_SIZE ? mi->rcap : RBUF_SIZE;
		while (want < (size_t)fl && mi->rlen * 2 > want)
			want *= 2;
		if (want > (size_t)fl)
			want = (size_t)fl;
	}
	if (want == mi->rcap || (want < mi->rcap && mi->rlen > want))
		return M2Z_OK;
	nb = realloc(mi->rb, want);
	if (!nb)
		return M2Z_ERR_NOMEM;
	mi->rb = nb;
	mi->rcap = want;
	return M2Z_OK;
}

/* ---- reading (IO thread) ---------------------------------------------------- */

/* Plain TCP: SO_RCVTIMEO only changes when the one in force would wake us
 * more than RCVTIMEO_LATE_MS after the next duty or less than half way to
 * it (a setsockopt per wake-up would cost as much as the read). Set, it is
 * the time to the duty plus 1 ms, so the wake-up finds the duty due. */
#define RCVTIMEO_LATE_MS 100
static void set_rcvtimeo(struct mqtt_in *mi, int64_t need_ms)
{
	struct timeval tv;
	int64_t t = need_ms + 1;

	if (mi->rcvtimeo_ms > 0 && mi->rcvtimeo_ms <= need_ms + RCVTIMEO_LATE_MS &&
	    2 * mi->rcvtimeo_ms >= need_ms)
		return;
	tv.tv_sec = (time_t)(t / 1000);
	tv.tv_usec = (suseconds_t)((t % 1000) * 1000);
	if (setsockopt(mi->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0)
		mi->rcvtimeo_ms = t;
}

/* One read into the buffer within NEED_MS: > 0 bytes, M2Z_ERR_AGAIN (time
 * for a duty), 0 end of stream, or an error with WHY set. */
static ssize_t read_some(struct mqtt_in *mi, int64_t need_ms, char *why, size_t wlen)
{
	void *dst = mi->rb + mi->rlen;
	size_t room = mi->rcap - mi->rlen;
	ssize_t n;

	if (!mi->conf.tls) {
		set_rcvtimeo(mi, need_ms);
		n = read(mi->fd, dst, room);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return M2Z_ERR_AGAIN;
		snprintf(why, wlen, "%s", strerror(errno));
		return M2Z_ERR_NET;
	}
	if (tls_pending(mi->conn) == 0) {
		struct pollfd p = { .fd = mi->fd, .events = POLLIN };
		int r = poll(&p, 1, need_ms > 60000 ? 60000 : (int)need_ms);
		if (r == 0 || (r < 0 && errno == EINTR))
			return M2Z_ERR_AGAIN;
		if (r < 0) {
			snprintf(why, wlen, "poll: %s", strerror(errno));
			return M2Z_ERR_NET;
		}
	}
	/* Under the write lock: at most TLS_READ_MS, then writers get their
	 * turn (mbedTLS keeps a partial record for the next call). */
	pthread_mutex_lock(&mi->wlock);
	n = tls_read(mi->conn, dst, room, need_ms < TLS_READ_MS ? need_ms : TLS_READ_MS, why, wlen);
	pthread_mutex_unlock(&mi->wlock);
	return n == M2Z_ERR_TIMEOUT ? M2Z_ERR_AGAIN : n;
}

/* Keepalive and CONNACK deadline. Returns the ms until the next duty (> 0),
 * or an error with WHY set. */
static int64_t duties(struct mqtt_in *mi, char *why, size_t wlen)
{
	int64_t now = mono_ms(), ka = (int64_t)mi->conf.keepalive_s * 1000, last_sent, next;

	if (!mi->got_connack) {
		if (now >= mi->connack_deadline) {
			snprintf(why, wlen, "no CONNACK within %lld ms",
				 (long long)(ka < CONNACK_TIMEOUT_MS ? ka : CONNACK_TIMEOUT_MS));
			return M2Z_ERR_TIMEOUT;
		}
		return mi->connack_deadline - now;
	}
	if (mi->ping_out && now - mi->ping_sent_ms >= ka / 2) {
		snprintf(why, wlen, "keepalive: no answer for %lld ms", (long long)(now - mi->last_recv_ms));
		return M2Z_ERR_TIMEOUT;
	}
	pthread_mutex_lock(&mi->wlock);
	last_sent = mi->last_sent_ms;
	if (!mi->ping_out && (now - last_sent >= ka || now - mi->last_recv_ms >= ka)) {
		struct buf ping = BUF_INIT;
		if (mqtt_encode_simple(&ping, MQTT_PINGREQ) == M2Z_OK && send_locked(mi, &ping) == M2Z_OK) {
			mi->ping_out = true;
			mi->ping_sent_ms = now;
		}
		buf_free(&ping);
		last_sent = mi->last_sent_ms;
	}
	pthread_mutex_unlock(&mi->wlock);
	if (mi->ping_out)
		next = mi->ping_sent_ms + ka / 2;
	else
		next = (last_sent < mi->last_recv_ms ? last_sent : mi->last_recv_ms) + ka;
	return next - now > 1 ? next - now : 1;
}

/* Read and dispatch until the connection ends; WHY says why. */
static int session_run(struct mqtt_in *mi, char *why, size_t wlen)
{
	for (;;) {
		int64_t need = duties(mi, why, wlen);
		ssize_t n;
		int rc;

		if (need < 0)
			return (int)need;
		if (atomic_load(&mi->stopping))
			return M2Z_ERR_CLOSED;
		if ((rc = size_reader(mi)) != M2Z_OK) {
			snprintf(why, wlen, "out of memory for a %zu-byte frame", mi->rcap);
			return rc;
		}
		n = read_some(mi, need, why, wlen);
		if (n == M2Z_ERR_AGAIN)
			continue;
		if (n == 0) {
			snprintf(why, wlen, "the broker closed the connection");
			return M2Z_ERR_NET;
		}
		if (n < 0)
			return (int)n;
		mi->rlen += (size_t)n;
		mi->last_recv_ms = mono_ms();
		if ((rc = process(mi, why, wlen)) != M2Z_OK)
			return rc;
	}
}

/* ---- connect / reconnect (IO thread) --------------------------------------- */

static void set_conn(struct mqtt_in *mi, struct tls_conn *c)
{
	pthread_mutex_lock(&mi->wlock);
	mi->conn = c;
	mi->fd = c ? tls_fd(c) : -1;
	mi->last_sent_ms = mono_ms();
	pthread_mutex_unlock(&mi->wlock);
}

/* TCP (+ TLS) and CONNECT. 0, or an error with WHY set. */
static int session_open(struct mqtt_in *mi, char *why, size_t wlen)
{
	struct mqtt_connect cn = {
		.client_id = mi->conf.client_id,
		.username = mi->conf.username[0] ? mi->conf.username : NULL,
		.password = mi->conf.username[0] && mi->conf.password[0] ? mi->conf.password : NULL,
		.clean_session = mi->conf.clean_session,
		.keepalive_s = (uint16_t)mi->conf.keepalive_s,
		.will_topic = mi->will_topic,
		.will_payload = mi->will_payload,
		.will_len = mi->will_payload ? strlen(mi->will_payload) : 0,
		.will_qos = 1,
		.will_retain = true,
	};
	struct buf b = BUF_INIT;
	struct tls_conn *c;
	int64_t ka = (int64_t)mi->conf.keepalive_s * 1000;
	int one = 1, rc;

	rc = tls_connect(mi->tls, mi->conf.host, (uint16_t)mi->conf.port, CONNECT_TIMEOUT_MS,
			 mi->conf.tls, mi->cancel_rd, &c, why, wlen);
	if (rc != M2Z_OK)
		return rc;
	if (!mi->conf.tls) {
		int fl = fcntl(tls_fd(c), F_GETFL);
		/* blocking reads with SO_RCVTIMEO; writes stay MSG_DONTWAIT */
		if (fl >= 0)
			(void)fcntl(tls_fd(c), F_SETFL, fl & ~O_NONBLOCK);
	}
	(void)setsockopt(tls_fd(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	mi->rlen = 0;
	mi->rcvtimeo_ms = 0;
	mi->got_connack = false;
	mi->ping_out = false;
	mi->connack_deadline = mono_ms() + (ka < CONNACK_TIMEOUT_MS ? ka : CONNACK_TIMEOUT_MS);
	mi->last_recv_ms = mono_ms();
	buf_reset(&mi->acks);
	set_conn(mi, c);
	rc = mqtt_encode_connect(&b, &cn);
	if (rc == M2Z_OK) {
		pthread_mutex_lock(&mi->wlock);
		rc = send_locked(mi, &b);
		pthread_mutex_unlock(&mi->wlock);
	}
	buf_free(&b);
	if (rc != M2Z_OK)
		snprintf(why, wlen, "cannot send CONNECT: %s", m2z_strerror(rc));
	return rc;
}

static void session_close(struct mqtt_in *mi)
{
	struct tls_conn *c;

	pthread_mutex_lock(&mi->wlock);
	atomic_store(&mi->connected, false);
	c = mi->conn;
	mi->conn = NULL;
	mi->fd = -1;
	mi->n_pending = 0;
	pthread_cond_broadcast(&mi->pub_cond);
	pthread_mutex_unlock(&mi->wlock);
	tls_close(c);
}

/* Wait DELAY_MS or until stopped. */
static void backoff_wait(struct mqtt_in *mi, int64_t delay_ms)
{
	struct timespec ts = mono_deadline(delay_ms);

	pthread_mutex_lock(&mi->mu);
	while (!atomic_load(&mi->stopping) && pthread_cond_timedwait(&mi->cond, &mi->mu, &ts) == 0)
		;
	pthread_mutex_unlock(&mi->mu);
}

static void *io_main(void *arg)
{
	struct mqtt_in *mi = arg;
	int64_t delay = mi->conf.reconnect_min_ms;
	unsigned attempt = 0;
	bool ever_failed = false;
	char why[300];

	thread_name("m2z-mqtt");
	while (!atomic_load(&mi->stopping)) {
		int rc;

		attempt++;
		why[0] = '\0';
		rc = session_open(mi, why, sizeof(why));
		if (rc != M2Z_OK) {
			session_close(mi);
			if (atomic_load(&mi->stopping))
				break;
			if (!ever_failed) {
				char msg[400];
				snprintf(msg, sizeof(msg), "cannot reach %s:%d (%s)", mi->conf.host,
					 mi->conf.port, why);
				log_warn("%s; will retry every %lld..%lld ms", msg,
					 (long long)mi->conf.reconnect_min_ms,
					 (long long)mi->conf.reconnect_max_ms);
				report(mi, MQTT_IN_DOWN, msg);
				ever_failed = true;
			}
			log_debug("cannot connect to %s:%d (%s); attempt %u, next in %lld ms",
				  mi->conf.host, mi->conf.port, why, attempt, (long long)delay);
			backoff_wait(mi, delay);
			delay = backoff_next_ms(delay, mi->conf.reconnect_max_ms);
			continue;
		}
		if (attempt > 1)
			log_info("connecting to %s:%d (attempt %u)", mi->conf.host, mi->conf.port,
				 attempt);
		rc = session_run(mi, why, sizeof(why));
		session_close(mi);
		if (atomic_load(&mi->stopping))
			break;
		if (mi->got_connack) {
			char msg[400];
			log_warn("connection to %s:%d lost (%s); reconnecting", mi->conf.host,
				 mi->conf.port, why);
			snprintf(msg, sizeof(msg), "connection to %s:%d lost (%s)", mi->conf.host,
				 mi->conf.port, why);
			report(mi, MQTT_IN_DOWN, msg);
			delay = mi->conf.reconnect_min_ms;
			attempt = 0;
			ever_failed = true;
		} else if (rc != M2Z_ERR_AUTH) {
			/* refused was logged by on_connack; this is a broker that
			 * does not speak the protocol with us */
			log_warn("connection to %s:%d failed before CONNACK (%s); retrying in %lld ms",
				 mi->conf.host, mi->conf.port, why, (long long)delay);
			report(mi, MQTT_IN_DOWN, why);
		}
		backoff_wait(mi, delay);
		if (!mi->got_connack)
			delay = backoff_next_ms(delay, mi->conf.reconnect_max_ms);
	}
	return NULL;
}

/* ---- setup ------------------------------------------------------------------ */

static int setup_tls(struct mqtt_in *mi)
{
	const struct conf_mqtt *c = &mi->conf;
	char err[300];
	int rc = tls_conf_new(c->ca_file, &mi->tls, err, sizeof(err));

	if (rc == M2Z_OK && c->cert_file[0])
		rc = tls_conf_client_cert(mi->tls, c->cert_file, c->key_file, err, sizeof(err));
	if (rc != M2Z_OK) {
		log_err("cannot configure the MQTT client: %s", err);
		return M2Z_ERR_CONFIG;
	}
	if (c->tls_insecure)
		tls_conf_skip_name_check(mi->tls);
	return M2Z_OK;
}

int mqtt_in_new(const struct conf_mqtt *conf, const struct mqtt_sub *subs, size_t n,
		mqtt_in_msg_fn fn, void *arg, struct mqtt_in **out)
{
	struct mqtt_in *mi = calloc(1, sizeof(*mi));
	int fds[2];

	if (!mi)
		return M2Z_ERR_NOMEM;
	pthread_mutex_init(&mi->mu, NULL);
	pthread_mutex_init(&mi->subs_lock, NULL);
	pthread_mutex_init(&mi->wlock, NULL);
	cond_init_monotonic(&mi->cond);
	cond_init_monotonic(&mi->pub_cond);
	mi->cancel_rd = mi->cancel_wr = mi->fd = -1;
	mi->conf = *conf;
	mi->fn = fn;
	mi->arg = arg;
	mi->subs = copy_subs(conf->shared_group, subs, n);
	if (!mi->subs || pipe2(fds, O_CLOEXEC) != 0)
		goto nomem;
	mi->cancel_rd = fds[0];
	mi->cancel_wr = fds[1];
	mi->n_subs = n;
	if (!conf->username[0] && conf->password[0])
		/* MQTT 3.1.1 has no password without a user name. */
		log_warn("password is set but username is not: the password is not sent");
	if (conf->tls && setup_tls(mi) != M2Z_OK) {
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
	if (mi->started)
		return M2Z_OK;
	mi->rb = malloc(RBUF_SIZE);
	if (!mi->rb)
		return M2Z_ERR_NOMEM;
	mi->rcap = RBUF_SIZE;
	if (pthread_create(&mi->thread, NULL, io_main, mi) != 0) {
		log_err("cannot start the MQTT thread");
		return M2Z_ERR_NOMEM;
	}
	mi->started = true;
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
	free(mi->will_topic);
	free(mi->will_payload);
	mi->will_topic = strdup(topic);
	mi->will_payload = strdup(payload);
	if (!mi->will_topic || !mi->will_payload || !utf8_valid(topic, strlen(topic))) {
		log_err("cannot set the Last Will on '%s'", topic);
		return M2Z_ERR_CONFIG;
	}
	return M2Z_OK;
}

void mqtt_in_set_state_fn(struct mqtt_in *mi, mqtt_in_state_fn fn, void *arg)
{
	mi->state_fn = fn;
	mi->state_arg = arg;
}

void mqtt_in_stop(struct mqtt_in *mi)
{
	if (!mi || !mi->started)
		return;
	pthread_mutex_lock(&mi->mu);
	atomic_store(&mi->stopping, true);
	pthread_cond_broadcast(&mi->cond);
	pthread_mutex_unlock(&mi->mu);
	if (write(mi->cancel_wr, "x", 1) < 0)
		log_debug("cannot wake the MQTT thread: %s", strerror(errno));
	pthread_mutex_lock(&mi->wlock);
	if (mi->conn) {
		struct buf b = BUF_INIT;
		char err[120];
		if (atomic_load(&mi->connected) && mqtt_encode_simple(&b, MQTT_DISCONNECT) == M2Z_OK)
			(void)tls_write_all(mi->conn, b.p, b.len, DISCONNECT_TIMEOUT_MS, err, sizeof(err));
		buf_free(&b);
		/* wakes a blocked read; a callback in progress finishes first */
		shutdown(mi->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&mi->wlock);
	pthread_join(mi->thread, NULL);
	mi->started = false;
}

void mqtt_in_free(struct mqtt_in *mi)
{
	if (!mi)
		return;
	mqtt_in_stop(mi);
	free_subs(mi->subs, mi->n_subs);
	for (size_t i = 0; i < mi->n_infl; i++)
		buf_free(&mi->infl[i].pkt);
	free(mi->infl);
	free(mi->qos0_done);
	free(mi->rb);
	buf_free(&mi->acks);
	buf_free(&mi->topic);
	buf_free(&mi->obuf);
	tls_conf_free(mi->tls);
	free(mi->will_topic);
	free(mi->will_payload);
	if (mi->cancel_rd >= 0)
		close(mi->cancel_rd);
	if (mi->cancel_wr >= 0)
		close(mi->cancel_wr);
	pthread_cond_destroy(&mi->cond);
	pthread_cond_destroy(&mi->pub_cond);
	pthread_mutex_destroy(&mi->mu);
	pthread_mutex_destroy(&mi->subs_lock);
	pthread_mutex_destroy(&mi->wlock);
	for (size_t i = 0; i < mi->n_handlers; i++)
		free(mi->handlers[i].filter);
	free(mi->handlers);
	free(mi);
}

/* ---- reload ------------------------------------------------------------------ */

static const struct mqtt_sub *find_sub(const struct mqtt_sub *subs, size_t n, const char *filter)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(subs[i].filter, filter) == 0)
			return &subs[i];
	return NULL;
}

/* One UNSUBSCRIBE for the removed filters and one SUBSCRIBE for the new or
 * changed ones, in one write. subs_lock and wlock held; not connected is
 * fine (the next connect subscribes the new list). */
static void send_sub_changes(struct mqtt_in *mi, const struct mqtt_sub *old, size_t n_old,
			     const struct mqtt_sub *next, size_t n)
{
	const char **gone = calloc(n_old ? n_old : 1, sizeof(*gone));
	const char **add = calloc(n ? n : 1, sizeof(*add));
	int *qos = calloc(n ? n : 1, sizeof(*qos));
	struct buf b = BUF_INIT;
	size_t n_gone = 0, n_add = 0;
	uint16_t id;

	if (!gone || !add || !qos)
		goto out;
	for (size_t i = 0; i < n_old; i++)
		if (!find_sub(next, n, old[i].filter)) {
			log_info("unsubscribing from '%s'", old[i].filter);
			gone[n_gone++] = old[i].filter;
		}
	for (size_t i = 0; i < n; i++) {
		const struct mqtt_sub *was = find_sub(old, n_old, next[i].filter);
		if (was && was->qos == next[i].qos)
			continue;
		log_info("subscribing to '%s' (QoS %d)", next[i].filter, next[i].qos);
		qos[n_add] = next[i].qos;
		add[n_add++] = next[i].filter;
	}
	if (!atomic_load(&mi->connected))
		goto out;   /* the next connect subscribes the new list */
	if (mi->n_pending + 2 > MAX_PENDING_SUBS) {
		log_warn("%zu (un)subscriptions still await the broker's answer: this change "
			 "takes effect at the next reconnect", mi->n_pending);
		goto out;
	}
	if (n_gone && (id = alloc_mid(mi)) && mqtt_encode_unsubscribe(&b, id, gone, n_gone) == M2Z_OK)
		mi->pending[mi->n_pending++] = id;
	if (n_add && (id = alloc_mid(mi)) && mqtt_encode_subscribe(&b, id, add, qos, n_add) == M2Z_OK) {
		mi->pending[mi->n_pending++] = id;
		mi->sub_mid = id;
	}
	if (send_locked(mi, &b) != M2Z_OK)
		log_warn("(un)subscribe not sent (connection lost): the next connect subscribes "
			 "the new list");
out:
	buf_free(&b);
	free(gone);
	free(add);
	free(qos);
}

int mqtt_in_set_subs(struct mqtt_in *mi, const struct mqtt_sub *subs, size_t n)
{
	struct mqtt_sub *next = copy_subs(mi->conf.shared_group, subs, n), *old;
	size_t n_old;

	if (!next)
		return M2Z_ERR_NOMEM;
	pthread_mutex_lock(&mi->subs_lock);
	old = mi->subs;
	n_old = mi->n_subs;
	pthread_mutex_lock(&mi->wlock);
	send_sub_changes(mi, old, n_old, next, n);
	pthread_mutex_unlock(&mi->wlock);
	mi->subs = next;
	mi->n_subs = n;
	pthread_mutex_unlock(&mi->subs_lock);
	free_subs(old, n_old);
	return M2Z_OK;
}
