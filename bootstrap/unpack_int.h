/*
 * What the extractor's files share (see unpack.c for the passes): the
 * entries as the scan found them, the job's context, the limits, and the
 * helpers each file uses from the others. Not for other files: unpack.h is
 * the interface. Only unpack.c includes zip.h.
 *
 *   unpack.c        1-3 scan and judge every entry, 6 symlinks, the whole job
 *   unpack_dirs.c   4 every directory, and the table of their fds
 *   unpack_files.c  5 regular files, by worker threads
 */
#ifndef CB_UNPACK_INT_H
#define CB_UNPACK_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "unpack.h"

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
#define UNPACK_PARALLEL_DIRS_MIN 256u /* fewer: unpack_make_dirs in one thread */
_Static_assert(UNPACK_STREAM_IN_BYTES <= UNPACK_WHOLE_MIN_BYTES &&
		       UNPACK_STREAM_OUT_BYTES <= UNPACK_WHOLE_MIN_BYTES,
	       "a streamed chunk fits a worker's buffers");

/* Compression methods as zip numbers them (APPNOTE 4.4.5); unpack.c checks them against zip.h. */
#define UNPACK_METHOD_STORE 0u
#define UNPACK_METHOD_DEFLATE 8u
#define ZIP_LFH_BYTES 30u /* a local file header, without its name and extra field */

struct zip;

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
	struct zip *za;         /* libzip's view, unpack.c only */
	unsigned char *cd_buf;  /* cd_buf_bytes, from cb_bigbuf_alloc as entries and names */
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

/* ---- unpack.c: messages, reads, local headers, lookups ---- */

