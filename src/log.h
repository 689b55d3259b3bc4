/* log.h - level-guarded logging to stderr with a [module] tag.
 *
 * Each .c file defines LOG_MODULE before including this header:
 *     #define LOG_MODULE "spool"
 *     #include "log.h"
 *     log_warn("segment %s: torn tail cut at %zu", name, off);
 * Lines look like: "2026-11-23T10:00:00.123Z WARN  [spool] segment ...",
 * or "<4>WARN  [spool] segment ..." into the journal (log_detect_journal).
 * Never pass a secret, token, password or Authorization header to these. */
#ifndef M2Z_LOG_H
#define M2Z_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

extern _Atomic int log_threshold; /* messages above this level are skipped; a reload changes it */

void log_set_level(int level);
/* When stderr is the systemd journal ($JOURNAL_STREAM names stderr's
 * device:inode), lines start with a syslog priority "<3>".."<7>" (so
 * `journalctl -p warning` works) and carry no timestamp of their own.
 * Call once at start; returns true when the journal was detected. */
bool log_detect_journal(void);
/* Indexed by enum log_level, NULL-terminated: the config and --log-level
 * spelling. */
extern const char *const log_level_names[];
/* "error", "warn", "info", "debug" -> level; -1 when unknown. */
int log_level_parse(const char *s);
/* Thread-safe: one write(2) per line. */
void log_write(int level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_at(lvl, ...) \
	do { if ((lvl) <= log_threshold) log_write((lvl), LOG_MODULE, __VA_ARGS__); } while (0)
#define log_err(...)   log_at(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
