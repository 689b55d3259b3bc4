/* conf.c - the INI configuration: one option table, a line reader,
 * file:line errors, environment overrides (Camunda's ZEEBE_* conventions),
 * defaults and cross-field checks. */
#define LOG_MODULE "conf"
#include "conf.h"

#include "err.h"
#include "log.h"

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
static const char *const level_names[] = { "error", "warn", "info", "debug", NULL };
static const char *const vars_names[] = { "payload", "none", NULL };

#define C(f) offsetof(struct config, f)
#define R(f) offsetof(struct conf_route, f)
#define RL(f) ((int)offsetof(struct conf_route, f))
#define NOLIM INT64_MIN, INT64_MAX
#define MS_DAY (86400000LL)

static const struct opt opts[] = {
	{ "zeebe", "address", T_STR, C(zeebe.address), -1, ZEEBE_DEFAULT_HOST ":" ZEEBE_DEFAULT_PORT, NOLIM, NULL,
	  "ZEEBE_ADDRESS", F_ENV_OWN, "gateway host:port (ZEEBE_HOST/ZEEBE_PORT win over ZEEBE_ADDRESS)" },
	{ "zeebe", "insecure", T_BOOL, C(zeebe.insecure), -1, "false", NOLIM, NULL,
	  "ZEEBE_INSECURE_CONNECTION", F_ENV_OWN, "plaintext gRPC instead of TLS (env: only the exact value \"true\" turns it on)" },
	{ "zeebe", "ca_certificate", T_STR, C(zeebe.ca_certificate), -1, NULL, NOLIM, NULL,
	  "ZEEBE_CA_CERTIFICATE_PATH", 0, "PEM file of trusted roots for the gateway; empty = system roots" },
	{ "zeebe", "override_authority", T_STR, C(zeebe.override_authority), -1, NULL, NOLIM, NULL,
	  "ZEEBE_OVERRIDE_AUTHORITY", 0, "TLS server name to verify instead of the address host" },
	{ "zeebe", "request_timeout", T_DUR, C(zeebe.request_timeout_ms), -1, "10s", 100, MS_DAY, NULL,
	  NULL, 0, "deadline of one PublishMessage call" },
	{ "zeebe", "keepalive", T_DUR, C(zeebe.keepalive_ms), -1, "45s", 30000, MS_DAY, NULL,
	  "ZEEBE_KEEP_ALIVE", 0, "gRPC keepalive ping interval; the gateway refuses pings under 30s (env value in ms)" },
	{ "zeebe", "max_message_size", T_SIZET, C(zeebe.max_message_size), -1, "4MiB", 1024, 1LL << 30, NULL,
	  NULL, 0, "largest PublishMessage request; bigger events are dead letters" },
	{ "zeebe", "max_in_flight", T_INT, C(zeebe.max_in_flight), -1, "64", 1, 10000, NULL,
	  NULL, 0, "calls in flight on the channel" },

	{ "oauth", "client_id", T_STR, C(oauth.client_id), -1, NULL, NOLIM, NULL,
	  "ZEEBE_CLIENT_ID", 0, "OAuth client id; OAuth is on when client_id or client_secret is set" },
	{ "oauth", "client_secret", T_STR, C(oauth.client_secret), -1, NULL, NOLIM, NULL,
	  "ZEEBE_CLIENT_SECRET", F_SECRET, "OAuth client secret (prefer the environment)" },
	{ "oauth", "url", T_STR, C(oauth.url), -1, "https://login.cloud.camunda.io/oauth/token", NOLIM, NULL,
	  "ZEEBE_AUTHORIZATION_SERVER_URL", 0, "token endpoint (client-credentials grant)" },
	{ "oauth", "audience", T_STR, C(oauth.audience), -1, NULL, NOLIM, NULL,
	  "ZEEBE_TOKEN_AUDIENCE", 0, "token audience; empty = the zeebe address without its :port" },
	{ "oauth", "scope", T_STR, C(oauth.scope), -1, NULL, NOLIM, NULL,
	  "ZEEBE_TOKEN_SCOPE", 0, "token scope; sent only when set" },
	{ "oauth", "ca_certificate", T_STR, C(oauth.ca_certificate), -1, NULL, NOLIM, NULL,
	  NULL, 0, "PEM roots for the token endpoint; empty = ZEEBE_CA_CERTIFICATE_PATH if set, else system roots" },
	{ "oauth", "request_timeout", T_DUR, C(oauth.request_timeout_ms), -1, "10s", 100, 600000, NULL,
	  "ZEEBE_AUTH_REQUEST_TIMEOUT", 0, "deadline of one token request (env value in ms)" },
	{ "oauth", "refresh_ahead", T_DUR, C(oauth.refresh_ahead_ms), -1, "30s", 10000, MS_DAY, NULL,
	  NULL, 0, "fetch a new token this long before the old one expires" },

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

	{ "forward", "retry_initial", T_DUR, C(forward.retry_initial_ms), -1, "100ms", 1, MS_DAY, NULL,
	  NULL, 0, "first retry delay" },
	{ "forward", "retry_max", T_DUR, C(forward.retry_max_ms), -1, "5s", 1, MS_DAY, NULL,
	  NULL, 0, "retry delay cap (exponential backoff with jitter)" },
	{ "forward", "shutdown_timeout", T_DUR, C(forward.shutdown_timeout_ms), -1, "5s", 0, 600000, NULL,
	  NULL, 0, "on SIGTERM, wait this long for calls in flight" },
	{ "forward", "dead_letter_topic", T_STR, C(forward.dead_letter_topic), -1, NULL, NOLIM, NULL,
	  NULL, 0, "also publish each dead letter to this MQTT topic; empty = off" },

	{ "log", "level", T_ENUM, C(log.level), -1, "info", NOLIM, level_names,
	  "M2Z_LOG_LEVEL", 0, "error | warn | info | debug" },
	{ "log", "stats_interval", T_DUR, C(log.stats_interval_ms), -1, "60s", 0, MS_DAY, NULL,
	  NULL, 0, "interval of the counters line; 0 = off" },
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
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))
#define N_ROUTE_OPTS (sizeof(route_opts) / sizeof(route_opts[0]))

