/*
 * The cache: what lives under the cache root between starts.
 *
 *   .lock                    flock held while installing
 *   container.json           this container's identity and counters
 *   bundles/<digest>/        one published bundle, immutable
 *   bundles/<digest>/.coldboot.json   its marker
 *   current -> bundles/<digest>
 *   staging/                 work in progress, removed at the next install
 *
 * This module knows nothing of the network or of zips. It is linked into the
 * small front binary, so it must stay cheap: no third-party library here.
 */
#ifndef CB_CACHE_H
#define CB_CACHE_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "cb_error.h"
#include "cb_log.h"

#define CB_MARKER_NAME ".coldboot.json"
#define CB_DEFAULT_ROOT "/tmp/coldboot"

/* ---- checksums (parsing and formatting only; hashing is bootstrap/verify.c) ---- */

enum cb_hash_algo {
	CB_HASH_XXH3_128 = 0, /* "xxh3:<32 hex>", XXH3-128 canonical (big-endian) */
	CB_HASH_XXH64 = 1,    /* "xxh64:<16 hex>", XXH64 canonical (big-endian) */
};

#define CB_CHECKSUM_MAX_BYTES 16
#define CB_CHECKSUM_TEXT_MAX 40 /* "xxh3:" + 32 hex + NUL, rounded up */

struct cb_checksum {
	enum cb_hash_algo algo;
	size_t size_bytes;                          /* 16 for xxh3, 8 for xxh64 */
	unsigned char bytes[CB_CHECKSUM_MAX_BYTES]; /* canonical big-endian */
	char hex[2 * CB_CHECKSUM_MAX_BYTES + 1];    /* lower-case hex, the bundle's digest */
};

/*
 * Parses "xxh3:<32 hex>" or "xxh64:<16 hex>" (hex in either case).
 * Errors: CB_E_CONFIG with a message that says how to get a checksum.
 */
enum cb_status cb_checksum_parse(const char *text, struct cb_checksum *out, struct cb_error *err);

/* Fills hex from bytes and size_bytes (used after hashing). */
void cb_checksum_set_bytes(struct cb_checksum *sum, enum cb_hash_algo algo,
			   const unsigned char *bytes, size_t size_bytes);

/* Writes "xxh3:<hex>" or "xxh64:<hex>" into out (at least CB_CHECKSUM_TEXT_MAX bytes). */
void cb_checksum_format(const struct cb_checksum *sum, char *out, size_t out_size);

/* Non-zero when both checksums have the same algorithm and bytes. */
int cb_checksum_equal(const struct cb_checksum *a, const struct cb_checksum *b);

/* ---- URLs ---- */

/*
 * Copies url into out without what may be secret: user:password@, the query
 * string and the fragment (a presigned URL's signature lives in the query).
 * "https://u:p@h/k?X-Amz-Signature=..." becomes "https://h/k?<redacted>".
 * Always NUL-terminates; truncates when out is too small.
 */
void cb_url_redact(const char *url, char *out, size_t out_size);

/* ---- clocks ---- */

/* Monotonic milliseconds, for deadlines and durations. */
int64_t cb_clock_now_ms(void);
/* Wall-clock milliseconds since the epoch, for records. */
int64_t cb_clock_wall_ms(void);
/* Formats wall_ms as RFC 3339 UTC with milliseconds: "2026-11-22T07:47:41.123Z". */
void cb_clock_format_rfc3339(int64_t wall_ms, char *out, size_t out_size);

/* ---- the cache handle ---- */

struct cb_cache {
	char root[PATH_MAX];
	int root_fd;    /* the cache root, opened O_DIRECTORY|O_NOFOLLOW */
	int bundles_fd; /* bundles/ */
	int lock_fd;    /* .lock, -1 until cb_lock_acquire */
};

/* Sets every descriptor to -1, so cb_cache_close is always safe. */
void cb_cache_init(struct cb_cache *cache);

/*
 * Opens (creating with mode 0700 when missing) the cache root and bundles/.
 * Refuses a root that is a symlink, is not a directory, belongs to another
 * user, or is group/world-writable. Errors: CB_E_CONFIG (refused), CB_E_IO.
 */
enum cb_status cb_cache_open(struct cb_cache *cache, const char *root, struct cb_error *err);

/* Closes what cb_cache_open and cb_lock_acquire opened (releasing the lock). */
void cb_cache_close(struct cb_cache *cache);

enum cb_bundle_state {
	CB_BUNDLE_MISSING = 0, /* nothing under bundles/<digest> */
	CB_BUNDLE_PUBLISHED,   /* bundles/<digest> with a valid marker for this checksum */
	CB_BUNDLE_CORRUPT,     /* bundles/<digest> exists but its marker is absent or wrong */
};

