/* cache/container.c: container identity and its counters in container.json. */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../cache/cache.h"
#include "cbunit.h"

#define CONTAINER_FILE_BYTES 192

static char test_root[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	return cb_test_make_dir(test_root, sizeof(test_root), "container");
}

static int teardown(void **state)
{
	(void)state;
	cb_test_remove_tree(test_root);
	return 0;
}

static void open_cache(struct cb_cache *cache, const char *root)
{
	struct cb_error err;

	cb_error_init(&err);
	if (cb_cache_open(cache, root, &err) != CB_OK)
		fail_msg("cb_cache_open(%s): %s", root, err.message);
}

static void start_ok(struct cb_cache *cache, struct cb_container *out)
{
	struct cb_error err;

	cb_error_init(&err);
	if (cb_container_start(cache, out, &err) != CB_OK)
		fail_msg("cb_container_start: %s", err.message);
}

static off_t container_file_size(const char *root)
{
	char path[PATH_MAX + 32];
	struct stat st;

	snprintf(path, sizeof(path), "%s/container.json", root);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void write_container_file(const char *root, const char *text)
{
	char path[PATH_MAX + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/container.json", root);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int is_hex_id(const char *id)
{
	if (strlen(id) != 32)
		return 0;
	return strspn(id, "0123456789abcdef") == 32;
}

static void test_first_start_creates_identity(void **state)
{
	struct cb_cache cache;
	struct cb_container c;
	int64_t before = cb_clock_wall_ms();

	(void)state;
	open_cache(&cache, test_root);
	start_ok(&cache, &c);
	assert_true(is_hex_id(c.id));
	assert_int_equal(c.starts, 1);
	assert_int_equal(c.downloads, 0);
	assert_true(c.first_start_ms >= before);
	assert_true(c.first_start_ms <= cb_clock_wall_ms());
	assert_int_equal(container_file_size(test_root), CONTAINER_FILE_BYTES);
	cb_cache_close(&cache);
}

static void test_starts_count_and_id_is_stable(void **state)
{
	struct cb_cache cache;
	struct cb_container first;
	struct cb_container c;
	struct cb_container read_back;
	struct cb_error err;

	(void)state;
	open_cache(&cache, test_root);
	start_ok(&cache, &first);
	for (int i = 2; i <= 5; i++) {
		start_ok(&cache, &c);
		assert_string_equal(c.id, first.id);
		assert_int_equal(c.first_start_ms, first.first_start_ms);
		assert_int_equal(c.starts, (uint64_t)i);
	}
	cb_error_init(&err);
	assert_int_equal(cb_container_count_download(&cache, &err), CB_OK);
	assert_int_equal(cb_container_count_download(&cache, &err), CB_OK);
	assert_int_equal(cb_container_read(&cache, &read_back, &err), CB_OK);
	assert_string_equal(read_back.id, first.id);
	assert_int_equal(read_back.starts, 5);
	assert_int_equal(read_back.downloads, 2);
	/* The file never changes length, so no update ever needs an ftruncate. */
	assert_int_equal(container_file_size(test_root), CONTAINER_FILE_BYTES);
	cb_cache_close(&cache);

	/* A new handle on the same cache is the same container. */
	open_cache(&cache, test_root);
	start_ok(&cache, &c);
	assert_string_equal(c.id, first.id);
	assert_int_equal(c.starts, 6);
	assert_int_equal(c.downloads, 2);
	cb_cache_close(&cache);
}

static void test_read_without_identity_is_not_found(void **state)
{
	struct cb_cache cache;
	struct cb_container c;
	struct cb_error err;

	(void)state;
	open_cache(&cache, test_root);
	cb_error_init(&err);
	assert_int_equal(cb_container_read(&cache, &c, &err), CB_E_NOT_FOUND);
	write_container_file(test_root, "{\"id\":\"nothex\"}\n");
	assert_int_equal(cb_container_read(&cache, &c, &err), CB_E_NOT_FOUND);
	cb_cache_close(&cache);
}

/* Forks children that each count starts_each starts, all released at once. */
static void run_concurrent_starts(int children, int starts_each)
{
	int gate[2];
	pid_t pids[16];

	assert_true(children <= 16);
	assert_int_equal(pipe(gate), 0);
	for (int i = 0; i < children; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct cb_cache cache;
			struct cb_container c;
			struct cb_error err;
			char byte;
			int rc = 0;

			close(gate[1]);
			/* Blocks until the parent closes its end: every child starts together. */
			(void)read(gate[0], &byte, 1);
			cb_error_init(&err);
			if (cb_cache_open(&cache, test_root, &err) != CB_OK)
				_exit(10);
			for (int k = 0; k < starts_each; k++) {
				if (cb_container_start(&cache, &c, &err) != CB_OK)
					rc = 11;
			}
			cb_cache_close(&cache);
			_exit(rc);
		}
	}
	close(gate[0]);
	close(gate[1]);
	for (int i = 0; i < children; i++) {
		int status = 0;

		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
}

static void test_concurrent_starts_lose_nothing(void **state)
{
	struct cb_cache cache;
	struct cb_container before;
	struct cb_container after;
	struct cb_error err;

	(void)state;
	open_cache(&cache, test_root);
	start_ok(&cache, &before);

	/* Eight concurrent starts: exactly +8, and the same container. */
	run_concurrent_starts(8, 1);
	cb_error_init(&err);
	assert_int_equal(cb_container_read(&cache, &after, &err), CB_OK);
	assert_string_equal(after.id, before.id);
	assert_int_equal(after.starts, before.starts + 8);

	/* Harder: eight processes racing through 50 starts each. */
	run_concurrent_starts(8, 50);
	assert_int_equal(cb_container_read(&cache, &after, &err), CB_OK);
	assert_string_equal(after.id, before.id);
	assert_int_equal(after.starts, before.starts + 8 + 400);
	assert_int_equal(container_file_size(test_root), CONTAINER_FILE_BYTES);
	cb_cache_close(&cache);
}

static void test_concurrent_first_starts_make_one_container(void **state)
{
	struct cb_cache cache;
	struct cb_container after;
	struct cb_error err;

	(void)state;
	/* No container.json yet: racing first starts must agree on one id. */
	run_concurrent_starts(8, 1);
	open_cache(&cache, test_root);
	cb_error_init(&err);
	assert_int_equal(cb_container_read(&cache, &after, &err), CB_OK);
	assert_int_equal(after.starts, 8);
	cb_cache_close(&cache);
}

static void test_wiped_cache_is_a_new_container(void **state)
{
	struct cb_cache cache;
	struct cb_container first;
	struct cb_container second;

	(void)state;
	open_cache(&cache, test_root);
	start_ok(&cache, &first);
	start_ok(&cache, &first);
	assert_int_equal(first.starts, 2);
	cb_cache_close(&cache);

	cb_test_remove_tree(test_root);
	open_cache(&cache, test_root);
	start_ok(&cache, &second);
	assert_true(is_hex_id(second.id));
	assert_string_not_equal(second.id, first.id);
	assert_int_equal(second.starts, 1);
	assert_int_equal(second.downloads, 0);
	cb_cache_close(&cache);
}

static void test_garbage_is_a_new_container(void **state)
{
	static const char *const garbage[] = {
		"",
		"not json at all",
		"{\"id\":\"0123456789abcdef0123456789abcdef\",\"first_start_ms\":1", /* cut short */
		"{\"id\":\"0123456789ABCDEF0123456789ABCDEF\",\"first_start_ms\":1,\"starts\":3,"
		"\"downloads\":1}",
	};
	struct cb_cache cache;
	struct cb_container c;

	(void)state;
	open_cache(&cache, test_root);
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		write_container_file(test_root, garbage[i]);
		start_ok(&cache, &c);
		assert_true(is_hex_id(c.id));
		assert_int_equal(c.starts, 1);
		assert_int_equal(container_file_size(test_root), CONTAINER_FILE_BYTES);
	}
	cb_cache_close(&cache);
}

static void test_valid_foreign_layout_is_kept(void **state)
{
	struct cb_cache cache;
	struct cb_container c;
	char text[2048];
	int n;

	(void)state;
	/* Pretty-printed and longer than ours: still our identity, and the tail is cut. */
	n = snprintf(text, sizeof(text),
		     "{\n  \"id\": \"0123456789abcdef0123456789abcdef\",\n"
		     "  \"first_start_ms\": 1763797661123,\n  \"starts\": 41,\n"
		     "  \"downloads\": 2\n}\n%*s\n",
		     600, "");
	assert_true(n > CONTAINER_FILE_BYTES);
	write_container_file(test_root, text);
	open_cache(&cache, test_root);
	start_ok(&cache, &c);
	assert_string_equal(c.id, "0123456789abcdef0123456789abcdef");
	assert_int_equal(c.first_start_ms, 1763797661123LL);
	assert_int_equal(c.starts, 42);
	assert_int_equal(c.downloads, 2);
	assert_int_equal(container_file_size(test_root), CONTAINER_FILE_BYTES);
	cb_cache_close(&cache);
}

static void test_oversized_file_is_a_new_container(void **state)
{
	struct cb_cache cache;
	struct cb_container c;
	char text[4096];

	(void)state;
	/* A valid identity, but in a file far longer than any we write: not ours. */
	snprintf(text, sizeof(text),
		 "{\"id\":\"0123456789abcdef0123456789abcdef\",\"first_start_ms\":1,"
		 "\"starts\":41,\"downloads\":2}%*s\n",
		 3000, "");
	write_container_file(test_root, text);
	open_cache(&cache, test_root);
	start_ok(&cache, &c);
	assert_string_not_equal(c.id, "0123456789abcdef0123456789abcdef");
	assert_int_equal(c.starts, 1);
	assert_int_equal(container_file_size(test_root), CONTAINER_FILE_BYTES);
	cb_cache_close(&cache);
}

static void test_symlink_is_refused(void **state)
{
	struct cb_cache cache;
	struct cb_container c;
	struct cb_error err;
	char link_path[PATH_MAX + 32];
	char target[PATH_MAX + 32];

	(void)state;
	snprintf(target, sizeof(target), "%s/elsewhere", test_root);
	snprintf(link_path, sizeof(link_path), "%s/container.json", test_root);
	assert_int_equal(symlink(target, link_path), 0);
	open_cache(&cache, test_root);
	cb_error_init(&err);
	assert_int_equal(cb_container_start(&cache, &c, &err), CB_E_IO);
	assert_true(strlen(err.message) > 0);
	/* The symlink was not followed: nothing was created at its target. */
	assert_int_equal(access(target, F_OK), -1);
	cb_cache_close(&cache);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_start_creates_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starts_count_and_id_is_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_without_identity_is_not_found, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_starts_lose_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_first_starts_make_one_container,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_wiped_cache_is_a_new_container, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_garbage_is_a_new_container, setup, teardown),
		cmocka_unit_test_setup_teardown(test_valid_foreign_layout_is_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_file_is_a_new_container, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_symlink_is_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
