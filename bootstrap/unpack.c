/*
 * Safe extraction of a zip into a directory. The only file that includes
 * zip.h.
 *
 * The work happens in passes so that nothing is written before the whole
 * archive has been judged:
 *
 *   1. our own scan of the end records and the central directory (libzip
 *      1.7.3 does not expose local header offsets, and we want the raw name
 *      bytes): names, modes, sizes, local header offsets;
 *   2. libzip opens the same archive (in a thread of its own, while this
 *      one makes the checks of 3 that need no libzip), and every entry's
 *      size, compressed size, CRC and method must agree with the scan;
 *   3. checks on the whole set, still without writing: every name, every
 *      mode, the total declared size against the cap, duplicates, a file or
 *      a symlink used as a directory, local headers that disagree with the
 *      central directory, entries that share or overlap their bytes, every
 *      symlink target, resolved against the archive's own tree, and last
 *      the free space (making room evicts older bundles);
 *   4. every directory, named or implied, created by this thread in
 *      depth-first order through directory fds opened with O_NOFOLLOW (and
 *      kept open in a table, when the descriptor limit allows);
 *   5. regular files, by one worker thread per CPU (this one included): the
 *      raw bytes read with pread at the data offset the local header gave,
 *      inflated by libdeflate into a reused buffer (zlib, a chunk at a
 *      time, for entries bigger than a thread's buffers, which go first),
 *      the size and CRC checked from those bytes, each file created with
 *      O_EXCL and O_NOFOLLOW under its directory's fd, with its mode, and
 *      written in one write; methods other than stored and deflate through
 *      libzip in this thread, before the workers start;
 *   6. symlinks last, so no entry is ever written through one.
 *
 * docs/security.md ("What the extractor enforces, and why") lists the rules.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */

#include "unpack.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <zip.h>

#include "bigbuf.h"
#include "inflate.h"
#include "slice_writer.h"

#define UNPACK_BUF_BYTES (256u * 1024u)
#define UNPACK_NAME_MAX 255u        /* bytes in one path component */
#define UNPACK_PATH_MAX 4095u       /* bytes in a whole name or symlink target */
#define UNPACK_DEPTH_MAX 256u       /* path components; each open level holds a fd */
#define UNPACK_SYMLINK_HOPS_MAX 40u /* as the kernel's MAXSYMLINKS */
#define UNPACK_CD_MAX_BYTES (256ull * 1024u * 1024u)
#define UNPACK_SHOWN_NAME_MAX 200u /* a name as quoted in a message */
#define UNPACK_WORKERS_MAX 8u
#define UNPACK_FILES_PER_WORKER_MIN 16u
#define UNPACK_CHUNK_FILES 16u                      /* files a worker takes at a time */
#define UNPACK_BUFFERS_BYTES (32u * 1024u * 1024u)  /* every worker's two buffers, at most */
#define UNPACK_WHOLE_MAX_BYTES (8u * 1024u * 1024u) /* an entry held whole, at most */
#define UNPACK_WHOLE_MIN_BYTES (1024u * 1024u)      /* at least the streaming chunks */
#define UNPACK_STREAM_IN_BYTES (256u * 1024u)       /* a streamed entry: read at a time */
#define UNPACK_STREAM_OUT_BYTES (1024u * 1024u)     /* a streamed entry: written at a time */
/*
 * The memory budget's accounts, measured on this build (massif, RSS): the
 * helper's libraries and their state before the extractor allocates
 * anything; what each entry of the central directory costs us and libzip
 * (our table ~150 bytes, libzip's view ~270, while both are held), plus two
 * copies of the directory's bytes (ours, and the names); and what else the
 * extraction touches (thread stacks, inflate states, allocator slack).
 */
#define UNPACK_BASE_BYTES (12u * 1024u * 1024u)
#define UNPACK_ENTRY_BYTES 448u
#define UNPACK_SLACK_BYTES (1u * 1024u * 1024u)
#define UNPACK_FD_RESERVE 64u         /* descriptors left to others besides the directory table */
#define UNPACK_FD_TABLE_MAX 65536u    /* cb_unpack_reserve_fds */
#define UNPACK_PARALLEL_DIRS_MIN 256u /* fewer directories: make_dirs in one thread */
_Static_assert(UNPACK_STREAM_IN_BYTES <= UNPACK_WHOLE_MIN_BYTES &&
		       UNPACK_STREAM_OUT_BYTES <= UNPACK_WHOLE_MIN_BYTES,
	       "a streamed chunk fits a worker's buffers");

#define ZIP_EOCD_BYTES 22u
#define ZIP_EOCD_COMMENT_MAX 65535u
#define ZIP64_LOCATOR_BYTES 20u
#define ZIP64_EOCD_BYTES 56u
#define ZIP_CDR_BYTES 46u
#define ZIP_LFH_BYTES 30u
#define ZIP_FLAG_ENCRYPTED 0x0001u
#define ZIP_MADE_BY_UNIX 3u
#define UNPACK_ENTRIES_MAX 1000000u
/* libzip 1.7.3 looks for the end record in this many bytes at the end of the file. */
#define LIBZIP_TAIL_BYTES (ZIP_EOCD_COMMENT_MAX + ZIP_EOCD_BYTES + ZIP64_LOCATOR_BYTES)

/* File types as zip stores them (Unix st_mode bits, whatever the host's headers say). */
#define ZIP_UNIX_IFMT 0170000u
#define ZIP_UNIX_IFIFO 0010000u
#define ZIP_UNIX_IFCHR 0020000u
#define ZIP_UNIX_IFDIR 0040000u
#define ZIP_UNIX_IFBLK 0060000u
#define ZIP_UNIX_IFREG 0100000u
#define ZIP_UNIX_IFLNK 0120000u
#define ZIP_UNIX_IFSOCK 0140000u

enum unpack_kind {
	UNPACK_NONE = -1, /* lookups: nothing at that path */
	UNPACK_FILE,
	UNPACK_DIR,
	UNPACK_SYMLINK,
};

struct unpack_entry {
	char *name; /* NUL-terminated, without a directory's trailing '/' */
	size_t name_len;
	const unsigned char *raw_name; /* as stored in the central directory */
	size_t raw_name_len;
	uint64_t index;      /* position in the central directory, libzip's index */
	uint64_t size_bytes; /* declared uncompressed size */
	uint64_t comp_size_bytes;
	uint64_t local_offset; /* of the local header, absolute in the file */
	uint64_t data_offset;  /* of the compressed data, absolute in the file */
	uint64_t data_end;     /* local header + name + extra + compressed data */
	uint32_t crc;
	uint16_t method;
	uint16_t flags;
	uint8_t made_by_os;
	uint32_t external_attr;
	enum unpack_kind kind;
	mode_t mode;       /* what the file gets: 0644 or 0755 */
	char *link_target; /* symlinks: NUL-terminated, owned */
	uint32_t dir_id;   /* files and symlinks: the directory they go in */
	/* Streaming (opts->avail): the entry after it in the file, and where it starts. */
	const struct unpack_entry *next;
	uint64_t next_offset; /* its local header, or the central directory's start */
	bool header_checked;
};

/* A directory to create, named by an entry or implied by a deeper name. */
struct unpack_dir {
	uint32_t parent;  /* id; 0 is dest_fd */
	const char *comp; /* its last component, inside an entry's name */
	size_t comp_len;
	const struct unpack_entry *e; /* named in messages */
};

/* A thread's last directory, when there is no table of them. */
struct unpack_dir_cache {
	uint32_t id;
	int fd;
};

/* What our own scan of the end records found. */
struct unpack_cd {
	uint64_t file_size;
	uint64_t prefix_bytes; /* bytes before the archive proper, when offsets ignore them */
	uint64_t cd_offset;    /* absolute */
	uint64_t cd_size_bytes;
	uint64_t entries;
};

struct unpack_ctx {
	const struct cb_unpack_options *opts;
	struct cb_unpack_result *res;
	struct cb_error *err;
	struct cb_avail *avail; /* opts->avail: NULL when the zip is complete */
	uint64_t cd_offset;     /* absolute */
	uint64_t file_size;     /* the whole archive's */
	zip_t *za;
	unsigned char *cd_buf; /* cd_buf_bytes, from cb_bigbuf_alloc as entries and names */
	struct unpack_entry *entries;
	size_t count;
	struct unpack_entry **by_name; /* sorted by name, for lookups */
	char *names;                   /* arena for every entry's name */
	size_t cd_buf_bytes, entries_bytes, names_bytes;
	unsigned char *buf; /* UNPACK_BUF_BYTES, reused for every entry */
	mode_t umask_bits;
	uint64_t total_bytes;    /* declared by every file and symlink */
	struct unpack_dir *dirs; /* by id; [0] stands for dest_fd */
	size_t ndirs, dirs_cap;
	int *dir_fds; /* by id, every directory kept open; NULL without room for it */
	struct rlimit saved_nofile;
	bool nofile_raised;
	size_t buffers_bytes; /* what every worker's buffers together may take */
	uint64_t fixed_bytes; /* the budget's share for all but the buffers (0: no budget) */
	size_t workers;       /* extraction threads, this one included (make_tree_dirs) */
};

/* ---- small helpers ---- */

static uint16_t rd16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const unsigned char *p)
{
	return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

/*
 * Quotes a name for a message on one line: printable ASCII as is, anything
 * else (and '"' and '\\') as \xNN, cut with "..." when long.
 */
static const char *show_name(const unsigned char *name, size_t len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = name[i];

		if (o + 8 >= out_size) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

static enum cb_status refuse(struct unpack_ctx *ctx, const unsigned char *name, size_t len,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* `entry "<name>": <rule>`, on one line whatever the name holds. */
static enum cb_status entry_verror(struct cb_error *err, enum cb_status code, int saved,
				   const unsigned char *name, size_t len, const char *fmt,
				   va_list ap) __attribute__((format(printf, 6, 0)));

static enum cb_status entry_verror(struct cb_error *err, enum cb_status code, int saved,
				   const unsigned char *name, size_t len, const char *fmt,
				   va_list ap)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	char rule[CB_ERROR_MESSAGE_MAX];

	vsnprintf(rule, sizeof(rule), fmt, ap);
	show_name(name, len, shown, sizeof(shown));
	return cb_error_set(err, code, saved, "entry \"%s\": %s", shown, rule);
}

/* Refuses the entry: CB_E_ZIP. */
static enum cb_status refuse(struct unpack_ctx *ctx, const unsigned char *name, size_t len,
			     const char *fmt, ...)
{
	va_list ap;
	enum cb_status st;

	va_start(ap, fmt);
	st = entry_verror(ctx->err, CB_E_ZIP, 0, name, len, fmt, ap);
	va_end(ap);
	return st;
}

static enum cb_status refuse_entry(struct unpack_ctx *ctx, const struct unpack_entry *e,
				   const char *rule)
{
	return refuse(ctx, e->raw_name, e->raw_name_len, "%s", rule);
}

static const char *dest_shown(const struct unpack_ctx *ctx)
{
	return ctx->opts->dest_path != NULL ? ctx->opts->dest_path : "the destination";
}

/* `entry "<name>": ...` into err, from any thread. */
static enum cb_status entry_error_to(struct cb_error *err, enum cb_status code, int saved,
				     const struct unpack_entry *e, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum cb_status entry_error_to(struct cb_error *err, enum cb_status code, int saved,
				     const struct unpack_entry *e, const char *fmt, ...)
{
	va_list ap;
	enum cb_status st;

	va_start(ap, fmt);
	st = entry_verror(err, code, saved, e->raw_name, e->raw_name_len, fmt, ap);
	va_end(ap);
	return st;
}

/* A failed system call while writing an entry: space, memory or I/O. */
static enum cb_status sys_fail_to(struct cb_error *err, const char *dest,
				  const struct unpack_entry *e, int saved, const char *what)
{
	enum cb_status code = CB_E_IO;

	if (saved == EEXIST)
		return entry_error_to(err, CB_E_IO, saved, e,
				      "already exists in %s (the destination must be empty)", dest);
	if (saved == ENOSPC || saved == EDQUOT)
		code = CB_E_SPACE;
	else if (saved == ENOMEM)
		code = CB_E_NOMEM;
	return entry_error_to(err, code, saved, e, "cannot %s in %s: %s", what, dest,
			      strerror(saved));
}

static enum cb_status sys_fail(struct unpack_ctx *ctx, const struct unpack_entry *e, int saved,
			       const char *what)
{
	return sys_fail_to(ctx->err, dest_shown(ctx), e, saved, what);
}

static enum cb_status nomem(struct unpack_ctx *ctx)
{
	return cb_error_set(ctx->err, CB_E_NOMEM, ENOMEM, "unpack: out of memory");
}

/*
 * The process umask, without changing it: files and directories must end up
 * 0644/0755 whatever it is, and we only pay a chmod when it strips bits.
 */
static mode_t read_umask(void)
{
	char line[128];
	unsigned int mask = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (f != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			if (sscanf(line, "Umask: %o", &mask) == 1) {
				found = true;
				break;
			}
		}
		fclose(f);
	}
	if (!found) {
		/* No /proc: read it the only portable way, restoring it at once. */
		mode_t old = umask(022);

		umask(old);
		return old;
	}
	return (mode_t)mask & 0777;
}

/* ---- 1. our own scan of the end records and the central directory ---- */

static enum cb_status pread_exact(struct unpack_ctx *ctx, void *out, size_t len, uint64_t offset,
				  const char *what)
{
	enum cb_status st;
	int saved;

	/* A hole not written yet reads as zeros: wait for the bytes (and ask for them). */
	if (ctx->avail != NULL) {
		if (offset > ctx->opts->size_bytes || len > ctx->opts->size_bytes - offset)
			return cb_error_set(ctx->err, CB_E_ZIP, 0,
					    "zip: truncated archive (the %s is cut short)", what);
		st = cb_avail_wait(ctx->avail, offset, offset + len, true, ctx->err);
		if (st != CB_OK)
			return st;
	}

	saved = cb_read_full(ctx->opts->zip_fd, out, len, offset);
	if (saved > 0)
		return cb_error_set(ctx->err, CB_E_IO, saved, "zip: cannot read the %s: %s", what,
				    strerror(saved));
	if (saved < 0)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: truncated archive (the %s is cut short)", what);
	return CB_OK;
}

/* Finds the zip64 end record: where the locator says, or right before it (a prefix). */
static enum cb_status scan_zip64_end(struct unpack_ctx *ctx, uint64_t locator_pos,
				     struct unpack_cd *cd, uint64_t *end_record_pos)
{
	unsigned char loc[ZIP64_LOCATOR_BYTES];
	unsigned char rec[ZIP64_EOCD_BYTES];
	uint64_t pos;
	enum cb_status st;

	st = pread_exact(ctx, loc, sizeof(loc), locator_pos, "zip64 end locator");
	if (st != CB_OK)
		return st;
	if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: multi-disk archives are not supported");
	if (locator_pos < ZIP64_EOCD_BYTES)
		return cb_error_set(ctx->err, CB_E_ZIP, 0, "zip: the zip64 end record is missing");
	pos = rd64(loc + 8);
	if (pos > locator_pos || locator_pos - pos < ZIP64_EOCD_BYTES)
		pos = locator_pos - ZIP64_EOCD_BYTES;
	st = pread_exact(ctx, rec, sizeof(rec), pos, "zip64 end record");
	if (st != CB_OK)
		return st;
	if (memcmp(rec, "PK\x06\x06", 4) != 0 && pos != locator_pos - ZIP64_EOCD_BYTES) {
		/* The offset ignores bytes prepended to the archive: try right before the locator. */
		pos = locator_pos - ZIP64_EOCD_BYTES;
		st = pread_exact(ctx, rec, sizeof(rec), pos, "zip64 end record");
		if (st != CB_OK)
			return st;
	}
	if (memcmp(rec, "PK\x06\x06", 4) != 0)
		return cb_error_set(ctx->err, CB_E_ZIP, 0, "zip: the zip64 end record is missing");
	if (rd32(rec + 16) != 0 || rd32(rec + 20) != 0 || rd64(rec + 24) != rd64(rec + 32))
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: multi-disk archives are not supported");
	cd->entries = rd64(rec + 32);
	cd->cd_size_bytes = rd64(rec + 40);
	cd->cd_offset = rd64(rec + 48);
	*end_record_pos = pos;
	return CB_OK;
}

static enum cb_status scan_end(struct unpack_ctx *ctx, struct unpack_cd *cd)
{
	unsigned char *tail = ctx->buf;
	size_t tail_len;
	uint64_t tail_pos, eocd_pos = 0, end_record_pos = 0;
	bool found = false;
	struct stat sb;
	enum cb_status st;

	if (ctx->avail != NULL) {
		/* Still downloading: the size is the whole object's. */
		sb.st_size = (off_t)ctx->opts->size_bytes;
	} else if (fstat(ctx->opts->zip_fd, &sb) != 0) {
		int saved = errno;

		return cb_error_set(ctx->err, CB_E_IO, saved, "zip: cannot stat the archive: %s",
				    strerror(saved));
	}
	if (sb.st_size < (off_t)ZIP_EOCD_BYTES)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: no end of central directory record (truncated, or not a zip)");
	cd->file_size = (uint64_t)sb.st_size;
	tail_len = ZIP_EOCD_BYTES + ZIP_EOCD_COMMENT_MAX;
	if (tail_len > cd->file_size)
		tail_len = (size_t)cd->file_size;
	tail_pos = cd->file_size - tail_len;
	st = pread_exact(ctx, tail, tail_len, tail_pos, "end of the archive");
	if (st != CB_OK)
		return st;

	/* The last signature whose comment reaches exactly the end of the file. */
	for (size_t i = tail_len - ZIP_EOCD_BYTES + 1; i-- > 0;) {
		if (memcmp(tail + i, "PK\x05\x06", 4) == 0 &&
		    i + ZIP_EOCD_BYTES + rd16(tail + i + 20) == tail_len) {
			eocd_pos = tail_pos + i;
			found = true;
			break;
		}
	}
	if (!found)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: no end of central directory record (truncated, or not a zip)");

	{
		const unsigned char *e = tail + (eocd_pos - tail_pos);
		uint16_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
		uint16_t on_disk = rd16(e + 8), total = rd16(e + 10);
		uint32_t size = rd32(e + 12), offset = rd32(e + 16);
		bool has_locator = false;

		if (eocd_pos >= ZIP64_LOCATOR_BYTES) {
			unsigned char sig[4];

			st = pread_exact(ctx, sig, sizeof(sig), eocd_pos - ZIP64_LOCATOR_BYTES,
					 "zip64 end locator");
			if (st != CB_OK)
				return st;
			has_locator = memcmp(sig, "PK\x06\x07", 4) == 0;
		}
		if (has_locator) {
			st = scan_zip64_end(ctx, eocd_pos - ZIP64_LOCATOR_BYTES, cd,
					    &end_record_pos);
			if (st != CB_OK)
				return st;
			/* The 32-bit fields must be the zip64 ones or their "see zip64" markers. */
			if ((total != 0xffff && total != cd->entries) ||
			    (size != 0xffffffffu && size != cd->cd_size_bytes) ||
			    (offset != 0xffffffffu && offset != cd->cd_offset))
				return cb_error_set(ctx->err, CB_E_ZIP, 0,
						    "zip: the end record and the zip64 end record disagree");
		} else {
			if (disk != 0 || cd_disk != 0 || on_disk != total)
				return cb_error_set(ctx->err, CB_E_ZIP, 0,
						    "zip: multi-disk archives are not supported");
			cd->entries = total;
			cd->cd_size_bytes = size;
			cd->cd_offset = offset;
			end_record_pos = eocd_pos;
		}
	}

	/*
	 * The central directory ends right where the end record starts. When it
	 * ends earlier, bytes were prepended (a self-extracting stub) without
	 * adjusting the offsets: they all move by that much.
	 */
	if (cd->cd_offset > end_record_pos || cd->cd_size_bytes > end_record_pos - cd->cd_offset)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: the central directory lies past its end record (truncated archive?)");
	cd->prefix_bytes = end_record_pos - (cd->cd_offset + cd->cd_size_bytes);
	cd->cd_offset += cd->prefix_bytes;
	if (cd->cd_size_bytes > UNPACK_CD_MAX_BYTES)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: central directory of %llu bytes, more than %llu",
				    (unsigned long long)cd->cd_size_bytes,
				    (unsigned long long)UNPACK_CD_MAX_BYTES);
	if (cd->entries > UNPACK_ENTRIES_MAX)
		return cb_error_set(ctx->err, CB_E_ZIP, 0, "zip: %llu entries, more than %u",
				    (unsigned long long)cd->entries, UNPACK_ENTRIES_MAX);
	if (cd->entries > cd->cd_size_bytes / ZIP_CDR_BYTES)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: %llu entries cannot fit in a central directory of %llu bytes",
				    (unsigned long long)cd->entries,
				    (unsigned long long)cd->cd_size_bytes);
	return CB_OK;
}

