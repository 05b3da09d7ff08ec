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
 *      inflated by libdeflate into a reused buffer (ISA-L, a slice at a
 *      time, for entries bigger than a thread's buffers, which go first),
 *      the size and CRC checked from those bytes, each file created with
 *      O_EXCL and O_NOFOLLOW under its directory's fd, with its mode, and
 *      written in one write; methods other than stored and deflate through
 *      libzip in this thread, before the workers start;
 *   6. symlinks last, so no entry is ever written through one.
 *
 * Passes 4 and 5 are unpack_dirs.c's and unpack_files.c's; unpack_int.h is
 * what the three share. docs/security.md ("What the extractor enforces, and
 * why") lists the rules.
 */
#include "unpack_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <zip.h>

#include "bigbuf.h"
#include "helper_heap.h"

_Static_assert(UNPACK_METHOD_STORE == ZIP_CM_STORE && UNPACK_METHOD_DEFLATE == ZIP_CM_DEFLATE,
	       "zip's method numbers");

#define ZIP_EOCD_BYTES 22u
#define ZIP_EOCD_COMMENT_MAX 65535u
#define ZIP64_LOCATOR_BYTES 20u
#define ZIP64_EOCD_BYTES 56u
#define ZIP_CDR_BYTES 46u
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
const char *unpack_show_name(const unsigned char *name, size_t len, char *out, size_t out_size)
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
	unpack_show_name(name, len, shown, sizeof(shown));
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

enum cb_status unpack_refuse_entry(struct unpack_ctx *ctx, const struct unpack_entry *e,
				   const char *rule)
{
	return refuse(ctx, e->raw_name, e->raw_name_len, "%s", rule);
}

const char *unpack_dest_shown(const struct unpack_ctx *ctx)
{
	return ctx->opts->dest_path != NULL ? ctx->opts->dest_path : "the destination";
}

enum cb_status unpack_entry_error_to(struct cb_error *err, enum cb_status code, int saved,
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
enum cb_status unpack_sys_fail_to(struct cb_error *err, const char *dest,
				  const struct unpack_entry *e, int saved, const char *what)
{
	enum cb_status code = CB_E_IO;

	if (saved == EEXIST)
		return unpack_entry_error_to(err, CB_E_IO, saved, e,
					     "already exists in %s (the destination must be empty)",
					     dest);
	if (saved == ENOSPC || saved == EDQUOT)
		code = CB_E_SPACE;
	else if (saved == ENOMEM)
		code = CB_E_NOMEM;
	return unpack_entry_error_to(err, code, saved, e, "cannot %s in %s: %s", what, dest,
				     strerror(saved));
}

static enum cb_status sys_fail(struct unpack_ctx *ctx, const struct unpack_entry *e, int saved,
			       const char *what)
{
	return unpack_sys_fail_to(ctx->err, unpack_dest_shown(ctx), e, saved, what);
}

enum cb_status unpack_nomem(struct unpack_ctx *ctx)
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
		return unpack_nomem(ctx);
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
		return unpack_nomem(ctx);
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
		return unpack_refuse_entry(ctx, e, "encrypted entries are not supported");
	if (!(zs.valid & ZIP_STAT_SIZE) || !(zs.valid & ZIP_STAT_COMP_SIZE) ||
	    !(zs.valid & ZIP_STAT_CRC) || !(zs.valid & ZIP_STAT_COMP_METHOD) ||
	    zs.size != e->size_bytes || zs.comp_size != e->comp_size_bytes || zs.crc != e->crc ||
	    zs.comp_method != e->method)
		return unpack_refuse_entry(
			ctx, e,
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
		return unpack_refuse_entry(ctx, e, "empty name");
	if (memchr(n, '\0', len) != NULL)
		return unpack_refuse_entry(ctx, e, "name contains a NUL byte");
	if (memchr(n, '\\', len) != NULL)
		return unpack_refuse_entry(ctx, e, "name contains a backslash");
	if (n[0] == '/')
		return unpack_refuse_entry(ctx, e, "absolute name");
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
			return unpack_refuse_entry(ctx, e, "empty path component (\"//\")");
		if (clen == 1 && n[start] == '.')
			return unpack_refuse_entry(ctx, e, "\".\" path component");
		if (clen == 2 && n[start] == '.' && n[start + 1] == '.')
			return unpack_refuse_entry(ctx, e, "name escapes the bundle (\"..\")");
		if (clen > UNPACK_NAME_MAX)
			return refuse(ctx, n, e->raw_name_len,
				      "path component longer than %u bytes", UNPACK_NAME_MAX);
		if (++components > UNPACK_DEPTH_MAX)
			return refuse(ctx, n, e->raw_name_len, "more than %u path components",
				      UNPACK_DEPTH_MAX);
		if (start == 0 && clen == sizeof(CB_MARKER_NAME) - 1 &&
		    memcmp(n, CB_MARKER_NAME, clen) == 0)
			return unpack_refuse_entry(ctx, e,
						   "name collides with the marker \"" CB_MARKER_NAME
						   "\"");
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
				return unpack_refuse_entry(ctx, e,
							   "name ends in \"/\" but its mode is a regular file");
			break;
		case ZIP_UNIX_IFLNK:
			if (dir_name)
				return unpack_refuse_entry(ctx, e,
							   "name ends in \"/\" but its mode is a symlink");
			e->kind = UNPACK_SYMLINK;
			break;
		case ZIP_UNIX_IFCHR:
			return unpack_refuse_entry(ctx, e, "character device entries are refused");
		case ZIP_UNIX_IFBLK:
			return unpack_refuse_entry(ctx, e, "block device entries are refused");
		case ZIP_UNIX_IFIFO:
			return unpack_refuse_entry(ctx, e, "FIFO entries are refused");
		case ZIP_UNIX_IFSOCK:
			return unpack_refuse_entry(ctx, e, "socket entries are refused");
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
		if (e->size_bytes != 0 ||
		    (e->method == UNPACK_METHOD_STORE && e->comp_size_bytes != 0))
			return unpack_refuse_entry(ctx, e, "directory entry carries data");
		break;
	case UNPACK_SYMLINK:
		if (e->size_bytes == 0)
			return unpack_refuse_entry(ctx, e, "symlink with an empty target");
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
		return unpack_entry_error_to(err, CB_E_ZIP, 0, e, "no local header at its offset");
	if (rd16(h + 8) != e->method || ((rd16(h + 6) ^ e->flags) & ZIP_FLAG_ENCRYPTED) != 0)
		return unpack_entry_error_to(
			err, CB_E_ZIP, 0, e,
			"local header and central directory disagree on method or encryption");
	if (rd16(h + 26) != e->raw_name_len ||
	    memcmp(h + ZIP_LFH_BYTES, e->raw_name, e->raw_name_len) != 0)
		return unpack_entry_error_to(err, CB_E_ZIP, 0, e,
					     "local header and central directory disagree on the name");
	data_start = e->local_offset + want + rd16(h + 28);
	if (data_start > cd_offset || cd_offset - data_start < e->comp_size_bytes)
		return unpack_entry_error_to(err, CB_E_ZIP, 0, e,
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
		return unpack_refuse_entry(ctx, e, "local header lies outside the archive's data");
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
			      unpack_show_name(a->raw_name, a->raw_name_len, shown, sizeof(shown)));
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
				      unpack_show_name(a->raw_name, a->raw_name_len, shown,
						       sizeof(shown)));
	}
	return CB_OK;
}

/*
 * Streaming: what the central directory alone says of the local headers (by
 * the same rules as check_local_headers and check_overlaps), and, for each
 * entry, where the next one starts: its local header is checked against that
 * once its bytes arrive (unpack_check_header_now). by_name is borrowed, as there.
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
enum cb_status unpack_pread_at(const struct unpack_ctx *ctx, const struct unpack_entry *e,
			       unsigned char *buf, size_t len, uint64_t offset, const char *what,
			       struct cb_error *err)
{
	int saved = cb_read_full(ctx->opts->zip_fd, buf, len, offset);

	if (saved > 0)
		return unpack_entry_error_to(err, CB_E_IO, saved, e,
					     "cannot read %s from the archive: %s", what,
					     strerror(saved));
	if (saved < 0)
		return unpack_entry_error_to(err, CB_E_ZIP, 0, e, "the archive ends inside %s",
					     what);
	return CB_OK;
}

/* Streaming: the local header h against the central directory, its data against the next entry. */
enum cb_status unpack_check_header_in(const struct unpack_ctx *ctx, struct unpack_entry *e,
				      const unsigned char *h, struct cb_error *err)
{
	char shown[UNPACK_SHOWN_NAME_MAX];
	enum cb_status st;

	st = check_local_header(err, e, ctx->cd_offset, h);
	if (st != CB_OK)
		return st;
	if (e->data_end > e->next_offset && e->next != NULL)
		return unpack_entry_error_to(err, CB_E_ZIP, 0, e->next,
					     "overlaps the data of entry \"%s\"",
					     unpack_show_name(e->raw_name, e->raw_name_len, shown,
							      sizeof(shown)));
	e->header_checked = true;
	return CB_OK;
}

/*
 * Streaming: the entry's local header, once its bytes are in, against the
 * central directory, and its data against the next entry. buf holds at least
 * UNPACK_BUF_BYTES. Any thread; errors go to err.
 */
enum cb_status unpack_check_header_now(const struct unpack_ctx *ctx, struct unpack_entry *e,
				       unsigned char *buf, struct cb_error *err)
{
	size_t want = ZIP_LFH_BYTES + e->raw_name_len;
	enum cb_status st;

	st = cb_avail_wait(ctx->avail, e->local_offset, e->local_offset + want, false, err);
	if (st == CB_OK)
		st = unpack_pread_at(ctx, e, buf, want, e->local_offset, "it", err);
	if (st != CB_OK)
		return st;
	return unpack_check_header_in(ctx, e, buf, err);
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
size_t unpack_lower_bound(const struct unpack_ctx *ctx, const char *key, size_t len)
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
	i = unpack_lower_bound(ctx, path, len);
	if (i < ctx->count && cmp_key(ctx->by_name[i]->name, path, len) == 0) {
		*found = ctx->by_name[i];
		return (*found)->kind;
	}
	memcpy(key, path, len);
	key[len] = '/';
	i = unpack_lower_bound(ctx, key, len + 1);
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
			      unpack_show_name(a->raw_name, a->raw_name_len, shown, sizeof(shown)));
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
					      unpack_show_name((const unsigned char *)anc->name,
							       anc->name_len, shown, sizeof(shown)),
					      kind_name(anc->kind));
		}
		good_len = parent_len;
	}
	return CB_OK;
}

