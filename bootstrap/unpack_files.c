/*
 * The extractor's pass 5: regular files, stored or deflated, by one worker
 * thread per CPU (the calling one included). Small entries are read whole
 * and inflated by libdeflate in one call; entries bigger than a worker's
 * buffers are streamed through ISA-L a slice at a time, with a writer
 * thread. While the zip still downloads, workers take entries as their bytes
 * arrive, and the zip's bytes are given back (holes punched) behind them.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT, fallocate */

#include "unpack_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bigbuf.h"
#include "inflate.h"
#include "slice_writer.h"

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
	return unpack_entry_error_to(&w->err, CB_E_ZIP, 0, e, "%s", rule);
}

/*
 * The fd of directory id: from the table, or else opened one level at a
 * time from dest_fd, never through a symlink, and cached until the next one.
 */
enum cb_status unpack_open_dir_id(const struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
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
				return unpack_entry_error_to(err, CB_E_ZIP, 0, e,
							     "a path component is not a directory");
			return unpack_sys_fail_to(err, unpack_dest_shown(ctx), e, saved,
						  "open a directory");
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

const char *unpack_base_name(const struct unpack_entry *e)
{
	const char *slash = strrchr(e->name, '/');

	return slash ? slash + 1 : e->name;
}

/* Creates the file with its final mode; O_EXCL: nothing there may be overwritten. */
enum cb_status unpack_create_file(const struct unpack_ctx *ctx, struct unpack_dir_cache *cache,
				  struct cb_error *err, const struct unpack_entry *e, int *fd_out)
{
	int dir_fd, fd;
	enum cb_status st;

	st = unpack_open_dir_id(ctx, cache, err, e, e->dir_id, &dir_fd);
	if (st != CB_OK)
		return st;
	fd = openat(dir_fd, unpack_base_name(e),
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, e->mode);
	if (fd < 0)
		return unpack_sys_fail_to(err, unpack_dest_shown(ctx), e, errno, "create a file");
	/* Only when the umask took bits away: otherwise open already set the mode. */
	if ((ctx->umask_bits & e->mode) != 0 && fchmod(fd, e->mode) != 0) {
		int saved = errno;

		close(fd);
		return unpack_sys_fail_to(err, unpack_dest_shown(ctx), e, saved,
					  "set a file's mode");
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
		return unpack_sys_fail_to(&w->err, unpack_dest_shown(w->job->ctx), e, errno,
					  "write");
	total = atomic_fetch_add_explicit(&w->job->unpacked_bytes, e->size_bytes,
					  memory_order_relaxed) +
		e->size_bytes;
	/* Cannot happen when every entry keeps to its declared size. */
	if (cap != 0 && total > cap)
		return unpack_entry_error_to(&w->err, CB_E_ZIP, 0, e,
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
	return unpack_pread_at(ctx, e, out, len, e->data_offset + offset, "its data", &w->err);
}

/* An inflate failure, as the entry's rule. */
static enum cb_status inflate_fail(struct unpack_worker *w, const struct unpack_entry *e,
				   const struct cb_error *ierr)
{
	return unpack_entry_error_to(&w->err, ierr->code, ierr->sys_errno, e, "%s", ierr->message);
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

	if (e->method == UNPACK_METHOD_STORE && comp != size)
		return worker_refuse(w, e, "data does not match its declared size");
	if (raw == NULL) {
		st = read_raw(w, e, w->in, comp, 0);
		if (st != CB_OK)
			return st;
		raw = w->in;
	}
	data = raw;
	/* Some writers give an empty file no deflate stream at all: nothing to inflate. */
	if (e->method == UNPACK_METHOD_DEFLATE && !(comp == 0 && size == 0)) {
		cb_error_init(&ierr);
		st = cb_inflate_whole(w->inf, raw, comp, w->out, size, &ierr);
		if (st != CB_OK)
			return inflate_fail(w, e, &ierr);
		data = w->out;
	}
	if (cb_inflate_crc32(0, data, size) != e->crc)
		return worker_refuse(w, e, "CRC mismatch (the data is corrupt)");
	st = unpack_create_file(w->job->ctx, &w->dir_cache, &w->err, e, &fd);
	if (st != CB_OK)
		return st;
	st = unpack_write_all(&w->err, unpack_dest_shown(w->job->ctx), e, fd, data, size);
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
	return unpack_write_all(&w->err, unpack_dest_shown(w->job->ctx), e, fd, p, len);
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
			/*
			 * Streaming, data_end is known only once its worker has read the
			 * local header, and a chunk that holds it may be done before (its
			 * other entries came with the tail): up to the next entry instead.
			 */
			uint64_t big_end = punch->avail != NULL ? big->next_offset : big->data_end;

			if (big_end <= from || big->local_offset >= to)
				continue;
			end = big->local_offset > from ? big->local_offset : from;
			next = big_end;
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
void unpack_sort_by_local_offset(struct unpack_entry **v, size_t n)
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
		e->method == UNPACK_METHOD_STORE ? UNPACK_STREAM_OUT_BYTES : UNPACK_STREAM_IN_BYTES;
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

	if (e->method == UNPACK_METHOD_STORE && e->comp_size_bytes != e->size_bytes)
		return worker_refuse(w, e, "data does not match its declared size");
	cb_error_init(&ierr);
	if (e->method == UNPACK_METHOD_DEFLATE && cb_inflate_stream_begin(w->inf, &ierr) != CB_OK)
		return inflate_fail(w, e, &ierr);
	st = unpack_create_file(w->job->ctx, &w->dir_cache, &w->err, e, &fd);
	if (st != CB_OK)
		return st;
	/* Without a writer thread (too little room, or none to be had): inline. */
	if (e->method == UNPACK_METHOD_DEFLATE)
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
		if (e->method == UNPACK_METHOD_STORE) {
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
			st = unpack_sys_fail_to(&w->err, unpack_dest_shown(w->job->ctx), e,
						write_errno, "write");
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

bool unpack_is_fast_method(const struct unpack_entry *e)
{
	return e->method == UNPACK_METHOD_STORE || e->method == UNPACK_METHOD_DEFLATE;
}

bool unpack_is_big(const struct unpack_entry *e, size_t limit_bytes)
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
	if (e->method == UNPACK_METHOD_STORE && comp != size)
		return worker_refuse(w, e, "data does not match its declared size");
	st = read_raw(w, e, w->in, comp, 0);
	if (st != CB_OK)
		return st;
	if (e->method == UNPACK_METHOD_DEFLATE) {
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
		return unpack_entry_error_to(&w->err, CB_E_NOMEM, ENOMEM, e, "out of memory");
	memcpy(e->link_target, data, size);
	e->link_target[size] = '\0';
	return CB_OK;
}

/* A small file or a directory: its header and data (up to the next entry) fit one read. */
static bool one_read(const struct unpack_worker *w, const struct unpack_entry *e)
{
	uint64_t span = e->next_offset - e->local_offset;

	return (e->kind == UNPACK_DIR ||
		(e->kind == UNPACK_FILE && !unpack_is_big(e, w->job->limit_bytes))) &&
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
		st = unpack_pread_at(ctx, files[i], w->in, (size_t)(stop - start), start, "it",
				     &w->err);
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
	return e->kind == UNPACK_FILE && unpack_is_big(e, limit_bytes);
}

/* A big entry, its local header checked first (the caller took it). */
static enum cb_status stream_big(struct unpack_worker *w, struct unpack_entry *e)
{
	enum cb_status st;

	w->win_start = w->win_end = 0; /* in is for this entry now */
	st = unpack_check_header_now(w->job->ctx, e, w->in, &w->err);
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
		st = unpack_check_header_in(ctx, e, h, &w->err);
		if (st != CB_OK || e->kind == UNPACK_DIR)
			return st; /* a directory was made already, from the central directory */
		return write_whole_raw(w, e, h + (e->data_offset - e->local_offset));
	}
	w->win_start = w->win_end = 0; /* in is for this entry now */
	st = unpack_check_header_now(w->job->ctx, e, w->in, &w->err);
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
size_t unpack_usable_cpus(void)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0 &&
	    CPU_COUNT(&set) < online)
		online = CPU_COUNT(&set);
	return online < 1 ? 1 : (size_t)online;
}

size_t unpack_worker_count(const struct unpack_ctx *ctx, size_t nfiles)
{
	size_t n = unpack_usable_cpus();

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
size_t unpack_buffer_limit(const struct unpack_ctx *ctx, size_t workers)
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
enum cb_status unpack_write_files(struct unpack_ctx *ctx, struct unpack_entry *const *files,
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
		return unpack_nomem(ctx);
	if (job.streaming && !list_stream_bigs(&job, &stream_bigs)) {
		pthread_mutex_destroy(&job.leftover_lock);
		return unpack_nomem(ctx);
	}
	/* A big entry's chunk may be done before it: punches keep off every big entry. */
	if (ctx->opts->consume_zip && punch_init(&punch, &job, ctx->opts->zip_fd))
		job.punch = &punch;
	for (; ready < workers; ready++) {
		st = worker_init(&w[ready], &job);
		w[ready].index = ready;
		if (st != CB_OK) {
			ready++;
			st = unpack_nomem(ctx);
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
