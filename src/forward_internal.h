/* forward_internal.h - test seams of forward.c; not for other modules.
 *
 * The forwarder's outside world is three calls: start a PublishMessage, drop
 * a rejected token, read the monotonic clock. forward_start() uses the real
 * ones (zeebe_publish, oauth_invalidate, mono_ms) and a thread; a unit test
 * builds the same state machine with forward_new() and its own hooks, then
 * turns the loop by hand with forward_step() - no thread, no network, a
 * fake clock. Completions are delivered by calling the zeebe_done_fn the
 * fake publish received (from the test's thread), before forward_step(). */
#ifndef M2Z_FORWARD_INTERNAL_H
#define M2Z_FORWARD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "zeebe.h"

struct forward_hooks {
	int (*publish)(struct zeebe *zb, const void *req, size_t len, zeebe_done_fn done, void *arg);
	void (*invalidate)(struct oauth *oa, uint64_t token_gen);
	int64_t (*clock_ms)(void);  /* monotonic milliseconds */
};

/* The state machine without its thread. HOOKS is copied. */
int forward_new(const struct forward_opts *opts, const struct forward_hooks *hooks,
		struct forward **out);

/* forward_start() with HOOKS instead of the real ones: the loop in its own
 * thread (forward_kick, forward_stop), for tests of the thread hand-offs.
 * HOOKS->publish may be called from the forwarder thread or a kicking one. */
int forward_start_hooks(const struct forward_opts *opts, const struct forward_hooks *hooks,
			struct forward **out);

/* One turn of the loop at hooks->clock_ms(): take completions, release due
 * retries, read the spool, dispatch. Never waits. */
void forward_step(struct forward *fw);

/* Free everything (records not acknowledged stay in the spool). Only for a
 * forwarder made by forward_new() with no call in flight. */
void forward_free(struct forward *fw);

struct forward_peek {
	int window, in_flight;
	size_t pending;             /* records taken from the spool, not yet acked */
	size_t waiting;             /* on a retry timer (incl. a dead letter to rewrite) */
	int64_t pause_until;        /* gateway-wide pause, monotonic ms */
	bool wakes_on_done;         /* a completion wakes the loop (see want_done) */
};
void forward_peek(struct forward *fw, struct forward_peek *out);

/* The loop's thread waits without a timeout, for a kick or a completion
 * (any thread). */
bool forward_sleeping(struct forward *fw);

#endif
