/* test_credentials.c - the console credentials file, environment-then-file
 * lookup with sources, gateway addresses as URLs, the basic auth header,
 * and how conf.c uses them (precedence, credentials_file, auth strategy). */
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
#include "credentials.h"
#include "err.h"
#include "oauth.h"

static const char *const camunda_env[] = {
	"ZEEBE_ADDRESS", "ZEEBE_HOST", "ZEEBE_PORT", "ZEEBE_GRPC_ADDRESS", "CAMUNDA_GRPC_ADDRESS",
	"ZEEBE_CLIENT_ID", "ZEEBE_CLIENT_SECRET", "CAMUNDA_CLIENT_ID", "CAMUNDA_CLIENT_SECRET",
	"ZEEBE_AUTHORIZATION_SERVER_URL", "CAMUNDA_OAUTH_URL", "CAMUNDA_AUTHORIZATION_SERVER_URL",
	"ZEEBE_TOKEN_AUDIENCE", "CAMUNDA_TOKEN_AUDIENCE", "ZEEBE_TOKEN_SCOPE", "CAMUNDA_TOKEN_SCOPE",
	"ZEEBE_INSECURE_CONNECTION", "ZEEBE_CA_CERTIFICATE_PATH", "CAMUNDA_CA_CERTIFICATE_PATH",
	"ZEEBE_KEEP_ALIVE", "CAMUNDA_KEEP_ALIVE", "CAMUNDA_AUTH_STRATEGY", "CAMUNDA_BASIC_AUTH_USERNAME",
	"CAMUNDA_BASIC_AUTH_PASSWORD", "M2Z_CREDENTIALS_FILE", NULL,
};

#define ROUTE "[route r]\ntopic = a/+\nmessage_name = m\ncorrelation_key = {1}\n"

static int setup(void **state)
{
	(void)state;
	for (int i = 0; camunda_env[i]; i++)
		unsetenv(camunda_env[i]);
	return 0;
}

static struct credentials parse_ok(const char *text)
{
	struct credentials c;
	char err[256] = "";

	if (credentials_parse("creds", text, &c, err, sizeof(err)) != M2Z_OK)
		fail_msg("parse failed: %s", err);
	return c;
}

static void expect_parse_err(const char *text, const char *want)
{
	struct credentials c;
	char err[256] = "";

	assert_int_equal(credentials_parse("creds", text, &c, err, sizeof(err)), M2Z_ERR_PARSE);
	assert_string_equal(err, want);
	assert_int_equal(c.n, 0);
}

static void test_console_file_as_downloaded(void **state)
{
	struct credentials c;
	(void)state;

	c = parse_ok("\xef\xbb\xbf# Camunda 8 - cluster abc\r\n"
		     "export ZEEBE_GRPC_ADDRESS='grpcs://abc.bru-2.zeebe.camunda.io:443'\r\n"
		     "\r\n"
		     "export CAMUNDA_CLIENT_ID='Xy_z-1'   # a comment\n"
		     "  export\tCAMUNDA_CLIENT_SECRET=\"s3cr\\\"et \\$x\"\n"
		     "ZEEBE_TOKEN_AUDIENCE=zeebe.camunda.io\n"
		     "CAMUNDA_CLUSTER_REGION='bru'\"-\"2\n"
		     "EMPTY=\n"
		     "CAMUNDA_CLIENT_ID='later-wins'\n");
	assert_int_equal(c.n, 7);
	assert_string_equal(credentials_get(&c, "ZEEBE_GRPC_ADDRESS")->value,
			    "grpcs://abc.bru-2.zeebe.camunda.io:443");
	assert_int_equal(credentials_get(&c, "ZEEBE_GRPC_ADDRESS")->line, 2);
	assert_string_equal(credentials_get(&c, "CAMUNDA_CLIENT_SECRET")->value, "s3cr\"et $x");
	assert_string_equal(credentials_get(&c, "ZEEBE_TOKEN_AUDIENCE")->value, "zeebe.camunda.io");
	assert_string_equal(credentials_get(&c, "CAMUNDA_CLUSTER_REGION")->value, "bru-2");
	assert_string_equal(credentials_get(&c, "EMPTY")->value, "");
	assert_string_equal(credentials_get(&c, "CAMUNDA_CLIENT_ID")->value, "later-wins");
	assert_int_equal(credentials_get(&c, "CAMUNDA_CLIENT_ID")->line, 9);
	assert_null(credentials_get(&c, "NOPE"));
	credentials_free(&c);
}

