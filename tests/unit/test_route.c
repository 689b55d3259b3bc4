/* test_route.c - topic matching, templates, variables, message ids and
 * limits of route.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "mqtt_wire.h"
#include "route.h"

#include <cjson/cJSON.h>

static struct config *cfg;
static struct routes *rt;
static struct render_buf rb = RENDER_BUF_INIT;
static struct publish_msg msg;
static char err[1024], reason[512];

static int teardown(void **state)
{
	(void)state;
	routes_free(rt);
	conf_free(cfg);
	render_buf_free(&rb);
	rt = NULL;
	cfg = NULL;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	log_set_level(LOG_LVL_ERROR);
	return 0;
}

/* Build routes from TEXT; returns routes_new's code. */
static int build(const char *text)
{
	routes_free(rt);
	conf_free(cfg);
	rt = NULL;
	cfg = NULL;
	if (conf_load_string("r.ini", text, &cfg, err, sizeof(err)) != 0)
		fail_msg("config: %s", err);
	return routes_new(cfg, &rt, err, sizeof(err));
}

/* One route "t" with topic # and the given extra lines. */
static void build1(const char *extra)
{
	char text[4096];
	snprintf(text, sizeof(text), "[route t]\ntopic = #\nmessage_name = n\ncorrelation_key = k\n%s", extra);
	if (build(text) != 0)
		fail_msg("routes: %s", err);
}

static int render(const char *topic, const char *payload)
{
	return routes_render(rt, 0, topic, payload, strlen(payload), 1700000000123LL, 4 << 20, &rb, &msg,
			     reason, sizeof(reason));
}

/* Render a key template against TOPIC/PAYLOAD and compare. */
static void key_is(const char *tmpl, const char *topic, const char *payload, const char *want)
{
	char extra[1024];
	snprintf(extra, sizeof(extra), "[route u]\ntopic = #\nmessage_name = n\ncorrelation_key = %s\n", tmpl);
	if (build(extra) != 0)
		fail_msg("routes: %s", err);
	if (render(topic, payload) != 0)
		fail_msg("%s on %s %s: %s", tmpl, topic, payload, reason);
	if (strcmp(msg.correlation_key, want) != 0)
		fail_msg("%s: got '%s', want '%s'", tmpl, msg.correlation_key, want);
}

static void key_fails(const char *tmpl, const char *topic, const char *payload, int rc, const char *why)
{
	char extra[1024];
	snprintf(extra, sizeof(extra), "[route u]\ntopic = #\nmessage_name = n\ncorrelation_key = %s\n", tmpl);
	if (build(extra) != 0)
		fail_msg("routes: %s", err);
	int got = render(topic, payload);
	if (got != rc || strcmp(reason, why) != 0)
		fail_msg("%s: rc %d '%s', want %d '%s'", tmpl, got, reason, rc, why);
}

