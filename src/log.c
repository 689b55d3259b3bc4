#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Atomic int log_threshold = LOG_LVL_INFO;
static bool journal;

const char *const log_level_names[] = { "error", "warn", "info", "debug", NULL };
/* As they appear in a log line: upper case, padded to one width. */
static const char *const level_tags[] = { "ERROR", "WARN ", "INFO ", "DEBUG" };

void log_set_level(int level)
{
	if (level >= LOG_LVL_ERROR && level <= LOG_LVL_DEBUG)
		log_threshold = level;
}

int log_level_parse(const char *s)
{
	for (int i = 0; log_level_names[i]; i++)
		if (strcmp(s, log_level_names[i]) == 0)
			return i;
	return -1;
}

bool log_detect_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
		  (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
	return journal;
}

void log_write(int level, const char *module, const char *fmt, ...)
{
	char line[2048], msg[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;
	va_list ap;

	if (journal) {
		/* syslog priorities: err 3, warning 4, info 6, debug 7 */
		static const char prio[] = { '3', '4', '6', '7' };
		n = 0;
		r = snprintf(line, sizeof(line), "<%c>%s [%s] ", prio[level & 3],
			     level_tags[level & 3], module);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s [%s] ",
			     ts.tv_nsec / 1000000L, level_tags[level & 3], module);
	}
	if (r > 0)
		n += (size_t)r;
	va_start(ap, fmt);
	r = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A value from a device or a job (a topic, a variable) may hold a
	 * newline or a terminal escape: it must not forge or garble a line. */
	for (const unsigned char *p = (const unsigned char *)msg; r > 0 && *p && n < sizeof(line) - 5; p++) {
		if (*p >= 0x20 && *p != 0x7f)
			line[n++] = (char)*p;
		else
			n += (size_t)snprintf(line + n, 5, "\\x%02x", *p);
	}
	line[n++] = '\n';
	/* One write per line keeps lines whole when threads log at once. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}
