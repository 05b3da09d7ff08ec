/*
 * Fuzz target for bootstrap/unpack.c. Each input is written to a memfd and
 * extracted into a fresh directory two levels below a private root; after
 * the directory is removed, anything left under the root means an entry
 * escaped, and the target aborts.
 *
 * Built two ways (tests/CMakeLists.txt): with Clang and -fsanitize=fuzzer as
 * a libFuzzer binary, and everywhere with CB_FUZZ_REPLAY_MAIN as a plain
 * program that replays the files and directories named on its command line
 * (the hostile corpus, under ctest).
 */
#define _GNU_SOURCE /* memfd_create */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../bootstrap/unpack.h"

#define FUZZ_MAX_SIZE_BYTES (64u * 1024 * 1024)
#define FUZZ_FREE_BYTES (32u * 1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_root[1024];
static int root_fd = -1;

/* Removes name under dirfd and everything below it, never following a symlink. */
static int remove_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *dir;
	struct dirent *de;

	if (fd < 0)
		return unlinkat(dirfd, name, 0);
	dir = fdopendir(fd);
	if (dir == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (remove_at(fd, de->d_name) != 0) {
			closedir(dir);
			return -1;
		}
	}
	closedir(dir);
	return unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* The names in a directory other than "." and "..", or -1. */
static int count_entries(int dirfd, const char *name, char *first, size_t first_size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *dir;
	struct dirent *de;
	int n = 0;

	if (fd < 0)
		return -1;
	dir = fdopendir(fd);
	if (dir == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n++ == 0)
			snprintf(first, first_size, "%s", de->d_name);
	}
	closedir(dir);
	return n;
}

static void clean_up_root(void)
{
	if (root_fd >= 0) {
		(void)remove_at(root_fd, "sandbox");
		close(root_fd);
		root_fd = -1;
		(void)rmdir(fuzz_root);
	}
}

static void make_root(void)
{
	const char *base = getenv("CB_TEST_TMP");

	if (base == NULL)
		base = getenv("TMPDIR");
	if (base == NULL)
		base = "/tmp";
	(void)mkdir(base, 0755);
	snprintf(fuzz_root, sizeof(fuzz_root), "%s/fuzz-unpack-XXXXXX", base);
	if (mkdtemp(fuzz_root) == NULL) {
		fprintf(stderr, "fuzz_unpack: mkdtemp %s: %s\n", fuzz_root, strerror(errno));
		abort();
	}
	root_fd = open(fuzz_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		abort();
	atexit(clean_up_root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cb_unpack_options opts;
	struct cb_unpack_result res;
	struct cb_error err;
	char first[256] = "";
	enum cb_status st;
	int zip_fd, sandbox_fd;
	size_t done = 0;

	if (root_fd < 0)
		make_root();
	zip_fd = memfd_create("fuzz-unpack.zip", MFD_CLOEXEC);
	if (zip_fd < 0)
		abort();
	while (done < size) {
		ssize_t n = write(zip_fd, data + done, size - done);

		if (n <= 0)
			abort();
		done += (size_t)n;
	}
	if (mkdirat(root_fd, "sandbox", 0755) != 0 ||
	    (sandbox_fd = openat(root_fd, "sandbox", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    mkdirat(sandbox_fd, "dest", 0755) != 0)
		abort();
	memset(&opts, 0, sizeof(opts));
	opts.zip_fd = zip_fd;
	opts.dest_fd = openat(sandbox_fd, "dest", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	opts.dest_path = "sandbox/dest";
	opts.max_size_bytes = FUZZ_MAX_SIZE_BYTES;
	opts.free_bytes = FUZZ_FREE_BYTES;
	if (opts.dest_fd < 0)
		abort();
	cb_error_init(&err);
	st = cb_unpack_zip(&opts, &res, &err);
	/* A failure is one of the documented codes, with one line that says why. */
	if (st != err.code ||
	    (st != CB_OK && (err.message[0] == '\0' || strchr(err.message, '\n') != NULL)) ||
	    (st != CB_OK && st != CB_E_ZIP && st != CB_E_SPACE && st != CB_E_IO &&
	     st != CB_E_NOMEM)) {
		fprintf(stderr, "fuzz_unpack: status %d with error %d \"%s\"\n", st, err.code,
			err.message);
		abort();
	}
	if (res.unpacked_bytes > FUZZ_FREE_BYTES)
		abort();
	close(opts.dest_fd);
	close(zip_fd);
	if (remove_at(sandbox_fd, "dest") != 0) {
		fprintf(stderr, "fuzz_unpack: cannot remove the destination: %s\n", strerror(errno));
		abort();
	}
	/* Whatever is left beside dest, or beside the sandbox, escaped. */
	if (count_entries(root_fd, "sandbox", first, sizeof(first)) != 0 ||
	    count_entries(root_fd, ".", first, sizeof(first)) != 1) {
		fprintf(stderr, "fuzz_unpack: an entry escaped the destination: %s (%s)\n", first,
			err.message);
		abort();
	}
	close(sandbox_fd);
	if (unlinkat(root_fd, "sandbox", AT_REMOVEDIR) != 0)
		abort();
	return 0;
}

#ifdef CB_FUZZ_REPLAY_MAIN

static int replay_file(int dirfd, const char *name, const char *shown)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	uint8_t *buf;
	size_t done = 0;

	if (fd < 0 || fstat(fd, &sb) != 0) {
		fprintf(stderr, "fuzz_unpack: %s: %s\n", shown, strerror(errno));
		return -1;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL)
		return -1;
	while (done < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)sb.st_size - done);

		if (n <= 0) {
			free(buf);
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	close(fd);
	(void)LLVMFuzzerTestOneInput(buf, done);
	free(buf);
	return 0;
}

/* Replays every regular file named, or found directly inside a directory named. */
int main(int argc, char **argv)
{
	unsigned long replayed = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat sb;

		if (stat(argv[i], &sb) != 0) {
			fprintf(stderr, "fuzz_unpack: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(sb.st_mode)) {
			int dfd = open(argv[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
			struct dirent *de;

			if (dir == NULL)
				return 1;
			while ((de = readdir(dir)) != NULL) {
				struct stat fsb;

				if (fstatat(dfd, de->d_name, &fsb, 0) != 0 || !S_ISREG(fsb.st_mode))
					continue;
				if (replay_file(dfd, de->d_name, de->d_name) != 0)
					return 1;
				replayed++;
			}
			closedir(dir);
		} else {
			if (replay_file(AT_FDCWD, argv[i], argv[i]) != 0)
				return 1;
			replayed++;
		}
	}
	printf("fuzz_unpack: replayed %lu inputs, none escaped or crashed\n", replayed);
	return replayed > 0 ? 0 : 1;
}

#endif
