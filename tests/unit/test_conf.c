/* test_conf.c - parsing, error messages with exact lines, env overrides,
 * defaults and cross-field checks of conf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "log.h"

static const char *const env_names[] = {
	"ZEEBE_ADDRESS", "ZEEBE_HOST", "ZEEBE_PORT", "ZEEBE_CLIENT_ID", "ZEEBE_CLIENT_SECRET",
	"ZEEBE_AUTHORIZATION_SERVER_URL", "ZEEBE_TOKEN_AUDIENCE", "ZEEBE_TOKEN_SCOPE",
	"ZEEBE_CA_CERTIFICATE_PATH", "ZEEBE_INSECURE_CONNECTION", "ZEEBE_OVERRIDE_AUTHORITY",
	"ZEEBE_KEEP_ALIVE", "ZEEBE_AUTH_REQUEST_TIMEOUT", "M2Z_MQTT_PASSWORD", "M2Z_LOG_LEVEL", NULL,
};

#define ROUTE "[route r]\ntopic = a/+\nmessage_name = m\ncorrelation_key = {2}\n"

static char err[1024];
static struct config *cfg;

static int setup(void **state)
{
	(void)state;
	for (int i = 0; env_names[i]; i++)
		unsetenv(env_names[i]);
	log_set_level(LOG_LVL_ERROR); /* the warnings are expected in some tests */
	cfg = NULL;
	err[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	conf_free(cfg);
	cfg = NULL;
	return 0;
}

static int load(const char *text)
{
	conf_free(cfg);
	cfg = NULL;
	return conf_load_string("t.ini", text, &cfg, err, sizeof(err));
}

static void expect_err(const char *text, const char *msg)
{
	int rc = load(text);
	if (rc != M2Z_ERR_CONFIG || strcmp(err, msg) != 0)
		fail_msg("rc %d\n got:      '%s'\n expected: '%s'", rc, err, msg);
	assert_null(cfg);
}