static void test_topic_matches(void **state)
{
	static const struct { const char *f, *t; bool m; } cases[] = {
		{ "a/b", "a/b", true }, { "a/b", "a/c", false }, { "a/b", "a/b/c", false }, { "a/b/c", "a/b", false },
		{ "a/+", "a/b", true }, { "a/+", "a/", true }, { "a/+", "a", false }, { "a/+", "a/b/c", false },
		{ "+/+", "/x", true }, { "+", "/x", false }, { "+", "x", true }, { "+", "", true },
		{ "a/#", "a", true }, { "a/#", "a/b/c", true }, { "a/#", "ab", false }, { "#", "a/b", true },
		{ "#", "/", true }, { "#", "$SYS/x", false }, { "+/x", "$SYS/x", false }, { "$SYS/#", "$SYS/x", true },
		{ "$SYS/+", "$SYS/x", true }, { "a/+/c", "a//c", true }, { "a//c", "a//c", true }, { "a//c", "a/b/c", false },
		{ "/a", "/a", true }, { "/a", "a", false }, { "a/+/#", "a/b", true }, { "a/+/#", "a", false },
		{ "A/b", "a/b", false }, { "a/b/", "a/b", false }, { "a/b/", "a/b/", true },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (mqtt_topic_matches(cases[i].f, cases[i].t, strlen(cases[i].t)) != cases[i].m)
			fail_msg("filter '%s' topic '%s': expected %d", cases[i].f, cases[i].t, cases[i].m);
}

static void test_filter_errors(void **state)
{
	(void)state;
	assert_int_equal(build("[route x]\n\ntopic = a/#/b\nmessage_name = n\ncorrelation_key = k\n"), M2Z_ERR_CONFIG);
	assert_string_equal(err, "r.ini:3: [route x] topic: '#' must be a whole level and the last one, got 'a/#/b'");
	assert_int_equal(build("[route x]\ntopic = a/b#\nmessage_name = n\ncorrelation_key = k\n"), M2Z_ERR_CONFIG);
	assert_string_equal(err, "r.ini:2: [route x] topic: '#' must be a whole level and the last one, got 'a/b#'");
	assert_int_equal(build("[route x]\ntopic = a/+b\nmessage_name = n\ncorrelation_key = k\n"), M2Z_ERR_CONFIG);
	assert_string_equal(err, "r.ini:2: [route x] topic: '+' must be a whole level, got 'a/+b'");
	/* shared subscription: the filter after $share/GROUP/ is what matches */
	assert_int_equal(build("[route x]\ntopic = $share/g/a/+\nmessage_name = n\ncorrelation_key = k\n"), 0);
	assert_string_equal(routes_filter(rt, 0), "$share/g/a/+");
	assert_int_equal(routes_match(rt, "a/b"), 0);
}

static void test_template_errors(void **state)
{
	static const struct { const char *t, *msg; } cases[] = {
		{ "x{", "r.ini:4: [route u] correlation_key: '{' without '}' at offset 1 (write {{ for a literal {)" },
		{ "x}y", "r.ini:4: [route u] correlation_key: '}' without '{' at offset 1 (write }} for a literal })" },
		{ "{0}", "r.ini:4: [route u] correlation_key: expected {N} (N >= 1), {topic}, {payload} or {/json/pointer}, got {0}" },
		{ "{foo|x}", "r.ini:4: [route u] correlation_key: expected {N} (N >= 1), {topic}, {payload} or {/json/pointer}, got {foo}" },
		{ "{}", "r.ini:4: [route u] correlation_key: expected {N} (N >= 1), {topic}, {payload} or {/json/pointer}, got {}" },
		{ "{/a~2}", "r.ini:4: [route u] correlation_key: '~' in a JSON pointer must be ~0 or ~1, got {/a~2}" },
	};
	char text[512];
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[route u]\ntopic = #\nmessage_name = n\ncorrelation_key = %s\n", cases[i].t);
		assert_int_equal(build(text), M2Z_ERR_CONFIG);
		if (strcmp(err, cases[i].msg) != 0)
			fail_msg("'%s':\n got  '%s'\n want '%s'", cases[i].t, err, cases[i].msg);
	}
	assert_int_equal(build("[route u]\ntopic = #\nmessage_name = n\ncorrelation_key = k\n\nvar.a = {x\n"),
			 M2Z_ERR_CONFIG);
	assert_string_equal(err, "r.ini:6: [route u] var.a: '{' without '}' at offset 0 (write {{ for a literal {)");
	assert_int_equal(build("[route u]\ntopic = #\nmessage_name = n\ncorrelation_key = k\ntenant_id = {9999999}\n"),
			 M2Z_ERR_CONFIG);
}