/* `entry "<name>": ...` into err, from any thread. */
enum cb_status unpack_entry_error_to(struct cb_error *err, enum cb_status code, int saved,
				     const struct unpack_entry *e, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/*
 * Quotes a name for a message on one line: printable ASCII as is, anything
 * else (and '"' and '\\') as \xNN, cut with "..." when long.
 */
const char *unpack_show_name(const unsigned char *name, size_t len, char *out, size_t out_size);

/* Refuses the entry with rule: CB_E_ZIP, in ctx->err. */
enum cb_status unpack_refuse_entry(struct unpack_ctx *ctx, const struct unpack_entry *e,
				   const char *rule);

/* The destination as messages name it. */
const char *unpack_dest_shown(const struct unpack_ctx *ctx);

/* A failed system call while writing an entry: space, memory or I/O. */
enum cb_status unpack_sys_fail_to(struct cb_error *err, const char *dest,
				  const struct unpack_entry *e, int saved, const char *what);

/* Out of memory, in ctx->err: CB_E_NOMEM. */
enum cb_status unpack_nomem(struct unpack_ctx *ctx);

/*
 * Reads len bytes of the zip at offset for entry e; what names them in
 * messages ("it": its local header and maybe its data; "its data").
 */
enum cb_status unpack_pread_at(const struct unpack_ctx *ctx, const struct unpack_entry *e,
			       unsigned char *buf, size_t len, uint64_t offset, const char *what,
			       struct cb_error *err);

/* Streaming: the local header h against the central directory, its data against the next entry. */
enum cb_status unpack_check_header_in(const struct unpack_ctx *ctx, struct unpack_entry *e,
				      const unsigned char *h, struct cb_error *err);

/*
 * Streaming: the entry's local header, once its bytes are in, against the
 * central directory, and its data against the next entry. buf holds at least
 * UNPACK_BUF_BYTES. Any thread; errors go to err.
 */
enum cb_status unpack_check_header_now(const struct unpack_ctx *ctx, struct unpack_entry *e,
				       unsigned char *buf, struct cb_error *err);

/* Writes all of p[0..len) to fd, or says which entry failed and how. */
enum cb_status unpack_write_all(struct cb_error *err, const char *dest, const struct unpack_entry *e,
				int fd, const unsigned char *p, size_t len);

/* The first entry, in name order, not below key[0..len). */
size_t unpack_lower_bound(const struct unpack_ctx *ctx, const char *key, size_t len);

/* ---- unpack_dirs.c ---- */

/*
 * Every directory, named or implied by a deeper name, gets an id, and every
 * file and symlink the id of its parent (0 is dest_fd). The walk goes in
 * name order, where everything below a directory is one run: ids then come
 * depth-first, a parent's below its children's. A directory entry with
 * entries below it is left to them, since siblings can sort between the two
 * ("a", "a.txt", "a/x"): it would be entered twice.
 */
enum cb_status unpack_plan_dirs(struct unpack_ctx *ctx);

/* Closes every directory the table holds open, and frees it. */
void unpack_close_dir_table(struct unpack_ctx *ctx);

/*
 * Keeping every directory open needs a descriptor each: raise the soft
 * limit as far as that needs (put back by unpack_restore_fd_limit), or say no.
 */
bool unpack_room_for_dir_table(struct unpack_ctx *ctx, size_t workers);

/* Puts back the descriptor limit that unpack_room_for_dir_table raised. */
void unpack_restore_fd_limit(struct unpack_ctx *ctx);

/*
 * Creates every directory in id order, walking down and up a stack of open
 * parents. With a table, every directory stays open for the workers (and
 * *out_of_fds says when the table ran out of descriptors after all).
 */
enum cb_status unpack_make_dirs(struct unpack_ctx *ctx, bool *out_of_fds);

/* unpack_make_dirs by nthreads threads, this one included (it does the stretch of any that cannot start). */
enum cb_status unpack_make_dirs_parallel(struct unpack_ctx *ctx, size_t nthreads, bool *out_of_fds);

/* ---- unpack_files.c ---- */

/*
 * The fd of directory id: from the table, or else opened one level at a
 * time from dest_fd, never through a symlink, and cached until the next one.
 */
enum cb_status unpack_open_dir_id(const struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
				  struct cb_error *err, const struct unpack_entry *e, uint32_t id,
				  int *fd_out);

/* The last component of the entry's name. */
const char *unpack_base_name(const struct unpack_entry *e);

/* Creates the file with its final mode; O_EXCL: nothing there may be overwritten. */
enum cb_status unpack_create_file(const struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
				  struct cb_error *err, const struct unpack_entry *e, int *fd_out);

/* Orders v[0..n) by local offset; a list taken in the archive's order usually is already. */
void unpack_sort_by_local_offset(struct unpack_entry **v, size_t n);

/* Stored or deflated: what the workers write (anything else goes through libzip). */
bool unpack_is_fast_method(const struct unpack_entry *e);

/* Too big to hold whole in a worker's buffers: streamed a slice at a time. */
bool unpack_is_big(const struct unpack_entry *e, size_t limit_bytes);

/* CPUs this process may run on: online, and allowed by its affinity (a container's cpuset). */
size_t unpack_usable_cpus(void);

/*
 * Extraction threads for nfiles files: one per usable CPU, as many as the
 * buffer budget holds, and UNPACK_FILES_PER_WORKER_MIN files each or more.
 */
size_t unpack_worker_count(const struct unpack_ctx *ctx, size_t nfiles);

/* The buffers of all workers together stay within ctx->buffers_bytes. */
size_t unpack_buffer_limit(const struct unpack_ctx *ctx, size_t workers);

/*
 * Every regular file, stored or deflated, by `workers` threads (the calling
 * thread is one of them): files[0..nbigs) are streamed, the others held
 * whole (streaming, nbigs is 0: files are in file order, big ones among
 * them). The first failure stops the others and is the one reported.
 */
enum cb_status unpack_write_files(struct unpack_ctx *ctx, struct unpack_entry *const *files,
				  size_t nbigs, size_t nfiles, size_t workers, size_t limit_bytes);

#endif
