/*
 * coldboot-cold: the cold path as a program of its own. The static front
 * binary (bootstrap/cold_loader.c) runs it on a cache miss, and for
 * `coldboot hash` and `coldboot pack`, so only this program links libcurl,
 * libzip and xxHash. Its command line and its one result record are described
 * in bootstrap/cold.h; it never prints to stdout.
 */
#include "cold.h"
#include "install.h"
#include "pack.h"
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bounds the URL read from the request pipe (a pipe holds at most 1 MiB by default). */
#define REQUEST_MAX_BYTES (1u << 20)

struct room_ctx {
	struct cb_cache *cache;
	const struct cb_checksum *keep;
};

static int usage(const char *why)
{
	fprintf(stderr,
		"coldboot-cold: %s\n"
		"coldboot-cold is the download helper of coldboot (protocol %s): coldboot runs it "
		"on a cache miss. Install coldboot and coldboot-cold from the same build.\n",
		why, CB_COLD_PROTOCOL);
	return 2;
}

static int parse_u64(const char *text, uint64_t *value)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*value = (uint64_t)v;
	return 0;
}

static int parse_i64(const char *text, int64_t *value)
{
	char *end;
	long long v;

	if (text[0] == '\0')
		return -1;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*value = (int64_t)v;
	return 0;
}

/* A descriptor number from the command line that is open in this process. */
static int parse_fd(const char *text, int *fd)
{
	uint64_t v;

	if (parse_u64(text, &v) != 0 || v > 1000000 || fcntl((int)v, F_GETFD) < 0)
		return -1;
	*fd = (int)v;
	return 0;
}

static int parse_level(const char *text, enum cb_log_level *level)
{
	uint64_t v;

	if (parse_u64(text, &v) != 0 || v > CB_LOG_DEBUG)
		return -1;
	*level = (enum cb_log_level)v;
	return 0;
}

/*
 * Reads the URL: everything on fd up to EOF. Returns a string to free, or
 * NULL with err filled.
 */