static const char *show_target(const struct unpack_entry *link, char *out, size_t out_size)
{
	return unpack_show_name((const unsigned char *)link->link_target, strlen(link->link_target),
				out, out_size);
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
		return unpack_refuse_entry(ctx, e, "CRC mismatch (the data is corrupt)");
	case ZIP_ER_INCONS:
		return unpack_refuse_entry(ctx, e, "data does not match its declared size");
	case ZIP_ER_MEMORY:
		return unpack_nomem(ctx);
	default:
		return refuse(ctx, e->raw_name, e->raw_name_len, "cannot read its data: %s",
			      zip_error_strerror(ze));
	}
}

enum cb_status unpack_write_all(struct cb_error *err, const char *dest, const struct unpack_entry *e,
				int fd, const unsigned char *p, size_t len)
{
	int saved = cb_write_full(fd, p, len, -1);

	return saved == 0 ? CB_OK : unpack_sys_fail_to(err, dest, e, saved, "write");
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
			st = unpack_refuse_entry(ctx, e, "data shorter than its declared size");
			goto out;
		}
		if (fd >= 0) {
			st = unpack_write_all(ctx->err, unpack_dest_shown(ctx), e, fd, dst,
					      (size_t)n);
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
		st = unpack_refuse_entry(ctx, e, "data inflates past its declared size");
out:
	zip_fclose(zf);
	return st;
}