/* Applies a zip64 extra field (0x0001) to the fields that overflowed 32 bits. */
static enum cb_status apply_zip64_extra(struct unpack_ctx *ctx, struct unpack_entry *e,
					const unsigned char *extra, size_t extra_len,
					uint32_t size32, uint32_t comp32, uint32_t off32)
{
	size_t p = 0;

	while (p + 4 <= extra_len) {
		uint16_t id = rd16(extra + p), len = rd16(extra + p + 2);
		const unsigned char *d = extra + p + 4;
		size_t q = 0;

		if (p + 4 + len > extra_len)
			break;
		if (id == 0x0001) {
			if (size32 == 0xffffffffu) {
				if (q + 8 > len)
					goto bad;
				e->size_bytes = rd64(d + q);
				q += 8;
			}
			if (comp32 == 0xffffffffu) {
				if (q + 8 > len)
					goto bad;
				e->comp_size_bytes = rd64(d + q);
				q += 8;
			}
			if (off32 == 0xffffffffu) {
				if (q + 8 > len)
					goto bad;
				e->local_offset = rd64(d + q);
			}
			return CB_OK;
		}
		p += 4u + len;
	}
	if (size32 == 0xffffffffu || comp32 == 0xffffffffu || off32 == 0xffffffffu)
		goto bad;
	return CB_OK;
bad:
	return refuse(ctx, e->raw_name, e->raw_name_len,
		      "zip64 sizes or offset missing from its extra field");
}

static enum cb_status scan_central(struct unpack_ctx *ctx, const struct unpack_cd *cd)
{
	size_t p = 0, cd_len = (size_t)cd->cd_size_bytes, name_bytes = 0;
	enum cb_status st;

	ctx->count = (size_t)cd->entries;
	ctx->cd_buf_bytes = cd_len;
	ctx->cd_buf = cb_bigbuf_alloc(cd_len);
	ctx->entries_bytes = ctx->count * sizeof(*ctx->entries);
	ctx->entries = cb_bigbuf_alloc(ctx->entries_bytes);
	if (ctx->cd_buf == NULL || ctx->entries == NULL)
		return nomem(ctx);
	st = pread_exact(ctx, ctx->cd_buf, cd_len, cd->cd_offset, "central directory");
	if (st != CB_OK)
		return st;

	for (size_t i = 0; i < ctx->count; i++) {
		const unsigned char *r = ctx->cd_buf + p;
		struct unpack_entry *e = &ctx->entries[i];
		uint16_t name_len, extra_len, comment_len;
		uint32_t size32, comp32, off32;

		if (cd_len - p < ZIP_CDR_BYTES || memcmp(r, "PK\x01\x02", 4) != 0)
			return cb_error_set(ctx->err, CB_E_ZIP, 0,
					    "zip: central directory record %zu of %zu is damaged",
					    i + 1, ctx->count);
		name_len = rd16(r + 28);
		extra_len = rd16(r + 30);
		comment_len = rd16(r + 32);
		if (cd_len - p - ZIP_CDR_BYTES < (size_t)name_len + extra_len + comment_len)
			return cb_error_set(ctx->err, CB_E_ZIP, 0,
					    "zip: central directory record %zu of %zu runs past its end",
					    i + 1, ctx->count);
		e->index = i;
		e->made_by_os = r[5];
		e->flags = rd16(r + 8);
		e->method = rd16(r + 10);
		e->crc = rd32(r + 16);
		comp32 = rd32(r + 20);
		size32 = rd32(r + 24);
		off32 = rd32(r + 42);
		e->comp_size_bytes = comp32;
		e->size_bytes = size32;
		e->local_offset = off32;
		e->external_attr = rd32(r + 38);
		e->raw_name = r + ZIP_CDR_BYTES;
		e->raw_name_len = name_len;
		if (rd16(r + 34) != 0 && rd16(r + 34) != 0xffff)
			return refuse(ctx, e->raw_name, e->raw_name_len,
				      "starts on another disk (multi-disk archives are not supported)");
		st = apply_zip64_extra(ctx, e, r + ZIP_CDR_BYTES + name_len, extra_len, size32,
				       comp32, off32);
		if (st != CB_OK)
			return st;
		if (e->local_offset > UINT64_MAX - cd->prefix_bytes)
			return refuse(ctx, e->raw_name, e->raw_name_len,
				      "local header offset overflows");
		e->local_offset += cd->prefix_bytes;
		name_bytes += (size_t)name_len + 1;
		p += ZIP_CDR_BYTES + (size_t)name_len + extra_len + comment_len;
	}
	if (p != cd_len)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: %zu stray bytes after the last central directory record",
				    cd_len - p);
	ctx->names_bytes = name_bytes;
	ctx->names = cb_bigbuf_alloc(name_bytes);
	if (ctx->names == NULL)
		return nomem(ctx);
	return CB_OK;
}

/* ---- 2. libzip opens the same bytes ---- */

static enum cb_status open_libzip(int zip_fd, uint64_t prefix_bytes, uint64_t entries,
				  zip_t **za_out, struct cb_error *err)
{
	zip_error_t zerr;
	zip_source_t *src = NULL;
	zip_t *za;
	FILE *fp = NULL;
	int fd = -1;
	enum cb_status st = CB_OK;

	zip_error_init(&zerr);
	fd = fcntl(zip_fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		int saved = errno;

		st = cb_error_set(err, CB_E_IO, saved,
				  "zip: cannot duplicate the archive's descriptor: %s",
				  strerror(saved));
		goto out;
	}
	fp = fdopen(fd, "rb");
	if (fp == NULL) {
		int saved = errno;

		st = cb_error_set(err, saved == ENOMEM ? CB_E_NOMEM : CB_E_IO, saved,
				  "zip: cannot open the archive's descriptor: %s", strerror(saved));
		goto out;
	}
	fd = -1;
	/* Starting after a prefix makes offsets that ignore it right for libzip too. */
	src = zip_source_filep_create(fp, prefix_bytes, -1, &zerr);
	if (src == NULL) {
		st = cb_error_set(err, CB_E_ZIP, 0, "zip: cannot read the archive: %s",
				  zip_error_strerror(&zerr));
		goto out;
	}
	fp = NULL;
	za = zip_open_from_source(src, ZIP_RDONLY, &zerr);
	if (za == NULL) {
		st = cb_error_set(err,
				  zip_error_code_zip(&zerr) == ZIP_ER_MEMORY ? CB_E_NOMEM : CB_E_ZIP,
				  0, "zip: cannot open the archive: %s", zip_error_strerror(&zerr));
		goto out;
	}
	src = NULL;
	*za_out = za;
	if (zip_get_num_entries(za, 0) < 0 || (uint64_t)zip_get_num_entries(za, 0) != entries) {
		st = cb_error_set(err, CB_E_ZIP, 0,
				  "zip: libzip sees %lld entries where the central directory has %llu",
				  (long long)zip_get_num_entries(za, 0),
				  (unsigned long long)entries);
		goto out;
	}
out:
	if (src != NULL)
		zip_source_free(src);
	if (fp != NULL)
		fclose(fp);
	if (fd >= 0)
		close(fd);
	zip_error_fini(&zerr);
	return st;
}

/*
 * libzip's own parse of the archive runs in a thread of its own while this
 * one judges what needs no libzip; its result is waited for before anything
 * that uses it.
 */
struct libzip_opener {
	int zip_fd;
	uint64_t prefix_bytes, entries;
	zip_t *za;
	enum cb_status st;
	struct cb_error err;
	pthread_t thread;
	bool started;
	bool tz_set;
};

static void *libzip_opener_run(void *arg)
{
	struct libzip_opener *o = arg;

	o->st = open_libzip(o->zip_fd, o->prefix_bytes, o->entries, &o->za, &o->err);
	return NULL;
}

/*
 * libzip turns every entry's DOS time into a time_t with mktime while it
 * opens the archive, and glibc's mktime, with TZ unset, stats
 * /etc/localtime on every call: a stat per entry, 60 ms for 26,000 entries
 * here. The times are never used, so TZ is UTC until the open is done. Set
 * and unset by this thread, before the opener starts and after it ended,
 * while no other thread runs.
 */
static void libzip_open_start(const struct unpack_ctx *ctx, const struct unpack_cd *cd,
			      struct libzip_opener *o)
{
	memset(o, 0, sizeof(*o));
	o->zip_fd = ctx->opts->zip_fd;
	o->prefix_bytes = cd->prefix_bytes;
	o->entries = cd->entries;
	cb_error_init(&o->err);
	o->tz_set = getenv("TZ") == NULL && setenv("TZ", "UTC", 0) == 0;
	o->started = pthread_create(&o->thread, NULL, libzip_opener_run, o) == 0;
	if (!o->started)
		libzip_opener_run(o); /* no thread to be had: in this one, then */
}

/* Waits for the opener; its failure is the one reported, as it comes first. */
static enum cb_status libzip_open_finish(struct unpack_ctx *ctx, struct libzip_opener *o)
{
	if (o->started)
		pthread_join(o->thread, NULL);
	o->started = false;
	if (o->tz_set) {
		unsetenv("TZ");
		tzset(); /* the local zone again, for whoever converts times next */
	}
	o->tz_set = false;
	ctx->za = o->za;
	if (o->st != CB_OK)
		*ctx->err = o->err;
	return o->st;
}

/* The entry as libzip will read it must be the entry we judged. */
static enum cb_status check_agrees(struct unpack_ctx *ctx, const struct unpack_entry *e)
{
	zip_stat_t zs;

	zip_stat_init(&zs);
	if (zip_stat_index(ctx->za, e->index, 0, &zs) != 0)
		return refuse(ctx, e->raw_name, e->raw_name_len, "libzip cannot stat it: %s",
			      zip_strerror(ctx->za));
	if ((e->flags & ZIP_FLAG_ENCRYPTED) != 0 ||
	    ((zs.valid & ZIP_STAT_ENCRYPTION_METHOD) && zs.encryption_method != ZIP_EM_NONE))
		return refuse_entry(ctx, e, "encrypted entries are not supported");
	if (!(zs.valid & ZIP_STAT_SIZE) || !(zs.valid & ZIP_STAT_COMP_SIZE) ||
	    !(zs.valid & ZIP_STAT_CRC) || !(zs.valid & ZIP_STAT_COMP_METHOD) ||
	    zs.size != e->size_bytes || zs.comp_size != e->comp_size_bytes || zs.crc != e->crc ||
	    zs.comp_method != e->method)
		return refuse_entry(ctx, e,
				    "libzip reads different sizes, CRC or method than the central directory");
	if (!zip_compression_method_supported((zip_int32_t)e->method, 0))
		return refuse(ctx, e->raw_name, e->raw_name_len,
			      "unsupported compression method %u", (unsigned int)e->method);
	return CB_OK;
}

/* ---- 3. judging every entry before writing anything ---- */

/* Checks the raw name and stores the entry's path (no trailing '/') in the arena. */
static enum cb_status check_name(struct unpack_ctx *ctx, struct unpack_entry *e, char **arena,
				 bool *dir_name)
{
	const unsigned char *n = e->raw_name;
	size_t len = e->raw_name_len, start = 0, components = 0;

	if (len == 0)
		return refuse_entry(ctx, e, "empty name");
	if (memchr(n, '\0', len) != NULL)
		return refuse_entry(ctx, e, "name contains a NUL byte");
	if (memchr(n, '\\', len) != NULL)
		return refuse_entry(ctx, e, "name contains a backslash");
	if (n[0] == '/')
		return refuse_entry(ctx, e, "absolute name");
	if (len > UNPACK_PATH_MAX)
		return refuse(ctx, n, len, "name longer than %u bytes", UNPACK_PATH_MAX);
	*dir_name = n[len - 1] == '/';
	if (*dir_name)
		len--;
	while (start <= len) {
		const unsigned char *slash = memchr(n + start, '/', len - start);
		size_t end = slash ? (size_t)(slash - n) : len;
		size_t clen = end - start;

		if (clen == 0)
			return refuse_entry(ctx, e, "empty path component (\"//\")");
		if (clen == 1 && n[start] == '.')
			return refuse_entry(ctx, e, "\".\" path component");
		if (clen == 2 && n[start] == '.' && n[start + 1] == '.')
			return refuse_entry(ctx, e, "name escapes the bundle (\"..\")");
		if (clen > UNPACK_NAME_MAX)
			return refuse(ctx, n, e->raw_name_len,
				      "path component longer than %u bytes", UNPACK_NAME_MAX);
		if (++components > UNPACK_DEPTH_MAX)
			return refuse(ctx, n, e->raw_name_len, "more than %u path components",
				      UNPACK_DEPTH_MAX);
		if (start == 0 && clen == sizeof(CB_MARKER_NAME) - 1 &&
		    memcmp(n, CB_MARKER_NAME, clen) == 0)
			return refuse_entry(ctx, e,
					    "name collides with the marker \"" CB_MARKER_NAME "\"");
		start = end + 1;
	}
	e->name = *arena;
	e->name_len = len;
	memcpy(e->name, n, len);
	e->name[len] = '\0';
	*arena += len + 1;
	return CB_OK;
}

