/* commands.c - one-shot subcommands; see commands.h. */
#define LOG_MODULE "main"
#include "commands.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "conf.h"
#include "credentials.h"
#include "err.h"
#include "ingest.h"
#include "log.h"
#include "oauth.h"
#include "route.h"
#include "spool.h"
#include "util.h"
#include "zeebe.h"

/* ---- shared open steps --------------------------------------------------------- */

static int open_dead(const struct config *cfg, const char *path, deadletter_line_fn on_line,
		     void *arg, struct deadletter **dead)
{
	struct deadletter_opts dopt = {
		.path = path, .max_bytes = cfg->forward.dead_letter_max_bytes,
		.max_files = cfg->forward.dead_letter_max_files,
		.on_line = on_line, .on_line_arg = arg,
	};

	return deadletter_open(&dopt, dead);
}

int open_storage(const struct config *cfg, deadletter_line_fn on_line, void *arg,
		 struct spool **spool, struct deadletter **dead)
{
	const struct conf_spool *s = &cfg->spool;
	struct spool_opts so = {
		.dir = s->directory, .sync = s->sync, .group_commit_ms = s->group_commit_ms,
		.max_bytes = s->max_bytes, .max_age_ms = s->max_age_ms,
		.on_full = s->on_full, .segment_bytes = s->segment_bytes,
		.reserve_bytes = s->reserve_bytes,
	};
	char path[4096];

	if (spool_open(&so, spool) != M2Z_OK)
		return M2Z_ERR_IO;
	snprintf(path, sizeof(path), "%s/dead-letters.jsonl", s->directory);
	if (open_dead(cfg, path, on_line, arg, dead) != M2Z_OK) {
		spool_free(*spool);
		*spool = NULL;
		return M2Z_ERR_IO;
	}
	return M2Z_OK;
}

int open_clients(const struct config *c, bool fresh_token, struct oauth **oauth,
		 struct zeebe **zeebe)
{
	char err[512], *basic = NULL;
	int rc;

	*oauth = NULL;
	if (c->oauth.enabled) {
		struct oauth_opts oo = {
			.url = c->oauth.url, .client_id = c->oauth.client_id,
			.client_secret = c->oauth.client_secret, .audience = c->oauth.audience,
			.scope = c->oauth.scope, .ca_file = c->oauth.ca_certificate,
			.timeout_ms = c->oauth.request_timeout_ms,
			.refresh_ahead_ms = c->oauth.refresh_ahead_ms, .user_agent = M2Z_USER_AGENT,
			.cache_dir = c->oauth.token_cache_dir, .skip_cache_read = fresh_token,
			.client_id_from = c->oauth.client_id_from, .audience_from = c->oauth.audience_from,
			.min_refresh_ms = c->oauth.min_refresh_interval_ms,
		};
		if (oauth_new(&oo, oauth) != M2Z_OK)
			return M2Z_ERR_AUTH;
	}
	struct zeebe_opts zo = {
		.address = c->zeebe.address, .insecure = c->zeebe.insecure,
		.ca_file = c->zeebe.ca_certificate, .authority = c->zeebe.override_authority,
		.deadline_ms = c->zeebe.request_timeout_ms, .keepalive_ms = c->zeebe.keepalive_ms,
		.max_message_size = c->zeebe.max_message_size, .user_agent = M2Z_USER_AGENT,
		.oauth = *oauth,
	};
	if (c->zeebe.auth == CONF_AUTH_BASIC &&
	    !(zo.basic_auth = basic = credentials_basic_header(c->zeebe.username, c->zeebe.password)))
		rc = M2Z_ERR_NOMEM;
	else
		rc = zeebe_new(&zo, zeebe, err, sizeof(err));
	if (basic) {
		explicit_bzero(basic, strlen(basic));
		free(basic);
	}
	if (rc != M2Z_OK) {
		if (rc != M2Z_ERR_NOMEM)
			log_err("cannot create the gateway client: %s", err);
		if (*oauth)
			oauth_free(*oauth);
		*oauth = NULL;
		return rc == M2Z_ERR_NOMEM ? rc : M2Z_ERR_NET;
	}
	return M2Z_OK;
}

/* ---- --dry-run --------------------------------------------------------------- */

int cmd_dry_run(const struct config *cfg, const struct routes *rt, const char *topic,
		const void *payload, size_t len)
{
	struct render_buf rb = { 0 };
	struct publish_msg msg;
	char reason[512];
	int route = routes_match(rt, topic);
	cJSON *o;
	char *text;

	if (route < 0) {
		fprintf(stderr, "no route matches topic '%s'\n", topic);
		return 1;
	}
	if (routes_render(rt, (size_t)route, topic, payload, len, now_ms(),
			  cfg->zeebe.max_message_size, &rb, &msg, reason, sizeof(reason)) != M2Z_OK) {
		fprintf(stderr, "route %s: would be a dead letter: %s\n",
			routes_name(rt, (size_t)route), reason);
		render_buf_free(&rb);
		return 1;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "route", msg.route);
	cJSON_AddStringToObject(o, "name", msg.name);
	cJSON_AddStringToObject(o, "correlationKey", msg.correlation_key);
	cJSON_AddStringToObject(o, "messageId", msg.message_id);
	cJSON_AddNumberToObject(o, "timeToLive", (double)msg.ttl_ms);
	cJSON_AddStringToObject(o, "tenantId", msg.tenant_id);
	/* as it would be sent: parsing and printing it again would turn 1e400 into null */
	cJSON_AddItemToObject(o, "variables", cJSON_CreateRaw(msg.variables));
	text = cJSON_PrintUnformatted(o);
	printf("%s\n", text);
	free(text);
	cJSON_Delete(o);
	render_buf_free(&rb);
	return 0;
}

