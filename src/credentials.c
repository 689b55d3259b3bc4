/* credentials.c - the console's credentials file (a small subset of sh),
 * environment-then-file lookup with the source of each value, and gateway
 * addresses written as URLs. */
#include "credentials.h"

#include "buf.h"
#include "err.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FILE_BYTES (64 * 1024)

/* ---- the file ------------------------------------------------------------ */

static void free_entry(struct cred_entry *e)
{
	free(e->name);
	if (e->value) {
		explicit_bzero(e->value, strlen(e->value));
		free(e->value);
	}
}

void credentials_free(struct credentials *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free_entry(&c->v[i]);
	free(c->v);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

static bool name_char(char ch, bool first)
{
	return ch == '_' || isalpha((unsigned char)ch) || (!first && isdigit((unsigned char)ch));
}

/* One shell word starting at *P: quoted and bare pieces glued together, up
 * to a blank, '#' after a blank or the end of the line. Returns NULL and
 * sets WHY on a construct we do not evaluate. */
static const char *parse_word(const char *p, struct buf *out, const char **why)
{
	while (*p && *p != ' ' && *p != '\t') {
		if (*p == '\'') {
			const char *end = strchr(p + 1, '\'');
			if (!end) {
				*why = "a closing ' on the same line";
				return NULL;
			}
			buf_append(out, p + 1, (size_t)(end - p - 1));
			p = end + 1;
		} else if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				if (*p == '\\' && p[1] && strchr("\\\"$`", p[1]))
					p++;
				else if (*p == '$' || *p == '`') {
					*why = "a literal value ($ and ` expansions are not evaluated; use single quotes)";
					return NULL;
				}
				buf_putc(out, *p);
			}
			if (*p != '"') {
				*why = "a closing \" on the same line";
				return NULL;
			}
			p++;
		} else if (strchr("$`;&|<>()", *p)) {
			*why = "a literal value (shell operators and expansions are not evaluated; quote the value)";
			return NULL;
		} else {
			if (*p == '\\' && p[1])
				p++;
			buf_putc(out, *p++);
		}
	}
	return p;
}

static int add_entry(struct credentials *c, const char *name, size_t nlen, struct buf *val, int line)
{
	struct cred_entry *v = realloc(c->v, (c->n + 1) * sizeof(*v));

	if (!v)
		return M2Z_ERR_NOMEM;
	c->v = v;
	v[c->n].name = strndup(name, nlen);
	v[c->n].value = strndup(val->p ? val->p : "", val->len);
	v[c->n].line = line;
	c->n++;
	return v[c->n - 1].name && v[c->n - 1].value ? M2Z_OK : M2Z_ERR_NOMEM;
}

/* One line, NUL-terminated, without its line end. */
static int parse_line(struct credentials *c, const char *p, int line, const char **why)
{
	struct buf val = BUF_INIT;
	const char *name;
	size_t nlen;
	int rc;

	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p || *p == '#')
		return M2Z_OK;
	if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t'))
		for (p += 6; *p == ' ' || *p == '\t'; p++)
			;
	name = p;
	if (!name_char(*p, true)) {
		*why = "NAME=value or export NAME='value'";
		return M2Z_ERR_PARSE;
	}
	while (name_char(*p, false))
		p++;
	nlen = (size_t)(p - name);
	if (*p != '=') {
		*why = "'=' right after the variable name (NAME=value, no blanks around '=')";
		return M2Z_ERR_PARSE;
	}
	p = parse_word(p + 1, &val, why);
	if (p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != '#') {
			*why = "one assignment per line (quote a value that has blanks)";
			p = NULL;
		}
	}
	rc = p ? add_entry(c, name, nlen, &val, line) : M2Z_ERR_PARSE;
	if (val.p)
		explicit_bzero(val.p, val.cap);
	buf_free(&val);
	return rc;
}

