/* conf.c - the INI configuration: one option table, a line reader,
 * file:line errors, environment overrides (Camunda's ZEEBE_* conventions),
 * defaults and cross-field checks. */
#define LOG_MODULE "conf"
#include "conf.h"

#include "credentials.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZEEBE_DEFAULT_HOST "127.0.0.1"
#define ZEEBE_DEFAULT_PORT "26500"
#define MAX_FILE_BYTES (1 << 20)
#define ROUTE_NAME_MAX 64
#define NO_PREFIX (-1)

/* ---- the option table ---------------------------------------------------- */

enum opt_type {
	T_STR,          /* char * */
	T_BOOL,         /* bool */
	T_INT,          /* int, decimal, range min..max */
	T_DUR,          /* int64_t ms, range min..max */
	T_DUR_S,        /* int seconds, written as a duration */
	T_SIZE64,       /* uint64_t bytes */
	T_SIZET,        /* size_t bytes */
	T_ENUM,         /* int index into names */
};

#define F_SECRET  1u    /* printed as *** */
#define F_ENV_OWN 2u    /* env handled by hand (address, insecure) */
#define F_REQUIRED 4u   /* route: must be given */

struct opt {
	const char *section;    /* "zeebe"... or "route" */
	const char *key;
	enum opt_type type;
	size_t off;             /* into struct config, or struct conf_route */
	int line_off;           /* route: offset of the *_line int, or -1 */
	const char *dflt;       /* parsed like a file value; NULL = "" */
	int64_t min, max;
	const char *const *names; /* T_ENUM */
	const char *env;
	unsigned flags;
	const char *help;
};

static const char *const sync_names[] = { "none", "group", "always", NULL };
static const char *const full_names[] = { "block", "drop_oldest", "reject_newest", NULL };
static const char *const vars_names[] = { "payload", "none", NULL };
static const char *const retained_names[] = { "skip", "forward", NULL };
static const char *const auth_names[] = { "auto", "oauth", "basic", "none", NULL };

/* Precedence inside the environment (and inside a credentials file): the
 * first name that is set wins. ZEEBE_HOST/ZEEBE_PORT form one address. */
#define ADDRESS_ENV "CAMUNDA_GRPC_ADDRESS ZEEBE_GRPC_ADDRESS ZEEBE_HOST ZEEBE_PORT ZEEBE_ADDRESS"

#define C(f) offsetof(struct config, f)
#define R(f) offsetof(struct conf_route, f)
#define RL(f) ((int)offsetof(struct conf_route, f))
#define NOLIM INT64_MIN, INT64_MAX
#define MS_DAY (86400000LL)

