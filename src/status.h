/* status.h - the retained MQTT status document (zigbee2mqtt's
 * "bridge/state" convention, which Home Assistant and Node-RED users know).
 *
 * On the status topic (default mqtt2zeebe/<mqtt client_id>/status, all
 * retained): the broker's Last Will {"state":"offline"} when the agent dies
 * or loses the broker; {"state":"online", ...the health document...} on
 * connect, on every peer state change and every [status] interval; a clean
 * stop publishes {"state":"offline"} itself. */
#ifndef M2Z_STATUS_H
#define M2Z_STATUS_H

#include "buf.h"
#include "health.h"

#define STATUS_OFFLINE "{\"state\":\"offline\"}"

/* The online document for S into OUT (replaced). 0 or M2Z_ERR_NOMEM.
 * {"state":"online","version":"0.1.0","uptime_s":12,
 *  "peers":{"mqtt":{"state":"up","since":"2026-...Z","reason":""},...},
 *  "counters":{"received":...,"published":...,...},
 *  "backlog":{"events":0,"bytes":0,"oldest_age_s":0},
 *  "last_publish":"2026-...Z" | null} */
int status_format(const struct health_snapshot *s, const char *version, struct buf *out);

#endif
