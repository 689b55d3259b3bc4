/* metrics.h - GET /metrics (Prometheus text format 0.0.4) and GET /healthz
 * over HTTP, on libmicrohttpd's own thread: off the hot path, it only reads
 * health_snapshot() (atomics and short-held locks).
 *
 *   /healthz  200 {"status":"ok","reason":"forwarding"} while the agent can
 *             forward or buffers within bounds; 503
 *             {"status":"unhealthy","reason":"..."} when the forwarder loop
 *             is stuck or the spool is 90% full (health_verdict()).
 *
 * Off unless [metrics] listen = host:port is set. Bind to 127.0.0.1 unless
 * something else must scrape it: there is no authentication. */
#ifndef M2Z_METRICS_H
#define M2Z_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "health.h"

struct metrics;

/* Listen on LISTEN ("127.0.0.1:9464", "[::1]:9464", ":9464" = every
 * address). H is borrowed and must outlive the server. STALL_MS: see
 * health_verdict(). ERR gets a reason on failure (M2Z_ERR_NET). */
int metrics_start(const char *listen, struct health *h, const char *version, int64_t stall_ms,
		  struct metrics **out, char *err, size_t errlen);
/* Stop the server thread and free. NULL is fine. */
void metrics_stop(struct metrics *m);

/* Pure: the exposition text for S into OUT (replaced). 0 or M2Z_ERR_NOMEM. */
int metrics_format(const struct health_snapshot *s, const char *version, struct buf *out);

#endif