static const char *const sections[] = { "zeebe", "oauth", "mqtt", "spool", "forward", "log", NULL };

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

static void fmt_duration(int64_t ms, char *b, size_t n)
{
	static const struct { const char *u; int64_t m; } u[] = {
		{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 },
	};
	if (ms == 0) {
		snprintf(b, n, "0");
		return;
	}
	for (size_t i = 0; i < 4; i++) {
		if (ms % u[i].m == 0) {
			snprintf(b, n, "%" PRId64 "%s", ms / u[i].m, u[i].u);
			return;
		}
	}
	snprintf(b, n, "%" PRId64 "ms", ms);
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
		fmt_duration(v, a, sizeof(a));
		fmt_duration(o->min, lo, sizeof(lo));
		fmt_duration(o->max, hi, sizeof(hi));
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

enum sec_kind { SEC_NONE, SEC_GLOBAL, SEC_ROUTE };

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
	const char *env_name[N_OPTS]; /* environment variable a global key came from */
};

static void fail(struct parse_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record the first error only: later ones are usually fallout. */
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
		     : snprintf(c->err, c->errlen, "%s: ", c->name);
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
	routes = realloc(cfg->routes, (cfg->n_routes + 1) * sizeof(*routes));
	if (routes)
		cfg->routes = routes;
	seen = realloc(c->route_seen, (cfg->n_routes + 1) * sizeof(*seen));
	if (seen)
		c->route_seen = seen;
	if (!routes || !seen) {
		fail(c, c->line, "out of memory");
		return;
	}
	r = &cfg->routes[cfg->n_routes];
	memset(r, 0, sizeof(*r));
	memset(seen[cfg->n_routes], 0, sizeof(seen[0]));
	cfg->n_routes++;
	r->line = c->line;
	r->name = strdup(name);
	if (!r->name || apply_defaults(r, route_opts, N_ROUTE_OPTS)) {
		fail(c, c->line, "out of memory");
		return;
	}
	c->sec = SEC_ROUTE;
	c->route = cfg->n_routes - 1;
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
	for (int i = 0; sections[i]; i++) {
		if (strcmp(name, sections[i]) == 0) {
			c->sec = SEC_GLOBAL;
			c->section = sections[i];
			return;
		}
	}
	fail(c, c->line, "unknown section [%s] (expected one of: zeebe, oauth, mqtt, spool, forward, log, route NAME)",
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
	const struct opt *o;
	char msg[512];
	size_t i;

	if (strncmp(key, "var.", 4) == 0) {
		add_var(c, r, key + 4, value);
		return;
	}
	o = find_opt(route_opts, N_ROUTE_OPTS, "route", key);
	if (!o) {
		char keys[512];
		expected_keys(route_opts, N_ROUTE_OPTS, "route", keys, sizeof(keys));
		fail(c, c->line, "unknown key '%s' in [route %s] (expected one of: %s, var.NAME)", key, r->name, keys);
		return;
	}
	i = (size_t)(o - route_opts);
	if (c->route_seen[c->route][i]) {
		fail(c, c->line, "[route %s] %s set twice (first at line %d)", r->name, key,
		     c->route_seen[c->route][i]);
		return;
	}
	c->route_seen[c->route][i] = c->line;
	if (opt_set(r, o, value, false, msg, sizeof(msg))) {
		fail(c, c->line, "[route %s] %s: %s", r->name, key, msg);
		return;
	}
	if (o->line_off >= 0)
		*(int *)((char *)r + o->line_off) = c->line;
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
	}
}

