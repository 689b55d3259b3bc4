/* forward.c - drains the spool into the gateway; see forward.h. */
#define LOG_MODULE "forward"
#include "forward_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deadletter.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "oauth.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "zeebe.h"

enum pend_state { P_QUEUED, P_READY, P_FLIGHT, P_WAIT };

struct keyq;

/* One record between spool_next() and spool_ack(). */
struct pend {
	struct forward *fw;
	struct spool_rec *rec;       /* owned */
	struct event ev;             /* borrows from rec */
	enum pend_state state;
	int attempts;                /* per-record retries (non-gateway-wide errors) */
	int64_t due_ms;              /* P_WAIT: monotonic time to try again */
	int64_t sent_ms;
	struct keyq *kq;
	struct pend *key_next;       /* next record of the same key, spool order */
	struct pend *next;           /* link in ready / wait / done / free list */
	/* filled by the completion callback */
	const char *dead_status;     /* P_WAIT: its dead letter is still to be written */
	int code;
	uint64_t token_gen;
	char details[384];           /* gateway's details, or the dead letter's reason */
};

/* Records of one key (message name + correlation key), oldest first. */
struct keyq {
	uint64_t hash;
	struct pend *head, *tail;
	struct keyq *chain;          /* bucket chain / free list */
};

struct list {
	struct pend *head, *tail;
};

struct forward {
	struct forward_opts o;
	struct forward_hooks h;
	pthread_t thread;
	pthread_mutex_t lock;        /* guards done, kicked, stopping, want_done, sleeping */
	pthread_cond_t cond;
	struct list done;
	bool kicked;
	bool stopping;
	/* Wake the loop at each completion: something waits on one (the
	 * window, a record queued behind its key, a shutdown). Otherwise
	 * completions are taken by the next turn, at most ACK_LAG_MS late,
	 * which saves one thread hand-off per event. */
	bool want_done;
	/* The loop sleeps without a timeout: nothing pending, the spool read
	 * to its end. Set before step_mu is released, cleared when the loop
	 * wakes: every completion that comes meanwhile wakes it (a kick's
	 * turn may start a call whose answer comes before that turn ends),
	 * and a kick whose turn leaves a record waiting wakes it. Read
	 * atomically by forward_heartbeat_ms(): a sleeping loop is not a
	 * stalled one. */
	bool sleeping;
	/* Held for a turn of the loop: the loop's state below is touched only
	 * under it, by the forwarder thread or inline by forward_kick(). */
	pthread_mutex_t step_mu;
	bool threaded;               /* forward_start(): inline turns allowed */
	_Atomic int64_t retry_initial_ms; /* o.retry_*, changed by a reload */
	_Atomic int64_t retry_max_ms;

	/* under step_mu (the forwarder thread, or a kick's inline turn) */
	struct list ready;
	struct list wait;
	/* pool and kpool: max_pending each, calloc'ed; entries are handed
	 * out in order the first time (pool_used, kpool_used), then recycled
	 * through the free lists, so pages never needed are never touched
	 * (RSS). */
	struct pend *pool, *free_pend;
	struct keyq *kpool, *free_kq, **buckets;
	size_t pool_used, kpool_used;
	size_t nbuckets, max_pending, npending;
	size_t pending_bytes;        /* record bytes of the npending records */
	int window, in_flight;
	int consecutive_fail;
	int64_t pause_until, pause_started;
	int64_t last_shrink;         /* when the window was last halved */
	bool waiting_token, gateway_failing, warned_no_oauth;
	int gw_state;                /* last reported to on_gateway: 0 none, 1 ok, 2 failing */
	bool spool_drained;          /* the last read_spool() ended on "nothing more" */
	int64_t last_busy_ms;        /* clock_ms of the last turn that left work pending */
	long stall_after;            /* test hook, see forward_heartbeat_ms() */
	int64_t heartbeat;           /* atomic: mono ms of the last loop pass */
};

