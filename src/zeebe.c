/* zeebe.c - the Zeebe gateway client on gRPC core; see zeebe.h.
 *
 * The only file that includes gRPC headers. One channel, one completion
 * queue drained by one thread; each PublishMessage is one batch of six ops
 * and one tag, so a call costs one completion-queue event. */
#define LOG_MODULE "zeebe"
#include "zeebe.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "gateway.pb-c.h"
#include "log.h"
#include "oauth.h"
#include "redact.h"
#include "util.h"
#include "zeebe_internal.h"

#define AUTH_MAX (OAUTH_MAX_HEADER + 1)

/* One call in flight. */
struct zcall {
	struct zeebe *zb;
	grpc_call *call;
	zeebe_done_fn done;
	void *arg;
	uint64_t token_gen;
	grpc_metadata md;           /* authorization, when a token is used */
	grpc_byte_buffer *request;
	grpc_byte_buffer *response;
	grpc_metadata_array initial, trailing;
	grpc_status_code status;
	grpc_slice details;
	struct zcall *prev, *next;  /* live list, for cancelling at shutdown */
};

struct zeebe {
	grpc_channel *channel;
	grpc_completion_queue *cq;
	pthread_t thread;
	bool thread_started;
	grpc_slice method;
	int64_t deadline_ms;
	struct oauth *oauth;
	char *basic;                /* "Basic <base64>" or NULL; wiped on free */
	char address[256];          /* for messages */

	pthread_mutex_t lock;       /* guards the fields below */
	pthread_cond_t idle;        /* signalled when in_flight drops */
	struct zcall *live;
	size_t in_flight;
	bool closed;
	bool unreachable;           /* the last call could not reach the gateway */
};

static const char *const code_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *zeebe_code_name(int code)
{
	if (code >= 0 && code < (int)(sizeof(code_names) / sizeof(code_names[0])))
		return code_names[code];
	return "UNKNOWN";
}

static gpr_timespec deadline_after(int64_t ms)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ---- completion ---------------------------------------------------------- */

static void call_free(struct zcall *c)
{
	grpc_metadata_array_destroy(&c->initial);
	grpc_metadata_array_destroy(&c->trailing);
	grpc_slice_unref(c->details);
	if (c->request)
		grpc_byte_buffer_destroy(c->request);
	if (c->response)
		grpc_byte_buffer_destroy(c->response);
	grpc_slice_unref(c->md.value); /* zeroed (empty) when no token was used */
	if (c->call)
		grpc_call_unref(c->call);
	free(c);
}

