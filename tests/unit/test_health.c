/* test_health.c - the pure parts of health.c, status.c and metrics.c:
 * reasons in our words, durations and counts, the /healthz verdict, the
 * status document and the Prometheus text; and the journal prefix in log.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "status.h"
#include "zeebe.h"

static void test_duration(void **state)
{
	char b[32];

	(void)state;
	health_format_duration(0, b, sizeof(b));
	assert_string_equal(b, "0s");
	health_format_duration(45999, b, sizeof(b));
	assert_string_equal(b, "45s");
	health_format_duration(300000, b, sizeof(b));
	assert_string_equal(b, "5m");
	health_format_duration(330000, b, sizeof(b));
	assert_string_equal(b, "5m30s");
	health_format_duration(7500000, b, sizeof(b));
	assert_string_equal(b, "2h5m");
	health_format_duration(3 * 86400000LL + 4 * 3600000LL, b, sizeof(b));
	assert_string_equal(b, "3d4h");
	health_format_duration(-5, b, sizeof(b));
	assert_string_equal(b, "0s");
}

static void test_count(void **state)
{
	char b[32];

	(void)state;
	health_format_count(0, b, sizeof(b));
	assert_string_equal(b, "0");
	health_format_count(999, b, sizeof(b));
	assert_string_equal(b, "999");
	health_format_count(1234, b, sizeof(b));
	assert_string_equal(b, "1,234");
	health_format_count(1234567, b, sizeof(b));
	assert_string_equal(b, "1,234,567");
	health_format_count(1234567, b, 4); /* cut, still terminated */
	assert_string_equal(b, "1,2");
}

static void test_gateway_reason(void **state)
{
	char b[256];

	(void)state;
	health_gateway_reason("gw:26500", ZEEBE_UNAVAILABLE,
			      "failed to connect to all addresses; last error: UNKNOWN: "
			      "ipv4:127.0.0.1:26500: Failed to connect to remote host: Connection refused",
			      b, sizeof(b));
	assert_string_equal(b, "cannot reach gw:26500: connection refused");
	health_gateway_reason("nope.invalid:1", ZEEBE_UNAVAILABLE,
			      "DNS resolution failed for nope.invalid:1: C-ares status is not ARES_SUCCESS",
			      b, sizeof(b));
	assert_non_null(strstr(b, "cannot reach nope.invalid:1: its name does not resolve"));
	health_gateway_reason("gw:1", ZEEBE_UNAVAILABLE, "empty address list: ", b, sizeof(b));
	assert_string_equal(b, "cannot reach gw:1: the name resolves to no address");
	health_gateway_reason("gw:1", ZEEBE_UNAVAILABLE, "failed to connect to all addresses; last error: "
			      "UNKNOWN: ipv4:127.0.0.1:1: Ssl handshake failed: SSL_ERROR_SSL: "
			      "error:0A000086:SSL routines::certificate verify failed", b, sizeof(b));
	assert_string_equal(b, "TLS handshake with gw:1 failed: certificate verify failed "
			    "(check [zeebe] ca_certificate and the server name)");
	health_gateway_reason("gw:1", ZEEBE_DEADLINE_EXCEEDED, "Deadline Exceeded", b, sizeof(b));
	assert_string_equal(b, "gw:1 did not answer within the deadline");
	health_gateway_reason("gw:1", ZEEBE_UNAVAILABLE, "", b, sizeof(b));
	assert_string_equal(b, "gw:1 answered UNAVAILABLE: (no details)");
	/* a multi-line detail is cut at the first line */
	health_gateway_reason("gw:1", ZEEBE_UNAVAILABLE, "broker busy\nGot args: {x}", b, sizeof(b));
	assert_string_equal(b, "gw:1 answered UNAVAILABLE: broker busy");
}

/* zeebe.c has already put "cannot reach X: " in front: not twice, and a
 * long gRPC text is not cut mid-word below 300 bytes. */
