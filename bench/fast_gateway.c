/* fast_gateway.c - a stand-in Zeebe gateway in C on gRPC core, for the
 * benchmark only: the Python stand-in (tests/peers/gateway.py) tops out far
 * below the agent, and a benchmark must not measure its peer.
 *
 * TLS with the test certificate; every call must carry
 * "authorization: Bearer <token>" with a token listed in --tokens FILE
 * (re-read when an unknown token shows up, so the token endpoint can append
 * as it issues). Decodes each PublishMessageRequest with protobuf-c, answers
 * OK, and records the arrival: count, first/last arrival (CLOCK_MONOTONIC,
 * which every process on the machine shares) and, when the variables carry
 * "t":<monotonic seconds at publish>, the latency. --stats FILE is rewritten
 * every 50 ms while counts change and at exit (SIGTERM):
 *   {"count":N,"rejected":N,"first":S,"last":S}
 * and at exit FILE.lat gets one latency (ms) per line.
 * --delay-ms D holds every answer D ms after the request arrived, like a
 * gateway far away (Camunda SaaS: tens of ms per round trip); calls stay
 * concurrent (up to SLOTS at once).
 *
 * Usage: m2z-fast-gateway --port-file F --cert C --key K --tokens T --stats S
 *          [--delay-ms D] */
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.pb-c.h"

#define SLOTS 512
#define MAX_TOKENS 256
#define MAX_LAT 2000000

enum { REQUESTED, READING, FINISHING };

struct slot {
	int state;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
	grpc_byte_buffer *req, *resp;
	grpc_status_code status;
	grpc_slice status_details;
	int cancelled;
	double due;                 /* --delay-ms: answer at this time */
};

static grpc_server *server;
static grpc_completion_queue *cq;
static const char *tokens_path, *stats_path;
static char *tokens[MAX_TOKENS];
static int n_tokens;
static long count, rejected, key = 2251799813685248L;
static double first_s, last_s;
static float *lat_ms;
static long n_lat;
static volatile sig_atomic_t stop;
static double delay_s;
/* Requests read and waiting for their answer, oldest first: the delay is
 * the same for all, so a FIFO ring is in due order. */
static struct slot *held[SLOTS];
static int held_head, held_n;

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load_tokens(void)
{
	FILE *f = fopen(tokens_path, "r");
	char line[512];

	if (!f)
		return;
	while (n_tokens < MAX_TOKENS && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		int known = 0;
		for (int i = 0; i < n_tokens; i++)
			known |= strcmp(tokens[i], line) == 0;
		if (line[0] && !known)
			tokens[n_tokens++] = strdup(line);
	}
	fclose(f);
}

static int token_ok(const grpc_metadata_array *md)
{
	for (size_t i = 0; i < md->count; i++) {
		grpc_slice k = md->metadata[i].key, v = md->metadata[i].value;
		size_t vl = GRPC_SLICE_LENGTH(v);
		const char *vp = (const char *)GRPC_SLICE_START_PTR(v);

		if (GRPC_SLICE_LENGTH(k) != 13 || memcmp(GRPC_SLICE_START_PTR(k), "authorization", 13))
			continue;
		if (vl < 8 || memcmp(vp, "Bearer ", 7))
			return 0;
		for (int pass = 0; pass < 2; pass++) {
			for (int t = 0; t < n_tokens; t++)
				if (strlen(tokens[t]) == vl - 7 && !memcmp(tokens[t], vp + 7, vl - 7))
					return 1;
			load_tokens();
		}
		return 0;
	}
	return 0;
}

/* Counts every 50 ms while they change; the latencies only at exit, to
 * STATS.lat (rewriting them each time would make a long run quadratic). */
static void write_stats(int with_latencies)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "{\"count\":%ld,\"rejected\":%ld,\"first\":%.6f,\"last\":%.6f}\n",
		count, rejected, first_s, last_s);
	fclose(f);
	rename(tmp, stats_path);
	if (!with_latencies)
		return;
	snprintf(tmp, sizeof(tmp), "%s.lat", stats_path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	for (long i = 0; i < n_lat; i++)
		fprintf(f, "%.3f\n", (double)lat_ms[i]);
	fclose(f);
}

static void request(struct slot *s)
{
	memset(s, 0, sizeof(*s));
	grpc_metadata_array_init(&s->md);
	grpc_call_details_init(&s->details);
	s->state = REQUESTED;
	if (grpc_server_request_call(server, &s->call, &s->details, &s->md, cq, cq, s) != GRPC_CALL_OK)
		fprintf(stderr, "fast-gateway: request_call failed\n");
}

static void read_message(struct slot *s)
{
	grpc_op ops[2];

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &s->req;
	s->state = READING;
	grpc_call_start_batch(s->call, ops, 2, s, NULL);
}

