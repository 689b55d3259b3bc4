/* main.c - argv, wiring, signals; start and stop in order.
 *
 * Data flow: mqtt_in -> ingest (route, event, spool_append; the MQTT ack
 * only after that) -> spool -> forward -> zeebe -> spool_ack / deadletter.
 *
 * Thread map (who runs what, who owns which pointer):
 *   main          argv, config, start-up, signals (sigtimedwait), the stats
 *                 line, stop. Owns struct agent and every handle in it; frees
 *                 them in stop_all() after the threads that use them ended.
 *   MQTT loop     libmosquitto's thread (mqtt_in_start): ingest_on_message ->
 *                 routes, spool_append, deadletter_emit, forward_kick. Owns
 *                 the ingest's render/record buffers.
 *   forwarder     forward.c run(): spool_next/spool_ack, zeebe_publish,
 *                 deadletter_emit -> republish_dead -> mqtt_in_publish
 *                 (reads ag->mqtt, which is set before this thread starts).
 *   completion    zeebe.c cq_thread: gRPC completion queue; hands each
 *                 result to the forwarder's done list (forward.c on_done).
 *   group commit  spool.c group_thread (sync = group or none): fsync / ack-log
 *                 flush every group_commit.
 *   token         oauth.c refresher: fetches/refreshes the token; zeebe.c
 *                 reads it per call.
 * Start-up order (each step may be used by the threads started after it):
 *   spool + dead letters -> oauth + zeebe (completion, token threads) ->
 *   mqtt_in_new (ag->mqtt, no thread yet) -> forward_start (forwarder) ->
 *   ingest_new -> mqtt_in_start (MQTT loop).
 * Stop order: ingest_stop (ends a hold) -> spool_close (wakes a blocked
 * append; a message not kept exits without ack) -> mqtt_in_stop -> forward_stop
 * (in-flight calls finish) -> free in reverse. */
#define LOG_MODULE "main"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "commands.h"
#include "conf.h"
#include "deadletter.h"
#include "err.h"
#include "forward.h"
#include "ingest.h"
#include "log.h"
#include "mqtt_in.h"
#include "oauth.h"
#include "preflight.h"
#include "reload.h"
#include "route.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zeebe.h"

#define EXIT_CONFIG 2

struct agent {
	struct config *cfg;
	struct routes *routes;
	struct spool *spool;
	struct deadletter *dead;
	struct oauth *oauth;
	struct zeebe *zeebe;
	struct mqtt_in *mqtt;       /* set before the forwarder starts (it republishes) */
	struct forward *fw;
	struct ingest *ingest;
	const char *cfg_path;       /* read again on SIGHUP */
	int cli_level;              /* --log-level, -1 = none */
};

/* deadletter on_line hook: forwarder or MQTT thread. */
static void republish_dead(void *arg, const char *line)
{
	struct agent *ag = arg;
	const char *topic = ag->cfg->forward.dead_letter_topic;

	if (topic[0] && ag->mqtt)
		mqtt_in_publish(ag->mqtt, topic, line, strlen(line), 1);
}

static void kick_forwarder(void *arg)
{
	forward_kick(arg);
}

/* MQTT loop thread; ag->ingest is set before mqtt_in_start(). */
static void on_message(void *arg, const char *topic, const void *payload, size_t len, int qos,
		       bool retain)
{
	struct agent *ag = arg;

	ingest_on_message(ag->ingest, topic, payload, len, qos, retain);
}

/* ---- stats line ---------------------------------------------------------- */

static void log_stats(struct agent *ag)
{
	struct spool_stats ss;
	struct oauth_stats os = { 0, 0, 0 };
	int window = 0, in_flight = 0;
	int64_t age = 0;

	spool_get_stats(ag->spool, &ss);
	if (ag->oauth)
		oauth_get_stats(ag->oauth, &os);
	if (ag->fw)
		forward_get_state(ag->fw, &window, &in_flight);
	if (ss.oldest_ms)
		age = now_ms() - ss.oldest_ms;
	log_write(LOG_LVL_INFO, "stats", "received=%llu unrouted=%llu spooled=%llu published=%llu duplicates=%llu "
		 "retries=%llu dead_lettered=%llu dropped=%llu rejected=%llu backlog=%llu "
		 "backlog_bytes=%llu oldest_age_ms=%lld window=%d in_flight=%d token_failures=%llu "
		 "durability_failures=%llu holding=%d dead_letters_rotated=%llu",
		 (unsigned long long)STAT_GET(received), (unsigned long long)STAT_GET(unrouted),
		 (unsigned long long)STAT_GET(spooled), (unsigned long long)STAT_GET(published),
		 (unsigned long long)STAT_GET(duplicates), (unsigned long long)STAT_GET(retries),
		 (unsigned long long)STAT_GET(dead_lettered),
		 (unsigned long long)(STAT_GET(dropped) + ss.dropped),
		 (unsigned long long)STAT_GET(rejected), (unsigned long long)ss.records,
		 (unsigned long long)ss.bytes, (long long)age, window, in_flight,
		 (unsigned long long)os.failures, (unsigned long long)STAT_GET(durability_failures),
		 ingest_holding() ? 1 : 0, (unsigned long long)STAT_GET(dead_letters_rotated));
}

/* ---- start and stop --------------------------------------------------------- */

