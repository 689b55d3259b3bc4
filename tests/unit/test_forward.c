/* test_forward.c - the forwarder's state machine through its seams
 * (forward_internal.h): a fake publish that records each call, a fake
 * clock, the loop turned by hand. The spool and the dead-letter file are
 * the real modules in a mkdtemp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "deadletter.h"
#include "err.h"
#include "event.h"
#include "forward_internal.h"
#include "log.h"
#include "route.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zeebe.h"

#define MAX_CALLS 256
#define INIT_MS 100
#define MAX_MS 5000

struct call {
	zeebe_done_fn done;
	void *arg;
	char id[32];                /* message id found in the request */
	bool answered;
};

static struct {
	int64_t now;
	struct call calls[MAX_CALLS];
	int n_calls;
	int invalidated;
	uint64_t invalidated_gen;
	int republished;
} g;

struct fx {
	char dir[64];
	char dead_path[128];
	struct spool *spool;
	struct deadletter *dead;
	struct forward *fw;
	bool threaded;              /* fw has its thread: forward_stop() frees it */
	int oauth_dummy;
};

/* ---- fakes ----------------------------------------------------------------- */

static int64_t fake_clock(void)
{
	return g.now;
}

/* The message id is the one "mNNN" string in the serialized request. */
static void find_id(const void *req, size_t len, char *out, size_t outlen)
{
	const char *p = req;

	out[0] = '\0';
	for (size_t i = 0; i + 4 <= len; i++) {
		if (p[i] == '#' && p[i + 1] == 'm') {
			size_t n = 0;
			while (i + 1 + n < len && n + 1 < outlen && p[i + 1 + n] != '#')
				n++;
			memcpy(out, p + i + 1, n);
			out[n] = '\0';
			return;
		}
	}
}

static int fake_publish(struct zeebe *zb, const void *req, size_t len, zeebe_done_fn done, void *arg)
{
	struct call *c = &g.calls[g.n_calls++];

	(void)zb;
	assert_true(g.n_calls < MAX_CALLS);
	c->done = done;
	c->arg = arg;
	c->answered = false;
	find_id(req, len, c->id, sizeof(c->id));
	return M2Z_OK;
}

static void fake_invalidate(struct oauth *oa, uint64_t gen)
{
	(void)oa;
	g.invalidated++;
	g.invalidated_gen = gen;
}

static void on_line(void *arg, const char *line)
{
	(void)arg;
	(void)line;
	g.republished++;
}

static const struct forward_hooks hooks = {
	.publish = fake_publish, .invalidate = fake_invalidate, .clock_ms = fake_clock,
};

/* ---- fixture --------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void open_forwarder_ra(struct fx *f, int window, bool with_oauth, size_t read_ahead)
{
	struct forward_opts fo = {
		.spool = f->spool, .zeebe = NULL, .oauth = with_oauth ? (struct oauth *)&f->oauth_dummy : NULL,
		.dead = f->dead, .window = window, .retry_initial_ms = INIT_MS, .retry_max_ms = MAX_MS,
		.read_ahead = read_ahead,
	};

	assert_int_equal(forward_new(&fo, &hooks, &f->fw), M2Z_OK);
}

static void open_forwarder(struct fx *f, int window, bool with_oauth)
{
	open_forwarder_ra(f, window, with_oauth, 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct spool_opts so = {
		.sync = SPOOL_SYNC_ALWAYS, .group_commit_ms = 10, .on_full = SPOOL_FULL_BLOCK,
		.segment_bytes = 1 << 20,
	};
	struct deadletter_opts dopt = { .max_files = 1, .on_line = on_line };

	memset(&g, 0, sizeof(g));
	g.now = 1000000;
	strcpy(f->dir, "/tmp/m2z-forward-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	so.dir = f->dir;
	assert_int_equal(spool_open(&so, &f->spool), M2Z_OK);
	snprintf(f->dead_path, sizeof(f->dead_path), "%s/dead.jsonl", f->dir);
	dopt.path = f->dead_path;
	assert_int_equal(deadletter_open(&dopt, &f->dead), M2Z_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->fw && f->threaded)
		forward_stop(f->fw, 1000);
	else if (f->fw)
		forward_free(f->fw);
	deadletter_close(f->dead);
	spool_free(f->spool);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* Spool one event with message id "#ID#" (found again by find_id) and
 * correlation key KEY. */