/* Decides file, directory or symlink, and the mode a file gets. */
static enum cb_status check_kind(struct unpack_ctx *ctx, struct unpack_entry *e, bool dir_name)
{
	uint32_t unix_mode = e->external_attr >> 16;

	e->kind = dir_name ? UNPACK_DIR : UNPACK_FILE;
	e->mode = 0644;
	if (e->made_by_os == ZIP_MADE_BY_UNIX && unix_mode != 0) {
		switch (unix_mode & ZIP_UNIX_IFMT) {
		case 0:
			break;
		case ZIP_UNIX_IFDIR:
			e->kind = UNPACK_DIR;
			break;
		case ZIP_UNIX_IFREG:
			if (dir_name)
				return refuse_entry(ctx, e,
						    "name ends in \"/\" but its mode is a regular file");
			break;
		case ZIP_UNIX_IFLNK:
			if (dir_name)
				return refuse_entry(ctx, e,
						    "name ends in \"/\" but its mode is a symlink");
			e->kind = UNPACK_SYMLINK;
			break;
		case ZIP_UNIX_IFCHR:
			return refuse_entry(ctx, e, "character device entries are refused");
		case ZIP_UNIX_IFBLK:
			return refuse_entry(ctx, e, "block device entries are refused");
		case ZIP_UNIX_IFIFO:
			return refuse_entry(ctx, e, "FIFO entries are refused");
		case ZIP_UNIX_IFSOCK:
			return refuse_entry(ctx, e, "socket entries are refused");
		default:
			return refuse(ctx, e->raw_name, e->raw_name_len,
				      "unknown file type in mode 0%o", (unsigned int)unix_mode);
		}
		/* Exec bits are kept; setuid, setgid, sticky and group/world write are not. */
		if (unix_mode & 0111)
			e->mode = 0755;
	}
	switch (e->kind) {
	case UNPACK_DIR:
		e->mode = 0755;
		if (e->size_bytes != 0 || (e->method == ZIP_CM_STORE && e->comp_size_bytes != 0))
			return refuse_entry(ctx, e, "directory entry carries data");
		break;
	case UNPACK_SYMLINK:
		if (e->size_bytes == 0)
			return refuse_entry(ctx, e, "symlink with an empty target");
		if (e->size_bytes > UNPACK_PATH_MAX)
			return refuse(ctx, e->raw_name, e->raw_name_len,
				      "symlink target longer than %u bytes", UNPACK_PATH_MAX);
		break;
	case UNPACK_FILE:
	case UNPACK_NONE:
		break;
	}
	return CB_OK;
}

/* The local header h (its fixed part and name) against the central directory. */
static enum cb_status check_local_header(struct cb_error *err, struct unpack_entry *e,
					 uint64_t cd_offset, const unsigned char *h)
{
	size_t want = ZIP_LFH_BYTES + e->raw_name_len;
	uint64_t data_start;

	if (memcmp(h, "PK\x03\x04", 4) != 0)
		return entry_error_to(err, CB_E_ZIP, 0, e, "no local header at its offset");
	if (rd16(h + 8) != e->method || ((rd16(h + 6) ^ e->flags) & ZIP_FLAG_ENCRYPTED) != 0)
		return entry_error_to(err, CB_E_ZIP, 0, e,
				      "local header and central directory disagree on method or encryption");
	if (rd16(h + 26) != e->raw_name_len ||
	    memcmp(h + ZIP_LFH_BYTES, e->raw_name, e->raw_name_len) != 0)
		return entry_error_to(err, CB_E_ZIP, 0, e,
				      "local header and central directory disagree on the name");
	data_start = e->local_offset + want + rd16(h + 28);
	if (data_start > cd_offset || cd_offset - data_start < e->comp_size_bytes)
		return entry_error_to(err, CB_E_ZIP, 0, e,
				      "data runs into the central directory (truncated archive?)");
	e->data_offset = data_start;
	e->data_end = data_start + e->comp_size_bytes;
	return CB_OK;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct unpack_entry *x = *(const struct unpack_entry *const *)a;
	const struct unpack_entry *y = *(const struct unpack_entry *const *)b;

	if (x->local_offset != y->local_offset)
		return x->local_offset < y->local_offset ? -1 : 1;
	return x->index < y->index ? -1 : (x->index > y->index);
}

static int cmp_name(const void *a, const void *b)
{
	const struct unpack_entry *x = *(const struct unpack_entry *const *)a;
	const struct unpack_entry *y = *(const struct unpack_entry *const *)b;

	int c = strcmp(x->name, y->name);

	/* Ties in archive order, so a message names the earlier entry as "also". */
	if (c != 0)
		return c;
	return x->index < y->index ? -1 : (x->index > y->index);
}

/*
 * Every local header, in offset order (by_name is borrowed for it, and left
 * so for check_overlaps): one pread brings in as many neighbouring headers
 * as ctx->buf holds, rather than one pread each.
 */
/* Fills by_name (borrowed) with every entry in local-header order. */
static struct unpack_entry **sort_by_offset(struct unpack_ctx *ctx)
{
	struct unpack_entry **v = ctx->by_name;
	bool sorted = true;

	for (size_t i = 0; i < ctx->count; i++) {
		v[i] = &ctx->entries[i];
		sorted = sorted && (i == 0 || v[i - 1]->local_offset <= v[i]->local_offset);
	}
	/* Writers put the central directory in file order: then it is sorted already. */
	if (!sorted)
		qsort(v, ctx->count, sizeof(*v), cmp_offset);
	return v;
}

/* The entry's local header (fixed part and name) must end before the central directory. */
static enum cb_status check_header_inside(struct unpack_ctx *ctx, const struct unpack_cd *cd,
					  const struct unpack_entry *e)
{
	size_t want = ZIP_LFH_BYTES + e->raw_name_len;

	if (e->local_offset > cd->cd_offset || cd->cd_offset - e->local_offset < want)
		return refuse_entry(ctx, e, "local header lies outside the archive's data");
	return CB_OK;
}

/* b comes right after a in offset order: they may not start at the same local header. */
static enum cb_status check_not_shared(struct unpack_ctx *ctx, const struct unpack_entry *a,
				       const struct unpack_entry *b)
{
	char shown[UNPACK_SHOWN_NAME_MAX];

	if (a->local_offset == b->local_offset)
		return refuse(ctx, b->raw_name, b->raw_name_len,
			      "shares its local header with entry \"%s\"",
			      show_name(a->raw_name, a->raw_name_len, shown, sizeof(shown)));
	return CB_OK;
}

static enum cb_status check_local_headers(struct unpack_ctx *ctx, const struct unpack_cd *cd)
{
	struct unpack_entry **v = sort_by_offset(ctx);
	uint64_t win_start = 0;
	size_t win_len = 0;
	enum cb_status st;

	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = v[i];
		size_t want = ZIP_LFH_BYTES + e->raw_name_len;

		st = check_header_inside(ctx, cd, e);
		if (st != CB_OK)
			return st;
		if (e->local_offset < win_start || e->local_offset - win_start + want > win_len) {
			/* From this header to the last one after it that still fits the buffer. */
			win_start = e->local_offset;
			win_len = want;
			for (size_t j = i + 1; j < ctx->count; j++) {
				const struct unpack_entry *n = v[j];
				uint64_t end;

				if (n->local_offset > cd->cd_offset)
					break;
				end = n->local_offset + ZIP_LFH_BYTES + n->raw_name_len;
				if (end > cd->cd_offset || end - win_start > UNPACK_BUF_BYTES)
					break;
				win_len = (size_t)(end - win_start);
			}
			st = pread_exact(ctx, ctx->buf, win_len, win_start, "local header");
			if (st != CB_OK)
				return st;
		}
		st = check_local_header(ctx->err, e, cd->cd_offset,
					ctx->buf + (e->local_offset - win_start));
		if (st != CB_OK)
			return st;
	}
	return CB_OK;
}

/* Two entries may not share or overlap their bytes: that is how bombs amplify. */
static enum cb_status check_overlaps(struct unpack_ctx *ctx)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	struct unpack_entry *const *v = ctx->by_name; /* in offset order */

	for (size_t i = 1; i < ctx->count; i++) {
		const struct unpack_entry *a = v[i - 1], *b = v[i];
		enum cb_status st = check_not_shared(ctx, a, b);

		if (st != CB_OK)
			return st;
		if (a->data_end > b->local_offset)
			return refuse(ctx, b->raw_name, b->raw_name_len,
				      "overlaps the data of entry \"%s\"",
				      show_name(a->raw_name, a->raw_name_len, shown, sizeof(shown)));
	}
	return CB_OK;
}

/*
 * Streaming: what the central directory alone says of the local headers (by
 * the same rules as check_local_headers and check_overlaps), and, for each
 * entry, where the next one starts: its local header is checked against that
 * once its bytes arrive (check_header_now). by_name is borrowed, as there.
 */
static enum cb_status plan_offsets(struct unpack_ctx *ctx, const struct unpack_cd *cd)
{
	struct unpack_entry **v = sort_by_offset(ctx);

	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = v[i];
		enum cb_status st = check_header_inside(ctx, cd, e);

		if (st == CB_OK && i > 0)
			st = check_not_shared(ctx, v[i - 1], e);
		if (st != CB_OK)
			return st;
		e->next = i + 1 < ctx->count ? v[i + 1] : NULL;
		e->next_offset = i + 1 < ctx->count ? v[i + 1]->local_offset : cd->cd_offset;
	}
	return CB_OK;
}

/*
 * Reads len bytes of the zip at offset for entry e; what names them in
 * messages ("it": its local header and maybe its data; "its data").
 */
static enum cb_status pread_at(const struct unpack_ctx *ctx, const struct unpack_entry *e,
			       unsigned char *buf, size_t len, uint64_t offset, const char *what,
			       struct cb_error *err)
{
	int saved = cb_read_full(ctx->opts->zip_fd, buf, len, offset);

	if (saved > 0)
		return entry_error_to(err, CB_E_IO, saved, e, "cannot read %s from the archive: %s",
				      what, strerror(saved));
	if (saved < 0)
		return entry_error_to(err, CB_E_ZIP, 0, e, "the archive ends inside %s", what);
	return CB_OK;
}

/* Streaming: the local header h against the central directory, its data against the next entry. */
static enum cb_status check_header_in(const struct unpack_ctx *ctx, struct unpack_entry *e,
				      const unsigned char *h, struct cb_error *err)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	enum cb_status st;

	st = check_local_header(err, e, ctx->cd_offset, h);
	if (st != CB_OK)
		return st;
	if (e->data_end > e->next_offset && e->next != NULL)
		return entry_error_to(err, CB_E_ZIP, 0, e->next, "overlaps the data of entry \"%s\"",
				      show_name(e->raw_name, e->raw_name_len, shown, sizeof(shown)));
	e->header_checked = true;
	return CB_OK;
}

/*
 * Streaming: the entry's local header, once its bytes are in, against the
 * central directory, and its data against the next entry. buf holds at least
 * UNPACK_BUF_BYTES. Any thread; errors go to err.
 */
static enum cb_status check_header_now(const struct unpack_ctx *ctx, struct unpack_entry *e,
				       unsigned char *buf, struct cb_error *err)
{
	size_t want = ZIP_LFH_BYTES + e->raw_name_len;
	enum cb_status st;

	st = cb_avail_wait(ctx->avail, e->local_offset, e->local_offset + want, false, err);
	if (st == CB_OK)
		st = pread_at(ctx, e, buf, want, e->local_offset, "it", err);
	if (st != CB_OK)
		return st;
	return check_header_in(ctx, e, buf, err);
}

/* Compares a NUL-terminated name with key[0..len) in byte order. */
static int cmp_key(const char *name, const char *key, size_t len)
{
	int c = strncmp(name, key, len);

	if (c != 0)
		return c;
	return name[len] == '\0' ? 0 : 1;
}