/* ---- --check-connection --------------------------------------------------------- */

int cmd_check_connection(const struct config *cfg)
{
	struct oauth *oauth;
	struct zeebe *zeebe;
	char summary[512], why[1600];
	int code, rc = 0;

	/* A fresh token: the point is to prove the credentials. */
	if (open_clients(cfg, true, &oauth, &zeebe) != M2Z_OK)
		return 1;
	if (oauth) {
		/* Stops at the first 400/401: retrying cannot fix credentials. */
		if (oauth_wait_verdict(oauth, cfg->oauth.request_timeout_ms + 1000, why, sizeof(why)) == M2Z_OK) {
			printf("token: ok (%s)\n", cfg->oauth.url);
		} else {
			printf("token: FAILED from %s: %s\n", cfg->oauth.url, why);
			zeebe_free(zeebe);
			oauth_free(oauth);
			return 1;
		}
	}
	code = zeebe_topology(zeebe, cfg->zeebe.request_timeout_ms, summary, sizeof(summary));
	printf("gateway %s: %s %s\n", cfg->zeebe.address, zeebe_code_name(code), summary);
	zeebe_free(zeebe);
	if (oauth)
		oauth_free(oauth);
	return code == ZEEBE_OK ? rc : 1;
}

/* ---- --replay-dead-letters ------------------------------------------------------ */

/* One dead-letter line through ingest; true when it is in the spool. Else
 * *WHY says why, or is NULL when ingest wrote a new dead letter for it. */
static bool replay_line(struct ingest *ing, const char *line, const char **why)
{
	cJSON *o = cJSON_Parse(line);
	const char *topic = cJSON_GetStringValue(cJSON_GetObjectItem(o, "topic"));
	const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(o, "payload"));
	const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItem(o, "payload_base64"));
	unsigned char *raw = NULL;
	size_t len = text ? strlen(text) : 0;
	enum ingest_outcome out = INGEST_NOT_KEPT;

	if (b64)
		raw = base64_decode(b64, &len);
	if (!o)
		*why = "not a JSON object (unparseable or truncated line)";
	else if (!topic)
		*why = "no \"topic\"";
	else if (b64 && !raw)
		*why = "payload_base64 is not valid base64";
	else if (!text && !raw)
		*why = cJSON_IsTrue(cJSON_GetObjectItem(o, "payload_omitted"))
			       ? "payload_omitted: the payload was not kept, it cannot be replayed"
			       : "no \"payload\" or \"payload_base64\"";
	else
		out = ingest_message(ing, topic, raw ? (const void *)raw : text, len, false);
	if (o && topic && (text || raw))
		*why = out == INGEST_DEAD ? NULL : out == INGEST_UNROUTED ? "no route matches its topic"
		     : out == INGEST_SKIPPED ? "skipped (an own topic of the agent)"
		     : out == INGEST_REJECTED ? "spool full" : "not written to the spool";
	free(raw);
	cJSON_Delete(o);
	return out == INGEST_KEPT;
}

int cmd_replay(const struct config *cfg, const struct routes *rt, const char *file)
{
	FILE *in = fopen(file, "r");
	char *line = NULL, failed[4096];
	size_t cap = 0, ok = 0, bad = 0, lineno = 0;
	FILE *raw_failed = NULL;
	struct stat st;
	ssize_t n;
	struct spool *spool = NULL;
	struct deadletter *dead = NULL, *still = NULL;
	struct ingest *ing = NULL;
	int rc = 1;

	if (!in) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return 1;
	}
	if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "%s: not a regular file; expected a dead-letter file (JSON lines)\n", file);
		fclose(in);
		return 2;
	}
	snprintf(failed, sizeof(failed), "%s.failed", file);
	if (open_storage(cfg, NULL, NULL, &spool, &dead) != M2Z_OK)
		goto out;
	if (open_dead(cfg, failed, NULL, NULL, &still) != M2Z_OK)
		goto out;
	struct ingest_opts io = {
		.cfg = cfg, .routes = rt, .spool = spool, .dead = still, .no_hold = true,
	};
	if (ingest_new(&io, &ing) != M2Z_OK)
		goto out;
	while ((n = getline(&line, &cap, in)) > 0) {
		const char *why = NULL;
		lineno++;
		if (replay_line(ing, line, &why)) {
			ok++;
			continue;
		}
		bad++;
		if (!why)
			continue;       /* ingest wrote its dead letter to FILE.failed */
		/* Kept verbatim, so it can be fixed by hand and replayed again. */
		fprintf(stderr, "%s:%zu: %s\n", file, lineno, why);
		if (!raw_failed && !(raw_failed = fopen(failed, "a")))
			fprintf(stderr, "%s: %s\n", failed, strerror(errno));
		if (raw_failed) {
			fwrite(line, 1, (size_t)n, raw_failed);
			if (line[n - 1] != '\n')
				fputc('\n', raw_failed);
			fflush(raw_failed);
		}
	}
	printf("replayed %zu event(s) into the spool; %zu still failing (see %s)\n", ok, bad, failed);
	rc = bad ? 1 : 0;
out:
	free(line);
	fclose(in);
	if (raw_failed)
		fclose(raw_failed);
	ingest_free(ing);
	deadletter_close(still);
	deadletter_close(dead);
	if (spool) {
		spool_sync(spool);
		spool_free(spool);
	}
	return rc;
}
