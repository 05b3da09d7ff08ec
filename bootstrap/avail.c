/*
 * The bytes present in a file being downloaded (see avail.h). One mutex and
 * one condition variable; waits use CLOCK_MONOTONIC, as cb_clock_now_ms.
 */
#define _GNU_SOURCE /* fallocate */
#include "avail.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The tail and the central directory, merged when they touch: a few suffice. */
#define AVAIL_RANGES_MAX 4u

enum avail_state {
	AVAIL_PENDING,   /* streaming may still start */
	AVAIL_STREAMING, /* the first range is in: the unpacker runs */
	AVAIL_OFF,       /* never streaming */
	AVAIL_BROKEN,    /* it started, then the bytes stopped being trustworthy */
};

struct avail_range {
	uint64_t start, end;
};

/* What became of a block of the ring's range: the file holds it, or a slot does. */
#define AVAIL_BLOCK_UNDECIDED (-2)
#define AVAIL_BLOCK_FILE (-1)
#define AVAIL_RING_SLOTS_MAX 64u
/* A ring per big entry being read: one per worker covers every case that matters. */
#define AVAIL_RINGS_MAX 4u

/* A reader's memory that takes the body's bytes of one range (see cb_avail_ring_open). */
struct avail_ring {
	bool active;
	uint64_t start, end;
	unsigned char *mem; /* nslots blocks, lent by the reader */
	size_t nslots;
	uint64_t free_slots; /* bit i: slot i holds nothing still to be read */
	int8_t *where;       /* per block of [start, end): a slot, or AVAIL_BLOCK_* */
	size_t nblocks;
	uint64_t memory_bytes; /* of the range, those that came through a slot */
};

struct cb_avail {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	int64_t deadline_ms;
	enum avail_state state;
	uint64_t total_bytes;
	uint64_t prefix_bytes;
	struct avail_range ranges[AVAIL_RANGES_MAX];
	size_t nranges;
	/* The least prefix a waiter needs: growing the prefix below it wakes no one. */
	uint64_t wake_at;
	struct avail_range request;
	bool has_request, request_taken;
	bool download_ended, download_ok;
	bool stopped, stopped_first;
	void (*wake)(void *ctx);
	void *wake_ctx;
	struct avail_ring rings[AVAIL_RINGS_MAX];
	bool body_waits;    /* cb_avail_room said no: the next slot freed wakes the download */
	bool spare_planned; /* the unpacker planned its memory: spare_bytes is set */
	uint64_t spare_bytes;
};

struct cb_avail *cb_avail_new(int64_t deadline_ms)
{
	struct cb_avail *a = calloc(1, sizeof(*a));
	pthread_condattr_t attr;

	if (a == NULL)
		return NULL;
	if (pthread_condattr_init(&attr) != 0) {
		free(a);
		return NULL;
	}
	(void)pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&a->lock, NULL) != 0) {
		pthread_condattr_destroy(&attr);
		free(a);
		return NULL;
	}
	if (pthread_cond_init(&a->changed, &attr) != 0) {
		pthread_mutex_destroy(&a->lock);
		pthread_condattr_destroy(&attr);
		free(a);
		return NULL;
	}
	pthread_condattr_destroy(&attr);
	a->deadline_ms = deadline_ms;
	a->state = AVAIL_PENDING;
	a->wake_at = UINT64_MAX;
	return a;
}

void cb_avail_destroy(struct cb_avail *a)
{
	if (a == NULL)
		return;
	pthread_cond_destroy(&a->changed);
	pthread_mutex_destroy(&a->lock);
	for (size_t i = 0; i < AVAIL_RINGS_MAX; i++)
		free(a->rings[i].where);
	free(a);
}

void cb_avail_set_total(struct cb_avail *a, uint64_t total_bytes)
{
	pthread_mutex_lock(&a->lock);
	a->total_bytes = total_bytes;
	pthread_mutex_unlock(&a->lock);
}

bool cb_avail_spare(struct cb_avail *a, uint64_t *spare_bytes)
{
	bool planned;

	pthread_mutex_lock(&a->lock);
	planned = a->spare_planned;
	*spare_bytes = a->spare_bytes;
	pthread_mutex_unlock(&a->lock);
	return planned;
}

void cb_avail_set_spare(struct cb_avail *a, uint64_t spare_bytes)
{
	pthread_mutex_lock(&a->lock);
	a->spare_bytes = spare_bytes;
	a->spare_planned = true;
	pthread_mutex_unlock(&a->lock);
}

