/*
 * Which bytes of a file being downloaded are present: the in-order prefix
 * [0, P) that the main GET has written, plus a few ranges fetched ahead of it
 * (the zip's tail and central directory). Shared, under a mutex, between the
 * thread that drives the download and the threads that unpack while it runs.
 */
#ifndef CB_AVAIL_H
#define CB_AVAIL_H

#include <stdbool.h>
#include <stdint.h>

#include "../cache/cache.h"

struct cb_avail;

/* The unpacker's view of the stream, as cb_avail_wait_start reports it. */
enum cb_avail_start {
	CB_AVAIL_STREAM, /* the tail is present: unpack while the rest arrives */
	CB_AVAIL_NO,     /* no streaming (it was never possible, or it broke first) */
};

/*
 * A new object for a file that starts empty; waits give up at deadline_ms
 * (cb_clock_now_ms(); 0: never). NULL when out of memory. The caller frees
 * it with cb_avail_destroy once no thread uses it any more.
 */
struct cb_avail *cb_avail_new(int64_t deadline_ms);
void cb_avail_destroy(struct cb_avail *a);

/* ---- the download's side (one thread) ---- */

/* The total size is known and the tail [tail_start, total) is being fetched. */
void cb_avail_set_total(struct cb_avail *a, uint64_t total_bytes);
/*
 * Whether the unpacker has planned its memory yet; when it has, *spare_bytes
 * is what it leaves unused under the memory budget (UINT64_MAX: no budget).
 * The download may spend that on parts of the body fetched ahead of it on
 * more connections.
 */
bool cb_avail_spare(struct cb_avail *a, uint64_t *spare_bytes);
/* The main GET has written [0, prefix_bytes). */
void cb_avail_set_prefix(struct cb_avail *a, uint64_t prefix_bytes);
/*
 * [start, end) was written ahead of the prefix. The first range added makes
 * the stream start (cb_avail_wait_start returns CB_AVAIL_STREAM).
 */
void cb_avail_add_range(struct cb_avail *a, uint64_t start, uint64_t end);
/*
 * Whether [start, end) overlaps a range added ahead of the prefix; *from and
 * *to get the first such overlap.
 */
bool cb_avail_overlap(struct cb_avail *a, uint64_t start, uint64_t end, uint64_t *from,
		      uint64_t *to);
/*
 * Streaming is off: before it started, it never will; after, the stream is
 * broken (the bytes the unpacker read may not be the final ones), and every
 * wait fails. Forgets the ranges ahead of the prefix, which is set to 0.
 */
void cb_avail_disable(struct cb_avail *a);
/* Whether ranges may still be added (the stream is neither off nor broken). */
bool cb_avail_usable(struct cb_avail *a);
/* Whether the stream started and then broke. */
bool cb_avail_broken(struct cb_avail *a);
/* The download ended: ok, or failed (every wait then fails). */
void cb_avail_download_done(struct cb_avail *a, bool ok);
/*
 * A range the unpacker waits for that lies ahead of the prefix and of every
 * range (the central directory): returns true once per request, with it.
 */
bool cb_avail_take_request(struct cb_avail *a, uint64_t *start, uint64_t *end);
/*
 * Calls wake(ctx), from the unpacker's thread, whenever it asks for a range
 * or stops, so the download's loop need not poll for it. wake must be
 * thread-safe (curl_multi_wakeup is). NULL: nobody to wake.
 */
void cb_avail_set_waker(struct cb_avail *a, void (*wake)(void *ctx), void *ctx);
/* Whether the unpacker gave up (cb_avail_stop) while the download still ran. */
bool cb_avail_stopped(struct cb_avail *a);

/* ---- the unpacker's side (any thread) ---- */

/* What cb_avail_spare reports: set once the unpacker planned its memory. */
void cb_avail_set_spare(struct cb_avail *a, uint64_t spare_bytes);

/*
 * Blocks until streaming starts or is known never to: CB_AVAIL_STREAM with
 * the file's total size, or CB_AVAIL_NO.
 */
enum cb_avail_start cb_avail_wait_start(struct cb_avail *a, uint64_t *total_bytes);
/*
 * Blocks until [start, end) is present. ask: when it lies ahead of
 * everything, ask the download for it (cb_avail_take_request). Errors:
 * CB_E_DOWNLOAD when the download failed, broke or the deadline passed,
 * CB_E_ZIP when the unpacker stopped.
 */
enum cb_status cb_avail_wait(struct cb_avail *a, uint64_t start, uint64_t end, bool ask,
			     struct cb_error *err);
/* The prefix written so far: bytes below it are final and may be punched out. */
uint64_t cb_avail_prefix(struct cb_avail *a);
/*
 * Gives back (punches out) the whole blocks of [from, to) of fd that the
 * download wrote in order, and will not write again: nothing at or past the
 * prefix, nothing once the stream broke (a restarted body is being written
 * again from byte 0). Under the lock, so a restart cannot slip in between.
 * Best effort.
 */
#define CB_AVAIL_PUNCH_ALIGN 4096u
void cb_avail_punch(struct cb_avail *a, int fd, uint64_t from, uint64_t to);
/*
 * ---- rings: a range handed over in memory instead of through the file ----
 *
 * A reader about to read [start, end) of the body once, in order (a big
 * entry's data), lends mem, nslots blocks of CB_AVAIL_BLOCK_BYTES: each block
 * of the range that begins to arrive while a slot is free goes there instead
 * of the file (cb_avail_put), and the slot is free again once the reader read
 * the block to its end. The download waits for a slot rather than send a
 * block to the file (cb_avail_room), so a reader must never wait for more
 * than nslots - 1 blocks ahead of the first it has not read to its end:
 * reads of at most (nslots - 2) blocks. Returns the ring's number, or -1
 * when one cannot be had (a few at a time; not streaming; nothing of the
 * range is still to come): the reader then reads the file as before.
 */
#define CB_AVAIL_BLOCK_BYTES (256u * 1024u)
int cb_avail_ring_open(struct cb_avail *a, uint64_t start, uint64_t end, unsigned char *mem,
		       size_t nslots);
/*
 * Reads [at, at + len) of the zip, in order (from the ring's memory, or from
 * fd), after waiting as cb_avail_wait does; while the ring is open, for the
 * body to reach it (not for bytes fetched ahead).
 */
enum cb_status cb_avail_ring_read(struct cb_avail *a, int ring, int fd, uint64_t at, void *buf,
				  size_t len, struct cb_error *err);
/*
 * The reader is done with the ring (or gave up): its memory is its own
 * again. Returns how many bytes of the range came through it.
 */
uint64_t cb_avail_ring_close(struct cb_avail *a, int ring);
/*
 * The download's side: the body's bytes [at, at + size), in order. Returns
 * how many of the first of them a ring took (copied); 0 when the first
 * *file_bytes of them are for the file. Call again for the rest.
 */
size_t cb_avail_put(struct cb_avail *a, uint64_t at, const void *data, size_t size,
		    size_t *file_bytes);
/*
 * Whether the body's byte at may come now: false when it begins a block of
 * an open ring, every slot is taken, and no other thread waits for the
 * body (then the block goes to the file). The download then pauses; a slot
 * freed, a ring closed or a thread starting to wait calls the waker.
 */
bool cb_avail_room(struct cb_avail *a, uint64_t at);

/*
 * The unpacker failed: the download may stop (unless the stream broke, which
 * explains the failure), and every other wait fails.
 */
void cb_avail_stop(struct cb_avail *a);

#endif
