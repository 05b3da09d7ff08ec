/* cache/layout.c, lock.c, publish.c, rmtree.c: the cache contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../cache/cache.h"

static const char SUM[] = "xxh3:00112233445566778899aabbccddeeff";

static void fresh_root(char *path)
{
	strcpy(path, "/tmp/cb_test_layout_XXXXXX");
	assert_non_null(mkdtemp(path));
	strcat(path, "/cache");
}

static void remove_root(const char *path)
{
	char parent[PATH_MAX];
	struct cb_error err;
	int fd;

	strcpy(parent, path);
	*strrchr(parent, '/') = '\0';
	fd = open(parent, O_RDONLY | O_DIRECTORY);
	assert_int_equal(cb_rmtree_at(fd, "cache", &err), CB_OK);
	close(fd);
	rmdir(parent);
}

static void write_file(int dir_fd, const char *name, const char *text)
{
	int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void install_one(struct cb_cache *cache, const struct cb_checksum *sum)
{
	struct cb_marker marker;
	struct cb_error err;
	char path[PATH_MAX];
	int dir_fd;
	int64_t waited;

	assert_int_equal(cb_lock_acquire(cache, 1000, &waited, &err), CB_OK);
	assert_int_equal(cb_staging_reset(cache, &err), CB_OK);
	assert_int_equal(cb_staging_create(cache, sum, &dir_fd, path, sizeof(path), &err), CB_OK);
	write_file(dir_fd, "payload.txt", "hello");
	memset(&marker, 0, sizeof(marker));
	cb_checksum_format(sum, marker.checksum, sizeof(marker.checksum));
	strcpy(marker.url, "file:///x.zip");
	assert_int_equal(cb_marker_write(dir_fd, &marker, &err), CB_OK);
	close(dir_fd);
	assert_int_equal(cb_cache_publish(cache, sum, &err), CB_OK);
	cb_lock_release(cache);
}

static void publish_and_lookup(void **state)
{
	char root[PATH_MAX], dir[PATH_MAX], current[64];
	struct cb_cache cache;
	struct cb_checksum sum;
	struct cb_error err;
	enum cb_bundle_state st;
	struct stat sb;

	(void)state;
	fresh_root(root);
	assert_int_equal(cb_checksum_parse(SUM, &sum, &err), CB_OK);
	assert_int_equal(cb_cache_open(&cache, root, &err), CB_OK);
	assert_int_equal(cb_cache_lookup(&cache, &sum, &st, dir, sizeof(dir), &err), CB_OK);
	assert_int_equal(st, CB_BUNDLE_MISSING);
	install_one(&cache, &sum);
	assert_int_equal(cb_cache_lookup(&cache, &sum, &st, dir, sizeof(dir), &err), CB_OK);
	assert_int_equal(st, CB_BUNDLE_PUBLISHED);
	assert_non_null(strstr(dir, "/bundles/00112233445566778899aabbccddeeff"));
	cb_cache_current(&cache, current, sizeof(current));
	assert_string_equal(current, "bundles/00112233445566778899aabbccddeeff");
	/* staging/<digest> is gone after the rename. */
	assert_int_not_equal(fstatat(cache.root_fd, "staging/00112233445566778899aabbccddeeff", &sb,
				     AT_SYMLINK_NOFOLLOW),
			     0);
	/* Publishing over an existing bundle is refused (RENAME_NOREPLACE). */
	{
		int dir_fd;
		char path[PATH_MAX];

		assert_int_equal(cb_staging_create(&cache, &sum, &dir_fd, path, sizeof(path), &err),
				 CB_OK);
		close(dir_fd);
		assert_int_equal(cb_cache_publish(&cache, &sum, &err), CB_E_IO);
	}
	cb_cache_close(&cache);
	remove_root(root);
}