void cb_avail_set_prefix(struct cb_avail *a, uint64_t prefix_bytes)
{
	pthread_mutex_lock(&a->lock);
	a->prefix_bytes = prefix_bytes;
	/* The body grows 16 KiB at a time: waking every waiter each time cost more than the writes. */
	if (prefix_bytes >= a->wake_at) {
		a->wake_at = UINT64_MAX;
		pthread_cond_broadcast(&a->changed);
	}
	pthread_mutex_unlock(&a->lock);
}

void cb_avail_add_range(struct cb_avail *a, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&a->lock);
	if (start >= end || (a->state != AVAIL_PENDING && a->state != AVAIL_STREAMING))
		goto out;
	/* Merge with every range it touches; the merged one replaces them. */
	for (size_t i = 0; i < a->nranges;) {
		struct avail_range *r = &a->ranges[i];

		if (r->end < start || r->start > end) {
			i++;
			continue;
		}
		start = r->start < start ? r->start : start;
		end = r->end > end ? r->end : end;
		a->ranges[i] = a->ranges[--a->nranges];
	}
	if (a->nranges == AVAIL_RANGES_MAX)
		goto out; /* cannot happen with a tail and a central directory; harmless anyway */
	a->ranges[a->nranges].start = start;
	a->ranges[a->nranges].end = end;
	a->nranges++;
	if (a->state == AVAIL_PENDING)
		a->state = AVAIL_STREAMING;
	pthread_cond_broadcast(&a->changed);
out:
	pthread_mutex_unlock(&a->lock);
}

bool cb_avail_overlap(struct cb_avail *a, uint64_t start, uint64_t end, uint64_t *from, uint64_t *to)
{
	bool found = false;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nranges; i++) {
		const struct avail_range *r = &a->ranges[i];
		uint64_t s = r->start > start ? r->start : start;
		uint64_t e = r->end < end ? r->end : end;

		if (s < e && (!found || s < *from)) {
			*from = s;
			*to = e;
			found = true;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return found;
}

void cb_avail_disable(struct cb_avail *a)
{
	pthread_mutex_lock(&a->lock);
	if (a->state == AVAIL_PENDING)
		a->state = AVAIL_OFF;
	else if (a->state == AVAIL_STREAMING)
		a->state = AVAIL_BROKEN;
	a->nranges = 0;
	a->prefix_bytes = 0;
	a->has_request = false;
	for (size_t i = 0; i < AVAIL_RINGS_MAX; i++)
		a->rings[i].active = false; /* a body written again goes to the file, whole */
	pthread_cond_broadcast(&a->changed);
	pthread_mutex_unlock(&a->lock);
}

bool cb_avail_usable(struct cb_avail *a)
{
	bool usable;

	pthread_mutex_lock(&a->lock);
	usable = a->state == AVAIL_PENDING || a->state == AVAIL_STREAMING;
	pthread_mutex_unlock(&a->lock);
	return usable;
}

bool cb_avail_broken(struct cb_avail *a)
{
	bool broken;

	pthread_mutex_lock(&a->lock);
	broken = a->state == AVAIL_BROKEN;
	pthread_mutex_unlock(&a->lock);
	return broken;
}

void cb_avail_download_done(struct cb_avail *a, bool ok)
{
	pthread_mutex_lock(&a->lock);
	a->download_ended = true;
	a->download_ok = ok;
	if (a->state == AVAIL_PENDING)
		a->state = AVAIL_OFF;
	pthread_cond_broadcast(&a->changed);
	pthread_mutex_unlock(&a->lock);
}

bool cb_avail_take_request(struct cb_avail *a, uint64_t *start, uint64_t *end)
{
	bool found;

	pthread_mutex_lock(&a->lock);
	found = a->has_request && !a->request_taken;
	if (found) {
		*start = a->request.start;
		*end = a->request.end;
		a->request_taken = true;
	}
	pthread_mutex_unlock(&a->lock);
	return found;
}

void cb_avail_set_waker(struct cb_avail *a, void (*wake)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&a->lock);
	a->wake = wake;
	a->wake_ctx = ctx;
	pthread_mutex_unlock(&a->lock);
}

bool cb_avail_stopped(struct cb_avail *a)
{
	bool stopped;

	pthread_mutex_lock(&a->lock);
	stopped = a->stopped_first;
	pthread_mutex_unlock(&a->lock);
	return stopped;
}

enum cb_avail_start cb_avail_wait_start(struct cb_avail *a, uint64_t *total_bytes)
{
	enum cb_avail_start verdict;

