/* worker.c - jobs -> MQTT commands -> completion; see worker.h.
 *
 * Threads: one activation thread per worker (it also runs the timers), the
 * MQTT thread (publish acknowledgements, replies) and the gateway's
 * completion thread (results of the job commands). One lock over all
 * workers guards every job slot; it is held across mqtt_in_publish_mid()
 * so an acknowledgement never overtakes the mid it belongs to. */
#define LOG_MODULE "worker"
#include "worker.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "log.h"
#include "mqtt_in.h"
#include "oauth.h"
#include "route.h"
#include "util.h"
#include "zeebe_jobs.h"

#define TICK_MS 100
#define IDLE_TICK_MS 30000
#define CALL_RETRY_MIN_MS 100
#define CALL_RETRY_MAX_MS 5000
#define POLL_BACKOFF_MAX_MS 5000
#define MSG_MAX 512
#define MQTT_MAX_TOPIC 65535        /* a two-byte length on the wire */

enum jstate {
	J_FREE,
	J_ACK,      /* published, waiting for the broker's acknowledgement */
	J_REPLY,    /* acknowledged, waiting for the device's reply */
	J_CALL,     /* a job command is in flight */
	J_RETRY,    /* the job command waits to be sent again */
};

enum jcall { C_COMPLETE, C_FAIL, C_THROW };

struct job {
	struct worker *w;
	enum jstate st;
	int64_t key;
	int32_t retries;
	int mid;
	int64_t reply_until;        /* mono ms */
	char *reply_topic;          /* malloc'ed; request_reply */
	/* the job command, kept for retries */
	enum jcall call;
	int32_t fail_retries;
	int64_t backoff_ms;
	char *vars;                 /* malloc'ed or NULL */
	char *code;                 /* malloc'ed or NULL */
	char msg[MSG_MAX];
	int64_t retry_at;           /* mono ms, J_RETRY */
	int64_t retry_delay;
};

struct worker {
	struct workers *ws;
	const struct conf_worker *cw;
	const char *name;           /* worker name sent to the gateway */
	struct doc_tmpl *topic, *payload, *reply;
	char *reply_filter;         /* subscription for the replies */
	char **fetch, **tenants;    /* split comma lists */
	size_t n_fetch, n_tenants;
	struct job *jobs;           /* max_jobs_active slots */
	size_t in_hand;             /* slots not J_FREE */
	bool connected;             /* as last seen by the thread */
	struct worker_stats st;
	pthread_t thread;
	bool thread_started;
	struct zeebe_poll_slot slot;    /* a stop cancels the running poll */
	struct render_buf rb;       /* activation thread only */
	struct buf topic_buf, payload_buf, reply_buf;
};

struct workers {
	const struct config *cfg;
	struct worker *w;
	size_t n;
	struct mqtt_in *mi;
	struct zeebe *zb;
	struct oauth *oauth;        /* may be NULL */
	int64_t request_timeout_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;        /* CLOCK_MONOTONIC; a slot was freed; stop requested */
	bool stopping;
};

/* ---- compiling ------------------------------------------------------------------- */

static int split_list(const char *s, char ***out, size_t *n)
{
	char *copy = strdup(s), *tok, *save = NULL;

	*out = NULL;
	*n = 0;
	if (!copy)
		return M2Z_ERR_NOMEM;
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char **v = realloc(*out, (*n + 1) * sizeof(*v));
		if (!v || !(v[*n] = strdup(tok))) {
			if (v)
				*out = v;
			free(copy);
			return M2Z_ERR_NOMEM;
		}
		*out = v;
		(*n)++;
	}
	free(copy);
	return M2Z_OK;
}

/* A topic template: a fixed first level (literal prefix with a '/'), no
 * wildcard in the literal text. */
static bool topic_tmpl_ok(const char *src, const struct doc_tmpl *t, char *why, size_t len)
{
	const char *lit;
	size_t n = doc_tmpl_prefix(t, &lit);
	int depth = 0;

	if (!memchr(lit, '/', n)) {
		snprintf(why, len, "must start with a fixed topic level, like devices/{/variables/id}/cmd");
		return false;
	}
	for (const char *p = src; *p; p++) {
		depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
		if (depth == 0 && (*p == '+' || *p == '#')) {
			snprintf(why, len, "'+' and '#' are not allowed in a topic to publish to");
			return false;
		}
	}
	return true;
}

/* End of the topic level at P: the next '/' outside {...}. */
static const char *level_end(const char *p)
{
	int depth = 0;

	for (; *p; p++) {
		if (*p == '{')
			depth++;
		else if (*p == '}' && depth > 0)
			depth--;
		else if (*p == '/' && depth == 0)
			break;
	}
	return p;
}