/* ---- environment overrides ----------------------------------------------------- */

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

/* KEY was set by environment variable NAME, not on a line. */
static void note_env(struct parse_ctx *c, const char *section, const char *key, const char *name)
{
	const struct opt *o = find_opt(opts, N_OPTS, section, key);

	c->seen[o - opts] = -1;
	c->env_name[o - opts] = name;
}

/* ZEEBE_HOST/ZEEBE_PORT win over ZEEBE_ADDRESS; a missing half defaults to
 * 127.0.0.1 / 26500 (the Go client's rule). */
static void env_address(struct parse_ctx *c)
{
	const char *host = env("ZEEBE_HOST"), *port = env("ZEEBE_PORT"), *addr = env("ZEEBE_ADDRESS");
	char buf[1024];

	if (port && !port_ok(port)) {
		fail(c, 0, "environment ZEEBE_PORT: expected a port 1..65535, got '%s'", port);
		return;
	}
	if (host || port) {
		snprintf(buf, sizeof(buf), "%s:%s", host ? host : ZEEBE_DEFAULT_HOST, port ? port : ZEEBE_DEFAULT_PORT);
		addr = buf;
	}
	if (addr && set_str(&c->cfg->zeebe.address, addr))
		fail(c, 0, "out of memory");
	if (addr)
		note_env(c, "zeebe", "address", host && port ? "ZEEBE_HOST/ZEEBE_PORT" : host ? "ZEEBE_HOST"
						 : port ? "ZEEBE_PORT" : "ZEEBE_ADDRESS");
	if ((addr = env("ZEEBE_INSECURE_CONNECTION"))) {
		c->cfg->zeebe.insecure = strcmp(addr, "true") == 0;
		note_env(c, "zeebe", "insecure", "ZEEBE_INSECURE_CONNECTION");
	}
}

