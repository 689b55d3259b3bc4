/* commands.h - the one-shot subcommands (--dry-run, --check-connection,
 * --replay-dead-letters), and the two open steps they share with the
 * daemon's start-up in main.c. Each command returns the process exit status
 * (0 ok, 1 failure); output goes to stdout, problems to stderr/the log. */
#ifndef M2Z_COMMANDS_H
#define M2Z_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

#include "deadletter.h"

struct config;
struct routes;
struct spool;
struct oauth;
struct zeebe;

#define M2Z_USER_AGENT "mqtt2zeebe/" M2Z_VERSION

/* Open the spool and DIR/dead-letters.jsonl (bounded by [forward]
 * dead_letter_max_*; ON_LINE may be NULL). On failure nothing stays open. */
int open_storage(const struct config *cfg, deadletter_line_fn on_line, void *arg,
		 struct spool **spool, struct deadletter **dead);

/* Create the token client (when [oauth] is set; else *oauth = NULL) and the
 * gateway channel. FRESH_TOKEN: do not reuse a token cached on disk (the new
 * one is still stored). On failure nothing stays open. */
int open_clients(const struct config *cfg, bool fresh_token, struct oauth **oauth,
		 struct zeebe **zeebe);

/* Print the PublishMessage TOPIC + PAYLOAD would become, as JSON. */
int cmd_dry_run(const struct config *cfg, const struct routes *rt, const char *topic,
		const void *payload, size_t len);

/* Fetch a token (if configured) and call Topology; one line each. */
int cmd_check_connection(const struct config *cfg);

/* Re-ingest dead-letter FILE through the current routes into the spool (the
 * agent must be stopped: the spool is locked). Lines that still fail go to
 * FILE.failed. */
int cmd_replay(const struct config *cfg, const struct routes *rt, const char *file);

#endif
