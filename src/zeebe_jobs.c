/* zeebe_jobs.c - ActivateJobs, CompleteJob, FailJob, ThrowError on gRPC
 * core; see zeebe_jobs.h.
 *
 * ActivateJobs is server streaming: the gateway may send several responses
 * before it ends the call (long polling keeps it open until jobs come or
 * requestTimeout passes). It runs on the caller's thread with its own
 * pluck queue, so a worker thread can poll and still look at its timers
 * (the tick callback, as often as it asks: an idle worker rarely). A stop
 * cancels the call through its zeebe_poll_slot. The three job commands are
 * unary calls on zeebe.c's completion thread. */
#define LOG_MODULE "zeebe"
#include "zeebe_jobs.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "gateway.pb-c.h"
#include "log.h"
#include "zeebe_internal.h"

#define FIRST_TICK_MS 100

/* ---- ActivateJobs ---------------------------------------------------------------- */

struct poll {
	grpc_completion_queue *cq;
	grpc_call *call;
	zeebe_tick_fn tick;
	void *arg;
	bool cancelled;
	int64_t tick_ms;                /* until the next tick */
};

/* Wait for TAG; tick while waiting. Returns the op's success. */
static bool wait_tag(struct poll *p, void *tag)
{
	for (;;) {
		gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						  gpr_time_from_millis(p->tick_ms, GPR_TIMESPAN));
		grpc_event ev = grpc_completion_queue_pluck(p->cq, tag, until, NULL);
		if (ev.type == GRPC_OP_COMPLETE)
			return ev.success != 0;
		if (!p->cancelled && p->tick) {
			int64_t next = p->tick(p->arg);
			if (next < 0) {
				p->cancelled = true;
				grpc_call_cancel(p->call, NULL);
			}
			p->tick_ms = next < 1 ? 1 : next;
		}
	}
}

void zeebe_poll_slot_init(struct zeebe_poll_slot *s)
{
	pthread_mutex_init(&s->mu, NULL);
	s->call = NULL;
	s->cancelled = false;
}

void zeebe_poll_slot_destroy(struct zeebe_poll_slot *s)
{
	pthread_mutex_destroy(&s->mu);
}

void zeebe_poll_cancel(struct zeebe_poll_slot *s)
{
	pthread_mutex_lock(&s->mu);
	s->cancelled = true;
	if (s->call)
		grpc_call_cancel(s->call, NULL);
	pthread_mutex_unlock(&s->mu);
}

/* Make P's call the one SLOT cancels (CALL) or none (NULL). A cancel that
 * came before the call existed cancels it now. */
static void slot_set(struct zeebe_poll_slot *slot, struct poll *p, grpc_call *call)
{
	if (!slot)
		return;
	pthread_mutex_lock(&slot->mu);
	slot->call = call;
	if (slot->cancelled) {
		p->cancelled = true;
		if (call)
			grpc_call_cancel(call, NULL);
	}
	pthread_mutex_unlock(&slot->mu);
}

static grpc_byte_buffer *pack_activate(const struct zeebe_activate_req *r)
{
	GatewayProtocol__ActivateJobsRequest m = GATEWAY_PROTOCOL__ACTIVATE_JOBS_REQUEST__INIT;
	uint8_t *bytes;
	size_t n;
	grpc_slice s;
	grpc_byte_buffer *bb;

	m.type = (char *)r->type;
	m.worker = (char *)r->worker;
	m.timeout = r->timeout_ms;
	m.maxjobstoactivate = r->max_jobs;
	m.fetchvariable = (char **)r->fetch;
	m.n_fetchvariable = r->n_fetch;
	m.requesttimeout = r->request_timeout_ms;
	m.tenantids = (char **)r->tenants;
	m.n_tenantids = r->n_tenants;
	n = gateway_protocol__activate_jobs_request__get_packed_size(&m);
	if (!(bytes = malloc(n ? n : 1)))
		return NULL;
	gateway_protocol__activate_jobs_request__pack(&m, bytes);
	s = grpc_slice_from_copied_buffer((const char *)bytes, n);
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	free(bytes);
	return bb;
}

