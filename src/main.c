/* main.c - argv, wiring, signals; start and stop in order.
 *
 * Data flow: mqtt_in -> ingest (route, event, spool_append; the MQTT ack
 * only after that) -> spool -> forward -> zeebe -> spool_ack / deadletter.
 *
 * Thread map (who runs what, who owns which pointer):
 *   main          argv, config, start-up, signals (sigtimedwait), SIGHUP
 *                 reload, the stats line, stop. Owns struct agent and every
 *                 handle in it; frees them in stop_all() after the threads
 *                 that use them ended.
 *   MQTT          mqtt_in.c io_main "m2z-mqtt" (mqtt_in_start): connect and
 *                 reconnect, read, ingest_on_message -> routes,
 *                 spool_append, deadletter_emit, forward_kick, then the
 *                 batch's PUBACKs; also worker.c's publish acknowledgements
 *                 and reply messages. Owns the ingest's render/record buffers.
 *   forwarder     forward.c run(): spool_next/spool_ack, zeebe_publish,
 *                 deadletter_emit -> republish_dead -> mqtt_in_publish
 *                 (reads ag->mqtt, which is set before this thread starts).
 *   completion    zeebe.c cq_thread: gRPC completion queue; hands each
 *                 PublishMessage result to the forwarder's done list
 *                 (forward.c on_done) and each job command's result to
 *                 worker.c.
 *   group commit  spool.c group_thread (sync = group or none): fsync / ack-log
 *                 flush every group_commit.
 *   token         oauth.c refresher: fetches/refreshes the token; zeebe.c
 *                 reads it per call (oauth_header).
 *   workers       worker.c worker_thread, one per [worker] section:
 *                 ActivateJobs long polling (its own completion queue), job
 *                 rendering, mqtt_in_publish, reply timers.
 *   metrics       libmicrohttpd's thread ([metrics] listen only): reads the
 *                 health snapshot and the atomic counters, writes nothing.
 * The main thread also ticks every TICK_MS: peer-state lines and reminders
 * (health.c), the status topic, systemd STATUS/WATCHDOG, the stats line.
 * Start-up order (each step may be used by the threads started after it):
 *   spool + dead letters (group commit) -> health + metrics -> oauth + zeebe
 *   (token, completion) -> mqtt_in_new (ag->mqtt, no thread yet) ->
 *   forward_start (forwarder) -> workers_start (workers) -> ingest_new ->
 *   mqtt_in_start (MQTT thread).
 * Stop order: STOPPING=1, metrics off -> workers_stop (jobs in hand go back)
 * -> "offline" on the status topic -> ingest_stop (ends a hold) ->
 * spool_close (wakes a blocked append; a message not kept exits without ack)
 * -> mqtt_in_stop -> forward_stop (in-flight calls finish) -> free in
 * reverse. */
#define LOG_MODULE "main"

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

#include "buf.h"
#include "commands.h"
#include "conf.h"
#include "deadletter.h"
#include "err.h"
#include "forward.h"
#include "health.h"
#include "ingest.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "mqtt_in.h"
#include "notify.h"
#include "oauth.h"
#include "preflight.h"
#include "reload.h"
#include "route.h"
#include "spool.h"
#include "stats.h"
#include "status.h"
#include "util.h"
#include "worker.h"
#include "zeebe.h"

#define EXIT_CONFIG 2
/* The forwarder loop runs at least once a second; this much silence means
 * it is stuck (no watchdog ping, /healthz 503). */
#define FORWARDER_STALL_MS 5000
/* READY=1 waits for the broker's SUBACK at most this long: a broker that
 * is down at boot must not hold the unit in "activating" (the agent keeps
 * reconnecting, and forwards what its spool holds meanwhile). */
#define READY_WAIT_MS 10000
/* The main thread's tick: TICK_MS while something changed in the last
 * TICK_BUSY_MS (start-up, a peer coming or going), TICK_IDLE_MS otherwise -
 * an idle agent wakes every 2 s here, not four times a second. */
