/*
 * Reading the header lines of an HTTP response, as libcurl hands them over
 * one at a time ("Name: value\r\n"). No allocation; nothing here trusts the
 * server: every number is checked for digits only and a bounded length.
 */
#ifndef CB_HTTP_HEADER_H
#define CB_HTTP_HEADER_H

#include <stddef.h>
#include <stdint.h>

/* Whether s starts with prefix (lower case), ignoring the case of s. */
int cb_http_starts_with_nocase(const char *s, const char *prefix);

/*
 * The value of line[0..size) when its name is name (lower case), without
 * the blanks around it and the line end; NULL for another name.
 */
const char *cb_http_header_value(const char *line, size_t size, const char *name,
				 size_t *value_size);

/* A decimal count of 1 to 18 digits, nothing else (signs, spaces). Returns 0, or -1. */
int cb_http_parse_count(const char *text, size_t size, int64_t *out);

/*
 * A Content-Range value, "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"): each
 * field read, or -1 when it cannot be (all three when FIRST cannot).
 */
void cb_http_range_fields(const char *v, size_t size, int64_t *first, int64_t *last, int64_t *total);

/*
 * Whether line[0..n) starts a response ("HTTP/1.1 206 ..."); then its status
 * goes to *status, 0 when unreadable.
 */
int cb_http_status_line(const char *line, size_t n, long *status);

#endif