/* The reply subscription: each level holding an expression becomes '+'.
 * {/key} must be one whole level, so a reply names its job. */
static int reply_filter(const char *src, char **out, char *why, size_t len)
{
	struct buf b = BUF_INIT;
	bool has_key = false;
	const char *p = src;

	for (;;) {
		const char *end = level_end(p);
		size_t n = (size_t)(end - p);
		if (n == 6 && memcmp(p, "{/key}", 6) == 0)
			has_key = true;
		if (memchr(p, '{', n) ? buf_putc(&b, '+') : buf_append(&b, p, n))
			goto oom;
		if (!*end)
			break;
		if (buf_putc(&b, '/'))
			goto oom;
		p = end + 1;
	}
	if (!has_key) {
		snprintf(why, len, "must contain {/key} as a whole level, like devices/{/variables/id}/reply/{/key}");
		buf_free(&b);
		return M2Z_ERR_CONFIG;
	}
	*out = b.p;
	return M2Z_OK;
oom:
	buf_free(&b);
	snprintf(why, len, "out of memory");
	return M2Z_ERR_NOMEM;
}

static int worker_compile(const struct config *cfg, const struct conf_worker *cw, struct worker *w,
			  char *err, size_t errlen)
{
	char why[512];
	int rc, line = cw->topic_line;
	const char *field = "topic";

	w->cw = cw;
	w->name = cw->worker_name[0] ? cw->worker_name : cfg->mqtt.client_id;
	rc = doc_tmpl_new("topic", cw->topic, &w->topic, why, sizeof(why));
	if (!rc && !topic_tmpl_ok(cw->topic, w->topic, why, sizeof(why)))
		rc = M2Z_ERR_CONFIG;
	if (!rc) {
		field = "payload";
		line = cw->payload_line;
		rc = doc_tmpl_new("payload", cw->payload, &w->payload, why, sizeof(why));
	}
	if (!rc && cw->mode == WORKER_REQUEST_REPLY) {
		field = "reply_topic";
		line = cw->reply_topic_line;
		rc = doc_tmpl_new("reply_topic", cw->reply_topic, &w->reply, why, sizeof(why));
		if (!rc && !topic_tmpl_ok(cw->reply_topic, w->reply, why, sizeof(why)))
			rc = M2Z_ERR_CONFIG;
		if (!rc)
			rc = reply_filter(cw->reply_topic, &w->reply_filter, why, sizeof(why));
	}
	if (rc) {
		snprintf(err, errlen, "%s:%d: [worker %s] %s: %s", cfg->path, line ? line : cw->line, cw->name,
			 field, why);
		return rc;
	}
	w->jobs = calloc((size_t)cw->max_jobs_active, sizeof(*w->jobs));
	if (!w->jobs || split_list(cw->fetch_variables, &w->fetch, &w->n_fetch) ||
	    split_list(cw->tenant_ids, &w->tenants, &w->n_tenants)) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return M2Z_ERR_NOMEM;
	}
	for (int i = 0; i < cw->max_jobs_active; i++)
		w->jobs[i].w = w;
	return M2Z_OK;
}

int workers_new(const struct config *cfg, struct workers **out, char *err, size_t errlen)
{
	struct workers *ws = calloc(1, sizeof(*ws));
	int rc;

	*out = NULL;
	if (!ws || !(ws->w = calloc(cfg->n_workers ? cfg->n_workers : 1, sizeof(*ws->w)))) {
		free(ws);
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return M2Z_ERR_NOMEM;
	}
	ws->cfg = cfg;
	pthread_mutex_init(&ws->lock, NULL);
	cond_init_monotonic(&ws->cond);
	for (size_t i = 0; i < cfg->n_workers; i++) {
		ws->n = i + 1;
		ws->w[i].ws = ws;
		zeebe_poll_slot_init(&ws->w[i].slot);
		if ((rc = worker_compile(cfg, &cfg->workers[i], &ws->w[i], err, errlen))) {
			workers_free(ws);
			return rc;
		}
	}
	ws->n = cfg->n_workers;
	*out = ws;
	return M2Z_OK;
}

size_t workers_count(const struct workers *ws)
{
	return ws ? ws->n : 0;
}