static void apply_env(struct parse_ctx *c)
{
	char msg[512];
	const char *v;

	env_address(c);
	for (size_t i = 0; i < N_OPTS && !c->failed; i++) {
		const struct opt *o = &opts[i];
		if (!o->env || (o->flags & F_ENV_OWN) || !(v = env(o->env)))
			continue;
		if (opt_set(c->cfg, o, v, true, msg, sizeof(msg)))
			fail(c, 0, "environment %s ([%s] %s): %s", o->env, o->section, o->key, msg);
		else
			note_env(c, o->section, o->key, o->env);
	}
	/* The token endpoint usually sits behind the same private CA. */
	v = env("ZEEBE_CA_CERTIFICATE_PATH");
	if (v && !c->cfg->oauth.ca_certificate[0]) {
		if (set_str(&c->cfg->oauth.ca_certificate, v))
			fail(c, 0, "out of memory");
		note_env(c, "oauth", "ca_certificate", "ZEEBE_CA_CERTIFICATE_PATH");
	}
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
	if (o && c->env_name[i])
		fail(c, 0, "environment %s: %s", c->env_name[i], msg);
	else
		fail(c, o && c->seen[i] > 0 ? c->seen[i] : 0, "%s", msg);
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

static void check_address(struct parse_ctx *c)
{
	const char *a = c->cfg->zeebe.address;
	const char *colon = strrchr(a, ':');

	if (!colon || colon == a || !port_ok(colon + 1))
		fail_opt(c, "zeebe", "address", "[zeebe] address: expected host:port like gateway.local:26500, got '%s'", a);
}

static void derive_oauth(struct parse_ctx *c)
{
	struct conf_oauth *o = &c->cfg->oauth;

	o->enabled = o->client_id[0] || o->client_secret[0];
	if (!o->enabled)
		return;
	if (!o->client_id[0])
		fail_opt(c, "oauth", "client_secret", "[oauth] client_id (env ZEEBE_CLIENT_ID) is required when client_secret is set");
	else if (!o->client_secret[0])
		fail_opt(c, "oauth", "client_id", "[oauth] client_secret (env ZEEBE_CLIENT_SECRET) is required when client_id is set");
	else if (!o->url[0])
		fail_opt(c, "oauth", "url", "[oauth] url (env ZEEBE_AUTHORIZATION_SERVER_URL) must not be empty when OAuth is on");
	else if (strncmp(o->url, "https://", 8) != 0 && strncmp(o->url, "http://", 7) != 0)
		fail_opt(c, "oauth", "url", "[oauth] url: expected an https:// URL, got '%s'", o->url);
	if (!c->failed && !o->audience[0] && address_host(c->cfg->zeebe.address, &o->audience))
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

	if (cfg->n_routes == 0) {
		fail(c, 0, "no [route NAME] section: nothing to forward");
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

static void check_all(struct parse_ctx *c)
{
	struct config *cfg = c->cfg;

	check_address(c);
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
	if (c->failed)
		return;
	if (cfg->oauth.enabled && strncmp(cfg->oauth.url, "http://", 7) == 0)
		log_warn("[oauth] url %s is plain http: the client secret travels in clear", cfg->oauth.url);
	if (cfg->oauth.enabled && cfg->zeebe.insecure)
		log_warn("[zeebe] insecure = true with OAuth: the bearer token travels in clear");
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
	free(cfg->path);
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
out:
	free(line);
	free(c.route_seen);
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
	case T_DUR: fmt_duration(*(const int64_t *)field, b, sizeof(b)); break;
	case T_DUR_S: fmt_duration((int64_t)*(const int *)field * 1000, b, sizeof(b)); break;
	case T_SIZE64: fmt_size(*(const uint64_t *)field, b, sizeof(b)); break;
	case T_SIZET: fmt_size(*(const size_t *)field, b, sizeof(b)); break;
	}
	fputs(b, f);
}

void conf_print(const struct config *cfg, FILE *f)
{
	const char *sec = "";

	fprintf(f, "# resolved configuration of %s (after environment overrides)\n", cfg->path);
	for (size_t i = 0; i < N_OPTS; i++) {
		if (strcmp(sec, opts[i].section) != 0) {
			sec = opts[i].section;
			fprintf(f, "%s[%s]\n", i ? "\n" : "", sec);
			if (strcmp(sec, "oauth") == 0)
				fprintf(f, "# OAuth %s\n", cfg->oauth.enabled ? "on" : "off (no client_id/client_secret)");
		}
		fprintf(f, "%s = ", opts[i].key);
		print_value(f, cfg, &opts[i]);
		fputc('\n', f);
	}
	for (size_t r = 0; r < cfg->n_routes; r++) {
		const struct conf_route *cr = &cfg->routes[r];
		fprintf(f, "\n[route %s]\n", cr->name);
		for (size_t i = 0; i < N_ROUTE_OPTS; i++) {
			fprintf(f, "%s = ", route_opts[i].key);
			print_value(f, cr, &route_opts[i]);
			fputc('\n', f);
		}
		for (size_t v = 0; v < cr->n_vars; v++)
			fprintf(f, "var.%s = %s\n", cr->var_names[v], cr->var_templates[v]);
	}
}

static void print_ref_table(FILE *f, const struct opt *table, size_t count, const char *section)
{
	static const char *const type_names[] = { "string", "bool", "integer", "duration", "duration",
						   "size", "size", "enum" };

	fprintf(f, "| key | type | default | range | env | meaning |\n|---|---|---|---|---|---|\n");
	for (size_t i = 0; i < count; i++) {
		const struct opt *o = &table[i];
		char lo[32] = "", hi[32] = "";
		if (strcmp(o->section, section) != 0)
			continue;
		if (o->type == T_INT) {
			snprintf(lo, sizeof(lo), "%" PRId64 "..", o->min);
			snprintf(hi, sizeof(hi), "%" PRId64, o->max);
		} else if ((o->type == T_DUR || o->type == T_DUR_S) && o->min != INT64_MIN) {
			fmt_duration(o->min, lo, sizeof(lo));
			strcat(lo, "..");
			if (o->max == INT64_MAX)
				strcpy(hi, "");
			else
				fmt_duration(o->max, hi, sizeof(hi));
		} else if (o->type == T_SIZE64 || o->type == T_SIZET) {
			fmt_size((uint64_t)o->min, lo, sizeof(lo));
			strcat(lo, "..");
			if (o->max != INT64_MAX)
				fmt_size((uint64_t)o->max, hi, sizeof(hi));
		}
		fprintf(f, "| `%s` | %s | %s%s%s | %s%s | %s%s%s | %s%s |\n", o->key, type_names[o->type],
			o->dflt && *o->dflt ? "`" : "", o->dflt && *o->dflt ? o->dflt : "(empty)",
			o->dflt && *o->dflt ? "`" : "", lo, hi, o->env ? "`" : "", o->env ? o->env : "",
			o->env ? "`" : "", o->flags & F_REQUIRED ? "**required.** " : "", o->help);
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
}
