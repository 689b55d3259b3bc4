/* oauth.c - OAuth2 client-credentials token cache with a background refresher.
 *
 * One thread owns every fetch, so at most one request is ever in flight;
 * callers only read the cached "Bearer <token>" under a mutex and never
 * wait on the network. A new token is parsed into temporaries and swapped
 * in whole; the token and the client secret never reach a log line. */
#define LOG_MODULE "oauth"
#include "log.h"
#include "oauth.h"
#include "err.h"
#include "buf.h"
#include "https.h"
#include "redact.h"
#include "token_cache.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MIN_REFRESH_MS 5000
#define NEVER INT64_MAX

struct oauth {
	/* immutable after oauth_new */
	char *url;
	char *ca_file;
	char *user_agent;
	char *form;                /* owned; holds the secret, wiped on free */
	char *secret;              /* owned copy, registered with redact; wiped */
	int64_t timeout_ms;
	int64_t refresh_ahead_ms;
	char where[300];           /* "host:port" of the endpoint, for messages */
	struct https_client *http; /* used by the refresher thread only */
	pthread_t thread;
	bool thread_started;

	pthread_mutex_t mu;
	pthread_cond_t cond;       /* CLOCK_MONOTONIC; token swapped, stop, invalidate */
	/* under mu */
	char *header;              /* "Bearer <token>", NULL when none; wiped on free */
	uint64_t gen;              /* of HEADER; bumps on every new token */
	int64_t expires_at;        /* monotonic ms, NEVER when no expires_in */
	int64_t refresh_at;        /* monotonic ms */
	char *token;               /* the bare token of HEADER, registered with redact */
	bool fetch_now;            /* the cached token was rejected */
	bool stop;
	bool warned_short, warned_big;
	struct oauth_pace pace;
	uint64_t fetches, failures;

	/* token cache on disk; CACHE_PATH NULL = off. Strings immutable. */
	char *cache_path;
	char *client_id, *audience, *scope; /* with url: the cache key; "" when unset */
	char *client_id_from, *audience_from;
	/* under mu: the endpoint said no (400/401); explained = last logged text */
	bool rejected;
	char *explained;
	char last_err[512];
};

/* ======================================================================== */
/* Pure parts                                                               */
/* ======================================================================== */

/* Copy untrusted text for a log line: bounded, token-like parts masked. */
static void copy_printable(char *dst, size_t n, const char *src)
{
	redact(dst, n < 201 ? n : 201, src);
}

static int oauth_error_member(const cJSON *root, char *err, size_t errlen)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "error_description");
	char code[80] = "", desc[210] = "";

	copy_printable(code, sizeof(code), cJSON_IsString(e) ? e->valuestring : "(non-string)");
	if (cJSON_IsString(d))
		copy_printable(desc, sizeof(desc), d->valuestring);
	snprintf(err, errlen, "token endpoint error: %s%s%s", code, *desc ? ": " : "", desc);
	return M2Z_ERR_PARSE;
}

/* expires_in as number or decimal string; -1 when absent or 0 (as the Go
 * client: no expiry). */
static int parse_expires_in(const cJSON *v, int64_t *out)
{
	double d;

	if (!v || cJSON_IsNull(v)) {
		*out = -1;
		return 0;
	}
	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
	} else if (cJSON_IsString(v) && v->valuestring[0]) {
		char *end;
		errno = 0;
		long long ll = strtoll(v->valuestring, &end, 10);
		if (errno || *end || !isdigit((unsigned char)v->valuestring[0]))
			return M2Z_ERR_PARSE;
		d = (double)ll;
	} else {
		return M2Z_ERR_PARSE;
	}
	if (!isfinite(d) || d < 0 || d > 100.0 * 365 * 86400)
		return M2Z_ERR_PARSE;
	*out = d >= 1 ? (int64_t)d : -1;
	return 0;
}