/* Decode, check, record; the response (or status) for the call. */
static grpc_status_code handle(struct slot *s, const char **why)
{
	grpc_byte_buffer_reader r;
	grpc_slice sl;
	GatewayProtocol__PublishMessageRequest *req;
	double now = mono_s();

	if (!token_ok(&s->md)) {
		*why = "Failed to parse bearer token, see cause for details";
		rejected++;
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	if (!s->req || !grpc_byte_buffer_reader_init(&r, s->req)) {
		*why = "no request";
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	sl = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	req = gateway_protocol__publish_message_request__unpack(NULL, GRPC_SLICE_LENGTH(sl),
								GRPC_SLICE_START_PTR(sl));
	grpc_slice_unref(sl);
	if (!req) {
		*why = "undecodable PublishMessageRequest";
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	if (count++ == 0)
		first_s = now;
	last_s = now;
	const char *t = req->variables ? strstr(req->variables, "\"t\":") : NULL;
	double sent = t ? strtod(t + 4, NULL) : 0;
	if (sent > 0 && n_lat < MAX_LAT)
		lat_ms[n_lat++] = (float)((now - sent) * 1000.0);
	gateway_protocol__publish_message_request__free_unpacked(req, NULL);
	return GRPC_STATUS_OK;
}

static void respond(struct slot *s)
{
	const char *why = "";
	grpc_status_code code = handle(s, &why);
	grpc_op ops[3];
	int n = 0;

	memset(ops, 0, sizeof(ops));
	if (code == GRPC_STATUS_OK) {
		GatewayProtocol__PublishMessageResponse resp = GATEWAY_PROTOCOL__PUBLISH_MESSAGE_RESPONSE__INIT;
		uint8_t buf[64];
		size_t len;
		grpc_slice out;

		resp.key = ++key;
		len = gateway_protocol__publish_message_response__pack(&resp, buf);
		out = grpc_slice_from_copied_buffer((const char *)buf, len);
		s->resp = grpc_raw_byte_buffer_create(&out, 1);
		grpc_slice_unref(out);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = s->resp;
	}
	s->status_details = grpc_slice_from_static_string(why);
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &s->status_details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &s->cancelled;
	s->state = FINISHING;
	grpc_call_start_batch(s->call, ops, (size_t)n, s, NULL);
}

static void finish(struct slot *s)
{
	if (s->req)
		grpc_byte_buffer_destroy(s->req);
	if (s->resp)
		grpc_byte_buffer_destroy(s->resp);
	grpc_metadata_array_destroy(&s->md);
	grpc_call_details_destroy(&s->details);
	grpc_call_unref(s->call);
	request(s);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "fast-gateway: cannot read %s\n", path);
		exit(2);
	}
	b = calloc(1, (size_t)n + 1);
	if (fread(b, 1, (size_t)n, f) != (size_t)n)
		exit(2);
	fclose(f);
	return b;
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	const char *port_file = NULL, *cert = NULL, *keyf = NULL;
	static struct slot slots[SLOTS];
	grpc_ssl_pem_key_cert_pair pair;
	grpc_server_credentials *creds;
	long written = -1;
	double last_write = 0;
	int port;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--port-file")) port_file = argv[i + 1];
		else if (!strcmp(argv[i], "--cert")) cert = argv[i + 1];
		else if (!strcmp(argv[i], "--key")) keyf = argv[i + 1];
		else if (!strcmp(argv[i], "--tokens")) tokens_path = argv[i + 1];
		else if (!strcmp(argv[i], "--stats")) stats_path = argv[i + 1];
		else if (!strcmp(argv[i], "--delay-ms")) delay_s = atof(argv[i + 1]) / 1000.0;
	}
	if (!port_file || !cert || !keyf || !tokens_path || !stats_path) {
		fprintf(stderr, "usage: %s --port-file F --cert C --key K --tokens T --stats S\n", argv[0]);
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	lat_ms = calloc(MAX_LAT, sizeof(*lat_ms));
	grpc_init();
	pair.private_key = slurp(keyf);
	pair.cert_chain = slurp(cert);
	creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
	server = grpc_server_create(NULL, NULL);
	cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(server, cq, NULL);
	port = grpc_server_add_http2_port(server, "127.0.0.1:0", creds);
	grpc_server_credentials_release(creds);
	if (port <= 0) {
		fprintf(stderr, "fast-gateway: cannot bind\n");
		return 1;
	}
	grpc_server_start(server);
	for (int i = 0; i < SLOTS; i++)
		request(&slots[i]);
	{
		char tmp[4096];
		FILE *f;
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		f = fopen(tmp, "w");
		fprintf(f, "%d\n", port);
		fclose(f);
		rename(tmp, port_file);
	}
	while (!stop) {
		double wait_s = 0.05;
		for (double now = mono_s(); held_n && held[held_head]->due <= now; held_n--) {
			respond(held[held_head]);
			held_head = (held_head + 1) % SLOTS;
		}
		if (held_n && held[held_head]->due - mono_s() < wait_s)
			wait_s = held[held_head]->due - mono_s();
		if (wait_s < 0)
			wait_s = 0;
		grpc_event ev = grpc_completion_queue_next(cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
						gpr_time_from_micros((int64_t)(wait_s * 1e6), GPR_TIMESPAN)), NULL);
		if (ev.type == GRPC_OP_COMPLETE) {
			struct slot *s = ev.tag;
			if (!ev.success && s->state != FINISHING) {
				if (s->state == REQUESTED)
					continue; /* server shutting down */
				finish(s);
			} else if (s->state == REQUESTED) {
				read_message(s);
			} else if (s->state == READING && delay_s > 0) {
				s->due = mono_s() + delay_s;
				held[(held_head + held_n++) % SLOTS] = s;
			} else if (s->state == READING) {
				respond(s);
			} else {
				finish(s);
			}
		}
		if (count + rejected != written && mono_s() - last_write > 0.05) {
			write_stats(0);
			written = count + rejected;
			last_write = mono_s();
		}
	}
	write_stats(1);
	return 0;
}