void workers_print(const struct workers *ws, FILE *f)
{
	for (size_t i = 0; ws && i < ws->n; i++) {
		const struct worker *w = &ws->w[i];
		const struct conf_worker *cw = w->cw;
		fprintf(f, "worker %s: job type '%s' as '%s', up to %d job(s), timeout %" PRId64 "ms\n",
			cw->name, cw->job_type, w->name, cw->max_jobs_active, cw->timeout_ms);
		fprintf(f, "  -> publish %s (QoS %d%s) payload %s\n", cw->topic, cw->qos,
			cw->retain ? ", retained" : "", cw->payload);
		if (cw->mode == WORKER_REQUEST_REPLY)
			fprintf(f, "  <- reply on %s (subscribed as %s) within %" PRId64 "ms\n", cw->reply_topic,
				w->reply_filter, cw->reply_timeout_ms);
		else
			fprintf(f, "  <- complete on the broker's acknowledgement\n");
	}
}

/* ---- job commands (caller holds ws->lock) ------------------------------------------ */

static void slot_free(struct job *j)
{
	struct worker *w = j->w;

	free(j->reply_topic);
	free(j->vars);
	free(j->code);
	j->reply_topic = j->vars = j->code = NULL;
	j->st = J_FREE;
	w->in_hand--;
	pthread_cond_broadcast(&w->ws->cond);
}

static void call_done(void *arg, const struct zeebe_result *res);

static const char *call_name(enum jcall c)
{
	return c == C_COMPLETE ? "CompleteJob" : c == C_FAIL ? "FailJob" : "ThrowError";
}

static void retry_later(struct job *j)
{
	j->retry_delay = j->retry_delay ? j->retry_delay * 2 : CALL_RETRY_MIN_MS;
	if (j->retry_delay > CALL_RETRY_MAX_MS)
		j->retry_delay = CALL_RETRY_MAX_MS;
	j->retry_at = mono_ms() + j->retry_delay;
	j->st = J_RETRY;
}

static void send_call(struct job *j)
{
	struct zeebe *zb = j->w->ws->zb;
	int rc;

	j->st = J_CALL;
	switch (j->call) {
	case C_COMPLETE:
		rc = zeebe_complete_job(zb, j->key, j->vars, call_done, j);
		break;
	case C_FAIL:
		rc = zeebe_fail_job(zb, j->key, j->fail_retries, j->msg, j->backoff_ms, call_done, j);
		break;
	default:
		rc = zeebe_throw_error(zb, j->key, j->code, j->msg, call_done, j);
		break;
	}
	if (rc == M2Z_ERR_CLOSED) {
		log_warn("job %" PRId64 ": gateway client closed, %s not sent", j->key, call_name(j->call));
		j->w->st.lost++;
		slot_free(j);
	} else if (rc != M2Z_OK) {
		retry_later(j);
	}
}