static const struct opt opts[] = {
	{ "zeebe", "address", T_STR, C(zeebe.address), -1, ZEEBE_DEFAULT_HOST ":" ZEEBE_DEFAULT_PORT, NOLIM, NULL,
	  ADDRESS_ENV, F_ENV_OWN, "gateway host:port, or a URL: grpcs:// or https:// = TLS (default port 443), "
	  "grpc:// or http:// = plaintext (ZEEBE_HOST/ZEEBE_PORT win over ZEEBE_ADDRESS)" },
	{ "zeebe", "credentials_file", T_STR, C(zeebe.credentials_file), -1, NULL, NOLIM, NULL,
	  "M2Z_CREDENTIALS_FILE", F_ENV_OWN, "Camunda console credentials file (export NAME='value' lines), "
	  "read like the environment; the environment wins over it" },
	{ "zeebe", "insecure", T_BOOL, C(zeebe.insecure), -1, "false", NOLIM, NULL,
	  "ZEEBE_INSECURE_CONNECTION", F_ENV_OWN, "plaintext gRPC instead of TLS (env: only the exact value \"true\" turns it on)" },
	{ "zeebe", "ca_certificate", T_STR, C(zeebe.ca_certificate), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_CA_CERTIFICATE_PATH ZEEBE_CA_CERTIFICATE_PATH", 0, "PEM file of trusted roots for the gateway; empty = system roots" },
	{ "zeebe", "override_authority", T_STR, C(zeebe.override_authority), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_OVERRIDE_AUTHORITY ZEEBE_OVERRIDE_AUTHORITY", 0, "TLS server name to verify instead of the address host" },
	{ "zeebe", "request_timeout", T_DUR, C(zeebe.request_timeout_ms), -1, "10s", 100, MS_DAY, NULL,
	  NULL, 0, "deadline of one PublishMessage call" },
	{ "zeebe", "keepalive", T_DUR, C(zeebe.keepalive_ms), -1, "45s", 30000, MS_DAY, NULL,
	  "CAMUNDA_KEEP_ALIVE ZEEBE_KEEP_ALIVE", 0, "gRPC keepalive ping interval; the gateway refuses pings under 30s (env value in ms)" },
	{ "zeebe", "max_message_size", T_SIZET, C(zeebe.max_message_size), -1, "4MiB", 1024, 1LL << 30, NULL,
	  NULL, 0, "largest PublishMessage request; bigger events are dead letters" },
	{ "zeebe", "max_in_flight", T_INT, C(zeebe.max_in_flight), -1, "64", 1, 10000, NULL,
	  NULL, 0, "calls in flight on the channel" },
	{ "zeebe", "auth", T_ENUM, C(zeebe.auth), -1, "auto", NOLIM, auth_names,
	  "CAMUNDA_AUTH_STRATEGY", 0, "auto: oauth when a client id/secret is set, else basic when a "
	  "username is set, else none (env value in any case: OAUTH, BASIC, NONE)" },
	{ "zeebe", "username", T_STR, C(zeebe.username), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_BASIC_AUTH_USERNAME", 0, "basic authentication user (self-managed 8.8+)" },
	{ "zeebe", "password", T_STR, C(zeebe.password), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_BASIC_AUTH_PASSWORD", F_SECRET, "basic authentication password (prefer the environment)" },

	{ "oauth", "client_id", T_STR, C(oauth.client_id), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_CLIENT_ID ZEEBE_CLIENT_ID", 0, "OAuth client id; with auth = auto, OAuth is on when client_id or client_secret is set" },
	{ "oauth", "client_secret", T_STR, C(oauth.client_secret), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_CLIENT_SECRET ZEEBE_CLIENT_SECRET", F_SECRET, "OAuth client secret (prefer the environment)" },
	{ "oauth", "url", T_STR, C(oauth.url), -1, "https://login.cloud.camunda.io/oauth/token", NOLIM, NULL,
	  "CAMUNDA_AUTHORIZATION_SERVER_URL CAMUNDA_OAUTH_URL ZEEBE_AUTHORIZATION_SERVER_URL", 0, "token endpoint (client-credentials grant)" },
	{ "oauth", "audience", T_STR, C(oauth.audience), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_TOKEN_AUDIENCE ZEEBE_TOKEN_AUDIENCE", 0, "token audience; empty = the zeebe address without its :port" },
	{ "oauth", "scope", T_STR, C(oauth.scope), -1, NULL, NOLIM, NULL,
	  "CAMUNDA_TOKEN_SCOPE ZEEBE_TOKEN_SCOPE", 0, "token scope; sent only when set" },
	{ "oauth", "ca_certificate", T_STR, C(oauth.ca_certificate), -1, NULL, NOLIM, NULL,
	  NULL, 0, "PEM roots for the token endpoint; empty = the gateway's CA when it comes from the environment "
	  "or the credentials file, else system roots" },
	{ "oauth", "request_timeout", T_DUR, C(oauth.request_timeout_ms), -1, "10s", 100, 600000, NULL,
	  "ZEEBE_AUTH_REQUEST_TIMEOUT", 0, "deadline of one token request (env value in ms)" },
	{ "oauth", "refresh_ahead", T_DUR, C(oauth.refresh_ahead_ms), -1, "30s", 10000, MS_DAY, NULL,
	  NULL, 0, "fetch a new token this long before the old one expires" },
	{ "oauth", "token_cache", T_BOOL, C(oauth.token_cache), -1, "true", NOLIM, NULL,
	  NULL, 0, "keep the token on disk (0600) and reuse it across restarts" },
	{ "oauth", "token_cache_dir", T_STR, C(oauth.token_cache_dir), -1, NULL, NOLIM, NULL,
	  NULL, 0, "directory of the token cache; empty = the spool directory" },
	{ "oauth", "min_refresh_interval", T_DUR, C(oauth.min_refresh_interval_ms), -1, "5s", 1000, 3600000, NULL,
	  NULL, 0, "at most one token request per this interval, however often the gateway rejects a token" },

	{ "mqtt", "host", T_STR, C(mqtt.host), -1, "localhost", NOLIM, NULL,
	  NULL, 0, "broker host" },
	{ "mqtt", "port", T_INT, C(mqtt.port), -1, "1883", 1, 65535, NULL,
	  NULL, 0, "broker port; default 1883, or 8883 when tls = true" },
	{ "mqtt", "client_id", T_STR, C(mqtt.client_id), -1, NULL, NOLIM, NULL,
	  NULL, 0, "MQTT client id, must be stable for the persistent session; empty = mqtt2zeebe-<hostname>" },
	{ "mqtt", "username", T_STR, C(mqtt.username), -1, NULL, NOLIM, NULL,
	  NULL, 0, "broker user name" },
	{ "mqtt", "password", T_STR, C(mqtt.password), -1, NULL, NOLIM, NULL,
	  "M2Z_MQTT_PASSWORD", F_SECRET, "broker password (prefer the environment)" },
	{ "mqtt", "keepalive", T_DUR_S, C(mqtt.keepalive_s), -1, "60s", 5000, 65535000, NULL,
	  NULL, 0, "MQTT keepalive, whole seconds" },
	{ "mqtt", "clean_session", T_BOOL, C(mqtt.clean_session), -1, "false", NOLIM, NULL,
	  NULL, 0, "false: the broker keeps QoS 1/2 messages for us while we are away" },
	{ "mqtt", "tls", T_BOOL, C(mqtt.tls), -1, "false", NOLIM, NULL,
	  NULL, 0, "TLS to the broker" },
	{ "mqtt", "ca_file", T_STR, C(mqtt.ca_file), -1, NULL, NOLIM, NULL,
	  NULL, 0, "PEM roots for the broker; empty = system roots" },
	{ "mqtt", "cert_file", T_STR, C(mqtt.cert_file), -1, NULL, NOLIM, NULL,
	  NULL, 0, "client certificate (PEM) for mutual TLS" },
	{ "mqtt", "key_file", T_STR, C(mqtt.key_file), -1, NULL, NOLIM, NULL,
	  NULL, 0, "client private key (PEM) for mutual TLS" },
	{ "mqtt", "tls_insecure", T_BOOL, C(mqtt.tls_insecure), -1, "false", NOLIM, NULL,
	  NULL, 0, "skip the broker hostname check (testing only)" },
	{ "mqtt", "reconnect_min", T_DUR, C(mqtt.reconnect_min_ms), -1, "1s", 100, MS_DAY, NULL,
	  NULL, 0, "first reconnect delay" },
	{ "mqtt", "reconnect_max", T_DUR, C(mqtt.reconnect_max_ms), -1, "60s", 100, MS_DAY, NULL,
	  NULL, 0, "reconnect delay cap (exponential backoff)" },
	{ "mqtt", "shared_group", T_STR, C(mqtt.shared_group), -1, NULL, NOLIM, NULL,
	  NULL, 0, "subscribe as $share/GROUP/filter so several agents split the stream; empty = off" },

	{ "spool", "directory", T_STR, C(spool.directory), -1, "/var/lib/mqtt2zeebe", NOLIM, NULL,
	  NULL, 0, "spool directory, created 0700" },
	{ "spool", "sync", T_ENUM, C(spool.sync), -1, "group", NOLIM, sync_names,
	  NULL, 0, "fsync policy: none | group | always" },
	{ "spool", "group_commit", T_DUR, C(spool.group_commit_ms), -1, "50ms", 1, 60000, NULL,
	  NULL, 0, "fsync interval for sync = group" },
	{ "spool", "max_bytes", T_SIZE64, C(spool.max_bytes), -1, "256MiB", 1024, INT64_MAX, NULL,
	  NULL, 0, "spool size bound" },
	{ "spool", "max_age", T_DUR, C(spool.max_age_ms), -1, "0", 0, INT64_MAX, NULL,
	  NULL, 0, "events older than this are dropped (counted, logged); 0 = no limit" },
	{ "spool", "on_full", T_ENUM, C(spool.on_full), -1, "block", NOLIM, full_names,
	  NULL, 0, "when max_bytes is reached: block | drop_oldest | reject_newest" },
	{ "spool", "segment_bytes", T_SIZE64, C(spool.segment_bytes), -1, "16MiB", 1024, INT64_MAX, NULL,
	  NULL, 0, "segment file size" },
	{ "spool", "reserve", T_SIZE64, C(spool.reserve_bytes), -1, "1MiB", 0, INT64_MAX, NULL,
	  NULL, 0, "free space kept on the spool's filesystem (ack logs, dead letters); below it the spool is full" },

	{ "forward", "retry_initial", T_DUR, C(forward.retry_initial_ms), -1, "100ms", 1, MS_DAY, NULL,
	  NULL, 0, "first retry delay" },
	{ "forward", "retry_max", T_DUR, C(forward.retry_max_ms), -1, "5s", 1, MS_DAY, NULL,
	  NULL, 0, "retry delay cap (exponential backoff with jitter)" },
	{ "forward", "read_ahead", T_SIZE64, C(forward.read_ahead), -1, "256KiB", 0, INT64_MAX, NULL,
	  NULL, 0, "bytes of records held in memory ahead of the gateway (in flight or queued behind their key); a full window always is; 0 = count only (1,024)" },
	{ "forward", "shutdown_timeout", T_DUR, C(forward.shutdown_timeout_ms), -1, "5s", 0, 600000, NULL,
	  NULL, 0, "on SIGTERM, wait this long for calls in flight" },
	{ "forward", "dead_letter_topic", T_STR, C(forward.dead_letter_topic), -1, NULL, NOLIM, NULL,
	  NULL, 0, "also publish each dead letter to this MQTT topic; empty = off" },
	{ "forward", "dead_letter_max_bytes", T_SIZE64, C(forward.dead_letter_max_bytes), -1, "10MiB", 4096, INT64_MAX, NULL,
	  NULL, 0, "size of one dead-letter file; a full file is rotated to .1, .2, ..." },
	{ "forward", "dead_letter_max_files", T_INT, C(forward.dead_letter_max_files), -1, "5", 1, 1000, NULL,
	  NULL, 0, "dead-letter files kept, the live one included; the oldest is removed" },

	{ "log", "level", T_ENUM, C(log.level), -1, "info", NOLIM, log_level_names,
	  "M2Z_LOG_LEVEL", 0, "error | warn | info | debug" },
	{ "log", "stats_interval", T_DUR, C(log.stats_interval_ms), -1, "60s", 0, MS_DAY, NULL,
	  NULL, 0, "interval of the counters line; 0 = off" },
	{ "log", "reminder_interval", T_DUR, C(log.reminder_ms), -1, "60s", 1000, MS_DAY, NULL,
	  NULL, 0, "while a peer stays down, repeat its state line this often" },

	{ "status", "enabled", T_BOOL, C(status.enabled), -1, "true", NOLIM, NULL,
	  NULL, 0, "retained status topic with a Last Will" },
	{ "status", "topic", T_STR, C(status.topic), -1, NULL, NOLIM, NULL,
	  NULL, 0, "status topic; empty = mqtt2zeebe/<mqtt client_id>/status" },
	{ "status", "interval", T_DUR, C(status.interval_ms), -1, "60s", 0, MS_DAY, NULL,
	  NULL, 0, "republish the health document this often (also on every state change); 0 = on change only" },

	{ "metrics", "listen", T_STR, C(metrics.listen), -1, NULL, NOLIM, NULL,
	  NULL, 0, "HTTP /metrics and /healthz on host:port (e.g. 127.0.0.1:9464); empty = off" },
};

static const struct opt route_opts[] = {
	{ "route", "topic", T_STR, R(topic), RL(topic_line), NULL, NOLIM, NULL,
	  NULL, F_REQUIRED, "MQTT topic filter (+ and # wildcards)" },
	{ "route", "qos", T_INT, R(qos), -1, "1", 0, 2, NULL,
	  NULL, 0, "subscription QoS 0..2" },
	{ "route", "message_name", T_STR, R(message_name), RL(message_name_line), NULL, NOLIM, NULL,
	  NULL, F_REQUIRED, "template: Zeebe message name" },
	{ "route", "correlation_key", T_STR, R(correlation_key), RL(correlation_key_line), NULL, NOLIM, NULL,
	  NULL, F_REQUIRED, "template: correlation key" },
	{ "route", "message_id", T_STR, R(message_id), RL(message_id_line), "auto", NOLIM, NULL,
	  NULL, 0, "template; auto = hash of route, topic and payload; none = no id" },
	{ "route", "ttl", T_DUR, R(ttl_ms), -1, "1h", 0, INT64_MAX, NULL,
	  NULL, 0, "how long Zeebe buffers the message; 0 = only open subscriptions" },
	{ "route", "tenant_id", T_STR, R(tenant_id), RL(tenant_id_line), NULL, NOLIM, NULL,
	  NULL, 0, "template: tenant; empty = the gateway's default" },
	{ "route", "variables", T_ENUM, R(variables), -1, "payload", NOLIM, vars_names,
	  NULL, 0, "payload: the payload is the variables document; none: no payload variables" },
	{ "route", "wrap_key", T_STR, R(wrap_key), -1, "value", NOLIM, NULL,
	  NULL, 0, "variable name for a payload that is not a JSON object" },
	{ "route", "topic_variable", T_STR, R(topic_variable), -1, NULL, NOLIM, NULL,
	  NULL, 0, "variable that gets the topic; empty = off" },
	{ "route", "time_variable", T_STR, R(time_variable), -1, NULL, NOLIM, NULL,
	  NULL, 0, "variable that gets the receive time (RFC 3339, UTC); empty = off" },
	{ "route", "retained", T_ENUM, R(retained), -1, "skip", NOLIM, retained_names,
	  NULL, 0, "skip: a retained message (stored state, resent by the broker on each (re)subscribe) is not forwarded; forward: it is" },
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))
#define N_ROUTE_OPTS (sizeof(route_opts) / sizeof(route_opts[0]))

static const char *const worker_mode_names[] = { "publish", "request_reply", NULL };

#define W(f) offsetof(struct conf_worker, f)
#define WL(f) ((int)offsetof(struct conf_worker, f))
static const struct opt worker_opts[] = {
	{ "worker", "job_type", T_STR, W(job_type), -1, NULL, NOLIM, NULL,
	  NULL, F_REQUIRED, "job type of the service tasks to work on" },
	{ "worker", "topic", T_STR, W(topic), WL(topic_line), NULL, NOLIM, NULL,
	  NULL, F_REQUIRED, "template of the command topic over the job ({/key}, {/variables/x}, ...)" },
	{ "worker", "payload", T_STR, W(payload), WL(payload_line), "{/variables}", NOLIM, NULL,
	  NULL, 0, "template of the command payload" },
	{ "worker", "qos", T_INT, W(qos), -1, "1", 0, 2, NULL,
	  NULL, 0, "QoS of the command; with 1 or 2 the job completes on the broker's acknowledgement" },
	{ "worker", "retain", T_BOOL, W(retain), -1, "false", NOLIM, NULL,
	  NULL, 0, "retain flag of the command" },
	{ "worker", "mode", T_ENUM, W(mode), -1, "publish", NOLIM, worker_mode_names,
	  NULL, 0, "publish: complete when the broker has the command; request_reply: complete on the device's reply" },
	{ "worker", "reply_topic", T_STR, W(reply_topic), WL(reply_topic_line), NULL, NOLIM, NULL,
	  NULL, 0, "request_reply: template of the reply topic; must contain {/key} as a whole level" },
	{ "worker", "reply_timeout", T_DUR, W(reply_timeout_ms), -1, "30s", 100, MS_DAY, NULL,
	  NULL, 0, "request_reply: wait this long for the reply" },
	{ "worker", "reply_variable", T_STR, W(reply_variable), -1, NULL, NOLIM, NULL,
	  NULL, 0, "variable that gets the reply; empty = a JSON object reply is merged, any other under \"reply\"" },
	{ "worker", "error_pointer", T_STR, W(error_pointer), -1, NULL, NOLIM, NULL,
	  NULL, 0, "JSON pointer into the reply that marks an error reply; empty = off" },
	{ "worker", "error_value", T_STR, W(error_value), -1, "error", NOLIM, NULL,
	  NULL, 0, "value at error_pointer that means error" },
	{ "worker", "error_code", T_STR, W(error_code), -1, NULL, NOLIM, NULL,
	  NULL, 0, "BPMN error code thrown for an error reply (needed with error_pointer)" },
	{ "worker", "error_message_pointer", T_STR, W(error_message_pointer), -1, NULL, NOLIM, NULL,
	  NULL, 0, "JSON pointer to the error reply's message; empty = the whole reply" },
	{ "worker", "timeout_error_code", T_STR, W(timeout_error_code), -1, NULL, NOLIM, NULL,
	  NULL, 0, "on reply timeout throw this BPMN error; empty = fail the job with retries - 1" },
	{ "worker", "retry_backoff", T_DUR, W(retry_backoff_ms), -1, "10s", 0, MS_DAY, NULL,
	  NULL, 0, "back-off of a failed job before it is activated again" },
	{ "worker", "max_jobs_active", T_INT, W(max_jobs_active), -1, "32", 1, 1000, NULL,
	  NULL, 0, "jobs in hand at most" },
	{ "worker", "timeout", T_DUR, W(timeout_ms), -1, "5m", 1000, MS_DAY, NULL,
	  NULL, 0, "job lock: unfinished jobs go back to Zeebe after this" },
	{ "worker", "poll_timeout", T_DUR, W(poll_timeout_ms), -1, "10s", 100, 3600000, NULL,
	  NULL, 0, "ActivateJobs long polling window" },
	{ "worker", "fetch_variables", T_STR, W(fetch_variables), -1, NULL, NOLIM, NULL,
	  NULL, 0, "comma-separated variables to fetch; empty = all" },
	{ "worker", "tenant_ids", T_STR, W(tenant_ids), -1, NULL, NOLIM, NULL,
	  NULL, 0, "comma-separated tenant ids; empty = the gateway's default tenant" },
	{ "worker", "name", T_STR, W(worker_name), -1, NULL, NOLIM, NULL,
	  NULL, 0, "worker name shown in Operate; empty = the MQTT client id" },
	{ "worker", "max_payload", T_SIZE64, W(max_payload), -1, "256KiB", 1, 256LL << 20, NULL,
	  NULL, 0, "largest command payload; a bigger one fails the job" },
};
#define N_WORKER_OPTS (sizeof(worker_opts) / sizeof(worker_opts[0]))

static const char *const sections[] = { "zeebe", "oauth", "mqtt", "spool", "forward", "log",
					"status", "metrics", NULL };

/* ---- value parsers --------------------------------------------------------- */

/* Leading unsigned decimal; returns chars consumed, 0 on none/overflow. */
static size_t parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	while (isdigit((unsigned char)s[i])) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
		i++;
	}
	*out = v;
	return i;
}

/* Whole string, optional '-', decimal. */
static int parse_int(const char *s, int64_t *out)
{
	bool neg = *s == '-';
	uint64_t v;
	size_t n;

	s += neg;
	n = parse_u64(s, &v);
	if (n == 0 || s[n] || v > INT64_MAX)
		return M2Z_ERR_PARSE;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return M2Z_OK;
}

struct unit { const char *name; uint64_t mult; };

static int parse_with_units(const char *s, const struct unit *units, uint64_t limit, uint64_t *out)
{
	uint64_t v;
	size_t n;

	while (isspace((unsigned char)*s))
		s++;
	n = parse_u64(s, &v);
	if (n == 0)
		return M2Z_ERR_PARSE;
	s += n;
	while (isspace((unsigned char)*s))
		s++;
	for (const struct unit *u = units; u->name; u++) {
		size_t ul = strlen(u->name);
		if (strncmp(s, u->name, ul) != 0)
			continue;
		const char *rest = s + ul;
		while (isspace((unsigned char)*rest))
			rest++;
		if (*rest)
			continue;
		if (v > limit / u->mult)
			return M2Z_ERR_PARSE;
		*out = v * u->mult;
		return M2Z_OK;
	}
	return M2Z_ERR_PARSE;
}

int conf_parse_duration_ms(const char *s, int64_t *out)
{
	static const struct unit units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 }, { "", 1 }, { NULL, 0 },
	};
	uint64_t v;

	if (parse_with_units(s, units, INT64_MAX, &v))
		return M2Z_ERR_PARSE;
	*out = (int64_t)v;
	return M2Z_OK;
}

int conf_parse_size(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
		{ "KiB", 1ULL << 10 }, { "MiB", 1ULL << 20 }, { "GiB", 1ULL << 30 }, { "TiB", 1ULL << 40 },
		{ "kB", 1000ULL }, { "KB", 1000ULL }, { "MB", 1000000ULL }, { "GB", 1000000000ULL },
		{ "TB", 1000000000000ULL }, { "B", 1 }, { "", 1 }, { NULL, 0 },
	};
	return parse_with_units(s, units, UINT64_MAX, out);
}

int conf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };

	for (int i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) { *out = true; return M2Z_OK; }
		if (strcasecmp(s, no[i]) == 0) { *out = false; return M2Z_OK; }
	}
	return M2Z_ERR_PARSE;
}

