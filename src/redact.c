/* redact.c - mask token-like text from peers before logging; see redact.h. */
#include "redact.h"
#include "err.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIN_SECRET 6

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[REDACT_MAX_SECRETS];   /* under lock */

int redact_add(const char *s)
{
	int rc = M2Z_ERR_FULL;

	if (!s || strlen(s) < MIN_SECRET)
		return M2Z_OK;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < REDACT_MAX_SECRETS; i++)
		if (!secrets[i]) {
			secrets[i] = strdup(s);
			rc = secrets[i] ? M2Z_OK : M2Z_ERR_NOMEM;
			break;
		}
	pthread_mutex_unlock(&lock);
	return rc;
}

void redact_remove(const char *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < REDACT_MAX_SECRETS; i++)
		if (secrets[i] && strcmp(secrets[i], s) == 0) {
			explicit_bzero(secrets[i], strlen(secrets[i]));
			free(secrets[i]);
			secrets[i] = NULL;
			break;
		}
	pthread_mutex_unlock(&lock);
}

static bool b64url(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '=';
}

/* Length of a credential word: what a header value or a token can hold,
 * up to a blank, a quote or a closing bracket. */
static size_t word_len(const char *s)
{
	size_t n = 0;

	while (s[n] && (unsigned char)s[n] > 0x20 && (unsigned char)s[n] < 0x7f &&
	       !strchr("\"'`<>()[]{},;", s[n]))
		n++;
	return n;
}

/* "eyJ<b64url>.<b64url>.<b64url>" (a JWT: its header is base64url JSON,
 * which starts with eyJ); returns its length or 0. */
static size_t jwt_len(const char *s)
{
	size_t n = 0;
	int dots = 0;

	if (strncmp(s, "eyJ", 3) != 0)
		return 0;
	while (b64url(s[n]) || (s[n] == '.' && dots < 2 && n > 0 && s[n - 1] != '.')) {
		if (s[n] == '.')
			dots++;
		n++;
	}
	return dots == 2 && s[n - 1] != '.' ? n : 0;
}

/* Length of the registered secret at S, or 0 (lock held). */
static size_t secret_len(const char *s)
{
	for (int i = 0; i < REDACT_MAX_SECRETS; i++) {
		size_t k = secrets[i] ? strlen(secrets[i]) : 0;
		if (k && strncmp(s, secrets[i], k) == 0)
			return k;
	}
	return 0;
}

/* Append TEXT (LEN bytes) to DST at *AT, never past N-1 bytes. */
static void put(char *dst, size_t n, size_t *at, const char *text, size_t len)
{
	for (size_t i = 0; i < len && *at + 1 < n; i++) {
		unsigned char c = (unsigned char)text[i];
		dst[(*at)++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
}

char *redact(char *dst, size_t n, const char *src)
{
	size_t at = 0;

	if (n == 0)
		return dst;
	if (!src)
		src = "";
	pthread_mutex_lock(&lock);
	for (const char *p = src; *p && at + 1 < n;) {
		size_t k;
		bool word_start = p == src || !b64url(p[-1]);

		if (word_start && strncasecmp(p, "bearer ", 7) == 0) {
			const char *v = p + 7;
			while (*v == ' ')
				v++;
			put(dst, n, &at, p, 7);
			if ((k = word_len(v)) > 0) {
				put(dst, n, &at, REDACTED, strlen(REDACTED));
				v += k;
			}
			p = v;
		} else if ((k = secret_len(p)) > 0 || (word_start && (k = jwt_len(p)) > 0)) {
			/* Whole or nothing: a cut mask never shows part of it. */
			if (at + strlen(REDACTED) + 1 > n)
				break;
			put(dst, n, &at, REDACTED, strlen(REDACTED));
			p += k;
		} else {
			put(dst, n, &at, p, 1);
			p++;
		}
	}
	pthread_mutex_unlock(&lock);
	dst[at] = '\0';
	return dst;
}
