/* cache/checksum.c and cache/json.c: parsing, formatting, comparing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../cache/cache.h"
#include "../cache/json.h"

static void parses_xxh3_and_xxh64(void **state)
{
	struct cb_checksum sum;
	struct cb_error err;
	char text[CB_CHECKSUM_TEXT_MAX];

	(void)state;
	assert_int_equal(cb_checksum_parse("xxh3:00112233445566778899AABBCCDDEEFF", &sum, &err),
			 CB_OK);
	assert_int_equal(sum.algo, CB_HASH_XXH3_128);
	assert_int_equal(sum.size_bytes, 16);
	assert_int_equal(sum.bytes[0], 0x00);
	assert_int_equal(sum.bytes[15], 0xff);
	assert_string_equal(sum.hex, "00112233445566778899aabbccddeeff");
	cb_checksum_format(&sum, text, sizeof(text));
	assert_string_equal(text, "xxh3:00112233445566778899aabbccddeeff");

	assert_int_equal(cb_checksum_parse("xxh64:0123456789abcdef", &sum, &err), CB_OK);
	assert_int_equal(sum.algo, CB_HASH_XXH64);
	assert_int_equal(sum.size_bytes, 8);
	cb_checksum_format(&sum, text, sizeof(text));
	assert_string_equal(text, "xxh64:0123456789abcdef");
}

static void refuses_malformed_with_a_hint(void **state)
{
	static const char *const bad[] = {
		"",
		"sha256:00112233445566778899aabbccddeeff",
		"xxh3:00112233445566778899aabbccddeef",
		"xxh3:00112233445566778899aabbccddeeff0",
		"xxh3:0011223344556677889gaabbccddeeff",
		"xxh64:00112233445566778899aabbccddeeff",
		"00112233445566778899aabbccddeeff",
	};
	struct cb_checksum sum;
	struct cb_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cb_error_init(&err);
		assert_int_equal(cb_checksum_parse(bad[i], &sum, &err), CB_E_CONFIG);
		assert_non_null(strstr(err.message, "coldboot hash"));
	}
	assert_int_equal(cb_checksum_parse(NULL, &sum, &err), CB_E_CONFIG);
	assert_int_equal(cb_status_exit_code(CB_E_CONFIG), 3);
}

static void compares(void **state)
{
	struct cb_checksum a, b, c;
	struct cb_error err;

	(void)state;
	assert_int_equal(cb_checksum_parse("xxh3:00112233445566778899aabbccddeeff", &a, &err),
			 CB_OK);
	assert_int_equal(cb_checksum_parse("xxh3:00112233445566778899AABBCCDDEEFF", &b, &err),
			 CB_OK);
	assert_int_equal(cb_checksum_parse("xxh3:00112233445566778899aabbccddeefe", &c, &err),
			 CB_OK);
	assert_true(cb_checksum_equal(&a, &b));
	assert_false(cb_checksum_equal(&a, &c));
}

static void json_round_trip(void **state)
{
	char storage[256];
	char out[64];
	struct cb_buf buf;
	uint64_t u;
	int64_t i;

	(void)state;
	cb_buf_init(&buf, storage, sizeof(storage));
	cb_buf_printf(&buf, "{\"nested\":{\"n\":1},\"s\":");
	cb_buf_json_string(&buf, "a \"q\" \\ \n\x01");
	cb_buf_printf(&buf, ",\"n\":18446744073709551615,\"neg\":-5}");
	assert_false(buf.overflow);
	assert_int_equal(cb_json_get_string(storage, "s", out, sizeof(out)), 0);
	assert_string_equal(out, "a \"q\" \\ \n\x01");
	assert_int_equal(cb_json_get_u64(storage, "n", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(cb_json_get_i64(storage, "neg", &i), 0);
	assert_true(i == -5);
	/* Only top-level keys are found, and a string is not a number. */
	assert_int_equal(cb_json_get_u64("{\"nested\":{\"n\":1}}", "n", &u), -1);
	assert_int_equal(cb_json_get_u64(storage, "s", &u), -1);
	assert_int_equal(cb_json_get_string(storage, "missing", out, sizeof(out)), -1);
	/* A value that does not fit is refused, not truncated. */
	assert_int_equal(cb_json_get_string(storage, "s", out, 4), -1);

	cb_buf_init(&buf, storage, 8);
	cb_buf_printf(&buf, "0123456789");
	assert_true(buf.overflow);
}

static void formats_utc_without_time_zones(void **state)
{
	char out[40];

	(void)state;
	cb_clock_format_rfc3339(0, out, sizeof(out));
	assert_string_equal(out, "1970-01-01T00:00:00.000Z");
	cb_clock_format_rfc3339(951782400123, out, sizeof(out)); /* a leap day */
	assert_string_equal(out, "2000-02-29T00:00:00.123Z");
	cb_clock_format_rfc3339(1795334272507, out, sizeof(out));
	assert_string_equal(out, "2026-11-22T07:57:52.507Z");
	cb_clock_format_rfc3339(4107542399999, out, sizeof(out));
	assert_string_equal(out, "2100-02-28T23:59:59.999Z");
	cb_clock_format_rfc3339(-1, out, sizeof(out));
	assert_string_equal(out, "1969-12-31T23:59:59.999Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_xxh3_and_xxh64),
		cmocka_unit_test(refuses_malformed_with_a_hint),
		cmocka_unit_test(compares),
		cmocka_unit_test(json_round_trip),
		cmocka_unit_test(formats_utc_without_time_zones),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
