/*
 * bootstrap/unpack.c: real zips made at test time by Info-ZIP `zip` and by
 * Python's zipfile are extracted and compared with their source tree; the
 * hostile corpus (tests/hostile/make_corpus.py) is extracted case by case
 * inside a sandbox whose every other byte is watched; a real ENOSPC comes
 * from a tiny tmpfs mounted in a private mount namespace.
 */
#define _GNU_SOURCE /* unshare, CLONE_NEWNS, CLONE_NEWUSER */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdbool.h>
#include <sched.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../bootstrap/unpack.h"

#ifndef CB_PYTHON
#define CB_PYTHON "python3"
#endif

extern char **environ;

static char test_root[1024];

/* ---- helpers: processes, files, trees ---- */

/* Runs argv (searched in PATH) and returns its exit status, -1 when it did not run. */
static int run(const char *const *argv)
{
	pid_t pid;
	int status;

	if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)(uintptr_t)argv, environ) != 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int run_sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	const char *argv[] = {"sh", "-c", cmd, NULL};

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return run(argv);
}

static void fmt_path(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* snprintf that fails the test instead of truncating. */
static void fmt_path(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < size);
}

static void remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", path, NULL};

	(void)run(argv);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Reads a whole file relative to dirfd, never following a final symlink. */
static unsigned char *read_at(int dirfd, const char *name, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	unsigned char *buf;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	*len = 0;
	while (*len < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + *len, (size_t)sb.st_size - *len);

		assert_true(n > 0);
		*len += (size_t)n;
	}
	close(fd);
	return buf;
}

/* Sorted entry names of a directory, "." and ".." left out. */
static char **list_dir(int dirfd, size_t *count)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	assert_true(fd >= 0);
	dir = fdopendir(fd);
	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = realloc(names, cap * sizeof(*names));
			assert_non_null(names);
		}
		names[n] = strdup(de->d_name);
		assert_non_null(names[n]);
		n++;
	}
	closedir(dir);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	*count = n;
	return names;
}