static void test_templates(void **state)
{
	const char *doc = "{\"serial\":\"SN-1\",\"n\":42,\"f\":1.5,\"neg\":-3,\"t\":true,\"z\":null,"
			  "\"arr\":[\"a\",{\"b\":7}],\"obj\":{\"x\":[1,2]},\"a/b\":\"slash\",\"m~n\":\"tilde\",\"\":\"empty\","
			  "\"big\":12345678901,\"uni\":\"h\\u00e9\"}";
	(void)state;
	key_is("plain", "a/b", "x", "plain");
	key_is("{1}-{2}-{3}", "a/b/c", "x", "a-b-c");
	key_is("[{2}]", "a//c", "x", "[]");
	key_is("{topic}", "dev/7/up", "x", "dev/7/up");
	key_is("<{payload}>", "t", "hello wörld", "<hello wörld>");
	key_is("{/serial}", "t", doc, "SN-1");
	key_is("{/n}/{/f}/{/neg}", "t", doc, "42/1.5/-3");
	key_is("{/t}{/z}", "t", doc, "truenull");
	key_is("{/arr/0}{/arr/1/b}", "t", doc, "a7");
	key_is("{/arr}", "t", doc, "[\"a\",{\"b\":7}]");
	key_is("{/obj}", "t", doc, "{\"x\":[1,2]}");
	key_is("{/obj/x/1}", "t", doc, "2");
	key_is("{/a~1b} {/m~0n}", "t", doc, "slash tilde");
	key_is("{/}", "t", doc, "empty");
	key_is("{/big}", "t", doc, "12345678901");
	key_is("{/uni}", "t", doc, "h\xc3\xa9");
	key_is("{{literal}} {{{1}}}", "x", "p", "{literal} {x}");
	key_is("a}}b", "x", "p", "a}b");
	key_is("{/missing|none}", "t", doc, "none");
	key_is("{/arr/2|no}{/arr/-|dash}{/arr/01|lead}", "t", doc, "nodashlead");
	key_is("{5|five}", "a/b", "x", "five");
	key_is("{/serial|}", "t", "not json", "");
	key_is("{/x|d}", "t", "[1]", "d");
	key_is("{/0}", "t", "[\"first\"]", "first");
	key_is("{/x}", "t", "  {\"x\":\"ws\"}  \n", "ws");
	key_fails("{/serial}", "t", "{\"n\":1}", M2Z_ERR_NOT_FOUND, "correlation_key: JSON pointer /serial not found in payload");
	key_fails("{/serial}", "t", "not json", M2Z_ERR_PARSE, "correlation_key: payload is not JSON (needed for {/serial})");
	key_fails("{/x}", "t", "{\"x\":1} trailing", M2Z_ERR_PARSE, "correlation_key: payload is not JSON (needed for {/x})");
	key_fails("{/n/0}", "t", doc, M2Z_ERR_NOT_FOUND, "correlation_key: JSON pointer /n/0 not found in payload");
	key_fails("{3}", "a/b", "x", M2Z_ERR_NOT_FOUND, "correlation_key: topic level {3} missing in 'a/b'");
	key_fails("{payload}", "t", "\xff\xfe", M2Z_ERR_PARSE, "correlation_key: payload is not UTF-8 text (needed for {payload})");
}

static void test_big_values(void **state)
{
	char payload[4000], want[4000];
	(void)state;
	/* values printed by cJSON bigger than the first scratch buffer */
	size_t n = (size_t)sprintf(payload, "{\"o\":{\"s\":\"");
	memset(payload + n, 'z', 3000);
	strcpy(payload + n + 3000, "\"},\"k\":1}");
	n = (size_t)sprintf(want, "{\"s\":\"");
	memset(want + n, 'z', 3000);
	strcpy(want + n + 3000, "\"}");
	key_is("{/o}", "t", payload, want);
	key_is("{/o}", "t", payload, want); /* warm buffers */
}

static void test_first_match_wins(void **state)
{
	(void)state;
	assert_int_equal(build("[route special]\ntopic = dev/42/+\nmessage_name = special\ncorrelation_key = k\n"
			       "[route general]\ntopic = dev/+/+\nmessage_name = general\ncorrelation_key = k\n"
			       "[route all]\ntopic = #\nmessage_name = all\ncorrelation_key = k\nqos = 0\n"), 0);
	assert_int_equal(routes_count(rt), 3);
	assert_int_equal(routes_match(rt, "dev/42/up"), 0);
	assert_int_equal(routes_match(rt, "dev/43/up"), 1);
	assert_int_equal(routes_match(rt, "other"), 2);
	assert_int_equal(routes_match(rt, "$SYS/broker"), -1);
	assert_string_equal(routes_name(rt, 1), "general");
	assert_int_equal(routes_qos(rt, 2), 0);
	assert_int_equal(routes_render(rt, 1, "dev/43/up", "{}", 2, 0, 0, &rb, &msg, reason, sizeof(reason)), 0);
	assert_string_equal(msg.name, "general");
	assert_string_equal(msg.route, "general");
	assert_int_equal(build("[route a]\ntopic = x\nmessage_name = n\ncorrelation_key = k\n"), 0);
	assert_int_equal(routes_match(rt, "y"), -1);
}

static void vars_are(const char *payload, size_t len, const char *want)
{
	int rc = routes_render(rt, 0, "dev/1", payload, len, 1700000000123LL, 0, &rb, &msg, reason, sizeof(reason));
	if (rc != 0)
		fail_msg("render: %s", reason);
	if (strcmp(msg.variables, want) != 0)
		fail_msg("variables:\n got  %s\n want %s", msg.variables, want);
}

#define V(s, want) vars_are(s, sizeof(s) - 1, want)

