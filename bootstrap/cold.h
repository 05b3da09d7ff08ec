/*
 * The cold path's interface. Everything that needs libcurl, libzip or xxHash
 * lives in a separate dynamic program, coldboot-cold, that the front binary
 * (statically linked, so a warm start maps no library at all) runs only on a
 * cache miss and for `coldboot hash` and `coldboot pack`. The front calls it
 * through struct cb_cold_ops, whose functions run the helper and wait for it.
 */
#ifndef CB_COLD_H
#define CB_COLD_H

#include <stdint.h>

#include "../cache/cache.h"
#include "pack.h"

#define CB_COLD_ABI_VERSION 3u
#define CB_COLD_EXE_NAME "coldboot-cold"

struct cb_install_request {
	const char *url;                    /* as configured; may hold secrets: never log it raw */
	const struct cb_checksum *checksum; /* the pinned checksum */
	int staging_fd;                     /* empty directory to unpack into; the caller owns it */
	const char *staging_path;           /* its path, for messages */
	uint64_t max_size_bytes;            /* cap on the unpacked size; 0: the free space */
	int64_t deadline_ms;                /* cb_clock_now_ms() by which the cold path gives up */
	enum cb_log_level log_level;
	/*
	 * Called when the bundle needs more room than is free: frees what it can
	 * (older bundles) and returns the free bytes afterwards in *free_bytes.
	 */
	enum cb_status (*make_room)(void *ctx, uint64_t needed_bytes, uint64_t *free_bytes,
				    struct cb_error *err);
	void *make_room_ctx;
	uint64_t memory_budget_bytes; /* what the helper may keep resident; 0: no budget */
};

struct cb_install_result {
	uint64_t download_bytes; /* bytes of the zip */
	uint64_t unpacked_bytes; /* sum of the entries' sizes */
	uint64_t files;          /* entries created: files, directories, symlinks */
	uint32_t attempts;       /* HTTP attempts */
	int64_t fetch_ms;        /* download, hashing included (they overlap) */
	int64_t verify_ms;       /* time spent hashing */
	int64_t unpack_ms;
};

struct cb_cold_ops {
	unsigned abi_version;
	/*
	 * Downloads req->url, verifies it against req->checksum while the bytes
	 * arrive, and unpacks it into req->staging_fd. Leaves no copy of the zip
	 * on disk. On failure the staging directory may hold a partial tree; the
	 * caller removes it. Errors: CB_E_DOWNLOAD, CB_E_CHECKSUM, CB_E_ZIP,
	 * CB_E_SPACE, CB_E_IO, CB_E_NOMEM, CB_E_CONFIG.
	 */
	enum cb_status (*install)(const struct cb_install_request *req,
				  struct cb_install_result *res, struct cb_error *err);
	/* Hashes a local file. Errors: CB_E_IO, CB_E_NOMEM. */
	enum cb_status (*hash_file)(const char *path, enum cb_hash_algo algo,
				    struct cb_checksum *out, struct cb_error *err);
	/* Builds a bundle zip from a folder; see bootstrap/pack.h (cb_pack_run). */
	enum cb_status (*pack)(const struct cb_pack_request *req, struct cb_pack_result *res,
			       struct cb_error *err);
};

/*
 * Finds the helper program once (later calls return the same table): at
 * $COLDBOOT_COLD_EXE when set, else next to the running executable, then in
 * ../lib/coldboot/ relative to it. Errors: CB_E_CONFIG when it is missing.
 *
 * Each call through the table forks and execs the helper, then waits for it.
 * What that changes for the caller:
 *  - install: req->url reaches the helper through a pipe, never its argv
 *    (which /proc shows to everyone). req->staging_fd is inherited.
 *    req->make_room cannot be called from another process: when it is set,
 *    the helper opens the cache itself and evicts with cb_cache_evict
 *    (keeping req->checksum), which is what ensure.c's make_room does. The
 *    cache root is taken from req->staging_path, which must then be
 *    cb_staging_create's "<root>/staging/<digest>" (CB_E_CONFIG otherwise).
 *    The caller must hold the cache lock meanwhile, as before.
 *  - the helper logs to the inherited stderr at req->log_level (hash and
 *    pack: at cb_log_get_level()).
 *  - a helper that cannot be run, refuses its command line (exit 2: another
 *    build's) or writes an unreadable result is CB_E_CONFIG; one that dies
 *    by a signal is CB_E_IO "the download helper (PATH) died: signal N", and
 *    one that exits without a result CB_E_IO too. A SIGKILL of the front
 *    takes the helper with it (PR_SET_PDEATHSIG), so it never outlives the
 *    lock.
 * The front must stay single-threaded: the child runs ordinary libc calls
 * between fork and exec.
 */
enum cb_status cb_cold_load(const struct cb_cold_ops **ops, struct cb_error *err);

/* ---- between coldboot and coldboot-cold (bootstrap/cold_loader.c, cold_main.c) ---- */

/*
 * The helper's command line; the first two arguments are always
 *   coldboot-cold CB_COLD_PROTOCOL RESULT_FD COMMAND ...
 * and then, per command:
 *   install REQUEST_FD STAGING_FD STAGING_PATH CHECKSUM MAX_SIZE_BYTES DEADLINE_MS LOG_LEVEL ROOT
 *           MEMORY_BUDGET_BYTES (the URL is everything on REQUEST_FD up to EOF; ROOT is "" without make_room)
 *   hash    LOG_LEVEL ALGO PATH
 *   pack    LOG_LEVEL FORCE_ZIP64 SRC_DIR OUT_PATH
 * Numbers are decimal; DEADLINE_MS is cb_clock_now_ms()'s CLOCK_MONOTONIC,
 * which both processes share. The helper writes one record to RESULT_FD and
 * exits 0; it exits 2 without a record when the command line is not one it
 * understands (another build's coldboot).
 */
#define CB_COLD_PROTOCOL "coldboot-cold-3"
#define CB_COLD_VALUES_MAX 8u
#define CB_COLD_RECORD_MAX 2048u

/*
 * One result: "coldboot-cold-3 STATUS ERRNO COUNT V1 .. VCOUNT CHECKSUM\n"
 * followed by the error message (no NUL; empty on success). CHECKSUM is "-"
 * when there is none. values hold, in order, install: download_bytes,
 * unpacked_bytes, files, attempts, fetch_ms, verify_ms, unpack_ms; pack:
 * files, dirs, symlinks, input_bytes, zip_bytes, zip64; hash: none. Signed
 * numbers travel as their two's-complement uint64_t.
 */
struct cb_cold_record {
	enum cb_status status;
	int sys_errno;
	unsigned value_count;
	uint64_t values[CB_COLD_VALUES_MAX];
	int have_checksum;
	struct cb_checksum checksum;
	char message[CB_ERROR_MESSAGE_MAX];
};

/*
 * Writes rec to fd in one write (retried on EINTR). Returns 0, or -1 with
 * errno set. Safe in a forked child before exec.
 */
int cb_cold_record_write(int fd, const struct cb_cold_record *rec);

#endif
