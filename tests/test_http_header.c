/* bootstrap/http_header.c: header lines as a server may send them, well or badly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../bootstrap/http_header.h"

/* The value of a header line given as a C string, copied out ("" when absent). */
static const char *value_of(const char *line, const char *name)
{
	static char out[128];
	size_t size = 0;
	const char *v = cb_http_header_value(line, strlen(line), name, &size);

	if (v == NULL)
		return NULL;
	assert_true(size < sizeof(out));
	memcpy(out, v, size);
	out[size] = '\0';
	return out;
}

static void header_values_any_case_without_blanks_and_line_end(void **state)
{
	(void)state;
	assert_string_equal(value_of("Content-Length: 1234\r\n", "content-length"), "1234");
	assert_string_equal(value_of("ETAG:\t\"abc\"  \r\n", "etag"), "\"abc\"");
	assert_string_equal(value_of("etag:\r\n", "etag"), "");
	assert_null(value_of("ETag-Extra: x\r\n", "etag")); /* a longer name */
	assert_null(value_of("Content-Lengt: 1\r\n", "content-length"));
	assert_null(value_of("etag \"abc\"\r\n", "etag")); /* no colon */
	assert_null(value_of("etag", "etag"));             /* no room for a value */
}

static void counts_are_digits_only(void **state)
{
	int64_t n = -1;

	(void)state;
	assert_int_equal(cb_http_parse_count("0", 1, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cb_http_parse_count("999999999999999999", 18, &n), 0);
	assert_int_equal(n, INT64_C(999999999999999999));
	assert_int_equal(cb_http_parse_count("1000000000000000000", 19, &n),
			 -1); /* could overflow */
	assert_int_equal(cb_http_parse_count("", 0, &n), -1);
	assert_int_equal(cb_http_parse_count("-1", 2, &n), -1);
	assert_int_equal(cb_http_parse_count("+1", 2, &n), -1);
	assert_int_equal(cb_http_parse_count(" 1", 2, &n), -1);
	assert_int_equal(cb_http_parse_count("12a", 3, &n), -1);
	/* Only size bytes are read: "12" of "123". */
	assert_int_equal(cb_http_parse_count("123", 2, &n), 0);
	assert_int_equal(n, 12);
}

static void content_ranges(void **state)
{
	static const struct {
		const char *v;
		int64_t first, last, total;
	} cases[] = {
		{"bytes 0-99/100", 0, 99, 100},
		{"bytes 83497361-83628432/83628433", 83497361, 83628432, 83628433},
		{"bytes 5-9/*", 5, 9, -1},
		{"bytes */100", -1, -1, -1}, /* an unsatisfied range: no first byte */
		{"bytes 5-x/100", 5, -1, 100},
		{"bits 0-1/2", -1, -1, -1},
		{"bytes 0-1", -1, -1, -1},   /* no total */
		{"bytes 0/1-2", -1, -1, -1}, /* slash before dash */
		{"bytes", -1, -1, -1},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t first, last, total;

		cb_http_range_fields(cases[i].v, strlen(cases[i].v), &first, &last, &total);
		assert_int_equal(first, cases[i].first);
		assert_int_equal(last, cases[i].last);
		assert_int_equal(total, cases[i].total);
	}
}

static void status_lines(void **state)
{
	long status = -1;
	const char *ok = "HTTP/1.1 206 Partial Content\r\n";
	const char *h2 = "HTTP/2 404\r\n";
	const char *bad = "HTTP/1.1 2x6 Odd\r\n";
	const char *header = "Content-Type: text/plain\r\n";

	(void)state;
	assert_true(cb_http_status_line(ok, strlen(ok), &status));
	assert_int_equal(status, 206);
	assert_true(cb_http_status_line(h2, strlen(h2), &status));
	assert_int_equal(status, 404);
	assert_true(cb_http_status_line(bad, strlen(bad), &status));
	assert_int_equal(status, 0); /* a response, status unreadable */
	status = -1;
	assert_false(cb_http_status_line(header, strlen(header), &status));
	assert_int_equal(status, -1);
	assert_true(cb_http_status_line("HTTP/1.1 20", 11, &status));
	assert_int_equal(status, 0); /* cut short: never read past n */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(header_values_any_case_without_blanks_and_line_end),
		cmocka_unit_test(counts_are_digits_only),
		cmocka_unit_test(content_ranges),
		cmocka_unit_test(status_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