static void test_gateway_reason_prefixed_and_long(void **state)
{
	char b[400];
	const char *tail = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:26500: "
			   "Failed to connect to remote host: Connection reset by peer while the connection "
			   "was still being set up on subchannel 0x7f00 (connectivity state TRANSIENT_FAILURE)";
	char in[600];

	(void)state;
	health_gateway_reason("gw:26500", ZEEBE_UNAVAILABLE,
			      "cannot reach gw:26500: failed to connect to all addresses; last error: UNKNOWN: "
			      "ipv4:127.0.0.1:26500: Failed to connect to remote host: Connection refused",
			      b, sizeof(b));
	assert_string_equal(b, "cannot reach gw:26500: connection refused");
	snprintf(in, sizeof(in), "cannot reach gw:26500: %s", tail);
	health_gateway_reason("gw:26500", ZEEBE_UNAVAILABLE, in, b, sizeof(b));
	assert_true(strlen(tail) > 160 && strlen(tail) < 300);
	assert_string_equal(b, in);
}

static void snap(struct health_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->now_ms = 1764450000000LL;
	s->start_ms = s->now_ms - 42000;
	s->peer[HEALTH_MQTT].state = HEALTH_UP;
	s->peer[HEALTH_GATEWAY].state = HEALTH_DOWN;
	s->peer[HEALTH_GATEWAY].since_ms = s->now_ms - 300000;
	strcpy(s->peer[HEALTH_GATEWAY].reason, "cannot reach gw:1: connection refused");
	s->peer[HEALTH_TOKEN].state = HEALTH_OFF;
	s->received = 10;
	s->published = 7;
	s->backlog_events = 1234;
	s->backlog_bytes = 5000;
	s->spool_max_bytes = 100000;
	s->oldest_age_ms = 61000;
	s->forwarder_idle_ms = 200;
	s->latency_bucket[0] = 3;      /* <= 5ms */
	s->latency_bucket[4] = 2;      /* <= 100ms */
	s->latency_bucket[STATS_N_BOUNDS] = 1; /* > 10s */
	s->latency_sum_ms = 20000;
}

static void test_verdict(void **state)
{
	struct health_snapshot s;
	char r[200];

	(void)state;
	snap(&s);
	assert_true(health_verdict(&s, 5000, r, sizeof(r)));
	assert_string_equal(r, "buffering within bounds");
	s.peer[HEALTH_GATEWAY].state = HEALTH_UP;
	assert_true(health_verdict(&s, 5000, r, sizeof(r)));
	assert_string_equal(r, "forwarding");
	s.backlog_bytes = 95000;
	assert_false(health_verdict(&s, 5000, r, sizeof(r)));
	assert_string_equal(r, "the spool is 95% full (1234 events waiting)");
	s.backlog_bytes = 0;
	s.forwarder_idle_ms = 65000;
	assert_false(health_verdict(&s, 5000, r, sizeof(r)));
	assert_string_equal(r, "the forwarder has been stuck for 1m5s");
	s.forwarder_idle_ms = -1;
	assert_false(health_verdict(&s, 5000, r, sizeof(r)));
}

static void test_status_line(void **state)
{
	struct health_snapshot s;
	char b[200];

	(void)state;
	snap(&s);
	health_status_line(&s, b, sizeof(b));
	assert_string_equal(b, "buffering; backlog 1,234; gateway unreachable; mqtt connected");
	s.peer[HEALTH_GATEWAY].state = HEALTH_UP;
	s.backlog_events = 0;
	health_status_line(&s, b, sizeof(b));
	assert_string_equal(b, "forwarding; backlog 0; gateway ok; mqtt connected");
}

