/* reload.c - SIGHUP: load the file again, apply what can change live; see
 * reload.h. */
#define LOG_MODULE "reload"
#include "reload.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "err.h"
#include "forward.h"
#include "ingest.h"
#include "log.h"
#include "mqtt_in.h"
#include "route.h"

/* Global keys applied while running; every other changed key waits for a
 * restart. Routes are always applied. */
static const char *const live_keys[] = {
	"log.level", "log.stats_interval", "forward.retry_initial", "forward.retry_max", NULL,
};

static bool is_live(const char *section, const char *key)
{
	char name[128];

	snprintf(name, sizeof(name), "%s.%s", section, key);
	for (int i = 0; live_keys[i]; i++)
		if (strcmp(live_keys[i], name) == 0)
			return true;
	return false;
}

/* conf_diff callback: ARG counts the changes that wait for a restart. */
static void restart_only(void *arg, const char *section, const char *key)
{
	int *pending = arg;

	if (is_live(section, key))
		return;
	(*pending)++;
	log_warn("restart to apply: %s.%s changed (the running value stays until then)", section, key);
}

int reload_apply(const struct reload_target *t, struct reload_live *live)
{
	struct mqtt_sub subs[CONF_MAX_ROUTES];
	struct config *cfg = NULL;
	struct routes *rt = NULL;
	char err[1024];
	int pending = 0, level;
	int64_t retry_initial, retry_max, interval;
	size_t n;

	log_info("SIGHUP: reading %s again", t->path);
	if (conf_load(t->path, &cfg, err, sizeof(err)) != M2Z_OK ||
	    routes_new(cfg, &rt, err, sizeof(err)) != M2Z_OK) {
		log_err("%s; reload refused, the running configuration stays", err);
		conf_free(cfg);
		return M2Z_ERR_CONFIG;
	}
	n = routes_count(rt);
	for (size_t i = 0; i < n; i++) {
		subs[i].filter = routes_filter(rt, i);
		subs[i].qos = routes_qos(rt, i);
	}
	/* Read what we need from CFG before the ingest owns it. */
	level = cfg->log.level;
	retry_initial = cfg->forward.retry_initial_ms;
	retry_max = cfg->forward.retry_max_ms;
	interval = cfg->log.stats_interval_ms;
	conf_diff(t->running, cfg, restart_only, &pending);
	/* Routes first, then the subscriptions: a message on a new filter
	 * must never find the old routes (it would be counted unrouted). */
	if (ingest_set_routes(t->ingest, cfg, rt) != M2Z_OK) {
		log_err("out of memory; reload refused, the running configuration stays");
		routes_free(rt);
		conf_free(cfg);
		return M2Z_ERR_NOMEM;
	}
	if (t->cli_level < 0)
		log_set_level(level);
	if (t->fw)
		forward_set_retry(t->fw, retry_initial, retry_max);
	live->stats_interval_ms = interval;
	if (t->mqtt && mqtt_in_set_subs(t->mqtt, subs, n) != M2Z_OK)
		log_err("out of memory: the MQTT subscriptions did not change; restart to apply them");
	log_info("reloaded %s: %zu route(s) for new events (events already in the spool keep "
		 "their rendered form)%s", t->path, n,
		 pending ? "; some changes wait for a restart (see above)" : "");
	return M2Z_OK;
}
