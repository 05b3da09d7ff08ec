/*
 * `coldboot pack`: writes a deterministic zip of a folder. Deflate and CRC-32
 * come from bootstrap/inflate.c (zlib's compressor).
 *
 * The zip format is written here by hand (APPNOTE 6.3): one local header and
 * the data for each entry, then the central directory, then (when needed)
 * the zip64 end record and its locator, then the end record. Nothing in it
 * depends on when or where it was made: entries are sorted by name, every
 * time is the DOS epoch, modes are normalised, no extra field but zip64 is
 * written, and the deflate stream depends only on the bytes and zlib.
 *
 * Each local header is written before its data with placeholder sizes and
 * patched once the data is out (a data descriptor would do, but not every
 * reader likes them, and the patch costs nothing). A file that deflate does
 * not shrink is rewritten stored, which also bounds every compressed size by
 * the uncompressed one, so whether a local header needs zip64 is known from
 * the file's size before it is compressed.
 */
#include "pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inflate.h"

#include "verify.h"

#define PACK_BUF_BYTES (1024u * 1024u)
#define PACK_PATH_MAX 4095u       /* bytes in a name or symlink target, as unpack allows */
#define PACK_DEPTH_MAX 256u       /* path components, as unpack allows */
#define PACK_ENTRIES_MAX 1000000u /* as unpack allows */
#define PACK_HOPS_MAX 40u         /* symlinks followed while resolving one target */
#define PACK_DEFLATE_LEVEL 6

#define ZIP_LFH_SIG 0x04034b50u
#define ZIP_CDH_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP_LFH_BYTES 30u
#define ZIP_CDH_BYTES 46u
#define ZIP_EOCD_BYTES 22u
#define ZIP64_EOCD_BYTES 56u
#define ZIP64_LOCATOR_BYTES 20u
#define ZIP64_EXTRA_ID 0x0001u
#define ZIP_U16_MAX 0xffffu
#define ZIP_U32_MAX 0xffffffffu
#define ZIP_METHOD_STORED 0u
#define ZIP_METHOD_DEFLATED 8u
#define ZIP_FLAG_UTF8 0x0800u
#define ZIP_MADE_BY ((3u << 8) | 45u) /* Unix, APPNOTE 4.5 */
#define ZIP_DOS_DATE_1980 0x0021u     /* 1980-01-01 */
#define ZIP_DOS_TIME_MIDNIGHT 0x0000u
#define ZIP_ATTR_DOS_DIR 0x10u

/* Unix file types and modes as zip stores them, whatever the host's headers say. */
#define ZIP_UNIX_IFREG 0100000u
#define ZIP_UNIX_IFDIR 0040000u
#define ZIP_UNIX_IFLNK 0120000u

enum pack_kind {
	PACK_FILE,
	PACK_DIR,
	PACK_SYMLINK,
};

struct pack_entry {
	char *name;   /* relative, '/'-separated; directories end in '/'; owned */
	char *target; /* symlinks: the link's target, owned; else NULL */
	size_t name_len;
	enum pack_kind kind;
	int exec;      /* files: any x bit set */
	uint64_t size; /* files: from lstat; symlinks: target length */
	dev_t dev;
	ino_t ino;
	/* Filled in while writing. */
	uint32_t crc;
	uint64_t csize;
	uint64_t offset;
	unsigned method;
	int zip64_sizes; /* both headers carry the sizes in a zip64 extra */
	int zip64_any;   /* zip64 sizes or offset: both headers say version 4.5 */
};

struct pack_ctx {
	const struct cb_pack_request *req;
	struct cb_pack_result *res;
	struct cb_error *err;
	int root_fd;
	struct pack_entry *entries;
	size_t count;
	size_t cap;
	char walk_path[PACK_PATH_MAX + 2]; /* the folder being walked, relative, ending in '/' */
	char (*hop_bufs)[PACK_PATH_MAX + 1];
	int out_fd;
	char tmp_path[PATH_MAX];
	unsigned char *out_buf; /* bytes not yet written, starting at flushed_pos */
	size_t out_len;
	uint64_t flushed_pos; /* bytes already in the file */
	unsigned char *in_buf;
	struct cb_deflate *deflater;
	uint64_t deflated_bytes; /* output of the entry being deflated */
};

static uint64_t out_pos(const struct pack_ctx *ctx)
{
	return ctx->flushed_pos + ctx->out_len;
}

static enum cb_status write_fail(struct pack_ctx *ctx, int e)
{
	if (e == ENOSPC || e == EDQUOT)
		return cb_error_set(ctx->err, CB_E_SPACE, e, "cannot write %s: %s",
				    ctx->req->out_path, strerror(e));
	return cb_error_set(ctx->err, CB_E_IO, e, "cannot write %s: %s", ctx->req->out_path,
			    strerror(e));
}

