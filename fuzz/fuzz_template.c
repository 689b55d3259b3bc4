/* fuzz_template.c - libFuzzer target: template compile + render for topic
 * and payload (route.c).
 *
 * Input: byte 0 picks the route shape (variables payload/none, extras on
 * or off); then the template up to the first '\n', the topic up to the
 * next '\n', the rest is the payload. The template is compiled as
 * message_name, correlation_key, message_id, tenant_id and var.v, so every
 * field's path is exercised. Oracle: a rendered variables document is one
 * JSON object, and the rendered strings hold no NUL before their end.
 * Seeds: fuzz/corpus/template/. */
#include "conf.h"
#include "err.h"
#include "log.h"
#include "route.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char base[] =
	"[zeebe]\naddress = 127.0.0.1:26500\ninsecure = true\n"
	"[route r]\ntopic = #\nmessage_name = n\ncorrelation_key = k\n";

static void set(char **field, const char *v)
{
	free(*field);
	*field = strdup(v);
	if (!*field)
		abort();
}

/* The next '\n'-terminated piece of [*p, end) as a C string (NUL cut it). */
static char *piece(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = strndup((const char *)*p, n);

	*p += n + (nl != NULL);
	if (!s)
		abort();
	return s;
}

static void check_render(const struct publish_msg *m)
{
	cJSON *v = cJSON_Parse(m->variables);

	if (!v || !cJSON_IsObject(v))
		abort(); /* the variables must be one JSON object */
	cJSON_Delete(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config *cfg;
	const uint8_t *p = data + 1, *end = data + size;
	struct render_buf rb = RENDER_BUF_INIT;
	struct routes *rt = NULL;
	struct publish_msg m;
	char err[512], reason[512], *tmpl, *topic;
	struct conf_route *r;

	if (size < 1)
		return 0;
	if (!cfg) {
		log_set_level(LOG_LVL_ERROR);
		if (conf_load_string("fuzz", base, &cfg, err, sizeof(err)))
			abort();
		r = &cfg->routes[0];
		r->var_names = calloc(1, sizeof(char *));
		r->var_templates = calloc(1, sizeof(char *));
		r->var_lines = calloc(1, sizeof(int));
		r->n_vars = 1;
		set(&r->var_names[0], "v");
	}
	r = &cfg->routes[0];
	tmpl = piece(&p, end);
	topic = piece(&p, end);
	r->variables = data[0] & 1 ? VARS_NONE : VARS_PAYLOAD;
	r->n_vars = data[0] & 2 ? 1 : 0;
	set(&r->topic_variable, data[0] & 4 ? "topic" : "");
	set(&r->time_variable, data[0] & 8 ? "v" : "");
	set(&r->message_name, tmpl);
	set(&r->correlation_key, tmpl);
	set(&r->message_id, data[0] & 16 ? "auto" : tmpl);
	set(&r->tenant_id, data[0] & 32 ? "" : tmpl);
	set(&r->var_templates[0], tmpl);
	if (routes_new(cfg, &rt, err, sizeof(err)) == M2Z_OK) {
		if (routes_render(rt, 0, topic, p, (size_t)(end - p), 1700000000000, 0, &rb, &m,
				  reason, sizeof(reason)) == M2Z_OK)
			check_render(&m);
		routes_free(rt);
	}
	render_buf_free(&rb);
	free(tmpl);
	free(topic);
	return 0;
}
