/*
 * Container identity: container.json in the cache root.
 *
 * The file holds a random id, the wall-clock time of the first start in this
 * cache, and two counters. It is rewritten on every start, so the update must
 * be cheap and must never lose a count when several starts race:
 *
 *   open(O_RDWR|O_CREAT|O_NOFOLLOW) -> flock(LOCK_EX) -> pread -> pwrite at 0
 *
 * The lock is a flock on container.json itself, not the install lock .lock,
 * which is held for the whole length of an install. Every version of the file
 * has the same length (numbers are right-aligned in fixed-width fields, which
 * JSON allows as whitespace before a value), so one pwrite at offset 0 replaces
 * it without an ftruncate and a process killed mid-update can never leave a
 * short file behind.
 */
#define _GNU_SOURCE

#include "cache.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONTAINER_FILE_NAME "container.json"
/* Every version of container.json is exactly this long, newline included. */
#define CONTAINER_FILE_BYTES 192
/* Longer files are not ours; the reader never looks further. */
#define CONTAINER_READ_MAX 1024

static int is_lower_hex_id(const char *id)
{
	size_t n = strlen(id);

	if (n != 32)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	}
	return 1;
}

/* Fills 16 random bytes: getrandom, or /dev/urandom where it is missing or not ready. */
static enum cb_status random_bytes(unsigned char *out, size_t size, struct cb_error *err)
{
	size_t got = 0;
	int fd = -1;
	enum cb_status status = CB_OK;

	while (got < size) {
		ssize_t n = getrandom(out + got, size - got, GRND_NONBLOCK);

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break; /* ENOSYS, or EAGAIN before the pool is ready */
	}
	if (got == size)
		goto out;

	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		status = cb_error_set(err, CB_E_IO, errno,
				      "cannot get random bytes for the container id: %s",
				      strerror(errno));
		goto out;
	}
	while (got < size) {
		ssize_t n = read(fd, out + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			status = cb_error_set(err, CB_E_IO, n < 0 ? errno : 0,
					      "cannot read /dev/urandom for the container id");
			goto out;
		}
		got += (size_t)n;
	}
out:
	if (fd >= 0)
		close(fd);
	return status;
}

static enum cb_status new_identity(struct cb_container *c, struct cb_error *err)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[16];
	enum cb_status status;

	status = random_bytes(raw, sizeof(raw), err);
	if (status != CB_OK)
		return status;
	for (size_t i = 0; i < sizeof(raw); i++) {
		c->id[2 * i] = hex[raw[i] >> 4];
		c->id[2 * i + 1] = hex[raw[i] & 0x0f];
	}
	c->id[32] = '\0';
	c->first_start_ms = cb_clock_wall_ms();
	c->starts = 0;
	c->downloads = 0;
	return CB_OK;
}

/*
 * Parses the file's bytes. Returns 0 when they hold a complete identity of
 * ours, -1 otherwise (empty, garbage, a half-written file from an older tool).
 */
static int parse_identity(const char *text, struct cb_container *c)
{
	if (cb_json_get_string(text, "id", c->id, sizeof(c->id)) != 0 || !is_lower_hex_id(c->id))
		return -1;
	if (cb_json_get_i64(text, "first_start_ms", &c->first_start_ms) != 0 ||
	    c->first_start_ms < 0)
		return -1;
	if (cb_json_get_u64(text, "starts", &c->starts) != 0)
		return -1;
	if (cb_json_get_u64(text, "downloads", &c->downloads) != 0)
		return -1;
	return 0;
}

/* Reads the whole (small) file at offset 0; text is NUL-terminated. */
static enum cb_status read_file(int fd, char *text, size_t text_size, size_t *len_out,
				struct cb_error *err)
{
	size_t len = 0;

	while (len + 1 < text_size) {
		size_t want = text_size - 1 - len;
		ssize_t n = pread(fd, text + len, want, (off_t)len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cb_error_set(err, CB_E_IO, errno, "cannot read %s: %s",
					    CONTAINER_FILE_NAME, strerror(errno));
		len += (size_t)n;
		/* A short read of a regular file is its end: no second call to learn that. */
		if ((size_t)n < want)
			break;
	}
	text[len] = '\0';
	*len_out = len;
	return CB_OK;
}

static enum cb_status write_identity(int fd, const struct cb_container *c, size_t old_len,
				     struct cb_error *err)
{
	char storage[CONTAINER_FILE_BYTES + 1];
	char first_start[32];
	struct cb_buf buf;
	int saved;

	cb_clock_format_rfc3339(c->first_start_ms, first_start, sizeof(first_start));
	cb_buf_init(&buf, storage, sizeof(storage));
	/* Fixed widths: 20 characters hold any uint64 and any int64 with its sign. */
	cb_buf_printf(&buf,
		      "{\"id\":\"%s\",\"first_start_ms\":%20lld,\"first_start\":\"%-24s\","
		      "\"starts\":%20llu,\"downloads\":%20llu}",
		      c->id, (long long)c->first_start_ms, first_start,
		      (unsigned long long)c->starts, (unsigned long long)c->downloads);
	if (buf.overflow || buf.len > CONTAINER_FILE_BYTES - 1)
		return cb_error_set(err, CB_E_IO, 0, "%s record does not fit its fixed size",
				    CONTAINER_FILE_NAME);
	memset(storage + buf.len, ' ', CONTAINER_FILE_BYTES - 1 - buf.len);
	storage[CONTAINER_FILE_BYTES - 1] = '\n';

