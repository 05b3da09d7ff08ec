/*
 * fetch -> verify -> unpack. The zip streams through the hasher into an
 * unnamed temporary file (O_TMPFILE) inside the staging directory, so no copy
 * of it can ever be left on disk, not even after a SIGKILL.
 */
#define _GNU_SOURCE /* O_TMPFILE */
#include "install.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"
#include "unpack.h"
#include "verify.h"

struct zip_sink {
	int fd;
	struct cb_hasher *hasher;
	uint64_t bytes;
	int64_t hash_ms;
};

static enum cb_status sink_write(void *ctx, const void *data, size_t size, struct cb_error *err)
{
	struct zip_sink *sink = ctx;
	const unsigned char *p = data;
	int64_t t0 = cb_clock_now_ms();

	cb_hasher_update(sink->hasher, data, size);
	sink->hash_ms += cb_clock_now_ms() - t0;
	while (size > 0) {
		ssize_t n = write(sink->fd, p, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cb_error_set(err,
					    errno == ENOSPC || errno == EDQUOT ? CB_E_SPACE :
										 CB_E_IO,
					    errno, "cannot store the download in the cache: %s",
					    strerror(errno));
		p += n;
		size -= (size_t)n;
		sink->bytes += (uint64_t)n;
	}
	return CB_OK;
}

static enum cb_status sink_restart(void *ctx, struct cb_error *err)
{
	struct zip_sink *sink = ctx;

	if (ftruncate(sink->fd, 0) != 0 || lseek(sink->fd, 0, SEEK_SET) != 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot rewind the download: %s",
				    strerror(errno));
	cb_hasher_reset(sink->hasher);
	sink->bytes = 0;
	return CB_OK;
}

/* An unnamed file in dir_fd; falls back to a named one unlinked at once. */
static int open_unnamed(int dir_fd)
{
	char name[64];
	int fd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	snprintf(name, sizeof(name), ".download.%ld", (long)getpid());
	fd = openat(dir_fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0)
		(void)unlinkat(dir_fd, name, 0);
	return fd;
}

enum cb_status cb_install_run(const struct cb_install_request *req, struct cb_install_result *res,
			      struct cb_error *err)
{
	char shown_url[1024];
	char want[CB_CHECKSUM_TEXT_MAX];
	char got[CB_CHECKSUM_TEXT_MAX];
	struct zip_sink sink = {-1, NULL, 0, 0};
	struct cb_sink fetch_sink = {sink_write, sink_restart, &sink};
	struct cb_fetch_options fetch_opts;
	struct cb_fetch_result fetch_res = {0, 0, 0};
	struct cb_unpack_options unpack_opts;
	struct cb_unpack_result unpack_res = {0, 0, 0, 0};
	struct cb_checksum actual;
	enum cb_status status = CB_OK;
	int64_t t0;

	memset(res, 0, sizeof(*res));
	cb_log_set_level(req->log_level);
	cb_url_redact(req->url, shown_url, sizeof(shown_url));

	sink.fd = open_unnamed(req->staging_fd);
	if (sink.fd < 0) {
		status = cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				      "cannot create a temporary file in %s: %s", req->staging_path,
				      strerror(errno));
		goto out;
	}
	sink.hasher = cb_hasher_new(req->checksum->algo);
	if (sink.hasher == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory");
		goto out;
	}

	memset(&fetch_opts, 0, sizeof(fetch_opts));
	fetch_opts.url = req->url;
	fetch_opts.deadline_ms = req->deadline_ms;
	/* A zip is at most a little larger than what it unpacks to. */
	if (req->max_size_bytes > 0)
		fetch_opts.max_bytes = req->max_size_bytes + req->max_size_bytes / 8 + (1u << 20);
	t0 = cb_clock_now_ms();
	status = cb_fetch_to_sink(&fetch_opts, &fetch_sink, &fetch_res, err);
	res->fetch_ms = cb_clock_now_ms() - t0;
	res->verify_ms = sink.hash_ms;
	res->attempts = fetch_res.attempts;
	res->download_bytes = sink.bytes;
	if (status != CB_OK)
		goto out;

	cb_hasher_final(sink.hasher, &actual);
	if (!cb_checksum_equal(&actual, req->checksum)) {
		cb_checksum_format(req->checksum, want, sizeof(want));
		cb_checksum_format(&actual, got, sizeof(got));
		status = cb_error_set(err, CB_E_CHECKSUM, 0,
				      "checksum mismatch for %s: expected %s, got %s; the object changed "
				      "or the pinned checksum is stale (nothing was installed)",
				      shown_url, want, got);
		goto out;
	}

	memset(&unpack_opts, 0, sizeof(unpack_opts));
	unpack_opts.zip_fd = sink.fd;
	unpack_opts.dest_fd = req->staging_fd;
	unpack_opts.dest_path = req->staging_path;
	unpack_opts.max_size_bytes = req->max_size_bytes;
	unpack_opts.memory_budget_bytes = req->memory_budget_bytes;
	unpack_opts.free_bytes = cb_cache_free_bytes(req->staging_fd);
	unpack_opts.make_room = req->make_room;
	unpack_opts.make_room_ctx = req->make_room_ctx;
	unpack_opts.consume_zip = 1; /* our unnamed scratch copy */
	t0 = cb_clock_now_ms();
	status = cb_unpack_zip(&unpack_opts, &unpack_res, err);
	res->unpack_ms = cb_clock_now_ms() - t0;
	if (status != CB_OK)
		goto out;
	res->unpacked_bytes = unpack_res.unpacked_bytes;
	res->files = unpack_res.files + unpack_res.dirs + unpack_res.symlinks;
	cb_log(CB_LOG_INFO, "unpacked %llu entries, %llu bytes in %lld ms",
	       (unsigned long long)res->files, (unsigned long long)res->unpacked_bytes,
	       (long long)res->unpack_ms);
out:
	cb_hasher_destroy(sink.hasher);
	if (sink.fd >= 0)
		close(sink.fd);
	return status;
}