static void test_file_errors_name_the_line(void **state)
{
	(void)state;
	expect_parse_err("# ok\nexport A='x\n", "creds:2: expected a closing ' on the same line");
	expect_parse_err("A=\"x\n", "creds:1: expected a closing \" on the same line");
	expect_parse_err("\nA = 'x'\n", "creds:2: expected '=' right after the variable name (NAME=value, "
			 "no blanks around '=')");
	expect_parse_err("A=$(cat /etc/shadow)\n", "creds:1: expected a literal value (shell operators and "
			 "expansions are not evaluated; quote the value)");
	expect_parse_err("A=\"$HOME\"\n", "creds:1: expected a literal value ($ and ` expansions are not "
			 "evaluated; use single quotes)");
	expect_parse_err("A='x' B='y'\n", "creds:1: expected one assignment per line (quote a value that has blanks)");
	expect_parse_err("1A=x\n", "creds:1: expected NAME=value or export NAME='value'");
	expect_parse_err("echo hi\n", "creds:1: expected '=' right after the variable name (NAME=value, "
			 "no blanks around '=')");
}

static void test_find_environment_first_then_file(void **state)
{
	struct credentials c = parse_ok("export ZEEBE_CLIENT_ID='file-old'\nexport CAMUNDA_CLIENT_ID='file-new'\n");
	struct cred_hit h[CRED_MAX_HITS];
	size_t n;
	(void)state;

	n = credentials_find(&c, "CAMUNDA_CLIENT_ID ZEEBE_CLIENT_ID", h, CRED_MAX_HITS);
	assert_int_equal(n, 2);
	assert_string_equal(h[0].value, "file-new");
	assert_string_equal(h[0].from, "creds:2 (CAMUNDA_CLIENT_ID)");
	assert_string_equal(h[1].from, "creds:1 (ZEEBE_CLIENT_ID)");

	setenv("ZEEBE_CLIENT_ID", "env-old", 1);
	setenv("CAMUNDA_CLIENT_ID", "", 1); /* empty = unset */
	n = credentials_find(&c, "CAMUNDA_CLIENT_ID ZEEBE_CLIENT_ID", h, CRED_MAX_HITS);
	assert_int_equal(n, 3);
	assert_string_equal(h[0].value, "env-old");
	assert_string_equal(h[0].from, "environment ZEEBE_CLIENT_ID");
	assert_int_equal(h[0].line, 0);
	assert_string_equal(h[1].var, "CAMUNDA_CLIENT_ID");
	assert_int_equal(credentials_find(NULL, "CAMUNDA_CLIENT_ID ZEEBE_CLIENT_ID", h, 1), 1);
	credentials_free(&c);
}

static void test_addresses(void **state)
{
	static const struct { const char *in, *out; int tls; } ok[] = {
		{ "gw.local:26500", "gw.local:26500", -1 },
		{ "grpcs://abc.bru-2.zeebe.camunda.io:443", "abc.bru-2.zeebe.camunda.io:443", 1 },
		{ "grpcs://abc.zeebe.camunda.io", "abc.zeebe.camunda.io:443", 1 },
		{ "https://gw.example/", "gw.example:443", 1 },
		{ "HTTPS://gw.example:8443", "gw.example:8443", 1 },
		{ "grpc://gw.local", "gw.local:26500", 0 },
		{ "grpc://gw.local:26501", "gw.local:26501", 0 },
		{ "http://gw.local", "gw.local:80", 0 },
		{ "grpcs://[::1]:1234", "[::1]:1234", 1 },
		{ "grpcs://[::1]", "[::1]:443", 1 },
	};
	static const char *const bad[] = {
		"gw.local", "tcp://gw:1", "grpcs://", "grpcs://:443", "grpcs://gw:0", "grpcs://gw:70000",
		"https://gw.example/zeebe", "grpcs://user@gw:443", "gw:port",
	};
	char out[256], why[256];
	int tls;
	(void)state;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (credentials_parse_address(ok[i].in, out, sizeof(out), &tls, why, sizeof(why)))
			fail_msg("%s: %s", ok[i].in, why);
		assert_string_equal(out, ok[i].out);
		assert_int_equal(tls, ok[i].tls);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (credentials_parse_address(bad[i], out, sizeof(out), &tls, why, sizeof(why)) == 0)
			fail_msg("%s accepted as %s", bad[i], out);
	assert_int_equal(credentials_parse_address("gw.local", out, sizeof(out), &tls, why, sizeof(why)),
			 M2Z_ERR_PARSE);
	assert_string_equal(why, "expected host:port like gateway.local:26500, got 'gw.local'");
}

static void test_basic_header(void **state)
{
	char *h = credentials_basic_header("demo", "pa:ss");
	(void)state;
	assert_string_equal(h, "Basic ZGVtbzpwYTpzcw==");
	free(h);
}

static void test_redact(void **state)
{
	char s[200] = "invalid_client: token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx.abc rejected, short-ok";
	(void)state;
	oauth_redact(s);
	assert_string_equal(s, "invalid_client: token [redacted] rejected, short-ok");
}