static void test_status_document(void **state)
{
	struct health_snapshot s;
	struct buf b = BUF_INIT;
	cJSON *o, *gw;

	(void)state;
	snap(&s);
	assert_int_equal(status_format(&s, "9.9.9", &b), 0);
	o = cJSON_Parse(b.p);
	assert_non_null(o);
	assert_string_equal(cJSON_GetObjectItem(o, "state")->valuestring, "online");
	assert_string_equal(cJSON_GetObjectItem(o, "version")->valuestring, "9.9.9");
	assert_int_equal(cJSON_GetObjectItem(o, "uptime_s")->valueint, 42);
	gw = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "peers"), "gateway");
	assert_string_equal(cJSON_GetObjectItem(gw, "state")->valuestring, "down");
	assert_string_equal(cJSON_GetObjectItem(gw, "reason")->valuestring,
			    "cannot reach gw:1: connection refused");
	assert_non_null(strstr(cJSON_GetObjectItem(gw, "since")->valuestring, "Z"));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "peers"),
									     "mqtt"), "since")));
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "counters"), "published")->valueint, 7);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "backlog"), "events")->valueint, 1234);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "backlog"), "oldest_age_s")->valueint, 61);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "last_publish")));
	/* no [worker] sections: no job counters */
	assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "counters"), "jobs_completed"));
	cJSON_Delete(o);
	s.has_workers = true;
	s.jobs_activated = 5;
	s.jobs_completed = 3;
	s.jobs_timed_out = 1;
	assert_int_equal(status_format(&s, "9.9.9", &b), 0);
	o = cJSON_Parse(b.p);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "counters"), "jobs_activated")->valueint, 5);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "counters"), "jobs_completed")->valueint, 3);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "counters"), "jobs_timed_out")->valueint, 1);
	cJSON_Delete(o);
	assert_int_equal(metrics_format(&s, "9.9.9", &b), 0);
	assert_non_null(strstr(b.p, "\nmqtt2zeebe_jobs_completed_total 3\n"));
	assert_non_null(strstr(b.p, "# TYPE mqtt2zeebe_jobs_activated_total counter\n"));
	buf_free(&b);
}

static void test_metrics_text(void **state)
{
	struct health_snapshot s;
	struct buf b = BUF_INIT;

	(void)state;
	snap(&s);
	assert_int_equal(metrics_format(&s, "9.9.9", &b), 0);
	assert_non_null(strstr(b.p, "mqtt2zeebe_build_info{version=\"9.9.9\"} 1\n"));
	assert_non_null(strstr(b.p, "# TYPE mqtt2zeebe_messages_published_total counter\n"
				    "mqtt2zeebe_messages_published_total 7\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_backlog_events 1234\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_backlog_oldest_age_seconds 61\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_peer_up{peer=\"mqtt\"} 1\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_peer_up{peer=\"gateway\"} 0\n"));
	assert_null(strstr(b.p, "peer=\"token\"")); /* OAuth off: no series */
	/* cumulative buckets, +Inf = count */
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_bucket{le=\"0.005\"} 3\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_bucket{le=\"0.05\"} 3\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_bucket{le=\"0.1\"} 5\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_bucket{le=\"10\"} 5\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_bucket{le=\"+Inf\"} 6\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_sum 20\n"));
	assert_non_null(strstr(b.p, "mqtt2zeebe_publish_duration_seconds_count 6\n"));
	buf_free(&b);
}

static void test_latency_histogram(void **state)
{
	(void)state;
	memset(g_stats.latency_bucket, 0, sizeof(g_stats.latency_bucket));
	stats_observe_latency(5);       /* on the bound: that bucket */
	stats_observe_latency(6);
	stats_observe_latency(-3);      /* clock step: counted as 0 */
	stats_observe_latency(999999);
	assert_int_equal(STAT_GET(latency_bucket[0]), 2);
	assert_int_equal(STAT_GET(latency_bucket[1]), 1);
	assert_int_equal(STAT_GET(latency_bucket[STATS_N_BOUNDS]), 1);
}

/* The journal is detected only when JOURNAL_STREAM names stderr itself. */
static void test_journal_prefix(void **state)
{
	char path[] = "/tmp/m2z-test-log-XXXXXX", js[64], text[512] = "";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct stat st;
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	dup2(fd, STDERR_FILENO);
	fstat(fd, &st);
	setenv("JOURNAL_STREAM", "1:2", 1);
	assert_false(log_detect_journal());
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	assert_true(log_detect_journal());
	log_write(LOG_LVL_WARN, "t", "careful %d", 1);
	log_write(LOG_LVL_ERROR, "t", "broken");
	unsetenv("JOURNAL_STREAM");
	assert_false(log_detect_journal());
	dup2(saved, STDERR_FILENO);
	close(saved);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
	fclose(f);
	close(fd);
	unlink(path);
	assert_string_equal(text, "<4>WARN  [t] careful 1\n<3>ERROR [t] broken\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_gateway_reason),
		cmocka_unit_test(test_gateway_reason_prefixed_and_long),
		cmocka_unit_test(test_verdict),
		cmocka_unit_test(test_status_line),
		cmocka_unit_test(test_status_document),
		cmocka_unit_test(test_metrics_text),
		cmocka_unit_test(test_latency_histogram),
		cmocka_unit_test(test_journal_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