/* ---- 6. what the main thread writes itself ---- */

/* A method other than stored or deflate: through libzip, in this thread only. */
static enum cb_status write_libzip_file(struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
					const struct unpack_entry *e)
{
	int fd = -1;
	enum cb_status st;

	st = unpack_create_file(ctx, cache, ctx->err, e, &fd);
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

	st = unpack_open_dir_id(ctx, cache, ctx->err, e, e->dir_id, &dir_fd);
	if (st != CB_OK)
		return st;
	if (symlinkat(e->link_target, dir_fd, unpack_base_name(e)) != 0)
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

		if (e->kind == UNPACK_FILE && unpack_is_fast_method(e)) {
			nfiles++;
			nbigs += unpack_is_big(e, limit_bytes);
		}
	}
	files = malloc((nfiles ? nfiles : 1) * sizeof(*files));
	if (files == NULL)
		return unpack_nomem(ctx);
	s = nbigs;
	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = ctx->by_name[i];

		if (e->kind == UNPACK_FILE && unpack_is_fast_method(e)) {
			if (unpack_is_big(e, limit_bytes))
				files[b++] = e;
			else
				files[s++] = e;
		}
	}
	qsort(files, nbigs, sizeof(*files), cmp_size_down);
	/* Consuming the zip wants each stream of chunks to walk one stretch of it. */
	if (ctx->opts->consume_zip)
		unpack_sort_by_local_offset(files + nbigs, nfiles - nbigs);
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
			return unpack_refuse_entry(ctx, e, "symlink target contains a NUL byte");
		if (e->link_target[0] == '/')
			return refuse(ctx, e->raw_name, e->raw_name_len,
				      "symlink target \"%s\" is absolute",
				      show_target(e, shown, sizeof(shown)));
		if (strchr(e->link_target, '\\') != NULL)
			return unpack_refuse_entry(ctx, e, "symlink target contains a backslash");
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
		return unpack_nomem(ctx);
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
		return unpack_nomem(ctx);
	for (size_t i = 0; i < ctx->count; i++) {
		struct unpack_entry *e = &ctx->entries[i];

		if (e->kind == UNPACK_DIR || unpack_is_fast_method(e))
			files[n++] = e;
	}
	unpack_sort_by_local_offset(files, n);
	*files_out = files;
	*count_out = n;
	return CB_OK;
}