/* ---- through conf.c -------------------------------------------------------- */

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/m2z-creds-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static struct config *load(const char *ini, char *err, size_t errlen)
{
	struct config *cfg = NULL;
	if (conf_load_string("t.ini", ini, &cfg, err, errlen) != M2Z_OK)
		return NULL;
	return cfg;
}

static void test_conf_reads_the_newer_console_file(void **state)
{
	char *path = write_tmp("export ZEEBE_GRPC_ADDRESS='grpcs://abc.bru-2.zeebe.camunda.io:443'\n"
			       "export ZEEBE_REST_ADDRESS='https://bru-2.zeebe.camunda.io/abc'\n"
			       "export ZEEBE_TOKEN_AUDIENCE='zeebe.camunda.io'\n"
			       "export CAMUNDA_CLUSTER_ID='abc'\n"
			       "export CAMUNDA_CLIENT_ID='cid'\n"
			       "export CAMUNDA_CLIENT_SECRET='csecret'\n"
			       "export CAMUNDA_CLUSTER_REGION='bru-2'\n"
			       "export CAMUNDA_CREDENTIALS_SCOPES='Zeebe'\n"
			       "export CAMUNDA_OAUTH_URL='https://login.cloud.camunda.io/oauth/token'\n");
	char ini[512], err[512] = "";
	struct config *cfg;
	(void)state;

	snprintf(ini, sizeof(ini), "[zeebe]\ninsecure = true\ncredentials_file = %s\n[spool]\ndirectory = /var/x\n" ROUTE, path);
	cfg = load(ini, err, sizeof(err));
	assert_non_null(cfg);
	assert_string_equal(cfg->zeebe.address, "abc.bru-2.zeebe.camunda.io:443");
	assert_false(cfg->zeebe.insecure); /* grpcs:// wins over insecure = true */
	assert_int_equal(cfg->zeebe.auth, CONF_AUTH_OAUTH);
	assert_true(cfg->oauth.enabled);
	assert_string_equal(cfg->oauth.client_id, "cid");
	assert_string_equal(cfg->oauth.client_secret, "csecret");
	assert_string_equal(cfg->oauth.url, "https://login.cloud.camunda.io/oauth/token");
	assert_string_equal(cfg->oauth.audience, "zeebe.camunda.io");
	assert_string_equal(cfg->oauth.scope, ""); /* CAMUNDA_CREDENTIALS_SCOPES is informational */
	assert_string_equal(cfg->oauth.token_cache_dir, "/var/x");
	{
		char want[400];
		snprintf(want, sizeof(want), "%s:5 (CAMUNDA_CLIENT_ID)", path);
		assert_string_equal(cfg->oauth.client_id_from, want);
		snprintf(want, sizeof(want), "%s:3 (ZEEBE_TOKEN_AUDIENCE)", path);
		assert_string_equal(cfg->oauth.audience_from, want);
	}
	conf_free(cfg);

	/* The environment wins over the file, name by name. */
	setenv("ZEEBE_CLIENT_ID", "env-id", 1);
	setenv("ZEEBE_ADDRESS", "other.gw:26500", 1);
	cfg = load(ini, err, sizeof(err));
	assert_non_null(cfg);
	assert_string_equal(cfg->oauth.client_id, "env-id");
	assert_string_equal(cfg->oauth.client_id_from, "environment ZEEBE_CLIENT_ID");
	assert_string_equal(cfg->zeebe.address, "other.gw:26500");
	assert_true(cfg->zeebe.insecure); /* no scheme: [zeebe] insecure applies */
	conf_free(cfg);
	unlink(path);
	free(path);
}

static void test_conf_java_names_and_defaults(void **state)
{
	char err[512] = "";
	struct config *cfg;
	(void)state;

	setenv("CAMUNDA_GRPC_ADDRESS", "grpc://zeebe.local", 1);
	setenv("ZEEBE_GRPC_ADDRESS", "grpcs://ignored.example:443", 1);
	setenv("CAMUNDA_CLIENT_ID", "j", 1);
	setenv("CAMUNDA_CLIENT_SECRET", "s", 1);
	setenv("CAMUNDA_AUTHORIZATION_SERVER_URL", "https://kc.local/token", 1);
	setenv("CAMUNDA_OAUTH_URL", "https://loses.example/token", 1);
	setenv("CAMUNDA_TOKEN_SCOPE", "zeebe-scope", 1);
	setenv("CAMUNDA_KEEP_ALIVE", "60000", 1);
	cfg = load("[oauth]\ntoken_cache = false\n" ROUTE, err, sizeof(err));
	assert_non_null(cfg);
	assert_string_equal(cfg->zeebe.address, "zeebe.local:26500");
	assert_true(cfg->zeebe.insecure); /* grpc:// = plaintext */
	assert_string_equal(cfg->oauth.url, "https://kc.local/token");
	assert_string_equal(cfg->oauth.scope, "zeebe-scope");
	assert_string_equal(cfg->oauth.audience, "zeebe.local");
	assert_string_equal(cfg->oauth.audience_from,
			    "the gateway address without its port, from environment CAMUNDA_GRPC_ADDRESS");
	assert_int_equal(cfg->zeebe.keepalive_ms, 60000);
	assert_string_equal(cfg->oauth.token_cache_dir, ""); /* off */
	conf_free(cfg);
}