static void put(struct fx *f, const char *id, const char *key)
{
	char mid[40];
	struct publish_msg m = {
		.route = "r", .name = "msg", .correlation_key = key, .message_id = mid,
		.ttl_ms = 1000, .variables = "{}", .tenant_id = "",
	};
	struct buf b = BUF_INIT;

	snprintf(mid, sizeof(mid), "#%s#", id);
	assert_int_equal(event_encode(&m, "t/x", "{}", 2, 0, &b), M2Z_OK);
	assert_int_equal(spool_append(f->spool, b.p, b.len, NULL), M2Z_OK);
	buf_free(&b);
}

static void answer(int i, int code)
{
	struct zeebe_result res = { .code = code, .details = "test details", .token_gen = 7 };

	assert_true(i < g.n_calls);
	assert_false(g.calls[i].answered);
	g.calls[i].answered = true;
	g.calls[i].done(g.calls[i].arg, &res);
}

static uint64_t live(struct fx *f)
{
	struct spool_stats st;

	spool_get_stats(f->spool, &st);
	return st.records;
}

static int dead_lines(struct fx *f)
{
	FILE *in = fopen(f->dead_path, "r");
	int c, n = 0;

	assert_non_null(in);
	while ((c = fgetc(in)) != EOF)
		n += c == '\n';
	fclose(in);
	return n;
}

static struct forward_peek peek(struct fx *f)
{
	struct forward_peek p;

	forward_peek(f->fw, &p);
	return p;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_classify_and_backoff_cap(void **state)
{
	(void)state;
	assert_int_equal(forward_classify(ZEEBE_OK), FWD_DONE);
	assert_int_equal(forward_classify(ZEEBE_ALREADY_EXISTS), FWD_DONE);
	assert_int_equal(forward_classify(ZEEBE_UNAUTHENTICATED), FWD_REAUTH);
	assert_int_equal(forward_classify(ZEEBE_INVALID_ARGUMENT), FWD_DEAD);
	assert_int_equal(forward_classify(ZEEBE_RESOURCE_EXHAUSTED), FWD_RETRY);
	assert_int_equal(forward_classify(ZEEBE_UNAVAILABLE), FWD_RETRY);
	assert_int_equal(backoff_cap_ms(100, 5000, 1), 100);
	assert_int_equal(backoff_cap_ms(100, 5000, 2), 200);
	assert_int_equal(backoff_cap_ms(100, 5000, 6), 3200);
	assert_int_equal(backoff_cap_ms(100, 5000, 7), 5000);
	assert_int_equal(backoff_cap_ms(100, 5000, 1000), 5000);
}

static void test_ok_and_duplicate_are_acked(void **state)
{
	struct fx *f = *state;
	uint64_t pub = STAT_GET(published), dup = STAT_GET(duplicates);

	open_forwarder(f, 8, false);
	put(f, "m1", "k1");
	put(f, "m2", "k2");
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 2);
	assert_int_equal(peek(f).in_flight, 2);
	answer(0, ZEEBE_OK);
	answer(1, ZEEBE_ALREADY_EXISTS);
	forward_step(f->fw);
	assert_int_equal(peek(f).in_flight, 0);
	assert_int_equal(peek(f).pending, 0);
	assert_int_equal(live(f), 0);
	assert_int_equal(STAT_GET(published), pub + 1);
	assert_int_equal(STAT_GET(duplicates), dup + 1);
}

/* A per-record retry waits at most the backoff cap, which doubles per
 * attempt; the record stays in the spool until it is delivered. */
