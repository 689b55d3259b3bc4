/* zeebe.h - the Zeebe gateway client; the only module that includes gRPC.
 *
 * One channel (TLS by default, plaintext only when asked by name), the
 * bearer token from oauth.c (or a Basic header) sent as per-call
 * "authorization" metadata, a per-call deadline, keepalive, user agent and
 * max message size as in struct zeebe_opts. Calls are asynchronous: any
 * number may be in flight (the forwarder bounds them); one completion-queue
 * thread finishes them and calls back. */
#ifndef M2Z_ZEEBE_H
#define M2Z_ZEEBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct oauth;
struct zeebe;

/* gRPC status codes, same numbers. */
enum zeebe_code {
	ZEEBE_OK = 0,
	ZEEBE_CANCELLED = 1,
	ZEEBE_UNKNOWN = 2,
	ZEEBE_INVALID_ARGUMENT = 3,
	ZEEBE_DEADLINE_EXCEEDED = 4,
	ZEEBE_NOT_FOUND = 5,
	ZEEBE_ALREADY_EXISTS = 6,
	ZEEBE_PERMISSION_DENIED = 7,
	ZEEBE_RESOURCE_EXHAUSTED = 8,
	ZEEBE_FAILED_PRECONDITION = 9,
	ZEEBE_ABORTED = 10,
	ZEEBE_OUT_OF_RANGE = 11,
	ZEEBE_UNIMPLEMENTED = 12,
	ZEEBE_INTERNAL = 13,
	ZEEBE_UNAVAILABLE = 14,
	ZEEBE_DATA_LOSS = 15,
	ZEEBE_UNAUTHENTICATED = 16,
};

/* "OK", "UNAVAILABLE", ...; never NULL. */
const char *zeebe_code_name(int code);

struct zeebe_opts {
	const char *address;        /* host:port */
	bool insecure;              /* plaintext channel */
	const char *ca_file;        /* PEM roots; NULL/"" = system roots */
	const char *authority;      /* TLS name override; NULL/"" = from address */
	int64_t deadline_ms;        /* per call */
	int64_t keepalive_ms;       /* HTTP/2 ping interval, >= 30 s */
	size_t max_message_size;    /* send and receive limit */
	const char *user_agent;     /* "mqtt2zeebe/<version>" */
	struct oauth *oauth;        /* borrowed, may be NULL (no auth); must
				       outlive the client */
	const char *basic_auth;     /* "Basic <base64 user:password>" sent as
				       authorization when OAUTH is NULL (Camunda
				       8.8 basic auth); NULL/"" = none; copied */
};

/* Outcome of one call. Valid only during the callback. */
struct zeebe_result {
	int code;                   /* enum zeebe_code */
	const char *details;        /* gateway's status message, "" if none */
	uint64_t token_gen;         /* oauth generation the call carried (for
				       oauth_invalidate on UNAUTHENTICATED) */
};

/* Runs on the client's completion thread. Must not block or call
 * zeebe_free(); may call zeebe_publish(). */
typedef void (*zeebe_done_fn)(void *arg, const struct zeebe_result *res);

/* Process-wide gRPC core settings; call once at start, before any thread
 * (it may setenv). Turns off the client channel's backup poller unless
 * GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS is set: our completion
 * thread always polls, and the poller's timer woke an idle agent about
 * once a second. */
void zeebe_process_init(void);

/* Create the channel (connects lazily). ERR gets a reason on failure. */
int zeebe_new(const struct zeebe_opts *opts, struct zeebe **out, char *err, size_t errlen);

/* Start a PublishMessage call with an already serialized
 * PublishMessageRequest (copied). DONE(ARG, result) is called exactly once
 * on the completion thread — also when the call is cancelled by shutdown
 * (CANCELLED) — unless this returns non-zero: M2Z_ERR_AUTH when OAuth is
 * configured and no token is cached yet (nothing was sent; try again once
 * oauth has one), M2Z_ERR_CLOSED after shutdown, M2Z_ERR_NOMEM. The token is
 * read with oauth_header() when the call starts and sent as initial
 * metadata "authorization: Bearer <token>"; its generation comes back in
 * zeebe_result.token_gen. */
int zeebe_publish(struct zeebe *zb, const void *req, size_t len,
		  zeebe_done_fn done, void *arg);

/* Blocking Topology call for --check-connection and start-up logs. Writes a
 * one-line summary ("gateway 8.4.0, 3 broker(s), 3 partition(s), 3
 * leader(s), 3 healthy") or the error into SUMMARY. Returns the status code. */
int zeebe_topology(struct zeebe *zb, int64_t timeout_ms, char *summary, size_t len);

/* Stop accepting calls; wait up to GRACE_MS for in-flight calls to finish,
 * then cancel the rest (their callbacks get CANCELLED). Idempotent. */
void zeebe_shutdown(struct zeebe *zb, int64_t grace_ms);

/* Shutdown (grace 0) if needed, destroy the channel, join the thread. */
void zeebe_free(struct zeebe *zb);

#endif
