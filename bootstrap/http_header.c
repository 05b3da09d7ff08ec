/* Reading HTTP response header lines (see http_header.h). */
#include "http_header.h"

#include <string.h>

int cb_http_starts_with_nocase(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++) {
		char a = *s;
		char b = *prefix;
		if (a >= 'A' && a <= 'Z')
			a = (char)(a - 'A' + 'a');
		if (a != b)
			return 0;
	}
	return 1;
}

/* The value of "Name: value\r\n" when the line's name is name (lower case), else NULL. */
const char *cb_http_header_value(const char *line, size_t size, const char *name, size_t *value_size)
{
	size_t name_size = strlen(name);
	size_t i;

	if (size <= name_size || !cb_http_starts_with_nocase(line, name) || line[name_size] != ':')
		return NULL;
	i = name_size + 1;
	while (i < size && (line[i] == ' ' || line[i] == '\t'))
		i++;
	*value_size = size - i;
	while (*value_size > 0 &&
	       (line[i + *value_size - 1] == '\r' || line[i + *value_size - 1] == '\n' ||
		line[i + *value_size - 1] == ' '))
		(*value_size)--;
	return line + i;
}

/* Parses a decimal count, refusing anything else (signs, spaces, overflow). */
int cb_http_parse_count(const char *text, size_t size, int64_t *out)
{
	int64_t value = 0;

	if (size == 0 || size > 18)
		return -1;
	for (size_t i = 0; i < size; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	*out = value;
	return 0;
}

/*
 * "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"): fills what it can read, -1
 * for the rest.
 */
void cb_http_range_fields(const char *v, size_t size, int64_t *first, int64_t *last, int64_t *total)
{
	const char *dash;
	const char *slash;
	const char *end = v + size;

	*first = *last = *total = -1;
	if (size < 6 || memcmp(v, "bytes ", 6) != 0)
		return;
	v += 6;
	dash = memchr(v, '-', (size_t)(end - v));
	slash = memchr(v, '/', (size_t)(end - v));
	if (dash == NULL || slash == NULL || slash < dash)
		return;
	if (cb_http_parse_count(v, (size_t)(dash - v), first) != 0) {
		*first = -1;
		return;
	}
	if (cb_http_parse_count(dash + 1, (size_t)(slash - dash - 1), last) != 0)
		*last = -1;
	if (cb_http_parse_count(slash + 1, (size_t)(end - slash - 1), total) != 0)
		*total = -1;
}

/*
 * Whether the header line starts a response ("HTTP/1.1 206 ..."); its status
 * goes to *status, 0 when unreadable.
 */
int cb_http_status_line(const char *buffer, size_t n, long *status)
{
	const char *sp;
	int64_t number;

	if (n < 5 || memcmp(buffer, "HTTP/", 5) != 0)
		return 0;
	*status = 0;
	sp = memchr(buffer, ' ', n);
	if (sp != NULL && (size_t)(sp - buffer) + 4 <= n &&
	    cb_http_parse_count(sp + 1, 3, &number) == 0)
		*status = (long)number;
	return 1;
}