/*
 * The warm-path question: is bundles/<digest> published? Reads and checks the
 * marker (it must parse and name this checksum). Writes the bundle's absolute
 * path to dir_out when published. Errors: CB_E_IO for unexpected failures.
 */
enum cb_status cb_cache_lookup(struct cb_cache *cache, const struct cb_checksum *sum,
			       enum cb_bundle_state *state, char *dir_out, size_t dir_out_size,
			       struct cb_error *err);

/* ---- the install lock ---- */

/*
 * Takes the exclusive flock on .lock, waiting at most timeout_ms (< 0: forever).
 * The kernel drops it if this process dies. *waited_ms gets the time spent
 * waiting for another holder. Errors: CB_E_LOCK_TIMEOUT, CB_E_IO.
 */
enum cb_status cb_lock_acquire(struct cb_cache *cache, int64_t timeout_ms, int64_t *waited_ms,
			       struct cb_error *err);

/* Releases the lock taken by cb_lock_acquire; safe to call when not held. */
void cb_lock_release(struct cb_cache *cache);

/* ---- staging and publishing (call with the lock held) ---- */

/* Removes everything under staging/, left by a dead or failed install. */
enum cb_status cb_staging_reset(struct cb_cache *cache, struct cb_error *err);

/*
 * Creates staging/<digest>/ (empty, mode 0755) and opens it. The caller owns
 * *dir_fd and closes it. path_out receives its absolute path for messages.
 */
enum cb_status cb_staging_create(struct cb_cache *cache, const struct cb_checksum *sum, int *dir_fd,
				 char *path_out, size_t path_out_size, struct cb_error *err);

/*
 * Moves a corrupt bundles/<digest> out of the way (into staging/) and removes it.
 * Errors: CB_E_IO.
 */
enum cb_status cb_cache_discard(struct cb_cache *cache, const struct cb_checksum *sum,
				struct cb_error *err);

/*
 * Publishes staging/<digest> as bundles/<digest> with one
 * renameat2(RENAME_NOREPLACE), then points current at it with an atomic
 * symlink swap. The marker must already be inside staging/<digest>.
 * Errors: CB_E_IO (including EEXIST: someone published meanwhile).
 */
enum cb_status cb_cache_publish(struct cb_cache *cache, const struct cb_checksum *sum,
				struct cb_error *err);

/* Points current at bundles/<digest> (atomic symlink swap); a no-op when it already does. */
enum cb_status cb_cache_point_current(struct cb_cache *cache, const struct cb_checksum *sum,
				      struct cb_error *err);

/*
 * Calls fn once for each entry under bundles/ with its name and an open
 * descriptor of it (-1 when it is not a directory); fn must not close it.
 * Errors: CB_E_IO.
 */
enum cb_status cb_cache_each_bundle(struct cb_cache *cache,
				    void (*fn)(void *ctx, const char *digest, int dir_fd),
				    void *ctx, struct cb_error *err);

/* Writes the target of current (e.g. "bundles/<digest>") to out, or "" when absent. */
void cb_cache_current(struct cb_cache *cache, char *out, size_t out_size);

/*
 * Makes room for needed_bytes: removes published bundles other than keep and
 * the one current points at, oldest first, until the cache's file system has
 * needed_bytes free. *free_bytes gets the free space afterwards. Call with the
 * lock held. Errors: CB_E_IO.
 */
enum cb_status cb_cache_evict(struct cb_cache *cache, const struct cb_checksum *keep,
			      uint64_t needed_bytes, uint64_t *free_bytes, struct cb_error *err);

/* Free bytes on the file system that holds fd (statvfs), or 0 when unknown. */
uint64_t cb_cache_free_bytes(int fd);

/*
 * Writes data[0..len) whole to fd, at offset, or at the file position when
 * offset is negative; retries after EINTR and short writes. Returns 0, or the
 * errno of the failing write (ENOSPC for a write of nothing).
 */
int cb_write_full(int fd, const void *data, size_t len, int64_t offset);
/*
 * Reads buf[0..len) whole from fd at offset; retries after EINTR and short
 * reads. Returns 0, the errno of the failing read, or -1 when the file ends
 * first.
 */
int cb_read_full(int fd, void *buf, size_t len, uint64_t offset);

/* Removes a directory tree below dir_fd without following symlinks. */
enum cb_status cb_rmtree_at(int dir_fd, const char *name, struct cb_error *err);

/*
 * Removes everything inside the directory open as dir_fd, which stays (and
 * stays open), without following symlinks; name is for messages.
 */
enum cb_status cb_rmtree_contents(int dir_fd, const char *name, struct cb_error *err);

/* ---- the marker ---- */