	pthread_mutex_lock(&a->lock);
	while (a->state == AVAIL_PENDING)
		pthread_cond_wait(&a->changed, &a->lock);
	verdict = a->state == AVAIL_STREAMING ? CB_AVAIL_STREAM : CB_AVAIL_NO;
	*total_bytes = a->total_bytes;
	pthread_mutex_unlock(&a->lock);
	return verdict;
}

/*
 * Where [start, end) stops being present (end when all of it is), walking
 * the prefix and the ranges. Called with the lock held.
 */
static uint64_t present_until(const struct cb_avail *a, uint64_t start, uint64_t end)
{
	uint64_t at = start;
	bool moved = true;

	while (at < end && moved) {
		moved = false;
		if (at < a->prefix_bytes) {
			at = a->prefix_bytes;
			moved = true;
		}
		for (size_t i = 0; i < a->nranges; i++) {
			if (a->ranges[i].start <= at && at < a->ranges[i].end) {
				at = a->ranges[i].end;
				moved = true;
			}
		}
	}
	return at < end ? at : end;
}

/*
 * The prefix that makes [gap, end) present, with the ranges as they are:
 * end, less what ranges cover from it down. Lock held.
 */
static uint64_t prefix_needed(const struct cb_avail *a, uint64_t gap, uint64_t end)
{
	bool moved = true;

	while (end > gap && moved) {
		moved = false;
		for (size_t i = 0; i < a->nranges; i++) {
			if (a->ranges[i].start < end && end <= a->ranges[i].end) {
				end = a->ranges[i].start;
				moved = true;
			}
		}
	}
	return end > gap ? end : gap + 1;
}

/* The start of the first range at or after at, or end. Lock held. */
static uint64_t next_range_start(const struct cb_avail *a, uint64_t at, uint64_t end)
{
	for (size_t i = 0; i < a->nranges; i++)
		if (a->ranges[i].start > at && a->ranges[i].start < end)
			end = a->ranges[i].start;
	return end;
}

/* A slot came free, a ring closed, or a thread waits: the download may go on. Lock held. */
static void wake_body(struct cb_avail *a)
{
	if (!a->body_waits)
		return;
	a->body_waits = false;
	if (a->wake != NULL)
		a->wake(a->wake_ctx);
}

/*
 * cb_avail_wait with the lock held; body_only: [start, end) must be below
 * the prefix (the ring's bytes come with the body, never with a range).
 */