static void corrupt_marker_is_detected_and_discarded(void **state)
{
	char root[PATH_MAX], dir[PATH_MAX];
	struct cb_cache cache;
	struct cb_checksum sum, other;
	struct cb_error err;
	enum cb_bundle_state st;
	int bundle_fd;

	(void)state;
	fresh_root(root);
	assert_int_equal(cb_checksum_parse(SUM, &sum, &err), CB_OK);
	assert_int_equal(cb_checksum_parse("xxh3:ffffffffffffffffffffffffffffffff", &other, &err),
			 CB_OK);
	assert_int_equal(cb_cache_open(&cache, root, &err), CB_OK);
	install_one(&cache, &sum);
	bundle_fd = openat(cache.bundles_fd, sum.hex, O_RDONLY | O_DIRECTORY);
	write_file(bundle_fd, CB_MARKER_NAME, "{\"coldboot\":1,");
	close(bundle_fd);
	assert_int_equal(cb_cache_lookup(&cache, &sum, &st, dir, sizeof(dir), &err), CB_OK);
	assert_int_equal(st, CB_BUNDLE_CORRUPT);
	assert_int_equal(cb_cache_discard(&cache, &sum, &err), CB_OK);
	assert_int_equal(cb_cache_lookup(&cache, &sum, &st, dir, sizeof(dir), &err), CB_OK);
	assert_int_equal(st, CB_BUNDLE_MISSING);
	/* A marker naming another checksum is not ours either. */
	install_one(&cache, &other);
	assert_int_equal(renameat(cache.bundles_fd, other.hex, cache.bundles_fd, sum.hex), 0);
	assert_int_equal(cb_cache_lookup(&cache, &sum, &st, dir, sizeof(dir), &err), CB_OK);
	assert_int_equal(st, CB_BUNDLE_CORRUPT);
	cb_cache_close(&cache);
	remove_root(root);
}

static void refuses_unsafe_roots(void **state)
{
	char root[PATH_MAX], link[PATH_MAX + 8];
	struct cb_cache cache;
	struct cb_error err;

	(void)state;
	fresh_root(root);
	assert_int_equal(cb_cache_open(&cache, "relative/dir", &err), CB_E_CONFIG);
	assert_int_equal(cb_cache_open(&cache, root, &err), CB_OK);
	cb_cache_close(&cache);
	assert_int_equal(chmod(root, 0777), 0);
	assert_int_equal(cb_cache_open(&cache, root, &err), CB_E_CONFIG);
	assert_non_null(strstr(err.message, "writable"));
	assert_int_equal(chmod(root, 0755), 0);
	snprintf(link, sizeof(link), "%s.link", root);
	assert_int_equal(symlink(root, link), 0);
	assert_int_equal(cb_cache_open(&cache, link, &err), CB_E_CONFIG);
	assert_non_null(strstr(err.message, "symlink"));
	unlink(link);
	remove_root(root);
}

