/* reload.h - SIGHUP: read the configuration file again and apply what can
 * change while running.
 *
 * Applied at once: every [route NAME] (new filters subscribed, removed ones
 * unsubscribed; a message in hand finishes with the routes it started
 * with), [log] level and stats_interval, [forward] retry_initial and
 * retry_max. Events already in the spool were rendered when they arrived:
 * a route change applies to new events only; calls in flight are not
 * touched.
 *
 * Everything else ([zeebe], [oauth], [mqtt], [spool], the other [forward]
 * keys) is a connection or storage setting: a change is not applied, each
 * one is logged at WARN as "restart to apply: zeebe.address changed", and
 * the rest of the file is applied.
 *
 * A file that does not load (syntax, range, cross-field or template error)
 * is refused as a whole: one ERROR line with "FILE:LINE: what was expected"
 * and the running configuration stays. */
#ifndef M2Z_RELOAD_H
#define M2Z_RELOAD_H

#include <stdint.h>

struct config;
struct ingest;
struct mqtt_in;
struct forward;

struct reload_target {
	const char *path;               /* the file to read again */
	const struct config *running;   /* borrowed: the configuration the agent
					   started with (connections, storage) */
	struct ingest *ingest;          /* borrowed; gets the new routes */
	struct mqtt_in *mqtt;           /* borrowed; gets the new filters */
	struct forward *fw;             /* borrowed; gets the retry settings */
	int cli_level;                  /* --log-level given: it wins; -1 = none */
};

/* Values the caller applies itself (the main loop's timer). */
struct reload_live {
	int64_t stats_interval_ms;
};

/* Main thread only. M2Z_OK: applied (perhaps with "restart to apply"
 * warnings), LIVE filled. M2Z_ERR_CONFIG or M2Z_ERR_NOMEM: refused, nothing
 * changed, LIVE untouched. */
int reload_apply(const struct reload_target *t, struct reload_live *live);

#endif