/* The token goes into a header: refuse anything but visible ASCII. */
static bool header_safe(const char *s)
{
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

static int token_type_of(const cJSON *tt, char **out)
{
	const char *s = "";

	if (tt && !cJSON_IsNull(tt)) {
		if (!cJSON_IsString(tt))
			return M2Z_ERR_PARSE;
		s = tt->valuestring;
	}
	if (!*s || strcasecmp(s, "bearer") == 0)
		s = "Bearer";
	if (!header_safe(s))
		return M2Z_ERR_PARSE;
	*out = strdup(s);
	return *out ? 0 : M2Z_ERR_NOMEM;
}

static int parse_root(const cJSON *root, struct oauth_token *t, char *err, size_t errlen)
{
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "access_token");

	if (cJSON_GetObjectItemCaseSensitive(root, "error"))
		return oauth_error_member(root, err, errlen);
	if (!cJSON_IsString(at)) {
		snprintf(err, errlen, "no access_token in the response");
		return M2Z_ERR_PARSE;
	}
	if (!at->valuestring[0]) {
		snprintf(err, errlen, "empty access_token in the response");
		return M2Z_ERR_PARSE;
	}
	if (!header_safe(at->valuestring)) {
		snprintf(err, errlen, "access_token has characters not allowed in a header");
		return M2Z_ERR_PARSE;
	}
	if (parse_expires_in(cJSON_GetObjectItemCaseSensitive(root, "expires_in"),
			     &t->expires_in_s)) {
		snprintf(err, errlen, "bad expires_in in the response");
		return M2Z_ERR_PARSE;
	}
	if (token_type_of(cJSON_GetObjectItemCaseSensitive(root, "token_type"), &t->token_type)) {
		snprintf(err, errlen, "bad token_type in the response");
		return M2Z_ERR_PARSE;
	}
	t->access_token = strdup(at->valuestring);
	if (!t->access_token) {
		snprintf(err, errlen, "out of memory");
		return M2Z_ERR_NOMEM;
	}
	return 0;
}

int oauth_parse_token(const char *body, size_t len, struct oauth_token *out,
		      char *err, size_t errlen)
{
	struct oauth_token t = { NULL, NULL, -1 };
	cJSON *root = cJSON_ParseWithLength(body, len);
	int rc;

	if (!root || !cJSON_IsObject(root)) {
		snprintf(err, errlen, "response is not a JSON object");
		cJSON_Delete(root);
		return M2Z_ERR_PARSE;
	}
	rc = parse_root(root, &t, err, errlen);
	cJSON_Delete(root);   /* NB: cJSON frees without wiping; token copies are ours */
	if (rc) {
		oauth_token_clear(&t);
		return rc;
	}
	*out = t;
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void oauth_token_clear(struct oauth_token *t)
{
	if (!t)
		return;
	free_secret(t->access_token);
	free(t->token_type);
	t->access_token = NULL;
	t->token_type = NULL;
	t->expires_in_s = -1;
}

/* application/x-www-form-urlencoded: unreserved kept, space '+', rest %XX. */
static int form_put(struct buf *b, const char *key, const char *val)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	if (b->len)
		rc |= buf_putc(b, '&');
	rc |= buf_puts(b, key);
	rc |= buf_putc(b, '=');
	for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			rc |= buf_putc(b, (char)*p);
		} else if (*p == ' ') {
			rc |= buf_putc(b, '+');
		} else {
			char esc[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			rc |= buf_append(b, esc, 3);
		}
	}
	return rc;
}

char *oauth_form_body(const struct oauth_opts *o)
{
	struct buf b = BUF_INIT;
	int rc = 0;

	rc |= form_put(&b, "grant_type", "client_credentials");
	rc |= form_put(&b, "client_id", o->client_id ? o->client_id : "");
	rc |= form_put(&b, "client_secret", o->client_secret ? o->client_secret : "");
	if (o->audience && *o->audience)
		rc |= form_put(&b, "audience", o->audience);
	if (o->scope && *o->scope)
		rc |= form_put(&b, "scope", o->scope);
	if (rc) {
		if (b.p)
			explicit_bzero(b.p, b.cap);
		buf_free(&b);
		return NULL;
	}
	return b.p;
}

static bool token_char(char ch)
{
	return isalnum((unsigned char)ch) || strchr("-._~+/=", ch) != NULL;
}

