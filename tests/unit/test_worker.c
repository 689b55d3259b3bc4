/* test_worker.c - the pure parts of the job worker: [worker NAME] parsing
 * and checks (conf.c), template compilation and topic safety (worker.c over
 * route.c's document templates). The job life cycle is covered end to end
 * by tests/integration/test_worker.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "err.h"
#include "log.h"
#include "route.h"
#include "worker.h"

static char err[1024];

static int setup(void **state)
{
	(void)state;
	log_set_level(LOG_LVL_ERROR);
	return 0;
}

/* Load "[worker w]\njob_type = t\n" + EXTRA and compile it. Returns the
 * first failing code; ERR has the message. */
static int load(const char *extra, struct config **cfg, struct workers **ws)
{
	char text[4096];
	int rc;

	*cfg = NULL;
	*ws = NULL;
	snprintf(text, sizeof(text), "[mqtt]\nclient_id = me\n\n[worker w]\njob_type = t\n%s", extra);
	rc = conf_load_string("w.ini", text, cfg, err, sizeof(err));
	if (rc == 0)
		rc = workers_new(*cfg, ws, err, sizeof(err));
	return rc;
}

static void expect_error(const char *extra, const char *msg)
{
	struct config *cfg;
	struct workers *ws;

	assert_int_not_equal(load(extra, &cfg, &ws), 0);
	if (!strstr(err, msg))
		fail_msg("expected '%s' in '%s'", msg, err);
	assert_non_null(strstr(err, "w.ini:"));
	workers_free(ws);
	conf_free(cfg);
}

/* workers_print() of WS; free() the result. */
static char *printed(struct workers *ws)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	workers_print(ws, f);
	fclose(f);
	return out;
}

static void test_defaults_and_print(void **state)
{
	struct config *cfg;
	struct workers *ws;
	char *out;

	(void)state;
	assert_int_equal(load("topic = plant/{/variables/id}/cmd\n", &cfg, &ws), 0);
	assert_int_equal(cfg->n_workers, 1);
	assert_int_equal(cfg->n_routes, 0);  /* a worker alone is a valid config */
	assert_string_equal(cfg->workers[0].payload, "{/variables}");
	assert_int_equal(cfg->workers[0].qos, 1);
	assert_int_equal(cfg->workers[0].mode, WORKER_PUBLISH);
	assert_int_equal(cfg->workers[0].max_jobs_active, 32);
	assert_true(cfg->workers[0].timeout_ms == 300000);
	assert_int_equal(workers_count(ws), 1);
	out = printed(ws);
	assert_non_null(strstr(out, "job type 't' as 'me'"));  /* name defaults to the client id */
	free(out);
	workers_free(ws);
	conf_free(cfg);
}

static void test_reply_filter(void **state)
{
	struct config *cfg;
	struct workers *ws;
	char *out;

	(void)state;
	assert_int_equal(load("topic = p/{/variables/id}/cmd/{/key}\nmode = request_reply\n"
			      "reply_topic = p/{/variables/id}/reply/{/key}\nname = edge-7\n", &cfg, &ws), 0);
	out = printed(ws);
	assert_non_null(strstr(out, "subscribed as p/+/reply/+"));
	assert_non_null(strstr(out, "as 'edge-7'"));
	free(out);
	workers_free(ws);
	conf_free(cfg);
}

static void test_config_errors(void **state)
{
	(void)state;
	expect_error("", "[worker w] needs topic");
	expect_error("topic = {/key}\n", "must start with a fixed topic level");
	expect_error("topic = plant/#\n", "'+' and '#' are not allowed");
	expect_error("topic = plant/{1}\n", "only {/json/pointer} expressions");
	expect_error("topic = plant/{/key\n", "'{' without '}'");
	expect_error("topic = p/x\nmode = request_reply\n", "needs reply_topic");
	expect_error("topic = p/x\nmode = request_reply\nreply_topic = p/{/key}/r\nreply_timeout = 5m\n",
		     "must be below the job timeout");
	expect_error("topic = p/x\nmode = request_reply\nreply_topic = p/r/k{/key}\n",
		     "{/key} as a whole level");
	expect_error("topic = p/x\nerror_pointer = /s\n", "error_pointer needs error_code");
	expect_error("topic = p/x\nerror_pointer = s\nerror_code = E\n", "expected a JSON pointer");
	expect_error("topic = p/x\nqos = 3\n", "qos: expected an integer 0..2");
	expect_error("topic = p/x\nmode = maybe\n", "expected one of publish, request_reply");
	expect_error("topic = p/x\nbogus = 1\n", "unknown key 'bogus' in [worker w]");
	expect_error("topic = p/x\n[worker w]\n", "[worker w] already defined at line 4");
}

/* The topic rule, through the same document templates the worker uses. */
static void test_topic_values(void **state)
{
	static const struct { const char *vars; int rc; } cases[] = {
		{ "{\"id\":\"valve7\"}", M2Z_OK },
		{ "{\"id\":\"a/b\"}", M2Z_ERR_INVAL },
		{ "{\"id\":\"+\"}", M2Z_ERR_INVAL },
		{ "{\"id\":\"x#\"}", M2Z_ERR_INVAL },
		{ "{\"id\":\"\"}", M2Z_ERR_INVAL },
		{ "{\"id\":17}", M2Z_OK },
		{ "{}", M2Z_ERR_NOT_FOUND },
	};
	struct doc_tmpl *t;
	struct render_buf rb = RENDER_BUF_INIT;
	struct buf out = BUF_INIT;
	char why[256], reason[256];
	const char *lit;

	(void)state;
	assert_int_equal(doc_tmpl_new("topic", "plant/{/variables/id}/cmd/{/key}", &t, why, sizeof(why)), 0);
	assert_int_equal(doc_tmpl_prefix(t, &lit), 6);
	assert_memory_equal(lit, "plant/", 6);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char doc[256];
		cJSON *root;
		snprintf(doc, sizeof(doc), "{\"key\":\"9007199254740993\",\"variables\":%s}", cases[i].vars);
		root = cJSON_Parse(doc);
		assert_int_equal(doc_tmpl_render(t, root, DOC_TMPL_TOPIC, &rb, &out, reason, sizeof(reason)),
				 cases[i].rc);
		if (cases[i].rc == M2Z_OK && i == 0)
			assert_string_equal(out.p, "plant/valve7/cmd/9007199254740993");
		if (cases[i].rc == M2Z_ERR_INVAL)
			assert_non_null(strstr(reason, "free of '/', '+' and '#'"));
		cJSON_Delete(root);
	}
	/* Without the topic flag the same values are fine (payloads). */
	{
		cJSON *root = cJSON_Parse("{\"key\":\"1\",\"variables\":{\"id\":\"a/b\"}}");
		assert_int_equal(doc_tmpl_render(t, root, 0, &rb, &out, reason, sizeof(reason)), 0);
		assert_string_equal(out.p, "plant/a/b/cmd/1");
		cJSON_Delete(root);
	}
	doc_tmpl_free(t);
	render_buf_free(&rb);
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults_and_print, setup),
		cmocka_unit_test_setup(test_reply_filter, setup),
		cmocka_unit_test_setup(test_config_errors, setup),
		cmocka_unit_test_setup(test_topic_values, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
