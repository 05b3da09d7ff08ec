/*
 * bootstrap/pack.c: the same folder gives the same bytes; Info-ZIP's `unzip -t`
 * and Python's zipfile accept the zip and read the right modes; coldboot's own
 * unpack gives back the same tree; zip64 (forced, and from >65535 entries);
 * what is refused.
 */
#define _DEFAULT_SOURCE /* d_type, mkdtemp, utimes */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../bootstrap/pack.h"
#include "../bootstrap/unpack.h"
#include "../bootstrap/verify.h"

/* snprintf into an array, failing the test when it does not fit. */
#define PATHF(buf, ...) assert_true((size_t)snprintf(buf, sizeof(buf), __VA_ARGS__) < sizeof(buf))

static char base_dir[PATH_MAX];

static void make_dir(const char *path)
{
	assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void put_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode)
{
	char path[PATH_MAX];
	int fd;

	PATHF(path, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void put_link(const char *dir, const char *name, const char *target)
{
	char path[PATH_MAX];

	PATHF(path, "%s/%s", dir, name);
	assert_int_equal(symlink(target, path), 0);
}

/* A fresh folder under $CB_TEST_TMP. */
static void fresh(char *out, size_t size, const char *prefix)
{
	assert_true((size_t)snprintf(out, size, "%s/%s-XXXXXX", base_dir, prefix) < size);
	assert_non_null(mkdtemp(out));
}

static unsigned char *pattern(size_t size, int compressible)
{
	unsigned char *data = malloc(size);
	uint32_t x = 2463534242u;

	assert_non_null(data);
	for (size_t i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		data[i] = compressible ? (unsigned char)("abcdefgh\n"[x % 9]) : (unsigned char)x;
	}
	return data;
}

/*
 * A layer-style tree with what pack must handle: exec bits, odd modes,
 * symlinks to files and folders, an empty folder and file, a non-ASCII name,
 * incompressible data (stored), and files larger than pack's 1 MiB buffer,
 * compressible (several deflate rounds) and not (stored after a reread).
 */
static void make_tree(const char *root)
{
	char d[PATH_MAX];
	unsigned char *big_text = pattern(3 * 1024 * 1024 + 17, 1);
	unsigned char *big_random = pattern(2 * 1024 * 1024 + 5, 0);
	unsigned char *small_random = pattern(4000, 0);

	PATHF(d, "%s/bin", root);
	make_dir(d);
	put_file(d, "tool", "#!/bin/sh\necho tool\n", 20, 0700);
	put_file(d, "group-exec", "x\n", 2, 0610);
	put_link(d, "tool-link", "tool");
	PATHF(d, "%s/lib", root);
	make_dir(d);
	put_file(d, "libdemo.so.1", small_random, 4000, 0444);
	put_link(d, "libdemo.so", "libdemo.so.1");
	put_file(d, "big.txt", big_text, 3 * 1024 * 1024 + 17, 0664);
	put_file(d, "big.bin", big_random, 2 * 1024 * 1024 + 5, 0600);
	PATHF(d, "%s/python", root);
	make_dir(d);
	PATHF(d, "%s/python/pkg", root);
	make_dir(d);
	put_file(d, "__init__.py", "VALUE = 42\n", 11, 0644);
	put_file(d, "caf\xc3\xa9.py", "# utf-8 name\n", 13, 0644);
	put_link(d, "up", "..");
	PATHF(d, "%s/share", root);
	make_dir(d);
	put_file(d, "empty", "", 0, 0644);
	put_link(d, "lib-dir", "../lib");
	PATHF(d, "%s/var", root);
	make_dir(d);
	PATHF(d, "%s/var/empty-dir", root);
	make_dir(d);
	put_file(root, "handler.py", "def handler(e, c):\n    return 1\n", 33, 0644);
	free(big_text);
	free(big_random);
	free(small_random);
}

static enum cb_status pack(const char *src, const char *out, int force_zip64,
			   struct cb_pack_result *res, struct cb_error *err)
{
	struct cb_pack_request req;

	memset(&req, 0, sizeof(req));
	req.src_dir = src;
	req.out_path = out;
	req.force_zip64 = force_zip64;
	cb_error_init(err);
	return cb_pack_run(&req, res, err);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data;
	long size;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	assert_true(size >= 0);
	rewind(f);
	data = malloc((size_t)size + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	*len = (size_t)size;
	return data;
}

static void assert_same_bytes(const char *a, const char *b)
{
	size_t alen, blen;
	unsigned char *x = slurp(a, &alen);
	unsigned char *y = slurp(b, &blen);

	assert_int_equal(alen, blen);
	assert_memory_equal(x, y, alen);
	free(x);
	free(y);
}

/* Runs a shell command; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

/* ---- comparing trees ---- */

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dots(const struct dirent *d)
{
	return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/*
 * Asserts that b holds what a holds: the same names, kinds, file contents,
 * owner exec bits and symlink targets. top: ignore the marker in b.
 */
static void assert_same_tree(const char *a, const char *b, int top)
{
	struct dirent **la, **lb;
	int na = scandir(a, &la, skip_dots, by_name);
	int nb = scandir(b, &lb, skip_dots, by_name);
	int j = 0;

	assert_true(na >= 0);
	assert_true(nb >= 0);
	for (int i = 0; i < na; i++, j++) {
		char pa[PATH_MAX], pb[PATH_MAX];
		struct stat sa, sb;

		if (top && j < nb && strcmp(lb[j]->d_name, CB_MARKER_NAME) == 0)
			j++;
		assert_true(j < nb);
		if (strcmp(la[i]->d_name, lb[j]->d_name) != 0)
			fail_msg("%s/%s is missing from %s (found %s)", a, la[i]->d_name, b,
				 lb[j]->d_name);
		PATHF(pa, "%s/%s", a, la[i]->d_name);
		PATHF(pb, "%s/%s", b, lb[j]->d_name);
		assert_int_equal(lstat(pa, &sa), 0);
		assert_int_equal(lstat(pb, &sb), 0);
		assert_int_equal(sa.st_mode & S_IFMT, sb.st_mode & S_IFMT);
		if (S_ISDIR(sa.st_mode)) {
			assert_same_tree(pa, pb, 0);
		} else if (S_ISLNK(sa.st_mode)) {
			char ta[PATH_MAX], tb[PATH_MAX];
			ssize_t n = readlink(pa, ta, sizeof(ta) - 1);
			ssize_t m = readlink(pb, tb, sizeof(tb) - 1);

			assert_true(n > 0 && m > 0);
			ta[n] = tb[m] = '\0';
			assert_string_equal(ta, tb);
		} else {
			assert_same_bytes(pa, pb);
			assert_int_equal(!!(sa.st_mode & S_IXUSR) || !!(sa.st_mode & S_IXGRP) ||
						 !!(sa.st_mode & S_IXOTH),
					 !!(sb.st_mode & S_IXUSR));
		}
	}
	if (top && j < nb && strcmp(lb[j]->d_name, CB_MARKER_NAME) == 0)
		j++;
	if (j != nb)
		fail_msg("%s has %s, which %s does not", b, lb[j]->d_name, a);
	for (int i = 0; i < na; i++)
		free(la[i]);
	for (int i = 0; i < nb; i++)
		free(lb[i]);
	free(la);
	free(lb);
}

static void unpack_into(const char *zip, const char *dest)
{
	struct cb_unpack_options opts;
	struct cb_unpack_result res;
	struct cb_error err;
	enum cb_status status;

	memset(&opts, 0, sizeof(opts));
	opts.zip_fd = open(zip, O_RDONLY);
	opts.dest_fd = open(dest, O_RDONLY | O_DIRECTORY);
	opts.dest_path = dest;
	assert_true(opts.zip_fd >= 0 && opts.dest_fd >= 0);
	cb_error_init(&err);
	status = cb_unpack_zip(&opts, &res, &err);
	if (status != CB_OK)
		fail_msg("unpack of %s failed: %s", zip, err.message);
	close(opts.zip_fd);
	close(opts.dest_fd);
}

/* ---- the tests ---- */

static void same_folder_same_bytes(void **state)
{
	char work[PATH_MAX], src[PATH_MAX], a[PATH_MAX], b[PATH_MAX], path[PATH_MAX];
	struct cb_pack_result ra, rb;
	struct cb_checksum hashed;
	struct cb_error err;
	struct timeval times[2] = {{1000000000, 0}, {1000000000, 0}};

	(void)state;
	fresh(work, sizeof(work), "same");
	PATHF(src, "%s/src", work);
	make_dir(src);
	make_tree(src);
	PATHF(a, "%s/a.zip", work);
	PATHF(b, "%s/b.zip", work);
	assert_int_equal(pack(src, a, 0, &ra, &err), CB_OK);

	/* Times and modes other than the exec bits must not matter. */
	PATHF(path, "%s/lib/big.txt", src);
	assert_int_equal(utimes(path, times), 0);
	assert_int_equal(chmod(path, 0600), 0);
	PATHF(path, "%s/bin/tool", src);
	assert_int_equal(chmod(path, 0755), 0);
	assert_int_equal(utimes(src, times), 0);
	assert_int_equal(pack(src, b, 0, &rb, &err), CB_OK);
	assert_same_bytes(a, b);

	assert_int_equal(ra.files, 9);
	assert_int_equal(ra.dirs, 7);
	assert_int_equal(ra.symlinks, 4);
	assert_int_equal(ra.zip64, 0);
	assert_true(cb_checksum_equal(&ra.checksum, &rb.checksum));
	assert_int_equal(cb_verify_hash_file(a, CB_HASH_XXH3_128, &hashed, &err), CB_OK);
	assert_true(cb_checksum_equal(&ra.checksum, &hashed));
	assert_int_equal(ra.checksum.algo, CB_HASH_XXH3_128);

	/* Info-ZIP checks every CRC and the structure. */
	assert_int_equal(sh("unzip -tqq '%s' >/dev/null", a), 0);
}

static const char PY_LIST[] =
	"import sys, zipfile\n"
	"z = zipfile.ZipFile(sys.argv[1])\n"
	"assert z.testzip() is None\n"
	"out = open(sys.argv[2], 'w')\n"
	"for i in z.infolist():\n"
	"    out.write('%s %o %s %d\\n' % (i.filename, i.external_attr >> 16,\n"
	"              '-'.join(map(str, i.date_time)), i.compress_type))\n";

/* Python's zipfile reads every entry, with the normalised modes and the fixed time. */
static void python_reads_modes(void **state)
{
	static const char expected[] = "bin/ 40755 1980-1-1-0-0-0 0\n"
				       "bin/group-exec 100755 1980-1-1-0-0-0 0\n"
				       "bin/tool 100755 1980-1-1-0-0-0 0\n"
				       "bin/tool-link 120777 1980-1-1-0-0-0 0\n"
				       "handler.py 100644 1980-1-1-0-0-0 0\n"
				       "lib/ 40755 1980-1-1-0-0-0 0\n"
				       "lib/big.bin 100644 1980-1-1-0-0-0 0\n"
				       "lib/big.txt 100644 1980-1-1-0-0-0 8\n"
				       "lib/libdemo.so 120777 1980-1-1-0-0-0 0\n"
				       "lib/libdemo.so.1 100644 1980-1-1-0-0-0 0\n"
				       "python/ 40755 1980-1-1-0-0-0 0\n"
				       "python/pkg/ 40755 1980-1-1-0-0-0 0\n"
				       "python/pkg/__init__.py 100644 1980-1-1-0-0-0 0\n"
				       "python/pkg/caf\xc3\xa9.py 100644 1980-1-1-0-0-0 0\n"
				       "python/pkg/up 120777 1980-1-1-0-0-0 0\n"
				       "share/ 40755 1980-1-1-0-0-0 0\n"
				       "share/empty 100644 1980-1-1-0-0-0 0\n"
				       "share/lib-dir 120777 1980-1-1-0-0-0 0\n"
				       "var/ 40755 1980-1-1-0-0-0 0\n"
				       "var/empty-dir/ 40755 1980-1-1-0-0-0 0\n";
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], script[PATH_MAX], listing[PATH_MAX];
	struct cb_pack_result res;
	struct cb_error err;
	unsigned char *got;
	size_t len;

	(void)state;
	fresh(work, sizeof(work), "py");
	PATHF(src, "%s/src", work);
	make_dir(src);
	make_tree(src);
	PATHF(zip, "%s/b.zip", work);
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	put_file(work, "list.py", PY_LIST, sizeof(PY_LIST) - 1, 0644);
	PATHF(script, "%s/list.py", work);
	PATHF(listing, "%s/listing.txt", work);
	assert_int_equal(sh("python3 '%s' '%s' '%s'", script, zip, listing), 0);
	got = slurp(listing, &len);
	got[len] = '\0';
	/* Small files deflate to less only when they are long enough; handler.py and friends are stored. */
	assert_string_equal((const char *)got, expected);
	free(got);
}

static void own_unpack_gives_same_tree(void **state)
{
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], dest[PATH_MAX];
	struct cb_pack_result res;
	struct cb_error err;

	(void)state;
	fresh(work, sizeof(work), "unpack");
	PATHF(src, "%s/src", work);
	make_dir(src);
	make_tree(src);
	PATHF(zip, "%s/b.zip", work);
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	PATHF(dest, "%s/dest", work);
	make_dir(dest);
	unpack_into(zip, dest);
	assert_same_tree(src, dest, 1);
}

/* zip64 records everywhere: every reader must still take it. */
static void forced_zip64_is_read_by_all(void **state)
{
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], dest[PATH_MAX], script[PATH_MAX],
		listing[PATH_MAX];
	struct cb_pack_result res;
	struct cb_error err;

	(void)state;
	fresh(work, sizeof(work), "zip64");
	PATHF(src, "%s/src", work);
	make_dir(src);
	make_tree(src);
	PATHF(zip, "%s/b.zip", work);
	assert_int_equal(pack(src, zip, 1, &res, &err), CB_OK);
	assert_int_equal(res.zip64, 1);
	assert_int_equal(sh("unzip -tqq '%s' >/dev/null", zip), 0);
	put_file(work, "list.py", PY_LIST, sizeof(PY_LIST) - 1, 0644);
	PATHF(script, "%s/list.py", work);
	PATHF(listing, "%s/listing.txt", work);
	assert_int_equal(sh("python3 '%s' '%s' '%s'", script, zip, listing), 0);
	PATHF(dest, "%s/dest", work);
	make_dir(dest);
	unpack_into(zip, dest);
	assert_same_tree(src, dest, 1);
}

/* 70000 entries need the zip64 end record; it is written without being asked for. */
static void many_entries_use_zip64(void **state)
{
	enum {
		DIRS = 70,
		FILES_PER_DIR = 1000
	};
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], dest[PATH_MAX], d[PATH_MAX];
	struct cb_pack_result res;
	struct cb_error err;

	(void)state;
	fresh(work, sizeof(work), "many");
	PATHF(src, "%s/src", work);
	make_dir(src);
	for (int i = 0; i < DIRS; i++) {
		PATHF(d, "%s/d%02d", src, i);
		make_dir(d);
		for (int j = 0; j < FILES_PER_DIR; j++) {
			char name[32];

			PATHF(name, "f%04d", j);
			put_file(d, name, name, (size_t)(j % 3), 0644);
		}
	}
	PATHF(zip, "%s/b.zip", work);
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	assert_int_equal(res.files + res.dirs, DIRS * FILES_PER_DIR + DIRS);
	assert_int_equal(res.zip64, 1);
	assert_int_equal(sh("python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); "
			    "sys.exit(len(z.infolist()) != %d)' '%s'",
			    DIRS * FILES_PER_DIR + DIRS, zip),
			 0);
	assert_int_equal(sh("unzip -tqq '%s' >/dev/null", zip), 0);
	PATHF(dest, "%s/dest", work);
	make_dir(dest);
	unpack_into(zip, dest);
	assert_same_tree(src, dest, 1);
}

