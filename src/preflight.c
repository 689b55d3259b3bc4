/* preflight.c - the files a configuration will need; see preflight.h. */
#include "preflight.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

#define PEM_MARK "-----BEGIN "
#define PEM_PEEK 65536

/* "FILE:LINE: [sec] key", "environment NAME ([sec] key)" or
 * "FILE: [sec] key (default)", from conf_origin(). */
static void where(const struct config *cfg, const char *sec, const char *key, char *b, size_t n)
{
	char src[512];

	conf_origin(cfg, sec, key, src, sizeof(src));
	if (strncmp(src, "env ", 4) == 0)
		snprintf(b, n, "environment %s ([%s] %s)", src + 4, sec, key);
	else if (strcmp(src, "default") == 0 || strncmp(src, "derived", 7) == 0)
		snprintf(b, n, "%s: [%s] %s (%s)", cfg->path, sec, key, src);
	else
		snprintf(b, n, "%s: [%s] %s", src, sec, key);
}

/* PATH must be a readable regular file with a PEM block in its first
 * PEM_PEEK bytes. Returns 0 or 1 (a problem, reported). */
static int check_pem(const struct config *cfg, const char *sec, const char *key,
		     const char *path, FILE *err)
{
	static char buf[PEM_PEEK + 1];
	char w[768];
	struct stat st;
	FILE *f;
	size_t n;

	if (!path[0])
		return 0;
	where(cfg, sec, key, w, sizeof(w));
	f = fopen(path, "rb");
	if (!f) {
		fprintf(err, "%s: cannot read '%s': %s\n", w, path, strerror(errno));
		return 1;
	}
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
		fprintf(err, "%s: '%s' is not a regular file\n", w, path);
		fclose(f);
		return 1;
	}
	n = fread(buf, 1, PEM_PEEK, f);
	if (ferror(f)) {
		fprintf(err, "%s: cannot read '%s': %s\n", w, path, strerror(errno));
		fclose(f);
		return 1;
	}
	fclose(f);
	buf[n] = '\0';
	if (n == 0 || !memmem(buf, n, PEM_MARK, strlen(PEM_MARK))) {
		fprintf(err, "%s: '%s' is not PEM (expected a \"" PEM_MARK "...\" block)\n", w, path);
		return 1;
	}
	return 0;
}

/* The spool directory exists and is writable, or can be created: its
 * nearest existing ancestor is a writable directory. */
static int check_spool_dir(const struct config *cfg, FILE *err)
{
	const char *dir = cfg->spool.directory;
	char w[768], p[4096];
	struct stat st;
	char *slash;

	where(cfg, "spool", "directory", w, sizeof(w));
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			fprintf(err, "%s: '%s' exists and is not a directory\n", w, dir);
			return 1;
		}
		if (access(dir, W_OK | X_OK) != 0) {
			fprintf(err, "%s: directory '%s' is not writable: %s\n", w, dir, strerror(errno));
			return 1;
		}
		return 0;
	}
	if (errno != ENOENT && errno != ENOTDIR) {
		fprintf(err, "%s: cannot use '%s': %s\n", w, dir, strerror(errno));
		return 1;
	}
	snprintf(p, sizeof(p), "%s", dir);
	for (;;) {
		slash = strrchr(p, '/');
		if (!slash) {
			snprintf(p, sizeof(p), ".");
		} else if (slash == p) {
			p[1] = '\0';
		} else {
			*slash = '\0';
		}
		if (stat(p, &st) == 0)
			break;
		if ((errno != ENOENT && errno != ENOTDIR) || strcmp(p, ".") == 0 || strcmp(p, "/") == 0) {
			fprintf(err, "%s: cannot create '%s': %s: %s\n", w, dir, p, strerror(errno));
			return 1;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(err, "%s: cannot create '%s': '%s' is not a directory\n", w, dir, p);
		return 1;
	}
	if (access(p, W_OK | X_OK) != 0) {
		fprintf(err, "%s: cannot create '%s': '%s' is not writable: %s\n", w, dir, p,
			strerror(errno));
		return 1;
	}
	return 0;
}

int preflight_files(const struct config *cfg, FILE *err)
{
	int bad = 0;

	/* The gateway's and the token endpoint's CA files are checked by
	 * conf_load() itself (a configuration error at start too). */
	if (cfg->mqtt.tls) {
		bad += check_pem(cfg, "mqtt", "ca_file", cfg->mqtt.ca_file, err);
		bad += check_pem(cfg, "mqtt", "cert_file", cfg->mqtt.cert_file, err);
		bad += check_pem(cfg, "mqtt", "key_file", cfg->mqtt.key_file, err);
	}
	bad += check_spool_dir(cfg, err);
	return bad;
}
