/* oauth.h - OAuth2 client-credentials token cache.
 *
 * A background thread fetches the token (https.c) at start, refreshes it
 * refresh_ahead_ms before expiry (a token that lives shorter than that is
 * used until it expires), and fetches anew when the gateway rejected it.
 * One fetch in flight at a time. Callers never block: they get the cached
 * token or M2Z_ERR_AGAIN.
 *
 * Polite to the token endpoint (struct oauth_pace): at most one fetch per
 * min_refresh_ms, whatever happens; one backoff (exponential with jitter,
 * 1 s doubling to 60 s) for every token-related failure — a failed fetch, a
 * token the gateway rejected, a token we cannot send — which only a call the
 * gateway accepted (oauth_gateway_ok) resets, not a successful fetch; an
 * HTTP Retry-After (seconds or HTTP date, capped at 10 min) is honoured.
 *
 * The token and the client secret are never logged; both are registered
 * with redact.c so a peer that echoes them is masked too. */
#ifndef M2Z_OAUTH_H
#define M2Z_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct oauth;

struct oauth_opts {
	const char *url;            /* https:// (or http:// with a warning) */
	const char *client_id;
	const char *client_secret;
	const char *audience;
	const char *scope;          /* "" or NULL = not sent */
	const char *ca_file;        /* "" or NULL = system trust store */
	int64_t timeout_ms;         /* whole request */
	int64_t refresh_ahead_ms;   /* >= 10 s */
	int64_t min_refresh_ms;     /* at most one fetch per this; 0 = 5 s */
	const char *user_agent;     /* "mqtt2zeebe/<version>" */
	/* Token cache on disk (token_cache.h): directory, NULL or "" = off.
	 * With skip_cache_read the cached token is not used (a fresh fetch
	 * proves the credentials: --check-connection) but a new one is stored. */
	const char *cache_dir;
	bool skip_cache_read;
	/* Where client_id and audience came from ("environment CAMUNDA_CLIENT_ID",
	 * "FILE:LINE ..."), for the explanation of a rejection; may be NULL. */
	const char *client_id_from;
	const char *audience_from;
};

/* Copies OPTS; starts the refresher thread (first fetch right away). */
int oauth_new(const struct oauth_opts *opts, struct oauth **out);
void oauth_free(struct oauth *oa);

/* Non-blocking. Writes "Bearer <token>" (NUL-terminated) into BUF and the
 * token's generation into *GEN (may be NULL). Returns 0, M2Z_ERR_AGAIN when
 * no valid token is cached (a fetch is under way or backing off), or
 * M2Z_ERR_TOO_BIG when LEN is too small. Safe from any thread (zeebe.c calls
 * it as each call starts, to send the token as per-call metadata). */
int oauth_header(struct oauth *oa, char *buf, size_t len, uint64_t *gen);

/* Longest "Bearer <token>" value we send: the gateway's (Java gRPC,
 * Netty) default limit for all request headers together is 8 KiB, of which
 * the other headers of a call take about 500 bytes and each header 32 bytes
 * of accounting. A longer token is refused when fetched (an ERROR naming this
 * limit, counted as a failure, backoff) instead of failing every call. */
#define OAUTH_MAX_HEADER 7168

/* The gateway rejected the token of generation GEN (UNAUTHENTICATED): drop
 * it and fetch anew, after the backoff (it counts as a failure). Ignored
 * when GEN is not the cached generation, so any number of reports for one
 * token cause one fetch. Safe from any thread. */
void oauth_invalidate(struct oauth *oa, uint64_t gen);

/* The gateway accepted a call: the token works; resets the backoff. Cheap,
 * call it for every OK. */
void oauth_gateway_ok(struct oauth *oa);

/* Block up to TIMEOUT_MS for a valid token (start-up and --check only).
 * Returns true when one is cached. */
bool oauth_wait(struct oauth *oa, int64_t timeout_ms);

