/* conf.h - the INI configuration: parse, environment overrides, checks.
 *
 * File format (INI): sections [zeebe], [oauth], [mqtt], [spool],
 * [forward], [log] and any number of [route NAME] sections. Every key is
 * in one option table in conf.c (key, type, default, range, env, help); the
 * README's reference is generated from the same facts.
 *
 * Durations take a unit: "250ms", "10s", "5m", "1h", "7d"; in the file a
 * bare number other than 0 is an error (is "3600" seconds or ms?), in the
 * environment it means milliseconds (Camunda's convention). Sizes accept
 * "512", "64KiB", "4MiB", "1GiB" (also kB/MB/GB as powers of ten).
 * Booleans: true/false/yes/no/on/off/1/0.
 *
 * Errors: conf_load() returns M2Z_ERR_CONFIG and fills err with
 * "FILE:LINE: what was expected" (main prints it and exits 2), or
 * "FILE: environment VAR: ..." when the value came from the environment.
 * conf.c reads the lines itself (Debian's libinih cut them at 200 bytes):
 * lines up to CONF_MAX_LINE bytes, longer ones are an error at their own
 * line. Continuation lines are not supported (an indented line is an
 * ordinary line); ';' after a blank starts an inline comment. At most
 * CONF_MAX_ROUTES [route NAME] sections.
 *
 * Environment (empty value = unset) overrides the file; the same names in
 * [zeebe] credentials_file (the Camunda console's shell file, credentials.h)
 * come between the two. Each option's env column in the table lists its
 * names, strongest first: the Java 8.8 CAMUNDA_* names, the console/JS names
 * (ZEEBE_GRPC_ADDRESS, CAMUNDA_OAUTH_URL) and the older ZEEBE_* names.
 * ZEEBE_HOST/ZEEBE_PORT form one address (a missing half is 127.0.0.1 or
 * 26500); ZEEBE_INSECURE_CONNECTION: exactly "true" = plaintext. An address
 * may be a URL: grpcs:// and https:// = TLS (port 443 by default), grpc://
 * and http:// = plaintext; the scheme decides over insecure. Two sources
 * that disagree are logged (log_warn) with both sources; the first wins.
 *
 * Ownership: every string in struct config is owned by the config and freed
 * by conf_free(). Strings are never NULL: unset strings are "". */
#ifndef M2Z_CONF_H
#define M2Z_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONF_MAX_LINE 4096
#define CONF_MAX_ROUTES 256
#define CONF_MAX_WORKERS 64

enum spool_sync { SPOOL_SYNC_NONE = 0, SPOOL_SYNC_GROUP, SPOOL_SYNC_ALWAYS };
enum spool_full { SPOOL_FULL_BLOCK = 0, SPOOL_FULL_DROP_OLDEST, SPOOL_FULL_REJECT_NEWEST };
enum var_mode { VARS_PAYLOAD = 0, VARS_NONE };

enum conf_auth { CONF_AUTH_AUTO = 0, CONF_AUTH_OAUTH, CONF_AUTH_BASIC, CONF_AUTH_NONE };

#define CONF_FROM_MAX 320

struct conf_zeebe {
	char *address;          /* host:port after loading (a grpcs://, grpc://, https:// or http://
				   URL is turned into host:port and sets insecure); env
				   CAMUNDA_GRPC_ADDRESS, ZEEBE_GRPC_ADDRESS, ZEEBE_HOST/ZEEBE_PORT,
				   ZEEBE_ADDRESS, in that order */
	char *credentials_file; /* console credentials file, "" = none; env M2Z_CREDENTIALS_FILE */
	int auth;               /* enum conf_auth; never AUTO after loading */
	char *username;         /* basic auth; env CAMUNDA_BASIC_AUTH_USERNAME */
	char *password;         /* basic auth; env CAMUNDA_BASIC_AUTH_PASSWORD; never logged */
	bool insecure;          /* plaintext; env ZEEBE_INSECURE_CONNECTION (only "true" = on) */
	char *ca_certificate;   /* PEM file; "" = system roots; env ZEEBE_CA_CERTIFICATE_PATH */
	char *override_authority; /* TLS name to verify; env ZEEBE_OVERRIDE_AUTHORITY */
	int64_t request_timeout_ms; /* per call deadline, default 10s */
	int64_t keepalive_ms;   /* default 45s, min 30s; env ZEEBE_KEEP_ALIVE (ms) */
	size_t max_message_size; /* default 4MiB */
	int max_in_flight;      /* calls in flight on the channel, default 64 */
};