static void lock_times_out_and_survives_a_dead_holder(void **state)
{
	char root[PATH_MAX];
	struct cb_cache cache;
	struct cb_error err;
	int64_t waited;
	int ready[2];
	pid_t pid;
	char byte;

	(void)state;
	fresh_root(root);
	assert_int_equal(cb_cache_open(&cache, root, &err), CB_OK);
	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cb_cache child;

		if (cb_cache_open(&child, root, &err) != CB_OK ||
		    cb_lock_acquire(&child, 1000, &waited, &err) != CB_OK)
			_exit(1);
		(void)write(ready[1], "x", 1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(ready[0], &byte, 1), 1);
	assert_int_equal(cb_lock_acquire(&cache, 200, &waited, &err), CB_E_LOCK_TIMEOUT);
	assert_true(waited >= 200 && waited < 2000);
	assert_int_equal(cb_status_exit_code(err.code), 8);
	/* The kernel drops the lock of a killed holder. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(cb_lock_acquire(&cache, 2000, &waited, &err), CB_OK);
	cb_cache_close(&cache);
	close(ready[0]);
	close(ready[1]);
	remove_root(root);
}

static void rmtree_handles_depth_and_symlinks(void **state)
{
	char base[] = "/tmp/cb_test_rmtree_XXXXXX";
	char outside[PATH_MAX];
	struct cb_error err;
	struct stat sb;
	int base_fd, fd;

	(void)state;
	assert_non_null(mkdtemp(base));
	base_fd = open(base, O_RDONLY | O_DIRECTORY);
	assert_int_equal(mkdirat(base_fd, "keep", 0755), 0);
	write_file(base_fd, "keep/precious", "x");
	assert_int_equal(mkdirat(base_fd, "tree", 0755), 0);
	fd = openat(base_fd, "tree", O_RDONLY | O_DIRECTORY);
	/* 1500 levels: more than a descriptor per level would allow under a low limit. */
	for (int i = 0; i < 1500; i++) {
		int next;

		assert_int_equal(mkdirat(fd, "d", 0755), 0);
		write_file(fd, "f", "data");
		next = openat(fd, "d", O_RDONLY | O_DIRECTORY);
		close(fd);
		fd = next;
	}
	snprintf(outside, sizeof(outside), "%s/keep", base);
	assert_int_equal(symlinkat(outside, fd, "link-out"), 0);
	close(fd);
	assert_int_equal(cb_rmtree_at(base_fd, "tree", &err), CB_OK);
	assert_int_not_equal(fstatat(base_fd, "tree", &sb, 0), 0);
	assert_int_equal(fstatat(base_fd, "keep/precious", &sb, 0), 0);
	assert_int_equal(cb_rmtree_at(base_fd, "missing", &err), CB_OK);
	assert_int_equal(cb_rmtree_at(base_fd, "keep", &err), CB_OK);
	close(base_fd);
	rmdir(base);
}

/* cb_rmtree_contents: what is inside goes, the directory and its descriptor stay. */
static void rmtree_contents_keeps_the_directory(void **state)
{
	char base[] = "/tmp/cb_test_rmtree_XXXXXX";
	char outside[PATH_MAX];
	struct cb_error err;
	struct stat sb;
	int base_fd, fd;

	(void)state;
	assert_non_null(mkdtemp(base));
	base_fd = open(base, O_RDONLY | O_DIRECTORY);
	assert_int_equal(mkdirat(base_fd, "keep", 0755), 0);
	write_file(base_fd, "keep/precious", "x");
	assert_int_equal(mkdirat(base_fd, "staging", 0755), 0);
	fd = openat(base_fd, "staging", O_RDONLY | O_DIRECTORY);
	assert_int_equal(mkdirat(fd, "a", 0755), 0);
	assert_int_equal(mkdirat(fd, "a/b", 0755), 0);
	write_file(fd, "a/b/f", "data");
	write_file(fd, "top", "data");
	snprintf(outside, sizeof(outside), "%s/keep", base);
	assert_int_equal(symlinkat(outside, fd, "link-out"), 0);
	assert_int_equal(cb_rmtree_contents(fd, "staging", &err), CB_OK);
	assert_int_equal(fstatat(base_fd, "staging", &sb, 0), 0);
	assert_int_not_equal(fstatat(fd, "a", &sb, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_not_equal(fstatat(fd, "top", &sb, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_not_equal(fstatat(fd, "link-out", &sb, AT_SYMLINK_NOFOLLOW), 0);
	assert_int_equal(fstatat(base_fd, "keep/precious", &sb, 0), 0);
	/* The caller's descriptor still works: a new tree can go in. */
	assert_int_equal(mkdirat(fd, "again", 0755), 0);
	close(fd);
	assert_int_equal(cb_rmtree_at(base_fd, "staging", &err), CB_OK);
	assert_int_equal(cb_rmtree_at(base_fd, "keep", &err), CB_OK);
	close(base_fd);
	rmdir(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(publish_and_lookup),
		cmocka_unit_test(corrupt_marker_is_detected_and_discarded),
		cmocka_unit_test(refuses_unsafe_roots),
		cmocka_unit_test(lock_times_out_and_survives_a_dead_holder),
		cmocka_unit_test(rmtree_handles_depth_and_symlinks),
		cmocka_unit_test(rmtree_contents_keeps_the_directory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