/* The first entry, in name order, not below key[0..len). */
static size_t lower_bound(const struct unpack_ctx *ctx, const char *key, size_t len)
{
	size_t lo = 0, hi = ctx->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cmp_key(ctx->by_name[mid]->name, key, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * What the archive holds at path[0..len): an entry (stored in *found), a
 * directory implied by deeper names, or nothing (UNPACK_NONE).
 */
static enum unpack_kind lookup(const struct unpack_ctx *ctx, const char *path, size_t len,
			       const struct unpack_entry **found)
{
	char key[UNPACK_PATH_MAX + 2];
	size_t i;

	*found = NULL;
	if (len > UNPACK_PATH_MAX)
		return UNPACK_NONE;
	i = lower_bound(ctx, path, len);
	if (i < ctx->count && cmp_key(ctx->by_name[i]->name, path, len) == 0) {
		*found = ctx->by_name[i];
		return (*found)->kind;
	}
	memcpy(key, path, len);
	key[len] = '/';
	i = lower_bound(ctx, key, len + 1);
	if (i < ctx->count && strncmp(ctx->by_name[i]->name, key, len + 1) == 0)
		return UNPACK_DIR;
	return UNPACK_NONE;
}

static const char *kind_name(enum unpack_kind kind)
{
	switch (kind) {
	case UNPACK_DIR:
		return "directory";
	case UNPACK_SYMLINK:
		return "symlink";
	case UNPACK_FILE:
	case UNPACK_NONE:
		break;
	}
	return "file";
}

/* No duplicates, and every ancestor of an entry is a directory, never a file or symlink. */
static enum cb_status check_tree(struct unpack_ctx *ctx)
{
	char shown[UNPACK_SHOWN_NAME_MAX];

	for (size_t i = 0; i < ctx->count; i++)
		ctx->by_name[i] = &ctx->entries[i];
	qsort(ctx->by_name, ctx->count, sizeof(*ctx->by_name), cmp_name);
	for (size_t i = 1; i < ctx->count; i++) {
		const struct unpack_entry *a = ctx->by_name[i - 1], *b = ctx->by_name[i];

		if (strcmp(a->name, b->name) != 0)
			continue;
		if (a->kind == b->kind)
			return refuse(ctx, b->raw_name, b->raw_name_len,
				      "duplicate name (also entry %llu)",
				      (unsigned long long)a->index + 1);
		return refuse(ctx, b->raw_name, b->raw_name_len,
			      "a %s and a %s at the same path (entry \"%s\")", kind_name(a->kind),
			      kind_name(b->kind),
			      show_name(a->raw_name, a->raw_name_len, shown, sizeof(shown)));
	}
	/*
	 * Every ancestor a directory. In name order the entries below a directory
	 * are one run, so an ancestor shared with the parent path checked last
	 * (good[0..good_len)) is good already: each is looked up once.
	 */
	for (size_t i = 0, good_len = 0; i < ctx->count; i++) {
		const struct unpack_entry *e = ctx->by_name[i], *anc;
		const char *good = i > 0 ? ctx->by_name[i - 1]->name : "";
		const char *slash = strrchr(e->name, '/');
		size_t parent_len = slash ? (size_t)(slash - e->name) : 0;
		size_t same = 0;

		while (same < parent_len && same < good_len && e->name[same] == good[same])
			same++;
		for (size_t k = 1; k <= parent_len; k++) {
			if (e->name[k] != '/' || (k <= same && (k == good_len || good[k] == '/')))
				continue;
			if (lookup(ctx, e->name, k, &anc) != UNPACK_DIR && anc != NULL)
				return refuse(ctx, e->raw_name, e->raw_name_len,
					      "its parent \"%s\" is a %s in the archive, not a directory",
					      show_name((const unsigned char *)anc->name,
							anc->name_len, shown, sizeof(shown)),
					      kind_name(anc->kind));
		}
		good_len = parent_len;
	}
	return CB_OK;
}

static const char *show_target(const struct unpack_entry *link, char *out, size_t out_size)
{
	return show_name((const unsigned char *)link->link_target, strlen(link->link_target), out,
			 out_size);
}

/*
 * Resolves a symlink's target the way the kernel will, against the tree the
 * archive describes (the destination starts empty, so that is the whole
 * tree): ".." pops a real directory, an intermediate symlink is replaced by
 * its own target. A ".." with nothing left to pop leaves the bundle.
 */
static enum cb_status check_link_target(struct unpack_ctx *ctx, const struct unpack_entry *link)
{
	struct pending {
		const char *s;
		size_t len, pos;
	} todo[UNPACK_SYMLINK_HOPS_MAX + 1];
	char path[UNPACK_PATH_MAX + 1];
	char shown[UNPACK_SHOWN_NAME_MAX];
	size_t comp_end[UNPACK_PATH_MAX / 2 + 1];
	size_t depth = 0, path_len = 0, ntodo = 1, hops = 0;
	const char *slash = strrchr(link->name, '/');

	/* Start in the link's directory. */
	if (slash != NULL) {
		path_len = (size_t)(slash - link->name);
		memcpy(path, link->name, path_len);
		for (size_t k = 0; k <= path_len; k++)
			if (k == path_len || path[k] == '/')
				comp_end[depth++] = k;
	}
	todo[0].s = link->link_target;
	todo[0].len = strlen(link->link_target);
	todo[0].pos = 0;
	while (ntodo > 0) {
		struct pending *t = &todo[ntodo - 1];
		const char *c;
		size_t clen;
		const struct unpack_entry *hit;
		enum unpack_kind kind;
		bool last;

		if (t->pos > t->len) {
			ntodo--;
			continue;
		}
		c = t->s + t->pos;
		clen = strcspn(c, "/");
		if (t->pos + clen > t->len)
			clen = t->len - t->pos;
		t->pos += clen + 1;
		if (clen == 0 || (clen == 1 && c[0] == '.'))
			continue;
		if (clen == 2 && c[0] == '.' && c[1] == '.') {
			if (depth == 0)
				return refuse(ctx, link->raw_name, link->raw_name_len,
					      "symlink target \"%s\" escapes the bundle",
					      show_target(link, shown, sizeof(shown)));
			depth--;
			path_len = depth ? comp_end[depth - 1] : 0;
			continue;
		}
		if (path_len + 1 + clen > UNPACK_PATH_MAX ||
		    depth >= sizeof(comp_end) / sizeof(comp_end[0]))
			return refuse(ctx, link->raw_name, link->raw_name_len,
				      "symlink target resolves to a path longer than %u bytes",
				      UNPACK_PATH_MAX);
		last = true;
		for (size_t k = ntodo; k-- > 0;)
			if (todo[k].pos <= todo[k].len) {
				last = false;
				break;
			}
		if (depth > 0)
			path[path_len++] = '/';
		memcpy(path + path_len, c, clen);
		kind = lookup(ctx, path, path_len + clen, &hit);
		if (kind == UNPACK_SYMLINK && !last) {
			/* Continue from the intermediate link's own target, in its directory. */
			if (depth > 0)
				path_len--;
			if (++hops > UNPACK_SYMLINK_HOPS_MAX)
				return refuse(ctx, link->raw_name, link->raw_name_len,
					      "symlink target \"%s\" has too many levels of symlinks",
					      show_target(link, shown, sizeof(shown)));
			todo[ntodo].s = hit->link_target;
			todo[ntodo].len = strlen(hit->link_target);
			todo[ntodo].pos = 0;
			ntodo++;
			continue;
		}
		if (kind == UNPACK_FILE && !last)
			return CB_OK; /* the kernel stops here with ENOTDIR */
		path_len += clen;
		comp_end[depth++] = path_len;
	}
	return CB_OK;
}

/* ---- reading entries ---- */

static enum cb_status read_fail(struct unpack_ctx *ctx, const struct unpack_entry *e, zip_file_t *zf)
{
	zip_error_t *ze = zip_file_get_error(zf);

	switch (zip_error_code_zip(ze)) {
	case ZIP_ER_CRC:
		return refuse_entry(ctx, e, "CRC mismatch (the data is corrupt)");
	case ZIP_ER_INCONS:
		return refuse_entry(ctx, e, "data does not match its declared size");
	case ZIP_ER_MEMORY:
		return nomem(ctx);
	default:
		return refuse(ctx, e->raw_name, e->raw_name_len, "cannot read its data: %s",
			      zip_error_strerror(ze));
	}
}

static enum cb_status write_all(struct cb_error *err, const char *dest, const struct unpack_entry *e,
				int fd, const unsigned char *p, size_t len)
{
	int saved = cb_write_full(fd, p, len, -1);

	return saved == 0 ? CB_OK : sys_fail_to(err, dest, e, saved, "write");
}

/*
 * Reads the entry through libzip to its end, so libzip checks its CRC, into
 * fd or into mem (which holds size_bytes + 1). Never accepts more than the
 * declared size. Main thread only: libzip's archive is not thread-safe.
 */
static enum cb_status read_entry(struct unpack_ctx *ctx, const struct unpack_entry *e, int fd,
				 char *mem)
{
	zip_file_t *zf;
	uint64_t done = 0;
	zip_int64_t n;
	enum cb_status st = CB_OK;

	zf = zip_fopen_index(ctx->za, e->index, 0);
	if (zf == NULL)
		return refuse(ctx, e->raw_name, e->raw_name_len, "cannot open its data: %s",
			      zip_strerror(ctx->za));
	while (done < e->size_bytes) {
		uint64_t want = e->size_bytes - done;
		unsigned char *dst = mem ? (unsigned char *)mem + done : ctx->buf;

		if (mem == NULL && want > UNPACK_BUF_BYTES)
			want = UNPACK_BUF_BYTES;
		n = zip_fread(zf, dst, want);
		if (n < 0) {
			st = read_fail(ctx, e, zf);
			goto out;
		}
		if (n == 0) {
			st = refuse_entry(ctx, e, "data shorter than its declared size");
			goto out;
		}
		if (fd >= 0) {
			st = write_all(ctx->err, dest_shown(ctx), e, fd, dst, (size_t)n);
			if (st != CB_OK)
				goto out;
		}
		done += (uint64_t)n;
	}
	/* One more byte must be the end: libzip checks the CRC there. */
	n = zip_fread(zf, ctx->buf, 1);
	if (n < 0)
		st = read_fail(ctx, e, zf);
	else if (n > 0)
		st = refuse_entry(ctx, e, "data inflates past its declared size");
out:
	zip_fclose(zf);
	return st;
}

/* ---- 4. directories, in the main thread ---- */

static enum cb_status add_dir(struct unpack_ctx *ctx, uint32_t parent, const char *comp,
			      size_t comp_len, const struct unpack_entry *e, uint32_t *id)
{
	struct unpack_dir *d;

	if (ctx->ndirs == ctx->dirs_cap) {
		size_t cap = ctx->dirs_cap ? ctx->dirs_cap * 2 : 64;
		struct unpack_dir *grown;

		if (cap > UINT32_MAX)
			return refuse_entry(ctx, e, "too many directories");
		grown = realloc(ctx->dirs, cap * sizeof(*grown));
		if (grown == NULL)
			return nomem(ctx);
		ctx->dirs = grown;
		ctx->dirs_cap = cap;
	}
	d = &ctx->dirs[ctx->ndirs];
	d->parent = parent;
	d->comp = comp;
	d->comp_len = comp_len;
	d->e = e;
	*id = (uint32_t)ctx->ndirs++;
	return CB_OK;
}

/* Whether any entry lies below the directory entry e. */
static bool has_children(const struct unpack_ctx *ctx, const struct unpack_entry *e)
{
	char key[UNPACK_PATH_MAX + 2];
	size_t i;

	memcpy(key, e->name, e->name_len);
	key[e->name_len] = '/';
	i = lower_bound(ctx, key, e->name_len + 1);
	return i < ctx->count && strncmp(ctx->by_name[i]->name, key, e->name_len + 1) == 0;
}

/*
 * Every directory, named or implied by a deeper name, gets an id, and every
 * file and symlink the id of its parent (0 is dest_fd). The walk goes in
 * name order, where everything below a directory is one run: ids then come
 * depth-first, a parent's below its children's. A directory entry with
 * entries below it is left to them, since siblings can sort between the two
 * ("a", "a.txt", "a/x"): it would be entered twice.
 */
static enum cb_status plan_dirs(struct unpack_ctx *ctx)
{
	struct unpack_entry *const *v = ctx->by_name; /* sorted by name by check_tree */
	const char *comp[UNPACK_DEPTH_MAX];
	size_t comp_len[UNPACK_DEPTH_MAX];
	uint32_t ids[UNPACK_DEPTH_MAX];
	size_t depth = 0;
	uint32_t root = 0;
	enum cb_status st;

	st = add_dir(ctx, 0, "", 0, NULL, &root);
	if (st != CB_OK)
		return st;
	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = v[i];
		const char *slash = strrchr(e->name, '/');
		size_t len = e->kind == UNPACK_DIR ? e->name_len :
			     slash != NULL         ? (size_t)(slash - e->name) :
						     0;
		size_t level = 0, start = 0;

		if (e->kind == UNPACK_DIR && has_children(ctx, e))
			continue;
		while (start < len) {
			const char *next = memchr(e->name + start, '/', len - start);
			size_t end = next ? (size_t)(next - e->name) : len;
			size_t clen = end - start;

			if (level >= depth || comp_len[level] != clen ||
			    memcmp(comp[level], e->name + start, clen) != 0) {
				/* A new directory: whatever was deeper on the stack is done. */
				assert(level < UNPACK_DEPTH_MAX);
				depth = level + 1;
				comp[level] = e->name + start;
				comp_len[level] = clen;
				st = add_dir(ctx, level ? ids[level - 1] : root, e->name + start,
					     clen, e, &ids[level]);
				if (st != CB_OK)
					return st;
			}
			level++;
			start = end + 1;
		}
		depth = level;
		e->dir_id = level ? ids[level - 1] : root;
	}
	return CB_OK;
}

static void close_dir_table(struct unpack_ctx *ctx)
{
	if (ctx->dir_fds == NULL)
		return;
	for (size_t i = 1; i < ctx->ndirs; i++)
		if (ctx->dir_fds[i] >= 0)
			close(ctx->dir_fds[i]);
	free(ctx->dir_fds);
	ctx->dir_fds = NULL;
}

/*
 * Keeping every directory open needs a descriptor each: raise the soft
 * limit as far as that needs (put back by restore_fd_limit), or say no.
 */
static bool room_for_dir_table(struct unpack_ctx *ctx, size_t workers)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)ctx->ndirs + (rlim_t)workers + UNPACK_FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return false;
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return true;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
		return false;
	ctx->saved_nofile = rl;
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return false;
	ctx->nofile_raised = true;
	return true;
}

static void restore_fd_limit(struct unpack_ctx *ctx)
{
	if (ctx->nofile_raised)
		setrlimit(RLIMIT_NOFILE, &ctx->saved_nofile);
	ctx->nofile_raised = false;
}

void cb_unpack_reserve_fds(void)
{
	struct rlimit rl, raised;
	rlim_t want = UNPACK_FD_TABLE_MAX;
	int fd;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		want = rl.rlim_max;
	raised = rl;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		raised.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &raised) != 0)
			return;
	}
	/*
	 * The kernel grows the table to the next power of two holding the
	 * highest descriptor. F_DUPFD never replaces a descriptor already open.
	 */
	fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, (int)want - 1);
	if (fd >= 0)
		close(fd);
	if (raised.rlim_cur != rl.rlim_cur)
		setrlimit(RLIMIT_NOFILE, &rl);
}

/*
 * Creates one directory under parent (or finds it) and opens it, never
 * through a symlink; *made counts it when it is new. Any thread: the error
 * goes to err.
 */
static enum cb_status make_one_dir(const struct unpack_ctx *ctx, struct cb_error *err, int parent,
				   const struct unpack_dir *d, int *fd_out, uint64_t *made)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	char comp[UNPACK_NAME_MAX + 1];
	const char *dest = dest_shown(ctx);
	int fd;

	memcpy(comp, d->comp, d->comp_len);
	comp[d->comp_len] = '\0';
	if (mkdirat(parent, comp, 0755) == 0)
		(*made)++;
	else if (errno != EEXIST)
		return sys_fail_to(err, dest, d->e, errno, "create a directory");
	fd = openat(parent, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int saved = errno;

		if (saved == ELOOP || saved == ENOTDIR)
			return entry_error_to(err, CB_E_ZIP, 0, d->e,
					      "path component \"%s\" is not a directory",
					      show_name((const unsigned char *)comp, d->comp_len,
							shown, sizeof(shown)));
		return sys_fail_to(err, dest, d->e, saved, "open a directory");
	}
	if ((ctx->umask_bits & 0755) != 0 && fchmod(fd, 0755) != 0) {
		int saved = errno;

		close(fd);
		return sys_fail_to(err, dest, d->e, saved, "set a directory's mode");
	}
	*fd_out = fd;
	return CB_OK;
}

/*
 * Creates every directory in id order, walking down and up a stack of open
 * parents. With a table, every directory stays open for the workers (and
 * *out_of_fds says when the table ran out of descriptors after all).
 */
static enum cb_status make_dirs(struct unpack_ctx *ctx, bool *out_of_fds)
{
	uint32_t stack_id[UNPACK_DEPTH_MAX + 1];
	int stack_fd[UNPACK_DEPTH_MAX + 1];
	size_t top = 0;
	enum cb_status st = CB_OK;

	*out_of_fds = false;
	stack_id[0] = 0;
	stack_fd[0] = ctx->opts->dest_fd;
	for (size_t i = 1; i < ctx->ndirs; i++) {
		const struct unpack_dir *d = &ctx->dirs[i];
		int fd = -1;

		/* Ids are depth-first: the parent is on the stack. */
		while (stack_id[top] != d->parent) {
			assert(top > 0);
			if (ctx->dir_fds == NULL)
				close(stack_fd[top]);
			top--;
		}
		st = make_one_dir(ctx, ctx->err, stack_fd[top], d, &fd, &ctx->res->dirs);
		if (st != CB_OK) {
			*out_of_fds = ctx->dir_fds != NULL && (ctx->err->sys_errno == EMFILE ||
							       ctx->err->sys_errno == ENFILE);
			break;
		}
		if (ctx->dir_fds != NULL)
			ctx->dir_fds[i] = fd;
		assert(top < UNPACK_DEPTH_MAX);
		top++;
		stack_id[top] = (uint32_t)i;
		stack_fd[top] = fd;
	}
	if (ctx->dir_fds == NULL)
		for (; top > 0; top--)
			close(stack_fd[top]);
	return st;
}

/*
 * With a table of directories and more than one thread: the ids cut into one
 * stretch per thread, each made in id order, with no wait between threads.
 * Ids are depth-first and everything below a directory is one run of them,
 * so a directory's parent is either earlier in its own stretch or an
 * ancestor of the stretch's first directory. Those ancestors (a path per
 * stretch) are made first, by the calling thread; the threads then share
 * only them, and creations in one directory queue on its lock. 10,021
 * directories on tmpfs: 75 ms in one thread.
 */
struct dir_maker {
	const struct unpack_ctx *ctx;
	atomic_bool *stop; /* a thread failed: the others need not go on */
	size_t first, end; /* its stretch of ids */
	struct cb_error err;
	enum cb_status st;
	uint64_t made;
	pthread_t thread;
	bool started;
};

static void *dir_maker_run(void *arg)
{
	struct dir_maker *m = arg;
	const struct unpack_ctx *ctx = m->ctx;

	for (size_t i = m->first; i < m->end; i++) {
		const struct unpack_dir *d = &ctx->dirs[i];
		int fd = -1;

		if (ctx->dir_fds[i] >= 0)
			continue; /* on another stretch's path: made already */
		if (atomic_load_explicit(m->stop, memory_order_relaxed))
			break;
		m->st = make_one_dir(ctx, &m->err, ctx->dir_fds[d->parent], d, &fd, &m->made);
		if (m->st != CB_OK) {
			atomic_store_explicit(m->stop, true, memory_order_relaxed);
			break;
		}
		ctx->dir_fds[i] = fd;
	}
	return NULL;
}

/* Makes, top down, the ancestors of directory id that are not made yet. */
static enum cb_status make_path_to(const struct unpack_ctx *ctx, size_t id, uint64_t *made)
{
	uint32_t path[UNPACK_DEPTH_MAX];
	size_t n = 0;

	for (uint32_t a = ctx->dirs[id].parent; a != 0 && ctx->dir_fds[a] < 0;
	     a = ctx->dirs[a].parent) {
		assert(n < UNPACK_DEPTH_MAX);
		path[n++] = a;
	}
	while (n > 0) {
		const struct unpack_dir *d = &ctx->dirs[path[--n]];
		int fd = -1;
		enum cb_status st =
			make_one_dir(ctx, ctx->err, ctx->dir_fds[d->parent], d, &fd, made);

		if (st != CB_OK)
			return st;
		ctx->dir_fds[path[n]] = fd;
	}
	return CB_OK;
}

/* make_dirs by nthreads threads, this one included (it does the stretch of any that cannot start). */
static enum cb_status make_dirs_parallel(struct unpack_ctx *ctx, size_t nthreads, bool *out_of_fds)
{
	struct dir_maker m[UNPACK_WORKERS_MAX];
	atomic_bool stop = false;
	size_t n = ctx->ndirs - 1; /* ids 1 .. ndirs - 1; 0 is dest_fd */
	uint64_t made = 0;
	enum cb_status st = CB_OK;

	if (nthreads > UNPACK_WORKERS_MAX)
		nthreads = UNPACK_WORKERS_MAX;
	for (size_t i = 0; i < nthreads; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].ctx = ctx;
		m[i].stop = &stop;
		m[i].first = 1 + n * i / nthreads;
		m[i].end = 1 + n * (i + 1) / nthreads;
		m[i].st = CB_OK;
		cb_error_init(&m[i].err);
		if (st == CB_OK && i > 0 && m[i].first < m[i].end)
			st = make_path_to(ctx, m[i].first, &made);
	}
	if (st == CB_OK) {
		for (size_t i = 1; i < nthreads; i++)
			m[i].started = pthread_create(&m[i].thread, NULL, dir_maker_run, &m[i]) == 0;
		for (size_t i = 0; i < nthreads; i++)
			if (!m[i].started)
				dir_maker_run(&m[i]);
		for (size_t i = 0; i < nthreads; i++) {
			if (m[i].started)
				pthread_join(m[i].thread, NULL);
			made += m[i].made;
			if (st == CB_OK && m[i].st != CB_OK) {
				st = m[i].st;
				*ctx->err = m[i].err;
			}
		}
	}
	ctx->res->dirs += made;
	*out_of_fds =
		st != CB_OK && (ctx->err->sys_errno == EMFILE || ctx->err->sys_errno == ENFILE);
	return st;
}

