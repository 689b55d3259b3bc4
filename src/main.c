/* main.c - argv, wiring, signals; start and stop in order.
 *
 * Data flow: mqtt_in (libmosquitto thread) -> route -> event -> spool
 * (appended before the MQTT ack) -> forward (its own thread) -> zeebe
 * (gRPC completion thread) -> spool_ack / deadletter. */
#define LOG_MODULE "main"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "deadletter.h"
#include "err.h"
#include "event.h"
#include "forward.h"
#include "log.h"
#include "mqtt_in.h"
#include "oauth.h"
#include "route.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zeebe.h"

#define USER_AGENT "mqtt2zeebe/" M2Z_VERSION
#define EXIT_CONFIG 2

struct agent {
	struct config *cfg;
	struct routes *routes;
	struct spool *spool;
	struct deadletter *dead;
	struct oauth *oauth;
	struct zeebe *zeebe;
	struct forward *fw;
	struct mqtt_in *mqtt;
	/* used only on the MQTT thread */
	struct render_buf rb;
	struct buf rec;
	long crash_before, crash_after;   /* test hooks, see crash_hook() */
};

static atomic_bool g_stopping;

/* ---- ingest: runs inside libmosquitto's on_message ---------------------- */

/* Test-only: M2Z_TEST_CRASH=before_spool:N or after_spool:N kills the
 * process with SIGKILL while it handles the Nth message (before it returns,
 * so before the broker gets the PUBACK). The fault tests use it to prove a
 * crash at that moment loses nothing. */
static void crash_hook(long *when)
{
	if (*when > 0 && --*when == 0)
		raise(SIGKILL);
}

static void republish_dead(void *arg, const char *line)
{
	struct agent *ag = arg;
	const char *topic = ag->cfg->forward.dead_letter_topic;

	if (topic[0] && ag->mqtt)
		mqtt_in_publish(ag->mqtt, topic, line, strlen(line), 1);
}

static void dead_at_ingest(struct agent *ag, int route, const char *topic, const void *payload,
			   size_t len, const char *status, const char *reason)
{
	char *line = NULL;
	struct dead_event de = {
		.route = route >= 0 ? routes_name(ag->routes, (size_t)route) : "",
		.topic = topic, .payload = payload, .payload_len = len, .message_id = "",
		.correlation_key = "", .status = status, .reason = reason, .time_ms = now_ms(),
	};

	log_warn("dead letter: route=%s topic=%s status=%s reason=%s", de.route, topic, status, reason);
	if (deadletter_write(ag->dead, &de, &line) == M2Z_OK) {
		STAT_INC(dead_lettered);
		republish_dead(ag, line);
	}
	free(line);
}

/* Append with the configured policy. "block" is done here, not in the
 * spool, so that a shutdown can tell a message it must not acknowledge. */
static int append(struct agent *ag)
{
	int rc;
	bool warned = false;

	for (;;) {
		rc = spool_append(ag->spool, ag->rec.p, ag->rec.len, NULL);
		if (rc != M2Z_ERR_FULL || ag->cfg->spool.on_full != SPOOL_FULL_BLOCK)
			return rc;
		if (atomic_load(&g_stopping))
			return M2Z_ERR_CLOSED;
		if (!warned)
			log_warn("spool full: holding back the MQTT acknowledgement until it drains");
		warned = true;
		usleep(20 * 1000);
	}
}

