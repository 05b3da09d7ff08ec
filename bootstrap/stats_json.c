/* A validating JSON reader over the caller's text; see stats_json.h. */
#include "stats_json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Validates a string starting at its opening quote; returns the byte after the closing one. */
static const char *parse_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c != '\\')
			continue;
		p++;
		if (p >= end)
			return NULL;
		switch (*p) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			break;
		case 'u':
			if (end - p < 5)
				return NULL;
			for (int i = 1; i <= 4; i++) {
				if (hex_value(p[i]) < 0)
					return NULL;
			}
			p += 4;
			break;
		default:
			return NULL;
		}
	}
	return NULL;
}

static const char *parse_number(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return NULL;
	if (*p == '0') {
		p++;
	} else if (is_digit(*p)) {
		while (p < end && is_digit(*p))
			p++;
	} else {
		return NULL;
	}
	if (p < end && *p == '.') {
		p++;
		if (p >= end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return NULL;
		while (p < end && is_digit(*p))
			p++;
	}
	return p;
}

static const char *parse_literal(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
		return NULL;
	return p + n;
}

/* Validates one value at p (no leading whitespace); returns the byte after it. */
static const char *parse_value(const char *p, const char *end, int depth,
			       enum cb_stats_json_type *type)
{
	if (p >= end)
		return NULL;
	switch (*p) {
	case '"':
		*type = CB_STATS_JSON_STRING;
		return parse_string(p, end);
	case 'n':
		*type = CB_STATS_JSON_NULL;
		return parse_literal(p, end, "null");
	case 't':
		*type = CB_STATS_JSON_TRUE;
		return parse_literal(p, end, "true");
	case 'f':
		*type = CB_STATS_JSON_FALSE;
		return parse_literal(p, end, "false");
	case '{':
	case '[': {
		int is_object = *p == '{';
		char close = is_object ? '}' : ']';
		enum cb_stats_json_type inner;

		if (depth >= CB_STATS_JSON_MAX_DEPTH)
			return NULL;
		*type = is_object ? CB_STATS_JSON_OBJECT : CB_STATS_JSON_ARRAY;
		p = skip_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (is_object) {
				if (p >= end || *p != '"')
					return NULL;
				p = parse_string(p, end);
				if (p == NULL)
					return NULL;
				p = skip_ws(p, end);
				if (p >= end || *p != ':')
					return NULL;
				p = skip_ws(p + 1, end);
			}
			p = parse_value(p, end, depth + 1, &inner);
			if (p == NULL)
				return NULL;
			p = skip_ws(p, end);
			if (p >= end)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p != ',')
				return NULL;
			p = skip_ws(p + 1, end);
		}
	}
	default:
		*type = CB_STATS_JSON_NUMBER;
		return parse_number(p, end);
	}
}

int cb_stats_json_parse(const char *text, size_t len, struct cb_stats_json_value *value,
			size_t *consumed)
{
	const char *end = text + len;
	const char *p = skip_ws(text, end);
	const char *after = parse_value(p, end, 0, &value->type);

	if (after == NULL)
		return -1;
	value->begin = p;
	value->end = after;
	if (consumed != NULL)
		*consumed = (size_t)(after - text);
	return 0;
}

/*
 * Skips a value already validated by cb_stats_json_parse: strings by their
 * escapes, containers by bracket depth, scalars up to the next delimiter.
 */
static const char *skip_valid(const char *p, const char *end, enum cb_stats_json_type *type)
{
	int depth = 0;

	switch (*p) {
	case '"':
		*type = CB_STATS_JSON_STRING;
		break;
	case '{':
		*type = CB_STATS_JSON_OBJECT;
		break;
	case '[':
		*type = CB_STATS_JSON_ARRAY;
		break;
	case 'n':
		*type = CB_STATS_JSON_NULL;
		return p + 4;
	case 't':
		*type = CB_STATS_JSON_TRUE;
		return p + 4;
	case 'f':
		*type = CB_STATS_JSON_FALSE;
		return p + 5;
	default:
		*type = CB_STATS_JSON_NUMBER;
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
		       *p != '\n' && *p != '\r')
			p++;
		return p;
	}
	for (; p < end; p++) {
		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++) {
				if (*p == '\\')
					p++;
			}
			if (depth == 0)
				return p + 1;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			depth--;
			if (depth == 0)
				return p + 1;
		}
	}
	return end;
}

void cb_stats_json_iter_init(struct cb_stats_json_iter *it,
			     const struct cb_stats_json_value *container)
{
	it->is_object = container->type == CB_STATS_JSON_OBJECT;
	if (container->type != CB_STATS_JSON_OBJECT && container->type != CB_STATS_JSON_ARRAY) {
		it->p = it->end = container->end;
		return;
	}
	it->p = skip_ws(container->begin + 1, container->end);
	it->end = container->end - 1; /* the closing bracket */
}

