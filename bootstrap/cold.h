/*
 * The cold path's interface. Everything that needs libcurl, libzip or xxHash
 * lives in a separate module (libcoldboot-cold.so) that the front binary loads
 * with dlopen only on a cache miss, so a warm start maps none of them.
 */
#ifndef CB_COLD_H
#define CB_COLD_H

#include <stdint.h>

#include "../cache/cache.h"
#include "pack.h"

#define CB_COLD_ABI_VERSION 1u
#define CB_COLD_SYMBOL "cb_cold_ops_v1"
#define CB_COLD_MODULE_NAME "libcoldboot-cold.so"

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
 * Loads the cold module once (later calls return the same table). It is looked
 * for next to the running executable, then in ../lib/coldboot/ relative to it,
 * or at $COLDBOOT_COLD_MODULE. Errors: CB_E_CONFIG when missing or mismatched.
 */
enum cb_status cb_cold_load(const struct cb_cold_ops **ops, struct cb_error *err);

#endif
