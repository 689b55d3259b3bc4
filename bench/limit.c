/* limit.c - the benchmark's floor: the same PublishMessage calls the agent
 * makes, with the same window, TLS and bearer token, straight from a
 * generated list through src/zeebe.c and src/oauth.c - no MQTT, no routing,
 * no spool. What it costs per call is what gRPC core costs.
 *
 * Usage: m2z-limit --address HOST:PORT --ca FILE [--count N] [--window W]
 *          [--keys K] [--token-url URL --client-id ID --client-secret S
 *          --audience A] [--rate R] [--idle S]
 * --rate R paces the calls at R per second (0: as fast as the window lets).
 * --idle S then sleeps S seconds, the channel and token kept: gRPC core's
 * own idle wake-ups, for the bench's idle comparison.
 * Prints one JSON object: sent, ok, errors, seconds, calls_per_s, cpu_s and
 * ctx_switches (both over the call loop only, not the start-up),
 * max_rss_kb. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "gateway.pb-c.h"
#include "oauth.h"
#include "zeebe.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long in_flight, ok, errors;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void done(void *arg, const struct zeebe_result *res)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	in_flight--;
	if (res->code == ZEEBE_OK || res->code == ZEEBE_ALREADY_EXISTS)
		ok++;
	else
		errors++;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}

static double cpu_of(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return dflt;
}

int main(int argc, char **argv)
{
	long count = atol(arg(argc, argv, "--count", "10000"));
	long window = atol(arg(argc, argv, "--window", "64"));
	long keys = atol(arg(argc, argv, "--keys", "1000"));
	const char *url = arg(argc, argv, "--token-url", NULL);
	double rate = atof(arg(argc, argv, "--rate", "0"));
	long idle = atol(arg(argc, argv, "--idle", "0"));
	struct oauth *oa = NULL;
	struct zeebe *zb;
	char err[256], name[] = "device-event", key[32], id[48], vars[256], tenant[] = "";
	uint8_t buf[1024];
	struct rusage ru, ru0;
	double t0, t1;

	zeebe_process_init();     /* as the agent does */
	if (url) {
		struct oauth_opts oo = {
			.url = url, .client_id = arg(argc, argv, "--client-id", ""),
			.client_secret = arg(argc, argv, "--client-secret", ""),
			.audience = arg(argc, argv, "--audience", ""),
			.ca_file = arg(argc, argv, "--ca", NULL), .timeout_ms = 10000,
			.refresh_ahead_ms = 30000, .user_agent = "m2z-limit",
		};
		if (oauth_new(&oo, &oa) != M2Z_OK || !oauth_wait(oa, 10000)) {
			fprintf(stderr, "limit: no token\n");
			return 1;
		}
	}
	struct zeebe_opts zo = {
		.address = arg(argc, argv, "--address", "localhost:26500"),
		.ca_file = arg(argc, argv, "--ca", NULL), .deadline_ms = 10000,
		.keepalive_ms = 45000, .max_message_size = 4 << 20,
		.user_agent = "m2z-limit", .oauth = oa,
	};
	if (zeebe_new(&zo, &zb, err, sizeof(err)) != M2Z_OK) {
		fprintf(stderr, "limit: %s\n", err);
		return 1;
	}
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_s();
	for (long i = 0; i < count; i++) {
		GatewayProtocol__PublishMessageRequest req = GATEWAY_PROTOCOL__PUBLISH_MESSAGE_REQUEST__INIT;
		size_t len;

		if (rate > 0) {
			double at = t0 + (double)i / rate;
			struct timespec ts = { (time_t)at, (long)((at - (double)(time_t)at) * 1e9) };
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		snprintf(key, sizeof(key), "k%ld", i % keys);
		snprintf(id, sizeof(id), "limit-%ld", i);
		snprintf(vars, sizeof(vars), "{\"seq\":%ld,\"key\":\"%s\",\"t\":%.6f,\"pad\":\"%s\"}",
			 i, key, now_s(), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		req.name = name;
		req.correlationkey = key;
		req.messageid = id;
		req.timetolive = 3600000;
		req.variables = vars;
		req.tenantid = tenant;
		len = gateway_protocol__publish_message_request__pack(&req, buf);
		pthread_mutex_lock(&lock);
		while (in_flight >= window)
			pthread_cond_wait(&cond, &lock);
		in_flight++;
		pthread_mutex_unlock(&lock);
		if (zeebe_publish(zb, buf, len, done, NULL) != M2Z_OK) {
			pthread_mutex_lock(&lock);
			in_flight--;
			errors++;
			pthread_mutex_unlock(&lock);
		}
	}
	pthread_mutex_lock(&lock);
	while (in_flight > 0)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	t1 = now_s();
	getrusage(RUSAGE_SELF, &ru);
	if (idle > 0) {           /* the bench counts our wake-ups meanwhile */
		fprintf(stderr, "limit: idle for %lds\n", idle);
		sleep((unsigned)idle);
	}
	zeebe_free(zb);
	if (oa)
		oauth_free(oa);
	printf("{\"sent\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"calls_per_s\":%.0f,"
	       "\"cpu_s\":%.6f,\"ctx_switches\":%ld,\"max_rss_kb\":%ld}\n", count, ok, errors,
	       t1 - t0, (double)count / (t1 - t0), cpu_of(&ru) - cpu_of(&ru0),
	       ru.ru_nvcsw + ru.ru_nivcsw - ru0.ru_nvcsw - ru0.ru_nivcsw, ru.ru_maxrss);
	return errors ? 1 : 0;
}