void oauth_redact(char *s)
{
	static const char mark[] = "[redacted]";
	size_t i = 0, len = strlen(s);
	char *tmp = malloc(len + 1);

	/* The shared rules first (Bearer, JWTs, the registered secrets), then
	 * any long token-like run: an auth server's text has no business
	 * holding one. */
	if (tmp) {
		redact(tmp, len + 1, s);
		memcpy(s, tmp, strlen(tmp) + 1);
		free(tmp);
	}

	while (s[i]) {
		size_t n = 0;
		while (s[i + n] && token_char(s[i + n]))
			n++;
		if (n >= 24) {
			memcpy(s + i, mark, sizeof(mark) - 1);
			memmove(s + i + sizeof(mark) - 1, s + i + n, strlen(s + i + n) + 1);
			i += sizeof(mark) - 1;
		} else {
			i += n ? n : 1;
		}
	}
}

/* What a 400/401 from the endpoint means for this configuration. */
static void explain_rejection(const struct oauth *oa, int status, const char *err, char *out, size_t n)
{
	char said[512];

	snprintf(said, sizeof(said), "%s", err);
	oauth_redact(said);
	snprintf(out, n, "the token endpoint %s rejected client id '%s' (from %s) for audience '%s' (from %s): "
		 "%s. %s", oa->url, oa->client_id, oa->client_id_from ? oa->client_id_from : "the configuration",
		 oa->audience, oa->audience_from ? oa->audience_from : "the configuration", said,
		 status == 401 ? "Check the client id and secret (a console credentials file holds both)."
			       : "Check the audience and scope (and that the client is allowed them).");
}

/* ---- pacing ------------------------------------------------------------- */

void oauth_pace_init(struct oauth_pace *p, int64_t min_interval_ms)
{
	memset(p, 0, sizeof(*p));
	p->min_interval_ms = min_interval_ms;
}

int64_t oauth_pace_earliest(const struct oauth_pace *p)
{
	int64_t t = p->not_before;

	if (p->attempted && p->last_attempt + p->min_interval_ms > t)
		t = p->last_attempt + p->min_interval_ms;
	return t;
}

void oauth_pace_attempt(struct oauth_pace *p, int64_t now)
{
	p->attempted = true;
	p->last_attempt = now;
}

int64_t oauth_backoff_ceiling(unsigned streak)
{
	return backoff_cap_ms(OAUTH_BACKOFF_START_MS, OAUTH_BACKOFF_CAP_MS, streak);
}

int64_t oauth_pace_failure(struct oauth_pace *p, int64_t now, int64_t retry_after_ms,
			   double jitter)
{
	int64_t ceil, delay;

	if (p->streak < 1000)
		p->streak++;
	ceil = oauth_backoff_ceiling(p->streak);
	if (jitter < 0 || jitter >= 1)
		jitter = 0;
	/* Half fixed, half random: never a near-zero draw, still spread. */
	delay = ceil / 2 + (int64_t)(jitter * (double)(ceil / 2));
	if (retry_after_ms > delay)
		delay = retry_after_ms;
	if (now + delay > p->not_before)
		p->not_before = now + delay;
	return delay;
}

void oauth_pace_ok(struct oauth_pace *p)
{
	p->streak = 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, in 64 bits: timegm()
 * overflows a 32-bit time_t (armhf) for dates after 2038. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

static int64_t parse_http_date(const char *v)
{
	static const char *const fmts[] = {
		"%a, %d %b %Y %H:%M:%S GMT",   /* IMF-fixdate */
		"%A, %d-%b-%y %H:%M:%S GMT",   /* RFC 850 */
		"%a %b %e %H:%M:%S %Y",        /* asctime */
	};

	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		struct tm tm;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(v, fmts[i], &tm);
		if (end && *end == '\0')
			return ((days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 24 +
				 tm.tm_hour) * 3600 + tm.tm_min * 60 + tm.tm_sec) * 1000;
	}
	return -1;
}

int64_t oauth_retry_after_ms(const char *v, int64_t now_wall_ms)
{
	int64_t ms;

	if (!v || !*v)
		return -1;
	if (isdigit((unsigned char)v[0])) {
		int64_t sec = 0;
		for (const char *p = v; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			if (sec < OAUTH_RETRY_AFTER_CAP_MS)
				sec = sec * 10 + (*p - '0');
		}
		ms = sec * 1000;
	} else {
		int64_t at = parse_http_date(v);
		if (at < 0)
			return -1;
		ms = at > now_wall_ms ? at - now_wall_ms : 0;
	}
	return ms < OAUTH_RETRY_AFTER_CAP_MS ? ms : OAUTH_RETRY_AFTER_CAP_MS;
}