#define TICK_MS 250
#define TICK_IDLE_MS 2000
#define TICK_BUSY_MS 5000

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
	struct health *health;
	struct metrics *metrics;
	atomic_bool subscribed;     /* MQTT thread sets, main reads */
	/* used only on the main thread (ops_tick) */
	struct buf status_doc;
	int64_t started, next_status, next_stats, next_ping, next_notify_status;
	bool ready_sent;
	int64_t stats_interval_ms;  /* [log] stats_interval, as reloaded */
	const char *cfg_path;       /* read again on SIGHUP */
	int cli_level;              /* --log-level, -1 = none */
	struct workers *workers;     /* [worker NAME] sections */
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
		 "retries=%llu dead_lettered=%llu dropped=%llu corrupt=%llu rejected=%llu backlog=%llu "
		 "backlog_bytes=%llu oldest_age_ms=%lld window=%d in_flight=%d token_failures=%llu "
		 "durability_failures=%llu holding=%d dead_letters_rotated=%llu own=%llu retained_skipped=%llu",
		 (unsigned long long)STAT_GET(received), (unsigned long long)STAT_GET(unrouted),
		 (unsigned long long)STAT_GET(spooled), (unsigned long long)STAT_GET(published),
		 (unsigned long long)STAT_GET(duplicates), (unsigned long long)STAT_GET(retries),
		 (unsigned long long)STAT_GET(dead_lettered),
		 (unsigned long long)ss.dropped,
		 (unsigned long long)ss.corrupt,
		 (unsigned long long)STAT_GET(rejected), (unsigned long long)ss.records,
		 (unsigned long long)ss.bytes, (long long)age, window, in_flight,
		 (unsigned long long)os.failures, (unsigned long long)STAT_GET(durability_failures),
		 ingest_holding() ? 1 : 0, (unsigned long long)STAT_GET(dead_letters_rotated),
		 (unsigned long long)STAT_GET(own), (unsigned long long)STAT_GET(retained_skipped));
	if (workers_count(ag->workers)) {
		struct worker_stats ws;
		workers_get_stats(ag->workers, &ws);
		log_write(LOG_LVL_INFO, "stats", "jobs_activated=%llu jobs_completed=%llu jobs_failed=%llu "
			  "jobs_timed_out=%llu jobs_errors_thrown=%llu jobs_bad=%llu jobs_lost=%llu",
			  (unsigned long long)ws.activated, (unsigned long long)ws.completed,
			  (unsigned long long)ws.failed, (unsigned long long)ws.timed_out,
			  (unsigned long long)ws.errors_thrown, (unsigned long long)ws.bad_jobs,
			  (unsigned long long)ws.lost);
	}
}

/* ---- operability: peer states, status topic, systemd ------------------------ */

static void on_mqtt_state(void *arg, enum mqtt_in_event ev, const char *reason)
{
	struct agent *ag = arg;

	if (ev == MQTT_IN_SUBSCRIBED)
		atomic_store(&ag->subscribed, true);
	else
		health_set(ag->health, HEALTH_MQTT, ev == MQTT_IN_CONNECTED ? HEALTH_UP : HEALTH_DOWN,
			   reason);
}

static void on_gateway(void *arg, bool ok, int code, const char *details)
{
	struct agent *ag = arg;

	health_gateway_event(ag->health, ag->cfg->zeebe.address, ok, code, details);
}

static void publish_status(struct agent *ag, const struct health_snapshot *s)
{
	int mid;

	if (status_format(s, M2Z_VERSION, &ag->status_doc) == M2Z_OK)
		mqtt_in_publish_retained(ag->mqtt, ag->cfg->status.topic, ag->status_doc.p, &mid);
}

/* systemd: READY once subscribed (or READY_WAIT_MS passed), STATUS= now and
 * then, WATCHDOG=1 only while the forwarder loop is alive. */
static void notify_tick(struct agent *ag, const struct health_snapshot *s, int64_t now, bool changed)
{
	int64_t wd = notify_watchdog_ms();
	char text[300], line[256];

	if (!notify_enabled())
		return;
	if (!ag->ready_sent && (atomic_load(&ag->subscribed) || now - ag->started >= READY_WAIT_MS)) {
		ag->ready_sent = true;
		changed = true;
		notify_send("READY=1");
	}
	if (changed || now >= ag->next_notify_status) {
		ag->next_notify_status = now + 5000;
		health_status_line(s, line, sizeof(line));
		snprintf(text, sizeof(text), "STATUS=%s", line);
		notify_send(text);
	}
	if (wd > 0 && now >= ag->next_ping && s->forwarder_idle_ms >= 0 &&
	    s->forwarder_idle_ms < FORWARDER_STALL_MS) {
		ag->next_ping = now + wd / 2;
		notify_send("WATCHDOG=1");
	}
}