static void test_retry_backoff(void **state)
{
	struct fx *f = *state;
	uint64_t retries = STAT_GET(retries);

	open_forwarder(f, 8, false);
	put(f, "m1", "k1");
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 1);
	for (unsigned attempt = 1; attempt <= 8; attempt++) {
		int before = g.n_calls;

		g.now += 3;
		answer(g.n_calls - 1, ZEEBE_INTERNAL);
		forward_step(f->fw);
		if (g.n_calls == before) {
			assert_int_equal(peek(f).waiting, 1);
			g.now += backoff_cap_ms(INIT_MS, MAX_MS, attempt);
			forward_step(f->fw);
		}
		assert_int_equal(g.n_calls, before + 1);
		assert_string_equal(g.calls[g.n_calls - 1].id, "m1");
		assert_int_equal(live(f), 1);
	}
	answer(g.n_calls - 1, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(live(f), 0);
	assert_int_equal(STAT_GET(retries), retries + 8);
}

/* UNAVAILABLE pauses all sending; the rest of the failed window does not
 * inflate the backoff (one failure counted), and every record is resent in
 * its order once the pause (at most the first cap) is over. */
static void test_gateway_wide_pause(void **state)
{
	struct fx *f = *state;

	open_forwarder(f, 8, false);
	put(f, "m1", "k1");
	put(f, "m2", "k2");
	put(f, "m3", "k3");
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 3);
	g.now += 10;
	answer(0, ZEEBE_UNAVAILABLE);
	answer(1, ZEEBE_UNAVAILABLE);
	answer(2, ZEEBE_UNAVAILABLE);
	forward_step(f->fw);
	assert_true(peek(f).pause_until <= g.now + INIT_MS);
	g.now += INIT_MS;
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 6);
	assert_int_equal(live(f), 3);
	for (int i = 3; i < 6; i++)
		answer(i, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(live(f), 0);
}

/* RESOURCE_EXHAUSTED halves the window once per round trip; each success
 * grows it by one, up to the configured size. */
static void test_window_halving_and_growth(void **state)
{
	struct fx *f = *state;
	char id[16], key[16];

	open_forwarder(f, 8, false);
	for (int i = 0; i < 16; i++) {
		snprintf(id, sizeof(id), "m%d", i);
		snprintf(key, sizeof(key), "k%d", i);
		put(f, id, key);
	}
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 8);
	g.now += 5;
	answer(0, ZEEBE_RESOURCE_EXHAUSTED);
	answer(1, ZEEBE_RESOURCE_EXHAUSTED); /* same round trip: no second halving */
	forward_step(f->fw);
	assert_int_equal(peek(f).window, 4);
	assert_int_equal(peek(f).in_flight, 6);
	assert_int_equal(g.n_calls, 8);      /* 6 in flight > window 4: nothing new */
	answer(2, ZEEBE_OK);
	answer(3, ZEEBE_OK);
	answer(4, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(peek(f).window, 7);
	/* 3 in flight, window 7: 4 more go (retries of m0/m1 may be among them) */
	assert_int_equal(peek(f).in_flight, 7);
	assert_int_equal(g.n_calls, 12);
	for (int i = 5; i < 12; i++)
		answer(i, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(peek(f).window, 8);
	/* a later exhaustion (sent after the last shrink) halves again */
	g.now += 5;
	for (int i = 12; i < g.n_calls; i++)
		if (!g.calls[i].answered) {
			answer(i, ZEEBE_RESOURCE_EXHAUSTED);
			break;
		}
	forward_step(f->fw);
	assert_int_equal(peek(f).window, 4);
}

/* Records of one key go one at a time in spool order, also when the first
 * needs retries; another key is not held up. */
static void test_per_key_order_across_retries(void **state)
{
	struct fx *f = *state;

	open_forwarder(f, 8, false);
	put(f, "mA1", "kA");
	put(f, "mA2", "kA");
	put(f, "mB1", "kB");
	put(f, "mA3", "kA");
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 2);
	assert_string_equal(g.calls[0].id, "mA1");
	assert_string_equal(g.calls[1].id, "mB1");
	g.now += 1;
	answer(0, ZEEBE_ABORTED);
	answer(1, ZEEBE_OK);
	forward_step(f->fw);
	g.now += MAX_MS;
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 3);
	assert_string_equal(g.calls[2].id, "mA1");
	answer(2, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 4);
	assert_string_equal(g.calls[3].id, "mA2");
	answer(3, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 5);
	assert_string_equal(g.calls[4].id, "mA3");
	answer(4, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(live(f), 0);
}

