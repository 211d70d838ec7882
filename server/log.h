/* Logging with levels to stderr.
 *
 * When stderr is connected to the journal (systemd sets JOURNAL_STREAM) every line starts with
 * the syslog priority in angle brackets ("<3>...") so journald records the level, and carries
 * no timestamp of its own; otherwise lines read "2026-11-25T17:30:00.123Z inferd[pid] level:".
 * Safe to call from any thread.
 */
#ifndef INFERD_SERVER_LOG_H
#define INFERD_SERVER_LOG_H

enum log_level {
	LOG_LEVEL_ERROR = 3,   /* the syslog priorities */
	LOG_LEVEL_WARN = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* Reads JOURNAL_STREAM once; call at start-up before other threads exist. */
void log_init(enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* @return 0 and *out for "error", "warn"/"warning", "info", "debug"; -1 otherwise. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