int64_t oauth_refresh_at(int64_t started, int64_t life_ms, int64_t ahead_ms)
{
	if (life_ms > ahead_ms)
		return started + life_ms - ahead_ms;
	return started + life_ms;
}

/* ======================================================================== */
/* One fetch (refresher thread, no lock held)                               */
/* ======================================================================== */

/* Judge a response that arrived: 2xx + token, or the reason in ERR. */
static int judge_response(const struct https_response *r, struct oauth_token *tok,
			  char *err, size_t errlen)
{
	char why[300];

	if (r->status >= 200 && r->status < 300)
		return oauth_parse_token(r->body, r->body_len, tok, err, errlen);
	/* Extract the OAuth error/error_description when the body has one. */
	if (oauth_parse_token(r->body, r->body_len, tok, why, sizeof(why)) == 0) {
		oauth_token_clear(tok);
		why[0] = '\0';
	} else if (strncmp(why, "token endpoint error", 20) != 0) {
		why[0] = '\0';
	}
	snprintf(err, errlen, "HTTP %d%s%s", r->status, *why ? ", " : "", why);
	return M2Z_ERR_HTTP;
}

/* STATUS: the HTTP status (0 when none came); RETRY_AFTER_MS: -1, or the
 * server's Retry-After when it answered. */
static int fetch_token(struct oauth *oa, struct oauth_token *tok, int *status,
		       int64_t *retry_after_ms, char *err, size_t errlen)
{
	struct https_request req = {
		.url = oa->url,
		.content_type = "application/x-www-form-urlencoded",
		.accept = "application/json",
		.user_agent = oa->user_agent,
		.body = oa->form,
		.body_len = strlen(oa->form),
		.timeout_ms = oa->timeout_ms,
	};
	struct https_response resp = { 0 };
	int rc;

	*retry_after_ms = -1;
	rc = https_post(oa->http, &req, &resp, err, errlen);
	*status = rc == 0 ? resp.status : 0;
	if (rc == 0) {
		rc = judge_response(&resp, tok, err, errlen);
		if (rc != 0)
			*retry_after_ms = oauth_retry_after_ms(resp.retry_after, now_ms());
	}
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	https_response_clear(&resp);
	return rc;
}

/* ======================================================================== */
/* Refresher thread                                                         */
/* ======================================================================== */

static bool token_valid(const struct oauth *oa, int64_t now)
{
	return oa->header && now < oa->expires_at;
}

/* A token we could not send in a header: refused like a failed fetch. */
static int check_size(struct oauth *oa, const struct oauth_token *tok, char *err, size_t errlen)
{
	size_t n = strlen(tok->token_type) + 1 + strlen(tok->access_token);

	if (n <= OAUTH_MAX_HEADER)
		return 0;
	snprintf(err, errlen, "access token of %zu bytes: the authorization header would be %zu "
		 "bytes, over the limit of %d (the gateway's 8 KiB header budget)",
		 strlen(tok->access_token), n, OAUTH_MAX_HEADER);
	if (!oa->warned_big)
		log_err("token from %s is unusable: %s; treating it as a failed fetch",
			oa->url, err);
	oa->warned_big = true;
	return M2Z_ERR_TOO_BIG;
}

static void forget_token(struct oauth *oa)
{
	if (oa->token) {
		redact_remove(oa->token);
		free_secret(oa->token);
		oa->token = NULL;
	}
	free_secret(oa->header);
	oa->header = NULL;
}

/* Swap a fetched token in (mu held). STARTED: monotonic time of the request,
 * so expiry errs on the early side. */
