/* Opening the cache root, looking bundles up, staging directories and current. */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

void cb_cache_init(struct cb_cache *cache)
{
	cache->root[0] = '\0';
	cache->root_fd = -1;
	cache->bundles_fd = -1;
	cache->lock_fd = -1;
}

void cb_cache_close(struct cb_cache *cache)
{
	cb_lock_release(cache);
	if (cache->bundles_fd >= 0)
		close(cache->bundles_fd);
	if (cache->root_fd >= 0)
		close(cache->root_fd);
	cb_cache_init(cache);
}

/* mkdir -p for the parents of path (the root itself is created by the caller). */
static void make_parents(const char *path)
{
	char buf[PATH_MAX];

	if (strlen(path) >= sizeof(buf))
		return;
	strcpy(buf, path);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		(void)mkdir(buf, 0755);
		*p = '/';
	}
}

/* Opens dir_fd/name as a directory, creating it (mode) when missing. */
static int open_or_make_dir(int dir_fd, const char *name, mode_t mode)
{
	int fd = openat(dir_fd, name, DIR_FLAGS);

	if (fd >= 0 || errno != ENOENT)
		return fd;
	if (mkdirat(dir_fd, name, mode) != 0 && errno != EEXIST)
		return -1;
	return openat(dir_fd, name, DIR_FLAGS);
}

enum cb_status cb_cache_open(struct cb_cache *cache, const char *root, struct cb_error *err)
{
	enum cb_status status = CB_OK;
	struct stat st;

	cb_cache_init(cache);
	if (root == NULL || root[0] != '/' || strlen(root) >= sizeof(cache->root) - 64)
		return cb_error_set(err, CB_E_CONFIG, 0,
				    "cache directory \"%s\" must be an absolute path (--dir, COLDBOOT_DIR)",
				    root != NULL ? root : "");
	strcpy(cache->root, root);
	/* Trailing slashes would double up in the paths we print. */
	for (size_t n = strlen(cache->root); n > 1 && cache->root[n - 1] == '/'; n--)
		cache->root[n - 1] = '\0';

	cache->root_fd = open(cache->root, DIR_FLAGS);
	if (cache->root_fd < 0 && errno == ENOENT) {
		make_parents(cache->root);
		if (mkdir(cache->root, 0755) != 0 && errno != EEXIST) {
			status = cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
					      "cannot create cache directory %s: %s", cache->root,
					      strerror(errno));
			goto out;
		}
		cache->root_fd = open(cache->root, DIR_FLAGS);
	}
	if (cache->root_fd < 0) {
		int e = errno;
		/* O_DIRECTORY|O_NOFOLLOW answers ENOTDIR or ELOOP for a symlink. */
		int is_link = lstat(cache->root, &st) == 0 && S_ISLNK(st.st_mode);

		status = cb_error_set(err, e == ELOOP || e == ENOTDIR ? CB_E_CONFIG : CB_E_IO, e,
				      "cannot open cache directory %s: %s%s", cache->root,
				      is_link ? "it is a symlink, which coldboot does not follow" :
						strerror(e),
				      e == ELOOP || e == ENOTDIR ? "; choose another --dir" : "");
		goto out;
	}
	if (fstat(cache->root_fd, &st) != 0) {
		status = cb_error_set(err, CB_E_IO, errno, "cannot stat %s: %s", cache->root,
				      strerror(errno));
		goto out;
	}
	/*
	 * Someone else who can write here could swap a bundle under our feet, so
	 * a shared or foreign cache root is refused rather than used.
	 */
	if (st.st_uid != geteuid()) {
		status = cb_error_set(err, CB_E_CONFIG, 0,
				      "cache directory %s belongs to uid %lu, not to this user (uid %lu); "
				      "choose another --dir",
				      cache->root, (unsigned long)st.st_uid,
				      (unsigned long)geteuid());
		goto out;
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		status = cb_error_set(err, CB_E_CONFIG, 0,
				      "cache directory %s is writable by group or others (mode %03o); "
				      "run chmod go-w on it or choose another --dir",
				      cache->root, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	cache->bundles_fd = open_or_make_dir(cache->root_fd, "bundles", 0755);
	if (cache->bundles_fd < 0) {
		status = cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				      "cannot open %s/bundles: %s", cache->root, strerror(errno));
		goto out;
	}
out:
	if (status != CB_OK)
		cb_cache_close(cache);
	return status;
}

enum cb_status cb_cache_lookup(struct cb_cache *cache, const struct cb_checksum *sum,
			       enum cb_bundle_state *state, char *dir_out, size_t dir_out_size,
			       struct cb_error *err)
{
	char expected[CB_CHECKSUM_TEXT_MAX];
	struct cb_marker marker;
	struct cb_error marker_err;
	enum cb_status status = CB_OK;
	int dir_fd;