int credentials_parse(const char *name, const char *text, struct credentials *out,
		      char *err, size_t errlen)
{
	struct credentials c = { 0 };
	const char *why = "out of memory";
	char *line = NULL;
	int lineno = 0, rc = M2Z_OK;

	memset(out, 0, sizeof(*out));
	if (!(c.path = strdup(name)))
		goto fail;
	if (strncmp(text, "\xef\xbb\xbf", 3) == 0)
		text += 3;
	while (*text) {
		size_t n = strcspn(text, "\n");
		size_t m = n && text[n - 1] == '\r' ? n - 1 : n;

		lineno++;
		if (!(line = strndup(text, m)))
			goto fail;
		rc = parse_line(&c, line, lineno, &why);
		explicit_bzero(line, m);
		free(line);
		if (rc)
			goto fail;
		text += n + (text[n] == '\n');
	}
	*out = c;
	return M2Z_OK;
fail:
	snprintf(err, errlen, "%s:%d: expected %s", name, lineno, why);
	credentials_free(&c);
	return rc == M2Z_ERR_NOMEM ? M2Z_ERR_NOMEM : M2Z_ERR_PARSE;
}

int credentials_load(const char *path, struct credentials *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *text;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return M2Z_ERR_IO;
	}
	text = malloc(MAX_FILE_BYTES + 1);
	n = text ? fread(text, 1, MAX_FILE_BYTES + 1, f) : 0;
	if (!text || ferror(f) || n > MAX_FILE_BYTES || memchr(text, '\0', n)) {
		snprintf(err, errlen, "%s: %s", path, !text ? "out of memory"
			 : ferror(f) ? "read error" : n > MAX_FILE_BYTES ? "larger than 64 KiB"
			 : "NUL byte: not a text file");
		rc = M2Z_ERR_PARSE;
	} else {
		text[n] = '\0';
		rc = credentials_parse(path, text, out, err, errlen);
	}
	if (text) {
		explicit_bzero(text, n < MAX_FILE_BYTES ? n : MAX_FILE_BYTES);
		free(text);
	}
	fclose(f);
	return rc;
}

const struct cred_entry *credentials_get(const struct credentials *c, const char *name)
{
	const struct cred_entry *hit = NULL;

	for (size_t i = 0; c && i < c->n; i++)
		if (strcmp(c->v[i].name, name) == 0)
			hit = &c->v[i];
	return hit;
}

/* ---- lookup ---------------------------------------------------------------- */

/* Calls FN for every name in the space-separated list NAMES. */
static size_t each_name(const char *names, size_t (*fn)(const char *, void *), void *arg)
{
	char one[64];
	size_t got = 0;

	while (*names) {
		size_t n = strcspn(names, " ");
		if (n && n < sizeof(one)) {
			memcpy(one, names, n);
			one[n] = '\0';
			got += fn(one, arg);
		}
		names += n + (names[n] == ' ');
	}
	return got;
}

struct find_ctx {
	const struct credentials *file;
	bool in_file;
	struct cred_hit *hits;
	size_t max, n;
};

static size_t find_one(const char *name, void *arg)
{
	struct find_ctx *f = arg;
	struct cred_hit *h;
	const char *v = NULL;
	const struct cred_entry *e = NULL;

	if (f->n >= f->max)
		return 0;
	if (f->in_file)
		v = (e = credentials_get(f->file, name)) ? e->value : NULL;
	else
		v = getenv(name);
	if (!v || !*v)
		return 0;
	h = &f->hits[f->n++];
	snprintf(h->var, sizeof(h->var), "%s", name);
	h->value = v;
	h->line = e ? e->line : 0;
	if (e)
		snprintf(h->from, sizeof(h->from), "%s:%d (%s)", f->file->path, e->line, name);
	else
		snprintf(h->from, sizeof(h->from), "environment %s", name);
	return 1;
}

size_t credentials_find(const struct credentials *file, const char *names,
			struct cred_hit *hits, size_t max)
{
	struct find_ctx f = { file, false, hits, max, 0 };

	each_name(names, find_one, &f);
	if (file) {
		f.in_file = true;
		each_name(names, find_one, &f);
	}
	return f.n;
}

