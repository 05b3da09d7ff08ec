/* Evicting older bundles when /tmp is short of space. */
#include "cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define EVICT_MAX_CANDIDATES 256

struct candidate {
	char digest[2 * CB_CHECKSUM_MAX_BYTES + 1];
	int64_t installed_at_ms;
};

struct scan {
	const char *keep;    /* the digest being installed */
	const char *current; /* "bundles/<digest>" or "" */
	struct candidate items[EVICT_MAX_CANDIDATES];
	size_t count;
};

uint64_t cb_cache_free_bytes(int fd)
{
	struct statvfs vfs;

	if (fstatvfs(fd, &vfs) != 0)
		return 0;
	return (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
}

static void collect(void *ctx, const char *digest, int dir_fd)
{
	struct scan *scan = ctx;
	struct cb_marker marker;
	struct cb_error err;
	struct candidate *item;

	if (strcmp(digest, scan->keep) == 0 || strlen(digest) >= sizeof(item->digest) ||
	    (strncmp(scan->current, "bundles/", 8) == 0 && strcmp(scan->current + 8, digest) == 0) ||
	    scan->count == EVICT_MAX_CANDIDATES)
		return;
	item = &scan->items[scan->count++];
	strcpy(item->digest, digest);
	/* A bundle without a valid marker is the first to go. */
	item->installed_at_ms = 0;
	if (dir_fd >= 0 && cb_marker_read(dir_fd, &marker, &err) == CB_OK)
		item->installed_at_ms = marker.installed_at_ms;
}

static int older_first(const void *a, const void *b)
{
	const struct candidate *x = a;
	const struct candidate *y = b;

	return (x->installed_at_ms > y->installed_at_ms) - (x->installed_at_ms < y->installed_at_ms);
}

enum cb_status cb_cache_evict(struct cb_cache *cache, const struct cb_checksum *keep,
			      uint64_t needed_bytes, uint64_t *free_bytes, struct cb_error *err)
{
	char current[PATH_MAX];
	struct scan *scan;
	enum cb_status status;

	*free_bytes = cb_cache_free_bytes(cache->root_fd);
	if (*free_bytes >= needed_bytes)
		return CB_OK;
	scan = calloc(1, sizeof(*scan));
	if (scan == NULL)
		return cb_error_set(err, CB_E_NOMEM, 0, "out of memory");
	cb_cache_current(cache, current, sizeof(current));
	scan->keep = keep->hex;
	scan->current = current;
	status = cb_cache_each_bundle(cache, collect, scan, err);
	if (status != CB_OK)
		goto out;
	qsort(scan->items, scan->count, sizeof(scan->items[0]), older_first);
	for (size_t i = 0; i < scan->count && *free_bytes < needed_bytes; i++) {
		struct cb_checksum victim;

		/* cb_cache_discard only needs the digest's hex. */
		memset(&victim, 0, sizeof(victim));
		strcpy(victim.hex, scan->items[i].digest);
		cb_log(CB_LOG_INFO,
		       "evicting bundle %s to make room (%llu bytes needed, %llu free)", victim.hex,
		       (unsigned long long)needed_bytes, (unsigned long long)*free_bytes);
		status = cb_cache_discard(cache, &victim, err);
		if (status != CB_OK)
			goto out;
		*free_bytes = cb_cache_free_bytes(cache->root_fd);
	}
out:
	free(scan);
	return status;
}