static enum cb_status wait_locked(struct cb_avail *a, uint64_t start, uint64_t end, bool ask,
				  bool body_only, struct cb_error *err)
{
	enum cb_status status = CB_OK;
	struct timespec ts;
	int64_t left_ms;
	uint64_t gap, needed;

	for (;;) {
		if (a->stopped) {
			status = cb_error_set(err, CB_E_ZIP, 0, "unpacking stopped");
			break;
		}
		if (a->state == AVAIL_BROKEN || a->state == AVAIL_OFF) {
			status = cb_error_set(err, CB_E_DOWNLOAD, 0,
					      "the object changed while it was unpacked");
			break;
		}
		if (body_only)
			gap = a->prefix_bytes >= end  ? end :
			      start > a->prefix_bytes ? start :
							a->prefix_bytes;
		else
			gap = present_until(a, start, end);
		if (gap >= end)
			break;
		if (a->download_ended) {
			status = cb_error_set(err, CB_E_DOWNLOAD, 0,
					      a->download_ok ?
						      "the download ended before byte %llu" :
						      "the download failed",
					      (unsigned long long)gap);
			break;
		}
		needed = body_only ? end : prefix_needed(a, gap, end);
		if (needed < a->wake_at)
			a->wake_at = needed;
		wake_body(a); /* a download held for a ring must not hold this waiter too */
		if (ask && !a->has_request) {
			a->request.start = gap;
			a->request.end = next_range_start(a, gap, end);
			a->has_request = true;
			a->request_taken = false;
			if (a->wake != NULL)
				a->wake(a->wake_ctx);
		}
		if (a->deadline_ms <= 0) {
			pthread_cond_wait(&a->changed, &a->lock);
			continue;
		}
		left_ms = a->deadline_ms - cb_clock_now_ms();
		if (left_ms <= 0) {
			status =
				cb_error_set(err, CB_E_DOWNLOAD, 0,
					     "the deadline passed while unpacking waited for the download");
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(left_ms / 1000);
		ts.tv_nsec += (long)(left_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&a->changed, &a->lock, &ts);
	}
	return status;
}

enum cb_status cb_avail_wait(struct cb_avail *a, uint64_t start, uint64_t end, bool ask,
			     struct cb_error *err)
{
	enum cb_status status;

	pthread_mutex_lock(&a->lock);
	status = wait_locked(a, start, end, ask, false, err);
	pthread_mutex_unlock(&a->lock);
	return status;
}

/* ---- rings: a reader's memory instead of the file, for one range each ---- */

int cb_avail_ring_open(struct cb_avail *a, uint64_t start, uint64_t end, unsigned char *mem,
		       size_t nslots)
{
	struct avail_ring *r = NULL;
	int ring = -1;
	size_t nblocks;

	if (nslots > AVAIL_RING_SLOTS_MAX)
		nslots = AVAIL_RING_SLOTS_MAX;
	pthread_mutex_lock(&a->lock);
	/* What is below the prefix is in the file already. */
	if (start < a->prefix_bytes)
		start = a->prefix_bytes;
	if (a->state != AVAIL_STREAMING || a->download_ended || nslots == 0 || start >= end)
		goto out;
	for (size_t i = 0; i < AVAIL_RINGS_MAX && r == NULL; i++)
		if (!a->rings[i].active)
			r = &a->rings[i];
	if (r == NULL)
		goto out;
	nblocks = (size_t)((end - start + CB_AVAIL_BLOCK_BYTES - 1) / CB_AVAIL_BLOCK_BYTES);
	/* Kept for the next reader: a ring comes once per big entry. */
	if (nblocks > r->nblocks) {
		int8_t *where = realloc(r->where, nblocks);

		if (where == NULL)
			goto out;
		r->where = where;
		r->nblocks = nblocks;
	}
	memset(r->where, AVAIL_BLOCK_UNDECIDED, nblocks);
	r->start = start;
	r->end = end;
	r->mem = mem;
	r->nslots = nslots;
	r->free_slots = nslots == 64 ? UINT64_MAX : (UINT64_C(1) << nslots) - 1;
	r->memory_bytes = 0;
	r->active = true;
	ring = (int)(r - a->rings);
out:
	pthread_mutex_unlock(&a->lock);
	return ring;
}

/* The block of ring r that holds byte at (inside the ring's range), and where it starts and ends. */
static size_t block_of(const struct avail_ring *r, uint64_t at)
{
	return (size_t)((at - r->start) / CB_AVAIL_BLOCK_BYTES);
}

static uint64_t block_start(const struct avail_ring *r, size_t b)
{
	return r->start + (uint64_t)b * CB_AVAIL_BLOCK_BYTES;
}

static uint64_t block_end(const struct avail_ring *r, size_t b)
{
	uint64_t end = block_start(r, b) + CB_AVAIL_BLOCK_BYTES;

	return end < r->end ? end : r->end;
}

size_t cb_avail_put(struct cb_avail *a, uint64_t at, const void *data, size_t size,
		    size_t *file_bytes)
{
	struct avail_ring *r = NULL;
	size_t b, n = size;

	pthread_mutex_lock(&a->lock);
	/* The ring at, or else up to the next one's start, for the file. */
	for (size_t i = 0; i < AVAIL_RINGS_MAX; i++) {
		struct avail_ring *q = &a->rings[i];

		if (!q->active || q->end <= at || q->start >= at + n)
			continue;
		if (q->start > at) {
			n = (size_t)(q->start - at);
			continue;
		}
		r = q;
	}
	if (r == NULL) {
		*file_bytes = n;
		goto to_file;
	}
	b = block_of(r, at);
	if (n > block_end(r, b) - at)
		n = (size_t)(block_end(r, b) - at);
	/* Decided at its first byte, for good: a block begun in the file stays there. */
	if (r->where[b] == AVAIL_BLOCK_UNDECIDED) {
		r->where[b] = AVAIL_BLOCK_FILE;
		if (at == block_start(r, b) && r->free_slots != 0) {
			int slot = __builtin_ctzll(r->free_slots);

			r->free_slots &= ~(UINT64_C(1) << slot);
			r->where[b] = (int8_t)slot;
		}
	}
	if (r->where[b] == AVAIL_BLOCK_FILE) {
		*file_bytes = n;
		goto to_file;
	}
	memcpy(r->mem + (size_t)r->where[b] * CB_AVAIL_BLOCK_BYTES + (at - block_start(r, b)), data,
	       n);
	r->memory_bytes += n;
	pthread_mutex_unlock(&a->lock);
	return n;
to_file:
	pthread_mutex_unlock(&a->lock);
	return 0;
}

bool cb_avail_room(struct cb_avail *a, uint64_t at)
{
	bool room = true;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < AVAIL_RINGS_MAX; i++) {
		const struct avail_ring *r = &a->rings[i];
		size_t b;

		if (!r->active || at < r->start || at >= r->end)
			continue;
		b = block_of(r, at);
		room = r->where[b] != AVAIL_BLOCK_UNDECIDED || r->free_slots != 0 ||
		       at != block_start(r, b);
	}
	/* Another thread waits for the body: it must not wait for the reader too. */
	if (a->wake_at != UINT64_MAX)
		room = true;
	a->body_waits = !room;
	pthread_mutex_unlock(&a->lock);
	return room;
}

