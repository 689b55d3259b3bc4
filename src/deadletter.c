/* deadletter.c - bounded JSON-lines file of undeliverable events; see
 * deadletter.h. */
#define LOG_MODULE "deadletter"
#include "deadletter.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "stats.h"
#include "util.h"

/* A payload above this is replaced by its size (unless max_bytes/4 is
 * smaller): a dead letter is for finding out what went wrong, and one
 * 700 kB payload must not crowd out everything else. */
#define PAYLOAD_CAP (64 * 1024)

struct deadletter {
	struct deadletter_opts o;
	pthread_mutex_t lock;        /* guards everything below */
	int fd;                      /* -1 after a failed rotation */
	uint64_t size;               /* bytes in the live file */
	bool failing;                /* the last write failed (logged once) */
};

static int open_live(struct deadletter *dl)
{
	struct stat st;

	dl->fd = open(dl->o.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (dl->fd < 0)
		return M2Z_ERR_IO;
	dl->size = fstat(dl->fd, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	return M2Z_OK;
}

int deadletter_open(const struct deadletter_opts *opts, struct deadletter **out)
{
	struct deadletter *dl = calloc(1, sizeof(*dl));

	if (!dl)
		return M2Z_ERR_NOMEM;
	dl->o = *opts;
	if (dl->o.max_files < 1)
		dl->o.max_files = 1;
	dl->o.path = strdup(opts->path);
	if (!dl->o.path) {
		free(dl);
		return M2Z_ERR_NOMEM;
	}
	if (open_live(dl) != M2Z_OK) {
		log_err("cannot open dead-letter file %s: %s", dl->o.path, strerror(errno));
		free((char *)dl->o.path);
		free(dl);
		return M2Z_ERR_IO;
	}
	pthread_mutex_init(&dl->lock, NULL);
	*out = dl;
	return M2Z_OK;
}

/* Largest payload stored in a line for this file (bytes). */
static size_t payload_cap(const struct deadletter *dl)
{
	if (dl->o.max_bytes && dl->o.max_bytes / 4 < PAYLOAD_CAP)
		return (size_t)(dl->o.max_bytes / 4);
	return PAYLOAD_CAP;
}

/* ---- the line ------------------------------------------------------------ */

static void add_payload(cJSON *o, const struct dead_event *ev, size_t cap)
{
	if (ev->payload_len > cap) {
		cJSON_AddBoolToObject(o, "payload_omitted", 1);
		cJSON_AddNumberToObject(o, "payload_size", (double)ev->payload_len);
	} else if (utf8_valid(ev->payload, ev->payload_len)) {
		char *text = strndup(ev->payload ? ev->payload : "", ev->payload_len);
		if (text)
			cJSON_AddStringToObject(o, "payload", text);
		free(text);
	} else {
		char *b64 = base64_encode(ev->payload, ev->payload_len);
		if (b64)
			cJSON_AddStringToObject(o, "payload_base64", b64);
		free(b64);
	}
}

/* The JSON line plus '\n', malloc'ed; *LEN excludes the NUL. */
static char *make_line(const struct dead_event *ev, size_t cap, size_t *len)
{
	char when[40];
	cJSON *o = cJSON_CreateObject();
	char *line;

	if (!o)
		return NULL;
	format_rfc3339_ms(ev->time_ms, when, sizeof(when));
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddStringToObject(o, "route", ev->route ? ev->route : "");
	cJSON_AddStringToObject(o, "topic", ev->topic ? ev->topic : "");
	add_payload(o, ev, cap);
	cJSON_AddStringToObject(o, "message_id", ev->message_id ? ev->message_id : "");
	cJSON_AddStringToObject(o, "correlation_key", ev->correlation_key ? ev->correlation_key : "");
	cJSON_AddStringToObject(o, "status", ev->status ? ev->status : "");
	cJSON_AddStringToObject(o, "reason", ev->reason ? ev->reason : "");
	line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line)
		return NULL;
	*len = strlen(line);
	line[*len] = '\n'; /* cJSON's buffer has room: it held the NUL */
	return line;
}

/* ---- rotation ------------------------------------------------------------ */

static void numbered(const struct deadletter *dl, int i, char *buf, size_t len)
{
	if (i == 0)
		snprintf(buf, len, "%s", dl->o.path);
	else
		snprintf(buf, len, "%s.%d", dl->o.path, i);
}

/* PATH -> PATH.1 -> … ; the oldest goes. Called with the lock held. */
static int rotate(struct deadletter *dl)
{
	char from[PATH_MAX], to[PATH_MAX];

	close(dl->fd);
	dl->fd = -1;
	numbered(dl, dl->o.max_files - 1, to, sizeof(to));
	if (unlink(to) != 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", to, strerror(errno));
	for (int i = dl->o.max_files - 1; i > 0; i--) {
		numbered(dl, i - 1, from, sizeof(from));
		numbered(dl, i, to, sizeof(to));
		if (rename(from, to) != 0 && errno != ENOENT)
			log_warn("cannot rename %s to %s: %s", from, to, strerror(errno));
	}
	if (open_live(dl) != M2Z_OK)
		return M2Z_ERR_IO;
	STAT_INC(dead_letters_rotated);
	log_info("dead-letter file %s rotated (max %llu bytes, %d file(s) kept)", dl->o.path,
		 (unsigned long long)dl->o.max_bytes, dl->o.max_files);
	return M2Z_OK;
}

/* Append LINE (N bytes with its newline) whole, or not at all. Lock held;
 * errno describes a failure. */
static int append_line(struct deadletter *dl, const char *line, size_t n)
{
	ssize_t w;

	if (dl->o.max_bytes && dl->size > 0 && dl->size + n > dl->o.max_bytes && rotate(dl) != M2Z_OK)
		return M2Z_ERR_IO;
	if (dl->fd < 0 && open_live(dl) != M2Z_OK)
		return M2Z_ERR_IO;
	/* One write per line: a line is whole or absent, also after a crash. */
	w = write(dl->fd, line, n);
	if (w == (ssize_t)n && fdatasync(dl->fd) == 0) {
		dl->size += n;
		return M2Z_OK;
	}
	if (w >= 0 && w != (ssize_t)n)
		errno = ENOSPC; /* a short write sets no errno: never log "Success" */
	if (w > 0) {
		int saved = errno;
		if (ftruncate(dl->fd, (off_t)dl->size) != 0)
			log_err("cannot cut a torn line from %s: %s", dl->o.path, strerror(errno));
		errno = saved;
	}
	return M2Z_ERR_IO;
}

/* ---- emit ------------------------------------------------------------------ */

int deadletter_emit(struct deadletter *dl, const struct dead_event *ev)
{
	size_t n = 0;
	char *line = make_line(ev, payload_cap(dl), &n);
	int rc;

	if (!line)
		return M2Z_ERR_NOMEM;
	pthread_mutex_lock(&dl->lock);
	rc = append_line(dl, line, n + 1);
	if (rc != M2Z_OK && !dl->failing)
		log_err("cannot write dead-letter file %s: %s (the event is kept and retried)",
			dl->o.path, strerror(errno));
	else if (rc == M2Z_OK && dl->failing)
		log_info("dead-letter file %s is writable again", dl->o.path);
	dl->failing = rc != M2Z_OK;
	pthread_mutex_unlock(&dl->lock);
	if (rc == M2Z_OK) {
		log_warn("dead letter: route=%s topic=%s message_id=%s status=%s reason=%s",
			 ev->route ? ev->route : "", ev->topic ? ev->topic : "",
			 ev->message_id ? ev->message_id : "", ev->status ? ev->status : "",
			 ev->reason ? ev->reason : "");
		STAT_INC(dead_lettered);
		line[n] = '\0';
		if (dl->o.on_line)
			dl->o.on_line(dl->o.on_line_arg, line);
	}
	free(line);
	return rc;
}

void deadletter_close(struct deadletter *dl)
{
	if (!dl)
		return;
	if (dl->fd >= 0)
		close(dl->fd);
	pthread_mutex_destroy(&dl->lock);
	free((char *)dl->o.path);
	free(dl);
}