static void ingest(void *arg, const char *topic, const void *payload, size_t len, int qos,
		   bool retain)
{
	struct agent *ag = arg;
	struct publish_msg msg;
	char reason[512];
	int64_t recv = now_ms();
	int route, rc;

	(void)qos;
	(void)retain;
	STAT_INC(received);
	crash_hook(&ag->crash_before);
	route = routes_match(ag->routes, topic);
	if (route < 0) {
		STAT_INC(unrouted);
		log_debug("no route for topic %s", topic);
		return;
	}
	rc = routes_render(ag->routes, (size_t)route, topic, payload, len, recv,
			   ag->cfg->zeebe.max_message_size, &ag->rb, &msg, reason, sizeof(reason));
	if (rc != M2Z_OK) {
		dead_at_ingest(ag, route, topic, payload, len,
			       rc == M2Z_ERR_TOO_BIG ? "TOO_BIG" : "RENDER", reason);
		return;
	}
	buf_reset(&ag->rec);
	if (event_encode(&msg, topic, payload, len, recv, &ag->rec) != M2Z_OK) {
		dead_at_ingest(ag, route, topic, payload, len, "ENCODE", "out of memory");
		return;
	}
	rc = append(ag);
	if (rc == M2Z_ERR_CLOSED) {
		/* Shutting down with a full spool: returning would acknowledge a
		 * message we did not keep. Leave now; the broker redelivers it. */
		log_warn("stopping with a full spool: exiting without acknowledging the message in hand");
		spool_sync(ag->spool);
		_exit(0);
	}
	if (rc == M2Z_ERR_FULL) {
		STAT_INC(rejected);
		log_warn("spool full: rejected message on %s (on_full = reject_newest)", topic);
		return;
	}
	if (rc != M2Z_OK) {
		dead_at_ingest(ag, route, topic, payload, len, "SPOOL", m2z_strerror(rc));
		return;
	}
	STAT_INC(spooled);
	crash_hook(&ag->crash_after);
	if (ag->fw)
		forward_kick(ag->fw);
}

/* ---- stats line ---------------------------------------------------------- */

static void log_stats(struct agent *ag)
{
	struct spool_stats ss;
	struct oauth_stats os = { 0, 0, 0 };
	int window = 0, in_flight = 0, waiting = 0;
	int64_t age = 0;

	spool_get_stats(ag->spool, &ss);
	if (ag->oauth)
		oauth_get_stats(ag->oauth, &os);
	if (ag->fw)
		forward_get_state(ag->fw, &window, &in_flight, &waiting);
	if (ss.oldest_ms)
		age = now_ms() - ss.oldest_ms;
	log_write(LOG_LVL_INFO, "stats", "received=%llu unrouted=%llu spooled=%llu published=%llu duplicates=%llu "
		 "retries=%llu dead_lettered=%llu dropped=%llu rejected=%llu backlog=%llu "
		 "backlog_bytes=%llu oldest_age_ms=%lld window=%d in_flight=%d token_failures=%llu",
		 (unsigned long long)STAT_GET(received), (unsigned long long)STAT_GET(unrouted),
		 (unsigned long long)STAT_GET(spooled), (unsigned long long)STAT_GET(published),
		 (unsigned long long)STAT_GET(duplicates), (unsigned long long)STAT_GET(retries),
		 (unsigned long long)STAT_GET(dead_lettered),
		 (unsigned long long)(STAT_GET(dropped) + ss.dropped),
		 (unsigned long long)STAT_GET(rejected), (unsigned long long)ss.records,
		 (unsigned long long)ss.bytes, (long long)age, window, in_flight,
		 (unsigned long long)os.failures);
}

/* ---- run ------------------------------------------------------------------ */