static void expect_prefix(const char *text, const char *prefix)
{
	int rc = load(text);
	if (rc != M2Z_ERR_CONFIG || strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("rc %d\n got:      '%s'\n expected prefix: '%s'", rc, err, prefix);
}

/* ---- value parsers ---- */

static void test_durations(void **state)
{
	static const struct { const char *s; int64_t ms; } ok[] = {
		{ "0", 0 }, { "250", 250 }, { "250ms", 250 }, { "10s", 10000 }, { "5m", 300000 },
		{ "1h", 3600000 }, { "7d", 604800000 }, { " 3 s ", 3000 },
	};
	static const char *const bad[] = { "", "s", "-1s", "1.5s", "10 sec", "10S", "1x", "99999999999999999999",
					   "9999999999999999d", "1s2" };
	int64_t v;
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(conf_parse_duration_ms(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_duration_ms(bad[i], &v) != M2Z_ERR_PARSE)
			fail_msg("'%s' accepted", bad[i]);
}

static void test_sizes(void **state)
{
	static const struct { const char *s; uint64_t v; } ok[] = {
		{ "512", 512 }, { "64KiB", 65536 }, { "4MiB", 4194304 }, { "1GiB", 1073741824ULL },
		{ "1kB", 1000 }, { "2MB", 2000000 }, { "3GB", 3000000000ULL }, { "7B", 7 }, { "1TiB", 1ULL << 40 },
	};
	static const char *const bad[] = { "", "abc", "-5", "1.5MiB", "4mib", "4 MiBs", "99999999999TiB" };
	uint64_t v;
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(conf_parse_size(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_size(bad[i], &v) != M2Z_ERR_PARSE)
			fail_msg("'%s' accepted", bad[i]);
}

static void test_bools(void **state)
{
	static const char *const t[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
	static const char *const f[] = { "false", "no", "off", "0", "Off" };
	bool v;
	(void)state;
	for (size_t i = 0; i < 6; i++) {
		v = false;
		assert_int_equal(conf_parse_bool(t[i], &v), 0);
		assert_true(v);
	}
	for (size_t i = 0; i < 5; i++) {
		v = true;
		assert_int_equal(conf_parse_bool(f[i], &v), 0);
		assert_false(v);
	}
	assert_int_equal(conf_parse_bool("maybe", &v), M2Z_ERR_PARSE);
	assert_int_equal(conf_parse_bool("", &v), M2Z_ERR_PARSE);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
	char host[256], id[300];
	(void)state;
	assert_int_equal(load(ROUTE), 0);
	assert_string_equal(cfg->path, "t.ini");
	assert_string_equal(cfg->zeebe.address, "127.0.0.1:26500");
	assert_false(cfg->zeebe.insecure);
	assert_string_equal(cfg->zeebe.ca_certificate, "");
	assert_int_equal(cfg->zeebe.request_timeout_ms, 10000);
	assert_int_equal(cfg->zeebe.keepalive_ms, 45000);
	assert_int_equal(cfg->zeebe.max_message_size, 4 << 20);
	assert_int_equal(cfg->zeebe.max_in_flight, 64);
	assert_false(cfg->oauth.enabled);
	assert_string_equal(cfg->oauth.url, "https://login.cloud.camunda.io/oauth/token");
	assert_string_equal(cfg->oauth.audience, "");
	assert_int_equal(cfg->oauth.request_timeout_ms, 10000);
	assert_int_equal(cfg->oauth.refresh_ahead_ms, 30000);
	assert_string_equal(cfg->mqtt.host, "localhost");
	assert_int_equal(cfg->mqtt.port, 1883);
	gethostname(host, sizeof(host));
	snprintf(id, sizeof(id), "mqtt2zeebe-%s", host);
	assert_string_equal(cfg->mqtt.client_id, id);
	assert_string_equal(cfg->mqtt.password, "");
	assert_int_equal(cfg->mqtt.keepalive_s, 60);
	assert_false(cfg->mqtt.clean_session);
	assert_int_equal(cfg->mqtt.reconnect_min_ms, 1000);
	assert_int_equal(cfg->mqtt.reconnect_max_ms, 60000);
	assert_string_equal(cfg->spool.directory, "/var/lib/mqtt2zeebe");
	assert_int_equal(cfg->spool.sync, SPOOL_SYNC_GROUP);
	assert_int_equal(cfg->spool.group_commit_ms, 50);
	assert_int_equal(cfg->spool.max_bytes, 256ULL << 20);
	assert_int_equal(cfg->spool.max_age_ms, 0);
	assert_int_equal(cfg->spool.on_full, SPOOL_FULL_BLOCK);
	assert_int_equal(cfg->spool.segment_bytes, 16ULL << 20);
	assert_int_equal(cfg->forward.retry_initial_ms, 100);
	assert_int_equal(cfg->forward.retry_max_ms, 5000);
	assert_int_equal(cfg->forward.shutdown_timeout_ms, 5000);
	assert_string_equal(cfg->forward.dead_letter_topic, "");
	assert_int_equal(cfg->log.level, LOG_LVL_INFO);
	assert_int_equal(cfg->log.stats_interval_ms, 60000);
	assert_int_equal(cfg->n_routes, 1);
	struct conf_route *r = &cfg->routes[0];
	assert_string_equal(r->name, "r");
	assert_int_equal(r->line, 1);
	assert_int_equal(r->topic_line, 2);
	assert_int_equal(r->message_name_line, 3);
	assert_int_equal(r->correlation_key_line, 4);
	assert_int_equal(r->qos, 1);
	assert_string_equal(r->message_id, "auto");
	assert_int_equal(r->ttl_ms, 3600000);
	assert_string_equal(r->tenant_id, "");
	assert_int_equal(r->variables, VARS_PAYLOAD);
	assert_string_equal(r->wrap_key, "value");
	assert_string_equal(r->topic_variable, "");
	assert_string_equal(r->time_variable, "");
	assert_int_equal(r->n_vars, 0);
}

static void test_full_file(void **state)
{
	(void)state;
	assert_int_equal(load("; comment\n# comment\n\n"
			      "[zeebe]\naddress = gw.example:443\ninsecure = yes\nkeepalive = 1m\n"
			      "max_message_size = 1MiB ; inline comment\nmax_in_flight = 8\n"
			      "[mqtt]\nhost = broker\ntls = on\nusername = u\npassword = p\nkeepalive = 2m\n"
			      "[spool]\nsync = always\nmax_bytes = 1GiB\non_full = drop_oldest\nmax_age = 7d\n"
			      "[log]\nlevel = debug\n"
			      "[route one]\ntopic = x/#\nmessage_name = n\ncorrelation_key = k\nqos = 2\n"
			      "message_id = none\nttl = 0\ntenant_id = t1\nvariables = none\nvar.b = {1}\nvar.a = x\n"
			      "  [route two]  \n  topic: y\n  message_name=n\ncorrelation_key =k\n"), 0);
	assert_string_equal(cfg->zeebe.address, "gw.example:443");
	assert_true(cfg->zeebe.insecure);
	assert_int_equal(cfg->zeebe.keepalive_ms, 60000);
	assert_int_equal(cfg->zeebe.max_message_size, 1 << 20);
	assert_int_equal(cfg->zeebe.max_in_flight, 8);
	assert_int_equal(cfg->mqtt.port, 8883); /* tls, port not given */
	assert_string_equal(cfg->mqtt.password, "p");
	assert_int_equal(cfg->mqtt.keepalive_s, 120);
	assert_int_equal(cfg->spool.sync, SPOOL_SYNC_ALWAYS);
	assert_int_equal(cfg->spool.on_full, SPOOL_FULL_DROP_OLDEST);
	assert_int_equal(cfg->spool.max_age_ms, 7LL * 86400000);
	assert_int_equal(cfg->log.level, LOG_LVL_DEBUG);
	assert_int_equal(cfg->n_routes, 2);
	assert_int_equal(cfg->routes[0].qos, 2);
	assert_int_equal(cfg->routes[0].ttl_ms, 0);
	assert_int_equal(cfg->routes[0].variables, VARS_NONE);
	assert_int_equal(cfg->routes[0].n_vars, 2);
	assert_string_equal(cfg->routes[0].var_names[0], "b");
	assert_string_equal(cfg->routes[0].var_templates[0], "{1}");
	assert_int_equal(cfg->routes[0].var_lines[0], 32);
	assert_string_equal(cfg->routes[0].var_names[1], "a");
	assert_string_equal(cfg->routes[1].name, "two");
	assert_int_equal(cfg->routes[1].line, 34);
	assert_string_equal(cfg->routes[1].topic, "y");
	assert_int_equal(cfg->routes[1].topic_line, 35);
}

static void test_tls_explicit_port(void **state)
{
	(void)state;
	assert_int_equal(load("[mqtt]\nport = 1883\ntls = true\n" ROUTE), 0);
	assert_int_equal(cfg->mqtt.port, 1883);
}

/* ---- error shapes with exact lines ---- */

static void test_error_unknown(void **state)
{
	(void)state;
	expect_err("[mqtt]\nhost = h\nhots = x\n" ROUTE,
		   "t.ini:3: unknown key 'hots' in [mqtt] (expected one of: host, port, client_id, username, "
		   "password, keepalive, clean_session, tls, ca_file, cert_file, key_file, tls_insecure, "
		   "reconnect_min, reconnect_max, shared_group)");
	expect_err("\n[mqqt]\nhost = h\n" ROUTE,
		   "t.ini:2: unknown section [mqqt] (expected one of: zeebe, oauth, mqtt, spool, forward, log, status, metrics, route NAME, worker NAME)");
	expect_prefix(ROUTE "colour = red\n", "t.ini:5: unknown key 'colour' in [route r] (expected one of: topic, qos,");
	expect_prefix("host = x\n" ROUTE, "t.ini:1: key 'host' outside any section");
	expect_err("[zeebe]\njust words\n" ROUTE, "t.ini:2: expected key = value, a [section] or a comment");
	expect_err("[zeebe\n" ROUTE, "t.ini:1: expected ']' to close the section header");
}

static void test_error_values(void **state)
{
	(void)state;
	expect_err("[spool]\n\nmax_bytes = abc\n" ROUTE,
		   "t.ini:3: [spool] max_bytes: expected a size like 256MiB, 64KiB or 4096, got 'abc'");
	expect_err("[zeebe]\nkeepalive = 10s\n" ROUTE, "t.ini:2: [zeebe] keepalive: 10s is below the minimum 30s");
	/* issue 9: a duration without a unit is an error in the file */
	expect_err("[zeebe]\nkeepalive = 45\n" ROUTE,
		   "t.ini:2: [zeebe] keepalive: expected a duration with a unit, got '45' (45s? 45ms?)");
	expect_err(ROUTE "ttl = 3600\n", "t.ini:5: [route r] ttl: expected a duration with a unit, got '3600' (3600s? 3600ms?)");
	assert_int_equal(load(ROUTE "ttl = 0\n"), 0); /* zero needs no unit */
	assert_int_equal(cfg->routes[0].ttl_ms, 0);
	conf_free(cfg);
	cfg = NULL;
	assert_int_equal(load(ROUTE "ttl = 3600 s\n"), 0);
	assert_int_equal(cfg->routes[0].ttl_ms, 3600000);
	expect_err("[zeebe]\nmax_in_flight = 0\n" ROUTE,
		   "t.ini:2: [zeebe] max_in_flight: expected an integer 1..10000, got 0");
	expect_err("[zeebe]\nmax_in_flight = 10001\n" ROUTE,
		   "t.ini:2: [zeebe] max_in_flight: expected an integer 1..10000, got 10001");
	expect_err("[zeebe]\nmax_in_flight = lots\n" ROUTE,
		   "t.ini:2: [zeebe] max_in_flight: expected an integer 1..10000, got 'lots'");
	expect_err("[zeebe]\ninsecure = maybe\n" ROUTE, "t.ini:2: [zeebe] insecure: expected true or false, got 'maybe'");
	expect_err("[spool]\nsync = sometimes\n" ROUTE,
		   "t.ini:2: [spool] sync: expected one of none, group, always; got 'sometimes'");
	expect_err("[oauth]\nrefresh_ahead = 5s\n" ROUTE, "t.ini:2: [oauth] refresh_ahead: 5s is below the minimum 10s");
	expect_err("[mqtt]\nkeepalive = 5500ms\n" ROUTE, "t.ini:2: [mqtt] keepalive: expected whole seconds, got '5500ms'");
	expect_err(ROUTE "qos = 3\n", "t.ini:5: [route r] qos: expected an integer 0..2, got 3");
	expect_err(ROUTE "ttl = forever\n",
		   "t.ini:5: [route r] ttl: expected a duration like 10s, 250ms, 5m, 1h or 7d, got 'forever'");
	expect_err(ROUTE "variables = all\n", "t.ini:5: [route r] variables: expected one of payload, none; got 'all'");
}

static void test_error_missing_and_duplicates(void **state)
{
	(void)state;
	expect_err("[zeebe]\n\n[route pump]\nmessage_name = m\ncorrelation_key = k\n", "t.ini:3: [route pump] needs topic");
	expect_err("[route pump]\ntopic = t\ncorrelation_key = k\n", "t.ini:1: [route pump] needs message_name");
	expect_err("[route pump]\ntopic = t\nmessage_name = k\n", "t.ini:1: [route pump] needs correlation_key");
	expect_err("[zeebe]\naddress = a:1\n", "t.ini: no [route NAME] or [worker NAME] section: nothing to do");
	expect_err("[mqtt]\nhost = a\n\nhost = b\n" ROUTE, "t.ini:4: [mqtt] host set twice (first at line 2)");
	expect_err("[mqtt]\nhost = a\n[zeebe]\n[mqtt]\nhost = b\n" ROUTE, "t.ini:5: [mqtt] host set twice (first at line 2)");
	expect_err(ROUTE "topic = b\n", "t.ini:5: [route r] topic set twice (first at line 2)");
	expect_err(ROUTE "var.x = 1\nvar.x = 2\n", "t.ini:6: [route r] var.x set twice (first at line 5)");
	expect_err(ROUTE "\n" ROUTE, "t.ini:6: [route r] already defined at line 1");
	expect_err("[route]\n", "t.ini:1: [route] needs a name: [route NAME]");
	expect_err("[route a b]\n", "t.ini:1: route name 'a b' must be 1-64 of A-Z a-z 0-9 _ . -");
	expect_err(ROUTE "var. = 1\n", "t.ini:5: [route r] var.NAME needs a name without quotes or backslashes, got 'var.'");
	/* a second route with the same name is an error even far apart; the same
	 * key in two different routes is fine */
	assert_int_equal(load(ROUTE "[route s]\ntopic = a\nmessage_name = m\ncorrelation_key = k\n"), 0);
	assert_int_equal(cfg->n_routes, 2);
}

static void test_long_lines(void **state)
{
	size_t big = 3000;
	char *text = malloc(big + 512), *p;
	(void)state;

	/* line 6 holds a 3000-byte value: inih alone would cut it at 198 bytes
	 * and report errors on the wrong line; here it works and the error on
	 * line 8 is reported on line 8. */
	p = text + sprintf(text, ROUTE "\nvar.long = ");
	memset(p, 'x', big);
	p += big;
	strcpy(p, " ; comment\n\nbogus = 1\n");
	expect_err(text, "t.ini:8: unknown key 'bogus' in [route r] (expected one of: topic, qos, message_name, "
		   "correlation_key, message_id, ttl, tenant_id, variables, wrap_key, topic_variable, time_variable, retained, var.NAME)");
	p[0] = '\n';
	p[1] = '\0';
	assert_int_equal(load(text), 0);
	assert_int_equal(cfg->routes[0].n_vars, 1);
	assert_int_equal(strlen(cfg->routes[0].var_templates[0]), big);
	assert_int_equal(cfg->routes[0].var_lines[0], 6);
	free(text);

	/* a line of 201 bytes and one just at the limit are fine */
	text = malloc(CONF_MAX_LINE + 600);
	p = text + sprintf(text, "[mqtt]\nhost = ");
	memset(p, 'h', 201 - 7);
	strcpy(p + 201 - 7, "\n" ROUTE);
	assert_int_equal(load(text), 0);
	assert_int_equal(strlen(cfg->mqtt.host), 194);
	p = text + sprintf(text, "[mqtt]\nhost = ");
	memset(p, 'h', CONF_MAX_LINE - 7);
	strcpy(p + CONF_MAX_LINE - 7, "\n" ROUTE);
	assert_int_equal(load(text), 0);
	assert_int_equal(strlen(cfg->mqtt.host), CONF_MAX_LINE - 7);

	/* one byte more is an error at its own line, not later */
	p = text + sprintf(text, "[mqtt]\n\nhost = ");
	memset(p, 'h', CONF_MAX_LINE - 6);
	strcpy(p + CONF_MAX_LINE - 6, "\n" ROUTE);
	expect_err(text, "t.ini:3: line longer than 4096 bytes");
	/* a long comment line is fine, a long line with no '=' is not */
	p = text + sprintf(text, "[mqtt]\n# ");
	memset(p, 'c', 1000);
	strcpy(p + 1000, "\nhost = h\nport = x\n" ROUTE);
	expect_err(text, "t.ini:4: [mqtt] port: expected an integer 1..65535, got 'x'");
	p = text + sprintf(text, "[mqtt]\n");
	memset(p, 'c', 1000);
	strcpy(p + 1000, "\n" ROUTE);
	expect_err(text, "t.ini:2: expected key = value, a [section] or a comment");
	/* a long key name is just an unknown key, at its own line */
	p = text + sprintf(text, "[mqtt]\n");
	memset(p, 'k', 300);
	strcpy(p + 300, " = 1\n" ROUTE);
	expect_prefix(text, "t.ini:2: unknown key 'kkkkkkkk");
	/* a long section header and a long route name are read whole */
	p = text + sprintf(text, "[route ");
	memset(p, 'r', 3000);
	strcpy(p + 3000, "]\n");
	expect_prefix(text, "t.ini:1: route name 'rrrrrrrr");
	/* separators: ':' works, an inline comment before '=' is no key */
	assert_int_equal(load("[mqtt]\nhost: h1 ; c\n" ROUTE), 0);
	assert_string_equal(cfg->mqtt.host, "h1");
	expect_err("[mqtt]\nhost ; c = h\n" ROUTE, "t.ini:2: expected key = value, a [section] or a comment");
	assert_int_equal(load("[route r]\ntopic = a/+\nmessage_name = m;x\ncorrelation_key = {2} ;c\n"), 0);
	assert_string_equal(cfg->routes[0].message_name, "m;x");
	assert_string_equal(cfg->routes[0].correlation_key, "{2}");
	free(text);
}

/* Issue 8 item 9: the route limit is an error that names it. */
static void test_route_limit(void **state)
{
	size_t cap = (CONF_MAX_ROUTES + 1) * 80 + 1;
	char *text = malloc(cap), *p = text;
	(void)state;

	for (int i = 0; i < CONF_MAX_ROUTES; i++)
		p += sprintf(p, "[route r%d]\ntopic = t/%d\nmessage_name = m\ncorrelation_key = k\n", i, i);
	assert_int_equal(load(text), 0);
	assert_int_equal(cfg->n_routes, CONF_MAX_ROUTES);
	sprintf(p, "[route extra]\ntopic = x\nmessage_name = m\ncorrelation_key = k\n");
	expect_err(text, "t.ini:1025: [route extra]: too many routes, the limit is 256 [route NAME] sections per file");
	free(text);
}

static void test_crlf_and_bom(void **state)
{
	(void)state;
	assert_int_equal(load("\xEF\xBB\xBF[mqtt]\r\nhost = h \r\n[route r]\r\ntopic = a\r\nmessage_name = m\r\n"
			      "correlation_key = k\r\n"), 0);
	assert_string_equal(cfg->mqtt.host, "h");
	assert_string_equal(cfg->routes[0].correlation_key, "k");
	expect_err("\xEF\xBB\xBF[mqtt]\r\nport = p\r\n", "t.ini:2: [mqtt] port: expected an integer 1..65535, got 'p'");
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/m2z-test-conf-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	(void)state;

	fputs("[zeebe]\naddress = gw:1\n[mqtt]\nport = nope\n", f);
	fclose(f);
	assert_int_equal(conf_load(path, &cfg, err, sizeof(err)), M2Z_ERR_CONFIG);
	assert_non_null(strstr(err, ":4: [mqtt] port: expected an integer"));
	assert_memory_equal(err, path, strlen(path));
	f = fopen(path, "w");
	fputs(ROUTE, f);
	fclose(f);
	assert_int_equal(conf_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg->path, path);
	unlink(path);
	assert_int_equal(conf_load(path, &cfg, err, sizeof(err)), M2Z_ERR_CONFIG);
	assert_non_null(strstr(err, "cannot open"));
}

/* ---- environment ---- */

static void test_env_address(void **state)
{
	(void)state;
	setenv("ZEEBE_ADDRESS", "env.gw:443", 1);
	assert_int_equal(load("[zeebe]\naddress = file.gw:26500\n" ROUTE), 0);
	assert_string_equal(cfg->zeebe.address, "env.gw:443");
	/* a bad value is reported naming the variable, not the file's line 2 */
	setenv("ZEEBE_ADDRESS", "no-port", 1);
	expect_err("[zeebe]\naddress = file.gw:26500\n" ROUTE,
		   "t.ini: environment ZEEBE_ADDRESS: [zeebe] address: expected host:port like gateway.local:26500, "
		   "got 'no-port'");
	setenv("ZEEBE_ADDRESS", "env.gw:443", 1);
	/* HOST/PORT win over ADDRESS; the missing half is 127.0.0.1 / 26500 */
	setenv("ZEEBE_HOST", "h.example", 1);
	assert_int_equal(load(ROUTE), 0);
	assert_string_equal(cfg->zeebe.address, "h.example:26500");
	unsetenv("ZEEBE_HOST");
	setenv("ZEEBE_PORT", "1234", 1);
	assert_int_equal(load(ROUTE), 0);
	assert_string_equal(cfg->zeebe.address, "127.0.0.1:1234");
	setenv("ZEEBE_HOST", "h2", 1);
	assert_int_equal(load(ROUTE), 0);
	assert_string_equal(cfg->zeebe.address, "h2:1234");
	setenv("ZEEBE_PORT", "99999", 1);
	expect_err(ROUTE, "t.ini: environment ZEEBE_PORT: expected a port 1..65535, got '99999'");
	/* empty = unset */
	setenv("ZEEBE_PORT", "", 1);
	setenv("ZEEBE_HOST", "", 1);
	setenv("ZEEBE_ADDRESS", "", 1);
	assert_int_equal(load("[zeebe]\naddress = file.gw:26500\n" ROUTE), 0);
	assert_string_equal(cfg->zeebe.address, "file.gw:26500");
	expect_err("[zeebe]\naddress = nohost\n" ROUTE,
		   "t.ini:2: [zeebe] address: expected host:port like gateway.local:26500, got 'nohost'");
}

static void test_env_insecure(void **state)
{
	static const struct { const char *v; bool insecure; } cases[] = {
		{ "true", true }, { "True", false }, { "1", false }, { "yes", false }, { "false", false },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("ZEEBE_INSECURE_CONNECTION", cases[i].v, 1);
		assert_int_equal(load("[zeebe]\ninsecure = true\n" ROUTE), 0);
		if (cfg->zeebe.insecure != cases[i].insecure)
			fail_msg("ZEEBE_INSECURE_CONNECTION=%s", cases[i].v);
	}
	setenv("ZEEBE_INSECURE_CONNECTION", "", 1);
	assert_int_equal(load("[zeebe]\ninsecure = true\n" ROUTE), 0);
	assert_true(cfg->zeebe.insecure);
}

static void test_env_saas_credentials(void **state)
{
	(void)state;
	/* what Camunda's console hands out, with a config that only has routes */
	setenv("ZEEBE_ADDRESS", "abc.bru-2.zeebe.camunda.io:443", 1);
	setenv("ZEEBE_CLIENT_ID", "cid", 1);
	setenv("ZEEBE_CLIENT_SECRET", "csecret", 1);
	setenv("ZEEBE_AUTHORIZATION_SERVER_URL", "https://login.cloud.camunda.io/oauth/token", 1);
	setenv("ZEEBE_TOKEN_AUDIENCE", "zeebe.camunda.io", 1);
	assert_int_equal(load(ROUTE), 0);
	assert_true(cfg->oauth.enabled);
	assert_string_equal(cfg->zeebe.address, "abc.bru-2.zeebe.camunda.io:443");
	assert_false(cfg->zeebe.insecure);
	assert_string_equal(cfg->oauth.client_id, "cid");
	assert_string_equal(cfg->oauth.client_secret, "csecret");
	assert_string_equal(cfg->oauth.audience, "zeebe.camunda.io");
	/* audience default: the address without its port */
	unsetenv("ZEEBE_TOKEN_AUDIENCE");
	assert_int_equal(load(ROUTE), 0);
	assert_string_equal(cfg->oauth.audience, "abc.bru-2.zeebe.camunda.io");
	setenv("ZEEBE_TOKEN_AUDIENCE", "", 1);
	assert_int_equal(load("[oauth]\naudience = file-aud\n" ROUTE), 0);
	assert_string_equal(cfg->oauth.audience, "file-aud");
}

/* A file that passes the CA check (exists, PEM marker). */
static void fake_pem(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", f);
	fclose(f);
}

/* Operability keys: status topic default, metrics address, CA files. */
static void test_ops_keys(void **state)
{
	FILE *f;

	(void)state;
	fake_pem("/tmp/m2z-test-ca.pem");
	assert_int_equal(load("[mqtt]\nclient_id = edge-7\n" ROUTE), 0);
	assert_true(cfg->status.enabled);
	assert_string_equal(cfg->status.topic, "mqtt2zeebe/edge-7/status");
	assert_int_equal(cfg->status.interval_ms, 60000);
	assert_string_equal(cfg->metrics.listen, "");
	assert_int_equal(cfg->log.reminder_ms, 60000);
	assert_int_equal(load("[status]\ntopic = site/a/agent\ninterval = 0\n[metrics]\nlisten = :9464\n"
			      "[mqtt]\nshared_group = m2z\n" ROUTE), 0);
	assert_string_equal(cfg->status.topic, "site/a/agent");
	assert_string_equal(cfg->mqtt.shared_group, "m2z");
	expect_err("[status]\ntopic = a/+/b\n" ROUTE, "t.ini:2: [status] topic: expected a topic without + or #");
	expect_err("\n[metrics]\nlisten = 9464\n" ROUTE,
		   "t.ini:3: [metrics] listen: expected host:port like 127.0.0.1:9464, got '9464'");
	expect_err("[zeebe]\nca_certificate = /nonexistent/ca.pem\n" ROUTE,
		   "t.ini:2: [zeebe] ca_certificate: cannot read the CA file '/nonexistent/ca.pem': "
		   "No such file or directory");
	/* not PEM: the classic DER-instead-of-PEM mistake */
	f = fopen("/tmp/m2z-test-der.crt", "w");
	assert_non_null(f);
	fputs("\x30\x82\x01\x0a", f);
	fclose(f);
	expect_err("[zeebe]\ninsecure = false\nca_certificate = /tmp/m2z-test-der.crt\n" ROUTE,
		   "t.ini:3: [zeebe] ca_certificate: expected a PEM certificate file "
		   "(-----BEGIN CERTIFICATE-----), got '/tmp/m2z-test-der.crt'");
	/* plaintext: the gateway CA is not used, so not checked */
	assert_int_equal(load("[zeebe]\ninsecure = true\nca_certificate = /nonexistent\n" ROUTE), 0);
	expect_err("[oauth]\nclient_id = a\nclient_secret = b\nca_certificate = /nonexistent/t.pem\n" ROUTE,
		   "t.ini:4: [oauth] ca_certificate: cannot read the CA file '/nonexistent/t.pem': "
		   "No such file or directory");
	assert_int_equal(load("[zeebe]\nca_certificate = /tmp/m2z-test-ca.pem\n" ROUTE), 0);
}

static void test_env_other(void **state)
{
	(void)state;
	fake_pem("/tmp/m2z-test-ca.pem");
	fake_pem("/tmp/m2z-test-own.pem");
	setenv("ZEEBE_KEEP_ALIVE", "60000", 1);
	setenv("ZEEBE_AUTH_REQUEST_TIMEOUT", "2500", 1);
	setenv("ZEEBE_TOKEN_SCOPE", "sc", 1);
	setenv("ZEEBE_OVERRIDE_AUTHORITY", "auth.example", 1);
	setenv("ZEEBE_CA_CERTIFICATE_PATH", "/tmp/m2z-test-ca.pem", 1);
	setenv("M2Z_MQTT_PASSWORD", "mp", 1);
	setenv("M2Z_LOG_LEVEL", "warn", 1);
	assert_int_equal(load("[zeebe]\nkeepalive = 50s\n[mqtt]\npassword = filepw\n" ROUTE), 0);
	assert_int_equal(cfg->zeebe.keepalive_ms, 60000);
	assert_int_equal(cfg->oauth.request_timeout_ms, 2500);
	assert_string_equal(cfg->oauth.scope, "sc");
	assert_string_equal(cfg->zeebe.override_authority, "auth.example");
	assert_string_equal(cfg->zeebe.ca_certificate, "/tmp/m2z-test-ca.pem");
	assert_string_equal(cfg->oauth.ca_certificate, "/tmp/m2z-test-ca.pem"); /* fallback */
	assert_string_equal(cfg->mqtt.password, "mp");
	assert_int_equal(cfg->log.level, LOG_LVL_WARN);
	assert_int_equal(load("[oauth]\nca_certificate = /tmp/m2z-test-own.pem\n" ROUTE), 0);
	assert_string_equal(cfg->oauth.ca_certificate, "/tmp/m2z-test-own.pem");
	setenv("ZEEBE_KEEP_ALIVE", "1000", 1);
	expect_err(ROUTE, "t.ini: environment ZEEBE_KEEP_ALIVE ([zeebe] keepalive): 1s is below the minimum 30s "
		   "(a bare number means milliseconds)");
	setenv("ZEEBE_KEEP_ALIVE", "soon", 1);
	expect_prefix(ROUTE, "t.ini: environment ZEEBE_KEEP_ALIVE ([zeebe] keepalive): expected a duration");
}

static void test_oauth_half_configured(void **state)
{
	(void)state;
	expect_err("[oauth]\nclient_id = x\n" ROUTE,
		   "t.ini:2: [oauth] client_secret (env ZEEBE_CLIENT_SECRET) is required when client_id is set");
	expect_err("[oauth]\n\nclient_secret = x\n" ROUTE,
		   "t.ini:3: [oauth] client_id (env ZEEBE_CLIENT_ID) is required when client_secret is set");
	setenv("ZEEBE_CLIENT_ID", "x", 1);
	expect_err(ROUTE, "t.ini: environment ZEEBE_CLIENT_ID: [oauth] client_secret (env ZEEBE_CLIENT_SECRET) "
		   "is required when client_id is set");
	setenv("ZEEBE_CLIENT_SECRET", "s", 1);
	assert_int_equal(load("[zeebe]\naddress = gw.local:26500\n" ROUTE), 0);
	assert_true(cfg->oauth.enabled);
	assert_string_equal(cfg->oauth.audience, "gw.local");
	expect_err("[oauth]\nurl = ftp://x\n" ROUTE, "t.ini:2: [oauth] url: expected an https:// URL, got 'ftp://x'");
	/* issue 8 item 9: a bad environment value names the variable, not a line */
	setenv("ZEEBE_AUTHORIZATION_SERVER_URL", "ftp://y", 1);
	expect_err("[oauth]\nurl = https://x\n" ROUTE,
		   "t.ini: environment ZEEBE_AUTHORIZATION_SERVER_URL: [oauth] url: expected an https:// URL, got 'ftp://y'");
	unsetenv("ZEEBE_AUTHORIZATION_SERVER_URL");
	/* http:// and insecure are warnings, not errors */
	assert_int_equal(load("[zeebe]\ninsecure = true\n[oauth]\nurl = http://kc/token\n" ROUTE), 0);
}

static void test_cross_field(void **state)
{
	(void)state;
	expect_err("[mqtt]\nreconnect_min = 2m\nreconnect_max = 1m\n" ROUTE,
		   "t.ini:2: [mqtt] reconnect_min (120000ms) must not exceed reconnect_max (60000ms)");
	expect_err("[spool]\nmax_bytes = 1MiB\nsegment_bytes = 2MiB\n" ROUTE,
		   "t.ini:3: [spool] segment_bytes must not exceed max_bytes");
	expect_err("[spool]\nmax_bytes = 1MiB\n" ROUTE, "t.ini: [spool] segment_bytes must not exceed max_bytes");
	expect_err("[spool]\ngroup_commit = 0\n" ROUTE,
		   "t.ini:2: [spool] group_commit: 0 is below the minimum 1ms");
	expect_err("[forward]\nretry_initial = 1m\nretry_max = 1s\n" ROUTE,
		   "t.ini:2: [forward] retry_initial must not exceed retry_max");
	expect_err("[mqtt]\ncert_file = c.pem\n" ROUTE, "t.ini:2: [mqtt] cert_file and key_file go together");
	expect_err(ROUTE "wrap_key =\n", "t.ini:1: [route r] wrap_key must not be empty");
	/* message_id with ttl 0 is a warning only */
	assert_int_equal(load(ROUTE "ttl = 0\n"), 0);
}

/* TEXT has a line "KV<blanks>; SOURCE" (conf_print's layout). */
static void assert_printed(const char *text, const char *kv, const char *source)
{
	const char *p = text;
	size_t n = strlen(kv);

	while ((p = strstr(p, kv))) {
		const char *q = p + n;
		if (p == text || p[-1] == '\n') {
			while (*q == ' ')
				q++;
			if (q[0] == ';' && q[1] == ' ' && strncmp(q + 2, source, strlen(source)) == 0 &&
			    q[2 + strlen(source)] == '\n')
				return;
		}
		p += n;
	}
	fail_msg("no line '%s ... ; %s' in:\n%s", kv, source, text);
}

static void test_print(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	struct config *again = NULL;
	(void)state;

	setenv("ZEEBE_CLIENT_SECRET", "topsecret", 1);
	assert_int_equal(load("[oauth]\nclient_id = me\n[mqtt]\npassword = hunter2\n" ROUTE "var.x = {1}\nttl = 90s\n"), 0);
	f = open_memstream(&text, &len);
	conf_print(cfg, f);
	fclose(f);
	assert_null(strstr(text, "topsecret"));
	assert_null(strstr(text, "hunter2"));
	/* each value with where it came from */
	assert_printed(text, "client_secret = ***", "env ZEEBE_CLIENT_SECRET");
	assert_printed(text, "client_id = me", "t.ini:2");
	assert_printed(text, "password = ***", "t.ini:4");
	assert_printed(text, "keepalive = 45s", "default");
	assert_printed(text, "max_bytes = 256MiB", "default");
	assert_printed(text, "audience = 127.0.0.1", "derived (zeebe address without :port)");
	assert_non_null(strstr(text, "[route r]\n"));
	assert_printed(text, "topic = a/+", "t.ini:6");
	assert_printed(text, "ttl = 90s", "t.ini:10");
	assert_printed(text, "message_id = auto", "default");
	assert_printed(text, "var.x = {1}", "t.ini:9");
	/* the printed config is itself a valid config with the same values */
	if (conf_load_string("printed", text, &again, err, sizeof(err)) != 0)
		fail_msg("the printed config does not load: %s\n%s", err, text);
	assert_string_equal(again->zeebe.address, cfg->zeebe.address);
	assert_int_equal(again->routes[0].ttl_ms, 90000);
	assert_string_equal(again->oauth.audience, cfg->oauth.audience);
	conf_free(again);
	free(text);
	f = open_memstream(&text, &len);
	conf_print_reference(f);
	fclose(f);
	assert_non_null(strstr(text, "| `max_bytes` | size | `256MiB` |"));
	assert_non_null(strstr(text, "`ZEEBE_KEEP_ALIVE`"));
	free(text);
}

static void count_change(void *arg, const char *section, const char *key)
{
	(void)section;
	(void)key;
	(*(int *)arg)++;
}

static void test_origin_and_diff(void **state)
{
	struct config *other = NULL;
	char b[256];
	int changed = 0;
	(void)state;

	setenv("ZEEBE_HOST", "gw.example", 1);
	assert_int_equal(load("[zeebe]\naddress = x:1\n[log]\nlevel = warn\n" ROUTE), 0);
	assert_string_equal(conf_origin(cfg, "zeebe", "address", b, sizeof(b)), "env ZEEBE_HOST/ZEEBE_PORT");
	assert_string_equal(conf_origin(cfg, "log", "level", b, sizeof(b)), "t.ini:4");
	assert_string_equal(conf_origin(cfg, "spool", "directory", b, sizeof(b)), "default");
	assert_string_equal(conf_origin(cfg, "nope", "nope", b, sizeof(b)), "unknown key");
	unsetenv("ZEEBE_HOST");
	fake_pem("/tmp/m2z-test-ca.pem");
	setenv("ZEEBE_CA_CERTIFICATE_PATH", "/tmp/m2z-test-ca.pem", 1);
	assert_int_equal(conf_load_string("u.ini", "[log]\nlevel = debug\n[mqtt]\ntls = true\n" ROUTE,
					  &other, err, sizeof(err)), 0);
	assert_string_equal(conf_origin(other, "oauth", "ca_certificate", b, sizeof(b)),
			    "env ZEEBE_CA_CERTIFICATE_PATH");
	assert_string_equal(conf_origin(other, "mqtt", "port", b, sizeof(b)), "derived (8883 with tls = true)");
	/* address, ca_certificate, oauth.ca_certificate, port, tls, level */
	conf_diff(cfg, other, count_change, &changed);
	assert_int_equal(changed, 6);
	changed = 0;
	conf_diff(other, other, count_change, &changed);
	assert_int_equal(changed, 0);
	conf_free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_durations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bools, setup, teardown),
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls_explicit_port, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_missing_and_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crlf_and_bom, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_insecure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_saas_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ops_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_other, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oauth_half_configured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cross_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_print, setup, teardown),
		cmocka_unit_test_setup_teardown(test_origin_and_diff, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
