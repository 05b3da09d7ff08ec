/* `coldboot pack`: a deterministic bundle zip built from a folder. */
#ifndef CB_PACK_H
#define CB_PACK_H

#include <stdint.h>

#include "../cache/cache.h"

struct cb_pack_request {
	const char *src_dir;  /* the folder whose contents become the bundle's top level */
	const char *out_path; /* the zip to write; replaced atomically when it exists */
	int force_zip64;      /* non-zero: zip64 records everywhere, even when not needed (tests) */
};

struct cb_pack_result {
	uint64_t files;              /* regular files packed */
	uint64_t dirs;               /* directories packed */
	uint64_t symlinks;           /* symlinks packed (each stays inside the folder) */
	uint64_t input_bytes;        /* sum of the regular files' sizes */
	uint64_t zip_bytes;          /* size of the zip written */
	int zip64;                   /* the zip needed (or was forced to use) zip64 records */
	struct cb_checksum checksum; /* xxh3 of the zip, ready for COLDBOOT_CHECKSUM */
};

/*
 * Packs the contents of req->src_dir into req->out_path. The bytes depend only
 * on the folder's names, contents, file types and exec bits (and on the zlib
 * version): entries are sorted by name in byte order, every timestamp is
 * 1980-01-01 00:00 (DOS), files are 0644 or 0755 (when any x bit is set),
 * directories 0755, symlinks 0777, and there are no extra fields but zip64
 * ones. Each file is deflated, or stored when deflate does not make it
 * smaller. zip64 records appear when an entry or offset reaches 4 GiB or
 * there are 65535 entries or more.
 *
 * Refuses (CB_E_CONFIG, naming the path) what `coldboot` would refuse to
 * unpack: a symlink that is absolute or resolves outside the folder, a name
 * with a backslash, the marker name at the top level, sockets, FIFOs and
 * devices, names over 4095 bytes, more than 256 levels or 1000000 entries.
 * The zip itself is left out when it is written inside the folder. The zip is
 * written to a temporary file beside out_path and renamed into place, so a
 * failure leaves no partial zip. Errors: CB_E_CONFIG, CB_E_IO, CB_E_SPACE,
 * CB_E_NOMEM.
 */
enum cb_status cb_pack_run(const struct cb_pack_request *req, struct cb_pack_result *res,
			   struct cb_error *err);

#endif
