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

/* Build the form body (application/x-www-form-urlencoded) into a malloc'ed
 * string; caller frees. */
char *oauth_form_body(const struct oauth_opts *opts);

#endif