static int install_token(struct oauth *oa, struct oauth_token *tok, int64_t started)
{
	struct buf h = BUF_INIT;
	char *bare = strdup(tok->access_token);

	if (!bare || buf_printf(&h, "%s %s", tok->token_type, tok->access_token)) {
		free(bare);
		buf_free(&h);
		return M2Z_ERR_NOMEM;
	}
	forget_token(oa);
	redact_add(bare);
	oa->token = bare;
	oa->header = h.p;
	oa->gen++;
	if (tok->expires_in_s < 0) {
		oa->expires_at = oa->refresh_at = NEVER;
	} else {
		int64_t life = tok->expires_in_s * 1000;
		oa->expires_at = started + life;
		oa->refresh_at = oauth_refresh_at(started, life, oa->refresh_ahead_ms);
		if (life <= oa->refresh_ahead_ms && !oa->warned_short)
			log_warn("tokens from %s live %lld s, less than refresh_ahead (%lld s): each is "
				 "used until it expires, then a new one is fetched (at most one per %lld ms)",
				 oa->url, (long long)tok->expires_in_s,
				 (long long)(oa->refresh_ahead_ms / 1000),
				 (long long)oa->pace.min_interval_ms);
		oa->warned_short = oa->warned_short || life <= oa->refresh_ahead_ms;
	}
	oa->fetch_now = false;
	oa->fetches++;
	return 0;
}

/* A fetch failed: one line, in our words (mu held). */
static void fetch_failed(struct oauth *oa, int rc, const char *err, int64_t retry_after_ms)
{
	double jitter = (double)rand_below(1000) / 1000.0;
	int64_t now = mono_ms(), wait;

	/* The next attempt is the later of the backoff and min_refresh_interval
	 * since this one started: say that one, not the backoff alone. */
	oauth_pace_failure(&oa->pace, now, retry_after_ms, jitter);
	wait = oauth_pace_earliest(&oa->pace) - now;
	wait = wait > 0 ? wait : 0;
	oa->failures++;
	if (rc == M2Z_ERR_NET || rc == M2Z_ERR_TIMEOUT)
		log_warn("cannot reach %s: %s; attempt %u, retry in %lld ms", oa->where,
			 *err ? err : m2z_strerror(rc), oa->pace.streak, (long long)wait);
	else if (oa->rejected) /* explained once at ERROR above */
		log_debug("token request rejected again; attempt %u, retry in %lld ms",
			  oa->pace.streak, (long long)wait);
	else
		log_warn("token fetch from %s failed: %s (%s); attempt %u, retry in %lld ms%s",
			 oa->url, *err ? err : "unknown", m2z_strerror(rc), oa->pace.streak,
			 (long long)wait, retry_after_ms >= 0 ? " (as Retry-After asks)" : "");
}

static struct token_cache_key cache_key(const struct oauth *oa)
{
	struct token_cache_key k = { oa->url, oa->client_id, oa->audience, oa->scope };
	return k;
}

/* Keep the new token on disk for the next start (refresher thread, no lock). */
static void cache_store(struct oauth *oa, const struct oauth_token *tok, int64_t wall_started)
{
	struct token_cache_entry e = {
		.token_type = tok->token_type, .access_token = tok->access_token,
		.expires_at_ms = tok->expires_in_s < 0 ? TOKEN_CACHE_NEVER
			       : wall_started + tok->expires_in_s * 1000,
	};
	struct token_cache_key key = cache_key(oa);
	char why[600];

	if (oa->cache_path && token_cache_store(oa->cache_path, &key, &e, why, sizeof(why)))
		log_warn("token cache not written: %s", why);
}

/* A token from the cache file, installed as if just fetched (before the
 * refresher starts, so no lock). */
static void cache_load(struct oauth *oa)
{
	struct token_cache_entry e;
	struct oauth_token tok = { NULL, NULL, -1 };
	struct token_cache_key key = cache_key(oa);
	char why[600];
	int64_t wall = now_ms(), mono = mono_ms();
	int rc = token_cache_load(oa->cache_path, &key, wall, oa->refresh_ahead_ms, &e, why, sizeof(why));

	if (rc == M2Z_ERR_NOT_FOUND || rc == M2Z_ERR_TIMEOUT) {
		log_debug("no usable cached token: %s", why);
		return;
	}
	if (rc) {
		log_warn("ignoring the token cache: %s", why);
		return;
	}
	tok.access_token = e.access_token;
	tok.token_type = e.token_type;
	tok.expires_in_s = e.expires_at_ms == TOKEN_CACHE_NEVER ? -1 : (e.expires_at_ms - wall) / 1000;
	if (install_token(oa, &tok, mono) == 0)
		log_info("token from the cache %s: generation %llu, expires in %lld s", oa->cache_path,
			 (unsigned long long)oa->gen, (long long)tok.expires_in_s);
	oa->fetches--; /* not a request to the endpoint */
	token_cache_entry_clear(&e);
}