static void fmt_size(uint64_t v, char *b, size_t n)
{
	static const struct { const char *u; uint64_t m; } u[] = {
		{ "TiB", 1ULL << 40 }, { "GiB", 1ULL << 30 }, { "MiB", 1ULL << 20 }, { "KiB", 1ULL << 10 },
	};
	for (size_t i = 0; i < 4; i++) {
		if (v != 0 && v % u[i].m == 0) {
			snprintf(b, n, "%" PRIu64 "%s", v / u[i].m, u[i].u);
			return;
		}
	}
	snprintf(b, n, "%" PRIu64, v);
}

/* ---- setting one option from text ---------------------------------------- */

static void join_names(const char *const *names, char *b, size_t n)
{
	size_t o = 0;

	b[0] = '\0';
	for (int i = 0; names[i] && o < n; i++)
		o += (size_t)snprintf(b + o, n - o, "%s%s", i ? ", " : "", names[i]);
}

static int set_range_err(const struct opt *o, int64_t v, char *msg, size_t n)
{
	char a[32], lo[32], hi[32];

	if (o->type == T_INT) {
		snprintf(msg, n, "expected an integer %" PRId64 "..%" PRId64 ", got %" PRId64, o->min, o->max, v);
		return M2Z_ERR_PARSE;
	}
	if (o->type == T_SIZE64 || o->type == T_SIZET) {
		fmt_size((uint64_t)v, a, sizeof(a));
		fmt_size((uint64_t)o->min, lo, sizeof(lo));
		fmt_size((uint64_t)o->max, hi, sizeof(hi));
	} else {
		format_duration(v, a, sizeof(a));
		format_duration(o->min, lo, sizeof(lo));
		format_duration(o->max, hi, sizeof(hi));
	}
	if (v < o->min)
		snprintf(msg, n, "%s is below the minimum %s", a, lo);
	else
		snprintf(msg, n, "%s is above the maximum %s", a, hi);
	return M2Z_ERR_PARSE;
}

/* All digits (a duration without its unit)? */
static bool bare_number(const char *s)
{
	size_t n = strspn(s, "0123456789");
	return n && !s[n];
}

/* BARE_MS: a bare number is a duration in milliseconds (environment, as
 * Camunda's clients read it); in the file it is an error, since "ttl = 3600"
 * is far more often meant as seconds than as 3.6 s. */
static int set_number(void *field, const struct opt *o, const char *v, bool bare_ms, char *msg, size_t n)
{
	int64_t d = 0;
	uint64_t u = 0;
	const char *what = "";
	int rc;

	switch (o->type) {
	case T_INT:
		what = "an integer";
		rc = parse_int(v, &d);
		break;
	case T_DUR: case T_DUR_S:
		what = "a duration like 10s, 250ms, 5m, 1h or 7d";
		rc = conf_parse_duration_ms(v, &d);
		if (rc == M2Z_OK && !bare_ms && d != 0 && bare_number(v)) {
			snprintf(msg, n, "expected a duration with a unit, got '%s' (%ss? %sms?)", v, v, v);
			return M2Z_ERR_PARSE;
		}
		break;
	default:
		what = "a size like 256MiB, 64KiB or 4096";
		rc = conf_parse_size(v, &u);
		d = u > INT64_MAX ? INT64_MAX : (int64_t)u;
		break;
	}
	if (rc) {
		if (o->type == T_INT)
			snprintf(msg, n, "expected an integer %" PRId64 "..%" PRId64 ", got '%s'", o->min, o->max, v);
		else
			snprintf(msg, n, "expected %s, got '%s'", what, v);
		return M2Z_ERR_PARSE;
	}
	if (d < o->min || d > o->max) {
		set_range_err(o, d, msg, n);
		if (bare_ms && bare_number(v) && (o->type == T_DUR || o->type == T_DUR_S) && strlen(msg) + 40 < n)
			strcat(msg, " (a bare number means milliseconds)");
		return M2Z_ERR_PARSE;
	}
	switch (o->type) {
	case T_INT: *(int *)field = (int)d; break;
	case T_DUR: *(int64_t *)field = d; break;
	case T_DUR_S:
		if (d % 1000) {
			snprintf(msg, n, "expected whole seconds, got '%s'", v);
			return M2Z_ERR_PARSE;
		}
		*(int *)field = (int)(d / 1000);
		break;
	case T_SIZE64: *(uint64_t *)field = u; break;
	default: *(size_t *)field = (size_t)u; break;
	}
	return M2Z_OK;
}

/* Parse V into the field of O inside BASE; BARE_MS as for set_number. On
 * error MSG says what was expected (no location; the caller prefixes it). */
static int opt_set(void *base, const struct opt *o, const char *v, bool bare_ms, char *msg, size_t n)
{
	void *field = (char *)base + o->off;

	switch (o->type) {
	case T_STR: {
		char *s = strdup(v);
		if (!s) {
			snprintf(msg, n, "out of memory");
			return M2Z_ERR_NOMEM;
		}
		free(*(char **)field);
		*(char **)field = s;
		return M2Z_OK;
	}
	case T_BOOL:
		if (conf_parse_bool(v, (bool *)field) == M2Z_OK)
			return M2Z_OK;
		snprintf(msg, n, "expected true or false, got '%s'", v);
		return M2Z_ERR_PARSE;
	case T_ENUM: {
		char list[128];
		for (int i = 0; o->names[i]; i++) {
			if (strcmp(v, o->names[i]) == 0) {
				*(int *)field = i;
				return M2Z_OK;
			}
		}
		join_names(o->names, list, sizeof(list));
		snprintf(msg, n, "expected one of %s; got '%s'", list, v);
		return M2Z_ERR_PARSE;
	}
	default:
		return set_number(field, o, v, bare_ms, msg, n);
	}
}