static char *read_request(int fd, struct cb_error *err)
{
	size_t size = 4096;
	size_t used = 0;
	char *buf = malloc(size);

	if (buf == NULL) {
		cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory reading the request");
		return NULL;
	}
	for (;;) {
		ssize_t n;

		if (used + 1 == size) {
			char *bigger;

			if (size >= REQUEST_MAX_BYTES) {
				cb_error_set(err, CB_E_CONFIG, 0, "the bundle URL is over %u bytes",
					     REQUEST_MAX_BYTES);
				goto fail;
			}
			bigger = realloc(buf, size * 2);
			if (bigger == NULL) {
				cb_error_set(err, CB_E_NOMEM, ENOMEM,
					     "out of memory reading the request");
				goto fail;
			}
			buf = bigger;
			size *= 2;
		}
		n = read(fd, buf + used, size - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cb_error_set(err, CB_E_IO, errno, "cannot read the request: %s",
				     strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	if (used == 0 || strlen(buf) != used) {
		cb_error_set(err, CB_E_CONFIG, 0, "the request holds no usable URL");
		goto fail;
	}
	return buf;
fail:
	free(buf);
	return NULL;
}

/*
 * make_room for cb_install_run. The front holds the cache lock for the
 * whole install (and this process dies with it), so evicting from here is
 * as safe as ensure.c's own make_room, which it replaces: a callback cannot
 * cross the process boundary.
 */
static enum cb_status make_room(void *ctx_ptr, uint64_t needed_bytes, uint64_t *free_bytes,
				struct cb_error *err)
{
	struct room_ctx *ctx = ctx_ptr;

	return cb_cache_evict(ctx->cache, ctx->keep, needed_bytes, free_bytes, err);
}

/*
 * install REQUEST_FD STAGING_FD STAGING_PATH CHECKSUM MAX_SIZE_BYTES DEADLINE_MS LOG_LEVEL ROOT
 *         MEMORY_BUDGET_BYTES
 */
static int run_install(char **args, struct cb_cold_record *rec)
{
	struct cb_install_request req;
	struct cb_install_result res;
	struct cb_checksum checksum;
	struct cb_cache cache;
	struct room_ctx room = {&cache, &checksum};
	struct cb_error err;
	enum cb_status status;
	char *url = NULL;
	int request_fd;

	cb_error_init(&err);
	cb_cache_init(&cache);
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	if (parse_fd(args[0], &request_fd) != 0 || parse_fd(args[1], &req.staging_fd) != 0 ||
	    cb_checksum_parse(args[3], &checksum, &err) != CB_OK ||
	    parse_u64(args[4], &req.max_size_bytes) != 0 ||
	    parse_i64(args[5], &req.deadline_ms) != 0 || parse_level(args[6], &req.log_level) != 0 ||
	    parse_u64(args[8], &req.memory_budget_bytes) != 0)
		return usage("bad install arguments");
	cb_log_set_level(req.log_level);
	req.staging_path = args[2];
	req.checksum = &checksum;
	url = read_request(request_fd, &err);
	close(request_fd);
	if (url == NULL) {
		status = err.code;
		goto out;
	}
	req.url = url;
	if (args[7][0] != '\0') {
		status = cb_cache_open(&cache, args[7], &err);
		if (status != CB_OK)
			goto out;
		req.make_room = make_room;
		req.make_room_ctx = &room;
	}
	status = cb_install_run(&req, &res, &err);
out:
	cb_cache_close(&cache);
	free(url);
	rec->status = status;
	rec->sys_errno = status != CB_OK ? err.sys_errno : 0;
	snprintf(rec->message, sizeof(rec->message), "%s", status != CB_OK ? err.message : "");
	rec->value_count = 7;
	rec->values[0] = res.download_bytes;
	rec->values[1] = res.unpacked_bytes;
	rec->values[2] = res.files;
	rec->values[3] = res.attempts;
	rec->values[4] = (uint64_t)res.fetch_ms;
	rec->values[5] = (uint64_t)res.verify_ms;
	rec->values[6] = (uint64_t)res.unpack_ms;
	return 0;
}

/* hash LOG_LEVEL ALGO PATH */
static int run_hash(char **args, struct cb_cold_record *rec)
{
	enum cb_log_level level;
	struct cb_error err;
	uint64_t algo;

	cb_error_init(&err);
	if (parse_level(args[0], &level) != 0 || parse_u64(args[1], &algo) != 0 ||
	    (algo != CB_HASH_XXH3_128 && algo != CB_HASH_XXH64))
		return usage("bad hash arguments");
	cb_log_set_level(level);
	rec->status = cb_verify_hash_file(args[2], (enum cb_hash_algo)algo, &rec->checksum, &err);
	rec->have_checksum = rec->status == CB_OK;
	rec->sys_errno = err.sys_errno;
	snprintf(rec->message, sizeof(rec->message), "%s", rec->status != CB_OK ? err.message : "");
	return 0;
}

/* pack LOG_LEVEL FORCE_ZIP64 SRC_DIR OUT_PATH */
static int run_pack(char **args, struct cb_cold_record *rec)
{
	struct cb_pack_request req;
	struct cb_pack_result res;
	enum cb_log_level level;
	struct cb_error err;
	uint64_t force;

	cb_error_init(&err);
	if (parse_level(args[0], &level) != 0 || parse_u64(args[1], &force) != 0 || force > 1)
		return usage("bad pack arguments");
	cb_log_set_level(level);
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	req.force_zip64 = (int)force;
	req.src_dir = args[2];
	req.out_path = args[3];
	rec->status = cb_pack_run(&req, &res, &err);
	rec->sys_errno = err.sys_errno;
	snprintf(rec->message, sizeof(rec->message), "%s", rec->status != CB_OK ? err.message : "");
	rec->value_count = 6;
	rec->values[0] = res.files;
	rec->values[1] = res.dirs;
	rec->values[2] = res.symlinks;
	rec->values[3] = res.input_bytes;
	rec->values[4] = res.zip_bytes;
	rec->values[5] = res.zip64 ? 1 : 0;
	rec->checksum = res.checksum;
	rec->have_checksum = rec->status == CB_OK;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int arg_count;
		int (*run)(char **args, struct cb_cold_record *rec);
	} commands[] = {
		{"install", 9, run_install},
		{"hash", 3, run_hash},
		{"pack", 4, run_pack},
	};
	struct cb_cold_record rec;
	int result_fd;

	if (argc < 4 || strcmp(argv[1], CB_COLD_PROTOCOL) != 0)
		return usage(argc >= 2 ? "not the protocol of this build" : "missing arguments");
	if (parse_fd(argv[2], &result_fd) != 0)
		return usage("bad result descriptor");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		int rc;

		if (strcmp(argv[3], commands[i].name) != 0)
			continue;
		if (argc != 4 + commands[i].arg_count)
			return usage("wrong number of arguments");
		memset(&rec, 0, sizeof(rec));
		rc = commands[i].run(argv + 4, &rec);
		if (rc != 0)
			return rc;
		if (cb_cold_record_write(result_fd, &rec) != 0) {
			fprintf(stderr, "coldboot-cold: cannot report the result: %s\n",
				strerror(errno));
			return 1;
		}
		return 0;
	}
	return usage("unknown command");
}