static const char *str(const char *s)
{
	return s ? s : "";
}

static void deliver(grpc_byte_buffer *bb, zeebe_job_fn fn, void *arg)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;
	GatewayProtocol__ActivateJobsResponse *resp;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return;
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	resp = gateway_protocol__activate_jobs_response__unpack(NULL, GRPC_SLICE_LENGTH(s),
								GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	if (!resp) {
		log_err("undecodable ActivateJobsResponse");
		return;
	}
	for (size_t i = 0; i < resp->n_jobs; i++) {
		const GatewayProtocol__ActivatedJob *j = resp->jobs[i];
		struct zeebe_job job = {
			.key = j->key, .type = str(j->type), .process_instance_key = j->processinstancekey,
			.bpmn_process_id = str(j->bpmnprocessid),
			.process_definition_version = j->processdefinitionversion,
			.process_definition_key = j->processdefinitionkey, .element_id = str(j->elementid),
			.element_instance_key = j->elementinstancekey,
			.custom_headers = str(j->customheaders), .worker = str(j->worker),
			.retries = j->retries, .deadline = j->deadline, .variables = str(j->variables),
			.tenant_id = str(j->tenantid),
		};
		fn(arg, &job);
	}
	gateway_protocol__activate_jobs_response__free_unpacked(resp, NULL);
}

/* Read responses until the stream ends. */
static void read_stream(struct poll *p, zeebe_job_fn fn, void *arg)
{
	for (;;) {
		grpc_byte_buffer *msg = NULL;
		grpc_op op;

		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &msg;
		if (grpc_call_start_batch(p->call, &op, 1, &msg, NULL) != GRPC_CALL_OK)
			return;
		if (!wait_tag(p, &msg) || !msg) {
			if (msg)
				grpc_byte_buffer_destroy(msg);
			return;
		}
		deliver(msg, fn, arg);
		grpc_byte_buffer_destroy(msg);
		p->tick_ms = FIRST_TICK_MS;     /* jobs came: ask the tick again soon */
	}
}

static int finish(struct poll *p, char *details, size_t dlen)
{
	grpc_metadata_array trailing;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice det = grpc_empty_slice();
	grpc_op op;
	int code = ZEEBE_UNAVAILABLE;

	grpc_metadata_array_init(&trailing);
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &trailing;
	op.data.recv_status_on_client.status = &status;
	op.data.recv_status_on_client.status_details = &det;
	if (grpc_call_start_batch(p->call, &op, 1, &status, NULL) == GRPC_CALL_OK && wait_tag(p, &status))
		code = (int)status;
	snprintf(details, dlen, "%.*s", (int)GRPC_SLICE_LENGTH(det), (const char *)GRPC_SLICE_START_PTR(det));
	grpc_slice_unref(det);
	grpc_metadata_array_destroy(&trailing);
	return code;
}

static int start_activate(struct zeebe *zb, struct poll *p, grpc_metadata *md, grpc_byte_buffer *req,
			  grpc_metadata_array *initial)
{
	grpc_op ops[4];

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = GRPC_SLICE_LENGTH(md->value) ? 1 : 0;
	ops[0].data.send_initial_metadata.metadata = md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = req;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = initial;
	if (grpc_call_start_batch(p->call, ops, 4, p, NULL) != GRPC_CALL_OK)
		return M2Z_ERR_NET;
	wait_tag(p, p);
	return M2Z_OK;
}

int zeebe_activate_jobs(struct zeebe *zb, const struct zeebe_activate_req *req,
			zeebe_job_fn job_fn, zeebe_tick_fn tick_fn, void *arg,
			struct zeebe_poll_slot *slot, char *details, size_t dlen, uint64_t *token_gen)
{
	struct poll p = { .tick = tick_fn, .arg = arg, .tick_ms = FIRST_TICK_MS };
	grpc_metadata md;
	grpc_metadata_array initial;
	grpc_byte_buffer *bb = NULL;
	uint64_t gen;
	int code;