static int apply_defaults(void *base, const struct opt *table, size_t count)
{
	char msg[256];

	for (size_t i = 0; i < count; i++)
		if (opt_set(base, &table[i], table[i].dflt ? table[i].dflt : "", false, msg, sizeof(msg)))
			return M2Z_ERR_NOMEM; /* defaults are valid; only OOM fails */
	return M2Z_OK;
}

static void free_strings(void *base, const struct opt *table, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (table[i].type == T_STR) {
			char **p = (char **)((char *)base + table[i].off);
			free(*p);
			*p = NULL;
		}
	}
}

/* ---- the parse context ------------------------------------------------------ */

enum sec_kind { SEC_NONE, SEC_GLOBAL, SEC_ROUTE, SEC_WORKER };

struct parse_ctx {
	const char *name;           /* file name for messages */
	const char *text;
	size_t len, pos;
	int line;                   /* physical line the reader last handed out */
	struct config *cfg;
	char *err;
	size_t errlen;
	bool failed;
	enum sec_kind sec;
	const char *section;        /* the global section in force */
	size_t route;               /* index of the route in force */
	int seen[N_OPTS];           /* line where a global key was set; 0 = not */
	int (*route_seen)[N_ROUTE_OPTS];
	size_t worker;              /* index of the worker in force */
	int (*worker_seen)[N_WORKER_OPTS];
	struct credentials creds;   /* [zeebe] credentials_file, when set */
	char from[N_OPTS][CONF_FROM_MAX]; /* where an env/credentials value came from */
};

static void fail(struct parse_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record the first error only: later ones are usually fallout. LINE 0 =
 * "NAME: ", NO_PREFIX = the message is already located (credentials file). */
static void fail(struct parse_ctx *c, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (c->failed)
		return;
	c->failed = true;
	if (!c->err || !c->errlen)
		return;
	n = line > 0 ? snprintf(c->err, c->errlen, "%s:%d: ", c->name, line)
		     : line == NO_PREFIX ? 0 : snprintf(c->err, c->errlen, "%s: ", c->name);
	if (n < 0 || (size_t)n >= c->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static const struct opt *find_opt(const struct opt *table, size_t count, const char *section, const char *key)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(table[i].section, section) == 0 && strcmp(table[i].key, key) == 0)
			return &table[i];
	return NULL;
}

static void expected_keys(const struct opt *table, size_t count, const char *section, char *b, size_t n)
{
	size_t o = 0;

	b[0] = '\0';
	for (size_t i = 0; i < count && o < n; i++)
		if (strcmp(table[i].section, section) == 0)
			o += (size_t)snprintf(b + o, n - o, "%s%s", o ? ", " : "", table[i].key);
}

/* ---- sections (parsed by the reader, since inih does not report them) ---- */

static bool route_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > ROUTE_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
			return false;
	return true;
}

static void conf_route_free(struct conf_route *r)
{
	free_strings(r, route_opts, N_ROUTE_OPTS);
	free(r->name);
	for (size_t i = 0; i < r->n_vars; i++) {
		free(r->var_names[i]);
		free(r->var_templates[i]);
	}
	free(r->var_names);
	free(r->var_templates);
	free(r->var_lines);
}

/* ARR (N elements of SIZE) grown by one zeroed element, or NULL (ARR is
 * then untouched, as with realloc). */
static void *grow_one(void *arr, size_t n, size_t size)
{
	unsigned char *p = realloc(arr, (n + 1) * size);

	if (p)
		memset(p + n * size, 0, size);
	return p;
}

/* KEY = VALUE in the named section [KIND NAME] whose struct is BASE, by
 * TABLE; SEEN is that section's row of first-set lines. */
static void set_section_key(struct parse_ctx *c, const char *kind, const char *name, void *base,
			    const struct opt *table, size_t n, int *seen, const char *key,
			    const char *value, const char *more_keys)
{
	const struct opt *o = find_opt(table, n, kind, key);
	char msg[512];
	size_t i;

	if (!o) {
		char keys[1024];
		expected_keys(table, n, kind, keys, sizeof(keys));
		fail(c, c->line, "unknown key '%s' in [%s %s] (expected one of: %s%s)", key, kind, name, keys,
		     more_keys);
		return;
	}
	i = (size_t)(o - table);
	if (seen[i]) {
		fail(c, c->line, "[%s %s] %s set twice (first at line %d)", kind, name, key, seen[i]);
		return;
	}
	seen[i] = c->line;
	if (opt_set(base, o, value, false, msg, sizeof(msg))) {
		fail(c, c->line, "[%s %s] %s: %s", kind, name, key, msg);
		return;
	}
	if (o->line_off >= 0)
		*(int *)((char *)base + o->line_off) = c->line;
}

static void open_route(struct parse_ctx *c, const char *name)
{
	struct config *cfg = c->cfg;
	struct conf_route *routes, *r;
	int (*seen)[N_ROUTE_OPTS];

	if (!route_name_ok(name)) {
		fail(c, c->line, "route name '%s' must be 1-%d of A-Z a-z 0-9 _ . -", name, ROUTE_NAME_MAX);
		return;
	}
	for (size_t i = 0; i < cfg->n_routes; i++) {
		if (strcmp(cfg->routes[i].name, name) == 0) {
			fail(c, c->line, "[route %s] already defined at line %d", name, cfg->routes[i].line);
			return;
		}
	}
	if (cfg->n_routes >= CONF_MAX_ROUTES) {
		fail(c, c->line, "[route %s]: too many routes, the limit is %d [route NAME] sections per file",
		     name, CONF_MAX_ROUTES);
		return;
	}
	routes = grow_one(cfg->routes, cfg->n_routes, sizeof(*routes));
	if (routes)
		cfg->routes = routes;
	seen = grow_one(c->route_seen, cfg->n_routes, sizeof(*seen));
	if (seen)
		c->route_seen = seen;
	if (!routes || !seen) {
		fail(c, c->line, "out of memory");
		return;
	}
	r = &cfg->routes[cfg->n_routes++];
	r->line = c->line;
	r->name = strdup(name);
	if (!r->name || apply_defaults(r, route_opts, N_ROUTE_OPTS)) {
		fail(c, c->line, "out of memory");
		return;
	}
	c->sec = SEC_ROUTE;
	c->route = cfg->n_routes - 1;
}

/* ---- [worker NAME] ---- */

static void conf_worker_free(struct conf_worker *w)
{
	free_strings(w, worker_opts, N_WORKER_OPTS);
	free(w->name);
}

static void open_worker(struct parse_ctx *c, const char *name)
{
	struct config *cfg = c->cfg;
	struct conf_worker *ws, *w;
	int (*seen)[N_WORKER_OPTS];

	if (!route_name_ok(name)) {
		fail(c, c->line, "worker name '%s' must be 1-%d of A-Z a-z 0-9 _ . -", name, ROUTE_NAME_MAX);
		return;
	}
	for (size_t i = 0; i < cfg->n_workers; i++) {
		if (strcmp(cfg->workers[i].name, name) == 0) {
			fail(c, c->line, "[worker %s] already defined at line %d", name, cfg->workers[i].line);
			return;
		}
	}
	if (cfg->n_workers >= CONF_MAX_WORKERS) {
		fail(c, c->line, "more than %d workers", CONF_MAX_WORKERS);
		return;
	}
	ws = grow_one(cfg->workers, cfg->n_workers, sizeof(*ws));
	if (ws)
		cfg->workers = ws;
	seen = grow_one(c->worker_seen, cfg->n_workers, sizeof(*seen));
	if (seen)
		c->worker_seen = seen;
	if (!ws || !seen) {
		fail(c, c->line, "out of memory");
		return;
	}
	w = &cfg->workers[cfg->n_workers++];
	w->line = c->line;
	w->name = strdup(name);
	if (!w->name || apply_defaults(w, worker_opts, N_WORKER_OPTS)) {
		fail(c, c->line, "out of memory");
		return;
	}
	c->sec = SEC_WORKER;
	c->worker = cfg->n_workers - 1;
}

static void set_worker(struct parse_ctx *c, const char *key, const char *value)
{
	struct conf_worker *w = &c->cfg->workers[c->worker];

	set_section_key(c, "worker", w->name, w, worker_opts, N_WORKER_OPTS, c->worker_seen[c->worker],
			key, value, "");
}

static int worker_line(const struct parse_ctx *c, size_t w, const char *key)
{
	const struct opt *o = find_opt(worker_opts, N_WORKER_OPTS, "worker", key);
	int l = o ? c->worker_seen[w][o - worker_opts] : 0;
	return l > 0 ? l : c->cfg->workers[w].line;
}

static void check_worker(struct parse_ctx *c, size_t i)
{
	const struct conf_worker *w = &c->cfg->workers[i];

	if (!w->job_type[0])
		fail(c, w->line, "[worker %s] needs job_type", w->name);
	else if (!w->topic[0])
		fail(c, w->line, "[worker %s] needs topic", w->name);
	else if (w->mode == WORKER_REQUEST_REPLY && !w->reply_topic[0])
		fail(c, worker_line(c, i, "mode"), "[worker %s] mode = request_reply needs reply_topic", w->name);
	else if (w->mode == WORKER_REQUEST_REPLY && w->reply_timeout_ms >= w->timeout_ms)
		fail(c, worker_line(c, i, "reply_timeout"),
		     "[worker %s] reply_timeout (%" PRId64 "ms) must be below the job timeout (%" PRId64 "ms)",
		     w->name, w->reply_timeout_ms, w->timeout_ms);
	else if (w->error_pointer[0] && !w->error_code[0])
		fail(c, worker_line(c, i, "error_pointer"), "[worker %s] error_pointer needs error_code", w->name);
	else if (w->error_pointer[0] && w->error_pointer[0] != '/')
		fail(c, worker_line(c, i, "error_pointer"),
		     "[worker %s] error_pointer: expected a JSON pointer like /status, got '%s'", w->name,
		     w->error_pointer);
	else if (w->error_message_pointer[0] && w->error_message_pointer[0] != '/')
		fail(c, worker_line(c, i, "error_message_pointer"),
		     "[worker %s] error_message_pointer: expected a JSON pointer like /message, got '%s'",
		     w->name, w->error_message_pointer);
}

