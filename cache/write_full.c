/*
 * Writing a buffer whole, and reading one whole at an offset: the one
 * write-until-done and the one read-until-done loop of the project. The
 * stats lines appended with O_APPEND are not written through it: they are
 * one write() each by design, so concurrent lines never interleave.
 */
#include "cache.h"

#include <errno.h>
#include <unistd.h>

int cb_write_full(int fd, const void *data, size_t len, int64_t offset)
{
	const unsigned char *p = data;

	while (len > 0) {
		ssize_t n = offset < 0 ? write(fd, p, len) : pwrite(fd, p, len, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return ENOSPC;
		p += n;
		len -= (size_t)n;
		if (offset >= 0)
			offset += n;
	}
	return 0;
}

int cb_read_full(int fd, void *buf, size_t len, uint64_t offset)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		if (n == 0)
			return -1;
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}