/* 20 records of one key, then one each of three others. */
static void put_hot_key_backlog(struct fx *f)
{
	char id[16], key[8];

	for (int i = 0; i < 23; i++) {
		snprintf(id, sizeof(id), i < 20 ? "mK%d" : "mO%d", i);
		snprintf(key, sizeof(key), "o%d", i);
		put(f, id, i < 20 ? "hot" : key);
	}
}

/* read_ahead bounds the record bytes held past a full window: one key's
 * backlog is not read into memory behind its one call in flight. */
static void test_read_ahead_bounds_memory(void **state)
{
	struct fx *f = *state;

	open_forwarder_ra(f, 4, false, 1);
	put_hot_key_backlog(f);
	forward_step(f->fw);
	/* a window's worth read (4), whatever their keys: 1 call, 3 queued */
	assert_int_equal(peek(f).pending, 4);
	assert_int_equal(g.n_calls, 1);
	answer(0, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(peek(f).pending, 4);
	assert_int_equal(g.n_calls, 2);
	assert_string_equal(g.calls[1].id, "mK1");
	assert_int_equal(live(f), 22);
}

/* Reading stopped at read_ahead with every held record in flight: each
 * completion must wake the loop to read more (else the drain crawls at one
 * window per ACK_LAG_MS). Once the spool is read dry it need not. */
static void test_read_ahead_bound_wakes_on_completion(void **state)
{
	struct fx *f = *state;
	char id[16], key[8];

	open_forwarder_ra(f, 4, false, 1);
	for (int i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "m%d", i);
		snprintf(key, sizeof(key), "k%d", i);
		put(f, id, key);
	}
	forward_step(f->fw);
	assert_int_equal(peek(f).pending, 4);
	assert_int_equal(peek(f).in_flight, 4);
	assert_true(peek(f).wakes_on_done);
	for (int i = 0; i < 4; i++)
		answer(i, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 6);
	assert_int_equal(peek(f).pending, 2);
	assert_false(peek(f).wakes_on_done);
}

/* Without a byte bound (0) or with room (1 MiB), the forwarder reads ahead
 * by count: the other keys pass the hot key's queue. */
static void test_read_ahead_lets_other_keys_pass(void **state)
{
	struct fx *f = *state;

	open_forwarder_ra(f, 4, false, 0);
	put_hot_key_backlog(f);
	forward_step(f->fw);
	assert_int_equal(peek(f).pending, 23);
	assert_int_equal(g.n_calls, 4);
	assert_string_equal(g.calls[0].id, "mK0");
	assert_string_equal(g.calls[3].id, "mO22");
	forward_free(f->fw);

	put_hot_key_backlog(f);                  /* a fresh reader sees only these */
	open_forwarder_ra(f, 4, false, 1 << 20);
	forward_step(f->fw);
	assert_int_equal(peek(f).pending, 23);
	assert_int_equal(g.n_calls, 8);
}