/* Returns whether a peer state (or anything health reports) changed. */
static bool ops_tick(struct agent *ag)
{
	struct health_snapshot s;
	int64_t now = mono_ms();
	bool changed;

	health_tick(ag->health);
	changed = health_take_changed(ag->health);
	health_snapshot(ag->health, &s);
	if (ag->cfg->status.enabled && mqtt_in_connected(ag->mqtt) &&
	    (changed || (ag->cfg->status.interval_ms > 0 && now >= ag->next_status))) {
		ag->next_status = now + ag->cfg->status.interval_ms;
		publish_status(ag, &s);
	}
	notify_tick(ag, &s, now, changed);
	if (ag->stats_interval_ms > 0 && now >= ag->next_stats) {
		if (ag->next_stats)
			log_stats(ag);
		ag->next_stats = now + ag->stats_interval_ms;
	}
	return changed;
}

static void set_sources(struct agent *ag)
{
	struct health_sources hs = {
		.spool = ag->spool, .oauth = ag->oauth, .fw = ag->fw, .workers = ag->workers,
		.spool_max_bytes = ag->cfg->spool.max_bytes, .reminder_ms = ag->cfg->log.reminder_ms,
	};

	if (ag->health)
		health_set_sources(ag->health, &hs);
}

static int start_ops(struct agent *ag)
{
	char err[512];

	if (health_new(&ag->health) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	if (!ag->cfg->metrics.listen[0])
		return M2Z_OK;
	if (metrics_start(ag->cfg->metrics.listen, ag->health, M2Z_VERSION, FORWARDER_STALL_MS,
			  &ag->metrics, err, sizeof(err)) != M2Z_OK) {
		log_err("%s", err);
		return M2Z_ERR_NET;
	}
	return M2Z_OK;
}

/* A clean stop says so on the status topic (the Last Will is for the rest). */
static void publish_offline(struct agent *ag)
{
	int mid;

	if (!ag->mqtt || !ag->cfg->status.enabled || !mqtt_in_connected(ag->mqtt))
		return;
	if (mqtt_in_publish_retained(ag->mqtt, ag->cfg->status.topic, STATUS_OFFLINE, &mid) == M2Z_OK &&
	    !mqtt_in_wait_published(ag->mqtt, mid, 2000))
		log_warn("the broker did not acknowledge the offline status within 2s");
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
		.read_ahead = c->forward.read_ahead > SIZE_MAX ? SIZE_MAX : (size_t)c->forward.read_ahead,
		.on_gateway = on_gateway, .on_gateway_arg = ag,
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
	mqtt_in_set_state_fn(ag->mqtt, on_mqtt_state, ag);
	if (c->status.enabled && mqtt_in_set_will(ag->mqtt, c->status.topic, STATUS_OFFLINE))
		return M2Z_ERR_CONFIG;
	if (forward_start(&fo, &ag->fw) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	set_sources(ag);
	if (workers_start(ag->workers, ag->mqtt, ag->zeebe, ag->oauth,
			  c->zeebe.request_timeout_ms) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	io.on_kept_arg = ag->fw;
	if (ingest_new(&io, &ag->ingest) != M2Z_OK)
		return M2Z_ERR_NOMEM;
	return mqtt_in_start(ag->mqtt);
}

static void stop_all(struct agent *ag)
{
	notify_send("STOPPING=1");
	metrics_stop(ag->metrics);
	ag->metrics = NULL;
	/* Jobs in hand go back to Zeebe while the gateway client still runs. */
	workers_stop(ag->workers, ag->cfg->forward.shutdown_timeout_ms);
	publish_offline(ag);
	/* A message in hand that is held or blocked on a full spool is not
	 * acknowledged: ingest exits the process instead of returning. Any other
	 * callback in progress finishes (spooled, then acknowledged). */
	ingest_stop(ag->ingest);
	if (ag->spool)
		spool_close(ag->spool);
	mqtt_in_stop(ag->mqtt);
	if (ag->health)
		health_set_sources(ag->health, &(struct health_sources){ 0 });
	forward_stop(ag->fw, ag->cfg->forward.shutdown_timeout_ms);
	ag->fw = NULL;
	if (ag->spool)
		log_stats(ag);
	mqtt_in_free(ag->mqtt);
	ingest_free(ag->ingest);
	if (ag->zeebe)
		zeebe_free(ag->zeebe);
	workers_free(ag->workers);
	ag->workers = NULL;
	if (ag->oauth)
		oauth_free(ag->oauth);
	if (ag->spool) {
		spool_sync(ag->spool);
		spool_free(ag->spool);
	}
	deadletter_close(ag->dead);
	buf_free(&ag->status_doc);
	health_free(ag->health);
	ag->health = NULL;
}

static int start(struct agent *ag)
{
	int rc;

	ag->started = mono_ms();
	ag->stats_interval_ms = ag->cfg->log.stats_interval_ms;
	notify_init();
	rc = open_storage(ag->cfg, republish_dead, ag, &ag->spool, &ag->dead);
	if (rc == M2Z_OK)
		rc = start_ops(ag);
	if (rc == M2Z_OK)
		rc = open_clients(ag->cfg, false, &ag->oauth, &ag->zeebe);
	if (rc == M2Z_OK)
		rc = start_pipeline(ag);
	return rc;
}

/* SIGHUP: read the file again (reload.c); the stats timer follows it. */
static void reload(struct agent *ag)
{
	struct reload_target t = {
		.path = ag->cfg_path, .running = ag->cfg, .ingest = ag->ingest, .mqtt = ag->mqtt,
		.fw = ag->fw, .cli_level = ag->cli_level,
	};
	struct reload_live live;

	if (reload_apply(&t, &live) == M2Z_OK)
		ag->stats_interval_ms = live.stats_interval_ms;
}

static int run(struct agent *ag)
{
	sigset_t set;
	int sig;
	struct timespec tick = { 0, TICK_MS * 1000000L };

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
	for (int64_t next_tick = 0, last_change = mono_ms();;) {
		int64_t now, wd = notify_watchdog_ms(), every;

		sig = sigtimedwait(&set, NULL, &tick);
		/* Ticks keep their pace however often signals arrive. */
		if ((now = mono_ms()) >= next_tick) {
			if (ops_tick(ag) || !atomic_load(&ag->subscribed))
				last_change = now;
			every = now - last_change < TICK_BUSY_MS ? TICK_MS : TICK_IDLE_MS;
			if (wd > 0 && wd / 4 < every)
				every = wd / 4 > TICK_MS ? wd / 4 : TICK_MS;
			next_tick = now + every;
		}
		/* Sleep until the next tick, not a full period from here. */
		every = next_tick - mono_ms();
		if (every < 1)
			every = 1;
		/* every <= a few seconds: fits time_t and long on 32-bit boards */
		tick.tv_sec = (time_t)(every / 1000);
		tick.tv_nsec = (long)(every % 1000) * 1000000L;
		if (sig < 0)
			continue;
		if (sig == SIGHUP) {
			reload(ag);
			continue;
		}
		if (sig == SIGUSR1) {
			log_stats(ag);
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
		"Environment (wins over the file): Camunda's client names, e.g. CAMUNDA_GRPC_ADDRESS\n"
		"  CAMUNDA_CLIENT_ID CAMUNDA_CLIENT_SECRET CAMUNDA_AUTHORIZATION_SERVER_URL\n"
		"  CAMUNDA_TOKEN_AUDIENCE, or the older ZEEBE_ADDRESS ZEEBE_CLIENT_ID ...;\n"
		"  [zeebe] credentials_file reads the console's credentials file as downloaded\n"
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

	mem_tune();            /* before any thread allocates */
	zeebe_process_init();
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
	log_detect_journal();
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
	if (workers_new(ag.cfg, &ag.workers, err, sizeof(err)) != M2Z_OK) {
		fprintf(stderr, "%s\n", err);
		routes_free(ag.routes);
		conf_free(ag.cfg);
		return EXIT_CONFIG;
	}
	switch (mode) {
	case MODE_CHECK:
		conf_print(ag.cfg, stdout);
		routes_print(ag.routes, stdout);
		workers_print(ag.workers, stdout);
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
	workers_free(ag.workers);
	routes_free(ag.routes);
	conf_free(ag.cfg);
	return rc;
}