static void finish(struct job *j, enum jcall call, const char *vars, const char *code,
		   int32_t retries, int64_t backoff_ms, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

/* Start the job command that ends this job (VARS/CODE copied). */
static void finish(struct job *j, enum jcall call, const char *vars, const char *code,
		   int32_t retries, int64_t backoff_ms, const char *fmt, ...)
{
	va_list ap;

	j->call = call;
	j->fail_retries = retries;
	j->backoff_ms = backoff_ms;
	j->retry_delay = 0;
	j->vars = vars ? strdup(vars) : NULL;
	j->code = code ? strdup(code) : NULL;
	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	if ((vars && !j->vars) || (code && !j->code)) {
		log_err("job %" PRId64 ": out of memory", j->key);
		j->w->st.lost++;
		slot_free(j);
		return;
	}
	send_call(j);
}

static bool retryable(int code)
{
	return code == ZEEBE_UNAVAILABLE || code == ZEEBE_RESOURCE_EXHAUSTED ||
	       code == ZEEBE_DEADLINE_EXCEEDED || code == ZEEBE_UNAUTHENTICATED;
}

/* The gateway's completion thread. */
static void call_done(void *arg, const struct zeebe_result *res)
{
	struct job *j = arg;
	struct worker *w = j->w;

	pthread_mutex_lock(&w->ws->lock);
	if (res->code == ZEEBE_OK) {
		if (j->call == C_COMPLETE)
			w->st.completed++;
		else if (j->call == C_FAIL)
			w->st.failed++;
		else
			w->st.errors_thrown++;
		log_debug("[worker %s] job %" PRId64 ": %s done", w->cw->name, j->key, call_name(j->call));
		slot_free(j);
	} else if (retryable(res->code) && !(w->ws->stopping && res->code == ZEEBE_DEADLINE_EXCEEDED)) {
		if (res->code == ZEEBE_UNAUTHENTICATED && w->ws->oauth)
			oauth_invalidate(w->ws->oauth, res->token_gen);
		log_debug("[worker %s] job %" PRId64 ": %s: %s (%s), retrying", w->cw->name, j->key,
			  call_name(j->call), zeebe_code_name(res->code), res->details);
		retry_later(j);
	} else if (res->code == ZEEBE_NOT_FOUND) {
		log_warn("[worker %s] job %" PRId64 " no longer exists (timed out or cancelled): %s dropped",
			 w->cw->name, j->key, call_name(j->call));
		w->st.lost++;
		slot_free(j);
	} else {
		log_err("[worker %s] job %" PRId64 ": %s rejected: %s (%s)", w->cw->name, j->key,
			call_name(j->call), zeebe_code_name(res->code), res->details);
		w->st.lost++;
		slot_free(j);
	}
	pthread_mutex_unlock(&w->ws->lock);
}

/* ---- a new job (activation thread) ------------------------------------------------- */

static cJSON *add_key(cJSON *doc, const char *name, int64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%" PRId64, v);
	return cJSON_AddStringToObject(doc, name, b);
}

static void add_json(cJSON *doc, const char *name, const char *text)
{
	cJSON *v = cJSON_Parse(text && *text ? text : "{}");

	if (!v)
		v = cJSON_CreateObject();
	cJSON_AddItemToObject(doc, name, v);
}

static cJSON *job_doc(const struct zeebe_job *jb)
{
	cJSON *d = cJSON_CreateObject();

	if (!d)
		return NULL;
	add_key(d, "key", jb->key);
	cJSON_AddStringToObject(d, "type", jb->type);
	add_key(d, "processInstanceKey", jb->process_instance_key);
	add_key(d, "processDefinitionKey", jb->process_definition_key);
	cJSON_AddNumberToObject(d, "processDefinitionVersion", jb->process_definition_version);
	cJSON_AddStringToObject(d, "bpmnProcessId", jb->bpmn_process_id);
	cJSON_AddStringToObject(d, "elementId", jb->element_id);
	add_key(d, "elementInstanceKey", jb->element_instance_key);
	cJSON_AddStringToObject(d, "tenantId", jb->tenant_id);
	cJSON_AddStringToObject(d, "worker", jb->worker);
	cJSON_AddNumberToObject(d, "retries", jb->retries);
	cJSON_AddNumberToObject(d, "deadline", (double)jb->deadline);
	add_json(d, "customHeaders", jb->custom_headers);
	add_json(d, "variables", jb->variables);
	return d;
}

/* True when the JSON text S holds the escape \u0000 (not "\\u0000", a
 * backslash then "u0000"): cJSON would cut that string at the NUL. */
static bool has_nul_escape(const char *s)
{
	for (const char *p = s ? strstr(s, "\\u0000") : NULL; p; p = strstr(p + 1, "\\u0000")) {
		size_t bs = 0;
		while (p - bs > s && *(p - bs - 1) == '\\')
			bs++;
		if (bs % 2 == 0)
			return true;
	}
	return false;
}

/* Render topic, payload and reply topic into W's buffers; REASON on error. */
static int render_job(struct worker *w, const struct zeebe_job *jb, char *reason, size_t len)
{
	cJSON *doc;
	int rc;

	if (has_nul_escape(jb->variables) || has_nul_escape(jb->custom_headers)) {
		snprintf(reason, len, "the job's variables or headers hold a string with \\u0000 (NUL), "
			 "which cannot be passed on unchanged");
		return M2Z_ERR_INVAL;
	}
	doc = job_doc(jb);
	if (!doc) {
		snprintf(reason, len, "out of memory");
		return M2Z_ERR_NOMEM;
	}
	rc = doc_tmpl_render(w->topic, doc, DOC_TMPL_TOPIC, &w->rb, &w->topic_buf, reason, len);
	if (!rc)
		rc = doc_tmpl_render(w->payload, doc, 0, &w->rb, &w->payload_buf, reason, len);
	if (!rc && w->reply)
		rc = doc_tmpl_render(w->reply, doc, DOC_TMPL_TOPIC, &w->rb, &w->reply_buf, reason, len);
	if (!rc && (w->topic_buf.len > MQTT_MAX_TOPIC || (w->reply && w->reply_buf.len > MQTT_MAX_TOPIC))) {
		snprintf(reason, len, "%s: %zu bytes, above MQTT's limit of %d bytes for a topic",
			 w->topic_buf.len > MQTT_MAX_TOPIC ? "topic" : "reply_topic",
			 w->topic_buf.len > MQTT_MAX_TOPIC ? w->topic_buf.len : w->reply_buf.len, MQTT_MAX_TOPIC);
		rc = M2Z_ERR_TOO_BIG;
	}
	if (!rc && w->payload_buf.len > w->cw->max_payload) {
		snprintf(reason, len, "payload: %zu bytes, above max_payload (%" PRIu64 ")", w->payload_buf.len,
			 w->cw->max_payload);
		rc = M2Z_ERR_TOO_BIG;
	}
	cJSON_Delete(doc);
	return rc;
}

static struct job *free_slot(struct worker *w)
{
	for (int i = 0; i < w->cw->max_jobs_active; i++)
		if (w->jobs[i].st == J_FREE)
			return &w->jobs[i];
	return NULL;
}

static void take_job(struct worker *w, struct job *j, const struct zeebe_job *jb)
{
	const struct conf_worker *cw = w->cw;
	char reason[400];
	int rc;

	j->key = jb->key;
	j->retries = jb->retries;
	j->st = J_CALL;
	w->in_hand++;
	w->st.activated++;
	if (render_job(w, jb, reason, sizeof(reason)) != M2Z_OK) {
		log_warn("[worker %s] job %" PRId64 " cannot become a command: %s", cw->name, jb->key, reason);
		w->st.bad_jobs++;
		finish(j, C_FAIL, NULL, NULL, 0, 0, "mqtt2zeebe: %s", reason);
		return;
	}
	if (w->reply && !(j->reply_topic = strdup(w->reply_buf.p))) {
		finish(j, C_FAIL, NULL, NULL, jb->retries, cw->retry_backoff_ms, "mqtt2zeebe: out of memory");
		return;
	}
	rc = mqtt_in_connected(w->ws->mi) ? mqtt_in_publish_mid(w->ws->mi, w->topic_buf.p, w->payload_buf.p,
								w->payload_buf.len, cw->qos, cw->retain, &j->mid)
					  : M2Z_ERR_NET;
	if (rc == M2Z_ERR_INVAL) { /* the same job would be refused again: data, not a network error */
		w->st.bad_jobs++;
		finish(j, C_FAIL, NULL, NULL, 0, 0, "mqtt2zeebe: the MQTT library refused the command "
		       "(topic or payload malformed or too large), not sent");
		return;
	}
	if (rc != M2Z_OK) {
		finish(j, C_FAIL, NULL, NULL, jb->retries, cw->retry_backoff_ms,
		       "mqtt2zeebe: MQTT broker not connected, command not sent");
		return;
	}
	j->st = J_ACK;
	/* publish mode: a PUBACK that never comes frees the slot at the job
	 * timeout (Zeebe hands the job out again by then). */
	j->reply_until = mono_ms() + (cw->mode == WORKER_REQUEST_REPLY ? cw->reply_timeout_ms : cw->timeout_ms);
	log_debug("[worker %s] job %" PRId64 " -> %s (mid %d)", cw->name, jb->key, w->topic_buf.p, j->mid);
}

static void on_job(void *arg, const struct zeebe_job *jb)
{
	struct worker *w = arg;
	struct job *j;

	pthread_mutex_lock(&w->ws->lock);
	j = free_slot(w);
	if (j) {
		take_job(w, j, jb);
	} else {
		/* The gateway sent more than asked: it comes back after its timeout. */
		log_warn("[worker %s] job %" PRId64 " over max_jobs_active: left to time out", w->cw->name, jb->key);
		w->st.lost++;
	}
	pthread_mutex_unlock(&w->ws->lock);
}

/* ---- MQTT thread: acknowledgements and replies ------------------------------------- */

static void on_publish(void *arg, int mid)
{
	struct workers *ws = arg;

	pthread_mutex_lock(&ws->lock);
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		for (int k = 0; k < w->cw->max_jobs_active; k++) {
			struct job *j = &w->jobs[k];
			if (j->st != J_ACK || j->mid != mid)
				continue;
			if (w->cw->mode == WORKER_PUBLISH)
				finish(j, C_COMPLETE, NULL, NULL, 0, 0, "published");
			else
				j->st = J_REPLY;
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&ws->lock);
}

static char *text_of(const cJSON *v)
{
	return cJSON_IsString(v) ? strdup(v->valuestring) : cJSON_PrintUnformatted(v);
}

/* A reply that is not JSON: its text, or base64 when it is not UTF-8 text
 * (*BINARY set), as routes do with such payloads. */
static cJSON *text_value(const void *payload, size_t len, bool *binary)
{
	char *s;
	cJSON *v;

	*binary = memchr(payload, '\0', len) || !utf8_valid(payload, len);
	s = *binary ? base64_encode(payload, len) : strndup(payload, len);
	v = s ? cJSON_CreateString(s) : NULL;
	free(s);
	return v;
}

/* The completion variables for a reply: an object merged, or under a name. */
static char *reply_vars(const struct conf_worker *cw, cJSON *root, const void *payload, size_t len)
{
	const char *name = cw->reply_variable[0] ? cw->reply_variable : "reply";
	cJSON *doc, *v;
	char *out;
	bool binary = false;

	if (root && cJSON_IsObject(root) && !cw->reply_variable[0])
		return cJSON_PrintUnformatted(root);
	doc = cJSON_CreateObject();
	v = root ? cJSON_Duplicate(root, 1) : text_value(payload, len, &binary);
	if (!doc || !v) {
		cJSON_Delete(doc);
		cJSON_Delete(v);
		return NULL;
	}
	cJSON_AddItemToObject(doc, name, v);
	if (binary) {
		char enc[300];
		snprintf(enc, sizeof(enc), "%sEncoding", name);
		cJSON_AddStringToObject(doc, enc, "base64");
	}
	out = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	return out;
}

static bool is_error_reply(const struct conf_worker *cw, cJSON *root)
{
	cJSON *v;
	char *s;
	bool yes;

	if (!cw->error_pointer[0] || !root)
		return false;
	v = json_pointer_get(root, cw->error_pointer, strlen(cw->error_pointer));
	if (!v)
		return false;
	s = text_of(v);
	yes = s && strcmp(s, cw->error_value) == 0;
	free(s);
	return yes;
}

static void handle_reply(struct job *j, const void *payload, size_t len)
{
	const struct conf_worker *cw = j->w->cw;
	cJSON *root = utf8_valid(payload, len) ? cJSON_ParseWithLength(payload, len) : NULL;
	char *vars, *msg = NULL;

	if (is_error_reply(cw, root)) {
		cJSON *m = cw->error_message_pointer[0]
			   ? json_pointer_get(root, cw->error_message_pointer, strlen(cw->error_message_pointer))
			   : NULL;
		msg = m ? text_of(m) : strndup(payload, len);
		finish(j, C_THROW, NULL, cw->error_code, 0, 0, "%s", msg ? msg : "error reply");
		free(msg);
	} else if ((vars = reply_vars(cw, root, payload, len))) {
		finish(j, C_COMPLETE, vars, NULL, 0, 0, "reply");
		free(vars);
	} else {
		finish(j, C_FAIL, NULL, NULL, j->retries, cw->retry_backoff_ms, "mqtt2zeebe: out of memory");
	}
	cJSON_Delete(root);
}

static void on_reply(void *arg, const char *topic, const void *payload, size_t len, int qos, bool retain)
{
	struct worker *w = arg;

	pthread_mutex_lock(&w->ws->lock);
	for (int k = 0; k < w->cw->max_jobs_active; k++) {
		struct job *j = &w->jobs[k];
		/* A reply may come before our PUBACK is handled. */
		if ((j->st == J_ACK || j->st == J_REPLY) && strcmp(j->reply_topic, topic) == 0) {
			handle_reply(j, payload, len);
			pthread_mutex_unlock(&w->ws->lock);
			return;
		}
	}
	pthread_mutex_unlock(&w->ws->lock);
	log_info("[worker %s] reply on %s matches no job in hand (late or repeated): ignored", w->cw->name, topic);
}

/* ---- timers and the activation loop (worker thread) -------------------------------- */

/* Caller holds the lock. */
static void fail_back_all(struct worker *w, const char *why, int64_t backoff_ms)
{
	for (int k = 0; w->jobs && k < w->cw->max_jobs_active; k++) {
		struct job *j = &w->jobs[k];
		if (j->st == J_ACK || j->st == J_REPLY)
			finish(j, C_FAIL, NULL, NULL, j->retries, backoff_ms, "mqtt2zeebe: %s", why);
	}
}

static void reply_timeout(struct job *j)
{
	const struct conf_worker *cw = j->w->cw;

	if (cw->mode == WORKER_PUBLISH) {
		log_warn("[worker %s] job %" PRId64 ": the broker did not acknowledge the command within the "
			 "job timeout; Zeebe hands the job out again", cw->name, j->key);
		j->w->st.lost++;
		slot_free(j);
		return;
	}
	j->w->st.timed_out++;
	log_warn("[worker %s] job %" PRId64 ": no reply on %s within %" PRId64 "ms", cw->name, j->key,
		 j->reply_topic, cw->reply_timeout_ms);
	if (cw->timeout_error_code[0])
		finish(j, C_THROW, NULL, cw->timeout_error_code, 0, 0, "no reply on %s within %" PRId64 "ms",
		       j->reply_topic, cw->reply_timeout_ms);
	else
		finish(j, C_FAIL, NULL, NULL, j->retries > 0 ? j->retries - 1 : 0, cw->retry_backoff_ms,
		       "no reply on %s within %" PRId64 "ms", j->reply_topic, cw->reply_timeout_ms);
}

/* Timers and connection changes. Caller holds the lock. */
static void housekeeping(struct worker *w)
{
	int64_t now = mono_ms();
	bool up = mqtt_in_connected(w->ws->mi);

	if (w->connected && !up) {
		log_warn("[worker %s] MQTT broker connection lost: failing back %zu job(s) in hand", w->cw->name,
			 w->in_hand);
		fail_back_all(w, "MQTT broker connection lost", w->cw->retry_backoff_ms);
	}
	w->connected = up;
	for (int k = 0; k < w->cw->max_jobs_active; k++) {
		struct job *j = &w->jobs[k];
		if (j->st == J_RETRY && now >= j->retry_at)
			send_call(j);
		else if ((j->st == J_ACK || j->st == J_REPLY) && now >= j->reply_until)
			reply_timeout(j);
	}
}

/* Called by zeebe_activate_jobs while it waits: < 0 cancels the poll,
 * otherwise the ms until the next call. Jobs in hand (reply timeouts,
 * command retries, a broker that goes away): every TICK_MS. None: only
 * every IDLE_TICK_MS, so an idle worker does not wake its thread ten
 * times a second (a stop cancels the poll through the slot).
 * Cancelled only on stop: a poll is not cancelled when the broker goes
 * away, since jobs the gateway activated just then would be lost until
 * their timeout; jobs that arrive while disconnected are failed back at
 * once instead. */
static int64_t tick(void *arg)
{
	struct worker *w = arg;
	int64_t next;

	pthread_mutex_lock(&w->ws->lock);
	housekeeping(w);
	next = w->ws->stopping ? -1 : w->in_hand > 0 ? TICK_MS : IDLE_TICK_MS;
	pthread_mutex_unlock(&w->ws->lock);
	return next;
}

/* Wait up to MS or until stop; runs the timers. Returns false on stop. */
static bool idle(struct worker *w, int64_t ms)
{
	int64_t until = mono_ms() + ms;
	bool go;

	pthread_mutex_lock(&w->ws->lock);
	while (!w->ws->stopping && mono_ms() < until) {
		struct timespec ts = mono_deadline(TICK_MS);
		pthread_cond_timedwait(&w->ws->cond, &w->ws->lock, &ts);
		housekeeping(w);
	}
	go = !w->ws->stopping;
	pthread_mutex_unlock(&w->ws->lock);
	return go;
}

static int32_t room(struct worker *w)
{
	int32_t n;

	pthread_mutex_lock(&w->ws->lock);
	housekeeping(w);
	n = w->connected && !w->ws->stopping ? (int32_t)((size_t)w->cw->max_jobs_active - w->in_hand) : 0;
	pthread_mutex_unlock(&w->ws->lock);
	return n;
}

static void *worker_thread(void *arg)
{
	struct worker *w = arg;
	const struct conf_worker *cw = w->cw;
	int64_t backoff = 0;
	char details[512];
	uint64_t gen = 0;

	thread_name("m2z-worker");
	while (!__atomic_load_n(&w->ws->stopping, __ATOMIC_ACQUIRE)) {
		int32_t n = room(w);
		struct zeebe_activate_req req = {
			.type = cw->job_type, .worker = w->name, .timeout_ms = cw->timeout_ms, .max_jobs = n,
			.fetch = (const char *const *)w->fetch, .n_fetch = w->n_fetch,
			.tenants = (const char *const *)w->tenants, .n_tenants = w->n_tenants,
			.request_timeout_ms = cw->poll_timeout_ms,
			.deadline_ms = cw->poll_timeout_ms + w->ws->request_timeout_ms,
		};
		int code;

		if (n <= 0) {
			idle(w, TICK_MS);
			continue;
		}
		code = zeebe_activate_jobs(w->ws->zb, &req, on_job, tick, w, &w->slot, details,
					   sizeof(details), &gen);
		if (code == ZEEBE_OK || code == ZEEBE_CANCELLED) {
			backoff = 0;
			continue;
		}
		if (code == M2Z_ERR_CLOSED)
			break;
		if (code == ZEEBE_UNAUTHENTICATED && w->ws->oauth) {
			log_info("[worker %s] gateway rejected the token (%s); fetching a new one", cw->name, details);
			oauth_invalidate(w->ws->oauth, gen);
		}
		backoff = backoff ? backoff_next_ms(backoff, POLL_BACKOFF_MAX_MS) : 250;
		if (code == M2Z_ERR_AUTH)
			log_debug("[worker %s] no OAuth token yet", cw->name);
		else if (backoff == 250 || backoff == POLL_BACKOFF_MAX_MS)
			log_warn("[worker %s] ActivateJobs: %s (%s); retrying", cw->name, zeebe_code_name(code),
				 details);
		idle(w, backoff);
	}
	return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

int workers_start(struct workers *ws, struct mqtt_in *mi, struct zeebe *zb, struct oauth *oauth,
		  int64_t request_timeout_ms)
{
	ws->mi = mi;
	ws->zb = zb;
	ws->oauth = oauth;
	ws->request_timeout_ms = request_timeout_ms;
	if (ws->n == 0)
		return M2Z_OK;
	mqtt_in_on_publish(mi, on_publish, ws);
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		if (w->reply_filter && mqtt_in_add_handler(mi, w->reply_filter, 1, on_reply, w) != M2Z_OK)
			return M2Z_ERR_NOMEM;
	}
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		if (pthread_create(&w->thread, NULL, worker_thread, w) != 0) {
			log_err("[worker %s] cannot start its thread", w->cw->name);
			return M2Z_ERR_NOMEM;
		}
		w->thread_started = true;
		log_info("[worker %s] working on job type '%s' as '%s' (%s)", w->cw->name, w->cw->job_type,
			 w->name, w->cw->mode == WORKER_PUBLISH ? "complete on publish" : "complete on reply");
	}
	return M2Z_OK;
}