static void test_conf_auth_strategy(void **state)
{
	char err[512] = "";
	struct config *cfg;
	(void)state;

	setenv("CAMUNDA_AUTH_STRATEGY", "BASIC", 1);
	setenv("CAMUNDA_BASIC_AUTH_USERNAME", "demo", 1);
	assert_null(load(ROUTE, err, sizeof(err)));
	assert_string_equal(err, "t.ini: [zeebe] auth = basic needs username and password "
			    "(env CAMUNDA_BASIC_AUTH_USERNAME, CAMUNDA_BASIC_AUTH_PASSWORD)");
	setenv("CAMUNDA_BASIC_AUTH_PASSWORD", "demo", 1);
	cfg = load(ROUTE, err, sizeof(err));
	assert_non_null(cfg);
	assert_int_equal(cfg->zeebe.auth, CONF_AUTH_BASIC);
	assert_false(cfg->oauth.enabled);
	conf_free(cfg);
	unsetenv("CAMUNDA_AUTH_STRATEGY");
	cfg = load(ROUTE, err, sizeof(err)); /* auto: a username means basic */
	assert_int_equal(cfg->zeebe.auth, CONF_AUTH_BASIC);
	conf_free(cfg);
	setenv("CAMUNDA_AUTH_STRATEGY", "none", 1);
	setenv("ZEEBE_CLIENT_ID", "x", 1);
	cfg = load(ROUTE, err, sizeof(err));
	assert_int_equal(cfg->zeebe.auth, CONF_AUTH_NONE);
	assert_false(cfg->oauth.enabled);
	conf_free(cfg);
	setenv("CAMUNDA_AUTH_STRATEGY", "kerberos", 1);
	assert_null(load(ROUTE, err, sizeof(err)));
	assert_string_equal(err, "t.ini: environment CAMUNDA_AUTH_STRATEGY ([zeebe] auth): expected one of "
			    "auto, oauth, basic, none; got 'kerberos'");
}

static void test_conf_credentials_file_errors(void **state)
{
	char *path = write_tmp("export ZEEBE_ADDRESS='gw:1'\nexport ZEEBE_PORT='99999'\n");
	char ini[512], err[512] = "", want[512];
	(void)state;

	snprintf(ini, sizeof(ini), "[zeebe]\ncredentials_file = %s\n" ROUTE, path);
	assert_null(load(ini, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:2: ZEEBE_PORT: expected a port 1..65535, got '99999'", path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);

	path = write_tmp("export CAMUNDA_KEEP_ALIVE='10'\n");
	snprintf(ini, sizeof(ini), "[zeebe]\ncredentials_file = %s\n" ROUTE, path);
	assert_null(load(ini, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:1: CAMUNDA_KEEP_ALIVE ([zeebe] keepalive): 10ms is below the minimum "
		 "30s (a bare number means milliseconds)", path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);

	path = write_tmp("ZEEBE_ADDRESS=grpcs://gw/path\n");
	snprintf(ini, sizeof(ini), "[zeebe]\ncredentials_file = %s\n" ROUTE, path);
	assert_null(load(ini, err, sizeof(err)));
	snprintf(want, sizeof(want), "t.ini: %s:1 (ZEEBE_ADDRESS): [zeebe] address: expected host:port after the scheme "
		 "(no path), got 'grpcs://gw/path'", path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);

	assert_null(load("[zeebe]\ncredentials_file = /nonexistent/creds\n" ROUTE, err, sizeof(err)));
	assert_string_equal(err, "t.ini:2: [zeebe] credentials_file: /nonexistent/creds: cannot open: "
			    "No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_console_file_as_downloaded, setup),
		cmocka_unit_test_setup(test_file_errors_name_the_line, setup),
		cmocka_unit_test_setup(test_find_environment_first_then_file, setup),
		cmocka_unit_test_setup(test_addresses, setup),
		cmocka_unit_test_setup(test_basic_header, setup),
		cmocka_unit_test_setup(test_redact, setup),
		cmocka_unit_test_setup(test_conf_reads_the_newer_console_file, setup),
		cmocka_unit_test_setup(test_conf_java_names_and_defaults, setup),
		cmocka_unit_test_setup(test_conf_auth_strategy, setup),
		cmocka_unit_test_setup(test_conf_credentials_file_errors, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