struct conf_oauth {
	bool enabled;           /* derived: client_id or client_secret set */
	char *client_id;        /* env ZEEBE_CLIENT_ID */
	char *client_secret;    /* env ZEEBE_CLIENT_SECRET; never logged */
	char *url;              /* env ZEEBE_AUTHORIZATION_SERVER_URL,
				   default https://login.cloud.camunda.io/oauth/token */
	char *audience;         /* env ZEEBE_TOKEN_AUDIENCE; default: zeebe address minus :port */
	char *scope;            /* env ZEEBE_TOKEN_SCOPE; sent only when set */
	char *ca_certificate;   /* PEM for the token endpoint; "" = system roots
				   (falls back to ZEEBE_CA_CERTIFICATE_PATH when that is set) */
	int64_t request_timeout_ms; /* default 10s; env ZEEBE_AUTH_REQUEST_TIMEOUT (ms) */
	int64_t refresh_ahead_ms;   /* refresh this long before expiry, default 30s, min 10s */
	bool token_cache;           /* keep the token on disk, default true */
	char *token_cache_dir;      /* after loading: "" = off, else the directory (default: spool) */
	/* Where client_id and audience came from, for explanations: "environment
	 * CAMUNDA_CLIENT_ID", "FILE:LINE (ZEEBE_CLIENT_ID)", "FILE:LINE ([oauth]
	 * client_id)" or "default (...)". */
	char client_id_from[CONF_FROM_MAX];
	char audience_from[CONF_FROM_MAX];
	int64_t min_refresh_interval_ms; /* at most one token request per this, default 5s */
};

struct conf_mqtt {
	char *host;             /* default localhost */
	int port;               /* default 1883 (8883 when tls) */
	char *client_id;        /* default "mqtt2zeebe-<hostname>"; must be stable for a persistent session */
	char *username;
	char *password;         /* never logged */
	int keepalive_s;        /* default 60 */
	bool clean_session;     /* default false: the broker keeps our QoS>0 messages while we are away */
	bool tls;               /* default false */
	char *ca_file;
	char *cert_file;
	char *key_file;
	bool tls_insecure;      /* skip broker hostname check; default false */
	int64_t reconnect_min_ms; /* default 1s */
	int64_t reconnect_max_ms; /* default 60s */
	char *shared_group;     /* "" = off; else filters become $share/GROUP/filter */
};

struct conf_spool {
	char *directory;        /* default /var/lib/mqtt2zeebe; created 0700 */
	enum spool_sync sync;   /* "none" | "group" (default) | "always" */
	int64_t group_commit_ms;/* fsync interval for "group", default 50ms */
	uint64_t max_bytes;     /* default 256MiB */
	int64_t max_age_ms;     /* 0 = unlimited (default) */
	enum spool_full on_full;/* "block" (default) | "drop_oldest" | "reject_newest" */
	uint64_t segment_bytes; /* default 16MiB */
	uint64_t reserve_bytes; /* free space kept on the filesystem, default 1MiB */
};

struct conf_forward {
	int64_t retry_initial_ms;   /* default 100ms */
	int64_t retry_max_ms;       /* default 5s (the cap of Camunda's own retry policy) */
	uint64_t read_ahead;        /* record bytes held ahead of the gateway, default 256KiB */
	int64_t shutdown_timeout_ms;/* wait for in-flight calls on SIGTERM, default 5s */
	char *dead_letter_topic;    /* "" = off; else each dead letter is also published here */
	uint64_t dead_letter_max_bytes; /* one dead-letter file, default 10MiB */
	int dead_letter_max_files;  /* files kept incl. the live one, default 5 */
};

struct conf_log {
	int level;                  /* LOG_LVL_*, default info */
	int64_t stats_interval_ms;  /* counters line interval, default 60s, 0 = off */
	int64_t reminder_ms;        /* repeat a down peer's state line, default 60s */
};

struct conf_status {
	bool enabled;               /* default true */
	char *topic;                /* default mqtt2zeebe/<mqtt client_id>/status */
	int64_t interval_ms;        /* default 60s; 0 = on change only */
};

struct conf_metrics {
	char *listen;               /* host:port; "" = off (default) */
};

/* One [route NAME] section. Template strings use the syntax in route.h. */
struct conf_route {
	char *name;                 /* the section's NAME */
	int line;                   /* line of the [route NAME] header */
	char *topic;                /* MQTT topic filter, required */
	int topic_line;
	int qos;                    /* subscription QoS 0..2, default 1 */
	char *message_name;         /* template, required */
	int message_name_line;
	char *correlation_key;      /* template, required */
	int correlation_key_line;
	char *message_id;           /* template; "auto" (default) = derived; "none" = no id */
	int message_id_line;
	int64_t ttl_ms;             /* default 1h; 0 = correlate only with open subscriptions */
	char *tenant_id;            /* template; "" = gateway default */
	int tenant_id_line;
	enum var_mode variables;    /* "payload" (default) | "none" */
	char *wrap_key;             /* key for non-object payloads, default "value" */
	char *topic_variable;       /* "" = off; else variable name that gets the topic */
	char *time_variable;        /* "" = off; else variable name that gets receive time (RFC 3339) */
	int retained;               /* 0 = skip (default): a retained message is stored state; 1 = forward */
	/* extra variables: "var.NAME = template" keys, in file order */
	size_t n_vars;
	char **var_names;
	char **var_templates;
	int *var_lines;
};