/* ---- 5. regular files, by worker threads ---- */

/* What the workers share; the ctx is read-only while they run. */
struct unpack_job {
	const struct unpack_ctx *ctx;
	/*
	 * The entries streamed a slice at a time, largest first, one at a time.
	 * Streaming, they stay in files[] too, and these are in file order:
	 * see take_arrived_big.
	 */
	struct unpack_entry *const *bigs;
	size_t nbigs;
	atomic_size_t next_big;
	atomic_bool *big_taken; /* streaming: bigs[k] is someone's */
	/*
	 * Streaming: what is left of chunks whose worker went to a big entry
	 * (see take_arrived_big), [first, end) each, for any worker to finish.
	 */
	pthread_mutex_t leftover_lock;
	size_t nleftovers;
	struct unpack_leftover {
		size_t first, end;
	} leftovers[2 * UNPACK_WORKERS_MAX];
	struct unpack_entry *const *files; /* the others, in name order, in chunks */
	size_t nfiles;
	size_t streams, chunks_per_stream; /* see next_chunk */
	size_t limit_bytes;                /* an entry bigger than this (either size) is streamed */
	atomic_size_t next;
	atomic_bool stop; /* the first failure sets it; the others then stop */
	atomic_uint_least64_t unpacked_bytes;
	struct unpack_punch *punch; /* NULL unless the zip is consumed as it is extracted */
	/*
	 * Streaming: files[] holds every entry the workers take, in file order
	 * (directories and symlinks too: their local headers are checked, the
	 * targets read). Each stream of chunks has its own cursor: a worker takes
	 * from its own stream while the bytes are there (threads in different
	 * directories), else from any stream whose next chunk is present, else
	 * the chunk nearest the download's front (see next_chunk_streaming).
	 */
	bool streaming;
	atomic_size_t cursor[UNPACK_WORKERS_MAX];
};

struct unpack_worker {
	struct unpack_job *job;
	size_t index; /* 0 .. workers - 1: the stream it prefers when streaming */
	struct cb_inflate *inf;
	unsigned char *in;                 /* limit_bytes: compressed bytes */
	unsigned char *out;                /* limit_bytes: inflated bytes */
	struct unpack_dir_cache dir_cache; /* without a table of directory fds */
	uint64_t win_start, win_end; /* streaming: in holds the zip's bytes [win_start, win_end) */
	uint64_t files;
	bool first_failure; /* its err is the one to report */
	struct cb_error err;
	pthread_t thread;
	bool started;
};

static enum cb_status worker_refuse(struct unpack_worker *w, const struct unpack_entry *e,
				    const char *rule)
{
	return entry_error_to(&w->err, CB_E_ZIP, 0, e, "%s", rule);
}

/*
 * The fd of directory id: from the table, or else opened one level at a
 * time from dest_fd, never through a symlink, and cached until the next one.
 */
static enum cb_status open_dir_id(const struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
				  struct cb_error *err, const struct unpack_entry *e, uint32_t id,
				  int *fd_out)
{
	uint32_t chain[UNPACK_DEPTH_MAX];
	size_t n = 0;
	int fd = ctx->opts->dest_fd;

	if (ctx->dir_fds != NULL || id == 0) {
		*fd_out = id == 0 ? ctx->opts->dest_fd : ctx->dir_fds[id];
		return CB_OK;
	}
	if (cache->fd >= 0 && cache->id == id) {
		*fd_out = cache->fd;
		return CB_OK;
	}
	if (cache->fd >= 0)
		close(cache->fd);
	cache->fd = -1;
	for (uint32_t x = id; x != 0; x = ctx->dirs[x].parent) {
		assert(n < UNPACK_DEPTH_MAX);
		chain[n++] = x;
	}
	while (n-- > 0) {
		const struct unpack_dir *d = &ctx->dirs[chain[n]];
		char comp[UNPACK_NAME_MAX + 1];
		int next;

		memcpy(comp, d->comp, d->comp_len);
		comp[d->comp_len] = '\0';
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			int saved = errno;

			if (fd != ctx->opts->dest_fd)
				close(fd);
			if (saved == ELOOP || saved == ENOTDIR)
				return entry_error_to(err, CB_E_ZIP, 0, e,
						      "a path component is not a directory");
			return sys_fail_to(err, dest_shown(ctx), e, saved, "open a directory");
		}
		if (fd != ctx->opts->dest_fd)
			close(fd);
		fd = next;
	}
	cache->id = id;
	cache->fd = fd;
	*fd_out = fd;
	return CB_OK;
}

static const char *base_name(const struct unpack_entry *e)
{
	const char *slash = strrchr(e->name, '/');

	return slash ? slash + 1 : e->name;
}

/* Creates the file with its final mode; O_EXCL: nothing there may be overwritten. */
static enum cb_status create_file(const struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
				  struct cb_error *err, const struct unpack_entry *e, int *fd_out)
{
	int dir_fd, fd;
	enum cb_status st;

	st = open_dir_id(ctx, cache, err, e, e->dir_id, &dir_fd);
	if (st != CB_OK)
		return st;
	fd = openat(dir_fd, base_name(e), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		    e->mode);
	if (fd < 0)
		return sys_fail_to(err, dest_shown(ctx), e, errno, "create a file");
	/* Only when the umask took bits away: otherwise open already set the mode. */
	if ((ctx->umask_bits & e->mode) != 0 && fchmod(fd, e->mode) != 0) {
		int saved = errno;

		close(fd);
		return sys_fail_to(err, dest_shown(ctx), e, saved, "set a file's mode");
	}
	*fd_out = fd;
	return CB_OK;
}

/* Closes a written file, and counts it against the cap (a second line of defence). */
static enum cb_status finish_file(struct unpack_worker *w, const struct unpack_entry *e, int fd)
{
	uint64_t cap = w->job->ctx->opts->max_size_bytes;
	uint64_t total;

	if (close(fd) != 0)
		return sys_fail_to(&w->err, dest_shown(w->job->ctx), e, errno, "write");
	total = atomic_fetch_add_explicit(&w->job->unpacked_bytes, e->size_bytes,
					  memory_order_relaxed) +
		e->size_bytes;
	/* Cannot happen when every entry keeps to its declared size. */
	if (cap != 0 && total > cap)
		return entry_error_to(&w->err, CB_E_ZIP, 0, e,
				      "unpacked bytes pass the cap of %llu bytes",
				      (unsigned long long)cap);
	w->files++;
	return CB_OK;
}

/* Reads len raw bytes of the entry's data at offset from the start of its data. */
static enum cb_status read_raw(struct unpack_worker *w, const struct unpack_entry *e,
			       unsigned char *out, size_t len, uint64_t offset)
{
	const struct unpack_ctx *ctx = w->job->ctx;
	enum cb_status st;

	if (ctx->avail != NULL) {
		st = cb_avail_wait(ctx->avail, e->data_offset + offset,
				   e->data_offset + offset + len, false, &w->err);
		if (st != CB_OK)
			return st;
	}
	return pread_at(ctx, e, out, len, e->data_offset + offset, "its data", &w->err);
}

/* An inflate failure, as the entry's rule. */
static enum cb_status inflate_fail(struct unpack_worker *w, const struct unpack_entry *e,
				   const struct cb_error *ierr)
{
	return entry_error_to(&w->err, ierr->code, ierr->sys_errno, e, "%s", ierr->message);
}

/*
 * An entry that fits the buffers: read in one pread, inflated by libdeflate
 * and checked before the file exists, then written in one write.
 */
static enum cb_status write_whole_raw(struct unpack_worker *w, const struct unpack_entry *e,
				      const unsigned char *raw)
{
	size_t size = (size_t)e->size_bytes, comp = (size_t)e->comp_size_bytes;
	const unsigned char *data;
	struct cb_error ierr;
	int fd = -1;
	enum cb_status st;

	if (e->method == ZIP_CM_STORE && comp != size)
		return worker_refuse(w, e, "data does not match its declared size");
	if (raw == NULL) {
		st = read_raw(w, e, w->in, comp, 0);
		if (st != CB_OK)
			return st;
		raw = w->in;
	}
	data = raw;
	/* Some writers give an empty file no deflate stream at all: nothing to inflate. */
	if (e->method == ZIP_CM_DEFLATE && !(comp == 0 && size == 0)) {
		cb_error_init(&ierr);
		st = cb_inflate_whole(w->inf, raw, comp, w->out, size, &ierr);
		if (st != CB_OK)
			return inflate_fail(w, e, &ierr);
		data = w->out;
	}
	if (cb_inflate_crc32(0, data, size) != e->crc)
		return worker_refuse(w, e, "CRC mismatch (the data is corrupt)");
	st = create_file(w->job->ctx, &w->dir_cache, &w->err, e, &fd);
	if (st != CB_OK)
		return st;
	st = write_all(&w->err, dest_shown(w->job->ctx), e, fd, data, size);
	if (st != CB_OK) {
		close(fd);
		return st;
	}
	return finish_file(w, e, fd);
}

static enum cb_status write_whole(struct unpack_worker *w, const struct unpack_entry *e)
{
	return write_whole_raw(w, e, NULL);
}

/* Hands inflated (or stored) bytes to the file: never past the declared size. */
static enum cb_status stream_out(struct unpack_worker *w, const struct unpack_entry *e, int fd,
				 const unsigned char *p, size_t len, uint64_t *done, uint32_t *crc)
{
	if (len > e->size_bytes - *done)
		return worker_refuse(w, e, "data inflates past its declared size");
	*crc = cb_inflate_crc32(*crc, p, len);
	*done += len;
	return write_all(&w->err, dest_shown(w->job->ctx), e, fd, p, len);
}

/*
 * Giving the zip's bytes back as they are extracted (opts->consume_zip).
 * Files are then handed out in offset order, so each stream of chunks walks
 * one contiguous stretch of the zip: once its chunks up to some point are all
 * written, everything before that point in the stretch is punched out. The
 * streamed (big) entries punch their own bytes as they read them, and no
 * other punch may touch them, since they may still be in flight.
 */
struct unpack_punch {
	pthread_mutex_t lock;
	int fd;
	unsigned char *chunk_done;  /* per chunk */
	size_t *stream_next;        /* per stream: its first chunk not yet written */
	uint64_t *stream_punched;   /* per stream: where punching resumes */
	struct unpack_entry **bigs; /* by offset, to keep out of other punches */
	size_t nbigs;
	/*
	 * Streaming: never past what the download wrote in order, or it would
	 * write those bytes again into the hole (and fetched ahead, they may
	 * still be compared with the body).
	 */
	struct cb_avail *avail;
	/*
	 * The central directory and end records, read by nobody once the workers
	 * run (libzip and the judging are done with them): punched once, as soon
	 * as the download has passed them.
	 */
	uint64_t end_from;
	bool end_punched;
};

#define UNPACK_PUNCH_ALIGN 4096u
#define UNPACK_PUNCH_STEP_BYTES (2u << 20)

/* Punches the whole blocks inside [from, to) of the zip, below the prefix. Best effort. */
static void punch_raw(const struct unpack_punch *punch, uint64_t from, uint64_t to)
{
	uint64_t a = (from + UNPACK_PUNCH_ALIGN - 1) / UNPACK_PUNCH_ALIGN * UNPACK_PUNCH_ALIGN;
	uint64_t b = to / UNPACK_PUNCH_ALIGN * UNPACK_PUNCH_ALIGN;

	if (punch->avail != NULL) {
		cb_avail_punch(punch->avail, punch->fd, from, to);
		return;
	}
	/* A file system without hole punching just keeps the bytes. */
	if (b > a)
		(void)fallocate(punch->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)a,
				(off_t)(b - a));
}

/* Punches [from, to) of the zip, minus any big entry; whole blocks only. Best effort. */
static void punch_range(const struct unpack_punch *punch, uint64_t from, uint64_t to)
{
	for (size_t i = 0; i <= punch->nbigs && from < to; i++) {
		uint64_t end = to, next = to;

		if (i < punch->nbigs) {
			const struct unpack_entry *big = punch->bigs[i];

			if (big->data_end <= from || big->local_offset >= to)
				continue;
			end = big->local_offset > from ? big->local_offset : from;
			next = big->data_end;
		}
		punch_raw(punch, from, end);
		from = next;
	}
}

/* The zip offset where chunk c of the job's files begins. */
static uint64_t chunk_start(const struct unpack_job *job, size_t c)
{
	return job->files[c * UNPACK_CHUNK_FILES]->local_offset;
}

/* Chunk c (of stream c / chunks_per_stream) is written: punch what its stream has finished. */
static void punch_chunk_done(struct unpack_job *job, size_t c)
{
	struct unpack_punch *punch = job->punch;
	size_t s = c / job->chunks_per_stream;
	size_t first = s * job->chunks_per_stream;
	size_t *next = &punch->stream_next[s];
	size_t before;
	uint64_t upto;

	pthread_mutex_lock(&punch->lock);
	punch->chunk_done[c] = 1;
	before = *next;
	while (*next < job->chunks_per_stream && punch->chunk_done[first + *next])
		(*next)++;
	if (*next != before) {
		size_t c_next = first + *next;

		if (*next < job->chunks_per_stream && c_next * UNPACK_CHUNK_FILES < job->nfiles) {
			upto = chunk_start(job, c_next);
		} else {
			size_t last = (first + job->chunks_per_stream) * UNPACK_CHUNK_FILES;

			last = (last < job->nfiles ? last : job->nfiles) - 1;
			upto = job->files[last]->data_end;
		}
		punch_range(punch, punch->stream_punched[s], upto);
		/* The block holding upto also holds the next chunk's first bytes: it is punched next time. */
		upto = upto / UNPACK_PUNCH_ALIGN * UNPACK_PUNCH_ALIGN;
		if (upto > punch->stream_punched[s])
			punch->stream_punched[s] = upto;
	}
	if (!punch->end_punched &&
	    (punch->avail == NULL || cb_avail_prefix(punch->avail) >= job->ctx->file_size)) {
		punch_raw(punch, punch->end_from, job->ctx->file_size);
		punch->end_punched = true;
	}
	pthread_mutex_unlock(&punch->lock);
}

static int cmp_local_offset(const void *a, const void *b)
{
	const struct unpack_entry *x = *(const struct unpack_entry *const *)a;
	const struct unpack_entry *y = *(const struct unpack_entry *const *)b;

	return (x->local_offset > y->local_offset) - (x->local_offset < y->local_offset);
}

/* Orders v[0..n) by local offset; a list taken in the archive's order usually is already. */
static void sort_by_local_offset(struct unpack_entry **v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		if (v[i - 1]->local_offset > v[i]->local_offset) {
			qsort(v, n, sizeof(*v), cmp_local_offset);
			return;
		}
	}
}

static void punch_clean_up(struct unpack_punch *punch)
{
	pthread_mutex_destroy(&punch->lock);
	free(punch->chunk_done);
	free(punch->stream_next);
	free(punch->stream_punched);
	free(punch->bigs);
}

/* Sets up punching for job; false (no punching) when out of memory. */
static bool punch_init(struct unpack_punch *punch, struct unpack_job *job, int fd)
{
	size_t nchunks = job->streams * job->chunks_per_stream;

	memset(punch, 0, sizeof(*punch));
	punch->fd = fd;
	punch->avail = job->ctx->avail;
	punch->end_from = job->ctx->cd_offset;
	punch->nbigs = job->nbigs;
	punch->chunk_done = calloc(nchunks ? nchunks : 1, 1);
	punch->stream_next = calloc(job->streams, sizeof(*punch->stream_next));
	punch->stream_punched = calloc(job->streams, sizeof(*punch->stream_punched));
	punch->bigs = malloc((job->nbigs ? job->nbigs : 1) * sizeof(*punch->bigs));
	if (punch->chunk_done == NULL || punch->stream_next == NULL ||
	    punch->stream_punched == NULL || punch->bigs == NULL ||
	    pthread_mutex_init(&punch->lock, NULL) != 0) {
		free(punch->chunk_done);
		free(punch->stream_next);
		free(punch->stream_punched);
		free(punch->bigs);
		return false;
	}
	memcpy(punch->bigs, job->bigs, job->nbigs * sizeof(*punch->bigs));
	qsort(punch->bigs, punch->nbigs, sizeof(*punch->bigs), cmp_local_offset);
	for (size_t s = 0; s < job->streams; s++) {
		size_t c = s * job->chunks_per_stream;

		punch->stream_punched[s] =
			c * UNPACK_CHUNK_FILES < job->nfiles ? chunk_start(job, c) : 0;
	}
	/* Chunks past the end (the last stream can be short) count as written. */
	for (size_t c = 0; c < nchunks; c++)
		if (c * UNPACK_CHUNK_FILES >= job->nfiles)
			punch->chunk_done[c] = 1;
	return true;
}