/* LINE points just after '['. */
static void open_section(struct parse_ctx *c, const char *line)
{
	char name[CONF_MAX_LINE + 1];
	const char *end = strchr(line, ']');
	size_t n;
	char *p;

	if (!end) {
		fail(c, c->line, "expected ']' to close the section header");
		return;
	}
	while (line < end && isspace((unsigned char)*line))
		line++;
	n = (size_t)(end - line);
	memcpy(name, line, n);
	while (n && isspace((unsigned char)name[n - 1]))
		n--;
	name[n] = '\0';
	if (strncmp(name, "route", 5) == 0 && (name[5] == '\0' || isspace((unsigned char)name[5]))) {
		for (p = name + 5; isspace((unsigned char)*p); p++)
			;
		if (!*p)
			fail(c, c->line, "[route] needs a name: [route NAME]");
		else
			open_route(c, p);
		return;
	}
	if (strncmp(name, "worker", 6) == 0 && (name[6] == '\0' || isspace((unsigned char)name[6]))) {
		for (p = name + 6; isspace((unsigned char)*p); p++)
			;
		if (!*p)
			fail(c, c->line, "[worker] needs a name: [worker NAME]");
		else
			open_worker(c, p);
		return;
	}
	for (int i = 0; sections[i]; i++) {
		if (strcmp(name, sections[i]) == 0) {
			c->sec = SEC_GLOBAL;
			c->section = sections[i];
			return;
		}
	}
	fail(c, c->line, "unknown section [%s] (expected one of: zeebe, oauth, mqtt, spool, forward, log, status, metrics, route NAME, worker NAME)",
	     name);
}

/* ---- the reader: one physical line at a time ----------------------------- */

/* The dialect is the one inih reads (Debian's libinih was used until it
 * turned out to cut lines at 200 bytes and report errors on the wrong line):
 * [section], key = value or key: value, ';' or '#' comment lines, ';' after
 * a blank starts an inline comment, a UTF-8 BOM, CR LF. Lines may be up to
 * CONF_MAX_LINE bytes. Leading blanks are ignored: there are no
 * continuation lines. */
static void strip_value(const char *s, size_t n, char *out)
{
	size_t i = 0, o = 0;
	bool was_space = false;

	while (i < n && isspace((unsigned char)s[i]))
		i++;
	/* "key = ; comment" is an empty value, as "key = v ; comment" is v. */
	was_space = i > 0;
	for (; i < n; i++) {
		if (was_space && s[i] == ';')
			break;
		was_space = isspace((unsigned char)s[i]);
		out[o++] = s[i];
	}
	while (o && isspace((unsigned char)out[o - 1]))
		o--;
	out[o] = '\0';
}

static void key_value(struct parse_ctx *c, char *s, size_t n);

/* S[0..N) is one line without its end, NUL-terminated at N. */
static void parse_line(struct parse_ctx *c, char *s, size_t n)
{
	while (n && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	if (n == 0 || *s == ';' || *s == '#')
		return;
	if (*s == '[')
		open_section(c, s + 1);
	else
		key_value(c, s, n);
}

static void parse_text(struct parse_ctx *c, char *line)
{
	while (!c->failed && c->pos < c->len) {
		const char *s = c->text + c->pos;
		const char *nl = memchr(s, '\n', c->len - c->pos);
		size_t n = nl ? (size_t)(nl - s) : c->len - c->pos;

		c->pos += n + (nl ? 1 : 0);
		c->line++;
		if (c->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
			s += 3;
			n -= 3;
		}
		if (n && s[n - 1] == '\r')
			n--;
		if (n > CONF_MAX_LINE) {
			fail(c, c->line, "line longer than %d bytes", CONF_MAX_LINE);
			return;
		}
		memcpy(line, s, n);
		line[n] = '\0';
		parse_line(c, line, n);
	}
}

/* ---- the handler: one key = value -------------------------------------------- */

static void set_global(struct parse_ctx *c, const char *key, const char *value)
{
	const struct opt *o = find_opt(opts, N_OPTS, c->section, key);
	char msg[512];
	size_t i;

	if (!o) {
		char keys[512];
		expected_keys(opts, N_OPTS, c->section, keys, sizeof(keys));
		fail(c, c->line, "unknown key '%s' in [%s] (expected one of: %s)", key, c->section, keys);
		return;
	}
	i = (size_t)(o - opts);
	if (c->seen[i]) {
		fail(c, c->line, "[%s] %s set twice (first at line %d)", c->section, key, c->seen[i]);
		return;
	}
	c->seen[i] = c->line;
	if (opt_set(c->cfg, o, value, false, msg, sizeof(msg)))
		fail(c, c->line, "[%s] %s: %s", c->section, key, msg);
}

static bool var_name_ok(const char *s)
{
	return *s && !strpbrk(s, "\"\\");
}

static void add_var(struct parse_ctx *c, struct conf_route *r, const char *name, const char *value)
{
	size_t n = r->n_vars + 1;
	char **names, **tmpls;
	int *lines;

	if (!var_name_ok(name)) {
		fail(c, c->line, "[route %s] var.NAME needs a name without quotes or backslashes, got 'var.%s'",
		     r->name, name);
		return;
	}
	for (size_t i = 0; i < r->n_vars; i++) {
		if (strcmp(r->var_names[i], name) == 0) {
			fail(c, c->line, "[route %s] var.%s set twice (first at line %d)", r->name, name,
			     r->var_lines[i]);
			return;
		}
	}
	names = realloc(r->var_names, n * sizeof(*names));
	if (names)
		r->var_names = names;
	tmpls = realloc(r->var_templates, n * sizeof(*tmpls));
	if (tmpls)
		r->var_templates = tmpls;
	lines = realloc(r->var_lines, n * sizeof(*lines));
	if (lines)
		r->var_lines = lines;
	if (!names || !tmpls || !lines) {
		fail(c, c->line, "out of memory");
		return;
	}
	r->var_names[r->n_vars] = strdup(name);
	r->var_templates[r->n_vars] = strdup(value);
	r->var_lines[r->n_vars] = c->line;
	r->n_vars++;
	if (!r->var_names[r->n_vars - 1] || !r->var_templates[r->n_vars - 1])
		fail(c, c->line, "out of memory");
}

static void set_route(struct parse_ctx *c, const char *key, const char *value)
{
	struct conf_route *r = &c->cfg->routes[c->route];

	if (strncmp(key, "var.", 4) == 0) {
		add_var(c, r, key + 4, value);
		return;
	}
	set_section_key(c, "route", r->name, r, route_opts, N_ROUTE_OPTS, c->route_seen[c->route], key,
			value, ", var.NAME");
}

/* "key = value" (or "key: value"); the key ends at the first '=' or ':'. */
static void key_value(struct parse_ctx *c, char *s, size_t n)
{
	char *value, *end;
	size_t k;

	for (k = 0; k < n && s[k] != '=' && s[k] != ':'; k++)
		if (s[k] == ';' && k && isspace((unsigned char)s[k - 1]))
			k = n; /* an inline comment before any separator */
	if (k >= n) {
		fail(c, c->line, "expected key = value, a [section] or a comment");
		return;
	}
	value = s + k + 1;
	strip_value(value, n - k - 1, value);
	for (end = s + k; end > s && isspace((unsigned char)end[-1]); end--)
		;
	*end = '\0';
	switch (c->sec) {
	case SEC_NONE:
		fail(c, c->line, "key '%s' outside any section (start with [zeebe], [mqtt], [route NAME], ...)", s);
		break;
	case SEC_GLOBAL:
		set_global(c, s, value);
		break;
	case SEC_ROUTE:
		set_route(c, s, value);
		break;
	case SEC_WORKER:
		set_worker(c, s, value);
		break;
	}
}

/* ---- environment overrides ----------------------------------------------------- */

/* Environment variables, and the same names in [zeebe] credentials_file,
 * override the INI file. Inside each, the first name of an option's env
 * list that is set wins; the environment wins over the credentials file. */

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL; /* empty = unset, as the Go client does */
}

static int set_str(char **field, const char *v)
{
	char *s = strdup(v);
	if (!s)
		return M2Z_ERR_NOMEM;
	free(*field);
	*field = s;
	return M2Z_OK;
}

static bool port_ok(const char *p)
{
	uint64_t v;
	return *p && parse_u64(p, &v) == strlen(p) && v >= 1 && v <= 65535;
}

static void fail_hit(struct parse_ctx *c, const struct cred_hit *h, const char *what, const char *msg)
{
	if (h->line > 0)
		fail(c, NO_PREFIX, "%s:%d: %s%s: %s", c->creds.path, h->line, h->var, what, msg);
	else
		fail(c, 0, "environment %s%s: %s", h->var, what, msg);
}

static const struct credentials *creds(const struct parse_ctx *c)
{
	return c->creds.path ? &c->creds : NULL;
}

static int opt_index(const char *section, const char *key)
{
	return (int)(find_opt(opts, N_OPTS, section, key) - opts);
}

static void load_credentials(struct parse_ctx *c)
{
	const char *path = env("M2Z_CREDENTIALS_FILE");
	int idx = opt_index("zeebe", "credentials_file");
	char msg[1024];
	int rc;

	if (path && set_str(&c->cfg->zeebe.credentials_file, path)) {
		fail(c, 0, "out of memory");
		return;
	}
	if (path)
		c->seen[idx] = -1;
	path = c->cfg->zeebe.credentials_file;
	if (!path[0])
		return;
	rc = credentials_load(path, &c->creds, msg, sizeof(msg));
	if (rc == M2Z_ERR_IO && c->seen[idx] > 0)
		fail(c, c->seen[idx], "[zeebe] credentials_file: %s", msg);
	else if (rc == M2Z_ERR_IO)
		fail(c, 0, "environment M2Z_CREDENTIALS_FILE: %s", msg);
	else if (rc)
		fail(c, NO_PREFIX, "%s", msg);
}

