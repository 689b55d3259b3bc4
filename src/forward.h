/* forward.h - drains the spool into the gateway.
 *
 * One thread reads records from the spool in order and starts PublishMessage
 * calls, at most `window` in flight (the window halves on
 * RESOURCE_EXHAUSTED and grows back by one per success). Events with the
 * same key_hash (tenant + correlation key, see event.h) are sent one at a
 * time in spool order, so they reach the gateway in the order the broker
 * delivered them, across retries and restarts; other keys do not wait.
 *
 * Each answer is classed once (forward_classify):
 *   done        OK; ALREADY_EXISTS (a duplicate: Zeebe already has it)
 *   retry       UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
 *               CANCELLED, INTERNAL, UNKNOWN, connection failures -
 *               exponential backoff with full jitter, capped
 *   reauth      UNAUTHENTICATED - the token is dropped, a new one fetched,
 *               then retried like "retry"
 *   dead letter INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
 *               PERMISSION_DENIED, OUT_OF_RANGE, UNIMPLEMENTED, DATA_LOSS,
 *               and records the agent cannot decode
 * A record leaves the spool (spool_ack) only when done, or dead-lettered
 * with its line on disk: when the dead-letter write fails (disk full,
 * read-only) the record stays, its key waits, and the write is retried
 * after a backoff. Test seams: forward_internal.h. */
#ifndef M2Z_FORWARD_H
#define M2Z_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

struct spool;
struct zeebe;
struct oauth;
struct deadletter;
struct forward;

enum fwd_class { FWD_DONE = 0, FWD_RETRY, FWD_REAUTH, FWD_DEAD };

/* Pure: class of a gateway status code (enum zeebe_code). */
enum fwd_class forward_classify(int code);

/* Called on the forwarder thread when the gateway's state changes: OK after
 * the first success (and after each recovery), !OK on a gateway-wide
 * failure (UNAVAILABLE, DEADLINE_EXCEEDED, ...) with its CODE and DETAILS
 * (borrowed for the call). */
typedef void (*forward_gateway_fn)(void *arg, bool ok, int code, const char *details);

struct forward_opts {
	struct spool *spool;        /* borrowed; all four outlive the forwarder */
	struct zeebe *zeebe;
	struct oauth *oauth;        /* may be NULL */
	struct deadletter *dead;    /* its on_line hook republishes, see deadletter.h */
	int window;                 /* max calls in flight */
	size_t read_ahead;          /* record bytes held in memory (in flight + queued
				       behind their keys) past which no more are read,
				       once a window's worth is held; 0 = no byte bound */
	int64_t retry_initial_ms;
	int64_t retry_max_ms;
	forward_gateway_fn on_gateway; /* may be NULL */
	void *on_gateway_arg;
};

int forward_start(const struct forward_opts *opts, struct forward **out);

/* New records were appended: wake the forwarder. Cheap; call after every
 * spool_append(). */
void forward_kick(struct forward *fw);

/* Stop reading the spool, wait up to GRACE_MS for calls in flight, cancel
 * the rest (they stay in the spool), join the thread, free. */
void forward_stop(struct forward *fw, int64_t grace_ms);

/* Reload (any thread): the backoff of the next retries uses these; a
 * retry already scheduled keeps its time. */
void forward_set_retry(struct forward *fw, int64_t initial_ms, int64_t max_ms);

/* Current window and calls in flight, for the stats line (any thread;
 * read without locking: approximate). */
void forward_get_state(struct forward *fw, int *window, int *in_flight);

/* Monotonic ms when the forwarder loop last completed a pass, or now while
 * it sleeps untimed (idle: nothing pending, the spool read to its end). A
 * busy loop passes at least every 2 s; an old value means it is stuck (the
 * systemd watchdog and /healthz use it). Any thread.
 * Test hook: M2Z_TEST_STALL_FORWARDER=N stalls the loop (no more passes,
 * nothing sent) once N messages were published. */
int64_t forward_heartbeat_ms(struct forward *fw);

#endif
