/* Listing bundles/, for `coldboot status` and eviction. */
#define _DEFAULT_SOURCE /* fdopendir */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

enum cb_status cb_cache_each_bundle(struct cb_cache *cache,
				    void (*fn)(void *ctx, const char *digest, int dir_fd),
				    void *ctx, struct cb_error *err)
{
	struct dirent *entry;
	DIR *dir;
	int fd = dup(cache->bundles_fd);

	if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return cb_error_set(err, CB_E_IO, e, "cannot list %s/bundles: %s", cache->root,
				    strerror(e));
	}
	rewinddir(dir);
	while ((entry = readdir(dir)) != NULL) {
		int bundle_fd;

		if (entry->d_name[0] == '.')
			continue;
		bundle_fd = openat(cache->bundles_fd, entry->d_name,
				   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		fn(ctx, entry->d_name, bundle_fd);
		if (bundle_fd >= 0)
			close(bundle_fd);
	}
	closedir(dir);
	return CB_OK;
}