/* Hands len inflated bytes, in the slice the writer gave, over to be written. */
static enum cb_status slice_out(struct unpack_worker *w, const struct unpack_entry *e,
				struct cb_slice_writer *wr, size_t len, uint64_t *done)
{
	if (len > e->size_bytes - *done)
		return worker_refuse(w, e, "data inflates past its declared size");
	*done += len;
	if (len > 0)
		cb_slice_writer_put(wr, len);
	return CB_OK;
}

/*
 * An entry bigger than the buffers: read, inflated by ISA-L and written a
 * slice at a time (deflated ones by a writer thread while the next slice is
 * inflated), its size and CRC checked at the end.
 */
static enum cb_status write_streamed(struct unpack_worker *w, const struct unpack_entry *e)
{
	/* Stored bytes go straight from the read to the file: read as much as is written. */
	size_t in_bytes =
		e->method == ZIP_CM_STORE ? UNPACK_STREAM_OUT_BYTES : UNPACK_STREAM_IN_BYTES;
	uint64_t read_bytes = 0, written = 0;
	uint32_t crc = 0;
	const unsigned char *p = w->in;
	size_t have = 0;
	bool done = false;
	struct cb_error ierr;
	int fd = -1;
	enum cb_status st;
	/* With a consumed zip: the bytes before this offset are given back. */
	uint64_t punched = e->local_offset;
	struct cb_slice_writer *wr = NULL;
	unsigned char *out = w->out;
	const struct unpack_ctx *ctx = w->job->ctx;
	size_t slots;
	int ring = -1;
	int write_errno;

	if (e->method == ZIP_CM_STORE && e->comp_size_bytes != e->size_bytes)
		return worker_refuse(w, e, "data does not match its declared size");
	cb_error_init(&ierr);
	if (e->method == ZIP_CM_DEFLATE && cb_inflate_stream_begin(w->inf, &ierr) != CB_OK)
		return inflate_fail(w, e, &ierr);
	st = create_file(w->job->ctx, &w->dir_cache, &w->err, e, &fd);
	if (st != CB_OK)
		return st;
	/* Without a writer thread (too little room, or none to be had): inline. */
	if (e->method == ZIP_CM_DEFLATE)
		wr = cb_slice_writer_start(fd, w->out, UNPACK_STREAM_OUT_BYTES,
					   w->job->limit_bytes / UNPACK_STREAM_OUT_BYTES);
	/*
	 * Streaming: the rest of in takes this entry's bytes straight from the
	 * download, as long as it keeps up, instead of through the file.
	 */
	slots = w->job->limit_bytes > in_bytes ?
			(w->job->limit_bytes - in_bytes) / CB_AVAIL_BLOCK_BYTES :
			0;
	/* Reads of in_bytes at most: see cb_avail_ring_open. */
	if (ctx->avail != NULL && slots >= in_bytes / CB_AVAIL_BLOCK_BYTES + 2)
		ring = cb_avail_ring_open(ctx->avail, e->data_offset, e->data_end, w->in + in_bytes,
					  slots);
	while (!done) {
		size_t before, produced = 0;

		if (atomic_load_explicit(&w->job->stop, memory_order_relaxed)) {
			/* Another worker failed first: its error is the one reported. */
			st = worker_refuse(w, e, "stopped");
			goto out;
		}
		if (have == 0 && read_bytes < e->comp_size_bytes) {
			uint64_t left = e->comp_size_bytes - read_bytes;

			if (w->job->punch != NULL &&
			    e->data_offset + read_bytes - punched >= UNPACK_PUNCH_STEP_BYTES) {
				punch_raw(w->job->punch, punched, e->data_offset + read_bytes);
				punched = e->data_offset + read_bytes;
			}

			have = left < in_bytes ? (size_t)left : in_bytes;
			st = ring >= 0 ? cb_avail_ring_read(ctx->avail, ring, ctx->opts->zip_fd,
							    e->data_offset + read_bytes, w->in,
							    have, &w->err) :
					 read_raw(w, e, w->in, have, read_bytes);
			if (st != CB_OK)
				goto out;
			read_bytes += have;
			p = w->in;
		}
		if (e->method == ZIP_CM_STORE) {
			st = stream_out(w, e, fd, p, have, &written, &crc);
			have = 0;
			done = read_bytes == e->comp_size_bytes;
			if (st != CB_OK)
				goto out;
			continue;
		}
		if (wr != NULL && (out = cb_slice_writer_next(wr)) == NULL)
			break; /* a write failed: finishing the writer says how */
		before = have;
		st = cb_inflate_stream_step(w->inf, &p, &have, out, UNPACK_STREAM_OUT_BYTES,
					    &produced, &done, &ierr);
		if (st != CB_OK) {
			st = inflate_fail(w, e, &ierr);
			goto out;
		}
		st = wr != NULL ? slice_out(w, e, wr, produced, &written) :
				  stream_out(w, e, fd, out, produced, &written, &crc);
		if (st != CB_OK)
			goto out;
		if (!done && produced == 0 && have == before &&
		    (have > 0 || read_bytes == e->comp_size_bytes)) {
			st = worker_refuse(w, e,
					   "cannot read its data: the deflate data ends early");
			goto out;
		}
	}
	if (wr != NULL) {
		write_errno = cb_slice_writer_finish(wr, false, &crc);
		wr = NULL;
		if (write_errno != 0) {
			st = sys_fail_to(&w->err, dest_shown(w->job->ctx), e, write_errno, "write");
			goto out;
		}
	}
	if (written != e->size_bytes)
		st = worker_refuse(w, e, "data shorter than its declared size");
	else if (crc != e->crc)
		st = worker_refuse(w, e, "CRC mismatch (the data is corrupt)");
	else if (w->job->punch != NULL)
		punch_raw(w->job->punch, punched, e->data_end);
out:
	if (ring >= 0) {
		uint64_t memory_bytes = cb_avail_ring_close(ctx->avail, ring);

		cb_log(CB_LOG_DEBUG, "unpack: %s: %llu of %llu bytes came in memory", e->name,
		       (unsigned long long)memory_bytes, (unsigned long long)e->comp_size_bytes);
	}
	if (wr != NULL)
		(void)cb_slice_writer_finish(wr, true, &crc);
	if (st != CB_OK) {
		close(fd);
		return st;
	}
	return finish_file(w, e, fd);
}

/* Chunk k of stream s as an index into files[], or SIZE_MAX when there is none. */
static size_t stream_chunk(const struct unpack_job *job, size_t s, size_t k)
{
	size_t chunk = s * job->chunks_per_stream + k;

	if (k >= job->chunks_per_stream || chunk * UNPACK_CHUNK_FILES >= job->nfiles)
		return SIZE_MAX;
	return chunk;
}

/* Chunk c's files, [*first, *end). */
static void chunk_files(const struct unpack_job *job, size_t c, size_t *first, size_t *end)
{
	*first = c * UNPACK_CHUNK_FILES;
	*end = *first + UNPACK_CHUNK_FILES < job->nfiles ? *first + UNPACK_CHUNK_FILES : job->nfiles;
}

/*
 * The next chunk of files, [*first, *end), or false when none is left.
 * Chunks come in turn from `streams` places far apart in name order, so that
 * threads seldom create files in the same directory at the same time: they
 * would queue on its lock.
 */
static bool next_chunk(struct unpack_job *job, size_t *first, size_t *end)
{
	for (;;) {
		size_t c = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
		size_t k = c / job->streams;
		size_t chunk = stream_chunk(job, c % job->streams, k);

		if (k >= job->chunks_per_stream)
			return false;
		if (chunk == SIZE_MAX)
			continue; /* the last stream can be short */
		chunk_files(job, chunk, first, end);
		return true;
	}
}

/* Takes the next chunk of stream s: true with it in *chunk, false when s has none left. */
static bool take_from_stream(struct unpack_job *job, size_t s, size_t *chunk)
{
	size_t k = atomic_fetch_add_explicit(&job->cursor[s], 1, memory_order_relaxed);

	*chunk = stream_chunk(job, s, k);
	return *chunk != SIZE_MAX;
}

/*
 * Streaming's next_chunk. Two threads creating files in one directory queue
 * on its lock (in the kernel, spinning), and neighbouring chunks share
 * directories; so while the download is ahead, each worker keeps to its own
 * stretch of the archive, as without streaming. A worker whose stretch has
 * not arrived yet helps where bytes are present, and with nothing present
 * anywhere waits for the chunk nearest the download's front.
 */
static bool next_chunk_streaming(struct unpack_job *job, size_t index, size_t *first, size_t *end)
{
	uint64_t present = cb_avail_prefix(job->ctx->avail);
	size_t chunk = SIZE_MAX;

	for (size_t n = 0; n < job->streams && chunk == SIZE_MAX; n++) {
		size_t s = (index + n) % job->streams;
		size_t k = atomic_load_explicit(&job->cursor[s], memory_order_relaxed);
		size_t c = stream_chunk(job, s, k);
		size_t c_first, c_end;

		if (c == SIZE_MAX)
			continue;
		chunk_files(job, c, &c_first, &c_end);
		if (job->files[c_end - 1]->data_end <= present && !take_from_stream(job, s, &chunk))
			chunk = SIZE_MAX;
	}
	while (chunk == SIZE_MAX) {
		size_t best = SIZE_MAX;
		uint64_t best_at = UINT64_MAX;

		for (size_t s = 0; s < job->streams; s++) {
			size_t k = atomic_load_explicit(&job->cursor[s], memory_order_relaxed);
			size_t c = stream_chunk(job, s, k);

			if (c != SIZE_MAX && chunk_start(job, c) < best_at) {
				best = s;
				best_at = chunk_start(job, c);
			}
		}
		if (best == SIZE_MAX)
			return false; /* every stream is done */
		(void)take_from_stream(job, best, &chunk);
	}
	chunk_files(job, chunk, first, end);
	return true;
}

static bool is_fast_method(const struct unpack_entry *e)
{
	return e->method == ZIP_CM_STORE || e->method == ZIP_CM_DEFLATE;
}

static bool is_big(const struct unpack_entry *e, size_t limit_bytes)
{
	return e->size_bytes > limit_bytes || e->comp_size_bytes > limit_bytes;
}

/* Streaming: a symlink's target, read raw and checked by its CRC (not through libzip). */
static enum cb_status read_link_raw(struct unpack_worker *w, struct unpack_entry *e)
{
	size_t size = (size_t)e->size_bytes, comp = (size_t)e->comp_size_bytes;
	const unsigned char *data = w->in;
	struct cb_error ierr;
	enum cb_status st;

	if (e->comp_size_bytes > w->job->limit_bytes)
		return worker_refuse(w, e, "symlink data larger than any target");
	if (e->method == ZIP_CM_STORE && comp != size)
		return worker_refuse(w, e, "data does not match its declared size");
	st = read_raw(w, e, w->in, comp, 0);
	if (st != CB_OK)
		return st;
	if (e->method == ZIP_CM_DEFLATE) {
		cb_error_init(&ierr);
		st = cb_inflate_whole(w->inf, w->in, comp, w->out, size, &ierr);
		if (st != CB_OK)
			return inflate_fail(w, e, &ierr);
		data = w->out;
	}
	if (cb_inflate_crc32(0, data, size) != e->crc)
		return worker_refuse(w, e, "CRC mismatch (the data is corrupt)");
	e->link_target = malloc(size + 1);
	if (e->link_target == NULL)
		return entry_error_to(&w->err, CB_E_NOMEM, ENOMEM, e, "out of memory");
	memcpy(e->link_target, data, size);
	e->link_target[size] = '\0';
	return CB_OK;
}

/* A small file or a directory: its header and data (up to the next entry) fit one read. */
static bool one_read(const struct unpack_worker *w, const struct unpack_entry *e)
{
	uint64_t span = e->next_offset - e->local_offset;

	return (e->kind == UNPACK_DIR ||
		(e->kind == UNPACK_FILE && !is_big(e, w->job->limit_bytes))) &&
	       span <= w->job->limit_bytes && span >= ZIP_LFH_BYTES + e->raw_name_len;
}

/*
 * The bytes of files[i] and of the entries after it in the chunk (to end)
 * that one_read, as many as in holds: one wait and one read for them all,
 * rather than one each.
 */
static enum cb_status fill_window(struct unpack_worker *w, size_t i, size_t end)
{
	struct unpack_entry *const *files = w->job->files;
	const struct unpack_ctx *ctx = w->job->ctx;
	uint64_t start = files[i]->local_offset, stop = files[i]->next_offset;
	enum cb_status st;

	for (size_t j = i + 1; j < end && one_read(w, files[j]) &&
			       files[j]->next_offset - start <= w->job->limit_bytes;
	     j++)
		stop = files[j]->next_offset;
	w->win_start = w->win_end = 0;
	st = cb_avail_wait(ctx->avail, start, stop, false, &w->err);
	if (st == CB_OK)
		st = pread_at(ctx, files[i], w->in, (size_t)(stop - start), start, "it", &w->err);
	if (st != CB_OK)
		return st;
	w->win_start = start;
	w->win_end = stop;
	return CB_OK;
}

static int cmp_offset_key(const void *key, const void *elem)
{
	uint64_t at = *(const uint64_t *)key;
	const struct unpack_entry *e = *(struct unpack_entry *const *)elem;

	return (at > e->local_offset) - (at < e->local_offset);
}

/* Streaming: whether this worker may write big entry e (nobody took it before). */
static bool take_big(struct unpack_job *job, const struct unpack_entry *e)
{
	struct unpack_entry *const *at = bsearch(&e->local_offset, job->bigs, job->nbigs,
						 sizeof(*job->bigs), cmp_offset_key);

	assert(at != NULL);
	return !atomic_exchange_explicit(&job->big_taken[at - job->bigs], true,
					 memory_order_relaxed);
}

static bool is_streamed_file(const struct unpack_entry *e, size_t limit_bytes)
{
	return e->kind == UNPACK_FILE && is_big(e, limit_bytes);
}

/* A big entry, its local header checked first (the caller took it). */
static enum cb_status stream_big(struct unpack_worker *w, struct unpack_entry *e)
{
	enum cb_status st;

	w->win_start = w->win_end = 0; /* in is for this entry now */
	st = check_header_now(w->job->ctx, e, w->in, &w->err);
	return st == CB_OK ? write_streamed(w, e) : st;
}

/* The largest of bigs[first..] that arrived (its local header at least) and nobody took. */
static size_t largest_arrived_big(struct unpack_job *job, size_t first)
{
	uint64_t present;
	size_t best = SIZE_MAX;

	if (first >= job->nbigs)
		return SIZE_MAX; /* every one is taken: no need to look at the download */
	present = cb_avail_prefix(job->ctx->avail);
	for (size_t k = first; k < job->nbigs && job->bigs[k]->local_offset < present; k++)
		if (!atomic_load_explicit(&job->big_taken[k], memory_order_relaxed) &&
		    (best == SIZE_MAX || job->bigs[k]->size_bytes > job->bigs[best]->size_bytes))
			best = k;
	return best;
}

/* Whether take_arrived_big would find one now. */
static bool big_arrived(struct unpack_job *job)
{
	return largest_arrived_big(job, atomic_load_explicit(&job->next_big,
							     memory_order_relaxed)) != SIZE_MAX;
}

/*
 * Streaming: the longest jobs are the big entries, and one waiting in its
 * chunk behind smaller entries would start late and finish alone. So before
 * each entry a worker takes the largest big entry whose local header has
 * arrived and that nobody took, and inflates it as the rest of its bytes
 * arrive; the rest of the chunk it was in is left to whoever is free
 * (put_leftover), and skips it. false: none to take; else *st says how
 * writing it went.
 */
static bool take_arrived_big(struct unpack_worker *w, enum cb_status *st)
{
	struct unpack_job *job = w->job;
	size_t first = atomic_load_explicit(&job->next_big, memory_order_relaxed);

	for (size_t tries = 0; tries < job->nbigs; tries++) {
		size_t best = largest_arrived_big(job, first);

		if (best == SIZE_MAX)
			return false;
		if (atomic_exchange_explicit(&job->big_taken[best], true, memory_order_relaxed))
			continue; /* another worker took it meanwhile: look again */
		/* Where the next look starts: past those taken (a hint; too low is only slower). */
		while (first < job->nbigs &&
		       atomic_load_explicit(&job->big_taken[first], memory_order_relaxed))
			first++;
		atomic_store_explicit(&job->next_big, first, memory_order_relaxed);
		cb_log(CB_LOG_DEBUG, "unpack: %s taken as its bytes arrive, ahead of its chunk",
		       job->bigs[best]->name);
		*st = stream_big(w, job->bigs[best]);
		return true;
	}
	return false;
}

