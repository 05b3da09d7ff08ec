/*
 * A small validating JSON reader for `coldboot stats`, which reads text it did
 * not write (CloudWatch exports, other tools' log lines). It allocates
 * nothing: a value is a span of the caller's text. cb_stats_json_parse checks
 * the whole value against RFC 8259 first, so the accessors can walk it
 * quickly afterwards.
 */
#ifndef CB_STATS_JSON_H
#define CB_STATS_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Nesting deeper than this is refused, so hostile input cannot exhaust the stack. */
#define CB_STATS_JSON_MAX_DEPTH 64

enum cb_stats_json_type {
	CB_STATS_JSON_NULL = 0,
	CB_STATS_JSON_FALSE,
	CB_STATS_JSON_TRUE,
	CB_STATS_JSON_NUMBER,
	CB_STATS_JSON_STRING,
	CB_STATS_JSON_ARRAY,
	CB_STATS_JSON_OBJECT,
};

/* A value: [begin, end) of the caller's text, quotes and brackets included. */
struct cb_stats_json_value {
	enum cb_stats_json_type type;
	const char *begin;
	const char *end;
};

/*
 * Parses one value from text[0, len) after optional whitespace. On success
 * fills *value and sets *consumed to the bytes used (leading whitespace
 * included, trailing not) and returns 0. Returns -1 when the text does not
 * start with a valid value (bad syntax, cut short, nested too deep).
 */
int cb_stats_json_parse(const char *text, size_t len, struct cb_stats_json_value *value,
			size_t *consumed);

/* Walks the members of an object or the elements of an array. */
struct cb_stats_json_iter {
	const char *p;
	const char *end;
	int is_object;
};

void cb_stats_json_iter_init(struct cb_stats_json_iter *it,
			     const struct cb_stats_json_value *container);

/*
 * Gets the next member (key is set for objects, may be NULL for arrays).
 * Returns 1 when a value was read, 0 at the end.
 */
int cb_stats_json_next(struct cb_stats_json_iter *it, struct cb_stats_json_value *key,
		       struct cb_stats_json_value *value);

/* Finds the member named key in an object. Returns 0 when found, -1 otherwise. */
int cb_stats_json_member(const struct cb_stats_json_value *object, const char *key,
			 struct cb_stats_json_value *value);

/*
 * Decodes a string value into out (UTF-8, NUL-terminated; \u escapes decoded,
 * a lone surrogate becomes U+FFFD). *len_out, when not NULL, gets its length.
 * Returns -1 when the value is not a string or does not fit.
 */
int cb_stats_json_string(const struct cb_stats_json_value *value, char *out, size_t out_size,
			 size_t *len_out);

/* Non-zero when a string value (or key) decodes to exactly s. */
int cb_stats_json_string_is(const struct cb_stats_json_value *value, const char *s);

/*
 * Reads a number as an integer: exact for integers that fit, rounded for
 * fractions and exponents within range. Returns -1 otherwise.
 */
int cb_stats_json_i64(const struct cb_stats_json_value *value, int64_t *out);

#endif
