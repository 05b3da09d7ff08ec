#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cb_buf_init(struct cb_buf *buf, char *storage, size_t size)
{
	buf->data = storage;
	buf->size = size;
	buf->len = 0;
	buf->overflow = 0;
	if (size > 0)
		storage[0] = '\0';
}

void cb_buf_printf(struct cb_buf *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (buf->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf->data + buf->len, buf->size - buf->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= buf->size - buf->len) {
		buf->overflow = 1;
		buf->data[buf->len] = '\0';
		return;
	}
	buf->len += (size_t)n;
}

void cb_buf_json_string(struct cb_buf *buf, const char *s)
{
	cb_buf_printf(buf, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			cb_buf_printf(buf, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			cb_buf_printf(buf, "\\u%04x", *p);
		else
			cb_buf_printf(buf, "%c", *p);
	}
	cb_buf_printf(buf, "\"");
}

/* Skips a JSON string starting at the opening quote; returns the byte after it. */
static const char *skip_string(const char *p)
{
	for (p++; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Returns the start of the value of the top-level key, or NULL. */
static const char *find_value(const char *json, const char *key)
{
	size_t key_len = strlen(key);
	int depth = 0;
	const char *p = json;

	while (p != NULL && *p != '\0') {
		if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			depth--;
			p++;
		} else if (*p == '"') {
			const char *start = p + 1;
			const char *end = skip_string(p);

			if (end == NULL)
				return NULL;
			p = end;
			if (depth != 1 || (size_t)(end - 1 - start) != key_len ||
			    memcmp(start, key, key_len) != 0)
				continue;
			while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
				p++;
			if (*p != ':')
				continue;
			p++;
			while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
				p++;
			return p;
		} else {
			p++;
		}
	}
	return NULL;
}

int cb_json_get_string(const char *json, const char *key, char *out, size_t out_size)
{
	const char *p = find_value(json, key);
	size_t n = 0;

	if (p == NULL || *p != '"' || out_size == 0)
		return -1;
	for (p++; *p != '"'; p++) {
		char c = *p;

		if (c == '\0')
			return -1;
		if (c == '\\') {
			p++;
			switch (*p) {
			case '"':
			case '\\':
			case '/':
				c = *p;
				break;
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			case 'r':
				c = '\r';
				break;
			case 'u': {
				char hex[5] = {0};
				unsigned long v;

				if (strlen(p + 1) < 4)
					return -1;
				memcpy(hex, p + 1, 4);
				v = strtoul(hex, NULL, 16);
				if (v == 0 || v > 0x7f)
					return -1; /* we only ever write escapes of ASCII control bytes */
				c = (char)v;
				p += 4;
				break;
			}
			default:
				return -1;
			}
		}
		if (n + 1 >= out_size)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

int cb_json_get_u64(const char *json, const char *key, uint64_t *out)
{
	const char *p = find_value(json, key);
	char *end;
	unsigned long long v;

	if (p == NULL || *p < '0' || *p > '9')
		return -1;
	v = strtoull(p, &end, 10);
	if (end == p)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

int cb_json_get_i64(const char *json, const char *key, int64_t *out)
{
	const char *p = find_value(json, key);
	char *end;
	long long v;

	if (p == NULL || !((*p >= '0' && *p <= '9') || *p == '-'))
		return -1;
	v = strtoll(p, &end, 10);
	if (end == p)
		return -1;
	*out = (int64_t)v;
	return 0;
}