static size_t all_in_hand(struct workers *ws)
{
	size_t n = 0;

	for (size_t i = 0; i < ws->n; i++)
		n += ws->w[i].in_hand;
	return n;
}

void workers_stop(struct workers *ws, int64_t grace_ms)
{
	int64_t until = mono_ms() + grace_ms;

	if (!ws || ws->n == 0)
		return;
	pthread_mutex_lock(&ws->lock);
	__atomic_store_n(&ws->stopping, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&ws->cond);
	pthread_mutex_unlock(&ws->lock);
	for (size_t i = 0; i < ws->n; i++)
		zeebe_poll_cancel(&ws->w[i].slot);
	for (size_t i = 0; i < ws->n; i++)
		if (ws->w[i].thread_started) {
			pthread_join(ws->w[i].thread, NULL);
			ws->w[i].thread_started = false;
		}
	pthread_mutex_lock(&ws->lock);
	for (size_t i = 0; i < ws->n; i++)
		fail_back_all(&ws->w[i], "agent stopping", 0);
	while (all_in_hand(ws) > 0 && mono_ms() < until) {
		struct timespec ts = mono_deadline(TICK_MS);
		pthread_cond_timedwait(&ws->cond, &ws->lock, &ts);
		for (size_t i = 0; i < ws->n; i++)
			for (int k = 0; k < ws->w[i].cw->max_jobs_active; k++)
				if (ws->w[i].jobs[k].st == J_RETRY && mono_ms() >= ws->w[i].jobs[k].retry_at)
					send_call(&ws->w[i].jobs[k]);
	}
	if (all_in_hand(ws) > 0)
		log_warn("%zu job(s) still in hand at exit: Zeebe hands them out again after their timeout",
			 all_in_hand(ws));
	pthread_mutex_unlock(&ws->lock);
}