struct conf_origin;
enum worker_mode { WORKER_PUBLISH = 0, WORKER_REQUEST_REPLY };

/* One [worker NAME] section: a Zeebe job type whose jobs become MQTT
 * commands (worker.h). Templates use route.h's syntax with {/ptr} only, over
 * the job document described in worker.h. */
struct conf_worker {
	char *name;                 /* the section's NAME */
	int line;                   /* line of the [worker NAME] header */
	char *job_type;             /* required */
	char *topic;                /* template, required */
	int topic_line;
	char *payload;              /* template, default "{/variables}" */
	int payload_line;
	int qos;                    /* default 1 */
	bool retain;
	enum worker_mode mode;      /* "publish" (default) | "request_reply" */
	char *reply_topic;          /* template with {/key}; request_reply only */
	int reply_topic_line;
	int64_t reply_timeout_ms;   /* default 30s */
	char *reply_variable;       /* "" = merge a JSON object reply, else "reply" */
	char *error_pointer;        /* JSON pointer into the reply; "" = off */
	char *error_value;          /* the value there that means error, default "error" */
	char *error_code;           /* BPMN error code thrown for an error reply */
	char *error_message_pointer;/* message of an error reply; "" = whole reply */
	char *timeout_error_code;   /* "" = FailJob retries - 1; else ThrowError */
	int64_t retry_backoff_ms;   /* default 10s */
	int max_jobs_active;        /* default 32 */
	int64_t timeout_ms;         /* job lock, default 5m */
	int64_t poll_timeout_ms;    /* ActivateJobs long polling, default 10s */
	char *fetch_variables;      /* comma list; "" = all */
	char *tenant_ids;           /* comma list; "" = gateway default */
	char *worker_name;          /* key "name"; "" = the MQTT client id */
	uint64_t max_payload;       /* default 256KiB */
};

struct config {
	char *path;                 /* the file that was loaded */
	struct conf_origin *origin; /* owned: where each value came from (--check) */
	struct conf_zeebe zeebe;
	struct conf_oauth oauth;
	struct conf_mqtt mqtt;
	struct conf_spool spool;
	struct conf_forward forward;
	struct conf_log log;
	struct conf_status status;
	struct conf_metrics metrics;
	size_t n_routes;
	struct conf_route *routes;  /* in file order */
	size_t n_workers;
	struct conf_worker *workers;/* in file order */
};

/* Parse PATH, apply environment overrides (getenv), fill defaults, run
 * cross-field checks. On error returns M2Z_ERR_CONFIG with err set to
 * "PATH:LINE: message" (or "PATH: message" for whole-file problems) and *out
 * untouched. On success *out is owned by the caller (conf_free). */
int conf_load(const char *path, struct config **out, char *err, size_t errlen);

/* Same, from a string (unit tests, embedded demo default); NAME is used in
 * messages in place of a path. */
int conf_load_string(const char *name, const char *text, struct config **out,
		     char *err, size_t errlen);

void conf_free(struct config *cfg);

/* The resolved configuration (after environment overrides and defaults) as
 * INI text, secrets shown as "***" (set) or "(unset)", each value followed by
 * a "; SOURCE" comment (see conf_origin; route keys: FILE:LINE or default).
 * The output loads again as a configuration. Used by --check. */
void conf_print(const struct config *cfg, FILE *f);

/* Where the resolved value of global key [SECTION] KEY came from, written
 * to B (at most N bytes) and returned: "FILE:LINE", "env NAME", "default",
 * or "derived (...)" for defaults computed from other keys. */
const char *conf_origin(const struct config *cfg, const char *section, const char *key,
			char *b, size_t n);

/* Call FN for every global key (not routes) whose resolved value differs
 * between A and B, in table order. Used by the reload (SIGHUP). */
void conf_diff(const struct config *a, const struct config *b,
	       void (*fn)(void *arg, const char *section, const char *key), void *arg);

/* Markdown tables of every key (type, default, range, env, meaning), made
 * from the option table itself; the key tables in README.md are generated with it. */
void conf_print_reference(FILE *f);

/* Parse helpers, exposed for the unit tests. Return 0 or M2Z_ERR_PARSE. */
int conf_parse_duration_ms(const char *s, int64_t *out);
int conf_parse_size(const char *s, uint64_t *out);
int conf_parse_bool(const char *s, bool *out);

#endif
