/*
 * fetch -> verify -> unpack. The zip streams through the hasher into an
 * unnamed temporary file (O_TMPFILE) inside the staging directory, so no copy
 * of it can ever be left on disk, not even after a SIGKILL.
 *
 * Over http(s) and s3, the zip is unpacked while it downloads: fetch.c brings
 * the tail (and the central directory) ahead of the body on a second
 * connection, and an unpacker thread judges the archive from them and then
 * extracts each entry as its bytes arrive (struct cb_avail says which are
 * present). Those bytes are not verified yet; that is safe because staging is
 * private, every rule of the extractor still applies to every entry, and the
 * tree is only published when the checksum of the whole download matches
 * (the caller removes staging otherwise, and the next start removes a dead
 * one). When the stream breaks (the object changed, so the unpacker may have
 * read another version), the tree is removed and the complete download is
 * unpacked the usual way.
 */
#define _GNU_SOURCE /* O_TMPFILE */
#include "install.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "avail.h"
#include "fetch.h"
#include "unpack.h"
#include "verify.h"

#define INSTALL_COMPARE_BYTES (64u * 1024u)

struct zip_sink {
	int fd;
	struct cb_hasher *hasher;
	uint64_t bytes;
	int64_t hash_ms;
	struct cb_avail *avail; /* NULL: no unpacking while downloading */
	unsigned char *compare; /* INSTALL_COMPARE_BYTES, with avail */
	bool restarted;         /* the body started again at byte 0, so no byte is punched out */
};

/*
 * The in-order body reaches bytes fetched ahead, which the unpacker may
 * have read: they must be the same, or the stream is broken.
 */
static void sink_compare_ahead(struct zip_sink *sink, const unsigned char *data, size_t size)
{
	uint64_t from;
	uint64_t to;
	uint64_t at = sink->bytes;

	while (size > 0 && cb_avail_overlap(sink->avail, at, at + size, &from, &to)) {
		size_t len = (size_t)(to - from);
		ssize_t n;

		if (len > INSTALL_COMPARE_BYTES)
			len = INSTALL_COMPARE_BYTES;
		n = pread(sink->fd, sink->compare, len, (off_t)from);
		if (n != (ssize_t)len || memcmp(sink->compare, data + (from - at), len) != 0) {
			cb_log(CB_LOG_INFO, "the body differs from the bytes fetched ahead of it");
			cb_avail_disable(sink->avail);
			return;
		}
		data += (from - at) + len;
		size -= (size_t)(from - at) + len;
		at = from + len;
	}
}

/* Writes p[0..size) of the download at *offset, whole, then moves *offset past it. */
static enum cb_status store_at(int fd, const unsigned char *p, size_t size, uint64_t *offset,
			       struct cb_error *err)
{
	int saved = cb_write_full(fd, p, size, (int64_t)*offset);

	if (saved != 0)
		return cb_error_set(err, saved == ENOSPC || saved == EDQUOT ? CB_E_SPACE : CB_E_IO,
				    saved, "cannot store the download in the cache: %s",
				    strerror(saved));
	*offset += size;
	return CB_OK;
}

static enum cb_status sink_write(void *ctx, const void *data, size_t size, struct cb_error *err)
{
	struct zip_sink *sink = ctx;
	int64_t t0 = cb_clock_now_ms();
	enum cb_status st;

	cb_hasher_update(sink->hasher, data, size);
	sink->hash_ms += cb_clock_now_ms() - t0;
	if (sink->avail != NULL && cb_avail_usable(sink->avail))
		sink_compare_ahead(sink, data, size);
	/* At its offset: libzip reads through a dup of this fd, which shares the position. */
	for (const unsigned char *p = data; size > 0;) {
		size_t file_bytes = size;
		size_t taken = sink->avail != NULL ?
				       cb_avail_put(sink->avail, sink->bytes, p, size, &file_bytes) :
				       0;

		/* What a big entry's reader took in memory never goes through the file. */
		if (taken > 0) {
			sink->bytes += taken;
		} else {
			taken = file_bytes;
			st = store_at(sink->fd, p, taken, &sink->bytes, err);
			if (st != CB_OK)
				return st;
		}
		p += taken;
		size -= taken;
	}
	if (sink->avail != NULL)
		cb_avail_set_prefix(sink->avail, sink->bytes);
	return CB_OK;
}

/* Bytes fetched ahead of the body: at their offset, never below what the body wrote. */
static enum cb_status sink_write_at(void *ctx, uint64_t offset, const void *data, size_t size,
				    struct cb_error *err)
{
	struct zip_sink *sink = ctx;
	const unsigned char *p = data;

	/* After a restart, a range still in flight belongs to the old body. */
	if (sink->avail == NULL || !cb_avail_usable(sink->avail))
		return cb_error_set(err, CB_E_DOWNLOAD, 0, "no longer wanted");
	/* The body's own bytes there are final, and may be punched out already. */
	if (offset < sink->bytes) {
		uint64_t skip = sink->bytes - offset;

		if (skip >= size)
			return CB_OK;
		p += skip;
		size -= (size_t)skip;
		offset = sink->bytes;
	}
	return store_at(sink->fd, p, size, &offset, err);
}