static void assert_refused(const char *src, const char *out, const char *needle)
{
	struct cb_pack_result res;
	struct cb_error err;

	assert_int_equal(pack(src, out, 0, &res, &err), CB_E_CONFIG);
	if (strstr(err.message, needle) == NULL)
		fail_msg("message \"%s\" does not mention \"%s\"", err.message, needle);
	assert_int_equal(access(out, F_OK), -1);
}

/* What unpack would refuse is refused here, and no zip (not even a partial one) is left. */
static void escaping_links_and_odd_files_are_refused(void **state)
{
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], d[PATH_MAX];
	struct cb_pack_result res;
	struct cb_error err;
	DIR *dir;
	struct dirent *e;

	(void)state;
	fresh(work, sizeof(work), "refuse");
	PATHF(zip, "%s/out.zip", work);

	PATHF(src, "%s/abs", work);
	make_dir(src);
	put_link(src, "python", "/usr/bin/python3");
	assert_refused(src, zip, "python -> /usr/bin/python3: it is absolute");

	PATHF(src, "%s/dotdot", work);
	make_dir(src);
	PATHF(d, "%s/lib", src);
	make_dir(d);
	put_link(d, "out", "../../abs");
	assert_refused(src, zip, "lib/out -> ../../abs: it points outside");

	/* "a/up" -> ".." stays inside, but "b" -> "a/up/.." climbs out through it. */
	PATHF(src, "%s/via-link", work);
	make_dir(src);
	PATHF(d, "%s/a", src);
	make_dir(d);
	put_link(d, "up", "..");
	put_link(src, "b", "a/up/..");
	assert_refused(src, zip, "b -> a/up/..: it points outside");

	PATHF(src, "%s/loop", work);
	make_dir(src);
	put_link(src, "x", "y/z");
	put_link(src, "y", "x/w");
	assert_refused(src, zip, "too many levels");

	PATHF(src, "%s/marker", work);
	make_dir(src);
	put_file(src, CB_MARKER_NAME, "{}", 2, 0644);
	assert_refused(src, zip, "reserved for coldboot's marker");

	PATHF(src, "%s/backslash", work);
	make_dir(src);
	put_file(src, "a\\b", "x", 1, 0644);
	assert_refused(src, zip, "backslash");

	PATHF(src, "%s/fifo", work);
	make_dir(src);
	PATHF(d, "%s/pipe", src);
	assert_int_equal(mkfifo(d, 0644), 0);
	assert_refused(src, zip, "pipe: not a file, folder or symlink");

	PATHF(src, "%s/not-a-dir", work);
	put_file(work, "not-a-dir", "x", 1, 0644);
	assert_refused(src, zip, "not a folder");

	/* A dangling link inside the folder is fine: unpack allows it too. */
	PATHF(src, "%s/dangling", work);
	make_dir(src);
	put_link(src, "later", "not/yet/there");
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	assert_int_equal(res.symlinks, 1);

	/* No temporary file is left behind by the refusals. */
	dir = opendir(work);
	assert_non_null(dir);
	while ((e = readdir(dir)) != NULL)
		assert_null(strstr(e->d_name, ".tmp-"));
	closedir(dir);
}

