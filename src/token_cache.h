/* token_cache.h - an OAuth access token kept on disk across restarts.
 *
 * Camunda SaaS allows about one token request per second per source IP and
 * blocks the IP beyond that, while tokens live for hours; an agent that
 * restarts (crash loop, fleet reboot behind one NAT) must not ask again. The
 * official clients keep tokens on disk for the same reason.
 *
 * One file per key, DIR/oauth-token-<16 hex digits>.json, where the digits
 * are SHA-256 over (token URL, client id, audience, scope); the key is also
 * stored inside and compared on load, so a foreign or stale file is never
 * used. The file holds the token, its type and its wall-clock expiry - never
 * the client secret. Mode 0600, written to a temporary file, fsynced, renamed
 * over the old one and the directory fsynced.
 *
 * A missing, corrupt, foreign or unsafe (not ours, group/other access) file
 * is a miss: token_cache_load says why and the caller fetches a new token. */
#ifndef M2Z_TOKEN_CACHE_H
#define M2Z_TOKEN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_CACHE_NEVER INT64_MAX

struct token_cache_key {
	const char *url;
	const char *client_id;
	const char *audience;       /* NULL = "" */
	const char *scope;          /* NULL = "" */
};

struct token_cache_entry {
	char *token_type;           /* malloc'ed, e.g. "Bearer" */
	char *access_token;         /* malloc'ed; wiped by token_cache_entry_clear */
	int64_t expires_at_ms;      /* wall clock; TOKEN_CACHE_NEVER = no expiry */
};

/* DIR/oauth-token-<hash>.json into OUT. M2Z_ERR_TOO_BIG when OUTLEN is short. */
int token_cache_path(const char *dir, const struct token_cache_key *key, char *out, size_t outlen);

/* Read PATH. M2Z_OK with *OUT filled (caller clears it) when the file is
 * ours, intact, for KEY, and its token is still valid at NOW_MS + MARGIN_MS.
 * Otherwise: M2Z_ERR_NOT_FOUND (no file), M2Z_ERR_TIMEOUT (expired or within
 * the margin), M2Z_ERR_CORRUPT (unreadable or not our format), M2Z_ERR_INVAL
 * (another key's file, or unsafe owner/mode); WHY says which. */
int token_cache_load(const char *path, const struct token_cache_key *key, int64_t now_ms,
		     int64_t margin_ms, struct token_cache_entry *out, char *why, size_t whylen);

/* Write atomically (tmp + fsync + rename + directory fsync), mode 0600; the
 * directory is created 0700 when missing. WHY on failure (M2Z_ERR_IO). */
int token_cache_store(const char *path, const struct token_cache_key *key,
		      const struct token_cache_entry *e, char *why, size_t whylen);

/* Remove PATH (the gateway rejected its token). Missing is fine. */
int token_cache_drop(const char *path);

void token_cache_entry_clear(struct token_cache_entry *e);

#endif