	details[0] = '\0';
	memset(&md, 0, sizeof(md));
	if (zeebe_closed(zb))
		return M2Z_ERR_CLOSED;
	if (zeebe_token_metadata(zb, &md, &gen) != M2Z_OK)
		return M2Z_ERR_AUTH;
	*token_gen = gen;
	grpc_metadata_array_init(&initial);
	p.cq = grpc_completion_queue_create_for_pluck(NULL);
	if (!(bb = pack_activate(req))) {
		code = M2Z_ERR_NOMEM;
		goto out;
	}
	p.call = grpc_channel_create_call(zeebe_channel(zb), NULL, GRPC_PROPAGATE_DEFAULTS, p.cq,
					  grpc_slice_from_static_string("/gateway_protocol.Gateway/ActivateJobs"),
					  NULL, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
							     gpr_time_from_millis(req->deadline_ms, GPR_TIMESPAN)),
					  NULL);
	slot_set(slot, &p, p.call);
	if (start_activate(zb, &p, &md, bb, &initial) != M2Z_OK) {
		snprintf(details, dlen, "cannot start the call");
		code = ZEEBE_INTERNAL;
		goto out;
	}
	read_stream(&p, job_fn, arg);
	code = finish(&p, details, dlen);
out:
	slot_set(slot, &p, NULL);       /* takes a cancel that came meanwhile */
	if (p.cancelled && code >= 0)
		code = ZEEBE_CANCELLED;
	if (p.call)
		grpc_call_unref(p.call);
	if (bb)
		grpc_byte_buffer_destroy(bb);
	grpc_metadata_array_destroy(&initial);
	grpc_slice_unref(md.value);
	grpc_completion_queue_shutdown(p.cq);
	while (grpc_completion_queue_pluck(p.cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(p.cq);
	return code;
}

/* ---- the job commands (unary) -------------------------------------------------------- */

#define PACK_AND_CALL(kind, method, m)                                                   \
	do {                                                                               \
		size_t n_ = gateway_protocol__##kind##__get_packed_size(&(m));             \
		uint8_t *b_ = malloc(n_ ? n_ : 1);                                        \
		int rc_;                                                                   \
		if (!b_)                                                                   \
			return M2Z_ERR_NOMEM;                                              \
		gateway_protocol__##kind##__pack(&(m), b_);                                \
		rc_ = zeebe_call_unary(zb, "/gateway_protocol.Gateway/" method, b_, n_, done, arg); \
		free(b_);                                                                  \
		return rc_;                                                                \
	} while (0)

int zeebe_complete_job(struct zeebe *zb, int64_t key, const char *variables,
		       zeebe_done_fn done, void *arg)
{
	GatewayProtocol__CompleteJobRequest m = GATEWAY_PROTOCOL__COMPLETE_JOB_REQUEST__INIT;

	m.jobkey = key;
	m.variables = (char *)(variables ? variables : "");
	PACK_AND_CALL(complete_job_request, "CompleteJob", m);
}

int zeebe_fail_job(struct zeebe *zb, int64_t key, int32_t retries, const char *message,
		   int64_t backoff_ms, zeebe_done_fn done, void *arg)
{
	GatewayProtocol__FailJobRequest m = GATEWAY_PROTOCOL__FAIL_JOB_REQUEST__INIT;

	m.jobkey = key;
	m.retries = retries;
	m.errormessage = (char *)(message ? message : "");
	m.retrybackoff = backoff_ms;
	PACK_AND_CALL(fail_job_request, "FailJob", m);
}

int zeebe_throw_error(struct zeebe *zb, int64_t key, const char *code, const char *message,
		      zeebe_done_fn done, void *arg)
{
	GatewayProtocol__ThrowErrorRequest m = GATEWAY_PROTOCOL__THROW_ERROR_REQUEST__INIT;

	m.jobkey = key;
	m.errorcode = (char *)code;
	m.errormessage = (char *)(message ? message : "");
	PACK_AND_CALL(throw_error_request, "ThrowError", m);
}