/* Fetch once and record the outcome. Called with mu held; drops it around
 * the network call. */
static void fetch_and_apply(struct oauth *oa)
{
	struct oauth_token tok = { NULL, NULL, -1 };
	char err[512] = "", why[1400];
	int64_t started = mono_ms(), wall = now_ms(), retry_after = -1;
	bool drop = oa->fetch_now && oa->cache_path;
	int rc, status = 0;

	oauth_pace_attempt(&oa->pace, started);
	pthread_mutex_unlock(&oa->mu);
	if (drop) /* the gateway rejected the cached token: never reuse it */
		token_cache_drop(oa->cache_path);
	rc = fetch_token(oa, &tok, &status, &retry_after, err, sizeof(err));
	if (rc == 0)
		rc = check_size(oa, &tok, err, sizeof(err));
	if (rc == 0)
		cache_store(oa, &tok, wall);
	pthread_mutex_lock(&oa->mu);
	oauth_redact(err); /* an endpoint may echo what it was sent */
	snprintf(oa->last_err, sizeof(oa->last_err), "%s", rc == 0 ? "" : err);
	oa->rejected = rc != 0 && (status == 400 || status == 401);
	if (oa->rejected) {
		explain_rejection(oa, status, err, why, sizeof(why));
		if (!oa->explained || strcmp(oa->explained, why) != 0) { /* once per change */
			log_err("%s", why);
			free(oa->explained);
			oa->explained = strdup(why);
		}
		pthread_cond_broadcast(&oa->cond);
	}
	if (rc == 0 && (rc = install_token(oa, &tok, started)) == 0) {
		free(oa->explained);
		oa->explained = NULL;
		if (tok.expires_in_s < 0)
			log_info("token from %s: generation %llu, no expiry", oa->url,
				 (unsigned long long)oa->gen);
		else
			log_info("token from %s: generation %llu, expires in %lld s", oa->url,
				 (unsigned long long)oa->gen, (long long)tok.expires_in_s);
		pthread_cond_broadcast(&oa->cond);
	} else {
		fetch_failed(oa, rc, err, retry_after);
	}
	oauth_token_clear(&tok);
}

/* When the next fetch is due (mu held). */
static int64_t next_due(const struct oauth *oa)
{
	int64_t due = (!oa->header || oa->fetch_now) ? 0 : oa->refresh_at;
	int64_t earliest = oauth_pace_earliest(&oa->pace);

	return due > earliest ? due : earliest;
}

static void wait_until(struct oauth *oa, int64_t due)
{
	struct timespec ts;

	if (due == NEVER) {
		pthread_cond_wait(&oa->cond, &oa->mu);
		return;
	}
	ts = mono_deadline(due - mono_ms());
	pthread_cond_timedwait(&oa->cond, &oa->mu, &ts);
}

static void *refresher(void *arg)
{
	struct oauth *oa = arg;

	thread_name("m2z-token");
	pthread_mutex_lock(&oa->mu);
	while (!oa->stop) {
		int64_t due = next_due(oa);

		if (mono_ms() >= due)
			fetch_and_apply(oa);
		else
			wait_until(oa, due);
	}
	pthread_mutex_unlock(&oa->mu);
	return NULL;
}

/* ======================================================================== */
/* Public API                                                               */
/* ======================================================================== */

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s || !*s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : M2Z_ERR_NOMEM;
}

/* Like dup_opt, but "" for NULL: never NULL on success. */
static int dup_str(const char *s, char **out)
{
	*out = strdup(s ? s : "");
	return *out ? 0 : M2Z_ERR_NOMEM;
}