static enum cb_status out_flush(struct pack_ctx *ctx)
{
	int saved =
		cb_write_full(ctx->out_fd, ctx->out_buf, ctx->out_len, (int64_t)ctx->flushed_pos);

	if (saved != 0)
		return write_fail(ctx, saved);
	ctx->flushed_pos += ctx->out_len;
	ctx->out_len = 0;
	return CB_OK;
}

static enum cb_status out_write(struct pack_ctx *ctx, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		size_t room = PACK_BUF_BYTES - ctx->out_len;
		size_t n = len < room ? len : room;

		memcpy(ctx->out_buf + ctx->out_len, p, n);
		ctx->out_len += n;
		p += n;
		len -= n;
		if (ctx->out_len == PACK_BUF_BYTES) {
			enum cb_status status = out_flush(ctx);

			if (status != CB_OK)
				return status;
		}
	}
	return CB_OK;
}

/* Overwrites bytes already written at offset, in the file or still in the buffer. */
static enum cb_status out_patch(struct pack_ctx *ctx, uint64_t offset, const void *data, size_t len)
{
	const unsigned char *p = data;

	if (offset + len > out_pos(ctx))
		return cb_error_set(ctx->err, CB_E_IO, 0, "internal error: patch past the end");
	if (offset < ctx->flushed_pos) {
		size_t n =
			(size_t)(ctx->flushed_pos - offset < len ? ctx->flushed_pos - offset : len);
		int saved = cb_write_full(ctx->out_fd, p, n, (int64_t)offset);

		if (saved != 0)
			return write_fail(ctx, saved);
		p += n;
		len -= n;
		offset += n;
	}
	if (len > 0)
		memcpy(ctx->out_buf + (offset - ctx->flushed_pos), p, len);
	return CB_OK;
}

/* Drops everything written from offset on (the deflated data of a file stored instead). */
static enum cb_status out_truncate(struct pack_ctx *ctx, uint64_t offset)
{
	if (offset >= ctx->flushed_pos) {
		ctx->out_len = (size_t)(offset - ctx->flushed_pos);
		return CB_OK;
	}
	ctx->out_len = 0;
	if (ftruncate(ctx->out_fd, (off_t)offset) != 0)
		return write_fail(ctx, errno);
	ctx->flushed_pos = offset;
	return CB_OK;
}

/* Little-endian field writers into a header being assembled. */
static unsigned char *put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v & 0xffu);
	p[1] = (unsigned char)((v >> 8) & 0xffu);
	return p + 2;
}

static unsigned char *put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
	return p + 4;
}

static unsigned char *put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)((v >> (8 * i)) & 0xffu);
	return p + 8;
}

/* ---- collecting the entries ---- */

static enum cb_status add_entry(struct pack_ctx *ctx, const char *name, size_t name_len,
				enum pack_kind kind, const struct stat *st, const char *target)
{
	struct pack_entry *e;