static void test_variables(void **state)
{
	(void)state;
	build1("");
	/* an object goes through byte for byte (spacing kept) */
	V("{ \"a\" : 1 }", "{ \"a\" : 1 }");
	V("[1,2]", "{\"value\":[1,2]}");
	V(" 42 ", "{\"value\":42}");
	V("\"s\"", "{\"value\":\"s\"}");
	V("null", "{\"value\":null}");
	V("hello \"x\"\n", "{\"value\":\"hello \\\"x\\\"\\n\"}");
	V("", "{\"value\":\"\"}");
	V("\xff\x00\x01", "{\"value\":\"/wAB\",\"valueEncoding\":\"base64\"}");
	V("a\0b", "{\"value\":\"YQBi\",\"valueEncoding\":\"base64\"}");
	V("{\"a\":1", "{\"value\":\"{\\\"a\\\":1\"}");

	build1("wrap_key = raw\n");
	V("7", "{\"raw\":7}");
	V("\x80", "{\"raw\":\"gA==\",\"rawEncoding\":\"base64\"}");

	build1("topic_variable = topic\ntime_variable = at\nvar.dev = {2}\nvar.temp = {/t|none}\nvar.lit = x{/t|-}y\n");
	V("{\"t\":21.5,\"topic\":\"old\",\"keep\":true}",
		 "{\"t\":21.5,\"keep\":true,\"topic\":\"dev/1\",\"at\":\"2023-11-14T22:13:20.123Z\","
		 "\"dev\":\"1\",\"temp\":21.5,\"lit\":\"x21.5y\"}");
	V("{}", "{\"topic\":\"dev/1\",\"at\":\"2023-11-14T22:13:20.123Z\",\"dev\":\"1\",\"temp\":\"none\",\"lit\":\"x-y\"}");
	V("5", "{\"value\":5,\"topic\":\"dev/1\",\"at\":\"2023-11-14T22:13:20.123Z\",\"dev\":\"1\","
		 "\"temp\":\"none\",\"lit\":\"x-y\"}");

	build1("variables = none\n");
	V("{\"a\":1}", "{}");
	build1("variables = none\nvar.k = {1}\n");
	V("{\"a\":1}", "{\"k\":\"dev\"}");
	/* an extra named like wrap_key replaces the wrapped payload */
	build1("var.value = {1}\n");
	V("[1]", "{\"value\":\"dev\"}");
}

/* Issue 8 item 8: what is re-serialised is the payload's own text, so a
 * number cJSON cannot hold (1e400, 12345678901234567890123) or a string
 * holding \u0000 reaches the gateway unchanged; where a value must become
 * a C string (a key, a name) a NUL makes the event a dead letter. */
static void test_values_kept_exact(void **state)
{
	(void)state;
	/* topic_variable forces the payload object to be rebuilt */
	build1("topic_variable = topic\nvar.n2 = {/n}\nvar.s2 = {/s}\n");
	V("{\"n\": 1e400, \"s\": \"ab\\u0000cd\", \"b\": 12345678901234567890123, \"f\": 0.1, \"g\": 1.50}",
	  "{\"n\":1e400,\"s\":\"ab\\u0000cd\",\"b\":12345678901234567890123,\"f\":0.1,\"g\":1.50,"
	  "\"topic\":\"dev/1\",\"n2\":1e400,\"s2\":\"ab\\u0000cd\"}");
	build1("topic_variable = topic\n");
	/* a key holding \u0000 is kept, never taken for an extra's name */
	V("{\"topic\\u0000x\":[1, {\"d\" : -0.0}],\"topic\":2}",
	  "{\"topic\\u0000x\":[1,{\"d\":-0.0}],\"topic\":\"dev/1\"}");
	/* blanks inside strings survive the compaction */
	V("{\"a\" :\t\" x , } \" }", "{\"a\":\" x , } \",\"topic\":\"dev/1\"}");
	/* a UTF-8 BOM (which cJSON skips) is not sent */
	V("\xEF\xBB\xBF{\"a\":1}", "{\"a\":1,\"topic\":\"dev/1\"}");
	build1("");
	V("\xEF\xBB\xBF {\"a\":1} ", "{\"a\":1}");

	/* numbers in string templates: the digits as sent */
	key_is("{/n}", "a", "{\"n\":12345678901234567890123}", "12345678901234567890123");
	key_is("x{/n}", "a", "{\"n\":1e400}", "x1e400");
	key_is("{/n}", "a", "{\"n\":1.50}", "1.50");
	key_is("{/o}", "a", "{\"o\": { \"k\" : [ 1e400 , \"a b\" ] } }", "{\"k\":[1e400,\"a b\"]}");
	/* a string with NUL cannot be a key: dead letter naming the field */
	build1("");
	key_is("{/s}", "a", "{\"s\":\"ab\\\\u0000\"}", "ab\\u0000"); /* an escaped backslash, no NUL */
	assert_int_equal(build("[route t]\ntopic = #\nmessage_name = n\ncorrelation_key = k-{/s}\n"), 0);
	assert_int_equal(render("a", "{\"s\":\"ab\\u0000cd\"}"), M2Z_ERR_PARSE);
	assert_non_null(strstr(reason, "correlation_key: JSON pointer /s is a string holding \\u0000"));
	/* a pointer through a key holding NUL finds nothing */
	assert_int_equal(build("[route t]\ntopic = #\nmessage_name = n\ncorrelation_key = {/ab|none}\n"), 0);
	assert_int_equal(render("a", "{\"ab\\u0000\":\"x\"}"), 0);
	assert_string_equal(msg.correlation_key, "none");
}

