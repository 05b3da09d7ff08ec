/* The marker: bundles/<digest>/.coldboot.json, written inside staging before the rename. */
#include "cache.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#define MARKER_MAX_BYTES 8192
#define MARKER_FORMAT 1

enum cb_status cb_marker_write(int dir_fd, const struct cb_marker *marker, struct cb_error *err)
{
	char storage[MARKER_MAX_BYTES];
	char installed_at[40];
	struct cb_buf buf;
	enum cb_status status = CB_OK;
	int saved;
	int fd;

	cb_clock_format_rfc3339(marker->installed_at_ms, installed_at, sizeof(installed_at));
	cb_buf_init(&buf, storage, sizeof(storage));
	cb_buf_printf(&buf, "{\"coldboot\":%d,\"url\":", MARKER_FORMAT);
	cb_buf_json_string(&buf, marker->url);
	cb_buf_printf(&buf, ",\"checksum\":");
	cb_buf_json_string(&buf, marker->checksum);
	cb_buf_printf(&buf,
		      ",\"bytes\":%" PRIu64 ",\"unpacked_bytes\":%" PRIu64 ",\"files\":%" PRIu64
		      ",\"attempts\":%" PRIu32 ",\"fetch_ms\":%" PRId64 ",\"unpack_ms\":%" PRId64
		      ",\"installed_at\":\"%s\",\"installed_at_ms\":%" PRId64 "}\n",
		      marker->bytes, marker->unpacked_bytes, marker->files, marker->attempts,
		      marker->fetch_ms, marker->unpack_ms, installed_at, marker->installed_at_ms);
	if (buf.overflow)
		return cb_error_set(err, CB_E_IO, 0, "marker too large");

	fd = openat(dir_fd, CB_MARKER_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    0644);
	if (fd < 0)
		return cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				    "cannot create marker %s: %s", CB_MARKER_NAME, strerror(errno));
	saved = cb_write_full(fd, buf.data, buf.len, -1);
	if (saved != 0)
		status = cb_error_set(err, saved == ENOSPC ? CB_E_SPACE : CB_E_IO, saved,
				      "cannot write marker %s: %s", CB_MARKER_NAME, strerror(saved));
	if (close(fd) != 0 && status == CB_OK)
		status = cb_error_set(err, errno == ENOSPC ? CB_E_SPACE : CB_E_IO, errno,
				      "cannot write marker %s: %s", CB_MARKER_NAME, strerror(errno));
	return status;
}

enum cb_status cb_marker_read(int dir_fd, struct cb_marker *marker, struct cb_error *err)
{
	char text[MARKER_MAX_BYTES + 1];
	uint64_t format = 0;
	uint64_t attempts = 0;
	size_t len = 0;
	int fd;

	memset(marker, 0, sizeof(*marker));
	fd = openat(dir_fd, CB_MARKER_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return cb_error_set(err, CB_E_NOT_FOUND, errno, "no marker");
		if (errno == ELOOP)
			return cb_error_set(err, CB_E_CONFIG, errno, "the marker is a symlink");
		return cb_error_set(err, CB_E_IO, errno, "cannot open marker: %s", strerror(errno));
	}
	while (len < sizeof(text) - 1) {
		ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			close(fd);
			return cb_error_set(err, CB_E_IO, e, "cannot read marker: %s", strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	text[len] = '\0';
	/* We write the whole marker with one write ending in "}\n": anything else is damage. */
	if (len < 3 || len == sizeof(text) - 1 || strlen(text) != len || text[0] != '{' ||
	    strcmp(text + len - 2, "}\n") != 0)
		return cb_error_set(err, CB_E_CONFIG, 0, "the marker is empty or truncated");
	if (cb_json_get_u64(text, "coldboot", &format) != 0 || format != MARKER_FORMAT ||
	    cb_json_get_string(text, "checksum", marker->checksum, sizeof(marker->checksum)) != 0 ||
	    cb_json_get_string(text, "url", marker->url, sizeof(marker->url)) != 0 ||
	    cb_json_get_u64(text, "bytes", &marker->bytes) != 0 ||
	    cb_json_get_u64(text, "files", &marker->files) != 0)
		return cb_error_set(err, CB_E_CONFIG, 0, "the marker is not a coldboot marker");
	(void)cb_json_get_u64(text, "unpacked_bytes", &marker->unpacked_bytes);
	(void)cb_json_get_u64(text, "attempts", &attempts);
	marker->attempts = (uint32_t)attempts;
	(void)cb_json_get_i64(text, "fetch_ms", &marker->fetch_ms);
	(void)cb_json_get_i64(text, "unpack_ms", &marker->unpack_ms);
	(void)cb_json_get_i64(text, "installed_at_ms", &marker->installed_at_ms);
	return CB_OK;
}
