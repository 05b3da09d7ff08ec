/* cache/url.c: no secret survives redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../cache/cache.h"

static void check(const char *url, const char *expected)
{
	char out[256];

	cb_url_redact(url, out, sizeof(out));
	assert_string_equal(out, expected);
}

static void redacts_queries_and_userinfo(void **state)
{
	(void)state;
	check("https://b.s3.amazonaws.com/k.zip?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
	      "https://b.s3.amazonaws.com/k.zip?<redacted>");
	check("https://user:pass@host/path", "https://host/path");
	check("http://host:8080/a/b.zip", "http://host:8080/a/b.zip");
	check("s3://bucket/key with space.zip", "s3://bucket/key with space.zip");
	check("file:///tmp/b.zip", "file:///tmp/b.zip");
	check("https://host/p#frag", "https://host/p?<redacted>");
	check("https://host?sig=1", "https://host?<redacted>");
	/* An @ in the path is not userinfo. */
	check("https://host/a@b", "https://host/a@b");
}

static void truncates_safely(void **state)
{
	char out[12];

	(void)state;
	cb_url_redact("https://host/very/long/path?secret", out, sizeof(out));
	assert_int_equal(strlen(out), sizeof(out) - 1);
	assert_null(strstr(out, "secret"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(redacts_queries_and_userinfo),
		cmocka_unit_test(truncates_safely),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