static bool name_in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; (p = strstr(p, name)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

/* A name in the credentials file that we neither use nor know as the
 * console's informational extra is probably a typo: say so, go on. */
static void warn_unknown_names(const struct parse_ctx *c)
{
	for (size_t i = 0; i < c->creds.n; i++) {
		const char *name = c->creds.v[i].name;
		bool known = credentials_informational(name) || strcmp(name, "ZEEBE_INSECURE_CONNECTION") == 0;
		for (size_t k = 0; k < N_OPTS && !known; k++)
			known = opts[k].env && name_in_list(opts[k].env, name);
		if (!known)
			log_warn("%s:%d: %s is not a setting mqtt2zeebe reads; ignored", c->creds.path,
				 c->creds.v[i].line, name);
	}
}

/* ZEEBE_HOST/ZEEBE_PORT from one source (environment or file) as one
 * "host:port" hit; a missing half is 127.0.0.1 / 26500 (the Go client). */
static bool fold_host_port(struct parse_ctx *c, struct cred_hit *h, char *buf, size_t n)
{
	const struct cred_entry *eh = NULL, *ep = NULL;
	const char *host, *port;

	if (h->line > 0) {
		eh = credentials_get(&c->creds, "ZEEBE_HOST");
		ep = credentials_get(&c->creds, "ZEEBE_PORT");
		host = eh && eh->value[0] ? eh->value : NULL;
		port = ep && ep->value[0] ? ep->value : NULL;
	} else {
		host = env("ZEEBE_HOST");
		port = env("ZEEBE_PORT");
	}
	if (port && !port_ok(port)) {
		if (h->line > 0)
			fail(c, NO_PREFIX, "%s:%d: ZEEBE_PORT: expected a port 1..65535, got '%s'", c->creds.path,
				 ep->line, port);
		else
			fail(c, 0, "environment ZEEBE_PORT: expected a port 1..65535, got '%s'", port);
		return false;
	}
	snprintf(buf, n, "%s:%s", host ? host : ZEEBE_DEFAULT_HOST, port ? port : ZEEBE_DEFAULT_PORT);
	h->value = buf;
	snprintf(h->var, sizeof(h->var), "ZEEBE_HOST/ZEEBE_PORT");
	if (h->line > 0)
		snprintf(h->from, sizeof(h->from), "%s:%d (ZEEBE_HOST/ZEEBE_PORT)", c->creds.path, h->line);
	else
		snprintf(h->from, sizeof(h->from), "environment ZEEBE_HOST/ZEEBE_PORT");
	return true;
}

/* Two sources that both set an option to different values: the first wins
 * (see the precedence table in the README), but say so - with both sources. */
static void report_conflicts(const struct opt *o, const struct cred_hit *h, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		char a[300], b[300];
		int ta = -1, tb = -1;
		bool same;
		if (o->off == C(zeebe.address)) {
			char why[256];
			same = credentials_parse_address(h[0].value, a, sizeof(a), &ta, why, sizeof(why)) == 0 &&
			       credentials_parse_address(h[i].value, b, sizeof(b), &tb, why, sizeof(why)) == 0 &&
			       strcmp(a, b) == 0 && (ta == tb || ta < 0 || tb < 0);
		} else {
			same = strcmp(h[0].value, h[i].value) == 0;
		}
		if (same)
			continue;
		if (o->flags & F_SECRET)
			log_warn("[%s] %s: %s and %s differ; using %s", o->section, o->key, h[0].from,
				 h[i].from, h[0].from);
		else
			log_warn("[%s] %s: %s ('%s') and %s ('%s') differ; using %s", o->section, o->key,
				 h[0].from, h[0].value, h[i].from, h[i].value, h[0].from);
	}
}

static void env_address(struct parse_ctx *c)
{
	struct cred_hit h[CRED_MAX_HITS];
	char hostport[2][600];
	bool folded[2] = { false, false };
	int idx = opt_index("zeebe", "address"), ins = opt_index("zeebe", "insecure");
	size_t n = credentials_find(creds(c), ADDRESS_ENV, h, CRED_MAX_HITS), k = 0;

	for (size_t i = 0; i < n && !c->failed; i++) {
		if (strcmp(h[i].var, "ZEEBE_HOST") == 0 || strcmp(h[i].var, "ZEEBE_PORT") == 0) {
			int src = h[i].line > 0;
			if (folded[src] || !fold_host_port(c, &h[i], hostport[src], sizeof(hostport[src])))
				continue;
			folded[src] = true;
		}
		h[k++] = h[i];
	}
	if (c->failed)
		return;
	if (k > 0) {
		if (set_str(&c->cfg->zeebe.address, h[0].value))
			fail(c, 0, "out of memory");
		c->seen[idx] = -1;
		snprintf(c->from[idx], sizeof(c->from[idx]), "%s", h[0].from);
		report_conflicts(&opts[idx], h, k);
	}
	if (credentials_find(creds(c), "ZEEBE_INSECURE_CONNECTION", h, 1)) {
		c->cfg->zeebe.insecure = strcmp(h[0].value, "true") == 0;
		c->seen[ins] = -1;
		snprintf(c->from[ins], sizeof(c->from[ins]), "%s", h[0].from);
	}
}

static void apply_env(struct parse_ctx *c)
{
	struct cred_hit h[CRED_MAX_HITS];
	char msg[512], what[96], lower[64];
	const char *v;
	size_t n;

	load_credentials(c);
	if (!c->failed)
		env_address(c);
	for (size_t i = 0; i < N_OPTS && !c->failed; i++) {
		const struct opt *o = &opts[i];
		if (!o->env || (o->flags & F_ENV_OWN) || !(n = credentials_find(creds(c), o->env, h, CRED_MAX_HITS)))
			continue;
		v = h[0].value;
		if (o->type == T_ENUM) { /* CAMUNDA_AUTH_STRATEGY=OAUTH */
			size_t j = 0;
			for (; v[j] && j + 1 < sizeof(lower); j++)
				lower[j] = (char)tolower((unsigned char)v[j]);
			lower[j] = '\0';
			v = lower;
		}
		snprintf(what, sizeof(what), " ([%s] %s)", o->section, o->key);
		if (opt_set(c->cfg, o, v, true, msg, sizeof(msg))) {
			fail_hit(c, &h[0], what, msg);
			break;
		}
		c->seen[i] = -1; /* set, but not on a line of the INI file */
		snprintf(c->from[i], sizeof(c->from[i]), "%s", h[0].from);
		report_conflicts(o, h, n);
	}
	/* The token endpoint usually sits behind the same private CA. */
	v = c->cfg->zeebe.ca_certificate;
	if (!c->failed && c->seen[opt_index("zeebe", "ca_certificate")] < 0 && !c->cfg->oauth.ca_certificate[0] &&
	    set_str(&c->cfg->oauth.ca_certificate, v))
		fail(c, 0, "out of memory");
	if (!c->failed)
		warn_unknown_names(c);
}

/* ---- defaults that depend on other keys, and cross-field checks ---------- */

static void fail_opt(struct parse_ctx *c, const char *section, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Fail about a global key where its value came from: the environment
 * variable that set it, its line in the file, or the file (a default). */
static void fail_opt(struct parse_ctx *c, const char *section, const char *key, const char *fmt, ...)
{
	const struct opt *o = find_opt(opts, N_OPTS, section, key);
	size_t i = o ? (size_t)(o - opts) : 0;
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o && c->seen[i] < 0)
		fail(c, 0, "%s: %s", c->from[i], msg);
	else
		fail(c, o && c->seen[i] > 0 ? c->seen[i] : 0, "%s", msg);
}

static int seen_line(const struct parse_ctx *c, const char *section, const char *key)
{
	const struct opt *o = find_opt(opts, N_OPTS, section, key);
	int l = o ? c->seen[o - opts] : 0;
	return l > 0 ? l : 0;
}

static bool is_set(const struct parse_ctx *c, const char *section, const char *key)
{
	const struct opt *o = find_opt(opts, N_OPTS, section, key);
	return o && c->seen[o - opts] != 0;
}

/* "host:port" -> "host" (up to the last ':'), for the default audience. */
static int address_host(const char *addr, char **out)
{
	const char *colon = strrchr(addr, ':');
	size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
	char *s = strndup(addr, n);

	if (!s)
		return M2Z_ERR_NOMEM;
	free(*out);
	*out = s;
	return M2Z_OK;
}

/* host:port or a URL; a scheme decides TLS (over `insecure`). */
static void check_address(struct parse_ctx *c)
{
	int idx = opt_index("zeebe", "address");
	char hp[1024], why[512];
	int tls;

	if (credentials_parse_address(c->cfg->zeebe.address, hp, sizeof(hp), &tls, why, sizeof(why))) {
		if (c->seen[idx] < 0)
			fail(c, 0, "%s: [zeebe] address: %s", c->from[idx], why);
		else
			fail(c, seen_line(c, "zeebe", "address"), "[zeebe] address: %s", why);
		return;
	}
	if (set_str(&c->cfg->zeebe.address, hp))
		fail(c, 0, "out of memory");
	if (tls >= 0 && is_set(c, "zeebe", "insecure") && c->cfg->zeebe.insecure != !tls)
		log_warn("[zeebe] insecure = %s is overridden by the address scheme (%s)",
			 c->cfg->zeebe.insecure ? "true" : "false", tls ? "TLS" : "plaintext");
	if (tls >= 0)
		c->cfg->zeebe.insecure = !tls;
}

/* "environment CAMUNDA_CLIENT_ID", "FILE:LINE (NAME)", "INI:LINE ([oauth] key)" */
static void source_of(const struct parse_ctx *c, const char *section, const char *key, char *out, size_t n)
{
	int idx = opt_index(section, key);

	if (c->seen[idx] < 0)
		snprintf(out, n, "%s", c->from[idx]);
	else if (c->seen[idx] > 0)
		snprintf(out, n, "%s:%d ([%s] %s)", c->name, c->seen[idx], section, key);
	else
		snprintf(out, n, "the built-in default");
}

static void derive_auth(struct parse_ctx *c)
{
	struct conf_zeebe *z = &c->cfg->zeebe;
	bool client = c->cfg->oauth.client_id[0] || c->cfg->oauth.client_secret[0];

	if (z->auth == CONF_AUTH_AUTO)
		z->auth = client ? CONF_AUTH_OAUTH : z->username[0] ? CONF_AUTH_BASIC : CONF_AUTH_NONE;
	if (z->auth == CONF_AUTH_OAUTH && !client)
		fail(c, seen_line(c, "zeebe", "auth"), "[zeebe] auth = oauth needs [oauth] client_id and "
		     "client_secret (env CAMUNDA_CLIENT_ID, CAMUNDA_CLIENT_SECRET)");
	else if (z->auth == CONF_AUTH_BASIC && (!z->username[0] || !z->password[0]))
		fail(c, seen_line(c, "zeebe", "auth"), "[zeebe] auth = basic needs username and password "
		     "(env CAMUNDA_BASIC_AUTH_USERNAME, CAMUNDA_BASIC_AUTH_PASSWORD)");
	else if (z->auth == CONF_AUTH_BASIC && strchr(z->username, ':'))
		fail(c, seen_line(c, "zeebe", "username"), "[zeebe] username: expected a name without ':'");
	else if (z->auth != CONF_AUTH_OAUTH && client)
		log_warn("[zeebe] auth = %s: the OAuth client id and secret are not used", auth_names[z->auth]);
	if (!c->failed && z->auth == CONF_AUTH_BASIC && z->insecure)
		log_warn("[zeebe] basic authentication over plaintext: the password travels in clear");
}

