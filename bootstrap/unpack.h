/* Safe extraction of a zip into a directory. The only user of zip.h. */
#ifndef CB_UNPACK_H
#define CB_UNPACK_H

#include <stdint.h>

#include "../cache/cache.h"
#include "avail.h"

struct cb_unpack_options {
	int zip_fd;            /* a seekable zip; the caller owns it (it is dup'ed) */
	int dest_fd;           /* an empty directory; the caller owns it */
	const char *dest_path; /* its path, for messages */
	uint64_t max_size_bytes; /* refuse (CB_E_ZIP) when the entries' total size exceeds this; 0: no cap */
	uint64_t free_bytes; /* refuse (CB_E_SPACE) when the total exceeds this, saying how much is
				    needed and free; 0: do not check */
	/*
	 * Optional: called when the archive needs more than free_bytes, to free
	 * room (older bundles); it returns the free bytes afterwards.
	 */
	enum cb_status (*make_room)(void *ctx, uint64_t needed_bytes, uint64_t *free_bytes,
				    struct cb_error *err);
	void *make_room_ctx;
	/*
	 * Non-zero: zip_fd is a scratch copy that may be consumed. Its bytes are
	 * given back to the file system (punched out) as soon as they are
	 * extracted, so the cache never holds the whole zip and the whole tree
	 * at once. Never set it for a zip the caller still needs.
	 */
	int consume_zip;
	/*
	 * What the extraction may keep resident, the helper's own libraries
	 * included: the workers' buffers are sized to fit, and an archive whose
	 * metadata alone would not fit is refused (CB_E_ZIP). 0: no budget.
	 */
	uint64_t memory_budget_bytes;
	/*
	 * Optional: the zip is still being downloaded into zip_fd, and avail says
	 * which of its size_bytes are present (bootstrap/avail.h). Every read
	 * first waits for its bytes; the archive is judged from its end records
	 * and central directory, and each entry's local header right before the
	 * entry is extracted, in file order, so extraction follows the download.
	 * Symlink targets are read and checked once present, before any symlink
	 * is made. Nothing the download has not written yet is punched out.
	 * Errors then also: what cb_avail_wait returns.
	 */
	struct cb_avail *avail;
	uint64_t size_bytes; /* with avail: the zip's whole size */
};

struct cb_unpack_result {
	uint64_t files;          /* regular files created */
	uint64_t dirs;           /* directories created */
	uint64_t symlinks;       /* symlinks created */
	uint64_t unpacked_bytes; /* bytes written */
};

/*
 * Grows this process's descriptor table, once, to as many descriptors as the
 * directory table of a big tree may hold (up to 65,536, within the hard
 * RLIMIT_NOFILE). Growing it later, while other threads run, waits a whole
 * RCU grace period per doubling (tens of ms in a VM), which is where a third
 * of a streamed extraction's directory time went. Call while the process has
 * one thread. Best effort; the soft limit is left as it was.
 */
void cb_unpack_reserve_fds(void);

/*
 * Extracts every entry under dest_fd: regular files, directories, and
 * symlinks whose target stays inside. Keeps exec bits, drops setuid, setgid,
 * sticky and group/world write. Refuses absolute names, "..", empty or NUL
 * names, backslashes, names that collide with the marker, and entries whose
 * data does not match their declared size or CRC. Never writes outside
 * dest_fd. Errors: CB_E_ZIP (the message names the entry and the rule),
 * CB_E_SPACE, CB_E_IO, CB_E_NOMEM.
 */
enum cb_status cb_unpack_zip(const struct cb_unpack_options *opts, struct cb_unpack_result *res,
			     struct cb_error *err);

#endif