/* ---- small lists ----------------------------------------------------------- */

static void list_push(struct list *l, struct pend *p)
{
	p->next = NULL;
	if (l->tail)
		l->tail->next = p;
	else
		l->head = p;
	l->tail = p;
}

static void list_push_front(struct list *l, struct pend *p)
{
	p->next = l->head;
	l->head = p;
	if (!l->tail)
		l->tail = p;
}

static struct pend *list_pop(struct list *l)
{
	struct pend *p = l->head;

	if (p) {
		l->head = p->next;
		if (!l->head)
			l->tail = NULL;
	}
	return p;
}

/* ---- classification ---------------------------------------------------- */

enum fwd_class forward_classify(int code)
{
	switch (code) {
	case ZEEBE_OK:
	case ZEEBE_ALREADY_EXISTS:
		return FWD_DONE;
	case ZEEBE_UNAUTHENTICATED:
		return FWD_REAUTH;
	case ZEEBE_INVALID_ARGUMENT:
	case ZEEBE_NOT_FOUND:
	case ZEEBE_FAILED_PRECONDITION:
	case ZEEBE_PERMISSION_DENIED:
	case ZEEBE_OUT_OF_RANGE:
	case ZEEBE_UNIMPLEMENTED:
	case ZEEBE_DATA_LOSS:
		return FWD_DEAD;
	default:
		return FWD_RETRY;
	}
}

/* Errors that say "the gateway (or the way to it) is in trouble", not "this
 * record is": they pause all sending, not just this key. */
static bool gateway_wide(int code)
{
	return code == ZEEBE_UNAVAILABLE || code == ZEEBE_DEADLINE_EXCEEDED ||
	       code == ZEEBE_CANCELLED;
}

/* Exponential backoff with full jitter: uniform in [0, cap(n)]. */
static int64_t backoff_ms(const struct forward *fw, int n)
{
	return jitter_ms(backoff_cap_ms(atomic_load(&fw->retry_initial_ms),
					atomic_load(&fw->retry_max_ms), (unsigned)n));
}

/* ---- per-key queues ---------------------------------------------------- */

static struct keyq **bucket(struct forward *fw, uint64_t hash)
{
	return &fw->buckets[(hash ^ (hash >> 29)) & (fw->nbuckets - 1)];
}

/* Append P to its key's queue; true when P is the key's head (may go now). */
static bool key_enqueue(struct forward *fw, struct pend *p)
{
	struct keyq **b = bucket(fw, p->ev.key_hash), *kq;

	for (kq = *b; kq; kq = kq->chain)
		if (kq->hash == p->ev.key_hash)
			break;
	if (!kq) {
		if ((kq = fw->free_kq))
			fw->free_kq = kq->chain;
		else
			kq = &fw->kpool[fw->kpool_used++];
		kq->hash = p->ev.key_hash;
		kq->head = kq->tail = NULL;
		kq->chain = *b;
		*b = kq;
	}
	p->kq = kq;
	p->key_next = NULL;
	if (kq->tail) {
		kq->tail->key_next = p;
		kq->tail = p;
		return false;
	}
	kq->head = kq->tail = p;
	return true;
}

/* P (its key's head) is finished: release it; the key's next record, if
 * any, becomes ready. */
static void key_finish(struct forward *fw, struct pend *p)
{
	struct keyq *kq = p->kq, **b;
	struct pend *next = p->key_next;

	if (!kq) {
		/* never queued by key (a record that could not be decoded) */
	} else if ((kq->head = next)) {
		next->state = P_READY;
		list_push(&fw->ready, next);
	} else {
		kq->tail = NULL;
		for (b = bucket(fw, kq->hash); *b != kq; b = &(*b)->chain)
			;
		*b = kq->chain;
		kq->chain = fw->free_kq;
		fw->free_kq = kq;
	}
	fw->pending_bytes -= p->rec->len;
	spool_rec_free(p->rec);
	p->rec = NULL;
	p->next = fw->free_pend;
	fw->free_pend = p;
	fw->npending--;
}

