/*
 * The file system's floor for a bundle: creates the same tree as the zip
 * holds (directories, files of the same sizes, symlinks) from memory, with
 * no download, no inflating and no checking, the way coldboot's extractor
 * writes it: directories first, then the files by several threads taking
 * chunks in name order, one open + write + close each.
 *
 *   write_floor MANIFEST DEST THREADS
 *
 * MANIFEST lines (bench/run.py writes them from the zip): "d PATH" (each
 * directory once, after its parent), "f SIZE PATH", "l TARGET\tPATH". Exits
 * non-zero on the first failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_FILES 16
#define MAX_THREADS 8

struct file {
	char *path;
	size_t size;
};

static struct file *files;
static size_t nfiles;
static int dest_fd;
static const char *zeros; /* as large as the largest file */
static atomic_size_t next_chunk;

static void die(const char *what, const char *path)
{
	fprintf(stderr, "write_floor: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* The manifest lists each directory once, after its parent. */
static void make_dir(const char *path)
{
	if (mkdirat(dest_fd, path, 0755) != 0)
		die("mkdir", path);
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		size_t first = atomic_fetch_add(&next_chunk, 1) * CHUNK_FILES;

		if (first >= nfiles)
			return NULL;
		for (size_t i = first; i < nfiles && i < first + CHUNK_FILES; i++) {
			int fd = openat(dest_fd, files[i].path,
					O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
			size_t done = 0;

			if (fd < 0)
				die("create", files[i].path);
			while (done < files[i].size) {
				ssize_t n = write(fd, zeros + done, files[i].size - done);

				if (n <= 0)
					die("write", files[i].path);
				done += (size_t)n;
			}
			if (close(fd) != 0)
				die("close", files[i].path);
		}
	}
}

int main(int argc, char **argv)
{
	char line[16384];
	char **links = NULL;
	size_t nlinks = 0, cap = 0, lcap = 0, biggest = 0;
	pthread_t threads[MAX_THREADS];
	long nthreads;
	FILE *f;

	if (argc != 4 || (nthreads = strtol(argv[3], NULL, 10)) < 1 || nthreads > MAX_THREADS) {
		fprintf(stderr, "usage: write_floor MANIFEST DEST THREADS(1-%d)\n", MAX_THREADS);
		return 2;
	}
	f = fopen(argv[1], "r");
	if (f == NULL)
		die("open", argv[1]);
	if (mkdir(argv[2], 0755) != 0 && errno != EEXIST)
		die("mkdir", argv[2]);
	dest_fd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dest_fd < 0)
		die("open", argv[2]);
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == 'd') {
			make_dir(line + 2);
		} else if (line[0] == 'f') {
			char *end;
			size_t size = strtoull(line + 2, &end, 10);

			if (nfiles == cap) {
				cap = cap ? 2 * cap : 4096;
				files = realloc(files, cap * sizeof(*files));
			}
			files[nfiles].path = strdup(end + 1);
			files[nfiles].size = size;
			if (files[nfiles].path == NULL)
				die("strdup", line);
			biggest = size > biggest ? size : biggest;
			nfiles++;
		} else if (line[0] == 'l') {
			if (nlinks == lcap) {
				lcap = lcap ? 2 * lcap : 64;
				links = realloc(links, lcap * sizeof(*links));
			}
			links[nlinks++] = strdup(line + 2);
		}
	}
	fclose(f);
	zeros = calloc(1, biggest ? biggest : 1);
	if (zeros == NULL)
		die("calloc", "buffer");
	for (long t = 1; t < nthreads; t++)
		if (pthread_create(&threads[t], NULL, worker, NULL) != 0)
			die("pthread_create", "");
	worker(NULL);
	for (long t = 1; t < nthreads; t++)
		pthread_join(threads[t], NULL);
	for (size_t i = 0; i < nlinks; i++) {
		char *tab = strchr(links[i], '\t');

		if (tab == NULL)
			continue;
		*tab = '\0';
		if (symlinkat(links[i], dest_fd, tab + 1) != 0)
			die("symlink", tab + 1);
	}
	return 0;
}