static void test_dead_letter_written_then_acked(void **state)
{
	struct fx *f = *state;
	uint64_t dead = STAT_GET(dead_lettered);

	open_forwarder(f, 8, false);
	put(f, "m1", "k1");
	put(f, "m2", "k1");
	forward_step(f->fw);
	answer(0, ZEEBE_INVALID_ARGUMENT);
	forward_step(f->fw);
	assert_int_equal(dead_lines(f), 1);
	assert_int_equal(STAT_GET(dead_lettered), dead + 1);
	assert_int_equal(g.republished, 1);
	assert_int_equal(g.n_calls, 2);  /* the key's next record goes */
	assert_string_equal(g.calls[1].id, "m2");
	answer(1, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(live(f), 0);
}

/* The dead-letter write fails (file size limit: EFBIG): the record is not
 * acknowledged, its key waits, the gateway is not asked again; once the
 * file can grow, the line is written and only then the record acked. */
static void test_dead_letter_write_fails_record_kept(void **state)
{
	struct fx *f = *state;
	struct rlimit old, lim;

	open_forwarder(f, 8, false);
	put(f, "m1", "k1");
	put(f, "m2", "k1");
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 1);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	answer(0, ZEEBE_INVALID_ARGUMENT);
	forward_step(f->fw);
	for (int i = 0; i < 5; i++) {
		g.now += MAX_MS;
		forward_step(f->fw);
	}
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(dead_lines(f), 0);
	assert_int_equal(live(f), 2);
	assert_int_equal(g.n_calls, 1);      /* not re-sent, m2 still waits */
	assert_int_equal(peek(f).waiting, 1);
	g.now += MAX_MS;
	forward_step(f->fw);
	assert_int_equal(dead_lines(f), 1);
	assert_int_equal(live(f), 1);
	assert_int_equal(g.n_calls, 2);
	assert_string_equal(g.calls[1].id, "m2");
}

static void test_unauthenticated_with_oauth(void **state)
{
	struct fx *f = *state;

	open_forwarder(f, 8, true);
	put(f, "m1", "k1");
	forward_step(f->fw);
	answer(0, ZEEBE_UNAUTHENTICATED);
	forward_step(f->fw);
	assert_int_equal(g.invalidated, 1);
	assert_int_equal(g.invalidated_gen, 7);
	assert_int_equal(g.n_calls, 2);      /* resent at once, with the next token */
	assert_string_equal(g.calls[1].id, "m1");
	assert_int_equal(live(f), 1);
	answer(1, ZEEBE_OK);
	forward_step(f->fw);
	assert_int_equal(live(f), 0);
}

static void test_unauthenticated_without_oauth(void **state)
{
	struct fx *f = *state;

	open_forwarder(f, 8, false);
	put(f, "m1", "k1");
	forward_step(f->fw);
	g.now += 1;
	answer(0, ZEEBE_UNAUTHENTICATED);
	forward_step(f->fw);
	assert_int_equal(g.invalidated, 0);
	g.now += INIT_MS;
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 2);
	assert_int_equal(live(f), 1);
}

static void test_undecodable_record_dead_lettered(void **state)
{
	struct fx *f = *state;

	open_forwarder(f, 8, false);
	assert_int_equal(spool_append(f->spool, "garbage", 7, NULL), M2Z_OK);
	forward_step(f->fw);
	assert_int_equal(g.n_calls, 0);
	assert_int_equal(dead_lines(f), 1);
	assert_int_equal(live(f), 0);
}

/* ---- the loop in its thread (issue 12: an idle loop sleeps untimed) ------- */

/* Thread tests: the real clock plus an offset the test moves forward. */
static int64_t clock_skip;

static int64_t skip_clock(void)
{
	return mono_ms() + __atomic_load_n(&clock_skip, __ATOMIC_RELAXED);
}

static int publish_calls, publish_fail_first;

/* The gateway answers OK before publish() returns (a fast gateway on a
 * loaded machine: the completion thread runs before the caller goes on).
 * The first call fails to start when publish_fail_first is set. */