static int start_clients(struct agent *ag)
{
	const struct config *c = ag->cfg;
	char err[512];

	if (c->oauth.enabled) {
		struct oauth_opts oo = {
			.url = c->oauth.url, .client_id = c->oauth.client_id,
			.client_secret = c->oauth.client_secret, .audience = c->oauth.audience,
			.scope = c->oauth.scope, .ca_file = c->oauth.ca_certificate,
			.timeout_ms = c->oauth.request_timeout_ms,
			.refresh_ahead_ms = c->oauth.refresh_ahead_ms, .user_agent = USER_AGENT,
		};
		if (oauth_new(&oo, &ag->oauth) != M2Z_OK)
			return M2Z_ERR_AUTH;
	}
	struct zeebe_opts zo = {
		.address = c->zeebe.address, .insecure = c->zeebe.insecure,
		.ca_file = c->zeebe.ca_certificate, .authority = c->zeebe.override_authority,
		.deadline_ms = c->zeebe.request_timeout_ms, .keepalive_ms = c->zeebe.keepalive_ms,
		.max_message_size = c->zeebe.max_message_size, .user_agent = USER_AGENT,
		.oauth = ag->oauth,
	};
	if (zeebe_new(&zo, &ag->zeebe, err, sizeof(err)) != M2Z_OK) {
		log_err("cannot create the gateway client: %s", err);
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

static int open_spool(struct agent *ag)
{
	const struct conf_spool *s = &ag->cfg->spool;
	struct spool_opts so = {
		.dir = s->directory, .sync = s->sync, .group_commit_ms = s->group_commit_ms,
		.max_bytes = s->max_bytes, .max_age_ms = s->max_age_ms,
		/* "block" is handled in append(): the spool itself rejects. */
		.on_full = s->on_full == SPOOL_FULL_BLOCK ? SPOOL_FULL_REJECT_NEWEST : s->on_full,
		.segment_bytes = s->segment_bytes,
	};
	char path[4096];

	if (spool_open(&so, &ag->spool) != M2Z_OK)
		return M2Z_ERR_IO;
	snprintf(path, sizeof(path), "%s/dead-letters.jsonl", s->directory);
	return deadletter_open(path, &ag->dead);
}

static int start_pipeline(struct agent *ag)
{
	struct mqtt_sub subs[CONF_MAX_ROUTES];
	size_t n = routes_count(ag->routes);
	struct forward_opts fo = {
		.spool = ag->spool, .zeebe = ag->zeebe, .oauth = ag->oauth, .dead = ag->dead,
		.window = ag->cfg->zeebe.max_in_flight,
		.retry_initial_ms = ag->cfg->forward.retry_initial_ms,
		.retry_max_ms = ag->cfg->forward.retry_max_ms,
		.on_dead = republish_dead, .on_dead_arg = ag,
	};

	if (forward_start(&fo, &ag->fw) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		subs[i].filter = routes_filter(ag->routes, i);
		subs[i].qos = routes_qos(ag->routes, i);
	}
	if (mqtt_in_new(&ag->cfg->mqtt, subs, n, ingest, ag, &ag->mqtt) != M2Z_OK)
		return M2Z_ERR_CONFIG;
	return mqtt_in_start(ag->mqtt);
}

static void stop_all(struct agent *ag)
{
	atomic_store(&g_stopping, true);
	/* Ingestion first: a message callback in progress finishes (spooled,
	 * then acknowledged); nothing new comes in. */
	mqtt_in_stop(ag->mqtt);
	forward_stop(ag->fw, ag->cfg->forward.shutdown_timeout_ms);
	ag->fw = NULL;
	if (ag->spool)
		log_stats(ag);
	mqtt_in_free(ag->mqtt);
	if (ag->zeebe)
		zeebe_free(ag->zeebe);
	if (ag->oauth)
		oauth_free(ag->oauth);
	if (ag->spool) {
		spool_sync(ag->spool);
		spool_free(ag->spool);
	}
	deadletter_close(ag->dead);
	render_buf_free(&ag->rb);
	buf_free(&ag->rec);
}

static long env_hook(const char *name)
{
	const char *v = getenv("M2Z_TEST_CRASH");
	size_t n = strlen(name);

	if (v && strncmp(v, name, n) == 0 && v[n] == ':')
		return strtol(v + n + 1, NULL, 10);
	return 0;
}

static int run(struct agent *ag)
{
	sigset_t set;
	int sig, rc;
	int64_t interval = ag->cfg->log.stats_interval_ms;

	/* Every thread created from here on inherits the mask; only this
	 * thread takes the signals, synchronously. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	ag->crash_before = env_hook("before_spool");
	ag->crash_after = env_hook("after_spool");
	rc = open_spool(ag);
	if (rc == M2Z_OK)
		rc = start_clients(ag);
	if (rc == M2Z_OK)
		rc = start_pipeline(ag);
	if (rc != M2Z_OK) {
		stop_all(ag);
		return 1;
	}
	log_info("mqtt2zeebe %s forwarding %zu route(s) to %s%s", M2Z_VERSION,
		 routes_count(ag->routes), ag->cfg->zeebe.address,
		 ag->cfg->zeebe.insecure ? " (plaintext)" : "");
	for (;;) {
		if (interval > 0) {
			struct timespec ts = { (time_t)(interval / 1000), (long)(interval % 1000) * 1000000L };
			sig = sigtimedwait(&set, NULL, &ts);
		} else {
			sig = sigwaitinfo(&set, NULL);
		}
		if (sig < 0) {
			if (errno == EAGAIN)
				log_stats(ag);
			continue;
		}
		if (sig == SIGUSR1 || sig == SIGHUP) {
			log_stats(ag);
			continue;
		}
		break;
	}
	log_info("%s received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	stop_all(ag);
	return 0;
}

/* ---- one-shot commands ------------------------------------------------------ */

static int cmd_dry_run(struct agent *ag, const char *topic, const char *payload, size_t len)
{
	struct publish_msg msg;
	char reason[512];
	int route = routes_match(ag->routes, topic);
	cJSON *o;
	char *text;
	int rc;

	if (route < 0) {
		fprintf(stderr, "no route matches topic '%s'\n", topic);
		return 1;
	}
	rc = routes_render(ag->routes, (size_t)route, topic, payload, len, now_ms(),
			   ag->cfg->zeebe.max_message_size, &ag->rb, &msg, reason, sizeof(reason));
	if (rc != M2Z_OK) {
		fprintf(stderr, "route %s: would be a dead letter: %s\n",
			routes_name(ag->routes, (size_t)route), reason);
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
	return 0;
}

static int cmd_check_connection(struct agent *ag)
{
	char summary[512];
	int code, rc = 0;

	if (start_clients(ag) != M2Z_OK)
		return 1;
	if (ag->oauth) {
		if (oauth_wait(ag->oauth, ag->cfg->oauth.request_timeout_ms + 1000)) {
			printf("token: ok (%s)\n", ag->cfg->oauth.url);
		} else {
			printf("token: FAILED from %s (see the log above)\n", ag->cfg->oauth.url);
			rc = 1;
		}
	}
	code = zeebe_topology(ag->zeebe, ag->cfg->zeebe.request_timeout_ms, summary, sizeof(summary));
	printf("gateway %s: %s %s\n", ag->cfg->zeebe.address, zeebe_code_name(code), summary);
	zeebe_free(ag->zeebe);
	if (ag->oauth)
		oauth_free(ag->oauth);
	return code == ZEEBE_OK ? rc : 1;
}

/* Re-ingest a dead-letter file through the current routes into the spool
 * (run it with the agent stopped: the spool is locked while it runs). Lines
 * that still fail are written to FILE.failed. */
static int cmd_replay(struct agent *ag, const char *file)
{
	FILE *in = fopen(file, "r");
	char *line = NULL, failed[4096];
	size_t cap = 0, ok = 0, bad = 0;
	struct deadletter *still = NULL;

	if (!in) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return 1;
	}
	snprintf(failed, sizeof(failed), "%s.failed", file);
	if (open_spool(ag) != M2Z_OK || deadletter_open(failed, &still) != M2Z_OK) {
		fclose(in);
		stop_all(ag);
		return 1;
	}
	deadletter_close(ag->dead);
	ag->dead = still;
	while (getline(&line, &cap, in) > 0) {
		cJSON *o = cJSON_Parse(line);
		const char *topic = cJSON_GetStringValue(cJSON_GetObjectItem(o, "topic"));
		const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(o, "payload"));
		const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItem(o, "payload_base64"));
		unsigned char *raw = NULL;
		size_t len = text ? strlen(text) : 0;
		uint64_t before = STAT_GET(spooled);

		if (b64)
			raw = base64_decode(b64, &len);
		if (topic && (text || raw))
			ingest(ag, topic, raw ? (const void *)raw : text, len, 1, false);
		if (STAT_GET(spooled) > before)
			ok++;
		else
			bad++;
		free(raw);
		cJSON_Delete(o);
	}
	free(line);
	fclose(in);
	printf("replayed %zu event(s) into the spool; %zu still failing (see %s)\n", ok, bad, failed);
	stop_all(ag);
	return bad ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: mqtt2zeebe -c FILE [--log-level LEVEL]   run in the foreground\n"
		"       mqtt2zeebe --check -c FILE                validate, print config and routes\n"
		"       mqtt2zeebe --dry-run -c FILE --topic T (--payload P | --payload-file F)\n"
		"                                                 print the PublishMessage it would send\n"
		"       mqtt2zeebe --check-connection -c FILE      fetch a token, call Topology\n"
		"       mqtt2zeebe --replay-dead-letters FILE -c FILE\n"
		"                                                 re-spool dead letters (agent stopped)\n"
		"       mqtt2zeebe --version | --help\n"
		"Environment (wins over the file): ZEEBE_ADDRESS ZEEBE_CLIENT_ID ZEEBE_CLIENT_SECRET\n"
		"  ZEEBE_AUTHORIZATION_SERVER_URL ZEEBE_TOKEN_AUDIENCE ZEEBE_TOKEN_SCOPE\n"
		"  ZEEBE_CA_CERTIFICATE_PATH ZEEBE_INSECURE_CONNECTION\n"
		"Signals: SIGTERM/SIGINT stop (in-flight calls finish), SIGUSR1 logs the counters.\n"
		"Exit status: 0 ok, 1 runtime failure, 2 bad configuration or usage.\n");
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;

	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	if (f != stdin)
		fclose(f);
	*len = b.len;
	return b.p ? b.p : strdup("");
}

