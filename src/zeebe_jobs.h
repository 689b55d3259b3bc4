/* zeebe_jobs.h - the job calls of the gateway: ActivateJobs (long polling),
 * CompleteJob, FailJob, ThrowError. gRPC stays fenced in zeebe_jobs.c and
 * zeebe.c; callers see plain C structs.
 *
 * StreamActivatedJobs is not used: see README, "Commands to devices". */
#ifndef M2Z_ZEEBE_JOBS_H
#define M2Z_ZEEBE_JOBS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zeebe.h"

/* One activated job. Every string is borrowed for the duration of the
 * callback only, never NULL. */
struct zeebe_job {
	int64_t key;
	const char *type;
	int64_t process_instance_key;
	const char *bpmn_process_id;
	int32_t process_definition_version;
	int64_t process_definition_key;
	const char *element_id;
	int64_t element_instance_key;
	const char *custom_headers;     /* JSON object of strings */
	const char *worker;
	int32_t retries;
	int64_t deadline;               /* epoch ms */
	const char *variables;          /* JSON object */
	const char *tenant_id;
};

struct zeebe_activate_req {
	const char *type;
	const char *worker;
	int64_t timeout_ms;             /* job lock */
	int32_t max_jobs;
	const char *const *fetch;       /* borrowed; n_fetch names */
	size_t n_fetch;
	const char *const *tenants;     /* borrowed; n_tenants ids */
	size_t n_tenants;
	int64_t request_timeout_ms;     /* long-polling window */
	int64_t deadline_ms;            /* whole call; > request_timeout_ms */
};

/* Called for each job as the responses arrive, on the caller's thread. */
typedef void (*zeebe_job_fn)(void *arg, const struct zeebe_job *job);
/* Called while the call waits: the first time after 100 ms, then after
 * as many ms as it returned last (at least 1); returning < 0 cancels the
 * call (the jobs already delivered stay delivered). */
typedef int64_t (*zeebe_tick_fn)(void *arg);

/* Lets another thread end a running zeebe_activate_jobs() at once (a stop),
 * so the waiting thread need not tick often just to notice one. */
struct zeebe_poll_slot {
	pthread_mutex_t mu;
	void *call;                     /* the running call, or NULL */
	bool cancelled;                 /* zeebe_poll_cancel() was called */
};
void zeebe_poll_slot_init(struct zeebe_poll_slot *s);
void zeebe_poll_slot_destroy(struct zeebe_poll_slot *s);
/* Cancel the running call and every later one started with S. */
void zeebe_poll_cancel(struct zeebe_poll_slot *s);

/* One blocking ActivateJobs call. Returns the gRPC status (ZEEBE_OK when
 * the stream ended normally, ZEEBE_CANCELLED after TICK or
 * zeebe_poll_cancel(SLOT) asked) with the
 * gateway's text in DETAILS; M2Z_ERR_AUTH (negative) when OAuth is on and
 * no token is cached yet (nothing was sent), M2Z_ERR_CLOSED after
 * zeebe_shutdown(). TOKEN_GEN gets the OAuth generation the call carried
 * (for oauth_invalidate on UNAUTHENTICATED). SLOT may be NULL. */
int zeebe_activate_jobs(struct zeebe *zb, const struct zeebe_activate_req *req,
			zeebe_job_fn job_fn, zeebe_tick_fn tick_fn, void *arg,
			struct zeebe_poll_slot *slot, char *details, size_t dlen, uint64_t *token_gen);

/* Asynchronous, same contract as zeebe_publish(): DONE(ARG, res) exactly
 * once on the completion thread unless a non-zero M2Z_ERR_* is returned.
 * VARIABLES: a JSON object or NULL/"" for none. Strings are copied. */
int zeebe_complete_job(struct zeebe *zb, int64_t key, const char *variables,
		       zeebe_done_fn done, void *arg);
int zeebe_fail_job(struct zeebe *zb, int64_t key, int32_t retries, const char *message,
		   int64_t backoff_ms, zeebe_done_fn done, void *arg);
int zeebe_throw_error(struct zeebe *zb, int64_t key, const char *code, const char *message,
		      zeebe_done_fn done, void *arg);

#endif