static void free_list(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static mode_t expected_file_mode(mode_t src)
{
	return (src & 0111) ? 0755 : 0644;
}

struct tree_count {
	uint64_t files, dirs, symlinks, bytes;
};

/*
 * The extracted tree equals the source: same names, types, contents and
 * symlink targets; files 0644 or 0755 after their exec bits, directories
 * 0755. Counts what it compared.
 */
static void compare_trees(int src, int dst, const char *rel, struct tree_count *count)
{
	size_t ns, nd;
	char **s = list_dir(src, &ns);
	char **d = list_dir(dst, &nd);

	if (ns != nd)
		fail_msg("%s: %zu entries in the source, %zu extracted", rel, ns, nd);
	for (size_t i = 0; i < ns; i++) {
		struct stat a, b;
		char path[8192];

		fmt_path(path, sizeof(path), "%s/%s", rel, s[i]);
		if (strcmp(s[i], d[i]) != 0)
			fail_msg("%s: extracted as %s/%s", path, rel, d[i]);
		assert_int_equal(fstatat(src, s[i], &a, AT_SYMLINK_NOFOLLOW), 0);
		assert_int_equal(fstatat(dst, d[i], &b, AT_SYMLINK_NOFOLLOW), 0);
		if ((a.st_mode & S_IFMT) != (b.st_mode & S_IFMT))
			fail_msg("%s: type 0%o extracted as 0%o", path,
				 (unsigned)(a.st_mode & S_IFMT), (unsigned)(b.st_mode & S_IFMT));
		if (S_ISDIR(a.st_mode)) {
			int sfd = openat(src, s[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int dfd = openat(dst, d[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			assert_true(sfd >= 0 && dfd >= 0);
			if ((b.st_mode & 07777) != 0755)
				fail_msg("%s: directory mode 0%o, want 0755", path,
					 (unsigned)(b.st_mode & 07777));
			count->dirs++;
			compare_trees(sfd, dfd, path, count);
			close(sfd);
			close(dfd);
		} else if (S_ISLNK(a.st_mode)) {
			char ta[4096], tb[4096];
			ssize_t la = readlinkat(src, s[i], ta, sizeof(ta));
			ssize_t lb = readlinkat(dst, d[i], tb, sizeof(tb));

			assert_true(la > 0 && lb > 0);
			if (la != lb || memcmp(ta, tb, (size_t)la) != 0)
				fail_msg("%s: symlink target differs", path);
			count->symlinks++;
		} else {
			size_t la, lb;
			unsigned char *ca = read_at(src, s[i], &la);
			unsigned char *cb = read_at(dst, d[i], &lb);

			if (la != lb || memcmp(ca, cb, la) != 0)
				fail_msg("%s: content differs (%zu bytes, %zu extracted)", path, la,
					 lb);
			if ((b.st_mode & 07777) != expected_file_mode(a.st_mode))
				fail_msg("%s: mode 0%o from 0%o, want 0%o", path,
					 (unsigned)(b.st_mode & 07777),
					 (unsigned)(a.st_mode & 07777),
					 (unsigned)expected_file_mode(a.st_mode));
			count->files++;
			count->bytes += la;
			free(ca);
			free(cb);
		}
	}
	free_list(s, ns);
	free_list(d, nd);
}

static enum cb_status unpack_budget(const char *zip, const char *dest, uint64_t max_size_bytes,
				    uint64_t free_bytes, uint64_t memory_budget_bytes,
				    struct cb_unpack_result *res, struct cb_error *err)
{
	struct cb_unpack_options opts;
	enum cb_status st;

	memset(&opts, 0, sizeof(opts));
	opts.memory_budget_bytes = memory_budget_bytes;
	opts.zip_fd = open(zip, O_RDONLY | O_CLOEXEC);
	assert_true(opts.zip_fd >= 0);
	opts.dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(opts.dest_fd >= 0);
	opts.dest_path = dest;
	opts.max_size_bytes = max_size_bytes;
	opts.free_bytes = free_bytes;
	cb_error_init(err);
	st = cb_unpack_zip(&opts, res, err);
	close(opts.zip_fd);
	close(opts.dest_fd);
	return st;
}

static enum cb_status unpack_limited(const char *zip, const char *dest, uint64_t max_size_bytes,
				     uint64_t free_bytes, struct cb_unpack_result *res,
				     struct cb_error *err)
{
	return unpack_budget(zip, dest, max_size_bytes, free_bytes, 0, res, err);
}

static enum cb_status unpack(const char *zip, const char *dest, uint64_t max_size_bytes,
			     struct cb_unpack_result *res, struct cb_error *err)
{
	return unpack_limited(zip, dest, max_size_bytes, 0, res, err);
}

static void make_dir(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void make_dir(const char *fmt, ...)
{
	char path[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	if (mkdir(path, 0755) != 0)
		fail_msg("mkdir %s: %s", path, strerror(errno));
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	const char *base = getenv("CB_TEST_TMP");
	int n;

	(void)state;
	if (base == NULL)
		base = "/tmp";
	(void)mkdir(base, 0755);
	n = snprintf(test_root, sizeof(test_root), "%s/unpack-XXXXXX", base);
	if (n < 0 || (size_t)n >= sizeof(test_root) - 128)
		return -1;
	if (mkdtemp(test_root) == NULL)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	remove_tree(test_root);
	return 0;
}

/* A layer-shaped source tree with every kind of entry the extractor keeps. */
static void make_source(const char *src)
{
	char p[4096];
	unsigned char *big;
	const size_t big_len = 3u * 1024 * 1024 + 12345;
	uint32_t x = 2463534242u;

	make_dir("%s", src);
	make_dir("%s/bin", src);
	make_dir("%s/lib", src);
	make_dir("%s/data", src);
	make_dir("%s/empty", src);
	make_dir("%s/python", src);
	make_dir("%s/python/pkg", src);
	make_dir("%s/nodejs", src);
	make_dir("%s/nodejs/node_modules", src);
	make_dir("%s/nodejs/node_modules/a", src);
	make_dir("%s/nodejs/node_modules/a/node_modules", src);
	make_dir("%s/nodejs/node_modules/a/node_modules/b", src);
	fmt_path(p, sizeof(p), "%s/bin/run", src);
	write_file(p, "#!/bin/sh\necho run\n", 19, 0755);
	fmt_path(p, sizeof(p), "%s/bin/private-exec", src);
	write_file(p, "#!/bin/sh\n", 10, 0700);
	fmt_path(p, sizeof(p), "%s/bin/group-writable", src);
	write_file(p, "gw\n", 3, 0664);
	fmt_path(p, sizeof(p), "%s/python/pkg/__init__.py", src);
	write_file(p, "", 0, 0644);
	fmt_path(p, sizeof(p), "%s/python/pkg/mod.py", src);
	write_file(p, "def f():\n    return 42\n", 23, 0644);
	fmt_path(p, sizeof(p), "%s/nodejs/node_modules/a/node_modules/b/index.js", src);
	write_file(p, "module.exports = 1;\n", 20, 0644);
	fmt_path(p, sizeof(p), "%s/data/name with spaces.txt", src);
	write_file(p, "spaces\n", 7, 0600);
	fmt_path(p, sizeof(p),
		 "%s/data/\xc3\xbcnic\xc3\xb6"
		 "de.txt",
		 src);
	write_file(p, "utf-8\n", 6, 0644);

	/* Larger than the extractor's 256 KiB buffer, in both compressible flavours. */
	big = malloc(big_len);
	assert_non_null(big);
	for (size_t i = 0; i < big_len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		big[i] = (unsigned char)x;
	}
	fmt_path(p, sizeof(p), "%s/lib/libx.so.1", src);
	write_file(p, big, big_len, 0755);
	memset(big, 0, big_len);
	fmt_path(p, sizeof(p), "%s/data/zeros.bin", src);
	write_file(p, big, big_len, 0644);
	free(big);

	fmt_path(p, sizeof(p), "%s/lib/libx.so", src);
	assert_int_equal(symlink("libx.so.1", p), 0);
	fmt_path(p, sizeof(p), "%s/bin/tool", src);
	assert_int_equal(symlink("run", p), 0);
	fmt_path(p, sizeof(p), "%s/lib-dir", src);
	assert_int_equal(symlink("lib", p), 0);
	fmt_path(p, sizeof(p), "%s/bin/lib", src);
	assert_int_equal(symlink("../lib/libx.so", p), 0);
	fmt_path(p, sizeof(p), "%s/nodejs/node_modules/a/node_modules/b/up", src);
	assert_int_equal(symlink("../../../../../bin/run", p), 0);
}

/* Python's zipfile: seekable and deflated, or streamed to a pipe with zip64 and data descriptors. */
static const char zipfile_script[] =
	"import os, stat, sys, zipfile\n"
	"src, out, how = sys.argv[1], sys.argv[2], sys.argv[3]\n"
	"stream = how == 'stream'\n"
	"target = sys.stdout.buffer if stream else open(out, 'wb')\n"
	"with zipfile.ZipFile(target, 'w', zipfile.ZIP_DEFLATED) as zf:\n"
	"    for root, dirs, files in os.walk(src):\n"
	"        dirs.sort()\n"
	"        for name in sorted(dirs + files):\n"
	"            full = os.path.join(root, name)\n"
	"            rel = os.path.relpath(full, src)\n"
	"            st = os.lstat(full)\n"
	"            if stat.S_ISLNK(st.st_mode):\n"
	"                zi = zipfile.ZipInfo(rel, (2024, 1, 1, 0, 0, 0))\n"
	"                zi.create_system = 3\n"
	"                zi.external_attr = (stat.S_IFLNK | 0o777) << 16\n"
	"                zf.writestr(zi, os.readlink(full))\n"
	"            elif stat.S_ISDIR(st.st_mode):\n"
	"                zf.write(full, rel)\n"
	"            elif stream:\n"
	"                zi = zipfile.ZipInfo.from_file(full, rel)\n"
	"                zi.compress_type = zipfile.ZIP_DEFLATED\n"
	"                with open(full, 'rb') as f, zf.open(zi, 'w', force_zip64=True) as w:\n"
	"                    w.write(f.read())\n"
	"            else:\n"
	"                zf.write(full, rel)\n";

static void extract_and_compare(const char *zip, const char *src, const char *dest_name)
{
	char dest[2048];
	struct cb_unpack_result res;
	struct cb_error err;
	int sfd, dfd;
	struct tree_count count = {0, 0, 0, 0};

	fmt_path(dest, sizeof(dest), "%s/%s", test_root, dest_name);
	make_dir("%s", dest);
	if (unpack(zip, dest, 0, &res, &err) != CB_OK)
		fail_msg("%s: %s", zip, err.message);
	sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(sfd >= 0 && dfd >= 0);
	compare_trees(sfd, dfd, ".", &count);
	close(sfd);
	close(dfd);
	assert_true(count.files > 0);
	assert_int_equal(res.unpacked_bytes, count.bytes);
	assert_int_equal(res.files, count.files);
	assert_int_equal(res.symlinks, count.symlinks);
	assert_int_equal(res.dirs, count.dirs);
}

static void infozip_tree(void **state)
{
	char src[2048], zip[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/infozip.zip", test_root);
	make_source(src);
	assert_int_equal(run_sh("cd '%s' && zip -qry '%s' .", src, zip), 0);
	extract_and_compare(zip, src, "out-infozip");
}

static void infozip_zip64(void **state)
{
	char src[2048], zip[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/infozip-zip64.zip", test_root);
	make_source(src);
	/* -fz: zip64 extra fields, zip64 end record and locator. */
	assert_int_equal(run_sh("cd '%s' && zip -qry -fz '%s' .", src, zip), 0);
	extract_and_compare(zip, src, "out-zip64");
}

static void infozip_streamed(void **state)
{
	char src[2048], plain[2048], zip[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(plain, sizeof(plain), "%s/plain", test_root);
	fmt_path(zip, sizeof(zip), "%s/infozip-streamed.zip", test_root);
	make_source(src);
	/*
	 * To a pipe, zip writes data descriptors. It refuses stored entries
	 * there (symlinks, empty files), so stream a copy without them. (zip
	 * 3.0 with -fz to a pipe writes a broken archive that Python and unzip
	 * refuse too, so zip64 is covered by infozip_zip64.)
	 */
	assert_int_equal(run_sh("cp -r '%s' '%s' && cd '%s' && find . -type l -delete && "
				"find . -type f -empty -delete && zip -qr - . | cat > '%s'",
				src, plain, plain, zip),
			 0);
	extract_and_compare(zip, plain, "out-streamed");
}

static void infozip_sfx_prefix(void **state)
{
	char src[2048], zip[2048], sfx[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/plain.zip", test_root);
	fmt_path(sfx, sizeof(sfx), "%s/sfx.zip", test_root);
	make_source(src);
	assert_int_equal(run_sh("cd '%s' && zip -qry '%s' .", src, zip), 0);
	/* A stub before the archive, offsets left as they were... */
	assert_int_equal(run_sh("head -c 70000 /bin/sh > '%s' && cat '%s' >> '%s'", sfx, zip, sfx),
			 0);
	extract_and_compare(sfx, src, "out-sfx-raw");
	/* ...and after `zip -A` adjusted them. */
	assert_int_equal(run_sh("zip -qA '%s'", sfx), 0);
	extract_and_compare(sfx, src, "out-sfx-adjusted");
}

static void python_zipfile(void **state)
{
	char src[2048], zip[2048], script[2048];
	const char *argv[] = {CB_PYTHON, script, src, zip, "seek", NULL};

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/python.zip", test_root);
	fmt_path(script, sizeof(script), "%s/mkzip.py", test_root);
	make_source(src);
	write_file(script, zipfile_script, sizeof(zipfile_script) - 1, 0644);
	assert_int_equal(run(argv), 0);
	extract_and_compare(zip, src, "out-python");
}

static void python_zipfile_streamed(void **state)
{
	char src[2048], zip[2048], script[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/python-streamed.zip", test_root);
	fmt_path(script, sizeof(script), "%s/mkzip.py", test_root);
	make_source(src);
	write_file(script, zipfile_script, sizeof(zipfile_script) - 1, 0644);
	assert_int_equal(run_sh("'%s' '%s' '%s' - stream | cat > '%s'", CB_PYTHON, script, src, zip),
			 0);
	extract_and_compare(zip, src, "out-python-streamed");
}

/* The cap and the free space are checked against the declared sizes before a byte is written. */
static void cap_refused_before_writing(void **state)
{
	char src[2048], zip[2048], dest[2048];
	struct cb_unpack_result res;
	struct cb_error err;
	size_t n;
	char **names;
	int dfd;
	const uint64_t total = 2u * (3u * 1024 * 1024 + 12345) + 19 + 10 + 3 + 23 + 20 + 7 + 6;

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/cap.zip", test_root);
	make_source(src);
	/* Without symlinks (-y off: they become copies), so the total is files only. */
	assert_int_equal(run_sh("cd '%s' && rm -f lib/libx.so bin/tool lib-dir bin/lib "
				"nodejs/node_modules/a/node_modules/b/up && zip -qr '%s' .",
				src, zip),
			 0);
	fmt_path(dest, sizeof(dest), "%s/out-cap", test_root);
	make_dir("%s", dest);
	/* Over --max-size: the zip is refused. Over the free space: not enough space. */
	assert_int_equal(unpack_limited(zip, dest, total - 1, total, &res, &err), CB_E_ZIP);
	assert_non_null(strstr(err.message, "more than the cap of"));
	assert_int_equal(unpack_limited(zip, dest, total, total - 1, &res, &err), CB_E_SPACE);
	assert_non_null(strstr(err.message, "only"));
	assert_non_null(strstr(err.message, dest));
	dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	names = list_dir(dfd, &n);
	assert_int_equal(n, 0);
	free_list(names, n);
	close(dfd);
	/* Free space must also cover about half a block per entry. */
	assert_int_equal(unpack_limited(zip, dest, total, total, &res, &err), CB_E_SPACE);
	assert_int_equal(unpack_limited(zip, dest, total, total + (1u << 20), &res, &err), CB_OK);
	assert_int_equal(res.unpacked_bytes, total);
}

static void dest_not_empty(void **state)
{
	char zip[2048], dest[2048], p[2048];
	struct cb_unpack_result res;
	struct cb_error err;

	(void)state;
	fmt_path(zip, sizeof(zip), "%s/one.zip", test_root);
	fmt_path(dest, sizeof(dest), "%s/out-busy", test_root);
	make_dir("%s", dest);
	fmt_path(p, sizeof(p), "%s/f", dest);
	write_file(p, "old", 3, 0644);
	assert_int_equal(run_sh("cd '%s' && zip -q '%s' f", dest, zip), 0);
	assert_int_equal(unpack(zip, dest, 0, &res, &err), CB_E_IO);
	assert_non_null(strstr(err.message, "entry \"f\": already exists"));
}

/* Modes are 0644/0755 whatever the umask, and group/world bits are never added beyond them. */
static void modes_under_strict_umask(void **state)
{
	char src[2048], zip[2048];
	mode_t old;

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/umask.zip", test_root);
	make_source(src);
	assert_int_equal(run_sh("cd '%s' && zip -qry '%s' .", src, zip), 0);
	old = umask(077);
	extract_and_compare(zip, src, "out-umask");
	umask(old);
}

/*
 * A real ENOSPC: a 64 KiB tmpfs in a private mount namespace (a child
 * process, so the test's own namespace never changes). Skipped where
 * namespaces are not allowed.
 */
static int enter_private_mounts(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	char map[64];
	int fd;

	if (unshare(CLONE_NEWNS) != 0) {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return -1;
		fd = open("/proc/self/setgroups", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)!write(fd, "deny", 4);
			close(fd);
		}
		fmt_path(map, sizeof(map), "0 %u 1", (unsigned)uid);
		fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, map, strlen(map)) < 0)
			return -1;
		close(fd);
		fmt_path(map, sizeof(map), "0 %u 1", (unsigned)gid);
		fd = open("/proc/self/gid_map", O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, map, strlen(map)) < 0)
			return -1;
		close(fd);
	}
	return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/*
 * Extracts zip onto a tmpfs of the given size, in a child; returns the
 * child's cb_status, or 77 when private mounts are not allowed here.
 */
static int unpack_on_small_fs(const char *zip, const char *dest, const char *size, char *msg,
			      size_t msg_size)
{
	int pipefd[2];
	pid_t pid;
	int status;
	ssize_t got;
	char opts[64];

	fmt_path(opts, sizeof(opts), "size=%s,mode=0755", size);
	make_dir("%s", dest);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct cb_unpack_result res;
		struct cb_error err;
		enum cb_status st;

		close(pipefd[0]);
		if (enter_private_mounts() != 0 || mount("tmpfs", dest, "tmpfs", 0, opts) != 0)
			_exit(77);
		st = unpack(zip, dest, 0, &res, &err);
		(void)!write(pipefd[1], err.message, strlen(err.message));
		_exit((int)st);
	}
	close(pipefd[1]);
	got = read(pipefd[0], msg, msg_size - 1);
	msg[got > 0 ? got : 0] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Extracting zip onto a tmpfs of size fails as ENOSPC should: not enough space, naming the entry. */
static void expect_no_space(const char *zip, const char *dest, const char *size)
{
	char msg[CB_ERROR_MESSAGE_MAX + 16] = "";
	int st = unpack_on_small_fs(zip, dest, size, msg, sizeof(msg));

	if (st == 77) {
		print_message("no private mount namespace here: ENOSPC not exercised\n");
		skip();
	}
	if (st != CB_E_SPACE)
		fail_msg("status %d, want CB_E_SPACE: %s", st, msg);
	assert_non_null(strstr(msg, "entry \""));
	assert_non_null(strstr(msg, "No space left on device"));
}

static void enospc_is_space(void **state)
{
	char src[2048], zip[2048], dest[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/enospc.zip", test_root);
	fmt_path(dest, sizeof(dest), "%s/small-fs", test_root);
	make_source(src);
	assert_int_equal(run_sh("cd '%s' && zip -qry '%s' .", src, zip), 0);
	expect_no_space(zip, dest, "64k");
}

/* ---- the parallel extractor: many files, big entries, few descriptors ---- */

/*
 * A site-packages-like tree: 40 packages of 3 levels, about 2,400 files from
 * empty to 1.5 MiB, some executable, and symlinks across packages.
 */
static const char many_script[] =
	"import os, random, sys\n"
	"src = sys.argv[1]\n"
	"r = random.Random(7)\n"
	"os.makedirs(src)\n"
	"for p in range(40):\n"
	"    for s in range(5):\n"
	"        d = os.path.join(src, 'pkg%02d' % p, 'sub%d' % s, 'leaf')\n"
	"        os.makedirs(d)\n"
	"        for f in range(12):\n"
	"            n = r.choice([0, 10, 300, 2000, 9000, 40000])\n"
	"            if f == 0 and s == 0 and p % 10 == 3:\n"
	"                n = 1536 * 1024\n"
	"            base = os.path.dirname(d) if f % 2 else d\n"
	"            path = os.path.join(base, 'mod%02d.py' % f)\n"
	"            line = b'def f%d(x):\\n    return x * %d\\n' % (f, p)\n"
	"            data = (line * (n // len(line) + 1))[:n]\n"
	"            if n > 100000:\n"
	"                data = bytes(r.getrandbits(8) for _ in range(n // 2)) + data[n // 2:]\n"
	"            with open(path, 'wb') as fh:\n"
	"                fh.write(data)\n"
	"            if f == 5:\n"
	"                os.chmod(path, 0o755)\n"
	"    os.symlink('../pkg%02d/sub0/leaf/mod00.py' % ((p + 1) % 40),\n"
	"               os.path.join(src, 'pkg%02d' % p, 'next.py'))\n";

static void make_many(const char *src, const char *zip)
{
	char script[2048];
	const char *argv[] = {CB_PYTHON, script, src, NULL};

	fmt_path(script, sizeof(script), "%s/many.py", test_root);
	write_file(script, many_script, sizeof(many_script) - 1, 0644);
	assert_int_equal(run(argv), 0);
	assert_int_equal(run_sh("cd '%s' && zip -qry '%s' .", src, zip), 0);
}

static void many_files_in_parallel(void **state)
{
	char src[2048], zip[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/many", test_root);
	fmt_path(zip, sizeof(zip), "%s/many.zip", test_root);
	make_many(src, zip);
	extract_and_compare(zip, src, "out-many");
}

/*
 * 440 directories are made by several threads, each its own stretch of them.
 * Where the destination already holds a file in place of one of them (a
 * leaf, and one level up), the install fails naming that directory's entry.
 * Each case runs several times: with the threads once waiting for each other
 * a level at a time, a failure on one level could leave a thread waiting
 * forever (about one run in five hung).
 */
#define BLOCKED_ROUNDS 8

static void directory_blocked_by_a_file(void **state)
{
	static const char *const blocked[] = {"pkg37/sub4/leaf", "pkg21/sub2"};
	char src[2048], zip[2048], dest[2048], p[2048];
	struct cb_unpack_result res;
	struct cb_error err;

	(void)state;
	fmt_path(src, sizeof(src), "%s/many", test_root);
	fmt_path(zip, sizeof(zip), "%s/many.zip", test_root);
	make_many(src, zip);
	for (size_t k = 0; k < BLOCKED_ROUNDS * sizeof(blocked) / sizeof(blocked[0]); k++) {
		char want[256];
		const char *const blocked_k = blocked[k % (sizeof(blocked) / sizeof(blocked[0]))];

		fmt_path(dest, sizeof(dest), "%s/out-blocked%zu", test_root, k);
		fmt_path(p, sizeof(p), "%s/%s", dest, blocked_k);
		assert_int_equal(run_sh("mkdir -p \"$(dirname '%s')\" && echo x > '%s'", p, p), 0);
		assert_int_equal(unpack(zip, dest, 0, &res, &err), CB_E_ZIP);
		snprintf(want, sizeof(want), "is not a directory");
		assert_non_null(strstr(err.message, want));
		snprintf(want, sizeof(want), "%s/", blocked_k);
		assert_non_null(strstr(err.message, want));
	}
}

/*
 * A comb: a chain of 40 directories with 300 leaf directories (a file in
 * each) at its bottom. Every thread's stretch of directories but the first
 * begins among the leaves, so the chain above is made first, before the
 * threads start, and the first stretch finds it made. The tree comes out
 * whole; a file in place of a directory in the middle of the chain fails the
 * install there, naming it.
 */
static void directories_below_a_long_chain(void **state)
{
	char src[2048], zip[2048], dest[2048], chain[512], p[2048], want[600];
	struct cb_unpack_result res;
	struct cb_error err;
	size_t len = 0;

	(void)state;
	fmt_path(src, sizeof(src), "%s/comb", test_root);
	fmt_path(zip, sizeof(zip), "%s/comb.zip", test_root);
	for (int i = 0; i < 40; i++)
		len += (size_t)snprintf(chain + len, sizeof(chain) - len, "%sc%02d", i ? "/" : "",
					i);
	assert_int_equal(run_sh("mkdir -p '%s/%s' && cd '%s/%s' && for i in $(seq 100 399); do "
				"mkdir leaf$i && echo $i > leaf$i/f; done && cd '%s' && zip -qry '%s' .",
				src, chain, src, chain, src, zip),
			 0);
	extract_and_compare(zip, src, "out-comb");

	/* c00/.../c19 */
	chain[20 * 4 - 1] = '\0';
	fmt_path(dest, sizeof(dest), "%s/out-comb-blocked", test_root);
	fmt_path(p, sizeof(p), "%s/%s", dest, chain);
	assert_int_equal(run_sh("mkdir -p \"$(dirname '%s')\" && echo x > '%s'", p, p), 0);
	assert_int_equal(unpack(zip, dest, 0, &res, &err), CB_E_ZIP);
	assert_non_null(strstr(err.message, "is not a directory"));
	snprintf(want, sizeof(want), "%s/", chain);
	assert_non_null(strstr(err.message, want));
}

/*
 * consume_zip: a scratch copy of the zip is given back to the file system as
 * it is extracted (small files in chunks, a big entry as it streams, the
 * central directory last), and the tree is still exact. A zip that is not
 * ours (every other test) is untouched.
 */
static void consumed_zip_is_given_back(void **state)
{
	char src[2048], zip[2048], copy[2048], dest[2048], big[2048];
	struct cb_unpack_options opts;
	struct cb_unpack_result res;
	struct cb_error err;
	struct tree_count count = {0, 0, 0, 0};
	struct stat before, after, original;
	unsigned char *data;
	size_t big_bytes = 24u << 20;
	int sfd, dfd, probe;
	bool can_punch;

	(void)state;
	fmt_path(src, sizeof(src), "%s/consume", test_root);
	fmt_path(zip, sizeof(zip), "%s/consume.zip", test_root);
	fmt_path(copy, sizeof(copy), "%s/consume-copy.zip", test_root);
	fmt_path(dest, sizeof(dest), "%s/out-consume", test_root);
	make_many(src, zip);
	/* Plus one entry bigger than any worker's buffer, which is streamed. */
	data = malloc(big_bytes);
	assert_non_null(data);
	for (size_t i = 0; i < big_bytes; i++)
		data[i] = (unsigned char)((i * 2654435761u) >> 13);
	fmt_path(big, sizeof(big), "%s/big.bin", src);
	write_file(big, data, big_bytes, 0644);
	free(data);
	assert_int_equal(run_sh("cd '%s' && zip -qry '%s' big.bin && cp '%s' '%s'", src, zip, zip,
				copy),
			 0);
	assert_int_equal(stat(zip, &original), 0);
	assert_int_equal(stat(copy, &before), 0);

	memset(&opts, 0, sizeof(opts));
	opts.zip_fd = open(copy, O_RDWR | O_CLOEXEC);
	assert_true(opts.zip_fd >= 0);
	probe = fallocate(opts.zip_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 0);
	can_punch = !(probe != 0 && errno == EOPNOTSUPP);
	make_dir("%s", dest);
	opts.dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(opts.dest_fd >= 0);
	opts.dest_path = dest;
	opts.consume_zip = 1;
	cb_error_init(&err);
	if (cb_unpack_zip(&opts, &res, &err) != CB_OK)
		fail_msg("%s: %s", copy, err.message);
	assert_int_equal(fstat(opts.zip_fd, &after), 0);
	close(opts.zip_fd);
	close(opts.dest_fd);

	sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(sfd >= 0 && dfd >= 0);
	compare_trees(sfd, dfd, ".", &count);
	close(sfd);
	close(dfd);
	assert_int_equal(res.files, count.files);
	/* The size stays (KEEP_SIZE); the blocks go. */
	assert_int_equal(after.st_size, before.st_size);
	/*
	 * What stays is a block or two where stretches meet: every chunk's edge
	 * block is punched with the next chunk, and the central directory once
	 * the workers run (608 KiB of this 4 MB zip stayed before both).
	 */
	if (can_punch)
		assert_true((uint64_t)after.st_blocks * 512 <= 64u * 1024u);
	{
		struct stat again;

		assert_int_equal(stat(zip, &again), 0);
		assert_int_equal(again.st_blocks, original.st_blocks);
	}
}

/*
 * Few descriptors: no room to keep every directory open (the workers then
 * open each file's directory one level at a time), room on paper that runs
 * out while the directories are opened (the extractor starts over without
 * the table), or a soft limit that must be raised for the table and put
 * back afterwards. In a child, since a lowered hard limit cannot be raised
 * again.
 */
static void few_descriptors(void **state)
{
	char src[2048], zip[2048], dest[2048];
	static const char *const how[] = {"hard-limit", "fds-run-out", "soft-limit"};
	static const rlim_t soft[] = {40, 1000, 100}, hard[] = {40, 1000, 1000};

	(void)state;
	fmt_path(src, sizeof(src), "%s/many", test_root);
	fmt_path(zip, sizeof(zip), "%s/many.zip", test_root);
	make_many(src, zip);
	for (size_t k = 0; k < sizeof(how) / sizeof(how[0]); k++) {
		int sfd, dfd, status;
		pid_t pid;
		struct tree_count count = {0, 0, 0, 0};

		fmt_path(dest, sizeof(dest), "%s/out-%s", test_root, how[k]);
		make_dir("%s", dest);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* 440 directories, and 40 descriptors, or 1000 with 600 taken, or 100 of 1000. */
			struct rlimit rl = {soft[k], hard[k]};
			struct cb_unpack_result res;
			struct cb_error err;

			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				_exit(90);
			for (int i = 0; k == 1 && i < 600; i++)
				if (open("/dev/null", O_RDONLY) < 0)
					_exit(91);
			if (unpack(zip, dest, 0, &res, &err) != CB_OK) {
				fprintf(stderr, "%s: %s\n", how[k], err.message);
				_exit(92);
			}
			if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur != soft[k])
				_exit(93);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(sfd >= 0 && dfd >= 0);
		compare_trees(sfd, dfd, ".", &count);
		close(sfd);
		close(dfd);
		assert_int_equal(count.dirs, 40 + 40 * 5 * 2);
	}
}

/* The size of this process's descriptor table, from /proc/self/status (FDSize); -1 unknown. */
static long fd_table_size(void)
{
	char line[256];
	long size = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "FDSize: %ld", &size) == 1)
			break;
	fclose(f);
	return size;
}

/*
 * cb_unpack_reserve_fds grows the descriptor table up front (up to 65,536
 * descriptors, within the hard limit) and leaves the limits as they were:
 * with 4096 of a hard 100,000, and with 256 of a hard 512.
 */
static void descriptor_table_reserved(void **state)
{
	static const rlim_t soft[] = {4096, 256}, hard[] = {100000, 512};
	static const long want[] = {65536, 512};

	(void)state;
	for (size_t k = 0; k < sizeof(soft) / sizeof(soft[0]); k++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			struct rlimit rl = {soft[k], hard[k]};

			/* Without the privilege to raise the hard limit, the first case is moot. */
			if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
				_exit(k == 0 ? 0 : 90);
			if (fd_table_size() >= want[k])
				_exit(91); /* nothing to show: already that big */
			cb_unpack_reserve_fds();
			if (fd_table_size() < want[k])
				_exit(92);
			if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur != soft[k] ||
			    rl.rlim_max != hard[k])
				_exit(93);
			/* The descriptor used to grow it is closed again. */
			if (fcntl((int)want[k] - 1, F_GETFD) >= 0 || errno != EBADF)
				_exit(94);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
}

/* One damaged entry among many: every worker stops, and the message names that entry. */
static void many_files_one_damaged(void **state)
{
	char src[2048], zip[2048], dest[2048], picked[2048], want[2200];
	struct cb_unpack_result res;
	struct cb_error err;
	unsigned char *name;
	size_t len;

	(void)state;
	fmt_path(src, sizeof(src), "%s/many", test_root);
	fmt_path(zip, sizeof(zip), "%s/many.zip", test_root);
	fmt_path(dest, sizeof(dest), "%s/out-damaged", test_root);
	fmt_path(picked, sizeof(picked), "%s/picked", test_root);
	make_many(src, zip);
	/* Flip a byte in the deflated data of a mid-archive entry: its CRC cannot match then. */
	assert_int_equal(run_sh("'%s' -c \"import sys, zipfile\n"
				"z = zipfile.ZipFile(sys.argv[1])\n"
				"l = [i for i in z.infolist() if i.compress_type == 8 and i.compress_size > 1000]\n"
				"i = l[len(l) // 2]\n"
				"f = open(sys.argv[1], 'r+b')\n"
				"f.seek(i.header_offset + 26)\n"
				"h = f.read(4)\n"
				"at = i.header_offset + 30 + h[0] + 256 * h[1] + h[2] + 256 * h[3] + 500\n"
				"f.seek(at)\n"
				"b = f.read(1)\n"
				"f.seek(at)\n"
				"f.write(bytes([b[0] ^ 0x55]))\n"
				"open(sys.argv[2], 'w').write(i.filename)\n\" '%s' '%s'",
				CB_PYTHON, zip, picked),
			 0);
	name = read_at(AT_FDCWD, picked, &len);
	name[len] = '\0';
	fmt_path(want, sizeof(want), "entry \"%s\": ", (char *)name);
	free(name);
	make_dir("%s", dest);
	assert_int_equal(unpack(zip, dest, 0, &res, &err), CB_E_ZIP);
	if (strstr(err.message, want) == NULL || (strstr(err.message, "CRC mismatch") == NULL &&
						  strstr(err.message, "deflate data") == NULL &&
						  strstr(err.message, "declared size") == NULL))
		fail_msg("unexpected message: %s", err.message);
}

/* The disk fills while several workers write: not enough space, never a hang or a crash. */
static void enospc_with_workers(void **state)
{
	char src[2048], zip[2048], dest[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/many", test_root);
	fmt_path(zip, sizeof(zip), "%s/many.zip", test_root);
	fmt_path(dest, sizeof(dest), "%s/small-fs", test_root);
	make_many(src, zip);
	/* Room for the directories and about a third of the files. */
	expect_no_space(zip, dest, "8m");
}

/*
 * Raw zips around entries bigger than any thread's buffers (streamed
 * through zlib) and small ones (held whole by libdeflate): good ones, and
 * every way their data can disagree with the central directory.
 */
static const char raw_script[] =
	"import os, struct, sys, zlib, random\n"
	"out = sys.argv[1]\n"
	"def deflate(b):\n"
	"    c = zlib.compressobj(6, zlib.DEFLATED, -15)\n"
	"    return c.compress(b) + c.flush()\n"
	"def build(name, entries):\n"
	"    data, cd = bytearray(), bytearray()\n"
	"    for n, comp, method, crc, size, mode in entries:\n"
	"        off, n = len(data), n.encode()\n"
	"        data += struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0, method, 0, 0x21, crc,\n"
	"                            len(comp), size, len(n), 0) + n + comp\n"
	"        cd += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 0x31e, 20, 0, method, 0, 0x21,\n"
	"                          crc, len(comp), size, len(n), 0, 0, 0, 0, mode << 16, off) + n\n"
	"    tail = struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, len(entries), len(entries), len(cd),\n"
	"                       len(data), 0)\n"
	"    with open(os.path.join(out, name + '.zip'), 'wb') as f:\n"
	"        f.write(bytes(data + cd + tail))\n"
	"def text(n):\n"
	"    b = b''.join(b'%08d: some text that compresses well\\n' % i for i in range(n // 40 + 1))\n"
	"    return b[:n]\n"
	"r = random.Random(3)\n"
	"MB = 1024 * 1024\n"
	"big, noise = text(20 * MB), r.randbytes(3 * MB)\n"
	"mixed = big[:5 * MB] + noise + big[5 * MB:10 * MB]\n"
	"small = text(5000)\n"
	"ent = lambda n, d, m=8, crc=None, size=None, comp=None: (\n"
	"    n, comp if comp is not None else (deflate(d) if m == 8 else d), m,\n"
	"    zlib.crc32(d) if crc is None else crc, len(d) if size is None else size, 0o100644)\n"
	"os.makedirs(os.path.join(out, 'src'))\n"
	"for n, d in (('big.txt', big), ('mixed.bin', mixed), ('stored.bin', mixed),\n"
	"             ('small.txt', small), ('empty', b'')):\n"
	"    with open(os.path.join(out, 'src', n), 'wb') as f:\n"
	"        f.write(d)\n"
	"build('good', [ent('big.txt', big), ent('mixed.bin', mixed), ent('stored.bin', mixed, 0),\n"
	"               ent('small.txt', small), ent('empty', b'', comp=b'')])\n"
	"build('big_crc', [ent('small.txt', small), ent('big.txt', big, crc=zlib.crc32(big) ^ 1)])\n"
	"build('big_past', [ent('big.txt', big, size=12 * MB, crc=zlib.crc32(big[:12 * MB]))])\n"
	"build('big_short', [ent('big.txt', big[:12 * MB], size=16 * MB)])\n"
	"build('big_cut', [ent('big.txt', big, comp=deflate(big)[:50000])])\n"
	"build('big_garbage', [ent('big.txt', big, comp=noise)])\n"
	"build('stored_crc', [ent('stored.bin', mixed, 0, crc=zlib.crc32(mixed) ^ 1)])\n"
	"build('stored_size', [ent('stored.bin', mixed, 0, size=len(mixed) + 1)])\n"
	"build('small_garbage', [ent('small.txt', small, comp=b'\\xff' * 100)])\n"
	"build('small_short', [ent('small.txt', small, size=len(small) + 1)])\n"
	"build('small_past', [ent('small.txt', small, size=len(small) - 1,\n"
	"                         crc=zlib.crc32(small[:-1]))])\n"
	"build('small_cut', [ent('small.txt', small, comp=deflate(small)[:40])])\n";

static void big_and_damaged_entries(void **state)
{
	static const struct {
		const char *name;
		const char *message;
	} damaged[] = {
		{"big_crc", "entry \"big.txt\": CRC mismatch"},
		{"big_past", "entry \"big.txt\": data inflates past its declared size"},
		{"big_short", "entry \"big.txt\": data shorter than its declared size"},
		{"big_cut", "entry \"big.txt\": cannot read its data: the deflate data ends early"},
		{"big_garbage", "entry \"big.txt\": cannot read its data: invalid deflate data"},
		{"stored_crc", "entry \"stored.bin\": CRC mismatch"},
		{"stored_size", "entry \"stored.bin\": data does not match its declared size"},
		{"small_garbage", "entry \"small.txt\": cannot read its data: invalid"},
		{"small_short", "entry \"small.txt\": data shorter than its declared size"},
		{"small_past", "entry \"small.txt\": data inflates past its declared size"},
		{"small_cut", "entry \"small.txt\": cannot read its data: invalid or truncated"},
	};
	char dir[2048], script[2048], zip[2048], src[2048], dest[2048];
	const char *argv[] = {CB_PYTHON, script, dir, NULL};
	struct cb_unpack_result res;
	struct cb_error err;

	(void)state;
	fmt_path(dir, sizeof(dir), "%s/raw", test_root);
	fmt_path(script, sizeof(script), "%s/raw.py", test_root);
	make_dir("%s", dir);
	write_file(script, raw_script, sizeof(raw_script) - 1, 0644);
	assert_int_equal(run(argv), 0);
	fmt_path(zip, sizeof(zip), "%s/good.zip", dir);
	fmt_path(src, sizeof(src), "%s/src", dir);
	extract_and_compare(zip, src, "out-good");
	for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		fmt_path(zip, sizeof(zip), "%s/%s.zip", dir, damaged[i].name);
		fmt_path(dest, sizeof(dest), "%s/out-%s", test_root, damaged[i].name);
		make_dir("%s", dest);
		if (unpack(zip, dest, 0, &res, &err) != CB_E_ZIP)
			fail_msg("%s: not refused (%s)", damaged[i].name, err.message);
		if (strstr(err.message, damaged[i].message) == NULL)
			fail_msg("%s: message \"%s\" lacks \"%s\"", damaged[i].name, err.message,
				 damaged[i].message);
	}
}

/*
 * --memory-budget: the smallest budget still extracts big entries exactly
 * (one worker, small buffers: everything over 1.5 MiB streams), and an
 * archive whose metadata alone would not fit is refused before a byte is
 * written, naming the budget that would do.
 */
static const char entries_script[] =
	"import sys, zipfile\n"
	"with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n"
	"    for i in range(20000):\n"
	"        z.writestr('pkg%03d/m%05d.py' % (i // 200, i), 'x = %d\\n' % i)\n";

static void memory_budget(void **state)
{
	char dir[2048], script[2048], zip[2048], src[2048], dest[2048];
	const char *raw[] = {CB_PYTHON, script, dir, NULL};
	const char *many[] = {CB_PYTHON, script, zip, NULL};
	struct cb_unpack_result res;
	struct cb_error err;
	struct tree_count count = {0, 0, 0, 0};
	int src_fd, dest_fd;
	size_t n;
	char **left;

	(void)state;
	fmt_path(dir, sizeof(dir), "%s/raw", test_root);
	fmt_path(script, sizeof(script), "%s/raw.py", test_root);
	make_dir("%s", dir);
	write_file(script, raw_script, sizeof(raw_script) - 1, 0644);
	assert_int_equal(run(raw), 0);
	fmt_path(zip, sizeof(zip), "%s/good.zip", dir);
	fmt_path(src, sizeof(src), "%s/src", dir);
	fmt_path(dest, sizeof(dest), "%s/out-budget", test_root);
	make_dir("%s", dest);
	if (unpack_budget(zip, dest, 0, 0, 16u << 20, &res, &err) != CB_OK)
		fail_msg("16 MiB budget: %s", err.message);
	src_fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(src_fd >= 0 && dest_fd >= 0);
	compare_trees(src_fd, dest_fd, "", &count);
	assert_int_equal(count.files, 5);
	close(src_fd);
	close(dest_fd);

	fmt_path(script, sizeof(script), "%s/entries.py", test_root);
	write_file(script, entries_script, sizeof(entries_script) - 1, 0644);
	fmt_path(zip, sizeof(zip), "%s/entries.zip", test_root);
	assert_int_equal(run(many), 0);
	fmt_path(dest, sizeof(dest), "%s/out-entries", test_root);
	make_dir("%s", dest);
	assert_int_equal(unpack_budget(zip, dest, 0, 0, 16u << 20, &res, &err), CB_E_ZIP);
	if (strstr(err.message, "checking its 20000 entries needs about") == NULL ||
	    strstr(err.message, "raise --memory-budget") == NULL)
		fail_msg("message: %s", err.message);
	dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dest_fd >= 0);
	left = list_dir(dest_fd, &n);
	assert_int_equal(n, 0);
	free_list(left, n);
	close(dest_fd);
	if (unpack_budget(zip, dest, 0, 0, 64u << 20, &res, &err) != CB_OK)
		fail_msg("64 MiB budget: %s", err.message);
	assert_int_equal(res.files, 20000);
}

/* Methods other than stored and deflate go through libzip, next to the workers' entries. */
static void bzip2_entries(void **state)
{
	char src[2048], zip[2048];

	(void)state;
	fmt_path(src, sizeof(src), "%s/src", test_root);
	fmt_path(zip, sizeof(zip), "%s/bzip2.zip", test_root);
	make_source(src);
	/* Half the entries bzip2, the other half deflate, so both paths write in one run. */
	assert_int_equal(run_sh("cd '%s' && zip -qry -Z bzip2 '%s' bin lib lib-dir && "
				"zip -qry '%s' data empty python nodejs",
				src, zip, zip),
			 0);
	assert_int_equal(run_sh("unzip -v '%s' | grep -q BZip2", zip), 0);
	extract_and_compare(zip, src, "out-bzip2");
}

/* ---- the hostile corpus ---- */

struct want {
	char kind; /* 'f', 'd', 'l' */
	char *path;
	unsigned mode;
	char *payload; /* hex content or symlink target */
	int seen;
};

struct hostile_case {
	char *file;
	char *expect;
	uint64_t max_size_bytes;
	uint64_t free_bytes;
	char *message;
	struct want *wants;
	size_t nwants;
};

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Splits line at tabs in place; returns the number of fields. */
static size_t split_tabs(char *line, char **fields, size_t max)
{
	size_t n = 0;

	while (n < max) {
		char *tab = strchr(line, '\t');

		fields[n++] = line;
		if (tab == NULL)
			break;
		*tab = '\0';
		line = tab + 1;
	}
	return n;
}

static struct hostile_case *load_cases(const char *tsv, size_t *count, char **text_out)
{
	size_t len;
	int dfd = AT_FDCWD;
	unsigned char *text = read_at(dfd, tsv, &len);
	struct hostile_case *cases = NULL;
	size_t n = 0;
	char *line = (char *)text;

	text[len] = '\0';
	while (line != NULL && *line != '\0') {
		char *nl = strchr(line, '\n');
		char *f[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
		size_t nf;

		if (nl != NULL)
			*nl = '\0';
		nf = split_tabs(line, f, 6);
		if (strcmp(f[0], "case") == 0) {
			assert_int_equal(nf, 6);
			cases = realloc(cases, (n + 1) * sizeof(*cases));
			assert_non_null(cases);
			memset(&cases[n], 0, sizeof(cases[n]));
			cases[n].file = f[1];
			cases[n].expect = f[2];
			cases[n].max_size_bytes = strtoull(f[3], NULL, 10);
			cases[n].free_bytes = strtoull(f[4], NULL, 10);
			cases[n].message = f[5];
			n++;
		} else {
			struct hostile_case *c = &cases[n - 1];
			struct want *w;

			assert_true(n > 0);
			c->wants = realloc(c->wants, (c->nwants + 1) * sizeof(*c->wants));
			assert_non_null(c->wants);
			w = &c->wants[c->nwants++];
			memset(w, 0, sizeof(*w));
			w->kind = f[0][0];
			w->path = f[1];
			if (w->kind == 'f') {
				assert_int_equal(nf, 4);
				w->mode = (unsigned)strtoul(f[2], NULL, 8);
				w->payload = f[3];
			} else if (w->kind == 'l') {
				assert_int_equal(nf, 3);
				w->payload = f[2];
			} else {
				assert_int_equal(nf, 2);
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	*count = n;
	*text_out = (char *)text;
	return cases;
}

/* Every path under dirfd must be one the case lists, as it lists it. */
static int check_wants(int dirfd, const char *rel, struct hostile_case *c, const char *file)
{
	size_t n;
	char **names = list_dir(dirfd, &n);
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		char path[8192];
		struct stat sb;
		struct want *w = NULL;

		if (rel[0] == '\0')
			fmt_path(path, sizeof(path), "%s", names[i]);
		else
			fmt_path(path, sizeof(path), "%s/%s", rel, names[i]);
		for (size_t k = 0; k < c->nwants && w == NULL; k++)
			if (strcmp(c->wants[k].path, path) == 0)
				w = &c->wants[k];
		if (w == NULL) {
			print_error("%s: unexpected %s\n", file, path);
			bad++;
			continue;
		}
		w->seen = 1;
		assert_int_equal(fstatat(dirfd, names[i], &sb, AT_SYMLINK_NOFOLLOW), 0);
		if (w->kind == 'd') {
			int sub = openat(dirfd, names[i],
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0 || (sb.st_mode & 07777) != 0755) {
				print_error("%s: %s is not a 0755 directory\n", file, path);
				bad++;
			} else {
				bad += check_wants(sub, path, c, file);
			}
			if (sub >= 0)
				close(sub);
		} else if (w->kind == 'l') {
			char target[4096];
			ssize_t tl = readlinkat(dirfd, names[i], target, sizeof(target) - 1);

			if (!S_ISLNK(sb.st_mode) || tl < 0 ||
			    (target[tl] = '\0', strcmp(target, w->payload) != 0)) {
				print_error("%s: %s is not a symlink to %s\n", file, path,
					    w->payload);
				bad++;
			}
		} else {
			size_t len, hexlen = strlen(w->payload);
			unsigned char *data;
			int same;

			if (!S_ISREG(sb.st_mode) || (sb.st_mode & 07777) != w->mode) {
				print_error("%s: %s is not a regular file with mode 0%o (0%o)\n",
					    file, path, w->mode, (unsigned)(sb.st_mode & 07777));
				bad++;
				continue;
			}
			data = read_at(dirfd, names[i], &len);
			same = len * 2 == hexlen;
			for (size_t k = 0; same && k < len; k++)
				same = hex_value(w->payload[2 * k]) * 16 +
					       hex_value(w->payload[2 * k + 1]) ==
				       data[k];
			if (!same) {
				print_error("%s: %s has the wrong content\n", file, path);
				bad++;
			}
			free(data);
		}
	}
	free_list(names, n);
	return bad;
}

/* Appends "path type size mode [target]" for everything under dirfd, staging/ left out. */
static void snapshot(int dirfd, const char *rel, char **out, size_t *len, size_t *cap)
{
	size_t n;
	char **names = list_dir(dirfd, &n);

	for (size_t i = 0; i < n; i++) {
		char line[8192 + 128], target[4096] = "";
		struct stat sb;
		int w;

		if (rel[0] == '\0' && strcmp(names[i], "staging") == 0)
			continue;
		assert_int_equal(fstatat(dirfd, names[i], &sb, AT_SYMLINK_NOFOLLOW), 0);
		if (S_ISLNK(sb.st_mode)) {
			ssize_t tl = readlinkat(dirfd, names[i], target, sizeof(target) - 1);

			target[tl > 0 ? tl : 0] = '\0';
		}
		w = snprintf(line, sizeof(line), "%s/%s %o %lld %s\n", rel, names[i],
			     (unsigned)sb.st_mode, (long long)sb.st_size, target);
		assert_true(w > 0);
		if (*len + (size_t)w + 1 > *cap) {
			*cap = (*len + (size_t)w + 1) * 2;
			*out = realloc(*out, *cap);
			assert_non_null(*out);
		}
		memcpy(*out + *len, line, (size_t)w + 1);
		*len += (size_t)w;
		if (S_ISDIR(sb.st_mode)) {
			int sub = openat(dirfd, names[i],
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			char path[8192];

			assert_true(sub >= 0);
			fmt_path(path, sizeof(path), "%s/%s", rel, names[i]);
			snapshot(sub, path, out, len, cap);
			close(sub);
		}
	}
	free_list(names, n);
}

static char *snapshot_of(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *out = strdup("");
	size_t len = 0, cap = 1;

	assert_true(fd >= 0);
	assert_non_null(out);
	snapshot(fd, "", &out, &len, &cap);
	close(fd);
	return out;
}

static int run_case(const struct hostile_case *cc, const char *corpus, const char *sandbox)
{
	struct hostile_case *c = (struct hostile_case *)(uintptr_t)cc;
	char zip[2048], dest[2048], p[2048];
	struct cb_unpack_result res;
	struct cb_error err;
	enum cb_status st, want_st;
	char *before, *after;
	int bad = 0;

	remove_tree(sandbox);
	make_dir("%s", sandbox);
	make_dir("%s/staging", sandbox);
	make_dir("%s/staging-sibling", sandbox);
	fmt_path(p, sizeof(p), "%s/staging-sibling/keep.txt", sandbox);
	write_file(p, "keep", 4, 0644);
	fmt_path(zip, sizeof(zip), "%s/%s", corpus, c->file);
	fmt_path(dest, sizeof(dest), "%s/staging", sandbox);
	before = snapshot_of(sandbox);
	st = unpack_limited(zip, dest, c->max_size_bytes, c->free_bytes, &res, &err);
	after = snapshot_of(sandbox);
	if (strcmp(before, after) != 0) {
		print_error("%s: something changed outside the destination:\n--- before\n%s--- after\n%s",
			    c->file, before, after);
		bad++;
	}
	free(before);
	free(after);
	want_st = strcmp(c->expect, "ok") == 0    ? CB_OK :
		  strcmp(c->expect, "space") == 0 ? CB_E_SPACE :
						    CB_E_ZIP;
	if (st != want_st) {
		print_error("%s: status %d, want %d (%s): %s\n", c->file, st, want_st, c->expect,
			    err.message);
		return bad + 1;
	}
	if (st != CB_OK) {
		if (strstr(err.message, c->message) == NULL) {
			print_error("%s: message \"%s\" lacks \"%s\"\n", c->file, err.message,
				    c->message);
			bad++;
		}
		if (strchr(err.message, '\n') != NULL) {
			print_error("%s: message spans lines\n", c->file);
			bad++;
		}
		return bad;
	}
	{
		int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		uint64_t files = 0, links = 0;

		assert_true(dfd >= 0);
		bad += check_wants(dfd, "", c, c->file);
		close(dfd);
		for (size_t k = 0; k < c->nwants; k++) {
			if (!c->wants[k].seen) {
				print_error("%s: %s was not extracted\n", c->file, c->wants[k].path);
				bad++;
			}
			files += c->wants[k].kind == 'f';
			links += c->wants[k].kind == 'l';
		}
		if (res.files != files || res.symlinks != links) {
			print_error("%s: result counts %llu files, %llu symlinks; want %llu, %llu\n",
				    c->file, (unsigned long long)res.files,
				    (unsigned long long)res.symlinks, (unsigned long long)files,
				    (unsigned long long)links);
			bad++;
		}
	}
	return bad;
}

static void hostile_corpus(void **state)
{
	char corpus[2048], sandbox[2048], tsv[2048], script[2048];
	const char *srcdir = getenv("CB_TEST_SRC");
	const char *argv[] = {CB_PYTHON, script, corpus, "--escape-dir", sandbox, NULL};
	struct hostile_case *cases;
	size_t n, ok = 0, refused = 0;
	char *text;
	int bad = 0;

	(void)state;
	/* Run by hand, outside ctest: the source tree it was built from. */
	fmt_path(script, sizeof(script), "%s/hostile/make_corpus.py",
		 srcdir ? srcdir : CB_TEST_SRC_DIR);
	fmt_path(corpus, sizeof(corpus), "%s/corpus", test_root);
	fmt_path(sandbox, sizeof(sandbox), "%s/sandbox", test_root);
	fmt_path(tsv, sizeof(tsv), "%s/cases.tsv", corpus);
	assert_int_equal(run(argv), 0);
	cases = load_cases(tsv, &n, &text);
	assert_true(n >= 25);
	for (size_t i = 0; i < n; i++) {
		int b = run_case(&cases[i], corpus, sandbox);

		bad += b;
		if (b == 0 && strcmp(cases[i].expect, "ok") == 0)
			ok++;
		else if (b == 0)
			refused++;
	}
	print_message("hostile corpus: %zu cases, %zu extracted as expected, %zu refused as expected\n",
		      n, ok, refused);
	for (size_t i = 0; i < n; i++)
		free(cases[i].wants);
	free(cases);
	free(text);
	if (bad != 0)
		fail_msg("%d problems in the hostile corpus", bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(infozip_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(infozip_zip64, setup, teardown),
		cmocka_unit_test_setup_teardown(infozip_streamed, setup, teardown),
		cmocka_unit_test_setup_teardown(infozip_sfx_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(python_zipfile, setup, teardown),
		cmocka_unit_test_setup_teardown(python_zipfile_streamed, setup, teardown),
		cmocka_unit_test_setup_teardown(cap_refused_before_writing, setup, teardown),
		cmocka_unit_test_setup_teardown(dest_not_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(modes_under_strict_umask, setup, teardown),
		cmocka_unit_test_setup_teardown(enospc_is_space, setup, teardown),
		cmocka_unit_test_setup_teardown(hostile_corpus, setup, teardown),
		cmocka_unit_test_setup_teardown(many_files_in_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(consumed_zip_is_given_back, setup, teardown),
		cmocka_unit_test_setup_teardown(few_descriptors, setup, teardown),
		cmocka_unit_test_setup_teardown(directory_blocked_by_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(directories_below_a_long_chain, setup, teardown),
		cmocka_unit_test(descriptor_table_reserved),
		cmocka_unit_test_setup_teardown(many_files_one_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(enospc_with_workers, setup, teardown),
		cmocka_unit_test_setup_teardown(big_and_damaged_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(memory_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(bzip2_entries, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