enum mode { MODE_RUN, MODE_CHECK, MODE_DRY_RUN, MODE_CHECK_CONN, MODE_REPLAY };

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "dry-run", no_argument, NULL, 'd' },
		{ "topic", required_argument, NULL, 't' },
		{ "payload", required_argument, NULL, 'p' },
		{ "payload-file", required_argument, NULL, 'f' },
		{ "check-connection", no_argument, NULL, 'n' },
		{ "replay-dead-letters", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent ag = { 0 };
	const char *cfg_path = NULL, *topic = NULL, *payload = NULL, *payload_file = NULL;
	const char *replay = NULL, *level = NULL;
	enum mode mode = MODE_RUN;
	char err[1024];
	char *owned = NULL;
	size_t len = 0;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': cfg_path = optarg; break;
		case 'k': mode = MODE_CHECK; break;
		case 'd': mode = MODE_DRY_RUN; break;
		case 't': topic = optarg; break;
		case 'p': payload = optarg; break;
		case 'f': payload_file = optarg; break;
		case 'n': mode = MODE_CHECK_CONN; break;
		case 'r': mode = MODE_REPLAY; replay = optarg; break;
		case 'l': level = optarg; break;
		case 'V': printf("mqtt2zeebe %s\n", M2Z_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_CONFIG;
		}
	}
	if (!cfg_path || optind != argc || (mode == MODE_DRY_RUN && (!topic || (!payload && !payload_file)))) {
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (level && log_level_parse(level) < 0) {
		fprintf(stderr, "--log-level: expected error, warn, info or debug, got '%s'\n", level);
		return EXIT_CONFIG;
	}
	if (conf_load(cfg_path, &ag.cfg, err, sizeof(err)) != M2Z_OK) {
		fprintf(stderr, "%s\n", err);
		return EXIT_CONFIG;
	}
	log_set_level(level ? log_level_parse(level) : ag.cfg->log.level);
	if (routes_new(ag.cfg, &ag.routes, err, sizeof(err)) != M2Z_OK) {
		fprintf(stderr, "%s\n", err);
		conf_free(ag.cfg);
		return EXIT_CONFIG;
	}
	switch (mode) {
	case MODE_CHECK:
		conf_print(ag.cfg, stdout);
		routes_print(ag.routes, stdout);
		printf("%s: OK\n", cfg_path);
		rc = 0;
		break;
	case MODE_DRY_RUN:
		if (payload_file && !(owned = read_file(payload_file, &len))) {
			fprintf(stderr, "%s: %s\n", payload_file, strerror(errno));
			rc = EXIT_CONFIG;
			break;
		}
		rc = owned ? cmd_dry_run(&ag, topic, owned, len)
			   : cmd_dry_run(&ag, topic, payload, strlen(payload));
		render_buf_free(&ag.rb);
		break;
	case MODE_CHECK_CONN:
		rc = cmd_check_connection(&ag);
		break;
	case MODE_REPLAY:
		rc = cmd_replay(&ag, replay);
		break;
	default:
		rc = run(&ag);
		break;
	}
	free(owned);
	routes_free(ag.routes);
	conf_free(ag.cfg);
	return rc;
}