	saved = cb_write_full(fd, storage, CONTAINER_FILE_BYTES, 0);
	if (saved != 0)
		return cb_error_set(err, saved == ENOSPC ? CB_E_SPACE : CB_E_IO, saved,
				    "cannot write %s: %s", CONTAINER_FILE_NAME, strerror(saved));
	/* Only a foreign or older file can be longer than ours; cut its tail once. */
	if (old_len > CONTAINER_FILE_BYTES && ftruncate(fd, CONTAINER_FILE_BYTES) != 0)
		return cb_error_set(err, CB_E_IO, errno, "cannot truncate %s: %s",
				    CONTAINER_FILE_NAME, strerror(errno));
	return CB_OK;
}

static enum cb_status open_locked(struct cb_cache *cache, int writable, int *fd_out,
				  struct cb_error *err)
{
	int flags = O_CLOEXEC | O_NOFOLLOW | (writable ? (O_RDWR | O_CREAT) : O_RDONLY);
	struct stat st;
	int fd;
	int rc;

	fd = openat(cache->root_fd, CONTAINER_FILE_NAME, flags, 0600);
	if (fd < 0) {
		int saved = errno;

		if (saved == ENOENT)
			return cb_error_set(err, CB_E_NOT_FOUND, saved, "no %s in %s yet",
					    CONTAINER_FILE_NAME, cache->root);
		return cb_error_set(err, CB_E_IO, saved, "cannot open %s/%s: %s", cache->root,
				    CONTAINER_FILE_NAME, strerror(saved));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cb_error_set(err, CB_E_IO, 0, "%s/%s is not a regular file; remove it",
				    cache->root, CONTAINER_FILE_NAME);
	}
	do {
		rc = flock(fd, writable ? LOCK_EX : LOCK_SH);
	} while (rc != 0 && errno == EINTR);
	if (rc != 0) {
		int saved = errno;

		close(fd);
		return cb_error_set(err, CB_E_IO, saved, "cannot lock %s/%s: %s", cache->root,
				    CONTAINER_FILE_NAME, strerror(saved));
	}
	*fd_out = fd;
	return CB_OK;
}

/*
 * Read-modify-write under the flock. A missing or unreadable identity becomes
 * a new container. add_starts/add_downloads are added to the counters.
 */
static enum cb_status update(struct cb_cache *cache, uint64_t add_starts, uint64_t add_downloads,
			     struct cb_container *out, struct cb_error *err)
{
	char text[CONTAINER_READ_MAX + 2]; /* one byte more tells "too long" */
	struct cb_container c;
	size_t len = 0;
	int fd = -1;
	enum cb_status status;

	status = open_locked(cache, 1, &fd, err);
	if (status != CB_OK)
		goto out;
	status = read_file(fd, text, sizeof(text), &len, err);
	if (status != CB_OK)
		goto out;
	if (len > CONTAINER_READ_MAX || parse_identity(text, &c) != 0) {
		status = new_identity(&c, err);
		if (status != CB_OK)
			goto out;
		/* A download recorded into a fresh identity implies its start. */
		if (add_starts == 0)
			add_starts = 1;
	}
	c.starts = c.starts > UINT64_MAX - add_starts ? UINT64_MAX : c.starts + add_starts;
	c.downloads =
		c.downloads > UINT64_MAX - add_downloads ? UINT64_MAX : c.downloads + add_downloads;
	status = write_identity(fd, &c, len, err);
	if (status != CB_OK)
		goto out;
	if (out != NULL)
		*out = c;
out:
	if (fd >= 0)
		close(fd); /* also drops the flock */
	return status;
}

enum cb_status cb_container_start(struct cb_cache *cache, struct cb_container *out,
				  struct cb_error *err)
{
	return update(cache, 1, 0, out, err);
}

enum cb_status cb_container_count_download(struct cb_cache *cache, struct cb_error *err)
{
	return update(cache, 0, 1, NULL, err);
}

enum cb_status cb_container_read(struct cb_cache *cache, struct cb_container *out,
				 struct cb_error *err)
{
	char text[CONTAINER_READ_MAX + 2]; /* one byte more tells "too long" */
	size_t len = 0;
	int fd = -1;
	enum cb_status status;

	status = open_locked(cache, 0, &fd, err);
	if (status != CB_OK)
		goto out;
	status = read_file(fd, text, sizeof(text), &len, err);
	if (status != CB_OK)
		goto out;
	if (len > CONTAINER_READ_MAX || parse_identity(text, out) != 0)
		status = cb_error_set(err, CB_E_NOT_FOUND, 0,
				      "%s/%s holds no valid identity; the next start writes one",
				      cache->root, CONTAINER_FILE_NAME);
out:
	if (fd >= 0)
		close(fd);
	return status;
}
