/*
 * Small JSON helpers private to cache/: a bounded writer, and a reader for the
 * flat objects this module writes itself (marker, container.json). Not a
 * general parser: it finds "key": value at the top level of one object.
 */
#ifndef CB_JSON_H
#define CB_JSON_H

#include <stddef.h>
#include <stdint.h>

/* A caller-owned fixed buffer; writes past its end set overflow instead. */
struct cb_buf {
	char *data;
	size_t size;
	size_t len;
	int overflow;
};

void cb_buf_init(struct cb_buf *buf, char *storage, size_t size);
void cb_buf_printf(struct cb_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted JSON string, escaping quotes, backslashes and control bytes. */
void cb_buf_json_string(struct cb_buf *buf, const char *s);

/*
 * Finds the top-level "key" in the object json and reads its value.
 * Return 0 on success, -1 when the key is missing or the value has the wrong
 * type or does not fit.
 */
int cb_json_get_string(const char *json, const char *key, char *out, size_t out_size);
int cb_json_get_u64(const char *json, const char *key, uint64_t *out);
int cb_json_get_i64(const char *json, const char *key, int64_t *out);

#endif