	*state = CB_BUNDLE_MISSING;
	if (dir_out_size > 0)
		snprintf(dir_out, dir_out_size, "%s/bundles/%s", cache->root, sum->hex);
	dir_fd = openat(cache->bundles_fd, sum->hex, DIR_FLAGS);
	if (dir_fd < 0) {
		if (errno == ENOENT)
			return CB_OK;
		if (errno == ENOTDIR || errno == ELOOP) {
			*state = CB_BUNDLE_CORRUPT;
			return CB_OK;
		}
		return cb_error_set(err, CB_E_IO, errno, "cannot open %s/bundles/%s: %s",
				    cache->root, sum->hex, strerror(errno));
	}
	cb_checksum_format(sum, expected, sizeof(expected));
	status = cb_marker_read(dir_fd, &marker, &marker_err);
	if (status == CB_OK && strcmp(marker.checksum, expected) == 0) {
		*state = CB_BUNDLE_PUBLISHED;
	} else if (status == CB_OK || status == CB_E_NOT_FOUND || status == CB_E_CONFIG) {
		cb_log(CB_LOG_WARN, "bundle %s/bundles/%s has %s; it will be installed again",
		       cache->root, sum->hex,
		       status == CB_OK ? "a marker for another checksum" : "no valid marker");
		*state = CB_BUNDLE_CORRUPT;
		status = CB_OK;
	} else {
		*err = marker_err;
	}
	close(dir_fd);
	return status;
}

enum cb_status cb_staging_reset(struct cb_cache *cache, struct cb_error *err)
{
	enum cb_status status = cb_rmtree_at(cache->root_fd, "staging", err);

	if (status != CB_OK)
		return status;
	if (mkdirat(cache->root_fd, "staging", 0700) != 0)
		return cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				    "cannot create %s/staging: %s", cache->root, strerror(errno));
	return CB_OK;
}

enum cb_status cb_staging_create(struct cb_cache *cache, const struct cb_checksum *sum, int *dir_fd,
				 char *path_out, size_t path_out_size, struct cb_error *err)
{
	char rel[sizeof("staging/") + sizeof(sum->hex)];

	snprintf(rel, sizeof(rel), "staging/%s", sum->hex);
	snprintf(path_out, path_out_size, "%s/%s", cache->root, rel);
	if (mkdirat(cache->root_fd, rel, 0755) != 0)
		return cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				    "cannot create %s: %s", path_out, strerror(errno));
	*dir_fd = openat(cache->root_fd, rel, DIR_FLAGS);
	if (*dir_fd < 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot open %s: %s", path_out,
				    strerror(errno));
	return CB_OK;
}

enum cb_status cb_cache_discard(struct cb_cache *cache, const struct cb_checksum *sum,
				struct cb_error *err)
{
	char rel[sizeof("staging/discard-") + sizeof(sum->hex)];

	snprintf(rel, sizeof(rel), "staging/discard-%s", sum->hex);
	if (renameat(cache->bundles_fd, sum->hex, cache->root_fd, rel) != 0 && errno != ENOENT)
		return cb_error_set(err, CB_E_IO, errno, "cannot move %s/bundles/%s aside: %s",
				    cache->root, sum->hex, strerror(errno));
	return cb_rmtree_at(cache->root_fd, rel, err);
}

enum cb_status cb_cache_point_current(struct cb_cache *cache, const struct cb_checksum *sum,
				      struct cb_error *err)
{
	char target[sizeof("bundles/") + sizeof(sum->hex)];
	char seen[sizeof(target) + 1];
	char tmp[64];
	ssize_t n;

	snprintf(target, sizeof(target), "bundles/%s", sum->hex);
	n = readlinkat(cache->root_fd, "current", seen, sizeof(seen) - 1);
	if (n >= 0) {
		seen[n] = '\0';
		if (strcmp(seen, target) == 0)
			return CB_OK;
	}
	/*
	 * A new link under a private name in staging/ (so a kill leaves nothing
	 * outside staging/), then one rename: readers see the old or the new.
	 */
	if (mkdirat(cache->root_fd, "staging", 0700) != 0 && errno != EEXIST)
		return cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				    "cannot create %s/staging: %s", cache->root, strerror(errno));
	snprintf(tmp, sizeof(tmp), "staging/current.%ld.tmp", (long)getpid());
	(void)unlinkat(cache->root_fd, tmp, 0);
	if (symlinkat(target, cache->root_fd, tmp) != 0)
		return cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				    "cannot create %s/%s: %s", cache->root, tmp, strerror(errno));
	if (renameat(cache->root_fd, tmp, cache->root_fd, "current") != 0) {
		int e = errno;

		(void)unlinkat(cache->root_fd, tmp, 0);
		return cb_error_set(err, CB_E_IO, e, "cannot point %s/current at %s: %s",
				    cache->root, target, strerror(e));
	}
	return CB_OK;
}

void cb_cache_current(struct cb_cache *cache, char *out, size_t out_size)
{
	ssize_t n = readlinkat(cache->root_fd, "current", out, out_size - 1);

	out[n > 0 ? n : 0] = '\0';
}