bool credentials_informational(const char *name)
{
	static const char *const info[] = {
		"ZEEBE_REST_ADDRESS", "CAMUNDA_REST_ADDRESS", "CAMUNDA_CLUSTER_ID",
		"CAMUNDA_CLUSTER_REGION", "CAMUNDA_CREDENTIALS_SCOPES", "CAMUNDA_TASKLIST_BASE_URL",
		"CAMUNDA_OPERATE_BASE_URL", "CAMUNDA_OPTIMIZE_BASE_URL", "CAMUNDA_MODELER_BASE_URL",
		"CAMUNDA_CONSOLE_BASE_URL", "CAMUNDA_CONSOLE_OAUTH_AUDIENCE", "CAMUNDA_CONSOLE_CLIENT_ID",
		"CAMUNDA_CONSOLE_CLIENT_SECRET", NULL,
	};
	for (size_t i = 0; info[i]; i++)
		if (strcmp(name, info[i]) == 0)
			return true;
	return false;
}

char *credentials_basic_header(const char *user, const char *password)
{
	struct buf pair = BUF_INIT, out = BUF_INIT;
	char *b64 = NULL;

	if (buf_printf(&pair, "%s:%s", user, password) == 0)
		b64 = base64_encode(pair.p, pair.len);
	if (pair.p)
		explicit_bzero(pair.p, pair.cap);
	buf_free(&pair);
	if (b64 && buf_printf(&out, "Basic %s", b64) != 0) {
		buf_free(&out);
		out.p = NULL;
	}
	if (b64) {
		explicit_bzero(b64, strlen(b64));
		free(b64);
	}
	return out.p;
}

/* ---- addresses --------------------------------------------------------------- */

static const struct {
	const char *prefix;
	int tls;
	const char *port;
} schemes[] = {
	{ "grpcs://", 1, "443" }, { "https://", 1, "443" },
	{ "grpc://", 0, "26500" }, { "http://", 0, "80" },
};

int credentials_parse_address(const char *in, char *out, size_t outlen, int *tls,
			      char *why, size_t whylen)
{
	const char *dflt = NULL, *host = in, *colon;
	size_t n = strlen(in), hlen;
	uint16_t port;

	*tls = -1;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t pl = strlen(schemes[i].prefix);
		if (strncasecmp(in, schemes[i].prefix, pl) == 0) {
			*tls = schemes[i].tls;
			dflt = schemes[i].port;
			host = in + pl;
			n -= pl;
			break;
		}
	}
	if (!dflt && strstr(in, "://")) {
		snprintf(why, whylen, "expected host:port or a grpcs://, grpc://, https:// or http:// URL, got '%s'", in);
		return M2Z_ERR_PARSE;
	}
	if (dflt && n && host[n - 1] == '/')
		n--;
	if (n == 0 || memchr(host, '/', n) || memchr(host, '@', n) || memchr(host, ' ', n)) {
		snprintf(why, whylen, "expected host:port%s, got '%s'", dflt ? " after the scheme (no path)" : "", in);
		return M2Z_ERR_PARSE;
	}
	/* The port is after the last ':' unless that ':' is inside [v6]. */
	colon = NULL;
	for (const char *p = host; p < host + n; p++)
		if (*p == ':')
			colon = p;
	if (colon && memchr(colon, ']', (size_t)(host + n - colon)))
		colon = NULL;
	hlen = colon ? (size_t)(colon - host) : n;
	if (hlen == 0 || (colon && parse_port(colon + 1, (size_t)(host + n - colon - 1), &port)) || (!colon && !dflt)) {
		snprintf(why, whylen, "expected host:port like gateway.local:26500, got '%s'", in);
		return M2Z_ERR_PARSE;
	}
	if ((size_t)snprintf(out, outlen, "%.*s%s%s", (int)n, host, colon ? "" : ":", colon ? "" : dflt) >= outlen) {
		snprintf(why, whylen, "address too long");
		return M2Z_ERR_PARSE;
	}
	return M2Z_OK;
}