static void derive_oauth(struct parse_ctx *c)
{
	struct conf_oauth *o = &c->cfg->oauth;

	o->enabled = c->cfg->zeebe.auth == CONF_AUTH_OAUTH;
	if (!o->enabled || c->failed)
		return;
	if (!o->client_id[0])
		fail_opt(c, "oauth", "client_secret", "[oauth] client_id (env ZEEBE_CLIENT_ID) is required when client_secret is set");
	else if (!o->client_secret[0])
		fail_opt(c, "oauth", "client_id", "[oauth] client_secret (env ZEEBE_CLIENT_SECRET) is required when client_id is set");
	else if (!o->url[0])
		fail_opt(c, "oauth", "url", "[oauth] url (env ZEEBE_AUTHORIZATION_SERVER_URL) must not be empty when OAuth is on");
	else if (strncmp(o->url, "https://", 8) != 0 && strncmp(o->url, "http://", 7) != 0)
		fail_opt(c, "oauth", "url", "[oauth] url: expected an https:// URL, got '%s'", o->url);
	source_of(c, "oauth", "client_id", o->client_id_from, sizeof(o->client_id_from));
	source_of(c, "oauth", "audience", o->audience_from, sizeof(o->audience_from));
	if (!c->failed && !o->audience[0]) {
		char addr[CONF_FROM_MAX - 64];
		source_of(c, "zeebe", "address", addr, sizeof(addr));
		snprintf(o->audience_from, sizeof(o->audience_from), "the gateway address without its port, from %s",
			 addr);
		if (address_host(c->cfg->zeebe.address, &o->audience))
			fail(c, 0, "out of memory");
	}
	if (!c->failed && set_str(&o->token_cache_dir, !o->token_cache ? ""
				  : o->token_cache_dir[0] ? o->token_cache_dir : c->cfg->spool.directory))
		fail(c, 0, "out of memory");
}

static void derive_mqtt(struct parse_ctx *c)
{
	struct conf_mqtt *m = &c->cfg->mqtt;
	char host[256] = "";

	if (m->tls && !is_set(c, "mqtt", "port"))
		m->port = 8883;
	if (!m->client_id[0]) {
		char id[300];
		if (gethostname(host, sizeof(host) - 1) != 0)
			host[0] = '\0';
		host[sizeof(host) - 1] = '\0';
		snprintf(id, sizeof(id), host[0] ? "mqtt2zeebe-%s" : "mqtt2zeebe", host);
		if (set_str(&m->client_id, id))
			fail(c, 0, "out of memory");
	}
	if (m->reconnect_min_ms > m->reconnect_max_ms)
		fail_opt(c, "mqtt", "reconnect_min", "[mqtt] reconnect_min (%" PRId64 "ms) must not exceed reconnect_max (%" PRId64 "ms)",
		     m->reconnect_min_ms, m->reconnect_max_ms);
	if ((m->cert_file[0] != 0) != (m->key_file[0] != 0))
		fail_opt(c, "mqtt", m->cert_file[0] ? "cert_file" : "key_file", "[mqtt] cert_file and key_file go together");
}

static void check_routes(struct parse_ctx *c)
{
	static const char *const required[] = { "topic", "message_name", "correlation_key" };
	struct config *cfg = c->cfg;

	for (size_t i = 0; i < cfg->n_workers && !c->failed; i++)
		check_worker(c, i);
	if (cfg->n_routes == 0 && cfg->n_workers == 0) {
		fail(c, 0, "no [route NAME] or [worker NAME] section: nothing to do");
		return;
	}
	for (size_t i = 0; i < cfg->n_routes && !c->failed; i++) {
		struct conf_route *r = &cfg->routes[i];
		for (size_t k = 0; k < 3 && !c->failed; k++) {
			const struct opt *o = find_opt(route_opts, N_ROUTE_OPTS, "route", required[k]);
			if (!(*(char **)((char *)r + o->off))[0])
				fail(c, r->line, "[route %s] needs %s", r->name, required[k]);
		}
		if (!c->failed && !r->wrap_key[0])
			fail(c, r->line, "[route %s] wrap_key must not be empty", r->name);
		if (!c->failed && strcmp(r->message_id, "none") != 0 && r->ttl_ms == 0)
			log_warn("[route %s]: message_id is set but ttl = 0: Zeebe de-duplicates only while "
				 "a message is buffered, so repeats are not detected", r->name);
	}
}

/* Operability: status topic default, metrics address, CA files readable
 * PEM (else gRPC core or mbedTLS fail later with a cryptic message). */
static void check_ca_file(struct parse_ctx *c, const char *section, const char *key, const char *path)
{
	char head[8192];
	size_t n;
	FILE *f;

	if (!path[0])
		return;
	f = fopen(path, "r");
	if (!f) {
		fail_opt(c, section, key, "[%s] %s: cannot read the CA file '%s': %s",
			 section, key, path, strerror(errno));
		return;
	}
	n = fread(head, 1, sizeof(head) - 1, f);
	fclose(f);
	head[n] = '\0';
	if (!strstr(head, "-----BEGIN CERTIFICATE-----"))
		fail_opt(c, section, key, "[%s] %s: expected a PEM certificate file "
			 "(-----BEGIN CERTIFICATE-----), got '%s'", section, key, path);
}

static void check_ops(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;
	const char *l = cfg->metrics.listen, *colon = strrchr(l, ':');
	char topic[600];

	if (!cfg->status.topic[0]) {
		snprintf(topic, sizeof(topic), "mqtt2zeebe/%s/status", cfg->mqtt.client_id);
		if (set_str(&cfg->status.topic, topic))
			fail(c, 0, "out of memory");
	} else if (strpbrk(cfg->status.topic, "+#")) {
		fail(c, seen_line(c, "status", "topic"), "[status] topic: expected a topic without + or #");
	}
	if (l[0] && (!colon || !port_ok(colon + 1)))
		fail(c, seen_line(c, "metrics", "listen"),
		     "[metrics] listen: expected host:port like 127.0.0.1:9464, got '%s'", l);
	if (!cfg->zeebe.insecure)
		check_ca_file(c, "zeebe", "ca_certificate", cfg->zeebe.ca_certificate);
	if (cfg->oauth.enabled)
		check_ca_file(c, "oauth", "ca_certificate", cfg->oauth.ca_certificate);
}

static void check_all(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;

	check_address(c);
	if (!c->failed)
		derive_auth(c);
	if (!c->failed)
		derive_oauth(c);
	if (!c->failed)
		derive_mqtt(c);
	if (!c->failed && cfg->spool.segment_bytes > cfg->spool.max_bytes)
		fail_opt(c, "spool", "segment_bytes", "[spool] segment_bytes must not exceed max_bytes");
	if (!c->failed && cfg->forward.retry_initial_ms > cfg->forward.retry_max_ms)
		fail_opt(c, "forward", "retry_initial", "[forward] retry_initial must not exceed retry_max");
	if (!c->failed)
		check_routes(c);
	if (!c->failed)
		check_ops(c);
	if (c->failed)
		return;
	if (cfg->oauth.enabled && strncmp(cfg->oauth.url, "http://", 7) == 0)
		log_warn("[oauth] url %s is plain http: the client secret travels in clear", cfg->oauth.url);
	if (cfg->oauth.enabled && cfg->zeebe.insecure)
		log_warn("[zeebe] insecure = true with OAuth: the bearer token travels in clear");
}

/* ---- where each value came from (--check) ------------------------------ */

struct conf_origin {
	int line[N_OPTS];               /* > 0: file line; 0: see env/note */
	char from[N_OPTS][CONF_FROM_MAX]; /* "environment NAME" or "FILE:LINE (NAME)"
					     (credentials file), or "" */
	const char *note[N_OPTS];       /* a derived default, or NULL */
	int (*route_line)[N_ROUTE_OPTS];/* per route, 0 = default; owned */
};


static void origin_notes(const struct parse_ctx *c, struct conf_origin *og)
{
	const struct config *cfg = c->cfg;
	int i = opt_index("oauth", "audience");

	if (cfg->oauth.enabled && !c->seen[i])
		og->note[i] = "derived (zeebe address without :port)";
	/* apply_env() gives the token endpoint the gateway's CA from the
	 * environment or the credentials file: say so. */
	i = opt_index("oauth", "ca_certificate");
	if (!c->seen[i] && c->seen[opt_index("zeebe", "ca_certificate")] < 0 && cfg->oauth.ca_certificate[0])
		memcpy(og->from[i], og->from[opt_index("zeebe", "ca_certificate")], sizeof(og->from[i]));
	i = opt_index("mqtt", "port");
	if (cfg->mqtt.tls && !c->seen[i])
		og->note[i] = "derived (8883 with tls = true)";
	i = opt_index("mqtt", "client_id");
	if (!c->seen[i])
		og->note[i] = "derived (mqtt2zeebe-<hostname>)";
}

/* After a successful load: keep where each value came from. Takes over
 * c->route_seen. */
static void record_origin(struct parse_ctx *c)
{
	struct conf_origin *og = calloc(1, sizeof(*og));

	if (!og) {
		fail(c, 0, "out of memory");
		return;
	}
	/* The environment and the credentials file win over the INI file. */
	for (size_t i = 0; i < N_OPTS; i++) {
		if (c->seen[i] > 0)
			og->line[i] = c->seen[i];
		else if (c->seen[i] < 0)
			snprintf(og->from[i], sizeof(og->from[i]), "%s", c->from[i]);
	}
	origin_notes(c, og);
	og->route_line = c->route_seen;
	c->route_seen = NULL;
	c->cfg->origin = og;
}

static const char *origin_text(const struct config *cfg, size_t i, char *b, size_t n)
{
	const struct conf_origin *og = cfg->origin;

	if (og && strncmp(og->from[i], "environment ", 12) == 0)
		snprintf(b, n, "env %s", og->from[i] + 12);
	else if (og && og->from[i][0])
		snprintf(b, n, "%s", og->from[i]);
	else if (og && og->line[i])
		snprintf(b, n, "%s:%d", cfg->path, og->line[i]);
	else if (og && og->note[i])
		snprintf(b, n, "%s", og->note[i]);
	else
		snprintf(b, n, "default");
	return b;
}