int cb_stats_json_next(struct cb_stats_json_iter *it, struct cb_stats_json_value *key,
		       struct cb_stats_json_value *value)
{
	const char *p = skip_ws(it->p, it->end);

	if (p < it->end && *p == ',')
		p = skip_ws(p + 1, it->end);
	if (p >= it->end)
		return 0;
	if (it->is_object) {
		enum cb_stats_json_type key_type;
		const char *key_end = skip_valid(p, it->end, &key_type);

		if (key != NULL) {
			key->type = key_type;
			key->begin = p;
			key->end = key_end;
		}
		p = skip_ws(key_end, it->end);
		p = skip_ws(p + 1, it->end); /* the colon */
	}
	value->begin = p;
	value->end = skip_valid(p, it->end, &value->type);
	it->p = value->end;
	return 1;
}

int cb_stats_json_member(const struct cb_stats_json_value *object, const char *key,
			 struct cb_stats_json_value *value)
{
	struct cb_stats_json_iter it;
	struct cb_stats_json_value k;

	if (object->type != CB_STATS_JSON_OBJECT)
		return -1;
	cb_stats_json_iter_init(&it, object);
	while (cb_stats_json_next(&it, &k, value)) {
		if (cb_stats_json_string_is(&k, key))
			return 0;
	}
	return -1;
}

/* Appends code point cp as UTF-8; returns the bytes written or 0 when out of room. */
static size_t put_utf8(char *out, size_t room, unsigned long cp)
{
	if (cp < 0x80) {
		if (room < 1)
			return 0;
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		if (room < 2)
			return 0;
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		if (room < 3)
			return 0;
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	if (room < 4)
		return 0;
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static unsigned long read_hex4(const char *p)
{
	unsigned long v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 4) | (unsigned long)hex_value(p[i]);
	return v;
}

int cb_stats_json_string(const struct cb_stats_json_value *value, char *out, size_t out_size,
			 size_t *len_out)
{
	const char *p;
	const char *end;
	size_t n = 0;

	if (value->type != CB_STATS_JSON_STRING || out_size == 0)
		return -1;
	p = value->begin + 1;
	end = value->end - 1; /* the closing quote */
	while (p < end) {
		unsigned long cp;
		size_t w;

		if (*p != '\\') {
			if (n + 1 >= out_size)
				return -1;
			out[n++] = *p++;
			continue;
		}
		p++;
		switch (*p) {
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			cp = read_hex4(p + 1);
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 7 && p[1] == '\\' &&
			    p[2] == 'u') {
				unsigned long low = read_hex4(p + 3);

				if (low >= 0xdc00 && low <= 0xdfff) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
					p += 6;
				}
			}
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd;
			break;
		default:
			cp = (unsigned char)*p; /* " \ / */
			break;
		}
		p++;
		if (n + 1 >= out_size)
			return -1;
		w = put_utf8(out + n, out_size - 1 - n, cp);
		if (w == 0)
			return -1;
		n += w;
	}
	out[n] = '\0';
	if (len_out != NULL)
		*len_out = n;
	return 0;
}

int cb_stats_json_string_is(const struct cb_stats_json_value *value, const char *s)
{
	size_t want = strlen(s);
	size_t raw = value->type == CB_STATS_JSON_STRING ? (size_t)(value->end - value->begin) : 0;
	char buf[256];
	size_t len;

	if (raw < 2)
		return 0;
	/* The fast path: no escapes, compare in place. */
	if (raw - 2 == want && memchr(value->begin, '\\', raw) == NULL)
		return memcmp(value->begin + 1, s, want) == 0;
	if (want >= sizeof(buf) || memchr(value->begin, '\\', raw) == NULL)
		return 0;
	if (cb_stats_json_string(value, buf, sizeof(buf), &len) != 0)
		return 0;
	return len == want && memcmp(buf, s, want) == 0;
}

int cb_stats_json_i64(const struct cb_stats_json_value *value, int64_t *out)
{
	char text[64];
	size_t len;
	char *end;

	if (value->type != CB_STATS_JSON_NUMBER)
		return -1;
	len = (size_t)(value->end - value->begin);
	if (len == 0 || len >= sizeof(text))
		return -1;
	memcpy(text, value->begin, len);
	text[len] = '\0';
	if (strpbrk(text, ".eE") == NULL) {
		long long v;

		errno = 0;
		v = strtoll(text, &end, 10);
		if (errno != 0 || *end != '\0')
			return -1;
		*out = (int64_t)v;
		return 0;
	} else {
		double d;

		errno = 0;
		d = strtod(text, &end);
		if (errno != 0 || *end != '\0' || !(d > -9.2e18 && d < 9.2e18))
			return -1;
		*out = (int64_t)(d < 0 ? d - 0.5 : d + 0.5);
		return 0;
	}
}