	if (ctx->count >= PACK_ENTRIES_MAX)
		return cb_error_set(ctx->err, CB_E_CONFIG, 0,
				    "%s has more than %u entries, more than coldboot unpacks",
				    ctx->req->src_dir, PACK_ENTRIES_MAX);
	if (ctx->count == ctx->cap) {
		size_t cap = ctx->cap == 0 ? 256 : ctx->cap * 2;
		struct pack_entry *grown = realloc(ctx->entries, cap * sizeof(*grown));

		if (grown == NULL)
			return cb_error_set(ctx->err, CB_E_NOMEM, ENOMEM,
					    "out of memory listing %s", ctx->req->src_dir);
		ctx->entries = grown;
		ctx->cap = cap;
	}
	e = &ctx->entries[ctx->count];
	memset(e, 0, sizeof(*e));
	e->name = malloc(name_len + 1);
	if (target != NULL)
		e->target = strdup(target);
	if (e->name == NULL || (target != NULL && e->target == NULL)) {
		free(e->name);
		free(e->target);
		return cb_error_set(ctx->err, CB_E_NOMEM, ENOMEM, "out of memory listing %s",
				    ctx->req->src_dir);
	}
	memcpy(e->name, name, name_len);
	e->name[name_len] = '\0';
	e->name_len = name_len;
	e->kind = kind;
	e->exec = kind == PACK_FILE && (st->st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0;
	e->size = kind == PACK_FILE ? (uint64_t)st->st_size :
				      (target != NULL ? (uint64_t)strlen(target) : 0);
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	ctx->count++;
	return CB_OK;
}

/*
 * Does the symlink at name (relative to the root) resolve outside the root?
 * Resolves the target the way the kernel will, and the way unpack checks it:
 * ".." pops a directory, a symlink met before the last component is replaced
 * by its own target, a ".." with nothing left to pop leaves the folder.
 * Returns 0 inside, 1 outside, 2 too many levels or too long.
 */
static int link_escapes(struct pack_ctx *ctx, const char *name, const char *target)
{
	struct pending {
		const char *s;
		size_t len;
		size_t pos;
	} work[PACK_HOPS_MAX + 1];
	char path[PACK_PATH_MAX + 1];
	size_t comp_end[PACK_PATH_MAX / 2 + 1];
	size_t depth = 0, path_len = 0, nwork = 1, hops = 0;
	const char *slash = strrchr(name, '/');

	if (target[0] == '/')
		return 1;
	if (slash != NULL) {
		path_len = (size_t)(slash - name);
		memcpy(path, name, path_len);
		for (size_t k = 0; k <= path_len; k++)
			if (k == path_len || path[k] == '/')
				comp_end[depth++] = k;
	}
	work[0].s = target;
	work[0].len = strlen(target);
	work[0].pos = 0;
	while (nwork > 0) {
		struct pending *t = &work[nwork - 1];
		const char *c;
		size_t clen;
		int last = 1;
		struct stat st;

		if (t->pos > t->len) {
			nwork--;
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
				return 1;
			depth--;
			path_len = depth > 0 ? comp_end[depth - 1] : 0;
			continue;
		}
		if (path_len + 1 + clen > PACK_PATH_MAX ||
		    depth >= sizeof(comp_end) / sizeof(comp_end[0]))
			return 2;
		for (size_t k = nwork; k-- > 0;)
			if (work[k].pos <= work[k].len) {
				last = 0;
				break;
			}
		if (depth > 0)
			path[path_len++] = '/';
		memcpy(path + path_len, c, clen);
		path[path_len + clen] = '\0';
		if (!last && fstatat(ctx->root_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISLNK(st.st_mode)) {
				ssize_t n;

				if (depth > 0)
					path_len--;
				if (++hops > PACK_HOPS_MAX)
					return 2;
				n = readlinkat(ctx->root_fd, path, ctx->hop_bufs[hops],
					       PACK_PATH_MAX + 1);
				if (n <= 0 || (size_t)n > PACK_PATH_MAX)
					return 2;
				ctx->hop_bufs[hops][n] = '\0';
				if (ctx->hop_bufs[hops][0] == '/')
					return 1;
				work[nwork].s = ctx->hop_bufs[hops];
				work[nwork].len = (size_t)n;
				work[nwork].pos = 0;
				nwork++;
				continue;
			}
			if (!S_ISDIR(st.st_mode))
				return 0; /* the kernel stops here with ENOTDIR */
		}
		path_len += clen;
		comp_end[depth++] = path_len;
	}
	return 0;
}

static enum cb_status walk_dir(struct pack_ctx *ctx, int dir_fd, size_t prefix_len, unsigned depth);

/* Adds one directory entry found in dir_fd (whose relative path is walk_path[0..prefix_len)). */
static enum cb_status add_child(struct pack_ctx *ctx, int dir_fd, const char *base,
				size_t prefix_len, unsigned depth)
{
	char *path = ctx->walk_path;
	size_t base_len = strlen(base);
	size_t len = prefix_len + base_len;
	char target[PACK_PATH_MAX + 1];
	enum cb_status status = CB_OK;
	struct stat st;
	int child_fd = -1;

	if (len + 1 > PACK_PATH_MAX)
		return cb_error_set(ctx->err, CB_E_CONFIG, 0,
				    "cannot pack %s%.200s...: names longer than %u bytes are refused",
				    path, base, PACK_PATH_MAX);
	memcpy(path + prefix_len, base, base_len + 1);
	if (depth >= PACK_DEPTH_MAX)
		return cb_error_set(ctx->err, CB_E_CONFIG, 0,
				    "cannot pack %.300s: more than %u levels of folders", path,
				    PACK_DEPTH_MAX);
	if (strchr(base, '\\') != NULL)
		return cb_error_set(ctx->err, CB_E_CONFIG, 0,
				    "cannot pack %.300s: a name with a backslash is refused by unpack; "
				    "rename it",
				    path);
	if (prefix_len == 0 && strcmp(base, CB_MARKER_NAME) == 0)
		return cb_error_set(ctx->err, CB_E_CONFIG, 0,
				    "cannot pack %s: the name is reserved for coldboot's marker; "
				    "remove it from %s",
				    CB_MARKER_NAME, ctx->req->src_dir);
	if (fstatat(dir_fd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return cb_error_set(ctx->err, CB_E_IO, errno, "cannot pack %.300s: %s", path,
				    strerror(errno));
	if (S_ISREG(st.st_mode))
		return add_entry(ctx, path, len, PACK_FILE, &st, NULL);
	if (S_ISLNK(st.st_mode)) {
		ssize_t n = readlinkat(dir_fd, base, target, sizeof(target));
		int escapes;

		if (n < 0)
			return cb_error_set(ctx->err, CB_E_IO, errno,
					    "cannot read the symlink %.300s: %s", path,
					    strerror(errno));
		if ((size_t)n >= sizeof(target) || n == 0)
			return cb_error_set(ctx->err, CB_E_CONFIG, 0,
					    "cannot pack the symlink %.300s: its target is empty or "
					    "longer than %u bytes",
					    path, PACK_PATH_MAX);
		target[n] = '\0';
		if (strchr(target, '\\') != NULL)
			return cb_error_set(ctx->err, CB_E_CONFIG, 0,
					    "cannot pack the symlink %.300s: its target has a backslash",
					    path);
		escapes = link_escapes(ctx, path, target);
		if (escapes != 0)
			return cb_error_set(ctx->err, CB_E_CONFIG, 0,
					    "cannot pack the symlink %.300s -> %.300s: %s; coldboot refuses "
					    "such links when unpacking, so replace it with a copy of its "
					    "target or a relative link inside %s",
					    path, target,
					    escapes == 1 ? (target[0] == '/' ?
								    "it is absolute" :
								    "it points outside the folder") :
							   "it has too many levels of symlinks",
					    ctx->req->src_dir);
		return add_entry(ctx, path, len, PACK_SYMLINK, &st, target);
	}
	if (!S_ISDIR(st.st_mode))
		return cb_error_set(ctx->err, CB_E_CONFIG, 0,
				    "cannot pack %.300s: not a file, folder or symlink (a socket, "
				    "FIFO or device); remove it from %s",
				    path, ctx->req->src_dir);

	path[len] = '/';
	path[len + 1] = '\0';
	status = add_entry(ctx, path, len + 1, PACK_DIR, &st, NULL);
	if (status != CB_OK)
		return status;
	child_fd = openat(dir_fd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (child_fd < 0)
		return cb_error_set(ctx->err, CB_E_IO, errno, "cannot open the folder %.300s: %s",
				    path, strerror(errno));
	status = walk_dir(ctx, child_fd, len + 1, depth + 1);
	close(child_fd);
	return status;
}

static enum cb_status walk_dir(struct pack_ctx *ctx, int dir_fd, size_t prefix_len, unsigned depth)
{
	enum cb_status status = CB_OK;
	struct dirent *d;
	DIR *dir;
	int fd = dup(dir_fd);

	if (fd < 0)
		return cb_error_set(ctx->err, CB_E_IO, errno, "cannot list %s: %s",
				    prefix_len > 0 ? ctx->walk_path : ctx->req->src_dir,
				    strerror(errno));
	dir = fdopendir(fd);
	if (dir == NULL) {
		close(fd);
		return cb_error_set(ctx->err, CB_E_IO, errno, "cannot list %s: %s",
				    prefix_len > 0 ? ctx->walk_path : ctx->req->src_dir,
				    strerror(errno));
	}
	for (;;) {
		errno = 0;
		d = readdir(dir);
		if (d == NULL) {
			if (errno != 0)
				status = cb_error_set(ctx->err, CB_E_IO, errno, "cannot list %s: %s",
						      prefix_len > 0 ? ctx->walk_path :
								       ctx->req->src_dir,
						      strerror(errno));
			break;
		}
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		status = add_child(ctx, dir_fd, d->d_name, prefix_len, depth);
		if (status != CB_OK)
			break;
		ctx->walk_path[prefix_len] = '\0';
	}
	closedir(dir);
	return status;
}

static int compare_entries(const void *a, const void *b)
{
	const struct pack_entry *x = a;
	const struct pack_entry *y = b;

	return strcmp(x->name, y->name);
}

/* Leaves the zip out of its own contents when it is written inside the folder. */
static void drop_output(struct pack_ctx *ctx)
{
	struct stat st;

	if (stat(ctx->req->out_path, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	for (size_t i = 0; i < ctx->count; i++) {
		struct pack_entry *e = &ctx->entries[i];

		if (e->kind == PACK_FILE && e->dev == st.st_dev && e->ino == st.st_ino) {
			cb_log(CB_LOG_WARN, "leaving %s out of the bundle: it is the output zip",
			       e->name);
			free(e->name);
			free(e->target);
			memmove(e, e + 1, (ctx->count - i - 1) * sizeof(*e));
			ctx->count--;
			i--;
		}
	}
}

/* ---- writing ---- */

static int name_is_ascii(const struct pack_entry *e)
{
	for (size_t i = 0; i < e->name_len; i++)
		if ((unsigned char)e->name[i] >= 0x80)
			return 0;
	return 1;
}

static unsigned version_needed(const struct pack_entry *e, int zip64)
{
	if (zip64)
		return 45;
	if (e->method == ZIP_METHOD_DEFLATED || e->kind == PACK_DIR)
		return 20;
	return 10;
}

static uint32_t external_attributes(const struct pack_entry *e)
{
	switch (e->kind) {
	case PACK_DIR:
		return ((ZIP_UNIX_IFDIR | 0755u) << 16) | ZIP_ATTR_DOS_DIR;
	case PACK_SYMLINK:
		return (ZIP_UNIX_IFLNK | 0777u) << 16;
	case PACK_FILE:
		break;
	}
	return (ZIP_UNIX_IFREG | (e->exec ? 0755u : 0644u)) << 16;
}

/*
 * The fields the local and the central header share, in the same order:
 * version needed, flags, method, time, date, CRC, sizes, name length.
 */
static unsigned char *put_entry_fields(unsigned char *p, const struct pack_entry *e)
{
	p = put16(p, version_needed(e, e->zip64_any));
	p = put16(p, name_is_ascii(e) ? 0u : ZIP_FLAG_UTF8);
	p = put16(p, e->method);
	p = put16(p, ZIP_DOS_TIME_MIDNIGHT);
	p = put16(p, ZIP_DOS_DATE_1980);
	p = put32(p, e->crc);
	p = put32(p, e->zip64_sizes ? ZIP_U32_MAX : (uint32_t)e->csize);
	p = put32(p, e->zip64_sizes ? ZIP_U32_MAX : (uint32_t)e->size);
	return put16(p, (unsigned)e->name_len);
}

/* The local header (fixed part and zip64 extra) for e as it stands; returns its length. */
static size_t local_header(const struct pack_entry *e, unsigned char *h)
{
	unsigned char *p = h;

	p = put32(p, ZIP_LFH_SIG);
	p = put_entry_fields(p, e);
	p = put16(p, e->zip64_sizes ? 20u : 0u);
	return (size_t)(p - h); /* the name, then the zip64 extra when there is one, follow */
}

static size_t local_zip64_extra(const struct pack_entry *e, unsigned char *x)
{
	unsigned char *p = x;

	p = put16(p, ZIP64_EXTRA_ID);
	p = put16(p, 16);
	p = put64(p, e->size);
	p = put64(p, e->csize);
	return (size_t)(p - x);
}

/* Writes e's local header with what is known now; write_local_final patches it later. */
static enum cb_status write_local(struct pack_ctx *ctx, struct pack_entry *e)
{
	unsigned char h[ZIP_LFH_BYTES];
	unsigned char x[20];
	enum cb_status status;

	e->offset = out_pos(ctx);
	e->zip64_any = e->zip64_sizes || ctx->req->force_zip64 || e->offset >= ZIP_U32_MAX;
	status = out_write(ctx, h, local_header(e, h));
	if (status == CB_OK)
		status = out_write(ctx, e->name, e->name_len);
	if (status == CB_OK && e->zip64_sizes)
		status = out_write(ctx, x, local_zip64_extra(e, x));
	return status;
}

static enum cb_status write_local_final(struct pack_ctx *ctx, const struct pack_entry *e)
{
	unsigned char h[ZIP_LFH_BYTES];
	unsigned char x[20];
	enum cb_status status = out_patch(ctx, e->offset, h, local_header(e, h));

	if (status == CB_OK && e->zip64_sizes)
		status = out_patch(ctx, e->offset + ZIP_LFH_BYTES + e->name_len, x,
				   local_zip64_extra(e, x));
	return status;
}

/* cb_deflate_feed's output goes straight to the zip, counted as the entry's size. */
static enum cb_status emit_deflated(void *ctx_ptr, const void *data, size_t len)
{
	struct pack_ctx *ctx = ctx_ptr;

	ctx->deflated_bytes += len;
	return out_write(ctx, data, len);
}

/*
 * Copies the whole file into the output, deflated or stored, and checks that
 * it has exactly the size lstat gave. *whole_in_buf says whether in_buf still
 * holds all of it afterwards (one read took it all).
 */
static enum cb_status copy_file(struct pack_ctx *ctx, struct pack_entry *e, int fd, int deflating,
				int *whole_in_buf)
{
	uint64_t done = 0;
	uint32_t crc = 0;
	unsigned reads = 0;
	int grew = 0;
	enum cb_status status;

	ctx->deflated_bytes = 0;
	if (deflating) {
		status = cb_deflate_reset(ctx->deflater, ctx->err);
		if (status != CB_OK)
			return status;
	}
	for (;;) {
		ssize_t n = read(fd, ctx->in_buf, PACK_BUF_BYTES);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cb_error_set(ctx->err, CB_E_IO, errno, "cannot read %s/%s: %s",
					    ctx->req->src_dir, e->name, strerror(errno));
		if (n == 0)
			break;
		if ((uint64_t)n > e->size - done) {
			grew = 1;
			break;
		}
		reads++;
		crc = cb_inflate_crc32(crc, ctx->in_buf, (size_t)n);
		done += (uint64_t)n;
		if (deflating)
			status = cb_deflate_feed(ctx->deflater, ctx->in_buf, (size_t)n, false,
						 emit_deflated, ctx, ctx->err);
		else
			status = out_write(ctx, ctx->in_buf, (size_t)n);
		if (status != CB_OK)
			return status;
	}
	if (grew || done != e->size)
		return cb_error_set(ctx->err, CB_E_IO, 0,
				    "%s/%s changed while it was being packed; pack again when "
				    "nothing writes to the folder",
				    ctx->req->src_dir, e->name);
	if (deflating) {
		status = cb_deflate_feed(ctx->deflater, NULL, 0, true, emit_deflated, ctx, ctx->err);
		if (status != CB_OK)
			return status;
	}
	e->crc = crc;
	e->csize = deflating ? ctx->deflated_bytes : e->size;
	*whole_in_buf = reads <= 1;
	return CB_OK;
}

static enum cb_status write_file_entry(struct pack_ctx *ctx, struct pack_entry *e)
{
	enum cb_status status;
	uint64_t data_start;
	int whole_in_buf = 0;
	int fd;

	fd = openat(ctx->root_fd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return cb_error_set(ctx->err, CB_E_IO, errno, "cannot open %s/%s: %s",
				    ctx->req->src_dir, e->name, strerror(errno));
	e->method = ZIP_METHOD_DEFLATED;
	e->zip64_sizes = ctx->req->force_zip64 || e->size >= ZIP_U32_MAX;
	status = write_local(ctx, e);
	if (status != CB_OK)
		goto out;
	data_start = out_pos(ctx);
	status = copy_file(ctx, e, fd, 1, &whole_in_buf);
	if (status != CB_OK)
		goto out;
	if (e->csize >= e->size) {
		/* Deflate did not help: store it, so csize never exceeds size. */
		uint32_t crc = e->crc;

		status = out_truncate(ctx, data_start);
		if (status != CB_OK)
			goto out;
		e->method = ZIP_METHOD_STORED;
		if (whole_in_buf) {
			status = out_write(ctx, ctx->in_buf, (size_t)e->size);
			e->csize = e->size;
		} else if (lseek(fd, 0, SEEK_SET) != 0) {
			status = cb_error_set(ctx->err, CB_E_IO, errno, "cannot reread %s/%s: %s",
					      ctx->req->src_dir, e->name, strerror(errno));
		} else {
			status = copy_file(ctx, e, fd, 0, &whole_in_buf);
			if (status == CB_OK && e->crc != crc)
				status = cb_error_set(ctx->err, CB_E_IO, 0,
						      "%s/%s changed while it was being packed",
						      ctx->req->src_dir, e->name);
		}
		if (status != CB_OK)
			goto out;
	}
	status = write_local_final(ctx, e);
	ctx->res->files++;
	ctx->res->input_bytes += e->size;
out:
	close(fd);
	return status;
}

static enum cb_status write_other_entry(struct pack_ctx *ctx, struct pack_entry *e)
{
	enum cb_status status;

	e->method = ZIP_METHOD_STORED;
	e->zip64_sizes = ctx->req->force_zip64;
	if (e->kind == PACK_SYMLINK) {
		e->crc = cb_inflate_crc32(0, e->target, (size_t)e->size);
		e->csize = e->size;
		ctx->res->symlinks++;
	} else {
		ctx->res->dirs++;
	}
	status = write_local(ctx, e);
	if (status == CB_OK && e->kind == PACK_SYMLINK)
		status = out_write(ctx, e->target, (size_t)e->size);
	return status;
}

static enum cb_status write_central(struct pack_ctx *ctx, const struct pack_entry *e)
{
	unsigned char h[ZIP_CDH_BYTES];
	unsigned char x[4 + 24];
	unsigned char *p = h;
	unsigned char *q = x + 4;
	int big_offset = ctx->req->force_zip64 || e->offset >= ZIP_U32_MAX;
	size_t extra_len;
	enum cb_status status;

	if (e->zip64_sizes) {
		q = put64(q, e->size);
		q = put64(q, e->csize);
	}
	if (big_offset)
		q = put64(q, e->offset);
	extra_len = q > x + 4 ? (size_t)(q - x) : 0;
	put16(x, ZIP64_EXTRA_ID);
	put16(x + 2, (unsigned)(q - x - 4));

	p = put32(p, ZIP_CDH_SIG);
	p = put16(p, ZIP_MADE_BY);
	p = put_entry_fields(p, e);
	p = put16(p, (unsigned)extra_len);
	p = put16(p, 0); /* comment */
	p = put16(p, 0); /* disk */
	p = put16(p, 0); /* internal attributes */
	p = put32(p, external_attributes(e));
	put32(p, big_offset ? ZIP_U32_MAX : (uint32_t)e->offset);
	status = out_write(ctx, h, sizeof(h));
	if (status == CB_OK)
		status = out_write(ctx, e->name, e->name_len);
	if (status == CB_OK && extra_len > 0)
		status = out_write(ctx, x, extra_len);
	return status;
}

static enum cb_status write_end(struct pack_ctx *ctx, uint64_t cd_offset, uint64_t cd_size)
{
	unsigned char z[ZIP64_EOCD_BYTES + ZIP64_LOCATOR_BYTES];
	unsigned char h[ZIP_EOCD_BYTES];
	unsigned char *p;
	uint64_t count = ctx->count;
	int zip64 = ctx->req->force_zip64 || count >= ZIP_U16_MAX || cd_offset >= ZIP_U32_MAX ||
		    cd_size >= ZIP_U32_MAX;
	enum cb_status status;

	if (zip64) {
		uint64_t end64_offset = out_pos(ctx);

		ctx->res->zip64 = 1;
		p = z;
		p = put32(p, ZIP64_EOCD_SIG);
		p = put64(p, ZIP64_EOCD_BYTES - 12);
		p = put16(p, ZIP_MADE_BY);
		p = put16(p, 45);
		p = put32(p, 0); /* this disk */
		p = put32(p, 0); /* the central directory's disk */
		p = put64(p, count);
		p = put64(p, count);
		p = put64(p, cd_size);
		p = put64(p, cd_offset);
		p = put32(p, ZIP64_LOCATOR_SIG);
		p = put32(p, 0);
		p = put64(p, end64_offset);
		put32(p, 1); /* disks */
		status = out_write(ctx, z, sizeof(z));
		if (status != CB_OK)
			return status;
	}
	p = h;
	p = put32(p, ZIP_EOCD_SIG);
	p = put16(p, 0);
	p = put16(p, 0);
	p = put16(p, zip64 && (ctx->req->force_zip64 || count >= ZIP_U16_MAX) ? ZIP_U16_MAX :
										(unsigned)count);
	p = put16(p, zip64 && (ctx->req->force_zip64 || count >= ZIP_U16_MAX) ? ZIP_U16_MAX :
										(unsigned)count);
	p = put32(p, zip64 && (ctx->req->force_zip64 || cd_size >= ZIP_U32_MAX) ? ZIP_U32_MAX :
										  (uint32_t)cd_size);
	p = put32(p, zip64 && (ctx->req->force_zip64 || cd_offset >= ZIP_U32_MAX) ?
			     ZIP_U32_MAX :
			     (uint32_t)cd_offset);
	put16(p, 0); /* comment */
	return out_write(ctx, h, sizeof(h));
}

static enum cb_status write_zip(struct pack_ctx *ctx)
{
	enum cb_status status = CB_OK;
	uint64_t cd_offset;

	for (size_t i = 0; i < ctx->count && status == CB_OK; i++) {
		struct pack_entry *e = &ctx->entries[i];

		if (e->kind == PACK_FILE)
			status = write_file_entry(ctx, e);
		else
			status = write_other_entry(ctx, e);
		if (e->zip64_sizes || e->offset >= ZIP_U32_MAX)
			ctx->res->zip64 = 1;
	}
	if (status != CB_OK)
		return status;
	cd_offset = out_pos(ctx);
	for (size_t i = 0; i < ctx->count && status == CB_OK; i++)
		status = write_central(ctx, &ctx->entries[i]);
	if (status == CB_OK)
		status = write_end(ctx, cd_offset, out_pos(ctx) - cd_offset);
	if (status == CB_OK)
		status = out_flush(ctx);
	return status;
}

static enum cb_status open_output(struct pack_ctx *ctx)
{
	mode_t mask;

	if (snprintf(ctx->tmp_path, sizeof(ctx->tmp_path), "%s.tmp-XXXXXX", ctx->req->out_path) >=
	    (int)sizeof(ctx->tmp_path))
		return cb_error_set(ctx->err, CB_E_CONFIG, 0, "the output path %s is too long",
				    ctx->req->out_path);
	ctx->out_fd = mkstemp(ctx->tmp_path);
	if (ctx->out_fd < 0) {
		int e = errno;

		ctx->tmp_path[0] = '\0';
		return cb_error_set(ctx->err, e == ENOSPC ? CB_E_SPACE : CB_E_IO, e,
				    "cannot create %s: %s", ctx->req->out_path, strerror(e));
	}
	/* mkstemp makes it 0600; a zip to upload is an ordinary file. */
	mask = umask(022);
	umask(mask);
	if (fchmod(ctx->out_fd, 0644 & ~mask) != 0)
		return write_fail(ctx, errno);
	return CB_OK;
}

static void free_entries(struct pack_ctx *ctx)
{
	for (size_t i = 0; i < ctx->count; i++) {
		free(ctx->entries[i].name);
		free(ctx->entries[i].target);
	}
	free(ctx->entries);
	ctx->entries = NULL;
	ctx->count = ctx->cap = 0;
}

enum cb_status cb_pack_run(const struct cb_pack_request *req, struct cb_pack_result *res,
			   struct cb_error *err)
{
	struct pack_ctx ctx;
	enum cb_status status = CB_OK;
	struct stat st;

	memset(res, 0, sizeof(*res));
	memset(&ctx, 0, sizeof(ctx));
	ctx.req = req;
	ctx.res = res;
	ctx.err = err;
	ctx.root_fd = -1;
	ctx.out_fd = -1;

	ctx.root_fd = open(req->src_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ctx.root_fd < 0) {
		status = cb_error_set(err, CB_E_CONFIG, errno, "cannot pack %s: %s", req->src_dir,
				      errno == ENOTDIR ? "not a folder" : strerror(errno));
		goto out;
	}
	ctx.out_buf = malloc(PACK_BUF_BYTES);
	ctx.in_buf = malloc(PACK_BUF_BYTES);
	ctx.hop_bufs = malloc((PACK_HOPS_MAX + 1) * sizeof(*ctx.hop_bufs));
	if (ctx.out_buf == NULL || ctx.in_buf == NULL || ctx.hop_bufs == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, ENOMEM, "out of memory");
		goto out;
	}
	ctx.deflater = cb_deflate_new(PACK_DEFLATE_LEVEL);
	if (ctx.deflater == NULL) {
		status = cb_error_set(err, CB_E_NOMEM, ENOMEM, "cannot start deflate");
		goto out;
	}

	ctx.walk_path[0] = '\0';
	status = walk_dir(&ctx, ctx.root_fd, 0, 0);
	if (status != CB_OK)
		goto out;
	drop_output(&ctx);
	qsort(ctx.entries, ctx.count, sizeof(*ctx.entries), compare_entries);

	status = open_output(&ctx);
	if (status != CB_OK)
		goto out;
	status = write_zip(&ctx);
	if (status != CB_OK)
		goto out;
	if (fstat(ctx.out_fd, &st) != 0) {
		status = write_fail(&ctx, errno);
		goto out;
	}
	res->zip_bytes = (uint64_t)st.st_size;
	if (close(ctx.out_fd) != 0) {
		ctx.out_fd = -1;
		status = write_fail(&ctx, errno);
		goto out;
	}
	ctx.out_fd = -1;
	status = cb_verify_hash_file(ctx.tmp_path, CB_HASH_XXH3_128, &res->checksum, err);
	if (status != CB_OK)
		goto out;
	if (rename(ctx.tmp_path, req->out_path) != 0) {
		status = cb_error_set(err, CB_E_IO, errno,
				      "cannot move the zip into place at %s: %s", req->out_path,
				      strerror(errno));
		goto out;
	}
	ctx.tmp_path[0] = '\0';
out:
	if (ctx.out_fd >= 0)
		close(ctx.out_fd);
	if (ctx.tmp_path[0] != '\0')
		unlink(ctx.tmp_path);
	cb_deflate_destroy(ctx.deflater);
	if (ctx.root_fd >= 0)
		close(ctx.root_fd);
	free_entries(&ctx);
	free(ctx.out_buf);
	free(ctx.in_buf);
	free(ctx.hop_bufs);
	return status;
}