const char *conf_origin(const struct config *cfg, const char *section, const char *key, char *b, size_t n)
{
	const struct opt *o = find_opt(opts, N_OPTS, section, key);

	if (!o) {
		snprintf(b, n, "unknown key");
		return b;
	}
	return origin_text(cfg, (size_t)(o - opts), b, n);
}

static bool opt_equal(const void *a, const void *b, const struct opt *o)
{
	const void *fa = (const char *)a + o->off, *fb = (const char *)b + o->off;

	switch (o->type) {
	case T_STR: return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
	case T_BOOL: return *(const bool *)fa == *(const bool *)fb;
	case T_INT: case T_DUR_S: case T_ENUM: return *(const int *)fa == *(const int *)fb;
	case T_DUR: return *(const int64_t *)fa == *(const int64_t *)fb;
	case T_SIZE64: return *(const uint64_t *)fa == *(const uint64_t *)fb;
	case T_SIZET: return *(const size_t *)fa == *(const size_t *)fb;
	}
	return false;
}

void conf_diff(const struct config *a, const struct config *b,
	       void (*fn)(void *arg, const char *section, const char *key), void *arg)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (!opt_equal(a, b, &opts[i]))
			fn(arg, opts[i].section, opts[i].key);
}

/* ---- load / free ---------------------------------------------------------------- */

void conf_free(struct config *cfg)
{
	if (!cfg)
		return;
	free_strings(cfg, opts, N_OPTS);
	for (size_t i = 0; i < cfg->n_routes; i++)
		conf_route_free(&cfg->routes[i]);
	free(cfg->routes);
	for (size_t i = 0; i < cfg->n_workers; i++)
		conf_worker_free(&cfg->workers[i]);
	free(cfg->workers);
	free(cfg->path);
	if (cfg->origin)
		free(cfg->origin->route_line);
	free(cfg->origin);
	free(cfg);
}

int conf_load_string(const char *name, const char *text, struct config **out, char *err, size_t errlen)
{
	struct parse_ctx c = { .name = name, .text = text, .len = strlen(text), .err = err, .errlen = errlen };
	char *line = NULL;

	if (err && errlen)
		err[0] = '\0';
	c.cfg = calloc(1, sizeof(*c.cfg));
	line = malloc(CONF_MAX_LINE + 1);
	if (!c.cfg || !line || !(c.cfg->path = strdup(name)) || apply_defaults(c.cfg, opts, N_OPTS)) {
		fail(&c, 0, "out of memory");
		goto out;
	}
	parse_text(&c, line);
	if (!c.failed)
		apply_env(&c);
	if (!c.failed)
		check_all(&c);
	if (!c.failed)
		record_origin(&c);
out:
	free(line);
	free(c.route_seen);
	credentials_free(&c.creds);
	free(c.worker_seen);
	if (c.failed) {
		conf_free(c.cfg);
		return M2Z_ERR_CONFIG;
	}
	*out = c.cfg;
	return M2Z_OK;
}

int conf_load(const char *path, struct config **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t n = 0;
	int rc = M2Z_ERR_CONFIG;

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return M2Z_ERR_CONFIG;
	}
	text = malloc(MAX_FILE_BYTES + 1);
	if (!text) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	n = fread(text, 1, MAX_FILE_BYTES + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
	if (n > MAX_FILE_BYTES) {
		snprintf(err, errlen, "%s: larger than %d bytes", path, MAX_FILE_BYTES);
		goto out;
	}
	if (memchr(text, '\0', n)) {
		/* conf_load_string stops at a NUL; find its line for the message */
		int line = 1;
		for (const char *p = text; *p; p++)
			line += *p == '\n';
		snprintf(err, errlen, "%s:%d: NUL byte in line", path, line);
		goto out;
	}
	text[n] = '\0';
	rc = conf_load_string(path, text, out, err, errlen);
out:
	free(text);
	fclose(f);
	return rc;
}

/* ---- printing (--check) ------------------------------------------------------------ */

static void print_value(FILE *f, const void *base, const struct opt *o)
{
	const void *field = (const char *)base + o->off;
	char b[64];

	switch (o->type) {
	case T_STR: {
		const char *s = *(char *const *)field;
		if (o->flags & F_SECRET)
			s = s[0] ? "***" : "(unset)";
		fputs(s, f);
		return;
	}
	case T_BOOL: fputs(*(const bool *)field ? "true" : "false", f); return;
	case T_INT: fprintf(f, "%d", *(const int *)field); return;
	case T_ENUM: fputs(o->names[*(const int *)field], f); return;
	case T_DUR: format_duration(*(const int64_t *)field, b, sizeof(b)); break;
	case T_DUR_S: format_duration((int64_t)*(const int *)field * 1000, b, sizeof(b)); break;
	case T_SIZE64: fmt_size(*(const uint64_t *)field, b, sizeof(b)); break;
	case T_SIZET: fmt_size(*(const size_t *)field, b, sizeof(b)); break;
	}
	fputs(b, f);
}

#define ORIGIN_COLUMN 40

/* "key = value" padded to ORIGIN_COLUMN, then "; SOURCE". */
static void print_key(FILE *f, const void *base, const struct opt *o, const char *source)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);

	if (!m)
		return;
	fprintf(m, "%s = ", o->key);
	print_value(m, base, o);
	fclose(m);
	fprintf(f, "%-*s ; %s\n", ORIGIN_COLUMN, text ? text : "", source);
	free(text);
}

static void print_route(const struct config *cfg, size_t r, FILE *f)
{
	const struct conf_route *cr = &cfg->routes[r];
	const struct conf_origin *og = cfg->origin;
	char src[512];

	fprintf(f, "\n[route %s]\n", cr->name);
	for (size_t i = 0; i < N_ROUTE_OPTS; i++) {
		int line = og && og->route_line ? og->route_line[r][i] : 0;
		if (line > 0)
			snprintf(src, sizeof(src), "%s:%d", cfg->path, line);
		else
			snprintf(src, sizeof(src), "default");
		print_key(f, cr, &route_opts[i], src);
	}
	for (size_t v = 0; v < cr->n_vars; v++) {
		char *kv = NULL;
		if (asprintf(&kv, "var.%s = %s", cr->var_names[v], cr->var_templates[v]) < 0)
			return;
		fprintf(f, "%-*s ; %s:%d\n", ORIGIN_COLUMN, kv, cfg->path, cr->var_lines[v]);
		free(kv);
	}
}

void conf_print(const struct config *cfg, FILE *f)
{
	const char *sec = "";
	char src[512];

	fprintf(f, "# resolved configuration of %s (after environment overrides);\n"
		"# after each value: where it came from (file:line, env NAME, default)\n", cfg->path);
	for (size_t i = 0; i < N_OPTS; i++) {
		if (strcmp(sec, opts[i].section) != 0) {
			sec = opts[i].section;
			fprintf(f, "\n[%s]\n", sec);
			if (strcmp(sec, "oauth") == 0)
				fprintf(f, "# OAuth %s\n", cfg->oauth.enabled ? "on" : "off (no client_id/client_secret)");
		}
		print_key(f, cfg, &opts[i], origin_text(cfg, i, src, sizeof(src)));
	}
	for (size_t r = 0; r < cfg->n_routes; r++)
		print_route(cfg, r, f);
	for (size_t w = 0; w < cfg->n_workers; w++) {
		fprintf(f, "\n[worker %s]\n", cfg->workers[w].name);
		for (size_t i = 0; i < N_WORKER_OPTS; i++) {
			fprintf(f, "%s = ", worker_opts[i].key);
			print_value(f, &cfg->workers[w], &worker_opts[i]);
			fputc('\n', f);
		}
	}
}

static void print_ref_table(FILE *f, const struct opt *table, size_t count, const char *section)
{
	static const char *const type_names[] = { "string", "bool", "integer", "duration", "duration",
						   "size", "size", "enum" };

	fprintf(f, "| key | type | default | range | env | meaning |\n|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < count; i++) {
		const struct opt *o = &table[i];
		char lo[32] = "", hi[32] = "", envs[200] = "";
		if (strcmp(o->section, section) != 0)
			continue;
		/* "A B" -> "`A`, `B`" */
		for (const char *p = o->env; p && *p;) {
			size_t n = strcspn(p, " "), l = strlen(envs);
			snprintf(envs + l, sizeof(envs) - l, "%s`%.*s`", l ? ", " : "", (int)n, p);
			p += n + (p[n] == ' ');
		}
		if (o->type == T_INT) {
			snprintf(lo, sizeof(lo), "%" PRId64 "..", o->min);
			snprintf(hi, sizeof(hi), "%" PRId64, o->max);
		} else if ((o->type == T_DUR || o->type == T_DUR_S) && o->min != INT64_MIN) {
			format_duration(o->min, lo, sizeof(lo));
			strcat(lo, "..");
			if (o->max == INT64_MAX)
				strcpy(hi, "");
			else
				format_duration(o->max, hi, sizeof(hi));
		} else if (o->type == T_SIZE64 || o->type == T_SIZET) {
			fmt_size((uint64_t)o->min, lo, sizeof(lo));
			strcat(lo, "..");
			if (o->max != INT64_MAX)
				fmt_size((uint64_t)o->max, hi, sizeof(hi));
		}
		fprintf(f, "| `%s` | %s | %s%s%s | %s%s | %s | %s%s |\n", o->key, type_names[o->type],
			o->dflt && *o->dflt ? "`" : "", o->dflt && *o->dflt ? o->dflt : "(empty)",
			o->dflt && *o->dflt ? "`" : "", lo, hi, envs, o->flags & F_REQUIRED ? "**required.** " : "", o->help);
	}
}

void conf_print_reference(FILE *f)
{
	for (int i = 0; sections[i]; i++) {
		fprintf(f, "### [%s]\n\n", sections[i]);
		print_ref_table(f, opts, N_OPTS, sections[i]);
		fputc('\n', f);
	}
	fprintf(f, "### [route NAME]\n\n");
	print_ref_table(f, route_opts, N_ROUTE_OPTS, "route");
	fprintf(f, "| `var.NAME` | template | | | | extra variable NAME (repeatable) |\n");
	fprintf(f, "\n### [worker NAME]\n\n");
	print_ref_table(f, worker_opts, N_WORKER_OPTS, "worker");
}