struct cb_marker {
	char url[1024];                      /* redacted: no credentials, no query string */
	char checksum[CB_CHECKSUM_TEXT_MAX]; /* "xxh3:<hex>" */
	uint64_t bytes;                      /* size of the downloaded zip */
	uint64_t unpacked_bytes;             /* sum of the entries' sizes */
	uint64_t files;                      /* entries written (files, dirs, symlinks) */
	uint32_t attempts;                   /* HTTP attempts the download took */
	int64_t fetch_ms;
	int64_t unpack_ms;
	int64_t installed_at_ms; /* wall clock */
};

/* Writes the marker as JSON into dir_fd/.coldboot.json (0644). Errors: CB_E_IO, CB_E_SPACE. */
enum cb_status cb_marker_write(int dir_fd, const struct cb_marker *marker, struct cb_error *err);

/*
 * Reads dir_fd/.coldboot.json. Errors: CB_E_NOT_FOUND when absent, CB_E_CONFIG
 * when empty, truncated or not ours, CB_E_IO.
 */
enum cb_status cb_marker_read(int dir_fd, struct cb_marker *marker, struct cb_error *err);

/* ---- container identity (container.json) ---- */

struct cb_container {
	char id[33];            /* 128-bit random id, lower-case hex */
	int64_t first_start_ms; /* wall clock of the first start in this cache */
	uint64_t starts;        /* starts so far, this one included */
	uint64_t downloads;     /* installs done by this container */
};

/*
 * Counts one start: creates container.json with a fresh random id at the first
 * start in this cache, increments starts otherwise, and returns the updated
 * identity. Never loses a count under concurrent starts. Errors: CB_E_IO.
 */
enum cb_status cb_container_start(struct cb_cache *cache, struct cb_container *out,
				  struct cb_error *err);

/* Counts one download in container.json. Errors: CB_E_IO. */
enum cb_status cb_container_count_download(struct cb_cache *cache, struct cb_error *err);

/* Reads container.json without changing it. Errors: CB_E_NOT_FOUND, CB_E_IO. */
enum cb_status cb_container_read(struct cb_cache *cache, struct cb_container *out,
				 struct cb_error *err);

/* ---- stats records ---- */

enum cb_outcome {
	CB_OUTCOME_REUSE = 0, /* found published */
	CB_OUTCOME_DOWNLOAD,  /* installed it */
	CB_OUTCOME_REPAIR,    /* found it corrupt, installed it again */
	CB_OUTCOME_WAITED,    /* another start installed it while this one waited */
	CB_OUTCOME_ERROR,     /* failed */
};

const char *cb_outcome_name(enum cb_outcome outcome);

/* One start, as recorded by --stats. Strings are borrowed, not owned. */
struct cb_start_record {
	int64_t ts_ms; /* wall clock of the start */
	const struct cb_container *container;
	enum cb_outcome outcome;
	const char *digest;     /* hex, or NULL */
	const char *error_kind; /* cb_status_name() when outcome is error, else NULL */
	uint64_t bytes;         /* downloaded bytes, 0 on reuse */
	uint64_t files;
	uint32_t attempts;
	int64_t fetch_ms;
	int64_t verify_ms;
	int64_t unpack_ms;
	int64_t lock_wait_ms;
	int64_t total_ms;
};

/*
 * Emits one record. file == NULL: one CloudWatch Embedded Metric Format line
 * on stdout. Otherwise: appended to file as one JSON line with a single
 * O_APPEND write. Lambda fields (function, version, log_stream, init_type)
 * come from the environment when present. Errors: CB_E_IO.
 */
enum cb_status cb_stats_emit(const char *file, const struct cb_start_record *record,
			     struct cb_error *err);

/* The life of one container, as the coldboot extension saw it at SHUTDOWN. */
struct cb_lifetime_record {
	int64_t ts_ms;                        /* wall clock at shutdown */
	int64_t started_ms;                   /* wall clock when the extension started */
	const struct cb_container *container; /* NULL when no start was counted in this cache */
	uint64_t invocations;                 /* INVOKE events seen */
	int64_t alive_ms;                     /* from the extension's start to SHUTDOWN */
	const char *shutdown_reason;          /* "spindown", "timeout", "failure", or NULL */
};

/*
 * Emits one lifetime record ("outcome":"shutdown"; see stats_lifetime.c), as
 * cb_stats_emit does: file == NULL, one EMF line on stdout (metrics
 * Invocations and AliveSeconds); otherwise one JSON line appended to file.
 * Errors: CB_E_IO.
 */
enum cb_status cb_stats_emit_lifetime(const char *file, const struct cb_lifetime_record *record,
				      struct cb_error *err);

#endif