/* Whether the body's next bytes may come now (a big entry's ring may be full). */
static bool sink_room(void *ctx)
{
	struct zip_sink *sink = ctx;

	return sink->avail == NULL || cb_avail_room(sink->avail, sink->bytes);
}

static enum cb_status sink_restart(void *ctx, struct cb_error *err)
{
	struct zip_sink *sink = ctx;

	/* The unpacker may have read the old body: it must not go on with the new one. */
	if (sink->avail != NULL)
		cb_avail_disable(sink->avail);
	sink->restarted = true;
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

/* The unpacker thread: waits for the tail, then unpacks while the rest arrives. */
struct stream_unpack {
	struct cb_avail *avail;
	const struct cb_install_request *req;
	int zip_fd;
	struct cb_unpack_result res;
	struct cb_error err;
	enum cb_status status;
	bool streamed; /* it unpacked (or tried to): the tail came */
	int64_t unpack_ms;
	pthread_t thread;
	bool started;
};

static void fill_unpack_options(const struct cb_install_request *req, int zip_fd,
				struct cb_unpack_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->zip_fd = zip_fd;
	opts->dest_fd = req->staging_fd;
	opts->dest_path = req->staging_path;
	opts->max_size_bytes = req->max_size_bytes;
	opts->memory_budget_bytes = req->memory_budget_bytes;
	opts->free_bytes = cb_cache_free_bytes(req->staging_fd);
	opts->make_room = req->make_room;
	opts->make_room_ctx = req->make_room_ctx;
	opts->consume_zip = 1; /* our unnamed scratch copy */
}

static void *stream_unpack_run(void *arg)
{
	struct stream_unpack *su = arg;
	struct cb_unpack_options opts;
	uint64_t total = 0;
	uint64_t prefix;
	int64_t t0;

	if (cb_avail_wait_start(su->avail, &total) != CB_AVAIL_STREAM)
		return NULL;
	su->streamed = true;
	t0 = cb_clock_now_ms();
	cb_log(CB_LOG_INFO, "unpacking while downloading (%llu bytes)", (unsigned long long)total);
	fill_unpack_options(su->req, su->zip_fd, &opts);
	/* What is still to come of the zip will take room too (less what is punched out). */
	prefix = cb_avail_prefix(su->avail);
	if (opts.free_bytes != 0) {
		uint64_t coming = total > prefix ? total - prefix : 0;

		opts.free_bytes = opts.free_bytes > coming ? opts.free_bytes - coming : 1;
	}
	opts.avail = su->avail;
	opts.size_bytes = total;
	su->status = cb_unpack_zip(&opts, &su->res, &su->err);
	if (su->status != CB_OK)
		cb_avail_stop(su->avail);
	su->unpack_ms = cb_clock_now_ms() - t0;
	return NULL;
}

static enum cb_status checksum_matches(const struct cb_install_request *req, struct zip_sink *sink,
				       const char *shown_url, struct cb_error *err)
{
	char want[CB_CHECKSUM_TEXT_MAX];
	char got[CB_CHECKSUM_TEXT_MAX];
	struct cb_checksum actual;

	cb_hasher_final(sink->hasher, &actual);
	if (cb_checksum_equal(&actual, req->checksum))
		return CB_OK;
	cb_checksum_format(req->checksum, want, sizeof(want));
	cb_checksum_format(&actual, got, sizeof(got));
	return cb_error_set(err, CB_E_CHECKSUM, 0,
			    "checksum mismatch for %s: expected %s, got %s; the object changed "
			    "or the pinned checksum is stale (nothing was installed)",
			    shown_url, want, got);
}

static bool url_may_stream(const char *url)
{
	return strncmp(url, "s3://", 5) == 0 || strncasecmp(url, "http://", 7) == 0 ||
	       strncasecmp(url, "https://", 8) == 0;
}

enum cb_status cb_install_run(const struct cb_install_request *req, struct cb_install_result *res,
			      struct cb_error *err)
{
	char shown_url[1024];
	struct zip_sink sink = {-1, NULL, 0, 0, NULL, NULL, false};
	struct cb_sink fetch_sink = {sink_write, sink_restart, &sink, sink_write_at, sink_room};
	struct cb_fetch_options fetch_opts;
	struct cb_fetch_result fetch_res = {0, 0, 0};
	struct cb_unpack_options unpack_opts;
	struct cb_unpack_result unpack_res = {0, 0, 0, 0};
	struct stream_unpack su;
	enum cb_status status = CB_OK;
	struct stat sb;
	int64_t t0;
	bool tz_set = false;

	memset(res, 0, sizeof(*res));
	memset(&su, 0, sizeof(su));
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

	/* Before the first thread: growing the table later would wait for RCU. */
	cb_unpack_reserve_fds();