static void test_json_pointer_text(void **state)
{
	static const char doc[] = "{\"a\":[10, {\"b/c\" :  \"v\" }], \"m~n\":1e400, \"e\":{}}";
	void *root = cJSON_Parse(doc);
	const char *v;
	size_t n;

	(void)state;
	assert_non_null(json_pointer_text(root, doc, strlen(doc), "/a/1/b~1c", 9, &v, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(v, "\"v\"", 3);
	assert_non_null(json_pointer_text(root, doc, strlen(doc), "/m~0n", 5, &v, &n));
	assert_memory_equal(v, "1e400", n);
	assert_non_null(json_pointer_text(root, doc, strlen(doc), "/a", 2, &v, &n));
	assert_memory_equal(v, "[10, {\"b/c\" :  \"v\" }]", n);
	assert_non_null(json_pointer_text(root, doc, strlen(doc), "/e", 2, &v, &n));
	assert_memory_equal(v, "{}", n);
	assert_non_null(json_pointer_text(root, doc, strlen(doc), "", 0, &v, &n));
	assert_int_equal(n, strlen(doc));
	assert_null(json_pointer_text(root, doc, strlen(doc), "/a/2", 4, &v, &n));
	assert_null(json_pointer_text(root, doc, strlen(doc), "/a/01", 5, &v, &n));
	/* fuzz_jsonptr, first input: without a text, "" is the root (no
	 * arithmetic on the NULL text: UBSan's pointer-overflow) */
	assert_ptr_equal(json_pointer_get(root, "", 0), root);
	assert_ptr_equal(json_pointer_get(root, "/m~0n", 5), json_pointer_text(root, doc, strlen(doc), "/m~0n", 5, &v, &n));
	cJSON_Delete(root);
	/* fuzz_jsonptr, 300 s run: a NUL inside a pointer token matched the
	 * key's terminator and the compare read past the key (ASan overflow) */
	root = cJSON_Parse("{\"dup\":1}");
	assert_null(json_pointer_get(root, "/dup\0\276\276", 7));
	assert_null(json_pointer_get(root, "/dup\0", 5));
	assert_non_null(json_pointer_get(root, "/dup", 4));
	cJSON_Delete(root);
}

static void test_message_id(void **state)
{
	char first[64];
	(void)state;
	build1("");
	assert_int_equal(render("a/b", "{\"x\":1}"), 0);
	assert_int_equal(strlen(msg.message_id), 36);
	assert_memory_equal(msg.message_id, "m2z-", 4);
	for (size_t i = 4; i < 36; i++)
		assert_non_null(strchr("0123456789abcdef", msg.message_id[i]));
	strcpy(first, msg.message_id);
	assert_int_equal(render("a/b", "{\"x\":1}"), 0);
	assert_string_equal(msg.message_id, first);
	assert_int_equal(render("a/b", "{\"x\":2}"), 0);
	assert_string_not_equal(msg.message_id, first);
	assert_int_equal(render("a/c", "{\"x\":1}"), 0);
	assert_string_not_equal(msg.message_id, first);
	/* same topic+payload on another route: another id */
	assert_int_equal(build("[route t2]\ntopic = #\nmessage_name = n\ncorrelation_key = k\n"), 0);
	assert_int_equal(render("a/b", "{\"x\":1}"), 0);
	assert_string_not_equal(msg.message_id, first);

	build1("message_id = none\n");
	assert_int_equal(render("a/b", "{}"), 0);
	assert_string_equal(msg.message_id, "");
	build1("message_id = {2}-{/seq}\n");
	assert_int_equal(render("a/b", "{\"seq\":9}"), 0);
	assert_string_equal(msg.message_id, "b-9");
	assert_int_equal(render("a/b", "{}"), M2Z_ERR_NOT_FOUND);
	assert_string_equal(reason, "message_id: JSON pointer /seq not found in payload");
}

static void test_fields_and_tenant(void **state)
{
	(void)state;
	build1("ttl = 90s\ntenant_id = {1}\n");
	assert_int_equal(render("tenant-A.1/x", "{}"), 0);
	assert_string_equal(msg.name, "n");
	assert_string_equal(msg.correlation_key, "k");
	assert_string_equal(msg.tenant_id, "tenant-A.1");
	assert_int_equal(msg.ttl_ms, 90000);
	assert_int_equal(render("bad tenant/x", "{}"), M2Z_ERR_PARSE);
	assert_string_equal(reason, "tenant_id: 'bad tenant' is not a valid tenant id (1-31 of A-Z a-z 0-9 _ . -)");
	assert_int_equal(render("abcdefghijabcdefghijabcdefghijab/x", "{}"), M2Z_ERR_PARSE); /* 32 chars */
	assert_int_equal(render("abcdefghijabcdefghijabcdefghija/x", "{}"), 0);             /* 31 chars */
	assert_int_equal(render("<default>/x", "{}"), 0);
	build1("");
	assert_int_equal(render("a", "{}"), 0);
	assert_string_equal(msg.tenant_id, "");
}

static void test_size_limit(void **state)
{
	char payload[2000];
	(void)state;
	build1("");
	memset(payload, 'x', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	assert_int_equal(routes_render(rt, 0, "t", payload, strlen(payload), 0, 0, &rb, &msg, reason, sizeof(reason)), 0);
	size_t need = event_request_size(&msg);
	assert_true(need > 2000);
	assert_int_equal(routes_render(rt, 0, "t", payload, strlen(payload), 0, need, &rb, &msg, reason, sizeof(reason)), 0);
	assert_int_equal(routes_render(rt, 0, "t", payload, strlen(payload), 0, need - 1, &rb, &msg, reason,
				       sizeof(reason)), M2Z_ERR_TOO_BIG);
	char want[200];
	snprintf(want, sizeof(want), "request is %zu bytes, over the limit of %zu bytes ([zeebe] max_message_size)",
		 need, need - 1);
	assert_string_equal(reason, want);
}

static void test_warm_buffers(void **state)
{
	char *p[5];
	(void)state;
	build1("var.a = {1}\n");
	assert_int_equal(render("dev/1", "{\"a\":1,\"b\":[1,2,3]}"), 0);
	p[0] = rb.name.p; p[1] = rb.key.p; p[2] = rb.id.p; p[3] = rb.vars.p; p[4] = rb.tenant.p;
	for (int i = 0; i < 100; i++)
		assert_int_equal(render("dev/2", "{\"a\":2,\"b\":[3,2,1]}"), 0);
	assert_ptr_equal(p[0], rb.name.p);
	assert_ptr_equal(p[1], rb.key.p);
	assert_ptr_equal(p[2], rb.id.p);
	assert_ptr_equal(p[3], rb.vars.p);
	assert_ptr_equal(p[4], rb.tenant.p);
	assert_string_equal(msg.variables, "{\"b\":[3,2,1],\"a\":\"dev\"}");
}

static void test_print(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	(void)state;
	assert_int_equal(build("[route pump]\ntopic = plant/+/pump\nqos = 2\nmessage_name = pump-{2}\n"
			       "correlation_key = {/serial}\nttl = 10m\ntenant_id = t1\ntopic_variable = src\n"
			       "var.site = {1}\n"), 0);
	f = open_memstream(&text, &len);
	routes_print(rt, f);
	fclose(f);
	assert_non_null(strstr(text, "route 1 'pump': topic plant/+/pump (QoS 2)"));
	assert_non_null(strstr(text, "message_name    pump-{2}\n"));
	assert_non_null(strstr(text, "correlation_key {/serial}\n"));
	assert_non_null(strstr(text, "message_id      auto"));
	assert_non_null(strstr(text, "ttl             10m\n"));
	assert_non_null(strstr(text, "tenant_id       t1\n"));
	assert_non_null(strstr(text, "+ src = the topic\n"));
	assert_non_null(strstr(text, "+ site = {1}\n"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_topic_matches, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filter_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_template_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_templates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_match_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_variables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_values_kept_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_pointer_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fields_and_tenant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_warm_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_print, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
