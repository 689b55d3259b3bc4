/* worker.h - the agent as a Zeebe job worker: jobs become MQTT commands.
 *
 * Each [worker NAME] section works on one job type. A thread per worker
 * activates jobs with ActivateJobs long polling, only while the broker is
 * connected and only up to max_jobs_active jobs in hand. Each job is
 * rendered into a topic and a payload (templates with {/ptr} over the job
 * document below) and published. Then:
 *   mode = publish        complete the job once the broker has the command
 *                         (QoS 1 PUBACK / QoS 2 PUBCOMP; QoS 0: once sent);
 *   mode = request_reply  wait for the device's reply on reply_topic (which
 *                         carries {/key}); complete the job with the reply as
 *                         variables; an error reply throws error_code; no
 *                         reply within reply_timeout fails the job with
 *                         retries - 1 and retry_backoff (or throws
 *                         timeout_error_code).
 * A job whose topic or payload cannot be rendered, whose topic values would
 * contain '/', '+', '#' or be empty, or whose payload exceeds max_payload is
 * failed with retries 0 (an incident with the reason): retrying cannot help.
 * When the broker connection drops, jobs in hand are failed back at once
 * with their retries unchanged and retry_backoff; so they are on stop (with
 * no back-off). Job commands are retried on UNAVAILABLE, RESOURCE_EXHAUSTED,
 * DEADLINE_EXCEEDED and UNAUTHENTICATED; NOT_FOUND (the job timed out or was
 * cancelled meanwhile) is logged once and dropped.
 *
 * Delivery is at least once: a command published and not yet completed
 * when the agent dies is published again after the job timeout. Devices
 * should treat a repeated job key as a repeat.
 *
 * The job document the templates see (keys are strings: int64 exact):
 *   {"key": "2251799813685249", "type": "...", "processInstanceKey": "...",
 *    "processDefinitionKey": "...", "processDefinitionVersion": 1,
 *    "bpmnProcessId": "...", "elementId": "...", "elementInstanceKey": "...",
 *    "tenantId": "...", "worker": "...", "retries": 3, "deadline": <ms>,
 *    "customHeaders": {...}, "variables": {...}} */
#ifndef M2Z_WORKER_H
#define M2Z_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config;
struct mqtt_in;
struct oauth;
struct zeebe;
struct workers;

struct worker_stats {
	uint64_t activated, completed, failed, timed_out, errors_thrown, bad_jobs, lost;
};

/* Compile the [worker NAME] sections of CFG. On a bad template returns
 * M2Z_ERR_CONFIG with ERR = "FILE:LINE: what was expected". CFG must
 * outlive the result (workers_free). *OUT is NULL-safe to free. */
int workers_new(const struct config *cfg, struct workers **out, char *err, size_t errlen);
size_t workers_count(const struct workers *ws);

/* One block per worker for --check. */
void workers_print(const struct workers *ws, FILE *f);

/* Register the reply subscriptions and the publish hook on MI (before
 * mqtt_in_start) and start the activation threads. MI, ZB and OAUTH (may
 * be NULL; told about rejected tokens) are borrowed and must outlive
 * workers_free(). REQUEST_TIMEOUT_MS: the per-call deadline added to the
 * long-polling window. */
int workers_start(struct workers *ws, struct mqtt_in *mi, struct zeebe *zb, struct oauth *oauth,
		  int64_t request_timeout_ms);

/* Stop activating; fail back jobs in hand (retries unchanged); wait up to
 * GRACE_MS for the job commands. Call before mqtt_in_stop / zeebe_free. */
void workers_stop(struct workers *ws, int64_t grace_ms);

/* Sum over all workers. */
void workers_get_stats(struct workers *ws, struct worker_stats *st);

/* After mqtt_in and zeebe are freed (their callbacks may still run until
 * then). */
void workers_free(struct workers *ws);

#endif