	/* Unpacking while downloading, when it can be had; without it, as before. */
	if (url_may_stream(req->url)) {
		sink.compare = malloc(INSTALL_COMPARE_BYTES);
		sink.avail = sink.compare != NULL ? cb_avail_new(req->deadline_ms) : NULL;
		if (sink.avail != NULL) {
			/*
			 * unpack.c sets TZ=UTC around libzip's open (see libzip_open_start),
			 * which is only safe while no other thread may call getenv, as
			 * libcurl does. Set here, before any thread, it leaves TZ alone.
			 * Nothing here formats local times.
			 */
			tz_set = getenv("TZ") == NULL && setenv("TZ", "UTC", 0) == 0;
			su.avail = sink.avail;
			su.req = req;
			cb_error_init(&su.err);
			su.zip_fd = sink.fd;
			su.started = pthread_create(&su.thread, NULL, stream_unpack_run, &su) == 0;
		}
		if (!su.started) {
			cb_avail_destroy(sink.avail);
			sink.avail = NULL;
		}
	}

	memset(&fetch_opts, 0, sizeof(fetch_opts));
	fetch_opts.url = req->url;
	fetch_opts.deadline_ms = req->deadline_ms;
	fetch_opts.avail = sink.avail;
	/* A zip is at most a little larger than what it unpacks to. */
	if (req->max_size_bytes > 0)
		fetch_opts.max_bytes = req->max_size_bytes + req->max_size_bytes / 8 + (1u << 20);
	t0 = cb_clock_now_ms();
	status = cb_fetch_to_sink(&fetch_opts, &fetch_sink, &fetch_res, err);
	res->fetch_ms = cb_clock_now_ms() - t0;
	res->verify_ms = sink.hash_ms;
	res->attempts = fetch_res.attempts;
	res->download_bytes = sink.bytes;
	if (su.started) {
		bool stopped_first = cb_avail_stopped(sink.avail);

		/*
		 * The file must be no longer than the body, whatever ranges ahead
		 * wrote (shorter when its last bytes went through the ring).
		 */
		if (status == CB_OK &&
		    (fstat(sink.fd, &sb) != 0 || (uint64_t)sb.st_size > sink.bytes)) {
			cb_avail_disable(sink.avail);
			if (ftruncate(sink.fd, (off_t)sink.bytes) != 0)
				status = cb_error_set(err, CB_E_IO, errno,
						      "cannot trim the download: %s",
						      strerror(errno));
		}
		cb_avail_download_done(sink.avail, status == CB_OK);
		pthread_join(su.thread, NULL);
		su.started = false;
		if (su.streamed) {
			res->unpack_ms = su.unpack_ms;
			if (status != CB_OK) {
				/* The unpacker's own failure stopped the download: it is the one to say. */
				if (stopped_first && su.status != CB_OK &&
				    su.status != CB_E_DOWNLOAD) {
					*err = su.err;
					status = su.status;
				}
				goto out;
			}
			if (!cb_avail_broken(sink.avail)) {
				status = checksum_matches(req, &sink, shown_url, err);
				if (status != CB_OK)
					goto out;
				if (su.status != CB_OK) {
					*err = su.err;
					status = su.status;
					goto out;
				}
				res->unpacked_bytes = su.res.unpacked_bytes;
				res->files = su.res.files + su.res.dirs + su.res.symlinks;
				goto done;
			}
			/*
			 * Unpacking gave bytes back as it went: only a body written again
			 * from byte 0 since is whole. Otherwise the server sent other
			 * bytes under the same strong ETag, and nothing here can be trusted.
			 */
			if (!sink.restarted) {
				status =
					cb_error_set(err, CB_E_DOWNLOAD, 0,
						     "download of %s failed: the body differs from "
						     "the bytes fetched ahead of it under the same "
						     "ETag; try again",
						     shown_url);
				goto out;
			}
			cb_log(CB_LOG_INFO,
			       "the object changed while it was unpacked; unpacking the complete "
			       "download again");
			status = cb_rmtree_contents(req->staging_fd, req->staging_path, err);
			if (status != CB_OK)
				goto out;
		}
	}
	if (status != CB_OK)
		goto out;

	status = checksum_matches(req, &sink, shown_url, err);
	if (status != CB_OK)
		goto out;

	fill_unpack_options(req, sink.fd, &unpack_opts);
	t0 = cb_clock_now_ms();
	status = cb_unpack_zip(&unpack_opts, &unpack_res, err);
	res->unpack_ms = cb_clock_now_ms() - t0;
	if (status != CB_OK)
		goto out;
	res->unpacked_bytes = unpack_res.unpacked_bytes;
	res->files = unpack_res.files + unpack_res.dirs + unpack_res.symlinks;
done:
	cb_log(CB_LOG_INFO, "unpacked %llu entries, %llu bytes in %lld ms",
	       (unsigned long long)res->files, (unsigned long long)res->unpacked_bytes,
	       (long long)res->unpack_ms);
out:
	if (su.started) {
		/* Only when it could not be joined above: make it give up, then wait. */
		cb_avail_download_done(sink.avail, false);
		pthread_join(su.thread, NULL);
	}
	if (tz_set) {
		unsetenv("TZ");
		tzset();
	}
	cb_avail_destroy(sink.avail);
	free(sink.compare);
	cb_hasher_destroy(sink.hasher);
	if (sink.fd >= 0)
		close(sink.fd);
	return status;
}