static int publish_answer_now(struct zeebe *zb, const void *req, size_t len, zeebe_done_fn done, void *arg)
{
	struct zeebe_result res = { .code = ZEEBE_OK, .details = "" };

	(void)zb; (void)req; (void)len;
	if (__atomic_fetch_add(&publish_calls, 1, __ATOMIC_RELAXED) == 0 && publish_fail_first)
		return M2Z_ERR_NET;
	done(arg, &res);
	return M2Z_OK;
}

static const struct forward_hooks thread_hooks = {
	.publish = publish_answer_now, .invalidate = fake_invalidate, .clock_ms = skip_clock,
};

static void start_threaded(struct fx *f, int64_t retry_ms, bool fail_first)
{
	struct forward_opts fo = {
		.spool = f->spool, .dead = f->dead, .window = 8, .retry_initial_ms = retry_ms,
		.retry_max_ms = retry_ms,
	};
	int64_t until = mono_ms() + 10000;

	clock_skip = 0;
	publish_calls = 0;
	publish_fail_first = fail_first;
	assert_int_equal(forward_start_hooks(&fo, &thread_hooks, &f->fw), M2Z_OK);
	f->threaded = true;
	/* nothing was ever pending: it sleeps after its first turn */
	while (!forward_sleeping(f->fw) && mono_ms() < until)
		usleep(1000);
	assert_true(forward_sleeping(f->fw));
}

/* True once the spool holds no live record, within MS. */
static bool drained_within(struct fx *f, int64_t ms)
{
	int64_t until = mono_ms() + ms;

	while (live(f) > 0 && mono_ms() < until)
		usleep(2000);
	return live(f) == 0;
}

static void stop_threaded(struct fx *f)
{
	forward_stop(f->fw, 1000);
	f->fw = NULL;
}

/* A record appended to a sleeping loop is sent by the kick itself; its
 * completion, even one that comes before the kick's turn ends, wakes the
 * loop, which acks it (ACK_LAG_MS, not "at the next event"). */
static void test_sleeping_loop_takes_an_early_completion(void **state)
{
	struct fx *f = *state;

	start_threaded(f, INIT_MS, false);
	for (int i = 0; i < 2; i++) {
		char id[8];
		int64_t until = mono_ms() + 10000;

		snprintf(id, sizeof(id), "m%d", i);
		put(f, id, "k1");
		forward_kick(f->fw);
		assert_true(drained_within(f, 3000));
		/* asleep again before the next one */
		__atomic_add_fetch(&clock_skip, 5000, __ATOMIC_RELAXED);
		forward_kick(f->fw);
		while (!forward_sleeping(f->fw) && mono_ms() < until)
			usleep(1000);
		assert_true(forward_sleeping(f->fw));
	}
	assert_int_equal(publish_calls, 2);
	stop_threaded(f);
}

/* The kick's turn on a sleeping loop leaves a timed retry (a call that
 * could not start: the gateway-wide pause): the loop must wake for it,
 * however long the pause; it must not wait for the next event. */
static void test_sleeping_loop_woken_for_a_pause_left_by_the_kick(void **state)
{
	struct fx *f = *state;

	start_threaded(f, 60000, true);
	put(f, "m1", "k1");
	forward_kick(f->fw);
	assert_int_equal(publish_calls, 1);
	__atomic_add_fetch(&clock_skip, 240000, __ATOMIC_RELAXED);  /* past any pause */
	assert_true(drained_within(f, 5000));
	assert_int_equal(publish_calls, 2);
	stop_threaded(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_and_backoff_cap),
		cmocka_unit_test_setup_teardown(test_ok_and_duplicate_are_acked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_backoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gateway_wide_pause, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_halving_and_growth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_per_key_order_across_retries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_bounds_memory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_lets_other_keys_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_bound_wakes_on_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_written_then_acked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_letter_write_fails_record_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unauthenticated_with_oauth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unauthenticated_without_oauth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_undecodable_record_dead_lettered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sleeping_loop_takes_an_early_completion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sleeping_loop_woken_for_a_pause_left_by_the_kick, setup,
						teardown),
	};

	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
