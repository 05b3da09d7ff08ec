/* cache/write_full.c: whole or an errno, at an offset or at the position, never past a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cache/cache.h"

#define BIG (3u << 20)

static int temp_file(char *path)
{
	int fd;

	strcpy(path, "/tmp/cb_test_write_full_XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static unsigned char *pattern(size_t len)
{
	unsigned char *p = malloc(len);

	assert_non_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + i / 4096);
	return p;
}

/* At an offset the position stays; at the position it moves; the bytes are all there. */
static void offset_and_position(void **state)
{
	char path[64];
	int fd = temp_file(path);
	unsigned char *p = pattern(BIG);
	unsigned char *back = malloc(BIG);
	struct stat sb;

	(void)state;
	assert_non_null(back);
	assert_int_equal(cb_write_full(fd, p, BIG, 100), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
	assert_int_equal(cb_write_full(fd, "head", 4, -1), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 4);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 100 + BIG);
	assert_int_equal(pread(fd, back, BIG, 100), (ssize_t)BIG);
	assert_memory_equal(back, p, BIG);
	assert_int_equal(cb_write_full(fd, p, 0, 0), 0);
	free(back);
	free(p);
	close(fd);
}

/*
 * A file-size limit cuts a write short, then fails the next: the loop writes
 * up to the limit and returns EFBIG, where a single write() would have
 * reported success for part of the buffer.
 */
static void short_write_then_errno(void **state)
{
	char path[64];
	int fd = temp_file(path);
	unsigned char *p = pattern(BIG);
	struct rlimit old, lim;
	struct stat sb;
	void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1u << 20;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(cb_write_full(fd, p, BIG, 4096), EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 1u << 20);
	free(p);
	close(fd);
}

/* A full device and a closed pipe: their errno, nothing else. */
static void errors(void **state)
{
	int fds[2];
	int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
	void (*old_handler)(int) = signal(SIGPIPE, SIG_IGN);

	(void)state;
	assert_true(full >= 0);
	assert_int_equal(cb_write_full(full, "x", 1, -1), ENOSPC);
	close(full);
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	assert_int_equal(cb_write_full(fds[1], "x", 1, -1), EPIPE);
	close(fds[1]);
	signal(SIGPIPE, old_handler);
	assert_int_equal(cb_write_full(-1, "x", 1, 0), EBADF);
}

/* cb_read_full: the bytes at an offset, -1 when the file ends first, the errno of a bad read. */
static void read_full(void **state)
{
	char path[64];
	int fd = temp_file(path);
	unsigned char *p = pattern(BIG), *got = malloc(BIG);

	(void)state;
	assert_non_null(got);
	assert_int_equal(cb_write_full(fd, p, BIG, 0), 0);
	assert_int_equal(cb_read_full(fd, got, BIG - 1000, 1000), 0);
	assert_memory_equal(got, p + 1000, BIG - 1000);
	assert_int_equal(cb_read_full(fd, got, 10, BIG - 5), -1);
	assert_int_equal(cb_read_full(-1, got, 1, 0), EBADF);
	close(fd);
	free(got);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(offset_and_position),
		cmocka_unit_test(short_write_then_errno),
		cmocka_unit_test(errors),
		cmocka_unit_test(read_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
