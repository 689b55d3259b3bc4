/* token_cache.c - one OAuth token per key on disk, written atomically. */
#include "token_cache.h"

#include "digest.h"
#include "err.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORMAT_VERSION 1
#define MAX_FILE_BYTES (64 * 1024)

static const char *nz(const char *s)
{
	return s ? s : "";
}

int token_cache_path(const char *dir, const struct token_cache_key *k, char *out, size_t outlen)
{
	struct digest_part parts[4] = {
		{ nz(k->url), strlen(nz(k->url)) }, { nz(k->client_id), strlen(nz(k->client_id)) },
		{ nz(k->audience), strlen(nz(k->audience)) }, { nz(k->scope), strlen(nz(k->scope)) },
	};
	uint8_t d[32];
	int n;

	digest_sha256_parts(parts, 4, d);
	n = snprintf(out, outlen, "%s/oauth-token-%02x%02x%02x%02x%02x%02x%02x%02x.json", dir,
		     d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
	return n < 0 || (size_t)n >= outlen ? M2Z_ERR_TOO_BIG : M2Z_OK;
}

void token_cache_entry_clear(struct token_cache_entry *e)
{
	if (!e)
		return;
	if (e->access_token) {
		explicit_bzero(e->access_token, strlen(e->access_token));
		free(e->access_token);
	}
	free(e->token_type);
	e->access_token = e->token_type = NULL;
	e->expires_at_ms = 0;
}

/* ---- load ------------------------------------------------------------------ */

/* Visible ASCII only: the token goes into a header. */
static bool header_safe(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return false;
	return true;
}

static bool str_is(const cJSON *root, const char *member, const char *want)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, member));
	return v && strcmp(v, nz(want)) == 0;
}

/* Read the whole file, refusing anything that is not a small regular file
 * of ours that only we can read. */
static int read_safe(const char *path, char **text, char *why, size_t whylen)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? M2Z_ERR_NOT_FOUND : M2Z_ERR_INVAL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) || st.st_size > MAX_FILE_BYTES) {
		snprintf(why, whylen, "%s: not a private regular file of this user (mode 0600, owner %u) "
			 "of at most 64 KiB", path, (unsigned)geteuid());
		close(fd);
		return M2Z_ERR_INVAL;
	}
	*text = malloc((size_t)st.st_size + 1);
	n = *text ? read(fd, *text, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		snprintf(why, whylen, "%s: short read", path);
		free(*text);
		*text = NULL;
		return M2Z_ERR_CORRUPT;
	}
	(*text)[n] = '\0';
	return M2Z_OK;
}

static int judge(const cJSON *root, const struct token_cache_key *k, int64_t now, int64_t margin,
		 struct token_cache_entry *e, const char *path, char *why, size_t whylen)
{
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expires_at_ms");
	const char *tok = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "access_token"));
	const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "token_type"));

	if (!cJSON_IsNumber(ver) || ver->valuedouble != FORMAT_VERSION || !tok || !header_safe(tok) ||
	    !type || !header_safe(type) || !(cJSON_IsNull(exp) || cJSON_IsNumber(exp)) ||
	    (cJSON_IsNumber(exp) && (!isfinite(exp->valuedouble) || exp->valuedouble < 0 ||
				     exp->valuedouble > 9e15))) {
		snprintf(why, whylen, "%s: not a token cache file of this version", path);
		return M2Z_ERR_CORRUPT;
	}
	if (!str_is(root, "url", k->url) || !str_is(root, "client_id", k->client_id) ||
	    !str_is(root, "audience", k->audience) || !str_is(root, "scope", k->scope)) {
		snprintf(why, whylen, "%s: written for another token URL, client id, audience or scope", path);
		return M2Z_ERR_INVAL;
	}
	e->expires_at_ms = cJSON_IsNull(exp) ? TOKEN_CACHE_NEVER : (int64_t)exp->valuedouble;
	if (e->expires_at_ms != TOKEN_CACHE_NEVER && e->expires_at_ms - margin <= now) {
		snprintf(why, whylen, "%s: token expires in %lld s, within the refresh margin", path,
			 (long long)((e->expires_at_ms - now) / 1000));
		return M2Z_ERR_TIMEOUT;
	}
	e->access_token = strdup(tok);
	e->token_type = strdup(type);
	return e->access_token && e->token_type ? M2Z_OK : M2Z_ERR_NOMEM;
}

