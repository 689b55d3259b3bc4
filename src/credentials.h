/* credentials.h - Camunda's client settings as the console hands them out.
 *
 * The console's credentials file is a shell fragment:
 *
 *     # Camunda 8 SaaS - cluster abc
 *     export ZEEBE_GRPC_ADDRESS='grpcs://abc.bru-2.zeebe.camunda.io:443'
 *     export CAMUNDA_CLIENT_ID='Xy...'
 *
 * credentials_parse() reads that subset of sh: blank lines, '#' comments,
 * an optional "export", NAME=VALUE where VALUE is any mix of 'single quoted'
 * (literal), "double quoted" (\\ \" \$ \` escapes) and bare words (\x
 * escapes), followed by nothing but blanks or a '#' comment. Anything else
 * (command substitution, $VAR expansion, several assignments on one line) is
 * an error at its line, never guessed at.
 *
 * credentials_find() then answers "which of these names is set, and where":
 * the process environment first (empty = unset, as the Go client), then the
 * file, each in the precedence order the caller gives.
 *
 * Ownership: a struct credentials owns every string in it; credentials_free()
 * releases them. Values found by credentials_find() are borrowed from the
 * environment or the struct and live as long as either. */
#ifndef M2Z_CREDENTIALS_H
#define M2Z_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#define CRED_FROM_MAX 320
#define CRED_MAX_HITS 8

struct cred_entry {
	char *name;             /* owned */
	char *value;            /* owned; may be a secret: never logged */
	int line;
};

struct credentials {
	char *path;             /* owned; the name used in messages */
	size_t n;
	struct cred_entry *v;   /* owned, in file order; a later line wins */
};

/* Parse TEXT (NUL-terminated). NAME is used in messages. On error returns
 * M2Z_ERR_PARSE with ERR "NAME:LINE: what was expected" and *OUT empty. */
int credentials_parse(const char *name, const char *text, struct credentials *out,
		      char *err, size_t errlen);

/* Read and parse PATH (at most 64 KiB). Errors as credentials_parse, or
 * "PATH: cannot open: <strerror>". */
int credentials_load(const char *path, struct credentials *out, char *err, size_t errlen);

void credentials_free(struct credentials *c);

/* The last line in C that sets NAME (NULL when none, C may be NULL). */
const struct cred_entry *credentials_get(const struct credentials *c, const char *name);

struct cred_hit {
	char var[64];           /* the variable's name */
	const char *value;      /* borrowed */
	int line;               /* line in the file; 0 = from the environment */
	char from[CRED_FROM_MAX]; /* "environment CAMUNDA_CLIENT_ID" or "FILE:LINE (NAME)" */
};

/* Every place that sets one of NAMES (space-separated, first = strongest):
 * all of them in the environment, then all of them in FILE (may be NULL).
 * Fills up to MAX hits, strongest first; returns how many. */
size_t credentials_find(const struct credentials *file, const char *names,
			struct cred_hit *hits, size_t max);

/* True for the console's variables that carry no setting for us
 * (ZEEBE_REST_ADDRESS, CAMUNDA_CLUSTER_ID, ...): accepted silently. */
bool credentials_informational(const char *name);

/* A gateway address as host:port or as a URL. grpcs:// and https:// mean
 * TLS (default port 443), grpc:// and http:// plaintext (default 26500 and
 * 80); a bare host:port leaves TLS to other settings (*TLS = -1). One
 * trailing '/' is allowed; any other path, user info or missing host is an
 * error (M2Z_ERR_PARSE, WHY says what was expected). OUT gets "host:port". */
int credentials_parse_address(const char *in, char *out, size_t outlen, int *tls,
			      char *why, size_t whylen);

/* "Basic " + base64(USER ":" PASSWORD), malloc'ed (caller wipes and
 * frees), for the authorization metadata of Camunda 8.8 basic auth; NULL on
 * out of memory. */
char *credentials_basic_header(const char *user, const char *password);

#endif