static int start_pipeline(struct agent *ag)
{
	const struct config *c = ag->cfg;
	struct mqtt_sub subs[CONF_MAX_ROUTES];
	size_t n = routes_count(ag->routes);
	struct forward_opts fo = {
		.spool = ag->spool, .zeebe = ag->zeebe, .oauth = ag->oauth, .dead = ag->dead,
		.window = c->zeebe.max_in_flight, .retry_initial_ms = c->forward.retry_initial_ms,
		.retry_max_ms = c->forward.retry_max_ms,
	};
	struct ingest_opts io = {
		.cfg = c, .routes = ag->routes, .spool = ag->spool, .dead = ag->dead,
		.on_kept = kick_forwarder,
	};

	for (size_t i = 0; i < n; i++) {
		subs[i].filter = routes_filter(ag->routes, i);
		subs[i].qos = routes_qos(ag->routes, i);
	}
	/* mqtt_in_new first: the forwarder may republish a dead letter at once. */
	if (mqtt_in_new(&c->mqtt, subs, n, on_message, ag, &ag->mqtt) != M2Z_OK)
		return M2Z_ERR_CONFIG;
	if (forward_start(&fo, &ag->fw) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	io.on_kept_arg = ag->fw;
	if (ingest_new(&io, &ag->ingest) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	return mqtt_in_start(ag->mqtt);
}

static void stop_all(struct agent *ag)
{
	/* A message in hand that is held or blocked on a full spool is not
	 * acknowledged: ingest exits the process instead of returning. Any other
	 * callback in progress finishes (spooled, then acknowledged). */
	ingest_stop(ag->ingest);
	if (ag->spool)
		spool_close(ag->spool);
	mqtt_in_stop(ag->mqtt);
	forward_stop(ag->fw, ag->cfg->forward.shutdown_timeout_ms);
	ag->fw = NULL;
	if (ag->spool)
		log_stats(ag);
	mqtt_in_free(ag->mqtt);
	ingest_free(ag->ingest);
	if (ag->zeebe)
		zeebe_free(ag->zeebe);
	if (ag->oauth)
		oauth_free(ag->oauth);
	if (ag->spool) {
		spool_sync(ag->spool);
		spool_free(ag->spool);
	}
	deadletter_close(ag->dead);
}

static int start(struct agent *ag)
{
	int rc = open_storage(ag->cfg, republish_dead, ag, &ag->spool, &ag->dead);

	if (rc == M2Z_OK)
		rc = open_clients(ag->cfg, &ag->oauth, &ag->zeebe);
	if (rc == M2Z_OK)
		rc = start_pipeline(ag);
	return rc;
}

/* SIGHUP: read the file again (reload.c); the stats timer follows it. */
static void reload(struct agent *ag, int64_t *interval)
{
	struct reload_target t = {
		.path = ag->cfg_path, .running = ag->cfg, .ingest = ag->ingest, .mqtt = ag->mqtt,
		.fw = ag->fw, .cli_level = ag->cli_level,
	};
	struct reload_live live;

	if (reload_apply(&t, &live) == M2Z_OK)
		*interval = live.stats_interval_ms;
}

static int run(struct agent *ag)
{
	sigset_t set;
	int sig;
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

	if (start(ag) != M2Z_OK) {
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
		if (sig == SIGUSR1) {
			log_stats(ag);
			continue;
		}
		if (sig == SIGHUP) {
			reload(ag, &interval);
			continue;
		}
		break;
	}
	log_info("%s received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	stop_all(ag);
	return 0;
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
		"Signals: SIGTERM/SIGINT stop (in-flight calls finish), SIGUSR1 logs the counters,\n"
		"  SIGHUP reads the file again (routes, log level, intervals, retry settings).\n"
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
	struct agent ag = { .cli_level = -1 };
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
	ag.cfg_path = cfg_path;
	if (level)
		ag.cli_level = log_level_parse(level);
	log_set_level(level ? ag.cli_level : ag.cfg->log.level);
	if (routes_new(ag.cfg, &ag.routes, err, sizeof(err)) != M2Z_OK) {
		fprintf(stderr, "%s\n", err);
		conf_free(ag.cfg);
		return EXIT_CONFIG;
	}
	switch (mode) {
	case MODE_CHECK:
		conf_print(ag.cfg, stdout);
		routes_print(ag.routes, stdout);
		rc = preflight_files(ag.cfg, stderr);
		if (rc)
			fprintf(stderr, "%s: %d problem(s) with files the agent needs\n", cfg_path, rc);
		else
			printf("%s: OK\n", cfg_path);
		rc = rc ? EXIT_CONFIG : 0;
		break;
	case MODE_DRY_RUN:
		if (payload_file && !(owned = read_file(payload_file, &len))) {
			fprintf(stderr, "%s: %s\n", payload_file, strerror(errno));
			rc = EXIT_CONFIG;
			break;
		}
		rc = owned ? cmd_dry_run(ag.cfg, ag.routes, topic, owned, len)
			   : cmd_dry_run(ag.cfg, ag.routes, topic, payload, strlen(payload));
		break;
	case MODE_CHECK_CONN:
		rc = cmd_check_connection(ag.cfg);
		break;
	case MODE_REPLAY:
		rc = cmd_replay(ag.cfg, ag.routes, replay);
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
