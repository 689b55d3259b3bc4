/* deadletter.c - append-only JSON-lines file of undeliverable events. */
#define LOG_MODULE "deadletter"
#include "deadletter.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "util.h"

struct deadletter {
	int fd;
	char *path;
	pthread_mutex_t lock;
};

int deadletter_open(const char *path, struct deadletter **out)
{
	struct deadletter *dl = calloc(1, sizeof(*dl));

	if (!dl)
		return M2Z_ERR_NOMEM;
	dl->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (dl->fd < 0) {
		log_err("cannot open dead-letter file %s: %s", path, strerror(errno));
		free(dl);
		return M2Z_ERR_IO;
	}
	dl->path = strdup(path);
	pthread_mutex_init(&dl->lock, NULL);
	*out = dl;
	return M2Z_OK;
}

static cJSON *to_json(const struct dead_event *ev)
{
	char when[40];
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	format_rfc3339_ms(ev->time_ms, when, sizeof(when));
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddStringToObject(o, "route", ev->route ? ev->route : "");
	cJSON_AddStringToObject(o, "topic", ev->topic ? ev->topic : "");
	if (utf8_valid(ev->payload, ev->payload_len)) {
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
	cJSON_AddStringToObject(o, "message_id", ev->message_id ? ev->message_id : "");
	cJSON_AddStringToObject(o, "correlation_key", ev->correlation_key ? ev->correlation_key : "");
	cJSON_AddStringToObject(o, "status", ev->status ? ev->status : "");
	cJSON_AddStringToObject(o, "reason", ev->reason ? ev->reason : "");
	return o;
}

int deadletter_write(struct deadletter *dl, const struct dead_event *ev, char **line_out)
{
	cJSON *o = to_json(ev);
	char *line = o ? cJSON_PrintUnformatted(o) : NULL;
	size_t n;
	int rc = M2Z_OK;

	cJSON_Delete(o);
	if (!line)
		return M2Z_ERR_NOMEM;
	n = strlen(line);
	line[n] = '\n'; /* cJSON's buffer has room: it held the NUL */
	pthread_mutex_lock(&dl->lock);
	/* One write per line: a line is whole or absent, also after a crash. */
	if (write(dl->fd, line, n + 1) != (ssize_t)(n + 1) || fdatasync(dl->fd) != 0) {
		log_err("cannot write dead-letter file %s: %s", dl->path, strerror(errno));
		rc = M2Z_ERR_IO;
	}
	pthread_mutex_unlock(&dl->lock);
	line[n] = '\0';
	if (line_out)
		*line_out = line;
	else
		free(line);
	return rc;
}

void deadletter_close(struct deadletter *dl)
{
	if (!dl)
		return;
	close(dl->fd);
	pthread_mutex_destroy(&dl->lock);
	free(dl->path);
	free(dl);
}
