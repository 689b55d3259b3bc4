/* oauth_probe.c - test-only driver for oauth.c against a real endpoint.
 *
 *   oauth_probe --url U --client-id I [--audience A] [--scope S]
 *               [--ca-file F] [--timeout-ms N] [--refresh-ahead-ms N]
 *               [--wait MS] [--invalidate] [--hold SECONDS] [--log-level L]
 *   The secret comes from $M2Z_PROBE_SECRET (kept off argv), or --client-secret.
 *
 * Prints "token ok gen=N expires_in=S" (never the token) when a token is
 * cached, "token none" when --wait ran out, each new generation while
 * holding, and "stats fetches=N failures=M" at the end.
 * --invalidate: after the first token, reports generation 1 rejected twice
 * (one fetch expected), waits for generation 2, then reports generation 1
 * again (must be ignored).
 * Exit: 0 ok, 1 no token, 2 usage, 3 setup failed. */
#include "oauth.h"
#include "err.h"
#include "log.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct probe {
	struct oauth_opts o;
	int64_t wait_ms;
	int hold_s;
	int invalidate;
};

static void usage(void)
{
	fprintf(stderr, "usage: oauth_probe --url U --client-id I [--client-secret S | "
		"$M2Z_PROBE_SECRET] [--audience A] [--scope S] [--ca-file F] "
		"[--timeout-ms N] [--refresh-ahead-ms N] [--min-refresh-ms N] [--wait MS] [--invalidate] "
		"[--hold SECONDS] [--log-level L]\n");
}

static int parse_args(int argc, char **argv, struct probe *p)
{
	static const struct option lo[] = {
		{ "url", 1, 0, 'u' }, { "client-id", 1, 0, 'i' }, { "client-secret", 1, 0, 's' },
		{ "audience", 1, 0, 'a' }, { "scope", 1, 0, 'S' }, { "ca-file", 1, 0, 'c' },
		{ "timeout-ms", 1, 0, 't' }, { "refresh-ahead-ms", 1, 0, 'r' },
		{ "min-refresh-ms", 1, 0, 'm' },
		{ "wait", 1, 0, 'w' }, { "invalidate", 0, 0, 'I' }, { "hold", 1, 0, 'h' },
		{ "log-level", 1, 0, 'l' }, { 0, 0, 0, 0 },
	};
	int c;

	p->o.client_secret = getenv("M2Z_PROBE_SECRET");
	p->o.timeout_ms = 5000;
	p->o.refresh_ahead_ms = 10000;
	p->o.user_agent = "mqtt2zeebe/" M2Z_VERSION;
	p->wait_ms = 5000;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'u': p->o.url = optarg; break;
		case 'i': p->o.client_id = optarg; break;
		case 's': p->o.client_secret = optarg; break;
		case 'a': p->o.audience = optarg; break;
		case 'S': p->o.scope = optarg; break;
		case 'c': p->o.ca_file = optarg; break;
		case 't': p->o.timeout_ms = atoll(optarg); break;
		case 'r': p->o.refresh_ahead_ms = atoll(optarg); break;
		case 'm': p->o.min_refresh_ms = atoll(optarg); break;
		case 'w': p->wait_ms = atoll(optarg); break;
		case 'I': p->invalidate = 1; break;
		case 'h': p->hold_s = atoi(optarg); break;
		case 'l':
			if (log_level_parse(optarg) < 0)
				return -1;
			log_set_level(log_level_parse(optarg));
			break;
		default: return -1;
		}
	}
	return p->o.url && p->o.client_id ? 0 : -1;
}

/* Print the cached generation; returns it, 0 when none. */
static uint64_t report(struct oauth *oa)
{
	char hdr[8192];
	uint64_t gen = 0;
	struct oauth_stats st;

	if (oauth_header(oa, hdr, sizeof(hdr), &gen) != 0)
		return 0;
	oauth_get_stats(oa, &st);
	if (st.expires_at_ms == INT64_MAX)
		printf("token ok gen=%llu expires_in=never\n", (unsigned long long)gen);
	else
		printf("token ok gen=%llu expires_in=%lld\n", (unsigned long long)gen,
		       (long long)((st.expires_at_ms - now_ms() + 500) / 1000));
	fflush(stdout);
	memset(hdr, 0, sizeof(hdr));
	return gen;
}

static int wait_gen(struct oauth *oa, uint64_t want, int64_t timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	char hdr[8192];
	uint64_t gen = 0;

	while (mono_ms() < deadline) {
		if (oauth_header(oa, hdr, sizeof(hdr), &gen) == 0 && gen >= want)
			return 0;
		nanosleep(&(struct timespec){ 0, 20 * 1000000L }, NULL);
	}
	return -1;
}

static int run(struct oauth *oa, const struct probe *p)
{
	uint64_t last;

	if (!oauth_wait(oa, p->wait_ms)) {
		printf("token none\n");
		return 1;
	}
	last = report(oa);
	if (p->invalidate) {
		oauth_invalidate(oa, last);
		oauth_invalidate(oa, last);   /* the same report twice: one fetch */
		if (wait_gen(oa, last + 1, p->wait_ms)) {
			printf("token none after invalidate\n");
			return 1;
		}
		last = report(oa);
		oauth_invalidate(oa, last - 1); /* stale generation: ignored */
	}
	for (int64_t end = mono_ms() + (int64_t)p->hold_s * 1000; mono_ms() < end;) {
		char hdr[8192];
		uint64_t gen = 0;

		if (oauth_header(oa, hdr, sizeof(hdr), &gen) == 0 && gen != last)
			last = report(oa);
		nanosleep(&(struct timespec){ 0, 50 * 1000000L }, NULL);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct probe p;
	struct oauth *oa = NULL;
	struct oauth_stats st;
	int rc;

	memset(&p, 0, sizeof(p));
	if (parse_args(argc, argv, &p)) {
		usage();
		return 2;
	}
	rc = oauth_new(&p.o, &oa);
	if (rc) {
		fprintf(stderr, "oauth_new: %s\n", m2z_strerror(rc));
		return 3;
	}
	rc = run(oa, &p);
	oauth_get_stats(oa, &st);
	printf("stats fetches=%llu failures=%llu\n", (unsigned long long)st.fetches,
	       (unsigned long long)st.failures);
	oauth_free(oa);
	return rc;
}