/* What only libzip reads (other methods), in this thread, before the workers. */
static bool needs_libzip(const struct unpack_ctx *ctx, const struct unpack_entry *e)
{
	if (unpack_is_fast_method(e))
		return false;
	/* Not streaming, symlink targets were read while judging. */
	return e->kind == UNPACK_FILE || (ctx->avail != NULL && e->kind == UNPACK_SYMLINK);
}

/* The regular files the workers write (stored or deflated; libzip does the others). */
static size_t count_fast_files(const struct unpack_ctx *ctx)
{
	size_t n = 0;

	for (size_t i = 0; i < ctx->count; i++)
		if (ctx->entries[i].kind == UNPACK_FILE && unpack_is_fast_method(&ctx->entries[i]))
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

	st = unpack_plan_dirs(ctx);
	if (st != CB_OK)
		return st;
	ctx->workers = unpack_worker_count(ctx, count_fast_files(ctx));
	if (unpack_room_for_dir_table(ctx, ctx->workers)) {
		ctx->dir_fds = malloc(ctx->ndirs * sizeof(*ctx->dir_fds));
		if (ctx->dir_fds != NULL) {
			ctx->dir_fds[0] = ctx->opts->dest_fd;
			for (size_t i = 1; i < ctx->ndirs; i++)
				ctx->dir_fds[i] = -1;
		}
	}
	if (ctx->dir_fds != NULL && ctx->workers > 1 && ctx->ndirs > UNPACK_PARALLEL_DIRS_MIN)
		st = unpack_make_dirs_parallel(ctx, ctx->workers, &out_of_fds);
	else
		st = unpack_make_dirs(ctx, &out_of_fds);
	if (st != CB_OK && out_of_fds) {
		/* Descriptors are short after all: without the table, from the start. */
		unpack_close_dir_table(ctx);
		cb_error_init(ctx->err);
		st = unpack_make_dirs(ctx, &out_of_fds);
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

	limit_bytes = unpack_buffer_limit(ctx, workers);
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
			st = unpack_check_header_now(ctx, e, ctx->buf, ctx->err);
		if (st == CB_OK)
			st = e->kind == UNPACK_FILE ? write_libzip_file(ctx, &cache, e) :
						      read_link_libzip(ctx, e);
	}
	libzip_release_start(ctx, &release);
	if (st == CB_OK && nfiles > 0)
		st = unpack_write_files(ctx, files, nbigs, nfiles, workers, limit_bytes);
	if (st == CB_OK && ctx->avail != NULL) {
		/* Every local header was checked on the way; the targets are all in. */
		for (size_t i = 0; i < ctx->count && st == CB_OK; i++)
			if (!ctx->entries[i].header_checked)
				st = unpack_refuse_entry(ctx, &ctx->entries[i],
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
	/*
	 * With such a budget the heap comes in huge pages (helper_heap.h), whose
	 * rounding is counted; an archive that leaves no room for it turns them
	 * off instead, and gets the budget it would have had without them.
	 */
	if (budget >= CB_HELPER_TUNED_BUDGET_MIN) {
		if (budget - need >= CB_HELPER_TUNED_HEAP_BYTES)
			fixed += CB_HELPER_TUNED_HEAP_BYTES;
		else
			(void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	}
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
	size_t cpus = unpack_usable_cpus();

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
					    (unsigned long long)free_bytes, unpack_dest_shown(ctx));
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
		st = unpack_nomem(&ctx);
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
		st = unpack_nomem(&ctx);
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
	unpack_close_dir_table(&ctx);
	unpack_restore_fd_limit(&ctx);
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