int token_cache_load(const char *path, const struct token_cache_key *key, int64_t now_ms,
		     int64_t margin_ms, struct token_cache_entry *out, char *why, size_t whylen)
{
	struct token_cache_entry e = { NULL, NULL, 0 };
	char *text = NULL;
	cJSON *root;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_safe(path, &text, why, whylen);
	if (rc)
		return rc;
	root = cJSON_Parse(text);
	explicit_bzero(text, strlen(text));
	free(text);
	if (!cJSON_IsObject(root)) {
		snprintf(why, whylen, "%s: not JSON", path);
		rc = M2Z_ERR_CORRUPT;
	} else {
		rc = judge(root, key, now_ms, margin_ms, &e, path, why, whylen);
	}
	cJSON_Delete(root); /* cJSON frees without wiping; the copy in E is ours */
	if (rc)
		token_cache_entry_clear(&e);
	else
		*out = e;
	return rc;
}

/* ---- store ------------------------------------------------------------------ */

static char *render(const struct token_cache_key *k, const struct token_cache_entry *e)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;

	if (o && cJSON_AddNumberToObject(o, "version", FORMAT_VERSION) &&
	    cJSON_AddStringToObject(o, "url", nz(k->url)) &&
	    cJSON_AddStringToObject(o, "client_id", nz(k->client_id)) &&
	    cJSON_AddStringToObject(o, "audience", nz(k->audience)) &&
	    cJSON_AddStringToObject(o, "scope", nz(k->scope)) &&
	    cJSON_AddStringToObject(o, "token_type", nz(e->token_type)) &&
	    cJSON_AddStringToObject(o, "access_token", nz(e->access_token)) &&
	    (e->expires_at_ms == TOKEN_CACHE_NEVER ? cJSON_AddNullToObject(o, "expires_at_ms")
	     : cJSON_AddNumberToObject(o, "expires_at_ms", (double)e->expires_at_ms)))
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* The directory part of PATH: "." when it has none, "/" for a file in /. */
static void dir_of(const char *path, char *dir, size_t n)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, n, ".");
	else if (slash == path)
		snprintf(dir, n, "/");
	else
		snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	int fd, rc;

	dir_of(path, dir, sizeof(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* The state directory may not exist yet (--check-connection runs before
 * the spool is opened); a failure shows in the open that follows. */
static void make_dir_of(const char *path)
{
	char dir[PATH_MAX];

	dir_of(path, dir, sizeof(dir));
	(void)mkdir(dir, 0700);
}

int token_cache_store(const char *path, const struct token_cache_key *key,
		      const struct token_cache_entry *e, char *why, size_t whylen)
{
	char tmp[PATH_MAX];
	char *text = render(key, e);
	int fd = -1, rc = M2Z_ERR_IO;

	if (!text) {
		snprintf(why, whylen, "out of memory");
		return M2Z_ERR_NOMEM;
	}
	make_dir_of(path);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
		snprintf(why, whylen, "%s: path too long", path);
		tmp[0] = '\0';
		goto out;
	}
	unlink(tmp); /* a leftover of a crashed process with our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, text, strlen(text)) || fsync(fd)) {
		snprintf(why, whylen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = close(fd);
	fd = -1;
	if (rc != 0 || rename(tmp, path) != 0) {
		rc = M2Z_ERR_IO;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (fsync_dir_of(path) != 0) {
		rc = M2Z_ERR_IO;
		snprintf(why, whylen, "%s: fsync of the directory: %s", path, strerror(errno));
		goto out;
	}
	rc = M2Z_OK;
out: /* every jump here has rc = M2Z_ERR_IO */
	if (fd >= 0)
		close(fd);
	if (rc && tmp[0])
		unlink(tmp);
	explicit_bzero(text, strlen(text));
	free(text);
	return rc;
}

int token_cache_drop(const char *path)
{
	if (unlink(path) != 0 && errno != ENOENT)
		return M2Z_ERR_IO;
	fsync_dir_of(path);
	return M2Z_OK;
}
