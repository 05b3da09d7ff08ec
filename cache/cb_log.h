/* Logging to stderr only: stdout belongs to the handler and to metric lines. */
#ifndef CB_LOG_H
#define CB_LOG_H

enum cb_log_level {
	CB_LOG_ERROR = 0,
	CB_LOG_WARN = 1,
	CB_LOG_INFO = 2,
	CB_LOG_DEBUG = 3,
};

/* Sets the most verbose level that is printed (default CB_LOG_INFO). */
void cb_log_set_level(enum cb_log_level level);
enum cb_log_level cb_log_get_level(void);

/*
 * Parses "error", "warn", "info" or "debug". Returns 0 and sets *level, or -1
 * when the name is unknown.
 */
int cb_log_parse_level(const char *name, enum cb_log_level *level);

/*
 * Prints one line "coldboot: <message>" to stderr when level is enabled. Never
 * pass a credential, token or presigned URL: redact with cb_url_redact first.
 */
void cb_log(enum cb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
