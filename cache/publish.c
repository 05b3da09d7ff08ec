/* The one file that needs _GNU_SOURCE: renameat2(RENAME_NOREPLACE). */
#define _GNU_SOURCE
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/*
 * Moves staging/<digest> to bundles/<digest> without ever replacing an
 * existing bundle. File systems without renameat2 flags (EINVAL) get a plain
 * rename after an existence check, which is race-free because every
 * publisher holds the install lock.
 */
static int rename_noreplace(int from_fd, const char *from, int to_fd, const char *to)
{
	struct stat st;

	if (renameat2(from_fd, from, to_fd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (fstatat(to_fd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(from_fd, from, to_fd, to);
}

enum cb_status cb_cache_publish(struct cb_cache *cache, const struct cb_checksum *sum,
				struct cb_error *err)
{
	char rel[sizeof("staging/") + sizeof(sum->hex)];

	snprintf(rel, sizeof(rel), "staging/%s", sum->hex);
	if (rename_noreplace(cache->root_fd, rel, cache->bundles_fd, sum->hex) != 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot publish %s/%s as %s/bundles/%s: %s",
				    cache->root, rel, cache->root, sum->hex, strerror(errno));
	return cb_cache_point_current(cache, sum, err);
}