enum cb_status cb_avail_ring_read(struct cb_avail *a, int ring, int fd, uint64_t at, void *buf,
				  size_t len, struct cb_error *err)
{
	struct avail_ring *r = &a->rings[ring];
	unsigned char *out = buf;
	uint64_t end = at + len;
	enum cb_status status;
	int saved;

	pthread_mutex_lock(&a->lock);
	status = wait_locked(a, at, end, false, r->active, err);
	/* Below the prefix: the download is done with these blocks, and only this reader frees them. */
	while (status == CB_OK && at < end) {
		uint64_t stop = end, from = 0;
		int slot = AVAIL_BLOCK_FILE;
		size_t b = 0;

		if (r->active && at >= r->start && at < r->end) {
			b = block_of(r, at);
			from = block_start(r, b);
			if (stop > block_end(r, b))
				stop = block_end(r, b);
			slot = r->where[b];
		} else if (r->active && at < r->start && stop > r->start) {
			stop = r->start;
		}
		pthread_mutex_unlock(&a->lock);
		if (slot >= 0)
			memcpy(out, r->mem + (size_t)slot * CB_AVAIL_BLOCK_BYTES + (at - from),
			       (size_t)(stop - at));
		else if ((saved = cb_read_full(fd, out, (size_t)(stop - at), at)) != 0) {
			/* The file ending first is EIO: the body wrote every byte below the prefix. */
			if (saved < 0)
				saved = EIO;
			status = cb_error_set(err, CB_E_IO, saved, "cannot read the download: %s",
					      strerror(saved));
		}
		pthread_mutex_lock(&a->lock);
		/* Read once: a block read to its end holds nothing more for anyone. */
		if (slot >= 0 && stop == block_end(r, b)) {
			r->free_slots |= UINT64_C(1) << slot;
			wake_body(a);
		}
		out += stop - at;
		at = stop;
	}
	pthread_mutex_unlock(&a->lock);
	return status;
}

uint64_t cb_avail_ring_close(struct cb_avail *a, int ring)
{
	uint64_t memory_bytes;

	pthread_mutex_lock(&a->lock);
	a->rings[ring].active = false;
	memory_bytes = a->rings[ring].memory_bytes;
	wake_body(a);
	pthread_mutex_unlock(&a->lock);
	return memory_bytes;
}

uint64_t cb_avail_prefix(struct cb_avail *a)
{
	uint64_t prefix;

	pthread_mutex_lock(&a->lock);
	prefix = a->prefix_bytes;
	pthread_mutex_unlock(&a->lock);
	return prefix;
}

void cb_avail_punch(struct cb_avail *a, int fd, uint64_t from, uint64_t to)
{
	uint64_t start =
		(from + CB_AVAIL_PUNCH_ALIGN - 1) / CB_AVAIL_PUNCH_ALIGN * CB_AVAIL_PUNCH_ALIGN;
	uint64_t end;

	pthread_mutex_lock(&a->lock);
	if (a->state == AVAIL_STREAMING) {
		if (to > a->prefix_bytes)
			to = a->prefix_bytes;
		end = to / CB_AVAIL_PUNCH_ALIGN * CB_AVAIL_PUNCH_ALIGN;
		/* A file system without hole punching just keeps the bytes. */
		if (end > start)
			(void)fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)start, (off_t)(end - start));
	}
	pthread_mutex_unlock(&a->lock);
}

void cb_avail_stop(struct cb_avail *a)
{
	pthread_mutex_lock(&a->lock);
	/* A broken stream explains the unpacker's failure: the download must go on. */
	if (!a->stopped && !a->download_ended && a->state != AVAIL_BROKEN)
		a->stopped_first = true;
	a->stopped = true;
	if (a->wake != NULL)
		a->wake(a->wake_ctx);
	pthread_cond_broadcast(&a->changed);
	pthread_mutex_unlock(&a->lock);
}
