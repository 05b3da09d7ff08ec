/* cache/marker.c: round trip, and every kind of damage is detected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <unistd.h>

#include "../cache/cache.h"

static int make_dir(char *path)
{
	strcpy(path, "/tmp/cb_test_marker_XXXXXX");
	assert_non_null(mkdtemp(path));
	return open(path, O_RDONLY | O_DIRECTORY);
}

static void put(int dir_fd, const char *text)
{
	int fd;

	unlinkat(dir_fd, CB_MARKER_NAME, 0);
	fd = openat(dir_fd, CB_MARKER_NAME, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void round_trip(void **state)
{
	char path[64];
	int dir_fd = make_dir(path);
	struct cb_marker in, out;
	struct cb_error err;

	(void)state;
	memset(&in, 0, sizeof(in));
	strcpy(in.url, "https://host/b.zip?<redacted>");
	strcpy(in.checksum, "xxh3:00112233445566778899aabbccddeeff");
	in.bytes = 123456789012ull;
	in.unpacked_bytes = 5;
	in.files = 42;
	in.attempts = 3;
	in.fetch_ms = 10;
	in.unpack_ms = 20;
	in.installed_at_ms = 1795000000123;
	assert_int_equal(cb_marker_write(dir_fd, &in, &err), CB_OK);
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_OK);
	assert_string_equal(out.url, in.url);
	assert_string_equal(out.checksum, in.checksum);
	assert_true(out.bytes == in.bytes);
	assert_true(out.files == 42 && out.attempts == 3 &&
		    out.installed_at_ms == in.installed_at_ms);
	/* Never overwrites an existing marker. */
	assert_int_equal(cb_marker_write(dir_fd, &in, &err), CB_E_IO);
	unlinkat(dir_fd, CB_MARKER_NAME, 0);
	close(dir_fd);
	rmdir(path);
}

static void detects_damage(void **state)
{
	char path[64];
	int dir_fd = make_dir(path);
	struct cb_marker out;
	struct cb_error err;

	(void)state;
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_E_NOT_FOUND);
	put(dir_fd, "");
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_E_CONFIG);
	put(dir_fd, "{\"coldboot\":1,\"url\":\"x\",\"checksum\":\"xxh3:00\"");
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_E_CONFIG);
	put(dir_fd, "{\"name\":\"something else\"}\n");
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_E_CONFIG);
	put(dir_fd, "{\"coldboot\":1,\"url\":\"x\",\"checksum\":\"c\",\"bytes\":1,\"files\":1}\n");
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_OK);
	unlinkat(dir_fd, CB_MARKER_NAME, 0);
	assert_int_equal(symlinkat("/etc/passwd", dir_fd, CB_MARKER_NAME), 0);
	assert_int_equal(cb_marker_read(dir_fd, &out, &err), CB_E_CONFIG);
	unlinkat(dir_fd, CB_MARKER_NAME, 0);
	close(dir_fd);
	rmdir(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(detects_damage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