/* Caller holds zb->lock. */
static void live_remove(struct zeebe *zb, struct zcall *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		zb->live = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

/* The gateway's status details, as text we may log: bounded, anything
 * token-like masked (a gateway may echo the Authorization header). */
static void peer_text(grpc_slice s, char *out, size_t len)
{
	char raw[1024];
	size_t n = GRPC_SLICE_LENGTH(s);

	if (n >= sizeof(raw))
		n = sizeof(raw) - 1;
	memcpy(raw, GRPC_SLICE_START_PTR(s), n);
	raw[n] = '\0';
	redact(out, len, raw);
}

/* Did an UNAVAILABLE come from the gateway, or from not reaching it
 * (refused, DNS, TLS handshake)? gRPC core says so in its own words. */
static bool not_reached(struct zeebe *zb, int code, const char *details)
{
	if (code != ZEEBE_UNAVAILABLE)
		return false;
	return grpc_channel_check_connectivity_state(zb->channel, 0) ==
		       GRPC_CHANNEL_TRANSIENT_FAILURE ||
	       strcasestr(details, "failed to connect") || strstr(details, "DNS resolution failed") ||
	       strstr(details, "Connection refused");
}

/* The one place that reports reaching or not reaching the gateway, once per
 * change. Rewrites DETAILS (size LEN) into our words when not reached. */
static void note_reachability(struct zeebe *zb, int code, char *details, size_t len)
{
	bool down = not_reached(zb, code, details);
	bool was;

	pthread_mutex_lock(&zb->lock);
	was = zb->unreachable;
	zb->unreachable = down;
	pthread_mutex_unlock(&zb->lock);
	if (down) {
		char reason[600], prefix[300];
		size_t p, r;

		snprintf(reason, sizeof(reason), "%s", *details ? details : "unavailable");
		snprintf(prefix, sizeof(prefix), "cannot reach %s: ", zb->address);
		p = strlen(prefix) < len ? strlen(prefix) : len - 1;
		r = strlen(reason) < len - 1 - p ? strlen(reason) : len - 1 - p;
		memcpy(details, prefix, p);
		memcpy(details + p, reason, r);   /* cut: fine for a log line */
		details[p + r] = '\0';
		/* The operator's line is health.c's "[state] gateway unreachable"
		 * with these words; this one is for --log-level debug. */
		if (!was)
			log_debug("%s", details);
	} else if (was && code != ZEEBE_CANCELLED) {
		log_debug("gateway %s reached again", zb->address);
	}
}

/* Tell oauth what the gateway thought of the token. */
static void report_token(struct zeebe *zb, const struct zcall *c, int code)
{
	if (!zb->oauth)      /* with oauth, every call that started carried a token */
		return;
	if (code == ZEEBE_OK || code == ZEEBE_ALREADY_EXISTS)
		oauth_gateway_ok(zb->oauth);
	else if (code == ZEEBE_UNAUTHENTICATED)
		oauth_invalidate(zb->oauth, c->token_gen);
}

static void complete(struct zcall *c, bool ok)
{
	struct zeebe *zb = c->zb;
	char details[600];
	struct zeebe_result res = { 0 };

	if (ok)
		peer_text(c->details, details, sizeof(details));
	else
		snprintf(details, sizeof(details), "batch failed");
	res.code = ok ? (int)c->status : ZEEBE_UNAVAILABLE;
	note_reachability(zb, res.code, details, sizeof(details));
	res.details = details;
	res.token_gen = c->token_gen;
	report_token(zb, c, res.code);

	pthread_mutex_lock(&zb->lock);
	live_remove(zb, c);
	pthread_mutex_unlock(&zb->lock);

	c->done(c->arg, &res);
	call_free(c);

	pthread_mutex_lock(&zb->lock);
	zb->in_flight--;
	pthread_cond_broadcast(&zb->idle);
	pthread_mutex_unlock(&zb->lock);
}

static void *cq_thread(void *arg)
{
	struct zeebe *zb = arg;

	thread_name("m2z-grpc-cq");
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(zb->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			complete(ev.tag, ev.success != 0);
	}
	return NULL;
}

/* ---- calls --------------------------------------------------------------- */

/* The token for this call, as initial metadata. M2Z_ERR_AUTH when OAuth is
 * on and nothing is cached. */
static int attach_token(struct zeebe *zb, struct zcall *c)
{
	char value[AUTH_MAX];
	int rc;

	if (zb->basic) {
		c->md.key = grpc_slice_from_static_string("authorization");
		c->md.value = grpc_slice_from_copied_string(zb->basic);
		return M2Z_OK;
	}
	if (!zb->oauth)
		return M2Z_OK;
	rc = oauth_header(zb->oauth, value, sizeof(value), &c->token_gen);
	if (rc != M2Z_OK)
		return rc == M2Z_ERR_AGAIN || rc == M2Z_ERR_TOO_BIG ? M2Z_ERR_AUTH : rc;
	c->md.key = grpc_slice_from_static_string("authorization");
	c->md.value = grpc_slice_from_copied_string(value);
	memset(value, 0, sizeof(value));
	return M2Z_OK;
}

int zeebe_token_metadata(struct zeebe *zb, grpc_metadata *md, uint64_t *gen)
{
	struct zcall c = { 0 };
	int rc = attach_token(zb, &c);

	*md = c.md;
	*gen = c.token_gen;
	return rc;
}

grpc_channel *zeebe_channel(struct zeebe *zb)
{
	return zb->channel;
}

bool zeebe_closed(struct zeebe *zb)
{
	bool closed;

	pthread_mutex_lock(&zb->lock);
	closed = zb->closed;
	pthread_mutex_unlock(&zb->lock);
	return closed;
}

static int start_call(struct zeebe *zb, struct zcall *c)
{
	grpc_op ops[6];
	grpc_call_error err;

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = zb->oauth || zb->basic ? 1 : 0;
	ops[0].data.send_initial_metadata.metadata = zb->oauth || zb->basic ? &c->md : NULL;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = c->request;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &c->response;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing;
	ops[5].data.recv_status_on_client.status = &c->status;
	ops[5].data.recv_status_on_client.status_details = &c->details;
	err = grpc_call_start_batch(c->call, ops, 6, c, NULL);
	if (err != GRPC_CALL_OK) {
		log_err("cannot start a call: %s", grpc_call_error_to_string(err));
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

int zeebe_publish(struct zeebe *zb, const void *req, size_t len, zeebe_done_fn done, void *arg)
{
	return zeebe_call_unary(zb, "/gateway_protocol.Gateway/PublishMessage", req, len, done, arg);
}

int zeebe_call_unary(struct zeebe *zb, const char *method, const void *req, size_t len,
		     zeebe_done_fn done, void *arg)
{
	struct zcall *c = calloc(1, sizeof(*c));
	grpc_slice s;
	int rc;

	if (!c)
		return M2Z_ERR_NOMEM;
	c->zb = zb;
	c->done = done;
	c->arg = arg;
	c->details = grpc_empty_slice();
	grpc_metadata_array_init(&c->initial);
	grpc_metadata_array_init(&c->trailing);
	rc = attach_token(zb, c);
	if (rc != M2Z_OK) {
		call_free(c);
		return rc;
	}
	s = grpc_slice_from_copied_buffer(req, len);
	c->request = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);

	pthread_mutex_lock(&zb->lock);
	if (zb->closed) {
		pthread_mutex_unlock(&zb->lock);
		call_free(c);
		return M2Z_ERR_CLOSED;
	}
	c->call = grpc_channel_create_call(zb->channel, NULL, GRPC_PROPAGATE_DEFAULTS, zb->cq,
					   grpc_slice_from_static_string(method), NULL,
					   deadline_after(zb->deadline_ms), NULL);
	c->next = zb->live;
	if (zb->live)
		zb->live->prev = c;
	zb->live = c;
	zb->in_flight++;
	pthread_mutex_unlock(&zb->lock);

	if (start_call(zb, c) != M2Z_OK) {
		/* Never started: no completion will come. */
		pthread_mutex_lock(&zb->lock);
		live_remove(zb, c);
		zb->in_flight--;
		pthread_mutex_unlock(&zb->lock);
		call_free(c);
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

/* ---- Topology (blocking; --check-connection only) ------------------------- */

static void summarize(grpc_byte_buffer *bb, char *out, size_t len)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;
	GatewayProtocol__TopologyResponse *t;
	size_t parts = 0, healthy = 0;

	if (!bb || !grpc_byte_buffer_reader_init(&r, bb)) {
		snprintf(out, len, "empty response");
		return;
	}
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	t = gateway_protocol__topology_response__unpack(NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	if (!t) {
		snprintf(out, len, "undecodable TopologyResponse");
		return;
	}
	for (size_t b = 0; b < t->n_brokers; b++)
		for (size_t p = 0; p < t->brokers[b]->n_partitions; p++) {
			const GatewayProtocol__Partition *pa = t->brokers[b]->partitions[p];
			if (pa->role == GATEWAY_PROTOCOL__PARTITION__PARTITION_BROKER_ROLE__LEADER) {
				parts++;
				if (pa->health == GATEWAY_PROTOCOL__PARTITION__PARTITION_BROKER_HEALTH__HEALTHY)
					healthy++;
			}
		}
	snprintf(out, len, "gateway %s, %zu broker(s), %d partition(s), %zu leader(s), %zu healthy",
		 t->gatewayversion && t->gatewayversion[0] ? t->gatewayversion : "?", t->n_brokers,
		 t->partitionscount, parts, healthy);
	gateway_protocol__topology_response__free_unpacked(t, NULL);
}

int zeebe_topology(struct zeebe *zb, int64_t timeout_ms, char *summary, size_t len)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	struct zcall c;
	grpc_event ev;
	grpc_slice empty = grpc_empty_slice();
	int code;

	memset(&c, 0, sizeof(c));
	c.zb = zb;
	c.details = grpc_empty_slice();
	grpc_metadata_array_init(&c.initial);
	grpc_metadata_array_init(&c.trailing);
	if (attach_token(zb, &c) != M2Z_OK) {
		snprintf(summary, len, "no OAuth token");
		code = ZEEBE_UNAUTHENTICATED;
		goto out;
	}
	c.request = grpc_raw_byte_buffer_create(&empty, 1);
	c.call = grpc_channel_create_call(zb->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					  grpc_slice_from_static_string("/gateway_protocol.Gateway/Topology"),
					  NULL, deadline_after(timeout_ms), NULL);
	if (start_call(zb, &c) != M2Z_OK) {
		snprintf(summary, len, "cannot start the call");
		code = ZEEBE_INTERNAL;
		goto out;
	}
	ev = grpc_completion_queue_pluck(cq, &c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	code = ev.success ? (int)c.status : ZEEBE_UNAVAILABLE;
	if (code == ZEEBE_OK)
		summarize(c.response, summary, len);
	else
		peer_text(c.details, summary, len);
out:
	grpc_metadata_array_destroy(&c.initial);
	grpc_metadata_array_destroy(&c.trailing);
	grpc_slice_unref(c.details);
	grpc_slice_unref(c.md.value);
	if (c.request)
		grpc_byte_buffer_destroy(c.request);
	if (c.response)
		grpc_byte_buffer_destroy(c.response);
	if (c.call)
		grpc_call_unref(c.call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return code;
}

/* ---- lifecycle --------------------------------------------------------------- */

static char *read_pem(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f) {
		snprintf(err, errlen, "cannot read CA file %s", path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
	} else {
		free(buf);
		buf = NULL;
		snprintf(err, errlen, "cannot read CA file %s", path);
	}
	fclose(f);
	return buf;
}

static grpc_channel_credentials *make_creds(const struct zeebe_opts *o, char *err, size_t errlen)
{
	grpc_channel_credentials *creds;
	const char *path = o->ca_file && o->ca_file[0] ? o->ca_file : NULL;
	char *pem = NULL;

	if (o->insecure)
		return grpc_insecure_credentials_create();
	/* Without a CA file: the system trust store, which gRPC would
	 * otherwise take from its own bundled roots. */
	if (!path && access(SYSTEM_CA_FILE, R_OK) == 0)
		path = SYSTEM_CA_FILE;
	if (path && !(pem = read_pem(path, err, errlen)))
		return NULL;
	creds = grpc_ssl_credentials_create(pem, NULL, NULL, NULL);
	free(pem);
	if (!creds)
		snprintf(err, errlen, "cannot create TLS credentials");
	return creds;
}

/* gRPC core logs on its own (a bad CA file dumps raw "E1129 ... Got args:
 * {grpc.client_channel_factory=0x...}" lines). Its errors become one warn
 * line of ours (the argument dump cut off) at most every 30 s, with a count
 * of those held back; the rest goes to debug. The failure itself reaches
 * the operator as the gateway's state line (health.c). */
static void grpc_log(gpr_log_func_args *a)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t last;
	static unsigned held;
	const char *msg = a->message ? a->message : "";
	int n = (int)strcspn(msg, "\r\n");
	const char *args = strstr(msg, " Got args:");
	int64_t now;

	if (args && args - msg < n)
		n = (int)(args - msg);
	if (n > 240)
		n = 240;
	if (a->severity != GPR_LOG_SEVERITY_ERROR) {
		log_debug("gRPC core: %.*s", n, msg);
		return;
	}
	now = mono_ms();
	pthread_mutex_lock(&lock);
	if (last && now - last < 30000) {
		held++;
		pthread_mutex_unlock(&lock);
		log_debug("gRPC core: %.*s", n, msg);
		return;
	}
	last = now;
	if (held)
		log_warn("gRPC core: %.*s (%u similar line(s) held back; --log-level debug shows them)",
			 n, msg, held);
	else
		log_warn("gRPC core: %.*s", n, msg);
	held = 0;
	pthread_mutex_unlock(&lock);
}

void zeebe_process_init(void)
{
	setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "0", 0);
}

int zeebe_new(const struct zeebe_opts *o, struct zeebe **out, char *err, size_t errlen)
{
	struct zeebe *zb;
	grpc_channel_credentials *creds;
	grpc_arg args[10];
	grpc_channel_args cargs;
	size_t n = 0;

	gpr_set_log_function(grpc_log);
	grpc_init();
	creds = make_creds(o, err, errlen);
	if (!creds) {
		grpc_shutdown();
		return M2Z_ERR_TLS;
	}
	zb = calloc(1, sizeof(*zb));
	if (!zb) {
		grpc_channel_credentials_release(creds);
		grpc_shutdown();
		return M2Z_ERR_NOMEM;
	}
#define ARG_INT(k, v) (args[n].type = GRPC_ARG_INTEGER, args[n].key = (char *)(k), args[n++].value.integer = (int)(v))
#define ARG_STR(k, v) (args[n].type = GRPC_ARG_STRING, args[n].key = (char *)(k), args[n++].value.string = (char *)(v))
	ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, o->keepalive_ms);
	ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
	ARG_INT(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
	ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, o->max_message_size);
	ARG_INT(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, o->max_message_size);
	ARG_STR(GRPC_ARG_PRIMARY_USER_AGENT_STRING, o->user_agent);
	ARG_INT(GRPC_ARG_ENABLE_RETRIES, 0); /* the forwarder retries, per record */
	ARG_INT(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 1000);
	ARG_INT(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000); /* notice a returning gateway soon */
	if (o->authority && o->authority[0])
		ARG_STR(GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, o->authority);
#undef ARG_INT
#undef ARG_STR
	cargs.num_args = n;
	cargs.args = args;
	zb->channel = grpc_channel_create(o->address, creds, &cargs);
	grpc_channel_credentials_release(creds);
	zb->cq = grpc_completion_queue_create_for_next(NULL);
	zb->method = grpc_slice_from_static_string("/gateway_protocol.Gateway/PublishMessage");
	zb->deadline_ms = o->deadline_ms;
	zb->oauth = o->oauth;
	snprintf(zb->address, sizeof(zb->address), "%s", o->address);
	pthread_mutex_init(&zb->lock, NULL);
	pthread_cond_init(&zb->idle, NULL);
	if (o->basic_auth && o->basic_auth[0] && !(zb->basic = strdup(o->basic_auth))) {
		snprintf(err, errlen, "out of memory");
		zeebe_free(zb);
		return M2Z_ERR_NOMEM;
	}
	if (pthread_create(&zb->thread, NULL, cq_thread, zb) != 0) {
		snprintf(err, errlen, "cannot start the completion thread");
		zeebe_free(zb);
		return M2Z_ERR_NOMEM;
	}
	zb->thread_started = true;
	log_info("gateway %s over %s%s%s", o->address, o->insecure ? "plaintext" : "TLS",
		 o->oauth ? ", OAuth bearer token" : zb->basic ? ", basic authentication" : ", no token",
		 o->insecure && (o->oauth || zb->basic) ? " (the credentials travel in clear)" : "");
	*out = zb;
	return M2Z_OK;
}

static bool wait_idle(struct zeebe *zb, int64_t ms)
{
	gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
	struct timespec ts = { (time_t)until.tv_sec, until.tv_nsec };
	bool idle;

	pthread_mutex_lock(&zb->lock);
	while (zb->in_flight > 0 && ms > 0)
		if (pthread_cond_timedwait(&zb->idle, &zb->lock, &ts) != 0)
			break;
	idle = zb->in_flight == 0;
	pthread_mutex_unlock(&zb->lock);
	return idle;
}

void zeebe_shutdown(struct zeebe *zb, int64_t grace_ms)
{
	pthread_mutex_lock(&zb->lock);
	zb->closed = true;
	pthread_mutex_unlock(&zb->lock);
	if (wait_idle(zb, grace_ms))
		return;
	pthread_mutex_lock(&zb->lock);
	for (struct zcall *c = zb->live; c; c = c->next)
		grpc_call_cancel(c->call, NULL);
	pthread_mutex_unlock(&zb->lock);
	/* Cancelled calls complete promptly with CANCELLED. */
	wait_idle(zb, 10000);
}

void zeebe_free(struct zeebe *zb)
{
	if (!zb)
		return;
	if (zb->thread_started) {
		zeebe_shutdown(zb, 0);
		grpc_completion_queue_shutdown(zb->cq);
		pthread_join(zb->thread, NULL);
	} else {
		grpc_completion_queue_shutdown(zb->cq);
		while (grpc_completion_queue_next(zb->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
	}
	grpc_completion_queue_destroy(zb->cq);
	grpc_channel_destroy(zb->channel);
	pthread_mutex_destroy(&zb->lock);
	pthread_cond_destroy(&zb->idle);
	if (zb->basic) {
		explicit_bzero(zb->basic, strlen(zb->basic));
		free(zb->basic);
	}
	free(zb);
	grpc_shutdown();
}