/* `coldboot pack -o DIR/b.zip DIR` twice: the zip never packs itself. */
static void output_inside_the_folder_is_left_out(void **state)
{
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], copy[PATH_MAX];
	struct cb_pack_result res;
	struct cb_error err;

	(void)state;
	fresh(work, sizeof(work), "inside");
	PATHF(src, "%s/src", work);
	make_dir(src);
	put_file(src, "a.txt", "hello\n", 6, 0644);
	PATHF(zip, "%s/bundle.zip", src);
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	assert_int_equal(res.files, 1);
	assert_int_equal(sh("cp '%s' '%s/first.zip'", zip, work), 0);
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	assert_int_equal(res.files, 1);
	PATHF(copy, "%s/first.zip", work);
	assert_same_bytes(copy, zip);
}

/*
 * A file past 4 GiB needs zip64 sizes in both headers. About a minute and 4.4 GB of (sparse)
 * disk, so it runs only with CB_TEST_LARGE=1; the zip64 records themselves are covered above.
 */
static void huge_file_uses_zip64_sizes(void **state)
{
	char work[PATH_MAX], src[PATH_MAX], zip[PATH_MAX], path[PATH_MAX];
	const uint64_t size = 4400ull * 1024 * 1024;
	struct cb_pack_result res;
	struct cb_error err;
	const char *large = getenv("CB_TEST_LARGE");
	int fd;

	(void)state;
	if (large == NULL || strcmp(large, "1") != 0)
		skip();
	fresh(work, sizeof(work), "huge");
	PATHF(src, "%s/src", work);
	make_dir(src);
	PATHF(path, "%s/huge.bin", src);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	put_file(src, "small", "hi\n", 3, 0644);
	PATHF(zip, "%s/b.zip", work);
	assert_int_equal(pack(src, zip, 0, &res, &err), CB_OK);
	assert_int_equal(res.zip64, 1);
	assert_int_equal(res.input_bytes, size + 3);
	assert_int_equal(sh("unzip -tqq '%s' >/dev/null", zip), 0);
	assert_int_equal(sh("python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); "
			    "sys.exit(z.getinfo(\"huge.bin\").file_size != %llu)' '%s'",
			    (unsigned long long)size, zip),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(same_folder_same_bytes),
		cmocka_unit_test(python_reads_modes),
		cmocka_unit_test(own_unpack_gives_same_tree),
		cmocka_unit_test(forced_zip64_is_read_by_all),
		cmocka_unit_test(many_entries_use_zip64),
		cmocka_unit_test(escaping_links_and_odd_files_are_refused),
		cmocka_unit_test(output_inside_the_folder_is_left_out),
		cmocka_unit_test(huge_file_uses_zip64_sizes),
	};
	const char *tmp = getenv("CB_TEST_TMP");
	int failed;

	PATHF(base_dir, "%s", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdir(base_dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "cannot create %s\n", base_dir);
		return 1;
	}
	snprintf(base_dir + strlen(base_dir), sizeof(base_dir) - strlen(base_dir), "/test_pack-%ld",
		 (long)getpid());
	if (mkdir(base_dir, 0755) != 0) {
		fprintf(stderr, "cannot create %s\n", base_dir);
		return 1;
	}
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	/* A failing run keeps its folders to look at. */
	if (failed == 0)
		(void)sh("rm -rf '%s'", base_dir);
	return failed;
}