static int check_opts(const struct oauth_opts *o, struct https_url *u)
{
	if (!o->url || https_url_parse(o->url, u)) {
		log_err("token URL is not a valid http(s):// URL (user info is not allowed)");
		return M2Z_ERR_CONFIG;
	}
	if (!o->client_id || !*o->client_id || !o->client_secret || !*o->client_secret) {
		log_err("OAuth client id and client secret are required");
		return M2Z_ERR_CONFIG;
	}
	if (!u->tls)
		log_warn("token URL %s is plain http: the client secret travels in clear", o->url);
	return 0;
}

static int init_sync(struct oauth *oa)
{
	if (cond_init_monotonic(&oa->cond))
		return M2Z_ERR_NOMEM;
	if (pthread_mutex_init(&oa->mu, NULL)) {
		pthread_cond_destroy(&oa->cond);
		return M2Z_ERR_NOMEM;
	}
	return 0;
}

/* Everything but the thread; on failure the caller frees with oauth_free. */
static int setup(struct oauth *oa, const struct oauth_opts *o, const struct https_url *u)
{
	char err[512] = "";
	int rc = 0;

	rc |= dup_opt(o->url, &oa->url);
	rc |= dup_opt(o->ca_file, &oa->ca_file);
	rc |= dup_opt(o->user_agent, &oa->user_agent);
	rc |= dup_str(o->client_id, &oa->client_id);
	rc |= dup_str(o->audience, &oa->audience);
	rc |= dup_str(o->scope, &oa->scope);
	rc |= dup_opt(o->client_id_from, &oa->client_id_from);
	rc |= dup_opt(o->audience_from, &oa->audience_from);
	oa->form = oauth_form_body(o);
	if (rc || !oa->form)
		return M2Z_ERR_NOMEM;
	oa->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	oa->refresh_ahead_ms = o->refresh_ahead_ms > 0 ? o->refresh_ahead_ms : 0;
	if (o->cache_dir && *o->cache_dir) {
		char path[4096];
		struct token_cache_key key = cache_key(oa);
		if (token_cache_path(o->cache_dir, &key, path, sizeof(path)) || !(oa->cache_path = strdup(path)))
			return M2Z_ERR_NOMEM;
		if (!o->skip_cache_read)
			cache_load(oa);
	}
	oauth_pace_init(&oa->pace, o->min_refresh_ms > 0 ? o->min_refresh_ms : DEFAULT_MIN_REFRESH_MS);
	if (strchr(u->host, ':'))
		snprintf(oa->where, sizeof(oa->where), "[%s]:%u", u->host, (unsigned)u->port);
	else
		snprintf(oa->where, sizeof(oa->where), "%s:%u", u->host, (unsigned)u->port);
	oa->secret = strdup(o->client_secret);
	if (!oa->secret)
		return M2Z_ERR_NOMEM;
	redact_add(oa->secret);
	rc = https_client_new(oa->ca_file, &oa->http);
	if (rc)
		return rc;
	if (u->tls && https_client_check_tls(oa->http, err, sizeof(err))) {
		log_err("token endpoint trust store: %s", err);
		return M2Z_ERR_CONFIG;
	}
	return 0;
}

int oauth_new(const struct oauth_opts *opts, struct oauth **out)
{
	struct https_url u;
	struct oauth *oa;
	int rc;

	*out = NULL;
	rc = check_opts(opts, &u);
	if (rc)
		return rc;
	oa = calloc(1, sizeof(*oa));
	if (!oa)
		return M2Z_ERR_NOMEM;
	if (init_sync(oa)) {
		free(oa);
		return M2Z_ERR_NOMEM;
	}
	rc = setup(oa, opts, &u);
	if (rc == 0 && pthread_create(&oa->thread, NULL, refresher, oa))
		rc = M2Z_ERR_NOMEM;
	if (rc) {
		oauth_free(oa);
		return rc;
	}
	oa->thread_started = true;
	log_info("token endpoint %s (client id %s)", oa->url, opts->client_id);
	*out = oa;
	return 0;
}

