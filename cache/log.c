#include "cb_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum cb_log_level current_level = CB_LOG_INFO;

void cb_log_set_level(enum cb_log_level level)
{
	current_level = level;
}

enum cb_log_level cb_log_get_level(void)
{
	return current_level;
}

int cb_log_parse_level(const char *name, enum cb_log_level *level)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			*level = (enum cb_log_level)i;
			return 0;
		}
	}
	return -1;
}

void cb_log(enum cb_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (level > current_level)
		return;
	/* One write per line so concurrent starts never interleave within a line. */
	n = snprintf(line, sizeof(line), "coldboot: ");
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
	fflush(stderr);
}