/*
 * Streaming: leaves [first, end), the rest of a chunk, to whichever worker
 * looks next, this one included (it will, once its big entry is written).
 * false when there is no room for it.
 */
static bool put_leftover(struct unpack_job *job, size_t first, size_t end)
{
	bool put = false;

	pthread_mutex_lock(&job->leftover_lock);
	if (job->nleftovers < sizeof(job->leftovers) / sizeof(job->leftovers[0])) {
		job->leftovers[job->nleftovers].first = first;
		job->leftovers[job->nleftovers].end = end;
		job->nleftovers++;
		put = true;
	}
	pthread_mutex_unlock(&job->leftover_lock);
	return put;
}

/* Streaming: takes the rest of a chunk that was left, the one nearest the zip's start. */
static bool take_leftover(struct unpack_job *job, size_t *first, size_t *end)
{
	size_t best = SIZE_MAX;

	pthread_mutex_lock(&job->leftover_lock);
	for (size_t k = 0; k < job->nleftovers; k++)
		if (best == SIZE_MAX || job->leftovers[k].first < job->leftovers[best].first)
			best = k;
	if (best != SIZE_MAX) {
		*first = job->leftovers[best].first;
		*end = job->leftovers[best].end;
		job->leftovers[best] = job->leftovers[--job->nleftovers];
	}
	pthread_mutex_unlock(&job->leftover_lock);
	return best != SIZE_MAX;
}

/* Streaming: files[i] of the chunk [i, end) as its bytes arrive, its local header checked first. */
static enum cb_status stream_entry(struct unpack_worker *w, size_t i, size_t end)
{
	struct unpack_entry *e = w->job->files[i];
	const struct unpack_ctx *ctx = w->job->ctx;
	const unsigned char *h;
	enum cb_status st;

	if (is_streamed_file(e, w->job->limit_bytes)) {
		if (!take_big(w->job, e))
			return CB_OK; /* another worker took it as it arrived */
		cb_log(CB_LOG_DEBUG, "unpack: %s reached in its chunk", e->name);
		return stream_big(w, e);
	}

	if (one_read(w, e)) {
		if (e->local_offset < w->win_start || e->next_offset > w->win_end) {
			st = fill_window(w, i, end);
			if (st != CB_OK)
				return st;
		}
		h = w->in + (e->local_offset - w->win_start);
		st = check_header_in(ctx, e, h, &w->err);
		if (st != CB_OK || e->kind == UNPACK_DIR)
			return st; /* a directory was made already, from the central directory */
		return write_whole_raw(w, e, h + (e->data_offset - e->local_offset));
	}
	w->win_start = w->win_end = 0; /* in is for this entry now */
	st = check_header_now(w->job->ctx, e, w->in, &w->err);
	if (st != CB_OK)
		return st;
	switch (e->kind) {
	case UNPACK_DIR:
		return CB_OK; /* made already, from the central directory */
	case UNPACK_SYMLINK:
		return read_link_raw(w, e); /* made last, by the main thread */
	case UNPACK_FILE:
	case UNPACK_NONE:
		break;
	}
	return write_whole(w, e);
}

/* The first failure stops the others; streaming, it wakes those waiting and ends the download. */
static void *worker_failed(struct unpack_worker *w)
{
	struct unpack_job *job = w->job;

	w->first_failure = !atomic_exchange(&job->stop, true);
	if (job->ctx->avail != NULL && w->err.code != CB_E_DOWNLOAD)
		cb_avail_stop(job->ctx->avail);
	return NULL;
}

static void *worker_run(void *arg)
{
	struct unpack_worker *w = arg;
	struct unpack_job *job = w->job;
	size_t i, end;

	/* The longest jobs first, so that they do not start last and finish alone. */
	while (!job->streaming &&
	       (i = atomic_fetch_add_explicit(&job->next_big, 1, memory_order_relaxed)) <
		       job->nbigs) {
		if (atomic_load_explicit(&job->stop, memory_order_relaxed))
			return NULL;
		if (write_streamed(w, job->bigs[i]) != CB_OK)
			return worker_failed(w);
	}
	for (;;) {
		enum cb_status st = CB_OK;
		size_t chunk;

		if (atomic_load_explicit(&job->stop, memory_order_relaxed))
			return NULL;
		if (job->streaming && take_arrived_big(w, &st)) {
			if (st != CB_OK)
				return worker_failed(w);
			continue;
		}
		if (!(job->streaming ? take_leftover(job, &i, &end) ||
					       next_chunk_streaming(job, w->index, &i, &end) :
				       next_chunk(job, &i, &end)))
			break;
		for (chunk = i / UNPACK_CHUNK_FILES; i < end; i++) {
			if (atomic_load_explicit(&job->stop, memory_order_relaxed))
				return NULL;
			/* A big entry first; the rest of this chunk to whoever is free. */
			if (job->streaming && big_arrived(job) && put_leftover(job, i, end))
				break;
			st = job->streaming ? stream_entry(w, i, end) :
					      write_whole(w, job->files[i]);
			if (st != CB_OK)
				return worker_failed(w);
		}
		/* Its last entry written (not left to another): the chunk is done. */
		if (i == end && job->punch != NULL)
			punch_chunk_done(job, chunk);
	}
	return NULL;
}

static enum cb_status worker_init(struct unpack_worker *w, struct unpack_job *job)
{
	memset(w, 0, sizeof(*w));
	w->job = job;
	w->dir_cache.fd = -1;
	cb_error_init(&w->err);
	w->inf = cb_inflate_new();
	/* Untouched pages cost no memory: an entry only ever touches what it needs. */
	w->in = cb_bigbuf_alloc(job->limit_bytes);
	w->out = cb_bigbuf_alloc(job->limit_bytes);
	if (w->inf == NULL || w->in == NULL || w->out == NULL)
		return CB_E_NOMEM;
	return CB_OK;
}

static void worker_clean_up(struct unpack_worker *w)
{
	if (w->dir_cache.fd >= 0)
		close(w->dir_cache.fd);
	w->dir_cache.fd = -1;
	cb_inflate_destroy(w->inf);
	cb_bigbuf_free(w->in, w->job->limit_bytes);
	cb_bigbuf_free(w->out, w->job->limit_bytes);
	w->inf = NULL;
	w->in = w->out = NULL;
}

/* CPUs this process may run on: online, and allowed by its affinity (a container's cpuset). */
static size_t usable_cpus(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0 &&
	    CPU_COUNT(&set) < online)
		online = CPU_COUNT(&set);
	return online < 1 ? 1 : (size_t)online;
}

static size_t worker_count(const struct unpack_ctx *ctx, size_t nfiles)
{
	size_t n = usable_cpus();

	if (n > UNPACK_WORKERS_MAX)
		n = UNPACK_WORKERS_MAX;
	/* Each one's two buffers hold at least the streaming chunks. */
	if (n > ctx->buffers_bytes / (2 * UNPACK_WHOLE_MIN_BYTES))
		n = ctx->buffers_bytes / (2 * UNPACK_WHOLE_MIN_BYTES);
	if (n < 1)
		n = 1;
	/* A thread costs more than a handful of small files. */
	if (n > nfiles / UNPACK_FILES_PER_WORKER_MIN + 1)
		n = nfiles / UNPACK_FILES_PER_WORKER_MIN + 1;
	return n;
}

/* The buffers of all workers together stay within ctx->buffers_bytes. */
static size_t buffer_limit(const struct unpack_ctx *ctx, size_t workers)
{
	size_t limit = ctx->buffers_bytes / (2 * workers);

	if (limit > UNPACK_WHOLE_MAX_BYTES)
		limit = UNPACK_WHOLE_MAX_BYTES;
	if (limit < UNPACK_WHOLE_MIN_BYTES)
		limit = UNPACK_WHOLE_MIN_BYTES;
	return limit;
}

/*
 * Streaming: job->bigs are the big files among job->files, in file order
 * (the same order), with a flag each for whoever takes it. false when out
 * of memory.
 */
static bool list_stream_bigs(struct unpack_job *job, struct unpack_entry ***owned)
{
	struct unpack_entry **bigs;
	size_t n = 0;

	for (size_t i = 0; i < job->nfiles; i++)
		n += is_streamed_file(job->files[i], job->limit_bytes);
	bigs = malloc((n ? n : 1) * sizeof(*bigs));
	job->big_taken = malloc((n ? n : 1) * sizeof(*job->big_taken));
	if (bigs == NULL || job->big_taken == NULL) {
		free(bigs);
		free(job->big_taken);
		job->big_taken = NULL;
		return false;
	}
	n = 0;
	for (size_t i = 0; i < job->nfiles; i++)
		if (is_streamed_file(job->files[i], job->limit_bytes)) {
			atomic_init(&job->big_taken[n], false);
			bigs[n++] = job->files[i];
		}
	job->bigs = *owned = bigs;
	job->nbigs = n;
	return true;
}

/*
 * Every regular file, stored or deflated, by `workers` threads (the calling
 * thread is one of them): files[0..nbigs) are streamed, the others held
 * whole (streaming, nbigs is 0: files are in file order, big ones among
 * them). The first failure stops the others and is the one reported.
 */
static enum cb_status write_files(struct unpack_ctx *ctx, struct unpack_entry *const *files,
				  size_t nbigs, size_t nfiles, size_t workers, size_t limit_bytes)
{
	struct unpack_worker w[UNPACK_WORKERS_MAX];
	struct unpack_job job;
	struct unpack_punch punch;
	struct unpack_entry **stream_bigs = NULL;
	size_t ready = 0;
	enum cb_status st = CB_OK;

	assert(workers >= 1 && workers <= UNPACK_WORKERS_MAX);
	assert(ctx->avail == NULL || nbigs == 0);
	job.ctx = ctx;
	job.bigs = files;
	job.nbigs = nbigs;
	job.big_taken = NULL;
	job.files = files + nbigs;
	job.nfiles = nfiles - nbigs;
	job.limit_bytes = limit_bytes;
	job.streaming = ctx->avail != NULL;
	job.streams = workers;
	job.chunks_per_stream =
		((job.nfiles + UNPACK_CHUNK_FILES - 1) / UNPACK_CHUNK_FILES + job.streams - 1) /
		job.streams;
	atomic_init(&job.next_big, 0);
	atomic_init(&job.next, 0);
	for (size_t s = 0; s < UNPACK_WORKERS_MAX; s++)
		atomic_init(&job.cursor[s], 0);
	atomic_init(&job.stop, false);
	atomic_init(&job.unpacked_bytes, ctx->res->unpacked_bytes);
	job.punch = NULL;
	job.nleftovers = 0;
	if (pthread_mutex_init(&job.leftover_lock, NULL) != 0)
		return nomem(ctx);
	if (job.streaming && !list_stream_bigs(&job, &stream_bigs)) {
		pthread_mutex_destroy(&job.leftover_lock);
		return nomem(ctx);
	}
	/* A big entry's chunk may be done before it: punches keep off every big entry. */
	if (ctx->opts->consume_zip && punch_init(&punch, &job, ctx->opts->zip_fd))
		job.punch = &punch;
	for (; ready < workers; ready++) {
		st = worker_init(&w[ready], &job);
		w[ready].index = ready;
		if (st != CB_OK) {
			ready++;
			st = nomem(ctx);
			goto out;
		}
	}
	/* A thread that cannot start leaves its share to the others. */
	for (size_t i = 1; i < workers; i++)
		w[i].started = pthread_create(&w[i].thread, NULL, worker_run, &w[i]) == 0;
	worker_run(&w[0]);
	for (size_t i = 1; i < workers; i++)
		if (w[i].started)
			pthread_join(w[i].thread, NULL);
	for (size_t i = 0; i < workers; i++) {
		ctx->res->files += w[i].files;
		if (w[i].first_failure) {
			*ctx->err = w[i].err;
			st = w[i].err.code;
		}
	}
	ctx->res->unpacked_bytes = atomic_load(&job.unpacked_bytes);
out:
	for (size_t i = 0; i < ready; i++)
		worker_clean_up(&w[i]);
	if (job.punch != NULL)
		punch_clean_up(job.punch);
	free(stream_bigs);
	free(job.big_taken);
	pthread_mutex_destroy(&job.leftover_lock);
	return st;
}

/* ---- 6. what the main thread writes itself ---- */

/* A method other than stored or deflate: through libzip, in this thread only. */
static enum cb_status write_libzip_file(struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
					const struct unpack_entry *e)
{
	int fd = -1;
	enum cb_status st;

	st = create_file(ctx, cache, ctx->err, e, &fd);
	if (st != CB_OK)
		return st;
	st = read_entry(ctx, e, fd, NULL);
	if (close(fd) != 0 && st == CB_OK)
		st = sys_fail(ctx, e, errno, "write");
	if (st != CB_OK)
		return st;
	ctx->res->unpacked_bytes += e->size_bytes;
	/* Cannot happen when every entry keeps to its declared size: a second line of defence. */
	if (ctx->opts->max_size_bytes != 0 && ctx->res->unpacked_bytes > ctx->opts->max_size_bytes)
		return refuse(ctx, e->raw_name, e->raw_name_len,
			      "unpacked bytes pass the cap of %llu bytes",
			      (unsigned long long)ctx->opts->max_size_bytes);
	ctx->res->files++;
	return CB_OK;
}

static enum cb_status write_symlink(struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
				    const struct unpack_entry *e)
{
	int dir_fd;
	enum cb_status st;

	st = open_dir_id(ctx, cache, ctx->err, e, e->dir_id, &dir_fd);
	if (st != CB_OK)
		return st;
	if (symlinkat(e->link_target, dir_fd, base_name(e)) != 0)
		return sys_fail(ctx, e, errno, "create a symlink");
	ctx->res->symlinks++;
	return CB_OK;
}

static int cmp_size_down(const void *a, const void *b)
{
	const struct unpack_entry *x = *(const struct unpack_entry *const *)a;
	const struct unpack_entry *y = *(const struct unpack_entry *const *)b;

	if (x->size_bytes != y->size_bytes)
		return x->size_bytes > y->size_bytes ? -1 : 1;
	return x->index < y->index ? -1 : (x->index > y->index);
}

/*
 * The workers' list: entries too big for their buffers first, largest
 * first, then the others in name order, where a chunk of files shares few
 * directories.
 */
static enum cb_status list_files(struct unpack_ctx *ctx, size_t limit_bytes,
				 struct unpack_entry ***files_out, size_t *nbigs_out)
{
	struct unpack_entry **files;
	size_t nbigs = 0, nfiles = 0, b = 0, s;

	for (size_t i = 0; i < ctx->count; i++) {
		const struct unpack_entry *e = ctx->by_name[i];

		if (e->kind == UNPACK_FILE && is_fast_method(e)) {
			nfiles++;
			nbigs += is_big(e, limit_bytes);
		}
	}
	files = malloc((nfiles ? nfiles : 1) * sizeof(*files));
	if (files == NULL)
		return nomem(ctx);
	s = nbigs;
	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = ctx->by_name[i];

		if (e->kind == UNPACK_FILE && is_fast_method(e)) {
			if (is_big(e, limit_bytes))
				files[b++] = e;
			else
				files[s++] = e;
		}
	}
	qsort(files, nbigs, sizeof(*files), cmp_size_down);
	/* Consuming the zip wants each stream of chunks to walk one stretch of it. */
	if (ctx->opts->consume_zip)
		sort_by_local_offset(files + nbigs, nfiles - nbigs);
	*files_out = files;
	*nbigs_out = nbigs;
	return CB_OK;
}

/*
 * libzip's copy of the central directory, a few hundred bytes an entry, is
 * not needed once libzip has read what it reads: a thread of its own frees
 * it and gives the pages back while this one goes on, so that it does not
 * add up with the workers' buffers at the peak.
 */
struct libzip_release {
	zip_t *za;
	pthread_t thread;
	bool started;
};

static void *libzip_release_run(void *arg)
{
	struct libzip_release *r = arg;

	zip_discard(r->za);
	malloc_trim(0);
	return NULL;
}

static void libzip_release_start(struct unpack_ctx *ctx, struct libzip_release *r)
{
	if (ctx->za == NULL)
		return;
	r->za = ctx->za;
	ctx->za = NULL;
	r->started = pthread_create(&r->thread, NULL, libzip_release_run, r) == 0;
	if (!r->started)
		libzip_release_run(r);
}

static void libzip_release_finish(struct libzip_release *r)
{
	if (r->started)
		pthread_join(r->thread, NULL);
	r->started = false;
}

/* Every symlink's target, read (link_target) before: its characters, then where it leads. */
static enum cb_status judge_links(struct unpack_ctx *ctx)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	enum cb_status st;

	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = &ctx->entries[i];

		if (e->kind != UNPACK_SYMLINK)
			continue;
		assert(e->link_target != NULL);
		if (strlen(e->link_target) != e->size_bytes)
			return refuse_entry(ctx, e, "symlink target contains a NUL byte");
		if (e->link_target[0] == '/')
			return refuse(ctx, e->raw_name, e->raw_name_len,
				      "symlink target \"%s\" is absolute",
				      show_target(e, shown, sizeof(shown)));
		if (strchr(e->link_target, '\\') != NULL)
			return refuse_entry(ctx, e, "symlink target contains a backslash");
	}
	for (size_t i = 0; i < ctx->count; i++) {
		if (ctx->entries[i].kind != UNPACK_SYMLINK)
			continue;
		st = check_link_target(ctx, &ctx->entries[i]);
		if (st != CB_OK)
			return st;
	}
	return CB_OK;
}