/* ---- outcomes ------------------------------------------------------------ */

static char *dupn(const char *s, size_t n)
{
	return strndup(s ? s : "", s ? n : 0);
}

static void finish(struct forward *fw, struct pend *p)
{
	spool_ack(fw->o.spool, p->rec->seq);
	key_finish(fw, p);
}

static void wait_retry(struct forward *fw, struct pend *p, int64_t now)
{
	p->attempts++;
	p->due_ms = now + backoff_ms(fw, p->attempts);
	p->state = P_WAIT;
	list_push(&fw->wait, p);
}

static int emit_dead(struct forward *fw, struct pend *p, const char *status, const char *reason)
{
	char *route = dupn(p->ev.route, p->ev.route_len);
	char *topic = dupn(p->ev.topic, p->ev.topic_len);
	char *id = dupn(p->ev.message_id, p->ev.message_id_len);
	char *key = dupn(p->ev.correlation_key, p->ev.correlation_key_len);
	struct dead_event de = {
		.route = route, .topic = topic, .payload = p->ev.payload,
		.payload_len = p->ev.payload_len, .message_id = id, .correlation_key = key,
		.status = status, .reason = reason, .time_ms = now_ms(),
	};
	int rc = route && topic && id && key ? deadletter_emit(fw->o.dead, &de) : M2Z_ERR_NOMEM;

	free(route);
	free(topic);
	free(id);
	free(key);
	return rc;
}

/* Dead-letter P and ack it - only once the line is on disk. When it is not
 * (disk full, read-only), P stays unacknowledged (and its key blocked) and
 * the write is tried again after a backoff: nothing is lost. STATUS is a
 * static string. */
static void dead_letter(struct forward *fw, struct pend *p, const char *status,
			const char *reason, int64_t now)
{
	if (emit_dead(fw, p, status, reason) == M2Z_OK) {
		p->dead_status = NULL;
		finish(fw, p);
		return;
	}
	if (reason != p->details)
		snprintf(p->details, sizeof(p->details), "%s", reason);
	p->dead_status = status;
	wait_retry(fw, p, now);
}

static void gateway_state(struct forward *fw, bool ok, int code, const char *details)
{
	if (fw->gw_state == (ok ? 1 : 2))
		return;
	fw->gw_state = ok ? 1 : 2;
	if (fw->o.on_gateway)
		fw->o.on_gateway(fw->o.on_gateway_arg, ok, code, details);
}

static void pause_all(struct forward *fw, struct pend *p, int64_t now)
{
	int64_t delay;

	/* Only a call sent after the current pause began is news; the rest of
	 * a failed window must not inflate the backoff. */
	if (p->sent_ms >= fw->pause_started)
		fw->consecutive_fail++;
	delay = backoff_ms(fw, fw->consecutive_fail);
	if (now + delay > fw->pause_until) {
		/* The operator's line is health.c's "[state] gateway unreachable". */
		if (!fw->gateway_failing)
			log_debug("gateway answered %s (%s); holding %zu event(s) and retrying with backoff",
				  zeebe_code_name(p->code), p->details, fw->npending);
		fw->gateway_failing = true;
		gateway_state(fw, false, p->code, p->details);
		fw->pause_until = now + delay;
		fw->pause_started = now;
	}
}

/* Back to the front of the line: first to go when sending resumes. */
static void requeue_front(struct forward *fw, struct pend *p)
{
	p->state = P_READY;
	list_push_front(&fw->ready, p);
}