/* Like oauth_wait, but stop early when the endpoint rejected the request
 * (HTTP 400 or 401: retrying will not help). Returns 0 with a token,
 * M2Z_ERR_AUTH when rejected (WHY explains: which client id and audience,
 * where each came from, the endpoint's error_description with anything
 * token-like redacted), M2Z_ERR_TIMEOUT otherwise (WHY has the last error). */
int oauth_wait_verdict(struct oauth *oa, int64_t timeout_ms, char *why, size_t whylen);

/* Counters for the stats line. */
struct oauth_stats {
	uint64_t fetches;           /* successful */
	uint64_t failures;          /* failed attempts */
	int64_t expires_at_ms;      /* wall clock, of the cached token; 0 if none,
	                             * INT64_MAX if it never expires */
};
void oauth_get_stats(struct oauth *oa, struct oauth_stats *st);

/* ---- pure parts, for unit tests ---------------------------------------- */

/* Pacing of token fetches; all times are monotonic ms, passed in. */
struct oauth_pace {
	int64_t min_interval_ms;    /* between two fetch starts */
	unsigned streak;            /* token-related failures since the gateway
	                             * last accepted a call */
	bool attempted;
	int64_t last_attempt;       /* start of the last fetch */
	int64_t not_before;         /* backoff or Retry-After */
};

#define OAUTH_BACKOFF_START_MS 1000
#define OAUTH_BACKOFF_CAP_MS 60000
#define OAUTH_RETRY_AFTER_CAP_MS 600000

void oauth_pace_init(struct oauth_pace *p, int64_t min_interval_ms);
/* Earliest time the next fetch may start. */
int64_t oauth_pace_earliest(const struct oauth_pace *p);
/* A fetch starts at NOW. */
void oauth_pace_attempt(struct oauth_pace *p, int64_t now);
/* A token-related failure at NOW: streak + 1, next fetch no earlier than
 * NOW + max(backoff, RETRY_AFTER_MS) (-1: none). JITTER in [0, 1) picks the
 * backoff in [ceiling/2, ceiling]. Returns the delay chosen. */
int64_t oauth_pace_failure(struct oauth_pace *p, int64_t now, int64_t retry_after_ms,
			   double jitter);
/* The gateway accepted a call. */
void oauth_pace_ok(struct oauth_pace *p);
/* Backoff ceiling for failure number STREAK (>= 1): 1 s doubling, 60 s cap. */
int64_t oauth_backoff_ceiling(unsigned streak);

/* An HTTP Retry-After value: delay-seconds or an HTTP date (IMF-fixdate,
 * RFC 850 or asctime), relative to NOW_WALL_MS. Returns ms (>= 0, capped at
 * OAUTH_RETRY_AFTER_CAP_MS) or -1 when absent or malformed. */
int64_t oauth_retry_after_ms(const char *value, int64_t now_wall_ms);

/* When to fetch the next token: LIFE_MS after STARTED it expires; refresh
 * AHEAD_MS early, or at expiry when the token lives shorter than that
 * (using it until then rather than refetching in a loop). */
int64_t oauth_refresh_at(int64_t started, int64_t life_ms, int64_t ahead_ms);

struct oauth_token {
	char *access_token;         /* malloc'ed */
	char *token_type;           /* malloc'ed, normalised: "bearer"/"" -> "Bearer" */
	int64_t expires_in_s;       /* -1 when absent: never expires */
};

/* Parse a token endpoint's JSON body. Accepts expires_in as number or
 * string; fails (M2Z_ERR_PARSE, ERR set) on missing/empty access_token or an
 * "error" member (its error_description is copied into ERR). */
int oauth_parse_token(const char *body, size_t len, struct oauth_token *out,
		      char *err, size_t errlen);
void oauth_token_clear(struct oauth_token *t);

/* Replace in S, in place, every run of 24 or more token characters
 * (letters, digits, - . _ ~ + / =) with "[redacted]" when it fits, so an
 * error text echoed from the endpoint cannot carry a token or secret. */
void oauth_redact(char *s);

/* Build the form body (application/x-www-form-urlencoded) into a malloc'ed
 * string; caller frees. */
char *oauth_form_body(const struct oauth_opts *opts);

#endif