void workers_get_stats(struct workers *ws, struct worker_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!ws)
		return;
	pthread_mutex_lock(&ws->lock);
	for (size_t i = 0; i < ws->n; i++) {
		const struct worker_stats *s = &ws->w[i].st;
		st->activated += s->activated;
		st->completed += s->completed;
		st->failed += s->failed;
		st->timed_out += s->timed_out;
		st->errors_thrown += s->errors_thrown;
		st->bad_jobs += s->bad_jobs;
		st->lost += s->lost;
	}
	pthread_mutex_unlock(&ws->lock);
}

static void worker_free(struct worker *w)
{
	zeebe_poll_slot_destroy(&w->slot);
	doc_tmpl_free(w->topic);
	doc_tmpl_free(w->payload);
	doc_tmpl_free(w->reply);
	free(w->reply_filter);
	for (size_t i = 0; i < w->n_fetch; i++)
		free(w->fetch[i]);
	free(w->fetch);
	for (size_t i = 0; i < w->n_tenants; i++)
		free(w->tenants[i]);
	free(w->tenants);
	for (int k = 0; w->jobs && k < w->cw->max_jobs_active; k++) {
		free(w->jobs[k].reply_topic);
		free(w->jobs[k].vars);
		free(w->jobs[k].code);
	}
	free(w->jobs);
	render_buf_free(&w->rb);
	buf_free(&w->topic_buf);
	buf_free(&w->payload_buf);
	buf_free(&w->reply_buf);
}

void workers_free(struct workers *ws)
{
	if (!ws)
		return;
	workers_stop(ws, 0);
	for (size_t i = 0; i < ws->n; i++)
		worker_free(&ws->w[i]);
	free(ws->w);
	pthread_mutex_destroy(&ws->lock);
	pthread_cond_destroy(&ws->cond);
	free(ws);
}