/* OK or ALREADY_EXISTS: done; the gateway is healthy, the window grows. */
static void on_delivered(struct forward *fw, struct pend *p)
{
	stats_observe_latency(fw->h.clock_ms() - p->sent_ms);
	if (p->code == ZEEBE_OK) {
		STAT_INC(published);
		atomic_store_explicit(&g_stats.last_publish_ms, now_ms(), memory_order_relaxed);
	} else {
		STAT_INC(duplicates);
	}
	gateway_state(fw, true, p->code, "");
	if (fw->gateway_failing)
		log_debug("gateway accepts messages again; draining %zu event(s)", fw->npending);
	fw->gateway_failing = false;
	fw->consecutive_fail = 0;
	if (fw->window < fw->o.window && ++fw->window == fw->o.window)
		log_info("window back to %d calls in flight", fw->window);
	finish(fw, p);
}

/* UNAUTHENTICATED: drop that token and resend once a new one is there;
 * without [oauth] nothing will change by itself: say so, and back off. */
static void on_unauthenticated(struct forward *fw, struct pend *p, int64_t now)
{
	STAT_INC(retries);
	if (fw->o.oauth) {
		log_info("gateway rejected the token (%s); fetching a new one", p->details);
		fw->h.invalidate(fw->o.oauth, p->token_gen);
		requeue_front(fw, p);
		return;
	}
	if (!fw->warned_no_oauth)
		log_err("gateway requires a token (%s) but no [oauth] is configured; "
			"set ZEEBE_CLIENT_ID and ZEEBE_CLIENT_SECRET", p->details);
	fw->warned_no_oauth = true;
	pause_all(fw, p, now);
	requeue_front(fw, p);
}

/* RESOURCE_EXHAUSTED - backpressure: send less (halve the window, at most
 * once per round trip) and retry this record after a backoff; the other
 * keys keep going at the smaller window. */
static void on_exhausted(struct forward *fw, struct pend *p, int64_t now)
{
	STAT_INC(retries);
	if (p->sent_ms >= fw->last_shrink && fw->window > 1) {
		if (fw->window == fw->o.window)
			log_warn("gateway backpressure (%s): sending fewer calls at once", p->details);
		fw->window /= 2;
		fw->last_shrink = now;
	}
	wait_retry(fw, p, now);
}

/* Any other retryable code: a gateway-wide one pauses all sending; one
 * about this record retries this record (its key waits). */
static void on_retry(struct forward *fw, struct pend *p, int64_t now)
{
	STAT_INC(retries);
	if (gateway_wide(p->code)) {
		pause_all(fw, p, now);
		requeue_front(fw, p);
		return;
	}
	log_debug("%s for message %.*s (%s); retry %d", zeebe_code_name(p->code),
		  (int)p->ev.message_id_len, p->ev.message_id, p->details, p->attempts + 1);
	wait_retry(fw, p, now);
}

static void on_result(struct forward *fw, struct pend *p, int64_t now)
{
	fw->in_flight--;
	if (fw->stopping && p->code == ZEEBE_CANCELLED) {
		/* Cancelled by our shutdown: it stays in the spool. */
		key_finish(fw, p);
		return;
	}
	switch (forward_classify(p->code)) {
	case FWD_DONE:
		on_delivered(fw, p);
		return;
	case FWD_DEAD:
		dead_letter(fw, p, zeebe_code_name(p->code), p->details, now);
		return;
	case FWD_REAUTH:
		on_unauthenticated(fw, p, now);
		return;
	case FWD_RETRY:
		if (p->code == ZEEBE_RESOURCE_EXHAUSTED)
			on_exhausted(fw, p, now);
		else
			on_retry(fw, p, now);
		return;
	}
}