void oauth_free(struct oauth *oa)
{
	if (!oa)
		return;
	if (oa->thread_started) {
		pthread_mutex_lock(&oa->mu);
		oa->stop = true;
		pthread_cond_broadcast(&oa->cond);
		pthread_mutex_unlock(&oa->mu);
		/* Abort a fetch in flight rather than wait out its timeout. */
		https_client_cancel(oa->http);
		pthread_join(oa->thread, NULL);
	}
	https_client_free(oa->http);
	if (oa->secret) {
		redact_remove(oa->secret);
		free_secret(oa->secret);
	}
	forget_token(oa);
	free_secret(oa->form);
	free(oa->url);
	free(oa->ca_file);
	free(oa->user_agent);
	free(oa->cache_path);
	free(oa->client_id);
	free(oa->audience);
	free(oa->scope);
	free(oa->client_id_from);
	free(oa->audience_from);
	free(oa->explained);
	pthread_cond_destroy(&oa->cond);
	pthread_mutex_destroy(&oa->mu);
	free(oa);
}

int oauth_header(struct oauth *oa, char *buf, size_t len, uint64_t *gen)
{
	int rc = M2Z_ERR_AGAIN;

	pthread_mutex_lock(&oa->mu);
	if (token_valid(oa, mono_ms())) {
		size_t n = strlen(oa->header);
		if (n + 1 > len) {
			rc = M2Z_ERR_TOO_BIG;
		} else {
			memcpy(buf, oa->header, n + 1);
			if (gen)
				*gen = oa->gen;
			rc = 0;
		}
	}
	pthread_mutex_unlock(&oa->mu);
	return rc;
}

void oauth_invalidate(struct oauth *oa, uint64_t gen)
{
	pthread_mutex_lock(&oa->mu);
	/* Only the cached generation counts: an older one was already replaced,
	 * and a second report for the dropped one must not fetch twice. */
	if (oa->header && gen == oa->gen) {
		double jitter = (double)rand_below(1000) / 1000.0;
		int64_t wait;

		forget_token(oa);
		oa->fetch_now = true;
		oa->failures++;
		oauth_pace_failure(&oa->pace, mono_ms(), -1, jitter);
		wait = oauth_pace_earliest(&oa->pace) - mono_ms();
		log_info("token generation %llu rejected by the gateway; next fetch in %lld ms "
			 "(token failure %u in a row)", (unsigned long long)gen,
			 (long long)(wait > 0 ? wait : 0), oa->pace.streak);
		pthread_cond_broadcast(&oa->cond);
	}
	pthread_mutex_unlock(&oa->mu);
}

void oauth_gateway_ok(struct oauth *oa)
{
	pthread_mutex_lock(&oa->mu);
	oauth_pace_ok(&oa->pace);
	pthread_mutex_unlock(&oa->mu);
}

bool oauth_wait(struct oauth *oa, int64_t timeout_ms)
{
	int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	bool ok;

	pthread_mutex_lock(&oa->mu);
	while (!(ok = token_valid(oa, mono_ms())) && !oa->stop && mono_ms() < deadline)
		wait_until(oa, deadline);
	pthread_mutex_unlock(&oa->mu);
	return ok;
}

int oauth_wait_verdict(struct oauth *oa, int64_t timeout_ms, char *why, size_t whylen)
{
	int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int rc;

	pthread_mutex_lock(&oa->mu);
	while (!token_valid(oa, mono_ms()) && !oa->rejected && !oa->stop && mono_ms() < deadline)
		wait_until(oa, deadline);
	if (token_valid(oa, mono_ms())) {
		rc = 0;
		snprintf(why, whylen, "ok");
	} else if (oa->rejected && oa->explained) {
		rc = M2Z_ERR_AUTH;
		snprintf(why, whylen, "%s", oa->explained);
	} else {
		rc = M2Z_ERR_TIMEOUT;
		snprintf(why, whylen, "no token within %lld ms%s%s", (long long)timeout_ms,
			 oa->last_err[0] ? "; last error: " : "", oa->last_err);
		oauth_redact(why);
	}
	pthread_mutex_unlock(&oa->mu);
	return rc;
}

void oauth_get_stats(struct oauth *oa, struct oauth_stats *st)
{
	pthread_mutex_lock(&oa->mu);
	st->fetches = oa->fetches;
	st->failures = oa->failures;
	if (!oa->header)
		st->expires_at_ms = 0;
	else if (oa->expires_at == NEVER)
		st->expires_at_ms = INT64_MAX;
	else
		st->expires_at_ms = now_ms() + (oa->expires_at - mono_ms());
	pthread_mutex_unlock(&oa->mu);
}