/* A symlink's target through libzip, which checks its CRC, into link_target. */
static enum cb_status read_link_libzip(struct unpack_ctx *ctx, struct unpack_entry *e)
{
	enum cb_status st;

	e->link_target = malloc((size_t)e->size_bytes + 1);
	if (e->link_target == NULL)
		return nomem(ctx);
	st = read_entry(ctx, e, -1, e->link_target);
	if (st != CB_OK)
		return st;
	e->link_target[e->size_bytes] = '\0';
	return CB_OK;
}

/*
 * Streaming: the workers' list is every entry they take, in file order:
 * regular files, directories and symlinks stored or deflated.
 */
static enum cb_status list_stream(struct unpack_ctx *ctx, struct unpack_entry ***files_out,
				  size_t *count_out)
{
	struct unpack_entry **files;
	size_t n = 0;

	files = malloc((ctx->count ? ctx->count : 1) * sizeof(*files));
	if (files == NULL)
		return nomem(ctx);
	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = &ctx->entries[i];

		if (e->kind == UNPACK_DIR || is_fast_method(e))
			files[n++] = e;
	}
	sort_by_local_offset(files, n);
	*files_out = files;
	*count_out = n;
	return CB_OK;
}

/* What only libzip reads (other methods), in this thread, before the workers. */
static bool needs_libzip(const struct unpack_ctx *ctx, const struct unpack_entry *e)
{
	if (is_fast_method(e))
		return false;
	/* Not streaming, symlink targets were read while judging. */
	return e->kind == UNPACK_FILE || (ctx->avail != NULL && e->kind == UNPACK_SYMLINK);
}

/* The regular files the workers write (stored or deflated; libzip does the others). */
static size_t count_fast_files(const struct unpack_ctx *ctx)
{
	size_t n = 0;

	for (size_t i = 0; i < ctx->count; i++)
		if (ctx->entries[i].kind == UNPACK_FILE && is_fast_method(&ctx->entries[i]))
			n++;
	return n;
}

/*
 * Every directory, before any file, so the workers never create one (and,
 * with a table, each stays open for them). Sets ctx->workers, which the
 * table's size depends on.
 */
static enum cb_status make_tree_dirs(struct unpack_ctx *ctx)
{
	bool out_of_fds = false;
	enum cb_status st;

	st = plan_dirs(ctx);
	if (st != CB_OK)
		return st;
	ctx->workers = worker_count(ctx, count_fast_files(ctx));
	if (room_for_dir_table(ctx, ctx->workers)) {
		ctx->dir_fds = malloc(ctx->ndirs * sizeof(*ctx->dir_fds));
		if (ctx->dir_fds != NULL) {
			ctx->dir_fds[0] = ctx->opts->dest_fd;
			for (size_t i = 1; i < ctx->ndirs; i++)
				ctx->dir_fds[i] = -1;
		}
	}
	if (ctx->dir_fds != NULL && ctx->workers > 1 && ctx->ndirs > UNPACK_PARALLEL_DIRS_MIN)
		st = make_dirs_parallel(ctx, ctx->workers, &out_of_fds);
	else
		st = make_dirs(ctx, &out_of_fds);
	if (st != CB_OK && out_of_fds) {
		/* Descriptors are short after all: without the table, from the start. */
		close_dir_table(ctx);
		cb_error_init(ctx->err);
		st = make_dirs(ctx, &out_of_fds);
	}
	return st;
}

static enum cb_status extract(struct unpack_ctx *ctx)
{
	struct unpack_entry **files = NULL;
	struct unpack_dir_cache cache = {0, -1};
	struct libzip_release release = {NULL, 0, false};
	size_t nfiles = count_fast_files(ctx), nbigs = 0, workers = ctx->workers, limit_bytes;
	bool libzip_files = false;
	enum cb_status st;

	limit_bytes = buffer_limit(ctx, workers);
	cb_log(CB_LOG_DEBUG, "unpack: %zu workers, %zu KiB buffers each", workers,
	       2 * limit_bytes / 1024);
	/* Streaming: the workers take every entry instead, in file order. */
	if (ctx->avail != NULL)
		st = list_stream(ctx, &files, &nfiles);
	else
		st = list_files(ctx, limit_bytes, &files, &nbigs);
	if (st != CB_OK)
		return st;
	for (size_t i = 0; i < ctx->count; i++)
		libzip_files = libzip_files || needs_libzip(ctx, &ctx->entries[i]);

	if (!libzip_files)
		libzip_release_start(ctx, &release);

	/*
	 * libzip's archive is not thread-safe: these stay in this thread, before
	 * the others. Streaming, they wait for the whole download: libzip reads
	 * through stdio, whose buffer may hold bytes beyond those asked for, and
	 * they must not be holes yet to be written.
	 */
	if (ctx->avail != NULL && libzip_files)
		st = cb_avail_wait(ctx->avail, 0, ctx->opts->size_bytes, false, ctx->err);
	for (size_t i = 0; i < ctx->count && st == CB_OK; i++) {
		struct unpack_entry *e = &ctx->entries[i];

		if (!needs_libzip(ctx, e))
			continue;
		if (ctx->avail != NULL)
			st = check_header_now(ctx, e, ctx->buf, ctx->err);
		if (st == CB_OK)
			st = e->kind == UNPACK_FILE ? write_libzip_file(ctx, &cache, e) :
						      read_link_libzip(ctx, e);
	}
	libzip_release_start(ctx, &release);
	if (st == CB_OK && nfiles > 0)
		st = write_files(ctx, files, nbigs, nfiles, workers, limit_bytes);
	if (st == CB_OK && ctx->avail != NULL) {
		/* Every local header was checked on the way; the targets are all in. */
		for (size_t i = 0; i < ctx->count && st == CB_OK; i++)
			if (!ctx->entries[i].header_checked)
				st = refuse_entry(ctx, &ctx->entries[i],
						  "its local header was never read");
		if (st == CB_OK)
			st = judge_links(ctx);
	}

	/* Last, so that no entry is ever written through a symlink. */
	for (size_t i = 0; i < ctx->count && st == CB_OK; i++)
		if (ctx->entries[i].kind == UNPACK_SYMLINK)
			st = write_symlink(ctx, &cache, &ctx->entries[i]);
	libzip_release_finish(&release);
	if (cache.fd >= 0)
		close(cache.fd);
	free(files);
	return st;
}

/* ---- the whole job ---- */

/*
 * Fits the extraction into the memory budget: the workers get what the
 * helper, the metadata and the slack leave, up to UNPACK_BUFFERS_BYTES. An
 * archive whose metadata alone does not fit is refused before libzip reads
 * it, with the budget that would do.
 */
static enum cb_status plan_memory(struct unpack_ctx *ctx, const struct unpack_cd *cd)
{
	uint64_t budget = ctx->opts->memory_budget_bytes;
	uint64_t fixed, need;

	ctx->buffers_bytes = UNPACK_BUFFERS_BYTES;
	ctx->fixed_bytes = 0;
	if (budget == 0)
		return CB_OK;
	fixed = UNPACK_BASE_BYTES + UNPACK_SLACK_BYTES + cd->entries * UNPACK_ENTRY_BYTES +
		2 * cd->cd_size_bytes;
	need = fixed + 2 * UNPACK_WHOLE_MIN_BYTES; /* one worker, at least */
	if (need > budget)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: checking its %llu entries needs about %llu MiB of memory, "
				    "more than the memory budget of %llu MiB; raise "
				    "--memory-budget (COLDBOOT_MEMORY_BUDGET) to %lluM or more",
				    (unsigned long long)cd->entries,
				    (unsigned long long)((need + (1u << 20) - 1) >> 20),
				    (unsigned long long)(budget >> 20),
				    (unsigned long long)((need + (1u << 20) - 1) >> 20));
	if (budget - fixed < ctx->buffers_bytes)
		ctx->buffers_bytes = (size_t)(budget - fixed);
	ctx->fixed_bytes = fixed;
	return CB_OK;
}

/*
 * Once the entries are known: the workers' buffers need hold no more than
 * the largest entry each (rounded up to whole MiB), so when every entry is
 * smaller than the plan allowed for, the buffers shrink to that. Streaming,
 * the rest of the budget is reported spare, for parts of the download
 * fetched ahead on more connections. No entry changes how it is extracted:
 * one that was held whole still is (the per-worker limit stays at or above
 * it), and with a bigger one nothing shrinks. Smaller buffers also mean
 * fewer huge pages touched for a few small entries (bigbuf.h).
 */
static void fit_buffers(struct unpack_ctx *ctx)
{
	uint64_t budget = ctx->opts->memory_budget_bytes;
	uint64_t largest = 0, limit, need;
	size_t cpus = usable_cpus();

	for (size_t i = 0; i < ctx->count; i++) {
		const struct unpack_entry *e = &ctx->entries[i];

		if (e->kind != UNPACK_FILE)
			continue;
		if (e->size_bytes > largest)
			largest = e->size_bytes;
		if (e->comp_size_bytes > largest)
			largest = e->comp_size_bytes;
	}
	limit = (largest + UNPACK_WHOLE_MIN_BYTES - 1) / UNPACK_WHOLE_MIN_BYTES *
		UNPACK_WHOLE_MIN_BYTES;
	if (limit < UNPACK_WHOLE_MIN_BYTES)
		limit = UNPACK_WHOLE_MIN_BYTES;
	if (cpus > UNPACK_WORKERS_MAX)
		cpus = UNPACK_WORKERS_MAX;
	need = (uint64_t)cpus * 2 * limit;
	if (limit <= UNPACK_WHOLE_MAX_BYTES && need < ctx->buffers_bytes) {
		cb_log(CB_LOG_DEBUG,
		       "unpack: the largest entry is %llu bytes: %llu KiB of buffers "
		       "rather than %llu KiB",
		       (unsigned long long)largest, (unsigned long long)(need / 1024),
		       (unsigned long long)(ctx->buffers_bytes / 1024));
		ctx->buffers_bytes = (size_t)need;
	}
	if (ctx->avail == NULL)
		return;
	cb_avail_set_spare(ctx->avail, budget == 0 ? UINT64_MAX :
						     budget - ctx->fixed_bytes - ctx->buffers_bytes);
}

/* Everything that needs no libzip: while libzip opens the archive in its own thread. */
static enum cb_status judge_own(struct unpack_ctx *ctx, const struct unpack_cd *cd)
{
	char *arena = ctx->names;
	uint64_t total = 0;
	enum cb_status st;

	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = &ctx->entries[i];
		bool dir_name = false;

		st = check_name(ctx, e, &arena, &dir_name);
		if (st == CB_OK)
			st = check_kind(ctx, e, dir_name);
		if (st != CB_OK)
			return st;
		if (e->kind != UNPACK_DIR) {
			if (e->size_bytes > UINT64_MAX - total)
				total = UINT64_MAX;
			else
				total += e->size_bytes;
		}
	}
	ctx->total_bytes = total;
	/* Before a single byte is written: a bomb must not fill the disk first. */
	if (ctx->opts->max_size_bytes != 0 && total > ctx->opts->max_size_bytes)
		return cb_error_set(ctx->err, CB_E_ZIP, 0,
				    "zip: the entries declare %llu bytes unpacked, more than the cap of "
				    "%llu bytes (--max-size)",
				    (unsigned long long)total,
				    (unsigned long long)ctx->opts->max_size_bytes);
	/* Streaming: local headers are checked as they arrive, before their entry is used. */
	if (ctx->avail != NULL) {
		st = plan_offsets(ctx, cd);
	} else {
		st = check_local_headers(ctx, cd);
		if (st == CB_OK)
			st = check_overlaps(ctx);
	}
	if (st == CB_OK)
		st = check_tree(ctx);
	return st;
}

/* What needs libzip: its view of every entry, then every symlink target (streaming: later, once present). */
static enum cb_status judge_libzip(struct unpack_ctx *ctx)
{
	enum cb_status st;

	for (size_t i = 0; i < ctx->count; i++) {
		st = check_agrees(ctx, &ctx->entries[i]);
		if (st != CB_OK)
			return st;
	}
	/* Read every target first: resolving one may go through another. */
	for (size_t i = 0; i < ctx->count && ctx->avail == NULL; i++) {
		if (ctx->entries[i].kind != UNPACK_SYMLINK)
			continue;
		st = read_link_libzip(ctx, &ctx->entries[i]);
		if (st != CB_OK)
			return st;
	}
	if (ctx->avail == NULL)
		return judge_links(ctx);
	return CB_OK;
}

/*
 * The declared sizes against the free space, evicting older bundles when
 * short. After our own judging (a zip refused by it costs no eviction) and
 * before the first directory is made.
 */
static enum cb_status check_space(struct unpack_ctx *ctx)
{
	enum cb_status st;

	if (ctx->opts->free_bytes != 0) {
		/* Each file also wastes about half a block of the file system on average. */
		uint64_t needed = ctx->total_bytes + (uint64_t)ctx->count * 2048u;
		uint64_t free_bytes = ctx->opts->free_bytes;

		if (needed > free_bytes && ctx->opts->make_room != NULL) {
			st = ctx->opts->make_room(ctx->opts->make_room_ctx, needed, &free_bytes,
						  ctx->err);
			if (st != CB_OK)
				return st;
		}
		if (needed > free_bytes)
			return cb_error_set(ctx->err, CB_E_SPACE, 0,
					    "zip: unpacking needs %llu bytes but only %llu are free in %s; "
					    "free space there or, on Lambda, raise the function's "
					    "ephemeral storage (up to 10240 MB)",
					    (unsigned long long)needed,
					    (unsigned long long)free_bytes, dest_shown(ctx));
	}
	return CB_OK;
}

enum cb_status cb_unpack_zip(const struct cb_unpack_options *opts, struct cb_unpack_result *res,
			     struct cb_error *err)
{
	struct unpack_ctx ctx;
	struct unpack_cd cd;
	struct libzip_opener opener;
	enum cb_status st;

	memset(&ctx, 0, sizeof(ctx));
	memset(&cd, 0, sizeof(cd));
	memset(res, 0, sizeof(*res));
	ctx.opts = opts;
	ctx.res = res;
	ctx.err = err;
	ctx.avail = opts->avail;
	ctx.umask_bits = read_umask();
	ctx.buf = malloc(UNPACK_BUF_BYTES);
	if (ctx.buf == NULL) {
		st = nomem(&ctx);
		goto out;
	}
	st = scan_end(&ctx, &cd);
	if (st == CB_OK)
		st = plan_memory(&ctx, &cd);
	if (st == CB_OK)
		st = scan_central(&ctx, &cd);
	if (st != CB_OK)
		goto out;
	fit_buffers(&ctx);
	ctx.cd_offset = cd.cd_offset;
	ctx.file_size = cd.file_size;
	ctx.by_name = calloc(ctx.count ? ctx.count : 1, sizeof(*ctx.by_name));
	if (ctx.by_name == NULL) {
		st = nomem(&ctx);
		goto out;
	}
	if (ctx.avail != NULL) {
		/* libzip reads the end records from the last bytes: they must be in first. */
		uint64_t window = cd.file_size - cd.prefix_bytes;

		if (window > LIBZIP_TAIL_BYTES)
			window = LIBZIP_TAIL_BYTES;
		st = cb_avail_wait(ctx.avail, cd.file_size - window, cd.file_size, true, ctx.err);
		if (st != CB_OK)
			goto out;
	}
	libzip_open_start(&ctx, &cd, &opener);
	st = judge_own(&ctx, &cd);
	/*
	 * While libzip still parses: the directories, whose names and places
	 * our own judging has checked. Nothing is written into them, and no
	 * symlink made, before libzip agrees; a refusal leaves them in staging,
	 * which is private and emptied.
	 */
	if (st == CB_OK)
		st = check_space(&ctx);
	if (st == CB_OK)
		st = make_tree_dirs(&ctx);
	if (libzip_open_finish(&ctx, &opener) != CB_OK)
		st = opener.st;
	else if (st == CB_OK)
		st = judge_libzip(&ctx);
	if (st == CB_OK)
		st = extract(&ctx);
out:
	close_dir_table(&ctx);
	restore_fd_limit(&ctx);
	if (ctx.za != NULL)
		zip_discard(ctx.za);
	if (ctx.entries != NULL)
		for (size_t i = 0; i < ctx.count; i++)
			free(ctx.entries[i].link_target);
	cb_bigbuf_free(ctx.entries, ctx.entries_bytes);
	free(ctx.by_name);
	free(ctx.dirs);
	cb_bigbuf_free(ctx.names, ctx.names_bytes);
	cb_bigbuf_free(ctx.cd_buf, ctx.cd_buf_bytes);
	free(ctx.buf);
	return st;
}