/* Completion thread: hand the result to the forwarder thread. */
static void on_done(void *arg, const struct zeebe_result *res)
{
	struct pend *p = arg;
	struct forward *fw = p->fw;
	size_t n = strlen(res->details);

	p->code = res->code;
	p->token_gen = res->token_gen;
	if (n >= sizeof(p->details))
		n = sizeof(p->details) - 1;
	memcpy(p->details, res->details, n);
	p->details[n] = '\0';
	pthread_mutex_lock(&fw->lock);
	list_push(&fw->done, p);
	if (fw->want_done || fw->sleeping || (p->code != ZEEBE_OK && p->code != ZEEBE_ALREADY_EXISTS))
		pthread_cond_signal(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
}

/* ---- the loop -------------------------------------------------------------- */

/* Longest a completion nobody waits for stays untaken (its record unacked). */
#define ACK_LAG_MS 200
/* Nothing pending for this long: the loop sleeps untimed (see run()). */
#define IDLE_AFTER_MS 2000

static void take_record(struct forward *fw, struct spool_rec *rec, int64_t now)
{
	struct pend *p = fw->free_pend;

	if (p)
		fw->free_pend = p->next;
	else
		p = &fw->pool[fw->pool_used++];
	memset(p, 0, offsetof(struct pend, details));
	p->fw = fw;
	p->rec = rec;
	p->state = P_QUEUED;
	fw->npending++;
	fw->pending_bytes += rec->len;
	if (event_decode(rec->data, rec->len, &p->ev) != M2Z_OK) {
		memset(&p->ev, 0, sizeof(p->ev));
		p->ev.payload = rec->data;
		p->ev.payload_len = rec->len;
		log_err("spool record %llu cannot be decoded", (unsigned long long)rec->seq);
		dead_letter(fw, p, "ENCODE", "spool record cannot be decoded", now);
		return;
	}
	if (key_enqueue(fw, p)) {
		p->state = P_READY;
		list_push(&fw->ready, p);
	}
}

/* Room for one more record: below max_pending, and below the read_ahead
 * bytes unless fewer than a window's worth are held (the window always
 * fills). Records read ahead of the window let other keys pass a key whose
 * records wait; the byte bound keeps a backlog of big records from
 * costing max_pending of them in memory. */
static bool may_read(const struct forward *fw)
{
	if (fw->npending >= fw->max_pending || fw->stopping)
		return false;
	return !fw->o.read_ahead || fw->npending < (size_t)fw->window ||
	       fw->pending_bytes < fw->o.read_ahead;
}

static void read_spool(struct forward *fw, int64_t now)
{
	struct spool_rec *rec;
	int rc = M2Z_OK;

	while (may_read(fw) && (rc = spool_next(fw->o.spool, 0, &rec)) == M2Z_OK)
		take_record(fw, rec, now);
	fw->spool_drained = rc == M2Z_ERR_AGAIN;
}

static void release_due(struct forward *fw, int64_t now)
{
	struct list keep = { NULL, NULL }, rewrite = { NULL, NULL };
	struct pend *p;

	while ((p = list_pop(&fw->wait))) {
		if (p->due_ms > now) {
			list_push(&keep, p);
		} else if (p->dead_status) {
			list_push(&rewrite, p);
		} else {
			p->state = P_READY;
			list_push(&fw->ready, p);
		}
	}
	fw->wait = keep;
	/* after the loop: a failing write puts P back on fw->wait */
	while ((p = list_pop(&rewrite)))
		dead_letter(fw, p, p->dead_status, p->details, now);
}

static void dispatch(struct forward *fw, int64_t now)
{
	struct pend *p;

	while (fw->in_flight < fw->window && now >= fw->pause_until && (p = list_pop(&fw->ready))) {
		int rc;

		p->state = P_FLIGHT;
		p->sent_ms = now;
		rc = fw->h.publish(fw->o.zeebe, p->ev.request, p->ev.request_len, on_done, p);
		if (rc == M2Z_OK) {
			fw->in_flight++;
			fw->waiting_token = false;
			continue;
		}
		p->state = P_READY;
		list_push_front(&fw->ready, p);
		if (rc == M2Z_ERR_AUTH) {
			if (!fw->waiting_token)
				log_info("waiting for an OAuth token before sending");
			fw->waiting_token = true;
			fw->pause_until = now + 100;
		} else {
			fw->pause_until = now + backoff_ms(fw, 3);
		}
		return;
	}
}

/* Milliseconds until something timed is due, at most LIMIT. */
static int64_t next_timeout(struct forward *fw, int64_t now, int64_t limit)
{
	int64_t t = limit;

	if (fw->ready.head && fw->in_flight < fw->window && fw->pause_until > now &&
	    fw->pause_until - now < t)
		t = fw->pause_until - now;
	for (struct pend *p = fw->wait.head; p; p = p->next)
		if (p->due_ms - now < t)
			t = p->due_ms > now ? p->due_ms - now : 0;
	return t;
}

static void drain_done(struct forward *fw, int64_t now)
{
	struct list done;
	struct pend *p;

	pthread_mutex_lock(&fw->lock);
	done = fw->done;
	fw->done.head = fw->done.tail = NULL;
	pthread_mutex_unlock(&fw->lock);
	while ((p = list_pop(&done)))
		on_result(fw, p, now);
}

/* TIMEOUT_MS < 0: until woken. */
static void wait_for_work(struct forward *fw, int64_t timeout_ms)
{
	struct timespec ts = mono_deadline(timeout_ms);

	pthread_mutex_lock(&fw->lock);
	if (!fw->kicked && !(fw->done.head && (fw->want_done || fw->sleeping)) && !fw->stopping) {
		if (timeout_ms < 0)
			pthread_cond_wait(&fw->cond, &fw->lock);
		else
			pthread_cond_timedwait(&fw->cond, &fw->lock, &ts);
	}
	if (__atomic_load_n(&fw->sleeping, __ATOMIC_RELAXED)) {
		__atomic_store_n(&fw->heartbeat, mono_ms(), __ATOMIC_RELAXED);
		__atomic_store_n(&fw->sleeping, false, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&fw->lock);
}

static bool stopping(struct forward *fw)
{
	bool s;

	pthread_mutex_lock(&fw->lock);
	s = fw->stopping;
	pthread_mutex_unlock(&fw->lock);
	return s;
}

/* One turn of the loop; see forward_internal.h. */
void forward_step(struct forward *fw)
{
	int64_t now = fw->h.clock_ms();

	pthread_mutex_lock(&fw->lock);
	fw->kicked = false;
	pthread_mutex_unlock(&fw->lock);
	drain_done(fw, now);
	release_due(fw, now);
	read_spool(fw, now);
	dispatch(fw, now);
	if (fw->npending > 0)
		fw->last_busy_ms = now;
	pthread_mutex_lock(&fw->lock);
	/* Everything pending is in flight and the spool read dry: a completion
	 * unblocks nothing (a sleeping loop is woken by on_done() all the
	 * same). Reading stopped at a bound: it makes room. */
	fw->want_done = fw->stopping || fw->npending > (size_t)fw->in_flight || !may_read(fw);
	pthread_mutex_unlock(&fw->lock);
}

/* M2Z_TEST_STALL_FORWARDER: behave like a wedged loop (no passes, nothing
 * sent) but still let a shutdown through. */
static bool stall_hook(struct forward *fw)
{
	if (fw->stall_after <= 0 || STAT_GET(published) < (uint64_t)fw->stall_after)
		return false;
	log_warn("test hook M2Z_TEST_STALL_FORWARDER: the forwarder loop stalls now");
	while (!stopping(fw))
		usleep(20 * 1000);
	return true;
}

static void *run(void *arg)
{
	struct forward *fw = arg;

	thread_name("m2z-forward");
	while (!stopping(fw)) {
		int64_t timeout, now;

		__atomic_store_n(&fw->heartbeat, mono_ms(), __ATOMIC_RELAXED);
		pthread_mutex_lock(&fw->step_mu);
		if (stall_hook(fw)) {
			pthread_mutex_unlock(&fw->step_mu);
			break;
		}
		forward_step(fw);
		/* Records pending (a token to wait for, the spool's max_age, a
		 * heartbeat for health's stall check): turn at least every
		 * IDLE_AFTER_MS. Nothing pending for that long and the spool
		 * read to its end: sleep until an append kicks us (no idle
		 * wake-ups; not sooner, or each event of a steady stream would
		 * wake the loop once more). */
		now = fw->h.clock_ms();
		timeout = next_timeout(fw, now, IDLE_AFTER_MS);
		if (fw->in_flight > 0 && timeout > ACK_LAG_MS)
			timeout = ACK_LAG_MS;   /* completions not waking us */
		if (fw->npending == 0 && fw->spool_drained && now - fw->last_busy_ms >= IDLE_AFTER_MS) {
			timeout = -1;
			pthread_mutex_lock(&fw->lock);
			__atomic_store_n(&fw->sleeping, true, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&fw->lock);
		}
		pthread_mutex_unlock(&fw->step_mu);
		wait_for_work(fw, timeout);
	}
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------- */

static void free_all(struct forward *fw)
{
	pthread_mutex_destroy(&fw->lock);
	pthread_mutex_destroy(&fw->step_mu);
	pthread_cond_destroy(&fw->cond);
	free(fw->pool);
	free(fw->kpool);
	free(fw->buckets);
	free(fw);
}

int forward_new(const struct forward_opts *opts, const struct forward_hooks *hooks,
		struct forward **out)
{
	struct forward *fw = calloc(1, sizeof(*fw));

	if (!fw)
		return M2Z_ERR_NOMEM;
	fw->o = *opts;
	fw->h = *hooks;
	atomic_init(&fw->retry_initial_ms, opts->retry_initial_ms);
	atomic_init(&fw->retry_max_ms, opts->retry_max_ms);
	fw->window = opts->window;
	fw->heartbeat = mono_ms();
	if (getenv("M2Z_TEST_STALL_FORWARDER"))
		fw->stall_after = strtol(getenv("M2Z_TEST_STALL_FORWARDER"), NULL, 10);
	fw->max_pending = (size_t)opts->window * 4 < 1024 ? 1024 : (size_t)opts->window * 4;
	for (fw->nbuckets = 64; fw->nbuckets < fw->max_pending * 2; fw->nbuckets *= 2)
		;
	fw->pool = calloc(fw->max_pending, sizeof(*fw->pool));
	fw->kpool = calloc(fw->max_pending, sizeof(*fw->kpool));
	fw->buckets = calloc(fw->nbuckets, sizeof(*fw->buckets));
	pthread_mutex_init(&fw->lock, NULL);
	pthread_mutex_init(&fw->step_mu, NULL);
	cond_init_monotonic(&fw->cond);
	if (!fw->pool || !fw->kpool || !fw->buckets) {
		free_all(fw);
		return M2Z_ERR_NOMEM;
	}
	*out = fw;
	return M2Z_OK;
}

void forward_set_retry(struct forward *fw, int64_t initial_ms, int64_t max_ms)
{
	atomic_store(&fw->retry_initial_ms, initial_ms);
	atomic_store(&fw->retry_max_ms, max_ms);
}

void forward_free(struct forward *fw)
{
	/* Everything not acknowledged stays in the spool: just free it. */
	for (size_t i = 0; i < fw->pool_used; i++)
		if (fw->pool[i].rec)
			spool_rec_free(fw->pool[i].rec);
	free_all(fw);
}

static const struct forward_hooks real_hooks = {
	.publish = zeebe_publish, .invalidate = oauth_invalidate, .clock_ms = mono_ms,
};

int forward_start(const struct forward_opts *opts, struct forward **out)
{
	return forward_start_hooks(opts, &real_hooks, out);
}

int forward_start_hooks(const struct forward_opts *opts, const struct forward_hooks *hooks,
			struct forward **out)
{
	struct forward *fw;
	int rc = forward_new(opts, hooks, &fw);

	if (rc != M2Z_OK)
		return rc;
	fw->threaded = true;
	if (pthread_create(&fw->thread, NULL, run, fw) != 0) {
		log_err("cannot start the forwarder thread");
		free_all(fw);
		return M2Z_ERR_NOMEM;
	}
	*out = fw;
	return M2Z_OK;
}

void forward_peek(struct forward *fw, struct forward_peek *out)
{
	out->window = fw->window;
	out->in_flight = fw->in_flight;
	out->pending = fw->npending;
	out->waiting = 0;
	for (struct pend *p = fw->wait.head; p; p = p->next)
		out->waiting++;
	out->pause_until = fw->pause_until;
	out->wakes_on_done = fw->want_done;
}

bool forward_sleeping(struct forward *fw)
{
	return __atomic_load_n(&fw->sleeping, __ATOMIC_ACQUIRE);
}

/* The caller (the MQTT thread, after an append) turns the loop itself when
 * the forwarder is not in a turn: the new record is sent without waking
 * another thread. The forwarder thread is woken only when the turn left
 * something timed (a retry, a pause) that its sleep may not cover: soon,
 * or at all when it sleeps untimed. */
void forward_kick(struct forward *fw)
{
	if (fw->threaded && pthread_mutex_trylock(&fw->step_mu) == 0) {
		bool timed;

		if (!stopping(fw))
			forward_step(fw);
		timed = next_timeout(fw, fw->h.clock_ms(), 1000) < 1000 ||
			(__atomic_load_n(&fw->sleeping, __ATOMIC_ACQUIRE) &&
			 fw->npending > (size_t)fw->in_flight);
		pthread_mutex_unlock(&fw->step_mu);
		if (!timed)
			return;
	}
	pthread_mutex_lock(&fw->lock);
	if (!fw->kicked) {
		fw->kicked = true;
		pthread_cond_signal(&fw->cond);
	}
	pthread_mutex_unlock(&fw->lock);
}

void forward_get_state(struct forward *fw, int *window, int *in_flight)
{
	/* Read without the thread's cooperation: good enough for a stats line. */
	*window = __atomic_load_n(&fw->window, __ATOMIC_RELAXED);
	*in_flight = __atomic_load_n(&fw->in_flight, __ATOMIC_RELAXED);
}

int64_t forward_heartbeat_ms(struct forward *fw)
{
	if (__atomic_load_n(&fw->sleeping, __ATOMIC_ACQUIRE))
		return mono_ms();    /* waiting for work, not wedged */
	return __atomic_load_n(&fw->heartbeat, __ATOMIC_RELAXED);
}

void forward_stop(struct forward *fw, int64_t grace_ms)
{
	int64_t deadline;

	if (!fw)
		return;
	pthread_mutex_lock(&fw->lock);
	fw->stopping = true;
	pthread_cond_signal(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
	pthread_join(fw->thread, NULL);
	deadline = fw->h.clock_ms() + grace_ms;

	/* Let calls in flight finish (their records are acked normally), then
	 * cancel the rest: they stay in the spool for the next start. */
	if (fw->in_flight > 0)
		log_info("waiting up to %lld ms for %d call(s) in flight",
			 (long long)grace_ms, fw->in_flight);
	while (fw->in_flight > 0 && fw->h.clock_ms() < deadline) {
		drain_done(fw, fw->h.clock_ms());
		if (fw->in_flight > 0)
			wait_for_work(fw, 20);
	}
	if (fw->in_flight > 0) {
		log_warn("%d call(s) still in flight after %lld ms; cancelling (kept in the spool)",
			 fw->in_flight, (long long)grace_ms);
		zeebe_shutdown(fw->o.zeebe, 0);
		while (fw->in_flight > 0) {
			drain_done(fw, fw->h.clock_ms());
			if (fw->in_flight > 0)
				wait_for_work(fw, 20);
		}
	}
	forward_free(fw);
}
