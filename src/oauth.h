/* oauth.h - OAuth2 client-credentials token cache.
 *
 * A background thread fetches the token (https.c) at start, refreshes it
 * refresh_ahead_ms before expiry, fetches anew when a caller reports the
 * token rejected, and backs off (exponential, full jitter, capped at 60 s)
 * while the endpoint fails. One fetch in flight at a time. Callers never
 * block: they get the cached token or M2Z_ERR_AGAIN.
 *
 * The token and the client secret are never logged. */
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
 * M2Z_ERR_TOO_BIG when LEN is too small. Safe from any thread, including
 * gRPC's credential plugin. */
int oauth_header(struct oauth *oa, char *buf, size_t len, uint64_t *gen);

/* The gateway rejected the token of generation GEN (UNAUTHENTICATED): drop
 * it and fetch anew. Ignored when a newer token is already cached. */
void oauth_invalidate(struct oauth *oa, uint64_t gen);

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
