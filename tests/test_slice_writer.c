/* bootstrap/slice_writer.c: slices written in order with their CRC, failures, abandoning. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../bootstrap/inflate.h"
#include "../bootstrap/slice_writer.h"

#define SLOT_BYTES 4096u
#define SLOTS 3u

/* A scratch file, unlinked at once: its descriptor, open for reading and writing. */
static int scratch_file(void)
{
	char path[] = "/tmp/cb-slice-writer-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

/*
 * 200 slices of varying length (0 included) through 3 slots: the file holds
 * exactly the bytes handed over, in order, and the CRC is theirs.
 */
static void slices_in_order(void **state)
{
	unsigned char buf[SLOTS * SLOT_BYTES];
	size_t total = 0, want_bytes = 200u * SLOT_BYTES;
	unsigned char *want = malloc(want_bytes), *got = malloc(want_bytes);
	struct cb_slice_writer *wr;
	uint32_t crc = 1;
	int fd = scratch_file();

	(void)state;
	assert_non_null(want);
	assert_non_null(got);
	wr = cb_slice_writer_start(fd, buf, SLOT_BYTES, SLOTS);
	assert_non_null(wr);
	for (size_t i = 0; i < 200; i++) {
		size_t len = (i * 977u) % (SLOT_BYTES + 1); /* 0 .. SLOT_BYTES */
		unsigned char *slot = cb_slice_writer_next(wr);

		assert_non_null(slot);
		assert_true(slot >= buf && slot + SLOT_BYTES <= buf + sizeof(buf));
		for (size_t j = 0; j < len; j++)
			want[total + j] = slot[j] = (unsigned char)((total + j) * 131u >> 3);
		total += len;
		cb_slice_writer_put(wr, len);
	}
	assert_int_equal(cb_slice_writer_finish(wr, false, &crc), 0);
	assert_int_equal(crc, cb_inflate_crc32(0, want, total));
	assert_int_equal(pread(fd, got, want_bytes, 0), (ssize_t)total);
	assert_memory_equal(got, want, total);
	close(fd);
	free(want);
	free(got);
}

/* A write that fails: the next slice is refused, and finish names the errno. */
static void failed_write(void **state)
{
	unsigned char buf[SLOTS * SLOT_BYTES];
	struct cb_slice_writer *wr;
	unsigned char *slot;
	uint32_t crc;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* every write: EBADF */
	size_t handed = 0;

	(void)state;
	assert_true(fd >= 0);
	wr = cb_slice_writer_start(fd, buf, SLOT_BYTES, SLOTS);
	assert_non_null(wr);
	/* However fast the thread, the failure shows within a few slices. */
	while ((slot = cb_slice_writer_next(wr)) != NULL) {
		assert_true(handed < 100);
		memset(slot, 'x', SLOT_BYTES);
		cb_slice_writer_put(wr, SLOT_BYTES);
		handed++;
	}
	assert_true(handed >= 1);
	assert_int_equal(cb_slice_writer_finish(wr, false, &crc), EBADF);
	close(fd);
}

/* Abandoned with slices still queued: it ends without waiting to write them all. */
static void abandoned(void **state)
{
	unsigned char buf[SLOTS * SLOT_BYTES];
	struct cb_slice_writer *wr;
	uint32_t crc;
	int fd = scratch_file();
	struct stat sb;

	(void)state;
	wr = cb_slice_writer_start(fd, buf, SLOT_BYTES, SLOTS);
	assert_non_null(wr);
	for (size_t i = 0; i < SLOTS; i++) {
		unsigned char *slot = cb_slice_writer_next(wr);

		assert_non_null(slot);
		memset(slot, 'y', SLOT_BYTES);
		cb_slice_writer_put(wr, SLOT_BYTES);
	}
	assert_int_equal(cb_slice_writer_finish(wr, true, &crc), 0);
	/* Some of them, maybe none: never more than were handed over. */
	assert_int_equal(fstat(fd, &sb), 0);
	assert_true((size_t)sb.st_size <= SLOTS * SLOT_BYTES);
	assert_int_equal((size_t)sb.st_size % SLOT_BYTES, 0);
	close(fd);
}

/* Fewer than two slots: no thread, the caller writes itself. */
static void too_few_slots(void **state)
{
	unsigned char buf[SLOT_BYTES];

	(void)state;
	assert_null(cb_slice_writer_start(1, buf, SLOT_BYTES, 1));
	assert_null(cb_slice_writer_start(1, buf, SLOT_BYTES, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(slices_in_order),
		cmocka_unit_test(failed_write),
		cmocka_unit_test(abandoned),
		cmocka_unit_test(too_few_slots),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
